/*
 * kafka_compat: sw_bus against the harness's real Kafka broker.
 *
 * Proves what librdkafka 2.0.2 could silently switch off against a broker
 * that dropped old protocol versions (KIP-896, librdkafka#4948): the
 * producer really holds a producer id (idempotence on), messages
 * round-trip through a consumer group in order with nothing lost or
 * doubled, and committed offsets are honoured by the group's next member.
 *
 * Against another broker: write an env file with SAGEWAI_KAFKA_BOOTSTRAP=
 * and run with SW_HARNESS_ENV pointing at it (docs/KAFKA.md).
 */
#include "bus_real.h"

#define N 600
#define HALF (N / 2)
#define KEYS 12

static void store_first_half(struct sink *s, const struct sw_bus_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int seq;

		SW_CHECK(msgs[i].len < 32);
		SW_CHECK(sscanf((const char *)msgs[i].value, "v-%d", &seq) == 1);
		/* in order within a partition, so the stored offsets cover
		 * exactly the messages of the first half */
		if (seq < HALF)
			SW_CHECK(sw_bus_consumer_store(s->c, &msgs[i]) == 0);
	}
}

static struct sw_bus_consumer *consumer(struct event_base *base, const char *bootstrap,
					const char *group, const char *topic, struct sink *s)
{
	const char *topics[] = {topic, NULL};
	char err[512];

	s->c = sw_bus_consumer_new(base, bootstrap, group, topics, NULL, 32, sink_cb, s, err,
				   sizeof(err));
	SW_CHECKF(s->c != NULL, "%s", err);
	sw_bus_consumer_set_error_cb(s->c, real_err_cb, NULL);
	return s->c;
}

int main(void)
{
	static const char *const pextra[] = {"statistics.interval.ms=200", NULL};
	const char *bootstrap = real_bootstrap();
	const char *version = getenv("SW_KAFKA_VERSION");
	struct event_base *base = event_base_new();
	struct idemp_wait w = {0};
	struct sw_bus_producer *p;
	struct sink s = {0};
	struct drs d = {0};
	char topic[96], group[96], err[512];

	real_name(topic, sizeof(topic), "sw.test.compat");
	real_name(group, sizeof(group), "sw.test.compat.g");
	real_topic_create(bootstrap, topic, 3);

	p = sw_bus_producer_new(base, bootstrap, "kafka-compat", pextra, drs_cb, &d, err,
				sizeof(err));
	SW_CHECKF(p != NULL, "%s", err);
	sw_bus_producer_set_error_cb(p, real_err_cb, NULL);
	produce_seq(p, topic, 0, N, KEYS);
	RUN_UNTIL_COUNT(base, &d.ok, N, 120);
	SW_CHECKF(d.failed == 0, "%zu failed: %s", d.failed, d.last_err);

	/* idempotence really on: the broker gave us a producer id */
	w.p = p;
	SW_CHECKF(run_until(base, idemp_assigned, &w, 60), "idemp_state \"%s\"", w.state);
	SW_CHECKF(w.pid >= 0, "producer_id %" PRId64, w.pid);
	printf("kafka_compat: broker %s at %s: idemp_state %s, producer_id %" PRId64 "\n",
	       version ? version : "?", bootstrap, w.state, w.pid);

	/* the group reads everything once, in order; stores the first half */
	consumer(base, bootstrap, group, topic, &s);
	s.hook = store_first_half;
	RUN_UNTIL_COUNT(base, &s.n, N, 120);
	run_until(base, NULL, NULL, 1.0);
	check_seq(&s, 0, N, KEYS);
	SW_CHECK(sw_bus_consumer_assigned(s.c) == 3);
	SW_CHECK(sw_bus_consumer_close(s.c) == 0);
	sw_bus_consumer_destroy(s.c);
	sink_reset(&s);

	/* the group's next member starts at the committed offsets */
	consumer(base, bootstrap, group, topic, &s);
	RUN_UNTIL_COUNT(base, &s.n, N - HALF, 120);
	run_until(base, NULL, NULL, 2.0);
	check_seq(&s, HALF, N, KEYS);
	SW_CHECK(sw_bus_consumer_close(s.c) == 0);
	sw_bus_consumer_destroy(s.c);
	sink_reset(&s);

	sw_bus_producer_destroy(p);
	event_base_free(base);
	printf("kafka_compat: ok (%d produced idempotently, %d resumed after commit)\n", N,
	       N - HALF);
	return 0;
}
