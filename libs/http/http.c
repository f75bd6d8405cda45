/*
 * http.c: one evhttp per struct sw_http, every request through one
 * dispatcher (evhttp's generic callback) so that the body cap, the route
 * table and the JSON 404 apply uniformly.
 *
 * Body cap. libevent 2.1 has no hook between reading a request's headers
 * and reading its body, and when its own limit trips it answers with an
 * HTML page. So evhttp's limit (the "read limit") is set above ours (twice
 * the cap, at least cap + 64 KiB): bodies between the two are read, then
 * refused here with a JSON 413 before any handler runs and the connection
 * stays usable; a body declared (Content-Length, or chunk sizes adding up)
 * above the read limit is refused by the connection guard below with a
 * JSON 413 as soon as its head (or chunk size line) arrives, without
 * reading it, and the connection is closed. Memory per connection stays
 * bounded either way.
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
#include "sw_http.h"

#define HTTP_MAX_HEADERS (64 * 1024)
#define HTTP_SLACK_MIN (64 * 1024)
#define HTTP_PATH_MAX 1024
#define HTTP_LINGER_MS 2000
#define HTTP_LINE_MAX 512 /* bytes of a head line the guard keeps */
#define HTTP_PEER_BUCKETS 256

struct route {
	char *path;   /* without the trailing '*' for prefixes */
	size_t len;
	int prefix;   /* matches every path starting with path */
	void (*cb)(struct evhttp_request *, void *);
	void *opaque;
};

/* Open connections from one address. */
struct http_peer {
	struct http_peer *next;
	unsigned char key[17]; /* family (4 or 6), then the address */
	unsigned n;
};

enum conn_state {
	CONN_HEAD,	 /* reading a head (the timer is its deadline) */
	CONN_IDLE,	 /* between requests: no deadline, evhttp's idle timeout */
	CONN_BODY,	 /* a Content-Length body: body_left bytes to go */
	CONN_CHUNK_LINE, /* chunked body: a chunk size line (or the CRLF after data) */
	CONN_CHUNK_DATA, /* chunked body: body_left bytes of chunk data */
	CONN_TRAILER,	 /* chunked body: trailer lines up to an empty one */
	CONN_LINGER,	 /* refused: answered, discarding input until freed */
};

/* One accepted connection: the filter's context. */
struct http_conn {
	LIST_ENTRY(http_conn) entry;
	struct sw_http *h;	  /* NULL once the server is destroyed */
	struct bufferevent *bev;  /* the filter evhttp owns */
	struct event *timer;	  /* start-up, then deadlines and linger */
	struct event *wev;	  /* socket writable, while output waits */
	struct http_peer *peer;	  /* counted here; NULL if not (yet) */
	evutil_socket_t fd;	  /* -1 until started */
	int started;		  /* fd and peer looked at */
	int flushing;		  /* writing from conn_writable */
	enum conn_state state;
	char line[HTTP_LINE_MAX]; /* start of the current head line */
	size_t linelen;		  /* bytes of it seen (may exceed the buffer) */
	unsigned lineno;	  /* 0: the request line */
	int no_body;		  /* HEAD or TRACE: evhttp reads no body */
	int chunked;		  /* Transfer-Encoding: chunked */
	int has_length;		  /* a Content-Length was seen (the first counts) */
	int bad_length;		  /* ... and was too long to read */
	long long length;	  /* its value */
	uint64_t body_left;	  /* BODY, CHUNK_DATA */
	uint64_t chunked_total;	  /* chunk sizes so far */
};
LIST_HEAD(http_conns, http_conn);

struct sw_http {
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	int port;
	size_t max_body;
	uint64_t read_limit;	    /* evhttp's body limit; declared above it: 413 at once */
	struct sw_http_limits lim;
	struct http_conns conns;    /* open, guarded connections */
	unsigned nconns;
	struct http_peer *peers[HTTP_PEER_BUCKETS];
	struct sw_metrics *metrics; /* not owned; may be NULL */
	sw_http_health_cb health;   /* may be NULL */
	void *health_opaque;
	struct route *routes;
	size_t nroutes, cap;
};

/* ---- replies ---------------------------------------------------------- */

void sw_http_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = NULL;

	if (body != NULL)
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(body);
	if (text == NULL) {
		status = HTTP_INTERNAL;
		text = strdup("{\"error\":{\"code\":\"internal\","
			      "\"message\":\"cannot encode reply\"}}");
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	if (buf != NULL && text != NULL) {
		evbuffer_add(buf, text, strlen(text));
		evbuffer_add(buf, "\n", 1);
	}
	evhttp_send_reply(req, status, NULL, buf);
	if (buf != NULL)
		evbuffer_free(buf);
	free(text);
}

void sw_http_reply_error(struct evhttp_request *req, int status, const char *code,
			 const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	json_t *body;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	body = json_pack("{s:{s:o,s:o}}", "error", "code", sw_json_string_lossy(code), "message",
			 sw_json_string_lossy(msg != NULL ? msg : code));
	free(msg);
	sw_http_reply_json(req, status, body);
}

void sw_http_reply_method_not_allowed(struct evhttp_request *req, const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	sw_http_reply_error(req, 405, "method_not_allowed", "method not allowed; use %s", allow);
}

char *sw_http_body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char *p;

	if ((p = malloc(n + 1)) == NULL)
		return NULL;
	if (n > 0 && evbuffer_copyout(in, p, n) != (ev_ssize_t)n) {
		free(p);
		return NULL;
	}
	p[n] = '\0';
	if (len != NULL)
		*len = n;
	return p;
}

json_t *sw_http_body_json(struct evhttp_request *req)
{
	json_error_t jerr;
	json_t *j;
	char *body;
	size_t len;

	if ((body = sw_http_body(req, &len)) == NULL) {
		sw_http_reply_error(req, HTTP_INTERNAL, "internal", "out of memory");
		return NULL;
	}
	if (len == 0) {
		free(body);
		sw_http_reply_error(req, HTTP_BADREQUEST, "bad_request",
				    "empty body, JSON expected");
		return NULL;
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	free(body);
	if (j == NULL) {
		sw_http_reply_error(req, HTTP_BADREQUEST, "bad_json",
				    "invalid JSON at line %d: %s", jerr.line, jerr.text);
		return NULL;
	}
	return j;
}

const char *sw_http_path(struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	return path != NULL && path[0] != '\0' ? path : "/";
}

/* ---- built-in routes -------------------------------------------------- */

static int http_method_is_get(struct evhttp_request *req)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);

	return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
}

static void http_healthz(struct evhttp_request *req, void *arg)
{
	struct sw_http *h = arg;

	if (!http_method_is_get(req)) {
		sw_http_reply_method_not_allowed(req, "GET, HEAD");
		return;
	}
	if (h->health != NULL && h->health(h->health_opaque) != 0) {
		sw_http_reply_error(req, HTTP_SERVUNAVAIL, "unhealthy", "service is not healthy");
		return;
	}
	sw_http_reply_json(req, HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

static void http_metrics(struct evhttp_request *req, void *arg)
{
	struct sw_http *h = arg;
	struct evbuffer *buf;
	char *text;

	if (!http_method_is_get(req)) {
		sw_http_reply_method_not_allowed(req, "GET, HEAD");
		return;
	}
	if ((text = sw_metrics_render(h->metrics)) == NULL ||
	    (buf = evbuffer_new()) == NULL) {
		free(text);
		sw_http_reply_error(req, HTTP_INTERNAL, "internal", "cannot render metrics");
		return;
	}
	evbuffer_add(buf, text, strlen(text));
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, NULL, buf);
	evbuffer_free(buf);
}

/* ---- dispatch --------------------------------------------------------- */

/* Exact match first, else the longest prefix route. */
static const struct route *http_find(const struct sw_http *h, const char *path)
{
	const struct route *best = NULL;
	size_t i;

	for (i = 0; i < h->nroutes; i++) {
		const struct route *r = &h->routes[i];

		if (!r->prefix && strcmp(r->path, path) == 0)
			return r;
		if (r->prefix && strncmp(r->path, path, r->len) == 0 &&
		    (best == NULL || r->len > best->len))
			best = r;
	}
	return best;
}

static void http_dispatch(struct evhttp_request *req, void *arg)
{
	struct sw_http *h = arg;
	size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(req));
	const struct route *r;
	const char *path = sw_http_path(req);

	sw_metrics_counter_add(h->metrics, "sw_http_requests_total",
			       "HTTP requests received.", 1);
	if (body > h->max_body) {
		sw_metrics_counter_add(h->metrics, "sw_http_too_large_total",
				       "HTTP requests refused for their body size.", 1);
		sw_http_reply_error(req, 413, "too_large", "body of %zu bytes exceeds %zu",
				    body, h->max_body);
		return;
	}
	if ((r = http_find(h, path)) == NULL) {
		sw_http_reply_error(req, HTTP_NOTFOUND, "not_found", "no such path: %.*s",
				    HTTP_PATH_MAX, path);
		return;
	}
	r->cb(req, r->opaque);
}

int sw_http_route(struct sw_http *h, const char *path, void (*cb)(struct evhttp_request *, void *),
		  void *opaque)
{
	struct route *r;
	size_t len, i;
	int prefix;

	if (h == NULL || path == NULL || path[0] != '/' || cb == NULL)
		return -1;
	len = strlen(path);
	if (len > HTTP_PATH_MAX)
		return -1;
	prefix = path[len - 1] == '*';
	if (prefix)
		len--;
	for (i = 0; i < h->nroutes; i++)
		if (h->routes[i].prefix == prefix && h->routes[i].len == len &&
		    memcmp(h->routes[i].path, path, len) == 0)
			return -1;
	if (h->nroutes == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 8;

		if ((r = realloc(h->routes, cap * sizeof(*r))) == NULL)
			return -1;
		h->routes = r;
		h->cap = cap;
	}
	r = &h->routes[h->nroutes];
	if ((r->path = strndup(path, len)) == NULL)
		return -1;
	r->len = len;
	r->prefix = prefix;
	r->cb = cb;
	r->opaque = opaque;
	h->nroutes++;
	return 0;
}

/* ---- connection guard ------------------------------------------------- */

static void conn_timer(evutil_socket_t fd, short what, void *arg);

static void http_count(struct sw_http *h, const char *name, const char *help)
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
static struct bufferevent *http_bevcb(struct event_base *base, void *arg)
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

/* ---- lifetime --------------------------------------------------------- */

static int http_bound_port(struct evhttp_bound_socket *sock)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	evutil_socket_t fd = evhttp_bound_socket_get_fd(sock);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

void sw_http_limits_default(struct sw_http_limits *l)
{
	l->max_connections = 1024;
	l->max_per_address = 64;
	l->head_ms = 10000;
	l->body_ms = 60000;
	l->idle_ms = 60000;
}

struct sw_http *sw_http_new(struct event_base *base, const char *addr, int port, size_t max_body,
			    struct sw_metrics *metrics, sw_http_health_cb health, void *opaque,
			    char *errstr, size_t errlen)
{
	return sw_http_new_opts(base, addr, port, max_body, NULL, metrics, health, opaque, errstr,
				errlen);
}

struct sw_http *sw_http_new_opts(struct event_base *base, const char *addr, int port,
				 size_t max_body, const struct sw_http_limits *limits,
				 struct sw_metrics *metrics, sw_http_health_cb health,
				 void *opaque, char *errstr, size_t errlen)
{
	struct sw_http_limits def;
	struct sw_http *h;
	struct timeval idle;
	size_t slack;

	if (base == NULL || addr == NULL || port < 0 || port > 65535) {
		snprintf(errstr, errlen, "sw_http_new: bad arguments");
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	sw_http_limits_default(&def);
	h->lim = limits != NULL ? *limits : def;
	if (h->lim.max_connections == 0)
		h->lim.max_connections = def.max_connections;
	if (h->lim.max_per_address == 0)
		h->lim.max_per_address = def.max_per_address;
	if (h->lim.head_ms == 0)
		h->lim.head_ms = def.head_ms;
	if (h->lim.body_ms == 0)
		h->lim.body_ms = def.body_ms;
	if (h->lim.idle_ms == 0)
		h->lim.idle_ms = def.idle_ms;
	LIST_INIT(&h->conns);
	h->max_body = max_body;
	h->metrics = metrics;
	h->health = health;
	h->health_opaque = opaque;
	if ((h->http = evhttp_new(base)) == NULL) {
		snprintf(errstr, errlen, "evhttp_new failed");
		goto fail;
	}
	slack = max_body > HTTP_SLACK_MIN ? max_body : HTTP_SLACK_MIN;
	h->read_limit = max_body > (size_t)INT64_MAX / 2 ? (uint64_t)INT64_MAX
							 : (uint64_t)(max_body + slack);
	evhttp_set_max_body_size(h->http, (ev_ssize_t)h->read_limit);
	evhttp_set_max_headers_size(h->http, HTTP_MAX_HEADERS);
	idle.tv_sec = h->lim.idle_ms / 1000;
	idle.tv_usec = (h->lim.idle_ms % 1000) * 1000;
	evhttp_set_timeout_tv(h->http, &idle);
	evhttp_set_bevcb(h->http, http_bevcb, h);
	evhttp_set_default_content_type(h->http, "application/json");
	/* Every method reaches the dispatcher, so a refusal is JSON too. */
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(h->http, http_dispatch, h);
	if (sw_http_route(h, "/healthz", http_healthz, h) < 0 ||
	    sw_http_route(h, "/metrics", http_metrics, h) < 0) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	errno = 0;
	if ((h->sock = evhttp_bind_socket_with_handle(h->http, addr, (ev_uint16_t)port)) == NULL) {
		snprintf(errstr, errlen, "cannot listen on %s:%d: %s", addr, port,
			 errno != 0 ? strerror(errno) : "address not usable");
		goto fail;
	}
	if ((h->port = http_bound_port(h->sock)) < 0) {
		snprintf(errstr, errlen, "getsockname: %s", strerror(errno));
		goto fail;
	}
	return h;
fail:
	sw_http_destroy(h);
	return NULL;
}

/* Connections evhttp_free is about to free finish their finalisation
 * after h is gone: detach them first. */
void sw_http_destroy(struct sw_http *h)
{
	struct http_conn *c;
	struct http_peer *p;
	size_t i;

	if (h == NULL)
		return;
	while ((c = LIST_FIRST(&h->conns)) != NULL) {
		LIST_REMOVE(c, entry);
		c->h = NULL;
		event_free(c->timer);
		c->timer = NULL;
		if (c->wev != NULL)
			event_free(c->wev);
		c->wev = NULL;
	}
	if (h->http != NULL)
		evhttp_free(h->http);
	for (i = 0; i < HTTP_PEER_BUCKETS; i++)
		while ((p = h->peers[i]) != NULL) {
			h->peers[i] = p->next;
			free(p);
		}
	for (i = 0; i < h->nroutes; i++)
		free(h->routes[i].path);
	free(h->routes);
	free(h);
}

int sw_http_port(const struct sw_http *h)
{
	return h->port;
}

struct evhttp *sw_http_evhttp(struct sw_http *h)
{
	return h->http;
}
