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
 *
 * Each figure is one JSON line on stdout:
 *   {"bench": "audit", "figure": F, "value": V, "unit": U, "baseline": B, "ratio": V/B}
 * Notes go to stderr.
 *
 * usage: bench-audit [--events N] [--batch B] [--threads T] [--dir DIR]
 *                    [--cp-every N]
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

#include "sw_alog.h"
#include "sw_core.h"

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

int main(int argc, char **argv)
{
	uint64_t events = 200000, batch = 1000, done, b, hashed, cp_every = 10000, ncps = 0;
	int threads = 0, own_dir = 0, k, fd;
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
		else {
			fprintf(stderr, "usage: bench-audit [--events N] [--batch B] "
					"[--threads T] [--dir DIR] [--cp-every N]\n");
			return 2;
		}
	}
	if (events == 0 || batch == 0 || cp_every == 0)
		die("arguments", "--events, --batch and --cp-every must be positive");
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

	loadavg("at end");
	free(raw);
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
