/*
 * sse.c: GET /v1/approvals/stream, a text/event-stream of approvals.
 *
 * The stream opens with "event: snapshot" (the approvals GET /v1/approvals
 * shows, {"approvals": [...]}), then sends "event: approval" with one
 * approval (the view of api.c) each time one changes: a new ask, a
 * decision by a person, a deadline, a withdrawal. Changes this instance
 * commits go out at once; those of other instances within POL_TICK_MS
 * (decide.c's poll), possibly twice: a client keeps one row per id. A
 * stream sees its tenant's approvals only ("" = the operator's: all). A
 * comment every 15 s keeps proxies from closing an idle stream.
 */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

#include "policy.h"

#define MAX_STREAMS 256
#define KEEPALIVE_S 15

struct pol_stream {
	LIST_ENTRY(pol_stream) entry;
	struct pol_env *env;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *keepalive;
	char tenant[128];
	int started;
	int reading; /* the snapshot is being read */
	int gone;
};

static void stream_free(struct pol_stream *s)
{
	LIST_REMOVE(s, entry);
	s->env->nstreams--;
	if (s->keepalive != NULL)
		event_free(s->keepalive);
	free(s);
}

static void stream_end(struct pol_stream *s)
{
	if (s->conn != NULL)
		evhttp_connection_set_closecb(s->conn, NULL, NULL);
	if (s->started && !s->gone)
		evhttp_send_reply_end(s->req);
	stream_free(s);
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct pol_stream *s = arg;

	(void)conn;
	s->gone = 1;
	s->conn = NULL;
	if (!s->reading) {
		if (s->started)
			evhttp_send_reply_end(s->req); /* frees the detached request */
		s->started = 0;
		stream_free(s);
	}
}

static void send_text(struct pol_stream *s, const char *event, const char *data)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		return;
	if (event != NULL)
		evbuffer_add_printf(b, "event: %s\ndata: %s\n\n", event, data);
	else
		evbuffer_add_printf(b, "%s", data);
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
}

static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pol_stream *s = arg;

	(void)fd;
	(void)what;
	if (s->started && !s->gone)
		send_text(s, NULL, ": keepalive\n\n");
}

static void snapshot_cb(PGresult *res, const char *err, void *opaque)
{
	struct pol_stream *s = opaque;
	struct evkeyvalq *h = evhttp_request_get_output_headers(s->req);
	struct evhttp_connection *conn = evhttp_request_get_connection(s->req);
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	struct timeval wt = {60, 0}, ka = {KEEPALIVE_S, 0};
	int one = 1;

	s->reading = 0;
	if (s->gone) {
		stream_free(s);
		return;
	}
	if (err != NULL || PQntuples(res) != 1) {
		sw_http_reply_error(s->req, 503, "unavailable", "the policy store is unavailable");
		if (s->conn != NULL)
			evhttp_connection_set_closecb(s->conn, NULL, NULL);
		stream_free(s);
		return;
	}
	if (bev != NULL)
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evhttp_remove_header(h, "Content-Type");
	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	evhttp_send_reply_start(s->req, 200, "OK");
	s->started = 1;
	if (bev != NULL)
		bufferevent_set_timeouts(bev, NULL, &wt);
	send_text(s, "snapshot", PQgetvalue(res, 0, 0));
	if ((s->keepalive = event_new(s->env->base, -1, EV_PERSIST, keepalive_cb, s)) != NULL)
		event_add(s->keepalive, &ka);
}

void pol_sse_open(struct pol_env *env, struct evhttp_request *req, const char *tenant)
{
	struct pol_stream *s;
	const char *params[1] = {tenant};

	if (env->nstreams >= MAX_STREAMS || sw_service_draining(env->svc)) {
		sw_http_reply_error(req, 503, "unavailable", "too many streams open");
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return;
	}
	s->env = env;
	s->req = req;
	snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
	LIST_INSERT_HEAD(&env->streams, s, entry);
	env->nstreams++;
	s->conn = evhttp_request_get_connection(req);
	if (s->conn != NULL)
		evhttp_connection_set_closecb(s->conn, on_close, s);
	s->reading = 1;
	if (sw_store_query(env->store,
			   "SELECT json_build_object('approvals', coalesce(json_agg(x), '[]'))::text"
			   " FROM (SELECT " POL_APPROVAL_JSON " AS x FROM requests"
			   " WHERE approval_id IS NOT NULL AND ($1 = '' OR tenant = $1)"
			   " ORDER BY state = 'pending' DESC, received_us DESC LIMIT 500) s",
			   1, params, snapshot_cb, s) == -1)
		snapshot_cb(NULL, "cannot queue", s);
}

void pol_sse_push(struct pol_env *env, const char *approvals_json)
{
	json_t *arr, *a;
	struct pol_stream *s;
	size_t i;
	char *text;

	if (env->nstreams == 0 || (arr = json_loads(approvals_json, 0, NULL)) == NULL)
		return;
	json_array_foreach(arr, i, a) {
		const char *t = json_string_value(json_object_get(a, "tenant"));

		if (t == NULL || (text = json_dumps(a, JSON_COMPACT)) == NULL)
			continue;
		LIST_FOREACH(s, &env->streams, entry)
			if (s->started && !s->gone && (s->tenant[0] == '\0' ||
						       strcmp(s->tenant, t) == 0))
				send_text(s, "approval", text);
		free(text);
	}
	json_decref(arr);
}

int pol_sse_active(const struct pol_env *env)
{
	return env->nstreams > 0;
}

void pol_sse_close_all(struct pol_env *env)
{
	struct pol_stream *s;

	while ((s = LIST_FIRST(&env->streams)) != NULL) {
		if (s->reading) {
			/* its snapshot callback never comes: the store is gone */
			if (s->conn != NULL)
				evhttp_connection_set_closecb(s->conn, NULL, NULL);
			stream_free(s);
			continue;
		}
		stream_end(s);
	}
}
