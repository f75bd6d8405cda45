/*
 * sagewai-scheduler: see scheduler.h. The frame (libs/service) runs the
 * process; this file only wires the roles into it.
 *
 * Settings: config.c. SIGTERM / SIGINT: stop taking work (streams, the
 * relay's sweeps, the timers, the consumer), let queued transactions,
 * deliveries and offset commits finish (at most drain_ms), leave the
 * group, exit 0. A second signal exits at once; anything unfinished is
 * redone at start.
 */
#include <stdlib.h>

#include "scheduler.h"

#define STR(x) #x
#define XSTR(x) STR(x)

static struct sched_env env_s;

static int sched_configure(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct sched_env *env = arg;

	env->svc = svc;
	env->cfg = sw_service_config(svc);
	env->envp = sw_service_environ(svc);
	return sched_config_load(env, err, errlen);
}

static int sched_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct sched_env *env = arg;
	const char *kv[] = {"mode",	      env->multi_tenant ? "multi_tenant" : "single_org",
			    "runnable_modes", env->runnable_list,
			    "sealed_preview", env->sealed_preview ? "1" : "0",
			    "identity",	      env->identity ? "1" : "0",
			    NULL};

	env->base = sw_service_base(svc);
	env->metrics = sw_service_metrics(svc);
	if ((env->reg = sw_events_registry_new(err, errlen)) == NULL)
		return -1;
	env->store = sw_store_new_pool(env->base, env->cfg->pg_dsn, "scheduler", sched_migrations,
				       sched_nmigrations, (size_t)env->pg_pool, err, errlen);
	if (env->store == NULL)
		return -1;
	if (sched_producer_start(env, err, errlen) == -1 ||
	    sched_outbox_start(env, err, errlen) == -1 ||
	    sched_identity_start(env, err, errlen) == -1 ||
	    sched_tenants_announce(env, err, errlen) == -1 ||
	    sched_consume_start(env, err, errlen) == -1 ||
	    sched_sse_start(env, err, errlen) == -1 || sched_api_start(env, err, errlen) == -1 ||
	    sched_timers_start(env, err, errlen) == -1)
		return -1;
	sw_service_started_fields(svc, kv);
	env->running = 1;
	return 0;
}

static void sched_drain(struct sw_service *svc, void *arg)
{
	struct sched_env *env = arg;

	(void)svc;
	env->stopping = 1;
	sched_sse_stop(env);
	sched_outbox_stop(env);
	sched_timers_stop(env);
	sched_consume_pause(env);
}

static int sched_drained(void *arg)
{
	struct sched_env *env = arg;

	return sw_store_pending(env->store) == 0 && sw_bus_producer_outq(env->producer) == 0 &&
	       sched_outbox_idle(env) && sched_consume_inflight(env) == 0 &&
	       sched_identity_pending(env) == 0;
}

static void sched_halt(void *arg)
{
	struct sched_env *env = arg;

	env->halted = 1;
}

static void sched_stop(struct sw_service *svc, void *arg)
{
	struct sched_env *env = arg;

	(void)svc;
	if (env->running) {
		sched_consume_close(env);
		sched_sse_stop(env);
		sw_bus_producer_flush(env->producer, 2000);
	}
	sched_consume_free(env);
	sched_identity_free(env);
	sw_bus_producer_destroy(env->producer);
	env->producer = NULL;
	sw_store_destroy(env->store);
	env->store = NULL;
	sw_events_registry_destroy(env->reg);
	env->reg = NULL;
	sched_outbox_free(env);
	sched_tenants_free(env);
	sched_defs_free(env);
	sched_ops_free(env);
	sched_snapc_free(env);
	sched_timers_free(env);
	sched_sse_free(env);
}

static int sched_health(void *arg)
{
	struct sched_env *env = arg;

	return env->halted || env->stopping;
}

static const struct sw_service_def sched_def = {
	.name = "scheduler",
	.help = "Runs workflows: the HTTP API of docs/RUNS.md on\n"
		"$SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT, state in PostgreSQL (schema\n"
		"scheduler, $SAGEWAI_PG_DSN), events on Kafka ($SAGEWAI_KAFKA_BOOTSTRAP).\n"
		"Deployment: SAGEWAI_MODE=single_org|multi_tenant, SAGEWAI_SEALED_PREVIEW=1,\n"
		"SAGEWAI_RUNNABLE_MODES=in_process,..., SAGEWAI_ADMIN_TOKEN;\n"
		"SAGEWAI_IDENTITY=1 with SAGEWAI_SECRET_MAC_KEY_FILE and\n"
		"SAGEWAI_IDENTITY_TIMEOUT_MS (ms, default "
		XSTR(SCHED_IDENTITY_TIMEOUT_MS) ") when sagewai-identity is deployed;\n"
		"SAGEWAI_PG_POOL=N PostgreSQL connections (default "
		XSTR(SCHED_PG_POOL_DEFAULT) ").\n",
	.drain_ms = 5000,
	.configure = sched_configure,
	.start = sched_start,
	.drain = sched_drain,
	.drained = sched_drained,
	.halt = sched_halt,
	.stop = sched_stop,
	.health = sched_health,
};

int main(int argc, char **argv)
{
	return sw_service_main(&sched_def, &env_s, argc, argv);
}
