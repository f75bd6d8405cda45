/*
 * executor.c: the executor itself, its flow control and what it tells the
 * service (see sw_executor.h).
 */
#include <stdlib.h>
#include <string.h>

#include "executor_int.h"

#define EXEC_REPORT_FIELDS 16

void exec_report(struct sw_executor *ex, enum sw_executor_report_kind kind,
		 enum sw_log_level level, const char *msg, struct sw_executor_job *j,
		 const char *const *kv)
{
	static const char *const none[] = {NULL};
	struct sw_executor_report r = {kind, level, msg, kv != NULL ? kv : none, j};

	ex->ops.report(ex->cfg.arg, &r);
}

void exec_report_job(struct sw_executor *ex, enum sw_executor_report_kind kind,
		     enum sw_log_level level, const char *msg, struct sw_executor_job *j,
		     const char *const *kv)
{
	const char *f[EXEC_REPORT_FIELDS + 1] = {"run_id", j->dh.run_id, "step_id", j->dh.step_id};
	size_t n = 4;

	for (; kv != NULL && kv[0] != NULL && n + 2 <= EXEC_REPORT_FIELDS; kv += 2) {
		f[n++] = kv[0];
		f[n++] = kv[1];
	}
	f[n] = NULL;
	exec_report(ex, kind, level, msg, j, f);
}

void exec_fatal(struct sw_executor *ex, const char *what, const char *why)
{
	ex->halted = 1;
	ex->ops.fatal(ex->cfg.arg, what, why);
}

static void settle_cb(evutil_socket_t fd, short what, void *arg);

static void drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sw_executor *ex = arg;

	(void)fd;
	(void)what;
	exec_report(ex, SW_EXECUTOR_DRAIN_TIMEOUT, SW_LOG_WARN,
		    "steps still running at shutdown; they will be redelivered", NULL, NULL);
	event_base_loopbreak(ex->cfg.base);
}

int sw_executor_instance_ok(const char *id)
{
	size_t n = strlen(id);

	return n <= SW_EXECUTOR_INSTANCE_MAX && strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
							   "abcdefghijklmnopqrstuvwxyz"
							   "0123456789._-") == n;
}

struct sw_executor *sw_executor_new(const struct sw_executor_config *cfg, char *errstr,
				    size_t errlen)
{
	static const char *const status_metric[4] = {"succeeded", "failed", "timed_out",
						     "cancelled"};
	static const char *const fence_metric[EXEC_NFENCES] = {"expired", "cancelled",
							       "finished", "superseded"};
	const struct sw_executor_ops *o = cfg != NULL ? cfg->ops : NULL;
	struct sw_executor *ex;
	size_t i;

	if (cfg == NULL || cfg->base == NULL || cfg->reg == NULL || o == NULL ||
	    o->wants == NULL || o->job_new == NULL || o->begin == NULL || o->start == NULL ||
	    o->job_free == NULL || o->report == NULL || o->fatal == NULL || cfg->concurrency < 1 ||
	    cfg->bus_max == 0 || cfg->started_after_ms < 0) {
		snprintf(errstr, errlen,
			 "executor: missing base, registry, callback, "
			 "concurrency or bus_max, or a negative started_after_ms");
		return NULL;
	}
	if (cfg->producer == NULL || strlen(cfg->producer) >= sizeof(ex->producer) ||
	    cfg->executor == NULL || strlen(cfg->executor) >= sizeof(ex->executor) ||
	    cfg->metrics_prefix == NULL || strlen(cfg->metrics_prefix) > 64) {
		snprintf(errstr, errlen, "executor: producer, executor or metrics prefix "
					 "missing or too long");
		return NULL;
	}
	if (cfg->instance_id != NULL && !sw_executor_instance_ok(cfg->instance_id)) {
		snprintf(errstr, errlen,
			 "executor: instance id '%.64s' is not 1 to %d of A-Z a-z 0-9 . _ -",
			 cfg->instance_id, SW_EXECUTOR_INSTANCE_MAX);
		return NULL;
	}
	if ((ex = calloc(1, sizeof(*ex))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	ex->cfg = *cfg;
	ex->ops = *o;
	snprintf(ex->producer, sizeof(ex->producer), "%s", cfg->producer);
	snprintf(ex->executor, sizeof(ex->executor), "%s", cfg->executor);
	snprintf(ex->instance_id, sizeof(ex->instance_id), "%s",
		 cfg->instance_id != NULL ? cfg->instance_id : "");
	ex->cfg.producer = ex->producer;
	ex->cfg.executor = ex->executor;
	ex->cfg.instance_id = ex->instance_id;
	ex->cfg.metrics_prefix = NULL;
	ex->cfg.ops = &ex->ops;
	snprintf(ex->m_running, sizeof(ex->m_running), "%s_steps_running", cfg->metrics_prefix);
	snprintf(ex->m_inflight, sizeof(ex->m_inflight), "%s_messages_inflight",
		 cfg->metrics_prefix);
	snprintf(ex->m_deadlettered, sizeof(ex->m_deadlettered), "%s_deadlettered_total",
		 cfg->metrics_prefix);
	snprintf(ex->m_republished, sizeof(ex->m_republished), "%s_republished_total",
		 cfg->metrics_prefix);
	snprintf(ex->m_pure, sizeof(ex->m_pure), "%s_pure_steps_total", cfg->metrics_prefix);
	for (i = 0; i < 4; i++)
		snprintf(ex->m_status[i], sizeof(ex->m_status[i]), "%s_steps_%s_total",
			 cfg->metrics_prefix, status_metric[i]);
	for (i = 0; i < EXEC_NFENCES; i++)
		snprintf(ex->m_fenced[i], sizeof(ex->m_fenced[i]), "%s_fenced_%s_total",
			 cfg->metrics_prefix, fence_metric[i]);
	LIST_INIT(&ex->parts);
	TAILQ_INIT(&ex->jobs);
	TAILQ_INIT(&ex->waitq);
	ex->settle_ev = event_new(cfg->base, -1, 0, settle_cb, ex);
	ex->drain_timer = evtimer_new(cfg->base, drain_timeout, ex);
	if (ex->settle_ev == NULL || ex->drain_timer == NULL) {
		snprintf(errstr, errlen, "event_new failed");
		sw_executor_destroy(ex);
		return NULL;
	}
	return ex;
}

static void bus_error(int fatal, const char *reason, void *opaque)
{
	struct sw_executor *ex = opaque;
	const char *kv[] = {"error", reason, NULL};

	if (fatal)
		exec_fatal(ex, "kafka client failed", reason);
	else
		exec_report(ex, SW_EXECUTOR_WARNING, SW_LOG_WARN, "kafka", NULL, kv);
}

int sw_executor_connect(struct sw_executor *ex, const char *bootstrap, const char *group,
			const char *const *topics, const char *const *pextra,
			const char *const *cextra, char *errstr, size_t errlen)
{
	char session[64], heartbeat[64], instance[sizeof(ex->instance_id) + 32];
	const char **extra;
	size_t n = 0, i;

	if (ex->bus_producer != NULL || ex->consumer != NULL) {
		snprintf(errstr, errlen, "executor: already connected");
		return -1;
	}
	if (topics == NULL || topics[0] == NULL ||
	    strlen(topics[0]) >= sizeof(ex->dispatch_topic)) {
		snprintf(errstr, errlen, "executor: no dispatch topic");
		return -1;
	}
	snprintf(ex->dispatch_topic, sizeof(ex->dispatch_topic), "%s", topics[0]);
	/* our membership first, the service's properties after (they win) */
	for (i = 0; cextra != NULL && cextra[i] != NULL; i++)
		;
	if ((extra = calloc(i + 4, sizeof(*extra))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	snprintf(session, sizeof(session), "session.timeout.ms=%d",
		 SW_EXECUTOR_SESSION_TIMEOUT_MS);
	snprintf(heartbeat, sizeof(heartbeat), "heartbeat.interval.ms=%d",
		 SW_EXECUTOR_HEARTBEAT_MS);
	extra[n++] = session;
	extra[n++] = heartbeat;
	if (ex->instance_id[0] != '\0') {
		snprintf(instance, sizeof(instance), "group.instance.id=%s", ex->instance_id);
		extra[n++] = instance;
	}
	for (i = 0; cextra != NULL && cextra[i] != NULL; i++)
		extra[n++] = cextra[i];
	extra[n] = NULL;
	ex->bus_producer = sw_bus_producer_new(ex->cfg.base, bootstrap, ex->producer, pextra,
					       sw_executor_delivery, ex, errstr, errlen);
	if (ex->bus_producer == NULL) {
		free(extra);
		return -1;
	}
	sw_bus_producer_set_error_cb(ex->bus_producer, bus_error, ex);
	sw_bus_producer_gather(ex->bus_producer, !ex->cfg.produce_at_once);
	/* a batch never exceeds what may run at once */
	ex->consumer = sw_bus_consumer_new(ex->cfg.base, bootstrap, group, topics, extra,
					   (size_t)ex->cfg.concurrency, sw_executor_consume, ex,
					   errstr, errlen);
	free(extra);
	if (ex->consumer == NULL)
		return -1; /* the producer goes with the executor */
	sw_bus_consumer_set_error_cb(ex->consumer, bus_error, ex);
	return 0;
}

int sw_executor_close(struct sw_executor *ex, int timeout_ms)
{
	/* deliveries still due mark their messages done; store those
	 * offsets and let close commit them */
	if (ex->bus_producer != NULL)
		sw_bus_producer_flush(ex->bus_producer, timeout_ms);
	settle_cb(-1, 0, ex);
	if (ex->consumer != NULL && sw_bus_consumer_close(ex->consumer) == -1)
		return -1;
	return 0;
}

void sw_executor_destroy(struct sw_executor *ex)
{
	struct sw_bus_consumer *c;
	struct sw_bus_producer *p;
	struct sw_executor_job *j;

	if (ex == NULL)
		return;
	/* the producer goes before the jobs: its delivery reports point at
	 * them */
	c = ex->consumer;
	p = ex->bus_producer;
	ex->consumer = NULL;
	ex->bus_producer = NULL;
	if (c != NULL)
		sw_bus_consumer_destroy(c);
	if (p != NULL)
		sw_bus_producer_destroy(p);
	while ((j = TAILQ_FIRST(&ex->jobs)) != NULL) {
		TAILQ_REMOVE(&ex->jobs, j, entry);
		exec_job_free(j);
	}
	exec_offsets_free(ex);
	free(ex->saveq);
	if (ex->settle_ev != NULL)
		event_free(ex->settle_ev);
	if (ex->drain_timer != NULL)
		event_free(ex->drain_timer);
	free(ex);
}

/* On each loop turn after a message is done: each partition's leading
 * done messages are dropped and the last one's offset stored; one commit
 * follows. */
static void settle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_executor *ex = arg;
	struct sw_executor_offset *o;
	struct exec_part *p;
	int64_t last;
	int stored = 0;

	(void)fd;
	(void)what;
	LIST_FOREACH(p, &ex->parts, entry) {
		last = -1;
		while ((o = TAILQ_FIRST(&p->offsets)) != NULL && o->done) {
			last = o->offset;
			TAILQ_REMOVE(&p->offsets, o, entry);
			free(o);
			ex->noffsets--;
		}
		if (last < 0)
			continue;
		p->settled = last;
		/* a revoked partition refuses the store; its next owner redoes
		 * the messages, and the results table makes that harmless */
		if (ex->consumer != NULL &&
		    sw_bus_consumer_store_at(ex->consumer, p->topic, p->partition, last) == 0)
			stored = 1;
	}
	if (stored)
		sw_bus_consumer_commit(ex->consumer);
	exec_flow(ex);
}

void sw_executor_settle(struct sw_executor *ex)
{
	settle_cb(-1, 0, ex);
}

void exec_flow(struct sw_executor *ex)
{
	size_t line = 2 * (size_t)ex->cfg.concurrency;
	size_t bytes = ex->cfg.line_bytes ? ex->cfg.line_bytes : EXEC_LINE_BYTES;

	sw_metrics_gauge_set(ex->cfg.metrics, ex->m_running, "Steps executing now", ex->running);
	sw_metrics_gauge_set(ex->cfg.metrics, ex->m_inflight,
			     "Messages consumed and not yet committed", (double)ex->noffsets);
	if (ex->consumer == NULL)
		return;
	if (ex->draining) {
		if (ex->njobs == 0 && ex->noffsets == 0)
			event_base_loopbreak(ex->cfg.base);
		return;
	}
	/* Up to concurrency steps run, as many again (at least line_min
	 * messages in all) wait in line; then stop reading. A pause is dear:
	 * librdkafka drops what it had fetched and fetches again up to
	 * fetch.wait.max.ms after the resume, so the line may be made long
	 * enough that only a real backlog pauses, not a burst of short steps;
	 * the bytes those messages hold bound it whatever its length. */
	if (line < ex->cfg.line_min)
		line = ex->cfg.line_min;
	/* The line counts messages whose work is not done. Messages already
	 * done but not yet committable (behind a long step in their
	 * partition: offsets commit in order) do not stop the reading, or one
	 * step of hours would stall every other; they are bounded apart
	 * (EXEC_SETTLE_MAX), for memory. */
	if (!ex->paused && (ex->nundone >= line || ex->nundone_bytes >= bytes ||
			    ex->noffsets >= EXEC_SETTLE_MAX)) {
		ex->paused = 1;
		sw_bus_consumer_pause(ex->consumer);
	} else if (ex->paused && ex->nundone < line / 2 && ex->nundone_bytes < bytes / 2 &&
		   ex->noffsets < EXEC_SETTLE_MAX / 2) {
		ex->paused = 0;
		sw_bus_consumer_resume(ex->consumer);
	}
}

void sw_executor_halt(struct sw_executor *ex)
{
	ex->halted = 1;
}

void sw_executor_shutdown(struct sw_executor *ex, int grace_s)
{
	struct timeval tv = {grace_s, 0};

	if (ex->draining) {
		event_base_loopbreak(ex->cfg.base);
		return;
	}
	ex->draining = 1;
	if (!ex->paused && ex->consumer != NULL) {
		ex->paused = 1;
		sw_bus_consumer_pause(ex->consumer);
	}
	evtimer_add(ex->drain_timer, &tv);
	exec_flow(ex);
}

int sw_executor_draining(const struct sw_executor *ex)
{
	return ex->draining;
}

size_t sw_executor_inflight(const struct sw_executor *ex)
{
	return ex->noffsets;
}

int sw_executor_paused(const struct sw_executor *ex)
{
	return ex->paused;
}

size_t sw_executor_njobs(const struct sw_executor *ex)
{
	return ex->njobs;
}

int sw_executor_running(const struct sw_executor *ex)
{
	return ex->running;
}

int sw_executor_outq(const struct sw_executor *ex)
{
	return ex->bus_producer != NULL ? sw_bus_producer_outq(ex->bus_producer) : 0;
}

int64_t sw_executor_settled(const struct sw_executor *ex, const char *topic, int32_t partition)
{
	const struct exec_part *p;

	LIST_FOREACH(p, &ex->parts, entry)
		if (p->partition == partition && strcmp(p->topic, topic) == 0)
			return p->settled;
	return -1;
}

void sw_executor_emit(struct sw_executor *ex, const char *topic, const char *type,
		      const struct sw_event_header *like, json_t *fields)
{
	struct sw_event_header h;
	char err[256];
	void *buf = NULL;
	size_t len;

	sw_event_header_init(&h, type, ex->producer);
	memcpy(h.tenant, like->tenant, sizeof(h.tenant));
	memcpy(h.run_id, like->run_id, sizeof(h.run_id));
	memcpy(h.step_id, like->step_id, sizeof(h.step_id));
	memcpy(h.trace_id, like->trace_id, sizeof(h.trace_id));
	if (fields == NULL ||
	    sw_event_encode(ex->cfg.reg, type, &h, fields, &buf, &len, err, sizeof(err)) == -1) {
		const char *kv[] = {"type", type, "error", fields ? err : "no memory", NULL};

		exec_report(ex, SW_EXECUTOR_WARNING, SW_LOG_WARN, "cannot encode an event", NULL,
			    kv);
	} else if (ex->bus_producer == NULL ||
		   sw_bus_produce(ex->bus_producer, topic, h.run_id, buf, len, NULL, NULL, err,
				  sizeof(err)) == -1) {
		const char *kv[] = {"type", type, "error",
				    ex->bus_producer ? err : "no producer", NULL};

		exec_report(ex, SW_EXECUTOR_WARNING, SW_LOG_WARN, "cannot produce an event", NULL,
			    kv);
	}
	json_decref(fields);
	free(buf);
}
