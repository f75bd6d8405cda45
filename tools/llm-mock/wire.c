/*
 * wire.c: the providers' wire formats -- what the mock reads from a
 * request (mock_history_parse) and the replies it streams (mock_sse,
 * mock_json). See mock.h for the event sequences.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock.h"

#define DELTA_BYTES 24	 /* most bytes of one delta: clients must reassemble */
#define MAX_ITEMS 100000 /* messages / items / contents in one request */

/* ---- requests ----------------------------------------------------------- */

void mock_history_clear(struct mock_history *h)
{
	json_decref(h->tool_results);
	json_decref(h->tools);
	memset(h, 0, sizeof(*h));
}

static int fail(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* The text of a tool result's content: a string, or an array of blocks
 * whose "text" members are joined; anything else as compact JSON. */
static int add_result(struct mock_history *h, json_t *content)
{
	char *s;
	int rc;

	if (json_is_string(content))
		return json_array_append(h->tool_results, content);
	if (json_is_array(content)) {
		size_t i, n = 0;
		json_t *b;
		char *joined;

		json_array_foreach(content, i, b)
			n += json_string_length(json_object_get(b, "text")) + 1;
		if ((joined = calloc(1, n + 1)) == NULL)
			return -1;
		json_array_foreach(content, i, b) {
			json_t *t = json_object_get(b, "text");

			if (json_is_string(t)) {
				strcat(joined, json_string_value(t));
				if (i + 1 < json_array_size(content))
					strcat(joined, "\n");
			}
		}
		rc = json_array_append_new(h->tool_results, json_string(joined));
		free(joined);
		return rc;
	}
	if ((s = json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		return -1;
	rc = json_array_append_new(h->tool_results, json_string(s));
	free(s);
	return rc;
}

/* Tool names offered: tools[].name (anthropic, responses), or
 * tools[].function.name (chat), or tools[].functionDeclarations[].name
 * (gemini). Entries without a name (a server tool) are skipped. */
static int parse_tools(enum mock_provider p, json_t *tools, struct mock_history *h, char *errstr,
		       size_t errlen)
{
	size_t i, k;
	json_t *t, *d;

	if (tools == NULL || json_is_null(tools))
		return 0;
	if (!json_is_array(tools) || json_array_size(tools) > 1024)
		return fail(errstr, errlen, "tools: must be an array of at most 1024 tools");
	json_array_foreach(tools, i, t) {
		json_t *name;

		if (!json_is_object(t))
			return fail(errstr, errlen, "tools[%zu]: must be an object", i);
		if (p == MOCK_GEMINI) {
			json_t *decls = json_object_get(t, "functionDeclarations");

			if (decls != NULL && !json_is_array(decls))
				return fail(errstr, errlen,
					    "tools[%zu].functionDeclarations: must be an array",
					    i);
			json_array_foreach(decls, k, d) {
				name = json_object_get(d, "name");
				if (!json_is_string(name))
					return fail(
					    errstr, errlen,
					    "tools[%zu].functionDeclarations[%zu].name: must "
					    "be a string",
					    i, k);
				json_array_append(h->tools, name);
			}
			continue;
		}
		name = p == MOCK_CHAT ? json_object_get(json_object_get(t, "function"), "name")
				      : json_object_get(t, "name");
		if (name != NULL && !json_is_string(name))
			return fail(errstr, errlen, "tools[%zu].name: must be a string", i);
		if (name != NULL)
			json_array_append(h->tools, name);
	}
	return 0;
}

static int parse_anthropic(json_t *body, struct mock_history *h, char *errstr, size_t errlen)
{
	json_t *msgs = json_object_get(body, "messages"), *m, *b;
	size_t i, k;

	if (!json_is_string(json_object_get(body, "model")))
		return fail(errstr, errlen, "model: must be a string");
	if (!json_is_array(msgs) || json_array_size(msgs) == 0 ||
	    json_array_size(msgs) > MAX_ITEMS)
		return fail(errstr, errlen, "messages: must be a non-empty array");
	json_array_foreach(msgs, i, m) {
		const char *role = json_string_value(json_object_get(m, "role"));
		json_t *content = json_object_get(m, "content");

		if (!json_is_object(m))
			return fail(errstr, errlen, "messages[%zu]: must be an object", i);
		if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0 &&
				     strcmp(role, "system") != 0))
			return fail(errstr, errlen,
				    "messages[%zu].role: must be user, assistant or system", i);
		if (!json_is_string(content) && !json_is_array(content))
			return fail(errstr, errlen,
				    "messages[%zu].content: must be a string or an array", i);
		if (strcmp(role, "assistant") == 0)
			h->turn++;
		json_array_foreach(content, k, b) {
			const char *type = json_string_value(json_object_get(b, "type"));

			if (!json_is_object(b) || type == NULL)
				return fail(errstr, errlen,
					    "messages[%zu].content[%zu]: must be an object with a "
					    "type",
					    i, k);
			if (strcmp(type, "tool_result") == 0 &&
			    add_result(h, json_object_get(b, "content")) != 0)
				return fail(errstr, errlen, "out of memory");
		}
	}
	return 0;
}

static int parse_responses(json_t *body, struct mock_history *h, char *errstr, size_t errlen)
{
	json_t *input = json_object_get(body, "input"), *it;
	size_t i;

	if (!json_is_string(json_object_get(body, "model")))
		return fail(errstr, errlen, "model: must be a string");
	if (json_is_string(input))
		return 0;
	if (!json_is_array(input) || json_array_size(input) > MAX_ITEMS)
		return fail(errstr, errlen, "input: must be a string or an array");
	json_array_foreach(input, i, it) {
		const char *type = json_string_value(json_object_get(it, "type"));
		const char *role = json_string_value(json_object_get(it, "role"));

		if (!json_is_object(it))
			return fail(errstr, errlen, "input[%zu]: must be an object", i);
		if (type == NULL && role == NULL)
			return fail(errstr, errlen, "input[%zu]: needs a type or a role", i);
		if (type == NULL)
			type = "message";
		if (strcmp(type, "function_call") == 0 || strcmp(type, "custom_tool_call") == 0 ||
		    strcmp(type, "local_shell_call") == 0 ||
		    (strcmp(type, "message") == 0 && role != NULL &&
		     strcmp(role, "assistant") == 0))
			h->turn++;
		if ((strcmp(type, "function_call_output") == 0 ||
		     strcmp(type, "custom_tool_call_output") == 0) &&
		    add_result(h, json_object_get(it, "output")) != 0)
			return fail(errstr, errlen, "out of memory");
	}
	return 0;
}

static int parse_chat(json_t *body, struct mock_history *h, char *errstr, size_t errlen)
{
	json_t *msgs = json_object_get(body, "messages"), *m;
	size_t i;

	if (!json_is_array(msgs) || json_array_size(msgs) == 0 ||
	    json_array_size(msgs) > MAX_ITEMS)
		return fail(errstr, errlen, "messages: must be a non-empty array");
	json_array_foreach(msgs, i, m) {
		const char *role = json_string_value(json_object_get(m, "role"));

		if (!json_is_object(m) || role == NULL)
			return fail(errstr, errlen, "messages[%zu]: must be an object with a role",
				    i);
		if (strcmp(role, "assistant") == 0)
			h->turn++;
		else if (strcmp(role, "tool") == 0 &&
			 add_result(h, json_object_get(m, "content")) != 0)
			return fail(errstr, errlen, "out of memory");
	}
	return 0;
}

static int parse_gemini(json_t *body, struct mock_history *h, char *errstr, size_t errlen)
{
	json_t *contents = json_object_get(body, "contents"), *c, *part, *gc;
	size_t i, k;

	if (!json_is_array(contents) || json_array_size(contents) == 0 ||
	    json_array_size(contents) > MAX_ITEMS)
		return fail(errstr, errlen, "contents: must be a non-empty array");
	json_array_foreach(contents, i, c) {
		const char *role = json_string_value(json_object_get(c, "role"));
		json_t *parts = json_object_get(c, "parts");

		if (!json_is_object(c) || !json_is_array(parts))
			return fail(errstr, errlen, "contents[%zu]: must be an object with parts",
				    i);
		if (role != NULL && strcmp(role, "model") == 0)
			h->turn++;
		json_array_foreach(parts, k, part) {
			json_t *fr = json_object_get(part, "functionResponse");

			if (!json_is_object(part))
				return fail(errstr, errlen,
					    "contents[%zu].parts[%zu]: must be an "
					    "object",
					    i, k);
			if (fr != NULL && add_result(h, json_object_get(fr, "response")) != 0)
				return fail(errstr, errlen, "out of memory");
		}
	}
	gc = json_object_get(body, "generationConfig");
	if (json_is_object(gc)) {
		json_t *schema = json_object_get(gc, "responseJsonSchema");

		if (schema == NULL)
			schema = json_object_get(gc, "responseSchema");
		if (json_is_object(schema))
			h->json_schema = schema;
	}
	return 0;
}

int mock_history_parse(enum mock_provider p, json_t *body, struct mock_history *h, char *errstr,
		       size_t errlen)
{
	json_t *stream;
	int rc;

	memset(h, 0, sizeof(*h));
	if (!json_is_object(body))
		return fail(errstr, errlen, "the body must be a JSON object");
	h->tool_results = json_array();
	h->tools = json_array();
	if (h->tool_results == NULL || h->tools == NULL) {
		mock_history_clear(h);
		return fail(errstr, errlen, "out of memory");
	}
	stream = json_object_get(body, "stream");
	if (stream != NULL && !json_is_boolean(stream)) {
		mock_history_clear(h);
		return fail(errstr, errlen, "stream: must be a boolean");
	}
	h->stream = json_is_true(stream);
	h->model = json_string_value(json_object_get(body, "model"));
	if (h->model == NULL)
		h->model = "";
	switch (p) {
	case MOCK_ANTHROPIC:
		rc = parse_anthropic(body, h, errstr, errlen);
		break;
	case MOCK_RESPONSES:
		rc = parse_responses(body, h, errstr, errlen);
		break;
	case MOCK_CHAT:
		rc = parse_chat(body, h, errstr, errlen);
		break;
	default:
		rc = parse_gemini(body, h, errstr, errlen);
		break;
	}
	if (rc == 0)
		rc = parse_tools(p, json_object_get(body, "tools"), h, errstr, errlen);
	if (rc != 0)
		mock_history_clear(h);
	return rc;
}

/* ---- replies ------------------------------------------------------------ */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* One SSE event: "event: NAME\n" (when name) "data: JSON\n\n". Steals data. */
static void sse(struct sbuf *b, const char *name, json_t *data)
{
	char *s = data ? json_dumps(data, JSON_COMPACT) : NULL;

	json_decref(data);
	if (s == NULL) {
		b->oom = 1;
		return;
	}
	if (name != NULL) {
		sb_add(b, "event: ", 7);
		sb_add(b, name, strlen(name));
		sb_add(b, "\n", 1);
	}
	sb_add(b, "data: ", 6);
	sb_add(b, s, strlen(s));
	sb_add(b, "\n\n", 2);
	free(s);
}

/* The length of the next delta of s: at most DELTA_BYTES, never cutting
 * a UTF-8 sequence (continuation bytes are 10xxxxxx). */
static size_t next_cut(const char *s)
{
	size_t n = strnlen(s, DELTA_BYTES);

	if (s[n] == '\0')
		return n;
	while (n > 1 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

static char *args_text(const struct mock_reply *r)
{
	return json_dumps(r->args, JSON_COMPACT);
}

static json_t *strn(const char *s, size_t n)
{
	return json_stringn(s, n);
}

static size_t out_tokens(const struct mock_reply *r)
{
	size_t n = r->is_tool ? 32 : strlen(r->text) / 4 + 1;

	return n;
}

/* anthropic: the content block of a reply, as the finished message holds it */
static json_t *anthropic_block(const struct mock_reply *r)
{
	if (r->is_tool)
		return json_pack("{s:s, s:s, s:s, s:O}", "type", "tool_use", "id", r->id, "name",
				 r->name, "input", r->args);
	return json_pack("{s:s, s:s}", "type", "text", "text", r->text);
}

static void anthropic_sse(struct sbuf *b, const struct mock_reply *r, const char *model,
			  unsigned long seq)
{
	char id[48], *args = NULL;
	const char *s;

	snprintf(id, sizeof(id), "msg_mock_%lu", seq);
	sse(b, "message_start",
	    json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:{s:I, s:i, s:i, s:i}}}",
		      "type", "message_start", "message", "id", id, "type", "message", "role",
		      "assistant", "model", model, "content", "stop_reason", "stop_sequence",
		      "usage", "input_tokens", (json_int_t)r->in_tokens, "output_tokens", 1,
		      "cache_creation_input_tokens", 0, "cache_read_input_tokens", 0));
	if (r->is_tool) {
		sse(b, "content_block_start",
		    json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:{}}}", "type", "content_block_start",
			      "index", 0, "content_block", "type", "tool_use", "id", r->id, "name",
			      r->name, "input"));
		if ((s = args = args_text(r)) == NULL)
			b->oom = 1;
		while (s != NULL && *s) {
			size_t n = next_cut(s);

			sse(b, "content_block_delta",
			    json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta",
				      "index", 0, "delta", "type", "input_json_delta",
				      "partial_json", strn(s, n)));
			s += n;
		}
	} else {
		sse(b, "content_block_start",
		    json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index",
			      0, "content_block", "type", "text", "text", ""));
		for (s = r->text; *s;) {
			size_t n = next_cut(s);

			sse(b, "content_block_delta",
			    json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta",
				      "index", 0, "delta", "type", "text_delta", "text",
				      strn(s, n)));
			s += n;
		}
	}
	free(args);
	sse(b, "content_block_stop",
	    json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0));
	sse(b, "message_delta",
	    json_pack("{s:s, s:{s:s, s:n}, s:{s:I}}", "type", "message_delta", "delta",
		      "stop_reason", r->is_tool ? "tool_use" : "end_turn", "stop_sequence",
		      "usage", "output_tokens", (json_int_t)out_tokens(r)));
	sse(b, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

/* responses: the output item of a reply, finished */
static json_t *responses_item(const struct mock_reply *r, unsigned long seq, const char *status)
{
	char id[48], *args;
	json_t *it;

	if (r->is_tool) {
		snprintf(id, sizeof(id), "fc_mock_%lu", seq);
		if ((args = args_text(r)) == NULL)
			return NULL;
		it = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "function_call", "id", id,
			       "call_id", r->id, "name", r->name, "arguments",
			       status[0] == 'i' ? "" : args, "status", status);
		free(args);
		return it;
	}
	snprintf(id, sizeof(id), "msg_mock_%lu", seq);
	if (status[0] == 'i')
		return json_pack("{s:s, s:s, s:s, s:s, s:[]}", "type", "message", "id", id, "role",
				 "assistant", "status", status, "content");
	return json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:[]}]}", "type", "message", "id", id,
			 "role", "assistant", "status", status, "content", "type", "output_text",
			 "text", r->text, "annotations");
}

static json_t *responses_obj(const struct mock_reply *r, const char *model, unsigned long seq,
			     const char *status, json_t *output /* stolen */)
{
	char id[48];

	snprintf(id, sizeof(id), "resp_mock_%lu", seq);
	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o}", "id", id, "object", "response",
			 "created_at", (json_int_t)time(NULL), "status", status, "model", model,
			 "output", output ? output : json_array(), "usage",
			 status[0] == 'c'
			     ? json_pack("{s:I, s:{s:i}, s:I, s:{s:i}, s:I}", "input_tokens",
					 (json_int_t)r->in_tokens, "input_tokens_details",
					 "cached_tokens", 0, "output_tokens",
					 (json_int_t)out_tokens(r), "output_tokens_details",
					 "reasoning_tokens", 0, "total_tokens",
					 (json_int_t)(r->in_tokens + out_tokens(r)))
			     : json_null());
}

static void responses_sse(struct sbuf *b, const struct mock_reply *r, const char *model,
			  unsigned long seq)
{
	char item_id[48], *args = NULL;
	const char *s;
	int n_ev = 0;

	snprintf(item_id, sizeof(item_id), r->is_tool ? "fc_mock_%lu" : "msg_mock_%lu", seq);
#define EV(name, ...) sse(b, name, json_pack("{s:s, s:i, " __VA_ARGS__))
	EV("response.created", "s:o}", "type", "response.created", "sequence_number", n_ev++,
	   "response", responses_obj(r, model, seq, "in_progress", NULL));
	EV("response.in_progress", "s:o}", "type", "response.in_progress", "sequence_number",
	   n_ev++, "response", responses_obj(r, model, seq, "in_progress", NULL));
	EV("response.output_item.added", "s:i, s:o}", "type", "response.output_item.added",
	   "sequence_number", n_ev++, "output_index", 0, "item",
	   responses_item(r, seq, "in_progress"));
	if (r->is_tool) {
		if ((s = args = args_text(r)) == NULL)
			b->oom = 1;
		while (s != NULL && *s) {
			size_t n = next_cut(s);

			EV("response.function_call_arguments.delta", "s:s, s:i, s:o}", "type",
			   "response.function_call_arguments.delta", "sequence_number", n_ev++,
			   "item_id", item_id, "output_index", 0, "delta", strn(s, n));
			s += n;
		}
		EV("response.function_call_arguments.done", "s:s, s:i, s:s}", "type",
		   "response.function_call_arguments.done", "sequence_number", n_ev++, "item_id",
		   item_id, "output_index", 0, "arguments", args ? args : "");
	} else {
		EV("response.content_part.added", "s:s, s:i, s:i, s:{s:s, s:s, s:[]}}", "type",
		   "response.content_part.added", "sequence_number", n_ev++, "item_id", item_id,
		   "output_index", 0, "content_index", 0, "part", "type", "output_text", "text",
		   "", "annotations");
		for (s = r->text; *s;) {
			size_t n = next_cut(s);

			EV("response.output_text.delta", "s:s, s:i, s:i, s:o}", "type",
			   "response.output_text.delta", "sequence_number", n_ev++, "item_id",
			   item_id, "output_index", 0, "content_index", 0, "delta", strn(s, n));
			s += n;
		}
		EV("response.output_text.done", "s:s, s:i, s:i, s:s}", "type",
		   "response.output_text.done", "sequence_number", n_ev++, "item_id", item_id,
		   "output_index", 0, "content_index", 0, "text", r->text);
		EV("response.content_part.done", "s:s, s:i, s:i, s:{s:s, s:s, s:[]}}", "type",
		   "response.content_part.done", "sequence_number", n_ev++, "item_id", item_id,
		   "output_index", 0, "content_index", 0, "part", "type", "output_text", "text",
		   r->text, "annotations");
	}
	free(args);
	EV("response.output_item.done", "s:i, s:o}", "type", "response.output_item.done",
	   "sequence_number", n_ev++, "output_index", 0, "item",
	   responses_item(r, seq, "completed"));
	EV("response.completed", "s:o}", "type", "response.completed", "sequence_number", n_ev++,
	   "response",
	   responses_obj(r, model, seq, "completed",
			 json_pack("[o]", responses_item(r, seq, "completed"))));
#undef EV
}

static json_t *chat_chunk(const char *model, unsigned long seq, json_t *delta, const char *finish)
{
	char id[48];

	snprintf(id, sizeof(id), "chatcmpl-mock-%lu", seq);
	return json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:s?}]}", "id", id, "object",
			 "chat.completion.chunk", "created", (json_int_t)time(NULL), "model",
			 model, "choices", "index", 0, "delta", delta, "finish_reason", finish);
}

static void chat_sse(struct sbuf *b, const struct mock_reply *r, const char *model,
		     unsigned long seq)
{
	char *args = NULL;
	const char *s;

	if (r->is_tool) {
		sse(b, NULL,
		    chat_chunk(model, seq,
			       json_pack("{s:s, s:n, s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "role",
					 "assistant", "content", "tool_calls", "index", 0, "id",
					 r->id, "type", "function", "function", "name", r->name,
					 "arguments", ""),
			       NULL));
		if ((s = args = args_text(r)) == NULL)
			b->oom = 1;
		while (s != NULL && *s) {
			size_t n = next_cut(s);

			sse(b, NULL,
			    chat_chunk(model, seq,
				       json_pack("{s:[{s:i, s:{s:o}}]}", "tool_calls", "index", 0,
						 "function", "arguments", strn(s, n)),
				       NULL));
			s += n;
		}
		free(args);
	} else {
		sse(b, NULL,
		    chat_chunk(model, seq,
			       json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL));
		for (s = r->text; *s;) {
			size_t n = next_cut(s);

			sse(b, NULL,
			    chat_chunk(model, seq, json_pack("{s:o}", "content", strn(s, n)),
				       NULL));
			s += n;
		}
	}
	sse(b, NULL, chat_chunk(model, seq, json_object(), r->is_tool ? "tool_calls" : "stop"));
	sb_add(b, "data: [DONE]\n\n", 14);
}

/* gemini: one GenerateContentResponse holding parts; finish: the last */
static json_t *gemini_chunk(const struct mock_reply *r, const char *model, json_t *parts,
			    int finish)
{
	json_t *cand = json_pack("{s:{s:o, s:s}, s:i}", "content", "parts", parts, "role", "model",
				 "index", 0);
	json_t *o;

	if (cand != NULL && finish)
		json_object_set_new(cand, "finishReason", json_string("STOP"));
	o = json_pack("{s:[o], s:s}", "candidates", cand, "modelVersion", model);
	if (o != NULL && finish)
		json_object_set_new(o, "usageMetadata",
				    json_pack("{s:I, s:I, s:I}", "promptTokenCount",
					      (json_int_t)r->in_tokens, "candidatesTokenCount",
					      (json_int_t)out_tokens(r), "totalTokenCount",
					      (json_int_t)(r->in_tokens + out_tokens(r))));
	return o;
}

/* The chunks of a gemini reply: a function call comes whole (the API
 * never splits one), text in deltas. */
static json_t *gemini_chunks(const struct mock_reply *r, const char *model)
{
	json_t *a = json_array();
	const char *s;

	if (a == NULL)
		return NULL;
	if (r->is_tool) {
		json_array_append_new(
		    a, gemini_chunk(r, model,
				    json_pack("[{s:{s:s, s:s, s:O}}]", "functionCall", "id", r->id,
					      "name", r->name, "args", r->args),
				    1));
		return a;
	}
	for (s = r->text; *s;) {
		size_t n = next_cut(s);

		json_array_append_new(a, gemini_chunk(r, model,
						      json_pack("[{s:o}]", "text", strn(s, n)),
						      s[n] == '\0'));
		s += n;
	}
	if (r->text[0] == '\0')
		json_array_append_new(a,
				      gemini_chunk(r, model, json_pack("[{s:s}]", "text", ""), 1));
	return a;
}

json_t *mock_gemini_array(const struct mock_reply *r, const char *model)
{
	return gemini_chunks(r, model);
}

char *mock_sse(enum mock_provider p, const struct mock_reply *r, const char *model,
	       unsigned long seq, size_t *len)
{
	struct sbuf b = {0};
	json_t *chunks, *c;
	size_t i;

	switch (p) {
	case MOCK_ANTHROPIC:
		anthropic_sse(&b, r, model, seq);
		break;
	case MOCK_RESPONSES:
		responses_sse(&b, r, model, seq);
		break;
	case MOCK_CHAT:
		chat_sse(&b, r, model, seq);
		break;
	case MOCK_GEMINI:
		if ((chunks = gemini_chunks(r, model)) == NULL)
			b.oom = 1;
		json_array_foreach(chunks, i, c)
			sse(&b, NULL, json_incref(c));
		json_decref(chunks);
		break;
	}
	if (b.oom || b.p == NULL) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

json_t *mock_json(enum mock_provider p, const struct mock_reply *r, const char *model,
		  unsigned long seq)
{
	char id[48], *args;
	json_t *o;

	switch (p) {
	case MOCK_ANTHROPIC:
		snprintf(id, sizeof(id), "msg_mock_%lu", seq);
		return json_pack("{s:s, s:s, s:s, s:s, s:[o], s:s, s:n, s:{s:I, s:I}}", "id", id,
				 "type", "message", "role", "assistant", "model", model, "content",
				 anthropic_block(r), "stop_reason",
				 r->is_tool ? "tool_use" : "end_turn", "stop_sequence", "usage",
				 "input_tokens", (json_int_t)r->in_tokens, "output_tokens",
				 (json_int_t)out_tokens(r));
	case MOCK_RESPONSES:
		return responses_obj(r, model, seq, "completed",
				     json_pack("[o]", responses_item(r, seq, "completed")));
	case MOCK_CHAT:
		snprintf(id, sizeof(id), "chatcmpl-mock-%lu", seq);
		if (!r->is_tool)
			return json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:s}]}",
					 "id", id, "object", "chat.completion", "created",
					 (json_int_t)time(NULL), "model", model, "choices",
					 "index", 0, "message", "role", "assistant", "content",
					 r->text, "finish_reason", "stop");
		if ((args = args_text(r)) == NULL)
			return NULL;
		o = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:n, s:[{s:s, s:s, s:{s:s, "
			      "s:s}}]}, s:s}]}",
			      "id", id, "object", "chat.completion", "created",
			      (json_int_t)time(NULL), "model", model, "choices", "index", 0,
			      "message", "role", "assistant", "content", "tool_calls", "id", r->id,
			      "type", "function", "function", "name", r->name, "arguments", args,
			      "finish_reason", "tool_calls");
		free(args);
		return o;
	case MOCK_GEMINI: {
		json_t *chunks = gemini_chunks(r, model), *last;

		/* one response: every part in one candidate */
		if (chunks == NULL || json_array_size(chunks) == 0) {
			json_decref(chunks);
			return NULL;
		}
		if (!r->is_tool) {
			last = gemini_chunk(r, model, json_pack("[{s:s}]", "text", r->text), 1);
			json_decref(chunks);
			return last;
		}
		last = json_incref(json_array_get(chunks, 0));
		json_decref(chunks);
		return last;
	}
	}
	return NULL;
}
