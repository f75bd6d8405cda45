/*
 * libFuzzer target for sandboxd's egress proxy request head
 * (services/sandboxd/egress_head.c): the bytes a sandboxed program sends
 * its proxy.
 *
 * Whatever the input: no crash, no read past it; egress_head_length never
 * exceeds the input; a refused head has a reason and leaves no request
 * behind; an accepted one has a method and host NUL-terminated within
 * their buffers, a port in 1..65535, and either is a CONNECT tunnel with
 * nothing to forward, or forwards a rewritten head that is exactly one
 * head (its own egress_head_length is its whole length: no second request
 * smuggled after it) ending in Connection: close.
 *
 * With SW_FUZZ_EGRESS_SEEDS=DIR in the environment, LLVMFuzzerInitialize
 * writes a few valid heads there first (the ctest uses it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

#include "egress.h"

static void seed(const char *dir, const char *name, const char *s)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL)
		return;
	fwrite(s, 1, strlen(s), f);
	fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("SW_FUZZ_EGRESS_SEEDS");

	(void)argc;
	(void)argv;
	if (dir == NULL)
		return 0;
	seed(dir, "connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
	seed(dir, "connect6", "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n");
	seed(dir, "get", "GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\n"
			 "Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"
			 "Proxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\n");
	seed(dir, "post", "POST http://10.0.0.1:8080 HTTP/1.0\nContent-Length: 3\n\nabc");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *why = NULL;
	struct conn *c;
	size_t hl = egress_head_length(p, size);

	if (hl > size)
		abort();
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return 0;
	/* the proxy parses only a complete head; the fuzzer tries both */
	if (egress_head_parse(c, p, hl > 0 ? hl : size, &why) != 0) {
		if (why == NULL || c->fwd != NULL || c->method[0] != '\0' || c->host[0] != '\0')
			abort();
		free(c);
		return 0;
	}
	if (strnlen(c->method, METHOD_MAX) >= METHOD_MAX || c->method[0] == '\0' ||
	    strnlen(c->host, HOST_MAX) >= HOST_MAX || c->host[0] == '\0' || c->port < 1 ||
	    c->port > 65535)
		abort();
	if (c->tunnel) {
		if (c->fwd != NULL || strcmp(c->method, "CONNECT") != 0)
			abort();
	} else {
		size_t n;
		const char *f;
		static const char tail[] = "Connection: close\r\n\r\n";

		if (c->fwd == NULL)
			abort();
		n = evbuffer_get_length(c->fwd);
		f = (const char *)evbuffer_pullup(c->fwd, -1);
		if (f == NULL || egress_head_length(f, n) != n || n < sizeof(tail) - 1 ||
		    memcmp(f + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1) != 0)
			abort();
		evbuffer_free(c->fwd);
	}
	free(c);
	return 0;
}
