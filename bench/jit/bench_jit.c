/*
 * bench-jit: helpers of bench/jit/run (the cli_agent_jit credential round
 * trip against a running stack).
 *
 *   bench-jit respond --bootstrap B --name NAME --secret S
 *       The bench's decision responder, used when sagewai-policy is not
 *       there: every credential.requested for NAME is answered at once with
 *       credential.decided allow (by rule, rule "bench-responder", secret
 *       S). It is NOT the policy service: bench/jit/run says so in its
 *       output. Runs until SIGTERM; prints "ready" once it reads.
 *       Prints where the time went at the end (hop lines, as watch).
 *   bench-jit watch --bootstrap B
 *       Only watches sagewai.credentials and sagewai.identity.sealed until
 *       SIGTERM, then prints where the time went per request (hop lines).
 *   bench-jit kafka --bootstrap B [-n N] [--warmup N]
 *       The baseline: a raw librdkafka produce -> consume round trip (one
 *       hop) on the same broker; prints p50 and p99 in ms as
 *       "kafka_p50_ms X" and "kafka_p99_ms Y".
 *   bench-jit kafka-beside --bootstrap B
 *       The same, one every ~20 ms from "ready" until SIGTERM: run while
 *       the JIT requests run, so both see the same machine.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sw_bench.h"
#include "sw_core.h"
#include "sw_events.h"

static const char *bootstrap;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench-jit: %s: %s\n", what, why);
	exit(1);
}

static rd_kafka_t *producer(void)
{
	char err[256];
	rd_kafka_t *p = sw_bench_kafka_producer(bootstrap, err, sizeof(err));

	if (p == NULL)
		die("producer", err);
	return p;
}

/* A consumer of every partition of topic (and topic2, unless NULL) from its
 * end now: one poll sees both, in the order they arrive. */
static rd_kafka_t *tail2(const char *topic, const char *topic2)
{
	const char *const topics[] = {topic, topic2, NULL};
	char err[256], group[64];
	rd_kafka_t *c;

	snprintf(group, sizeof(group), "bench-jit-%d", (int)getpid());
	if ((c = sw_bench_kafka_tail(bootstrap, group, topics, "5", err, sizeof(err))) == NULL)
		die("consumer", err);
	return c;
}

static rd_kafka_t *tail(const char *topic)
{
	return tail2(topic, NULL);
}

static const char *js(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v != NULL ? v : "";
}

/*
 * Where the time goes (one machine, one clock), per request: requested ->
 * decided -> identity.sealed (its request_id is the credential request's)
 * -> delivered. Two times of each event: its header time (when its
 * producer made it) and when this tail saw it on the broker. "seen" hops
 * add up to the round trip from the bus's point of view; "made" hops end
 * at the producing service's header time (policy stamps its decision
 * before its commit, so its commit counts in the hop after it).
 */
#define HOPS_MAX 4096
#define NEV 4
static struct hop {
	char rid[40];
	int64_t made[NEV], seen[NEV];
} hops[HOPS_MAX];
static size_t nhops;

static struct hop *hop_of(const char *rid)
{
	if (rid == NULL)
		return NULL;
	for (size_t i = nhops; i-- > 0;)
		if (strcmp(hops[i].rid, rid) == 0)
			return &hops[i];
	if (nhops == HOPS_MAX)
		return NULL;
	snprintf(hops[nhops].rid, sizeof(hops[0].rid), "%s", rid);
	return &hops[nhops++];
}

static void hops_report(void)
{
	static const char *const names[] = {"requested_to_decided", "decided_to_sealed",
					    "sealed_to_delivered", "requested_to_delivered"};
	static const int from[] = {0, 1, 2, 0}, to[] = {1, 2, 3, 3};
	int64_t *v = calloc(HOPS_MAX, sizeof(*v));

	for (int w = 0; w < 2 && v != NULL; w++)
		for (int k = 0; k < 4; k++) {
			size_t n = 0;

			for (size_t i = 0; i < nhops; i++) {
				const int64_t *t = w ? hops[i].made : hops[i].seen;

				if (t[from[k]] > 0 && t[to[k]] > 0)
					v[n++] = t[to[k]] - t[from[k]];
			}
			if (n == 0)
				continue;
			qsort(v, n, sizeof(*v), sw_bench_cmp64);
			fprintf(stderr, "hop %s %s p50_ms %.3f p99_ms %.3f n %zu\n",
				w ? "made" : "seen", names[k], (double)v[(n - 1) / 2] / 1e3,
				(double)v[(size_t)((double)(n - 1) * 0.99)] / 1e3, n);
		}
	/* each event from made to seen: its producer's work after stamping it
	 * (policy: the commit) and the broker hop to this tail */
	for (int k = 0; k < NEV && v != NULL; k++) {
		static const char *const ev[NEV] = {"requested", "decided", "sealed", "delivered"};
		size_t n = 0;

		for (size_t i = 0; i < nhops; i++)
			if (hops[i].made[k] > 0 && hops[i].seen[k] > 0)
				v[n++] = hops[i].seen[k] - hops[i].made[k];
		if (n == 0)
			continue;
		qsort(v, n, sizeof(*v), sw_bench_cmp64);
		fprintf(stderr, "hop made_to_seen %s p50_ms %.3f p99_ms %.3f n %zu\n", ev[k],
			(double)v[(n - 1) / 2] / 1e3,
			(double)v[(size_t)((double)(n - 1) * 0.99)] / 1e3, n);
	}
	free(v);
}

static int64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void hop_note(struct sw_event_registry *reg, const rd_kafka_message_t *m,
		     const struct sw_event_header *h)
{
	static const char *const types[NEV] = {"credential.requested", "credential.decided",
					       "identity.sealed", "credential.delivered"};
	int64_t seen = wall_us();
	char err[128];
	json_t *ev;
	struct hop *hp;
	int k;

	for (k = 0; k < NEV; k++)
		if (strcmp(h->type, types[k]) == 0)
			break;
	if (k == NEV || (ev = sw_event_decode(reg, m->payload, m->len, err, sizeof(err))) == NULL)
		return;
	/* a seal of pinned keys has a request id no credential request has:
	 * a seal only joins a request seen */
	hp = NULL;
	if (k != 2)
		hp = hop_of(js(ev, "request_id"));
	else
		for (size_t i = nhops; hp == NULL && i-- > 0;)
			if (strcmp(hops[i].rid, js(ev, "request_id")) == 0)
				hp = &hops[i];
	if (hp != NULL) {
		hp->made[k] = h->time_us;
		hp->seen[k] = seen;
	}
	json_decref(ev);
}

/* Only watch: the hops of every request until SIGTERM (with sagewai-policy). */
static int watch(void)
{
	struct sw_event_registry *reg;
	rd_kafka_t *c = tail2("sagewai.credentials", "sagewai.identity.sealed");
	struct sw_event_header rh;
	char err[256];

	if ((reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		die("registry", err);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		rd_kafka_message_t *x = rd_kafka_consumer_poll(c, 100);

		if (x == NULL)
			continue;
		if (x->err == 0 && x->payload != NULL &&
		    sw_event_decode_header(reg, x->payload, x->len, &rh, err, sizeof(err)) == 0)
			hop_note(reg, x, &rh);
		rd_kafka_message_destroy(x);
	}
	hops_report();
	rd_kafka_consumer_close(c);
	rd_kafka_destroy(c);
	sw_events_registry_destroy(reg);
	return 0;
}

static int respond(const char *name, const char *secret)
{
	struct sw_event_registry *reg;
	rd_kafka_t *p = producer(), *c = tail("sagewai.credentials");
	rd_kafka_t *cs = tail("sagewai.identity.sealed");
	struct sw_event_header h, rh;
	char err[256];
	long answered = 0;

	if ((reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		die("registry", err);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 20);
		json_t *ev, *o;
		void *buf;
		size_t len;

		{
			rd_kafka_message_t *x;

			while ((x = rd_kafka_consumer_poll(cs, 0)) != NULL) {
				if (x->err == 0 && x->payload != NULL &&
				    sw_event_decode_header(reg, x->payload, x->len, &rh, err,
							   sizeof(err)) == 0)
					hop_note(reg, x, &rh);
				rd_kafka_message_destroy(x);
			}
		}
		rd_kafka_poll(p, 0);
		if (m == NULL)
			continue;
		if (m->err == 0 && m->payload != NULL &&
		    sw_event_decode_header(reg, m->payload, m->len, &rh, err, sizeof(err)) == 0)
			hop_note(reg, m, &rh);
		if (m->err != 0 || m->payload == NULL ||
		    sw_event_decode_header(reg, m->payload, m->len, &rh, err, sizeof(err)) != 0 ||
		    strcmp(rh.type, "credential.requested") != 0 ||
		    (ev = sw_event_decode(reg, m->payload, m->len, err, sizeof(err))) == NULL) {
			rd_kafka_message_destroy(m);
			continue;
		}
		if (strcmp(js(ev, "name"), name) == 0) {
			sw_event_header_init(&h, "credential.decided", "bench-responder");
			snprintf(h.tenant, sizeof(h.tenant), "%s", rh.tenant);
			snprintf(h.run_id, sizeof(h.run_id), "%s", rh.run_id);
			snprintf(h.step_id, sizeof(h.step_id), "%s", rh.step_id);
			o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
				      "request_id", js(ev, "request_id"), "sandbox_id",
				      js(ev, "sandbox_id"), "step", js(ev, "step"), "name", name,
				      "decision", "allow", "by", "rule", "rule", "bench-responder",
				      "approver", "", "reason", "bench: auto-approved", "secret",
				      secret, "host_key", js(ev, "host_key"));
			if (sw_event_encode(reg, "credential.decided", &h, o, &buf, &len, err,
					    sizeof(err)) != 0)
				die("encode", err);
			json_decref(o);
			if (rd_kafka_producev(p, RD_KAFKA_V_TOPIC("sagewai.credentials"),
					      RD_KAFKA_V_KEY(rh.run_id, strlen(rh.run_id)),
					      RD_KAFKA_V_VALUE(buf, len),
					      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					      RD_KAFKA_V_END) != 0)
				die("produce", "credential.decided");
			free(buf);
			answered++;
		}
		json_decref(ev);
		rd_kafka_message_destroy(m);
	}
	rd_kafka_flush(p, 2000);
	fprintf(stderr, "bench-jit respond: %ld requests answered\n", answered);
	hops_report();
	rd_kafka_consumer_close(cs);
	rd_kafka_destroy(cs);
	rd_kafka_consumer_close(c);
	rd_kafka_destroy(c);
	rd_kafka_destroy(p);
	sw_events_registry_destroy(reg);
	return 0;
}

/* n round trips after warm; with until_signal, as many as fit until
 * SIGTERM (at most n) -- run beside the JIT requests, under the same load. */
static int kafka(size_t n, size_t warm, int until_signal)
{
	struct sw_bench_rt rt;
	int64_t *v = calloc(n, sizeof(*v));
	size_t got_n = 0;
	char err[256], group[64];

	snprintf(group, sizeof(group), "bench-jit-%d", (int)getpid());
	if (v == NULL || sw_bench_rt_open(&rt, bootstrap, group, "5", err, sizeof(err)) != 0)
		die("kafka", v == NULL ? "out of memory" : err);
	if (until_signal) {
		signal(SIGTERM, on_term);
		printf("ready\n");
		fflush(stdout);
	}
	for (uint64_t id = 1; id <= n + warm && !stop; id++) {
		int64_t t = sw_bench_rt_once(&rt, id);

		if (id > warm)
			v[got_n++] = t;
		if (until_signal)
			usleep(20000); /* a sample every ~20 ms, not a flood */
	}
	if (got_n < 10)
		die("kafka", "fewer than 10 round trips");
	n = got_n;
	qsort(v, n, sizeof(*v), sw_bench_cmp64);
	printf("kafka_p50_ms %.3f\nkafka_p99_ms %.3f\nkafka_n %zu\n", (double)v[(n - 1) / 2] / 1e6,
	       (double)v[(size_t)((double)(n - 1) * 0.99)] / 1e6, n);
	free(v);
	sw_bench_rt_close(&rt);
	return 0;
}

int main(int argc, char **argv)
{
	const char *name = NULL, *secret = NULL;
	size_t n = 500, warm = 100;

	if (argc < 2)
		die("usage", "bench-jit respond|kafka --bootstrap HOST:PORT ...");
	for (int k = 2; k < argc; k++) {
		if (strcmp(argv[k], "--bootstrap") == 0 && k + 1 < argc)
			bootstrap = argv[++k];
		else if (strcmp(argv[k], "--name") == 0 && k + 1 < argc)
			name = argv[++k];
		else if (strcmp(argv[k], "--secret") == 0 && k + 1 < argc)
			secret = argv[++k];
		else if (strcmp(argv[k], "-n") == 0 && k + 1 < argc)
			n = strtoul(argv[++k], NULL, 10);
		else if (strcmp(argv[k], "--warmup") == 0 && k + 1 < argc)
			warm = strtoul(argv[++k], NULL, 10);
		else
			die("usage", argv[k]);
	}
	if (bootstrap == NULL || n < 10)
		die("usage", "--bootstrap is required, -n at least 10");
	if (strcmp(argv[1], "respond") == 0) {
		if (name == NULL || secret == NULL)
			die("usage", "respond needs --name and --secret");
		return respond(name, secret);
	}
	if (strcmp(argv[1], "watch") == 0)
		return watch();
	if (strcmp(argv[1], "kafka") == 0)
		return kafka(n, warm, 0);
	if (strcmp(argv[1], "kafka-beside") == 0)
		return kafka(100000, warm, 1);
	die("usage", "respond, watch, kafka or kafka-beside");
	return 1;
}
