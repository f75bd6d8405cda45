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
 * above the read limit is refused by the connection guard (guard.c) with a
 * JSON 413 as soon as its head (or chunk size line) arrives, without
 * reading it, and the connection is closed. Memory per connection stays
 * bounded either way.
 *
 * The connection guard (caps, deadlines, early 413) is guard.c.
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
		const char *why = h->health_why ? h->health_why(h->health_why_opaque) : NULL;

		sw_http_reply_error(req, HTTP_SERVUNAVAIL, "unhealthy", "%s",
				    why != NULL && *why ? why : "service is not healthy");
		return;
	}
	sw_http_reply_json(req, HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

void sw_http_set_health_reason(struct sw_http *h, const char *(*why)(void *opaque),
			       void *opaque)
{
	h->health_why = why;
	h->health_why_opaque = opaque;
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
