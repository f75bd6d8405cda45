/*
 * Black-box tests of sagewai-policy over the harness's real Kafka broker and
 * PostgreSQL. The test plays sandboxd (it produces credential.requested and
 * credential.withdrawn), the scheduler (run.finished, tenants and keys on
 * sagewai.tenants) and reads what policy publishes on sagewai.credentials.
 * One program, one scenario per argument:
 *
 *   lang      bad policy files refused with FILE:LINE:COL; the allow-all
 *             policy refused with the reason, accepted with override and a
 *             justification (logged and kept in policy_history); GET; test
 *   decide    allow (with the rule's secret), deny, no rule, no policy; ask
 *             then a person approves (credential.pending, then decided by
 *             human naming the approver) or denies; a request consumed twice
 *             is decided once; a second decision is 409
 *   deadline  an ask nobody answers is denied by deadline
 *   withdraw  credential.withdrawn and run.finished withdraw a pending ask
 *             (decided deny, by withdrawn; shown withdrawn); a withdrawal that
 *             arrives before its request voids it
 *   kill9     kill -9 with an ask pending: after restart it is approved once
 *             (one decided); a request produced while policy is down and one
 *             whose deadline passed while it was down are each decided once
 *   tenants   multi_tenant: keys learnt from sagewai.tenants; another
 *             tenant's approvals, approval and policy are 404; a user's key
 *             not among the approvers is 403, one among them decides; only the
 *             tenant-wide key applies a policy; no key 401
 *   hostile   oversized and garbage HTTP bodies, bad paths and methods,
 *             garbage on sagewai.credentials (dead-lettered), malformed
 *             requests (denied, the service keeps serving)
 *   cli       sagewai policy apply|show|test and approvals list|approve|deny|
 *             watch against the service: output, --json, --help, a bad file's
 *             FILE:LINE:COL on stderr (exit 1), an approval decided by the CLI
 *   replay    a re-run's requests (replay_of) decided from the record: an
 *             allow a person gave in the original is allowed again by
 *             replay with nobody asked (no credential.pending, no approval),
 *             a rule's allow and deny likewise; refused not_recorded (and
 *             never asked): another name or scope than the original's
 *             decision, a run that is not a re-run, a re-run announced by
 *             another producer than the scheduler, a re-run of another run,
 *             another tenant, a malformed claim; a request consumed before
 *             its run.submitted waits for it
 *   prune     tombstones (withdrawals, finished runs, re-runs) older than
 *             SAGEWAI_POLICY_RETENTION_S are deleted in the background, the
 *             younger ones and every request are kept, and a kept tombstone
 *             still works (a request of a recently finished run is void)
 *   page      headless Chromium (tests/policy/page.py over the DevTools
 *             protocol): the page shows a pending request, a click on Approve
 *             produces credential.decided by human; a screenshot is kept in
 *             the build directory (tests-tmp/policy-page.png)
 */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"
#include "cli_spawn.h"

static struct sw_event_registry *reg;
static rd_kafka_t *producer;
static char prefix[48], dir[512], db_dsn[512], group[128], log_path[600], admin_path[600];
static char admin[65];
static pid_t pol_pid = -1;
static int pol_port;
static struct sw_test_replies rp; /* replies read back */
static const char *retention_env; /* SAGEWAI_POLICY_RETENTION_S=..., or NULL */

/* ---- helpers -------------------------------------------------------------------- */

static const char *js(json_t *j, const char *k)
{
	const char *v = json_string_value(json_object_get(j, k));

	return v != NULL ? v : "";
}

static void write_file(const char *path, const char *text, mode_t m)
{
	sw_test_file_write(path, text, m);
}

static pid_t spawn(const char *log, const char *mode)
{
	static const char *const argv[] = {"sagewai-policy", "serve", NULL};
	char path[600], dsn[700], gid[160], m[64], adm[700];
	const char *env[16];
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/services/policy/sagewai-policy", getenv("SW_BUILD_DIR"));
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "policy");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(m, sizeof(m), "SAGEWAI_MODE=%s", mode);
	snprintf(adm, sizeof(adm), "SAGEWAI_ADMIN_TOKEN_FILE=%s", admin_path);
	env[n++] = dsn;
	env[n++] = gid;
	env[n++] = m;
	env[n++] = adm;
	env[n++] = "SAGEWAI_HTTP_PORT=0";
	env[n++] = "SAGEWAI_LOG_LEVEL=debug";
	env[n++] = SW_TEST_ENV_FAST_REBALANCE;
	if (retention_env != NULL)
		env[n++] = retention_env;
	env[n] = NULL;
	return sw_test_proc_spawn(path, argv, env, log);
}

static const char *mode = "multi_tenant";

static void pol_start(void)
{
	static int starts;

	snprintf(log_path, sizeof(log_path), "%s/policy-%d.log", dir, ++starts);
	sw_test_log_watch(log_path, 60);
	pol_pid = spawn(log_path, mode);
	pol_port = sw_test_proc_wait_port(pol_pid, "sagewai-policy", log_path, "policy started");
	sw_test_http_wait_healthy(pol_port, pol_pid, "sagewai-policy");
}

static void pol_stop(void)
{
	sw_test_proc_stop(&pol_pid, SIGTERM, "sagewai-policy");
}

static void setup(const char *scenario)
{
	static const char *const pconf[] = {"linger.ms=1", NULL};
	static const char *const rtopics[] = {"sagewai.credentials", NULL};
	static const char *const gtopics[] = {"sagewai.credentials", "sagewai.runs",
					      "sagewai.tenants", NULL};
	char q[2048], err[256], rg[160], line[100];
	uint8_t r[32];

	sw_test_env_load();
	SW_CHECK(sodium_init() >= 0);
	sw_test_proc_watch(&pol_pid);
	snprintf(prefix, sizeof(prefix), "%s-%d", scenario, (int)getpid());
	snprintf(group, sizeof(group), "policy-test-%s", prefix);
	snprintf(dir, sizeof(dir), "%s/tests-tmp/policy-%s", getenv("SW_BUILD_DIR"), prefix);
	snprintf(q, sizeof(q), "rm -rf %s && mkdir -p %s && chmod 700 %s", dir, dir, dir);
	SW_CHECK(system(q) == 0);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "policy", scenario);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, pconf);
	randombytes_buf(r, sizeof(r));
	sw_hex_encode(r, sizeof(r), admin);
	snprintf(admin_path, sizeof(admin_path), "%s/admin.token", dir);
	snprintf(line, sizeof(line), "%s\n", admin);
	write_file(admin_path, line, 0600);
	sw_test_kafka_group_to_end(group, gtopics);
	snprintf(rg, sizeof(rg), "policy-test-replies-%s", prefix);
	sw_test_replies_open(&rp, reg, rg, rtopics, &pol_pid, "sagewai-policy");
}

static void finish(void)
{
	char cmd[1200];

	pol_stop();
	/* the admin token never reaches a log line */
	snprintf(cmd, sizeof(cmd), "grep -qF -- '%s' %s/*.log", admin, dir);
	SW_REQUIRE(system(cmd) != 0, "a log holds the admin token");
	printf("%s: ok\n", prefix);
}

/* ---- HTTP -------------------------------------------------------------------------- */

static json_t *http_raw(const char *method, const char *path, const char *body, size_t len,
			const char *ctype, const char *token, long *status)
{
	char url[1200], auth[300], ct[100];
	const char *hdrs[3] = {NULL, NULL, NULL};
	struct sw_test_http_reply r = {0};
	json_t *j = NULL;
	int n = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", pol_port, path);
	snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
	hdrs[n++] = ct;
	if (token != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hdrs[n++] = auth;
	}
	sw_test_http_request(method, url, body, len, hdrs, 20, &r);
	*status = r.status;
	if (r.body != NULL)
		j = json_loads(r.body, 0, NULL);
	free(r.body);
	return j;
}

static json_t *must(long want, const char *method, const char *path, const char *body,
		    const char *token)
{
	long st;
	json_t *j = http_raw(method, path, body, body ? strlen(body) : 0, "application/json",
			     token, &st);
	char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;

	SW_REQUIRE(st == want, "%s %s: HTTP %ld, want %ld: %s", method, path, st, want,
		   t ? t : "(no JSON)");
	free(t);
	return j;
}

static void must_err(long want, const char *method, const char *path, const char *body,
		     const char *token, const char *code, const char *msg)
{
	json_t *j = must(want, method, path, body, token);
	json_t *e = json_object_get(j, "error");

	SW_REQUIRE(code == NULL || strcmp(js(e, "code"), code) == 0, "%s %s: code %s, want %s",
		   method, path, js(e, "code"), code);
	SW_REQUIRE(msg == NULL || strstr(js(e, "message"), msg) != NULL,
		   "%s %s: message '%s' lacks '%s'", method, path, js(e, "message"), msg);
	json_decref(j);
}

/* PUT a policy (YAML) for tenant as file; the answer's status must be want. */
static json_t *apply(long want, const char *tenant, const char *file, const char *yaml,
		     const char *token)
{
	char path[300];
	long st;
	json_t *j;
	char *t;

	snprintf(path, sizeof(path), "/v1/policies/%s?filename=%s", tenant, file);
	j = http_raw("PUT", path, yaml, strlen(yaml), "application/yaml", token, &st);
	t = j ? json_dumps(j, JSON_COMPACT) : NULL;
	SW_REQUIRE(st == want, "PUT %s: HTTP %ld, want %ld: %s", path, st, want, t ? t : "");
	free(t);
	return j;
}

static void apply_fails(const char *yaml, const char *want)
{
	json_t *j = apply(400, "default", "bad.yaml", yaml, admin);
	const char *m = js(json_object_get(j, "error"), "message");

	SW_REQUIRE(strstr(m, want) != NULL, "error '%s' lacks '%s'", m, want);
	json_decref(j);
}

/* ---- Kafka ---------------------------------------------------------------------------- */

static void produce(const char *type, const char *topic, const char *tenant, const char *run,
		    const char *step_id, const char *producer_name, json_t *fields)
{
	sw_test_event_send(reg, producer, topic, run[0] ? run : tenant, type, producer_name,
			   tenant, run, step_id, fields);
	sw_test_kafka_flush(producer, 30000);
}

/* The requesting host's seal key (hex) every request names: copied into
 * its decision, whoever decides (identity seals to it). */
#define HOST_KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
static const char *req_host_key = HOST_KEY;

/* Play sandboxd: a credential.requested; rid filled (the request id). */
static void request_full(const char *tenant, const char *run, const char *name, const char *scope,
			 const char *workflow, const char *step, const char *agent, char *rid)
{
	char sb[SW_UUID_STRLEN], sid[200];

	sw_uuid_v7_str(rid);
	sw_uuid_v7_str(sb);
	snprintf(sid, sizeof(sid), "%s/%s/1", run, step);
	produce("credential.requested", "sagewai.credentials", tenant, run, sid, "sagewai-sandboxd",
		json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}",
			  "request_id", rid, "workflow", workflow, "step", step, "cli_agent", agent,
			  "sandbox_id", sb, "host", "host-a", "name", name, "scope", scope, "reason",
			  "the agent needs it <b>now</b>", "requester", "sagewai-cred/42",
			  "deadline_ms", (json_int_t)(sw_now_us() / 1000 + 600000), "host_key",
			  req_host_key));
}

static void request(const char *tenant, const char *run, const char *name, const char *scope,
		    char *rid)
{
	request_full(tenant, run, name, scope, "site", "build", "claude-code", rid);
}

/* After the first one came, wait 2 s more for any duplicate. */
static size_t count_settled(const char *type, const char *rid)
{
	sw_test_replies_for(&rp, type, rid);
	for (int i = 0; i < 4; i++)
		sw_test_replies_poll(&rp, 500);
	return sw_test_replies_count(&rp, type, rid);
}

static void require_decided(json_t *d, const char *decision, const char *by, const char *rule)
{
	SW_REQUIRE(strcmp(js(d, "decision"), decision) == 0 && strcmp(js(d, "by"), by) == 0,
		   "decided %s by %s (%s), want %s by %s", js(d, "decision"), js(d, "by"),
		   js(d, "reason"), decision, by);
	SW_REQUIRE(rule == NULL || strcmp(js(d, "rule"), rule) == 0, "rule %s, want %s",
		   js(d, "rule"), rule);
}

/* The approval of request rid, as GET /v1/approvals shows it (token). */
static json_t *approval_of(const char *rid, const char *token)
{
	json_t *l = must(200, "GET", "/v1/approvals", NULL, token), *a, *found = NULL;
	size_t i;

	json_array_foreach(json_object_get(l, "approvals"), i, a)
		if (strcmp(js(a, "request_id"), rid) == 0)
			found = json_incref(a);
	json_decref(l);
	return found;
}

static void approval_status(const char *rid, const char *want)
{
	json_t *a = approval_of(rid, admin);

	SW_REQUIRE(a != NULL, "no approval for %s", rid);
	SW_REQUIRE(strcmp(js(a, "status"), want) == 0, "approval %s, want %s", js(a, "status"),
		   want);
	json_decref(a);
}

static void decide(long want, const char *approval, const char *verb, const char *reason,
		   const char *token)
{
	char path[200], body[300];

	snprintf(path, sizeof(path), "/v1/approvals/%s/%s", approval, verb);
	snprintf(body, sizeof(body), "{\"reason\": \"%s\"}", reason);
	json_decref(must(want, "POST", path, body, token));
}

/* A tenant, and a key of it (of user when not NULL), as the scheduler
 * announces them on sagewai.tenants. */
static void announce_key(const char *tid, const char *name, const char *key, const char *user)
{
	uint8_t h[32];
	char hex[65], kid[SW_UUID_STRLEN];

	crypto_hash_sha256(h, (const uint8_t *)key, strlen(key));
	sw_hex_encode(h, 32, hex);
	sw_uuid_v7_str(kid);
	produce("tenant.created", "sagewai.tenants", tid, "", NULL, "sagewai-scheduler",
		json_pack("{s:s, s:s}", "tenant_id", tid, "name", name));
	produce("apikey.created", "sagewai.tenants", tid, "", NULL, "sagewai-scheduler",
		json_pack("{s:s, s:s, s:s, s:s, s:s}", "key_id", kid, "tenant_id", tid, "role",
			  "TENANT", "key_sha256", hex, "user", user ? user : ""));
}

/* Wait until key answers 200 on path (the key event was applied). */
static void key_ready(const char *key, const char *path)
{
	int64_t until = sw_mono_ms() + 30000;
	long st = 0;

	while (sw_mono_ms() < until) {
		json_decref(http_raw("GET", path, NULL, 0, "application/json", key, &st));
		if (st == 200)
			return;
		sw_test_msleep(200);
	}
	SW_REQUIRE(0, "key never accepted on %s (HTTP %ld)", path, st);
}

static const char policy_main[] =
	"# the spec's three examples\n"
	"approvers: [alice]\n"
	"rules:\n"
	"  - id: push-own-org\n"
	"    name: \"GITHUB_TOKEN_*\"\n"
	"    scope: \"github:push:acme/*\"\n"
	"    effect: allow\n"
	"    secret: github-push\n"
	"    reason: pushes to our own organisation\n"
	"  - id: no-admin\n"
	"    scope: \"*admin*\"\n"
	"    effect: deny\n"
	"    reason: no escalation to an admin role\n"
	"  - id: new-api-key\n"
	"    name: \"*_API_KEY\"\n"
	"    effect: ask\n"
	"    deadline: 10m\n"
	"    secret: vendor-keys\n"
	"  - id: quick\n"
	"    name: QUICK_*\n"
	"    effect: ask\n"
	"    deadline: 2s\n";

/* ---- scenarios ---------------------------------------------------------------------- */

static void t_lang(void)
{
	json_t *j;
	char cmd[1200];

	mode = "single_org";
	setup("lang");
	pol_start();
	apply_fails("rules:\n  - name: X\n    effect: maybe\n", "bad.yaml:3:13: effect: allow, deny or ask");
	apply_fails("rules:\n  - name: X\n    effect: allow\n    colour: red\n",
		    "bad.yaml:4:5: unknown key 'colour'");
	apply_fails("rules:\n  - name: X\n    effect: ask\n    deadline: 3d\n", "bad.yaml:4:15:");
	apply_fails("rules:\n  - name: X\n    effect: ask\n    deadline: 25h\n", "at most 24h");
	apply_fails("rules: [\n", "bad.yaml:2:1:");
	apply_fails("rules:\n  - &a {name: X, effect: deny}\n", "anchors and aliases");
	apply_fails("rules:\n  - name: X\n    effect: deny\n    tenant: acme\n",
		    "bad.yaml:4:13: tenant: only the operator's _system policy");
	apply_fails("rules:\n  - id: a\n    name: X\n    effect: deny\n  - id: a\n    name: Y\n"
		    "    effect: deny\n",
		    "bad.yaml:5:5: duplicate rule id 'a'");
	apply_fails("rules:\n  - name: \"[A-Z\"\n    effect: deny\n", "unclosed [");
	apply_fails("rulez: []\n", "bad.yaml:1:1: unknown key 'rulez'");
	apply_fails("rules:\n  - name: X\n    effect: deny\n    secret: s\n", "a deny rule grants");
	/* anti-pattern 4: allow-all, in its several spellings */
	apply_fails("rules:\n  - name: \"*\"\n    effect: allow\n",
		    "bad.yaml:2:5: rule bad.yaml:2 allows every credential name in every scope");
	apply_fails("rules:\n  - id: all\n    name: \"*\"\n    scope: \"*\"\n    effect: allow\n",
		    "anti-pattern 4");
	apply_fails("rules:\n  - id: all\n    effect: allow\n    workflow: deploy\n",
		    "rule all allows every credential");
	apply_fails("rules:\n  - id: all\n    name: \"[A-Z_]*\"\n    scope: \"**\"\n    effect: allow\n",
		    "rule all allows every credential");
	apply_fails("rules:\n  - id: all\n    name: \"?*\"\n    scope: \"?*\"\n    effect: allow\n",
		    "rule all allows every credential");
	apply_fails("rules:\n  - id: all\n    name: \"*\"\n    effect: allow\n    override: allow-all\n"
		    "    justification: short\n",
		    "needs a justification");
	/* the override, accepted and audited */
	j = apply(200, "default", "open.yaml",
		  "rules:\n  - id: all\n    name: \"*\"\n    effect: allow\n    override: allow-all\n"
		  "    justification: a throw-away lab tenant with dummy credentials only\n",
		  admin);
	SW_REQUIRE(json_array_size(json_object_get(j, "overrides")) == 1, "override not listed");
	json_decref(j);
	snprintf(cmd, sizeof(cmd),
		 "grep -F 'override accepted' %s | grep -qF 'throw-away lab tenant'", log_path);
	SW_REQUIRE(system(cmd) == 0, "the override is not in the log");
	SW_REQUIRE(sw_test_pg_long(db_dsn, "SELECT count(*) FROM policy.policy_history WHERE"
					   " jsonb_array_length(overrides) = 1") == 1,
		   "the override is not in policy_history");
	/* a narrower policy replaces it; GET and test */
	j = apply(200, "default", "main.yaml", policy_main, admin);
	SW_REQUIRE(json_integer_value(json_object_get(j, "version")) == 2, "version not 2");
	json_decref(j);
	j = apply(200, "default", "main.yaml", policy_main, admin); /* the same again: no new version */
	SW_REQUIRE(json_integer_value(json_object_get(j, "version")) == 2, "re-apply counted");
	json_decref(j);
	j = must(200, "GET", "/v1/policies/default", NULL, admin);
	SW_REQUIRE(strcmp(js(j, "yaml"), policy_main) == 0 &&
		   json_array_size(json_object_get(j, "rules")) == 4,
		   "GET does not give the policy back");
	json_decref(j);
	j = must(200, "POST", "/v1/policies/default/test",
		 "{\"name\": \"GITHUB_TOKEN_SITE\", \"scope\": \"github:push:acme/site\"}", admin);
	SW_REQUIRE(strcmp(js(j, "decision"), "allow") == 0 &&
		   strcmp(js(j, "rule"), "push-own-org") == 0 &&
		   strcmp(js(j, "secret"), "github-push") == 0,
		   "test: %s by %s", js(j, "decision"), js(j, "rule"));
	json_decref(j);
	j = must(200, "POST", "/v1/policies/default/test",
		 "{\"name\": \"GITHUB_TOKEN_SITE\", \"scope\": \"github:push:evil/site\"}", admin);
	SW_REQUIRE(strcmp(js(j, "decision"), "deny") == 0 && strcmp(js(j, "by"), "no_rule") == 0,
		   "test: %s by %s", js(j, "decision"), js(j, "by"));
	json_decref(j);
	j = must(200, "POST", "/v1/policies/default/test",
		 "{\"name\": \"AWS_TOKEN\", \"scope\": \"aws:iam:admin\"}", admin);
	SW_REQUIRE(strcmp(js(j, "rule"), "no-admin") == 0, "test: rule %s", js(j, "rule"));
	json_decref(j);
	j = must(200, "POST", "/v1/policies/default/test", "{\"name\": \"STRIPE_API_KEY\"}", admin);
	SW_REQUIRE(strcmp(js(j, "decision"), "ask") == 0 &&
		   json_integer_value(json_object_get(j, "deadline_s")) == 600,
		   "test: %s", js(j, "decision"));
	json_decref(j);
	/* the operator's _system policy: matches on tenant, evaluated first */
	j = apply(400, "_system", "system.yaml", "approvers: [bob]\nrules: []\n", admin);
	SW_REQUIRE(strstr(js(json_object_get(j, "error"), "message"), "system.yaml:1:13:") != NULL,
		   "_system approvers: %s", js(json_object_get(j, "error"), "message"));
	json_decref(j);
	json_decref(apply(200, "_system", "system.yaml",
			  "rules:\n  - id: freeze\n    tenant: default\n    name: \"GITHUB_*\"\n"
			  "    effect: deny\n    reason: frozen\n",
			  admin));
	j = must(200, "POST", "/v1/policies/default/test",
		 "{\"name\": \"GITHUB_TOKEN_SITE\", \"scope\": \"github:push:acme/site\"}", admin);
	SW_REQUIRE(strcmp(js(j, "rule"), "freeze") == 0 && strcmp(js(j, "level"), "system") == 0,
		   "system rule not first: %s", js(j, "rule"));
	json_decref(j);
	must_err(404, "GET", "/v1/policies/nosuch", NULL, admin, "not_found", NULL);
	finish();
}

static void t_decide(void)
{
	char run[80], r1[SW_UUID_STRLEN], r2[SW_UUID_STRLEN], r3[SW_UUID_STRLEN];
	char r4[SW_UUID_STRLEN], r5[SW_UUID_STRLEN], aid[SW_UUID_STRLEN];
	json_t *d, *p, *a;

	mode = "single_org";
	setup("decide");
	pol_start();
	snprintf(run, sizeof(run), "%s-r1", prefix);
	/* no policy at all: denied, no_rule */
	request("default", run, "GITHUB_TOKEN_SITE", "github:push:acme/site", r1);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r1), "deny", "no_rule", "");
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	/* allow, with the rule's secret: the service remembers "no policy"
	 * from the request before, and that decision from memory is voided by
	 * the policy applied since (never a stale deny) */
	request("default", run, "GITHUB_TOKEN_SITE", "github:push:acme/site", r1);
	d = sw_test_replies_for(&rp, "credential.decided", r1);
	require_decided(d, "allow", "rule", "push-own-org");
	SW_REQUIRE(sw_test_metric_get(pol_port, "sagewai_policy_stale_decisions_total") >= 1,
		   "the decision from memory was not voided by the policy applied since");
	SW_REQUIRE(strcmp(js(d, "secret"), "github-push") == 0 &&
		   strcmp(js(d, "name"), "GITHUB_TOKEN_SITE") == 0 &&
		   strcmp(js(d, "step"), "build") == 0 &&
		   strcmp(js(d, "host_key"), HOST_KEY) == 0 &&
		   strcmp(js(json_object_get(d, "header"), "run_id"), run) == 0,
		   "decided fields wrong");
	/* deny */
	request("default", run, "AWS_TOKEN", "aws:iam:role/admin", r2);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r2), "deny", "rule",
			"no-admin");
	/* no rule */
	request("default", run, "GITHUB_TOKEN_SITE", "github:push:other/site", r3);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r3), "deny", "no_rule", "");
	/* ask, then a person approves */
	request("default", run, "STRIPE_API_KEY", "stripe:charges", r4);
	p = sw_test_replies_for(&rp, "credential.pending", r4);
	SW_REQUIRE(strcmp(js(p, "rule"), "new-api-key") == 0 &&
		   json_integer_value(json_object_get(p, "deadline_ms")) > sw_now_us() / 1000,
		   "pending fields wrong");
	snprintf(aid, sizeof(aid), "%s", js(p, "approval_id"));
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.decided", r4) == 0,
		   "an ask was decided at once");
	a = approval_of(r4, admin);
	SW_REQUIRE(a != NULL && strcmp(js(a, "status"), "pending") == 0 &&
		   strcmp(js(a, "name"), "STRIPE_API_KEY") == 0 &&
		   strcmp(js(a, "request_reason"), "the agent needs it <b>now</b>") == 0,
		   "the approval is not listed pending");
	json_decref(a);
	decide(200, aid, "approve", "new vendor, agreed with finance", admin);
	d = sw_test_replies_for(&rp, "credential.decided", r4);
	require_decided(d, "allow", "human", "new-api-key");
	SW_REQUIRE(strcmp(js(d, "approver"), "admin") == 0 &&
		   strcmp(js(d, "secret"), "vendor-keys") == 0 &&
		   strcmp(js(d, "host_key"), HOST_KEY) == 0 &&
		   strcmp(js(d, "reason"), "new vendor, agreed with finance") == 0,
		   "approver %s reason %s", js(d, "approver"), js(d, "reason"));
	approval_status(r4, "approved");
	/* a second decision: 409; a bad verb 404, an unknown approval 404 */
	decide(409, aid, "deny", "too late", admin);
	must_err(404, "POST", "/v1/approvals/00000000-0000-7000-8000-000000000000/approve",
		 "{\"reason\": \"x\"}", admin, "not_found", NULL);
	/* ask, then a person denies */
	request("default", run, "OTHER_API_KEY", "x", r5);
	snprintf(aid, sizeof(aid), "%s",
		 js(sw_test_replies_for(&rp, "credential.pending", r5), "approval_id"));
	decide(200, aid, "deny", "not today", admin);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r5), "deny", "human",
			"new-api-key");
	SW_REQUIRE(strcmp(js(sw_test_replies_for(&rp, "credential.decided", r5), "secret"), "") ==
		       0,
		   "a denial names a secret");
	approval_status(r5, "denied");
	/* the same request consumed twice (sandboxd re-sent it): decided once */
	{
		char sb[SW_UUID_STRLEN], rid[SW_UUID_STRLEN], sid[200];
		json_t *f;

		sw_uuid_v7_str(rid);
		sw_uuid_v7_str(sb);
		snprintf(sid, sizeof(sid), "%s/build/1", run);
		f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}",
			      "request_id", rid, "workflow", "site", "step", "build", "cli_agent",
			      "codex", "sandbox_id", sb, "host", "host-a", "name", "GITHUB_TOKEN_X",
			      "scope", "github:push:acme/x", "reason", "r", "requester", "c/1",
			      "deadline_ms", (json_int_t)(sw_now_us() / 1000 + 60000));
		produce("credential.requested", "sagewai.credentials", "default", run, sid,
			"sagewai-sandboxd", json_incref(f));
		produce("credential.requested", "sagewai.credentials", "default", run, sid,
			"sagewai-sandboxd", f);
		SW_REQUIRE(count_settled("credential.decided", rid) == 1,
			   "a request consumed twice was decided %zu times",
			   sw_test_replies_count(&rp, "credential.decided", rid));
	}
	SW_REQUIRE(count_settled("credential.decided", r4) == 1, "r4 decided twice");
	SW_REQUIRE(sw_test_pg_long(db_dsn, "SELECT count(*) FROM policy.requests WHERE"
					   " NOT decided_sent OR (pending_us IS NOT NULL AND NOT pending_sent)")
			   == 0,
		   "events not marked sent");
	finish();
}

static void t_deadline(void)
{
	char run[80], rid[SW_UUID_STRLEN];
	json_t *d;
	int64_t t0;

	mode = "single_org";
	setup("deadline");
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	snprintf(run, sizeof(run), "%s-r1", prefix);
	t0 = sw_mono_ms();
	request("default", run, "QUICK_TOKEN", "q", rid);
	sw_test_replies_for(&rp, "credential.pending", rid);
	d = sw_test_replies_for(&rp, "credential.decided", rid);
	require_decided(d, "deny", "deadline", "quick");
	SW_REQUIRE(sw_mono_ms() - t0 >= 1500, "denied before its deadline");
	approval_status(rid, "expired");
	SW_REQUIRE(count_settled("credential.decided", rid) == 1, "decided twice");
	finish();
}

static void t_withdraw(void)
{
	char run[80], run2[80], r1[SW_UUID_STRLEN], r2[SW_UUID_STRLEN], r3[SW_UUID_STRLEN];
	char aid[SW_UUID_STRLEN];
	json_t *d;

	mode = "single_org";
	setup("withdraw");
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	snprintf(run, sizeof(run), "%s-r1", prefix);
	snprintf(run2, sizeof(run2), "%s-r2", prefix);
	/* credential.withdrawn (the client gave up) */
	request("default", run, "STRIPE_API_KEY", "s", r1);
	snprintf(aid, sizeof(aid), "%s",
		 js(sw_test_replies_for(&rp, "credential.pending", r1), "approval_id"));
	produce("credential.withdrawn", "sagewai.credentials", "default", run, NULL,
		"sagewai-sandboxd",
		json_pack("{s:s, s:s}", "request_id", r1, "reason", "timeout: the client stopped"));
	d = sw_test_replies_for(&rp, "credential.decided", r1);
	require_decided(d, "deny", "withdrawn", "new-api-key");
	SW_REQUIRE(strstr(js(d, "reason"), "timeout") != NULL, "reason %s", js(d, "reason"));
	approval_status(r1, "withdrawn");
	decide(409, aid, "approve", "late", admin);
	/* run.finished withdraws every pending ask of the run */
	request("default", run2, "STRIPE_API_KEY", "s", r2);
	sw_test_replies_for(&rp, "credential.pending", r2);
	produce("run.finished", "sagewai.runs", "default", run2, NULL, "sagewai-scheduler",
		json_pack("{s:s}", "status", "CANCELLED"));
	require_decided(sw_test_replies_for(&rp, "credential.decided", r2), "deny", "withdrawn",
			NULL);
	approval_status(r2, "withdrawn");
	/* a request of a finished run is void at once */
	request("default", run2, "STRIPE_API_KEY", "s", r3);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r3), "deny", "withdrawn",
			NULL);
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.pending", r3) == 0,
		   "a void request was asked");
	/* 40 runs finish at once, two of them with an ask pending: every run
	 * recorded, both asks withdrawn */
	{
		char runs[40][80], ra[SW_UUID_STRLEN], rb[SW_UUID_STRLEN], rc[SW_UUID_STRLEN];
		char q[200], forged[80], nojit[3][80];
		double skipped0 =
		    sw_test_metric_get(pol_port, "sagewai_policy_finished_skipped_total");
		int i;

		if (skipped0 < 0)
			skipped0 = 0; /* none yet: not shown */

		for (i = 0; i < 40; i++)
			snprintf(runs[i], sizeof(runs[i]), "%s-burst-%d", prefix, i);
		snprintf(forged, sizeof(forged), "%s-forged", prefix);
		request("default", runs[7], "STRIPE_API_KEY", "s", ra);
		request("default", runs[30], "STRIPE_API_KEY", "s", rb);
		sw_test_replies_for(&rp, "credential.pending", ra);
		sw_test_replies_for(&rp, "credential.pending", rb);
		/* first, in the partition of the last of them, one another
		 * producer claims: ignored */
		sw_test_event_send(reg, producer, "sagewai.runs", runs[39], "run.finished",
				   "sagewai-sandboxd", "default", forged, NULL,
				   json_pack("{s:s}", "status", "SUCCEEDED"));
		/* the runs say their modes (run.finished.modes): with a
		 * cli_agent_jit step, or none given (a writer before the
		 * field), recorded; without one, not (none of its steps could
		 * ask) */
		for (i = 0; i < 40; i++)
			sw_test_event_send(reg, producer, "sagewai.runs", runs[i], "run.finished",
					   "sagewai-scheduler", "default", runs[i], NULL,
					   i % 3 == 1 ? json_pack("{s:s, s:[s, s]}", "status",
								  "SUCCEEDED", "modes",
								  "in_process", "cli_agent_jit")
						      : json_pack("{s:s}", "status", "SUCCEEDED"));
		for (i = 0; i < 3; i++) {
			snprintf(nojit[i], sizeof(nojit[i]), "%s-nojit-%d", prefix, i);
			sw_test_event_send(reg, producer, "sagewai.runs", nojit[i], "run.finished",
					   "sagewai-scheduler", "default", nojit[i], NULL,
					   json_pack("{s:s, s:[s, s]}", "status", "FAILED",
						     "modes", "in_process", "cli_agent"));
		}
		sw_test_kafka_flush(producer, 30000);
		/* an ask of a run whose end is gathered with the others, sent
		 * right behind them: before the end is recorded it is withdrawn
		 * by it, after it it is void; never left pending */
		request("default", runs[11], "STRIPE_API_KEY", "s", rc);
		require_decided(sw_test_replies_for(&rp, "credential.decided", ra), "deny",
				"withdrawn", NULL);
		require_decided(sw_test_replies_for(&rp, "credential.decided", rb), "deny",
				"withdrawn", NULL);
		require_decided(sw_test_replies_for(&rp, "credential.decided", rc), "deny",
				"withdrawn", NULL);
		snprintf(
		    q, sizeof(q),
		    "SELECT count(*) FROM policy.finished_runs WHERE run_id LIKE '%s-burst-%%'",
		    prefix);
		for (i = 0; i < 500 && sw_test_pg_long(db_dsn, q) != 40; i++)
			sw_test_msleep(10);
		SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 40, "%ld of 40 finished runs recorded",
			   sw_test_pg_long(db_dsn, q));
		snprintf(q, sizeof(q),
			 "SELECT count(*) FROM policy.finished_runs WHERE run_id = '%s'", forged);
		SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 0,
			   "run.finished of another producer recorded");
		for (i = 0; i < 500 &&
			    sw_test_metric_get(pol_port, "sagewai_policy_finished_skipped_total") <
				skipped0 + 3;
		     i++)
			sw_test_msleep(10);
		SW_REQUIRE(sw_test_metric_get(pol_port, "sagewai_policy_finished_skipped_total") ==
			       skipped0 + 3,
			   "%.0f runs without a cli_agent_jit step skipped, want 3",
			   sw_test_metric_get(pol_port, "sagewai_policy_finished_skipped_total") -
			       skipped0);
		snprintf(
		    q, sizeof(q),
		    "SELECT count(*) FROM policy.finished_runs WHERE run_id LIKE '%s-nojit-%%'",
		    prefix);
		SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 0,
			   "the end of a run without a cli_agent_jit step recorded");
	}
	/* a withdrawal that arrives before its request */
	{
		char r4[SW_UUID_STRLEN], sb[SW_UUID_STRLEN], run3[80];

		snprintf(run3, sizeof(run3), "%s-r3", prefix);
		sw_uuid_v7_str(r4);
		sw_uuid_v7_str(sb);
		produce("credential.withdrawn", "sagewai.credentials", "default", run3, NULL,
			"sagewai-sandboxd",
			json_pack("{s:s, s:s}", "request_id", r4, "reason", "sandbox_gone"));
		produce("credential.requested", "sagewai.credentials", "default", run3, "x/s/1",
			"sagewai-sandboxd",
			json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}",
				  "request_id", r4, "workflow", "w", "step", "s", "cli_agent", "codex",
				  "sandbox_id", sb, "host", "h", "name", "GITHUB_TOKEN_X", "scope",
				  "github:push:acme/x", "reason", "r", "requester", "c/1",
				  "deadline_ms", (json_int_t)(sw_now_us() / 1000 + 60000)));
		require_decided(sw_test_replies_for(&rp, "credential.decided", r4), "deny",
				"withdrawn", NULL);
	}
	finish();
}

static void t_kill9(void)
{
	char run[80], r1[SW_UUID_STRLEN], r2[SW_UUID_STRLEN], r3[SW_UUID_STRLEN];
	char aid[SW_UUID_STRLEN];

	mode = "single_org";
	setup("kill9");
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	snprintf(run, sizeof(run), "%s-r1", prefix);
	request("default", run, "STRIPE_API_KEY", "s", r1);
	snprintf(aid, sizeof(aid), "%s",
		 js(sw_test_replies_for(&rp, "credential.pending", r1), "approval_id"));
	request("default", run, "QUICK_KEY", "s", r3);
	sw_test_replies_for(&rp, "credential.pending", r3);
	sw_test_proc_stop(&pol_pid, SIGKILL, "sagewai-policy");
	/* while it is down: a new request, and r3's deadline passes */
	request("default", run, "GITHUB_TOKEN_SITE", "github:push:acme/site", r2);
	sw_test_msleep(3000);
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.decided", r1) == 0 &&
		       sw_test_replies_count(&rp, "credential.decided", r3) == 0,
		   "decided while down");
	pol_start();
	require_decided(sw_test_replies_for(&rp, "credential.decided", r2), "allow", "rule",
			"push-own-org");
	require_decided(sw_test_replies_for(&rp, "credential.decided", r3), "deny", "deadline",
			"quick");
	decide(200, aid, "approve", "after the restart", admin);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r1), "allow", "human",
			NULL);
	SW_REQUIRE(count_settled("credential.decided", r1) == 1, "r1 decided twice");
	SW_REQUIRE(count_settled("credential.decided", r2) == 1, "r2 decided twice");
	SW_REQUIRE(count_settled("credential.decided", r3) == 1, "r3 decided twice");
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.pending", r1) == 1, "r1 asked twice");
	finish();
}

/*
 * A run.finished that withdraws nothing commits without waiting for the
 * disk, and its offset waits for the WAL to be flushed past it. PostgreSQL
 * crashes (immediate stop) right after the row shows, the WAL writer slowed
 * to 10 s so that nothing else flushes it: the service stops (its store
 * lost PostgreSQL) or, had the WAL been flushed, goes on; started again it
 * has the run as finished, consuming run.finished again if the row was
 * lost, so a request of the run is void.
 */
static void t_pgcrash(void)
{
	char run[80], q[300], r1[SW_UUID_STRLEN];
	long n = 0;
	int i;

	mode = "single_org";
	setup("pgcrash");
	PQclear(sw_test_pg_exec(db_dsn, "ALTER SYSTEM SET wal_writer_delay = '10s'"));
	PQclear(sw_test_pg_exec(db_dsn, "SELECT pg_reload_conf()"));
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	snprintf(run, sizeof(run), "%s-r1", prefix);
	produce("run.finished", "sagewai.runs", "default", run, NULL, "sagewai-scheduler",
		json_pack("{s:s}", "status", "SUCCEEDED"));
	snprintf(q, sizeof(q), "SELECT count(*) FROM policy.finished_runs WHERE run_id = '%s'",
		 run);
	for (i = 0; i < 3000 && (n = sw_test_pg_long(db_dsn, q)) == 0; i++)
		sw_test_msleep(10);
	SW_REQUIRE(n == 1, "run.finished not recorded");
	sw_test_pg_crash();
	for (i = 0; i < 100 && sw_test_proc_running(pol_pid); i++)
		sw_test_msleep(100);
	if (sw_test_proc_running(pol_pid))
		pol_stop();
	else
		pol_pid = -1;
	printf("%s: the row %s the crash\n", prefix,
	       sw_test_pg_long(db_dsn, q) == 1 ? "survived" : "was lost in");
	pol_start();
	request("default", run, "STRIPE_API_KEY", "s", r1);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r1), "deny", "withdrawn",
			NULL);
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.pending", r1) == 0,
		   "a request of a finished run was "
		   "asked");
	SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 1, "the run is not recorded as finished");
	PQclear(sw_test_pg_exec(db_dsn, "ALTER SYSTEM RESET wal_writer_delay"));
	PQclear(sw_test_pg_exec(db_dsn, "SELECT pg_reload_conf()"));
	finish();
}

static void t_tenants(void)
{
	char ta[SW_UUID_STRLEN], tb[SW_UUID_STRLEN], ka[80], kb[80], ka_alice[80], ka_carol[80];
	char run[80], rid[SW_UUID_STRLEN], aid[SW_UUID_STRLEN], path[300];
	uint8_t r[16];
	json_t *j, *d;

	setup("tenants");
	pol_start();
	sw_uuid_v7_str(ta);
	sw_uuid_v7_str(tb);
	randombytes_buf(r, sizeof(r));
	snprintf(ka, sizeof(ka), "swk_a%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
	snprintf(kb, sizeof(kb), "swk_b%02x%02x%02x%02x%02x%02x", r[6], r[7], r[8], r[9], r[0], r[1]);
	snprintf(ka_alice, sizeof(ka_alice), "swk_al%02x%02x%02x%02x", r[10], r[11], r[12], r[13]);
	snprintf(ka_carol, sizeof(ka_carol), "swk_ca%02x%02x%02x%02x", r[14], r[15], r[2], r[3]);
	announce_key(ta, "acme", ka, NULL);
	announce_key(ta, "acme", ka_alice, "alice");
	announce_key(ta, "acme", ka_carol, "carol");
	announce_key(tb, "globex", kb, NULL);
	/* no credential: 401 */
	must_err(401, "GET", "/v1/approvals", NULL, NULL, "unauthorized", NULL);
	must_err(401, "GET", "/v1/approvals", NULL, "swk_unknown", "unauthorized", NULL);
	/* wait until the keys are applied */
	key_ready(ka, "/v1/approvals");
	key_ready(ka_carol, "/v1/approvals");
	key_ready(kb, "/v1/approvals");
	/* only the tenant-wide key applies the tenant's policy */
	json_decref(apply(403, "acme", "p.yaml", policy_main, ka_alice));
	json_decref(apply(404, "globex", "p.yaml", policy_main, ka));
	json_decref(apply(404, "_system", "p.yaml", "rules: []\n", ka));
	json_decref(apply(200, "acme", "p.yaml", policy_main, ka));
	json_decref(apply(200, tb, "p.yaml", "rules: []\n", admin));
	snprintf(path, sizeof(path), "/v1/policies/%s", ta);
	json_decref(must(200, "GET", path, NULL, ka_carol)); /* by id */
	must_err(404, "GET", "/v1/policies/acme", NULL, kb, "not_found", NULL);
	must_err(404, "POST", "/v1/policies/acme/test", "{\"name\": \"X\"}", kb, "not_found", NULL);
	/* an ask of tenant A */
	snprintf(run, sizeof(run), "%s-r1", prefix);
	request(ta, run, "STRIPE_API_KEY", "s", rid);
	snprintf(aid, sizeof(aid), "%s",
		 js(sw_test_replies_for(&rp, "credential.pending", rid), "approval_id"));
	/* B sees nothing of it: 404 exactly as a missing one */
	j = must(200, "GET", "/v1/approvals", NULL, kb);
	SW_REQUIRE(json_array_size(json_object_get(j, "approvals")) == 0, "B sees A's approvals");
	json_decref(j);
	snprintf(path, sizeof(path), "/v1/approvals/%s", aid);
	must_err(404, "GET", path, NULL, kb, "not_found", NULL);
	json_decref(must(200, "GET", path, NULL, ka));
	must_err(404, "GET", "/v1/approvals?tenant=acme", NULL, kb, "not_found", NULL);
	decide(404, aid, "approve", "from B", kb);
	/* A's keys: tenant-wide and carol are not approvers (403); alice is */
	decide(403, aid, "approve", "tenant-wide", ka);
	decide(403, aid, "approve", "carol", ka_carol);
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.decided", rid) == 0,
		   "decided by a non-approver");
	decide(200, aid, "approve", "alice agrees", ka_alice);
	d = sw_test_replies_for(&rp, "credential.decided", rid);
	require_decided(d, "allow", "human", NULL);
	SW_REQUIRE(strncmp(js(d, "approver"), "user:alice key:", 15) == 0, "approver %s",
		   js(d, "approver"));
	/* the admin sees every tenant, or one by name */
	j = must(200, "GET", "/v1/approvals?tenant=acme", NULL, admin);
	SW_REQUIRE(json_array_size(json_object_get(j, "approvals")) == 1, "admin ?tenant=acme");
	json_decref(j);
	finish();
}

static void t_hostile(void)
{
	static const char garbage[] = "\xc3\x01not an avro event at all";
	char reason[256], run[80], rid[SW_UUID_STRLEN], *big;
	size_t n;
	long st;

	mode = "single_org";
	setup("hostile");
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	/* oversized body: 413 before the handler */
	n = 300u << 10;
	big = malloc(n);
	SW_CHECK(big != NULL);
	memset(big, 'a', n);
	json_decref(http_raw("PUT", "/v1/policies/default", big, n, "application/yaml", admin, &st));
	SW_REQUIRE(st == 413, "oversized policy: HTTP %ld", st);
	json_decref(http_raw("POST", "/v1/policies/default/test", big, n, "application/json", admin,
			     &st));
	SW_REQUIRE(st == 413, "oversized test: HTTP %ld", st);
	free(big);
	/* bad JSON, wrong shapes */
	must_err(400, "POST", "/v1/policies/default/test", "{\"name\": ", admin, "bad_json", NULL);
	must_err(400, "POST", "/v1/policies/default/test", "[1]", admin, "bad_request", NULL);
	must_err(400, "POST", "/v1/policies/default/test", "{\"name\": 5}", admin, "bad_request",
		 NULL);
	must_err(400, "POST", "/v1/policies/default/test", "{\"name\": \"lower\"}", admin,
		 "bad_request", "environment key");
	must_err(400, "POST", "/v1/approvals/00000000-0000-7000-8000-000000000000/approve",
		 "{\"reason\": \"\"}", admin, "bad_request", NULL);
	must_err(400, "POST", "/v1/approvals/00000000-0000-7000-8000-000000000000/approve",
		 "{\"reason\": \"x\", \"extra\": 1}", admin, "bad_request", NULL);
	must_err(400, "POST", "/v1/approvals/00000000-0000-7000-8000-000000000000/deny", "nope",
		 admin, "bad_json", NULL);
	/* a NUL in a policy, binary junk */
	json_decref(http_raw("PUT", "/v1/policies/default", "rules: []\n\0x", 12,
			     "application/yaml", admin, &st));
	SW_REQUIRE(st == 400, "NUL in a policy: HTTP %ld", st);
	json_decref(http_raw("PUT", "/v1/policies/default", "\xff\xfe\x00\x01", 4,
			     "application/yaml", admin, &st));
	SW_REQUIRE(st == 400, "binary policy: HTTP %ld", st);
	/* paths and methods */
	must_err(404, "GET", "/v1/approvals/not-a-uuid", NULL, admin, "not_found", NULL);
	must_err(404, "GET", "/v1/approvals/..%2f..%2fetc", NULL, admin, "not_found", NULL);
	must_err(404, "GET", "/v1/policies/ACME", NULL, admin, "not_found", NULL);
	must_err(404, "GET", "/v1/policies/a%00b", NULL, admin, "not_found", NULL);
	must_err(405, "DELETE", "/v1/policies/default", NULL, admin, NULL, NULL);
	must_err(405, "POST", "/v1/approvals", "{}", admin, NULL, NULL);
	must_err(404, "GET", "/approvals/../../etc/passwd", NULL, NULL, NULL, NULL);
	must_err(401, "GET", "/v1/approvals", NULL, "x", "unauthorized", NULL);
	must_err(400, "GET", "/v1/approvals?state=weird", NULL, admin, "bad_request", NULL);
	/* garbage on sagewai.credentials: dead-lettered */
	sw_test_kafka_deliver(producer, "sagewai.credentials", prefix, garbage, sizeof(garbage) - 1);
	SW_REQUIRE(sw_test_kafka_deadletter_find(prefix, garbage, sizeof(garbage) - 1, reason,
						 sizeof(reason)),
		   "garbage not dead-lettered");
	/* malformed requests: denied with the reason */
	snprintf(run, sizeof(run), "%s-r1", prefix);
	request("default", run, "lower-case", "s", rid);
	{
		json_t *d = sw_test_replies_for(&rp, "credential.decided", rid);

		require_decided(d, "deny", "no_rule", "");
		SW_REQUIRE(strstr(js(d, "reason"), "malformed") != NULL, "reason %s",
			   js(d, "reason"));
	}
	/* a host key that is not 32 bytes: the rule would allow, yet it is denied */
	req_host_key = "0123456789abcdef0123456789abcdef";
	request("default", run, "GITHUB_TOKEN_SITE", "github:push:acme/site", rid);
	req_host_key = HOST_KEY;
	{
		json_t *d = sw_test_replies_for(&rp, "credential.decided", rid);

		require_decided(d, "deny", "no_rule", "");
		SW_REQUIRE(strstr(js(d, "reason"), "host_key") != NULL, "reason %s",
			   js(d, "reason"));
	}
	/* still serving */
	request("default", run, "GITHUB_TOKEN_SITE", "github:push:acme/site", rid);
	require_decided(sw_test_replies_for(&rp, "credential.decided", rid), "allow", "rule",
			NULL);
	/* the page: strict CSP, no inline script */
	{
		char url[200];
		struct sw_test_http_reply r = {0};

		snprintf(url, sizeof(url), "http://127.0.0.1:%d/approvals", pol_port);
		sw_test_http_request("GET", url, NULL, 0, NULL, 10, &r);
		SW_REQUIRE(r.status == 200 && r.body != NULL && strstr(r.body, "<script>") == NULL &&
			   strstr(r.body, "app.js") != NULL,
			   "page: HTTP %ld", r.status);
		free(r.body);
	}
	finish();
}


/* sagewai ARGS... with the policy service's URL and the admin token. */
static void sagewai(struct cli_out *o, int want, const char *const *args)
{
	char bin[600], url[200], tok[120];
	char *envp[] = {url, tok, "PATH=/usr/bin:/bin", NULL};

	snprintf(bin, sizeof(bin), "%s/tools/cli/sagewai", getenv("SW_BUILD_DIR"));
	snprintf(url, sizeof(url), "SAGEWAI_POLICY_URL=http://127.0.0.1:%d", pol_port);
	snprintf(tok, sizeof(tok), "SAGEWAI_ADMIN_TOKEN=%s", admin);
	cli_runv(bin, args, envp, NULL, o);
	if (o->status != want)
		cli_out_dump(args[0], o);
	SW_REQUIRE(o->status == want, "sagewai %s %s: exit %d, want %d", args[0],
		   args[1] ? args[1] : "", o->status, want);
	SW_REQUIRE(strstr(o->out, admin) == NULL && strstr(o->err, admin) == NULL,
		   "the CLI printed the token");
}

static void t_cli(void)
{
	char good[700], bad[700], run[80], rid[SW_UUID_STRLEN], aid[SW_UUID_STRLEN];
	struct cli_out o;
	json_t *j;

	mode = "single_org";
	setup("cli");
	pol_start();
	snprintf(good, sizeof(good), "%s/site-policy.yaml", dir);
	snprintf(bad, sizeof(bad), "%s/bad-policy.yaml", dir);
	write_file(good, policy_main, 0644);
	write_file(bad, "rules:\n  - name: X\n    effect: perhaps\n", 0644);
	{
		const char *a[] = {"policy", "apply", bad, NULL};

		sagewai(&o, 1, a);
		SW_REQUIRE(strstr(o.err, "bad-policy.yaml:3:13: effect: allow, deny or ask") != NULL,
			   "stderr: %s", o.err);
		cli_out_free(&o);
	}
	{
		const char *a[] = {"policy", "apply", good, NULL};

		sagewai(&o, 0, a);
		SW_REQUIRE(strstr(o.out, "version 1, 4 rules, 1 approvers") != NULL, "%s", o.out);
		cli_out_free(&o);
	}
	{
		const char *a[] = {"policy", "show", NULL};

		sagewai(&o, 0, a);
		SW_REQUIRE(strstr(o.out, "# tenant default, version 1, file site-policy.yaml") !=
				   NULL && strstr(o.out, policy_main) != NULL,
			   "%s", o.out);
		cli_out_free(&o);
	}
	{
		const char *a[] = {"policy", "test", "--request",
				   "{\"name\": \"GITHUB_TOKEN_A\", \"scope\": \"github:push:acme/a\"}",
				   NULL};

		sagewai(&o, 0, a);
		SW_REQUIRE(strstr(o.out, "allow by rule push-own-org (tenant policy, line 4),"
					 " secret github-push") != NULL,
			   "%s", o.out);
		cli_out_free(&o);
	}
	{
		const char *a[] = {"policy", "test", "--json", "--request", "{\"name\": \"X_API_KEY\"}",
				   NULL};

		sagewai(&o, 0, a);
		j = json_loads(o.out, 0, NULL);
		SW_REQUIRE(j != NULL && strcmp(js(j, "decision"), "ask") == 0, "%s", o.out);
		json_decref(j);
		cli_out_free(&o);
	}
	snprintf(run, sizeof(run), "%s-r1", prefix);
	request("default", run, "STRIPE_API_KEY", "stripe:charges", rid);
	snprintf(aid, sizeof(aid), "%s",
		 js(sw_test_replies_for(&rp, "credential.pending", rid), "approval_id"));
	{
		const char *a[] = {"approvals", "list", NULL};

		sagewai(&o, 0, a);
		SW_REQUIRE(strstr(o.out, aid) != NULL && strstr(o.out, "STRIPE_API_KEY") != NULL &&
			   strstr(o.out, "pending") != NULL && strstr(o.out, "left") != NULL,
			   "%s", o.out);
		cli_out_free(&o);
	}
	{
		const char *a[] = {"approvals", "approve", aid, NULL};

		sagewai(&o, 2, a); /* no --reason */
		cli_out_free(&o);
	}
	{
		const char *a[] = {"approvals", "approve", aid, "--reason", "ok by the CLI", NULL};

		sagewai(&o, 0, a);
		SW_REQUIRE(strstr(o.out, "approved") != NULL, "%s", o.out);
		cli_out_free(&o);
	}
	require_decided(sw_test_replies_for(&rp, "credential.decided", rid), "allow", "human",
			NULL);
	{
		const char *a[] = {"approvals", "deny", aid, "--reason", "again", NULL};

		sagewai(&o, 1, a);
		SW_REQUIRE(strstr(o.err, "already approved") != NULL, "%s", o.err);
		cli_out_free(&o);
	}
	{
		const char *a[] = {"approvals", "list", "--all", "--json", NULL};

		sagewai(&o, 0, a);
		j = json_loads(o.out, 0, NULL);
		SW_REQUIRE(j != NULL && json_array_size(json_object_get(j, "approvals")) == 1,
			   "%s", o.out);
		json_decref(j);
		cli_out_free(&o);
	}
	{
		static const char *const helps[][4] = {
			{"policy", "--help", NULL}, {"policy", "apply", "--help", NULL},
			{"policy", "show", "--help", NULL}, {"policy", "test", "--help", NULL},
			{"approvals", "--help", NULL}, {"approvals", "list", "--help", NULL},
			{"approvals", "approve", "--help", NULL}, {"approvals", "deny", "--help", NULL},
			{"approvals", "watch", "--help", NULL}};

		for (size_t i = 0; i < sizeof(helps) / sizeof(*helps); i++) {
			sagewai(&o, 0, helps[i]);
			SW_REQUIRE(strncmp(o.out, "usage: sagewai ", 15) == 0, "%s", o.out);
			cli_out_free(&o);
		}
	}
	/* watch: the snapshot, then a new ask as it comes (stopped by a timeout) */
	{
		char bin[600], cmd[4096], out[700];
		char run2[80], r2[SW_UUID_STRLEN];
		FILE *f;
		int64_t until = sw_mono_ms() + 20000;
		int found = 0;

		snprintf(out, sizeof(out), "%s/watch.out", dir);
		snprintf(bin, sizeof(bin), "%s/tools/cli/sagewai", getenv("SW_BUILD_DIR"));
		snprintf(cmd, sizeof(cmd),
			 "SAGEWAI_POLICY_URL=http://127.0.0.1:%d SAGEWAI_ADMIN_TOKEN_FILE= "
			 "SAGEWAI_ADMIN_TOKEN=$(cat %s) timeout 15 %s approvals watch > %s 2>&1 &",
			 pol_port, admin_path, bin, out);
		SW_CHECK(system(cmd) == 0);
		sw_test_msleep(1500);
		snprintf(run2, sizeof(run2), "%s-r2", prefix);
		request("default", run2, "NEW_API_KEY", "n", r2);
		while (!found && sw_mono_ms() < until) {
			char line[2048];

			sw_test_msleep(300);
			if ((f = fopen(out, "r")) == NULL)
				continue;
			while (fgets(line, sizeof(line), f) != NULL)
				if (strstr(line, "NEW_API_KEY") != NULL && strstr(line, "pending"))
					found = 1;
			fclose(f);
		}
		SW_REQUIRE(found, "approvals watch did not show the new ask");
	}
	finish();
}

static void t_page(void)
{
	char run[80], rid[SW_UUID_STRLEN], cmd[4096], shot[700], url[200];
	json_t *d;
	int st;

	mode = "single_org";
	setup("page");
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	snprintf(run, sizeof(run), "%s-r1", prefix);
	request("default", run, "STRIPE_API_KEY", "stripe:charges", rid);
	sw_test_replies_for(&rp, "credential.pending", rid);
	snprintf(shot, sizeof(shot), "%s/tests-tmp/policy-page.png", getenv("SW_BUILD_DIR"));
	unlink(shot);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/approvals", pol_port);
	snprintf(cmd, sizeof(cmd), "python3 %s/tests/policy/page.py --url %s --token-file %s"
		 " --expect STRIPE_API_KEY --screenshot %s --profile %s/chromium",
		 getenv("SW_SOURCE_DIR"), url, admin_path, shot, dir);
	st = system(cmd);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "page.py failed (status %d)", st);
	d = sw_test_replies_for(&rp, "credential.decided", rid);
	require_decided(d, "allow", "human", "new-api-key");
	SW_REQUIRE(strcmp(js(d, "approver"), "admin") == 0, "approver %s", js(d, "approver"));
	{
		struct stat sb;

		SW_REQUIRE(stat(shot, &sb) == 0 && sb.st_size > 1000, "no screenshot at %s", shot);
	}
	approval_status(rid, "approved");
	finish();
}

/* Play sandboxd for a re-run: a credential.requested claiming the original
 * decision of (replay_of). */
static void request_replay(const char *tenant, const char *run, const char *name,
			   const char *scope, const char *of, char *rid)
{
	char sb[SW_UUID_STRLEN], sid[200];

	sw_uuid_v7_str(rid);
	sw_uuid_v7_str(sb);
	snprintf(sid, sizeof(sid), "%s/build/1", run);
	produce("credential.requested", "sagewai.credentials", tenant, run, sid, "sagewai-sandboxd",
		json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s}",
			  "request_id", rid, "workflow", "site", "step", "build", "cli_agent",
			  "claude-code", "sandbox_id", sb, "host", "host-a", "name", name, "scope",
			  scope, "reason", "the re-run asks again", "requester", "sagewai-cred/7",
			  "deadline_ms", (json_int_t)(sw_now_us() / 1000 + 600000), "replay_of",
			  of, "host_key", req_host_key));
}

/* Play the scheduler (or, producer, someone else): run.submitted of a
 * re-run of of. */
static void announce_rerun(const char *tenant, const char *run, const char *of,
			   const char *producer_name)
{
	produce("run.submitted", "sagewai.runs", tenant, run, NULL, producer_name,
		json_pack("{s:s, s:i, s:s, s:s}", "workflow", "site", "workflow_version", 1,
			  "input", "{}", "replay_of", of));
}

/* rid was denied by replay as not recorded, and nobody was asked. */
static void require_not_recorded(const char *rid, const char *what)
{
	json_t *d = sw_test_replies_for(&rp, "credential.decided", rid);

	require_decided(d, "deny", "replay", "");
	SW_REQUIRE(strncmp(js(d, "reason"), "not_recorded: ", 14) == 0,
		   "%s: reason '%s' is not not_recorded", what, js(d, "reason"));
	SW_REQUIRE(strcmp(js(d, "secret"), "") == 0 && strcmp(js(d, "replay_of"), "") == 0,
		   "%s: a refused replay names a secret or an original", what);
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.pending", rid) == 0,
		   "%s: a person was asked", what);
}

static void t_replay(void)
{
	char orig[80], orig2[80], rr[80], rr2[80], plain[80], forged[80], late[80];
	char r_ask[SW_UUID_STRLEN], r_rule[SW_UUID_STRLEN], r_deny[SW_UUID_STRLEN];
	char r_o2[SW_UUID_STRLEN], aid[SW_UUID_STRLEN], q[SW_UUID_STRLEN];
	json_t *d;
	int64_t t0;

	mode = "single_org";
	setup("replay");
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	/* run ids are UUIDs (replay_of must be one) */
	sw_uuid_v7_str(orig);
	sw_uuid_v7_str(orig2);
	sw_uuid_v7_str(rr);
	sw_uuid_v7_str(rr2);
	sw_uuid_v7_str(plain);
	sw_uuid_v7_str(forged);
	sw_uuid_v7_str(late);

	/* the original run: a person approves an ask; a rule allows; a rule denies */
	request("default", orig, "STRIPE_API_KEY", "stripe:charges", r_ask);
	snprintf(aid, sizeof(aid), "%s",
		 js(sw_test_replies_for(&rp, "credential.pending", r_ask), "approval_id"));
	decide(200, aid, "approve", "agreed with finance", admin);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r_ask), "allow", "human",
			"new-api-key");
	request("default", orig, "GITHUB_TOKEN_SITE", "github:push:acme/site", r_rule);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r_rule), "allow", "rule",
			"push-own-org");
	request("default", orig, "AWS_TOKEN", "aws:iam:role/admin", r_deny);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r_deny), "deny", "rule",
			"no-admin");
	/* another run's decision, for a re-run of the wrong run */
	request("default", orig2, "GITHUB_TOKEN_SITE", "github:push:acme/site", r_o2);
	sw_test_replies_for(&rp, "credential.decided", r_o2);

	/* the re-run, as the scheduler announces it */
	announce_rerun("default", rr, orig, "sagewai-scheduler");
	/* the person's allow: allowed again by replay, nobody asked */
	request_replay("default", rr, "STRIPE_API_KEY", "stripe:charges", r_ask, q);
	d = sw_test_replies_for(&rp, "credential.decided", q);
	require_decided(d, "allow", "replay", "new-api-key");
	SW_REQUIRE(strcmp(js(d, "secret"), "vendor-keys") == 0 &&
		   strcmp(js(d, "replay_of"), r_ask) == 0 && strcmp(js(d, "approver"), "") == 0 &&
		   strstr(js(d, "reason"), "by human") != NULL,
		   "replayed allow: secret %s replay_of %s approver %s reason %s", js(d, "secret"),
		   js(d, "replay_of"), js(d, "approver"), js(d, "reason"));
	/* identity seals a replayed allow on the decision: to the re-run's host */
	SW_REQUIRE(strcmp(js(d, "host_key"), HOST_KEY) == 0, "replayed allow: host_key '%s'",
		   js(d, "host_key"));
	SW_REQUIRE(count_settled("credential.decided", q) == 1, "replayed allow decided twice");
	SW_REQUIRE(sw_test_replies_count(&rp, "credential.pending", q) == 0,
		   "a replayed allow asked a person");
	SW_REQUIRE(approval_of(q, admin) == NULL, "a replayed allow is listed as an approval");
	/* the rule's allow and deny */
	request_replay("default", rr, "GITHUB_TOKEN_SITE", "github:push:acme/site", r_rule, q);
	d = sw_test_replies_for(&rp, "credential.decided", q);
	require_decided(d, "allow", "replay", "push-own-org");
	SW_REQUIRE(strcmp(js(d, "secret"), "github-push") == 0, "secret %s", js(d, "secret"));
	request_replay("default", rr, "AWS_TOKEN", "aws:iam:role/admin", r_deny, q);
	d = sw_test_replies_for(&rp, "credential.decided", q);
	require_decided(d, "deny", "replay", "no-admin");
	SW_REQUIRE(strcmp(js(d, "secret"), "") == 0 && strcmp(js(d, "replay_of"), r_deny) == 0,
		   "replayed deny: secret %s replay_of %s", js(d, "secret"), js(d, "replay_of"));
	/* a replay claim with a malformed host key: denied, the key not carried */
	req_host_key = "0123456789abcdef";
	request_replay("default", rr, "GITHUB_TOKEN_SITE", "github:push:acme/site", r_rule, q);
	req_host_key = HOST_KEY;
	d = sw_test_replies_for(&rp, "credential.decided", q);
	require_decided(d, "deny", "replay", "");
	SW_REQUIRE(strstr(js(d, "reason"), "host_key") != NULL && js(d, "host_key")[0] == '\0',
		   "replay with a bad host key: reason '%s', host_key '%s'", js(d, "reason"),
		   js(d, "host_key"));

	/* claims the record does not back: denied not_recorded, never asked */
	request_replay("default", rr, "OTHER_API_KEY", "stripe:charges", r_ask, q);
	require_not_recorded(q, "another name");
	request_replay("default", rr, "STRIPE_API_KEY", "stripe:refunds", r_ask, q);
	require_not_recorded(q, "another scope");
	request_replay("default", rr, "GITHUB_TOKEN_SITE", "github:push:acme/site", r_o2, q);
	require_not_recorded(q, "a decision of another run");
	request_replay("default", rr, "STRIPE_API_KEY", "stripe:charges", "not-a-uuid", q);
	require_not_recorded(q, "a malformed claim");
	/* a run nobody announced as a re-run (a forged claim): refused after the wait */
	t0 = sw_mono_ms();
	request_replay("default", plain, "STRIPE_API_KEY", "stripe:charges", r_ask, q);
	require_not_recorded(q, "not a re-run");
	SW_REQUIRE(sw_mono_ms() - t0 >= 2500, "refused before waiting for run.submitted");
	/* a re-run announced by someone else than the scheduler */
	announce_rerun("default", forged, orig, "sagewai-sandboxd");
	request_replay("default", forged, "STRIPE_API_KEY", "stripe:charges", r_ask, q);
	require_not_recorded(q, "announced by sandboxd");
	/* a re-run of another run claiming this run's decision */
	announce_rerun("default", rr2, orig2, "sagewai-scheduler");
	request_replay("default", rr2, "STRIPE_API_KEY", "stripe:charges", r_ask, q);
	require_not_recorded(q, "a re-run of another run");
	/* another tenant's re-run of this tenant's run */
	{
		char ot[SW_UUID_STRLEN];

		sw_uuid_v7_str(ot);
		announce_rerun("other", ot, orig, "sagewai-scheduler");
		request_replay("other", ot, "STRIPE_API_KEY", "stripe:charges", r_ask, q);
		require_not_recorded(q, "another tenant");
	}
	/* the request consumed before its run.submitted: it waits for it */
	request_replay("default", late, "STRIPE_API_KEY", "stripe:charges", r_ask, q);
	sw_test_msleep(800);
	announce_rerun("default", late, orig, "sagewai-scheduler");
	require_decided(sw_test_replies_for(&rp, "credential.decided", q), "allow", "replay",
			"new-api-key");

	/* nothing of the replays became an approval; the original's is the only one */
	SW_REQUIRE(sw_test_pg_long(db_dsn, "SELECT count(*) FROM policy.requests WHERE by = 'replay'"
					   " AND approval_id IS NOT NULL") == 0,
		   "a replayed request has an approval");
	/* the claims above, the one with a bad host key among them */
	SW_REQUIRE(sw_test_pg_long(db_dsn, "SELECT count(*) FROM policy.requests WHERE"
					   " by = 'replay'") == 13,
		   "not every replayed request was stored");
	finish();
}

static void t_prune(void)
{
	char run_old[SW_UUID_STRLEN], run_new[SW_UUID_STRLEN], r1[SW_UUID_STRLEN];
	char r2[SW_UUID_STRLEN], r3[SW_UUID_STRLEN], of[SW_UUID_STRLEN], q[600];
	int64_t until;

	mode = "single_org";
	retention_env = "SAGEWAI_POLICY_RETENTION_S=86400";
	setup("prune");
	pol_start();
	json_decref(apply(200, "default", "main.yaml", policy_main, admin));
	sw_uuid_v7_str(run_old);
	sw_uuid_v7_str(run_new);
	sw_uuid_v7_str(of);
	/* tombstones of each kind for two runs, and requests */
	request("default", run_old, "GITHUB_TOKEN_SITE", "github:push:acme/site", r1);
	sw_test_replies_for(&rp, "credential.decided", r1);
	produce("run.finished", "sagewai.runs", "default", run_old, NULL, "sagewai-scheduler",
		json_pack("{s:s}", "status", "SUCCEEDED"));
	produce("run.finished", "sagewai.runs", "default", run_new, NULL, "sagewai-scheduler",
		json_pack("{s:s}", "status", "SUCCEEDED"));
	announce_rerun("default", run_old, of, "sagewai-scheduler");
	announce_rerun("default", run_new, of, "sagewai-scheduler");
	sw_uuid_v7_str(r2);
	sw_uuid_v7_str(r3);
	produce("credential.withdrawn", "sagewai.credentials", "default", run_old, NULL,
		"sagewai-sandboxd", json_pack("{s:s, s:s}", "request_id", r2, "reason", "old"));
	produce("credential.withdrawn", "sagewai.credentials", "default", run_new, NULL,
		"sagewai-sandboxd", json_pack("{s:s, s:s}", "request_id", r3, "reason", "new"));
	until = sw_mono_ms() + 30000;
	while (sw_test_pg_long(db_dsn, "SELECT (SELECT count(*) FROM policy.withdrawals) +"
				       " (SELECT count(*) FROM policy.finished_runs) +"
				       " (SELECT count(*) FROM policy.reruns)") != 6) {
		SW_REQUIRE(sw_mono_ms() < until, "the tombstones were not all written");
		sw_test_msleep(200);
	}
	/* the old run's are two days old; a restart prunes a second later */
	pol_stop();
	snprintf(q, sizeof(q),
		 "WITH a AS (UPDATE policy.withdrawals SET at = now() - interval '2 days'"
		 " WHERE request_id = '%s' RETURNING 1), b AS (UPDATE policy.finished_runs SET"
		 " at = now() - interval '2 days' WHERE run_id = '%s' RETURNING 1), c AS"
		 " (UPDATE policy.reruns SET at = now() - interval '2 days' WHERE run_id = '%s'"
		 " RETURNING 1) SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b) +"
		 " (SELECT count(*) FROM c)",
		 r2, run_old, run_old);
	SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 3, "backdating failed");
	pol_start();
	until = sw_mono_ms() + 30000;
	while (sw_test_pg_long(db_dsn, "SELECT (SELECT count(*) FROM policy.withdrawals) +"
				       " (SELECT count(*) FROM policy.finished_runs) +"
				       " (SELECT count(*) FROM policy.reruns)") != 3) {
		SW_REQUIRE(sw_mono_ms() < until, "old tombstones not pruned");
		sw_test_msleep(200);
	}
	snprintf(q, sizeof(q),
		 "SELECT (SELECT count(*) FROM policy.withdrawals WHERE request_id = '%s') +"
		 " (SELECT count(*) FROM policy.finished_runs WHERE run_id = '%s') +"
		 " (SELECT count(*) FROM policy.reruns WHERE run_id = '%s')",
		 r3, run_new, run_new);
	SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 3, "a young tombstone was pruned");
	snprintf(q, sizeof(q), "SELECT count(*) FROM policy.requests WHERE request_id = '%s'", r1);
	SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 1, "a request was pruned");
	/* the kept tombstone still voids a late request of its run */
	request("default", run_new, "GITHUB_TOKEN_SITE", "github:push:acme/site", r2);
	require_decided(sw_test_replies_for(&rp, "credential.decided", r2), "deny", "withdrawn",
			NULL);
	retention_env = NULL;
	finish();
}

static const struct sw_test_scenario scenarios[] = {
	{"lang", t_lang},	  {"decide", t_decide}, {"deadline", t_deadline},
	{"withdraw", t_withdraw}, {"kill9", t_kill9},	{"tenants", t_tenants},
	{"hostile", t_hostile},	  {"page", t_page},	{"cli", t_cli},
	{"replay", t_replay},	  {"prune", t_prune},	{"pgcrash", t_pgcrash},
};

int main(int argc, char **argv)
{
	const struct sw_test_scenario *s =
		sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(*scenarios));

	s->fn();
	return 0;
}
