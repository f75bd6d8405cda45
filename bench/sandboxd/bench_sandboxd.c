/*
 * bench-sandboxd: sagewai-sandboxd itself, against a running instance
 * (bench/sandboxd/run starts one on the harness's real Kafka broker and
 * PostgreSQL). Steps are dispatched straight onto sagewai.steps.sandbox as
 * step.dispatched events of mode sandboxed running /bin/true; the answers
 * are read back from sagewai.steps (step.finished) and sagewai.sandbox
 * (sandbox.acquired).
 *
 *   warm_acquire_p50/p99  acquire_us of sandbox.acquired (the step asking
 *             for a sandbox -> holding a ready one), one step at a time,
 *             each dispatched only once /metrics shows the warm pool full
 *             again, so that each acquire is a warm pop (misses are counted
 *             and left out of the percentiles)
 *   cold_acquire_p50/p99  the same for steps with custom limits, which
 *             always cold-start (pool.c): the wait for a cold start
 *   sandboxes_per_s  --burst steps dispatched at once; from before the
 *             first produce to the receipt of the last step.finished; every
 *             step must have had its own sandbox (distinct sandbox_id)
 *   idle_pss_per_warm_sandbox  pool full, nothing running: PSS (kB) of
 *             every process under the sandboxd pid that is not sandboxd
 *             (bwrap monitors and tool runners), per warm sandbox
 *   sandboxd_pss  PSS (kB) of the two sagewai-sandboxd processes
 *             (privileged part and service part) at the same moment
 *
 * One JSON line per figure:
 *   {"bench": "sandboxd", "figure": F, "value": V, "unit": U, "baseline": B, "ratio": V/B}
 * The baselines (raw bwrap, from bench-sandbox --raw-only before and after
 * this program) are filled in by bench/sandboxd/run; printed here as 0.
 * Notes go to stderr.
 *
 * usage: bench-sandboxd --bootstrap HOST:PORT --metrics URL --pid PID --warm N
 *                       [--acquires N] [--cold N] [--burst M] [--settle-ms S]
 *
 * --settle-ms: also wait S ms after the pool is full before each one-by-one
 * dispatch (0), so that the destroy of the previous step's sandbox is over.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"

#define WAIT_S 120 /* longest wait for any one answer */

/* What came back for one dispatched step. */
struct rec {
	bool acquired, finished, warm;
	int64_t acquire_us, start_us;
	int64_t finished_ns; /* when its step.finished was received */
	char sandbox_id[SW_UUID_STRLEN];
	char status[16];
	char error[200];
};

/* One group of steps: run ids "<prefix>-<tag>-<index>". */
struct phase {
	char tag;
	size_t n;
	struct rec *r;
};

static struct sw_event_registry *reg;
static rd_kafka_t *producer, *collector;
static CURL *curl;
static const char *bootstrap, *metrics_url;
static char prefix[48];
static int settle_ms;
static struct phase phases[4] = {{'u', 0, NULL}, {'w', 0, NULL}, {'c', 0, NULL}, {'b', 0, NULL}};

static void __attribute__((noreturn)) die(const char *what, const char *why)
{
	fprintf(stderr, "bench-sandboxd: %s: %s\n", what, why);
	exit(1);
}

static void figure(const char *name, double value, const char *unit)
{
	printf("{\"bench\": \"sandboxd\", \"figure\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", "
	       "\"baseline\": 0, \"ratio\": 0}\n",
	       name, value, unit);
	fflush(stdout);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, int p)
{
	size_t i = (n * (size_t)p) / 100;

	qsort(v, n, sizeof(*v), cmp_i64);
	return v[i >= n ? n - 1 : i];
}

static void loadavg(const char *when)
{
	char buf[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f != NULL) {
		if (fgets(buf, sizeof(buf), f) == NULL)
			snprintf(buf, sizeof(buf), "?\n");
		fclose(f);
	}
	fprintf(stderr, "bench-sandboxd: load average %s: %s", when, buf);
}

/* ---- Kafka --------------------------------------------------------------- */

static rd_kafka_t *client(rd_kafka_type_t type)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256], gid[96];
	rd_kafka_t *rk;

#define SET(k, v)                                                                                 \
	do {                                                                                      \
		if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)          \
			die(k, err);                                                              \
	} while (0)
	SET("bootstrap.servers", bootstrap);
	if (type == RD_KAFKA_PRODUCER) {
		SET("enable.idempotence", "true");
		SET("linger.ms", "0");
	} else {
		snprintf(gid, sizeof(gid), "%s-collector", prefix);
		SET("group.id", gid);
		SET("enable.auto.commit", "false");
		SET("fetch.wait.max.ms", "10");
	}
#undef SET
	if ((rk = rd_kafka_new(type, conf, err, sizeof(err))) == NULL)
		die("kafka", err);
	return rk;
}

/* Read from the end of sagewai.steps and sagewai.sandbox, every partition. */
static void collector_start(void)
{
	static const char *const topics[] = {"sagewai.steps", "sagewai.sandbox"};
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
	const struct rd_kafka_metadata *md;

	collector = client(RD_KAFKA_CONSUMER);
	rd_kafka_poll_set_consumer(collector);
	for (size_t t = 0; t < 2; t++) {
		rd_kafka_topic_t *kt = rd_kafka_topic_new(collector, topics[t], NULL);

		if (rd_kafka_metadata(collector, 0, kt, &md, 10000) !=
			RD_KAFKA_RESP_ERR_NO_ERROR ||
		    md->topic_cnt != 1 || md->topics[0].partition_cnt < 1)
			die(topics[t], "no metadata");
		for (int p = 0; p < md->topics[0].partition_cnt; p++) {
			int64_t lo, hi;

			if (rd_kafka_query_watermark_offsets(collector, topics[t], p, &lo, &hi,
							     10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
				die(topics[t], "no watermarks");
			rd_kafka_topic_partition_list_add(l, topics[t], p)->offset = hi;
		}
		rd_kafka_metadata_destroy(md);
		rd_kafka_topic_destroy(kt);
	}
	if (rd_kafka_assign(collector, l) != RD_KAFKA_RESP_ERR_NO_ERROR)
		die("collector", "assign failed");
	rd_kafka_topic_partition_list_destroy(l);
}

/* The record a run id names, or NULL when it is not one of ours. */
static struct rec *rec_of(const char *run_id)
{
	size_t n = strlen(prefix);
	char tag;
	size_t i;
	int used = 0;

	if (strncmp(run_id, prefix, n) != 0 || run_id[n] != '-')
		return NULL;
	if (sscanf(run_id + n + 1, "%c-%zu%n", &tag, &i, &used) != 2 ||
	    run_id[n + 1 + (size_t)used] != '\0')
		return NULL;
	for (size_t p = 0; p < 4; p++)
		if (phases[p].tag == tag && i < phases[p].n)
			return &phases[p].r[i];
	return NULL;
}

static void take(const rd_kafka_message_t *m)
{
	struct sw_event_header h;
	char err[256];
	struct rec *r;
	json_t *e;
	const char *s;

	if (sw_event_decode_header(reg, m->payload, m->len, &h, err, sizeof(err)) != 0 ||
	    (r = rec_of(h.run_id)) == NULL)
		return;
	if (strcmp(h.type, "sandbox.acquired") != 0 && strcmp(h.type, "step.finished") != 0)
		return;
	if ((e = sw_event_decode(reg, m->payload, m->len, err, sizeof(err))) == NULL)
		die(h.type, err);
	if (h.type[1] == 'a') { /* sandbox.acquired */
		if (r->acquired)
			die("sandbox.acquired", "twice for one step");
		r->acquired = true;
		r->warm = json_is_true(json_object_get(e, "warm"));
		r->acquire_us = json_integer_value(json_object_get(e, "acquire_us"));
		r->start_us = json_integer_value(json_object_get(e, "start_us"));
		s = json_string_value(json_object_get(e, "sandbox_id"));
		snprintf(r->sandbox_id, sizeof(r->sandbox_id), "%s", s ? s : "");
	} else if (!r->finished) {
		r->finished = true;
		r->finished_ns = sw_mono_ns();
		s = json_string_value(json_object_get(e, "status"));
		snprintf(r->status, sizeof(r->status), "%s", s ? s : "");
		s = json_string_value(json_object_get(e, "error"));
		snprintf(r->error, sizeof(r->error), "%s", s ? s : "");
	}
	json_decref(e);
}

static void collect(int wait_ms)
{
	rd_kafka_message_t *m;

	while ((m = rd_kafka_consumer_poll(collector, wait_ms)) != NULL) {
		wait_ms = 0;
		if (m->err == 0)
			take(m);
		rd_kafka_message_destroy(m);
	}
}

/* Produce the step.dispatched of step i of phase ph (not flushed). */
static void dispatch(struct phase *ph, size_t i)
{
	struct sw_event_header h;
	char err[256], *text;
	json_t *spec, *o;
	void *buf;
	size_t len;
	rd_kafka_resp_err_t ke;

	spec = json_pack("{s:s, s:i, s:s, s:[s], s:[s], s:i}", "workflow", "bench-sandboxd",
			 "workflow_version", 1, "uses", "", "run", "/bin/true", "run_modes",
			 "sandboxed", "output_max", 65536);
	/* limits below the variant's: never from the warm pool (pool.c) */
	if (ph->tag == 'c')
		json_object_set_new(spec, "limits", json_pack("{s:i}", "pids", 255));
	sw_event_header_init(&h, "step.dispatched", "bench-sandboxd");
	snprintf(h.tenant, sizeof(h.tenant), "default");
	snprintf(h.run_id, sizeof(h.run_id), "%s-%c-%zu", prefix, ph->tag, i);
	snprintf(h.step_id, sizeof(h.step_id), "%s/t/1", h.run_id);
	text = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	o = json_pack("{s:s, s:i, s:s, s:i, s:s, s:I}", "step", "t", "index", 0, "mode",
		      "sandboxed", "attempt", 1, "spec", text, "timeout_ms", (json_int_t)60000);
	free(text);
	if (sw_event_encode(reg, "step.dispatched", &h, o, &buf, &len, err, sizeof(err)) != 0)
		die("encode", err);
	json_decref(o);
	ke = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC("sagewai.steps.sandbox"),
			       RD_KAFKA_V_KEY(h.run_id, strlen(h.run_id)),
			       RD_KAFKA_V_VALUE(buf, len),
			       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	free(buf);
	if (ke != RD_KAFKA_RESP_ERR_NO_ERROR)
		die("produce", rd_kafka_err2str(ke));
	rd_kafka_poll(producer, 0);
}

static void flush(void)
{
	if (rd_kafka_flush(producer, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		die("produce", "flush timed out");
}

/* Wait until steps [from, to) of ph are acquired and finished, successfully. */
static void wait_done(struct phase *ph, size_t from, size_t to)
{
	int64_t until = sw_mono_ns() + (int64_t)WAIT_S * 1000000000LL;
	size_t i = from;

	while (i < to) {
		struct rec *r = &ph->r[i];

		if (r->finished && r->acquired) {
			if (strcmp(r->status, "SUCCEEDED") != 0) {
				fprintf(stderr, "bench-sandboxd: step %c-%zu: %s: %s\n", ph->tag,
					i, r->status, r->error);
				die("step", "did not succeed");
			}
			i++;
			continue;
		}
		if (sw_mono_ns() > until)
			die("step", "no step.finished and sandbox.acquired within the wait");
		collect(10);
	}
}

/* ---- /metrics ------------------------------------------------------------ */

static size_t body_cb(char *d, size_t sz, size_t nm, void *u)
{
	return sw_buf_add(u, d, sz * nm) == 0 ? sz * nm : 0;
}

/* The value of metric name, or -1 when unreachable or missing. */
static double metric(const char *name)
{
	struct sw_buf b = {0};
	double v = -1;
	size_t n = strlen(name);
	const char *p;

	curl_easy_setopt(curl, CURLOPT_URL, metrics_url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, body_cb);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(curl) == CURLE_OK && b.p != NULL)
		for (p = b.p; (p = strstr(p, name)) != NULL; p += n)
			if ((p == b.p || p[-1] == '\n') && p[n] == ' ') {
				v = atof(p + n + 1);
				break;
			}
	sw_buf_free(&b);
	return v;
}

/* Poll until the warm pool holds target sandboxes. */
static void wait_pool_full(double target)
{
	int64_t until = sw_mono_ns() + (int64_t)WAIT_S * 1000000000LL;

	while (metric("sagewai_sandboxd_warm_ready") < target) {
		if (sw_mono_ns() > until)
			die("warm pool", "not full within the wait");
		usleep(2000);
	}
}

/* ---- processes ------------------------------------------------------------ */

static long pss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Pss: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void exe_of(pid_t pid, char *out, size_t len)
{
	char path[64];
	ssize_t k;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	if ((k = readlink(path, out, len - 1)) < 0)
		k = 0;
	out[k] = '\0';
}

struct tree {
	char exe[PATH_MAX]; /* sagewai-sandboxd's */
	long own_kb, sandbox_kb;
	long bwrap_kb; /* of sandbox_kb: the processes named bwrap */
	int own, sandboxes, procs;
};

static bool is_bwrap(pid_t pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	if (fgets(comm, sizeof(comm), f) == NULL)
		comm[0] = '\0';
	fclose(f);
	return strcmp(comm, "bwrap\n") == 0;
}

/* Walk the children of every thread of pid; in_sandbox once under a
 * process that is not sandboxd. */
static void walk(struct tree *t, pid_t pid, bool in_sandbox)
{
	char path[320], buf[4096], exe[PATH_MAX];
	struct dirent *de;
	DIR *d;

	exe_of(pid, exe, sizeof(exe));
	if (!in_sandbox && strcmp(exe, t->exe) == 0) {
		t->own++;
		t->own_kb += pss_kb(pid);
	} else {
		if (!in_sandbox)
			t->sandboxes++;
		in_sandbox = true;
		long kb = pss_kb(pid);

		t->procs++;
		t->sandbox_kb += kb;
		if (is_bwrap(pid))
			t->bwrap_kb += kb;
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)pid, de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL)
			for (char *s, *tok = strtok_r(buf, " \n", &s); tok;
			     tok = strtok_r(NULL, " \n", &s))
				walk(t, (pid_t)atol(tok), in_sandbox);
		fclose(f);
	}
	closedir(d);
}

static void idle_memory(pid_t pid, int warm)
{
	int64_t until = sw_mono_ns() + (int64_t)WAIT_S * 1000000000LL;
	struct tree t;

	wait_pool_full(warm);
	/* the sandboxes of finished steps are destroyed in the background */
	for (;;) {
		memset(&t, 0, sizeof(t));
		exe_of(pid, t.exe, sizeof(t.exe));
		if (t.exe[0] == '\0')
			die("--pid", "no such process (or not readable)");
		walk(&t, pid, false);
		if (t.sandboxes == warm)
			break;
		if (sw_mono_ns() > until)
			die("idle memory", "the sandboxes under sandboxd never matched the pool");
		usleep(50000);
	}
	usleep(500000);
	memset(&t, 0, sizeof(t));
	exe_of(pid, t.exe, sizeof(t.exe));
	walk(&t, pid, false);
	if (t.sandboxes != warm || t.own != 2)
		fprintf(stderr, "bench-sandboxd: note: %d sandboxes, %d sandboxd processes\n",
			t.sandboxes, t.own);
	fprintf(stderr,
		"bench-sandboxd: idle: %d warm sandboxes (%d processes, %ld kB PSS, of "
		"which bwrap %ld kB), %d sagewai-sandboxd processes (%ld kB PSS)\n",
		t.sandboxes, t.procs, t.sandbox_kb, t.bwrap_kb, t.own, t.own_kb);
	figure("idle_pss_per_warm_sandbox", (double)t.sandbox_kb / t.sandboxes, "kB");
	figure("sandboxd_pss", (double)t.own_kb, "kB");
}

/* ---- phases ----------------------------------------------------------------- */

static void phase_alloc(struct phase *ph, size_t n)
{
	ph->n = n;
	if ((ph->r = calloc(n ? n : 1, sizeof(*ph->r))) == NULL)
		die("calloc", "out of memory");
}

/* One step at a time, each once the pool is full; acquire_us of those whose
 * sandbox.acquired says warm == want_warm into out; returns how many. */
static size_t one_by_one(struct phase *ph, int warm, bool want_warm, int64_t *out, int64_t *start)
{
	size_t k = 0;

	for (size_t i = 0; i < ph->n; i++) {
		wait_pool_full(warm);
		if (settle_ms > 0)
			usleep((useconds_t)settle_ms * 1000);
		dispatch(ph, i);
		flush();
		wait_done(ph, i, i + 1);
		if (ph->r[i].warm == want_warm) {
			start[k] = ph->r[i].start_us;
			out[k++] = ph->r[i].acquire_us;
		}
	}
	return k;
}

/* The tail of acquire_us, for the notes. */
static void spread(const char *what, int64_t *v, size_t n)
{
	size_t over = 0;

	qsort(v, n, sizeof(*v), cmp_i64); /* before the arguments below are read */
	for (size_t i = 0; i < n; i++)
		over += v[i] > 1000;
	fprintf(stderr,
		"bench-sandboxd: %s acquire_us: p10 %lld, p50 %lld, p90 %lld, p99 %lld, "
		"max %lld; %zu of %zu over 1 ms\n",
		what, (long long)pct(v, n, 10), (long long)pct(v, n, 50), (long long)pct(v, n, 90),
		(long long)pct(v, n, 99), (long long)v[n - 1], over, n);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void burst(struct phase *ph, int warm)
{
	char **ids = calloc(ph->n, sizeof(char *));
	int64_t *acq = calloc(ph->n, sizeof(int64_t)), *st = calloc(ph->n, sizeof(int64_t));
	size_t distinct = 0, hits = 0;
	int64_t t0, last = 0;
	double secs;

	if (ids == NULL || acq == NULL || st == NULL)
		die("calloc", "out of memory");
	wait_pool_full(warm);
	t0 = sw_mono_ns();
	for (size_t i = 0; i < ph->n; i++)
		dispatch(ph, i);
	flush();
	wait_done(ph, 0, ph->n);
	for (size_t i = 0; i < ph->n; i++) {
		if (ph->r[i].finished_ns > last)
			last = ph->r[i].finished_ns;
		hits += ph->r[i].warm;
		ids[i] = ph->r[i].sandbox_id;
		acq[i] = ph->r[i].acquire_us;
		st[i] = ph->r[i].start_us;
	}
	qsort(ids, ph->n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < ph->n; i++)
		distinct += ids[i][0] != '\0' && (i == 0 || strcmp(ids[i], ids[i - 1]) != 0);
	free(ids);
	secs = (double)(last - t0) / 1e9;
	fprintf(stderr,
		"bench-sandboxd: burst: %zu steps in %.3f s, %zu distinct sandboxes, "
		"%zu from the warm pool\n",
		ph->n, secs, distinct, hits);
	fprintf(stderr, "bench-sandboxd: burst: start_us p50 %lld p99 %lld\n",
		(long long)pct(st, ph->n, 50), (long long)pct(st, ph->n, 99));
	spread("burst", acq, ph->n);
	free(acq);
	free(st);
	if (distinct != ph->n)
		die("burst", "a sandbox served more than one step");
	figure("sandboxes_per_s", (double)ph->n / secs, "sandboxes/s");
}

int main(int argc, char **argv)
{
	size_t n_warm = 200, n_cold = 100, n_burst = 300, k;
	int warm = -1;
	pid_t pid = 0;
	int64_t *acq, *start;
	char err[256];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--bootstrap") == 0 && i + 1 < argc)
			bootstrap = argv[++i];
		else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc)
			metrics_url = argv[++i];
		else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc)
			pid = (pid_t)atol(argv[++i]);
		else if (strcmp(argv[i], "--warm") == 0 && i + 1 < argc)
			warm = atoi(argv[++i]);
		else if (strcmp(argv[i], "--acquires") == 0 && i + 1 < argc)
			n_warm = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--cold") == 0 && i + 1 < argc)
			n_cold = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--burst") == 0 && i + 1 < argc)
			n_burst = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--settle-ms") == 0 && i + 1 < argc)
			settle_ms = atoi(argv[++i]);
		else {
			fprintf(stderr,
				"usage: bench-sandboxd --bootstrap HOST:PORT --metrics URL "
				"--pid PID --warm N [--acquires N] [--cold N] [--burst M] "
				"[--settle-ms S]\n");
			return 2;
		}
	}
	if (bootstrap == NULL || metrics_url == NULL || pid <= 0 || warm < 1 || n_warm < 2 ||
	    n_cold < 2 || n_burst < 1) {
		fprintf(stderr, "bench-sandboxd: --bootstrap, --metrics, --pid and --warm (>= 1) "
				"are required; --acquires and --cold >= 2\n");
		return 2;
	}
	loadavg("at start");
	snprintf(prefix, sizeof(prefix), "bsd-%d", (int)getpid());
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((curl = curl_easy_init()) == NULL)
		die("curl", "init failed");
	if ((reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		die("events", err);
	producer = client(RD_KAFKA_PRODUCER);
	collector_start();
	phase_alloc(&phases[0], 20);
	phase_alloc(&phases[1], n_warm);
	phase_alloc(&phases[2], n_cold);
	phase_alloc(&phases[3], n_burst);
	/* one series at a time: the longest of warm-up, warm and cold */
	k = phases[0].n > n_warm ? phases[0].n : n_warm;
	k = k > n_cold ? k : n_cold;
	if ((acq = calloc(k, sizeof(*acq))) == NULL || (start = calloc(k, sizeof(*start))) == NULL)
		die("calloc", "out of memory");

	/* warm-up: sandboxd joins its group, the broker's JIT, the caches */
	wait_pool_full(warm);
	one_by_one(&phases[0], warm, true, acq, start);

	k = one_by_one(&phases[1], warm, true, acq, start);
	fprintf(stderr,
		"bench-sandboxd: warm: %zu steps, %zu warm hits, %zu misses (left out); "
		"their sandboxes' start_us p50 %lld\n",
		n_warm, k, n_warm - k, k ? (long long)pct(start, k, 50) : -1LL);
	if (k == 0)
		die("warm", "no warm hit");
	spread("warm", acq, k);
	figure("warm_acquire_p50", (double)pct(acq, k, 50), "us");
	figure("warm_acquire_p99", (double)pct(acq, k, 99), "us");

	k = one_by_one(&phases[2], warm, false, acq, start);
	fprintf(stderr,
		"bench-sandboxd: cold: %zu steps with custom limits, %zu cold starts, "
		"%zu warm (left out); start_us p50 %lld\n",
		n_cold, k, n_cold - k, k ? (long long)pct(start, k, 50) : -1LL);
	if (k == 0)
		die("cold", "no cold start");
	spread("cold", acq, k);
	figure("cold_acquire_p50", (double)pct(acq, k, 50), "us");
	figure("cold_acquire_p99", (double)pct(acq, k, 99), "us");

	burst(&phases[3], warm);
	idle_memory(pid, warm);
	loadavg("at the end");

	for (size_t p = 0; p < 4; p++)
		free(phases[p].r);
	free(acq);
	free(start);
	rd_kafka_consumer_close(collector);
	rd_kafka_destroy(collector);
	rd_kafka_destroy(producer);
	sw_events_registry_destroy(reg);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	return 0;
}
