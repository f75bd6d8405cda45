/*
 * creds.c: see creds.h.
 */
#include <stdio.h>
#include <string.h>

#include "creds.h"

static int is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_upper_digit(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || is_digit(c);
}

/* s[i] starts a word: nothing before it, or no letter or digit. */
static int word_start(const char *s, size_t i)
{
	return i == 0 || !is_alnum((unsigned char)s[i - 1]);
}

static int has_prefix(const char *s, size_t len, size_t i, const char *p)
{
	size_t n = strlen(p);

	return len - i >= n && memcmp(s + i, p, n) == 0;
}

/* Bytes from i on that satisfy ok. */
static size_t span(const char *s, size_t len, size_t i, int (*ok)(unsigned char))
{
	size_t j = i;

	while (j < len && ok((unsigned char)s[j]))
		j++;
	return j - i;
}

static int is_alnum_us(unsigned char c)
{
	return is_alnum(c) || c == '_';
}

static int is_key_char(unsigned char c)
{
	return is_alnum(c) || c == '_' || c == '-';
}

static int aws_at(const char *s, size_t len, size_t i)
{
	if (!has_prefix(s, len, i, "AKIA") && !has_prefix(s, len, i, "ASIA"))
		return 0;
	if (span(s, len, i + 4, is_upper_digit) < 16)
		return 0;
	return i + 20 == len || !is_alnum((unsigned char)s[i + 20]);
}

static int github_at(const char *s, size_t len, size_t i)
{
	static const char *const pfx[] = {"ghp_", "gho_", "ghu_", "ghs_", "ghr_"};
	size_t k;

	for (k = 0; k < sizeof(pfx) / sizeof(pfx[0]); k++)
		if (has_prefix(s, len, i, pfx[k]) && span(s, len, i + 4, is_alnum) >= 36)
			return 1;
	return has_prefix(s, len, i, "github_pat_") && span(s, len, i + 11, is_alnum_us) >= 22;
}

/* sk- and a body of key characters holding a run of >= 16 letters and
 * digits with at least one of each. */
static int sk_at(const char *s, size_t len, size_t i)
{
	size_t n, j, run = 0;
	int digit = 0, alpha = 0;

	if (!has_prefix(s, len, i, "sk-") || (n = span(s, len, i + 3, is_key_char)) < 20)
		return 0;
	for (j = i + 3; j <= i + 3 + n; j++) {
		unsigned char c = j < i + 3 + n ? (unsigned char)s[j] : '-';

		if (is_alnum(c)) {
			run++;
			digit |= is_digit(c);
			alpha |= !is_digit(c);
			continue;
		}
		if (run >= 16 && digit && alpha)
			return 1;
		run = 0;
		digit = alpha = 0;
	}
	return 0;
}

static int pem_char(unsigned char c)
{
	return is_upper_digit(c) || c == ' ';
}

static int pem_at(const char *s, size_t len, size_t i)
{
	static const char tail[] = "PRIVATE KEY";
	size_t n, t = sizeof(tail) - 1;

	if (!has_prefix(s, len, i, "-----BEGIN "))
		return 0;
	i += 11;
	n = span(s, len, i, pem_char);
	if (n > 64)
		return 0;
	return n >= t && memcmp(s + i + n - t, tail, t) == 0 &&
	       has_prefix(s, len, i + n, "-----");
}

const char *sched_creds_shape(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '-' && pem_at(s, len, i))
			return "a PEM private key";
		if (!word_start(s, i))
			continue;
		switch (s[i]) {
		case 'A':
			if (aws_at(s, len, i))
				return "an AWS access key id";
			break;
		case 'g':
			if (github_at(s, len, i))
				return "a GitHub token";
			break;
		case 's':
			if (sk_at(s, len, i))
				return "an API key (sk-...)";
			break;
		default:
			break;
		}
	}
	return NULL;
}

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
	const char *kind = sched_creds_shape(s, len);

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
