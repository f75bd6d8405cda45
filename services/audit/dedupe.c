/*
 * The dedupe window (see struct audit_dedupe in audit.h): exactly once in
 * effect with bounded memory. Kafka redelivers what was not committed
 * (recent: inside the window); replay re-publishes old events (their
 * UUIDv7 ids were made long ago: the summary of what was dropped says so,
 * and the index answers). An event made now, missed in memory, is new
 * without asking anyone.
 *
 * The lookups themselves are index.c's (audit_dedupe_lookup).
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
	/* the current generation is full, or both hold more than the window
	 * (the previous one grew while the index lagged) */
	return d->gen[d->cur].ids.len >= d->half || audit_dedupe_len(d) > 2 * d->half;
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
