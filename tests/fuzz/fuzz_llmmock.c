/*
 * fuzz_llmmock: the scripted mock's request parsing and replies
 * (tools/llm-mock/mock.h) on arbitrary bodies. Byte 0 picks the provider,
 * the rest is the body. A body the parser accepts is planned against a
 * fixed script and encoded both ways; the SSE stream must come out (valid
 * UTF-8 everywhere, or jansson would refuse a chunk), the turn must not
 * exceed what the body can hold. Seeded by the target itself
 * (SW_FUZZ_LLMMOCK_SEEDS).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock.h"

static struct mock_script *script;

static const char *const seeds[] = {
    "\x00{\"model\":\"m\",\"stream\":true,\"tools\":[{\"name\":\"Write\"},{\"name\":\"Bash\"}],"
    "\"messages\":[{\"role\":\"user\",\"content\":\"go\"},{\"role\":\"assistant\",\"content\":"
    "[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"Write\",\"input\":{}}]},{\"role\":\"user\","
    "\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":\"ok\"}]}]}",
    "\x01{\"model\":\"m\",\"stream\":true,\"tools\":[{\"type\":\"function\",\"name\":"
    "\"exec_command\"}],\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\"},{\"type\":"
    "\"function_call_output\",\"call_id\":\"c\",\"output\":\"x\"}]}",
    "\x02{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"shell\"}}],"
    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\",\"content\":[{"
    "\"text\":"
    "\"y\"}]}]}",
    "\x03{\"contents\":[{\"role\":\"model\",\"parts\":[{\"text\":\"a\"}]},{\"parts\":[{"
    "\"functionResponse\":{\"response\":{\"o\":1}}}]}],\"tools\":[{\"functionDeclarations\":[{"
    "\"name\":\"write_file\"},{\"name\":\"run_shell_command\"}]}],\"generationConfig\":{"
    "\"responseJsonSchema\":{\"type\":\"OBJECT\",\"required\":[\"a\"],\"properties\":{\"a\":{"
    "\"type\":\"ARRAY\"}}}}}",
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *doc =
	    "[{\"tool\":\"write\",\"path\":\"d\xc3\xa9/i.html\",\"content\":\"\xe2\x82\xac\"},"
	    "{\"tool\":\"bash\",\"command\":\"ls\"},{\"text\":\"\xf0\x9f\x99\x82 done\"}]";
	const char *dir = getenv("SW_FUZZ_LLMMOCK_SEEDS");
	char err[256], path[512];

	(void)argc;
	(void)argv;
	if ((script = mock_script_parse(doc, strlen(doc), err, sizeof(err))) == NULL)
		abort();
	for (size_t i = 0; dir != NULL && i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/seed-%zu", dir, i);
		if ((f = fopen(path, "wb")) == NULL)
			abort();
		fwrite(seeds[i], 1, strlen(seeds[i] + 1) + 1, f);
		fclose(f);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum mock_provider p;
	struct mock_history h;
	struct mock_reply r;
	char err[512], *sse;
	json_t *body, *o;
	size_t len;

	if (size < 1)
		return 0;
	p = (enum mock_provider)(data[0] % 4);
	if ((body = json_loadb((const char *)data + 1, size - 1, 0, NULL)) == NULL)
		return 0;
	if (mock_history_parse(p, body, &h, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort(); /* every refusal says why */
		json_decref(body);
		return 0;
	}
	if (h.turn > size)
		abort();
	if (mock_plan(p, script, &h, "/workspace", 1, &r, err, sizeof(err)) == 0) {
		r.in_tokens = size;
		if ((sse = mock_sse(p, &r, h.model, 1, &len)) == NULL || strlen(sse) != len)
			abort();
		free(sse);
		if ((o = mock_json(p, &r, h.model, 1)) == NULL)
			abort();
		json_decref(o);
		mock_reply_clear(&r);
	} else if (err[0] == '\0') {
		abort();
	}
	mock_history_clear(&h);
	json_decref(body);
	return 0;
}
