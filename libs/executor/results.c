/*
 * results.c: what an executor produced, by dispatch (a table "results" in
 * the service's own PostgreSQL schema), so that a redelivered
 * step.dispatched re-publishes the very same step.finished bytes (same
 * event id) instead of running again.
 *
 * The row is written before the event is produced; the insert keeps the
 * first row for a dispatch id and returns it, so two copies of one
 * dispatch racing through two members still publish one event id. Both
 * statements are idempotent, as sw_store requires.
 */
#include <stdlib.h>
#include <string.h>

#include "executor_int.h"

/* As the worker and sandboxd created it: never edit, add a version. */
static const char *const migration_1 = "CREATE TABLE results ("
				       " dispatch_id uuid PRIMARY KEY,"
				       " run_id text NOT NULL,"
				       " step_id text NOT NULL,"
				       " finished_id uuid NOT NULL,"
				       " status text NOT NULL,"
				       " finished bytea NOT NULL,"
				       " created timestamptz NOT NULL DEFAULT now());"
				       "CREATE INDEX results_run ON results (run_id);";

const struct sw_migration sw_executor_migrations[] = {
    {1, migration_1},
};
const size_t sw_executor_nmigrations =
    sizeof(sw_executor_migrations) / sizeof(sw_executor_migrations[0]);

static const char *const lookup_sql = "SELECT finished FROM results WHERE dispatch_id = $1";

static const char *const save_sql =
    "INSERT INTO results (dispatch_id, run_id, step_id, finished_id, status, finished)"
    " VALUES ($1, $2, $3, $4, $5, $6::bytea)"
    " ON CONFLICT (dispatch_id) DO UPDATE SET created = results.created"
    " RETURNING finished";

struct sw_store *sw_executor_store_new(struct event_base *base, const char *conninfo,
				       const char *schema, size_t npool, char *errstr,
				       size_t errlen)
{
	return sw_store_new_pool(base, conninfo, schema, sw_executor_migrations,
				 sw_executor_nmigrations, npool, errstr, errlen);
}

/* Produce j->finished and wait for its delivery report. */
static void publish(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;
	char err[256];

	j->phase = SW_EXECUTOR_PUBLISHING;
	if (ex->bus_producer == NULL) {
		exec_fatal(ex, "cannot produce step.finished", "no producer");
		return;
	}
	if (sw_bus_produce(ex->bus_producer, SW_TOPIC_STEPS, j->dh.run_id, j->finished,
			   j->finished_len, NULL, &j->tag, err, sizeof(err)) == -1)
		exec_fatal(ex, "cannot produce step.finished", err);
}

/* Replace j->finished with the bytea value of res's first row; 0 or -1. */
static int take_bytes(struct sw_executor_job *j, PGresult *res)
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
	struct sw_executor_job *j = opaque;
	struct sw_executor *ex = j->ex;

	if (err != NULL) {
		exec_fatal(ex, "results lookup failed", err);
		return;
	}
	if (PQntuples(res) == 0) {
		exec_preflight(j);
		return;
	}
	if (take_bytes(j, res) == -1) {
		exec_fatal(ex, "results lookup", "out of memory");
		return;
	}
	sw_metrics_counter_add(ex->cfg.metrics, ex->m_republished,
			       "Redelivered dispatches answered from the results table", 1);
	exec_report_job(ex, SW_EXECUTOR_REPUBLISHED, SW_LOG_INFO,
			"redelivered dispatch: re-publishing its step.finished", j, NULL);
	publish(j);
}

void exec_results_lookup(struct sw_executor_job *j)
{
	const char *params[1] = {j->dh.event_id};

	if (j->ex->cfg.store == NULL) {
		exec_preflight(j);
		return;
	}
	if (sw_store_query(j->ex->cfg.store, lookup_sql, 1, params, lookup_cb, j) == -1)
		exec_fatal(j->ex, "results lookup", "cannot queue the query");
}

static void save_cb(PGresult *res, const char *err, void *opaque)
{
	struct sw_executor_job *j = opaque;

	if (err != NULL) {
		exec_fatal(j->ex, "results save failed", err);
		return;
	}
	/* the stored row wins: a concurrent copy may have saved first */
	if (PQntuples(res) != 1 || take_bytes(j, res) == -1) {
		exec_fatal(j->ex, "results save", "no row returned");
		return;
	}
	publish(j);
}

/* Store j->finished by dispatch id, then produce the stored bytes. */
void exec_results_save(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;
	struct sw_event_header h;
	const char *params[6];
	char err[128], *x;

	if (ex->cfg.store == NULL) {
		publish(j);
		return;
	}
	if (sw_event_decode_header(ex->cfg.reg, j->finished, j->finished_len, &h, err,
				   sizeof(err)) == -1) {
		exec_fatal(ex, "results save: own event does not decode", err);
		return;
	}
	if ((x = malloc(2 * j->finished_len + 3)) == NULL) {
		exec_fatal(ex, "results save", "out of memory");
		return;
	}
	x[0] = '\\';
	x[1] = 'x';
	sw_hex_encode(j->finished, j->finished_len, x + 2);
	params[0] = j->dh.event_id;
	params[1] = j->dh.run_id;
	params[2] = j->dh.step_id;
	params[3] = h.event_id;
	params[4] = sw_executor_status_name(j->status);
	params[5] = x;
	if (sw_store_query(ex->cfg.store, save_sql, 6, params, save_cb, j) == -1)
		exec_fatal(ex, "results save", "cannot queue the query");
	free(x); /* the store copies parameters */
}
