/*
 * timers.c: every SCHED_TICK_MS one scan for due retries and passed
 * deadlines (one scan at a time), each found step an operation of its own
 * (ops.c); every second the gauges of /metrics, every fifth second those
 * counted in the database; hourly the pruning of old processed event ids.
 */
#include <stdlib.h>

#include "scheduler.h"

static const char *const scan_sql =
	"(SELECT run_id::text, idx, attempt, 'r' FROM steps"
	"  WHERE state = 'retrying' AND next_attempt <= now() ORDER BY next_attempt LIMIT 200)"
	" UNION ALL "
	"(SELECT run_id::text, idx, attempt, 't' FROM steps"
	"  WHERE state IN ('dispatched', 'running') AND deadline <= now()"
	"  ORDER BY deadline LIMIT 200)"
	" UNION ALL "
	"(SELECT id::text, -1, 0, 'x' FROM runs"
	"  WHERE state = 'running' AND created <= now() - make_interval(secs => $1::bigint)"
	"  ORDER BY created LIMIT 200)";

static void scan_op_done(struct sched_op *op, enum sched_op_result r, void *opaque)
{
	struct sched_env *env = opaque;

	if (r == SCHED_OP_ERROR)
		sw_log(SW_LOG_ERROR, "timer transition failed", "run_id", op->run_id, "error",
		       op->errmsg, NULL);
	if (--env->scan_ops == 0)
		env->scanning = 0;
}

static void scan_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_env *env = opaque;
	int i, n;

	if (err != NULL) {
		sw_log(SW_LOG_WARN, "timer scan failed", "error", err, NULL);
		env->scanning = 0;
		return;
	}
	n = PQntuples(res);
	env->scan_ops = 1; /* held while starting them */
	for (i = 0; i < n; i++) {
		char k = PQgetvalue(res, i, 3)[0];
		struct sched_op *op = sched_op_new(env,
						   k == 'r'   ? SCHED_OP_RETRY
						   : k == 'x' ? SCHED_OP_EXPIRE
							      : SCHED_OP_TIMEOUT,
						   PQgetvalue(res, i, 0), scan_op_done, env);

		if (op == NULL)
			break;
		op->idx = atoi(PQgetvalue(res, i, 1));
		op->attempt = atoi(PQgetvalue(res, i, 2));
		env->scan_ops++;
		sched_op_start(op);
	}
	if (--env->scan_ops == 0)
		env->scanning = 0;
}

static void metrics_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_env *env = opaque;

	env->metrics_busy = 0;
	if (err != NULL || PQntuples(res) != 1)
		return;
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_runs_running",
			     "Runs in state running.", atof(PQgetvalue(res, 0, 0)));
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_outbox_depth",
			     "Events committed and not yet delivered.",
			     atof(PQgetvalue(res, 0, 1)));
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_steps_retrying",
			     "Steps waiting for their next attempt.", atof(PQgetvalue(res, 0, 2)));
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_env *env = arg;
	int64_t now = sw_mono_ms();
	const char *params[1];

	(void)fd;
	(void)what;
	if (env->stopping)
		return;
	if (env->last_prune_ms == 0 || now - env->last_prune_ms > 3600 * 1000) {
		/* the processed ids written before the state machine alone
		 * guarded repeats (migration 1's table): gone after a week */
		env->last_prune_ms = now;
		sw_store_query(env->store,
			       "DELETE FROM processed WHERE created < now() - interval '7 days'",
			       0, NULL, NULL, NULL);
	}
	if (env->scanning)
		return;
	env->scanning = 1;
	snprintf(env->run_max_text, sizeof(env->run_max_text), "%lld", env->run_max_s);
	params[0] = env->run_max_text;
	if (sw_store_query(env->store, scan_sql, 1, params, scan_cb, env) == -1)
		env->scanning = 0;
}

/* Every second: gauges kept in memory; every fifth: counts from the
 * database. */
static void metrics_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sched_env *env = arg;

	(void)fd;
	(void)what;
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_consumed_batches_inflight",
			     "Consumed batches not yet committed.", (double)env->nbatches);
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_outbox_inflight",
			     "Outbox rows produced and not yet deleted.",
			     (double)env->inflight.len);
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_streams", "Open progress streams.",
			     (double)env->nstreams);
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_store_pending",
			     "Queries queued or in flight.", (double)sw_store_pending(env->store));
	if (sw_store_reconnects(env->store) != env->reconnects) {
		env->reconnects = sw_store_reconnects(env->store);
		sw_log(SW_LOG_WARN, "PostgreSQL connection re-established", NULL);
	}
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_store_reconnects",
			     "Times the PostgreSQL connection was re-established.",
			     (double)env->reconnects);
	if (env->consumer != NULL && !env->stopping)
		sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_partitions_assigned",
				     "sagewai.steps partitions this instance consumes.",
				     (double)sw_bus_consumer_assigned(env->consumer));
	if (env->metrics_busy || env->stopping || ++env->metrics_ticks % 5 != 1)
		return;
	env->metrics_busy = 1;
	if (sw_store_query(env->store,
			   "SELECT (SELECT count(*) FROM runs WHERE state = 'running'),"
			   " (SELECT count(*) FROM outbox),"
			   " (SELECT count(*) FROM steps WHERE state = 'retrying')",
			   0, NULL, metrics_cb, env) == -1)
		env->metrics_busy = 0;
}

int sched_timers_start(struct sched_env *env, char *errstr, size_t errlen)
{
	struct timeval tick = {0, SCHED_TICK_MS * 1000};
	struct timeval mt = {1, 0};

	env->tick_ev = event_new(env->base, -1, EV_PERSIST, tick_cb, env);
	env->metrics_ev = event_new(env->base, -1, EV_PERSIST, metrics_tick, env);
	if (env->tick_ev == NULL || env->metrics_ev == NULL ||
	    event_add(env->tick_ev, &tick) == -1 || event_add(env->metrics_ev, &mt) == -1) {
		snprintf(errstr, errlen, "cannot start the timers");
		return -1;
	}
	event_active(env->metrics_ev, EV_TIMEOUT, 0);
	return 0;
}

void sched_timers_stop(struct sched_env *env)
{
	if (env->tick_ev != NULL)
		event_del(env->tick_ev);
}

void sched_timers_free(struct sched_env *env)
{
	if (env->tick_ev != NULL)
		event_free(env->tick_ev);
	if (env->metrics_ev != NULL)
		event_free(env->metrics_ev);
	env->tick_ev = env->metrics_ev = NULL;
}
