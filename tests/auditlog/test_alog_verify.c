/*
 * sw_alog_verify: every kind of damage is reported at the record that holds
 * it (seq, segment, byte offset) with a reason; checkpoints; one thread and
 * many agree.
 */
#include "alog_util.h"

#define N 300
#define BIG 6000

static struct t_loc locs[BIG + 1];

/* A fresh log of n records; the bytes are the same every time. */
static char *build(uint64_t n, size_t segment_max)
{
	char *dir = t_mkdir("vfy"), err[256];
	struct sw_alog *l = sw_alog_open(dir, segment_max, NULL, err, sizeof(err));

	SW_CHECKF(l != NULL, "open: %s", err);
	t_fill(l, n, 50, locs);
	sw_alog_close(l);
	return dir;
}

static void done(char *dir)
{
	t_rmrf(dir);
	free(dir);
}

/* Verify with 1 and 3 threads, expect the same failure at (seq, segment,
 * off) with reason containing `why`. */
static void expect_bad(const char *dir, uint64_t seq, uint64_t seg, uint64_t off,
		       const char *why)
{
	int threads[] = {1, 3}, i;

	for (i = 0; i < 2; i++) {
		struct sw_alog_verify_result r = t_verify(dir, threads[i]);

		SW_CHECKF(!r.ok, "damage at seq %" PRIu64 " not found", seq);
		SW_CHECKF(r.bad_seq == seq && r.segment == seg && r.file_off == off,
			  "reported seq %" PRIu64 " seg %" PRIu64 " off %" PRIu64 " (%s); "
			  "expected seq %" PRIu64 " seg %" PRIu64 " off %" PRIu64,
			  r.bad_seq, r.segment, r.file_off, r.reason, seq, seg, off);
		SW_CHECKF(strstr(r.reason, why) != NULL, "reason \"%s\", expected \"%s\"",
			  r.reason, why);
		SW_CHECKF(r.records == (seq > 0 ? seq - 1 : 0), "records %" PRIu64, r.records);
	}
}

static void test_clean(void)
{
	char *dir = build(N, 8192);
	struct sw_alog_verify_result r = t_verify(dir, 0);

	SW_CHECKF(r.ok && r.records == N && r.bad_seq == 0, "%s", r.reason);
	done(dir);
}

static int count_cb(const struct sw_alog_rec *r, void *opaque)
{
	(void)r;
	(*(uint64_t *)opaque)++;
	return 0;
}

static void test_payload(void)
{
	char *dir = build(N, 8192), err[256];
	struct t_loc *x = &locs[150];
	uint64_t n = 0;

	t_flip(dir, x->segment, x->off + x->size - 32 - 3); /* last payload byte */
	expect_bad(dir, 150, x->segment, x->off, "hash mismatch");
	/* scan delivers what precedes the damage, then fails naming it */
	SW_CHECK(sw_alog_scan(dir, 1, count_cb, &n, err, sizeof(err)) == -1);
	SW_CHECKF(n == 149 && strstr(err, "seq 150") && strstr(err, "hash mismatch"), "%s", err);
	done(dir);
}

static void test_prev(void)
{
	char *dir = build(N, 8192);
	uint64_t s;

	t_flip(dir, locs[151].segment, locs[151].off + 12 + 5);
	expect_bad(dir, 151, locs[151].segment, locs[151].off, "prev hash does not chain");
	done(dir);

	/* The first record of a segment chains to its header. */
	dir = build(N, 8192);
	for (s = 2; locs[s].segment == locs[s - 1].segment; s++)
		;
	t_flip(dir, locs[s].segment, locs[s].off + 12);
	expect_bad(dir, s, locs[s].segment, locs[s].off, "prev hash does not chain");
	done(dir);
}

static void test_stored_hash_and_seq(void)
{
	char *dir = build(N, 8192);

	t_flip(dir, locs[77].segment, locs[77].off + locs[77].size - 1);
	expect_bad(dir, 77, locs[77].segment, locs[77].off, "hash mismatch");
	done(dir);

	dir = build(N, 8192);
	t_flip(dir, locs[78].segment, locs[78].off + 4);
	expect_bad(dir, 78, locs[78].segment, locs[78].off,
		   "sequence out of order: expected 78, found 20"); /* 78 ^ 0x5a */
	done(dir);
}

static void test_length(void)
{
	char *dir = build(N, 8192);
	uint64_t s;

	/* High byte: far above the maximum. */
	t_flip(dir, locs[152].segment, locs[152].off + 3);
	expect_bad(dir, 152, locs[152].segment, locs[152].off, "exceeds the maximum");
	done(dir);

	/* Low byte, on a record that has a successor in its segment. */
	dir = build(N, 8192);
	for (s = 153; locs[s + 1].segment != locs[s].segment; s++)
		;
	t_flip(dir, locs[s].segment, locs[s].off);
	expect_bad(dir, s, locs[s].segment, locs[s].off, "length");
	done(dir);

	/* The last record of the log cut short (a crash, not yet repaired). */
	dir = build(N, 8192);
	t_truncate(dir, locs[N].segment, (off_t)(locs[N].off + locs[N].size - 1));
	expect_bad(dir, N, locs[N].segment, locs[N].off, "past the end of the file");
	t_truncate(dir, locs[N].segment, (off_t)(locs[N].off + 10));
	expect_bad(dir, N, locs[N].segment, locs[N].off, "truncated record");
	done(dir);
}

static void test_header(void)
{
	struct {
		uint64_t at;
		const char *why;
	} cases[] = {
		{0, "bad magic"},
		{8, "does not match the file name"},
		{20, "prev hash does not chain to the previous segment"},
		{60, "reserved"},
	};
	size_t i;
	uint64_t s;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *dir = build(N, 8192);

		for (s = 2; locs[s].segment == locs[1].segment; s++)
			;
		s = locs[s + 1].segment; /* the third segment */
		t_flip(dir, s, cases[i].at);
		expect_bad(dir, s, s, 0, cases[i].why);
		done(dir);
	}
	{
		char *dir = build(N, 8192);

		t_flip(dir, 1, 30);
		expect_bad(dir, 1, 1, 0, "prev hash does not chain to the start of the log");
		done(dir);
	}
	{
		char *dir = build(N, 8192);

		s = locs[N].segment;
		t_truncate(dir, s, 40);
		expect_bad(dir, s, s, 0, "segment header truncated");
		done(dir);
	}
}

static void test_gap(void)
{
	char *dir = build(N, 8192), path[512], why[64];
	uint64_t a, b;

	for (a = 1; locs[a].segment == locs[1].segment; a++)
		;
	a = locs[a].segment; /* second segment */
	for (b = a; locs[b].segment == a; b++)
		;
	/* b: first seq of the third segment */
	t_seg_path(path, sizeof(path), dir, a);
	SW_CHECK(unlink(path) == 0);
	snprintf(why, sizeof(why), "sequence gap: expected %" PRIu64 ", found %" PRIu64, a, b);
	{
		struct sw_alog_verify_result r = t_verify(dir, 0);

		SW_CHECKF(!r.ok && r.bad_seq == b && r.segment == b && r.file_off == 0 &&
				  strstr(r.reason, why) != NULL && r.records == a - 1,
			  "gap: seq %" PRIu64 " seg %" PRIu64 " %s", r.bad_seq, r.segment,
			  r.reason);
	}
	done(dir);

	/* The first segment gone: the log must start at 1. */
	dir = build(N, 8192);
	t_seg_path(path, sizeof(path), dir, 1);
	SW_CHECK(unlink(path) == 0);
	{
		struct sw_alog_verify_result r = t_verify(dir, 0);

		SW_CHECKF(!r.ok && strstr(r.reason, "sequence gap: expected 1") && r.bad_seq == a,
			  "%s", r.reason);
	}
	done(dir);
}

/* Every single-byte flip anywhere in a large log is found, at the record
 * (or segment header) holding the byte, whatever the thread count. */
static void test_random_flips(void)
{
	char *dir = build(BIG, 512 * 1024);
	uint64_t seed = 12345, segs[64];
	size_t nseg = 0, i;
	uint64_t s;

	for (s = 1; s <= BIG; s++) {
		if (nseg == 0 || segs[nseg - 1] != locs[s].segment) {
			SW_CHECK(nseg < 64);
			segs[nseg++] = locs[s].segment;
		}
	}
	SW_CHECKF(nseg >= 2 && BIG / nseg > 1000, "%zu segments", nseg);
	for (i = 0; i < 300; i++) {
		uint64_t seg, off, size, lo = 1, hi = BIG, want_seq, want_off;
		int threads = 1 + (int)(i % 4);
		struct sw_alog_verify_result r;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		seg = segs[(seed >> 33) % nseg];
		size = (uint64_t)t_size(dir, seg);
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		off = (seed >> 20) % size;
		if (i < 20)
			off = i; /* some header bytes for sure */
		if (off < T_HDR) {
			want_seq = seg;
			want_off = 0;
		} else {
			while (lo < hi) { /* the record holding (seg, off) */
				uint64_t m = lo + (hi - lo + 1) / 2;

				if (locs[m].segment < seg ||
				    (locs[m].segment == seg && locs[m].off <= off))
					lo = m;
				else
					hi = m - 1;
			}
			want_seq = lo;
			want_off = locs[lo].off;
			SW_CHECK(locs[lo].segment == seg && off < locs[lo].off + locs[lo].size);
		}
		t_flip(dir, seg, off);
		r = t_verify(dir, threads);
		SW_CHECKF(!r.ok && r.bad_seq == want_seq && r.segment == seg &&
				  r.file_off == want_off,
			  "flip at seg %" PRIu64 " off %" PRIu64
			  " (%d threads): reported seq %" PRIu64 " seg %" PRIu64 " off %" PRIu64
			  " (%s), expected seq %" PRIu64,
			  seg, off, threads, r.bad_seq, r.segment, r.file_off, r.reason, want_seq);
		t_flip(dir, seg, off); /* undo */
	}
	{
		struct sw_alog_verify_result r = t_verify(dir, 0);

		SW_CHECKF(r.ok && r.records == BIG, "%s", r.reason);
	}
	done(dir);
}

static void checkpoint(struct sw_alog *l, uint64_t cp_seq, const uint8_t hash[32], uint8_t key0,
		       uint64_t *seq)
{
	uint8_t pl[SW_ALOG_CHECKPOINT_LEN] = {0};
	char err[256];
	int i;

	for (i = 0; i < 8; i++)
		pl[i] = (uint8_t)(cp_seq >> (8 * i));
	memcpy(pl + 8, hash, 32);
	pl[40] = key0;
	SW_CHECKF(sw_alog_append(l, SW_ALOG_CHECKPOINT, "sagewai.audit.checkpoints", 0, 0, 0, pl,
				 sizeof(pl), seq, NULL, NULL, err, sizeof(err)) == 0,
		  "append checkpoint: %s", err);
	SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == 0);
}

static void hash_of(const char *dir, uint64_t seq, uint8_t out[32])
{
	struct sw_alog_rec rec;
	char err[256];
	void *buf;

	SW_CHECKF(sw_alog_read_at(dir, locs[seq].segment, locs[seq].off, &rec, &buf, err,
				  sizeof(err)) == 0,
		  "%s", err);
	memcpy(out, rec.hash, 32);
	free(buf);
}

struct hook {
	int calls;
	uint64_t last_cp;
};

static int hook(const struct sw_alog_rec *rec, uint64_t cp_seq, const uint8_t cp_hash[32],
		const uint8_t key_id[32], const uint8_t sig[64], void *opaque)
{
	struct hook *h = opaque;

	(void)cp_hash;
	(void)sig;
	SW_CHECK(rec->kind == SW_ALOG_CHECKPOINT && rec->payload_len == SW_ALOG_CHECKPOINT_LEN);
	h->calls++;
	h->last_cp = cp_seq;
	return key_id[0] == 0xee;
}

static void test_checkpoints(void)
{
	struct sw_alog_verify_result r;
	char *dir, err[256];
	struct sw_alog *l;
	uint8_t h[32], h5[32];
	uint64_t seq, seq2;
	struct hook hk = {0};

	/* Good: the last record, and one in an earlier segment. */
	dir = build(N, 8192);
	hash_of(dir, 5, h5);
	SW_CHECK(locs[5].segment != locs[N].segment);
	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "%s", err);
	sw_alog_last_hash(l, h);
	checkpoint(l, N, h, 1, &seq);
	checkpoint(l, 5, h5, 2, &seq2);
	t_fill(l, 10, 0, NULL);
	sw_alog_close(l);
	r = t_verify(dir, 0);
	SW_CHECKF(r.ok && r.checkpoints == 2 && r.records == N + 12, "%s", r.reason);
	SW_CHECK(sw_alog_verify_ex(dir, 2, hook, &hk, &r, err, sizeof(err)) == 0);
	SW_CHECK(r.ok && hk.calls == 2 && hk.last_cp == 5);
	done(dir);

	/* A checkpoint naming the wrong hash, in the same segment. */
	dir = build(N, 8192);
	l = sw_alog_open(dir, 1 << 20, NULL, err, sizeof(err)); /* no roll */
	SW_CHECK(l != NULL);
	hash_of(dir, N - 1, h);
	checkpoint(l, N, h, 1, &seq);
	t_fill(l, 3, 0, NULL);
	sw_alog_close(l);
	r = t_verify(dir, 0);
	/* checkpoints == 0: found by the in-segment check, not the deferred one */
	SW_CHECKF(!r.ok && r.bad_seq == seq && r.checkpoints == 0 &&
			  strstr(r.reason, "checkpoint hash does not match the chain at seq 300"),
		  "%s", r.reason);
	done(dir);

	/* ... in an earlier segment (resolved after the pass). */
	dir = build(N, 8192);
	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	hash_of(dir, 5, h5);
	checkpoint(l, 6, h5, 1, &seq);
	t_fill(l, 3, 0, NULL);
	sw_alog_close(l);
	r = t_verify(dir, 1);
	SW_CHECKF(!r.ok && r.bad_seq == seq && r.records == seq - 1 &&
			  strstr(r.reason, "checkpoint hash does not match the chain at seq 6"),
		  "%s (seq %" PRIu64 ")", r.reason, r.bad_seq);
	done(dir);

	/* Naming itself or a later record. */
	dir = build(N, 8192);
	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	checkpoint(l, N + 1, h, 1, &seq);
	sw_alog_close(l);
	r = t_verify(dir, 0);
	SW_CHECKF(!r.ok && r.bad_seq == N + 1 && strstr(r.reason, "not an earlier record"), "%s",
		  r.reason);
	done(dir);

	/* The signature hook says no. */
	dir = build(N, 8192);
	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	sw_alog_last_hash(l, h);
	checkpoint(l, N, h, 0xee, &seq);
	sw_alog_close(l);
	SW_CHECK(t_verify(dir, 0).ok);
	memset(&hk, 0, sizeof(hk));
	SW_CHECK(sw_alog_verify_ex(dir, 0, hook, &hk, &r, err, sizeof(err)) == 0);
	SW_CHECKF(!r.ok && r.bad_seq == seq && hk.calls == 1 &&
			  strstr(r.reason, "checkpoint signature rejected"),
		  "%s", r.reason);
	done(dir);
}

/* A hostile or mangled segment (random bytes written at random places,
 * random cuts, random garbage after) never crashes a reader, and a log that
 * open accepts (after cutting a tail) always verifies. */
static void test_hostile(void)
{
	uint64_t seed = 99;
	int i;

	for (i = 0; i < 400; i++) {
		char *dir = build(20, 1 << 20), path[512], err[256];
		uint64_t size = (uint64_t)t_size(dir, 1), n = 0, nflip, k;
		struct sw_alog_verify_result r1, r3;
		struct sw_alog_rec rec;
		struct sw_alog *l;
		void *buf;
		int fd;

#define RND() (seed = seed * 6364136223846793005ull + 1442695040888963407ull, seed >> 33)
		t_seg_path(path, sizeof(path), dir, 1);
		fd = open(path, O_RDWR);
		SW_CHECK(fd >= 0);
		nflip = RND() % 4;
		for (k = 0; k < nflip; k++) {
			uint8_t b[8];
			uint64_t at = T_HDR + RND() % (size - T_HDR), j, len = 1 + RND() % 8;

			for (j = 0; j < len; j++)
				b[j] = (uint8_t)RND();
			if (RND() % 2) { /* a plausible small length */
				b[0] = (uint8_t)RND();
				b[1] = (uint8_t)(RND() % 3);
				b[2] = b[3] = 0;
				len = len < 4 ? 4 : len;
			}
			SW_CHECK(pwrite(fd, b, len, (off_t)at) == (ssize_t)len);
		}
		if (RND() % 3 == 0)
			SW_CHECK(ftruncate(fd, (off_t)(T_HDR + RND() % (size - T_HDR))) == 0);
		if (RND() % 3 == 0) {
			uint8_t g[300];

			for (k = 0; k < sizeof(g); k++)
				g[k] = (uint8_t)(RND() % 4 == 0 ? RND() : 0);
			SW_CHECK(pwrite(fd, g, 1 + RND() % sizeof(g), (off_t)size) > 0);
		}
		close(fd);
		r1 = t_verify(dir, 1);
		r3 = t_verify(dir, 3);
		SW_CHECK(r1.ok == r3.ok && r1.bad_seq == r3.bad_seq && r1.file_off == r3.file_off);
		(void)sw_alog_scan(dir, 1 + RND() % 20, count_cb, &n, err, sizeof(err));
		k = RND() % (size + 100);
		if (sw_alog_read_at(dir, 1, k, &rec, &buf, err, sizeof(err)) == 0)
			free(buf);
		l = sw_alog_open(dir, 1 << 20, NULL, err, sizeof(err));
		if (l != NULL) {
			sw_alog_close(l);
			r1 = t_verify(dir, 2);
			SW_CHECKF(r1.ok, "open accepted a log that does not verify: %s",
				  r1.reason);
		}
		done(dir);
#undef RND
	}
}

int main(void)
{
	test_hostile();
	test_clean();
	test_payload();
	test_prev();
	test_stored_hash_and_seq();
	test_length();
	test_header();
	test_gap();
	test_checkpoints();
	test_random_flips();
	return 0;
}
