/*
 * The audit HTTP API:
 *
 *   GET /v1/audit/runs/{run_id}   one run's events in log order, decoded:
 *       {"run_id": ..., "events": [{"seq", "topic", "partition", "offset",
 *        "event": {...}}]}
 *
 * The index (PostgreSQL, asynchronous) names the records; they are read
 * from the log by their place on disk (a pread of a durable record).
 */
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "audit.h"

struct run_req {
	struct audit_env *env;
	struct evhttp_request *req;
	char run_id[64];
};

static int valid_run_id(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n >= 64)
		return 0;
	for (i = 0; i < n; i++)
		if (!(s[i] == '-' || s[i] == '_' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
			return 0;
	return 1;
}

static void run_rows(PGresult *res, const char *err, void *opaque)
{
	struct run_req *r = opaque;
	struct audit_env *env = r->env;
	json_t *events, *body;
	int i, n;

	if (err != NULL) {
		sw_http_reply_error(r->req, 500, "index_error", "audit index query failed: %s",
				    err);
		free(r);
		return;
	}
	n = PQntuples(res);
	events = json_array();
	for (i = 0; i < n; i++) {
		uint64_t seg = strtoull(PQgetvalue(res, i, 0), NULL, 10);
		uint64_t off = strtoull(PQgetvalue(res, i, 1), NULL, 10);
		struct sw_alog_rec rec;
		char e[256];
		void *buf = NULL;
		json_t *ev, *item;

		if (sw_alog_read_at(env->log_dir, seg, off, &rec, &buf, e, sizeof(e)) == -1) {
			json_decref(events);
			free(buf);
			sw_http_reply_error(r->req, 500, "log_error",
					    "audit log record unreadable: %s", e);
			free(r);
			return;
		}
		item = json_pack("{s:I, s:s%, s:i, s:I, s:I}", "seq", (json_int_t)rec.seq, "topic",
				 rec.topic, rec.topic_len, "partition", (int)rec.partition,
				 "offset", (json_int_t)rec.offset, "time_us",
				 (json_int_t)rec.time_us);
		ev = rec.kind == SW_ALOG_EVENT
			     ? sw_event_decode(env->reg, rec.payload, rec.payload_len, e, sizeof(e))
			     : NULL;
		if (ev != NULL)
			json_object_set_new(item, "event", ev);
		else
			json_object_set_new(item, "decode_error", json_string(e));
		json_array_append_new(events, item);
		free(buf);
	}
	body = json_pack("{s:s, s:o}", "run_id", r->run_id, "events", events);
	sw_http_reply_json(r->req, 200, body);
	free(r);
}

static void runs_cb(struct evhttp_request *req, void *arg)
{
	struct audit_env *env = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	const char *prefix = "/v1/audit/runs/";
	const char *params[1];
	struct run_req *r;
	char *id;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		sw_http_reply_error(req, 405, "method_not_allowed", "use GET");
		return;
	}
	if (path == NULL || strncmp(path, prefix, strlen(prefix)) != 0) {
		sw_http_reply_error(req, 404, "not_found", "no such resource");
		return;
	}
	id = evhttp_uridecode(path + strlen(prefix), 0, NULL);
	if (id == NULL || !valid_run_id(id)) {
		sw_http_reply_error(req, 400, "bad_run_id",
				    "a run id is 1-63 characters of [A-Za-z0-9._-]");
		free(id);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		free(id);
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return;
	}
	r->env = env;
	r->req = req;
	snprintf(r->run_id, sizeof(r->run_id), "%s", id);
	free(id);
	params[0] = r->run_id;
	if (sw_store_query(env->store,
			   "SELECT segment, file_off FROM events WHERE run_id = $1 ORDER BY seq"
			   " LIMIT 100000",
			   1, params, run_rows, r) == -1) {
		free(r);
		sw_http_reply_error(req, 503, "unavailable", "index unavailable");
	}
}

int audit_api_start(struct audit_env *env, char *errstr, size_t errlen)
{
	if ((env->http = sw_service_http(env->svc, AUDIT_MAX_BODY, errstr, errlen)) == NULL)
		return -1;
	if (sw_http_route(env->http, "/v1/audit/runs/*", runs_cb, env) == -1) {
		snprintf(errstr, errlen, "cannot route /v1/audit/runs/");
		return -1;
	}
	return 0;
}
