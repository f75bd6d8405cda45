/*
 * consumer.c: the group consumer.
 *
 * rd_kafka_poll_set_consumer() routes every op (messages, rebalances,
 * errors, commit results) to the consumer queue, whose io event writes a
 * byte to our pipe when the queue turns non-empty. The event base watches
 * the pipe; we then poll with a zero timeout, collect up to max_batch
 * messages and hand them to the batch callback.
 *
 * The wake-up fires only on the empty -> non-empty edge, so a drain that
 * stops at max_batch with messages left must re-arm itself (the kick
 * event) or those messages would wait for the next, unrelated arrival.
 *
 * A consumer that is not polled for max.poll.interval.ms is thrown out of
 * its group by librdkafka even when it is idle, so a timer also polls at a
 * quarter of that interval.
 *
 * While paused, librdkafka stops fetching and drops what it had fetched
 * for the paused partitions; the few messages that still come out of the
 * queue are held, in order, and delivered first on resume.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus_int.h"

/* A partition this group member was given (sw_bus_consumer_owns). */
struct bus_owned {
	char *topic;
	int32_t partition;
};

struct sw_bus_consumer {
	struct event_base *base;
	rd_kafka_t *rk;
	rd_kafka_queue_t *q; /* reference to the consumer queue */
	int pipefd[2];	     /* consumer queue wake-ups */
	struct event *ev;    /* pipefd[0] readable */
	struct event *kick;  /* drain again on the next loop turn */
	struct event *tick;  /* periodic poll for max.poll.interval.ms */
	size_t max_batch;
	rd_kafka_message_t **held; /* polled, not yet delivered */
	size_t nheld;
	size_t held_cap;
	struct sw_bus_msg *msgs; /* max_batch entries handed to cb */
	sw_bus_batch_cb cb;
	void *opaque;
	sw_bus_error_cb err_cb;
	void *err_opaque;
	sw_bus_commit_cb commit_cb;
	void *commit_opaque;
	int paused;
	int closing; /* close started: no commit on revoke */
	int closed;
	int tail; /* sw_bus_tail_new: assigned, no group, nothing stored */
	struct event *commit_ev; /* the commit put off by the interval */
	int commit_ms;		 /* at most one commit per this period */
	int commit_due;		 /* offsets stored since the last commit */
	int64_t last_commit_ms;
	struct bus_owned *owned; /* the partitions assigned by the last rebalance */
	size_t nowned, owned_cap;
};

static const char *const consumer_defaults[] = {
    "auto.offset.reset=earliest",
    "enable.partition.eof=false",
    NULL,
};

static const char *const consumer_forced[] = {
    "enable.auto.commit=false",
    "enable.auto.offset.store=false",
    NULL,
};

static void consumer_report(struct sw_bus_consumer *c, int fatal, const char *reason)
{
	if (c->err_cb != NULL)
		c->err_cb(fatal, reason, c->err_opaque);
}

static void consumer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct sw_bus_consumer *c = opaque;
	char fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		consumer_report(c, 1, fatal);
	} else {
		consumer_report(c, 0, reason);
	}
}

static void consumer_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			       rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	struct sw_bus_consumer *c = opaque;

	(void)rk;
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		err = RD_KAFKA_RESP_ERR_NO_ERROR;
	for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && offsets != NULL && i < offsets->cnt;
	     i++)
		err = offsets->elems[i].err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		consumer_report(c, 0, rd_kafka_err2str(err));
	if (c->commit_cb != NULL)
		c->commit_cb(err ? rd_kafka_err2str(err) : NULL, c->commit_opaque);
}

static int in_list(const rd_kafka_topic_partition_list_t *parts, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);

	return rd_kafka_topic_partition_list_find(parts, topic, m->partition) != NULL;
}

/* Forget held messages of partitions we no longer own (all when parts is
 * NULL): after a revoke the next owner reads them from the committed
 * offset, and storing their offsets would fail anyway. */
static void held_drop(struct sw_bus_consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
	size_t i, keep = 0;

	for (i = 0; i < c->nheld; i++) {
		if (parts == NULL || in_list(parts, c->held[i]))
			rd_kafka_message_destroy(c->held[i]);
		else
			c->held[keep++] = c->held[i];
	}
	c->nheld = keep;
}

static int held_push(struct sw_bus_consumer *c, rd_kafka_message_t *m)
{
	if (c->nheld == c->held_cap) {
		size_t cap = c->held_cap * 2;
		rd_kafka_message_t **h = realloc(c->held, cap * sizeof(*h));

		if (h == NULL)
			return -1;
		c->held = h;
		c->held_cap = cap;
	}
	c->held[c->nheld++] = m;
	return 0;
}

static void owned_clear(struct sw_bus_consumer *c)
{
	for (size_t i = 0; i < c->nowned; i++)
		free(c->owned[i].topic);
	c->nowned = 0;
}

static ssize_t owned_find(const struct sw_bus_consumer *c, const char *topic, int32_t partition)
{
	for (size_t i = 0; i < c->nowned; i++)
		if (c->owned[i].partition == partition && strcmp(c->owned[i].topic, topic) == 0)
			return (ssize_t)i;
	return -1;
}

/* Record parts as given; on no memory the set is left short, which only
 * makes sw_bus_consumer_owns say 0 (its callers then do the safe thing). */
static void owned_add(struct sw_bus_consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
	for (int i = 0; i < parts->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &parts->elems[i];
		struct bus_owned *n;

		if (owned_find(c, tp->topic, tp->partition) >= 0)
			continue;
		if (c->nowned == c->owned_cap) {
			size_t cap = c->owned_cap ? 2 * c->owned_cap : 16;

			if ((n = realloc(c->owned, cap * sizeof(*n))) == NULL)
				return;
			c->owned = n;
			c->owned_cap = cap;
		}
		if ((c->owned[c->nowned].topic = strdup(tp->topic)) == NULL)
			return;
		c->owned[c->nowned++].partition = tp->partition;
	}
}

static void owned_del(struct sw_bus_consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
	ssize_t k;

	for (int i = 0; i < parts->cnt; i++)
		if ((k = owned_find(c, parts->elems[i].topic, parts->elems[i].partition)) >= 0) {
			free(c->owned[k].topic);
			c->owned[k] = c->owned[--c->nowned];
		}
}

static void consumer_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			       rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct sw_bus_consumer *c = opaque;
	int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

	switch (err) {
	case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
		if (!cooperative)
			owned_clear(c);
		owned_add(c, parts);
		if (cooperative)
			error = rd_kafka_incremental_assign(rk, parts);
		else
			aerr = rd_kafka_assign(rk, parts);
		/* New partitions join the pause (pausing before assign is lost). */
		if (c->paused)
			rd_kafka_pause_partitions(rk, parts);
		break;
	case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
		if (cooperative)
			owned_del(c, parts);
		else
			owned_clear(c);
		held_drop(c, parts);
		/* Hand what is done to the next owner. */
		if (!c->closing) {
			c->commit_due = 0;
			rd_kafka_commit(rk, NULL, 1);
		}
		if (cooperative)
			error = rd_kafka_incremental_unassign(rk, parts);
		else
			aerr = rd_kafka_assign(rk, NULL);
		break;
	default:
		consumer_report(c, 0, rd_kafka_err2str(err));
		owned_clear(c);
		held_drop(c, NULL);
		if (cooperative)
			error = rd_kafka_incremental_unassign(rk, parts);
		else
			aerr = rd_kafka_assign(rk, NULL);
		break;
	}
	if (error != NULL) {
		consumer_report(c, 0, rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		consumer_report(c, 0, rd_kafka_err2str(aerr));
	}
}

static void consumer_msg_error(struct sw_bus_consumer *c, const rd_kafka_message_t *m)
{
	char reason[512];

	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return;
	if (m->rkt != NULL)
		snprintf(reason, sizeof(reason), "%s [%d]: %s", rd_kafka_topic_name(m->rkt),
			 (int)m->partition, rd_kafka_message_errstr(m));
	else
		snprintf(reason, sizeof(reason), "%s", rd_kafka_message_errstr(m));
	consumer_report(c, m->err == RD_KAFKA_RESP_ERR__FATAL, reason);
}

/* Hand the first n held messages to the callback, then free them. */
static void consumer_deliver(struct sw_bus_consumer *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		rd_kafka_message_t *m = c->held[i];

		c->msgs[i] = (struct sw_bus_msg){
		    .topic = rd_kafka_topic_name(m->rkt),
		    .partition = m->partition,
		    .offset = m->offset,
		    .key = m->key,
		    .key_len = m->key_len,
		    .value = m->payload,
		    .len = m->len,
		    .timestamp_ms = rd_kafka_message_timestamp(m, NULL),
		    .rk_msg = m,
		};
	}
	c->cb(c->msgs, n, c->opaque);
	for (i = 0; i < n; i++)
		rd_kafka_message_destroy(c->held[i]);
	memmove(c->held, c->held + n, (c->nheld - n) * sizeof(*c->held));
	c->nheld -= n;
}

/* Serve the consumer queue and deliver at most one batch. */
static void consumer_drain(struct sw_bus_consumer *c)
{
	rd_kafka_message_t *m;
	size_t n;

	if (c->closed || c->closing)
		return;
	while (c->paused || c->nheld < c->max_batch) {
		if ((m = rd_kafka_consumer_poll(c->rk, 0)) == NULL)
			break; /* the queue is empty: the next op writes a wake-up */
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			consumer_msg_error(c, m);
			rd_kafka_message_destroy(m);
			continue;
		}
		if (held_push(c, m) == -1) {
			/* Not stored, so redelivered after a restart. */
			rd_kafka_message_destroy(m);
			consumer_report(c, 1, "out of memory holding a message");
			break;
		}
	}
	if (c->paused || c->nheld == 0)
		return;
	n = c->nheld < c->max_batch ? c->nheld : c->max_batch;
	consumer_deliver(c, n);
	/* A full batch may have left messages in the queue, which will write
	 * no new wake-up: come back on the next loop turn. */
	if (!c->closed && (c->nheld > 0 || n == c->max_batch))
		event_active(c->kick, 0, 0);
}

static void consumer_on_wakeup(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	bus_pipe_drain(fd);
	consumer_drain(arg);
}

static void consumer_on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	consumer_drain(arg);
}

static void consumer_on_commit(evutil_socket_t fd, short what, void *arg);

static int conf_get_int(rd_kafka_conf_t *conf, const char *name, int def)
{
	char buf[32];
	size_t sz = sizeof(buf);

	if (rd_kafka_conf_get(conf, name, buf, &sz) != RD_KAFKA_CONF_OK)
		return def;
	return atoi(buf);
}

static int consumer_subscribe(struct sw_bus_consumer *c, const char *const *topics, char *errstr,
			      size_t errlen)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t err;
	int n = 0;

	while (topics[n] != NULL)
		n++;
	if (n == 0) {
		snprintf(errstr, errlen, "consumer: no topics");
		return -1;
	}
	list = rd_kafka_topic_partition_list_new(n);
	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(c->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errlen, "subscribe: %s", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* Tail mode: every partition of each topic, from its high watermark now
 * (queried, so that a reply produced after this returns is never missed,
 * as it could be with OFFSET_END resolved later, at the first fetch). */
static int consumer_assign_tail(struct sw_bus_consumer *c, const char *const *topics,
				int timeout_ms, char *errstr, size_t errlen)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
	rd_kafka_resp_err_t err;
	int rc = -1;

	for (int i = 0; topics[i] != NULL; i++) {
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, topics[i], NULL);

		if (rkt == NULL) {
			snprintf(errstr, errlen, "tail: topic %s: %s", topics[i],
				 rd_kafka_err2str(rd_kafka_last_error()));
			goto out;
		}
		err = rd_kafka_metadata(c->rk, 0, rkt, &md, timeout_ms);
		rd_kafka_topic_destroy(rkt);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err)
			err = md->topics[0].err;
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topics[0].partition_cnt == 0) {
			snprintf(errstr, errlen, "tail: metadata of %s: %s", topics[i],
				 err ? rd_kafka_err2str(err) : "no partitions");
			if (md != NULL)
				rd_kafka_metadata_destroy(md);
			goto out;
		}
		for (int p = 0; p < md->topics[0].partition_cnt; p++) {
			int64_t lo, hi;
			int32_t id = md->topics[0].partitions[p].id;

			err = rd_kafka_query_watermark_offsets(c->rk, topics[i], id, &lo, &hi,
							       timeout_ms);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
				snprintf(errstr, errlen, "tail: watermarks of %s [%d]: %s",
					 topics[i], (int)id, rd_kafka_err2str(err));
				rd_kafka_metadata_destroy(md);
				goto out;
			}
			rd_kafka_topic_partition_list_add(list, topics[i], id)->offset = hi;
		}
		rd_kafka_metadata_destroy(md);
	}
	if ((err = rd_kafka_assign(c->rk, list)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errlen, "tail: assign: %s", rd_kafka_err2str(err));
		goto out;
	}
	rc = 0;
out:
	rd_kafka_topic_partition_list_destroy(list);
	return rc;
}

static struct sw_bus_consumer *consumer_create(struct event_base *base, const char *bootstrap,
					       const char *group, const char *const *topics,
					       const char *const *extra, size_t max_batch,
					       sw_bus_batch_cb cb, void *opaque, int tail,
					       char *errstr, size_t errlen);

struct sw_bus_consumer *sw_bus_consumer_new(struct event_base *base, const char *bootstrap,
					    const char *group, const char *const *topics,
					    const char *const *extra, size_t max_batch,
					    sw_bus_batch_cb cb, void *opaque, char *errstr,
					    size_t errlen)
{
	return consumer_create(base, bootstrap, group, topics, extra, max_batch, cb, opaque, 0,
			       errstr, errlen);
}

struct sw_bus_consumer *sw_bus_tail_new(struct event_base *base, const char *bootstrap,
					const char *const *topics, const char *const *extra,
					size_t max_batch, sw_bus_batch_cb cb, void *opaque,
					char *errstr, size_t errlen)
{
	char group[64];

	/* never joined nor committed: assign() alone; librdkafka wants a name */
	snprintf(group, sizeof(group), "sagewai-tail-%d-%p", (int)getpid(), (void *)&group);
	return consumer_create(base, bootstrap, group, topics, extra, max_batch, cb, opaque, 1,
			       errstr, errlen);
}

static struct sw_bus_consumer *consumer_create(struct event_base *base, const char *bootstrap,
					       const char *group, const char *const *topics,
					       const char *const *extra, size_t max_batch,
					       sw_bus_batch_cb cb, void *opaque, int tail,
					       char *errstr, size_t errlen)
{
	struct sw_bus_consumer *c;
	rd_kafka_conf_t *conf = NULL;
	char rkerr[256];
	struct timeval tv;
	int poll_ms;

	if (base == NULL || group == NULL || *group == '\0' || topics == NULL || cb == NULL ||
	    max_batch == 0 || max_batch > 1000000) {
		snprintf(errstr, errlen, "consumer: bad arguments");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(errstr, errlen, "consumer: out of memory");
		return NULL;
	}
	c->base = base;
	c->cb = cb;
	c->opaque = opaque;
	c->max_batch = max_batch;
	c->pipefd[0] = c->pipefd[1] = -1;
	c->held_cap = max_batch;
	c->held = calloc(max_batch, sizeof(*c->held));
	c->msgs = calloc(max_batch, sizeof(*c->msgs));
	if (c->held == NULL || c->msgs == NULL) {
		snprintf(errstr, errlen, "consumer: out of memory");
		goto fail;
	}

	conf = bus_conf_new(bootstrap, consumer_defaults, extra, consumer_forced, errstr, errlen);
	if (conf == NULL)
		goto fail;
	if (rd_kafka_conf_set(conf, "group.id", group, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errlen, "group.id: %s", rkerr);
		goto fail;
	}
	poll_ms = conf_get_int(conf, "max.poll.interval.ms", 300000) / 4;
	if (poll_ms < 100)
		poll_ms = 100;
	rd_kafka_conf_set_opaque(conf, c);
	rd_kafka_conf_set_error_cb(conf, consumer_error);
	rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance);
	rd_kafka_conf_set_offset_commit_cb(conf, consumer_committed);

	if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr))) == NULL) {
		snprintf(errstr, errlen, "consumer: %s", rkerr);
		goto fail;
	}
	conf = NULL;
	rd_kafka_poll_set_consumer(c->rk);

	if (bus_pipe_open(c->pipefd, errstr, errlen) == -1)
		goto fail;
	c->ev = event_new(base, c->pipefd[0], EV_READ | EV_PERSIST, consumer_on_wakeup, c);
	c->kick = event_new(base, -1, 0, consumer_on_kick, c);
	c->tick = event_new(base, -1, EV_PERSIST, consumer_on_kick, c);
	c->commit_ev = evtimer_new(base, consumer_on_commit, c);
	c->commit_ms = SW_BUS_COMMIT_MS;
	tv.tv_sec = poll_ms / 1000;
	tv.tv_usec = (poll_ms % 1000) * 1000;
	if (c->ev == NULL || c->kick == NULL || c->tick == NULL || c->commit_ev == NULL ||
	    event_add(c->ev, NULL) == -1 ||
	    event_add(c->tick, &tv) == -1) {
		snprintf(errstr, errlen, "consumer: cannot set up events");
		goto fail;
	}
	c->q = rd_kafka_queue_get_consumer(c->rk);
	rd_kafka_queue_io_event_enable(c->q, c->pipefd[1], "1", 1);
	c->tail = tail;
	if (tail ? consumer_assign_tail(c, topics, 10000, errstr, errlen) == -1
		 : consumer_subscribe(c, topics, errstr, errlen) == -1)
		goto fail;
	event_active(c->kick, 0, 0);
	return c;
fail:
	if (conf != NULL)
		rd_kafka_conf_destroy(conf);
	sw_bus_consumer_destroy(c);
	return NULL;
}

void sw_bus_consumer_set_error_cb(struct sw_bus_consumer *c, sw_bus_error_cb cb, void *opaque)
{
	c->err_cb = cb;
	c->err_opaque = opaque;
}

void sw_bus_consumer_set_commit_cb(struct sw_bus_consumer *c, sw_bus_commit_cb cb, void *opaque)
{
	c->commit_cb = cb;
	c->commit_opaque = opaque;
}

int sw_bus_consumer_store_at(struct sw_bus_consumer *c, const char *topic, int32_t partition,
			     int64_t offset)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t err;

	if (c->closed || c->tail || topic == NULL || partition < 0 || offset < 0)
		return -1;
	list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, topic, partition)->offset = offset + 1;
	err = rd_kafka_offsets_store(c->rk, list);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = list->elems[0].err;
	rd_kafka_topic_partition_list_destroy(list);
	return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int sw_bus_consumer_store(struct sw_bus_consumer *c, const struct sw_bus_msg *msg)
{
	if (msg == NULL)
		return -1;
	return sw_bus_consumer_store_at(c, msg->topic, msg->partition, msg->offset);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int commit_now(struct sw_bus_consumer *c)
{
	rd_kafka_resp_err_t err;

	c->commit_due = 0;
	c->last_commit_ms = mono_ms();
	err = rd_kafka_commit(c->rk, NULL, 1);
	return err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET ? 0 : -1;
}

static void consumer_on_commit(evutil_socket_t fd, short what, void *arg)
{
	struct sw_bus_consumer *c = arg;

	(void)fd;
	(void)what;
	if (c->commit_due && !c->closed && !c->closing)
		commit_now(c);
}

int sw_bus_consumer_commit(struct sw_bus_consumer *c)
{
	int64_t wait;
	struct timeval tv;

	if (c->closed || c->tail)
		return -1;
	wait = c->last_commit_ms + c->commit_ms - mono_ms();
	if (c->commit_ms <= 0 || wait <= 0 || c->commit_ev == NULL)
		return commit_now(c);
	c->commit_due = 1;
	if (!evtimer_pending(c->commit_ev, NULL)) {
		tv.tv_sec = (time_t)(wait / 1000);
		tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
		evtimer_add(c->commit_ev, &tv);
	}
	return 0;
}

void sw_bus_consumer_set_commit_interval(struct sw_bus_consumer *c, int ms)
{
	c->commit_ms = ms > 0 ? ms : 0;
}

/* The current assignment (caller destroys), or NULL. A helper of its own
 * so that the local whose address rd_kafka_assignment fills never shares
 * a function with its later uses: GCC 12 at -O3, once the caller was
 * inlined into sw_bus_consumer_pause/_resume, warned "dangling pointer to
 * 'parts' may be used" at the pause/resume/destroy calls. That was a
 * false positive (parts was in scope and held librdkafka's list, which we
 * destroy exactly once), but -Werror builds must stay clean. */
static rd_kafka_topic_partition_list_t *consumer_assignment(rd_kafka_t *rk)
{
	rd_kafka_topic_partition_list_t *parts = NULL;

	if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return parts;
}

static void consumer_pause_resume(struct sw_bus_consumer *c, int pause)
{
	rd_kafka_topic_partition_list_t *parts;

	c->paused = pause;
	if (c->closed)
		return;
	if ((parts = consumer_assignment(c->rk)) != NULL) {
		if (pause)
			rd_kafka_pause_partitions(c->rk, parts);
		else
			rd_kafka_resume_partitions(c->rk, parts);
		rd_kafka_topic_partition_list_destroy(parts);
	}
	if (!pause)
		event_active(c->kick, 0, 0);
}

void sw_bus_consumer_pause(struct sw_bus_consumer *c)
{
	consumer_pause_resume(c, 1);
}

void sw_bus_consumer_resume(struct sw_bus_consumer *c)
{
	consumer_pause_resume(c, 0);
}

int sw_bus_consumer_owns(const struct sw_bus_consumer *c, const char *topic, int32_t partition)
{
	return c != NULL && !c->closed && owned_find(c, topic, partition) >= 0;
}

int sw_bus_consumer_assigned(struct sw_bus_consumer *c)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	int n;

	if (c->closed || rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	n = parts->cnt;
	rd_kafka_topic_partition_list_destroy(parts);
	return n;
}

/* Stop our events and let librdkafka leave the group. */
static int consumer_shutdown(struct sw_bus_consumer *c)
{
	rd_kafka_resp_err_t err;

	c->closing = 1;
	held_drop(c, NULL);
	if (c->ev != NULL)
		event_del(c->ev);
	if (c->kick != NULL)
		event_del(c->kick);
	if (c->tick != NULL)
		event_del(c->tick);
	if (c->commit_ev != NULL)
		event_del(c->commit_ev);
	err = rd_kafka_consumer_close(c->rk);
	c->closed = 1;
	return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int sw_bus_consumer_close(struct sw_bus_consumer *c)
{
	rd_kafka_resp_err_t err;
	int rc = 0;

	if (c->closed)
		return 0;
	err = c->tail ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_commit(c->rk, NULL, 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		rc = -1;
	if (consumer_shutdown(c) == -1)
		rc = -1;
	return rc;
}

void sw_bus_consumer_destroy(struct sw_bus_consumer *c)
{
	if (c == NULL)
		return;
	if (c->rk != NULL && !c->closed)
		consumer_shutdown(c);
	held_drop(c, NULL);
	owned_clear(c);
	free(c->owned);
	if (c->q != NULL) {
		rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
		rd_kafka_queue_destroy(c->q);
	}
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->tick != NULL)
		event_free(c->tick);
	if (c->commit_ev != NULL)
		event_free(c->commit_ev);
	if (c->rk != NULL)
		rd_kafka_destroy(c->rk);
	bus_pipe_close(c->pipefd);
	free(c->held);
	free(c->msgs);
	free(c);
}
