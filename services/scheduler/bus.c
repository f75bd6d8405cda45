/*
 * bus.c: the scheduler's Kafka clients' tuning and its one producer,
 * shared by the outbox relay (outbox.c), the dead letters (consume.c) and
 * the identity resolutions (identity.c);
 * each produced message carries a struct sched_dr saying whose delivery
 * report it is.
 */
#include "scheduler.h"

int sched_bus_extra(const struct sched_env *env, const char *var, const char *def,
		    const char **out, char *buf, size_t buflen)
{
	char err[128];

	return sw_svcbus_extra(env->envp, var, def, out, SCHED_BUS_EXTRA, buf, buflen, err,
			       sizeof(err));
}

static void on_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct sched_env *env = opaque;
	struct sched_dr *dr = msg_opaque;

	if (dr == NULL)
		return;
	if (dr->kind == SCHED_DR_OUTBOX)
		sched_outbox_delivery(env, err, dr);
	else if (dr->kind == SCHED_DR_DEADLETTER)
		sched_consume_delivery(env, err, dr);
	else if (dr->kind == SCHED_DR_IDENTITY)
		sched_identity_delivery(env, err, dr);
}

int sched_producer_start(struct sched_env *env, char *errstr, size_t errlen)
{
	char tuning[SW_CONFIG_STR];
	const char *extra[SCHED_BUS_EXTRA];

	/* a step is latency-bound: no linger (libs/bus/producer.c says why) */
	if (sched_bus_extra(env, "SAGEWAI_KAFKA_PRODUCER_CONFIG", "linger.ms=0", extra, tuning,
			    sizeof(tuning)) == -1) {
		snprintf(errstr, errlen, "SAGEWAI_KAFKA_PRODUCER_CONFIG has too many entries");
		return -1;
	}
	env->producer = sw_bus_producer_new(env->base, env->cfg->kafka_bootstrap, SCHED_PRODUCER,
					    extra, on_delivery, env, errstr, errlen);
	if (env->producer == NULL)
		return -1;
	sw_bus_producer_set_error_cb(env->producer, sw_svcbus_producer_error, env->svc);
	return 0;
}
