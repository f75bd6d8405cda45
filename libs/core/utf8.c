/*
 * utf8.c: UTF-8 as jansson takes it. Needs nothing but the C library, so
 * that the tool runner, which links no JSON library, compiles it as well.
 */
#include <stddef.h>

#include "sw_core.h"

size_t sw_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0], need, cp, k;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3, cp = c & 0x07;
	else
		return 0;
	for (k = 1; k <= need; k++) {
		if (k >= n || (s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (need == 3 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return need + 1;
}

int sw_utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, q;

	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((q = sw_utf8_seq(u + i, n - i)) == 0)
			return 0;
		i += q;
	}
	return 1;
}
