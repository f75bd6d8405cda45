/*
 * results.c: what sandboxd produced, by dispatch (PostgreSQL schema
 * "sandboxd"), so that a redelivered step.dispatched re-publishes the very
 * same step.finished bytes (same event id) instead of running again.
 *
 * The row is written before the event is produced; the insert keeps the
 * first row for a dispatch id and returns it, so two copies of one
 * dispatch racing through two members still publish one event id. Both
 * statements are idempotent, as sw_store requires.
 */
#include <stdlib.h>
#include <string.h>

#include "sandboxd.h"

static const char *const migration_1 = "CREATE TABLE results ("
				       " dispatch_id uuid PRIMARY KEY,"
				       " run_id text NOT NULL,"
				       " step_id text NOT NULL,"
				       " finished_id uuid NOT NULL,"
				       " status text NOT NULL,"
				       " finished bytea NOT NULL,"
				       " created timestamptz NOT NULL DEFAULT now());"
				       "CREATE INDEX results_run ON results (run_id);";

const struct sw_migration sbd_migrations[] = {
    {1, migration_1},
};
const size_t sbd_nmigrations = sizeof(sbd_migrations) / sizeof(sbd_migrations[0]);

static const char *const lookup_sql = "SELECT finished FROM results WHERE dispatch_id = $1";

static const char *const save_sql =
    "INSERT INTO results (dispatch_id, run_id, step_id, finished_id, status, finished)"
    " VALUES ($1, $2, $3, $4, $5, $6::bytea)"
    " ON CONFLICT (dispatch_id) DO UPDATE SET created = results.created"
    " RETURNING finished";

static const char *const status_names[] = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"};

/* Replace j->finished with the bytea value of res's first row; 0 or -1. */
static int take_bytes(struct sbd_job *j, PGresult *res)
{
	unsigned char *raw;
	size_t len;
	char *copy;

	raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 0), &len);
	if (raw == NULL)
		return -1;
	if ((copy = malloc(len ? len : 1)) == NULL) {
		PQfreemem(raw);
		return -1;
	}
	memcpy(copy, raw, len);
	PQfreemem(raw);
	free(j->finished);
	j->finished = copy;
	j->finished_len = len;
	return 0;
}

static void lookup_cb(PGresult *res, const char *err, void *opaque)
{
	struct sbd_job *j = opaque;
	struct sbd_env *env = j->env;

	if (err != NULL) {
		sbd_fatal(env, "results lookup failed", err);
		return;
	}
	if (PQntuples(res) == 0) {
		sbd_exec_begin(j);
		return;
	}
	if (take_bytes(j, res) == -1) {
		sbd_fatal(env, "results lookup", "out of memory");
		return;
	}
	env->republished++;
	sw_metrics_counter_add(env->metrics, "sagewai_sandboxd_republished_total",
			       "Redelivered dispatches answered from the results table", 1);
	sw_log(SW_LOG_INFO, "redelivered dispatch: re-publishing its step.finished", "run_id",
	       j->dh.run_id, "step_id", j->dh.step_id, NULL);
	sbd_publish(j);
}

void sbd_results_lookup(struct sbd_job *j)
{
	const char *params[1] = {j->dh.event_id};

	if (sw_store_query(j->env->store, lookup_sql, 1, params, lookup_cb, j) == -1)
		sbd_fatal(j->env, "results lookup", "cannot queue the query");
}

static void save_cb(PGresult *res, const char *err, void *opaque)
{
	struct sbd_job *j = opaque;

	if (err != NULL) {
		sbd_fatal(j->env, "results save failed", err);
		return;
	}
	/* the stored row wins: a concurrent copy may have saved first */
	if (PQntuples(res) != 1 || take_bytes(j, res) == -1) {
		sbd_fatal(j->env, "results save", "no row returned");
		return;
	}
	sbd_publish(j);
}

void sbd_results_save(struct sbd_job *j)
{
	static const char hex[] = "0123456789abcdef";
	struct sbd_env *env = j->env;
	struct sw_event_header h;
	const char *params[6];
	char err[128], *x;
	size_t i;

	if (sw_event_decode_header(env->reg, j->finished, j->finished_len, &h, err, sizeof(err)) ==
	    -1) {
		sbd_fatal(env, "results save: own event does not decode", err);
		return;
	}
	if ((x = malloc(2 * j->finished_len + 3)) == NULL) {
		sbd_fatal(env, "results save", "out of memory");
		return;
	}
	x[0] = '\\';
	x[1] = 'x';
	for (i = 0; i < j->finished_len; i++) {
		x[2 + 2 * i] = hex[(unsigned char)j->finished[i] >> 4];
		x[3 + 2 * i] = hex[(unsigned char)j->finished[i] & 15];
	}
	x[2 + 2 * j->finished_len] = '\0';
	params[0] = j->dh.event_id;
	params[1] = j->dh.run_id;
	params[2] = j->dh.step_id;
	params[3] = h.event_id;
	params[4] = status_names[j->status];
	params[5] = x;
	if (sw_store_query(env->store, save_sql, 6, params, save_cb, j) == -1)
		sbd_fatal(env, "results save", "cannot queue the query");
	free(x); /* the store copies parameters */
}

void sbd_publish(struct sbd_job *j)
{
	struct sbd_env *env = j->env;
	char err[256];

	j->state = JOB_PUBLISHING;
	if (sw_bus_produce(env->producer, SW_TOPIC_STEPS, j->dh.run_id, j->finished,
			   j->finished_len, NULL, j, err, sizeof(err)) == -1)
		sbd_fatal(env, "cannot produce step.finished", err);
}
