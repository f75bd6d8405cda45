/*
 * exec.c: from a dispatch with no stored result to its step.finished.
 *
 * Preflight (no execution, no step.started): the preview-gate backstop,
 * the mode (only in_process runs here), the spec, a run already cancelled.
 * Then the step waits for one of env->concurrency slots, step.started is
 * produced and the kind begins. Whatever ends the attempt first -- the
 * kind's outcome, the step timeout, a cancel -- calls worker_exec_finish;
 * later calls are ignored and the kind's resources are released there.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sw_workflow.h"
#include "worker.h"

static const char *const status_names[] = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"};


char *worker_redact(const struct worker_env *env, const char *s)
{
	static const char mask[] = "[REDACTED]";
	size_t klen = strlen(env->llm_key), n = 0, cap;
	const char *p, *hit;
	char *out;

	if (s == NULL)
		return NULL;
	if (klen < 4) /* no key, or one too short to mask without shredding text */
		return strdup(s);
	for (p = s; (hit = strstr(p, env->llm_key)) != NULL; p = hit + klen)
		n++;
	cap = strlen(s) + n * sizeof(mask) + 1;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	out[0] = '\0';
	for (p = s, n = 0; (hit = strstr(p, env->llm_key)) != NULL; p = hit + klen) {
		memcpy(out + n, p, (size_t)(hit - p));
		n += (size_t)(hit - p);
		memcpy(out + n, mask, sizeof(mask) - 1);
		n += sizeof(mask) - 1;
	}
	strcpy(out + n, p);
	return out;
}

int worker_exec_was_cancelled(struct worker_env *env, const char *run_id)
{
	size_t i;

	for (i = 0; i < WORKER_CANCEL_RING; i++)
		if (env->cancelled[i][0] && strcmp(env->cancelled[i], run_id) == 0)
			return 1;
	return 0;
}

static void pump(struct worker_env *env);

/* Error texts quote peers (a provider's message, a body excerpt) and may
 * have been cut mid-character: if s is not valid UTF-8, keep it ASCII. */
static void utf8_fix(char *s)
{
	json_t *probe = json_string(s);
	unsigned char *p;

	if (probe != NULL) {
		json_decref(probe);
		return;
	}
	for (p = (unsigned char *)s; *p; p++)
		if (*p >= 0x80)
			*p = '?';
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_job *j = arg;

	(void)fd;
	(void)what;
	worker_exec_finish(j, STEP_TIMED_OUT, NULL,
			   "timeout: step exceeded its timeout of %lld ms",
			   (long long)j->timeout_ms);
}

static void produce_started(struct worker_job *j)
{
	struct worker_env *env = j->env;
	struct sw_event_header h;
	char err[256];
	void *buf = NULL;
	size_t len;
	json_t *o;

	sw_event_header_init(&h, "step.started", WORKER_PRODUCER);
	memcpy(h.tenant, j->dh.tenant, sizeof(h.tenant));
	memcpy(h.run_id, j->dh.run_id, sizeof(h.run_id));
	memcpy(h.step_id, j->dh.step_id, sizeof(h.step_id));
	memcpy(h.trace_id, j->dh.trace_id, sizeof(h.trace_id));
	o = json_pack("{s:s, s:i, s:s}", "step", j->step, "attempt", j->attempt, "executor",
		      env->executor);
	if (o == NULL ||
	    sw_event_encode(env->reg, "step.started", &h, o, &buf, &len, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_WARN, "cannot encode step.started", "error", o ? err : "no memory",
		       NULL);
	} else if (sw_bus_produce(env->producer, SW_TOPIC_STEPS, h.run_id, buf, len, NULL, NULL,
				  err, sizeof(err)) == -1) {
		sw_log(SW_LOG_WARN, "cannot produce step.started", "error", err, NULL);
	}
	json_decref(o);
	free(buf);
}

static void run(struct worker_job *j)
{
	struct worker_env *env = j->env;
	struct timeval tv;
	json_t *v;

	j->state = JOB_RUNNING;
	env->running++;
	produce_started(j);
	if (j->timeout_ms > 0) {
		tv.tv_sec = (time_t)(j->timeout_ms / 1000);
		tv.tv_usec = (suseconds_t)(j->timeout_ms % 1000) * 1000;
		if ((j->timer = evtimer_new(env->base, timeout_cb, j)) == NULL ||
		    evtimer_add(j->timer, &tv) == -1) {
			worker_exec_finish(j, STEP_FAILED, NULL, "internal: cannot arm the timer");
			return;
		}
	}
	switch (j->kind) {
	case KIND_TEMPLATE:
		v = json_object_get(j->with, "value");
		if (v == NULL)
			worker_exec_finish(j, STEP_FAILED, NULL,
					   "bad_input: a template step needs with.value");
		else
			worker_exec_finish(j, STEP_SUCCEEDED, json_deep_copy(v), NULL);
		break;
	case KIND_LLM:
		worker_llm_start(j);
		break;
	case KIND_HTTP:
		worker_http_start(j);
		break;
	case KIND_PLUGIN:
		worker_plugin_start(j, j->uses + strlen("plugin:"));
		break;
	default:
		worker_exec_finish(j, STEP_FAILED, NULL, "internal: no kind");
	}
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

/* Start queued steps while slots are free. Called from the loop only, never
 * from inside worker_exec_finish (a template step finishes inside run()). */
static void pump(struct worker_env *env)
{
	struct worker_job *j;

	while (env->running < env->concurrency && (j = TAILQ_FIRST(&env->waitq)) != NULL) {
		TAILQ_REMOVE(&env->waitq, j, qentry);
		run(j);
	}
}

static void pump_later(struct worker_env *env)
{
	if (!TAILQ_EMPTY(&env->waitq))
		event_base_once(env->base, -1, EV_TIMEOUT, pump_cb, env, NULL);
}

/* The first identity-bearing mode of spec.run_modes, or NULL. */
void worker_exec_begin(struct worker_job *j)
{
	struct worker_env *env = j->env;
	json_error_t jerr;
	json_t *v;
	const char *mode;

	j->spec = json_loads(j->spec_text, 0, &jerr);
	if (!json_is_object(j->spec)) {
		worker_exec_finish(j, STEP_FAILED, NULL, "bad_input: spec is not a JSON object");
		return;
	}
	if (env->multi_tenant && !env->sealed_preview && (mode = sw_spec_identity_mode(j->spec))) {
		worker_exec_finish(j, STEP_FAILED, NULL,
				   "preview_gate: the workflow uses mode %s, which is refused in "
				   "multi_tenant mode unless SAGEWAI_SEALED_PREVIEW=1",
				   mode);
		return;
	}
	if (strcmp(j->mode, "in_process") != 0) {
		worker_exec_finish(j, STEP_FAILED, NULL,
				   "mode_unavailable: step %s has mode %s; this worker runs "
				   "in_process steps only and no sandbox host is available",
				   j->step, j->mode);
		return;
	}
	v = json_object_get(j->spec, "uses");
	if (!json_is_string(v)) {
		worker_exec_finish(j, STEP_FAILED, NULL, "bad_input: spec.uses is not a string");
		return;
	}
	j->uses = json_string_value(v);
	j->with = json_object_get(j->spec, "with");
	v = json_object_get(j->spec, "output_max");
	j->output_max = json_is_integer(v) && json_integer_value(v) > 0
			    ? (size_t)json_integer_value(v)
			    : WORKER_OUTPUT_MAX_DEFAULT;
	if (j->output_max > env->output_cap)
		j->output_max = env->output_cap;

	if (strcmp(j->uses, "template") == 0)
		j->kind = KIND_TEMPLATE;
	else if (strcmp(j->uses, "llm") == 0)
		j->kind = KIND_LLM;
	else if (strcmp(j->uses, "http") == 0)
		j->kind = KIND_HTTP;
	else if (strncmp(j->uses, "plugin:", 7) == 0 && j->uses[7] != '\0')
		j->kind = KIND_PLUGIN;
	if (j->kind == KIND_NONE) {
		worker_exec_finish(j, STEP_FAILED, NULL, "bad_input: unknown step kind '%.100s'",
				   j->uses);
		return;
	}
	if (worker_exec_was_cancelled(env, j->dh.run_id)) {
		worker_exec_finish(j, STEP_CANCELLED, NULL,
				   "cancelled: the run was cancelled before the step started");
		return;
	}
	if (env->running < env->concurrency) {
		run(j);
	} else {
		j->state = JOB_QUEUED;
		TAILQ_INSERT_TAIL(&env->waitq, j, qentry);
	}
}

void worker_exec_cancel(struct worker_env *env, const char *run_id)
{
	struct worker_job *j, *next;

	if (!worker_exec_was_cancelled(env, run_id)) {
		snprintf(env->cancelled[env->cancel_next], sizeof(env->cancelled[0]), "%s",
			 run_id);
		env->cancel_next = (env->cancel_next + 1) % WORKER_CANCEL_RING;
	}
	for (j = TAILQ_FIRST(&env->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (strcmp(j->dh.run_id, run_id) != 0 ||
		    (j->state != JOB_RUNNING && j->state != JOB_QUEUED))
			continue;
		sw_log(SW_LOG_INFO, "cancelling step", "run_id", run_id, "step_id", j->dh.step_id,
		       NULL);
		worker_exec_finish(j, STEP_CANCELLED, NULL, "cancelled: the run was cancelled");
	}
}

/* Encode step.finished of j; 0 or -1 with err. */
static int encode_finished(struct worker_job *j, enum step_status st, const char *output,
			   const char *error, char *err, size_t errlen)
{
	struct worker_env *env = j->env;
	struct sw_event_header h;
	void *buf = NULL;
	size_t len;
	json_t *o;
	int rc;

	sw_event_header_init(&h, "step.finished", WORKER_PRODUCER);
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
	rc = sw_event_encode(env->reg, "step.finished", &h, o, &buf, &len, err, errlen);
	json_decref(o);
	if (rc == -1)
		return -1;
	free(j->finished);
	j->finished = buf;
	j->finished_len = len;
	j->status = st;
	return 0;
}

static void release_kind(struct worker_job *j)
{
	if (j->timer != NULL) {
		event_free(j->timer);
		j->timer = NULL;
	}
	worker_curl_abort(j);
	worker_plugin_abandon(j);
}

void worker_exec_finish(struct worker_job *j, enum step_status st, json_t *output, const char *fmt,
			...)
{
	struct worker_env *env = j->env;
	char error[WORKER_ERR_MAX], err[256], dur[24];
	char *text = NULL, *safe_text = NULL, *safe_error = NULL;
	size_t tlen = 0;
	va_list ap;

	if (j->state != JOB_LOOKUP && j->state != JOB_QUEUED && j->state != JOB_RUNNING) {
		json_decref(output);
		return;
	}
	if (j->state == JOB_QUEUED)
		TAILQ_REMOVE(&env->waitq, j, qentry);
	if (j->state == JOB_RUNNING) {
		env->running--;
		pump_later(env);
	}
	j->state = JOB_SAVING;
	release_kind(j);

	error[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(error, sizeof(error), fmt, ap);
		va_end(ap);
	}
	if (st == STEP_SUCCEEDED) {
		text = json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY);
		if (text == NULL) {
			st = STEP_FAILED;
			snprintf(error, sizeof(error), "internal: cannot serialise the output");
		} else if ((tlen = strlen(text)) > j->output_max) {
			st = STEP_FAILED;
			snprintf(error, sizeof(error),
				 "output_too_large: output is %zu bytes, over the limit of %zu",
				 tlen, j->output_max);
		}
	}
	json_decref(output);
	if (st == STEP_SUCCEEDED)
		safe_text = worker_redact(env, text);
	else
		safe_error = worker_redact(env, error);
	if (safe_error != NULL)
		utf8_fix(safe_error);
	free(text);
	if ((st == STEP_SUCCEEDED && safe_text == NULL) ||
	    (st != STEP_SUCCEEDED && safe_error == NULL)) {
		worker_fatal(env, "step.finished", "out of memory");
		goto out;
	}
	if (encode_finished(j, st, safe_text, safe_error, err, sizeof(err)) == -1) {
		worker_fatal(env, "cannot encode step.finished", err);
		goto out;
	}
	if (j->finished_len > env->bus_max) {
		/* fits the step's limit, not the bus: fail it rather than stall */
		size_t room = env->bus_max - (j->finished_len - tlen);

		free(safe_error);
		if ((safe_error = malloc(WORKER_ERR_MAX)) == NULL) {
			worker_fatal(env, "step.finished", "out of memory");
			goto out;
		}
		snprintf(safe_error, WORKER_ERR_MAX,
			 "output_too_large: output is %zu bytes, over the limit of %zu", tlen,
			 room);
		st = STEP_FAILED;
		if (encode_finished(j, st, NULL, safe_error, err, sizeof(err)) == -1) {
			worker_fatal(env, "cannot encode step.finished", err);
			goto out;
		}
	}
	snprintf(dur, sizeof(dur), "%lld", (long long)((sw_mono_ns() - j->t0_ns) / 1000));
	sw_log(st == STEP_SUCCEEDED ? SW_LOG_INFO : SW_LOG_WARN, "step finished", "run_id",
	       j->dh.run_id, "step_id", j->dh.step_id, "uses", j->uses ? j->uses : "", "status",
	       status_names[st], "error", safe_error ? safe_error : "", "duration_us", dur, NULL);
	switch (st) {
	case STEP_SUCCEEDED:
		sw_metrics_counter_add(env->metrics, "sagewai_worker_steps_succeeded_total",
				       "Steps that succeeded", 1);
		break;
	case STEP_FAILED:
		sw_metrics_counter_add(env->metrics, "sagewai_worker_steps_failed_total",
				       "Steps that failed", 1);
		break;
	case STEP_TIMED_OUT:
		sw_metrics_counter_add(env->metrics, "sagewai_worker_steps_timed_out_total",
				       "Steps that timed out", 1);
		break;
	case STEP_CANCELLED:
		sw_metrics_counter_add(env->metrics, "sagewai_worker_steps_cancelled_total",
				       "Steps that were cancelled", 1);
		break;
	}
	worker_results_save(j);
out:
	free(safe_text);
	free(safe_error);
}
