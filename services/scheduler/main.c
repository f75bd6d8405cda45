/*
 * sagewai-scheduler: see scheduler.h.
 *
 *   sagewai-scheduler [serve]   run the service
 *
 * Configuration: the environment and $SAGEWAI_CONFIG (sw_config), plus
 *   SAGEWAI_MODE               single_org (default) | multi_tenant
 *   SAGEWAI_SEALED_PREVIEW     1 lets multi_tenant run identity-bearing modes
 *   SAGEWAI_RUNNABLE_MODES     modes this deployment executes (comma list,
 *                              default in_process)
 *   SAGEWAI_ADMIN_TOKEN        the operator's token for POST /v1/tenants
 *   SAGEWAI_KAFKA_CONSUMER_CONFIG, SAGEWAI_KAFKA_PRODUCER_CONFIG
 *                              name=value,... librdkafka tuning
 *   SAGEWAI_PG_POOL            PostgreSQL connections (default
 *                              SCHED_PG_POOL_DEFAULT, 1..64)
 *
 * SIGTERM / SIGINT: stop taking work, let queued transactions, deliveries
 * and offset commits finish (at most SHUTDOWN_MS), leave the group, exit 0.
 * A second signal exits at once; anything unfinished is redone at start.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "scheduler.h"

#define SHUTDOWN_MS 5000

extern char **environ;

int64_t sched_mono_ms(void)
{
	return sw_mono_ns() / 1000000;
}

void sched_fatal(struct sched_env *env, const char *what, const char *why)
{
	sw_log(SW_LOG_ERROR, what, "error", why, NULL);
	env->exit_code = 1;
	event_base_loopbreak(env->base);
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sched_env *env = arg;

	(void)fd;
	(void)what;
	if ((sw_store_pending(env->store) == 0 && sw_bus_producer_outq(env->producer) == 0 &&
	     sched_outbox_idle(env) && sched_consume_inflight(env) == 0) ||
	    sched_mono_ms() > env->drain_deadline_ms)
		event_base_loopbreak(env->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sched_env *env = arg;
	struct timeval tv = {0, 50 * 1000};

	(void)what;
	if (env->stopping) {
		event_base_loopbreak(env->base);
		return;
	}
	sw_log(SW_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
	env->stopping = 1;
	env->drain_deadline_ms = sched_mono_ms() + SHUTDOWN_MS;
	sched_sse_stop(env);
	sched_outbox_stop(env);
	if (env->tick_ev != NULL)
		event_del(env->tick_ev);
	if (env->consumer != NULL && !env->paused) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
	env->drain_ev = event_new(env->base, -1, EV_PERSIST, drain_tick, env);
	if (env->drain_ev == NULL || event_add(env->drain_ev, &tv) == -1)
		event_base_loopbreak(env->base);
}

static void on_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct sched_env *env = opaque;
	struct sched_dr *dr = msg_opaque;

	if (dr == NULL)
		return;
	if (dr->kind == SCHED_DR_OUTBOX)
		sched_outbox_delivery(env, err, dr);
	else if (dr->kind == SCHED_DR_DEADLETTER)
		sched_consume_delivery(env, err, dr);
}

static void on_producer_error(int fatal, const char *reason, void *opaque)
{
	struct sched_env *env = opaque;

	if (fatal)
		sched_fatal(env, "Kafka producer failed", reason);
	else
		sw_log(SW_LOG_WARN, "Kafka producer", "error", reason, NULL);
}

/* SAGEWAI_MODE, SAGEWAI_SEALED_PREVIEW, SAGEWAI_RUNNABLE_MODES,
 * SAGEWAI_ADMIN_TOKEN. */
static int deployment(struct sched_env *env, char *errstr, size_t errlen)
{
	const char *v = sw_config_env(environ, "SAGEWAI_RUNNABLE_MODES");
	char list[256], *tok, *save = NULL;
	size_t len = 0;
	enum sw_mode m;

	if (env->cfg.mode[0] == '\0' || strcmp(env->cfg.mode, "single_org") == 0) {
		env->multi_tenant = 0;
	} else if (strcmp(env->cfg.mode, "multi_tenant") == 0) {
		env->multi_tenant = 1;
	} else {
		snprintf(errstr, errlen,
			 "SAGEWAI_MODE must be single_org or multi_tenant, not '%s'",
			 env->cfg.mode);
		return -1;
	}
	v = v != NULL && v[0] != '\0' ? v : "in_process";
	if (strlen(v) >= sizeof(list)) {
		snprintf(errstr, errlen, "SAGEWAI_RUNNABLE_MODES is too long");
		return -1;
	}
	snprintf(list, sizeof(list), "%s", v);
	env->runnable = 0;
	env->runnable_list[0] = '\0';
	for (tok = strtok_r(list, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		if (sw_mode_parse(tok, &m) == -1) {
			snprintf(errstr, errlen, "SAGEWAI_RUNNABLE_MODES: unknown mode '%.64s'",
				 tok);
			return -1;
		}
		if (env->runnable & (1u << m))
			continue;
		env->runnable |= 1u << m;
		len += (size_t)snprintf(env->runnable_list + len, sizeof(env->runnable_list) - len,
					"%s%s", len ? ", " : "", sw_mode_name(m));
	}
	if (env->runnable == 0) {
		snprintf(errstr, errlen, "SAGEWAI_RUNNABLE_MODES names no mode");
		return -1;
	}
	v = sw_config_env(environ, "SAGEWAI_SEALED_PREVIEW");
	env->sealed_preview = v != NULL && strcmp(v, "1") == 0;
	v = sw_config_env(environ, "SAGEWAI_ADMIN_TOKEN");
	if (v != NULL && strlen(v) >= sizeof(env->admin_token)) {
		snprintf(errstr, errlen, "SAGEWAI_ADMIN_TOKEN is too long");
		return -1;
	}
	snprintf(env->admin_token, sizeof(env->admin_token), "%s", v ? v : "");
	return 0;
}

/* librdkafka properties: first def (ours: a step is latency-bound, so
 * batch for 1 ms, not librdkafka's 5), then the operator's "name=value,..."
 * from the variable var, into out (NULL-terminated, SCHED_BUS_EXTRA slots;
 * the strings point into buf). -1 when they do not fit. */
int sched_bus_extra(const char *var, const char *def, const char **out, char *buf, size_t buflen)
{
	char err[128];
	size_t n = 0;

	if (def != NULL)
		out[n++] = def;
	if (sw_config_list(environ, var, out, n, SCHED_BUS_EXTRA, buf, buflen, err,
			   sizeof(err)) == -1)
		return -1;
	return 0;
}

static int serve(void)
{
	struct sched_env env_s, *env = &env_s;
	char err[512], port[16], ptuning[SW_CONFIG_STR];
	const char *pextra[SCHED_BUS_EXTRA];
	long long npool;

	memset(env, 0, sizeof(*env));
	if (sw_config_load(&env->cfg, getenv("SAGEWAI_CONFIG"), environ, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagewai-scheduler: configuration: %s\n", err);
		return 2;
	}
	sw_log_init("scheduler", stderr, sw_log_level_parse(env->cfg.log_level));
	if (deployment(env, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "bad configuration", "error", err, NULL);
		return 2;
	}
	if (sodium_init() < 0 || (env->base = event_base_new()) == NULL) {
		sw_log(SW_LOG_ERROR, "initialisation failed", NULL);
		return 1;
	}
	if ((env->reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		goto fail;
	if ((env->metrics = sw_metrics_new()) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	/* every transition is one transaction: with several connections
	 * their commits overlap (and share WAL flushes) instead of queueing
	 * behind each other */
	if (sw_config_number(environ, "SAGEWAI_PG_POOL", SCHED_PG_POOL_DEFAULT, 1, 64, &npool,
			     err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "bad configuration", "error", err, NULL);
		return 2;
	}
	if ((env->store = sw_store_new_pool(env->base, env->cfg.pg_dsn, "scheduler",
					    sched_migrations, sched_nmigrations, (size_t)npool,
					    err, sizeof(err))) == NULL)
		goto fail;
	if (sched_bus_extra("SAGEWAI_KAFKA_PRODUCER_CONFIG", "linger.ms=1", pextra, ptuning,
			    sizeof(ptuning)) == -1) {
		snprintf(err, sizeof(err), "SAGEWAI_KAFKA_PRODUCER_CONFIG has too many entries");
		goto fail;
	}
	env->producer = sw_bus_producer_new(env->base, env->cfg.kafka_bootstrap, SCHED_PRODUCER,
					    pextra, on_delivery, env, err, sizeof(err));
	if (env->producer == NULL)
		goto fail;
	sw_bus_producer_set_error_cb(env->producer, on_producer_error, env);
	if (sched_outbox_start(env, err, sizeof(err)) == -1 ||
	    sched_consume_start(env, err, sizeof(err)) == -1 ||
	    sched_sse_start(env, err, sizeof(err)) == -1 ||
	    sched_api_start(env, err, sizeof(err)) == -1 ||
	    sched_timers_start(env, err, sizeof(err)) == -1)
		goto fail;
	env->sigterm = evsignal_new(env->base, SIGTERM, on_signal, env);
	env->sigint = evsignal_new(env->base, SIGINT, on_signal, env);
	if (env->sigterm == NULL || env->sigint == NULL ||
	    evsignal_add(env->sigterm, NULL) == -1 || evsignal_add(env->sigint, NULL) == -1) {
		snprintf(err, sizeof(err), "cannot install signal events");
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(port, sizeof(port), "%d", sw_http_port(env->http));
	sw_log(SW_LOG_INFO, "scheduler started", "http_port", port, "mode",
	       env->multi_tenant ? "multi_tenant" : "single_org", "runnable_modes",
	       env->runnable_list, "sealed_preview", env->sealed_preview ? "1" : "0", NULL);

	event_base_dispatch(env->base);

	if (env->consumer != NULL && sw_bus_consumer_close(env->consumer) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
	sched_sse_stop(env);
	sw_http_destroy(env->http);
	env->http = NULL;
	sw_bus_producer_flush(env->producer, 2000);
	sw_log(SW_LOG_INFO, "scheduler stopped", NULL);
	goto out;
fail:
	sw_log(SW_LOG_ERROR, "scheduler failed to start", "error", err, NULL);
	env->exit_code = 1;
out:
	sw_bus_consumer_destroy(env->consumer);
	sw_http_destroy(env->http);
	sw_bus_producer_destroy(env->producer);
	sw_store_destroy(env->store);
	sw_metrics_destroy(env->metrics);
	sw_events_registry_destroy(env->reg);
	sched_seqset_free(&env->inflight);
	sched_tenants_free(env);
	sched_defs_free(env);
	sched_ops_free(env);
	free(env->ours);
	free(env->delivered);
	if (env->tick_ev)
		event_free(env->tick_ev);
	if (env->metrics_ev)
		event_free(env->metrics_ev);
	if (env->sweep_ev)
		event_free(env->sweep_ev);
	if (env->commit_ev)
		event_free(env->commit_ev);
	if (env->sse_ev)
		event_free(env->sse_ev);
	if (env->drain_ev)
		event_free(env->drain_ev);
	if (env->sigterm)
		event_free(env->sigterm);
	if (env->sigint)
		event_free(env->sigint);
	if (env->base)
		event_base_free(env->base);
	return env->exit_code;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sagewai-scheduler [serve]\n"
		"\n"
		"Runs workflows: the HTTP API of docs/RUNS.md on\n"
		"$SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT, state in PostgreSQL (schema\n"
		"scheduler, $SAGEWAI_PG_DSN), events on Kafka ($SAGEWAI_KAFKA_BOOTSTRAP).\n"
		"Deployment: SAGEWAI_MODE=single_org|multi_tenant, SAGEWAI_SEALED_PREVIEW=1,\n"
		"SAGEWAI_RUNNABLE_MODES=in_process,..., SAGEWAI_ADMIN_TOKEN;\n"
		"SAGEWAI_PG_POOL=N PostgreSQL connections (default %d).\n",
		SCHED_PG_POOL_DEFAULT);
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "serve") == 0)
		return serve();
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "sagewai-scheduler: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
