/*
 * api.c: the HTTP API of docs/IDENTITY.md.
 *
 *   GET    /v1/secrets                         the scope's secrets (no values)
 *   PUT    /v1/secrets/{name}                  set: a new secret or version
 *   POST   /v1/secrets/{name}/rotate           a new version of an existing one
 *   POST   /v1/secrets/{name}/revoke           revoke one version or all
 *   DELETE /v1/secrets/{name}                  revoke all and destroy the values
 *   POST   /v1/secrets/rekey                   re-encrypt under the current key
 *   GET    /v1/identity/profiles[?level=L]
 *   GET    /v1/identity/profiles/{name}?level=L
 *   PUT    /v1/identity/profiles/{name}?level=L
 *   DELETE /v1/identity/profiles/{name}?level=L
 *   POST   /v1/identity/resolve                the cascade, without storing it
 *
 * Who: the operator's token (Bearer SAGEWAI_ADMIN_TOKEN) reads and writes
 * everything, naming the scope with ?tenant=ID-or-NAME (_system for the
 * system level; default in single_org). In multi_tenant a tenant's API key
 * (its SHA-256 learnt from apikey.created, tenants.c) reads its own tenant
 * only: another scope is 404 as a missing object, any write 403. In
 * single_org reads need no credential, writes the token.
 *
 * Request bodies are read into wiped memory and the input buffer is wiped
 * in place; a value's bytes never reach a log line, an answer or an error.
 * Each change is committed, the cache entries of its scope dropped, its
 * event (secret.*, profile.*) delivered, and only then answered.
 */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "identity.h"

#define BEARER_MAX 512

enum act {
	A_SECRETS_LIST,
	A_SECRET_PUT,
	A_SECRET_ROTATE,
	A_SECRET_REVOKE,
	A_SECRET_DELETE,
	A_REKEY,
	A_PROFILES_LIST,
	A_PROFILE_GET,
	A_PROFILE_PUT,
	A_PROFILE_DELETE,
	A_RESOLVE,
};

struct areq {
	struct id_env *env;
	struct evhttp_request *req;
	enum act act;
	int write;
	char name[64];
	enum id_level level;
	int level_given;
	char tenant_ref[128]; /* ?tenant=, "" when absent */
	int admin;
	char own[128];	    /* a tenant key's tenant id */
	char own_name[128]; /* and its name, when known */
	char scope[128];    /* the tenant id (or _system) acted on */
	json_t *body;
	/* secrets */
	uint8_t *value; /* sodium_malloc'd */
	size_t vlen;
	char backend[8];
	int backend_given;
	char vault_path[256];
	int existed;
	int version;
	int hard;
	int all_versions;
	json_t *result;
};

static void areq_free(struct areq *a)
{
	a->env->busy--;
	json_decref(a->body);
	json_decref(a->result);
	id_secure_free(a->value);
	sodium_memzero(a, sizeof(*a));
	free(a);
}

static void fail(struct areq *a, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(struct areq *a, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sw_http_reply_error(a->req, status, code, "%s", msg);
	areq_free(a);
}

static void db_fail(struct areq *a, const char *what, const char *err)
{
	sw_log(SW_LOG_ERROR, what, "error", err ? err : "", NULL);
	fail(a, 503, "backend_unavailable", "backend builtin unavailable: %s", what);
}

static void reply(struct areq *a, int status, json_t *body)
{
	sw_http_reply_json(a->req, status, body);
	areq_free(a);
}

static const char *actor(const struct areq *a)
{
	return a->admin ? "admin" : "apikey";
}

/* The body as JSON, read into wiped memory; the input buffer is wiped in
 * place. NULL after answering 400 (never quoting the body). */
static json_t *read_body(struct areq *a)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(a->req);
	size_t n = evbuffer_get_length(in);
	json_error_t jerr;
	unsigned char *p;
	char *copy;
	json_t *j;

	if (n == 0) {
		fail(a, 400, "bad_request", "empty body, JSON expected");
		return NULL;
	}
	if ((p = evbuffer_pullup(in, -1)) == NULL || (copy = sodium_malloc(n)) == NULL) {
		fail(a, 503, "unavailable", "out of memory");
		return NULL;
	}
	memcpy(copy, p, n);
	sodium_memzero(p, n);
	evbuffer_drain(in, n);
	j = json_loadb(copy, n, JSON_REJECT_DUPLICATES, &jerr);
	sodium_free(copy);
	if (j == NULL) {
		fail(a, 400, "bad_json", "the body is not valid JSON (line %d, column %d)",
		     jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		fail(a, 400, "bad_request", "the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* ---- secrets: list ----------------------------------------------------------- */

static void text_json_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	json_t *j;

	if (err != NULL) {
		db_fail(a, "cannot read", err);
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		fail(a, 404, "not_found", "no such %s", a->act == A_PROFILE_GET ? "profile" : "object");
		return;
	}
	if ((j = json_loads(PQgetvalue(res, 0, 0), 0, NULL)) == NULL) {
		fail(a, 500, "internal", "cannot encode the answer");
		return;
	}
	reply(a, 200, j);
}

#define TS(c) "to_char(" c " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static void secrets_list(struct areq *a)
{
	const char *params[1] = {a->scope};

	if (sw_store_query(
		    a->env->store,
		    "SELECT json_build_object('secrets', coalesce(json_agg(json_build_object("
		    " 'name', s.name, 'backend', s.backend, 'vault_path', s.vault_path,"
		    " 'state', coalesce((SELECT state FROM versions v WHERE v.tenant = s.tenant"
		    "  AND v.name = s.name ORDER BY version DESC LIMIT 1), 'deleted'),"
		    " 'current', coalesce((SELECT max(version) FROM versions v"
		    "  WHERE v.tenant = s.tenant AND v.name = s.name), 0),"
		    " 'versions', (SELECT coalesce(json_agg(json_build_object('version', version,"
		    "  'state', state, 'created', " TS("created") ") ORDER BY version), '[]')"
		    "  FROM versions v WHERE v.tenant = s.tenant AND v.name = s.name))"
		    " ORDER BY s.name), '[]'))::text FROM secrets s WHERE s.tenant = $1",
		    1, params, text_json_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

/* ---- secrets: set and rotate ----------------------------------------------------- */

static void published_cb(void *env, const char *err, void *opaque)
{
	struct areq *a = opaque;

	(void)env;
	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "change committed but its event was not delivered", "error",
		       err, NULL);
		fail(a, 500, "event_failed",
		     "the change is committed, but its event could not be delivered (%s); repeat "
		     "the request",
		     err);
		return;
	}
	reply(a, a->act == A_SECRET_PUT || a->act == A_SECRET_ROTATE ? 201 : 200,
	      json_incref(a->result));
}

/* Publish an event of the scope (Kafka key: the scope) and answer a->result
 * once it is delivered. */
static void publish(struct areq *a, const char *type, json_t *fields)
{
	struct sw_event_header h;
	char err[256];

	sw_event_header_init(&h, type, ID_PRODUCER);
	snprintf(h.tenant, sizeof(h.tenant), "%s", a->scope);
	if (sw_svcbus_publish(&a->env->bus, type, SW_TOPIC_IDENTITY, a->scope, &h, fields,
			      published_cb, a, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "cannot produce a change event", "type", type, "error", err,
		       NULL);
		fail(a, 500, "event_failed",
		     "the change is committed, but its event could not be produced; repeat the "
		     "request");
	}
}

static void put_cb(struct id_env *env, const struct id_bvalue *v, void *opaque)
{
	struct areq *a = opaque;
	char mac[2 * ID_MAC_BYTES + 1];

	if (v->err != ID_BOK) {
		fail(a, v->err == ID_BMISSING ? 422 : 503,
		     v->err == ID_BMISSING ? "missing" : "backend_unavailable", "%s", v->error);
		return;
	}
	id_cache_drop(env, a->scope);
	sw_hex_encode(v->mac, ID_MAC_BYTES, mac);
	a->result = json_pack("{s:s, s:i, s:s}", "name", a->name, "version", v->version,
			      "backend", a->backend);
	sw_log(SW_LOG_INFO, "secret version stored", "scope", a->scope, "secret", a->name,
	       "backend", a->backend, NULL);
	publish(a, "secret.set",
		json_pack("{s:s, s:i, s:s, s:b, s:s, s:s}", "name", a->name, "version",
			  v->version, "backend", a->backend, "rotated", a->existed, "actor",
			  actor(a), "mac", mac));
}

static void do_put(struct areq *a)
{
	struct id_secret_ref ref;

	memset(&ref, 0, sizeof(ref));
	snprintf(ref.tenant, sizeof(ref.tenant), "%s", a->scope);
	snprintf(ref.name, sizeof(ref.name), "%s", a->name);
	snprintf(ref.backend, sizeof(ref.backend), "%s", a->backend);
	snprintf(ref.vault_path, sizeof(ref.vault_path), "%s", a->vault_path);
	if (id_backend_put(a->env, &ref, a->value, a->vlen, put_cb, a) == -1)
		fail(a, 503, "backend_unavailable", "backend %s unavailable for secret %s%s",
		     a->backend, a->name,
		     strcmp(a->backend, "vault") == 0 && a->env->vault == NULL
			     ? ": not configured (SAGEWAI_VAULT_ADDR)"
			     : "");
}

/* The secrets row as it is now: its backend decides. */
static void secret_row_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	const char *backend, *path;
	int live;

	if (err != NULL) {
		db_fail(a, "cannot record the secret", err);
		return;
	}
	if (PQntuples(res) != 1) {
		fail(a, 404, "not_found", "no such secret: %s", a->name);
		return;
	}
	backend = PQgetvalue(res, 0, 0);
	path = PQgetvalue(res, 0, 1);
	live = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	a->existed = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
	if (a->act == A_SECRET_ROTATE && !live) {
		fail(a, 404, "not_found", "no such secret: %s (every version was deleted)",
		     a->name);
		return;
	}
	if (a->backend_given && strcmp(backend, a->backend) != 0) {
		fail(a, 409, "conflict",
		     "secret %s is kept by backend %s (chosen at its first set); delete it to "
		     "change",
		     a->name, backend);
		return;
	}
	if (strcmp(path, a->vault_path) != 0 && (a->vault_path[0] != '\0' || a->value != NULL)) {
		fail(a, 409, "conflict",
		     path[0] != '\0'
			     ? "secret %s refers to an operator's Vault path: set its value in "
			       "Vault, or delete it first"
			     : "secret %s holds values of its own; delete it before referring to a "
			       "Vault path",
		     a->name);
		return;
	}
	snprintf(a->backend, sizeof(a->backend), "%s", backend);
	if (a->act == A_SECRET_ROTATE && path[0] != '\0') {
		fail(a, 409, "conflict",
		     "secret %s refers to an operator's Vault path: rotate it in Vault", a->name);
		return;
	}
	do_put(a);
}

static void secret_put(struct areq *a)
{
	const char *k, *b64;
	json_t *v;
	const char *params[4];
	struct sw_store_stmt st[2];

	json_object_foreach(a->body, k, v) {
		if (strcmp(k, "value_b64") == 0 && json_is_string(v))
			continue;
		if (a->act == A_SECRET_PUT && strcmp(k, "backend") == 0 && json_is_string(v) &&
		    (strcmp(json_string_value(v), "builtin") == 0 ||
		     strcmp(json_string_value(v), "vault") == 0))
			continue;
		if (a->act == A_SECRET_PUT && strcmp(k, "vault_path") == 0 && json_is_string(v))
			continue;
		fail(a, 400, "bad_request",
		     a->act == A_SECRET_PUT
			     ? "%.64s: the body is {\"value_b64\": BASE64, \"backend\": \"builtin\" or "
			       "\"vault\"} or {\"vault_path\": PATH}"
			     : "%.64s: the body is {\"value_b64\": BASE64}",
		     k);
		return;
	}
	b64 = json_string_value(json_object_get(a->body, "value_b64"));
	v = json_object_get(a->body, "vault_path");
	if ((b64 == NULL) == (v == NULL)) {
		fail(a, 400, "bad_request", "exactly one of value_b64 and vault_path");
		return;
	}
	if (json_object_get(a->body, "backend") != NULL) {
		a->backend_given = 1;
		snprintf(a->backend, sizeof(a->backend), "%s",
			 json_string_value(json_object_get(a->body, "backend")));
	} else {
		snprintf(a->backend, sizeof(a->backend), v != NULL ? "vault" : "builtin");
	}
	if (v != NULL) {
		const char *p = json_string_value(v);
		size_t n = strlen(p);

		if (strcmp(a->backend, "vault") != 0) {
			fail(a, 400, "bad_request", "vault_path needs the vault backend");
			return;
		}
		if (n == 0 || n >= sizeof(a->vault_path) || p[0] == '/' || strstr(p, "..") ||
		    strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") !=
			    n) {
			fail(a, 400, "bad_request",
			     "vault_path: 1-255 characters of [A-Za-z0-9_.-/], relative to the "
			     "mount, without ..");
			return;
		}
		snprintf(a->vault_path, sizeof(a->vault_path), "%s", p);
		a->backend_given = 1;
	} else {
		size_t n = json_string_length(json_object_get(a->body, "value_b64"));

		if (id_unb64(b64, n, ID_VALUE_MAX, &a->value, &a->vlen) == -1) {
			fail(a, n > 4 * (ID_VALUE_MAX / 3) + 4 ? 413 : 400,
			     n > 4 * (ID_VALUE_MAX / 3) + 4 ? "too_large" : "bad_request",
			     "value_b64: not base64 of at most 64 KiB");
			return;
		}
		if (a->vlen < ID_VALUE_MIN) {
			fail(a, 400, "bad_request",
			     "value_b64: a value of fewer than 4 bytes could not be redacted");
			return;
		}
	}
	if (strcmp(a->backend, "vault") == 0 && a->env->vault == NULL) {
		fail(a, 400, "bad_request",
		     "the vault backend is not configured (SAGEWAI_VAULT_ADDR)");
		return;
	}
	json_decref(a->body);
	a->body = NULL;
	params[0] = a->scope;
	params[1] = a->name;
	params[2] = a->backend;
	params[3] = a->vault_path;
	if (a->act == A_SECRET_PUT) {
		/* a new secret takes the backend asked for; one whose versions are all
		 * deleted may change it */
		st[0].sql = "INSERT INTO secrets (tenant, name, backend, vault_path)"
			    " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, name) DO UPDATE"
			    " SET backend = EXCLUDED.backend, vault_path = EXCLUDED.vault_path"
			    " WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.tenant = $1"
			    "  AND v.name = $2 AND v.state <> 'deleted')";
		st[0].nparams = 4;
	} else {
		st[0].sql = "SELECT 1";
		st[0].nparams = 0;
	}
	st[0].params = params;
	st[1].sql = "SELECT s.backend, s.vault_path,"
		    " EXISTS (SELECT 1 FROM versions v WHERE v.tenant = s.tenant"
		    "  AND v.name = s.name AND v.state <> 'deleted'),"
		    " EXISTS (SELECT 1 FROM versions v WHERE v.tenant = s.tenant"
		    "  AND v.name = s.name)"
		    " FROM secrets s WHERE s.tenant = $1 AND s.name = $2";
	st[1].nparams = 2;
	st[1].params = params;
	if (sw_store_tx(a->env->store, st, 2, secret_row_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

/* ---- secrets: revoke and delete ---------------------------------------------------- */

static void revoke_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	json_t *list;

	if (err != NULL) {
		db_fail(a, "cannot revoke", err);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
		fail(a, 404, "not_found", "no such secret: %s", a->name);
		return;
	}
	if (!a->all_versions && strcmp(PQgetvalue(res, 0, 1), "0") == 0) {
		fail(a, 404, "not_found", "secret %s has no version %d", a->name, a->version);
		return;
	}
	/* no resolution may serve it from now on, here or (on the event) elsewhere */
	id_cache_drop(a->env, a->scope);
	list = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	a->result = json_pack("{s:s, s:i, s:o, s:b}", "name", a->name, "versions_revoked",
			      (int)json_array_size(list), "versions", list ? list : json_array(),
			      "hard", a->hard);
	sw_log(SW_LOG_INFO, "secret revoked", "scope", a->scope, "secret", a->name, NULL);
	publish(a, "secret.revoked",
		json_pack("{s:s, s:i, s:b, s:s, s:b}", "name", a->name, "version",
			  a->all_versions ? 0 : a->version, "hard", a->hard, "actor", actor(a),
			  "deleted", 0));
}

static void secret_revoke(struct areq *a)
{
	json_t *v = json_object_get(a->body, "version"), *h = json_object_get(a->body, "hard");
	const char *params[3], *k;
	char ver[16];
	json_t *x;

	json_object_foreach(a->body, k, x)
		if (strcmp(k, "version") != 0 && strcmp(k, "hard") != 0) {
			fail(a, 400, "bad_request",
			     "%.64s: the body is {\"version\": N (optional: all), \"hard\": bool}",
			     k);
			return;
		}
	if ((v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1 ||
			   json_integer_value(v) > INT32_MAX)) ||
	    (h != NULL && !json_is_boolean(h))) {
		fail(a, 400, "bad_request", "version: a number from 1; hard: true or false");
		return;
	}
	a->all_versions = v == NULL;
	a->version = v != NULL ? (int)json_integer_value(v) : 0;
	a->hard = json_is_true(h);
	snprintf(ver, sizeof(ver), "%d", a->version);
	params[0] = a->scope;
	params[1] = a->name;
	params[2] = a->all_versions ? NULL : ver;
	if (sw_store_query(a->env->store,
			   "WITH u AS (UPDATE versions SET state = 'revoked', changed = now()"
			   "  WHERE tenant = $1 AND name = $2 AND state = 'active'"
			   "  AND ($3::int IS NULL OR version = $3::int) RETURNING version)"
			   " SELECT (SELECT count(*) FROM secrets WHERE tenant = $1 AND name = $2),"
			   " (SELECT count(*) FROM versions WHERE tenant = $1 AND name = $2"
			   "  AND version = $3::int),"
			   " coalesce((SELECT json_agg(version ORDER BY version) FROM u), '[]')::text",
			   3, params, revoke_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

static void destroyed_cb(struct id_env *env, const struct id_bvalue *v, void *opaque)
{
	struct areq *a = opaque;

	(void)env;
	if (v->err != ID_BOK) {
		fail(a, 503, "backend_unavailable",
		     "secret %s is revoked, but its values could not be destroyed: %s; repeat "
		     "the delete",
		     a->name, v->error);
		return;
	}
	publish(a, "secret.revoked",
		json_pack("{s:s, s:i, s:b, s:s, s:b}", "name", a->name, "version", 0, "hard",
			  a->hard, "actor", actor(a), "deleted", 1));
}

static void delete_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	struct id_secret_ref ref;

	if (err != NULL) {
		db_fail(a, "cannot delete", err);
		return;
	}
	if (PQgetisnull(res, 0, 0)) {
		fail(a, 404, "not_found", "no such secret: %s", a->name);
		return;
	}
	id_cache_drop(a->env, a->scope);
	memset(&ref, 0, sizeof(ref));
	snprintf(ref.tenant, sizeof(ref.tenant), "%s", a->scope);
	snprintf(ref.name, sizeof(ref.name), "%s", a->name);
	snprintf(ref.backend, sizeof(ref.backend), "%s", PQgetvalue(res, 0, 0));
	snprintf(ref.vault_path, sizeof(ref.vault_path), "%s", PQgetvalue(res, 0, 1));
	a->result = json_pack("{s:s, s:b, s:i}", "name", a->name, "deleted", 1, "versions",
			      atoi(PQgetvalue(res, 0, 2)));
	sw_log(SW_LOG_INFO, "secret deleted", "scope", a->scope, "secret", a->name, NULL);
	if (id_backend_destroy(a->env, &ref, destroyed_cb, a) == -1)
		fail(a, 503, "backend_unavailable",
		     "secret %s is revoked, but backend %s is not configured to destroy its values",
		     a->name, ref.backend);
}

static void secret_delete(struct areq *a)
{
	const char *params[2] = {a->scope, a->name};

	a->hard = 0;
	if (sw_store_query(a->env->store,
			   "WITH u AS (UPDATE versions SET state = 'deleted', key_id = NULL,"
			   "  nonce = NULL, ct = NULL, changed = now()"
			   "  WHERE tenant = $1 AND name = $2 AND state <> 'deleted' RETURNING 1)"
			   " SELECT (SELECT backend FROM secrets WHERE tenant = $1 AND name = $2),"
			   " (SELECT vault_path FROM secrets WHERE tenant = $1 AND name = $2),"
			   " (SELECT count(*) FROM u)",
			   2, params, delete_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

/* ---- rekey --------------------------------------------------------------------------- */

static void rekeyed_cb(struct id_env *env, long long rows, const char *err, void *opaque)
{
	struct areq *a = opaque;
	const char *kid = id_mkey_current(env)->id;
	char n[24];

	if (err != NULL) {
		fail(a, 500, "rekey_failed", "rekey stopped after %lld rows: %s (it resumes where "
		     "it stopped when repeated)", rows, err);
		return;
	}
	snprintf(n, sizeof(n), "%lld", rows);
	sw_log(SW_LOG_INFO, "rekeyed", "key_id", kid, "rows", n, NULL);
	a->result = json_pack("{s:s, s:I}", "key_id", kid, "rows", (json_int_t)rows);
	snprintf(a->scope, sizeof(a->scope), "%s", ID_SYSTEM);
	publish(a, "secret.rekeyed",
		json_pack("{s:s, s:I, s:s}", "key_id", kid, "rows", (json_int_t)rows, "actor",
			  actor(a)));
}

/* ---- profiles ------------------------------------------------------------------------- */

static void profiles_list(struct areq *a)
{
	const char *params[2] = {a->scope, a->level_given ? id_level_name(a->level) : NULL};

	if (sw_store_query(a->env->store,
			   "SELECT json_build_object('profiles', coalesce(json_agg(json_build_object("
			   " 'name', name, 'level', level, 'keys',"
			   " (SELECT count(*) FROM jsonb_object_keys(body->'keys')),"
			   " 'updated', " TS("updated") ") ORDER BY level, name), '[]'))::text"
			   " FROM profiles WHERE tenant = $1 AND ($2::text IS NULL OR level = $2)",
			   2, params, text_json_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

static void profile_get(struct areq *a)
{
	const char *params[3] = {a->scope, id_level_name(a->level), a->name};

	if (sw_store_query(a->env->store,
			   "SELECT json_build_object('name', name, 'level', level, 'body', body,"
			   " 'updated', " TS("updated") ")::text"
			   " FROM profiles WHERE tenant = $1 AND level = $2 AND name = $3",
			   3, params, text_json_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

static void profile_stored_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	char *text;

	(void)res;
	if (err != NULL) {
		db_fail(a, "cannot store the profile", err);
		return;
	}
	id_cache_drop(a->env, a->scope);
	text = json_dumps(a->body, JSON_COMPACT | JSON_SORT_KEYS);
	a->result = json_pack("{s:s, s:s}", "name", a->name, "level", id_level_name(a->level));
	publish(a, "profile.set",
		json_pack("{s:s, s:s, s:s, s:s}", "name", a->name, "level",
			  id_level_name(a->level), "body", text ? text : "{}", "actor", actor(a)));
	free(text);
}

static void profile_secrets_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	const char *params[4];
	char *text;

	if (err != NULL) {
		db_fail(a, "cannot check the secrets", err);
		return;
	}
	if (PQntuples(res) > 0) {
		fail(a, 422, "missing",
		     "keys.%s.secret: secret %s does not exist in scope %s (set it first)",
		     PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), a->scope);
		return;
	}
	if ((text = json_dumps(a->body, JSON_COMPACT)) == NULL) {
		fail(a, 503, "unavailable", "out of memory");
		return;
	}
	params[0] = a->scope;
	params[1] = id_level_name(a->level);
	params[2] = a->name;
	params[3] = text;
	if (sw_store_query(a->env->store,
			   "INSERT INTO profiles (tenant, level, name, body) VALUES ($1, $2, $3,"
			   " $4::jsonb) ON CONFLICT (tenant, level, name) DO UPDATE"
			   " SET body = EXCLUDED.body, updated = now()",
			   4, params, profile_stored_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
	free(text);
}

static void profile_put(struct areq *a)
{
	json_t *names = json_array(), *envs = json_array(), *v;
	const char *k, **pe = NULL, **pn = NULL, *params[3];
	char err[320], *ae = NULL, *an = NULL;
	size_t i = 0;

	if (id_profile_check(a->body, a->level, names, err, sizeof(err)) == -1) {
		json_decref(names);
		json_decref(envs);
		fail(a, 400, "bad_request", "%s", err);
		return;
	}
	/* the (env, secret) pairs, to name a missing one */
	json_object_foreach(json_object_get(a->body, "keys"), k, v)
		if (json_object_get(v, "secret") != NULL)
			json_array_append_new(envs, json_string(k));
	pe = calloc(json_array_size(envs) + 1, sizeof(*pe));
	pn = calloc(json_array_size(envs) + 1, sizeof(*pn));
	if (pe == NULL || pn == NULL)
		goto oom;
	json_array_foreach(envs, i, v) {
		pe[i] = json_string_value(v);
		pn[i] = json_string_value(json_object_get(
			json_object_get(json_object_get(a->body, "keys"), pe[i]), "secret"));
	}
	if ((ae = sw_store_array(pe, json_array_size(envs))) == NULL ||
	    (an = sw_store_array(pn, json_array_size(envs))) == NULL)
		goto oom;
	params[0] = a->scope;
	params[1] = ae;
	params[2] = an;
	if (sw_store_query(a->env->store,
			   "SELECT u.env, u.secret FROM unnest($2::text[], $3::text[])"
			   "  WITH ORDINALITY AS u(env, secret, n)"
			   " WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.tenant = $1"
			   "  AND v.name = u.secret AND v.state <> 'deleted') ORDER BY u.n",
			   3, params, profile_secrets_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
	goto out;
oom:
	fail(a, 503, "unavailable", "out of memory");
out:
	free(pe);
	free(pn);
	free(ae);
	free(an);
	json_decref(names);
	json_decref(envs);
}

static void profile_deleted_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, "cannot delete the profile", err);
		return;
	}
	if (PQntuples(res) == 0) {
		fail(a, 404, "not_found", "no such profile: %s (level %s)", a->name,
		     id_level_name(a->level));
		return;
	}
	id_cache_drop(a->env, a->scope);
	a->result = json_pack("{s:s, s:s, s:b}", "name", a->name, "level",
			      id_level_name(a->level), "deleted", 1);
	publish(a, "profile.deleted",
		json_pack("{s:s, s:s, s:s}", "name", a->name, "level", id_level_name(a->level),
			  "actor", actor(a)));
}

static void profile_delete(struct areq *a)
{
	const char *params[3] = {a->scope, id_level_name(a->level), a->name};

	if (sw_store_query(a->env->store,
			   "DELETE FROM profiles WHERE tenant = $1 AND level = $2 AND name = $3"
			   " RETURNING 1",
			   3, params, profile_deleted_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

/* ---- resolve (a preview: nothing is stored or audited) ------------------------------------ */

static void resolve_cb(struct id_env *env, json_t *answer, json_t *stored, void *opaque)
{
	struct areq *a = opaque;

	(void)env;
	(void)stored;
	reply(a, 200, json_incref(answer));
}

static void resolve_http(struct areq *a)
{
	struct id_resolve_in in;
	const char *wf = json_string_value(json_object_get(a->body, "workflow"));
	const char *user = json_string_value(json_object_get(a->body, "user"));
	const char *k;
	json_t *v;

	json_object_foreach(a->body, k, v)
		if (strcmp(k, "workflow") != 0 && strcmp(k, "user") != 0 && strcmp(k, "steps") != 0 &&
		    strcmp(k, "pins") != 0) {
			fail(a, 400, "bad_request",
			     "%.64s: the body is {\"workflow\", \"user\", \"steps\": [{\"step\", "
			     "\"mode\", \"agent\", \"profile\"}], \"pins\": [{\"step\", \"env\", "
			     "\"secret\", \"version\", \"mac\"}] (optional)}",
			     k);
			return;
		}
	if (wf == NULL || strlen(wf) > 127 || (user != NULL && strlen(user) > 127) ||
	    !json_is_array(json_object_get(a->body, "steps"))) {
		fail(a, 400, "bad_request", "workflow (string) and steps (array) are required");
		return;
	}
	if (strcmp(a->scope, ID_SYSTEM) == 0) {
		fail(a, 400, "bad_request", "resolve names a tenant, not _system");
		return;
	}
	memset(&in, 0, sizeof(in));
	snprintf(in.tenant, sizeof(in.tenant), "%s", a->scope);
	snprintf(in.workflow, sizeof(in.workflow), "%s", wf);
	snprintf(in.user, sizeof(in.user), "%s", user ? user : "");
	in.steps = json_object_get(a->body, "steps");
	in.pins = json_object_get(a->body, "pins");
	id_resolve(a->env, &in, resolve_cb, a);
}

/* ---- dispatch, once the scope is known ------------------------------------------------------ */

static void dispatch(struct areq *a)
{
	json_t *body;

	if (a->write && !a->admin) {
		fail(a, a->own[0] ? 403 : 401, a->own[0] ? "forbidden" : "unauthorized",
		     "changes need the operator's admin token");
		return;
	}
	switch (a->act) {
	case A_SECRETS_LIST:
		secrets_list(a);
		return;
	case A_SECRET_PUT:
	case A_SECRET_ROTATE:
		/* read_body answers and frees a when it fails */
		if ((body = read_body(a)) != NULL) {
			a->body = body;
			secret_put(a);
		}
		return;
	case A_SECRET_REVOKE: {
		struct evbuffer *in = evhttp_request_get_input_buffer(a->req);

		body = evbuffer_get_length(in) == 0 ? json_object() : read_body(a);
		if (body != NULL) {
			a->body = body;
			secret_revoke(a);
		}
		return;
	}
	case A_SECRET_DELETE:
		secret_delete(a);
		return;
	case A_REKEY:
		if (id_backend_rekey(a->env, rekeyed_cb, a) == -1)
			fail(a, 503, "unavailable", "out of memory");
		return;
	case A_PROFILES_LIST:
		profiles_list(a);
		return;
	case A_PROFILE_GET:
		profile_get(a);
		return;
	case A_PROFILE_PUT:
		if ((body = read_body(a)) != NULL) {
			a->body = body;
			profile_put(a);
		}
		return;
	case A_PROFILE_DELETE:
		profile_delete(a);
		return;
	case A_RESOLVE:
		if ((body = read_body(a)) != NULL) {
			a->body = body;
			resolve_http(a);
		}
		return;
	}
}

/* The scope: level=system is _system's; else ?tenant (or the caller's). */
static void scope_found_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, "tenant lookup failed", err);
		return;
	}
	if (PQntuples(res) != 1 || (!a->admin && strcmp(PQgetvalue(res, 0, 0), a->own) != 0)) {
		fail(a, 404, "not_found", "no such tenant: %s", a->tenant_ref);
		return;
	}
	snprintf(a->scope, sizeof(a->scope), "%s", PQgetvalue(res, 0, 0));
	dispatch(a);
}

static void scope_start(struct areq *a)
{
	struct id_env *env = a->env;
	const char *ref = a->tenant_ref, *params[1];
	int profile = a->act >= A_PROFILES_LIST && a->act <= A_PROFILE_DELETE;

	if (a->act == A_REKEY) {
		snprintf(a->scope, sizeof(a->scope), "%s", ID_SYSTEM);
		dispatch(a);
		return;
	}
	if (profile && a->level == ID_LEVEL_SYSTEM)
		ref = ID_SYSTEM;
	else if (profile && a->act != A_PROFILES_LIST && strcmp(ref, ID_SYSTEM) == 0) {
		fail(a, 400, "bad_request", "_system holds the system level only (?level=system)");
		return;
	}
	if (strcmp(ref, ID_SYSTEM) == 0) {
		if (env->multi_tenant && !a->admin) {
			fail(a, 404, "not_found", "no such tenant: _system");
			return;
		}
		snprintf(a->scope, sizeof(a->scope), "%s", ID_SYSTEM);
		dispatch(a);
		return;
	}
	if (!env->multi_tenant) {
		if (ref[0] != '\0' && strcmp(ref, ID_SINGLE_TENANT) != 0) {
			fail(a, 404, "not_found", "no such tenant: %s (single_org has \"default\")",
			     ref);
			return;
		}
		snprintf(a->scope, sizeof(a->scope), "%s", ID_SINGLE_TENANT);
		dispatch(a);
		return;
	}
	if (ref[0] == '\0') {
		if (!a->admin) {
			snprintf(a->scope, sizeof(a->scope), "%s", a->own);
			dispatch(a);
			return;
		}
		fail(a, 400, "bad_request", "name the tenant: ?tenant=ID-or-NAME (or _system)");
		return;
	}
	if (!a->admin && (strcmp(ref, a->own) == 0 || strcmp(ref, a->own_name) == 0)) {
		snprintf(a->scope, sizeof(a->scope), "%s", a->own);
		dispatch(a);
		return;
	}
	params[0] = ref;
	if (sw_store_query(env->store,
			   "SELECT id FROM tenants WHERE NOT deleted AND (id = $1 OR name = $1)"
			   " ORDER BY (id = $1) DESC LIMIT 1",
			   1, params, scope_found_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

static void key_found_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, "key lookup failed", err);
		return;
	}
	if (PQntuples(res) != 1) {
		fail(a, 401, "unauthorized", "unknown API key");
		return;
	}
	snprintf(a->own, sizeof(a->own), "%s", PQgetvalue(res, 0, 0));
	snprintf(a->own_name, sizeof(a->own_name), "%s", PQgetvalue(res, 0, 1));
	if (a->write) {
		fail(a, 403, "forbidden", "a tenant's key reads only; changes need the operator's "
		     "admin token");
		return;
	}
	scope_start(a);
}

static void auth_start(struct areq *a)
{
	struct id_env *env = a->env;
	char tok[BEARER_MAX];
	enum sw_auth_cred cred = sw_auth_credential(a->req, env->admin_token, tok, sizeof(tok));

	if (cred == SW_AUTH_ADMIN) {
		a->admin = 1;
		scope_start(a);
		return;
	}
	if (!env->multi_tenant) {
		sodium_memzero(tok, sizeof(tok));
		if (a->write) {
			fail(a, 401, "unauthorized", "changes need the operator's admin token");
			return;
		}
		scope_start(a); /* single_org: reads are open */
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(a->req), "WWW-Authenticate", "Bearer");
	if (cred == SW_AUTH_NONE) {
		fail(a, 401, "unauthorized", "an API key is required: Authorization: Bearer <key>");
		return;
	}
	if (sw_auth_tenant_key(env->store, "k.tenant_id, coalesce(t.name, '')", tok, sizeof(tok),
			       key_found_cb, a) == -1)
		db_fail(a, "cannot queue", NULL);
}

/* ---- routing --------------------------------------------------------------------------------- */

static struct areq *areq_new(struct id_env *env, struct evhttp_request *req)
{
	struct areq *a = calloc(1, sizeof(*a));
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq kv;
	const char *t, *l;

	if (a == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return NULL;
	}
	env->busy++;
	a->env = env;
	a->req = req;
	a->level = ID_LEVEL_WORKFLOW;
	TAILQ_INIT(&kv);
	if (q != NULL && evhttp_parse_query_str(q, &kv) != 0) {
		fail(a, 400, "bad_request", "malformed query string");
		return NULL;
	}
	t = evhttp_find_header(&kv, "tenant");
	l = evhttp_find_header(&kv, "level");
	if (t != NULL && (strlen(t) == 0 || strlen(t) >= sizeof(a->tenant_ref) ||
			  strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(t))) {
		evhttp_clear_headers(&kv);
		fail(a, 404, "not_found", "no such tenant");
		return NULL;
	}
	if (t != NULL)
		snprintf(a->tenant_ref, sizeof(a->tenant_ref), "%s", t);
	if (l != NULL) {
		if (id_level_parse(l, &a->level) == -1) {
			evhttp_clear_headers(&kv);
			fail(a, 400, "bad_request", "level: system, workflow or user");
			return NULL;
		}
		a->level_given = 1;
	}
	evhttp_clear_headers(&kv);
	return a;
}

static void secrets_cb(struct evhttp_request *req, void *arg)
{
	struct id_env *env = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *path = sw_http_path(req);
	struct areq *a;
	char rest[160], *slash;

	if ((a = areq_new(env, req)) == NULL)
		return;
	if (strcmp(path, "/v1/secrets") == 0) {
		if (m != EVHTTP_REQ_GET) {
			sw_http_reply_method_not_allowed(req, "GET");
			areq_free(a);
			return;
		}
		a->act = A_SECRETS_LIST;
		auth_start(a);
		return;
	}
	if (strlen(path) >= strlen("/v1/secrets/") + sizeof(rest)) {
		fail(a, 404, "not_found", "no such resource");
		return;
	}
	snprintf(rest, sizeof(rest), "%s", path + strlen("/v1/secrets/"));
	if (strcmp(rest, "rekey") == 0 && m == EVHTTP_REQ_POST) {
		a->act = A_REKEY;
		a->write = 1;
		auth_start(a);
		return;
	}
	slash = strchr(rest, '/');
	if (slash != NULL)
		*slash++ = '\0';
	if (!id_name_valid(rest)) {
		fail(a, 400, "bad_request", "a secret name is [a-z0-9][a-z0-9_.-]{0,62}");
		return;
	}
	snprintf(a->name, sizeof(a->name), "%.63s", rest);
	a->write = 1;
	if (slash == NULL && m == EVHTTP_REQ_PUT)
		a->act = A_SECRET_PUT;
	else if (slash == NULL && m == EVHTTP_REQ_DELETE)
		a->act = A_SECRET_DELETE;
	else if (slash != NULL && strcmp(slash, "rotate") == 0 && m == EVHTTP_REQ_POST)
		a->act = A_SECRET_ROTATE;
	else if (slash != NULL && strcmp(slash, "revoke") == 0 && m == EVHTTP_REQ_POST)
		a->act = A_SECRET_REVOKE;
	else if (slash == NULL) {
		sw_http_reply_method_not_allowed(req, "PUT, DELETE");
		areq_free(a);
		return;
	} else if (strcmp(slash, "rotate") == 0 || strcmp(slash, "revoke") == 0) {
		sw_http_reply_method_not_allowed(req, "POST");
		areq_free(a);
		return;
	} else {
		fail(a, 404, "not_found", "no such resource");
		return;
	}
	auth_start(a);
}

static void profiles_cb(struct evhttp_request *req, void *arg)
{
	struct id_env *env = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *path = sw_http_path(req);
	const char *prefix = "/v1/identity/profiles/";
	struct areq *a;

	if ((a = areq_new(env, req)) == NULL)
		return;
	if (strcmp(path, "/v1/identity/profiles") == 0) {
		if (m != EVHTTP_REQ_GET) {
			sw_http_reply_method_not_allowed(req, "GET");
			areq_free(a);
			return;
		}
		a->act = A_PROFILES_LIST;
		auth_start(a);
		return;
	}
	if (!id_name_valid(path + strlen(prefix))) {
		fail(a, 400, "bad_request", "a profile name is [a-z0-9][a-z0-9_.-]{0,62}");
		return;
	}
	snprintf(a->name, sizeof(a->name), "%s", path + strlen(prefix));
	if (a->level == ID_LEVEL_SYSTEM && strcmp(a->name, "default") != 0) {
		fail(a, 400, "bad_request", "the system level has one profile, named default");
		return;
	}
	if (m == EVHTTP_REQ_GET) {
		a->act = A_PROFILE_GET;
	} else if (m == EVHTTP_REQ_PUT) {
		a->act = A_PROFILE_PUT;
		a->write = 1;
	} else if (m == EVHTTP_REQ_DELETE) {
		a->act = A_PROFILE_DELETE;
		a->write = 1;
	} else {
		sw_http_reply_method_not_allowed(req, "GET, PUT, DELETE");
		areq_free(a);
		return;
	}
	auth_start(a);
}

static void resolve_route(struct evhttp_request *req, void *arg)
{
	struct id_env *env = arg;
	struct areq *a;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		sw_http_reply_method_not_allowed(req, "POST");
		return;
	}
	if ((a = areq_new(env, req)) == NULL)
		return;
	a->act = A_RESOLVE;
	auth_start(a);
}

int id_api_start(struct id_env *env, char *errstr, size_t errlen)
{
	if ((env->http = sw_service_http(env->svc, ID_MAX_BODY, errstr, errlen)) == NULL)
		return -1;
	if (sw_http_route(env->http, "/v1/secrets", secrets_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/secrets/*", secrets_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/identity/profiles", profiles_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/identity/profiles/*", profiles_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/identity/resolve", resolve_route, env) == -1) {
		snprintf(errstr, errlen, "cannot route the API");
		return -1;
	}
	return 0;
}
