/*
 * prune.c: the tombstones do not grow for ever.
 *
 * withdrawals, finished_runs and reruns only matter while a run's
 * requests may still arrive: rows older than SAGEWAI_POLICY_RETENTION_S
 * (default 30 days; 0 keeps everything) are deleted in the background by
 * sw_prune (a second after the start, then every 10 minutes, at most 1000
 * rows per statement and 20 statements per table and pass, so that a pass
 * never holds a table long). The requests themselves are the record of
 * every decision (a re-run's replay reads them) and are kept.
 */
#include "policy.h"

static const char *const prune_sql[] = {
    "WITH d AS (DELETE FROM withdrawals WHERE ctid IN (SELECT ctid FROM withdrawals"
    " WHERE at < now() - make_interval(secs => $1::bigint) LIMIT 1000) RETURNING 1)"
    " SELECT count(*) FROM d",
    "WITH d AS (DELETE FROM finished_runs WHERE ctid IN (SELECT ctid FROM finished_runs"
    " WHERE at < now() - make_interval(secs => $1::bigint) LIMIT 1000) RETURNING 1)"
    " SELECT count(*) FROM d",
    "WITH d AS (DELETE FROM reruns WHERE ctid IN (SELECT ctid FROM reruns"
    " WHERE at < now() - make_interval(secs => $1::bigint) LIMIT 1000) RETURNING 1)"
    " SELECT count(*) FROM d",
};

static const struct sw_prune_def prune_def = {
    .sql = prune_sql,
    .nsql = sizeof(prune_sql) / sizeof(prune_sql[0]),
    .what = "pruned old tombstones",
    .metric = "sagewai_policy_pruned_rows_total",
    .help = "Tombstone rows deleted after the retention",
};

int pol_prune_start(struct pol_env *env, char *errstr, size_t errlen)
{
	if (sw_config_number(env->envp, "SAGEWAI_POLICY_RETENTION_S", 30LL * 86400, 0,
			     10LL * 365 * 86400, &env->retention_s, errstr, errlen) == -1)
		return -1;
	if (env->retention_s == 0)
		return 0;
	env->prune =
	    sw_prune_new(env->svc, env->store, &prune_def, env->retention_s, errstr, errlen);
	return env->prune != NULL ? 0 : -1;
}

void pol_prune_stop(struct pol_env *env)
{
	sw_prune_free(env->prune);
	env->prune = NULL;
}
