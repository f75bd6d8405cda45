/*
 * cred.c: sagewai-cred, the client of the local credential protocol
 * (libs/sandbox/sw_credsock.h, docs/JIT.md). In every sandbox it is
 * /.sagewai/bin/sagewai-cred, a name of the tool runner's own (static)
 * binary; it is also built on its own as sagewai-cred.
 *
 *   sagewai-cred request NAME --scope S --reason R [--timeout SECS]
 *
 * Prints the value on stdout (no newline added) and exits 0; otherwise
 * prints the refusal's sentence on stderr and exits
 *   2  denied (by policy, the key's ACL, missing, revoked, not a JIT step)
 *   3  timeout (nobody decided, or the value did not come, in time)
 *   4  error (a bad request, the socket, a broken answer)
 *   1  usage
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "runner.h"
#include "sw_credsock.h"

#define EXIT_USAGE 1
#define EXIT_DENIED 2
#define EXIT_TIMEOUT 3
#define EXIT_ERROR 4

static int usage(void)
{
	fprintf(stderr, "usage: sagewai-cred request NAME --scope SCOPE --reason TEXT "
			"[--timeout SECS]\n"
			"  NAME is [A-Z_][A-Z0-9_]{0,127}; SECS 1..600 (default 60).\n"
			"  Prints the value; exit 2 denied, 3 timeout, 4 error.\n");
	return EXIT_USAGE;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Move all of buf through fd (send or recv) before deadline. 0 or -1. */
static int xfer(int fd, uint8_t *buf, size_t n, int out, int64_t deadline)
{
	size_t off = 0;

	while (off < n) {
		struct pollfd pf = {.fd = fd, .events = out ? POLLOUT : POLLIN};
		int64_t left = deadline - now_ms();
		ssize_t k;

		if (left <= 0)
			return -1;
		if (poll(&pf, 1, (int)left) < 0 && errno != EINTR)
			return -1;
		k = out ? send(fd, buf + off, n - off, MSG_DONTWAIT | MSG_NOSIGNAL)
			: recv(fd, buf + off, n - off, MSG_DONTWAIT);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (k <= 0)
			return -1;
		off += (size_t)k;
	}
	return 0;
}

static int fail(int code, const char *fmt, const char *arg)
{
	fprintf(stderr, "sagewai-cred: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return code;
}

int cred_main(int argc, char **argv)
{
	struct sw_credsock_req req;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t salen =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(SW_CREDSOCK_NAME));
	uint8_t hdr[4], *buf = NULL;
	const char *scope = NULL, *reason = NULL, *code, *text, *base;
	size_t n, code_len, text_len;
	unsigned status;
	long secs = SW_CREDSOCK_TIMEOUT_DEFAULT / 1000;
	int64_t deadline;
	char why[160], *end;
	int fd = -1, rc = EXIT_ERROR;

	memset(&req, 0, sizeof(req));
	if (argc < 3 || strcmp(argv[1], "request") != 0)
		return usage();
	for (int i = 3; i < argc; i += 2) {
		if (i + 1 >= argc)
			return usage();
		if (strcmp(argv[i], "--scope") == 0)
			scope = argv[i + 1];
		else if (strcmp(argv[i], "--reason") == 0)
			reason = argv[i + 1];
		else if (strcmp(argv[i], "--timeout") == 0) {
			errno = 0;
			secs = strtol(argv[i + 1], &end, 10);
			if (errno != 0 || *end != '\0' || secs < 1 ||
			    secs > SW_CREDSOCK_TIMEOUT_MAX / 1000)
				return fail(EXIT_USAGE,
					    "--timeout must be 1..600 seconds, not '%s'",
					    argv[i + 1]);
		} else
			return usage();
	}
	if (scope == NULL || reason == NULL)
		return usage();
	if (!sw_credsock_name_ok(argv[2], strlen(argv[2])))
		return fail(EXIT_USAGE, "NAME '%.64s' is not [A-Z_][A-Z0-9_]{0,127}", argv[2]);
	if (strlen(scope) > SW_CREDSOCK_SCOPE_MAX || strlen(reason) > SW_CREDSOCK_REASON_MAX)
		return fail(EXIT_USAGE, "%s", "--scope is at most 256 bytes, --reason 1024");
	base = strrchr(argv[0], '/');
	snprintf(req.name, sizeof(req.name), "%s", argv[2]);
	snprintf(req.scope, sizeof(req.scope), "%s", scope);
	snprintf(req.reason, sizeof(req.reason), "%s", reason);
	snprintf(req.argv0, sizeof(req.argv0), "%s", base ? base + 1 : argv[0]);
	req.timeout_ms = (uint32_t)secs * 1000;
	if ((buf = malloc(4 + SW_CREDSOCK_REPLY_MAX)) == NULL)
		return fail(EXIT_ERROR, "%s", "out of memory");
	if ((n = sw_credsock_req_encode(&req, buf + 4, SW_CREDSOCK_REQ_MAX)) == 0) {
		rc = fail(EXIT_USAGE, "%s", "--scope and --reason must be printable UTF-8");
		goto out;
	}
	for (int i = 0; i < 4; i++)
		buf[i] = (uint8_t)(n >> (8 * i));
	/* the runner answers by the timeout; a little slack for its refusal */
	deadline = now_ms() + (int64_t)req.timeout_ms + 20000;
	memcpy(sa.sun_path + 1, SW_CREDSOCK_NAME, strlen(SW_CREDSOCK_NAME));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, salen) != 0) {
		rc = fail(EXIT_ERROR, "cannot reach the tool runner (%s): not in a sandbox?",
			  strerror(errno));
		goto out;
	}
	if (xfer(fd, buf, n + 4, 1, deadline) != 0) {
		rc = fail(EXIT_ERROR, "%s", "the tool runner did not take the request");
		goto out;
	}
	if (xfer(fd, hdr, 4, 0, deadline) != 0) {
		rc = fail(EXIT_TIMEOUT, "%s", "no answer from the tool runner");
		goto out;
	}
	n = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
	if (n > SW_CREDSOCK_REPLY_MAX || xfer(fd, buf, n, 0, deadline) != 0 ||
	    sw_credsock_reply_decode(buf, n, &status, &code, &code_len, &text, &text_len, why,
				     sizeof(why)) != 0) {
		rc = fail(EXIT_ERROR, "%s", "a broken answer from the tool runner");
		goto out;
	}
	if (status == SW_CREDSOCK_OK) {
		rc = fwrite(text, 1, text_len, stdout) == text_len && fflush(stdout) == 0
			 ? 0
			 : fail(EXIT_ERROR, "%s", "cannot write the value");
		goto out;
	}
	fprintf(stderr, "sagewai-cred: refused (%.*s): %.*s\n", (int)code_len, code, (int)text_len,
		text);
	rc = status == SW_CREDSOCK_DENIED    ? EXIT_DENIED
	     : status == SW_CREDSOCK_TIMEOUT ? EXIT_TIMEOUT
					     : EXIT_ERROR;
out:
	if (fd >= 0)
		close(fd);
	if (buf != NULL) {
		explicit_bzero(buf, 4 + SW_CREDSOCK_REPLY_MAX);
		free(buf);
	}
	return rc;
}
