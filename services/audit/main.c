/*
 * sagewai-audit: see audit.h. The frame (libs/service) runs the daemon;
 * this file wires the roles together:
 *
 *   ingest.c   the log, the writer thread, the consumer and dead letters
 *   index.c    the index in PostgreSQL
 *   api.c      GET /v1/audit/runs/{id}
 *   feed.c     GET /v1/audit/events (cursor, long poll)
 *   tool.c     the offline commands verify and dump
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"

/* Build the roles in order: the log and its index are complete before
 * anything is consumed. */
static int audit_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct audit_env *env = arg;
	const char *kv[5];

	env->svc = svc;
	env->cfg = sw_service_config(svc);
	env->base = sw_service_base(svc);
	env->metrics = sw_service_metrics(svc);
	if ((env->reg = sw_events_registry_new(err, errlen)) == NULL)
		return -1;
	if ((env->store = sw_store_new(env->base, env->cfg->pg_dsn, "audit", audit_migrations,
				       audit_nmigrations, err, errlen)) == NULL ||
	    audit_log_open(env, err, errlen) == -1)
		return -1;
	if (audit_recover(env, err, errlen) == -1 || audit_ingest_start(env, err, errlen) == -1 ||
	    audit_api_start(env, err, errlen) == -1)
		return -1;
	kv[0] = "log";
	kv[1] = env->log_dir;
	kv[2] = "group";
	kv[3] = env->group;
	kv[4] = NULL;
	sw_service_started_fields(svc, kv);
	return 0;
}

static void audit_drain(struct sw_service *svc, void *arg)
{
	(void)svc;
	audit_ingest_drain(arg);
}

static int audit_drained(void *arg)
{
	return audit_ingest_idle(arg);
}

static void audit_halt(void *arg)
{
	struct audit_env *env = arg;

	env->halted = 1;
}

static void audit_stop(struct sw_service *svc, void *arg)
{
	struct audit_env *env = arg;

	(void)svc;
	audit_feed_stop(env);
	audit_ingest_stop(env);
	sw_store_destroy(env->store);
	sw_alog_close(env->log);
	sw_events_registry_destroy(env->reg);
	audit_idset_free(&env->seen);
	free(env->repair_msg);
}

static int audit_health(void *arg)
{
	const struct audit_env *env = arg;

	return env->halted ? -1 : 0;
}

static const struct sw_service_cmd audit_cmds[] = {
	{"verify", audit_cmd_verify},
	{"dump", audit_cmd_dump},
	{NULL, NULL},
};

static const struct sw_service_def audit_def = {
	.name = "audit",
	.synopsis = "       sagewai-audit verify DIR [--json]\n"
		    "       sagewai-audit dump DIR [--from SEQ]\n",
	.help = "serve: consume every sagewai.* topic into the hash-chained log in\n"
		"  $SAGEWAI_DATA_DIR/audit, index it in PostgreSQL (schema audit) and\n"
		"  answer GET /v1/audit/runs/{id} and /v1/audit/events.\n"
		"verify: check every record's hash, the chain and the sequence; exit 1\n"
		"  naming the first bad record.\n"
		"dump: print each record as one JSON line, events decoded.\n",
	.cmds = audit_cmds,
	.start = audit_start,
	.drain = audit_drain,
	.drained = audit_drained,
	.halt = audit_halt,
	.stop = audit_stop,
	.health = audit_health,
};

/* The one env of the process, handed to every callback. */
static struct audit_env env;

int main(int argc, char **argv)
{
	return sw_service_main(&audit_def, &env, argc, argv);
}
