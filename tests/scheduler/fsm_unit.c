/*
 * Unit tests of the scheduler's state machine (services/scheduler/fsm.c),
 * without PostgreSQL or Kafka:
 *   - the transition table: every legal transition, and every late or
 *     illegal input ignored with its reason (an outcome of an old attempt,
 *     of a step not in flight, of a cancelled or finished run, of no such
 *     step; a cancel of a finished run);
 *   - whole runs through sched_fsm_apply: success, retries with backoff
 *     until the limit then failure, timeouts, cancel and what comes after;
 *   - the backoff, and the state names both ways.
 */
#include <string.h>

#include "fsm.h"
#include "sw_test.h"

#define MAXSTEPS 8

struct fixture {
	struct sched_fsm_step steps[MAXSTEPS];
	struct sched_fsm_run run;
};

/* steps as "R1 P0 ...": a state letter and the attempt per step; letters
 * P pending, D dispatched, R running, S succeeded, Y retrying, F failed,
 * T timed_out, C cancelled, K skipped. Every step has retries and
 * backoff_ms 100. */
static void fixture(struct fixture *f, enum sched_run_state state, const char *steps,
		    int retries)
{
	static const char letters[] = "PDRSYFTCK";
	static const enum sched_step_state states[] = {
		SCHED_STEP_PENDING,   SCHED_STEP_DISPATCHED, SCHED_STEP_RUNNING,
		SCHED_STEP_SUCCEEDED, SCHED_STEP_RETRYING,   SCHED_STEP_FAILED,
		SCHED_STEP_TIMED_OUT, SCHED_STEP_CANCELLED,  SCHED_STEP_SKIPPED,
	};
	const char *p = steps;
	size_t n = 0;

	memset(f, 0, sizeof(*f));
	while (*p != '\0') {
		const char *l = strchr(letters, *p);

		SW_CHECKF(l != NULL && n < MAXSTEPS, "bad fixture %s", steps);
		f->steps[n].state = states[l - letters];
		f->steps[n].attempt = p[1] - '0';
		f->steps[n].retries = retries;
		f->steps[n].backoff_ms = 100;
		n++;
		p += 2;
		while (*p == ' ')
			p++;
	}
	f->run.state = state;
	f->run.steps = f->steps;
	f->run.nsteps = n;
}

static struct sched_fsm_input input(enum sched_fsm_input_kind kind, int step, int attempt,
				    enum sched_fsm_outcome outcome)
{
	struct sched_fsm_input in;

	memset(&in, 0, sizeof(in));
	in.kind = kind;
	in.step = step;
	in.attempt = attempt;
	in.outcome = outcome;
	in.output_ok = 1;
	return in;
}

#define ANY -2 /* a field the row does not check */

struct row {
	const char *what;
	enum sched_run_state run;
	const char *steps;
	int retries;
	enum sched_fsm_input_kind kind;
	int step, attempt;
	enum sched_fsm_outcome outcome;
	int output_bad;
	/* expected */
	enum sched_fsm_verdict verdict;
	int late; /* enum sched_fsm_late, or ANY */
	int to_step;
	int step_to; /* enum sched_step_state, or ANY */
	int dispatch, dispatch_attempt;
	enum sched_run_state run_to;
	int skip_pending, cancel_active, bad_output;
	int64_t retry_in_ms;
};

#define RUNNING SCHED_RUN_RUNNING
#define OK SCHED_FSM_OK
#define FAIL SCHED_FSM_FAILED
#define TOUT SCHED_FSM_TIMED_OUT
#define CANC SCHED_FSM_CANCELLED
#define APPLY SCHED_FSM_APPLY
#define IGNORE SCHED_FSM_IGNORE

static const struct row legal[] = {
	{"started: dispatched -> running", RUNNING, "D1 P0", 2, SCHED_FSM_STARTED, 0, 1, OK, 0,
	 APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_RUNNING, -1, 0, RUNNING, 0, 0, 0, 0},
	{"finished ok: running -> succeeded, next dispatched", RUNNING, "R1 P0 P0", 2,
	 SCHED_FSM_FINISHED, 0, 1, OK, 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_SUCCEEDED, 1,
	 1, RUNNING, 0, 0, 0, 0},
	{"finished ok of a dispatched step (started folded)", RUNNING, "S1 D1 P0", 2,
	 SCHED_FSM_FINISHED, 1, 1, OK, 0, APPLY, SCHED_FSM_NOT_LATE, 1, SCHED_STEP_SUCCEEDED, 2,
	 1, RUNNING, 0, 0, 0, 0},
	{"finished ok of the last step: run succeeded", RUNNING, "S1 S2 R1", 2,
	 SCHED_FSM_FINISHED, 2, 1, OK, 0, APPLY, SCHED_FSM_NOT_LATE, 2, SCHED_STEP_SUCCEEDED, -1,
	 0, SCHED_RUN_SUCCEEDED, 0, 0, 0, 0},
	{"finished failed, attempts left: retrying after the backoff", RUNNING, "R1 P0", 2,
	 SCHED_FSM_FINISHED, 0, 1, FAIL, 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_RETRYING, -1,
	 0, RUNNING, 0, 0, 0, 100},
	{"finished failed, second attempt: backoff doubled", RUNNING, "R2 P0", 2,
	 SCHED_FSM_FINISHED, 0, 2, FAIL, 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_RETRYING, -1,
	 0, RUNNING, 0, 0, 0, 200},
	{"finished failed, last attempt: step and run failed", RUNNING, "R3 P0", 2,
	 SCHED_FSM_FINISHED, 0, 3, FAIL, 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_FAILED, -1, 0,
	 SCHED_RUN_FAILED, 1, 0, 0, 0},
	{"finished failed, no retries: run failed", RUNNING, "S1 R1", 0, SCHED_FSM_FINISHED, 1, 1,
	 FAIL, 0, APPLY, SCHED_FSM_NOT_LATE, 1, SCHED_STEP_FAILED, -1, 0, SCHED_RUN_FAILED, 0, 0,
	 0, 0},
	{"finished timed_out, last attempt: step timed_out", RUNNING, "R1", 0, SCHED_FSM_FINISHED,
	 0, 1, TOUT, 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_TIMED_OUT, -1, 0,
	 SCHED_RUN_FAILED, 0, 0, 0, 0},
	{"finished timed_out, attempts left: retrying", RUNNING, "R1", 1, SCHED_FSM_FINISHED, 0,
	 1, TOUT, 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_RETRYING, -1, 0, RUNNING, 0, 0, 0,
	 100},
	{"finished cancelled: never retried", RUNNING, "R1 P0", 5, SCHED_FSM_FINISHED, 0, 1, CANC,
	 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_FAILED, -1, 0, SCHED_RUN_FAILED, 1, 0, 0, 0},
	{"finished ok with unusable output: a failed attempt", RUNNING, "R1 P0", 1,
	 SCHED_FSM_FINISHED, 0, 1, OK, 1, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_RETRYING, -1,
	 0, RUNNING, 0, 0, 1, 100},
	{"finished ok with unusable output, last attempt", RUNNING, "R1 P0", 0,
	 SCHED_FSM_FINISHED, 0, 1, OK, 1, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_FAILED, -1, 0,
	 SCHED_RUN_FAILED, 1, 0, 1, 0},
	{"timeout of a dispatched attempt, attempts left", RUNNING, "D1", 1, SCHED_FSM_TIMEOUT, 0,
	 1, OK, 0, APPLY, SCHED_FSM_NOT_LATE, 0, SCHED_STEP_RETRYING, -1, 0, RUNNING, 0, 0, 0,
	 100},
	{"timeout of a running attempt, the last", RUNNING, "S1 R2 P0", 1, SCHED_FSM_TIMEOUT, 1, 2,
	 OK, 0, APPLY, SCHED_FSM_NOT_LATE, 1, SCHED_STEP_TIMED_OUT, -1, 0, SCHED_RUN_FAILED, 1, 0,
	 0, 0},
	{"retry due: dispatched as the next attempt", RUNNING, "S1 Y1", 2, SCHED_FSM_RETRY_DUE, 1,
	 1, OK, 0, APPLY, SCHED_FSM_NOT_LATE, -1, ANY, 1, 2, RUNNING, 0, 0, 0, 0},
	{"cancel of a running run", RUNNING, "S1 R1 P0", 2, SCHED_FSM_CANCEL, -1, 0, OK, 0, APPLY,
	 SCHED_FSM_NOT_LATE, -1, ANY, -1, 0, SCHED_RUN_CANCELLED, 1, 1, 0, 0},
	{"cancel while a step waits to retry", RUNNING, "Y2", 2, SCHED_FSM_CANCEL, -1, 0, OK, 0,
	 APPLY, SCHED_FSM_NOT_LATE, -1, ANY, -1, 0, SCHED_RUN_CANCELLED, 0, 1, 0, 0},
	{"cancel of a pending run", SCHED_RUN_PENDING, "P0", 2, SCHED_FSM_CANCEL, -1, 0, OK, 0,
	 APPLY, SCHED_FSM_NOT_LATE, -1, ANY, -1, 0, SCHED_RUN_CANCELLED, 1, 1, 0, 0},
	{"dispatch failed (bad input): step and run failed", RUNNING, "S1 D1 P0", 2,
	 SCHED_FSM_DISPATCH_FAILED, 1, 1, OK, 0, APPLY, SCHED_FSM_NOT_LATE, 1, SCHED_STEP_FAILED,
	 -1, 0, SCHED_RUN_FAILED, 1, 0, 0, 0},
};

static const struct row late[] = {
	{"started twice", RUNNING, "R1", 2, SCHED_FSM_STARTED, 0, 1, OK, 0, IGNORE,
	 SCHED_FSM_STEP_STATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"started of an old attempt", RUNNING, "D2", 2, SCHED_FSM_STARTED, 0, 1, OK, 0, IGNORE,
	 SCHED_FSM_OLD_ATTEMPT, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"started after the outcome", RUNNING, "S1 D1", 2, SCHED_FSM_STARTED, 0, 1, OK, 0, IGNORE,
	 SCHED_FSM_STEP_STATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome of an old attempt", RUNNING, "R2", 2, SCHED_FSM_FINISHED, 0, 1, OK, 0, IGNORE,
	 SCHED_FSM_OLD_ATTEMPT, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"failure of an old attempt", RUNNING, "D3", 2, SCHED_FSM_FINISHED, 0, 2, FAIL, 0, IGNORE,
	 SCHED_FSM_OLD_ATTEMPT, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome while waiting to retry", RUNNING, "Y1", 2, SCHED_FSM_FINISHED, 0, 1, OK, 0,
	 IGNORE, SCHED_FSM_STEP_STATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome twice", RUNNING, "S1 D1", 2, SCHED_FSM_FINISHED, 0, 1, OK, 0, IGNORE,
	 SCHED_FSM_STEP_STATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome of a step never dispatched", RUNNING, "R1 P0", 2, SCHED_FSM_FINISHED, 1, 1, OK,
	 0, IGNORE, SCHED_FSM_OLD_ATTEMPT, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome for a cancelled run", SCHED_RUN_CANCELLED, "C1 K0", 2, SCHED_FSM_FINISHED, 0, 1,
	 OK, 0, IGNORE, SCHED_FSM_RUN_OVER, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome for a failed run", SCHED_RUN_FAILED, "F3", 2, SCHED_FSM_FINISHED, 0, 3, FAIL, 0,
	 IGNORE, SCHED_FSM_RUN_OVER, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome for a succeeded run", SCHED_RUN_SUCCEEDED, "S1", 2, SCHED_FSM_FINISHED, 0, 1, OK,
	 0, IGNORE, SCHED_FSM_RUN_OVER, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"started for a cancelled run", SCHED_RUN_CANCELLED, "C1", 2, SCHED_FSM_STARTED, 0, 1, OK,
	 0, IGNORE, SCHED_FSM_RUN_OVER, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"outcome of no such step", RUNNING, "R1", 2, SCHED_FSM_FINISHED, -1, 1, OK, 0, IGNORE,
	 SCHED_FSM_NO_STEP, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"timer of a step index out of range", RUNNING, "R1", 2, SCHED_FSM_TIMEOUT, 1, 1, OK, 0,
	 IGNORE, SCHED_FSM_NO_STEP, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"timeout after the outcome", RUNNING, "S1 D1", 2, SCHED_FSM_TIMEOUT, 0, 1, OK, 0, IGNORE,
	 SCHED_FSM_STEP_STATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"timeout of an old attempt", RUNNING, "R2", 2, SCHED_FSM_TIMEOUT, 0, 1, OK, 0, IGNORE,
	 SCHED_FSM_OLD_ATTEMPT, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"timeout of a cancelled run", SCHED_RUN_CANCELLED, "C1", 2, SCHED_FSM_TIMEOUT, 0, 1, OK,
	 0, IGNORE, SCHED_FSM_RUN_OVER, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"retry due twice (already dispatched)", RUNNING, "D2", 2, SCHED_FSM_RETRY_DUE, 0, 1, OK,
	 0, IGNORE, SCHED_FSM_OLD_ATTEMPT, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"retry due of a step not retrying", RUNNING, "R1", 2, SCHED_FSM_RETRY_DUE, 0, 1, OK, 0,
	 IGNORE, SCHED_FSM_STEP_STATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"retry due of a cancelled run", SCHED_RUN_CANCELLED, "C1", 2, SCHED_FSM_RETRY_DUE, 0, 1,
	 OK, 0, IGNORE, SCHED_FSM_RUN_OVER, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"cancel of a succeeded run", SCHED_RUN_SUCCEEDED, "S1", 2, SCHED_FSM_CANCEL, -1, 0, OK, 0,
	 SCHED_FSM_TERMINAL, SCHED_FSM_NOT_LATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"cancel of a failed run", SCHED_RUN_FAILED, "F1", 2, SCHED_FSM_CANCEL, -1, 0, OK, 0,
	 SCHED_FSM_TERMINAL, SCHED_FSM_NOT_LATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
	{"cancel of a cancelled run", SCHED_RUN_CANCELLED, "C1", 2, SCHED_FSM_CANCEL, -1, 0, OK, 0,
	 SCHED_FSM_TERMINAL, SCHED_FSM_NOT_LATE, -1, ANY, -1, 0, RUNNING, 0, 0, 0, 0},
};

static void check_rows(const struct row *rows, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		struct sched_fsm_input in = input(r->kind, r->step, r->attempt, r->outcome);
		struct sched_fsm_decision d;
		struct fixture f, before;

		fixture(&f, r->run, r->steps, r->retries);
		before = f;
		in.output_ok = !r->output_bad;
		sched_fsm_decide(&f.run, &in, &d);
		SW_CHECKF(memcmp(f.steps, before.steps, sizeof(f.steps)) == 0 &&
			      f.run.state == before.run.state,
			  "%s: decide changed the run", r->what);
		SW_CHECKF(d.verdict == r->verdict, "%s: verdict %d", r->what, d.verdict);
		SW_CHECKF(r->late == ANY || (int)d.late == r->late, "%s: late %d", r->what, d.late);
		SW_CHECKF(d.step == r->to_step, "%s: step %d", r->what, d.step);
		SW_CHECKF(r->step_to == ANY || (int)d.step_to == r->step_to, "%s: step to %s",
			  r->what, sched_step_state_name(d.step_to));
		SW_CHECKF(d.dispatch == r->dispatch, "%s: dispatch %d", r->what, d.dispatch);
		SW_CHECKF(r->dispatch < 0 || d.dispatch_attempt == r->dispatch_attempt,
			  "%s: dispatch attempt %d", r->what, d.dispatch_attempt);
		SW_CHECKF(d.run_to == r->run_to, "%s: run to %s", r->what,
			  sched_run_state_name(d.run_to));
		SW_CHECKF(d.skip_pending == r->skip_pending, "%s: skip_pending %d", r->what,
			  d.skip_pending);
		SW_CHECKF(d.cancel_active == r->cancel_active, "%s: cancel_active %d", r->what,
			  d.cancel_active);
		SW_CHECKF(d.bad_output == r->bad_output, "%s: bad_output %d", r->what,
			  d.bad_output);
		SW_CHECKF(d.step_to != SCHED_STEP_RETRYING || d.retry_in_ms == r->retry_in_ms,
			  "%s: retry in %lld ms", r->what, (long long)d.retry_in_ms);

		/* an ignored input changes nothing when applied either */
		if (d.verdict != SCHED_FSM_APPLY) {
			sched_fsm_apply(&f.run, &d);
			SW_CHECKF(memcmp(f.steps, before.steps, sizeof(f.steps)) == 0 &&
				      f.run.state == before.run.state,
				  "%s: applying an ignored input changed the run", r->what);
		}
	}
}

/* Decide in on f and apply it; returns the decision. */
static struct sched_fsm_decision step(struct fixture *f, struct sched_fsm_input in)
{
	struct sched_fsm_decision d;

	sched_fsm_decide(&f->run, &in, &d);
	sched_fsm_apply(&f->run, &d);
	return d;
}

static void check_states(const struct fixture *f, enum sched_run_state run, const char *want)
{
	struct fixture w;
	size_t i;

	fixture(&w, run, want, 0);
	SW_CHECKF(f->run.state == run, "run is %s, not %s", sched_run_state_name(f->run.state),
		  sched_run_state_name(run));
	SW_CHECK(f->run.nsteps == w.run.nsteps);
	for (i = 0; i < w.run.nsteps; i++)
		SW_CHECKF(f->steps[i].state == w.steps[i].state &&
			      f->steps[i].attempt == w.steps[i].attempt,
			  "step %zu is %s/%d, want %s", i, sched_step_state_name(f->steps[i].state),
			  f->steps[i].attempt, want);
}

static void test_happy_path(void)
{
	struct sched_fsm_decision d;
	struct fixture f;
	int i;

	fixture(&f, RUNNING, "P0 P0 P0", 2);
	sched_fsm_submit(&f.run, &d);
	SW_CHECK(d.verdict == APPLY && d.dispatch == 0 && d.dispatch_attempt == 1);
	sched_fsm_apply(&f.run, &d);
	check_states(&f, RUNNING, "D1 P0 P0");
	for (i = 0; i < 3; i++) {
		d = step(&f, input(SCHED_FSM_STARTED, i, 1, OK));
		SW_CHECK(d.verdict == APPLY && d.step_to == SCHED_STEP_RUNNING);
		d = step(&f, input(SCHED_FSM_FINISHED, i, 1, OK));
		SW_CHECK(d.verdict == APPLY && d.step_to == SCHED_STEP_SUCCEEDED);
	}
	check_states(&f, SCHED_RUN_SUCCEEDED, "S1 S1 S1");
	/* late arrivals after the end */
	SW_CHECK(step(&f, input(SCHED_FSM_FINISHED, 2, 1, OK)).late == SCHED_FSM_RUN_OVER);
	SW_CHECK(step(&f, input(SCHED_FSM_TIMEOUT, 2, 1, OK)).late == SCHED_FSM_RUN_OVER);
	SW_CHECK(step(&f, input(SCHED_FSM_CANCEL, -1, 0, OK)).verdict == SCHED_FSM_TERMINAL);
	check_states(&f, SCHED_RUN_SUCCEEDED, "S1 S1 S1");
}

/* retries: 2 means three attempts; the backoff doubles each time. */
static void test_retries_until_limit(void)
{
	struct sched_fsm_decision d;
	struct fixture f;

	fixture(&f, RUNNING, "S1 D1 P0", 2);
	d = step(&f, input(SCHED_FSM_FINISHED, 1, 1, FAIL));
	SW_CHECK(d.step_to == SCHED_STEP_RETRYING && d.retry_in_ms == 100);
	check_states(&f, RUNNING, "S1 Y1 P0");
	/* the outcome again (redelivered): ignored */
	SW_CHECK(step(&f, input(SCHED_FSM_FINISHED, 1, 1, FAIL)).verdict == IGNORE);
	d = step(&f, input(SCHED_FSM_RETRY_DUE, 1, 1, OK));
	SW_CHECK(d.dispatch == 1 && d.dispatch_attempt == 2);
	check_states(&f, RUNNING, "S1 D2 P0");
	/* a second scan finding the same retry: ignored */
	SW_CHECK(step(&f, input(SCHED_FSM_RETRY_DUE, 1, 1, OK)).late == SCHED_FSM_OLD_ATTEMPT);
	/* the first attempt's late success is not the current attempt's */
	SW_CHECK(step(&f, input(SCHED_FSM_FINISHED, 1, 1, OK)).late == SCHED_FSM_OLD_ATTEMPT);
	d = step(&f, input(SCHED_FSM_TIMEOUT, 1, 2, OK));
	SW_CHECK(d.step_to == SCHED_STEP_RETRYING && d.retry_in_ms == 200);
	check_states(&f, RUNNING, "S1 Y2 P0");
	d = step(&f, input(SCHED_FSM_RETRY_DUE, 1, 2, OK));
	SW_CHECK(d.dispatch == 1 && d.dispatch_attempt == 3);
	SW_CHECK(step(&f, input(SCHED_FSM_STARTED, 1, 3, OK)).step_to == SCHED_STEP_RUNNING);
	d = step(&f, input(SCHED_FSM_FINISHED, 1, 3, FAIL));
	SW_CHECK(d.step_to == SCHED_STEP_FAILED && d.run_to == SCHED_RUN_FAILED && d.skip_pending);
	check_states(&f, SCHED_RUN_FAILED, "S1 F3 K0");
	/* the timer of the last attempt, late */
	SW_CHECK(step(&f, input(SCHED_FSM_TIMEOUT, 1, 3, OK)).late == SCHED_FSM_RUN_OVER);
	check_states(&f, SCHED_RUN_FAILED, "S1 F3 K0");
}

static void test_timeouts(void)
{
	struct sched_fsm_decision d;
	struct fixture f;

	fixture(&f, RUNNING, "D1 P0", 0);
	d = step(&f, input(SCHED_FSM_TIMEOUT, 0, 1, OK));
	SW_CHECK(d.step_to == SCHED_STEP_TIMED_OUT && d.run_to == SCHED_RUN_FAILED);
	check_states(&f, SCHED_RUN_FAILED, "T1 K0");
	/* the outcome arriving after its deadline is late */
	SW_CHECK(step(&f, input(SCHED_FSM_FINISHED, 0, 1, OK)).late == SCHED_FSM_RUN_OVER);
	check_states(&f, SCHED_RUN_FAILED, "T1 K0");
}

static void test_cancel(void)
{
	struct sched_fsm_decision d;
	struct fixture f;

	fixture(&f, RUNNING, "S1 R1 P0", 2);
	d = step(&f, input(SCHED_FSM_CANCEL, -1, 0, OK));
	SW_CHECK(d.verdict == APPLY && d.run_to == SCHED_RUN_CANCELLED);
	check_states(&f, SCHED_RUN_CANCELLED, "S1 C1 K0");
	/* what the executor reports after the cancel is recorded, not applied */
	SW_CHECK(step(&f, input(SCHED_FSM_FINISHED, 1, 1, OK)).late == SCHED_FSM_RUN_OVER);
	SW_CHECK(step(&f, input(SCHED_FSM_FINISHED, 1, 1, CANC)).late == SCHED_FSM_RUN_OVER);
	SW_CHECK(step(&f, input(SCHED_FSM_STARTED, 1, 1, OK)).late == SCHED_FSM_RUN_OVER);
	SW_CHECK(step(&f, input(SCHED_FSM_CANCEL, -1, 0, OK)).verdict == SCHED_FSM_TERMINAL);
	check_states(&f, SCHED_RUN_CANCELLED, "S1 C1 K0");

	fixture(&f, RUNNING, "S1 Y1 P0", 2);
	step(&f, input(SCHED_FSM_CANCEL, -1, 0, OK));
	check_states(&f, SCHED_RUN_CANCELLED, "S1 C1 K0");
	SW_CHECK(step(&f, input(SCHED_FSM_RETRY_DUE, 1, 1, OK)).late == SCHED_FSM_RUN_OVER);
}

/* The run's own time is up: what is in flight is cancelled, the rest
 * skipped, the run failed; a step waiting to retry (for a long backoff)
 * cannot keep it open; a finished run is not touched. */
static void test_expire(void)
{
	struct sched_fsm_decision d;
	struct fixture f;

	fixture(&f, RUNNING, "S1 R1 P0", 2);
	d = step(&f, input(SCHED_FSM_EXPIRE, -1, 0, OK));
	SW_CHECK(d.verdict == APPLY && d.expired && d.cancel_active && d.step == -1);
	SW_CHECK(d.run_to == SCHED_RUN_FAILED && d.dispatch == -1 && d.skip_pending);
	check_states(&f, SCHED_RUN_FAILED, "S1 C1 K0");
	SW_CHECK(step(&f, input(SCHED_FSM_FINISHED, 1, 1, OK)).late == SCHED_FSM_RUN_OVER);
	SW_CHECK(step(&f, input(SCHED_FSM_EXPIRE, -1, 0, OK)).late == SCHED_FSM_RUN_OVER);

	fixture(&f, RUNNING, "Y9 P0", 1000);
	d = step(&f, input(SCHED_FSM_EXPIRE, -1, 0, OK));
	SW_CHECK(d.verdict == APPLY && d.run_to == SCHED_RUN_FAILED);
	check_states(&f, SCHED_RUN_FAILED, "C9 K0");
	SW_CHECK(step(&f, input(SCHED_FSM_RETRY_DUE, 0, 9, OK)).late == SCHED_FSM_RUN_OVER);

	fixture(&f, SCHED_RUN_SUCCEEDED, "S1", 0);
	SW_CHECK(step(&f, input(SCHED_FSM_EXPIRE, -1, 0, OK)).verdict == IGNORE);
	fixture(&f, SCHED_RUN_CANCELLED, "C1", 0);
	SW_CHECK(step(&f, input(SCHED_FSM_EXPIRE, -1, 0, OK)).late == SCHED_FSM_RUN_OVER);
}

static void test_dispatch_failed(void)
{
	struct sched_fsm_decision d;
	struct fixture f;

	fixture(&f, RUNNING, "R1 P0 P0", 3);
	d = step(&f, input(SCHED_FSM_FINISHED, 0, 1, OK));
	SW_CHECK(d.dispatch == 1);
	check_states(&f, RUNNING, "S1 D1 P0");
	/* its input does not render: no retry, whatever the retries */
	d = step(&f, input(SCHED_FSM_DISPATCH_FAILED, 1, 1, OK));
	SW_CHECK(d.step_to == SCHED_STEP_FAILED && d.run_to == SCHED_RUN_FAILED);
	check_states(&f, SCHED_RUN_FAILED, "S1 F1 K0");
}

static void test_backoff(void)
{
	SW_CHECK(sched_fsm_backoff(100, 1) == 100);
	SW_CHECK(sched_fsm_backoff(100, 2) == 200);
	SW_CHECK(sched_fsm_backoff(100, 3) == 400);
	SW_CHECK(sched_fsm_backoff(0, 5) == 0);
	SW_CHECK(sched_fsm_backoff(100, 0) == 100);
	SW_CHECK(sched_fsm_backoff(100, 1000) == 86400000); /* 100 << 20 is over a day */
	SW_CHECK(sched_fsm_backoff(INT64_MAX / 2, 3) == 86400000);
	SW_CHECK(sched_fsm_backoff(-1, 1) == 86400000);
}

static void test_names(void)
{
	enum sched_run_state r;
	enum sched_step_state s;
	int i;

	for (i = SCHED_RUN_PENDING; i <= SCHED_RUN_CANCELLED; i++) {
		SW_CHECK(sched_run_state_parse(sched_run_state_name(i), &r) == 0);
		SW_CHECK((int)r == i);
	}
	for (i = SCHED_STEP_PENDING; i <= SCHED_STEP_SKIPPED; i++) {
		SW_CHECK(sched_step_state_parse(sched_step_state_name(i), &s) == 0);
		SW_CHECK((int)s == i);
	}
	SW_CHECK(strcmp(sched_step_state_name(SCHED_STEP_TIMED_OUT), "timed_out") == 0);
	SW_CHECK(sched_run_state_parse("RUNNING", &r) == -1);
	SW_CHECK(sched_step_state_parse("", &s) == -1);
}

int main(void)
{
	check_rows(legal, sizeof(legal) / sizeof(legal[0]));
	check_rows(late, sizeof(late) / sizeof(late[0]));
	test_happy_path();
	test_retries_until_limit();
	test_timeouts();
	test_cancel();
	test_expire();
	test_dispatch_failed();
	test_backoff();
	test_names();
	return 0;
}
