/*
 * libFuzzer target for the credential request path (docs/JIT.md): what a
 * hostile program in a cli_agent_jit sandbox can make reach a parser.
 *
 *   byte 0 & 1 == 0  the bytes are a CRED_REQUEST payload as sandboxd gets
 *                    it from a tool runner (sbd_cred_parse,
 *                    services/sandboxd/credparse.c)
 *   byte 0 & 1 == 1  the bytes are a local-socket request body as the
 *                    runner gets it from a client (sw_credsock_req_decode),
 *                    and a reply body as the client gets it
 *
 * Whatever the input: no crash, no read past it; an accepted request has a
 * valid NAME, fields within their caps and NUL-terminated, and re-encodes
 * to the same bytes (the local protocol).
 *
 * With SW_FUZZ_CRED_SEEDS=DIR in the environment, LLVMFuzzerInitialize
 * writes valid requests of both kinds there first (the ctest uses it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credparse.h"
#include "sw_credsock.h"

static void seed(const char *dir, const char *name, const void *p, size_t n)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL)
		return;
	fwrite(p, 1, n, f);
	fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("SW_FUZZ_CRED_SEEDS");
	static const char json[] =
	    "\0{\"id\":7,\"name\":\"GITHUB_TOKEN\",\"scope\":\"github:push\","
	    "\"reason\":\"push\",\"timeout_ms\":5000,"
	    "\"requester\":\"sagewai-cred (pid 9)\"}";
	struct sw_credsock_req r = {.timeout_ms = 5000};
	uint8_t buf[1 + SW_CREDSOCK_REQ_MAX];
	size_t n;

	(void)argc;
	(void)argv;
	if (dir == NULL)
		return 0;
	seed(dir, "json", json, sizeof(json) - 1);
	snprintf(r.name, sizeof(r.name), "API_KEY");
	snprintf(r.scope, sizeof(r.scope), "s");
	snprintf(r.reason, sizeof(r.reason), "why \xc3\xa9");
	snprintf(r.argv0, sizeof(r.argv0), "sagewai-cred");
	buf[0] = 1;
	if ((n = sw_credsock_req_encode(&r, buf + 1, sizeof(buf) - 1)) > 0)
		seed(dir, "local", buf, n + 1);
	buf[0] = 1;
	if ((n = sw_credsock_reply_encode(SW_CREDSOCK_DENIED, "denied", "no", 2, buf + 1,
					  sizeof(buf) - 1)) > 0)
		seed(dir, "reply", buf, n + 1);
	return 0;
}

static void check_text(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n > max || !sw_credsock_text_ok(s, n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sw_credsock_req q;
	struct sbd_cred_req r;
	char err[256];

	if (size < 1)
		return 0;
	if ((data[0] & 1) == 0) {
		if (sbd_cred_parse(data + 1, size - 1, &r, err, sizeof(err)) == 0) {
			if (r.id == 0 || !sw_credsock_name_ok(r.name, strlen(r.name)) ||
			    r.timeout_ms == 0 || r.timeout_ms > SW_CREDSOCK_TIMEOUT_MAX)
				abort();
			check_text(r.scope, SW_CREDSOCK_SCOPE_MAX);
			check_text(r.reason, SW_CREDSOCK_REASON_MAX);
			check_text(r.requester, SBD_CRED_REQUESTER_MAX);
		} else if (strlen(err) == 0) {
			abort();
		}
		return 0;
	}
	if (sw_credsock_req_decode(data + 1, size - 1, &q, err, sizeof(err)) == 0) {
		uint8_t *again = malloc(SW_CREDSOCK_REQ_MAX);
		size_t n;

		if (again == NULL)
			return 0;
		n = sw_credsock_req_encode(&q, again, SW_CREDSOCK_REQ_MAX);
		if (n != size - 1 || memcmp(again, data + 1, n) != 0)
			abort();
		free(again);
	}
	{
		const char *code, *text;
		size_t cl, tl;
		unsigned st;

		if (sw_credsock_reply_decode(data + 1, size - 1, &st, &code, &cl, &text, &tl, err,
					     sizeof(err)) == 0 &&
		    (st > SW_CREDSOCK_ERROR || code + cl > (const char *)data + size ||
		     text + tl > (const char *)data + size))
			abort();
	}
	return 0;
}
