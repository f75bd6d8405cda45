/*
 * sleepy: a test plugin for sagewai-worker (timeouts, cancels, failures).
 *
 *   with: {"ms": N}        sleep N ms, then output {"slept": N}
 *   with: {"fail": true}   fail with "asked to fail"
 *   with: {"garbage": true} return text that is not JSON
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

#include "sagewai_plugin.h"

static int sleepy_run(const char *input, size_t len, char **output, size_t *output_len, char *err,
		      size_t errlen)
{
	json_t *in = json_loadb(input, len, JSON_DECODE_ANY, NULL);
	json_int_t ms = json_integer_value(json_object_get(in, "ms"));
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	int fail = json_is_true(json_object_get(in, "fail"));
	int garbage = json_is_true(json_object_get(in, "garbage"));

	json_decref(in);
	if (fail) {
		snprintf(err, errlen, "asked to fail");
		return 1;
	}
	if (garbage) {
		*output = strdup("this is {not json");
		*output_len = strlen(*output);
		return 0;
	}
	if (ms > 0)
		nanosleep(&ts, NULL);
	if (asprintf(output, "{\"slept\": %lld}", (long long)ms) == -1)
		return 1;
	*output_len = strlen(*output);
	return 0;
}

static void sleepy_free(char *p)
{
	free(p);
}

static const struct sagewai_plugin sleepy = {
    .abi_version = SAGEWAI_ABI_VERSION,
    .name = "sleepy",
    .run = sleepy_run,
    .free_output = sleepy_free,
};

SAGEWAI_PLUGIN_EXPORT const struct sagewai_plugin *sagewai_plugin_v1(void)
{
	return &sleepy;
}
