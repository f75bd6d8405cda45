/*
 * api.c: the HTTP API of docs/POLICY.md, and the approvals page.
 *
 *   PUT  /v1/policies/{tenant}[?filename=F]   apply a policy (YAML body)
 *   GET  /v1/policies/{tenant}                 the policy applied, and its rules
 *   POST /v1/policies/{tenant}/test            which rule fires for a request
 *   GET  /v1/approvals[?tenant=T][&state=pending]  pending and recent approvals
 *   GET  /v1/approvals/{id}                    one
 *   POST /v1/approvals/{id}/approve|deny       decide, {"reason": "..."}
 *   GET  /v1/approvals/stream[?tenant=T]       changes as they happen (sse.c)
 *   GET  /, /approvals, /approvals/{file}      the page (web/)
 *
 * Who (every /v1 route needs a credential, "Authorization: Bearer ..."):
 *   - the operator's token (SAGEWAI_ADMIN_TOKEN): every tenant, the
 *     _system policy, every approval;
 *   - a tenant's API key (its SHA-256 learnt from apikey.created,
 *     tenants.c) acts for its own tenant only: another tenant, or another
 *     tenant's approval, answers 404 as a missing one. A tenant-wide key
 *     (one that belongs to no user) may apply its tenant's policy; a key
 *     of a user named in the policy's approvers: may decide its tenant's
 *     approvals; any key of the tenant may read and test.
 * {tenant} is the tenant's id or name ("default" in single_org mode).
 */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "policy.h"

#define BEARER_MAX 512
#define CSP                                                                                        \
	"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"            \
	" img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

enum act {
	A_POLICY_PUT,
	A_POLICY_GET,
	A_POLICY_TEST,
	A_APPROVALS_LIST,
	A_APPROVAL_GET,
	A_APPROVAL_DECIDE,
	A_STREAM,
};

struct areq {
	struct pol_env *env;
	struct evhttp_request *req;
	enum act act;
	int admin;
	char own[128];	    /* a key's tenant id */
	char user[128];	    /* a key's user, "" for a tenant-wide key */
	char key_id[SW_UUID_STRLEN];
	char ref[160];	    /* {tenant} or ?tenant= as given, "" when absent */
	char tenant[128];   /* ... resolved to an id ("" = every tenant) */
	char id[SW_UUID_STRLEN]; /* approval id */
	int approve;
	int pending_only;
	char filename[128];
	char reason[POL_REASON_MAX];
	char *text; /* PUT body */
	size_t len;
	json_t *body;
	struct pol_policy *parsed;
	int version;
};

static void areq_free(struct areq *a)
{
	a->env->busy--;
	free(a->text);
	json_decref(a->body);
	pol_free(a->parsed);
	free(a);
}

static void fail(struct areq *a, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(struct areq *a, int status, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sw_http_reply_error(a->req, status, code, "%s", msg);
	areq_free(a);
}

static void db_fail(struct areq *a, const char *err)
{
	sw_log(SW_LOG_ERROR, "policy store", "error", err ? err : "", NULL);
	fail(a, 503, "unavailable", "the policy store is unavailable");
}

static void reply_text(struct areq *a, int status, const char *text)
{
	json_t *j = json_loads(text, 0, NULL);

	if (j == NULL) {
		fail(a, 500, "internal", "cannot encode the answer");
		return;
	}
	sw_http_reply_json(a->req, status, j);
	areq_free(a);
}

static void actor(const struct areq *a, char *out, size_t len)
{
	if (a->admin)
		snprintf(out, len, "admin");
	else if (a->user[0] != '\0')
		snprintf(out, len, "user:%s key:%s", a->user, a->key_id);
	else
		snprintf(out, len, "key:%s", a->key_id);
}

/* ---- policies ------------------------------------------------------------------ */

static void put_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	char who[300], version[16];
	json_t *ov, *r, *o;
	size_t i;

	if (err != NULL || PQntuples(res) != 1) {
		db_fail(a, err ? err : "no row");
		return;
	}
	a->version = atoi(PQgetvalue(res, 0, 0));
	actor(a, who, sizeof(who));
	snprintf(version, sizeof(version), "%d", a->version);
	ov = pol_overrides(a->parsed);
	/* the audit of an allow-all policy: this line, and policy_history */
	json_array_foreach(ov, i, o)
		sw_log(SW_LOG_WARN, "policy allows every credential: override accepted", "tenant",
		       a->tenant, "version", version, "rule",
		       json_string_value(json_object_get(o, "rule")), "justification",
		       json_string_value(json_object_get(o, "justification")), "actor", who,
		       NULL);
	sw_log(SW_LOG_INFO, "policy applied", "tenant", a->tenant, "version", version, "file",
	       a->filename, "actor", who, NULL);
	r = pol_to_json(a->parsed);
	json_object_set_new(r, "tenant", json_string(a->tenant));
	json_object_set_new(r, "version", json_integer(a->version));
	json_object_set_new(r, "filename", json_string(a->filename));
	json_object_set_new(r, "overrides", ov);
	sw_http_reply_json(a->req, 200, r);
	areq_free(a);
}

static void policy_put(struct areq *a)
{
	char err[1024], who[300], *ov_text;
	const char *params[4], *p2[3];
	struct sw_store_stmt st[3];
	json_t *ov;

	if (!a->admin && a->user[0] != '\0') {
		fail(a, 403, "forbidden",
		     "a user's key does not apply policies: the tenant-wide key or the operator's "
		     "token does");
		return;
	}
	if (a->len == 0 || strlen(a->text) != a->len) {
		fail(a, 400, "invalid_policy",
		     a->len ? "the policy holds a NUL byte" : "empty body: the policy YAML is expected");
		return;
	}
	a->parsed = pol_parse(a->text, a->len, a->filename, strcmp(a->tenant, POL_SYSTEM) == 0,
			      err, sizeof(err));
	if (a->parsed == NULL) {
		fail(a, 400, "invalid_policy", "%s", err);
		return;
	}
	actor(a, who, sizeof(who));
	ov = pol_overrides(a->parsed);
	ov_text = json_dumps(ov, JSON_COMPACT);
	json_decref(ov);
	if (ov_text == NULL) {
		fail(a, 500, "internal", "out of memory");
		return;
	}
	params[0] = a->tenant;
	params[1] = a->text;
	params[2] = a->filename;
	params[3] = who;
	p2[0] = a->tenant;
	p2[1] = a->text;
	p2[2] = ov_text;
	/* re-applying the same text changes nothing (and a resent statement
	 * after a lost connection counts no version twice) */
	st[0].sql = "INSERT INTO policies (tenant, version, yaml, filename, updated_by)"
		    " VALUES ($1, 1, $2, $3, $4) ON CONFLICT (tenant) DO UPDATE"
		    " SET version = policies.version + 1, yaml = EXCLUDED.yaml,"
		    " filename = EXCLUDED.filename, updated_by = EXCLUDED.updated_by, updated = now()"
		    " WHERE policies.yaml <> EXCLUDED.yaml OR policies.filename <> EXCLUDED.filename";
	st[0].nparams = 4;
	st[0].params = params;
	st[1].sql = "INSERT INTO policy_history (tenant, version, yaml, filename, actor, overrides)"
		    " SELECT tenant, version, yaml, filename, updated_by, $3::jsonb FROM policies"
		    " WHERE tenant = $1 AND yaml = $2 ON CONFLICT DO NOTHING";
	st[1].nparams = 3;
	st[1].params = p2;
	st[2].sql = "SELECT version FROM policies WHERE tenant = $1";
	st[2].nparams = 1;
	st[2].params = params;
	if (sw_store_tx(a->env->store, st, 3, put_cb, a) == -1)
		db_fail(a, "cannot queue");
	free(ov_text);
}

static void get_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	char perr[1024];
	json_t *r, *rules;
	struct pol_policy *p;

	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (PQntuples(res) != 1) {
		fail(a, 404, "not_found", "no policy is applied for %s (every request is denied)",
		     a->ref);
		return;
	}
	if ((r = json_loads(PQgetvalue(res, 0, 0), 0, NULL)) == NULL) {
		fail(a, 500, "internal", "cannot encode the answer");
		return;
	}
	p = pol_parse(PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1), PQgetvalue(res, 0, 2),
		      strcmp(a->tenant, POL_SYSTEM) == 0, perr, sizeof(perr));
	rules = pol_to_json(p);
	json_object_update(r, rules);
	json_decref(rules);
	if (p == NULL)
		json_object_set_new(r, "error", json_string(perr));
	pol_free(p);
	sw_http_reply_json(a->req, 200, r);
	areq_free(a);
}

static void policy_get(struct areq *a)
{
	const char *params[1] = {a->tenant};

	if (sw_store_query(a->env->store,
			   "SELECT json_build_object('tenant', tenant, 'version', version,"
			   " 'filename', filename, 'yaml', yaml, 'updated_by', updated_by,"
			   " 'updated', to_char(updated AT TIME ZONE 'UTC',"
			   " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text, yaml, filename"
			   " FROM policies WHERE tenant = $1",
			   1, params, get_cb, a) == -1)
		db_fail(a, "cannot queue");
}

static void test_cb(struct pol_env *env, const struct pol_policy *sys,
		    const struct pol_policy *ten, const char *tenant_name, const char *err,
		    void *opaque)
{
	struct areq *a = opaque;
	const struct pol_rule *r;
	struct pol_query q;
	const char *level = "tenant";
	json_t *out, *b = a->body;

	(void)env;
	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	memset(&q, 0, sizeof(q));
	q.tenant = a->tenant;
	q.tenant_name = tenant_name;
	q.name = json_string_value(json_object_get(b, "name"));
	q.scope = json_string_value(json_object_get(b, "scope"));
	q.workflow = json_string_value(json_object_get(b, "workflow"));
	q.step = json_string_value(json_object_get(b, "step"));
	q.cli_agent = json_string_value(json_object_get(b, "cli_agent"));
	if (strcmp(a->tenant, POL_SYSTEM) == 0) {
		r = pol_match(sys, &q);
		level = "system";
	} else {
		r = pol_evaluate(sys, ten, &q, &level);
	}
	if (r == NULL) {
		out = json_pack("{s:s, s:s, s:s, s:s}", "decision", "deny", "by", "no_rule", "rule",
				"", "reason",
				ten == NULL && sys == NULL ? "no policy is applied: denied"
							   : "no rule matches: denied");
	} else {
		out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "decision",
				pol_effect_name(r->effect), "by", "rule", "rule", r->id, "level",
				level, "secret", r->secret, "line", r->line);
		json_object_set_new(out, "reason", sw_json_string_lossy(r->reason));
		if (r->effect == POL_ASK)
			json_object_set_new(out, "deadline_s", json_integer(r->deadline_ms / 1000));
	}
	sw_http_reply_json(a->req, 200, out);
	areq_free(a);
}

static void policy_test(struct areq *a)
{
	static const char *const keys[] = {"name", "scope", "workflow", "step", "cli_agent", NULL};
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach(a->body, k, v) {
		for (i = 0; keys[i] != NULL && strcmp(keys[i], k) != 0; i++)
			;
		if (keys[i] == NULL || !json_is_string(v) || json_string_length(v) > 1024) {
			fail(a, 400, "bad_request",
			     "%.64s: a test request is {\"name\", \"scope\", \"workflow\", \"step\","
			     " \"cli_agent\"}, strings of at most 1024 bytes",
			     k);
			return;
		}
	}
	if (!pol_env_name_valid(json_string_value(json_object_get(a->body, "name")) ?: "")) {
		fail(a, 400, "bad_request", "name: an environment key [A-Z_][A-Z0-9_]{0,127}");
		return;
	}
	pol_policies_get(a->env, a->tenant, NULL, test_cb, a);
}

/* ---- approvals ------------------------------------------------------------------- */

static void list_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL || PQntuples(res) != 1) {
		db_fail(a, err ? err : "no row");
		return;
	}
	reply_text(a, 200, PQgetvalue(res, 0, 0));
}

static void approvals_list(struct areq *a)
{
	const char *params[2] = {a->tenant, a->pending_only ? "t" : "f"};

	if (sw_store_query(a->env->store,
			   "SELECT json_build_object('approvals', coalesce(json_agg(x), '[]'))::text"
			   " FROM (SELECT " POL_APPROVAL_JSON " AS x FROM requests"
			   " WHERE approval_id IS NOT NULL AND ($1 = '' OR tenant = $1)"
			   " AND (state = 'pending' OR NOT $2::boolean)"
			   " ORDER BY state = 'pending' DESC, received_us DESC LIMIT 500) s",
			   2, params, list_cb, a) == -1)
		db_fail(a, "cannot queue");
}

static void one_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (PQntuples(res) != 1) {
		fail(a, 404, "not_found", "no such approval");
		return;
	}
	reply_text(a, 200, PQgetvalue(res, 0, 0));
}

static void approval_get(struct areq *a)
{
	const char *params[2] = {a->id, a->tenant};

	if (sw_store_query(a->env->store,
			   "SELECT " POL_APPROVAL_JSON "::text FROM requests"
			   " WHERE approval_id = $1::uuid AND ($2 = '' OR tenant = $2)",
			   2, params, one_cb, a) == -1)
		db_fail(a, "cannot queue");
}

static void decided_state_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (PQntuples(res) != 1) {
		fail(a, 404, "not_found", "no such approval");
		return;
	}
	fail(a, 409, "already_decided", "approval %s is already %s", a->id, PQgetvalue(res, 0, 0));
}

static void decide_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;
	const char *params[2] = {a->id, a->tenant};

	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (PQntuples(res) != 1) {
		if (sw_store_query(a->env->store,
				   "SELECT CASE WHEN by = 'withdrawn' THEN 'withdrawn'"
				   " WHEN by = 'deadline' THEN 'expired' WHEN decision = 'allow'"
				   " THEN 'approved' ELSE 'denied' END FROM requests"
				   " WHERE approval_id = $1::uuid AND ($2 = '' OR tenant = $2)",
				   2, params, decided_state_cb, a) == -1)
			db_fail(a, "cannot queue");
		return;
	}
	sw_metrics_counter_add(a->env->metrics, "sagewai_policy_human_decisions_total",
			       "approvals decided by a person", 1);
	pol_publish_rows(a->env, res, 1);
	reply_text(a, 200, PQgetvalue(res, 0, 20));
}

static void decide_now(struct areq *a)
{
	static char sql[2048];
	char who[300], now[24];
	const char *params[6];

	if (sql[0] == '\0')
		snprintf(sql, sizeof(sql),
			 "UPDATE requests SET state = 'decided', decision = $3, by = 'human',"
			 " approver = $4, reason = $5, decided_us = $6::bigint,"
			 " secret = CASE WHEN $3 = 'allow' THEN secret ELSE '' END"
			 " WHERE approval_id = $1::uuid AND tenant = $2 AND state = 'pending'"
			 " RETURNING %s",
			 pol_pub_cols);
	actor(a, who, sizeof(who));
	snprintf(now, sizeof(now), "%lld", (long long)sw_now_us());
	params[0] = a->id;
	params[1] = a->tenant;
	params[2] = a->approve ? "allow" : "deny";
	params[3] = who;
	params[4] = a->reason;
	params[5] = now;
	if (sw_store_query(a->env->store, sql, 6, params, decide_cb, a) == -1)
		db_fail(a, "cannot queue");
}

static void approvers_cb(struct pol_env *env, const struct pol_policy *sys,
			 const struct pol_policy *ten, const char *tenant_name, const char *err,
			 void *opaque)
{
	struct areq *a = opaque;

	(void)env;
	(void)sys;
	(void)tenant_name;
	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (!pol_is_approver(ten, a->user)) {
		fail(a, 403, "forbidden",
		     a->user[0] ? "user %s is not an approver of this tenant (approvers: in its "
				  "policy)"
				: "%sa tenant-wide key does not decide: a key of a user named in the "
				  "policy's approvers does",
		     a->user);
		return;
	}
	decide_now(a);
}

static void approval_tenant_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (PQntuples(res) != 1 || (!a->admin && strcmp(PQgetvalue(res, 0, 0), a->own) != 0)) {
		fail(a, 404, "not_found", "no such approval");
		return;
	}
	snprintf(a->tenant, sizeof(a->tenant), "%s", PQgetvalue(res, 0, 0));
	if (a->admin)
		decide_now(a);
	else
		pol_policies_get(a->env, a->tenant, NULL, approvers_cb, a);
}

static void approval_decide(struct areq *a)
{
	const char *params[1] = {a->id};
	const char *k, *reason;
	json_t *v;

	json_object_foreach(a->body, k, v) {
		if (strcmp(k, "reason") != 0) {
			fail(a, 400, "bad_request", "%.64s: the body is {\"reason\": TEXT}", k);
			return;
		}
	}
	reason = json_string_value(json_object_get(a->body, "reason"));
	if (reason == NULL || reason[0] == '\0' || strlen(reason) >= sizeof(a->reason)) {
		fail(a, 400, "bad_request", "reason: a text of 1 to %d bytes is required",
		     POL_REASON_MAX - 1);
		return;
	}
	snprintf(a->reason, sizeof(a->reason), "%s", reason);
	if (sw_store_query(a->env->store,
			   "SELECT tenant FROM requests WHERE approval_id = $1::uuid", 1, params,
			   approval_tenant_cb, a) == -1)
		db_fail(a, "cannot queue");
}

/* ---- dispatch after auth ------------------------------------------------------ */

static void run(struct areq *a)
{
	switch (a->act) {
	case A_POLICY_PUT: policy_put(a); break;
	case A_POLICY_GET: policy_get(a); break;
	case A_POLICY_TEST: policy_test(a); break;
	case A_APPROVALS_LIST: approvals_list(a); break;
	case A_APPROVAL_GET: approval_get(a); break;
	case A_APPROVAL_DECIDE: approval_decide(a); break;
	case A_STREAM:
		pol_sse_open(a->env, a->req, a->tenant);
		a->req = NULL;
		areq_free(a);
		break;
	}
}

static void tenant_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (PQntuples(res) != 1 || (!a->admin && strcmp(PQgetvalue(res, 0, 0), a->own) != 0)) {
		fail(a, 404, "not_found", "no such tenant");
		return;
	}
	snprintf(a->tenant, sizeof(a->tenant), "%s", PQgetvalue(res, 0, 0));
	run(a);
}

/* The tenant acted on: {tenant} or ?tenant= resolved; a key's own when
 * none is named (approvals), every tenant for the operator. */
static void scope_start(struct areq *a)
{
	const char *params[1] = {a->ref};

	if (a->ref[0] == '\0') {
		snprintf(a->tenant, sizeof(a->tenant), "%s", a->admin ? "" : a->own);
		run(a);
		return;
	}
	if (strcmp(a->ref, POL_SYSTEM) == 0 ||
	    (!a->env->multi_tenant && strcmp(a->ref, POL_SINGLE_TENANT) == 0)) {
		if (!a->admin && strcmp(a->ref, a->own) != 0) {
			fail(a, 404, "not_found", "no such tenant");
			return;
		}
		snprintf(a->tenant, sizeof(a->tenant), "%.127s", a->ref);
		run(a);
		return;
	}
	if (sw_store_query(a->env->store,
			   "SELECT id FROM tenants WHERE (id = $1 OR name = $1) AND NOT deleted"
			   " ORDER BY id = $1 DESC LIMIT 1",
			   1, params, tenant_cb, a) == -1)
		db_fail(a, "cannot queue");
}

static void key_found_cb(PGresult *res, const char *err, void *opaque)
{
	struct areq *a = opaque;

	if (err != NULL) {
		db_fail(a, err);
		return;
	}
	if (PQntuples(res) != 1) {
		evhttp_add_header(evhttp_request_get_output_headers(a->req), "WWW-Authenticate",
				  "Bearer");
		fail(a, 401, "unauthorized", "unknown or revoked API key");
		return;
	}
	snprintf(a->own, sizeof(a->own), "%s", PQgetvalue(res, 0, 0));
	snprintf(a->user, sizeof(a->user), "%s", PQgetvalue(res, 0, 1));
	snprintf(a->key_id, sizeof(a->key_id), "%s", PQgetvalue(res, 0, 2));
	scope_start(a);
}

static void auth_start(struct areq *a)
{
	struct pol_env *env = a->env;
	char tok[BEARER_MAX];
	enum sw_auth_cred cred = sw_auth_credential(a->req, env->admin_token, tok, sizeof(tok));

	if (cred == SW_AUTH_NONE) {
		evhttp_add_header(evhttp_request_get_output_headers(a->req), "WWW-Authenticate",
				  "Bearer");
		fail(a, 401, "unauthorized",
		     "a credential is required: Authorization: Bearer <admin token or API key>");
		return;
	}
	if (cred == SW_AUTH_ADMIN) {
		a->admin = 1;
		scope_start(a);
		return;
	}
	if (sw_auth_tenant_key(env->store, "k.tenant_id, k.username, k.key_id::text", tok,
			       sizeof(tok), key_found_cb, a) == -1)
		db_fail(a, "cannot queue");
}

/* ---- routing ---------------------------------------------------------------------- */

static struct areq *areq_new(struct pol_env *env, struct evhttp_request *req)
{
	struct areq *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return NULL;
	}
	env->busy++;
	a->env = env;
	a->req = req;
	snprintf(a->filename, sizeof(a->filename), "policy.yaml");
	return a;
}

/* ?name=value of the query string into out ("" when absent); -1 when the
 * query is malformed or the value is not of chars, or too long. */
static int query_get(struct evhttp_request *req, const char *name, const char *chars, char *out,
		     size_t outlen)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq kv;
	const char *v;
	int rc = 0;

	out[0] = '\0';
	if (q == NULL)
		return 0;
	TAILQ_INIT(&kv);
	if (evhttp_parse_query_str(q, &kv) != 0)
		return -1;
	if ((v = evhttp_find_header(&kv, name)) != NULL) {
		if (strlen(v) == 0 || strlen(v) >= outlen || strspn(v, chars) != strlen(v))
			rc = -1;
		else
			snprintf(out, outlen, "%s", v);
	}
	evhttp_clear_headers(&kv);
	return rc;
}

#define TENANT_CHARS "abcdefghijklmnopqrstuvwxyz0123456789_-"

static int uuid_ok(const char *s)
{
	uint8_t u[16];

	return strlen(s) == 36 && sw_uuid_parse(s, u) == 0;
}

static void policies_route(struct evhttp_request *req, void *arg)
{
	struct pol_env *env = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *path = sw_http_path(req) + strlen("/v1/policies/");
	char ref[160], *slash;
	struct areq *a;

	if (strlen(path) >= sizeof(ref)) {
		sw_http_reply_error(req, 404, "not_found", "no such tenant");
		return;
	}
	snprintf(ref, sizeof(ref), "%s", path);
	if ((slash = strchr(ref, '/')) != NULL)
		*slash++ = '\0';
	if (ref[0] == '\0' || strspn(ref, TENANT_CHARS) != strlen(ref)) {
		sw_http_reply_error(req, 404, "not_found", "no such tenant");
		return;
	}
	if ((a = areq_new(env, req)) == NULL)
		return;
	snprintf(a->ref, sizeof(a->ref), "%s", ref);
	if (slash == NULL && m == EVHTTP_REQ_PUT) {
		a->act = A_POLICY_PUT;
		if (query_get(req, "filename",
			      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/",
			      a->filename, sizeof(a->filename)) == -1) {
			fail(a, 400, "bad_request", "filename: [A-Za-z0-9_./-], under 128 bytes");
			return;
		}
		if (a->filename[0] == '\0')
			snprintf(a->filename, sizeof(a->filename), "policy.yaml");
		if ((a->text = sw_http_body(req, &a->len)) == NULL) {
			fail(a, 503, "unavailable", "out of memory");
			return;
		}
	} else if (slash == NULL && m == EVHTTP_REQ_GET) {
		a->act = A_POLICY_GET;
	} else if (slash != NULL && strcmp(slash, "test") == 0 && m == EVHTTP_REQ_POST) {
		a->act = A_POLICY_TEST;
		if ((a->body = sw_http_body_json(req)) == NULL) {
			a->req = NULL;
			areq_free(a);
			return;
		}
		if (!json_is_object(a->body)) {
			fail(a, 400, "bad_request", "the body must be a JSON object");
			return;
		}
	} else if (slash == NULL || strcmp(slash, "test") == 0) {
		sw_http_reply_method_not_allowed(req, slash == NULL ? "GET, PUT" : "POST");
		areq_free(a);
		return;
	} else {
		fail(a, 404, "not_found", "no such resource");
		return;
	}
	auth_start(a);
}

static void approvals_route(struct evhttp_request *req, void *arg)
{
	struct pol_env *env = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *path = sw_http_path(req);
	char rest[80], state[16], *slash;
	struct areq *a;

	if ((a = areq_new(env, req)) == NULL)
		return;
	if (query_get(req, "tenant", TENANT_CHARS, a->ref, sizeof(a->ref)) == -1) {
		fail(a, 404, "not_found", "no such tenant");
		return;
	}
	if (strcmp(path, "/v1/approvals") == 0 || strcmp(path, "/v1/approvals/stream") == 0) {
		if (m != EVHTTP_REQ_GET) {
			sw_http_reply_method_not_allowed(req, "GET");
			areq_free(a);
			return;
		}
		if (query_get(req, "state", "abcdefghijklmnopqrstuvwxyz", state, sizeof(state)) ==
			    -1 ||
		    (state[0] != '\0' && strcmp(state, "pending") != 0 && strcmp(state, "all") != 0)) {
			fail(a, 400, "bad_request", "state: pending or all");
			return;
		}
		a->pending_only = strcmp(state, "pending") == 0;
		a->act = strcmp(path, "/v1/approvals") == 0 ? A_APPROVALS_LIST : A_STREAM;
		auth_start(a);
		return;
	}
	path += strlen("/v1/approvals/");
	if (strlen(path) >= sizeof(rest)) {
		fail(a, 404, "not_found", "no such approval");
		return;
	}
	snprintf(rest, sizeof(rest), "%s", path);
	if ((slash = strchr(rest, '/')) != NULL)
		*slash++ = '\0';
	if (!uuid_ok(rest)) {
		fail(a, 404, "not_found", "no such approval");
		return;
	}
	snprintf(a->id, sizeof(a->id), "%.36s", rest);
	a->ref[0] = '\0'; /* an approval names its tenant */
	if (slash == NULL && m == EVHTTP_REQ_GET) {
		a->act = A_APPROVAL_GET;
	} else if (slash != NULL && (strcmp(slash, "approve") == 0 || strcmp(slash, "deny") == 0)) {
		if (m != EVHTTP_REQ_POST) {
			sw_http_reply_method_not_allowed(req, "POST");
			areq_free(a);
			return;
		}
		a->act = A_APPROVAL_DECIDE;
		a->approve = strcmp(slash, "approve") == 0;
		if ((a->body = sw_http_body_json(req)) == NULL) {
			a->req = NULL;
			areq_free(a);
			return;
		}
		if (!json_is_object(a->body)) {
			fail(a, 400, "bad_request", "the body must be a JSON object");
			return;
		}
	} else if (slash == NULL) {
		sw_http_reply_method_not_allowed(req, "GET");
		areq_free(a);
		return;
	} else {
		fail(a, 404, "not_found", "no such resource");
		return;
	}
	auth_start(a);
}

/* ---- the page ----------------------------------------------------------------------- */

static void page_route(struct evhttp_request *req, void *arg)
{
	const char *path = sw_http_path(req), *name;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct evbuffer *b;
	size_t i;

	(void)arg;
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		sw_http_reply_method_not_allowed(req, "GET, HEAD");
		return;
	}
	if (strcmp(path, "/") == 0 || strcmp(path, "/approvals") == 0 ||
	    strcmp(path, "/approvals/") == 0)
		name = "index.html";
	else
		name = path + strlen("/approvals/");
	for (i = 0; i < pol_web_nfiles; i++)
		if (strcmp(pol_web_files[i].path, name) == 0)
			break;
	if (i == pol_web_nfiles) {
		sw_http_reply_error(req, 404, "not_found", "no such file");
		return;
	}
	if ((b = evbuffer_new()) == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return;
	}
	evbuffer_add_reference(b, pol_web_files[i].data, pol_web_files[i].len, NULL, NULL);
	evhttp_remove_header(h, "Content-Type");
	evhttp_add_header(h, "Content-Type", pol_web_files[i].type);
	evhttp_add_header(h, "Content-Security-Policy", CSP);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

int pol_api_start(struct pol_env *env, char *errstr, size_t errlen)
{
	if ((env->http = sw_service_http(env->svc, POL_MAX_BODY, errstr, errlen)) == NULL)
		return -1;
	if (sw_http_route(env->http, "/v1/policies/*", policies_route, env) == -1 ||
	    sw_http_route(env->http, "/v1/approvals", approvals_route, env) == -1 ||
	    sw_http_route(env->http, "/v1/approvals/*", approvals_route, env) == -1 ||
	    sw_http_route(env->http, "/", page_route, env) == -1 ||
	    sw_http_route(env->http, "/approvals", page_route, env) == -1 ||
	    sw_http_route(env->http, "/approvals/*", page_route, env) == -1) {
		snprintf(errstr, errlen, "cannot route the API");
		return -1;
	}
	return 0;
}
