/*
 * Black-box tests of sagewai-sandboxd's cli_agent mode over the harness's
 * Kafka and PostgreSQL, with real bubblewrap sandboxes. The test program
 * plays the identity service (as identity_test.c does: it answers the seal
 * requests with boxes sealed to the host key it gave sandboxd) and, where a
 * destination needs one, runs the other end: git http-backend behind a
 * token check (git_server.py), sagewai-llm-mock with a script. Every
 * message read from any topic is checked to hold no injected value in any
 * spelling. One scenario per argument:
 *
 *   deliver   a custom "CLI" (a shell script) writes a site into
 *             /workspace, prints its injected key (redacted in
 *             sandbox.output and in the step's output), its HOME, its
 *             prompt -- shell syntax that stays data, $1 of the script --
 *             and its stderr: delivered to local (the files under
 *             TENANT/RUN/STEP/PATH on the host), to none (the files in the
 *             output), and with no artifact (listed only); files_changed
 *             gives each file's size and sha256; an argv "CLI" gets the
 *             prompt as its last argument; the CLI's HOME is not in the
 *             workspace
 *   github    the site pushed to the git server with GITHUB_TOKEN from the
 *             identity (the commit on the server holds it); a wrong token
 *             fails with the server's answer and without the token
 *   scan      a CLI that writes its injected value into a file: the
 *             delivery is refused naming FILE:LINE, nothing reaches the
 *             destination
 *   fail      a CLI exiting 3 with its key on stderr: FAILED with the
 *             stderr tail redacted, nothing delivered; a timeout
 *   cancel    run.cancel_requested mid-CLI, and during the push (a slow
 *             git server): CANCELLED, the sandbox gone (no process left),
 *             nothing delivered; the times are printed, not asserted
 *   timeout   the step's timeout mid-CLI: TIMED_OUT, the sandbox gone
 *   kill9     kill -9 of sandboxd mid-CLI: no process of the sandbox is
 *             left; a restarted sandboxd gets the step again and runs it
 *             to the end
 *   hostile   crafted cli_agent dispatches (unknown agent, run for
 *             claude-code, custom without run, a prompt with NUL or over
 *             100 KiB, a bad artifact, a quote in OPENAI_BASE_URL, no
 *             identity): each bad_input before anything starts
 *   claude    the real Claude Code (variant claude-code) against the
 *             scripted sagewai-llm-mock through the egress proxy writes
 *             index.html with its own tool; it is pushed to the git server
 *             (skipped, 77, when the variant is not built); the workspace
 *             holds nothing else (the CLI's state is in its HOME)
 *   codex, gemini  the same with the Codex CLI (its config.toml from the
 *             identity's OPENAI_BASE_URL and OPENAI_MODEL) and the Gemini
 *             CLI (GOOGLE_GEMINI_BASE_URL, GEMINI_MODEL)
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
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
static char tenant[64];
static char tmp_dir[512];
static char sbd_log[600];
static char db_dsn[512];
static char group[128];
static char key_file[600];
static char mac_file[600];
static char local_dir[600];
static const char *src_dir;
static pid_t sbd_pid = -1;
static int sbd_port;
static rd_kafka_t *producer;
static struct sw_test_evlog evl;
static const char *sbd_extra[8]; /* more settings for sandboxd, NULL-terminated */

static unsigned char host_pk[crypto_box_PUBLICKEYBYTES], host_sk[crypto_box_SECRETKEYBYTES];
static unsigned char mac_key[crypto_generichash_KEYBYTES];

/* ---- the values, and every spelling of them that must never leave -------- */

#define FORMS_MAX 64
static char *forms[FORMS_MAX];
static size_t nforms;
static char token[64];	  /* the agent's key (ANTHROPIC_API_KEY, ...) */
static char gh_token[64]; /* GITHUB_TOKEN, as the git server knows it */

static void form_add(const char *s)
{
	SW_CHECK(nforms < FORMS_MAX);
	SW_CHECK((forms[nforms++] = strdup(s)) != NULL);
}

static void forms_add_value(const char *v)
{
	size_t n = strlen(v);
	char hex[256], b64[256];

	form_add(v);
	sodium_bin2hex(hex, sizeof(hex), (const unsigned char *)v, n);
	form_add(hex);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)v, n,
			  sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	form_add(b64);
}

static void random_value(char *out, size_t len, const char *tag)
{
	unsigned char r[12];
	char hex[25];

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(out, len, "%s-%s-k9", tag, hex);
}

static void values_make(void)
{
	random_value(token, sizeof(token), "swkey");
	random_value(gh_token, sizeof(gh_token), "swgit");
	forms_add_value(token);
	forms_add_value(gh_token);
}

static const char *leak(const void *buf, size_t len)
{
	for (size_t i = 0; i < nforms; i++)
		if (buf != NULL && memmem(buf, len, forms[i], strlen(forms[i])) != NULL)
			return forms[i];
	return NULL;
}

/* ---- the identity service we play ------------------------------------------ */

struct key {
	const char *env;
	const char *secret; /* NULL: a plain knob */
	int version;
	const char *value;
};

struct idstep {
	char step_id[128];
	const struct key *keys;
	size_t nkeys;
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
					 k->env, "level", "workflow", "profile", "site", "kind",
					 "secret", "secret", k->secret, "version", k->version,
					 "backend", "builtin", "value", "", "mac", mac));
		} else {
			json_array_append_new(a,
					      json_pack("{s:s, s:s, s:s, s:s, s:s}", "env", k->env,
							"level", "workflow", "profile", "site",
							"kind", "plain", "value", k->value));
		}
	}
	s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	SW_CHECK(s != NULL);
	return s;
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

/* Answer a seal request with the step's values, sealed to the host key. */
static void answer(struct idstep *st, json_t *req)
{
	json_t *h = json_object_get(req, "header"), *asked = json_object_get(req, "keys"), *e;
	json_t *bkeys = json_array(), *ekeys = json_array(), *box, *o;
	const char *rid = json_string_value(json_object_get(req, "request_id"));
	struct sw_event_header like;
	char mac[65], *text, *hex;
	unsigned char *c;
	size_t i, tl;

	memset(&like, 0, sizeof(like));
	snprintf(like.tenant, sizeof(like.tenant), "%s",
		 json_string_value(json_object_get(h, "tenant")));
	snprintf(like.run_id, sizeof(like.run_id), "%s",
		 json_string_value(json_object_get(h, "run_id")));
	snprintf(like.step_id, sizeof(like.step_id), "%s",
		 json_string_value(json_object_get(h, "step_id")));
	st->answered = 1;
	json_array_foreach(asked, i, e) {
		const char *env = json_string_value(json_object_get(e, "env"));
		const struct key *k = key_of(st, env);
		char b64[256];

		SW_REQUIRE(k != NULL && k->secret != NULL, "asked for %s, not a pinned secret",
			   env);
		sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)k->value,
				  strlen(k->value), sodium_base64_VARIANT_ORIGINAL);
		json_array_append_new(bkeys, json_pack("{s:s, s:s, s:i, s:s}", "env", env,
						       "secret", k->secret, "version", k->version,
						       "value_b64", b64));
		mac_hex(k->value, mac);
		json_array_append_new(ekeys,
				      json_pack("{s:s, s:s, s:i, s:s}", "env", env, "secret",
						k->secret, "version", k->version, "mac", mac));
	}
	box = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "request_id", rid, "run_id", like.run_id,
			"step_id", like.step_id, "sandbox_id",
			json_string_value(json_object_get(req, "sandbox_id")), "tenant",
			like.tenant, "keys", bkeys);
	text = json_dumps(box, JSON_COMPACT);
	json_decref(box);
	tl = strlen(text);
	c = malloc(tl + crypto_box_SEALBYTES);
	SW_CHECK(c != NULL && crypto_box_seal(c, (unsigned char *)text, tl, host_pk) == 0);
	sodium_memzero(text, tl);
	free(text);
	hex = malloc(2 * (tl + crypto_box_SEALBYTES) + 1);
	sodium_bin2hex(hex, 2 * (tl + crypto_box_SEALBYTES) + 1, c, tl + crypto_box_SEALBYTES);
	free(c);
	o = json_pack("{s:s, s:b, s:s, s:s, s:s, s:o}", "request_id", rid, "ok", 1, "code", "",
		      "error", "", "sealed", hex, "keys", ekeys);
	free(hex);
	produce_event("sagewai.identity.sealed", "identity.sealed", &like, o, like.run_id);
}

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
	for (size_t i = 0; i < nidsteps; i++)
		if (strcmp(idsteps[i].step_id, sid) == 0) {
			answer(&idsteps[i], e);
		}
}

/* ---- set-up ------------------------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	SW_CHECKF(fd >= 0, "%s: %s", path, strerror(errno));
	SW_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	SW_CHECK(fchmod(fd, mode) == 0);
	close(fd);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	SW_CHECKF(rc == 0, "%s: %d", cmd, rc);
}

/* The contents of path (NUL-terminated; caller frees), or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	SW_CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	SW_CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void setup(const char *name)
{
	static const char *const group_topics[] = {"sagewai.steps", "sagewai.runs", NULL};
	static const char *const topics[] = {"sagewai.steps",
					     "sagewai.sandbox",
					     "sagewai.identity",
					     "sagewai.identity.sealed",
					     "sagewai.runs",
					     "sagewai.deadletter",
					     "sagewai.credentials",
					     "sagewai.tenants",
					     "sagewai.audit.checkpoints",
					     NULL};
	const char *build = getenv("SW_BUILD_DIR");
	char err[256], hex[65];

	sw_test_env_load();
	sw_test_proc_watch(&sbd_pid);
	SW_CHECK(build != NULL);
	SW_CHECK(sodium_init() >= 0);
	snprintf(prefix, sizeof(prefix), "sbc-%s-%d", name, (int)getpid());
	snprintf(tenant, sizeof(tenant), "tenant-%s", prefix);
	snprintf(group, sizeof(group), "sandboxd-test-%s", prefix);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tests-tmp/sandboxd-%s", build, prefix);
	snprintf(sbd_log, sizeof(sbd_log), "%s/sandboxd.log", tmp_dir);
	snprintf(key_file, sizeof(key_file), "%s/seal.key", tmp_dir);
	snprintf(mac_file, sizeof(mac_file), "%s/mac.key", tmp_dir);
	snprintf(local_dir, sizeof(local_dir), "%s/artifacts", tmp_dir);
	/* both written by sandboxd's service part (another uid when root) */
	sh("mkdir -p %s %s %s/stage && chmod 755 %s/.. %s && chmod 777 %s %s/stage", tmp_dir,
	   local_dir, tmp_dir, tmp_dir, tmp_dir, local_dir, tmp_dir);
	sw_test_log_watch(sbd_log, 60);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "sandboxd", name);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
	crypto_box_keypair(host_pk, host_sk);
	randombytes_buf(mac_key, sizeof(mac_key));
	sodium_bin2hex(hex, sizeof(hex), host_sk, sizeof(host_sk));
	write_file(key_file, hex, 0600);
	sodium_bin2hex(hex, sizeof(hex), mac_key, sizeof(mac_key));
	write_file(mac_file, hex, 0600);
	values_make();
	sw_test_kafka_group_to_end(group, group_topics);
	sw_test_evlog_open(&evl, reg, prefix, topics);
	evl.pid = &sbd_pid;
	evl.name = "sagewai-sandboxd";
	evl.seen = on_seen;
}

static void sbd_start(void)
{
	static const char *const argv[] = {"sagewai-sandboxd", "serve", NULL};
	char path[600], dsn[600], gid[160], state[600], kf[700], mf[700], ld[700], sd[700];
	const char *env[24] = {dsn,
			       gid,
			       "SAGEWAI_HTTP_PORT=0",
			       "SAGEWAI_LOG_LEVEL=debug",
			       state,
			       SW_TEST_ENV_FAST_REBALANCE,
			       "SAGEWAI_SANDBOX_WARM=1",
			       kf,
			       mf,
			       ld,
			       sd};
	int n = 11;

	snprintf(path, sizeof(path), "%s/services/sandboxd/sagewai-sandboxd",
		 getenv("SW_BUILD_DIR"));
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "sandboxd");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(state, sizeof(state), "SAGEWAI_SANDBOX_STATE_DIR=%s", tmp_dir);
	snprintf(kf, sizeof(kf), "SAGEWAI_SANDBOXD_SEAL_KEY_FILE=%s", key_file);
	snprintf(mf, sizeof(mf), "SAGEWAI_SECRET_MAC_KEY_FILE=%s", mac_file);
	snprintf(ld, sizeof(ld), "SAGEWAI_ARTIFACT_LOCAL_DIR=%s", local_dir);
	snprintf(sd, sizeof(sd), "SAGEWAI_ARTIFACT_STAGE_DIR=%s/stage", tmp_dir);
	for (size_t i = 0; sbd_extra[i] != NULL; i++)
		env[n++] = sbd_extra[i];
	env[n] = NULL;
	sbd_pid = sw_test_proc_spawn(path, argv, env, sbd_log);
	sbd_port =
	    sw_test_proc_wait_port(sbd_pid, "sagewai-sandboxd", sbd_log, "sandboxd started");
}

static void sbd_stop(void)
{
	sw_test_proc_stop(&sbd_pid, SIGTERM, "sagewai-sandboxd");
}

/* sandboxd's log holds none of the values */
static void log_clean(void)
{
	char *buf = slurp(sbd_log);
	const char *bad;

	SW_CHECK(buf != NULL);
	bad = leak(buf, strlen(buf));
	SW_REQUIRE(bad == NULL, "sandboxd's log holds a secret value (spelled '%s')", bad);
	free(buf);
}

/* ---- steps ------------------------------------------------------------------- */

/* A cli_agent spec as the scheduler dispatches one: agent, prompt (NULL:
 * none), run (stolen, NULL: none), artifact (stolen, NULL: none). */
static json_t *agent_spec(const char *agent, const char *prompt, json_t *run, json_t *artifact)
{
	json_t *s = json_pack("{s:s, s:i, s:s, s:{}, s:[s], s:i, s:s}", "workflow", "site",
			      "workflow_version", 1, "uses", "", "with", "run_modes", "cli_agent",
			      "output_max", 1048576, "cli_agent", agent);

	SW_CHECK(s != NULL);
	if (prompt != NULL)
		json_object_set_new(s, "prompt", json_string(prompt));
	if (run != NULL)
		json_object_set_new(s, "run", run);
	if (artifact != NULL)
		json_object_set_new(s, "artifact", artifact);
	return s;
}

/* Send a cli_agent step.dispatched with keys (identity text raw when
 * identity is not NULL). */
static void dispatch(struct sw_test_dispatch *d, const char *run, const char *step,
		     int64_t timeout_ms, json_t *sp, const struct key *keys, size_t nkeys,
		     const char *identity)
{
	struct sw_event_header h;
	char err[256], *text, *id = identity ? strdup(identity) : identity_text(keys, nkeys);
	json_t *o;

	memset(d, 0, sizeof(*d));
	snprintf(d->run_id, sizeof(d->run_id), "%s-%s", prefix, run);
	snprintf(d->step_id, sizeof(d->step_id), "%s/%s/1", d->run_id, step);
	if (identity == NULL) {
		struct idstep *st;

		SW_CHECK(nidsteps < sizeof(idsteps) / sizeof(idsteps[0]));
		st = &idsteps[nidsteps++];
		memset(st, 0, sizeof(*st));
		snprintf(st->step_id, sizeof(st->step_id), "%s", d->step_id);
		st->keys = keys;
		st->nkeys = nkeys;
	}
	sw_event_header_init(&h, "step.dispatched", "cliagent-test");
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", d->run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%s", d->step_id);
	text = json_dumps(sp, JSON_COMPACT);
	json_decref(sp);
	o = json_pack("{s:s, s:i, s:s, s:i, s:s, s:I, s:s}", "step", step, "index", 0, "mode",
		      "cli_agent", "attempt", 1, "spec", text, "timeout_ms",
		      (json_int_t)timeout_ms, "identity", id);
	free(text);
	free(id);
	SW_CHECKF(sw_event_encode(reg, "step.dispatched", &h, o, &d->buf, &d->len, err,
				  sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
	sw_test_kafka_deliver(producer, "sagewai.steps", d->run_id, d->buf, d->len);
	free(d->buf);
	d->buf = NULL;
}

static void cancel_run(const char *run_id)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;
	json_t *o;

	sw_event_header_init(&h, "run.cancel_requested", "cliagent-test");
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", run_id);
	o = json_pack("{s:s, s:s}", "requested_by", "cliagent-test", "reason", "test");
	SW_CHECKF(
	    sw_event_encode(reg, "run.cancel_requested", &h, o, &buf, &len, err, sizeof(err)) == 0,
	    "%s", err);
	json_decref(o);
	sw_test_kafka_deliver(producer, "sagewai.runs", run_id, buf, len);
	free(buf);
}

/* All sandbox.output data of step_id's stream, in seq order (caller frees). */
static char *output_of(const char *step_id, const char *stream)
{
	struct sw_test_buf b = {0};
	int seq = 0, found;

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
			if (strcmp(json_string_value(json_object_get(body, "stream")), stream) !=
			    0)
				break;
			sw_test_http_collect(
			    (char *)json_string_value(json_object_get(body, "data")), 1,
			    json_string_length(json_object_get(body, "data")), &b);
			break;
		}
	} while (found);
	return b.p != NULL ? b.p : strdup("");
}

static const char *out_str(const struct sw_test_ev *f, const char *key)
{
	const char *s = json_string_value(json_object_get(f->output, key));

	SW_REQUIRE(s != NULL, "%s: no %s in the output", f->step_id, key);
	return s;
}

static void sha256_hex(const void *v, size_t n, char out[65])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, v, n);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* files_changed.list of the output holds path with size and sha256 of text */
static void changed_has(const struct sw_test_ev *f, const char *path, const char *text)
{
	json_t *list = json_object_get(json_object_get(f->output, "files_changed"), "list"), *e;
	char sha[65];
	size_t i;

	sha256_hex(text, strlen(text), sha);
	json_array_foreach(list, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "path")), path) != 0)
			continue;
		SW_REQUIRE(json_integer_value(json_object_get(e, "size")) ==
				   (json_int_t)strlen(text) &&
			       !strcmp(json_string_value(json_object_get(e, "sha256")), sha),
			   "%s: %s has size %lld sha256 %s, want %zu %s", f->step_id, path,
			   (long long)json_integer_value(json_object_get(e, "size")),
			   json_string_value(json_object_get(e, "sha256")), strlen(text), sha);
		return;
	}
	SW_REQUIRE(0, "%s: %s not in files_changed", f->step_id, path);
}

/* header.time of an event, µs */
static int64_t ev_time(const struct sw_test_ev *e)
{
	return (int64_t)json_integer_value(
	    json_object_get(json_object_get(e->body, "header"), "time"));
}

/* How long sandboxd took from ending the step (its step.finished) to the
 * sandbox being gone (its sandbox.released): printed. */
static void print_kill_time(const char *what, const char *step_id)
{
	struct sw_test_ev *f = sw_test_evlog_finished(&evl, step_id);
	struct sw_test_ev *r = sw_test_evlog_wait(&evl, "sandbox.released", step_id, 0, 30);

	printf("%s: sandboxd destroyed the sandbox %lld ms after it ended the step (%s)\n", what,
	       (long long)((ev_time(r) - ev_time(f)) / 1000),
	       json_string_value(json_object_get(r->body, "reason")));
}

static size_t changed_count(const struct sw_test_ev *f)
{
	return (size_t)json_integer_value(
	    json_object_get(json_object_get(f->output, "files_changed"), "files"));
}

/* Processes whose command line holds needle. */
static int procs_with(const char *needle)
{
	DIR *d;
	struct dirent *e;
	int n = 0;

	SW_CHECK((d = opendir("/proc")) != NULL);
	while ((e = readdir(d)) != NULL) {
		char path[300], buf[65536];
		ssize_t r;
		int fd;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
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

/* ms until no process holds needle (at most limit_ms); -1 if one stays */
static int64_t gone_within(const char *needle, int64_t t0_ms, int limit_ms)
{
	while (procs_with(needle) > 0) {
		if (sw_mono_ms() - t0_ms > limit_ms)
			return -1;
		sw_test_msleep(5);
	}
	return sw_mono_ms() - t0_ms;
}

/* Start a helper (python3 script args...) whose first stdout line is
 * "port N"; its pid, the port in *port. */
static pid_t helper(const char *const *argv, int *port)
{
	int p[2];
	pid_t pid;
	char line[256];
	FILE *f;

	SW_CHECK(pipe(p) == 0);
	if ((pid = fork()) == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	SW_CHECK((f = fdopen(p[0], "r")) != NULL);
	SW_CHECKF(fgets(line, sizeof(line), f) != NULL && sscanf(line, "port %d", port) == 1,
		  "%s did not start", argv[1]);
	fclose(f);
	return pid;
}

/* A git server for tokens; the bare repository ROOT/site.git. */
static pid_t git_server(char *root, size_t rootlen, char *url, size_t urllen)
{
	char toks[700], log[700], script[700];
	const char *argv[] = {"python3", script, root, toks, log, NULL};
	pid_t pid;
	int port;

	snprintf(root, rootlen, "%s/git-root", tmp_dir);
	snprintf(toks, sizeof(toks), "%s/git-tokens", tmp_dir);
	snprintf(log, sizeof(log), "%s/git-requests.log", tmp_dir);
	snprintf(script, sizeof(script), "%s/git_server.py", src_dir);
	sh("rm -rf %s && mkdir -p %s && git init -q --bare %s/site.git", root, root, root);
	{
		char t[200];

		snprintf(t, sizeof(t), "good %s\n", gh_token);
		write_file(toks, t, 0600);
	}
	write_file(log, "", 0600);
	pid = helper(argv, &port);
	snprintf(url, urllen, "http://127.0.0.1:%d/site.git", port);
	return pid;
}

/* ---- scenarios ----------------------------------------------------------------- */

/* The custom "CLI": a site, its key, HOME, its prompt ($1), a line on
 * stderr. */
static const char site_cli[] = "set -e\n"
			       "mkdir -p site/css\n"
			       "printf '<h1>portfolio</h1>\\n' > site/index.html\n"
			       "printf 'a{}\\n' > site/css/s.css\n"
			       /* what a hostile agent could leave for the host to follow */
			       "ln -s /etc/shadow site/shadow && mkfifo site/fifo\n"
			       "echo \"key=$ANTHROPIC_API_KEY\"\n"
			       "echo \"base=$ANTHROPIC_BASE_URL home=$HOME tmp=$TMPDIR\"\n"
			       "touch \"$HOME/.cli-state\" && echo home-writable\n"
			       "printf 'prompt=%s\\n' \"$1\"\n"
			       "echo \"ws=$(ls -A /workspace | tr '\\n' ' ')\"\n"
			       "echo 'to stderr' >&2\n";

#define PROMPT "build it $(touch /workspace/pwned) `id` \"q\" 'x'; rm -rf /workspace"

static struct key k_agent[2];

static void keys_init(void)
{
	k_agent[0] = (struct key){"ANTHROPIC_API_KEY", "anthropic", 2, token};
	k_agent[1] = (struct key){"ANTHROPIC_BASE_URL", NULL, 0, "http://llm.internal:8080"};
}

static void scenario_deliver(void)
{
	struct sw_test_dispatch dl, dn, dx, da;
	struct sw_test_ev *f;
	char path[900], *page, *o, want[512];
	json_t *ws, *e;
	size_t i;
	int saw = 0;

	setup("deliver");
	keys_init();
	sbd_start();
	dispatch(&dl, "local", "build", 120000,
		 agent_spec("custom", PROMPT, json_string(site_cli),
			    json_pack("{s:s, s:s}", "destination", "local", "path", "out/site")),
		 k_agent, 2, NULL);
	dispatch(&dn, "none", "build", 120000,
		 agent_spec("custom", PROMPT, json_string(site_cli),
			    json_pack("{s:s}", "destination", "none")),
		 k_agent, 2, NULL);
	dispatch(&dx, "list", "build", 120000,
		 agent_spec("custom", PROMPT, json_string(site_cli), NULL), k_agent, 2, NULL);
	/* an argv CLI: the prompt is its last argument */
	dispatch(&da, "argv", "build", 120000,
		 agent_spec("custom", PROMPT,
			    json_pack("[s, s, s, s]", "/bin/sh", "-c",
				      "printf '%s' \"$1\" > p.txt; echo \"n=$#\"", "argv0"),
			    json_pack("{s:s}", "destination", "none")),
		 k_agent, 2, NULL);

	/* local */
	f = sw_test_evlog_finished(&evl, dl.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	o = json_dumps(f->output, JSON_COMPACT);
	printf("local: %.600s\n", o);
	free(o);
	SW_REQUIRE(json_integer_value(json_object_get(f->output, "exit_code")) == 0 &&
		       !strcmp(out_str(f, "agent"), "custom"),
		   "exit_code/agent");
	snprintf(want, sizeof(want),
		 "key=[REDACTED:ANTHROPIC_API_KEY]\nbase=http://llm.internal:8080 "
		 "home=/tmp/sagewai-home tmp=/tmp\nhome-writable\nprompt=%s\nws=site \n",
		 PROMPT);
	SW_REQUIRE(strcmp(out_str(f, "stdout"), want) == 0, "stdout '%s', want '%s'",
		   out_str(f, "stdout"), want);
	SW_REQUIRE(strcmp(out_str(f, "stderr"), "to stderr\n") == 0, "stderr");
	changed_has(f, "site/index.html", "<h1>portfolio</h1>\n");
	changed_has(f, "site/css/s.css", "a{}\n");
	SW_REQUIRE(changed_count(f) == 2, "%zu files changed (the prompt ran as a command?)",
		   changed_count(f));
	/* the symlink and the fifo: skipped and named, never followed or read */
	o = json_dumps(json_object_get(json_object_get(f->output, "files_changed"), "skipped"),
		       JSON_COMPACT);
	SW_REQUIRE(o != NULL && strstr(o, "site/shadow") && strstr(o, "site/fifo"), "skipped: %s",
		   o ? o : "");
	free(o);
	snprintf(path, sizeof(path), "%s/%s/%s/%s/out/site/site/index.html", local_dir, tenant,
		 dl.run_id, "build");
	page = slurp(path); /* under TENANT/RUN/STEP (the step's name)/PATH */
	SW_REQUIRE(page != NULL && !strcmp(page, "<h1>portfolio</h1>\n"), "%s: %s", path,
		   page ? page : "(none)");
	free(page);
	SW_REQUIRE(strstr(json_string_value(
			      json_object_get(json_object_get(f->output, "artifact"), "location")),
			  "/out/site") != NULL,
		   "artifact location");
	/* the live output (before sandbox.released on the run's partition):
	 * redacted, in order */
	sw_test_evlog_wait(&evl, "artifact.pushed", dl.step_id, 0, 30);
	sw_test_evlog_wait(&evl, "sandbox.released", dl.step_id, 0, 30);
	o = output_of(dl.step_id, "stdout");
	SW_REQUIRE(strstr(o, "key=[REDACTED:ANTHROPIC_API_KEY]\n") != NULL, "sandbox.output: %s",
		   o);
	free(o);
	SW_REQUIRE(sw_test_evlog_count(&evl, "identity.injected", dl.step_id) == 1, "injected");

	/* none: the files in the output */
	f = sw_test_evlog_finished(&evl, dn.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	ws = json_object_get(f->output, "workspace");
	json_array_foreach(ws, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "path")), "site/index.html"))
			saw = !strcmp(json_string_value(json_object_get(e, "text")),
				      "<h1>portfolio</h1>\n");
	SW_REQUIRE(saw, "none: index.html not in the workspace output");
	changed_has(f, "site/index.html", "<h1>portfolio</h1>\n");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(
			       json_object_get(f->output, "artifact"), "destination")),
			   "none"),
		   "none: destination");

	/* no artifact: listed, nothing delivered */
	f = sw_test_evlog_finished(&evl, dx.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(json_is_null(json_object_get(f->output, "artifact")) &&
		       json_object_get(f->output, "workspace") == NULL,
		   "list only: an artifact");
	changed_has(f, "site/css/s.css", "a{}\n");
	SW_REQUIRE(sw_test_evlog_count(&evl, "artifact.pushed", dx.step_id) == 0,
		   "list only: artifact.pushed");

	/* argv */
	f = sw_test_evlog_finished(&evl, da.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	changed_has(f, "p.txt", PROMPT);
	SW_REQUIRE(!strcmp(out_str(f, "stdout"), "n=1\n"), "argv: %s", out_str(f, "stdout"));
	log_clean();
	sbd_stop();
}

static void scenario_github(void)
{
	struct sw_test_dispatch dg, dw;
	struct sw_test_ev *f;
	struct key kg[2], kw[2];
	char root[700], url[256];
	pid_t git;

	setup("github");
	keys_init();
	git = git_server(root, sizeof(root), url, sizeof(url));
	sbd_extra[0] = "SAGEWAI_ARTIFACT_HTTP=allow";
	sbd_extra[1] = "SAGEWAI_ARTIFACT_PRIVATE=allow";
	sbd_extra[2] = NULL;
	sbd_start();
	kg[0] = k_agent[0];
	kg[1] = (struct key){"GITHUB_TOKEN", "github", 1, gh_token};
	kw[0] = k_agent[0];
	kw[1] = (struct key){"GITHUB_TOKEN", "github-old", 1, "swgit-not-known-here-0000"};
	form_add("swgit-not-known-here-0000");
	dispatch(&dg, "push", "build", 120000,
		 agent_spec("custom", "build a site", json_string(site_cli),
			    json_pack("{s:s, s:s, s:s}", "destination", "github", "repo", url,
				      "branch", "main")),
		 kg, 2, NULL);
	f = sw_test_evlog_finished(&evl, dg.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	printf("pushed: %s\n", json_string_value(json_object_get(
				   json_object_get(f->output, "artifact"), "location")));
	{
		char cmd[1024];
		FILE *p;
		char buf[256] = "";

		snprintf(cmd, sizeof(cmd), "git --git-dir=%s/site.git show main:site/index.html",
			 root);
		SW_CHECK((p = popen(cmd, "r")) != NULL);
		if (fgets(buf, sizeof(buf), p) == NULL)
			buf[0] = '\0';
		pclose(p);
		SW_REQUIRE(!strcmp(buf, "<h1>portfolio</h1>\n"), "on the server: '%s'", buf);
	}
	dispatch(&dw, "wrong", "build", 120000,
		 agent_spec("custom", "build a site", json_string(site_cli),
			    json_pack("{s:s, s:s}", "destination", "github", "repo", url)),
		 kw, 2, NULL);
	f = sw_test_evlog_finished(&evl, dw.step_id);
	sw_test_ev_require(f, "FAILED", "artifact_failed: ");
	printf("wrong token: %s\n", f->error);
	SW_REQUIRE(strstr(f->error, "bad credentials") != NULL, "not the server's answer: %s",
		   f->error);
	log_clean();
	sbd_stop();
	kill(git, SIGTERM);
	waitpid(git, NULL, 0);
}

static void scenario_scan(void)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f;
	char path[900];
	struct stat st;

	setup("scan");
	keys_init();
	sbd_start();
	dispatch(
	    &d, "leak", "build", 120000,
	    agent_spec("custom", "write the config",
		       json_string("mkdir -p site && printf 'a = 1\\nb = 2\\nkey = \"%s\"\\n' "
				   "\"$ANTHROPIC_API_KEY\" > site/config.js && echo ok"),
		       json_pack("{s:s, s:s}", "destination", "local", "path", "leak")),
	    k_agent, 2, NULL);
	f = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_ev_require(f, "FAILED",
			   "artifact_refused: site/config.js:3 holds the value of "
			   "ANTHROPIC_API_KEY; nothing was delivered to local");
	sw_test_evlog_wait(&evl, "artifact.scan_refused", d.step_id, 0, 30);
	snprintf(path, sizeof(path), "%s/%s", local_dir, tenant);
	SW_REQUIRE(stat(path, &st) != 0, "something was delivered under %s", path);
	log_clean();
	sbd_stop();
}

static void scenario_fail(void)
{
	struct sw_test_dispatch d, dt;
	struct sw_test_ev *f;
	char path[900];
	struct stat st;

	setup("fail");
	keys_init();
	sbd_start();
	dispatch(&d, "exit3", "build", 120000,
		 agent_spec("custom", "do it",
			    json_string("echo partial > index.html; echo \"no luck with "
					"$ANTHROPIC_API_KEY\" >&2; exit 3"),
			    json_pack("{s:s, s:s}", "destination", "local", "path", "x")),
		 k_agent, 2, NULL);
	f = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_ev_require(f, "FAILED",
			   "exit_status: the agent exited with status 3; stderr: no luck with "
			   "[REDACTED:ANTHROPIC_API_KEY]");
	snprintf(path, sizeof(path), "%s/%s", local_dir, tenant);
	SW_REQUIRE(stat(path, &st) != 0, "a failed agent's workspace was delivered");
	SW_REQUIRE(sw_test_evlog_count(&evl, "artifact.pushed", d.step_id) == 0, "pushed");
	/* the agent is killed at the step's timeout */
	dispatch(&dt, "slow", "build", 3000,
		 agent_spec("custom", "do it", json_string("echo started; sleep 60"), NULL),
		 k_agent, 2, NULL);
	f = sw_test_evlog_finished(&evl, dt.step_id);
	sw_test_ev_require(f, "TIMED_OUT", "timeout: ");
	log_clean();
	sbd_stop();
}

static void scenario_cancel(void)
{
	struct sw_test_dispatch d, dp;
	struct sw_test_ev *f;
	char marker[64], prompt[128], root[700], url[256], path[900];
	struct key kg[2];
	int64_t t0, ms;
	pid_t git;
	struct stat st;

	setup("cancel");
	keys_init();
	snprintf(marker, sizeof(marker), "mark-%s", prefix);
	snprintf(prompt, sizeof(prompt), "%s-cli", marker);
	sbd_start();
	/* mid-CLI: the script waits for its sleep, its command line holds the
	 * prompt */
	dispatch(
	    &d, "mid", "build", 120000,
	    agent_spec("custom", prompt, json_string("echo started; sleep 300; echo done"), NULL),
	    k_agent, 2, NULL);
	sw_test_evlog_wait(&evl, "sandbox.output", d.step_id, 0, 60);
	SW_REQUIRE(procs_with(prompt) > 0, "the CLI is not running");
	/* timed from the cancel's delivery to the broker (the test's producer
	 * may take a while for its first message to sagewai.runs) */
	t0 = sw_mono_ms();
	cancel_run(d.run_id);
	printf("cancel mid-CLI: run.cancel_requested delivered in %lld ms\n",
	       (long long)(sw_mono_ms() - t0));
	t0 = sw_mono_ms();
	f = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_ev_require(f, "CANCELLED", NULL);
	ms = sw_mono_ms() - t0;
	printf("cancel mid-CLI: step.finished CANCELLED read %lld ms after the delivery\n",
	       (long long)ms);
	ms = gone_within(prompt, t0, 30000);
	SW_REQUIRE(ms >= 0, "the CLI is still running after a cancel");
	printf("cancel mid-CLI: no process of the CLI left %lld ms after the delivery\n",
	       (long long)ms);
	sw_test_evlog_wait(&evl, "sandbox.released", d.step_id, 0, 30);
	printf("cancel mid-CLI: sandbox.released read %lld ms after the delivery\n",
	       (long long)(sw_mono_ms() - t0));
	print_kill_time("cancel mid-CLI", d.step_id);

	/* during the push: a workspace of 300 MB to stage and scan */
	sbd_stop();
	git = git_server(root, sizeof(root), url, sizeof(url));
	sbd_extra[0] = "SAGEWAI_ARTIFACT_HTTP=allow";
	sbd_extra[1] = "SAGEWAI_ARTIFACT_PRIVATE=allow";
	sbd_extra[2] = NULL;
	sbd_start();
	kg[0] = k_agent[0];
	kg[1] = (struct key){"GITHUB_TOKEN", "github", 1, gh_token};
	dispatch(&dp, "push", "build", 300000,
		 agent_spec("custom", "make a big site",
			    json_string("for i in 1 2 3; do head -c 100000000 /dev/urandom > "
					"big$i.bin; done; echo written"),
			    json_pack("{s:s, s:s}", "destination", "github", "repo", url)),
		 kg, 2, NULL);
	/* the sandbox goes before the delivery starts */
	sw_test_evlog_wait(&evl, "sandbox.released", dp.step_id, 0, 120);
	cancel_run(dp.run_id);
	t0 = sw_mono_ms();
	f = sw_test_evlog_finished(&evl, dp.step_id);
	sw_test_ev_require(f, "CANCELLED", NULL);
	printf("cancel during the push: step.finished CANCELLED read %lld ms after the delivery\n",
	       (long long)(sw_mono_ms() - t0));
	SW_REQUIRE(sw_test_evlog_count(&evl, "artifact.pushed", dp.step_id) == 0, "pushed");
	/* nothing reached the repository, and the staging copy is gone */
	snprintf(path, sizeof(path), "%s/site.git/refs/heads/main", root);
	SW_REQUIRE(stat(path, &st) != 0, "the push went through");
	for (int i = 0; i < 200; i++) {
		char cmd[900];

		snprintf(cmd, sizeof(cmd),
			 "test -z \"$(ls -A %s/stage/sagewai-artifact-*/ 2>/dev/null)\"", tmp_dir);
		if (system(cmd) == 0)
			break;
		SW_REQUIRE(i < 199, "the abandoned delivery's staging copy stays");
		sw_test_msleep(100);
	}
	printf("cancel during the push: the staging copy gone %lld ms after the cancel\n",
	       (long long)(sw_mono_ms() - t0));
	log_clean();
	sbd_stop();
	kill(git, SIGTERM);
	waitpid(git, NULL, 0);
}

static void scenario_timeout(void)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f, *sd;
	char prompt[128];
	int64_t t0, ms;

	setup("timeout");
	keys_init();
	snprintf(prompt, sizeof(prompt), "mark-%s-cli", prefix);
	sbd_start();
	dispatch(
	    &d, "slow", "build", 6000,
	    agent_spec("custom", prompt, json_string("echo started; sleep 300; echo done"), NULL),
	    k_agent, 2, NULL);
	sd = sw_test_evlog_wait(&evl, "step.started", d.step_id, 0, 60);
	(void)sd;
	sw_test_evlog_wait(&evl, "sandbox.output", d.step_id, 0, 60);
	f = sw_test_evlog_finished(&evl, d.step_id);
	t0 = sw_mono_ms();
	sw_test_ev_require(f, "TIMED_OUT", "timeout: ");
	printf("timeout: %s\n", f->error);
	ms = gone_within(prompt, t0, 30000);
	SW_REQUIRE(ms >= 0, "the CLI is still running after its timeout");
	printf("timeout: no process of the CLI left %lld ms after step.finished was read\n",
	       (long long)ms);
	print_kill_time("timeout", d.step_id);
	sbd_stop();
}

static void scenario_kill9(void)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f;
	char prompt[128];
	int64_t t0, ms;

	setup("kill9");
	keys_init();
	snprintf(prompt, sizeof(prompt), "mark-%s-cli", prefix);
	sbd_start();
	dispatch(&d, "k9", "build", 120000,
		 agent_spec("custom", prompt,
			    json_string("echo started; sleep 4; echo done > done.txt"),
			    json_pack("{s:s}", "destination", "none")),
		 k_agent, 2, NULL);
	sw_test_evlog_wait(&evl, "sandbox.output", d.step_id, 0, 60);
	SW_REQUIRE(procs_with(prompt) > 0, "the CLI is not running");
	t0 = sw_mono_ms();
	SW_CHECK(kill(sbd_pid, SIGKILL) == 0);
	SW_CHECK(waitpid(sbd_pid, NULL, 0) == sbd_pid);
	sbd_pid = -1;
	ms = gone_within(prompt, t0, 10000);
	SW_REQUIRE(ms >= 0, "the CLI survived kill -9 of sandboxd");
	printf("kill -9: no process of the CLI left after %lld ms\n", (long long)ms);
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d.step_id) == 0,
		   "a step.finished from a killed sandboxd");
	/* the dispatch was never committed: a new sandboxd runs it again */
	sbd_start();
	f = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	changed_has(f, "done.txt", "done\n");
	SW_REQUIRE(sw_test_evlog_count(&evl, "sandbox.acquired", d.step_id) == 2,
		   "%zu sandboxes for the step",
		   sw_test_evlog_count(&evl, "sandbox.acquired", d.step_id));
	printf("kill -9: the step ran again on the restarted sandboxd and succeeded\n");
	sbd_stop();
}

static void scenario_hostile(void)
{
	struct sw_test_dispatch d[16], dok;
	struct key kurl[2];
	char *big;
	size_t n = 0;
	struct {
		const char *want;
	} want[16];

	setup("hostile");
	keys_init();
	sbd_start();
#define BAD(w, ...)                                                                               \
	do {                                                                                      \
		char run[16];                                                                     \
		snprintf(run, sizeof(run), "bad%zu", n);                                          \
		dispatch(&d[n], run, "build", 60000, __VA_ARGS__);                                \
		want[n++].want = w;                                                               \
	} while (0)
	BAD("bad_input: spec.cli_agent 'cursor' is not", agent_spec("cursor", "p", NULL, NULL),
	    k_agent, 2, NULL);
	BAD("bad_input: spec.run is only for cli_agent custom",
	    agent_spec("claude-code", "p", json_string("curl evil"), NULL), k_agent, 2, NULL);
	BAD("bad_input: cli_agent custom needs spec.run", agent_spec("custom", "p", NULL, NULL),
	    k_agent, 2, NULL);
	{
		json_t *s = agent_spec("codex", NULL, NULL, NULL);

		/* never parsed: a spec holding \u0000 is no JSON object to jansson */
		json_object_set_new(s, "prompt", json_stringn("a\0b", 3));
		BAD("bad_input: spec is not a JSON object", s, k_agent, 2, NULL);
	}
	big = malloc(200001);
	memset(big, 'x', 200000);
	big[200000] = '\0';
	BAD("bad_input: spec.prompt is 200000 bytes", agent_spec("gemini", big, NULL, NULL),
	    k_agent, 2, NULL);
	free(big);
	BAD("bad_input: artifact.path is refused",
	    agent_spec("claude-code", "p", NULL,
		       json_pack("{s:s, s:s}", "destination", "local", "path", "../../etc")),
	    k_agent, 2, NULL);
	kurl[0] = k_agent[0];
	kurl[1] = (struct key){"OPENAI_BASE_URL", NULL, 0, "http://x\"\n[evil]\nk=\"v"};
	BAD("bad_input: the identity's OPENAI_BASE_URL is not",
	    agent_spec("codex", "p", NULL, NULL), kurl, 2, NULL);
	BAD("bad_input: cli_agent step without its identity",
	    agent_spec("custom", "p", json_string("true"), NULL), NULL, 0, "");
	BAD("bad_input: spec.cli_agent is missing",
	    json_pack("{s:s, s:[s]}", "workflow", "x", "run_modes", "cli_agent"), k_agent, 2,
	    NULL);
#undef BAD
	for (size_t i = 0; i < n; i++) {
		struct sw_test_ev *f = sw_test_evlog_finished(&evl, d[i].step_id);

		sw_test_ev_require(f, "FAILED", want[i].want);
		printf("hostile %zu: %s\n", i, f->error);
		SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d[i].step_id) == 0,
			   "a refused step was started");
	}
	dispatch(&dok, "ok", "build", 60000,
		 agent_spec("custom", "p", json_string("echo fine"), NULL), k_agent, 2, NULL);
	sw_test_ev_require(sw_test_evlog_finished(&evl, dok.step_id), "SUCCEEDED", NULL);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
	sbd_stop();
}

/* ---- the real Claude Code ----------------------------------------------------------- */

#define PAGE "<!doctype html>\n<h1>Built by a CLI agent in a sagewai sandbox</h1>\n"

/* The real CLI of agent (its variant must be built) against the scripted
 * mock, through sandboxd's egress proxy (the mock's host:port allowed),
 * the key and base URL from the identity; index.html pushed to the git
 * server with the identity's GITHUB_TOKEN. */
static void real_agent(const char *name, const char *agent, const char *key_env,
		       const char *url_env, const char *url_suffix, const char *model_env,
		       const char *model)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f;
	struct key kc[4];
	char root[700], url[256], script[700], keyf[700], portf[700], mlog[700], mout[700];
	char base[128], allow[64], bin[300], *o;
	const char *build = getenv("SW_BUILD_DIR");
	char mock[700];
	pid_t git, mpid;
	int mport = 0;
	size_t nk = 0;
	json_t *s;
	FILE *fp;

	snprintf(bin, sizeof(bin), "/var/lib/sagewai/variants/%s/bin", agent);
	if (access(bin, X_OK) != 0) {
		printf("%s: the variant is not built (tools/setup); skipped\n", agent);
		exit(77);
	}
	setup(name);
	git = git_server(root, sizeof(root), url, sizeof(url));
	/* the scripted model endpoint */
	snprintf(mock, sizeof(mock), "%s/tools/llm-mock/sagewai-llm-mock", build);
	snprintf(script, sizeof(script), "%s/script.json", tmp_dir);
	snprintf(keyf, sizeof(keyf), "%s/llm.key", tmp_dir);
	snprintf(portf, sizeof(portf), "%s/llm.port", tmp_dir);
	snprintf(mlog, sizeof(mlog), "%s/llm.log", tmp_dir);
	snprintf(mout, sizeof(mout), "%s/llm.out", tmp_dir);
	s = json_pack("[{s:s, s:s, s:s}, {s:s, s:s}, {s:s}]", "tool", "write", "path",
		      "index.html", "content", PAGE, "tool", "bash", "command", "ls", "text",
		      "done");
	o = json_dumps(s, 0);
	json_decref(s);
	write_file(script, o, 0644);
	free(o);
	{
		char k[100];

		snprintf(k, sizeof(k), "%s\n", token);
		write_file(keyf, k, 0600);
	}
	if ((mpid = fork()) == 0) {
		int fd = open(mout, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(mock, mock, "--port", "0", "--port-file", portf, "--script", script,
		      "--workdir", "/workspace", "--require-key-file", keyf, "--log", mlog,
		      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && mport == 0; i++) {
		if ((fp = fopen(portf, "r")) != NULL) {
			if (fscanf(fp, "%d", &mport) != 1)
				mport = 0;
			fclose(fp);
		}
		if (mport == 0)
			sw_test_msleep(10);
	}
	SW_REQUIRE(mport > 0, "the mock did not start (%s)", mout);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d%s", mport, url_suffix);
	snprintf(allow, sizeof(allow), "127.0.0.1:%d", mport);
	kc[nk++] = (struct key){key_env, "llm", 2, token};
	kc[nk++] = (struct key){url_env, NULL, 0, base};
	kc[nk++] = (struct key){"GITHUB_TOKEN", "github", 1, gh_token};
	if (model_env != NULL)
		kc[nk++] = (struct key){model_env, NULL, 0, model};
	sbd_extra[0] = "SAGEWAI_ARTIFACT_HTTP=allow";
	sbd_extra[1] = "SAGEWAI_ARTIFACT_PRIVATE=allow";
	sbd_extra[2] = "SAGEWAI_EGRESS_PRIVATE=allow";
	sbd_extra[3] = NULL;
	sbd_start();
	s = agent_spec(
	    agent, "Build index.html for the brief, then list the directory.", NULL,
	    json_pack("{s:s, s:s, s:s}", "destination", "github", "repo", url, "branch", "main"));
	json_object_set_new(s, "egress_allow", json_pack("[s]", allow));
	dispatch(&d, "real", "build", 240000, s, kc, nk, NULL);
	f = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_evlog_wait(&evl, "sandbox.released", d.step_id, 0, 60);
	{
		char *so = output_of(d.step_id, "stdout"), *se = output_of(d.step_id, "stderr");

		printf("%s: %s %s\nstdout: %.2000s\nstderr: %.3000s\n", agent, f->status,
		       f->error ? f->error : "", so, se);
		free(so);
		free(se);
	}
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	changed_has(f, "index.html", PAGE);
	{
		char cmd[1024], buf[4096] = "";
		size_t n;
		FILE *p;

		snprintf(cmd, sizeof(cmd), "git --git-dir=%s/site.git show main:index.html", root);
		SW_CHECK((p = popen(cmd, "r")) != NULL);
		n = fread(buf, 1, sizeof(buf) - 1, p);
		buf[n] = '\0';
		pclose(p);
		SW_REQUIRE(!strcmp(buf, PAGE), "on the server: '%s'", buf);
	}
	/* nothing of the CLI's own state in the workspace: only the page */
	SW_REQUIRE(changed_count(f) == 1, "%zu files in the workspace", changed_count(f));
	printf("%s: index.html written by the CLI's own tool, pushed to %s\n", agent,
	       json_string_value(
		   json_object_get(json_object_get(f->output, "artifact"), "location")));
	/* every connection went through the proxy, to the endpoint only */
	for (size_t i = 0; i < evl.n; i++) {
		json_t *b = evl.ev[i]->body;

		if (strcmp(evl.ev[i]->type, "sandbox.egress") != 0 ||
		    strcmp(evl.ev[i]->step_id, d.step_id) != 0)
			continue;
		printf("egress: %s %s:%lld %s\n", json_string_value(json_object_get(b, "method")),
		       json_string_value(json_object_get(b, "target_host")),
		       (long long)json_integer_value(json_object_get(b, "target_port")),
		       json_string_value(json_object_get(b, "reason")));
	}
	log_clean();
	sbd_stop();
	kill(mpid, SIGTERM);
	waitpid(mpid, NULL, 0);
	kill(git, SIGTERM);
	waitpid(git, NULL, 0);
}

static void scenario_claude(void)
{
	real_agent("claude", "claude-code", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "", NULL,
		   NULL);
}

static void scenario_codex(void)
{
	real_agent("codex", "codex", "OPENAI_API_KEY", "OPENAI_BASE_URL", "/v1", "OPENAI_MODEL",
		   "mock-codex");
}

static void scenario_gemini(void)
{
	real_agent("gemini", "gemini", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "",
		   "GEMINI_MODEL", "gemini-2.5-pro");
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
	    {"deliver", scenario_deliver}, {"github", scenario_github},
	    {"scan", scenario_scan},	   {"fail", scenario_fail},
	    {"cancel", scenario_cancel},   {"timeout", scenario_timeout},
	    {"kill9", scenario_kill9},	   {"hostile", scenario_hostile},
	    {"claude", scenario_claude},   {"codex", scenario_codex},
	    {"gemini", scenario_gemini},
	};

	src_dir = getenv("SW_SANDBOXD_TEST_SRC");
	if (src_dir == NULL)
		src_dir = SW_SANDBOXD_TEST_SRC;
	sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]))
	    ->fn();
	return 0;
}
