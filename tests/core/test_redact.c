/*
 * core_redact: the secret redactor. A plain value; a value cut at every
 * chunk boundary (single and paired cuts, 1-byte chunks) gives the same
 * bytes as one pass, and a stream holds back only what could still be a
 * pattern; a multi-line value fed line by line; base64 (standard and
 * URL-safe, padded and not, inside longer base64 at every offset mod 3),
 * percent-encoding (upper, lower, '+' for space), hex (lower, upper),
 * JSON string escapes;
 * a secret that is a prefix of another (longest wins, either add order);
 * overlapping occurrences (nothing of either leaks); refusals (short
 * value, bad keys, a value a marker spells); JSON (nested objects and
 * arrays, keys, numbers, UTF-8 kept valid); and a seeded property check:
 * random secrets and inputs cut at random give stream == one-shot, and no
 * pattern (computed here, independently) survives outside the markers.
 * sw_redact_find: the first occurrence in any spelling, its offset, length
 * and key, the earliest of two secrets, none in clean text; on random
 * inputs its offset is where one-shot redaction writes its first marker.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "sw_core.h"
#include "sw_redact.h"
#include "sw_test.h"
#include "redact_oracle.h"

static struct sw_redact *set1(const char *key, const void *v, size_t n)
{
	struct sw_redact *r = sw_redact_new();
	char err[256];

	SW_CHECK(r != NULL);
	SW_CHECKF(sw_redact_add(r, key, v, n, err, sizeof(err)) == 0, "%s", err);
	return r;
}

/* One-shot redaction of a C string, compared with want; returns hits. */
static size_t expect(const struct sw_redact *r, const char *in, const char *want)
{
	size_t hits = 0, len;
	char *out = sw_redact_buf(r, in, strlen(in), &len, &hits);

	SW_CHECK(out != NULL && len == strlen(out));
	SW_CHECKF(strcmp(out, want) == 0, "in '%s': got '%s', want '%s'", in, out, want);
	free(out);
	return hits;
}

/* Feed in[0..n) cut at cuts[0..ncuts) (ascending), flush; the output in
 * *out (caller frees with sw_buf_free). */
static void stream_cuts(const struct sw_redact *r, const void *in, size_t n, const size_t *cuts,
			size_t ncuts, struct sw_buf *out)
{
	struct sw_redact_stream *s = sw_redact_stream_new(r);
	const char *p = in;
	size_t i, at = 0;

	SW_CHECK(s != NULL);
	sw_buf_init(out, 0);
	SW_CHECK(sw_buf_add(out, "", 0) == 0);
	for (i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;

		SW_CHECK(sw_redact_stream_feed(s, p + at, to - at, out) == 0);
		at = to;
	}
	SW_CHECK(sw_redact_stream_flush(s, out) == 0);
	sw_redact_stream_destroy(s);
}

/* Every single cut, every pair of cuts (short inputs) and 1-byte chunks
 * give the one-shot output. */
static void check_splits(const struct sw_redact *r, const void *in, size_t n)
{
	size_t olen, hits = 0, i, j, cuts[2];
	char *one = sw_redact_buf(r, in, n, &olen, &hits);
	struct sw_buf out;

	SW_CHECK(one != NULL);
	for (i = 0; i <= n; i++) {
		cuts[0] = i;
		stream_cuts(r, in, n, cuts, 1, &out);
		SW_CHECKF(out.len == olen && memcmp(out.p, one, olen) == 0, "cut at %zu: '%s'", i,
			  out.p);
		sw_buf_free(&out);
		for (j = i; n <= 80 && j <= n; j++) {
			cuts[1] = j;
			stream_cuts(r, in, n, cuts, 2, &out);
			SW_CHECKF(out.len == olen && memcmp(out.p, one, olen) == 0,
				  "cuts at %zu, %zu: '%s'", i, j, out.p);
			sw_buf_free(&out);
		}
	}
	{
		struct sw_redact_stream *s = sw_redact_stream_new(r);

		sw_buf_init(&out, 0);
		for (i = 0; i < n; i++)
			SW_CHECK(sw_redact_stream_feed(s, (const char *)in + i, 1, &out) == 0);
		SW_CHECK(sw_redact_stream_flush(s, &out) == 0);
		SW_CHECK(out.len == olen && (olen == 0 || memcmp(out.p, one, olen) == 0));
		SW_CHECK(sw_redact_stream_hits(s) == hits);
		sw_redact_stream_destroy(s);
		sw_buf_free(&out);
	}
	free(one);
}

static void check_str(const struct sw_redact *r, const char *in)
{
	check_splits(r, in, strlen(in));
}

static void test_plain(void)
{
	static const char bin[] = "\x00\x01\xff\x00zz";
	struct sw_redact *r = set1("GITHUB_TOKEN", "ghp_abcdef123456", 16);
	size_t hits, len;
	char *out;

	SW_CHECK(sw_redact_count(r) == 1 && sw_redact_maxlen(r) == 32); /* its hex */
	hits = expect(r, "token=ghp_abcdef123456 end", "token=[REDACTED:GITHUB_TOKEN] end");
	SW_CHECK(hits == 1);
	hits = expect(r, "ghp_abcdef123456ghp_abcdef123456",
		      "[REDACTED:GITHUB_TOKEN][REDACTED:GITHUB_TOKEN]");
	SW_CHECK(hits == 2);
	SW_CHECK(expect(r, "ghp_abcdef12345 ghp_bcdef123456", "ghp_abcdef12345 ghp_bcdef123456") ==
		 0);
	SW_CHECK(expect(r, "", "") == 0);
	sw_redact_destroy(r);

	/* binary values, NUL bytes included */
	r = set1("BIN", bin, 6);
	out = sw_redact_buf(r, "a\x00\x01\xff\x00zzb", 8, &len, NULL);
	SW_CHECK(out != NULL && len == 2 + strlen("[REDACTED:BIN]"));
	SW_CHECK(memcmp(out, "a[REDACTED:BIN]b", len) == 0 && out[len] == '\0');
	free(out);
	sw_redact_destroy(r);

	/* an empty set copies */
	r = sw_redact_new();
	SW_CHECK(sw_redact_count(r) == 0 && sw_redact_maxlen(r) == 0);
	SW_CHECK(expect(r, "nothing ghp_abcdef123456", "nothing ghp_abcdef123456") == 0);
	check_str(r, "abc");
	sw_redact_destroy(r);
	sw_redact_destroy(NULL);
}

static void test_splits(void)
{
	static const char in[] = "x ghp_abcdef123456\nghp_abcdef123456 Z2hwX2FiY2RlZjEyMzQ1Ng==";
	struct sw_redact *r = set1("T", "ghp_abcdef123456", 16);
	struct sw_redact_stream *s;
	struct sw_buf out;
	size_t i, fed;

	check_splits(r, in, strlen(in));
	check_str(r, "ghp_abcdef123456");
	check_str(r, "ghp_abcdef12345");
	sw_redact_destroy(r);

	/* hold back exactly the bytes that could still start a pattern */
	r = set1("K", "SECRETVALUE1", 12);
	s = sw_redact_stream_new(r);
	sw_buf_init(&out, 0);
	SW_CHECK(sw_redact_stream_feed(s, NULL, 0, &out) == 0 && out.len == 0); /* empty chunk */
	SW_CHECK(sw_redact_stream_feed(s, "hello SECR", 10, &out) == 0);
	SW_CHECKF(out.len == 6 && memcmp(out.p, "hello ", 6) == 0, "'%s'", out.p);
	SW_CHECK(sw_redact_stream_feed(s, NULL, 0, &out) == 0 && out.len == 6); /* held back */
	SW_CHECK(sw_redact_stream_feed(s, "ET", 2, &out) == 0 && out.len == 6);
	SW_CHECK(sw_redact_stream_feed(s, "X", 1, &out) == 0);
	SW_CHECKF(out.len == 13 && memcmp(out.p, "hello SECRETX", 13) == 0, "'%s'", out.p);
	SW_CHECK(sw_redact_stream_feed(s, " SECRETVALUE1", 13, &out) == 0);
	SW_CHECK(strcmp(out.p, "hello SECRETX [REDACTED:K]") == 0); /* no longer one */
	SW_CHECK(sw_redact_stream_flush(s, &out) == 0);
	SW_CHECK(strcmp(out.p, "hello SECRETX [REDACTED:K]") == 0);
	SW_CHECK(sw_redact_stream_hits(s) == 1);
	/* flushed, it carries a new stream */
	sw_buf_reset(&out);
	SW_CHECK(sw_redact_stream_feed(s, "SECRETVALUE1.", 13, &out) == 0);
	SW_CHECK(strcmp(out.p, "[REDACTED:K].") == 0 && sw_redact_stream_hits(s) == 2);
	SW_CHECK(sw_redact_stream_flush(s, &out) == 0 && out.len == 13);
	sw_redact_stream_destroy(s);

	/* text with no pattern in it: at most maxlen - 1 bytes are ever held */
	s = sw_redact_stream_new(r);
	sw_buf_reset(&out);
	for (fed = 0, i = 0; i < 200; i++) {
		char c = "SECRETVALUE SECRETVALU\n"[i % 23];

		SW_CHECK(sw_redact_stream_feed(s, &c, 1, &out) == 0);
		fed++;
		SW_CHECK(out.len + sw_redact_maxlen(r) - 1 >= fed);
	}
	SW_CHECK(sw_redact_stream_flush(s, &out) == 0 && out.len == fed);
	sw_redact_stream_destroy(s);

	/* a capped out: -1, and the stream is spent */
	s = sw_redact_stream_new(r);
	sw_buf_free(&out);
	sw_buf_init(&out, 8);
	SW_CHECK(sw_redact_stream_feed(s, "0123456789", 10, &out) == -1);
	SW_CHECK(sw_redact_stream_feed(s, "0", 1, &out) == -1);
	SW_CHECK(sw_redact_stream_flush(s, &out) == -1);
	sw_redact_stream_destroy(s);
	sw_buf_free(&out);
	sw_redact_destroy(r);
}

/* A multi-line value (a PEM key) read line by line. */
static void test_lines(void)
{
	static const char pem[] = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcN\n"
				  "LYLQBW0d7w3h2s/yzA==\n-----END KEY-----";
	static const char log[] = "loading key\n-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcN\n"
				  "LYLQBW0d7w3h2s/yzA==\n-----END KEY-----\ndone\n";
	struct sw_redact *r = set1("TLS_KEY", pem, strlen(pem));
	size_t cuts[8], n = 0, i;
	struct sw_buf out;

	for (i = 0; log[i] != '\0'; i++)
		if (log[i] == '\n')
			cuts[n++] = i + 1;
	SW_CHECK(n <= 8);
	stream_cuts(r, log, strlen(log), cuts, n - 1, &out);
	SW_CHECKF(strcmp(out.p, "loading key\n[REDACTED:TLS_KEY]\ndone\n") == 0, "'%s'", out.p);
	sw_buf_free(&out);
	check_splits(r, log, strlen(log));
	sw_redact_destroy(r);

	/* a one-line value cut where the tool's lines were cut */
	r = set1("PW", "hunter2-hunter2", 15);
	cuts[0] = 9;
	stream_cuts(r, "pw: hunter2-hunter2\n", 20, cuts, 1, &out);
	SW_CHECK(strcmp(out.p, "pw: [REDACTED:PW]\n") == 0);
	sw_buf_free(&out);
	sw_redact_destroy(r);
}

static void test_base64(void)
{
	/* base64 "++++Pz5+c2VjcmV0" (12 bytes, no padding) and
	 * "++++Pz5+c2VjcmU=" (11 bytes), URL-safe "----Pz5-...". */
	static const char v12[] = "\xfb\xef\xbe?>~secret", v11[] = "\xfb\xef\xbe?>~secre";
	static const int variants[] = {sodium_base64_VARIANT_ORIGINAL,
				       sodium_base64_VARIANT_URLSAFE};
	static const unsigned char pre[] = "\xff\xfe\xfd\xfc\xfb\xfa", suf[] = "\xff\xee\xdd";
	struct sw_redact *r = set1("K", v12, 12);
	unsigned char blob[64];
	char enc[128], text[160], want[160];
	size_t p, q, v, from, to;

	expect(r, "a ++++Pz5+c2VjcmV0 b", "a [REDACTED:K] b");
	expect(r, "a ----Pz5-c2VjcmV0 b", "a [REDACTED:K] b");
	check_str(r, "a ++++Pz5+c2VjcmV0 ----Pz5-c2VjcmV0 b");
	sw_redact_destroy(r);
	r = set1("K", v11, 11);
	expect(r, "a ++++Pz5+c2VjcmU= b", "a [REDACTED:K] b");
	expect(r, "a ++++Pz5+c2VjcmU b", "a [REDACTED:K] b");
	expect(r, "a ----Pz5-c2VjcmU= b", "a [REDACTED:K] b");
	expect(r, "a ----Pz5-c2VjcmU b", "a [REDACTED:K] b");
	sw_redact_destroy(r);

	/* inside longer base64: offsets 0..5 (each alignment twice), 0..3
	 * bytes after; the characters all of whose bits are the value's go */
	r = set1("K", "correct horse battery", 21);
	for (v = 0; v < 2; v++) {
		for (p = 0; p < 6; p++) {
			for (q = 0; q < 4; q++) {
				memcpy(blob, pre, p);
				memcpy(blob + p, "correct horse battery", 21);
				memcpy(blob + p + 21, suf, q);
				sodium_bin2base64(enc, sizeof(enc), blob, p + 21 + q, variants[v]);
				snprintf(text, sizeof(text), "data: %s\n", enc);
				from = (8 * p + 5) / 6;
				to = 8 * (p + 21) / 6;
				if (p == 0 && q == 0) /* the whole encoding */
					snprintf(want, sizeof(want), "data: [REDACTED:K]\n");
				else
					snprintf(want, sizeof(want), "data: %.*s[REDACTED:K]%s\n",
						 (int)from, enc, enc + to);
				SW_CHECKF(expect(r, text, want) == 1, "p %zu q %zu", p, q);
			}
		}
	}
	sw_redact_destroy(r);
}

static void test_percent(void)
{
	static const char v[] = "p@ss word/+\xc3\xa9~x_-.";
	struct sw_redact *r = set1("PW", v, strlen(v));

	expect(r, "q=p%40ss%20word%2F%2B%C3%A9~x_-.&", "q=[REDACTED:PW]&");
	expect(r, "q=p%40ss%20word%2f%2b%c3%a9~x_-.&", "q=[REDACTED:PW]&");
	expect(r, "q=p%40ss+word%2F%2B%C3%A9~x_-.&", "q=[REDACTED:PW]&");
	expect(r, "q=p%40ss+word%2f%2b%c3%a9~x_-.&", "q=[REDACTED:PW]&");
	/* '~' and the other unreserved bytes stay as they are: an encoder
	 * that encodes '~' is not one the redactor follows */
	expect(r, "q=p%40ss%20word%2F%2B%C3%A9%7Ex_-.&", "q=p%40ss%20word%2F%2B%C3%A9%7Ex_-.&");
	check_str(r, "a=p%40ss+word%2f%2b%c3%a9~x_-.&b=p@ss word/+\xc3\xa9~x_-.");
	sw_redact_destroy(r);
}

static void test_hex(void)
{
	struct sw_redact *r = set1("H", "\x01\xab\xcd\xef\x10", 5);

	expect(r, "id 01abcdef10.", "id [REDACTED:H].");
	expect(r, "id 01ABCDEF10.", "id [REDACTED:H].");
	expect(r, "id 01ABcdef10.", "id 01ABcdef10."); /* mixed case: not an encoder's */
	sw_redact_destroy(r);

	/* a printable value, its hex too */
	r = set1("T", "tok-1234", 8);
	expect(r, "746f6b2d31323334|746F6B2D31323334", "[REDACTED:T]|[REDACTED:T]");
	sw_redact_destroy(r);
}

/* A value in a JSON text a tool prints: its escaped spelling. */
static void test_escaped(void)
{
	struct sw_redact *r = set1("Q", "pa\"ss\\wd", 8);

	expect(r, "{\"p\": \"pa\\\"ss\\\\wd\"}", "{\"p\": \"[REDACTED:Q]\"}");
	sw_redact_destroy(r);
	r = set1("C", "ab\x1b\ncd", 6);
	expect(r, "[\"ab\\u001b\\ncd\", \"ab\\u001B\\ncd\"]",
	       "[\"[REDACTED:C]\", \"[REDACTED:C]\"]");
	sw_redact_destroy(r);
}

/* One secret a prefix of another: the longest wins, whatever the order. */
static void test_prefix(void)
{
	struct sw_redact *r;
	char err[256];
	int order;

	for (order = 0; order < 2; order++) {
		r = sw_redact_new();
		if (order == 0) {
			SW_CHECK(sw_redact_add(r, "SHORT", "abcdefgh", 8, err, sizeof(err)) == 0);
			SW_CHECK(sw_redact_add(r, "LONG", "abcdefghijkl", 12, err, 256) == 0);
		} else {
			SW_CHECK(sw_redact_add(r, "LONG", "abcdefghijkl", 12, err, 256) == 0);
			SW_CHECK(sw_redact_add(r, "SHORT", "abcdefgh", 8, err, sizeof(err)) == 0);
		}
		expect(r, "x abcdefghijkl y", "x [REDACTED:LONG] y");
		expect(r, "x abcdefghijk y", "x [REDACTED:SHORT]ijk y");
		expect(r, "abcdefghabcdefghijkl", "[REDACTED:SHORT][REDACTED:LONG]");
		check_str(r, "x abcdefghijk abcdefghijkl abcdefgh");
		sw_redact_destroy(r);
	}

	/* the same value under two keys: the first key's marker */
	r = sw_redact_new();
	SW_CHECK(sw_redact_add(r, "GH_TOKEN", "ghp_same1234", 12, err, sizeof(err)) == 0);
	SW_CHECK(sw_redact_add(r, "GITHUB_TOKEN", "ghp_same1234", 12, err, sizeof(err)) == 0);
	SW_CHECK(sw_redact_count(r) == 2);
	expect(r, "ghp_same1234", "[REDACTED:GH_TOKEN]");
	sw_redact_destroy(r);
}

/* Overlapping occurrences leak nothing of either. */
static void test_overlap(void)
{
	struct sw_redact *r = set1("K", "abab", 4);
	char err[256];

	SW_CHECK(expect(r, "ababab", "[REDACTED:K]") == 1);
	SW_CHECK(expect(r, "abababab.abab", "[REDACTED:K].[REDACTED:K]") == 2);
	SW_CHECK(expect(r, "abaabab", "aba[REDACTED:K]") == 1);
	check_str(r, "xabababy abab abaabab");
	sw_redact_destroy(r);

	r = set1("A", "abcdef", 6);
	SW_CHECK(sw_redact_add(r, "B", "defghi", 6, err, sizeof(err)) == 0);
	SW_CHECK(sw_redact_add(r, "C", "cdefgh", 6, err, sizeof(err)) == 0);
	/* at 0 A, at 2 C reaches further, at 3 B further still */
	SW_CHECK(expect(r, "abcdefghi!", "[REDACTED:A][REDACTED:C][REDACTED:B]!") == 3);
	/* a pattern inside a span that does not reach beyond adds nothing */
	SW_CHECK(expect(r, "xcdefghy", "x[REDACTED:C]y") == 1);
	check_str(r, "abcdefghi! xcdefghy");
	sw_redact_destroy(r);
}

static void test_refused(void)
{
	struct sw_redact *r = sw_redact_new();
	char err[256], key[SW_REDACT_KEY_MAX + 2];

	SW_CHECK(sw_redact_add(r, "PIN", "123", 3, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "shorter than 4") != NULL, "%s", err);
	SW_CHECK(sw_redact_add(r, "E", "", 0, err, sizeof(err)) == -1);
	SW_CHECK(sw_redact_count(r) == 0 && sw_redact_maxlen(r) == 0);
	SW_CHECK(sw_redact_add(r, "PIN", "1234", 4, err, sizeof(err)) == 0);
	SW_CHECK(sw_redact_count(r) == 1);

	SW_CHECK(sw_redact_add(r, "", "abcdefgh", 8, err, sizeof(err)) == -1);
	SW_CHECK(strstr(err, "bad key") != NULL);
	SW_CHECK(sw_redact_add(r, NULL, "abcdefgh", 8, err, sizeof(err)) == -1);
	SW_CHECK(sw_redact_add(r, "A]B", "abcdefgh", 8, err, sizeof(err)) == -1);
	SW_CHECK(sw_redact_add(r, "A\nB", "abcdefgh", 8, err, sizeof(err)) == -1);
	SW_CHECK(sw_redact_add(r, "A\xc3\xa9", "abcdefgh", 8, err, sizeof(err)) == -1);
	memset(key, 'K', sizeof(key));
	key[SW_REDACT_KEY_MAX + 1] = '\0';
	SW_CHECK(sw_redact_add(r, key, "abcdefgh", 8, err, sizeof(err)) == -1);
	key[SW_REDACT_KEY_MAX] = '\0';
	SW_CHECK(sw_redact_add(r, key, "abcdefgh", 8, err, sizeof(err)) == 0);
	SW_CHECK(sw_redact_count(r) == 2);

	/* a value a marker spells, a marker spelling a value */
	SW_CHECK(sw_redact_add(r, "X", "ACTED", 5, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "marker") != NULL && strstr(err, "ACTED") == NULL, "%s", err);
	SW_CHECK(sw_redact_add(r, "X", "D:PI", 4, err, sizeof(err)) == -1);
	SW_CHECK(sw_redact_add(r, "MY_hunter22", "hunter22", 8, err, sizeof(err)) == -1);
	SW_CHECK(sw_redact_add(r, "TOKEN_1234", "zzzzzzzz", 8, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "[REDACTED:PIN]") != NULL, "%s", err);
	SW_CHECK(sw_redact_count(r) == 2);
	expect(r, "pin 1234", "pin [REDACTED:PIN]");
	sw_redact_destroy(r);
}

static void test_json(void)
{
	struct sw_redact *r = set1("TOK", "s3cr3t-value", 12);
	json_t *in, *out, *keep;
	char err[256], *s;
	size_t hits = 0;

	SW_CHECK(sw_redact_add(r, "NUM", "31415926", 8, err, sizeof(err)) == 0);
	SW_CHECK(sw_redact_add(r, "UTF", "\xa9tail", 5, err, sizeof(err)) == 0);
	in = json_loads("{\"text\": \"the key is s3cr3t-value\","
			" \"s3cr3t-value\": [1, \"x\", {\"deep\": [\"czNjcjN0LXZhbHVl\"]}],"
			" \"n\": 31415926, \"f\": 31415926.5, \"ok\": true, \"none\": null,"
			" \"keep\": {\"a\": [\"b\", 2]}, \"u\": \"caf\xc3\xa9tail!\"}",
			0, NULL);
	SW_CHECK(in != NULL);
	keep = json_object_get(in, "keep");
	out = sw_redact_json(r, in, &hits);
	SW_CHECK(out != NULL && out != in);
	s = json_dumps(out, JSON_COMPACT);
	SW_CHECKF(strcmp(s, "{\"text\":\"the key is [REDACTED:TOK]\","
			    "\"[REDACTED:TOK]\":[1,\"x\",{\"deep\":[\"[REDACTED:TOK]\"]}],"
			    "\"n\":\"[REDACTED:NUM]\",\"f\":\"[REDACTED:NUM].5\",\"ok\":true,"
			    "\"none\":null,\"keep\":{\"a\":[\"b\",2]},"
			    "\"u\":\"caf[REDACTED:UTF]!\"}") == 0,
		  "%s", s);
	free(s);
	SW_CHECK(hits == 6);
	SW_CHECK(json_object_get(out, "keep") == keep); /* unchanged: shared */
	s = json_dumps(in, JSON_COMPACT);               /* and the input untouched */
	SW_CHECK(strstr(s, "s3cr3t-value") != NULL && strstr(s, "REDACTED") == NULL);
	free(s);
	json_decref(out);

	/* nothing to redact: the value itself */
	hits = 0;
	out = sw_redact_json(r, keep, &hits);
	SW_CHECK(out == keep && hits == 0);
	json_decref(out);
	json_decref(in);
	SW_CHECK(sw_redact_json(r, NULL, NULL) == NULL);
	sw_redact_destroy(r);
}

/* ---- the property check ------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static void test_property(void)
{
	static const char *const marks[] = {"[REDACTED:K0]", "[REDACTED:K1]", "[REDACTED:K2]"};
	static const char alpha[] = "ab%+ 9Zz=/_-[]\n\xff";
	unsigned char sec[3][16], in[1600], blob[64];
	size_t slen[3], iter, ns, i, j, k, n, len, cuts[12], ncuts, olen, hits, bad;
	struct oracle_pats ps[3];
	char err[256], key[4], *one;
	struct sw_redact *r;
	struct sw_buf out;

	for (iter = 0; iter < 2000; iter++) {
		r = sw_redact_new();
		for (ns = 0, i = 0, j = 1 + rnd(3); i < j; i++) {
			slen[ns] = 4 + rnd(9);
			for (k = 0; k < slen[ns]; k++)
				sec[ns][k] = (unsigned char)alpha[rnd(sizeof(alpha) - 1)];
			key[0] = 'K';
			key[1] = (char)('0' + i);
			key[2] = '\0';
			if (sw_redact_add(r, key, sec[ns], slen[ns], err, sizeof(err)) == 0) {
				oracle_encodings(sec[ns], slen[ns], &ps[ns]);
				ns++;
			} else
				SW_CHECKF(strstr(err, "marker") != NULL, "%s", err);
		}
		/* fragments: noise, values, their encodings, cut-off ones,
		 * values inside longer base64 */
		for (n = 0, j = rnd(14); j > 0; j--) {
			size_t s = ns ? rnd((uint32_t)ns) : 0, e = rnd(17);

			switch (ns ? rnd(5) : 0) {
			case 0:
				for (k = 1 + rnd(8); k > 0; k--)
					in[n++] = (unsigned char)alpha[rnd(sizeof(alpha) - 1)];
				break;
			case 1:
				memcpy(in + n, sec[s], slen[s]);
				n += slen[s];
				break;
			case 2:
			case 3:
				len = ps[s].len[e % ps[s].n];
				if (rnd(2) && len > 1)
					len -= 1 + rnd((uint32_t)len - 1);
				memcpy(in + n, ps[s].p[e % ps[s].n], len);
				n += len;
				break;
			default:
				k = rnd(4);
				for (i = 0; i < k + slen[s] + 3; i++)
					blob[i] = (unsigned char)rnd(256);
				memcpy(blob + k, sec[s], slen[s]);
				sodium_bin2base64((char *)in + n, 100, blob, k + slen[s] + rnd(4),
						  rnd(2) ? sodium_base64_VARIANT_URLSAFE
							 : sodium_base64_VARIANT_ORIGINAL);
				n += strlen((char *)in + n);
				break;
			}
		}
		hits = 0;
		one = sw_redact_buf(r, in, n, &olen, &hits);
		SW_CHECK(one != NULL);
		SW_CHECKF(oracle_clean(one, olen, ps, ns, marks, 3, &bad), "iteration %zu: "
			  "pattern %zu.%zu survives", iter, bad / 100, bad % 100);
		for (ncuts = rnd(12), i = 0; i < ncuts; i++)
			cuts[i] = rnd((uint32_t)n + 1);
		for (i = 1; i < ncuts; i++) /* sort */
			for (k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
				len = cuts[k];
				cuts[k] = cuts[k - 1];
				cuts[k - 1] = len;
			}
		stream_cuts(r, in, n, cuts, ncuts, &out);
		SW_CHECKF(out.len == olen && memcmp(out.p, one, olen) == 0, "iteration %zu", iter);
		sw_buf_free(&out);
		free(one);
		sw_redact_destroy(r);
	}
}

static void find_at(const struct sw_redact *r, const char *in, size_t want_off,
		    size_t want_len, const char *want_key)
{
	size_t off = 99, mlen = 99;
	char key[16];

	SW_CHECKF(sw_redact_find(r, in, strlen(in), &off, &mlen, key, sizeof(key)) == 1, "%s",
		  in);
	SW_CHECKF(off == want_off && mlen == want_len && strcmp(key, want_key) == 0,
		  "%s: at %zu len %zu key %s", in, off, mlen, key);
}

static void test_find(void)
{
	struct sw_redact *r = set1("GITHUB_TOKEN", "tok-s3cret", 10);
	char err[256], key[4], buf[256];
	size_t off, i, n;

	find_at(r, "abc tok-s3cret", 4, 10, "GITHUB_TOKEN");
	find_at(r, "x\n746f6b2d733363726574 ", 2, 20, "GITHUB_TOKEN");	/* hex */
	find_at(r, "AA dG9rLXMzY3JldA==", 3, 16, "GITHUB_TOKEN");	/* base64 padded */
	find_at(r, "AA dG9rLXMzY3JldA", 3, 14, "GITHUB_TOKEN");	/* unpadded */
	SW_CHECK(sw_redact_find(r, "tok-s3cre t", 11, &off, NULL, NULL, 0) == 0);
	SW_CHECK(sw_redact_find(r, "", 0, &off, NULL, NULL, 0) == 0);
	/* the key is cut to the buffer */
	SW_CHECK(sw_redact_find(r, "tok-s3cret", 10, &off, NULL, key, sizeof(key)) == 1);
	SW_CHECK(strcmp(key, "GIT") == 0 && off == 0);
	SW_CHECKF(sw_redact_add(r, "AWS_SECRET_ACCESS_KEY", "wJalr/XUtnFEMI", 14, err,
				sizeof(err)) == 0, "%s", err);
	find_at(r, "a=wJalr%2FXUtnFEMI b=tok-s3cret", 2, 16, "AWS_SECRET_ACCE");
	find_at(r, "b=tok-s3cret a=wJalr/XUtnFEMI", 2, 10, "GITHUB_TOKEN");
	/* NUL bytes before it do not stop the search */
	memcpy(buf, "\0\0\0tok-s3cret", 13);
	SW_CHECK(sw_redact_find(r, buf, 13, &off, NULL, NULL, 0) == 1 && off == 3);
	/* an empty set finds nothing */
	{
		struct sw_redact *e = sw_redact_new();

		SW_CHECK(sw_redact_find(e, "tok-s3cret", 10, &off, NULL, NULL, 0) == 0);
		sw_redact_destroy(e);
	}
	/* random text with the value spelled in somewhere: the offset is where
	 * redaction starts its first marker */
	srand(7);
	for (i = 0; i < 2000; i++) {
		size_t at, olen;
		char *red;

		n = 20 + (size_t)rand() % 100;
		for (size_t k = 0; k < n; k++)
			buf[k] = (char)("abcdefgtok-s3r=%2F/"[rand() % 19]);
		at = (size_t)rand() % (n - 14);
		if (rand() % 2) {
			const char *v = rand() % 2 ? "tok-s3cret" : "wJalr%2fXUtnFEMI";

			memcpy(buf + at, v, strlen(v));
		}
		red = sw_redact_buf(r, buf, n, &olen, NULL);
		SW_CHECK(red != NULL);
		if (sw_redact_find(r, buf, n, &off, NULL, NULL, 0) == 1)
			SW_CHECKF(off < olen && memcmp(red + off, "[REDACTED:", 10) == 0 &&
					  memcmp(red, buf, off) == 0, "round %zu", i);
		else
			SW_CHECK(strstr(red, "[REDACTED:") == NULL);
		free(red);
	}
	sw_redact_destroy(r);
}

int main(void)
{
	SW_CHECK(sodium_init() >= 0);
	test_plain();
	test_splits();
	test_lines();
	test_base64();
	test_percent();
	test_hex();
	test_escaped();
	test_prefix();
	test_overlap();
	test_refused();
	test_json();
	test_property();
	test_find();
	printf("core_redact: ok\n");
	return 0;
}
