/*
 * outbox.c: events out, exactly once in effect.
 *
 * A transition's events are rows of the outbox table written in the same
 * transaction as the state they describe. Once it commits, the rows it
 * returned (seq, event_id) are produced at once from memory; the delivery
 * report queues their seq for a batched DELETE, committed without waiting
 * for the disk (a DELETE lost in a crash only resends). A seq stays in the
 * in-flight set from produce until its row is deleted, so the sweep --
 * every SCHED_SWEEP_MS, rows older than SCHED_SWEEP_AGE_MS; at start, every
 * row -- never sends a row twice in one process. Rows left by a crash, by
 * a failed delivery or by a resent transaction go out on the next sweep
 * with their original event ids; consumers deduplicate on those.
 *
 * Several schedulers on one database would each sweep the other's young
 * rows only after SCHED_SWEEP_AGE_MS: duplicates are then possible but
 * harmless (same event ids).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

#define SWEEP_LIMIT 1000
#define SWEEP_LIMIT_S "1000"
#define DELETE_CHUNK 4000
#define OURS_SLOTS 8192 /* ids of events we committed, remembered (power of two) */

struct relay_msg {
	struct sched_dr dr;
	int64_t seq;
};

/* ---- events ------------------------------------------------------------ */

int sched_event_build(struct sched_env *env, struct sched_event *ev, const char *type,
		      const char *tenant, const char *run_id, const char *step_id, json_t *fields,
		      char *errstr, size_t errlen)
{
	struct sw_event_header h;
	int rc;

	memset(ev, 0, sizeof(*ev));
	sw_event_header_init(&h, type, SCHED_PRODUCER);
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", run_id);
	if (step_id != NULL)
		snprintf(h.step_id, sizeof(h.step_id), "%s", step_id);
	rc = sw_event_encode(env->reg, type, &h, fields, &ev->buf, &ev->len, errstr, errlen);
	json_decref(fields);
	if (rc == -1)
		return -1;
	snprintf(ev->id, sizeof(ev->id), "%s", h.event_id);
	ev->topic = strncmp(type, "run.", 4) == 0 ? SW_TOPIC_RUNS : SW_TOPIC_STEPS;
	snprintf(ev->key, sizeof(ev->key), "%s", run_id);
	return 0;
}

void sched_event_clear(struct sched_event *ev)
{
	free(ev->buf);
	memset(ev, 0, sizeof(*ev));
}

/* The payload column as encode(payload, 'hex') gives it: malloc'd bytes,
 * NULL when s is not hex. */
static void *hex_decode(const char *s, size_t *len)
{
	size_t n = strlen(s);
	void *b;

	if (n % 2 != 0 || (b = malloc(n / 2 + 1)) == NULL)
		return NULL;
	if (sw_hex_decode(s, b, n / 2) == -1) {
		free(b);
		return NULL;
	}
	*len = n / 2;
	return b;
}

/* One text for any number of events, so that each connection prepares it
 * once: a VALUES list of n rows was a statement of its own for each n, up
 * to SCHED_OUTBOX_MAX of them, and they filled the store's cache of
 * prepared statements, leaving what came after them (the run read of every
 * waited submit) parsed and planned at each call. */
const char *const sched_outbox_insert_sql =
    "INSERT INTO outbox (event_id, topic, key, payload)"
    " SELECT u.e, u.t, u.k, decode(u.p, 'hex')"
    " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(e, t, k, p)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING seq, event_id::text";

int sched_outbox_params(const struct sched_event *evs, size_t n, char **params)
{
	struct sw_buf b[4];
	char hex[513];
	size_t i, off, k;
	int c, oom = 0;

	memset(params, 0, 4 * sizeof(*params));
	if (n == 0 || n > SCHED_OUTBOX_MAX)
		return -1;
	for (c = 0; c < 4; c++) {
		sw_buf_init(&b[c], 0);
		sw_buf_add(&b[c], "{", 1);
	}
	for (i = 0; i < n; i++) {
		sw_store_array_elem(&b[0], evs[i].id, i == 0);
		sw_store_array_elem(&b[1], evs[i].topic, i == 0);
		sw_store_array_elem(&b[2], evs[i].key, i == 0);
		/* hex digits need no quotes in an array literal */
		if (i > 0)
			sw_buf_add(&b[3], ",", 1);
		for (off = 0; off < evs[i].len; off += k) {
			k = evs[i].len - off < 256 ? evs[i].len - off : 256;
			sw_hex_encode((const unsigned char *)evs[i].buf + off, k, hex);
			sw_buf_add(&b[3], hex, 2 * k);
		}
		if (evs[i].len == 0)
			sw_buf_add(&b[3], "\"\"", 2);
	}
	for (c = 0; c < 4; c++) {
		sw_buf_add(&b[c], "}", 1);
		if (b[c].oom)
			oom = 1;
	}
	for (c = 0; c < 4; c++) {
		if (oom)
			sw_buf_free(&b[c]);
		else
			params[c] = sw_buf_steal(&b[c], NULL);
	}
	return oom ? -1 : 0;
}

void sched_outbox_params_free(char **params)
{
	int c;

	if (params == NULL)
		return;
	for (c = 0; c < 4; c++) {
		free(params[c]);
		params[c] = NULL;
	}
}

/* ---- the in-flight set ------------------------------------------------- */

int sched_seqset_init(struct sched_seqset *s, size_t cap)
{
	s->slots = calloc(cap, sizeof(*s->slots));
	s->cap = s->slots ? cap : 0;
	s->len = 0;
	return s->slots ? 0 : -1;
}

void sched_seqset_free(struct sched_seqset *s)
{
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

static size_t seq_hash(int64_t v, size_t cap)
{
	uint64_t x = (uint64_t)v * 0x9e3779b97f4a7c15ull;

	return (size_t)(x >> 17) & (cap - 1);
}

static int seqset_grow(struct sched_seqset *s)
{
	struct sched_seqset n;
	size_t i;

	if (sched_seqset_init(&n, s->cap * 2) == -1)
		return -1;
	for (i = 0; i < s->cap; i++)
		if (s->slots[i] != 0)
			sched_seqset_add(&n, s->slots[i]);
	free(s->slots);
	*s = n;
	return 0;
}

int sched_seqset_add(struct sched_seqset *s, int64_t v)
{
	size_t i;

	if ((s->len + 1) * 2 > s->cap && seqset_grow(s) == -1)
		return -1;
	for (i = seq_hash(v, s->cap); s->slots[i] != 0; i = (i + 1) & (s->cap - 1))
		if (s->slots[i] == v)
			return 0;
	s->slots[i] = v;
	s->len++;
	return 1;
}

int sched_seqset_has(const struct sched_seqset *s, int64_t v)
{
	size_t i;

	for (i = seq_hash(v, s->cap); s->slots[i] != 0; i = (i + 1) & (s->cap - 1))
		if (s->slots[i] == v)
			return 1;
	return 0;
}

/* Linear probing: remove, then shift back the entries after it that
 * would no longer be found. */
void sched_seqset_del(struct sched_seqset *s, int64_t v)
{
	size_t i, j, k, mask = s->cap - 1;

	for (i = seq_hash(v, s->cap); s->slots[i] != v; i = (i + 1) & mask)
		if (s->slots[i] == 0)
			return;
	s->slots[i] = 0;
	s->len--;
	for (j = (i + 1) & mask; s->slots[j] != 0; j = (j + 1) & mask) {
		k = seq_hash(s->slots[j], s->cap);
		/* move j to i when k is not cyclically in (i, j] */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			s->slots[i] = s->slots[j];
			s->slots[j] = 0;
			i = j;
		}
	}
}

/* ---- the relay --------------------------------------------------------- */

/*
 * The run events held back (SAGEWAI_RUNS_HOLD_MS). Every reader of
 * sagewai.runs (policy, sandboxd, the worker's fences, audit, the other
 * schedulers' streams) wakes for each of its messages. A run's submitted
 * event, produced beside its first dispatch, so woke them all while that
 * dispatch crossed to the worker and back, on the same cores. Nothing
 * waits on a run event (a waiting submit is answered from the commit, the
 * worker runs a dispatch without its run's submitted event), so they go
 * out a moment later, in commit order, several at once: the readers wake
 * once for them, after the step's round trip. Only their timing moves: the
 * rows are in the outbox, in the in-flight set (the sweep leaves them), and
 * a crash resends them as ever.
 */
struct relay_held {
	struct relay_held *next;
	int64_t seq;
	char key[SW_UUID_STRLEN];
	size_t len;
	unsigned char buf[]; /* len bytes */
};

static void relay_send(struct sched_env *env, int64_t seq, const char *topic, const char *key,
		       const void *buf, size_t len);

static void held_release(struct sched_env *env)
{
	struct relay_held *h;

	while ((h = env->held_head) != NULL) {
		env->held_head = h->next;
		relay_send(env, h->seq, SW_TOPIC_RUNS, h->key, h->buf, h->len);
		free(h);
	}
	env->held_tail = NULL;
}

static void held_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	held_release(arg);
}

/* Hold a run event (seq in the in-flight set already); 0, or -1: send it. */
static int held_add(struct sched_env *env, int64_t seq, const char *key, const void *buf,
		    size_t len)
{
	struct timeval tv = {0, env->runs_hold_ms * 1000};
	struct relay_held *h;

	if (env->runs_hold_ms <= 0 || env->stopping || strlen(key) >= sizeof(h->key) ||
	    (h = malloc(sizeof(*h) + len)) == NULL)
		return -1;
	if (env->held_head == NULL && evtimer_add(env->held_ev, &tv) == -1) {
		free(h);
		return -1;
	}
	h->next = NULL;
	h->seq = seq;
	snprintf(h->key, sizeof(h->key), "%s", key);
	h->len = len;
	memcpy(h->buf, buf, len);
	if (env->held_tail != NULL)
		env->held_tail->next = h;
	else
		env->held_head = h;
	env->held_tail = h;
	return 0;
}

static void relay_produce(struct sched_env *env, int64_t seq, const char *topic, const char *key,
			  const void *buf, size_t len)
{
	int added = sched_seqset_add(&env->inflight, seq),
	    runs = strcmp(topic, SW_TOPIC_RUNS) == 0;

	if (added != 1) {
		if (added == -1)
			sw_service_fatal(env->svc, "outbox relay", "out of memory");
		return;
	}
	/* in commit order: a run event joins the held ones while any wait */
	if (runs && held_add(env, seq, key, buf, len) == 0)
		return;
	if (runs)
		held_release(env);
	relay_send(env, seq, topic, key, buf, len);
}

static void relay_send(struct sched_env *env, int64_t seq, const char *topic, const char *key,
		       const void *buf, size_t len)
{
	struct relay_msg *m;
	char err[256];

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		sched_seqset_del(&env->inflight, seq);
		return; /* the sweep tries again */
	}
	m->dr.kind = SCHED_DR_OUTBOX;
	m->seq = seq;
	if (sw_bus_produce(env->producer, topic, key, buf, len, NULL, m, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_WARN, "outbox produce failed; the sweep retries", "error", err,
		       NULL);
		sched_seqset_del(&env->inflight, seq);
		free(m);
		return;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_events_produced_total",
			       "Outbox events handed to Kafka.", 1);
}

/* The table of the ids of events this process committed (and so told its
 * own progress streams about): direct-mapped, a newer id evicts an older
 * one with the same slot; an evicted id only costs a stream a re-read. */
static size_t ours_slot(const uint8_t *u)
{
	uint64_t x;

	memcpy(&x, u + 8, sizeof(x)); /* the random half of a UUIDv7 */
	return (size_t)(x * 0x9e3779b97f4a7c15ull >> 40) & (OURS_SLOTS - 1);
}

static void ours_add(struct sched_env *env, const char *event_id)
{
	uint8_t u[16];

	if (env->ours != NULL && sw_uuid_parse(event_id, u) == 0)
		memcpy(env->ours[ours_slot(u)], u, 16);
}

int sched_outbox_ours(const struct sched_env *env, const char *event_id)
{
	uint8_t u[16];

	return env->ours != NULL && sw_uuid_parse(event_id, u) == 0 &&
	       memcmp(env->ours[ours_slot(u)], u, 16) == 0;
}

void sched_outbox_committed(struct sched_env *env, PGresult *res, const struct sched_event *evs,
			    size_t n)
{
	int i, rows;
	size_t j;

	if (res == NULL || PQnfields(res) != 2)
		return;
	rows = PQntuples(res);
	/* in the order the transition made them: that is the order on the topic */
	for (j = 0; j < n; j++)
		for (i = 0; i < rows; i++)
			if (strcmp(evs[j].id, PQgetvalue(res, i, 1)) == 0) {
				ours_add(env, evs[j].id);
				relay_produce(env, strtoll(PQgetvalue(res, i, 0), NULL, 10),
					      evs[j].topic, evs[j].key, evs[j].buf, evs[j].len);
				break;
			}
}

static void relay_delete(struct sched_env *env);

struct delete_ctx {
	struct sched_env *env;
	int64_t *seqs;
	size_t n;
};

static void delete_cb(PGresult *res, const char *err, void *opaque)
{
	struct delete_ctx *d = opaque;
	struct sched_env *env = d->env;
	size_t i;

	(void)res;
	env->deleting = 0;
	if (err != NULL) {
		/* the rows stay and are swept again: duplicates, not losses */
		sw_log(SW_LOG_WARN, "outbox delete failed", "error", err, NULL);
	}
	for (i = 0; i < d->n; i++)
		sched_seqset_del(&env->inflight, d->seqs[i]);
	free(d->seqs);
	free(d);
	relay_delete(env);
}

/* Delete the delivered rows. The DELETE does not wait for its WAL to reach
 * the disk (synchronous_commit off): a crash may lose it, and the rows are
 * then sent once more with their event ids, which consumers drop. The
 * next durable commit makes it durable too. */
static void relay_delete(struct sched_env *env)
{
	struct sw_store_stmt st[3] = {{0}};
	struct delete_ctx *d;
	const char *params[1];
	size_t i, n, len = 0;
	char *lit;

	if (env->deleting || env->ndelivered == 0)
		return;
	n = env->ndelivered < DELETE_CHUNK ? env->ndelivered : DELETE_CHUNK;
	if ((d = calloc(1, sizeof(*d))) == NULL || (lit = malloc(n * 21 + 3)) == NULL) {
		free(d);
		return;
	}
	d->env = env;
	d->n = n;
	d->seqs = malloc(n * sizeof(*d->seqs));
	if (d->seqs == NULL) {
		free(lit);
		free(d);
		return;
	}
	memcpy(d->seqs, env->delivered, n * sizeof(*d->seqs));
	memmove(env->delivered, env->delivered + n, (env->ndelivered - n) * sizeof(int64_t));
	env->ndelivered -= n;
	lit[len++] = '{';
	for (i = 0; i < n; i++)
		len += (size_t)sprintf(lit + len, "%s%" PRId64, i ? "," : "", d->seqs[i]);
	lit[len++] = '}';
	lit[len] = '\0';
	params[0] = lit;
	st[0].sql = SCHED_LAZY_SQL;
	/* one plan a connection, by key: left to choose, a connection planned
	 * it at a third of the calls (its cost against the average of the
	 * custom plans it made so far) */
	st[1].sql = sched_key_plans_sql;
	st[2].sql = "DELETE FROM outbox WHERE seq = ANY($1::bigint[])";
	st[2].nparams = 1;
	st[2].params = params;
	env->deleting = 1;
	if (sw_store_tx(env->store, st, 3, delete_cb, d) == -1) {
		env->deleting = 0;
		for (i = 0; i < n; i++)
			sched_seqset_del(&env->inflight, d->seqs[i]);
		free(d->seqs);
		free(d);
	}
	free(lit);
}

void sched_outbox_delivery(struct sched_env *env, const char *err, struct sched_dr *dr)
{
	struct relay_msg *m = (struct relay_msg *)dr;

	if (err != NULL) {
		sw_log(SW_LOG_WARN, "outbox event not delivered; the sweep retries", "error", err,
		       NULL);
		sched_seqset_del(&env->inflight, m->seq);
		free(m);
		return;
	}
	if (env->ndelivered == env->capdelivered) {
		size_t cap = env->capdelivered ? env->capdelivered * 2 : 1024;
		int64_t *p = realloc(env->delivered, cap * sizeof(*p));

		if (p == NULL) {
			sched_seqset_del(&env->inflight, m->seq); /* resent later: harmless */
			free(m);
			return;
		}
		env->delivered = p;
		env->capdelivered = cap;
	}
	env->delivered[env->ndelivered++] = m->seq;
	free(m);
	relay_delete(env);
}

static void sweep_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_env *env = opaque;
	int i, n, resent = 0;

	env->sweeping = 0;
	if (err != NULL) {
		sw_log(SW_LOG_WARN, "outbox sweep failed", "error", err, NULL);
		return;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		size_t len;
		void *buf;

		if (sched_seqset_has(&env->inflight, seq))
			continue;
		if ((buf = hex_decode(PQgetvalue(res, i, 3), &len)) == NULL)
			continue;
		relay_produce(env, seq, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), buf, len);
		free(buf);
		resent++;
	}
	if (resent > 0) {
		char s[24];

		snprintf(s, sizeof(s), "%d", resent);
		sw_log(SW_LOG_INFO, "outbox rows resent", "rows", s, NULL);
	}
	if (n == SWEEP_LIMIT) {
		/* a full page: the next one at once, after the last seq seen */
		env->sweep_from = strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
		event_active(env->sweep_ev, EV_TIMEOUT, 0);
		return;
	}
	env->sweep_from = 0;
	env->swept_once = 1;
}

static void sweep_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sched_env *env = arg;
	const char *params[3];
	char age[24], from[24];

	(void)fd;
	(void)what;
	if (env->sweeping)
		return;
	snprintf(age, sizeof(age), "%d", SCHED_SWEEP_AGE_MS);
	snprintf(from, sizeof(from), "%" PRId64, env->sweep_from);
	params[0] = env->swept_once ? "false" : "true";
	params[1] = age;
	params[2] = from;
	env->sweeping = 1;
	if (sw_store_query(env->store,
			   "SELECT seq, topic, key, encode(payload, 'hex') FROM outbox"
			   " WHERE seq > $3::bigint AND ($1::boolean"
			   "  OR created < now() - $2::bigint * interval '1 millisecond')"
			   " ORDER BY seq LIMIT " SWEEP_LIMIT_S,
			   3, params, sweep_cb, env) == -1)
		env->sweeping = 0;
}

int sched_outbox_start(struct sched_env *env, char *errstr, size_t errlen)
{
	struct timeval tv = {SCHED_SWEEP_MS / 1000, (SCHED_SWEEP_MS % 1000) * 1000};

	if (sched_seqset_init(&env->inflight, 1024) == -1 ||
	    (env->ours = calloc(OURS_SLOTS, sizeof(*env->ours))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	env->sweep_ev = event_new(env->base, -1, EV_PERSIST, sweep_tick, env);
	env->held_ev = evtimer_new(env->base, held_tick, env);
	if (env->sweep_ev == NULL || env->held_ev == NULL || event_add(env->sweep_ev, &tv) == -1) {
		snprintf(errstr, errlen, "cannot start the outbox sweep");
		return -1;
	}
	event_active(env->sweep_ev, EV_TIMEOUT, 0); /* every leftover row, now */
	return 0;
}

int sched_outbox_idle(const struct sched_env *env)
{
	return env->inflight.len == 0 && env->ndelivered == 0 && !env->deleting;
}

void sched_outbox_stop(struct sched_env *env)
{
	if (env->sweep_ev != NULL)
		event_del(env->sweep_ev);
	held_release(env); /* the drain waits for their delivery */
}

void sched_outbox_free(struct sched_env *env)
{
	sched_seqset_free(&env->inflight);
	free(env->ours);
	env->ours = NULL;
	free(env->delivered);
	env->delivered = NULL;
	if (env->sweep_ev != NULL)
		event_free(env->sweep_ev);
	env->sweep_ev = NULL;
	while (env->held_head != NULL) {
		struct relay_held *h = env->held_head;

		env->held_head = h->next;
		free(h); /* their rows stay: the next start's sweep sends them */
	}
	env->held_tail = NULL;
	if (env->held_ev != NULL)
		event_free(env->held_ev);
	env->held_ev = NULL;
}
