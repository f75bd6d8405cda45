/*
 * Modes, durations, the canonical JSON form and freeing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wf_int.h"

static const char *const mode_names[SW_MODE_COUNT] = {
    [SW_MODE_IN_PROCESS] = "in_process",	   [SW_MODE_SANDBOXED] = "sandboxed",
    [SW_MODE_IDENTITY_SCOPED] = "identity_scoped", [SW_MODE_CLI_AGENT] = "cli_agent",
    [SW_MODE_CLI_AGENT_JIT] = "cli_agent_jit",
};

const char *sw_mode_name(enum sw_mode m)
{
	if ((unsigned)m >= SW_MODE_COUNT)
		return "unknown";
	return mode_names[m];
}

int sw_mode_parse(const char *s, enum sw_mode *m)
{
	int i;

	if (s == NULL)
		return -1;
	for (i = 0; i < SW_MODE_COUNT; i++) {
		if (!strcmp(s, mode_names[i])) {
			*m = (enum sw_mode)i;
			return 0;
		}
	}
	return -1;
}

int sw_mode_identity_bearing(enum sw_mode m)
{
	return m == SW_MODE_IDENTITY_SCOPED || m == SW_MODE_CLI_AGENT ||
	       m == SW_MODE_CLI_AGENT_JIT;
}

int sw_workflow_first_unrunnable(const struct sw_workflow *wf, unsigned runnable)
{
	size_t i;

	for (i = 0; i < wf->nsteps; i++)
		if (!(runnable & (1u << wf->steps[i].mode)))
			return (int)i;
	return -1;
}

int sw_workflow_identity_bearing(const struct sw_workflow *wf)
{
	size_t i;

	for (i = 0; i < wf->nsteps; i++)
		if (sw_mode_identity_bearing(wf->steps[i].mode))
			return 1;
	return 0;
}

/* Digits, then an optional unit (ms, s, m, h; none means seconds). No
 * sign, no spaces, no fractions; overflow is an error. */
int sw_duration_parse(const char *s, int64_t *ms)
{
	int64_t v = 0, mult;
	const char *p = s;

	if (s == NULL || ms == NULL || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - (*p - '0')) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (*p == '\0' || !strcmp(p, "s"))
		mult = 1000;
	else if (!strcmp(p, "ms"))
		mult = 1;
	else if (!strcmp(p, "m"))
		mult = 60 * 1000;
	else if (!strcmp(p, "h"))
		mult = 3600 * 1000;
	else
		return -1;
	if (v > INT64_MAX / mult)
		return -1;
	*ms = v * mult;
	return 0;
}

void sw_workflow_free(struct sw_workflow *wf)
{
	size_t i;

	if (wf == NULL)
		return;
	for (i = 0; wf->steps != NULL && i < wf->nsteps; i++) {
		free(wf->steps[i].name);
		free(wf->steps[i].uses);
		json_decref(wf->steps[i].with);
		json_decref(wf->steps[i].extra);
	}
	free(wf->steps);
	free(wf->name);
	free(wf->description);
	json_decref(wf->warnings);
	free(wf);
}

/* {"name", "version", "description"?, "steps": [{"name", "mode", "uses"?,
 * "with", "timeout_ms", "retries", "backoff_ms", <extra keys>...}]} */
json_t *sw_workflow_to_json(const struct sw_workflow *wf)
{
	json_t *j, *steps, *s;
	size_t i;

	if (wf == NULL)
		return NULL;
	if ((j = json_pack("{s:s, s:i}", "name", wf->name, "version", wf->version)) == NULL)
		return NULL;
	if (wf->description != NULL &&
	    json_object_set_new(j, "description", json_string(wf->description)))
		goto fail;
	if ((steps = json_array()) == NULL || json_object_set_new(j, "steps", steps))
		goto fail;
	for (i = 0; i < wf->nsteps; i++) {
		const struct sw_step *st = &wf->steps[i];

		s = json_pack("{s:s, s:s}", "name", st->name, "mode", sw_mode_name(st->mode));
		if (s == NULL || json_array_append_new(steps, s))
			goto fail;
		if (st->uses != NULL && json_object_set_new(s, "uses", json_string(st->uses)))
			goto fail;
		if (json_object_set_new(s, "with",
					st->with ? json_deep_copy(st->with) : json_object()) ||
		    json_object_set_new(s, "timeout_ms", json_integer(st->timeout_ms)) ||
		    json_object_set_new(s, "retries", json_integer(st->retries)) ||
		    json_object_set_new(s, "backoff_ms", json_integer(st->backoff_ms)))
			goto fail;
		if (st->extra != NULL) {
			json_t *x = json_deep_copy(st->extra);
			int rc = x == NULL || json_object_update(s, x);

			json_decref(x);
			if (rc)
				goto fail;
		}
	}
	return j;
fail:
	json_decref(j);
	return NULL;
}

const char *sw_spec_identity_mode(json_t *spec)
{
	json_t *m;
	size_t i;
	enum sw_mode mode;

	json_array_foreach(json_object_get(spec, "run_modes"), i, m) {
		if (json_is_string(m) && sw_mode_parse(json_string_value(m), &mode) == 0 &&
		    sw_mode_identity_bearing(mode))
			return sw_mode_name(mode);
	}
	return NULL;
}
