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

struct pol_item {
	TAILQ_ENTRY(pol_item) entry;
	struct pol_env *env;
	char *topic;
	int32_t partition;
	int64_t offset;
	int pending;		  /* effects outstanding */
	int flushw;		  /* committed lazily: waits for the WAL flush */
	int asked;		  /* ... and was waiting when the position was asked */
	uint64_t lsn;		  /* ... of a WAL position past its commit, 0: not known yet */
	unsigned long reconnects; /* the store's reconnects when it was consumed */
};

struct pub {
	pol_sent_cb cb;
	void *opaque;
};

static void settle(struct pol_env *env)
{
	struct pol_item *it;
	int stored = 0;

	while ((it = TAILQ_FIRST(&env->items)) != NULL && it->pending == 0) {
		TAILQ_REMOVE(&env->items, it, entry);
		env->nitems--;
		if (env->consumer != NULL)
			sw_bus_consumer_store_at(env->consumer, it->topic, it->partition,
						 it->offset);
		stored = 1;
		free(it->topic);
		free(it);
	}
	if (stored && env->consumer != NULL)
		sw_bus_consumer_commit(env->consumer);
	if (env->paused && !env->draining && env->nitems < POL_MAX_INFLIGHT / 2) {
		env->paused = 0;
		sw_bus_consumer_resume(env->consumer);
	}
}

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
	struct pol_item *it;
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
	TAILQ_FOREACH(it, &env->items, entry) {
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
			any |= --it->pending == 0;
		}
	}
	if (any)
		settle(env);
	flush_arm(env);
}

static void flush_poll(evutil_socket_t fd, short what, void *arg)
{
	struct pol_env *env = arg;
	struct pol_item *it;

	(void)fd;
	(void)what;
	if (env->nflushw == 0 || env->flush_asking)
		return;
	TAILQ_FOREACH(it, &env->items, entry)
		if (it->flushw)
			it->asked = 1;
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

	if (ok == POL_DONE_LAZY) {
		/* held (pending stays) until the WAL is flushed past it */
		it->flushw = 1;
		it->env->nflushw++;
		flush_arm(it->env);
		return;
	}
	if (!ok) {
		/* nothing may be committed past it: stop; it comes back */
		sw_service_fatal(it->env->svc, "credential message not recorded",
				 "see the error above");
		return;
	}
	if (--it->pending == 0)
		settle(it->env);
}

static void on_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct pol_env *env = opaque;
	struct pub *p = msg_opaque;

	if (p == NULL)
		return;
	if (p->cb != NULL)
		p->cb(env, err, p->opaque);
	free(p);
}

static void on_error(int fatal, const char *reason, void *opaque)
{
	struct pol_env *env = opaque;

	if (fatal)
		sw_service_fatal(env->svc, "Kafka client failed", reason);
	else
		sw_log(SW_LOG_WARN, "Kafka", "error", reason, NULL);
}

int pol_publish(struct pol_env *env, const char *type, const char *key,
		const struct sw_event_header *h, json_t *fields, pol_sent_cb cb, void *opaque,
		char *errstr, size_t errlen)
{
	struct pub *p = NULL;
	void *buf = NULL;
	size_t len;
	int rc = -1;

	if (fields == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	if (sw_event_encode(env->reg, type, h, fields, &buf, &len, errstr, errlen) == -1)
		goto out;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	p->cb = cb;
	p->opaque = opaque;
	if (sw_bus_produce(env->producer, SW_TOPIC_CREDENTIALS, key, buf, len, NULL, p, errstr,
			   errlen) == -1) {
		free(p);
		goto out;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_policy_events_total",
			       "Events produced by the policy service", 1);
	rc = 0;
out:
	json_decref(fields);
	free(buf);
	return rc;
}

static void deadletter_sent(struct pol_env *env, const char *err, void *opaque)
{
	if (err != NULL) {
		sw_service_fatal(env->svc, "dead letter not delivered", err);
		return;
	}
	item_done(opaque, 1);
}

static void deadletter(struct pol_env *env, struct pol_item *it, const struct sw_bus_msg *m,
		       const char *why)
{
	struct pub *p = calloc(1, sizeof(*p));
	char err[256];

	if (p == NULL) {
		sw_service_fatal(env->svc, "dead letter", "out of memory");
		return;
	}
	p->cb = deadletter_sent;
	p->opaque = it;
	it->pending++;
	if (sw_bus_deadletter(env->producer, m, why, p, err, sizeof(err)) == -1) {
		it->pending--;
		free(p);
		sw_service_fatal(env->svc, "dead-letter produce failed", err);
		return;
	}
	sw_log(SW_LOG_WARN, "dead-lettered undecodable message", "topic", m->topic, "reason", why,
	       NULL);
}

static void handle(struct pol_env *env, struct pol_item *it, const struct sw_bus_msg *m)
{
	struct sw_event_header h;
	char why[256];
	json_t *ev;
	int creds = strcmp(m->topic, SW_TOPIC_CREDENTIALS) == 0;

	if (m->value == NULL || m->len == 0) {
		if (creds)
			deadletter(env, it, m, "empty message");
		return;
	}
	if (strcmp(m->topic, SW_TOPIC_RUNS) == 0) {
		/* run.finished (the header is enough) and run.submitted (re-runs) */
		if (sw_event_decode_header(env->reg, m->value, m->len, &h, why, sizeof(why)) != 0)
			return;
		if (strcmp(h.type, "run.finished") == 0) {
			it->pending++;
			pol_run_finished(env, &h, item_done, it);
		} else if (strcmp(h.type, "run.submitted") == 0 &&
			   (ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) !=
				   NULL) {
			it->pending++;
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
			deadletter(env, it, m, why);
		else
			sw_log(SW_LOG_WARN, "undecodable tenant event skipped", "reason", why, NULL);
		return;
	}
	it->pending++;
	if (strcmp(m->topic, SW_TOPIC_TENANTS) == 0)
		pol_tenants_apply(env, ev, item_done, it);
	else if (strcmp(h.type, "credential.requested") == 0)
		pol_requested(env, ev, &h, item_done, it);
	else if (strcmp(h.type, "credential.withdrawn") == 0)
		pol_withdrawn(env, ev, &h, item_done, it);
	else
		it->pending--; /* ours, or sandboxd's delivered/refused: not for us */
	json_decref(ev);
}

static void on_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct pol_env *env = opaque;
	size_t i;

	for (i = 0; i < n; i++) {
		struct pol_item *it = calloc(1, sizeof(*it));

		if (it == NULL || (it->topic = strdup(msgs[i].topic)) == NULL) {
			free(it);
			sw_service_fatal(env->svc, "consume", "out of memory");
			return;
		}
		it->env = env;
		it->reconnects = sw_store_reconnects(env->store);
		it->partition = msgs[i].partition;
		it->offset = msgs[i].offset;
		it->pending = 1; /* held while handling */
		TAILQ_INSERT_TAIL(&env->items, it, entry);
		env->nitems++;
		handle(env, it, &msgs[i]);
		item_done(it, 1);
	}
	if (!env->paused && env->nitems >= POL_MAX_INFLIGHT) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
}

static int extra(struct pol_env *env, const char *var, const char *def, const char **out,
		 char *buf, size_t buflen, char *errstr, size_t errlen)
{
	size_t n = 0;

	if (def != NULL)
		out[n++] = def;
	return sw_config_list(env->envp, var, out, n, POL_BUS_EXTRA, buf, buflen, errstr,
			      errlen) == -1
		       ? -1
		       : 0;
}

int pol_bus_start(struct pol_env *env, char *errstr, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_CREDENTIALS, SW_TOPIC_RUNS, SW_TOPIC_TENANTS,
					     NULL};
	char pbuf[SW_CONFIG_STR], cbuf[SW_CONFIG_STR];
	const char *pextra[POL_BUS_EXTRA], *cextra[POL_BUS_EXTRA];

	TAILQ_INIT(&env->items);
	/* a sandbox waits on each decision: send at once */
	if (extra(env, "SAGEWAI_KAFKA_PRODUCER_CONFIG", "linger.ms=0", pextra, pbuf, sizeof(pbuf),
		  errstr, errlen) == -1 ||
	    extra(env, "SAGEWAI_KAFKA_CONSUMER_CONFIG", NULL, cextra, cbuf, sizeof(cbuf), errstr,
		  errlen) == -1)
		return -1;
	env->producer = sw_bus_producer_new(env->base, env->cfg->kafka_bootstrap, POL_PRODUCER,
					    pextra, on_delivery, env, errstr, errlen);
	if (env->producer == NULL)
		return -1;
	sw_bus_producer_set_error_cb(env->producer, on_error, env);
	env->consumer = sw_bus_consumer_new(env->base, env->cfg->kafka_bootstrap, env->group,
					    topics, cextra, 256, on_batch, env, errstr, errlen);
	if (env->consumer == NULL)
		return -1;
	sw_bus_consumer_set_error_cb(env->consumer, on_error, env);
	return 0;
}

void pol_bus_pause(struct pol_env *env)
{
	env->draining = 1;
	if (env->consumer != NULL && !env->paused) {
		env->paused = 1;
		sw_bus_consumer_pause(env->consumer);
	}
}

int pol_bus_idle(const struct pol_env *env)
{
	return env->nitems == 0 && env->busy == 0 &&
	       (env->producer == NULL || sw_bus_producer_outq(env->producer) == 0);
}

void pol_bus_close(struct pol_env *env)
{
	if (env->consumer != NULL)
		sw_bus_consumer_close(env->consumer);
	if (env->producer != NULL)
		sw_bus_producer_flush(env->producer, 2000);
}

void pol_bus_free(struct pol_env *env)
{
	struct pol_item *it;

	if (env->consumer != NULL)
		sw_bus_consumer_destroy(env->consumer);
	env->consumer = NULL;
	if (env->producer != NULL)
		sw_bus_producer_destroy(env->producer);
	env->producer = NULL;
	if (env->flush_ev != NULL)
		event_free(env->flush_ev);
	env->flush_ev = NULL;
	env->nflushw = 0;
	while ((it = TAILQ_FIRST(&env->items)) != NULL) {
		TAILQ_REMOVE(&env->items, it, entry);
		free(it->topic);
		free(it);
	}
}
