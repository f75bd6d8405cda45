/*
 * api.c: the scheduler's HTTP API (docs/RUNS.md).
 *
 *   POST /v1/workflows[?filename=F]   register YAML
 *   GET  /v1/workflows                list
 *   GET  /v1/workflows/{name}[/{version}]  one definition (latest version
 *                                     by default) with its YAML
 *   POST /v1/runs                     submit
 *   GET  /v1/runs                     the 100 newest runs, without steps
 *   GET  /v1/runs/{id}                a run and its steps
 *   GET  /v1/runs/{id}/events         progress stream (sse.c)
 *   POST /v1/runs/{id}/cancel         cancel
 *   POST /v1/tenants, DELETE /v1/tenants/{id or name}, POST /v1/keys
 *                                     (tenants.c, the operator's)
 *   /v1/tenants/{ref}/users[/{name}]  (users.c, the operator's)
 *
 * Every request is first given its tenant and user (tenants.c); another
 * tenant's run or workflow answers 404 exactly as a missing one. Bad input
 * is refused before anything is stored. A submit is checked in this order:
 * the workflow (404), the preview gate (403), the network policy and the
 * runnable modes (422 mode_unavailable), credential shapes in the input
 * and the steps' definitions (422 credential_in_input, creds.h); then,
 * with SAGEWAI_IDENTITY=1, sagewai-identity resolves it (identity.c) and
 * only an ok answer lets the run be stored.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "creds.h"
#include "scheduler.h"

enum action {
	ACT_WF_LIST,
	ACT_WF_POST,
	ACT_WF_GET,
	ACT_RUN_LIST,
	ACT_RUN_POST,
	ACT_RUN_GET,
	ACT_RUN_EVENTS,
	ACT_RUN_CANCEL,
};

struct api_req {
	enum action act;
	char id[SW_UUID_STRLEN];
	char name[128];
	int version; /* 0 = latest */
	struct sched_env *env;
	struct evhttp_request *req;
	char tenant[128];
	char user[SCHED_NAME_MAX]; /* the key's user, "" for none */
	/* submit */
	json_t *input;
	char *text; /* workflow YAML, or the stored definition while identity resolves */
	json_t *warnings; /* registration: the parser's (sw_workflow.warnings) */
	int wf_version; /* the version that runs */
	char run_id[SW_UUID_STRLEN];
	/* a re-run (sagewai replay run; docs/AUDIT.md "Re-run") */
	char replay_of[SW_UUID_STRLEN]; /* "" for any other submit */
	json_t *replay;			/* its "steps": name -> entry (checked shapes) */
	json_t *original; /* the original's steps.identity: name -> JSON text (our store) */
	int wait_s;	  /* ?wait=S: answer when the run ends, within S seconds */
	/* the submit's one round trip: the definition from the cache and the
	 * input check in the run's own transaction (submit_guard) */
	int fast;	  /* a->version 0: the latest hint (sched_def_latest) is checked */
	char *guard_macs; /* the input's MACs for identity.input_matches, or NULL */
};

int sched_uuid_valid(const char *s)
{
	uint8_t u[16];

	return s != NULL && strlen(s) == 36 && sw_uuid_parse(s, u) == 0;
}

static void api_req_free(struct api_req *a)
{
	json_decref(a->input);
	json_decref(a->warnings);
	json_decref(a->replay);
	json_decref(a->original);
	free(a->text);
	free(a->guard_macs);
	free(a);
}

/* Reply with a JSON document held as text in a result (column 0, row 0). */
static void reply_text_json(struct evhttp_request *req, int status, const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);

	if (j == NULL) {
		sw_http_reply_error(req, 500, "internal", "cannot encode the answer");
		return;
	}
	sw_http_reply_json(req, status, j);
}

static void store_failed(struct evhttp_request *req, const char *what, const char *err)
{
	sw_log(SW_LOG_ERROR, what, "error", err, NULL);
	sw_http_reply_error(req, 503, "unavailable", "%s", what);
}

/* ---- workflows --------------------------------------------------------- */

static void wf_list_cb(PGresult *res, const char *err, void *opaque)
{
	struct api_req *a = opaque;

	if (err != NULL)
		store_failed(a->req, "workflow list failed", err);
	else
		reply_text_json(a->req, 200, PQgetvalue(res, 0, 0));
	api_req_free(a);
}

static void wf_list(struct api_req *a)
{
	const char *params[1] = {a->tenant};

	if (sw_store_query(
		a->env->store,
		"SELECT json_build_object('workflows', coalesce(json_agg(json_build_object("
		" 'name', name, 'version', version,"
		" 'steps', jsonb_array_length(def->'steps'), 'created', ts(created))"
		" ORDER BY name, version), '[]'))::text"
		" FROM workflows WHERE tenant = $1",
		1, params, wf_list_cb, a) == -1) {
		sw_http_reply_error(a->req, 503, "unavailable", "store unavailable");
		api_req_free(a);
	}
}

static void wf_get_cb(PGresult *res, const char *err, void *opaque)
{
	struct api_req *a = opaque;

	if (err != NULL)
		store_failed(a->req, "workflow read failed", err);
	else if (PQntuples(res) != 1)
		sw_http_reply_error(a->req, 404, "not_found", "no such workflow");
	else
		reply_text_json(a->req, 200, PQgetvalue(res, 0, 0));
	api_req_free(a);
}

static void wf_get(struct api_req *a)
{
	char v[16];
	const char *params[3] = {a->tenant, a->name, NULL};

	if (a->version > 0) {
		snprintf(v, sizeof(v), "%d", a->version);
		params[2] = v;
	}
	if (sw_store_query(a->env->store,
			   "SELECT json_build_object('name', name, 'version', version,"
			   " 'steps', jsonb_array_length(def->'steps'), 'created', ts(created),"
			   " 'yaml', yaml, 'definition', def)::text"
			   " FROM workflows WHERE tenant = $1 AND name = $2"
			   " AND ($3::int IS NULL OR version = $3::int)"
			   " ORDER BY version DESC LIMIT 1",
			   3, params, wf_get_cb, a) == -1) {
		sw_http_reply_error(a->req, 503, "unavailable", "store unavailable");
		api_req_free(a);
	}
}

static void wf_post_cb(PGresult *res, const char *err, void *opaque)
{
	struct api_req *a = opaque;

	if (err != NULL) {
		store_failed(a->req, "workflow registration failed", err);
	} else if (PQgetvalue(res, 0, 0)[0] != 't' && PQgetvalue(res, 0, 1)[0] != 't') {
		sw_http_reply_error(a->req, 409, "conflict",
				    "workflow %s version %d exists with different content",
				    a->name, a->version);
	} else {
		/* what registers but should be otherwise (anti-pattern 2, ...) */
		sw_http_reply_json(a->req, 201,
				   json_pack("{s:s, s:i, s:i, s:O}", "name", a->name, "version",
					     a->version, "steps", atoi(PQgetvalue(res, 0, 2)),
					     "warnings", a->warnings));
		if (PQgetvalue(res, 0, 0)[0] == 't') {
			/* the next submit reads which version is the latest
			 * (its guard would find this one and fail) */
			sched_def_latest_set(a->env, a->tenant, a->name, 0);
			sw_log(SW_LOG_INFO, "workflow registered", "tenant", a->tenant, "workflow",
			       a->name, NULL);
		}
	}
	api_req_free(a);
}

/* ?filename=F: a printable base name for error messages. */
static void query_filename(struct evhttp_request *req, char *out, size_t outlen)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq kv;
	const char *f;
	size_t i;

	snprintf(out, outlen, "workflow.yaml");
	if (q == NULL || evhttp_parse_query_str(q, &kv) != 0)
		return;
	f = evhttp_find_header(&kv, "filename");
	if (f != NULL && f[0] != '\0' && strlen(f) < outlen) {
		for (i = 0; f[i] != '\0'; i++)
			if ((unsigned char)f[i] < 0x20 || f[i] == 0x7f || f[i] == '/')
				break;
		if (f[i] == '\0')
			snprintf(out, outlen, "%s", f);
	}
	evhttp_clear_headers(&kv);
}

static void wf_post(struct api_req *a)
{
	struct evhttp_request *req = a->req;
	struct sw_workflow *wf;
	char err[1024], filename[128], version[16], nsteps[16];
	const char *params[6];
	json_t *def;
	size_t len;

	if ((a->text = sw_http_body(req, &len)) == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		goto out;
	}
	if (len == 0 || strlen(a->text) != len) {
		sw_http_reply_error(req, 400, "invalid_workflow",
				    len ? "the workflow text holds a NUL byte"
					: "empty body: the workflow YAML is expected");
		goto out;
	}
	query_filename(req, filename, sizeof(filename));
	if ((wf = sw_workflow_parse(a->text, len, filename, err, sizeof(err))) == NULL) {
		sw_http_reply_error(req, 400, "invalid_workflow", "%s", err);
		goto out;
	}
	def = sw_workflow_to_json(wf);
	snprintf(a->name, sizeof(a->name), "%s", wf->name);
	a->version = wf->version;
	snprintf(version, sizeof(version), "%d", wf->version);
	snprintf(nsteps, sizeof(nsteps), "%zu", wf->nsteps);
	a->warnings = json_incref(wf->warnings);
	sw_workflow_free(wf);
	{
		char *def_text = def ? json_dumps(def, JSON_COMPACT) : NULL;

		json_decref(def);
		if (def_text == NULL) {
			sw_http_reply_error(req, 500, "internal", "cannot encode the workflow");
			goto out;
		}
		params[0] = a->tenant;
		params[1] = a->name;
		params[2] = version;
		params[3] = a->text;
		params[4] = def_text;
		params[5] = nsteps;
		/* idempotent: a resent insert finds its own identical row */
		if (sw_store_query(
			a->env->store,
			"WITH ins AS (INSERT INTO workflows (tenant, name, version, yaml, def)"
			" VALUES ($1, $2, $3::int, $4, $5::jsonb) ON CONFLICT DO NOTHING"
			" RETURNING 1)"
			" SELECT EXISTS (SELECT 1 FROM ins),"
			" coalesce((SELECT yaml = $4 FROM workflows"
			"  WHERE tenant = $1 AND name = $2 AND version = $3::int), false),"
			" $6::int",
			6, params, wf_post_cb, a) == -1) {
			free(def_text);
			sw_http_reply_error(req, 503, "unavailable", "store unavailable");
			goto out;
		}
		free(def_text);
	}
	return;
out:
	api_req_free(a);
}

/* ---- runs -------------------------------------------------------------- */

static const char *mode_needs(enum sw_mode m)
{
	switch (m) {
	case SW_MODE_IN_PROCESS:
		return "sagewai-worker";
	case SW_MODE_SANDBOXED:
		return "sandboxd";
	case SW_MODE_IDENTITY_SCOPED:
		return "the identity service (SAGEWAI_IDENTITY=1) and a sandbox host that runs"
		       " identity_scoped";
	case SW_MODE_CLI_AGENT:
		return "the identity service (SAGEWAI_IDENTITY=1) and a sandbox host that runs"
		       " cli_agent";
	case SW_MODE_CLI_AGENT_JIT:
		return "the identity service (SAGEWAI_IDENTITY=1), the policy service"
		       " (SAGEWAI_POLICY=1) that decides run-time credential requests, and a"
		       " sandbox host that runs cli_agent_jit";
	default:
		return "an executor for it";
	}
}

static void run_post_read(struct api_req *a);
static int run_post_fast(struct api_req *a);

static void submit_done(const char *run_id, const char *state, const char *err, void *opaque)
{
	struct api_req *a = opaque;

	if (run_id == NULL && a->fast && sched_submit_guarded(err)) {
		/* what the submit took without reading does not hold: nothing
		 * was stored; the old way, reading everything first */
		if (strncmp(err, "SWVER", 5) == 0)
			sched_def_latest_set(a->env, a->tenant, a->name, 0);
		else if (strncmp(err, "SWIDF", 5) == 0)
			sched_identity_direct_failed(a->env, err);
		sw_metrics_counter_add(
		    a->env->metrics, "sagewai_scheduler_submit_guard_fallbacks_total",
		    "Submits whose transaction's guard failed (a later workflow"
		    " version, an input for identity to judge, the check failed),"
		    " taken again the way that reads first.",
		    1);
		a->fast = 0;
		free(a->guard_macs);
		a->guard_macs = NULL;
		run_post_read(a);
		return;
	}
	if (run_id != NULL && a->fast) {
		sw_metrics_counter_add(a->env->metrics, "sagewai_scheduler_submits_unread_total",
				       "Submits stored in one round trip: the definition from the"
				       " cache, the input check in their transaction.",
				       1);
		if (a->guard_macs != NULL)
			sched_identity_direct_clean(a->env);
	}
	if (run_id == NULL)
		sw_http_reply_error(a->req, 503, "unavailable", "the run could not be stored");
	else if (a->wait_s > 0)
		sched_wait_open(a->env, a->req, run_id, a->tenant, state, a->wait_s);
	else
		sw_http_reply_json(a->req, 201, json_pack("{s:s}", "run_id", run_id));
	(void)err;
	api_req_free(a);
}

/* ?wait=S (1..SCHED_WAIT_MAX_S): 0 and a->wait_s set, or -1 (replied). */
static int query_wait(struct api_req *a)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(a->req));
	struct evkeyvalq kv;
	const char *w;
	char *end;
	long v;
	int ret = 0;

	if (q == NULL || q[0] == '\0')
		return 0;
	if (evhttp_parse_query_str(q, &kv) != 0) {
		sw_http_reply_error(a->req, 400, "bad_request", "the query string does not parse");
		return -1;
	}
	if ((w = evhttp_find_header(&kv, "wait")) != NULL) {
		errno = 0;
		v = strtol(w, &end, 10);
		if (errno != 0 || end == w || *end != '\0' || v < 0 || v > SCHED_WAIT_MAX_S) {
			sw_http_reply_error(a->req, 400, "bad_request",
					    "wait must be whole seconds, 0..%d", SCHED_WAIT_MAX_S);
			ret = -1;
		} else {
			a->wait_s = (int)v;
		}
	}
	evhttp_clear_headers(&kv);
	return ret;
}

/* The run may be stored: with identity, steps holds each identity-bearing
 * step's pinned keys. */
static void submit_now(struct api_req *a, const struct sw_workflow *wf, json_t *steps)
{
	struct sched_submit_guard g = {a->version == 0, a->guard_macs};

	if (sched_run_submit(a->env, a->tenant, a->user, a->run_id, wf, a->input, steps,
			     a->replay_of, a->replay, a->fast ? &g : NULL, submit_done, a) == -1) {
		sw_http_reply_error(a->req, 503, "unavailable", "the run could not be queued");
		api_req_free(a);
	}
}

static const char *str_or(json_t *v)
{
	return json_is_string(v) ? json_string_value(v) : "";
}

/* One key of a pinned identity as compared by a re-run: what decides which
 * value the step gets (never a value: secrets are named by version). */
static void pin_str(json_t *k, char *out, size_t n)
{
	json_t *v = json_object_get(k, "value");
	char *vt = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

	snprintf(out, n, "%s %s v%lld%s%s", str_or(json_object_get(k, "kind")),
		 str_or(json_object_get(k, "secret")),
		 (long long)json_integer_value(json_object_get(k, "version")),
		 vt != NULL && strcmp(str_or(json_object_get(k, "kind")), "plain") == 0 ? " = "
											: "",
		 vt != NULL && strcmp(str_or(json_object_get(k, "kind")), "plain") == 0 ? vt : "");
	free(vt);
}

/* A re-run: 1 (why says which key) when the keys identity resolved now for
 * an identity-bearing step are not those the original run was given (the
 * keys this scheduler stored for that step of the original, a->original;
 * the same as its step.dispatched.identity): a key more or less, a plain
 * knob's value, another secret or version (identity was asked for the
 * original's versions and refuses one revoked or gone, so this is a
 * backstop). 0 when every step's keys are the original's. Only the
 * identity-bearing steps of wf (the version that runs) are compared. */
static int replay_pins_differ(struct api_req *a, const struct sw_workflow *wf, json_t *steps,
			      char *why, size_t whylen)
{
	const char *name;
	json_t *entry;

	json_object_foreach(a->original, name, entry) {
		const char *was = json_string_value(entry);
		const char *now = json_string_value(json_object_get(steps, name));
		json_t *wa, *na, *k, *m;
		size_t i, j;
		int differ = 0;

		/* a step the version that runs does not have, or runs without
		 * an identity (--latest), has nothing to pin */
		for (i = 0; i < wf->nsteps; i++)
			if (strcmp(wf->steps[i].name, name) == 0)
				break;
		if (was == NULL || was[0] == '\0' || i == wf->nsteps ||
		    !sw_mode_identity_bearing(wf->steps[i].mode))
			continue;
		wa = json_loads(was, 0, NULL);
		na = now != NULL ? json_loads(now, 0, NULL) : json_array();
		if (!json_is_array(wa) || !json_is_array(na)) {
			snprintf(why, whylen,
				 "step '%s': the recorded identity is not a list of"
				 " keys",
				 name);
			differ = 1;
		}
		for (i = 0; !differ && i < json_array_size(wa) + json_array_size(na); i++) {
			int from_was = i < json_array_size(wa);
			char want[512], got[512];
			const char *env;

			k = from_was ? json_array_get(wa, i)
				     : json_array_get(na, i - json_array_size(wa));
			env = str_or(json_object_get(k, "env"));
			m = NULL;
			json_array_foreach(from_was ? na : wa, j, m)
				if (strcmp(str_or(json_object_get(m, "env")), env) == 0)
					break;
			if (j == json_array_size(from_was ? na : wa))
				m = NULL;
			if (m == NULL) {
				snprintf(why, whylen, "step '%s': key %.64s %s", name, env,
					 from_was ? "is no longer bound to it"
						  : "is bound to it now and was not then");
				differ = 1;
				break;
			}
			pin_str(from_was ? k : m, want, sizeof(want));
			pin_str(from_was ? m : k, got, sizeof(got));
			if (strcmp(want, got) != 0) {
				snprintf(why, whylen,
					 "step '%s': key %.64s was %.200s, now %.200s", name, env,
					 want, got);
				differ = 1;
			}
		}
		json_decref(wa);
		json_decref(na);
		if (differ)
			return 1;
	}
	return 0;
}

static void identity_done(struct sched_env *env, int status, const char *code,
			  const char *message, json_t *steps, void *opaque)
{
	struct api_req *a = opaque;
	const struct sw_workflow *wf;
	char why[512];

	if (status != 0) {
		sw_http_reply_error(a->req, status, code, "%s", message);
		api_req_free(a);
		return;
	}
	/* the definition cached before the wait may have been evicted since */
	wf = sched_def_get(env, a->tenant, a->name, a->wf_version, a->text, why, sizeof(why));
	if (wf == NULL) {
		sw_http_reply_error(a->req, 500, "internal", "stored workflow unreadable");
		api_req_free(a);
		return;
	}
	if (a->replay_of[0] != '\0' && replay_pins_differ(a, wf, steps, why, sizeof(why))) {
		sw_http_reply_error(a->req, 409, "replay_pin",
				    "%s; a re-run gets the original run's secret versions or does"
				    " not run (revoked or rotated since)",
				    why);
		api_req_free(a);
		return;
	}
	submit_now(a, wf, steps);
}

static void run_post_go(struct api_req *a, const struct sw_workflow *wf, const char *def_text,
			PGresult *res);

static void run_post_def_cb(PGresult *res, const char *err, void *opaque)
{
	struct api_req *a = opaque;
	struct sched_env *env = a->env;
	const struct sw_workflow *wf = NULL;
	char why[512];

	if (err != NULL) {
		store_failed(a->req, "workflow lookup failed", err);
		goto out;
	}
	if (PQntuples(res) != 1) {
		if (a->version > 0)
			sw_http_reply_error(a->req, 404, "not_found", "no workflow %s version %d",
					    a->name, a->version);
		else
			sw_http_reply_error(a->req, 404, "not_found", "no workflow %s", a->name);
		goto out;
	}
	wf = sched_def_get(env, a->tenant, a->name, atoi(PQgetvalue(res, 0, 1)),
			   PQgetvalue(res, 0, 0), why, sizeof(why));
	if (wf == NULL) {
		sw_http_reply_error(a->req, 500, "internal", "stored workflow unreadable");
		goto out;
	}
	if (a->version == 0 && a->replay_of[0] == '\0')
		sched_def_latest_set(env, a->tenant, a->name, wf->version);
	run_post_go(a, wf, PQgetvalue(res, 0, 0), res);
	return;
out:
	api_req_free(a);
}

/* The submit of wf: its checks, then identity's resolve or the run's
 * transaction. def_text and res are the definition read's (res: its row,
 * with a re-run's original), or NULL when the submit took wf from the cache
 * (a->fast: its transaction checks what it did not read). */
static void run_post_go(struct api_req *a, const struct sw_workflow *wf, const char *def_text,
			PGresult *res)
{
	struct sched_env *env = a->env;
	char why[512];
	size_t i;
	int u;

	if (env->multi_tenant && !env->sealed_preview && sw_workflow_identity_bearing(wf)) {
		for (i = 0; i < wf->nsteps; i++)
			if (sw_mode_identity_bearing(wf->steps[i].mode))
				break;
		sw_http_reply_error(a->req, 403, "preview_gate",
				    "step '%s' runs in mode %s, which carries a customer identity;"
				    " in multi_tenant mode the identity-bearing modes are in"
				    " preview and refused unless the operator sets"
				    " SAGEWAI_SEALED_PREVIEW=1",
				    wf->steps[i].name, sw_mode_name(wf->steps[i].mode));
		goto out;
	}
	/* a re-run is checked as any submit, the gate first (docs/AUDIT.md) */
	if (res != NULL && PQgetvalue(res, 0, 2)[0] != 't') {
		sw_http_reply_error(a->req, 404, "not_found", "no run %s to re-run", a->replay_of);
		goto out;
	}
	if (res != NULL && a->replay_of[0] != '\0' &&
	    (a->original = PQgetisnull(res, 0, 3)
			       ? json_object()
			       : json_loads(PQgetvalue(res, 0, 3), 0, NULL)) == NULL) {
		sw_http_reply_error(a->req, 500, "internal", "the original's steps unreadable");
		goto out;
	}
	/* network: full is the host's own network: offered only where the
	 * operator lists it (never by default to tenants), refused here, at
	 * submit, rather than left to sandboxd's configuration */
	for (i = 0; !env->offer_full && i < wf->nsteps; i++) {
		const char *net = json_string_value(json_object_get(wf->steps[i].extra, "network"));

		if (net != NULL && strcmp(net, "full") == 0) {
			sw_http_reply_error(a->req, 422, "mode_unavailable",
					    "step '%s' asks for network full, which this %s"
					    " deployment does not offer (SAGEWAI_SANDBOX_NETWORKS);"
					    " use egress_only with an egress_allow list",
					    wf->steps[i].name,
					    env->multi_tenant ? "multi_tenant" : "single_org");
			goto out;
		}
	}
	for (u = 0; (size_t)u < wf->nsteps; u++) {
		if (sched_mode_runnable(env, wf->steps[u].mode))
			continue;
		sw_http_reply_error(a->req, 422, "mode_unavailable",
				    "step '%s' runs in mode %s, which needs %s; this deployment"
				    " runs only: %s",
				    wf->steps[u].name, sw_mode_name(wf->steps[u].mode),
				    mode_needs(wf->steps[u].mode), env->runnable_list);
		goto out;
	}
	/* anti-pattern 3, with or without identity: never the value itself */
	if (sched_creds_find(a->input, wf, why, sizeof(why))) {
		sw_http_reply_error(a->req, 422, "credential_in_input",
				    "%s; credentials reach steps through the identity service"
				    " (secrets and profiles), never through a run's input or a"
				    " workflow's definition",
				    why);
		goto out;
	}
	sw_uuid_v7_str(a->run_id);
	a->wf_version = wf->version;
	if (env->identity && !a->fast) {
		int status;
		char code[64];

		free(a->text);
		if ((a->text = strdup(def_text)) == NULL) {
			sw_http_reply_error(a->req, 503, "unavailable", "out of memory");
			goto out;
		}
		if (sched_identity_resolve(env, a->tenant, a->user, a->run_id, wf, a->input,
					   a->original, identity_done, a, &status, code, sizeof(code), why,
					   sizeof(why)) == -1) {
			sw_http_reply_error(a->req, status, code, "%s", why);
			goto out;
		}
		return;
	}
	submit_now(a, wf, NULL);
	return;
out:
	api_req_free(a);
}

/*
 * The "replay" field of a re-run's submit (sagewai replay run builds it from
 * the original's audit trail; docs/RUNS.md):
 *
 *   {"of": RUN_ID, "steps": {"<step>": {"request": {...}, "status": S,
 *     "answer": {"output": TEXT|null, "error": TEXT|null},
 *     "identity": TEXT, "decisions": [{...}, ...]}, ...}}
 *
 * every field of a step optional; request, status and answer go together
 * (an in_process llm or http step's recorded request and outcome). Shapes
 * only: which steps take what is apply.c's; the original's tenant is
 * checked with the workflow; entries of steps the workflow that runs does
 * not have are left out. Each entry gets "of". 0, or -1 with why.
 */
static int replay_parse(struct api_req *a, json_t *rp, char *why, size_t whylen)
{
	static const char *const statuses[] = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"};
	json_t *of = json_object_get(rp, "of"), *steps = json_object_get(rp, "steps"), *e, *v;
	const char *key, *name;
	size_t i;

	if (!json_is_object(rp) || !json_is_string(of) ||
	    !sched_uuid_valid(json_string_value(of)) || !json_is_object(steps) ||
	    json_object_size(rp) != 2) {
		snprintf(why, whylen, "must be {\"of\": RUN_ID, \"steps\": {...}}");
		return -1;
	}
	if (json_object_size(steps) > SCHED_REPLAY_STEPS_MAX) {
		snprintf(why, whylen, "more than %d steps", SCHED_REPLAY_STEPS_MAX);
		return -1;
	}
	json_object_foreach(steps, name, e) {
		int has_req;

		if (!json_is_object(e)) {
			snprintf(why, whylen, "step '%.64s' is not an object", name);
			return -1;
		}
		json_object_foreach(e, key, v) {
			if (strcmp(key, "request") == 0 && json_is_object(v))
				continue;
			if (strcmp(key, "answer") == 0 && json_is_object(v))
				continue;
			if (strcmp(key, "identity") == 0 && json_is_string(v))
				continue;
			if (strcmp(key, "decisions") == 0 && json_is_array(v))
				continue;
			if (strcmp(key, "status") == 0 && json_is_string(v)) {
				for (i = 0; i < 4; i++)
					if (strcmp(json_string_value(v), statuses[i]) == 0)
						break;
				if (i < 4)
					continue;
			}
			snprintf(why, whylen,
				 "step '%.64s': field \"%.32s\" unknown or of the"
				 " wrong type",
				 name, key);
			return -1;
		}
		has_req = json_object_get(e, "request") != NULL;
		v = json_object_get(e, "answer");
		if (has_req != (json_object_get(e, "status") != NULL) || has_req != (v != NULL) ||
		    (v != NULL && (json_object_size(v) != 2 ||
				   !(json_is_string(json_object_get(v, "output")) ||
				     json_is_null(json_object_get(v, "output"))) ||
				   !(json_is_string(json_object_get(v, "error")) ||
				     json_is_null(json_object_get(v, "error")))))) {
			snprintf(why, whylen,
				 "step '%.64s': request, status and answer ({\"output\","
				 " \"error\"}) go together",
				 name);
			return -1;
		}
		json_array_foreach(json_object_get(e, "decisions"), i, v) {
			if (!json_is_object(v)) {
				snprintf(why, whylen, "step '%.64s': a decision is not an object",
					 name);
				return -1;
			}
		}
		json_object_set(e, "of", of);
	}
	snprintf(a->replay_of, sizeof(a->replay_of), "%s", json_string_value(of));
	a->replay = json_incref(steps);
	return 0;
}

static void run_post(struct api_req *a)
{
	struct evhttp_request *req = a->req;
	json_t *body, *name, *version, *input;
	char *text;
	size_t len;

	if (query_wait(a) == -1 || (body = sw_http_body_json(req)) == NULL)
		goto out;
	name = json_object_get(body, "workflow");
	version = json_object_get(body, "version");
	input = json_object_get(body, "input");
	if (!json_is_object(body) || !json_is_string(name) ||
	    json_string_length(name) >= sizeof(a->name) || json_string_length(name) == 0) {
		sw_http_reply_error(req, 400, "bad_request",
				    "body must be {\"workflow\": NAME, \"version\": N (optional),"
				    " \"input\": {...}}");
		goto out_body;
	}
	{
		/* as the workflow parser does: a field we do not know is a
		 * mistake to report, never something to ignore */
		const char *key;
		json_t *val;

		json_object_foreach(body, key, val)
		{
			if (strcmp(key, "workflow") != 0 && strcmp(key, "version") != 0 &&
			    strcmp(key, "input") != 0 && strcmp(key, "replay") != 0) {
				sw_http_reply_error(req, 400, "bad_request",
						    "unknown field \"%.64s\" (known: workflow, "
						    "version, input, replay)",
						    key);
				goto out_body;
			}
		}
	}
	if (json_object_get(body, "replay") != NULL) {
		char why[256];

		if (replay_parse(a, json_object_get(body, "replay"), why, sizeof(why)) == -1) {
			sw_http_reply_error(req, 400, "bad_request", "replay: %s", why);
			goto out_body;
		}
	}
	if (version != NULL && !json_is_null(version) &&
	    (!json_is_integer(version) || json_integer_value(version) < 1 ||
	     json_integer_value(version) > 1000000000)) {
		sw_http_reply_error(req, 400, "bad_request", "version must be an integer >= 1");
		goto out_body;
	}
	if (input != NULL && !json_is_object(input)) {
		sw_http_reply_error(req, 400, "bad_input", "input must be a JSON object");
		goto out_body;
	}
	a->input = input ? json_incref(input) : json_object();
	text = json_dumps(a->input, JSON_COMPACT);
	len = text ? strlen(text) : SIZE_MAX;
	free(text);
	if (len > SCHED_MAX_INPUT) {
		sw_http_reply_error(req, 413, "too_large", "input of %zu bytes exceeds %u", len,
				    SCHED_MAX_INPUT);
		goto out_body;
	}
	snprintf(a->name, sizeof(a->name), "%s", json_string_value(name));
	a->version = json_is_integer(version) ? (int)json_integer_value(version) : 0;
	json_decref(body);
	if (a->replay_of[0] == '\0' && run_post_fast(a))
		return;
	run_post_read(a);
	return;
out_body:
	json_decref(body);
out:
	api_req_free(a);
}

/*
 * The submit's one round trip (docs/RUNS.md). A submit reads which
 * version of the workflow is the latest, then asks PostgreSQL whether its
 * input holds a secret's value (identity.input_matches), then stores the
 * run: three round trips before the first dispatch. When this scheduler
 * holds the version a submit without one last found the latest (parsed, in
 * its cache), or the version asked for, and the input check is the only
 * thing identity would be asked, the submit takes both as they are and
 * its transaction checks them where the run is stored (submit_guard): a
 * later version, an input for identity to judge, or a failed check stores
 * nothing and the submit goes the way that reads first (submit_done). A
 * re-run always reads (its original's keys). 1: taken; 0: read first.
 */
static int run_post_fast(struct api_req *a)
{
	struct sched_env *env = a->env;
	const struct sw_workflow *wf;
	char why[64];
	int v = a->version > 0 ? a->version : sched_def_latest(env, a->tenant, a->name);

	if (v == 0 ||
	    (wf = sched_def_get(env, a->tenant, a->name, v, NULL, why, sizeof(why))) == NULL)
		return 0;
	if (env->identity &&
	    sched_identity_direct_macs(env, a->user, wf, a->input, &a->guard_macs) != 1)
		return 0;
	a->fast = 1;
	run_post_go(a, wf, NULL, NULL);
	return 1;
}

/* Read the workflow's definition (the latest version, or the one asked
 * for; a re-run's original), then run_post_def_cb. */
static void run_post_read(struct api_req *a)
{
	const char *params[4];
	char v[16];

	params[0] = a->tenant;
	params[1] = a->name;
	params[2] = NULL;
	params[3] = a->replay_of[0] != '\0' ? a->replay_of : NULL;
	if (a->version > 0) {
		snprintf(v, sizeof(v), "%d", a->version);
		params[2] = v;
	}
	/* a re-run's original must be a run of the same tenant */
	if (sw_store_query(a->env->store,
			   "SELECT def::text, version, $4::uuid IS NULL OR EXISTS (SELECT 1 FROM"
			   " runs r WHERE r.id = $4::uuid AND r.tenant = $1),"
			   " (SELECT json_object_agg(s.name, s.identity) FROM steps s JOIN runs r"
			   "  ON r.id = s.run_id WHERE s.run_id = $4::uuid AND r.tenant = $1"
			   "  AND s.identity IS NOT NULL)::text"
			   " FROM workflows WHERE tenant = $1 AND name = $2"
			   " AND ($3::int IS NULL OR version = $3::int)"
			   " ORDER BY version DESC LIMIT 1",
			   4, params, run_post_def_cb, a) == -1) {
		sw_http_reply_error(a->req, 503, "unavailable", "store unavailable");
		api_req_free(a);
	}
}

static void run_get_cb(PGresult *res, const char *err, void *opaque)
{
	struct api_req *a = opaque;

	if (err != NULL)
		store_failed(a->req, "run read failed", err);
	else if (PQntuples(res) != 1)
		sw_http_reply_error(a->req, 404, "not_found", "no such run");
	else
		reply_text_json(a->req, 200, PQgetvalue(res, 0, 0));
	api_req_free(a);
}

static void run_get(struct api_req *a)
{
	const char *params[2] = {a->id, a->tenant};

	if (sched_run_read(a->env, params, run_get_cb, a) == -1) {
		sw_http_reply_error(a->req, 503, "unavailable", "store unavailable");
		api_req_free(a);
	}
}

static void run_list(struct api_req *a)
{
	const char *params[1] = {a->tenant};

	if (sw_store_query(
		a->env->store,
		"SELECT json_build_object('runs', coalesce(json_agg(j ORDER BY created DESC,"
		" id DESC), '[]'))::text FROM (SELECT run_json(r)::jsonb - 'steps' AS j,"
		" r.created, r.id FROM runs r WHERE tenant = $1"
		" ORDER BY created DESC, id DESC LIMIT 100) t",
		1, params, wf_list_cb, a) == -1) {
		sw_http_reply_error(a->req, 503, "unavailable", "store unavailable");
		api_req_free(a);
	}
}

static void cancel_done(struct sched_op *op, enum sched_op_result r, void *opaque)
{
	struct api_req *a = opaque;

	switch (r) {
	case SCHED_OP_APPLIED:
		sw_http_reply_json(
		    a->req, 202, json_pack("{s:s, s:s}", "run_id", a->id, "state", RUN_CANCELLED));
		break;
	case SCHED_OP_NOT_FOUND:
		sw_http_reply_error(a->req, 404, "not_found", "no such run");
		break;
	case SCHED_OP_TERMINAL:
	case SCHED_OP_IGNORED:
		sw_http_reply_error(a->req, 409, "conflict", "run %s is already %s", a->id,
				    op->run_state);
		break;
	case SCHED_OP_ERROR:
	default:
		store_failed(a->req, "cancel failed", op->errmsg);
		break;
	}
	api_req_free(a);
}

static void run_cancel(struct api_req *a)
{
	struct sched_op *op = sched_op_new(a->env, SCHED_OP_CANCEL, a->id, cancel_done, a);

	if (op == NULL) {
		sw_http_reply_error(a->req, 503, "unavailable", "out of memory");
		api_req_free(a);
		return;
	}
	snprintf(op->tenant, sizeof(op->tenant), "%s", a->tenant);
	sched_op_start(op);
}

/* ---- dispatch ---------------------------------------------------------- */

static void authorized(struct sched_env *env, struct evhttp_request *req, const char *tenant,
		       const char *user, void *opaque)
{
	struct api_req *a = opaque;

	(void)env;
	(void)req;
	if (tenant == NULL) {
		api_req_free(a); /* answered already */
		return;
	}
	snprintf(a->tenant, sizeof(a->tenant), "%s", tenant);
	snprintf(a->user, sizeof(a->user), "%s", user ? user : "");
	switch (a->act) {
	case ACT_WF_LIST:
		wf_list(a);
		break;
	case ACT_WF_POST:
		wf_post(a);
		break;
	case ACT_WF_GET:
		wf_get(a);
		break;
	case ACT_RUN_LIST:
		run_list(a);
		break;
	case ACT_RUN_POST:
		run_post(a);
		break;
	case ACT_RUN_GET:
		run_get(a);
		break;
	case ACT_RUN_EVENTS:
		sched_sse_open(a->env, a->req, a->id, a->tenant);
		api_req_free(a);
		break;
	case ACT_RUN_CANCEL:
		run_cancel(a);
		break;
	}
}

static void begin(struct sched_env *env, struct evhttp_request *req, struct api_req *a)
{
	a->env = env;
	a->req = req;
	sched_auth(env, req, authorized, a);
}

static struct api_req *api_req_new(struct evhttp_request *req, enum action act)
{
	struct api_req *a = calloc(1, sizeof(*a));

	if (a == NULL)
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
	else
		a->act = act;
	return a;
}

static int is_get(struct evhttp_request *req)
{
	return evhttp_request_get_command(req) == EVHTTP_REQ_GET;
}

static int is_post(struct evhttp_request *req)
{
	return evhttp_request_get_command(req) == EVHTTP_REQ_POST;
}

static void workflows_cb(struct evhttp_request *req, void *arg)
{
	struct api_req *a;

	if (!is_get(req) && !is_post(req)) {
		sw_http_reply_method_not_allowed(req, "GET, POST");
		return;
	}
	if ((a = api_req_new(req, is_get(req) ? ACT_WF_LIST : ACT_WF_POST)) != NULL)
		begin(arg, req, a);
}

static void workflow_item_cb(struct evhttp_request *req, void *arg)
{
	const char *rest = sw_http_path(req) + strlen("/v1/workflows/");
	struct api_req *a;
	char *name, *slash, *end;
	long v = 0;

	if (!is_get(req)) {
		sw_http_reply_method_not_allowed(req, "GET");
		return;
	}
	if ((name = evhttp_uridecode(rest, 0, NULL)) == NULL) {
		sw_http_reply_error(req, 404, "not_found", "no such workflow");
		return;
	}
	if ((slash = strchr(name, '/')) != NULL) {
		*slash = '\0';
		v = strtol(slash + 1, &end, 10);
		if (*end != '\0' || v < 1 || v > 1000000000) {
			free(name);
			sw_http_reply_error(req, 404, "not_found", "no such workflow version");
			return;
		}
	}
	if (name[0] == '\0' || strlen(name) >= 128) {
		free(name);
		sw_http_reply_error(req, 404, "not_found", "no such workflow");
		return;
	}
	if ((a = api_req_new(req, ACT_WF_GET)) != NULL) {
		snprintf(a->name, sizeof(a->name), "%s", name);
		a->version = (int)v;
		begin(arg, req, a);
	}
	free(name);
}

static void runs_cb(struct evhttp_request *req, void *arg)
{
	struct api_req *a;

	if (!is_get(req) && !is_post(req)) {
		sw_http_reply_method_not_allowed(req, "GET, POST");
		return;
	}
	if ((a = api_req_new(req, is_get(req) ? ACT_RUN_LIST : ACT_RUN_POST)) != NULL)
		begin(arg, req, a);
}

static void run_item_cb(struct evhttp_request *req, void *arg)
{
	const char *rest = sw_http_path(req) + strlen("/v1/runs/");
	const char *slash = strchr(rest, '/');
	size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
	char id[SW_UUID_STRLEN];
	enum action act;
	struct api_req *a;

	if (slash == NULL) {
		act = ACT_RUN_GET;
	} else if (strcmp(slash, "/events") == 0) {
		act = ACT_RUN_EVENTS;
	} else if (strcmp(slash, "/cancel") == 0) {
		act = ACT_RUN_CANCEL;
	} else {
		sw_http_reply_error(req, 404, "not_found", "no such resource");
		return;
	}
	if (act == ACT_RUN_CANCEL ? !is_post(req) : !is_get(req)) {
		sw_http_reply_method_not_allowed(req, act == ACT_RUN_CANCEL ? "POST" : "GET");
		return;
	}
	if (idlen != 36) {
		sw_http_reply_error(req, 404, "not_found", "no such run");
		return;
	}
	memcpy(id, rest, 36);
	id[36] = '\0';
	if (!sched_uuid_valid(id)) {
		sw_http_reply_error(req, 404, "not_found", "no such run");
		return;
	}
	if ((a = api_req_new(req, act)) != NULL) {
		snprintf(a->id, sizeof(a->id), "%s", id);
		begin(arg, req, a);
	}
}

int sched_api_start(struct sched_env *env, char *errstr, size_t errlen)
{
	if ((env->http = sw_service_http(env->svc, SCHED_MAX_BODY, errstr, errlen)) == NULL)
		return -1;
	/* bodies above evhttp's own cap are read and dropped before its 413, so
	 * the client sees the answer rather than a reset connection */
	evhttp_set_flags(sw_http_evhttp(env->http), EVHTTP_SERVER_LINGERING_CLOSE);
	if (sw_http_route(env->http, "/v1/workflows", workflows_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/workflows/*", workflow_item_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/runs", runs_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/runs/*", run_item_cb, env) == -1 ||
	    sw_http_route(env->http, "/v1/tenants", sched_tenants_post, env) == -1 ||
	    sw_http_route(env->http, "/v1/tenants/*", sched_tenant_item, env) == -1 ||
	    sw_http_route(env->http, "/v1/keys", sched_keys_post, env) == -1) {
		snprintf(errstr, errlen, "cannot install routes");
		return -1;
	}
	return 0;
}
