/*
 * tenants.c: the tenants and API keys this service knows, learnt from the
 * scheduler's events on sagewai.tenants (never from its tables), as the
 * audit service learns them. sw_tenants (libs/service) makes each event's
 * idempotent upsert; here it is queued keyed by the tenant, so a tenant's
 * events commit in their order.
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "sw_tenants.h"

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

void pol_tenants_apply(struct pol_env *env, json_t *ev, pol_done_cb done,
		      void *opaque)
{
	struct sw_tenants_stmt st;
	struct tapply *t;

	switch (sw_tenants_stmt(ev, 0, &st)) {
	case SW_TENANTS_APPLY:
		break;
	case SW_TENANTS_NOTHING:
		done(opaque, 1);
		return;
	case SW_TENANTS_FOREIGN:
		sw_log(SW_LOG_WARN, "tenant event not from the scheduler ignored", "type", st.type,
		       NULL);
		done(opaque, 1);
		return;
	default:
		sw_log(SW_LOG_WARN, "tenant event not applied (unknown or malformed)", "type",
		       st.type, NULL);
		done(opaque, 1);
		return;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		sw_service_fatal(env->svc, "tenant event", "out of memory");
		return;
	}
	t->done = done;
	t->opaque = opaque;
	snprintf(t->type, sizeof(t->type), "%s", st.type);
	/* keyed by tenant: its events commit in their order (a key after its tenant) */
	if (sw_store_query_key(env->store, st.tenant, st.sql, st.nparams, st.params, applied,
			       t) == -1) {
		free(t);
		sw_service_fatal(env->svc, "tenant event", "cannot queue");
	}
}
