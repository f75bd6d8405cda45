/*
 * The stand-in HTTP server the CLI tests run the sagewai binary against
 * (library cli_srv): an evhttp server in a thread of the test that
 * records every request (method, path, query, Authorization, Content-Type,
 * body) and hands it to the test's handler, which answers it.
 */
#ifndef CLI_SRV_H
#define CLI_SRV_H

#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stddef.h>

#include "cli_spawn.h"

struct cli_rq {
	char method[8]; /* GET, POST, PUT, DELETE or OTHER */
	char *path;
	char *query; /* may be NULL */
	char *auth;  /* Authorization header, may be NULL */
	char *ctype; /* Content-Type, may be NULL */
	char *body;  /* NUL-terminated */
};

#define CLI_SRV_REQS 512

struct cli_server {
	struct event_base *base;
	struct evhttp *http;
	int port;
	pthread_t th;
	pthread_mutex_t mu; /* over reqs and nreqs */
	struct cli_rq reqs[CLI_SRV_REQS];
	int nreqs;
	void (*handle)(struct evhttp_request *req, const struct cli_rq *r);
};

extern struct cli_server cli_srv;

/* Listen on 127.0.0.1 (cli_srv.port) and serve in a thread: each request
 * recorded, then answered by handle. */
void cli_srv_start(void (*handle)(struct evhttp_request *req, const struct cli_rq *r));
/* Stop serving and free what was recorded. */
void cli_srv_stop(void);

void cli_srv_reply(struct evhttp_request *req, int status, const char *ctype, const char *body);
void cli_srv_json(struct evhttp_request *req, int status, const char *body);
/* {"error": {"code": code, "message": msg}} */
void cli_srv_err(struct evhttp_request *req, int status, const char *code, const char *msg);

int cli_srv_nreqs(void);
/* The last request of method on path (fields valid until cli_srv_stop),
 * or NULL. */
struct cli_rq *cli_srv_last(const char *method, const char *path);
/* How many of method on path came. */
int cli_srv_count(const char *method, const char *path);

/* o's exit status is status and, when not NULL, its stdout and stderr are
 * exactly out and err (else o is shown and the test fails); o freed. */
void cli_expect(const char *what, struct cli_out *o, int status, const char *out, const char *err);
/* dir/name holding len bytes of data; its path into path. */
void cli_write_bytes(const char *dir, const char *name, const void *data, size_t len, char *path,
		     size_t n);

#endif
