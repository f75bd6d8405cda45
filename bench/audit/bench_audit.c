/*
 * bench-audit: throughput of the audit log beside raw baselines measured in
 * the same run.
 *
 *   durable append  events/s of sw_alog_append of 1 KiB events with a
 *                   sw_alog_sync every --batch events, against plain
 *                   write() + fdatasync() of the same number of bytes in the
 *                   same batches to a file in the same directory. The two are
 *                   interleaved batch by batch (alternating which goes
 *                   first) so both see the same disk.
 *   checkpoints     events/s of the same durable append with signed
 *                   checkpoints on (what sagewai-audit's writer does: every
 *                   record's hash into the Merkle tree, a signed checkpoint
 *                   record every --cp-every records), against the log with
 *                   checkpoints off, interleaved with the two above batch by
 *                   batch; and the cost of one checkpoint (root + Ed25519).
 *   verify          events/s of sw_alog_verify over that log (page cache
 *                   warm, median of 3), against single-threaded BLAKE2b-256
 *                   of the same record bytes already in memory.
 *   replay publish  (with --kafka or $SAGEWAI_KAFKA_BOOTSTRAP) events/s of
 *                   sw_replay_publish of a log of --replay-events events (of
 *                   ~1 KiB; of ~230 bytes: replay_publish_small) into
 *                   a fresh topic, end to end (both passes over the log, the
 *                   state file, every delivery report), against a raw
 *                   librdkafka produce of the same bytes with the same keys
 *                   and producer settings, already in memory, into another
 *                   fresh topic, flushed; after a pair not counted, 5 rounds
 *                   alternating which goes first, the figure from the round
 *                   of the median ratio.
 *
 * Each figure is one JSON line on stdout:
 *   {"bench": "audit", "figure": F, "value": V, "unit": U, "baseline": B, "ratio": V/B}
 * Notes go to stderr.
 *
 * usage: bench-audit [--events N] [--batch B] [--threads T] [--dir DIR]
 *                    [--cp-every N]
 *                    [--kafka SERVERS] [--replay-events N] [--replay-only]
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "sw_alog.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_replay.h"

#define PAYLOAD 1024
#define TOPIC "sagewai.runs"
#define REC_SIZE (76 + 23 + (sizeof(TOPIC) - 1) + PAYLOAD)

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench-audit: %s: %s\n", what, why);
	exit(1);
}

static void figure(const char *name, double value, const char *unit, double baseline)
{
	printf("{\"bench\": \"audit\", \"figure\": \"%s\", \"value\": %.0f, \"unit\": \"%s\", "
	       "\"baseline\": %.0f, \"ratio\": %.3f}\n",
	       name, value, unit, baseline, baseline > 0 ? value / baseline : 0.0);
	fflush(stdout);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static double secs(int64_t ns)
{
	return (double)ns / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int64_t cpu_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Read the whole log into memory and hash every record with one thread;
 * returns the seconds spent hashing (reading is not timed) and in *cpu the
 * CPU seconds of that. */
static double blake2b_baseline(const char *logdir, uint64_t *records, double *cpu)
{
	int64_t cpu_spent = 0;
	char path[4400];
	uint64_t seg = 1, n = 0;
	int64_t spent = 0;

	for (;;) {
		uint8_t *buf = NULL, h[32];
		struct stat st;
		size_t off = 64;
		int64_t t0, c0;
		ssize_t r;
		int fd;

		snprintf(path, sizeof(path), "%s/seg-%020" PRIu64 ".swlog", logdir, seg);
		if ((fd = open(path, O_RDONLY)) < 0)
			break;
		if (fstat(fd, &st) != 0 || (buf = malloc((size_t)st.st_size)) == NULL)
			die(path, "stat or memory");
		r = pread(fd, buf, (size_t)st.st_size, 0);
		if (r != st.st_size)
			die(path, "short read");
		close(fd);
		c0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
		t0 = sw_mono_ns();
		while (off + 76 <= (size_t)st.st_size) {
			uint32_t len;

			memcpy(&len, buf + off, 4);
			crypto_generichash(h, 32, buf + off, 44 + (unsigned long long)len, NULL,
					   0);
			off += 76 + len;
			n++;
		}
		spent += sw_mono_ns() - t0;
		cpu_spent += cpu_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
		free(buf);
		if (n + 1 == seg)
			break; /* a segment of no records: the last */
		seg = n + 1; /* the next segment starts after the records so far */
	}
	*records = n;
	*cpu = secs(cpu_spent);
	return secs(spent);
}

static void raw_batch(int fd, const uint8_t *raw, uint64_t n)
{
	if (write(fd, raw, n * REC_SIZE) != (ssize_t)(n * REC_SIZE) || fdatasync(fd) != 0)
		die("raw write", strerror(errno));
}

/* n events (seq-dependent first byte, current time) and one sync. */
static void log_batch(struct sw_alog *l, uint64_t n, uint64_t done, uint8_t *payload)
{
	char err[256];
	uint64_t i;

	for (i = 0; i < n; i++) {
		payload[0] = (uint8_t)(done + i);
		if (sw_alog_append(l, SW_ALOG_EVENT, TOPIC, 0, (int64_t)(done + i), sw_now_us(),
				   payload, PAYLOAD, NULL, NULL, NULL, err, sizeof(err)) != 0)
			die("append", err);
	}
	if (sw_alog_sync(l, err, sizeof(err)) != 0)
		die("sync", err);
}

/* The same with checkpoints: each record's hash into the tree, a signed
 * checkpoint record once cp_every records came (as the service's writer). */
static void log_batch_cp(struct sw_alog *l, struct sw_alog_cpstate *st,
			 const struct sw_alog_signer *s, uint64_t cp_every, uint64_t n,
			 uint64_t done, uint8_t *payload, uint64_t *cps)
{
	uint8_t h[SW_ALOG_HASH];
	char err[256];
	uint64_t i;

	for (i = 0; i < n; i++) {
		payload[0] = (uint8_t)(done + i);
		if (sw_alog_append(l, SW_ALOG_EVENT, TOPIC, 0, (int64_t)(done + i), sw_now_us(),
				   payload, PAYLOAD, NULL, NULL, NULL, err, sizeof(err)) != 0)
			die("append", err);
		sw_alog_last_hash(l, h);
		sw_alog_cpstate_add(st, h);
		if (st->since >= cp_every) {
			if (sw_alog_checkpoint_append(l, st, s, "bench-log", sw_now_us(), NULL, err,
						      sizeof(err)) != 0)
				die("checkpoint", err);
			(*cps)++;
		}
	}
	if (sw_alog_sync(l, err, sizeof(err)) != 0)
		die("sync", err);
}

static void loadavg(const char *when)
{
	char buf[128] = "";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f != NULL) {
		if (fgets(buf, sizeof(buf), f) == NULL)
			buf[0] = '\0';
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
	fprintf(stderr, "bench-audit: load average %s: %s\n", when, buf);
}

/* ---- replay publish against raw produce ------------------------------------ */

#define RP_RUNS 1000
#define RP_INPUT_MAX 880 /* bytes of run.submitted input: ~1 KiB events */

struct rp_msg {
	void *buf;
	size_t len;
	char key[64];
};

/* A log of n run.submitted events of RP_RUNS runs in logdir; the messages
 * are kept in msgs for the raw baseline. */
static void rp_gen(const char *logdir, uint64_t n, size_t input_len, struct rp_msg *msgs)
{
	struct sw_event_registry *reg;
	char err[256], input[RP_INPUT_MAX + 1];
	struct sw_alog *l;
	uint64_t i;

	if ((reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		die("registry", err);
	if ((l = sw_alog_open(logdir, 0, NULL, err, sizeof(err))) == NULL)
		die("open log", err);
	memset(input, 'x', input_len);
	input[input_len] = '\0';
	for (i = 0; i < n; i++) {
		struct sw_event_header h;
		json_t *o;

		sw_event_header_init(&h, "run.submitted", "bench-audit");
		snprintf(h.run_id, sizeof(h.run_id), "bench-run-%" PRIu64, i % RP_RUNS);
		input[0] = (char)('a' + i % 26);
		o = json_pack("{s:s, s:i, s:s}", "workflow", "bench", "workflow_version", 1,
			      "input", input);
		if (sw_event_encode(reg, "run.submitted", &h, o, &msgs[i].buf, &msgs[i].len, err,
				    sizeof(err)) != 0)
			die("encode", err);
		json_decref(o);
		snprintf(msgs[i].key, sizeof(msgs[i].key), "%s", h.run_id);
		if (sw_alog_append(l, SW_ALOG_EVENT, TOPIC, (int32_t)(i % 4), (int64_t)i,
				   h.time_us, msgs[i].buf, msgs[i].len, NULL, NULL, NULL, err,
				   sizeof(err)) != 0)
			die("append", err);
		if (i % 4096 == 4095 && sw_alog_sync(l, err, sizeof(err)) != 0)
			die("sync", err);
	}
	if (sw_alog_sync(l, err, sizeof(err)) != 0)
		die("sync", err);
	sw_alog_close(l);
	sw_events_registry_destroy(reg);
}

/* The producer settings sw_replay uses (tools/replay/publish.c). */
static const char *const rp_conf[] = {
	"linger.ms=5", "message.timeout.ms=120000", "queue.buffering.max.messages=200000",
	"queue.buffering.max.kbytes=262144", "enable.idempotence=true", "acks=all", NULL,
};

static uint64_t rp_failed;

static void rp_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err)
		rp_failed++;
}

static rd_kafka_t *rp_client(const char *bootstrap, rd_kafka_type_t type)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256], name[64];
	const char *const *e;
	rd_kafka_t *rk;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) != 0)
		die("kafka", err);
	for (e = rp_conf; type == RD_KAFKA_PRODUCER && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');

		snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
		if (rd_kafka_conf_set(conf, name, eq + 1, err, sizeof(err)) != 0)
			die("kafka", err);
	}
	rd_kafka_conf_set_dr_msg_cb(conf, rp_dr);
	if ((rk = rd_kafka_new(type, conf, err, sizeof(err))) == NULL)
		die("kafka", err);
	return rk;
}

/* Create topic (the broker creates it on a metadata request) and wait
 * until it has partitions, so that neither side times topic creation. */
static void rp_topic(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md;
	int k, ok = 0;

	for (k = 0; k < 100 && !ok; k++) {
		if (rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			ok = md->topic_cnt == 1 && md->topics[0].err == 0 &&
			     md->topics[0].partition_cnt > 0;
			rd_kafka_metadata_destroy(md);
		}
		if (!ok)
			usleep(100 * 1000);
	}
	rd_kafka_topic_destroy(t);
	if (!ok)
		die(topic, "the topic did not appear");
}

/* CPU seconds of the process (every thread: ours and librdkafka's) spent
 * by the last rp_raw or rp_replay, from its start to its end (the raw
 * producer's destroy included, as replay's is). */
static double rp_cpu;

/* events/s of a raw produce of msgs into topic, flushed. */
static double rp_raw(const char *bootstrap, const char *topic, const struct rp_msg *msgs,
		     uint64_t n, int headers)
{
	rd_kafka_t *rk = rp_client(bootstrap, RD_KAFKA_PRODUCER);
	int64_t t0, c0;
	uint64_t i;
	double s;

	rp_topic(rk, topic);
	rp_failed = 0;
	t0 = sw_mono_ns();
	c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
	for (i = 0; i < n; i++) {
		rd_kafka_resp_err_t e;

		char hv[128];
		int hl = 0;

		if (headers) /* what replay adds: "ID/SEQ TOPIC/PARTITION/OFFSET" */
			hl = snprintf(hv, sizeof(hv),
				      "01a2417e-5688-7263-b100-abcb9debb80d/%" PRIu64
				      " %s/%d/%" PRIu64,
				      i + 1, TOPIC, (int)(i % 4), i);
		for (;;) {
			/* RD_KAFKA_MSG_F_COPY, as a plain producer does (replay hands
			 * over its held bytes without a copy) */
			if (headers)
				e = rd_kafka_producev(
				    rk, RD_KAFKA_V_TOPIC(topic),
				    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				    RD_KAFKA_V_KEY(msgs[i].key, strlen(msgs[i].key)),
				    RD_KAFKA_V_VALUE(msgs[i].buf, msgs[i].len),
				    RD_KAFKA_V_HEADER(SW_REPLAY_HDR, hv, (ssize_t)hl),
				    RD_KAFKA_V_END);
			else
				e = rd_kafka_producev(
					rk, RD_KAFKA_V_TOPIC(topic),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					RD_KAFKA_V_KEY(msgs[i].key, strlen(msgs[i].key)),
					RD_KAFKA_V_VALUE(msgs[i].buf, msgs[i].len), RD_KAFKA_V_END);
			if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			rd_kafka_poll(rk, 10);
		}
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
			die("raw produce", rd_kafka_err2str(e));
		if ((i & 63) == 0)
			rd_kafka_poll(rk, 0);
	}
	if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR || rp_failed != 0)
		die("raw produce", "not every message was delivered");
	s = secs(sw_mono_ns() - t0);
	rd_kafka_destroy(rk);
	rp_cpu = secs(cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c0);
	return (double)n / s;
}

/* events/s of sw_replay_publish of the whole log into topic. */
static double rp_replay(const char *bootstrap, const char *logdir, const char *topic,
			const char *state, uint64_t n, int mark)
{
	struct sw_replay_opts o;
	struct sw_replay_progress pr;
	rd_kafka_t *rk = rp_client(bootstrap, RD_KAFKA_PRODUCER);
	char err[512];
	int64_t t0, c0;
	double s;

	rp_topic(rk, topic);
	rd_kafka_destroy(rk);
	memset(&o, 0, sizeof(o));
	o.log_dir = logdir;
	o.bootstrap = bootstrap;
	o.topic = topic;
	o.state = state;
	o.mark = mark;
	o.sel.since_us = INT64_MIN;
	o.sel.until_us = INT64_MAX;
	unlink(state);
	t0 = sw_mono_ns();
	c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
	if (sw_replay_publish(&o, &pr, err, sizeof(err)) != SW_REPLAY_OK)
		die("replay publish", err);
	s = secs(sw_mono_ns() - t0);
	rp_cpu = secs(cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c0);
	if (pr.done != n || pr.sent != n)
		die("replay publish", "not every event was published");
	return (double)n / s;
}

#define RP_ROUNDS 5

/* The round of the median ratio of v to base: a trio measured side by
 * side, so a load that comes and goes moves all of its numbers. */
static int median_round(const double *v, const double *base)
{
	double ratio[RP_ROUNDS], sorted[RP_ROUNDS];
	int k, med = 0;

	for (k = 0; k < RP_ROUNDS; k++)
		ratio[k] = sorted[k] = v[k] / base[k];
	qsort(sorted, RP_ROUNDS, sizeof(sorted[0]), cmp_d);
	for (k = 0; k < RP_ROUNDS; k++)
		if (ratio[k] == sorted[RP_ROUNDS / 2])
			med = k;
	return med;
}

/* Two figures of n events whose input is input_len bytes: name (against a
 * raw produce of the same bytes) and name_headers (against a raw produce of
 * the same bytes with the header replay adds). */
static void replay_bench(const char *dir, const char *bootstrap, uint64_t n, size_t input_len,
			 const char *name)
{
	static const char *const sides[4] = {"raw", "rawhdr", "replay", "replaymark"};
	char logdir[4200], state[4200], topic[128], hname[64];
	struct rp_msg *msgs = calloc(n, sizeof(*msgs));
	double raw[RP_ROUNDS], rawh[RP_ROUNDS], rep[RP_ROUNDS], repm[RP_ROUNDS];
	double craw[RP_ROUNDS], crawh[RP_ROUNDS], crep[RP_ROUNDS],
	    crepm[RP_ROUNDS]; /* per CPU s */
	uint64_t i;
	int k, m;

	if (msgs == NULL)
		die("replay", "out of memory");
	snprintf(logdir, sizeof(logdir), "%s/replay-log", dir);
	snprintf(state, sizeof(state), "%s/replay.state", dir);
	rp_gen(logdir, n, input_len, msgs);
	fprintf(stderr,
		"bench-audit: replay: %" PRIu64 " events of %zu bytes, %d runs, Kafka %s\n", n,
		msgs[0].len, RP_RUNS, bootstrap);
	/* one of each first, not counted: the first produce and the first replay
	 * of a process pay for what later ones find ready */
	snprintf(topic, sizeof(topic), "bench-audit-%d-%s-warm-raw", (int)getpid(), name);
	(void)rp_raw(bootstrap, topic, msgs, n, 0);
	snprintf(topic, sizeof(topic), "bench-audit-%d-%s-warm-replay", (int)getpid(), name);
	(void)rp_replay(bootstrap, logdir, topic, state, n, 0);
	for (k = 0; k < RP_ROUNDS; k++) {
		int j;

		for (j = 0; j < 4; j++) { /* each round starts with another side */
			int side = (j + k) % 4;

			snprintf(topic, sizeof(topic), "bench-audit-%d-%s-%s-%d", (int)getpid(),
				 name, sides[side], k);
			if (side == 0) {
				raw[k] = rp_raw(bootstrap, topic, msgs, n, 0);
				craw[k] = (double)n / rp_cpu;
			} else if (side == 1) {
				rawh[k] = rp_raw(bootstrap, topic, msgs, n, 1);
				crawh[k] = (double)n / rp_cpu;
			} else if (side == 2) {
				rep[k] = rp_replay(bootstrap, logdir, topic, state, n, 0);
				crep[k] = (double)n / rp_cpu;
			} else {
				repm[k] = rp_replay(bootstrap, logdir, topic, state, n, 1);
				crepm[k] = (double)n / rp_cpu;
			}
		}
		fprintf(stderr,
			"bench-audit: %s round %d: %.0f events/s (raw %.0f: %.3f); --mark %.0f "
			"(raw with the header %.0f: %.3f)\n",
			name, k, rep[k], raw[k], rep[k] / raw[k], repm[k], rawh[k],
			repm[k] / rawh[k]);
		fprintf(
		    stderr,
		    "bench-audit: %s round %d: %.0f events/cpu-s (raw %.0f: %.3f); --mark %.0f "
		    "(raw with the header %.0f: %.3f)\n",
		    name, k, crep[k], craw[k], crep[k] / craw[k], crepm[k], crawh[k],
		    crepm[k] / crawh[k]);
	}
	m = median_round(rep, raw);
	figure(name, rep[m], "events/s", raw[m]);
	m = median_round(repm, rawh);
	snprintf(hname, sizeof(hname), "%s_headers", name);
	figure(hname, repm[m], "events/s", rawh[m]);
	m = median_round(crep, craw);
	snprintf(hname, sizeof(hname), "%s_per_cpu_second", name);
	figure(hname, crep[m], "events/cpu-s", craw[m]);
	m = median_round(crepm, crawh);
	snprintf(hname, sizeof(hname), "%s_per_cpu_second_headers", name);
	figure(hname, crepm[m], "events/cpu-s", crawh[m]);
	fprintf(stderr,
		"bench-audit: %s = sagewai replay publish of the whole log "
		"(checked before the first message, state file, delivery reports) into a "
		"fresh topic; baseline = librdkafka produce of the same bytes and keys "
		"from memory, same producer settings, flushed (%s_headers: replay --mark "
		"against the same with the one replay header as well); the round (of %d after a "
		"warm-up, each "
		"starting with another side) with the median ratio; "
		"%s_per_cpu_second(_headers): the same sides in events per CPU second "
		"of this process (all threads), the figure for a loaded machine\n",
		name, name, RP_ROUNDS, name);
	for (i = 0; i < n; i++)
		free(msgs[i].buf);
	free(msgs);
	nftw(logdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	unlink(state);
}

int main(int argc, char **argv)
{
	uint64_t events = 200000, batch = 1000, done, b, hashed, cp_every = 10000, ncps = 0;
	uint64_t replay_events = 100000;
	int threads = 0, own_dir = 0, k, fd, replay_only = 0;
	const char *kafka = getenv("SAGEWAI_KAFKA_BOOTSTRAP");
	const char *base = getenv("SAGEWAI_BENCH_DIR");
	char dir[4096], logdir[4200], cpdir[4200], keypath[4200], rawpath[4200], err[256];
	char name[64];
	int64_t log_ns = 0, raw_ns = 0, cp_ns = 0, t0;
	struct sw_alog_cpstate st;
	struct sw_alog_signer *signer;
	struct sw_alog *lcp;
	uint8_t pk[SW_ALOG_PK];
	double vt[3], hash_s, hash_cpu, verify_cpu;
	int64_t c0;
	struct sw_alog_verify_result vr;
	uint8_t payload[PAYLOAD], *raw;
	struct sw_alog *l;

	dir[0] = '\0';
	for (k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--events") == 0 && k + 1 < argc)
			events = strtoull(argv[++k], NULL, 10);
		else if (strcmp(argv[k], "--batch") == 0 && k + 1 < argc)
			batch = strtoull(argv[++k], NULL, 10);
		else if (strcmp(argv[k], "--threads") == 0 && k + 1 < argc)
			threads = atoi(argv[++k]);
		else if (strcmp(argv[k], "--dir") == 0 && k + 1 < argc)
			snprintf(dir, sizeof(dir), "%s", argv[++k]);
		else if (strcmp(argv[k], "--cp-every") == 0 && k + 1 < argc)
			cp_every = strtoull(argv[++k], NULL, 10);
		else if (strcmp(argv[k], "--kafka") == 0 && k + 1 < argc)
			kafka = argv[++k];
		else if (strcmp(argv[k], "--replay-events") == 0 && k + 1 < argc)
			replay_events = strtoull(argv[++k], NULL, 10);
		else if (strcmp(argv[k], "--replay-only") == 0)
			replay_only = 1;
		else {
			fprintf(stderr, "usage: bench-audit [--events N] [--batch B] "
					"[--threads T] [--dir DIR] [--cp-every N] [--kafka SERVERS] "
					"[--replay-events N] [--replay-only]\n");
			return 2;
		}
	}
	if (events == 0 || batch == 0 || cp_every == 0 || replay_events == 0)
		die("arguments", "--events, --batch, --cp-every and --replay-events must be positive");
	if (replay_only && (kafka == NULL || *kafka == '\0'))
		die("arguments", "--replay-only needs --kafka or SAGEWAI_KAFKA_BOOTSTRAP");
	if (sodium_init() < 0)
		die("libsodium", "init failed");
	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "%s/sw-bench-audit-XXXXXX",
			 base && *base ? base : "/tmp");
		if (mkdtemp(dir) == NULL)
			die(dir, strerror(errno));
		own_dir = 1;
	} else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		die(dir, strerror(errno));
	}
	snprintf(logdir, sizeof(logdir), "%s/log", dir);
	snprintf(cpdir, sizeof(cpdir), "%s/log-cp", dir);
	snprintf(keypath, sizeof(keypath), "%s/bench.key", dir);
	snprintf(rawpath, sizeof(rawpath), "%s/raw.bin", dir);
	if (replay_only) {
		loadavg("at start");
		replay_bench(dir, kafka, replay_events, RP_INPUT_MAX, "replay_publish");
		replay_bench(dir, kafka, replay_events, 100, "replay_publish_small");
		loadavg("at end");
		goto out;
	}
	unlink(keypath);
	if (sw_alog_keygen("bench", keypath, pk, err, sizeof(err)) != 0 ||
	    (signer = sw_alog_signer_load(keypath, err, sizeof(err))) == NULL)
		die("signing key", err);
	sw_alog_cpstate_init(&st);
	fprintf(stderr,
		"bench-audit: %" PRIu64 " events of %d bytes payload (%zu bytes per record), "
		"batch = %" PRIu64 " events per sync, dir %s\n",
		events, PAYLOAD, (size_t)REC_SIZE, batch, dir);

	loadavg("at start");
	randombytes_buf(payload, sizeof(payload));
	if ((raw = malloc(batch * REC_SIZE)) == NULL)
		die("raw buffer", "out of memory");
	randombytes_buf(raw, batch * REC_SIZE);
	if ((fd = open(rawpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		die(rawpath, strerror(errno));
	if ((l = sw_alog_open(logdir, 0, NULL, err, sizeof(err))) == NULL ||
	    (lcp = sw_alog_open(cpdir, 0, NULL, err, sizeof(err))) == NULL)
		die("open log", err);

	for (done = 0, b = 0; done < events; b++) {
		uint64_t n = events - done < batch ? events - done : batch;
		int order;

		/* raw, log, log with checkpoints: each batch in a rotated order */
		for (order = 0; order < 3; order++) {
			int which = (int)((b + (uint64_t)order) % 3);

			t0 = sw_mono_ns();
			if (which == 0) {
				raw_batch(fd, raw, n);
				raw_ns += sw_mono_ns() - t0;
			} else if (which == 1) {
				log_batch(l, n, done, payload);
				log_ns += sw_mono_ns() - t0;
			} else {
				log_batch_cp(lcp, &st, signer, cp_every, n, done, payload, &ncps);
				cp_ns += sw_mono_ns() - t0;
			}
		}
		done += n;
	}
	sw_alog_close(l);
	sw_alog_close(lcp);
	close(fd);
	snprintf(name, sizeof(name), "durable_append_batch%" PRIu64, batch);
	figure(name, (double)events / secs(log_ns), "events/s", (double)events / secs(raw_ns));
	fprintf(stderr, "bench-audit: %s baseline = write()+fdatasync() of %" PRIu64
			" x %zu bytes per batch to %s\n",
		name, batch, (size_t)REC_SIZE, rawpath);
	snprintf(name, sizeof(name), "durable_append_checkpoints_every%" PRIu64, cp_every);
	figure(name, (double)events / secs(cp_ns), "events/s", (double)events / secs(log_ns));
	fprintf(stderr, "bench-audit: %s = the same append with the Merkle tree fed and %" PRIu64
			" signed checkpoints; baseline = %s (checkpoints off), same run\n",
		name, ncps, "durable_append");
	{
		/* one checkpoint alone: the root over cp_every leaves and a signature */
		struct sw_alog_mtree t;
		uint8_t leaf[SW_ALOG_HASH], root[SW_ALOG_HASH];
		struct sw_alog_checkpoint cp;
		int64_t tree_ns = 0, sign_ns = 0;
		uint64_t i;
		int rep;

		memset(&cp, 0, sizeof(cp));
		snprintf(cp.log_id, sizeof(cp.log_id), "bench-log");
		for (rep = 0; rep < 20; rep++) {
			sw_alog_mtree_init(&t);
			t0 = sw_mono_ns();
			for (i = 0; i < cp_every; i++) {
				leaf[0] = (uint8_t)i;
				sw_alog_mtree_add(&t, leaf);
			}
			sw_alog_mtree_root(&t, root);
			tree_ns += sw_mono_ns() - t0;
			t0 = sw_mono_ns();
			sw_alog_sign(signer, &cp);
			sign_ns += sw_mono_ns() - t0;
		}
		figure("checkpoint_tree_ns_per_record", (double)tree_ns / 20.0 / (double)cp_every,
		       "ns", (double)log_ns / (double)events);
		fprintf(stderr, "bench-audit: checkpoint_tree_ns_per_record = feeding the Merkle "
				"tree, per record; baseline = ns per record of the durable append "
				"itself\n");
		figure("checkpoint_sign_us", (double)sign_ns / 20.0 / 1000.0, "us", 0);
	}
	sw_alog_signer_destroy(signer);

	c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
	for (k = 0; k < 3; k++) {
		t0 = sw_mono_ns();
		if (sw_alog_verify(logdir, threads, &vr, err, sizeof(err)) != 0)
			die("verify", err);
		vt[k] = secs(sw_mono_ns() - t0);
		if (!vr.ok || vr.records != events)
			die("verify", vr.reason);
	}
	verify_cpu = secs(cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / 3;
	qsort(vt, 3, sizeof(vt[0]), cmp_d);
	hash_s = blake2b_baseline(logdir, &hashed, &hash_cpu);
	if (hashed != events)
		die("baseline", "record count differs");
	figure("verify", (double)events / vt[1], "events/s", (double)events / hash_s);
	fprintf(stderr, "bench-audit: verify (threads %d, 0 = one per core; warm page cache, "
			"median of 3) baseline = single-threaded BLAKE2b-256 of the same records "
			"in memory\n",
		threads);
	/* CPU-time figures: what one core does, whatever else the box runs. */
	figure("verify_per_cpu_second", (double)events / verify_cpu, "events/cpu-s",
	       (double)events / hash_cpu);
	fprintf(stderr, "bench-audit: verify_per_cpu_second = events / CPU seconds of the "
			"process during verify; baseline = events / CPU seconds of the "
			"single-threaded BLAKE2b-256 loop\n");

	if (kafka != NULL && *kafka != '\0') {
		replay_bench(dir, kafka, replay_events, RP_INPUT_MAX, "replay_publish");
		replay_bench(dir, kafka, replay_events, 100, "replay_publish_small");
	} else
		fprintf(stderr, "bench-audit: no --kafka (nor SAGEWAI_KAFKA_BOOTSTRAP): replay "
				"publish not measured\n");
	loadavg("at end");
	free(raw);
out:
	if (own_dir) {
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	} else {
		nftw(logdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		nftw(cpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		unlink(rawpath);
		unlink(keypath);
	}
	return 0;
}
