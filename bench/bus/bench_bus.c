/*
 * bench-bus: one hop through libs/bus beside one hop through raw
 * librdkafka, on the same broker, in the same process and run.
 *
 *   bench-bus --bootstrap B [--rounds N] [--messages M]
 *
 * Each round first times M raw hops (sw_bench_rt_once: an idempotent
 * producer with linger 0 and a consumer polled by a blocking thread), then
 * M hops through the bus library as every service uses it (sw_bus_produce
 * with the services' producer defaults; a tail reader woken through the
 * consumer queue's pipe on a libevent loop), one message at a time: each
 * hop is timed from the produce call to the callback that receives it.
 * Both use topic bench.roundtrip, outside sagewai.*, so nothing of ours
 * reads or audits it. One JSON line per round and figure (the hop's p50
 * and p90, with the raw hop's as the baseline).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "sw_bench.h"
#include "sw_bus.h"
#include "sw_core.h"

#define TOPIC "bench.roundtrip"
#define MAX_MESSAGES 100000

struct pingpong {
	struct event_base *base;
	struct sw_bus_producer *prod;
	int64_t sent_ns, *lat;
	size_t n, want;
	uint64_t cur;
	int failed;
};

static void send_one(struct pingpong *pp)
{
	char err[256];

	pp->cur++;
	pp->sent_ns = sw_mono_ns();
	if (sw_bus_produce(pp->prod, TOPIC, "k", &pp->cur, sizeof(pp->cur), NULL, NULL, err,
			   sizeof(err)) == -1) {
		fprintf(stderr, "bench-bus: produce: %s\n", err);
		pp->failed = 1;
		event_base_loopbreak(pp->base);
	}
}

static void on_batch(const struct sw_bus_msg *m, size_t k, void *opaque)
{
	struct pingpong *pp = opaque;
	uint64_t v;

	for (size_t i = 0; i < k; i++) {
		if (m[i].len != sizeof(v))
			continue;
		memcpy(&v, m[i].value, sizeof(v));
		if (v != pp->cur)
			continue; /* a raw hop's message, or an earlier round's */
		pp->lat[pp->n++] = sw_mono_ns() - pp->sent_ns;
		if (pp->n == pp->want) {
			event_base_loopbreak(pp->base);
			return;
		}
		send_one(pp);
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void line(const char *figure, int round, int64_t v, int64_t base)
{
	printf("{\"bench\": \"bus\", \"figure\": \"%s\", \"round\": %d, \"value\": %.3f, "
	       "\"unit\": \"ms\", \"baseline\": %.3f, \"ratio\": %.3f}\n",
	       figure, round, (double)v / 1e6, (double)base / 1e6,
	       base > 0 ? (double)v / (double)base : 0.0);
}

int main(int argc, char **argv)
{
	static const char *const topics[] = {TOPIC, NULL};
	const char *bootstrap = NULL;
	struct pingpong pp = {0};
	struct sw_bus_consumer *c;
	struct sw_bench_rt rt;
	int64_t *raw;
	char err[512];
	int rounds = 4;
	size_t m = 500;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--bootstrap") == 0 && i + 1 < argc)
			bootstrap = argv[++i];
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
			m = strtoul(argv[++i], NULL, 10);
		else
			bootstrap = NULL, i = argc;
	}
	if (bootstrap == NULL || rounds < 1 || m < 10 || m > MAX_MESSAGES) {
		fprintf(stderr,
			"usage: bench-bus --bootstrap B [--rounds N] [--messages 10..%d]\n",
			MAX_MESSAGES);
		return 2;
	}
	if (sw_bench_rt_open(&rt, bootstrap, "bench-bus-raw", "500", err, sizeof(err)) == -1) {
		fprintf(stderr, "bench-bus: raw round trip: %s\n", err);
		return 1;
	}
	pp.base = event_base_new();
	pp.lat = calloc(m, sizeof(*pp.lat));
	raw = calloc(m, sizeof(*raw));
	if (pp.base == NULL || pp.lat == NULL || raw == NULL) {
		fprintf(stderr, "bench-bus: out of memory\n");
		return 1;
	}
	pp.prod = sw_bus_producer_new(pp.base, bootstrap, "bench-bus", NULL, NULL, NULL, err,
				      sizeof(err));
	c = pp.prod == NULL ? NULL
			    : sw_bus_tail_new(pp.base, bootstrap, topics, NULL, 64, on_batch, &pp,
					      err, sizeof(err));
	if (c == NULL) {
		fprintf(stderr, "bench-bus: %s\n", err);
		return 1;
	}
	for (int r = 1; r <= rounds; r++) {
		for (size_t i = 0; i < m; i++)
			raw[i] = sw_bench_rt_once(&rt, ((uint64_t)r << 48) | i);
		qsort(raw, m, sizeof(*raw), cmp_i64);
		pp.n = 0;
		pp.want = m;
		pp.cur = (uint64_t)(r + 1000) << 48;
		send_one(&pp);
		if (!pp.failed)
			event_base_dispatch(pp.base);
		if (pp.failed || pp.n != m) {
			fprintf(stderr, "bench-bus: round %d: %zu of %zu hops\n", r, pp.n, m);
			return 1;
		}
		qsort(pp.lat, m, sizeof(*pp.lat), cmp_i64);
		line("hop_p50_ms", r, pp.lat[m / 2], raw[m / 2]);
		line("hop_p90_ms", r, pp.lat[m * 9 / 10], raw[m * 9 / 10]);
		fflush(stdout);
	}
	sw_bus_consumer_destroy(c);
	sw_bus_producer_flush(pp.prod, 5000);
	sw_bus_producer_destroy(pp.prod);
	sw_bench_rt_close(&rt);
	event_base_free(pp.base);
	free(pp.lat);
	free(raw);
	return 0;
}
