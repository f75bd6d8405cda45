/*
 * From YAML text (libyaml's event API) or canonical JSON to a wf_node
 * tree. The event API is used rather than libyaml's document loader so
 * that anchors and aliases can be refused outright (no alias expansion,
 * no billion laughs) and nesting is bounded while the events stream in.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "wf_int.h"

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_MAP "tag:yaml.org,2002:map"
#define TAG_SEQ "tag:yaml.org,2002:seq"

/* ---- messages -------------------------------------------------------- */

/* Drop a trailing, incomplete UTF-8 sequence (left by a truncating
 * snprintf) so that messages can go straight into JSON. */
void wf_utf8_trim(char *s)
{
	size_t n = strlen(s), i = n, need;
	unsigned char c;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80 && n - i < 3)
		i--;
	if (i == 0)
		return;
	c = (unsigned char)s[i - 1];
	if (c < 0x80)
		return;
	need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

const char *wf_quote(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i, o = 0, max = outlen > 4 ? outlen - 4 : 0;

	if (max > 60)
		max = 60;
	for (i = 0; i < len && o < max; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[o] = '\0';
	if (i < len) {
		wf_utf8_trim(out);
		strcat(out, "...");
	}
	return out;
}

static void node_path(const struct wf_node *n, char *buf, size_t len)
{
	const struct wf_node *chain[WF_MAX_DEPTH * 2 + 4];
	size_t depth = 0, o;
	char q[80];

	for (; n != NULL && n->parent != NULL && depth < sizeof(chain) / sizeof(*chain);
	     n = n->parent)
		chain[depth++] = n;
	o = (size_t)snprintf(buf, len, "$");
	while (depth > 0 && o < len) {
		const struct wf_node *c = chain[--depth], *p = c->parent;

		if (p->kind == WF_SEQ) {
			o += (size_t)snprintf(buf + o, len - o, "[%zu]", c->index);
		} else {
			const struct wf_node *k = p->kids[c->index & ~(size_t)1];

			o += (size_t)snprintf(buf + o, len - o, ".%s",
					      wf_quote(k->text, k->len, q, sizeof(q)));
		}
	}
}

static int fail_v(struct wf_doc *d, int line, int col, const struct wf_node *n, const char *fmt,
		  va_list ap)
{
	char msg[512], path[256];

	if (d->err == NULL || d->errlen == 0)
		return -1;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	wf_utf8_trim(msg);
	if (d->json) {
		node_path(n, path, sizeof(path));
		wf_utf8_trim(path);
		snprintf(d->err, d->errlen, "%s: %s", path, msg);
	} else {
		snprintf(d->err, d->errlen, "%s:%d:%d: %s", d->file, line, col, msg);
	}
	wf_utf8_trim(d->err);
	return -1;
}

int wf_fail(struct wf_doc *d, const struct wf_node *n, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = fail_v(d, n != NULL && n->line > 0 ? n->line : 1,
		    n != NULL && n->col > 0 ? n->col : 1, n, fmt, ap);
	va_end(ap);
	return rc;
}

void wf_warn(struct wf_doc *d, const struct wf_node *n, const char *fmt, ...)
{
	char msg[512], where[256], text[800];
	va_list ap;

	if (d->warnings == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	wf_utf8_trim(msg);
	if (d->json) {
		node_path(n, where, sizeof(where));
		wf_utf8_trim(where);
		snprintf(text, sizeof(text), "%s: %s", where, msg);
	} else {
		snprintf(text, sizeof(text), "%s:%d:%d: %s", d->file,
			 n != NULL && n->line > 0 ? n->line : 1,
			 n != NULL && n->col > 0 ? n->col : 1, msg);
	}
	wf_utf8_trim(text);
	json_array_append_new(d->warnings, json_string(text)); /* NULL: dropped, as is OOM */
}

static int fail_at(struct wf_doc *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_at(struct wf_doc *d, int line, int col, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = fail_v(d, line, col, NULL, fmt, ap);
	va_end(ap);
	return rc;
}

const char *wf_kind_name(const struct wf_node *n)
{
	if (n->kind == WF_MAP)
		return "a mapping";
	if (n->kind == WF_SEQ)
		return "a sequence";
	switch (json_typeof(n->value)) {
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	default:
		return "a value";
	}
}

/* ---- nodes ----------------------------------------------------------- */

void wf_node_free(struct wf_node *n)
{
	size_t i;

	if (n == NULL)
		return;
	for (i = 0; i < n->nkids; i++)
		wf_node_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	json_decref(n->value);
	free(n);
}

static struct wf_node *node_new(struct wf_doc *d, enum wf_kind kind, int line, int col)
{
	struct wf_node *n;

	if (++d->nnodes > WF_MAX_NODES) {
		fail_at(d, line, col, "too many nodes (more than %d)", WF_MAX_NODES);
		return NULL;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL) {
		fail_at(d, line, col, "out of memory");
		return NULL;
	}
	n->kind = kind;
	n->line = line;
	n->col = col;
	return n;
}

static int node_add(struct wf_doc *d, struct wf_node *p, struct wf_node *c)
{
	if (p->nkids == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct wf_node **k = realloc(p->kids, cap * sizeof(*k));

		if (k == NULL)
			return wf_fail(d, c, "out of memory");
		p->kids = k;
		p->cap = cap;
	}
	c->parent = p;
	c->index = p->nkids;
	p->kids[p->nkids++] = c;
	return 0;
}

static int node_text(struct wf_doc *d, struct wf_node *n, const char *s, size_t len)
{
	if (memchr(s, '\0', len) != NULL)
		return wf_fail(d, n, "NUL character in a string");
	if ((n->text = malloc(len + 1)) == NULL)
		return wf_fail(d, n, "out of memory");
	memcpy(n->text, s, len);
	n->text[len] = '\0';
	n->len = len;
	return 0;
}

json_t *wf_node_json(const struct wf_node *n)
{
	json_t *j, *c;
	size_t i;

	switch (n->kind) {
	case WF_SCALAR:
		return json_incref(n->value);
	case WF_SEQ:
		if ((j = json_array()) == NULL)
			return NULL;
		for (i = 0; i < n->nkids; i++)
			if ((c = wf_node_json(n->kids[i])) == NULL || json_array_append_new(j, c))
				goto fail;
		return j;
	case WF_MAP:
		if ((j = json_object()) == NULL)
			return NULL;
		for (i = 0; i + 1 < n->nkids; i += 2)
			if ((c = wf_node_json(n->kids[i + 1])) == NULL ||
			    json_object_set_new(j, n->kids[i]->text, c))
				goto fail;
		return j;
	}
	return NULL;
fail:
	json_decref(j);
	return NULL;
}

/* ---- YAML 1.2 core schema -------------------------------------------- */

static int all_digits(const char *s, const char *set)
{
	if (*s == '\0')
		return 0;
	return s[strspn(s, set)] == '\0';
}

/* 1 if s matches [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float(const char *s)
{
	size_t n;

	if (*s == '-' || *s == '+')
		s++;
	if (*s == '.') {
		if ((n = strspn(s + 1, "0123456789")) == 0)
			return 0;
		s += 1 + n;
	} else {
		if ((n = strspn(s, "0123456789")) == 0)
			return 0;
		s += n;
		if (*s == '.')
			s += 1 + strspn(s + 1, "0123456789");
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if ((n = strspn(s, "0123456789")) == 0)
			return 0;
		s += n;
	}
	return *s == '\0';
}

/* The value of an untagged plain scalar: null, booleans, integers (decimal,
 * 0o octal, 0x hex) and floats become those JSON types, all else a string.
 * Infinities and NaN have no JSON form and are refused. */
static int resolve_plain(struct wf_doc *d, struct wf_node *n)
{
	const char *s = n->text;
	const char *digits = s + (*s == '-' || *s == '+');
	char *end;

	if (n->len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	    !strcmp(s, "NULL")) {
		n->value = json_null();
	} else if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
		n->value = json_true();
	} else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
		n->value = json_false();
	} else if (all_digits(digits, "0123456789") ||
		   (!strncmp(s, "0o", 2) && all_digits(s + 2, "01234567")) ||
		   (!strncmp(s, "0x", 2) && all_digits(s + 2, "0123456789abcdefABCDEF"))) {
		long long v;

		errno = 0;
		if (!strncmp(s, "0o", 2))
			v = strtoll(s + 2, &end, 8);
		else if (!strncmp(s, "0x", 2))
			v = strtoll(s + 2, &end, 16);
		else
			v = strtoll(s, &end, 10);
		if (errno == ERANGE || *end != '\0')
			return wf_fail(d, n, "integer %s is out of range",
				       wf_quote(s, n->len, (char[80]){0}, 80));
		n->value = json_integer(v);
	} else if (is_float(s)) {
		double v;

		errno = 0;
		v = strtod(s, &end);
		if (*end != '\0' || !isfinite(v))
			return wf_fail(d, n, "number %s is out of range",
				       wf_quote(s, n->len, (char[80]){0}, 80));
		n->value = json_real(v);
	} else if (!strcmp(digits, ".inf") || !strcmp(digits, ".Inf") || !strcmp(digits, ".INF") ||
		   !strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
		return wf_fail(d, n, "infinity and NaN have no JSON form (quote it for a string)");
	} else {
		n->value = json_stringn(s, n->len);
	}
	if (n->value == NULL)
		return wf_fail(d, n, "invalid string (not UTF-8)");
	return 0;
}

/* ---- YAML ------------------------------------------------------------ */

struct yload {
	struct wf_doc *d;
	yaml_parser_t p;
	const char *src;
	size_t len;
};

static int y_error(struct yload *y)
{
	yaml_parser_t *p = &y->p;
	const char *problem = p->problem ? p->problem : "invalid YAML";
	int line = 1, col = 1;
	size_t i;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return fail_at(y->d, 1, 1, "out of memory");
	case YAML_READER_ERROR:
		/* Reader errors carry a byte offset, not a mark. */
		for (i = 0; i < p->problem_offset && i < y->len; i++) {
			if (y->src[i] == '\n') {
				line++;
				col = 1;
			} else if (((unsigned char)y->src[i] & 0xC0) != 0x80) {
				col++;
			}
		}
		return fail_at(y->d, line, col, "%s", problem);
	default:
		line = (int)p->problem_mark.line + 1;
		col = (int)p->problem_mark.column + 1;
		if (p->context != NULL)
			return fail_at(y->d, line, col, "%s (%s at line %d, column %d)", problem,
				       p->context, (int)p->context_mark.line + 1,
				       (int)p->context_mark.column + 1);
		return fail_at(y->d, line, col, "%s", problem);
	}
}

static int y_next(struct yload *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->p, ev))
		return y_error(y);
	return 0;
}

static struct wf_node *y_node(struct yload *y, yaml_event_t *ev, int depth, int is_key);

/* Read the items of sequence n, which sits at nesting depth. */
static int y_seq(struct yload *y, struct wf_node *n, int depth)
{
	yaml_event_t ev;
	struct wf_node *c;

	for (;;) {
		if (y_next(y, &ev))
			return -1;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return 0;
		}
		if ((c = y_node(y, &ev, depth, 0)) == NULL)
			return -1;
		if (node_add(y->d, n, c)) {
			wf_node_free(c);
			return -1;
		}
	}
}

static int y_map(struct yload *y, struct wf_node *n, int depth)
{
	yaml_event_t ev;
	struct wf_node *c;
	json_t *seen = json_object();
	int rc = -1;

	if (seen == NULL)
		return wf_fail(y->d, n, "out of memory");
	for (;;) {
		if (y_next(y, &ev))
			goto out;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT) {
			fail_at(y->d, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
				"mapping keys must be scalars");
			yaml_event_delete(&ev);
			goto out;
		}
		if ((c = y_node(y, &ev, depth, 1)) == NULL)
			goto out;
		if (node_add(y->d, n, c)) {
			wf_node_free(c);
			goto out;
		}
		if (json_object_get(seen, c->text) != NULL) {
			char q[80];

			wf_fail(y->d, c, "duplicate key \"%s\"", wf_quote(c->text, c->len, q, 80));
			goto out;
		}
		if (json_object_set_new(seen, c->text, json_null())) {
			wf_fail(y->d, c, "invalid key");
			goto out;
		}
		if (y_next(y, &ev))
			goto out;
		if ((c = y_node(y, &ev, depth, 0)) == NULL)
			goto out;
		if (node_add(y->d, n, c)) {
			wf_node_free(c);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(seen);
	return rc;
}

/* Build the node that starts with event ev (consumed), reading the events
 * of its contents. depth is the nesting of the node's parent collection. */
static struct wf_node *y_node(struct yload *y, yaml_event_t *ev, int depth, int is_key)
{
	struct wf_doc *d = y->d;
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	struct wf_node *n = NULL;
	const char *tag;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		fail_at(d, line, col, "anchors and aliases are not supported");
		goto fail;
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.anchor != NULL) {
			fail_at(d, line, col, "anchors and aliases are not supported");
			goto fail;
		}
		tag = (const char *)ev->data.scalar.tag;
		if (tag != NULL && strcmp(tag, "!") && strcmp(tag, TAG_STR)) {
			fail_at(d, line, col, "tags other than !!str are not supported");
			goto fail;
		}
		if ((n = node_new(d, WF_SCALAR, line, col)) == NULL)
			goto fail;
		if (node_text(d, n, (const char *)ev->data.scalar.value, ev->data.scalar.length))
			goto fail;
		n->is_key = is_key;
		if (is_key)
			break;
		if (tag == NULL && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
			if (resolve_plain(d, n))
				goto fail;
		} else if ((n->value = json_stringn(n->text, n->len)) == NULL) {
			wf_fail(d, n, "invalid string (not UTF-8)");
			goto fail;
		}
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		int map = ev->type == YAML_MAPPING_START_EVENT;

		if ((map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor) !=
		    NULL) {
			fail_at(d, line, col, "anchors and aliases are not supported");
			goto fail;
		}
		tag =
		    (const char *)(map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
		if (tag != NULL && strcmp(tag, map ? TAG_MAP : TAG_SEQ)) {
			fail_at(d, line, col, "tags are not supported");
			goto fail;
		}
		if (depth + 1 > WF_MAX_DEPTH) {
			fail_at(d, line, col, "nested deeper than %d levels", WF_MAX_DEPTH);
			goto fail;
		}
		if ((n = node_new(d, map ? WF_MAP : WF_SEQ, line, col)) == NULL)
			goto fail;
		yaml_event_delete(ev);
		if (map ? y_map(y, n, depth + 1) : y_seq(y, n, depth + 1)) {
			wf_node_free(n);
			return NULL;
		}
		return n;
	}
	default:
		fail_at(d, line, col, "unexpected YAML event");
		goto fail;
	}
	yaml_event_delete(ev);
	return n;
fail:
	yaml_event_delete(ev);
	wf_node_free(n);
	return NULL;
}

struct wf_node *wf_yaml_load(struct wf_doc *d, const char *yaml, size_t len)
{
	struct yload y = {.d = d, .src = yaml, .len = len};
	struct wf_node *root = NULL;
	yaml_event_t ev;
	int line, col;

	if (len > WF_MAX_BYTES) {
		fail_at(d, 1, 1, "workflow is larger than 1 MiB (%zu bytes)", len);
		return NULL;
	}
	if (!yaml_parser_initialize(&y.p)) {
		fail_at(d, 1, 1, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&y.p, (const unsigned char *)yaml, len);
	if (y_next(&y, &ev))
		goto fail;
	yaml_event_delete(&ev); /* stream start */
	if (y_next(&y, &ev))
		goto fail;
	if (ev.type != YAML_DOCUMENT_START_EVENT) {
		line = (int)ev.start_mark.line + 1;
		col = (int)ev.start_mark.column + 1;
		yaml_event_delete(&ev);
		fail_at(d, line, col, "empty workflow (expected a mapping with name and steps)");
		goto fail;
	}
	yaml_event_delete(&ev);
	if (y_next(&y, &ev) || (root = y_node(&y, &ev, 0, 0)) == NULL)
		goto fail;
	if (y_next(&y, &ev))
		goto fail;
	yaml_event_delete(&ev); /* document end */
	if (y_next(&y, &ev))
		goto fail;
	if (ev.type != YAML_STREAM_END_EVENT) {
		line = (int)ev.start_mark.line + 1;
		col = (int)ev.start_mark.column + 1;
		yaml_event_delete(&ev);
		fail_at(d, line, col, "more than one YAML document");
		goto fail;
	}
	yaml_event_delete(&ev);
	yaml_parser_delete(&y.p);
	return root;
fail:
	yaml_parser_delete(&y.p);
	wf_node_free(root);
	return NULL;
}

/* ---- JSON ------------------------------------------------------------ */

static struct wf_node *j_new(struct wf_doc *d, json_t *j)
{
	return node_new(d,
			json_is_object(j)  ? WF_MAP
			: json_is_array(j) ? WF_SEQ
					   : WF_SCALAR,
			0, 0);
}

static int j_fill(struct wf_doc *d, struct wf_node *n, json_t *j, int depth);

/* Attach a node for j to p, then fill it (so that messages have a path). */
static int j_add(struct wf_doc *d, struct wf_node *p, json_t *j, int depth)
{
	struct wf_node *c = j_new(d, j);

	if (c == NULL)
		return -1;
	if (node_add(d, p, c)) {
		wf_node_free(c);
		return -1;
	}
	return j_fill(d, c, j, depth);
}

/* Fill node n from j; depth is the nesting of n's parent collection. */
static int j_fill(struct wf_doc *d, struct wf_node *n, json_t *j, int depth)
{
	struct wf_node *k;
	const char *key;
	json_t *v;
	size_t i;
	char buf[64];

	if (n->kind != WF_SCALAR && depth + 1 > WF_MAX_DEPTH)
		return wf_fail(d, n, "nested deeper than %d levels", WF_MAX_DEPTH);
	switch (json_typeof(j)) {
	case JSON_ARRAY:
		json_array_foreach(j, i, v)
			if (j_add(d, n, v, depth + 1))
				return -1;
		return 0;
	case JSON_OBJECT:
		json_object_foreach(j, key, v) {
			if ((k = node_new(d, WF_SCALAR, 0, 0)) == NULL)
				return -1;
			k->is_key = 1;
			if (node_add(d, n, k)) {
				wf_node_free(k);
				return -1;
			}
			if (node_text(d, k, key, strlen(key)) || j_add(d, n, v, depth + 1))
				return -1;
		}
		return 0;
	case JSON_STRING:
		if (node_text(d, n, json_string_value(j), json_string_length(j)))
			return -1;
		break;
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		goto text;
	case JSON_REAL:
		snprintf(buf, sizeof(buf), "%.17g", json_real_value(j));
		goto text;
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL:
		snprintf(buf, sizeof(buf), "%s",
			 json_is_null(j)   ? "null"
			 : json_is_true(j) ? "true"
					   : "false");
	text:
		if (node_text(d, n, buf, strlen(buf)))
			return -1;
		break;
	default:
		return wf_fail(d, n, "unexpected JSON value");
	}
	n->value = json_incref(j);
	return 0;
}

struct wf_node *wf_json_load(struct wf_doc *d, json_t *j)
{
	struct wf_node *root;

	if (j == NULL) {
		wf_fail(d, NULL, "no workflow");
		return NULL;
	}
	if ((root = j_new(d, j)) == NULL)
		return NULL;
	if (j_fill(d, root, j, 0)) {
		wf_node_free(root);
		return NULL;
	}
	return root;
}
