/*
 * libFuzzer target for sw_redact (libs/core/redact.c): the input names up
 * to 3 secrets, a cut of the text into chunks, and the text, in which
 * escapes splice the secrets' encodings (whole or cut short) or a value
 * inside longer base64, so the fuzzer need not find them itself.
 *
 *   [nsecrets % 4] { [len % 61 + 4] value } [ncuts % 16] { [cut lo][cut hi] } text
 *   text: 0x01 s  the encoding s % 17 of value s / 17 % nsecrets (0x80: cut short)
 *         0x02 s  value s % nsecrets at offset s / 4 % 4 of a base64 text
 *
 * Beyond "no crash, no leak": the chunked stream gives exactly the
 * one-shot bytes and marker count, and no pattern (computed apart, by
 * tests/core/redact_oracle.h) is left outside the markers; a text that
 * is UTF-8, as a JSON object's key and its string value, redacts to
 * valid strings as clean, with twice the markers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_redact.h"
#include "redact_oracle.h"

static const char *const marks[] = {"[REDACTED:K0]", "[REDACTED:K1]", "[REDACTED:K2]"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	return 0;
}

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_redact: %s\n", what);
	abort();
}

/* {text: [text]} through sw_redact_json, when text is UTF-8. */
static void check_json(const struct sw_redact *r, const char *text, size_t n, size_t hits,
		       const struct oracle_pats *ps, size_t ns)
{
	json_t *in = json_object(), *s = json_stringn(text, n), *out, *v;
	size_t h = 0, which;
	const char *k;

	if (in == NULL)
		fail("json_object");
	if (s == NULL || json_object_setn_new(in, text, n, json_pack("[o]", s)) == -1) {
		json_decref(in);
		return;
	}
	if ((out = sw_redact_json(r, in, &h)) == NULL)
		fail("sw_redact_json");
	if (h != 2 * hits || json_object_size(out) != 1)
		fail("sw_redact_json: markers");
	json_object_keylen_foreach(out, k, n, v)
	{
		if (!oracle_clean(k, n, ps, ns, marks, 3, &which))
			fail("sw_redact_json: a pattern survives in a key");
		v = json_array_get(v, 0);
		if (!json_is_string(v) || json_string_length(v) != n ||
		    memcmp(json_string_value(v), k, n) != 0)
			fail("sw_redact_json: key and value differ");
	}
	json_decref(out);
	json_decref(in);
}

/* The text of d[0..n) with its escapes expanded, into t (room for 64 KiB
 * beyond n); returns its length. */
static size_t expand(const uint8_t *d, size_t n, const struct oracle_pats *ps,
		     uint8_t sec[][ORACLE_VALUE_MAX], const size_t *slen, size_t ns, uint8_t *t)
{
	uint8_t blob[ORACLE_VALUE_MAX + 8];
	size_t i, k = 0, v, len, off, j;

	for (i = 0; i < n; i++) {
		if ((d[i] != 1 && d[i] != 2) || i + 1 == n || ns == 0 || k > 60000) {
			t[k++] = d[i];
			continue;
		}
		if (d[i] == 1) {
			v = (d[i + 1] & 0x7f) / 17 % ns;
			len = ps[v].len[(d[i + 1] & 0x7f) % 17];
			if ((d[i + 1] & 0x80) && len > 1)
				len--;
			memcpy(t + k, ps[v].p[(d[i + 1] & 0x7f) % 17], len);
			k += len;
		} else {
			v = d[i + 1] % ns;
			off = d[i + 1] / 4 % 4;
			for (j = 0; j < off + slen[v] + 3; j++)
				blob[j] = (uint8_t)(d[i + 1] * (j + 1));
			memcpy(blob + off, sec[v], slen[v]);
			sodium_bin2base64((char *)t + k, 4 * ORACLE_VALUE_MAX, blob,
					  off + slen[v] + d[i + 1] / 16 % 4,
					  d[i + 1] & 0x40 ? sodium_base64_VARIANT_URLSAFE
							  : sodium_base64_VARIANT_ORIGINAL);
			k += strlen((char *)t + k);
		}
		i++;
	}
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t sec[3][ORACLE_VALUE_MAX], *text;
	struct oracle_pats ps[3];
	size_t slen[3], ns = 0, want, off = 1, i, k, ncuts, cuts[16], n, olen, hits = 0, which;
	size_t hold_max;
	struct sw_redact *r;
	struct sw_redact_stream *s;
	struct sw_buf out;
	char err[256], key[3] = "K0", *one;

	if (size < 1)
		return 0;
	if ((r = sw_redact_new()) == NULL)
		fail("sw_redact_new");
	for (want = data[0] % 4, i = 0; i < want && off < size; i++) {
		size_t len = data[off++] % 61 + 4;

		if (len > size - off)
			break;
		key[1] = (char)('0' + i);
		if (sw_redact_add(r, key, data + off, len, err, sizeof(err)) == 0) {
			memcpy(sec[ns], data + off, len);
			slen[ns] = len;
			oracle_encodings(sec[ns], len, &ps[ns]);
			ns++;
		} else if (strstr(err, "marker") == NULL) {
			fail(err);
		}
		off += len;
	}
	ncuts = off < size ? data[off++] % 16 : 0;
	if (ncuts * 2 > size - off)
		ncuts = (size - off) / 2;
	for (i = 0; i < ncuts; i++, off += 2)
		cuts[i] = (size_t)data[off] | (size_t)data[off + 1] << 8;
	if ((text = malloc(size - off + 65536)) == NULL)
		fail("malloc");
	n = expand(data + off, size - off, ps, sec, slen, ns, text);
	for (i = 0; i < ncuts; i++)
		cuts[i] %= n + 1;
	for (i = 1; i < ncuts; i++)
		for (k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
			size_t c = cuts[k];

			cuts[k] = cuts[k - 1];
			cuts[k - 1] = c;
		}

	if ((one = sw_redact_buf(r, text, n, &olen, &hits)) == NULL)
		fail("sw_redact_buf");
	if (!oracle_clean(one, olen, ps, ns, marks, 3, &which)) {
		fprintf(stderr, "pattern %zu of value %zu survives\n", which % 100, which / 100);
		fail("a pattern survives");
	}
	check_json(r, (const char *)text, n, hits, ps, ns);
	if ((s = sw_redact_stream_new(r)) == NULL)
		fail("sw_redact_stream_new");
	hold_max = sw_redact_maxlen(r) > 0 ? sw_redact_maxlen(r) - 1 : 0;
	sw_buf_init(&out, 0);
	for (k = 0, i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;

		if (sw_redact_stream_feed(s, text + k, to - k, &out) == -1)
			fail("feed");
		if (hits == 0 && out.len + hold_max < to) /* out is the text so far */
			fail("held back more than maxlen - 1 bytes");
		k = to;
	}
	if (sw_redact_stream_flush(s, &out) == -1)
		fail("flush");
	if (out.len != olen || (olen > 0 && memcmp(out.p, one, olen) != 0))
		fail("stream and one-shot differ");
	if (sw_redact_stream_hits(s) != hits)
		fail("stream and one-shot count differently");
	sw_redact_stream_destroy(s);
	sw_buf_free(&out);
	free(one);
	free(text);
	sw_redact_destroy(r);
	return 0;
}
