/*
 * creds.c: see creds.h.
 */
#include <stdio.h>
#include <string.h>

#include "creds.h"
#include "sw_credshape.h"

/* ---- walking a run's strings ------------------------------------------- */

struct walker {
	char path[SCHED_CREDS_PATH];
	size_t len;
	sched_creds_fn fn;
	void *arg;
};

/* Append a segment to the path (its length before, for pop); a path that
 * would overflow ends in "..." instead. */
static size_t push(struct walker *w, const char *fmt, const char *s, size_t n)
{
	size_t was = w->len;
	char seg[96];
	int k;

	k = snprintf(seg, sizeof(seg), fmt, (int)n, s);
	if (k < 0 || (size_t)k >= sizeof(seg) || w->len + (size_t)k + 4 > sizeof(w->path)) {
		if (w->len + 4 <= sizeof(w->path) &&
		    (w->len < 3 || strcmp(w->path + w->len - 3, "...") != 0)) {
			memcpy(w->path + w->len, "...", 4);
			w->len += 3;
		}
		return was;
	}
	memcpy(w->path + w->len, seg, (size_t)k + 1);
	w->len += (size_t)k;
	return was;
}

static void pop(struct walker *w, size_t was)
{
	w->len = was;
	w->path[was] = '\0';
}

static int is_key_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int plain_key(const char *k, size_t n)
{
	size_t i;

	if (n == 0 || n > 64)
		return 0;
	for (i = 0; i < n; i++)
		if (!is_key_char((unsigned char)k[i]))
			return 0;
	return 1;
}

static int walk(struct walker *w, json_t *v)
{
	const char *key;
	json_t *m;
	size_t i, was;
	int rc = 0;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return w->fn(w->path, json_string_value(v), json_string_length(v), 0, w->arg);
	case JSON_ARRAY:
		json_array_foreach(v, i, m) {
			char idx[24];

			snprintf(idx, sizeof(idx), "%zu", i);
			was = push(w, "[%.*s]", idx, strlen(idx));
			rc = walk(w, m);
			pop(w, was);
			if (rc != 0)
				return rc;
		}
		return 0;
	case JSON_OBJECT:
		i = 0;
		json_object_foreach(v, key, m) {
			size_t klen = strlen(key);
			char pos[24];

			/* jansson keys are NUL-terminated: a key holding NUL is cut
			 * there, which only shortens what is checked of it */
			if ((rc = w->fn(w->path, key, klen, 1, w->arg)) != 0)
				return rc;
			if (plain_key(key, klen)) {
				was = push(w, ".%.*s", key, klen);
			} else {
				snprintf(pos, sizeof(pos), "%zu", i);
				was = push(w, ".#%.*s", pos, strlen(pos));
			}
			rc = walk(w, m);
			pop(w, was);
			if (rc != 0)
				return rc;
			i++;
		}
		return 0;
	default:
		return 0;
	}
}

int sched_creds_walk(json_t *input, const struct sw_workflow *wf, sched_creds_fn fn, void *arg)
{
	static const char *const keys[] = {"env", "run", "prompt"};
	struct walker w;
	size_t i, k, was;
	int rc;

	memset(&w, 0, sizeof(w));
	w.fn = fn;
	w.arg = arg;
	if (input != NULL) {
		push(&w, "%.*s", "input", 5);
		if ((rc = walk(&w, input)) != 0)
			return rc;
	}
	for (i = 0; wf != NULL && i < wf->nsteps; i++) {
		const struct sw_step *st = &wf->steps[i];

		pop(&w, 0);
		push(&w, "steps.%.*s", st->name, strlen(st->name));
		was = push(&w, "%.*s", ".with", 5);
		rc = st->with ? walk(&w, st->with) : 0;
		pop(&w, was);
		if (rc != 0)
			return rc;
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			json_t *v = json_object_get(st->extra, keys[k]);

			if (v == NULL)
				continue;
			was = push(&w, ".%.*s", keys[k], strlen(keys[k]));
			rc = walk(&w, v);
			pop(&w, was);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

static int is_delim(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || strchr("\"'=:,;&?/@<>()[]{}", c) != NULL;
}

int sched_creds_tokens(const char *s, size_t len, int (*fn)(const char *tok, size_t len, void *arg),
		       void *arg)
{
	size_t i = 0, start;
	int rc;

	if (len >= SCHED_CREDS_MIN_TOKEN && (rc = fn(s, len, arg)) != 0)
		return rc;
	while (i < len) {
		/* NUL is no delimiter for strchr's sake: test it apart */
		while (i < len && s[i] != '\0' && is_delim((unsigned char)s[i]))
			i++;
		start = i;
		while (i < len && (s[i] == '\0' || !is_delim((unsigned char)s[i])))
			i++;
		if (i - start >= SCHED_CREDS_MIN_TOKEN && i - start < len &&
		    (rc = fn(s + start, i - start, arg)) != 0)
			return rc;
	}
	return 0;
}

struct finder {
	char *msg;
	size_t msglen;
};

static int find_one(const char *field, const char *s, size_t len, int is_key, void *arg)
{
	struct finder *f = arg;
	const char *kind = sw_credshape_find(s, len, NULL);

	if (kind == NULL)
		return 0;
	if (is_key)
		snprintf(f->msg, f->msglen, "a key in %s looks like %s", field, kind);
	else
		snprintf(f->msg, f->msglen, "%s looks like %s", field, kind);
	return 1;
}

int sched_creds_find(json_t *input, const struct sw_workflow *wf, char *msg, size_t msglen)
{
	struct finder f = {msg, msglen};

	return sched_creds_walk(input, wf, find_one, &f);
}
