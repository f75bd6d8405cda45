/*
 * mock.h: the scripted part of sagewai-llm-mock, apart from HTTP so that
 * its wire formats can be unit-tested (tests/llm-mock).
 *
 * A script is an ordered list of turns the "model" plays, whatever the
 * provider:
 *
 *   [{"tool": "write", "path": "index.html", "content": "<h1>hi</h1>"},
 *    {"tool": "bash", "command": "ls"},
 *    {"text": "done"}]
 *
 * Which turn a request gets is read from the request itself: the number
 * of assistant turns its history already holds (so a retried request gets
 * the same turn again, and side requests without tools never move the
 * script). Each turn is translated into the provider's own tool call:
 *
 *   provider     write                              bash
 *   anthropic    Write {file_path, content}          Bash {command, description}
 *   responses    exec_command {cmd: a shell write}   exec_command {cmd}
 *   / chat       (or shell {command: [bash, -lc, cmd]} when that is what is offered)
 *   gemini       write_file {file_path, content}     run_shell_command {command, description}
 *
 * A relative path is joined to the working directory given to the mock
 * (default /workspace); CLIs want absolute paths. A turn past the end of
 * the script is answered with a short text and an end of turn.
 *
 * Ownership: every function returning a pointer gives it to the caller;
 * json_t arguments are borrowed unless said otherwise.
 */
#ifndef SW_LLM_MOCK_H
#define SW_LLM_MOCK_H

#include <stddef.h>
#include <jansson.h>

#define MOCK_SCRIPT_MAX_TURNS 256
#define MOCK_SCRIPT_FILE_MAX (4u << 20)

enum mock_provider {
	MOCK_ANTHROPIC, /* POST /v1/messages */
	MOCK_RESPONSES, /* POST /v1/responses */
	MOCK_CHAT,	/* POST /v1/chat/completions */
	MOCK_GEMINI,	/* POST /v1beta/models/M:generateContent / :streamGenerateContent */
};

const char *mock_provider_name(enum mock_provider p);

/* ---- script (script.c) ---------------------------------------------- */

enum mock_turn_kind { MOCK_TURN_TEXT, MOCK_TURN_WRITE, MOCK_TURN_BASH };

struct mock_turn {
	enum mock_turn_kind kind;
	char *text;    /* TEXT */
	char *path;    /* WRITE: relative (to the workdir) or absolute, clean */
	char *content; /* WRITE */
	char *command; /* BASH */
};

struct mock_script {
	struct mock_turn *turns;
	size_t n;
};

/* Parse and validate a script: a JSON array of 1..MOCK_SCRIPT_MAX_TURNS
 * turns, each exactly one of {"text"}, {"tool": "write", "path",
 * "content"}, {"tool": "bash", "command"}; strings valid UTF-8 without
 * NUL, paths clean (no "..", no empty or "." segments). NULL + errstr. */
struct mock_script *mock_script_parse(const char *json, size_t len, char *errstr, size_t errlen);
struct mock_script *mock_script_load(const char *path, char *errstr, size_t errlen);
void mock_script_free(struct mock_script *s);

/* ---- what a request says (wire.c) ------------------------------------ */

struct mock_history {
	size_t turn;	      /* assistant turns already in the history: the script's position */
	json_t *tool_results; /* array of strings: the tool outputs the request carries (owned) */
	json_t *tools;	      /* array of strings: the tool names it offers (owned) */
	const char *model;    /* borrowed from the body ("" when it names none) */
	int stream;	      /* the request asks for a stream */
	json_t *json_schema;  /* gemini: a structured-output side request's schema (borrowed) */
};

/*
 * Validate a request body of provider p (a JSON object; gemini's model
 * comes from the URL) and fill h. Anything malformed -- a missing or
 * mistyped field the provider requires, a message that is not an object,
 * an unknown role -- is refused with errstr naming the field
 * ("messages[2].content: must be a string or an array"). 0 or -1; on 0
 * the caller clears h with mock_history_clear.
 */
int mock_history_parse(enum mock_provider p, json_t *body, struct mock_history *h, char *errstr,
		       size_t errlen);
void mock_history_clear(struct mock_history *h);

/* ---- the reply -------------------------------------------------------- */

struct mock_reply {
	int is_tool;	  /* a tool call, else text */
	char *text;	  /* text reply */
	char *name;	  /* tool name */
	json_t *args;	  /* tool arguments (an object, owned) */
	char id[48];	  /* the call's id (toolu_mock_N, call_mock_N) */
	size_t in_tokens; /* a rough count for the usage fields */
};

/*
 * The reply to a request of provider p whose history is h: the script's
 * turn h->turn, translated for p (see the table at the top). A request
 * offering no tools at all (a side request: a title, a classifier) gets a
 * short text and does not use the script; gemini's structured-output side
 * requests get an object made from their schema (mock_schema_fill). A
 * tool turn whose tool the request does not offer is an error naming both.
 * seq numbers the ids. 0 or -1 (errstr); clear r with mock_reply_clear.
 */
int mock_plan(enum mock_provider p, const struct mock_script *s, const struct mock_history *h,
	      const char *workdir, unsigned long seq, struct mock_reply *r, char *errstr,
	      size_t errlen);
void mock_reply_clear(struct mock_reply *r);

/* A value matching a (gemini/OpenAPI-style) JSON schema: objects with
 * their required properties, an enum's first value, "mock" for strings,
 * 1 for numbers, false for booleans, [] for arrays. Depth-bounded. */
json_t *mock_schema_fill(json_t *schema);

/* The shell command writing content to path (absolute): base64 through
 * printf, so that any content survives any shell quoting. */
char *mock_shell_write(const char *path, const char *content);

/* ---- encoders (wire.c) -------------------------------------------------- */

/*
 * The whole response body for reply r: a server-sent-event stream
 * (mock_sse) or one JSON document (mock_json), in p's wire format.
 * Tool arguments and text are sent in several deltas (split on UTF-8
 * character boundaries) so that clients must reassemble them.
 *   anthropic  event: message_start, content_block_start, content_block_delta
 *              (text_delta | input_json_delta)..., content_block_stop,
 *              message_delta (stop_reason end_turn | tool_use), message_stop
 *   responses  event: response.created, response.in_progress,
 *              response.output_item.added, response.function_call_arguments.delta...
 *              / response.content_part.added, response.output_text.delta...,
 *              ...done, response.output_item.done, response.completed
 *   chat       data: chat.completion.chunk (delta.tool_calls | delta.content)...,
 *              finish_reason tool_calls | stop, data: [DONE]
 *   gemini     data: GenerateContentResponse (functionCall | text parts)
 * gemini_array: for gemini's streamGenerateContent without alt=sse, a
 * JSON array of the chunks instead of SSE. NULL on no memory.
 */
char *mock_sse(enum mock_provider p, const struct mock_reply *r, const char *model,
	       unsigned long seq, size_t *len);
json_t *mock_json(enum mock_provider p, const struct mock_reply *r, const char *model,
		  unsigned long seq);
json_t *mock_gemini_array(const struct mock_reply *r, const char *model);

#endif
