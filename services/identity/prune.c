/*
 * prune.c: the resolutions and minted rows do not grow for ever.
 *
 * A resolution is read only while its step runs (a seal request or an
 * allow decision is checked against it, resolve.c); a minted row is owed a
 * revocation until revoked_at is set, and is only a record after that.
 * Resolutions created, and minted rows revoked, longer ago than
 * SAGEWAI_IDENTITY_RETENTION_S (default 30 days; 0 keeps everything) are
 * deleted in the background, a second after the start and then every
 * PRUNE_EVERY_S, at most PRUNE_BATCH rows per statement and PRUNE_ROUNDS
 * statements per table and pass, so that a pass never holds a table long.
 * A minted row not yet revoked is never deleted, however old. (mint_ends
 * is kept a day by mint.c's sweep.)
 */
#include <stdlib.h>
#include <string.h>

#include "identity.h"

#define PRUNE_EVERY_S 600
#define PRUNE_BATCH 1000
#define PRUNE_ROUNDS 20

static const char *const prune_sql[] = {
    "WITH d AS (DELETE FROM resolutions WHERE ctid IN (SELECT ctid FROM resolutions"
    " WHERE created < now() - make_interval(secs => $1::bigint) LIMIT 1000) RETURNING 1)"
    " SELECT count(*) FROM d",
    "WITH d AS (DELETE FROM minted WHERE ctid IN (SELECT ctid FROM minted"
    " WHERE revoked_at IS NOT NULL AND revoked_at < now() - make_interval(secs =>"
    " $1::bigint) LIMIT 1000) RETURNING 1) SELECT count(*) FROM d",
};
#define PRUNE_TABLES (sizeof(prune_sql) / sizeof(prune_sql[0]))

struct pass {
	struct id_env *env;
	size_t table;
	int round;
	long long deleted;
};

static void prune_arm(struct id_env *env, int secs)
{
	struct timeval tv = {secs, 0};

	if (env->prune != NULL)
		evtimer_add(env->prune, &tv);
}

static void pass_next(struct pass *p);

static void deleted_cb(PGresult *res, const char *err, void *opaque)
{
	struct pass *p = opaque;
	long long n = 0;

	if (err != NULL) {
		sw_log(SW_LOG_WARN, "pruning failed (tried again later)", "error", err, NULL);
		p->table = PRUNE_TABLES;
	} else {
		if (PQntuples(res) == 1)
			n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		p->deleted += n;
		/* a full batch: more may be left in this table */
		if (n >= PRUNE_BATCH && ++p->round < PRUNE_ROUNDS) {
			pass_next(p);
			return;
		}
		p->table++;
		p->round = 0;
	}
	pass_next(p);
}

static void pass_next(struct pass *p)
{
	struct id_env *env = p->env;
	char secs[24];
	const char *params[1] = {secs};

	if (p->table >= PRUNE_TABLES || sw_service_stopping(env->svc)) {
		if (p->deleted > 0) {
			char n[24];

			snprintf(n, sizeof(n), "%lld", p->deleted);
			sw_log(SW_LOG_INFO, "pruned old resolutions and minted rows", "rows", n,
			       NULL);
			sw_metrics_counter_add(env->metrics, "sagewai_identity_pruned_rows_total",
					       "Resolution and revoked minted rows deleted after "
					       "the retention",
					       (double)p->deleted);
		}
		env->pruning = 0;
		free(p);
		prune_arm(env, PRUNE_EVERY_S);
		return;
	}
	snprintf(secs, sizeof(secs), "%lld", env->retention_s);
	if (sw_store_query(env->store, prune_sql[p->table], 1, params, deleted_cb, p) == -1)
		deleted_cb(NULL, "cannot queue", p);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	struct id_env *env = arg;
	struct pass *p;

	(void)fd;
	(void)what;
	if (env->pruning || sw_service_stopping(env->svc))
		return;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		prune_arm(env, PRUNE_EVERY_S);
		return;
	}
	env->pruning = 1;
	p->env = env;
	pass_next(p);
}

int id_prune_start(struct id_env *env, char *errstr, size_t errlen)
{
	if (env->retention_s == 0)
		return 0;
	if ((env->prune = evtimer_new(env->base, prune_cb, env)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	prune_arm(env, 1);
	return 0;
}

void id_prune_stop(struct id_env *env)
{
	if (env->prune != NULL)
		event_free(env->prune);
	env->prune = NULL;
}
