/*
 * Black-box tests of sagewai-identity over the harness's real Kafka broker
 * and PostgreSQL, and a private OpenBao dev server (tests/harness/openbao)
 * for the Vault backend. One program, one scenario per argument:
 *
 *   config    refused starts: master keys file missing, group-readable,
 *             malformed; MAC key malformed; each names the file, exit 2
 *   api       single_org: secrets and profiles CRUD, validation errors that
 *             name the key path, 422 for an unknown secret, reads open and
 *             writes needing the admin token
 *   auth      multi_tenant: tenant keys learnt from sagewai.tenants events;
 *             a key reads its own tenant, another's objects are 404, writes
 *             403, no key 401; the admin names tenants by id or name
 *   cascade   system, workflow and user levels: the same key at all three
 *             comes from the user's; levels reported; ACL denials (steps,
 *             agents); a named profile that does not exist is missing
 *   builtin   over Kafka: resolve, rotate (the old pinned version still
 *             seals), the sealed box opened with the test's host key holds
 *             the values and the request's ids, revoke (resolution and seal
 *             refused naming the key), a ciphertext moved to another row
 *             does not open, an unlisted host is unknown_host, a pin never
 *             resolved is not_allowed, an input MAC of a value is
 *             credential_in_input naming the field, identity.denied events
 *   rekey     a second master key: rows re-encrypted under it, the values
 *             still seal, rekey again is a no-op, a restart with only the
 *             new key still seals
 *   vault     OpenBao: set, rotate and read through Vault, an operator's
 *             vault_path, a wrong token (403) and a stopped Vault fail closed
 *             as backend_unavailable naming the backend and the key
 *   cache     a long cache: a revocation through one instance is refused at
 *             once by it and, through its event, by another instance
 *   hostile   garbage and malformed requests on sagewai.identity (dead
 *             letters, bad_request answers; the service keeps serving),
 *             oversized and garbage HTTP bodies
 *   prune     SAGEWAI_IDENTITY_RETENTION_S: a malformed one refused; 0 keeps
 *             everything; resolutions created and minted rows revoked
 *             longer ago are deleted, younger ones and minted rows not yet
 *             revoked (however old) kept; the grants table is gone
 *
 * Every scenario ends by checking that no line the service logged holds a
 * secret value of the test (raw, base64 or hex).
 */
#include <arpa/inet.h>
#include <glob.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

static struct sw_event_registry *reg;
static rd_kafka_t *producer;
static char prefix[48], dir[512], db_dsn[512], group[128];
static char mkeys_path[600], mac_path[600], hosts_path[600], admin_path[600];
static char token_path[600], log_path[600];
static char admin[65];
static uint8_t mac_key[32], host_pk[32], host_sk[32];
static pid_t id_pid = -1, id2_pid = -1;
static int id_port, id2_port;
static const char *mode = "single_org";
static long cache_ms = 1000;
static char vault_addr[128], vault_token[128];
static int vault_on;
static struct sw_test_replies rp; /* replies read back */
static const char *const *start_more; /* more settings for id_start */
static void check_topic(const rd_kafka_message_t *m, json_t *ev);
static char *markers[64];
static size_t nmarkers;

/* ---- small helpers ----------------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t m)
{
	sw_test_file_write(path, text, m);
}

static void hex32(char out[65])
{
	uint8_t k[32];

	randombytes_buf(k, sizeof(k));
	sw_hex_encode(k, sizeof(k), out);
}

/* A secret value of the test, remembered for the log check. */
static const char *marker(const char *what)
{
	char h[65], *m;

	hex32(h);
	h[16] = '\0';
	SW_CHECK(asprintf(&m, "MARK-%s-%s", what, h) > 0);
	SW_CHECK(nmarkers < 64);
	markers[nmarkers++] = m;
	return m;
}

static char *b64(const char *s)
{
	size_t n = strlen(s), len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *out = malloc(len);

	SW_CHECK(out != NULL);
	sodium_bin2base64(out, len, (const uint8_t *)s, n, sodium_base64_VARIANT_ORIGINAL);
	return out;
}

static void mac_hex(const char *v, char out[65])
{
	uint8_t m[32];

	crypto_generichash(m, 32, (const uint8_t *)v, strlen(v), mac_key, 32);
	sw_hex_encode(m, 32, out);
}

static const char *js(json_t *j, const char *k)
{
	const char *v = json_string_value(json_object_get(j, k));

	return v != NULL ? v : "";
}

/* ---- the service ---------------------------------------------------------------- */

static pid_t spawn(const char *log, int want_port, int *port, const char *const *more)
{
	static const char *const argv[] = {"sagewai-identity", "serve", NULL};
	char path[600], dsn[700], gid[160], m[64], mk[700], mac[700], hosts[700], adm[700];
	char cache[64], va[200], vt[700];
	const char *env[32];
	size_t n = 0;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/services/identity/sagewai-identity",
		 getenv("SW_BUILD_DIR"));
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "identity");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(m, sizeof(m), "SAGEWAI_MODE=%s", mode);
	snprintf(mk, sizeof(mk), "SAGEWAI_IDENTITY_MASTER_KEYS_FILE=%s", mkeys_path);
	snprintf(mac, sizeof(mac), "SAGEWAI_SECRET_MAC_KEY_FILE=%s", mac_path);
	snprintf(hosts, sizeof(hosts), "SAGEWAI_IDENTITY_HOSTS_FILE=%s", hosts_path);
	snprintf(adm, sizeof(adm), "SAGEWAI_ADMIN_TOKEN_FILE=%s", admin_path);
	snprintf(cache, sizeof(cache), "SAGEWAI_IDENTITY_CACHE_MS=%ld", cache_ms);
	env[n++] = dsn;
	env[n++] = gid;
	env[n++] = m;
	env[n++] = mk;
	env[n++] = mac;
	env[n++] = hosts;
	env[n++] = adm;
	env[n++] = cache;
	env[n++] = "SAGEWAI_HTTP_PORT=0";
	env[n++] = "SAGEWAI_LOG_LEVEL=debug";
	env[n++] = "SAGEWAI_VAULT_TIMEOUT_MS=1500";
	env[n++] = SW_TEST_ENV_FAST_REBALANCE;
	if (vault_on) {
		snprintf(va, sizeof(va), "SAGEWAI_VAULT_ADDR=%s", vault_addr);
		snprintf(vt, sizeof(vt), "SAGEWAI_VAULT_TOKEN_FILE=%s", token_path);
		env[n++] = va;
		env[n++] = vt;
	}
	while (more != NULL && *more != NULL && n < 30)
		env[n++] = *more++;
	env[n] = NULL;
	pid = sw_test_proc_spawn(path, argv, env, log);
	if (want_port)
		*port = sw_test_proc_wait_port(pid, "sagewai-identity", log, "identity started");
	return pid;
}

/* Each start logs to a file of its own (the port is read from its first
 * "started" line); the log check reads them all. */
static void id_start(void)
{
	static int starts;

	snprintf(log_path, sizeof(log_path), "%s/identity-%d.log", dir, ++starts);
	sw_test_log_watch(log_path, 60);
	id_pid = spawn(log_path, 1, &id_port, start_more);
}

static void id_stop(void)
{
	sw_test_proc_stop(&id_pid, SIGTERM, "sagewai-identity");
}

/* The exit status of a start that must fail, and its log holds want. */
static void refused_start_with(const char *want, const char *const *more)
{
	char log[700], cmd[900];
	int st = 0;
	pid_t pid;

	snprintf(log, sizeof(log), "%s/refused.log", dir);
	unlink(log);
	pid = spawn(log, 0, NULL, more);
	SW_CHECK(waitpid(pid, &st, 0) == pid);
	SW_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d, want exit 2", st);
	snprintf(cmd, sizeof(cmd), "grep -qF -- '%s' %s", want, log);
	SW_REQUIRE(system(cmd) == 0, "the refusal does not say '%s'", want);
}

static void refused_start(const char *want)
{
	refused_start_with(want, NULL);
}

static void setup(const char *scenario)
{
	static const char *const pconf[] = {"linger.ms=1", NULL};
	static const char *const rtopics[] = {"sagewai.identity", "sagewai.identity.replies",
					      "sagewai.identity.sealed", NULL};
	static const char *const gtopics[] = {"sagewai.identity", "sagewai.tenants",
					      "sagewai.credentials", NULL};
	char q[2048], err[256], k1[65], mk[65], line[200], rg[160];

	sw_test_env_load();
	SW_CHECK(sodium_init() >= 0);
	sw_test_proc_watch(&id_pid);
	sw_test_proc_watch(&id2_pid);
	snprintf(prefix, sizeof(prefix), "%s-%d", scenario, (int)getpid());
	snprintf(group, sizeof(group), "identity-test-%s", prefix);
	snprintf(dir, sizeof(dir), "%s/tests-tmp/identity-%s", getenv("SW_BUILD_DIR"), prefix);
	snprintf(q, sizeof(q), "rm -rf %s && mkdir -p %s && chmod 700 %s", dir, dir, dir);
	SW_CHECK(system(q) == 0);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "identity", scenario);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, pconf);
	/* keys and files */
	snprintf(mkeys_path, sizeof(mkeys_path), "%s/master.keys", dir);
	snprintf(mac_path, sizeof(mac_path), "%s/mac.key", dir);
	snprintf(hosts_path, sizeof(hosts_path), "%s/hosts", dir);
	snprintf(admin_path, sizeof(admin_path), "%s/admin.token", dir);
	snprintf(token_path, sizeof(token_path), "%s/vault.token", dir);
	hex32(k1);
	snprintf(line, sizeof(line), "# test keys\nk1 %s\n", k1);
	write_file(mkeys_path, line, 0600);
	hex32(mk);
	SW_CHECK(sw_hex_decode(mk, mac_key, 32) == 0);
	snprintf(line, sizeof(line), "%s\n", mk);
	write_file(mac_path, line, 0600);
	crypto_box_keypair(host_pk, host_sk);
	{
		char pk[65];

		sw_hex_encode(host_pk, 32, pk);
		snprintf(line, sizeof(line), "host-a %s\n", pk);
		write_file(hosts_path, line, 0644);
	}
	hex32(admin);
	snprintf(line, sizeof(line), "%s\n", admin);
	write_file(admin_path, line, 0600);
	/* the service's group starts at the ends; replies are read from now on */
	sw_test_kafka_group_to_end(group, gtopics);
	snprintf(rg, sizeof(rg), "identity-test-replies-%s", prefix);
	sw_test_replies_open(&rp, reg, rg, rtopics, &id_pid, "sagewai-identity");
	rp.check = check_topic;
}

/* ---- HTTP ------------------------------------------------------------------------ */

static json_t *http_at(int port, const char *method, const char *path, const char *body,
		       const char *token, long *status)
{
	char url[1200], auth[300];
	const char *hdrs[3] = {"Content-Type: application/json", NULL, NULL};
	struct sw_test_http_reply r = {0};
	json_t *j = NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	if (token != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hdrs[1] = auth;
	}
	sw_test_http_request(method, url, body, body ? strlen(body) : 0, hdrs, 20, &r);
	*status = r.status;
	if (r.body != NULL)
		j = json_loads(r.body, 0, NULL);
	free(r.body);
	return j;
}

static json_t *http(const char *method, const char *path, const char *body, const char *token,
		    long *status)
{
	return http_at(id_port, method, path, body, token, status);
}

/* method path must answer want; the reply's JSON (caller decrefs). */
static json_t *must(long want, const char *method, const char *path, const char *body,
		    const char *token)
{
	long st;
	json_t *j = http(method, path, body, token, &st);
	char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;

	SW_REQUIRE(st == want, "%s %s: HTTP %ld, want %ld: %s", method, path, st, want,
		   t ? t : "(no JSON)");
	free(t);
	return j;
}

static void must_drop(long want, const char *method, const char *path, const char *body,
		      const char *token)
{
	json_decref(must(want, method, path, body, token));
}

/* The error message of a refusal must hold want. */
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

static int put_secret(const char *scope, const char *name, const char *value,
		      const char *backend)
{
	char path[300], body[1024], *v = b64(value);
	json_t *j;
	int version;

	snprintf(path, sizeof(path), "/v1/secrets/%s?tenant=%s", name, scope);
	if (backend != NULL)
		snprintf(body, sizeof(body), "{\"value_b64\": \"%s\", \"backend\": \"%s\"}", v,
			 backend);
	else
		snprintf(body, sizeof(body), "{\"value_b64\": \"%s\"}", v);
	free(v);
	j = must(201, "PUT", path, body, admin);
	version = (int)json_integer_value(json_object_get(j, "version"));
	json_decref(j);
	return version;
}

static int rotate_secret(const char *scope, const char *name, const char *value)
{
	char path[300], body[1024], *v = b64(value);
	json_t *j;
	int version;

	snprintf(path, sizeof(path), "/v1/secrets/%s/rotate?tenant=%s", name, scope);
	snprintf(body, sizeof(body), "{\"value_b64\": \"%s\"}", v);
	free(v);
	j = must(201, "POST", path, body, admin);
	version = (int)json_integer_value(json_object_get(j, "version"));
	json_decref(j);
	return version;
}

static void put_profile(const char *scope, const char *level, const char *name,
			const char *body)
{
	char path[300];

	snprintf(path, sizeof(path), "/v1/identity/profiles/%s?level=%s&tenant=%s", name, level,
		 scope);
	must_drop(200, "PUT", path, body, admin);
}

/* ---- Kafka ---------------------------------------------------------------------- */

static void produce(const char *type, const char *topic, const char *tenant, const char *run,
		    const char *step_id, const char *producer_name, json_t *fields)
{
	sw_test_event_send(reg, producer, topic, run[0] ? run : tenant, type, producer_name,
			   tenant, run, step_id, fields);
	sw_test_kafka_flush(producer, 30000);
}

/* An event the service produced came on the topic its schema names
 * (answers on sagewai.identity.replies, seals on sagewai.identity.sealed,
 * changes on sagewai.identity): requesters read only the reply topics. */
static void check_topic(const rd_kafka_message_t *m, json_t *ev)
{
	const char *type = js(json_object_get(ev, "header"), "type");
	json_t *schema;
	const char *want;

	if (strcmp(js(json_object_get(ev, "header"), "producer"), "sagewai-identity") != 0)
		return; /* the test's own requests and hostile input */
	schema = json_loads(sw_events_schema_json(reg, type), 0, NULL);
	want = js(schema, "sagewai.topic");
	SW_REQUIRE(want[0] != '\0' && strcmp(rd_kafka_topic_name(m->rkt), want) == 0,
		   "%s on %s, its schema names %s", type, rd_kafka_topic_name(m->rkt), want);
	json_decref(schema);
}

/* The events of type (and request rid) seen so far, after waiting up to
 * 15 s for at least want of them (a loaded machine delivers late), then
 * 500 ms more for any extra that would make the count wrong. */
static size_t count_events_at_least(const char *type, const char *rid, size_t want)
{
	for (int i = 0; i < 30 && sw_test_replies_count(&rp, type, rid) < want; i++)
		sw_test_replies_poll(&rp, 500);
	sw_test_replies_poll(&rp, 500);
	return sw_test_replies_count(&rp, type, rid);
}

static size_t count_events(const char *type, const char *rid)
{
	return count_events_at_least(type, rid, 0);
}

/* Ask for a resolution over Kafka; the identity.resolved answer (borrowed). */
static json_t *resolve_kafka(const char *tenant, const char *run, const char *workflow,
			     const char *user, json_t *steps, json_t *input_macs)
{
	char rid[SW_UUID_STRLEN];

	sw_uuid_v7_str(rid);
	produce("identity.resolve_requested", "sagewai.identity", tenant, run, NULL,
		"sagewai-scheduler",
		json_pack("{s:s, s:s, s:i, s:s, s:o, s:o}", "request_id", rid, "workflow",
			  workflow, "workflow_version", 1, "user", user, "steps", steps,
			  "input_macs", input_macs ? input_macs : json_array()));
	return sw_test_replies_for(&rp, "identity.resolved", rid);
}

static json_t *step1(const char *step, const char *mode_, const char *agent,
		     const char *profile)
{
	return json_pack("[{s:s, s:s, s:s, s:s}]", "step", step, "mode", mode_, "agent", agent,
			 "profile", profile);
}

/* Ask for a seal; the identity.sealed answer (borrowed). */
static json_t *seal_kafka(const char *tenant, const char *run, const char *step,
			  const uint8_t pk[32], json_t *pins, char sandbox[SW_UUID_STRLEN])
{
	char rid[SW_UUID_STRLEN], hk[65], step_id[200];

	sw_uuid_v7_str(rid);
	sw_uuid_v7_str(sandbox);
	sw_hex_encode(pk, 32, hk);
	snprintf(step_id, sizeof(step_id), "%s/%s/1", run, step);
	produce("identity.seal_requested", "sagewai.identity", tenant, run, step_id,
		"sagewai-sandboxd",
		json_pack("{s:s, s:s, s:s, s:s, s:o}", "request_id", rid, "step", step,
			  "sandbox_id", sandbox, "host_key", hk, "keys", pins));
	return sw_test_replies_for(&rp, "identity.sealed", rid);
}

static json_t *pin(const char *env, const char *secret, int version)
{
	return json_pack("[{s:s, s:s, s:i}]", "env", env, "secret", secret, "version", version);
}

/* Open a sealed answer with the test's host key: the box's JSON. */
static json_t *open_box(json_t *sealed)
{
	const char *hex = js(sealed, "sealed");
	size_t n = strlen(hex) / 2;
	uint8_t *box = malloc(n + 1), *pt = malloc(n + 1);
	json_t *j;

	SW_REQUIRE(json_is_true(json_object_get(sealed, "ok")), "seal refused: %s: %s",
		   js(sealed, "code"), js(sealed, "error"));
	SW_CHECK(box != NULL && pt != NULL && n > crypto_box_SEALBYTES);
	SW_CHECK(sw_hex_decode(hex, box, n) == 0);
	SW_REQUIRE(crypto_box_seal_open(pt, box, n, host_pk, host_sk) == 0,
		   "the box does not open with the host key");
	j = json_loadb((const char *)pt, n - crypto_box_SEALBYTES, 0, NULL);
	SW_REQUIRE(j != NULL, "the box does not hold JSON");
	free(box);
	free(pt);
	return j;
}

/* The value (decoded) of env in an opened box. */
static char *box_value(json_t *box, const char *env, int *version)
{
	json_t *k;
	size_t i;

	json_array_foreach(json_object_get(box, "keys"), i, k)
		if (strcmp(js(k, "env"), env) == 0) {
			const char *b = js(k, "value_b64");
			uint8_t *out = malloc(strlen(b) + 1);
			size_t n = 0;

			SW_CHECK(sodium_base642bin(out, strlen(b), b, strlen(b), NULL, &n, NULL,
						   sodium_base64_VARIANT_ORIGINAL) == 0);
			out[n] = '\0';
			*version = (int)json_integer_value(json_object_get(k, "version"));
			return (char *)out;
		}
	SW_REQUIRE(0, "no key %s in the box", env);
	return NULL;
}

static void require_sealed_value(json_t *sealed, const char *run, const char *sandbox,
				 const char *env, const char *want, int want_version)
{
	json_t *box = open_box(sealed);
	int version = 0;
	char *v = box_value(box, env, &version);

	SW_REQUIRE(strcmp(v, want) == 0, "%s holds another value", env);
	SW_REQUIRE(version == want_version, "%s: version %d, want %d", env, version, want_version);
	SW_REQUIRE(strcmp(js(box, "run_id"), run) == 0 && strcmp(js(box, "sandbox_id"), sandbox) == 0 &&
		   strcmp(js(box, "request_id"), js(sealed, "request_id")) == 0,
		   "the box's ids differ from the request's");
	free(v);
	json_decref(box);
}

static void require_refused(json_t *ev, const char *code, const char *msg)
{
	char *t = json_dumps(ev, JSON_COMPACT);

	SW_REQUIRE(!json_is_true(json_object_get(ev, "ok")), "accepted, want %s: %s", code, t);
	SW_REQUIRE(strcmp(js(ev, "code"), code) == 0, "code %s, want %s: %s", js(ev, "code"), code,
		   t);
	SW_REQUIRE(msg == NULL || strstr(js(ev, "error"), msg) != NULL, "error lacks '%s': %s",
		   msg, t);
	free(t);
}

/* The resolved key env of step (in an answer) or NULL. */
static json_t *resolved_key(json_t *answer, const char *step, const char *env)
{
	json_t *s, *k;
	size_t i, j;

	json_array_foreach(json_object_get(answer, "steps"), i, s)
		if (strcmp(js(s, "step"), step) == 0)
			json_array_foreach(json_object_get(s, "keys"), j, k)
				if (strcmp(js(k, "env"), env) == 0)
					return k;
	return NULL;
}

/* ---- the log check -------------------------------------------------------------- */

static void log_clean(const char *path)
{
	struct stat st;
	char *text;
	FILE *f;
	size_t i, n;

	if (stat(path, &st) != 0)
		return;
	text = malloc((size_t)st.st_size + 1);
	f = fopen(path, "r");
	SW_CHECK(text != NULL && f != NULL);
	n = fread(text, 1, (size_t)st.st_size, f);
	text[n] = '\0';
	fclose(f);
	for (i = 0; i < nmarkers; i++) {
		char *b = b64(markers[i]), *h = sw_hex_dup(markers[i], strlen(markers[i]));

		SW_REQUIRE(strstr(text, markers[i]) == NULL, "the log holds a secret value");
		SW_REQUIRE(strstr(text, b) == NULL, "the log holds a secret value in base64");
		SW_REQUIRE(strstr(text, h) == NULL, "the log holds a secret value in hex");
		free(b);
		free(h);
	}
	free(text);
}

static void finish(void)
{
	glob_t g;
	char q[700];
	size_t i;

	snprintf(q, sizeof(q), "%s/*.log", dir);
	SW_REQUIRE(glob(q, 0, NULL, &g) == 0 && g.gl_pathc > 0 && nmarkers > 0,
		   "no service log to check");
	for (i = 0; i < g.gl_pathc; i++)
		log_clean(g.gl_pathv[i]);
	globfree(&g);
	id_stop();
	sw_test_proc_stop(&id2_pid, SIGTERM, "sagewai-identity (second)");
	printf("%s: ok\n", prefix);
}

/* ---- scenarios ------------------------------------------------------------------ */

static void t_config(void)
{
	char line[200], k[65], good[300];
	FILE *f;

	setup("config");
	f = fopen(mkeys_path, "r");
	SW_CHECK(f != NULL && fgets(good, sizeof(good), f) && fgets(good, sizeof(good), f));
	fclose(f);
	chmod(mkeys_path, 0640);
	refused_start("lets group or others read it");
	chmod(mkeys_path, 0600);
	hex32(k);
	snprintf(line, sizeof(line), "k1 %s\nk2 %.60s\n", k, k);
	write_file(mkeys_path, line, 0600);
	refused_start("line 2: malformed");
	unlink(mkeys_path);
	refused_start("SAGEWAI_IDENTITY_MASTER_KEYS_FILE");
	write_file(mkeys_path, good, 0600);
	write_file(mac_path, "not hex at all\n", 0600);
	refused_start("SAGEWAI_SECRET_MAC_KEY_FILE");
	hex32(k);
	write_file(mac_path, k, 0600);
	/* mint sources (SAGEWAI_IDENTITY_MINTS_FILE): each mistake refused */
	{
		static const struct {
			const char *text, *want;
			mode_t mode;
		} bad[] = {
		    {"{\"mints\": {\"ci\": {\"policies\": [\"r\"], \"ttl_s\": 60}}", "mints.json:1:",
		     0644},
		    {"{\"mints\": {\"ci\": {\"policies\": [\"root\"], \"ttl_s\": 60}}}",
		     "not root", 0644},
		    {"{\"mints\": {\"ci\": {\"policies\": [\"r\"], \"ttl_s\": 0}}}",
		     "ttl_s must be 1..86400", 0644},
		    {"{\"mints\": {\"ci\": {\"policies\": [\"r\"], \"ttl_s\": 9, \"x\": 1}}}",
		     "unknown field", 0644},
		    {"{\"mints\": {\"Bad Name\": {\"policies\": [\"r\"], \"ttl_s\": 9}}}",
		     "not a secret name", 0644},
		    {"{\"mints\": {\"ci\": {\"policies\": [\"r x\"], \"ttl_s\": 9}}}",
		     "not a policy name", 0644},
		    {"{\"mints\": {\"ci\": {\"policies\": [\"r\"], \"ttl_s\": 9}}}",
		     "only its owner may write", 0666},
		    {"{\"mints\": {\"ci\": {\"policies\": [\"r\"], \"ttl_s\": 9}}}",
		     "SAGEWAI_VAULT_ADDR is not set", 0644},
		};
		char mpath[700], menv[800];
		const char *more[] = {menv, NULL};

		snprintf(mpath, sizeof(mpath), "%s/mints.json", dir);
		snprintf(menv, sizeof(menv), "SAGEWAI_IDENTITY_MINTS_FILE=%s", mpath);
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			write_file(mpath, bad[b].text, bad[b].mode);
			refused_start_with(bad[b].want, more);
		}
	}
	/* the key material itself is never in a refusal */
	marker("unused");
	id_pid = -1;
	finish();
}

static void t_api(void)
{
	const char *v1 = marker("api1"), *v2 = marker("api2");
	char body[512], *b;
	json_t *j, *s;

	setup("api");
	id_start();
	/* reads are open in single_org; writes need the token */
	j = must(200, "GET", "/v1/secrets", NULL, NULL);
	SW_CHECK(json_array_size(json_object_get(j, "secrets")) == 0);
	json_decref(j);
	b = b64(v1);
	snprintf(body, sizeof(body), "{\"value_b64\": \"%s\"}", b);
	free(b);
	must_err(401, "PUT", "/v1/secrets/gh", body, NULL, "unauthorized", NULL);
	must_err(401, "PUT", "/v1/secrets/gh", body, "wrong-token", "unauthorized", NULL);
	SW_CHECK(put_secret("default", "gh", v1, NULL) == 1);
	SW_CHECK(rotate_secret("default", "gh", v2) == 2);
	must_err(404, "POST", "/v1/secrets/nope/rotate", body, admin, "not_found", "nope");
	must_err(400, "PUT", "/v1/secrets/gh", "{\"value_b64\": \"QUJDREVG\", \"backend\": \"vault\"}",
		 admin, "bad_request", "not configured");
	j = must(200, "GET", "/v1/secrets", NULL, NULL);
	s = json_array_get(json_object_get(j, "secrets"), 0);
	SW_REQUIRE(strcmp(js(s, "name"), "gh") == 0 && strcmp(js(s, "backend"), "builtin") == 0 &&
		   json_integer_value(json_object_get(s, "current")) == 2 &&
		   strcmp(js(s, "state"), "active") == 0 &&
		   json_array_size(json_object_get(s, "versions")) == 2,
		   "secret listing");
	{
		char *t = json_dumps(j, 0);

		SW_REQUIRE(strstr(t, v1) == NULL && strstr(t, v2) == NULL, "a listing holds a value");
		free(t);
	}
	json_decref(j);
	/* validation: names, values, bodies */
	must_err(400, "PUT", "/v1/secrets/Bad%20Name", body, admin, "bad_request", "secret name");
	must_err(400, "PUT", "/v1/secrets/x1", "{\"value_b64\": \"not base64!\"}", admin,
		 "bad_request", "base64");
	must_err(400, "PUT", "/v1/secrets/x1", "{\"value_b64\": \"YWI=\"}", admin, "bad_request",
		 "fewer than 4 bytes");
	must_err(400, "PUT", "/v1/secrets/x1", "{\"value_b64\": \"QUJDREVG\", \"extra\": 1}", admin,
		 "bad_request", "extra");
	must_err(400, "PUT", "/v1/secrets/x1", "{\"value_b64\": ", admin, "bad_json", NULL);
	must_err(400, "PUT", "/v1/secrets/x1", "[1,2]", admin, "bad_request", NULL);
	/* profiles */
	put_profile("default", "workflow", "deploy",
		    "{\"keys\": {\"GITHUB_TOKEN\": {\"secret\": \"gh\", \"steps\": [\"wf/*\"]},"
		    " \"API_BASE\": {\"value\": \"https://api.internal\"}}}");
	j = must(200, "GET", "/v1/identity/profiles/deploy", NULL, NULL);
	SW_CHECK(strcmp(js(json_object_get(json_object_get(json_object_get(j, "body"), "keys"),
					   "GITHUB_TOKEN"),
			   "secret"),
			"gh") == 0);
	json_decref(j);
	j = must(200, "GET", "/v1/identity/profiles", NULL, NULL);
	SW_CHECK(json_array_size(json_object_get(j, "profiles")) == 1);
	json_decref(j);
	must_err(400, "PUT", "/v1/identity/profiles/p2", "{\"keys\": {\"PATH\": {\"value\": \"x\"}}}",
		 admin, "bad_request", "keys.PATH");
	must_err(400, "PUT", "/v1/identity/profiles/p2",
		 "{\"keys\": {\"LD_PRELOAD\": {\"value\": \"x\"}}}", admin, "bad_request",
		 "keys.LD_PRELOAD");
	must_err(400, "PUT", "/v1/identity/profiles/p2",
		 "{\"keys\": {\"TOK\": {\"secret\": \"gh\", \"colour\": 1}}}", admin, "bad_request",
		 "keys.TOK.colour");
	must_err(400, "PUT", "/v1/identity/profiles/p2",
		 "{\"keys\": {\"TOK\": {\"secret\": \"gh\", \"agents\": [\"vim\"]}}}", admin,
		 "bad_request", "keys.TOK.agents[0]");
	must_err(400, "PUT", "/v1/identity/profiles/p2",
		 "{\"keys\": {\"TOK\": {\"secret\": \"gh\", \"value\": \"x\"}}}", admin,
		 "bad_request", "exactly one");
	must_err(422, "PUT", "/v1/identity/profiles/p2",
		 "{\"keys\": {\"TOK\": {\"secret\": \"nosuch\"}}}", admin, "missing", "nosuch");
	must_err(400, "PUT", "/v1/identity/profiles/other?level=system", "{\"keys\": {}}", admin,
		 "bad_request", "default");
	must_err(401, "PUT", "/v1/identity/profiles/p2", "{\"keys\": {}}", NULL, "unauthorized",
		 NULL);
	must_err(404, "GET", "/v1/identity/profiles/nosuch", NULL, NULL, "not_found", NULL);
	must_drop(200, "DELETE", "/v1/identity/profiles/deploy", NULL, admin);
	must_err(404, "DELETE", "/v1/identity/profiles/deploy", NULL, admin, "not_found", NULL);
	/* revoke, delete */
	j = must(200, "POST", "/v1/secrets/gh/revoke", "{\"version\": 1}", admin);
	SW_CHECK(json_integer_value(json_object_get(j, "versions_revoked")) == 1);
	json_decref(j);
	must_err(404, "POST", "/v1/secrets/gh/revoke", "{\"version\": 9}", admin, "not_found", NULL);
	must_drop(200, "DELETE", "/v1/secrets/gh", NULL, admin);
	must_err(404, "DELETE", "/v1/secrets/nosuch", NULL, admin, "not_found", NULL);
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM identity.versions WHERE ct IS NOT NULL"
					 " OR state <> 'deleted'") == 0);
	/* the events of the changes */
	SW_REQUIRE(count_events_at_least("secret.set", NULL, 2) == 2 &&
		   count_events_at_least("secret.revoked", NULL, 2) == 2 &&
		   count_events_at_least("profile.set", NULL, 1) == 1 &&
		   count_events_at_least("profile.deleted", NULL, 1) == 1,
		   "change events");
	finish();
}

/* multi_tenant: a tenant and its key, as the scheduler announces them. */
static void announce_tenant(const char *tid, const char *name, const char *key)
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
			  "TENANT", "key_sha256", hex, "user", "alice"));
}

static void t_auth(void)
{
	char ta[SW_UUID_STRLEN], tb[SW_UUID_STRLEN], ka[80], kb[80], path[300];
	const char *va = marker("authA"), *vb = marker("authB");
	int64_t until;
	long st;
	json_t *j;

	mode = "multi_tenant";
	setup("auth");
	id_start();
	sw_uuid_v7_str(ta);
	sw_uuid_v7_str(tb);
	snprintf(ka, sizeof(ka), "swk_%s-a", prefix);
	snprintf(kb, sizeof(kb), "swk_%s-b", prefix);
	announce_tenant(ta, "acme", ka);
	announce_tenant(tb, "globex", kb);
	/* learnt from the events, soon */
	until = sw_mono_ms() + 20000;
	for (;;) {
		j = http("GET", "/v1/secrets", NULL, ka, &st);
		json_decref(j);
		if (st == 200)
			break;
		SW_REQUIRE(sw_mono_ms() < until, "tenant key not accepted in 20 s (HTTP %ld)", st);
		sw_test_msleep(200);
	}
	/* the admin names tenants by name or id */
	SW_CHECK(put_secret("acme", "tok", va, NULL) == 1);
	SW_CHECK(put_secret(tb, "tok", vb, NULL) == 1);
	must_err(400, "GET", "/v1/secrets", NULL, admin, "bad_request", "?tenant");
	must_err(404, "GET", "/v1/secrets?tenant=nosuch", NULL, admin, "not_found", NULL);
	/* a key reads its own */
	j = must(200, "GET", "/v1/secrets", NULL, ka);
	SW_CHECK(json_array_size(json_object_get(j, "secrets")) == 1);
	json_decref(j);
	snprintf(path, sizeof(path), "/v1/secrets?tenant=%s", ta);
	must_drop(200, "GET", path, NULL, ka);
	must_drop(200, "GET", "/v1/secrets?tenant=acme", NULL, ka);
	/* another tenant's objects are missing to it, writes forbidden */
	must_err(404, "GET", "/v1/secrets?tenant=globex", NULL, ka, "not_found", NULL);
	snprintf(path, sizeof(path), "/v1/secrets?tenant=%s", tb);
	must_err(404, "GET", path, NULL, ka, "not_found", NULL);
	must_err(404, "GET", "/v1/secrets?tenant=_system", NULL, ka, "not_found", NULL);
	must_err(404, "GET", "/v1/identity/profiles/default?level=system", NULL, ka, "not_found",
		 NULL);
	must_err(403, "PUT", "/v1/secrets/tok", "{\"value_b64\": \"QUJDREVG\"}", ka, "forbidden",
		 NULL);
	must_err(403, "POST", "/v1/secrets/tok/revoke", "{}", ka, "forbidden", NULL);
	must_err(403, "POST", "/v1/secrets/rekey", NULL, kb, "forbidden", NULL);
	must_err(401, "GET", "/v1/secrets", NULL, NULL, "unauthorized", NULL);
	must_err(401, "GET", "/v1/secrets", NULL, "swk_unknown", "unauthorized", NULL);
	/* a resolve through a key sees its own tenant's profile only */
	put_profile("globex", "workflow", "p", "{\"keys\": {\"TOK\": {\"secret\": \"tok\"}}}");
	j = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": "
		 "\"identity_scoped\", \"agent\": \"\", \"profile\": \"p\"}]}",
		 ka);
	require_refused(j, "missing", "profile p");
	json_decref(j);
	j = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": "
		 "\"identity_scoped\", \"agent\": \"\", \"profile\": \"p\"}]}",
		 kb);
	SW_REQUIRE(json_is_true(json_object_get(j, "ok")), "tenant B resolves its own");
	json_decref(j);
	/* a deleted tenant's key stops working */
	produce("tenant.deleted", "sagewai.tenants", tb, "", NULL, "sagewai-scheduler",
		json_pack("{s:s, s:s, s:i}", "tenant_id", tb, "name", "globex", "keys_revoked", 1));
	until = sw_mono_ms() + 20000;
	for (;;) {
		j = http("GET", "/v1/secrets", NULL, kb, &st);
		json_decref(j);
		if (st == 401)
			break;
		SW_REQUIRE(sw_mono_ms() < until, "deleted tenant's key still accepted");
		sw_test_msleep(200);
	}
	finish();
}

static void t_cascade(void)
{
	const char *vs = marker("sys"), *vw = marker("wf"), *vu = marker("user");
	json_t *j, *k;

	setup("cascade");
	id_start();
	put_secret("_system", "tok", vs, NULL);
	put_secret("default", "tok", vw, NULL);
	put_secret("default", "utok", vu, NULL);
	put_profile("_system", "system", "default",
		    "{\"keys\": {\"TOKEN\": {\"secret\": \"tok\"}, \"SYS_ONLY\": {\"value\": \"s\"}}}");
	put_profile("default", "workflow", "deploy",
		    "{\"keys\": {\"TOKEN\": {\"secret\": \"tok\"},"
		    " \"WF_ONLY\": {\"secret\": \"tok\", \"steps\": [\"other/*\"]},"
		    " \"AGENT_KEY\": {\"secret\": \"tok\", \"agents\": [\"codex\"]},"
		    " \"STEP_KEY\": {\"secret\": \"tok\", \"steps\": [\"wf/s?\"]}}}");
	put_profile("default", "user", "alice", "{\"keys\": {\"TOKEN\": {\"secret\": \"utok\"}}}");
	/* all three levels: the user's wins */
	j = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"user\": \"alice\", \"steps\": [{\"step\": \"s1\","
		 " \"mode\": \"cli_agent\", \"agent\": \"claude-code\", \"profile\": \"deploy\"}]}",
		 NULL);
	SW_REQUIRE(json_is_true(json_object_get(j, "ok")), "cascade refused: %s", js(j, "error"));
	k = resolved_key(j, "s1", "TOKEN");
	SW_REQUIRE(k && strcmp(js(k, "level"), "user") == 0 && strcmp(js(k, "secret"), "utok") == 0 &&
		   strcmp(js(k, "profile"), "alice") == 0 && strcmp(js(k, "kind"), "secret") == 0,
		   "TOKEN from the user level");
	{
		char mac[65];

		mac_hex(vu, mac);
		SW_REQUIRE(strcmp(js(k, "mac"), mac) == 0, "TOKEN's MAC is not the value's");
	}
	k = resolved_key(j, "s1", "SYS_ONLY");
	SW_REQUIRE(k && strcmp(js(k, "level"), "system") == 0 && strcmp(js(k, "kind"), "plain") == 0 &&
		   strcmp(js(k, "value"), "s") == 0,
		   "SYS_ONLY from the system level");
	k = resolved_key(j, "s1", "STEP_KEY");
	SW_REQUIRE(k && strcmp(js(k, "level"), "workflow") == 0, "STEP_KEY allowed by its glob");
	SW_REQUIRE(resolved_key(j, "s1", "WF_ONLY") == NULL &&
		   resolved_key(j, "s1", "AGENT_KEY") == NULL,
		   "denied keys resolved");
	SW_REQUIRE(json_array_size(json_object_get(j, "denied")) == 2, "two denials");
	{
		char *t = json_dumps(json_object_get(j, "denied"), 0);

		SW_REQUIRE(strstr(t, "step not in acl") && strstr(t, "agent not in acl"),
			   "denial reasons: %s", t);
		free(t);
	}
	json_decref(j);
	/* without the user: the workflow's; the agent ACL does not apply to identity_scoped */
	j = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s1\", \"mode\": \"identity_scoped\","
		 " \"agent\": \"\", \"profile\": \"deploy\"}]}",
		 NULL);
	k = resolved_key(j, "s1", "TOKEN");
	SW_REQUIRE(k && strcmp(js(k, "level"), "workflow") == 0, "TOKEN from the workflow level");
	SW_REQUIRE(resolved_key(j, "s1", "AGENT_KEY") != NULL, "AGENT_KEY for identity_scoped");
	json_decref(j);
	/* no profile, no user: the system's */
	j = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s1\", \"mode\": \"identity_scoped\","
		 " \"agent\": \"\", \"profile\": \"\"}]}",
		 NULL);
	k = resolved_key(j, "s1", "TOKEN");
	SW_REQUIRE(k && strcmp(js(k, "level"), "system") == 0, "TOKEN from the system level");
	json_decref(j);
	j = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s1\", \"mode\": \"identity_scoped\","
		 " \"agent\": \"\", \"profile\": \"nope\"}]}",
		 NULL);
	require_refused(j, "missing", "missing: profile nope");
	json_decref(j);
	/* a revoked system secret is refused naming the key */
	must_drop(200, "POST", "/v1/secrets/tok/revoke?tenant=_system", "{}", admin);
	j = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s1\", \"mode\": \"identity_scoped\","
		 " \"agent\": \"\", \"profile\": \"\"}]}",
		 NULL);
	require_refused(j, "revoked", "revoked: TOKEN (secret tok of _system");
	json_decref(j);
	finish();
}

static void t_builtin(void)
{
	const char *v1 = marker("b1"), *v2 = marker("b2"), *other = marker("other");
	char r1[80], r2[80], r3[80], sb[SW_UUID_STRLEN], mac[65], q[1024];
	json_t *a, *s, *k, *macs;
	uint8_t pk2[32], sk2[32];

	setup("builtin");
	id_start();
	SW_CHECK(put_secret("default", "gh", v1, NULL) == 1);
	put_secret("default", "other", other, NULL);
	put_profile("default", "workflow", "deploy",
		    "{\"keys\": {\"GITHUB_TOKEN\": {\"secret\": \"gh\"},"
		    " \"NOPE\": {\"secret\": \"other\", \"steps\": [\"elsewhere/*\"]}}}");
	snprintf(r1, sizeof(r1), "%s-r1", prefix);
	snprintf(r2, sizeof(r2), "%s-r2", prefix);
	snprintf(r3, sizeof(r3), "%s-r3", prefix);
	a = resolve_kafka("default", r1, "wf", "", step1("s1", "identity_scoped", "", "deploy"), NULL);
	SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "resolve: %s", js(a, "error"));
	k = resolved_key(a, "s1", "GITHUB_TOKEN");
	mac_hex(v1, mac);
	SW_REQUIRE(k && json_integer_value(json_object_get(k, "version")) == 1 &&
		   strcmp(js(k, "mac"), mac) == 0 && strcmp(js(k, "backend"), "builtin") == 0,
		   "GITHUB_TOKEN v1 with the value's MAC");
	SW_REQUIRE(strcmp(js(json_object_get(a, "header"), "run_id"), r1) == 0 &&
		   strcmp(js(json_object_get(a, "header"), "tenant"), "default") == 0,
		   "the answer's header names the run and tenant");
	SW_REQUIRE(count_events_at_least("identity.denied", js(a, "request_id"), 1) == 1,
		   "one identity.denied for NOPE");
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM identity.resolutions") == 1);
	/* rotate: a new version; the old pin still seals */
	SW_CHECK(rotate_secret("default", "gh", v2) == 2);
	s = seal_kafka("default", r1, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 1), sb);
	require_sealed_value(s, r1, sb, "GITHUB_TOKEN", v1, 1);
	SW_REQUIRE(strcmp(js(json_object_get(s, "header"), "run_id"), r1) == 0,
		   "sealed header run id");
	a = resolve_kafka("default", r2, "wf", "", step1("s1", "identity_scoped", "", "deploy"), NULL);
	k = resolved_key(a, "s1", "GITHUB_TOKEN");
	SW_REQUIRE(k && json_integer_value(json_object_get(k, "version")) == 2, "v2 after rotate");
	s = seal_kafka("default", r2, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_sealed_value(s, r2, sb, "GITHUB_TOKEN", v2, 2);
	/* an unlisted host, a pin never resolved, another step */
	crypto_box_keypair(pk2, sk2);
	s = seal_kafka("default", r2, "s1", pk2, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_refused(s, "unknown_host", NULL);
	s = seal_kafka("default", r1, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_refused(s, "not_allowed", "GITHUB_TOKEN");
	s = seal_kafka("default", r2, "s9", host_pk, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_refused(s, "not_allowed", NULL);
	s = seal_kafka("acme", r2, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_refused(s, "not_allowed", NULL);
	/* a ciphertext moved to another row does not open */
	PQclear(sw_test_pg_exec(db_dsn, "CREATE TABLE public.saved AS SELECT version, nonce, ct"
					" FROM identity.versions WHERE name = 'gh'"));
	PQclear(sw_test_pg_exec(db_dsn, "UPDATE identity.versions v SET nonce = s.nonce, ct = s.ct"
					" FROM public.saved s WHERE v.name = 'gh' AND v.version = 2"
					" AND s.version = 1"));
	s = seal_kafka("default", r2, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_refused(s, "backend_unavailable", "does not open");
	PQclear(sw_test_pg_exec(db_dsn, "UPDATE identity.versions v SET nonce = s.nonce, ct = s.ct"
					" FROM public.saved s WHERE v.name = 'gh' AND v.version = 2"
					" AND s.version = 2"));
	s = seal_kafka("default", r2, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_sealed_value(s, r2, sb, "GITHUB_TOKEN", v2, 2);
	/* the input carries a secret value: refused naming the field */
	mac_hex(v2, mac);
	macs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "field", "input.note", "mac",
			 "00000000000000000000000000000000000000000000000000000000000000aa",
			 "field", "input.deploy.token", "mac", mac);
	a = resolve_kafka("default", r3, "wf", "", json_array(), macs);
	require_refused(a, "credential_in_input", "input.deploy.token");
	SW_REQUIRE(strstr(js(a, "error"), v2) == NULL, "the error holds the value");
	/* revoke v2: resolution and seal refused naming the key; v1 still seals */
	must_drop(200, "POST", "/v1/secrets/gh/revoke", "{\"version\": 2, \"hard\": true}", admin);
	a = resolve_kafka("default", r3, "wf", "", step1("s1", "identity_scoped", "", "deploy"), NULL);
	require_refused(a, "revoked", "revoked: GITHUB_TOKEN (secret gh v2)");
	s = seal_kafka("default", r2, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 2), sb);
	require_refused(s, "revoked", "revoked: GITHUB_TOKEN");
	s = seal_kafka("default", r1, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 1), sb);
	require_sealed_value(s, r1, sb, "GITHUB_TOKEN", v1, 1);
	/* the revocation event says hard */
	{
		size_t i;
		int found = 0;

		sw_test_replies_poll(&rp, 500);
		for (i = 0; i < rp.n; i++)
			if (strcmp(js(json_object_get(rp.ev[i], "header"), "type"),
				   "secret.revoked") == 0 &&
			    strcmp(js(rp.ev[i], "name"), "gh") == 0 &&
			    json_is_true(json_object_get(rp.ev[i], "hard")) &&
			    json_integer_value(json_object_get(rp.ev[i], "version")) == 2)
				found = 1;
		SW_REQUIRE(found, "no secret.revoked {gh, 2, hard}");
	}
	/* delete: every version refused */
	must_drop(200, "DELETE", "/v1/secrets/gh", NULL, admin);
	s = seal_kafka("default", r1, "s1", host_pk, pin("GITHUB_TOKEN", "gh", 1), sb);
	require_refused(s, "revoked", "GITHUB_TOKEN");
	snprintf(q, sizeof(q), "SELECT count(*) FROM identity.versions WHERE name = 'gh' AND ct IS NOT NULL");
	SW_CHECK(sw_test_pg_long(db_dsn, q) == 0);
	finish();
}

static void t_rekey(void)
{
	const char *va = marker("ra"), *vb = marker("rb");
	char line[400], k1[300], k2[65], run[80], sb[SW_UUID_STRLEN];
	json_t *j, *a, *s;
	FILE *f;

	setup("rekey");
	f = fopen(mkeys_path, "r");
	SW_CHECK(f != NULL && fgets(k1, sizeof(k1), f) && fgets(k1, sizeof(k1), f));
	fclose(f);
	id_start();
	put_secret("default", "a", va, NULL);
	put_secret("default", "b", vb, NULL);
	rotate_secret("default", "b", va);
	put_profile("default", "workflow", "p",
		    "{\"keys\": {\"A\": {\"secret\": \"a\"}, \"B\": {\"secret\": \"b\"}}}");
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM identity.versions WHERE key_id = 'k1'") == 3);
	id_stop();
	hex32(k2);
	snprintf(line, sizeof(line), "%sk2 %s\n", k1, k2);
	write_file(mkeys_path, line, 0600);
	id_start();
	must_err(401, "POST", "/v1/secrets/rekey", NULL, NULL, "unauthorized", NULL);
	j = must(200, "POST", "/v1/secrets/rekey", NULL, admin);
	SW_REQUIRE(strcmp(js(j, "key_id"), "k2") == 0 &&
		   json_integer_value(json_object_get(j, "rows")) == 3,
		   "rekey answer");
	json_decref(j);
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM identity.versions WHERE key_id = 'k2'") == 3);
	SW_REQUIRE(count_events_at_least("secret.rekeyed", NULL, 1) == 1, "secret.rekeyed");
	j = must(200, "POST", "/v1/secrets/rekey", NULL, admin);
	SW_CHECK(json_integer_value(json_object_get(j, "rows")) == 0);
	json_decref(j);
	snprintf(run, sizeof(run), "%s-r1", prefix);
	a = resolve_kafka("default", run, "wf", "", step1("s", "identity_scoped", "", "p"), NULL);
	SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "%s", js(a, "error"));
	s = seal_kafka("default", run, "s", host_pk,
		       json_pack("[{s:s, s:s, s:i}, {s:s, s:s, s:i}]", "env", "A", "secret", "a",
				 "version", 1, "env", "B", "secret", "b", "version", 2),
		       sb);
	require_sealed_value(s, run, sb, "A", va, 1);
	require_sealed_value(s, run, sb, "B", va, 2);
	/* with only the new key, everything still opens */
	id_stop();
	snprintf(line, sizeof(line), "k2 %s\n", k2);
	write_file(mkeys_path, line, 0600);
	id_start();
	s = seal_kafka("default", run, "s", host_pk, pin("A", "a", 1), sb);
	require_sealed_value(s, run, sb, "A", va, 1);
	(void)vb;
	finish();
}

/* ---- Vault ------------------------------------------------------------------------ */

static json_t *resolve_pinned(const char *tenant, const char *run, json_t *steps, json_t *pins);
static json_t *rpin(const char *env, const char *secret, int version, const char *value);
static void require_key_version(json_t *a, const char *env, int version, const char *value);

static char bao_dir[600];

static void bao(const char *cmd)
{
	char q[1400];

	snprintf(q, sizeof(q), "%s/tests/harness/openbao %s %s", getenv("SW_SOURCE_DIR"), cmd,
		 bao_dir);
	SW_REQUIRE(system(q) == 0, "openbao %s failed", cmd);
}

static void bao_atexit(void)
{
	char q[1400];

	snprintf(q, sizeof(q), "%s/tests/harness/openbao stop %s", getenv("SW_SOURCE_DIR"),
		 bao_dir);
	if (system(q) != 0)
		fprintf(stderr, "openbao stop failed\n");
}

static void read_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	SW_CHECK(f != NULL && fgets(out, (int)len, f) != NULL);
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

/* A request to OpenBao itself (the operator's side). */
static json_t *bao_http(const char *method, const char *path, const char *body, long *status)
{
	char url[400], tok[300];
	const char *hdrs[] = {tok, NULL};
	struct sw_test_http_reply r = {0};
	json_t *j;

	snprintf(url, sizeof(url), "%s%s", vault_addr, path);
	snprintf(tok, sizeof(tok), "X-Vault-Token: %s", vault_token);
	sw_test_http_request(method, url, body, body ? strlen(body) : 0, hdrs, 10, &r);
	*status = r.status;
	j = r.body ? json_loads(r.body, 0, NULL) : NULL;
	free(r.body);
	return j;
}

static void t_vault(void)
{
	const char *v1 = marker("v1"), *v2 = marker("v2"), *ref1 = marker("ref1"),
		   *ref2 = marker("ref2");
	char run[80], sb[SW_UUID_STRLEN], body[512], vp[128], *b;
	json_t *j, *a, *s, *k;
	long st;
	int i;

	cache_ms = 0;
	setup("vault");
	snprintf(bao_dir, sizeof(bao_dir), "%s/bao", dir);
	atexit(bao_atexit);
	bao("start");
	{
		char p[700];

		snprintf(p, sizeof(p), "%s/bao.addr", bao_dir);
		read_line(p, vault_addr, sizeof(vault_addr));
		snprintf(p, sizeof(p), "%s/bao.token", bao_dir);
		read_line(p, vault_token, sizeof(vault_token));
	}
	snprintf(body, sizeof(body), "%s\n", vault_token);
	write_file(token_path, body, 0600);
	vault_on = 1;
	id_start();
	/* set and rotate through Vault */
	SW_CHECK(put_secret("default", "vs", v1, "vault") == 1);
	SW_CHECK(rotate_secret("default", "vs", v2) == 2);
	must_err(409, "PUT", "/v1/secrets/vs",
		 "{\"value_b64\": \"QUJDREVG\", \"backend\": \"builtin\"}", admin, "conflict",
		 "backend vault");
	j = bao_http("GET", "/v1/secret/data/sagewai/default/vs?version=2", NULL, &st);
	b = b64(v2);
	SW_REQUIRE(st == 200 && strcmp(js(json_object_get(json_object_get(j, "data"), "data"), "value"),
				       b) == 0,
		   "Vault holds v2 as base64 under value");
	free(b);
	json_decref(j);
	/* an operator's path, by reference */
	snprintf(body, sizeof(body), "{\"data\": {\"value\": \"%s\"}}", ref1);
	json_decref(bao_http("POST", "/v1/secret/data/ops/gh", body, &st));
	SW_CHECK(st == 200);
	j = must(201, "PUT", "/v1/secrets/opsref", "{\"vault_path\": \"ops/gh\"}", admin);
	SW_CHECK(json_integer_value(json_object_get(j, "version")) == 1);
	json_decref(j);
	must_err(409, "POST", "/v1/secrets/opsref/rotate", "{\"value_b64\": \"QUJDREVG\"}", admin,
		 "conflict", "Vault");
	put_profile("default", "workflow", "p",
		    "{\"keys\": {\"GITHUB_TOKEN\": {\"secret\": \"vs\"},"
		    " \"OPS\": {\"secret\": \"opsref\"}}}");
	snprintf(run, sizeof(run), "%s-r1", prefix);
	a = resolve_kafka("default", run, "wf", "", step1("s", "identity_scoped", "", "p"), NULL);
	SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "%s", js(a, "error"));
	k = resolved_key(a, "s", "GITHUB_TOKEN");
	SW_REQUIRE(k && strcmp(js(k, "backend"), "vault") == 0 &&
		   json_integer_value(json_object_get(k, "version")) == 2, "vault key v2");
	s = seal_kafka("default", run, "s", host_pk,
		       json_pack("[{s:s, s:s, s:i}, {s:s, s:s, s:i}]", "env", "GITHUB_TOKEN",
				 "secret", "vs", "version", 2, "env", "OPS", "secret", "opsref",
				 "version", 1),
		       sb);
	require_sealed_value(s, run, sb, "GITHUB_TOKEN", v2, 2);
	require_sealed_value(s, run, sb, "OPS", ref1, 1);
	/* the operator rotates in Vault: the next resolution takes it */
	snprintf(body, sizeof(body), "{\"data\": {\"value\": \"%s\"}}", ref2);
	json_decref(bao_http("POST", "/v1/secret/data/ops/gh", body, &st));
	snprintf(run, sizeof(run), "%s-r2", prefix);
	a = resolve_kafka("default", run, "wf", "", step1("s", "identity_scoped", "", "p"), NULL);
	k = resolved_key(a, "s", "OPS");
	SW_REQUIRE(k && json_integer_value(json_object_get(k, "version")) == 2, "OPS v2 from Vault");
	s = seal_kafka("default", run, "s", host_pk, pin("OPS", "opsref", 2), sb);
	require_sealed_value(s, run, sb, "OPS", ref2, 2);
	/* a re-run's pins read the older Vault versions (?version=N): an owned
	 * path's v1 and the reference's v1, each with its value */
	snprintf(run, sizeof(run), "%s-rp", prefix);
	a = resolve_pinned("default", run, json_pack("[{s:s, s:s, s:s, s:s}]", "step", "s", "mode",
						     "identity_scoped", "agent", "", "profile", "p"),
			   json_pack("[{s:s, s:s, s:s, s:i, s:s}, {s:s, s:s, s:s, s:i, s:s}]",
				     "step", "s", "env", "GITHUB_TOKEN", "secret", "vs", "version",
				     1, "mac", "", "step", "s", "env", "OPS", "secret", "opsref",
				     "version", 1, "mac", ""));
	require_key_version(a, "GITHUB_TOKEN", 1, v1);
	require_key_version(a, "OPS", 1, ref1);
	s = seal_kafka("default", run, "s", host_pk,
		       json_pack("[{s:s, s:s, s:i}, {s:s, s:s, s:i}]", "env", "GITHUB_TOKEN",
				 "secret", "vs", "version", 1, "env", "OPS", "secret", "opsref",
				 "version", 1),
		       sb);
	require_sealed_value(s, run, sb, "GITHUB_TOKEN", v1, 1);
	require_sealed_value(s, run, sb, "OPS", ref1, 1);
	/* v1 destroyed in Vault behind identity's back: gone, closed */
	json_decref(bao_http("POST", "/v1/secret/destroy/sagewai/default/vs",
			     "{\"versions\": [1]}", &st));
	SW_CHECK(st == 204 || st == 200);
	a = resolve_pinned("default", run, step1("s", "identity_scoped", "", "p"),
			   rpin("GITHUB_TOKEN", "vs", 1, v1));
	require_refused(a, "version_gone", "GITHUB_TOKEN (secret vs");
	a = resolve_pinned("default", run, step1("s", "identity_scoped", "", "p"),
			   rpin("GITHUB_TOKEN", "vs", 5, NULL));
	require_refused(a, "version_gone", "no such version");
	/* deleting a reference leaves the operator's value alone */
	must_drop(200, "DELETE", "/v1/secrets/opsref", NULL, admin);
	json_decref(bao_http("GET", "/v1/secret/data/ops/gh", NULL, &st));
	SW_REQUIRE(st == 200, "the operator's path was deleted");
	/* deleting a secret identity wrote destroys its values in Vault; the name
	 * may then be set again, with Vault too: its versions go on from the
	 * path's (a reset version number would clash with the deleted ones) */
	SW_CHECK(put_secret("default", "vd", v1, "vault") == 1);
	SW_CHECK(rotate_secret("default", "vd", v2) == 2);
	must_drop(200, "DELETE", "/v1/secrets/vd", NULL, admin);
	for (i = 1; i <= 2; i++) {
		snprintf(vp, sizeof(vp), "/v1/secret/data/sagewai/default/vd?version=%d", i);
		j = bao_http("GET", vp, NULL, &st);
		SW_REQUIRE(st == 404 && !json_is_object(json_object_get(json_object_get(j, "data"),
									 "data")),
			   "version %d of a deleted secret is still readable in Vault", i);
		json_decref(j);
	}
	j = must(201, "PUT", "/v1/secrets/vd",
		 "{\"value_b64\": \"QUJDREVGR0g=\", \"backend\": \"vault\"}", admin);
	SW_REQUIRE(json_integer_value(json_object_get(j, "version")) == 3,
		   "a deleted vault secret set again: version 3");
	json_decref(j);
	/* a wrong token: 403, closed */
	id_stop();
	write_file(token_path, "not-the-token\n", 0600);
	id_start();
	snprintf(run, sizeof(run), "%s-r3", prefix);
	put_profile("default", "workflow", "q", "{\"keys\": {\"GITHUB_TOKEN\": {\"secret\": \"vs\"}}}");
	a = resolve_kafka("default", run, "wf", "", step1("s", "identity_scoped", "", "q"), NULL);
	require_refused(a, "backend_unavailable",
			"backend vault unavailable for GITHUB_TOKEN (secret vs): HTTP 403");
	must_err(503, "POST", "/v1/secrets/vs/rotate", "{\"value_b64\": \"QUJDREVGRw==\"}", admin,
		 "backend_unavailable", "backend vault unavailable for secret vs: HTTP 403");
	s = seal_kafka("default", "some-run", "s", host_pk, pin("GITHUB_TOKEN", "vs", 2), sb);
	require_refused(s, "not_allowed", NULL);
	/* Vault down: closed, naming the backend and the key */
	id_stop();
	snprintf(body, sizeof(body), "%s\n", vault_token);
	write_file(token_path, body, 0600);
	id_start();
	snprintf(run, sizeof(run), "%s-r4", prefix);
	a = resolve_kafka("default", run, "wf", "", step1("s", "identity_scoped", "", "q"), NULL);
	SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "%s", js(a, "error"));
	bao("stop");
	s = seal_kafka("default", run, "s", host_pk, pin("GITHUB_TOKEN", "vs", 2), sb);
	require_refused(s, "backend_unavailable", "backend vault unavailable for GITHUB_TOKEN");
	snprintf(run, sizeof(run), "%s-r5", prefix);
	a = resolve_kafka("default", run, "wf", "", step1("s", "identity_scoped", "", "q"), NULL);
	require_refused(a, "backend_unavailable", "backend vault unavailable for GITHUB_TOKEN");
	/* and the service keeps serving */
	must_drop(200, "GET", "/v1/secrets", NULL, NULL);
	finish();
}

static void t_cache(void)
{
	const char *v = marker("c");
	static const char *const more[] = {"SAGEWAI_HTTP_PORT=0", NULL};
	static const char *req =
		"{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": \"identity_scoped\","
		" \"agent\": \"\", \"profile\": \"p\"}]}";
	char log2[700];
	int64_t until;
	json_t *j;
	long st;

	cache_ms = 600000;
	setup("cache");
	id_start();
	snprintf(log2, sizeof(log2), "%s/identity2.log", dir);
	id2_pid = spawn(log2, 1, &id2_port, more);
	put_secret("default", "tok", v, NULL);
	put_profile("default", "workflow", "p", "{\"keys\": {\"TOK\": {\"secret\": \"tok\"}}}");
	/* both instances resolve (and cache for 10 minutes) */
	j = must(200, "POST", "/v1/identity/resolve", req, NULL);
	SW_REQUIRE(json_is_true(json_object_get(j, "ok")), "first resolve");
	json_decref(j);
	j = http_at(id2_port, "POST", "/v1/identity/resolve", req, NULL, &st);
	SW_REQUIRE(st == 200 && json_is_true(json_object_get(j, "ok")), "second instance resolves");
	json_decref(j);
	/* revoked through the first: refused by it at once */
	must_drop(200, "POST", "/v1/secrets/tok/revoke", "{}", admin);
	j = must(200, "POST", "/v1/identity/resolve", req, NULL);
	require_refused(j, "revoked", "revoked: TOK");
	json_decref(j);
	/* and by the other once the event reaches it: well within the TTL */
	until = sw_mono_ms() + 10000;
	for (;;) {
		j = http_at(id2_port, "POST", "/v1/identity/resolve", req, NULL, &st);
		if (st == 200 && !json_is_true(json_object_get(j, "ok"))) {
			require_refused(j, "revoked", "revoked: TOK");
			json_decref(j);
			break;
		}
		json_decref(j);
		SW_REQUIRE(sw_mono_ms() < until,
			   "the second instance still serves a revoked secret after 10 s");
		sw_test_msleep(100);
	}
	finish();
}

static void t_hostile(void)
{
	static const char garbage[] = "\xc3\x01not an avro event at all";
	const char *v = marker("h");
	char reason[256], run[80], *big, sb[SW_UUID_STRLEN];
	json_t *a, *s;
	size_t n;

	setup("hostile");
	id_start();
	put_secret("default", "tok", v, NULL);
	put_profile("default", "workflow", "p", "{\"keys\": {\"TOK\": {\"secret\": \"tok\"}}}");
	/* garbage on the request topic: dead-lettered with a reason */
	sw_test_kafka_deliver(producer, "sagewai.identity", prefix, garbage, sizeof(garbage) - 1);
	SW_REQUIRE(sw_test_kafka_deadletter_find(prefix, garbage, sizeof(garbage) - 1, reason,
						 sizeof(reason)),
		   "garbage not dead-lettered");
	/* a request no answer could name: dead-lettered too */
	{
		struct sw_event_header h;
		char err[256];
		void *buf;
		size_t len;
		json_t *f = json_pack("{s:s, s:s, s:i, s:s, s:[], s:[]}", "request_id", "not-a-uuid",
				      "workflow", "wf", "workflow_version", 1, "user", "", "steps",
				      "input_macs");

		sw_event_header_init(&h, "identity.resolve_requested", "sagewai-scheduler");
		snprintf(h.tenant, sizeof(h.tenant), "default");
		snprintf(h.run_id, sizeof(h.run_id), "%s-bad", prefix);
		SW_CHECK(sw_event_encode(reg, "identity.resolve_requested", &h, f, &buf, &len, err,
					 sizeof(err)) == 0);
		json_decref(f);
		sw_test_kafka_deliver(producer, "sagewai.identity", h.run_id, buf, len);
		SW_REQUIRE(sw_test_kafka_deadletter_find(prefix, buf, len, reason, sizeof(reason)) &&
			   strstr(reason, "request_id") != NULL,
			   "a non-UUID request_id not dead-lettered");
		free(buf);
	}
	/* malformed but decodable requests: bad_request answers */
	snprintf(run, sizeof(run), "%s-r1", prefix);
	a = resolve_kafka("default", run, "wf", "",
			  json_pack("[{s:s, s:s, s:s, s:s}]", "step", "", "mode", "x", "agent", "",
				    "profile", "Bad Name"),
			  NULL);
	require_refused(a, "bad_request", "steps[0]");
	a = resolve_kafka("../etc", run, "wf", "", json_array(), NULL);
	require_refused(a, "bad_request", "tenant");
	a = resolve_kafka("_system", run, "wf", "", json_array(), NULL);
	require_refused(a, "bad_request", "tenant");
	a = resolve_kafka("default", run, "wf", "", json_array(),
			  json_pack("[{s:s, s:s}]", "field", "input.x", "mac", "abcd"));
	require_refused(a, "bad_request", "input_macs[0]");
	{
		char rid[SW_UUID_STRLEN];

		sw_uuid_v7_str(rid);
		sw_uuid_v7_str(sb);
		produce("identity.seal_requested", "sagewai.identity", "default", run, "x/s/1",
			"sagewai-sandboxd",
			json_pack("{s:s, s:s, s:s, s:s, s:o}", "request_id", rid, "step", "s",
				  "sandbox_id", sb, "host_key", "abcdef", "keys", json_array()));
		s = sw_test_replies_for(&rp, "identity.sealed", rid);
		require_refused(s, "bad_request", "host_key");
	}
	s = seal_kafka("default", run, "s", host_pk,
		       json_pack("[{s:s, s:s, s:i}]", "env", "PATH", "secret", "tok", "version", 1),
		       sb);
	require_refused(s, "bad_request", "keys[0]");
	/* still serving */
	snprintf(run, sizeof(run), "%s-r2", prefix);
	a = resolve_kafka("default", run, "wf", "", step1("s", "identity_scoped", "", "p"), NULL);
	SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "%s", js(a, "error"));
	/* HTTP: oversized, garbage, wrong types */
	n = 200u << 10;
	big = malloc(n + 64);
	SW_CHECK(big != NULL);
	memset(big, 'A', n + 64);
	memcpy(big, "{\"value_b64\": \"", 15);
	memcpy(big + n, "\"}", 3);
	{
		long st;
		json_t *j = http("PUT", "/v1/secrets/big", big, admin, &st);

		SW_REQUIRE(st == 413, "a 200 KiB body: HTTP %ld, want 413", st);
		json_decref(j);
	}
	/* a value just over 64 KiB inside the body cap */
	n = 4 * ((65 * 1024 + 2) / 3);
	memset(big, 'A', n + 64);
	memcpy(big, "{\"value_b64\": \"", 15);
	memcpy(big + 15 + n, "\"}", 3);
	must_err(413, "PUT", "/v1/secrets/big", big, admin, "too_large", NULL);
	free(big);
	must_err(400, "PUT", "/v1/secrets/x", "\x01\x02\xff garbage", admin, "bad_json", NULL);
	must_err(400, "PUT", "/v1/secrets/x", "{\"value_b64\": 12}", admin, "bad_request", NULL);
	must_err(400, "POST", "/v1/secrets/tok/revoke", "{\"version\": \"1\"}", admin, "bad_request",
		 NULL);
	must_err(400, "POST", "/v1/identity/resolve", "{\"workflow\": 1}", NULL, "bad_request",
		 NULL);
	must_err(400, "GET", "/v1/identity/profiles?level=root", NULL, NULL, "bad_request", NULL);
	must_err(404, "GET", "/v1/secrets?tenant=..%2Fx", NULL, NULL, "not_found", NULL);
	must_drop(405, "PATCH", "/v1/secrets/tok", NULL, admin);
	/* the body's bytes are never echoed */
	{
		long st;
		json_t *j = http("PUT", "/v1/secrets/x", "{\"value_b64\": \"SECRET-IN-BROKEN-JSON",
				 admin, &st);
		char *t = j ? json_dumps(j, 0) : NULL;

		SW_REQUIRE(st == 400 && t && strstr(t, "SECRET-IN-BROKEN") == NULL,
			   "a broken body is echoed: %s", t ? t : "");
		free(t);
		json_decref(j);
	}
	finish();
}

/* kill -9 while a resolution waits on a Vault that never answers: the
 * request was consumed but not answered, so the restarted service answers
 * it (its offset was not stored). */
static void t_kill9(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t salen = sizeof(sa);
	char run[80], rid[SW_UUID_STRLEN], mac[65];
	int fd;

	setup("kill9");
	marker("k");
	/* a server that takes connections (the backlog) and never answers */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	SW_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		 listen(fd, 64) == 0 && getsockname(fd, (struct sockaddr *)&sa, &salen) == 0);
	snprintf(vault_addr, sizeof(vault_addr), "http://127.0.0.1:%d", ntohs(sa.sin_port));
	write_file(token_path, "some-token\n", 0600);
	vault_on = 1;
	id_start();
	/* a Vault secret as identity would have recorded it */
	mac_hex("never-read", mac);
	{
		char q[600];

		snprintf(q, sizeof(q),
			 "INSERT INTO identity.secrets (tenant, name, backend) VALUES"
			 " ('default', 'slow', 'vault');"
			 "INSERT INTO identity.versions (tenant, name, version, mac) VALUES"
			 " ('default', 'slow', 1, decode('%s', 'hex'))",
			 mac);
		PQclear(sw_test_pg_exec(db_dsn, q));
	}
	put_profile("default", "workflow", "p", "{\"keys\": {\"SLOW\": {\"secret\": \"slow\"}}}");
	snprintf(run, sizeof(run), "%s-r1", prefix);
	sw_uuid_v7_str(rid);
	produce("identity.resolve_requested", "sagewai.identity", "default", run, NULL,
		"sagewai-scheduler",
		json_pack("{s:s, s:s, s:i, s:s, s:o, s:[]}", "request_id", rid, "workflow", "wf",
			  "workflow_version", 1, "user", "", "steps",
			  step1("s", "identity_scoped", "", "p"), "input_macs"));
	/* the request is in hand (waiting on Vault for SAGEWAI_VAULT_TIMEOUT_MS) */
	{
		char cmd[800];
		int64_t until = sw_mono_ms() + 20000;

		snprintf(cmd, sizeof(cmd), "ss -tn state established "
			 "'( dport = :%d )' | grep -q 127.0.0.1", ntohs(sa.sin_port));
		while (system(cmd) != 0) {
			SW_REQUIRE(sw_mono_ms() < until, "the resolution never reached Vault");
			sw_test_msleep(20);
		}
	}
	sw_test_proc_stop(&id_pid, SIGKILL, "sagewai-identity");
	SW_REQUIRE(count_events("identity.resolved", rid) == 0, "answered before the kill");
	id_start();
	{
		json_t *a = sw_test_replies_for(&rp, "identity.resolved", rid);

		require_refused(a, "backend_unavailable", "backend vault unavailable for SLOW");
	}
	close(fd);
	finish();
}

/* cli_agent_jit (docs/JIT.md): an allow credential.decided is sealed at
 * once, for the sandbox, key and host key it names; the answer carries the
 * credential request's id. The test plays the policy (credential.decided). */
static void decided(const char *run, const char *rid, const char *sandbox, const char *name,
		    const char *decision, const char *secret, const uint8_t *hk)
{
	char step_id[200], hex[65] = "";

	if (hk != NULL)
		sw_hex_encode(hk, 32, hex);
	snprintf(step_id, sizeof(step_id), "%s/s1/1", run);
	produce("credential.decided", "sagewai.credentials", "default", run, step_id,
		"sagewai-policy",
		json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "request_id",
			  rid, "sandbox_id", sandbox, "step", "s1", "name", name, "decision",
			  decision, "by", "rule", "rule", "r1", "approver", "", "reason", "test",
			  "secret", secret, "host_key", hex));
}

static json_t *allowed(const char *run, const char *rid, const char *sandbox, const char *name,
		       const char *secret)
{
	decided(run, rid, sandbox, name, "allow", secret, host_pk);
	return sw_test_replies_for(&rp, "identity.sealed", rid);
}

static void sealed_refused(json_t *s, const char *code, const char *what)
{
	SW_REQUIRE(!json_is_true(json_object_get(s, "ok")) && strcmp(js(s, "code"), code) == 0,
		   "%s: %s %s, want %s", what, js(s, "code"), js(s, "error"), code);
}

static void t_grant(void)
{
	const char *v = marker("jit"), *vp = marker("pinned");
	char run[80], g[8][SW_UUID_STRLEN], sb[SW_UUID_STRLEN], rid[SW_UUID_STRLEN];
	char hk[65], step_id[200];
	uint8_t other_pk[32], other_sk[32];
	json_t *a, *s, *box, *k;
	char *val;
	int ver = 0;

	setup("grant");
	id_start();
	put_secret("default", "jit-tok", v, NULL);
	put_secret("default", "pinned", vp, NULL);
	put_profile("default", "workflow", "deploy",
		    "{\"keys\": {\"PINNED\": {\"secret\": \"pinned\"},"
		    " \"FORBIDDEN\": {\"secret\": \"pinned\", \"agents\": [\"codex\"]}}}");
	snprintf(run, sizeof(run), "%s-r1", prefix);
	a = resolve_kafka("default", run, "wf", "", step1("s1", "cli_agent_jit", "custom", "deploy"),
			  NULL);
	SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "resolve: %s", js(a, "error"));
	sw_uuid_v7_str(sb);
	for (int i = 0; i < 8; i++)
		sw_uuid_v7_str(g[i]);
	/* an allow naming the secret: sealed for that sandbox and key, to the
	 * host key the decision names, answered with the request's id */
	s = allowed(run, g[0], sb, "JIT_KEY", "jit-tok");
	SW_REQUIRE(strcmp(js(s, "sandbox_id"), sb) == 0 && strcmp(js(s, "name"), "JIT_KEY") == 0,
		   "the answer names the sandbox and key: %s %s", js(s, "sandbox_id"),
		   js(s, "name"));
	box = open_box(s);
	k = json_array_get(json_object_get(box, "keys"), 0);
	SW_REQUIRE(json_array_size(json_object_get(box, "keys")) == 1 &&
		       strcmp(js(k, "env"), "JIT_KEY") == 0 &&
		       strcmp(js(k, "secret"), "jit-tok") == 0 &&
		       json_integer_value(json_object_get(k, "version")) == 1 &&
		       strcmp(js(box, "request_id"), g[0]) == 0 &&
		       strcmp(js(box, "sandbox_id"), sb) == 0 && strcmp(js(box, "run_id"), run) == 0,
		   "the box holds JIT_KEY (jit-tok v1) for this request, run and sandbox");
	val = box_value(box, "JIT_KEY", &ver);
	SW_REQUIRE(strcmp(val, v) == 0, "the sealed value is the secret's");
	free(val);
	json_decref(box);
	/* a decision for a sandbox on another host (a host key not listed):
	 * refused, nothing sealed to it */
	crypto_box_keypair(other_pk, other_sk);
	decided(run, g[1], sb, "JIT_KEY", "allow", "jit-tok", other_pk);
	sealed_refused(sw_test_replies_for(&rp, "identity.sealed", g[1]), "unknown_host",
		       "a host not listed");
	/* a decision naming no host key: nothing to seal to */
	decided(run, g[2], sb, "JIT_KEY", "allow", "jit-tok", NULL);
	sealed_refused(sw_test_replies_for(&rp, "identity.sealed", g[2]), "bad_request",
		       "no host key");
	/* a denial is never sealed (nor answered) */
	decided(run, g[3], sb, "JIT_KEY", "deny", "", host_pk);
	/* from the run's cascade: a kept key is sealed at its pinned version;
	 * one the ACL denied (agents) is not_allowed naming why; one in none
	 * missing */
	box = open_box(allowed(run, g[4], sb, "PINNED", ""));
	k = json_array_get(json_object_get(box, "keys"), 0);
	SW_REQUIRE(strcmp(js(k, "secret"), "pinned") == 0, "PINNED from the cascade");
	json_decref(box);
	s = allowed(run, g[5], sb, "FORBIDDEN", "");
	sealed_refused(s, "not_allowed", "ACL");
	SW_REQUIRE(strstr(js(s, "error"), "agent not in acl") != NULL, "why: %s", js(s, "error"));
	sealed_refused(allowed(run, g[6], sb, "NOWHERE", ""), "missing", "not in the cascade");
	/* a hostile decision: a malformed key name */
	sealed_refused(allowed(run, g[7], sb, "bad name", ""), "bad_request", "bad name");
	SW_REQUIRE(count_events("identity.sealed", g[3]) == 0, "a denial was sealed");
	/* the former path: a seal request carrying a grant is refused */
	sw_uuid_v7_str(rid);
	sw_hex_encode(host_pk, 32, hk);
	snprintf(step_id, sizeof(step_id), "%s/s1/1", run);
	produce("identity.seal_requested", "sagewai.identity", "default", run, step_id,
		"sagewai-sandboxd",
		json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:i}], s:s}", "request_id", rid,
			  "step", "s1", "sandbox_id", sb, "host_key", hk, "keys", "env", "JIT_KEY",
			  "secret", "jit-tok", "version", 0, "grant", g[0]));
	sealed_refused(sw_test_replies_for(&rp, "identity.sealed", rid), "bad_request",
		       "a seal with a grant");
	SW_REQUIRE(sw_test_pg_long(db_dsn,
				   "SELECT count(*) FROM pg_tables WHERE"
				   " schemaname = 'identity' AND tablename = 'grants'") == 0,
		   "a grants table: the decision is the grant");
	finish();
}

/* ---- pins: a re-run's resolution at the original's versions ------------------ */

/* Ask for a resolution with pins over Kafka (as the scheduler does for a
 * re-run); the identity.resolved answer (borrowed). */
static json_t *resolve_pinned(const char *tenant, const char *run, json_t *steps, json_t *pins)
{
	char rid[SW_UUID_STRLEN];

	sw_uuid_v7_str(rid);
	produce("identity.resolve_requested", "sagewai.identity", tenant, run, NULL,
		"sagewai-scheduler",
		json_pack("{s:s, s:s, s:i, s:s, s:o, s:[], s:o}", "request_id", rid, "workflow",
			  "wf", "workflow_version", 1, "user", "", "steps", steps, "input_macs",
			  "pins", pins));
	return sw_test_replies_for(&rp, "identity.resolved", rid);
}

/* One pin of step s (mac: the value whose MAC is pinned, NULL for none). */
static json_t *rpin(const char *env, const char *secret, int version, const char *value)
{
	char mac[65] = "";

	if (value != NULL)
		mac_hex(value, mac);
	return json_pack("[{s:s, s:s, s:s, s:i, s:s}]", "step", "s", "env", env, "secret",
			 secret, "version", version, "mac", mac);
}

static void require_key_version(json_t *a, const char *env, int version, const char *value)
{
	json_t *k = resolved_key(a, "s", env);
	char mac[65];

	SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "pinned resolve refused: %s: %s",
		   js(a, "code"), js(a, "error"));
	mac_hex(value, mac);
	SW_REQUIRE(k != NULL && json_integer_value(json_object_get(k, "version")) == version &&
			   strcmp(js(k, "mac"), mac) == 0,
		   "%s: not version %d with its value's MAC", env, version);
}

static void t_pins(void)
{
	const char *a1 = marker("pa1"), *a2 = marker("pa2"), *a3 = marker("pa3"),
		   *b1 = marker("pb1"), *s1 = marker("ps1"), *s2 = marker("ps2");
	char ta[SW_UUID_STRLEN], tb[SW_UUID_STRLEN], ka[80], kb[80], run[80], sb[SW_UUID_STRLEN];
	char body[1024], mac[65];
	int64_t until;
	json_t *a, *s;
	long st;
	size_t i;

	mode = "multi_tenant";
	setup("pins");
	id_start();
	sw_uuid_v7_str(ta);
	sw_uuid_v7_str(tb);
	snprintf(ka, sizeof(ka), "swk_%s-a", prefix);
	snprintf(kb, sizeof(kb), "swk_%s-b", prefix);
	announce_tenant(ta, "acme", ka);
	announce_tenant(tb, "globex", kb);
	until = sw_mono_ms() + 20000;
	for (;;) {
		json_decref(http("GET", "/v1/secrets", NULL, kb, &st));
		if (st == 200)
			break;
		SW_REQUIRE(sw_mono_ms() < until, "tenant key not accepted in 20 s (HTTP %ld)", st);
		sw_test_msleep(200);
	}
	/* acme's tok at v3 (two rotations keep v1 and v2), globex's at v1 */
	SW_CHECK(put_secret("acme", "tok", a1, NULL) == 1);
	SW_CHECK(rotate_secret("acme", "tok", a2) == 2);
	SW_CHECK(rotate_secret("acme", "tok", a3) == 3);
	SW_CHECK(put_secret("globex", "tok", b1, NULL) == 1);
	SW_CHECK(put_secret("acme", "other", marker("pother"), NULL) == 1);
	SW_CHECK(put_secret("_system", "sys", s1, NULL) == 1);
	SW_CHECK(rotate_secret("_system", "sys", s2) == 2);
	put_profile("_system", "system", "default", "{\"keys\": {\"SYS\": {\"secret\": \"sys\"}}}");
	put_profile("acme", "workflow", "p",
		    "{\"keys\": {\"TOK\": {\"secret\": \"tok\"},"
		    " \"DENY\": {\"secret\": \"other\", \"steps\": [\"elsewhere/*\"]},"
		    " \"KNOB\": {\"value\": \"x\"}}}");
	put_profile("globex", "workflow", "p", "{\"keys\": {\"TOK\": {\"secret\": \"tok\"}}}");

	/* rotated since: the pinned version, sealed with its value */
	snprintf(run, sizeof(run), "%s-r1", prefix);
	a = resolve_kafka(ta, run, "wf", "", step1("s", "identity_scoped", "", "p"), NULL);
	require_key_version(a, "TOK", 3, a3);
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 1, a1));
	require_key_version(a, "TOK", 1, a1);
	require_key_version(a, "SYS", 2, s2); /* unpinned keys: the latest */
	s = seal_kafka(ta, run, "s", host_pk, pin("TOK", "tok", 1), sb);
	require_sealed_value(s, run, sb, "TOK", a1, 1);
	/* a key of _system pinned too; no MAC: not checked */
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"),
			   json_pack("[{s:s, s:s, s:s, s:i, s:s}, {s:s, s:s, s:s, s:i, s:s}]",
				     "step", "s", "env", "TOK", "secret", "tok", "version", 2, "mac",
				     "", "step", "s", "env", "SYS", "secret", "sys", "version", 1,
				     "mac", ""));
	require_key_version(a, "TOK", 2, a2);
	require_key_version(a, "SYS", 1, s1);
	/* through the HTTP preview, with the tenant's own key */
	mac_hex(a2, mac);
	snprintf(body, sizeof(body),
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": "
		 "\"identity_scoped\", \"agent\": \"\", \"profile\": \"p\"}], \"pins\": [{\"step\":"
		 " \"s\", \"env\": \"TOK\", \"secret\": \"tok\", \"version\": 2, \"mac\": \"%s\"}]}",
		 mac);
	a = must(200, "POST", "/v1/identity/resolve", body, ka);
	require_key_version(a, "TOK", 2, a2);
	json_decref(a);

	/* a version that is not there, or holds another value than pinned */
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 9, NULL));
	require_refused(a, "version_gone", "version_gone: TOK (secret tok v9): no such version");
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 1, a2));
	require_refused(a, "version_gone", "holds another value than the original run's");

	/* across tenants: globex's tok has v1 only; acme's v3 is not reachable,
	 * and globex's v1 is globex's own value */
	snprintf(run, sizeof(run), "%s-rb", prefix);
	a = resolve_pinned(tb, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 3, NULL));
	require_refused(a, "version_gone", "(secret tok v3): no such version");
	a = resolve_pinned(tb, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 1, a1));
	require_refused(a, "version_gone", "another value");
	a = resolve_pinned(tb, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 1, NULL));
	require_key_version(a, "TOK", 1, b1);
	s = seal_kafka(tb, run, "s", host_pk, pin("TOK", "tok", 1), sb);
	require_sealed_value(s, run, sb, "TOK", b1, 1);
	s = seal_kafka(tb, run, "s", host_pk, pin("TOK", "tok", 3), sb);
	require_refused(s, "not_allowed", NULL);
	/* a tenant's key cannot preview another's pins either: its own scope */
	snprintf(body, sizeof(body),
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": "
		 "\"identity_scoped\", \"agent\": \"\", \"profile\": \"p\"}], \"pins\": [{\"step\":"
		 " \"s\", \"env\": \"TOK\", \"secret\": \"tok\", \"version\": 3, \"mac\": \"\"}]}");
	a = must(200, "POST", "/v1/identity/resolve", body, kb);
	require_refused(a, "version_gone", "no such version");
	json_decref(a);

	/* a pin never widens access: a key the ACL denies, a plain knob, another
	 * secret than the cascade binds, a key not bound at all */
	snprintf(run, sizeof(run), "%s-r2", prefix);
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"),
			   rpin("DENY", "other", 1, NULL));
	require_refused(a, "not_allowed", "not_allowed: DENY (secret other v1) is pinned, but"
					  " step s is not given the key (step not in acl)");
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"),
			   rpin("KNOB", "other", 1, NULL));
	require_refused(a, "not_allowed", "is given a plain knob");
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"),
			   rpin("TOK", "other", 1, NULL));
	require_refused(a, "not_allowed", "is given secret tok now");
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"),
			   rpin("NOT_BOUND", "tok", 1, NULL));
	require_refused(a, "not_allowed", "its cascade does not bind it");
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM identity.resolutions WHERE"
					 " run_id LIKE '%-r2'") == 0);

	/* malformed pins: bad_request, nothing resolved */
	{
		json_t *bad[] = {
			rpin("TOK", "tok", 0, NULL),
			rpin("LD_PRELOAD", "tok", 1, NULL),
			rpin("TOK", "Bad Name", 1, NULL),
			json_pack("[{s:s, s:s, s:s, s:i, s:s}]", "step", "nope", "env", "TOK",
				  "secret", "tok", "version", 1, "mac", ""),
			json_pack("[{s:s, s:s, s:s, s:i, s:s}]", "step", "s", "env", "TOK",
				  "secret", "tok", "version", 1, "mac", "abcd"),
			json_pack("[{s:s, s:s, s:s, s:i, s:s}, {s:s, s:s, s:s, s:i, s:s}]", "step",
				  "s", "env", "TOK", "secret", "tok", "version", 1, "mac", "",
				  "step", "s", "env", "TOK", "secret", "tok", "version", 2, "mac",
				  ""),
		};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"), bad[i]);
			require_refused(a, "bad_request", "pins");
		}
	}
	a = must(200, "POST", "/v1/identity/resolve",
		 "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": "
		 "\"identity_scoped\", \"agent\": \"\", \"profile\": \"p\"}], \"pins\": 7}",
		 ka);
	require_refused(a, "bad_request", "pins: an array");
	json_decref(a);

	/* revoked since: closed, while unpinned still resolves the latest */
	must_drop(200, "POST", "/v1/secrets/tok/revoke?tenant=acme", "{\"version\": 1}", admin);
	snprintf(run, sizeof(run), "%s-r3", prefix);
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 1, a1));
	require_refused(a, "revoked", "revoked: TOK (secret tok v1)");
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 2, a2));
	require_key_version(a, "TOK", 2, a2);
	/* deleted (values destroyed): gone */
	must_drop(200, "DELETE", "/v1/secrets/tok?tenant=acme", NULL, admin);
	snprintf(run, sizeof(run), "%s-r4", prefix);
	a = resolve_pinned(ta, run, step1("s", "identity_scoped", "", "p"), rpin("TOK", "tok", 2, a2));
	require_refused(a, "version_gone", "version_gone: TOK (secret tok v2): its value was"
					   " destroyed");
	/* and the service keeps serving */
	must_drop(200, "GET", "/v1/secrets", NULL, ka);
	SW_REQUIRE(sw_test_proc_running(id_pid), "sagewai-identity exited");
	finish();
}

/* ---- prune: old resolutions and revoked minted rows deleted ------------------ */

/* The rows of each kind still there (a, b...: one letter per row). */
static long prune_left(const char *table, const char *col, const char *in)
{
	char q[400];

	snprintf(q, sizeof(q), "SELECT count(*) FROM identity.%s WHERE %s IN (%s)", table, col,
		 in);
	return sw_test_pg_long(db_dsn, q);
}

static void t_prune(void)
{
	static const char *const bad[] = {"SAGEWAI_IDENTITY_RETENTION_S=soon", NULL};
	static const char *const neg[] = {"SAGEWAI_IDENTITY_RETENTION_S=-1", NULL};
	static const char *const keep[] = {"SAGEWAI_IDENTITY_RETENTION_S=0", NULL};
	static const char *const day[] = {"SAGEWAI_IDENTITY_RETENTION_S=86400", NULL};
	static const char *const old_res = "'prune-old'";
	static const char *const young_res = "'prune-young'";
	static const char *const old_mint = "'old-revoked'";
	static const char *const kept_mint = "'young-revoked', 'old-owed', 'old-live'";
	char cmd[900];
	int64_t until;

	setup("prune");
	marker("prune-no-secret");
	refused_start_with("SAGEWAI_IDENTITY_RETENTION_S", bad);
	refused_start_with("SAGEWAI_IDENTITY_RETENTION_S", neg);
	/* 0 keeps everything; the first start also drops the grants table */
	start_more = keep;
	id_start();
	SW_REQUIRE(sw_test_pg_long(db_dsn,
				   "SELECT count(*) FROM pg_tables WHERE"
				   " schemaname = 'identity' AND tablename = 'grants'") == 0,
		   "the unused grants table is still there");
	/* resolutions two and three days old and one an hour old; minted rows
	 * revoked two days and an hour ago, and two never revoked */
	SW_REQUIRE(sw_test_pg_long(
		       db_dsn,
		       "WITH r AS (INSERT INTO identity.resolutions (run_id, step, request_id,"
		       " tenant, keys, created) VALUES"
		       " ('prune-old', 's1', '00000000-0000-4000-8000-000000000001',"
		       " 'default', '[]', now() - interval '2 days'),"
		       " ('prune-old', 's2', '00000000-0000-4000-8000-000000000002',"
		       " 'default', '[]', now() - interval '3 days'),"
		       " ('prune-young', 's1', '00000000-0000-4000-8000-000000000003',"
		       " 'default', '[]', now() - interval '1 hour') RETURNING 1)"
		       " SELECT count(*) FROM r") == 3,
		   "the resolutions were not inserted");
	SW_REQUIRE(sw_test_pg_long(
		       db_dsn,
		       "WITH m AS (INSERT INTO identity.minted (accessor, tenant, run_id,"
		       " step_id, sandbox_id, request_id, source, env, created, expires_at,"
		       " ended, revoked_at) SELECT a, 'default', 'prune-run', 'prune-run/s1/1',"
		       " 'sb', '00000000-0000-4000-8000-000000000009', 'ci', 'CI_TOKEN',"
		       " now() - interval '3 days', now() - interval '2 days', e, r FROM"
		       " (VALUES ('old-revoked', true, now() - interval '2 days'),"
		       " ('young-revoked', true, now() - interval '1 hour'),"
		       " ('old-owed', true, NULL::timestamptz),"
		       " ('old-live', false, NULL::timestamptz)) AS v (a, e, r) RETURNING 1)"
		       " SELECT count(*) FROM m") == 4,
		   "the minted rows were not inserted");
	/* a pass would have run a second after the start: wait past it */
	sw_test_msleep(2500);
	SW_REQUIRE(prune_left("resolutions", "run_id", old_res) == 2 &&
		       prune_left("minted", "accessor", old_mint) == 1,
		   "a retention of 0 deleted rows");
	id_stop();
	/* a day: the older ones go at the first pass, a second after the start */
	start_more = day;
	id_start();
	until = sw_mono_ms() + 30000;
	while (prune_left("resolutions", "run_id", old_res) != 0 ||
	       prune_left("minted", "accessor", old_mint) != 0) {
		SW_REQUIRE(sw_mono_ms() < until,
			   "old resolutions or revoked minted rows not pruned");
		sw_test_msleep(200);
	}
	SW_REQUIRE(prune_left("resolutions", "run_id", young_res) == 1,
		   "a young resolution was pruned");
	SW_REQUIRE(prune_left("minted", "accessor", kept_mint) == 3,
		   "a young or not yet revoked minted row was pruned");
	SW_REQUIRE(sw_test_pg_long(db_dsn, "SELECT count(*) FROM identity.resolutions") == 1 &&
		       sw_test_pg_long(db_dsn, "SELECT count(*) FROM identity.minted") == 3,
		   "other rows appeared or went");
	snprintf(cmd, sizeof(cmd), "grep -q 'pruned old resolutions and minted rows' %s",
		 log_path);
	SW_REQUIRE(system(cmd) == 0, "no log line of the pass");
	start_more = NULL;
	finish();
}

/* ---- records: the resolutions of many requests at once --------------------- */

/* 64 resolve requests sent back to back: every one answered, every one's
 * record written (the records of answers delivered while a batch is being
 * written go in the next batch, bus.c), and a seal of the first and the
 * last finds its record. */
/* input_matches keeps finding MACs by the index once versions grew after
 * its plan was made (migration 6). One session: its plan made on a table
 * of 1,000 versions, 19,000 more added (autovacuum off: no ANALYZE to
 * replan it), then a call must not have scanned versions whole
 * (pg_stat_xact_user_tables, this transaction's own counts). Fails without
 * migration 6: the cached plan is a hash join over a scan of versions. */
static void t_matches(void)
{
	PGconn *c;
	PGresult *r;
	int i;

	setup("matches");
	id_start();
	SW_CHECK(put_secret("default", "gh", marker("matches"), NULL) == 1);
	c = PQconnectdb(db_dsn);
	SW_REQUIRE(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "ALTER TABLE identity.versions SET (autovacuum_enabled = false)"));
	r = PQexec(c, "INSERT INTO identity.versions (tenant, name, version, mac)"
		      " SELECT 'default', 'gh', g, sha256(g::text::bytea)"
		      " FROM generate_series(2, 1001) g; ANALYZE identity.versions");
	SW_REQUIRE(PQresultStatus(r) == PGRES_COMMAND_OK, "insert: %s", PQerrorMessage(c));
	PQclear(r);
	for (i = 0; i < 8; i++) {
		r = PQexec(c, "SELECT identity.input_matches('default', ARRAY['00', '01'])");
		SW_REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK &&
			       strcmp(PQgetvalue(r, 0, 0), "f") == 0,
			   "input_matches on 1,000 versions: %s", PQerrorMessage(c));
		PQclear(r);
	}
	r = PQexec(c, "INSERT INTO identity.versions (tenant, name, version, mac)"
		      " SELECT 'default', 'gh', g, sha256(g::text::bytea)"
		      " FROM generate_series(1002, 20001) g");
	SW_REQUIRE(PQresultStatus(r) == PGRES_COMMAND_OK, "insert: %s", PQerrorMessage(c));
	PQclear(r);
	PQclear(PQexec(c, "BEGIN"));
	r = PQexec(c, "SELECT identity.input_matches('default',"
		      " ARRAY[encode(sha256('777'::bytea), 'hex'), '00'])");
	SW_REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0,
		   "input_matches does not find an active version's MAC: %s", PQerrorMessage(c));
	PQclear(r);
	r = PQexec(c, "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
		      " WHERE schemaname = 'identity' AND relname = 'versions'");
	SW_REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "stats: %s",
		   PQerrorMessage(c));
	SW_REQUIRE(strcmp(PQgetvalue(r, 0, 0), "0") == 0 && strcmp(PQgetvalue(r, 0, 1), "0") != 0,
		   "input_matches scanned versions whole after it grew (seq %s, index %s):"
		   " a plan made while it was small",
		   PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	PQclear(r);
	PQclear(PQexec(c, "COMMIT"));
	PQfinish(c);
	id_stop();
}

static void t_records(void)
{
	enum { N = 64 };
	const char *v1 = marker("rec");
	char runs[N][80], rids[N][SW_UUID_STRLEN], sb[SW_UUID_STRLEN], q[512];
	json_t *a, *s;
	int64_t until;
	long n = 0;

	setup("records");
	id_start();
	SW_CHECK(put_secret("default", "gh", v1, NULL) == 1);
	put_profile("default", "workflow", "deploy",
		    "{\"keys\": {\"GITHUB_TOKEN\": {\"secret\": \"gh\"}}}");
	for (int i = 0; i < N; i++) {
		snprintf(runs[i], sizeof(runs[i]), "%s-rec-%d", prefix, i);
		sw_uuid_v7_str(rids[i]);
		produce("identity.resolve_requested", "sagewai.identity", "default", runs[i], NULL,
			"sagewai-scheduler",
			json_pack("{s:s, s:s, s:i, s:s, s:o, s:o}", "request_id", rids[i],
				  "workflow", "wf", "workflow_version", 1, "user", "", "steps",
				  step1("s1", "identity_scoped", "", "deploy"), "input_macs",
				  json_array()));
	}
	for (int i = 0; i < N; i++) {
		a = sw_test_replies_for(&rp, "identity.resolved", rids[i]);
		SW_REQUIRE(json_is_true(json_object_get(a, "ok")), "resolve %d: %s", i,
			   js(a, "error"));
	}
	snprintf(q, sizeof(q),
		 "SELECT count(*) FROM identity.resolutions WHERE run_id LIKE '%s-rec-%%'",
		 prefix);
	for (until = sw_mono_ns() + 20000000000LL; sw_mono_ns() < until; usleep(50000))
		if ((n = sw_test_pg_long(db_dsn, q)) == N)
			break;
	SW_REQUIRE(n == N, "%ld of %d resolutions recorded", n, N);
	s = seal_kafka("default", runs[0], "s1", host_pk, pin("GITHUB_TOKEN", "gh", 1), sb);
	require_sealed_value(s, runs[0], sb, "GITHUB_TOKEN", v1, 1);
	s = seal_kafka("default", runs[N - 1], "s1", host_pk, pin("GITHUB_TOKEN", "gh", 1), sb);
	require_sealed_value(s, runs[N - 1], sb, "GITHUB_TOKEN", v1, 1);
	finish();
}

static const struct sw_test_scenario scenarios[] = {
    {"kill9", t_kill9},	    {"config", t_config},   {"api", t_api},	    {"auth", t_auth},
    {"cascade", t_cascade}, {"builtin", t_builtin}, {"rekey", t_rekey},	    {"vault", t_vault},
    {"cache", t_cache},	    {"hostile", t_hostile}, {"grant", t_grant},	    {"pins", t_pins},
    {"prune", t_prune},	    {"records", t_records}, {"matches", t_matches},
};

int main(int argc, char **argv)
{
	const struct sw_test_scenario *s =
		sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(*scenarios));

	s->fn();
	return 0;
}
