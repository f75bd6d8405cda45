/*
 * core_uuid: UUIDv7 layout (version, variant, timestamp), strict bytewise
 * ordering of consecutive ids from one and from several threads, and the
 * text form: roundtrip, either case accepted, malformed input rejected.
 * Derived ids: the same for the same (label, base), a UUIDv7 with base's
 * time, another for another label or base, and the value Python's hashlib
 * gives for a known base (an independent BLAKE2b).
 */
#include <pthread.h>
#include <string.h>

#include "sw_core.h"
#include "sw_test.h"

#define N_IDS 100000
#define N_THREADS 4
#define N_PER_THREAD 20000

static uint8_t thread_ids[N_THREADS][N_PER_THREAD][16];

static void *gen_thread(void *arg)
{
	uint8_t(*ids)[16] = arg;
	int i;

	for (i = 0; i < N_PER_THREAD; i++)
		sw_uuid_v7(ids[i]);
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static uint64_t id_ms(const uint8_t id[16])
{
	uint64_t ms = 0;
	int i;

	for (i = 0; i < 6; i++)
		ms = ms << 8 | id[i];
	return ms;
}

static void test_layout(void)
{
	uint8_t id[16];
	int64_t before, after;

	before = sw_now_us() / 1000;
	sw_uuid_v7(id);
	after = sw_now_us() / 1000;
	SW_CHECKF((id[6] >> 4) == 7, "version nibble %x", id[6] >> 4);
	SW_CHECKF((id[8] >> 6) == 2, "variant bits %x", id[8] >> 6);
	/* The id's ms may run ahead of the clock only if earlier ids in this
	 * process exhausted a counter; this is the first one, so it is exact. */
	SW_CHECKF((int64_t)id_ms(id) >= before && (int64_t)id_ms(id) <= after,
		  "ts %llu not in [%lld, %lld]", (unsigned long long)id_ms(id),
		  (long long)before, (long long)after);
}

static void test_ordering(void)
{
	static uint8_t ids[N_IDS][16];
	int i;

	for (i = 0; i < N_IDS; i++)
		sw_uuid_v7(ids[i]);
	for (i = 1; i < N_IDS; i++) {
		SW_CHECKF(memcmp(ids[i - 1], ids[i], 16) < 0, "id %d not above id %d", i, i - 1);
		SW_CHECK((ids[i][6] >> 4) == 7 && (ids[i][8] >> 6) == 2);
	}
}

/* Ids from several threads are unique, and each thread's own sequence is
 * strictly increasing. */
static void test_threads(void)
{
	static uint8_t all[N_THREADS * N_PER_THREAD][16];
	pthread_t th[N_THREADS];
	int t, i;

	for (t = 0; t < N_THREADS; t++)
		SW_CHECK(pthread_create(&th[t], NULL, gen_thread, thread_ids[t]) == 0);
	for (t = 0; t < N_THREADS; t++)
		SW_CHECK(pthread_join(th[t], NULL) == 0);
	for (t = 0; t < N_THREADS; t++) {
		for (i = 1; i < N_PER_THREAD; i++)
			SW_CHECK(memcmp(thread_ids[t][i - 1], thread_ids[t][i], 16) < 0);
		memcpy(all[t * N_PER_THREAD], thread_ids[t], sizeof(thread_ids[t]));
	}
	qsort(all, N_THREADS * N_PER_THREAD, 16, cmp_id);
	for (i = 1; i < N_THREADS * N_PER_THREAD; i++)
		SW_CHECKF(memcmp(all[i - 1], all[i], 16) != 0, "duplicate id at %d", i);
}

static void test_text(void)
{
	static const uint8_t known[16] = { 0x01, 0x8f, 0x3a, 0x5b, 0x7c, 0x9d, 0x70, 0x01,
					   0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89 };
	static const char *const bad[] = {
		"",
		"018f3a5b-7c9d-7001-abcd-ef012345678",	  /* 35 chars */
		"018f3a5b-7c9d-7001-abcd-ef01234567890",  /* 37 chars */
		"018f3a5b7c9d-7001-abcd-ef0123456789a",	  /* hyphen missing */
		"018f3a5b-7c9d-7001-abcd_ef0123456789",	  /* wrong separator */
		"018f3a5g-7c9d-7001-abcd-ef0123456789",	  /* non-hex */
		"{18f3a5b-7c9d-7001-abcd-ef0123456789",	  /* brace */
		" 018f3a5b-7c9d-7001-abcd-ef0123456789",  /* leading blank */
		"018f3a5b-7c9d-7001-abcd-ef012345678 ",	  /* trailing blank */
		"018f3a5b-7c9d-7001-abcd-ef01234567-9",	  /* hyphen in last group */
	};
	char s[SW_UUID_STRLEN];
	uint8_t id[16], back[16], untouched[16];
	size_t i;

	sw_uuid_format(known, s);
	SW_CHECKF(strcmp(s, "018f3a5b-7c9d-7001-abcd-ef0123456789") == 0, "formatted %s", s);
	SW_CHECK(sw_uuid_parse("018F3A5B-7C9D-7001-ABCD-EF0123456789", back) == 0);
	SW_CHECK(memcmp(back, known, 16) == 0);

	for (i = 0; i < 1000; i++) {
		sw_uuid_v7(id);
		sw_uuid_format(id, s);
		SW_CHECK(strlen(s) == 36);
		SW_CHECK(sw_uuid_parse(s, back) == 0);
		SW_CHECK(memcmp(id, back, 16) == 0);
	}
	sw_uuid_v7_str(s);
	SW_CHECK(sw_uuid_parse(s, back) == 0 && (back[6] >> 4) == 7);

	memset(untouched, 0xee, sizeof(untouched));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(back, untouched, 16);
		SW_CHECKF(sw_uuid_parse(bad[i], back) == -1, "accepted '%s'", bad[i]);
		SW_CHECK(memcmp(back, untouched, 16) == 0);
	}
	SW_CHECK(sw_uuid_parse(NULL, back) == -1);
}

static void test_derive(void)
{
	static const uint8_t known[16] = {0x01, 0x8f, 0x3a, 0x5b, 0x7c, 0x9d, 0x70, 0x01,
					  0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89};
	uint8_t a[16], b[16], base[16], other[16];
	char s[SW_UUID_STRLEN];
	int i;

	sw_uuid_derive(known, "step.finished", a);
	sw_uuid_format(a, s);
	/* python3: blake2b(b"step.finished\0" + base, digest_size=16), its first
	 * ten bytes after base's six, version and variant set */
	SW_CHECKF(strcmp(s, "018f3a5b-7c9d-7872-9ae2-693368ce2f9a") == 0, "derived %s", s);
	for (i = 0; i < 1000; i++) {
		sw_uuid_v7(base);
		sw_uuid_derive(base, "step.finished", a);
		sw_uuid_derive(base, "step.finished", b);
		SW_CHECK(memcmp(a, b, 16) == 0);
		SW_CHECK(memcmp(a, base, 6) == 0);		     /* base's time */
		SW_CHECK((a[6] >> 4) == 7 && (a[8] & 0xc0) == 0x80); /* a UUIDv7 */
		SW_CHECK(memcmp(a, base, 16) != 0);
		sw_uuid_derive(base, "step.finishes", b);
		SW_CHECK(memcmp(a, b, 16) != 0);
		memcpy(other, base, 16);
		other[15] ^= 1;
		sw_uuid_derive(other, "step.finished", b);
		SW_CHECK(memcmp(a + 6, b + 6, 10) != 0);
	}
}

int main(void)
{
	test_layout();
	test_ordering();
	test_threads();
	test_text();
	test_derive();
	printf("core_uuid: ok\n");
	return 0;
}
