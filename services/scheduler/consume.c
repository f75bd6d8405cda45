/*
 * consume.c: step outcomes in, from sagewai.steps (consumer group
 * sagewai-scheduler unless SAGEWAI_GROUP_ID says otherwise).
 *
 * step.started and step.finished become operations of the state machine
 * (runs.c), started together once the batch is read. Dispatches travel on
 * the executors' own topics (sagewai.steps.worker, .sandbox), which the
 * progress streams' reader follows (sse.c); one found here (written before
 * that split) only wakes the streams of its run, when another instance
 * produced it. Other decodable events are not ours and are skipped;
 * undecodable messages go to sagewai.deadletter.
 *
 * A batch's offsets are stored once every operation of the batch is
 * committed (or found a no-op) and every dead letter is delivered, and
 * batches settle in consumption order, so a crash redelivers at most what
 * was not durable yet -- and the state machine makes that a no-op (an
 * outcome or a start counts only for the attempt still in flight). The
 * stored offsets are committed at most every SW_BUS_COMMIT_MS, and on close.
 */
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

struct sched_item {
	char *topic;
	int32_t partition;
	int64_t offset;
};

struct sched_batch {
	TAILQ_ENTRY(sched_batch) entry;
	struct sched_env *env;
	struct sched_item *items;
	size_t n;
	size_t pending; /* operations and dead letters outstanding */
};

struct dl_msg {
	struct sched_dr dr;
	struct sched_batch *b;
};

static void batch_free(struct sched_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		free(b->items[i].topic);
	free(b->items);
	free(b);
}

/* Store the offsets of every leading batch that is done, in order. */
static void settle(struct sched_env *env)
{
	struct sched_batch *b;
	int stored = 0;
	size_t i;

	while ((b = TAILQ_FIRST(&env->batches)) != NULL && b->pending == 0) {
		TAILQ_REMOVE(&env->batches, b, entry);
		env->nbatches--;
		env->nconsumed -= b->n;
		for (i = 0; i < b->n; i++)
			/* fails for partitions revoked meanwhile: their next owner
			 * reads from the committed offset, and handling is idempotent */
			sw_bus_consumer_store_at(env->consumer, b->items[i].topic,
						 b->items[i].partition, b->items[i].offset);
		stored = 1;
		batch_free(b);
	}
	if (stored) /* at most every SW_BUS_COMMIT_MS: see sw_bus_consumer_commit */
		sw_bus_consumer_commit(env->consumer);
	if (env->paused && env->nconsumed < SCHED_MAX_INFLIGHT / 2 && !env->stopping) {
		env->paused = 0;
		sw_bus_consumer_resume(env->consumer);
	}
}

static void batch_release(struct sched_batch *b)
{
	if (--b->pending == 0)
		settle(b->env);
}

static void op_done(struct sched_op *op, enum sched_op_result r, void *opaque)
{
	struct sched_batch *b = opaque;
	struct sched_env *env = b->env;

	if (r == SCHED_OP_ERROR) {
		/* not a lost connection (the store retries those) but a refused
		 * statement: retrying would fail again. The step's deadline
		 * takes over. */
		sw_log(SW_LOG_ERROR, "step outcome not applied", "run_id", op->run_id, "event_id",
		       op->event_id, "error", op->errmsg, NULL);
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_outcome_errors_total",
				       "Consumed step events that could not be applied.", 1);
	} else if (r != SCHED_OP_APPLIED) {
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_events_ignored_total",
				       "Consumed step events with nothing to do (stale, duplicate,"
				       " unknown run).",
				       1);
	}
	batch_release(b);
}

static void deadletter(struct sched_env *env, struct sched_batch *b, const struct sw_bus_msg *m,
		       const char *why)
{
	struct dl_msg *dl = calloc(1, sizeof(*dl));
	char err[256];

	if (dl == NULL) {
		sw_service_fatal(env->svc, "dead letter", "out of memory");
		return;
	}
	dl->dr.kind = SCHED_DR_DEADLETTER;
	dl->b = b;
	b->pending++;
	if (sw_bus_deadletter(env->producer, m, why, dl, err, sizeof(err)) == -1) {
		b->pending--;
		free(dl);
		sw_service_fatal(env->svc, "dead-letter produce failed", err);
		return;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_deadlettered_total",
			       "Undecodable messages sent to sagewai.deadletter.", 1);
	sw_log(SW_LOG_WARN, "dead-lettered undecodable message", "topic", m->topic, "reason", why,
	       NULL);
}

void sched_consume_delivery(struct sched_env *env, const char *err, struct sched_dr *dr)
{
	struct dl_msg *dl = (struct dl_msg *)dr;
	struct sched_batch *b = dl->b;

	free(dl);
	if (err != NULL) {
		/* nothing may be committed past it: stop, it comes back */
		sw_service_fatal(env->svc, "dead-letter delivery failed", err);
		return;
	}
	batch_release(b);
}

/* "<run_id>/<step>/<attempt>" must name this run, step and attempt. */
static int step_id_ok(const char *step_id, const char *run_id, const char *step, int attempt)
{
	char want[256];

	snprintf(want, sizeof(want), "%s/%s/%d", run_id, step, attempt);
	return strcmp(step_id, want) == 0;
}

/* Handle one message; an operation it causes is added to ops[*nops] (the
 * caller starts them all once the batch is read). */
static void handle(struct sched_env *env, struct sched_batch *b, const struct sw_bus_msg *m,
		   struct sched_op **ops, size_t *nops)
{
	struct sw_event_header h;
	struct sched_op *op;
	char why[256];
	json_t *ev, *out, *err;
	const char *step;
	int started, attempt;

	if (m->value == NULL || m->len == 0) {
		deadletter(env, b, m, "empty message");
		return;
	}
	if (sw_event_decode_header(env->reg, m->value, m->len, &h, why, sizeof(why)) == -1) {
		deadletter(env, b, m, why);
		return;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_events_consumed_total",
			       "Events consumed from sagewai.steps.", 1);
	if (strcmp(h.type, "step.dispatched") == 0) {
		/* another instance's dispatch: our streams learn it here; our
		 * own commit has told them already */
		if (sched_uuid_valid(h.run_id) && !sched_outbox_ours(env, h.event_id))
			sched_sse_touch(env, h.run_id, 0);
		return;
	}
	started = strcmp(h.type, "step.started") == 0;
	if (!started && strcmp(h.type, "step.finished") != 0)
		return; /* a valid event for someone else */
	if (!sched_uuid_valid(h.run_id) || !sched_uuid_valid(h.event_id))
		return; /* not a run of any scheduler */
	if ((ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) == NULL) {
		deadletter(env, b, m, why);
		return;
	}
	step = json_string_value(json_object_get(ev, "step"));
	attempt = (int)json_integer_value(json_object_get(ev, "attempt"));
	if (step == NULL || strlen(step) >= sizeof(op->step) || attempt < 1 ||
	    !step_id_ok(h.step_id, h.run_id, step, attempt)) {
		json_decref(ev);
		sw_log(SW_LOG_WARN, "step event with an inconsistent step or step_id skipped",
		       "run_id", h.run_id, "event_id", h.event_id, NULL);
		return;
	}
	op = sched_op_new(env, started ? SCHED_OP_STARTED : SCHED_OP_FINISHED, h.run_id, op_done,
			  b);
	if (op == NULL) {
		json_decref(ev);
		sw_service_fatal(env->svc, "consume", "out of memory");
		return;
	}
	snprintf(op->event_id, sizeof(op->event_id), "%s", h.event_id);
	snprintf(op->step, sizeof(op->step), "%s", step);
	op->attempt = attempt;
	if (!started) {
		snprintf(op->status, sizeof(op->status), "%s",
			 json_string_value(json_object_get(ev, "status")));
		out = json_object_get(ev, "output");
		err = json_object_get(ev, "error");
		if (json_is_string(out))
			op->output = strdup(json_string_value(out));
		if (json_is_string(err))
			op->error = strdup(json_string_value(err));
	}
	json_decref(ev);
	b->pending++;
	ops[(*nops)++] = op;
}

static void on_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sched_env *env = opaque;
	struct sched_batch *b;
	struct sched_op **ops;
	size_t i, nops = 0;

	if (n == 0 || env->halted)
		return;
	ops = calloc(n, sizeof(*ops));
	b = calloc(1, sizeof(*b));
	if (ops == NULL || b == NULL || (b->items = calloc(n, sizeof(*b->items))) == NULL) {
		free(ops);
		free(b);
		sw_service_fatal(env->svc, "consume", "out of memory");
		return;
	}
	b->env = env;
	b->n = n;
	b->pending = 1; /* held while the batch is being read */
	for (i = 0; i < n; i++) {
		if ((b->items[i].topic = strdup(msgs[i].topic)) == NULL) {
			batch_free(b);
			free(ops);
			sw_service_fatal(env->svc, "consume", "out of memory");
			return;
		}
		b->items[i].partition = msgs[i].partition;
		b->items[i].offset = msgs[i].offset;
	}
	TAILQ_INSERT_TAIL(&env->batches, b, entry);
	env->nbatches++;
	env->nconsumed += n;
	for (i = 0; i < n; i++)
		handle(env, b, &msgs[i], ops, &nops);
	sched_ops_start(ops, nops);
	free(ops);
	/* Backpressure only against real overload: a pause makes librdkafka
	 * drop what it had fetched, and fetching resumes a fetch cycle (up to
	 * fetch.wait.max.ms) later. */
	if (env->nconsumed >= SCHED_MAX_INFLIGHT && !env->paused) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
	batch_release(b);
}

int sched_consume_start(struct sched_env *env, char *errstr, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_STEPS, NULL};
	char tuning[SW_CONFIG_STR];
	const char *extra[SCHED_BUS_EXTRA];
	const char *group = env->cfg->group_id[0] ? env->cfg->group_id : "sagewai-scheduler";

	TAILQ_INIT(&env->batches);
	/* a restarted scheduler gets its partitions back in seconds, not after
	 * librdkafka's 45 s default (the operator's settings still win) */
	if (sched_bus_extra(env, "SAGEWAI_KAFKA_CONSUMER_CONFIG", "session.timeout.ms=10000", extra,
			    tuning,
			    sizeof(tuning)) == -1) {
		snprintf(errstr, errlen, "SAGEWAI_KAFKA_CONSUMER_CONFIG has too many entries");
		return -1;
	}
	env->consumer = sw_bus_consumer_new(env->base, env->cfg->kafka_bootstrap, group, topics,
					    extra, SCHED_MAX_BATCH, on_batch, env, errstr, errlen);
	if (env->consumer == NULL)
		return -1;
	sw_bus_consumer_set_error_cb(env->consumer, sw_svcbus_consumer_error, env->svc);
	return 0;
}

size_t sched_consume_inflight(const struct sched_env *env)
{
	return env->nbatches;
}

void sched_consume_pause(struct sched_env *env)
{
	if (env->consumer != NULL && !env->paused) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
}

void sched_consume_close(struct sched_env *env)
{
	if (env->consumer != NULL && sw_bus_consumer_close(env->consumer) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
}

void sched_consume_free(struct sched_env *env)
{
	sw_bus_consumer_destroy(env->consumer);
	env->consumer = NULL;
}
