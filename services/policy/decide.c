/*
 * decide.c: each credential request decided exactly once.
 *
 * The record is the requests row, keyed by request_id. Every transition
 * is one guarded statement (or transaction) that also stamps the time of
 * the event it owes (pending_us, decided_us), so the row is its own
 * outbox:
 *
 *   requested   INSERT ... ON CONFLICT DO NOTHING: a request consumed twice
 *               is decided once (the first evaluation stands). A request
 *               already withdrawn (withdrawals) or of a finished run
 *               (finished_runs) is stored decided (deny, withdrawn). The
 *               rules come from memory (compiled at the last read) when
 *               that read's versions are still cached, and the INSERT then
 *               also requires PostgreSQL to hold those versions: one round
 *               trip per request; a policy applied meanwhile voids the
 *               insert, and the request is decided again from a fresh read.
 *   human       UPDATE ... WHERE approval_id = $1 AND state = 'pending'
 *   deadline    UPDATE ... WHERE state = 'pending' AND deadline_ms <= now
 *   withdrawn   a tombstone, then UPDATE ... WHERE request_id = $1 AND
 *               state = 'pending' (credential.withdrawn, run.finished)
 *
 * Concurrent transitions of one row serialise on its row lock, and the
 * loser's WHERE no longer matches, so exactly one decision is stored. A
 * request and its withdrawal go through the same PostgreSQL connection
 * (keyed by run id) in consumption order, so a tombstone is always seen.
 *
 * After a commit the statement's rows are published: credential.pending
 * then credential.decided, each with an event id derived from request_id
 * and type (a re-publication is the same event) and the stored time;
 * delivered, the row's *_sent flag is set. The tick (every POL_TICK_MS,
 * sooner for a deadline due earlier) denies what passed its deadline,
 * re-publishes rows whose events were not marked sent (a crash between
 * commit and produce, a failed delivery; everything at start), reads the
 * next deadline and, while streams are open, the approvals other
 * instances changed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "policy.h"

#define SWEEP_LIMIT "500"

struct tc_entry {
	struct tc_entry *next;
	char tenant[128];
	int version;
	struct pol_policy *p;
};

/* What one read of a tenant's policies found (pget_cb): the versions of
 * _system's and the tenant's (-1: none) and the tenant's name. A request of
 * the tenant is decided from the compiled policies in memory when they are
 * still these versions, and stored only if PostgreSQL still holds them at
 * the insert (rq_store's guard): one round trip, never a stale decision. */
struct tc_snap {
	struct tc_snap *next;
	char tenant[128];
	int sysv, tenv;
	char name[256];
};

struct pol_tcache {
	struct tc_entry *head;
	struct tc_snap *snaps;
};

static struct tc_snap *snap_find(struct pol_env *env, const char *tenant)
{
	struct tc_snap *sn;

	for (sn = env->tcache->snaps; sn != NULL; sn = sn->next)
		if (strcmp(sn->tenant, tenant) == 0)
			return sn;
	return NULL;
}

/* Remember (or forget, sysv < -1) what a read of tenant's policies found. */
static void snap_note(struct pol_env *env, const char *tenant, int sysv, int tenv,
		      const char *name)
{
	struct tc_snap *sn = snap_find(env, tenant);

	if (sn == NULL) {
		if (sysv < -1 || (sn = calloc(1, sizeof(*sn))) == NULL)
			return;
		snprintf(sn->tenant, sizeof(sn->tenant), "%s", tenant);
		sn->next = env->tcache->snaps;
		env->tcache->snaps = sn;
	}
	sn->sysv = sysv;
	sn->tenv = tenv;
	snprintf(sn->name, sizeof(sn->name), "%s", name);
}

/* ---- compiled policies ------------------------------------------------------ */

static struct tc_entry *tc_find(struct pol_env *env, const char *tenant)
{
	struct tc_entry *e;

	for (e = env->tcache->head; e != NULL; e = e->next)
		if (strcmp(e->tenant, tenant) == 0)
			return e;
	return NULL;
}

/* The policy of row i (tenant, version, yaml or NULL when the cached
 * version is current, filename), compiled or from the cache. NULL when
 * the cache changed since the query was sent (ask again). A stored policy
 * that no longer parses (a newer check) counts as empty: it denies all. */
static const struct pol_policy *tc_row(struct pol_env *env, PGresult *res, int i)
{
	const char *tenant = PQgetvalue(res, i, 0);
	int version = atoi(PQgetvalue(res, i, 1));
	struct tc_entry *e = tc_find(env, tenant);
	struct pol_policy *p;
	char err[512];

	if (PQgetisnull(res, i, 2))
		return e != NULL && e->version == version ? e->p : NULL;
	if (e != NULL && e->version == version)
		return e->p;
	p = pol_parse(PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2),
		      PQgetvalue(res, i, 3), strcmp(tenant, POL_SYSTEM) == 0, err, sizeof(err));
	if (p == NULL) {
		sw_log(SW_LOG_ERROR, "stored policy does not load: it denies everything", "tenant",
		       tenant, "error", err, NULL);
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return NULL;
	}
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL) {
			pol_free(p);
			return NULL;
		}
		snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
		e->next = env->tcache->head;
		env->tcache->head = e;
	}
	pol_free(e->p);
	e->p = p;
	e->version = version;
	return p;
}

struct pget {
	struct pol_env *env;
	char tenant[128];
	char key[128];
	pol_policies_cb cb;
	void *opaque;
};

static void pget_cb(PGresult *res, const char *err, void *opaque)
{
	struct pget *g = opaque;
	struct pol_env *env = g->env;
	const struct pol_policy *sys = NULL, *ten = NULL, *p;
	const char *name = "";
	int i, sysv = -1, tenv = -1;

	if (err != NULL) {
		g->cb(env, NULL, NULL, "", err, g->opaque);
		free(g);
		return;
	}
	for (i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 0)) { /* the tenant-name row */
			name = PQgetvalue(res, i, 4);
			continue;
		}
		if ((p = tc_row(env, res, i)) == NULL) {
			/* another read replaced the cached version meanwhile */
			pol_policies_get(env, g->tenant, g->key[0] ? g->key : NULL, g->cb,
					 g->opaque);
			free(g);
			return;
		}
		if (strcmp(PQgetvalue(res, i, 0), POL_SYSTEM) == 0) {
			sys = p;
			sysv = atoi(PQgetvalue(res, i, 1));
		} else {
			ten = p;
			tenv = atoi(PQgetvalue(res, i, 1));
		}
	}
	snap_note(env, g->tenant, sysv, tenv, name);
	g->cb(env, sys, ten, name, NULL, g->opaque);
	free(g);
}

void pol_policies_get(struct pol_env *env, const char *tenant, const char *key,
		      pol_policies_cb cb, void *opaque)
{
	struct pget *g = calloc(1, sizeof(*g));
	struct tc_entry *es, *et;
	char vs[16], vt[16];
	const char *params[4];

	if (g == NULL) {
		cb(env, NULL, NULL, "", "out of memory", opaque);
		return;
	}
	g->env = env;
	g->cb = cb;
	g->opaque = opaque;
	snprintf(g->tenant, sizeof(g->tenant), "%s", tenant);
	snprintf(g->key, sizeof(g->key), "%s", key ? key : "");
	es = tc_find(env, POL_SYSTEM);
	et = tc_find(env, tenant);
	snprintf(vs, sizeof(vs), "%d", es ? es->version : -1);
	snprintf(vt, sizeof(vt), "%d", et ? et->version : -1);
	params[0] = POL_SYSTEM;
	params[1] = vs;
	params[2] = g->tenant;
	params[3] = vt;
	/* the text only when the cached version is not the current one */
	if (sw_store_query_key(env->store, key,
			       "SELECT tenant, version, CASE WHEN version = CASE tenant WHEN $1"
			       " THEN $2::int ELSE $4::int END THEN NULL ELSE yaml END, filename,"
			       " '' FROM policies WHERE tenant IN ($1, $3)"
			       " UNION ALL SELECT NULL, NULL, NULL, NULL,"
			       " coalesce((SELECT name FROM tenants WHERE id = $3), '')",
			       4, params, pget_cb, g) == -1) {
		free(g);
		cb(env, NULL, NULL, "", "cannot queue", opaque);
	}
}

const struct pol_rule *pol_evaluate(const struct pol_policy *sys, const struct pol_policy *ten,
				    const struct pol_query *q, const char **level)
{
	const struct pol_rule *r;

	if ((r = pol_match(sys, q)) != NULL) {
		*level = "system";
		return r;
	}
	*level = "tenant";
	return pol_match(ten, q);
}

/* ---- publishing (the outbox) ------------------------------------------------ */

/* The event id of request_id's event of type: BLAKE2b-128 of both, as a
 * UUID (version 8): every publication of it is the same event. */
static void event_id(const char *request_id, const char *type, char out[SW_UUID_STRLEN])
{
	uint8_t h[16];
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const uint8_t *)"sagewai-policy/", 15);
	crypto_generichash_update(&st, (const uint8_t *)request_id, strlen(request_id));
	crypto_generichash_update(&st, (const uint8_t *)"/", 1);
	crypto_generichash_update(&st, (const uint8_t *)type, strlen(type));
	crypto_generichash_final(&st, h, sizeof(h));
	h[6] = (uint8_t)((h[6] & 0x0f) | 0x80);
	h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
	sw_uuid_format(h, out);
}

struct sent {
	struct pol_env *env;
	char key[SW_UUID_STRLEN + 4]; /* request_id + "/p" or "/d" */
};

static void marked_cb(PGresult *res, const char *err, void *opaque)
{
	struct sent *s = opaque;
	struct pol_env *env = s->env;

	(void)res;
	if (err != NULL)
		sw_log(SW_LOG_WARN, "event delivered but not marked sent (it may go out again)",
		       "key", s->key, "error", err, NULL);
	else
		/* a sweep read before this mark committed may still hold the row
		 * as unsent: remembered a while, it is not sent twice */
		json_object_set_new(env->marked, s->key, json_integer(sw_mono_ms()));
	json_object_del(env->inflight, s->key);
	free(s);
}

/* Forget the marks older than POL_MARKED_MS: every read of the rows since
 * sees them marked. */
static void marked_prune(struct pol_env *env)
{
	int64_t now = sw_mono_ms();
	const char *k;
	json_t *v;
	void *tmp;

	json_object_foreach_safe(env->marked, tmp, k, v)
	{
		if (now - json_integer_value(v) > POL_MARKED_MS)
			json_object_del(env->marked, k);
	}
}

static void delivered_cb(void *arg, const char *err, void *opaque)
{
	struct pol_env *env = arg;
	struct sent *s = opaque;
	const char *params[1];
	struct sw_store_stmt st[2];
	char rid[SW_UUID_STRLEN];
	int pending = s->key[SW_UUID_STRLEN] == 'p';

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "credential event not delivered (the sweep sends it again)",
		       "key", s->key, "error", err, NULL);
		json_object_del(env->inflight, s->key);
		free(s);
		return;
	}
	memcpy(rid, s->key, SW_UUID_STRLEN - 1);
	rid[SW_UUID_STRLEN - 1] = '\0';
	params[0] = rid;
	/* not waiting for the disk: a mark lost in a crash only sends the same
	 * event (same id) again, and the commits that decide do not queue
	 * behind this one's flush */
	st[0].sql = "SET LOCAL synchronous_commit TO off";
	st[0].nparams = 0;
	st[0].params = NULL;
	st[1].sql = pending ? "UPDATE requests SET pending_sent = true WHERE request_id = $1::uuid"
			    : "UPDATE requests SET decided_sent = true WHERE request_id = $1::uuid";
	st[1].nparams = 1;
	st[1].params = params;
	if (sw_store_tx(env->store, st, 2, marked_cb, s) == -1)
		marked_cb(NULL, "cannot queue", s);
}

/* Produce the pending or decided event of row i, unless it is in flight. */
static void publish_one(struct pol_env *env, PGresult *res, int i, int pending)
{
	struct sw_event_header h;
	struct sent *s;
	json_t *f;
	const char *rid = PQgetvalue(res, i, 0);
	const char *type = pending ? "credential.pending" : "credential.decided";
	char err[256];

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		sw_log(SW_LOG_ERROR, "cannot publish", "error", "out of memory", NULL);
		return;
	}
	s->env = env;
	snprintf(s->key, sizeof(s->key), "%s/%c", rid, pending ? 'p' : 'd');
	if (json_object_get(env->inflight, s->key) != NULL ||
	    json_object_get(env->marked, s->key) != NULL) {
		free(s);
		return;
	}
	sw_event_header_init(&h, type, POL_PRODUCER);
	event_id(rid, type, h.event_id);
	h.time_us = strtoll(PQgetvalue(res, i, pending ? 16 : 17), NULL, 10);
	snprintf(h.tenant, sizeof(h.tenant), "%s", PQgetvalue(res, i, 1));
	snprintf(h.run_id, sizeof(h.run_id), "%s", PQgetvalue(res, i, 2));
	snprintf(h.step_id, sizeof(h.step_id), "%s", PQgetvalue(res, i, 3));
	snprintf(h.trace_id, sizeof(h.trace_id), "%s", PQgetvalue(res, i, 4));
	if (pending)
		f = json_pack("{s:s, s:s, s:s, s:I}", "request_id", rid, "approval_id",
			      PQgetvalue(res, i, 8), "rule", PQgetvalue(res, i, 9), "deadline_ms",
			      (json_int_t)strtoll(PQgetvalue(res, i, 10), NULL, 10));
	else
		f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s}",
			      "request_id", rid, "sandbox_id", PQgetvalue(res, i, 5), "step",
			      PQgetvalue(res, i, 6), "name", PQgetvalue(res, i, 7), "decision",
			      PQgetvalue(res, i, 11), "by", PQgetvalue(res, i, 12), "rule",
			      PQgetvalue(res, i, 9), "approver", PQgetvalue(res, i, 13), "reason",
			      sw_json_string_lossy(PQgetvalue(res, i, 14)), "secret",
			      PQgetvalue(res, i, 15), "host_key", PQgetvalue(res, i, 22));
	if (!pending && f != NULL)
		json_object_set_new(f, "replay_of", json_string(PQgetvalue(res, i, 21)));
	json_object_set_new(env->inflight, s->key, json_true());
	if (sw_svcbus_publish(&env->bus, type, SW_TOPIC_CREDENTIALS, h.run_id, &h, f, delivered_cb,
			      s, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "cannot produce a credential event (the sweep tries again)",
		       "type", type, "request_id", rid, "error", err, NULL);
		json_object_del(env->inflight, s->key);
		free(s);
		return;
	}
	if (!pending)
		sw_log(SW_LOG_INFO, "credential request decided", "request_id", rid, "tenant",
		       h.tenant, "run_id", h.run_id, "name", PQgetvalue(res, i, 7), "decision",
		       PQgetvalue(res, i, 11), "by", PQgetvalue(res, i, 12), "rule",
		       PQgetvalue(res, i, 9), "approver", PQgetvalue(res, i, 13), NULL);
}

void pol_publish_rows(struct pol_env *env, PGresult *res, int push)
{
	int i, n = res != NULL ? PQntuples(res) : 0;
	struct sw_buf b;

	sw_buf_init(&b, 0);
	for (i = 0; i < n; i++) {
		int has_pending = strcmp(PQgetvalue(res, i, 16), "0") != 0;
		int has_decided = strcmp(PQgetvalue(res, i, 17), "0") != 0;

		/* pending before decided: one key, one partition, in order */
		if (has_pending && strcmp(PQgetvalue(res, i, 18), "t") != 0)
			publish_one(env, res, i, 1);
		if (has_decided && strcmp(PQgetvalue(res, i, 19), "t") != 0)
			publish_one(env, res, i, 0);
		if (push && PQgetvalue(res, i, 8)[0] != '\0') {
			sw_buf_puts(&b, b.len ? "," : "[");
			sw_buf_puts(&b, PQgetvalue(res, i, 20));
		}
		if (has_pending && !has_decided)
			pol_deadline_note(env, strtoll(PQgetvalue(res, i, 10), NULL, 10));
	}
	if (b.len > 0 && sw_buf_puts(&b, "]") == 0)
		pol_sse_push(env, b.p);
	sw_buf_free(&b);
}

/* ---- credential.requested -------------------------------------------------- */

struct rq {
	struct pol_env *env;
	pol_done_cb done;
	void *opaque;
	struct sw_event_header h;
	json_t *ev;
	char malformed[200]; /* why, when the request is refused unread */
	int fast;	     /* decided from memory: stored only if still current */
	char sysv[16], tenv[16], tname[256]; /* the versions and name it assumed */
};

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

void pol_request_params(const struct sw_event_header *h, json_t *ev, char rdl[24],
			const char **params)
{
	snprintf(rdl, 24, "%lld",
		 (long long)json_integer_value(json_object_get(ev, "deadline_ms")));
	params[0] = jstr(ev, "request_id");
	params[1] = h->tenant;
	params[2] = h->run_id;
	params[3] = h->step_id;
	params[4] = h->trace_id;
	params[5] = jstr(ev, "workflow");
	params[6] = jstr(ev, "step");
	params[7] = jstr(ev, "cli_agent");
	params[8] = jstr(ev, "sandbox_id");
	params[9] = jstr(ev, "host");
	params[10] = jstr(ev, "name");
	params[11] = jstr(ev, "scope");
	params[12] = jstr(ev, "reason");
	params[13] = jstr(ev, "requester");
	params[14] = rdl;
}

static void rq_free(struct rq *r)
{
	json_decref(r->ev);
	free(r);
}

static void rq_policies_cb(struct pol_env *env, const struct pol_policy *sys,
			   const struct pol_policy *ten, const char *tenant_name, const char *err,
			   void *opaque);

static void stored_cb(PGresult *res, const char *err, void *opaque)
{
	struct rq *r = opaque;

	if (err != NULL) {
		/* nothing was decided: the offset stays, the request comes back */
		sw_log(SW_LOG_ERROR, "credential request not recorded", "request_id",
		       jstr(r->ev, "request_id"), "error", err, NULL);
		r->done(r->opaque, 0);
		rq_free(r);
		return;
	}
	if (r->fast && PQntuples(res) == 0) {
		/* the policies changed since they were read: read them again */
		sw_metrics_counter_add(r->env->metrics, "sagewai_policy_stale_decisions_total",
				       "Decisions from memory not stored: the policy had changed",
				       1);
		snap_note(r->env, r->h.tenant, -2, -2, "");
		r->fast = 0;
		pol_policies_get(r->env, r->h.tenant, r->h.run_id, rq_policies_cb, r);
		return;
	}
	pol_publish_rows(r->env, res, 1);
	r->done(r->opaque, 1);
	rq_free(r);
}

static void rq_store(struct rq *r, const char *state, const char *rule, int64_t deadline_ms,
		     const char *decision, const char *by, const char *reason, const char *secret)
{
	struct pol_env *env = r->env;
	int64_t now_us = sw_now_us();
	char now[24], rdl[24], dl[24], aid[SW_UUID_STRLEN];
	const char *params[28];
	struct sw_store_stmt st[2];
	json_t *ev = r->ev;
	int pending = strcmp(state, "pending") == 0;

	snprintf(now, sizeof(now), "%" PRId64, now_us);
	snprintf(dl, sizeof(dl), "%" PRId64, deadline_ms);
	sw_uuid_v7_str(aid);
	pol_request_params(&r->h, ev, rdl, params);
	params[15] = now;
	params[16] = state;
	params[17] = pending ? aid : NULL;
	params[18] = rule;
	params[19] = pending ? dl : NULL;
	params[20] = decision;
	params[21] = by;
	params[22] = reason;
	params[23] = secret;
	params[24] = r->malformed[0] == '\0' ? jstr(ev, "host_key") : "";
	/* from memory: only while PostgreSQL holds the same policies */
	params[25] = r->fast ? r->sysv : NULL;
	params[26] = r->fast ? r->tenv : NULL;
	params[27] = r->fast ? r->tname : NULL;
	st[0].sql =
		"INSERT INTO requests (request_id, tenant, run_id, step_id, trace_id, workflow,"
		" step, cli_agent, sandbox_id, host, name, scope, reason_req, requester,"
		" req_deadline_ms, received_us, state, approval_id, rule, deadline_ms, decision,"
		" by, reason, secret, pending_us, decided_us, host_key)"
		" SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9::uuid, $10, $11, $12, $13, $14,"
		" $15::bigint, $16::bigint,"
		" CASE WHEN w.r IS NULL THEN $17::text ELSE 'decided' END,"
		" CASE WHEN w.r IS NULL THEN $18::uuid END, $19::text,"
		" CASE WHEN w.r IS NULL THEN $20::bigint END,"
		" CASE WHEN w.r IS NULL THEN $21::text ELSE 'deny' END,"
		" CASE WHEN w.r IS NULL THEN $22::text ELSE 'withdrawn' END,"
		" coalesce(w.r, $23::text), CASE WHEN w.r IS NULL THEN $24::text ELSE '' END,"
		" CASE WHEN w.r IS NULL AND $17::text = 'pending' THEN $16::bigint END,"
		" CASE WHEN w.r IS NULL AND $17::text = 'pending' THEN NULL ELSE $16::bigint END,"
		" $25"
		" FROM (SELECT coalesce((SELECT reason FROM withdrawals WHERE request_id = $1::uuid"
		"  AND tenant = $2), (SELECT 'the run finished before the request was decided'"
		"  FROM finished_runs WHERE run_id = $3)) AS r) w"
		" WHERE $26::int IS NULL OR"
		" (coalesce((SELECT version FROM policies WHERE tenant = '" POL_SYSTEM "'), -1)"
		"   = $26::int"
		"  AND coalesce((SELECT version FROM policies WHERE tenant = $2), -1) = $27::int"
		"  AND coalesce((SELECT name FROM tenants WHERE id = $2), '') = $28::text)"
		" ON CONFLICT (request_id) DO NOTHING";
	st[0].nparams = 28;
	st[0].params = params;
	/* the row as stored (this or an earlier consumption's): its events */
	{
		static char sql[2048];

		if (sql[0] == '\0')
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM requests WHERE request_id = $1::uuid AND tenant = $2",
				 pol_pub_cols);
		st[1].sql = sql;
	}
	st[1].nparams = 2;
	st[1].params = params;
	if (sw_store_tx_key(env->store, r->h.run_id, st, 2, stored_cb, r) == -1)
		stored_cb(NULL, "cannot queue", r);
}

static void rq_policies_cb(struct pol_env *env, const struct pol_policy *sys,
			   const struct pol_policy *ten, const char *tenant_name, const char *err,
			   void *opaque)
{
	struct rq *r = opaque;
	const struct pol_rule *rule;
	struct pol_query q;
	const char *level;
	char reason[POL_REASON_MAX + 64];

	(void)env;
	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "policy not readable: the request waits", "tenant",
		       r->h.tenant, "error", err, NULL);
		r->done(r->opaque, 0);
		rq_free(r);
		return;
	}
	if (r->malformed[0] != '\0') {
		rq_store(r, "decided", "", 0, "deny", "no_rule", r->malformed, "");
		return;
	}
	memset(&q, 0, sizeof(q));
	q.tenant = r->h.tenant;
	q.tenant_name = tenant_name;
	q.name = jstr(r->ev, "name");
	q.scope = jstr(r->ev, "scope");
	q.workflow = jstr(r->ev, "workflow");
	q.step = jstr(r->ev, "step");
	q.cli_agent = jstr(r->ev, "cli_agent");
	rule = pol_evaluate(sys, ten, &q, &level);
	if (rule == NULL) {
		rq_store(r, "decided", "", 0, "deny", "no_rule",
			 ten == NULL ? "no policy is applied for the tenant: denied"
				     : "no rule of the policy matches: denied",
			 "");
		return;
	}
	snprintf(reason, sizeof(reason), "%s", rule->reason[0] ? rule->reason : "");
	if (reason[0] == '\0')
		snprintf(reason, sizeof(reason), "%s by rule %s (%s policy)",
			 rule->effect == POL_ALLOW ? "allowed" : rule->effect == POL_DENY
								     ? "denied"
								     : "asked",
			 rule->id, level);
	if (rule->effect == POL_ASK) {
		rq_store(r, "pending", rule->id, sw_now_us() / 1000 + rule->deadline_ms, NULL,
			 NULL, reason, rule->secret);
		return;
	}
	rq_store(r, "decided", rule->id, 0, rule->effect == POL_ALLOW ? "allow" : "deny", "rule",
		 reason, rule->effect == POL_ALLOW ? rule->secret : "");
}

static int uuid_ok(const char *s)
{
	uint8_t u[16];

	return s != NULL && strlen(s) == 36 && sw_uuid_parse(s, u) == 0;
}

/* Why the request is malformed, or NULL. */
static const char *rq_check(struct rq *r)
{
	static const struct {
		const char *k;
		size_t max;
	} lim[] = {{"workflow", 256}, {"step", 256},   {"cli_agent", 64},  {"host", 256},
		   {"scope", 256},    {"reason", 1024}, {"requester", 512}, {NULL, 0}};
	size_t i;

	if (!pol_env_name_valid(jstr(r->ev, "name")))
		return "the name is not an environment key ([A-Z_][A-Z0-9_]{0,127})";
	/* hex of 32 bytes, or none (then nothing is ever sealed for it) */
	if (strlen(jstr(r->ev, "host_key")) != 0 && strlen(jstr(r->ev, "host_key")) != 64)
		return "host_key is not 32 bytes";
	for (i = 0; lim[i].k != NULL; i++)
		if (strlen(jstr(r->ev, lim[i].k)) > lim[i].max)
			return "a field is longer than allowed";
	return NULL;
}

/* Decide r from the compiled policies in memory when the last read of its
 * tenant's found the versions still cached (rq_store guards the insert). 1
 * when under way. */
static int rq_fast(struct pol_env *env, struct rq *r)
{
	struct tc_snap *sn = snap_find(env, r->h.tenant);
	struct tc_entry *es = tc_find(env, POL_SYSTEM), *et = tc_find(env, r->h.tenant);

	if (sn == NULL || sn->sysv < -1 || (sn->sysv >= 0) != (es != NULL) ||
	    (es != NULL && es->version != sn->sysv) || (sn->tenv >= 0) != (et != NULL) ||
	    (et != NULL && et->version != sn->tenv))
		return 0;
	r->fast = 1;
	snprintf(r->sysv, sizeof(r->sysv), "%d", sn->sysv);
	snprintf(r->tenv, sizeof(r->tenv), "%d", sn->tenv);
	snprintf(r->tname, sizeof(r->tname), "%s", sn->name);
	rq_policies_cb(env, es != NULL ? es->p : NULL, et != NULL ? et->p : NULL, r->tname, NULL,
		       r);
	return 1;
}

void pol_requested(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
		   pol_done_cb done, void *opaque)
{
	struct rq *r;
	const char *why;

	if (!uuid_ok(jstr(ev, "request_id")) || !uuid_ok(jstr(ev, "sandbox_id")) ||
	    h->tenant[0] == '\0' || h->run_id[0] == '\0') {
		/* no answer could name it: dropped, logged for the operator */
		sw_log(SW_LOG_WARN, "credential.requested without request id, sandbox, tenant or run"
		       " ignored", "run_id", h->run_id, NULL);
		done(opaque, 1);
		return;
	}
	if (json_string_length(json_object_get(ev, "replay_of")) > 0) {
		/* a re-run's: from the record only (replay.c) */
		pol_replay_requested(env, ev, h, done, opaque);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		done(opaque, 0);
		return;
	}
	r->env = env;
	r->done = done;
	r->opaque = opaque;
	r->h = *h;
	r->ev = json_incref(ev);
	if ((why = rq_check(r)) != NULL)
		snprintf(r->malformed, sizeof(r->malformed), "malformed request: %s", why);
	sw_metrics_counter_add(env->metrics, "sagewai_policy_requests_total",
			       "credential.requested handled", 1);
	if (rq_fast(env, r))
		return;
	pol_policies_get(env, h->tenant, h->run_id, rq_policies_cb, r);
}

/* ---- withdrawals --------------------------------------------------------------- */

struct wd {
	struct pol_env *env;
	pol_done_cb done;
	void *opaque;
	int lazy; /* the commit may not have waited for the disk */
};

static void wd_cb(PGresult *res, const char *err, void *opaque)
{
	struct wd *w = opaque;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "withdrawal not recorded", "error", err, NULL);
		w->done(w->opaque, 0);
		free(w);
		return;
	}
	pol_publish_rows(w->env, res, 1);
	w->done(w->opaque, w->lazy ? POL_DONE_LAZY : 1);
	free(w);
}

static char *withdraw_sql(const char *where)
{
	char *s = NULL;

	if (asprintf(&s,
		     "UPDATE requests SET state = 'decided', decision = 'deny', by = 'withdrawn',"
		     " reason = $2, decided_us = $3::bigint, secret = ''"
		     " WHERE %s AND state = 'pending'"
		     " RETURNING %s",
		     where, pol_pub_cols) == -1)
		return NULL;
	return s;
}

void pol_withdrawn(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
		   pol_done_cb done, void *opaque)
{
	static char *sql;
	struct wd *w;
	struct sw_store_stmt st[2];
	const char *params[4], *p0[3];
	char now[24], reason[600];

	if (!uuid_ok(jstr(ev, "request_id")) || h->tenant[0] == '\0') {
		sw_log(SW_LOG_WARN, "credential.withdrawn without request id or tenant ignored",
		       NULL);
		done(opaque, 1);
		return;
	}
	if (sql == NULL && (sql = withdraw_sql("request_id = $1::uuid AND tenant = $4")) == NULL) {
		done(opaque, 0);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		done(opaque, 0);
		return;
	}
	w->env = env;
	w->done = done;
	w->opaque = opaque;
	snprintf(now, sizeof(now), "%" PRId64, sw_now_us());
	snprintf(reason, sizeof(reason), "withdrawn by the requester's host: %.512s",
		 jstr(ev, "reason"));
	params[0] = jstr(ev, "request_id");
	params[1] = reason;
	params[2] = now;
	params[3] = h->tenant;
	p0[0] = params[0];
	p0[1] = h->tenant;
	p0[2] = reason;
	st[0].sql = "INSERT INTO withdrawals (request_id, tenant, reason)"
		    " VALUES ($1::uuid, $2, $3) ON CONFLICT DO NOTHING";
	st[0].nparams = 3;
	st[0].params = p0;
	st[1].sql = sql;
	st[1].nparams = 4;
	st[1].params = params;
	if (sw_store_tx_key(env->store, h->run_id[0] ? h->run_id : NULL, st, 2, wd_cb, w) == -1)
		wd_cb(NULL, "cannot queue", w);
}

/*
 * run.finished, gathered. The runs that ended in one consumed batch are
 * recorded together: per PostgreSQL connection, one transaction for all of
 * its runs (the connection each run's own statements take, so what was
 * queued for a run before stays before). Any other message flushes the
 * gathered ones first (pol_finished_flush), so consumption order holds:
 * a request after its run's end finds the run finished.
 *
 * The common case, a run that asked for nothing still pending, records
 * only that the run finished: that row is rebuilt from run.finished
 * itself, whose offset waits for the WAL flush (POL_DONE_LAZY), so its
 * commit need not wait for the disk. A withdrawal is a decision, sent on
 * from its row: a transaction with one stays durable.
 */
struct fin {
	char run_id[sizeof(((struct sw_event_header *)0)->run_id)];
	size_t conn; /* the store connection of its run (sw_store_key_conn) */
	pol_done_cb done;
	void *opaque;
};

struct fin_tx {
	struct pol_env *env;
	struct fin *f;
	size_t n;
	char *runs; /* the run ids' array literal */
};

#define POL_FIN_MAX 1024 /* gathered at most; more flushes at once */

static void fin_cb(PGresult *res, const char *err, void *opaque)
{
	struct fin_tx *t = opaque;
	size_t i;

	if (err != NULL)
		sw_log(SW_LOG_ERROR, "finished runs not recorded", "error", err, NULL);
	else
		pol_publish_rows(t->env, res, 1);
	for (i = 0; i < t->n; i++)
		t->f[i].done(t->f[i].opaque, err != NULL ? 0 : POL_DONE_LAZY);
	free(t->runs);
	free(t->f);
	free(t);
}

/* One transaction for the gathered runs f[0..n) (all of one connection;
 * f is the transaction's now). */
static void fin_send(struct pol_env *env, struct fin *f, size_t n)
{
	static char *sql;
	struct fin_tx *t = calloc(1, sizeof(*t));
	const char **ids = calloc(n, sizeof(*ids));
	struct sw_store_stmt st[3];
	const char *params[3];
	char now[24];
	size_t i;

	if (sql == NULL)
		sql = withdraw_sql("run_id = ANY ($1::text[])");
	for (i = 0; ids != NULL && i < n; i++)
		ids[i] = f[i].run_id;
	if (t == NULL || ids == NULL || sql == NULL ||
	    (t->runs = sw_store_array(ids, n)) == NULL) {
		free(ids);
		if (t != NULL)
			free(t->runs);
		free(t);
		for (i = 0; i < n; i++)
			f[i].done(f[i].opaque, 0);
		free(f);
		return;
	}
	free(ids);
	t->env = env;
	t->f = f;
	t->n = n;
	snprintf(now, sizeof(now), "%" PRId64, sw_now_us());
	params[0] = t->runs;
	params[1] = "the run finished before anyone decided";
	params[2] = now;
	st[0].sql = "INSERT INTO finished_runs (run_id) SELECT unnest($1::text[])"
		    " ON CONFLICT DO NOTHING";
	st[0].nparams = 1;
	st[0].params = params;
	st[1].sql =
	    "SELECT set_config('synchronous_commit', 'off', true) WHERE NOT EXISTS"
	    " (SELECT 1 FROM requests WHERE run_id = ANY ($1::text[]) AND state = 'pending')";
	st[1].nparams = 1;
	st[1].params = params;
	st[2].sql = sql;
	st[2].nparams = 3;
	st[2].params = params;
	if (sw_store_tx_key(env->store, f[0].run_id, st, 3, fin_cb, t) == -1)
		fin_cb(NULL, "cannot queue", t);
}

void pol_finished_flush(struct pol_env *env)
{
	size_t nconn = sw_store_pool_size(env->store), i, k, n;
	struct fin *all = env->fin, *f;

	if (env->nfin == 0)
		return;
	env->fin = NULL;
	n = env->nfin;
	env->nfin = env->fin_cap = 0;
	for (k = 0; k < nconn; k++) {
		size_t m = 0;

		for (i = 0; i < n; i++)
			m += all[i].conn == k;
		if (m == 0)
			continue;
		if ((f = calloc(m, sizeof(*f))) == NULL) {
			for (i = 0; i < n; i++)
				if (all[i].conn == k)
					all[i].done(all[i].opaque, 0);
			continue;
		}
		for (i = 0, m = 0; i < n; i++)
			if (all[i].conn == k)
				f[m++] = all[i];
		sw_metrics_counter_add(env->metrics, "sagewai_policy_finished_batches_total",
				       "Transactions that recorded finished runs.", 1);
		fin_send(env, f, m);
	}
	free(all);
}

static void fin_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pol_finished_flush(arg);
}

void pol_run_finished(struct pol_env *env, const struct sw_event_header *h, pol_done_cb done,
		      void *opaque)
{
	struct fin *f;

	if (h->run_id[0] == '\0' || strcmp(h->producer, "sagewai-scheduler") != 0) {
		done(opaque, 1);
		return;
	}
	if (env->fin_ev == NULL &&
	    (env->fin_ev = event_new(env->base, -1, 0, fin_flush_cb, env)) == NULL) {
		done(opaque, 0);
		return;
	}
	if (env->nfin == env->fin_cap) {
		size_t cap = env->fin_cap ? env->fin_cap * 2 : 64;

		if ((f = realloc(env->fin, cap * sizeof(*f))) == NULL) {
			done(opaque, 0);
			return;
		}
		env->fin = f;
		env->fin_cap = cap;
	}
	f = &env->fin[env->nfin++];
	snprintf(f->run_id, sizeof(f->run_id), "%s", h->run_id);
	f->conn = sw_store_key_conn(env->store, f->run_id);
	f->done = done;
	f->opaque = opaque;
	/* after the rest of the consumed batch, in one go */
	if (env->nfin >= POL_FIN_MAX)
		pol_finished_flush(env);
	else
		event_active(env->fin_ev, EV_TIMEOUT, 0);
}

/* ---- the tick: deadlines, the outbox sweep, the streams' poll ---------------- */

static void tick_arm(struct pol_env *env)
{
	int64_t now = sw_now_us() / 1000, ms = POL_TICK_MS;
	struct timeval tv;

	if (env->tick == NULL)
		return;
	if (env->next_deadline_ms > 0 && env->next_deadline_ms - now < ms)
		ms = env->next_deadline_ms - now;
	if (ms < 5)
		ms = 5;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	evtimer_add(env->tick, &tv);
}

void pol_deadline_note(struct pol_env *env, int64_t deadline_ms)
{
	if (deadline_ms <= 0)
		return;
	if (env->next_deadline_ms == 0 || deadline_ms < env->next_deadline_ms) {
		env->next_deadline_ms = deadline_ms;
		if (!env->ticking)
			tick_arm(env);
	}
}

static void tick_done(struct pol_env *env)
{
	env->ticking = 0;
	tick_arm(env);
}

static void poll_cb(PGresult *res, const char *err, void *opaque)
{
	struct pol_env *env = opaque;

	if (err == NULL && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "[]") != 0)
		pol_sse_push(env, PQgetvalue(res, 0, 0));
	tick_done(env);
}

static void next_cb(PGresult *res, const char *err, void *opaque)
{
	struct pol_env *env = opaque;
	char since[24];
	const char *params[1];

	if (err == NULL && PQntuples(res) == 1)
		env->next_deadline_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (!pol_sse_active(env)) {
		env->poll_since_us = sw_now_us();
		tick_done(env);
		return;
	}
	/* changes by other instances (ours were pushed already; a repeat is
	 * harmless: the page keeps one row per approval) */
	snprintf(since, sizeof(since), "%" PRId64, env->poll_since_us - 1000000);
	env->poll_since_us = sw_now_us();
	params[0] = since;
	if (sw_store_query(env->store,
			   "SELECT coalesce(json_agg(" POL_APPROVAL_JSON "), '[]')::text"
			   " FROM requests WHERE approval_id IS NOT NULL"
			   " AND greatest(received_us, coalesce(decided_us, 0)) > $1::bigint",
			   1, params, poll_cb, env) == -1)
		tick_done(env);
}

static void sweep_cb(PGresult *res, const char *err, void *opaque)
{
	struct pol_env *env = opaque;

	if (err != NULL)
		sw_log(SW_LOG_WARN, "outbox sweep failed", "error", err, NULL);
	else
		pol_publish_rows(env, res, 0);
	if (sw_store_query(env->store,
			   "SELECT coalesce(min(deadline_ms), 0) FROM requests WHERE state = 'pending'",
			   0, NULL, next_cb, env) == -1)
		tick_done(env);
}

static void expired_cb(PGresult *res, const char *err, void *opaque)
{
	struct pol_env *env = opaque;
	static char sql[2048];
	char age[24];
	const char *params[1];

	if (err != NULL)
		sw_log(SW_LOG_WARN, "deadline check failed", "error", err, NULL);
	else
		pol_publish_rows(env, res, 1);
	if (sql[0] == '\0')
		snprintf(sql, sizeof(sql),
			 "SELECT %s FROM requests WHERE ((pending_us IS NOT NULL AND NOT pending_sent)"
			 " OR (decided_us IS NOT NULL AND NOT decided_sent))"
			 " AND greatest(coalesce(pending_us, 0), coalesce(decided_us, 0)) < $1::bigint"
			 " ORDER BY received_us LIMIT " SWEEP_LIMIT,
			 pol_pub_cols);
	/* at start every unsent row; then those older than the age (a younger
	 * one is still on its way from the instance that committed it) */
	snprintf(age, sizeof(age), "%" PRId64,
		 (int64_t)(env->running > 1 ? sw_now_us() - POL_SWEEP_AGE_US : sw_now_us() + 1));
	env->running = 2;
	params[0] = age;
	if (sw_store_query(env->store, sql, 1, params, sweep_cb, env) == -1)
		tick_done(env);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pol_env *env = arg;
	static char sql[2048];
	char now_us[24], now_ms[24];
	const char *params[2];
	int64_t now = sw_now_us();

	(void)fd;
	(void)what;
	if (env->ticking || sw_service_halted(env->svc))
		return;
	env->ticking = 1;
	marked_prune(env);
	if (sql[0] == '\0')
		snprintf(sql, sizeof(sql),
			 "UPDATE requests SET state = 'decided', decision = 'deny', by = 'deadline',"
			 " reason = 'nobody decided before the deadline', decided_us = $1::bigint,"
			 " secret = ''"
			 " WHERE state = 'pending' AND deadline_ms <= $2::bigint RETURNING %s",
			 pol_pub_cols);
	snprintf(now_us, sizeof(now_us), "%" PRId64, now);
	snprintf(now_ms, sizeof(now_ms), "%" PRId64, now / 1000);
	params[0] = now_us;
	params[1] = now_ms;
	if (sw_store_query(env->store, sql, 2, params, expired_cb, env) == -1)
		tick_done(env);
}

int pol_decide_start(struct pol_env *env, char *errstr, size_t errlen)
{
	struct timeval now = {0, 0};

	if ((env->tcache = calloc(1, sizeof(*env->tcache))) == NULL ||
	    (env->inflight = json_object()) == NULL || (env->marked = json_object()) == NULL ||
	    (env->tick = evtimer_new(env->base, tick_cb, env)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	env->poll_since_us = sw_now_us();
	evtimer_add(env->tick, &now); /* at once: deadlines and unsent events of before */
	return 0;
}

void pol_decide_stop(struct pol_env *env)
{
	struct tc_entry *e, *n;

	if (env->tick != NULL)
		event_free(env->tick);
	env->tick = NULL;
	/* run.finished gathered and not sent: not committed, read again */
	if (env->fin_ev != NULL)
		event_free(env->fin_ev);
	env->fin_ev = NULL;
	free(env->fin);
	env->fin = NULL;
	env->nfin = env->fin_cap = 0;
	if (env->tcache != NULL) {
		struct tc_snap *sn, *sn_next;

		for (e = env->tcache->head; e != NULL; e = n) {
			n = e->next;
			pol_free(e->p);
			free(e);
		}
		for (sn = env->tcache->snaps; sn != NULL; sn = sn_next) {
			sn_next = sn->next;
			free(sn);
		}
	}
	free(env->tcache);
	env->tcache = NULL;
	json_decref(env->inflight);
	env->inflight = NULL;
	json_decref(env->marked);
	env->marked = NULL;
}
