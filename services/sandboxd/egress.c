/*
 * egress.c: the egress proxy of one egress_only sandbox (docs/SANDBOX.md,
 * "egress_only"); its parts and the states of a connection in egress.h.
 *
 * The listening socket lives in the sandbox's network namespace; the
 * sockets towards destinations are made here, in sandboxd's. This file
 * holds the listener, the connections and their deadlines, the reading of
 * the request head, the decisions and our own responses.
 *
 * The callback gets exactly one decision per accepted connection: when the
 * head cannot be used, when the destination is refused, when no connection
 * to it could be made, or -- "allowed" -- when the connection to it is up,
 * before the 200 or the forwarded request: before any byte reaches it.
 * `allowed` is true exactly when the reason is "allowed" (a tunnel or a
 * forwarded request exists).
 *
 * Nothing here blocks, logs or prints.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/listener.h>

#include "egress.h"

/* ---- decisions and responses ---------------------------------------------- */

static void emit(struct sbd_egress *e, const char *method, const char *host, int port,
		 const char *address, bool allowed, const char *reason)
{
	struct sbd_egress_decision d;

	e->decisions++;
	if (e->cb == NULL)
		return;
	d.method = method;
	d.host = host;
	d.port = port;
	d.address = address;
	d.allowed = allowed;
	d.reason = reason;
	e->cb(e->arg, &d);
}

void egress_decide(struct conn *c, bool allowed, const char *reason)
{
	if (c->decided)
		return;
	c->decided = true;
	emit(c->e, c->method, c->host, c->port, c->address, allowed, reason);
}

static const char *status_text(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	}
	return "Internal Server Error";
}

void egress_arm(struct conn *c, uint32_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(c->timer, &tv);
}

static void drop_upstream(struct conn *c)
{
	if (c->dns != NULL) {
		c->dns->c = NULL;
		evdns_getaddrinfo_cancel(c->dns->req);
		c->dns = NULL;
	}
	if (c->up.bev != NULL)
		bufferevent_free(c->up.bev);
	c->up.bev = NULL;
	if (c->fwd != NULL)
		evbuffer_free(c->fwd);
	c->fwd = NULL;
}

static void closing_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void closing_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (!c->cli.shut) {
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		c->cli.shut = true;
	}
	if (c->cli.eof)
		egress_conn_free(c);
}

static void closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		c->cli.eof = true; /* the response still goes out */
		return;
	}
	egress_conn_free(c);
}

/* Decide (when not yet), answer status with a text body and close. */
void egress_refuse(struct conn *c, int status, const char *reason, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->cli.bev);
	char body[512];
	va_list ap;

	egress_decide(c, false, reason);
	drop_upstream(c);
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body) - 1, fmt, ap);
	va_end(ap);
	strcat(body, "\n");
	evbuffer_add_printf(
	    out,
	    "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\nsagewai egress proxy: %s",
	    status, status_text(status), strlen(body) + 22, body);
	c->st = ST_CLOSING;
	bufferevent_setcb(c->cli.bev, closing_read_cb, closing_write_cb, closing_event_cb, c);
	bufferevent_setwatermark(c->cli.bev, EV_READ | EV_WRITE, 0, 0);
	bufferevent_enable(c->cli.bev, c->cli.eof ? EV_WRITE : EV_READ | EV_WRITE);
	egress_arm(c, LINGER_MS);
}

/* ---- the head ------------------------------------------------------------- */

static void head_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), n, hl;
	const char *p, *why = "";

	n = len < SBD_EGRESS_HEAD_MAX ? len : SBD_EGRESS_HEAD_MAX;
	if (n == 0)
		return;
	if ((p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n)) == NULL) {
		egress_refuse(c, 500, "internal", "out of memory");
		return;
	}
	if ((hl = egress_head_length(p, n)) == 0) {
		if (len >= SBD_EGRESS_HEAD_MAX)
			egress_refuse(c, 431, "head_too_large", "the request head exceeds %d bytes",
				      SBD_EGRESS_HEAD_MAX);
		return;
	}
	bufferevent_disable(bev, EV_READ);
	bufferevent_setwatermark(bev, EV_READ, 0, 0);
	if (egress_head_parse(c, p, hl, &why) == -1) {
		egress_refuse(c, 400, "bad_request", "bad request: %s", why);
		return;
	}
	evbuffer_drain(in, hl);
	egress_route(c);
}

/* The client went away before a decision, or failed. */
static void early_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	(void)what;
	egress_decide(c, false, "client_closed");
	egress_conn_free(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	uint64_t idle_ms;

	(void)fd;
	(void)what;
	switch (c->st) {
	case ST_HEAD:
		egress_refuse(c, 408, "timeout", "no complete request head within %u ms",
			      c->e->cfg.head_timeout_ms);
		break;
	case ST_RESOLVING:
		egress_refuse(c, 504, "resolve_timeout", "no address for %s within %u ms", c->host,
			      c->e->cfg.connect_timeout_ms);
		break;
	case ST_CONNECTING:
		egress_refuse(c, 504, "connect_timeout", "no connection to %s:%d (%s) within %u ms",
			      c->host, c->port, c->address, c->e->cfg.connect_timeout_ms);
		break;
	case ST_RELAY:
		idle_ms = (uint64_t)(sw_mono_ms() - c->last_ms);
		if (idle_ms >= c->e->cfg.idle_timeout_ms)
			egress_conn_free(c);
		else
			egress_arm(c, c->e->cfg.idle_timeout_ms - (uint32_t)idle_ms);
		break;
	case ST_CLOSING:
		egress_conn_free(c);
		break;
	}
}

/* ---- connections and the listener ------------------------------------------ */

void egress_conn_free(struct conn *c)
{
	struct sbd_egress *e = c->e;

	drop_upstream(c);
	if (c->cli.bev != NULL)
		bufferevent_free(c->cli.bev);
	if (c->timer != NULL)
		event_free(c->timer);
	TAILQ_REMOVE(&e->conns, c, entry);
	e->nconns--;
	if (c->refusing)
		e->nrefusing--;
	free(c);
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct sbd_egress *e = arg;
	bool over = e->nconns - e->nrefusing >= SBD_EGRESS_CONNS_MAX;
	struct conn *c;

	(void)lis;
	(void)sa;
	(void)salen;
	if (over && e->nrefusing >= REFUSING_MAX) {
		close(fd);
		emit(e, "", "", 0, "", false, "too_many_connections");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->cli.bev = bufferevent_socket_new(e->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL ||
	    (c->timer = evtimer_new(e->base, timer_cb, c)) == NULL) {
		if (c != NULL && c->cli.bev != NULL)
			bufferevent_free(c->cli.bev);
		else
			close(fd);
		free(c);
		emit(e, "", "", 0, "", false, "internal");
		return;
	}
	c->e = e;
	TAILQ_INSERT_TAIL(&e->conns, c, entry);
	e->nconns++;
	if (over) {
		c->refusing = true;
		e->nrefusing++;
		egress_refuse(c, 503, "too_many_connections",
			      "more than %d connections open through this sandbox's proxy",
			      SBD_EGRESS_CONNS_MAX);
		return;
	}
	c->st = ST_HEAD;
	bufferevent_setcb(c->cli.bev, head_read_cb, NULL, early_event_cb, c);
	bufferevent_setwatermark(c->cli.bev, EV_READ, 0, SBD_EGRESS_HEAD_MAX);
	bufferevent_enable(c->cli.bev, EV_READ);
	egress_arm(c, e->cfg.head_timeout_ms);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_egress *e = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(e->lis);
}

/* accept failed (out of descriptors, ...): a readable listener would spin,
 * so pause it briefly. */
static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
	struct sbd_egress *e = arg;
	struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

	evconnlistener_disable(lis);
	evtimer_add(e->retry, &tv);
}

struct sbd_egress *sbd_egress_new(struct event_base *base, int listen_fd,
				  const struct sbd_egress_config *cfg, sbd_egress_cb cb, void *arg,
				  char *errstr, size_t errlen)
{
	struct sbd_egress *e = NULL;
	int v = 0, type = 0;
	socklen_t len = sizeof(v);

	if (base == NULL || listen_fd < 0) {
		snprintf(errstr, errlen, "egress: no event base or listening socket");
		goto fail;
	}
	if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == -1 || v == 0 ||
	    (len = sizeof(type), getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &type, &len)) == -1 ||
	    type != SOCK_STREAM) {
		snprintf(errstr, errlen, "egress: fd %d is not a listening stream socket",
			 listen_fd);
		goto fail;
	}
	if (evutil_make_socket_nonblocking(listen_fd) == -1 ||
	    evutil_make_socket_closeonexec(listen_fd) == -1) {
		snprintf(errstr, errlen, "egress: listening socket: %s", strerror(errno));
		goto fail;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		snprintf(errstr, errlen, "egress: out of memory");
		goto fail;
	}
	e->base = base;
	if (cfg != NULL)
		e->cfg = *cfg;
	if (e->cfg.head_timeout_ms == 0)
		e->cfg.head_timeout_ms = HEAD_TIMEOUT_DEFAULT;
	if (e->cfg.connect_timeout_ms == 0)
		e->cfg.connect_timeout_ms = CONNECT_TIMEOUT_DEFAULT;
	if (e->cfg.idle_timeout_ms == 0)
		e->cfg.idle_timeout_ms = IDLE_TIMEOUT_DEFAULT;
	e->cb = cb;
	e->arg = arg;
	TAILQ_INIT(&e->conns);
	if ((e->retry = evtimer_new(base, accept_retry_cb, e)) == NULL) {
		snprintf(errstr, errlen, "egress: out of memory");
		goto fail;
	}
	/* backlog 0: the socket is listening already */
	e->lis = evconnlistener_new(base, accept_cb, e,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
	if (e->lis == NULL) {
		snprintf(errstr, errlen, "egress: cannot listen: %s", strerror(errno));
		goto fail;
	}
	evconnlistener_set_error_cb(e->lis, accept_error_cb);
	return e;
fail:
	if (e != NULL && e->retry != NULL)
		event_free(e->retry);
	free(e);
	if (listen_fd >= 0)
		close(listen_fd);
	return NULL;
}

size_t sbd_egress_open(const struct sbd_egress *e)
{
	return e->nconns;
}

/* Not from inside the callback: the connection that called it is still
 * being worked on when the callback returns. */
void sbd_egress_free(struct sbd_egress *e)
{
	if (e == NULL)
		return;
	e->cb = NULL;
	while (!TAILQ_EMPTY(&e->conns))
		egress_conn_free(TAILQ_FIRST(&e->conns));
	evconnlistener_free(e->lis);
	event_free(e->retry);
	free(e->allow);
	free(e);
}
