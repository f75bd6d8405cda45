/*
 * replay.c: a re-run's credential requests, decided from the record.
 *
 * A re-run (`sagewai replay run`) gives its cli_agent_jit step the
 * original's credential.decided events; sandboxd answers a recorded deny
 * itself and sends a recorded allow here as a credential.requested whose
 * replay_of names the original decision's request_id. That claim comes
 * from the submitter (through the scheduler) and from sandboxd, so it is
 * checked against what the policy itself knows, never taken on its word:
 *
 *   - the run is a re-run: the scheduler announced it (run.submitted from
 *     sagewai-scheduler with replay_of, kept in reruns) for this tenant;
 *   - the original run holds, in our own requests table, a decided request
 *     with that request_id, of the same tenant, step, name and scope.
 *
 * Then the request is stored decided at once with by = 'replay', the
 * original's decision, rule and secret, and replay_of = the original
 * request: a recorded allow (by a rule or a person) is allowed again with
 * nobody asked, a recorded deny denied. Anything else is denied
 * "not_recorded: ..." (by replay): a replay claim never reaches a person
 * and never falls back to the rules. run.submitted and the request arrive
 * on different topics: a re-run not yet known is looked up again every
 * RP_RETRY_MS for up to RP_WAIT_MS before it is refused.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define RP_RETRY_MS 100
#define RP_WAIT_MS 3000

struct rp {
	struct pol_env *env;
	pol_done_cb done;
	void *opaque;
	struct sw_event_header h;
	json_t *ev;
	struct event *timer;
	int64_t until_ms; /* monotonic: stop waiting for run.submitted */
};

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

static int uuid_ok(const char *s)
{
	uint8_t u[16];

	return s != NULL && strlen(s) == 36 && sw_uuid_parse(s, u) == 0;
}

static void rp_free(struct rp *r)
{
	if (r->timer != NULL)
		event_free(r->timer);
	json_decref(r->ev);
	free(r);
}

static void stored_cb(PGresult *res, const char *err, void *opaque)
{
	struct rp *r = opaque;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "replayed credential request not recorded", "request_id",
		       jstr(r->ev, "request_id"), "error", err, NULL);
		r->done(r->opaque, 0);
		rp_free(r);
		return;
	}
	pol_publish_rows(r->env, res, 0);
	r->done(r->opaque, 1);
	rp_free(r);
}

/* Store the request decided (by replay; withdrawn when a withdrawal or the
 * run's end came first) and publish it. of: the original request when the
 * record held it, else "". */
static void rp_store(struct rp *r, const char *decision, const char *rule, const char *reason,
		     const char *secret, const char *of)
{
	static char sel[2048];
	struct sw_store_stmt st[2];
	const char *params[22];
	char now[24], rdl[24];
	json_t *ev = r->ev;

	snprintf(now, sizeof(now), "%" PRId64, sw_now_us());
	pol_request_params(&r->h, ev, rdl, params);
	params[15] = now;
	params[16] = rule;
	params[17] = decision;
	params[18] = reason;
	params[19] = strcmp(decision, "allow") == 0 ? secret : "";
	params[20] = of;
	/* identity seals an allow to it; a malformed one (denied) is not kept */
	params[21] = strlen(jstr(ev, "host_key")) == 64 ? jstr(ev, "host_key") : "";
	st[0].sql =
	    "INSERT INTO requests (request_id, tenant, run_id, step_id, trace_id, workflow,"
	    " step, cli_agent, sandbox_id, host, name, scope, reason_req, requester,"
	    " req_deadline_ms, received_us, state, rule, decision, by, reason, secret,"
	    " decided_us, replay_of, host_key)"
	    " SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9::uuid, $10, $11, $12, $13, $14,"
	    " $15::bigint, $16::bigint, 'decided', $17::text,"
	    " CASE WHEN w.r IS NULL THEN $18::text ELSE 'deny' END,"
	    " CASE WHEN w.r IS NULL THEN 'replay' ELSE 'withdrawn' END,"
	    " coalesce(w.r, $19::text), CASE WHEN w.r IS NULL THEN $20::text ELSE '' END,"
	    " $16::bigint, $21::text, $22::text"
	    " FROM (SELECT coalesce((SELECT reason FROM withdrawals WHERE request_id = $1::uuid"
	    "  AND tenant = $2), (SELECT 'the run finished before the request was decided'"
	    "  FROM finished_runs WHERE run_id = $3)) AS r) w"
	    " ON CONFLICT (request_id) DO NOTHING";
	st[0].nparams = 22;
	st[0].params = params;
	if (sel[0] == '\0')
		snprintf(sel, sizeof(sel),
			 "SELECT %s FROM requests WHERE request_id = $1::uuid AND tenant = $2",
			 pol_pub_cols);
	st[1].sql = sel;
	st[1].nparams = 2;
	st[1].params = params;
	/* keyed by the run, like its withdrawals (decide.c) */
	if (sw_store_tx_key(r->env->store, r->h.run_id, st, 2, stored_cb, r) == -1)
		stored_cb(NULL, "cannot queue", r);
}

static void rp_lookup(struct rp *r);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rp_lookup(arg);
}

/*
 * Row: the re-run's original (NULL: not a known re-run of this tenant),
 * then the claimed request's run, step, name, scope, decision, by, rule,
 * approver, secret (NULLs: no decided request of this tenant with that id).
 */
static void lookup_cb(PGresult *res, const char *err, void *opaque)
{
	struct rp *r = opaque;
	const char *of = jstr(r->ev, "replay_of"), *orig;
	char reason[POL_REASON_MAX];
	struct timeval tv = {0, RP_RETRY_MS * 1000};

	if (err != NULL || PQntuples(res) != 1) {
		sw_log(SW_LOG_ERROR, "replay record not readable: the request waits", "request_id",
		       jstr(r->ev, "request_id"), "error", err ? err : "no row", NULL);
		r->done(r->opaque, 0);
		rp_free(r);
		return;
	}
	if (PQgetisnull(res, 0, 0)) {
		if (sw_mono_ns() / 1000000 < r->until_ms &&
		    (r->timer != NULL ||
		     (r->timer = evtimer_new(r->env->base, retry_cb, r)) != NULL)) {
			evtimer_add(r->timer, &tv);
			return;
		}
		snprintf(reason, sizeof(reason),
			 "not_recorded: run %.80s is not a re-run (the scheduler announced no "
			 "original for it): a replayed decision is refused",
			 r->h.run_id);
		rp_store(r, "deny", "", reason, "", "");
		return;
	}
	orig = PQgetvalue(res, 0, 0);
	if (PQgetisnull(res, 0, 1) || strcmp(PQgetvalue(res, 0, 1), orig) != 0 ||
	    strcmp(PQgetvalue(res, 0, 2), jstr(r->ev, "step")) != 0 ||
	    strcmp(PQgetvalue(res, 0, 3), jstr(r->ev, "name")) != 0 ||
	    strcmp(PQgetvalue(res, 0, 4), jstr(r->ev, "scope")) != 0) {
		snprintf(reason, sizeof(reason),
			 "not_recorded: the original run %.40s holds no decision %.40s for step "
			 "%.64s, %.128s, scope %.128s",
			 orig, of, jstr(r->ev, "step"), jstr(r->ev, "name"), jstr(r->ev, "scope"));
		rp_store(r, "deny", "", reason, "", "");
		return;
	}
	snprintf(reason, sizeof(reason),
		 "replayed: the original run %.40s decided %s by %s%s%.64s%s%.80s (request %.40s)",
		 orig, PQgetvalue(res, 0, 5), PQgetvalue(res, 0, 6),
		 PQgetvalue(res, 0, 7)[0] ? " rule " : "", PQgetvalue(res, 0, 7),
		 PQgetvalue(res, 0, 8)[0] ? ", approver " : "", PQgetvalue(res, 0, 8), of);
	sw_metrics_counter_add(r->env->metrics, "sagewai_policy_replayed_total",
			       "Re-run requests given the original run's decision", 1);
	rp_store(r, PQgetvalue(res, 0, 5), PQgetvalue(res, 0, 7), reason, PQgetvalue(res, 0, 9),
		 of);
}

static void rp_lookup(struct rp *r)
{
	const char *params[3];

	params[0] = r->h.run_id;
	params[1] = r->h.tenant;
	params[2] = jstr(r->ev, "replay_of");
	if (sw_store_query_key(r->env->store, r->h.run_id,
			       "SELECT x.replay_of, o.run_id, o.step, o.name, o.scope, o.decision,"
			       " o.by, o.rule, o.approver, o.secret"
			       " FROM (SELECT 1) one"
			       " LEFT JOIN reruns x ON x.run_id = $1 AND x.tenant = $2"
			       " LEFT JOIN requests o ON o.request_id = $3::uuid AND o.tenant = $2"
			       "  AND o.state = 'decided'",
			       3, params, lookup_cb, r) == -1)
		lookup_cb(NULL, "cannot queue", r);
}

/* Why the request cannot be replayed as it is, or NULL. */
static const char *rp_check(json_t *ev)
{
	static const struct {
		const char *k;
		size_t max;
	} lim[] = {{"workflow", 256}, {"step", 256},	{"cli_agent", 64},  {"host", 256},
		   {"scope", 256},    {"reason", 1024}, {"requester", 512}, {NULL, 0}};
	size_t i;

	if (!uuid_ok(jstr(ev, "replay_of")))
		return "not_recorded: the replay claim names no request id";
	if (!pol_env_name_valid(jstr(ev, "name")))
		return "malformed request: the name is not an environment key "
		       "([A-Z_][A-Z0-9_]{0,127})";
	/* hex of 32 bytes, or none (then nothing is ever sealed for it) */
	if (strlen(jstr(ev, "host_key")) != 0 && strlen(jstr(ev, "host_key")) != 64)
		return "malformed request: host_key is not 32 bytes";
	for (i = 0; lim[i].k != NULL; i++)
		if (strlen(jstr(ev, lim[i].k)) > lim[i].max)
			return "malformed request: a field is longer than allowed";
	return NULL;
}

void pol_replay_requested(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
			  pol_done_cb done, void *opaque)
{
	struct rp *r = calloc(1, sizeof(*r));
	const char *why;

	if (r == NULL) {
		done(opaque, 0);
		return;
	}
	r->env = env;
	r->done = done;
	r->opaque = opaque;
	r->h = *h;
	r->ev = json_incref(ev);
	r->until_ms = sw_mono_ns() / 1000000 + RP_WAIT_MS;
	sw_metrics_counter_add(env->metrics, "sagewai_policy_requests_total",
			       "credential.requested handled", 1);
	if ((why = rp_check(ev)) != NULL) {
		rp_store(r, "deny", "", why, "", "");
		return;
	}
	rp_lookup(r);
}

/* ---- run.submitted: the re-runs ------------------------------------------------ */

struct rs {
	pol_done_cb done;
	void *opaque;
};

static void rerun_cb(PGresult *res, const char *err, void *opaque)
{
	struct rs *s = opaque;

	(void)res;
	if (err != NULL)
		sw_log(SW_LOG_ERROR, "re-run not recorded", "error", err, NULL);
	s->done(s->opaque, err == NULL);
	free(s);
}

void pol_run_submitted(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
		       pol_done_cb done, void *opaque)
{
	const char *of = jstr(ev, "replay_of"), *params[3];
	struct rs *s;

	/* only the scheduler's word makes a run a re-run */
	if (of[0] == '\0' || h->run_id[0] == '\0' || h->tenant[0] == '\0' ||
	    strcmp(h->producer, "sagewai-scheduler") != 0) {
		done(opaque, 1);
		return;
	}
	if (!uuid_ok(of) || strlen(h->run_id) > 64) {
		sw_log(SW_LOG_WARN, "run.submitted with a malformed replay_of ignored", "run_id",
		       h->run_id, NULL);
		done(opaque, 1);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		done(opaque, 0);
		return;
	}
	s->done = done;
	s->opaque = opaque;
	params[0] = h->run_id;
	params[1] = h->tenant;
	params[2] = of;
	if (sw_store_query_key(env->store, h->run_id,
			       "INSERT INTO reruns (run_id, tenant, replay_of) VALUES ($1, $2, $3)"
			       " ON CONFLICT DO NOTHING",
			       3, params, rerun_cb, s) == -1)
		rerun_cb(NULL, "cannot queue", s);
}
