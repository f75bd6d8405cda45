/*
 * tenants.c: who is asking, and the tenants and keys themselves.
 *
 * A tenant is an immutable id (UUIDv7) and a name, a label unique among
 * live tenants. Runs and workflows belong to the id, so a new tenant that
 * takes a deleted tenant's name sees nothing of it. single_org mode has one
 * tenant whose id is "default" (a name no tenant may take). A key acts for
 * its tenant and, when it belongs to one, for a user (users.c): runs
 * submitted with it record that user.
 *
 * single_org: every request is tenant "default"; no key is needed, but a
 * Bearer key, when given, must be a live key of tenant "default" (its user
 * is then the submitting user) -- anything else is 401.
 * multi_tenant: "Authorization: Bearer <key>"; the key's SHA-256 is looked
 * up among the live keys of role tenant of live tenants (apikeys). Positive
 * answers are cached for SCHED_TCACHE_TTL_MS; a deletion here empties the
 * cache at once, one made by another instance takes effect within the TTL.
 * No key, an unknown, revoked or auditor key is 401.
 *
 * With the operator's SAGEWAI_ADMIN_TOKEN:
 *   POST   /v1/tenants {"name"}       a tenant and its key (shown once)
 *   DELETE /v1/tenants/{id or name}   delete it: every key revoked at once,
 *                                     its users deleted; its runs and audit
 *                                     trail are kept
 *   POST   /v1/keys {"role": "auditor"}  an auditor key (audit API only)
 *   POST   /v1/keys {"tenant": REF, "user": NAME}  a key of the tenant
 *                                     (REF: id, name, or "default" in
 *                                     single_org mode), of one of its users
 *                                     when "user" is given
 *   /v1/tenants/{ref}/users...        users.c
 * A key is "swk_" + base64url of 32 random bytes; only its SHA-256 is
 * stored. Each change commits with its events (tenant.created,
 * tenant.deleted, apikey.created, apikey.revoked, user.* on
 * sagewai.tenants) through the outbox, so the audit and identity services
 * learn the key hashes from events, never from these tables. Keys and
 * tokens never reach a log line.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <event2/keyvalq_struct.h>

#include "scheduler.h"

#define TCACHE_SIZE 1024 /* entries; a full cache starts over */
#define KEY_BYTES 32
#define KEY_MAX 128 /* longest Bearer value accepted */
#define SCHED_TCACHE_TTL_MS 2000 /* a cached key is trusted this long */

struct tcache_entry {
	uint8_t hash[crypto_hash_sha256_BYTES];
	char tenant[128]; /* its tenant's id */
	char user[SCHED_NAME_MAX]; /* its user's name, "" for a tenant-wide key */
	int64_t until_ms; /* sw_mono_ms after which it is looked up again */
};

struct sched_tenant_cache {
	struct tcache_entry e[TCACHE_SIZE];
	size_t n;
};

int sched_tenant_name_valid(const char *s)
{
	size_t i, n = strlen(s);

	/* "default" is single_org's tenant; a UUID-shaped name would read as an id */
	if (strcmp(s, SCHED_SINGLE_TENANT) == 0 || sched_uuid_valid(s))
		return 0;
	if (n == 0 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return 0;
	for (i = 1; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
		      s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

static const struct tcache_entry *tcache_find(struct sched_env *env, const uint8_t *hash)
{
	struct sched_tenant_cache *c = env->tcache;
	size_t i;

	if (c == NULL)
		return NULL;
	for (i = 0; i < c->n; i++)
		if (sodium_memcmp(c->e[i].hash, hash, sizeof(c->e[i].hash)) == 0)
			return c->e[i].until_ms > sw_mono_ms() ? &c->e[i] : NULL;
	return NULL;
}

static void tcache_put(struct sched_env *env, const uint8_t *hash, const char *tenant,
		       const char *user)
{
	struct sched_tenant_cache *c = env->tcache;
	size_t i;

	if (c == NULL && (c = env->tcache = calloc(1, sizeof(*c))) == NULL)
		return;
	if (c->n == TCACHE_SIZE)
		c->n = 0;
	for (i = 0; i < c->n; i++)
		if (sodium_memcmp(c->e[i].hash, hash, sizeof(c->e[i].hash)) == 0)
			break;
	memcpy(c->e[i].hash, hash, sizeof(c->e[i].hash));
	snprintf(c->e[i].tenant, sizeof(c->e[i].tenant), "%s", tenant);
	snprintf(c->e[i].user, sizeof(c->e[i].user), "%s", user);
	c->e[i].until_ms = sw_mono_ms() + SCHED_TCACHE_TTL_MS;
	if (i == c->n)
		c->n++;
}

void sched_tcache_clear(struct sched_env *env)
{
	if (env->tcache != NULL)
		sodium_memzero(env->tcache, sizeof(*env->tcache));
}

void sched_tenants_free(struct sched_env *env)
{
	if (env->tcache != NULL)
		sodium_memzero(env->tcache, sizeof(*env->tcache));
	free(env->tcache);
	env->tcache = NULL;
}

struct auth_req {
	struct sched_env *env;
	struct evhttp_request *req;
	sched_auth_cb cont;
	void *opaque;
	uint8_t hash[crypto_hash_sha256_BYTES];
};

static void auth_cb(PGresult *res, const char *err, void *opaque)
{
	struct auth_req *a = opaque;
	const char *tenant = NULL, *user = NULL;

	if (err != NULL) {
		sw_http_reply_error(a->req, 503, "unavailable", "tenant lookup failed");
		sw_log(SW_LOG_ERROR, "tenant lookup failed", "error", err, NULL);
	} else if (PQntuples(res) != 1) {
		sw_http_reply_error(a->req, 401, "unauthorized", "unknown API key");
	} else {
		tenant = PQgetvalue(res, 0, 0);
		user = PQgetvalue(res, 0, 1);
		tcache_put(a->env, a->hash, tenant, user);
	}
	a->cont(a->env, a->req, tenant, user, a->opaque);
	sodium_memzero(a->hash, sizeof(a->hash));
	free(a);
}

void sched_auth(struct sched_env *env, struct evhttp_request *req, sched_auth_cb cont,
		void *opaque)
{
	char key[KEY_MAX], hexhash[SW_AUTH_HASH_LITERAL];
	uint8_t hash[SW_AUTH_HASH_BYTES];
	const struct tcache_entry *e;
	const char *params[1];
	struct auth_req *a;
	int b = sw_auth_bearer(req, key, sizeof(key));

	if (!env->multi_tenant && b == 1) {
		cont(env, req, SCHED_SINGLE_TENANT, "", opaque);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
	if (b != 0) {
		sw_http_reply_error(req, 401, "unauthorized",
				    env->multi_tenant
					? "an API key is required: Authorization: Bearer <key>"
					: "malformed Authorization header: Bearer <key> expected");
		cont(env, req, NULL, NULL, opaque);
		return;
	}
	sw_auth_key_hash(key, hash, hexhash);
	sodium_memzero(key, sizeof(key));
	if ((e = tcache_find(env, hash)) != NULL) {
		cont(env, req, e->tenant, e->user, opaque);
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		cont(env, req, NULL, NULL, opaque);
		return;
	}
	a->env = env;
	a->req = req;
	a->cont = cont;
	a->opaque = opaque;
	memcpy(a->hash, hash, sizeof(hash));
	params[0] = hexhash;
	/* multi_tenant: a live key of a live tenant ("default" has no row, so
	 * its keys never pass); single_org: a live key of "default" */
	if (sw_store_query(env->store,
			   env->multi_tenant
				   ? "SELECT k.tenant_id, k.user_name FROM apikeys k JOIN tenants t"
				     " ON t.id = CASE WHEN k.tenant_id = 'default' THEN NULL"
				     "  ELSE k.tenant_id::uuid END"
				     " WHERE k.key_hash = $1::bytea AND k.role = 'tenant'"
				     " AND k.revoked IS NULL AND t.deleted IS NULL"
				   : "SELECT k.tenant_id, k.user_name FROM apikeys k"
				     " WHERE k.key_hash = $1::bytea AND k.role = 'tenant'"
				     " AND k.revoked IS NULL AND k.tenant_id = 'default'",
			   1, params, auth_cb, a) == -1) {
		free(a);
		sw_http_reply_error(req, 503, "unavailable", "tenant lookup failed");
		cont(env, req, NULL, NULL, opaque);
	}
}

/* ---- administration: the operator's token ------------------------------ */

int sched_admin_check(struct sched_env *env, struct evhttp_request *req)
{
	char token[KEY_MAX];
	size_t alen = strlen(env->admin_token);
	int ok;

	if (alen == 0) {
		sw_http_reply_error(req, 403, "forbidden",
				    "tenant administration is disabled (no SAGEWAI_ADMIN_TOKEN)");
		return -1;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
	ok = sw_auth_credential(req, env->admin_token, token, sizeof(token)) == SW_AUTH_ADMIN;
	sodium_memzero(token, sizeof(token));
	if (!ok) {
		sw_http_reply_error(req, 401, "unauthorized",
				    "the operator's admin token is required");
		return -1;
	}
	return 0;
}

/* A fresh key into key ("swk_" + base64url of KEY_BYTES random bytes) and
 * its SHA-256 as hex (hexhash) and as the bytea literal (byteahash). */
static void key_new(char *key, size_t keylen, char hexhash[2 * crypto_hash_sha256_BYTES + 1],
		    char byteahash[2 * crypto_hash_sha256_BYTES + 3])
{
	uint8_t raw[KEY_BYTES], hash[crypto_hash_sha256_BYTES];

	randombytes_buf(raw, sizeof(raw));
	memcpy(key, "swk_", 4);
	sodium_bin2base64(key + 4, keylen - 4, raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	sw_auth_key_hash(key, hash, byteahash);
	sw_hex_encode(hash, sizeof(hash), hexhash);
}

struct sched_admin *sched_admin_new(struct sched_env *env, struct evhttp_request *req)
{
	struct sched_admin *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return NULL;
	}
	c->env = env;
	c->req = req;
	return c;
}

void sched_admin_free(struct sched_admin *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nev; i++)
		sched_event_clear(&c->ev[i]);
	free(c->ev);
	free(c->keys);
	sodium_memzero(c->key, sizeof(c->key));
	free(c);
}

int sched_admin_event(struct sched_admin *c, const char *type, const char *tenant,
		      const char *key, json_t *fields)
{
	struct sched_env *env = c->env;
	struct sw_event_header h;
	struct sched_event *ev;
	char err[256];
	int rc;

	if (c->nev == c->capev) {
		size_t cap = c->capev ? c->capev * 2 : 4;
		struct sched_event *p;

		if (cap > SCHED_OUTBOX_MAX || (p = realloc(c->ev, cap * sizeof(*p))) == NULL) {
			json_decref(fields);
			sw_log(SW_LOG_ERROR, "cannot encode a tenant event", "type", type, "error",
			       "more events than one transaction holds", NULL);
			return -1;
		}
		c->ev = p;
		c->capev = cap;
	}
	ev = &c->ev[c->nev];
	memset(ev, 0, sizeof(*ev));
	sw_event_header_init(&h, type, SCHED_PRODUCER);
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	rc = fields == NULL ? -1
			    : sw_event_encode(env->reg, type, &h, fields, &ev->buf, &ev->len, err,
					      sizeof(err));
	json_decref(fields);
	if (rc == -1) {
		sw_log(SW_LOG_ERROR, "cannot encode a tenant event", "type", type, "error",
		       fields == NULL ? "out of memory" : err, NULL);
		return -1;
	}
	snprintf(ev->id, sizeof(ev->id), "%s", h.event_id);
	ev->topic = SCHED_TOPIC_TENANTS;
	snprintf(ev->key, sizeof(ev->key), "%s", key);
	c->nev++;
	return 0;
}

int sched_admin_commit(struct sched_admin *c, struct sched_tx *t, sw_store_cb cb)
{
	int rc = -1;

	sched_tx_outbox(t, c->ev, c->nev);
	if (!t->oom && sw_store_tx(c->env->store, t->st, t->n, cb, c) == 0)
		rc = 0;
	sched_tx_free(t);
	return rc;
}

/* ---- tenant references ----------------------------------------------------- */

struct ref_read {
	struct sched_admin *c;
	sched_admin_cb cont;
};

static void ref_cb(PGresult *res, const char *err, void *opaque)
{
	struct ref_read *r = opaque;
	struct sched_admin *c = r->c;
	sched_admin_cb cont = r->cont;

	free(r);
	if (err != NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "tenant lookup failed");
		sw_log(SW_LOG_ERROR, "tenant lookup failed", "error", err, NULL);
		sched_admin_free(c);
		return;
	}
	if (PQntuples(res) != 1) {
		sw_http_reply_error(c->req, 404, "not_found", "no such tenant");
		sched_admin_free(c);
		return;
	}
	snprintf(c->tenant_id, sizeof(c->tenant_id), "%s", PQgetvalue(res, 0, 0));
	snprintf(c->tenant_name, sizeof(c->tenant_name), "%s", PQgetvalue(res, 0, 1));
	cont(c);
}

void sched_admin_tenant(struct sched_admin *c, const char *ref, sched_admin_cb cont)
{
	struct ref_read *r;
	const char *params[1] = {ref};

	if (strcmp(ref, SCHED_SINGLE_TENANT) == 0 && !c->env->multi_tenant) {
		snprintf(c->tenant_id, sizeof(c->tenant_id), "%s", SCHED_SINGLE_TENANT);
		snprintf(c->tenant_name, sizeof(c->tenant_name), "%s", SCHED_SINGLE_TENANT);
		cont(c);
		return;
	}
	if (!(sched_uuid_valid(ref) || sched_tenant_name_valid(ref))) {
		sw_http_reply_error(c->req, 404, "not_found", "no such tenant");
		sched_admin_free(c);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "out of memory");
		sched_admin_free(c);
		return;
	}
	r->c = c;
	r->cont = cont;
	/* a UUID-shaped reference is an id (no name has that shape) */
	if (sw_store_query(c->env->store,
			   sched_uuid_valid(ref)
				   ? "SELECT id::text, name FROM tenants"
				     " WHERE deleted IS NULL AND id = $1::uuid"
				   : "SELECT id::text, name FROM tenants"
				     " WHERE deleted IS NULL AND name = $1",
			   1, params, ref_cb, r) == -1) {
		free(r);
		sw_http_reply_error(c->req, 503, "unavailable", "tenant lookup failed");
		sched_admin_free(c);
	}
}

/* ---- POST /v1/tenants -------------------------------------------------- */

static void create_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;

	/* a duplicate primary key is our own transaction, resent after a
	 * reconnect although it had committed (the ids are fresh) */
	if (err != NULL && strncmp(err, "23505", 5) == 0 && strstr(err, "tenants_live_name")) {
		sw_http_reply_error(c->req, 409, "conflict", "tenant '%s' exists", c->name);
	} else if (err != NULL && !(strncmp(err, "23505", 5) == 0 && strstr(err, "_pkey"))) {
		sw_http_reply_error(c->req, 503, "unavailable", "tenant creation failed");
		sw_log(SW_LOG_ERROR, "tenant creation failed", "error", err, NULL);
	} else {
		if (err == NULL)
			sched_outbox_committed(c->env, res, c->ev, c->nev);
		sw_http_reply_json(c->req, 201,
				   json_pack("{s:s, s:s, s:s, s:s}", "id", c->tenant_id, "name",
					     c->name, "key_id", c->key_id, "api_key", c->key));
		sw_log(SW_LOG_INFO, "tenant created", "tenant", c->tenant_id, "name", c->name,
		       NULL);
	}
	sched_admin_free(c);
}

void sched_tenants_post(struct evhttp_request *req, void *arg)
{
	struct sched_env *env = arg;
	char hexhash[2 * crypto_hash_sha256_BYTES + 1], bhash[2 * crypto_hash_sha256_BYTES + 3];
	struct sched_tx t = {0};
	struct sched_admin *c;
	const char *name;
	json_t *body;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		sw_http_reply_method_not_allowed(req, "POST");
		return;
	}
	if (sched_admin_check(env, req) == -1 || (body = sw_http_body_json(req)) == NULL)
		return;
	name = json_string_value(json_object_get(body, "name"));
	if (!json_is_object(body) || name == NULL || !sched_tenant_name_valid(name)) {
		json_decref(body);
		sw_http_reply_error(req, 400, "bad_request",
				    "body must be {\"name\": NAME}, NAME matching "
				    "[a-z0-9][a-z0-9_-]{0,62}, not \"default\" (single_org's) "
				    "and not shaped like a UUID (an id)");
		return;
	}
	if ((c = sched_admin_new(env, req)) == NULL) {
		json_decref(body);
		return;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	json_decref(body);
	sw_uuid_v7_str(c->tenant_id);
	sw_uuid_v7_str(c->key_id);
	key_new(c->key, sizeof(c->key), hexhash, bhash);
	if (sched_admin_event(c, "tenant.created", c->tenant_id, c->tenant_id,
			      json_pack("{s:s, s:s}", "tenant_id", c->tenant_id, "name",
					c->name)) == -1 ||
	    sched_admin_event(c, "apikey.created", c->tenant_id, c->tenant_id,
			      json_pack("{s:s, s:s, s:s, s:s, s:s}", "key_id", c->key_id,
					"tenant_id", c->tenant_id, "role", "TENANT", "key_sha256",
					hexhash, "user", "")) == -1)
		goto fail;
	sched_tx_add(&t, "INSERT INTO tenants (id, name) VALUES ($1::uuid, $2)", 2, c->tenant_id,
		     c->name);
	sched_tx_add(&t,
		     "INSERT INTO apikeys (id, tenant_id, role, key_hash)"
		     " VALUES ($1::uuid, $2, 'tenant', $3::bytea)",
		     3, c->key_id, c->tenant_id, sched_tx_fmt(&t, "%s", bhash));
	if (sched_admin_commit(c, &t, create_cb) == 0)
		return;
fail:
	sched_tx_free(&t);
	sched_admin_free(c);
	sw_http_reply_error(req, 503, "unavailable", "tenant creation failed");
}

/* ---- POST /v1/keys ------------------------------------------------------ */

static void key_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;

	if (err != NULL && strncmp(err, "SWGON", 5) == 0) {
		sw_http_reply_error(c->req, 404, "not_found", "no such tenant");
	} else if (err != NULL && strncmp(err, "SWNOU", 5) == 0) {
		sw_http_reply_error(c->req, 404, "not_found", "tenant %s has no user '%s'",
				    c->tenant_name, c->user);
	} else if (err != NULL && strncmp(err, "SWMAX", 5) == 0) {
		sw_http_reply_error(c->req, 409, "conflict",
				    "tenant %s has %d live keys, the most it may have; delete"
				    " users (their keys go with them) first",
				    c->tenant_name, SCHED_KEYS_MAX);
	} else if (err != NULL && !(strncmp(err, "23505", 5) == 0 && strstr(err, "_pkey"))) {
		sw_http_reply_error(c->req, 503, "unavailable", "key creation failed");
		sw_log(SW_LOG_ERROR, "key creation failed", "error", err, NULL);
	} else {
		if (err == NULL)
			sched_outbox_committed(c->env, res, c->ev, c->nev);
		if (c->auditor) {
			sw_http_reply_json(c->req, 201,
					   json_pack("{s:s, s:s, s:s}", "key_id", c->key_id,
						     "role", "auditor", "api_key", c->key));
			sw_log(SW_LOG_INFO, "auditor key created", "key_id", c->key_id, NULL);
		} else {
			sw_http_reply_json(c->req, 201,
					   json_pack("{s:s, s:s, s:s, s:s, s:s}", "key_id",
						     c->key_id, "role", "tenant", "api_key", c->key,
						     "tenant_id", c->tenant_id, "user", c->user));
			sw_log(SW_LOG_INFO, "key created", "key_id", c->key_id, "tenant",
			       c->tenant_id, "user", c->user, NULL);
		}
	}
	sched_admin_free(c);
}

/* The tenant (and its user) exist: the key, guarded by key_guard. */
static void key_tenant(struct sched_admin *c)
{
	char hexhash[2 * crypto_hash_sha256_BYTES + 1], bhash[2 * crypto_hash_sha256_BYTES + 3];
	struct sched_tx t = {0};

	sw_uuid_v7_str(c->key_id);
	key_new(c->key, sizeof(c->key), hexhash, bhash);
	if (sched_admin_event(c, "apikey.created", c->tenant_id, c->tenant_id,
			      json_pack("{s:s, s:s, s:s, s:s, s:s}", "key_id", c->key_id,
					"tenant_id", c->tenant_id, "role", "TENANT", "key_sha256",
					hexhash, "user", c->user)) == -1)
		goto fail;
	sched_tx_add(&t, "SELECT key_guard($1, $2, $3::int)", 3, c->tenant_id, c->user,
		     sched_tx_fmt(&t, "%d", SCHED_KEYS_MAX));
	sched_tx_add(&t,
		     "INSERT INTO apikeys (id, tenant_id, role, key_hash, user_name)"
		     " VALUES ($1::uuid, $2, 'tenant', $3::bytea, $4)",
		     4, c->key_id, c->tenant_id, sched_tx_fmt(&t, "%s", bhash), c->user);
	if (sched_admin_commit(c, &t, key_cb) == 0)
		return;
fail:
	sched_tx_free(&t);
	sw_http_reply_error(c->req, 503, "unavailable", "key creation failed");
	sched_admin_free(c);
}

static void key_auditor(struct sched_admin *c)
{
	char hexhash[2 * crypto_hash_sha256_BYTES + 1], bhash[2 * crypto_hash_sha256_BYTES + 3];
	struct sched_tx t = {0};

	c->auditor = 1;
	sw_uuid_v7_str(c->key_id);
	key_new(c->key, sizeof(c->key), hexhash, bhash);
	if (sched_admin_event(c, "apikey.created", "", c->key_id,
			      json_pack("{s:s, s:s, s:s, s:s, s:s}", "key_id", c->key_id,
					"tenant_id", "", "role", "AUDITOR", "key_sha256", hexhash,
					"user", "")) == -1)
		goto fail;
	sched_tx_add(&t,
		     "INSERT INTO apikeys (id, tenant_id, role, key_hash)"
		     " VALUES ($1::uuid, NULL, 'auditor', $2::bytea)",
		     2, c->key_id, sched_tx_fmt(&t, "%s", bhash));
	if (sched_admin_commit(c, &t, key_cb) == 0)
		return;
fail:
	sched_tx_free(&t);
	sw_http_reply_error(c->req, 503, "unavailable", "key creation failed");
	sched_admin_free(c);
}

void sched_keys_post(struct evhttp_request *req, void *arg)
{
	static const char usage[] =
		"body must be {\"role\": \"auditor\"} or {\"tenant\": ID-OR-NAME, \"user\": NAME"
		" (optional)}";
	struct sched_env *env = arg;
	struct sched_admin *c;
	const char *role, *tenant, *user, *k;
	char ref[128];
	json_t *body, *v;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		sw_http_reply_method_not_allowed(req, "POST");
		return;
	}
	if (sched_admin_check(env, req) == -1 || (body = sw_http_body_json(req)) == NULL)
		return;
	role = json_string_value(json_object_get(body, "role"));
	tenant = json_string_value(json_object_get(body, "tenant"));
	user = json_string_value(json_object_get(body, "user"));
	if (!json_is_object(body)) {
		sw_http_reply_error(req, 400, "bad_request", "%s", usage);
		goto out;
	}
	json_object_foreach(body, k, v) {
		if (strcmp(k, "role") != 0 && strcmp(k, "tenant") != 0 && strcmp(k, "user") != 0) {
			sw_http_reply_error(req, 400, "bad_request",
					    "unknown field \"%.64s\"; %s", k, usage);
			goto out;
		}
	}
	if (role != NULL && strcmp(role, "auditor") == 0 && json_object_size(body) == 1) {
		if ((c = sched_admin_new(env, req)) != NULL)
			key_auditor(c);
		goto out;
	}
	if (tenant == NULL || strlen(tenant) >= sizeof(ref) ||
	    (json_object_get(body, "user") != NULL &&
	     (user == NULL || !sched_user_name_valid(user))) ||
	    (role != NULL && strcmp(role, "tenant") != 0) ||
	    (json_object_get(body, "role") != NULL && role == NULL)) {
		sw_http_reply_error(req, 400, "bad_request",
				    "%s; a user's NAME matches [a-z0-9][a-z0-9_.-]{0,62}", usage);
		goto out;
	}
	if ((c = sched_admin_new(env, req)) == NULL)
		goto out;
	snprintf(c->user, sizeof(c->user), "%s", user ? user : "");
	snprintf(ref, sizeof(ref), "%s", tenant);
	json_decref(body);
	sched_admin_tenant(c, ref, key_tenant);
	return;
out:
	json_decref(body);
}

/* ---- DELETE /v1/tenants/{id or name} -------------------------------------- */

static void delete_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;

	if (err != NULL && strncmp(err, "SWGON", 5) == 0) {
		sw_http_reply_error(c->req, 404, "not_found", "no such tenant");
	} else if (err != NULL && strncmp(err, "SWREV", 5) == 0) {
		sw_http_reply_error(c->req, 409, "conflict",
				    "the tenant's keys changed meanwhile; try again");
	} else if (err != NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "tenant deletion failed");
		sw_log(SW_LOG_ERROR, "tenant deletion failed", "error", err, NULL);
	} else {
		sched_outbox_committed(c->env, res, c->ev, c->nev);
		/* no key of it may be trusted from the cache any longer */
		sched_tcache_clear(c->env);
		sw_http_reply_json(c->req, 200,
				   json_pack("{s:s, s:s, s:b, s:i}", "id", c->tenant_id, "name",
					     c->name, "deleted", 1, "keys_revoked", c->nkeys));
		sw_log(SW_LOG_INFO, "tenant deleted", "tenant", c->tenant_id, "name", c->name,
		       NULL);
	}
	sched_admin_free(c);
}

/* The tenant as read: id, name, its live key ids (comma-separated). Build
 * tenant.deleted and one apikey.revoked per key, then the guarded
 * transaction. */
static void delete_read_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;
	struct sched_tx t = {0};
	char *keys = NULL, *k, *save = NULL;

	if (err != NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "tenant lookup failed");
		sw_log(SW_LOG_ERROR, "tenant lookup failed", "error", err, NULL);
		goto out;
	}
	if (PQntuples(res) != 1) {
		sw_http_reply_error(c->req, 404, "not_found", "no such tenant");
		goto out;
	}
	snprintf(c->tenant_id, sizeof(c->tenant_id), "%s", PQgetvalue(res, 0, 0));
	snprintf(c->name, sizeof(c->name), "%s", PQgetvalue(res, 0, 1));
	if ((keys = strdup(PQgetvalue(res, 0, 2))) == NULL)
		goto fail;
	for (k = strtok_r(keys, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save))
		c->nkeys++;
	/* tenant.deleted first, then one apikey.revoked per key */
	if (sched_admin_event(c, "tenant.deleted", c->tenant_id, c->tenant_id,
			      json_pack("{s:s, s:s, s:i}", "tenant_id", c->tenant_id, "name",
					c->name, "keys_revoked", c->nkeys)) == -1)
		goto fail;
	strcpy(keys, PQgetvalue(res, 0, 2));
	for (k = strtok_r(keys, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save))
		if (sched_admin_event(c, "apikey.revoked", c->tenant_id, c->tenant_id,
				      json_pack("{s:s, s:s, s:s}", "key_id", k, "tenant_id",
						c->tenant_id, "reason", "tenant deleted")) == -1)
			goto fail;
	sched_tx_add(&t, "SELECT tenant_delete($1::uuid, $2::int)", 2, c->tenant_id,
		     sched_tx_fmt(&t, "%d", c->nkeys));
	free(keys);
	if (sched_admin_commit(c, &t, delete_cb) == 0)
		return;
	sw_http_reply_error(c->req, 503, "unavailable", "tenant deletion failed");
	sched_admin_free(c);
	return;
fail:
	sw_http_reply_error(c->req, 503, "unavailable", "tenant deletion failed");
out:
	free(keys);
	sched_tx_free(&t);
	sched_admin_free(c);
}

void sched_tenant_item(struct evhttp_request *req, void *arg)
{
	struct sched_env *env = arg;
	const char *rest = sw_http_path(req) + strlen("/v1/tenants/");
	const char *params[1];
	struct sched_admin *c;
	char *ref;

	if (strchr(rest, '/') != NULL) {
		sched_users_route(env, req, rest);
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_DELETE) {
		sw_http_reply_method_not_allowed(req, "DELETE");
		return;
	}
	if (sched_admin_check(env, req) == -1)
		return;
	if ((ref = evhttp_uridecode(rest, 0, NULL)) == NULL ||
	    !(sched_uuid_valid(ref) || sched_tenant_name_valid(ref))) {
		free(ref);
		sw_http_reply_error(req, 404, "not_found", "no such tenant");
		return;
	}
	if ((c = sched_admin_new(env, req)) == NULL) {
		free(ref);
		return;
	}
	params[0] = ref;
	/* a UUID-shaped reference is an id (no name has that shape) */
	if (sw_store_query(env->store,
			   sched_uuid_valid(ref)
				   ? "SELECT t.id::text, t.name, coalesce(string_agg(k.id::text, ','), '')"
				     " FROM tenants t LEFT JOIN apikeys k ON k.tenant_id = t.id::text"
				     "  AND k.revoked IS NULL"
				     " WHERE t.deleted IS NULL AND t.id = $1::uuid GROUP BY t.id"
				   : "SELECT t.id::text, t.name, coalesce(string_agg(k.id::text, ','), '')"
				     " FROM tenants t LEFT JOIN apikeys k ON k.tenant_id = t.id::text"
				     "  AND k.revoked IS NULL"
				     " WHERE t.deleted IS NULL AND t.name = $1 GROUP BY t.id",
			   1, params, delete_read_cb, c) == -1) {
		sched_admin_free(c);
		sw_http_reply_error(req, 503, "unavailable", "tenant lookup failed");
	}
	free(ref);
}

/* ---- start: announce what a migration made ------------------------------- */

static void announce_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;

	/* 22012: another instance announced it first (the guard divided by 0) */
	if (err != NULL && strncmp(err, "22012", 5) != 0)
		sw_log(SW_LOG_ERROR, "cannot announce a migrated tenant", "tenant", c->tenant_id,
		       "error", err, NULL);
	else if (err == NULL)
		sched_outbox_committed(c->env, res, c->ev, c->nev);
	sched_admin_free(c);
}

int sched_tenants_announce(struct sched_env *env, char *errstr, size_t errlen)
{
	PGresult *res;
	int i, n;

	/* a migrated tenant has exactly one key (v1 had one per tenant) */
	res = sw_store_exec_sync(
		env->store,
		"SELECT t.id::text, t.name, k.id::text, encode(k.key_hash, 'hex')"
		" FROM tenants t JOIN apikeys k ON k.tenant_id = t.id::text"
		" WHERE NOT t.announced AND NOT k.announced",
		0, NULL, errstr, errlen);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		struct sched_tx t = {0};
		struct sched_admin *c = calloc(1, sizeof(*c));

		if (c == NULL)
			break;
		c->env = env;
		snprintf(c->tenant_id, sizeof(c->tenant_id), "%s", PQgetvalue(res, i, 0));
		snprintf(c->key_id, sizeof(c->key_id), "%s", PQgetvalue(res, i, 2));
		if (sched_admin_event(c, "tenant.created", c->tenant_id, c->tenant_id,
				      json_pack("{s:s, s:s}", "tenant_id", c->tenant_id, "name",
						PQgetvalue(res, i, 1))) == -1 ||
		    sched_admin_event(c, "apikey.created", c->tenant_id, c->tenant_id,
				      json_pack("{s:s, s:s, s:s, s:s, s:s}", "key_id", c->key_id,
						"tenant_id", c->tenant_id, "role", "TENANT",
						"key_sha256", PQgetvalue(res, i, 3), "user",
						"")) == -1) {
			sched_admin_free(c);
			continue;
		}
		sched_tx_add(&t,
			     "WITH u AS (UPDATE tenants SET announced = true"
			     " WHERE id = $1::uuid AND NOT announced RETURNING 1)"
			     " SELECT 1 / (SELECT count(*)::int FROM u)",
			     1, c->tenant_id);
		sched_tx_add(&t, "UPDATE apikeys SET announced = true WHERE id = $1::uuid", 1,
			     c->key_id);
		if (sched_admin_commit(c, &t, announce_cb) == -1)
			sched_admin_free(c);
	}
	PQclear(res);
	return 0;
}
