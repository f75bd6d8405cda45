/*
 * consume.c: messages in, offsets out.
 *
 * Every consumed message gets a struct sw_executor_offset in the queue of
 * its partition, in offset order, and is marked done once its effect is
 * durable; settle_cb (executor.c) stores and commits. A step.dispatched
 * on sagewai.steps becomes a job (or joins the one in flight with its event
 * id) and the newest attempt of its step; run.cancel_requested cancels;
 * run.finished ends the run's steps (finish.c); anything else is done at once;
 * garbage is dead-lettered and done on the dead letter's delivery report.
 */
#include <stdlib.h>
#include <string.h>

#include "executor_int.h"

static struct exec_part *part_get(struct sw_executor *ex, const char *topic, int32_t partition)
{
	struct exec_part *p;

	LIST_FOREACH(p, &ex->parts, entry) {
		if (p->partition == partition && strcmp(p->topic, topic) == 0)
			return p;
	}
	if (strlen(topic) >= sizeof(p->topic) || (p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	snprintf(p->topic, sizeof(p->topic), "%s", topic);
	p->partition = partition;
	p->settled = -1;
	TAILQ_INIT(&p->offsets);
	LIST_INSERT_HEAD(&ex->parts, p, entry);
	return p;
}

static struct sw_executor_offset *offset_track(struct sw_executor *ex, const struct sw_bus_msg *m)
{
	struct exec_part *p = part_get(ex, m->topic, m->partition);
	struct sw_executor_offset *o;

	if (p == NULL || (o = calloc(1, sizeof(*o))) == NULL)
		return NULL;
	o->tag = EXEC_TAG_OFFSET;
	o->part = p;
	o->offset = m->offset;
	o->bytes = m->key_len + m->len;
	TAILQ_INSERT_TAIL(&p->offsets, o, entry);
	ex->noffsets++;
	ex->nundone++;
	ex->nundone_bytes += o->bytes;
	return o;
}

/* Done: stored and committed on the next loop turn. */
void exec_offset_done(struct sw_executor *ex, struct sw_executor_offset *o)
{
	if (!o->done) {
		if (ex->nundone > 0)
			ex->nundone--;
		ex->nundone_bytes -= ex->nundone_bytes < o->bytes ? ex->nundone_bytes : o->bytes;
	}
	o->done = 1;
	event_active(ex->settle_ev, 0, 0);
}

void exec_offsets_free(struct sw_executor *ex)
{
	struct sw_executor_offset *o;
	struct exec_part *p;

	while ((p = LIST_FIRST(&ex->parts)) != NULL) {
		while ((o = TAILQ_FIRST(&p->offsets)) != NULL) {
			TAILQ_REMOVE(&p->offsets, o, entry);
			free(o);
		}
		LIST_REMOVE(p, entry);
		free(p);
	}
	ex->noffsets = 0;
	ex->nundone = 0;
	ex->nundone_bytes = 0;
}

void exec_job_free(struct sw_executor_job *j)
{
	j->ex->ops.job_free(j->ex->cfg.arg, j);
	if (j->deadline_ev != NULL)
		event_free(j->deadline_ev);
	if (j->started_ev != NULL)
		event_free(j->started_ev);
	json_decref(j->spec);
	free(j->spec_text);
	free(j->identity);
	free(j->finished);
	free(j->dups);
	free(j);
}

/* step.finished is delivered (and a lazy row saved): the message and its
 * copies are done. */
void exec_job_release(struct sw_executor_job *j)
{
	struct sw_executor *ex = j->ex;
	size_t i;

	exec_offset_done(ex, j->off);
	for (i = 0; i < j->ndups; i++)
		exec_offset_done(ex, j->dups[i]);
	TAILQ_REMOVE(&ex->jobs, j, entry);
	ex->njobs--;
	exec_job_free(j);
}

/* Dead-letter m; its offset is done once the dead letter is delivered. */
static void deadletter(struct sw_executor *ex, const struct sw_bus_msg *m,
		       struct sw_executor_offset *o, const char *why)
{
	const char *kv[] = {"topic", m->topic, "reason", why, NULL};
	char err[256];

	if (ex->bus_producer == NULL) {
		exec_fatal(ex, "dead-letter produce failed", "no producer");
		return;
	}
	if (sw_bus_deadletter(ex->bus_producer, m, why, &o->tag, err, sizeof(err)) == -1) {
		exec_fatal(ex, "dead-letter produce failed", err);
		return;
	}
	sw_metrics_counter_add(ex->cfg.metrics, ex->m_deadlettered,
			       "Messages sent to sagewai.deadletter", 1);
	exec_report(ex, SW_EXECUTOR_DEADLETTERED, SW_LOG_WARN, "dead-lettered a message", NULL,
		    kv);
}

/* Copy a string field of a decoded event into buf; -1 when it is missing,
 * not a string or too long. */
static int field_str(json_t *ev, const char *name, char *buf, size_t len)
{
	json_t *v = json_object_get(ev, name);

	if (!json_is_string(v) || json_string_length(v) >= len)
		return -1;
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* A copy of a dispatch still in flight waits for the original: 1 when m
 * joined one (or the executor failed), 0 when there is none. */
static int join_dup(struct sw_executor *ex, struct sw_executor_offset *o,
		    const struct sw_event_header *h)
{
	struct sw_executor_offset **dups;
	struct sw_executor_job *dup;

	TAILQ_FOREACH(dup, &ex->jobs, entry) {
		if (strcmp(dup->dh.event_id, h->event_id) != 0)
			continue;
		dups = realloc(dup->dups, (dup->ndups + 1) * sizeof(*dups));
		if (dups == NULL) {
			exec_fatal(ex, "dispatch", "out of memory");
			return 1;
		}
		dups[dup->ndups++] = o;
		dup->dups = dups;
		exec_report_job(ex, SW_EXECUTOR_DUPLICATE, SW_LOG_INFO,
				"duplicate dispatch joins the one in flight", dup, NULL);
		return 1;
	}
	return 0;
}

static void on_dispatch(struct sw_executor *ex, const struct sw_bus_msg *m,
			struct sw_executor_offset *o, const struct sw_event_header *h)
{
	struct sw_executor_job *j = NULL;
	char why[256];
	uint8_t id[16];
	json_t *ev, *v;

	if ((ev = sw_event_decode(ex->cfg.reg, m->value, m->len, why, sizeof(why))) == NULL) {
		deadletter(ex, m, o, why);
		return;
	}
	if (sw_uuid_parse(h->event_id, id) == -1) {
		snprintf(why, sizeof(why), "step.dispatched: header.event_id is not a UUID");
		goto bad;
	}
	if (h->run_id[0] == '\0' || h->step_id[0] == '\0') {
		snprintf(why, sizeof(why), "step.dispatched without header.run_id/step_id");
		goto bad;
	}
	if (join_dup(ex, o, h))
		goto out;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		exec_fatal(ex, "dispatch", "out of memory");
		goto out;
	}
	j->tag = EXEC_TAG_JOB;
	j->ex = ex;
	j->off = o;
	j->dh = *h;
	j->t0_ns = sw_mono_ns();
	if (field_str(ev, "step", j->step, sizeof(j->step)) == -1 ||
	    field_str(ev, "mode", j->mode, sizeof(j->mode)) == -1 ||
	    !json_is_string(json_object_get(ev, "spec"))) {
		snprintf(why, sizeof(why), "step.dispatched: bad step, mode or spec");
		goto bad;
	}
	if (!ex->ops.wants(ex->cfg.arg, j->mode)) {
		exec_offset_done(ex, o);
		goto out;
	}
	j->attempt = (int)json_integer_value(json_object_get(ev, "attempt"));
	v = json_object_get(ev, "timeout_ms");
	j->timeout_ms =
	    json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
	/* the scheduler's deadline of the attempt runs from the dispatch */
	if (j->timeout_ms > 0 && h->time_us > 0 && j->timeout_ms < INT64_MAX / 2000)
		j->deadline_us = h->time_us + j->timeout_ms * 1000;
	/* identity-bearing steps: the keys pinned at submit (no values) */
	v = json_object_get(ev, "identity");
	if ((j->spec_text = strdup(json_string_value(json_object_get(ev, "spec")))) == NULL ||
	    (j->identity = strdup(json_is_string(v) ? json_string_value(v) : "")) == NULL ||
	    ex->ops.job_new(ex->cfg.arg, j) == -1) {
		free(j->spec_text);
		free(j->identity);
		exec_fatal(ex, "dispatch", "out of memory");
		goto out;
	}
	json_decref(ev);
	exec_attempt_seen(ex, j);
	j->phase = SW_EXECUTOR_LOOKUP;
	TAILQ_INSERT_TAIL(&ex->jobs, j, entry);
	ex->njobs++;
	exec_results_lookup(j);
	return;
bad:
	deadletter(ex, m, o, why);
out:
	free(j);
	json_decref(ev);
}

void sw_executor_consume(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sw_executor *ex = opaque;
	struct sw_executor_offset *o;
	struct sw_event_header h;
	char why[256];
	size_t i;

	for (i = 0; i < n && !ex->halted && !ex->draining; i++) {
		const struct sw_bus_msg *m = &msgs[i];

		if ((o = offset_track(ex, m)) == NULL) {
			exec_fatal(ex, "consume", "out of memory");
			return;
		}
		if (m->value == NULL || m->len == 0) {
			deadletter(ex, m, o, "empty message");
			continue;
		}
		if (sw_event_decode_header(ex->cfg.reg, m->value, m->len, &h, why, sizeof(why)) ==
		    -1) {
			deadletter(ex, m, o, why);
			continue;
		}
		if (strcmp(h.type, "step.dispatched") == 0 &&
		    strcmp(m->topic, ex->dispatch_topic) == 0) {
			on_dispatch(ex, m, o, &h);
			continue;
		}
		if (strcmp(h.type, "run.cancel_requested") == 0 && h.run_id[0] != '\0')
			sw_executor_cancel(ex, h.run_id);
		else if (strcmp(h.type, "run.finished") == 0 && h.run_id[0] != '\0')
			sw_executor_run_finished(ex, h.run_id);
		exec_offset_done(ex, o);
	}
	exec_flow(ex);
}

void sw_executor_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct sw_executor *ex = opaque;
	uint32_t *tag = msg_opaque;

	if (tag == NULL) {
		/* step.started and the like: informative only, a loss delays
		 * nothing */
		if (err != NULL) {
			const char *kv[] = {"error", err, NULL};

			exec_report(ex, SW_EXECUTOR_WARNING, SW_LOG_WARN,
				    "step.started not delivered", NULL, kv);
		}
		return;
	}
	if (err != NULL) {
		/* librdkafka gave up: nothing may be committed past this
		 * message, so stop; it is redelivered after a restart */
		exec_fatal(ex, "delivery failed", err);
		return;
	}
	if (*tag == EXEC_TAG_OFFSET)
		exec_offset_done(ex, (struct sw_executor_offset *)tag);
	else if (*tag == EXEC_TAG_JOB) {
		struct sw_executor_job *j = EXEC_JOB_OF_TAG(tag);

		if (j->row_pending)
			j->delivered = 1; /* released when its row is saved */
		else
			exec_job_release(j);
	}
}
