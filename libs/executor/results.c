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
 *
 * Group commit: while one save is in flight, the results that finish
 * meanwhile wait, and go as one INSERT of many rows (one COMMIT, one WAL
 * flush) when it is done. One at a time, a result is saved at once.
 *
 * A row whose step had no effect (j->lazy: the attempt never started, or
 * the service marked it no_effect) commits with synchronous_commit off: it
 * is visible at once, so a crashed executor's successor re-publishes it as
 * ever, and only a crash of PostgreSQL within the WAL writer's delay can
 * lose it, after which a redelivered dispatch runs again what acts on
 * nothing and the scheduler, which applies one outcome per attempt, keeps
 * the first it got. A group is lazy only when each of its rows is.
 *
 * For the same reason a lazy row is not waited for: its step.finished is
 * produced at once, beside the save (j->row_pending), and the message is
 * done when both are (the delivery report and the save's answer, in either
 * order): the offset is never committed before the row is saved, and a
 * redelivery after a crash finds the row if the save had landed. What the
 * order gives up, only for what acted on nothing: a crash between the
 * produce and the save, or a copy racing through another member, can
 * publish a second step.finished (another event id) for the attempt, which
 * the scheduler drops as above.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* The same for many rows: arrays by column, a row back per dispatch id. */
static const char *const save_many_sql =
    "INSERT INTO results (dispatch_id, run_id, step_id, finished_id, status, finished)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[],"
    "  $6::bytea[])"
    " ON CONFLICT (dispatch_id) DO UPDATE SET created = results.created"
    " RETURNING dispatch_id::text, finished";

#define SAVE_GROUP_MAX 256 /* results of one grouped INSERT */

static const char *const lazy_sql = "SET LOCAL synchronous_commit TO off";

/* The INSERT sql with params, alone or after lazy_sql in one transaction. */
static int save_query(struct sw_executor *ex, int lazy, const char *sql, int nparams,
		      const char *const *params, sw_store_cb cb, void *opaque)
{
	struct sw_store_stmt st[2] = {{lazy_sql, 0, NULL}, {sql, nparams, params}};

	if (!lazy)
		return sw_store_query(ex->cfg.store, sql, nparams, params, cb, opaque);
	return sw_store_tx(ex->cfg.store, st, 2, cb, opaque);
}

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

/* Replace j->finished with the bytea value of res's row at col; 0 or -1. */
static int take_bytes(struct sw_executor_job *j, PGresult *res, int row, int col)
{
	unsigned char *raw;
	size_t len;
	char *copy;

	raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col), &len);
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
	if (take_bytes(j, res, 0, 0) == -1) {
		exec_fatal(ex, "results lookup", "out of memory");
		return;
	}
	sw_metrics_counter_add(ex->cfg.metrics, ex->m_republished,
			       "Redelivered dispatches answered from the results table", 1);
	exec_report_job(ex, SW_EXECUTOR_REPUBLISHED, SW_LOG_INFO,
			"redelivered dispatch: re-publishing its step.finished", j, NULL);
	publish(j);
}

/* A pure job (ops->pure) leaves the table alone: 1 when j is one. A spec
 * that does not parse is not: preflight refuses it. */
static int pure(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;

	if (ex->ops.pure == NULL)
		return 0;
	if ((j->spec = json_loads(j->spec_text, 0, NULL)) == NULL || !json_is_object(j->spec) ||
	    !ex->ops.pure(ex->cfg.arg, j))
		return 0;
	sw_metrics_counter_add(ex->cfg.metrics, ex->m_pure,
			       "Pure steps: no results row, step.finished's id derived from the "
			       "dispatch's",
			       1);
	return j->pure = 1;
}

void exec_results_lookup(struct sw_executor_job *j)
{
	const char *params[1] = {j->dh.event_id};

	if (j->ex->cfg.store == NULL || pure(j)) {
		exec_preflight(j);
		return;
	}
	if (sw_store_query(j->ex->cfg.store, lookup_sql, 1, params, lookup_cb, j) == -1)
		exec_fatal(j->ex, "results lookup", "cannot queue the query");
}

static void save_next(struct sw_executor *ex);

/* A lazy row produced before its save is saved: the job goes if its
 * delivery report came already (j may be freed). */
static void row_saved(struct sw_executor_job *j)
{
	j->row_pending = 0;
	if (j->delivered)
		exec_job_release(j);
}

static void save_cb(PGresult *res, const char *err, void *opaque)
{
	struct sw_executor_job *j = opaque;
	struct sw_executor *ex = j->ex;

	ex->saving = 0;
	if (err != NULL) {
		exec_fatal(ex, "results save failed", err);
		return;
	}
	if (PQntuples(res) != 1) {
		exec_fatal(ex, "results save", "no row returned");
		return;
	}
	if (j->row_pending) {
		row_saved(j); /* produced already (lazy) */
	} else if (take_bytes(j, res, 0, 0) == -1) {
		/* the stored row wins: a concurrent copy may have saved first */
		exec_fatal(ex, "results save", "out of memory");
		return;
	} else {
		publish(j);
	}
	save_next(ex);
}

/* "\\x<hex>" of j->finished (bytea input), malloc'd; NULL: no memory. */
static char *bytea_text(const struct sw_executor_job *j)
{
	char *x = malloc(2 * j->finished_len + 3);

	if (x == NULL)
		return NULL;
	x[0] = '\\';
	x[1] = 'x';
	sw_hex_encode(j->finished, j->finished_len, x + 2);
	return x;
}

/* The finished event's id into id (SW_UUID_STRLEN); 0 or -1 (fatal). */
static int finished_id(struct sw_executor_job *j, char *id)
{
	struct sw_event_header h;
	char err[128];

	if (sw_event_decode_header(j->ex->cfg.reg, j->finished, j->finished_len, &h, err,
				   sizeof(err)) == -1) {
		exec_fatal(j->ex, "results save: own event does not decode", err);
		return -1;
	}
	snprintf(id, SW_UUID_STRLEN, "%s", h.event_id);
	return 0;
}

static void save_one(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;
	char id[SW_UUID_STRLEN], *x;
	const char *params[6];

	if (finished_id(j, id) == -1)
		return;
	if ((x = bytea_text(j)) == NULL) {
		exec_fatal(ex, "results save", "out of memory");
		return;
	}
	params[0] = j->dh.event_id;
	params[1] = j->dh.run_id;
	params[2] = j->dh.step_id;
	params[3] = id;
	params[4] = sw_executor_status_name(j->status);
	params[5] = x;
	ex->saving = 1;
	if (save_query(ex, j->lazy, save_sql, 6, params, save_cb, j) == -1) {
		ex->saving = 0;
		exec_fatal(ex, "results save", "cannot queue the query");
	}
	free(x); /* the store copies parameters */
}

/* A group in flight: its jobs, in queue order. */
struct save_group {
	struct sw_executor *ex;
	struct sw_executor_job **jobs;
	size_t n;
};

static void save_group_cb(PGresult *res, const char *err, void *opaque)
{
	struct save_group *g = opaque;
	struct sw_executor *ex = g->ex;
	size_t i;
	int r, rows;

	ex->saving = 0;
	if (err != NULL) {
		exec_fatal(ex, "results save failed", err);
		goto out;
	}
	rows = PQntuples(res);
	for (i = 0; i < g->n; i++) {
		for (r = 0; r < rows; r++)
			if (strcasecmp(PQgetvalue(res, r, 0), g->jobs[i]->dh.event_id) == 0)
				break;
		if (r == rows) {
			exec_fatal(ex, "results save", "no row returned");
			goto out;
		}
		/* the stored row wins: a concurrent copy may have saved first */
		if (!g->jobs[i]->row_pending && take_bytes(g->jobs[i], res, r, 1) == -1) {
			exec_fatal(ex, "results save", "out of memory");
			goto out;
		}
	}
	for (i = 0; i < g->n; i++) {
		if (g->jobs[i]->row_pending)
			row_saved(g->jobs[i]); /* produced already (lazy) */
		else
			publish(g->jobs[i]);
	}
	save_next(ex);
out:
	free(g->jobs);
	free(g);
}

/* A PostgreSQL array element: double-quoted, '"' and '\\' escaped. */
static void array_add(struct sw_buf *b, const char *v, size_t i)
{
	const char *s;

	sw_buf_add(b, i ? ",\"" : "{\"", 2);
	for (s = v; *s; s++) {
		if (*s == '"' || *s == '\\')
			sw_buf_add(b, "\\", 1);
		sw_buf_add(b, s, 1);
	}
	sw_buf_add(b, "\"", 1);
}

/* Save the queued results: alone, or as one grouped INSERT. Two copies of
 * one dispatch never share a group (ON CONFLICT cannot take a row twice
 * in one statement): a later copy waits for the next. */
static void save_next(struct sw_executor *ex)
{
	struct sw_buf cols[6] = {{0}};
	struct save_group *g = NULL;
	const char *params[6];
	size_t i, k, keep = 0;
	int c, oom = 0, lazy = 1;

	if (ex->saving || ex->nsaveq == 0)
		return;
	if (ex->nsaveq == 1) {
		ex->nsaveq = 0;
		save_one(ex->saveq[0]);
		return;
	}
	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (g->jobs = calloc(ex->nsaveq, sizeof(*g->jobs))) == NULL)
		goto oom;
	g->ex = ex;
	for (i = 0; i < ex->nsaveq; i++) {
		struct sw_executor_job *j = ex->saveq[i];
		char id[SW_UUID_STRLEN], *x;

		for (k = 0; k < g->n; k++)
			if (strcasecmp(g->jobs[k]->dh.event_id, j->dh.event_id) == 0)
				break;
		if (k < g->n || g->n == SAVE_GROUP_MAX) {
			ex->saveq[keep++] = j;
			continue;
		}
		if (finished_id(j, id) == -1)
			goto out;
		if ((x = bytea_text(j)) == NULL)
			goto oom;
		array_add(&cols[0], j->dh.event_id, g->n);
		array_add(&cols[1], j->dh.run_id, g->n);
		array_add(&cols[2], j->dh.step_id, g->n);
		array_add(&cols[3], id, g->n);
		array_add(&cols[4], sw_executor_status_name(j->status), g->n);
		array_add(&cols[5], x, g->n);
		free(x);
		lazy &= j->lazy;
		g->jobs[g->n++] = j;
	}
	ex->nsaveq = keep;
	for (c = 0; c < 6; c++) {
		sw_buf_add(&cols[c], "}", 1);
		oom |= cols[c].oom;
		params[c] = cols[c].p;
	}
	if (oom)
		goto oom;
	ex->saving = 1;
	if (save_query(ex, lazy, save_many_sql, 6, params, save_group_cb, g) == -1) {
		ex->saving = 0;
		exec_fatal(ex, "results save", "cannot queue the query");
		goto out;
	}
	g = NULL;
	goto out;
oom:
	exec_fatal(ex, "results save", "out of memory");
out:
	for (c = 0; c < 6; c++)
		sw_buf_free(&cols[c]);
	if (g != NULL) {
		free(g->jobs);
		free(g);
	}
}

/* Store j->finished by dispatch id, then produce the stored bytes; a lazy
 * row's bytes are produced at once, beside its save. */
void exec_results_save(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;

	if (ex->cfg.store == NULL || j->pure) {
		publish(j);
		return;
	}
	if (ex->nsaveq == ex->capsaveq) {
		size_t cap = ex->capsaveq ? 2 * ex->capsaveq : 64;
		struct sw_executor_job **q = realloc(ex->saveq, cap * sizeof(*q));

		if (q == NULL) {
			exec_fatal(ex, "results save", "out of memory");
			return;
		}
		ex->saveq = q;
		ex->capsaveq = cap;
	}
	ex->saveq[ex->nsaveq++] = j;
	if (j->lazy) {
		j->row_pending = 1;
		publish(j);
	}
	save_next(ex);
}
