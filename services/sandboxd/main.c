/*
 * sagewai-sandboxd: see sandboxd.h.
 *
 *   sagewai-sandboxd [serve]    run the service; configuration from the
 *                               environment and $SAGEWAI_CONFIG
 *
 * Settings beyond struct sw_config (environment only):
 *   SAGEWAI_SANDBOX_VARIANTS_DIR   the variant catalogue (build tree's
 *                                  infra/sandbox/variants)
 *   SAGEWAI_SANDBOX_RUNNER         sagewai-toolrunner (the build tree's)
 *   SAGEWAI_SANDBOX_BWRAP          bubblewrap (/usr/bin/bwrap)
 *   SAGEWAI_SANDBOX_STATE_DIR      where workspaces live; a fresh directory
 *                                  under it is made and removed (/tmp)
 *   SAGEWAI_SANDBOXD_USER          started as root, the part that speaks Kafka,
 *                                  PostgreSQL and HTTP runs as this user (name,
 *                                  uid or uid:gid; 65533:65533, not the sandboxes'
 *                                  65534); only the privileged part keeps root
 *   SAGEWAI_SANDBOX_MAX            sandboxes held at once, warm ones included (256)
 *   SAGEWAI_SANDBOX_CGROUP         per-sandbox cgroups bounding each sandbox's memory
 *                                  and tasks as a whole: auto (the default: v2, else
 *                                  v1, else off with the reason logged), v1, v2, off
 *   SAGEWAI_SANDBOX_NETWORKS       network policies offered (none,egress_only,full;
 *                                  none,egress_only in multi_tenant mode: `full`
 *                                  reaches the host's own loopback services)
 *   SAGEWAI_EGRESS_PRIVATE         allow: egress_only steps may reach listed hosts
 *                                  that resolve to loopback/private addresses
 *                                  (deny, the default, protects the host's services)
 *   SAGEWAI_SANDBOX_WARM           warm sandboxes per (variant, network) (2)
 *   SAGEWAI_SANDBOX_OUTPUT_EVENTS_MAX  bytes of a step's output sent as
 *                                  sandbox.output events (65536)
 *   SAGEWAI_SANDBOXD_CONCURRENCY   steps executing at once (16)
 *   SAGEWAI_STEP_OUTPUT_MAX        cap of any step's captured output (1 MiB)
 *   SAGEWAI_MODE, SAGEWAI_SEALED_PREVIEW  the preview gate's backstop: in
 *                                  multi_tenant mode, no step of a workflow with an
 *                                  identity-bearing mode runs unless the preview is on
 *   SAGEWAI_KAFKA_MESSAGE_MAX      largest event the bus carries (1000000)
 *   SAGEWAI_KAFKA_CONSUMER_CONFIG  "name=value,..." librdkafka tuning
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <event2/dns.h>
#include <event2/thread.h>

#include "sandboxd.h"
#include "sw_executor.h"

extern char **environ;

void sbd_fatal(struct sbd_env *env, const char *what, const char *why)
{
	sw_log(SW_LOG_ERROR, what, "error", why, NULL);
	env->exit_code = 1;
	if (env->ex != NULL)
		sw_executor_halt(env->ex);
	event_base_loopbreak(env->base);
}

void sbd_on_fatal(void *arg, const char *what, const char *why)
{
	sbd_fatal(arg, what, why);
}

void sbd_report(void *arg, const struct sw_executor_report *r)
{
	(void)arg;
	sw_log_kv(r->level, r->msg, r->fields);
}

/* First signal: stop taking messages and let running steps finish for up
 * to SBD_DRAIN_S; a second one stops at once. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sbd_env *env = arg;

	(void)what;
	sw_log(SW_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
	sw_executor_shutdown(env->ex, SBD_DRAIN_S);
}

static int health(void *opaque)
{
	struct sbd_env *env = opaque;

	return sw_store_connected(env->store) ? 0 : -1;
}

/* "none,egress_only" -> a bit per enum sw_sandbox_net. 0 or -1. */
static int networks_parse(const char *list, unsigned *out)
{
	char buf[128], *tok, *save = NULL;
	enum sw_sandbox_net net;

	if (strlen(list) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", list);
	*out = 0;
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (sw_sandbox_net_parse(tok, &net) != 0)
			return -1;
		*out |= 1u << net;
	}
	return *out != 0 ? 0 : -1;
}

struct paths {
	char state_parent[400];
};

static int settings_load(struct sbd_env *env, struct paths *pt, struct sbd_priv_config *pc,
			 char *err, size_t errlen)
{
	const char *v;
	long long n;

	if (sw_config_number(environ, "SAGEWAI_STEP_OUTPUT_MAX", SBD_OUTPUT_MAX_DEFAULT, 1,
			     1LL << 30, &n, err, errlen) == -1)
		return -1;
	env->output_cap = (size_t)n;
	/* the preview gate's backstop, as in the worker */
	env->multi_tenant = strcmp(env->cfg.mode, "multi_tenant") == 0;
	v = sw_config_env(environ, "SAGEWAI_SEALED_PREVIEW");
	env->sealed_preview = v != NULL && strcmp(v, "1") == 0;
	if (sw_config_number(environ, "SAGEWAI_KAFKA_MESSAGE_MAX", SBD_BUS_MAX_DEFAULT, 65536,
			     1LL << 30, &n, err, errlen) == -1)
		return -1;
	env->bus_max = (size_t)n;
	if (sw_config_number(environ, "SAGEWAI_SANDBOXD_CONCURRENCY", SBD_CONCURRENCY_DEFAULT, 1,
			     10000, &n, err, errlen) == -1)
		return -1;
	env->concurrency = (int)n;
	if (sw_config_number(environ, "SAGEWAI_SANDBOX_WARM", SBD_WARM_DEFAULT, 0, 1000, &n, err,
			     errlen) == -1)
		return -1;
	env->pool.warm_target = (size_t)n;
	if (sw_config_number(environ, "SAGEWAI_SANDBOX_OUTPUT_EVENTS_MAX",
			     SBD_OUTPUT_EVENTS_DEFAULT, 0, 1LL << 30, &n, err, errlen) == -1)
		return -1;
	env->output_events_max = (size_t)n;
	v = sw_config_env(environ, "SAGEWAI_SANDBOX_VARIANTS_DIR");
	snprintf(env->pool.variants_dir, sizeof(env->pool.variants_dir), "%s",
		 v && *v ? v : SBD_DEFAULT_VARIANTS_DIR);
	snprintf(pc->variants_dir, sizeof(pc->variants_dir), "%s", env->pool.variants_dir);
	v = sw_config_env(environ, "SAGEWAI_SANDBOX_RUNNER");
	snprintf(pc->runner, sizeof(pc->runner), "%s", v && *v ? v : SBD_DEFAULT_RUNNER);
	v = sw_config_env(environ, "SAGEWAI_SANDBOX_BWRAP");
	snprintf(pc->bwrap, sizeof(pc->bwrap), "%s", v && *v ? v : "/usr/bin/bwrap");
	v = sw_config_env(environ, "SAGEWAI_SANDBOXD_USER");
	snprintf(pc->user, sizeof(pc->user), "%s", v && *v ? v : SBD_USER_DEFAULT);
	v = sw_config_env(environ, "SAGEWAI_SANDBOX_CGROUP");
	snprintf(pc->cgroup, sizeof(pc->cgroup), "%s", v && *v ? v : "auto");
	if (sw_config_number(environ, "SAGEWAI_SANDBOX_MAX", SBD_SANDBOX_MAX_DEFAULT, 1, 100000,
			     &n, err, errlen) == -1)
		return -1;
	pc->max_sandboxes = (size_t)n;
	v = sw_config_env(environ, "SAGEWAI_EGRESS_PRIVATE");
	if (v != NULL && *v != '\0' && strcmp(v, "allow") != 0 && strcmp(v, "deny") != 0) {
		snprintf(err, errlen, "SAGEWAI_EGRESS_PRIVATE: allow or deny");
		return -1;
	}
	env->egress_private = v != NULL && strcmp(v, "allow") == 0;
	/* network policies offered; `full` (the host's network, its loopback
	 * services included) only where the operator says so in multi_tenant */
	v = sw_config_env(environ, "SAGEWAI_SANDBOX_NETWORKS");
	if (v == NULL || *v == '\0')
		v = env->multi_tenant ? "none,egress_only" : "none,egress_only,full";
	if (networks_parse(v, &env->networks) != 0) {
		snprintf(err, errlen, "SAGEWAI_SANDBOX_NETWORKS: a comma list of none, egress_only, "
				      "full");
		return -1;
	}
	v = sw_config_env(environ, "SAGEWAI_SANDBOX_STATE_DIR");
	snprintf(pt->state_parent, sizeof(pt->state_parent), "%s", v && *v ? v : "/tmp");
	return 0;
}

static void teardown(struct sbd_env *env)
{
	sw_executor_destroy(env->ex); /* hands every held sandbox back to the pool */
	env->ex = NULL;
	sbd_pool_stop(env);    /* destroys them all, then joins */
	if (env->dns)
		evdns_base_free(env->dns, 1); /* runs pending cancel callbacks */
	if (env->http)
		sw_http_destroy(env->http);
	if (env->store)
		sw_store_destroy(env->store);
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
}

static int serve(void)
{
	static const char *const topics[] = {SW_TOPIC_STEPS, SW_TOPIC_RUNS, NULL};
	const char *extra[34] = {"topic.metadata.refresh.interval.ms=2000",
				 "partition.assignment.strategy=range"};
	const char *pextra[2] = {NULL, NULL};
	char tuning[SW_CONFIG_STR], msgmax[64];
	struct sw_executor_config xc;
	struct sbd_env env_s, *env = &env_s;
	char err[1024], port[16], warm[16];
	struct paths pt;
	struct sbd_priv_config pc;
	const char *group;
	int priv_fd = -1;

	memset(env, 0, sizeof(*env));
	memset(&pc, 0, sizeof(pc));
	if (sw_config_load(&env->cfg, getenv("SAGEWAI_CONFIG"), environ, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagewai-sandboxd: configuration: %s\n", err);
		return 2;
	}
	sw_log_init("sandboxd", stderr, sw_log_level_parse(env->cfg.log_level));
	if (settings_load(env, &pt, &pc, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "bad configuration", "error", err, NULL);
		return 2;
	}
	snprintf(pc.state_dir, sizeof(pc.state_dir), "%s/sagewai-sandboxd-XXXXXX",
		 pt.state_parent);
	if (mkdtemp(pc.state_dir) == NULL) {
		sw_log(SW_LOG_ERROR, "sandboxd failed to start", "error", strerror(errno),
		       "state_dir", pt.state_parent, NULL);
		return 1;
	}
	if (sbd_pool_catalogue(env, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "sandboxd failed to start", "error", err, NULL);
		rmdir(pc.state_dir);
		return 1;
	}
	/* before any thread: the privileged part forks off here */
	if (sbd_priv_split(&pc, &priv_fd, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "sandboxd failed to start", "error", err, NULL);
		rmdir(pc.state_dir);
		return 1;
	}
	{
		char host[128];

		if (gethostname(host, sizeof(host)) == -1)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		snprintf(env->executor, sizeof(env->executor), "sagewai-sandboxd@%s/%d", host,
			 (int)getpid());
	}
	if (evthread_use_pthreads() == -1 || (env->base = event_base_new()) == NULL) {
		sw_log(SW_LOG_ERROR, "libevent initialisation failed", NULL);
		return 1;
	}
	/* the egress proxies' resolver (/etc/resolv.conf and /etc/hosts) */
	env->dns = evdns_base_new(env->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						 EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (env->dns == NULL) {
		sw_log(SW_LOG_WARN, "no usable /etc/resolv.conf: egress_only steps reach listed "
				    "hosts by address or /etc/hosts only", NULL);
		if ((env->dns = evdns_base_new(env->base, 0)) == NULL ||
		    evdns_base_load_hosts(env->dns, NULL) != 0) {
			sw_log(SW_LOG_ERROR, "resolver initialisation failed", NULL);
			return 1;
		}
	}
	if ((env->reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		goto fail;
	if ((env->metrics = sw_metrics_new()) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (sbd_pool_start(env, priv_fd, err, sizeof(err)) == -1)
		goto fail;
	if ((env->store = sw_executor_store_new(env->base, env->cfg.pg_dsn, "sandboxd", 1, err,
						sizeof(err))) == NULL)
		goto fail;
	memset(&xc, 0, sizeof(xc));
	xc.base = env->base;
	xc.reg = env->reg;
	xc.store = env->store;
	xc.metrics = env->metrics;
	xc.producer = SBD_PRODUCER;
	xc.metrics_prefix = "sagewai_sandboxd";
	xc.executor = env->executor;
	xc.bus_max = env->bus_max;
	xc.concurrency = env->concurrency;
	/* the preview gate's backstop, as in the worker */
	xc.refuse_identity_modes = env->multi_tenant && !env->sealed_preview;
	xc.ops = &sbd_exec_ops;
	xc.arg = env;
	if ((env->ex = sw_executor_new(&xc, err, sizeof(err))) == NULL)
		goto fail;
	group = env->cfg.group_id[0] ? env->cfg.group_id : SBD_DEFAULT_GROUP;
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
	/* the common case warms up at once; other pools on first use */
	if (env->pool.warm_target > 0 &&
	    sbd_pool_warm(env, "base", SW_SANDBOX_NET_NONE, err, sizeof(err)) == NULL)
		sw_log(SW_LOG_WARN, "no warm pool for variant base", "error", err, NULL);
	sbd_pool_metrics(env);
	snprintf(port, sizeof(port), "%d", sw_http_port(env->http));
	snprintf(warm, sizeof(warm), "%zu", env->pool.warm_target);
	sw_log(SW_LOG_INFO, "sandboxd started", "group", group, "http_port", port, "warm", warm,
	       "variants", env->pool.variants_dir, "state_dir", pc.state_dir, NULL);

	event_base_dispatch(env->base);

	if (sw_executor_close(env->ex, 5000) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
	sw_log(SW_LOG_INFO, "sandboxd stopped", NULL);
	teardown(env);
	return env->exit_code;
fail:
	sw_log(SW_LOG_ERROR, "sandboxd failed to start", "error", err, NULL);
	teardown(env);
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sagewai-sandboxd [serve]\n"
		   "\n"
		   "Runs the sandboxed steps dispatched on sagewai.steps (consumer group\n"
		   "$SAGEWAI_GROUP_ID, default sagewai-sandboxd), each in a fresh bubblewrap\n"
		   "sandbox from a warm pool, and publishes step.started, step.finished and the\n"
		   "sandbox lifecycle on sagewai.sandbox; results are kept in PostgreSQL (schema\n"
		   "sandboxd) so that a redelivered dispatch re-publishes its result. /healthz\n"
		   "and /metrics on $SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "serve") == 0)
		return serve();
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "sagewai-sandboxd: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
