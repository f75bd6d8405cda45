/*
 * apply.c: a decision of the state machine (fsm.c) made into the rows it
 * changes and the events it causes, all in one transaction (struct
 * sched_plan). The machine says what happens; this file says how that is
 * stored and told: error texts, rendered step inputs, events.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

void sched_plan_init(struct sched_plan *p, struct sched_env *env, struct sched_snap *s,
		     const char *run_id, struct sched_event *ev, size_t *nev)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->s = s;
	p->run_id = run_id;
	p->ev = ev;
	p->nev = nev;
	snprintf(p->run_state, sizeof(p->run_state), "%s", sched_run_state_name(s->run.state));
}

void sched_plan_event(struct sched_plan *p, const char *type, const char *step_id,
		      json_t *fields)
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
static const char *plan_error(struct sched_plan *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static const char *plan_error(struct sched_plan *p, const char *fmt, ...)
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
	return sched_tx_own(&p->tx, s);
}

static void plan_finish_run(struct sched_plan *p, const struct sched_fsm_decision *d,
			    const char *output, const char *error)
{
	const char *state = sched_run_state_name(d->run_to);
	const char *status = d->run_to == SCHED_RUN_SUCCEEDED	? "SUCCEEDED"
			     : d->run_to == SCHED_RUN_CANCELLED ? "CANCELLED"
								: "FAILED";

	sched_tx_add(&p->tx,
		     "UPDATE runs SET state = $2, output = $3::jsonb, error = $4, finished = now()"
		     " WHERE id = $1::uuid",
		     4, p->run_id, state, output, error);
	sched_tx_batch(&p->tx, SCHED_B_RUN_END);
	if (d->skip_pending)
		sched_tx_add(&p->tx,
			     "UPDATE steps SET state = 'skipped'"
			     " WHERE run_id = $1::uuid AND state = 'pending'",
			     1, p->run_id);
	sched_plan_event(p, "run.finished", NULL,
			 json_pack("{s:s, s:o, s:o, s:o}", "status", status, "output",
				   output ? json_string(output) : json_null(), "error",
				   error ? json_string(error) : json_null(), "modes",
				   p->s->wf != NULL ? sched_plan_modes(p->s->wf) : json_null()));
	snprintf(p->run_state, sizeof(p->run_state), "%s", state);
	p->finished_run = 1;
}

/* Step idx ends in state (failed, timed_out, cancelled) with error. */
static void plan_step_final(struct sched_plan *p, int idx, enum sched_step_state state,
			    const char *error)
{
	sched_tx_add(&p->tx,
		     "UPDATE steps SET state = $3, error = $4, finished = now(), deadline = NULL,"
		     " next_attempt = NULL WHERE run_id = $1::uuid AND idx = $2::int",
		     4, p->run_id, sched_tx_fmt(&p->tx, "%d", idx), sched_step_state_name(state),
		     error);
}

/* {"input": ..., "steps": {"<name>": {"output": ...}}} of the steps done. */
static json_t *plan_ctx(const struct sched_snap *s)
{
	json_t *steps = json_object();
	size_t i;

	for (i = 0; i < s->run.nsteps; i++) {
		if (s->run.steps[i].state != SCHED_STEP_SUCCEEDED)
			continue;
		json_object_set_new(
		    steps, s->wf->steps[i].name,
		    json_pack("{s:O}", "output",
			      json_object_get(json_array_get(s->steps, i), "output")));
	}
	return json_pack("{s:O, s:o}", "input", s->input, "steps", steps);
}

json_t *sched_plan_modes(const struct sw_workflow *wf)
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

/* A re-run's step: its replay entry (stored at submit, docs/AUDIT.md "Re-run")
 * becomes spec.replay -- for an in_process llm or http step the recorded
 * request and answer (the worker answers from them, never calling the
 * model or URL), for a cli_agent_jit step the recorded credential
 * decisions. Other steps run again as rendered now; their entry (the
 * pinned identity, checked at submit) does not travel in the spec. */
static void plan_replay(const struct sched_snap *s, int idx, json_t *spec)
{
	const struct sw_step *st = &s->wf->steps[idx];
	const char *text =
	    json_string_value(json_object_get(json_array_get(s->steps, (size_t)idx), "replay"));
	json_t *rp, *keep = NULL;

	if (text == NULL || (rp = json_loads(text, 0, NULL)) == NULL)
		return;
	if (st->mode == SW_MODE_IN_PROCESS && st->uses != NULL &&
	    (strcmp(st->uses, "llm") == 0 || strcmp(st->uses, "http") == 0) &&
	    json_is_object(json_object_get(rp, "request")))
		keep = json_pack("{s:O, s:O, s:O, s:O}", "of", json_object_get(rp, "of"),
				 "request", json_object_get(rp, "request"), "status",
				 json_object_get(rp, "status"), "answer",
				 json_object_get(rp, "answer"));
	else if (st->mode == SW_MODE_CLI_AGENT_JIT &&
		 json_is_array(json_object_get(rp, "decisions")))
		keep = json_pack("{s:O, s:O}", "of", json_object_get(rp, "of"), "decisions",
				 json_object_get(rp, "decisions"));
	if (keep != NULL)
		json_object_set_new(spec, "replay", keep);
	json_decref(rp);
}

/* Dispatch attempt of step idx: render its with: against the input and the
 * outputs so far; a render error is the machine's DISPATCH_FAILED (the
 * step and the run fail). */
static void plan_dispatch(struct sched_plan *p, int idx, int attempt)
{
	const struct sw_workflow *wf = p->s->wf;
	const struct sw_step *st = &wf->steps[idx];
	json_t *ctx, *with, *spec, *extra = NULL;
	char err[512], *spec_text;
	const char *step_id, *pin;

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
		struct sched_fsm_input in = {.kind = SCHED_FSM_DISPATCH_FAILED, .step = idx,
					     .attempt = attempt};
		struct sched_fsm_decision d;

		sched_fsm_decide(&p->s->run, &in, &d);
		sched_plan_apply(p, &d, plan_error(p, "bad_input: %s", err), NULL, NULL);
		return;
	}
	spec =
	    json_pack("{s:s, s:i, s:s, s:o, s:o, s:I}", "workflow", wf->name, "workflow_version",
		      wf->version, "uses", st->uses ? st->uses : "", "with", with, "run_modes",
		      sched_plan_modes(wf), "output_max", (json_int_t)SCHED_OUTPUT_MAX);
	if (spec != NULL && extra != NULL)
		json_object_update_missing(spec, extra);
	json_decref(extra);
	if (spec != NULL)
		plan_replay(p->s, idx, spec);
	spec_text = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
	json_decref(spec);
	if (spec_text == NULL) {
		p->failed = 1;
		snprintf(p->errstr, sizeof(p->errstr), "out of memory");
		return;
	}
	sched_tx_own(&p->tx, spec_text);
	step_id = sched_tx_fmt(&p->tx, "%s/%s/%d", p->run_id, st->name, attempt);
	/* the keys pinned at submit travel with every attempt (docs/IDENTITY.md) */
	pin = json_string_value(json_object_get(json_array_get(p->s->steps, (size_t)idx),
						"identity"));
	sched_plan_event(p, "step.dispatched", step_id,
			 json_pack("{s:s, s:i, s:s, s:i, s:s, s:I, s:s}", "step", st->name,
				   "index", idx, "mode", sw_mode_name(st->mode), "attempt",
				   attempt, "spec", spec_text, "timeout_ms",
				   (json_int_t)st->timeout_ms, "identity", pin ? pin : ""));
	if (p->failed)
		return;
	/* onto the topic its executor reads, and only it (sw_bus.h) */
	p->ev[*p->nev - 1].topic = sw_bus_dispatch_topic(sw_mode_name(st->mode));
	sched_tx_add(&p->tx,
		     "UPDATE steps SET state = 'dispatched', attempt = $3::int,"
		     " started = coalesce(started, now()),"
		     " deadline = CASE WHEN $4::bigint > 0"
		     "  THEN now() + $4::bigint * interval '1 millisecond' END,"
		     " next_attempt = NULL, error = NULL, output = NULL,"
		     " dispatch_event_id = $5::uuid"
		     " WHERE run_id = $1::uuid AND idx = $2::int",
		     5, p->run_id, sched_tx_fmt(&p->tx, "%d", idx),
		     sched_tx_fmt(&p->tx, "%d", attempt),
		     sched_tx_fmt(&p->tx, "%" PRId64, st->timeout_ms), p->ev[*p->nev - 1].id);
	sched_tx_batch(&p->tx, SCHED_B_DISPATCH);
	p->dispatched++;
}

/* Step idx changes as d says. */
static void plan_step(struct sched_plan *p, const struct sched_fsm_decision *d,
		      const char *error, const char *output)
{
	const char *idx = sched_tx_fmt(&p->tx, "%d", d->step);

	switch (d->step_to) {
	case SCHED_STEP_RUNNING:
		sched_tx_add(&p->tx,
			     "UPDATE steps SET state = 'running'"
			     " WHERE run_id = $1::uuid AND idx = $2::int",
			     2, p->run_id, idx);
		break;
	case SCHED_STEP_SUCCEEDED:
		sched_tx_add(&p->tx,
			     "UPDATE steps SET state = 'succeeded', output = $3::jsonb,"
			     " error = NULL, finished = now(), deadline = NULL"
			     " WHERE run_id = $1::uuid AND idx = $2::int",
			     3, p->run_id, idx, output);
		sched_tx_batch(&p->tx, SCHED_B_STEP_OK);
		/* the next step's templates read it */
		json_object_set_new(json_array_get(p->s->steps, (size_t)d->step), "output",
				    output ? json_loads(output, JSON_DECODE_ANY, NULL)
					   : json_null());
		break;
	case SCHED_STEP_RETRYING:
		sched_tx_add(&p->tx,
			     "UPDATE steps SET state = 'retrying', error = $3, deadline = NULL,"
			     " next_attempt = now() + $4::bigint * interval '1 millisecond'"
			     " WHERE run_id = $1::uuid AND idx = $2::int",
			     4, p->run_id, idx, error,
			     sched_tx_fmt(&p->tx, "%" PRId64, d->retry_in_ms));
		break;
	case SCHED_STEP_FAILED:
	case SCHED_STEP_TIMED_OUT:
	case SCHED_STEP_CANCELLED:
		plan_step_final(p, d->step, d->step_to, error);
		break;
	default:
		snprintf(p->errstr, sizeof(p->errstr), "no transition of a step to %s",
			 sched_step_state_name(d->step_to));
		p->failed = 1;
	}
}

void sched_plan_apply(struct sched_plan *p, const struct sched_fsm_decision *d,
		      const char *error, const char *output, const char *requested_by)
{
	struct sched_fsm_run *run = &p->s->run;
	size_t i;

	if (d->verdict != SCHED_FSM_APPLY)
		return;
	for (i = 0; d->cancel_active && i < run->nsteps; i++)
		if (sched_fsm_step_active(run->steps[i].state))
			plan_step_final(p, (int)i, SCHED_STEP_CANCELLED,
					d->expired ? "cancelled: the run's time is up"
						   : "cancelled: run cancelled");
	if (d->step >= 0)
		plan_step(p, d, error, output);
	switch (d->run_to) {
	case SCHED_RUN_PENDING:
	case SCHED_RUN_RUNNING:
		break;
	case SCHED_RUN_SUCCEEDED:
		plan_finish_run(p, d, output, NULL);
		break;
	case SCHED_RUN_FAILED:
		if (d->expired) {
			/* the executors learn it as they learn a cancel */
			sched_plan_event(p, "run.cancel_requested", NULL,
					 json_pack("{s:s, s:s}", "requested_by", "scheduler",
						   "reason", "run_timeout"));
			plan_finish_run(p, d, NULL, error);
			break;
		}
		plan_finish_run(p, d, NULL,
				plan_error(p, "step %s: %s", p->s->wf->steps[d->step].name,
					   error));
		break;
	case SCHED_RUN_CANCELLED:
		sched_plan_event(p, "run.cancel_requested", NULL,
				 json_pack("{s:s, s:s}", "requested_by",
					   requested_by ? requested_by : "", "reason",
					   "cancelled by request"));
		plan_finish_run(p, d, NULL, "cancelled by request");
		break;
	}
	sched_fsm_apply(run, d);
	if (d->dispatch >= 0)
		plan_dispatch(p, d->dispatch, d->dispatch_attempt);
}

static enum sched_fsm_outcome outcome(const char *status)
{
	if (strcmp(status, "SUCCEEDED") == 0)
		return SCHED_FSM_OK;
	if (strcmp(status, "TIMED_OUT") == 0)
		return SCHED_FSM_TIMED_OUT;
	if (strcmp(status, "CANCELLED") == 0)
		return SCHED_FSM_CANCELLED;
	return SCHED_FSM_FAILED;
}

enum sched_fsm_verdict sched_plan_op(struct sched_plan *p, struct sched_op *op)
{
	static const enum sched_fsm_input_kind kinds[] = {
		[SCHED_OP_STARTED] = SCHED_FSM_STARTED, [SCHED_OP_FINISHED] = SCHED_FSM_FINISHED,
		[SCHED_OP_TIMEOUT] = SCHED_FSM_TIMEOUT, [SCHED_OP_RETRY] = SCHED_FSM_RETRY_DUE,
		[SCHED_OP_CANCEL] = SCHED_FSM_CANCEL, [SCHED_OP_EXPIRE] = SCHED_FSM_EXPIRE,
	};
	struct sched_snap *s = p->s;
	struct sched_fsm_input in;
	struct sched_fsm_decision d;
	const char *error = NULL;
	char *text = NULL;

	memset(&in, 0, sizeof(in));
	in.kind = kinds[op->kind];
	in.attempt = op->attempt;
	in.step = -1;
	if (op->kind == SCHED_OP_STARTED || op->kind == SCHED_OP_FINISHED)
		in.step = sched_snap_find(s, op->step);
	else if (op->idx >= 0 && (size_t)op->idx < s->wf->nsteps)
		in.step = op->idx;
	if (op->kind == SCHED_OP_FINISHED && (in.outcome = outcome(op->status)) == SCHED_FSM_OK) {
		/* the output as stored: valid JSON within SCHED_OUTPUT_MAX */
		json_t *out = op->output ? json_loads(op->output, JSON_DECODE_ANY, NULL)
					 : json_null();

		text = out ? json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		json_decref(out);
		in.output_ok = text != NULL && strlen(text) <= SCHED_OUTPUT_MAX;
	}
	sched_fsm_decide(&s->run, &in, &d);
	if (d.verdict != SCHED_FSM_APPLY) {
		free(text);
		return d.verdict;
	}
	if (in.output_ok) {
		sched_tx_own(&p->tx, text);
	} else {
		free(text);
		text = NULL;
	}
	if (d.bad_output)
		error = "internal: step output is not valid JSON or exceeds output_max";
	else if (op->kind == SCHED_OP_FINISHED && in.outcome != SCHED_FSM_OK)
		error = plan_error(p, "%s", op->error && op->error[0] ? op->error : op->status);
	else if (op->kind == SCHED_OP_TIMEOUT)
		error = plan_error(p, "timeout: no outcome of attempt %d within %" PRId64 " ms",
				   op->attempt, s->wf->steps[in.step].timeout_ms);
	else if (op->kind == SCHED_OP_EXPIRE)
		error = plan_error(p,
				   "run_timeout: the run did not finish within %lld s"
				   " (SAGEWAI_RUN_MAX)",
				   p->env->run_max_s);
	sched_plan_apply(p, &d, error, text, op->tenant);
	return SCHED_FSM_APPLY;
}
