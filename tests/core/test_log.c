/*
 * core_log: each call writes exactly one line that parses as a JSON object
 * with ts (RFC 3339 UTC, microseconds), level, svc, msg and the extra
 * fields; quotes, backslashes, newlines, control bytes and invalid UTF-8
 * come out escaped; lines under the minimum level are dropped.
 */
#include <regex.h>
#include <string.h>

#include <jansson.h>

#include "sw_core.h"
#include "sw_test.h"

static const char *str(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	SW_CHECKF(json_is_string(v), "field %s missing or not a string", k);
	return json_string_value(v);
}

int main(void)
{
	FILE *f = tmpfile();
	char line[4096];
	json_t *obj[4];
	json_error_t jerr;
	regex_t re;
	int n = 0;

	SW_CHECK(f != NULL);
	SW_CHECK(regcomp(&re,
			 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
			 REG_EXTENDED | REG_NOSUB) == 0);

	sw_log_init("test\"svc", f, SW_LOG_INFO);
	sw_log(SW_LOG_INFO, "hello \"world\"\n\\ \x01 tab\t", "run_id", "r-1", "quote",
	       "a\"b\nc", NULL);
	sw_log(SW_LOG_DEBUG, "dropped: below minimum", NULL);
	sw_logf(SW_LOG_ERROR, "count=%d name=%s", 42, "x\"y");
	sw_log(SW_LOG_WARN, "bad utf8 \xff\xfe end", "k\xc3", "v\x80", NULL);
	sw_log_init("test", f, SW_LOG_DEBUG);
	sw_log(SW_LOG_DEBUG, "now shown", NULL);

	rewind(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		SW_CHECKF(n < 4, "more lines than expected: %s", line);
		SW_CHECK(strchr(line, '\n') == line + strlen(line) - 1);
		obj[n] = json_loads(line, 0, &jerr);
		SW_CHECKF(json_is_object(obj[n]), "line %d not JSON (%s): %s", n, jerr.text, line);
		SW_CHECKF(regexec(&re, str(obj[n], "ts"), 0, NULL, 0) == 0, "ts %s",
			  str(obj[n], "ts"));
		n++;
	}
	SW_CHECKF(n == 4, "%d lines", n);

	SW_CHECK(strcmp(str(obj[0], "level"), "info") == 0);
	SW_CHECK(strcmp(str(obj[0], "svc"), "test\"svc") == 0);
	SW_CHECK(strcmp(str(obj[0], "msg"), "hello \"world\"\n\\ \x01 tab\t") == 0);
	SW_CHECK(strcmp(str(obj[0], "run_id"), "r-1") == 0);
	SW_CHECK(strcmp(str(obj[0], "quote"), "a\"b\nc") == 0);

	SW_CHECK(strcmp(str(obj[1], "level"), "error") == 0);
	SW_CHECK(strcmp(str(obj[1], "msg"), "count=42 name=x\"y") == 0);

	SW_CHECK(strcmp(str(obj[2], "level"), "warn") == 0);
	SW_CHECK(strcmp(str(obj[2], "msg"), "bad utf8 ?? end") == 0);
	SW_CHECK(strcmp(str(obj[2], "badkey"), "k?") == 0);

	SW_CHECK(strcmp(str(obj[3], "level"), "debug") == 0);
	SW_CHECK(strcmp(str(obj[3], "msg"), "now shown") == 0);

	while (n-- > 0)
		json_decref(obj[n]);
	regfree(&re);
	fclose(f);
	printf("core_log: ok\n");
	return 0;
}
