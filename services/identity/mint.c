/*
 * mint.c: credentials minted on a grant (cli_agent_jit, docs/JIT.md
 * "Minted credentials").
 *
 * The operator lists mint sources in SAGEWAI_IDENTITY_MINTS_FILE (JSON):
 *
 *   {"mints": {"ci-read": {"policies": ["ci-read"], "ttl_s": 600,
 *                          "num_uses": 0, "tenants": ["default"]}}}
 *
 * A policy decision that grants the secret "ci-read" to a tenant that has
 * no secret of that name, and that the source lists (no "tenants": every
 * tenant), gets a fresh Vault token: token/create with the source's
 * policies, ttl (also its explicit max: it cannot be renewed past it),
 * num_uses, no default policy, display name and metadata naming tenant,
 * run and request. Its accessor -- never the token -- is written to the
 * table minted before the token is handed to the seal (a token whose
 * accessor cannot be written is revoked and not handed out), and the
 * token is sealed like any value (version 1), on the allow
 * credential.decided itself (resolve.c; request_id = the credential
 * request's). A re-run's replayed allow (by replay) mints a new token.
 *
 * Revocation: step.finished of the attempt (the sandbox is gone) and
 * run.finished of the run mark its rows ended and revoke each accessor
 * (token/revoke-accessor); a revocation that fails is tried again every
 * MINT_TICK_S until it succeeds or the token has expired anyway.
 *
 * The tokens are children of identity's own Vault token: the policies a
 * source names must be ones that token may hand out, and revoking
 * identity's token revokes them all.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>

#include "identity.h"

#define MINT_FILE_MAX (256u << 10)
#define MINT_SOURCES_MAX 256
#define MINT_POLICIES_MAX 32
#define MINT_TTL_MAX 86400
#define MINT_USES_MAX 1000000
#define MINT_TICK_S 10
#define MINT_SWEEP "100"

/* [A-Za-z0-9_.-]{1,128}: a Vault policy name as we accept it */
static int policy_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 128 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* One source; -1 with why. */
static int source_check(const char *name, json_t *src, char *errstr, size_t errlen)
{
	json_t *pol = json_object_get(src, "policies"), *ten = json_object_get(src, "tenants"), *v;
	json_t *ttl = json_object_get(src, "ttl_s"), *uses = json_object_get(src, "num_uses");
	const char *k;
	size_t i;

	if (!id_name_valid(name)) {
		snprintf(errstr, errlen,
			 "mint source '%.64s': not a secret name "
			 "([a-z0-9][a-z0-9_.-]{0,62})",
			 name);
		return -1;
	}
	if (!json_is_object(src)) {
		snprintf(errstr, errlen, "mint source %s: not an object", name);
		return -1;
	}
	json_object_foreach(src, k, v)
		if (strcmp(k, "policies") != 0 && strcmp(k, "ttl_s") != 0 &&
		    strcmp(k, "num_uses") != 0 && strcmp(k, "tenants") != 0) {
			snprintf(errstr, errlen,
				 "mint source %s: unknown field '%.64s' (policies, "
				 "ttl_s, num_uses, tenants)",
				 name, k);
			return -1;
		}
	if (!json_is_array(pol) || json_array_size(pol) == 0 ||
	    json_array_size(pol) > MINT_POLICIES_MAX) {
		snprintf(errstr, errlen,
			 "mint source %s: policies must list 1 to %d Vault "
			 "policies",
			 name, MINT_POLICIES_MAX);
		return -1;
	}
	json_array_foreach(pol, i, v)
		if (!json_is_string(v) || !policy_ok(json_string_value(v)) ||
		    strcmp(json_string_value(v), "root") == 0) {
			snprintf(errstr, errlen,
				 "mint source %s: policy %zu is not a policy name "
				 "([A-Za-z0-9_.-]{1,128}, not root)",
				 name, i + 1);
			return -1;
		}
	if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
	    json_integer_value(ttl) > MINT_TTL_MAX) {
		snprintf(errstr, errlen, "mint source %s: ttl_s must be 1..%d seconds", name,
			 MINT_TTL_MAX);
		return -1;
	}
	if (uses != NULL && (!json_is_integer(uses) || json_integer_value(uses) < 0 ||
			     json_integer_value(uses) > MINT_USES_MAX)) {
		snprintf(errstr, errlen, "mint source %s: num_uses must be 0 (unlimited) to %d",
			 name, MINT_USES_MAX);
		return -1;
	}
	if (ten != NULL && !json_is_array(ten)) {
		snprintf(errstr, errlen, "mint source %s: tenants must be a list", name);
		return -1;
	}
	json_array_foreach(ten, i, v)
		if (!json_is_string(v) || json_string_length(v) == 0 ||
		    json_string_length(v) >= 128) {
			snprintf(errstr, errlen, "mint source %s: tenant %zu is not a tenant id",
				 name, i + 1);
			return -1;
		}
	return 0;
}

int id_mint_load(struct id_env *env, char *errstr, size_t errlen)
{
	const char *path = sw_config_env(env->envp, "SAGEWAI_IDENTITY_MINTS_FILE");
	json_t *root = NULL, *mints, *src;
	json_error_t jerr;
	struct stat st;
	const char *name;

	if (path == NULL || path[0] == '\0')
		return 0;
	if (stat(path, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size > MINT_FILE_MAX ||
	    (st.st_mode & 022) != 0) {
		snprintf(errstr, errlen,
			 "SAGEWAI_IDENTITY_MINTS_FILE %s: not a regular file of "
			 "at most 256 KiB that only its owner may write",
			 path);
		return -1;
	}
	if ((root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(errstr, errlen, "SAGEWAI_IDENTITY_MINTS_FILE %s:%d:%d: %s", path,
			 jerr.line, jerr.column, jerr.text);
		return -1;
	}
	mints = json_object_get(root, "mints");
	if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_object(mints) ||
	    json_object_size(mints) > MINT_SOURCES_MAX) {
		snprintf(errstr, errlen,
			 "SAGEWAI_IDENTITY_MINTS_FILE %s: must be {\"mints\": "
			 "{NAME: {...}}} with at most %d sources",
			 path, MINT_SOURCES_MAX);
		goto fail;
	}
	json_object_foreach(mints, name, src)
		if (source_check(name, src, errstr, errlen) == -1)
			goto fail;
	if (json_object_size(mints) > 0 && env->vault_addr[0] == '\0') {
		snprintf(errstr, errlen,
			 "SAGEWAI_IDENTITY_MINTS_FILE names mint sources but "
			 "SAGEWAI_VAULT_ADDR is not set: tokens are minted by Vault");
		goto fail;
	}
	env->mints = json_incref(mints);
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	return -1;
}

int id_mint_source(struct id_env *env, const char *tenant, const char *name)
{
	json_t *src = json_object_get(env->mints, name), *ten, *v;
	size_t i;

	if (src == NULL)
		return 0;
	if ((ten = json_object_get(src, "tenants")) == NULL)
		return 1;
	json_array_foreach(ten, i, v)
		if (strcmp(json_string_value(v), tenant) == 0)
			return 1;
	return 0;
}

/* ---- minting ------------------------------------------------------------------ */

struct mjob {
	struct id_env *env;
	struct id_mint_for m;
	id_bvalue_cb cb;
	void *opaque;
	struct id_bvalue out; /* the token: value sodium_malloc'd (ours) */
	uint8_t *value;
	long long ttl_s;
};

static void mjob_finish(struct mjob *mj)
{
	mj->cb(mj->env, &mj->out, mj->opaque);
	id_secure_free(mj->value);
	sodium_memzero(&mj->out, sizeof(mj->out));
	free(mj);
}

static void mfail(struct mjob *mj, enum id_berr e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void mfail(struct mjob *mj, enum id_berr e, const char *fmt, ...)
{
	va_list ap;

	id_secure_free(mj->value);
	mj->value = NULL;
	memset(&mj->out, 0, sizeof(mj->out));
	mj->out.err = e;
	va_start(ap, fmt);
	vsnprintf(mj->out.error, sizeof(mj->out.error), fmt, ap);
	va_end(ap);
	mjob_finish(mj);
}

static void revoked_cb(struct id_env *env, const struct id_bvalue *b, void *opaque);

/* Revoke accessor (a copy is taken); its row, if any, is marked when done. */
static void revoke(struct id_env *env, const char *accessor)
{
	struct id_secret_ref ref;
	char *a = strdup(accessor);

	memset(&ref, 0, sizeof(ref));
	snprintf(ref.name, sizeof(ref.name), "minted");
	snprintf(ref.backend, sizeof(ref.backend), "vault");
	if (a == NULL || id_vault_call(env, ID_VREVOKE, &ref, 0, (const uint8_t *)accessor,
				       strlen(accessor), revoked_cb, a) == -1) {
		sw_log(SW_LOG_ERROR, "minted token not revoked (tried again later)", "accessor",
		       accessor, NULL);
		free(a);
	}
}

static void marked_cb(PGresult *res, const char *err, void *opaque)
{
	(void)res;
	(void)opaque;
	if (err != NULL)
		sw_log(SW_LOG_WARN, "minted token revoked but not marked", "error", err, NULL);
}

static void revoked_cb(struct id_env *env, const struct id_bvalue *b, void *opaque)
{
	char *a = opaque;
	const char *params[1] = {a};

	if (b->err != ID_BOK && b->err != ID_BMISSING) {
		sw_log(SW_LOG_WARN, "minted token not revoked (tried again later)", "accessor", a,
		       "error", b->error, NULL);
		free(a);
		return;
	}
	sw_log(SW_LOG_INFO, "minted token revoked", "accessor", a, NULL);
	sw_metrics_counter_add(env->metrics, "sagewai_identity_minted_revoked_total",
			       "Minted tokens revoked", 1);
	if (sw_store_query(env->store, "UPDATE minted SET revoked_at = now() WHERE accessor = $1",
			   1, params, marked_cb, NULL) == -1)
		sw_log(SW_LOG_WARN, "minted token revoked but not marked", "accessor", a, NULL);
	free(a);
}

static void recorded_cb(PGresult *res, const char *err, void *opaque)
{
	struct mjob *mj = opaque;

	if (err == NULL && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		/* its step (or run) ended before the token was made: not handed out */
		sw_log(SW_LOG_INFO, "token minted after its step ended: revoked", "run_id",
		       mj->m.run_id, "step_id", mj->m.step_id, NULL);
		revoke(mj->env, mj->out.accessor);
		mfail(mj, ID_BREVOKED,
		      "backend vault mint for %s (secret %s): the step has ended; the token was "
		      "revoked",
		      mj->m.env, mj->m.source);
		return;
	}
	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "minted token not recorded: revoked, not handed out",
		       "run_id", mj->m.run_id, "error", err, NULL);
		revoke(mj->env, mj->out.accessor);
		mfail(mj, ID_BUNAVAILABLE,
		      "backend vault mint for %s (secret %s): the token "
		      "could not be recorded; it was revoked",
		      mj->m.env, mj->m.source);
		return;
	}
	sw_log(SW_LOG_INFO, "token minted", "run_id", mj->m.run_id, "step_id", mj->m.step_id,
	       "request_id", mj->m.grant, "source", mj->m.source, "accessor", mj->out.accessor,
	       NULL);
	sw_metrics_counter_add(mj->env->metrics, "sagewai_identity_minted_total",
			       "Tokens minted on a grant", 1);
	mjob_finish(mj);
}

static void minted_cb(struct id_env *env, const struct id_bvalue *b, void *opaque)
{
	struct mjob *mj = opaque;
	const char *params[9];
	char ttl[24];

	if (b->err != ID_BOK) {
		mfail(mj, b->err == ID_BINTERNAL ? ID_BINTERNAL : ID_BUNAVAILABLE, "%s", b->error);
		return;
	}
	if ((mj->value = id_secure_dup(b->value, b->len)) == NULL) {
		revoke(env, b->accessor);
		mfail(mj, ID_BINTERNAL, "out of memory");
		return;
	}
	mj->out = *b;
	mj->out.value = mj->value;
	snprintf(ttl, sizeof(ttl), "%lld", mj->ttl_s);
	params[0] = mj->out.accessor;
	params[1] = mj->m.tenant;
	params[2] = mj->m.run_id;
	params[3] = mj->m.step_id;
	params[4] = mj->m.sandbox_id;
	params[5] = mj->m.grant;
	params[6] = mj->m.source;
	params[7] = mj->m.env;
	params[8] = ttl;
	if (sw_store_query_key(
		env->store, mj->m.run_id,
		"INSERT INTO minted (accessor, tenant, run_id, step_id, sandbox_id,"
		" request_id, source, env, expires_at, ended) VALUES ($1, $2, $3, $4,"
		" $5, $6::uuid, $7, $8, now() + make_interval(secs => $9::int),"
		" EXISTS (SELECT 1 FROM mint_ends WHERE run_id = $3 AND step_id IN ($4, '')))"
		" RETURNING ended",
		9, params, recorded_cb, mj) == -1)
		recorded_cb(NULL, "cannot queue", mj);
}

int id_mint(struct id_env *env, const struct id_mint_for *m, id_bvalue_cb cb, void *opaque)
{
	json_t *src = json_object_get(env->mints, m->source), *body;
	struct id_secret_ref ref;
	struct mjob *mj;
	char *text, ttl[24];
	int rc;

	if (src == NULL || (mj = calloc(1, sizeof(*mj))) == NULL)
		return -1;
	mj->env = env;
	mj->m = *m;
	mj->cb = cb;
	mj->opaque = opaque;
	mj->ttl_s = (long long)json_integer_value(json_object_get(src, "ttl_s"));
	snprintf(ttl, sizeof(ttl), "%llds", mj->ttl_s);
	body = json_pack("{s:O, s:s, s:s, s:I, s:b, s:b, s:s, s:{s:s, s:s, s:s, s:s}}", "policies",
			 json_object_get(src, "policies"), "ttl", ttl, "explicit_max_ttl", ttl,
			 "num_uses", json_integer_value(json_object_get(src, "num_uses")),
			 "renewable", 0, "no_default_policy", 1, "display_name", "sagewai-jit",
			 "meta", "sagewai_tenant", m->tenant, "sagewai_run", m->run_id,
			 "sagewai_request", m->grant, "sagewai_source", m->source);
	text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL) {
		free(mj);
		return -1;
	}
	memset(&ref, 0, sizeof(ref));
	snprintf(ref.tenant, sizeof(ref.tenant), "%s", m->tenant);
	snprintf(ref.name, sizeof(ref.name), "%s", m->source);
	snprintf(ref.env, sizeof(ref.env), "%s", m->env);
	snprintf(ref.backend, sizeof(ref.backend), "vault");
	rc = id_vault_call(env, ID_VMINT, &ref, 0, (const uint8_t *)text, strlen(text), minted_cb,
			   mj);
	free(text);
	if (rc == -1)
		free(mj);
	return rc;
}

/* ---- revocation ------------------------------------------------------------------ */

struct ended {
	struct id_env *env;
	void (*done)(void *opaque, int ok);
	void *opaque;
};

static void revoke_rows(struct id_env *env, PGresult *res)
{
	int i;

	for (i = 0; res != NULL && i < PQntuples(res); i++)
		revoke(env, PQgetvalue(res, i, 0));
}

static void ended_cb(PGresult *res, const char *err, void *opaque)
{
	struct ended *e = opaque;

	if (err != NULL)
		sw_log(SW_LOG_ERROR, "minted tokens of an ended step not marked", "error", err,
		       NULL);
	else
		revoke_rows(e->env, res);
	e->done(e->opaque, err == NULL);
	free(e);
}

void id_mint_ended(struct id_env *env, const char *run_id, const char *step_id,
		   void (*done)(void *opaque, int ok), void *opaque)
{
	struct ended *e;
	const char *params[2] = {run_id, step_id != NULL ? step_id : ""};
	struct sw_store_stmt st[2];

	if (env->mints == NULL || run_id[0] == '\0') {
		done(opaque, 1);
		return;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		done(opaque, 0);
		return;
	}
	e->env = env;
	e->done = done;
	e->opaque = opaque;
	/* the end is kept (a token minted later is revoked at once), then the
	 * tokens minted so far are marked; keyed by the run, as the mints'
	 * records, so that neither misses the other */
	st[0].sql =
	    "INSERT INTO mint_ends (run_id, step_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
	st[0].nparams = 2;
	st[0].params = params;
	st[1].sql =
	    "UPDATE minted SET ended = true WHERE run_id = $1 AND ($2 = '' OR step_id = $2)"
	    " AND revoked_at IS NULL RETURNING accessor";
	st[1].nparams = 2;
	st[1].params = params;
	if (sw_store_tx_key(env->store, run_id, st, 2, ended_cb, e) == -1)
		ended_cb(NULL, "cannot queue", e);
}

static void sweep_cb(PGresult *res, const char *err, void *opaque)
{
	struct id_env *env = opaque;

	if (err != NULL)
		sw_log(SW_LOG_WARN, "minted tokens sweep failed", "error", err, NULL);
	else
		revoke_rows(env, res);
}

/* Every MINT_TICK_S: revocations still owed (failed, or lost in a crash). */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct id_env *env = arg;

	(void)fd;
	(void)what;
	if (sw_store_query(env->store,
			   "WITH old AS (DELETE FROM mint_ends WHERE ctid IN (SELECT ctid FROM"
			   " mint_ends WHERE at < now() - interval '1 day' LIMIT 1000))"
			   " SELECT accessor FROM minted WHERE ended AND revoked_at IS NULL"
			   " AND expires_at > now() ORDER BY expires_at LIMIT " MINT_SWEEP,
			   0, NULL, sweep_cb, env) == -1)
		sw_log(SW_LOG_WARN, "minted tokens sweep not queued", NULL);
}

int id_mint_start(struct id_env *env, char *errstr, size_t errlen)
{
	struct timeval tv = {MINT_TICK_S, 0};

	if (env->mints == NULL)
		return 0;
	if ((env->mint_tick = event_new(env->base, -1, EV_PERSIST, tick_cb, env)) == NULL ||
	    event_add(env->mint_tick, &tv) == -1) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	return 0;
}

void id_mint_stop(struct id_env *env)
{
	if (env->mint_tick != NULL)
		event_free(env->mint_tick);
	env->mint_tick = NULL;
	json_decref(env->mints);
	env->mints = NULL;
}
