/*
 * http_int.h: what http.c (server, routes, replies) and guard.c (the
 * connection guard) share.
 */
#ifndef HTTP_INT_H
#define HTTP_INT_H

#include <stdint.h>
#include <sys/queue.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

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
	const char *(*health_why)(void *opaque); /* may be NULL */
	void *health_why_opaque;
	struct route *routes;
	size_t nroutes, cap;
};

/* guard.c */

/* evhttp's bufferevent callback: every accepted connection's guarded
 * bufferevent (arg: the struct sw_http). */
struct bufferevent *http_bevcb(struct event_base *base, void *arg);
void http_count(struct sw_http *h, const char *name, const char *help);

#endif
