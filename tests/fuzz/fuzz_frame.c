/*
 * libFuzzer target for the host side of the sandbox protocol: everything a
 * (hostile) tool runner can send reaches sw_sandbox_feed, which must never
 * crash, leak, allocate beyond one frame, or dispatch anything after a
 * protocol error. The same bytes also go through a runner-side parser
 * (sw_frame_parser with the host's frame types) and the runner's decoders
 * of the host's binary payloads (EXEC, INJECT_ENV, CRED_ANSWER: refused, or
 * whole), and, when asked, through the variant loader.
 *
 * Input: flags u8 | chunk u8 | stream...
 *   flags & 1  feed a valid READY first (so the state machine gets past it)
 *   flags & 2  and start an exec (so output and EXIT are legal)
 *   flags & 4  parse the stream as a variant document instead
 *   chunk      the stream is fed chunk+1 bytes at a time
 *
 * With SW_FUZZ_FRAME_SEEDS=DIR in the environment, LLVMFuzzerInitialize
 * writes a few valid conversations there first (the ctest uses it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sw_sandbox.h"

struct state {
	struct sw_sandbox *sb;
	int exits;
};

static void on_output(void *arg, int stream, const uint8_t *buf, size_t len)
{
	struct state *s = arg;

	if ((stream != 1 && stream != 2) || len > SW_FRAME_MAX || (len > 0 && buf == NULL) ||
	    !sw_sandbox_busy(s->sb))
		abort();
}

static void on_exit_ev(void *arg, const struct sw_sandbox_exit *ex)
{
	struct state *s = arg;

	if (ex->status < -1 || ex->status > 255 || (ex->status == -1) != (ex->signal > 0) ||
	    ex->usage.utime_us < 0 || (ex->error != NULL && strlen(ex->error) > SW_FRAME_MAX))
		abort();
	s->exits++;
}

static void on_error(void *arg, const char *msg)
{
	(void)arg;
	if (msg == NULL)
		abort();
}

static void on_cred(void *arg, const char *json, size_t len)
{
	(void)arg;
	if (json == NULL || len < 2 || json[0] != '{')
		abort();
}

static const struct sw_sandbox_events evs = {on_output, on_exit_ev, on_error, on_cred};

static size_t put(uint8_t *buf, unsigned type, const char *payload)
{
	size_t n = strlen(payload);

	sw_frame_header(buf, (enum sw_frame_type)type, (uint32_t)n);
	memcpy(buf + SW_FRAME_HDR, payload, n);
	return SW_FRAME_HDR + n;
}

static const char *READY = "{\"version\":2,\"pid\":1}";

static void write_seed(const char *dir, int i, uint8_t flags, const uint8_t *b, size_t n)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/seed-%d", dir, i);
	if ((f = fopen(path, "wb")) == NULL)
		return;
	fputc(flags, f);
	fputc(i * 7, f);
	fwrite(b, 1, n, f);
	fclose(f);
}

static void write_seeds(const char *dir)
{
	uint8_t b[4096];
	size_t n;
	int i = 0;

	n = put(b, SW_FRAME_READY, READY);
	write_seed(dir, i++, 0, b, n);
	n = put(b, SW_FRAME_STDOUT, "hello\n");
	n += put(b + n, SW_FRAME_STDERR, "oops\n");
	n += put(b + n, SW_FRAME_ERROR, "{\"message\":\"note\"}");
	n += put(b + n, SW_FRAME_EXIT,
		 "{\"status\":0,\"signal\":0,\"timed_out\":false,\"killed\":false,"
		 "\"usage\":{\"utime_us\":10,\"stime_us\":20,\"maxrss_kb\":30}}");
	write_seed(dir, i++, 3, b, n);
	n = put(b, SW_FRAME_EXIT,
		"{\"status\":-1,\"signal\":9,\"timed_out\":true,\"killed\":false,"
		"\"usage\":{\"utime_us\":0,\"stime_us\":0,\"maxrss_kb\":0},\"error\":\"x\"}");
	write_seed(dir, i++, 3, b, n);
	n = put(b, SW_FRAME_CRED_REQUEST, "{\"name\":\"GITHUB_TOKEN\",\"reason\":\"push\"}");
	write_seed(dir, i++, 1, b, n);
	n = put(b, SW_FRAME_STDOUT, "partial");
	write_seed(dir, i++, 3, b, n - 3);
	n = put(b, SW_FRAME_READY, READY);
	n += put(b + n, SW_FRAME_READY, READY);
	write_seed(dir, i++, 0, b, n);
	{
		/* what the host sends, for the runner's decoders */
		static const char *const argv[] = {"sh", "-c", "echo hi", NULL};
		static const char *const env[] = {"A=1", NULL};
		uint8_t *e = sw_frame_exec_encode(argv, env, "/workspace", "in", 2, 1, 1000, &n);
		size_t m = 0, k;

		if (e != NULL && n + 3 * SW_FRAME_HDR + 64 < sizeof(b)) {
			sw_frame_header(b, SW_FRAME_EXEC, (uint32_t)n);
			memcpy(b + SW_FRAME_HDR, e, n);
			m = SW_FRAME_HDR + n;
		}
		free(e);
		if ((e = sw_frame_inject_encode("TOKEN", "v", &k)) != NULL) {
			sw_frame_header(b + m, SW_FRAME_INJECT_ENV, (uint32_t)k);
			memcpy(b + m + SW_FRAME_HDR, e, k);
			m += SW_FRAME_HDR + k;
		}
		free(e);
		if ((e = sw_frame_answer_encode(1, 1, "denied", "no", &k)) != NULL) {
			sw_frame_header(b + m, SW_FRAME_CRED_ANSWER, (uint32_t)k);
			memcpy(b + m + SW_FRAME_HDR, e, k);
			m += SW_FRAME_HDR + k;
		}
		free(e);
		write_seed(dir, i++, 0, b, m);
	}
	n = (size_t)snprintf(
	    (char *)b, sizeof(b),
	    "{\"name\":\"v\",\"description\":\"d\",\"offers\":[\"shell\"],"
	    "\"ro_binds\":[{\"path\":\"/usr\"},{\"path\":\"/lib\",\"optional\":true}],"
	    "\"limits\":{\"nproc\":1,\"memory_bytes\":1,\"cpu_seconds\":1,"
	    "\"file_size_bytes\":1,\"nofile\":1,\"wall_ms\":1}}");
	write_seed(dir, i++, 4, b, n);
	n = (size_t)snprintf(
	    (char *)b, sizeof(b),
	    "{\"name\":\"v\",\"description\":\"d\",\"offers\":[\"shell\"],"
	    "\"ro_binds\":[{\"path\":\"/usr\"},{\"path\":\"/var/lib/v/x\",\"at\":\"/opt/x\"}],"
	    "\"env_path\":[\"/opt/x/bin\",\"/usr/bin\"],"
	    "\"limits\":{\"nproc\":1,\"memory_bytes\":1,\"cpu_seconds\":1,"
	    "\"file_size_bytes\":1,\"nofile\":1,\"wall_ms\":1}}");
	write_seed(dir, i++, 4, b, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("SW_FUZZ_FRAME_SEEDS");

	(void)argc;
	(void)argv;
	if (seeds != NULL)
		write_seeds(seeds);
	return 0;
}

/* A field decoded lies within the payload and holds no NUL if text. */
static void field_in(const struct sw_frame_field *f, const uint8_t *p, uint32_t len, int text)
{
	if (f->p < p || f->len > len || f->p + f->len > p + len ||
	    (text && memchr(f->p, '\0', f->len) != NULL))
		abort();
}

static int collect(void *arg, unsigned type, const uint8_t *p, uint32_t len)
{
	struct sw_frame_field a, b;
	struct sw_frame_answer ans;
	struct sw_frame_exec x;
	char err[256];

	(void)arg;
	if (type == 0 || type > SW_FRAME_TYPE_MAX || !(SW_FRAME_FROM_HOST & SW_FRAME_BIT(type)) ||
	    len > SW_FRAME_MAX || (len > 0 && p == NULL))
		abort();
	if (type == SW_FRAME_EXEC && sw_frame_exec_decode(p, len, &x, err, sizeof(err)) == 0) {
		const uint8_t *end = (const uint8_t *)x.mem + x.mem_len;

		if (x.argc == 0 || x.argc > SW_FRAME_ARGV_MAX || x.argv[x.argc] != NULL ||
		    x.envc > SW_FRAME_ENV_MAX || x.env[x.envc] != NULL ||
		    (const uint8_t *)x.cwd + strlen(x.cwd) >= end ||
		    (x.in != NULL && (const uint8_t *)x.in + x.in_len > end))
			abort();
		for (uint32_t i = 0; i < x.argc; i++)
			if ((const uint8_t *)x.argv[i] + strlen(x.argv[i]) >= end)
				abort();
		for (uint32_t i = 0; i < x.envc; i++)
			if ((const uint8_t *)x.env[i] + strlen(x.env[i]) >= end)
				abort();
		free(x.mem);
	}
	if (type == SW_FRAME_INJECT_ENV &&
	    sw_frame_inject_decode(p, len, &a, &b, err, sizeof(err)) == 0) {
		field_in(&a, p, len, 1);
		field_in(&b, p, len, 1);
	}
	if (type == SW_FRAME_CRED_ANSWER &&
	    sw_frame_answer_decode(p, len, &ans, err, sizeof(err)) == 0) {
		if (ans.status > 3)
			abort();
		field_in(&ans.a, p, len, 1);
		field_in(&ans.b, p, len, 1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const argv[] = {"true", NULL};
	struct sw_sandbox_limits lim = {.wall_ms = 1000};
	struct sw_sandbox_exec ex = {.argv = argv};
	struct sw_frame_parser *p;
	struct state s = {0};
	uint8_t flags, ready[64];
	size_t chunk, off, rn;
	char err[512];
	int rc = 0, sv[2];

	if (size < 2)
		return 0;
	flags = data[0];
	chunk = (size_t)data[1] + 1;
	data += 2;
	size -= 2;

	if (flags & 4) {
		struct sw_sandbox_variant *v =
		    sw_sandbox_variant_parse((const char *)data, size, err, sizeof(err));

		if (v != NULL && (v->n_ro_binds == 0 || v->ro_binds[0].path[0] != '/'))
			abort();
		for (size_t i = 0; v != NULL && i < v->n_ro_binds; i++)
			if (v->ro_binds[i].at == NULL || v->ro_binds[i].at[0] != '/')
				abort();
		for (size_t i = 0; v != NULL && i < v->n_env_path; i++)
			if (v->env_path[i][0] != '/' || strchr(v->env_path[i], ':') != NULL)
				abort();
		sw_sandbox_variant_free(v);
		return 0;
	}

	/* The runner side: the same bytes as if from the host. */
	if ((p = sw_frame_parser_new(SW_FRAME_FROM_HOST)) == NULL)
		abort();
	for (off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (sw_frame_parser_feed(p, data + off, n, collect, NULL, err, sizeof(err)) != 0)
			break;
	}
	sw_frame_parser_destroy(p);

	/* The host side, on a handle attached to a socket nobody writes. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	if ((s.sb = sw_sandbox_attach(sv[0], &lim, false, err, sizeof(err))) == NULL)
		abort();
	if (flags & 1) {
		rn = put(ready, SW_FRAME_READY, READY);
		if (sw_sandbox_feed(s.sb, ready, rn, &evs, &s) != 0)
			abort();
		if ((flags & 2) && sw_sandbox_exec_start(s.sb, &ex, err, sizeof(err)) != 0)
			abort();
	}
	for (off = 0; off < size && rc == 0; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		rc = sw_sandbox_feed(s.sb, data + off, n, &evs, &s);
	}
	if (rc != 0) {
		int before = s.exits;

		/* Ended means ended: said why, and nothing more gets through. */
		if (!sw_sandbox_dead(s.sb) || sw_sandbox_error(s.sb)[0] == '\0')
			abort();
		rn = put(ready, SW_FRAME_STDOUT, "x");
		if (sw_sandbox_feed(s.sb, ready, rn, &evs, &s) != -1 || s.exits != before)
			abort();
	}
	sw_sandbox_destroy(s.sb, NULL);
	close(sv[1]);
	return 0;
}
