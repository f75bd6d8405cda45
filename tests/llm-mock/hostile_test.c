/*
 * hostile_test: sagewai-llm-mock's scripted endpoints against clients that
 * get things wrong or mean harm, black-box over HTTP.
 *
 * Every wrong request gets a 4xx in the provider's own error shape, naming
 * the problem, and the mock keeps serving: no key, a wrong key, a key in the
 * wrong place (each provider); a body that is not JSON, not an object,
 * invalid UTF-8, too large, or missing / mistyping what the provider
 * requires; a wrong method; gemini model names that are not names (path
 * tricks, spaces) or an unknown action; a script turn whose tool the
 * request does not offer. Then a few hundred mutated bodies (bytes flipped,
 * cut, doubled, inserted), each answered 200 or 4xx, never 5xx or silence.
 * The record (/v1/mock/requests) holds every one of them with its status
 * and error, and never the key. A good request is answered after all that.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sw_test.h"
#include "sw_test_svc.h"

#define KEY "sk-hostile-0123456789abcdef"

static int port;
static pid_t mock;
static char dir[] = "/tmp/sw-mock-hostile-XXXXXX";

static const char good_anthropic[] =
    "{\"model\": \"claude-x\", \"stream\": true, \"max_tokens\": 100, \"tools\": [{\"name\":"
    " \"Write\", \"input_schema\": {}}, {\"name\": \"Bash\", \"input_schema\": {}}],"
    " \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
    "\"go\"}]}]}";

static const char good_responses[] =
    "{\"model\": \"gpt-x\", \"stream\": true, \"tools\": [{\"type\": \"function\", \"name\":"
    " \"exec_command\"}], \"input\": [{\"type\": \"message\", \"role\": \"user\", \"content\":"
    " [{\"type\": \"input_text\", \"text\": \"go\"}]}]}";

static const char good_gemini[] =
    "{\"contents\": [{\"role\": \"user\", \"parts\": [{\"text\": \"go\"}]}], \"tools\":"
    " [{\"functionDeclarations\": [{\"name\": \"write_file\"}, {\"name\": "
    "\"run_shell_command\"}]}]}";

static long post(const char *path, const char *body, size_t len, const char *const *hdrs,
		 char **reply)
{
	struct sw_test_http_reply r;
	char url[512];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	sw_test_http_request("POST", url, body, len, hdrs, 10, &r);
	if (reply != NULL)
		*reply = r.body;
	else
		free(r.body);
	return r.status;
}

static const char *const h_anthropic[] = {"Content-Type: application/json", "x-api-key: " KEY,
					  NULL};
static const char *const h_bearer[] = {"Content-Type: application/json",
				       "Authorization: Bearer " KEY, NULL};
static const char *const h_gemini[] = {"Content-Type: application/json", "x-goog-api-key: " KEY,
				       NULL};
static const char *const h_none[] = {"Content-Type: application/json", NULL};

/* POST and expect status with want in the body. */
static void expect(const char *path, const char *body, const char *const *hdrs, long status,
		   const char *want)
{
	char *reply = NULL;
	long got = post(path, body, strlen(body), hdrs, &reply);

	SW_CHECKF(got == status, "%s %.120s: %ld, want %ld (%s)", path, body, got, status,
		  reply ? reply : "");
	SW_CHECKF(want == NULL || (reply != NULL && strstr(reply, want) != NULL),
		  "%s %.120s: reply %s lacks %s", path, body, reply ? reply : "(none)", want);
	free(reply);
}

static void start(void)
{
	char script[600], keyf[600], portf[600], log[600], out[600];
	FILE *f;

	SW_CHECK(mkdtemp(dir) != NULL);
	snprintf(script, sizeof(script), "%s/script.json", dir);
	snprintf(keyf, sizeof(keyf), "%s/key", dir);
	snprintf(portf, sizeof(portf), "%s/port", dir);
	snprintf(log, sizeof(log), "%s/mock.log", dir);
	snprintf(out, sizeof(out), "%s/mock.out", dir);
	SW_CHECK((f = fopen(script, "w")) != NULL);
	fputs("[{\"tool\": \"write\", \"path\": \"index.html\", \"content\": \"<h1>x</h1>\"},"
	      " {\"tool\": \"bash\", \"command\": \"ls\"}, {\"text\": \"done\"}]",
	      f);
	fclose(f);
	SW_CHECK((f = fopen(keyf, "w")) != NULL);
	fputs(KEY "\n", f);
	fclose(f);
	{
		const char *argv[] = {
		    SW_LLM_MOCK,	  "--port-file", portf,	  "--script", script,
		    "--require-key-file", keyf,		 "--log", log,	      NULL};

		mock = sw_test_proc_spawn(SW_LLM_MOCK, argv, NULL, out);
		sw_test_proc_watch(&mock);
	}
	for (int i = 0; i < 500 && port == 0; i++) {
		if ((f = fopen(portf, "r")) != NULL) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (port == 0)
			usleep(10000);
	}
	SW_CHECK(port > 0);
}

static void t_keys(void)
{
	/* no key, a wrong one, the right one in another provider's place */
	expect("/v1/messages", good_anthropic, h_none, 401, "\"authentication_error\"");
	expect("/v1/responses", good_responses, h_none, 401, "\"invalid_api_key\"");
	expect("/v1beta/models/g:streamGenerateContent?alt=sse", good_gemini, h_none, 401,
	       "\"UNAUTHENTICATED\"");
	{
		const char *const wrong[] = {"x-api-key: sk-wrong", NULL};
		const char *const prefix[] = {"x-api-key: " KEY "x", NULL};

		expect("/v1/messages", good_anthropic, wrong, 401, "invalid API key");
		expect("/v1/messages", good_anthropic, prefix, 401, NULL);
	}
	expect("/v1/responses", good_responses, h_anthropic, 401, NULL);
	expect("/v1beta/models/g:generateContent", good_gemini, h_bearer, 401, NULL);
	expect("/v1/messages/count_tokens", good_anthropic, h_none, 401, NULL);
	/* the right places: Bearer for Anthropic too, ?key= for Gemini */
	expect("/v1/messages", good_anthropic, h_bearer, 200, "event: message_start");
	expect("/v1beta/models/g:generateContent?key=" KEY, good_gemini, h_none, 200,
	       "\"functionCall\"");
	expect("/v1beta/models/g:generateContent?key=" KEY "x", good_gemini, h_none, 401, NULL);
}

static void t_malformed(void)
{
	static const struct {
		const char *path, *body;
		const char *const *hdrs;
		long status;
		const char *want;
	} cases[] = {
	    {"/v1/messages", "not json", h_anthropic, 400, "not JSON"},
	    {"/v1/messages", "", h_anthropic, 400, "not JSON"},
	    {"/v1/messages", "[1, 2]", h_anthropic, 400, "must be a JSON object"},
	    {"/v1/messages", "{\"model\": \"m\", \"messages\": \"hi\"}", h_anthropic, 400,
	     "messages: must be a non-empty array"},
	    {"/v1/messages", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
	     h_anthropic, 400, "model: must be a string"},
	    {"/v1/messages", "{\"model\": \"m\", \"messages\": [{\"role\": \"user\"}]}",
	     h_anthropic, 400, "messages[0].content"},
	    {"/v1/messages",
	     "{\"model\": \"m\", \"messages\": [{\"role\": \"god\", \"content\": \"\"}]}",
	     h_anthropic, 400, "messages[0].role"},
	    {"/v1/messages",
	     "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{}]}]}",
	     h_anthropic, 400, "messages[0].content[0]"},
	    {"/v1/messages",
	     "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\\udc00\"}]}",
	     h_anthropic, 400, "not JSON"},
	    {"/v1/messages",
	     "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}",
	     h_anthropic, 400, "not JSON"},
	    {"/v1/messages",
	     "{\"model\": \"m\", \"stream\": 1, \"messages\": [{\"role\": \"user\", \"content\": "
	     "\"x\"}]}",
	     h_anthropic, 400, "stream: must be a boolean"},
	    {"/v1/messages",
	     "{\"model\": \"m\", \"tools\": [\"Write\"], \"messages\": [{\"role\": \"user\", "
	     "\"content\": \"x\"}]}",
	     h_anthropic, 400, "tools[0]: must be an object"},
	    /* the script's first turn writes; a request without Write cannot take it */
	    {"/v1/messages",
	     "{\"model\": \"m\", \"tools\": [{\"name\": \"Read\"}], \"messages\": [{\"role\": "
	     "\"user\","
	     " \"content\": \"x\"}]}",
	     h_anthropic, 400, "calls Write, which the request does not offer"},
	    {"/v1/responses", "{\"model\": \"m\", \"input\": {}}", h_bearer, 400,
	     "input: must be"},
	    {"/v1/responses", "{\"model\": 5, \"input\": \"x\"}", h_bearer, 400, "model"},
	    {"/v1/responses", "{\"model\": \"m\", \"input\": [3]}", h_bearer, 400, "input[0]"},
	    {"/v1/chat/completions", "{\"messages\": 1}", h_bearer, 400, "messages"},
	    {"/v1beta/models/g:generateContent", "{\"contents\": {}}", h_gemini, 400,
	     "\"INVALID_ARGUMENT\""},
	    {"/v1beta/models/g:generateContent", "{\"contents\": [{\"parts\": \"x\"}]}", h_gemini,
	     400, "contents[0]"},
	    {"/v1beta/models/..%2f..%2fetc:generateContent", good_gemini, h_gemini, 404,
	     "\"NOT_FOUND\""},
	    {"/v1beta/models/a%20b:generateContent", good_gemini, h_gemini, 404, "no such method"},
	    {"/v1beta/models/g:deleteEverything", good_gemini, h_gemini, 404, "no such method"},
	    {"/v1beta/models/:generateContent", good_gemini, h_gemini, 404, "no such method"},
	    {"/v1beta/models/g", good_gemini, h_gemini, 404, "no such method"},
	};
	struct sw_test_http_reply r;
	char url[256], *huge;
	size_t n = 17u << 20;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect(cases[i].path, cases[i].body, cases[i].hdrs, cases[i].status,
		       cases[i].want);
	/* wrong method */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/messages", port);
	sw_test_http_request("GET", url, NULL, 0, h_anthropic, 10, &r);
	SW_CHECKF(r.status == 405, "GET /v1/messages: %ld", r.status);
	free(r.body);
	/* a body over the cap: 413, before any parsing */
	SW_CHECK((huge = malloc(n)) != NULL);
	memset(huge, ' ', n);
	huge[0] = '{';
	huge[n - 1] = '}';
	SW_CHECK(post("/v1/messages", huge, n, h_anthropic, NULL) == 413);
	free(huge);
}

/* Mutations of good bodies: each answered 200 or 4xx, never 5xx or
 * nothing. Deterministic (a fixed seed), bounded in count. */
static void t_fuzz(void)
{
	static const struct {
		const char *path, *body;
		const char *const *hdrs;
	} seeds[] = {
	    {"/v1/messages", good_anthropic, h_anthropic},
	    {"/v1/responses", good_responses, h_bearer},
	    {"/v1beta/models/g:streamGenerateContent?alt=sse", good_gemini, h_gemini},
	};
	unsigned seed = 12345, counts[6] = {0};
	char buf[4096];

	for (int i = 0; i < 360; i++) {
		const char *src = seeds[i % 3].body;
		size_t len = strlen(src), pos;
		long st;
		int op;

		memcpy(buf, src, len);
		for (int k = 0; k < 1 + i % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			pos = (seed >> 8) % len;
			op = (int)((seed >> 20) % 4);
			if (op == 0) /* flip a byte */
				buf[pos] = (char)(buf[pos] ^ (1 << ((seed >> 4) % 8)));
			else if (op == 1) /* cut */
				len = pos;
			else if (op == 2 && len + 1 < sizeof(buf)) { /* insert a structural byte */
				memmove(buf + pos + 1, buf + pos, len - pos);
				buf[pos] = "{}[],:\"\\0x"[(seed >> 12) % 10];
				len++;
			} else if (len * 2 < sizeof(buf)) { /* double */
				memcpy(buf + len, buf, len);
				len *= 2;
			}
			if (len == 0)
				break;
		}
		st = post(seeds[i % 3].path, buf, len, seeds[i % 3].hdrs, NULL);
		SW_CHECKF(st == 200 || (st >= 400 && st < 500), "mutation %d of %s: status %ld", i,
			  seeds[i % 3].path, st);
		counts[st == 200 ? 0 : st == 400 ? 1 : 2]++;
	}
	printf("fuzz: 360 mutated bodies: %u answered 200, %u 400, %u other 4xx\n", counts[0],
	       counts[1], counts[2]);
	SW_CHECK(counts[1] > 100); /* the mutations did break most bodies */
}

static void t_record(void)
{
	long st;
	char *body = sw_test_http_get(port, "/v1/mock/requests?bodies=0", &st);
	json_t *j, *reqs, *e;
	size_t i, errors = 0, unauth = 0;

	SW_CHECK(st == 200 && body != NULL);
	SW_CHECKF(strstr(body, KEY) == NULL, "the key shows in the record");
	j = json_loads(body, 0, NULL);
	SW_CHECK(j != NULL);
	reqs = json_object_get(j, "requests");
	SW_CHECK(json_array_size(reqs) > 390);
	json_array_foreach(reqs, i, e) {
		json_int_t status = json_integer_value(json_object_get(e, "status"));

		SW_CHECK(status >= 200 && status < 500);
		SW_CHECK(json_object_get(e, "body") == NULL);
		if (status != 200) {
			SW_CHECK(json_is_string(json_object_get(e, "error")));
			errors++;
		}
		if (status == 401) {
			SW_CHECK(json_is_false(json_object_get(e, "authorized")));
			unauth++;
		}
	}
	SW_CHECK(errors > 100 && unauth >= 8);
	json_decref(j);
	free(body);
	/* the --log file holds the same and never the key either */
	{
		char path[600], cmd[700];

		snprintf(path, sizeof(path), "%s/mock.log", dir);
		snprintf(cmd, sizeof(cmd), "grep -q '%s' %s", KEY, path);
		SW_CHECK(system(cmd) != 0);
		snprintf(cmd, sizeof(cmd), "test $(wc -l < %s) -gt 390", path);
		SW_CHECK(system(cmd) == 0);
	}
}

int main(void)
{
	char cmd[700];

	start();
	t_keys();
	t_malformed();
	t_fuzz();
	t_record();
	/* still serving: a good request of each provider */
	expect("/v1/messages", good_anthropic, h_anthropic, 200, "\"tool_use\"");
	expect("/v1/responses", good_responses, h_bearer, 200, "response.completed");
	expect("/v1beta/models/gemini-x:streamGenerateContent?alt=sse", good_gemini, h_gemini, 200,
	       "data: {");
	expect("/v1/chat/completions",
	       "{\"model\": \"m\", \"stream\": true, \"tools\": [{\"type\": \"function\","
	       " \"function\": {\"name\": \"shell\"}}], \"messages\": [{\"role\": \"user\","
	       " \"content\": \"go\"}]}",
	       h_bearer, 200, "data: [DONE]");
	SW_CHECK(kill(mock, 0) == 0);
	sw_test_proc_stop(&mock, SIGTERM, "sagewai-llm-mock");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	SW_CHECK(system(cmd) == 0);
	printf("hostile_test: ok\n");
	return 0;
}
