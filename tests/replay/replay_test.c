/*
 * Black-box tests of `sagewai replay publish` over the harness's real Kafka
 * broker. Each scenario writes an audit log with libs/auditlog directly
 * (events encoded with libs/events, a dead letter kept raw now and then),
 * runs the CLI on it and reads the target topic back in full:
 *
 *   hundred_k  100,000 events of 1,000 runs into a fresh topic: each exactly
 *              once, the stored bytes, keyed by run, in log order per key,
 *              with the replay headers; the Python consumer
 *              (examples/consumers/run_summary.py) reads them back to the
 *              same per-run summary; a rerun with the state file sends
 *              nothing
 *   kill9      kill -9 of a rate-limited publish twice, each time resumed
 *              with the same state file: no event twice in the topic, none
 *              missing, and the killed runs had delivered past their saved
 *              state (so the resume had to find those in the topic); runs
 *              with the selection held in memory and with a first pass
 *   select     --run, --type (repeated), --since/--until, and all at once:
 *              exactly the matching events
 *   broken     a changed byte in record 15,000: refused, naming the record,
 *              and nothing published, whether the selection fits in memory
 *              (one pass) or not (a first pass checks the log)
 *   refuse     a live topic without --into-live, an unknown type, a state
 *              file of another job, a state file that is no state, a log
 *              replaced under a state: each refused with its reason
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

#include "sw_alog.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

#define BASE_US 1735689600000000LL /* 2025-01-01T00:00:00Z */
#define STEP_US 1000		   /* one event per millisecond of header time */

static const char *const types[] = {"run.submitted", "run.started", "step.started",
				    "run.finished"};

static struct sw_event_registry *reg;
static char prefix[48]; /* run ids are "<prefix>-r<n>" */
static char work[512];	/* this scenario's directory */
static char cli[512];

/* What the generator wrote at each seq. */
struct genrec {
	int kind;  /* SW_ALOG_EVENT or SW_ALOG_RAW */
	int run;   /* run index */
	int type;  /* index into types */
	int64_t time_us;
	uint8_t digest[16]; /* BLAKE2b-128 of the payload */
	char topic[24];
	int32_t partition;
	int64_t offset;
	uint64_t segment, file_off;
};

static struct genrec *gen;
static uint64_t gen_n; /* records written (seqs 1..gen_n) */

static void setup(const char *scenario)
{
	const char *build = getenv("SW_BUILD_DIR");
	char q[1100], err[256];

	sw_test_env_load();
	SW_CHECK(build != NULL && sodium_init() >= 0);
	snprintf(prefix, sizeof(prefix), "rp-%s-%d", scenario, (int)getpid());
	snprintf(work, sizeof(work), "%s/tests-tmp/replay-%s", build, prefix);
	snprintf(cli, sizeof(cli), "%s/tools/cli/sagewai", build);
	snprintf(q, sizeof(q), "rm -rf %s && mkdir -p %s", work, work);
	SW_CHECK(system(q) == 0);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
}

static void run_id(int r, char *out, size_t n)
{
	snprintf(out, n, "%s-r%d", prefix, r);
}

/* Write a log of n events of nruns runs into dir (and a raw dead letter
 * after every 997th event), header times BASE_US + i * STEP_US. */
static void gen_log(const char *dir, uint64_t n, int nruns)
{
	int64_t offs[2][4] = {{0}};
	struct sw_alog *l;
	char err[256];
	uint64_t i;

	gen_n = 0;
	free(gen);
	gen = calloc(n + n / 997 + 2, sizeof(*gen));
	SW_CHECK(gen != NULL);
	l = sw_alog_open(dir, 8u << 20, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "%s", err);
	for (i = 0; i < n; i++) {
		struct sw_event_header h;
		int r = (int)(i % (uint64_t)nruns), c = (int)(i / (uint64_t)nruns), t = c % 4;
		char text[64];
		struct genrec *g;
		json_t *o;
		void *buf;
		size_t len;
		uint64_t seq, seg, off;
		int ti;

		sw_event_header_init(&h, types[t], "replay-test");
		run_id(r, h.run_id, sizeof(h.run_id));
		h.time_us = BASE_US + (int64_t)i * STEP_US;
		snprintf(text, sizeof(text), "{\"n\": %d}", c);
		if (t == 0)
			o = json_pack("{s:s, s:i, s:s}", "workflow", "replay-test",
				      "workflow_version", 1, "input", text);
		else if (t == 1)
			o = json_pack("{s:s, s:i}", "workflow", "replay-test", "workflow_version",
				      c);
		else if (t == 2)
			o = json_pack("{s:s, s:i}", "step", "s", "attempt", c);
		else
			o = json_pack("{s:s, s:s}", "status", "SUCCEEDED", "output", text);
		if (t == 2)
			snprintf(h.step_id, sizeof(h.step_id), "%s/s/%d", h.run_id, c);
		SW_CHECKF(sw_event_encode(reg, types[t], &h, o, &buf, &len, err, sizeof(err)) == 0,
			  "%s", err);
		json_decref(o);
		ti = t == 2 ? 1 : 0;
		SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, ti ? "sagewai.steps" : "sagewai.runs",
					r % 4, offs[ti][r % 4], h.time_us, buf, len, &seq, &seg,
					&off, err, sizeof(err)) == 0);
		g = &gen[seq];
		g->kind = SW_ALOG_EVENT;
		g->run = r;
		g->type = t;
		g->time_us = h.time_us;
		snprintf(g->topic, sizeof(g->topic), "%s", ti ? "sagewai.steps" : "sagewai.runs");
		g->partition = r % 4;
		g->offset = offs[ti][r % 4]++;
		g->segment = seg;
		g->file_off = off;
		crypto_generichash(g->digest, 16, buf, len, NULL, 0);
		free(buf);
		gen_n = seq;
		if (i % 997 == 996) {
			static const char junk[] = "not an event";

			SW_CHECK(sw_alog_append(l, SW_ALOG_RAW, "sagewai.deadletter", 0,
						(int64_t)i, h.time_us, junk, sizeof(junk) - 1,
						&seq, NULL, NULL, err, sizeof(err)) == 0);
			gen[seq].kind = SW_ALOG_RAW;
			gen_n = seq;
		}
		if (i % 4096 == 4095)
			SW_CHECKF(sw_alog_sync(l, err, sizeof(err)) == 0, "%s", err);
	}
	SW_CHECKF(sw_alog_sync(l, err, sizeof(err)) == 0, "%s", err);
	sw_alog_close(l);
}

/* Run the CLI with args (NULL-ended, without argv[0]) and extra env
 * entries; its output goes to out (truncated first). Returns its exit
 * status. */
static int run_cli(const char *out, const char *const *args)
{
	const char *argv[40];
	const char *const env[] = {"SAGEWAI_DATA_DIR", "SAGEWAI_KAFKA_PRODUCER_CONFIG", NULL};
	int n = 0, st;
	pid_t pid;

	argv[n++] = "sagewai";
	while (*args != NULL && n < 38)
		argv[n++] = *args++;
	argv[n] = NULL;
	unlink(out);
	pid = sw_test_proc_spawn(cli, argv, env, out);
	SW_CHECK(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	SW_CHECKF(f != NULL, "open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	SW_CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	return buf;
}

/* The last line of a file that parses as a JSON object. */
static json_t *last_json(const char *path)
{
	char *text = slurp(path), *line, *save = NULL;
	json_t *last = NULL;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);

		if (json_is_object(j)) {
			json_decref(last);
			last = j;
		} else {
			json_decref(j);
		}
	}
	free(text);
	SW_CHECKF(last != NULL, "no JSON line in %s", path);
	return last;
}

static long long jget(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

/* ---- reading the target topic back ---------------------------------------- */

struct got {
	uint64_t seq;
	int32_t partition;
	int64_t offset;
	char key[64];
	uint8_t digest[16];
	char id[40], htopic[32], hpart[16], hoff[24];
	int marked; /* it has the header sagewai.replay (--mark); seq 0 without */
};

static int hdr(rd_kafka_headers_t *h, const char *name, char *out, size_t n)
{
	const void *v;
	size_t len;

	out[0] = '\0';
	if (h == NULL || rd_kafka_header_get_last(h, name, &v, &len) != 0 || len >= n)
		return -1;
	memcpy(out, v, len);
	out[len] = '\0';
	return 0;
}

struct by_digest {
	uint8_t digest[16];
	uint64_t seq;
};

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/* The seq of the log's event whose bytes have this digest (the payloads
 * are distinct: ids, seqs); 0 for none. */
static uint64_t seq_of_digest(const uint8_t *digest)
{
	static struct by_digest *d;
	static size_t nd;
	static uint64_t for_n;
	const struct by_digest *f;
	uint64_t i;

	if (d == NULL || for_n != gen_n) {
		free(d);
		d = calloc(gen_n + 1, sizeof(*d));
		SW_REQUIRE(d != NULL, "out of memory");
		for (nd = 0, i = 1; i <= gen_n; i++)
			if (gen[i].kind == SW_ALOG_EVENT) {
				memcpy(d[nd].digest, gen[i].digest, 16);
				d[nd++].seq = i;
			}
		qsort(d, nd, sizeof(*d), cmp_digest);
		for_n = gen_n;
	}
	f = bsearch(digest, d, nd, sizeof(*d), cmp_digest);
	return f != NULL ? f->seq : 0;
}

/* Every message of topic, from its beginning to its end now. */
static struct got *read_topic(const char *topic, size_t *count)
{
	static const char *const conf[] = {"enable.partition.eof=true", NULL};
	rd_kafka_t *rk = sw_test_kafka_new(RD_KAFKA_CONSUMER, "replay-test-read", conf);
	const char *const topics[] = {topic, NULL};
	rd_kafka_topic_partition_list_t *ends = sw_test_kafka_ends(rk, topics), *as;
	struct got *v = NULL;
	size_t n = 0, cap = 0;
	int left = 0, i;
	int64_t t0 = sw_mono_ms();

	as = rd_kafka_topic_partition_list_new(ends->cnt);
	for (i = 0; i < ends->cnt; i++) {
		if (ends->elems[i].offset > 0) {
			rd_kafka_topic_partition_t *tp;

			tp = rd_kafka_topic_partition_list_add(as, topic,
							       ends->elems[i].partition);
			tp->offset = RD_KAFKA_OFFSET_BEGINNING;
			left++;
		}
	}
	SW_CHECK(rd_kafka_assign(rk, as) == 0);
	while (left > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
		rd_kafka_headers_t *h = NULL;
		char job[160], *slash, *sp;
		struct got *g;

		SW_CHECKF(sw_mono_ms() - t0 < 120000, "reading %s back: %d partitions left", topic,
			  left);
		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			for (i = 0; i < ends->cnt; i++)
				if (ends->elems[i].partition == m->partition &&
				    ends->elems[i].offset > 0 &&
				    m->offset >= ends->elems[i].offset) {
					ends->elems[i].offset = 0;
					left--;
				}
			rd_kafka_message_destroy(m);
			continue;
		}
		SW_CHECKF(m->err == 0, "%s", rd_kafka_message_errstr(m));
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			v = realloc(v, cap * sizeof(*v));
			SW_CHECK(v != NULL);
		}
		g = &v[n++];
		memset(g, 0, sizeof(*g));
		g->partition = m->partition;
		g->offset = m->offset;
		SW_CHECK(m->key_len < sizeof(g->key));
		memcpy(g->key, m->key, m->key_len);
		crypto_generichash(g->digest, 16, m->payload, m->len, NULL, 0);
		if (rd_kafka_message_headers(m, &h) != 0) { /* none: no --mark */
			g->seq = seq_of_digest(g->digest);
			rd_kafka_message_destroy(m);
			continue;
		}
		/* one header: sagewai.replay = ID/SEQ TOPIC/PARTITION/OFFSET */
		g->marked = 1;
		SW_CHECK(hdr(h, "sagewai.replay", job, sizeof(job)) == 0);
		SW_CHECK(rd_kafka_header_cnt(h) == 1);
		SW_CHECKF((slash = strchr(job, '/')) != NULL && slash - job == 36, "job %s", job);
		memcpy(g->id, job, 36);
		g->seq = strtoull(slash + 1, &sp, 10);
		SW_CHECKF(*sp == ' ', "job %s", job);
		SW_CHECKF(sscanf(sp + 1, "%31[^/]/%15[^/]/%23s", g->htopic, g->hpart, g->hoff) ==
			      3,
			  "from %s", job);
		rd_kafka_message_destroy(m);
	}
	rd_kafka_topic_partition_list_destroy(as);
	rd_kafka_topic_partition_list_destroy(ends);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	*count = n;
	return v;
}

static int cmp_part_off(const void *a, const void *b)
{
	const struct got *x = a, *y = b;

	if (x->partition != y->partition)
		return x->partition < y->partition ? -1 : 1;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The topic holds exactly the seqs with want[seq] set, each once, with
 * the stored bytes, keyed by run, in seq order per key (read in partition
 * order); with the header sagewai.replay naming the seq and the origin
 * when marked (--mark), with no header at all else (the seq found by the
 * bytes). Returns how many. */
static size_t check_topic(const char *topic, const uint8_t *want, int marked)
{
	size_t n, i, expect = 0;
	struct got *v = read_topic(topic, &n);
	uint8_t *seen = calloc(gen_n + 1, 1);
	uint64_t *last = calloc(100000, sizeof(*last));
	char rid[64], num[32];

	SW_CHECK(seen != NULL && last != NULL);
	qsort(v, n, sizeof(*v), cmp_part_off);
	for (i = 1; i < n; i++)
		SW_CHECKF(strcmp(v[i].id, v[0].id) == 0, "two replay jobs in %s", topic);
	for (i = 0; i < n; i++) {
		struct got *g = &v[i];
		const struct genrec *e;
		int r;

		SW_CHECKF(g->marked == marked, "a message %s the header sagewai.replay",
			  g->marked ? "with" : "without");
		SW_CHECKF(g->seq != 0, "a message of %s is no event of the log", topic);

		SW_CHECKF(g->seq >= 1 && g->seq <= gen_n, "seq %llu out of the log",
			  (unsigned long long)g->seq);
		SW_CHECKF(want[g->seq], "seq %llu was not selected", (unsigned long long)g->seq);
		SW_CHECKF(!seen[g->seq], "seq %llu is in %s twice", (unsigned long long)g->seq,
			  topic);
		seen[g->seq] = 1;
		e = &gen[g->seq];
		SW_CHECK(e->kind == SW_ALOG_EVENT);
		SW_CHECKF(memcmp(g->digest, e->digest, 16) == 0, "seq %llu: bytes differ",
			  (unsigned long long)g->seq);
		run_id(e->run, rid, sizeof(rid));
		SW_CHECKF(strcmp(g->key, rid) == 0, "seq %llu: key '%s', not %s",
			  (unsigned long long)g->seq, g->key, rid);
		if (marked) {
			SW_CHECK(strcmp(g->htopic, e->topic) == 0);
			snprintf(num, sizeof(num), "%d", e->partition);
			SW_CHECK(strcmp(g->hpart, num) == 0);
			snprintf(num, sizeof(num), "%lld", (long long)e->offset);
			SW_CHECK(strcmp(g->hoff, num) == 0);
		}
		r = e->run;
		SW_CHECK(r >= 0 && r < 100000);
		SW_CHECKF(g->seq > last[r], "run %d: seq %llu after %llu (order per key)", r,
			  (unsigned long long)g->seq, (unsigned long long)last[r]);
		last[r] = g->seq;
	}
	for (i = 1; i <= gen_n; i++)
		if (want[i]) {
			SW_CHECKF(seen[i], "seq %zu missing from %s", i, topic);
			expect++;
		}
	SW_CHECK(expect == n);
	free(v);
	free(seen);
	free(last);
	return n;
}

/* Messages in topic now; 0 for a topic that does not exist. */
static int64_t topic_total(const char *topic)
{
	static const char *const conf[] = {"allow.auto.create.topics=false", NULL};
	rd_kafka_t *rk = sw_test_kafka_new(RD_KAFKA_CONSUMER, "replay-test-count", conf);
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	int64_t sum = 0, lo, hi;
	int p, np;

	SW_CHECK(rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	np = md->topic_cnt == 1 && md->topics[0].err == 0 ? md->topics[0].partition_cnt : 0;
	rd_kafka_metadata_destroy(md);
	for (p = 0; p < np; p++) {
		SW_CHECK(rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000) == 0);
		sum += hi;
	}
	rd_kafka_topic_destroy(t);
	rd_kafka_destroy(rk);
	return sum;
}

static uint8_t *want_all(void)
{
	uint8_t *w = calloc(gen_n + 1, 1);
	uint64_t s;

	SW_CHECK(w != NULL);
	for (s = 1; s <= gen_n; s++)
		w[s] = gen[s].kind == SW_ALOG_EVENT;
	return w;
}

/* ---- scenarios ------------------------------------------------------------- */

static void hundred_k(void)
{
	char dir[600], state[600], out[600], topic[128], py[2400];
	const char *src = getenv("SW_SOURCE_DIR");
	uint8_t *want;
	json_t *j, *runs, *r;
	int64_t t0, before;
	const char *key;
	int rc;

	setup("hundred_k");
	snprintf(dir, sizeof(dir), "%s/audit", work);
	snprintf(state, sizeof(state), "%s/job.state", work);
	snprintf(out, sizeof(out), "%s/publish.out", work);
	snprintf(topic, sizeof(topic), "%s-target", prefix);
	gen_log(dir, 100000, 1000);
	t0 = sw_mono_ms();
	{
		const char *args[] = {"replay", "publish", "--log", dir,      "--to",
				      topic,	"--state", state,   "--mark", NULL};

		rc = run_cli(out, args);
	}
	j = last_json(out);
	SW_CHECKF(rc == 0, "exit %d: %s", rc, slurp(out));
	fprintf(stderr, "published 100,000 events in %lld ms\n", (long long)(sw_mono_ms() - t0));
	SW_CHECK(json_is_true(json_object_get(j, "finished")));
	SW_CHECK(jget(j, "total") == 100000 && jget(j, "done") == 100000 &&
		 jget(j, "sent") == 100000 && jget(j, "end_seq") == (long long)gen_n);
	json_decref(j);
	want = want_all();
	SW_CHECK(check_topic(topic, want, 1) == 100000);

	/* the Python consumer reads them back: same per-run summary */
	snprintf(py, sizeof(py),
		 "python3 %s/examples/consumers/run_summary.py --topics %s --from-beginning "
		 "--idle 3 --max-seconds 240 --json > %s/summary.json 2> %s/summary.err",
		 src, topic, work, work);
	rc = system(py);
	snprintf(py, sizeof(py), "%s/summary.json", work);
	SW_CHECKF(rc == 0, "run_summary.py exit %d: %s", rc, slurp(py));
	j = last_json(py);
	SW_CHECKF(jget(j, "messages") == 100000 && jget(j, "events") == 100000 &&
			  jget(j, "duplicates") == 0 && jget(j, "replayed") == 100000 &&
			  jget(j, "replay_order_errors") == 0 && jget(j, "undecodable") == 0,
		  "summary %s", json_dumps(j, JSON_COMPACT));
	runs = json_object_get(j, "runs");
	SW_CHECK(json_object_size(runs) == 1000);
	json_object_foreach(runs, key, r) {
		json_t *ty = json_object_get(r, "types");
		int n = atoi(strrchr(key, 'r') + 1);

		SW_CHECKF(strncmp(key, prefix, strlen(prefix)) == 0, "run %s", key);
		SW_CHECK(jget(r, "events") == 100);
		SW_CHECK(jget(ty, "run.submitted") == 25 && jget(ty, "run.started") == 25 &&
			 jget(ty, "step.started") == 25 && jget(ty, "run.finished") == 25);
		SW_CHECKF(strcmp(json_string_value(json_object_get(r, "state")), "succeeded") == 0,
			  "run %s state", key);
		/* event i = c * 1000 + n, c = 0..99 */
		SW_CHECK(jget(r, "first_us") == BASE_US + (int64_t)n * STEP_US);
		SW_CHECK(jget(r, "last_us") == BASE_US + (int64_t)(99 * 1000 + n) * STEP_US);
	}
	json_decref(j);

	/* the same job again: complete, nothing sent */
	before = topic_total(topic);
	{
		const char *args[] = {"replay", "publish", "--log", dir, "--to", topic, "--state",
				      state, "--json", NULL};

		rc = run_cli(out, args);
	}
	SW_CHECKF(rc == 0, "rerun exit %d: %s", rc, slurp(out));
	j = last_json(out);
	SW_CHECK(jget(j, "done") == 100000 && jget(j, "sent") == 0 &&
		 jget(j, "resumed") == 100000);
	json_decref(j);
	SW_CHECK(topic_total(topic) == before);
	free(want);
}

/* acked_seq of a state file, -1 while unreadable */
static long long state_acked(const char *path)
{
	json_t *j = json_load_file(path, 0, NULL);
	long long v = j ? jget(j, "acked_seq") : -1;

	json_decref(j);
	return v;
}

/* How many messages of topic have seq > above. */
static size_t count_above(const char *topic, uint64_t above)
{
	size_t n, i, c = 0;
	struct got *v = read_topic(topic, &n);

	for (i = 0; i < n; i++)
		c += v[i].seq > above;
	free(v);
	return c;
}

static void kill9(void)
{
	char dir[600], state[600], out[600], topic[128];
	/* the first run holds at most 1 MB (so it checks the log in a pass of
	 * its own first), the second the default (one pass) */
	const char *argv[] = {"sagewai", "replay", "publish", "--log", dir,  "--to", topic,
			      "--state", state, "--rate", "12000", "--json", "--memory", "1",
			      NULL};
	const char *const env[] = {"SAGEWAI_DATA_DIR", NULL};
	long long marks[2] = {12000, 36000};
	size_t past[2];
	uint8_t *want;
	json_t *j;
	int k, rc;

	setup("kill9");
	snprintf(dir, sizeof(dir), "%s/audit", work);
	snprintf(state, sizeof(state), "%s/job.state", work);
	snprintf(topic, sizeof(topic), "%s-target", prefix);
	gen_log(dir, 60000, 300);
	for (k = 0; k < 2; k++) {
		pid_t pid;
		long long acked;
		int64_t t0 = sw_mono_ms();

		snprintf(out, sizeof(out), "%s/publish-%d.out", work, k);
		if (k == 1)
			argv[12] = NULL; /* no --memory */
		pid = sw_test_proc_spawn(cli, argv, env, out);
		while ((acked = state_acked(state)) < marks[k]) {
			SW_REQUIRE(sw_test_proc_running(pid), "publish ended early: %s",
				   slurp(out));
			SW_CHECK(sw_mono_ms() - t0 < 60000);
			sw_test_msleep(20);
		}
		sw_test_msleep((int)randombytes_uniform(150));
		kill(pid, SIGKILL);
		SW_CHECK(waitpid(pid, NULL, 0) == pid);
		acked = state_acked(state);
		SW_CHECK(acked > 0 && acked < 60000);
		past[k] = count_above(topic, (uint64_t)acked);
		fprintf(stderr, "kill %d: state acked seq %lld, %zu delivered past it\n", k, acked,
			past[k]);
	}
	/* the killed runs had delivered past their state: the reruns found them */
	SW_CHECKF(past[0] + past[1] > 0, "no delivery past the saved state: the kill came right "
					"after a save both times");
	{
		const char *args[] = {"replay", "publish", "--log",  dir,    "--to", topic,
				      "--state", state,    "--json", "--memory", "1",  NULL};

		snprintf(out, sizeof(out), "%s/publish-final.out", work);
		rc = run_cli(out, args);
	}
	SW_CHECKF(rc == 0, "exit %d: %s", rc, slurp(out));
	j = last_json(out);
	SW_CHECK(jget(j, "done") == 60000 && jget(j, "total") == 60000);
	SW_CHECK((size_t)jget(j, "found") == past[1]);
	json_decref(j);
	want = want_all();
	SW_CHECK(check_topic(topic, want, 0) == 60000);
	free(want);
}

/* Publish with the extra args into a fresh topic and check it holds
 * exactly the events match() selects. */
static void select_case(const char *dir, const char *name, const char *const *extra,
			int (*match)(const struct genrec *g, const void *arg), const void *arg)
{
	char topic[128], out[600];
	const char *args[40] = {"replay", "publish", "--log", dir, "--to", topic};
	uint8_t *want = calloc(gen_n + 1, 1);
	size_t n = 6, expect = 0;
	uint64_t s;
	int rc;

	snprintf(topic, sizeof(topic), "%s-%s", prefix, name);
	snprintf(out, sizeof(out), "%s/%s.out", work, name);
	while (*extra != NULL)
		args[n++] = *extra++;
	args[n] = NULL;
	rc = run_cli(out, args);
	SW_CHECKF(rc == 0, "%s: exit %d: %s", name, rc, slurp(out));
	for (s = 1; s <= gen_n; s++)
		if (gen[s].kind == SW_ALOG_EVENT && match(&gen[s], arg)) {
			want[s] = 1;
			expect++;
		}
	SW_CHECK(expect > 0);
	SW_CHECKF(check_topic(topic, want, 0) == expect, "%s", name);
	fprintf(stderr, "select %s: %zu events\n", name, expect);
	free(want);
}

static int m_run7(const struct genrec *g, const void *a)
{
	(void)a;
	return g->run == 7;
}

static int m_types(const struct genrec *g, const void *a)
{
	(void)a;
	return g->type == 3 || g->type == 2;
}

static int m_time(const struct genrec *g, const void *a)
{
	(void)a;
	return g->time_us >= BASE_US + 5000000 && g->time_us < BASE_US + 7500000;
}

static int m_all3(const struct genrec *g, const void *a)
{
	return m_time(g, a) && g->run == 3 && g->type == 1;
}

static void select_(void)
{
	char dir[600], r7[64], r3[64];

	setup("select");
	snprintf(dir, sizeof(dir), "%s/audit", work);
	gen_log(dir, 20000, 100);
	run_id(7, r7, sizeof(r7));
	run_id(3, r3, sizeof(r3));
	{
		const char *x[] = {"--run", r7, NULL};

		select_case(dir, "run", x, m_run7, NULL);
	}
	{
		const char *x[] = {"--type", "run.finished", "--type=step.started", NULL};

		select_case(dir, "types", x, m_types, NULL);
	}
	{
		const char *x[] = {"--since", "2025-01-01T00:00:05Z", "--until",
				   "2025-01-01T01:00:07.5+01:00", NULL};

		select_case(dir, "time", x, m_time, NULL);
	}
	{
		const char *x[] = {"--since", "2025-01-01T00:00:05Z", "--until",
				   "2025-01-01T00:00:07.500Z", "--run", r3, "--type",
				   "run.started", "--rate", "5000", NULL};

		select_case(dir, "all3", x, m_all3, NULL);
	}
}

/* Publish the log (args extra) and expect a refusal naming record seq and
 * why. */
static void expect_refused(const char *dir, uint64_t seq, const char *why, const char *name,
			   const char *memory)
{
	char out[600], topic[128], want[160], *text;
	const char *args[] = {"replay", "publish", "--log", dir,    "--to",
			      topic,	memory ? "--memory" : NULL,   memory, NULL};
	int rc;

	snprintf(topic, sizeof(topic), "%s-%s", prefix, name);
	snprintf(out, sizeof(out), "%s/%s.out", work, name);
	rc = run_cli(out, args);
	text = slurp(out);
	snprintf(want, sizeof(want), "record seq %llu at offset %llu: %s", (unsigned long long)seq,
		 (unsigned long long)gen[seq].file_off, why);
	SW_CHECKF(rc == 1 && strstr(text, want) && strstr(text, "nothing was published"),
		  "%s: exit %d: %s", name, rc, text);
	fprintf(stderr, "%s: %s", name, text);
	free(text);
	SW_CHECK(topic_total(topic) == 0);
}

static void expect_broken(const char *dir, uint64_t seq, const char *name, const char *memory)
{
	expect_refused(dir, seq, "hash mismatch", name, memory);
}

/* The segment file holding record seq. */
static void seg_path(const char *dir, uint64_t seq, char *path, size_t n)
{
	snprintf(path, n, "%s/seg-%020llu.swlog", dir, (unsigned long long)gen[seq].segment);
}

/* XOR the byte at off of path with x; the byte as it was. */
static uint8_t xor_at(const char *path, off_t off, uint8_t x)
{
	uint8_t b, was;
	int fd = open(path, O_RDWR);

	SW_CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1);
	was = b;
	b ^= x;
	SW_CHECK(pwrite(fd, &b, 1, off) == 1);
	close(fd);
	return was;
}

/* Where the second byte of record seq's event's magic lies in path (the
 * body: kind, topic length, topic, partition, offset, time, then the
 * event). */
static off_t magic_at(const char *path, uint64_t seq)
{
	uint8_t tl[2];
	int fd = open(path, O_RDONLY);

	SW_CHECK(fd >= 0 && pread(fd, tl, 2, (off_t)gen[seq].file_off + 44 + 1) == 2);
	close(fd);
	return (off_t)gen[seq].file_off + 44 + 3 + (tl[0] | tl[1] << 8) + 20 + 1;
}

static void broken(void)
{
	char dir[600], path[700];

	setup("broken");
	snprintf(dir, sizeof(dir), "%s/audit", work);
	gen_log(dir, 20000, 50);
	/* one byte of record 15000's event changed, its length and hash kept */
	seg_path(dir, 15000, path, sizeof(path));
	xor_at(path, (off_t)gen[15000].file_off + 44 + 60, 0x20);
	/* found while the selection is held in memory, and by the first pass
	 * of a job that holds less (1 MB: 15,000 events are more) */
	expect_broken(dir, 15000, "held", NULL);
	expect_broken(dir, 15000, "first-pass", "1");
	/* that byte back; now one bit of record 12000's event's magic, so
	 * that its event no longer decodes: still the record's hash that does
	 * not match (the header is read before the hashes are checked) */
	xor_at(path, (off_t)gen[15000].file_off + 44 + 60, 0x20);
	seg_path(dir, 12000, path, sizeof(path));
	SW_CHECK(xor_at(path, magic_at(path, 12000), 0x01) == 0x01);
	expect_broken(dir, 12000, "magic-held", NULL);
	expect_broken(dir, 12000, "magic-first-pass", "1");
	/* the magic back; the last record's length 512 more (bit 9 was
	 * clear), past the file's end: not a prefix published as if it were
	 * the log, but a refusal (after a second: a writer might have been
	 * appending) */
	xor_at(path, magic_at(path, 12000), 0x01);
	seg_path(dir, gen_n, path, sizeof(path));
	SW_CHECK((xor_at(path, (off_t)gen[gen_n].file_off + 1, 0x02) & 0x02) == 0);
	expect_refused(dir, gen_n, "the log ends in part of it", "length-held", NULL);
	expect_refused(dir, gen_n, "the log ends in part of it", "length-first-pass", "1");
	/* the length back, and the tail torn: 10 bytes of the last record lost */
	xor_at(path, (off_t)gen[gen_n].file_off + 1, 0x02);
	{
		struct stat st;

		SW_CHECK(stat(path, &st) == 0 && truncate(path, st.st_size - 10) == 0);
	}
	expect_refused(dir, gen_n, "the log ends in part of it", "torn-held", NULL);
}

/* Expect exit code want_rc and a message holding needle. */
static void expect_refusal(const char *name, const char *const *args, int want_rc,
			   const char *needle)
{
	char out[600], *text;
	int rc;

	snprintf(out, sizeof(out), "%s/%s.out", work, name);
	rc = run_cli(out, args);
	text = slurp(out);
	SW_CHECKF(rc == want_rc && strstr(text, needle) != NULL, "%s: exit %d: %s", name, rc,
		  text);
	fprintf(stderr, "%s: %s", name, text);
	free(text);
}

static void refuse(void)
{
	char dir[600], dir2[600], state[600], bad[600], topic[128], topic2[128];
	FILE *f;

	setup("refuse");
	snprintf(dir, sizeof(dir), "%s/audit", work);
	snprintf(dir2, sizeof(dir2), "%s/audit2", work);
	snprintf(state, sizeof(state), "%s/job.state", work);
	snprintf(bad, sizeof(bad), "%s/bad.state", work);
	snprintf(topic, sizeof(topic), "%s-a", prefix);
	snprintf(topic2, sizeof(topic2), "%s-b", prefix);
	gen_log(dir, 300, 3);
	{
		const char *a[] = {"replay", "publish", "--log", dir, "--to", "sagewai.runs",
				   NULL};

		expect_refusal("live", a, 2,
			       "refusing to publish into the live topic sagewai.runs");
		expect_refusal("live2", a, 2, "--into-live");
	}
	{
		const char *a[] = {"replay", "publish", "--log", dir, "--to", topic, "--type",
				   "run.nonesuch", NULL};

		expect_refusal("type", a, 2, "unknown event type 'run.nonesuch'");
	}
	{
		const char *a[] = {"replay", "publish", "--log", dir, "--to", "bad topic!", NULL};

		expect_refusal("name", a, 2, "is not a Kafka topic name");
	}
	{
		const char *a[] = {"replay", "publish", "--log",   dir,
				   "--to",   topic,	"--state", state, NULL};
		const char *b[] = {"replay", "publish", "--log", dir, "--to", topic2, "--state",
				   state, NULL};
		const char *c[] = {"replay", "publish", "--log",   dir,
				   "--to",   topic,	"--state", bad,	  NULL};
		const char *d[] = {"replay", "publish", "--log", dir2, "--to", topic, "--state",
				   state, NULL};
		char out[600];

		snprintf(out, sizeof(out), "%s/first.out", work);
		SW_CHECKF(run_cli(out, a) == 0, "%s", slurp(out));
		expect_refusal("other-job", b, 2,
			       "is of another replay job: it publishes to topic");
		f = fopen(bad, "w");
		fputs("{\"version\": 1, \"replay_id\": \"x\"", f);
		fclose(f);
		expect_refusal("not-json", c, 1, "is not JSON");
		f = fopen(bad, "w");
		fputs("{\"version\": 1, \"replay_id\": \"01890a5d-ac96-774b-bcce-b302099a8057\", "
		      "\"topic\": \"t\", \"select\": {\"types\": []}, \"end_seq\": 5, "
		      "\"acked_seq\": 9, \"done\": 0, \"end_hash\": \"00\", \"floors\": [], "
		      "\"complete\": false}",
		      f);
		fclose(f);
		expect_refusal("bad-range", c, 1, "bad end_seq, acked_seq or done");
		/* another log of the same length under the finished job's state */
		gen_log(dir2, 300, 4);
		expect_refusal("replaced", d, 1, "is not the one this job started on");
	}
	{
		const char *a[] = {"replay", "publish", "--log", dir, NULL};

		expect_refusal("no-to", a, 2, "--to TOPIC is required");
	}
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario table[] = {
		{"hundred_k", hundred_k}, {"kill9", kill9},   {"select", select_},
		{"broken", broken},	  {"refuse", refuse},
	};
	const struct sw_test_scenario *s = sw_test_scenario_pick(argc, argv, table, 5);

	s->fn();
	sw_events_registry_destroy(reg);
	free(gen);
	{
		char q[1100];

		snprintf(q, sizeof(q), "rm -rf %s", work); /* passed: the logs are not needed */
		SW_CHECK(system(q) == 0);
	}
	printf("replay %s: ok\n", s->name);
	return 0;
}
