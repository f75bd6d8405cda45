/*
 * sagewai-policy: decides the credential requests of cli_agent_jit
 * sandboxes (docs/POLICY.md is the contract).
 *
 *   config.c    settings
 *   lang.c      the policy language: YAML (libyaml) to rules, the checks
 *               (FILE:LINE:COL errors, the allow-all refusal), evaluation
 *   store.c     PostgreSQL schema "policy": migrations and shared SQL
 *   decide.c    the record of each request and its transitions (requested,
 *               ask, human, deadline, withdrawn), each one statement or
 *               transaction; the outbox (the rows' unsent events) and the
 *               loop's timer (deadlines, outbox sweep, stream poll)
 *   bus.c       Kafka: the producer, the group consumer of
 *               sagewai.credentials, sagewai.runs and sagewai.tenants
 *   tenants.c   tenants and API keys learnt from sagewai.tenants
 *   replay.c    a re-run's requests decided from the original's record
 *   prune.c     old tombstones deleted in the background (retention)
 *   api.c       the HTTP API (auth, policies, approvals) and the page
 *   sse.c       GET /v1/approvals/stream
 *   web.c       the page's files (generated from web/ at build time)
 *
 * Everything runs on the loop; PostgreSQL is the record of every request
 * and decision, and an event is produced from its row (the outbox), so a
 * crash between a commit and a produce loses nothing.
 */
#ifndef POLICY_H
#define POLICY_H

#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "sw_auth.h"
#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_http.h"
#include "sw_prune.h"
#include "sw_service.h"
#include "sw_store.h"
#include "sw_svcbus.h"

#define POL_PRODUCER "sagewai-policy"
#define POL_GROUP "sagewai-policy"
#define POL_JIT_MODE "cli_agent_jit" /* the one mode whose steps may ask (docs/JIT.md) */
#define POL_SYSTEM "_system"	     /* the operator's policy, evaluated first */
#define POL_SINGLE_TENANT "default"
#define POL_MAX_BODY (256u << 10)    /* HTTP body cap: a policy file */
#define POL_MAX_RULES 1000
#define POL_MAX_APPROVERS 256
#define POL_GLOB_MAX 256
#define POL_REASON_MAX 512
#define POL_DEADLINE_DEFAULT_MS (10LL * 60 * 1000)
#define POL_DEADLINE_MAX_MS (24LL * 3600 * 1000) /* the longest an ask may wait */
#define POL_MAX_INFLIGHT 8192			 /* consumed messages in hand before pausing, */
#define POL_MAX_INFLIGHT_BYTES (32u << 20)	 /* or their bytes (sw_svcbus.h: for overload) */
#define POL_TICK_MS 1000	     /* deadline check, outbox sweep, stream poll */
#define POL_FLUSH_POLL_MS 50	     /* a lazy commit's offset: look at the WAL this often */
#define POL_SWEEP_AGE_US 2000000LL   /* an unsent event older than this is re-sent */
#define POL_MARKED_MS 60000	     /* a mark remembered: longer than any sweep read takes */
#define POL_RECENT 200		     /* decided approvals GET /v1/approvals shows */

enum pol_effect { POL_ALLOW, POL_DENY, POL_ASK };

/* One rule; a NULL glob matches anything. */
struct pol_rule {
	char id[80];	    /* its id:, else "FILE:LINE" */
	char *name, *scope, *workflow, *step, *cli_agent, *tenant;
	enum pol_effect effect;
	long long deadline_ms; /* ask only */
	char secret[64];       /* "" = the step's identity cascade */
	char reason[POL_REASON_MAX];
	int line;
	int allow_all;	       /* matches every name and scope (only with override) */
	char justification[POL_REASON_MAX];
};

struct pol_policy {
	struct pol_rule *rules;
	size_t nrules;
	char **approvers; /* user names whose keys may decide */
	size_t napprovers;
	char file[128];
};

/* What is asked (a credential.requested, or a test request). */
struct pol_query {
	const char *tenant, *tenant_name; /* id and name ("" if unknown) */
	const char *name, *scope, *workflow, *step, *cli_agent;
};

struct pol_tcache; /* compiled policies by tenant (decide.c) */
struct pol_stream;
LIST_HEAD(pol_streamq, pol_stream);

struct fin;
struct pol_env {
	struct sw_service *svc;
	const struct sw_config *cfg;
	char *const *envp;
	struct event_base *base;
	struct sw_metrics *metrics;
	struct sw_event_registry *reg;
	struct sw_store *store;
	struct sw_svcbus bus; /* Kafka (bus.c) */
	struct sw_http *http;

	/* settings (config.c) */
	int multi_tenant;
	char admin_token[512]; /* "" when none */
	char group[128];
	long long pg_pool;

	struct pol_tcache *tcache;
	struct event *tick;	      /* the loop's timer (decide.c) */
	int64_t next_deadline_ms;     /* earliest pending deadline known, 0: none */
	int ticking;		      /* a tick's queries are in flight */
	int64_t poll_since_us;	      /* streams: changes after this were sent */
	json_t *inflight;	      /* "request_id/type" keys produced, not yet marked */
	json_t *marked;		      /* keys marked sent lately: key -> when (ms) */

	struct sw_prune *prune; /* old tombstones deleted (prune.c); NULL: none */
	long long retention_s;	/* SAGEWAI_POLICY_RETENTION_S; 0: keep all */

	struct fin *fin; /* run.finished gathered (decide.c) */
	size_t nfin, fin_cap;
	struct event *fin_ev; /* their flush, after the consumed batch */

	size_t nflushw;		/* items whose offset waits for a WAL flush (bus.c) */
	struct event *flush_ev; /* the next look at the WAL's flush position */
	int flush_asking;	/* that query is in flight */
	struct pol_streamq streams;
	size_t nstreams;
	int running;
	size_t busy; /* HTTP requests in hand */
};

/* ---- config.c ------------------------------------------------------------ */
int pol_config_load(struct pol_env *env, char *errstr, size_t errlen);

/* ---- lang.c ------------------------------------------------------------- */
/* Parse and check a policy file (text of len bytes, named file in messages;
 * system: the operator's file, whose rules may match on tenant). NULL with
 * "FILE:LINE:COL: why" in errstr. */
struct pol_policy *pol_parse(const char *text, size_t len, const char *file, int system,
			     char *errstr, size_t errlen);
void pol_free(struct pol_policy *p);
/* The first rule of p matching q, or NULL. */
const struct pol_rule *pol_match(const struct pol_policy *p, const struct pol_query *q);
const char *pol_effect_name(enum pol_effect e);
/* The rules as JSON (for GET and the test route); new reference. */
json_t *pol_to_json(const struct pol_policy *p);
/* Is user one of p's approvers? */
int pol_is_approver(const struct pol_policy *p, const char *user);
/* The rules that carry the allow-all override, as [{rule, justification}]. */
json_t *pol_overrides(const struct pol_policy *p);
int pol_env_name_valid(const char *s);

/* ---- store.c ------------------------------------------------------------ */
extern const struct sw_migration pol_migrations[];
extern const size_t pol_nmigrations;
/* The columns decide.c publishes from, and the approval view (JSON). */
extern const char pol_pub_cols[];
#define POL_APPROVAL_JSON                                                                          \
	"json_build_object('id', approval_id, 'request_id', request_id, 'tenant', tenant,"        \
	" 'run_id', run_id, 'workflow', workflow, 'step', step, 'cli_agent', cli_agent,"          \
	" 'sandbox_id', sandbox_id, 'host', host, 'name', name, 'scope', scope,"                  \
	" 'request_reason', reason_req, 'requester', requester, 'rule', rule,"                    \
	" 'created_ms', received_us / 1000, 'deadline_ms', deadline_ms,"                          \
	" 'status', CASE WHEN state = 'pending' THEN 'pending' WHEN by = 'withdrawn'"             \
	"  THEN 'withdrawn' WHEN by = 'deadline' THEN 'expired' WHEN decision = 'allow'"          \
	"  THEN 'approved' ELSE 'denied' END,"                                                    \
	" 'decided_ms', decided_us / 1000, 'approver', approver, 'decision_reason',"              \
	" CASE WHEN state = 'pending' THEN '' ELSE reason END)"

/* ---- decide.c ----------------------------------------------------------- */
int pol_decide_start(struct pol_env *env, char *errstr, size_t errlen);
void pol_decide_stop(struct pol_env *env);
/* A decoded credential.requested / credential.withdrawn / run.finished:
 * done(opaque, ok) on the loop once its effect is committed; ok is
 * POL_DONE_LAZY when it was committed without waiting for the disk (its
 * offset then waits for the WAL to be flushed past it, bus.c). */
#define POL_DONE_LAZY 2
typedef void (*pol_done_cb)(void *opaque, int ok);
void pol_requested(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
		   pol_done_cb done, void *opaque);
void pol_withdrawn(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
		   pol_done_cb done, void *opaque);
/* The run.finished gathered so far, queued now (before any other message
 * of the bus is handled). */
void pol_finished_flush(struct pol_env *env);
void pol_run_finished(struct pol_env *env, const struct sw_event_header *h, pol_done_cb done,
		      void *opaque);
/* Publish the events of the rows of res (pol_pub_cols) not yet sent;
 * push: also send their approvals to the streams. */
void pol_publish_rows(struct pol_env *env, PGresult *res, int push);
/* The first POL_REQ_PARAMS parameters of an INSERT INTO requests: the
 * request as it came (h its header, ev its body; the strings are ev's,
 * rdl holds the client's deadline as text). */
#define POL_REQ_PARAMS 15
void pol_request_params(const struct sw_event_header *h, json_t *ev, char rdl[24],
			const char **params);
/* The compiled policies of _system and of tenant (cached by version; NULL
 * when none is applied) and the tenant's name ("" if unknown): cb on the
 * loop, err set when PostgreSQL failed or a stored policy no longer
 * parses. The policies stay valid until the next return to the loop. key
 * routes the query (sw_store_query_key; NULL: any connection). */
typedef void (*pol_policies_cb)(struct pol_env *env, const struct pol_policy *sys,
				const struct pol_policy *ten, const char *tenant_name,
				const char *err, void *opaque);
void pol_policies_get(struct pol_env *env, const char *tenant, const char *key,
		      pol_policies_cb cb, void *opaque);
/* The rule that fires for q: *level "system" or "tenant"; NULL: no rule. */
const struct pol_rule *pol_evaluate(const struct pol_policy *sys, const struct pol_policy *ten,
				    const struct pol_query *q, const char **level);
/* A deadline was set: make sure the timer fires by then. */
void pol_deadline_note(struct pol_env *env, int64_t deadline_ms);

/* ---- bus.c --------------------------------------------------------------- */
int pol_bus_start(struct pol_env *env, char *errstr, size_t errlen);
/* No message nor HTTP request in hand, nothing produced undelivered (the
 * rest: sw_svcbus.h on env->bus; events are produced with
 * sw_svcbus_publish). */
int pol_bus_idle(const struct pol_env *env);
void pol_bus_free(struct pol_env *env);

/* ---- replay.c ------------------------------------------------------------ */
/* A credential.requested with replay_of (a re-run's): decided from the
 * original run's recorded decision, never by a rule or a person. */
void pol_replay_requested(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
			  pol_done_cb done, void *opaque);
/* A run.submitted: a re-run (replay_of, from the scheduler) is recorded. */
void pol_run_submitted(struct pol_env *env, json_t *ev, const struct sw_event_header *h,
		       pol_done_cb done, void *opaque);

/* ---- prune.c ------------------------------------------------------------- */
int pol_prune_start(struct pol_env *env, char *errstr, size_t errlen);
void pol_prune_stop(struct pol_env *env);

/* ---- tenants.c ----------------------------------------------------------- */
void pol_tenants_apply(struct pol_env *env, json_t *ev, pol_done_cb done, void *opaque);

/* ---- api.c --------------------------------------------------------------- */
int pol_api_start(struct pol_env *env, char *errstr, size_t errlen);

/* ---- sse.c --------------------------------------------------------------- */
/* Open a stream on req for tenant ("" = every tenant: the admin). */
void pol_sse_open(struct pol_env *env, struct evhttp_request *req, const char *tenant);
/* Send these approvals (JSON text of an array of the approval view) to
 * the streams that may see them. */
void pol_sse_push(struct pol_env *env, const char *approvals_json);
int pol_sse_active(const struct pol_env *env);
void pol_sse_close_all(struct pol_env *env);

/* ---- web.c (generated) ---------------------------------------------------- */
struct pol_web_file {
	const char *path; /* "index.html" */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len;
};
extern const struct pol_web_file pol_web_files[];
extern const size_t pol_web_nfiles;

#endif
