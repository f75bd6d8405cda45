/*
 * exec.c: the worker's side of sw_executor (libs/executor), from a
 * dispatch with no stored result to its outcome.
 *
 * Preflight (no execution, no step.started): after sw_executor's spec and
 * preview-gate checks, the mode (only in_process runs here) and the spec's
 * kind. Then sw_executor_admit: a slot, step.started, and the kind begins.
 * Whatever ends the attempt first -- the kind's outcome, the step timeout,
 * a cancel -- calls worker_exec_finish; later calls are ignored and the
 * kind's resources are released (exec_halt).
 *
 * The executor itself is made and connected here too (worker_exec_new,
 * worker_exec_connect); what stops it reaches the frame (exec_fatal).
 */
#include <stdlib.h>
#include <string.h>

#include "worker.h"

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

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_job *j = arg;

	(void)fd;
	(void)what;
	worker_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
			   "timeout: step exceeded its timeout of %lld ms",
			   (long long)j->x->timeout_ms);
}

/* The spec's keys that may differ between a run and its re-run without the
 * request being another: where the spec comes from, not what it asks. */
static const char *const replay_volatile[] = {"workflow",   "workflow_version", "run_modes",
					      "output_max", "replay",		NULL};

/* 1 when spec asks what the recorded request asked (both without the
 * volatile keys), else 0. */
static int replay_same_request(json_t *spec, json_t *recorded)
{
	json_t *a = json_copy(spec), *b = json_copy(recorded);
	int i, same;

	for (i = 0; replay_volatile[i] != NULL; i++) {
		json_object_del(a, replay_volatile[i]);
		json_object_del(b, replay_volatile[i]);
	}
	same = a != NULL && b != NULL && json_equal(a, b);
	json_decref(a);
	json_decref(b);
	return same;
}

/* A re-run's llm or http step: the original's recorded outcome, the model
 * or URL not called (docs/AUDIT.md "Re-run"). The request was checked in
 * exec_begin. */
static void replay_answer(struct worker_job *j)
{
	const char *status = json_string_value(json_object_get(j->replay, "status"));
	json_t *ans = json_object_get(j->replay, "answer");
	const char *out = json_string_value(json_object_get(ans, "output"));
	const char *err = json_string_value(json_object_get(ans, "error"));
	json_t *v;

	if (status != NULL && strcmp(status, "SUCCEEDED") == 0 && out != NULL) {
		if ((v = json_loads(out, JSON_DECODE_ANY, NULL)) == NULL)
			worker_exec_finish(j, SW_STEP_FAILED, NULL,
					   "replay: the recorded output of step %s is not JSON",
					   j->x->step);
		else
			worker_exec_finish(j, SW_STEP_SUCCEEDED, v, NULL);
	} else if (status != NULL && strcmp(status, "FAILED") == 0 && err != NULL) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "%s", err);
	} else if (status != NULL && strcmp(status, "TIMED_OUT") == 0 && err != NULL) {
		worker_exec_finish(j, SW_STEP_TIMED_OUT, NULL, "%s", err);
	} else {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "replay: no recorded outcome of step %s to answer from (the "
				   "original attempt was %s)",
				   j->x->step, status != NULL ? status : "not recorded");
	}
}

/* A slot is free and step.started produced: the timer, then the kind. */
static void exec_start(void *arg, struct sw_executor_job *x)
{
	struct worker_env *env = arg;
	struct worker_job *j = x->owner;
	struct timeval tv;
	json_t *v;

	if (x->timeout_ms > 0) {
		tv.tv_sec = (time_t)(x->timeout_ms / 1000);
		tv.tv_usec = (suseconds_t)(x->timeout_ms % 1000) * 1000;
		if ((j->timer = evtimer_new(env->base, timeout_cb, j)) == NULL ||
		    evtimer_add(j->timer, &tv) == -1) {
			worker_exec_finish(j, SW_STEP_FAILED, NULL,
					   "internal: cannot arm the timer");
			return;
		}
	}
	switch (j->kind) {
	case KIND_TEMPLATE:
		v = json_object_get(j->with, "value");
		if (v == NULL)
			worker_exec_finish(j, SW_STEP_FAILED, NULL,
					   "bad_input: a template step needs with.value");
		else
			worker_exec_finish(j, SW_STEP_SUCCEEDED, json_deep_copy(v), NULL);
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
	case KIND_REPLAY:
		replay_answer(j);
		break;
	default:
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "internal: no kind");
	}
}

/* The spec is an object past the preview gate: the mode (only in_process
 * runs here), spec.uses, output_max; then a slot. */
static void exec_begin(void *arg, struct sw_executor_job *x)
{
	struct worker_env *env = arg;
	struct worker_job *j = x->owner;
	json_t *v;

	if (strcmp(x->mode, "in_process") != 0) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "mode_unavailable: step %s has mode %s; this worker runs "
				   "in_process steps only and no sandbox host is available",
				   x->step, x->mode);
		return;
	}
	v = json_object_get(x->spec, "uses");
	if (!json_is_string(v)) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "bad_input: spec.uses is not a string");
		return;
	}
	j->uses = json_string_value(v);
	j->with = json_object_get(x->spec, "with");
	v = json_object_get(x->spec, "output_max");
	j->output_max = json_is_integer(v) && json_integer_value(v) > 0
			    ? (size_t)json_integer_value(v)
			    : WORKER_OUTPUT_MAX_DEFAULT;
	if (j->output_max > env->output_cap)
		j->output_max = env->output_cap;
	x->text_max = j->output_max;

	if (strcmp(j->uses, "template") == 0)
		j->kind = KIND_TEMPLATE;
	else if (strcmp(j->uses, "llm") == 0)
		j->kind = KIND_LLM;
	else if (strcmp(j->uses, "http") == 0)
		j->kind = KIND_HTTP;
	else if (strncmp(j->uses, "plugin:", 7) == 0 && j->uses[7] != '\0')
		j->kind = KIND_PLUGIN;
	if (j->kind == KIND_NONE) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "bad_input: unknown step kind '%.100s'", j->uses);
		return;
	}
	/* a re-run's llm or http step answers from the original's record, or
	 * fails: it never calls the model or URL */
	v = json_object_get(x->spec, "replay");
	if (v != NULL && (j->kind == KIND_LLM || j->kind == KIND_HTTP)) {
		if (!json_is_object(v) || !json_is_object(json_object_get(v, "request"))) {
			worker_exec_finish(j, SW_STEP_FAILED, NULL,
					   "bad_input: spec.replay has no recorded request");
			return;
		}
		if (!replay_same_request(x->spec, json_object_get(v, "request"))) {
			worker_exec_finish(
			    j, SW_STEP_FAILED, NULL,
			    "replay: step %s asks another request than the original"
			    " run's (its input changed); a re-run answers %s steps only"
			    " from the recorded responses and does not call the %s",
			    x->step, j->uses, j->kind == KIND_LLM ? "model" : "URL");
			return;
		}
		j->replay = v;
		j->kind = KIND_REPLAY;
	}
	/* a template's value and a recorded answer act on nothing outside */
	x->no_effect = j->kind == KIND_TEMPLATE || j->kind == KIND_REPLAY;
	sw_executor_admit(x);
}

/* A template's outcome is its dispatch's own with.value (or the refusal of
 * a spec that has none): nothing to look up or store (sw_executor_ops.pure).
 * A re-run's recorded answer is as pure; it keeps its (lazy) results row
 * for now. */
static int exec_pure(void *arg, const struct sw_executor_job *x)
{
	json_t *v = json_object_get(x->spec, "uses");

	(void)arg;
	return strcmp(x->mode, "in_process") == 0 && json_is_string(v) &&
	       strcmp(json_string_value(v), "template") == 0;
}

/* With sandboxd on this deployment, its steps (sandboxed, identity_scoped,
 * cli_agent, cli_agent_jit) are its own; every other mode still gets this worker's
 * preflight (preview gate, refusal). */
static int exec_wants(void *arg, const char *mode)
{
	struct worker_env *env = arg;

	return !(env->ignore_other_modes &&
		 (strcmp(mode, "sandboxed") == 0 || strcmp(mode, "identity_scoped") == 0 ||
		  strcmp(mode, "cli_agent") == 0 || strcmp(mode, "cli_agent_jit") == 0));
}

static int exec_job_new(void *arg, struct sw_executor_job *x)
{
	struct worker_job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return -1;
	j->x = x;
	j->env = arg;
	x->owner = j;
	return 0;
}

/* The attempt ended: stop what runs it. */
static void exec_halt(void *arg, struct sw_executor_job *x, enum sw_step_status st)
{
	struct worker_job *j = x->owner;

	(void)arg;
	(void)st;
	if (j->timer != NULL) {
		event_free(j->timer);
		j->timer = NULL;
	}
	worker_curl_abort(j);
	worker_plugin_abandon(j);
}

static void exec_job_free(void *arg, struct sw_executor_job *x)
{
	exec_halt(arg, x, SW_STEP_CANCELLED);
	free(x->owner);
	x->owner = NULL;
}

static char *exec_redact(void *arg, const char *text)
{
	return worker_redact(arg, text);
}

/* The executor's log lines; "step finished" also names the step's kind. */
static void exec_report(void *arg, const struct sw_executor_report *r)
{
	const char *kv[24];
	size_t n = 0, i;

	(void)arg;
	if (r->kind != SW_EXECUTOR_FINISHED) {
		sw_log_kv(r->level, r->msg, r->fields);
		return;
	}
	for (i = 0; r->fields[i] != NULL && n + 4 < sizeof(kv) / sizeof(kv[0]); i += 2) {
		kv[n++] = r->fields[i];
		kv[n++] = r->fields[i + 1];
		if (strcmp(r->fields[i], "step_id") == 0) {
			struct worker_job *j = r->job->owner;

			kv[n++] = "uses";
			kv[n++] = j != NULL && j->uses != NULL ? j->uses : "";
		}
	}
	kv[n] = NULL;
	sw_log_kv(r->level, r->msg, kv);
}

/* The executor cannot go on: the frame stops the service (def->halt halts
 * the executor first). */
static void exec_fatal(void *arg, const char *what, const char *why)
{
	struct worker_env *env = arg;

	sw_service_fatal(env->svc, what, why);
}

const struct sw_executor_ops worker_exec_ops = {
    .wants = exec_wants,
    .job_new = exec_job_new,
    .pure = exec_pure,
    .begin = exec_begin,
    .start = exec_start,
    .halt = exec_halt,
    .job_free = exec_job_free,
    .redact = exec_redact,
    .report = exec_report,
    .fatal = exec_fatal,
};

int worker_exec_new(struct worker_env *env, char *errstr, size_t errlen)
{
	const char *instance = sw_config_env(sw_service_environ(env->svc), "SAGEWAI_INSTANCE_ID");
	struct sw_executor_config xc;

	/* static group membership: a restart of this instance gets its
	 * partitions back at once (sw_executor.h); unset, membership is
	 * dynamic, since a guessed id shared by two instances would have the
	 * broker fence one of them */
	if (instance != NULL && !sw_executor_instance_ok(instance)) {
		snprintf(errstr, errlen,
			 "SAGEWAI_INSTANCE_ID: 1 to %d of A-Z a-z 0-9 . _ -, unique in the group",
			 SW_EXECUTOR_INSTANCE_MAX);
		return -1;
	}

	/* every step is a lookup and an insert of its own: with several
	 * connections they overlap instead of queueing behind each other */
	if ((env->store = sw_executor_store_new(env->base, env->cfg->pg_dsn, "worker",
						env->pg_pool, errstr, errlen)) == NULL)
		return -1;
	memset(&xc, 0, sizeof(xc));
	xc.base = env->base;
	xc.reg = env->reg;
	xc.store = env->store;
	xc.metrics = env->metrics;
	xc.producer = WORKER_PRODUCER;
	xc.metrics_prefix = "sagewai_worker";
	xc.executor = sw_service_instance(env->svc);
	xc.bus_max = env->bus_max;
	xc.concurrency = env->concurrency;
	xc.started_after_ms = env->started_after_ms;
	xc.produce_at_once = env->produce_at_once;
	xc.line_min = WORKER_LINE_MIN;
	xc.refuse_identity_modes = env->multi_tenant && !env->sealed_preview;
	xc.instance_id = instance;
	xc.ops = &worker_exec_ops;
	xc.arg = env;
	env->ex = sw_executor_new(&xc, errstr, errlen);
	return env->ex != NULL ? 0 : -1;
}

int worker_exec_connect(struct worker_env *env, char *errstr, size_t errlen)
{
	/* the first is the dispatch topic (sw_executor_connect) */
	static const char *const topics[] = {SW_TOPIC_STEPS_WORKER, SW_TOPIC_RUNS, NULL};
	const char *extra[34] = {"topic.metadata.refresh.interval.ms=2000",
				 "partition.assignment.strategy=range"};
	const char *pextra[34] = {NULL};
	char *const *envp = sw_service_environ(env->svc);
	char tuning[SW_CONFIG_STR], ptuning[SW_CONFIG_STR], msgmax[64];
	size_t np = 0;

	env->group = env->cfg->group_id[0] ? env->cfg->group_id : WORKER_DEFAULT_GROUP;
	/* operator tuning: SAGEWAI_KAFKA_CONSUMER_CONFIG="name=value,name=value" */
	if (sw_config_list(envp, "SAGEWAI_KAFKA_CONSUMER_CONFIG", extra, 2,
			   sizeof(extra) / sizeof(extra[0]), tuning, sizeof(tuning), errstr,
			   errlen) == -1)
		return -1;
	if (sw_config_env(envp, "SAGEWAI_KAFKA_MESSAGE_MAX") != NULL) {
		snprintf(msgmax, sizeof(msgmax), "message.max.bytes=%zu", env->bus_max);
		pextra[np++] = msgmax;
	}
	/* and SAGEWAI_KAFKA_PRODUCER_CONFIG, as the scheduler takes it */
	if (sw_config_list(envp, "SAGEWAI_KAFKA_PRODUCER_CONFIG", pextra, np,
			   sizeof(pextra) / sizeof(pextra[0]), ptuning, sizeof(ptuning), errstr,
			   errlen) == -1)
		return -1;
	if (sw_executor_connect(env->ex, env->cfg->kafka_bootstrap, env->group, topics, pextra,
				extra, errstr, errlen) == -1)
		return -1;
	env->connected = 1;
	return 0;
}

/* Deliveries still due mark their messages done; store those offsets and
 * let close commit them. The producer goes before the jobs: its delivery
 * reports point at them (sw_executor_destroy). */
void worker_exec_close(struct worker_env *env)
{
	if (env->connected && sw_executor_close(env->ex, 5000) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
	env->connected = 0;
	sw_executor_destroy(env->ex);
	env->ex = NULL;
	sw_store_destroy(env->store);
	env->store = NULL;
}
