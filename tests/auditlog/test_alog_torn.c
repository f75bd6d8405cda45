/*
 * sw_alog_open after a crash: a torn tail is cut back to the last whole
 * record and appends carry on with the chain intact; a torn new segment is
 * removed; damage that good records follow is refused, never cut.
 */
#include "alog_util.h"

#define N 100

static struct t_loc locs[N + 2];

static char *build(uint64_t n)
{
	char *dir = t_mkdir("torn"), err[256];
	struct sw_alog *l = sw_alog_open(dir, 16384, NULL, err, sizeof(err));

	SW_CHECKF(l != NULL, "open: %s", err);
	t_fill(l, n, 10, locs);
	sw_alog_close(l);
	return dir;
}

static void done(char *dir)
{
	t_rmrf(dir);
	free(dir);
}

/* Open expecting `repaired` bytes cut and `next` as the next seq, append
 * the records up to N again (they come out byte for byte the same), and
 * check the log verifies with the original chain head. */
static void reopen_and_finish(const char *dir, size_t repaired, uint64_t next,
			      const uint8_t head[32])
{
	struct sw_alog_verify_result r;
	char err[256];
	size_t rep = 12345;
	struct sw_alog *l = sw_alog_open(dir, 16384, &rep, err, sizeof(err));

	SW_CHECKF(l != NULL, "open: %s", err);
	SW_CHECKF(rep == repaired, "repaired %zu, expected %zu", rep, repaired);
	SW_CHECKF(sw_alog_next_seq(l) == next, "next seq %" PRIu64 ", expected %" PRIu64,
		  sw_alog_next_seq(l), next);
	t_fill(l, N + 1 - next, 0, NULL);
	sw_alog_close(l);
	r = t_verify(dir, 0);
	SW_CHECKF(r.ok && r.records == N, "verify after repair: %s", r.reason);
	SW_CHECK(memcmp(r.last_hash, head, 32) == 0);
}

static void save(const char *dir, uint64_t seg, const char *to)
{
	char path[512];

	t_seg_path(path, sizeof(path), dir, seg);
	t_copy(path, to);
}

static void restore(const char *dir, uint64_t seg, const char *from)
{
	char path[512];

	t_seg_path(path, sizeof(path), dir, seg);
	t_copy(from, path);
}

static int count_cb(const struct sw_alog_rec *r, void *opaque)
{
	(void)r;
	(*(uint64_t *)opaque)++;
	return 0;
}

/* Cut the file at every byte inside the last record. */
static void test_every_cut(void)
{
	char *dir = build(N), keep[512], err[256];
	struct t_loc *x = &locs[N];
	struct sw_alog_verify_result r = t_verify(dir, 0);
	uint8_t head[32];
	uint64_t cut;

	SW_CHECK(r.ok);
	memcpy(head, r.last_hash, 32);
	SW_CHECK(locs[N - 1].segment == x->segment); /* not the first in its segment */
	snprintf(keep, sizeof(keep), "%s.keep", dir);
	save(dir, x->segment, keep);
	for (cut = x->off; cut < x->off + x->size; cut++) {
		uint64_t n = 0;

		restore(dir, x->segment, keep);
		t_truncate(dir, x->segment, (off_t)cut);
		/* a reader sees the whole records before the cut, quietly */
		SW_CHECKF(sw_alog_scan(dir, 1, count_cb, &n, err, sizeof(err)) == 0, "%s", err);
		SW_CHECK(n == N - 1);
		reopen_and_finish(dir, cut - x->off, N, head);
		SW_CHECK((uint64_t)t_size(dir, x->segment) == x->off + x->size);
	}
	unlink(keep);
	done(dir);
}

/* The last record's bytes are all there but one is wrong; or zeros follow
 * it (a crash after the size grew, before the data landed). */
static void test_bad_tail(void)
{
	char *dir = build(N), path[512];
	struct t_loc *x = &locs[N];
	uint8_t head[32], zeros[4096] = {0};
	int fd;

	memcpy(head, t_verify(dir, 0).last_hash, 32);
	t_flip(dir, x->segment, x->off + x->size - 40);
	reopen_and_finish(dir, x->size, N, head);

	t_seg_path(path, sizeof(path), dir, x->segment);
	fd = open(path, O_WRONLY | O_APPEND);
	SW_CHECK(fd >= 0 && write(fd, zeros, sizeof(zeros)) == (ssize_t)sizeof(zeros));
	close(fd);
	reopen_and_finish(dir, sizeof(zeros), N + 1, head);
	done(dir);

	/* The only record of the only segment, cut inside its header. */
	dir = build(1);
	memcpy(head, t_verify(dir, 0).last_hash, 32);
	t_truncate(dir, 1, T_HDR + 10);
	{
		char err[256];
		size_t rep = 0;
		struct sw_alog *l = sw_alog_open(dir, 16384, &rep, err, sizeof(err));

		SW_CHECKF(l != NULL, "%s", err);
		SW_CHECK(rep == 10 && sw_alog_next_seq(l) == 1);
		t_fill(l, 1, 0, NULL);
		sw_alog_close(l);
	}
	SW_CHECK(memcmp(t_verify(dir, 0).last_hash, head, 32) == 0);
	done(dir);
}

/* A crash right after a roll: the new segment file exists but its header
 * is missing, partial or zeros. */
static void test_torn_segment(void)
{
	size_t sizes[] = {0, 30, 64, 200}, i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *dir = build(N), path[512];
		uint8_t head[32], hdr[200] = {0};
		struct sw_alog_verify_result r = t_verify(dir, 0);
		int fd;

		memcpy(head, r.last_hash, 32);
		if (sizes[i] == 30) /* the start of a real header */
			memcpy(hdr, "SWALOG01\x65", 9);
		t_seg_path(path, sizeof(path), dir, N + 1);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		SW_CHECK(fd >= 0);
		SW_CHECK(write(fd, hdr, sizes[i]) == (ssize_t)sizes[i]);
		close(fd);
		r = t_verify(dir, 0);
		SW_CHECK(!r.ok && r.bad_seq == N + 1 && r.segment == N + 1);
		/* The torn segment goes; the one before is scanned and kept. */
		reopen_and_finish(dir, sizes[i], N + 1, head);
		SW_CHECK(access(path, F_OK) != 0);
		done(dir);
	}

	/* A torn first segment of a log: start over. */
	{
		char *dir = t_mkdir("torn1"), path[512], err[256];
		struct sw_alog *l;
		size_t rep = 0;
		int fd;

		t_seg_path(path, sizeof(path), dir, 1);
		fd = open(path, O_WRONLY | O_CREAT, 0644);
		SW_CHECK(fd >= 0 && write(fd, "SWAL", 4) == 4);
		close(fd);
		l = sw_alog_open(dir, 16384, &rep, err, sizeof(err));
		SW_CHECKF(l != NULL, "%s", err);
		SW_CHECK(rep == 4 && sw_alog_next_seq(l) == 1);
		t_fill(l, 5, 0, NULL);
		sw_alog_close(l);
		SW_CHECK(t_verify(dir, 0).ok && t_verify(dir, 0).records == 5);
		done(dir);
	}
	/* A header that does not check but good records follow: refused. */
	{
		char *dir = build(N), err[256];
		uint64_t seg = locs[N].segment;

		t_flip(dir, seg, 2);
		SW_CHECK(sw_alog_open(dir, 16384, NULL, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "bad magic") != NULL, "%s", err);
		done(dir);
	}
}

/* Damage in the last segment with good records after it is refused. */
static void test_refuse_middle(void)
{
	struct {
		uint64_t at; /* offset inside the record */
		const char *what;
	} cases[] = {
		{60, "payload"},
		{0, "length low byte"},
		{3, "length high byte"},
		{4, "seq"},
		{20, "prev"},
		{0, "hash"}, /* at = size - 1 */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *dir = build(N), err[256], want[64];
		uint64_t s = N - 3, at = cases[i].at;
		struct sw_alog *l;

		if (strcmp(cases[i].what, "hash") == 0)
			at = locs[s].size - 1;
		SW_CHECK(locs[s].segment == locs[N].segment);
		t_flip(dir, locs[s].segment, locs[s].off + at);
		err[0] = '\0';
		l = sw_alog_open(dir, 16384, NULL, err, sizeof(err));
		SW_CHECKF(l == NULL, "open accepted damage to the %s of seq %" PRIu64,
			  cases[i].what, s);
		snprintf(want, sizeof(want), "seq %" PRIu64 " at offset %" PRIu64, s, locs[s].off);
		SW_CHECKF(strstr(err, want) != NULL, "%s: \"%s\" lacks \"%s\"", cases[i].what, err,
			  want);
		/* and the file was left alone */
		SW_CHECK((uint64_t)t_size(dir, locs[N].segment) == locs[N].off + locs[N].size);
		done(dir);
	}
}

int main(void)
{
	test_every_cut();
	test_bad_tail();
	test_torn_segment();
	test_refuse_middle();
	return 0;
}
