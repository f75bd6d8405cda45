/*
 * Unit tests of the dedupe window (services/audit/dedupe.c):
 *
 *   window    fresh ids are new, repeats inside the window duplicates
 *   never     an id added once is never "new" again, whatever was dropped
 *             since (the property exactly-once rests on): checked over a
 *             long random run with re-sent old ids and clock skew
 *   nonv7     ids that are no UUIDv7 go to the index once one was dropped
 *   raw       raw records by place: offsets at or below what was dropped
 *             are asked about, later ones and other partitions are new
 *   ranges    more separate seconds than AUDIT_RANGES: merged, still safe
 *   bounded   a million ids through a window of 1000 hold 1000
 */
#include <sodium.h>

#include "audit.h"
#include "sw_test.h"

/* A UUIDv7 made at ms. */
static void v7(uint64_t ms, uint8_t id[16])
{
	int i;

	randombytes_buf(id, 16);
	for (i = 0; i < 6; i++)
		id[i] = (uint8_t)(ms >> (8 * (5 - i)));
	id[6] = (uint8_t)(0x70 | (id[6] & 0x0f));
	id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

static int add(struct audit_dedupe *d, const uint8_t id[16])
{
	int r = audit_dedupe_add(d, id, NULL, 0, 0);

	SW_CHECK(r >= 0);
	if (audit_dedupe_full(d))
		SW_CHECK(audit_dedupe_rotate(d) == 0);
	return r;
}

static void test_window(void)
{
	struct audit_dedupe d;
	uint8_t ids[600][16];
	int i;

	SW_CHECK(audit_dedupe_init(&d, 1000) == 0);
	for (i = 0; i < 600; i++) {
		v7(1700000000000ULL + (uint64_t)i, ids[i]);
		SW_CHECK(add(&d, ids[i]) == AUDIT_DD_NEW);
	}
	/* the first generation (500) rotated to previous: all still here */
	for (i = 0; i < 600; i++)
		SW_CHECK(add(&d, ids[i]) == AUDIT_DD_DUP);
	SW_CHECK(audit_dedupe_len(&d) == 600);
	audit_dedupe_free(&d);
}

static void test_never(void)
{
	enum { N = 200000 };
	uint8_t(*ids)[16] = malloc((size_t)N * 16);
	struct audit_dedupe d;
	uint64_t seed = 12345, ms = 1700000000000ULL;
	size_t n = 0, asked = 0, news = 0, dups = 0, i;

	SW_CHECK(ids != NULL);
	SW_CHECK(audit_dedupe_init(&d, 2000) == 0);
	for (i = 0; i < 3 * (size_t)N; i++) {
		uint64_t x;
		int r;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		x = seed >> 33;
		if (n < N && (x % 3 != 0 || n < 10)) {
			/* a new event, made about now (some from a skewed clock) */
			ms += x % 7;
			v7(x % 97 == 0 ? ms - 3600000 + x % 1000 : ms, ids[n]);
			r = add(&d, ids[n]);
			SW_CHECK(r == AUDIT_DD_NEW || r == AUDIT_DD_ASK);
			n++;
			continue;
		}
		/* an old one again: a redelivery, a replay */
		r = add(&d, ids[x % n]);
		SW_CHECKF(r != AUDIT_DD_NEW, "id %llu of %zu said new again",
			  (unsigned long long)(x % n), n);
		if (r == AUDIT_DD_ASK)
			asked++;
		else
			dups++;
	}
	/* events made later than anything dropped are new without asking */
	for (i = 0; i < 1000; i++) {
		uint8_t id[16];

		v7(ms + 10000000 + i, id);
		if (add(&d, id) == AUDIT_DD_NEW)
			news++;
	}
	fprintf(stderr, "never: %zu ids, %zu repeats asked about, %zu in the window, %zu of 1000 "
			"later ids new at once, %zu in memory\n",
		n, asked, dups, news, audit_dedupe_len(&d));
	SW_CHECK(asked > 0 && dups > 0 && news > 900);
	SW_CHECK(audit_dedupe_len(&d) <= 2000);
	audit_dedupe_free(&d);
	free(ids);
}

static void test_nonv7(void)
{
	struct audit_dedupe d;
	uint8_t id[16], first[16];
	int i;

	SW_CHECK(audit_dedupe_init(&d, 1000) == 0);
	randombytes_buf(first, 16);
	first[6] = 0x40; /* a v4 */
	SW_CHECK(add(&d, first) == AUDIT_DD_NEW);
	randombytes_buf(id, 16);
	id[6] = 0x40;
	SW_CHECK(add(&d, id) == AUDIT_DD_NEW); /* nothing dropped yet */
	for (i = 0; i < 1100; i++) {
		v7(1700000000000ULL, id);
		add(&d, id);
	}
	SW_CHECK(add(&d, first) == AUDIT_DD_ASK);
	randombytes_buf(id, 16);
	id[6] = 0x40;
	SW_CHECK(add(&d, id) == AUDIT_DD_ASK);
	audit_dedupe_free(&d);
}

static void test_raw(void)
{
	struct audit_dedupe d;
	uint8_t id[16];
	int64_t off;
	int r;

	SW_CHECK(audit_dedupe_init(&d, 1000) == 0);
	for (off = 0; off < 1100; off++) {
		audit_raw_id("sagewai.deadletter", 18, 2, off, id);
		r = audit_dedupe_add(&d, id, "sagewai.deadletter", 2, off);
		SW_CHECK(r == AUDIT_DD_NEW);
		if (audit_dedupe_full(&d))
			SW_CHECK(audit_dedupe_rotate(&d) == 0);
	}
	for (off = 0; off < 1100; off++) {
		/* fresh copies of the first 1100 places: dropped ones are asked
		 * about, the ones in the window are duplicates */
		audit_raw_id("sagewai.deadletter", 18, 2, off, id);
		r = audit_dedupe_add(&d, id, "sagewai.deadletter", 2, off);
		SW_CHECKF(r != AUDIT_DD_NEW, "raw offset %lld said new again", (long long)off);
	}
	audit_raw_id("sagewai.deadletter", 18, 2, 5000, id);
	SW_CHECK(audit_dedupe_add(&d, id, "sagewai.deadletter", 2, 5000) == AUDIT_DD_NEW);
	audit_raw_id("sagewai.deadletter", 18, 3, 0, id);
	SW_CHECK(audit_dedupe_add(&d, id, "sagewai.deadletter", 3, 0) == AUDIT_DD_NEW);
	audit_dedupe_free(&d);
}

static void test_ranges(void)
{
	enum { N = 3 * AUDIT_RANGES };
	uint8_t(*ids)[16] = malloc((size_t)N * 16), id[16];
	struct audit_dedupe d;
	int i;

	SW_CHECK(audit_dedupe_init(&d, 1000) == 0);
	/* every id alone in its second, seconds two apart: no range joins */
	for (i = 0; i < N; i++) {
		v7(1600000000000ULL + (uint64_t)i * 2000, ids[i]);
		add(&d, ids[i]);
	}
	SW_CHECK(d.nranges <= AUDIT_RANGES);
	for (i = 0; i < N; i++)
		SW_CHECK(add(&d, ids[i]) != AUDIT_DD_NEW);
	v7(1600000000000ULL + (uint64_t)N * 2000 + 10000000, id);
	SW_CHECK(add(&d, id) == AUDIT_DD_NEW);
	audit_dedupe_free(&d);
	free(ids);
}

static void test_bounded(void)
{
	struct audit_dedupe d;
	uint8_t id[16];
	size_t most = 0;
	int i;

	SW_CHECK(audit_dedupe_init(&d, 1000) == 0);
	for (i = 0; i < 1000000; i++) {
		v7(1700000000000ULL + (uint64_t)i / 100, id);
		add(&d, id);
		if (audit_dedupe_len(&d) > most)
			most = audit_dedupe_len(&d);
	}
	SW_CHECKF(most <= 1000, "%zu ids held", most);
	SW_CHECK(d.dropped >= 998000);
	audit_dedupe_free(&d);
}

int main(void)
{
	SW_CHECK(sodium_init() >= 0);
	test_window();
	test_never();
	test_nonv7();
	test_raw();
	test_ranges();
	test_bounded();
	fprintf(stderr, "audit dedupe: ok\n");
	return 0;
}
