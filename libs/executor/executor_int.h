/*
 * executor_int.h: what the files of sw_executor share, nothing public.
 *
 *   executor.c  the object, flow control (pause, drain), reports, emits
 *   consume.c   messages in, offsets out; dispatches and their duplicates
 *   results.c   the results table and the produce of step.finished
 *   finish.c    slots, cancels, and the composing of step.finished
 */
#ifndef EXECUTOR_INT_H
#define EXECUTOR_INT_H

#include "sw_executor.h"

/* Objects handed to the producer as msg_opaque start with one of these. */
#define EXEC_SETTLE_MAX 65536 /* messages held uncommitted before reading stops */
/* bytes of messages whose work is not done before reading stops, whatever
 * line_min says (cfg.line_bytes 0): what a long line of large dispatches
 * may hold */
#define EXEC_LINE_BYTES (32u << 20)
#define EXEC_TAG_OFFSET 0x6f666673u
#define EXEC_TAG_JOB 0x6a6f6273u

struct exec_part;

/* One consumed message whose offset waits for its effect. */
struct sw_executor_offset {
	uint32_t tag;
	TAILQ_ENTRY(sw_executor_offset) entry; /* part->offsets, in offset order */
	struct exec_part *part;
	int64_t offset;
	size_t bytes; /* the message's key and value, counted in nundone_bytes */
	int done;
};
TAILQ_HEAD(exec_offsetq, sw_executor_offset);

/* One (topic, partition) seen; kept while the executor lives. */
struct exec_part {
	LIST_ENTRY(exec_part) entry;
	char topic[64];
	int32_t partition;
	int64_t settled; /* last offset settled, -1 */
	struct exec_offsetq offsets;
};

TAILQ_HEAD(exec_jobq, sw_executor_job);

/* The newest attempt of a step consumed. */
struct exec_attempt {
	char run_id[64];
	char step[128];
	uint32_t hash; /* exec_hash(run_id, step): compared first */
	int attempt;
};

/* Why an attempt is no longer current (finish.c). */
enum exec_fence { EXEC_FENCE_EXPIRED, EXEC_FENCE_CANCELLED, EXEC_FENCE_FINISHED,
		  EXEC_FENCE_SUPERSEDED, EXEC_NFENCES };

struct sw_executor {
	struct sw_executor_config cfg; /* strings point into the fields below */
	char producer[64];
	char executor[192];
	char instance_id[SW_EXECUTOR_INSTANCE_MAX + 1];
	char dispatch_topic[128]; /* topics[0] of sw_executor_connect */
	struct sw_executor_ops ops;
	struct sw_bus_producer *bus_producer;
	struct sw_bus_consumer *consumer;
	char m_running[128], m_inflight[128], m_deadlettered[128], m_republished[128];
	char m_pure[128];
	char m_status[4][128];
	char m_fenced[EXEC_NFENCES][128];

	LIST_HEAD(, exec_part) parts;
	size_t noffsets; /* offsets not yet settled */
	size_t nundone;	 /* ... of which the message's effect is not done yet */
	size_t nundone_bytes; /* ... and their bytes */
	struct event *settle_ev;
	struct event *drain_timer;
	int paused;
	int draining;
	int halted;

	struct exec_jobq jobs;
	struct exec_jobq waitq;
	size_t njobs;
	int running;
	/* the rings are scanned for every dispatch: each id's exec_hash is
	 * compared before its text */
	char cancelled[SW_EXECUTOR_CANCEL_RING][64];
	uint32_t cancelled_hash[SW_EXECUTOR_CANCEL_RING];
	size_t cancel_next;
	char finished[SW_EXECUTOR_FINISHED_RING][64];
	uint32_t finished_hash[SW_EXECUTOR_FINISHED_RING];
	size_t finished_next;
	struct exec_attempt attempts[SW_EXECUTOR_ATTEMPT_RING];
	size_t attempt_next;

	/* results to save (results.c): queued while a save is in flight */
	struct sw_executor_job **saveq;
	size_t nsaveq, capsaveq;
	int saving; /* a save (of one job or a group) in flight */
};

#define EXEC_JOB_OF_TAG(t) \
	((struct sw_executor_job *)((char *)(t) - offsetof(struct sw_executor_job, tag)))

/* executor.c */
/* The service logs it: kv is NULL-terminated key/value pairs. */
void exec_report(struct sw_executor *ex, enum sw_executor_report_kind kind,
		 enum sw_log_level level, const char *msg, struct sw_executor_job *j,
		 const char *const *kv);
/* A report about a step: run_id and step_id of j, then kv (may be NULL). */
void exec_report_job(struct sw_executor *ex, enum sw_executor_report_kind kind,
		     enum sw_log_level level, const char *msg, struct sw_executor_job *j,
		     const char *const *kv);
void exec_fatal(struct sw_executor *ex, const char *what, const char *why);
/* Gauges, pause/resume, and the drain's end. */
void exec_flow(struct sw_executor *ex);

/* consume.c */
void exec_offset_done(struct sw_executor *ex, struct sw_executor_offset *o);
/* Drop the tracked messages and parts without storing anything. */
void exec_offsets_free(struct sw_executor *ex);
/* Free j and what it holds (ops->job_free first); j is out of the lists. */
void exec_job_free(struct sw_executor_job *j);
void exec_job_release(struct sw_executor_job *j);

/* results.c */
void exec_results_lookup(struct sw_executor_job *j);
void exec_results_save(struct sw_executor_job *j);

/* finish.c */
/* The lookup found nothing: the fences, then parse the spec, the preview
 * gate, ops->begin. */
void exec_preflight(struct sw_executor_job *j);
/* j (fields decoded, not yet in the jobs list) is an attempt of its step:
 * remember it as the newest, and stop the older attempts in flight. */
void exec_attempt_seen(struct sw_executor *ex, struct sw_executor_job *j);

#endif
