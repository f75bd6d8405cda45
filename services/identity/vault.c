/*
 * vault.c: the Vault (KV version 2) backend, over libcurl's blocking API
 * on SAGEWAI_VAULT_THREADS worker threads (sw_handoff): nothing here runs
 * on the loop but queueing a call and handing its outcome back.
 *
 *   read    GET    /v1/<mount>/data/<path>[?version=N]
 *   write   POST   /v1/<mount>/data/<path>   {"data": {"value": "<base64>"}}
 *   delete  GET    /v1/<mount>/metadata/<path>, then
 *           POST   /v1/<mount>/destroy/<path>    {"versions": [every one listed]}
 *   mint    POST   /v1/auth/token/create         (mint.c's body) -> auth.client_token,
 *                                                auth.accessor
 *   revoke  POST   /v1/auth/token/revoke-accessor {"accessor": A}
 *
 * <path> is <prefix><tenant>/<name> for the values identity writes
 * (base64 under "value"), or the operator's own path for a reference (the
 * value is the string under "value", as kept; never written or deleted).
 * Every call carries X-Vault-Token (and X-Vault-Namespace when set) and
 * ends within SAGEWAI_VAULT_TIMEOUT_MS. Anything else than the expected
 * answer -- no connection, a timeout, a 403, a body that is not the JSON
 * shape KV v2 answers, too large, not base64 -- fails closed: the error
 * names the backend, the scope, the secret and the key, and the HTTP
 * status or curl's reason, never a byte of the body.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <sodium.h>

#include "identity.h"

#define RESP_MAX (512u << 10) /* a KV answer holding one value fits easily */

struct vjob {
	TAILQ_ENTRY(vjob) entry;
	enum id_vop op;
	struct id_secret_ref ref;
	int version;
	uint8_t *in; /* write: the value (sodium_malloc'd) */
	size_t inlen;
	id_bvalue_cb cb;
	void *opaque;
	/* outcome, filled by the thread */
	struct id_bvalue out;
	uint8_t *value; /* read: sodium_malloc'd */
};
TAILQ_HEAD(vjobq, vjob);

struct id_vault {
	struct sw_handoff h;
	struct vjobq queued, done; /* waiting for a thread / for the loop (h.mu) */
	size_t inflight;	 /* loop only: queued and not yet called back */
	struct id_env *env;
};

/* The response body of one call, in a buffer wiped after use. */
struct vresp {
	uint8_t *p; /* RESP_MAX + 1, sodium_malloc'd, per thread */
	size_t len;
	int over;
};

static size_t collect(char *d, size_t sz, size_t nm, void *u)
{
	struct vresp *r = u;
	size_t n = sz * nm;

	if (n > RESP_MAX - r->len) {
		r->over = 1;
		return 0; /* aborts the transfer */
	}
	memcpy(r->p + r->len, d, n);
	r->len += n;
	return n;
}

/* The Vault path of ref (no leading slash). */
static void vault_path(const struct id_env *env, const struct id_secret_ref *ref, char *out,
		       size_t len)
{
	if (ref->vault_path[0] != '\0')
		snprintf(out, len, "%s", ref->vault_path);
	else
		snprintf(out, len, "%s%s/%s", env->vault_prefix, ref->tenant, ref->name);
}

/* "for GITHUB_TOKEN (secret gh_token)" or "for secret gh_token" (scope in
 * both when it is the system's) */
static void subject(const struct id_secret_ref *ref, char *out, size_t len)
{
	const char *sys = strcmp(ref->tenant, ID_SYSTEM) == 0 ? " of _system" : "";

	if (ref->env[0] != '\0')
		snprintf(out, len, "for %s (secret %s%s)", ref->env, ref->name, sys);
	else
		snprintf(out, len, "for secret %s%s", ref->name, sys);
}

/* vsnprintf: a message may be cut at its end, which is fine for errors */
static void msgf(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void msgf(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, len, fmt, ap);
	va_end(ap);
}

/* The outcome e with "backend vault <what> <subject>: <why>". */
static void fail(struct vjob *j, enum id_berr e, const char *what, const char *why)
{
	char subj[256];

	subject(&j->ref, subj, sizeof(subj));
	j->out.err = e;
	msgf(j->out.error, sizeof(j->out.error), "backend vault %s %s: %s",
	     what != NULL ? what : "unavailable", subj, why);
}

/* The version in data.metadata.version (read) or data.version (write). */
static int json_version(json_t *v)
{
	json_int_t n;

	if (!json_is_integer(v))
		return -1;
	n = json_integer_value(v);
	return n >= 1 && n <= INT_MAX ? (int)n : -1;
}

static void parse_read(struct id_env *env, struct vjob *j, const struct vresp *r)
{
	json_t *root, *data, *inner, *meta, *val, *del;
	const char *s;
	size_t slen;
	int version;

	(void)env;
	root = json_loadb((const char *)r->p, r->len, JSON_REJECT_DUPLICATES, NULL);
	data = json_object_get(root, "data");
	inner = json_object_get(data, "data");
	meta = json_object_get(data, "metadata");
	if (!json_is_object(root) || !json_is_object(data) || !json_is_object(meta)) {
		fail(j, ID_BUNAVAILABLE, NULL, "the answer is not a KV version 2 read");
		goto out;
	}
	if ((version = json_version(json_object_get(meta, "version"))) == -1 ||
	    (j->version > 0 && version != j->version)) {
		fail(j, ID_BUNAVAILABLE, NULL, "the answer names no or another version");
		goto out;
	}
	del = json_object_get(meta, "deletion_time");
	if (json_is_true(json_object_get(meta, "destroyed")) ||
	    (json_is_string(del) && json_string_length(del) > 0)) {
		fail(j, ID_BREVOKED, "holds no value", "version deleted or destroyed");
		goto out;
	}
	val = json_object_get(inner, "value");
	if (!json_is_object(inner) || !json_is_string(val)) {
		fail(j, ID_BUNAVAILABLE, NULL, "the answer has no string data.value");
		goto out;
	}
	s = json_string_value(val);
	slen = json_string_length(val);
	if (j->ref.vault_path[0] != '\0') {
		if (slen > ID_VALUE_MAX || strlen(s) != slen) {
			fail(j, ID_BUNAVAILABLE, NULL, "the value is larger than 64 KiB or holds NUL");
			goto out;
		}
		j->value = id_secure_dup(s, slen);
		j->out.len = slen;
	} else if (id_unb64(s, slen, ID_VALUE_MAX, &j->value, &j->out.len) == -1) {
		fail(j, ID_BUNAVAILABLE, NULL, "data.value is not base64 of at most 64 KiB");
		goto out;
	}
	if (j->value == NULL) {
		fail(j, ID_BINTERNAL, NULL, "out of memory");
		goto out;
	}
	if (j->out.len < ID_VALUE_MIN) {
		id_secure_free(j->value);
		j->value = NULL;
		fail(j, ID_BUNAVAILABLE, NULL,
		     "the value is shorter than 4 bytes (it could not be redacted)");
		goto out;
	}
	j->out.version = version;
	j->out.value = j->value;
	j->out.err = ID_BOK;
out:
	json_decref(root);
}

static void parse_write(struct vjob *j, const struct vresp *r)
{
	json_t *root = json_loadb((const char *)r->p, r->len, JSON_REJECT_DUPLICATES, NULL);
	int version = json_version(json_object_get(json_object_get(root, "data"), "version"));

	if (version == -1)
		fail(j, ID_BUNAVAILABLE, NULL, "the answer to the write names no version");
	else {
		j->out.version = version;
		j->out.err = ID_BOK;
	}
	json_decref(root);
}

/* token/create's answer: auth.client_token (the value) and auth.accessor. */
static void parse_mint(struct vjob *j, const struct vresp *r)
{
	json_t *root = json_loadb((const char *)r->p, r->len, JSON_REJECT_DUPLICATES, NULL);
	json_t *auth = json_object_get(root, "auth");
	json_t *tok = json_object_get(auth, "client_token"), *acc = json_object_get(auth, "accessor");
	size_t n = json_string_length(tok), i;
	const char *a = json_string_value(acc);

	if (!json_is_string(tok) || n < ID_VALUE_MIN || n > 1024 ||
	    strlen(json_string_value(tok)) != n || a == NULL || a[0] == '\0' ||
	    strlen(a) >= sizeof(j->out.accessor)) {
		fail(j, ID_BUNAVAILABLE, "mint", "the answer is not a token/create answer");
		goto out;
	}
	for (i = 0; a[i] != '\0'; i++)
		if (!((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= 'A' && a[i] <= 'Z') ||
		      (a[i] >= '0' && a[i] <= '9') || a[i] == '.' || a[i] == '_' || a[i] == '-')) {
			fail(j, ID_BUNAVAILABLE, "mint", "the answer's accessor is malformed");
			goto out;
		}
	if ((j->value = id_secure_dup(json_string_value(tok), n)) == NULL) {
		fail(j, ID_BINTERNAL, "mint", "out of memory");
		goto out;
	}
	snprintf(j->out.accessor, sizeof(j->out.accessor), "%s", a);
	j->out.len = n;
	j->out.version = 1;
	j->out.value = j->value;
	j->out.err = ID_BOK;
out:
	if (auth != NULL && json_is_string(tok))
		sodium_memzero((void *)json_string_value(tok), n); /* the token, in jansson */
	json_decref(root);
}

/*
 * One HTTP request on this thread's handle: method, url, an optional JSON
 * body. 0 with *status and the answer in r, or -1 with why (curl's reason,
 * or an answer over RESP_MAX). The caller wipes r.
 */
static int perform(struct id_env *env, CURL *e, struct curl_slist *hdrs, struct vresp *r,
		   const char *method, const char *url, const char *body, long *status,
		   char *why, size_t whylen)
{
	char errbuf[CURL_ERROR_SIZE];
	CURLcode rc;

	r->len = 0;
	r->over = 0;
	errbuf[0] = '\0';
	*status = 0;
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)env->vault_timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)env->vault_timeout_ms);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "sagewai-identity");
	if (body != NULL) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && r->over)) {
		snprintf(why, whylen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return -1;
	}
	if (r->over) {
		snprintf(why, whylen, "the answer is larger than 512 KiB");
		return -1;
	}
	r->p[r->len] = '\0';
	return 0;
}

/*
 * Delete: destroy every version of the path (KV v2 destroy: the values are
 * gone for good) and keep its metadata, so that Vault's version numbers go
 * on: a name set again after its deletion gets versions above the deleted
 * ones, which identity keeps recording (deleting the metadata would restart
 * them at 1, a number already taken). The versions are those the path's
 * metadata lists; a path Vault does not know holds nothing to destroy.
 */
static void run_delete(struct id_env *env, CURL *e, struct curl_slist *hdrs, struct vresp *r,
		       struct vjob *j, const char *base, const char *path)
{
	char url[2048], why[CURL_ERROR_SIZE + 64];
	json_t *root = NULL, *versions, *v;
	struct sw_buf body = {0};
	const char *k;
	long status;
	char *end;
	int n = 0;

	snprintf(url, sizeof(url), "%s/metadata/%s", base, path);
	if (perform(env, e, hdrs, r, "GET", url, NULL, &status, why, sizeof(why)) == -1) {
		fail(j, ID_BUNAVAILABLE, NULL, why);
		goto out;
	}
	if (status == 404) {
		j->out.err = ID_BOK;
		goto out;
	}
	if (status != 200) {
		snprintf(why, sizeof(why), "HTTP %ld", status);
		fail(j, ID_BUNAVAILABLE, NULL, why);
		goto out;
	}
	root = json_loadb((const char *)r->p, r->len, JSON_REJECT_DUPLICATES, NULL);
	versions = json_object_get(json_object_get(root, "data"), "versions");
	if (!json_is_object(versions)) {
		fail(j, ID_BUNAVAILABLE, NULL, "the answer is not KV version 2 metadata");
		goto out;
	}
	sw_buf_add(&body, "{\"versions\":[", 13);
	json_object_foreach(versions, k, v) {
		long long x;

		errno = 0;
		x = strtoll(k, &end, 10);
		if (k[0] < '1' || k[0] > '9' || *end != '\0' || errno != 0 || x > INT_MAX) {
			fail(j, ID_BUNAVAILABLE, NULL, "the metadata lists a version not a number");
			goto out;
		}
		if (n++ > 0)
			sw_buf_add(&body, ",", 1);
		sw_buf_add(&body, k, strlen(k));
	}
	sw_buf_add(&body, "]}", 3); /* with the NUL */
	if (body.oom) {
		fail(j, ID_BINTERNAL, NULL, "out of memory");
		goto out;
	}
	if (n == 0) {
		j->out.err = ID_BOK;
		goto out;
	}
	snprintf(url, sizeof(url), "%s/destroy/%s", base, path);
	if (perform(env, e, hdrs, r, "POST", url, body.p, &status, why, sizeof(why)) == -1) {
		fail(j, ID_BUNAVAILABLE, NULL, why);
		goto out;
	}
	if (status != 204 && status != 200) {
		snprintf(why, sizeof(why), "HTTP %ld", status);
		fail(j, ID_BUNAVAILABLE, NULL, why);
		goto out;
	}
	j->out.err = ID_BOK;
out:
	json_decref(root);
	sw_buf_free(&body);
}

/* One call on this thread's handle. */
static void run_job(struct id_env *env, CURL *e, struct curl_slist *hdrs, struct vresp *r,
		    struct vjob *j)
{
	char base[1024], url[2048], path[512], why[CURL_ERROR_SIZE + 64];
	char *body = NULL, *b64 = NULL;
	const char *addr = env->vault_addr;
	size_t alen = strlen(addr);
	long status = 0;

	while (alen > 0 && addr[alen - 1] == '/')
		alen--;
	vault_path(env, &j->ref, path, sizeof(path));
	snprintf(base, sizeof(base), "%.*s/v1/%s", (int)alen, addr, env->vault_mount);
	if (j->op == ID_VMINT || j->op == ID_VREVOKE) {
		/* mint.c: the body is given (the revoke's is the accessor) */
		if (j->op == ID_VREVOKE) {
			if ((body = sodium_malloc(j->inlen + 32)) == NULL) {
				fail(j, ID_BINTERNAL, "revoke", "out of memory");
				goto out;
			}
			sprintf(body, "{\"accessor\":\"%s\"}", (const char *)j->in);
		}
		snprintf(url, sizeof(url), "%.*s/v1/auth/token/%s", (int)alen, addr,
			 j->op == ID_VMINT ? "create" : "revoke-accessor");
		if (perform(env, e, hdrs, r, "POST", url, body ? body : (const char *)j->in,
			    &status, why, sizeof(why)) == -1) {
			fail(j, ID_BUNAVAILABLE, j->op == ID_VMINT ? "mint" : "revoke", why);
		} else if (j->op == ID_VREVOKE && (status == 204 || status == 200)) {
			j->out.err = ID_BOK;
		} else if (j->op == ID_VREVOKE && status == 400) {
			fail(j, ID_BMISSING, "revoke", "Vault knows no such accessor (expired)");
		} else if (status != 200) {
			snprintf(why, sizeof(why), "HTTP %ld", status);
			fail(j, ID_BUNAVAILABLE, j->op == ID_VMINT ? "mint" : "revoke", why);
		} else if (j->op == ID_VMINT) {
			parse_mint(j, r);
		} else {
			j->out.err = ID_BOK;
		}
		goto out;
	}
	if (j->op == ID_VDELETE) {
		run_delete(env, e, hdrs, r, j, base, path);
		goto out;
	}
	if (j->op == ID_VREAD && j->version > 0)
		snprintf(url, sizeof(url), "%s/data/%s?version=%d", base, path, j->version);
	else
		snprintf(url, sizeof(url), "%s/data/%s", base, path);
	if (j->op == ID_VWRITE) {
		if ((b64 = id_b64(j->in, j->inlen)) == NULL ||
		    (body = sodium_malloc(strlen(b64) + 32)) == NULL) {
			fail(j, ID_BINTERNAL, NULL, "out of memory");
			goto out;
		}
		sprintf(body, "{\"data\":{\"value\":\"%s\"}}", b64);
	}
	if (perform(env, e, hdrs, r, j->op == ID_VWRITE ? "POST" : "GET", url, body, &status, why,
		    sizeof(why)) == -1) {
		fail(j, ID_BUNAVAILABLE, NULL, why);
		goto out;
	}
	if (j->op == ID_VREAD && status == 404) {
		fail(j, ID_BMISSING, "holds no such value", "HTTP 404");
		goto out;
	}
	if (status != 200) {
		snprintf(why, sizeof(why), "HTTP %ld", status);
		fail(j, ID_BUNAVAILABLE, NULL, why);
		goto out;
	}
	if (j->op == ID_VREAD)
		parse_read(env, j, r);
	else
		parse_write(j, r);
out:
	sodium_memzero(r->p, r->len);
	r->len = 0;
	id_secure_free(b64);
	id_secure_free(body);
}

static void *vault_main(struct sw_handoff *h, void *arg)
{
	struct id_vault *v = arg;
	struct id_env *env = v->env;
	struct curl_slist *hdrs = NULL;
	struct vresp r = {0};
	char *hdr = NULL;
	struct vjob *j;
	CURL *e = curl_easy_init();
	size_t hlen = strlen(env->vault_token) + 32;

	r.p = sodium_malloc(RESP_MAX + 1);
	hdr = sodium_malloc(hlen > 300 ? hlen : 300);
	if (e != NULL && hdr != NULL) {
		snprintf(hdr, hlen, "X-Vault-Token: %s", env->vault_token);
		hdrs = curl_slist_append(hdrs, hdr);
		if (env->vault_namespace[0] != '\0') {
			snprintf(hdr, 300, "X-Vault-Namespace: %s", env->vault_namespace);
			hdrs = curl_slist_append(hdrs, hdr);
		}
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	}
	sw_handoff_lock(h);
	for (;;) {
		while (TAILQ_EMPTY(&v->queued))
			if (!sw_handoff_wait(h))
				goto out;
		j = TAILQ_FIRST(&v->queued);
		TAILQ_REMOVE(&v->queued, j, entry);
		sw_handoff_unlock(h);
		if (e == NULL || r.p == NULL || hdrs == NULL)
			fail(j, ID_BINTERNAL, NULL, "cannot set up a Vault client");
		else
			run_job(env, e, hdrs, &r, j);
		sw_handoff_lock(h);
		TAILQ_INSERT_TAIL(&v->done, j, entry);
		sw_handoff_wake(h);
	}
out:
	sw_handoff_unlock(h);
	curl_slist_free_all(hdrs);
	id_secure_free(hdr);
	id_secure_free(r.p);
	if (e != NULL)
		curl_easy_cleanup(e);
	return NULL;
}

static void job_free(struct vjob *j)
{
	id_secure_free(j->in);
	id_secure_free(j->value);
	sodium_memzero(&j->out, sizeof(j->out));
	free(j);
}

/* On the loop: hand each finished call's outcome to its callback. */
static void vault_on_loop(void *arg)
{
	struct id_vault *v = arg;
	struct vjobq done;
	struct vjob *j;

	TAILQ_INIT(&done);
	sw_handoff_lock(&v->h);
	TAILQ_CONCAT(&done, &v->done, entry);
	sw_handoff_unlock(&v->h);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		v->inflight--;
		if (j->out.err == ID_BOK && j->value != NULL)
			id_mac(v->env, j->value, j->out.len, j->out.mac);
		sw_metrics_counter_add(v->env->metrics, "sagewai_identity_vault_calls_total",
				       "Calls to the Vault backend", 1);
		if (j->out.err != ID_BOK)
			sw_metrics_counter_add(v->env->metrics,
					       "sagewai_identity_vault_failures_total",
					       "Vault calls that failed (closed)", 1);
		j->cb(v->env, &j->out, j->opaque);
		job_free(j);
	}
}

int id_vault_start(struct id_env *env, char *errstr, size_t errlen)
{
	struct id_vault *v;

	if (env->vault_addr[0] == '\0')
		return 0;
	if ((v = calloc(1, sizeof(*v))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	TAILQ_INIT(&v->queued);
	TAILQ_INIT(&v->done);
	v->env = env;
	env->vault = v;
	return sw_handoff_start(&v->h, env->base, (int)env->vault_threads, vault_main,
				vault_on_loop, v, errstr, errlen);
}

void id_vault_stop(struct id_env *env)
{
	struct id_vault *v = env->vault;
	struct vjob *j;

	if (v == NULL)
		return;
	if (sw_handoff_stop(&v->h, (int)env->vault_timeout_ms + 2000) == -1)
		return; /* a thread is stuck in a call: left to the process exit */
	while ((j = TAILQ_FIRST(&v->queued)) != NULL) {
		TAILQ_REMOVE(&v->queued, j, entry);
		job_free(j);
	}
	while ((j = TAILQ_FIRST(&v->done)) != NULL) {
		TAILQ_REMOVE(&v->done, j, entry);
		job_free(j);
	}
	free(v);
	env->vault = NULL;
}

int id_vault_idle(const struct id_env *env)
{
	return env->vault == NULL || env->vault->inflight == 0;
}

int id_vault_call(struct id_env *env, enum id_vop op, const struct id_secret_ref *ref,
		  int version, const uint8_t *value, size_t len, id_bvalue_cb cb, void *opaque)
{
	struct id_vault *v = env->vault;
	struct vjob *j;

	if (v == NULL || (j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	j->op = op;
	j->ref = *ref;
	j->version = version;
	j->cb = cb;
	j->opaque = opaque;
	if (value != NULL && (j->in = id_secure_dup(value, len)) == NULL) {
		free(j);
		return -1;
	}
	j->inlen = len;
	v->inflight++;
	sw_handoff_lock(&v->h);
	TAILQ_INSERT_TAIL(&v->queued, j, entry);
	sw_handoff_signal(&v->h, 0);
	sw_handoff_unlock(&v->h);
	return 0;
}
