/*
 * producer.c: the idempotent producer.
 *
 * Delivery reports, errors and statistics are ops on the client's main
 * queue. That queue writes a byte to our pipe when it turns non-empty
 * (rd_kafka_queue_io_event_enable); the event base watches the pipe and we
 * serve the queue with rd_kafka_poll(rk, 0), so no callback ever blocks.
 *
 * librdkafka learns a topic's partitions only for topics it knows, and it
 * asks for unknown ones from a timer that runs once a second: the first
 * message to each topic would wait up to a second (measured: 0.9 s per
 * producer and topic, on every hop of a run's first steps). So the producer
 * holds a handle on each sagewai topic (sw_bus_topics) from the start: their
 * metadata comes with the first connection or that timer's first turn, before
 * anything is produced. The topics exist anyway (infra/kafka/topics.tsv;
 * every consumer subscribes to them).
 *
 * Gathering (sw_bus_producer_gather): librdkafka 2.0.2's broker thread
 * spins while a partition has messages it may not send yet -- an
 * idempotent producer keeps at most 5 messages of a partition in flight and
 * one request unsent, and with linger.ms=0 the waiting messages set its
 * next wake-up to now: measured in the worker at 128 runs in flight, 26,000
 * turns of its loop a second for 340 requests, its busiest thread
 * (docs/BENCHMARKS.md, "The producer's spin"). A gathering producer hands
 * librdkafka a burst only when everything before it is delivered: what is
 * produced meanwhile waits here, in order, and goes as the next burst (one
 * request a partition). With nothing in flight a message goes at the end
 * of the event base's current pass, with whatever that pass produced too:
 * one at a time, no wait.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bus_int.h"

struct sw_bus_producer {
	struct event_base *base;
	rd_kafka_t *rk;
	rd_kafka_queue_t *mainq; /* reference to the main queue */
	rd_kafka_topic_t **topics; /* one handle per sw_bus_topics entry, NULL-ended */
	int pipefd[2];		 /* main queue wake-ups */
	struct event *ev;	 /* pipefd[0] readable */
	sw_bus_delivery_cb dr;
	void *opaque;
	sw_bus_error_cb err_cb;
	void *err_opaque;
	struct held *held, **held_tail; /* gathering: waiting for the burst out */
	size_t nheld;
	struct event *release_ev; /* hands the held burst over (gathering) */
	int gather;
	long inflight;	      /* handed to librdkafka, not yet reported */
	int have_stats;	      /* a statistics JSON was seen */
	char idemp_state[32]; /* eos.idemp_state of the latest statistics */
	int64_t producer_id;  /* eos.producer_id of the latest statistics */
};

/* A message held while a burst is out (gathering): one allocation, the
 * topic, key and value copied after the struct. */
struct held {
	struct held *next;
	char *topic;
	char *key;
	size_t key_len;
	char *value;
	size_t len;
	rd_kafka_headers_t *hdrs;
	void *opaque;
	char data[];
};

/* At most this many held: then produce fails as a full queue would. */
#define HELD_MAX 100000

static const char *const producer_defaults[] = {
    "statistics.interval.ms=1000",
    "message.timeout.ms=300000",
    /* events are small and latency counts: send at once. Each hop of a step
     * (dispatch, outcome, identity request) waited the full 1 ms of
     * linger.ms=1 when its partition was idle; under load messages still
     * gather while max.in.flight requests are out (docs/BENCHMARKS.md,
     * "Gathered readers and linger 0"). SAGEWAI_KAFKA_PRODUCER_CONFIG=linger.ms=1
     * trades back. */
    "linger.ms=0",
    NULL,
};

static const char *const producer_forced[] = {
    "enable.idempotence=true",
    "acks=all",
    NULL,
};

static void producer_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct sw_bus_producer *p = opaque;

	(void)rk;
	p->inflight--;
	if (p->dr != NULL)
		p->dr(m->err ? rd_kafka_err2str(m->err) : NULL, m->_private, p->opaque);
}

static void producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct sw_bus_producer *p = opaque;
	char fatal[512];

	if (p->err_cb == NULL)
		return;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		p->err_cb(1, fatal, p->err_opaque);
	} else {
		p->err_cb(0, reason, p->err_opaque);
	}
}

/* Keep the "eos" section: {"idemp_state": "Assigned", "producer_id": N}. */
static int producer_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	struct sw_bus_producer *p = opaque;
	json_t *root, *eos, *state, *pid;

	(void)rk;
	root = json_loadb(json, len, 0, NULL);
	if (root == NULL)
		return 0;
	eos = json_object_get(root, "eos");
	state = json_object_get(eos, "idemp_state");
	pid = json_object_get(eos, "producer_id");
	if (json_is_string(state) && json_is_integer(pid)) {
		snprintf(p->idemp_state, sizeof(p->idemp_state), "%s", json_string_value(state));
		p->producer_id = json_integer_value(pid);
		p->have_stats = 1;
	}
	json_decref(root);
	return 0; /* librdkafka frees json */
}

/* The main queue has ops: serve them all. The pipe is read first so that
 * an op enqueued while we serve writes a new wake-up; if ops remain
 * anyway we come back through the loop rather than monopolise it. */
static void producer_on_wakeup(evutil_socket_t fd, short what, void *arg)
{
	struct sw_bus_producer *p = arg;

	(void)what;
	bus_pipe_drain(fd);
	rd_kafka_poll(p->rk, 0);
	if (rd_kafka_queue_length(p->mainq) > 0)
		event_active(p->ev, EV_READ, 0);
	if (p->nheld > 0 && p->inflight <= 0)
		event_active(p->release_ev, EV_TIMEOUT, 0);
}

static void held_free(struct held *h)
{
	if (h->hdrs != NULL)
		rd_kafka_headers_destroy(h->hdrs);
	free(h);
}

/* Hand every held message to librdkafka, in order. One it refuses gets its
 * delivery report now, with the reason. */
static void producer_release(struct sw_bus_producer *p)
{
	struct held *h;
	char err[256];

	while ((h = p->held) != NULL) {
		if ((p->held = h->next) == NULL)
			p->held_tail = &p->held;
		p->nheld--;
		if (bus_produce(p->rk, h->topic, h->key, h->key_len, h->value, h->len, h->hdrs,
				h->opaque, err, sizeof(err)) == 0)
			p->inflight++;
		else if (p->dr != NULL)
			p->dr(err, h->opaque, p->opaque);
		h->hdrs = NULL; /* bus_produce took them */
		held_free(h);
	}
}

static void release_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_bus_producer *p = arg;

	(void)fd;
	(void)what;
	if (p->inflight <= 0)
		producer_release(p);
}

/* Gathering: keep the message for the next burst (copies key and value;
 * takes hdrs). 0, or -1 with errstr. */
static int producer_hold(struct sw_bus_producer *p, const char *topic, const void *key,
			 size_t key_len, const void *value, size_t len, rd_kafka_headers_t *hdrs,
			 void *msg_opaque, char *errstr, size_t errlen)
{
	struct held *h;
	size_t tlen;

	if (topic == NULL || (value == NULL && len > 0) || (key == NULL && key_len > 0)) {
		snprintf(errstr, errlen, "produce: bad arguments");
		goto fail;
	}
	if (p->nheld >= HELD_MAX) {
		snprintf(errstr, errlen, "produce to %s: %s", topic,
			 rd_kafka_err2str(RD_KAFKA_RESP_ERR__QUEUE_FULL));
		goto fail;
	}
	tlen = strlen(topic) + 1;
	if ((h = malloc(sizeof(*h) + tlen + key_len + len)) == NULL) {
		snprintf(errstr, errlen, "produce to %s: out of memory", topic);
		goto fail;
	}
	h->next = NULL;
	h->topic = memcpy(h->data, topic, tlen);
	h->key = key_len > 0 ? memcpy(h->data + tlen, key, key_len) : NULL;
	h->key_len = key_len;
	h->value = len > 0 ? memcpy(h->data + tlen + key_len, value, len) : NULL;
	h->len = len;
	h->hdrs = hdrs;
	h->opaque = msg_opaque;
	*p->held_tail = h;
	p->held_tail = &h->next;
	p->nheld++;
	if (p->inflight <= 0)
		event_active(p->release_ev, EV_TIMEOUT, 0);
	return 0;
fail:
	if (hdrs != NULL)
		rd_kafka_headers_destroy(hdrs);
	return -1;
}

/* bus_produce, or held when gathering. */
static int producer_send(struct sw_bus_producer *p, const char *topic, const void *key,
			 size_t key_len, const void *value, size_t len, rd_kafka_headers_t *hdrs,
			 void *msg_opaque, char *errstr, size_t errlen)
{
	if (p->gather)
		return producer_hold(p, topic, key, key_len, value, len, hdrs, msg_opaque, errstr,
				     errlen);
	if (bus_produce(p->rk, topic, key, key_len, value, len, hdrs, msg_opaque, errstr,
			errlen) == -1)
		return -1;
	p->inflight++;
	return 0;
}

/* Take a handle on each sagewai topic (see the top of this file). */
static int producer_topics_hold(struct sw_bus_producer *p, char *errstr, size_t errlen)
{
	size_t n = 0, i;

	while (sw_bus_topics[n] != NULL)
		n++;
	if ((p->topics = calloc(n + 1, sizeof(*p->topics))) == NULL) {
		snprintf(errstr, errlen, "producer: out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((p->topics[i] = rd_kafka_topic_new(p->rk, sw_bus_topics[i], NULL)) == NULL) {
			snprintf(errstr, errlen, "producer: topic %s: %s", sw_bus_topics[i],
				 rd_kafka_err2str(rd_kafka_last_error()));
			return -1;
		}
	}
	return 0;
}

struct sw_bus_producer *sw_bus_producer_new(struct event_base *base, const char *bootstrap,
					    const char *client_id, const char *const *extra,
					    sw_bus_delivery_cb dr, void *opaque, char *errstr,
					    size_t errlen)
{
	struct sw_bus_producer *p;
	rd_kafka_conf_t *conf = NULL;
	char rkerr[256];

	if (base == NULL) {
		snprintf(errstr, errlen, "producer: no event base");
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(errstr, errlen, "producer: out of memory");
		return NULL;
	}
	p->base = base;
	p->dr = dr;
	p->opaque = opaque;
	p->producer_id = -1;
	p->pipefd[0] = p->pipefd[1] = -1;
	p->held_tail = &p->held;

	conf = bus_conf_new(bootstrap, producer_defaults, extra, producer_forced, errstr, errlen);
	if (conf == NULL)
		goto fail;
	if (client_id != NULL && rd_kafka_conf_set(conf, "client.id", client_id, rkerr,
						   sizeof(rkerr)) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errlen, "client.id: %s", rkerr);
		goto fail;
	}
	rd_kafka_conf_set_opaque(conf, p);
	rd_kafka_conf_set_dr_msg_cb(conf, producer_dr);
	rd_kafka_conf_set_error_cb(conf, producer_error);
	rd_kafka_conf_set_stats_cb(conf, producer_stats);

	if ((p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr))) == NULL) {
		snprintf(errstr, errlen, "producer: %s", rkerr);
		goto fail;
	}
	conf = NULL; /* owned by rk now */
	if (producer_topics_hold(p, errstr, errlen) == -1)
		goto fail;

	if (bus_pipe_open(p->pipefd, errstr, errlen) == -1)
		goto fail;
	p->ev = event_new(base, p->pipefd[0], EV_READ | EV_PERSIST, producer_on_wakeup, p);
	p->release_ev = event_new(base, -1, 0, release_cb, p);
	if (p->ev == NULL || p->release_ev == NULL || event_add(p->ev, NULL) == -1) {
		snprintf(errstr, errlen, "producer: cannot watch the wake-up pipe");
		goto fail;
	}
	p->mainq = rd_kafka_queue_get_main(p->rk);
	rd_kafka_queue_io_event_enable(p->mainq, p->pipefd[1], "1", 1);
	/* Anything queued before the io event was enabled wrote no wake-up. */
	event_active(p->ev, EV_READ, 0);
	return p;
fail:
	if (conf != NULL)
		rd_kafka_conf_destroy(conf);
	sw_bus_producer_destroy(p);
	return NULL;
}

void sw_bus_producer_set_error_cb(struct sw_bus_producer *p, sw_bus_error_cb cb, void *opaque)
{
	p->err_cb = cb;
	p->err_opaque = opaque;
}

int sw_bus_produce(struct sw_bus_producer *p, const char *topic, const char *key,
		   const void *value, size_t len, const char *const *headers, void *msg_opaque,
		   char *errstr, size_t errlen)
{
	rd_kafka_headers_t *hdrs = NULL;
	size_t n = 0;

	if (headers != NULL) {
		while (headers[n] != NULL)
			n += headers[n + 1] != NULL ? 2 : 1;
		if (n % 2 != 0) {
			snprintf(errstr, errlen, "produce: header %s has no value",
				 headers[n - 1]);
			return -1;
		}
		hdrs = rd_kafka_headers_new(n / 2);
		for (size_t i = 0; i < n; i += 2)
			rd_kafka_header_add(hdrs, headers[i], -1, headers[i + 1], -1);
	}
	return producer_send(p, topic, key, key != NULL ? strlen(key) : 0, value, len, hdrs,
			     msg_opaque, errstr, errlen);
}

int sw_bus_deadletter(struct sw_bus_producer *p, const struct sw_bus_msg *m, const char *reason,
		      void *msg_opaque, char *errstr, size_t errlen)
{
	rd_kafka_headers_t *hdrs;
	char part[16], off[24];

	if (m == NULL || m->topic == NULL) {
		snprintf(errstr, errlen, "deadletter: no message");
		return -1;
	}
	snprintf(part, sizeof(part), "%" PRId32, m->partition);
	snprintf(off, sizeof(off), "%" PRId64, m->offset);
	hdrs = rd_kafka_headers_new(4);
	rd_kafka_header_add(hdrs, "sagewai.reason", -1, reason != NULL ? reason : "", -1);
	rd_kafka_header_add(hdrs, "sagewai.topic", -1, m->topic, -1);
	rd_kafka_header_add(hdrs, "sagewai.partition", -1, part, -1);
	rd_kafka_header_add(hdrs, "sagewai.offset", -1, off, -1);
	return producer_send(p, SW_TOPIC_DEADLETTER, m->key, m->key_len, m->value, m->len, hdrs,
			     msg_opaque, errstr, errlen);
}

void sw_bus_producer_gather(struct sw_bus_producer *p, int on)
{
	p->gather = on != 0;
	if (!p->gather)
		producer_release(p);
}

int sw_bus_producer_flush(struct sw_bus_producer *p, int timeout_ms)
{
	producer_release(p);
	return rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int sw_bus_producer_outq(struct sw_bus_producer *p)
{
	return rd_kafka_outq_len(p->rk) + (int)p->nheld;
}

int sw_bus_producer_idemp_state(struct sw_bus_producer *p, char *buf, size_t len,
				int64_t *producer_id)
{
	if (!p->have_stats)
		return -1;
	if (buf != NULL && len > 0)
		snprintf(buf, len, "%s", p->idemp_state);
	if (producer_id != NULL)
		*producer_id = p->producer_id;
	return 0;
}

void sw_bus_producer_destroy(struct sw_bus_producer *p)
{
	if (p == NULL)
		return;
	if (p->mainq != NULL) {
		rd_kafka_queue_io_event_enable(p->mainq, -1, NULL, 0);
		rd_kafka_queue_destroy(p->mainq);
	}
	if (p->ev != NULL)
		event_free(p->ev);
	if (p->release_ev != NULL)
		event_free(p->release_ev);
	while (p->held != NULL) { /* not flushed: dropped, as librdkafka's queue */
		struct held *h = p->held;

		p->held = h->next;
		held_free(h);
	}
	for (size_t i = 0; p->topics != NULL && p->topics[i] != NULL; i++)
		rd_kafka_topic_destroy(p->topics[i]);
	free(p->topics);
	if (p->rk != NULL)
		rd_kafka_destroy(p->rk);
	bus_pipe_close(p->pipefd);
	free(p);
}
