/*
 * tenants.c: who is asking.
 *
 * single_org: every request is tenant "default", no authentication.
 * multi_tenant: "Authorization: Bearer <key>"; the key's SHA-256 is looked
 * up in tenants.key_hash (positive answers cached in memory: a tenant's key
 * never changes). No key or an unknown one is 401.
 *
 * POST /v1/tenants {"name"} with the operator's SAGEWAI_ADMIN_TOKEN creates
 * a tenant and shows its key once: "swk_" + base64url of 32 random bytes.
 * Only its hash is stored. Keys and tokens never reach a log line.
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

struct tcache_entry {
	uint8_t hash[crypto_hash_sha256_BYTES];
	char tenant[128];
};

struct sched_tenant_cache {
	struct tcache_entry e[TCACHE_SIZE];
	size_t n;
};

int sched_tenant_name_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return 0;
	for (i = 1; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
		      s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

static const char *tcache_find(struct sched_env *env, const uint8_t *hash)
{
	struct sched_tenant_cache *c = env->tcache;
	size_t i;

	if (c == NULL)
		return NULL;
	for (i = 0; i < c->n; i++)
		if (sodium_memcmp(c->e[i].hash, hash, sizeof(c->e[i].hash)) == 0)
			return c->e[i].tenant;
	return NULL;
}

static void tcache_put(struct sched_env *env, const uint8_t *hash, const char *tenant)
{
	struct sched_tenant_cache *c = env->tcache;

	if (c == NULL && (c = env->tcache = calloc(1, sizeof(*c))) == NULL)
		return;
	if (c->n == TCACHE_SIZE)
		c->n = 0;
	memcpy(c->e[c->n].hash, hash, sizeof(c->e[c->n].hash));
	snprintf(c->e[c->n].tenant, sizeof(c->e[c->n].tenant), "%s", tenant);
	c->n++;
}

void sched_tenants_free(struct sched_env *env)
{
	if (env->tcache != NULL)
		sodium_memzero(env->tcache, sizeof(*env->tcache));
	free(env->tcache);
	env->tcache = NULL;
}

/* The Bearer value of the request, copied into out; -1 when missing or
 * malformed. */
static int bearer(struct evhttp_request *req, char *out, size_t outlen)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	size_t n;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return -1;
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	while (n > 0 && h[n - 1] == ' ')
		n--;
	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, h, n);
	out[n] = '\0';
	return 0;
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
	const char *tenant = NULL;

	if (err != NULL) {
		sw_http_reply_error(a->req, 503, "unavailable", "tenant lookup failed");
		sw_log(SW_LOG_ERROR, "tenant lookup failed", "error", err, NULL);
	} else if (PQntuples(res) != 1) {
		sw_http_reply_error(a->req, 401, "unauthorized", "unknown API key");
	} else {
		tenant = PQgetvalue(res, 0, 0);
		tcache_put(a->env, a->hash, tenant);
	}
	a->cont(a->env, a->req, tenant, a->opaque);
	sodium_memzero(a->hash, sizeof(a->hash));
	free(a);
}

void sched_auth(struct sched_env *env, struct evhttp_request *req, sched_auth_cb cont,
		void *opaque)
{
	char key[KEY_MAX], hexhash[2 * crypto_hash_sha256_BYTES + 3];
	uint8_t hash[crypto_hash_sha256_BYTES];
	const char *tenant, *params[1];
	struct auth_req *a;

	if (!env->multi_tenant) {
		cont(env, req, "default", opaque);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
	if (bearer(req, key, sizeof(key)) == -1) {
		sw_http_reply_error(req, 401, "unauthorized",
				    "an API key is required: Authorization: Bearer <key>");
		cont(env, req, NULL, opaque);
		return;
	}
	crypto_hash_sha256(hash, (const uint8_t *)key, strlen(key));
	sodium_memzero(key, sizeof(key));
	if ((tenant = tcache_find(env, hash)) != NULL) {
		cont(env, req, tenant, opaque);
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		cont(env, req, NULL, opaque);
		return;
	}
	a->env = env;
	a->req = req;
	a->cont = cont;
	a->opaque = opaque;
	memcpy(a->hash, hash, sizeof(hash));
	hexhash[0] = '\\';
	hexhash[1] = 'x';
	sw_hex_encode(hash, sizeof(hash), hexhash + 2);
	params[0] = hexhash;
	if (sw_store_query(env->store, "SELECT name FROM tenants WHERE key_hash = $1::bytea", 1,
			   params, auth_cb, a) == -1) {
		free(a);
		sw_http_reply_error(req, 503, "unavailable", "tenant lookup failed");
		cont(env, req, NULL, opaque);
	}
}

/* ---- POST /v1/tenants -------------------------------------------------- */

struct create_req {
	struct evhttp_request *req;
	char name[64];
	char key[8 + 64];
};

static void create_cb(PGresult *res, const char *err, void *opaque)
{
	struct create_req *c = opaque;

	if (err != NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "tenant creation failed");
		sw_log(SW_LOG_ERROR, "tenant creation failed", "error", err, NULL);
	} else if (PQntuples(res) != 1 || PQgetvalue(res, 0, 0)[0] != 't') {
		/* only if its key_hash is ours (a resent insert) is it new to us */
		sw_http_reply_error(c->req, 409, "conflict", "tenant '%s' exists", c->name);
	} else {
		sw_http_reply_json(c->req, 201,
				   json_pack("{s:s, s:s}", "name", c->name, "api_key", c->key));
		sw_log(SW_LOG_INFO, "tenant created", "tenant", c->name, NULL);
	}
	sodium_memzero(c->key, sizeof(c->key));
	free(c);
}

void sched_tenants_post(struct evhttp_request *req, void *arg)
{
	struct sched_env *env = arg;
	char token[KEY_MAX], hexhash[2 * crypto_hash_sha256_BYTES + 3];
	uint8_t raw[KEY_BYTES], hash[crypto_hash_sha256_BYTES];
	size_t tlen, alen = strlen(env->admin_token);
	const char *name, *params[2];
	struct create_req *c;
	json_t *body;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		sw_http_reply_method_not_allowed(req, "POST");
		return;
	}
	if (alen == 0) {
		sw_http_reply_error(req, 403, "forbidden",
				    "tenant administration is disabled (no SAGEWAI_ADMIN_TOKEN)");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
	if (bearer(req, token, sizeof(token)) == -1 || (tlen = strlen(token)) != alen ||
	    sodium_memcmp(token, env->admin_token, alen) != 0) {
		sodium_memzero(token, sizeof(token));
		sw_http_reply_error(req, 401, "unauthorized",
				    "the operator's admin token is required");
		return;
	}
	sodium_memzero(token, sizeof(token));
	if ((body = sw_http_body_json(req)) == NULL)
		return;
	name = json_string_value(json_object_get(body, "name"));
	if (!json_is_object(body) || name == NULL || !sched_tenant_name_valid(name)) {
		json_decref(body);
		sw_http_reply_error(req, 400, "bad_request",
				    "body must be {\"name\": NAME}, NAME matching "
				    "[a-z0-9][a-z0-9_-]{0,62}");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		json_decref(body);
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return;
	}
	c->req = req;
	snprintf(c->name, sizeof(c->name), "%s", name);
	json_decref(body);
	randombytes_buf(raw, sizeof(raw));
	memcpy(c->key, "swk_", 4);
	sodium_bin2base64(c->key + 4, sizeof(c->key) - 4, raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	crypto_hash_sha256(hash, (const uint8_t *)c->key, strlen(c->key));
	hexhash[0] = '\\';
	hexhash[1] = 'x';
	sw_hex_encode(hash, sizeof(hash), hexhash + 2);
	params[0] = c->name;
	params[1] = hexhash;
	/* idempotent: a resent insert finds its own row (same hash) */
	if (sw_store_query(
		env->store,
		"WITH ins AS (INSERT INTO tenants (name, key_hash) VALUES ($1, $2::bytea)"
		" ON CONFLICT DO NOTHING RETURNING 1)"
		" SELECT EXISTS (SELECT 1 FROM ins) OR EXISTS (SELECT 1 FROM tenants"
		"  WHERE name = $1 AND key_hash = $2::bytea)",
		2, params, create_cb, c) == -1) {
		sodium_memzero(c->key, sizeof(c->key));
		free(c);
		sw_http_reply_error(req, 503, "unavailable", "tenant creation failed");
	}
}
