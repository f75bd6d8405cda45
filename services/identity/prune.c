/*
 * prune.c: the resolutions and minted rows do not grow for ever.
 *
 * A resolution is read only while its step runs (a seal request or an
 * allow decision is checked against it, resolve.c); a minted row is owed a
 * revocation until revoked_at is set, and is only a record after that.
 * Resolutions created, and minted rows revoked, longer ago than
 * SAGEWAI_IDENTITY_RETENTION_S (default 30 days; 0 keeps everything) are
 * deleted in the background by sw_prune (a second after the start, then
 * every 10 minutes, in batches). A minted row not yet revoked is never
 * deleted, however old. (mint_ends is kept a day by mint.c's sweep.)
 */
#include "identity.h"

static const char *const prune_sql[] = {
    "WITH d AS (DELETE FROM resolutions WHERE ctid IN (SELECT ctid FROM resolutions"
    " WHERE created < now() - make_interval(secs => $1::bigint) LIMIT 1000) RETURNING 1)"
    " SELECT count(*) FROM d",
    "WITH d AS (DELETE FROM minted WHERE ctid IN (SELECT ctid FROM minted"
    " WHERE revoked_at IS NOT NULL AND revoked_at < now() - make_interval(secs =>"
    " $1::bigint) LIMIT 1000) RETURNING 1) SELECT count(*) FROM d",
};

static const struct sw_prune_def prune_def = {
    .sql = prune_sql,
    .nsql = sizeof(prune_sql) / sizeof(prune_sql[0]),
    .what = "pruned old resolutions and minted rows",
    .metric = "sagewai_identity_pruned_rows_total",
    .help = "Resolution and revoked minted rows deleted after the retention",
};

int id_prune_start(struct id_env *env, char *errstr, size_t errlen)
{
	if (env->retention_s == 0)
		return 0;
	env->prune =
	    sw_prune_new(env->svc, env->store, &prune_def, env->retention_s, errstr, errlen);
	return env->prune != NULL ? 0 : -1;
}

void id_prune_stop(struct id_env *env)
{
	sw_prune_free(env->prune);
	env->prune = NULL;
}
