/*
 * identity.c: the identity_scoped mode on this sandbox host (docs/SANDBOX.md,
 * "identity_scoped"; the protocol is docs/IDENTITY.md's).
 *
 * Late binding. A step's sandbox is acquired as for a sandboxed step (warm
 * or cold: identity-less until now); then sandboxd asks the identity service
 * for the values of the step's pinned secrets, sealed to this host's X25519
 * key (identity.seal_requested on sagewai.identity), and waits on the loop
 * for the answer with the same request_id on sagewai.identity.sealed. That
 * topic is read by a tail reader (no group: every host sees every answer and
 * ignores the ones it did not ask for). The box is opened into
 * sodium_malloc'd memory, its ids are checked against the request (a box for
 * another request, run, step, tenant or sandbox, or holding other keys than
 * the ones asked, is never used), and each value goes to the tool runner in
 * an INJECT_ENV frame before the EXEC (the runner applies them to that exec
 * only). sandboxd's copies are then wiped; the values live on only in the
 * step's redactor (sw_redact, sodium memory), which replaces them (and their
 * encodings) in everything the sandbox says until the step ends and the
 * sandbox is destroyed (never back to the pool).
 *
 * Revocations (secret.revoked on sagewai.identity, the same tail reader):
 * a hard one fails every running step of ours that holds the secret, whose
 * sandbox is killed at once (identity.revoke_killed follows when it is gone,
 * pool.c); any revocation fails a step whose seal request for that secret is
 * still in flight, so an answer sealed just before the revocation is never
 * injected. Nothing is cached: every step asks.
 *
 * Everything read from Kafka is hostile: a message that does not decode is
 * logged (never its content) and ignored; an answer to nobody's request is
 * ignored; a bad answer fails its step only.
 */
#include <string.h>
#include <sodium.h>

#include "sandboxd.h"
#include "sw_executor.h"
#include "sw_workflow.h"

#define SBD_ID_KEYS_MAX 64		  /* keys of one step */
#define SBD_ID_TEXT_MAX (256u << 10)	  /* step.dispatched.identity, bytes */
#define SBD_ID_PLAIN_MAX (32u << 10)	  /* a plain knob's value, bytes */
#define SBD_ID_BOX_MAX (1u << 20)	  /* a sealed box, bytes */
#define SBD_SEAL_TIMEOUT_DEFAULT 10000

/* ---- configuration -------------------------------------------------------- */

/* A 32-byte key given as 64 hex in the file setting KEY_FILE (sw_config_secret:
 * mode 0600 or 0400) into *out (sodium_malloc'd, read-only); NULL when
 * unset. 0, or -1 with err. */
static int key_load(char *const *envp, const char *key, unsigned char **out, char *err,
		    size_t errlen)
{
	char hex[80];
	size_t bin_len = 0;
	int rc;

	*out = NULL;
	rc = sw_config_secret(envp, key, hex, sizeof(hex), err, errlen);
	if (rc <= 0)
		goto out;
	rc = -1;
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium cannot start");
		goto out;
	}
	if ((*out = sodium_malloc(32)) == NULL) {
		snprintf(err, errlen, "%s_FILE: out of memory", key);
		goto out;
	}
	if (strlen(hex) != 64 || strspn(hex, "0123456789abcdefABCDEF") != 64 ||
	    sodium_hex2bin(*out, 32, hex, 64, NULL, &bin_len, NULL) != 0 || bin_len != 32 ||
	    sodium_is_zero(*out, 32)) {
		snprintf(err, errlen, "%s_FILE: not a key (64 hexadecimal digits, not all zero)",
			 key);
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(hex, sizeof(hex));
	if (rc != 0) {
		sodium_free(*out);
		*out = NULL;
	}
	return rc;
}

int sbd_identity_configure(struct sbd_env *env, char *const *envp, char *err, size_t errlen)
{
	long long n;

	LIST_INIT(&env->idjobs);
	if (sw_config_number(envp, "SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS", SBD_SEAL_TIMEOUT_DEFAULT,
			     100, 600000, &n, err, errlen) == -1)
		return -1;
	env->seal_timeout_ms = n;
	if (sw_config_number(envp, "SAGEWAI_SANDBOXD_CRED_RATE", SBD_CRED_RATE_DEFAULT, 1, 1000000,
			     &env->cred_rate, err, errlen) == -1)
		return -1;
	if (sw_config_env(envp, "SAGEWAI_SANDBOXD_SEAL_KEY") != NULL) {
		snprintf(err, errlen, "SAGEWAI_SANDBOXD_SEAL_KEY: give the key in a file "
				      "(SAGEWAI_SANDBOXD_SEAL_KEY_FILE), never in the environment");
		return -1;
	}
	if (key_load(envp, "SAGEWAI_SANDBOXD_SEAL_KEY", &env->seal_sk, err, errlen) != 0)
		return -1;
	if (env->seal_sk == NULL)
		return 0;
	if (key_load(envp, "SAGEWAI_SECRET_MAC_KEY", &env->mac_key, err, errlen) != 0) {
		sbd_identity_forget(env);
		return -1;
	}
	/* X25519 clamps any 32 bytes into a scalar: every non-zero key is usable */
	if (crypto_scalarmult_base(env->seal_pk, env->seal_sk) != 0) {
		snprintf(err, errlen, "SAGEWAI_SANDBOXD_SEAL_KEY_FILE: unusable key");
		sbd_identity_forget(env);
		return -1;
	}
	sodium_bin2hex(env->seal_pk_hex, sizeof(env->seal_pk_hex), env->seal_pk,
		       sizeof(env->seal_pk));
	sodium_mprotect_readonly(env->seal_sk);
	if (env->mac_key != NULL)
		sodium_mprotect_readonly(env->mac_key);
	return 0;
}

void sbd_identity_forget(void *arg)
{
	struct sbd_env *env = arg;

	sodium_free(env->seal_sk); /* wipes it */
	env->seal_sk = NULL;
	sodium_free(env->mac_key);
	env->mac_key = NULL;
}

/* ---- the dispatch's identity ---------------------------------------------- */

/* [a-z0-9][a-z0-9_.-]{0,62}: a secret's name (docs/IDENTITY.md). */
static int secret_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static int hex64_ok(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* One element of the identity array into k; 0 or -1 with err. */
static int parse_key(json_t *e, size_t i, struct sbd_idkey *k, char *err, size_t errlen)
{
	const char *env, *level, *kind, *profile = "", *secret = "", *backend = "", *value = NULL;
	const char *mac = "", *why = NULL;
	size_t env_len, value_len = 0;
	json_int_t version = 0;
	json_error_t jerr;

	if (!json_is_object(e)) {
		snprintf(err, errlen, "identity[%zu] is not an object", i);
		return -1;
	}
	if (json_unpack_ex(e, &jerr, JSON_STRICT, "{s:s%, s:s, s:s, s?s, s?s, s?I, s?s, s?s%, s?s}",
			   "env", &env, &env_len, "level", &level, "kind", &kind, "profile",
			   &profile, "secret", &secret, "version", &version, "backend", &backend,
			   "value", &value, &value_len, "mac", &mac) != 0) {
		snprintf(err, errlen, "identity[%zu]: %s (keys: env, level, kind, profile, secret, "
				      "version, backend, value, mac)",
			 i, jerr.text);
		return -1;
	}
	if (env_len != strlen(env) || env_len >= sizeof(k->env) ||
	    (why = sw_step_env_refusal(env, env_len)) != NULL) {
		snprintf(err, errlen, "identity[%zu].env \"%.60s\" %s", i, env,
			 env_len >= sizeof(k->env) ? "is too long" : why ? why : "holds NUL");
		return -1;
	}
	snprintf(k->env, sizeof(k->env), "%s", env);
	if (strcmp(level, "system") != 0 && strcmp(level, "workflow") != 0 &&
	    strcmp(level, "user") != 0) {
		snprintf(err, errlen, "identity[%zu].level is not system, workflow or user", i);
		return -1;
	}
	k->system = strcmp(level, "system") == 0;
	if (strlen(profile) > 255 || strlen(backend) > 64) {
		snprintf(err, errlen, "identity[%zu]: profile or backend too long", i);
		return -1;
	}
	if (strcmp(kind, "secret") == 0) {
		if (!secret_name_ok(secret) || version < 1 || version > INT32_MAX ||
		    !hex64_ok(mac) || (value != NULL && value_len > 0)) {
			snprintf(err, errlen,
				 "identity[%zu] (%s): a secret key needs a secret name, a version "
				 ">= 1, a 64-hex mac and no value",
				 i, k->env);
			return -1;
		}
		snprintf(k->secret, sizeof(k->secret), "%s", secret);
		snprintf(k->mac, sizeof(k->mac), "%s", mac);
		k->version = (int)version;
		return 0;
	}
	if (strcmp(kind, "plain") != 0) {
		snprintf(err, errlen, "identity[%zu].kind is not secret or plain", i);
		return -1;
	}
	if (value == NULL || value_len != strlen(value) || value_len > SBD_ID_PLAIN_MAX ||
	    secret[0] != '\0' || version != 0 || mac[0] != '\0') {
		snprintf(err, errlen,
			 "identity[%zu] (%s): a plain key needs a value (no NUL, at most %u "
			 "bytes) and no secret, version or mac",
			 i, k->env, SBD_ID_PLAIN_MAX);
		return -1;
	}
	if ((k->plain = strdup(value)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static void ident_free(struct sbd_ident *id)
{
	if (id == NULL)
		return;
	for (size_t i = 0; i < id->nkeys; i++)
		free(id->keys[i].plain);
	free(id->keys);
	if (id->timer != NULL)
		event_free(id->timer);
	sw_redact_stream_destroy(id->rs[0]);
	sw_redact_stream_destroy(id->rs[1]);
	sw_redact_destroy(id->red);
	for (size_t i = 0; i < id->ngrants; i++) {
		sw_redact_stream_destroy(id->grants[i].rs[0]);
		sw_redact_stream_destroy(id->grants[i].rs[1]);
		sw_redact_destroy(id->grants[i].red);
	}
	sw_buf_free(&id->scratch);
	free(id);
}

int sbd_identity_parse(struct sbd_job *j, char *err, size_t errlen)
{
	const char *text = j->x->identity != NULL ? j->x->identity : "";
	size_t len = strlen(text), i, k;
	struct sbd_ident *id = NULL;
	json_error_t jerr;
	json_t *a, *e;
	int rc = -1;

	if (len == 0) {
		snprintf(err, errlen, "%s step without its identity "
				      "(step.dispatched.identity is empty)", j->x->mode);
		return -1;
	}
	if (len > SBD_ID_TEXT_MAX) {
		snprintf(err, errlen, "identity is %zu bytes, over %u", len, SBD_ID_TEXT_MAX);
		return -1;
	}
	if ((a = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(err, errlen, "identity is not JSON: %s", jerr.text);
		return -1;
	}
	if (!json_is_array(a) || json_array_size(a) > SBD_ID_KEYS_MAX) {
		snprintf(err, errlen, "identity is not an array of at most %d keys",
			 SBD_ID_KEYS_MAX);
		goto out;
	}
	if ((id = calloc(1, sizeof(*id))) == NULL ||
	    (id->keys = calloc(json_array_size(a) + 1, sizeof(*id->keys))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	json_array_foreach(a, i, e) {
		if (parse_key(e, i, &id->keys[i], err, errlen) != 0) {
			id->nkeys = i + 1; /* its plain value, if any, is freed */
			goto out;
		}
		id->nkeys = i + 1;
		for (k = 0; k < i; k++)
			if (strcmp(id->keys[k].env, id->keys[i].env) == 0) {
				snprintf(err, errlen, "identity: %s is given twice",
					 id->keys[i].env);
				goto out;
			}
		id->npins += id->keys[i].plain == NULL;
	}
	j->ident = id;
	id = NULL;
	LIST_INSERT_HEAD(&j->env->idjobs, j, id_entry);
	rc = 0;
out:
	ident_free(id);
	json_decref(a);
	return rc;
}

void sbd_identity_release(struct sbd_job *j)
{
	if (j->ident == NULL)
		return;
	LIST_REMOVE(j, id_entry);
	ident_free(j->ident); /* the redactor wipes what it held */
	j->ident = NULL;
}

/* ---- redaction -------------------------------------------------------------- */

/* The layers output goes through: the pinned values', then each grant's. */
static size_t layers(const struct sbd_ident *id, struct sbd_layer *out)
{
	size_t n = 0;

	if (id == NULL)
		return 0;
	if (id->red != NULL)
		out[n++] = (struct sbd_layer){.red = id->red, .rs = {id->rs[0], id->rs[1]}};
	for (size_t i = 0; i < id->ngrants; i++)
		out[n++] = id->grants[i];
	return n;
}

int sbd_identity_redacting(const struct sbd_job *j)
{
	return j->ident != NULL && (j->ident->red != NULL || j->ident->ngrants > 0);
}

/* buf through layers [from, n) of stream s, appended to out. 0 or -1. */
static int chain(const struct sbd_layer *l, size_t from, size_t n, int s, const void *buf,
		 size_t len, struct sw_buf *out)
{
	struct sw_buf t[2];
	const void *cur = buf;
	size_t curlen = len;
	int rc = 0, w = 0;

	if (from >= n)
		return sw_buf_add(out, buf, len);
	sw_buf_init(&t[0], 0);
	sw_buf_init(&t[1], 0);
	for (size_t k = from; k < n && rc == 0; k++) {
		struct sw_buf *dst = k + 1 == n ? out : &t[w];

		if (dst != out)
			sw_buf_reset(dst);
		rc = sw_redact_stream_feed(l[k].rs[s], cur, curlen, dst);
		cur = dst->p;
		curlen = dst->len;
		w ^= 1;
	}
	sw_buf_free(&t[0]);
	sw_buf_free(&t[1]);
	return rc;
}

int sbd_identity_feed(struct sbd_job *j, int stream, const void *buf, size_t len,
		      struct sw_buf *out)
{
	struct sbd_layer l[SBD_CRED_GRANTS_MAX + 1];
	size_t n = layers(j->ident, l);

	if (n == 0)
		return sw_buf_add(out, buf, len);
	return chain(l, 0, n, stream == 1 ? 0 : 1, buf, len, out);
}

int sbd_identity_flush(struct sbd_job *j, int stream, struct sw_buf *out)
{
	struct sbd_layer l[SBD_CRED_GRANTS_MAX + 1];
	size_t n = layers(j->ident, l);
	int s = stream == 1 ? 0 : 1, rc = 0;
	struct sw_buf t;

	sw_buf_init(&t, 0);
	/* each layer's held-back tail goes through the layers after it */
	for (size_t k = 0; k < n && rc == 0; k++) {
		sw_buf_reset(&t);
		rc = sw_redact_stream_flush(l[k].rs[s], &t);
		if (rc == 0)
			rc = chain(l, k + 1, n, s, t.p ? t.p : "", t.len, out);
	}
	sw_buf_free(&t);
	return rc;
}

char *sbd_identity_redact(const struct sbd_job *j, const char *text)
{
	struct sbd_layer l[SBD_CRED_GRANTS_MAX + 1];
	size_t n = layers(j->ident, l);
	char *cur = strdup(text), *next;

	for (size_t k = 0; k < n && cur != NULL; k++) {
		next = sw_redact_buf(l[k].red, cur, strlen(cur), NULL, NULL);
		free(cur);
		cur = next;
	}
	return cur;
}

json_t *sbd_identity_redact_json(const struct sbd_job *j, json_t *v)
{
	struct sbd_layer l[SBD_CRED_GRANTS_MAX + 1];
	size_t n = layers(j->ident, l);
	json_t *next;

	for (size_t k = 0; k < n && v != NULL; k++) {
		next = sw_redact_json(l[k].red, v, NULL);
		json_decref(v);
		v = next;
	}
	return v;
}

int sbd_identity_grant(struct sbd_job *j, const char *env, const void *value, size_t len,
		       char *err, size_t errlen)
{
	struct sbd_ident *id = j->ident;
	struct sbd_layer l[SBD_CRED_GRANTS_MAX + 1], *g;
	size_t n = layers(id, l), off = 0, mlen = 0;

	/* a value redacted already (asked again, or pinned too) needs no layer */
	for (size_t k = 0; k < n; k++)
		if (sw_redact_find(l[k].red, value, len, &off, &mlen, NULL, 0) == 1 && off == 0 &&
		    mlen == len)
			return 1;
	if (id == NULL || id->ngrants >= SBD_CRED_GRANTS_MAX) {
		snprintf(err, errlen, "at most %d values are delivered to one sandbox",
			 SBD_CRED_GRANTS_MAX);
		return -1;
	}
	g = &id->grants[id->ngrants];
	if ((g->red = sw_redact_new()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (sw_redact_add(g->red, env, value, len, err, errlen) != 0 ||
	    (g->rs[0] = sw_redact_stream_new(g->red)) == NULL ||
	    (g->rs[1] = sw_redact_stream_new(g->red)) == NULL) {
		if (g->rs[0] == NULL && err[0] == '\0')
			snprintf(err, errlen, "out of memory");
		sw_redact_stream_destroy(g->rs[0]);
		sw_redact_stream_destroy(g->rs[1]);
		sw_redact_destroy(g->red);
		memset(g, 0, sizeof(*g));
		return -1;
	}
	id->ngrants++;
	return 0;
}

/* ---- the seal request and its answer ------------------------------------------ */

static void seal_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_job *j = arg;

	(void)fd;
	(void)what;
	if (j->stage != SBD_SEALING || j->x->phase != SW_EXECUTOR_ACTIVE)
		return;
	sw_metrics_counter_add(j->env->metrics, "sagewai_sandboxd_identity_seal_timeouts_total",
			       "Seal requests the identity service did not answer in time", 1);
	sbd_exec_finish(j, SW_STEP_FAILED, NULL,
			"identity_unavailable: identity service did not answer within %lld ms",
			(long long)j->env->seal_timeout_ms);
}

/* The values are in the runner's queue (or there are none to seal): run. */
static void go(struct sbd_job *j)
{
	j->ident->injected = true;
	if (j->slot != NULL)
		j->slot->red = j->ident->red;
	sbd_exec_run(j);
}

/* Plain knobs into INJECT_ENV frames (secrets: inject_secrets). 0 or -1. */
static int inject_plain(struct sbd_job *j, char *err, size_t errlen)
{
	struct sbd_ident *id = j->ident;
	char why[200];

	for (size_t i = 0; i < id->nkeys; i++) {
		if (id->keys[i].plain == NULL)
			continue;
		if (sw_sandbox_inject_env(j->slot->sb, id->keys[i].env, id->keys[i].plain, why,
					  sizeof(why)) != 0) {
			snprintf(err, errlen, "identity_error: %.60s: %s", id->keys[i].env, why);
			return -1;
		}
	}
	return 0;
}

void sbd_identity_seal(struct sbd_job *j)
{
	struct sbd_env *env = j->env;
	struct sbd_ident *id = j->ident;
	struct timeval tv = {.tv_sec = (time_t)(env->seal_timeout_ms / 1000),
			     .tv_usec = (suseconds_t)(env->seal_timeout_ms % 1000) * 1000};
	char err[400], n[16];
	json_t *keys, *o;

	j->stage = SBD_SEALING;
	if (id->npins == 0) {
		/* plain knobs only: nothing to seal */
		if (inject_plain(j, err, sizeof(err)) != 0) {
			sbd_exec_finish(j, SW_STEP_FAILED, NULL, "%s", err);
			return;
		}
		go(j);
		return;
	}
	if ((keys = json_array()) == NULL)
		goto oom;
	for (size_t i = 0; i < id->nkeys; i++)
		if (id->keys[i].plain == NULL &&
		    json_array_append_new(keys, json_pack("{s:s, s:s, s:i}", "env", id->keys[i].env,
							  "secret", id->keys[i].secret, "version",
							  id->keys[i].version)) != 0) {
			json_decref(keys);
			goto oom;
		}
	if ((id->timer = evtimer_new(env->base, seal_timeout_cb, j)) == NULL ||
	    evtimer_add(id->timer, &tv) != 0) {
		json_decref(keys);
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "internal: cannot arm the seal timer");
		return;
	}
	sw_uuid_v7_str(id->request_id);
	o = json_pack("{s:s, s:s, s:s, s:s, s:o}", "request_id", id->request_id, "step",
		      j->x->step, "sandbox_id", j->slot->id, "host_key", env->seal_pk_hex, "keys",
		      keys);
	snprintf(n, sizeof(n), "%zu", id->npins);
	sw_log(SW_LOG_INFO, "seal requested", "run_id", j->x->dh.run_id, "step_id",
	       j->x->dh.step_id, "request_id", id->request_id, "sandbox_id", j->slot->id, "keys",
	       n, NULL);
	/* a lost request is the identity service not answering: the timer */
	sw_executor_emit(env->ex, SW_TOPIC_IDENTITY, "identity.seal_requested", &j->x->dh, o);
	return;
oom:
	sbd_exec_finish(j, SW_STEP_FAILED, NULL, "internal: out of memory");
}

/* The refusal of a seal request as the step's error: the answer's error
 * ("revoked: GITHUB_TOKEN") under its code. */
static void refused(struct sbd_job *j, json_t *ev)
{
	const char *code = json_string_value(json_object_get(ev, "code"));
	const char *error = json_string_value(json_object_get(ev, "error"));
	size_t cl = code != NULL ? strlen(code) : 0;
	char *text;

	sw_metrics_counter_add(j->env->metrics, "sagewai_sandboxd_identity_seal_refused_total",
			       "Seal requests the identity service refused", 1);
	if (cl == 0 || cl > 32 || strspn(code, "abcdefghijklmnopqrstuvwxyz_") != cl)
		code = "identity_refused";
	text = sw_executor_utf8(error ? error : "", error ? strnlen(error, 400) : 0);
	if (text != NULL && text[0] != '\0' && strncmp(text, code, strlen(code)) == 0 &&
	    text[strlen(code)] == ':')
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "%s", text);
	else if (text != NULL && text[0] != '\0')
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "%s: %s", code, text);
	else
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "%s: the identity service refused", code);
	free(text);
}

/* "id" of box equals want. */
static int box_id_is(json_t *box, const char *key, const char *want)
{
	const char *v = json_string_value(json_object_get(box, key));

	return v != NULL && strcmp(v, want) == 0;
}

/* The keyed BLAKE2b-256 of v[0..n) under the MAC key is the pinned mac (hex). */
static int mac_ok(const struct sbd_env *env, const unsigned char *v, size_t n, const char *hex)
{
	unsigned char want[32], got[32];
	size_t bin_len = 0;

	if (sodium_hex2bin(want, sizeof(want), hex, strlen(hex), NULL, &bin_len, NULL) != 0 ||
	    bin_len != sizeof(want))
		return 0;
	crypto_generichash(got, sizeof(got), v, n, env->mac_key, 32);
	return sodium_memcmp(got, want, sizeof(got)) == 0;
}

/*
 * Open the sealed box (hex) of j's request, check it, and queue the values
 * (and the plain knobs) as INJECT_ENV frames; the redactor holds the values
 * afterwards. Every other copy is wiped before returning: the box's
 * plaintext and decoded values are sodium_malloc'd, jansson's memory is
 * wiped when freed (config.c). 0, or -1 with err ("<code>: ..."; never a
 * value, never text of the box).
 */
static int open_box(struct sbd_job *j, const char *hex, char *err, size_t errlen)
{
	struct sbd_env *env = j->env;
	struct sbd_ident *id = j->ident;
	size_t hexlen = strlen(hex), clen = hexlen / 2, mlen, bin_len = 0, i, k, n;
	unsigned char *c = NULL, *m = NULL, **vals = NULL;
	size_t *lens = NULL;
	const char *kenv, *ksecret, *b64, *tenant = NULL;
	size_t b64len;
	json_t *box = NULL, *keys, *e;
	json_int_t kversion;
	json_error_t jerr;
	char why[200];
	int rc = -1;

	if (hexlen % 2 != 0 || clen <= crypto_box_SEALBYTES || clen > SBD_ID_BOX_MAX) {
		snprintf(err, errlen, "identity_error: the sealed box is empty or malformed");
		return -1;
	}
	if ((c = malloc(clen)) == NULL || (vals = calloc(id->nkeys, sizeof(*vals))) == NULL ||
	    (lens = calloc(id->nkeys, sizeof(*lens))) == NULL ||
	    (m = sodium_malloc(clen - crypto_box_SEALBYTES + 1)) == NULL) {
		snprintf(err, errlen, "internal: out of memory");
		goto out;
	}
	if (sodium_hex2bin(c, clen, hex, hexlen, NULL, &bin_len, NULL) != 0 || bin_len != clen) {
		snprintf(err, errlen, "identity_error: the sealed box is empty or malformed");
		goto out;
	}
	mlen = clen - crypto_box_SEALBYTES;
	if (crypto_box_seal_open(m, c, clen, env->seal_pk, env->seal_sk) != 0) {
		snprintf(err, errlen,
			 "identity_error: the sealed box does not open with this host's key");
		goto out;
	}
	m[mlen] = '\0';
	if ((box = json_loadb((const char *)m, mlen, JSON_REJECT_DUPLICATES, &jerr)) == NULL ||
	    json_unpack_ex(box, &jerr, JSON_STRICT, "{s:s, s:s, s:s, s:s, s?s, s:o}", "request_id",
			   &kenv, "run_id", &kenv, "step_id", &kenv, "sandbox_id", &kenv, "tenant",
			   &tenant, "keys", &keys) != 0) {
		/* jansson's message may quote the box: not shown */
		snprintf(err, errlen, "identity_error: the sealed box is not {request_id, run_id, "
				      "step_id, sandbox_id, tenant, keys}");
		goto out;
	}
	if (!box_id_is(box, "request_id", id->request_id) ||
	    !box_id_is(box, "run_id", j->x->dh.run_id) ||
	    !box_id_is(box, "step_id", j->x->dh.step_id) ||
	    !box_id_is(box, "sandbox_id", j->slot->id) ||
	    (tenant != NULL && strcmp(tenant, j->x->dh.tenant) != 0)) {
		snprintf(err, errlen, "identity_error: the sealed box is for another request, run, "
				      "step, tenant or sandbox: not used");
		goto out;
	}
	if (!json_is_array(keys) || json_array_size(keys) != id->npins) {
		snprintf(err, errlen,
			 "identity_error: the sealed box holds %zu keys, %zu were asked: not used",
			 json_array_size(keys), id->npins);
		goto out;
	}
	json_array_foreach(keys, i, e) {
		if (json_unpack_ex(e, &jerr, JSON_STRICT, "{s:s, s:s, s:I, s:s%}", "env", &kenv,
				   "secret", &ksecret, "version", &kversion, "value_b64", &b64,
				   &b64len) != 0) {
			snprintf(err, errlen, "identity_error: sealed key %zu is not {env, secret, "
					      "version, value_b64}",
				 i);
			goto out;
		}
		for (k = 0; k < id->nkeys; k++)
			if (id->keys[k].plain == NULL && vals[k] == NULL &&
			    strcmp(id->keys[k].env, kenv) == 0 &&
			    strcmp(id->keys[k].secret, ksecret) == 0 &&
			    id->keys[k].version == kversion)
				break;
		if (k == id->nkeys) {
			snprintf(err, errlen, "identity_error: sealed key %zu is not one that was "
					      "asked (env, secret and version): not used",
				 i);
			goto out;
		}
		n = b64len / 4 * 3 + 3;
		if ((vals[k] = sodium_malloc(n + 1)) == NULL) {
			snprintf(err, errlen, "internal: out of memory");
			goto out;
		}
		if (sodium_base642bin(vals[k], n, b64, b64len, NULL, &lens[k], NULL,
				      sodium_base64_VARIANT_ORIGINAL) != 0 &&
		    sodium_base642bin(vals[k], n, b64, b64len, NULL, &lens[k], NULL,
				      sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0) {
			snprintf(err, errlen, "identity_error: the value of %.60s is not base64",
				 id->keys[k].env);
			goto out;
		}
		vals[k][lens[k]] = '\0';
		if (memchr(vals[k], '\0', lens[k]) != NULL) {
			snprintf(err, errlen, "identity_error: the value of %.60s holds a NUL byte",
				 id->keys[k].env);
			goto out;
		}
		/* with the deployment's MAC key: the value pinned at submit, and no
		 * other (a sealed box proves nothing about its sender) */
		if (env->mac_key != NULL && !mac_ok(env, vals[k], lens[k], id->keys[k].mac)) {
			snprintf(err, errlen, "identity_error: the value of %.60s does not match "
					      "its pinned MAC: not used",
				 id->keys[k].env);
			goto out;
		}
	}
	/* every value is redacted from here on, or nothing is injected */
	if ((id->red = sw_redact_new()) == NULL) {
		snprintf(err, errlen, "internal: out of memory");
		goto out;
	}
	for (k = 0; k < id->nkeys; k++)
		if (vals[k] != NULL &&
		    sw_redact_add(id->red, id->keys[k].env, vals[k], lens[k], why, sizeof(why)) != 0) {
			snprintf(err, errlen, "identity_error: %.60s cannot be injected: %s",
				 id->keys[k].env, why);
			goto out;
		}
	if ((id->rs[0] = sw_redact_stream_new(id->red)) == NULL ||
	    (id->rs[1] = sw_redact_stream_new(id->red)) == NULL) {
		snprintf(err, errlen, "internal: out of memory");
		goto out;
	}
	/* cli_agent: the artifact is scanned for them, and a push uses some */
	for (k = 0; j->agent != NULL && k < id->nkeys; k++)
		if (vals[k] != NULL && sbd_agent_keep(j, id->keys[k].env, vals[k], lens[k]) != 0) {
			snprintf(err, errlen, "internal: out of memory");
			goto out;
		}
	/* in the dispatch's order; the runner puts them over the step's env */
	for (k = 0; k < id->nkeys; k++) {
		const char *v = vals[k] != NULL ? (const char *)vals[k] : id->keys[k].plain;

		if (sw_sandbox_inject_env(j->slot->sb, id->keys[k].env, v, why, sizeof(why)) !=
		    0) {
			snprintf(err, errlen, "identity_error: %.60s: %s", id->keys[k].env, why);
			goto out;
		}
	}
	rc = 0;
out:
	if (vals != NULL)
		for (k = 0; k < id->nkeys; k++)
			sodium_free(vals[k]);
	free(vals);
	free(lens);
	json_decref(box);
	sodium_free(m);
	free(c);
	return rc;
}

/* An identity.sealed: ours when a job waits for its request_id. */
static void on_sealed(struct sbd_env *env, json_t *ev)
{
	const char *rid = json_string_value(json_object_get(ev, "request_id"));
	const char *hex = json_string_value(json_object_get(ev, "sealed"));
	struct sbd_job *j;
	char err[400];

	if (rid == NULL)
		return;
	LIST_FOREACH(j, &env->idjobs, id_entry)
	if (j->stage == SBD_SEALING && j->x->phase == SW_EXECUTOR_ACTIVE &&
	    strcmp(j->ident->request_id, rid) == 0)
		break;
	if (j == NULL) {
		sbd_cred_sealed(env, ev); /* a granted credential's, or nobody's */
		return;
	}
	evtimer_del(j->ident->timer);
	if (!json_is_true(json_object_get(ev, "ok"))) {
		refused(j, ev);
		return;
	}
	if (open_box(j, hex != NULL ? hex : "", err, sizeof(err)) != 0) {
		sw_metrics_counter_add(env->metrics, "sagewai_sandboxd_identity_bad_boxes_total",
				       "Sealed answers refused (wrong key, ids or keys)", 1);
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "%s", err);
		return;
	}
	go(j);
}

void sbd_identity_injected(struct sbd_job *j)
{
	struct sbd_ident *id = j->ident;
	json_t *keys = json_array();
	size_t i;

	for (i = 0; keys != NULL && i < id->nkeys; i++)
		json_array_append_new(keys, json_pack("{s:s, s:s, s:i, s:s}", "env",
						      id->keys[i].env, "secret",
						      id->keys[i].secret, "version",
						      id->keys[i].version, "mac", id->keys[i].mac));
	sw_metrics_counter_add(j->env->metrics, "sagewai_sandboxd_identity_injected_total",
			       "identity_scoped steps whose keys were injected", 1);
	sw_executor_emit(j->env->ex, SW_TOPIC_SANDBOX, "identity.injected", &j->x->dh,
			 keys != NULL ? json_pack("{s:s, s:s, s:o}", "step", j->x->step,
						  "sandbox_id", j->slot->id, "keys", keys)
				      : NULL);
}

/* ---- revocations ---------------------------------------------------------------- */

/* The key of j that holds secret name (version 0: any) of tenant, or NULL.
 * Operator-wide secrets (scope _system) are the keys of level system. */
static const struct sbd_idkey *holds(const struct sbd_job *j, const char *tenant,
				     const char *name, int version)
{
	int sys = strcmp(tenant, "_system") == 0;

	for (size_t i = 0; i < j->ident->nkeys; i++) {
		const struct sbd_idkey *k = &j->ident->keys[i];

		if (k->plain != NULL || strcmp(k->secret, name) != 0 ||
		    (version != 0 && k->version != version))
			continue;
		if (sys ? k->system : !k->system && strcmp(tenant, j->x->dh.tenant) == 0)
			return k;
	}
	return NULL;
}

static void on_revoked(struct sbd_env *env, json_t *ev, const struct sw_event_header *h)
{
	const char *name = json_string_value(json_object_get(ev, "name"));
	json_t *v = json_object_get(ev, "version");
	int hard = json_is_true(json_object_get(ev, "hard"));
	struct sbd_job *j, *next;
	const struct sbd_idkey *k;
	char ver[16];

	if (name == NULL || !json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > INT32_MAX || h->tenant[0] == '\0') {
		sw_log(SW_LOG_WARN, "ignored a malformed secret.revoked", "event_id", h->event_id,
		       NULL);
		return;
	}
	snprintf(ver, sizeof(ver), "%d", (int)json_integer_value(v));
	sw_log(SW_LOG_DEBUG, "secret revoked", "tenant", h->tenant, "secret", name, "version", ver,
	       "hard", hard ? "true" : "false", NULL);
	for (j = LIST_FIRST(&env->idjobs); j != NULL; j = next) {
		next = LIST_NEXT(j, id_entry);
		if (j->x->phase != SW_EXECUTOR_ACTIVE ||
		    (j->stage != SBD_SEALING && j->stage != SBD_RUNNING &&
		     j->stage != SBD_PACKING && j->stage != SBD_DELIVERING) ||
		    (k = holds(j, h->tenant, name, (int)json_integer_value(v))) == NULL)
			continue;
		if (j->stage == SBD_SEALING) {
			/* an answer sealed before the revocation must not be used */
			sbd_exec_finish(j, SW_STEP_FAILED, NULL,
					"revoked: %s (secret %s was revoked while its seal was "
					"requested)",
					k->env, name);
			continue;
		}
		if (!hard)
			continue;
		if (j->slot == NULL) {
			/* cli_agent, delivering: the sandbox is gone; the push (which
			 * may use the value) is abandoned */
			sw_log(SW_LOG_WARN, "hard revocation: abandoning the delivery", "run_id",
			       j->x->dh.run_id, "step_id", j->x->dh.step_id, "secret", name,
			       "version", ver, NULL);
			sbd_exec_finish(j, SW_STEP_FAILED, NULL,
					"revoked: %s (secret %s was revoked; nothing more was "
					"delivered)",
					k->env, name);
			continue;
		}
		snprintf(j->slot->revoke_event_id, sizeof(j->slot->revoke_event_id), "%s",
			 h->event_id);
		snprintf(j->slot->revoke_secret, sizeof(j->slot->revoke_secret), "%s", name);
		snprintf(j->slot->step, sizeof(j->slot->step), "%s", j->x->step);
		j->slot->revoke_version = (int)json_integer_value(v);
		j->slot->revoke_time_us = h->time_us;
		sw_log(SW_LOG_WARN, "hard revocation: killing the sandbox", "run_id",
		       j->x->dh.run_id, "step_id", j->x->dh.step_id, "sandbox_id", j->slot->id,
		       "secret", name, "version", ver, "revoke_event_id", h->event_id, NULL);
		sw_metrics_counter_add(env->metrics, "sagewai_sandboxd_identity_revoke_kills_total",
				       "Sandboxes killed by a hard revocation", 1);
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "revoked: %s (secret %s was revoked)",
				k->env, name);
	}
}

/* ---- the tail reader ------------------------------------------------------------- */

static void ignored(const struct sw_bus_msg *m, const char *why)
{
	char part[16], off[24];

	snprintf(part, sizeof(part), "%d", (int)m->partition);
	snprintf(off, sizeof(off), "%lld", (long long)m->offset);
	sw_log(SW_LOG_WARN, "ignored a message on an identity topic", "topic", m->topic,
	       "partition", part, "offset", off, "error", why, NULL);
}

static void tail_cb(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sbd_env *env = opaque;
	struct sw_event_header h;
	char why[256];
	json_t *ev;

	for (size_t i = 0; i < n; i++) {
		const struct sw_bus_msg *m = &msgs[i];
		int sealed = strcmp(m->topic, SW_TOPIC_IDENTITY_SEALED) == 0;
		int creds = strcmp(m->topic, SW_TOPIC_CREDENTIALS) == 0;

		if (m->value == NULL || m->len == 0) {
			ignored(m, "empty message");
			continue;
		}
		if (sw_event_decode_header(env->reg, m->value, m->len, &h, why, sizeof(why)) !=
		    0) {
			ignored(m, why);
			continue;
		}
		if (creds) {
			/* the decisions on our sandboxes' requests; the rest is
			 * the flow's other traffic */
			if (strcmp(h.type, "credential.decided") != 0 || LIST_EMPTY(&env->idjobs))
				continue;
			if ((ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) ==
			    NULL) {
				ignored(m, why);
				continue;
			}
			sbd_cred_decided(env, ev, &h);
			json_decref(ev);
			continue;
		}
		if (sealed && strcmp(h.type, "identity.sealed") != 0) {
			ignored(m, "not an identity.sealed");
			continue;
		}
		if (!sealed && strcmp(h.type, "secret.revoked") != 0)
			continue; /* the identity service's other traffic */
		if (sealed && LIST_EMPTY(&env->idjobs))
			continue; /* nothing of ours waits */
		if ((ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) == NULL) {
			ignored(m, why);
			continue;
		}
		if (sealed)
			on_sealed(env, ev);
		else
			on_revoked(env, ev, &h);
		json_decref(ev);
	}
}

int sbd_identity_start(struct sbd_env *env, char *err, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_IDENTITY, SW_TOPIC_IDENTITY_SEALED,
					     SW_TOPIC_CREDENTIALS, NULL};

	if (env->seal_sk == NULL)
		return 0;
	env->idtail = sw_bus_tail_new(env->base, sw_service_config(env->svc)->kafka_bootstrap,
				      topics, NULL, 64, tail_cb, env, err, errlen);
	return env->idtail != NULL ? 0 : -1;
}

void sbd_identity_stop(struct sbd_env *env)
{
	if (env->idtail != NULL)
		sw_bus_consumer_destroy(env->idtail);
	env->idtail = NULL;
	sbd_identity_forget(env);
}
