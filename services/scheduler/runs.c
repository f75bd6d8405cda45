/*
 * runs.c: the run/step state machine (see scheduler.h for the read /
 * decide / write cycle), run submission and the timers.
 *
 * Step states: pending -> dispatched -> running -> succeeded, or on a
 * failed / timed-out attempt -> retrying (next_attempt) -> dispatched with
 * attempt + 1 ..., or, with no attempts left, failed / timed_out, which
 * fails the run; cancelled when the run is; skipped when the run ended
 * before the step began. Only the current attempt of a running run moves
 * anything: outcomes of older attempts and of finished runs are recorded
 * as processed and otherwise ignored.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

/* ---- schema ----------------------------------------------------------- */

static const char *const migration_1 =
	"CREATE TABLE tenants ("
	" name text PRIMARY KEY,"
	" key_hash bytea NOT NULL UNIQUE,"
	" created timestamptz NOT NULL DEFAULT now());"
	"CREATE TABLE workflows ("
	" tenant text NOT NULL,"
	" name text NOT NULL,"
	" version int NOT NULL,"
	" yaml text NOT NULL,"
	" def jsonb NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (tenant, name, version));"
	"CREATE TABLE runs ("
	" id uuid PRIMARY KEY,"
	" tenant text NOT NULL,"
	" workflow text NOT NULL,"
	" version int NOT NULL,"
	" input jsonb NOT NULL,"
	" state text NOT NULL,"
	" output jsonb,"
	" error text,"
	" rev bigint NOT NULL DEFAULT 0,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" started timestamptz,"
	" finished timestamptz);"
	"CREATE INDEX runs_tenant_created ON runs (tenant, created DESC);"
	"CREATE INDEX runs_running ON runs (state) WHERE state = 'running';"
	"CREATE TABLE steps ("
	" run_id uuid NOT NULL REFERENCES runs (id),"
	" idx int NOT NULL,"
	" name text NOT NULL,"
	" mode text NOT NULL,"
	" state text NOT NULL,"
	" attempt int NOT NULL DEFAULT 0,"
	" output jsonb,"
	" error text,"
	" started timestamptz,"
	" finished timestamptz,"
	" deadline timestamptz,"
	" next_attempt timestamptz,"
	" dispatch_event_id uuid,"
	" PRIMARY KEY (run_id, idx));"
	"CREATE INDEX steps_deadline ON steps (deadline) WHERE state IN ('dispatched', 'running');"
	"CREATE INDEX steps_retry ON steps (next_attempt) WHERE state = 'retrying';"
	"CREATE TABLE processed ("
	" event_id uuid PRIMARY KEY,"
	" created timestamptz NOT NULL DEFAULT now());"
	"CREATE INDEX processed_created ON processed (created);"
	"CREATE TABLE outbox ("
	" seq bigserial PRIMARY KEY,"
	" event_id uuid NOT NULL UNIQUE,"
	" topic text NOT NULL,"
	" key text NOT NULL,"
	" payload bytea NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now());"
	/* the optimistic guard: first statement of every transition */
	"CREATE FUNCTION bump_rev(p_id uuid, p_rev bigint) RETURNS void LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  UPDATE runs SET rev = rev + 1 WHERE id = p_id AND rev = p_rev;"
	"  IF NOT FOUND THEN"
	"   RAISE EXCEPTION 'run % changed concurrently', p_id USING ERRCODE = 'SWREV';"
	"  END IF;"
	" END $$;"
	"CREATE FUNCTION ts(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$"
	" SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') $$;"
	/* the API's JSON of a run (docs/RUNS.md) */
	"CREATE FUNCTION run_json(r runs) RETURNS json LANGUAGE sql STABLE AS $$"
	" SELECT json_build_object('run_id', r.id, 'workflow', r.workflow,"
	"  'version', r.version, 'state', r.state, 'input', r.input, 'output', r.output,"
	"  'error', r.error, 'created', ts(r.created), 'started', ts(r.started),"
	"  'finished', ts(r.finished), 'steps', (SELECT coalesce(json_agg(json_build_object("
	"   'name', s.name, 'index', s.idx, 'mode', s.mode, 'state', s.state,"
	"   'attempts', s.attempt, 'output', s.output, 'error', s.error,"
	"   'started', ts(s.started), 'finished', ts(s.finished)) ORDER BY s.idx), '[]')"
	"   FROM steps s WHERE s.run_id = r.id)) $$;";

/* A run as the API shows it: run_json(r)::text of migration 1, spelled
 * out. A SQL function with a sub-select is not inlined, so the server
 * would parse and plan its body at every call; this text is prepared once
 * per connection instead. $1 run id, $2 tenant. */
const char *const sched_run_json_sql =
	"SELECT json_build_object('run_id', r.id, 'workflow', r.workflow,"
	" 'version', r.version, 'state', r.state, 'input', r.input, 'output', r.output,"
	" 'error', r.error, 'created', ts(r.created), 'started', ts(r.started),"
	" 'finished', ts(r.finished), 'steps', (SELECT coalesce(json_agg(json_build_object("
	"  'name', s.name, 'index', s.idx, 'mode', s.mode, 'state', s.state,"
	"  'attempts', s.attempt, 'output', s.output, 'error', s.error,"
	"  'started', ts(s.started), 'finished', ts(s.finished)) ORDER BY s.idx), '[]')"
	"  FROM steps s WHERE s.run_id = r.id))::text"
	" FROM runs r WHERE r.id = $1::uuid AND r.tenant = $2";

const struct sw_migration sched_migrations[] = {
	{1, migration_1},
};
const size_t sched_nmigrations = sizeof(sched_migrations) / sizeof(sched_migrations[0]);

/* ---- transactions under construction ---------------------------------- */

#define TX_STMTS 16
#define TX_PARAMS 96

struct tx {
	struct sw_store_stmt st[TX_STMTS];
	size_t n;
	const char *pv[TX_PARAMS]; /* parameters of all statements, in order */
	size_t npv;
	char *own[TX_PARAMS]; /* strings to free once queued */
	size_t nown;
	char *ob_sql; /* the outbox INSERT */
	char *ob_params[4 * SCHED_OP_EVENTS];
	size_t ob_n;
	int oom;
};

static const char *tx_own(struct tx *t, char *s)
{
	if (s == NULL || t->nown == TX_PARAMS) {
		free(s);
		t->oom = 1;
		return NULL;
	}
	t->own[t->nown++] = s;
	return s;
}

static const char *tx_fmt(struct tx *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static const char *tx_fmt(struct tx *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return tx_own(t, s);
}

/* Add a statement; the np parameters (const char *, NULL = SQL NULL) must
 * outlive the tx: literals, tx_fmt strings or the caller's buffers. */
static void tx_add(struct tx *t, const char *sql, int np, ...)
{
	va_list ap;
	int i;

	if (t->n == TX_STMTS || t->npv + (size_t)np > TX_PARAMS) {
		t->oom = 1;
		return;
	}
	t->st[t->n].sql = sql;
	t->st[t->n].nparams = np;
	t->st[t->n].params = &t->pv[t->npv];
	va_start(ap, np);
	for (i = 0; i < np; i++)
		t->pv[t->npv++] = va_arg(ap, const char *);
	va_end(ap);
	t->n++;
}

/* The outbox INSERT of evs as the last statement. */
static void tx_outbox(struct tx *t, const struct sched_event *evs, size_t n)
{
	if (n == 0)
		return;
	if (t->n == TX_STMTS || sched_outbox_sql(evs, n, &t->ob_sql, t->ob_params) == -1) {
		t->oom = 1;
		return;
	}
	t->ob_n = n;
	t->st[t->n].sql = t->ob_sql;
	t->st[t->n].nparams = (int)(4 * n);
	t->st[t->n].params = (const char *const *)t->ob_params;
	t->n++;
}

static void tx_free(struct tx *t)
{
	size_t i;

	for (i = 0; i < t->nown; i++)
		free(t->own[i]);
	if (t->ob_sql != NULL)
		sched_outbox_sql_free(t->ob_sql, t->ob_params, t->ob_n);
	memset(t, 0, sizeof(*t));
}

/* ---- snapshots --------------------------------------------------------- */

struct snap {
	char tenant[128];
	char workflow[128];
	char state[16];
	int version;
	long long rev;
	json_t *input;
	const struct sw_workflow *wf; /* borrowed: sched_def_get's, or the submitter's */
	json_t *steps; /* [{idx, name, state, attempt, output}] by idx */
	int processed; /* the triggering event was handled before */
};

static const char *const snap_sql =
	"SELECT r.tenant, r.workflow, r.version, r.state, r.rev, r.input::text, w.def::text,"
	" EXISTS (SELECT 1 FROM processed p WHERE p.event_id = $2::uuid),"
	" (SELECT json_agg(json_build_object('idx', s.idx, 'name', s.name, 'state', s.state,"
	"  'attempt', s.attempt, 'output', s.output) ORDER BY s.idx)"
	"  FROM steps s WHERE s.run_id = r.id)::text"
	" FROM runs r JOIN workflows w"
	"  ON w.tenant = r.tenant AND w.name = r.workflow AND w.version = r.version"
	" WHERE r.id = $1::uuid AND ($3::text IS NULL OR r.tenant = $3)";

static void snap_free(struct snap *s)
{
	json_decref(s->input);
	json_decref(s->steps);
	memset(s, 0, sizeof(*s));
}

static int snap_load(struct sched_env *env, struct snap *s, PGresult *res, char *errstr,
		     size_t errlen)
{
	json_error_t jerr;

	memset(s, 0, sizeof(*s));
	snprintf(s->tenant, sizeof(s->tenant), "%s", PQgetvalue(res, 0, 0));
	snprintf(s->workflow, sizeof(s->workflow), "%s", PQgetvalue(res, 0, 1));
	s->version = atoi(PQgetvalue(res, 0, 2));
	snprintf(s->state, sizeof(s->state), "%s", PQgetvalue(res, 0, 3));
	s->rev = atoll(PQgetvalue(res, 0, 4));
	s->processed = PQgetvalue(res, 0, 7)[0] == 't';
	s->input = json_loads(PQgetvalue(res, 0, 5), JSON_DECODE_ANY, &jerr);
	s->steps = json_loads(PQgetvalue(res, 0, 8), JSON_DECODE_ANY, &jerr);
	s->wf = sched_def_get(env, s->tenant, s->workflow, s->version, PQgetvalue(res, 0, 6),
			      errstr, errlen);
	if (s->input == NULL || !json_is_array(s->steps) || s->wf == NULL ||
	    json_array_size(s->steps) != s->wf->nsteps) {
		if (s->wf != NULL)
			snprintf(errstr, errlen, "run %s: stored state inconsistent", s->workflow);
		snap_free(s);
		return -1;
	}
	return 0;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v != NULL ? v : "";
}

static int jint(json_t *o, const char *k)
{
	return (int)json_integer_value(json_object_get(o, k));
}

static int snap_find(const struct snap *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->wf->nsteps; i++)
		if (strcmp(s->wf->steps[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int run_terminal(const char *state)
{
	return strcmp(state, RUN_RUNNING) != 0 && strcmp(state, "pending") != 0;
}

/* ---- planning a transition -------------------------------------------- */

struct plan {
	struct sched_env *env;
	struct snap *s;
	const char *run_id;
	struct tx tx;
	struct sched_event *ev; /* SCHED_OP_EVENTS slots */
	size_t *nev;
	char run_state[16];
	int finished_run;
	int dispatched;
	int failed; /* an event could not be built */
	char errstr[256];
};

static void plan_event(struct plan *p, const char *type, const char *step_id, json_t *fields)
{
	if (fields == NULL || *p->nev == SCHED_OP_EVENTS) {
		json_decref(fields);
		snprintf(p->errstr, sizeof(p->errstr), "%s: cannot build event", type);
		p->failed = 1;
		return;
	}
	if (sched_event_build(p->env, &p->ev[*p->nev], type, p->s->tenant, p->run_id, step_id,
			      fields, p->errstr, sizeof(p->errstr)) == -1) {
		p->failed = 1;
		return;
	}
	(*p->nev)++;
}

/* Cap an error text (outside input) to SCHED_MAX_ERROR bytes. */
static const char *plan_error(struct plan *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static const char *plan_error(struct plan *p, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s != NULL && strlen(s) > SCHED_MAX_ERROR) {
		size_t n = SCHED_MAX_ERROR;

		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--; /* do not cut a UTF-8 sequence */
		s[n] = '\0';
	}
	return tx_own(&p->tx, s);
}

static void plan_finish_run(struct plan *p, const char *state, const char *output,
			    const char *error)
{
	const char *status = strcmp(state, RUN_SUCCEEDED) == 0	 ? "SUCCEEDED"
			     : strcmp(state, RUN_CANCELLED) == 0 ? "CANCELLED"
								 : "FAILED";
	json_t *st;
	size_t i;

	tx_add(&p->tx,
	       "UPDATE runs SET state = $2, output = $3::jsonb, error = $4, finished = now()"
	       " WHERE id = $1::uuid",
	       4, p->run_id, state, output, error);
	/* the snapshot is the run at the rev this transaction is guarded by */
	json_array_foreach(p->s->steps, i, st) {
		if (strcmp(jstr(st, "state"), "pending") == 0) {
			tx_add(&p->tx,
			       "UPDATE steps SET state = 'skipped'"
			       " WHERE run_id = $1::uuid AND state = 'pending'",
			       1, p->run_id);
			break;
		}
	}
	plan_event(p, "run.finished", NULL,
		   json_pack("{s:s, s:o, s:o}", "status", status, "output",
			     output ? json_string(output) : json_null(), "error",
			     error ? json_string(error) : json_null()));
	snprintf(p->run_state, sizeof(p->run_state), "%s", state);
	p->finished_run = 1;
}

static void plan_step_final(struct plan *p, int idx, const char *state, const char *error)
{
	json_t *st = json_array_get(p->s->steps, (size_t)idx);

	tx_add(&p->tx,
	       "UPDATE steps SET state = $3, error = $4, finished = now(), deadline = NULL,"
	       " next_attempt = NULL WHERE run_id = $1::uuid AND idx = $2::int",
	       4, p->run_id, tx_fmt(&p->tx, "%d", idx), state, error);
	json_object_set_new(st, "state", json_string(state));
}

/* {"input": ..., "steps": {"<name>": {"output": ...}}} of the steps done. */
static json_t *plan_ctx(const struct snap *s)
{
	json_t *steps = json_object(), *st;
	size_t i;

	json_array_foreach(s->steps, i, st) {
		if (strcmp(jstr(st, "state"), "succeeded") != 0)
			continue;
		json_object_set_new(steps, jstr(st, "name"),
				    json_pack("{s:O}", "output", json_object_get(st, "output")));
	}
	return json_pack("{s:O, s:o}", "input", s->input, "steps", steps);
}

static json_t *plan_modes(const struct sw_workflow *wf)
{
	json_t *a = json_array();
	unsigned seen = 0;
	size_t i;

	for (i = 0; i < wf->nsteps; i++) {
		if (seen & (1u << wf->steps[i].mode))
			continue;
		seen |= 1u << wf->steps[i].mode;
		json_array_append_new(a, json_string(sw_mode_name(wf->steps[i].mode)));
	}
	return a;
}

/* Dispatch attempt of step idx: render its with: against the input and the
 * outputs so far; a render error fails the step and the run. */
static void plan_dispatch(struct plan *p, int idx, int attempt)
{
	const struct sw_workflow *wf = p->s->wf;
	const struct sw_step *st = &wf->steps[idx];
	json_t *ctx, *with, *spec, *extra = NULL, *sj = json_array_get(p->s->steps, (size_t)idx);
	char err[512], *spec_text;
	const char *step_id;

	ctx = plan_ctx(p->s);
	with = ctx != NULL ? sw_template_render(st->with, ctx, err, sizeof(err)) : NULL;
	/* the mode's own keys (run, prompt, env, ...) may hold templates too */
	if (with != NULL && json_object_size(st->extra) > 0 &&
	    (extra = sw_template_render(st->extra, ctx, err, sizeof(err))) == NULL) {
		json_decref(with);
		with = NULL;
	}
	json_decref(ctx);
	if (with == NULL) {
		const char *e = plan_error(p, "bad_input: %s", err);

		plan_step_final(p, idx, "failed", e);
		plan_finish_run(p, RUN_FAILED, NULL, plan_error(p, "step %s: %s", st->name, e));
		return;
	}
	spec =
	    json_pack("{s:s, s:i, s:s, s:o, s:o, s:I}", "workflow", wf->name, "workflow_version",
		      wf->version, "uses", st->uses ? st->uses : "", "with", with, "run_modes",
		      plan_modes(wf), "output_max", (json_int_t)SCHED_OUTPUT_MAX);
	if (spec != NULL && extra != NULL)
		json_object_update_missing(spec, extra);
	json_decref(extra);
	spec_text = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
	json_decref(spec);
	if (spec_text == NULL) {
		p->failed = 1;
		snprintf(p->errstr, sizeof(p->errstr), "out of memory");
		return;
	}
	tx_own(&p->tx, spec_text);
	step_id = tx_fmt(&p->tx, "%s/%s/%d", p->run_id, st->name, attempt);
	plan_event(p, "step.dispatched", step_id,
		   json_pack("{s:s, s:i, s:s, s:i, s:s, s:I}", "step", st->name, "index", idx,
			     "mode", sw_mode_name(st->mode), "attempt", attempt, "spec", spec_text,
			     "timeout_ms", (json_int_t)st->timeout_ms));
	if (p->failed)
		return;
	tx_add(&p->tx,
	       "UPDATE steps SET state = 'dispatched', attempt = $3::int,"
	       " started = coalesce(started, now()),"
	       " deadline = CASE WHEN $4::bigint > 0"
	       "  THEN now() + $4::bigint * interval '1 millisecond' END,"
	       " next_attempt = NULL, error = NULL, output = NULL, dispatch_event_id = $5::uuid"
	       " WHERE run_id = $1::uuid AND idx = $2::int",
	       5, p->run_id, tx_fmt(&p->tx, "%d", idx), tx_fmt(&p->tx, "%d", attempt),
	       tx_fmt(&p->tx, "%" PRId64, st->timeout_ms), p->ev[*p->nev - 1].id);
	json_object_set_new(sj, "state", json_string("dispatched"));
	json_object_set_new(sj, "attempt", json_integer(attempt));
	p->dispatched++;
}

/* The current attempt of step idx failed (status FAILED, TIMED_OUT or
 * CANCELLED): retry it if attempts remain, else fail the run. */
static void plan_fail_attempt(struct plan *p, int idx, const char *status, const char *error)
{
	const struct sw_step *st = &p->s->wf->steps[idx];
	int attempt = jint(json_array_get(p->s->steps, (size_t)idx), "attempt");

	if (strcmp(status, "CANCELLED") != 0 && attempt < st->retries + 1) {
		int shift = attempt - 1 < 20 ? attempt - 1 : 20;
		int64_t delay = st->backoff_ms << shift;

		if (delay > 86400000 || delay < 0)
			delay = 86400000;
		tx_add(&p->tx,
		       "UPDATE steps SET state = 'retrying', error = $3, deadline = NULL,"
		       " next_attempt = now() + $4::bigint * interval '1 millisecond'"
		       " WHERE run_id = $1::uuid AND idx = $2::int",
		       4, p->run_id, tx_fmt(&p->tx, "%d", idx), error,
		       tx_fmt(&p->tx, "%" PRId64, delay));
		return;
	}
	plan_step_final(p, idx, strcmp(status, "TIMED_OUT") == 0 ? "timed_out" : "failed", error);
	plan_finish_run(p, RUN_FAILED, NULL, plan_error(p, "step %s: %s", st->name, error));
}

enum decision { DECIDE_APPLY, DECIDE_IGNORE, DECIDE_TERMINAL };

static int step_current(json_t *st, int attempt)
{
	const char *state = jstr(st, "state");

	return jint(st, "attempt") == attempt &&
	       (strcmp(state, "dispatched") == 0 || strcmp(state, "running") == 0);
}

static enum decision decide(struct plan *p, struct sched_op *op)
{
	struct snap *s = p->s;
	int idx = -1;
	json_t *st;

	if (op->kind == SCHED_OP_CANCEL) {
		size_t i;

		if (run_terminal(s->state))
			return DECIDE_TERMINAL;
		json_array_foreach(s->steps, i, st) {
			const char *state = jstr(st, "state");

			if (strcmp(state, "dispatched") == 0 || strcmp(state, "running") == 0 ||
			    strcmp(state, "retrying") == 0)
				plan_step_final(p, (int)i, "cancelled",
						"cancelled: run cancelled");
		}
		plan_event(p, "run.cancel_requested", NULL,
			   json_pack("{s:s, s:s}", "requested_by", op->tenant, "reason",
				     "cancelled by request"));
		plan_finish_run(p, RUN_CANCELLED, NULL, "cancelled by request");
		return DECIDE_APPLY;
	}
	if (strcmp(s->state, RUN_RUNNING) != 0)
		return DECIDE_IGNORE;
	if (op->kind == SCHED_OP_STARTED || op->kind == SCHED_OP_FINISHED)
		idx = snap_find(s, op->step);
	else if (op->idx >= 0 && (size_t)op->idx < s->wf->nsteps)
		idx = op->idx;
	if (idx < 0)
		return DECIDE_IGNORE;
	st = json_array_get(s->steps, (size_t)idx);

	switch (op->kind) {
	case SCHED_OP_STARTED:
		if (strcmp(jstr(st, "state"), "dispatched") != 0 ||
		    jint(st, "attempt") != op->attempt)
			return DECIDE_IGNORE;
		tx_add(
		    &p->tx,
		    "UPDATE steps SET state = 'running' WHERE run_id = $1::uuid AND idx = $2::int",
		    2, p->run_id, tx_fmt(&p->tx, "%d", idx));
		return DECIDE_APPLY;
	case SCHED_OP_FINISHED:
		if (!step_current(st, op->attempt))
			return DECIDE_IGNORE;
		if (strcmp(op->status, "SUCCEEDED") == 0) {
			json_t *out = op->output ? json_loads(op->output, JSON_DECODE_ANY, NULL)
						 : json_null();
			char *text = out ? json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

			if (text == NULL || strlen(text) > SCHED_OUTPUT_MAX) {
				json_decref(out);
				free(text);
				plan_fail_attempt(p, idx, "FAILED",
						  "internal: step output is not valid JSON or"
						  " exceeds output_max");
				return DECIDE_APPLY;
			}
			tx_own(&p->tx, text);
			tx_add(&p->tx,
			       "UPDATE steps SET state = 'succeeded', output = $3::jsonb,"
			       " error = NULL, finished = now(), deadline = NULL"
			       " WHERE run_id = $1::uuid AND idx = $2::int",
			       3, p->run_id, tx_fmt(&p->tx, "%d", idx), text);
			json_object_set_new(st, "state", json_string("succeeded"));
			json_object_set_new(st, "output", out);
			if ((size_t)idx + 1 < s->wf->nsteps)
				plan_dispatch(p, idx + 1, 1);
			else
				plan_finish_run(p, RUN_SUCCEEDED, text, NULL);
			return DECIDE_APPLY;
		}
		plan_fail_attempt(
		    p, idx, op->status,
		    plan_error(p, "%s", op->error && op->error[0] ? op->error : op->status));
		return DECIDE_APPLY;
	case SCHED_OP_TIMEOUT:
		if (!step_current(st, op->attempt))
			return DECIDE_IGNORE;
		plan_fail_attempt(
		    p, idx, "TIMED_OUT",
		    plan_error(p, "timeout: no outcome of attempt %d within %" PRId64 " ms",
			       op->attempt, s->wf->steps[idx].timeout_ms));
		return DECIDE_APPLY;
	case SCHED_OP_RETRY:
		if (strcmp(jstr(st, "state"), "retrying") != 0 ||
		    jint(st, "attempt") != op->attempt)
			return DECIDE_IGNORE;
		plan_dispatch(p, idx, op->attempt + 1);
		return DECIDE_APPLY;
	case SCHED_OP_CANCEL:
		break;
	}
	return DECIDE_IGNORE;
}

/* ---- the operation engine --------------------------------------------- */

static void op_read(struct sched_op *op);
static void op_begin(struct sched_op *op);

static void op_clear_events(struct sched_op *op)
{
	size_t i;

	for (i = 0; i < op->nev; i++)
		sched_event_clear(&op->ev[i]);
	op->nev = 0;
}

/*
 * One operation per run at a time: the others wait in the run's queue.
 * Without this, a step.started and a step.finished of one run consumed in
 * the same batch would read the same rev, and one of them would lose the
 * guard and read again; correct, but a wasted round trip per step.
 */
struct sched_run_lock {
	struct sched_run_lock *next; /* hash chain */
	char run_id[SW_UUID_STRLEN];
	struct sched_op *holder;      /* the op in progress */
	struct sched_op *head, *tail; /* waiting, in arrival order */
};

static struct sched_run_lock **lock_slot(struct sched_env *env, const char *run_id)
{
	struct sched_run_lock **l;
	uint32_t h = 2166136261u;
	const char *p;

	for (p = run_id; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	for (l = &env->locks[h % SCHED_LOCK_BUCKETS]; *l != NULL; l = &(*l)->next)
		if (strcmp((*l)->run_id, run_id) == 0)
			break;
	return l;
}

/* op, a step.finished, supersedes w, a step.started. */
static int op_supersedes(const struct sched_op *op, const struct sched_op *w)
{
	return w->kind == SCHED_OP_STARTED && op->kind == SCHED_OP_FINISHED &&
	       w->attempt == op->attempt && strcmp(w->step, op->step) == 0;
}

/* 1: op holds its run now; 0: it waits; -1: out of memory. A step.started
 * holding the run while it waits for its outcome is woken by whatever
 * queues behind it: its outcome folds it, anything else must not wait. */
static int lock_take(struct sched_op *op)
{
	struct sched_env *env = op->env;
	struct sched_run_lock **l, *n;

	if (env->locks == NULL &&
	    (env->locks = calloc(SCHED_LOCK_BUCKETS, sizeof(*env->locks))) == NULL)
		return -1;
	l = lock_slot(env, op->run_id);
	if ((n = *l) != NULL) {
		if (n->tail != NULL)
			n->tail->next_waiting = op;
		else
			n->head = op;
		n->tail = op;
		if (n->holder != NULL && n->holder->hold_ev != NULL)
			event_active(n->holder->hold_ev, EV_TIMEOUT, 0);
		return 0;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return -1;
	snprintf(n->run_id, sizeof(n->run_id), "%s", op->run_id);
	n->holder = op;
	*l = n;
	return 1;
}

/* op is done with its run: the next waiting op, or NULL (lock dropped). */
static struct sched_op *lock_pass(struct sched_op *op)
{
	struct sched_run_lock **l = lock_slot(op->env, op->run_id), *n = *l;
	struct sched_op *next;

	if (n == NULL)
		return NULL;
	if ((next = n->head) != NULL) {
		n->head = next->next_waiting;
		if (n->head == NULL)
			n->tail = NULL;
		next->next_waiting = NULL;
		n->holder = next;
		return next;
	}
	*l = n->next;
	free(n);
	return NULL;
}

void sched_ops_free(struct sched_env *env)
{
	size_t i;

	for (i = 0; env->locks != NULL && i < SCHED_LOCK_BUCKETS; i++)
		while (env->locks[i] != NULL) {
			struct sched_run_lock *n = env->locks[i];

			env->locks[i] = n->next;
			if (n->holder != NULL && n->holder->hold_ev != NULL) {
				event_free(n->holder->hold_ev);
				n->holder->hold_ev = NULL;
			}
			free(n); /* ops in progress or waiting are dropped at exit */
		}
	free(env->locks);
	env->locks = NULL;
}

static void op_end(struct sched_op *op, enum sched_op_result r)
{
	struct sched_op *next = lock_pass(op);

	if (op->hold_ev != NULL)
		event_free(op->hold_ev);
	if (op->done != NULL)
		op->done(op, r, op->opaque);
	op_clear_events(op);
	free(op->output);
	free(op->error);
	free(op);
	if (next != NULL)
		op_begin(next);
}

struct sched_op *sched_op_new(struct sched_env *env, enum sched_op_kind kind, const char *run_id,
			      sched_op_done_cb done, void *opaque)
{
	struct sched_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->env = env;
	op->kind = kind;
	op->idx = -1;
	snprintf(op->run_id, sizeof(op->run_id), "%s", run_id);
	op->done = done;
	op->opaque = opaque;
	return op;
}

static void op_count(struct sched_env *env, struct sched_op *op)
{
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_transitions_total",
			       "State transitions committed.", 1);
	if (op->dispatched)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_steps_dispatched_total",
				       "Step attempts dispatched.", op->dispatched);
	if (!op->finished_run)
		return;
	if (strcmp(op->run_state, RUN_SUCCEEDED) == 0)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_succeeded_total",
				       "Runs that succeeded.", 1);
	else if (strcmp(op->run_state, RUN_CANCELLED) == 0)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_cancelled_total",
				       "Runs cancelled.", 1);
	else
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_failed_total",
				       "Runs that failed.", 1);
	sw_log(SW_LOG_INFO, "run finished", "run_id", op->run_id, "state", op->run_state, NULL);
}

static void op_tx_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_op *op = opaque;
	struct sched_env *env = op->env;

	if (err != NULL) {
		if (strncmp(err, "SWREV", 5) == 0 || strncmp(err, "23505", 5) == 0) {
			/* the run moved on, or our own resent commit: read again */
			sw_metrics_counter_add(env->metrics, "sagewai_scheduler_conflicts_total",
					       "Transitions re-read after a concurrent change.",
					       1);
			op_clear_events(op);
			if (++op->tries < SCHED_MAX_TRIES) {
				op_read(op);
				return;
			}
		}
		snprintf(op->errmsg, sizeof(op->errmsg), "%s", err);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	if (op->nev > 0)
		sched_outbox_committed(env, res, op->ev, op->nev);
	op_count(env, op);
	sched_sse_touch(env, op->run_id);
	op_end(op, SCHED_OP_APPLIED);
}

static void op_ignored_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_op *op = opaque;

	(void)res;
	if (err != NULL) {
		snprintf(op->errmsg, sizeof(op->errmsg), "%s", err);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	op_end(op, SCHED_OP_IGNORED);
}

static void op_read_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_op *op = opaque;
	struct sched_env *env = op->env;
	struct plan p;
	struct snap s;
	enum decision d;
	const char *rev;

	if (err != NULL) {
		snprintf(op->errmsg, sizeof(op->errmsg), "%s", err);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	if (PQntuples(res) != 1) {
		op_end(op, SCHED_OP_NOT_FOUND);
		return;
	}
	if (snap_load(env, &s, res, op->errmsg, sizeof(op->errmsg)) == -1) {
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	snprintf(op->run_state, sizeof(op->run_state), "%s", s.state);
	if (s.processed) {
		snap_free(&s);
		op_end(op, SCHED_OP_IGNORED);
		return;
	}
	memset(&p, 0, sizeof(p));
	p.env = env;
	p.s = &s;
	p.run_id = op->run_id;
	p.ev = op->ev;
	p.nev = &op->nev;
	rev = tx_fmt(&p.tx, "%lld", s.rev);
	tx_add(&p.tx, "SELECT bump_rev($1::uuid, $2::bigint)", 2, op->run_id, rev);
	d = decide(&p, op);
	snap_free(&s);
	if (d != DECIDE_APPLY) {
		tx_free(&p.tx);
		op_clear_events(op);
		if (d == DECIDE_TERMINAL) {
			op_end(op, SCHED_OP_TERMINAL);
			return;
		}
		if (op->event_id[0] != '\0') {
			const char *params[1] = {op->event_id};

			if (sw_store_query_key(env->store, op->run_id,
					       "INSERT INTO processed (event_id) VALUES ($1::uuid)"
					       " ON CONFLICT DO NOTHING",
					       1, params, op_ignored_cb, op) == 0)
				return;
		}
		op_end(op, SCHED_OP_IGNORED);
		return;
	}
	if (op->event_id[0] != '\0')
		tx_add(&p.tx, "INSERT INTO processed (event_id) VALUES ($1::uuid)", 1,
		       op->event_id);
	tx_outbox(&p.tx, op->ev, op->nev);
	if (p.tx.oom || p.failed) {
		snprintf(op->errmsg, sizeof(op->errmsg), "cannot build the transition: %.200s",
			 p.failed ? p.errstr : "out of memory");
		tx_free(&p.tx);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	if (p.finished_run)
		snprintf(op->run_state, sizeof(op->run_state), "%s", p.run_state);
	op->finished_run = p.finished_run;
	op->dispatched = p.dispatched;
	if (sw_store_tx_key(env->store, op->run_id, p.tx.st, p.tx.n, op_tx_cb, op) == -1) {
		tx_free(&p.tx);
		snprintf(op->errmsg, sizeof(op->errmsg), "cannot queue the transition");
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	tx_free(&p.tx);
}

static void op_read(struct sched_op *op)
{
	const char *params[3] = {op->run_id, op->event_id[0] ? op->event_id : NULL,
				 op->kind == SCHED_OP_CANCEL ? op->tenant : NULL};

	if (sw_store_query_key(op->env->store, op->run_id, snap_sql, 3, params, op_read_cb, op) ==
	    -1) {
		snprintf(op->errmsg, sizeof(op->errmsg), "cannot queue the read");
		op_end(op, SCHED_OP_ERROR);
	}
}

/* A step.started with the step.finished of the same attempt waiting
 * behind it: the outcome's transition covers it. */
static int op_superseded(struct sched_op *op)
{
	struct sched_run_lock *n;
	struct sched_op *w;

	if (op->kind != SCHED_OP_STARTED || (n = *lock_slot(op->env, op->run_id)) == NULL)
		return 0;
	for (w = n->head; w != NULL; w = w->next_waiting)
		if (op_supersedes(w, op))
			return 1;
	return 0;
}

static void op_fold(struct sched_op *op)
{
	sw_metrics_counter_add(op->env->metrics, "sagewai_scheduler_started_folded_total",
			       "step.started events folded into their step.finished transition.",
			       1);
	op_end(op, SCHED_OP_IGNORED);
}

/* The hold of a step.started is over: its outcome came (lock_take woke
 * us), or it did not come in time and the step is marked running. */
static void op_hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_op *op = arg;

	(void)fd;
	(void)what;
	event_free(op->hold_ev);
	op->hold_ev = NULL;
	if (op_superseded(op))
		op_fold(op);
	else
		op_read(op);
}

/* op holds its run: go, unless something behind it makes it moot; a
 * step.started first waits a moment for its outcome. */
static void op_begin(struct sched_op *op)
{
	struct timeval tv = {0, SCHED_STARTED_HOLD_MS * 1000};

	if (op_superseded(op)) {
		op_fold(op);
		return;
	}
	if (op->kind == SCHED_OP_STARTED && !op->env->stopping &&
	    (op->hold_ev = evtimer_new(op->env->base, op_hold_cb, op)) != NULL) {
		if (evtimer_add(op->hold_ev, &tv) == 0)
			return;
		event_free(op->hold_ev);
		op->hold_ev = NULL;
	}
	op_read(op);
}

void sched_ops_start(struct sched_op **ops, size_t n)
{
	struct sched_op *op;
	size_t i, k = 0;

	/* ops[0..k) become the ones that hold their run at once; the others
	 * wait in their run's queue and may be begun (and freed) as soon as an
	 * op before them ends, so they are not touched again here. */
	for (i = 0; i < n; i++) {
		op = ops[i];
		switch (lock_take(op)) {
		case 1:
			ops[k++] = op;
			break;
		case 0:
			break;
		default:
			snprintf(op->errmsg, sizeof(op->errmsg), "out of memory");
			if (op->done != NULL)
				op->done(op, SCHED_OP_ERROR, op->opaque);
			free(op->output);
			free(op->error);
			free(op);
		}
	}
	/* a holder lives until its own op_end, which only its op_begin reaches */
	for (i = 0; i < k; i++)
		op_begin(ops[i]);
}

void sched_op_start(struct sched_op *op)
{
	sched_ops_start(&op, 1);
}

/* ---- submission ------------------------------------------------------- */

struct submit {
	struct sched_env *env;
	char run_id[SW_UUID_STRLEN];
	struct sched_event ev[SCHED_OP_EVENTS];
	size_t nev;
	int dispatched, finished_run;
	char run_state[16];
	sched_submit_cb done;
	void *opaque;
};

static void submit_free(struct submit *sb)
{
	size_t i;

	for (i = 0; i < sb->nev; i++)
		sched_event_clear(&sb->ev[i]);
	free(sb);
}

static void submit_cb(PGresult *res, const char *err, void *opaque)
{
	struct submit *sb = opaque;
	struct sched_env *env = sb->env;

	if (err != NULL && !(strncmp(err, "23505", 5) == 0 && strstr(err, "runs_pkey") != NULL)) {
		sw_log(SW_LOG_ERROR, "run submission failed", "run_id", sb->run_id, "error", err,
		       NULL);
		sb->done(NULL, err, sb->opaque);
		submit_free(sb);
		return;
	}
	/* a duplicate key on runs is our own resent transaction: committed */
	if (err == NULL)
		sched_outbox_committed(env, res, sb->ev, sb->nev);
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_submitted_total",
			       "Runs accepted.", 1);
	if (sb->dispatched)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_steps_dispatched_total",
				       "Step attempts dispatched.", sb->dispatched);
	if (sb->finished_run)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_failed_total",
				       "Runs that failed.", 1);
	sw_log(SW_LOG_INFO, "run submitted", "run_id", sb->run_id, "state", sb->run_state, NULL);
	sched_sse_touch(env, sb->run_id);
	sb->done(sb->run_id, NULL, sb->opaque);
	submit_free(sb);
}

/* A PostgreSQL array literal of names ([a-z0-9_-], validated by the
 * workflow parser, so no quoting is needed). */
static char *names_array(const struct sw_workflow *wf, int modes)
{
	size_t i, len = 3;
	char *s, *p;

	for (i = 0; i < wf->nsteps; i++)
		len +=
		    (modes ? strlen(sw_mode_name(wf->steps[i].mode)) : strlen(wf->steps[i].name)) +
		    3;
	if ((s = malloc(len)) == NULL)
		return NULL;
	p = s;
	*p++ = '{';
	for (i = 0; i < wf->nsteps; i++) {
		const char *v = modes ? sw_mode_name(wf->steps[i].mode) : wf->steps[i].name;

		p += sprintf(p, "%s\"%s\"", i ? "," : "", v);
	}
	*p++ = '}';
	*p = '\0';
	return s;
}

int sched_run_submit(struct sched_env *env, const char *tenant, const struct sw_workflow *wf,
		     json_t *input, sched_submit_cb done, void *opaque)
{
	struct submit *sb;
	struct plan p;
	struct snap s;
	char *input_text;
	size_t i;
	int rc = -1;

	if (wf->nsteps == 0 || (sb = calloc(1, sizeof(*sb))) == NULL)
		return -1;
	sb->env = env;
	sb->done = done;
	sb->opaque = opaque;
	sw_uuid_v7_str(sb->run_id);

	memset(&s, 0, sizeof(s));
	snprintf(s.tenant, sizeof(s.tenant), "%s", tenant);
	snprintf(s.workflow, sizeof(s.workflow), "%s", wf->name);
	snprintf(s.state, sizeof(s.state), RUN_RUNNING);
	s.version = wf->version;
	s.input = input;
	s.wf = wf;
	s.steps = json_array();
	for (i = 0; i < wf->nsteps; i++)
		json_array_append_new(s.steps,
				      json_pack("{s:i, s:s, s:s, s:i, s:n}", "idx", (int)i, "name",
						wf->steps[i].name, "state", "pending", "attempt",
						0, "output"));
	memset(&p, 0, sizeof(p));
	p.env = env;
	p.s = &s;
	p.run_id = sb->run_id;
	p.ev = sb->ev;
	p.nev = &sb->nev;
	snprintf(p.run_state, sizeof(p.run_state), RUN_RUNNING);

	input_text = json_dumps(input, JSON_COMPACT);
	tx_own(&p.tx, input_text);
	tx_add(&p.tx,
	       "INSERT INTO runs (id, tenant, workflow, version, input, state, started)"
	       " VALUES ($1::uuid, $2, $3, $4::int, $5::jsonb, 'running', now())",
	       5, sb->run_id, tenant, wf->name, tx_fmt(&p.tx, "%d", wf->version), input_text);
	tx_add(&p.tx,
	       "INSERT INTO steps (run_id, idx, name, mode, state)"
	       " SELECT $1::uuid, t.i - 1, t.n, t.m, 'pending'"
	       " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t (n, m, i)",
	       3, sb->run_id, tx_own(&p.tx, names_array(wf, 0)),
	       tx_own(&p.tx, names_array(wf, 1)));
	plan_event(&p, "run.submitted", NULL,
		   json_pack("{s:s, s:i, s:s, s:s, s:o}", "workflow", wf->name, "workflow_version",
			     wf->version, "input", input_text ? input_text : "{}", "user", "",
			     "modes", plan_modes(wf)));
	plan_event(&p, "run.started", NULL,
		   json_pack("{s:s, s:i}", "workflow", wf->name, "workflow_version", wf->version));
	if (!p.failed)
		plan_dispatch(&p, 0, 1);
	tx_outbox(&p.tx, sb->ev, sb->nev);
	sb->dispatched = p.dispatched;
	sb->finished_run = p.finished_run;
	snprintf(sb->run_state, sizeof(sb->run_state), "%s", p.run_state);
	if (!p.tx.oom && !p.failed && input_text != NULL &&
	    sw_store_tx_key(env->store, sb->run_id, p.tx.st, p.tx.n, submit_cb, sb) == 0)
		rc = 0;
	if (p.failed)
		sw_log(SW_LOG_ERROR, "cannot build run submission", "error", p.errstr, NULL);
	tx_free(&p.tx);
	json_decref(s.steps);
	if (rc == -1)
		submit_free(sb);
	return rc;
}

/* ---- timers ------------------------------------------------------------ */

static const char *const scan_sql =
	"(SELECT run_id::text, idx, attempt, 'r' FROM steps"
	"  WHERE state = 'retrying' AND next_attempt <= now() ORDER BY next_attempt LIMIT 200)"
	" UNION ALL "
	"(SELECT run_id::text, idx, attempt, 't' FROM steps"
	"  WHERE state IN ('dispatched', 'running') AND deadline <= now()"
	"  ORDER BY deadline LIMIT 200)";

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
		int retry = PQgetvalue(res, i, 3)[0] == 'r';
		struct sched_op *op = sched_op_new(env, retry ? SCHED_OP_RETRY : SCHED_OP_TIMEOUT,
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

	(void)fd;
	(void)what;
	if (env->stopping)
		return;
	if (env->last_prune_ms == 0 || now - env->last_prune_ms > 3600 * 1000) {
		/* processed ids outlive any redelivery by far after a week */
		env->last_prune_ms = now;
		sw_store_query(env->store,
			       "DELETE FROM processed WHERE created < now() - interval '7 days'",
			       0, NULL, NULL, NULL);
	}
	if (env->scanning)
		return;
	env->scanning = 1;
	if (sw_store_query(env->store, scan_sql, 0, NULL, scan_cb, env) == -1)
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
