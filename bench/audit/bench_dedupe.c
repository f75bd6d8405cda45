/*
 * bench-dedupe: the memory of sagewai-audit's dedupe window (dedupe.c)
 * fed directly, beside the unbounded set it replaced, measured in the
 * same run.
 *
 *   dedupe_rss_<N>   the peak RSS (VmHWM, MiB) of this process while N
 *                    event ids went through the window (default 10,000,000
 *                    ids, window 1,000,000: SAGEWAI_AUDIT_DEDUPE_WINDOW's
 *                    default), rotating as the service does once the index
 *                    holds the dropped generation; baseline: the peak RSS of
 *                    a child process that holds the same N ids in one
 *                    idset, as every id in the log used to be held.
 *   dedupe_ns_per_id  time per id added (lookup + insert + rotations).
 *
 * The ids are UUIDv7 made at 100,000 events a second of a synthetic clock,
 * one in 50 from a clock a minute behind. Output as the other benches:
 *   {"bench": "audit", "figure": F, "value": V, "unit": U, "baseline": B, "ratio": V/B}
 *
 * usage: bench-dedupe [--ids N] [--window W]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"

static void figure(const char *name, double value, const char *unit, double baseline)
{
	printf("{\"bench\": \"audit\", \"figure\": \"%s\", \"value\": %.1f, \"unit\": \"%s\", "
	       "\"baseline\": %.1f, \"ratio\": %.3f}\n",
	       name, value, unit, baseline, baseline > 0 ? value / baseline : 0.0);
	fflush(stdout);
}

/* A /proc/self/status field in KiB ("VmRSS", "VmHWM"). */
static long status_kib(const char *field)
{
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/* Id i: a UUIDv7 of the synthetic clock, the rest random-looking. */
static void make_id(uint64_t i, uint8_t id[16])
{
	uint64_t ms = 1700000000000ULL + i / 100, x = i * 0x9e3779b97f4a7c15ULL;
	int k;

	if (i % 50 == 0)
		ms -= 60000;
	for (k = 0; k < 6; k++)
		id[k] = (uint8_t)(ms >> (8 * (5 - k)));
	memcpy(id + 6, &x, 8);
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	memcpy(id + 8, &x, 8);
	id[6] = (uint8_t)(0x70 | (id[6] & 0x0f));
	id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

static double mib(long kib)
{
	return (double)kib / 1024.0;
}

/* The old way, in a child: every id in one set. Its peak RSS in KiB. */
static long unbounded(uint64_t n)
{
	int fds[2];
	long hwm = -1;
	pid_t pid;

	if (pipe(fds) != 0)
		return -1;
	if ((pid = fork()) == 0) {
		struct audit_idset s;
		uint8_t id[16];
		uint64_t i;

		close(fds[0]);
		if (audit_idset_init(&s, 1 << 16) != 0)
			_exit(1);
		for (i = 0; i < n; i++) {
			make_id(i, id);
			if (audit_idset_add(&s, id) < 0)
				_exit(1);
		}
		hwm = status_kib("VmHWM");
		if (write(fds[1], &hwm, sizeof(hwm)) != (ssize_t)sizeof(hwm))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	if (pid < 0 || read(fds[0], &hwm, sizeof(hwm)) != (ssize_t)sizeof(hwm))
		hwm = -1;
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return hwm;
}

int main(int argc, char **argv)
{
	uint64_t ids = 10000000, window = 1000000, i, next = 1000000;
	struct audit_dedupe d;
	uint8_t id[16];
	int64_t t0, spent;
	long base_kib, old_kib, rss;
	char name[64];
	int k;

	for (k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--ids") == 0 && k + 1 < argc)
			ids = strtoull(argv[++k], NULL, 10);
		else if (strcmp(argv[k], "--window") == 0 && k + 1 < argc)
			window = strtoull(argv[++k], NULL, 10);
		else {
			fprintf(stderr, "usage: bench-dedupe [--ids N] [--window W]\n");
			return 2;
		}
	}
	if (sodium_init() < 0 || ids == 0 || window == 0)
		return 2;
	base_kib = status_kib("VmRSS");
	if (audit_dedupe_init(&d, (size_t)window) != 0) {
		fprintf(stderr, "bench-dedupe: out of memory\n");
		return 1;
	}
	t0 = sw_mono_ns();
	for (i = 0; i < ids; i++) {
		make_id(i, id);
		if (audit_dedupe_add(&d, id, NULL, 0, 0) < 0 ||
		    (audit_dedupe_full(&d) && audit_dedupe_rotate(&d) != 0)) {
			fprintf(stderr, "bench-dedupe: out of memory at %" PRIu64 "\n", i);
			return 1;
		}
		if (i + 1 == next || i + 1 == ids || i + 1 == ids - window / 4) {
			fprintf(stderr,
				"bench-dedupe: after %" PRIu64 " ids: VmRSS %.1f MiB, %zu ids held, "
				"%zu dropped-id ranges\n",
				i + 1, mib(status_kib("VmRSS")), audit_dedupe_len(&d), d.nranges);
			next *= 2;
		}
	}
	spent = sw_mono_ns() - t0;
	rss = status_kib("VmHWM");
	fprintf(stderr, "bench-dedupe: VmRSS before the window %.1f MiB, at the end %.1f MiB\n",
		mib(base_kib), mib(status_kib("VmRSS")));
	old_kib = unbounded(ids);
	snprintf(name, sizeof(name), "dedupe_rss_%" PRIu64, ids);
	figure(name, mib(rss), "MiB", old_kib > 0 ? mib(old_kib) : 0);
	fprintf(stderr, "bench-dedupe: %s = VmHWM of this process (window %" PRIu64
			"); baseline = VmHWM of a child holding all %" PRIu64 " ids in one set\n",
		name, window, ids);
	figure("dedupe_ns_per_id", (double)spent / (double)ids, "ns", 0);
	audit_dedupe_free(&d);
	return 0;
}
