/*
 * fsm.h: the run/step state machine as data. Pure: no PostgreSQL, no
 * Kafka, no libevent, no allocation; the caller (apply.c) turns a decision
 * into row updates and outbox events.
 *
 * Step states: pending -> dispatched -> running -> succeeded, or on a
 * failed / timed-out attempt -> retrying (a backoff later) -> dispatched
 * with attempt + 1 ..., or, with no attempts left, failed / timed_out,
 * which fails the run; cancelled when the run is; skipped when the run
 * ended before the step began. A step may go from dispatched straight to
 * its outcome (its step.started folded into the outcome's transition).
 *
 * Only the current attempt of a running run moves anything: an outcome of
 * an older attempt, of a step not in flight, of a finished or cancelled
 * run is late and ignored (its caller records it as processed).
 */
#ifndef SCHED_FSM_H
#define SCHED_FSM_H

#include <stddef.h>
#include <stdint.h>

enum sched_run_state {
	SCHED_RUN_PENDING,
	SCHED_RUN_RUNNING,
	SCHED_RUN_SUCCEEDED,
	SCHED_RUN_FAILED,
	SCHED_RUN_CANCELLED,
};

enum sched_step_state {
	SCHED_STEP_PENDING,
	SCHED_STEP_DISPATCHED,
	SCHED_STEP_RUNNING,
	SCHED_STEP_SUCCEEDED,
	SCHED_STEP_RETRYING,
	SCHED_STEP_FAILED,
	SCHED_STEP_TIMED_OUT,
	SCHED_STEP_CANCELLED,
	SCHED_STEP_SKIPPED,
};

/* The stored names ("running", "timed_out", ...); parse: 0, or -1 when s
 * names no state. */
const char *sched_run_state_name(enum sched_run_state s);
int sched_run_state_parse(const char *s, enum sched_run_state *out);
const char *sched_step_state_name(enum sched_step_state s);
int sched_step_state_parse(const char *s, enum sched_step_state *out);

struct sched_fsm_step {
	enum sched_step_state state;
	int attempt;	    /* the current attempt, 0 before the first */
	int retries;	    /* the definition's: attempts after the first */
	int64_t backoff_ms; /* the definition's: wait before the first retry */
};

/* A run as the machine sees it; steps[] is the caller's (updated in place
 * by sched_fsm_apply). */
struct sched_fsm_run {
	enum sched_run_state state;
	struct sched_fsm_step *steps;
	size_t nsteps;
};

enum sched_fsm_input_kind {
	SCHED_FSM_STARTED,	   /* step.started of (step, attempt) */
	SCHED_FSM_FINISHED,	   /* step.finished of (step, attempt) with outcome */
	SCHED_FSM_TIMEOUT,	   /* the deadline of (step, attempt) passed */
	SCHED_FSM_RETRY_DUE,	   /* the backoff of (step, attempt) is over */
	SCHED_FSM_CANCEL,	   /* the run is to be cancelled */
	SCHED_FSM_DISPATCH_FAILED, /* step's input could not be rendered */
	SCHED_FSM_EXPIRE,	   /* the run's own time is up (SAGEWAI_RUN_MAX) */
};

enum sched_fsm_outcome {
	SCHED_FSM_OK,
	SCHED_FSM_FAILED,
	SCHED_FSM_TIMED_OUT,
	SCHED_FSM_CANCELLED,
};

struct sched_fsm_input {
	enum sched_fsm_input_kind kind;
	int step;			/* index; -1: no such step */
	int attempt;
	enum sched_fsm_outcome outcome; /* FINISHED */
	int output_ok;			/* FINISHED OK: the output is usable */
};

enum sched_fsm_verdict {
	SCHED_FSM_APPLY,    /* the decision below changes the run */
	SCHED_FSM_IGNORE,   /* late, stale or not applicable: nothing changes */
	SCHED_FSM_TERMINAL, /* cancel of a finished run */
};

/* Why an input was ignored. */
enum sched_fsm_late {
	SCHED_FSM_NOT_LATE,
	SCHED_FSM_RUN_OVER,    /* the run is not running (finished, cancelled) */
	SCHED_FSM_NO_STEP,     /* no such step */
	SCHED_FSM_OLD_ATTEMPT, /* not the step's current attempt */
	SCHED_FSM_STEP_STATE,  /* the step is not where this input applies */
};

struct sched_fsm_decision {
	enum sched_fsm_verdict verdict;
	enum sched_fsm_late late;     /* IGNORE: why */
	int step;		      /* the step that changes state, or -1 */
	enum sched_step_state step_to; /* ... to this */
	int bad_output;		      /* an OK outcome with unusable output failed */
	int64_t retry_in_ms;	      /* step_to RETRYING: the backoff */
	int cancel_active;	      /* dispatched, running, retrying steps: cancelled */
	int dispatch;		      /* the step to dispatch next, or -1 */
	int dispatch_attempt;	      /* ... as this attempt */
	enum sched_run_state run_to;  /* RUNNING: the run goes on; else it ends so */
	int skip_pending;	      /* the run ends with steps pending: skipped */
	int expired;		      /* the run ends because its time is up */
};

/* The decision on in for run (not changed). */
void sched_fsm_decide(const struct sched_fsm_run *run, const struct sched_fsm_input *in,
		      struct sched_fsm_decision *d);
/* The decision that starts a new run: dispatch its first step. */
void sched_fsm_submit(const struct sched_fsm_run *run, struct sched_fsm_decision *d);
/* Bring run to the state d (an APPLY decision of it) leads to. */
void sched_fsm_apply(struct sched_fsm_run *run, const struct sched_fsm_decision *d);

/* A step in flight or waiting to retry: what a cancel cancels. */
int sched_fsm_step_active(enum sched_step_state s);
/* The wait before retrying after attempt failed: backoff_ms doubled per
 * attempt after the first, at most a day. */
int64_t sched_fsm_backoff(int64_t backoff_ms, int attempt);

#endif
