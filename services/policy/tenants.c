/*
 * tenants.c: the tenants, API keys and users this service knows, learnt
 * from the scheduler's events on sagewai.tenants (never from its tables),
 * as the audit and identity services learn them:
 *
 *   tenant.created / tenant.deleted   names for ?tenant=NAME, and a deleted
 *                                     tenant's keys stop working
 *   apikey.created / apikey.revoked   the SHA-256 of each tenant key (and
 *                                     the user it belongs to); revoked is
 *                                     sticky, even when it arrives first
 *
 * Only events whose header names the scheduler as producer count (Kafka
 * ACLs must keep anyone else from producing to sagewai.tenants). Every
 * statement is an idempotent upsert.
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

struct tapply {
	pol_done_cb done;
	void *opaque;
	char type[64];
};

static void applied(PGresult *res, const char *err, void *opaque)
{
	struct tapply *t = opaque;

	(void)res;
	if (err != NULL)
		sw_log(SW_LOG_ERROR, "tenant event not applied", "type", t->type, "error", err,
		       NULL);
	t->done(t->opaque, err == NULL);
	free(t);
}

static const char *str(json_t *ev, const char *k)
{
	return json_string_value(json_object_get(ev, k));
}

void pol_tenants_apply(struct pol_env *env, json_t *ev, pol_done_cb done,
		      void *opaque)
{
	json_t *h = json_object_get(ev, "header");
	const char *type = str(h, "type"), *producer = str(h, "producer");
	const char *tenant = str(ev, "tenant_id"), *name = str(ev, "name");
	const char *key_id = str(ev, "key_id"), *role = str(ev, "role");
	const char *hash = str(ev, "key_sha256"), *user = str(ev, "user");
	const char *sql = NULL, *params[5];
	char bhash[70];
	struct tapply *t;
	int n = 0;

	if (type == NULL || producer == NULL || strcmp(producer, "sagewai-scheduler") != 0 ||
	    tenant == NULL) {
		sw_log(SW_LOG_WARN, "tenant event not from the scheduler ignored", "type",
		       type ? type : "", NULL);
		done(opaque, 1);
		return;
	}
	if (strcmp(type, "tenant.created") == 0 && name != NULL) {
		sql = "INSERT INTO tenants (id, name) VALUES ($1, $2)"
		      " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name";
		params[0] = tenant;
		params[1] = name;
		n = 2;
	} else if (strcmp(type, "tenant.deleted") == 0 && name != NULL) {
		sql = "INSERT INTO tenants (id, name, deleted) VALUES ($1, $2, true)"
		      " ON CONFLICT (id) DO UPDATE SET deleted = true";
		params[0] = tenant;
		params[1] = name;
		n = 2;
	} else if (strcmp(type, "apikey.created") == 0 && key_id != NULL && role != NULL &&
		   hash != NULL && strlen(hash) == 64) {
		snprintf(bhash, sizeof(bhash), "\\x%s", hash);
		sql = "INSERT INTO apikeys (key_id, key_hash, tenant_id, role, username)"
		      " VALUES ($1::uuid, $2::bytea, $3, $4, $5) ON CONFLICT (key_id) DO UPDATE"
		      " SET key_hash = EXCLUDED.key_hash, tenant_id = EXCLUDED.tenant_id,"
		      " role = EXCLUDED.role, username = EXCLUDED.username";
		params[0] = key_id;
		params[1] = bhash;
		params[2] = tenant;
		params[3] = role;
		params[4] = user != NULL ? user : "";
		n = 5;
	} else if (strcmp(type, "apikey.revoked") == 0 && key_id != NULL) {
		sql = "INSERT INTO apikeys (key_id, tenant_id, revoked) VALUES ($1::uuid, $2, true)"
		      " ON CONFLICT (key_id) DO UPDATE SET revoked = true";
		params[0] = key_id;
		params[1] = tenant;
		n = 2;
	} else if (strncmp(type, "user.", 5) == 0) {
		done(opaque, 1); /* a key names its user itself */
		return;
	} else {
		sw_log(SW_LOG_WARN, "tenant event not applied (unknown or malformed)", "type", type,
		       NULL);
		done(opaque, 1);
		return;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		sw_service_fatal(env->svc, "tenant event", "out of memory");
		return;
	}
	t->done = done;
	t->opaque = opaque;
	snprintf(t->type, sizeof(t->type), "%s", type);
	/* keyed by tenant: its events commit in their order (a key after its tenant) */
	if (sw_store_query_key(env->store, tenant, sql, n, params, applied, t) == -1) {
		free(t);
		sw_service_fatal(env->svc, "tenant event", "cannot queue");
	}
}
