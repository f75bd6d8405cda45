/*
 * cli_srv: the stand-in HTTP server of the CLI tests (cli_srv.h).
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "cli_srv.h"

struct cli_server cli_srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static char *dupn(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "OTHER";
	}
}

static void handle(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t blen = evbuffer_get_length(in);
	struct cli_rq *r;
	char *body;

	(void)arg;
	SW_CHECK((body = malloc(blen + 1)) != NULL);
	evbuffer_copyout(in, body, blen);
	body[blen] = '\0';
	pthread_mutex_lock(&cli_srv.mu);
	SW_CHECK(cli_srv.nreqs < CLI_SRV_REQS);
	r = &cli_srv.reqs[cli_srv.nreqs++];
	snprintf(r->method, sizeof(r->method), "%s", method_name(evhttp_request_get_command(req)));
	r->path = dupn(evhttp_uri_get_path(u));
	r->query = dupn(evhttp_uri_get_query(u));
	r->auth = dupn(evhttp_find_header(h, "Authorization"));
	r->ctype = dupn(evhttp_find_header(h, "Content-Type"));
	r->body = body;
	pthread_mutex_unlock(&cli_srv.mu);
	cli_srv.handle(req, r);
}

static void *serve(void *arg)
{
	(void)arg;
	event_base_dispatch(cli_srv.base);
	return NULL;
}

void cli_srv_start(void (*handler)(struct evhttp_request *req, const struct cli_rq *r))
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	cli_srv.handle = handler;
	SW_CHECK(evthread_use_pthreads() == 0);
	SW_CHECK((cli_srv.base = event_base_new()) != NULL);
	SW_CHECK((cli_srv.http = evhttp_new(cli_srv.base)) != NULL);
	evhttp_set_allowed_methods(cli_srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
						     EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
						     EVHTTP_REQ_DELETE);
	evhttp_set_gencb(cli_srv.http, handle, NULL);
	SW_CHECK((bs = evhttp_bind_socket_with_handle(cli_srv.http, "127.0.0.1", 0)) != NULL);
	SW_CHECK(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&a, &len) == 0);
	cli_srv.port = ntohs(a.sin_port);
	SW_CHECK(pthread_create(&cli_srv.th, NULL, serve, NULL) == 0);
}

void cli_srv_stop(void)
{
	event_base_loopexit(cli_srv.base, NULL);
	pthread_join(cli_srv.th, NULL);
	evhttp_free(cli_srv.http);
	event_base_free(cli_srv.base);
	for (int i = 0; i < cli_srv.nreqs; i++) {
		free(cli_srv.reqs[i].path);
		free(cli_srv.reqs[i].query);
		free(cli_srv.reqs[i].auth);
		free(cli_srv.reqs[i].ctype);
		free(cli_srv.reqs[i].body);
	}
	cli_srv.nreqs = 0;
}

void cli_srv_reply(struct evhttp_request *req, int status, const char *ctype, const char *body)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add(b, body, strlen(body));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", b);
	evbuffer_free(b);
}

void cli_srv_json(struct evhttp_request *req, int status, const char *body)
{
	cli_srv_reply(req, status, "application/json", body);
}

void cli_srv_err(struct evhttp_request *req, int status, const char *code, const char *msg)
{
	json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
	char *s = json_dumps(j, JSON_COMPACT);

	cli_srv_json(req, status, s);
	free(s);
	json_decref(j);
}

int cli_srv_nreqs(void)
{
	int n;

	pthread_mutex_lock(&cli_srv.mu);
	n = cli_srv.nreqs;
	pthread_mutex_unlock(&cli_srv.mu);
	return n;
}

struct cli_rq *cli_srv_last(const char *method, const char *path)
{
	struct cli_rq *r = NULL;

	pthread_mutex_lock(&cli_srv.mu);
	for (int i = cli_srv.nreqs - 1; i >= 0 && r == NULL; i--)
		if (strcmp(cli_srv.reqs[i].method, method) == 0 &&
		    strcmp(cli_srv.reqs[i].path, path) == 0)
			r = &cli_srv.reqs[i];
	pthread_mutex_unlock(&cli_srv.mu);
	return r;
}

int cli_srv_count(const char *method, const char *path)
{
	int n = 0;

	pthread_mutex_lock(&cli_srv.mu);
	for (int i = 0; i < cli_srv.nreqs; i++)
		n += strcmp(cli_srv.reqs[i].method, method) == 0 &&
		     strcmp(cli_srv.reqs[i].path, path) == 0;
	pthread_mutex_unlock(&cli_srv.mu);
	return n;
}

void cli_expect(const char *what, struct cli_out *o, int status, const char *out, const char *err)
{
	if (o->status != status || (out != NULL && strcmp(o->out, out) != 0) ||
	    (err != NULL && strcmp(o->err, err) != 0)) {
		cli_out_dump(what, o);
		if (out != NULL)
			fprintf(stderr, "--- expected stdout:\n%s", out);
		if (err != NULL)
			fprintf(stderr, "--- expected stderr:\n%s", err);
		SW_CHECKF(0, "%s: exit %d", what, status);
	}
	cli_out_free(o);
}

void cli_write_bytes(const char *dir, const char *name, const void *data, size_t len, char *path,
		     size_t n)
{
	FILE *f;

	snprintf(path, n, "%s/%s", dir, name);
	SW_CHECK((f = fopen(path, "wb")) != NULL);
	SW_CHECK(fwrite(data, 1, len, f) == len);
	SW_CHECK(fclose(f) == 0);
}
