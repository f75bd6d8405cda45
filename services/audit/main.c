/*
 * sagewai-audit: see audit.h. The frame (libs/service) runs the daemon;
 * this file wires the roles together:
 *
 *   ingest.c     the log, the writer thread, the consumer and dead letters
 *   checkpoint.c the settings, signed checkpoints and their publication
 *   dedupe.c     the dedupe window and its lookups in the index
 *   idset.c      the id sets of the window
 *   index.c      the index in PostgreSQL
 *   api.c        GET /v1/audit/runs/{id}
 *   feed.c       GET /v1/audit/events (cursor, long poll)
 *   tool.c       the offline commands verify, dump, keygen and export
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"

/* The settings and the signing key, before anything else. */
static int audit_configure(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct audit_env *env = arg;

	env->svc = svc;
	env->cfg = sw_service_config(svc);
	return audit_config_load(env, err, errlen);
}

static const char *audit_health_reason(void *arg)
{
	return audit_health_why(arg);
}

/* Build the roles in order: the log and its index are complete before
 * anything is consumed. */
static int audit_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct audit_env *env = arg;
	const char *kv[9];

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
	sw_http_set_health_reason(env->http, audit_health_reason, env);
	kv[0] = "log";
	kv[1] = env->log_dir;
	kv[2] = "group";
	kv[3] = env->group;
	kv[4] = "log_id";
	kv[5] = env->log_id;
	kv[6] = "checkpoints";
	kv[7] = env->signer != NULL ? sw_alog_signer_key_id(env->signer) : "off";
	kv[8] = NULL;
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
	audit_index_flush(env, 5000);
	sw_store_destroy(env->store);
	sw_alog_close(env->log);
	sw_events_registry_destroy(env->reg);
	audit_cp_stop(env);
	audit_dedupe_free(&env->seen);
	free(env->repair_msg);
}

static int audit_health(void *arg)
{
	return audit_health_why(arg) != NULL ? -1 : 0;
}

static const struct sw_service_cmd audit_cmds[] = {
	{"verify", audit_cmd_verify},
	{"dump", audit_cmd_dump},
	{"keygen", audit_cmd_keygen},
	{"export", audit_cmd_export},
	{NULL, NULL},
};

static const struct sw_service_def audit_def = {
	.name = "audit",
	.synopsis = "       sagewai-audit verify DIR [--pubkeys FILE] [--checkpoints FILE |\n"
		    "                     --checkpoints-from-kafka BOOTSTRAP] [--log-id ID] [--json]\n"
		    "       sagewai-audit verify --bundle FILE [--pubkeys FILE] [--json]\n"
		    "       sagewai-audit dump DIR [--from SEQ]\n"
		    "       sagewai-audit keygen --key-id ID --secret-key FILE [--public-keys FILE]\n"
		    "       sagewai-audit export DIR --run ID [--pubkeys FILE] [-o FILE]\n",
	.help = "serve: consume every sagewai.* topic into the hash-chained log in\n"
		"  $SAGEWAI_DATA_DIR/audit, index it in PostgreSQL (schema audit), sign\n"
		"  checkpoints with $SAGEWAI_AUDIT_SIGNING_KEY_FILE and publish them on\n"
		"  sagewai.audit.checkpoints, and answer GET /v1/audit/runs/{id} and\n"
		"  /v1/audit/events.\n"
		"verify: check every record's hash, the chain, the sequence and every\n"
		"  checkpoint's signature (public keys: --pubkeys or $SAGEWAI_AUDIT_PUBKEYS),\n"
		"  and the log against its published checkpoints; or check a bundle. Exit 1\n"
		"  naming the first bad record.\n"
		"dump: print each record as one JSON line, events decoded.\n"
		"keygen: make a signing key file (0600) and add its public key to a list.\n"
		"export: one run's records with the checkpoints and proofs that cover them,\n"
		"  a bundle that verify --bundle checks without the log.\n",
	.cmds = audit_cmds,
	.configure = audit_configure,
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
