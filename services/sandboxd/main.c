/*
 * sagewai-sandboxd: see sandboxd.h. The roles on the daemon frame
 * (libs/service): config.c (settings, then the privileged part's split),
 * serve.c (the roles' start, drain and stop).
 *
 *   sagewai-sandboxd [serve]    run the service; configuration from the
 *                               environment and $SAGEWAI_CONFIG (config.c)
 */
#include "sandboxd.h"

static const struct sw_service_def sbd_def = {
    .name = "sandboxd",
    .help = "Runs the sandboxed steps dispatched on sagewai.steps (consumer group\n"
	    "$SAGEWAI_GROUP_ID, default sagewai-sandboxd), each in a fresh bubblewrap\n"
	    "sandbox from a warm pool, and publishes step.started, step.finished and the\n"
	    "sandbox lifecycle on sagewai.sandbox; results are kept in PostgreSQL (schema\n"
	    "sandboxd) so that a redelivered dispatch re-publishes its result.\n",
    .drain_ms = (SBD_DRAIN_S + 1) * 1000, /* the executor's own grace ends first */
    .configure = sbd_configure,
    .start = sbd_start,
    .drain = sbd_drain,
    .drained = sbd_drained,
    .halt = sbd_halt,
    .stop = sbd_stop,
    .health = sbd_health,
};

int main(int argc, char **argv)
{
	static struct sbd_env env;

	return sw_service_main(&sbd_def, &env, argc, argv);
}
