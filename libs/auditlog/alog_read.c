/*
 * alog_read.c: reading the log while a writer may be appending to it.
 *
 * Reads go through pread on their own descriptors (never mmap: the writer's
 * torn-tail repair may truncate a file under a reader, which would be a
 * SIGBUS for a mapping). Linux extends a file's size only over bytes already
 * copied in, so a reader sees a prefix of what was written whose last record
 * may be incomplete; in the last segment that ends the scan quietly.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sodium.h>

#include "alog_int.h"

#define RD_BUF (1u << 20)

struct rd {
	int fd;
	uint8_t *buf;
	size_t cap;
	off_t start; /* file offset of buf[0] */
	size_t len;  /* valid bytes in buf */
};

/* Make the bytes [off, off + need) available if the file has them. *p
 * points at off and *avail says how many bytes from there are present
 * (fewer than need only at end of file). 0 or -1 (I/O error, memory). */
static int rd_get(struct rd *r, off_t off, size_t need, const uint8_t **p, size_t *avail)
{
	ssize_t n;

	if (off < r->start || (size_t)(off - r->start) + need > r->len) {
		if (need > r->cap) {
			uint8_t *nb = realloc(r->buf, need);

			if (nb == NULL)
				return -1;
			r->buf = nb;
			r->cap = need;
		}
		if ((n = alog_pread_full(r->fd, r->buf, r->cap, off)) < 0)
			return -1;
		r->start = off;
		r->len = (size_t)n;
	}
	*p = r->buf + (off - r->start);
	*avail = r->len - (size_t)(off - r->start);
	return 0;
}

/* Decode the record at off without checking its hash; *p points at it. */
static int rd_record(struct rd *r, off_t off, struct alog_view *v, const uint8_t **p,
		     size_t *avail, enum alog_rc *rc)
{
	if (rd_get(r, off, ALOG_REC_HEAD, p, avail) != 0)
		return -1;
	*rc = alog_rec_view(*p, *avail, 0, v);
	if (*rc == ALOG_PARTIAL && v->size > *avail) {
		if (rd_get(r, off, v->size, p, avail) != 0)
			return -1;
		*rc = alog_rec_view(*p, *avail, 0, v);
	}
	return 0;
}

static void fill_rec(struct sw_alog_rec *rec, const struct alog_view *v, uint64_t segment,
		     uint64_t off)
{
	rec->seq = v->seq;
	memcpy(rec->hash, v->hash, SW_ALOG_HASH);
	rec->segment = segment;
	rec->file_off = off;
}

/* Scan one segment; *done is set when the scan must stop (the callback
 * said so, or the visible prefix of the log ends here). */
static int scan_segment(struct rd *r, uint64_t first, int is_last, uint64_t from_seq,
			uint64_t *expect, uint8_t last[SW_ALOG_HASH], int *have_last,
			sw_alog_scan_cb cb, void *opaque, int *done, char *errstr, size_t errlen)
{
	uint8_t h[SW_ALOG_HASH];
	struct sw_alog_rec rec;
	struct alog_view v;
	const uint8_t *p;
	size_t avail;
	off_t off = ALOG_HDR;
	enum alog_rc rc;
	char why[160];
	int ret;

	if (rd_get(r, 0, ALOG_HDR, &p, &avail) != 0)
		goto io;
	if (avail < ALOG_HDR) {
		if (is_last) { /* a segment being created */
			*done = 1;
			return 0;
		}
		alog_err(errstr, errlen, "segment %" PRIu64 ": header truncated", first);
		return -1;
	}
	if (alog_hdr_check(p, first, why, sizeof(why)) != 0) {
		alog_err(errstr, errlen, "segment %" PRIu64 ": %s", first, why);
		return -1;
	}
	if (first != *expect) {
		alog_err(errstr, errlen,
			 "segment %" PRIu64 ": sequence %s: expected %" PRIu64 ", found %" PRIu64,
			 first, alog_seq_word(*expect, first), *expect, first);
		return -1;
	}
	if (*have_last && memcmp(alog_hdr_prev(p), last, SW_ALOG_HASH) != 0) {
		alog_err(errstr, errlen,
			 "segment %" PRIu64 ": header prev hash does not chain to the previous "
			 "segment",
			 first);
		return -1;
	}
	memcpy(last, alog_hdr_prev(p), SW_ALOG_HASH);
	*have_last = 1;
	for (;;) {
		if (rd_record(r, off, &v, &p, &avail, &rc) != 0)
			goto io;
		if (rc == ALOG_PARTIAL && avail == 0)
			return 0; /* clean end of the segment */
		if (rc == ALOG_PARTIAL && is_last) {
			*done = 1;
			return 0;
		}
		if (rc != ALOG_OK) {
			snprintf(why, sizeof(why), "%s",
				 rc == ALOG_PARTIAL ? "record extends past the end of the file"
						    : "record length out of range");
			goto bad;
		}
		if (v.seq != *expect) {
			snprintf(why, sizeof(why),
				 "sequence %s: expected %" PRIu64 ", found %" PRIu64,
				 alog_seq_word(*expect, v.seq), *expect, v.seq);
			goto bad;
		}
		if (v.seq < from_seq) {
			*have_last = 0;
		} else {
			alog_rec_hash(p, v.len, h);
			if (memcmp(h, v.hash, SW_ALOG_HASH) != 0) {
				snprintf(why, sizeof(why), "hash mismatch");
				goto bad;
			}
			if (*have_last && memcmp(v.prev, last, SW_ALOG_HASH) != 0) {
				snprintf(why, sizeof(why), "prev hash does not chain");
				goto bad;
			}
			if (alog_body_parse(v.body, v.len, &rec, why, sizeof(why)) != 0)
				goto bad;
			fill_rec(&rec, &v, first, (uint64_t)off);
			memcpy(last, v.hash, SW_ALOG_HASH);
			*have_last = 1;
			if ((ret = cb(&rec, opaque)) != 0) {
				*done = 1;
				return ret;
			}
		}
		(*expect)++;
		off += (off_t)v.size;
	}
bad:
	alog_err(errstr, errlen,
		 "segment %" PRIu64 ": record seq %" PRIu64 " at offset %lld: %s", first,
		 *expect, (long long)off, why);
	return -1;
io:
	alog_err(errstr, errlen, "segment %" PRIu64 ": read: %s", first, strerror(errno));
	return -1;
}

int sw_alog_scan(const char *dir, uint64_t from_seq, sw_alog_scan_cb cb, void *opaque,
		 char *errstr, size_t errlen)
{
	struct rd r = {.fd = -1};
	uint8_t last[SW_ALOG_HASH];
	char name[ALOG_SEG_NAME];
	uint64_t *firsts = NULL, expect;
	int have_last = 0, done = 0, ret = 0, dfd = -1;
	size_t n, i = 0;

	if (sodium_init() < 0) {
		alog_err(errstr, errlen, "libsodium failed to initialise");
		return -1;
	}
	if (alog_list(dir, &firsts, &n, errstr, errlen) != 0)
		return -1;
	if (n == 0)
		goto out;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		alog_err(errstr, errlen, "open %s: %s", dir, strerror(errno));
		ret = -1;
		goto out;
	}
	if ((r.buf = malloc(RD_BUF)) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		ret = -1;
		goto out;
	}
	r.cap = RD_BUF;
	while (i + 1 < n && firsts[i + 1] <= from_seq)
		i++;
	expect = firsts[i];
	for (; i < n && !done; i++) {
		alog_seg_name(name, firsts[i]);
		if ((r.fd = openat(dfd, name, O_RDONLY | O_CLOEXEC)) < 0) {
			alog_err(errstr, errlen, "open %s/%s: %s", dir, name, strerror(errno));
			ret = -1;
			goto out;
		}
		r.start = 0;
		r.len = 0;
		ret = scan_segment(&r, firsts[i], i == n - 1, from_seq, &expect, last, &have_last,
				   cb, opaque, &done, errstr, errlen);
		close(r.fd);
		r.fd = -1;
		if (ret != 0)
			goto out;
	}
out:
	if (dfd >= 0)
		close(dfd);
	free(r.buf);
	free(firsts);
	return ret;
}

int sw_alog_read_at(const char *dir, uint64_t segment, uint64_t file_off,
		    struct sw_alog_rec *rec, void **buf, char *errstr, size_t errlen)
{
	uint8_t head[ALOG_REC_HEAD], *mem = NULL;
	char name[ALOG_SEG_NAME], why[160];
	struct alog_view v;
	int dfd, fd = -1;
	ssize_t n;

	*buf = NULL;
	if (sodium_init() < 0) {
		alog_err(errstr, errlen, "libsodium failed to initialise");
		return -1;
	}
	alog_seg_name(name, segment);
	if (file_off < ALOG_HDR || file_off > (uint64_t)INT64_MAX - SW_ALOG_MAX_RECORD) {
		alog_err(errstr, errlen, "%s: no record at offset %" PRIu64, name, file_off);
		return -1;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
		close(dfd);
	}
	if (fd < 0) {
		alog_err(errstr, errlen, "open %s/%s: %s", dir, name, strerror(errno));
		return -1;
	}
	if ((n = alog_pread_full(fd, head, sizeof(head), (off_t)file_off)) < 0)
		goto io;
	if (n < ALOG_REC_HEAD || alog_rec_view(head, (size_t)n, 0, &v) == ALOG_BADLEN) {
		snprintf(why, sizeof(why), "no record (bad or missing length)");
		goto bad;
	}
	if ((mem = malloc(v.size)) == NULL) {
		snprintf(why, sizeof(why), "out of memory");
		goto bad;
	}
	if ((n = alog_pread_full(fd, mem, v.size, (off_t)file_off)) < 0)
		goto io;
	switch (alog_rec_view(mem, (size_t)n, 1, &v)) {
	case ALOG_OK:
		break;
	case ALOG_BADHASH:
		snprintf(why, sizeof(why), "hash mismatch");
		goto bad;
	default:
		snprintf(why, sizeof(why), "record extends past the end of the file");
		goto bad;
	}
	if (alog_body_parse(v.body, v.len, rec, why, sizeof(why)) != 0)
		goto bad;
	fill_rec(rec, &v, segment, file_off);
	close(fd);
	*buf = mem;
	return 0;
io:
	snprintf(why, sizeof(why), "read: %s", strerror(errno));
bad:
	alog_err(errstr, errlen, "%s offset %" PRIu64 ": %s", name, file_off, why);
	free(mem);
	close(fd);
	return -1;
}
