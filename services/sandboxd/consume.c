/*
 * consume.c: messages in, offsets out (the worker's discipline).
 *
 * Every consumed message gets a struct sbd_offset in the queue of its
 * partition, in offset order. It is marked done once its effect is
 * durable: at once for an event that is not for us, on the dead-letter's
 * delivery report for garbage, on the step.finished delivery report (after
 * the results row) for a dispatch. On the next loop turn each partition's
 * leading run of done messages is dropped and the last one's offset stored;
 * one commit follows. Steps finish out of order; offsets never skip one
 * that is not done.
 */
#include <stdlib.h>
#include <string.h>

#include "sandboxd.h"

static struct sbd_part *part_get(struct sbd_env *env, const char *topic, int32_t partition)
{
	struct sbd_part *p;

	LIST_FOREACH(p, &env->parts, entry)
	if (p->partition == partition && strcmp(p->topic, topic) == 0)
		return p;
	if (strlen(topic) >= sizeof(p->topic) || (p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	snprintf(p->topic, sizeof(p->topic), "%s", topic);
	p->partition = partition;
	TAILQ_INIT(&p->offsets);
	LIST_INSERT_HEAD(&env->parts, p, entry);
	return p;
}

static struct sbd_offset *offset_track(struct sbd_env *env, const struct sw_bus_msg *m)
{
	struct sbd_part *p = part_get(env, m->topic, m->partition);
	struct sbd_offset *o;

	if (p == NULL || (o = calloc(1, sizeof(*o))) == NULL)
		return NULL;
	o->tag = SBD_TAG_OFFSET;
	o->part = p;
	o->offset = m->offset;
	TAILQ_INSERT_TAIL(&p->offsets, o, entry);
	env->noffsets++;
	return o;
}

void sbd_offset_done(struct sbd_env *env, struct sbd_offset *o)
{
	o->done = 1;
	event_active(env->settle_ev, 0, 0);
}

static void settle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_env *env = arg;
	struct sbd_part *p, *next;
	struct sbd_offset *o;
	int64_t last;
	int stored = 0;

	(void)fd;
	(void)what;
	for (p = LIST_FIRST(&env->parts); p != NULL; p = next) {
		next = LIST_NEXT(p, entry);
		last = -1;
		while ((o = TAILQ_FIRST(&p->offsets)) != NULL && o->done) {
			last = o->offset;
			TAILQ_REMOVE(&p->offsets, o, entry);
			free(o);
			env->noffsets--;
		}
		/* a revoked partition refuses the store; its next owner redoes
		 * the messages, and the results table makes that harmless */
		if (last >= 0 && env->consumer != NULL &&
		    sw_bus_consumer_store_at(env->consumer, p->topic, p->partition, last) == 0)
			stored = 1;
		if (TAILQ_EMPTY(&p->offsets)) {
			LIST_REMOVE(p, entry);
			free(p);
		}
	}
	if (stored)
		sw_bus_consumer_commit(env->consumer);
	sbd_flow(env);
}

void sbd_consume_settle(struct sbd_env *env)
{
	if (env->settle_ev != NULL)
		settle_cb(-1, 0, env);
}

void sbd_flow(struct sbd_env *env)
{
	size_t cap = (size_t)env->concurrency;

	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_steps_running", "Steps executing now",
			     env->running);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_messages_inflight",
			     "Messages consumed and not yet committed", (double)env->noffsets);
	if (env->consumer == NULL)
		return;
	if (env->draining) {
		if (env->njobs == 0 && env->noffsets == 0)
			event_base_loopbreak(env->base);
		return;
	}
	/* up to cap steps run, as many again wait in line; then stop reading */
	if (!env->paused && env->noffsets >= 2 * cap) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	} else if (env->paused && env->noffsets < cap) {
		env->paused = 0;
		sw_bus_consumer_resume(env->consumer);
	}
}

void sbd_job_release(struct sbd_job *j)
{
	struct sbd_env *env = j->env;
	size_t i;

	sbd_offset_done(env, j->off);
	for (i = 0; i < j->ndups; i++)
		sbd_offset_done(env, j->dups[i]);
	TAILQ_REMOVE(&env->jobs, j, entry);
	env->njobs--;
	sbd_exec_release(j);
	json_decref(j->spec);
	free(j->spec_text);
	free(j->finished);
	free(j->dups);
	free(j);
}

/* Dead-letter m; its offset is done once the dead letter is delivered. */
static void deadletter(struct sbd_env *env, const struct sw_bus_msg *m, struct sbd_offset *o,
		       const char *why)
{
	char err[256];

	if (sw_bus_deadletter(env->producer, m, why, o, err, sizeof(err)) == -1) {
		sbd_fatal(env, "dead-letter produce failed", err);
		return;
	}
	env->deadlettered++;
	sw_metrics_counter_add(env->metrics, "sagewai_sandboxd_deadlettered_total",
			       "Messages sent to sagewai.deadletter", 1);
	sw_log(SW_LOG_WARN, "dead-lettered a message", "topic", m->topic, "reason", why, NULL);
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

static void on_dispatch(struct sbd_env *env, const struct sw_bus_msg *m,
			struct sbd_offset *o, const struct sw_event_header *h)
{
	struct sbd_job *j, *dup;
	struct sbd_offset **dups;
	char why[256];
	uint8_t id[16];
	json_t *ev, *v;
	char mode[32];

	if ((ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) == NULL) {
		deadletter(env, m, o, why);
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
	/* a copy of a dispatch still in flight waits for the original */
	TAILQ_FOREACH(dup, &env->jobs, entry) {
		if (strcmp(dup->dh.event_id, h->event_id) != 0)
			continue;
		dups = realloc(dup->dups, (dup->ndups + 1) * sizeof(*dups));
		if (dups == NULL) {
			json_decref(ev);
			sbd_fatal(env, "dispatch", "out of memory");
			return;
		}
		dups[dup->ndups++] = o;
		dup->dups = dups;
		json_decref(ev);
		sw_log(SW_LOG_INFO, "duplicate dispatch joins the one in flight", "run_id",
		       h->run_id, "step_id", h->step_id, NULL);
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		json_decref(ev);
		sbd_fatal(env, "dispatch", "out of memory");
		return;
	}
	j->tag = SBD_TAG_JOB;
	j->env = env;
	j->off = o;
	j->dh = *h;
	j->t0_ns = sw_mono_ns();
	if (field_str(ev, "step", j->step, sizeof(j->step)) == -1 ||
	    field_str(ev, "mode", mode, sizeof(mode)) == -1 ||
	    !json_is_string(json_object_get(ev, "spec"))) {
		free(j);
		snprintf(why, sizeof(why), "step.dispatched: bad step, mode or spec");
		goto bad;
	}
	if (strcmp(mode, "sandboxed") != 0) {
		/* in_process is the worker's; the identity-bearing modes are
		 * not served by this sandboxd yet (docs/SANDBOX.md) */
		free(j);
		json_decref(ev);
		env->ignored++;
		sbd_offset_done(env, o);
		return;
	}
	j->attempt = (int)json_integer_value(json_object_get(ev, "attempt"));
	v = json_object_get(ev, "timeout_ms");
	j->timeout_ms =
	    json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
	j->spec_text = strdup(json_string_value(json_object_get(ev, "spec")));
	json_decref(ev);
	if (j->spec_text == NULL) {
		free(j);
		sbd_fatal(env, "dispatch", "out of memory");
		return;
	}
	j->state = JOB_LOOKUP;
	TAILQ_INSERT_TAIL(&env->jobs, j, entry);
	env->njobs++;
	sbd_results_lookup(j);
	return;
bad:
	json_decref(ev);
	deadletter(env, m, o, why);
}

void sbd_consume_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sbd_env *env = opaque;
	struct sw_event_header h;
	struct sbd_offset *o;
	char why[256];
	size_t i;

	for (i = 0; i < n && env->exit_code == 0 && !env->draining; i++) {
		const struct sw_bus_msg *m = &msgs[i];

		if ((o = offset_track(env, m)) == NULL) {
			sbd_fatal(env, "consume", "out of memory");
			return;
		}
		if (m->value == NULL || m->len == 0) {
			deadletter(env, m, o, "empty message");
			continue;
		}
		if (sw_event_decode_header(env->reg, m->value, m->len, &h, why, sizeof(why)) ==
		    -1) {
			deadletter(env, m, o, why);
			continue;
		}
		if (strcmp(h.type, "step.dispatched") == 0 &&
		    strcmp(m->topic, SW_TOPIC_STEPS) == 0) {
			on_dispatch(env, m, o, &h);
			continue;
		}
		if (strcmp(h.type, "run.cancel_requested") == 0 && h.run_id[0] != '\0')
			sbd_exec_cancel(env, h.run_id);
		else
			env->ignored++;
		sbd_offset_done(env, o);
	}
	sbd_flow(env);
}

void sbd_consume_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct sbd_env *env = opaque;
	enum sbd_tag *tag = msg_opaque;

	if (tag == NULL) {
		/* step.started: informative only, its loss delays nothing */
		if (err != NULL)
			sw_log(SW_LOG_WARN, "step.started not delivered", "error", err, NULL);
		return;
	}
	if (err != NULL) {
		/* librdkafka gave up: nothing may be committed past this
		 * message, so stop; it is redelivered after a restart */
		sbd_fatal(env, "delivery failed", err);
		return;
	}
	if (*tag == SBD_TAG_OFFSET)
		sbd_offset_done(env, msg_opaque);
	else if (*tag == SBD_TAG_JOB)
		sbd_job_release(msg_opaque);
}

int sbd_consume_init(struct sbd_env *env, char *errstr, size_t errlen)
{
	LIST_INIT(&env->parts);
	TAILQ_INIT(&env->jobs);
	TAILQ_INIT(&env->waitq);
	env->settle_ev = event_new(env->base, -1, 0, settle_cb, env);
	if (env->settle_ev == NULL) {
		snprintf(errstr, errlen, "event_new failed");
		return -1;
	}
	return 0;
}

/* Drop every job and tracked offset without storing anything: what is
 * not committed is redelivered. Idempotent. */
void sbd_consume_stop(struct sbd_env *env)
{
	struct sbd_part *p;
	struct sbd_offset *o;
	struct sbd_job *j;

	if (env->settle_ev == NULL)
		return;
	/* settle what is done first, so a clean stop commits it */
	settle_cb(-1, 0, env);
	while ((j = TAILQ_FIRST(&env->jobs)) != NULL) {
		TAILQ_REMOVE(&env->jobs, j, entry);
		sbd_exec_release(j);
		json_decref(j->spec);
		free(j->spec_text);
		free(j->finished);
		free(j->dups);
		free(j);
	}
	env->njobs = 0;
	TAILQ_INIT(&env->waitq);
	while ((p = LIST_FIRST(&env->parts)) != NULL) {
		while ((o = TAILQ_FIRST(&p->offsets)) != NULL) {
			TAILQ_REMOVE(&p->offsets, o, entry);
			free(o);
		}
		LIST_REMOVE(p, entry);
		free(p);
	}
	env->noffsets = 0;
	event_free(env->settle_ev);
	env->settle_ev = NULL;
}
