/*
 * frame_test: the frame codec (sw_frame.h) and the host side's validation
 * of what a runner sends (sw_sandbox_feed on an attached handle), with no
 * sandbox: byte-at-a-time feeding, every header rule, payload shapes and
 * protocol state, the outgoing queue over a real SOCK_SEQPACKET pair.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sw_sandbox.h"
#include "sw_test.h"

struct seen {
	unsigned types[64];
	uint32_t lens[64];
	size_t n;
	uint8_t last[64];
};

static int collect(void *arg, unsigned type, const uint8_t *p, uint32_t len)
{
	struct seen *s = arg;

	SW_CHECK(s->n < 64);
	s->types[s->n] = type;
	s->lens[s->n] = len;
	memcpy(s->last, p, len < 64 ? len : 64);
	s->n++;
	return 0;
}

static size_t put(uint8_t *buf, unsigned type, const void *p, uint32_t len)
{
	sw_frame_header(buf, (enum sw_frame_type)type, len);
	memcpy(buf + SW_FRAME_HDR, p, len);
	return SW_FRAME_HDR + len;
}

static void test_codec(void)
{
	uint8_t buf[256];
	size_t n = 0;
	struct seen s = {0};
	struct sw_frame_parser *p;
	char err[160];

	n += put(buf + n, SW_FRAME_STDOUT, "hello", 5);
	n += put(buf + n, SW_FRAME_EXIT, "{}", 2);
	n += put(buf + n, SW_FRAME_STDERR, "", 0);
	/* One byte at a time gives the same frames as all at once. */
	SW_CHECK((p = sw_frame_parser_new(SW_FRAME_FROM_RUNNER)) != NULL);
	for (size_t i = 0; i < n; i++)
		SW_CHECK(sw_frame_parser_feed(p, buf + i, 1, collect, &s, err, sizeof(err)) == 0);
	SW_CHECK(s.n == 3);
	SW_CHECK(s.types[0] == SW_FRAME_STDOUT && s.lens[0] == 5);
	SW_CHECK(s.types[1] == SW_FRAME_EXIT && s.lens[1] == 2);
	SW_CHECK(s.types[2] == SW_FRAME_STDERR && s.lens[2] == 0);
	SW_CHECK(!sw_frame_parser_partial(p));
	sw_frame_parser_destroy(p);

	memset(&s, 0, sizeof(s));
	SW_CHECK((p = sw_frame_parser_new(SW_FRAME_FROM_RUNNER)) != NULL);
	SW_CHECK(sw_frame_parser_feed(p, buf, n, collect, &s, err, sizeof(err)) == 0);
	SW_CHECK(s.n == 3 && memcmp(s.last, "", 0) == 0);
	/* Half a header is partial. */
	SW_CHECK(sw_frame_parser_feed(p, buf, 3, collect, &s, err, sizeof(err)) == 0);
	SW_CHECK(sw_frame_parser_partial(p));
	sw_frame_parser_destroy(p);
}

/* decode(p, k) for every k < n is refused, and so is p with a byte more. */
static void refuse_cuts(int (*decode)(const uint8_t *, size_t, char *, size_t), const uint8_t *p,
			size_t n)
{
	uint8_t *more = malloc(n + 1);
	char err[160];

	SW_CHECK(more != NULL);
	for (size_t k = 0; k < n; k++)
		SW_CHECKF(decode(p, k, err, sizeof(err)) == -1, "%zu of %zu bytes taken", k, n);
	memcpy(more, p, n);
	more[n] = 'x';
	SW_CHECK(decode(more, n + 1, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "1 bytes after its last field") != NULL, "%s", err);
	free(more);
}

static int exec_dec(const uint8_t *p, size_t n, char *err, size_t errlen)
{
	struct sw_frame_exec x;
	int rc = sw_frame_exec_decode(p, n, &x, err, errlen);

	if (rc == 0) {
		/* what a decode gives is whole: counts, strings without NUL */
		SW_CHECK(x.argc >= 1 && x.argc <= SW_FRAME_ARGV_MAX && x.argv[x.argc] == NULL);
		SW_CHECK(x.envc <= SW_FRAME_ENV_MAX && x.env[x.envc] == NULL);
		for (uint32_t i = 0; i < x.argc; i++)
			SW_CHECK((uint8_t *)x.argv[i] + strlen(x.argv[i]) <
				 (uint8_t *)x.mem + x.mem_len);
		SW_CHECK(x.in == NULL ||
			 (uint8_t *)x.in + x.in_len <= (uint8_t *)x.mem + x.mem_len);
		free(x.mem);
	}
	return rc;
}

static int inject_dec(const uint8_t *p, size_t n, char *err, size_t errlen)
{
	struct sw_frame_field a, b;

	return sw_frame_inject_decode(p, n, &a, &b, err, errlen);
}

static int answer_dec(const uint8_t *p, size_t n, char *err, size_t errlen)
{
	struct sw_frame_answer a;

	return sw_frame_answer_decode(p, n, &a, err, errlen);
}

static void put32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

/* The host's binary payloads (EXEC, INJECT_ENV, CRED_ANSWER): what is
 * encoded decodes the same; a cut, a byte more, a length past the end, a
 * NUL in text, counts and a status out of range are refused; random
 * corruption never gives a decode that is not whole. */
static void test_payloads(void)
{
	static const char *const argv[] = {"python3", "-c", "print(1)", NULL};
	static const char *const env[] = {"A=1", "B=", NULL};
	const char *many[SW_FRAME_ARGV_MAX + 2];
	struct sw_frame_field f1, f2;
	struct sw_frame_answer ans;
	struct sw_frame_exec x;
	char err[160];
	uint8_t *p, *q;
	size_t n, m;
	uint32_t seed = 12345;

	SW_CHECK((p = sw_frame_exec_encode(argv, env, "/workspace", "in\0put", 6, 1,
					   7ULL * 86400 * 1000 + 5, &n)) != NULL);
	SW_CHECK(sw_frame_exec_decode(p, n, &x, err, sizeof(err)) == 0);
	SW_CHECK(x.argc == 3 && x.envc == 2 && strcmp(x.cwd, "/workspace") == 0);
	SW_CHECK(strcmp(x.argv[2], "print(1)") == 0 && strcmp(x.env[1], "B=") == 0);
	SW_CHECK(x.timeout_ms == 7ULL * 86400 * 1000 + 5);
	SW_CHECK(x.in_len == 6 && memcmp(x.in, "in\0put", 6) == 0); /* stdin may hold NUL */
	free(x.mem);
	refuse_cuts(exec_dec, p, n);
	/* the cwd's length past the end; a NUL in it; counts; flags */
	SW_CHECK((q = malloc(n)) != NULL);
	memcpy(q, p, n);
	put32(q + 20, 0xffffffffu);
	SW_CHECK(exec_dec(q, n, err, sizeof(err)) == -1 && strstr(err, "past its end") != NULL);
	memcpy(q, p, n);
	q[24 + 3] = '\0';
	SW_CHECK(exec_dec(q, n, err, sizeof(err)) == -1 && strstr(err, "holds NUL") != NULL);
	memcpy(q, p, n);
	put32(q, 0);
	SW_CHECK(exec_dec(q, n, err, sizeof(err)) == -1 && strstr(err, "out of range") != NULL);
	put32(q, SW_FRAME_ARGV_MAX + 1);
	SW_CHECK(exec_dec(q, n, err, sizeof(err)) == -1 && strstr(err, "out of range") != NULL);
	memcpy(q, p, n);
	put32(q + 4, SW_FRAME_ENV_MAX + 1);
	SW_CHECK(exec_dec(q, n, err, sizeof(err)) == -1 && strstr(err, "out of range") != NULL);
	memcpy(q, p, n);
	put32(q + 8, 2);
	SW_CHECK(exec_dec(q, n, err, sizeof(err)) == -1 && strstr(err, "flags") != NULL);
	/* random corruption: refused, or whole */
	for (int i = 0; i < 200000; i++) {
		memcpy(q, p, n);
		for (int k = 0; k < 1 + i % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			q[(seed >> 8) % n] = (uint8_t)(seed >> 24);
		}
		(void)exec_dec(q, n, err, sizeof(err));
	}
	free(q);
	free(p);
	/* without stdin there is none; argc 0 and too many entries are not
	 * encoded */
	SW_CHECK((p = sw_frame_exec_encode(argv, NULL, "/", NULL, 0, 0, 1, &n)) != NULL);
	SW_CHECK(sw_frame_exec_decode(p, n, &x, err, sizeof(err)) == 0);
	SW_CHECK(x.in == NULL && x.in_len == 0 && x.envc == 0 && x.env[0] == NULL);
	free(x.mem);
	free(p);
	SW_CHECK(sw_frame_exec_encode(argv + 3, NULL, "/", NULL, 0, 0, 1, &n) == NULL);
	for (m = 0; m < SW_FRAME_ARGV_MAX + 1; m++)
		many[m] = "x";
	many[m] = NULL;
	SW_CHECK(sw_frame_exec_encode(many, NULL, "/", NULL, 0, 0, 1, &n) == NULL);
	many[SW_FRAME_ARGV_MAX] = NULL;
	SW_CHECK((p = sw_frame_exec_encode(many, NULL, "/", NULL, 0, 0, 1, &n)) != NULL);
	SW_CHECK(exec_dec(p, n, err, sizeof(err)) == 0);
	free(p);

	SW_CHECK((p = sw_frame_inject_encode("TOKEN", "v\"al\nue", &n)) != NULL);
	SW_CHECK(sw_frame_inject_decode(p, n, &f1, &f2, err, sizeof(err)) == 0);
	SW_CHECK(f1.len == 5 && memcmp(f1.p, "TOKEN", 5) == 0);
	SW_CHECK(f2.len == 7 && memcmp(f2.p, "v\"al\nue", 7) == 0);
	refuse_cuts(inject_dec, p, n);
	p[4 + 2] = '\0';
	SW_CHECK(inject_dec(p, n, err, sizeof(err)) == -1 && strstr(err, "holds NUL") != NULL);
	free(p);

	SW_CHECK((p = sw_frame_answer_encode(7, 0, "GH_TOKEN", "ghp_x", &n)) != NULL);
	SW_CHECK(sw_frame_answer_decode(p, n, &ans, err, sizeof(err)) == 0);
	SW_CHECK(ans.id == 7 && ans.status == 0 && ans.a.len == 8 && ans.b.len == 5 &&
		 memcmp(ans.b.p, "ghp_x", 5) == 0);
	refuse_cuts(answer_dec, p, n);
	put32(p + 4, 4);
	SW_CHECK(answer_dec(p, n, err, sizeof(err)) == -1 && strstr(err, "status 4") != NULL);
	free(p);
	SW_CHECK((p = sw_frame_answer_encode(8, 1, "denied", "not by policy", &n)) != NULL);
	SW_CHECK(sw_frame_answer_decode(p, n, &ans, err, sizeof(err)) == 0);
	SW_CHECK(ans.id == 8 && ans.status == 1 && ans.a.len == 6 && ans.b.len == 13);
	free(p);
	SW_CHECK(sw_frame_answer_encode(9, 4, "x", "y", &n) == NULL);
}

/* Feed hdr to a fresh parser; expect a failure mentioning want. */
static void expect_bad(const uint8_t hdr[SW_FRAME_HDR], uint32_t allowed, const char *want)
{
	struct sw_frame_parser *p = sw_frame_parser_new(allowed);
	struct seen s = {0};
	char err[160];

	SW_CHECK(p != NULL);
	SW_CHECK(sw_frame_parser_feed(p, hdr, SW_FRAME_HDR, collect, &s, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
	SW_CHECK(s.n == 0);
	/* It stays failed. */
	SW_CHECK(sw_frame_parser_feed(p, "", 0, collect, &s, err, sizeof(err)) == -1);
	sw_frame_parser_destroy(p);
}

static void test_header_rules(void)
{
	uint8_t h[SW_FRAME_HDR];

	sw_frame_header(h, SW_FRAME_STDOUT, SW_FRAME_MAX + 1);
	expect_bad(h, SW_FRAME_FROM_RUNNER, "exceeds");
	sw_frame_header(h, SW_FRAME_STDOUT, 0xffffffffu);
	expect_bad(h, SW_FRAME_FROM_RUNNER, "exceeds");
	sw_frame_header(h, SW_FRAME_STDOUT, 1);
	h[1] = 1;
	expect_bad(h, SW_FRAME_FROM_RUNNER, "flags");
	sw_frame_header(h, SW_FRAME_STDOUT, 1);
	h[3] = 0x80;
	expect_bad(h, SW_FRAME_FROM_RUNNER, "reserved");
	sw_frame_header(h, SW_FRAME_STDOUT, 1);
	h[0] = 0;
	expect_bad(h, SW_FRAME_FROM_RUNNER, "not accepted");
	h[0] = 200;
	expect_bad(h, SW_FRAME_FROM_RUNNER, "not accepted");
	/* Direction: a runner may not send EXEC, the host may not send EXIT. */
	sw_frame_header(h, SW_FRAME_EXEC, 2);
	expect_bad(h, SW_FRAME_FROM_RUNNER, "EXEC");
	sw_frame_header(h, SW_FRAME_EXIT, 2);
	expect_bad(h, SW_FRAME_FROM_HOST, "EXIT");
	/* The exact maximum is fine. */
	{
		struct sw_frame_parser *p = sw_frame_parser_new(SW_FRAME_FROM_RUNNER);
		uint8_t *big = calloc(1, SW_FRAME_HDR + SW_FRAME_MAX);
		struct seen s = {0};
		char err[160];

		SW_CHECK(p != NULL && big != NULL);
		sw_frame_header(big, SW_FRAME_STDOUT, SW_FRAME_MAX);
		SW_CHECK(sw_frame_parser_feed(p, big, 100, collect, &s, err, sizeof(err)) == 0);
		SW_CHECK(sw_frame_parser_feed(p, big + 100, SW_FRAME_HDR + SW_FRAME_MAX - 100,
					      collect, &s, err, sizeof(err)) == 0);
		SW_CHECK(s.n == 1 && s.lens[0] == SW_FRAME_MAX);
		sw_frame_parser_destroy(p);
		free(big);
	}
}

static int stop_cb(void *arg, unsigned type, const uint8_t *p, uint32_t len)
{
	(void)arg;
	(void)type;
	(void)p;
	(void)len;
	return -1;
}

static void test_callback_stop(void)
{
	struct sw_frame_parser *p = sw_frame_parser_new(SW_FRAME_FROM_RUNNER);
	uint8_t buf[64];
	size_t n = put(buf, SW_FRAME_STDOUT, "x", 1);
	char err[160];

	SW_CHECK(sw_frame_parser_feed(p, buf, n, stop_cb, NULL, err, sizeof(err)) == -1);
	SW_CHECK(strcmp(err, "stopped") == 0);
	sw_frame_parser_destroy(p);
}

/* ---- the host side on an attached handle -------------------------------- */

struct evlog {
	char out[256];
	size_t out_len;
	int exits;
	struct sw_sandbox_exit last;
	int errors;
	int creds;
};

static void ev_output(void *arg, int stream, const uint8_t *buf, size_t len)
{
	struct evlog *l = arg;

	SW_CHECK(stream == 1 || stream == 2);
	SW_CHECK(l->out_len + len < sizeof(l->out));
	memcpy(l->out + l->out_len, buf, len);
	l->out_len += len;
}

static void ev_exit(void *arg, const struct sw_sandbox_exit *ex)
{
	struct evlog *l = arg;

	l->exits++;
	l->last = *ex;
	l->last.error = NULL;
}

static void ev_error(void *arg, const char *msg)
{
	struct evlog *l = arg;

	(void)msg;
	l->errors++;
}

static void ev_cred(void *arg, const char *json, size_t len)
{
	struct evlog *l = arg;

	(void)json;
	(void)len;
	l->creds++;
}

static const struct sw_sandbox_events evs = {ev_output, ev_exit, ev_error, ev_cred};

/* An attached handle on one end of a socketpair; *peer gets the other. */
static struct sw_sandbox *attached(int *peer)
{
	struct sw_sandbox_limits lim = {.wall_ms = 1000};
	char err[256];
	int sv[2];
	struct sw_sandbox *sb;

	SW_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	SW_CHECK((sb = sw_sandbox_attach(sv[0], &lim, false, err, sizeof(err))) != NULL);
	*peer = sv[1];
	return sb;
}

static int feed_frame(struct sw_sandbox *sb, unsigned type, const char *payload, struct evlog *l)
{
	uint8_t buf[1024];
	size_t n = put(buf, type, payload, (uint32_t)strlen(payload));

	return sw_sandbox_feed(sb, buf, n, &evs, l);
}

static const char *READY = "{\"version\":2,\"pid\":1}";
static const char *EXIT0 = "{\"status\":0,\"signal\":0,\"timed_out\":false,\"killed\":false,"
			   "\"usage\":{\"utime_us\":1,\"stime_us\":2,\"maxrss_kb\":3}}";

/* A fresh ready handle with an exec started, then one bad frame. */
static void expect_protocol_error(unsigned type, const char *payload, bool start_exec,
				  const char *want)
{
	static const char *const argv[] = {"true", NULL};
	struct sw_sandbox_exec ex = {.argv = argv};
	struct evlog l = {0};
	char err[256];
	int peer;
	struct sw_sandbox *sb = attached(&peer);

	SW_CHECK(feed_frame(sb, SW_FRAME_READY, READY, &l) == 0);
	SW_CHECK(sw_sandbox_ready(sb));
	if (start_exec)
		SW_CHECK(sw_sandbox_exec_start(sb, &ex, err, sizeof(err)) == 0);
	SW_CHECK(feed_frame(sb, type, payload, &l) == -1);
	SW_CHECK(sw_sandbox_dead(sb));
	SW_CHECKF(strstr(sw_sandbox_error(sb), want) != NULL, "error '%s' lacks '%s'",
		  sw_sandbox_error(sb), want);
	/* Dead stays dead, and nothing more is dispatched. */
	SW_CHECK(feed_frame(sb, SW_FRAME_STDOUT, "x", &l) == -1);
	SW_CHECK(l.out_len == 0 && l.exits == 0);
	sw_sandbox_destroy(sb, NULL);
	close(peer);
}

static void test_host_side(void)
{
	static const char *const argv[] = {"python3", "-c", "print(1)", NULL};
	static const char *const env[] = {"A=1", NULL};
	struct sw_sandbox_exec ex = {.argv = argv, .env = env, .stdin_data = "in", .stdin_len = 2};
	struct evlog l = {0};
	char err[256], rec[SW_FRAME_RECORD_MAX];
	int peer;
	ssize_t n;
	struct sw_sandbox *sb = attached(&peer);

	/* Nothing may be sent before READY. */
	SW_CHECK(sw_sandbox_exec_start(sb, &ex, err, sizeof(err)) == -1);
	SW_CHECK(feed_frame(sb, SW_FRAME_READY, READY, &l) == 0);
	SW_CHECK(sw_sandbox_exec_start(sb, &ex, err, sizeof(err)) == 0);
	SW_CHECK(sw_sandbox_busy(sb));
	SW_CHECK(sw_sandbox_exec_start(sb, &ex, err, sizeof(err)) == -1);
	SW_CHECK(strstr(err, "busy") != NULL);
	SW_CHECK(sw_sandbox_inject_env(sb, "TOKEN", "s\"e\\c\nret", err, sizeof(err)) == 0);
	SW_CHECK(sw_sandbox_inject_env(sb, "BAD NAME", "x", err, sizeof(err)) == -1);
	SW_CHECK(sw_sandbox_inject_env(sb, "X", "\xff", err, sizeof(err)) == -1);
	SW_CHECK(sw_sandbox_want_write(sb));
	SW_CHECK(sw_sandbox_flush(sb) == 0);
	SW_CHECK(!sw_sandbox_want_write(sb));
	/* What went out is an EXEC then an INJECT_ENV, well formed. */
	n = recv(peer, rec, sizeof(rec), 0);
	SW_CHECK(n > SW_FRAME_HDR);
	{
		struct sw_frame_parser *p = sw_frame_parser_new(SW_FRAME_FROM_HOST);
		struct seen s = {0};

		SW_CHECK(sw_frame_parser_feed(p, rec, (size_t)n, collect, &s, err, sizeof(err)) ==
			 0);
		SW_CHECK(s.n == 2 && s.types[0] == SW_FRAME_EXEC &&
			 s.types[1] == SW_FRAME_INJECT_ENV);
		sw_frame_parser_destroy(p);
	}
	{
		/* the runner's decoders read back what was sent */
		const uint8_t *r8 = (const uint8_t *)rec;
		uint32_t l1 = (uint32_t)r8[4] | (uint32_t)r8[5] << 8 | (uint32_t)r8[6] << 16 |
			      (uint32_t)r8[7] << 24;
		const uint8_t *p2 = r8 + SW_FRAME_HDR + l1;
		struct sw_frame_field name, value;
		struct sw_frame_exec x;

		SW_CHECK(sw_frame_exec_decode(r8 + SW_FRAME_HDR, l1, &x, err, sizeof(err)) == 0);
		SW_CHECK(x.argc == 3 && strcmp(x.argv[0], "python3") == 0 &&
			 strcmp(x.argv[1], "-c") == 0 && strcmp(x.argv[2], "print(1)") == 0 &&
			 x.argv[3] == NULL);
		free(x.mem);
		SW_CHECK(sw_frame_inject_decode(p2 + SW_FRAME_HDR,
						(size_t)n - SW_FRAME_HDR * 2 - l1, &name, &value,
						err, sizeof(err)) == 0);
		SW_CHECK(name.len == 5 && memcmp(name.p, "TOKEN", 5) == 0);
		SW_CHECK(value.len == 9 && memcmp(value.p, "s\"e\\c\nret", 9) == 0);
	}

	SW_CHECK(feed_frame(sb, SW_FRAME_STDOUT, "1\n", &l) == 0);
	SW_CHECK(feed_frame(sb, SW_FRAME_ERROR, "{\"message\":\"note\"}", &l) == 0);
	SW_CHECK(feed_frame(sb, SW_FRAME_CRED_REQUEST, "{\"name\":\"X\"}", &l) == 0);
	SW_CHECK(feed_frame(sb, SW_FRAME_EXIT, EXIT0, &l) == 0);
	SW_CHECK(l.out_len == 2 && memcmp(l.out, "1\n", 2) == 0);
	SW_CHECK(l.exits == 1 && l.last.status == 0 && l.last.usage.maxrss_kb == 3);
	SW_CHECK(l.errors == 1 && l.creds == 1);
	SW_CHECK(!sw_sandbox_busy(sb) && !sw_sandbox_dead(sb));
	sw_sandbox_destroy(sb, NULL);
	close(peer);

	/* Protocol state and payload shapes. */
	expect_protocol_error(SW_FRAME_STDOUT, "x", false, "no exec running");
	expect_protocol_error(SW_FRAME_EXIT, EXIT0, false, "EXIT with no exec");
	expect_protocol_error(SW_FRAME_READY, READY, false, "second READY");
	expect_protocol_error(SW_FRAME_EXIT, "{\"status\":\"0\"}", true, "bad EXIT");
	expect_protocol_error(SW_FRAME_EXIT, "not json", true, "not a JSON object");
	expect_protocol_error(SW_FRAME_EXIT, "[1]", true, "not a JSON object");
	expect_protocol_error(SW_FRAME_EXIT,
			      "{\"status\":0,\"signal\":0,\"timed_out\":false,\"killed\":false,"
			      "\"usage\":{\"utime_us\":1,\"stime_us\":2,\"maxrss_kb\":3},"
			      "\"extra\":1}",
			      true, "bad EXIT");
	expect_protocol_error(SW_FRAME_EXIT,
			      "{\"status\":-1,\"signal\":0,\"timed_out\":false,\"killed\":false,"
			      "\"usage\":{\"utime_us\":1,\"stime_us\":2,\"maxrss_kb\":3}}",
			      true, "out of range");
	expect_protocol_error(SW_FRAME_ERROR, "{\"message\":5}", true, "bad ERROR");
	expect_protocol_error(SW_FRAME_CRED_REQUEST, "\"str\"", true, "not a JSON object");

	/* Attached after someone else took READY: usable at once, and a
	 * READY now is one too many. */
	{
		struct sw_sandbox_limits lim = {.wall_ms = 1000};
		int sv[2];
		struct sw_sandbox *sb2;

		SW_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
		SW_CHECK((sb2 = sw_sandbox_attach(sv[0], &lim, true, err, sizeof(err))) != NULL);
		SW_CHECK(sw_sandbox_ready(sb2));
		SW_CHECK(sw_sandbox_exec_start(sb2, &ex, err, sizeof(err)) == 0);
		SW_CHECK(feed_frame(sb2, SW_FRAME_READY, READY, &l) == -1);
		sw_sandbox_destroy(sb2, NULL);
		close(sv[1]);
	}
	/* Anything before READY, and a READY of another version (1: a runner
	 * that reads JSON from the host). */
	{
		struct sw_sandbox *sb2 = attached(&peer);

		SW_CHECK(feed_frame(sb2, SW_FRAME_STDOUT, "x", &l) == -1);
		SW_CHECK(strstr(sw_sandbox_error(sb2), "before READY") != NULL);
		sw_sandbox_destroy(sb2, NULL);
		close(peer);
		sb2 = attached(&peer);
		SW_CHECK(feed_frame(sb2, SW_FRAME_READY, "{\"version\":1,\"pid\":1}", &l) == -1);
		SW_CHECK(strstr(sw_sandbox_error(sb2), "version") != NULL);
		sw_sandbox_destroy(sb2, NULL);
		close(peer);
	}
}

/* Over the socket: an oversized record, EOF mid-frame, EOF. */
static void test_socket_read(void)
{
	struct evlog l = {0};
	uint8_t *big = calloc(1, SW_FRAME_RECORD_MAX + 100);
	uint8_t hdr[SW_FRAME_HDR];
	int peer;
	struct sw_sandbox *sb;

	SW_CHECK(big != NULL);
	sb = attached(&peer);
	SW_CHECK(send(peer, big, SW_FRAME_RECORD_MAX + 100, 0) == SW_FRAME_RECORD_MAX + 100);
	SW_CHECK(sw_sandbox_read(sb, &evs, &l) == -1);
	SW_CHECK(strstr(sw_sandbox_error(sb), "record over") != NULL);
	sw_sandbox_destroy(sb, NULL);
	close(peer);

	sb = attached(&peer);
	sw_frame_header(hdr, SW_FRAME_READY, 10);
	SW_CHECK(send(peer, hdr, sizeof(hdr), 0) == sizeof(hdr));
	close(peer);
	SW_CHECK(sw_sandbox_read(sb, &evs, &l) == -1);
	SW_CHECK(strstr(sw_sandbox_error(sb), "mid-frame") != NULL);
	sw_sandbox_destroy(sb, NULL);

	sb = attached(&peer);
	SW_CHECK(sw_sandbox_read(sb, &evs, &l) == 0); /* nothing there: no block */
	close(peer);
	SW_CHECK(sw_sandbox_read(sb, &evs, &l) == -1);
	SW_CHECK(strcmp(sw_sandbox_error(sb), "tool runner exited") == 0);
	sw_sandbox_destroy(sb, NULL);
	free(big);
}

/* The out queue splits large frames into records a receiver can take. */
static void test_outq(void)
{
	struct sw_frame_outq q = {0};
	size_t big = 300000, got = 0;
	uint8_t *payload = malloc(big), *rec = malloc(SW_FRAME_RECORD_MAX);
	struct sw_frame_parser *p = sw_frame_parser_new(SW_FRAME_FROM_RUNNER);
	struct seen s = {0};
	char err[160];
	int sv[2];

	SW_CHECK(payload && rec && p);
	memset(payload, 'a', big);
	SW_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	SW_CHECK(sw_frame_outq_push(&q, SW_FRAME_STDOUT, payload, big) == 0);
	SW_CHECK(sw_frame_outq_push(&q, SW_FRAME_STDOUT, payload, SW_FRAME_MAX + 1) == -1);
	while (sw_frame_outq_pending(&q) > 0 || got < big + SW_FRAME_HDR) {
		ssize_t n;

		SW_CHECK(sw_frame_outq_flush(&q, sv[0]) == 0);
		n = recv(sv[1], rec, SW_FRAME_RECORD_MAX, MSG_DONTWAIT);
		if (n > 0) {
			SW_CHECK((size_t)n <= SW_FRAME_RECORD_MAX);
			got += (size_t)n;
			SW_CHECK(sw_frame_parser_feed(p, rec, (size_t)n, collect, &s, err,
						      sizeof(err)) == 0);
		}
	}
	SW_CHECK(s.n == 1 && s.lens[0] == big);
	sw_frame_outq_free(&q);
	sw_frame_parser_destroy(p);
	close(sv[0]);
	close(sv[1]);
	free(payload);
	free(rec);
}

int main(void)
{
	test_codec();
	test_payloads();
	test_header_rules();
	test_callback_stop();
	test_host_side();
	test_socket_read();
	test_outq();
	printf("frame_test: ok\n");
	return 0;
}
