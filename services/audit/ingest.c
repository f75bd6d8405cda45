/*
 * Ingest: consumed batches into the log, durably, exactly once in effect.
 * See audit.h for the flow.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* The batches are shared with the writer while it runs; once it is
 * stopped (or before it starts) the loop is alone and takes no lock. */
static void q_lock(struct audit_env *env)
{
	if (env->writer.inited)
		sw_handoff_lock(&env->writer);
}

static void q_unlock(struct audit_env *env)
{
	if (env->writer.inited)
		sw_handoff_unlock(&env->writer);
}

/*
 * The writer thread: take every waiting batch, append its records, one
 * fdatasync for all of them (group commit), then wake the loop (settle).
 * It ends once stopping with nothing queued, so what was queued before
 * the stop is written. The log is touched by this thread only once
 * ingest has started.
 */
static void *writer_main(struct sw_handoff *h, void *arg)
{
	struct audit_env *env = arg;
	struct audit_batchq work;
	struct audit_batch *b;
	char err[256];
	size_t i;
	int rc;

	sw_handoff_lock(h);
	for (;;) {
		while (TAILQ_EMPTY(&env->wq))
			if (!sw_handoff_wait(h))
				goto out;
		TAILQ_INIT(&work);
		TAILQ_CONCAT(&work, &env->wq, wentry);
		sw_handoff_unlock(h);

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

		sw_handoff_lock(h);
		TAILQ_FOREACH(b, &work, wentry) {
			b->written = 1;
			if (rc != 0) {
				b->failed = 1;
				snprintf(b->error, sizeof(b->error), "%s", err);
			}
		}
		/* the batches themselves stay on env->inflight; just wake the loop */
		sw_handoff_wake(h);
	}
out:
	sw_handoff_unlock(h);
	return NULL;
}

/* Store the offsets of every leading batch that is done, in order. */
static void settle(void *arg)
{
	struct audit_env *env = arg;
	struct audit_batch *b;
	int stored = 0;
	size_t i;

	for (;;) {
		q_lock(env);
		b = TAILQ_FIRST(&env->inflight);
		if (b == NULL || !b->written || b->pending_dl > 0) {
			q_unlock(env);
			break;
		}
		TAILQ_REMOVE(&env->inflight, b, entry);
		env->ninflight--;
		q_unlock(env);

		if (b->failed) {
			/* nothing of this batch is committed; it comes back after restart */
			sw_service_fatal(env->svc, "audit log append failed", b->error);
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
	if (env->paused && !env->draining && env->ninflight < AUDIT_MAX_INFLIGHT / 2) {
		env->paused = 0;
		sw_bus_consumer_resume(env->consumer);
	}
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
		sw_service_fatal(env->svc, "dead-letter delivery failed", err);
		return;
	}
	q_lock(env);
	b->pending_dl--;
	q_unlock(env);
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
	snprintf(it->tenant, sizeof(it->tenant), "%s", h.tenant);
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
		sw_service_fatal(env->svc, "dedupe set", "out of memory");
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

	if (n == 0 || env->halted)
		return;
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->items = calloc(n, sizeof(*b->items))) == NULL) {
		free(b);
		sw_service_fatal(env->svc, "batch", "out of memory");
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
			sw_service_fatal(env->svc, "batch", "out of memory");
			return;
		}
		rc = classify(env, m, it, why, sizeof(why));
		if (rc == 1) {
			if ((it->payload = malloc(m->len ? m->len : 1)) == NULL) {
				sw_service_fatal(env->svc, "batch", "out of memory");
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
				sw_service_fatal(env->svc, "dead-letter produce failed", err);
				return;
			}
			env->deadlettered++;
			sw_metrics_counter_add(env->metrics, "sagewai_audit_deadlettered_total",
					       "Undecodable messages sent to sagewai.deadletter", 1);
			sw_log(SW_LOG_WARN, "dead-lettered undecodable message", "topic", m->topic,
			       "reason", why, NULL);
		}
	}
	q_lock(env);
	TAILQ_INSERT_TAIL(&env->inflight, b, entry);
	env->ninflight++;
	TAILQ_INSERT_TAIL(&env->wq, b, wentry);
	sw_handoff_signal(&env->writer, 0);
	q_unlock(env);

	if (env->ninflight >= AUDIT_MAX_INFLIGHT && !env->paused) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
}

static int mkdirs(const char *path)
{
	char buf[SW_CONFIG_STR + 16];
	char *p;

	if ((size_t)snprintf(buf, sizeof(buf), "%s", path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, 0700) == -1 && errno != EEXIST ? -1 : 0;
}

/*
 * A repaired torn tail is an error-level event of the trail itself:
 * audit.repaired is appended to the log (durable before anything else is,
 * so no crash can lose it) and produced to Kafka once ingest runs; the
 * copy consumed back is a duplicate by event id and dropped.
 */
static int record_repair(struct audit_env *env, size_t cut, uint64_t indexed, char *errstr,
			 size_t errlen)
{
	uint64_t first = sw_alog_next_seq(env->log);
	uint64_t last = first + (cut > 0 ? (cut - 1) / AUDIT_MIN_RECORD : 0);
	struct sw_event_header h;
	char s_cut[24], s_first[24], s_last[24], s_idx[24];
	json_t *fields;
	int rc;

	snprintf(s_cut, sizeof(s_cut), "%zu", cut);
	snprintf(s_first, sizeof(s_first), "%llu", (unsigned long long)first);
	snprintf(s_last, sizeof(s_last), "%llu", (unsigned long long)last);
	snprintf(s_idx, sizeof(s_idx), "%llu", (unsigned long long)indexed);
	sw_log(SW_LOG_ERROR, "audit log: torn tail cut at start", "log", env->log_dir,
	       "bytes_cut", s_cut, "first_seq", s_first, "last_seq", s_last, "indexed_seq", s_idx,
	       NULL);
	sw_event_header_init(&h, "audit.repaired", "sagewai-audit");
	fields = json_pack("{s:s, s:I, s:I, s:I, s:I}", "log_id", env->log_dir, "bytes_cut",
			   (json_int_t)cut, "first_seq", (json_int_t)first, "last_seq",
			   (json_int_t)last, "indexed_seq", (json_int_t)indexed);
	rc = fields == NULL ? -1
			    : sw_event_encode(env->reg, "audit.repaired", &h, fields,
					      &env->repair_msg, &env->repair_len, errstr, errlen);
	json_decref(fields);
	if (rc == -1) {
		if (fields == NULL)
			snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	return sw_alog_append(env->log, SW_ALOG_EVENT, AUDIT_TOPIC_REPAIRED, -1, -1, h.time_us,
			      env->repair_msg, env->repair_len, NULL, NULL, NULL, errstr,
			      errlen) == 0 &&
			       sw_alog_sync(env->log, errstr, errlen) == 0
		       ? 0
		       : -1;
}

int audit_log_open(struct audit_env *env, char *errstr, size_t errlen)
{
	char e[256];
	uint64_t indexed, last;
	size_t repaired = 0;

	if ((size_t)snprintf(env->log_dir, sizeof(env->log_dir), "%s/audit",
			     env->cfg->data_dir) >= sizeof(env->log_dir) ||
	    mkdirs(env->log_dir) == -1) {
		snprintf(errstr, errlen, "cannot create %.300s/audit: %s", env->cfg->data_dir,
			 strerror(errno));
		return -1;
	}
	if (audit_index_max_seq(env, &indexed, e, sizeof(e)) == -1) {
		snprintf(errstr, errlen, "audit index: %s", e);
		return -1;
	}
	if ((env->log = sw_alog_open(env->log_dir, AUDIT_SEGMENT_MAX, &repaired, errstr,
				     errlen)) == NULL)
		return -1;
	/* The index names only records made durable before it was written: a
	 * log that ends before the index's highest seq lost durable records
	 * (deleted, truncated, restored from an old copy). Never continue it:
	 * the next records would take the lost seqs. */
	last = sw_alog_next_seq(env->log) - 1;
	if (indexed > last) {
		snprintf(errstr, errlen,
			 "audit log %.300s ends at seq %llu but its index (PostgreSQL schema audit)"
			 " records seq %llu: the log was shortened; refusing to start%s",
			 env->log_dir, (unsigned long long)last, (unsigned long long)indexed,
			 repaired > 0 ? " (a torn tail was cut at open)" : "");
		return -1;
	}
	if (repaired > 0)
		return record_repair(env, repaired, indexed, errstr, errlen);
	return 0;
}

/* Tell Kafka about a repair recorded at open (audit.repaired). */
static void announce_repair(struct audit_env *env)
{
	char err[256];

	if (env->repair_msg == NULL)
		return;
	if (sw_bus_produce(env->producer, AUDIT_TOPIC_REPAIRED, env->log_dir, env->repair_msg,
			   env->repair_len, NULL, NULL, err, sizeof(err)) == -1)
		sw_log(SW_LOG_ERROR, "cannot produce audit.repaired (it is in the log)", "error",
		       err, NULL);
	free(env->repair_msg);
	env->repair_msg = NULL;
}

int audit_ingest_start(struct audit_env *env, char *errstr, size_t errlen)
{
	static const char *const topics[] = {"^sagewai\\..*", NULL};
	/* operator tuning: SAGEWAI_KAFKA_CONSUMER_CONFIG="name=value,name=value" */
	const char *extra[34] = {"topic.metadata.refresh.interval.ms=2000",
				 /* a restarted audit rejoins in seconds, not 45 s */
				 "session.timeout.ms=10000"};
	char tuning[SW_CONFIG_STR];

	TAILQ_INIT(&env->inflight);
	TAILQ_INIT(&env->wq);
	env->producer = sw_bus_producer_new(env->base, env->cfg->kafka_bootstrap, "sagewai-audit",
					    NULL, audit_ingest_delivery, env, errstr, errlen);
	if (env->producer == NULL)
		return -1;
	if (sw_handoff_start(&env->writer, env->base, 1, writer_main, settle, env, errstr,
			     errlen) == -1)
		return -1;
	env->group = env->cfg->group_id[0] ? env->cfg->group_id : "sagewai-audit";
	if (sw_config_list(sw_service_environ(env->svc), "SAGEWAI_KAFKA_CONSUMER_CONFIG", extra,
			   2, sizeof(extra) / sizeof(extra[0]), tuning, sizeof(tuning), errstr,
			   errlen) == -1)
		return -1;
	env->consumer = sw_bus_consumer_new(env->base, env->cfg->kafka_bootstrap, env->group,
					    topics, extra, AUDIT_MAX_BATCH, audit_ingest_batch,
					    env, errstr, errlen);
	if (env->consumer == NULL)
		return -1;
	announce_repair(env);
	return 0;
}

/* The writer writes what was queued before it ends; settle what it wrote,
 * then leave the group committing it and deliver what is due. */
void audit_ingest_stop(struct audit_env *env)
{
	sw_handoff_stop(&env->writer, -1);
	if (env->log != NULL)
		settle(env);
	if (env->consumer != NULL && sw_bus_consumer_close(env->consumer) == -1)
		sw_log(SW_LOG_WARN, "consumer close failed", NULL);
	if (env->producer != NULL)
		sw_bus_producer_flush(env->producer, 5000);
	sw_bus_consumer_destroy(env->consumer);
	sw_bus_producer_destroy(env->producer);
	env->consumer = NULL;
	env->producer = NULL;
}

void audit_ingest_drain(struct audit_env *env)
{
	env->draining = 1;
	if (!env->paused && env->consumer != NULL) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
}

int audit_ingest_idle(const struct audit_env *env)
{
	return env->ninflight == 0;
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
