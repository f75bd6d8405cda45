/*
 * conn.c: losing and regaining a connection, and reading server errors.
 *
 * Connection loss (socket error, CONNECTION_BAD, SQLSTATE class 08,
 * 57P01-57P03) closes the connection and arms a backoff timer; the timer
 * starts a non-blocking PQconnectStart, PQconnectPoll is stepped on
 * socket readiness, and once connected the store sets search_path and
 * resends the head unit from its first statement.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "store_int.h"

void store_notice(void *arg, const char *msg)
{
	/* Libraries do not log: notices (e.g. "schema exists, skipping") are dropped. */
	(void)arg;
	(void)msg;
}

void store_trim(char *p)
{
	size_t n = strlen(p);

	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == ' ' || p[n - 1] == '\r'))
		p[--n] = '\0';
}

/* "<SQLSTATE>: <message>[ (<detail>)]" from a failed result, or the
 * connection's message when there is no result or no primary message. */
void store_errfmt(char *buf, size_t len, const PGresult *r, const PGconn *c)
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

char *store_errdup(const PGresult *r, const PGconn *c)
{
	char buf[1024];

	store_errfmt(buf, sizeof(buf), r, c);
	return strdup(buf);
}

/* 1 when a failed result means the connection is gone or going. */
int store_conn_error(const PGresult *r, const PGconn *c)
{
	const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	if (c == NULL || PQstatus(c) == CONNECTION_BAD)
		return 1;
	if (code == NULL)
		return 0;
	return strncmp(code, "08", 2) == 0 || strcmp(code, "57P01") == 0 ||
	       strcmp(code, "57P02") == 0 || strcmp(code, "57P03") == 0;
}

/* ---- connection life cycle ------------------------------------------- */

void store_close(struct store_conn *c)
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
int store_lost(struct store_conn *c)
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
int store_attach(struct store_conn *c)
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

void store_timer_cb(evutil_socket_t fd, short what, void *arg)
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
