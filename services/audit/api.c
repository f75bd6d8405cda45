/*
 * The audit HTTP API:
 *
 *   GET /v1/audit/runs/{run_id}   one run's events in log order, decoded:
 *       {"run_id": ..., "events": [{"seq", "topic", "partition", "offset",
 *        "event": {...}}]}
 *   GET /v1/audit/events          a cursor over the whole log (feed.c)
 *
 * Who may read: in single_org mode anyone who reaches it, as the run API.
 * In multi_tenant mode "Authorization: Bearer <key>" with a key the
 * scheduler issued (learnt from apikey.* and tenant.* events, index.c):
 * a tenant's key reads the events of its own tenant (header.tenant) only,
 * and a run with none of them is 404, as a missing one; an auditor key
 * reads every run, a deleted tenant's too. No key, or an unknown, revoked
 * or deleted tenant's key, is 401.
 *
 * The index (PostgreSQL, asynchronous) names the records; they are read
 * from the log by their place on disk (a pread of a durable record).
 */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "audit.h"

#define KEY_MAX 128 /* longest Bearer value accepted */

struct run_req {
	struct audit_env *env;
	struct evhttp_request *req;
	char run_id[64];
	char tenant[128]; /* the tenant whose events may be read; "" = all */
	int filtered;     /* a tenant's key: none of its events is 404 */
};

int audit_valid_run_id(const char *s)
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

json_t *audit_api_item(struct audit_env *env, uint64_t segment, uint64_t file_off, char *errstr,
		       size_t errlen)
{
	struct sw_alog_rec rec;
	char e[256];
	void *buf = NULL;
	json_t *ev, *item;

	if (sw_alog_read_at(env->log_dir, segment, file_off, &rec, &buf, errstr, errlen) == -1) {
		free(buf);
		return NULL;
	}
	item = json_pack("{s:I, s:s%, s:i, s:I, s:I}", "seq", (json_int_t)rec.seq, "topic",
			 rec.topic, rec.topic_len, "partition", (int)rec.partition, "offset",
			 (json_int_t)rec.offset, "time_us", (json_int_t)rec.time_us);
	if (item == NULL) {
		free(buf);
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	ev = rec.kind == SW_ALOG_EVENT
		     ? sw_event_decode(env->reg, rec.payload, rec.payload_len, e, sizeof(e))
		     : NULL;
	if (ev != NULL)
		json_object_set_new(item, "event", ev);
	else
		json_object_set_new(item, "decode_error",
				    json_string(rec.kind == SW_ALOG_EVENT ? e : "not an event"));
	free(buf);
	return item;
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
	if (n == 0 && r->filtered) {
		sw_http_reply_error(r->req, 404, "not_found", "no such run");
		free(r);
		return;
	}
	events = json_array();
	for (i = 0; i < n; i++) {
		uint64_t seg = strtoull(PQgetvalue(res, i, 0), NULL, 10);
		uint64_t off = strtoull(PQgetvalue(res, i, 1), NULL, 10);
		char e[256];
		json_t *item = audit_api_item(env, seg, off, e, sizeof(e));

		if (item == NULL) {
			json_decref(events);
			sw_http_reply_error(r->req, 500, "log_error",
					    "audit log record unreadable: %s", e);
			free(r);
			return;
		}
		json_array_append_new(events, item);
	}
	body = json_pack("{s:s, s:o}", "run_id", r->run_id, "events", events);
	sw_http_reply_json(r->req, 200, body);
	free(r);
}

/* The run's events the request may see, in log order. */
static void run_query(struct run_req *r)
{
	const char *params[3] = {r->run_id, r->filtered ? r->tenant : NULL, r->env->log_id};

	/* this instance's log only: the rows of the others point into theirs */
	if (sw_store_query(r->env->store,
			   "SELECT segment, file_off FROM events WHERE log_id = $3 AND run_id = $1"
			   " AND ($2::text IS NULL OR tenant = $2) ORDER BY seq LIMIT 100000",
			   3, params, run_rows, r) == -1) {
		sw_http_reply_error(r->req, 503, "unavailable", "index unavailable");
		free(r);
	}
}

struct auth_req {
	struct audit_env *env;
	struct evhttp_request *req;
	audit_auth_cb cb;
	void *opaque;
};

static void auth_rows(PGresult *res, const char *err, void *opaque)
{
	struct auth_req *a = opaque;
	struct evhttp_request *req = a->req;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "audit key lookup failed", "error", err, NULL);
		sw_http_reply_error(req, 503, "unavailable", "key lookup failed");
		req = NULL;
	} else if (PQntuples(res) != 1) {
		sw_http_reply_error(req, 401, "unauthorized", "unknown API key");
		req = NULL;
	}
	if (req == NULL)
		a->cb(NULL, NULL, a->opaque);
	else if (strcmp(PQgetvalue(res, 0, 0), "AUDITOR") != 0)
		a->cb(req, PQgetvalue(res, 0, 1), a->opaque);
	else
		a->cb(req, NULL, a->opaque);
	free(a);
}

void audit_api_auth(struct audit_env *env, struct evhttp_request *req, audit_auth_cb cb,
		    void *opaque)
{
	char key[KEY_MAX];
	struct auth_req *a;

	if (!env->multi_tenant) {
		cb(req, NULL, opaque);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
	if (sw_auth_bearer(req, key, sizeof(key)) != 0) {
		sw_http_reply_error(req, 401, "unauthorized",
				    "an API key is required: Authorization: Bearer <key>");
		cb(NULL, NULL, opaque);
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		sodium_memzero(key, sizeof(key));
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		cb(NULL, NULL, opaque);
		return;
	}
	a->env = env;
	a->req = req;
	a->cb = cb;
	a->opaque = opaque;
	if (sw_auth_key_query(env->store,
			      "SELECT k.role, k.tenant_id FROM apikeys k"
			      " LEFT JOIN tenants t ON t.id = k.tenant_id"
			      " WHERE k.key_hash = $1::bytea AND NOT k.revoked"
			      " AND (k.role = 'AUDITOR' OR (k.role = 'TENANT' AND NOT t.deleted))",
			      key, sizeof(key), auth_rows, a) == -1) {
		free(a);
		sw_http_reply_error(req, 503, "unavailable", "key lookup failed");
		cb(NULL, NULL, opaque);
	}
}

static void run_authed(struct evhttp_request *req, const char *tenant, void *opaque)
{
	struct run_req *r = opaque;

	if (req == NULL) {
		free(r);
		return;
	}
	if (tenant != NULL) {
		r->filtered = 1;
		snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
	}
	run_query(r);
}

static void runs_cb(struct evhttp_request *req, void *arg)
{
	struct audit_env *env = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	const char *prefix = "/v1/audit/runs/";
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
	if (id == NULL || !audit_valid_run_id(id)) {
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
	audit_api_auth(env, req, run_authed, r);
}

int audit_api_start(struct audit_env *env, char *errstr, size_t errlen)
{
	if (strcmp(env->cfg->mode, "multi_tenant") == 0) {
		env->multi_tenant = 1;
	} else if (env->cfg->mode[0] != '\0' && strcmp(env->cfg->mode, "single_org") != 0) {
		snprintf(errstr, errlen, "SAGEWAI_MODE must be single_org or multi_tenant, not '%s'",
			 env->cfg->mode);
		return -1;
	}
	if ((env->http = sw_service_http(env->svc, AUDIT_MAX_BODY, errstr, errlen)) == NULL)
		return -1;
	if (sw_http_route(env->http, "/v1/audit/runs/*", runs_cb, env) == -1) {
		snprintf(errstr, errlen, "cannot route /v1/audit/runs/");
		return -1;
	}
	return audit_feed_start(env, errstr, errlen);
}
