/*
 * bus_leave_group: sw_bus_consumer_close() leaves the group (LeaveGroup),
 * so the remaining member takes over every partition at once instead of
 * after the departed member's session timeout.
 *
 * The session timeout is set to 10 minutes and the wait to 2: only a real
 * LeaveGroup lets the second member get all partitions in time.
 *
 * On the way, sw_bus_consumer_owns() agrees with each assignment: every
 * partition owned by exactly one member while both are in, none by a closed
 * member, all by the one left; never a partition of another topic.
 */
#include "bus_real.h"

#define PARTS 4
#define N 80

static const char *const cextra[] = {"session.timeout.ms=600000", "max.poll.interval.ms=600000",
				     "heartbeat.interval.ms=1000", NULL};

static struct sw_bus_consumer *consumer(struct event_base *base, const char *bootstrap,
					const char *group, const char *topic, struct sink *s)
{
	const char *topics[] = {topic, NULL};
	char err[512];

	s->c = sw_bus_consumer_new(base, bootstrap, group, topics, cextra, 16, sink_cb, s, err,
				   sizeof(err));
	SW_CHECKF(s->c != NULL, "%s", err);
	sw_bus_consumer_set_error_cb(s->c, real_err_cb, NULL);
	return s->c;
}

struct pair {
	struct sw_bus_consumer *a, *b;
};

static int split(void *arg)
{
	struct pair *p = arg;
	int na = sw_bus_consumer_assigned(p->a), nb = sw_bus_consumer_assigned(p->b);

	return na > 0 && nb > 0 && na + nb == PARTS;
}

/* How many of the topic's partitions c says it owns. */
static int owned(const struct sw_bus_consumer *c, const char *topic)
{
	int n = 0;

	for (int i = 0; i < PARTS; i++)
		n += sw_bus_consumer_owns(c, topic, i);
	return n;
}

static int all_parts(void *arg)
{
	return sw_bus_consumer_assigned(arg) == PARTS;
}

int main(void)
{
	const char *bootstrap = real_bootstrap();
	struct event_base *base = event_base_new();
	struct sink a = {0}, b = {0};
	struct sw_bus_producer *p;
	struct drs d = {0};
	struct pair pr;
	char topic[96], group[96], err[512];
	int seen[PARTS] = {0};

	real_name(topic, sizeof(topic), "sw.test.leave");
	real_name(group, sizeof(group), "sw.test.leave.g");
	real_topic_create(bootstrap, topic, PARTS);

	consumer(base, bootstrap, group, topic, &a);
	SW_CHECKF(run_until(base, all_parts, a.c, 120), "A assigned %d",
		  sw_bus_consumer_assigned(a.c));
	consumer(base, bootstrap, group, topic, &b);
	pr.a = a.c;
	pr.b = b.c;
	SW_CHECKF(run_until(base, split, &pr, 120), "A %d, B %d", sw_bus_consumer_assigned(a.c),
		  sw_bus_consumer_assigned(b.c));

	for (int i = 0; i < PARTS; i++)
		SW_CHECKF(
		    sw_bus_consumer_owns(a.c, topic, i) + sw_bus_consumer_owns(b.c, topic, i) == 1,
		    "partition %d owned by A %d, B %d", i, sw_bus_consumer_owns(a.c, topic, i),
		    sw_bus_consumer_owns(b.c, topic, i));
	SW_CHECK(owned(a.c, topic) == sw_bus_consumer_assigned(a.c));
	SW_CHECK(owned(b.c, topic) == sw_bus_consumer_assigned(b.c));
	SW_CHECK(!sw_bus_consumer_owns(a.c, "sw.test.not.this.topic", 0));
	SW_CHECK(!sw_bus_consumer_owns(NULL, topic, 0));

	SW_CHECK(sw_bus_consumer_close(a.c) == 0);
	SW_CHECK(sw_bus_consumer_assigned(a.c) == -1);
	SW_CHECK(owned(a.c, topic) == 0);
	SW_CHECKF(run_until(base, all_parts, b.c, 120), "B assigned %d after A left",
		  sw_bus_consumer_assigned(b.c));
	SW_CHECKF(owned(b.c, topic) == PARTS, "B owns %d of %d", owned(b.c, topic), PARTS);
	SW_CHECK(!sw_bus_consumer_owns(b.c, topic, PARTS));

	/* and B really consumes all of them */
	p = sw_bus_producer_new(base, bootstrap, "leave-group", NULL, drs_cb, &d, err,
				sizeof(err));
	SW_CHECKF(p != NULL, "%s", err);
	produce_seq(p, topic, 0, N, 16);
	RUN_UNTIL_COUNT(base, &d.ok, N, 120);
	RUN_UNTIL_COUNT(base, &b.n, N, 120);
	run_until(base, NULL, NULL, 1.0);
	check_seq(&b, 0, N, 16);
	for (size_t i = 0; i < b.n; i++)
		seen[b.r[i].partition & (PARTS - 1)] = b.r[i].partition < PARTS;
	for (int i = 0; i < PARTS; i++)
		SW_CHECKF(seen[i], "nothing from partition %d", i);
	SW_CHECK(a.n == 0);

	SW_CHECK(sw_bus_consumer_close(b.c) == 0);
	sw_bus_consumer_destroy(b.c);
	sw_bus_consumer_destroy(a.c);
	sw_bus_producer_destroy(p);
	sink_reset(&a);
	sink_reset(&b);
	event_base_free(base);
	printf("bus_leave_group: ok\n");
	return 0;
}
