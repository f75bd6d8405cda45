/*
 * redact_oracle: the patterns of a secret value computed apart from
 * libs/core/redact.c (its encoders written again here, base64 from
 * whole-text encodings), and the check that none of them is left in a
 * redacted output outside its markers. Shared by tests/core/test_redact.c
 * and tests/fuzz/fuzz_redact.c.
 */
#ifndef REDACT_ORACLE_H
#define REDACT_ORACLE_H

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define ORACLE_VALUE_MAX 64 /* longest value the oracle takes */
#define ORACLE_PATS 17      /* patterns per value */

struct oracle_pats {
	char p[ORACLE_PATS][3 * ORACLE_VALUE_MAX + 1];
	size_t len[ORACLE_PATS], n;
};

static inline void oracle_add(struct oracle_pats *ps, const char *p, size_t len)
{
	memcpy(ps->p[ps->n], p, len);
	ps->len[ps->n++] = len;
}

/* Percent-encoding: RFC 3986 unreserved kept, space '+' when plus. */
static inline size_t oracle_pct(const unsigned char *v, size_t n, int upper, int plus, char *o)
{
	const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if ((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
		    (v[i] >= '0' && v[i] <= '9') || memchr("-._~", v[i], 4) != NULL) {
			o[k++] = (char)v[i];
		} else if (plus && v[i] == ' ') {
			o[k++] = '+';
		} else {
			o[k++] = '%';
			o[k++] = hex[v[i] >> 4];
			o[k++] = hex[v[i] & 15];
		}
	}
	return k;
}

/*
 * The value itself; hex lower, upper; percent upper, lower, each with
 * '+' for space; base64 and base64url, padded and not; and, for each
 * alphabet and each byte offset a mod 3 of the value in a longer text,
 * the characters of that text's encoding whose bits are all the value's.
 */
static inline void oracle_encodings(const unsigned char *v, size_t n, struct oracle_pats *ps)
{
	static const int var[] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_URLSAFE,
				  sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING};
	unsigned char blob[ORACLE_VALUE_MAX + 8];
	char o[4 * ORACLE_VALUE_MAX];
	size_t i, a, k;

	ps->n = 0;
	oracle_add(ps, (const char *)v, n);
	for (i = 0; i < 2; i++) {
		for (a = 0; a < n; a++)
			snprintf(o + 2 * a, 3, i ? "%02X" : "%02x", v[a]);
		oracle_add(ps, o, 2 * n);
		oracle_add(ps, o, oracle_pct(v, n, (int)i, 0, o));
		oracle_add(ps, o, oracle_pct(v, n, (int)i, 1, o));
	}
	for (i = 0; i < 4; i++) {
		sodium_bin2base64(o, sizeof(o), v, n, var[i]);
		oracle_add(ps, o, strlen(o));
	}
	for (i = 0; i < 2; i++) {
		for (a = 0; a < 3; a++) {
			size_t from = (8 * a + 5) / 6, to = 8 * (a + n) / 6;

			for (k = 0; k < a + n + 3; k++)
				blob[k] = (unsigned char)(0xa5 ^ (k * 37));
			memcpy(blob + a, v, n);
			sodium_bin2base64(o, sizeof(o), blob, a + n + 3, var[i]);
			oracle_add(ps, o + from, to - from);
		}
	}
}

/*
 * Whether out[0..n) is clean: no pattern of ps[0..nps) inside the text
 * between the markers marks[0..nmarks) (which must not overlap one
 * another, as "[REDACTED:K0]", "[REDACTED:K1]" cannot). 1, or 0 with
 * *which = 100 * value + pattern.
 */
static inline int oracle_clean(const char *out, size_t n, const struct oracle_pats *ps,
			       size_t nps, const char *const *marks, size_t nmarks, size_t *which)
{
	size_t at = 0, end, i, j;
	const char *m;

	for (;;) {
		end = n;
		for (i = 0; i < nmarks; i++)
			if ((m = memmem(out + at, n - at, marks[i], strlen(marks[i]))) != NULL &&
			    (size_t)(m - out) < end)
				end = (size_t)(m - out);
		for (i = 0; i < nps; i++) {
			for (j = 0; j < ps[i].n; j++) {
				if (memmem(out + at, end - at, ps[i].p[j], ps[i].len[j]) != NULL) {
					*which = 100 * i + j;
					return 0;
				}
			}
		}
		if (end == n)
			return 1;
		for (i = 0; i < nmarks; i++)
			if (strncmp(out + end, marks[i], strlen(marks[i])) == 0)
				break;
		at = end + strlen(marks[i]);
	}
}

#endif
