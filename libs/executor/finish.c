/*
 * finish.c: a job from its preflight to its step.finished.
 *
 * Fences (nothing runs, no step.started): an attempt that is no longer
 * current is refused once the results table has nothing for it, again at
 * admission and again when a queued job would take a slot; see fence().
 * Preflight: the spec must be a JSON object; the preview gate's backstop
 * refuses every step of a workflow with an identity-bearing mode; then the
 * service's checks (ops->begin). Admission: it takes one of the
 * concurrency slots or waits for one; an active job's deadline is armed.
 * Whatever ends the attempt first -- the service's outcome, a timeout, the
 * deadline, a cancel, the run's end, a newer attempt -- calls
 * sw_executor_finish; later calls are ignored.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "executor_int.h"
#include "sw_workflow.h"

static const char *const status_names[] = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"};

const char *sw_executor_status_name(enum sw_step_status st)
{
	return (unsigned)st < 4 ? status_names[st] : "FAILED";
}

char *sw_executor_utf8(const char *buf, size_t len)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *s = (const unsigned char *)buf;
	char *out;
	size_t i = 0, o = 0, q;

	if (len > (SIZE_MAX - 1) / 3 || (out = malloc(len * 3 + 1)) == NULL)
		return NULL;
	while (i < len) {
		/* a NUL or a byte that starts no valid sequence: U+FFFD */
		if (s[i] == 0 || (q = sw_utf8_seq(s + i, len - i)) == 0) {
			memcpy(out + o, repl, 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(out + o, s + i, q);
		o += q;
		i += q;
	}
	out[o] = '\0';
	return out;
}

static const char *const fence_names[EXEC_NFENCES] = {"expired", "cancelled", "finished",
							"superseded"};

/* FNV-1a of a, then of b if not NULL: what the rings compare first. */
static uint32_t exec_hash(const char *a, const char *b)
{
	uint32_t h = sw_fnv1a(SW_FNV1A_INIT, a);

	return b != NULL ? sw_fnv1a(h, b) : h;
}

/* The newest attempt of (run_id, step) consumed, or NULL. */
static struct exec_attempt *attempt_find(struct sw_executor *ex, const char *run_id,
					 const char *step, uint32_t hash)
{
	size_t i;

	for (i = 0; i < SW_EXECUTOR_ATTEMPT_RING; i++) {
		struct exec_attempt *a = &ex->attempts[i];

		if (a->hash == hash && a->attempt > 0 && strcmp(a->run_id, run_id) == 0 &&
		    strcmp(a->step, step) == 0)
			return a;
	}
	return NULL;
}

/*
 * Is j's attempt still current? 0 when it is; else 1, with the status to
 * finish it with and why. The order matters only for the text: a run that
 * is over says so rather than that its step's deadline passed.
 */
static int fence_check(struct sw_executor_job *j, enum exec_fence *fence,
		       enum sw_step_status *st, char *why, size_t len)
{
	struct sw_executor *ex = j->ex;
	struct exec_attempt *a;
	int64_t now;

	if (sw_executor_cancelled(ex, j->dh.run_id)) {
		*fence = EXEC_FENCE_CANCELLED;
		*st = SW_STEP_CANCELLED;
		snprintf(why, len, "cancelled: the run was cancelled before the step started");
		return 1;
	}
	if (sw_executor_run_over(ex, j->dh.run_id)) {
		*fence = EXEC_FENCE_FINISHED;
		*st = SW_STEP_CANCELLED;
		snprintf(why, len, "fenced: the run finished before attempt %d of step %s started",
			 j->attempt, j->step);
		return 1;
	}
	if ((a = attempt_find(ex, j->dh.run_id, j->step, exec_hash(j->dh.run_id, j->step))) !=
		NULL &&
	    a->attempt > j->attempt) {
		*fence = EXEC_FENCE_SUPERSEDED;
		*st = SW_STEP_TIMED_OUT;
		snprintf(why, len, "fenced: attempt %d of step %s is superseded by attempt %d",
			 j->attempt, j->step, a->attempt);
		return 1;
	}
	now = sw_now_us();
	if (j->deadline_us > 0 && now >= j->deadline_us) {
		*fence = EXEC_FENCE_EXPIRED;
		*st = SW_STEP_TIMED_OUT;
		snprintf(why, len,
			 "fenced: attempt %d of step %s reached its deadline (%lld ms after its "
			 "dispatch) %lld ms before it could start",
			 j->attempt, j->step, (long long)j->timeout_ms,
			 (long long)((now - j->deadline_us) / 1000));
		return 1;
	}
	return 0;
}

/* Count, report and finish j for fence with st and why. */
static void fence_apply(struct sw_executor_job *j, enum exec_fence fence, enum sw_step_status st,
			const char *why)
{
	static const char *const help[EXEC_NFENCES] = {
	    "Dispatches refused: their attempt's deadline had passed",
	    "Dispatches refused: their run was cancelled",
	    "Dispatches refused or steps stopped: their run had finished",
	    "Dispatches refused or steps stopped: a newer attempt was dispatched"};
	struct sw_executor *ex = j->ex;
	const char *kv[] = {"reason", fence_names[fence], "attempt_state",
			    j->phase == SW_EXECUTOR_ACTIVE ? "running" : "not started", NULL};

	sw_metrics_counter_add(ex->cfg.metrics, ex->m_fenced[fence], help[fence], 1);
	exec_report_job(ex, SW_EXECUTOR_FENCED, SW_LOG_WARN,
			j->phase == SW_EXECUTOR_ACTIVE ? "step stopped: its attempt is no longer "
							 "current"
						       : "dispatch fenced: its attempt is no "
							 "longer current",
			j, kv);
	sw_executor_finish(j, st, NULL, why);
}

/* Refuse j if its attempt is no longer current: 1 when it was finished. */
static int fence(struct sw_executor_job *j)
{
	enum exec_fence f;
	enum sw_step_status st;
	char why[512];

	if (!fence_check(j, &f, &st, why, sizeof(why)))
		return 0;
	fence_apply(j, f, st, why);
	return 1;
}

void exec_attempt_seen(struct sw_executor *ex, struct sw_executor_job *j)
{
	struct sw_executor_job *o, *next;
	struct exec_attempt *a;
	char why[512];
	uint32_t hash;

	if (j->attempt < 1 || strlen(j->dh.run_id) >= sizeof(a->run_id))
		return;
	hash = exec_hash(j->dh.run_id, j->step);
	if ((a = attempt_find(ex, j->dh.run_id, j->step, hash)) == NULL) {
		a = &ex->attempts[ex->attempt_next];
		ex->attempt_next = (ex->attempt_next + 1) % SW_EXECUTOR_ATTEMPT_RING;
		snprintf(a->run_id, sizeof(a->run_id), "%s", j->dh.run_id);
		snprintf(a->step, sizeof(a->step), "%s", j->step);
		a->hash = hash;
		a->attempt = j->attempt;
	} else if (j->attempt > a->attempt) {
		a->attempt = j->attempt;
	} else {
		return; /* not newer: fence() refuses it if it is older */
	}
	/* the scheduler has given up on the older attempts */
	for (o = TAILQ_FIRST(&ex->jobs); o != NULL; o = next) {
		next = TAILQ_NEXT(o, entry);
		if (o == j || o->attempt >= j->attempt || strcmp(o->dh.run_id, j->dh.run_id) != 0 ||
		    strcmp(o->step, j->step) != 0 ||
		    (o->phase != SW_EXECUTOR_ACTIVE && o->phase != SW_EXECUTOR_QUEUED))
			continue;
		snprintf(why, sizeof(why), "fenced: attempt %d of step %s is superseded by attempt %d",
			 o->attempt, o->step, j->attempt);
		fence_apply(o, EXEC_FENCE_SUPERSEDED, SW_STEP_TIMED_OUT, why);
	}
}

int sw_executor_run_over(const struct sw_executor *ex, const char *run_id)
{
	uint32_t hash = exec_hash(run_id, NULL);
	size_t i;

	for (i = 0; i < SW_EXECUTOR_FINISHED_RING; i++)
		if (ex->finished_hash[i] == hash && ex->finished[i][0] &&
		    strcmp(ex->finished[i], run_id) == 0)
			return 1;
	return 0;
}

void sw_executor_run_finished(struct sw_executor *ex, const char *run_id)
{
	struct sw_executor_job *j, *next;
	char why[512];

	if (!sw_executor_run_over(ex, run_id)) {
		snprintf(ex->finished[ex->finished_next], sizeof(ex->finished[0]), "%s", run_id);
		ex->finished_hash[ex->finished_next] =
		    exec_hash(ex->finished[ex->finished_next], NULL);
		ex->finished_next = (ex->finished_next + 1) % SW_EXECUTOR_FINISHED_RING;
	}
	for (j = TAILQ_FIRST(&ex->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (strcmp(j->dh.run_id, run_id) != 0 ||
		    (j->phase != SW_EXECUTOR_ACTIVE && j->phase != SW_EXECUTOR_QUEUED))
			continue;
		snprintf(why, sizeof(why), "fenced: the run finished while attempt %d of step %s %s",
			 j->attempt, j->step,
			 j->phase == SW_EXECUTOR_ACTIVE ? "was running" : "waited for a slot");
		fence_apply(j, EXEC_FENCE_FINISHED, SW_STEP_CANCELLED, why);
	}
}

int sw_executor_cancelled(const struct sw_executor *ex, const char *run_id)
{
	uint32_t hash = exec_hash(run_id, NULL);
	size_t i;

	for (i = 0; i < SW_EXECUTOR_CANCEL_RING; i++)
		if (ex->cancelled_hash[i] == hash && ex->cancelled[i][0] &&
		    strcmp(ex->cancelled[i], run_id) == 0)
			return 1;
	return 0;
}

void sw_executor_cancel(struct sw_executor *ex, const char *run_id)
{
	struct sw_executor_job *j, *next;

	if (!sw_executor_cancelled(ex, run_id)) {
		snprintf(ex->cancelled[ex->cancel_next], sizeof(ex->cancelled[0]), "%s", run_id);
		ex->cancelled_hash[ex->cancel_next] =
		    exec_hash(ex->cancelled[ex->cancel_next], NULL);
		ex->cancel_next = (ex->cancel_next + 1) % SW_EXECUTOR_CANCEL_RING;
	}
	for (j = TAILQ_FIRST(&ex->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (strcmp(j->dh.run_id, run_id) != 0 ||
		    (j->phase != SW_EXECUTOR_ACTIVE && j->phase != SW_EXECUTOR_QUEUED))
			continue;
		exec_report_job(ex, SW_EXECUTOR_CANCELLING, SW_LOG_INFO, "cancelling step", j,
				NULL);
		sw_executor_finish(j, SW_STEP_CANCELLED, NULL, "cancelled: the run was cancelled");
	}
}

/* The attempt's deadline passed while it ran: the scheduler has given up
 * on it (or is about to), so it stops here too. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_executor_job *j = arg;

	(void)fd;
	(void)what;
	sw_executor_finishf(j, SW_STEP_TIMED_OUT, NULL,
			    "timeout: attempt %d of step %s reached its deadline, %lld ms after "
			    "its dispatch",
			    j->attempt, j->step, (long long)j->timeout_ms);
}

static void emit_started(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;

	sw_executor_emit(ex, SW_TOPIC_STEPS, "step.started", &j->dh,
			 json_pack("{s:s, s:i, s:s}", "step", j->step, "attempt", j->attempt,
				   "executor", ex->executor));
}

/* The attempt has run cfg.started_after_ms and goes on: step.started. */
static void started_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_executor_job *j = arg;

	(void)fd;
	(void)what;
	if (j->phase == SW_EXECUTOR_ACTIVE)
		emit_started(j);
}

/* j takes a slot: its deadline, step.started, then the service executes
 * it. fence() has just passed, so the deadline is ahead. step.started is
 * informative (the scheduler takes an outcome from dispatched as well):
 * with cfg.started_after_ms it waits that long, and an attempt that ends
 * sooner has none, which spares every reader of sagewai.steps one event
 * per quick step and keeps it from going ahead of the outcome. */
static void activate(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;
	struct timeval tv;
	int64_t left;

	j->phase = SW_EXECUTOR_ACTIVE; /* out of the wait queue: finish leaves it be */
	if (j->deadline_us > 0) {
		left = j->deadline_us - sw_now_us();
		if (left < 1)
			left = 1;
		tv.tv_sec = (time_t)(left / 1000000);
		tv.tv_usec = (suseconds_t)(left % 1000000);
		if (j->deadline_ev == NULL &&
		    (j->deadline_ev = evtimer_new(ex->cfg.base, deadline_cb, j)) == NULL) {
			sw_executor_finish(j, SW_STEP_FAILED, NULL,
					   "internal: cannot arm the attempt's deadline");
			return;
		}
		evtimer_add(j->deadline_ev, &tv);
	}
	j->counted = 1;
	ex->running++;
	if (ex->cfg.started_after_ms <= 0) {
		emit_started(j);
	} else {
		tv.tv_sec = ex->cfg.started_after_ms / 1000;
		tv.tv_usec = (suseconds_t)(ex->cfg.started_after_ms % 1000) * 1000;
		if (j->started_ev == NULL &&
		    (j->started_ev = evtimer_new(ex->cfg.base, started_cb, j)) == NULL)
			emit_started(j); /* no timer: at once, as without the delay */
		else
			evtimer_add(j->started_ev, &tv);
	}
	ex->ops.start(ex->cfg.arg, j);
}

/* Start queued jobs while slots are free. From the loop only, never from
 * inside sw_executor_finish (a step may finish inside ops->start). */
static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_executor *ex = arg;
	struct sw_executor_job *j;

	(void)fd;
	(void)what;
	while (ex->running < ex->cfg.concurrency && (j = TAILQ_FIRST(&ex->waitq)) != NULL) {
		if (fence(j)) /* it waited too long, or its run ended meanwhile */
			continue;
		TAILQ_REMOVE(&ex->waitq, j, qentry);
		activate(j);
	}
}

static void pump_later(struct sw_executor *ex)
{
	if (!TAILQ_EMPTY(&ex->waitq))
		event_base_once(ex->cfg.base, -1, EV_TIMEOUT, pump_cb, ex, NULL);
}

void sw_executor_admit(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;

	if (fence(j))
		return;
	if (ex->running < ex->cfg.concurrency) {
		activate(j);
	} else {
		j->phase = SW_EXECUTOR_QUEUED;
		TAILQ_INSERT_TAIL(&ex->waitq, j, qentry);
	}
}

void exec_preflight(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;
	json_error_t jerr;
	const char *mode;

	if (fence(j))
		return;
	if (j->spec == NULL) /* a pure job's was parsed before its lookup */
		j->spec = json_loads(j->spec_text, 0, &jerr);
	if (!json_is_object(j->spec)) {
		sw_executor_finish(j, SW_STEP_FAILED, NULL,
				   "bad_input: spec is not a JSON object");
		return;
	}
	if (ex->cfg.refuse_identity_modes && (mode = sw_spec_identity_mode(j->spec)) != NULL) {
		sw_executor_finishf(j, SW_STEP_FAILED, NULL,
				    "preview_gate: the workflow uses mode %s, which is refused in "
				    "multi_tenant mode unless SAGEWAI_SEALED_PREVIEW=1",
				    mode);
		return;
	}
	ex->ops.begin(ex->cfg.arg, j);
}

/* Encode step.finished of j; 0 or -1 with err. */
static int encode(struct sw_executor *ex, struct sw_executor_job *j, enum sw_step_status st,
		  const char *output, const char *error, char *err, size_t errlen)
{
	struct sw_event_header h;
	void *buf = NULL;
	size_t len;
	json_t *o;
	int rc;

	sw_event_header_init(&h, "step.finished", ex->producer);
	if (j->pure) {
		uint8_t d[16], id[16];

		/* checked at consume */
		if (sw_uuid_parse(j->dh.event_id, d) == -1) {
			snprintf(err, errlen, "dispatch event_id is not a UUID");
			return -1;
		}
		sw_uuid_derive(d, "step.finished", id);
		sw_uuid_format(id, h.event_id);
	}
	memcpy(h.tenant, j->dh.tenant, sizeof(h.tenant));
	memcpy(h.run_id, j->dh.run_id, sizeof(h.run_id));
	memcpy(h.step_id, j->dh.step_id, sizeof(h.step_id));
	memcpy(h.trace_id, j->dh.trace_id, sizeof(h.trace_id));
	o = json_pack("{s:s, s:i, s:s, s:s?, s:s?, s:I}", "step", j->step, "attempt", j->attempt,
		      "status", status_names[st], "output", output, "error", error, "duration_us",
		      (json_int_t)((sw_mono_ns() - j->t0_ns) / 1000));
	if (o == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = sw_event_encode(ex->cfg.reg, "step.finished", &h, o, &buf, &len, err, errlen);
	json_decref(o);
	if (rc == -1)
		return -1;
	free(j->finished);
	j->finished = buf;
	j->finished_len = len;
	j->status = st;
	return 0;
}

/* A malloc'd copy of s through ops->redact; NULL when out of memory. */
static char *redact(struct sw_executor *ex, const char *s)
{
	return ex->ops.redact != NULL ? ex->ops.redact(ex->cfg.arg, s) : strdup(s);
}

/* sw_executor_compose; the error text of the event (or "") into shown. */
static int compose(struct sw_executor *ex, struct sw_executor_job *j, enum sw_step_status st,
		   json_t *output, const char *error, char *shown, size_t shownlen, char *errstr,
		   size_t errlen)
{
	char msg[SW_EXECUTOR_ERR_MAX], *text = NULL, *safe_text = NULL, *raw = NULL;
	char *safe_error = NULL;
	size_t tlen = 0, overhead, room;
	int rc = -1;

	if ((unsigned)st > SW_STEP_CANCELLED)
		st = SW_STEP_FAILED;
	snprintf(msg, sizeof(msg), "%s", error != NULL ? error : "");
	if (st == SW_STEP_SUCCEEDED) {
		text = json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY);
		if (text == NULL) {
			st = SW_STEP_FAILED;
			snprintf(msg, sizeof(msg), "internal: cannot serialise the output");
		} else if ((tlen = strlen(text)) > j->text_max && j->text_max > 0) {
			st = SW_STEP_FAILED;
			snprintf(msg, sizeof(msg),
				 "output_too_large: output is %zu bytes, over the limit of %zu",
				 tlen, j->text_max);
		}
	}
	if (st == SW_STEP_SUCCEEDED) {
		safe_text = redact(ex, text);
	} else if ((raw = redact(ex, msg)) != NULL) {
		/* error texts quote peers (stderr, a provider's message) and
		 * may have been cut mid-character */
		safe_error = sw_executor_utf8(raw, strlen(raw));
	}
	if (safe_text == NULL && safe_error == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	if (encode(ex, j, st, safe_text, safe_error, errstr, errlen) == -1)
		goto out;
	if (j->finished_len > ex->cfg.bus_max) {
		/* fits the step's limit, not the bus: fail it rather than stall */
		overhead = j->finished_len > tlen ? j->finished_len - tlen : 0;
		room = ex->cfg.bus_max > overhead ? ex->cfg.bus_max - overhead : 0;
		snprintf(msg, sizeof(msg),
			 "output_too_large: output is %zu bytes, over the limit of %zu", tlen,
			 room);
		if (encode(ex, j, SW_STEP_FAILED, NULL, msg, errstr, errlen) == -1)
			goto out;
		snprintf(shown, shownlen, "%s", msg);
	} else {
		snprintf(shown, shownlen, "%s", safe_error != NULL ? safe_error : "");
	}
	rc = 0;
out:
	free(text);
	free(raw);
	free(safe_text);
	free(safe_error);
	return rc;
}

int sw_executor_compose(struct sw_executor *ex, struct sw_executor_job *j, enum sw_step_status st,
			json_t *output, const char *error, char *errstr, size_t errlen)
{
	char shown[1];

	return compose(ex, j, st, output, error, shown, sizeof(shown), errstr, errlen);
}

void sw_executor_finish(struct sw_executor_job *j, enum sw_step_status st, json_t *output,
			const char *error)
{
	static const char *const help[] = {"Steps that succeeded", "Steps that failed",
					   "Steps that timed out", "Steps that were cancelled"};
	struct sw_executor *ex = j->ex;
	char err[256], dur[24], shown[3 * SW_EXECUTOR_ERR_MAX + 1];
	const char *kv[7];
	int rc;

	if (j->phase != SW_EXECUTOR_LOOKUP && j->phase != SW_EXECUTOR_QUEUED &&
	    j->phase != SW_EXECUTOR_ACTIVE) {
		json_decref(output);
		return;
	}
	if (j->phase == SW_EXECUTOR_QUEUED)
		TAILQ_REMOVE(&ex->waitq, j, qentry);
	if (j->deadline_ev != NULL)
		evtimer_del(j->deadline_ev);
	if (j->started_ev != NULL)
		evtimer_del(j->started_ev);
	if (j->counted) {
		ex->running--;
		j->counted = 0;
		pump_later(ex);
	}
	if (ex->ops.halt != NULL)
		ex->ops.halt(ex->cfg.arg, j, st);
	/* nothing ran (a refusal, a fence), or what ran acts on nothing */
	j->lazy = j->phase != SW_EXECUTOR_ACTIVE || j->no_effect;
	j->phase = SW_EXECUTOR_SAVING;
	rc = compose(ex, j, st, output, error, shown, sizeof(shown), err, sizeof(err));
	json_decref(output);
	if (rc == -1) {
		exec_fatal(ex, "cannot encode step.finished", err);
		return;
	}
	sw_metrics_counter_add(ex->cfg.metrics, ex->m_status[j->status], help[j->status], 1);
	snprintf(dur, sizeof(dur), "%lld", (long long)((sw_mono_ns() - j->t0_ns) / 1000));
	kv[0] = "status";
	kv[1] = status_names[j->status];
	kv[2] = "error";
	kv[3] = shown;
	kv[4] = "duration_us";
	kv[5] = dur;
	kv[6] = NULL;
	exec_report_job(ex, SW_EXECUTOR_FINISHED,
			j->status == SW_STEP_SUCCEEDED ? SW_LOG_INFO : SW_LOG_WARN,
			"step finished", j, kv);
	exec_results_save(j);
}

void sw_executor_finishf(struct sw_executor_job *j, enum sw_step_status st, json_t *output,
			 const char *fmt, ...)
{
	char error[SW_EXECUTOR_ERR_MAX];
	va_list ap;

	error[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(error, sizeof(error), fmt, ap);
		va_end(ap);
	}
	sw_executor_finish(j, st, output, error);
}
