/*
 * sw_http: helpers around libevent's evhttp shared by every service.
 *
 * A struct sw_http owns an evhttp bound to one address; it installs
 * /healthz and /metrics, caps request bodies and answers errors as
 * {"error": {"code": "...", "message": "..."}}. Handlers are plain evhttp
 * callbacks; the helpers below make replies one line each.
 */
#ifndef SW_HTTP_H
#define SW_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

struct sw_http;
struct sw_metrics;

/* Limits on what clients may hold (see http.c's top comment). A zero
 * field takes its default; sw_http_limits_default fills them all. */
struct sw_http_limits {
	unsigned max_connections; /* open connections, all peers (1024) */
	unsigned max_per_address; /* open connections from one IP address (64) */
	unsigned head_ms;	  /* to receive a request head, counted from accept or the
				     first byte of a later request (10000) */
	unsigned body_ms;	  /* to receive a declared body after its head (60000) */
	unsigned idle_ms;	  /* inactivity on a connection, evhttp's timeout (60000) */
};
void sw_http_limits_default(struct sw_http_limits *l);

/* Bind addr:port (port 0 = ephemeral; see sw_http_port). max_body caps
 * request bodies: larger ones get 413 with a JSON error before the handler
 * runs. /healthz answers {"status":"ok"} unless the health callback (may be
 * NULL) returns non-zero, then 503. Returns NULL with errstr filled.
 * sw_http_new uses the default limits; sw_http_new_opts takes them (NULL =
 * defaults; the struct is copied). */
typedef int (*sw_http_health_cb)(void *opaque);
struct sw_http *sw_http_new(struct event_base *base, const char *addr, int port, size_t max_body,
			    struct sw_metrics *metrics, sw_http_health_cb health, void *opaque,
			    char *errstr, size_t errlen);
struct sw_http *sw_http_new_opts(struct event_base *base, const char *addr, int port,
				 size_t max_body, const struct sw_http_limits *limits,
				 struct sw_metrics *metrics, sw_http_health_cb health,
				 void *opaque, char *errstr, size_t errlen);
/* What /healthz says with its 503: why(opaque) returns a short reason
 * (read at once, may be NULL) instead of "service is not healthy". */
void sw_http_set_health_reason(struct sw_http *h, const char *(*why)(void *opaque),
			       void *opaque);
void sw_http_destroy(struct sw_http *h);
int sw_http_port(const struct sw_http *h);
struct evhttp *sw_http_evhttp(struct sw_http *h);

/* Route an exact path, or a prefix when the path ends in '*' (e.g.
 * "/v1/audit/runs/" followed by '*'; the longest prefix wins, an exact
 * route beats any prefix). Unknown paths answer 404 JSON. Returns 0, or
 * -1 on a path not starting with '/', a duplicate, or no memory. */
int sw_http_route(struct sw_http *h, const char *path, void (*cb)(struct evhttp_request *, void *),
		  void *opaque);

/* Replies. reply_json steals the reference to body. */
void sw_http_reply_json(struct evhttp_request *req, int status, json_t *body);
void sw_http_reply_error(struct evhttp_request *req, int status, const char *code,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* 405 with an Allow header (e.g. "GET, POST") and a JSON error. */
void sw_http_reply_method_not_allowed(struct evhttp_request *req, const char *allow);
/* The request's path (no query string, still percent-encoded); "/" when
 * empty. Points into req. */
const char *sw_http_path(struct evhttp_request *req);

/* Parse the request body as JSON. On failure replies 400 (or 413) itself
 * and returns NULL; the handler just returns. */
json_t *sw_http_body_json(struct evhttp_request *req);
/* The raw body (NUL-terminated copy, caller frees) and its length. */
char *sw_http_body(struct evhttp_request *req, size_t *len);

/* ---- Prometheus metrics ---------------------------------------------- */

/* A registry of counters and gauges, rendered in Prometheus text format.
 * Names must match [a-zA-Z_:][a-zA-Z0-9_:]*; a metric is created on first
 * use. Single-threaded (event loop) use. */
struct sw_metrics *sw_metrics_new(void);
void sw_metrics_destroy(struct sw_metrics *m);
void sw_metrics_counter_add(struct sw_metrics *m, const char *name, const char *help, double v);
void sw_metrics_gauge_set(struct sw_metrics *m, const char *name, const char *help, double v);
/* Text exposition format 0.0.4; caller frees. */
char *sw_metrics_render(const struct sw_metrics *m);

#endif
