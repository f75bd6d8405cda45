/*
 * sw_alog round trip: append, sync, reopen and scan across many segments;
 * read_at; verify of a clean log; limits (record size, one writer).
 */
#include <dirent.h>

#include "alog_util.h"

#define N1 500
#define N2 100
#define N (N1 + N2)

struct scan_state {
	uint64_t next;	    /* seq expected next */
	uint64_t count;
	uint64_t stop_at;   /* return 7 at this seq (0: never) */
	struct t_loc *locs; /* check locations when not NULL */
};

static void check_rec(const struct sw_alog_rec *r)
{
	uint8_t pl[512];
	size_t len = t_payload(r->seq, pl, sizeof(pl));
	const char *topic = t_topic(r->seq);

	SW_CHECK(r->kind == SW_ALOG_EVENT);
	SW_CHECKF(r->topic_len == strlen(topic) && memcmp(r->topic, topic, r->topic_len) == 0,
		  "seq %" PRIu64 " topic", r->seq);
	SW_CHECK(r->partition == (int32_t)(r->seq % 7));
	SW_CHECK(r->offset == (int64_t)r->seq * 10);
	SW_CHECK(r->time_us == (int64_t)r->seq * 1000);
	SW_CHECKF(r->payload_len == len && memcmp(r->payload, pl, len) == 0,
		  "seq %" PRIu64 " payload", r->seq);
}

static int scan_cb(const struct sw_alog_rec *r, void *opaque)
{
	struct scan_state *st = opaque;

	SW_CHECKF(r->seq == st->next, "scan gave seq %" PRIu64 ", expected %" PRIu64, r->seq,
		  st->next);
	check_rec(r);
	if (st->locs != NULL) {
		SW_CHECK(r->segment == st->locs[r->seq].segment);
		SW_CHECK(r->file_off == st->locs[r->seq].off);
	}
	st->next++;
	st->count++;
	return r->seq == st->stop_at ? 7 : 0;
}

static size_t count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	SW_CHECK(d != NULL);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, "seg-", 4) == 0;
	closedir(d);
	return n;
}

static void test_round_trip(void)
{
	static struct t_loc locs[N + 1];
	struct sw_alog_verify_result vr;
	struct scan_state st;
	struct sw_alog_rec rec;
	uint8_t h1[32], h2[32];
	char *dir = t_mkdir("rt"), err[256];
	struct sw_alog *l;
	size_t repaired = 99;
	void *buf;
	int threads[] = {1, 2, 4, 0}, i;

	l = sw_alog_open(dir, 4096, &repaired, err, sizeof(err));
	SW_CHECKF(l != NULL, "open: %s", err);
	SW_CHECK(repaired == 0);
	SW_CHECK(sw_alog_next_seq(l) == 1);
	t_fill(l, N1, 37, locs);
	SW_CHECK(sw_alog_next_seq(l) == N1 + 1);
	sw_alog_last_hash(l, h1);
	sw_alog_close(l);

	/* A second writer is refused while one is open. */
	l = sw_alog_open(dir, 4096, &repaired, err, sizeof(err));
	SW_CHECKF(l != NULL, "reopen: %s", err);
	SW_CHECK(repaired == 0);
	SW_CHECK(sw_alog_next_seq(l) == N1 + 1);
	sw_alog_last_hash(l, h2);
	SW_CHECK(memcmp(h1, h2, 32) == 0);
	SW_CHECK(sw_alog_open(dir, 4096, NULL, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "another writer") != NULL, "%s", err);
	t_fill(l, N2, 0, locs);
	sw_alog_last_hash(l, h1);
	sw_alog_close(l);
	SW_CHECKF(count_segments(dir) > 10, "%zu segments", count_segments(dir));

	/* Every segment respects segment_max (records are far smaller). */
	for (i = 1; i <= N; i++)
		SW_CHECK(locs[i].off + locs[i].size <= 4096);

	memset(&st, 0, sizeof(st));
	st.next = 1;
	st.locs = locs;
	SW_CHECKF(sw_alog_scan(dir, 1, scan_cb, &st, err, sizeof(err)) == 0, "scan: %s", err);
	SW_CHECK(st.count == N);

	memset(&st, 0, sizeof(st));
	st.next = 250;
	st.locs = locs;
	SW_CHECKF(sw_alog_scan(dir, 250, scan_cb, &st, err, sizeof(err)) == 0, "scan: %s", err);
	SW_CHECK(st.count == N - 249);

	memset(&st, 0, sizeof(st));
	st.next = 1;
	st.stop_at = 10;
	SW_CHECK(sw_alog_scan(dir, 0, scan_cb, &st, err, sizeof(err)) == 7);
	SW_CHECK(st.count == 10);

	memset(&st, 0, sizeof(st));
	SW_CHECK(sw_alog_scan(dir, N + 1, scan_cb, &st, err, sizeof(err)) == 0);
	SW_CHECK(st.count == 0);

	SW_CHECKF(sw_alog_read_at(dir, locs[123].segment, locs[123].off, &rec, &buf, err,
				  sizeof(err)) == 0,
		  "read_at: %s", err);
	SW_CHECK(rec.seq == 123 && rec.segment == locs[123].segment &&
		 rec.file_off == locs[123].off);
	check_rec(&rec);
	free(buf);
	SW_CHECK(sw_alog_read_at(dir, locs[123].segment, locs[123].off + 1, &rec, &buf, err,
				 sizeof(err)) == -1);
	SW_CHECK(buf == NULL);
	SW_CHECK(sw_alog_read_at(dir, locs[123].segment, 3, &rec, &buf, err, sizeof(err)) == -1);
	SW_CHECK(sw_alog_read_at(dir, 999999, 64, &rec, &buf, err, sizeof(err)) == -1);

	for (i = 0; i < 4; i++) {
		vr = t_verify(dir, threads[i]);
		SW_CHECKF(vr.ok, "verify: %s at seq %" PRIu64, vr.reason, vr.bad_seq);
		SW_CHECK(vr.records == N);
		SW_CHECK(vr.bad_seq == 0);
		SW_CHECK(vr.checkpoints == 0);
		SW_CHECK(memcmp(vr.last_hash, h1, 32) == 0);
	}
	t_rmrf(dir);
	free(dir);
}

static void test_limits(void)
{
	char *dir = t_mkdir("lim"), err[256];
	struct sw_alog_verify_result vr;
	struct sw_alog_rec rec;
	uint64_t seq, seg, off;
	size_t max_pl = SW_ALOG_MAX_RECORD - 23;
	uint8_t *big = calloc(1, max_pl + 1), cp[SW_ALOG_CHECKPOINT_LEN] = {0};
	char topic[70000];
	struct sw_alog *l;
	void *buf;

	SW_CHECK(big != NULL);
	l = sw_alog_open(dir, 1 << 20, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "open: %s", err);
	t_fill(l, 3, 0, NULL);

	/* One byte over the maximum body is refused and changes nothing. */
	err[0] = '\0';
	SW_CHECK(sw_alog_append(l, SW_ALOG_RAW, "", 0, 0, 0, big, max_pl + 1, &seq, NULL, NULL,
				err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "maximum") != NULL, "%s", err);
	SW_CHECK(sw_alog_append(l, SW_ALOG_RAW, "t", 0, 0, 0, big, max_pl, &seq, NULL, NULL, err,
				sizeof(err)) == -1);
	SW_CHECK(sw_alog_next_seq(l) == 4);
	/* Exactly the maximum goes in, larger than both buffer and segment. */
	big[0] = 1;
	big[max_pl - 1] = 2;
	SW_CHECKF(sw_alog_append(l, SW_ALOG_RAW, "", 1, 2, 3, big, max_pl, &seq, &seg, &off, err,
				 sizeof(err)) == 0,
		  "append max: %s", err);
	SW_CHECK(seq == 4);
	memset(topic, 'a', sizeof(topic) - 1);
	topic[sizeof(topic) - 1] = '\0';
	SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, topic, 0, 0, 0, "x", 1, NULL, NULL, NULL, err,
				sizeof(err)) == -1);
	SW_CHECK(sw_alog_append(l, 9, "t", 0, 0, 0, "x", 1, NULL, NULL, NULL, err,
				sizeof(err)) == -1);
	SW_CHECK(sw_alog_append(l, SW_ALOG_CHECKPOINT, "t", 0, 0, 0, cp, sizeof(cp) - 1, NULL,
				NULL, NULL, err, sizeof(err)) == -1);
	/* Empty payload, no topic. */
	SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, NULL, -1, -2, -3, NULL, 0, NULL, NULL, NULL,
				err, sizeof(err)) == 0);
	SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == 0);
	sw_alog_close(l);

	SW_CHECKF(sw_alog_read_at(dir, seg, off, &rec, &buf, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(rec.kind == SW_ALOG_RAW && rec.payload_len == max_pl && rec.partition == 1 &&
		 rec.offset == 2 && rec.time_us == 3);
	SW_CHECK(((const uint8_t *)rec.payload)[0] == 1 &&
		 ((const uint8_t *)rec.payload)[max_pl - 1] == 2);
	free(buf);
	vr = t_verify(dir, 0);
	SW_CHECKF(vr.ok && vr.records == 5, "%s", vr.reason);
	free(big);
	t_rmrf(dir);
	free(dir);
}

static int count_cb(const struct sw_alog_rec *r, void *opaque)
{
	(void)r;
	(*(int *)opaque)++;
	return 0;
}

static void test_empty(void)
{
	char *dir = t_mkdir("empty"), err[256], sub[512];
	struct sw_alog_verify_result vr;
	struct sw_alog *l;
	int n = 0;

	/* open creates the directory and a first segment; a log of no records
	 * reopens, scans and verifies. */
	snprintf(sub, sizeof(sub), "%s/log", dir);
	l = sw_alog_open(sub, 0, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "open: %s", err);
	sw_alog_close(l);
	l = sw_alog_open(sub, 0, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "reopen: %s", err);
	SW_CHECK(sw_alog_next_seq(l) == 1);
	sw_alog_close(l);
	SW_CHECK(sw_alog_scan(sub, 1, count_cb, &n, err, sizeof(err)) == 0 && n == 0);
	vr = t_verify(sub, 0);
	SW_CHECK(vr.ok && vr.records == 0);
	snprintf(sub, sizeof(sub), "%s/none", dir);
	SW_CHECK(sw_alog_verify(sub, 0, &vr, err, sizeof(err)) == -1);
	SW_CHECK(sw_alog_scan(sub, 1, count_cb, &n, err, sizeof(err)) == -1);
	t_rmrf(dir);
	free(dir);
}

int main(void)
{
	test_round_trip();
	test_limits();
	test_empty();
	return 0;
}
