/*
 * serve.c: sandboxd's roles on the frame (libs/service), once config.c
 * has split off the privileged part: the egress proxies' resolver, the
 * pool (the privileged part's client), the results store, the executor and its Kafka clients, and
 * /healthz (the store is connected). A shutdown signal drains through the
 * executor: no more messages, running steps get SBD_DRAIN_S seconds.
 */
#include <stdio.h>
#include <string.h>
#include <event2/dns.h>

#include "sandboxd.h"
#include "sw_executor.h"

void sbd_report(void *arg, const struct sw_executor_report *r)
{
	(void)arg;
	sw_log_kv(r->level, r->msg, r->fields);
}

void sbd_on_fatal(void *arg, const char *what, const char *why)
{
	struct sbd_env *env = arg;

	sw_service_fatal(env->svc, what, why);
}

int sbd_health(void *arg)
{
	struct sbd_env *env = arg;

	return env->store != NULL && sw_store_connected(env->store) ? 0 : -1;
}

/* The egress proxies' resolver (/etc/resolv.conf and /etc/hosts). */
static int resolver_new(struct sbd_env *env, char *err, size_t errlen)
{
	env->dns = evdns_base_new(env->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						 EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (env->dns != NULL)
		return 0;
	sw_log(SW_LOG_WARN, "no usable /etc/resolv.conf: egress_only steps reach listed "
			    "hosts by address or /etc/hosts only", NULL);
	if ((env->dns = evdns_base_new(env->base, 0)) == NULL ||
	    evdns_base_load_hosts(env->dns, NULL) != 0) {
		snprintf(err, errlen, "resolver initialisation failed");
		return -1;
	}
	return 0;
}

/* The executor and its Kafka clients on sagewai.steps.sandbox (its
 * dispatches) and sagewai.runs. */
static int executor_new(struct sbd_env *env, char *err, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_STEPS_SANDBOX, SW_TOPIC_RUNS, NULL};
	const char *extra[34] = {"topic.metadata.refresh.interval.ms=2000",
				 "partition.assignment.strategy=range"};
	/* a program in a sandbox waits on credential.requested and a scheduler
	 * on step.*: sent at once, not batched for the library's 1 ms (what
	 * queues while a request is in flight still goes in one batch) */
	const char *pextra[34] = {"linger.ms=0"};
	size_t np = 1;
	const struct sw_config *cfg = sw_service_config(env->svc);
	char *const *envp = sw_service_environ(env->svc);
	const char *instance = sw_config_env(envp, "SAGEWAI_INSTANCE_ID");
	char tuning[SW_CONFIG_STR], ptuning[SW_CONFIG_STR], msgmax[64];
	const struct sw_executor_config xc = {
	    .base = env->base,
	    .reg = env->reg,
	    .store = env->store,
	    .metrics = env->metrics,
	    .producer = SBD_PRODUCER,
	    .metrics_prefix = "sagewai_sandboxd",
	    .executor = env->executor,
	    .bus_max = env->bus_max,
	    .concurrency = env->concurrency,
	    .line_min = SBD_LINE_MIN,
	    /* the preview gate's backstop, as in the worker */
	    .refuse_identity_modes = env->multi_tenant && !env->sealed_preview,
	    /* static membership, as in the worker (config.c) */
	    .instance_id = instance,
	    .ops = &sbd_exec_ops,
	    .arg = env,
	};

	if (instance != NULL && !sw_executor_instance_ok(instance)) {
		snprintf(err, errlen,
			 "SAGEWAI_INSTANCE_ID: 1 to %d of A-Z a-z 0-9 . _ -, unique in the group",
			 SW_EXECUTOR_INSTANCE_MAX);
		return -1;
	}
	if ((env->ex = sw_executor_new(&xc, err, errlen)) == NULL)
		return -1;
	env->group = cfg->group_id[0] ? cfg->group_id : SBD_DEFAULT_GROUP;
	if (sw_config_list(envp, "SAGEWAI_KAFKA_CONSUMER_CONFIG", extra, 2,
			   sizeof(extra) / sizeof(extra[0]), tuning, sizeof(tuning), err,
			   errlen) == -1)
		return -1;
	if (sw_config_env(envp, "SAGEWAI_KAFKA_MESSAGE_MAX") != NULL) {
		snprintf(msgmax, sizeof(msgmax), "message.max.bytes=%zu", env->bus_max);
		pextra[np++] = msgmax;
	}
	/* and SAGEWAI_KAFKA_PRODUCER_CONFIG, as the worker takes it */
	if (sw_config_list(envp, "SAGEWAI_KAFKA_PRODUCER_CONFIG", pextra, np,
			   sizeof(pextra) / sizeof(pextra[0]), ptuning, sizeof(ptuning), err,
			   errlen) == -1)
		return -1;
	return sw_executor_connect(env->ex, cfg->kafka_bootstrap, env->group, topics, pextra,
				   extra, err, errlen);
}

static void art_emit(void *arg, const char *type, const struct sw_event_header *like,
		     json_t *fields)
{
	sbd_emit(arg, type, like, fields);
}

int sbd_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct sbd_env *env = arg;
	char warm[16];

	env->base = sw_service_base(svc);
	env->metrics = sw_service_metrics(svc);
	env->executor = sw_service_instance(svc);
	if (resolver_new(env, err, errlen) == -1)
		return -1;
	if ((env->reg = sw_events_registry_new(err, errlen)) == NULL)
		return -1;
	if (sbd_pool_start(env, err, errlen) == -1)
		return -1;
	if ((env->store = sw_executor_store_new(env->base, sw_service_config(svc)->pg_dsn,
						"sandboxd", 1, err, errlen)) == NULL)
		return -1;
	if (executor_new(env, err, errlen) == -1)
		return -1;
	if (sbd_identity_start(env, err, errlen) == -1)
		return -1;
	if ((env->art = sbd_artifact_start(env->base, &env->art_cfg, art_emit, env, err,
					   errlen)) == NULL)
		return -1;
	if (sw_service_http(svc, 64 << 10, err, errlen) == NULL)
		return -1;
	/* the common case warms up at once; other pools on first use */
	if (env->pool.warm_target > 0 &&
	    sbd_pool_warm(env, "base", SW_SANDBOX_NET_NONE, err, errlen) == NULL)
		sw_log(SW_LOG_WARN, "no warm pool for variant base", "error", err, NULL);
	sbd_pool_metrics(env);
	snprintf(warm, sizeof(warm), "%zu", env->pool.warm_target);
	/* the seal key's public half: the operator lists it in identity's hosts */
	sw_service_started_fields(svc, (const char *const[]){"group", env->group, "warm", warm,
							     "variants", env->pool.variants_dir,
							     "state_dir", env->state_dir,
							     "identity_scoped",
							     env->seal_sk ? "on" : "off",
							     "seal_public_key",
							     env->seal_sk ? env->seal_pk_hex : "",
							     NULL});
	env->serving = 1;
	return 0;
}

void sbd_drain(struct sw_service *svc, void *arg)
{
	struct sbd_env *env = arg;

	(void)svc;
	/* the executor breaks the loop itself once nothing is in flight, or
	 * after SBD_DRAIN_S (with its report); the frame's limit is a backstop */
	sw_executor_shutdown(env->ex, SBD_DRAIN_S);
}

int sbd_drained(void *arg)
{
	struct sbd_env *env = arg;

	return sw_executor_njobs(env->ex) == 0 && sw_executor_inflight(env->ex) == 0;
}

void sbd_halt(void *arg)
{
	struct sbd_env *env = arg;

	if (env->ex != NULL)
		sw_executor_halt(env->ex);
}

void sbd_stop(struct sw_service *svc, void *arg)
{
	struct sbd_env *env = arg;

	(void)svc;
	if (env->serving && sw_executor_close(env->ex, 5000) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
	env->serving = 0;
	sbd_identity_stop(env); /* no answer or revocation reaches a job any more */
	sbd_artifact_stop(env->art); /* deliveries abandoned: no callback reaches a job */
	env->art = NULL;
	sw_executor_destroy(env->ex); /* hands every held sandbox back to the pool */
	env->ex = NULL;
	sbd_pool_stop(env); /* the privileged part destroys them all */
	if (env->dns != NULL)
		evdns_base_free(env->dns, 1); /* runs pending cancel callbacks */
	env->dns = NULL;
	if (env->store != NULL)
		sw_store_destroy(env->store);
	env->store = NULL;
	if (env->reg != NULL)
		sw_events_registry_destroy(env->reg);
	env->reg = NULL;
}
