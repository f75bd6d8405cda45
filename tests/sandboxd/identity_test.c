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
 *              one of another tenant or version, and one of a tenant's
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

static struct sw_event_registry *reg;
static char prefix[48];
static char tenant[64]; /* the steps' tenant: this run's own, so that revocations of
			 * parallel runs of the test do not meet */
static char tmp_dir[512];
static char sbd_log[600];
static char db_dsn[512];
static char group[128];
static char key_file[600];
static char mac_file[600];
static pid_t sbd_pid = -1;
static int sbd_port;
static const char *sbd_seal_timeout; /* SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS, or NULL */
static const char *sbd_mac_file;     /* SAGEWAI_SECRET_MAC_KEY_FILE, NULL: mac_file */
static rd_kafka_t *producer;
static struct sw_test_evlog evl;
static struct sw_test_sender tx;

static unsigned char host_pk[crypto_box_PUBLICKEYBYTES], host_sk[crypto_box_SECRETKEYBYTES];
static unsigned char other_pk[crypto_box_PUBLICKEYBYTES], other_sk[crypto_box_SECRETKEYBYTES];
static unsigned char mac_key[crypto_generichash_KEYBYTES];

/* ---- the values, and every spelling of them that must never leave -------- */

#define FORMS_MAX 64
static char *forms[FORMS_MAX]; /* forbidden byte strings (NUL-terminated) */
static size_t nforms;
static char token[64];	       /* TOKEN's value */
static char token2[64];	       /* another step's TOKEN (cross, forged) */
static char sys_token[64];     /* a system key's value */
static char pem[200];	       /* a multi-line value */
static char pem_line[64];      /* its distinctive middle line */

static void form_add(const char *s)
{
	SW_CHECK(nforms < FORMS_MAX);
	SW_CHECK((forms[nforms++] = strdup(s)) != NULL);
}

/* v, its hex (both cases), base64 (standard, URL-safe) and percent forms */
static void forms_add_value(const char *v)
{
	size_t n = strlen(v);
	char hex[256], b64[256], pct[512], up[256];
	size_t o = 0;

	form_add(v);
	sodium_bin2hex(hex, sizeof(hex), (const unsigned char *)v, n);
	form_add(hex);
	for (size_t i = 0; hex[i]; i++)
		up[i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]), up[i + 1] = '\0';
	form_add(up);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)v, n,
			  sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	form_add(b64);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)v, n,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	form_add(b64);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			pct[o++] = (char)c;
		else
			o += (size_t)snprintf(pct + o, 4, "%%%02X", c);
	}
	pct[o] = '\0';
	form_add(pct);
}

static void values_make(void)
{
	unsigned char r[12];
	char hex[25];

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	/* '/', '+', '=', ':' and '!' make every encoding differ from the value */
	snprintf(token, sizeof(token), "swtok/%s+k=v:!", hex);
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(token2, sizeof(token2), "swtwo/%s+k=v:!", hex);
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(sys_token, sizeof(sys_token), "swsys/%s+k=v:!", hex);
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(pem_line, sizeof(pem_line), "MIIpem%sQQ", hex);
	snprintf(pem, sizeof(pem), "-----BEGIN TEST KEY-----\n%s\n-----END TEST KEY-----",
		 pem_line);
	forms_add_value(token);
	forms_add_value(token2);
	forms_add_value(sys_token);
	form_add(pem_line);
}

/* The first forbidden form in buf[0..len), or NULL. */
static const char *leak(const void *buf, size_t len)
{
	for (size_t i = 0; i < nforms; i++)
		if (buf != NULL && memmem(buf, len, forms[i], strlen(forms[i])) != NULL)
			return forms[i];
	return NULL;
}

/* ---- keys of a step and the identity service we play ---------------------- */

struct key {
	const char *env;
	const char *level;   /* system, workflow, user */
	const char *secret;  /* NULL: a plain knob */
	int version;
	const char *value;
};

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
	const struct key *keys;
	size_t nkeys;
	json_t *request; /* the identity.seal_requested seen (owned) */
	int answered;
};

static struct idstep idsteps[64];
static size_t nidsteps;

static void mac_hex(const char *value, char out[65])
{
	unsigned char m[32];

	crypto_generichash(m, sizeof(m), (const unsigned char *)value, strlen(value), mac_key,
			   sizeof(mac_key));
	sodium_bin2hex(out, 65, m, sizeof(m));
}

/* The step.dispatched.identity of keys: what the scheduler pinned. */
static char *identity_text(const struct key *keys, size_t n)
{
	json_t *a = json_array();
	char mac[65], *s;

	for (size_t i = 0; i < n; i++) {
		const struct key *k = &keys[i];

		if (k->secret != NULL) {
			mac_hex(k->value, mac);
			json_array_append_new(
			    a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "env",
					 k->env, "level", k->level, "profile", "deploy", "kind",
					 "secret", "secret", k->secret, "version", k->version,
					 "backend", "builtin", "value", "", "mac", mac));
		} else {
			json_array_append_new(
			    a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "env",
					 k->env, "level", k->level, "profile", "deploy", "kind",
					 "plain", "secret", "", "version", 0, "backend", "", "value",
					 k->value, "mac", ""));
		}
	}
	s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	SW_CHECK(s != NULL);
	return s;
}

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
	struct sw_event_header h;
	char err[256], *text;
	json_t *o;

	memset(d, 0, sizeof(*d));
	snprintf(d->run_id, sizeof(d->run_id), "%s-%s", prefix, run);
	snprintf(d->step_id, sizeof(d->step_id), "%s/%s/1", d->run_id, step);
	sw_event_header_init(&h, "step.dispatched", "identity-test");
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", d->run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%s", d->step_id);
	text = json_dumps(sp, JSON_COMPACT);
	json_decref(sp);
	o = json_pack("{s:s, s:i, s:s, s:i, s:s, s:I, s:s}", "step", step, "index", 0, "mode",
		      mode, "attempt", 1, "spec", text, "timeout_ms", (json_int_t)timeout_ms,
		      "identity", identity);
	free(text);
	SW_CHECKF(sw_event_encode(reg, "step.dispatched", &h, o, &d->buf, &d->len, err,
				  sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
	sw_test_kafka_deliver(producer, "sagewai.steps", d->run_id, d->buf, d->len);
	free(d->buf);
	d->buf = NULL;
}

/* An identity_scoped step with keys, answered by policy. */
static struct idstep *post(struct sw_test_dispatch *d, const char *run, const char *step,
			   enum policy policy, const struct key *keys, size_t nkeys,
			   int64_t timeout_ms, json_t *sp)
{
	struct idstep *st;
	char *text = identity_text(keys, nkeys);

	SW_CHECK(nidsteps < sizeof(idsteps) / sizeof(idsteps[0]));
	st = &idsteps[nidsteps++];
	memset(st, 0, sizeof(*st));
	snprintf(st->run_id, sizeof(st->run_id), "%s-%s", prefix, run);
	snprintf(st->step_id, sizeof(st->step_id), "%s-%s/%s/1", prefix, run, step);
	st->policy = policy;
	st->keys = keys;
	st->nkeys = nkeys;
	dispatch(d, run, step, "identity_scoped", timeout_ms, sp, text);
	free(text);
	return st;
}

static const struct key *key_of(const struct idstep *st, const char *env)
{
	for (size_t i = 0; i < st->nkeys; i++)
		if (strcmp(st->keys[i].env, env) == 0)
			return &st->keys[i];
	return NULL;
}

static void produce_event(const char *topic, const char *type, const struct sw_event_header *like,
			  json_t *o, const char *key)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;

	sw_event_header_init(&h, type, "sagewai-identity");
	if (like != NULL) {
		snprintf(h.tenant, sizeof(h.tenant), "%s", like->tenant);
		snprintf(h.run_id, sizeof(h.run_id), "%s", like->run_id);
		snprintf(h.step_id, sizeof(h.step_id), "%s", like->step_id);
	}
	SW_CHECKF(sw_event_encode(reg, type, &h, o, &buf, &len, err, sizeof(err)) == 0, "%s: %s",
		  type, err);
	json_decref(o);
	sw_test_kafka_send(producer, topic, key, buf, len);
	free(buf);
}

/* Answer st's request as policy says. */
static void answer_now(struct idstep *st, enum policy policy)
{
	json_t *req = st->request, *h = json_object_get(req, "header"), *asked, *e, *bkeys, *ekeys;
	struct sw_event_header like;
	const char *rid = json_string_value(json_object_get(req, "request_id"));
	char other[SW_UUID_STRLEN], mac[65], *text, *hex;
	unsigned char *c;
	size_t i, tl;
	json_t *box, *o;

	memset(&like, 0, sizeof(like));
	snprintf(like.tenant, sizeof(like.tenant), "%s",
		 json_string_value(json_object_get(h, "tenant")));
	snprintf(like.run_id, sizeof(like.run_id), "%s",
		 json_string_value(json_object_get(h, "run_id")));
	snprintf(like.step_id, sizeof(like.step_id), "%s",
		 json_string_value(json_object_get(h, "step_id")));
	st->answered = 1;
	if (policy == ANSWER_NONE || policy == ANSWER_LATER)
		return;
	if (policy == ANSWER_REFUSE) {
		o = json_pack("{s:s, s:b, s:s, s:s, s:s, s:[]}", "request_id", rid, "ok", 0, "code",
			      "revoked", "error", "revoked: TOKEN", "sealed", "", "keys");
		produce_event("sagewai.identity.sealed", "identity.sealed", &like, o, like.run_id);
		return;
	}
	sw_uuid_v7_str(other);
	asked = json_object_get(req, "keys");
	bkeys = json_array();
	ekeys = json_array();
	json_array_foreach(asked, i, e) {
		const char *env = json_string_value(json_object_get(e, "env"));
		const struct key *k = key_of(st, env);
		char *b64;
		size_t bl;

		SW_REQUIRE(k != NULL && k->secret != NULL, "asked for %s, not a pinned secret",
			   env);
		if (policy == ANSWER_MISSING && i == 0)
			continue;
		{
			const char *v = policy == ANSWER_OTHER_VALUE ? sys_token : k->value;

			bl = sodium_base64_ENCODED_LEN(strlen(v), sodium_base64_VARIANT_ORIGINAL);
			b64 = malloc(bl);
			sodium_bin2base64(b64, bl, (const unsigned char *)v, strlen(v),
					  sodium_base64_VARIANT_ORIGINAL);
		}
		json_array_append_new(
		    bkeys, json_pack("{s:s, s:s, s:I, s:s}", "env", env, "secret", k->secret,
				     "version",
				     (json_int_t)(k->version + (policy == ANSWER_VERSION)),
				     "value_b64", b64));
		free(b64);
		mac_hex(k->value, mac);
		json_array_append_new(ekeys, json_pack("{s:s, s:s, s:i, s:s}", "env", env, "secret",
						       k->secret, "version", k->version, "mac",
						       mac));
	}
	if (policy == ANSWER_EXTRA)
		json_array_append_new(bkeys, json_pack("{s:s, s:s, s:i, s:s}", "env", "EXTRA_KEY",
						       "secret", "extra", "version", 1,
						       "value_b64", "ZXh0cmEtdmFsdWU="));
	box = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "request_id",
			policy == ANSWER_BOX_REQUEST || policy == ANSWER_NOT_OURS ? other : rid,
			"run_id", like.run_id, "step_id",
			policy == ANSWER_OTHER_STEP ? "another/step/1" : like.step_id, "sandbox_id",
			policy == ANSWER_OTHER_SANDBOX
			    ? other
			    : json_string_value(json_object_get(req, "sandbox_id")),
			"tenant", like.tenant, "keys", bkeys);
	text = json_dumps(box, JSON_COMPACT);
	json_decref(box);
	tl = strlen(text);
	c = malloc(tl + crypto_box_SEALBYTES);
	SW_CHECK(crypto_box_seal(c, (unsigned char *)text, tl,
				 policy == ANSWER_WRONG_KEY ? other_pk : host_pk) == 0);
	sodium_memzero(text, tl);
	free(text);
	hex = malloc(2 * (tl + crypto_box_SEALBYTES) + 1);
	sodium_bin2hex(hex, 2 * (tl + crypto_box_SEALBYTES) + 1, c, tl + crypto_box_SEALBYTES);
	free(c);
	o = json_pack("{s:s, s:b, s:s, s:s, s:s, s:o}", "request_id",
		      policy == ANSWER_NOT_OURS ? other : rid, "ok", 1, "code", "", "error", "",
		      "sealed", hex, "keys", ekeys);
	free(hex);
	produce_event("sagewai.identity.sealed", "identity.sealed", &like, o, like.run_id);
}

/* Every message read from any topic: no value in any spelling; and the
 * seal requests of our steps, answered. */
static void on_seen(const rd_kafka_message_t *m, json_t *e)
{
	const char *bad = leak(m->payload, m->len), *type, *sid;
	json_t *h;

	SW_REQUIRE(bad == NULL, "a message on %s holds a secret value (spelled '%s')",
		   rd_kafka_topic_name(m->rkt), bad);
	h = json_object_get(e, "header");
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

static void write_key(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	SW_CHECK(fd >= 0);
	SW_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	SW_CHECK(fchmod(fd, mode) == 0);
	close(fd);
}

static void setup(const char *name)
{
	static const char *const group_topics[] = {"sagewai.steps", "sagewai.runs", NULL};
	static const char *const topics[] = {"sagewai.steps",	  "sagewai.sandbox",
					     "sagewai.identity",  "sagewai.identity.sealed",
					     "sagewai.runs",	  "sagewai.deadletter",
					     "sagewai.credentials", "sagewai.tenants",
					     "sagewai.audit.checkpoints", NULL};
	const char *build = getenv("SW_BUILD_DIR");
	char q[2048], err[256], hex[65];

	sw_test_env_load();
	sw_test_proc_watch(&sbd_pid);
	SW_CHECK(build != NULL);
	SW_CHECK(sodium_init() >= 0);
	snprintf(prefix, sizeof(prefix), "sbi-%s-%d", name, (int)getpid());
	snprintf(tenant, sizeof(tenant), "tenant-%s", prefix);
	snprintf(group, sizeof(group), "sandboxd-test-%s", prefix);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tests-tmp/sandboxd-%s", build, prefix);
	snprintf(sbd_log, sizeof(sbd_log), "%s/sandboxd.log", tmp_dir);
	snprintf(key_file, sizeof(key_file), "%s/seal.key", tmp_dir);
	snprintf(mac_file, sizeof(mac_file), "%s/mac.key", tmp_dir);
	snprintf(q, sizeof(q), "mkdir -p %s && chmod 755 %s/.. %s", tmp_dir, tmp_dir, tmp_dir);
	SW_CHECK(system(q) == 0);
	sw_test_log_watch(sbd_log, 60);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "sandboxd", name);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
	tx = (struct sw_test_sender){reg, producer, "identity-test", prefix};
	crypto_box_keypair(host_pk, host_sk);
	crypto_box_keypair(other_pk, other_sk);
	randombytes_buf(mac_key, sizeof(mac_key));
	sodium_bin2hex(hex, sizeof(hex), host_sk, sizeof(host_sk));
	write_key(key_file, hex, 0600);
	sodium_bin2hex(hex, sizeof(hex), mac_key, sizeof(mac_key));
	write_key(mac_file, hex, 0600);
	values_make();
	sw_test_kafka_group_to_end(group, group_topics);
	sw_test_evlog_open(&evl, reg, prefix, topics);
	evl.pid = &sbd_pid;
	evl.name = "sagewai-sandboxd";
	evl.seen = on_seen;
}

/* Start sandboxd with the seal key file key (NULL: none); wait for its
 * port when expect_start, else for it to exit (its status returned). */
static int sbd_spawn(const char *key, int expect_start)
{
	static const char *const argv[] = {"sagewai-sandboxd", "serve", NULL};
	char path[600], dsn[600], gid[160], state[600], kf[700], mf[700], to[100];
	const char *env[12] = {dsn,
			       gid,
			       "SAGEWAI_HTTP_PORT=0",
			       "SAGEWAI_LOG_LEVEL=debug",
			       state,
			       SW_TEST_ENV_FAST_REBALANCE,
			       "SAGEWAI_SANDBOX_WARM=1"};
	int n = 7, st = 0;

	snprintf(path, sizeof(path), "%s/services/sandboxd/sagewai-sandboxd",
		 getenv("SW_BUILD_DIR"));
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "sandboxd");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(state, sizeof(state), "SAGEWAI_SANDBOX_STATE_DIR=%s", tmp_dir);
	if (key != NULL) {
		snprintf(kf, sizeof(kf), "SAGEWAI_SANDBOXD_SEAL_KEY_FILE=%s", key);
		env[n++] = kf;
		snprintf(mf, sizeof(mf), "SAGEWAI_SECRET_MAC_KEY_FILE=%s",
			 sbd_mac_file != NULL ? sbd_mac_file : mac_file);
		env[n++] = mf;
	}
	if (sbd_seal_timeout != NULL) {
		snprintf(to, sizeof(to), "SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS=%s", sbd_seal_timeout);
		env[n++] = to;
	}
	env[n] = NULL;
	sbd_pid = sw_test_proc_spawn(path, argv, env, sbd_log);
	if (expect_start) {
		sbd_port = sw_test_proc_wait_port(sbd_pid, "sagewai-sandboxd", sbd_log,
						  "sandboxd started");
		return 0;
	}
	SW_CHECK(waitpid(sbd_pid, &st, 0) == sbd_pid);
	sbd_pid = -1;
	return st;
}

static void sbd_start(void)
{
	sbd_spawn(key_file, 1);
}

/* SIGTERM: sandboxd drains and exits 0 (under ASan: nothing leaked) */
static void sbd_stop(void)
{
	sw_test_proc_stop(&sbd_pid, SIGTERM, "sagewai-sandboxd");
}

/* A metric of sandboxd's /metrics, -1 if absent. */
static double metric(const char *name)
{
	return sw_test_metric_get(sbd_port, name);
}

/* sandboxd's log so far (NUL-terminated; caller frees) */
static char *log_read(size_t *len)
{
	FILE *f = fopen(sbd_log, "r");
	char *buf;
	long n;

	SW_CHECK(f != NULL);
	SW_CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	SW_CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* sandboxd's log holds none of the values, in any spelling */
static void log_clean(void)
{
	size_t n;
	char *buf = log_read(&n);
	const char *bad = leak(buf, n);

	SW_REQUIRE(bad == NULL, "sandboxd's log holds a secret value (spelled '%s')", bad);
	free(buf);
}

/* sandboxd's log holds text */
static void log_has(const char *text)
{
	size_t n;
	char *buf = log_read(&n);

	SW_REQUIRE(strstr(buf, text) != NULL, "sandboxd's log lacks '%s'", text);
	free(buf);
}

/* All sandbox.output data of step_id, concatenated in seq order (caller
 * frees); *chunks gets their number. */
static char *output_of(const char *step_id, const char *stream, size_t *chunks)
{
	struct sw_test_buf b = {0};
	int seq = 0, found;

	*chunks = 0;
	do {
		found = 0;
		for (size_t i = 0; i < evl.n; i++) {
			json_t *body = evl.ev[i]->body;

			if (strcmp(evl.ev[i]->type, "sandbox.output") != 0 ||
			    strcmp(evl.ev[i]->step_id, step_id) != 0 ||
			    json_integer_value(json_object_get(body, "seq")) != seq)
				continue;
			found = 1;
			seq++;
			if (strcmp(json_string_value(json_object_get(body, "stream")), stream) != 0)
				break;
			sw_test_http_collect((char *)json_string_value(json_object_get(body, "data")),
					     1, json_string_length(json_object_get(body, "data")),
					     &b);
			(*chunks)++;
			break;
		}
	} while (found);
	return b.p != NULL ? b.p : strdup("");
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
	struct sw_test_ev *a = sw_test_evlog_wait(&evl, "sandbox.acquired", step_id, 0, 60);

	return json_string_value(json_object_get(a->body, "sandbox_id"));
}

/* Nothing of step_id ran: no identity.injected, no sandbox.exited. */
static void never_ran(const char *step_id)
{
	SW_REQUIRE(sw_test_evlog_count(&evl, "identity.injected", step_id) == 0,
		   "%s: identity.injected", step_id);
	SW_REQUIRE(sw_test_evlog_count(&evl, "sandbox.exited", step_id) == 0 &&
		       sw_test_evlog_count(&evl, "sandbox.output", step_id) == 0,
		   "%s: its command ran", step_id);
}

/* Processes whose environment holds needle (root only: -1 otherwise). */
static int procs_holding(const char *needle)
{
	DIR *d;
	struct dirent *e;
	int n = 0;

	if (geteuid() != 0)
		return -1;
	SW_CHECK((d = opendir("/proc")) != NULL);
	while ((e = readdir(d)) != NULL) {
		char path[300], buf[65536];
		ssize_t r;
		int fd;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/environ", e->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		r = read(fd, buf, sizeof(buf));
		close(fd);
		if (r > 0 && memmem(buf, (size_t)r, needle, strlen(needle)) != NULL)
			n++;
	}
	closedir(d);
	return n;
}

static void sha256_hex(const char *v, char out[65])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const unsigned char *)v, strlen(v));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* ---- scenarios ---------------------------------------------------------------- */

static struct key k_token[2];
static struct key k_sys[1];

static void keys_init(void)
{
	k_token[0] = (struct key){"TOKEN", "workflow", "gh_token", 3, token};
	k_token[1] = (struct key){"API_BASE", "workflow", NULL, 0, "https://api.internal"};
	k_sys[0] = (struct key){"SYS_TOKEN", "system", "gh_token", 1, sys_token};
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

		sodium_bin2hex(pk, sizeof(pk), host_pk, sizeof(host_pk));
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
	f = sw_test_evlog_finished(&evl, d1.step_id);
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

		sodium_bin2hex(pk, sizeof(pk), host_pk, sizeof(host_pk));
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
		SW_REQUIRE(strcmp(json_string_value(json_object_get(json_object_get(r, "header"),
								    "tenant")),
				  tenant) == 0,
			   "seal request tenant");
	}
	/* identity.injected: the keys and their MACs */
	inj = sw_test_evlog_wait(&evl, "identity.injected", d1.step_id, 0, 30);
	keys = json_object_get(inj->body, "keys");
	mac_hex(token, mac);
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
	acq = sw_test_evlog_find(&evl, "sandbox.acquired", d1.step_id, 0);
	SW_REQUIRE(json_is_true(json_object_get(acq->body, "warm")),
		   "the step did not get a warm sandbox");
	sw_test_evlog_wait(&evl, "sandbox.released", d1.step_id, 0, 60);
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
	f = sw_test_evlog_finished(&evl, d2.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strncmp(stdout_of(f), sha, 64) == 0, "second step did not see TOKEN");
	f = sw_test_evlog_finished(&evl, d3.step_id);
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
	struct key k_pem[2];
	struct sw_test_dispatch d_raw, d_split, d_lines, d_pem, d_enc, d_err;
	struct sw_test_ev *f;
	size_t chunks;
	char *o;
	const char *s;

	setup("redact");
	keys_init();
	k_pem[0] = k_token[0];
	k_pem[1] = (struct key){"PEM", "user", "deploy_key", 1, pem};
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

	f = sw_test_evlog_finished(&evl, d_raw.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "[REDACTED:TOKEN]\n") == 0, "raw: '%s'", stdout_of(f));
	sw_test_evlog_wait(&evl, "sandbox.exited", d_raw.step_id, 0, 30);
	o = output_of(d_raw.step_id, "stdout", &chunks);
	SW_REQUIRE(strcmp(o, "[REDACTED:TOKEN]\n") == 0, "raw sandbox.output: '%s'", o);
	free(o);

	f = sw_test_evlog_finished(&evl, d_split.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "before:[REDACTED:TOKEN]:after\n") == 0, "split: '%s'",
		   stdout_of(f));
	sw_test_evlog_wait(&evl, "sandbox.exited", d_split.step_id, 0, 30);
	o = output_of(d_split.step_id, "stdout", &chunks);
	SW_REQUIRE(strcmp(o, "before:[REDACTED:TOKEN]:after\n") == 0 && chunks >= 2,
		   "split sandbox.output: '%s' in %zu chunks (2 writes a second apart)", o, chunks);
	free(o);

	f = sw_test_evlog_finished(&evl, d_lines.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "line one\n[REDACTED:TOKEN]\nline three [REDACTED:TOKEN] "
					"end\n") == 0,
		   "lines: '%s'", stdout_of(f));

	f = sw_test_evlog_finished(&evl, d_pem.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(stdout_of(f), "key:\n[REDACTED:PEM]\ndone\n") == 0, "pem: '%s'",
		   stdout_of(f));

	f = sw_test_evlog_finished(&evl, d_enc.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	s = stdout_of(f);
	{
		int lines = 0;
		const char *p = s;

		for (; (p = strstr(p, "[REDACTED:TOKEN]\n")) != NULL; p++)
			lines++;
		SW_REQUIRE(lines == 7, "encodings: %d of 7 lines redacted: '%s'", lines, s);
	}
	sw_test_evlog_wait(&evl, "sandbox.exited", d_enc.step_id, 0, 30);
	o = output_of(d_enc.step_id, "stdout", &chunks);
	SW_REQUIRE(strcmp(o, s) == 0, "encodings: sandbox.output '%s' differs from the output", o);
	free(o);

	f = sw_test_evlog_finished(&evl, d_err.step_id);
	sw_test_ev_require(f, "FAILED", "exit_status: ");
	SW_REQUIRE(strstr(f->error, "cannot use [REDACTED:TOKEN]") != NULL, "error: '%s'",
		   f->error);
	sw_test_evlog_wait(&evl, "sandbox.exited", d_err.step_id, 0, 30);
	/* stdout first (seq 0), then stderr */
	o = output_of(d_err.step_id, "stdout", &chunks);
	free(o);
	{
		size_t n = 0;

		for (size_t i = 0; i < evl.n; i++)
			if (strcmp(evl.ev[i]->type, "sandbox.output") == 0 &&
			    strcmp(evl.ev[i]->step_id, d_err.step_id) == 0 &&
			    strstr(json_string_value(json_object_get(evl.ev[i]->body, "data")),
				   "cannot use [REDACTED:TOKEN]") != NULL)
				n++;
		SW_REQUIRE(n == 1, "stderr not redacted in sandbox.output");
	}
	/* everything on every topic has been seen by on_seen; and the log */
	sw_test_evlog_poll(&evl, 2000);
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
	f = sw_test_evlog_finished(&evl, d1.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: TOKEN");
	never_ran(d1.step_id);
	r = sw_test_evlog_wait(&evl, "sandbox.released", d1.step_id, 0, 60);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(r->body, "reason")), "failed") == 0,
		   "sandbox released as %s",
		   json_string_value(json_object_get(r->body, "reason")));
	post(&d2, "yes", "deploy", ANSWER_OK, k_token, 2, 60000,
	     spec(json_string("printf '%s\\n' \"$TOKEN\"")));
	f = sw_test_evlog_finished(&evl, d2.step_id);
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
	sw_test_kafka_send(producer, "sagewai.identity.sealed", "x", "garbage", 7);
	sw_test_kafka_send(producer, "sagewai.identity", "x", "\xc3\x01garbage", 9);
	f = sw_test_evlog_finished(&evl, d1.step_id);
	sw_test_ev_require(f, "FAILED", "identity_unavailable: identity service did not answer");
	SW_REQUIRE(sw_mono_ms() - t0 >= 1500, "failed before the seal timeout");
	never_ran(d1.step_id);
	sw_test_evlog_wait(&evl, "sandbox.released", d1.step_id, 0, 60);
	post(&d2, "ok", "deploy", ANSWER_OK, k_token, 2, 60000, spec(json_string("echo ran")));
	sw_test_dispatch_post(&tx, &d3, "plain", "plain", "sandboxed", 60000,
			      json_pack("{s:s, s:i, s:s, s:s, s:[s]}", "workflow", "identity-test",
					"workflow_version", 1, "uses", "", "run", "echo ran",
					"run_modes", "sandboxed"));
	sw_test_ev_require(sw_test_evlog_finished(&evl, d2.step_id), "SUCCEEDED", NULL);
	sw_test_ev_require(sw_test_evlog_finished(&evl, d3.step_id), "SUCCEEDED", NULL);
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
		const char *error; /* prefix of the step's error */
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
	struct key k2[2];

	sbd_seal_timeout = "4000";
	setup("forged");
	keys_init();
	k2[0] = (struct key){"TOKEN", "workflow", "gh_token", 3, token2};
	k2[1] = k_token[1];
	sbd_start();
	for (size_t i = 0; i < n; i++)
		post(&d[i], cases[i].name, "deploy", cases[i].p, k2, 2, 60000,
		     spec(json_string("echo ran; printf %s \"$TOKEN\"")));
	for (size_t i = 0; i < n; i++) {
		struct sw_test_ev *f = sw_test_evlog_finished(&evl, d[i].step_id);

		sw_test_ev_require(f, "FAILED", cases[i].error);
		never_ran(d[i].step_id);
		sw_test_evlog_wait(&evl, "sandbox.released", d[i].step_id, 0, 60);
	}
	post(&ok, "ok", "deploy", ANSWER_OK, k_token, 2, 60000,
	     spec(json_string("printf '%s\\n' \"$TOKEN\"")));
	sw_test_ev_require(sw_test_evlog_finished(&evl, ok.step_id), "SUCCEEDED", NULL);
	log_clean();
	sbd_stop();
}

static void revoke_secret(const char *scope, const char *name, int version, int hard)
{
	json_t *o = json_pack("{s:s, s:i, s:b, s:s, s:b}", "name", name, "version", version,
			      "hard", hard, "actor", "identity-test", "deleted", 0);
	struct sw_event_header like;

	memset(&like, 0, sizeof(like));
	snprintf(like.tenant, sizeof(like.tenant), "%s", scope);
	produce_event("sagewai.identity", "secret.revoked", &like, o, scope);
	sw_test_kafka_flush(producer, 10000);
}

/* No step.finished of step_id within ms (polling meanwhile). */
static void still_running(const char *step_id, int ms)
{
	int64_t until = sw_mono_ms() + ms;

	while (sw_mono_ms() < until)
		sw_test_evlog_poll(&evl, 100);
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", step_id) == 0,
		   "%s ended (%s)", step_id,
		   sw_test_evlog_find(&evl, "step.finished", step_id, 0)->error ?: "-");
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
	sw_test_evlog_wait(&evl, "sandbox.output", d1.step_id, 0, 60);
	sw_test_evlog_wait(&evl, "sandbox.output", d2.step_id, 0, 60);
	/* the control: the sleeping command holds the value */
	held = procs_holding(token);
	SW_REQUIRE(held != 0, "no process holds the injected value while the step runs");
	/* none of these is for it */
	revoke_secret(tenant, "gh_token", 0, 0);	     /* soft */
	revoke_secret("another-tenant", "gh_token", 0, 1); /* another tenant's */
	revoke_secret(tenant, "gh_token", 2, 1);	     /* another version */
	revoke_secret(tenant, "other_secret", 0, 1);
	still_running(d1.step_id, 3000);
	/* the system key is not the tenant's gh_token... */
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d2.step_id) == 0,
		   "a tenant's revocation killed a system key");
	/* ...this is */
	revoke_secret(tenant, "gh_token", 3, 1);
	f = sw_test_evlog_finished(&evl, d1.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: TOKEN");
	sid = sandbox_of(d1.step_id);
	k = sw_test_evlog_wait(&evl, "identity.revoke_killed", d1.step_id, 0, 30);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(k->body, "sandbox_id")), sid) == 0 &&
		       strcmp(json_string_value(json_object_get(k->body, "secret")), "gh_token") ==
			   0 &&
		       json_integer_value(json_object_get(k->body, "version")) == 3,
		   "identity.revoke_killed does not name the sandbox and the secret");
	printf("hard revocation: sandbox gone after elapsed_ms=%lld\n",
	       (long long)json_integer_value(json_object_get(k->body, "elapsed_ms")));
	r = sw_test_evlog_wait(&evl, "sandbox.released", d1.step_id, 0, 30);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(r->body, "reason")), "revoked") == 0,
		   "released as %s", json_string_value(json_object_get(r->body, "reason")));
	if (held > 0)
		SW_REQUIRE(procs_holding(token) == 0, "a process still holds the revoked value");
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d2.step_id) == 0,
		   "the system key's step ended too");
	/* operator-wide secrets are scope _system */
	revoke_secret("_system", "gh_token", 0, 1);
	f = sw_test_evlog_finished(&evl, d2.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: SYS_TOKEN");
	sw_test_evlog_wait(&evl, "identity.revoke_killed", d2.step_id, 0, 30);

	/* a revocation while the seal request is in flight: never injected */
	late = post(&d3, "late", "deploy", ANSWER_LATER, k_token, 2, 60000,
		    spec(json_string("echo ran")));
	while (late->request == NULL)
		sw_test_evlog_poll(&evl, 100);
	revoke_secret(tenant, "gh_token", 0, 0);
	f = sw_test_evlog_finished(&evl, d3.step_id);
	sw_test_ev_require(f, "FAILED", "revoked: TOKEN");
	answer_now(late, ANSWER_OK);
	sw_test_kafka_flush(producer, 10000);
	sw_test_evlog_poll(&evl, 2000);
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
	snprintf(bad, sizeof(bad), "%s/open.key", tmp_dir);
	write_key(bad, "0101010101010101010101010101010101010101010101010101010101010101",
		  0644);
	st = sbd_spawn(bad, 0);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd started with a 0644 key");
	log_has("SAGEWAI_SANDBOXD_SEAL_KEY_FILE: ");
	log_has("mode 0644 grants group or others access");
	snprintf(bad, sizeof(bad), "%s/short.key", tmp_dir);
	write_key(bad, "0101", 0600);
	st = sbd_spawn(bad, 0);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd started with a short key");
	snprintf(bad, sizeof(bad), "%s/zero.key", tmp_dir);
	write_key(bad, "0000000000000000000000000000000000000000000000000000000000000000",
		  0600);
	st = sbd_spawn(bad, 0);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd started with a zero key");
	log_has("SAGEWAI_SANDBOXD_SEAL_KEY_FILE: not a key");
	/* a good seal key, a bad MAC key */
	sbd_mac_file = bad;
	st = sbd_spawn(key_file, 0);
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
	sw_test_ev_require(sw_test_evlog_finished(&evl, d2.step_id), "SUCCEEDED", NULL);
	still_running(d1.step_id, 3000);
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d1.step_id) == 0 &&
		       sw_test_evlog_count(&evl, "identity.seal_requested", d1.step_id) == 0,
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
		struct sw_test_ev *f = sw_test_evlog_finished(&evl, d[i].step_id);

		sw_test_ev_require(f, "FAILED", "bad_input: ");
		printf("hostile identity %zu: %s\n", i, f->error);
		SW_REQUIRE(strstr(f->error, "identity") != NULL, "error does not say identity: %s",
			   f->error);
		SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d[i].step_id) == 0,
			   "a refused step was started");
	}
	sw_test_ev_require(sw_test_evlog_finished(&evl, dsb.step_id), "FAILED",
			   "bad_input: an identity is given for a sandboxed step");
	post(&dok, "ok", "deploy", ANSWER_OK, k_token, 2, 60000,
	     spec(json_string("printf '%s\\n' \"$TOKEN\"")));
	sw_test_ev_require(sw_test_evlog_finished(&evl, dok.step_id), "SUCCEEDED", NULL);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
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
	struct key ka[1], kb[1];
	struct sw_test_dispatch da, db;
	struct sw_test_ev *f;

	setup("cross");
	keys_init();
	ka[0] = (struct key){"TOKEN", "workflow", "gh_token", 3, token};
	kb[0] = (struct key){"TOKEN", "workflow", "other_token", 1, token2};
	sbd_start();
	post(&da, "holder", "hold", ANSWER_OK, ka, 1, 120000,
	     spec(json_string("echo started; sleep 100")));
	sw_test_evlog_wait(&evl, "sandbox.output", da.step_id, 0, 60);
	post(&db, "prober", "probe", ANSWER_OK, kb, 1, 60000, spec(json_string(probe)));
	f = sw_test_evlog_finished(&evl, db.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strstr(stdout_of(f), "TOKEN=[REDACTED:TOKEN]") != NULL,
		   "the probe did not even find its own value: %s", stdout_of(f));
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", da.step_id) == 0,
		   "the holder ended before the probe");
	revoke_secret(tenant, "gh_token", 0, 1);
	sw_test_ev_require(sw_test_evlog_finished(&evl, da.step_id), "FAILED", "revoked: TOKEN");
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
