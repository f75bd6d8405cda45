/*
 * sagewai-audit: see audit.h.
 *
 *   sagewai-audit [serve]          run the service (configuration from the
 *                                  environment and $SAGEWAI_CONFIG)
 *   sagewai-audit verify DIR       check a log offline
 *   sagewai-audit dump DIR [--from SEQ]   print a log's records as JSON lines
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <event2/thread.h>

#include "audit.h"

extern char **environ;

void audit_fatal(struct audit_env *env, const char *what, const char *why)
{
	sw_log(SW_LOG_ERROR, what, "error", why, NULL);
	env->exit_code = 1;
	event_base_loopbreak(env->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct audit_env *env = arg;

	(void)what;
	sw_log(SW_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
	event_base_loopbreak(env->base);
}

static int mkdirs(const char *path)
{
	char buf[SW_CONFIG_STR + 16];
	char *p;

	if ((size_t)snprintf(buf, sizeof(buf), "%s", path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, 0700) == -1 && errno != EEXIST ? -1 : 0;
}

static int serve(void)
{
	static const char *const topics[] = {"^sagewai\\..*", NULL};
	/* operator tuning: SAGEWAI_KAFKA_CONSUMER_CONFIG="name=value,name=value" */
	const char *extra[34] = {"topic.metadata.refresh.interval.ms=2000"};
	char tuning[SW_CONFIG_STR];
	struct audit_env env_s, *env = &env_s;
	char err[512], port[16], repaired_s[24];
	size_t repaired = 0;
	const char *group;

	memset(env, 0, sizeof(*env));
	if (sw_config_load(&env->cfg, getenv("SAGEWAI_CONFIG"), environ, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagewai-audit: configuration: %s\n", err);
		return 2;
	}
	sw_log_init("audit", stderr, sw_log_level_parse(env->cfg.log_level));
	if (evthread_use_pthreads() == -1 || (env->base = event_base_new()) == NULL) {
		sw_log(SW_LOG_ERROR, "libevent initialisation failed", NULL);
		return 1;
	}
	if ((env->reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		goto fail;
	if ((size_t)snprintf(env->log_dir, sizeof(env->log_dir), "%s/audit",
			     env->cfg.data_dir) >= sizeof(env->log_dir) ||
	    mkdirs(env->log_dir) == -1) {
		snprintf(err, sizeof(err), "cannot create %.300s/audit: %s", env->cfg.data_dir,
			 strerror(errno));
		goto fail;
	}
	if ((env->log = sw_alog_open(env->log_dir, AUDIT_SEGMENT_MAX, &repaired, err,
				     sizeof(err))) == NULL)
		goto fail;
	if (repaired > 0) {
		snprintf(repaired_s, sizeof(repaired_s), "%zu", repaired);
		sw_log(SW_LOG_WARN, "torn tail of the audit log repaired", "bytes_cut", repaired_s,
		       NULL);
	}
	if ((env->metrics = sw_metrics_new()) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if ((env->store = sw_store_new(env->base, env->cfg.pg_dsn, "audit", audit_migrations,
				       audit_nmigrations, err, sizeof(err))) == NULL)
		goto fail;
	if (audit_recover(env, err, sizeof(err)) == -1)
		goto fail;
	env->producer = sw_bus_producer_new(env->base, env->cfg.kafka_bootstrap, "sagewai-audit",
					    NULL, audit_ingest_delivery, env, err, sizeof(err));
	if (env->producer == NULL)
		goto fail;
	if (audit_ingest_start(env, err, sizeof(err)) == -1)
		goto fail;
	group = env->cfg.group_id[0] ? env->cfg.group_id : "sagewai-audit";
	if (sw_config_list(environ, "SAGEWAI_KAFKA_CONSUMER_CONFIG", extra, 1,
			   sizeof(extra) / sizeof(extra[0]), tuning, sizeof(tuning), err,
			   sizeof(err)) == -1)
		goto fail;
	env->consumer = sw_bus_consumer_new(env->base, env->cfg.kafka_bootstrap, group, topics,
					    extra, AUDIT_MAX_BATCH, audit_ingest_batch, env, err,
					    sizeof(err));
	if (env->consumer == NULL)
		goto fail;
	if (audit_api_start(env, err, sizeof(err)) == -1)
		goto fail;
	env->sigterm = evsignal_new(env->base, SIGTERM, on_signal, env);
	env->sigint = evsignal_new(env->base, SIGINT, on_signal, env);
	if (env->sigterm == NULL || env->sigint == NULL || evsignal_add(env->sigterm, NULL) == -1 ||
	    evsignal_add(env->sigint, NULL) == -1) {
		snprintf(err, sizeof(err), "cannot install signal events");
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(port, sizeof(port), "%d", sw_http_port(env->http));
	sw_log(SW_LOG_INFO, "audit started", "log", env->log_dir, "http_port", port, "group", group,
	       NULL);

	event_base_dispatch(env->base);

	audit_ingest_stop(env);
	if (sw_bus_consumer_close(env->consumer) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
	sw_bus_producer_flush(env->producer, 5000);
	sw_log(SW_LOG_INFO, "audit stopped", NULL);
	sw_bus_consumer_destroy(env->consumer);
	sw_bus_producer_destroy(env->producer);
	sw_http_destroy(env->http);
	sw_store_destroy(env->store);
	sw_alog_close(env->log);
	sw_metrics_destroy(env->metrics);
	sw_events_registry_destroy(env->reg);
	audit_idset_free(&env->seen);
	event_free(env->sigterm);
	event_free(env->sigint);
	if (env->written_ev)
		event_free(env->written_ev);
	event_base_free(env->base);
	return env->exit_code;
fail:
	sw_log(SW_LOG_ERROR, "audit failed to start", "error", err, NULL);
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sagewai-audit [serve]\n"
		   "       sagewai-audit verify DIR\n"
		   "       sagewai-audit dump DIR [--from SEQ]\n"
		   "\n"
		   "serve: consume every sagewai.* topic into the hash-chained log in\n"
		   "  $SAGEWAI_DATA_DIR/audit, index it in PostgreSQL (schema audit) and\n"
		   "  answer GET /v1/audit/runs/{id}, /healthz and /metrics on\n"
		   "  $SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT.\n"
		   "verify: check every record's hash, the chain and the sequence; exit 1\n"
		   "  naming the first bad record.\n"
		   "dump: print each record as one JSON line, events decoded.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "serve") == 0)
		return serve();
	if (strcmp(argv[1], "verify") == 0)
		return audit_cmd_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "dump") == 0)
		return audit_cmd_dump(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "sagewai-audit: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
