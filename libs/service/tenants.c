/*
 * tenants.c: sw_tenants_stmt (sw_tenants.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"
#include "sw_store.h"
#include "sw_tenants.h"

struct tapply {
	void (*done)(void *opaque, int ok);
	void *opaque;
	char type[64];
};

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

enum sw_tenants_rc sw_tenants_stmt(json_t *ev, int users, struct sw_tenants_stmt *st)
{
	json_t *h = json_object_get(ev, "header");
	const char *type = str(h, "type"), *producer = str(h, "producer");
	const char *tenant = str(ev, "tenant_id"), *name = str(ev, "name");
	const char *key_id = str(ev, "key_id"), *role = str(ev, "role");
	const char *hash = str(ev, "key_sha256"), *user = str(ev, "user");
	const char *uid = str(ev, "user_id");

	memset(st, 0, sizeof(*st));
	st->type = type != NULL ? type : "";
	st->tenant = tenant;
	if (type == NULL || producer == NULL || strcmp(producer, "sagewai-scheduler") != 0 ||
	    tenant == NULL)
		return SW_TENANTS_FOREIGN;
	if (strcmp(type, "tenant.created") == 0 && name != NULL) {
		st->sql = "INSERT INTO tenants (id, name) VALUES ($1, $2)"
			  " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name";
		st->params[0] = tenant;
		st->params[1] = name;
		st->nparams = 2;
	} else if (strcmp(type, "tenant.deleted") == 0 && name != NULL) {
		st->sql = "INSERT INTO tenants (id, name, deleted) VALUES ($1, $2, true)"
			  " ON CONFLICT (id) DO UPDATE SET deleted = true";
		st->params[0] = tenant;
		st->params[1] = name;
		st->nparams = 2;
	} else if (strcmp(type, "apikey.created") == 0 && key_id != NULL && role != NULL &&
		   hash != NULL && strlen(hash) == 64 && strspn(hash, "0123456789abcdefABCDEF") == 64) {
		snprintf(st->bhash, sizeof(st->bhash), "\\x%s", hash);
		st->sql = "INSERT INTO apikeys (key_id, key_hash, tenant_id, role, username)"
			  " VALUES ($1::uuid, $2::bytea, $3, $4, $5) ON CONFLICT (key_id) DO UPDATE"
			  " SET key_hash = EXCLUDED.key_hash, tenant_id = EXCLUDED.tenant_id,"
			  " role = EXCLUDED.role, username = EXCLUDED.username";
		st->params[0] = key_id;
		st->params[1] = st->bhash;
		st->params[2] = tenant;
		st->params[3] = role;
		st->params[4] = user != NULL ? user : "";
		st->nparams = 5;
	} else if (strcmp(type, "apikey.revoked") == 0 && key_id != NULL) {
		st->sql = "INSERT INTO apikeys (key_id, tenant_id, revoked) VALUES ($1::uuid, $2, true)"
			  " ON CONFLICT (key_id) DO UPDATE SET revoked = true";
		st->params[0] = key_id;
		st->params[1] = tenant;
		st->nparams = 2;
	} else if (strncmp(type, "user.", 5) == 0 && !users) {
		return SW_TENANTS_NOTHING; /* a key names its user itself */
	} else if (strcmp(type, "user.created") == 0 && uid != NULL && name != NULL) {
		st->sql = "INSERT INTO users (user_id, tenant_id, name) VALUES ($1::uuid, $2, $3)"
			  " ON CONFLICT (user_id) DO NOTHING";
		st->params[0] = uid;
		st->params[1] = tenant;
		st->params[2] = name;
		st->nparams = 3;
	} else if (strcmp(type, "user.deleted") == 0 && uid != NULL && name != NULL) {
		st->sql = "INSERT INTO users (user_id, tenant_id, name, deleted)"
			  " VALUES ($1::uuid, $2, $3, true)"
			  " ON CONFLICT (user_id) DO UPDATE SET deleted = true";
		st->params[0] = uid;
		st->params[1] = tenant;
		st->params[2] = name;
		st->nparams = 3;
	} else {
		return SW_TENANTS_MALFORMED;
	}
	return SW_TENANTS_APPLY;
}

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

int sw_tenants_apply(struct sw_store *store, json_t *ev, int users,
		     void (*done)(void *opaque, int ok), void *opaque, char *errstr,
		     size_t errlen)
{
	struct sw_tenants_stmt st;
	struct tapply *t;

	switch (sw_tenants_stmt(ev, users, &st)) {
	case SW_TENANTS_APPLY:
		break;
	case SW_TENANTS_NOTHING:
		done(opaque, 1);
		return 0;
	case SW_TENANTS_FOREIGN:
		sw_log(SW_LOG_WARN, "tenant event not from the scheduler ignored", "type", st.type,
		       NULL);
		done(opaque, 1);
		return 0;
	default:
		sw_log(SW_LOG_WARN, "tenant event not applied (unknown or malformed)", "type",
		       st.type, NULL);
		done(opaque, 1);
		return 0;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	t->done = done;
	t->opaque = opaque;
	snprintf(t->type, sizeof(t->type), "%s", st.type);
	if (sw_store_query_key(store, st.tenant, st.sql, st.nparams, st.params, applied, t) ==
	    -1) {
		free(t);
		snprintf(errstr, errlen, "cannot queue");
		return -1;
	}
	return 0;
}
