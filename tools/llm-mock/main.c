/*
 * sagewai-llm-mock: an offline, deterministic model endpoint for demos and
 * tests: OpenAI-compatible chat completions, and, with --script, the wire
 * APIs the real agent CLIs speak (Anthropic Messages, OpenAI Responses and
 * Chat Completions, Gemini generateContent), playing a script of tool calls.
 *
 *   sagewai-llm-mock [--port P] [--port-file F] [--require-key KEY | --require-key-file F]
 *                    [--fail-first N] [--delay-ms N] [--fence] [--max-connections N]
 *                    [--script FILE [--workdir DIR]] [--log FILE]
 *
 * Scripted endpoints (mock.h has the script and how each turn becomes each
 * provider's tool call; docs/AGENTS.md the whole contract):
 *   POST /v1/messages                 Anthropic Messages (Claude Code), SSE when
 *                                     "stream": true; /v1/messages/count_tokens
 *   POST /v1/responses                OpenAI Responses (Codex CLI), SSE when streamed
 *   POST /v1/chat/completions         with --script: Chat Completions with tool_calls
 *                                     (streamed when asked); without, the replies below
 *   POST /v1beta/models/M:generateContent, M:streamGenerateContent[?alt=sse]
 *                                     Gemini (Gemini CLI)
 *   HEAD/GET /                        200 (Claude Code's connectivity probe)
 *   GET /v1/mock/requests             {"requests": [...]}: every request to the
 *                                     endpoints above, in order: seq, t_us (when the
 *                                     request was read, CLOCK_REALTIME µs), provider, method,
 *                                     path, status, authorized, headers (key headers
 *                                     redacted), model, stream, turn, tools (offered),
 *                                     tool_results (the tool outputs it carried), reply,
 *                                     error, body (the parsed body; ?bodies=0 leaves
 *                                     them out; bodies beyond 256 MiB in all are dropped)
 *   --log FILE                        the same entries, one JSON line each, appended
 *   --workdir DIR                     relative script paths are joined to DIR
 *                                     (/workspace)
 * The key (--require-key*) is taken where each provider sends it:
 * x-api-key or Authorization: Bearer (Anthropic), Authorization: Bearer
 * (OpenAI), x-goog-api-key or ?key= (Gemini); errors come in each
 * provider's own error shape, 4xx for anything a client got wrong.
 *
 * POST /v1/chat/completions answers a chat.completion whose content is
 *   - when the last user message or the system prompt contains "JSON": a
 *     small JSON object derived from the prompt, e.g. for "a portfolio site
 *     for a photographer"
 *       {"title": "Portfolio site for a photographer",
 *        "sections": ["about", "gallery", "contact"], "tone": "warm"}
 *     or, when the prompt names keys in double quotes, an object with just
 *     those keys (see json_reply)
 *   - else "Summary: " and the first 30 words of the last user message.
 * Same request, same answer.
 *
 * --require-key KEY   requests without "Authorization: Bearer KEY" get 401
 * --fail-first N      the first N completion requests get 500
 * --delay-ms N        every completion is answered N ms late (not blocking)
 * --max-connections N open connections at once, from all and from one address
 *                     (sw_http's defaults otherwise: 1024 and 64); load tests
 *                     with long delays hold one per step in flight
 * --fence             JSON replies come as "Here it is:" and a ```json fence,
 *                     as chat models often answer (clients must cope)
 * GET /v1/mock/stats  {"requests", "completions", "unauthorized", "failed",
 *                     "delayed", "max_delayed"} (replies held back now / at most
 *                     at once: how many requests a client had in flight)
 * GET /v1/models      a one-model list
 *
 * The first line on stdout is "listening on 127.0.0.1:PORT" (--port 0, the
 * default, binds a port the kernel chooses); --port-file F also writes PORT
 * and a newline to F (atomically: F.tmp, then renamed). SIGTERM / SIGINT
 * stop it.
 */
#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>

#include "mock.h"
#include "sw_core.h"
#include "sw_http.h"

#define BODY_MAX (16u << 20)
#define LOG_BODIES_MAX (256u << 20) /* bodies kept for /v1/mock/requests, in all */

#define SUMMARY_WORDS 30
#define TITLE_WORDS 8

struct mock {
	struct event_base *base;
	struct sw_http *http;
	const char *key;
	long fail_first;
	long delay_ms;
	int fence; /* wrap JSON replies in a ```json fence, as chat models do */
	unsigned long requests, completions, unauthorized, failed;
	unsigned long delayed, max_delayed; /* replies held back now, and at most */
	struct mock_script *script;	    /* --script: the scripted endpoints play it */
	const char *workdir;		    /* relative script paths are joined to it */
	unsigned long seq;		    /* scripted requests answered (ids) */
	json_t *log;			    /* entries of /v1/mock/requests */
	size_t log_bytes;		    /* body bytes kept in log */
	FILE *logf;			    /* --log */
};

/* A reply held back by --delay-ms. */
struct pending {
	struct mock *m;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct event *timer;
	json_t *body;
};

static void split_words(const char *s, char ***words, size_t *n)
{
	const char *p = s, *start;
	char **w = NULL, **nw;

	*n = 0;
	for (;;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if ((nw = realloc(w, (*n + 1) * sizeof(*w))) == NULL)
			break;
		w = nw;
		if ((w[*n] = strndup(start, (size_t)(p - start))) == NULL)
			break;
		(*n)++;
	}
	*words = w;
}

static void free_words(char **w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(w[i]);
	free(w);
}

static int has_word(const char *text, const char *needle)
{
	return strcasestr(text, needle) != NULL;
}

/* "Summary: <first 30 words>[...]" */
static char *summary(const char *prompt)
{
	char **w, *out;
	size_t n, i, len = 32; /* "Summary:", " ..." or " (empty prompt)" */

	split_words(prompt, &w, &n);
	for (i = 0; i < n && i < SUMMARY_WORDS; i++)
		len += strlen(w[i]) + 1;
	if ((out = malloc(len)) == NULL) {
		free_words(w, n);
		return NULL;
	}
	strcpy(out, "Summary:");
	for (i = 0; i < n && i < SUMMARY_WORDS; i++) {
		strcat(out, " ");
		strcat(out, w[i]);
	}
	if (n > SUMMARY_WORDS)
		strcat(out, " ...");
	if (n == 0)
		strcat(out, " (empty prompt)");
	free_words(w, n);
	return out;
}

/* A title from the prompt's first line: at most TITLE_WORDS words, a
 * leading article dropped, words mentioning JSON skipped, capitalised. */
static void make_title(const char *prompt, char *title, size_t tlen)
{
	size_t n, i, used = 0, t = 0, len;
	char **w, *line;

	line = strndup(prompt, strcspn(prompt, "\n"));
	split_words(line ? line : "", &w, &n);
	free(line);
	title[0] = '\0';
	for (i = 0; i < n && used < TITLE_WORDS; i++) {
		char word[64];

		if (strcasestr(w[i], "json") != NULL)
			continue;
		if (used == 0 && (strcasecmp(w[i], "a") == 0 || strcasecmp(w[i], "an") == 0 ||
				  strcasecmp(w[i], "the") == 0))
			continue;
		snprintf(word, sizeof(word), "%s", w[i]);
		len = strlen(word);
		while (len > 0 && strchr(".,;:!?\"'", word[len - 1]) != NULL)
			word[--len] = '\0';
		if (len == 0)
			continue;
		if (t + len + 2 >= tlen)
			break;
		if (used > 0)
			title[t++] = ' ';
		memcpy(title + t, word, len + 1);
		t += len;
		used++;
	}
	free_words(w, n);
	if (used == 0)
		snprintf(title, tlen, "Untitled");
	title[0] = (char)toupper((unsigned char)title[0]);
}

/* The value of one asked-for key; hint is the prompt text after the key. */
static json_t *key_value(const char *key, const char *hint, const char *title, json_t *sections)
{
	char slug[128];
	size_t i, n = 0;

	if (strcmp(key, "sections") == 0 || strncmp(hint, "array", 5) == 0 ||
	    strncmp(hint, "list", 4) == 0)
		return json_incref(sections);
	if (strcmp(key, "tone") == 0)
		return json_string("warm");
	if (strcmp(key, "style") == 0)
		return json_string("clean and minimal");
	if (strcmp(key, "framework") == 0)
		return json_string("nextjs");
	if (strstr(key, "url") != NULL || strstr(key, "repo") != NULL ||
	    strcasestr(hint, "url") != NULL) {
		for (i = 0; title[i] && n + 1 < sizeof(slug); i++)
			if (isalnum((unsigned char)title[i]))
				slug[n++] = (char)tolower((unsigned char)title[i]);
			else if (n > 0 && slug[n - 1] != '-')
				slug[n++] = '-';
		while (n > 0 && slug[n - 1] == '-')
			n--;
		slug[n] = '\0';
		return json_sprintf("https://github.com/example/%s", n ? slug : "site");
	}
	return json_string(title);
}

/*
 * The JSON reply. When the prompt names the keys it wants, in double
 * quotes ("title" (string), "sections" (array of strings) ...), the object
 * has exactly those keys, valued by name and by the words that follow each
 * (array/list, URL); otherwise it is {"title", "sections", "tone"}. The
 * title comes from the prompt's first line, the middle section from its
 * topic (shop: products, blog: posts, restaurant: menu, else gallery).
 */
static char *json_reply(const char *prompt)
{
	static const struct {
		const char *kw;
		const char *middle;
	} topics[] = {
	    {"shop", "products"},   {"store", "products"}, {"blog", "posts"},
	    {"restaurant", "menu"}, {"cafe", "menu"},
	};
	const char *middle = "gallery", *p, *q, *hint;
	char title[256], key[48], *out;
	json_t *o, *sections, *v;
	size_t i, len;

	make_title(prompt, title, sizeof(title));
	for (i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		if (has_word(prompt, topics[i].kw)) {
			middle = topics[i].middle;
			break;
		}
	sections = json_pack("[s,s,s]", "about", middle, "contact");
	o = json_object();
	if (sections == NULL || o == NULL)
		goto fail;
	for (p = prompt; (p = strchr(p, '"')) != NULL && json_object_size(o) < 16; p = q + 1) {
		if ((q = strchr(p + 1, '"')) == NULL)
			break;
		len = (size_t)(q - p - 1);
		if (len == 0 || len >= sizeof(key) ||
		    strspn(p + 1, "abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "0123456789_") != len ||
		    isdigit((unsigned char)p[1])) {
			q = p; /* this quote may open the next key */
			continue;
		}
		memcpy(key, p + 1, len);
		key[len] = '\0';
		for (hint = q + 1; *hint == ' ' || *hint == '(' || *hint == ':'; hint++)
			;
		if (strncmp(hint, "the ", 4) == 0)
			hint += 4;
		if ((v = key_value(key, hint, title, sections)) == NULL ||
		    json_object_set_new(o, key, v) == -1)
			goto fail;
	}
	if (json_object_size(o) == 0 &&
	    (json_object_set_new(o, "title", json_string(title)) == -1 ||
	     json_object_set(o, "sections", sections) == -1 ||
	     json_object_set_new(o, "tone", json_string("warm")) == -1))
		goto fail;
	out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	json_decref(sections);
	return out;
fail:
	json_decref(o);
	json_decref(sections);
	return NULL;
}

static size_t count_words(const char *s)
{
	char **w;
	size_t n;

	split_words(s, &w, &n);
	free_words(w, n);
	return n;
}

static void send_json(struct evhttp_request *req, int status, json_t *body)
{
	sw_http_reply_json(req, status, body);
}

static void pending_free(struct pending *p)
{
	p->m->delayed--;
	if (p->timer)
		event_free(p->timer);
	json_decref(p->body);
	free(p);
}

static void pending_fire(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;

	(void)fd;
	(void)what;
	evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	send_json(p->req, 200, json_incref(p->body));
	pending_free(p);
}

/* The client went away while we waited: the request is gone with it. */
static void pending_closed(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	pending_free(arg);
}

/* ---- the scripted endpoints -------------------------------------------- */

/* An error in provider p's own shape. */
static void provider_error(struct evhttp_request *req, enum mock_provider p, int status,
			   const char *msg)
{
	const char *atype, *gstatus;
	json_t *o;

	switch (status) {
	case 401:
		atype = "authentication_error";
		gstatus = "UNAUTHENTICATED";
		break;
	case 404:
		atype = "not_found_error";
		gstatus = "NOT_FOUND";
		break;
	case 405:
		atype = "invalid_request_error";
		gstatus = "INVALID_ARGUMENT";
		break;
	case 500:
		atype = "api_error";
		gstatus = "INTERNAL";
		break;
	default:
		atype = "invalid_request_error";
		gstatus = "INVALID_ARGUMENT";
		break;
	}
	if (p == MOCK_ANTHROPIC)
		o = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", atype,
			      "message", msg);
	else if (p == MOCK_GEMINI)
		o = json_pack("{s:{s:i, s:s, s:s}}", "error", "code", status, "message", msg,
			      "status", gstatus);
	else
		o = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", msg, "type",
			      status == 401 ? "invalid_request_error" : atype, "code",
			      status == 401 ? "invalid_api_key" : atype);
	sw_http_reply_json(req, status, o);
}

/* 1 when the request carries the key where provider p sends it. */
static int key_ok(struct mock *m, struct evhttp_request *req, enum mock_provider p)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *auth = evhttp_find_header(h, "Authorization");
	const char *x = NULL;
	char bearer[600];

	if (m->key == NULL)
		return 1;
	snprintf(bearer, sizeof(bearer), "Bearer %s", m->key);
	if (auth != NULL && strcmp(auth, bearer) == 0 && p != MOCK_GEMINI)
		return 1;
	if (p == MOCK_ANTHROPIC)
		x = evhttp_find_header(h, "x-api-key");
	if (p == MOCK_GEMINI) {
		const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
		struct evkeyvalq qs;
		int ok = 0;

		x = evhttp_find_header(h, "x-goog-api-key");
		if (x == NULL && q != NULL && evhttp_parse_query_str(q, &qs) == 0) {
			const char *k = evhttp_find_header(&qs, "key");

			ok = k != NULL && strcmp(k, m->key) == 0;
			evhttp_clear_headers(&qs);
			return ok;
		}
	}
	return x != NULL && strcmp(x, m->key) == 0;
}

/* The request's headers, the key-bearing ones redacted. */
static json_t *headers_json(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	json_t *o = json_object();

	TAILQ_FOREACH(kv, h, next) {
		char name[128];
		size_t i;

		snprintf(name, sizeof(name), "%s", kv->key);
		for (i = 0; name[i]; i++)
			name[i] = (char)tolower((unsigned char)name[i]);
		if (strcmp(name, "authorization") == 0 || strcmp(name, "x-api-key") == 0 ||
		    strcmp(name, "x-goog-api-key") == 0)
			json_object_set_new(o, name, json_string("[redacted]"));
		else
			json_object_set_new(o, name, json_string(kv->value));
	}
	return o;
}

/* The query string with the value of any key= parameter redacted. */
static json_t *query_json(const char *q)
{
	char *out, *o;
	json_t *j;

	if (q == NULL)
		return json_null();
	if ((out = malloc(strlen(q) * 2 + 16)) == NULL)
		return NULL;
	for (o = out; *q;) {
		size_t n = strcspn(q, "&");

		if (strncmp(q, "key=", 4) == 0)
			o += sprintf(o, "key=[redacted]");
		else {
			memcpy(o, q, n);
			o += n;
		}
		q += n;
		if (*q == '&')
			*o++ = *q++;
	}
	*o = '\0';
	j = json_string(out);
	free(out);
	return j;
}

/* Keep entry e (stolen) for /v1/mock/requests and the --log file. */
static void record(struct mock *m, json_t *e, json_t *body, size_t body_len)
{
	if (m->logf != NULL) {
		if (body != NULL)
			json_object_set(e, "body", body);
		json_dumpf(e, m->logf, JSON_COMPACT);
		fputc('\n', m->logf);
		fflush(m->logf);
	}
	if (body != NULL && m->log_bytes + body_len <= LOG_BODIES_MAX) {
		json_object_set(e, "body", body);
		m->log_bytes += body_len;
	} else {
		json_object_del(e, "body");
		if (body != NULL)
			json_object_set_new(e, "body_dropped", json_true());
	}
	json_array_append_new(m->log, e);
}

/* Gemini's path: /v1beta/models/MODEL:ACTION; 0 with model and stream
 * filled, or -1 (an unknown action or a bad model name). */
static int gemini_path(const char *path, char *model, size_t mlen, int *stream)
{
	const char *p = path + strlen("/v1beta/models/"), *colon = strrchr(p, ':');
	size_t n;

	if (colon == NULL || (n = (size_t)(colon - p)) == 0 || n >= mlen || n > 128)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)p[i]) && strchr("._-", p[i]) == NULL)
			return -1;
	memcpy(model, p, n);
	model[n] = '\0';
	if (strcmp(colon + 1, "generateContent") == 0)
		*stream = 0;
	else if (strcmp(colon + 1, "streamGenerateContent") == 0)
		*stream = 1;
	else
		return -1;
	return 0;
}

static void scripted(struct mock *m, struct evhttp_request *req, enum mock_provider p)
{
	const char *path = sw_http_path(req);
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct mock_history h = {0};
	struct mock_reply r = {0};
	char err[512], gmodel[160];
	json_t *e, *body = NULL;
	char *raw = NULL, *sse_body;
	size_t len = 0, sse_len;
	int status = 200, gstream = 0, sse_mode, have_h = 0;

	m->requests++;
	e = json_pack("{s:I, s:I, s:s, s:s, s:s, s:o, s:o}", "seq", (json_int_t)m->requests,
		      "t_us", (json_int_t)sw_now_us(), "provider", mock_provider_name(p), "method",
		      evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "other",
		      "path", path, "query", query_json(query), "headers", headers_json(req));
	if (e == NULL) {
		provider_error(req, p, 500, "out of memory");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		status = 405;
		snprintf(err, sizeof(err), "%s takes POST only", path);
		goto refuse;
	}
	if (p == MOCK_GEMINI && gemini_path(path, gmodel, sizeof(gmodel), &gstream) != 0) {
		status = 404;
		snprintf(err, sizeof(err),
			 "no such method: want /v1beta/models/MODEL:generateContent or "
			 ":streamGenerateContent, MODEL of [A-Za-z0-9._-]{1,128}");
		goto refuse;
	}
	if (!key_ok(m, req, p)) {
		m->unauthorized++;
		status = 401;
		snprintf(err, sizeof(err), "invalid API key");
		json_object_set_new(e, "authorized", json_false());
		goto refuse;
	}
	json_object_set_new(e, "authorized", json_true());
	if ((long)m->failed < m->fail_first) {
		m->failed++;
		status = 500;
		snprintf(err, sizeof(err), "mock failure %lu of %ld", m->failed, m->fail_first);
		goto refuse;
	}
	if ((raw = sw_http_body(req, &len)) == NULL) {
		status = 400;
		snprintf(err, sizeof(err), "cannot read the body");
		goto refuse;
	}
	{
		json_error_t jerr;

		if ((body = json_loadb(raw, len, 0, &jerr)) == NULL) {
			status = 400;
			snprintf(err, sizeof(err), "the body is not JSON: line %d: %s", jerr.line,
				 jerr.text);
			goto refuse;
		}
	}
	if (mock_history_parse(p, body, &h, err, sizeof(err)) != 0) {
		status = 400;
		goto refuse;
	}
	have_h = 1;
	if (p == MOCK_GEMINI) {
		h.model = gmodel;
		h.stream = gstream;
	}
	json_object_set_new(e, "model", json_string(h.model));
	json_object_set_new(e, "stream", json_boolean(h.stream));
	json_object_set_new(e, "turn", json_integer((json_int_t)h.turn));
	json_object_set(e, "tools", h.tools);
	json_object_set(e, "tool_results", h.tool_results);
	if (mock_plan(p, m->script, &h, m->workdir, ++m->seq, &r, err, sizeof(err)) != 0) {
		status = 400;
		goto refuse;
	}
	r.in_tokens = len / 4 + 1;
	json_object_set_new(
	    e, "reply",
	    r.is_tool ? json_pack("{s:s, s:s, s:O}", "tool", r.name, "id", r.id, "args", r.args)
		      : json_pack("{s:s}", "text", r.text));
	sse_mode = h.stream && (p != MOCK_GEMINI || (query && strstr(query, "alt=sse") != NULL));
	if (sse_mode) {
		struct evbuffer *buf = evbuffer_new();

		if ((sse_body = mock_sse(p, &r, h.model, m->seq, &sse_len)) == NULL ||
		    buf == NULL) {
			free(sse_body);
			if (buf)
				evbuffer_free(buf);
			status = 500;
			snprintf(err, sizeof(err), "out of memory");
			goto refuse;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/event-stream");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control",
				  "no-cache");
		evbuffer_add(buf, sse_body, sse_len);
		free(sse_body);
		evhttp_send_reply_start(req, 200, "OK");
		evhttp_send_reply_chunk(req, buf);
		evhttp_send_reply_end(req);
		evbuffer_free(buf);
	} else {
		json_t *o = p == MOCK_GEMINI && h.stream ? mock_gemini_array(&r, h.model)
							 : mock_json(p, &r, h.model, m->seq);

		if (o == NULL) {
			status = 500;
			snprintf(err, sizeof(err), "out of memory");
			goto refuse;
		}
		sw_http_reply_json(req, 200, o);
	}
	m->completions++;
	json_object_set_new(e, "status", json_integer(200));
	fprintf(stderr, "llm-mock: 200 %s turn %zu: %s %s\n", mock_provider_name(p), h.turn,
		r.is_tool ? "tool" : "text", r.is_tool ? r.name : "");
	goto out;
refuse:
	fprintf(stderr, "llm-mock: %d %s %s: %s\n", status, mock_provider_name(p), path, err);
	json_object_set_new(e, "status", json_integer(status));
	json_object_set_new(e, "error", json_string(err));
	provider_error(req, p, status, err);
out:
	record(m, e, body, len);
	json_decref(body);
	free(raw);
	if (have_h)
		mock_history_clear(&h);
	mock_reply_clear(&r);
}

static void on_messages(struct evhttp_request *req, void *arg)
{
	scripted(arg, req, MOCK_ANTHROPIC);
}

static void on_responses(struct evhttp_request *req, void *arg)
{
	scripted(arg, req, MOCK_RESPONSES);
}

static void on_gemini(struct evhttp_request *req, void *arg)
{
	scripted(arg, req, MOCK_GEMINI);
}

/* Anthropic's token counter: a rough count of the body. */
static void on_count_tokens(struct evhttp_request *req, void *arg)
{
	struct mock *m = arg;
	size_t len = evbuffer_get_length(evhttp_request_get_input_buffer(req));

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		provider_error(req, MOCK_ANTHROPIC, 405, "POST only");
		return;
	}
	if (!key_ok(m, req, MOCK_ANTHROPIC)) {
		m->unauthorized++;
		provider_error(req, MOCK_ANTHROPIC, 401, "invalid API key");
		return;
	}
	send_json(req, 200, json_pack("{s:I}", "input_tokens", (json_int_t)(len / 4 + 1)));
}

static void on_root(struct evhttp_request *req, void *arg)
{
	(void)arg;
	send_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void on_requests(struct evhttp_request *req, void *arg)
{
	struct mock *m = arg;
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	json_t *out, *e;
	size_t i;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		sw_http_reply_method_not_allowed(req, "GET");
		return;
	}
	if (q != NULL && strstr(q, "bodies=0") != NULL) {
		out = json_array();
		json_array_foreach(m->log, i, e) {
			json_t *c = json_copy(e);

			json_object_del(c, "body");
			json_array_append_new(out, c);
		}
	} else {
		out = json_incref(m->log);
	}
	send_json(req, 200, json_pack("{s:o}", "requests", out));
}

static void on_completions(struct evhttp_request *req, void *arg)
{
	struct mock *m = arg;
	const char *auth, *prompt = NULL, *sys = NULL, *model = "mock-1";
	char expect[600], id[64], *content;
	json_t *body, *msgs, *msg, *reply;
	struct pending *p;
	struct timeval tv;
	size_t i;

	if (m->script != NULL) {
		scripted(m, req, MOCK_CHAT);
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		sw_http_reply_method_not_allowed(req, "POST");
		return;
	}
	m->requests++;
	if (m->key != NULL) {
		auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
		snprintf(expect, sizeof(expect), "Bearer %s", m->key);
		if (auth == NULL || strcmp(auth, expect) != 0) {
			m->unauthorized++;
			fprintf(stderr, "llm-mock: 401 (%s Authorization header)\n",
				auth ? "wrong" : "no");
			sw_http_reply_error(req, 401, "invalid_api_key",
					    "Incorrect API key provided");
			return;
		}
	}
	if ((long)m->failed < m->fail_first) {
		m->failed++;
		fprintf(stderr, "llm-mock: 500 (failure %lu of %ld)\n", m->failed, m->fail_first);
		sw_http_reply_error(req, 500, "server_error", "mock failure %lu of %ld", m->failed,
				    m->fail_first);
		return;
	}
	if ((body = sw_http_body_json(req)) == NULL)
		return;
	msgs = json_object_get(body, "messages");
	if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
		json_decref(body);
		sw_http_reply_error(req, 400, "invalid_request_error", "messages is required");
		return;
	}
	json_array_foreach(msgs, i, msg) {
		const char *role = json_string_value(json_object_get(msg, "role"));
		const char *text = json_string_value(json_object_get(msg, "content"));

		if (role == NULL || text == NULL)
			continue;
		if (strcmp(role, "user") == 0)
			prompt = text;
		else if (strcmp(role, "system") == 0 && sys == NULL)
			sys = text;
	}
	if (prompt == NULL) {
		json_decref(body);
		sw_http_reply_error(req, 400, "invalid_request_error", "no user message");
		return;
	}
	if (json_is_string(json_object_get(body, "model")))
		model = json_string_value(json_object_get(body, "model"));
	if (strstr(prompt, "JSON") != NULL || (sys != NULL && strstr(sys, "JSON") != NULL)) {
		content = json_reply(prompt);
		if (content != NULL && m->fence) {
			char *fenced;

			if (asprintf(&fenced, "Here it is:\n```json\n%s\n```\n", content) == -1)
				fenced = NULL;
			free(content);
			content = fenced;
		}
	} else
		content = summary(prompt);
	m->completions++;
	snprintf(id, sizeof(id), "chatcmpl-mock-%lu", m->completions);
	reply = json_pack(
	    "{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s?}, s:s}],"
	    " s:{s:I, s:I, s:I}}",
	    "id", id, "object", "chat.completion", "created", (json_int_t)time(NULL), "model",
	    model, "choices", "index", 0, "message", "role", "assistant", "content", content,
	    "finish_reason", "stop", "usage", "prompt_tokens", (json_int_t)count_words(prompt),
	    "completion_tokens", (json_int_t)(content ? count_words(content) : 0), "total_tokens",
	    (json_int_t)(count_words(prompt) + (content ? count_words(content) : 0)));
	free(content);
	json_decref(body);
	if (reply == NULL) {
		sw_http_reply_error(req, 500, "server_error", "out of memory");
		return;
	}
	fprintf(stderr, "llm-mock: 200 completion %lu\n", m->completions);
	if (m->delay_ms <= 0) {
		send_json(req, 200, reply);
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		json_decref(reply);
		sw_http_reply_error(req, 500, "server_error", "out of memory");
		return;
	}
	p->m = m;
	if (++m->delayed > m->max_delayed)
		m->max_delayed = m->delayed;
	p->req = req;
	p->body = reply;
	p->evcon = evhttp_request_get_connection(req);
	p->timer = evtimer_new(m->base, pending_fire, p);
	tv.tv_sec = m->delay_ms / 1000;
	tv.tv_usec = (m->delay_ms % 1000) * 1000;
	if (p->timer == NULL || p->evcon == NULL || evtimer_add(p->timer, &tv) == -1) {
		pending_free(p);
		sw_http_reply_error(req, 500, "server_error", "cannot delay");
		return;
	}
	evhttp_connection_set_closecb(p->evcon, pending_closed, p);
}

static void on_stats(struct evhttp_request *req, void *arg)
{
	struct mock *m = arg;

	send_json(req, 200,
		  json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "requests", (json_int_t)m->requests,
			    "completions", (json_int_t)m->completions, "unauthorized",
			    (json_int_t)m->unauthorized, "failed", (json_int_t)m->failed,
			    "delayed", (json_int_t)m->delayed, "max_delayed",
			    (json_int_t)m->max_delayed));
}

static void on_models(struct evhttp_request *req, void *arg)
{
	(void)arg;
	send_json(req, 200,
		  json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "object", "list", "data", "id", "mock-1",
			    "object", "model", "owned_by", "sagewai"));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sagewai-llm-mock [--port P] [--port-file F]"
		   " [--require-key KEY | --require-key-file F]"
		   " [--fail-first N]"
		   " [--delay-ms N] [--fence] [--max-connections N]"
		   " [--script FILE [--workdir DIR]] [--log FILE]\n");
}

/* Write "port\n" to path through path.tmp and a rename; 0 or -1. */
static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	if ((f = fopen(tmp, "w")) == NULL)
		return -1;
	if (fprintf(f, "%d\n", port) < 0) {
		fclose(f);
		unlink(tmp);
		return -1;
	}
	if (fclose(f) != 0 || rename(tmp, path) == -1) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int num_arg(const char *s, long *out)
{
	char *end;

	*out = strtol(s, &end, 10);
	return end != s && *end == '\0' && *out >= 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct mock m = {.workdir = "/workspace"};
	struct event *sigterm, *sigint;
	char err[512];
	const char *port_file = NULL, *script = NULL, *log = NULL;
	int rc = 1;
	long port = 0, maxconn = 0;
	struct sw_http_limits lim;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(a, "--fence") == 0) {
			m.fence = 1;
			continue;
		}
		if (v == NULL) {
			usage(stderr);
			return 2;
		}
		if (strcmp(a, "--port") == 0 && num_arg(v, &port) == 0 && port < 65536) {
		} else if (strcmp(a, "--port-file") == 0 && *v) {
			port_file = v;
		} else if (strcmp(a, "--require-key") == 0 && *v) {
			m.key = v;
		} else if (strcmp(a, "--require-key-file") == 0 && *v) {
			/* the key from a file, so that it shows in no process list */
			static char keybuf[512];
			FILE *kf = fopen(v, "r");

			if (kf == NULL || fgets(keybuf, sizeof(keybuf), kf) == NULL) {
				fprintf(stderr, "sagewai-llm-mock: cannot read key file %s\n", v);
				if (kf)
					fclose(kf);
				return 2;
			}
			fclose(kf);
			keybuf[strcspn(keybuf, "\r\n")] = '\0';
			m.key = keybuf;
		} else if (strcmp(a, "--script") == 0 && *v) {
			script = v;
		} else if (strcmp(a, "--workdir") == 0 && v[0] == '/') {
			m.workdir = v;
		} else if (strcmp(a, "--log") == 0 && *v) {
			log = v;
		} else if (strcmp(a, "--fail-first") == 0 && num_arg(v, &m.fail_first) == 0) {
		} else if (strcmp(a, "--delay-ms") == 0 && num_arg(v, &m.delay_ms) == 0) {
		} else if (strcmp(a, "--max-connections") == 0 && num_arg(v, &maxconn) == 0 &&
			   maxconn > 0 && maxconn <= 65536) {
		} else {
			fprintf(stderr, "sagewai-llm-mock: bad argument %s %s\n", a, v);
			usage(stderr);
			return 2;
		}
		i++;
	}
	signal(SIGPIPE, SIG_IGN);
	if (script != NULL && (m.script = mock_script_load(script, err, sizeof(err))) == NULL) {
		fprintf(stderr, "sagewai-llm-mock: %s\n", err);
		return 2;
	}
	if (log != NULL && (m.logf = fopen(log, "a")) == NULL) {
		fprintf(stderr, "sagewai-llm-mock: cannot open %s\n", log);
		return 2;
	}
	if ((m.log = json_array()) == NULL || (m.base = event_base_new()) == NULL)
		return 1;
	sw_http_limits_default(&lim);
	if (maxconn > 0)
		lim.max_connections = lim.max_per_address = (unsigned)maxconn;
	m.http = sw_http_new_opts(m.base, "127.0.0.1", (int)port, BODY_MAX, &lim, NULL, NULL, NULL,
				  err, sizeof(err));
	if (m.http == NULL) {
		fprintf(stderr, "sagewai-llm-mock: %s\n", err);
		return 1;
	}
	if (sw_http_route(m.http, "/v1/chat/completions", on_completions, &m) == -1 ||
	    sw_http_route(m.http, "/v1/mock/stats", on_stats, &m) == -1 ||
	    sw_http_route(m.http, "/v1/mock/requests", on_requests, &m) == -1 ||
	    sw_http_route(m.http, "/v1/messages", on_messages, &m) == -1 ||
	    sw_http_route(m.http, "/v1/messages/count_tokens", on_count_tokens, &m) == -1 ||
	    sw_http_route(m.http, "/v1/responses", on_responses, &m) == -1 ||
	    sw_http_route(m.http, "/v1beta/models/*", on_gemini, &m) == -1 ||
	    sw_http_route(m.http, "/", on_root, &m) == -1 ||
	    sw_http_route(m.http, "/v1/models", on_models, &m) == -1) {
		fprintf(stderr, "sagewai-llm-mock: cannot route\n");
		return 1;
	}
	sigterm = evsignal_new(m.base, SIGTERM, on_signal, m.base);
	sigint = evsignal_new(m.base, SIGINT, on_signal, m.base);
	if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) == -1 ||
	    evsignal_add(sigint, NULL) == -1)
		return 1;
	if (port_file != NULL && write_port_file(port_file, sw_http_port(m.http)) == -1) {
		fprintf(stderr, "sagewai-llm-mock: cannot write %s\n", port_file);
		return 1;
	}
	printf("listening on 127.0.0.1:%d\n", sw_http_port(m.http));
	fflush(stdout);
	event_base_dispatch(m.base);
	event_free(sigterm);
	event_free(sigint);
	rc = 0;
	sw_http_destroy(m.http);
	event_base_free(m.base);
	json_decref(m.log);
	mock_script_free(m.script);
	if (m.logf != NULL)
		fclose(m.logf);
	return rc;
}
