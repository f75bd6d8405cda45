/*
 * sw_store.c: PostgreSQL connections driven by a libevent loop.
 *
 * A store is a pool of one or more connections (struct store_conn), each
 * with its own FIFO queue, state and reconnect timer; a unit is routed to
 * a connection when it is queued (by key, or to the least loaded one) and
 * stays there, across reconnects, until it completes.
 *
 * Each async connection runs in libpq pipeline mode, non-blocking. The
 * head of its queue (a "unit": one statement, or BEGIN + statements +
 * COMMIT) is sent as one batch closed by a Sync, so a transaction costs
 * one round trip; the next unit is sent only when the previous one's Sync
 * came back. Results are matched to the batch by counting: libpq returns
 * each query's results followed by NULL, and the Sync as its own result.
 *
 * Statements are prepared per connection on first use: the batch carries
 * a Parse (PQsendPrepare) before the first Execute of an sql string, and
 * later batches execute it by name. An entry of the cache is trusted only
 * once its Parse answered; one whose Parse failed or was skipped (an
 * aborted pipeline) is forgotten when its batch ends, and the whole cache
 * with the connection.
 *
 * Connection loss (socket error, CONNECTION_BAD, SQLSTATE class 08,
 * 57P01-57P03) closes the connection and arms a backoff timer; the timer
 * starts a non-blocking PQconnectStart, PQconnectPoll is stepped on
 * socket readiness, and once connected the store sets search_path and
 * resends the head unit from its first statement.
 *
 * The blocking helpers (migrations at start, sw_store_exec_sync) use
 * PQexec on blocking connections and never touch the event loop.
 */
#include "sw_store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#ifndef LIBPQ_HAS_PIPELINING
#error "sw_store needs libpq >= 14 (pipeline mode)"
#endif

#define STORE_SCHEMA_MAX 63 /* NAMEDATALEN - 1 */
#define STORE_MAX_PARAMS 65535
#define STORE_BACKOFF_MIN_MS 50
#define STORE_BACKOFF_MAX_MS 5000
#define STORE_CONNECT_STEP_S 10 /* longest wait for one PQconnectPoll step */
#define STORE_POOL_MAX 64
#define STORE_PREP_MAX 256 /* prepared statements per connection */

struct store_stmt {
	char *sql;
	int nparams;
	char **params; /* nparams entries; NULL is SQL NULL */
};

/* A queued unit of work: what is sent as one pipeline batch. */
struct store_unit {
	struct store_unit *next;
	int tx; /* wrap in BEGIN ... COMMIT */
	size_t n;
	struct store_stmt *stmts;
	sw_store_cb cb;
	void *opaque;
};

enum store_state {
	STORE_READY,	  /* connected; the head unit may be in flight */
	STORE_SETUP,	  /* connected; SET search_path in flight */
	STORE_CONNECTING, /* PQconnectPoll in progress */
	STORE_BACKOFF,	  /* waiting for the timer before the next attempt */
};

enum store_phase {
	PHASE_SETUP,	/* SET search_path after a reconnect */
	PHASE_MAIN,	/* the head unit's statements */
	PHASE_ROLLBACK, /* ROLLBACK after a failed transaction */
};

/* A statement prepared (or being prepared) on one connection. */
struct store_prep {
	uint64_t hash;
	char *sql;
	char name[24];
	int ready; /* its Parse answered; 0: sent in the batch in flight */
};

struct sw_store;

/* One connection of the pool and its queue. */
struct store_conn {
	struct sw_store *s;
	PGconn *conn; /* NULL while disconnected */
	enum store_state state;
	struct event *ev_read;	/* persistent, on PQsocket while connected */
	struct event *ev_write; /* persistent, armed while libpq holds unsent output */
	struct event *ev_conn;	/* one PQconnectPoll step */
	struct event *ev_timer; /* backoff before reconnecting */
	unsigned backoff_ms;
	uint64_t rng; /* xorshift state for backoff jitter */
	unsigned long reconnects;

	struct store_unit *head, *tail;
	size_t npending;

	/* The batch in flight. */
	int inflight;
	enum store_phase phase;
	int nsent;     /* queries sent in the batch (Parses included), Sync excluded */
	int rx;	       /* index of the query whose results are being read */
	int last;      /* index of the query whose result the callback gets */
	int decided;   /* outcome known: finish with err rather than resend */
	PGresult *res; /* result of query `last`, kept until the Sync */
	char *err;     /* first error of the batch (malloc'd) */
	int *items;    /* per query of the batch: the preps index its Parse
			* makes, or -1 for an Execute */
	size_t cap_items;

	struct store_prep *preps; /* STORE_PREP_MAX slots */
	size_t nprep;
	unsigned long prep_seq; /* names: sw_<seq>, never reused on a connection */
};

struct sw_store {
	struct event_base *base;
	char *conninfo;
	char schema[STORE_SCHEMA_MAX + 1];
	char set_path[STORE_SCHEMA_MAX + 32]; /* SET search_path TO "schema" */
	PGconn *sync_conn;		      /* sw_store_exec_sync's, opened lazily */
	struct store_conn *conns;
	size_t nconns;
	size_t npending; /* over all connections */
	size_t rr;	 /* where the next least-loaded search starts */
};

static int store_lost(struct store_conn *c);
static void store_pump(struct store_conn *c);

static void store_notice(void *arg, const char *msg)
{
	/* Libraries do not log: notices (e.g. "schema exists, skipping") are dropped. */
	(void)arg;
	(void)msg;
}

static void store_trim(char *p)
{
	size_t n = strlen(p);

	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == ' ' || p[n - 1] == '\r'))
		p[--n] = '\0';
}

/* "<SQLSTATE>: <message>[ (<detail>)]" from a failed result, or the
 * connection's message when there is no result or no primary message. */
static void store_errfmt(char *buf, size_t len, const PGresult *r, const PGconn *c)
{
	const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;

	if (len == 0)
		return;
	if (msg == NULL) {
		msg = r ? PQresultErrorMessage(r) : "";
		if (*msg == '\0')
			msg = c ? PQerrorMessage(c) : "unknown error";
		if (*msg == '\0')
			msg = "unknown error";
	}
	snprintf(buf, len, "%s%s%s%s%s%s", code ? code : "", code ? ": " : "", msg,
		 detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
	store_trim(buf);
}

static char *store_errdup(const PGresult *r, const PGconn *c)
{
	char buf[1024];

	store_errfmt(buf, sizeof(buf), r, c);
	return strdup(buf);
}

/* 1 when a failed result means the connection is gone or going. */
static int store_conn_error(const PGresult *r, const PGconn *c)
{
	const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	if (c == NULL || PQstatus(c) == CONNECTION_BAD)
		return 1;
	if (code == NULL)
		return 0;
	return strncmp(code, "08", 2) == 0 || strcmp(code, "57P01") == 0 ||
	       strcmp(code, "57P02") == 0 || strcmp(code, "57P03") == 0;
}

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

static void store_unit_free(struct store_unit *u)
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
static uint64_t store_hash(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	return h;
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
		       const struct sw_store_stmt *stmts, size_t n, sw_store_cb cb, void *opaque)
{
	struct store_conn *c;
	struct store_unit *u;
	size_t i;

	if (s == NULL || stmts == NULL || n == 0 || n > (size_t)INT32_MAX / 4)
		return -1;
	for (i = 0; i < n; i++) {
		if (stmts[i].sql == NULL || stmts[i].nparams < 0 ||
		    stmts[i].nparams > STORE_MAX_PARAMS ||
		    (stmts[i].nparams > 0 && stmts[i].params == NULL))
			return -1;
	}
	if ((u = store_unit_new(tx, stmts, n, cb, opaque)) == NULL)
		return -1;
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

/* ---- prepared statements ---------------------------------------------- */

/* Worth preparing: a plain DML or query (not BEGIN, SET, ...). */
static int store_preparable(const char *sql)
{
	static const char *const kw[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"};
	size_t i, n;

	while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r' || *sql == '(')
		sql++;
	for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
		n = strlen(kw[i]);
		if (strncasecmp(sql, kw[i], n) == 0 &&
		    (sql[n] == ' ' || sql[n] == '\t' || sql[n] == '\n' || sql[n] == '\r' ||
		     sql[n] == '('))
			return 1;
	}
	return 0;
}

static int store_prep_find(const struct store_conn *c, const char *sql, uint64_t h)
{
	size_t i;

	for (i = 0; i < c->nprep; i++)
		if (c->preps[i].hash == h && strcmp(c->preps[i].sql, sql) == 0)
			return (int)i;
	return -1;
}

/* A new, not yet ready entry, or -1 when the cache is full (or no memory:
 * the statement then simply goes unprepared). */
static int store_prep_add(struct store_conn *c, const char *sql, uint64_t h)
{
	struct store_prep *p;

	if (c->preps == NULL || c->nprep == STORE_PREP_MAX)
		return -1;
	p = &c->preps[c->nprep];
	if ((p->sql = strdup(sql)) == NULL)
		return -1;
	p->hash = h;
	p->ready = 0;
	snprintf(p->name, sizeof(p->name), "sw_%lu", ++c->prep_seq);
	return (int)c->nprep++;
}

/* Forget the entries whose Parse did not answer (the batch is over), or
 * every entry (the session is gone). */
static void store_prep_sweep(struct store_conn *c, int all)
{
	size_t i = 0;

	while (i < c->nprep) {
		if (!all && c->preps[i].ready) {
			i++;
			continue;
		}
		free(c->preps[i].sql);
		c->preps[i] = c->preps[--c->nprep];
	}
}

/* ---- the batch in flight --------------------------------------------- */

static void store_batch_reset(struct store_conn *c)
{
	c->inflight = 0;
	c->nsent = 0;
	c->rx = 0;
	c->last = -1;
	c->decided = 0;
	PQclear(c->res);
	c->res = NULL;
	free(c->err);
	c->err = NULL;
}

/* Pop the head unit and report its outcome. The callback may queue more. */
static void store_finish(struct store_conn *c)
{
	struct store_unit *u = c->head;
	PGresult *res = c->res;
	char *err = c->err;

	c->res = NULL;
	c->err = NULL;
	store_batch_reset(c);
	if (u == NULL) {
		PQclear(res);
		free(err);
		return;
	}
	c->head = u->next;
	if (c->head == NULL)
		c->tail = NULL;
	c->npending--;
	c->s->npending--;
	if (u->cb != NULL) {
		if (err != NULL)
			u->cb(NULL, err, u->opaque);
		else
			u->cb(res, NULL, u->opaque);
	}
	PQclear(res);
	free(err);
	store_unit_free(u);
}

static int store_flush(struct store_conn *c)
{
	int r = PQflush(c->conn);

	if (r < 0)
		return store_lost(c);
	if (r > 0)
		event_add(c->ev_write, NULL);
	else
		event_del(c->ev_write);
	return 0;
}

/* Room for n queries in the batch's items. */
static int store_items_reserve(struct store_conn *c, size_t n)
{
	size_t cap = c->cap_items ? c->cap_items : 16;
	int *p;

	if (n <= c->cap_items)
		return 0;
	while (cap < n)
		cap *= 2;
	if ((p = realloc(c->items, cap * sizeof(*p))) == NULL)
		return -1;
	c->items = p;
	c->cap_items = cap;
	return 0;
}

/* The batch's error on a client-side failure: libpq's message when the
 * connection is healthy (a dead one is noticed by the Sync or the read). */
static void store_send_failed(struct store_conn *c, const char *why)
{
	if (c->err != NULL)
		return;
	if (why != NULL)
		c->err = strdup(why);
	else if (PQstatus(c->conn) != CONNECTION_BAD)
		c->err = store_errdup(NULL, c->conn);
}

/* Append one statement to the batch, preceded by its Parse when it is
 * worth preparing and not prepared yet (cache != 0). Returns the index of
 * its Execute in the batch, or -1. A client-side failure on a healthy
 * connection (e.g. out of memory) becomes the batch's error and stops
 * further sends; the Sync is still sent so the batch completes. */
static int store_send(struct store_conn *c, const char *sql, int nparams,
		      const char *const *params, int cache)
{
	int pi = -1, ok;
	uint64_t h;

	if (c->err != NULL)
		return -1;
	if (store_items_reserve(c, (size_t)c->nsent + 2) < 0) {
		store_send_failed(c, "out of memory");
		return -1;
	}
	if (cache && store_preparable(sql)) {
		h = store_hash(sql);
		if ((pi = store_prep_find(c, sql, h)) < 0 &&
		    (pi = store_prep_add(c, sql, h)) >= 0) {
			if (!PQsendPrepare(c->conn, c->preps[pi].name, sql, 0, NULL)) {
				store_send_failed(c, NULL);
				return -1;
			}
			c->items[c->nsent++] = pi;
		}
	}
	if (pi >= 0)
		ok = PQsendQueryPrepared(c->conn, c->preps[pi].name, nparams, params, NULL, NULL,
					 0);
	else
		ok = PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!ok) {
		store_send_failed(c, NULL);
		return -1;
	}
	c->items[c->nsent] = -1;
	return c->nsent++;
}

static int store_sync(struct store_conn *c)
{
	if (!PQpipelineSync(c->conn))
		return store_lost(c);
	return store_flush(c);
}

static int store_send_unit(struct store_conn *c)
{
	struct store_unit *u = c->head;
	size_t i;
	int idx;

	store_batch_reset(c);
	c->inflight = 1;
	c->phase = PHASE_MAIN;
	if (u->tx && store_send(c, "BEGIN", 0, NULL, 0) < 0)
		goto sync;
	for (i = 0; i < u->n; i++) {
		struct store_stmt *st = &u->stmts[i];

		idx = store_send(c, st->sql, st->nparams, (const char *const *)st->params, 1);
		if (idx < 0)
			goto sync;
		if (i + 1 == u->n)
			c->last = idx;
	}
	if (u->tx)
		store_send(c, "COMMIT", 0, NULL, 0);
sync:
	return store_sync(c);
}

static void store_pump(struct store_conn *c)
{
	if (c->state != STORE_READY || c->inflight || c->head == NULL)
		return;
	store_send_unit(c);
}

/* Send one unprepared statement as a batch of its own (search_path after
 * a reconnect, ROLLBACK after a failed transaction). */
static int store_send_alone(struct store_conn *c, const char *sql)
{
	c->nsent = 0;
	c->rx = 0;
	c->last = -1;
	if (store_items_reserve(c, 1) < 0 ||
	    !PQsendQueryParams(c->conn, sql, 0, NULL, NULL, NULL, NULL, 0))
		return store_lost(c);
	c->items[0] = -1;
	c->nsent = 1;
	return store_sync(c);
}

/* The Sync closing the batch arrived: every query of it has answered. */
static int store_batch_done(struct store_conn *c)
{
	store_prep_sweep(c, 0);
	switch (c->phase) {
	case PHASE_SETUP:
		if (c->err != NULL)
			return store_lost(c);
		store_batch_reset(c);
		c->state = STORE_READY;
		c->backoff_ms = 0;
		c->reconnects++;
		store_pump(c);
		return 0;
	case PHASE_MAIN:
		if (c->head->tx && c->err != NULL) {
			/* The block is left aborted (or open, after a client-side
			 * failure): end it before the next unit. */
			PQclear(c->res);
			c->res = NULL;
			c->phase = PHASE_ROLLBACK;
			c->decided = 1;
			return store_send_alone(c, "ROLLBACK");
		}
		store_finish(c);
		store_pump(c);
		return 0;
	case PHASE_ROLLBACK:
		store_finish(c);
		store_pump(c);
		return 0;
	}
	return 0;
}

/* Consume one result of the batch. Returns -1 when the connection was
 * dropped meanwhile (the caller must stop touching it). */
static int store_result(struct store_conn *c, PGresult *r)
{
	switch (PQresultStatus(r)) {
	case PGRES_PIPELINE_SYNC:
		PQclear(r);
		return store_batch_done(c);
	case PGRES_PIPELINE_ABORTED:
		PQclear(r);
		return 0;
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
	case PGRES_SINGLE_TUPLE:
		if (c->rx < c->nsent && c->items[c->rx] >= 0)
			c->preps[c->items[c->rx]].ready = 1; /* a Parse answered */
		if (c->phase == PHASE_MAIN && c->rx == c->last) {
			PQclear(c->res);
			c->res = r;
		} else {
			PQclear(r);
		}
		return 0;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
		/* Not supported: the connection is in COPY state; drop it and
		 * fail the unit (a resend would do the same again). */
		PQclear(r);
		if (c->err == NULL)
			c->err = strdup("COPY is not supported by sw_store");
		c->decided = 1;
		return store_lost(c);
	default:
		if (store_conn_error(r, c->conn)) {
			PQclear(r);
			return store_lost(c);
		}
		if (c->err == NULL)
			c->err = store_errdup(r, c->conn);
		PQclear(r);
		return 0;
	}
}

/* Read every result libpq has complete, in order. */
static void store_drain(struct store_conn *c)
{
	PGresult *r;

	while (c->conn != NULL && c->inflight && !PQisBusy(c->conn)) {
		if ((r = PQgetResult(c->conn)) == NULL) {
			/* End of one query's results; nothing more buffered
			 * when we are already waiting for the Sync. */
			if (c->rx >= c->nsent)
				break;
			c->rx++;
			continue;
		}
		if (store_result(c, r) < 0)
			return;
	}
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_BAD)
		store_lost(c);
}

static void store_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_conn *c = arg;
	PGnotify *n;

	(void)fd;
	(void)what;
	if (!PQconsumeInput(c->conn)) {
		store_lost(c);
		return;
	}
	/* nothing here LISTENs, but a statement might: do not accumulate */
	while ((n = PQnotifies(c->conn)) != NULL)
		PQfreemem(n);
	if (event_pending(c->ev_write, EV_WRITE, NULL) && store_flush(c) < 0)
		return;
	store_drain(c);
}

static void store_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_conn *c = arg;

	(void)fd;
	(void)what;
	if (store_flush(c) < 0)
		return;
	/* Flushing may have read input to avoid a deadlock: parse it. */
	store_drain(c);
}

/* ---- connection life cycle ------------------------------------------- */

static void store_close(struct store_conn *c)
{
	if (c->ev_read != NULL) {
		event_free(c->ev_read);
		c->ev_read = NULL;
	}
	if (c->ev_write != NULL) {
		event_free(c->ev_write);
		c->ev_write = NULL;
	}
	if (c->ev_conn != NULL) {
		event_free(c->ev_conn);
		c->ev_conn = NULL;
	}
	if (c->conn != NULL) {
		PQfinish(c->conn);
		c->conn = NULL;
	}
	store_prep_sweep(c, 1); /* prepared statements die with the session */
}

static void store_backoff(struct store_conn *c)
{
	struct timeval tv;
	unsigned ms;

	if (c->backoff_ms == 0)
		c->backoff_ms = STORE_BACKOFF_MIN_MS;
	else if (c->backoff_ms < STORE_BACKOFF_MAX_MS / 2)
		c->backoff_ms *= 2;
	else
		c->backoff_ms = STORE_BACKOFF_MAX_MS;
	/* +-25% jitter so that many services do not reconnect in step */
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	ms = c->backoff_ms - c->backoff_ms / 4 + (unsigned)(c->rng % (c->backoff_ms / 2 + 1));
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	c->state = STORE_BACKOFF;
	evtimer_add(c->ev_timer, &tv);
}

/* The connection is gone: close it, keep the head unit for a resend
 * (unless its outcome is already known) and schedule a reconnect.
 * Always returns -1. */
static int store_lost(struct store_conn *c)
{
	int finish = c->inflight && c->phase != PHASE_SETUP && c->decided;

	store_close(c);
	store_backoff(c);
	if (finish) {
		/* A failed transaction whose ROLLBACK was cut off, or a COPY:
		 * the server has rolled back; report the error we hold. */
		store_finish(c);
	} else {
		store_batch_reset(c);
	}
	return -1;
}

/* Make a fresh connection the async one: non-blocking, pipeline mode,
 * watched by the loop. */
static int store_attach(struct store_conn *c)
{
	int fd = PQsocket(c->conn);

	if (fd < 0 || PQsetnonblocking(c->conn, 1) != 0 || !PQenterPipelineMode(c->conn))
		return -1;
	c->ev_read = event_new(c->s->base, fd, EV_READ | EV_PERSIST, store_read_cb, c);
	c->ev_write = event_new(c->s->base, fd, EV_WRITE | EV_PERSIST, store_write_cb, c);
	if (c->ev_read == NULL || c->ev_write == NULL || event_add(c->ev_read, NULL) < 0)
		return -1;
	return 0;
}

static void store_connect_cb(evutil_socket_t fd, short what, void *arg);

static int store_connect_wait(struct store_conn *c, PostgresPollingStatusType poll)
{
	struct timeval tv = {STORE_CONNECT_STEP_S, 0};
	int fd = PQsocket(c->conn);

	if (fd < 0)
		return -1;
	if (c->ev_conn != NULL)
		event_free(c->ev_conn);
	c->ev_conn = event_new(c->s->base, fd, poll == PGRES_POLLING_READING ? EV_READ : EV_WRITE,
			       store_connect_cb, c);
	if (c->ev_conn == NULL || event_add(c->ev_conn, &tv) < 0)
		return -1;
	return 0;
}

static void store_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_conn *c = arg;
	PostgresPollingStatusType poll;

	(void)fd;
	if (what & EV_TIMEOUT)
		goto fail;
	poll = PQconnectPoll(c->conn);
	if (poll == PGRES_POLLING_READING || poll == PGRES_POLLING_WRITING) {
		if (store_connect_wait(c, poll) < 0)
			goto fail;
		return;
	}
	if (poll != PGRES_POLLING_OK)
		goto fail;
	event_free(c->ev_conn);
	c->ev_conn = NULL;
	if (store_attach(c) < 0)
		goto fail;
	/* Session state is lost with the connection: set search_path
	 * again before resending anything. */
	store_batch_reset(c);
	c->state = STORE_SETUP;
	c->phase = PHASE_SETUP;
	c->inflight = 1;
	if (store_send_alone(c, c->s->set_path) == 0)
		store_drain(c);
	return;
fail:
	store_close(c);
	store_backoff(c);
}

static void store_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_conn *c = arg;

	(void)fd;
	(void)what;
	c->conn = PQconnectStart(c->s->conninfo);
	if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD)
		goto fail;
	PQsetNoticeProcessor(c->conn, store_notice, NULL);
	c->state = STORE_CONNECTING;
	/* libpq: behave as if the last poll said "writing" */
	if (store_connect_wait(c, PGRES_POLLING_WRITING) < 0)
		goto fail;
	return;
fail:
	store_close(c);
	store_backoff(c);
}

/* ---- blocking helpers (start-up, exec_sync) -------------------------- */

/* Run one statement on a blocking connection; a NULL *out discards the
 * result. nparams < 0 runs sql with PQexec (several statements allowed).
 * On failure fills errstr with "<what>: <error>" and returns -1. */
static int store_run(PGconn *c, const char *what, const char *sql, int nparams,
		     const char *const *params, PGresult **out, char *errstr, size_t errlen)
{
	PGresult *r;
	char msg[1024];

	if (nparams < 0)
		r = PQexec(c, sql);
	else
		r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
	switch (PQresultStatus(r)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		if (out != NULL)
			*out = r;
		else
			PQclear(r);
		return 0;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
		snprintf(errstr, errlen, "%s: COPY is not supported", what);
		break;
	default:
		store_errfmt(msg, sizeof(msg), r, c);
		snprintf(errstr, errlen, "%s: %s", what, msg);
		break;
	}
	PQclear(r);
	return -1;
}

static PGconn *store_connect_sync(const char *conninfo, const char *set_path, char *errstr,
				  size_t errlen)
{
	PGconn *c = PQconnectdb(conninfo);
	char msg[1024];

	if (c == NULL) {
		snprintf(errstr, errlen, "connect: out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		store_errfmt(msg, sizeof(msg), NULL, c);
		snprintf(errstr, errlen, "connect: %s", msg);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, store_notice, NULL);
	if (set_path != NULL &&
	    store_run(c, "search_path", set_path, 0, NULL, NULL, errstr, errlen) < 0) {
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Create the schema and the migrations table, then apply each migration
 * not yet recorded, each in its own transaction under an advisory lock
 * keyed on the schema name, re-checking the version under the lock. */
static int store_migrate(struct sw_store *s, PGconn *c, const struct sw_migration *migs,
			 size_t nmigs, char *errstr, size_t errlen)
{
	const char *lock = "SELECT pg_advisory_xact_lock(hashtext($1))";
	const char *has = "SELECT 1 FROM schema_migrations WHERE version = $1";
	const char *record = "INSERT INTO schema_migrations (version, applied_at) "
			     "VALUES ($1, now())";
	const char *schema_p[1] = {s->schema};
	PGresult *r = NULL;
	char sql[256], what[64], ver[16];
	const char *ver_p[1] = {ver};
	size_t i;
	int found;

	/* The catalog check first: CREATE SCHEMA needs database CREATE
	 * rights even when the schema exists (pre-created by a DBA). */
	if (store_run(c, "begin", "BEGIN", 0, NULL, NULL, errstr, errlen) < 0 ||
	    store_run(c, "lock", lock, 1, schema_p, NULL, errstr, errlen) < 0 ||
	    store_run(c, "schema", "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, schema_p,
		      &r, errstr, errlen) < 0)
		goto fail;
	found = PQntuples(r) > 0;
	PQclear(r);
	r = NULL;
	snprintf(sql, sizeof(sql), "CREATE SCHEMA \"%s\"", s->schema);
	if (!found && store_run(c, "schema", sql, 0, NULL, NULL, errstr, errlen) < 0)
		goto fail;
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE IF NOT EXISTS \"%s\".schema_migrations ("
		 "version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		 s->schema);
	if (store_run(c, "schema_migrations", sql, 0, NULL, NULL, errstr, errlen) < 0 ||
	    store_run(c, "commit", "COMMIT", 0, NULL, NULL, errstr, errlen) < 0 ||
	    store_run(c, "search_path", s->set_path, 0, NULL, NULL, errstr, errlen) < 0)
		goto fail;

	for (i = 0; i < nmigs; i++) {
		snprintf(ver, sizeof(ver), "%d", migs[i].version);
		snprintf(what, sizeof(what), "migration %d", migs[i].version);
		/* cheap pre-check without the lock: the common case is "applied" */
		if (store_run(c, what, has, 1, ver_p, &r, errstr, errlen) < 0)
			goto fail;
		found = PQntuples(r) > 0;
		PQclear(r);
		r = NULL;
		if (found)
			continue;
		if (store_run(c, what, "BEGIN", 0, NULL, NULL, errstr, errlen) < 0 ||
		    store_run(c, what, lock, 1, schema_p, NULL, errstr, errlen) < 0 ||
		    store_run(c, what, has, 1, ver_p, &r, errstr, errlen) < 0)
			goto fail;
		found = PQntuples(r) > 0;
		PQclear(r);
		r = NULL;
		if (!found &&
		    (store_run(c, what, migs[i].sql, -1, NULL, NULL, errstr, errlen) < 0 ||
		     store_run(c, what, record, 1, ver_p, NULL, errstr, errlen) < 0))
			goto fail;
		if (store_run(c, what, "COMMIT", 0, NULL, NULL, errstr, errlen) < 0)
			goto fail;
	}
	return 0;
fail:
	PQclear(r);
	if (PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	return -1;
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
	return store_queue(s, NULL, 1, stmts, n, cb, opaque);
}

int sw_store_query_key(struct sw_store *s, const char *key, const char *sql, int nparams,
		       const char *const *params, sw_store_cb cb, void *opaque)
{
	struct sw_store_stmt st = {sql, nparams, params};

	return store_queue(s, key, 0, &st, 1, cb, opaque);
}

int sw_store_tx_key(struct sw_store *s, const char *key, const struct sw_store_stmt *stmts,
		    size_t n, sw_store_cb cb, void *opaque)
{
	return store_queue(s, key, 1, stmts, n, cb, opaque);
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

PGresult *sw_store_exec_sync(struct sw_store *s, const char *sql, int nparams,
			     const char *const *params, char *errstr, size_t errlen)
{
	PGresult *r = NULL;
	int attempt;

	if (s == NULL || sql == NULL || nparams < 0 || nparams > STORE_MAX_PARAMS ||
	    (nparams > 0 && params == NULL)) {
		snprintf(errstr, errlen, "store: invalid arguments");
		return NULL;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		if (s->sync_conn != NULL && PQstatus(s->sync_conn) == CONNECTION_BAD) {
			PQfinish(s->sync_conn);
			s->sync_conn = NULL;
		}
		if (s->sync_conn == NULL &&
		    (s->sync_conn =
			 store_connect_sync(s->conninfo, s->set_path, errstr, errlen)) == NULL)
			return NULL;
		if (store_run(s->sync_conn, "exec", sql, nparams == 0 ? -1 : nparams, params, &r,
			      errstr, errlen) == 0)
			return r;
		/* A connection that died since the last call (server
		 * restart): reconnect once and run the statement again. */
		if (PQstatus(s->sync_conn) != CONNECTION_BAD)
			return NULL;
	}
	return NULL;
}
