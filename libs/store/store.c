/*
 * store.c: the pool and the public API of sw_store.h.
 *
 * A store is a pool of one or more connections (struct store_conn), each
 * with its own FIFO queue, state and reconnect timer; a unit is routed to
 * a connection when it is queued (by key, or to the least loaded one) and
 * stays there, across reconnects, until it completes. What happens to it
 * then is pipeline.c's; losing and regaining a connection is conn.c's;
 * the blocking side (migrations, sw_store_exec_sync) is sync.c's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_int.h"
#include "sw_core.h"

static int store_schema_valid(const char *name)
{
	size_t i, n;

	if (name == NULL || (n = strlen(name)) == 0 || n > STORE_SCHEMA_MAX)
		return 0;
	if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z')))
		return 0;
	for (i = 1; i < n; i++) {
		char ch = name[i];

		if (!(ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
			return 0;
	}
	return 1;
}

/* ---- queue ------------------------------------------------------------ */

void store_unit_free(struct store_unit *u)
{
	size_t i;
	int j;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++) {
		struct store_stmt *st = &u->stmts[i];

		free(st->sql);
		for (j = 0; st->params != NULL && j < st->nparams; j++)
			free(st->params[j]);
		free(st->params);
		PQclear(st->res);
	}
	free(u->stmts);
	free(u);
}

static struct store_unit *store_unit_new(int tx, const struct sw_store_stmt *stmts, size_t n,
					 sw_store_cb cb, void *opaque)
{
	struct store_unit *u;
	size_t i;
	int j;

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->tx = tx;
	u->cb = cb;
	u->opaque = opaque;
	if ((u->stmts = calloc(n, sizeof(*u->stmts))) == NULL)
		goto fail;
	u->n = n;
	for (i = 0; i < n; i++) {
		struct store_stmt *st = &u->stmts[i];

		if ((st->sql = strdup(stmts[i].sql)) == NULL)
			goto fail;
		if (stmts[i].nparams == 0)
			continue;
		if ((st->params = calloc(stmts[i].nparams, sizeof(char *))) == NULL)
			goto fail;
		st->nparams = stmts[i].nparams;
		for (j = 0; j < st->nparams; j++) {
			const char *v = stmts[i].params[j];

			if (v != NULL && (st->params[j] = strdup(v)) == NULL)
				goto fail;
		}
	}
	return u;
fail:
	store_unit_free(u);
	return NULL;
}

/* FNV-1a, 64 bits. */
uint64_t store_hash(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	return h;
}

size_t sw_store_key_conn(const struct sw_store *s, const char *key)
{
	return s->nconns > 1 ? (size_t)(store_hash(key) % s->nconns) : 0;
}

/* The connection for a unit: the key's own, or the least loaded (a
 * connection that is down counts as loaded by everything it holds plus a
 * large constant, so it gets new work only when all are down). */
static struct store_conn *store_pick(struct sw_store *s, const char *key)
{
	struct store_conn *best = NULL, *c;
	size_t i, load, best_load = 0;

	if (s->nconns == 1)
		return &s->conns[0];
	if (key != NULL)
		return &s->conns[store_hash(key) % s->nconns];
	for (i = 0; i < s->nconns; i++) {
		c = &s->conns[(s->rr + i) % s->nconns];
		load = c->npending + (c->state == STORE_READY ? 0 : (size_t)1 << 20);
		if (best == NULL || load < best_load) {
			best = c;
			best_load = load;
		}
	}
	s->rr++;
	return best;
}

static int store_queue(struct sw_store *s, const char *key, int tx,
		       const struct sw_store_stmt *stmts, size_t n,
		       const struct sw_store_each *each, size_t neach, sw_store_cb cb,
		       void *opaque)
{
	struct store_conn *c;
	struct store_unit *u;
	size_t i;

	if (s == NULL || stmts == NULL || n == 0 || n > (size_t)INT32_MAX / 4 ||
	    (neach > 0 && each == NULL))
		return -1;
	for (i = 0; i < neach; i++)
		if (each[i].stmt >= n || each[i].cb == NULL)
			return -1;
	for (i = 0; i < n; i++) {
		if (stmts[i].sql == NULL || stmts[i].nparams < 0 ||
		    stmts[i].nparams > STORE_MAX_PARAMS ||
		    (stmts[i].nparams > 0 && stmts[i].params == NULL))
			return -1;
	}
	if ((u = store_unit_new(tx, stmts, n, cb, opaque)) == NULL)
		return -1;
	for (i = 0; i < neach; i++) {
		u->stmts[each[i].stmt].cb = each[i].cb;
		u->stmts[each[i].stmt].opaque = each[i].opaque;
	}
	c = store_pick(s, key);
	if (c->tail != NULL)
		c->tail->next = u;
	else
		c->head = u;
	c->tail = u;
	c->npending++;
	s->npending++;
	store_pump(c);
	return 0;
}

/* ---- public API ------------------------------------------------------- */

/* Set up connection i of the pool: its events, its jitter seed, and the
 * blocking connection (the first one migrates), then watch it. */
static int store_conn_open(struct sw_store *s, size_t i, const struct sw_migration *migs,
			   size_t nmigs, char *errstr, size_t errlen)
{
	struct store_conn *c = &s->conns[i];
	struct timespec ts;

	c->s = s;
	c->last = -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)c ^ (uint64_t)ts.tv_sec;
	if (c->rng == 0)
		c->rng = 0x9e3779b97f4a7c15ULL;
	if ((c->ev_timer = evtimer_new(s->base, store_timer_cb, c)) == NULL ||
	    (c->preps = calloc(STORE_PREP_MAX, sizeof(*c->preps))) == NULL) {
		snprintf(errstr, errlen, "store: out of memory");
		return -1;
	}
	if (i == 0) {
		if ((c->conn = store_connect_sync(s->conninfo, NULL, errstr, errlen)) == NULL ||
		    store_migrate(s, c->conn, migs, nmigs, errstr, errlen) < 0)
			return -1;
	} else if ((c->conn = store_connect_sync(s->conninfo, s->set_path, errstr, errlen)) ==
		   NULL) {
		return -1;
	}
	if (store_attach(c) < 0) {
		snprintf(errstr, errlen, "store: cannot watch the connection: %s",
			 PQerrorMessage(c->conn));
		store_trim(errstr);
		return -1;
	}
	c->state = STORE_READY;
	return 0;
}

struct sw_store *sw_store_new_pool(struct event_base *base, const char *conninfo,
				   const char *schema, const struct sw_migration *migs,
				   size_t nmigs, size_t npool, char *errstr, size_t errlen)
{
	struct sw_store *s = NULL;
	size_t i;

	if (base == NULL || conninfo == NULL) {
		snprintf(errstr, errlen, "store: no event base or conninfo");
		return NULL;
	}
	if (npool < 1 || npool > STORE_POOL_MAX) {
		snprintf(errstr, errlen, "store: pool size must be 1..%d", STORE_POOL_MAX);
		return NULL;
	}
	if (!store_schema_valid(schema)) {
		snprintf(errstr, errlen,
			 "store: invalid schema name (want [a-z_][a-z0-9_]*, "
			 "at most 63 characters)");
		return NULL;
	}
	if (nmigs > 0 && migs == NULL) {
		snprintf(errstr, errlen, "store: no migrations array");
		return NULL;
	}
	for (i = 0; i < nmigs; i++) {
		if (migs[i].sql == NULL || migs[i].version < 1 ||
		    (i > 0 && migs[i].version <= migs[i - 1].version)) {
			snprintf(errstr, errlen,
				 "store: migration #%zu: versions must be >= 1 and strictly "
				 "increasing, sql non-NULL",
				 i);
			return NULL;
		}
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto oom;
	s->base = base;
	snprintf(s->schema, sizeof(s->schema), "%s", schema);
	snprintf(s->set_path, sizeof(s->set_path), "SET search_path TO \"%s\"", schema);
	if ((s->conninfo = strdup(conninfo)) == NULL)
		goto oom;
	if ((s->conns = calloc(npool, sizeof(*s->conns))) == NULL)
		goto oom;
	s->nconns = npool;
	for (i = 0; i < npool; i++)
		if (store_conn_open(s, i, migs, nmigs, errstr, errlen) < 0)
			goto fail;
	return s;
oom:
	snprintf(errstr, errlen, "store: out of memory");
fail:
	sw_store_destroy(s);
	return NULL;
}

struct sw_store *sw_store_new(struct event_base *base, const char *conninfo, const char *schema,
			      const struct sw_migration *migs, size_t nmigs, char *errstr,
			      size_t errlen)
{
	return sw_store_new_pool(base, conninfo, schema, migs, nmigs, 1, errstr, errlen);
}

void sw_store_destroy(struct sw_store *s)
{
	struct store_unit *u, *next;
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; s->conns != NULL && i < s->nconns; i++) {
		struct store_conn *c = &s->conns[i];

		if (c->s == NULL)
			continue; /* never opened */
		store_close(c);
		if (c->ev_timer != NULL)
			event_free(c->ev_timer);
		PQclear(c->res);
		free(c->err);
		free(c->items);
		free(c->preps);
		for (u = c->head; u != NULL; u = next) {
			next = u->next;
			store_unit_free(u);
		}
	}
	free(s->conns);
	if (s->sync_conn != NULL)
		PQfinish(s->sync_conn);
	free(s->conninfo);
	free(s);
}

int sw_store_query(struct sw_store *s, const char *sql, int nparams, const char *const *params,
		   sw_store_cb cb, void *opaque)
{
	return sw_store_query_key(s, NULL, sql, nparams, params, cb, opaque);
}

int sw_store_tx(struct sw_store *s, const struct sw_store_stmt *stmts, size_t n, sw_store_cb cb,
		void *opaque)
{
	return store_queue(s, NULL, 1, stmts, n, NULL, 0, cb, opaque);
}

int sw_store_query_key(struct sw_store *s, const char *key, const char *sql, int nparams,
		       const char *const *params, sw_store_cb cb, void *opaque)
{
	struct sw_store_stmt st = {sql, nparams, params};

	return store_queue(s, key, 0, &st, 1, NULL, 0, cb, opaque);
}

int sw_store_tx_key(struct sw_store *s, const char *key, const struct sw_store_stmt *stmts,
		    size_t n, sw_store_cb cb, void *opaque)
{
	return store_queue(s, key, 1, stmts, n, NULL, 0, cb, opaque);
}

int sw_store_tx_each(struct sw_store *s, const char *key, const struct sw_store_stmt *stmts,
		     size_t n, const struct sw_store_each *each, size_t neach, sw_store_cb cb,
		     void *opaque)
{
	return store_queue(s, key, 1, stmts, n, each, neach, cb, opaque);
}

size_t sw_store_pending(const struct sw_store *s)
{
	return s->npending;
}

int sw_store_connected(const struct sw_store *s)
{
	size_t i;

	for (i = 0; i < s->nconns; i++)
		if (s->conns[i].state != STORE_READY)
			return 0;
	return 1;
}

unsigned long sw_store_reconnects(const struct sw_store *s)
{
	unsigned long n = 0;
	size_t i;

	for (i = 0; i < s->nconns; i++)
		n += s->conns[i].reconnects;
	return n;
}

size_t sw_store_pool_size(const struct sw_store *s)
{
	return s->nconns;
}

/* ---- array literals -------------------------------------------------------- */

void sw_store_array_elem(struct sw_buf *b, const char *v, int first)
{
	const char *s, *run;

	if (!first)
		sw_buf_add(b, ",", 1);
	if (v == NULL) {
		sw_buf_puts(b, "NULL");
		return;
	}
	sw_buf_add(b, "\"", 1);
	for (s = run = v; *s; s++) {
		if (*s != '"' && *s != '\\')
			continue;
		sw_buf_add(b, run, (size_t)(s - run));
		sw_buf_add(b, "\\", 1);
		run = s;
	}
	sw_buf_add(b, run, (size_t)(s - run));
	sw_buf_add(b, "\"", 1);
}

char *sw_store_array(const char *const *v, size_t n)
{
	struct sw_buf b;
	size_t i;

	sw_buf_init(&b, 0);
	sw_buf_add(&b, "{", 1);
	for (i = 0; i < n; i++)
		sw_store_array_elem(&b, v[i], i == 0);
	sw_buf_add(&b, "}", 1);
	if (b.oom) {
		sw_buf_free(&b);
		return NULL;
	}
	return sw_buf_steal(&b, NULL);
}
