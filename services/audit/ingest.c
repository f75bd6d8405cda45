/*
 * Ingest: consumed batches into the log, durably, exactly once in effect.
 * See audit.h for the flow.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

static void batch_free(struct audit_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		free(b->items[i].topic);
		free(b->items[i].payload);
	}
	free(b->items);
	free(b);
}

/*
 * The writer thread: take every waiting batch, append its records, one
 * fdatasync for all of them (group commit), then tell the loop. The log
 * is touched by this thread only once ingest has started.
 */
static void *writer_main(void *arg)
{
	struct audit_env *env = arg;
	struct audit_batchq work;
	struct audit_batch *b;
	char err[256];
	size_t i;
	int rc;

	pthread_mutex_lock(&env->mu);
	for (;;) {
		while (TAILQ_EMPTY(&env->wq) && !env->stopping)
			pthread_cond_wait(&env->cv, &env->mu);
		if (TAILQ_EMPTY(&env->wq) && env->stopping)
			break;
		TAILQ_INIT(&work);
		TAILQ_CONCAT(&work, &env->wq, wentry);
		pthread_mutex_unlock(&env->mu);

		rc = 0;
		err[0] = '\0';
		TAILQ_FOREACH(b, &work, wentry) {
			for (i = 0; i < b->n && rc == 0; i++) {
				struct audit_item *it = &b->items[i];

				if (it->kind == 0)
					continue;
				rc = sw_alog_append(env->log, it->kind, it->topic, it->partition,
						    it->offset, it->time_us, it->payload, it->len,
						    &it->seq, &it->segment, &it->file_off, err,
						    sizeof(err));
			}
		}
		if (rc == 0)
			rc = sw_alog_sync(env->log, err, sizeof(err));

		pthread_mutex_lock(&env->mu);
		TAILQ_FOREACH(b, &work, wentry) {
			b->written = 1;
			if (rc != 0) {
				b->failed = 1;
				snprintf(b->error, sizeof(b->error), "%s", err);
			}
		}
		/* the batches themselves stay on env->inflight; just wake the loop */
		event_active(env->written_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&env->mu);
	return NULL;
}

/* Store the offsets of every leading batch that is done, in order. */
static void settle(struct audit_env *env)
{
	struct audit_batch *b;
	int stored = 0;
	size_t i;

	for (;;) {
		pthread_mutex_lock(&env->mu);
		b = TAILQ_FIRST(&env->inflight);
		if (b == NULL || !b->written || b->pending_dl > 0) {
			pthread_mutex_unlock(&env->mu);
			break;
		}
		TAILQ_REMOVE(&env->inflight, b, entry);
		env->ninflight--;
		pthread_mutex_unlock(&env->mu);

		if (b->failed) {
			/* nothing of this batch is committed; it comes back after restart */
			audit_fatal(env, "audit log append failed", b->error);
			batch_free(b);
			return;
		}
		for (i = 0; i < b->n; i++) {
			struct audit_item *it = &b->items[i];

			sw_bus_consumer_store_at(env->consumer, it->topic, it->partition,
						 it->offset);
			if (it->kind != 0) {
				env->appended++;
				sw_metrics_counter_add(env->metrics, "sagewai_audit_appended_total",
						       "Records made durable in the audit log", 1);
			}
		}
		audit_index_items(env, b->items, b->n);
		stored = 1;
		batch_free(b);
	}
	if (stored)
		sw_bus_consumer_commit(env->consumer);
	sw_metrics_gauge_set(env->metrics, "sagewai_audit_inflight_batches",
			     "Batches consumed but not yet committed", (double)env->ninflight);
	sw_metrics_gauge_set(env->metrics, "sagewai_audit_next_seq",
			     "Next audit log sequence number", (double)sw_alog_next_seq(env->log));
	if (env->paused && env->ninflight < AUDIT_MAX_INFLIGHT / 2) {
		env->paused = 0;
		sw_bus_consumer_resume(env->consumer);
	}
}

static void written_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	settle(arg);
}

void audit_ingest_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct audit_env *env = opaque;
	struct audit_batch *b = msg_opaque;

	if (b == NULL)
		return;
	if (err != NULL) {
		/* librdkafka gave up on the dead letter; nothing may be committed
		 * past it, so stop: the message is redelivered after restart. */
		audit_fatal(env, "dead-letter delivery failed", err);
		return;
	}
	pthread_mutex_lock(&env->mu);
	b->pending_dl--;
	pthread_mutex_unlock(&env->mu);
	settle(env);
}

/* Fill it for one consumed message; returns 1 when it is to be appended,
 * 0 when its offset is only to be stored, -1 when it must be dead-lettered
 * (reason in why). */
static int classify(struct audit_env *env, const struct sw_bus_msg *m, struct audit_item *it,
		    char *why, size_t whylen)
{
	struct sw_event_header h;
	int fresh;

	if (strcmp(m->topic, SW_TOPIC_IDENTITY_SEALED) == 0) {
		env->skipped++;
		sw_metrics_counter_add(env->metrics, "sagewai_audit_skipped_total",
				       "Messages of sagewai.identity.sealed, never stored", 1);
		return 0; /* sealed envelopes are never stored (DESIGN.md) */
	}
	if (m->value == NULL || m->len == 0) {
		if (strcmp(m->topic, SW_TOPIC_DEADLETTER) == 0)
			goto raw;
		snprintf(why, whylen, "empty message");
		return -1;
	}
	if (sw_event_decode_header(env->reg, m->value, m->len, &h, why, whylen) == -1) {
		if (strcmp(m->topic, SW_TOPIC_DEADLETTER) == 0)
			goto raw; /* never dead-letter the dead letters: keep them raw */
		return -1;
	}
	if (sw_uuid_parse(h.event_id, it->id) == -1) {
		snprintf(why, whylen, "header.event_id is not a UUID");
		return -1;
	}
	snprintf(it->run_id, sizeof(it->run_id), "%s", h.run_id);
	snprintf(it->type, sizeof(it->type), "%s", h.type);
	it->time_us = h.time_us;
	it->kind = SW_ALOG_EVENT;
	goto add;
raw:
	audit_raw_id(m->topic, strlen(m->topic), m->partition, m->offset, it->id);
	it->kind = SW_ALOG_RAW;
	it->time_us = m->timestamp_ms * 1000;
add:
	fresh = audit_idset_add(&env->seen, it->id);
	if (fresh == -1) {
		audit_fatal(env, "dedupe set", "out of memory");
		return 0;
	}
	if (fresh == 0) {
		env->duplicates++;
		sw_metrics_counter_add(env->metrics, "sagewai_audit_duplicates_total",
				       "Events dropped because their id is already in the log", 1);
		it->kind = 0;
		return 0;
	}
	return 1;
}

void audit_ingest_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct audit_env *env = opaque;
	struct audit_batch *b;
	char why[256], err[256];
	size_t i;

	if (n == 0 || env->exit_code != 0)
		return;
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->items = calloc(n, sizeof(*b->items))) == NULL) {
		free(b);
		audit_fatal(env, "batch", "out of memory");
		return;
	}
	b->n = n;
	for (i = 0; i < n; i++) {
		const struct sw_bus_msg *m = &msgs[i];
		struct audit_item *it = &b->items[i];
		int rc;

		it->topic = strdup(m->topic);
		it->partition = m->partition;
		it->offset = m->offset;
		if (it->topic == NULL) {
			audit_fatal(env, "batch", "out of memory");
			return;
		}
		rc = classify(env, m, it, why, sizeof(why));
		if (rc == 1) {
			if ((it->payload = malloc(m->len ? m->len : 1)) == NULL) {
				audit_fatal(env, "batch", "out of memory");
				return;
			}
			if (m->len)
				memcpy(it->payload, m->value, m->len);
			it->len = m->len;
		} else if (rc == -1) {
			it->kind = 0;
			b->pending_dl++;
			if (sw_bus_deadletter(env->producer, m, why, b, err, sizeof(err)) == -1) {
				b->pending_dl--;
				audit_fatal(env, "dead-letter produce failed", err);
				return;
			}
			env->deadlettered++;
			sw_metrics_counter_add(env->metrics, "sagewai_audit_deadlettered_total",
					       "Undecodable messages sent to sagewai.deadletter", 1);
			sw_log(SW_LOG_WARN, "dead-lettered undecodable message", "topic", m->topic,
			       "reason", why, NULL);
		}
	}
	pthread_mutex_lock(&env->mu);
	TAILQ_INSERT_TAIL(&env->inflight, b, entry);
	env->ninflight++;
	TAILQ_INSERT_TAIL(&env->wq, b, wentry);
	pthread_cond_signal(&env->cv);
	pthread_mutex_unlock(&env->mu);

	if (env->ninflight >= AUDIT_MAX_INFLIGHT && !env->paused) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
}

int audit_ingest_start(struct audit_env *env, char *errstr, size_t errlen)
{
	TAILQ_INIT(&env->inflight);
	TAILQ_INIT(&env->wq);
	pthread_mutex_init(&env->mu, NULL);
	pthread_cond_init(&env->cv, NULL);
	env->written_ev = event_new(env->base, -1, 0, written_cb, env);
	if (env->written_ev == NULL) {
		snprintf(errstr, errlen, "event_new failed");
		return -1;
	}
	if (pthread_create(&env->writer, NULL, writer_main, env) != 0) {
		snprintf(errstr, errlen, "cannot start writer thread: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void audit_ingest_stop(struct audit_env *env)
{
	pthread_mutex_lock(&env->mu);
	env->stopping = 1;
	pthread_cond_signal(&env->cv);
	pthread_mutex_unlock(&env->mu);
	pthread_join(env->writer, NULL);
	settle(env);
}

struct recover_ctx {
	struct audit_env *env;
	uint64_t records;
};

static int recover_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct recover_ctx *rc = opaque;
	struct sw_event_header h;
	uint8_t id[16];
	char err[128];

	rc->records++;
	if (rec->kind == SW_ALOG_EVENT) {
		if (sw_event_decode_header(rc->env->reg, rec->payload, rec->payload_len, &h, err,
					   sizeof(err)) == -1 ||
		    sw_uuid_parse(h.event_id, id) == -1)
			return 0; /* stored as an event, so it decoded once: a schema we
				     no longer carry; it cannot be a duplicate we see */
	} else if (rec->kind == SW_ALOG_RAW) {
		audit_raw_id(rec->topic, rec->topic_len, rec->partition, rec->offset, id);
	} else {
		return 0;
	}
	return audit_idset_add(&rc->env->seen, id) == -1 ? -1 : 0;
}

int audit_recover(struct audit_env *env, char *errstr, size_t errlen)
{
	struct recover_ctx rc = {.env = env};

	if (audit_idset_init(&env->seen, 1 << 16) == -1) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	if (sw_alog_scan(env->log_dir, 1, recover_rec, &rc, errstr, errlen) != 0)
		return -1;
	char nrec[24];

	snprintf(nrec, sizeof(nrec), "%llu", (unsigned long long)rc.records);
	sw_log(SW_LOG_INFO, "audit log recovered", "records", nrec, NULL);
	return audit_index_catch_up(env, errstr, errlen);
}
