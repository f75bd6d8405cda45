/*
 * wordcount: an example sagewai-worker plugin (see libs/plugin/sagewai_plugin.h).
 *
 *     - name: count
 *       uses: plugin:wordcount
 *       with:
 *         text: ${{ steps.write.output }}
 *
 * Output: {"words": N, "lines": L, "characters": C} for with.text, where a
 * word is a maximal run of non-whitespace bytes, lines counts '\n'-ended
 * or unterminated last lines, and characters counts UTF-8 code points.
 * Stateless, hence thread-safe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "sagewai_plugin.h"

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int wordcount_run(const char *input, size_t len, char **output, size_t *output_len,
			 char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *in, *text, *out;
	const unsigned char *p;
	size_t i, n, words = 0, lines = 0, chars = 0;
	int inword = 0;

	in = json_loadb(input, len, JSON_DECODE_ANY, &jerr);
	if (in == NULL) {
		snprintf(err, errlen, "input is not JSON: %s", jerr.text);
		return -1;
	}
	text = json_object_get(in, "text");
	if (!json_is_string(text)) {
		snprintf(err, errlen, "with.text must be a string");
		json_decref(in);
		return -1;
	}
	p = (const unsigned char *)json_string_value(text);
	n = json_string_length(text);
	for (i = 0; i < n; i++) {
		if (is_space(p[i])) {
			inword = 0;
		} else if (!inword) {
			inword = 1;
			words++;
		}
		if (p[i] == '\n')
			lines++;
		if ((p[i] & 0xc0) != 0x80)
			chars++;
	}
	if (n > 0 && p[n - 1] != '\n')
		lines++;
	json_decref(in);

	out = json_pack("{s:I, s:I, s:I}", "words", (json_int_t)words, "lines", (json_int_t)lines,
			"characters", (json_int_t)chars);
	*output = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
	if (*output == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*output_len = strlen(*output);
	return 0;
}

static const struct sagewai_plugin wordcount = {
    .abi_version = SAGEWAI_ABI_VERSION,
    .name = "wordcount",
    .run = wordcount_run,
    .free_output = NULL, /* json_dumps allocates with malloc */
};

SAGEWAI_PLUGIN_EXPORT const struct sagewai_plugin *sagewai_plugin_v1(void)
{
	return &wordcount;
}
