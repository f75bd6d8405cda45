/*
 * tenants.c: the tenants, API keys and users this service knows, learnt from the
 * scheduler's events on sagewai.tenants (never from its tables), as the
 * audit service learns them. sw_tenants (libs/service) makes each event's
 * idempotent upsert; here it is queued keyed by the tenant, so a tenant's
 * events commit in their order.
 */
#include "identity.h"
#include "sw_tenants.h"

void id_tenants_apply(struct id_env *env, json_t *ev, void (*done)(void *opaque, int ok),
		      void *opaque)
{
	char err[64];

	if (sw_tenants_apply(env->store, ev, 1, done, opaque, err, sizeof(err)) == -1)
		sw_service_fatal(env->svc, "tenant event", err);
}
