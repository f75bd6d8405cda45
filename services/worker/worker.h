/*
 * sagewai-worker: executes the in_process steps of workflow runs
 * (docs/RUNS.md). One process, one libevent loop; nothing blocks it.
 *
 * Flow of one step.dispatched message:
 *
 *   consume.c   decode; a duplicate of a dispatch still in flight joins it;
 *               else a job is made and the results table is asked for it
 *   results.c   hit: the stored step.finished bytes are re-published as they
 *               are (same event id), nothing runs again
 *   exec.c      miss: preview gate, mode, spec checks; then, within the
 *               concurrency cap, step.started and the step kind:
 *                 template   inline
 *                 llm        llm.c, over libcurl multi (httpstep.c)
 *                 http       httpstep.c, over libcurl multi
 *                 plugin:X   plugin.c, on the plugin thread pool
 *               the outcome (or a timeout / cancel) becomes step.finished,
 *               encoded once with a fresh event id
 *   results.c   the encoded event is stored by dispatch id (the stored row
 *               wins over a concurrent copy)
 *   consume.c   it is produced (idempotent producer); on its delivery
 *               report the message's offset is marked done, and offsets are
 *               stored and committed per partition up to the first message
 *               not yet done.
 *
 * So offsets advance only past durable effects, a crash re-delivers the
 * dispatch, and the results row turns the re-delivery into a re-publication.
 *
 * The worker's one group reads sagewai.steps and sagewai.runs. Both have
 * the same partition count and key (run id), and the range assignor gives
 * a member the same partition numbers of both, so the member running a
 * run's steps is the one that sees its run.cancel_requested.
 */
#ifndef WORKER_H
#define WORKER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/queue.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "sagewai_plugin.h"
#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_http.h"
#include "sw_store.h"

#define WORKER_PRODUCER "sagewai-worker"
#define WORKER_DEFAULT_GROUP "sagewai-worker"
#define WORKER_OUTPUT_MAX_DEFAULT (1u << 20) /* 1 MiB */
#define WORKER_CONCURRENCY_DEFAULT 64
#define WORKER_PG_POOL_DEFAULT 4
#define WORKER_LINE_MIN 4096 /* messages held before pausing the consumer, at least */
#define WORKER_PLUGIN_THREADS 2
#define WORKER_BUS_MAX_DEFAULT 1000000 /* librdkafka's message.max.bytes default */
#define WORKER_CANCEL_RING 256	       /* run ids remembered as cancelled */
#define WORKER_DRAIN_S 10	       /* grace for running steps at shutdown */
#define WORKER_ERR_MAX 1024	       /* longest error text of a step */

/* Objects handed to the producer as msg_opaque start with this tag. */
enum worker_tag { WORKER_TAG_OFFSET = 0x6f666673, WORKER_TAG_JOB = 0x6a6f6273 };

struct worker_part;

/* One consumed message whose offset waits for its effect. */
struct worker_offset {
	enum worker_tag tag;
	TAILQ_ENTRY(worker_offset) entry; /* part->offsets, in offset order */
	struct worker_part *part;
	int64_t offset;
	int done;
};
TAILQ_HEAD(worker_offsetq, worker_offset);

/* One (topic, partition) with messages in flight. */
struct worker_part {
	LIST_ENTRY(worker_part) entry;
	char topic[64];
	int32_t partition;
	struct worker_offsetq offsets;
};

enum job_state {
	JOB_LOOKUP,	/* asking the results table */
	JOB_QUEUED,	/* waiting for a concurrency slot */
	JOB_RUNNING,	/* step.started sent, kind executing */
	JOB_SAVING,	/* step.finished encoded, results row being written */
	JOB_PUBLISHING, /* step.finished produced, delivery report awaited */
};

enum job_kind { KIND_NONE, KIND_TEMPLATE, KIND_LLM, KIND_HTTP, KIND_PLUGIN };

enum step_status { STEP_SUCCEEDED, STEP_FAILED, STEP_TIMED_OUT, STEP_CANCELLED };

struct worker_task;

/* A growable response buffer with a hard cap. */
struct worker_buf {
	char *p;
	size_t len, cap, max;
	int over; /* the peer sent more than max */
};

/* One step.dispatched being handled. */
struct worker_job {
	enum worker_tag tag;
	TAILQ_ENTRY(worker_job) entry;	/* env->jobs */
	TAILQ_ENTRY(worker_job) qentry; /* env->waitq while JOB_QUEUED */
	struct worker_env *env;
	enum job_state state;
	struct worker_offset *off;   /* the dispatch message */
	struct worker_offset **dups; /* later copies of the same dispatch */
	size_t ndups;

	struct sw_event_header dh; /* the dispatch's header */
	char step[128];
	char mode[32];
	int attempt;
	int64_t timeout_ms;
	char *spec_text;  /* the raw spec (owned) */
	json_t *spec;	  /* parsed spec, NULL until preflight */
	json_t *with;	  /* borrowed from spec */
	const char *uses; /* borrowed from spec */
	size_t output_max;
	int64_t t0_ns;	     /* monotonic start of the attempt */
	struct event *timer; /* step timeout */

	enum job_kind kind;
	/* llm / http */
	CURL *easy;
	struct curl_slist *hdrs;
	char *req_body;
	struct worker_buf resp;
	char curl_err[CURL_ERROR_SIZE];
	/* plugin */
	struct worker_task *task;

	/* the step.finished event, encoded */
	int status;
	char *finished;
	size_t finished_len;
};
TAILQ_HEAD(worker_jobq, worker_job);

/* A plugin loaded at start. */
struct worker_plugin {
	char path[1024];
	void *dl;
	const struct sagewai_plugin *desc;
};

/* One plugin call, shared by the loop and a pool thread (under pool_mu). */
struct worker_task {
	TAILQ_ENTRY(worker_task) entry; /* pool_queue or pool_done */
	const struct sagewai_plugin *plugin;
	struct worker_job *job; /* NULL once abandoned (loop thread only) */
	int started;		/* a thread took it */
	char *input;
	size_t len;
	int rc;
	char *output; /* malloc'd copy of the plugin's output */
	size_t output_len;
	char err[512];
};
TAILQ_HEAD(worker_taskq, worker_task);

struct worker_env {
	struct sw_config cfg;
	struct event_base *base;
	struct sw_event_registry *reg;
	struct sw_store *store;
	struct sw_bus_producer *producer;
	struct sw_bus_consumer *consumer;
	struct sw_http *http;
	struct sw_metrics *metrics;
	char executor[192];

	/* settings */
	char llm_base[512];
	char llm_key[512]; /* never logged, never in an event */
	char llm_model[128];
	size_t output_cap; /* SAGEWAI_STEP_OUTPUT_MAX */
	size_t bus_max;	   /* largest event the bus carries */
	int concurrency;
	size_t pg_pool;		/* SAGEWAI_PG_POOL */
	int multi_tenant;
	int sealed_preview;
	int ignore_other_modes; /* SAGEWAI_WORKER_OTHER_MODES=ignore: sandboxd takes them */

	/* consumption */
	LIST_HEAD(, worker_part) parts;
	size_t noffsets; /* offsets not yet settled */
	struct event *settle_ev;
	int paused;
	int draining;
	struct event *drain_timer;

	/* jobs */
	struct worker_jobq jobs;
	struct worker_jobq waitq;
	size_t njobs;
	int running;
	char cancelled[WORKER_CANCEL_RING][64];
	size_t cancel_next;

	/* curl multi on the loop */
	CURLM *multi;
	struct event *curl_timer;

	/* plugins */
	struct worker_plugin *plugins;
	size_t nplugins;
	pthread_t pool[WORKER_PLUGIN_THREADS];
	int npool;
	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv;
	struct worker_taskq pool_queue, pool_done;
	int pool_stop;
	struct event *pool_ev;

	struct event *sigterm, *sigint;
	int exit_code;
	uint64_t deadlettered, ignored, republished;
};

/* main.c */
void worker_fatal(struct worker_env *env, const char *what, const char *why);

/* consume.c */
int worker_consume_init(struct worker_env *env, char *errstr, size_t errlen);
void worker_consume_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque);
void worker_consume_delivery(const char *err, void *msg_opaque, void *opaque);
/* Mark a message done; offsets are stored/committed on the next loop turn. */
void worker_offset_done(struct worker_env *env, struct worker_offset *o);
/* The job's message (and its duplicates) are done: free the job. */
void worker_job_release(struct worker_job *j);
/* Re-evaluate pause/resume and the shutdown drain. */
void worker_flow(struct worker_env *env);
/* Store (not commit) the offsets of leading done messages now. */
void worker_consume_settle(struct worker_env *env);
void worker_consume_stop(struct worker_env *env);

/* exec.c */
/* The results table has no row: check and run (or queue) the step. */
void worker_exec_begin(struct worker_job *j);
/* The step ended: steals output (may be NULL); fmt is the error text
 * "<code>: <message>" for a status other than SUCCEEDED. Encodes
 * step.finished and hands it to results_save. Idempotent: only the
 * first call for an attempt counts. */
void worker_exec_finish(struct worker_job *j, enum step_status st, json_t *output, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));
/* run.cancel_requested for run_id: abort or pre-empt its steps. */
void worker_exec_cancel(struct worker_env *env, const char *run_id);
int worker_exec_was_cancelled(struct worker_env *env, const char *run_id);
/* A malloc'd copy of s with every occurrence of the LLM key masked;
 * NULL when out of memory. */
char *worker_redact(const struct worker_env *env, const char *s);

/* httpstep.c: libcurl multi on the event loop, and the http kind */
int worker_curl_init(struct worker_env *env, char *errstr, size_t errlen);
void worker_curl_cleanup(struct worker_env *env);
/* Start j->easy (already configured) on the loop. 0 or -1. */
int worker_curl_add(struct worker_job *j);
/* Stop j->easy and free the request state; safe when nothing runs. */
void worker_curl_abort(struct worker_job *j);
/* Set the options every step transfer shares (buffer, timeout, protocols). */
void worker_curl_common(struct worker_job *j, size_t resp_max);
void worker_http_start(struct worker_job *j);
void worker_http_done(struct worker_job *j, CURLcode rc, long status);

/* llm.c */
void worker_llm_start(struct worker_job *j);
void worker_llm_done(struct worker_job *j, CURLcode rc, long status);

/* plugin.c */
int worker_plugins_load(struct worker_env *env, const char *dir, char *errstr, size_t errlen);
int worker_pool_start(struct worker_env *env, char *errstr, size_t errlen);
void worker_pool_stop(struct worker_env *env);
void worker_plugins_unload(struct worker_env *env);
void worker_plugin_start(struct worker_job *j, const char *name);
/* Detach a running plugin call from its job (timeout, cancel). */
void worker_plugin_abandon(struct worker_job *j);

/* results.c */
extern const struct sw_migration worker_migrations[];
extern const size_t worker_nmigrations;
void worker_results_lookup(struct worker_job *j);
void worker_results_save(struct worker_job *j);
/* Produce j->finished and wait for its delivery report. */
void worker_publish(struct worker_job *j);

/* buffers */
int worker_buf_add(struct worker_buf *b, const void *p, size_t n);
void worker_buf_free(struct worker_buf *b);

#endif
