/*
 * sw_store.c: one PostgreSQL connection driven by a libevent loop.
 *
 * The async connection runs in libpq pipeline mode, non-blocking. The
 * head of the FIFO queue (a "unit": one statement, or BEGIN + statements
 * + COMMIT) is sent as one batch closed by a Sync, so a transaction costs
 * one round trip; the next unit is sent only when the previous one's Sync
 * came back. Results are matched to the batch by counting: libpq returns
 * each query's results followed by NULL, and the Sync as its own result.
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
	STORE_READY,      /* connected; the head unit may be in flight */
	STORE_SETUP,      /* connected; SET search_path in flight */
	STORE_CONNECTING, /* PQconnectPoll in progress */
	STORE_BACKOFF,    /* waiting for the timer before the next attempt */
};

enum store_phase {
	PHASE_SETUP,    /* SET search_path after a reconnect */
	PHASE_MAIN,     /* the head unit's statements */
	PHASE_ROLLBACK, /* ROLLBACK after a failed transaction */
};

struct sw_store {
	struct event_base *base;
	char *conninfo;
	char schema[STORE_SCHEMA_MAX + 1];
	char set_path[STORE_SCHEMA_MAX + 32]; /* SET search_path TO "schema" */
	PGconn *conn;                         /* the async connection, or NULL */
	PGconn *sync_conn;                    /* sw_store_exec_sync's, opened lazily */
	enum store_state state;
	struct event *ev_read;  /* persistent, on PQsocket while connected */
	struct event *ev_write; /* persistent, armed while libpq holds unsent output */
	struct event *ev_conn;  /* one PQconnectPoll step */
	struct event *ev_timer; /* backoff before reconnecting */
	unsigned backoff_ms;
	uint64_t rng; /* xorshift state for backoff jitter */
	unsigned long reconnects;

	struct store_unit *head, *tail;
	size_t npending;

	/* The batch in flight. */
	int inflight;
	enum store_phase phase;
	int nsent;     /* queries sent in the batch, Sync excluded */
	int rx;        /* index of the query whose results are being read */
	int last;      /* index of the query whose result the callback gets */
	int decided;   /* outcome known: finish with err rather than resend */
	PGresult *res; /* result of query `last`, kept until the Sync */
	char *err;     /* first error of the batch (malloc'd) */
};

static int store_lost(struct sw_store *s);
static void store_pump(struct sw_store *s);

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

static int store_queue(struct sw_store *s, int tx, const struct sw_store_stmt *stmts, size_t n,
		       sw_store_cb cb, void *opaque)
{
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
	if (s->tail != NULL)
		s->tail->next = u;
	else
		s->head = u;
	s->tail = u;
	s->npending++;
	store_pump(s);
	return 0;
}

/* ---- the batch in flight --------------------------------------------- */

static void store_batch_reset(struct sw_store *s)
{
	s->inflight = 0;
	s->nsent = 0;
	s->rx = 0;
	s->last = -1;
	s->decided = 0;
	PQclear(s->res);
	s->res = NULL;
	free(s->err);
	s->err = NULL;
}

/* Pop the head unit and report its outcome. The callback may queue more. */
static void store_finish(struct sw_store *s)
{
	struct store_unit *u = s->head;
	PGresult *res = s->res;
	char *err = s->err;

	s->res = NULL;
	s->err = NULL;
	store_batch_reset(s);
	if (u == NULL) {
		PQclear(res);
		free(err);
		return;
	}
	s->head = u->next;
	if (s->head == NULL)
		s->tail = NULL;
	s->npending--;
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

static int store_flush(struct sw_store *s)
{
	int r = PQflush(s->conn);

	if (r < 0)
		return store_lost(s);
	if (r > 0)
		event_add(s->ev_write, NULL);
	else
		event_del(s->ev_write);
	return 0;
}

/* Append one query to the batch. A client-side failure on a healthy
 * connection (e.g. out of memory) becomes the batch's error and stops
 * further sends; the Sync is still sent so the batch completes. */
static int store_send(struct sw_store *s, const char *sql, int nparams,
		      const char *const *params)
{
	if (s->err != NULL)
		return -1;
	if (!PQsendQueryParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
		if (PQstatus(s->conn) != CONNECTION_BAD)
			s->err = store_errdup(NULL, s->conn);
		return -1;
	}
	s->nsent++;
	return 0;
}

static int store_sync(struct sw_store *s)
{
	if (!PQpipelineSync(s->conn))
		return store_lost(s);
	return store_flush(s);
}

static int store_send_unit(struct sw_store *s)
{
	struct store_unit *u = s->head;
	size_t i;

	store_batch_reset(s);
	s->inflight = 1;
	s->phase = PHASE_MAIN;
	s->last = u->tx ? (int)u->n : 0;
	if (u->tx && store_send(s, "BEGIN", 0, NULL) < 0)
		goto sync;
	for (i = 0; i < u->n; i++) {
		struct store_stmt *st = &u->stmts[i];

		if (store_send(s, st->sql, st->nparams, (const char *const *)st->params) < 0)
			goto sync;
	}
	if (u->tx)
		store_send(s, "COMMIT", 0, NULL);
sync:
	return store_sync(s);
}

static void store_pump(struct sw_store *s)
{
	if (s->state != STORE_READY || s->inflight || s->head == NULL)
		return;
	store_send_unit(s);
}

/* The Sync closing the batch arrived: every query of it has answered. */
static int store_batch_done(struct sw_store *s)
{
	switch (s->phase) {
	case PHASE_SETUP:
		if (s->err != NULL)
			return store_lost(s);
		store_batch_reset(s);
		s->state = STORE_READY;
		s->backoff_ms = 0;
		s->reconnects++;
		store_pump(s);
		return 0;
	case PHASE_MAIN:
		if (s->head->tx && s->err != NULL) {
			/* The block is left aborted (or open, after a client-side
			 * failure): end it before the next unit. */
			PQclear(s->res);
			s->res = NULL;
			s->phase = PHASE_ROLLBACK;
			s->nsent = 0;
			s->rx = 0;
			s->last = -1;
			s->decided = 1;
			if (!PQsendQueryParams(s->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0))
				return store_lost(s);
			s->nsent = 1;
			return store_sync(s);
		}
		store_finish(s);
		store_pump(s);
		return 0;
	case PHASE_ROLLBACK:
		store_finish(s);
		store_pump(s);
		return 0;
	}
	return 0;
}

/* Consume one result of the batch. Returns -1 when the connection was
 * dropped meanwhile (the caller must stop touching it). */
static int store_result(struct sw_store *s, PGresult *r)
{
	switch (PQresultStatus(r)) {
	case PGRES_PIPELINE_SYNC:
		PQclear(r);
		return store_batch_done(s);
	case PGRES_PIPELINE_ABORTED:
		PQclear(r);
		return 0;
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
	case PGRES_SINGLE_TUPLE:
		if (s->phase == PHASE_MAIN && s->rx == s->last) {
			PQclear(s->res);
			s->res = r;
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
		if (s->err == NULL)
			s->err = strdup("COPY is not supported by sw_store");
		s->decided = 1;
		return store_lost(s);
	default:
		if (store_conn_error(r, s->conn)) {
			PQclear(r);
			return store_lost(s);
		}
		if (s->err == NULL)
			s->err = store_errdup(r, s->conn);
		PQclear(r);
		return 0;
	}
}

/* Read every result libpq has complete, in order. */
static void store_drain(struct sw_store *s)
{
	PGresult *r;

	while (s->conn != NULL && s->inflight && !PQisBusy(s->conn)) {
		if ((r = PQgetResult(s->conn)) == NULL) {
			/* End of one query's results; nothing more buffered
			 * when we are already waiting for the Sync. */
			if (s->rx >= s->nsent)
				break;
			s->rx++;
			continue;
		}
		if (store_result(s, r) < 0)
			return;
	}
	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_BAD)
		store_lost(s);
}

static void store_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_store *s = arg;
	PGnotify *n;

	(void)fd;
	(void)what;
	if (!PQconsumeInput(s->conn)) {
		store_lost(s);
		return;
	}
	/* nothing here LISTENs, but a statement might: do not accumulate */
	while ((n = PQnotifies(s->conn)) != NULL)
		PQfreemem(n);
	if (event_pending(s->ev_write, EV_WRITE, NULL) && store_flush(s) < 0)
		return;
	store_drain(s);
}

static void store_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_store *s = arg;

	(void)fd;
	(void)what;
	if (store_flush(s) < 0)
		return;
	/* Flushing may have read input to avoid a deadlock: parse it. */
	store_drain(s);
}

/* ---- connection life cycle ------------------------------------------- */

static void store_close(struct sw_store *s)
{
	if (s->ev_read != NULL) {
		event_free(s->ev_read);
		s->ev_read = NULL;
	}
	if (s->ev_write != NULL) {
		event_free(s->ev_write);
		s->ev_write = NULL;
	}
	if (s->ev_conn != NULL) {
		event_free(s->ev_conn);
		s->ev_conn = NULL;
	}
	if (s->conn != NULL) {
		PQfinish(s->conn);
		s->conn = NULL;
	}
}

static void store_backoff(struct sw_store *s)
{
	struct timeval tv;
	unsigned ms;

	if (s->backoff_ms == 0)
		s->backoff_ms = STORE_BACKOFF_MIN_MS;
	else if (s->backoff_ms < STORE_BACKOFF_MAX_MS / 2)
		s->backoff_ms *= 2;
	else
		s->backoff_ms = STORE_BACKOFF_MAX_MS;
	/* +-25% jitter so that many services do not reconnect in step */
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	ms = s->backoff_ms - s->backoff_ms / 4 + (unsigned)(s->rng % (s->backoff_ms / 2 + 1));
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	s->state = STORE_BACKOFF;
	evtimer_add(s->ev_timer, &tv);
}

/* The connection is gone: close it, keep the head unit for a resend
 * (unless its outcome is already known) and schedule a reconnect.
 * Always returns -1. */
static int store_lost(struct sw_store *s)
{
	int finish = s->inflight && s->phase != PHASE_SETUP && s->decided;

	store_close(s);
	store_backoff(s);
	if (finish) {
		/* A failed transaction whose ROLLBACK was cut off, or a COPY:
		 * the server has rolled back; report the error we hold. */
		store_finish(s);
	} else {
		store_batch_reset(s);
	}
	return -1;
}

/* Make a fresh connection the async one: non-blocking, pipeline mode,
 * watched by the loop. */
static int store_attach(struct sw_store *s)
{
	int fd = PQsocket(s->conn);

	if (fd < 0 || PQsetnonblocking(s->conn, 1) != 0 || !PQenterPipelineMode(s->conn))
		return -1;
	s->ev_read = event_new(s->base, fd, EV_READ | EV_PERSIST, store_read_cb, s);
	s->ev_write = event_new(s->base, fd, EV_WRITE | EV_PERSIST, store_write_cb, s);
	if (s->ev_read == NULL || s->ev_write == NULL || event_add(s->ev_read, NULL) < 0)
		return -1;
	return 0;
}

static void store_connect_cb(evutil_socket_t fd, short what, void *arg);

static int store_connect_wait(struct sw_store *s, PostgresPollingStatusType poll)
{
	struct timeval tv = {STORE_CONNECT_STEP_S, 0};
	int fd = PQsocket(s->conn);

	if (fd < 0)
		return -1;
	if (s->ev_conn != NULL)
		event_free(s->ev_conn);
	s->ev_conn = event_new(s->base, fd, poll == PGRES_POLLING_READING ? EV_READ : EV_WRITE,
			       store_connect_cb, s);
	if (s->ev_conn == NULL || event_add(s->ev_conn, &tv) < 0)
		return -1;
	return 0;
}

static void store_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_store *s = arg;
	PostgresPollingStatusType poll;

	(void)fd;
	if (what & EV_TIMEOUT)
		goto fail;
	poll = PQconnectPoll(s->conn);
	if (poll == PGRES_POLLING_READING || poll == PGRES_POLLING_WRITING) {
		if (store_connect_wait(s, poll) < 0)
			goto fail;
		return;
	}
	if (poll != PGRES_POLLING_OK)
		goto fail;
	event_free(s->ev_conn);
	s->ev_conn = NULL;
	if (store_attach(s) < 0)
		goto fail;
	/* Session state is lost with the connection: set search_path
	 * again before resending anything. */
	store_batch_reset(s);
	s->state = STORE_SETUP;
	s->phase = PHASE_SETUP;
	s->inflight = 1;
	if (!PQsendQueryParams(s->conn, s->set_path, 0, NULL, NULL, NULL, NULL, 0)) {
		store_lost(s);
		return;
	}
	s->nsent = 1;
	if (store_sync(s) == 0)
		store_drain(s);
	return;
fail:
	store_close(s);
	store_backoff(s);
}

static void store_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_store *s = arg;

	(void)fd;
	(void)what;
	s->conn = PQconnectStart(s->conninfo);
	if (s->conn == NULL || PQstatus(s->conn) == CONNECTION_BAD)
		goto fail;
	PQsetNoticeProcessor(s->conn, store_notice, NULL);
	s->state = STORE_CONNECTING;
	/* libpq: behave as if the last poll said "writing" */
	if (store_connect_wait(s, PGRES_POLLING_WRITING) < 0)
		goto fail;
	return;
fail:
	store_close(s);
	store_backoff(s);
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
	if (set_path != NULL && store_run(c, "search_path", set_path, 0, NULL, NULL, errstr,
					  errlen) < 0) {
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Create the schema and the migrations table, then apply each migration
 * not yet recorded, each in its own transaction under an advisory lock
 * keyed on the schema name, re-checking the version under the lock. */
static int store_migrate(struct sw_store *s, const struct sw_migration *migs, size_t nmigs,
			 char *errstr, size_t errlen)
{
	const char *lock = "SELECT pg_advisory_xact_lock(hashtext($1))";
	const char *has = "SELECT 1 FROM schema_migrations WHERE version = $1";
	const char *record = "INSERT INTO schema_migrations (version, applied_at) "
			     "VALUES ($1, now())";
	const char *schema_p[1] = {s->schema};
	PGconn *c = s->conn;
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

struct sw_store *sw_store_new(struct event_base *base, const char *conninfo, const char *schema,
			      const struct sw_migration *migs, size_t nmigs, char *errstr,
			      size_t errlen)
{
	struct sw_store *s = NULL;
	struct timespec ts;
	size_t i;

	if (base == NULL || conninfo == NULL) {
		snprintf(errstr, errlen, "store: no event base or conninfo");
		return NULL;
	}
	if (!store_schema_valid(schema)) {
		snprintf(errstr, errlen, "store: invalid schema name (want [a-z_][a-z0-9_]*, "
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
	clock_gettime(CLOCK_MONOTONIC, &ts);
	s->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)s ^ (uint64_t)ts.tv_sec;
	if (s->rng == 0)
		s->rng = 0x9e3779b97f4a7c15ULL;
	if ((s->conninfo = strdup(conninfo)) == NULL)
		goto oom;
	if ((s->ev_timer = evtimer_new(base, store_timer_cb, s)) == NULL)
		goto oom;
	if ((s->conn = store_connect_sync(conninfo, NULL, errstr, errlen)) == NULL)
		goto fail;
	if (store_migrate(s, migs, nmigs, errstr, errlen) < 0)
		goto fail;
	if (store_attach(s) < 0) {
		snprintf(errstr, errlen, "store: cannot watch the connection: %s",
			 PQerrorMessage(s->conn));
		store_trim(errstr);
		goto fail;
	}
	s->state = STORE_READY;
	s->last = -1;
	return s;
oom:
	snprintf(errstr, errlen, "store: out of memory");
fail:
	sw_store_destroy(s);
	return NULL;
}

void sw_store_destroy(struct sw_store *s)
{
	struct store_unit *u, *next;

	if (s == NULL)
		return;
	store_close(s);
	if (s->ev_timer != NULL)
		event_free(s->ev_timer);
	if (s->sync_conn != NULL)
		PQfinish(s->sync_conn);
	PQclear(s->res);
	free(s->err);
	for (u = s->head; u != NULL; u = next) {
		next = u->next;
		store_unit_free(u);
	}
	free(s->conninfo);
	free(s);
}

int sw_store_query(struct sw_store *s, const char *sql, int nparams, const char *const *params,
		   sw_store_cb cb, void *opaque)
{
	struct sw_store_stmt st = {sql, nparams, params};

	return store_queue(s, 0, &st, 1, cb, opaque);
}

int sw_store_tx(struct sw_store *s, const struct sw_store_stmt *stmts, size_t n, sw_store_cb cb,
		void *opaque)
{
	return store_queue(s, 1, stmts, n, cb, opaque);
}

size_t sw_store_pending(const struct sw_store *s)
{
	return s->npending;
}

int sw_store_connected(const struct sw_store *s)
{
	return s->state == STORE_READY;
}

unsigned long sw_store_reconnects(const struct sw_store *s)
{
	return s->reconnects;
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
		    (s->sync_conn = store_connect_sync(s->conninfo, s->set_path, errstr,
						       errlen)) == NULL)
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
