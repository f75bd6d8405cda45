/*
 * sw_bench: what the benchmarks share (library sw_bench): the clock and
 * percentiles, HTTP bodies and a run's SSE stream, and the raw librdkafka
 * baseline (a produce -> consume round trip on the same broker, outside
 * sagewai.*) the figures are set beside.
 */
#ifndef SW_BENCH_H
#define SW_BENCH_H

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "sw_core.h"

/* CLOCK_MONOTONIC, ns. */
int64_t sw_bench_now_ns(void);
/* CLOCK_REALTIME, ms since the epoch. */
long long sw_bench_epoch_ms(void);
/* qsort's comparison of int64_t. */
int sw_bench_cmp64(const void *a, const void *b);
/* The p quantile (0..1) of the n ns values in v (sorted in place), in ms. */
double sw_bench_pct_ms(int64_t *v, size_t n, double p);

/* An HTTP answer's body, and what its SSE stream of a run said. */
struct sw_bench_buf {
	struct sw_buf body;
	int done;    /* SSE: the run succeeded */
	int failed;  /* SSE: the run ended otherwise (state in failed_state) */
	size_t seen; /* SSE: bytes of whole events already looked at */
	char failed_state[32];
	char curl_err[96]; /* sw_bench_perform: why no answer came, if none */
};

/* A CURLOPT_WRITEFUNCTION appending to the struct sw_bench_buf in u. */
size_t sw_bench_collect(char *d, size_t sz, size_t nm, void *u);
/* The same for a run's event stream (GET /v1/runs/ID/events): the
 * transfer stops once an "event: run" block (by its top-level state; a
 * step's JSON saying "succeeded" is not the end of a multi-step run) says
 * succeeded (done) or anything but running or pending (failed). */
size_t sw_bench_sse_collect(char *d, size_t sz, size_t nm, void *u);

/* Perform method on c (its URL and other options set by the caller) with
 * body (NULL: none) of Content-Type ctype, the answer's body into out;
 * the status, 0 if none came. */
long sw_bench_perform(CURL *c, const char *method, const char *body, const char *ctype,
		      struct sw_bench_buf *out);

/* The YAML of workflow name: steps in-process template steps (echo), as
 * bench/steps and bench/peers apply them. */
void sw_bench_workflow_yaml(char *yaml, size_t len, const char *name, int steps);

/* A producer of bootstrap: idempotent, linger.ms 0; NULL and err if not. */
rd_kafka_t *sw_bench_kafka_producer(const char *bootstrap, char *err, size_t errlen);
/* A consumer (group, committing nothing, fetch.wait.max.ms fetch_wait_ms)
 * of every partition of topics (NULL-terminated) from their ends now: one
 * poll sees them all, in the order they arrive. NULL and err if not. */
rd_kafka_t *sw_bench_kafka_tail(const char *bootstrap, const char *group,
				const char *const *topics, const char *fetch_wait_ms, char *err,
				size_t errlen);

/* bench/peers' drivers (bench_peers.c, bench_floor.c): the latency line of
 * lat[0..n) (ns, sorted in place) measured from t0 (ms since the epoch) to
 * now, and a case's line, with the p50 and p99 of its runs' times lat[0..nlat)
 * (sorted in place; none when lat is NULL); both flushed. */
void sw_bench_peers_latency(int64_t *lat, size_t n, long long t0);
void sw_bench_peers_case(int steps, int conc, size_t runs, size_t errors, size_t retries_503,
			 double runs_per_s, long long t0, int64_t *lat, size_t nlat);
/* One element of --cases, STEPS:CONC[:TOTAL] (TOTAL 0 when absent); 0, or
 * -1 when it is not one (steps 1 or 3, conc 1..8192). */
int sw_bench_peers_parse_case(const char *tok, int *steps, int *conc, size_t *total);

/* The raw round trip: a producer and a consumer of one partition. */
struct sw_bench_rt {
	const char *topic; /* "bench.roundtrip": outside sagewai.*, not audited */
	rd_kafka_t *p, *c;
};

/* Open it (its consumer as sw_bench_kafka_tail's); the topic made to
 * exist first. 0, or -1 and err. */
int sw_bench_rt_open(struct sw_bench_rt *rt, const char *bootstrap, const char *group,
		     const char *fetch_wait_ms, char *err, size_t errlen);
/* Produce id to partition 0 (not waiting). */
void sw_bench_rt_send(struct sw_bench_rt *rt, uint64_t id);
/* Poll up to wait_ms for a round-trip message; 1 with its id in *id, else 0
 * (also serving the producer's callbacks). */
int sw_bench_rt_recv(struct sw_bench_rt *rt, int wait_ms, uint64_t *id);
/* One round trip of id: ns from producing it to consuming it. */
int64_t sw_bench_rt_once(struct sw_bench_rt *rt, uint64_t id);
void sw_bench_rt_close(struct sw_bench_rt *rt);

#endif
