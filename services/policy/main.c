/*
 * sagewai-policy: see policy.h. The frame (libs/service) runs the process;
 * this file wires the roles together.
 *
 * SIGTERM / SIGINT: stop reading requests, let the decisions in hand
 * commit and their events go out (at most drain_ms), commit the stored
 * offsets, leave the group, exit 0. Pending approvals stay pending in
 * PostgreSQL; their deadlines are read again at the next start.
 */
#include <stdlib.h>
#include <sodium.h>

#include "policy.h"

static struct pol_env env_s;

static int pol_configure(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct pol_env *env = arg;

	env->svc = svc;
	env->cfg = sw_service_config(svc);
	env->envp = sw_service_environ(svc);
	LIST_INIT(&env->streams);
	return pol_config_load(env, err, errlen);
}

static int pol_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct pol_env *env = arg;
	const char *kv[] = {"mode", env->multi_tenant ? "multi_tenant" : "single_org",
			    "group", env->group,
			    "admin_token", env->admin_token[0] ? "set" : "none",
			    NULL};

	env->base = sw_service_base(svc);
	env->metrics = sw_service_metrics(svc);
	if ((env->reg = sw_events_registry_new(err, errlen)) == NULL)
		return -1;
	env->store = sw_store_new_pool(env->base, env->cfg->pg_dsn, "policy", pol_migrations,
				       pol_nmigrations, (size_t)env->pg_pool, err, errlen);
	if (env->store == NULL || pol_decide_start(env, err, errlen) == -1 ||
	    pol_bus_start(env, err, errlen) == -1 || pol_api_start(env, err, errlen) == -1 ||
	    pol_prune_start(env, err, errlen) == -1)
		return -1;
	sw_service_started_fields(svc, kv);
	env->running = 1;
	return 0;
}

static void pol_drain(struct sw_service *svc, void *arg)
{
	struct pol_env *env = arg;

	(void)svc;
	sw_svcbus_pause(&env->bus);
}

static int pol_drained(void *arg)
{
	struct pol_env *env = arg;

	return pol_bus_idle(env) && json_object_size(env->inflight) == 0 &&
	       sw_store_pending(env->store) == 0;
}

static void pol_stop(struct sw_service *svc, void *arg)
{
	struct pol_env *env = arg;

	(void)svc;
	pol_sse_close_all(env);
	if (env->running)
		sw_svcbus_close(&env->bus);
	pol_bus_free(env);
	pol_prune_stop(env);
	pol_decide_stop(env);
	sw_store_destroy(env->store);
	env->store = NULL;
	sw_events_registry_destroy(env->reg);
	env->reg = NULL;
	sodium_memzero(env->admin_token, sizeof(env->admin_token));
}

static int pol_health(void *arg)
{
	struct pol_env *env = arg;

	return sw_service_stopping(env->svc);
}

static const struct sw_service_def pol_def = {
    .name = "policy",
    .help = "Credential-request policy and approvals (docs/POLICY.md): decides each\n"
	    "credential.requested on sagewai.credentials by the tenant's policy (allow,\n"
	    "deny, or ask a person before a deadline) and publishes credential.pending and\n"
	    "credential.decided exactly once per request. The HTTP API and the approvals\n"
	    "page on $SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT (/ and /approvals), state in\n"
	    "PostgreSQL (schema policy, $SAGEWAI_PG_DSN), Kafka at $SAGEWAI_KAFKA_BOOTSTRAP.\n"
	    "Optional: SAGEWAI_ADMIN_TOKEN[_FILE], SAGEWAI_MODE, SAGEWAI_GROUP_ID,\n"
	    "SAGEWAI_PG_POOL (4), SAGEWAI_POLICY_RETENTION_S (2592000: 30 days).\n",
    .drain_ms = 5000,
    .configure = pol_configure,
    .start = pol_start,
    .drain = pol_drain,
    .drained = pol_drained,
    .stop = pol_stop,
    .health = pol_health,
};

int main(int argc, char **argv)
{
	return sw_service_main(&pol_def, &env_s, argc, argv);
}
