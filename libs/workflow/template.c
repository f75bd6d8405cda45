/*
 * Step-input templates: ${{ input.PATH }} and ${{ steps.NAME.output.PATH }}.
 *
 * One parser serves both the parse-time check (syntax, root, which steps
 * are named) and rendering. Rendering copies: the result shares nothing
 * with ctx, and its size is bounded (SW_TEMPLATE_BUDGET) so that a small
 * workflow cannot make a large value out of many references to one big
 * step output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"
#include "wf_int.h"

#define TPL_MAX_SEGS 64
#define SW_TEMPLATE_BUDGET ((size_t)64 << 20)

struct seg {
	const char *key; /* NULL for an index */
	size_t klen;
	size_t idx;
	size_t end; /* offset just past this segment in the expression */
};

static int key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static const char *quote_expr(const char *e, size_t len, char *out, size_t outlen)
{
	char q[80];

	snprintf(out, outlen, "${{ %s }}", wf_quote(e, len, q, sizeof(q)));
	return out;
}

/* Split the trimmed expression e into segments and check its root. */
static int tpl_parse(const char *e, size_t len, struct seg *segs, size_t *nsegs, char *err,
		     size_t errlen)
{
	size_t i = 0, n = 0, start;
	char q[100], q2[80];

	if (len == 0) {
		snprintf(err, errlen, "${{ }}: empty expression");
		return -1;
	}
	while (i < len) {
		if (n == TPL_MAX_SEGS) {
			snprintf(err, errlen, "%s: path longer than %d parts",
				 quote_expr(e, len, q, sizeof(q)), TPL_MAX_SEGS);
			return -1;
		}
		if (n == 0 || e[i] == '.') {
			start = i += n > 0;
			while (i < len && key_char(e[i]))
				i++;
			if (i == start)
				goto bad;
			segs[n].key = e + start;
			segs[n].klen = i - start;
		} else if (e[i] == '[') {
			size_t v = 0;

			start = ++i;
			while (i < len && e[i] >= '0' && e[i] <= '9' && i - start < 9)
				v = v * 10 + (size_t)(e[i++] - '0');
			if (i == start || i >= len || e[i] != ']')
				goto bad;
			i++;
			segs[n].key = NULL;
			segs[n].idx = v;
		} else {
			goto bad;
		}
		segs[n++].end = i;
	}
	*nsegs = n;
	if (segs[0].klen == 5 && !memcmp(segs[0].key, "input", 5))
		return 0;
	if (segs[0].klen == 5 && !memcmp(segs[0].key, "steps", 5)) {
		if (n < 3 || segs[1].key == NULL || segs[2].key == NULL || segs[2].klen != 6 ||
		    memcmp(segs[2].key, "output", 6)) {
			snprintf(err, errlen, "%s: expected steps.NAME.output",
				 quote_expr(e, len, q, sizeof(q)));
			return -1;
		}
		return 0;
	}
	snprintf(err, errlen, "%s: unknown root \"%s\" (expected input or steps)",
		 quote_expr(e, len, q, sizeof(q)), wf_quote(segs[0].key, segs[0].klen, q2, 80));
	return -1;
bad:
	snprintf(err, errlen, "%s: bad path at \"%s\" (expected .key or [index])",
		 quote_expr(e, len, q, sizeof(q)), wf_quote(e + i, len - i, q2, sizeof(q2)));
	return -1;
}

/* Find the next ${{ ... }} in s[pos..len): *open at "${{", *e and *elen the
 * trimmed expression, *close just past "}}". 0 found, 1 none, -1 error. */
static int tpl_next(const char *s, size_t len, size_t pos, size_t *open, const char **e,
		    size_t *elen, size_t *close, char *err, size_t errlen)
{
	const char *o, *c, *b, *x;
	char q[80];

	if (pos >= len || (o = memmem(s + pos, len - pos, "${{", 3)) == NULL)
		return 1;
	if ((c = memmem(o + 3, len - (size_t)(o + 3 - s), "}}", 2)) == NULL) {
		snprintf(err, errlen, "unterminated \"${{\" in \"%s\"",
			 wf_quote(o, len - (size_t)(o - s), q, sizeof(q)));
		return -1;
	}
	b = o + 3;
	x = c;
	while (b < x && (*b == ' ' || *b == '\t'))
		b++;
	while (x > b && (x[-1] == ' ' || x[-1] == '\t'))
		x--;
	*open = (size_t)(o - s);
	*e = b;
	*elen = (size_t)(x - b);
	*close = (size_t)(c + 2 - s);
	return 0;
}

int wf_template_scan(const char *s, size_t len, wf_ref_fn fn, void *arg, char *err, size_t errlen)
{
	struct seg segs[TPL_MAX_SEGS];
	size_t pos = 0, open, elen, close, n;
	const char *e;
	int rc;

	while ((rc = tpl_next(s, len, pos, &open, &e, &elen, &close, err, errlen)) == 0) {
		if (tpl_parse(e, elen, segs, &n, err, errlen))
			return -1;
		if (segs[0].klen == 5 && !memcmp(segs[0].key, "steps", 5) && fn != NULL &&
		    fn(segs[1].key, segs[1].klen, e, elen, arg, err, errlen))
			return -1;
		pos = close;
	}
	return rc < 0 ? -1 : 0;
}

/* ---- rendering ------------------------------------------------------- */

struct render {
	json_t *ctx;
	size_t budget; /* bytes the result may still take */
	char path[256];
	char *err;
	size_t errlen;
};

static int rfail(struct render *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rfail(struct render *r, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	wf_utf8_trim(msg);
	snprintf(r->err, r->errlen, "%s: %s", r->path, msg);
	wf_utf8_trim(r->err);
	return -1;
}

static int charge(struct render *r, size_t n)
{
	if (n > r->budget)
		return rfail(r, "rendered inputs would exceed %zu MiB", SW_TEMPLATE_BUDGET >> 20);
	r->budget -= n;
	return 0;
}

/* A copy of v charged to the budget. */
static json_t *copy(struct render *r, json_t *v)
{
	json_t *c, *x;
	const char *key;
	size_t i, klen;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (charge(r, 16) || (c = json_object()) == NULL)
			return NULL;
		json_object_foreach(v, key, x) {
			klen = json_object_iter_key_len(json_object_key_to_iter(key));
			if (charge(r, klen + 16))
				goto fail;
			if (json_object_setn_new_nocheck(c, key, klen, copy(r, x)))
				goto fail;
		}
		return c;
	case JSON_ARRAY:
		if (charge(r, 16) || (c = json_array()) == NULL)
			return NULL;
		json_array_foreach(v, i, x)
			if (json_array_append_new(c, copy(r, x)))
				goto fail;
		return c;
	case JSON_STRING:
		if (charge(r, 16 + json_string_length(v)))
			return NULL;
		return json_stringn_nocheck(json_string_value(v), json_string_length(v));
	default:
		if (charge(r, 16))
			return NULL;
		return json_copy(v);
	}
fail:
	json_decref(c);
	return NULL;
}

/* Look up the expression e in ctx (no copy). */
static json_t *eval(struct render *r, const char *e, size_t len)
{
	struct seg segs[TPL_MAX_SEGS];
	char msg[300], q[100];
	json_t *cur = r->ctx, *next;
	size_t n, i, prev = 0;

	if (tpl_parse(e, len, segs, &n, msg, sizeof(msg))) {
		rfail(r, "%s", msg);
		return NULL;
	}
	quote_expr(e, len, q, sizeof(q));
	for (i = 0; i < n; prev = segs[i++].end) {
		if (segs[i].key != NULL) {
			if (!json_is_object(cur)) {
				rfail(r, "%s: %.*s is not an object", q, (int)prev, e);
				return NULL;
			}
			next = json_object_getn(cur, segs[i].key, segs[i].klen);
			if (next == NULL) {
				rfail(r, "%s: %.*s: no such key", q, (int)segs[i].end, e);
				return NULL;
			}
		} else {
			if (!json_is_array(cur)) {
				rfail(r, "%s: %.*s is not an array", q, (int)prev, e);
				return NULL;
			}
			next = json_array_get(cur, segs[i].idx);
			if (next == NULL) {
				rfail(r, "%s: %.*s: index out of range (%zu items)", q,
				      (int)segs[i].end, e, json_array_size(cur));
				return NULL;
			}
		}
		cur = next;
	}
	return cur;
}

/* Append to b what the render's budget allows. */
static int buf_add(struct render *r, struct sw_buf *b, const char *s, size_t n)
{
	if (charge(r, n))
		return -1;
	if (sw_buf_add(b, s, n) == -1)
		return rfail(r, "out of memory");
	return 0;
}

static json_t *render_string(struct render *r, json_t *v)
{
	const char *s = json_string_value(v), *e;
	size_t len = json_string_length(v), pos = 0, open, elen, close;
	char msg[300];
	struct sw_buf b = {0};
	json_t *x, *out;
	int rc;

	rc = tpl_next(s, len, 0, &open, &e, &elen, &close, msg, sizeof(msg));
	if (rc == 1)
		return copy(r, v);
	if (rc == 0 && open == 0 && close == len) {
		/* Exactly one expression: its JSON value, whatever the type. */
		if ((x = eval(r, e, elen)) == NULL)
			return NULL;
		return copy(r, x);
	}
	while (rc == 0) {
		if (buf_add(r, &b, s + pos, open - pos) || (x = eval(r, e, elen)) == NULL)
			goto fail;
		if (json_is_string(x)) {
			if (buf_add(r, &b, json_string_value(x), json_string_length(x)))
				goto fail;
		} else {
			char *t = json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY);

			if (t == NULL) {
				rfail(r, "out of memory");
				goto fail;
			}
			rc = buf_add(r, &b, t, strlen(t));
			free(t);
			if (rc)
				goto fail;
		}
		pos = close;
		rc = tpl_next(s, len, pos, &open, &e, &elen, &close, msg, sizeof(msg));
	}
	if (rc < 0) {
		rfail(r, "%s", msg);
		goto fail;
	}
	if (buf_add(r, &b, s + pos, len - pos))
		goto fail;
	/* Interpolated values are valid UTF-8 (jansson strings and dumps). */
	out = json_stringn_nocheck(b.p ? b.p : "", b.len);
	sw_buf_free(&b);
	if (out == NULL)
		rfail(r, "out of memory");
	return out;
fail:
	sw_buf_free(&b);
	return NULL;
}

static json_t *render_value(struct render *r, json_t *v)
{
	size_t plen = strlen(r->path), i, klen;
	const char *key;
	json_t *c, *x, *y;
	char q[80];

	switch (json_typeof(v)) {
	case JSON_STRING:
		return render_string(r, v);
	case JSON_OBJECT:
		if (charge(r, 16) || (c = json_object()) == NULL)
			return NULL;
		json_object_foreach(v, key, x) {
			klen = json_object_iter_key_len(json_object_key_to_iter(key));
			snprintf(r->path + plen, sizeof(r->path) - plen, ".%s",
				 wf_quote(key, klen, q, sizeof(q)));
			if (charge(r, klen + 16) || (y = render_value(r, x)) == NULL ||
			    json_object_setn_new_nocheck(c, key, klen, y))
				goto fail;
		}
		r->path[plen] = '\0';
		return c;
	case JSON_ARRAY:
		if (charge(r, 16) || (c = json_array()) == NULL)
			return NULL;
		json_array_foreach(v, i, x) {
			snprintf(r->path + plen, sizeof(r->path) - plen, "[%zu]", i);
			if ((y = render_value(r, x)) == NULL || json_array_append_new(c, y))
				goto fail;
		}
		r->path[plen] = '\0';
		return c;
	default:
		return copy(r, v);
	}
fail:
	json_decref(c);
	return NULL;
}

json_t *sw_template_render(json_t *with, json_t *ctx, char *errstr, size_t errlen)
{
	char dummy[1];
	struct render r = {
	    .ctx = ctx,
	    .budget = SW_TEMPLATE_BUDGET,
	    .err = errstr != NULL && errlen > 0 ? errstr : dummy,
	    .errlen = errstr != NULL && errlen > 0 ? errlen : sizeof(dummy),
	};

	json_t *empty = NULL, *out;

	strcpy(r.path, "with");
	r.err[0] = '\0';
	if (with == NULL) {
		rfail(&r, "no inputs");
		return NULL;
	}
	if (ctx == NULL && (r.ctx = empty = json_object()) == NULL) {
		rfail(&r, "out of memory");
		return NULL;
	}
	out = render_value(&r, with);
	if (out == NULL && r.err[0] == '\0')
		rfail(&r, "out of memory");
	json_decref(empty);
	return out;
}
