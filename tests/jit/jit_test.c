/*
 * Black-box tests of the cli_agent_jit credential flow (docs/JIT.md) over
 * the harness's Kafka and PostgreSQL: the real sagewai-identity (secrets,
 * a profile, the resolution, sealing on decisions) and the real
 * sagewai-sandboxd with bubblewrap sandboxes. The test program plays the
 * scheduler (identity.resolve_requested, then step.dispatched with the
 * pinned identity) and the policy service: it reads credential.requested
 * and answers credential.decided from a table (allow with a secret or from
 * the cascade, deny, or never). The agent is a custom "CLI", a shell
 * script that runs sagewai-cred inside its sandbox.
 *
 * Every message read from every topic is searched for every spelling of
 * every value (raw, hex, base64); at the end of each scenario the logs of
 * both services and a pg_dump of their database are searched too. The
 * only place a value may be is inside sealed ciphertext.
 *
 *   flow        one sandbox asks for: a tenant secret the policy grants
 *               (delivered; the client prints it, redacted in the output),
 *               a key of its cascade (delivered), a key its ACL denies
 *               (not_allowed), a key nowhere (missing), a key the policy
 *               denies (denied, the rule's words): exit codes 0/2, the
 *               events requested -> decided -> delivered/refused, identity
 *               sealing on the allow decisions only (none on the deny)
 *   timeout     nobody decides: the client's --timeout gives exit 3 and
 *               credential.withdrawn; a request still waiting when the step
 *               ends is withdrawn too
 *   concurrent  three sandboxes ask at once, each granted its own value:
 *               each gets its own (its SHA-256), none another's
 *   hostile     from inside the sandbox, on the credential socket: an
 *               oversized length, garbage, a forged request (bad name,
 *               trailing bytes), a flood of connections and of requests;
 *               each refused, then a good request is still served; a
 *               forged decision (another sandbox) is ignored; a cli_agent
 *               (not jit) step asking is refused not_jit
 *   mint        a real OpenBao (tests/harness/openbao) and a mint source
 *               (SAGEWAI_IDENTITY_MINTS_FILE): a grant of the source mints a
 *               fresh token with the source's policy; inside the sandbox it
 *               reads the one path its policy allows (through the egress
 *               proxy) and is refused another; the token (opened from the
 *               sealed answer with the host key) is in no event, log or the
 *               database, only its accessor is recorded; once the step has
 *               finished the token is revoked (lookup fails); a source not
 *               offered to the tenant is refused missing
 */
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

static struct sw_test_stack stk;
static json_t *spec_extra; /* more fields of the step's spec */

/* ---- the values and their spellings ------------------------------------------ */

/* A fresh value, forbidden in every spelling (sw_test_secret_*). */
static void value_make(char *out, size_t len, const char *tag)
{
	char head[32];

	snprintf(head, sizeof(head), "%s-", tag);
	sw_test_secret_new(out, len, head, "-j7");
}

static void sha_hex(const char *v, char out[65])
{
	unsigned char h[32];

	crypto_hash_sha256(h, (const unsigned char *)v, strlen(v));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* ---- small helpers -------------------------------------------------------------- */

static const char *js(json_t *j, const char *k)
{
	const char *v = json_string_value(json_object_get(j, k));

	return v != NULL ? v : "";
}

static void produce(const char *topic, const char *type, const char *producer_name,
		    const char *run, const char *step_id, json_t *o)
{
	sw_test_stack_emit(&stk, topic, run, type, producer_name, "default", run, step_id, o);
	sw_test_kafka_flush(stk.producer, 30000);
}

/* ---- the policy we play -------------------------------------------------------- */

enum act { NEVER, ALLOW, DENY };

struct rule {
	char run[96]; /* "" any run */
	char name[64];
	enum act act;
	char secret[64]; /* ALLOW: "" = the cascade */
};

static struct rule rules[16];
static size_t nrules;
static size_t ndecided;
static int forge_decision; /* also send a decision naming another sandbox first */
/* the true decision behind a forged one, sent once identity has sealed the
 * forged one: sandboxd then meets the forged box while its request is open */
static struct {
	json_t *o;
	char run[96], step_id[128], rid[64];
} held;

static void rule_add(const char *run, const char *name, enum act act, const char *secret)
{
	struct rule *r = &rules[nrules++];

	SW_CHECK(nrules <= sizeof(rules) / sizeof(rules[0]));
	snprintf(r->run, sizeof(r->run), "%s", run ? run : "");
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->act = act;
	snprintf(r->secret, sizeof(r->secret), "%s", secret ? secret : "");
}

static void decide(json_t *e)
{
	json_t *h = json_object_get(e, "header");
	const char *run = js(h, "run_id"), *name = js(e, "name");
	const struct rule *r = NULL;
	json_t *o;

	for (size_t i = 0; i < nrules && r == NULL; i++)
		if (strcmp(rules[i].name, name) == 0 &&
		    (rules[i].run[0] == '\0' || strcmp(rules[i].run, run) == 0))
			r = &rules[i];
	if (r == NULL || r->act == NEVER)
		return;
	if (forge_decision && r->act == ALLOW) {
		/* a decision for another sandbox: sandboxd and identity ignore it */
		produce("sagewai.credentials", "credential.decided", "sagewai-policy", run,
			js(h, "step_id"),
			json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
				  "request_id", js(e, "request_id"), "sandbox_id",
				  "00000000-0000-4000-8000-000000000001", "step", js(e, "step"),
				  "name", name, "decision", "allow", "by", "rule", "rule",
				  "forged", "approver", "", "reason", "forged", "secret",
				  r->secret, "host_key", js(e, "host_key")));
	}
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "request_id",
		      js(e, "request_id"), "sandbox_id", js(e, "sandbox_id"), "step",
		      js(e, "step"), "name", name, "decision", r->act == ALLOW ? "allow" : "deny",
		      "by", "rule", "rule", r->act == ALLOW ? "r-allow" : "r-deny", "approver", "",
		      "reason", r->act == ALLOW ? "auto-approved" : "escalation to admin",
		      "secret", r->secret, "host_key", js(e, "host_key"));
	ndecided++;
	if (forge_decision && r->act == ALLOW) {
		SW_CHECK(held.o == NULL);
		held.o = o;
		snprintf(held.run, sizeof(held.run), "%s", run);
		snprintf(held.step_id, sizeof(held.step_id), "%s", js(h, "step_id"));
		snprintf(held.rid, sizeof(held.rid), "%s", js(e, "request_id"));
		return;
	}
	produce("sagewai.credentials", "credential.decided", "sagewai-policy", run,
		js(h, "step_id"), o);
}

static void on_seen(const rd_kafka_message_t *m, json_t *e)
{
	json_t *h;

	sw_test_secret_msg_clean(m);
	if (e == NULL)
		return;
	h = json_object_get(e, "header");
	if (strcmp(js(h, "type"), "credential.requested") == 0 &&
	    strncmp(js(h, "run_id"), stk.prefix, strlen(stk.prefix)) == 0)
		decide(e);
	/* identity sealed the forged decision (the true one is not out yet) */
	if (strcmp(js(h, "type"), "identity.sealed") == 0 && held.o != NULL &&
	    strcmp(js(e, "request_id"), held.rid) == 0) {
		json_t *o = held.o;

		held.o = NULL;
		produce("sagewai.credentials", "credential.decided", "sagewai-policy", held.run,
			held.step_id, o);
	}
}

/* ---- the services ---------------------------------------------------------------- */

static void http_must(long want, const char *method, const char *path, const char *body)
{
	char url[1200], auth[300];
	const char *hdrs[3] = {"Content-Type: application/json", auth, NULL};
	struct sw_test_http_reply r = {0};

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", stk.id_port, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", stk.admin);
	sw_test_http_request(method, url, body, strlen(body), hdrs, 20, &r);
	SW_REQUIRE(r.status == want, "%s %s: HTTP %ld, want %ld: %s", method, path, r.status, want,
		   r.body ? r.body : "");
	free(r.body);
}

static void put_secret(const char *name, const char *value)
{
	char path[300], body[600], b64[300];

	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)value, strlen(value),
			  sodium_base64_VARIANT_ORIGINAL);
	snprintf(path, sizeof(path), "/v1/secrets/%s?tenant=default", name);
	snprintf(body, sizeof(body), "{\"value_b64\": \"%s\"}", b64);
	http_must(201, "PUT", path, body);
}

static void setup(const char *name)
{
	sw_test_stack_init(&stk, "jit", name, NULL, on_seen);
	/* sandboxd's service part writes here (another uid when root) */
	sw_test_sh("chmod 777 %s", stk.dir);
	sw_test_stack_id_init(&stk);
	sw_test_stack_id_start(&stk);
	sw_test_stack_sbd_start(&stk);
}

/* No value in either service's log, nor anywhere in their database. */
static void finish(void)
{
	char dump[700], *buf;

	sw_test_evlog_poll(&stk.evl, 500);
	sw_test_secret_file_clean(stk.sbd_log, stk.sbd_log);
	sw_test_secret_file_clean(stk.id_log, stk.id_log);
	snprintf(dump, sizeof(dump), "%s/pg.dump", stk.dir);
	sw_test_sh("pg_dump -d '%s' -f %s", stk.db_dsn, dump);
	SW_CHECK((buf = sw_test_file_read(dump, NULL)) != NULL && strlen(buf) > 100);
	free(buf);
	sw_test_secret_file_clean(dump, "pg_dump");
	sw_test_stack_sbd_stop(&stk);
	sw_test_proc_stop(&stk.id_pid, SIGTERM, "sagewai-identity");
	sw_test_evlog_close(&stk.evl);
	printf("ok: no value in any topic, log or the database\n");
}

/* ---- runs -------------------------------------------------------------------- */

/* The profile every scenario uses: SITE_TOKEN (a pinned secret), RESTRICTED
 * (its ACL lets only other workflows have it). */
static void profile_make(char *site_value, size_t len)
{
	value_make(site_value, len, "site");
	put_secret("site-token", site_value);
	http_must(200, "PUT", "/v1/identity/profiles/site?level=workflow&tenant=default",
		  "{\"keys\": {\"SITE_TOKEN\": {\"secret\": \"site-token\"},"
		  " \"RESTRICTED\": {\"secret\": \"site-token\", \"steps\": [\"other/*\"]}}}");
}

/* As the scheduler: resolve the run's step, then dispatch it with its pins.
 * mode cli_agent_jit or cli_agent; script: the custom CLI. */
static void run_step(struct sw_test_dispatch *d, const char *run, const char *mode,
		     const char *script, int64_t timeout_ms)
{
	char rid[SW_UUID_STRLEN], *spec, *pins;
	struct sw_test_ev *e = NULL;
	json_t *keys;
	int64_t until = sw_mono_ms() + 30000;

	memset(d, 0, sizeof(*d));
	snprintf(d->run_id, sizeof(d->run_id), "%s-%s", stk.prefix, run);
	snprintf(d->step_id, sizeof(d->step_id), "%s/fix/1", d->run_id);
	sw_uuid_v7_str(rid);
	produce(
	    "sagewai.identity", "identity.resolve_requested", "sagewai-scheduler", d->run_id, NULL,
	    json_pack("{s:s, s:s, s:i, s:s, s:[{s:s, s:s, s:s, s:s}], s:[]}", "request_id", rid,
		      "workflow", "site", "workflow_version", 1, "user", "", "steps", "step",
		      "fix", "mode", mode, "agent", "custom", "profile", "site", "input_macs"));
	while (e == NULL || strcmp(js(e->body, "request_id"), rid) != 0) {
		SW_REQUIRE(sw_mono_ms() < until, "no identity.resolved for %s", d->run_id);
		sw_test_evlog_poll(&stk.evl, 200);
		e = NULL;
		for (size_t i = 0; i < stk.evl.n; i++)
			if (strcmp(stk.evl.ev[i]->type, "identity.resolved") == 0 &&
			    strcmp(js(stk.evl.ev[i]->body, "request_id"), rid) == 0)
				e = stk.evl.ev[i];
	}
	SW_REQUIRE(json_is_true(json_object_get(e->body, "ok")), "resolution refused: %s",
		   js(e->body, "error"));
	keys = json_object_get(json_array_get(json_object_get(e->body, "steps"), 0), "keys");
	SW_CHECK((pins = json_dumps(keys, JSON_COMPACT)) != NULL);
	{
		json_t *sp = json_pack("{s:s, s:i, s:s, s:{}, s:[s], s:i, s:s, s:s, s:s}",
				       "workflow", "site", "workflow_version", 1, "uses", "",
				       "with", "run_modes", mode, "output_max", 1048576,
				       "cli_agent", "custom", "prompt", "fix it", "run", script);

		SW_CHECK(sp != NULL);
		if (spec_extra != NULL)
			SW_CHECK(json_object_update(sp, spec_extra) == 0);
		SW_CHECK((spec = json_dumps(sp, JSON_COMPACT)) != NULL);
		json_decref(sp);
	}
	produce("sagewai.steps.sandbox", "step.dispatched", "sagewai-scheduler", d->run_id,
		d->step_id,
		json_pack("{s:s, s:i, s:s, s:i, s:s, s:I, s:s}", "step", "fix", "index", 0, "mode",
			  mode, "attempt", 1, "spec", spec, "timeout_ms", (json_int_t)timeout_ms,
			  "identity", pins));
	free(spec);
	free(pins);
}

/* All sandbox.output data of step_id's stdout, in order (caller frees). */
static char *stdout_of(const char *step_id)
{
	return sw_test_evlog_output(&stk.evl, step_id, "stdout", NULL);
}

static void has(const char *text, const char *want)
{
	SW_REQUIRE(strstr(text, want) != NULL, "the output lacks '%s':\n%s", want, text);
}

/* The one credential.* event of type for the request of name in run, or
 * fail (waits up to 30 s). */
static struct sw_test_ev *cred_event(const char *type, const char *step_id, const char *name)
{
	int64_t until = sw_mono_ms() + 30000;
	const char *rid = NULL;

	for (;;) {
		for (size_t i = 0; i < stk.evl.n && rid == NULL; i++)
			if (strcmp(stk.evl.ev[i]->type, "credential.requested") == 0 &&
			    strcmp(stk.evl.ev[i]->step_id, step_id) == 0 &&
			    strcmp(js(stk.evl.ev[i]->body, "name"), name) == 0)
				rid = js(stk.evl.ev[i]->body, "request_id");
		for (size_t i = 0; i < stk.evl.n && rid != NULL; i++)
			if (strcmp(stk.evl.ev[i]->type, type) == 0 &&
			    strcmp(js(stk.evl.ev[i]->body, "request_id"), rid) == 0)
				return stk.evl.ev[i];
		SW_REQUIRE(sw_mono_ms() < until, "no %s for %s in %s", type, name, step_id);
		sw_test_evlog_poll(&stk.evl, 200);
	}
}

#define REQ_FN                                                                                    \
	"req() { v=$(sagewai-cred request \"$1\" --scope \"$2\" --reason \"$3\" --timeout "       \
	"${4:-30} 2>/tmp/err); rc=$?; echo \"$1 rc=$rc value=$v sha=$(printf %s \"$v\" | "        \
	"sha256sum | cut -c1-64) err=$(cat /tmp/err)\"; }\n"

/* ---- scenarios ---------------------------------------------------------------- */

static void scenario_flow(void)
{
	char site[64], jit[64], want[300], sha[65];
	struct sw_test_dispatch d;
	struct sw_test_ev *f, *e;
	char *out;

	setup("flow");
	profile_make(site, sizeof(site));
	value_make(jit, sizeof(jit), "jit");
	put_secret("jit-token", jit);
	rule_add(NULL, "JIT_TOKEN", ALLOW, "jit-token");
	rule_add(NULL, "SITE_TOKEN", ALLOW, "");
	rule_add(NULL, "RESTRICTED", ALLOW, "");
	rule_add(NULL, "NOPE", ALLOW, "");
	rule_add(NULL, "DENY_ME", DENY, NULL);
	run_step(&d, "r1", "cli_agent_jit",
		 REQ_FN "req JIT_TOKEN github:push:acme/site 'push the site'\n"
			"req SITE_TOKEN site:read again\n"
			"req RESTRICTED admin escalate\n"
			"req NOPE x nothing\n"
			"req DENY_ME admin:root 'make me admin'\n"
			"echo \"agent env: ${JIT_TOKEN:-unset}\"\n",
		 120000);
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	out = stdout_of(d.step_id);
	printf("--- the agent's stdout:\n%s---\n", out);
	sha_hex(jit, sha);
	snprintf(want, sizeof(want), "JIT_TOKEN rc=0 value=[REDACTED:JIT_TOKEN] sha=%s err=\n",
		 sha);
	has(out, want);
	sha_hex(site, sha);
	snprintf(want, sizeof(want), "SITE_TOKEN rc=0 value=[REDACTED:SITE_TOKEN] sha=%s", sha);
	has(out, want);
	has(out, "RESTRICTED rc=2 value= ");
	has(out, "refused (not_allowed): not_allowed: RESTRICTED: step not in acl");
	has(out, "NOPE rc=2 value= ");
	has(out, "refused (missing): missing: NOPE is not in the identity cascade");
	has(out, "DENY_ME rc=2 value= ");
	has(out, "refused (denied): denied: DENY_ME (by rule r-deny): escalation to admin");
	/* the agent's own environment never changes under it */
	has(out, "agent env: unset");
	/* the trail */
	e = cred_event("credential.requested", d.step_id, "JIT_TOKEN");
	SW_REQUIRE(strcmp(js(e->body, "scope"), "github:push:acme/site") == 0 &&
		       strcmp(js(e->body, "reason"), "push the site") == 0 &&
		       strcmp(js(e->body, "workflow"), "site") == 0 &&
		       strcmp(js(e->body, "cli_agent"), "custom") == 0 &&
		       strncmp(js(e->body, "requester"), "sagewai-cred (pid ", 18) == 0,
		   "credential.requested fields");
	e = cred_event("credential.delivered", d.step_id, "JIT_TOKEN");
	SW_REQUIRE(strcmp(js(e->body, "secret"), "jit-token") == 0 &&
		       json_integer_value(json_object_get(e->body, "version")) == 1,
		   "delivered names the secret and version");
	e = cred_event("credential.delivered", d.step_id, "SITE_TOKEN");
	SW_REQUIRE(strcmp(js(e->body, "secret"), "site-token") == 0, "cascade key delivered");
	e = cred_event("credential.refused", d.step_id, "RESTRICTED");
	SW_REQUIRE(strcmp(js(e->body, "code"), "not_allowed") == 0, "RESTRICTED: %s",
		   js(e->body, "code"));
	e = cred_event("credential.refused", d.step_id, "NOPE");
	SW_REQUIRE(strcmp(js(e->body, "code"), "missing") == 0, "NOPE: %s", js(e->body, "code"));
	e = cred_event("credential.refused", d.step_id, "DENY_ME");
	SW_REQUIRE(strcmp(js(e->body, "code"), "denied") == 0, "DENY_ME: %s", js(e->body, "code"));
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "credential.requested", d.step_id) == 5 &&
		       sw_test_evlog_count(&stk.evl, "credential.delivered", d.step_id) == 2 &&
		       sw_test_evlog_count(&stk.evl, "credential.refused", d.step_id) == 3 &&
		       sw_test_evlog_count(&stk.evl, "credential.withdrawn", d.step_id) == 0,
		   "requested 5, delivered 2, refused 3");
	{
		/* identity sealed on the four allow decisions (two delivered, two
		 * refused: ACL, missing), for this sandbox, and nothing else; the
		 * deny was never sealed; no seal request carried a grant */
		size_t seals = 0, grants = 0;
		struct sw_test_ev *rq = cred_event("credential.requested", d.step_id, "JIT_TOKEN");

		for (size_t i = 0; i < stk.evl.n; i++) {
			/* (the step's own seal, of its pinned keys, names no key) */
			if (strcmp(stk.evl.ev[i]->type, "identity.sealed") == 0 &&
			    strcmp(stk.evl.ev[i]->step_id, d.step_id) == 0 &&
			    js(stk.evl.ev[i]->body, "name")[0] != '\0') {
				SW_REQUIRE(
				    strcmp(js(stk.evl.ev[i]->body, "sandbox_id"),
					   js(rq->body, "sandbox_id")) == 0 &&
					strcmp(js(stk.evl.ev[i]->body, "name"), "DENY_ME") != 0,
				    "a seal on a decision for %s of %s",
				    js(stk.evl.ev[i]->body, "name"),
				    js(stk.evl.ev[i]->body, "sandbox_id"));
				seals++;
			}
			if (strcmp(stk.evl.ev[i]->type, "identity.seal_requested") == 0 &&
			    js(stk.evl.ev[i]->body, "grant")[0] != '\0')
				grants++;
		}
		SW_REQUIRE(seals == 4 && grants == 0,
			   "%zu seals on decisions (want 4), %zu seal requests with a grant (want 0)",
			   seals, grants);
	}
	free(out);
	finish();
}

static void scenario_timeout(void)
{
	char site[64];
	struct sw_test_dispatch d;
	struct sw_test_ev *f, *e;
	char *out;

	setup("timeout");
	profile_make(site, sizeof(site));
	rule_add(NULL, "SLOW", NEVER, NULL);
	rule_add(NULL, "LATER", NEVER, NULL);
	run_step(&d, "r1", "cli_agent_jit",
		 REQ_FN "req SLOW s 'nobody answers' 2\n"
			/* still waiting when the agent exits: withdrawn with the step */
			"sagewai-cred request LATER --scope s --reason r --timeout 120 &\n"
			"sleep 2\n",
		 120000);
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	out = stdout_of(d.step_id);
	printf("--- the agent's stdout:\n%s---\n", out);
	has(out, "SLOW rc=3 value= ");
	has(out, "refused (timeout): timeout: no decision within the requester's 2000 ms");
	e = cred_event("credential.withdrawn", d.step_id, "SLOW");
	SW_REQUIRE(strncmp(js(e->body, "reason"), "timeout:", 8) == 0, "SLOW withdrawn: %s",
		   js(e->body, "reason"));
	e = cred_event("credential.withdrawn", d.step_id, "LATER");
	SW_REQUIRE(strncmp(js(e->body, "reason"), "step_ended:", 11) == 0, "LATER withdrawn: %s",
		   js(e->body, "reason"));
	SW_REQUIRE(ndecided == 0, "nothing was decided");
	free(out);
	finish();
}

static void scenario_concurrent(void)
{
	char site[64], v[3][64], sha[3][65], run[3][16], secret[3][16];
	struct sw_test_dispatch d[3];
	char *out;

	setup("concurrent");
	profile_make(site, sizeof(site));
	for (int i = 0; i < 3; i++) {
		snprintf(secret[i], sizeof(secret[i]), "sib-%c", 'a' + i);
		snprintf(run[i], sizeof(run[i]), "c%d", i);
		value_make(v[i], sizeof(v[i]), secret[i]);
		sha_hex(v[i], sha[i]);
		put_secret(secret[i], v[i]);
	}
	for (int i = 0; i < 3; i++) {
		char r[96];

		snprintf(r, sizeof(r), "%s-%s", stk.prefix, run[i]);
		rule_add(r, "JIT_TOKEN", ALLOW, secret[i]);
	}
	for (int i = 0; i < 3; i++)
		run_step(&d[i], run[i], "cli_agent_jit",
			 REQ_FN "req JIT_TOKEN s r\nsleep 1\nreq JIT_TOKEN s again\n", 120000);
	for (int i = 0; i < 3; i++) {
		sw_test_ev_require(sw_test_evlog_finished(&stk.evl, d[i].step_id), "SUCCEEDED",
				   NULL);
		out = stdout_of(d[i].step_id);
		printf("--- sandbox %d:\n%s---\n", i, out);
		for (int k = 0; k < 3; k++)
			SW_REQUIRE((strstr(out, sha[k]) != NULL) == (k == i),
				   "sandbox %d %s the value of sandbox %d", i,
				   k == i ? "lacks" : "holds", k);
		SW_REQUIRE(sw_test_evlog_count(&stk.evl, "credential.delivered", d[i].step_id) ==
			       2,
			   "sandbox %d: two deliveries", i);
		free(out);
	}
	finish();
}

/* What the hostile program inside the sandbox does (python3 of the base
 * variant): each attempt prints one line. */
static const char hostile_py[] =
    "import socket, struct, sys, time\n"
    "def conn():\n"
    "    end = time.time() + 10\n"
    "    while True:\n"
    "        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "        s.settimeout(10)\n"
    "        try: s.connect('\\0sagewai-cred'); return s\n"
    "        except BlockingIOError:\n" /* a full accept queue: retry */
    "            s.close()\n"
    "            if time.time() > end: raise\n"
    "            time.sleep(0.05)\n"
    "def reply(s):\n"
    "    try:\n"
    "        h = s.recv(4)\n"
    "        if len(h) < 4: return 'closed'\n"
    "        n = struct.unpack('<I', h)[0]; b = b''\n"
    "        while len(b) < n:\n"
    "            c = s.recv(n - len(b))\n"
    "            if not c: break\n"
    "            b += c\n"
    "        return 'status=%d code=%s' % (b[1], b[8:8 + struct.unpack('<H', b[2:4])[0]]"
    ".decode())\n"
    "    except OSError as e: return 'closed'\n"
    "def req(name, extra=b'', ver=1, scope=b's'):\n"
    "    f = [name, scope, b'r', b'py']\n"
    "    body = struct.pack('<BBHI', ver, 1, 0, 5000) + b''.join(struct.pack('<H', len(x)) + x"
    " for x in f) + extra\n"
    "    return struct.pack('<I', len(body)) + body\n"
    "tests = [('oversized', struct.pack('<I', 0xffffffff)),\n"
    "         ('garbage', struct.pack('<I', 40) + bytes(range(40))),\n"
    "         ('badname', req(b'lower_case')),\n"
    "         ('trailing', req(b'OK_NAME', b'xx')),\n"
    "         ('badversion', req(b'OK_NAME', ver=9)),\n"
    "         ('control', req(b'OK_NAME', scope=b'a\\nb'))]\n"
    "for name, data in tests:\n"
    "    s = conn(); s.sendall(data); print(name, reply(s)); s.close()\n"
    "held = []\n"
    "for i in range(20):\n"
    "    try: held.append(conn())\n"
    "    except OSError: pass\n"
    "for s in held: s.setblocking(False)\n"
    "time.sleep(0.5)\n"
    "closed = 0\n"
    "for s in held:\n"
    "    try:\n"
    "        if s.recv(1) == b'': closed += 1\n"
    "    except BlockingIOError: pass\n"
    "    except OSError: closed += 1\n"
    "print('flood held=%d closed=%d' % (len(held), closed))\n"
    "for s in held: s.close()\n"
    "time.sleep(0.5)\n"
    "ws = []\n"
    "for i in range(6):\n"
    "    s = conn(); s.sendall(req(b'WAIT_%d' % i)); ws.append(s)\n"
    "time.sleep(1)\n"
    "print('pending', sorted(reply(s) for s in ws))\n"
    "sys.stdout.flush()\n";

static void scenario_hostile(void)
{
	char site[64], jit[64], sha[65], want[200], script[8192];
	struct sw_test_dispatch d, dn;
	char *out;

	setup("hostile");
	profile_make(site, sizeof(site));
	value_make(jit, sizeof(jit), "jit");
	put_secret("jit-token", jit);
	sha_hex(jit, sha);
	rule_add(NULL, "JIT_TOKEN", ALLOW, "jit-token");
	for (int i = 0; i < 6; i++) {
		char n[16];

		snprintf(n, sizeof(n), "WAIT_%d", i);
		rule_add(NULL, n, NEVER, NULL);
	}
	/* every allow is preceded by a forged one naming another sandbox */
	forge_decision = 1;
	SW_CHECK(strlen(REQ_FN) + strlen(hostile_py) + 200 < sizeof(script));
	strcpy(script, REQ_FN "cat > /tmp/h.py <<'PYEOF'\n");
	strcat(script, hostile_py);
	strcat(script, "PYEOF\npython3 /tmp/h.py\nreq JIT_TOKEN s 'after the attacks'\n");
	run_step(&d, "r1", "cli_agent_jit", script, 120000);
	/* a cli_agent step may not ask at all */
	run_step(&dn, "r2", "cli_agent", REQ_FN "req JIT_TOKEN s r\n", 120000);
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, d.step_id), "SUCCEEDED", NULL);
	out = stdout_of(d.step_id);
	printf("--- the hostile agent's stdout:\n%s---\n", out);
	has(out, "oversized status=3 code=bad_request");
	has(out, "garbage status=3 code=bad_request");
	has(out, "badname status=3 code=bad_request");
	has(out, "trailing status=3 code=bad_request");
	has(out, "badversion status=3 code=bad_request");
	has(out, "control status=3 code=bad_request");
	has(out, "flood held=20");
	has(out, "pending ['status=2 code=timeout', 'status=2 code=timeout', "
		 "'status=2 code=timeout', 'status=2 code=timeout', 'status=3 code=bad_request', "
		 "'status=3 code=bad_request']");
	snprintf(want, sizeof(want), "JIT_TOKEN rc=0 value=[REDACTED:JIT_TOKEN] sha=%s err=\n",
		 sha);
	has(out, want);
	free(out);
	/* only well-formed requests reached sandboxd: 4 of WAIT_*, then JIT_TOKEN */
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "credential.requested", d.step_id) == 5,
		   "%zu requests reached sandboxd, want 5",
		   sw_test_evlog_count(&stk.evl, "credential.requested", d.step_id));
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "credential.delivered", d.step_id) == 1,
		   "the forged decision changed nothing");
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, dn.step_id), "SUCCEEDED", NULL);
	out = stdout_of(dn.step_id);
	has(out, "JIT_TOKEN rc=2 value= ");
	has(out, "refused (not_jit): not_jit: this is a cli_agent step");
	free(out);
	/* refused before any request was published: credential.refused alone */
	{
		struct sw_test_ev *e =
		    sw_test_evlog_wait(&stk.evl, "credential.refused", dn.step_id, 0, 30);

		SW_REQUIRE(strcmp(js(e->body, "code"), "not_jit") == 0 &&
			       strcmp(js(e->body, "name"), "JIT_TOKEN") == 0 &&
			       sw_test_evlog_count(&stk.evl, "credential.requested", dn.step_id) ==
				   0,
			   "not_jit: %s", js(e->body, "code"));
	}
	{
		char *log = sw_test_file_read(stk.sbd_log, NULL);

		SW_REQUIRE(log != NULL &&
			       strstr(log, "ignored a credential decision that does not "
					   "match its request") != NULL,
			   "sandboxd did not log the forged decision");
		/* identity sealed the forged one too (for its other sandbox):
		 * the host took it for no answer of its request */
		SW_REQUIRE(strstr(log, "ignored a sealed answer for another sandbox or key") !=
			       NULL,
			   "sandboxd did not log the box sealed on the forged decision");
		free(log);
	}
	finish();
}

/* ---- mint: a token minted by OpenBao on a grant ------------------------------------- */

static char bao_dir[600], bao_addr[200], bao_token[200];

static void bao_stop(void)
{
	char q[1400];

	snprintf(q, sizeof(q), "%s/tests/harness/openbao stop %s", getenv("SW_SOURCE_DIR"),
		 bao_dir);
	if (system(q) != 0)
		fprintf(stderr, "openbao stop failed\n");
}

static void line_of(const char *path, char *out, size_t len)
{
	char *t = sw_test_file_read(path, NULL);

	SW_CHECKF(t != NULL, "%s", path);
	snprintf(out, len, "%.*s", (int)strcspn(t, "\n"), t);
	free(t);
}

/* A call to OpenBao with token (the operator's root token when NULL). */
static json_t *bao_http(const char *method, const char *path, const char *body,
			const char *token, long *status)
{
	char url[400], tok[300];
	const char *hdrs[] = {tok, "Content-Type: application/json", NULL};
	struct sw_test_http_reply r = {0};
	json_t *j;

	snprintf(url, sizeof(url), "%s%s", bao_addr, path);
	snprintf(tok, sizeof(tok), "X-Vault-Token: %s", token ? token : bao_token);
	sw_test_http_request(method, url, body, body ? strlen(body) : 0, hdrs, 10, &r);
	*status = r.status;
	j = r.body ? json_loads(r.body, 0, NULL) : NULL;
	free(r.body);
	return j;
}

/* The value of the one key of the sealed answer identity gave on the allow
 * decision of the request for name in step_id (identity.sealed with the
 * credential request's id), opened with the host key (caller frees). */
static char *opened_value(const char *step_id, const char *name)
{
	struct sw_test_ev *rq = cred_event("credential.requested", step_id, name);
	const char *seal = js(rq->body, "request_id"), *hex;
	unsigned char *ct, *m, *v;
	size_t clen, vlen;
	json_t *box;
	char *out;

	for (size_t i = 0; i < stk.evl.n; i++) {
		if (strcmp(stk.evl.ev[i]->type, "identity.sealed") != 0 ||
		    strcmp(js(stk.evl.ev[i]->body, "request_id"), seal) != 0)
			continue;
		hex = js(stk.evl.ev[i]->body, "sealed");
		clen = strlen(hex) / 2;
		SW_CHECK(clen > crypto_box_SEALBYTES && (ct = malloc(clen)) != NULL &&
			 (m = calloc(1, clen)) != NULL);
		SW_CHECK(sodium_hex2bin(ct, clen, hex, strlen(hex), NULL, NULL, NULL) == 0);
		SW_REQUIRE(crypto_box_seal_open(m, ct, clen, stk.host_pk, stk.host_sk) == 0,
			   "the sealed answer does not open with the host key");
		box = json_loadb((char *)m, clen - crypto_box_SEALBYTES, 0, NULL);
		hex = js(json_array_get(json_object_get(box, "keys"), 0), "value_b64");
		SW_CHECK((v = calloc(1, strlen(hex) + 1)) != NULL);
		SW_CHECK(sodium_base642bin(v, strlen(hex), hex, strlen(hex), NULL, &vlen, NULL,
					   sodium_base64_VARIANT_ORIGINAL) == 0);
		out = strndup((char *)v, vlen);
		sodium_memzero(m, clen);
		json_decref(box);
		free(ct);
		free(m);
		free(v);
		return out;
	}
	SW_REQUIRE(0, "no identity.sealed on the allow decision of %s", name);
	return NULL;
}

static void scenario_mint(void)
{
	const char *build = getenv("SW_BUILD_DIR");
	char path[700], body[1024], mints[700], env_vault[300], env_tok[700], env_mints[800];
	char kv[64], sha[65], want[300], allow[64], site[64], *token, *out, *t;
	struct sw_test_dispatch d;
	struct sw_test_ev *f;
	json_t *j;
	long st;
	int port = 0;

	/* OpenBao, a policy that reads one path, a value there */
	snprintf(bao_dir, sizeof(bao_dir), "%s/tests-tmp/jit-mint-bao-%d", build, (int)getpid());
	sw_test_sh("%s/tests/harness/openbao start %s", getenv("SW_SOURCE_DIR"), bao_dir);
	atexit(bao_stop);
	snprintf(path, sizeof(path), "%s/bao.addr", bao_dir);
	line_of(path, bao_addr, sizeof(bao_addr));
	snprintf(path, sizeof(path), "%s/bao.token", bao_dir);
	line_of(path, bao_token, sizeof(bao_token));
	SW_CHECK(sscanf(bao_addr, "http://127.0.0.1:%d", &port) == 1 && port > 0);
	json_decref(bao_http("PUT", "/v1/sys/policies/acl/sagewai-ci-read",
			     "{\"policy\": \"path \\\"secret/data/ci/*\\\" {capabilities = "
			     "[\\\"read\\\"]}\"}",
			     NULL, &st));
	SW_REQUIRE(st == 204 || st == 200, "policy write: HTTP %ld", st);
	{
		unsigned char r[8];

		randombytes_buf(r, sizeof(r));
		snprintf(kv, sizeof(kv), "ci-thing-");
		sodium_bin2hex(kv + 9, sizeof(kv) - 9, r, sizeof(r));
	}
	snprintf(body, sizeof(body), "{\"data\": {\"value\": \"%s\"}}", kv);
	json_decref(bao_http("POST", "/v1/secret/data/ci/thing", body, NULL, &st));
	SW_REQUIRE(st == 200, "kv write: HTTP %ld", st);
	json_decref(bao_http("POST", "/v1/secret/data/other/thing", body, NULL, &st));
	SW_REQUIRE(st == 200, "kv write: HTTP %ld", st);
	/* the operator's mint sources: one for this tenant, one for another */
	snprintf(mints, sizeof(mints), "%s/mints.json", bao_dir);
	sw_test_file_write(
	    mints,
	    "{\"mints\": {\"ci-read\": {\"policies\": [\"sagewai-ci-read\"], \"ttl_s\": 600,"
	    " \"num_uses\": 0, \"tenants\": [\"default\"]},"
	    " \"ci-other\": {\"policies\": [\"sagewai-ci-read\"], \"ttl_s\": 60,"
	    " \"tenants\": [\"someone-else\"]}}}\n",
	    0644);
	snprintf(env_vault, sizeof(env_vault), "SAGEWAI_VAULT_ADDR=%s", bao_addr);
	snprintf(env_tok, sizeof(env_tok), "SAGEWAI_VAULT_TOKEN_FILE=%s/bao.token", bao_dir);
	snprintf(env_mints, sizeof(env_mints), "SAGEWAI_IDENTITY_MINTS_FILE=%s", mints);
	stk.id_env[0] = env_vault;
	stk.id_env[1] = env_tok;
	stk.id_env[2] = env_mints;
	stk.sbd_env[0] = "SAGEWAI_EGRESS_PRIVATE=allow";
	snprintf(allow, sizeof(allow), "127.0.0.1:%d", port);
	spec_extra = json_pack("{s:s, s:[s]}", "network", "egress_only", "egress_allow", allow);
	setup("mint");
	profile_make(site, sizeof(site));
	rule_add(NULL, "BAO_TOKEN", ALLOW, "ci-read");
	rule_add(NULL, "BAO_OTHER", ALLOW, "ci-other");
	snprintf(body, sizeof(body),
		 "%s"
		 "req BAO_TOKEN bao:ci:read 'read the ci values'\n"
			"req BAO_OTHER bao:ci:read 'not offered to this tenant'\n"
			"t=$(sagewai-cred request BAO_TOKEN --scope bao:ci:read --reason again)\n"
			"echo \"read=$(curl -s -H \"X-Vault-Token: $t\" "
			"%s/v1/secret/data/ci/thing | grep -o '\"value\":\"[^\"]*\"')\"\n"
			"echo \"other=$(curl -s -o /dev/null -w '%%{http_code}' -H "
			"\"X-Vault-Token: $t\" %s/v1/secret/data/other/thing)\"\n",
		 REQ_FN, bao_addr, bao_addr);
	run_step(&d, "r1", "cli_agent_jit", body, 120000);
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	out = stdout_of(d.step_id);
	printf("--- the agent's stdout:\n%s---\n", out);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	token = opened_value(d.step_id, "BAO_TOKEN");
	/* from now on every spelling of the token is searched for too */
	sw_test_secret_forbid(token);
	sha_hex(token, sha);
	snprintf(want, sizeof(want), "BAO_TOKEN rc=0 value=[REDACTED:BAO_TOKEN] sha=%s err=\n",
		 sha);
	has(out, want);
	snprintf(want, sizeof(want), "read=\"value\":\"%s\"", kv);
	has(out, want);
	has(out, "other=403");
	has(out, "BAO_OTHER rc=2 value= ");
	has(out, "refused (missing): missing: BAO_OTHER (secret ci-other has no version)");
	{
		struct sw_test_ev *e = cred_event("credential.delivered", d.step_id, "BAO_TOKEN");

		SW_REQUIRE(strcmp(js(e->body, "secret"), "ci-read") == 0 &&
			       json_integer_value(json_object_get(e->body, "version")) == 1,
			   "delivered names the source, version 1");
	}
	/* every event seen so far, searched again with the token known */
	for (size_t i = 0; i < stk.evl.n; i++) {
		t = json_dumps(stk.evl.ev[i]->body, JSON_COMPACT);
		SW_REQUIRE(t != NULL && sw_test_secret_leak(t, strlen(t)) == NULL,
			   "a %s event holds the token", stk.evl.ev[i]->type);
		free(t);
	}
	/* two tokens minted (the second request got its own), accessors only */
	SW_REQUIRE(sw_test_pg_long(stk.db_dsn, "SELECT count(*) FROM identity.minted WHERE"
					       " source = 'ci-read' AND tenant = 'default'") == 2,
		   "not two minted rows");
	/* the step is over: both are revoked */
	{
		int64_t until = sw_mono_ms() + 30000;

		snprintf(body, sizeof(body), "{\"token\": \"%s\"}", token);
		for (;;) {
			json_decref(bao_http("POST", "/v1/auth/token/lookup", body, NULL, &st));
			if (st != 200)
				break;
			SW_REQUIRE(sw_mono_ms() < until, "the minted token is still valid 30 s after "
				   "its step finished");
			sw_test_msleep(200);
		}
		SW_REQUIRE(st == 403 || st == 400, "lookup of the revoked token: HTTP %ld", st);
		json_decref(bao_http("GET", "/v1/secret/data/ci/thing", NULL, token, &st));
		SW_REQUIRE(st == 403, "the revoked token still reads: HTTP %ld", st);
		while (sw_test_pg_long(stk.db_dsn, "SELECT count(*) FROM identity.minted WHERE"
						   " revoked_at IS NULL") != 0) {
			SW_REQUIRE(sw_mono_ms() < until, "minted rows not marked revoked");
			sw_test_msleep(200);
		}
	}
	j = bao_http("GET", "/v1/sys/policies/acl/sagewai-ci-read", NULL, NULL, &st);
	json_decref(j);
	free(token);
	free(out);
	/* the step's end (step.finished of the attempt; sandboxd ignores one it
	 * did not send) revokes at once, and a token asked for after it is
	 * revoked before it is handed out */
	{
		struct sw_test_dispatch d2;
		char *tok1;

		snprintf(body, sizeof(body),
			 "t=$(sagewai-cred request BAO_TOKEN --scope bao:ci:read --reason first)\n"
			 "echo \"first=$? len=${#t}\"\n"
			 "sleep 5\n"
			 "sagewai-cred request BAO_TOKEN --scope bao:ci:read --reason late "
			 "2>/tmp/err >/dev/null; echo \"second=$? $(cat /tmp/err)\"\n"
			 "echo \"first_after=$(curl -s -o /dev/null -w '%%{http_code}' -H "
			 "\"X-Vault-Token: $t\" %s/v1/secret/data/ci/thing)\"\n",
			 bao_addr);
		run_step(&d2, "r2", "cli_agent_jit", body, 120000);
		cred_event("credential.delivered", d2.step_id, "BAO_TOKEN");
		produce("sagewai.steps", "step.finished", "sagewai-sandboxd", d2.run_id, d2.step_id,
			json_pack("{s:s, s:i, s:s, s:n, s:n, s:I}", "step", "fix", "attempt", 1,
				  "status", "SUCCEEDED", "output", "error", "duration_us",
				  (json_int_t)1));
		tok1 = opened_value(d2.step_id, "BAO_TOKEN");
		sw_test_secret_forbid_raw(tok1);
		free(tok1);
		/* the real step.finished comes from sandboxd at the end */
		for (int64_t until = sw_mono_ms() + 60000;;) {
			SW_REQUIRE(sw_mono_ms() < until, "no step.finished of sandboxd for %s",
				   d2.step_id);
			f = NULL;
			for (size_t i = 0; i < stk.evl.n; i++)
				if (strcmp(stk.evl.ev[i]->type, "step.finished") == 0 &&
				    strcmp(stk.evl.ev[i]->step_id, d2.step_id) == 0 &&
				    strcmp(js(json_object_get(stk.evl.ev[i]->body, "header"),
					      "producer"),
					   "sagewai-sandboxd") == 0 &&
				    json_integer_value(
					json_object_get(stk.evl.ev[i]->body, "duration_us")) != 1)
					f = stk.evl.ev[i];
			if (f != NULL)
				break;
			sw_test_evlog_poll(&stk.evl, 200);
		}
		out = stdout_of(d2.step_id);
		printf("--- the second agent's stdout:\n%s---\n", out);
		has(out, "first=0 len=");
		has(out, "second=2 sagewai-cred: refused (revoked): revoked: backend vault mint for "
			 "BAO_TOKEN (secret ci-read): the step has ended; the token was revoked");
		has(out, "first_after=403");
		free(out);
		SW_REQUIRE(sw_test_pg_long(stk.db_dsn, "SELECT count(*) FROM identity.minted") ==
			       4,
			   "not four minted rows");
		{
			int64_t until = sw_mono_ms() + 30000;

			while (sw_test_pg_long(stk.db_dsn,
					       "SELECT count(*) FROM identity.minted WHERE"
					       " revoked_at IS NULL") != 0) {
				SW_REQUIRE(sw_mono_ms() < until, "minted rows not marked revoked");
				sw_test_msleep(200);
			}
		}
	}
	finish();
}

static void scenario_mint_cleanup(void)
{
	json_decref(spec_extra);
	spec_extra = NULL;
}

static void scenario_mint_all(void)
{
	scenario_mint();
	scenario_mint_cleanup();
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
	    {"flow", scenario_flow},
	    {"timeout", scenario_timeout},
	    {"concurrent", scenario_concurrent},
	    {"hostile", scenario_hostile},
	    {"mint", scenario_mint_all},
	};

	sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]))
	    ->fn();
	return 0;
}
