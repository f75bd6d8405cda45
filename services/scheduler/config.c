/*
 * config.c: the scheduler's own settings, read once before the loop
 * exists (the frame's def->configure; a failure exits 2):
 *
 *   SAGEWAI_MODE               single_org (default) | multi_tenant
 *   SAGEWAI_SEALED_PREVIEW     1 lets multi_tenant run identity-bearing modes
 *   SAGEWAI_RUNNABLE_MODES     modes this deployment executes (comma list,
 *                              default in_process)
 *   SAGEWAI_ADMIN_TOKEN        the operator's token for POST /v1/tenants (or
 *                              SAGEWAI_ADMIN_TOKEN_FILE, a 0600 file holding it)
 *   SAGEWAI_SANDBOX_NETWORKS   sandbox network policies offered (comma list of
 *                              none, egress_only, full; default all three in
 *                              single_org, none,egress_only in multi_tenant,
 *                              where `full` is refused at submit unless listed)
 *   SAGEWAI_RUN_MAX            a run's longest life in seconds (default 86400):
 *                              retries and backoffs cannot keep a run open past
 *                              it; the run then fails with run_timeout
 *   SAGEWAI_PG_POOL            PostgreSQL connections (default
 *                              SCHED_PG_POOL_DEFAULT, 1..64)
 *
 * SAGEWAI_KAFKA_CONSUMER_CONFIG and SAGEWAI_KAFKA_PRODUCER_CONFIG are read
 * where the clients are made (bus.c).
 */
#include <string.h>

#include "scheduler.h"

static int runnable_modes(struct sched_env *env, char *errstr, size_t errlen)
{
	const char *v = sw_config_env(env->envp, "SAGEWAI_RUNNABLE_MODES");
	char list[256], *tok, *save = NULL;
	size_t len = 0;
	enum sw_mode m;

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
	return 0;
}

int sched_config_load(struct sched_env *env, char *errstr, size_t errlen)
{
	const char *v;

	if (env->cfg->mode[0] == '\0' || strcmp(env->cfg->mode, "single_org") == 0) {
		env->multi_tenant = 0;
	} else if (strcmp(env->cfg->mode, "multi_tenant") == 0) {
		env->multi_tenant = 1;
	} else {
		snprintf(errstr, errlen,
			 "SAGEWAI_MODE must be single_org or multi_tenant, not '%s'",
			 env->cfg->mode);
		return -1;
	}
	if (runnable_modes(env, errstr, errlen) == -1)
		return -1;
	v = sw_config_env(env->envp, "SAGEWAI_SANDBOX_NETWORKS");
	if (v == NULL || *v == '\0') {
		env->offer_full = !env->multi_tenant;
	} else {
		char list[128], *tok, *save = NULL;

		if (strlen(v) >= sizeof(list)) {
			snprintf(errstr, errlen, "SAGEWAI_SANDBOX_NETWORKS is too long");
			return -1;
		}
		snprintf(list, sizeof(list), "%s", v);
		env->offer_full = 0;
		for (tok = strtok_r(list, ", ", &save); tok != NULL;
		     tok = strtok_r(NULL, ", ", &save)) {
			if (strcmp(tok, "full") == 0)
				env->offer_full = 1;
			else if (strcmp(tok, "none") != 0 && strcmp(tok, "egress_only") != 0) {
				snprintf(errstr, errlen,
					 "SAGEWAI_SANDBOX_NETWORKS: a comma list of none, "
					 "egress_only, full (not '%.40s')",
					 tok);
				return -1;
			}
		}
	}
	if (sw_config_number(env->envp, "SAGEWAI_RUN_MAX", 86400, 1, 366LL * 86400,
			     &env->run_max_s, errstr, errlen) == -1)
		return -1;
	v = sw_config_env(env->envp, "SAGEWAI_SEALED_PREVIEW");
	env->sealed_preview = v != NULL && strcmp(v, "1") == 0;
	if (sw_config_secret(env->envp, "SAGEWAI_ADMIN_TOKEN", env->admin_token,
			     sizeof(env->admin_token), errstr, errlen) == -1)
		return -1;
	/* every transition is one transaction: with several connections
	 * their commits overlap (and share WAL flushes) instead of queueing
	 * behind each other */
	return sw_config_number(env->envp, "SAGEWAI_PG_POOL", SCHED_PG_POOL_DEFAULT, 1, 64,
				&env->pg_pool, errstr, errlen);
}
