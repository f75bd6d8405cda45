/*
 * bench-peers: the load generator of bench/peers for the two sides that
 * are called over HTTP: ours (submit a run, follow its event stream until
 * it finished) and Restate (one request-response on its ingress; the
 * answer comes when the handler has completed). The same client code and
 * the same cases on both sides. Ours by default submits with ?wait=30, so
 * the answer comes when the run ended, one request-response as Restate's
 * (--follow stream: submit, then follow the run's event stream, as before
 * 2026-12-05). DBOS and Temporal have drivers in Python
 * (bench/peers/dbos, bench/peers/temporal) with the same options and
 * output.
 *
 *   bench-peers --target ours --url SCHEDULER | --target restate --url INGRESS
 *       [--warmup-runs N]    runs at 16 in flight before anything (default 64)
 *       [--latency N]        one-step runs one at a time, after 10 unmeasured
 *       [--deadline S]       a case stops taking new runs after S seconds
 *       [--cases LIST]       STEPS:CONC[:TOTAL],... TOTAL: exactly that many
 *                            runs, no deadline
 *
 * One JSON line per case, with its wall-clock span (ms since the epoch),
 * for the caller's memory and sync sampling:
 *   {"case":"latency","p50_ms":X,"p99_ms":Y,"n":N,"t0":T,"t1":T}
 *   {"case":"3:128","steps":3,"conc":128,"runs":N,"errors":E,
 *    "runs_per_s":X,"p50_ms":X,"p99_ms":Y,"t0":T,"t1":T}
 * where a case's p50 and p99 are of its completed runs' times from submit
 * to answer (503 retries at accept included).
 * A case's rate is its completed runs over the time from its start until
 * the last one finished (the drain after the deadline included).
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sw_bench.h"
#include "sw_core.h"

enum target { OURS, RESTATE };

static enum target target;
static const char *url;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench-peers: %s: %s\n", what, why);
	exit(1);
}

/* The source address of a load thread's connections (NULL: the default).
 * Our HTTP servers take at most 64 connections from one address (libs/http
 * guard.c), so the threads of a case spread over 127.0.0.2, .3, ... (48
 * each); the servers listen on 127.0.0.1, which every loopback address
 * reaches. */
static __thread char src_addr[32];

static void source_for(int thread)
{
	snprintf(src_addr, sizeof(src_addr), "127.0.0.%d", 2 + thread / 48);
}

static atomic_size_t retries_503;
static int thread_base;	      /* a load process's first thread index (load_split) */
static atomic_int complaints; /* failures told on stderr, at most 5 a case */

static void complain(const char *what, long status, const struct sw_bench_buf *b)
{
	if (atomic_fetch_add(&complaints, 1) >= 5)
		return;
	fprintf(stderr, "bench-peers: %s failed: HTTP %ld: %.200s\n", what, status,
		b->body.p != NULL     ? b->body.p
		: b->curl_err[0] != 0 ? b->curl_err
				      : "(no answer)");
}

static void setup(CURL *c, const char *u)
{
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, u);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (src_addr[0] != '\0')
		curl_easy_setopt(c, CURLOPT_INTERFACE, src_addr);
}

/* A 503 too_many_connections (the servers' connection caps) is retried
 * after 5 ms: the request was refused at accept, nothing was done. */
static int refused(long status, struct sw_bench_buf *b)
{
	if (status != 503 || b->body.p == NULL ||
	    strstr(b->body.p, "too_many_connections") == NULL)
		return 0;
	atomic_fetch_add(&retries_503, 1);
	sw_buf_reset(&b->body);
	b->seen = 0;
	nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	return 1;
}

static long request(CURL *c, const char *method, const char *u, const char *body,
		    const char *ctype, struct sw_bench_buf *out)
{
	long status;

again:
	setup(c, u);
	status = sw_bench_perform(c, method, body, ctype, out);
	if (refused(status, out))
		goto again;
	return status;
}

static int follow_stream; /* --follow stream */

/* Ours: submit a run of the workflow with `steps` steps and wait for its
 * end in the answer (200), or follow its events until it finished (a 202
 * answer, or --follow stream). 0 when it succeeded. */
static int run_ours(CURL *c, int steps)
{
	struct sw_bench_buf b = {0};
	char body[256], u[512];
	const char *id;
	json_t *j;
	int rc = -1;

	snprintf(u, sizeof(u), "%s/v1/runs%s", url, follow_stream ? "" : "?wait=30");
	snprintf(body, sizeof(body), "{\"workflow\": \"bench%d\", \"input\": {\"n\": 1}}", steps);
	long st = request(c, "POST", u, body, "application/json", &b);

	if (st == 200) {
		j = json_loadb(b.body.p, b.body.len, 0, NULL);
		id = json_string_value(json_object_get(j, "state"));
		rc = id != NULL && strcmp(id, "succeeded") == 0 ? 0 : -1;
		json_decref(j);
		if (rc != 0)
			complain("run (it did not succeed)", st, &b);
		goto out;
	}
	if (st != 201 && st != 202) {
		complain("submit", st, &b);
		goto out;
	}
	j = json_loadb(b.body.p, b.body.len, 0, NULL);
	id = json_string_value(json_object_get(j, "run_id"));
	if (id != NULL)
		snprintf(u, sizeof(u), "%s/v1/runs/%s/events", url, id);
	json_decref(j);
	if (id == NULL)
		goto out;
	sw_buf_free(&b.body);
	memset(&b, 0, sizeof(b));
	for (;;) {
		long status = 0;

		setup(c, u);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sw_bench_sse_collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (b.done || b.failed || !refused(status, &b))
			break;
	}
	rc = b.done ? 0 : -1;
	if (rc != 0) {
		long status = 0;

		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		complain(b.failed ? "run (it did not succeed)" : "event stream", status, &b);
	}
out:
	sw_buf_free(&b.body);
	return rc;
}

/* Restate: one call of Bench/one or Bench/three; the ingress answers when
 * the handler has completed, every ctx.run durably logged. */
static int run_restate(CURL *c, int steps)
{
	struct sw_bench_buf b = {0};
	char u[512];
	long st;

	snprintf(u, sizeof(u), "%s/Bench/%s", url, steps == 1 ? "one" : "three");
	st = request(c, "POST", u, "{\"n\": 1}", "application/json", &b);
	if (st == 200 && b.body.p != NULL && strstr(b.body.p, "step 0 of 1") == NULL)
		st = 0; /* not the handler's answer */
	if (st != 200)
		complain("call", st, &b);
	sw_buf_free(&b.body);
	return st == 200 ? 0 : -1;
}

static int run_once(CURL *c, int steps)
{
	return target == OURS ? run_ours(c, steps) : run_restate(c, steps);
}

/* ---- concurrent runs ----------------------------------------------------- */

struct load {
	atomic_int thread; /* the next thread's index */
	int steps;
	size_t total;     /* runs to start at most */
	int64_t deadline; /* no new run after this (0: none) */
	atomic_size_t next, done, errors;
	int64_t *lat; /* each completed run's time, submit to answer (ns) */
	size_t lat_cap;
	atomic_size_t nlat;
};

/* The times recorded: one per completed run, up to lat_cap. */
static size_t load_nlat(struct load *l)
{
	size_t n = atomic_load(&l->nlat);

	return n < l->lat_cap ? n : l->lat_cap;
}

static void *load_thread(void *arg)
{
	struct load *l = arg;
	CURL *c = curl_easy_init();
	int64_t s;

	if (c == NULL)
		return NULL;
	source_for(thread_base + atomic_fetch_add(&l->thread, 1));
	for (;;) {
		if (l->deadline != 0 && sw_bench_now_ns() >= l->deadline)
			break;
		if (atomic_fetch_add(&l->next, 1) >= l->total)
			break;
		s = sw_bench_now_ns();
		if (run_once(c, l->steps) == 0) {
			size_t i = atomic_fetch_add(&l->nlat, 1);

			if (i < l->lat_cap)
				l->lat[i] = sw_bench_now_ns() - s;
			atomic_fetch_add(&l->done, 1);
		} else {
			atomic_fetch_add(&l->errors, 1);
		}
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* conc threads, each one run in flight; returns completed runs/s */
static double load(int steps, int conc, size_t total, double deadline_s, struct load *l)
{
	pthread_t *ts = calloc((size_t)conc, sizeof(*ts));
	pthread_attr_t attr;
	int64_t t0 = sw_bench_now_ns();
	int i, n = 0;

	if (ts == NULL)
		die("load", "out of memory");
	free(l->lat);
	memset(l, 0, sizeof(*l));
	l->lat_cap = total < 4000000 ? total : 4000000;
	if ((l->lat = calloc(l->lat_cap, sizeof(*l->lat))) == NULL)
		die("load", "out of memory");
	l->steps = steps;
	l->total = total;
	l->deadline = deadline_s > 0 ? t0 + (int64_t)(deadline_s * 1e9) : 0;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (i = 0; i < conc; i++)
		if (pthread_create(&ts[n], &attr, load_thread, l) == 0)
			n++;
	if (n < conc)
		die("load", "could not start a thread per run in flight");
	for (i = 0; i < n; i++)
		pthread_join(ts[i], NULL);
	pthread_attr_destroy(&attr);
	free(ts);
	return (double)atomic_load(&l->done) / ((double)(sw_bench_now_ns() - t0) / 1e9);
}

/*
 * Each thread holds a socket and its curl handle's wakeup pair: three
 * descriptors a run in flight. Above LOAD_THREADS_PER_PROC runs in flight
 * (8,192 would need about 25,000 descriptors, more than the open-files
 * limit a container may allow) the case is split over forked processes,
 * each with its own limit; their counts and times come back over a pipe
 * and the rate is the total over the parent's wall clock.
 */
#define LOAD_THREADS_PER_PROC 4096

static int write_all(int fd, const void *p, size_t n)
{
	for (const char *c = p; n > 0;) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	for (char *c = p; n > 0;) {
		ssize_t r = read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static double load_split(int steps, int conc, size_t total, double deadline_s, struct load *l)
{
	int nproc = (conc + LOAD_THREADS_PER_PROC - 1) / LOAD_THREADS_PER_PROC, fd[64];
	pid_t pid[64];
	int64_t t0 = sw_bench_now_ns();
	size_t got = 0;

	if (nproc <= 1)
		return load(steps, conc, total, deadline_s, l);
	if (nproc > 64)
		die("load", "too many runs in flight");
	fflush(NULL);
	for (int i = 0; i < nproc; i++) {
		int p[2];
		int share = conc / nproc + (i < conc % nproc);
		size_t part = total == SIZE_MAX
				  ? SIZE_MAX
				  : total / (size_t)nproc + ((size_t)i < total % (size_t)nproc);

		if (pipe(p) != 0 || (pid[i] = fork()) < 0)
			die("load", strerror(errno));
		if (pid[i] == 0) {
			size_t head[4];

			close(p[0]);
			thread_base = i * (conc / nproc + 1);
			load(steps, share, part, deadline_s, l);
			head[0] = atomic_load(&l->done);
			head[1] = atomic_load(&l->errors);
			head[2] = atomic_load(&retries_503);
			head[3] = load_nlat(l);
			_exit(write_all(p[1], head, sizeof(head)) != 0 ||
				      write_all(p[1], l->lat, head[3] * sizeof(*l->lat)) != 0
				  ? 1
				  : 0);
		}
		close(p[1]);
		fd[i] = p[0];
	}
	free(l->lat);
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < nproc; i++) {
		size_t head[4];
		int64_t *more;
		int st;

		if (read_all(fd[i], head, sizeof(head)) != 0)
			die("load", "a load process gave no count");
		if ((more = realloc(l->lat, (got + head[3] + 1) * sizeof(*more))) == NULL)
			die("load", "out of memory");
		l->lat = more;
		if (read_all(fd[i], l->lat + got, head[3] * sizeof(*l->lat)) != 0)
			die("load", "a load process gave no times");
		got += head[3];
		atomic_fetch_add(&l->done, head[0]);
		atomic_fetch_add(&l->errors, head[1]);
		atomic_fetch_add(&retries_503, head[2]);
		close(fd[i]);
		if (waitpid(pid[i], &st, 0) != pid[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			die("load", "a load process failed");
	}
	l->lat_cap = got;
	atomic_store(&l->nlat, got);
	return (double)atomic_load(&l->done) / ((double)(sw_bench_now_ns() - t0) / 1e9);
}

/* Our workflows bench1 and bench3: in-process template steps (echo), the
 * ones bench/steps applies. */
static void apply(CURL *c, int steps)
{
	char yaml[2048], u[512], name[32];
	struct sw_bench_buf b = {0};
	long st;

	snprintf(name, sizeof(name), "bench%d", steps);
	sw_bench_workflow_yaml(yaml, sizeof(yaml), name, steps);
	snprintf(u, sizeof(u), "%s/v1/workflows", url);
	st = request(c, "POST", u, yaml, "application/yaml", &b);
	if (st != 201 && st != 200 && st != 409)
		die("apply", b.body.p ? b.body.p : "no answer");
	sw_buf_free(&b.body);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-peers --target ours|restate --url URL [--warmup-runs N] "
			"[--latency N] [--deadline S] [--cases STEPS:CONC[:TOTAL],...] "
			"[--follow wait|stream]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t nlat = 200, warm = 64;
	double deadline = 10;
	const char *cases = "1:1,1:16,1:128,1:1024,3:1,3:16,3:128,3:1024";
	char *list, *tok, *save = NULL;
	struct load l = {0};
	CURL *c;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--target") == 0 && strcmp(v, "ours") == 0)
			target = OURS;
		else if (strcmp(a, "--target") == 0 && strcmp(v, "restate") == 0)
			target = RESTATE;
		else if (strcmp(a, "--url") == 0)
			url = v;
		else if (strcmp(a, "--warmup-runs") == 0)
			warm = strtoul(v, NULL, 10);
		else if (strcmp(a, "--latency") == 0)
			nlat = strtoul(v, NULL, 10);
		else if (strcmp(a, "--deadline") == 0)
			deadline = strtod(v, NULL);
		else if (strcmp(a, "--cases") == 0)
			cases = v;
		else if (strcmp(a, "--follow") == 0 && strcmp(v, "stream") == 0)
			follow_stream = 1;
		else if (strcmp(a, "--follow") == 0 && strcmp(v, "wait") == 0)
			follow_stream = 0;
		else
			usage();
	}
	if (url == NULL || strlen(url) > 400 || (nlat == 1))
		usage();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c = curl_easy_init();
	if (target == OURS) {
		apply(c, 1);
		apply(c, 3);
	}
	if (warm > 0) {
		load(1, 16, warm, 0, &l);
		load(3, 16, warm / 2 + 1, 0, &l);
		if (atomic_load(&l.errors) > 0)
			die("warm-up", "runs failed");
	}
	if (nlat > 0) {
		int64_t *lat = calloc(nlat, sizeof(*lat));
		long long t0;

		if (lat == NULL)
			die("latency", "out of memory");
		for (size_t i = 0; i < 10; i++)
			run_once(c, 1);
		t0 = sw_bench_epoch_ms();
		for (size_t i = 0; i < nlat; i++) {
			int64_t s = sw_bench_now_ns();

			if (run_once(c, 1) != 0)
				die("latency", "a run failed");
			lat[i] = sw_bench_now_ns() - s;
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
		atomic_store(&complaints, 0);
		if (total > 0)
			rate = load_split(steps, conc, total, 0, &l);
		else
			rate = load_split(steps, conc, SIZE_MAX, deadline, &l);
		sw_bench_peers_case(steps, conc, atomic_load(&l.done), atomic_load(&l.errors),
				    atomic_exchange(&retries_503, 0), rate, t0, l.lat,
				    load_nlat(&l));
	}
	free(list);
	free(l.lat);
	curl_easy_cleanup(c);
	curl_global_cleanup();
	return 0;
}
