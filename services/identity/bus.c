/*
 * bus.c: the identity service on Kafka.
 *
 *   producer   idempotent; every event of ours goes through id_publish.
 *              The answers to resolve requests (identity.resolved, each
 *              identity.denied) go to sagewai.identity.replies, a topic
 *              only requesters and the audit service read: an answer wakes
 *              no reader of the requests (this service, sandbox hosts)
 *   consumer   group sagewai-identity (SAGEWAI_GROUP_ID) on sagewai.identity,
 *              sagewai.tenants and sagewai.credentials:
 *              identity.resolve_requested and identity.seal_requested are
 *              answered, tenant, key and user events are applied
 *              (tenants.c), credential.decided (allow) is sealed for its
 *              sandbox and answered like a seal request; other decodable
 *              events of sagewai.identity (ours) are skipped; a message of
 *              sagewai.identity that does not decode goes to
 *              sagewai.deadletter with the reason
 *   tail       every partition of sagewai.identity from the end, on every
 *              instance: secret.* and profile.* events drop the cache
 *              entries of their scope (this instance's own too)
 *
 * A consumed message's offset is stored only once its effect is durable:
 * the answer (and each identity.denied) delivered, the dead letter
 * delivered, the tenant event committed. Messages are handled side by
 * side and settle in consumption order, so a kill -9 mid-resolution
 * redelivers the request at restart and it is answered again (the
 * resolution row is keyed by request id; the requester matches answers by
 * request id and takes the first).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity.h"

/* A consumed message (sw_svcbus.h) and what its answer needs. */
struct id_item {
	struct sw_svcbus_item base; /* first */
	struct id_env *env;
	struct sw_event_header h;
	json_t *answer; /* identity.resolved fields, until the resolution is stored */
	char *record;	/* an ok resolution's steps (JSON text), written once answered */
	char *denied;	/* and its denials (JSON text; NULL: none) */
	char rid[SW_UUID_STRLEN]; /* the resolve request's id */
	struct timespec t0; /* a resolve request taken in hand */
};

static void item_clear(struct sw_svcbus_item *base)
{
	struct id_item *it = (struct id_item *)base;

	json_decref(it->answer);
	free(it->record);
	free(it->denied);
}

static void item_release(struct id_item *it)
{
	sw_svcbus_release(&it->base);
}

/* A reply of item it was delivered: it may settle. */
static void reply_sent(void *arg, const char *err, void *opaque)
{
	struct id_env *env = arg;
	struct id_item *it = opaque;

	if (err != NULL) {
		/* nothing may be committed past it: stop; the request comes back */
		sw_service_fatal(env->svc, "identity reply delivery failed", err);
		return;
	}
	item_release(it);
}

/* A header for an answer to h: tenant, run and step copied. */
static void answer_header(struct sw_event_header *out, const struct sw_event_header *h,
			  const char *type)
{
	sw_event_header_init(out, type, ID_PRODUCER);
	snprintf(out->tenant, sizeof(out->tenant), "%s", h->tenant);
	snprintf(out->run_id, sizeof(out->run_id), "%s", h->run_id);
	snprintf(out->step_id, sizeof(out->step_id), "%s", h->step_id);
	snprintf(out->trace_id, sizeof(out->trace_id), "%s", h->trace_id);
}

static void publish_or_die(struct id_env *env, struct id_item *it, const char *type,
			   const char *topic, const struct sw_event_header *h, json_t *fields,
			   sw_svcbus_sent_cb sent)
{
	char err[256];

	it->base.pending++;
	if (sw_svcbus_publish(&env->bus, type, topic, it->h.run_id, h, fields, sent, it, err,
			      sizeof(err)) == -1) {
		it->base.pending--;
		sw_log(SW_LOG_ERROR, "cannot produce an answer", "type", type, "error", err, NULL);
		sw_service_fatal(env->svc, "identity answer not produced", err);
	}
}

/* ---- identity.resolve_requested -------------------------------------------- */

/* The resolution's record is written once its answer is delivered, not
 * before it nor beside it: a seal looks for it only once the run is stored
 * and its step dispatched, and waits a little for it (resolve.c), so the
 * answer neither waits on the disk nor shares the cores with PostgreSQL on
 * its way to the requester. The request's offset waits for both. A record
 * that fails makes the step's seal fail closed (not_allowed), never the
 * reverse.
 *
 * Records are written in batches, one INSERT at a time: those of the
 * answers delivered while a batch is being written go together in the
 * next. One statement per request on the pool's connections queued the
 * input checks of the next requests behind the records of the last ones
 * (each connection runs its units in order), and with 1,024 runs in
 * flight some submits waited past their identity timeout
 * (docs/BENCHMARKS.md, "A cached plan that read every run; the floor of
 * our parts"). */
static const char records_sql[] =
    "INSERT INTO resolutions (run_id, step, request_id, tenant, keys, denied)"
    " SELECT r->>'run_id', e->>'step', (r->>'rid')::uuid, r->>'tenant', e->'keys',"
    "  coalesce((SELECT jsonb_agg(d) FROM jsonb_array_elements((r->>'den')::jsonb) d"
    "   WHERE d->>'step' = e->>'step'), '[]'::jsonb)"
    " FROM jsonb_array_elements($1::jsonb) r, jsonb_array_elements((r->>'rec')::jsonb) e"
    " ON CONFLICT DO NOTHING";

static void records_flush(struct id_env *env);

/* The batch in flight was written (err NULL) or not: its items settle. */
static void records_cb(PGresult *res, const char *err, void *opaque)
{
	struct id_env *env = opaque;

	(void)res;
	for (size_t i = 0; i < env->rec_nflight; i++) {
		struct id_item *it = env->rec_flight[i];

		if (err != NULL)
			sw_log(SW_LOG_ERROR, "resolution not recorded: its seals will be refused",
			       "run_id", it->h.run_id, "error", err, NULL);
		item_release(it); /* the record */
	}
	free(env->rec_flight);
	env->rec_flight = NULL;
	env->rec_nflight = 0;
	records_flush(env);
}

/* No batch in flight: the waiting records go, as one INSERT. */
static void records_flush(struct id_env *env)
{
	struct sw_store_stmt st[2];
	const char *params[1];
	json_t *all;
	char *text = NULL;
	int oom = 0;

	if (env->rec_nflight > 0 || env->rec_nwait == 0)
		return;
	env->rec_flight = env->rec_wait;
	env->rec_nflight = env->rec_nwait;
	env->rec_wait = NULL;
	env->rec_nwait = env->rec_capwait = 0;
	if ((all = json_array()) == NULL)
		oom = 1;
	for (size_t i = 0; !oom && i < env->rec_nflight; i++) {
		struct id_item *it = env->rec_flight[i];

		oom = json_array_append_new(
			  all, json_pack("{s:s, s:s, s:s, s:s, s:s}", "run_id", it->h.run_id,
					 "rid", it->rid, "tenant", it->h.tenant, "rec", it->record,
					 "den", it->denied != NULL ? it->denied : "[]")) == -1;
	}
	if (!oom)
		oom = (text = json_dumps(all, JSON_COMPACT)) == NULL;
	json_decref(all);
	if (oom) {
		records_cb(NULL, "out of memory", env);
		return;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_identity_record_batches_total",
			       "INSERTs of resolution records (each holds those waiting)", 1);
	sw_metrics_counter_add(env->metrics, "sagewai_identity_records_total",
			       "resolution records written in those batches",
			       (double)env->rec_nflight);
	params[0] = text;
	st[0].sql = "SET LOCAL synchronous_commit TO off";
	st[0].nparams = 0;
	st[0].params = NULL;
	/* the denials too: a credential granted later at run time for a key
	 * the step's ACL refuses is not_allowed (resolve.c) */
	st[1].sql = records_sql;
	st[1].nparams = 1;
	st[1].params = params;
	if (sw_store_tx(env->store, st, 2, records_cb, env) == -1)
		records_cb(NULL, "cannot queue", env);
	free(text);
}

/* The answer of it was delivered: its record joins the next batch (when
 * ok), and it settles once that is written. */
static void resolved_sent(void *arg, const char *err, void *opaque)
{
	struct id_env *env = arg;
	struct id_item *it = opaque;

	if (err != NULL || it->record == NULL) {
		reply_sent(arg, err, it);
		return;
	}
	if (env->rec_nwait == env->rec_capwait) {
		size_t cap = env->rec_capwait ? env->rec_capwait * 2 : 64;
		struct id_item **v = realloc(env->rec_wait, cap * sizeof(*v));

		if (v == NULL) {
			sw_log(SW_LOG_ERROR, "resolution not recorded: its seals will be refused",
			       "run_id", it->h.run_id, "error", "out of memory", NULL);
			item_release(it); /* the answer */
			return;
		}
		env->rec_wait = v;
		env->rec_capwait = cap;
	}
	it->base.pending++; /* the record */
	env->rec_wait[env->rec_nwait++] = it;
	records_flush(env);
	item_release(it); /* the answer */
}

/* Count (name) a request taken in hand more than a second after it was
 * made: requesters give up after seconds (the scheduler's
 * SAGEWAI_IDENTITY_TIMEOUT_MS), and this tells a wait on the way here from
 * one in this service. */
static void late(struct id_env *env, const struct sw_event_header *h, const char *name,
		 const char *help)
{
	if (h->time_us > 0 && sw_now_us() - h->time_us > 1000000)
		sw_metrics_counter_add(env->metrics, name, help, 1);
}

static void send_resolved(struct id_env *env, struct id_item *it)
{
	struct sw_event_header h;
	struct timespec t1;
	double took;
	json_t *d;
	size_t i;

	/* the service's own work per resolution: request taken in hand to
	 * answer handed to the producer; the Kafka hops and the record (written
	 * after) not (bench/identity reads it) */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	took = (double)(t1.tv_sec - it->t0.tv_sec) + (double)(t1.tv_nsec - it->t0.tv_nsec) / 1e9;
	sw_metrics_counter_add(env->metrics, "sagewai_identity_resolve_seconds_sum",
			       "time from a resolve request taken in hand to its answer produced",
			       took);
	sw_metrics_counter_add(env->metrics, "sagewai_identity_resolve_seconds_count",
			       "resolutions timed in sagewai_identity_resolve_seconds_sum", 1);
	if (took > 1.0)
		sw_metrics_counter_add(env->metrics, "sagewai_identity_resolve_slow_total",
				       "resolutions that took this service more than a second", 1);
	answer_header(&h, &it->h, "identity.resolved");
	h.step_id[0] = '\0';
	/* identity.resolved's denials carry no level (identity.denied does) */
	json_array_foreach(json_object_get(it->answer, "denied"), i, d)
		json_object_del(d, "level");
	publish_or_die(env, it, "identity.resolved", SW_TOPIC_IDENTITY_REPLIES, &h,
		       json_incref(it->answer), resolved_sent);
	json_decref(it->answer);
	it->answer = NULL;
	item_release(it); /* the resolve itself */
}

static void resolved_cb(struct id_env *env, json_t *answer, json_t *stored, void *opaque)
{
	struct id_item *it = opaque;
	struct sw_event_header h;
	json_t *d, *dn;
	size_t i;

	it->answer = json_deep_copy(answer);
	/* one identity.denied per denial */
	json_array_foreach(json_object_get(answer, "denied"), i, d) {
		answer_header(&h, &it->h, "identity.denied");
		h.step_id[0] = '\0';
		publish_or_die(env, it, "identity.denied", SW_TOPIC_IDENTITY_REPLIES, &h,
			       json_pack("{s:s, s:O, s:O, s:O, s:O, s:O}", "request_id",
					 json_string_value(json_object_get(answer, "request_id")),
					 "step", json_object_get(d, "step"), "env",
					 json_object_get(d, "env"), "secret",
					 json_object_get(d, "secret"), "level",
					 json_object_get(d, "level"), "reason",
					 json_object_get(d, "reason")),
			       reply_sent);
	}
	snprintf(it->rid, sizeof(it->rid), "%s",
		 json_string_value(json_object_get(answer, "request_id")));
	dn = json_object_get(answer, "denied");
	if (json_is_true(json_object_get(answer, "ok")) && stored != NULL &&
	    ((it->record = json_dumps(stored, JSON_COMPACT)) == NULL ||
	     (json_array_size(dn) > 0 && (it->denied = json_dumps(dn, JSON_COMPACT)) == NULL))) {
		free(it->record);
		it->record = NULL;
		sw_log(SW_LOG_ERROR, "resolution not recorded: its seals will be refused",
		       "run_id", it->h.run_id, "error", "out of memory", NULL);
	}
	send_resolved(env, it);
}

/* The answer carries the request id whatever the outcome. */
static void resolved_add_id(json_t *answer, const char *rid)
{
	json_object_set_new(answer, "request_id", json_string(rid));
}

/* ---- identity.seal_requested ----------------------------------------------- */

static void sealed_cb(struct id_env *env, json_t *fields, void *opaque)
{
	struct id_item *it = opaque;
	struct sw_event_header h;

	answer_header(&h, &it->h, "identity.sealed");
	if (!json_is_true(json_object_get(fields, "ok")))
		sw_log(SW_LOG_WARN, "seal refused", "run_id", it->h.run_id, "code",
		       json_string_value(json_object_get(fields, "code")), "error",
		       json_string_value(json_object_get(fields, "error")), NULL);
	sw_metrics_counter_add(env->metrics, "sagewai_identity_seals_total",
			       "identity.seal_requested handled", 1);
	publish_or_die(env, it, "identity.sealed", SW_TOPIC_IDENTITY_SEALED, &h,
		       json_incref(fields), reply_sent);
	item_release(it);
}

/* ---- the consumer ------------------------------------------------------------ */

static void tenant_done(void *opaque, int ok)
{
	(void)ok;
	item_release(opaque);
}

/* Answer-with-id wrapper: resolve answers need the request id inside. */
struct rwrap {
	struct id_item *it;
	char rid[SW_UUID_STRLEN];
};

static void resolved_wrap(struct id_env *env, json_t *answer, json_t *stored, void *opaque)
{
	struct rwrap *w = opaque;

	resolved_add_id(answer, w->rid);
	resolved_cb(env, answer, stored, w->it);
	free(w);
}

static int uuid_ok(const char *s)
{
	uint8_t u[16];

	return s != NULL && strlen(s) == 36 && sw_uuid_parse(s, u) == 0;
}

/* ---- credential.decided ----------------------------------------------------- */

/* An allow decision is sealed at once, for its sandbox and host (resolve.c):
 * the decision is the grant, and the seal's answer (identity.sealed, with
 * the credential request's id) goes straight to the requesting host. A
 * denial needs nothing. The decision's offset is stored once the answer is
 * delivered: a kill -9 before that seals it again (the host takes the
 * first answer). */
static void on_decided(struct id_env *env, struct id_item *it, json_t *ev)
{
	const char *decision = json_string_value(json_object_get(ev, "decision"));

	if (decision == NULL || strcmp(decision, "allow") != 0)
		return;
	if (!uuid_ok(json_string_value(json_object_get(ev, "request_id")))) {
		/* no answer could name it */
		sw_log(SW_LOG_WARN, "ignored a credential.decided without a request id",
		       "event_id", it->h.event_id, NULL);
		return;
	}
	it->base.pending++;
	sw_metrics_counter_add(env->metrics, "sagewai_identity_decision_seals_total",
			       "allow credential.decided sealed (or refused)", 1);
	id_seal_decided(env, &it->h, ev, sealed_cb, it);
}

static void ended_done(void *opaque, int ok)
{
	struct id_item *it = opaque;

	if (!ok) {
		sw_service_fatal(it->env->svc, "minted tokens of an ended step not recorded",
				 "see the error above");
		return;
	}
	item_release(it);
}

static void handle(void *arg, struct sw_svcbus_item *base, const struct sw_bus_msg *m)
{
	struct id_env *env = arg;
	struct id_item *it = (struct id_item *)base;
	char why[256];
	json_t *ev;

	it->env = env;
	if (m->value == NULL || m->len == 0) {
		if (strcmp(m->topic, SW_TOPIC_IDENTITY) == 0)
			sw_svcbus_deadletter(&it->base, m, "empty message");
		return;
	}
	if (strcmp(m->topic, SW_TOPIC_RUNS) == 0 || strcmp(m->topic, SW_TOPIC_STEPS) == 0) {
		/* with mint sources only: a step attempt or run over, its minted
		 * tokens revoked (mint.c); the header is enough */
		if (sw_event_decode_header(env->reg, m->value, m->len, &it->h, why,
					   sizeof(why)) == -1)
			return;
		if (strcmp(it->h.type, "step.finished") == 0 && it->h.step_id[0] != '\0') {
			it->base.pending++;
			id_mint_ended(env, it->h.run_id, it->h.step_id, ended_done, it);
		} else if (strcmp(it->h.type, "run.finished") == 0 &&
			   strcmp(it->h.producer, "sagewai-scheduler") == 0) {
			it->base.pending++;
			id_mint_ended(env, it->h.run_id, NULL, ended_done, it);
		}
		return;
	}
	ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why));
	if (ev == NULL || sw_event_decode_header(env->reg, m->value, m->len, &it->h, why,
						 sizeof(why)) == -1) {
		json_decref(ev);
		if (strcmp(m->topic, SW_TOPIC_IDENTITY) == 0)
			sw_svcbus_deadletter(&it->base, m, why);
		else
			sw_log(SW_LOG_WARN, "undecodable tenant event skipped", "reason", why, NULL);
		return;
	}
	if (strcmp(m->topic, SW_TOPIC_CREDENTIALS) == 0) {
		if (strcmp(it->h.type, "credential.decided") == 0)
			on_decided(env, it, ev);
	} else if (strcmp(m->topic, SW_TOPIC_TENANTS) == 0) {
		it->base.pending++;
		id_tenants_apply(env, ev, tenant_done, it);
	} else if ((strcmp(it->h.type, "identity.resolve_requested") == 0 ||
		    strcmp(it->h.type, "identity.seal_requested") == 0) &&
		   !uuid_ok(json_string_value(json_object_get(ev, "request_id")))) {
		/* no answer can name it: the requester's bug, kept for the operator */
		sw_svcbus_deadletter(&it->base, m, "request_id is not a UUID");
	} else if (strcmp(it->h.type, "identity.resolve_requested") == 0) {
		struct rwrap *w = calloc(1, sizeof(*w));
		struct id_resolve_in in;
		const char *rid = json_string_value(json_object_get(ev, "request_id"));

		if (w == NULL) {
			sw_service_fatal(env->svc, "resolve", "out of memory");
		} else {
			w->it = it;
			clock_gettime(CLOCK_MONOTONIC, &it->t0);
			late(env, &it->h, "sagewai_identity_resolve_late_total",
			     "resolve requests taken in hand more than a second after they "
			     "were made (the requester's clock)");
			snprintf(w->rid, sizeof(w->rid), "%s", rid ? rid : "");
			memset(&in, 0, sizeof(in));
			snprintf(in.tenant, sizeof(in.tenant), "%s", it->h.tenant);
			snprintf(in.run_id, sizeof(in.run_id), "%s", it->h.run_id);
			snprintf(in.request_id, sizeof(in.request_id), "%s", w->rid);
			snprintf(in.workflow, sizeof(in.workflow), "%s",
				 json_string_value(json_object_get(ev, "workflow")));
			snprintf(in.user, sizeof(in.user), "%s",
				 json_string_value(json_object_get(ev, "user")));
			in.steps = json_object_get(ev, "steps");
			in.input_macs = json_object_get(ev, "input_macs");
			in.pins = json_object_get(ev, "pins");
			it->base.pending++;
			sw_metrics_counter_add(env->metrics, "sagewai_identity_resolves_total",
					       "identity.resolve_requested handled", 1);
			id_resolve(env, &in, resolved_wrap, w);
		}
	} else if (strcmp(it->h.type, "identity.seal_requested") == 0) {
		it->base.pending++;
		id_seal(env, &it->h, ev, sealed_cb, it);
	}
	/* anything else on sagewai.identity is ours: not for us */
	json_decref(ev);
}

/* The tail: change events drop cache entries on every instance. */
static void on_tail(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct id_env *env = opaque;
	struct sw_event_header h;
	char why[128];
	size_t i;

	for (i = 0; i < n; i++) {
		if (msgs[i].value == NULL ||
		    sw_event_decode_header(env->reg, msgs[i].value, msgs[i].len, &h, why,
					   sizeof(why)) == -1)
			continue;
		if (strncmp(h.type, "secret.", 7) == 0 || strncmp(h.type, "profile.", 8) == 0)
			id_cache_drop(env, h.tenant[0] ? h.tenant : NULL);
	}
}

int id_bus_start(struct id_env *env, char *errstr, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_IDENTITY, SW_TOPIC_TENANTS,
					     SW_TOPIC_CREDENTIALS, NULL};
	/* with mint sources: the ends of steps and runs too (mint.c) */
	static const char *const mint_topics[] = {SW_TOPIC_IDENTITY, SW_TOPIC_TENANTS,
						  SW_TOPIC_CREDENTIALS, SW_TOPIC_RUNS,
						  SW_TOPIC_STEPS, NULL};
	static const char *const tail_topics[] = {SW_TOPIC_IDENTITY, NULL};
	const struct sw_svcbus_def def = {
	    .client_id = ID_PRODUCER,
	    /* every answer has a requester waiting on it, and answers are
	     * few: send each at once rather than batch for the library's 1 ms */
	    .producer_default = "linger.ms=0",
	    .group = env->group,
	    .topics = env->mints != NULL ? mint_topics : topics,
	    .tail_topics = tail_topics,
	    .max_inflight = ID_MAX_INFLIGHT,
	    .max_bytes = ID_MAX_INFLIGHT_BYTES,
	    .item_size = sizeof(struct id_item),
	    .handle = handle,
	    .item_clear = item_clear,
	    .tail = on_tail,
	};

	return sw_svcbus_start(&env->bus, env->svc, env->reg, &def, env, errstr, errlen);
}

int id_bus_idle(const struct id_env *env)
{
	return env->busy == 0 && sw_svcbus_idle(&env->bus);
}
