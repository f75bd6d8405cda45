/*
 * sagewai-identity: see identity.h. The frame (libs/service) runs the
 * process; this file wires the roles together.
 *
 * SIGTERM / SIGINT: stop reading requests, finish the resolutions, seals,
 * Vault calls and HTTP changes in hand and their deliveries (at most
 * drain_ms), commit the stored offsets, leave the group, exit 0. What was
 * not answered is redelivered to the group at restart.
 */
#include <stdlib.h>
#include <curl/curl.h>

#include "identity.h"

static struct id_env env_s;

static int id_configure(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct id_env *env = arg;

	env->svc = svc;
	env->cfg = sw_service_config(svc);
	env->envp = sw_service_environ(svc);
	if (id_config_load(env, err, errlen) == -1)
		return -1;
	return id_mint_load(env, err, errlen);
}

static int id_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct id_env *env = arg;
	char nkeys[16], nhosts[16], cache[24];
	const char *kv[] = {"mode", env->multi_tenant ? "multi_tenant" : "single_org",
			    "master_key", id_mkey_current(env)->id,
			    "master_keys", nkeys,
			    "hosts", nhosts,
			    "vault", env->vault_addr[0] ? "on" : "off",
			    "cache_ms", cache,
			    "group", env->group,
			    NULL};

	env->base = sw_service_base(svc);
	env->metrics = sw_service_metrics(svc);
	snprintf(nkeys, sizeof(nkeys), "%zu", env->nmkeys);
	snprintf(nhosts, sizeof(nhosts), "%zu", env->nhosts);
	snprintf(cache, sizeof(cache), "%lld", env->cache_ms);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "libcurl initialisation failed");
		return -1;
	}
	if ((env->reg = sw_events_registry_new(err, errlen)) == NULL)
		return -1;
	if (id_cache_new(env) == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	env->store = sw_store_new_pool(env->base, env->cfg->pg_dsn, "identity", id_migrations,
				       id_nmigrations, (size_t)env->pg_pool, err, errlen);
	if (env->store == NULL || id_vault_start(env, err, errlen) == -1 ||
	    id_mint_start(env, err, errlen) == -1 || id_prune_start(env, err, errlen) == -1 ||
	    id_bus_start(env, err, errlen) == -1 || id_api_start(env, err, errlen) == -1)
		return -1;
	sw_service_started_fields(svc, kv);
	env->running = 1;
	return 0;
}

static void id_drain(struct sw_service *svc, void *arg)
{
	struct id_env *env = arg;

	(void)svc;
	sw_svcbus_pause(&env->bus);
}

static int id_drained(void *arg)
{
	struct id_env *env = arg;

	return id_bus_idle(env) && id_vault_idle(env) && sw_store_pending(env->store) == 0;
}

static void id_stop(struct sw_service *svc, void *arg)
{
	struct id_env *env = arg;

	(void)svc;
	if (env->running)
		sw_svcbus_close(&env->bus);
	sw_svcbus_free(&env->bus);
	id_prune_stop(env);
	id_mint_stop(env);
	id_vault_stop(env);
	sw_store_destroy(env->store);
	env->store = NULL;
	/* records not written: their items went with the bus */
	free(env->rec_wait);
	free(env->rec_flight);
	env->rec_wait = env->rec_flight = NULL;
	env->rec_nwait = env->rec_nflight = env->rec_capwait = 0;
	sw_events_registry_destroy(env->reg);
	env->reg = NULL;
	id_cache_free(env);
	id_config_free(env);
	curl_global_cleanup();
}

static int id_health(void *arg)
{
	struct id_env *env = arg;

	return sw_service_stopping(env->svc);
}

static const struct sw_service_def id_def = {
    .name = "identity",
    .help = "Secrets, identity profiles, the cascade and sealed delivery\n"
	    "(docs/IDENTITY.md): the HTTP API on $SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT,\n"
	    "state in PostgreSQL (schema identity, $SAGEWAI_PG_DSN), requests and events\n"
	    "on Kafka ($SAGEWAI_KAFKA_BOOTSTRAP). Required: SAGEWAI_IDENTITY_MASTER_KEYS_FILE\n"
	    "(KEYID HEX64 lines, 0600, the last current), SAGEWAI_SECRET_MAC_KEY_FILE\n"
	    "(64 hex, 0600). Optional: SAGEWAI_IDENTITY_HOSTS_FILE (NAME HEX64 lines),\n"
	    "SAGEWAI_ADMIN_TOKEN[_FILE], SAGEWAI_MODE, SAGEWAI_IDENTITY_CACHE_MS (1000),\n"
	    "SAGEWAI_VAULT_ADDR, SAGEWAI_VAULT_TOKEN[_FILE], SAGEWAI_VAULT_NAMESPACE,\n"
	    "SAGEWAI_VAULT_MOUNT (secret), SAGEWAI_VAULT_PREFIX (sagewai/),\n"
	    "SAGEWAI_VAULT_TIMEOUT_MS (2000), SAGEWAI_VAULT_THREADS (4), SAGEWAI_PG_POOL (4),\n"
	    "SAGEWAI_IDENTITY_MINTS_FILE (tokens minted on a grant; docs/JIT.md),\n"
	    "SAGEWAI_IDENTITY_RETENTION_S (2592000: 30 days; resolutions and revoked\n"
	    "minted rows older are deleted; 0 keeps everything).\n",
    .drain_ms = 5000,
    .configure = id_configure,
    .start = id_start,
    .drain = id_drain,
    .drained = id_drained,
    .stop = id_stop,
    .health = id_health,
};

int main(int argc, char **argv)
{
	/* before any JSON exists: every string jansson frees is wiped */
	id_json_wipe_alloc();
	return sw_service_main(&id_def, &env_s, argc, argv);
}
