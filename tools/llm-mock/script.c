/*
 * script.c: the mock's script (mock.h) and its translation into each
 * provider's tool calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mock.h"

#define STR_MAX (1u << 20) /* one string of a script */

const char *mock_provider_name(enum mock_provider p)
{
	switch (p) {
	case MOCK_ANTHROPIC:
		return "anthropic";
	case MOCK_RESPONSES:
		return "responses";
	case MOCK_CHAT:
		return "chat";
	case MOCK_GEMINI:
		return "gemini";
	}
	return "?";
}

void mock_script_free(struct mock_script *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->turns[i].text);
		free(s->turns[i].path);
		free(s->turns[i].content);
		free(s->turns[i].command);
	}
	free(s->turns);
	free(s);
}

/* Clean: no empty, "." or ".." segment, no "//", no trailing '/'. */
static int path_ok(const char *p)
{
	const char *seg = p[0] == '/' ? p + 1 : p;

	if (*seg == '\0' || strlen(p) > 1024)
		return 0;
	for (;;) {
		size_t n = strcspn(seg, "/");

		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (seg[n] == '\0')
			return 1;
		seg += n + 1;
	}
}

/* A JSON string member of o (strict: no NUL inside, at most STR_MAX). */
static int get_str(json_t *o, const char *key, char **out, size_t i, char *errstr, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
	    json_string_length(v) > STR_MAX) {
		snprintf(errstr, errlen,
			 "script[%zu].%s: must be a string (no NUL, at most 1 MiB)", i, key);
		return -1;
	}
	if ((*out = strdup(json_string_value(v))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int parse_turn(json_t *o, struct mock_turn *t, size_t i, char *errstr, size_t errlen)
{
	const char *tool;
	size_t keys = json_object_size(o);

	if (!json_is_object(o)) {
		snprintf(errstr, errlen, "script[%zu]: must be an object", i);
		return -1;
	}
	if (json_object_get(o, "text") != NULL) {
		t->kind = MOCK_TURN_TEXT;
		if (keys != 1) {
			snprintf(errstr, errlen, "script[%zu]: a text turn has only \"text\"", i);
			return -1;
		}
		return get_str(o, "text", &t->text, i, errstr, errlen);
	}
	tool = json_string_value(json_object_get(o, "tool"));
	if (tool != NULL && strcmp(tool, "write") == 0) {
		t->kind = MOCK_TURN_WRITE;
		if (keys != 3 || get_str(o, "path", &t->path, i, errstr, errlen) != 0 ||
		    get_str(o, "content", &t->content, i, errstr, errlen) != 0) {
			if (keys != 3)
				snprintf(
				    errstr, errlen,
				    "script[%zu]: a write turn has exactly tool, path, content",
				    i);
			return -1;
		}
		if (!path_ok(t->path)) {
			snprintf(errstr, errlen, "script[%zu].path: not a clean path", i);
			return -1;
		}
		return 0;
	}
	if (tool != NULL && strcmp(tool, "bash") == 0) {
		t->kind = MOCK_TURN_BASH;
		if (keys != 2) {
			snprintf(errstr, errlen,
				 "script[%zu]: a bash turn has exactly tool, command", i);
			return -1;
		}
		if (get_str(o, "command", &t->command, i, errstr, errlen) != 0)
			return -1;
		if (t->command[0] == '\0') {
			snprintf(errstr, errlen, "script[%zu].command: empty", i);
			return -1;
		}
		return 0;
	}
	snprintf(errstr, errlen,
		 "script[%zu]: want {\"text\"}, {\"tool\": \"write\", ...} or {\"tool\": "
		 "\"bash\", ...}",
		 i);
	return -1;
}

struct mock_script *mock_script_parse(const char *json, size_t len, char *errstr, size_t errlen)
{
	struct mock_script *s = calloc(1, sizeof(*s));
	json_error_t jerr;
	json_t *root;
	size_t n;

	if (s == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	if ((root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(errstr, errlen, "script: line %d: %s", jerr.line, jerr.text);
		goto fail;
	}
	n = json_array_size(root);
	if (!json_is_array(root) || n == 0 || n > MOCK_SCRIPT_MAX_TURNS) {
		snprintf(errstr, errlen, "script: an array of 1 to %d turns",
			 MOCK_SCRIPT_MAX_TURNS);
		goto fail;
	}
	if ((s->turns = calloc(n, sizeof(*s->turns))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		s->n++;
		if (parse_turn(json_array_get(root, i), &s->turns[i], i, errstr, errlen) != 0)
			goto fail;
	}
	json_decref(root);
	return s;
fail:
	json_decref(root);
	mock_script_free(s);
	return NULL;
}

struct mock_script *mock_script_load(const char *path, char *errstr, size_t errlen)
{
	struct mock_script *s = NULL;
	char *buf = NULL;
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL) {
		snprintf(errstr, errlen, "script %s: cannot open", path);
		return NULL;
	}
	if ((buf = malloc(MOCK_SCRIPT_FILE_MAX + 1)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	n = fread(buf, 1, MOCK_SCRIPT_FILE_MAX + 1, f);
	if (ferror(f) || n > MOCK_SCRIPT_FILE_MAX) {
		snprintf(errstr, errlen, "script %s: unreadable or over 4 MiB", path);
		goto out;
	}
	s = mock_script_parse(buf, n, errstr, errlen);
out:
	free(buf);
	fclose(f);
	return s;
}

void mock_reply_clear(struct mock_reply *r)
{
	free(r->text);
	free(r->name);
	json_decref(r->args);
	memset(r, 0, sizeof(*r));
}

static int offers(const struct mock_history *h, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(h->tools, i, v)
		if (strcmp(json_string_value(v), name) == 0)
			return 1;
	return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *mock_shell_write(const char *path, const char *content)
{
	size_t n = strlen(content), plen = strlen(path), o = 0, i;
	char *out = malloc(64 + (n + 2) / 3 * 4 + plen * 4);

	if (out == NULL)
		return NULL;
	o += (size_t)sprintf(out, "printf '%%s' '");
	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned char)content[i] << 16 | (unsigned char)content[i + 1] << 8 |
			     (unsigned char)content[i + 2];

		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = b64[v >> 6 & 63];
		out[o++] = b64[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned char)content[i] << 16;

		if (i + 1 < n)
			v |= (unsigned char)content[i + 1] << 8;
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	o += (size_t)sprintf(out + o, "' | base64 -d > '");
	for (i = 0; i < plen; i++) { /* ' inside single quotes: '\'' */
		if (path[i] == '\'') {
			memcpy(out + o, "'\\''", 4);
			o += 4;
		} else {
			out[o++] = path[i];
		}
	}
	strcpy(out + o, "'");
	return out;
}

static json_t *schema_fill(json_t *schema, int depth)
{
	const char *type = json_string_value(json_object_get(schema, "type"));
	json_t *en = json_object_get(schema, "enum"), *req, *props, *o, *v;
	size_t i;

	if (depth > 16 || !json_is_object(schema))
		return json_null();
	if (json_array_size(en) > 0)
		return json_incref(json_array_get(en, 0));
	if (type == NULL)
		return json_string("mock");
	if (strcasecmp(type, "object") == 0) {
		if ((o = json_object()) == NULL)
			return NULL;
		req = json_object_get(schema, "required");
		props = json_object_get(schema, "properties");
		json_array_foreach(req, i, v) {
			const char *k = json_string_value(v);

			if (k != NULL)
				json_object_set_new(
				    o, k, schema_fill(json_object_get(props, k), depth + 1));
		}
		return o;
	}
	if (strcasecmp(type, "array") == 0)
		return json_array();
	if (strcasecmp(type, "integer") == 0 || strcasecmp(type, "number") == 0)
		return json_integer(1);
	if (strcasecmp(type, "boolean") == 0)
		return json_false();
	return json_string("mock");
}

json_t *mock_schema_fill(json_t *schema)
{
	return schema_fill(schema, 0);
}

/* The absolute path of a script path: as is, or joined to workdir. */
static char *abs_path(const char *workdir, const char *path)
{
	char *out;

	if (path[0] == '/')
		return strdup(path);
	if (asprintf(&out, "%s/%s", strcmp(workdir, "/") == 0 ? "" : workdir, path) == -1)
		return NULL;
	return out;
}

/* The shell tool of an OpenAI-style request: exec_command {cmd}, or the
 * older shell {command: [bash, -lc, cmd]}. */
static int openai_shell(const struct mock_history *h, const char *cmd, struct mock_reply *r,
			char *errstr, size_t errlen)
{
	if (offers(h, "exec_command")) {
		r->name = strdup("exec_command");
		r->args = json_pack("{s:s}", "cmd", cmd);
	} else if (offers(h, "shell")) {
		r->name = strdup("shell");
		r->args = json_pack("{s:[s,s,s]}", "command", "bash", "-lc", cmd);
	} else {
		snprintf(errstr, errlen,
			 "the script's turn %zu runs a command, but the request offers neither "
			 "exec_command nor shell",
			 h->turn);
		return -1;
	}
	return 0;
}

int mock_plan(enum mock_provider p, const struct mock_script *s, const struct mock_history *h,
	      const char *workdir, unsigned long seq, struct mock_reply *r, char *errstr,
	      size_t errlen)
{
	const struct mock_turn *t;
	const char *want = NULL;
	char *path = NULL, *cmd = NULL;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s_mock_%lu", p == MOCK_ANTHROPIC ? "toolu" : "call", seq);
	if (h->json_schema != NULL) {
		json_t *v = mock_schema_fill(h->json_schema);

		r->text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		json_decref(v);
		goto done;
	}
	if (json_array_size(h->tools) == 0) {
		r->text = strdup("ok");
		goto done;
	}
	if (s == NULL || h->turn >= s->n) {
		r->text = strdup(s == NULL ? "no script" : "(the script is over)");
		goto done;
	}
	t = &s->turns[h->turn];
	if (t->kind == MOCK_TURN_TEXT) {
		r->text = strdup(t->text);
		goto done;
	}
	r->is_tool = 1;
	if (t->kind == MOCK_TURN_WRITE && (path = abs_path(workdir, t->path)) == NULL)
		goto nomem;
	switch (p) {
	case MOCK_ANTHROPIC:
		want = t->kind == MOCK_TURN_WRITE ? "Write" : "Bash";
		r->args = t->kind == MOCK_TURN_WRITE
			      ? json_pack("{s:s, s:s}", "file_path", path, "content", t->content)
			      : json_pack("{s:s, s:s}", "command", t->command, "description",
					  "a scripted command");
		break;
	case MOCK_GEMINI:
		want = t->kind == MOCK_TURN_WRITE ? "write_file" : "run_shell_command";
		r->args = t->kind == MOCK_TURN_WRITE
			      ? json_pack("{s:s, s:s}", "file_path", path, "content", t->content)
			      : json_pack("{s:s, s:s}", "command", t->command, "description",
					  "a scripted command");
		break;
	case MOCK_RESPONSES:
	case MOCK_CHAT:
		if (t->kind == MOCK_TURN_WRITE &&
		    (cmd = mock_shell_write(path, t->content)) == NULL)
			goto nomem;
		if (openai_shell(h, cmd ? cmd : t->command, r, errstr, errlen) != 0)
			goto out;
		break;
	}
	if (want != NULL) {
		if (!offers(h, want)) {
			snprintf(
			    errstr, errlen,
			    "the script's turn %zu calls %s, which the request does not offer",
			    h->turn, want);
			goto out;
		}
		r->name = strdup(want);
	}
	if (r->name == NULL || r->args == NULL)
		goto nomem;
done:
	if (!r->is_tool && r->text == NULL)
		goto nomem;
	rc = 0;
	goto out;
nomem:
	snprintf(errstr, errlen, "out of memory");
out:
	free(path);
	free(cmd);
	if (rc != 0)
		mock_reply_clear(r);
	return rc;
}
