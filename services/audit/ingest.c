/*
 * Ingest: consumed batches into the log, durably, exactly once in effect.
 * See audit.h for the flow.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "sw_svcbus.h"
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

/* Checkpoints a group made, to publish once it is durable. */
struct cp_list {
	struct sw_alog_checkpoint *v;
	size_t n, cap;
};

/* Writer thread: a checkpoint dated at_us if one is due (force: the
 * interval passed), noted in l. 0 or -1. */
static int group_cp(struct audit_env *env, int force, int64_t at_us, struct cp_list *l,
		    char *err, size_t errlen)
{
	struct sw_alog_checkpoint cp;
	int rc;

	if ((rc = audit_cp_maybe(env, force, at_us, &cp, err, errlen)) <= 0)
		return rc;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct sw_alog_checkpoint *nv = realloc(l->v, cap * sizeof(*nv));

		if (nv == NULL)
			return 0; /* in the log; the next one covers its records */
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = cp;
	return 0;
}

/* Writer thread: append the records of the group, a checkpoint after
 * every cp_records of them and one at the end when the interval passed,
 * then one sync. On failure the checkpoint state is as before (the log is
 * to be rolled back to its last sync) and l is emptied. 0, or -1 with
 * err. The checkpoints are dated at_us, the group's first attempt: a
 * retry after a rollback then writes the very bytes the failed attempt
 * may have left in the file, so a reader that saw those bytes before the
 * cut still reads one chain. */
static int write_group(struct audit_env *env, struct audit_batchq *work, int due, int64_t at_us,
		       struct cp_list *l, char *err, size_t errlen)
{
	struct sw_alog_cpstate saved = env->cps;
	struct audit_batch *b;
	uint8_t h[SW_ALOG_HASH];
	size_t i;

	l->n = 0;
	TAILQ_FOREACH(b, work, wentry) {
		for (i = 0; i < b->n; i++) {
			struct audit_item *it = &b->items[i];

			if (it->kind == 0)
				continue;
			if (sw_alog_append(env->log, it->kind, it->topic, it->partition, it->offset,
					   it->time_us, it->payload, it->len, &it->seq,
					   &it->segment, &it->file_off, err, errlen) != 0)
				goto fail;
			sw_alog_last_hash(env->log, h);
			sw_alog_cpstate_add(&env->cps, h);
			if (group_cp(env, 0, at_us, l, err, errlen) != 0)
				goto fail;
		}
	}
	if (group_cp(env, due, at_us, l, err, errlen) != 0 || sw_alog_sync(env->log, err, errlen) != 0)
		goto fail;
	return 0;
fail:
	env->cps = saved;
	l->n = 0;
	return -1;
}

/* Writer thread, under the lock: a group could not be written. Say so
 * (the loop logs it and /healthz tells), wait out the backoff, cut the
 * log back to its last sync. 0 to try again, -1 when stopping. */
static int write_failed(struct audit_env *env, const char *err, int *backoff_ms)
{
	struct sw_handoff *h = &env->writer;
	char rerr[256];

	for (;;) {
		if (!env->failing) {
			env->failing = 1;
			env->fail_since_us = sw_now_us();
		}
		env->fail_attempts++;
		snprintf(env->fail_reason, sizeof(env->fail_reason), "%s", err);
		sw_handoff_wake(h);
		/* the whole backoff: the checkpoint timer's signals wake us too */
		for (int64_t until = sw_mono_ms() + *backoff_ms, left = *backoff_ms; left > 0;
		     left = until - sw_mono_ms())
			if (!sw_handoff_wait_ms(h, (int)left))
				return -1;
		*backoff_ms = *backoff_ms * 2 > env->retry_max_ms ? (int)env->retry_max_ms
								  : *backoff_ms * 2;
		sw_handoff_unlock(h);
		rerr[0] = '\0';
		if (sw_alog_rollback(env->log, rerr, sizeof(rerr)) == 0) {
			sw_handoff_lock(h);
			return 0;
		}
		sw_handoff_lock(h);
		err = rerr;
	}
}

/*
 * The writer thread: take every waiting batch, append its records (and a
 * checkpoint when due), fdatasync once for all of them (group commit),
 * then wake the loop (settle). A group that cannot be written stays here,
 * retried with backoff after the log is cut back to its last sync, so the
 * batches behind it wait and nothing is committed. It ends once stopping
 * with nothing queued, so what was queued before the stop is written; a
 * stop while failing leaves the group unwritten (failed: not committed,
 * redelivered after restart). The log is touched by this thread only once
 * ingest has started.
 */
static void *writer_main(struct sw_handoff *h, void *arg)
{
	struct audit_env *env = arg;
	struct audit_batchq work;
	struct cp_list cps = {0};
	struct audit_batch *b;
	char err[256];
	int64_t at_us;
	int rc, due, backoff;

	sw_handoff_lock(h);
	for (;;) {
		while (TAILQ_EMPTY(&env->wq) && !env->cp_due)
			if (!sw_handoff_wait(h))
				goto out;
		TAILQ_INIT(&work);
		TAILQ_CONCAT(&work, &env->wq, wentry);
		due = env->cp_due;
		env->cp_due = 0;
		backoff = AUDIT_RETRY_FIRST_MS;
		at_us = sw_now_us();
		for (;;) {
			sw_handoff_unlock(h);
			err[0] = '\0';
			rc = write_group(env, &work, due, at_us, &cps, err, sizeof(err));
			sw_handoff_lock(h);
			if (rc == 0)
				break;
			if (write_failed(env, err, &backoff) != 0) {
				TAILQ_FOREACH(b, &work, wentry) {
					b->written = 1;
					b->failed = 1;
					snprintf(b->error, sizeof(b->error), "%s", env->fail_reason);
				}
				sw_handoff_wake(h);
				goto out;
			}
		}
		TAILQ_FOREACH(b, &work, wentry)
			b->written = 1;
		for (size_t k = 0; k < cps.n; k++) {
			if (env->ncp_out == env->capcp_out) {
				size_t cap = env->capcp_out ? env->capcp_out * 2 : 8;
				struct sw_alog_checkpoint *n =
					realloc(env->cp_out, cap * sizeof(*n));

				if (n != NULL) {
					env->cp_out = n;
					env->capcp_out = cap;
				}
			}
			/* no room: not published; the next checkpoint covers it */
			if (env->ncp_out < env->capcp_out)
				env->cp_out[env->ncp_out++] = cps.v[k];
		}
		env->failing = 0;
		/* the batches themselves stay on env->inflight; just wake the loop */
		sw_handoff_wake(h);
	}
out:
	sw_handoff_unlock(h);
	free(cps.v);
	return NULL;
}

/* Loop: say when writing starts or stops failing (once each). */
static void failure_news(struct audit_env *env)
{
	char since[32], attempts[24], why[256];
	int failing;
	uint64_t n;

	q_lock(env);
	failing = env->failing;
	snprintf(why, sizeof(why), "%s", env->fail_reason);
	n = env->fail_attempts;
	snprintf(since, sizeof(since), "%lld", (long long)env->fail_since_us);
	q_unlock(env);
	snprintf(attempts, sizeof(attempts), "%llu", (unsigned long long)n);
	if (failing && !env->fail_logged) {
		sw_log(SW_LOG_ERROR,
		       "audit log cannot be written: not committing offsets (events wait in "
		       "Kafka); retrying",
		       "error", why, "log", env->log_dir, NULL);
		env->fail_logged = 1;
	} else if (!failing && env->fail_logged) {
		sw_log(SW_LOG_INFO, "audit log writable again: committing", "attempts", attempts,
		       "failing_since_us", since, NULL);
		env->fail_logged = 0;
	}
	sw_metrics_gauge_set(env->metrics, "sagewai_audit_log_failing",
			     "1 while the audit log cannot be written (nothing is committed)",
			     failing ? 1 : 0);
	sw_metrics_gauge_set(env->metrics, "sagewai_audit_write_failures",
			     "Failed attempts to write the audit log since start", (double)n);
}

const char *audit_health_why(struct audit_env *env)
{
	if (env->halted)
		return "stopped after a fatal error (see the log)";
	q_lock(env);
	if (env->failing)
		snprintf(env->health_why, sizeof(env->health_why),
			 "the audit log cannot be written (%s): no offset is committed, events "
			 "wait in Kafka; retrying",
			 env->fail_reason);
	else
		env->health_why[0] = '\0';
	q_unlock(env);
	return env->health_why[0] ? env->health_why : NULL;
}

/* Loop: hand the leading batches the index has answered for to the
 * writer, in consumption order (a batch waiting on a lookup holds back
 * the ones after it, so the log keeps Kafka's order). */
void audit_ingest_dispatch(struct audit_env *env)
{
	struct audit_batch *b;
	int any = 0;

	q_lock(env);
	TAILQ_FOREACH(b, &env->inflight, entry) {
		if (b->queued)
			continue;
		if (b->lookup)
			break;
		b->queued = 1;
		TAILQ_INSERT_TAIL(&env->wq, b, wentry);
		any = 1;
	}
	if (any && env->writer.inited)
		sw_handoff_signal(&env->writer, 0);
	q_unlock(env);
}

/* The dedupe window's previous generation may go once its records are all
 * in the index (an id older than the window is looked up there). */
void audit_ingest_window(struct audit_env *env)
{
	int turns;

	for (turns = 0; turns < 2 && audit_dedupe_full(&env->seen); turns++) {
		if (env->seen.gen[!env->seen.cur].ids.len > 0 &&
		    (!env->prev_known || env->prev_max_seq > env->indexed_seq))
			break; /* grows past its half until then */
		if (audit_dedupe_rotate(&env->seen) == -1)
			break; /* out of memory: keep both, try again later */
		env->seal_batch = env->batch_no;
		env->prev_known = env->settled_batch >= env->seal_batch;
		env->prev_max_seq = env->settled_seq;
	}
	if (turns > 0 && env->metrics != NULL)
		sw_metrics_gauge_set(env->metrics, "sagewai_audit_dedupe_ids",
				     "Event ids in the dedupe window",
				     (double)audit_dedupe_len(&env->seen));
}

/* Store the offsets of every leading batch that is done, in order. */
static void settle(void *arg)
{
	struct audit_env *env = arg;
	struct audit_batch *b;
	int stored = 0;
	size_t i;

	struct sw_alog_checkpoint *cps;
	size_t ncps;

	failure_news(env);
	q_lock(env);
	cps = env->cp_out;
	ncps = env->ncp_out;
	env->cp_out = NULL;
	env->ncp_out = env->capcp_out = 0;
	q_unlock(env);
	if (env->producer != NULL)
		audit_cp_publish(env, cps, ncps);
	else
		free(cps);
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
				if (it->seq > env->settled_seq)
					env->settled_seq = it->seq;
				sw_metrics_counter_add(env->metrics, "sagewai_audit_appended_total",
						       "Records made durable in the audit log", 1);
			}
		}
		env->settled_batch = b->no;
		if (!env->prev_known && b->no >= env->seal_batch) {
			env->prev_known = 1;
			env->prev_max_seq = env->settled_seq;
			audit_ingest_window(env);
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
	sw_metrics_gauge_set(env->metrics, "sagewai_audit_dedupe_ids",
			     "Event ids in the dedupe window", (double)audit_dedupe_len(&env->seen));
	if (env->paused && !env->draining && env->ninflight < AUDIT_MAX_INFLIGHT / 2) {
		env->paused = 0;
		sw_bus_consumer_resume(env->consumer);
	}
}

void audit_ingest_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct audit_env *env = opaque;
	struct audit_batch *b = msg_opaque;

	if (msg_opaque == &env->cp_tag) {
		audit_cp_delivered(env, err);
		return;
	}
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
	if (strcmp(h.type, "audit.checkpoint") == 0) {
		/* a log's checkpoints are its own records (kind 3): storing them
		 * again would make records that call for checkpoints, forever */
		env->skipped++;
		sw_metrics_counter_add(env->metrics, "sagewai_audit_checkpoint_events_total",
				       "audit.checkpoint events seen (not stored again)", 1);
		return 0;
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
	fresh = audit_dedupe_add(&env->seen, it->id, it->kind == SW_ALOG_RAW ? m->topic : NULL,
				 m->partition, m->offset);
	audit_ingest_window(env);
	if (fresh == -1) {
		sw_service_fatal(env->svc, "dedupe set", "out of memory");
		return 0;
	}
	if (fresh == AUDIT_DD_DUP) {
		env->duplicates++;
		sw_metrics_counter_add(env->metrics, "sagewai_audit_duplicates_total",
				       "Events dropped because their id is already in the log", 1);
		it->kind = 0;
		return 0;
	}
	it->lookup = fresh == AUDIT_DD_ASK;
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
	b->no = ++env->batch_no;
	sw_metrics_counter_add(
	    env->metrics, "sagewai_audit_batches_total",
	    "Batches consumed (appended_total / batches_total: the batch size).", 1);
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
			b->lookup |= it->lookup;
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
	q_unlock(env);
	if (b->lookup)
		audit_dedupe_lookup(env, b);
	else
		audit_ingest_dispatch(env);

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

/* A checkpoint record's log id (its topic); the last one wins. */
static int cp_id_rec(const struct sw_alog_rec *rec, void *opaque)
{
	char *id = opaque;

	if (rec->kind == SW_ALOG_CHECKPOINT && rec->topic_len > 0 &&
	    rec->topic_len <= SW_ALOG_LOG_ID_MAX) {
		memcpy(id, rec->topic, rec->topic_len);
		id[rec->topic_len] = '\0';
	}
	return 0;
}

/* Write DIR/log-id durably: a temporary file, synced, renamed, the
 * directory synced. 0, or -1 with errstr. */
static int log_id_write(const char *dir, const char *path, const char *id, char *errstr,
			size_t errlen)
{
	char tmp[SW_CONFIG_STR + 40], line[SW_ALOG_LOG_ID_MAX + 2];
	int fd, n, rc = -1;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	n = snprintf(line, sizeof(line), "%s\n", id);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) == -1)
		goto out;
	if (write(fd, line, (size_t)n) != n || fsync(fd) == -1) {
		close(fd);
		goto out;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1)
		goto out;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto out;
	rc = fsync(fd);
	close(fd);
out:
	if (rc == -1)
		snprintf(errstr, errlen, "cannot write %.300s: %s", path, strerror(errno));
	return rc;
}

/*
 * The log's id, in DIR/log-id (written once): the key of the log's rows in
 * the index, which several instances share, and the id its checkpoints
 * carry. A log from before the file takes the id of its last checkpoint,
 * if it has one, else a new UUIDv7. A file that is not one well-formed id
 * is an error, never replaced.
 */
static int log_id_load(struct audit_env *env, char *errstr, size_t errlen)
{
	char path[SW_CONFIG_STR + 32], buf[SW_ALOG_LOG_ID_MAX + 2];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/log-id", env->log_dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) != -1) {
		n = read(fd, buf, sizeof(buf));
		close(fd);
		if (n > 0 && buf[n - 1] == '\n')
			n--;
		if (n <= 0 || (size_t)n > SW_ALOG_LOG_ID_MAX) {
			snprintf(errstr, errlen, "%.300s: not one log id line", path);
			return -1;
		}
		buf[n] = '\0';
		if (!sw_alog_id_ok(buf, SW_ALOG_LOG_ID_MAX)) {
			snprintf(errstr, errlen, "%.300s: not a well-formed log id", path);
			return -1;
		}
		memcpy(env->log_id, buf, (size_t)n + 1);
		return 0;
	}
	if (errno != ENOENT) {
		snprintf(errstr, errlen, "cannot read %.300s: %s", path, strerror(errno));
		return -1;
	}
	env->log_id[0] = '\0';
	errstr[0] = '\0';
	if (sw_alog_next_seq(env->log) > 1 &&
	    sw_alog_scan(env->log_dir, 1, cp_id_rec, env->log_id, errstr, errlen) != 0) {
		if (errstr[0] == '\0')
			snprintf(errstr, errlen, "cannot read the log's checkpoints");
		return -1;
	}
	if (env->log_id[0] == '\0' || !sw_alog_id_ok(env->log_id, SW_ALOG_LOG_ID_MAX))
		sw_uuid_v7_str(env->log_id);
	return log_id_write(env->log_dir, path, env->log_id, errstr, errlen);
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
	if ((env->log = sw_alog_open(env->log_dir, (size_t)env->segment_bytes, &repaired, errstr,
				     errlen)) == NULL)
		return -1;
	sw_alog_set_roll(env->log, (size_t)env->segment_bytes, env->segment_age_s * 1000000);
	if (log_id_load(env, errstr, errlen) == -1)
		return -1;
	if (audit_index_adopt(env, sw_alog_next_seq(env->log) == 1, e, sizeof(e)) == -1 ||
	    audit_index_max_seq(env, &indexed, e, sizeof(e)) == -1) {
		snprintf(errstr, errlen, "audit index: %s", e);
		return -1;
	}
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
	const char *extra[36] = {"topic.metadata.refresh.interval.ms=2000",
				 /* a restarted audit rejoins in seconds, not 45 s */
				 "session.timeout.ms=10000"};
	char tuning[SW_CONFIG_STR], ptuning[SW_CONFIG_STR], wait[64];
	const char *pextra[32];
	size_t nextra = 2;

	TAILQ_INIT(&env->inflight);
	TAILQ_INIT(&env->wq);
	/* operator tuning: SAGEWAI_KAFKA_PRODUCER_CONFIG="name=value,name=value" */
	if (sw_svcbus_extra(sw_service_environ(env->svc), "SAGEWAI_KAFKA_PRODUCER_CONFIG", NULL,
			    pextra, sizeof(pextra) / sizeof(pextra[0]), ptuning, sizeof(ptuning),
			    errstr, errlen) == -1)
		return -1;
	env->producer = sw_bus_producer_new(env->base, env->cfg->kafka_bootstrap, "sagewai-audit",
					    pextra, audit_ingest_delivery, env, errstr, errlen);
	if (env->producer == NULL)
		return -1;
	/* a fatal Kafka error stops the service (its supervisor restarts it) */
	sw_bus_producer_set_error_cb(env->producer, sw_svcbus_producer_error, env->svc);
	if (sw_handoff_start(&env->writer, env->base, 1, writer_main, settle, env, errstr,
			     errlen) == -1 ||
	    audit_cp_start(env, errstr, errlen) == -1)
		return -1;
	env->group = env->cfg->group_id[0] ? env->cfg->group_id : "sagewai-audit";
	/*
	 * Gather (SAGEWAI_AUDIT_GATHER_MS): the broker holds the audit's fetch
	 * until a MiB is there or gather_ms passed, so the audit takes what came
	 * in that time as one batch -- one fetch, one log append and fdatasync,
	 * one index INSERT -- instead of waking for every event of every run.
	 * Nobody waits for the audit: it only trails by up to gather_ms. An
	 * operator's SAGEWAI_KAFKA_CONSUMER_CONFIG, applied after, wins.
	 */
	if (env->gather_ms > 0) {
		snprintf(wait, sizeof(wait), "fetch.wait.max.ms=%lld", (long long)env->gather_ms);
		extra[nextra++] = wait;
		extra[nextra++] = "fetch.min.bytes=1048576";
	}
	if (sw_config_list(sw_service_environ(env->svc), "SAGEWAI_KAFKA_CONSUMER_CONFIG", extra,
			   nextra, sizeof(extra) / sizeof(extra[0]), tuning, sizeof(tuning),
			   errstr, errlen) == -1)
		return -1;
	env->consumer = sw_bus_consumer_new(env->base, env->cfg->kafka_bootstrap, env->group,
					    topics, extra, AUDIT_MAX_BATCH, audit_ingest_batch,
					    env, errstr, errlen);
	if (env->consumer == NULL)
		return -1;
	sw_bus_consumer_set_error_cb(env->consumer, sw_svcbus_consumer_error, env->svc);
	announce_repair(env);
	audit_cp_republish(env);
	return 0;
}

/* The writer writes what was queued before it ends, and a last checkpoint;
 * settle what it wrote (publishing the checkpoint), then leave the group
 * committing it and deliver what is due. */
void audit_ingest_stop(struct audit_env *env)
{
	/* a last checkpoint over whatever came since the one before: a clean
	 * stop leaves no record unprotected */
	if (env->writer.inited && env->signer != NULL) {
		sw_handoff_lock(&env->writer);
		env->cp_due = 1;
		sw_handoff_signal(&env->writer, 0);
		sw_handoff_unlock(&env->writer);
	}
	sw_handoff_stop(&env->writer, -1);
	if (env->cp_timer != NULL)
		event_del(env->cp_timer);
	if (env->log != NULL && env->writer.inited)
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

/* At start, every record in order: the dedupe window and the checkpoint
 * state. The index is complete by then, so the window turns freely. */
static int recover_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct recover_ctx *rc = opaque;
	struct audit_env *env = rc->env;
	struct sw_event_header h;
	uint8_t id[16];
	char err[128];
	int r;

	rc->records++;
	audit_cp_feed(env, rec);
	if (rec->kind == SW_ALOG_EVENT) {
		if (sw_event_decode_header(env->reg, rec->payload, rec->payload_len, &h, err,
					   sizeof(err)) == -1 ||
		    sw_uuid_parse(h.event_id, id) == -1)
			return 0; /* stored as an event, so it decoded once: a schema we
				     no longer carry; it cannot be a duplicate we see */
		r = audit_dedupe_add(&env->seen, id, NULL, 0, 0);
	} else if (rec->kind == SW_ALOG_RAW) {
		char topic[256];
		size_t tl = rec->topic_len < sizeof(topic) - 1 ? rec->topic_len : sizeof(topic) - 1;

		memcpy(topic, rec->topic, tl);
		topic[tl] = '\0';
		audit_raw_id(rec->topic, rec->topic_len, rec->partition, rec->offset, id);
		r = audit_dedupe_add(&env->seen, id, topic, rec->partition, rec->offset);
	} else {
		return 0;
	}
	if (r == -1)
		return -1;
	if (audit_dedupe_full(&env->seen) && audit_dedupe_rotate(&env->seen) == -1)
		return -1;
	return 0;
}

int audit_recover(struct audit_env *env, char *errstr, size_t errlen)
{
	struct recover_ctx rc = {.env = env};
	char nrec[24], nids[24];

	/* the index first: complete up to the log's end, so that the window
	 * may drop any id while it is rebuilt */
	if (audit_index_catch_up(env, errstr, errlen) != 0)
		return -1;
	env->indexed_seq = sw_alog_next_seq(env->log) - 1;
	env->settled_seq = env->indexed_seq;
	env->prev_known = 1;
	env->prev_max_seq = env->indexed_seq;
	if (audit_dedupe_init(&env->seen, (size_t)env->window) == -1) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	sw_alog_cpstate_init(&env->cps);
	errstr[0] = '\0';
	if (sw_alog_scan(env->log_dir, 1, recover_rec, &rc, errstr, errlen) != 0) {
		if (errstr[0] == '\0')
			snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	if (audit_cp_recovered(env, errstr, errlen) == -1)
		return -1;
	snprintf(nrec, sizeof(nrec), "%llu", (unsigned long long)rc.records);
	snprintf(nids, sizeof(nids), "%zu", audit_dedupe_len(&env->seen));
	sw_log(SW_LOG_INFO, "audit log recovered", "records", nrec, "dedupe_window_ids", nids,
	       "log_id", env->log_id, NULL);
	return 0;
}
