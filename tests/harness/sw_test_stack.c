/*
 * sw_test_stack: sagewai-sandboxd (and sagewai-identity) set up for a
 * black-box test; the secret values it hands out and their spellings; the
 * identity service played for sandboxd (seal answers); the LLM mock and
 * the git server some of its steps talk to.
 */
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw_bus.h"
#include "sw_test_svc.h"

/* ---- secret values and their spellings ------------------------------------ */

#define FORMS_MAX 128

static char *forms[FORMS_MAX];
static size_t nforms;

void sw_test_secret_forbid_raw(const char *s)
{
	SW_CHECK(nforms < FORMS_MAX);
	SW_CHECK((forms[nforms++] = strdup(s)) != NULL);
}

void sw_test_secret_forbid(const char *v)
{
	size_t n = strlen(v), o = 0;
	char hex[1024], b64[1024], pct[1536], up[1024];

	SW_CHECKF(2 * n < sizeof(hex), "a value of %zu bytes", n);
	sw_test_secret_forbid_raw(v);
	sodium_bin2hex(hex, sizeof(hex), (const unsigned char *)v, n);
	sw_test_secret_forbid_raw(hex);
	for (size_t i = 0; hex[i]; i++)
		up[i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]), up[i + 1] = '\0';
	sw_test_secret_forbid_raw(up);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)v, n,
			  sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	sw_test_secret_forbid_raw(b64);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)v, n,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sw_test_secret_forbid_raw(b64);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			pct[o++] = (char)c;
		else
			o += (size_t)snprintf(pct + o, 4, "%%%02X", c);
	}
	pct[o] = '\0';
	sw_test_secret_forbid_raw(pct);
}

void sw_test_secret_new(char *out, size_t len, const char *head, const char *tail)
{
	unsigned char r[12];
	char hex[25];

	SW_CHECK(sodium_init() >= 0);
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	SW_CHECK((size_t)snprintf(out, len, "%s%s%s", head, hex, tail) < len);
	sw_test_secret_forbid(out);
}

const char *sw_test_secret_leak(const void *buf, size_t len)
{
	for (size_t i = 0; i < nforms; i++)
		if (buf != NULL && memmem(buf, len, forms[i], strlen(forms[i])) != NULL)
			return forms[i];
	return NULL;
}

void sw_test_secret_msg_clean(const rd_kafka_message_t *m)
{
	const char *bad = sw_test_secret_leak(m->payload, m->len);

	SW_REQUIRE(bad == NULL, "a message on %s holds a secret value (spelled '%s')",
		   rd_kafka_topic_name(m->rkt), bad);
}

void sw_test_secret_file_clean(const char *path, const char *what)
{
	size_t n;
	char *buf = sw_test_file_read(path, &n);
	const char *bad;

	SW_CHECKF(buf != NULL, "%s: cannot read %s", what, path);
	bad = sw_test_secret_leak(buf, n);
	SW_REQUIRE(bad == NULL, "%s holds a secret value (spelled '%s')", what, bad);
	free(buf);
}

/* ---- the stack ----------------------------------------------------------------- */

static void key_file_write(const char *path, const unsigned char *key, size_t n, const char *head,
			   mode_t mode)
{
	char hex[129], line[200];

	SW_CHECK(2 * n < sizeof(hex));
	sodium_bin2hex(hex, sizeof(hex), key, n);
	snprintf(line, sizeof(line), "%s%s%s", head, hex, head[0] != '\0' ? "\n" : "");
	sw_test_file_write(path, line, mode);
	sodium_memzero(hex, sizeof(hex));
	sodium_memzero(line, sizeof(line));
}

void sw_test_stack_init(struct sw_test_stack *s, const char *tag, const char *scenario,
			const char *const *topics,
			void (*seen)(const rd_kafka_message_t *m, json_t *event))
{
	static const char *const group_topics[] = {"sagewai.steps.sandbox", "sagewai.runs", NULL};
	static const char *const all_topics[] = {
	    "sagewai.steps",	"sagewai.steps.sandbox",     "sagewai.sandbox",
	    "sagewai.identity", "sagewai.identity.replies",  "sagewai.identity.sealed",
	    "sagewai.runs",	"sagewai.deadletter",	     "sagewai.credentials",
	    "sagewai.tenants",	"sagewai.audit.checkpoints", NULL};
	const char *build = getenv("SW_BUILD_DIR");
	int own_dir = s->dir[0] == '\0';
	char err[256];

	sw_test_env_load();
	s->sbd_pid = -1;
	s->id_pid = -1;
	sw_test_proc_watch(&s->sbd_pid);
	sw_test_proc_watch(&s->id_pid);
	SW_CHECKF(build != NULL, "SW_BUILD_DIR is not set");
	SW_CHECK(sodium_init() >= 0);
	if (scenario != NULL)
		snprintf(s->prefix, sizeof(s->prefix), "%s-%s-%d", tag, scenario, (int)getpid());
	else
		snprintf(s->prefix, sizeof(s->prefix), "%s-%d", tag, (int)getpid());
	snprintf(s->tenant, sizeof(s->tenant), "tenant-%s", s->prefix);
	snprintf(s->sbd_group, sizeof(s->sbd_group), "sandboxd-test-%s", s->prefix);
	if (own_dir)
		snprintf(s->dir, sizeof(s->dir), "%s/tests-tmp/%s", build, s->prefix);
	snprintf(s->sbd_log, sizeof(s->sbd_log), "%s/sandboxd.log", s->dir);
	snprintf(s->seal_file, sizeof(s->seal_file), "%s/seal.key", s->dir);
	snprintf(s->mac_file, sizeof(s->mac_file), "%s/mac.key", s->dir);
	snprintf(s->stage_dir, sizeof(s->stage_dir), "%s/stage", s->dir);
	/* stage/ is written by sandboxd's service part (another uid when root) */
	sw_test_sh("mkdir -p %s && chmod 755 %s && chmod 777 %s", s->stage_dir, s->dir,
		   s->stage_dir);
	if (own_dir)
		sw_test_sh("chmod 755 %s/..", s->dir);
	sw_test_log_watch(s->sbd_log, 60);
	sw_test_pg_db_create(s->db_dsn, sizeof(s->db_dsn), tag,
			     scenario != NULL ? scenario : "run");
	s->reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(s->reg != NULL, "%s", err);
	s->producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
	crypto_box_keypair(s->host_pk, s->host_sk);
	randombytes_buf(s->mac_key, sizeof(s->mac_key));
	key_file_write(s->seal_file, s->host_sk, sizeof(s->host_sk), "", 0600);
	key_file_write(s->mac_file, s->mac_key, sizeof(s->mac_key), "", 0600);
	sw_test_kafka_group_to_end(s->sbd_group, group_topics);
	sw_test_evlog_open(&s->evl, s->reg, s->prefix, topics != NULL ? topics : all_topics);
	s->evl.pid = &s->sbd_pid;
	s->evl.name = "sagewai-sandboxd";
	s->evl.seen = seen;
}

/* "NAME=value" into buf (room for 700), returned. */
static const char *env_kv(char *buf, const char *name, const char *value)
{
	SW_CHECK((size_t)snprintf(buf, 700, "%s=%s", name, value) < 700);
	return buf;
}

/* Spawn <build>/services/<svc>/<bin> serve, its environment env (n entries)
 * then extra (NULL-terminated), its output appended to log. */
static pid_t svc_spawn(const char *svc, const char *bin, const char **env, size_t n,
		       const char *const *extra, const char *log)
{
	const char *argv[] = {bin, "serve", NULL};
	const char *all[16 + SW_TEST_STACK_ENV_MAX + 1];
	char path[600];

	SW_CHECK(n <= 16);
	memcpy(all, env, n * sizeof(*env));
	for (size_t i = 0; extra[i] != NULL; i++) {
		SW_CHECK(n < 16 + SW_TEST_STACK_ENV_MAX);
		all[n++] = extra[i];
	}
	all[n] = NULL;
	snprintf(path, sizeof(path), "%s/services/%s/%s", getenv("SW_BUILD_DIR"), svc, bin);
	return sw_test_proc_spawn(path, argv, all, log);
}

pid_t sw_test_stack_sbd_spawn(struct sw_test_stack *s)
{
	char e[6][700];
	const char *env[] = {sw_test_pg_svc_env(e[0], sizeof(e[0]), s->db_dsn, "sandboxd"),
			     env_kv(e[1], "SAGEWAI_GROUP_ID", s->sbd_group),
			     "SAGEWAI_HTTP_PORT=0",
			     "SAGEWAI_LOG_LEVEL=debug",
			     env_kv(e[2], "SAGEWAI_SANDBOX_STATE_DIR", s->dir),
			     SW_TEST_ENV_FAST_REBALANCE,
			     "SAGEWAI_SANDBOX_WARM=1",
			     env_kv(e[3], "SAGEWAI_SANDBOXD_SEAL_KEY_FILE", s->seal_file),
			     env_kv(e[4], "SAGEWAI_SECRET_MAC_KEY_FILE", s->mac_file),
			     env_kv(e[5], "SAGEWAI_ARTIFACT_STAGE_DIR", s->stage_dir)};

	s->sbd_pid = svc_spawn("sandboxd", "sagewai-sandboxd", env, sizeof(env) / sizeof(env[0]),
			       s->sbd_env, s->sbd_log);
	return s->sbd_pid;
}

void sw_test_stack_sbd_start(struct sw_test_stack *s)
{
	sw_test_stack_sbd_spawn(s);
	s->sbd_port =
	    sw_test_proc_wait_port(s->sbd_pid, "sagewai-sandboxd", s->sbd_log, "sandboxd started");
}

void sw_test_stack_sbd_stop(struct sw_test_stack *s)
{
	sw_test_proc_stop(&s->sbd_pid, SIGTERM, "sagewai-sandboxd");
}

void sw_test_stack_id_init(struct sw_test_stack *s)
{
	static const char *const topics[] = {"sagewai.identity",    "sagewai.tenants",
					     "sagewai.credentials", "sagewai.runs",
					     "sagewai.steps",	    NULL};
	unsigned char k[32];

	snprintf(s->id_group, sizeof(s->id_group), "identity-test-%s", s->prefix);
	snprintf(s->id_log, sizeof(s->id_log), "%s/identity.log", s->dir);
	snprintf(s->mkeys_file, sizeof(s->mkeys_file), "%s/master.keys", s->dir);
	snprintf(s->hosts_file, sizeof(s->hosts_file), "%s/hosts", s->dir);
	snprintf(s->admin_file, sizeof(s->admin_file), "%s/admin.token", s->dir);
	key_file_write(s->hosts_file, s->host_pk, sizeof(s->host_pk), "host-a ", 0644);
	randombytes_buf(k, sizeof(k));
	key_file_write(s->mkeys_file, k, sizeof(k), "k1 ", 0600);
	randombytes_buf(k, sizeof(k));
	sodium_bin2hex(s->admin, sizeof(s->admin), k, sizeof(k));
	sodium_memzero(k, sizeof(k));
	{
		char line[80];

		snprintf(line, sizeof(line), "%s\n", s->admin);
		sw_test_file_write(s->admin_file, line, 0600);
	}
	sw_test_log_watch(s->id_log, 40);
	sw_test_kafka_group_to_end(s->id_group, topics);
}

void sw_test_stack_id_start(struct sw_test_stack *s)
{
	char e[6][700];
	const char *env[] = {sw_test_pg_svc_env(e[0], sizeof(e[0]), s->db_dsn, "identity"),
			     env_kv(e[1], "SAGEWAI_GROUP_ID", s->id_group),
			     "SAGEWAI_MODE=single_org",
			     env_kv(e[2], "SAGEWAI_IDENTITY_MASTER_KEYS_FILE", s->mkeys_file),
			     env_kv(e[3], "SAGEWAI_SECRET_MAC_KEY_FILE", s->mac_file),
			     env_kv(e[4], "SAGEWAI_IDENTITY_HOSTS_FILE", s->hosts_file),
			     env_kv(e[5], "SAGEWAI_ADMIN_TOKEN_FILE", s->admin_file),
			     "SAGEWAI_HTTP_PORT=0",
			     "SAGEWAI_LOG_LEVEL=debug",
			     SW_TEST_ENV_FAST_REBALANCE};

	s->id_pid = svc_spawn("identity", "sagewai-identity", env, sizeof(env) / sizeof(env[0]),
			      s->id_env, s->id_log);
	s->id_port =
	    sw_test_proc_wait_port(s->id_pid, "sagewai-identity", s->id_log, "identity started");
}

void sw_test_stack_emit(struct sw_test_stack *s, const char *topic, const char *key,
			const char *type, const char *producer_name, const char *tenant,
			const char *run_id, const char *step_id, json_t *o)
{
	sw_test_event_send(s->reg, s->producer, topic, key, type, producer_name, tenant, run_id,
			   step_id, o);
}

void sw_test_stack_dispatch(struct sw_test_stack *s, struct sw_test_dispatch *d,
			    const char *producer_name, const char *run, const char *step,
			    const char *mode, int64_t timeout_ms, json_t *sp, const char *identity)
{
	struct sw_event_header h;
	char err[256], *text;
	json_t *o;

	memset(d, 0, sizeof(*d));
	d->topic = sw_bus_dispatch_topic(mode);
	snprintf(d->run_id, sizeof(d->run_id), "%s-%s", s->prefix, run);
	snprintf(d->step_id, sizeof(d->step_id), "%s/%s/1", d->run_id, step);
	sw_event_header_init(&h, "step.dispatched", producer_name);
	snprintf(h.tenant, sizeof(h.tenant), "%s", s->tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", d->run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%s", d->step_id);
	text = json_dumps(sp, JSON_COMPACT);
	json_decref(sp);
	SW_CHECK(text != NULL);
	o = json_pack("{s:s, s:i, s:s, s:i, s:s, s:I, s:s}", "step", step, "index", 0, "mode",
		      mode, "attempt", 1, "spec", text, "timeout_ms", (json_int_t)timeout_ms,
		      "identity", identity);
	free(text);
	SW_CHECKF(sw_event_encode(s->reg, "step.dispatched", &h, o, &d->buf, &d->len, err,
				  sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
	sw_test_kafka_deliver(s->producer, sw_bus_dispatch_topic(mode), d->run_id, d->buf, d->len);
	free(d->buf);
	d->buf = NULL;
}

char *sw_test_evlog_output(const struct sw_test_evlog *l, const char *step_id, const char *stream,
			   size_t *chunks)
{
	struct sw_test_buf b = {0};
	json_int_t seq = 0;
	size_t i, n = 0;

	/* seq runs over both streams: the next one, whichever it is, each round */
	do {
		for (i = 0; i < l->n; i++) {
			json_t *body = l->ev[i]->body, *data = json_object_get(body, "data");
			const char *st = json_string_value(json_object_get(body, "stream"));

			if (strcmp(l->ev[i]->type, "sandbox.output") != 0 ||
			    strcmp(l->ev[i]->step_id, step_id) != 0 ||
			    json_integer_value(json_object_get(body, "seq")) != seq)
				continue;
			seq++;
			if (st != NULL && strcmp(st, stream) == 0 && json_is_string(data)) {
				sw_test_http_collect((char *)json_string_value(data), 1,
						     json_string_length(data), &b);
				n++;
			}
			break;
		}
	} while (i < l->n);
	if (chunks != NULL)
		*chunks = n;
	if (b.p == NULL)
		SW_CHECK((b.p = strdup("")) != NULL);
	return b.p;
}

/* ---- the identity service played for sandboxd -------------------------------- */

void sw_test_stack_mac_hex(const struct sw_test_stack *s, const char *value, char out[65])
{
	unsigned char m[32];

	crypto_generichash(m, sizeof(m), (const unsigned char *)value, strlen(value), s->mac_key,
			   sizeof(s->mac_key));
	sodium_bin2hex(out, 65, m, sizeof(m));
}

char *sw_test_identity_text(const struct sw_test_stack *s, const struct sw_test_idkey *keys,
			    size_t n, const char *profile)
{
	json_t *a = json_array();
	char mac[65], *text;

	for (size_t i = 0; i < n; i++) {
		const struct sw_test_idkey *k = &keys[i];
		int secret = k->secret != NULL;

		if (secret)
			sw_test_stack_mac_hex(s, k->value, mac);
		json_array_append_new(
		    a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "env", k->env,
				 "level", k->level != NULL ? k->level : "workflow", "profile",
				 profile, "kind", secret ? "secret" : "plain", "secret",
				 secret ? k->secret : "", "version", secret ? k->version : 0,
				 "backend", secret ? "builtin" : "", "value",
				 secret ? "" : k->value, "mac", secret ? mac : ""));
	}
	text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	SW_CHECK(text != NULL);
	return text;
}

static const char *req_str(json_t *req, const char *key)
{
	const char *v = json_string_value(json_object_get(req, key));

	return v != NULL ? v : "";
}

/* identity.sealed answering req, with o's fields (stolen). */
static void sealed_emit(struct sw_test_stack *s, json_t *req, json_t *o)
{
	json_t *h = json_object_get(req, "header");

	sw_test_stack_emit(s, "sagewai.identity.sealed", req_str(h, "run_id"), "identity.sealed",
			   "sagewai-identity", req_str(h, "tenant"), req_str(h, "run_id"),
			   req_str(h, "step_id"), o);
}

void sw_test_seal_refuse(struct sw_test_stack *s, json_t *req, const char *code, const char *error)
{
	sealed_emit(s, req,
		    json_pack("{s:s, s:b, s:s, s:s, s:s, s:[]}", "request_id",
			      req_str(req, "request_id"), "ok", 0, "code", code, "error", error,
			      "sealed", "", "keys"));
}

static const struct sw_test_idkey *key_of(const struct sw_test_idkey *keys, size_t n,
					  const char *env)
{
	for (size_t i = 0; env != NULL && i < n; i++)
		if (strcmp(keys[i].env, env) == 0)
			return &keys[i];
	return NULL;
}

/* text sealed to pk, in hex (caller frees); text is wiped. */
static char *seal_hex(char *text, const unsigned char *pk)
{
	size_t tl = strlen(text), cl = tl + crypto_box_SEALBYTES;
	unsigned char *c = malloc(cl);
	char *hex = malloc(2 * cl + 1);

	SW_CHECK(c != NULL && hex != NULL &&
		 crypto_box_seal(c, (unsigned char *)text, tl, pk) == 0);
	sodium_memzero(text, tl);
	sodium_bin2hex(hex, 2 * cl + 1, c, cl);
	free(c);
	return hex;
}

void sw_test_seal_answer(struct sw_test_stack *s, json_t *req, const struct sw_test_idkey *keys,
			 size_t n, const struct sw_test_seal_forge *forge)
{
	static const struct sw_test_seal_forge none;
	const struct sw_test_seal_forge *f = forge != NULL ? forge : &none;
	json_t *h = json_object_get(req, "header"), *asked = json_object_get(req, "keys"), *e;
	json_t *bkeys = json_array(), *ekeys = json_array(), *box;
	const char *rid = f->request_id != NULL ? f->request_id : req_str(req, "request_id");
	char mac[65], *text, *hex;
	size_t i;

	json_array_foreach(asked, i, e) {
		const char *env = json_string_value(json_object_get(e, "env"));
		const struct sw_test_idkey *k = key_of(keys, n, env);
		const char *v;
		char *b64;
		size_t bl;

		SW_REQUIRE(k != NULL && k->secret != NULL, "asked for %s, not a pinned secret",
			   env != NULL ? env : "?");
		if (f->drop_first && i == 0)
			continue;
		v = f->value != NULL ? f->value : k->value;
		bl = sodium_base64_ENCODED_LEN(strlen(v), sodium_base64_VARIANT_ORIGINAL);
		SW_CHECK((b64 = malloc(bl)) != NULL);
		sodium_bin2base64(b64, bl, (const unsigned char *)v, strlen(v),
				  sodium_base64_VARIANT_ORIGINAL);
		json_array_append_new(bkeys, json_pack("{s:s, s:s, s:I, s:s}", "env", env,
						       "secret", k->secret, "version",
						       (json_int_t)(k->version + f->version_delta),
						       "value_b64", b64));
		sodium_memzero(b64, bl);
		free(b64);
		sw_test_stack_mac_hex(s, k->value, mac);
		json_array_append_new(ekeys,
				      json_pack("{s:s, s:s, s:i, s:s}", "env", env, "secret",
						k->secret, "version", k->version, "mac", mac));
	}
	if (f->extra_key)
		json_array_append_new(bkeys, json_pack("{s:s, s:s, s:i, s:s}", "env", "EXTRA_KEY",
						       "secret", "extra", "version", 1,
						       "value_b64", "ZXh0cmEtdmFsdWU="));
	box = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "request_id",
			f->box_request_id != NULL ? f->box_request_id : rid, "run_id",
			req_str(h, "run_id"), "step_id",
			f->step_id != NULL ? f->step_id : req_str(h, "step_id"), "sandbox_id",
			f->sandbox_id != NULL ? f->sandbox_id : req_str(req, "sandbox_id"),
			"tenant", req_str(h, "tenant"), "keys", bkeys);
	text = json_dumps(box, JSON_COMPACT);
	json_decref(box);
	SW_CHECK(text != NULL);
	hex = seal_hex(text, f->pk != NULL ? f->pk : s->host_pk);
	free(text);
	sealed_emit(s, req,
		    json_pack("{s:s, s:b, s:s, s:s, s:s, s:o}", "request_id", rid, "ok", 1, "code",
			      "", "error", "", "sealed", hex, "keys", ekeys));
	free(hex);
}

/* ---- the other ends of a step ------------------------------------------------- */

pid_t sw_test_llm_mock_start(const char *dir, const char *script, const char *key, int *port)
{
	char mock[700], sf[700], kf[700], pf[700], log[700], out[700], line[200];
	pid_t pid;

	snprintf(mock, sizeof(mock), "%s/tools/llm-mock/sagewai-llm-mock", getenv("SW_BUILD_DIR"));
	snprintf(sf, sizeof(sf), "%s/script.json", dir);
	snprintf(kf, sizeof(kf), "%s/llm.key", dir);
	snprintf(pf, sizeof(pf), "%s/llm.port", dir);
	snprintf(log, sizeof(log), "%s/llm.log", dir);
	snprintf(out, sizeof(out), "%s/llm.out", dir);
	sw_test_file_write(sf, script, 0644);
	snprintf(line, sizeof(line), "%s\n", key);
	sw_test_file_write(kf, line, 0600);
	unlink(pf);
	SW_CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(mock, mock, "--port", "0", "--port-file", pf, "--script", sf, "--workdir",
		      "/workspace", "--require-key-file", kf, "--log", log, (char *)NULL);
		_exit(127);
	}
	*port = 0;
	for (int i = 0; i < 500 && *port == 0; i++) {
		FILE *fp = fopen(pf, "r");

		if (fp != NULL) {
			if (fscanf(fp, "%d", port) != 1)
				*port = 0;
			fclose(fp);
		}
		if (*port == 0)
			sw_test_msleep(10);
	}
	SW_REQUIRE(*port > 0, "the mock did not start (%s)", out);
	return pid;
}

pid_t sw_test_git_server(const char *dir, const char *script, const char *token, char *root,
			 size_t rootlen, char *url, size_t urllen)
{
	char toks[700], log[700], t[200];
	const char *argv[] = {"python3", script, root, toks, log, NULL};
	pid_t pid;
	int port;

	snprintf(root, rootlen, "%s/git-root", dir);
	snprintf(toks, sizeof(toks), "%s/git-tokens", dir);
	snprintf(log, sizeof(log), "%s/git-requests.log", dir);
	sw_test_sh("rm -rf %s && mkdir -p %s && git init -q --bare %s/site.git", root, root, root);
	snprintf(t, sizeof(t), "good %s\n", token);
	sw_test_file_write(toks, t, 0600);
	sw_test_file_write(log, "", 0600);
	pid = sw_test_helper_start(argv, &port);
	snprintf(url, urllen, "http://127.0.0.1:%d/site.git", port);
	return pid;
}
