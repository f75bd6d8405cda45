/*
 * sagewai-worker: see worker.h. The frame (libs/service) runs the daemon;
 * this file wires the roles together (exec.c the executor, httpstep.c and
 * llm.c the transfers, plugin.c the plugins and their threads).
 *
 * Settings beyond struct sw_config (environment only):
 *   SAGEWAI_LLM_BASE_URL        OpenAI-compatible base (https://api.openai.com/v1)
 *   SAGEWAI_LLM_API_KEY         bearer key of the llm kind (never logged); or
 *                               SAGEWAI_LLM_API_KEY_FILE, a 0600 file holding it
 *   SAGEWAI_LLM_MODEL           default model (gpt-4o-mini)
 *   SAGEWAI_PLUGIN_DIR          every *.so in it is loaded at start
 *   SAGEWAI_STEP_OUTPUT_MAX     cap of any step's output in bytes (1 MiB)
 *   SAGEWAI_WORKER_CONCURRENCY  steps executing at once (64)
 *   SAGEWAI_WORKER_STARTED_AFTER_MS  step.started once a step has run this
 *                               long (20); a step done sooner has none; 0: at once
 *   SAGEWAI_WORKER_PRODUCE_GATHER  1 (default): outcomes produced while others
 *                               are in flight go together once those are
 *                               delivered (libs/bus/producer.c); 0: each at once
 *   SAGEWAI_SEALED_PREVIEW      1 lets identity-bearing workflows run in
 *                               multi_tenant mode (preview gate)
 *   SAGEWAI_WORKER_OTHER_MODES  refuse (default): a dispatch of another mode than
 *                               in_process fails "mode_unavailable: ..."; ignore:
 *                               leave sandboxed, identity_scoped and cli_agent
 *                               steps to sandboxd (the others are still refused,
 *                               after the preview-gate check)
 *   SAGEWAI_KAFKA_MESSAGE_MAX   largest event the bus carries (1000000)
 *   SAGEWAI_PG_POOL             PostgreSQL connections of the results table (4)
 *   SAGEWAI_HTTP_ALLOW          destinations an http step may reach although not
 *                               public (loopback, private, link-local, ...):
 *                               "ADDR[/BITS][:PORT],[V6ADDR[/BITS]]:PORT,..."
 *                               (sw_addr.h); empty: public addresses only
 *   SAGEWAI_KAFKA_CONSUMER_CONFIG  "name=value,..." librdkafka tuning
 *   SAGEWAI_KAFKA_PRODUCER_CONFIG  the same for the producer
 *   SAGEWAI_INSTANCE_ID         this instance's group.instance.id (static group
 *                               membership: a restart gets its partitions back at
 *                               once); stable across restarts, unique in the group;
 *                               unset: dynamic membership (exec.c)
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* The worker's own settings (environment only), before the loop exists. */
static int worker_configure(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct worker_env *env = arg;
	char *const *envp = sw_service_environ(svc);
	const char *v;
	char msg[300];
	long long n;
	size_t len;

	env->svc = svc;
	env->cfg = sw_service_config(svc);

	v = sw_config_env(envp, "SAGEWAI_LLM_BASE_URL");
	snprintf(env->llm_base, sizeof(env->llm_base), "%s",
		 v && *v ? v : "https://api.openai.com/v1");
	len = strlen(env->llm_base);
	while (len > 0 && env->llm_base[len - 1] == '/')
		env->llm_base[--len] = '\0';
	if (sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", env->llm_key, sizeof(env->llm_key), err,
			     errlen) == -1)
		return -1;
	if (strpbrk(env->llm_key, "\r\n") != NULL) {
		snprintf(err, errlen, "SAGEWAI_LLM_API_KEY holds a line break");
		return -1;
	}
	v = sw_config_env(envp, "SAGEWAI_LLM_MODEL");
	snprintf(env->llm_model, sizeof(env->llm_model), "%s", v && *v ? v : "gpt-4o-mini");

	if (sw_config_number(envp, "SAGEWAI_STEP_OUTPUT_MAX", WORKER_OUTPUT_MAX_DEFAULT, 1,
			     LLONG_MAX, &n, err, errlen) == -1)
		return -1;
	env->output_cap = (size_t)n;
	if (sw_config_number(envp, "SAGEWAI_KAFKA_MESSAGE_MAX", WORKER_BUS_MAX_DEFAULT, 4096,
			     LLONG_MAX, &n, err, errlen) == -1)
		return -1;
	env->bus_max = (size_t)n;
	if (sw_config_number(envp, "SAGEWAI_WORKER_CONCURRENCY", WORKER_CONCURRENCY_DEFAULT, 1,
			     100000, &n, err, errlen) == -1)
		return -1;
	env->concurrency = (int)n;
	if (sw_config_number(envp, "SAGEWAI_WORKER_STARTED_AFTER_MS",
			     WORKER_STARTED_AFTER_MS_DEFAULT, 0, 3600000, &n, err, errlen) == -1)
		return -1;
	env->started_after_ms = (int)n;
	if (sw_config_number(envp, "SAGEWAI_WORKER_PRODUCE_GATHER", 1, 0, 1, &n, err, errlen) ==
	    -1)
		return -1;
	env->produce_at_once = n == 0;
	if (sw_config_number(envp, "SAGEWAI_PG_POOL", WORKER_PG_POOL_DEFAULT, 1, 64, &n, err,
			     errlen) == -1)
		return -1;
	env->pg_pool = (size_t)n;
	v = sw_config_env(envp, "SAGEWAI_WORKER_OTHER_MODES");
	if (v != NULL && strcmp(v, "ignore") == 0) {
		env->ignore_other_modes = 1;
	} else if (v != NULL && *v && strcmp(v, "refuse") != 0) {
		snprintf(err, errlen, "SAGEWAI_WORKER_OTHER_MODES: refuse or ignore");
		return -1;
	}
	v = sw_config_env(envp, "SAGEWAI_HTTP_ALLOW");
	if (sw_addr_allow_parse(&env->http_allow, v, msg, sizeof(msg)) == -1) {
		snprintf(err, errlen, "SAGEWAI_HTTP_ALLOW: %s", msg);
		return -1;
	}
	env->http_allow_spec = v != NULL && *v ? v : "none";
	v = sw_config_env(envp, "SAGEWAI_SEALED_PREVIEW");
	env->sealed_preview = v != NULL && strcmp(v, "1") == 0;
	if (strcmp(env->cfg->mode, "multi_tenant") == 0) {
		env->multi_tenant = 1;
	} else if (env->cfg->mode[0] != '\0' && strcmp(env->cfg->mode, "single_org") != 0) {
		snprintf(err, errlen,
			 "SAGEWAI_MODE: '%.40s' is neither single_org nor multi_tenant",
			 env->cfg->mode);
		return -1;
	}
	return 0;
}

/* Plugins first: a bad one refuses the start before we join anything.
 * The executor exists before the transfers and the plugin threads that
 * finish its jobs, and those before it takes a message. */
static int worker_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct worker_env *env = arg;
	char *const *envp = sw_service_environ(svc);
	const char *plugin_dir, *kv[13];
	char conc[16];

	env->base = sw_service_base(svc);
	env->metrics = sw_service_metrics(svc);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "curl_global_init failed");
		return -1;
	}
	env->curl_global = 1;
	plugin_dir = sw_config_env(envp, "SAGEWAI_PLUGIN_DIR");
	if (plugin_dir != NULL && *plugin_dir &&
	    worker_plugins_load(env, plugin_dir, err, errlen) == -1)
		return -1;
	if ((env->reg = sw_events_registry_new(err, errlen)) == NULL)
		return -1;
	if (worker_exec_new(env, err, errlen) == -1 || worker_curl_init(env, err, errlen) == -1 ||
	    worker_pool_start(env, err, errlen) == -1 ||
	    worker_exec_connect(env, err, errlen) == -1)
		return -1;
	if (sw_service_http(svc, 64 << 10, err, errlen) == NULL)
		return -1;
	snprintf(conc, sizeof(conc), "%d", env->concurrency);
	kv[0] = "group";
	kv[1] = env->group;
	kv[2] = "concurrency";
	kv[3] = conc;
	kv[4] = "mode";
	kv[5] = env->multi_tenant ? "multi_tenant" : "single_org";
	kv[6] = "llm_model";
	kv[7] = env->llm_model;
	kv[8] = "llm_key";
	kv[9] = env->llm_key[0] ? "set" : "unset";
	kv[10] = "http_allow";
	kv[11] = env->http_allow_spec;
	kv[12] = NULL;
	sw_service_started_fields(svc, kv);
	return 0;
}

/* First signal: stop taking messages and let running steps finish for up
 * to WORKER_DRAIN_S (the executor ends the loop then, reporting the steps
 * left); a second one stops at once. Unfinished steps are not committed,
 * so another member (or the next start) runs them. */
static void worker_drain(struct sw_service *svc, void *arg)
{
	struct worker_env *env = arg;

	(void)svc;
	sw_executor_shutdown(env->ex, WORKER_DRAIN_S);
}

static int worker_drained(void *arg)
{
	const struct worker_env *env = arg;

	return sw_executor_njobs(env->ex) == 0 && sw_executor_inflight(env->ex) == 0;
}

/* Fatal: nothing more is taken from the bus. */
static void worker_halt(void *arg)
{
	struct worker_env *env = arg;

	if (env->ex != NULL)
		sw_executor_halt(env->ex);
}

static void worker_stop(struct sw_service *svc, void *arg)
{
	struct worker_env *env = arg;

	(void)svc;
	worker_exec_close(env);
	worker_pool_stop(env);
	worker_curl_cleanup(env);
	worker_plugins_unload(env);
	sw_events_registry_destroy(env->reg);
	env->reg = NULL;
	if (env->curl_global)
		curl_global_cleanup();
	env->curl_global = 0;
	explicit_bzero(env->llm_key, sizeof(env->llm_key));
	sw_addr_allow_free(&env->http_allow);
}

static int worker_health(void *arg)
{
	const struct worker_env *env = arg;

	return env->store != NULL && sw_store_connected(env->store) ? 0 : -1;
}

static const struct sw_service_def worker_def = {
	.name = "worker",
	.help = "Executes the in_process steps dispatched on sagewai.steps (consumer group\n"
		"$SAGEWAI_GROUP_ID, default sagewai-worker) and publishes step.started and\n"
		"step.finished; results are kept in PostgreSQL (schema worker) so that a\n"
		"redelivered dispatch re-publishes its result. Step kinds: template, llm,\n"
		"http, plugin:<name> (plugins from $SAGEWAI_PLUGIN_DIR).\n",
	/* the executor's own grace, and time for its report */
	.drain_ms = (WORKER_DRAIN_S + 5) * 1000,
	.configure = worker_configure,
	.start = worker_start,
	.drain = worker_drain,
	.drained = worker_drained,
	.halt = worker_halt,
	.stop = worker_stop,
	.health = worker_health,
};

/* The one env of the process, handed to every callback. */
static struct worker_env env;

int main(int argc, char **argv)
{
	return sw_service_main(&worker_def, &env, argc, argv);
}
