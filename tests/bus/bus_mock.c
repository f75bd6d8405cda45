/*
 * bus_mock: sw_bus against librdkafka's mock cluster, one case per run
 * (argv[1]): roundtrip, batch, commit, deadletter, pause, brokerdown, api.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bus_test.h"

struct mock {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	char bootstrap[512];
	int brokers;
};

static void mock_start(struct mock *m, int brokers)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];

	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	SW_CHECKF(m->rk != NULL, "%s", err);
	m->mc = rd_kafka_mock_cluster_new(m->rk, brokers);
	SW_CHECK(m->mc != NULL);
	snprintf(m->bootstrap, sizeof(m->bootstrap), "%s",
		 rd_kafka_mock_cluster_bootstraps(m->mc));
	m->brokers = brokers;
}

static void mock_topic(struct mock *m, const char *topic, int partitions)
{
	SW_CHECK(rd_kafka_mock_topic_create(m->mc, topic, partitions,
					    m->brokers < 3 ? m->brokers : 3) == 0);
}

static void mock_stop(struct mock *m)
{
	rd_kafka_mock_cluster_destroy(m->mc);
	rd_kafka_destroy(m->rk);
}

static const char *const pextra[] = {"statistics.interval.ms=100", NULL};
static const char *const cextra[] = {"session.timeout.ms=6000", "heartbeat.interval.ms=500", NULL};

static size_t nerrors;

static void err_cb(int fatal, const char *reason, void *opaque)
{
	(void)opaque;
	nerrors++;
	fprintf(stderr, "bus error (%s): %s\n", fatal ? "fatal" : "transient", reason);
	SW_CHECKF(!fatal, "fatal client error: %s", reason);
}

static struct sw_bus_producer *producer(struct event_base *base, struct mock *m, struct drs *d,
					const char *const *extra)
{
	char err[512];
	struct sw_bus_producer *p;

	p = sw_bus_producer_new(base, m->bootstrap, "bus-mock", extra ? extra : pextra, drs_cb, d,
				err, sizeof(err));
	SW_CHECKF(p != NULL, "%s", err);
	sw_bus_producer_set_error_cb(p, err_cb, NULL);
	return p;
}

static struct sw_bus_consumer *consumer(struct event_base *base, struct mock *m, const char *group,
					const char *topic, size_t max_batch, struct sink *s)
{
	const char *topics[] = {topic, NULL};
	char err[512];

	s->c = sw_bus_consumer_new(base, m->bootstrap, group, topics, cextra, max_batch, sink_cb,
				   s, err, sizeof(err));
	SW_CHECKF(s->c != NULL, "%s", err);
	sw_bus_consumer_set_error_cb(s->c, err_cb, NULL);
	return s->c;
}

/* Produce, consume through the loop, check order, keys and headers; the
 * producer stays idempotent even when extra asks otherwise. */
static void t_roundtrip(void)
{
	static const char *const weak[] = {"statistics.interval.ms=100",
					   "enable.idempotence=false", "acks=1", NULL};
	struct event_base *base = event_base_new();
	struct drs d = {0};
	struct sink s = {0};
	struct sw_bus_producer *p;
	struct idemp_wait w = {0};
	struct mock m;

	mock_start(&m, 1);
	mock_topic(&m, "t.rt", 4);
	p = producer(base, &m, &d, weak);
	produce_seq(p, "t.rt", 0, 200, 10);
	RUN_UNTIL_COUNT(base, &d.ok, 200, 60);
	SW_CHECKF(d.failed == 0, "%s", d.last_err);
	SW_CHECK(sw_bus_producer_outq(p) == 0);
	w.p = p;
	SW_CHECKF(run_until(base, idemp_assigned, &w, 30), "idemp_state %s", w.state);
	SW_CHECKF(w.pid >= 0, "producer id %" PRId64, w.pid);

	consumer(base, &m, "g.rt", "t.rt", 16, &s);
	RUN_UNTIL_COUNT(base, &s.n, 200, 60);
	run_until(base, NULL, NULL, 0.3); /* anything extra would be a duplicate */
	check_seq(&s, 0, 200, 10);
	SW_CHECK(s.biggest <= 16);

	SW_CHECK(sw_bus_consumer_close(s.c) == 0);
	sw_bus_consumer_destroy(s.c);
	sw_bus_producer_destroy(p);
	sink_reset(&s);
	event_base_free(base);
	mock_stop(&m);
}

/* Messages already waiting are delivered in batches of at most max_batch;
 * the queue's wake-up fires once, so the rest must come by re-arming. */
static void t_batch(void)
{
	struct event_base *base = event_base_new();
	struct drs d = {0};
	struct sink s = {0};
	struct sw_bus_producer *p;
	struct mock m;

	mock_start(&m, 1);
	mock_topic(&m, "t.batch", 1);
	p = producer(base, &m, &d, NULL);
	produce_seq(p, "t.batch", 0, 23, 1);
	SW_CHECK(sw_bus_producer_flush(p, 30000) == 0);
	SW_CHECK(d.ok == 23);

	consumer(base, &m, "g.batch", "t.batch", 5, &s);
	RUN_UNTIL_COUNT(base, &s.n, 23, 30);
	check_seq(&s, 0, 23, 1);
	for (size_t i = 0; i < s.n; i++)
		SW_CHECK(s.r[i].offset == (int64_t)i);
	SW_CHECKF(s.biggest == 5, "largest batch %zu", s.biggest);
	SW_CHECK(s.batches >= 5);

	sw_bus_consumer_destroy(s.c);
	sw_bus_producer_destroy(p);
	sink_reset(&s);
	event_base_free(base);
	mock_stop(&m);
}

/* A tail reader sees every partition from where the topic ended when it
 * was made: nothing older, everything newer, in order per partition; two
 * tails both see everything (no group shares the work); store refuses. */
static void t_tail(void)
{
	const char *topics[] = {"t.tail", NULL};
	struct event_base *base = event_base_new();
	struct drs d = {0};
	struct sink s1 = {0}, s2 = {0};
	struct sw_bus_producer *p;
	char err[512];
	struct mock m;

	mock_start(&m, 1);
	mock_topic(&m, "t.tail", 4);
	p = producer(base, &m, &d, NULL);
	produce_seq(p, "t.tail", 0, 40, 8); /* before: never seen */
	SW_CHECK(sw_bus_producer_flush(p, 30000) == 0);
	s1.c = sw_bus_tail_new(base, m.bootstrap, topics, NULL, 16, sink_cb, &s1, err, sizeof(err));
	SW_CHECKF(s1.c != NULL, "%s", err);
	s2.c = sw_bus_tail_new(base, m.bootstrap, topics, NULL, 16, sink_cb, &s2, err, sizeof(err));
	SW_CHECKF(s2.c != NULL, "%s", err);
	SW_CHECK(sw_bus_consumer_assigned(s1.c) == 4);
	produce_seq(p, "t.tail", 40, 60, 8); /* after: seen by both */
	RUN_UNTIL_COUNT(base, &s1.n, 20, 30);
	RUN_UNTIL_COUNT(base, &s2.n, 20, 30);
	check_seq(&s1, 40, 60, 8);
	check_seq(&s2, 40, 60, 8);
	{
		struct sw_bus_msg fake = {.topic = "t.tail", .partition = 0, .offset = 1};

		SW_CHECK(sw_bus_consumer_store(s1.c, &fake) == -1);
		SW_CHECK(sw_bus_consumer_commit(s1.c) == -1);
	}
	SW_CHECK(sw_bus_consumer_close(s1.c) == 0);
	sw_bus_consumer_destroy(s1.c);
	sw_bus_consumer_destroy(s2.c);
	sw_bus_producer_destroy(p);
	sink_reset(&s1);
	sink_reset(&s2);
	event_base_free(base);
	mock_stop(&m);
}

static void store_nine(struct sink *s, const struct sw_bus_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (msgs[i].offset == 9)
			SW_CHECK(sw_bus_consumer_store(s->c, &msgs[i]) == 0);
}

struct commits {
	size_t ok, failed;
};

static void commit_cb(const char *err, void *opaque)
{
	struct commits *cm = opaque;

	if (err == NULL)
		cm->ok++;
	else
		cm->failed++;
}

/* Stored offsets are what a restarted member resumes from: committed
 * messages are not redelivered, uncommitted ones are. */
static void t_commit(void)
{
	struct event_base *base = event_base_new();
	struct drs d = {0};
	struct sink s = {0};
	struct commits cm = {0};
	struct sw_bus_producer *p;
	struct mock m;

	mock_start(&m, 1);
	mock_topic(&m, "t.commit", 1);
	p = producer(base, &m, &d, NULL);
	produce_seq(p, "t.commit", 0, 20, 1);
	SW_CHECK(sw_bus_producer_flush(p, 30000) == 0);

	/* A processes everything but stores only up to offset 9, then closes
	 * (synchronous commit). */
	consumer(base, &m, "g.commit", "t.commit", 4, &s);
	s.hook = store_nine;
	RUN_UNTIL_COUNT(base, &s.n, 20, 30);
	SW_CHECK(sw_bus_consumer_store_at(s.c, "t.commit", 3, 0) == -1); /* not assigned */
	SW_CHECK(sw_bus_consumer_close(s.c) == 0);
	SW_CHECK(sw_bus_consumer_close(s.c) == 0); /* idempotent */
	sw_bus_consumer_destroy(s.c);
	sink_reset(&s);

	/* B resumes at 10, stores 14 and commits asynchronously, then dies
	 * without closing. */
	consumer(base, &m, "g.commit", "t.commit", 4, &s);
	sw_bus_consumer_set_commit_cb(s.c, commit_cb, &cm);
	RUN_UNTIL_COUNT(base, &s.n, 10, 30);
	run_until(base, NULL, NULL, 0.3);
	SW_CHECKF(s.n == 10, "B got %zu", s.n);
	for (size_t i = 0; i < s.n; i++)
		SW_CHECKF(s.r[i].offset == (int64_t)(10 + i), "B got offset %" PRId64,
			  s.r[i].offset);
	SW_CHECK(sw_bus_consumer_store_at(s.c, "t.commit", 0, 14) == 0);
	SW_CHECK(sw_bus_consumer_commit(s.c) == 0);
	RUN_UNTIL_COUNT(base, &cm.ok, 1, 30);
	SW_CHECK(cm.failed == 0);
	sw_bus_consumer_destroy(s.c);
	sink_reset(&s);

	/* C gets exactly the uncommitted tail 15..19. */
	consumer(base, &m, "g.commit", "t.commit", 4, &s);
	RUN_UNTIL_COUNT(base, &s.n, 5, 30);
	run_until(base, NULL, NULL, 0.3);
	SW_CHECKF(s.n == 5, "C got %zu", s.n);
	for (size_t i = 0; i < s.n; i++)
		SW_CHECKF(s.r[i].offset == (int64_t)(15 + i), "C got offset %" PRId64,
			  s.r[i].offset);
	sw_bus_consumer_destroy(s.c);
	sink_reset(&s);

	sw_bus_producer_destroy(p);
	event_base_free(base);
	mock_stop(&m);
}

static struct sw_bus_producer *dl_producer;

static void deadletter_all(struct sink *s, const struct sw_bus_msg *msgs, size_t n)
{
	char err[256];

	(void)s;
	for (size_t i = 0; i < n; i++)
		SW_CHECKF(sw_bus_deadletter(dl_producer, &msgs[i], "undecodable: bad magic", NULL,
					    err, sizeof(err)) == 0,
			  "%s", err);
}

static void check_header(const struct sw_bus_msg *m, const char *name, const char *want)
{
	size_t len;
	const char *v = sw_bus_msg_header(m, name, &len);

	SW_CHECKF(v != NULL, "header %s missing", name);
	SW_CHECKF(len == strlen(want) && memcmp(v, want, len) == 0, "header %s: %.*s", name,
		  (int)len, v);
}

static int dl_checked;

static void check_deadletter(struct sink *s, const struct sw_bus_msg *msgs, size_t n)
{
	static const unsigned char body[] = {0xc3, 0x01, 0x00, 0xff, 0x00, 'x'};
	size_t len;

	(void)s;
	for (size_t i = 0; i < n; i++) {
		const struct sw_bus_msg *m = &msgs[i];
		int binary = m->key_len == 5 && memcmp(m->key, "run-7", 5) == 0;

		SW_CHECK(binary || (m->key_len == 5 && memcmp(m->key, "run-6", 5) == 0));
		if (binary)
			SW_CHECK(m->len == sizeof(body) && memcmp(m->value, body, m->len) == 0);
		else
			SW_CHECK(m->len == 2 && memcmp(m->value, "ok", 2) == 0);
		check_header(m, "sagewai.reason", "undecodable: bad magic");
		check_header(m, "sagewai.topic", "t.dl");
		check_header(m, "sagewai.partition", "0");
		check_header(m, "sagewai.offset", binary ? "1" : "0");
		SW_CHECK(sw_bus_msg_header(m, "no.such", &len) == NULL && len == 0);
		dl_checked++;
	}
}

/* A message sent to the dead-letter topic keeps its key and exact bytes
 * and says where it came from and why. */
static void t_deadletter(void)
{
	static const unsigned char body[] = {0xc3, 0x01, 0x00, 0xff, 0x00, 'x'};
	struct event_base *base = event_base_new();
	struct drs d = {0};
	struct sink s = {0}, dl = {0};
	char err[256];
	struct mock m;

	mock_start(&m, 1);
	mock_topic(&m, "t.dl", 1);
	mock_topic(&m, SW_TOPIC_DEADLETTER, 1);
	dl_producer = producer(base, &m, &d, NULL);
	SW_CHECK(sw_bus_produce(dl_producer, "t.dl", "run-6", "ok", 2, NULL, NULL, err,
				sizeof(err)) == 0);
	SW_CHECK(sw_bus_produce(dl_producer, "t.dl", "run-7", body, sizeof(body), NULL, NULL, err,
				sizeof(err)) == 0);
	SW_CHECK(sw_bus_producer_flush(dl_producer, 30000) == 0);

	consumer(base, &m, "g.dl", "t.dl", 8, &s);
	s.hook = deadletter_all;
	RUN_UNTIL_COUNT(base, &s.n, 2, 30);
	RUN_UNTIL_COUNT(base, &d.ok, 4, 30);
	SW_CHECK(d.failed == 0);

	consumer(base, &m, "g.dl.reader", SW_TOPIC_DEADLETTER, 1, &dl);
	dl.hook = check_deadletter;
	RUN_UNTIL_COUNT(base, &dl.n, 2, 30);
	SW_CHECK(dl_checked == 2);

	sw_bus_consumer_destroy(dl.c);
	sw_bus_consumer_destroy(s.c);
	sw_bus_producer_destroy(dl_producer);
	sink_reset(&s);
	sink_reset(&dl);
	event_base_free(base);
	mock_stop(&m);
}

static void pause_after_first(struct sink *s, const struct sw_bus_msg *msgs, size_t n)
{
	(void)msgs;
	(void)n;
	if (s->batches == 1)
		sw_bus_consumer_pause(s->c);
}

static int assigned_two(void *arg)
{
	return sw_bus_consumer_assigned(arg) == 2;
}

/* Paused, nothing is delivered (whether paused before or after the
 * assignment); resumed, the rest arrives in order, nothing twice. */
static void t_pause(void)
{
	struct event_base *base = event_base_new();
	struct drs d = {0};
	struct sink s = {0};
	struct sw_bus_producer *p;
	size_t first;
	struct mock m;

	mock_start(&m, 1);
	mock_topic(&m, "t.pause", 2);
	p = producer(base, &m, &d, NULL);
	produce_seq(p, "t.pause", 0, 40, 4);
	SW_CHECK(sw_bus_producer_flush(p, 30000) == 0);

	/* paused from inside the first batch */
	consumer(base, &m, "g.pause", "t.pause", 2, &s);
	s.hook = pause_after_first;
	RUN_UNTIL_COUNT(base, &s.batches, 1, 30);
	first = s.n;
	run_until(base, NULL, NULL, 1.5);
	SW_CHECKF(s.n == first, "delivered %zu while paused", s.n - first);
	sw_bus_consumer_resume(s.c);
	RUN_UNTIL_COUNT(base, &s.n, 40, 30);
	run_until(base, NULL, NULL, 0.3);
	check_seq(&s, 0, 40, 4);
	sw_bus_consumer_destroy(s.c);
	sink_reset(&s);

	/* paused before the group assigned anything */
	consumer(base, &m, "g.pause2", "t.pause", 8, &s);
	sw_bus_consumer_pause(s.c);
	SW_CHECKF(run_until(base, assigned_two, s.c, 60), "assigned %d",
		  sw_bus_consumer_assigned(s.c));
	run_until(base, NULL, NULL, 1.5);
	SW_CHECKF(s.n == 0, "delivered %zu while paused", s.n);
	sw_bus_consumer_resume(s.c);
	RUN_UNTIL_COUNT(base, &s.n, 40, 30);
	run_until(base, NULL, NULL, 0.3);
	check_seq(&s, 0, 40, 4);
	sw_bus_consumer_destroy(s.c);
	sink_reset(&s);

	sw_bus_producer_destroy(p);
	event_base_free(base);
	mock_stop(&m);
}

/* A broker leading some partitions goes down mid-stream and comes back:
 * the idempotent producer loses nothing and keeps each key's order. (That
 * nothing is written twice needs a real broker: see kafka_compat.) */
static void t_brokerdown(void)
{
	struct event_base *base = event_base_new();
	struct drs d = {0};
	struct sink s = {0};
	struct sw_bus_producer *p;
	struct mock m;
	const int n = 2000;
	size_t dups;

	mock_start(&m, 3);
	mock_topic(&m, "t.down", 6);
	for (int i = 0; i < 6; i++)
		SW_CHECK(rd_kafka_mock_partition_set_leader(m.mc, "t.down", i, 1 + i % 3) == 0);
	p = producer(base, &m, &d, NULL);
	produce_seq(p, "t.down", 0, n / 2, 20);
	RUN_UNTIL_COUNT(base, &d.ok, 100, 30);
	/* responses delayed, so that requests are in flight when it goes down
	 * (set before the second half: set after it, on a quick box the half
	 * was delivered whole before the delay took effect) */
	SW_CHECK(rd_kafka_mock_broker_set_rtt(m.mc, 2, 300) == 0);
	produce_seq(p, "t.down", n / 2, n, 20);
	run_until(base, NULL, NULL, 0.1);
	SW_CHECK(rd_kafka_mock_broker_set_down(m.mc, 2) == 0);
	SW_CHECK(rd_kafka_mock_broker_set_rtt(m.mc, 2, 0) == 0);
	run_until(base, NULL, NULL, 1.0);
	SW_CHECKF(d.ok < (size_t)n, "all delivered with broker 2 down?");
	SW_CHECK(rd_kafka_mock_broker_set_up(m.mc, 2) == 0);
	RUN_UNTIL_COUNT(base, &d.ok, (size_t)n, 120);
	SW_CHECKF(d.failed == 0, "%s", d.last_err);

	consumer(base, &m, "g.down", "t.down", 64, &s);
	RUN_UNTIL_COUNT(base, &s.n, (size_t)n, 60);
	/* the log may hold retried copies, which count in s.n: read until
	 * nothing more comes, or a record not yet read looks lost */
	{
		size_t last;

		do {
			last = s.n;
			run_until(base, NULL, NULL, 1.0);
		} while (s.n != last);
	}
	dups = check_seq_dups(&s, 0, n, 20, 1);
	if (dups > 0)
		printf("note: the mock log holds %zu retried copies (it deduplicates only "
		       "transactional producers)\n",
		       dups);

	sw_bus_consumer_destroy(s.c);
	sw_bus_producer_destroy(p);
	sink_reset(&s);
	event_base_free(base);
	mock_stop(&m);
}

/* Bad arguments and properties are refused with a reason. */
static void t_api(void)
{
	struct event_base *base = event_base_new();
	const char *topics[] = {"t", NULL}, *none[] = {NULL};
	const char *bad1[] = {"nonsense", NULL}, *bad2[] = {"no.such.property=1", NULL};
	char err[256];
	struct sink s = {0};

	for (const char *const *t = sw_bus_topics; *t != NULL; t++)
		SW_CHECK(strncmp(*t, "sagewai.", 8) == 0);
	SW_CHECK(sw_bus_topics[11] != NULL &&
		 sw_bus_topics[12] == NULL); /* infra/kafka/topics.tsv */

	err[0] = '\0';
	SW_CHECK(sw_bus_producer_new(base, "", "x", NULL, NULL, NULL, err, sizeof(err)) == NULL);
	SW_CHECK(err[0] != '\0');
	err[0] = '\0';
	SW_CHECK(sw_bus_producer_new(base, "127.0.0.1:1", "x", bad1, NULL, NULL, err,
				     sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "nonsense") != NULL, "%s", err);
	err[0] = '\0';
	SW_CHECK(sw_bus_producer_new(base, "127.0.0.1:1", "x", bad2, NULL, NULL, err,
				     sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "no.such.property") != NULL, "%s", err);
	err[0] = '\0';
	SW_CHECK(sw_bus_consumer_new(base, "127.0.0.1:1", "g", none, NULL, 4, sink_cb, &s, err,
				     sizeof(err)) == NULL);
	SW_CHECK(err[0] != '\0');
	SW_CHECK(sw_bus_consumer_new(base, "127.0.0.1:1", "g", topics, NULL, 0, sink_cb, &s, err,
				     sizeof(err)) == NULL);
	SW_CHECK(sw_bus_consumer_new(base, "127.0.0.1:1", "", topics, NULL, 4, sink_cb, &s, err,
				     sizeof(err)) == NULL);
	SW_CHECK(sw_bus_consumer_new(base, "127.0.0.1:1", "g", topics, bad2, 4, sink_cb, &s, err,
				     sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "no.such.property") != NULL, "%s", err);
	event_base_free(base);
}

/* Delivery reports in the order they came: the message's number. */
struct gdrs {
	int order[512];
	size_t n, failed;
};

static void gdrs_cb(const char *err, void *msg_opaque, void *opaque)
{
	struct gdrs *d = opaque;

	if (err != NULL)
		d->failed++;
	if (d->n < sizeof(d->order) / sizeof(d->order[0]))
		d->order[d->n] = (int)(intptr_t)msg_opaque;
	d->n++;
}

static void gproduce(struct sw_bus_producer *p, int from, int to)
{
	char key[32], val[32], hv[32], err[256];

	for (int i = from; i < to; i++) {
		const char *hdrs[] = {"h", hv, NULL};

		snprintf(key, sizeof(key), "run-%d", i % 10);
		snprintf(val, sizeof(val), "v-%d", i);
		snprintf(hv, sizeof(hv), "x-%d", i);
		SW_CHECKF(sw_bus_produce(p, "t.gather", key, val, strlen(val), hdrs,
					 (void *)(intptr_t)i, err, sizeof(err)) == 0,
			  "%s", err);
	}
}

/* A gathering producer: what is produced in one pass of the loop is held
 * until the pass ends; what is produced while a burst is out goes only
 * once all of it is delivered; order per key holds, nothing is lost or
 * doubled; flush and turning gathering off hand the held over; bad
 * arguments are refused at once. */
static void t_gather(void)
{
	struct event_base *base = event_base_new();
	struct gdrs d = {0};
	struct sink s = {0};
	struct sw_bus_producer *p;
	struct mock m;
	char err[512];
	size_t i, last_first = 0, first_second = (size_t)-1;

	mock_start(&m, 1);
	mock_topic(&m, "t.gather", 4);
	p = sw_bus_producer_new(base, m.bootstrap, "bus-mock", pextra, gdrs_cb, &d, err,
				sizeof(err));
	SW_CHECKF(p != NULL, "%s", err);
	sw_bus_producer_set_error_cb(p, err_cb, NULL);
	sw_bus_producer_gather(p, 1);
	SW_CHECK(sw_bus_produce(p, NULL, "k", "v", 1, NULL, NULL, err, sizeof(err)) == -1);
	SW_CHECK(sw_bus_produce(p, "t.gather", "k", NULL, 3, NULL, NULL, err, sizeof(err)) == -1);

	gproduce(p, 0, 100);
	SW_CHECKF(sw_bus_producer_outq(p) == 100, "outq %d", sw_bus_producer_outq(p));
	SW_CHECK(d.n == 0);
	event_base_loop(base, EVLOOP_NONBLOCK); /* the pass ends: the first burst goes */
	gproduce(p, 100, 200);			/* held: the first is out */
	SW_CHECKF(sw_bus_producer_outq(p) == 200, "outq %d", sw_bus_producer_outq(p));
	RUN_UNTIL_COUNT(base, &d.n, 200, 60);
	SW_CHECK(d.failed == 0);
	for (i = 0; i < 200; i++) {
		if (d.order[i] < 100)
			last_first = i;
		else if (first_second == (size_t)-1)
			first_second = i;
	}
	SW_CHECKF(last_first < first_second,
		  "a report of the second burst (at %zu) before the"
		  " first's last (at %zu)",
		  first_second, last_first);
	SW_CHECK(sw_bus_producer_outq(p) == 0);

	gproduce(p, 200, 223); /* held, then flushed */
	SW_CHECK(sw_bus_producer_flush(p, 30000) == 0);
	SW_CHECKF(d.n == 223, "%zu delivered", d.n);
	gproduce(p, 223, 228); /* held, then handed over as gathering stops */
	sw_bus_producer_gather(p, 0); /* in librdkafka's queue now, not yet reported */
	SW_CHECKF(sw_bus_producer_outq(p) == 5, "outq %d", sw_bus_producer_outq(p));
	RUN_UNTIL_COUNT(base, &d.n, 228, 30);
	SW_CHECK(d.failed == 0);

	consumer(base, &m, "g.gather", "t.gather", 64, &s);
	RUN_UNTIL_COUNT(base, &s.n, 228, 60);
	run_until(base, NULL, NULL, 0.3); /* anything extra would be a duplicate */
	check_seq(&s, 0, 228, 10);

	sw_bus_consumer_destroy(s.c);
	sw_bus_producer_destroy(p);
	sink_reset(&s);
	event_base_free(base);
	mock_stop(&m);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
	    {"roundtrip", t_roundtrip},
	    {"batch", t_batch},
	    {"commit", t_commit},
	    {"deadletter", t_deadletter},
	    {"pause", t_pause},
	    {"brokerdown", t_brokerdown},
	    {"api", t_api},
	    {"tail", t_tail},
	    {"gather", t_gather},
	};

	if (argc != 2) {
		fprintf(stderr, "usage: bus_mock CASE\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].fn();
			printf("bus_mock %s: ok (%zu transient errors reported)\n", argv[1],
			       nerrors);
			return 0;
		}
	}
	fprintf(stderr, "bus_mock: no case %s\n", argv[1]);
	return 2;
}
