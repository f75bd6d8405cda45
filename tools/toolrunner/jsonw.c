/*
 * jsonw.c: the JSON the runner sends (READY, EXIT, ERROR, CRED_REQUEST),
 * written without a JSON library: one flat object, or one level of nested
 * object, of integers, booleans and strings under fixed keys. Strings are
 * escaped as RFC 8259 requires; a byte that starts no valid UTF-8 sequence
 * is written as U+FFFD, so that the host's jansson, which refuses invalid
 * UTF-8, always takes what is sent. Out of memory ends the runner, as
 * every allocation failure here does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runner.h"
#include "sw_core.h"

static void put(struct jw *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		char *b;

		while (cap < w->len + n)
			cap *= 2;
		if ((b = realloc(w->buf, cap)) == NULL)
			_exit(3);
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void key(struct jw *w, const char *k)
{
	if (w->first[w->depth])
		w->first[w->depth] = 0;
	else
		put(w, ",", 1);
	put(w, "\"", 1);
	put(w, k, strlen(k)); /* keys are the runner's own, plain ASCII */
	put(w, "\":", 2);
}

void jw_open(struct jw *w)
{
	memset(w, 0, sizeof(*w));
	w->first[0] = 1;
	put(w, "{", 1);
}

void jw_obj(struct jw *w, const char *k)
{
	key(w, k);
	put(w, "{", 1);
	w->first[++w->depth] = 1;
}

void jw_close(struct jw *w)
{
	put(w, "}", 1);
	if (w->depth > 0)
		w->depth--;
}

void jw_int(struct jw *w, const char *k, long long v)
{
	char num[24];

	key(w, k);
	put(w, num, (size_t)snprintf(num, sizeof(num), "%lld", v));
}

void jw_bool(struct jw *w, const char *k, bool v)
{
	key(w, k);
	put(w, v ? "true" : "false", v ? 4 : 5);
}

void jw_str(struct jw *w, const char *k, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, q;

	key(w, k);
	put(w, "\"", 1);
	while (i < n) {
		unsigned char c = u[i];

		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};

			put(w, e, 2);
			i++;
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

			put(w, e, 6);
			i++;
		} else if (c < 0x80) {
			put(w, &c, 1);
			i++;
		} else if ((q = sw_utf8_seq(u + i, n - i)) == 0) {
			put(w, "\xef\xbf\xbd", 3);
			i++;
		} else {
			put(w, u + i, q);
			i += q;
		}
	}
	put(w, "\"", 1);
}

void runner_send_jw(struct runner *r, enum sw_frame_type type, struct jw *w)
{
	jw_close(w);
	runner_send(r, type, w->buf, w->len);
	free(w->buf);
	memset(w, 0, sizeof(*w));
}
