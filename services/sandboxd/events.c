/*
 * events.c: what sandboxd tells the others besides step.started and
 * step.finished (sw_executor's): the sandbox lifecycle on sagewai.sandbox
 * (sandbox.acquired, sandbox.egress, sandbox.output, sandbox.exited,
 * sandbox.released). Informative: produced without a delivery handle, a
 * failure is logged and nothing waits for them. All are keyed by the run
 * id, so they are ordered with the run's other events of their topic.
 */
#include "sandboxd.h"
#include "sw_executor.h"

void sbd_emit(struct sbd_env *env, const char *type, const struct sw_event_header *like,
	      json_t *fields)
{
	sw_executor_emit(env->ex, SW_TOPIC_SANDBOX, type, like, fields);
}
