/*
 * Black-box tests of sagewai-sandboxd's identity_scoped mode over the
 * harness's Kafka and PostgreSQL, with real bubblewrap sandboxes. The test
 * program plays the identity service: it reads identity.seal_requested from
 * sagewai.identity and answers on sagewai.identity.sealed with boxes sealed
 * to the host key it gave sandboxd (SAGEWAI_SANDBOXD_SEAL_KEY_FILE) -- or
 * with refusals, silence, and forged boxes. One scenario per argument:
 *
 *   inject     the command sees the injected values (sha256 of $TOKEN, a
 *              plain knob), an identity key wins over the step's own env of
 *              that name; the seal request names the sandbox, our host key
 *              and exactly the pins; identity.injected lists the keys with
 *              their MACs; the sandbox came from the warm pool and is
 *              destroyed after the step, never handed out again
 *   redact     a secret printed raw, split across two writes with a sleep
 *              between, inside lines, as a multi-line value, and as hex,
 *              base64 and percent encodings, on stdout and stderr: each is
 *              [REDACTED:KEY] in sandbox.output and in step.finished's output
 *              or error; no message on any topic, and no line of sandboxd's
 *              log, holds a value in any of those spellings
 *   refuse     ok=false (revoked) -> the step fails "revoked: TOKEN" and
 *              its sandbox is destroyed; the next step is served
 *   timeout    no answer -> the step fails after the seal timeout
 *              ("identity service did not answer"); garbage on the identity
 *              topics is ignored; the next step is served
 *   forged     a box sealed to another key, for another sandbox, step or
 *              request id, with a key more, a key less or another version,
 *              an answer to nobody's request, a well-formed box holding
 *              another value than pinned (its MAC, under the deployment's
 *              MAC key sandboxd is given, differs): each step fails (or
 *              times out), no identity.injected, the command never runs
 *   revoke     a step sleeps holding the secret: a soft revocation, a hard
 *              one of another stk.tenant or version, and one of a stk.tenant's
 *              secret of the same name as a system key leave it running; a
 *              hard one kills it ("revoked: TOKEN"), identity.revoke_killed
 *              follows, no process holds the value any more; a system key is
 *              killed by a revocation of scope _system; a revocation while
 *              the seal request is in flight fails the step before any
 *              injection, and the late answer is ignored
 *   nokey      without a seal key identity_scoped steps are not taken; a
 *              group-readable or malformed seal key file, or a malformed MAC
 *              key file, stops sandboxd at start
 *   hostile    a crafted step.dispatched.identity (not JSON, not an array,
 *              wrong types, unknown keys, reserved names, duplicates, huge,
 *              too many keys, empty; an identity on a sandboxed step): each
 *              fails bad_input before anything starts; sandboxd serves on
 *   cross      (attack) a step holding its own value reads every /proc
 *              environ and cmdline it can see while another step holding
 *              another value runs: it finds its own, never the other's
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

static struct sw_test_stack stk;     /* its stk.tenant is this run's own, so that
				      * revocations of parallel runs of the test do not meet */
static const char *sbd_seal_timeout; /* SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS, or NULL */
static const char *sbd_mac_file;     /* SAGEWAI_SECRET_MAC_KEY_FILE, NULL: mac_file */
static struct sw_test_sender tx;

static unsigned char other_pk[crypto_box_PUBLICKEYBYTES], other_sk[crypto_box_SECRETKEYBYTES];

/* ---- the values, forbidden in every spelling (sw_test_secret_*) -------- */

static char token[64];	   /* TOKEN's value */
static char token2[64];	   /* another step's TOKEN (cross, forged) */
static char sys_token[64]; /* a system key's value */
static char pem[200];	   /* a multi-line value */
static char pem_line[64];  /* its distinctive middle line */

static void values_make(void)
{
	unsigned char r[12];
	char hex[25];

	/* '/', '+', '=', ':' and '!' make every encoding differ from the value */
	sw_test_secret_new(token, sizeof(token), "swtok/", "+k=v:!");
	sw_test_secret_new(token2, sizeof(token2), "swtwo/", "+k=v:!");
	sw_test_secret_new(sys_token, sizeof(sys_token), "swsys/", "+k=v:!");
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(pem_line, sizeof(pem_line), "MIIpem%sQQ", hex);
	snprintf(pem, sizeof(pem), "-----BEGIN TEST KEY-----\n%s\n-----END TEST KEY-----",
		 pem_line);
	sw_test_secret_forbid_raw(pem_line);
}

/* ---- keys of a step and the identity service we play ---------------------- */

enum policy {
	ANSWER_OK,
	ANSWER_REFUSE,	      /* ok=false, revoked */
	ANSWER_NONE,	      /* silence */
	ANSWER_LATER,	      /* kept; answered by answer_now() */
	ANSWER_WRONG_KEY,     /* sealed to another host's key */
	ANSWER_OTHER_SANDBOX, /* the box names another sandbox */
	ANSWER_OTHER_STEP,    /* the box names another step */
	ANSWER_BOX_REQUEST,   /* the box names another request id */
	ANSWER_EXTRA,	      /* one key more than asked */
	ANSWER_MISSING,	      /* one key less */
	ANSWER_VERSION,	      /* another version than pinned */
	ANSWER_NOT_OURS,      /* an answer to a request nobody made */
	ANSWER_OTHER_VALUE,   /* all in order, but another value than pinned */
};

struct idstep {
	char run_id[64];
	char step_id[128];
	enum policy policy;
	const struct sw_test_idkey *keys;
	size_t nkeys;
	json_t *request; /* the identity.seal_requested seen (owned) */
	int answered;
};

static struct idstep idsteps[64];
static size_t nidsteps;

/* A spec as the scheduler dispatches one (run stolen). */
static json_t *spec(json_t *run)
{
	return json_pack("{s:s, s:i, s:s, s:o, s:[s], s:i}", "workflow", "identity-test",
			 "workflow_version", 1, "uses", "", "run", run, "run_modes",
			 "identity_scoped", "output_max", 1048576);
}

/* Send a step.dispatched of mode with identity (text, "" for none). */
static void dispatch(struct sw_test_dispatch *d, const char *run, const char *step,
		     const char *mode, int64_t timeout_ms, json_t *sp, const char *identity)
{
	sw_test_stack_dispatch(&stk, d, "identity-test", run, step, mode, timeout_ms, sp,
			       identity);
}

/* An identity_scoped step with keys, answered by policy. */
static struct idstep *post(struct sw_test_dispatch *d, const char *run, const char *step,
			   enum policy policy, const struct sw_test_idkey *keys, size_t nkeys,
			   int64_t timeout_ms, json_t *sp)
{
	struct idstep *st;
	char *text = sw_test_identity_text(&stk, keys, nkeys, "deploy");

	SW_CHECK(nidsteps < sizeof(idsteps) / sizeof(idsteps[0]));
	st = &idsteps[nidsteps++];
	memset(st, 0, sizeof(*st));
	snprintf(st->run_id, sizeof(st->run_id), "%s-%s", stk.prefix, run);
	snprintf(st->step_id, sizeof(st->step_id), "%s-%s/%s/1", stk.prefix, run, step);
	st->policy = policy;
	st->keys = keys;
	st->nkeys = nkeys;
	dispatch(d, run, step, "identity_scoped", timeout_ms, sp, text);
	free(text);
	return st;
}

/* Answer st's request as policy says. */
static void answer_now(struct idstep *st, enum policy policy)
{
	struct sw_test_seal_forge f = {0};
	char other[SW_UUID_STRLEN];

	st->answered = 1;
	if (policy == ANSWER_NONE || policy == ANSWER_LATER)
		return;
	if (policy == ANSWER_REFUSE) {
		sw_test_seal_refuse(&stk, st->request, "revoked", "revoked: TOKEN");
		return;
	}
	sw_uuid_v7_str(other);
	f.pk = policy == ANSWER_WRONG_KEY ? other_pk : NULL;
	f.sandbox_id = policy == ANSWER_OTHER_SANDBOX ? other : NULL;
	f.step_id = policy == ANSWER_OTHER_STEP ? "another/step/1" : NULL;
	f.box_request_id = policy == ANSWER_BOX_REQUEST ? other : NULL;
	f.request_id = policy == ANSWER_NOT_OURS ? other : NULL;
	f.extra_key = policy == ANSWER_EXTRA;
	f.drop_first = policy == ANSWER_MISSING;
	f.version_delta = policy == ANSWER_VERSION;
	f.value = policy == ANSWER_OTHER_VALUE ? sys_token : NULL;
	sw_test_seal_answer(&stk, st->request, st->keys, st->nkeys, &f);
}

/* Every message read from any topic: no value in any spelling; and the
 * seal requests of our steps, answered. */
static void on_seen(const rd_kafka_message_t *m, json_t *e)
{
	json_t *h = json_object_get(e, "header");
	const char *type, *sid;

	sw_test_secret_msg_clean(m);
	type = json_string_value(json_object_get(h, "type"));
	sid = json_string_value(json_object_get(h, "step_id"));
	if (type == NULL || sid == NULL || strcmp(type, "identity.seal_requested") != 0)
		return;
	for (size_t i = 0; i < nidsteps; i++) {
		struct idstep *st = &idsteps[i];

		if (strcmp(st->step_id, sid) != 0)
			continue;
		SW_REQUIRE(st->request == NULL, "a second seal request for %s", sid);
		st->request = json_incref(e);
		answer_now(st, st->policy);
	}
}

/* ---- set-up ---------------------------------------------------------------- */

static void setup(const char *name)
{
	sw_test_stack_init(&stk, "sbi", name, NULL, on_seen);
	tx = (struct sw_test_sender){stk.reg, stk.producer, "identity-test", stk.prefix, NULL};
	crypto_box_keypair(other_pk, other_sk);
	values_make();
}

/* Start sandboxd with the seal key file key (NULL: none); wait for its
 * port when expect_start, else for it to exit (its status returned). */
static int sbd_spawn(const char *key, int expect_start)
{
	static char kf[700], mf[700], to[100];
	size_t n = 0;
	int st = 0;

	if (key != NULL) {
		snprintf(kf, sizeof(kf), "SAGEWAI_SANDBOXD_SEAL_KEY_FILE=%s", key);
		stk.sbd_env[n++] = kf;
		snprintf(mf, sizeof(mf), "SAGEWAI_SECRET_MAC_KEY_FILE=%s",
			 sbd_mac_file != NULL ? sbd_mac_file : stk.mac_file);
		stk.sbd_env[n++] = mf;
	} else {
		stk.sbd_env[n++] = "SAGEWAI_SANDBOXD_SEAL_KEY_FILE";
		stk.sbd_env[n++] = "SAGEWAI_SECRET_MAC_KEY_FILE";
	}
	if (sbd_seal_timeout != NULL) {
		snprintf(to, sizeof(to), "SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS=%s", sbd_seal_timeout);
		stk.sbd_env[n++] = to;
	}
	stk.sbd_env[n] = NULL;
	if (expect_start) {
		sw_test_stack_sbd_start(&stk);
		return 0;
	}
	sw_test_stack_sbd_spawn(&stk);
	SW_CHECK(waitpid(stk.sbd_pid, &st, 0) == stk.sbd_pid);
	stk.sbd_pid = -1;
	return st;
}

static void sbd_start(void)
{
	sbd_spawn(stk.seal_file, 1);
}

/* SIGTERM: sandboxd drains and exits 0 (under ASan: nothing leaked) */
static void sbd_stop(void)
{
	sw_test_stack_sbd_stop(&stk);
}

/* A metric of sandboxd's /metrics, -1 if absent. */
static double metric(const char *name)
{
	return sw_test_metric_get(stk.sbd_port, name);
}

/* sandboxd's log holds none of the values, in any spelling */
static void log_clean(void)
{
	sw_test_secret_file_clean(stk.sbd_log, "sandboxd's log");
}

/* sandboxd's log holds text */
static void log_has(const char *text)
{
	char *buf = sw_test_file_read(stk.sbd_log, NULL);

	SW_CHECK(buf != NULL);
	SW_REQUIRE(strstr(buf, text) != NULL, "sandboxd's log lacks '%s'", text);
	free(buf);
}

/* All sandbox.output data of step_id, concatenated in seq order (caller
 * frees); *chunks gets their number. */
static char *output_of(const char *step_id, const char *stream, size_t *chunks)
{
	return sw_test_evlog_output(&stk.evl, step_id, stream, chunks);
}

static const char *stdout_of(const struct sw_test_ev *f)
{
	const char *s = json_string_value(json_object_get(f->output, "stdout"));

	SW_REQUIRE(s != NULL, "%s: no stdout in the output", f->step_id);
	return s;
}

/* The sandbox id of step_id's sandbox.acquired. */
static const char *sandbox_of(const char *step_id)
{
	struct sw_test_ev *a = sw_test_evlog_wait(&stk.evl, "sandbox.acquired", step_id, 0, 60);

	return json_string_value(json_object_get(a->body, "sandbox_id"));
}

/* Nothing of step_id ran: no identity.injected, no sandbox.exited. */
static void never_ran(const char *step_id)
{
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "identity.injected", step_id) == 0,
		   "%s: identity.injected", step_id);
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "sandbox.exited", step_id) == 0 &&
		       sw_test_evlog_count(&stk.evl, "sandbox.output", step_id) == 0,
		   "%s: its command ran", step_id);
}

/* Processes whose environment holds needle (root only: -1 otherwise). */
static int procs_holding(const char *needle)
{
	if (geteuid() != 0)
		return -1;
	return sw_test_procs_holding("environ", needle);
}

static void sha256_hex(const char *v, char out[65])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const unsigned char *)v, strlen(v));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* ---- scenarios ---------------------------------------------------------------- */

static struct sw_test_idkey k_token[2];
static struct sw_test_idkey k_sys[1];

static void keys_init(void)
{
	k_token[0] = (struct sw_test_idkey){"TOKEN", "workflow", "gh_token", 3, token};
	k_token[1] =
	    (struct sw_test_idkey){"API_BASE", "workflow", NULL, 0, "https://api.internal"};
	k_sys[0] = (struct sw_test_idkey){"SYS_TOKEN", "system", "gh_token", 1, sys_token};
}

static const char env_snippet[] =
    "import hashlib, os\n"
    "env = open('/proc/self/environ').read().split('\\0')\n"
    "print(hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest())\n"
    "print('plain=' + os.environ['API_BASE'])\n"
    "print(','.join(sorted(e.split('=')[0] for e in env if e)))\n";

static void scenario_inject(void)
{
	struct sw_test_dispatch d1, d2, d3;
	struct sw_test_ev *f, *inj, *acq;
	struct idstep *st;
	char sha[65], mac[65], line[256];
	const char *sid1, *sid2, *out;
	json_t *keys, *sp;

	setup("inject");
	keys_init();
	sbd_start();
	/* the public half of the key, for the operator's hosts file */
	{
		char pk[65], want[120];

		sodium_bin2hex(pk, sizeof(pk), stk.host_pk, sizeof(stk.host_pk));
		snprintf(want, sizeof(want), "\"identity_scoped\":\"on\",\"seal_public_key\":\"%s\"",
			 pk);
		log_has(want);
	}
	/* the warm pool (1 sandbox of base/none) is full before the step */
	for (int i = 0; i < 100 && metric("sagewai_sandboxd_warm_ready") < 1; i++)
		sw_test_msleep(100);
	sp = spec(json_pack("[s, s, s]", "python3", "-c", env_snippet));
	/* the step's own TOKEN loses to the identity's */
	json_object_set_new(sp, "env", json_pack("{s:s, s:s}", "TOKEN", "from-the-spec", "OTHER",
						 "x"));
	st = post(&d1, "a", "deploy", ANSWER_OK, k_token, 2, 60000, sp);
	f = sw_test_evlog_finished(&stk.evl, d1.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	out = stdout_of(f);
	sha256_hex(token, sha);
	snprintf(line, sizeof(line), "%s\nplain=https://api.internal\n"
				     "API_BASE,HOME,OTHER,PATH,TOKEN\n",
		 sha);
	SW_REQUIRE(strcmp(out, line) == 0, "stdout is '%s', expected '%s'", out, line);

	/* the seal request: our key, the sandbox, exactly the pins */
	SW_REQUIRE(st->request != NULL, "no seal request seen");
	{
		json_t *r = st->request, *k0;
		char pk[65];

		sodium_bin2hex(pk, sizeof(pk), stk.host_pk, sizeof(stk.host_pk));
		sid1 = sandbox_of(d1.step_id);
		SW_REQUIRE(strcmp(json_string_value(json_object_get(r, "host_key")), pk) == 0,
			   "host_key is not ours");
		SW_REQUIRE(strcmp(json_string_value(json_object_get(r, "sandbox_id")), sid1) == 0,
			   "seal request names another sandbox");
		SW_REQUIRE(strcmp(json_string_value(json_object_get(r, "step")), "deploy") == 0,
			   "seal request step");
		keys = json_object_get(r, "keys");
		k0 = json_array_get(keys, 0);
		SW_REQUIRE(json_array_size(keys) == 1 &&
			       strcmp(json_string_value(json_object_get(k0, "env")), "TOKEN") == 0 &&
			       strcmp(json_string_value(json_object_get(k0, "secret")),
				      "gh_token") == 0 &&
			       json_integer_value(json_object_get(k0, "version")) == 3,
			   "seal request keys are not exactly the pin TOKEN gh_token v3");
		SW_REQUIRE(strcmp(json_string_value(
				      json_object_get(json_object_get(r, "header"), "tenant")),
				  stk.tenant) == 0,
			   "seal request tenant");
	}
	/* identity.injected: the keys and their MACs */
	inj = sw_test_evlog_wait(&stk.evl, "identity.injected", d1.step_id, 0, 30);
	keys = json_object_get(inj->body, "keys");
	sw_test_stack_mac_hex(&stk, token, mac);
	SW_REQUIRE(json_array_size(keys) == 2 &&
		       strcmp(json_string_value(json_object_get(json_array_get(keys, 0), "mac")),
			      mac) == 0 &&
		       strcmp(json_string_value(json_object_get(json_array_get(keys, 1), "env")),
			      "API_BASE") == 0 &&
		       strcmp(json_string_value(json_object_get(json_array_get(keys, 1), "mac")),
			      "") == 0 &&
		       strcmp(json_string_value(json_object_get(inj->body, "sandbox_id")), sid1) ==
			   0,
		   "identity.injected is not {TOKEN with its MAC, API_BASE plain}");
	/* a warm sandbox, destroyed after the step */
	acq = sw_test_evlog_find(&stk.evl, "sandbox.acquired", d1.step_id, 0);
	SW_REQUIRE(json_is_true(json_object_get(acq->body, "warm")),
		   "the step did not get a warm sandbox");
	sw_test_evlog_wait(&stk.evl, "sandbox.released", d1.step_id, 0, 60);
	SW_REQUIRE(metric("sagewai_sandboxd_acquire_hits") >= 1, "no warm acquire counted");
	SW_REQUIRE(metric("sagewai_sandboxd_identity_injected_total") == 1,
		   "identity_injected_total is not 1");
	/* the next steps get other sandboxes: that one never went back */
	post(&d2, "b", "deploy", ANSWER_OK, k_token, 2, 60000,
	     spec(json_pack("[s, s, s]", "python3", "-c", env_snippet)));
	sw_test_dispatch_post(&tx, &d3, "c", "plain", "sandboxed", 60000,
			      json_pack("{s:s, s:i, s:s, s:s, s:[s]}", "workflow", "identity-test",
					"workflow_version", 1, "uses", "", "run",
					"echo ${TOKEN:-unset}", "run_modes", "sandboxed"));
	f = sw_test_evlog_finished(&stk.evl, d2.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strncmp(stdout_of(f), sha, 64) == 0, "second step did not see TOKEN");
	f = sw_test_evlog_finished(&stk.evl, d3.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "unset\n") == 0,
		   "a sandboxed step saw an identity: '%s'", stdout_of(f));
	sid2 = sandbox_of(d2.step_id);
	SW_REQUIRE(strcmp(sid1, sid2) != 0 && strcmp(sid1, sandbox_of(d3.step_id)) != 0,
		   "a sandbox served two steps");
	log_clean();
	sbd_stop();
}

/* Each way a step may print a value, as (name, command, stream checked). */
static void scenario_redact(void)
{
	static const char split_py[] =
	    "import os, sys, time\n"
	    "t = os.environ['TOKEN']\n"
	    "sys.stdout.write('before:' + t[:9]); sys.stdout.flush(); time.sleep(1)\n"
	    "sys.stdout.write(t[9:] + ':after\\n'); sys.stdout.flush()\n";
	static const char enc_py[] =
	    "import os, base64, binascii, urllib.parse\n"
	    "t = os.environ['TOKEN'].encode()\n"
	    "print(binascii.hexlify(t).decode())\n"
	    "print(binascii.hexlify(t).decode().upper())\n"
	    "print(base64.b64encode(t).decode())\n"
	    "print(base64.urlsafe_b64encode(t).decode())\n"
	    "print(urllib.parse.quote(t, safe=''))\n"
	    "print(urllib.parse.quote(t, safe='').lower())\n"
	    "print(urllib.parse.quote_plus(t.decode()))\n";
	struct sw_test_idkey k_pem[2];
	struct sw_test_dispatch d_raw, d_split, d_lines, d_pem, d_enc, d_err;
	struct sw_test_ev *f;
	size_t chunks;
	char *o;
	const char *s;

	setup("redact");
	keys_init();
	k_pem[0] = k_token[0];
	k_pem[1] = (struct sw_test_idkey){"PEM", "user", "deploy_key", 1, pem};
	sbd_start();
	post(&d_raw, "raw", "raw", ANSWER_OK, k_token, 1, 60000,
	     spec(json_string("printf '%s\\n' \"$TOKEN\"")));
	post(&d_split, "split", "split", ANSWER_OK, k_token, 1, 60000,
	     spec(json_pack("[s, s, s]", "python3", "-c", split_py)));
	post(&d_lines, "lines", "lines", ANSWER_OK, k_token, 1, 60000,
	     spec(json_string("printf 'line one\\n%s\\nline three %s end\\n' \"$TOKEN\" "
			      "\"$TOKEN\"")));
	post(&d_pem, "pem", "pem", ANSWER_OK, k_pem, 2, 60000,
	     spec(json_string("printf 'key:\\n%s\\ndone\\n' \"$PEM\"")));
	post(&d_enc, "enc", "enc", ANSWER_OK, k_token, 1, 60000,
	     spec(json_pack("[s, s, s]", "python3", "-c", enc_py)));
	post(&d_err, "err", "err", ANSWER_OK, k_token, 1, 60000,
	     spec(json_string("echo fine; printf 'cannot use %s\\n' \"$TOKEN\" >&2; exit 4")));

	f = sw_test_evlog_finished(&stk.evl, d_raw.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "[REDACTED:TOKEN]\n") == 0, "raw: '%s'", stdout_of(f));
	sw_test_evlog_wait(&stk.evl, "sandbox.exited", d_raw.step_id, 0, 30);
	o = output_of(d_raw.step_id, "stdout", &chunks);
	SW_REQUIRE(strcmp(o, "[REDACTED:TOKEN]\n") == 0, "raw sandbox.output: '%s'", o);
	free(o);

	f = sw_test_evlog_finished(&stk.evl, d_split.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "before:[REDACTED:TOKEN]:after\n") == 0, "split: '%s'",
		   stdout_of(f));
	sw_test_evlog_wait(&stk.evl, "sandbox.exited", d_split.step_id, 0, 30);
	o = output_of(d_split.step_id, "stdout", &chunks);
	SW_REQUIRE(strcmp(o, "before:[REDACTED:TOKEN]:after\n") == 0 && chunks >= 2,
		   "split sandbox.output: '%s' in %zu chunks (2 writes a second apart)", o, chunks);
	free(o);

	f = sw_test_evlog_finished(&stk.evl, d_lines.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "line one\n[REDACTED:TOKEN]\nline three [REDACTED:TOKEN] "
					"end\n") == 0,
		   "lines: '%s'", stdout_of(f));

	f = sw_test_evlog_finished(&stk.evl, d_pem.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "key:\n[REDACTED:PEM]\ndone\n") == 0, "pem: '%s'",
		   stdout_of(f));

	f = sw_test_evlog_finished(&stk.evl, d_enc.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	s = stdout_of(f);
	{
		int lines = 0;
		const char *p = s;

		for (; (p = strstr(p, "[REDACTED:TOKEN]\n")) != NULL; p++)
			lines++;
		SW_REQUIRE(lines == 7, "encodings: %d of 7 lines redacted: '%s'", lines, s);
	}
	sw_test_evlog_wait(&stk.evl, "sandbox.exited", d_enc.step_id, 0, 30);
	o = output_of(d_enc.step_id, "stdout", &chunks);
	SW_REQUIRE(strcmp(o, s) == 0, "encodings: sandbox.output '%s' differs from the output", o);
	free(o);

	f = sw_test_evlog_finished(&stk.evl, d_err.step_id);
	sw_test_ev_require(f, "FAILED", "exit_status: ");
	SW_REQUIRE(strstr(f->error, "cannot use [REDACTED:TOKEN]") != NULL, "error: '%s'",
		   f->error);
	sw_test_evlog_wait(&stk.evl, "sandbox.exited", d_err.step_id, 0, 30);
	/* stdout first (seq 0), then stderr */
	o = output_of(d_err.step_id, "stdout", &chunks);
	free(o);
	{
		size_t n = 0;

		for (size_t i = 0; i < stk.evl.n; i++)
			if (strcmp(stk.evl.ev[i]->type, "sandbox.output") == 0 &&
			    strcmp(stk.evl.ev[i]->step_id, d_err.step_id) == 0 &&
			    strstr(json_string_value(json_object_get(stk.evl.ev[i]->body, "data")),
				   "cannot use [REDACTED:TOKEN]") != NULL)
				n++;
		SW_REQUIRE(n == 1, "stderr not redacted in sandbox.output");
	}
	/* everything on every topic has been seen by on_seen; and the log */
	sw_test_evlog_poll(&stk.evl, 2000);
	log_clean();
	sbd_stop();
}

static void scenario_refuse(void)
{
	struct sw_test_dispatch d1, d2;
	struct sw_test_ev *f, *r;

	setup("refuse");
	keys_init();
	sbd_start();
	post(&d1, "no", "deploy", ANSWER_REFUSE, k_token, 2, 60000,
	     spec(json_string("echo ran; printf %s \"$TOKEN\"")));
	f = sw_test_evlog_finished(&stk.evl, d1.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: TOKEN");
	never_ran(d1.step_id);
	r = sw_test_evlog_wait(&stk.evl, "sandbox.released", d1.step_id, 0, 60);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(r->body, "reason")), "failed") == 0,
		   "sandbox released as %s",
		   json_string_value(json_object_get(r->body, "reason")));
	post(&d2, "yes", "deploy", ANSWER_OK, k_token, 2, 60000,
	     spec(json_string("printf '%s\\n' \"$TOKEN\"")));
	f = sw_test_evlog_finished(&stk.evl, d2.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "[REDACTED:TOKEN]\n") == 0, "stdout '%s'", stdout_of(f));
	log_clean();
	sbd_stop();
}

static void scenario_timeout(void)
{
	struct sw_test_dispatch d1, d2, d3;
	struct sw_test_ev *f;
	int64_t t0;

	sbd_seal_timeout = "1500";
	setup("timeout");
	keys_init();
	sbd_start();
	t0 = sw_mono_ms();
	post(&d1, "silent", "deploy", ANSWER_NONE, k_token, 2, 60000,
	     spec(json_string("echo ran")));
	/* garbage on both identity topics on the way */
	sw_test_kafka_send(stk.producer, "sagewai.identity.sealed", "x", "garbage", 7);
	sw_test_kafka_send(stk.producer, "sagewai.identity", "x", "\xc3\x01garbage", 9);
	f = sw_test_evlog_finished(&stk.evl, d1.step_id);
	sw_test_ev_require(f, "FAILED", "identity_unavailable: identity service did not answer");
	SW_REQUIRE(sw_mono_ms() - t0 >= 1500, "failed before the seal timeout");
	never_ran(d1.step_id);
	sw_test_evlog_wait(&stk.evl, "sandbox.released", d1.step_id, 0, 60);
	post(&d2, "ok", "deploy", ANSWER_OK, k_token, 2, 60000, spec(json_string("echo ran")));
	sw_test_dispatch_post(&tx, &d3, "plain", "plain", "sandboxed", 60000,
			      json_pack("{s:s, s:i, s:s, s:s, s:[s]}", "workflow", "identity-test",
					"workflow_version", 1, "uses", "", "run", "echo ran",
					"run_modes", "sandboxed"));
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, d2.step_id), "SUCCEEDED", NULL);
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, d3.step_id), "SUCCEEDED", NULL);
	SW_REQUIRE(metric("sagewai_sandboxd_identity_seal_timeouts_total") == 1,
		   "no seal timeout counted");
	log_clean();
	sbd_stop();
}

static void scenario_forged(void)
{
	static const struct {
		enum policy p;
		const char *name;
		const char *error; /* stk.prefix of the step's error */
	} cases[] = {
	    {ANSWER_WRONG_KEY, "wrongkey", "identity_error: the sealed box does not open"},
	    {ANSWER_OTHER_SANDBOX, "sandbox", "identity_error: the sealed box is for another"},
	    {ANSWER_OTHER_STEP, "step", "identity_error: the sealed box is for another"},
	    {ANSWER_BOX_REQUEST, "request", "identity_error: the sealed box is for another"},
	    {ANSWER_EXTRA, "extra", "identity_error: the sealed box holds 2 keys, 1 were asked"},
	    {ANSWER_MISSING, "missing", "identity_error: the sealed box holds 0 keys"},
	    {ANSWER_VERSION, "version", "identity_error: sealed key 0 is not one that was asked"},
	    {ANSWER_NOT_OURS, "notours", "identity_unavailable: identity service did not answer"},
	    {ANSWER_OTHER_VALUE, "value", "identity_error: the value of TOKEN does not match its "
					  "pinned MAC"},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	struct sw_test_dispatch d[16], ok;
	struct sw_test_idkey k2[2];

	sbd_seal_timeout = "4000";
	setup("forged");
	keys_init();
	k2[0] = (struct sw_test_idkey){"TOKEN", "workflow", "gh_token", 3, token2};
	k2[1] = k_token[1];
	sbd_start();
	for (size_t i = 0; i < n; i++)
		post(&d[i], cases[i].name, "deploy", cases[i].p, k2, 2, 60000,
		     spec(json_string("echo ran; printf %s \"$TOKEN\"")));
	for (size_t i = 0; i < n; i++) {
		struct sw_test_ev *f = sw_test_evlog_finished(&stk.evl, d[i].step_id);

		sw_test_ev_require(f, "FAILED", cases[i].error);
		never_ran(d[i].step_id);
		sw_test_evlog_wait(&stk.evl, "sandbox.released", d[i].step_id, 0, 60);
	}
	post(&ok, "ok", "deploy", ANSWER_OK, k_token, 2, 60000,
	     spec(json_string("printf '%s\\n' \"$TOKEN\"")));
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, ok.step_id), "SUCCEEDED", NULL);
	log_clean();
	sbd_stop();
}

static void revoke_secret(const char *scope, const char *name, int version, int hard)
{
	json_t *o = json_pack("{s:s, s:i, s:b, s:s, s:b}", "name", name, "version", version,
			      "hard", hard, "actor", "identity-test", "deleted", 0);

	sw_test_stack_emit(&stk, "sagewai.identity", scope, "secret.revoked", "sagewai-identity",
			   scope, NULL, NULL, o);
	sw_test_kafka_flush(stk.producer, 10000);
}

/* No step.finished of step_id within ms (polling meanwhile). */
static void still_running(const char *step_id, int ms)
{
	int64_t until = sw_mono_ms() + ms;

	while (sw_mono_ms() < until)
		sw_test_evlog_poll(&stk.evl, 100);
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.finished", step_id) == 0, "%s ended (%s)",
		   step_id,
		   sw_test_evlog_find(&stk.evl, "step.finished", step_id, 0)->error ?: "-");
}

static void scenario_revoke(void)
{
	struct sw_test_dispatch d1, d2, d3;
	struct sw_test_ev *f, *k, *r;
	struct idstep *late;
	const char *sid;
	int held;

	setup("revoke");
	keys_init();
	sbd_start();
	post(&d1, "hard", "deploy", ANSWER_OK, k_token, 2, 120000,
	     spec(json_string("echo started; sleep 100")));
	post(&d2, "sys", "deploy", ANSWER_OK, k_sys, 1, 120000,
	     spec(json_string("echo started; sleep 100")));
	sw_test_evlog_wait(&stk.evl, "sandbox.output", d1.step_id, 0, 60);
	sw_test_evlog_wait(&stk.evl, "sandbox.output", d2.step_id, 0, 60);
	/* the control: the sleeping command holds the value */
	held = procs_holding(token);
	SW_REQUIRE(held != 0, "no process holds the injected value while the step runs");
	/* none of these is for it */
	revoke_secret(stk.tenant, "gh_token", 0, 0);	   /* soft */
	revoke_secret("another-tenant", "gh_token", 0, 1); /* another stk.tenant's */
	revoke_secret(stk.tenant, "gh_token", 2, 1);	   /* another version */
	revoke_secret(stk.tenant, "other_secret", 0, 1);
	still_running(d1.step_id, 3000);
	/* the system key is not the stk.tenant's gh_token... */
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.finished", d2.step_id) == 0,
		   "a stk.tenant's revocation killed a system key");
	/* ...this is */
	revoke_secret(stk.tenant, "gh_token", 3, 1);
	f = sw_test_evlog_finished(&stk.evl, d1.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: TOKEN");
	sid = sandbox_of(d1.step_id);
	k = sw_test_evlog_wait(&stk.evl, "identity.revoke_killed", d1.step_id, 0, 30);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(k->body, "sandbox_id")), sid) == 0 &&
		       strcmp(json_string_value(json_object_get(k->body, "secret")), "gh_token") ==
			   0 &&
		       json_integer_value(json_object_get(k->body, "version")) == 3,
		   "identity.revoke_killed does not name the sandbox and the secret");
	printf("hard revocation: sandbox gone after elapsed_ms=%lld\n",
	       (long long)json_integer_value(json_object_get(k->body, "elapsed_ms")));
	r = sw_test_evlog_wait(&stk.evl, "sandbox.released", d1.step_id, 0, 30);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(r->body, "reason")), "revoked") == 0,
		   "released as %s", json_string_value(json_object_get(r->body, "reason")));
	if (held > 0)
		SW_REQUIRE(procs_holding(token) == 0, "a process still holds the revoked value");
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.finished", d2.step_id) == 0,
		   "the system key's step ended too");
	/* operator-wide secrets are scope _system */
	revoke_secret("_system", "gh_token", 0, 1);
	f = sw_test_evlog_finished(&stk.evl, d2.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: SYS_TOKEN");
	sw_test_evlog_wait(&stk.evl, "identity.revoke_killed", d2.step_id, 0, 30);

	/* a revocation while the seal request is in flight: never injected */
	late = post(&d3, "late", "deploy", ANSWER_LATER, k_token, 2, 60000,
		    spec(json_string("echo ran")));
	while (late->request == NULL)
		sw_test_evlog_poll(&stk.evl, 100);
	revoke_secret(stk.tenant, "gh_token", 0, 0);
	f = sw_test_evlog_finished(&stk.evl, d3.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: TOKEN");
	answer_now(late, ANSWER_OK);
	sw_test_kafka_flush(stk.producer, 10000);
	sw_test_evlog_poll(&stk.evl, 2000);
	never_ran(d3.step_id);
	log_clean();
	sbd_stop();
}

static void scenario_nokey(void)
{
	struct sw_test_dispatch d1, d2;
	char bad[700];
	int st;

	setup("nokey");
	keys_init();
	/* a key others may read, or that is no key: sandboxd does not start */
	snprintf(bad, sizeof(bad), "%s/open.key", stk.dir);
	sw_test_file_write(bad, "0101010101010101010101010101010101010101010101010101010101010101",
			   0644);
	st = sbd_spawn(bad, 0);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd started with a 0644 key");
	log_has("SAGEWAI_SANDBOXD_SEAL_KEY_FILE: ");
	log_has("mode 0644 grants group or others access");
	snprintf(bad, sizeof(bad), "%s/short.key", stk.dir);
	sw_test_file_write(bad, "0101", 0600);
	st = sbd_spawn(bad, 0);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd started with a short key");
	snprintf(bad, sizeof(bad), "%s/zero.key", stk.dir);
	sw_test_file_write(bad, "0000000000000000000000000000000000000000000000000000000000000000",
			   0600);
	st = sbd_spawn(bad, 0);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd started with a zero key");
	log_has("SAGEWAI_SANDBOXD_SEAL_KEY_FILE: not a key");
	/* a good seal key, a bad MAC key */
	sbd_mac_file = bad;
	st = sbd_spawn(stk.seal_file, 0);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd started with a zero MAC key");
	log_has("SAGEWAI_SECRET_MAC_KEY_FILE: not a key");
	sbd_mac_file = NULL;
	/* without a key: identity_scoped is not taken */
	sbd_spawn(NULL, 1);
	log_has("\"identity_scoped\":\"off\"");
	post(&d1, "id", "deploy", ANSWER_OK, k_token, 2, 60000, spec(json_string("echo ran")));
	sw_test_dispatch_post(&tx, &d2, "plain", "plain", "sandboxed", 60000,
			      json_pack("{s:s, s:i, s:s, s:s, s:[s]}", "workflow", "identity-test",
					"workflow_version", 1, "uses", "", "run", "echo ran",
					"run_modes", "sandboxed"));
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, d2.step_id), "SUCCEEDED", NULL);
	still_running(d1.step_id, 3000);
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.started", d1.step_id) == 0 &&
		       sw_test_evlog_count(&stk.evl, "identity.seal_requested", d1.step_id) == 0,
		   "an identity_scoped step was taken without a seal key");
	sbd_stop();
}

static void scenario_hostile(void)
{
	static const char *const bad[] = {
	    "{not json",
	    "{\"env\": \"TOKEN\"}",
	    "[1]",
	    "[{\"env\": \"TOKEN\", \"level\": \"workflow\", \"kind\": \"secret\", \"secret\": "
	    "\"gh_token\", \"version\": \"3\", \"mac\": "
	    "\"00000000000000000000000000000000000000000000000000000000000000aa\"}]",
	    "[{\"env\": \"TOKEN\", \"level\": \"workflow\", \"kind\": \"secret\", \"secret\": "
	    "\"gh_token\", \"version\": 3, \"mac\": "
	    "\"00000000000000000000000000000000000000000000000000000000000000aa\", \"extra\": 1}]",
	    "[{\"env\": \"LD_PRELOAD\", \"level\": \"workflow\", \"kind\": \"plain\", \"value\": "
	    "\"/tmp/x.so\"}]",
	    "[{\"env\": \"PATH\", \"level\": \"workflow\", \"kind\": \"plain\", \"value\": \"/x\"}]",
	    "[{\"env\": \"A B\", \"level\": \"workflow\", \"kind\": \"plain\", \"value\": \"x\"}]",
	    "[{\"env\": \"TOKEN\", \"level\": \"root\", \"kind\": \"plain\", \"value\": \"x\"}]",
	    "[{\"env\": \"TOKEN\", \"level\": \"workflow\", \"kind\": \"magic\", \"value\": "
	    "\"x\"}]",
	    "[{\"env\": \"TOKEN\", \"level\": \"workflow\", \"kind\": \"secret\", \"secret\": "
	    "\"gh_token\", \"version\": 3}]",
	    "[{\"env\": \"TOKEN\", \"level\": \"workflow\", \"kind\": \"secret\", \"secret\": "
	    "\"../etc\", \"version\": 3, \"mac\": "
	    "\"00000000000000000000000000000000000000000000000000000000000000aa\"}]",
	    "[{\"env\": \"TOKEN\", \"level\": \"workflow\", \"kind\": \"plain\", \"value\": \"a\", "
	    "\"secret\": \"gh_token\"}]",
	    "[{\"env\": \"TOKEN\", \"level\": \"workflow\", \"kind\": \"plain\", \"value\": "
	    "\"a\\u0000b\"}]",
	    "[{\"env\": \"X\", \"level\": \"workflow\", \"kind\": \"plain\", \"value\": \"1\"}, "
	    "{\"env\": \"X\", \"level\": \"user\", \"kind\": \"plain\", \"value\": \"2\"}]",
	    "",
	};
	size_t n = sizeof(bad) / sizeof(bad[0]), i;
	struct sw_test_dispatch d[24], dok, dsb;
	char *huge, *many;
	size_t o;

	setup("hostile");
	keys_init();
	sbd_start();
	for (i = 0; i < n; i++) {
		char run[16];

		snprintf(run, sizeof(run), "bad%zu", i);
		dispatch(&d[i], run, "deploy", "identity_scoped", 60000,
			 spec(json_string("echo ran")), bad[i]);
	}
	/* 300 kB of identity, and 65 keys */
	huge = malloc(300001);
	memset(huge, ' ', 300000);
	huge[0] = '[';
	huge[299999] = ']';
	huge[300000] = '\0';
	dispatch(&d[n], "huge", "deploy", "identity_scoped", 60000, spec(json_string("echo ran")),
		 huge);
	free(huge);
	many = malloc(65 * 80 + 8);
	o = (size_t)sprintf(many, "[");
	for (i = 0; i < 65; i++)
		o += (size_t)sprintf(many + o,
				     "%s{\"env\":\"K%zu\",\"level\":\"user\",\"kind\":\"plain\","
				     "\"value\":\"v\"}",
				     i ? "," : "", i);
	sprintf(many + o, "]");
	dispatch(&d[n + 1], "many", "deploy", "identity_scoped", 60000,
		 spec(json_string("echo ran")), many);
	free(many);
	/* an identity on a sandboxed step */
	dispatch(&dsb, "sandboxed", "deploy", "sandboxed", 60000, spec(json_string("echo ran")),
		 "[{\"env\": \"X\", \"level\": \"user\", \"kind\": \"plain\", \"value\": \"1\"}]");
	for (i = 0; i < n + 2; i++) {
		struct sw_test_ev *f = sw_test_evlog_finished(&stk.evl, d[i].step_id);

		sw_test_ev_require(f, "FAILED", "bad_input: ");
		printf("hostile identity %zu: %s\n", i, f->error);
		SW_REQUIRE(strstr(f->error, "identity") != NULL, "error does not say identity: %s",
			   f->error);
		SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.started", d[i].step_id) == 0,
			   "a refused step was started");
	}
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, dsb.step_id), "FAILED",
			   "bad_input: an identity is given for a sandboxed step");
	post(&dok, "ok", "deploy", ANSWER_OK, k_token, 2, 60000,
	     spec(json_string("printf '%s\\n' \"$TOKEN\"")));
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, dok.step_id), "SUCCEEDED", NULL);
	SW_CHECK(waitpid(stk.sbd_pid, NULL, WNOHANG) == 0);
	sbd_stop();
}

/* (attack) One step reads what it can of every process it sees while
 * another step, holding another value, runs: its own value shows up (so
 * the probe works), the other's never (on_seen would see it raw). */
static void scenario_cross(void)
{
	static const char probe[] =
	    "for p in /proc/[0-9]* /proc/self; do cat $p/environ $p/cmdline 2>/dev/null | "
	    "tr '\\0' '\\n'; done; cat /proc/1/environ 2>&1; ls /proc | tr '\\n' ' '";
	struct sw_test_idkey ka[1], kb[1];
	struct sw_test_dispatch da, db;
	struct sw_test_ev *f;

	setup("cross");
	keys_init();
	ka[0] = (struct sw_test_idkey){"TOKEN", "workflow", "gh_token", 3, token};
	kb[0] = (struct sw_test_idkey){"TOKEN", "workflow", "other_token", 1, token2};
	sbd_start();
	post(&da, "holder", "hold", ANSWER_OK, ka, 1, 120000,
	     spec(json_string("echo started; sleep 100")));
	sw_test_evlog_wait(&stk.evl, "sandbox.output", da.step_id, 0, 60);
	post(&db, "prober", "probe", ANSWER_OK, kb, 1, 60000, spec(json_string(probe)));
	f = sw_test_evlog_finished(&stk.evl, db.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strstr(stdout_of(f), "TOKEN=[REDACTED:TOKEN]") != NULL,
		   "the probe did not even find its own value: %s", stdout_of(f));
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.finished", da.step_id) == 0,
		   "the holder ended before the probe");
	revoke_secret(stk.tenant, "gh_token", 0, 1);
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, da.step_id), "FAILED",
			   "revoked: TOKEN");
	log_clean();
	sbd_stop();
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
	    {"inject", scenario_inject},   {"redact", scenario_redact},
	    {"refuse", scenario_refuse},   {"timeout", scenario_timeout},
	    {"forged", scenario_forged},   {"revoke", scenario_revoke},
	    {"nokey", scenario_nokey},	   {"hostile", scenario_hostile},
	    {"cross", scenario_cross},
	};

	sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]))
	    ->fn();
	return 0;
}
