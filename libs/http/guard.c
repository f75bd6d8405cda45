/*
 * guard.c: the connection guard of every sw_http server.
 *
 * Connection guard. evhttp 2.1.12 has no connection cap and its only
 * timeout is an inactivity timeout that every byte restarts, so a client
 * trickling a header a byte at a time holds a connection forever. Every
 * accepted connection therefore runs over a bufferevent_filter (handed to
 * evhttp through evhttp_set_bevcb) around a socket bufferevent; its
 * context, struct http_conn, sees each inbound byte before evhttp does:
 *  - Caps. Counted from accept (evhttp_set_bevcb) to the filter's free
 *    (its free_context, called when evhttp frees the connection): at most
 *    max_connections in all and max_per_address per peer IP address. A
 *    connection over a cap is answered at once with a JSON 503
 *    too_many_connections (Connection: close) and lingers (below).
 *  - Deadlines. A small parser follows the inbound stream (request line,
 *    Content-Length, Transfer-Encoding: chunked, body lengths, chunk
 *    framing, as evhttp reads them) to know where each head and body
 *    ends. A head must be complete head_ms after accept (first request) or
 *    after its first byte (later requests on a kept-alive connection; the
 *    silence in between is evhttp's idle timeout), a body body_ms after
 *    its head. Trickling bytes cannot extend either. On expiry the client
 *    gets a JSON 408 request_timeout and the connection lingers. The
 *    deadlines never run while evhttp processes a request or writes a
 *    response (its read is off, or its read callback is unset while it
 *    writes), so a response streamed for hours is never cut.
 *  - Linger. A refused connection gets its answer written straight to
 *    the socket, then shutdown(SHUT_WR); inbound bytes are discarded and
 *    evhttp never sees them; the connection is freed when the client
 *    closes or HTTP_LINGER_MS later (closing at once, with the client's
 *    request unread, would reset the connection and could lose the answer).
 * Output goes straight from the filter's output buffer to the socket (the
 * underlying bufferevent is used for reading only): libevent 2.1.12's
 * filter would otherwise report a response written as soon as it reached
 * the underlying buffer (evhttp then frees a Connection: close response
 * before it is sent) and does not push output when writing is enabled.
 * Refusals are counted in sw_http_refused_<reason>_total (max_connections,
 * per_address, head_timeout, body_timeout) and sw_http_too_large_total;
 * sw_http_connections is the number of open connections.
 * Limits: a client's pipelined request is policed only while evhttp reads
 * it; if the guard cannot allocate its state for a connection, evhttp
 * serves that connection unguarded.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

#include "sw_core.h"
#include "http_int.h"


/* ---- connection guard ------------------------------------------------- */

static void conn_timer(evutil_socket_t fd, short what, void *arg);

void http_count(struct sw_http *h, const char *name, const char *help)
{
	sw_metrics_counter_add(h->metrics, name, help, 1);
}

static void http_gauge_conns(struct sw_http *h)
{
	sw_metrics_gauge_set(h->metrics, "sw_http_connections", "Open HTTP connections.",
			     h->nconns);
}

static void conn_arm(struct http_conn *c, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(c->timer, &tv);
}

/* The filter is still evhttp's: bufferevent_free clears its callbacks, and
 * its memory lasts until its (deferred) finalisation calls conn_free. */
static int conn_alive(struct http_conn *c)
{
	bufferevent_event_cb ecb = NULL;

	bufferevent_getcb(c->bev, NULL, NULL, &ecb, NULL);
	return ecb != NULL;
}

/* evhttp is reading a request: its read is on and its read callback set
 * (it clears the callback while writing a response and turns reading off
 * while a handler holds the request). Only then may the guard answer on
 * the connection or free it. */
static int conn_evhttp_reading(struct http_conn *c)
{
	bufferevent_data_cb rcb = NULL;

	bufferevent_getcb(c->bev, &rcb, NULL, NULL, NULL);
	return rcb != NULL && (bufferevent_get_enabled(c->bev) & EV_READ);
}

/* 0 and the peer's key, or -1 for an address family without one. */
static int http_peer_key(evutil_socket_t fd, unsigned char key[17])
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(key, 0, 17);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	if (ss.ss_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		return 0;
	}
	if (ss.ss_family == AF_INET6) {
		const unsigned char *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		if (memcmp(a, mapped, 12) == 0) {
			key[0] = 4;
			memcpy(key + 1, a + 12, 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, a, 16);
		}
		return 0;
	}
	return -1;
}

static unsigned http_peer_hash(const unsigned char key[17])
{
	uint32_t x = 2166136261u;
	int i;

	for (i = 0; i < 17; i++)
		x = (x ^ key[i]) * 16777619u;
	return x % HTTP_PEER_BUCKETS;
}

/* The entry for key, created with n = 0 (NULL when out of memory). */
static struct http_peer *http_peer_get(struct sw_http *h, const unsigned char key[17])
{
	unsigned b = http_peer_hash(key);
	struct http_peer *p;

	for (p = h->peers[b]; p != NULL; p = p->next)
		if (memcmp(p->key, key, 17) == 0)
			return p;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	memcpy(p->key, key, 17);
	p->next = h->peers[b];
	h->peers[b] = p;
	return p;
}

static void http_peer_put(struct sw_http *h, struct http_peer *p)
{
	struct http_peer **pp;

	if (--p->n > 0)
		return;
	for (pp = &h->peers[http_peer_hash(p->key)]; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			free(p);
			return;
		}
}

/* Answer status with a JSON error straight on the socket (best effort: a
 * few hundred bytes into an idle socket), half-close, and linger. */
static void conn_refuse(struct http_conn *c, int status, const char *reason, const char *code,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void conn_refuse(struct http_conn *c, int status, const char *reason, const char *code,
			const char *fmt, ...)
{
	char msg[256], head[256], *body;
	json_t *j;
	va_list ap;
	int hl;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (body != NULL) {
		hl = snprintf(head, sizeof(head),
			      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			      status, reason, strlen(body) + 1);
		if (hl > 0 && (size_t)hl < sizeof(head)) {
			struct iovec v[3] = {{head, (size_t)hl}, {body, strlen(body)}, {"\n", 1}};
			struct msghdr mh = {.msg_iov = v, .msg_iovlen = 3};

			(void)sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		free(body);
	}
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_LINGER;
	conn_arm(c, HTTP_LINGER_MS);
}

/* First look at a new connection (from its timer, made active in the
 * bevcb, or from the first input, whichever comes first): count it
 * against the caps and start the head deadline. */
static void conn_start(struct http_conn *c)
{
	struct sw_http *h = c->h;
	unsigned char key[17];

	if (c->started)
		return;
	c->started = 1;
	c->fd = bufferevent_getfd(c->bev);
	if (c->fd < 0)
		return; /* evhttp gave up on it: being freed */
	c->wev = event_new(bufferevent_get_base(c->bev), c->fd, EV_WRITE, conn_timer, c);
	if (h->nconns > h->lim.max_connections) {
		http_count(h, "sw_http_refused_max_connections_total",
			   "HTTP connections refused: too many open connections.");
		conn_refuse(c, 503, "Service Unavailable", "too_many_connections",
			    "more than %u open connections", h->lim.max_connections);
		return;
	}
	if (http_peer_key(c->fd, key) == 0) {
		struct http_peer *p = http_peer_get(h, key);

		if (p != NULL && p->n >= h->lim.max_per_address) {
			http_count(h, "sw_http_refused_per_address_total",
				   "HTTP connections refused: too many from one address.");
			conn_refuse(c, 503, "Service Unavailable", "too_many_connections",
				    "more than %u open connections from your address",
				    h->lim.max_per_address);
			return;
		}
		if (p != NULL) {
			p->n++;
			c->peer = p;
		}
	}
	c->state = CONN_HEAD;
	conn_arm(c, h->lim.head_ms);
}

/* End a lingering connection. evhttp may be freed only while it reads a
 * request (no handler holds one); otherwise closing the socket makes it
 * take its own error path, which detaches a request a handler holds. */
static void conn_kill(struct http_conn *c)
{
	void *evcon = NULL;

	bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
	if (evcon != NULL && conn_evhttp_reading(c))
		evhttp_connection_free(evcon);
	else
		shutdown(c->fd, SHUT_RDWR);
}

/* The timer (start-up, deadline, linger) and the socket-writable event. */
static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)fd;
	if (c->h == NULL || !conn_alive(c))
		return;
	if (what & EV_WRITE) {
		c->flushing = 1;
		bufferevent_flush(c->bev, EV_WRITE, BEV_NORMAL);
		c->flushing = 0;
		return;
	}
	if (!c->started) {
		conn_start(c);
		return;
	}
	if (c->state == CONN_LINGER) {
		conn_kill(c);
		return;
	}
	if (c->state == CONN_IDLE)
		return;
	if (!conn_evhttp_reading(c)) {
		/* A pipelined request while a response is out: wait for it. */
		conn_arm(c, c->state == CONN_HEAD ? c->h->lim.head_ms : c->h->lim.body_ms);
		return;
	}
	if (c->state == CONN_HEAD) {
		http_count(c->h, "sw_http_refused_head_timeout_total",
			   "HTTP requests refused: head not received in time.");
		conn_refuse(c, 408, "Request Timeout", "request_timeout",
			    "request head not received within %u ms", c->h->lim.head_ms);
	} else {
		http_count(c->h, "sw_http_refused_body_timeout_total",
			   "HTTP requests refused: body not received in time.");
		conn_refuse(c, 408, "Request Timeout", "request_timeout",
			    "request body not received within %u ms", c->h->lim.body_ms);
	}
}

/* Called by the filter's finalisation once evhttp has freed the
 * connection (or by sw_http_destroy's detach, with c->h NULL). */
static void conn_free(void *arg)
{
	struct http_conn *c = arg;
	struct sw_http *h = c->h;

	if (h != NULL) {
		LIST_REMOVE(c, entry);
		h->nconns--;
		if (c->peer != NULL)
			http_peer_put(h, c->peer);
		http_gauge_conns(h);
	}
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->wev != NULL)
		event_free(c->wev);
	free(c);
}

/* ---- the inbound parser ---- */

static void conn_request_done(struct http_conn *c)
{
	c->state = CONN_IDLE;
	evtimer_del(c->timer);
}

static void conn_head_reset(struct http_conn *c)
{
	c->linelen = 0;
	c->lineno = 0;
	c->no_body = 0;
	c->chunked = 0;
	c->has_length = 0;
	c->bad_length = 0;
	c->length = 0;
}

/* A header's value with surrounding blanks cut, NUL-terminated in place,
 * if line (of len bytes) is "name:value"; else NULL. */
static char *head_value(char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	char *v, *e;

	if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
		return NULL;
	line[len] = '\0';
	for (v = line + n + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (e = line + len; e > v && (e[-1] == ' ' || e[-1] == '\t'); e--)
		;
	*e = '\0';
	return v;
}

/* A complete head line (CR stripped) or, with len 0, the end of the head. */
static void conn_head_line(struct http_conn *c, size_t len, int truncated)
{
	char *v;

	if (c->lineno++ == 0) {
		c->no_body = (len >= 5 && memcmp(c->line, "HEAD ", 5) == 0) ||
			     (len >= 6 && memcmp(c->line, "TRACE ", 6) == 0);
		return;
	}
	if (truncated) {
		if (strncasecmp(c->line, "content-length:", 15) == 0 && !c->has_length)
			c->has_length = c->bad_length = 1;
		return;
	}
	if (!c->chunked && (v = head_value(c->line, len, "transfer-encoding")) != NULL)
		c->chunked = strcasecmp(v, "chunked") == 0;
	else if (!c->has_length && (v = head_value(c->line, len, "content-length")) != NULL) {
		char *end;

		c->has_length = 1;
		errno = 0;
		c->length = strtoll(v, &end, 10);
		if (*v == '\0' || *end != '\0' || c->length < 0)
			c->length = 0; /* evhttp refuses it and closes */
	}
}

/* The head is complete: what follows, as evhttp will read it. Returns -1
 * when the request is refused (its last byte must not reach evhttp). */
static int conn_head_end(struct http_conn *c)
{
	struct sw_http *h = c->h;

	if (c->lineno <= 1 || c->no_body || (!c->chunked && c->length <= 0 && !c->bad_length)) {
		conn_request_done(c);
		return 0;
	}
	if (c->chunked) {
		c->state = CONN_CHUNK_LINE;
		c->chunked_total = 0;
		c->linelen = 0;
	} else if (c->bad_length || (uint64_t)c->length > h->read_limit) {
		sw_metrics_counter_add(h->metrics, "sw_http_too_large_total",
				       "HTTP requests refused for their body size.", 1);
		if (c->bad_length)
			conn_refuse(c, 413, "Payload Too Large", "too_large",
				    "Content-Length too long to read; the limit is %zu bytes",
				    h->max_body);
		else
			conn_refuse(c, 413, "Payload Too Large", "too_large",
				    "body of %lld bytes exceeds %zu", c->length, h->max_body);
		return -1;
	} else {
		c->state = CONN_BODY;
		c->body_left = (uint64_t)c->length;
	}
	conn_arm(c, h->lim.body_ms);
	return 0;
}

/* A chunk size line: hexadecimal size, then anything (extensions). */
static int conn_chunk_line(struct http_conn *c)
{
	struct sw_http *h = c->h;
	uint64_t size = 0;
	size_t i, n = c->linelen < HTTP_LINE_MAX ? c->linelen : HTTP_LINE_MAX;
	int digits = 0;

	if (c->linelen == 0)
		return 0; /* the CRLF after a chunk's data */
	for (i = 0; i < n; i++) {
		char ch = c->line[i];
		int d = ch >= '0' && ch <= '9'	 ? ch - '0'
			: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
			: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
						 : -1;

		if (d < 0)
			break;
		if (size > (UINT64_MAX >> 4))
			size = UINT64_MAX; /* saturate: refused below */
		else
			size = size * 16 + (uint64_t)d;
		digits++;
	}
	if (digits > 0 && size == 0) {
		c->state = CONN_TRAILER;
		c->linelen = 0;
		return 0;
	}
	c->chunked_total = size > UINT64_MAX - c->chunked_total ? UINT64_MAX
								 : c->chunked_total + size;
	if (c->chunked_total > h->read_limit) {
		sw_metrics_counter_add(h->metrics, "sw_http_too_large_total",
				       "HTTP requests refused for their body size.", 1);
		conn_refuse(c, 413, "Payload Too Large", "too_large",
			    "chunked body exceeds %zu bytes", h->max_body);
		return -1;
	}
	if (size > 0) {
		c->state = CONN_CHUNK_DATA;
		c->body_left = size;
	}
	return 0;
}

/* One byte of a head, chunk line or trailer. Returns -1 when the request
 * was refused at this byte (which must not reach evhttp). */
static int conn_byte(struct http_conn *c, char ch)
{
	size_t len;

	if (c->state == CONN_IDLE) {
		c->state = CONN_HEAD;
		conn_head_reset(c);
		conn_arm(c, c->h->lim.head_ms);
	}
	if (ch != '\n') {
		if (c->linelen < HTTP_LINE_MAX)
			c->line[c->linelen] = ch;
		c->linelen++;
		return 0;
	}
	len = c->linelen;
	if (len > 0 && len <= HTTP_LINE_MAX && c->line[len - 1] == '\r')
		len--;
	c->linelen = len; /* chunk lines read it */
	switch (c->state) {
	case CONN_HEAD:
		c->linelen = 0;
		if (len == 0 && c->lineno > 0)
			return conn_head_end(c);
		if (len >= HTTP_LINE_MAX) {
			conn_head_line(c, HTTP_LINE_MAX - 1, 1);
			return 0;
		}
		conn_head_line(c, len, 0);
		return 0;
	case CONN_CHUNK_LINE: {
		int r = conn_chunk_line(c);

		c->linelen = 0;
		return r;
	}
	case CONN_TRAILER:
		c->linelen = 0;
		if (len == 0)
			conn_request_done(c);
		return 0;
	default:
		return 0;
	}
}

/* The input filter: pass bytes on to evhttp while following the requests
 * they carry; hold back a refused request and discard input while
 * lingering. */
static enum bufferevent_filter_result conn_in(struct evbuffer *src, struct evbuffer *dst,
					      ev_ssize_t lim, enum bufferevent_flush_mode mode,
					      void *arg)
{
	struct http_conn *c = arg;
	struct evbuffer_iovec v[16];
	size_t pass = 0, avail, i, k;
	int n;

	(void)mode;
	if (c->h == NULL)
		return evbuffer_remove_buffer(src, dst, lim >= 0 ? (size_t)lim : SIZE_MAX) >= 0
			       ? BEV_OK
			       : BEV_ERROR;
	if (!c->started)
		conn_start(c);
	avail = evbuffer_get_length(src);
	if (lim >= 0 && avail > (size_t)lim)
		avail = (size_t)lim;
	n = evbuffer_peek(src, (ev_ssize_t)avail, NULL, v, 16);
	if (n > 16)
		n = 16;
	for (i = 0; i < (size_t)n && c->state != CONN_LINGER; i++) {
		const char *p = v[i].iov_base;
		size_t len = v[i].iov_len < avail - pass ? v[i].iov_len : avail - pass;

		for (k = 0; k < len && c->state != CONN_LINGER;) {
			if (c->state == CONN_BODY || c->state == CONN_CHUNK_DATA) {
				size_t take = len - k;

				if ((uint64_t)take > c->body_left)
					take = (size_t)c->body_left;
				c->body_left -= take;
				k += take;
				if (c->body_left > 0)
					continue;
				if (c->state == CONN_BODY)
					conn_request_done(c);
				else
					c->state = CONN_CHUNK_LINE;
				continue;
			}
			if (conn_byte(c, p[k]) < 0)
				break;
			k++;
		}
		pass += k;
	}
	if (pass > 0)
		evbuffer_remove_buffer(src, dst, pass);
	if (c->state == CONN_LINGER)
		evbuffer_drain(src, evbuffer_get_length(src));
	return pass > 0 ? BEV_OK : BEV_NEED_MORE;
}

/* The output filter: write straight to the socket (see the top comment),
 * from conn_writable only, so that one write carries what evhttp queued
 * in one turn of the loop. Wait for the socket when it is full. */
static enum bufferevent_filter_result conn_out(struct evbuffer *src, struct evbuffer *dst,
					       ev_ssize_t lim, enum bufferevent_flush_mode mode,
					       void *arg)
{
	struct http_conn *c = arg;
	struct evbuffer_iovec v[16];
	struct msghdr mh = {0};
	ssize_t w;
	int n;

	(void)lim;
	(void)mode;
	if (c->h == NULL || c->fd < 0)
		return evbuffer_remove_buffer(src, dst, evbuffer_get_length(src)) >= 0 ? BEV_OK
											: BEV_ERROR;
	if (evbuffer_get_length(src) == 0)
		return BEV_NEED_MORE;
	if (!c->flushing) {
		if (c->wev != NULL)
			event_add(c->wev, NULL);
		return BEV_NEED_MORE;
	}
	n = evbuffer_peek(src, -1, NULL, v, 16);
	mh.msg_iov = (struct iovec *)v;
	mh.msg_iovlen = n < 16 ? n : 16;
	w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w > 0) {
		evbuffer_drain(src, (size_t)w);
		if (evbuffer_get_length(src) > 0)
			event_add(c->wev, NULL);
		return BEV_OK;
	}
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(c->wev, NULL);
		return BEV_NEED_MORE;
	}
	/* The peer is gone: make the reading side see it, so evhttp frees the
	 * connection instead of waiting for its write timeout. */
	shutdown(c->fd, SHUT_RDWR);
	return BEV_ERROR;
}

/* Bytes queued for output: write them from the loop, once the socket
 * takes them (the filter does not push output when evhttp turns writing
 * on after queueing a response). */
static void conn_outbuf_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct http_conn *c = arg;

	(void)buf;
	if (info->n_added > 0 && c->wev != NULL)
		event_add(c->wev, NULL);
}

/* evhttp's bevcb: a guarded bufferevent for each accepted connection, or
 * NULL (evhttp then makes a plain one) when out of memory. */
struct bufferevent *http_bevcb(struct event_base *base, void *arg)
{
	struct sw_http *h = arg;
	struct http_conn *c;
	struct bufferevent *u, *f;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->fd = -1;
	c->state = CONN_HEAD;
	if ((c->timer = evtimer_new(base, conn_timer, c)) == NULL ||
	    (u = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		if (c->timer != NULL)
			event_free(c->timer);
		free(c);
		return NULL;
	}
	f = bufferevent_filter_new(u, conn_in, conn_out, BEV_OPT_CLOSE_ON_FREE, conn_free, c);
	if (f == NULL) {
		bufferevent_free(u);
		event_free(c->timer);
		free(c);
		return NULL;
	}
	if (evbuffer_add_cb(bufferevent_get_output(f), conn_outbuf_cb, c) == NULL) {
		bufferevent_free(f); /* conn_free, with c->h NULL, frees c */
		return NULL;
	}
	c->bev = f;
	c->h = h;
	LIST_INSERT_HEAD(&h->conns, c, entry);
	h->nconns++;
	http_gauge_conns(h);
	/* evhttp sets the fd once we return: look at it from the loop. */
	event_active(c->timer, EV_TIMEOUT, 1);
	return f;
}

