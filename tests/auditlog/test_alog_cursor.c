/*
 * sw_alog_cursor: every record in order across segments, the same bytes
 * sw_alog_scan delivers; following a log a writer still appends to (new
 * records, new segments); a partial tail is "nothing yet" in the last
 * segment and corruption before a later one; a changed byte, a missing
 * segment and a missing directory are refused, naming the record; with
 * hashing deferred, the caller's check of the raw bytes finds the change.
 */
#include <errno.h>

#include "alog_util.h"
#include "sw_alog_cursor.h"

struct seen {
	uint64_t n;
	uint8_t (*hash)[SW_ALOG_HASH];
	size_t cap;
};

static int scan_keep(const struct sw_alog_rec *rec, void *opaque)
{
	struct seen *s = opaque;

	SW_CHECK(rec->seq == s->n + 1);
	SW_CHECK(rec->seq < s->cap);
	memcpy(s->hash[rec->seq], rec->hash, SW_ALOG_HASH);
	s->n++;
	return 0;
}

/* Read with c until it has nothing more; check each record against its
 * expected payload and the hashes scan saw. Returns the records read. */
static uint64_t drain(struct sw_alog_cursor *c, const struct seen *s)
{
	struct sw_alog_rec rec;
	uint8_t pl[512];
	char err[256];
	uint64_t n = 0;
	int rc;

	while ((rc = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == 1) {
		size_t len = t_payload(rec.seq, pl, sizeof(pl));

		SW_CHECKF(rec.payload_len == len && memcmp(rec.payload, pl, len) == 0,
			  "payload of seq %" PRIu64, rec.seq);
		SW_CHECK(rec.topic_len == strlen(t_topic(rec.seq)));
		SW_CHECK(rec.offset == (int64_t)rec.seq * 10);
		if (s != NULL && rec.seq <= s->n)
			SW_CHECK(memcmp(rec.hash, s->hash[rec.seq], SW_ALOG_HASH) == 0);
		SW_CHECK(sw_alog_cursor_seq(c) == rec.seq + 1);
		n++;
	}
	SW_CHECKF(rc == 0, "cursor: %s", err);
	return n;
}

static void test_follow(void)
{
	char *dir = t_mkdir("cursor");
	struct seen s = {0};
	struct sw_alog_cursor *c;
	struct sw_alog *l;
	char err[256];

	c = sw_alog_cursor_open(dir, err, sizeof(err));
	SW_CHECKF(c != NULL, "%s", err);
	SW_CHECK(drain(c, NULL) == 0); /* no segment yet */
	SW_CHECK(sw_alog_cursor_seq(c) == 1);

	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "%s", err);
	t_fill(l, 1000, 50, NULL);
	s.cap = 3001;
	s.hash = calloc(s.cap, SW_ALOG_HASH);
	SW_CHECK(sw_alog_scan(dir, 1, scan_keep, &s, err, sizeof(err)) == 0);
	SW_CHECK(s.n == 1000);
	SW_CHECK(drain(c, &s) == 1000);
	SW_CHECK(drain(c, &s) == 0);

	/* the writer goes on, into new segments: the cursor follows */
	t_fill(l, 700, 7, NULL);
	SW_CHECK(drain(c, NULL) == 700);
	t_fill(l, 1, 1, NULL);
	SW_CHECK(drain(c, NULL) == 1);
	SW_CHECK(sw_alog_cursor_seq(c) == 1702);
	sw_alog_close(l);
	sw_alog_cursor_close(c);

	/* a fresh cursor reads the whole log again, same hashes as scan */
	s.n = 0;
	SW_CHECK(sw_alog_scan(dir, 1, scan_keep, &s, err, sizeof(err)) == 0);
	c = sw_alog_cursor_open(dir, err, sizeof(err));
	SW_CHECK(drain(c, &s) == 1701);
	sw_alog_cursor_close(c);
	free(s.hash);
	t_rmrf(dir);
	free(dir);
}

/* Append raw bytes to the end of a segment. */
static void t_append_bytes(const char *dir, uint64_t seg, const void *b, size_t n)
{
	char path[512];
	int fd;

	t_seg_path(path, sizeof(path), dir, seg);
	fd = open(path, O_WRONLY | O_APPEND);
	SW_CHECK(fd >= 0);
	SW_CHECK(write(fd, b, n) == (ssize_t)n);
	close(fd);
}

static void test_partial_tail(void)
{
	char *dir = t_mkdir("cursor-tail"), err[256], path[512];
	struct t_loc locs[301];
	struct sw_alog_rec rec;
	struct sw_alog_cursor *c;
	struct sw_alog *l;
	uint8_t part[20] = {200, 0, 0, 0, 0x2d, 1}; /* len 200, seq 301: cut short */
	uint64_t last_seg;
	uint8_t hdr[T_HDR] = "SWALOG01";
	int rc;

	l = sw_alog_open(dir, 0, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	t_fill(l, 300, 0, locs);
	sw_alog_close(l);
	last_seg = locs[300].segment;
	t_append_bytes(dir, last_seg, part, sizeof(part));

	c = sw_alog_cursor_open(dir, err, sizeof(err));
	SW_CHECK(drain(c, NULL) == 300);
	SW_CHECK(drain(c, NULL) == 0); /* still nothing: the record is not complete */

	/* a later segment behind the partial record: the record is torn */
	t_seg_path(path, sizeof(path), dir, 301);
	{
		int fd = open(path, O_WRONLY | O_CREAT, 0644);

		SW_CHECK(fd >= 0);
		SW_CHECK(write(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr));
		close(fd);
	}
	rc = sw_alog_cursor_next(c, &rec, err, sizeof(err));
	SW_CHECKF(rc == -1 && strstr(err, "record seq 301") &&
			  strstr(err, "extends past the end of the file"),
		  "rc %d: %s", rc, err);
	sw_alog_cursor_close(c);
	t_rmrf(dir);
	free(dir);
}

static void test_broken(void)
{
	char *dir = t_mkdir("cursor-bad"), err[256], path[512], want[64];
	struct t_loc locs[1001];
	struct sw_alog_rec rec;
	struct sw_alog_cursor *c;
	struct sw_alog *l;
	uint64_t n = 0, mid;
	int rc;

	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	t_fill(l, 1000, 100, locs);
	sw_alog_close(l);

	/* one byte of record 300's body changed */
	t_flip(dir, locs[300].segment, locs[300].off + 44 + 5);
	c = sw_alog_cursor_open(dir, err, sizeof(err));
	while ((rc = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == 1)
		n++;
	snprintf(want, sizeof(want), "record seq 300 at offset %" PRIu64 ":", locs[300].off);
	SW_CHECKF(rc == -1 && n == 299 && strstr(err, want) && strstr(err, "hash mismatch"),
		  "rc %d after %" PRIu64 ": %s", rc, n, err);
	SW_CHECK(sw_alog_cursor_next(c, &rec, err, sizeof(err)) == -1);
	sw_alog_cursor_close(c);

	/* hashing deferred: every record comes, and the caller's check of the
	 * raw bytes finds exactly the changed one */
	c = sw_alog_cursor_open(dir, err, sizeof(err));
	sw_alog_cursor_defer(c, 1);
	n = 0;
	while ((rc = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == 1) {
		const void *raw;
		size_t rlen;

		sw_alog_cursor_raw(c, &raw, &rlen);
		SW_CHECK(rlen == locs[rec.seq].size);
		SW_CHECKF((sw_alog_raw_check(raw, rlen) == 0) == (rec.seq != 300), "seq %" PRIu64,
			  rec.seq);
		n++;
	}
	SW_CHECKF(rc == 0 && n == 1000, "rc %d after %" PRIu64 ": %s", rc, n, err);
	sw_alog_cursor_close(c);
	t_flip(dir, locs[300].segment, locs[300].off + 44 + 5);

	/* a whole segment in the middle gone */
	mid = locs[600].segment;
	t_seg_path(path, sizeof(path), dir, mid);
	SW_CHECK(unlink(path) == 0);
	c = sw_alog_cursor_open(dir, err, sizeof(err));
	n = 0;
	while ((rc = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == 1)
		n++;
	SW_CHECKF(rc == -1 && n == mid - 1 && strstr(err, "sequence gap"), "rc %d after %" PRIu64
		  ": %s", rc, n, err);
	sw_alog_cursor_close(c);
	t_rmrf(dir);

	/* no such directory */
	c = sw_alog_cursor_open(dir, err, sizeof(err));
	SW_CHECK(c != NULL);
	SW_CHECK(sw_alog_cursor_next(c, &rec, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, strerror(ENOENT)) != NULL, "%s", err);
	sw_alog_cursor_close(c);
	free(dir);
}

/* A log whose first segment holds no record yet (the audit service has
 * just started): the cursor says "nothing yet" at once, without
 * consuming anything, and returns seq 1 once it is appended (a follower
 * started then must not take the first record for part of the log it
 * skipped). */
static void test_empty_segment(void)
{
	char *dir = t_mkdir("cursor-empty");
	struct sw_alog_cursor *c;
	struct sw_alog_rec rec;
	struct sw_alog *l;
	char err[256];

	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "%s", err);
	/* the segment's header on disk, no record after it */
	SW_CHECKF(sw_alog_sync(l, err, sizeof(err)) == 0, "%s", err);
	c = sw_alog_cursor_open(dir, err, sizeof(err));
	SW_CHECKF(c != NULL, "%s", err);
	SW_CHECK(sw_alog_cursor_next(c, &rec, err, sizeof(err)) == 0);
	SW_CHECK(sw_alog_cursor_next(c, &rec, err, sizeof(err)) == 0);
	t_fill(l, 1, 1, NULL);
	SW_CHECKF(sw_alog_cursor_next(c, &rec, err, sizeof(err)) == 1, "%s", err);
	SW_CHECK(rec.seq == 1);
	SW_CHECK(sw_alog_cursor_next(c, &rec, err, sizeof(err)) == 0);
	sw_alog_cursor_close(c);
	sw_alog_close(l);
	t_rmrf(dir);
	free(dir);
}

int main(void)
{
	test_empty_segment();
	test_follow();
	test_partial_tail();
	test_broken();
	printf("alog_cursor: ok\n");
	return 0;
}
