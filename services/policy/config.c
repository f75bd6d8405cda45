/*
 * config.c: the policy service's settings, read once before the loop
 * exists (a failure exits 2 with the reason; never the token in it):
 *
 *   SAGEWAI_MODE                 single_org (default) | multi_tenant
 *   SAGEWAI_ADMIN_TOKEN[_FILE]   the operator's token: every tenant, the
 *                                _system policy, every approval
 *   SAGEWAI_GROUP_ID             the consumer group (sagewai-policy)
 *   SAGEWAI_PG_POOL              PostgreSQL connections (default 4)
 */
#include <string.h>
#include <sodium.h>

#include "policy.h"

int pol_config_load(struct pol_env *env, char *errstr, size_t errlen)
{
	if (env->cfg->mode[0] == '\0' || strcmp(env->cfg->mode, "single_org") == 0) {
		env->multi_tenant = 0;
	} else if (strcmp(env->cfg->mode, "multi_tenant") == 0) {
		env->multi_tenant = 1;
	} else {
		snprintf(errstr, errlen, "SAGEWAI_MODE must be single_org or multi_tenant, not '%s'",
			 env->cfg->mode);
		return -1;
	}
	if (sw_config_secret(env->envp, "SAGEWAI_ADMIN_TOKEN", env->admin_token,
			     sizeof(env->admin_token), errstr, errlen) == -1)
		return -1;
	if (env->admin_token[0] != '\0' && strlen(env->admin_token) < 16) {
		sodium_memzero(env->admin_token, sizeof(env->admin_token));
		snprintf(errstr, errlen, "SAGEWAI_ADMIN_TOKEN: shorter than 16 characters");
		return -1;
	}
	snprintf(env->group, sizeof(env->group), "%s",
		 env->cfg->group_id[0] ? env->cfg->group_id : POL_GROUP);
	return sw_config_number(env->envp, "SAGEWAI_PG_POOL", 4, 1, 64, &env->pg_pool, errstr,
				errlen);
}
