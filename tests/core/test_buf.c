/*
 * core_buf: the growable buffer (appends, NUL termination, the cap and
 * its over flag, printf, reset, steal) and the hex helpers (round trip,
 * bad digits and lengths refused).
 */
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"
#include "sw_test.h"

static void test_buf(void)
{
	struct sw_buf b = {0};
	char big[5000];
	size_t len;
	char *s;

	SW_CHECK(sw_buf_puts(&b, "ab") == 0 && b.len == 2 && strcmp(b.p, "ab") == 0);
	SW_CHECK(sw_buf_add(&b, "\0c", 2) == 0 && b.len == 4 && b.p[4] == '\0');
	SW_CHECK(b.p[2] == '\0' && b.p[3] == 'c');
	memset(big, 'x', sizeof(big));
	SW_CHECK(sw_buf_add(&b, big, sizeof(big)) == 0 && b.len == 5004 && b.cap > 5004);
	SW_CHECK(sw_buf_printf(&b, "-%d-%s", 42, "z") == 0);
	SW_CHECK(b.len == 5009 && strcmp(b.p + 5004, "-42-z") == 0);
	sw_buf_reset(&b);
	SW_CHECK(b.len == 0 && b.p[0] == '\0' && b.cap > 0);
	SW_CHECK(sw_buf_puts(&b, "kept") == 0);
	s = sw_buf_steal(&b, &len);
	SW_CHECK(s != NULL && len == 4 && strcmp(s, "kept") == 0);
	SW_CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
	free(s);
	SW_CHECK(sw_buf_add(&b, "", 0) == 0 && b.p != NULL && b.p[0] == '\0');
	sw_buf_free(&b);

	/* the cap: the append that passes it adds nothing */
	sw_buf_init(&b, 8);
	SW_CHECK(sw_buf_puts(&b, "12345") == 0);
	SW_CHECK(sw_buf_puts(&b, "6789") == -1 && b.over && b.len == 5);
	SW_CHECK(strcmp(b.p, "12345") == 0);
	SW_CHECK(sw_buf_printf(&b, "%s", "abcd") == -1 && b.len == 5);
	SW_CHECK(sw_buf_puts(&b, "678") == 0 && b.len == 8);
	SW_CHECK(sw_buf_add(&b, "9", 1) == -1);
	sw_buf_reset(&b);
	SW_CHECK(!b.over && b.max == 8);
	SW_CHECK(sw_buf_add(&b, big, (size_t)-1) == -1 && b.over); /* no overflow */
	sw_buf_free(&b);
	SW_CHECK(b.max == 8 && b.p == NULL);
}

static void test_hex(void)
{
	const unsigned char in[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
	unsigned char out[5];
	char s[11], *d;

	sw_hex_encode(in, sizeof(in), s);
	SW_CHECK(strcmp(s, "0001abff7f") == 0);
	SW_CHECK((d = sw_hex_dup(in, sizeof(in))) != NULL && strcmp(d, s) == 0);
	free(d);
	SW_CHECK(sw_hex_decode("0001ABff7f", out, 5) == 0 && memcmp(in, out, 5) == 0);
	SW_CHECK(sw_hex_decode("0001abff7", out, 5) == -1);   /* short */
	SW_CHECK(sw_hex_decode("0001abff7f00", out, 5) == -1); /* long */
	SW_CHECK(sw_hex_decode("0001abgf7f", out, 5) == -1);   /* not hex */
	SW_CHECK(sw_hex_decode("", out, 0) == 0);
	sw_hex_encode(in, 0, s);
	SW_CHECK(s[0] == '\0');
}

static void test_mono(void)
{
	int64_t a = sw_mono_ms(), ns = sw_mono_ns(), b = sw_mono_ms();

	SW_CHECK(a <= ns / 1000000 && ns / 1000000 <= b);
}

int main(void)
{
	test_buf();
	test_hex();
	test_mono();
	printf("core_buf: ok\n");
	return 0;
}
