/*
 * sagewai-worker: see worker.h.
 *
 *   sagewai-worker [serve]    run the service; configuration from the
 *                             environment and $SAGEWAI_CONFIG
 *
 * Settings beyond struct sw_config (environment only):
 *   SAGEWAI_LLM_BASE_URL        OpenAI-compatible base (https://api.openai.com/v1)
 *   SAGEWAI_LLM_API_KEY         bearer key of the llm kind (never logged)
 *   SAGEWAI_LLM_MODEL           default model (gpt-4o-mini)
 *   SAGEWAI_PLUGIN_DIR          every *.so in it is loaded at start
 *   SAGEWAI_STEP_OUTPUT_MAX     cap of any step's output in bytes (1 MiB)
 *   SAGEWAI_WORKER_CONCURRENCY  steps executing at once (64)
 *   SAGEWAI_SEALED_PREVIEW      1 lets identity-bearing workflows run in
 *                               multi_tenant mode (preview gate)
 *   SAGEWAI_WORKER_OTHER_MODES  refuse (default): a dispatch of another mode than
 *                               in_process fails "mode_unavailable: ..."; ignore:
 *                               leave sandboxed steps to sandboxd (the others are
 *                               still refused, after the preview-gate check)
 *   SAGEWAI_KAFKA_MESSAGE_MAX   largest event the bus carries (1000000)
 *   SAGEWAI_PG_POOL             PostgreSQL connections of the results table (4)
 *   SAGEWAI_KAFKA_CONSUMER_CONFIG  "name=value,..." librdkafka tuning
 */
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/thread.h>

#include "worker.h"

extern char **environ;

void worker_fatal(struct worker_env *env, const char *what, const char *why)
{
	sw_log(SW_LOG_ERROR, what, "error", why, NULL);
	env->exit_code = 1;
	if (env->ex != NULL)
		sw_executor_halt(env->ex);
	event_base_loopbreak(env->base);
}

void worker_on_fatal(void *arg, const char *what, const char *why)
{
	worker_fatal(arg, what, why);
}

/* The executor's log lines; "step finished" also names the step's kind. */
void worker_report(void *arg, const struct sw_executor_report *r)
{
	const char *kv[24];
	size_t n = 0, i;

	(void)arg;
	if (r->kind != SW_EXECUTOR_FINISHED) {
		sw_log_kv(r->level, r->msg, r->fields);
		return;
	}
	for (i = 0; r->fields[i] != NULL && n + 4 < sizeof(kv) / sizeof(kv[0]); i += 2) {
		kv[n++] = r->fields[i];
		kv[n++] = r->fields[i + 1];
		if (strcmp(r->fields[i], "step_id") == 0) {
			struct worker_job *j = r->job->owner;

			kv[n++] = "uses";
			kv[n++] = j != NULL && j->uses != NULL ? j->uses : "";
		}
	}
	kv[n] = NULL;
	sw_log_kv(r->level, r->msg, kv);
}

/* First signal: stop taking messages and let running steps finish for up
 * to WORKER_DRAIN_S; a second one stops at once. Unfinished steps are not
 * committed, so another member (or the next start) runs them. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct worker_env *env = arg;

	(void)what;
	sw_log(SW_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
	sw_executor_shutdown(env->ex, WORKER_DRAIN_S);
}

static int health(void *opaque)
{
	struct worker_env *env = opaque;

	return sw_store_connected(env->store) ? 0 : -1;
}

static int settings_load(struct worker_env *env, char *err, size_t errlen)
{
	const char *v;
	long long n;
	size_t len;
	char host[128];

	v = sw_config_env(environ, "SAGEWAI_LLM_BASE_URL");
	snprintf(env->llm_base, sizeof(env->llm_base), "%s",
		 v && *v ? v : "https://api.openai.com/v1");
	len = strlen(env->llm_base);
	while (len > 0 && env->llm_base[len - 1] == '/')
		env->llm_base[--len] = '\0';
	v = sw_config_env(environ, "SAGEWAI_LLM_API_KEY");
	if (v != NULL && strlen(v) >= sizeof(env->llm_key)) {
		snprintf(err, errlen, "SAGEWAI_LLM_API_KEY is too long");
		return -1;
	}
	snprintf(env->llm_key, sizeof(env->llm_key), "%s", v ? v : "");
	if (strpbrk(env->llm_key, "\r\n") != NULL) {
		snprintf(err, errlen, "SAGEWAI_LLM_API_KEY holds a line break");
		return -1;
	}
	v = sw_config_env(environ, "SAGEWAI_LLM_MODEL");
	snprintf(env->llm_model, sizeof(env->llm_model), "%s", v && *v ? v : "gpt-4o-mini");

	if (sw_config_number(environ, "SAGEWAI_STEP_OUTPUT_MAX", WORKER_OUTPUT_MAX_DEFAULT, 1,
			     LLONG_MAX, &n, err, errlen) == -1)
		return -1;
	env->output_cap = (size_t)n;
	if (sw_config_number(environ, "SAGEWAI_KAFKA_MESSAGE_MAX", WORKER_BUS_MAX_DEFAULT, 4096,
			     LLONG_MAX, &n, err, errlen) == -1)
		return -1;
	env->bus_max = (size_t)n;
	if (sw_config_number(environ, "SAGEWAI_WORKER_CONCURRENCY", WORKER_CONCURRENCY_DEFAULT, 1,
			     100000, &n, err, errlen) == -1)
		return -1;
	env->concurrency = (int)n;
	if (sw_config_number(environ, "SAGEWAI_PG_POOL", WORKER_PG_POOL_DEFAULT, 1, 64, &n, err,
			     errlen) == -1)
		return -1;
	env->pg_pool = (size_t)n;
	v = sw_config_env(environ, "SAGEWAI_WORKER_OTHER_MODES");
	if (v != NULL && strcmp(v, "ignore") == 0) {
		env->ignore_other_modes = 1;
	} else if (v != NULL && *v && strcmp(v, "refuse") != 0) {
		snprintf(err, errlen, "SAGEWAI_WORKER_OTHER_MODES: refuse or ignore");
		return -1;
	}
	v = sw_config_env(environ, "SAGEWAI_SEALED_PREVIEW");
	env->sealed_preview = v != NULL && strcmp(v, "1") == 0;
	if (strcmp(env->cfg.mode, "multi_tenant") == 0) {
		env->multi_tenant = 1;
	} else if (env->cfg.mode[0] != '\0' && strcmp(env->cfg.mode, "single_org") != 0) {
		snprintf(err, errlen,
			 "SAGEWAI_MODE: '%.40s' is neither single_org nor multi_tenant",
			 env->cfg.mode);
		return -1;
	}
	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(env->executor, sizeof(env->executor), "sagewai-worker@%s/%d", host,
		 (int)getpid());
	return 0;
}

/* The producer goes before the jobs: its delivery reports point at them. */
static void teardown(struct worker_env *env)
{
	sw_executor_destroy(env->ex);
	env->ex = NULL;
	if (env->http)
		sw_http_destroy(env->http);
	if (env->store)
		sw_store_destroy(env->store);
	worker_pool_stop(env);
	worker_curl_cleanup(env);
	worker_plugins_unload(env);
	if (env->metrics)
		sw_metrics_destroy(env->metrics);
	if (env->reg)
		sw_events_registry_destroy(env->reg);
	if (env->sigterm)
		event_free(env->sigterm);
	if (env->sigint)
		event_free(env->sigint);
	if (env->base)
		event_base_free(env->base);
	explicit_bzero(env->llm_key, sizeof(env->llm_key));
}

static int serve(void)
{
	static const char *const topics[] = {SW_TOPIC_STEPS, SW_TOPIC_RUNS, NULL};
	const char *extra[34] = {"topic.metadata.refresh.interval.ms=2000",
				 "partition.assignment.strategy=range"};
	const char *pextra[2] = {NULL, NULL};
	char tuning[SW_CONFIG_STR], msgmax[64];
	struct sw_executor_config xc;
	struct worker_env env_s, *env = &env_s;
	char err[1024], port[16], conc[16];
	const char *group, *plugin_dir;

	memset(env, 0, sizeof(*env));
	if (sw_config_load(&env->cfg, getenv("SAGEWAI_CONFIG"), environ, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagewai-worker: configuration: %s\n", err);
		return 2;
	}
	sw_log_init("worker", stderr, sw_log_level_parse(env->cfg.log_level));
	if (settings_load(env, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "bad configuration", "error", err, NULL);
		return 2;
	}
	if (evthread_use_pthreads() == -1 || (env->base = event_base_new()) == NULL) {
		sw_log(SW_LOG_ERROR, "libevent initialisation failed", NULL);
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, sizeof(err), "curl_global_init failed");
		goto fail;
	}
	/* plugins first: a bad one refuses the start before we join anything */
	plugin_dir = sw_config_env(environ, "SAGEWAI_PLUGIN_DIR");
	if (plugin_dir != NULL && *plugin_dir &&
	    worker_plugins_load(env, plugin_dir, err, sizeof(err)) == -1)
		goto fail;
	if ((env->reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		goto fail;
	if ((env->metrics = sw_metrics_new()) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	/* every step is a lookup and an insert of its own: with several
	 * connections they overlap instead of queueing behind each other */
	if ((env->store = sw_executor_store_new(env->base, env->cfg.pg_dsn, "worker",
						env->pg_pool, err, sizeof(err))) == NULL)
		goto fail;
	memset(&xc, 0, sizeof(xc));
	xc.base = env->base;
	xc.reg = env->reg;
	xc.store = env->store;
	xc.metrics = env->metrics;
	xc.producer = WORKER_PRODUCER;
	xc.metrics_prefix = "sagewai_worker";
	xc.executor = env->executor;
	xc.bus_max = env->bus_max;
	xc.concurrency = env->concurrency;
	xc.line_min = WORKER_LINE_MIN;
	xc.refuse_identity_modes = env->multi_tenant && !env->sealed_preview;
	xc.ops = &worker_exec_ops;
	xc.arg = env;
	if ((env->ex = sw_executor_new(&xc, err, sizeof(err))) == NULL)
		goto fail;
	if (worker_curl_init(env, err, sizeof(err)) == -1 ||
	    worker_pool_start(env, err, sizeof(err)) == -1)
		goto fail;
	group = env->cfg.group_id[0] ? env->cfg.group_id : WORKER_DEFAULT_GROUP;
	if (sw_config_list(environ, "SAGEWAI_KAFKA_CONSUMER_CONFIG", extra, 2,
			   sizeof(extra) / sizeof(extra[0]), tuning, sizeof(tuning), err,
			   sizeof(err)) == -1)
		goto fail;
	if (sw_config_env(environ, "SAGEWAI_KAFKA_MESSAGE_MAX") != NULL) {
		snprintf(msgmax, sizeof(msgmax), "message.max.bytes=%zu", env->bus_max);
		pextra[0] = msgmax;
	}
	if (sw_executor_connect(env->ex, env->cfg.kafka_bootstrap, group, topics, pextra, extra,
				err, sizeof(err)) == -1)
		goto fail;

	env->http = sw_http_new(env->base, env->cfg.http_addr, env->cfg.http_port, 64 << 10,
				env->metrics, health, env, err, sizeof(err));
	if (env->http == NULL)
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
	snprintf(conc, sizeof(conc), "%d", env->concurrency);
	sw_log(SW_LOG_INFO, "worker started", "group", group, "http_port", port, "concurrency",
	       conc, "mode", env->multi_tenant ? "multi_tenant" : "single_org", "llm_model",
	       env->llm_model, "llm_key", env->llm_key[0] ? "set" : "unset", NULL);

	event_base_dispatch(env->base);

	/* deliveries still due mark their messages done; store those offsets
	 * and let close commit them */
	if (sw_executor_close(env->ex, 5000) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
	sw_log(SW_LOG_INFO, "worker stopped", NULL);
	teardown(env);
	curl_global_cleanup();
	return env->exit_code;
fail:
	sw_log(SW_LOG_ERROR, "worker failed to start", "error", err, NULL);
	teardown(env);
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sagewai-worker [serve]\n"
		   "\n"
		   "Executes the in_process steps dispatched on sagewai.steps (consumer group\n"
		   "$SAGEWAI_GROUP_ID, default sagewai-worker) and publishes step.started and\n"
		   "step.finished; results are kept in PostgreSQL (schema worker) so that a\n"
		   "redelivered dispatch re-publishes its result. Step kinds: template, llm,\n"
		   "http, plugin:<name> (plugins from $SAGEWAI_PLUGIN_DIR). /healthz and\n"
		   "/metrics on $SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "serve") == 0)
		return serve();
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "sagewai-worker: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
