/*
 * The dedupe window (see struct audit_dedupe in audit.h): exactly once in
 * effect with bounded memory. Kafka redelivers what was not committed
 * (recent: inside the window); replay re-publishes old events (their
 * UUIDv7 ids were made long ago: the summary of what was dropped says so,
 * and the index answers). An event made now, missed in memory, is new
 * without asking anyone.
 *
 * The index lookup keeps the order of the log: a batch with ids to ask
 * about goes to the writer only once the index answered (ingest.c holds
 * the later batches back meanwhile).
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"

int audit_dedupe_init(struct audit_dedupe *d, size_t window)
{
	memset(d, 0, sizeof(*d));
	d->half = window / 2 > 0 ? window / 2 : 1;
	if ((d->ranges = calloc(AUDIT_RANGES, sizeof(*d->ranges))) == NULL ||
	    audit_idset_init(&d->gen[0].ids, d->half) == -1) {
		free(d->ranges);
		d->ranges = NULL;
		return -1;
	}
	d->cur = 0;
	return 0;
}

void audit_dedupe_free(struct audit_dedupe *d)
{
	audit_idset_free(&d->gen[0].ids);
	audit_idset_free(&d->gen[1].ids);
	free(d->ranges);
	d->ranges = NULL;
}

size_t audit_dedupe_len(const struct audit_dedupe *d)
{
	return d->gen[0].ids.len + d->gen[1].ids.len;
}

/* The UUIDv7 timestamp of id in seconds, or -1 when id is no UUIDv7. */
static int64_t v7_seconds(const uint8_t id[16])
{
	uint64_t ms = 0;
	int i;

	if ((id[6] >> 4) != 7 || (id[8] & 0xc0) != 0x80)
		return -1;
	for (i = 0; i < 6; i++)
		ms = ms << 8 | id[i];
	return (int64_t)(ms / 1000);
}

/* Index of the range holding s, else -1; *at: where one would go. */
static long range_find(const struct audit_dedupe *d, uint64_t s, size_t *at)
{
	size_t a = 0, b = d->nranges;

	while (a < b) {
		size_t m = a + (b - a) / 2;

		if (d->ranges[m].hi < s)
			a = m + 1;
		else
			b = m;
	}
	*at = a;
	return a < d->nranges && d->ranges[a].lo <= s ? (long)a : -1;
}

/* Join the ranges at i and i + 1. */
static void range_join(struct audit_dedupe *d, size_t i)
{
	d->ranges[i].hi = d->ranges[i + 1].hi;
	memmove(&d->ranges[i + 1], &d->ranges[i + 2],
		(d->nranges - i - 2) * sizeof(*d->ranges));
	d->nranges--;
}

/* Note that an id of second s was dropped. At AUDIT_RANGES the two
 * closest ranges become one: that only sends more ids to the index. */
static void range_add(struct audit_dedupe *d, uint64_t s)
{
	size_t at, i, best = 0;
	uint64_t gap = UINT64_MAX;

	if (range_find(d, s, &at) >= 0)
		return;
	if (at > 0 && d->ranges[at - 1].hi + 1 == s) {
		d->ranges[at - 1].hi = s;
		if (at < d->nranges && d->ranges[at].lo == s + 1)
			range_join(d, at - 1);
		return;
	}
	if (at < d->nranges && d->ranges[at].lo == s + 1) {
		d->ranges[at].lo = s;
		return;
	}
	if (d->nranges == AUDIT_RANGES) {
		for (i = 0; i + 1 < d->nranges; i++) {
			if (d->ranges[i + 1].lo - d->ranges[i].hi < gap) {
				gap = d->ranges[i + 1].lo - d->ranges[i].hi;
				best = i;
			}
		}
		range_join(d, best);
		range_add(d, s);
		return;
	}
	memmove(&d->ranges[at + 1], &d->ranges[at], (d->nranges - at) * sizeof(*d->ranges));
	d->ranges[at].lo = d->ranges[at].hi = s;
	d->nranges++;
}

/* Raise the highest offset of (topic, partition) in raw[]; -1 when full. */
static int raw_note(struct audit_rawmax *raw, size_t *n, const char *topic, int32_t partition,
		    int64_t offset)
{
	size_t i;

	for (i = 0; i < *n; i++) {
		if (raw[i].partition == partition && strcmp(raw[i].topic, topic) == 0) {
			if (offset > raw[i].offset)
				raw[i].offset = offset;
			return 0;
		}
	}
	if (*n == AUDIT_RAWMAX || strlen(topic) >= sizeof(raw[0].topic))
		return -1;
	snprintf(raw[*n].topic, sizeof(raw[*n].topic), "%s", topic);
	raw[*n].partition = partition;
	raw[*n].offset = offset;
	(*n)++;
	return 0;
}

/* May a raw record at (topic, partition, offset) have been dropped? */
static int raw_maybe_dropped(const struct audit_dedupe *d, const char *topic, int32_t partition,
			     int64_t offset)
{
	size_t i;

	if (d->raw_overflow)
		return 1;
	for (i = 0; i < d->nraw; i++)
		if (d->raw[i].partition == partition && strcmp(d->raw[i].topic, topic) == 0)
			return offset <= d->raw[i].offset;
	return 0;
}

int audit_dedupe_add(struct audit_dedupe *d, const uint8_t id[16], const char *topic,
		     int32_t partition, int64_t offset)
{
	struct audit_gen *g = &d->gen[d->cur];
	int64_t s;
	size_t at;
	int rc;

	if (audit_idset_has(&d->gen[!d->cur].ids, id))
		return AUDIT_DD_DUP;
	if ((rc = audit_idset_add(&g->ids, id)) <= 0)
		return rc; /* 0: a duplicate; -1: no memory */
	if (topic != NULL) {
		if (raw_note(g->raw, &g->nraw, topic, partition, offset) != 0)
			g->raw_overflow = 1;
		return raw_maybe_dropped(d, topic, partition, offset) ? AUDIT_DD_ASK : AUDIT_DD_NEW;
	}
	if ((s = v7_seconds(id)) < 0) {
		g->nonv7 = 1;
		return d->nonv7 ? AUDIT_DD_ASK : AUDIT_DD_NEW;
	}
	return range_find(d, (uint64_t)s, &at) >= 0 ? AUDIT_DD_ASK : AUDIT_DD_NEW;
}

int audit_dedupe_full(const struct audit_dedupe *d)
{
	return d->gen[d->cur].ids.len >= d->half;
}

int audit_dedupe_rotate(struct audit_dedupe *d)
{
	struct audit_gen *old = &d->gen[!d->cur], fresh;
	size_t i;

	memset(&fresh, 0, sizeof(fresh));
	if (audit_idset_init(&fresh.ids, d->half) == -1)
		return -1;
	/* the previous generation becomes summary: its ids' seconds (raw
	 * digests that happen to look like UUIDv7 add a stray second: only
	 * a lookup more), its flags, its raw partitions */
	for (i = 0; i < old->ids.cap; i++) {
		static const uint8_t zero[16];
		int64_t s;

		if (memcmp(old->ids.slots[i], zero, 16) == 0)
			continue;
		if ((s = v7_seconds(old->ids.slots[i])) >= 0)
			range_add(d, (uint64_t)s);
	}
	d->nonv7 |= old->nonv7;
	d->raw_overflow |= old->raw_overflow;
	for (i = 0; i < old->nraw; i++)
		if (raw_note(d->raw, &d->nraw, old->raw[i].topic, old->raw[i].partition,
			     old->raw[i].offset) != 0)
			d->raw_overflow = 1;
	d->dropped += old->ids.len;
	audit_idset_free(&old->ids);
	*old = fresh;
	d->cur = !d->cur;
	return 0;
}

/* ---- the index lookup ---------------------------------------------------- */

/*
 * Which of the ids (events) and places (raw records) the index holds: one
 * statement for the batch, on the store's one connection, so it runs after
 * every index insert queued before it.
 */
static const char *const lookup_sql =
	"SELECT event_id::text, NULL::text, NULL::int, NULL::bigint FROM events"
	" WHERE event_id = ANY($1::uuid[])"
	" UNION ALL"
	" SELECT NULL::text, e.topic, e.kafka_partition, e.kafka_offset FROM events e"
	" JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, p, o)"
	" ON e.topic = r.topic AND e.kafka_partition = r.p AND e.kafka_offset = r.o"
	" WHERE e.kind = 2";

struct lookup_req {
	struct audit_env *env;
	struct audit_batch *b;
};

static void lookup_done(PGresult *res, const char *err, void *opaque)
{
	struct lookup_req *r = opaque;
	struct audit_env *env = r->env;
	struct audit_batch *b = r->b;
	size_t i;
	int row, n;

	free(r);
	if (err != NULL) {
		/* not a lost connection (the store retries those): a bug */
		sw_service_fatal(env->svc, "dedupe lookup in the audit index failed", err);
		return;
	}
	n = PQntuples(res);
	for (i = 0; i < b->n; i++) {
		struct audit_item *it = &b->items[i];
		char uuid[SW_UUID_STRLEN], off[24], part[16];

		if (!it->lookup)
			continue;
		it->lookup = 0;
		sw_uuid_format(it->id, uuid);
		snprintf(off, sizeof(off), "%lld", (long long)it->offset);
		snprintf(part, sizeof(part), "%d", it->partition);
		for (row = 0; row < n; row++) {
			int found = it->kind == SW_ALOG_EVENT
					    ? !PQgetisnull(res, row, 0) &&
						      strcmp(PQgetvalue(res, row, 0), uuid) == 0
					    : PQgetisnull(res, row, 0) &&
						      strcmp(PQgetvalue(res, row, 1), it->topic) == 0 &&
						      strcmp(PQgetvalue(res, row, 2), part) == 0 &&
						      strcmp(PQgetvalue(res, row, 3), off) == 0;

			if (!found)
				continue;
			free(it->payload);
			it->payload = NULL;
			it->kind = 0;
			env->duplicates++;
			sw_metrics_counter_add(env->metrics, "sagewai_audit_duplicates_total",
					       "Events dropped because their id is already in the log",
					       1);
			break;
		}
	}
	b->lookup = 0;
	audit_ingest_dispatch(env);
}

static void array_add(struct sw_buf *b, const char *v)
{
	if (b->len > 1)
		sw_buf_add(b, ",", 1);
	sw_buf_add(b, "\"", 1);
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			sw_buf_add(b, "\\", 1);
		sw_buf_add(b, v, 1);
	}
	sw_buf_add(b, "\"", 1);
}

void audit_dedupe_lookup(struct audit_env *env, struct audit_batch *b)
{
	struct sw_buf a[4] = {{0}};
	const char *params[4];
	struct lookup_req *r;
	size_t i;
	int c, oom = 0;

	for (c = 0; c < 4; c++)
		sw_buf_add(&a[c], "{", 1);
	for (i = 0; i < b->n; i++) {
		const struct audit_item *it = &b->items[i];
		char v[SW_UUID_STRLEN > 24 ? SW_UUID_STRLEN : 24];

		if (!it->lookup)
			continue;
		env->lookups++;
		if (it->kind == SW_ALOG_EVENT) {
			sw_uuid_format(it->id, v);
			array_add(&a[0], v);
			continue;
		}
		array_add(&a[1], it->topic);
		snprintf(v, sizeof(v), "%d", it->partition);
		array_add(&a[2], v);
		snprintf(v, sizeof(v), "%lld", (long long)it->offset);
		array_add(&a[3], v);
	}
	for (c = 0; c < 4; c++) {
		sw_buf_add(&a[c], "}", 1);
		oom |= a[c].oom;
		params[c] = a[c].p;
	}
	sw_metrics_gauge_set(env->metrics, "sagewai_audit_dedupe_lookups",
			     "Ids looked up in the index (older than the dedupe window)",
			     (double)env->lookups);
	r = oom ? NULL : calloc(1, sizeof(*r));
	if (r != NULL) {
		r->env = env;
		r->b = b;
		if (sw_store_query(env->store, lookup_sql, 4, params, lookup_done, r) == -1) {
			free(r);
			r = NULL;
		}
	}
	for (c = 0; c < 4; c++)
		sw_buf_free(&a[c]);
	if (r == NULL)
		sw_service_fatal(env->svc, "dedupe lookup", "out of memory");
}
