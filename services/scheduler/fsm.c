/*
 * fsm.c: the run/step state machine of fsm.h, one function per input.
 */
#include <string.h>

#include "fsm.h"

#define BACKOFF_MAX_MS 86400000

static const char *const run_names[] = {
	[SCHED_RUN_PENDING] = "pending",     [SCHED_RUN_RUNNING] = "running",
	[SCHED_RUN_SUCCEEDED] = "succeeded", [SCHED_RUN_FAILED] = "failed",
	[SCHED_RUN_CANCELLED] = "cancelled",
};

static const char *const step_names[] = {
	[SCHED_STEP_PENDING] = "pending",     [SCHED_STEP_DISPATCHED] = "dispatched",
	[SCHED_STEP_RUNNING] = "running",     [SCHED_STEP_SUCCEEDED] = "succeeded",
	[SCHED_STEP_RETRYING] = "retrying",   [SCHED_STEP_FAILED] = "failed",
	[SCHED_STEP_TIMED_OUT] = "timed_out", [SCHED_STEP_CANCELLED] = "cancelled",
	[SCHED_STEP_SKIPPED] = "skipped",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *sched_run_state_name(enum sched_run_state s)
{
	return (size_t)s < NELEM(run_names) ? run_names[s] : "?";
}

int sched_run_state_parse(const char *s, enum sched_run_state *out)
{
	size_t i;

	for (i = 0; i < NELEM(run_names); i++)
		if (strcmp(s, run_names[i]) == 0) {
			*out = (enum sched_run_state)i;
			return 0;
		}
	return -1;
}

const char *sched_step_state_name(enum sched_step_state s)
{
	return (size_t)s < NELEM(step_names) ? step_names[s] : "?";
}

int sched_step_state_parse(const char *s, enum sched_step_state *out)
{
	size_t i;

	for (i = 0; i < NELEM(step_names); i++)
		if (strcmp(s, step_names[i]) == 0) {
			*out = (enum sched_step_state)i;
			return 0;
		}
	return -1;
}

int sched_fsm_step_active(enum sched_step_state s)
{
	return s == SCHED_STEP_DISPATCHED || s == SCHED_STEP_RUNNING || s == SCHED_STEP_RETRYING;
}

int64_t sched_fsm_backoff(int64_t backoff_ms, int attempt)
{
	int shift = attempt - 1 < 20 ? attempt - 1 : 20;

	if (shift < 0)
		shift = 0;
	if (backoff_ms < 0 || backoff_ms > (BACKOFF_MAX_MS >> shift))
		return BACKOFF_MAX_MS; /* and no shift that overflows */
	return backoff_ms << shift;
}

static void decision_init(struct sched_fsm_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->verdict = SCHED_FSM_APPLY;
	d->step = -1;
	d->dispatch = -1;
	d->run_to = SCHED_RUN_RUNNING;
}

static void ignore(struct sched_fsm_decision *d, enum sched_fsm_late why)
{
	decision_init(d);
	d->verdict = SCHED_FSM_IGNORE;
	d->late = why;
}

/* The run ends as state: pending steps other than the one d moves never
 * begin. */
static void end_run(const struct sched_fsm_run *run, struct sched_fsm_decision *d,
		    enum sched_run_state state)
{
	size_t i;

	d->run_to = state;
	for (i = 0; i < run->nsteps; i++)
		if (run->steps[i].state == SCHED_STEP_PENDING && (int)i != d->step)
			d->skip_pending = 1;
}

/* The current attempt of step idx ended without success: retry it while
 * attempts remain (never after a cancel), else the step and the run fail. */
static void fail_attempt(const struct sched_fsm_run *run, int idx, enum sched_fsm_outcome how,
			 struct sched_fsm_decision *d)
{
	const struct sched_fsm_step *st = &run->steps[idx];

	d->step = idx;
	if (how != SCHED_FSM_CANCELLED && st->attempt < st->retries + 1) {
		d->step_to = SCHED_STEP_RETRYING;
		d->retry_in_ms = sched_fsm_backoff(st->backoff_ms, st->attempt);
		return;
	}
	d->step_to = how == SCHED_FSM_TIMED_OUT ? SCHED_STEP_TIMED_OUT : SCHED_STEP_FAILED;
	end_run(run, d, SCHED_RUN_FAILED);
}

/* The attempt an outcome or deadline names is the step's, in flight. */
static enum sched_fsm_late in_flight(const struct sched_fsm_step *st, int attempt)
{
	if (st->attempt != attempt)
		return SCHED_FSM_OLD_ATTEMPT;
	if (st->state != SCHED_STEP_DISPATCHED && st->state != SCHED_STEP_RUNNING)
		return SCHED_FSM_STEP_STATE;
	return SCHED_FSM_NOT_LATE;
}

static void cancel(const struct sched_fsm_run *run, struct sched_fsm_decision *d)
{
	if (run->state != SCHED_RUN_RUNNING && run->state != SCHED_RUN_PENDING) {
		d->verdict = SCHED_FSM_TERMINAL;
		return;
	}
	d->cancel_active = 1;
	end_run(run, d, SCHED_RUN_CANCELLED);
}

void sched_fsm_decide(const struct sched_fsm_run *run, const struct sched_fsm_input *in,
		      struct sched_fsm_decision *d)
{
	const struct sched_fsm_step *st;
	enum sched_fsm_late late;

	decision_init(d);
	if (in->kind == SCHED_FSM_CANCEL) {
		cancel(run, d);
		return;
	}
	if (in->kind == SCHED_FSM_EXPIRE) {
		/* retries and backoffs must not keep a run alive for ever: what
		 * is in flight is cancelled, the rest skipped, the run fails */
		if (run->state != SCHED_RUN_RUNNING && run->state != SCHED_RUN_PENDING) {
			ignore(d, SCHED_FSM_RUN_OVER);
			return;
		}
		d->cancel_active = 1;
		d->expired = 1;
		end_run(run, d, SCHED_RUN_FAILED);
		return;
	}
	if (run->state != SCHED_RUN_RUNNING) {
		ignore(d, SCHED_FSM_RUN_OVER);
		return;
	}
	if (in->step < 0 || (size_t)in->step >= run->nsteps) {
		ignore(d, SCHED_FSM_NO_STEP);
		return;
	}
	st = &run->steps[in->step];

	switch (in->kind) {
	case SCHED_FSM_STARTED:
		if (st->attempt != in->attempt)
			ignore(d, SCHED_FSM_OLD_ATTEMPT);
		else if (st->state != SCHED_STEP_DISPATCHED)
			ignore(d, SCHED_FSM_STEP_STATE);
		else {
			d->step = in->step;
			d->step_to = SCHED_STEP_RUNNING;
		}
		return;
	case SCHED_FSM_FINISHED:
		if ((late = in_flight(st, in->attempt)) != SCHED_FSM_NOT_LATE) {
			ignore(d, late);
			return;
		}
		if (in->outcome != SCHED_FSM_OK) {
			fail_attempt(run, in->step, in->outcome, d);
			return;
		}
		if (!in->output_ok) {
			d->bad_output = 1;
			fail_attempt(run, in->step, SCHED_FSM_FAILED, d);
			return;
		}
		d->step = in->step;
		d->step_to = SCHED_STEP_SUCCEEDED;
		if ((size_t)in->step + 1 < run->nsteps) {
			d->dispatch = in->step + 1;
			d->dispatch_attempt = 1;
		} else {
			end_run(run, d, SCHED_RUN_SUCCEEDED);
		}
		return;
	case SCHED_FSM_TIMEOUT:
		if ((late = in_flight(st, in->attempt)) != SCHED_FSM_NOT_LATE)
			ignore(d, late);
		else
			fail_attempt(run, in->step, SCHED_FSM_TIMED_OUT, d);
		return;
	case SCHED_FSM_RETRY_DUE:
		if (st->attempt != in->attempt)
			ignore(d, SCHED_FSM_OLD_ATTEMPT);
		else if (st->state != SCHED_STEP_RETRYING)
			ignore(d, SCHED_FSM_STEP_STATE);
		else {
			d->dispatch = in->step;
			d->dispatch_attempt = in->attempt + 1;
		}
		return;
	case SCHED_FSM_DISPATCH_FAILED:
		/* a bad input fails the step whatever its attempts left */
		d->step = in->step;
		d->step_to = SCHED_STEP_FAILED;
		end_run(run, d, SCHED_RUN_FAILED);
		return;
	case SCHED_FSM_CANCEL:
	case SCHED_FSM_EXPIRE:
		break;
	}
	ignore(d, SCHED_FSM_STEP_STATE);
}

void sched_fsm_submit(const struct sched_fsm_run *run, struct sched_fsm_decision *d)
{
	decision_init(d);
	if (run->nsteps == 0) {
		end_run(run, d, SCHED_RUN_SUCCEEDED);
		return;
	}
	d->dispatch = 0;
	d->dispatch_attempt = 1;
}

void sched_fsm_apply(struct sched_fsm_run *run, const struct sched_fsm_decision *d)
{
	size_t i;

	if (d->verdict != SCHED_FSM_APPLY)
		return;
	for (i = 0; d->cancel_active && i < run->nsteps; i++)
		if (sched_fsm_step_active(run->steps[i].state))
			run->steps[i].state = SCHED_STEP_CANCELLED;
	if (d->step >= 0 && (size_t)d->step < run->nsteps)
		run->steps[d->step].state = d->step_to;
	if (d->dispatch >= 0 && (size_t)d->dispatch < run->nsteps) {
		run->steps[d->dispatch].state = SCHED_STEP_DISPATCHED;
		run->steps[d->dispatch].attempt = d->dispatch_attempt;
	}
	if (d->run_to != SCHED_RUN_RUNNING) {
		run->state = d->run_to;
		for (i = 0; d->skip_pending && i < run->nsteps; i++)
			if (run->steps[i].state == SCHED_STEP_PENDING)
				run->steps[i].state = SCHED_STEP_SKIPPED;
	}
}
