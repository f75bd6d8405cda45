/*
 * runs.c: what every transition is built from -- a transaction under
 * construction (struct sched_tx) and a snapshot of the run it reads first
 * (struct sched_snap) -- and the submission of a new run, the one
 * transition that reads nothing.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

/* ---- transactions under construction ---------------------------------- */

const char *sched_tx_own(struct sched_tx *t, char *s)
{
	if (s == NULL || t->nown == SCHED_TX_PARAMS) {
		free(s);
		t->oom = 1;
		return NULL;
	}
	t->own[t->nown++] = s;
	return s;
}

const char *sched_tx_fmt(struct sched_tx *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return sched_tx_own(t, s);
}

void sched_tx_add(struct sched_tx *t, const char *sql, int np, ...)
{
	va_list ap;
	int i;

	if (t->n == SCHED_TX_STMTS || t->npv + (size_t)np > SCHED_TX_PARAMS) {
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

void sched_tx_batch(struct sched_tx *t, enum sched_rows b)
{
	if (!t->oom && t->n > 0)
		t->batch[t->n - 1] = (unsigned char)b;
}

void sched_tx_outbox(struct sched_tx *t, const struct sched_event *evs, size_t n)
{
	if (n == 0)
		return;
	if (t->n == SCHED_TX_STMTS || t->ob_params != NULL ||
	    (t->ob_params = calloc(4, sizeof(*t->ob_params))) == NULL ||
	    sched_outbox_params(evs, n, t->ob_params) == -1) {
		t->oom = 1;
		return;
	}
	t->st[t->n].sql = sched_outbox_insert_sql;
	t->st[t->n].nparams = 4;
	t->st[t->n].params = (const char *const *)t->ob_params;
	t->n++;
}

void sched_tx_free(struct sched_tx *t)
{
	size_t i;

	for (i = 0; i < t->nown; i++)
		free(t->own[i]);
	sched_outbox_params_free(t->ob_params);
	free(t->ob_params);
	memset(t, 0, sizeof(*t));
}

struct sched_tx *sched_tx_move(struct sched_tx *t)
{
	struct sched_tx *m = malloc(sizeof(*m));
	size_t i;

	if (m == NULL)
		return NULL;
	*m = *t;
	for (i = 0; i < m->n; i++) {
		uintptr_t a = (uintptr_t)m->st[i].params, lo = (uintptr_t)t->pv;

		/* into t->pv: the same place in m->pv (the outbox's are on the heap) */
		if (a >= lo && a <= lo + sizeof(t->pv))
			m->st[i].params = m->pv + (a - lo) / sizeof(t->pv[0]);
	}
	memset(t, 0, sizeof(*t));
	return m;
}

/* ---- snapshots --------------------------------------------------------- */

/* The processed flag: the event is in the table of processed ids that
 * versions before the state machine alone guarded repeats wrote (a week of
 * them is kept, timers.c); nothing writes it now. */
const char *const sched_snap_sql =
	"SELECT r.tenant, r.workflow, r.version, r.state, r.rev, r.input::text, w.def::text,"
	" EXISTS (SELECT 1 FROM processed p WHERE p.event_id = $2::uuid),"
	" (SELECT json_agg(json_build_object('idx', s.idx, 'name', s.name, 'state', s.state,"
	"  'attempt', s.attempt, 'output', s.output, 'identity', s.identity,"
	"  'replay', s.replay) ORDER BY s.idx)"
	"  FROM steps s WHERE s.run_id = r.id)::text"
	" FROM runs r JOIN workflows w"
	"  ON w.tenant = r.tenant AND w.name = r.workflow AND w.version = r.version"
	" WHERE r.id = $1::uuid AND ($3::text IS NULL OR r.tenant = $3)";

void sched_snap_free(struct sched_snap *s)
{
	json_decref(s->input);
	json_decref(s->steps);
	free(s->run.steps);
	memset(s, 0, sizeof(*s));
}

/* The state machine's view of the steps: stored state and attempt, the
 * definition's retries and backoff. -1 on a state it does not know. */
static int snap_states(struct sched_snap *s)
{
	json_t *st;
	size_t i;

	s->run.nsteps = s->wf->nsteps;
	if ((s->run.steps = calloc(s->wf->nsteps + 1, sizeof(*s->run.steps))) == NULL)
		return -1;
	json_array_foreach(s->steps, i, st) {
		struct sched_fsm_step *f = &s->run.steps[i];
		const char *state = json_string_value(json_object_get(st, "state"));

		if (state == NULL || sched_step_state_parse(state, &f->state) == -1)
			return -1;
		f->attempt = (int)json_integer_value(json_object_get(st, "attempt"));
		f->retries = s->wf->steps[i].retries;
		f->backoff_ms = s->wf->steps[i].backoff_ms;
	}
	return 0;
}

int sched_snap_load(struct sched_env *env, struct sched_snap *s, PGresult *res, char *errstr,
		    size_t errlen)
{
	json_error_t jerr;

	memset(s, 0, sizeof(*s));
	snprintf(s->tenant, sizeof(s->tenant), "%s", PQgetvalue(res, 0, 0));
	snprintf(s->workflow, sizeof(s->workflow), "%s", PQgetvalue(res, 0, 1));
	s->version = atoi(PQgetvalue(res, 0, 2));
	s->rev = atoll(PQgetvalue(res, 0, 4));
	s->processed = PQgetvalue(res, 0, 7)[0] == 't';
	s->input = json_loads(PQgetvalue(res, 0, 5), JSON_DECODE_ANY, &jerr);
	s->steps = json_loads(PQgetvalue(res, 0, 8), JSON_DECODE_ANY, &jerr);
	s->bytes = (size_t)PQgetlength(res, 0, 5) + (size_t)PQgetlength(res, 0, 8);
	s->wf = sched_def_get(env, s->tenant, s->workflow, s->version, PQgetvalue(res, 0, 6),
			      errstr, errlen);
	if (s->input == NULL || !json_is_array(s->steps) || s->wf == NULL ||
	    json_array_size(s->steps) != s->wf->nsteps ||
	    sched_run_state_parse(PQgetvalue(res, 0, 3), &s->run.state) == -1 ||
	    snap_states(s) == -1) {
		if (s->wf != NULL)
			snprintf(errstr, errlen, "run %s: stored state inconsistent", s->workflow);
		sched_snap_free(s);
		return -1;
	}
	return 0;
}

int sched_snap_find(const struct sched_snap *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->wf->nsteps; i++)
		if (strcmp(s->wf->steps[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ---- submission ------------------------------------------------------- */

struct submit {
	struct sched_env *env;
	char run_id[SW_UUID_STRLEN];
	int dispatched, finished_run;
	char run_state[16];
	sched_submit_cb done;
	void *opaque;
};

int sched_submit_guarded(const char *err)
{
	return err != NULL && (strncmp(err, "SWVER", 5) == 0 || strncmp(err, "SWINP", 5) == 0 ||
			       strncmp(err, "SWIDF", 5) == 0);
}

/* The submission's group commit is over (ops.c). */
static void submit_done(struct sched_op *op, enum sched_op_result r, void *opaque)
{
	struct submit *sb = opaque;
	struct sched_env *env = sb->env;

	/* a duplicate key on runs is our own resent transaction: committed
	 * (its outbox rows go out with the sweep) */
	if (r != SCHED_OP_APPLIED &&
	    !(strncmp(op->errmsg, "23505", 5) == 0 && strstr(op->errmsg, "runs_pkey") != NULL)) {
		if (!sched_submit_guarded(op->errmsg))
			sw_log(SW_LOG_ERROR, "run submission failed", "run_id", sb->run_id,
			       "error", op->errmsg, NULL);
		sb->done(NULL, NULL, op->errmsg, sb->opaque);
		free(sb);
		return;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_submitted_total",
			       "Runs accepted.", 1);
	if (sb->dispatched)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_steps_dispatched_total",
				       "Step attempts dispatched.", sb->dispatched);
	if (sb->finished_run)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_failed_total",
				       "Runs that failed.", 1);
	sw_log(SW_LOG_INFO, "run submitted", "run_id", sb->run_id, "state", sb->run_state, NULL);
	sched_sse_touch(env, sb->run_id, sched_run_state_ended(sb->run_state));
	sb->done(sb->run_id, sb->run_state, NULL, sb->opaque);
	free(sb);
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

/* The steps' pinned identities as a JSON array by index (null for none),
 * as text (malloc'd; NULL when out of memory). */
static char *identity_array(const struct sw_workflow *wf, json_t *identity)
{
	json_t *a = json_array();
	char *text;
	size_t i;

	for (i = 0; a != NULL && i < wf->nsteps; i++) {
		json_t *v = json_object_get(identity, wf->steps[i].name);

		json_array_append_new(a, json_is_string(v) ? json_copy(v) : json_null());
	}
	text = a ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return text;
}

/* The steps' replay entries as a JSON array by index of their JSON text
 * (null for none), as text (malloc'd; NULL when out of memory). */
static char *replay_array(const struct sw_workflow *wf, json_t *replay)
{
	json_t *a = json_array();
	char *text;
	size_t i;

	for (i = 0; a != NULL && i < wf->nsteps; i++) {
		json_t *v = json_object_get(replay, wf->steps[i].name);
		char *t = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;

		json_array_append_new(a, t != NULL ? json_string(t) : json_null());
		free(t);
	}
	text = a ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return text;
}

int sched_run_submit(struct sched_env *env, const char *tenant, const char *user,
		     const char *run_id, const struct sw_workflow *wf, json_t *input,
		     json_t *identity, const char *replay_of, json_t *replay,
		     const struct sched_submit_guard *guard, sched_submit_cb done, void *opaque)
{
	struct submit *sb;
	struct sched_op *op;
	struct sched_plan p;
	struct sched_snap s;
	struct sched_fsm_decision d;
	char *input_text;
	size_t i;
	int rc = -1;

	if (wf->nsteps == 0 || (sb = calloc(1, sizeof(*sb))) == NULL)
		return -1;
	if ((op = sched_op_new(env, SCHED_OP_SUBMIT, run_id, submit_done, sb)) == NULL) {
		free(sb);
		return -1;
	}
	sb->env = env;
	sb->done = done;
	sb->opaque = opaque;
	snprintf(sb->run_id, sizeof(sb->run_id), "%s", run_id);

	memset(&s, 0, sizeof(s));
	snprintf(s.tenant, sizeof(s.tenant), "%s", tenant);
	snprintf(s.workflow, sizeof(s.workflow), "%s", wf->name);
	s.version = wf->version;
	s.input = input;
	s.wf = wf;
	s.steps = json_array();
	s.run.state = SCHED_RUN_RUNNING;
	s.run.nsteps = wf->nsteps;
	if ((s.run.steps = calloc(wf->nsteps, sizeof(*s.run.steps))) == NULL) {
		json_decref(s.steps);
		free(op);
		free(sb);
		return -1;
	}
	for (i = 0; i < wf->nsteps; i++) {
		json_t *pin = json_object_get(identity, wf->steps[i].name);
		json_t *rp = json_object_get(replay, wf->steps[i].name);
		char *rpt = json_is_object(rp) ? json_dumps(rp, JSON_COMPACT) : NULL;

		json_array_append_new(s.steps,
				      json_pack("{s:i, s:s, s:s, s:i, s:n, s:O, s:o}", "idx",
						(int)i, "name", wf->steps[i].name, "state",
						"pending", "attempt", 0, "output", "identity",
						json_is_string(pin) ? pin : json_null(), "replay",
						rpt != NULL ? json_string(rpt) : json_null()));
		free(rpt);
		s.run.steps[i].state = SCHED_STEP_PENDING;
		s.run.steps[i].retries = wf->steps[i].retries;
		s.run.steps[i].backoff_ms = wf->steps[i].backoff_ms;
	}
	sched_plan_init(&p, env, &s, op->run_id, op->ev, &op->nev);

	if (guard != NULL && (guard->latest || guard->macs != NULL))
		sched_tx_add(
		    &p.tx, "SELECT submit_guard($1, $2, $3::int, $4::text[])", 4, tenant, wf->name,
		    guard->latest ? sched_tx_fmt(&p.tx, "%d", wf->version) : NULL,
		    guard->macs != NULL ? sched_tx_own(&p.tx, strdup(guard->macs)) : NULL);
	input_text = json_dumps(input, JSON_COMPACT);
	sched_tx_own(&p.tx, input_text);
	sched_tx_add(&p.tx,
		     "INSERT INTO runs (id, tenant, workflow, version, input, state, started,"
		     " user_name, replay_of)"
		     " VALUES ($1::uuid, $2, $3, $4::int, $5::jsonb, 'running', now(), $6,"
		     " nullif($7, '')::uuid)",
		     7, sb->run_id, tenant, wf->name, sched_tx_fmt(&p.tx, "%d", wf->version),
		     input_text, user, replay_of != NULL ? replay_of : "");
	/* identity, replay: JSON arrays by index of each step's pinned keys
	 * and replay entry (text) */
	sched_tx_add(&p.tx,
		     "INSERT INTO steps (run_id, idx, name, mode, state, identity, replay)"
		     " SELECT $1::uuid, t.i - 1, t.n, t.m, 'pending',"
		     "  $4::json ->> (t.i - 1)::int, $5::json ->> (t.i - 1)::int"
		     " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t (n, m, i)",
		     5, sb->run_id, sched_tx_own(&p.tx, names_array(wf, 0)),
		     sched_tx_own(&p.tx, names_array(wf, 1)),
		     sched_tx_own(&p.tx, identity_array(wf, identity)),
		     sched_tx_own(&p.tx, replay_array(wf, replay)));
	sched_plan_event(
	    &p, "run.submitted", NULL,
	    json_pack("{s:s, s:i, s:s, s:s, s:o, s:s}", "workflow", wf->name, "workflow_version",
		      wf->version, "input", input_text ? input_text : "{}", "user", user, "modes",
		      sched_plan_modes(wf), "replay_of", replay_of != NULL ? replay_of : ""));
	sched_plan_event(&p, "run.started", NULL,
			 json_pack("{s:s, s:i}", "workflow", wf->name, "workflow_version",
				   wf->version));
	if (!p.failed) {
		sched_fsm_submit(&s.run, &d);
		sched_plan_apply(&p, &d, NULL, NULL, NULL);
	}
	sb->dispatched = p.dispatched;
	sb->finished_run = p.finished_run;
	snprintf(sb->run_state, sizeof(sb->run_state), "%s", p.run_state);
	/* one transaction: the run, its steps, the first dispatch's outbox row;
	 * answered once it is durable (with the group commit of ops.c) */
	if (!p.tx.oom && !p.failed && input_text != NULL &&
	    (op->tx = sched_tx_move(&p.tx)) != NULL) {
		/* the run as committed (rev 0), for its first transition */
		if ((op->snap = malloc(sizeof(*op->snap))) != NULL) {
			*op->snap = s;
			op->snap->input = json_incref(input);
			op->snap->bytes = strlen(input_text);
			s.steps = NULL;
			s.run.steps = NULL;
		}
		sched_op_commit(op);
		rc = 0;
	}
	if (p.failed)
		sw_log(SW_LOG_ERROR, "cannot build run submission", "error", p.errstr, NULL);
	sched_tx_free(&p.tx);
	json_decref(s.steps);
	free(s.run.steps);
	if (rc == -1) {
		for (i = 0; i < op->nev; i++)
			sched_event_clear(&op->ev[i]);
		free(op);
		free(sb);
	}
	return rc;
}
