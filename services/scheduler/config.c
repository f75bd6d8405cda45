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
 *   SAGEWAI_SNAPSHOT_CACHE     runs whose state a transition may take from
 *                              memory instead of reading it first (default
 *                              SCHED_SNAPC_DEFAULT, 0..1000000; 0 reads every
 *                              time; snapc.c)
 *   SAGEWAI_SSE_POLL_MS        how often an event stream re-reads its run
 *                              anyway (default SCHED_SSE_POLL_MS, 100..3600000;
 *                              sse.c)
 *   SAGEWAI_RUNS_HOLD_MS       how long the run events (sagewai.runs) are held
 *                              back after their commit, to go out together
 *                              (default SCHED_RUNS_HOLD_MS, 0..100; outbox.c)
 *   SAGEWAI_IDENTITY           1: sagewai-identity is deployed; every submit
 *                              is checked by it (identity.c) and
 *                              identity_scoped and cli_agent become runnable
 *                              (when also in SAGEWAI_RUNNABLE_MODES)
 *   SAGEWAI_SECRET_MAC_KEY_FILE   with SAGEWAI_IDENTITY=1: a file (0600 or
 *                              0400) holding the deployment's 32-byte MAC key
 *                              as 64 hex digits, shared with sagewai-identity
 *   SAGEWAI_IDENTITY_TIMEOUT_MS   how long a submit waits for identity.resolved
 *                              (default SCHED_IDENTITY_TIMEOUT_MS, 10..120000)
 *   SAGEWAI_IDENTITY_DIRECT_CHECK  1 (default): a submit with no
 *                              identity-bearing step checks its input through
 *                              identity.input_matches in PostgreSQL instead of
 *                              a round trip to sagewai-identity (identity.c);
 *                              0: every submit takes the round trip
 *   SAGEWAI_POLICY             1: sagewai-policy is deployed (it decides the
 *                              credential requests of cli_agent_jit steps):
 *                              with SAGEWAI_IDENTITY=1, cli_agent_jit becomes
 *                              runnable (when also in SAGEWAI_RUNNABLE_MODES)
 *
 * SAGEWAI_KAFKA_CONSUMER_CONFIG and SAGEWAI_KAFKA_PRODUCER_CONFIG are read
 * where the clients are made (bus.c).
 */
#include <string.h>
#include <sodium.h>

#include "scheduler.h"

int sched_mode_runnable(const struct sched_env *env, enum sw_mode m)
{
	if (!(env->runnable & (1u << m)))
		return 0;
	/* the modes that carry a customer identity need the identity service
	 * to resolve it; cli_agent_jit also a policy service to decide its
	 * credential requests */
	if (m == SW_MODE_CLI_AGENT_JIT)
		return env->identity && env->policy;
	return (m != SW_MODE_IDENTITY_SCOPED && m != SW_MODE_CLI_AGENT) || env->identity;
}

/* SAGEWAI_IDENTITY and what it needs. */
static int identity_config(struct sched_env *env, char *errstr, size_t errlen)
{
	const char *v = sw_config_env(env->envp, "SAGEWAI_IDENTITY");
	long long direct;
	char hex[130];
	int rc;

	if (v == NULL || v[0] == '\0' || strcmp(v, "0") == 0) {
		env->identity = 0;
		return 0;
	}
	if (strcmp(v, "1") != 0) {
		snprintf(errstr, errlen, "SAGEWAI_IDENTITY must be 0 or 1, not '%.16s'", v);
		return -1;
	}
	env->identity = 1;
	if (sw_config_number(env->envp, "SAGEWAI_IDENTITY_TIMEOUT_MS", SCHED_IDENTITY_TIMEOUT_MS,
			     10, 120000, &env->identity_timeout_ms, errstr, errlen) == -1)
		return -1;
	if (sw_config_number(env->envp, "SAGEWAI_IDENTITY_DIRECT_CHECK", 1, 0, 1, &direct, errstr,
			     errlen) == -1)
		return -1;
	env->id_direct = (int)direct;
	/* a file only: the key must not sit in any process's environment */
	if (sw_config_env(env->envp, "SAGEWAI_SECRET_MAC_KEY") != NULL) {
		snprintf(errstr, errlen,
			 "SAGEWAI_SECRET_MAC_KEY is not read: give the MAC key as a file, "
			 "SAGEWAI_SECRET_MAC_KEY_FILE");
		return -1;
	}
	rc = sw_config_secret(env->envp, "SAGEWAI_SECRET_MAC_KEY", hex, sizeof(hex), errstr,
			      errlen);
	if (rc == 0)
		snprintf(errstr, errlen,
			 "SAGEWAI_IDENTITY=1 needs SAGEWAI_SECRET_MAC_KEY_FILE (the MAC key shared "
			 "with sagewai-identity, 64 hex digits, mode 0600)");
	else if (rc == 1 && (strlen(hex) != 64 || sw_hex_decode(hex, env->mac_key, 32) == -1))
		snprintf(errstr, errlen,
			 "SAGEWAI_SECRET_MAC_KEY_FILE must hold 64 hex digits (a 32-byte key)");
	else if (rc == 1)
		rc = 2;
	sodium_memzero(hex, sizeof(hex));
	return rc == 2 ? 0 : -1;
}

static int runnable_modes(struct sched_env *env, char *errstr, size_t errlen)
{
	const char *v = sw_config_env(env->envp, "SAGEWAI_RUNNABLE_MODES");
	char list[256], *tok, *save = NULL;
	enum sw_mode m;

	v = v != NULL && v[0] != '\0' ? v : "in_process";
	if (strlen(v) >= sizeof(list)) {
		snprintf(errstr, errlen, "SAGEWAI_RUNNABLE_MODES is too long");
		return -1;
	}
	snprintf(list, sizeof(list), "%s", v);
	env->runnable = 0;
	for (tok = strtok_r(list, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		if (sw_mode_parse(tok, &m) == -1) {
			snprintf(errstr, errlen, "SAGEWAI_RUNNABLE_MODES: unknown mode '%.64s'",
				 tok);
			return -1;
		}
		env->runnable |= 1u << m;
	}
	if (env->runnable == 0) {
		snprintf(errstr, errlen, "SAGEWAI_RUNNABLE_MODES names no mode");
		return -1;
	}
	return 0;
}

/* env->runnable_list: the modes that do run here (identity_scoped needs
 * SAGEWAI_IDENTITY=1 as well), for messages. */
static void runnable_list(struct sched_env *env)
{
	size_t len = 0;
	int m;

	env->runnable_list[0] = '\0';
	for (m = 0; m < SW_MODE_COUNT; m++)
		if (sched_mode_runnable(env, (enum sw_mode)m))
			len += (size_t)snprintf(env->runnable_list + len,
						sizeof(env->runnable_list) - len, "%s%s",
						len ? ", " : "", sw_mode_name((enum sw_mode)m));
	if (len == 0)
		snprintf(env->runnable_list, sizeof(env->runnable_list), "(none)");
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
	v = sw_config_env(env->envp, "SAGEWAI_POLICY");
	if (v != NULL && v[0] != '\0' && strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
		snprintf(errstr, errlen, "SAGEWAI_POLICY must be 0 or 1, not '%.16s'", v);
		return -1;
	}
	env->policy = v != NULL && strcmp(v, "1") == 0;
	if (identity_config(env, errstr, errlen) == -1)
		return -1;
	runnable_list(env);
	/* every transition is one transaction: with several connections
	 * their commits overlap (and share WAL flushes) instead of queueing
	 * behind each other */
	if (sw_config_number(env->envp, "SAGEWAI_PG_POOL", SCHED_PG_POOL_DEFAULT, 1, 64,
			     &env->pg_pool, errstr, errlen) == -1)
		return -1;
	if (sw_config_number(env->envp, "SAGEWAI_GROUP_COMMITS", SCHED_GROUPS, 1, 64, &env->groups,
			     errstr, errlen) == -1)
		return -1;
	if (sw_config_number(env->envp, "SAGEWAI_SNAPSHOT_CACHE", SCHED_SNAPC_DEFAULT, 0, 1000000,
			     &env->snap_cache, errstr, errlen) == -1)
		return -1;
	if (sw_config_number(env->envp, "SAGEWAI_RUNS_HOLD_MS", SCHED_RUNS_HOLD_MS, 0, 100,
			     &env->runs_hold_ms, errstr, errlen) == -1)
		return -1;
	return sw_config_number(env->envp, "SAGEWAI_SSE_POLL_MS", SCHED_SSE_POLL_MS, 100, 3600000,
				&env->sse_poll_ms, errstr, errlen);
}
