/*
 * The event-stream parser of the CLI (tools/cli/sse.c): the same stream
 * fed in one piece, split at every byte, split at every pair of bytes
 * and fed byte by byte must give the same events; the callback can stop
 * it; oversize lines and events fail; NULs in data are kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"
#include "sw_test.h"

struct rec {
	char buf[8192]; /* "event|data\n" per event, newlines in data as "\n" */
	size_t len;
	int count;
	int stop_at; /* return 7 from the stop_at-th event (1-based), 0 never */
};

static int record(const char *event, const char *data, size_t len, void *opaque)
{
	struct rec *r = opaque;
	size_t i;

	r->len += (size_t)snprintf(r->buf + r->len, sizeof(r->buf) - r->len, "%s|", event);
	for (i = 0; i < len && r->len + 3 < sizeof(r->buf); i++) {
		if (data[i] == '\n') {
			r->buf[r->len++] = '\\';
			r->buf[r->len++] = 'n';
		} else if (data[i] == '\0') {
			r->buf[r->len++] = '\\';
			r->buf[r->len++] = '0';
		} else {
			r->buf[r->len++] = data[i];
		}
	}
	SW_CHECK(r->len + 2 < sizeof(r->buf));
	r->buf[r->len++] = '\n';
	r->buf[r->len] = '\0';
	SW_CHECK(strlen(event) > 0);
	SW_CHECK(data[len] == '\0');
	return ++r->count == r->stop_at ? 7 : 0;
}

/* Feed s (n bytes) cut at the offsets cuts[0..ncuts) and return what was
 * recorded; *pending gets cli_sse_pending at the end. */
static void feed_cut(const char *s, size_t n, const size_t *cuts, int ncuts, struct rec *r,
		     int *pending)
{
	struct cli_sse *p;
	char err[256];
	size_t from = 0;
	int i;

	memset(r, 0, sizeof(*r));
	SW_CHECK((p = cli_sse_new(0, record, r)) != NULL);
	for (i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;

		SW_CHECKF(cli_sse_feed(p, s + from, to - from, err, sizeof(err)) == 0, "%s", err);
		from = to;
	}
	*pending = cli_sse_pending(p);
	cli_sse_destroy(p);
}

static void all_splits(const char *name, const char *s, size_t n, const char *expect,
		       int expect_pending)
{
	struct rec r;
	size_t i, j, cuts[2];
	int pending;

	feed_cut(s, n, NULL, 0, &r, &pending);
	SW_CHECKF(strcmp(r.buf, expect) == 0, "%s: whole:\n%s\nexpected:\n%s", name, r.buf,
		  expect);
	SW_CHECKF(pending == expect_pending, "%s: pending %d", name, pending);
	for (i = 0; i <= n; i++) {
		cuts[0] = i;
		feed_cut(s, n, cuts, 1, &r, &pending);
		SW_CHECKF(strcmp(r.buf, expect) == 0, "%s: cut at %zu:\n%s", name, i, r.buf);
		SW_CHECK(pending == expect_pending);
		for (j = i; j <= n; j++) {
			cuts[1] = j;
			feed_cut(s, n, cuts, 2, &r, &pending);
			SW_CHECKF(strcmp(r.buf, expect) == 0, "%s: cuts at %zu, %zu:\n%s", name,
				  i, j, r.buf);
			SW_CHECK(pending == expect_pending);
		}
	}
	/* byte by byte */
	{
		struct cli_sse *p;
		char err[256];

		memset(&r, 0, sizeof(r));
		SW_CHECK((p = cli_sse_new(0, record, &r)) != NULL);
		for (i = 0; i < n; i++)
			SW_CHECK(cli_sse_feed(p, s + i, 1, err, sizeof(err)) == 0);
		SW_CHECKF(strcmp(r.buf, expect) == 0, "%s: byte by byte:\n%s", name, r.buf);
		SW_CHECK(cli_sse_pending(p) == expect_pending);
		cli_sse_destroy(p);
	}
}

static void test_mixed(void)
{
	static const char s[] = ": keep-alive\r\n"
				"event: step\r\n"
				"data: {\"a\":1}\r\n"
				"\r\n"
				"data:first\n"
				"data: second\n"
				"\n"
				"event: run\r"
				"data: {\"b\":2}\r"
				"\r"
				"id: 5\n"
				"retry: 100\n"
				"data\n"
				"\n"
				"event: lonely\n"
				"\n"
				"data:  two spaces\n"
				"unknown: field\n"
				"\n"
				"event: step\n"
				"data: tail without its blank line";
	static const char expect[] = "step|{\"a\":1}\n"
				     "message|first\\nsecond\n"
				     "run|{\"b\":2}\n"
				     "message|\n"
				     "message| two spaces\n";

	all_splits("mixed", s, sizeof(s) - 1, expect, 1);
}

static void test_bom_and_nul(void)
{
	static const char bom[] = "\xef\xbb\xbf"
				  "event: x\n"
				  "data: 1\n\n";
	static const char nul[] = "data: a\0b\n\n";

	all_splits("bom", bom, sizeof(bom) - 1, "x|1\n", 0);
	all_splits("nul", nul, sizeof(nul) - 1, "message|a\\0b\n", 0);
	/* a BOM is only skipped at the very start */
	all_splits("late bom", "data: 1\n\n\xef\xbb\xbf"
			       "data: 2\n\n",
		   21, "message|1\n", 0);
}

static void test_stop(void)
{
	static const char s[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
	struct cli_sse *p;
	struct rec r;
	char err[256];

	memset(&r, 0, sizeof(r));
	r.stop_at = 2;
	SW_CHECK((p = cli_sse_new(0, record, &r)) != NULL);
	SW_CHECK(cli_sse_feed(p, s, sizeof(s) - 1, err, sizeof(err)) == 7);
	SW_CHECK(strcmp(r.buf, "message|1\nmessage|2\n") == 0);
	SW_CHECK(cli_sse_feed(p, "data: 4\n\n", 9, err, sizeof(err)) == 7);
	SW_CHECK(r.count == 2);
	cli_sse_destroy(p);
}

static void test_limits(void)
{
	struct cli_sse *p;
	struct rec r;
	char err[256];

	/* one line longer than the cap, fed in pieces */
	memset(&r, 0, sizeof(r));
	SW_CHECK((p = cli_sse_new(16, record, &r)) != NULL);
	SW_CHECK(cli_sse_feed(p, "data: 0123456", 13, err, sizeof(err)) == 0);
	SW_CHECK(cli_sse_feed(p, "789abcdef", 9, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "16 bytes") != NULL, "%s", err);
	SW_CHECK(cli_sse_feed(p, "\n\n", 2, err, sizeof(err)) == -1);
	SW_CHECK(r.count == 0);
	cli_sse_destroy(p);

	/* short lines whose data together exceed the cap */
	memset(&r, 0, sizeof(r));
	SW_CHECK((p = cli_sse_new(16, record, &r)) != NULL);
	SW_CHECK(cli_sse_feed(p, "data: 12345\ndata: 12345\n", 24, err, sizeof(err)) == 0);
	SW_CHECK(cli_sse_feed(p, "data: 12345\n", 12, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "larger than 16") != NULL, "%s", err);
	SW_CHECK(r.count == 0);
	cli_sse_destroy(p);

	/* exactly at the cap is fine */
	memset(&r, 0, sizeof(r));
	SW_CHECK((p = cli_sse_new(16, record, &r)) != NULL);
	SW_CHECK(cli_sse_feed(p, "data: 0123456789\n\n", 18, err, sizeof(err)) == 0);
	SW_CHECK(strcmp(r.buf, "message|0123456789\n") == 0);
	cli_sse_destroy(p);
}

int main(void)
{
	test_mixed();
	test_bom_and_nul();
	test_stop();
	test_limits();
	printf("sse ok\n");
	return 0;
}
