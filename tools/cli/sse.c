/*
 * The text/event-stream parser: see sse.h. Bytes are gathered into the
 * current line; a complete line is then interpreted, so a chunk boundary
 * anywhere (inside a field name, between CR and LF) changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"
#include "sw_core.h"

#define SSE_DEFAULT_MAX (4u << 20)

struct cli_sse {
	size_t max;          /* cap of a line and of one event's data */
	cli_sse_cb cb;
	void *opaque;
	struct sw_buf line;  /* the line being read; capped at max */
	struct sw_buf data;  /* data lines so far, each followed by '\n' */
	struct sw_buf event; /* the event type so far */
	int after_cr;        /* the last byte was a CR: a following LF is part of it */
	int first_line;      /* no line ended yet (a BOM may open it) */
	int stopped;         /* non-zero: the callback's value, or -1 on failure */
};

struct cli_sse *cli_sse_new(size_t max_event, cli_sse_cb cb, void *opaque)
{
	struct cli_sse *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->max = max_event ? max_event : SSE_DEFAULT_MAX;
	s->cb = cb;
	s->opaque = opaque;
	s->first_line = 1;
	sw_buf_init(&s->line, s->max);
	sw_buf_init(&s->data, s->max);
	sw_buf_init(&s->event, s->max);
	return s;
}

void cli_sse_destroy(struct cli_sse *s)
{
	if (s == NULL)
		return;
	sw_buf_free(&s->line);
	sw_buf_free(&s->data);
	sw_buf_free(&s->event);
	free(s);
}

int cli_sse_pending(const struct cli_sse *s)
{
	return s->line.len > 0 || s->data.len > 0;
}

static int dispatch(struct cli_sse *s)
{
	int rc;

	if (s->data.len == 0) {
		s->event.len = 0;
		return 0;
	}
	s->data.p[--s->data.len] = '\0'; /* the '\n' after the last data line */
	rc = s->cb(s->event.len ? s->event.p : "message", s->data.p, s->data.len, s->opaque);
	s->data.len = 0;
	s->event.len = 0;
	return rc;
}

/* Interpret one complete line (without its line end). */
static int process_line(struct cli_sse *s, char *errstr, size_t errlen)
{
	const char *line = s->line.p ? s->line.p : "";
	size_t n = s->line.len, flen;
	const char *colon, *val;
	size_t vlen;

	if (s->first_line) {
		s->first_line = 0;
		if (n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
			line += 3;
			n -= 3;
		}
	}
	s->line.len = 0;
	if (n == 0)
		return dispatch(s);
	if (line[0] == ':')
		return 0;
	colon = memchr(line, ':', n);
	if (colon != NULL) {
		flen = (size_t)(colon - line);
		val = colon + 1;
		vlen = n - flen - 1;
		if (vlen > 0 && *val == ' ') {
			val++;
			vlen--;
		}
	} else {
		flen = n;
		val = "";
		vlen = 0;
	}
	if (flen == 5 && memcmp(line, "event", 5) == 0) {
		s->event.len = 0;
		if (sw_buf_add(&s->event, val, vlen) == -1)
			goto toolong;
		/* a NUL makes the type shorter than its bytes: keep the C string */
		s->event.len = strlen(s->event.p);
	} else if (flen == 4 && memcmp(line, "data", 4) == 0) {
		if (sw_buf_add(&s->data, val, vlen) == -1 ||
		    sw_buf_add(&s->data, "\n", 1) == -1)
			goto toolong;
	}
	return 0;
toolong:
	snprintf(errstr, errlen, "event stream: an event is larger than %zu bytes", s->max);
	return -1;
}

int cli_sse_feed(struct cli_sse *s, const char *buf, size_t len, char *errstr, size_t errlen)
{
	size_t i = 0, j;
	int rc;

	if (s->stopped) {
		snprintf(errstr, errlen, "event stream: parser already stopped");
		return s->stopped;
	}
	while (i < len) {
		if (s->after_cr) {
			s->after_cr = 0;
			if (buf[i] == '\n') {
				i++;
				continue;
			}
		}
		for (j = i; j < len && buf[j] != '\r' && buf[j] != '\n'; j++)
			;
		if (sw_buf_add(&s->line, buf + i, j - i) == -1) {
			snprintf(errstr, errlen, "event stream: a line is longer than %zu bytes",
				 s->max);
			s->stopped = -1;
			return -1;
		}
		if (j == len)
			break;
		s->after_cr = buf[j] == '\r';
		i = j + 1;
		if ((rc = process_line(s, errstr, errlen)) != 0) {
			s->stopped = rc;
			return rc;
		}
	}
	return 0;
}
