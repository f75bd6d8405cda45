/*
 * sw_executor: the mechanics every step executor shares (sagewai-worker,
 * sagewai-sandboxd; docs/RUNS.md): from a step.dispatched message to its
 * step.finished, with the offset discipline that makes a crash harmless.
 *
 *   messages   every consumed message gets a place in the queue of its
 *              partition, in offset order; it is done once its effect is
 *              durable (at once for an event that is not for us, on the
 *              dead letter's delivery report for garbage, on the
 *              step.finished delivery report for a dispatch). Each loop
 *              turn stores the offset of every partition's leading run of
 *              done messages and commits: steps finish out of order, an
 *              offset never skips one that is not done.
 *   dispatches decoded and checked (garbage is dead-lettered); a copy of a
 *              dispatch still in flight joins it; one of a mode the service
 *              does not run is left alone; else a job is made.
 *   results    the results table (the service's own PostgreSQL schema)
 *              is asked first: a hit re-publishes the stored step.finished
 *              bytes (same event id) and nothing runs again. A pure step
 *              (ops->pure: its outcome is a function of the dispatch and it
 *              acts on nothing) skips the table both ways: nothing is asked
 *              or stored, a copy runs again, and its step.finished has an
 *              event id derived from the dispatch's (sw_uuid_derive), so
 *              every copy's outcome is one event to those who dedupe by id.
 *   fences     a dispatch whose attempt is no longer current is refused
 *              before it starts (after the lookup, at admission and when a
 *              queued job would take a slot), without step.started: its
 *              deadline (header time + timeout_ms) has passed, its run was
 *              cancelled or has finished (run.cancel_requested and
 *              run.finished on sagewai.runs, remembered in rings), or a
 *              newer attempt of the same step was consumed. It finishes
 *              TIMED_OUT ("fenced: ...") or CANCELLED; the scheduler
 *              records that outcome and applies it only if the attempt is
 *              still its current one. An active job is stopped the same way
 *              when its run ends, a newer attempt comes, or its deadline
 *              passes (TIMED_OUT "timeout: ...").
 *   preflight  the spec is parsed and the preview gate applied; then the
 *              service checks the spec (ops->begin) and admits the job.
 *   slots      at most `concurrency` jobs are active; the others queue.
 *              On activation step.started is produced (or put off:
 *              cfg.started_after_ms) and ops->start runs.
 *   finish     the first sw_executor_finish of an attempt counts: the
 *              outcome becomes step.finished (error texts "<code>:
 *              <message>", valid UTF-8, outputs capped by the job's limit
 *              and by what the bus carries), encoded once with a fresh
 *              event id, stored by dispatch id (the stored row wins over a
 *              concurrent copy), then produced; its delivery report marks
 *              the message (and its copies) done and frees the job. The
 *              row is a durable commit when the step may have acted on the
 *              world; for an attempt that never started, or a job the
 *              service marked no_effect, it commits without waiting for
 *              the disk: losing it in a crash of PostgreSQL can only make
 *              a redelivered dispatch run again what has no effect. Such a
 *              lazy row is not waited for either: step.finished is produced
 *              beside its save, and the message is done once both are.
 *
 * One executor per process, on the service's libevent loop; nothing here
 * blocks, logs, exits or reads the environment. What a service would log
 * reaches ops->report (a message and its fields, ready for sw_log);
 * what stops the service reaches ops->fatal.
 */
#ifndef SW_EXECUTOR_H
#define SW_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>
#include <jansson.h>

#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_http.h"
#include "sw_store.h"

#define SW_EXECUTOR_ERR_MAX 1024    /* longest error text of a step */
#define SW_EXECUTOR_CANCEL_RING 256	/* run ids remembered as cancelled */
#define SW_EXECUTOR_FINISHED_RING 1024	/* run ids remembered as finished */
#define SW_EXECUTOR_ATTEMPT_RING 1024	/* (run, step) pairs with their newest attempt */
#define SW_EXECUTOR_INSTANCE_MAX 200	/* longest group.instance.id */

/*
 * The executors' group membership (sw_executor_connect's defaults, before
 * the service's extra properties, which may override them). A member that
 * dies is noticed after the session timeout: 10 s rather than librdkafka's
 * 45 s. With a group.instance.id (static membership) a member that comes
 * back within it gets its partitions back at once, without a rebalance;
 * but a static member sends no LeaveGroup when it closes, so a clean stop
 * holds its partitions for a session timeout too: 10 s keeps both short.
 * max.poll.interval.ms stays librdkafka's: the loop never blocks, and it
 * must not fall under a session timeout an operator raises.
 */
#define SW_EXECUTOR_SESSION_TIMEOUT_MS 10000
#define SW_EXECUTOR_HEARTBEAT_MS 1000

/* How an attempt ended (step.finished's status). */
enum sw_step_status { SW_STEP_SUCCEEDED, SW_STEP_FAILED, SW_STEP_TIMED_OUT, SW_STEP_CANCELLED };

enum sw_executor_phase {
	SW_EXECUTOR_LOOKUP,	/* asking the results table, then preflight */
	SW_EXECUTOR_QUEUED,	/* waiting for a concurrency slot */
	SW_EXECUTOR_ACTIVE,	/* holding a slot: the service executes it */
	SW_EXECUTOR_SAVING,	/* step.finished encoded, results row being written */
	SW_EXECUTOR_PUBLISHING, /* step.finished produced, delivery report awaited */
};

struct sw_executor;
struct sw_executor_offset;

/*
 * One step.dispatched being handled, made and freed by the executor. The
 * service reads the fields of the dispatch, sets text_max and keeps its own
 * state of the step in owner (ops->job_new, ops->job_free).
 */
struct sw_executor_job {
	struct sw_event_header dh; /* the dispatch's header */
	char step[128];
	char mode[32];
	int attempt;
	int64_t timeout_ms; /* 0: none */
	int64_t deadline_us; /* wall clock the attempt ends: header time + timeout (0: none) */
	json_t *spec;	    /* the parsed spec, an object (from ops->begin on) */
	char *identity;	    /* step.dispatched.identity as sent, "" when none (JSON text) */
	int64_t t0_ns;	    /* monotonic start of the attempt */
	size_t text_max;    /* cap of a SUCCEEDED output's JSON text (0: none) */
	void *owner;	    /* the service's */
	/* Set by the service (ops->begin): executing this step acts on nothing
	 * outside the platform, its outcome is a function of the dispatch (a
	 * template, a re-run's recorded answer), so running it twice is
	 * harmless. Its results row, like that of an attempt that never
	 * started, is then committed without waiting for the disk. */
	int no_effect;
	/* Set by the executor from ops->pure before the results lookup: no
	 * lookup, no row, step.finished's event id derived from the
	 * dispatch's. */
	int pure;
	enum sw_executor_phase phase;
	/* the step.finished event, once encoded */
	enum sw_step_status status;
	char *finished;
	size_t finished_len;

	/* the executor's own */
	int lazy;     /* its results row need not be durable (no effect happened) */
	/* A lazy row is produced without waiting for its save: both are in
	 * flight, and the job goes when both are done (row_pending: the save
	 * is not answered yet; delivered: the delivery report came first). */
	int row_pending;
	int delivered;
	uint32_t tag; /* first field the delivery report sees: a job */
	struct sw_executor *ex;
	TAILQ_ENTRY(sw_executor_job) entry;  /* every job in flight */
	TAILQ_ENTRY(sw_executor_job) qentry; /* the wait queue while QUEUED */
	struct sw_executor_offset *off;	     /* the dispatch message */
	struct sw_executor_offset **dups;    /* later copies of the same dispatch */
	size_t ndups;
	char *spec_text;
	int counted;		   /* holds a concurrency slot */
	struct event *deadline_ev; /* while ACTIVE: the attempt's deadline */
	struct event *started_ev;  /* while ACTIVE: step.started put off */
};

enum sw_executor_report_kind {
	SW_EXECUTOR_DEADLETTERED,  /* a message went to sagewai.deadletter */
	SW_EXECUTOR_DUPLICATE,	   /* a copy of a dispatch in flight joined it (job) */
	SW_EXECUTOR_REPUBLISHED,   /* a redelivered dispatch found its result (job) */
	SW_EXECUTOR_CANCELLING,	   /* run.cancel_requested stops a step (job) */
	SW_EXECUTOR_FENCED,	   /* an attempt no longer current is refused or stopped (job) */
	SW_EXECUTOR_FINISHED,	   /* step.finished is composed (job) */
	SW_EXECUTOR_WARNING,	   /* something informative was lost; Kafka errors */
	SW_EXECUTOR_DRAIN_TIMEOUT, /* draining took longer than its grace */
};

/* What happened, as one log line: level, message and NULL-terminated
 * key/value pairs (valid during the call only). */
struct sw_executor_report {
	enum sw_executor_report_kind kind;
	enum sw_log_level level;
	const char *msg;
	const char *const *fields;
	struct sw_executor_job *job; /* the step concerned, or NULL */
};

/* The service's side. Every callback gets the config's arg. */
struct sw_executor_ops {
	/* 1 when the service runs steps of this mode, 0 to leave the dispatch
	 * alone (its offset is done at once). */
	int (*wants)(void *arg, const char *mode);
	/* Attach the service's state to a new job (j->owner); 0, or -1 when
	 * out of memory. */
	int (*job_new)(void *arg, struct sw_executor_job *j);
	/* 1 when j (j->spec parsed, an object) is pure: what any attempt of
	 * it finishes with is a function of the dispatch alone and running it
	 * acts on nothing outside the platform (a template's value), so a
	 * copy may run again instead of asking the results table. Optional
	 * (NULL: none is). */
	int (*pure)(void *arg, const struct sw_executor_job *j);
	/* No stored result; j->spec is an object past the preview gate. Check
	 * it, then sw_executor_admit(j) or sw_executor_finish(j, ...). */
	void (*begin)(void *arg, struct sw_executor_job *j);
	/* j holds a slot (step.started is produced): execute it. */
	void (*start)(void *arg, struct sw_executor_job *j);
	/* The attempt ended with st (first sw_executor_finish): release what
	 * executes it (timers, transfers, a sandbox). Optional. */
	void (*halt)(void *arg, struct sw_executor_job *j, enum sw_step_status st);
	/* Free j->owner and what it holds; the executor frees j. */
	void (*job_free)(void *arg, struct sw_executor_job *j);
	/* A malloc'd copy of a step's output or error text with secrets
	 * masked, NULL when out of memory. Optional. */
	char *(*redact)(void *arg, const char *text);
	void (*report)(void *arg, const struct sw_executor_report *r);
	/* The executor cannot go on (out of memory, a delivery that failed for
	 * good, the store, the bus): the service stops. Nothing is taken from
	 * the bus afterwards. */
	void (*fatal)(void *arg, const char *what, const char *why);
};

struct sw_executor_config {
	struct event_base *base;	  /* borrowed, as are the next three */
	struct sw_event_registry *reg;
	struct sw_store *store;		  /* the results table's; NULL: none (tests) */
	struct sw_metrics *metrics;	  /* may be NULL */
	const char *producer;		  /* header.producer ("sagewai-worker") */
	const char *metrics_prefix;	  /* "sagewai_worker": <prefix>_steps_running... */
	const char *executor;		  /* step.started's executor ("name@host/pid") */
	size_t bus_max;			  /* largest event the bus carries */
	int concurrency;		  /* active jobs at most, >= 1 */
	size_t line_min;		  /* messages in flight before pausing, at least */
	size_t line_bytes; /* ... but pausing once their bytes reach this; 0: 32 MiB */
	int refuse_identity_modes;	  /* the preview gate's backstop is closed */
	/* 1: each event to librdkafka at once; 0: gathered while others are in
	 * flight (sw_bus_producer_gather: no spin of librdkafka's broker thread) */
	int produce_at_once;
	/* step.started once an attempt has run this long; an attempt that ends
	 * sooner has none (its step.finished says all). 0: at once. */
	int started_after_ms;
	/* group.instance.id of the consumer (static membership): stable across
	 * restarts of one instance, distinct between instances of the group,
	 * [A-Za-z0-9._-]{1,200}. NULL or "": dynamic membership. */
	const char *instance_id;
	const struct sw_executor_ops *ops; /* every callback but halt, redact */
	void *arg;
};

/* ---- the results table -------------------------------------------------- */

/* The migrations of the results table, for sw_store_new with the service's
 * own schema. */
extern const struct sw_migration sw_executor_migrations[];
extern const size_t sw_executor_nmigrations;

/* sw_store_new_pool with the results table's migrations in schema ("worker",
 * "sandboxd"); npool connections (1..64). NULL with errstr on failure. The
 * caller owns the store. */
struct sw_store *sw_executor_store_new(struct event_base *base, const char *conninfo,
				       const char *schema, size_t npool, char *errstr,
				       size_t errlen);

/* ---- the executor ------------------------------------------------------- */

/* 1 when id is "" or a valid cfg.instance_id, else 0. */
int sw_executor_instance_ok(const char *id);

/* cfg is copied (its strings too); what it points to is borrowed. NULL
 * with errstr on bad arguments or out of memory. */
struct sw_executor *sw_executor_new(const struct sw_executor_config *cfg, char *errstr,
				    size_t errlen);
/*
 * The executor's Kafka clients, owned by it: an idempotent producer
 * (client id cfg.producer, pextra) for step.*, dead letters and emits,
 * and a member of group on topics (cextra) whose batches (at most
 * cfg.concurrency messages) the executor takes: the session settings
 * above and cfg.instance_id, then cextra. topics[0] is the dispatch topic:
 * a step.dispatched is taken from it only; the others carry the runs'
 * cancels and ends. pextra and cextra are sw_bus's
 * extra properties (may be NULL). 0, or -1 with errstr.
 */
int sw_executor_connect(struct sw_executor *ex, const char *bootstrap, const char *group,
			const char *const *topics, const char *const *pextra,
			const char *const *cextra, char *errstr, size_t errlen);
/* After the loop: deliver what is due (up to timeout_ms), store the
 * offsets that made done, and leave the group committing them. 0, or -1
 * when the consumer's close failed. Never from a callback. */
int sw_executor_close(struct sw_executor *ex, int timeout_ms);
/* Destroy the clients (without committing), then free every job
 * (ops->job_free) and tracked message: what is not committed is
 * redelivered. NULL is a no-op. */
void sw_executor_destroy(struct sw_executor *ex);

/* Take no more messages: the service is stopping on an error. */
void sw_executor_halt(struct sw_executor *ex);
/* A shutdown signal. The first: stop taking messages and let the jobs in
 * flight end; the loop of cfg.base breaks once none is left, or after
 * grace_s seconds (a DRAIN_TIMEOUT report). A second breaks it at once. */
void sw_executor_shutdown(struct sw_executor *ex, int grace_s);
int sw_executor_draining(const struct sw_executor *ex);
/* Store the offsets of the leading done messages now. */
void sw_executor_settle(struct sw_executor *ex);
/* The sw_bus callbacks sw_executor_connect wires (opaque: the executor). */
void sw_executor_consume(const struct sw_bus_msg *msgs, size_t n, void *opaque);
void sw_executor_delivery(const char *err, void *msg_opaque, void *opaque);

/* Messages consumed and not yet settled; jobs in flight; active jobs;
 * Kafka messages not yet delivered. */
size_t sw_executor_inflight(const struct sw_executor *ex);
size_t sw_executor_njobs(const struct sw_executor *ex);
int sw_executor_running(const struct sw_executor *ex);
int sw_executor_outq(const struct sw_executor *ex);
/* Non-zero while reading is paused (too much work in line). */
int sw_executor_paused(const struct sw_executor *ex);
/* The last offset of (topic, partition) settled, or -1. */
int64_t sw_executor_settled(const struct sw_executor *ex, const char *topic, int32_t partition);

/* run.cancel_requested for run_id: remembered (a later dispatch of the run
 * is cancelled at admission), and its QUEUED and ACTIVE jobs finish
 * CANCELLED. */
void sw_executor_cancel(struct sw_executor *ex, const char *run_id);
int sw_executor_cancelled(const struct sw_executor *ex, const char *run_id);
/* run.finished for run_id: remembered (a later dispatch of the run is
 * refused), and its QUEUED and ACTIVE jobs finish CANCELLED ("fenced: ..."). */
void sw_executor_run_finished(struct sw_executor *ex, const char *run_id);
int sw_executor_run_over(const struct sw_executor *ex, const char *run_id);

/* ---- a job -------------------------------------------------------------- */

/* Preflight passed: refused when the attempt is no longer current (see
 * fences above), else activate j (step.started, ops->start, the deadline's
 * timer) or queue it for a slot. */
void sw_executor_admit(struct sw_executor_job *j);

/* j's attempt ended: output (stolen, may be NULL) for SUCCEEDED, else
 * error, the text "<code>: <message>". Only the first call while j is
 * LOOKUP, QUEUED or ACTIVE counts (later ones free output and return).
 * ops->halt, then sw_executor_compose, a FINISHED report, the results row
 * and the produce follow. */
void sw_executor_finish(struct sw_executor_job *j, enum sw_step_status st, json_t *output,
			const char *error);
/* The same with the error text from fmt (NULL for none). */
void sw_executor_finishf(struct sw_executor_job *j, enum sw_step_status st, json_t *output,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Encode j's step.finished into j->finished (j->status too): header from
 * the dispatch's (tenant, run, step, trace) with a fresh event id, step,
 * attempt, duration since j->t0_ns. The rules: a SUCCEEDED output that
 * does not serialise fails "internal: ..."; one longer than j->text_max,
 * or an event larger than the bus carries, fails "output_too_large: ...";
 * texts pass ops->redact; an error text is made valid UTF-8. output is
 * borrowed. 0, or -1 with errstr (out of memory, encoding).
 */
int sw_executor_compose(struct sw_executor *ex, struct sw_executor_job *j, enum sw_step_status st,
			json_t *output, const char *error, char *errstr, size_t errlen);

/* ---- events and texts --------------------------------------------------- */

/* Produce an informative event of type on topic, keyed by run id, with
 * like's tenant, run, step and trace; fields are stolen (NULL: out of
 * memory). Nothing waits for it: a failure is a WARNING report. */
void sw_executor_emit(struct sw_executor *ex, const char *topic, const char *type,
		      const struct sw_event_header *like, json_t *fields);

/* "SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED". */
const char *sw_executor_status_name(enum sw_step_status st);

/* A malloc'd NUL-terminated copy of buf with every invalid UTF-8 sequence
 * (and NUL) replaced by U+FFFD; NULL when out of memory. */
char *sw_executor_utf8(const char *buf, size_t len);

#endif
