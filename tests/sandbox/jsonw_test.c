/*
 * jsonw_test: the tool runner's JSON writer (tools/toolrunner/jsonw.c), which
 * writes what the host reads with jansson, strictly. Every object it makes
 * must parse back to the same members: quotes, backslashes, every control
 * character, a nested object, integers at their limits, and bytes that are
 * not UTF-8 (each written as U+FFFD, never refused: the host would drop the
 * sandbox on a frame jansson cannot read).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "runner.h"
#include "sw_test.h"

static char sent[4096];
static size_t sent_len;
static int sent_type;

/* jsonw.c's one way out, captured here. */
int runner_send(struct runner *r, enum sw_frame_type type, const void *p, size_t n)
{
	(void)r;
	SW_CHECK(n < sizeof(sent));
	memcpy(sent, p, n);
	sent_len = n;
	sent_type = (int)type;
	return 0;
}

static json_t *parsed(void)
{
	json_error_t e;
	json_t *j = json_loadb(sent, sent_len, JSON_REJECT_DUPLICATES, &e);

	SW_CHECKF(j != NULL, "%s in %.*s", e.text, (int)sent_len, sent);
	return j;
}

int main(void)
{
	char ctl[33];
	struct jw w;
	json_t *j, *u;

	/* an EXIT as the runner sends it */
	jw_open(&w);
	jw_int(&w, "status", -1);
	jw_int(&w, "signal", 9);
	jw_bool(&w, "timed_out", true);
	jw_bool(&w, "killed", false);
	jw_obj(&w, "usage");
	jw_int(&w, "utime_us", 9223372036854775807LL);
	jw_int(&w, "stime_us", -9223372036854775807LL - 1);
	jw_int(&w, "maxrss_kb", 0);
	jw_close(&w);
	jw_str(&w, "error", "exec: \"x\\y\" not found");
	runner_send_jw(NULL, SW_FRAME_EXIT, &w);
	SW_CHECK(sent_type == SW_FRAME_EXIT);
	j = parsed();
	SW_CHECK(json_integer_value(json_object_get(j, "status")) == -1);
	SW_CHECK(json_integer_value(json_object_get(j, "signal")) == 9);
	SW_CHECK(json_is_true(json_object_get(j, "timed_out")));
	SW_CHECK(json_is_false(json_object_get(j, "killed")));
	u = json_object_get(j, "usage");
	SW_CHECK(json_object_size(u) == 3);
	SW_CHECK(json_integer_value(json_object_get(u, "utime_us")) == 9223372036854775807LL);
	SW_CHECK(json_integer_value(json_object_get(u, "stime_us")) == -9223372036854775807LL - 1);
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "error")),
			"exec: \"x\\y\" not found") == 0);
	SW_CHECK(json_object_size(j) == 6);
	json_decref(j);

	/* every control character, and DEL, round-trips */
	for (int c = 1; c < 32; c++)
		ctl[c - 1] = (char)c;
	ctl[31] = 0x7f;
	ctl[32] = '\0';
	jw_open(&w);
	jw_str(&w, "message", ctl);
	runner_send_jw(NULL, SW_FRAME_ERROR, &w);
	j = parsed();
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "message")), ctl) == 0);
	json_decref(j);

	/* valid UTF-8 stays; a byte that starts no valid sequence becomes
	 * U+FFFD: a lone continuation, a cut sequence, an overlong form, a
	 * surrogate, a code point past U+10FFFF */
	jw_open(&w);
	jw_str(&w, "ok", "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	jw_str(&w, "bad",
	       "a\x80"
	       "b\xc3"
	       "c\xc0\xaf"
	       "d\xed\xa0\x80"
	       "e\xf4\x90\x80\x80");
	jw_str(&w, "empty", "");
	runner_send_jw(NULL, SW_FRAME_CRED_REQUEST, &w);
	j = parsed();
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "ok")),
			"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == 0);
	SW_CHECKF(strcmp(json_string_value(json_object_get(j, "bad")),
			 "a\xef\xbf\xbd"
			 "b\xef\xbf\xbd"
			 "c\xef\xbf\xbd\xef\xbf\xbd"
			 "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
			 "e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd") == 0,
		  "%s", json_string_value(json_object_get(j, "bad")));
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "empty")), "") == 0);
	json_decref(j);

	/* an object with nothing in it */
	jw_open(&w);
	runner_send_jw(NULL, SW_FRAME_READY, &w);
	SW_CHECK(sent_len == 2 && memcmp(sent, "{}", 2) == 0);
	return 0;
}
