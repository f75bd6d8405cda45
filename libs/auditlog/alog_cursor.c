/*
 * alog_cursor.c: sw_alog_cursor (sw_alog_cursor.h), a pulled reader of the
 * log that checks every record and follows the log's growth.
 *
 * The cursor holds the current segment open and a window of its bytes
 * (pread, never mmap: see alog_read.c). At the end of a segment it lists
 * the directory for the segment that starts at the next seq; until there
 * is one, the end of the current segment is the end of the log for now.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sodium.h>

#include "alog_int.h"
#include "sw_alog_cursor.h"

#define CUR_BUF (1u << 20)

struct sw_alog_cursor {
	char *dir;
	int fd;		    /* the current segment, -1 before the first */
	uint64_t seg;	    /* its first seq */
	off_t off;	    /* the next record's offset in it */
	uint64_t expect;    /* the next record's seq; 0 until a segment is open */
	uint8_t last[SW_ALOG_HASH]; /* hash of the record before expect */
	int have_last;	    /* last is known (after the first segment header) */
	int broken;	    /* an error was returned: stay broken */
	uint8_t *buf;	    /* bytes [start, start + len) of the segment */
	size_t cap, len;
	off_t start;
	int defer;	    /* hashes left to the caller (sw_alog_cursor_defer) */
	const uint8_t *raw; /* the last record returned, as stored */
	size_t raw_len;
	size_t part_have; /* the log's end: bytes of a partial record there */
	size_t part_want; /* its size, when its head is there (else 0) */
};

struct sw_alog_cursor *sw_alog_cursor_open(const char *dir, char *errstr, size_t errlen)
{
	struct sw_alog_cursor *c;

	if (sodium_init() < 0) {
		alog_err(errstr, errlen, "libsodium failed to initialise");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->dir = strdup(dir)) == NULL ||
	    (c->buf = malloc(CUR_BUF)) == NULL) {
		if (c != NULL)
			free(c->dir);
		free(c);
		alog_err(errstr, errlen, "out of memory");
		return NULL;
	}
	c->cap = CUR_BUF;
	c->fd = -1;
	return c;
}

void sw_alog_cursor_close(struct sw_alog_cursor *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c->dir);
	free(c);
}

uint64_t sw_alog_cursor_seq(const struct sw_alog_cursor *c)
{
	return c->expect != 0 ? c->expect : 1;
}

int sw_alog_cursor_partial(const struct sw_alog_cursor *c, uint64_t *segment, uint64_t *off,
			   size_t *have, size_t *want)
{
	if (c->part_have == 0)
		return 0;
	*segment = c->seg;
	*off = (uint64_t)c->off;
	*have = c->part_have;
	*want = c->part_want;
	return 1;
}

/* Make [off, off + need) available if the file has it: *p points at off,
 * *avail counts the bytes present from there (fewer than need only at the
 * end of the file, as it is now). 0 or -1 (errno). */
static int cur_get(struct sw_alog_cursor *c, off_t off, size_t need, const uint8_t **p,
		   size_t *avail)
{
	ssize_t n;

	if (off < c->start || (size_t)(off - c->start) + need > c->len) {
		if (need > c->cap) {
			uint8_t *nb = realloc(c->buf, need);

			if (nb == NULL) {
				errno = ENOMEM;
				return -1;
			}
			c->buf = nb;
			c->cap = need;
		}
		if ((n = alog_pread_full(c->fd, c->buf, c->cap, off)) < 0)
			return -1;
		c->start = off;
		c->len = (size_t)n;
	}
	*p = c->buf + (off - c->start);
	*avail = c->len - (size_t)(off - c->start);
	return 0;
}

/* Open the segment that starts at c->expect (the first one of the log when
 * nothing is open yet) and check its header. 1 opened, 0 none yet, -1. */
static int cur_open_next(struct sw_alog_cursor *c, int *later, char *errstr, size_t errlen)
{
	char name[ALOG_SEG_NAME], why[160];
	uint64_t *firsts = NULL, first = 0;
	const uint8_t *p;
	size_t n, i, avail;
	int fd = -1, dfd, ret = -1;

	*later = 0;
	if (alog_list(c->dir, &firsts, &n, errstr, errlen) != 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (c->expect == 0 || firsts[i] == c->expect) {
			first = firsts[i];
			*later = i + 1 < n;
			break;
		}
		if (firsts[i] > c->expect) {
			alog_err(errstr, errlen,
				 "segment %" PRIu64 ": sequence gap: expected %" PRIu64
				 ", found %" PRIu64,
				 firsts[i], c->expect, firsts[i]);
			goto out;
		}
	}
	if (i == n) {
		ret = 0;
		goto out;
	}
	alog_seg_name(name, first);
	if ((dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
		close(dfd);
	}
	if (fd < 0) {
		alog_err(errstr, errlen, "open %s/%s: %s", c->dir, name, strerror(errno));
		goto out;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = fd;
	c->start = 0;
	c->len = 0;
	if (cur_get(c, 0, ALOG_HDR, &p, &avail) != 0) {
		alog_err(errstr, errlen, "segment %" PRIu64 ": read: %s", first, strerror(errno));
		goto out;
	}
	if (avail < ALOG_HDR) {
		if (!*later) { /* being created: try again later */
			close(c->fd);
			c->fd = -1;
			ret = 0;
			goto out;
		}
		alog_err(errstr, errlen, "segment %" PRIu64 ": header truncated", first);
		goto out;
	}
	if (alog_hdr_check(p, first, why, sizeof(why)) != 0) {
		alog_err(errstr, errlen, "segment %" PRIu64 ": %s", first, why);
		goto out;
	}
	if (c->have_last && memcmp(alog_hdr_prev(p), c->last, SW_ALOG_HASH) != 0) {
		alog_err(errstr, errlen,
			 "segment %" PRIu64 ": header prev hash does not chain to the previous "
			 "segment",
			 first);
		goto out;
	}
	memcpy(c->last, alog_hdr_prev(p), SW_ALOG_HASH);
	c->have_last = 1;
	c->seg = first;
	c->expect = first;
	c->off = ALOG_HDR;
	ret = 1;
out:
	free(firsts);
	return ret;
}

/* Is there a segment after the current one (starting at c->expect)? */
static int cur_has_next(struct sw_alog_cursor *c, char *errstr, size_t errlen)
{
	uint64_t *firsts = NULL;
	size_t n, i;
	int found = 0;

	if (alog_list(c->dir, &firsts, &n, errstr, errlen) != 0)
		return -1;
	for (i = 0; i < n; i++)
		if (firsts[i] > c->seg)
			found = 1;
	free(firsts);
	return found;
}

int sw_alog_cursor_next(struct sw_alog_cursor *c, struct sw_alog_rec *rec, char *errstr,
			size_t errlen)
{
	uint8_t h[SW_ALOG_HASH];
	struct alog_view v;
	const uint8_t *p;
	enum alog_rc rc;
	size_t avail;
	char why[160];
	int later, r;

	if (c->broken) {
		alog_err(errstr, errlen, "the log was found broken before");
		return -1;
	}
	c->part_have = 0;
	if (c->fd < 0) {
		if ((r = cur_open_next(c, &later, errstr, errlen)) != 1)
			goto ret;
	}
	for (;;) {
		if (cur_get(c, c->off, ALOG_REC_HEAD, &p, &avail) != 0)
			goto io;
		rc = alog_rec_view(p, avail, 0, &v);
		if (rc == ALOG_PARTIAL && v.size > avail) {
			if (cur_get(c, c->off, v.size, &p, &avail) != 0)
				goto io;
			rc = alog_rec_view(p, avail, 0, &v);
		}
		if (rc == ALOG_PARTIAL && avail == 0) {
			/* an empty segment (a log that has no record yet): its end
			 * is the log's end for now; opening the segment that
			 * starts at expect again would only reopen this one */
			if (c->expect == c->seg)
				return 0;
			/* the segment's end: go on in the next one, if any yet */
			if ((r = cur_open_next(c, &later, errstr, errlen)) != 1)
				goto ret;
			continue;
		}
		if (rc == ALOG_PARTIAL) {
			if ((r = cur_has_next(c, errstr, errlen)) == 0) {
				/* being written, or a torn tail: for now the end */
				c->part_have = avail;
				c->part_want = avail >= ALOG_REC_HEAD ? v.size : 0;
				return 0;
			}
			if (r == -1)
				goto ret;
			snprintf(why, sizeof(why), "record extends past the end of the file");
			goto bad;
		}
		if (rc != ALOG_OK) {
			snprintf(why, sizeof(why), "record length out of range");
			goto bad;
		}
		break;
	}
	if (v.seq != c->expect) {
		snprintf(why, sizeof(why), "sequence %s: expected %" PRIu64 ", found %" PRIu64,
			 alog_seq_word(c->expect, v.seq), c->expect, v.seq);
		goto bad;
	}
	if (!c->defer) {
		alog_rec_hash(p, v.len, h);
		if (memcmp(h, v.hash, SW_ALOG_HASH) != 0) {
			snprintf(why, sizeof(why), "hash mismatch");
			goto bad;
		}
	}
	if (memcmp(v.prev, c->last, SW_ALOG_HASH) != 0) {
		snprintf(why, sizeof(why), "prev hash does not chain");
		goto bad;
	}
	if (alog_body_parse(v.body, v.len, rec, why, sizeof(why)) != 0) {
		/* with the hashes deferred, a changed byte shows here first:
		 * name it as what it is */
		if (c->defer) {
			alog_rec_hash(p, v.len, h);
			if (memcmp(h, v.hash, SW_ALOG_HASH) != 0)
				snprintf(why, sizeof(why), "hash mismatch");
		}
		goto bad;
	}
	rec->seq = v.seq;
	memcpy(rec->hash, v.hash, SW_ALOG_HASH);
	rec->segment = c->seg;
	rec->file_off = (uint64_t)c->off;
	memcpy(c->last, v.hash, SW_ALOG_HASH);
	c->raw = p;
	c->raw_len = v.size;
	c->expect++;
	c->off += (off_t)v.size;
	return 1;
bad:
	alog_err(errstr, errlen, "segment %" PRIu64 ": record seq %" PRIu64 " at offset %lld: %s",
		 c->seg, c->expect, (long long)c->off, why);
	c->broken = 1;
	return -1;
io:
	alog_err(errstr, errlen, "segment %" PRIu64 ": read: %s", c->seg, strerror(errno));
	c->broken = 1;
	return -1;
ret:
	if (r == -1)
		c->broken = 1;
	return r;
}

void sw_alog_cursor_defer(struct sw_alog_cursor *c, int on)
{
	c->defer = on;
}

void sw_alog_cursor_raw(const struct sw_alog_cursor *c, const void **raw, size_t *len)
{
	*raw = c->raw;
	*len = c->raw_len;
}

int sw_alog_raw_check(const void *raw, size_t len)
{
	uint8_t h[SW_ALOG_HASH];
	struct alog_view v;

	if (sodium_init() < 0 || alog_rec_view(raw, len, 0, &v) != ALOG_OK || v.size != len)
		return -1;
	alog_rec_hash(raw, v.len, h);
	return sodium_memcmp(h, v.hash, SW_ALOG_HASH) == 0 ? 0 : -1;
}
