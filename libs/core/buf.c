/*
 * buf.c: the growable buffer and hex helpers of sw_core.h.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sw_core.h"

void sw_buf_init(struct sw_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

/* Room for n more bytes and the NUL. */
static int reserve(struct sw_buf *b, size_t n)
{
	size_t want, cap;
	char *np;

	if (b->oom)
		return -1;
	if (b->max != 0 && (n > b->max || b->len > b->max - n)) {
		b->over = 1;
		return -1;
	}
	if (n > SIZE_MAX / 2 - b->len) {
		b->oom = 1;
		return -1;
	}
	want = b->len + n + 1;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	if ((np = realloc(b->p, cap)) == NULL) {
		b->oom = 1;
		return -1;
	}
	b->p = np;
	b->cap = cap;
	return 0;
}

int sw_buf_add(struct sw_buf *b, const void *p, size_t n)
{
	if (reserve(b, n) == -1)
		return -1;
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int sw_buf_puts(struct sw_buf *b, const char *s)
{
	return sw_buf_add(b, s, strlen(s));
}

int sw_buf_printf(struct sw_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || reserve(b, (size_t)n) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void sw_buf_reset(struct sw_buf *b)
{
	b->len = 0;
	b->over = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

void sw_buf_free(struct sw_buf *b)
{
	size_t max = b->max;

	free(b->p);
	sw_buf_init(b, max);
}

char *sw_buf_steal(struct sw_buf *b, size_t *len)
{
	char *p = b->p;

	if (len != NULL)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	b->over = b->oom = 0;
	return p;
}

void sw_hex_encode(const void *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = in;
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

char *sw_hex_dup(const void *in, size_t n)
{
	char *s;

	if (n > (SIZE_MAX - 1) / 2 || (s = malloc(2 * n + 1)) == NULL)
		return NULL;
	sw_hex_encode(in, n, s);
	return s;
}

int sw_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int sw_hex_decode(const char *s, void *out, size_t n)
{
	unsigned char *o = out;
	size_t i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if ((hi = sw_hex_digit(s[2 * i])) < 0 || (lo = sw_hex_digit(s[2 * i + 1])) < 0)
			return -1;
		o[i] = (unsigned char)(hi << 4 | lo);
	}
	return s[2 * n] == '\0' ? 0 : -1;
}

uint32_t sw_fnv1a(uint32_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

struct json_t *sw_json_string_lossy(const char *s)
{
	json_t *j;
	char *copy, *p;

	if (s == NULL)
		s = "(null)";
	if ((j = json_string(s)) != NULL)
		return j;
	if ((copy = strdup(s)) == NULL)
		return NULL;
	for (p = copy; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}
