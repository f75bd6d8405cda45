/*
 * bus.c: the policy service on Kafka.
 *
 *   producer   idempotent; credential.pending and credential.decided on
 *              sagewai.credentials (keyed by run id), from decide.c's rows
 *   consumer   group sagewai-policy (SAGEWAI_GROUP_ID) on
 *              sagewai.credentials (credential.requested and
 *              credential.withdrawn; the other types there are skipped),
 *              sagewai.runs (run.finished; run.submitted of re-runs,
 *              replay.c) and sagewai.tenants (tenants.c)
 *
 * A consumed message's offset is stored only once its effect is committed
 * in PostgreSQL (the events it owes go out from the rows, decide.c), in
 * consumption order. An effect committed without waiting for the disk
 * (a run.finished that withdrew nothing, POL_DONE_LAZY) is durable once
 * PostgreSQL's WAL is flushed past its commit, by anyone's durable commit
 * or the WAL writer: its offset waits until then (we look every
 * POL_FLUSH_POLL_MS), so a crash of PostgreSQL that loses the commit finds
 * the message not committed on Kafka either, and it is consumed again.
 * A store that reconnected meanwhile may have met a PostgreSQL that
 * crashed and reuses the lost WAL positions: the service then stops, and
 * what waited is consumed again at its restart. A message of sagewai.credentials that does not
 * decode goes to sagewai.deadletter with the reason. A failure to record
 * stops the service (the message comes back at restart and is decided
 * then, once).
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* A consumed message (sw_svcbus.h) and its wait for the WAL. */
struct pol_item {
	struct sw_svcbus_item base; /* first */
	int flushw;		  /* committed lazily: waits for the WAL flush */
	int asked;		  /* ... and was waiting when the position was asked */
	uint64_t lsn;		  /* ... of a WAL position past its commit, 0: not known yet */
	unsigned long reconnects; /* the store's reconnects when it was consumed */
};

static void flush_arm(struct pol_env *env);

/* "X/Y" (pg_lsn's text) as a number; 0 when it is not one. */
static uint64_t lsn_parse(const char *s)
{
	unsigned int hi, lo;
	char tail;

	if (s == NULL || sscanf(s, "%X/%X%c", &hi, &lo, &tail) != 2)
		return 0;
	return ((uint64_t)hi << 32) | lo;
}

/* The WAL's insert and flush positions: an item waiting when the query was
 * sent committed before it, so its commit ends at or before insert; it is
 * durable once flush has reached that. */
static void flush_cb(PGresult *res, const char *err, void *opaque)
{
	struct pol_env *env = opaque;
	struct sw_svcbus_item *base;
	uint64_t ins = 0, fl = 0;
	int any = 0;

	env->flush_asking = 0;
	if (err == NULL && PQntuples(res) == 1) {
		ins = lsn_parse(PQgetvalue(res, 0, 0));
		fl = lsn_parse(PQgetvalue(res, 0, 1));
	}
	if (ins == 0 || fl == 0) {
		/* PostgreSQL is away: ask again; nothing is settled meanwhile */
		sw_log(SW_LOG_WARN, "WAL position not read", "error", err ? err : "bad answer",
		       NULL);
		flush_arm(env);
		return;
	}
	TAILQ_FOREACH(base, &env->bus.items, entry) {
		struct pol_item *it = (struct pol_item *)base;

		if (!it->flushw)
			continue;
		if (it->reconnects != sw_store_reconnects(env->store)) {
			sw_service_fatal(env->svc, "PostgreSQL connection lost",
					 "records committed without waiting for the disk may be "
					 "lost; their messages are consumed again after a restart");
			return;
		}
		if (it->asked && it->lsn == 0)
			it->lsn = ins;
		if (it->lsn != 0 && it->lsn <= fl) {
			it->flushw = 0;
			env->nflushw--;
			any |= --base->pending == 0;
		}
	}
	if (any)
		sw_svcbus_settle(&env->bus);
	flush_arm(env);
}

static void flush_poll(evutil_socket_t fd, short what, void *arg)
{
	struct pol_env *env = arg;
	struct sw_svcbus_item *base;

	(void)fd;
	(void)what;
	if (env->nflushw == 0 || env->flush_asking)
		return;
	TAILQ_FOREACH(base, &env->bus.items, entry) {
		struct pol_item *it = (struct pol_item *)base;

		if (it->flushw)
			it->asked = 1;
	}
	env->flush_asking = 1;
	if (sw_store_query(env->store,
			   "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text",
			   0, NULL, flush_cb, env) == -1)
		sw_service_fatal(env->svc, "WAL position", "cannot queue the query");
}

static void flush_arm(struct pol_env *env)
{
	struct timeval tv = {0, POL_FLUSH_POLL_MS * 1000};

	if (env->nflushw == 0 || env->flush_asking)
		return;
	if (env->flush_ev == NULL &&
	    (env->flush_ev = evtimer_new(env->base, flush_poll, env)) == NULL) {
		sw_service_fatal(env->svc, "WAL position", "out of memory");
		return;
	}
	if (!evtimer_pending(env->flush_ev, NULL))
		evtimer_add(env->flush_ev, &tv);
}

static void item_done(void *opaque, int ok)
{
	struct pol_item *it = opaque;
	struct pol_env *env = it->base.bus->arg;

	if (ok == POL_DONE_LAZY) {
		/* held (pending stays) until the WAL is flushed past it */
		it->flushw = 1;
		env->nflushw++;
		flush_arm(env);
		return;
	}
	if (!ok) {
		/* nothing may be committed past it: stop; it comes back */
		sw_service_fatal(env->svc, "credential message not recorded",
				 "see the error above");
		return;
	}
	sw_svcbus_release(&it->base);
}

/*
 * Whether a run.finished is of a run that could have asked for a credential:
 * only a cli_agent_jit step can (sandboxd refuses a request from any other),
 * so the end of a run without one has nothing pending to withdraw and no
 * later request to void, and is not recorded. The modes come from the
 * scheduler's own record of the run (run.finished.modes); an event without
 * them (a writer before the field, or one that does not decode) counts as a
 * run that could.
 */
static int finished_may_ask(struct pol_env *env, const struct sw_bus_msg *m)
{
	json_t *ev, *modes, *mode;
	char why[256];
	size_t i;
	int may = 0;

	if ((ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) == NULL)
		return 1;
	modes = json_object_get(ev, "modes");
	if (!json_is_array(modes))
		may = 1;
	json_array_foreach(modes, i, mode) {
		if (!json_is_string(mode) || strcmp(json_string_value(mode), POL_JIT_MODE) == 0)
			may = 1;
	}
	json_decref(ev);
	return may;
}

static void handle(void *arg, struct sw_svcbus_item *base, const struct sw_bus_msg *m)
{
	struct pol_env *env = arg;
	struct pol_item *it = (struct pol_item *)base;
	struct sw_event_header h;
	char why[256];
	json_t *ev;
	int creds = strcmp(m->topic, SW_TOPIC_CREDENTIALS) == 0;

	it->reconnects = sw_store_reconnects(env->store);
	/* what was consumed before goes to PostgreSQL before */
	if (strcmp(m->topic, SW_TOPIC_RUNS) != 0)
		pol_finished_flush(env);
	if (m->value == NULL || m->len == 0) {
		if (creds)
			sw_svcbus_deadletter(&it->base, m, "empty message");
		return;
	}
	if (strcmp(m->topic, SW_TOPIC_RUNS) == 0) {
		/* run.finished and run.submitted (re-runs) */
		if (sw_event_decode_header(env->reg, m->value, m->len, &h, why, sizeof(why)) != 0)
			return;
		if (strcmp(h.type, "run.finished") == 0) {
			if (!finished_may_ask(env, m)) {
				sw_metrics_counter_add(
				    env->metrics, "sagewai_policy_finished_skipped_total",
				    "Ended runs not recorded: none of their steps could ask.", 1);
				return;
			}
			it->base.pending++;
			pol_run_finished(env, &h, item_done, it);
			return;
		}
		if (strcmp(h.type, "run.submitted") != 0)
			return;
		pol_finished_flush(env);
		if ((ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) != NULL) {
			it->base.pending++;
			pol_run_submitted(env, ev, &h, item_done, it);
			json_decref(ev);
		}
		return;
	}
	ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why));
	if (ev == NULL ||
	    sw_event_decode_header(env->reg, m->value, m->len, &h, why, sizeof(why)) == -1) {
		json_decref(ev);
		if (creds)
			sw_svcbus_deadletter(&it->base, m, why);
		else
			sw_log(SW_LOG_WARN, "undecodable tenant event skipped", "reason", why, NULL);
		return;
	}
	it->base.pending++;
	if (strcmp(m->topic, SW_TOPIC_TENANTS) == 0)
		pol_tenants_apply(env, ev, item_done, it);
	else if (strcmp(h.type, "credential.requested") == 0)
		pol_requested(env, ev, &h, item_done, it);
	else if (strcmp(h.type, "credential.withdrawn") == 0)
		pol_withdrawn(env, ev, &h, item_done, it);
	else
		it->base.pending--; /* ours, or sandboxd's delivered/refused: not for us */
	json_decref(ev);
}

int pol_bus_start(struct pol_env *env, char *errstr, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_CREDENTIALS, SW_TOPIC_RUNS, SW_TOPIC_TENANTS,
					     NULL};
	const struct sw_svcbus_def def = {
	    .client_id = POL_PRODUCER,
	    .producer_default = "linger.ms=0", /* a sandbox waits on each decision: send at once */
	    .group = env->group,
	    .topics = topics,
	    .max_inflight = POL_MAX_INFLIGHT,
	    .max_bytes = POL_MAX_INFLIGHT_BYTES,
	    .item_size = sizeof(struct pol_item),
	    .handle = handle,
	};

	return sw_svcbus_start(&env->bus, env->svc, env->reg, &def, env, errstr, errlen);
}

int pol_bus_idle(const struct pol_env *env)
{
	return env->busy == 0 && sw_svcbus_idle(&env->bus);
}

void pol_bus_free(struct pol_env *env)
{
	sw_svcbus_free(&env->bus);
	if (env->flush_ev != NULL)
		event_free(env->flush_ev);
	env->flush_ev = NULL;
	env->nflushw = 0;
}
