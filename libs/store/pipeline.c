/*
 * pipeline.c: the batch in flight on one connection.
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
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store_int.h"
#include "sw_core.h"

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
 * the statement then simply goes unprepared). A full cache is a caller
 * making statement texts without bound (a literal, a list of n values in
 * the text): said once a connection, since every statement after it is
 * then parsed and planned at each use. */
static int store_prep_add(struct store_conn *c, const char *sql, uint64_t h)
{
	struct store_prep *p;

	if (c->preps == NULL)
		return -1;
	if (c->nprep == STORE_PREP_MAX) {
		if (!c->prep_full_said) {
			c->prep_full_said = 1;
			sw_log(
			    SW_LOG_WARN,
			    "prepared statement cache full: statements not yet prepared on this "
			    "connection are planned at each use",
			    "max", STORE_PREP_MAX_S, NULL);
		}
		return -1;
	}
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
void store_prep_sweep(struct store_conn *c, int all)
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

void store_batch_reset(struct store_conn *c)
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
void store_finish(struct store_conn *c)
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
	if (err == NULL) {
		size_t i;

		for (i = 0; i < u->n; i++)
			if (u->stmts[i].cb != NULL)
				u->stmts[i].cb(u->stmts[i].res != NULL ? u->stmts[i].res
					       : i + 1 == u->n	       ? res
								       : NULL,
					       NULL, u->stmts[i].opaque);
	}
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
		      const char *const *params, int cache, int item)
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
	c->items[c->nsent] = item;
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
	if (u->tx && store_send(c, "BEGIN", 0, NULL, 0, -1) < 0)
		goto sync;
	for (i = 0; i < u->n; i++) {
		struct store_stmt *st = &u->stmts[i];

		PQclear(st->res); /* a resend's: this batch answers again */
		st->res = NULL;
		idx = store_send(c, st->sql, st->nparams, (const char *const *)st->params, 1,
				 -2 - (int)i);
		if (idx < 0)
			goto sync;
		if (i + 1 == u->n)
			c->last = idx;
	}
	if (u->tx)
		store_send(c, "COMMIT", 0, NULL, 0, -1);
sync:
	return store_sync(c);
}

void store_pump(struct store_conn *c)
{
	if (c->state != STORE_READY || c->inflight || c->head == NULL)
		return;
	store_send_unit(c);
}

/* Send one unprepared statement as a batch of its own (search_path after
 * a reconnect, ROLLBACK after a failed transaction). */
int store_send_alone(struct store_conn *c, const char *sql)
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
		} else if (c->phase == PHASE_MAIN && c->rx < c->nsent && c->items[c->rx] <= -2 &&
			   c->head != NULL && (size_t)(-2 - c->items[c->rx]) < c->head->n &&
			   c->head->stmts[-2 - c->items[c->rx]].cb != NULL) {
			struct store_stmt *st = &c->head->stmts[-2 - c->items[c->rx]];

			PQclear(st->res);
			st->res = r;
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
void store_drain(struct store_conn *c)
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

void store_read_cb(evutil_socket_t fd, short what, void *arg)
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

void store_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_conn *c = arg;

	(void)fd;
	(void)what;
	if (store_flush(c) < 0)
		return;
	/* Flushing may have read input to avoid a deadlock: parse it. */
	store_drain(c);
}
