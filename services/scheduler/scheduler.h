/*
 * sagewai-scheduler: workflows, runs and steps (PostgreSQL schema
 * "scheduler"), the HTTP API of docs/RUNS.md, the preview gate, retries,
 * timeouts, cancel, progress streams and tenancy.
 *
 * Every state change is one read and one transaction:
 *
 *   1. read a snapshot of the run (runs row, its rev, its steps, the
 *      workflow definition, whether the triggering event was processed);
 *   2. decide what changes (fsm.c, pure) and which rows and events that
 *      makes (apply.c);
 *   3. one transaction: bump_rev(run, rev) -- which raises SWREV when the
 *      run moved on meanwhile -- then the row updates, "processed" for a
 *      consumed event, and the events into the outbox (last statement,
 *      RETURNING their seq). Transitions ready at the same time (and
 *      submits) share one transaction and one WAL flush: the group commit
 *      of ops.c; a failed group is retried member by member. A mark
 *      (step.started, a no-op's processed row, outbox deletes) commits
 *      with synchronous_commit off (SCHED_LAZY_SQL).
 *
 * The store is a pool of connections (SAGEWAI_PG_POOL); an operation's read
 * goes to its run's connection (keyed by run id), so the reads of different
 * runs go side by side, and its transaction to the group commit (or, for a
 * mark or a member of a failed group, alone on the run's connection); an
 * operation's next read is queued only after its commit. A step.started whose
 * step.finished is already queued, or arrives within SCHED_STARTED_HOLD_MS,
 * is folded into the outcome's transition (no read, no transaction of its
 * own; see sched_ops_start).
 *
 * Within a process, operations on one run take turns (a per-run queue);
 * across processes a conflict (SWREV) or a duplicate starts again at 1, so
 * concurrent triggers on one run (a step outcome and its deadline, a
 * cancel, another scheduler instance) serialise on the run's rev, and a
 * transaction that sw_store resends after a reconnect although it had
 * committed fails its guard and re-reads a run that has moved on: nothing
 * applies twice. Several instances may share the database (tests: twin).
 * Where they need not: progress streams follow other instances' commits
 * only by polling (sse.c), and a young outbox row may be sent by two
 * relays (outbox.c) -- duplicates with one event id, which consumers drop.
 *
 * The outbox relay (outbox.c) produces the committed rows with the
 * idempotent producer and deletes them after their delivery report; rows
 * left over by a crash are resent at start with their event ids, which
 * consumers deduplicate. Consumed offsets (consume.c) are stored only after
 * the transaction of their message committed, in consumption order.
 *
 * Timers (timers.c) scan for due retries and passed deadlines every
 * SCHED_TICK_MS, one scan at a time. All state lives in PostgreSQL: a
 * restarted scheduler just carries on.
 */
#ifndef SCHEDULER_H
#define SCHEDULER_H

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
#include "sw_service.h"
#include "sw_store.h"
#include "sw_svcbus.h"
#include "sw_workflow.h"

#include "fsm.h"

#define SCHED_PRODUCER "sagewai-scheduler"
#define SCHED_TOPIC_TENANTS SW_TOPIC_TENANTS /* tenants and keys */
#define SCHED_SINGLE_TENANT "default"	     /* the tenant id of single_org mode */
#define SCHED_MAX_BODY (1u << 20)    /* any request body */
#define SCHED_MAX_INPUT (256u << 10) /* a run's input, serialised */
#define SCHED_REPLAY_STEPS_MAX 1000  /* steps of a re-run's replay field (a workflow's cap) */
#define SCHED_OUTPUT_MAX (1u << 20)  /* a step's output (told to the executor) */
#define SCHED_MAX_ERROR 4096	     /* error texts kept and published */
#define SCHED_MAX_BATCH 500	     /* consumed messages per batch */
#define SCHED_PG_POOL_DEFAULT 8	     /* PostgreSQL connections */
#define SCHED_MAX_INFLIGHT 8192	     /* consumed messages unsettled before pausing */
#define SCHED_TICK_MS 100	     /* due retries and deadlines */
#define SCHED_STARTED_HOLD_MS 50     /* a step.started waits this long for its outcome */
#define SCHED_SWEEP_MS 1000	     /* outbox rows left behind */
#define SCHED_SWEEP_AGE_MS 2000	     /* ... older than this */
#define SCHED_SSE_POLL_MS 2000	     /* default: re-read streamed runs anyway */
#define SCHED_RUNS_HOLD_MS 5	     /* default: run events held back (outbox.c) */
#define SCHED_SSE_KEEPALIVE_MS 15000
#define SCHED_WAIT_MAX_S 60	     /* POST /v1/runs?wait=S at most (the HTTP idle timeout) */
#define SCHED_SSE_LINGER_MS 500	     /* a run's end waits for its output this long */
#define SCHED_SSE_BUCKETS 4096	     /* hash chains of the streams by run id (sse.c) */
#define SCHED_SSE_GATHER "fetch.wait.max.ms=50" /* the streams' tail reader (sse.c) */
#define SCHED_MAX_TRIES 200	/* re-reads of one operation on conflicts */
#define SCHED_OP_EVENTS 4	/* events one transition may cause */
#define SCHED_GROUP_OPS 64	/* transitions of one group commit (<= SCHED_OUTBOX_MAX / 4) */
/* A group of at most this many reads the run a waiting submit is answered
 * with in its own transaction (ops.c); a larger one leaves the reads to
 * after its commit, on other connections, not lengthening it. */
#define SCHED_GROUP_ANSWERS 4
#define SCHED_GROUPS 1		/* group commits in flight at once (default) */
#define SCHED_LOCK_BUCKETS 4096 /* hash chains of runs with an operation */
#define SCHED_RUN_LIST 100
#define SCHED_NAME_MAX 64	   /* a user's name, NUL included */
#define SCHED_OUTBOX_MAX 256	   /* events of one administrative transaction */
#define SCHED_KEYS_MAX 200	   /* live keys of one tenant (its deletion revokes them at once) */
#define SCHED_IDENTITY_TIMEOUT_MS 5000 /* default wait for identity.resolved */
#define SCHED_SNAPC_DEFAULT 16384      /* runs' snapshots kept in memory (snapc.c) */
#define SCHED_SNAPC_BYTES (64u << 20)  /* ... and at most this much of their data */

/* First statement of a transaction that records only a mark (step.started,
 * a processed no-op, a delivered outbox row): its COMMIT returns without
 * waiting for the WAL to reach the disk. A crash may lose it, never a
 * later durable commit (the WAL is flushed in order). */
#define SCHED_LAZY_SQL "SET LOCAL synchronous_commit TO off"

/* Run and step states as stored (docs/RUNS.md). */
#define RUN_RUNNING "running"
#define RUN_SUCCEEDED "succeeded"
#define RUN_FAILED "failed"
#define RUN_CANCELLED "cancelled"

/* One event on its way to the outbox: encoded, with its id. */
struct sched_event {
	char id[SW_UUID_STRLEN];
	const char *topic;
	char key[SW_UUID_STRLEN];
	void *buf; /* single-object Avro message (owned) */
	size_t len;
};

/* Delivery-report opaque: what a produced message was. */
enum sched_dr_kind { SCHED_DR_OUTBOX = 1, SCHED_DR_DEADLETTER, SCHED_DR_IDENTITY };
struct sched_dr {
	enum sched_dr_kind kind;
};

/* Open-addressing set of outbox seqs (all > 0). */
struct sched_seqset {
	int64_t *slots;
	size_t cap, len;
};

struct sched_batch;
TAILQ_HEAD(sched_batchq, sched_batch);
struct sched_stream;
LIST_HEAD(sched_streams, sched_stream);
struct sched_tenant_cache;
struct sched_run_lock;
struct sched_defs;
struct sched_idreq;
LIST_HEAD(sched_idreqs, sched_idreq);

struct sched_env {
	struct sw_service *svc;	      /* the frame (libs/service) */
	const struct sw_config *cfg;  /* the frame's */
	char *const *envp;	      /* the frame's environment */
	struct event_base *base;      /* the frame's */
	struct sw_metrics *metrics;   /* the frame's */
	struct sw_http *http;	      /* the frame's */
	struct sw_event_registry *reg;
	struct sw_store *store;
	struct sw_bus_producer *producer;
	struct sw_bus_consumer *consumer;
	long long pg_pool;	      /* SAGEWAI_PG_POOL */
	long long groups;	      /* SAGEWAI_GROUP_COMMITS: in flight at once */
	int running;		      /* start succeeded */
	int halted;		      /* sw_service_fatal: take no more work */

	/* deployment */
	int multi_tenant;	 /* SAGEWAI_MODE=multi_tenant */
	int sealed_preview;	 /* SAGEWAI_SEALED_PREVIEW=1 */
	int offer_full;		 /* SAGEWAI_SANDBOX_NETWORKS offers network: full */
	long long run_max_s;	 /* SAGEWAI_RUN_MAX: a run's longest life, seconds */
	char run_max_text[24];	 /* ... as the timer scan's parameter */
	unsigned runnable;	 /* SAGEWAI_RUNNABLE_MODES as 1 << mode */
	char runnable_list[256]; /* the same, for messages */
	char admin_token[256];	 /* SAGEWAI_ADMIN_TOKEN; empty = no tenant admin */
	int identity;		 /* SAGEWAI_IDENTITY=1: sagewai-identity is deployed */
	int policy;		 /* SAGEWAI_POLICY=1: sagewai-policy is deployed */
	uint8_t mac_key[32];	 /* SAGEWAI_SECRET_MAC_KEY_FILE (with identity) */
	long long identity_timeout_ms; /* SAGEWAI_IDENTITY_TIMEOUT_MS */
	long long sse_poll_ms;	       /* SAGEWAI_SSE_POLL_MS */
	long long runs_hold_ms;	       /* SAGEWAI_RUNS_HOLD_MS (outbox.c) */
	struct relay_held *held_head, *held_tail;
	struct event *held_ev;

	/* the identity client (identity.c) */
	struct sw_bus_consumer *idtail; /* sagewai.identity.replies from its end */
	struct sched_idreqs *idreqs;	 /* resolutions waiting: hash chains (owned) */
	size_t nidreqs;
	int64_t idgarbage_ms;		 /* when undecodable input was last logged */
	int id_direct;			 /* SAGEWAI_IDENTITY_DIRECT_CHECK */
	int64_t id_direct_off_ms;	 /* the direct check failed: round trips until */

	/* outbox relay (outbox.c) */
	struct sched_seqset inflight; /* produced, not yet deleted */
	int64_t *delivered;	      /* delivered, delete pending */
	size_t ndelivered, capdelivered;
	int deleting;	    /* a DELETE is queued */
	int sweeping;	    /* a sweep SELECT is queued */
	int swept_once;	    /* the start-up sweep (every row) is done */
	int64_t sweep_from; /* seq after which the next sweep page starts */
	struct event *sweep_ev;

	/* consumer (consume.c) */
	struct sched_batchq batches;
	size_t nbatches;
	size_t nconsumed; /* messages of those batches */
	int paused;

	/* operations in flight, one per run at a time (ops.c) */
	struct sched_run_lock **locks; /* SCHED_LOCK_BUCKETS chains */
	struct sched_op *cq_head, *cq_tail; /* planned, waiting for the next group commit */
	size_t cq_n;
	int committing; /* group commits in flight */
	struct sched_snapc *snapc; /* runs' snapshots (snapc.c) */
	long long snap_cache;	   /* SAGEWAI_SNAPSHOT_CACHE */

	/* timers (timers.c) */
	struct event *tick_ev;
	int scanning; /* scan or its operations in flight */
	size_t scan_ops;
	int64_t last_prune_ms;

	/* streams (sse.c) */
	struct sched_streams streams;
	size_t nstreams;
	/* the same streams by run id (sched_run_hash): an event, a commit or
	 * a chunk of output finds its run's streams without walking all of
	 * them -- 8,192 waiting submits made every event cost 8,192 compares */
	struct sched_streams sbuckets[SCHED_SSE_BUCKETS];
	struct event *sse_ev;
	/* streams whose read is queued: read together, at the end of the loop's
	 * pass (sse.c) */
	struct sched_stream **rq;
	size_t nrq, rq_cap;
	struct event *rq_ev;
	struct sw_bus_consumer *sse_tail; /* sagewai.sandbox from its end: live output */

	/* tenants (tenants.c) */
	struct sched_tenant_cache *tcache;

	/* parsed workflow definitions (defs.c) */
	struct sched_defs *defs;

	/* ids of the events this process committed (outbox.c) */
	uint8_t (*ours)[16];

	struct event *metrics_ev;
	int metrics_busy;
	unsigned metrics_ticks;
	unsigned long reconnects; /* sw_store_reconnects last seen */
	int stopping;		  /* draining: take no new work */
};

/* ---- config.c: the scheduler's own settings ----------------------------- */

/* SAGEWAI_MODE, SAGEWAI_SEALED_PREVIEW, SAGEWAI_RUNNABLE_MODES,
 * SAGEWAI_ADMIN_TOKEN, SAGEWAI_IDENTITY (with SAGEWAI_SECRET_MAC_KEY_FILE
 * and SAGEWAI_IDENTITY_TIMEOUT_MS) and SAGEWAI_PG_POOL of env->cfg /
 * env->envp into env. 0, or -1 with errstr. */
int sched_config_load(struct sched_env *env, char *errstr, size_t errlen);
/* Whether mode m runs here: in SAGEWAI_RUNNABLE_MODES, and for
 * identity_scoped only with SAGEWAI_IDENTITY=1 as well. */
int sched_mode_runnable(const struct sched_env *env, enum sw_mode m);

/* ---- bus.c: Kafka tuning and the producer ------------------------------- */

#define SCHED_BUS_EXTRA 34
/* librdkafka properties: first def, then the operator's "name=value,..."
 * of the variable var, into out (NULL-terminated, SCHED_BUS_EXTRA slots;
 * the strings point into buf). -1 when they do not fit. */
int sched_bus_extra(const struct sched_env *env, const char *var, const char *def,
		    const char **out, char *buf, size_t buflen);
/* The producer of the outbox relay and the dead letters; its delivery
 * reports go to sched_outbox_delivery and sched_consume_delivery. */
int sched_producer_start(struct sched_env *env, char *errstr, size_t errlen);

/* ---- schema.c ------------------------------------------------------------ */

extern const struct sw_migration sched_migrations[];
extern const size_t sched_nmigrations;
/* SELECT of one run's API JSON (text); $1 run id, $2 tenant. */
extern const char *const sched_run_json_sql;
/* sched_run_json_sql for many runs: $1 ids, $2 tenants (arrays); a row each,
 * in order, NULL when not found (sse.c reads the streams' runs so). */
extern const char *const sched_runs_json_sql;
/* The statements a group commit sends once for the rows of many
 * transitions of one enum sched_rows kind, each row's parameters as
 * arrays (ops.c, "Group commit"). */
struct sched_batch_stmt {
	const char *sql;
	int ncols; /* the parameters of a row, as enum sched_rows lists them */
};
#define SCHED_BATCH_COLS 5 /* the most of them */

/* ---- runs.c: transactions, snapshots, submission ------------------------ */

/* A transaction under construction: statements whose parameters live as
 * long as it does. Any failure to add sets oom; check it before queueing. */
#define SCHED_TX_STMTS 16
#define SCHED_TX_PARAMS 96
/* The statements a group commit sends once for all its transitions, their
 * parameters as arrays (ops.c, "Group commit"): each is one row of one
 * table keyed by the run (and step), with its parameters in a fixed order. */
enum sched_rows {
	SCHED_B_NONE,
	SCHED_B_REV,	  /* bump_rev: run id, rev */
	SCHED_B_STEP_OK,  /* a step succeeded: run id, idx, output */
	SCHED_B_DISPATCH, /* a step dispatched: run id, idx, attempt, timeout ms, event id */
	SCHED_B_RUN_END,  /* a run ended: run id, state, output, error */
	SCHED_B_N
};
extern const struct sched_batch_stmt sched_batch_stmts[SCHED_B_N];
/* Sent before a group's batches and the run read: one generic plan each,
 * lookups by key (schema.c). */
extern const char *const sched_key_plans_sql;
/* sched_run_json_sql for params {run id, tenant}, after sched_key_plans_sql
 * in one read-only transaction: cb gets its row (none: no such run). */
int sched_run_read(struct sched_env *env, const char *const params[2], sw_store_cb cb,
		   void *opaque);
struct sched_tx {
	struct sw_store_stmt st[SCHED_TX_STMTS];
	unsigned char batch[SCHED_TX_STMTS]; /* enum sched_rows of each */
	size_t n;
	const char *pv[SCHED_TX_PARAMS]; /* parameters of all statements, in order */
	size_t npv;
	char *own[SCHED_TX_PARAMS]; /* strings to free with the tx */
	size_t nown;
	char **ob_params; /* the outbox INSERT's 4 parameters (owned) */
	int oom;
};

/* s (malloc'd, may be NULL: oom) now belongs to t; returns it. */
const char *sched_tx_own(struct sched_tx *t, char *s);
/* A formatted string owned by t (NULL: oom). */
const char *sched_tx_fmt(struct sched_tx *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Add a statement; the np parameters (const char *, NULL = SQL NULL) must
 * outlive the tx: literals, sched_tx_fmt strings or the caller's buffers. */
void sched_tx_add(struct sched_tx *t, const char *sql, int np, ...);
/* The statement just added is of batch b (its parameters as enum
 * sched_rows lists them). */
void sched_tx_batch(struct sched_tx *t, enum sched_rows b);
/* The outbox INSERT of evs (copied) as the last statement. */
void sched_tx_outbox(struct sched_tx *t, const struct sched_event *evs, size_t n);
void sched_tx_free(struct sched_tx *t);
/* t moved to the heap (its statements still point at its parameters); t
 * is left empty. NULL when out of memory (t unchanged). */
struct sched_tx *sched_tx_move(struct sched_tx *t);

/* What a transition reads of its run. */
struct sched_snap {
	char tenant[128];
	char workflow[128];
	int version;
	long long rev;
	json_t *input;
	const struct sw_workflow *wf; /* borrowed: sched_def_get's, or the submitter's */
	json_t *steps;		      /* [{idx, name, state, attempt, output}] by idx */
	struct sched_fsm_run run;     /* the states; run.steps owned */
	int processed;		      /* the triggering event was handled before */
	size_t bytes;		      /* about what input and outputs hold (snapc.c) */
};

/* The snapshot SELECT: $1 run id, $2 the triggering event id or NULL, $3
 * the tenant the run must belong to or NULL. */
extern const char *const sched_snap_sql;
/* The one row of sched_snap_sql into s. 0, or -1 with errstr (the stored
 * state is inconsistent); s needs sched_snap_free after 0 only. */
int sched_snap_load(struct sched_env *env, struct sched_snap *s, PGresult *res, char *errstr,
		    size_t errlen);
void sched_snap_free(struct sched_snap *s);
/* The index of step name, or -1. */
int sched_snap_find(const struct sched_snap *s, const char *name);

/* ---- snapc.c: snapshots in memory --------------------------------------- */

/* Take run_id's snapshot out of memory into s (0), or -1: none, read it. */
int sched_snapc_take(struct sched_env *env, const char *run_id, struct sched_snap *s);
/* Keep s (moved: s is emptied) as run_id's snapshot, committed with s->rev;
 * a finished run's is freed instead. */
void sched_snapc_put(struct sched_env *env, const char *run_id, struct sched_snap *s);
void sched_snapc_drop(struct sched_env *env, const char *run_id);
void sched_snapc_free(struct sched_env *env);

/* Submit run run_id of wf (borrowed for the call) with input (borrowed)
 * for tenant and user ("" for none): insert it and its steps and dispatch
 * the first step, in one transaction. identity (borrowed, may be NULL)
 * maps step names to the JSON text of their pinned identity keys, stored
 * with the step and sent in each of its dispatches. done gets the run id
 * and the run's state after that transaction (running, or failed when it
 * ended at once), or NULL and a reason. */
typedef void (*sched_submit_cb)(const char *run_id, const char *state, const char *err,
				void *opaque);
/* A re-run: replay_of the original run's id ("" or NULL for none), replay
 * (borrowed, may be NULL) maps step names to their replay entries (objects,
 * stored as text and put into each dispatch's spec.replay). */
/* guard (may be NULL): what the submit took without reading it, checked
 * first in its transaction by submit_guard (migration 5), which fails it
 * with a code of its own:
 *   latest  wf->version was taken as the latest (sched_def_latest): SWVER
 *           when a later version exists;
 *   macs    the input's MACs (sched_identity_direct_macs), the input check
 *           made here instead of before: SWINP when identity.input_matches
 *           says true, SWIDF when it fails.
 * done then gets NULL and that code first in err; nothing is stored. */
struct sched_submit_guard {
	int latest;
	const char *macs;
};
int sched_run_submit(struct sched_env *env, const char *tenant, const char *user,
		     const char *run_id, const struct sw_workflow *wf, json_t *input,
		     json_t *identity, const char *replay_of, json_t *replay,
		     const struct sched_submit_guard *guard, sched_submit_cb done, void *opaque);
/* err from a submit that its guard failed: 1 (SWVER, SWINP, SWIDF), or 0. */
int sched_submit_guarded(const char *err);

/* ---- ops.c: the operation engine ----------------------------------------- */

enum sched_op_kind {
	SCHED_OP_STARTED,  /* step.started consumed */
	SCHED_OP_FINISHED, /* step.finished consumed */
	SCHED_OP_TIMEOUT,  /* a deadline passed */
	SCHED_OP_RETRY,	   /* a retry is due */
	SCHED_OP_CANCEL,   /* POST /v1/runs/{id}/cancel */
	SCHED_OP_EXPIRE,   /* the run's time (SAGEWAI_RUN_MAX) is up */
	SCHED_OP_SUBMIT,   /* a new run, planned (sched_op_commit) */
};

enum sched_op_result {
	SCHED_OP_APPLIED,   /* committed */
	SCHED_OP_IGNORED,   /* nothing to do (stale, duplicate, finished run) */
	SCHED_OP_NOT_FOUND, /* no such run (for this tenant) */
	SCHED_OP_TERMINAL,  /* cancel of a finished run */
	SCHED_OP_ERROR,	    /* the store failed; message in op->errmsg */
};

struct sched_op;
typedef void (*sched_op_done_cb)(struct sched_op *op, enum sched_op_result r, void *opaque);

/* One state change in flight. The caller fills the trigger and done; the
 * op is freed by the engine after done returns. */
struct sched_op {
	struct sched_env *env;
	enum sched_op_kind kind;
	char run_id[SW_UUID_STRLEN];
	char event_id[SW_UUID_STRLEN]; /* consumed event, empty otherwise */
	char tenant[128];	       /* cancel: the caller's tenant */
	char step[64];		       /* STARTED/FINISHED: step name */
	int idx;		       /* TIMEOUT/RETRY: step index */
	int attempt;
	char status[16]; /* FINISHED: SUCCEEDED | FAILED | TIMED_OUT | CANCELLED */
	char *output;	 /* FINISHED: JSON text or NULL (owned) */
	char *error;	 /* FINISHED: error text or NULL (owned) */
	int tries;
	struct sched_event ev[SCHED_OP_EVENTS];
	size_t nev;
	char run_state[16]; /* the run's state after the op */
	char errmsg[256];
	int finished_run; /* the op ended the run (metrics) */
	int dispatched;	  /* step.dispatched events caused */
	sched_op_done_cb done;
	void *opaque;
	struct sched_op *next_waiting; /* the run's queue (ops.c) */
	struct event *hold_ev;	       /* STARTED: waiting a moment for its outcome */
	struct sched_tx *tx;	       /* planned, waiting for its group commit (owned) */
	struct sched_op *next_commit;  /* the group-commit queue (ops.c) */
	int solo;		       /* a group with it failed: commit alone from now */
	struct sched_snap *snap;       /* the run once the planned commit is made (owned) */
	int uncached;		       /* read the run: its snapshot in memory said no */
	char answer_tenant[128];       /* ended the run for a waiting submit of it: its
					* tenant, its answer read in the commit */
	const char *answer_params[2];
};

struct sched_op *sched_op_new(struct sched_env *env, enum sched_op_kind kind, const char *run_id,
			      sched_op_done_cb done, void *opaque);
/* Start it: read, decide, write, retried on conflicts; done is called once.
 * Operations on one run take turns (in this process; across processes the
 * rev guard serialises them). */
void sched_op_start(struct sched_op *op);
/* Start n operations (e.g. those of one consumed batch) in order; ops[] is
 * used as scratch space. All join their runs' queues before any reads.
 *
 * A step.started is folded into the step.finished of the same attempt
 * when that is already here (in the batch or queued behind it) or comes
 * within SCHED_STARTED_HOLD_MS: it then ends as SCHED_OP_IGNORED without
 * a transaction of its own, and the outcome's transaction moves the step
 * from dispatched straight on. A quick step so costs one transition
 * instead of two; a long one shows "running" SCHED_STARTED_HOLD_MS later.
 */
void sched_ops_start(struct sched_op **ops, size_t n);
/* Commit a SCHED_OP_SUBMIT op whose transaction is planned (op->tx, its
 * events in op->ev, no outbox statement) with the next group commit; done
 * gets SCHED_OP_APPLIED once it is durable and its events are on their
 * way, or SCHED_OP_ERROR with op->errmsg. */
void sched_op_commit(struct sched_op *op);
void sched_ops_free(struct sched_env *env);

/* ---- apply.c: decisions into transactions --------------------------------- */

/* A transition being planned on a snapshot: its statements and events. */
struct sched_plan {
	struct sched_env *env;
	struct sched_snap *s;
	const char *run_id;
	struct sched_tx tx;
	struct sched_event *ev; /* SCHED_OP_EVENTS slots */
	size_t *nev;
	char run_state[16]; /* the run's state after the plan */
	int finished_run;
	int dispatched;
	int failed; /* an event could not be built */
	char errstr[256];
};

/* Start planning on s (borrowed) for run_id, the events into ev[*nev..]. */
void sched_plan_init(struct sched_plan *p, struct sched_env *env, struct sched_snap *s,
		     const char *run_id, struct sched_event *ev, size_t *nev);
/* Encode an event of type into p (fields stolen; NULL is a failure). */
void sched_plan_event(struct sched_plan *p, const char *type, const char *step_id,
		      json_t *fields);
/* The distinct modes of wf's steps as a JSON array (new reference). */
json_t *sched_plan_modes(const struct sw_workflow *wf);
/* Put d (an APPLY decision on p->s->run) into p's transaction and events:
 * error is the failing step's error text (borrowed), output the succeeding
 * step's (JSON text, borrowed), requested_by the cancelling tenant. Then
 * p->s->run is where d leads. */
void sched_plan_apply(struct sched_plan *p, const struct sched_fsm_decision *d,
		      const char *error, const char *output, const char *requested_by);
/* Decide op on p's snapshot with the state machine and plan the result.
 * SCHED_FSM_APPLY: planned in p; else nothing changes. */
enum sched_fsm_verdict sched_plan_op(struct sched_plan *p, struct sched_op *op);

/* ---- timers.c ------------------------------------------------------------- */

int sched_timers_start(struct sched_env *env, char *errstr, size_t errlen);
/* Drain: no more scans. */
void sched_timers_stop(struct sched_env *env);
void sched_timers_free(struct sched_env *env);

/* ---- outbox.c: events and the relay --------------------------------- */

/* Encode an event of type for run_id into ev (fields stolen; header made
 * here: fresh id, tenant, step_id may be NULL). 0, or -1 with errstr. */
int sched_event_build(struct sched_env *env, struct sched_event *ev, const char *type,
		      const char *tenant, const char *run_id, const char *step_id, json_t *fields,
		      char *errstr, size_t errlen);
void sched_event_clear(struct sched_event *ev);
/* The outbox INSERT (last statement of a transaction) and its 4 parameters
 * for evs (n at most SCHED_OUTBOX_MAX): arrays of ids, topics, keys and hex
 * payloads, malloc'd into params[0..3] (the caller frees them with
 * sched_outbox_params_free). 0, or -1 out of memory (none left set). */
extern const char *const sched_outbox_insert_sql;
int sched_outbox_params(const struct sched_event *evs, size_t n, char **params);
void sched_outbox_params_free(char **params);
/* A transaction with evs committed; res holds RETURNING seq, event_id. */
void sched_outbox_committed(struct sched_env *env, PGresult *res, const struct sched_event *evs,
			    size_t n);
void sched_outbox_delivery(struct sched_env *env, const char *err, struct sched_dr *dr);
int sched_outbox_start(struct sched_env *env, char *errstr, size_t errlen);
/* Nothing produced and undeleted. */
int sched_outbox_idle(const struct sched_env *env);
void sched_outbox_stop(struct sched_env *env);
/* After the loop: what the relay holds. */
void sched_outbox_free(struct sched_env *env);

/* An event id of a step event relayed by this process (remembered in a
 * bounded table: an id may be forgotten, never made up). */
int sched_outbox_ours(const struct sched_env *env, const char *event_id);

int sched_seqset_init(struct sched_seqset *s, size_t cap);
void sched_seqset_free(struct sched_seqset *s);
int sched_seqset_add(struct sched_seqset *s, int64_t v); /* 1 added, 0 present, -1 OOM */
int sched_seqset_has(const struct sched_seqset *s, int64_t v);
void sched_seqset_del(struct sched_seqset *s, int64_t v);

/* ---- consume.c: step outcomes in --------------------------------------- */

int sched_consume_start(struct sched_env *env, char *errstr, size_t errlen);
void sched_consume_delivery(struct sched_env *env, const char *err, struct sched_dr *dr);
size_t sched_consume_inflight(const struct sched_env *env);
/* Drain: take no more messages. */
void sched_consume_pause(struct sched_env *env);
/* After the loop: commit and leave the group (blocks; loop stopped). */
void sched_consume_close(struct sched_env *env);
void sched_consume_free(struct sched_env *env);

/* ---- defs.c ------------------------------------------------------------- */

/* The parsed definition of workflow (tenant, name, version), from the
 * cache or else parsed from def_text (its stored JSON) and cached. The
 * pointer is the cache's: valid until the next sched_def_get or
 * sched_defs_free, so never kept. NULL + errstr when def_text is bad, or
 * when it is NULL (a lookup only) and the definition is not cached. */
const struct sw_workflow *sched_def_get(struct sched_env *env, const char *tenant,
					const char *name, int version, const char *def_text,
					char *errstr, size_t errlen);
void sched_defs_free(struct sched_env *env);
/* The version a submit without one last found to be the latest of tenant's
 * workflow name, or 0: a hint, which the submit's transaction checks
 * (submit_guard, SWVER when a later one exists). _set records it (0: forgets
 * it). */
int sched_def_latest(struct sched_env *env, const char *tenant, const char *name);
void sched_def_latest_set(struct sched_env *env, const char *tenant, const char *name,
			  int version);

/* ---- tenants.c ---------------------------------------------------------- */

/* Resolve the request's tenant id and user: from the Bearer key, or
 * "default" and "" in single_org mode without one. Calls cont once: with
 * the tenant and the key's user ("" for a tenant-wide key), or with NULLs
 * after having answered the request itself (401, 503) so that cont only
 * cleans up. */
typedef void (*sched_auth_cb)(struct sched_env *env, struct evhttp_request *req,
			      const char *tenant, const char *user, void *opaque);
void sched_auth(struct sched_env *env, struct evhttp_request *req, sched_auth_cb cont,
		void *opaque);
/* The operator's routes (SAGEWAI_ADMIN_TOKEN): POST /v1/tenants,
 * DELETE /v1/tenants/{id or name} (and users.c below it), POST /v1/keys. */
void sched_tenants_post(struct evhttp_request *req, void *arg);
void sched_tenant_item(struct evhttp_request *req, void *arg);
void sched_keys_post(struct evhttp_request *req, void *arg);
/* Publish tenant.created / apikey.created for rows a migration made
 * (announced = false), at start. 0, or -1 with errstr. */
int sched_tenants_announce(struct sched_env *env, char *errstr, size_t errlen);
int sched_tenant_name_valid(const char *s);
/* Forget every cached key (a tenant or user was deleted). */
void sched_tcache_clear(struct sched_env *env);
void sched_tenants_free(struct sched_env *env);

/* One administrative change in flight (tenants.c, users.c): what it is
 * about and its transaction's events. */
struct sched_admin {
	struct sched_env *env;
	struct evhttp_request *req;
	struct sched_event *ev; /* nev of capev, at most SCHED_OUTBOX_MAX (owned) */
	size_t nev, capev;
	char tenant_id[SW_UUID_STRLEN]; /* a UUID, or "default" */
	char tenant_name[64];
	char name[64]; /* the tenant's name (tenant routes) */
	char key_id[SW_UUID_STRLEN];
	char key[8 + 64];		/* a new key, shown once */
	char user_id[SW_UUID_STRLEN];
	char user[SCHED_NAME_MAX];	/* a user's name, "" for none */
	char *keys;			/* key ids read, comma-separated (owned) */
	int nkeys;
	int auditor;			/* an auditor key */
};
typedef void (*sched_admin_cb)(struct sched_admin *c);

/* NULL after answering 503. */
struct sched_admin *sched_admin_new(struct sched_env *env, struct evhttp_request *req);
void sched_admin_free(struct sched_admin *c);
/* 0 when the request carries the operator's SAGEWAI_ADMIN_TOKEN; else the
 * request is answered (403 without a token configured, 401) and -1. */
int sched_admin_check(struct sched_env *env, struct evhttp_request *req);
/* Encode an event of sagewai.tenants into c's next slot: header.tenant is
 * tenant (an id, or "" for an auditor key), the Kafka key is key; fields
 * stolen. 0, or -1 (logged). */
int sched_admin_event(struct sched_admin *c, const char *type, const char *tenant,
		      const char *key, json_t *fields);
/* Queue t (c's events last) as one transaction answered by cb(c); -1 when
 * it could not be queued (t is freed either way). */
int sched_admin_commit(struct sched_admin *c, struct sched_tx *t, sw_store_cb cb);
/* Find the live tenant ref (an id, a name, or "default" in single_org
 * mode) and call cont with c->tenant_id and c->tenant_name set; when there
 * is none (or the store fails) the request is answered and c freed. */
void sched_admin_tenant(struct sched_admin *c, const char *ref, sched_admin_cb cont);

/* ---- users.c -------------------------------------------------------------- */

/* /v1/tenants/{ref}/users[/{name}]: rest is the path after /v1/tenants/. */
void sched_users_route(struct sched_env *env, struct evhttp_request *req, const char *rest);
/* [a-z0-9][a-z0-9_.-]{0,62} */
int sched_user_name_valid(const char *s);

/* ---- identity.c: the client of sagewai-identity ------------------------- */

/* The answer to a resolution: status 0 and steps (an object: step name ->
 * the JSON text of its keys; borrowed for the call) when the run may be
 * stored; else the HTTP status, the error code and a message to refuse
 * the submit with. */
typedef void (*sched_identity_cb)(struct sched_env *env, int status, const char *code,
				  const char *message, json_t *steps, void *opaque);
/* Read sagewai.identity.replies from its end (SAGEWAI_IDENTITY=1 only). */
int sched_identity_start(struct sched_env *env, char *errstr, size_t errlen);
/* Ask sagewai-identity to resolve run run_id of wf (borrowed for the
 * call) with input for tenant and user; a re-run's original (borrowed, NULL
 * for any other submit: step name -> the JSON text of the keys the
 * scheduler stored for that step of the original run) has each secret key of
 * wf's identity-bearing steps pinned to the original's version (identity
 * refuses a version revoked or gone since). done is called exactly once, from
 * the loop, never from within this call: with the answer, or 503
 * identity_unavailable after SAGEWAI_IDENTITY_TIMEOUT_MS. -1 (done never
 * called) with status/code/message filled when the request cannot be sent
 * (too many strings to check: 413; the producer refused: 503). */
int sched_identity_resolve(struct sched_env *env, const char *tenant, const char *user,
			   const char *run_id, const struct sw_workflow *wf, json_t *input,
			   json_t *original, sched_identity_cb done, void *opaque, int *status, char *code,
			   size_t codelen, char *message, size_t msglen);
void sched_identity_delivery(struct sched_env *env, const char *err, struct sched_dr *dr);
/* A submit that may skip the resolve: 1 with *macs (malloc'd: a text[]
 * literal of the input's MACs, for identity.input_matches in the submit's
 * transaction) when wf has no identity-bearing step and the check through
 * PostgreSQL is on; 0 otherwise (sched_identity_resolve decides). */
int sched_identity_direct_macs(struct sched_env *env, const char *user,
			       const struct sw_workflow *wf, json_t *input, char **macs);
/* identity.input_matches failed (err): warn, and take the round trip for a
 * while. */
void sched_identity_direct_failed(struct sched_env *env, const char *err);
/* An input found clean by identity.input_matches (metrics). */
void sched_identity_direct_clean(struct sched_env *env);
/* Resolutions waiting. */
size_t sched_identity_pending(const struct sched_env *env);
/* Answer every waiting resolution 503 (shutdown). */
void sched_identity_stop(struct sched_env *env);
/* After the loop: sched_identity_stop, then the reader and the MAC key go. */
void sched_identity_free(struct sched_env *env);

/* ---- api.c -------------------------------------------------------------- */

int sched_api_start(struct sched_env *env, char *errstr, size_t errlen);
/* s is a UUID in its 8-4-4-4-12 form */
int sched_uuid_valid(const char *s);
/* FNV-1a of a run id, for the tables keyed by run (ops.c, snapc.c). */
uint32_t sched_run_hash(const char *run_id);

/* ---- sse.c -------------------------------------------------------------- */

/* GET /v1/runs/{id}/events for tenant. */
void sched_sse_open(struct sched_env *env, struct evhttp_request *req, const char *run_id,
		    const char *tenant);
/* POST /v1/runs?wait=S: run_id (just stored, in state) is answered once,
 * when it ends (200, the run as GET /v1/runs/{id} shows it) or when wait_s
 * passed (202, the run as it is then). */
void sched_wait_open(struct sched_env *env, struct evhttp_request *req, const char *run_id,
		     const char *tenant, const char *state, int wait_s);
/* Something happened to run_id: streams on it re-read and send changes.
 * Waiting submits re-read only when the run may have ended (ended != 0):
 * they answer nothing before that, so a read at each step is wasted. */
void sched_sse_touch(struct sched_env *env, const char *run_id, int ended);
/* The tenant of a waiting submit on run_id that no read is out for, or
 * NULL: the commit that ends the run may read the run in its own
 * transaction (sched_run_json_sql) and answer it with sched_wait_answer,
 * sparing the read after the commit. */
const char *sched_wait_tenant(struct sched_env *env, const char *run_id);
/* res, sched_run_json_sql's row of run_id for tenant read in the
 * transaction that ended it, committed: the waiting submits on it that no
 * read is out for are answered with it. */
void sched_wait_answer(struct sched_env *env, const char *run_id, const char *tenant,
		       PGresult *res);
/* A run state (fsm names) after which a waiting submit answers; NULL or
 * empty counts as "may have ended" (read and see). */
int sched_run_state_ended(const char *state);
int sched_sse_start(struct sched_env *env, char *errstr, size_t errlen);
/* End every stream (shutdown). */
void sched_sse_stop(struct sched_env *env);
void sched_sse_free(struct sched_env *env);

#endif
