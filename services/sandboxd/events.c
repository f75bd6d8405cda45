/*
 * events.c: what sandboxd tells the others besides step.finished.
 *
 * step.started (sagewai.steps) and the sandbox lifecycle (sagewai.sandbox:
 * sandbox.acquired, sandbox.output, sandbox.exited, sandbox.released) are
 * informative: produced without a delivery handle, a failure is logged and
 * nothing waits for them. All are keyed by the run id, so they are ordered
 * with the run's other events of their topic.
 */
#include <stdlib.h>
#include <string.h>

#include "sandboxd.h"

char *sbd_utf8(const char *buf, size_t len)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *s = (const unsigned char *)buf;
	char *out = malloc(len * 3 + 1);
	size_t i = 0, o = 0;

	if (out == NULL)
		return NULL;
	while (i < len) {
		unsigned c = s[i], need = 0, cp = 0, k;

		if (c >= 0x01 && c < 0x80) {
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07;
		for (k = 1; need > 0 && k <= need; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				break;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (need == 0 || k <= need ||
		    (need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (need == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
			memcpy(out + o, repl, 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(out + o, s + i, need + 1);
		o += need + 1;
		i += need + 1;
	}
	out[o] = '\0';
	return out;
}

/* Steals fields. */
static void produce(struct sbd_env *env, const char *topic, const char *type,
		    const struct sw_event_header *like, json_t *fields)
{
	struct sw_event_header h;
	char err[256];
	void *buf = NULL;
	size_t len;

	sw_event_header_init(&h, type, SBD_PRODUCER);
	memcpy(h.tenant, like->tenant, sizeof(h.tenant));
	memcpy(h.run_id, like->run_id, sizeof(h.run_id));
	memcpy(h.step_id, like->step_id, sizeof(h.step_id));
	memcpy(h.trace_id, like->trace_id, sizeof(h.trace_id));
	if (fields == NULL ||
	    sw_event_encode(env->reg, type, &h, fields, &buf, &len, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_WARN, "cannot encode an event", "type", type, "error",
		       fields ? err : "no memory", NULL);
	} else if (sw_bus_produce(env->producer, topic, h.run_id, buf, len, NULL, NULL, err,
				  sizeof(err)) == -1) {
		sw_log(SW_LOG_WARN, "cannot produce an event", "type", type, "error", err, NULL);
	}
	json_decref(fields);
	free(buf);
}

void sbd_emit(struct sbd_env *env, const char *type, const struct sw_event_header *like,
	      json_t *fields)
{
	produce(env, SW_TOPIC_SANDBOX, type, like, fields);
}

void sbd_emit_started(struct sbd_job *j)
{
	produce(j->env, SW_TOPIC_STEPS, "step.started", &j->dh,
		json_pack("{s:s, s:i, s:s}", "step", j->step, "attempt", j->attempt, "executor",
			  j->env->executor));
}
