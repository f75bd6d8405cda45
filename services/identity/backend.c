/*
 * backend.c: the one interface both backends answer (identity.h), and the
 * builtin backend behind it.
 *
 * builtin: a version is a row of identity.versions holding the value
 * encrypted (crypto.c). A new version takes max(version) + 1 of its secret,
 * is encrypted for that row (the version is in the associated data) and
 * inserted with ON CONFLICT DO NOTHING beside a check that the row now
 * carries this request's write_id: a resend after a lost connection finds
 * its own row, a concurrent writer that took the number makes us try the
 * next one.
 *
 * vault: vault.c does the call; the version Vault answers is recorded as a
 * row (MAC, no value) so that states and pins work alike for both.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "identity.h"

#define PUT_TRIES 8

struct bop {
	struct id_env *env;
	struct id_secret_ref ref;
	int version;
	uint8_t *value; /* sodium_malloc'd */
	size_t len;
	int tries;
	char write_id[SW_UUID_STRLEN];
	id_bvalue_cb cb;
	void *opaque;
	struct id_bvalue out;
};

static void bop_free(struct bop *b)
{
	id_secure_free(b->value);
	sodium_memzero(&b->out, sizeof(b->out));
	free(b);
}

static struct bop *bop_new(struct id_env *env, const struct id_secret_ref *ref, int version,
			   id_bvalue_cb cb, void *opaque)
{
	struct bop *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->env = env;
	b->ref = *ref;
	b->version = version;
	b->cb = cb;
	b->opaque = opaque;
	sw_uuid_v7_str(b->write_id);
	return b;
}

static void bop_finish(struct bop *b, enum id_berr e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Call back with the outcome (an error sentence when e != ID_BOK) and free. */
static void bop_finish(struct bop *b, enum id_berr e, const char *fmt, ...)
{
	va_list ap;

	b->out.err = e;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(b->out.error, sizeof(b->out.error), fmt, ap);
		va_end(ap);
	}
	b->cb(b->env, &b->out, b->opaque);
	bop_free(b);
}

/* "GITHUB_TOKEN (secret gh_token v3)" style subject for errors. */
static void subj(const struct id_secret_ref *r, int version, char *out, size_t len)
{
	const char *sys = strcmp(r->tenant, ID_SYSTEM) == 0 ? " of _system" : "";

	if (r->env[0] != '\0')
		snprintf(out, len, "%s (secret %s%s v%d)", r->env, r->name, sys, version);
	else
		snprintf(out, len, "secret %s%s v%d", r->name, sys, version);
}

/* ---- get ------------------------------------------------------------------ */

/* Open row r of res (columns c..c+3: state, key_id, nonce, ct) and finish b. */
static void get_row(struct bop *b, PGresult *res, int r, int c)
{
	struct id_env *env = b->env;
	uint8_t *nonce = NULL, *ct = NULL, *pt = NULL;
	size_t nlen = 0, ctlen = 0, ptlen = 0;
	char s[256], why[320];

	subj(&b->ref, b->version, s, sizeof(s));
	if (strcmp(PQgetvalue(res, r, c), "active") != 0 || PQgetisnull(res, r, c + 3)) {
		bop_finish(b, ID_BREVOKED, "revoked: %s", s);
		return;
	}
	if (id_pg_bytea(PQgetvalue(res, r, c + 2), &nonce, &nlen) == -1 || nlen != 24 ||
	    id_pg_bytea(PQgetvalue(res, r, c + 3), &ct, &ctlen) == -1) {
		free(nonce);
		bop_finish(b, ID_BINTERNAL, "backend builtin: malformed row for %s", s);
		return;
	}
	if (id_decrypt(env, PQgetvalue(res, r, c + 1), b->ref.tenant, b->ref.name, b->version,
		       nonce, ct, ctlen, &pt, &ptlen, why, sizeof(why)) == -1) {
		free(nonce);
		free(ct);
		sw_log(SW_LOG_ERROR, "builtin backend cannot open a value", "error", why, NULL);
		bop_finish(b, ID_BINTERNAL, "backend builtin cannot open %s: %s", s, why);
		return;
	}
	free(nonce);
	free(ct);
	b->value = pt;
	b->out.value = pt;
	b->out.len = ptlen;
	b->out.version = b->version;
	id_mac(env, pt, ptlen, b->out.mac);
	bop_finish(b, ID_BOK, NULL);
}

static void get_row_cb(PGresult *res, const char *err, void *opaque)
{
	struct bop *b = opaque;
	char s[256];

	subj(&b->ref, b->version, s, sizeof(s));
	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "builtin backend read failed", "error", err, NULL);
		bop_finish(b, ID_BUNAVAILABLE, "backend builtin unavailable for %s: database error",
			   s);
		return;
	}
	if (PQntuples(res) != 1) {
		bop_finish(b, ID_BMISSING, "missing: %s", s);
		return;
	}
	get_row(b, res, 0, 0);
}

int id_backend_get_row(struct id_env *env, const struct id_secret_ref *ref, int version,
		       PGresult *res, int row, int col, id_bvalue_cb cb, void *opaque)
{
	struct bop *b;

	if (strcmp(ref->backend, "builtin") != 0 || row < 0 || row >= PQntuples(res) ||
	    col < 0 || col + 4 > PQnfields(res) || (b = bop_new(env, ref, version, cb, opaque)) == NULL)
		return -1;
	get_row(b, res, row, col);
	return 0;
}

static void vault_relay(struct id_env *env, const struct id_bvalue *v, void *opaque)
{
	struct bop *b = opaque;

	(void)env;
	b->cb(b->env, v, b->opaque);
	bop_free(b);
}

int id_backend_get(struct id_env *env, const struct id_secret_ref *ref, int version,
		   id_bvalue_cb cb, void *opaque)
{
	char v[16];
	const char *params[3];
	struct bop *b;

	if ((b = bop_new(env, ref, version, cb, opaque)) == NULL)
		return -1;
	if (strcmp(ref->backend, "vault") == 0) {
		if (env->vault == NULL) {
			free(b);
			return -1;
		}
		if (id_vault_call(env, ID_VREAD, ref, version, NULL, 0, vault_relay, b) == -1) {
			free(b);
			return -1;
		}
		return 0;
	}
	snprintf(v, sizeof(v), "%d", version);
	params[0] = ref->tenant;
	params[1] = ref->name;
	params[2] = v;
	if (sw_store_query(env->store,
			   "SELECT state, key_id, nonce, ct FROM versions"
			   " WHERE tenant = $1 AND name = $2 AND version = $3::int",
			   3, params, get_row_cb, b) == -1) {
		free(b);
		return -1;
	}
	return 0;
}

/* ---- put ------------------------------------------------------------------ */

static void put_next(struct bop *b);

static void put_done_cb(PGresult *res, const char *err, void *opaque)
{
	struct bop *b = opaque;
	char s[256];

	subj(&b->ref, b->version, s, sizeof(s));
	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "secret version insert failed", "secret", b->ref.name, "error",
		       err, NULL);
		bop_finish(b, ID_BUNAVAILABLE, "backend %s: cannot record %s: database error",
			   b->ref.backend, s);
		return;
	}
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		b->out.version = b->version;
		bop_finish(b, ID_BOK, NULL);
		return;
	}
	/* the number was taken by another writer */
	if (strcmp(b->ref.backend, "vault") == 0 && b->value == NULL) {
		b->out.version = b->version; /* a reference re-recorded: the same version */
		bop_finish(b, ID_BOK, NULL);
		return;
	}
	if (strcmp(b->ref.backend, "vault") == 0) {
		bop_finish(b, ID_BUNAVAILABLE,
			   "backend vault answered %s, which is already recorded (was the Vault "
			   "path reset?)",
			   s);
		return;
	}
	if (++b->tries >= PUT_TRIES) {
		bop_finish(b, ID_BUNAVAILABLE, "backend builtin: too many concurrent writes of %s",
			   s);
		return;
	}
	put_next(b);
}

/* Insert row b->version (ciphertext for builtin) and check it is ours. */
static void put_insert(struct bop *b, const char *key_id, const uint8_t *nonce, size_t nlen,
		       const uint8_t *ct, size_t ctlen)
{
	char v[16], *pn = NULL, *pc = NULL, *pm = NULL;
	const char *p_ins[8], *p_chk[4];
	struct sw_store_stmt st[2];

	snprintf(v, sizeof(v), "%d", b->version);
	if ((pm = id_pg_bytea_param(b->out.mac, ID_MAC_BYTES)) == NULL ||
	    (ct != NULL && ((pn = id_pg_bytea_param(nonce, nlen)) == NULL ||
			    (pc = id_pg_bytea_param(ct, ctlen)) == NULL)))
		goto fail;
	p_ins[0] = b->ref.tenant;
	p_ins[1] = b->ref.name;
	p_ins[2] = v;
	p_ins[3] = key_id;
	p_ins[4] = pn;
	p_ins[5] = pc;
	p_ins[6] = pm;
	p_ins[7] = b->write_id;
	p_chk[0] = b->ref.tenant;
	p_chk[1] = b->ref.name;
	p_chk[2] = v;
	p_chk[3] = b->write_id;
	st[0].sql = "INSERT INTO versions (tenant, name, version, key_id, nonce, ct, mac, write_id)"
		    " VALUES ($1, $2, $3::int, $4, $5::bytea, $6::bytea, $7::bytea, $8::uuid)"
		    " ON CONFLICT DO NOTHING";
	st[0].nparams = 8;
	st[0].params = p_ins;
	st[1].sql = "SELECT coalesce(bool_or(write_id = $4::uuid), false) FROM versions"
		    " WHERE tenant = $1 AND name = $2 AND version = $3::int";
	st[1].nparams = 4;
	st[1].params = p_chk;
	if (sw_store_tx(b->env->store, st, 2, put_done_cb, b) == -1)
		goto fail;
	free(pn);
	free(pc);
	free(pm);
	return;
fail:
	free(pn);
	free(pc);
	free(pm);
	bop_finish(b, ID_BINTERNAL, "backend %s: cannot queue the write of secret %s",
		   b->ref.backend, b->ref.name);
}

static void put_version_cb(PGresult *res, const char *err, void *opaque)
{
	struct bop *b = opaque;
	const struct id_mkey *k = id_mkey_current(b->env);
	uint8_t nonce[24], *ct = NULL;
	size_t ctlen = 0;

	if (err != NULL || PQntuples(res) != 1) {
		if (err != NULL)
			sw_log(SW_LOG_ERROR, "secret version read failed", "error", err, NULL);
		bop_finish(b, ID_BUNAVAILABLE, "backend builtin unavailable for secret %s: "
			   "database error", b->ref.name);
		return;
	}
	b->version = atoi(PQgetvalue(res, 0, 0));
	if (id_encrypt(k, b->ref.tenant, b->ref.name, b->version, b->value, b->len, nonce, &ct,
		       &ctlen) == -1) {
		bop_finish(b, ID_BINTERNAL, "backend builtin: cannot encrypt secret %s",
			   b->ref.name);
		return;
	}
	put_insert(b, k->id, nonce, sizeof(nonce), ct, ctlen);
	free(ct);
}

static void put_next(struct bop *b)
{
	const char *params[2] = {b->ref.tenant, b->ref.name};

	if (sw_store_query(b->env->store,
			   "SELECT coalesce(max(version), 0) + 1 FROM versions"
			   " WHERE tenant = $1 AND name = $2",
			   2, params, put_version_cb, b) == -1)
		bop_finish(b, ID_BINTERNAL, "backend builtin: cannot queue the write of secret %s",
			   b->ref.name);
}

/* Vault answered (written version, or the reference's current one). */
static void put_vault_cb(struct id_env *env, const struct id_bvalue *v, void *opaque)
{
	struct bop *b = opaque;

	(void)env;
	if (v->err != ID_BOK) {
		b->out = *v;
		b->out.value = NULL;
		b->cb(b->env, &b->out, b->opaque);
		bop_free(b);
		return;
	}
	b->version = v->version;
	if (b->value == NULL) /* a reference: the MAC of what Vault holds */
		memcpy(b->out.mac, v->mac, ID_MAC_BYTES);
	put_insert(b, NULL, NULL, 0, NULL, 0);
}

int id_backend_put(struct id_env *env, const struct id_secret_ref *ref, const uint8_t *value,
		   size_t len, id_bvalue_cb cb, void *opaque)
{
	struct bop *b;
	int rc;

	if ((b = bop_new(env, ref, 0, cb, opaque)) == NULL)
		return -1;
	if (value != NULL) {
		if ((b->value = id_secure_dup(value, len)) == NULL) {
			free(b);
			return -1;
		}
		b->len = len;
		id_mac(env, value, len, b->out.mac);
	}
	if (strcmp(ref->backend, "vault") != 0) {
		if (value == NULL) {
			bop_free(b);
			return -1;
		}
		put_next(b);
		return 0;
	}
	if (env->vault == NULL) {
		bop_free(b);
		return -1;
	}
	rc = value != NULL ? id_vault_call(env, ID_VWRITE, ref, 0, value, len, put_vault_cb, b)
			   : id_vault_call(env, ID_VREAD, ref, 0, NULL, 0, put_vault_cb, b);
	if (rc == -1) {
		bop_free(b);
		return -1;
	}
	return 0;
}

/* ---- destroy -------------------------------------------------------------- */

static void destroy_later(evutil_socket_t fd, short what, void *opaque)
{
	(void)fd;
	(void)what;
	bop_finish(opaque, ID_BOK, NULL);
}

int id_backend_destroy(struct id_env *env, const struct id_secret_ref *ref, id_bvalue_cb cb,
		       void *opaque)
{
	struct timeval tv = {0, 0};
	struct bop *b;

	if ((b = bop_new(env, ref, 0, cb, opaque)) == NULL)
		return -1;
	/* builtin: the caller wipes the rows; a reference is the operator's */
	if (strcmp(ref->backend, "vault") != 0 || ref->vault_path[0] != '\0') {
		if (event_base_once(env->base, -1, EV_TIMEOUT, destroy_later, b, &tv) == -1) {
			free(b);
			return -1;
		}
		return 0;
	}
	if (env->vault == NULL ||
	    id_vault_call(env, ID_VDELETE, ref, 0, NULL, 0, vault_relay, b) == -1) {
		free(b);
		return -1;
	}
	return 0;
}

/* ---- rekey ---------------------------------------------------------------- */

struct rekey {
	struct id_env *env;
	long long rows;
	id_rekey_cb cb;
	void *opaque;
};

static void rekey_batch(struct rekey *r);

static void rekey_fail(struct rekey *r, const char *err)
{
	r->cb(r->env, r->rows, err, r->opaque);
	free(r);
}

static void rekey_update_cb(PGresult *res, const char *err, void *opaque)
{
	struct rekey *r = opaque;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "rekey update failed", "error", err, NULL);
		rekey_fail(r, "database error while re-encrypting");
		return;
	}
	r->rows += atoll(PQcmdTuples(res));
	rekey_batch(r);
}

static void rekey_rows_cb(PGresult *res, const char *err, void *opaque)
{
	struct rekey *r = opaque;
	struct id_env *env = r->env;
	const struct id_mkey *k = id_mkey_current(env);
	struct sw_buf cols[6] = {0};
	const char *params[7];
	char why[320], num[16];
	int i, n, c;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "rekey read failed", "error", err, NULL);
		rekey_fail(r, "database error while reading rows to re-encrypt");
		return;
	}
	if ((n = PQntuples(res)) == 0) {
		r->cb(env, r->rows, NULL, r->opaque);
		free(r);
		return;
	}
	for (c = 0; c < 6; c++)
		sw_buf_add(&cols[c], "{", 1);
	for (i = 0; i < n; i++) {
		const char *tenant = PQgetvalue(res, i, 0), *name = PQgetvalue(res, i, 1);
		const char *old = PQgetvalue(res, i, 3);
		int version = atoi(PQgetvalue(res, i, 2));
		uint8_t *nonce = NULL, *ct = NULL, *pt = NULL, nn[24], *nct = NULL;
		size_t nlen, ctlen, ptlen, nctlen;
		char *hn, *hc;

		if (id_pg_bytea(PQgetvalue(res, i, 4), &nonce, &nlen) == -1 || nlen != 24 ||
		    id_pg_bytea(PQgetvalue(res, i, 5), &ct, &ctlen) == -1) {
			free(nonce);
			snprintf(why, sizeof(why), "secret %s v%d (scope %s): malformed row", name,
				 version, tenant);
			goto fail;
		}
		if (id_decrypt(env, old, tenant, name, version, nonce, ct, ctlen, &pt, &ptlen, why,
			       sizeof(why)) == -1) {
			free(nonce);
			free(ct);
			goto fail;
		}
		free(nonce);
		free(ct);
		if (id_encrypt(k, tenant, name, version, pt, ptlen, nn, &nct, &nctlen) == -1) {
			id_secure_free(pt);
			snprintf(why, sizeof(why), "out of memory");
			goto fail;
		}
		id_secure_free(pt);
		hn = sw_hex_dup(nn, sizeof(nn));
		hc = sw_hex_dup(nct, nctlen);
		free(nct);
		snprintf(num, sizeof(num), "%d", version);
		for (c = 0; c < 6; c++)
			if (i > 0)
				sw_buf_add(&cols[c], ",", 1);
		/* names and key ids are [a-z0-9_.-] / uuid: no quoting needed */
		sw_buf_printf(&cols[0], "\"%s\"", tenant);
		sw_buf_printf(&cols[1], "\"%s\"", name);
		sw_buf_puts(&cols[2], num);
		sw_buf_printf(&cols[3], "\"%s\"", old);
		sw_buf_printf(&cols[4], "\"%s\"", hn ? hn : "");
		sw_buf_printf(&cols[5], "\"%s\"", hc ? hc : "");
		free(hn);
		free(hc);
	}
	for (c = 0; c < 6; c++)
		sw_buf_add(&cols[c], "}", 1);
	for (c = 0; c < 6; c++)
		if (cols[c].oom) {
			snprintf(why, sizeof(why), "out of memory");
			goto fail;
		}
	params[0] = k->id;
	for (c = 0; c < 6; c++)
		params[c + 1] = cols[c].p;
	if (sw_store_query(env->store,
			   "UPDATE versions v SET key_id = $1, nonce = decode(u.nonce, 'hex'),"
			   " ct = decode(u.ct, 'hex'), changed = now()"
			   " FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::text[],"
			   "  $7::text[]) AS u(tenant, name, version, old, nonce, ct)"
			   " WHERE v.tenant = u.tenant AND v.name = u.name AND v.version = u.version"
			   " AND v.key_id = u.old AND v.ct IS NOT NULL",
			   7, params, rekey_update_cb, r) == -1) {
		snprintf(why, sizeof(why), "cannot queue the update");
		goto fail;
	}
	for (c = 0; c < 6; c++)
		sw_buf_free(&cols[c]);
	return;
fail:
	for (c = 0; c < 6; c++)
		sw_buf_free(&cols[c]);
	sw_log(SW_LOG_ERROR, "rekey stopped", "error", why, NULL);
	rekey_fail(r, why);
}

static void rekey_batch(struct rekey *r)
{
	const char *params[1] = {id_mkey_current(r->env)->id};

	if (sw_store_query(r->env->store,
			   "SELECT tenant, name, version, key_id, nonce, ct FROM versions"
			   " WHERE ct IS NOT NULL AND key_id <> $1"
			   " ORDER BY tenant, name, version LIMIT 64",
			   1, params, rekey_rows_cb, r) == -1)
		rekey_fail(r, "cannot queue the read");
}

int id_backend_rekey(struct id_env *env, id_rekey_cb cb, void *opaque)
{
	struct rekey *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return -1;
	r->env = env;
	r->cb = cb;
	r->opaque = opaque;
	rekey_batch(r);
	return 0;
}
