/*
 * bench-steps: in-process workflow steps through the whole platform
 * (scheduler -> Kafka -> worker -> Kafka -> scheduler), against a running
 * stack (bench/steps/run starts one on the harness's real Kafka broker).
 *
 *   latency   one-step workflow, submit -> finished, p50/p99, one at a time;
 *             baseline: a raw librdkafka produce -> consume round trip on the
 *             same broker, p50/p99, one at a time
 *   steps/s   1- and 3-step workflows at concurrency 1, 16, 128 (runs in
 *             flight, each holding an SSE connection; --max-inflight N
 *             replaces 128, as the scheduler takes at most 64 connections
 *             from one address); baseline: raw round trips/s with as many
 *             in flight
 *   transitions/s  derived from the 3-step figure at the highest
 *             concurrency: each run makes 2 run transitions (running,
 *             succeeded) and 3 per step (dispatched, running, succeeded)
 *
 * "finished" is the answer of a submit with ?wait=30 (200 and the ended
 * run), or with --follow stream the terminal event of the run's
 * server-sent-event stream (a 202 answer falls back to it). One JSON line
 * per figure: {"bench","figure","value","unit","baseline","ratio"}.
 *
 * --latency-only measures the one-step latency and its baseline alone.
 *
 * --load WF CONC N only applies the workflows (bench1, bench3), makes N
 * runs of WF with CONC in flight, prints {"runs", "seconds", "runs_per_s"}
 * and exits: no warm-up, no baseline. bench/steps/syncs counts commits
 * around it.
 *
 * --raw CONC N only measures N raw round trips with CONC in flight on the
 * broker and prints {"round_trips_per_s"}: a baseline for --load.
 *
 * Before measuring anything, the stack is loaded for --warmup-s seconds
 * (default 60; runs of both workflows at concurrency 16, and raw round
 * trips): the broker is a JVM, and its first minute under load is spent
 * compiling, which would be measured as the platform's latency.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sw_bench.h"
#include "sw_core.h"

static const char *url, *bootstrap;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench-steps: %s: %s\n", what, why);
	exit(1);
}

/* The scheduler takes at most 64 connections from one address (libs/http
 * guard): on loopback, each 48 run threads connect from their own
 * 127.0.0.x. src_idx is the thread's index, -1 for the main thread. */
static __thread int src_idx = -1;

static void source_addr(CURL *c)
{
	char ifc[32];

	if (src_idx < 0 || strncmp(url, "http://127.0.0.1:", 17) != 0)
		return;
	snprintf(ifc, sizeof(ifc), "host!127.0.0.%d", 2 + src_idx / 48);
	curl_easy_setopt(c, CURLOPT_INTERFACE, ifc);
}

static long request(CURL *c, const char *method, const char *path, const char *body,
		    const char *ctype, struct sw_bench_buf *out)
{
	char u[512];

	snprintf(u, sizeof(u), "%s%s", url, path);
	curl_easy_reset(c);
	source_addr(c);
	curl_easy_setopt(c, CURLOPT_URL, u);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	return sw_bench_perform(c, method, body, ctype, out);
}

static int follow_stream; /* --follow stream */

/* Submit a run of wf and wait for it to finish; returns elapsed ns. */
static int64_t run_once(CURL *c, const char *wf)
{
	struct sw_bench_buf b = {0};
	char body[256], path[128];
	json_t *j;
	int64_t t0 = sw_bench_now_ns();
	long st;

	snprintf(body, sizeof(body), "{\"workflow\": \"%s\", \"input\": {\"n\": 1}}", wf);
	st = request(c, "POST", follow_stream ? "/v1/runs" : "/v1/runs?wait=30", body,
		     "application/json", &b);
	if (st == 200) {
		j = json_loads(b.body.p, 0, NULL);
		if (j == NULL || !json_is_string(json_object_get(j, "state")) ||
		    strcmp(json_string_value(json_object_get(j, "state")), "succeeded") != 0)
			die("run", b.body.p ? b.body.p : "no answer");
		json_decref(j);
		sw_buf_free(&b.body);
		return sw_bench_now_ns() - t0;
	}
	if (st != 201 && st != 202)
		die("submit", b.body.p ? b.body.p : "no answer");
	j = json_loads(b.body.p, 0, NULL);
	if (j == NULL || !json_is_string(json_object_get(j, "run_id")))
		die("submit", "no run_id");
	snprintf(path, sizeof(path), "%s/v1/runs/%s/events", url,
		 json_string_value(json_object_get(j, "run_id")));
	json_decref(j);
	sw_buf_free(&b.body);
	memset(&b, 0, sizeof(b));
	curl_easy_reset(c);
	source_addr(c);
	curl_easy_setopt(c, CURLOPT_URL, path);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sw_bench_sse_collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	curl_easy_perform(c);
	if (b.failed)
		die("run", b.failed_state);
	if (!b.done)
		die("events", "stream ended before the run finished");
	sw_buf_free(&b.body);
	return sw_bench_now_ns() - t0;
}

static void emit(const char *figure, double value, const char *unit, double baseline)
{
	printf("{\"bench\": \"steps\", \"figure\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", "
	       "\"baseline\": %.3f, \"ratio\": %.3f}\n",
	       figure, value, unit, baseline, baseline > 0 ? value / baseline : 0);
	fflush(stdout);
}

/* ---- raw librdkafka round trips ---------------------------------------- */

static struct sw_bench_rt raw;

static void raw_setup(void)
{
	char err[256], group[64];

	snprintf(group, sizeof(group), "bench-raw-%d", (int)getpid());
	if (sw_bench_rt_open(&raw, bootstrap, group, "10", err, sizeof(err)) != 0)
		die("raw round trip", err);
	for (uint64_t i = 0; i < 20; i++) /* warm up the path */
		sw_bench_rt_once(&raw, UINT64_MAX - i);
}

/* inflight messages kept in the pipe; returns completed round trips/s, and
 * fills lat[] (ns) when inflight == 1. */
static double raw_rounds(int inflight, size_t n, int64_t *lat)
{
	int64_t sent_at[1024], t0 = sw_bench_now_ns();
	size_t sent = 0, got = 0;
	uint64_t id;

	while (got < n) {
		while (sent < n && (int)(sent - got) < inflight) {
			sent_at[sent % 1024] = sw_bench_now_ns();
			sw_bench_rt_send(&raw, sent);
			sent++;
		}
		if (!sw_bench_rt_recv(&raw, 100, &id) || id >= n)
			continue;
		if (lat != NULL && got < n)
			lat[got] = sw_bench_now_ns() - sent_at[id % 1024];
		got++;
	}
	return (double)n / ((double)(sw_bench_now_ns() - t0) / 1e9);
}

/* ---- concurrent runs ----------------------------------------------------- */

struct worker {
	pthread_t t;
	const char *wf;
	size_t runs;
	int idx;
};

static void *run_thread(void *arg)
{
	struct worker *w = arg;
	CURL *c = curl_easy_init();

	src_idx = w->idx;
	for (size_t i = 0; i < w->runs; i++)
		run_once(c, w->wf);
	curl_easy_cleanup(c);
	return NULL;
}

static double runs_per_s(const char *wf, int conc, size_t total)
{
	struct worker *ws = calloc((size_t)conc, sizeof(*ws));
	int64_t t0 = sw_bench_now_ns();
	int i;

	for (i = 0; i < conc; i++) {
		ws[i].wf = wf;
		ws[i].idx = i;
		ws[i].runs = total / (size_t)conc;
		pthread_create(&ws[i].t, NULL, run_thread, &ws[i]);
	}
	for (i = 0; i < conc; i++)
		pthread_join(ws[i].t, NULL);
	free(ws);
	return (double)(total / (size_t)conc * (size_t)conc) /
	       ((double)(sw_bench_now_ns() - t0) / 1e9);
}

/* Load the stack for seconds (see the top of the file). */
static void warm_up(int seconds)
{
	int64_t end = sw_bench_now_ns() + (int64_t)seconds * 1000000000LL;

	while (sw_bench_now_ns() < end) {
		runs_per_s("bench1", 16, 128);
		runs_per_s("bench3", 16, 64);
	}
	raw_rounds(16, 4000, NULL);
}

static void apply(CURL *c, const char *name, int steps)
{
	char yaml[2048];
	struct sw_bench_buf b = {0};
	long st;

	sw_bench_workflow_yaml(yaml, sizeof(yaml), name, steps);
	st = request(c, "POST", "/v1/workflows", yaml, "application/yaml", &b);
	if (st != 201 && st != 200 && st != 409)
		die("apply", b.body.p ? b.body.p : "no answer");
	sw_buf_free(&b.body);
}

int main(int argc, char **argv)
{
	size_t nlat = 200, total = 512, load_n = 0, raw_n = 0;
	const char *load_wf = NULL;
	int warm_s = 60, load_c = 0, latency_only = 0, raw_c = 0;
	int concs[] = {1, 16, 128};
	int64_t *lat, *rlat;
	double rl50, rl99, raw_tp[3];
	CURL *c;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
			url = argv[++i];
		else if (strcmp(argv[i], "--bootstrap") == 0 && i + 1 < argc)
			bootstrap = argv[++i];
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			total = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--latency-runs") == 0 && i + 1 < argc)
			nlat = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--latency-only") == 0)
			latency_only = 1;
		else if (strcmp(argv[i], "--raw") == 0 && i + 2 < argc) {
			raw_c = atoi(argv[++i]);
			raw_n = strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--warmup-s") == 0 && i + 1 < argc)
			warm_s = atoi(argv[++i]);
		else if (strcmp(argv[i], "--load") == 0 && i + 3 < argc) {
			load_wf = argv[++i];
			load_c = atoi(argv[++i]);
			load_n = strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--max-inflight") == 0 && i + 1 < argc) {
			concs[2] = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--follow") == 0 && i + 1 < argc &&
			   (strcmp(argv[i + 1], "stream") == 0 || strcmp(argv[i + 1], "wait") == 0)) {
			follow_stream = strcmp(argv[++i], "stream") == 0;
		} else {
			fprintf(stderr, "usage: bench-steps --url SCHEDULER --bootstrap KAFKA "
					"[--runs N] [--latency-runs N] [--warmup-s S] "
					"[--load WF CONC N] [--max-inflight N] [--follow wait|stream]\n");
			return 2;
		}
	}
	if (load_wf != NULL && (load_c < 1 || load_n < (size_t)load_c)) {
		fprintf(stderr, "bench-steps: --load needs CONC >= 1 and N >= CONC\n");
		return 2;
	}
	if (raw_c != 0 || raw_n != 0) {
		if (bootstrap == NULL || raw_c < 1 || raw_c > 1024 || raw_n < (size_t)raw_c) {
			fprintf(stderr, "bench-steps: --raw needs --bootstrap, CONC 1 to 1024 and"
					" N >= CONC\n");
			return 2;
		}
		raw_setup();
		printf("{\"round_trips_per_s\": %.1f}\n", raw_rounds(raw_c, raw_n, NULL));
		sw_bench_rt_close(&raw);
		return 0;
	}
	if (url == NULL || bootstrap == NULL || nlat < 2 || total < 128 || concs[2] <= 16 ||
	    concs[2] > 128) {
		fprintf(stderr, "bench-steps: --url and --bootstrap are required; --runs >= 128;"
				" --max-inflight 17 to 128\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c = curl_easy_init();
	apply(c, "bench1", 1);
	apply(c, "bench3", 3);
	if (load_wf != NULL) {
		int64_t t0 = sw_bench_now_ns();
		double rps = runs_per_s(load_wf, load_c, load_n);

		printf("{\"runs\": %zu, \"seconds\": %.3f, \"runs_per_s\": %.1f}\n",
		       load_n / (size_t)load_c * (size_t)load_c,
		       (double)(sw_bench_now_ns() - t0) / 1e9, rps);
		curl_easy_cleanup(c);
		return 0;
	}

	raw_setup();
	warm_up(warm_s);
	rlat = calloc(nlat, sizeof(*rlat));
	lat = calloc(nlat, sizeof(*lat));
	raw_rounds(1, nlat, rlat);
	rl50 = sw_bench_pct_ms(rlat, nlat, 0.5);
	rl99 = sw_bench_pct_ms(rlat, nlat, 0.99);
	for (int i = 0; i < 3 && !latency_only; i++)
		raw_tp[i] = raw_rounds(concs[i], total, NULL);

	for (size_t i = 0; i < 10; i++)
		run_once(c, "bench1"); /* warm up */
	for (size_t i = 0; i < nlat; i++)
		lat[i] = run_once(c, "bench1");
	emit("submit_to_finished_p50_1step", sw_bench_pct_ms(lat, nlat, 0.5), "ms", rl50);
	emit("submit_to_finished_p99_1step", sw_bench_pct_ms(lat, nlat, 0.99), "ms", rl99);

	for (int w = 1; w <= 3 && !latency_only; w += 2) {
		for (int i = 0; i < 3; i++) {
			char fig[64];
			double rps = runs_per_s(w == 1 ? "bench1" : "bench3", concs[i], total);

			snprintf(fig, sizeof(fig), "steps_per_s_%dstep_c%d", w, concs[i]);
			emit(fig, rps * w, "steps/s", raw_tp[i]);
			if (w == 3 && i == 2) {
				snprintf(fig, sizeof(fig), "state_transitions_per_s_3step_c%d",
					 concs[i]);
				emit(fig, rps * (2 + 3 * w), "transitions/s", raw_tp[i]);
			}
		}
	}
	curl_easy_cleanup(c);
	sw_bench_rt_close(&raw);
	free(lat);
	free(rlat);
	return 0;
}
