/*
 * credshape.c: see sw_credshape.h. Moved here from the scheduler, which
 * refuses runs whose input holds one, so that sandboxd's artifact scan
 * matches exactly the same shapes.
 */
#include <string.h>

#include "sw_credshape.h"

static int is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_upper_digit(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || is_digit(c);
}

/* s[i] starts a word: nothing before it, or no letter or digit. */
static int word_start(const char *s, size_t i)
{
	return i == 0 || !is_alnum((unsigned char)s[i - 1]);
}

static int has_prefix(const char *s, size_t len, size_t i, const char *p)
{
	size_t n = strlen(p);

	return len - i >= n && memcmp(s + i, p, n) == 0;
}

/* Bytes from i on that satisfy ok. */
static size_t span(const char *s, size_t len, size_t i, int (*ok)(unsigned char))
{
	size_t j = i;

	while (j < len && ok((unsigned char)s[j]))
		j++;
	return j - i;
}

static int is_alnum_us(unsigned char c)
{
	return is_alnum(c) || c == '_';
}

static int is_key_char(unsigned char c)
{
	return is_alnum(c) || c == '_' || c == '-';
}

static int aws_at(const char *s, size_t len, size_t i)
{
	if (!has_prefix(s, len, i, "AKIA") && !has_prefix(s, len, i, "ASIA"))
		return 0;
	if (span(s, len, i + 4, is_upper_digit) < 16)
		return 0;
	return i + 20 == len || !is_alnum((unsigned char)s[i + 20]);
}

static int github_at(const char *s, size_t len, size_t i)
{
	static const char *const pfx[] = {"ghp_", "gho_", "ghu_", "ghs_", "ghr_"};
	size_t k;

	for (k = 0; k < sizeof(pfx) / sizeof(pfx[0]); k++)
		if (has_prefix(s, len, i, pfx[k]) && span(s, len, i + 4, is_alnum) >= 36)
			return 1;
	return has_prefix(s, len, i, "github_pat_") && span(s, len, i + 11, is_alnum_us) >= 22;
}

/* sk- and a body of key characters holding a run of >= 16 letters and
 * digits with at least one of each. */
static int sk_at(const char *s, size_t len, size_t i)
{
	size_t n, j, run = 0;
	int digit = 0, alpha = 0;

	if (!has_prefix(s, len, i, "sk-") || (n = span(s, len, i + 3, is_key_char)) < 20)
		return 0;
	for (j = i + 3; j <= i + 3 + n; j++) {
		unsigned char c = j < i + 3 + n ? (unsigned char)s[j] : '-';

		if (is_alnum(c)) {
			run++;
			digit |= is_digit(c);
			alpha |= !is_digit(c);
			continue;
		}
		if (run >= 16 && digit && alpha)
			return 1;
		run = 0;
		digit = alpha = 0;
	}
	return 0;
}

static int pem_char(unsigned char c)
{
	return is_upper_digit(c) || c == ' ';
}

static int pem_at(const char *s, size_t len, size_t i)
{
	static const char tail[] = "PRIVATE KEY";
	size_t n, t = sizeof(tail) - 1;

	if (!has_prefix(s, len, i, "-----BEGIN "))
		return 0;
	i += 11;
	n = span(s, len, i, pem_char);
	if (n > 64)
		return 0;
	return n >= t && memcmp(s + i + n - t, tail, t) == 0 && has_prefix(s, len, i + n, "-----");
}

const char *sw_credshape_find(const void *buf, size_t len, size_t *off)
{
	const char *s = buf;
	const char *kind;
	size_t i;

	for (i = 0; i < len; i++) {
		kind = NULL;
		if (s[i] == '-' && pem_at(s, len, i))
			kind = "a PEM private key";
		else if (!word_start(s, i))
			continue;
		else if (s[i] == 'A' && aws_at(s, len, i))
			kind = "an AWS access key id";
		else if (s[i] == 'g' && github_at(s, len, i))
			kind = "a GitHub token";
		else if (s[i] == 's' && sk_at(s, len, i))
			kind = "an API key (sk-...)";
		if (kind != NULL) {
			if (off != NULL)
				*off = i;
			return kind;
		}
	}
	return NULL;
}
