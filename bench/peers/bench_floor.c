/*
 * bench-floor: the floor of our architecture, the least any step engine
 * built from our parts must do per step, driven with bench-peers' cases and
 * printing bench-peers' lines, so bench/peers sets it beside ours and the
 * peers in the same run (peer "floor").
 *
 * The parts are ours: the same Apache Kafka broker (idempotent producers,
 * acks=all, linger.ms 0) and the same PostgreSQL cluster (fsync and
 * synchronous_commit on) as the stack under test. The work is the minimum
 * of a durable step engine whose executors are separate Kafka clients:
 *
 *   - a run is a row (id, steps, done); starting runs is one INSERT of all
 *     the runs started since the last commit, committed (durable) before
 *     their first dispatch is produced;
 *   - a dispatch is one message on bench.floor.dispatch, keyed by run; the
 *     executor (its own thread, its own producer and consumer) answers each
 *     with one message on bench.floor.outcome;
 *   - every outcome consumed in one poll, from every run, is applied in the
 *     same one statement and commit as the runs started meanwhile (group
 *     commit across runs, the rev-like guard "done = the step answered");
 *     then the next dispatches go out, and a run whose last step committed
 *     is finished.
 *
 * Left out, as the floor should: HTTP (runs start in the driver), Avro, an
 * outbox (a dispatch is produced after the commit, not through a table),
 * idempotence records of consumed events, offset commits, identity, policy,
 * audit, and any per-event work of a real executor. Our figure over the
 * floor's is what our services add; the floor over a peer's says whether
 * the peer's figure is reachable at all with a JVM broker and PostgreSQL
 * sharing the machine.
 *
 *   bench-floor --bootstrap KAFKA --pg DSN [--warmup-runs N] [--latency N]
 *               [--deadline S] [--cases STEPS:CONC[:TOTAL],...]
 *
 * Output: bench-peers' lines (see bench_peers.c); latency is a run's start
 * (before its INSERT) to its last step's commit.
 */
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sw_bench.h"
#include "sw_core.h"

#define DISPATCH "bench.floor.dispatch"
#define OUTCOME "bench.floor.outcome"
#define BATCH 4096

static const char *bootstrap, *dsn;
static PGconn *pg;
static char table[64];
static rd_kafka_t *prod, *outc; /* the engine's producer and outcome reader */
static atomic_int stop_executor;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench-floor: %s: %s\n", what, why);
	exit(1);
}

/* A message: run id and step (the step answered, for an outcome). */
struct msg {
	int64_t id;
	int32_t step;
};

static void produce(rd_kafka_t *p, const char *topic, int64_t id, int32_t step)
{
	struct msg m = {id, step};
	char key[24];
	int n = snprintf(key, sizeof(key), "%lld", (long long)id);

	while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)n),
				 RD_KAFKA_V_VALUE(&m, sizeof(m)),
				 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(p, 10);
	rd_kafka_poll(p, 0);
}

/* The executor: every dispatch answered at once with its outcome. */
static void *executor(void *arg)
{
	rd_kafka_t *c = arg, *p;
	char err[512];

	if ((p = sw_bench_kafka_producer(bootstrap, err, sizeof(err))) == NULL)
		die("executor producer", err);
	while (!atomic_load(&stop_executor)) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
		struct msg d;

		rd_kafka_poll(p, 0);
		if (m == NULL)
			continue;
		if (m->err == 0 && m->len == sizeof(d)) {
			memcpy(&d, m->payload, sizeof(d));
			produce(p, OUTCOME, d.id, d.step);
		}
		rd_kafka_message_destroy(m);
	}
	rd_kafka_flush(p, 5000);
	rd_kafka_destroy(p);
	return NULL;
}

/* ---- the engine --------------------------------------------------------- */

struct load {
	int steps;
	int64_t next_id;
	int64_t *t_start; /* by id - base */
	int64_t base;
	size_t cap;
	size_t done, inflight;
	int64_t last_lat; /* ns of the last finished run (one at a time) */
};

static int64_t run_ids = 1;

/* One commit: the runs in start[0..nstart) begin, the outcomes in
 * out[0..nout) are applied; then the next dispatches go out and the
 * finished runs are counted. */
static void commit(struct load *l, const int64_t *start, size_t nstart, const struct msg *out,
		   size_t nout)
{
	static struct sw_buf b; /* sw_core's: the memory kept from call to call */
	PGresult *r;

	sw_buf_reset(&b);
	sw_buf_printf(&b, "WITH ins AS (INSERT INTO %s (id, steps) SELECT unnest('{", table);
	for (size_t i = 0; i < nstart; i++)
		sw_buf_printf(&b, "%s%lld", i ? "," : "", (long long)start[i]);
	sw_buf_printf(
	    &b, "}'::bigint[]), %d), upd AS (UPDATE %s r SET done = r.done + 1 FROM unnest('{",
	    l->steps, table);
	for (size_t i = 0; i < nout; i++)
		sw_buf_printf(&b, "%s%lld", i ? "," : "", (long long)out[i].id);
	sw_buf_printf(&b, "}'::bigint[], '{");
	for (size_t i = 0; i < nout; i++)
		sw_buf_printf(&b, "%s%d", i ? "," : "", out[i].step);
	sw_buf_printf(&b, "}'::int[]) u(id, d) WHERE r.id = u.id AND r.done = u.d"
			  " RETURNING r.id, r.done, r.steps) SELECT id, done, steps FROM upd");
	if (b.oom || sw_buf_add(&b, "", 1) == -1)
		die("sql", "out of memory");
	r = PQexec(pg, b.p);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("commit", PQerrorMessage(pg));
	for (size_t i = 0; i < nstart; i++)
		produce(prod, DISPATCH, start[i], 0);
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		int done = atoi(PQgetvalue(r, i, 1)), steps = atoi(PQgetvalue(r, i, 2));

		if (done < steps) {
			produce(prod, DISPATCH, id, done);
			continue;
		}
		l->done++;
		l->inflight--;
		if (id >= l->base && (size_t)(id - l->base) < l->cap)
			l->last_lat = sw_bench_now_ns() - l->t_start[id - l->base];
	}
	PQclear(r);
}

/* Keep conc runs of steps in flight until total started (0: no limit) or
 * the deadline (s, 0: none) passed, then drain; runs/s. */
static double load(int steps, int conc, size_t total, double deadline, struct load *l)
{
	static int64_t start[BATCH];
	static struct msg out[BATCH];
	int64_t t0 = sw_bench_now_ns(), end = t0 + (int64_t)(deadline * 1e9);
	size_t started = 0;

	memset(l, 0, sizeof(*l));
	l->steps = steps;
	l->base = run_ids;
	l->cap = total > 0 ? total : (size_t)conc * 20000;
	if ((l->t_start = calloc(l->cap, sizeof(int64_t))) == NULL)
		die("load", "out of memory");
	for (;;) {
		size_t nstart = 0, nout = 0;
		int open =
		    (total == 0 || started < total) && (deadline <= 0 || sw_bench_now_ns() < end);

		while (open && l->inflight + nstart < (size_t)conc && nstart < BATCH &&
		       (total == 0 || started + nstart < total)) {
			int64_t id = run_ids++;

			if ((size_t)(id - l->base) < l->cap)
				l->t_start[id - l->base] = sw_bench_now_ns();
			start[nstart++] = id;
		}
		started += nstart;
		l->inflight += nstart;
		if (nstart > 0)
			commit(l, start, nstart, NULL, 0);
		if (l->inflight == 0 && !open)
			break;
		/* what one poll has: the first message waited for, the rest
		 * already here */
		for (int wait = 100; nout < BATCH; wait = 0) {
			rd_kafka_message_t *m = rd_kafka_consumer_poll(outc, wait);

			if (m == NULL)
				break;
			if (m->err == 0 && m->len == sizeof(struct msg))
				memcpy(&out[nout++], m->payload, sizeof(struct msg));
			rd_kafka_message_destroy(m);
		}
		rd_kafka_poll(prod, 0);
		if (nout > 0)
			commit(l, NULL, 0, out, nout);
	}
	free(l->t_start);
	return (double)l->done / ((double)(sw_bench_now_ns() - t0) / 1e9);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-floor --bootstrap KAFKA --pg DSN [--warmup-runs N] "
			"[--latency N] [--deadline S] [--cases STEPS:CONC[:TOTAL],...]\n");
	exit(2);
}

static void setup(void)
{
	const char *const dt[] = {DISPATCH, NULL}, *const ot[] = {OUTCOME, NULL};
	char err[512], group[64], sql[256];
	rd_kafka_t *dc;
	pthread_t t;
	PGresult *r;

	if ((pg = PQconnectdb(dsn)) == NULL || PQstatus(pg) != CONNECTION_OK)
		die("PostgreSQL", pg != NULL ? PQerrorMessage(pg) : "out of memory");
	r = PQexec(pg, "SELECT current_setting('fsync') = 'on'"
		       " AND current_setting('synchronous_commit') = 'on'");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "t") != 0)
		die("PostgreSQL", "fsync and synchronous_commit must be on (the same durability)");
	PQclear(r);
	snprintf(table, sizeof(table), "bench_floor_%d", (int)getpid());
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE %s (id bigint PRIMARY KEY, steps int NOT NULL,"
		 " done int NOT NULL DEFAULT 0)",
		 table);
	r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("create table", PQerrorMessage(pg));
	PQclear(r);
	if ((prod = sw_bench_kafka_producer(bootstrap, err, sizeof(err))) == NULL)
		die("producer", err);
	for (int i = 0; i < 3; i++) { /* the topics exist before the readers look */
		produce(prod, DISPATCH, -1, -1);
		produce(prod, OUTCOME, -1, -1);
		rd_kafka_flush(prod, 5000);
	}
	snprintf(group, sizeof(group), "bench-floor-e-%d", (int)getpid());
	if ((dc = sw_bench_kafka_tail(bootstrap, group, dt, "100", err, sizeof(err))) == NULL)
		die("dispatch reader", err);
	snprintf(group, sizeof(group), "bench-floor-s-%d", (int)getpid());
	if ((outc = sw_bench_kafka_tail(bootstrap, group, ot, "100", err, sizeof(err))) == NULL)
		die("outcome reader", err);
	if (pthread_create(&t, NULL, executor, dc) != 0)
		die("executor", "cannot start");
	pthread_detach(t);
}

static void teardown(void)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
	PQclear(PQexec(pg, sql));
	PQfinish(pg);
	atomic_store(&stop_executor, 1);
	rd_kafka_flush(prod, 5000);
}

int main(int argc, char **argv)
{
	size_t nlat = 200, warm = 64;
	double deadline = 10;
	const char *cases = "1:1,1:16,1:128,1:1024,3:1,3:16,3:128,3:1024";
	char *list, *tok, *save = NULL;
	struct load l;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--bootstrap") == 0)
			bootstrap = v;
		else if (strcmp(a, "--pg") == 0)
			dsn = v;
		else if (strcmp(a, "--warmup-runs") == 0)
			warm = strtoul(v, NULL, 10);
		else if (strcmp(a, "--latency") == 0)
			nlat = strtoul(v, NULL, 10);
		else if (strcmp(a, "--deadline") == 0)
			deadline = strtod(v, NULL);
		else if (strcmp(a, "--cases") == 0)
			cases = v;
		else
			usage();
	}
	if (bootstrap == NULL || dsn == NULL || nlat == 1)
		usage();
	setup();
	if (warm > 0) {
		load(1, 16, warm, 0, &l);
		load(3, 16, warm / 2 + 1, 0, &l);
	}
	if (nlat > 0) {
		int64_t *lat = calloc(nlat, sizeof(*lat));
		long long t0;

		if (lat == NULL)
			die("latency", "out of memory");
		for (size_t i = 0; i < 10; i++)
			load(1, 1, 1, 0, &l);
		t0 = sw_bench_epoch_ms();
		for (size_t i = 0; i < nlat; i++) {
			load(1, 1, 1, 0, &l);
			lat[i] = l.last_lat;
		}
		sw_bench_peers_latency(lat, nlat, t0);
		free(lat);
	}
	list = strdup(cases);
	for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		int steps, conc;
		size_t total;
		long long t0;
		double rate;

		if (sw_bench_peers_parse_case(tok, &steps, &conc, &total) == -1)
			die("--cases", tok);
		t0 = sw_bench_epoch_ms();
		rate = load(steps, conc, total, total > 0 ? 0 : deadline, &l);
		sw_bench_peers_case(steps, conc, l.done, 0, 0, rate, t0, NULL, 0);
	}
	free(list);
	teardown();
	return 0;
}
