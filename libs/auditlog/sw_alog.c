/*
 * sw_alog.c: the writer of the audit log.
 *
 * Appends are built, hashed and chained in one large buffer; sw_alog_sync
 * writes it with one write() and fdatasyncs (group commit). Rolling to a new
 * segment first makes the old one durable, so a later segment never exists
 * on disk ahead of its predecessor's tail. Open repairs what a crash can
 * leave behind: a partial or corrupt tail of the last segment, or a new
 * segment whose header never made it to disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "alog_int.h"

#define ALOG_BUF (8u << 20) /* append buffer; grows only for a larger record */

/* Where the log ends; the live one and the one the last sync made durable. */
struct alog_pos {
	uint64_t seg_first;	  /* first seq of the current segment */
	uint64_t seg_size;	  /* its size (live: including buffered bytes) */
	uint64_t seg_records;	  /* records in it */
	int64_t seg_birth_us;	  /* when it was made (for the age roll) */
	uint64_t next_seq;
	uint8_t last_hash[SW_ALOG_HASH];
};

struct sw_alog {
	int dirfd;		  /* the log directory, flock'ed */
	int fd;			  /* current segment, -1 before the first one */
	size_t segment_max;
	int64_t max_age_us;	  /* 0: segments roll by size only */
	struct alog_pos pos;	  /* live */
	struct alog_pos dur;	  /* as of the last good sync (seg_size 0: not even
				     the segment's header is durable yet) */
	uint8_t *buf;		  /* appended, not yet written */
	size_t buf_len, buf_cap;
	int data_dirty;		  /* written since the last fdatasync */
	int dir_dirty;		  /* a segment was created since the last sync */
	int failed;		  /* an I/O error left the on-disk state unknown */
	/* Is the segment old enough to roll: -1 not yet asked since the last
	 * good sync, else the answer, asked once at the first append after it;
	 * first_age keeps that first answer, so an attempt repeated after a
	 * rollback rolls where the failed one did and writes the same bytes. */
	int age_roll, first_age;
};

static const uint8_t zero_hash[SW_ALOG_HASH];

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A segment's birth time where the file system keeps one, else now. */
static int64_t birth_us(int fd)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &stx) == 0 && (stx.stx_mask & STATX_BTIME))
		return (int64_t)stx.stx_btime.tv_sec * 1000000 + stx.stx_btime.tv_nsec / 1000;
	return now_us();
}

static int fail_io(struct sw_alog *l, const char *what, char *errstr, size_t errlen)
{
	int e = errno;

	l->failed = 1;
	alog_err(errstr, errlen, "%s: %s", what, strerror(e));
	return -1;
}

static int flush_buf(struct sw_alog *l, char *errstr, size_t errlen)
{
	if (l->buf_len == 0)
		return 0;
	if (alog_write_all(l->fd, l->buf, l->buf_len) != 0)
		return fail_io(l, "write segment", errstr, errlen);
	l->buf_len = 0;
	l->data_dirty = 1;
	return 0;
}

/* Create segment "first" with its header in the buffer (written at the next
 * flush). The buffer must be empty. */
static int new_segment(struct sw_alog *l, uint64_t first, const uint8_t prev[SW_ALOG_HASH],
		       char *errstr, size_t errlen)
{
	char name[ALOG_SEG_NAME];
	int fd;

	alog_seg_name(name, first);
	fd = openat(l->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		alog_err(errstr, errlen, "create %s: %s", name, strerror(errno));
		return -1;
	}
	l->fd = fd;
	l->pos.seg_first = first;
	l->pos.seg_size = ALOG_HDR;
	l->pos.seg_records = 0;
	l->pos.seg_birth_us = now_us();
	alog_hdr_build(l->buf, first, prev);
	l->buf_len = ALOG_HDR;
	l->dir_dirty = 1;
	return 0;
}

/* Make the current segment durable and start the next one. */
static int roll(struct sw_alog *l, char *errstr, size_t errlen)
{
	if (flush_buf(l, errstr, errlen) != 0)
		return -1;
	if (fdatasync(l->fd) != 0)
		return fail_io(l, "fdatasync segment", errstr, errlen);
	close(l->fd);
	l->fd = -1;
	l->data_dirty = 0;
	if (new_segment(l, l->pos.next_seq, l->pos.last_hash, errstr, errlen) != 0) {
		l->failed = 1;
		return -1;
	}
	return 0;
}

/* Is there a record that checks (length and hash) anywhere after from, with
 * a sequence number at or after expect? Used to tell a torn tail (nothing
 * good after the bad bytes) from corruption in the middle. */
static int good_record_after(const uint8_t *p, size_t size, size_t from, uint64_t expect,
			     uint64_t *seq, size_t *at)
{
	uint64_t hi = expect + (size - from) / (ALOG_REC_OVER + ALOG_BODY_MIN) + 1;
	struct alog_view v;
	size_t q;

	if (size - from < ALOG_REC_OVER + ALOG_BODY_MIN)
		return 0;
	for (q = from + 1; q + ALOG_REC_OVER + ALOG_BODY_MIN <= size; q++) {
		uint64_t s = alog_get64(p + q + 4);

		if (s < expect || s > hi)
			continue;
		if (alog_rec_view(p + q, size - q, 1, &v) == ALOG_OK) {
			*seq = s;
			*at = q;
			return 1;
		}
	}
	return 0;
}

/* A segment header is torn (the crash came right after creating the file)
 * when it is short, or does not check and no record follows it. */
static int header_torn(const uint8_t *p, size_t size, uint64_t first, char *why, size_t wl)
{
	struct alog_view v;

	if (size < ALOG_HDR)
		return 1;
	if (alog_hdr_check(p, first, why, wl) == 0)
		return 0;
	return alog_rec_view(p + ALOG_HDR, size - ALOG_HDR, 1, &v) != ALOG_OK;
}

/* Walk the last segment (mapped at p), checking lengths, hashes and the
 * chain from the header. On a torn tail set *cut to its offset; a bad record
 * that good ones follow, or a record whose hash checks but whose chain or
 * body does not, is corruption: -1. Sets next_seq and last_hash. */
static int scan_last(struct sw_alog *l, const uint8_t *p, size_t size, uint64_t first,
		     size_t *cut, char *errstr, size_t errlen)
{
	const char *names[] = {"ok", "partial record", "bad length", "hash mismatch"};
	struct sw_alog_rec rec;
	struct alog_view v;
	size_t off = ALOG_HDR, at;
	uint64_t expect = first, s;
	char why[160];
	enum alog_rc rc;

	memcpy(l->pos.last_hash, alog_hdr_prev(p), SW_ALOG_HASH);
	l->pos.seg_records = 0;
	*cut = size;
	while (off < size) {
		rc = alog_rec_view(p + off, size - off, 1, &v);
		if (rc != ALOG_OK) {
			if (good_record_after(p, size, off, expect, &s, &at)) {
				alog_err(errstr, errlen,
					 "segment %" PRIu64 ": record seq %" PRIu64
					 " at offset %zu is corrupt (%s) but a good record"
					 " (seq %" PRIu64 " at offset %zu) follows; refusing"
					 " to cut it",
					 first, expect, off, names[rc], s, at);
				return -1;
			}
			*cut = off;
			break;
		}
		if (v.seq != expect)
			snprintf(why, sizeof(why),
				 "sequence %s: expected %" PRIu64 ", found %" PRIu64,
				 alog_seq_word(expect, v.seq), expect, v.seq);
		else if (memcmp(v.prev, l->pos.last_hash, SW_ALOG_HASH) != 0)
			snprintf(why, sizeof(why), "prev hash does not chain");
		else if (alog_body_parse(v.body, v.len, &rec, why, sizeof(why)) == 0)
			why[0] = '\0';
		if (why[0] != '\0') {
			alog_err(errstr, errlen,
				 "segment %" PRIu64 ": record seq %" PRIu64 " at offset %zu: %s",
				 first, expect, off, why);
			return -1;
		}
		memcpy(l->pos.last_hash, v.hash, SW_ALOG_HASH);
		expect++;
		l->pos.seg_records++;
		off += v.size;
	}
	l->pos.next_seq = expect;
	return 0;
}

/* Open the last segment, repair it, and leave it ready for appends; when
 * its header is torn, remove it and retry with the one before. */
static int open_last(struct sw_alog *l, uint64_t *firsts, size_t n, size_t *repaired,
		     char *errstr, size_t errlen)
{
	char name[ALOG_SEG_NAME], why[160];
	uint8_t *p = MAP_FAILED;
	struct stat st;
	size_t size = 0, cut;
	int fd = -1;

	while (n > 0) {
		uint64_t first = firsts[n - 1];

		alog_seg_name(name, first);
		if ((fd = openat(l->dirfd, name, O_RDWR | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
			alog_err(errstr, errlen, "open %s: %s", name, strerror(errno));
			goto fail;
		}
		size = (size_t)st.st_size;
		if (size > 0) {
			p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
			if (p == MAP_FAILED) {
				alog_err(errstr, errlen, "mmap %s: %s", name, strerror(errno));
				goto fail;
			}
		}
		if (header_torn(p, size, first, why, sizeof(why))) {
			if (n == 1 && first != 1) {
				alog_err(errstr, errlen,
					 "%s: torn segment header and no segment before it", name);
				goto fail;
			}
			if (p != MAP_FAILED)
				munmap(p, size);
			p = MAP_FAILED;
			close(fd);
			fd = -1;
			if (unlinkat(l->dirfd, name, 0) != 0 || fsync(l->dirfd) != 0) {
				alog_err(errstr, errlen, "remove torn %s: %s", name,
					 strerror(errno));
				goto fail;
			}
			*repaired += size;
			n--;
			continue;
		}
		if (alog_hdr_check(p, first, why, sizeof(why)) != 0) {
			alog_err(errstr, errlen, "%s: %s", name, why);
			goto fail;
		}
		if (scan_last(l, p, size, first, &cut, errstr, errlen) != 0)
			goto fail;
		munmap(p, size);
		p = MAP_FAILED;
		if (cut < size) {
			if (ftruncate(fd, (off_t)cut) != 0 || fsync(fd) != 0) {
				alog_err(errstr, errlen, "truncate torn tail of %s: %s", name,
					 strerror(errno));
				goto fail;
			}
			*repaired += size - cut;
		}
		if (lseek(fd, (off_t)cut, SEEK_SET) < 0) {
			alog_err(errstr, errlen, "seek %s: %s", name, strerror(errno));
			goto fail;
		}
		l->fd = fd;
		l->pos.seg_first = first;
		l->pos.seg_size = cut;
		l->pos.seg_birth_us = birth_us(fd);
		l->dur = l->pos;
		return 0;
	}
	/* Nothing left: a new log. */
	l->pos.next_seq = 1;
	memset(l->pos.last_hash, 0, SW_ALOG_HASH);
	if (new_segment(l, 1, zero_hash, errstr, errlen) != 0)
		return -1;
	l->dur = l->pos;
	l->dur.seg_size = 0; /* the header is not on disk yet */
	return 0;
fail:
	if (p != MAP_FAILED)
		munmap(p, size);
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Make a new directory's entry durable in its parent. */
static int sync_parent(const char *dir, char *errstr, size_t errlen)
{
	char *copy = strdup(dir);
	int fd = -1, ret = -1;

	if (copy == NULL) {
		alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(fd) != 0)
		alog_err(errstr, errlen, "fsync parent of %s: %s", dir, strerror(errno));
	else
		ret = 0;
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}

struct sw_alog *sw_alog_open(const char *dir, size_t segment_max, size_t *repaired,
			     char *errstr, size_t errlen)
{
	struct sw_alog *l;
	uint64_t *firsts = NULL;
	size_t n, rep = 0;

	if (sodium_init() < 0) {
		alog_err(errstr, errlen, "libsodium failed to initialise");
		return NULL;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		return NULL;
	}
	l->dirfd = -1;
	l->fd = -1;
	l->age_roll = l->first_age = -1;
	l->segment_max = segment_max ? segment_max : SW_ALOG_SEGMENT_DEFAULT;
	l->buf_cap = ALOG_BUF;
	if ((l->buf = malloc(l->buf_cap)) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		goto fail;
	}
	if (mkdir(dir, 0755) == 0) {
		if (sync_parent(dir, errstr, errlen) != 0)
			goto fail;
	} else if (errno != EEXIST) {
		alog_err(errstr, errlen, "mkdir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		alog_err(errstr, errlen, "open %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (flock(l->dirfd, LOCK_EX | LOCK_NB) != 0) {
		alog_err(errstr, errlen, "%s: %s", dir,
			 errno == EWOULDBLOCK ? "log is open by another writer" : strerror(errno));
		goto fail;
	}
	if (alog_list(dir, &firsts, &n, errstr, errlen) != 0)
		goto fail;
	if (open_last(l, firsts, n, &rep, errstr, errlen) != 0)
		goto fail;
	free(firsts);
	if (repaired != NULL)
		*repaired = rep;
	return l;
fail:
	free(firsts);
	if (l->dirfd >= 0)
		close(l->dirfd);
	free(l->buf);
	free(l);
	return NULL;
}

void sw_alog_close(struct sw_alog *l)
{
	if (l == NULL)
		return;
	if (!l->failed)
		sw_alog_sync(l, NULL, 0);
	if (l->fd >= 0)
		close(l->fd);
	close(l->dirfd);
	free(l->buf);
	free(l);
}

int sw_alog_append(struct sw_alog *l, uint8_t kind, const char *topic, int32_t partition,
		   int64_t offset, int64_t time_us, const void *payload, size_t len, uint64_t *seq,
		   uint64_t *segment, uint64_t *file_off, char *errstr, size_t errlen)
{
	size_t tl = topic ? strlen(topic) : 0, body, size;
	uint8_t *p;

	if (l->failed) {
		alog_err(errstr, errlen, "log unusable after an earlier I/O error; reopen it");
		return -1;
	}
	if (kind < SW_ALOG_EVENT || kind > SW_ALOG_CHECKPOINT) {
		alog_err(errstr, errlen, "unknown record kind %u", kind);
		return -1;
	}
	if (kind == SW_ALOG_CHECKPOINT && len != SW_ALOG_CHECKPOINT_LEN) {
		alog_err(errstr, errlen, "checkpoint payload must be %d bytes",
			 SW_ALOG_CHECKPOINT_LEN);
		return -1;
	}
	if (tl > UINT16_MAX) {
		alog_err(errstr, errlen, "topic of %zu bytes is too long", tl);
		return -1;
	}
	if (len > SW_ALOG_MAX_RECORD || ALOG_BODY_MIN + tl + len > SW_ALOG_MAX_RECORD) {
		alog_err(errstr, errlen, "record of %zu bytes exceeds the maximum of %u",
			 ALOG_BODY_MIN + tl + len, SW_ALOG_MAX_RECORD);
		return -1;
	}
	body = ALOG_BODY_MIN + tl + len;
	size = ALOG_REC_OVER + body;
	if (l->age_roll < 0)
		l->first_age = l->age_roll =
			l->max_age_us > 0 && now_us() - l->pos.seg_birth_us >= l->max_age_us;
	if (l->pos.seg_records > 0 && (l->pos.seg_size + size > l->segment_max || l->age_roll)) {
		if (roll(l, errstr, errlen) != 0)
			return -1;
		l->age_roll = 0;
	}
	if (l->buf_len + size > l->buf_cap) {
		if (flush_buf(l, errstr, errlen) != 0)
			return -1;
		if (size > l->buf_cap) {
			uint8_t *nb = realloc(l->buf, size);

			if (nb == NULL) {
				alog_err(errstr, errlen, "out of memory");
				return -1;
			}
			l->buf = nb;
			l->buf_cap = size;
		}
	}
	p = l->buf + l->buf_len;
	alog_put32(p, (uint32_t)body);
	alog_put64(p + 4, l->pos.next_seq);
	memcpy(p + 12, l->pos.last_hash, SW_ALOG_HASH);
	p[ALOG_REC_HEAD] = kind;
	alog_put16(p + ALOG_REC_HEAD + 1, (uint16_t)tl);
	if (tl > 0)
		memcpy(p + ALOG_REC_HEAD + 3, topic, tl);
	alog_put32(p + ALOG_REC_HEAD + 3 + tl, (uint32_t)partition);
	alog_put64(p + ALOG_REC_HEAD + 7 + tl, (uint64_t)offset);
	alog_put64(p + ALOG_REC_HEAD + 15 + tl, (uint64_t)time_us);
	if (len > 0)
		memcpy(p + ALOG_REC_HEAD + ALOG_BODY_MIN + tl, payload, len);
	alog_rec_hash(p, (uint32_t)body, p + ALOG_REC_HEAD + body);
	memcpy(l->pos.last_hash, p + ALOG_REC_HEAD + body, SW_ALOG_HASH);
	if (seq != NULL)
		*seq = l->pos.next_seq;
	if (segment != NULL)
		*segment = l->pos.seg_first;
	if (file_off != NULL)
		*file_off = l->pos.seg_size;
	l->pos.next_seq++;
	l->buf_len += size;
	l->pos.seg_size += size;
	l->pos.seg_records++;
	return 0;
}

int sw_alog_sync(struct sw_alog *l, char *errstr, size_t errlen)
{
	if (l->failed) {
		alog_err(errstr, errlen, "log unusable after an earlier I/O error; reopen it");
		return -1;
	}
	if (flush_buf(l, errstr, errlen) != 0)
		return -1;
	if (l->data_dirty) {
		if (fdatasync(l->fd) != 0)
			return fail_io(l, "fdatasync segment", errstr, errlen);
		l->data_dirty = 0;
	}
	if (l->dir_dirty) {
		if (fsync(l->dirfd) != 0)
			return fail_io(l, "fsync log directory", errstr, errlen);
		l->dir_dirty = 0;
	}
	l->dur = l->pos;
	l->age_roll = l->first_age = -1;
	return 0;
}

uint64_t sw_alog_next_seq(const struct sw_alog *l)
{
	return l->pos.next_seq;
}

void sw_alog_last_hash(const struct sw_alog *l, uint8_t out[SW_ALOG_HASH])
{
	memcpy(out, l->pos.last_hash, SW_ALOG_HASH);
}

void sw_alog_set_roll(struct sw_alog *l, size_t max_bytes, int64_t max_age_us)
{
	if (max_bytes > 0)
		l->segment_max = max_bytes;
	l->max_age_us = max_age_us > 0 ? max_age_us : 0;
}

int sw_alog_failed(const struct sw_alog *l)
{
	return l->failed;
}

/* Remove the segments after first (made since the last durable point). */
static int drop_after(struct sw_alog *l, uint64_t first, char *errstr, size_t errlen)
{
	char name[ALOG_SEG_NAME];
	uint64_t *firsts = NULL;
	size_t n, i;
	int dfd, ret = 0;

	if ((dfd = dup(l->dirfd)) < 0) { /* alog_list_fd takes it */
		alog_err(errstr, errlen, "dup: %s", strerror(errno));
		return -1;
	}
	if (alog_list_fd(dfd, &firsts, &n, errstr, errlen) != 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (firsts[i] <= first)
			continue;
		alog_seg_name(name, firsts[i]);
		if (unlinkat(l->dirfd, name, 0) != 0 && errno != ENOENT) {
			alog_err(errstr, errlen, "remove %s: %s", name, strerror(errno));
			ret = -1;
			break;
		}
	}
	free(firsts);
	return ret;
}

int sw_alog_rollback(struct sw_alog *l, char *errstr, size_t errlen)
{
	char name[ALOG_SEG_NAME];
	int fd;

	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->buf_len = 0;
	l->failed = 1; /* until this succeeds */
	if (drop_after(l, l->dur.seg_first, errstr, errlen) != 0)
		return -1;
	alog_seg_name(name, l->dur.seg_first);
	fd = openat(l->dirfd, name, O_RDWR | O_CLOEXEC | (l->dur.seg_size == 0 ? O_CREAT : 0),
		    0644);
	if (fd < 0) {
		alog_err(errstr, errlen, "open %s: %s", name, strerror(errno));
		return -1;
	}
	if (ftruncate(fd, (off_t)l->dur.seg_size) != 0 || fsync(fd) != 0 ||
	    lseek(fd, (off_t)l->dur.seg_size, SEEK_SET) < 0 || fsync(l->dirfd) != 0) {
		alog_err(errstr, errlen, "cut %s back to %llu bytes: %s", name,
			 (unsigned long long)l->dur.seg_size, strerror(errno));
		close(fd);
		return -1;
	}
	l->fd = fd;
	l->pos = l->dur;
	l->age_roll = l->first_age;
	l->data_dirty = 0;
	l->dir_dirty = 0;
	if (l->pos.seg_size == 0) {
		/* the segment's header never made it: write it again */
		alog_hdr_build(l->buf, l->pos.seg_first, l->pos.last_hash);
		l->buf_len = ALOG_HDR;
		l->pos.seg_size = ALOG_HDR;
		l->dir_dirty = 1;
	}
	l->failed = 0;
	return 0;
}
