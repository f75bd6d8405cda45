/*
 * alog_util.h: helpers shared by the sw_alog unit tests: scratch
 * directories, a log filled with known records, byte surgery on segment
 * files.
 */
#ifndef ALOG_UTIL_H
#define ALOG_UTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sw_alog.h"
#include "sw_test.h"

#define T_REC_OVER 76 /* len + seq + prev + hash */
#define T_HDR 64

/* Where each appended record went. */
struct t_loc {
	uint64_t seq, segment, off;
	size_t size; /* whole record in bytes */
};

static inline char *t_mkdir(const char *tag)
{
	char tmpl[256];
	const char *base = getenv("TMPDIR");
	char *d;

	snprintf(tmpl, sizeof(tmpl), "%s/alog-%s-XXXXXX", base ? base : "/tmp", tag);
	d = mkdtemp(tmpl);
	SW_CHECKF(d != NULL, "mkdtemp %s", tmpl);
	return strdup(d);
}

static inline int t_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void t_rmrf(const char *dir)
{
	nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The payload of record i: deterministic, varying length. */
static inline size_t t_payload(uint64_t i, uint8_t *out, size_t cap)
{
	size_t len = 10 + (size_t)(i * 37 % 300), k;

	SW_CHECK(len <= cap);
	for (k = 0; k < len; k++)
		out[k] = (uint8_t)(i * 131 + k * 7);
	return len;
}

static inline const char *t_topic(uint64_t i)
{
	return i % 3 == 0 ? "sagewai.runs" : i % 3 == 1 ? "sagewai.steps" : "";
}

/* Append n records (numbered from next seq) to an open log, recording their
 * locations in locs[seq] when locs is not NULL; sync every `batch`. */
static inline void t_fill(struct sw_alog *l, uint64_t n, int batch, struct t_loc *locs)
{
	uint8_t pl[512];
	char err[256];
	uint64_t k;

	for (k = 0; k < n; k++) {
		uint64_t seq, seg, off, i = sw_alog_next_seq(l);
		size_t len = t_payload(i, pl, sizeof(pl));
		int rc = sw_alog_append(l, SW_ALOG_EVENT, t_topic(i), (int32_t)(i % 7),
					(int64_t)i * 10, (int64_t)i * 1000, pl, len, &seq, &seg,
					&off, err, sizeof(err));

		SW_CHECKF(rc == 0, "append: %s", err);
		SW_CHECK(seq == i);
		if (locs != NULL) {
			locs[seq].seq = seq;
			locs[seq].segment = seg;
			locs[seq].off = off;
			locs[seq].size = T_REC_OVER + 23 + strlen(t_topic(i)) + len;
		}
		if (batch > 0 && (k + 1) % (uint64_t)batch == 0)
			SW_CHECKF(sw_alog_sync(l, err, sizeof(err)) == 0, "sync: %s", err);
	}
	SW_CHECKF(sw_alog_sync(l, err, sizeof(err)) == 0, "sync: %s", err);
}

static inline void t_seg_path(char *out, size_t n, const char *dir, uint64_t seg)
{
	snprintf(out, n, "%s/seg-%020" PRIu64 ".swlog", dir, seg);
}

static inline void t_flip(const char *dir, uint64_t seg, uint64_t off)
{
	char path[512];
	uint8_t b;
	int fd;

	t_seg_path(path, sizeof(path), dir, seg);
	fd = open(path, O_RDWR);
	SW_CHECKF(fd >= 0, "open %s", path);
	SW_CHECK(pread(fd, &b, 1, (off_t)off) == 1);
	b ^= 0x5a;
	SW_CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
	close(fd);
}

static inline off_t t_size(const char *dir, uint64_t seg)
{
	char path[512];
	struct stat st;

	t_seg_path(path, sizeof(path), dir, seg);
	SW_CHECKF(stat(path, &st) == 0, "stat %s", path);
	return st.st_size;
}

static inline void t_truncate(const char *dir, uint64_t seg, off_t size)
{
	char path[512];

	t_seg_path(path, sizeof(path), dir, seg);
	SW_CHECKF(truncate(path, size) == 0, "truncate %s", path);
}

/* Copy a whole file (to save and restore a segment between cases). */
static inline void t_copy(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out;
	ssize_t n;

	SW_CHECKF(in >= 0, "open %s", from);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	SW_CHECKF(out >= 0, "open %s", to);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		SW_CHECK(write(out, buf, (size_t)n) == n);
	SW_CHECK(n == 0);
	close(in);
	close(out);
}

static inline struct sw_alog_verify_result t_verify(const char *dir, int threads)
{
	struct sw_alog_verify_result r;
	char err[256];

	SW_CHECKF(sw_alog_verify(dir, threads, &r, err, sizeof(err)) == 0, "verify: %s", err);
	return r;
}

#endif
