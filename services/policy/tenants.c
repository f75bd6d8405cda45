/*
 * tenants.c: the tenants and API keys this service knows, learnt from the
 * scheduler's events on sagewai.tenants (never from its tables), as the
 * audit service learns them. sw_tenants (libs/service) makes each event's
 * idempotent upsert; here it is queued keyed by the tenant, so a tenant's
 * events commit in their order.
 */
#include "policy.h"
#include "sw_tenants.h"

void pol_tenants_apply(struct pol_env *env, json_t *ev, pol_done_cb done,
		      void *opaque)
{
	char err[64];

	if (sw_tenants_apply(env->store, ev, 0, done, opaque, err, sizeof(err)) == -1)
		sw_service_fatal(env->svc, "tenant event", err);
}
