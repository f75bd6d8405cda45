/*
 * wire_test: the scripted mock's parts without HTTP (tools/llm-mock/mock.h).
 *
 * The script's validation; the shell command codex gets for a write, run by
 * a real /bin/sh; what each provider's request says (turn, tool results,
 * tools offered) and the refusal of malformed ones, naming the field; the
 * translation of each turn into each provider's tool call; and the wire
 * formats, parsed back as a client would: SSE framing (event/data lines,
 * blank-line separated, every data a JSON document), the event sequence,
 * deltas that reassemble into exactly the tool arguments or text (split on
 * UTF-8 boundaries), stop reasons, ids that tie a call to its result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mock.h"
#include "sw_test.h"

/* ---- script ---------------------------------------------------------------- */

static void script_refused(const char *doc, const char *want)
{
	char err[512];
	struct mock_script *s = mock_script_parse(doc, strlen(doc), err, sizeof(err));

	SW_CHECKF(s == NULL, "accepted %s", doc);
	SW_CHECKF(strstr(err, want) != NULL, "error '%s' lacks '%s' (%s)", err, want, doc);
}

static void t_script(void)
{
	const char *good =
	    "[{\"tool\": \"write\", \"path\": \"site/index.html\", \"content\": \"<h1>\"},"
	    " {\"tool\": \"bash\", \"command\": \"ls\"}, {\"text\": \"done\"}]";
	char err[512], big[64 * (MOCK_SCRIPT_MAX_TURNS + 2)];
	struct mock_script *s = mock_script_parse(good, strlen(good), err, sizeof(err));
	size_t o;

	SW_CHECKF(s != NULL, "%s", err);
	SW_CHECK(s->n == 3 && s->turns[0].kind == MOCK_TURN_WRITE &&
		 strcmp(s->turns[0].path, "site/index.html") == 0 &&
		 strcmp(s->turns[0].content, "<h1>") == 0);
	SW_CHECK(s->turns[1].kind == MOCK_TURN_BASH && strcmp(s->turns[1].command, "ls") == 0);
	SW_CHECK(s->turns[2].kind == MOCK_TURN_TEXT && strcmp(s->turns[2].text, "done") == 0);
	mock_script_free(s);

	script_refused("{}", "an array of 1 to");
	script_refused("[]", "an array of 1 to");
	script_refused("[1]", "script[0]: must be an object");
	script_refused("[{\"tool\": \"rm\"}]", "script[0]: want");
	script_refused("[{}]", "script[0]: want");
	script_refused("[{\"text\": \"a\", \"tool\": \"bash\"}]", "only \"text\"");
	script_refused("[{\"text\": 5}]", "script[0].text: must be a string");
	script_refused("[{\"text\": \"a\\u0000b\"}]", "not allowed");
	script_refused("[{\"tool\": \"bash\", \"command\": \"\"}]", "empty");
	script_refused("[{\"tool\": \"bash\", \"command\": \"ls\", \"x\": 1}]",
		       "exactly tool, command");
	script_refused("[{\"tool\": \"write\", \"path\": \"a\"}]", "exactly tool, path, content");
	script_refused(
	    "[{\"text\": \"ok\"}, {\"tool\": \"write\", \"path\": \"../x\", \"content\": \"\"}]",
	    "script[1].path: not a clean path");
	script_refused("[{\"tool\": \"write\", \"path\": \"a//b\", \"content\": \"\"}]", "clean");
	script_refused("[{\"tool\": \"write\", \"path\": \"a/./b\", \"content\": \"\"}]", "clean");
	script_refused("[{\"tool\": \"write\", \"path\": \"a/\", \"content\": \"\"}]", "clean");
	script_refused("[{\"tool\": \"write\", \"path\": \"\", \"content\": \"\"}]", "clean");
	script_refused("[{\"text\": \"a\"}, {\"text\": \"a\"}", "line");
	script_refused("[{\"text\": \"a\", \"text\": \"b\"}]", "duplicate");
	o = (size_t)sprintf(big, "[");
	for (int i = 0; i <= MOCK_SCRIPT_MAX_TURNS; i++)
		o += (size_t)sprintf(big + o, "%s{\"text\": \"t\"}", i ? "," : "");
	sprintf(big + o, "]");
	script_refused(big, "an array of 1 to");
	SW_CHECK(mock_script_load("/nonexistent/script.json", err, sizeof(err)) == NULL);
	SW_CHECK(strstr(err, "cannot open") != NULL);
}

/* The command codex gets writes exactly the content, whatever it holds. */
static void t_shell_write(void)
{
	static const char *const contents[] = {"",
					       "a",
					       "ab",
					       "abc",
					       "<h1>it's \"quoted\" $HOME `id` \\n</h1>\n",
					       "caf\xc3\xa9 \xe2\x82\xac\n\n\ttabs",
					       "'; rm -rf / #"};
	char dir[] = "/tmp/sw-mock-sh-XXXXXX", path[256], buf[256], cmd[1024];

	SW_CHECK(mkdtemp(dir) != NULL);
	for (size_t i = 0; i < sizeof(contents) / sizeof(contents[0]); i++) {
		char *sh;
		FILE *f;
		size_t n;

		snprintf(path, sizeof(path), "%s/it's %zu.html", dir, i);
		SW_CHECK((sh = mock_shell_write(path, contents[i])) != NULL);
		if (i == 4) /* the content never reaches the shell in clear */
			SW_CHECKF(strstr(sh, "$HOME") == NULL, "%s", sh);
		snprintf(cmd, sizeof(cmd), "/bin/sh -c \"$(cat <<'SWEOF'\n%s\nSWEOF\n)\"", sh);
		SW_CHECKF(system(cmd) == 0, "%s", sh);
		SW_CHECK((f = fopen(path, "rb")) != NULL);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		SW_CHECKF(n == strlen(contents[i]) && memcmp(buf, contents[i], n) == 0,
			  "wrote '%s' for '%s'", buf, contents[i]);
		unlink(path);
		free(sh);
	}
	rmdir(dir);
}

/* ---- requests -------------------------------------------------------------- */

static json_t *js(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);

	SW_CHECKF(j != NULL, "%s: %s", s, e.text);
	return j;
}

static void history_ok(enum mock_provider p, const char *body, size_t turn, size_t results,
		       size_t tools, struct mock_history *h)
{
	json_t *j = js(body);
	char err[512];

	SW_CHECKF(mock_history_parse(p, j, h, err, sizeof(err)) == 0, "%s: %s", body, err);
	SW_CHECKF(h->turn == turn, "%s: turn %zu", body, h->turn);
	SW_CHECKF(json_array_size(h->tool_results) == results, "%s: %zu results", body,
		  json_array_size(h->tool_results));
	SW_CHECKF(json_array_size(h->tools) == tools, "%s: %zu tools", body,
		  json_array_size(h->tools));
	json_decref(j); /* h borrows model and schema from it: callers only read counts */
	h->model = NULL;
	h->json_schema = NULL;
}

static void history_refused(enum mock_provider p, const char *body, const char *want)
{
	json_t *j = js(body);
	struct mock_history h;
	char err[512];

	SW_CHECKF(mock_history_parse(p, j, &h, err, sizeof(err)) == -1, "accepted %s", body);
	SW_CHECKF(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
	json_decref(j);
}

static void t_history(void)
{
	struct mock_history h;

	/* anthropic: two assistant turns, tool results as a string and as blocks */
	history_ok(
	    MOCK_ANTHROPIC,
	    "{\"model\": \"m\", \"stream\": true, \"tools\": [{\"name\": \"Write\"},"
	    " {\"name\": \"Bash\"}, {\"type\": \"web_search_20250305\"}], \"messages\": ["
	    "{\"role\": \"user\", \"content\": \"go\"},"
	    "{\"role\": \"assistant\", \"content\": [{\"type\": \"tool_use\", \"id\": \"t1\","
	    " \"name\": \"Write\", \"input\": {}}]},"
	    "{\"role\": \"user\", \"content\": [{\"type\": \"tool_result\", \"tool_use_id\":"
	    " \"t1\", \"content\": \"written\"}]},"
	    "{\"role\": \"assistant\", \"content\": [{\"type\": \"tool_use\", \"id\": \"t2\","
	    " \"name\": \"Bash\", \"input\": {}}]},"
	    "{\"role\": \"user\", \"content\": [{\"type\": \"tool_result\", \"tool_use_id\":"
	    " \"t2\", \"content\": [{\"type\": \"text\", \"text\": \"index.html\"}]}]},"
	    "{\"role\": \"system\", \"content\": \"mid-conversation\"}]}",
	    2, 2, 2, &h);
	SW_CHECK(h.stream == 1);
	SW_CHECK(strcmp(json_string_value(json_array_get(h.tool_results, 1)), "index.html") == 0);
	mock_history_clear(&h);
	history_refused(MOCK_ANTHROPIC, "[]", "the body must be a JSON object");
	history_refused(MOCK_ANTHROPIC, "{\"messages\": []}", "model");
	history_refused(MOCK_ANTHROPIC, "{\"model\": \"m\"}", "messages: must be a non-empty");
	history_refused(MOCK_ANTHROPIC, "{\"model\": \"m\", \"messages\": [5]}", "messages[0]");
	history_refused(
	    MOCK_ANTHROPIC,
	    "{\"model\": \"m\", \"messages\": [{\"role\": \"root\", \"content\": \"x\"}]}",
	    "messages[0].role");
	history_refused(MOCK_ANTHROPIC,
			"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": 1}]}",
			"messages[0].content: must be a string or an array");
	history_refused(
	    MOCK_ANTHROPIC,
	    "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [7]}]}",
	    "messages[0].content[0]");
	history_refused(
	    MOCK_ANTHROPIC,
	    "{\"model\": \"m\", \"stream\": \"yes\", \"messages\": [{\"role\": \"user\","
	    " \"content\": \"x\"}]}",
	    "stream: must be a boolean");
	history_refused(MOCK_ANTHROPIC,
			"{\"model\": \"m\", \"tools\": {}, \"messages\": [{\"role\": \"user\","
			" \"content\": \"x\"}]}",
			"tools: must be an array");
	history_refused(MOCK_ANTHROPIC,
			"{\"model\": \"m\", \"tools\": [{\"name\": 3}], \"messages\": [{\"role\":"
			" \"user\", \"content\": \"x\"}]}",
			"tools[0].name");

	/* responses: calls and their outputs; reasoning items do not count */
	history_ok(
	    MOCK_RESPONSES,
	    "{\"model\": \"m\", \"stream\": true, \"tools\": [{\"type\": \"function\", \"name\":"
	    " \"exec_command\"}], \"input\": [{\"type\": \"message\", \"role\": \"user\","
	    " \"content\": []}, {\"type\": \"reasoning\", \"summary\": []},"
	    " {\"type\": \"function_call\", \"call_id\": \"c1\", \"name\": \"exec_command\","
	    " \"arguments\": \"{}\"}, {\"type\": \"function_call_output\", \"call_id\": \"c1\","
	    " \"output\": \"Output:\\nindex.html\\n\"}]}",
	    1, 1, 1, &h);
	mock_history_clear(&h);
	history_ok(MOCK_RESPONSES, "{\"model\": \"m\", \"input\": \"hello\"}", 0, 0, 0, &h);
	mock_history_clear(&h);
	history_refused(MOCK_RESPONSES, "{\"model\": \"m\", \"input\": 5}", "input: must be");
	history_refused(MOCK_RESPONSES, "{\"model\": \"m\", \"input\": [{}]}", "input[0]: needs");
	history_refused(MOCK_RESPONSES, "{\"input\": \"x\"}", "model");

	/* chat */
	history_ok(
	    MOCK_CHAT,
	    "{\"model\": \"m\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\":"
	    " \"shell\"}}], \"messages\": [{\"role\": \"user\", \"content\": \"go\"},"
	    " {\"role\": \"assistant\", \"tool_calls\": []}, {\"role\": \"tool\","
	    " \"tool_call_id\": \"c\", \"content\": \"ok\"}]}",
	    1, 1, 1, &h);
	SW_CHECK(strcmp(json_string_value(json_array_get(h.tools, 0)), "shell") == 0);
	mock_history_clear(&h);
	history_refused(MOCK_CHAT, "{\"messages\": [{\"content\": \"x\"}]}", "messages[0]");

	/* gemini: model turns, function responses, a structured-output side request */
	history_ok(
	    MOCK_GEMINI,
	    "{\"contents\": [{\"role\": \"user\", \"parts\": [{\"text\": \"go\"}]},"
	    " {\"role\": \"model\", \"parts\": [{\"functionCall\": {\"name\": \"write_file\","
	    " \"args\": {}}}]}, {\"role\": \"user\", \"parts\": [{\"functionResponse\":"
	    " {\"name\": \"write_file\", \"response\": {\"output\": \"ok\"}}}]}],"
	    " \"tools\": [{\"functionDeclarations\": [{\"name\": \"write_file\"},"
	    " {\"name\": \"run_shell_command\"}]}]}",
	    1, 1, 2, &h);
	SW_CHECK(strcmp(json_string_value(json_array_get(h.tool_results, 0)),
			"{\"output\":\"ok\"}") == 0);
	mock_history_clear(&h);
	history_refused(MOCK_GEMINI, "{\"contents\": [{\"role\": \"user\"}]}", "contents[0]");
	history_refused(MOCK_GEMINI, "{\"contents\": [{\"parts\": [1]}]}", "contents[0].parts[0]");
	history_refused(MOCK_GEMINI,
			"{\"contents\": [{\"parts\": []}], \"tools\": [{\"functionDeclarations\":"
			" [{}]}]}",
			"functionDeclarations[0].name");
}

/* ---- plans ------------------------------------------------------------------- */

static struct mock_script *script3(void)
{
	const char *doc = "[{\"tool\": \"write\", \"path\": \"index.html\", \"content\": \"<p>\"},"
			  " {\"tool\": \"bash\", \"command\": \"ls -la\"}, {\"text\": \"done\"}]";
	char err[256];
	struct mock_script *s = mock_script_parse(doc, strlen(doc), err, sizeof(err));

	SW_CHECKF(s != NULL, "%s", err);
	return s;
}

static void plan(enum mock_provider p, const struct mock_script *s, size_t turn,
		 const char *tools_json, struct mock_reply *r)
{
	struct mock_history h = {.turn = turn, .model = "m"};
	char err[512];

	h.tools = js(tools_json);
	h.tool_results = json_array();
	SW_CHECKF(mock_plan(p, s, &h, "/workspace", 7, r, err, sizeof(err)) == 0, "%s", err);
	mock_history_clear(&h);
}

static void t_plan(void)
{
	struct mock_script *s = script3();
	struct mock_history h = {.turn = 0, .model = "m"};
	struct mock_reply r;
	char err[512];
	json_t *schema, *v;

	plan(MOCK_ANTHROPIC, s, 0, "[\"Bash\", \"Write\"]", &r);
	SW_CHECK(r.is_tool && strcmp(r.name, "Write") == 0 && strcmp(r.id, "toolu_mock_7") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(r.args, "file_path")),
			"/workspace/index.html") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(r.args, "content")), "<p>") == 0);
	mock_reply_clear(&r);
	plan(MOCK_ANTHROPIC, s, 1, "[\"Bash\", \"Write\"]", &r);
	SW_CHECK(r.is_tool && strcmp(r.name, "Bash") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(r.args, "command")), "ls -la") == 0);
	mock_reply_clear(&r);
	plan(MOCK_ANTHROPIC, s, 2, "[\"Bash\"]", &r);
	SW_CHECK(!r.is_tool && strcmp(r.text, "done") == 0);
	mock_reply_clear(&r);
	plan(MOCK_ANTHROPIC, s, 3, "[\"Bash\"]", &r);
	SW_CHECK(!r.is_tool && strstr(r.text, "script is over") != NULL);
	mock_reply_clear(&r);
	plan(MOCK_ANTHROPIC, s, 0, "[]", &r); /* a side request: no tools, no script */
	SW_CHECK(!r.is_tool && strcmp(r.text, "ok") == 0);
	mock_reply_clear(&r);

	plan(MOCK_RESPONSES, s, 0, "[\"exec_command\", \"write_stdin\"]", &r);
	SW_CHECK(r.is_tool && strcmp(r.name, "exec_command") == 0 &&
		 strcmp(r.id, "call_mock_7") == 0);
	SW_CHECK(strstr(json_string_value(json_object_get(r.args, "cmd")),
			"base64 -d > '/workspace/index.html'") != NULL);
	mock_reply_clear(&r);
	plan(MOCK_CHAT, s, 1, "[\"shell\"]", &r);
	SW_CHECK(r.is_tool && strcmp(r.name, "shell") == 0);
	SW_CHECK(strcmp(json_string_value(json_array_get(json_object_get(r.args, "command"), 2)),
			"ls -la") == 0);
	mock_reply_clear(&r);
	plan(MOCK_GEMINI, s, 0, "[\"write_file\", \"run_shell_command\"]", &r);
	SW_CHECK(r.is_tool && strcmp(r.name, "write_file") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(r.args, "file_path")),
			"/workspace/index.html") == 0);
	mock_reply_clear(&r);
	plan(MOCK_GEMINI, s, 1, "[\"write_file\", \"run_shell_command\"]", &r);
	SW_CHECK(r.is_tool && strcmp(r.name, "run_shell_command") == 0);
	mock_reply_clear(&r);

	/* a tool the request does not offer: an error naming it */
	h.tools = js("[\"Read\"]");
	h.tool_results = json_array();
	SW_CHECK(mock_plan(MOCK_ANTHROPIC, s, &h, "/workspace", 1, &r, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "calls Write, which the request does not offer") != NULL, "%s", err);
	SW_CHECK(mock_plan(MOCK_RESPONSES, s, &h, "/workspace", 1, &r, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "neither exec_command nor shell") != NULL, "%s", err);

	/* gemini's structured side requests get an object of their schema */
	schema =
	    js("{\"type\": \"OBJECT\", \"properties\": {\"next_speaker\": {\"type\": \"STRING\","
	       " \"enum\": [\"user\", \"model\"]}, \"reasoning\": {\"type\": \"STRING\"},"
	       " \"score\": {\"type\": \"INTEGER\"}, \"opt\": {\"type\": \"STRING\"}},"
	       " \"required\": [\"next_speaker\", \"reasoning\", \"score\"]}");
	h.json_schema = schema;
	SW_CHECK(mock_plan(MOCK_GEMINI, s, &h, "/workspace", 1, &r, err, sizeof(err)) == 0);
	SW_CHECK(!r.is_tool);
	v = js(r.text);
	SW_CHECK(strcmp(json_string_value(json_object_get(v, "next_speaker")), "user") == 0);
	SW_CHECK(json_integer_value(json_object_get(v, "score")) == 1);
	SW_CHECK(json_object_get(v, "opt") == NULL && json_object_size(v) == 3);
	json_decref(v);
	json_decref(schema);
	mock_reply_clear(&r);
	mock_history_clear(&h);
	mock_script_free(s);
}

/* ---- wire formats --------------------------------------------------------------- */

/* Split an SSE stream into events: names[] (or "" without event:) and
 * data[] (parsed). Every event must be "event: X\n"? "data: J\n" and end
 * with a blank line; nothing may follow the last one. */
static size_t sse_parse(const char *s, size_t len, char names[][64], json_t **data, size_t max)
{
	size_t n = 0;
	const char *p = s, *end = s + len;

	SW_CHECK(strlen(s) == len);
	while (p < end) {
		const char *stop = strstr(p, "\n\n"), *line;

		SW_CHECKF(stop != NULL, "an event without its blank line: %.80s", p);
		SW_CHECK(n < max);
		names[n][0] = '\0';
		line = p;
		if (strncmp(line, "event: ", 7) == 0) {
			const char *nl = strchr(line, '\n');

			SW_CHECK(nl - line - 7 < 64);
			memcpy(names[n], line + 7, (size_t)(nl - line - 7));
			names[n][nl - line - 7] = '\0';
			line = nl + 1;
		}
		SW_CHECKF(strncmp(line, "data: ", 6) == 0, "no data line: %.80s", line);
		SW_CHECK(memchr(line, '\n', (size_t)(stop - line)) == NULL); /* one line */
		if (strncmp(line + 6, "[DONE]", 6) == 0 && stop - line == 12) {
			data[n] = NULL;
		} else {
			json_error_t e;

			data[n] = json_loadb(line + 6, (size_t)(stop - line - 6), 0, &e);
			SW_CHECKF(data[n] != NULL, "bad JSON in data: %s", e.text);
		}
		n++;
		p = stop + 2;
	}
	return n;
}

static const char *type_of(json_t *d)
{
	return json_string_value(json_object_get(d, "type"));
}

static void reply_tool(struct mock_reply *r, const char *name, const char *args)
{
	memset(r, 0, sizeof(*r));
	r->is_tool = 1;
	r->name = strdup(name);
	r->args = js(args);
	snprintf(r->id, sizeof(r->id), "call_x_1");
	r->in_tokens = 100;
}

static void reply_text(struct mock_reply *r, const char *text)
{
	memset(r, 0, sizeof(*r));
	r->text = strdup(text);
	r->in_tokens = 100;
}

#define ARGS                                                                                      \
	"{\"file_path\": \"/workspace/index.html\", \"content\": \"<h1>caf\xc3\xa9 "              \
	"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac \\\"quoted\\\"</h1>\\n\"}"
#define TEXT                                                                                      \
	"d\xc3\xa9j\xc3\xa0 "                                                                     \
	"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"    \
	"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac done"

static void free_events(json_t **data, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(data[i]);
}

static void t_anthropic(void)
{
	char names[64][64], acc[1024] = "";
	json_t *data[64], *args, *m;
	struct mock_reply r;
	size_t len, n, deltas = 0;
	char *s;

	reply_tool(&r, "Write", ARGS);
	SW_CHECK((s = mock_sse(MOCK_ANTHROPIC, &r, "claude-x", 3, &len)) != NULL);
	n = sse_parse(s, len, names, data, 64);
	SW_CHECK(n >= 6);
	SW_CHECK(strcmp(names[0], "message_start") == 0 &&
		 strcmp(type_of(data[0]), "message_start") == 0);
	m = json_object_get(data[0], "message");
	SW_CHECK(strcmp(json_string_value(json_object_get(m, "id")), "msg_mock_3") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(m, "model")), "claude-x") == 0);
	SW_CHECK(strcmp(names[1], "content_block_start") == 0);
	SW_CHECK(strcmp(type_of(json_object_get(data[1], "content_block")), "tool_use") == 0);
	SW_CHECK(strcmp(json_string_value(
			    json_object_get(json_object_get(data[1], "content_block"), "id")),
			"call_x_1") == 0);
	for (size_t i = 2; i < n - 3; i++) {
		json_t *d = json_object_get(data[i], "delta");

		SW_CHECK(strcmp(names[i], "content_block_delta") == 0);
		SW_CHECK(strcmp(type_of(d), "input_json_delta") == 0);
		strcat(acc, json_string_value(json_object_get(d, "partial_json")));
		deltas++;
	}
	SW_CHECKF(deltas > 2, "arguments in %zu deltas", deltas);
	args = js(acc);
	SW_CHECK(json_equal(args, r.args));
	json_decref(args);
	SW_CHECK(strcmp(names[n - 3], "content_block_stop") == 0);
	SW_CHECK(strcmp(names[n - 2], "message_delta") == 0);
	SW_CHECK(strcmp(json_string_value(
			    json_object_get(json_object_get(data[n - 2], "delta"), "stop_reason")),
			"tool_use") == 0);
	SW_CHECK(strcmp(names[n - 1], "message_stop") == 0);
	free_events(data, n);
	free(s);
	m = mock_json(MOCK_ANTHROPIC, &r, "claude-x", 3);
	SW_CHECK(strcmp(json_string_value(json_object_get(m, "stop_reason")), "tool_use") == 0);
	SW_CHECK(json_equal(
	    json_object_get(json_array_get(json_object_get(m, "content"), 0), "input"), r.args));
	json_decref(m);
	mock_reply_clear(&r);

	reply_text(&r, TEXT);
	SW_CHECK((s = mock_sse(MOCK_ANTHROPIC, &r, "claude-x", 4, &len)) != NULL);
	n = sse_parse(s, len, names, data, 64);
	acc[0] = '\0';
	SW_CHECK(strcmp(type_of(json_object_get(data[1], "content_block")), "text") == 0);
	for (size_t i = 2; i < n - 3; i++)
		strcat(acc, json_string_value(
				json_object_get(json_object_get(data[i], "delta"), "text")));
	SW_CHECK(strcmp(acc, TEXT) == 0);
	SW_CHECK(strcmp(json_string_value(
			    json_object_get(json_object_get(data[n - 2], "delta"), "stop_reason")),
			"end_turn") == 0);
	free_events(data, n);
	free(s);
	mock_reply_clear(&r);
}

static void t_responses(void)
{
	char names[64][64], acc[1024] = "";
	json_t *data[64], *item, *args, *resp;
	struct mock_reply r;
	size_t len, n;
	char *s;

	reply_tool(&r, "exec_command",
		   "{\"cmd\": \"printf '%s' 'PGgxPg==' | base64 -d > '/w/i'\"}");
	SW_CHECK((s = mock_sse(MOCK_RESPONSES, &r, "gpt-x", 5, &len)) != NULL);
	n = sse_parse(s, len, names, data, 64);
	for (size_t i = 0; i < n; i++) {
		SW_CHECKF(strcmp(names[i], type_of(data[i])) == 0, "%s vs %s", names[i],
			  type_of(data[i]));
		SW_CHECK(json_integer_value(json_object_get(data[i], "sequence_number")) ==
			 (json_int_t)i);
	}
	SW_CHECK(strcmp(names[0], "response.created") == 0);
	SW_CHECK(strcmp(names[2], "response.output_item.added") == 0);
	for (size_t i = 3; strcmp(names[i], "response.function_call_arguments.delta") == 0; i++)
		strcat(acc, json_string_value(json_object_get(data[i], "delta")));
	args = js(acc);
	SW_CHECK(json_equal(args, r.args));
	json_decref(args);
	SW_CHECK(strcmp(names[n - 3], "response.function_call_arguments.done") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(data[n - 3], "arguments")), acc) == 0);
	item = json_object_get(data[n - 2], "item");
	SW_CHECK(strcmp(names[n - 2], "response.output_item.done") == 0);
	SW_CHECK(strcmp(type_of(item), "function_call") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(item, "call_id")), "call_x_1") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(item, "name")), "exec_command") == 0);
	resp = json_object_get(data[n - 1], "response");
	SW_CHECK(strcmp(names[n - 1], "response.completed") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(resp, "status")), "completed") == 0);
	SW_CHECK(json_integer_value(
		     json_object_get(json_object_get(resp, "usage"), "total_tokens")) > 0);
	SW_CHECK(json_array_size(json_object_get(resp, "output")) == 1);
	free_events(data, n);
	free(s);
	mock_reply_clear(&r);

	reply_text(&r, TEXT);
	SW_CHECK((s = mock_sse(MOCK_RESPONSES, &r, "gpt-x", 6, &len)) != NULL);
	n = sse_parse(s, len, names, data, 64);
	acc[0] = '\0';
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], "response.output_text.delta") == 0)
			strcat(acc, json_string_value(json_object_get(data[i], "delta")));
	SW_CHECK(strcmp(acc, TEXT) == 0);
	item = json_object_get(data[n - 2], "item");
	SW_CHECK(strcmp(type_of(item), "message") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(
			    json_array_get(json_object_get(item, "content"), 0), "text")),
			TEXT) == 0);
	free_events(data, n);
	free(s);
	mock_reply_clear(&r);
}

static void t_chat(void)
{
	char names[64][64], acc[1024] = "";
	json_t *data[64], *args, *ch, *o;
	struct mock_reply r;
	size_t len, n;
	char *s;

	reply_tool(&r, "shell", "{\"command\": [\"bash\", \"-lc\", \"ls\"]}");
	SW_CHECK((s = mock_sse(MOCK_CHAT, &r, "m", 8, &len)) != NULL);
	n = sse_parse(s, len, names, data, 64);
	SW_CHECK(data[n - 1] == NULL); /* data: [DONE] */
	for (size_t i = 0; i + 1 < n; i++) {
		SW_CHECK(names[i][0] == '\0');
		SW_CHECK(strcmp(json_string_value(json_object_get(data[i], "object")),
				"chat.completion.chunk") == 0);
		ch = json_object_get(json_array_get(json_object_get(data[i], "choices"), 0),
				     "delta");
		ch = json_array_get(json_object_get(ch, "tool_calls"), 0);
		if (i == 0)
			SW_CHECK(
			    strcmp(json_string_value(json_object_get(ch, "id")), "call_x_1") == 0);
		if (ch != NULL)
			strcat(acc, json_string_value(json_object_get(
					json_object_get(ch, "function"), "arguments")));
	}
	args = js(acc);
	SW_CHECK(json_equal(args, r.args));
	json_decref(args);
	SW_CHECK(strcmp(json_string_value(json_object_get(
			    json_array_get(json_object_get(data[n - 2], "choices"), 0),
			    "finish_reason")),
			"tool_calls") == 0);
	free_events(data, n);
	free(s);
	o = mock_json(MOCK_CHAT, &r, "m", 8);
	ch = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "message");
	SW_CHECK(strcmp(json_string_value(json_object_get(
			    json_object_get(json_array_get(json_object_get(ch, "tool_calls"), 0),
					    "function"),
			    "name")),
			"shell") == 0);
	json_decref(o);
	mock_reply_clear(&r);
}

static void t_gemini(void)
{
	char names[64][64], acc[1024] = "";
	json_t *data[64], *part, *a;
	struct mock_reply r;
	size_t len, n;
	char *s;

	reply_tool(&r, "write_file", ARGS);
	SW_CHECK((s = mock_sse(MOCK_GEMINI, &r, "gemini-x", 9, &len)) != NULL);
	n = sse_parse(s, len, names, data, 64);
	SW_CHECK(n == 1 && names[0][0] == '\0');
	part = json_array_get(
	    json_object_get(
		json_object_get(json_array_get(json_object_get(data[0], "candidates"), 0),
				"content"),
		"parts"),
	    0);
	SW_CHECK(strcmp(json_string_value(
			    json_object_get(json_object_get(part, "functionCall"), "name")),
			"write_file") == 0);
	SW_CHECK(
	    json_equal(json_object_get(json_object_get(part, "functionCall"), "args"), r.args));
	SW_CHECK(
	    strcmp(json_string_value(json_object_get(
		       json_array_get(json_object_get(data[0], "candidates"), 0), "finishReason")),
		   "STOP") == 0);
	SW_CHECK(json_object_get(data[0], "usageMetadata") != NULL);
	free_events(data, n);
	free(s);
	mock_reply_clear(&r);

	reply_text(&r, TEXT);
	SW_CHECK((s = mock_sse(MOCK_GEMINI, &r, "gemini-x", 10, &len)) != NULL);
	n = sse_parse(s, len, names, data, 64);
	SW_CHECK(n > 1);
	for (size_t i = 0; i < n; i++) {
		json_t *cand = json_array_get(json_object_get(data[i], "candidates"), 0);

		strcat(acc, json_string_value(json_object_get(
				json_array_get(
				    json_object_get(json_object_get(cand, "content"), "parts"), 0),
				"text")));
		SW_CHECK((json_object_get(cand, "finishReason") != NULL) == (i == n - 1));
	}
	SW_CHECK(strcmp(acc, TEXT) == 0);
	free_events(data, n);
	free(s);
	a = mock_gemini_array(&r, "gemini-x");
	SW_CHECK(json_is_array(a) && json_array_size(a) == n);
	json_decref(a);
	a = mock_json(MOCK_GEMINI, &r, "gemini-x", 10);
	SW_CHECK(json_array_size(json_object_get(a, "candidates")) == 1);
	json_decref(a);
	mock_reply_clear(&r);
}

int main(void)
{
	t_script();
	t_shell_write();
	t_history();
	t_plan();
	t_anthropic();
	t_responses();
	t_chat();
	t_gemini();
	printf("wire_test: ok\n");
	return 0;
}
