/*
 * sagewai-worker: executes the in_process steps of workflow runs
 * (docs/RUNS.md). One process, one libevent loop; nothing blocks it.
 *
 * Flow of one step.dispatched message: the mechanics are sw_executor's
 * (libs/executor: offsets, duplicates, the results table in schema
 * "worker", concurrency slots, cancels, step.finished); the worker adds
 *
 *   exec.c      the preflight of its own (mode, spec.uses, output_max) and,
 *               in a slot, the step kind:
 *                 template   inline
 *                 llm        llm.c, over libcurl multi (httpstep.c)
 *                 http       httpstep.c, over libcurl multi
 *                 plugin:X   plugin.c, on the plugin threads (sw_handoff)
 *               the outcome (or a timeout / cancel) goes to
 *               sw_executor_finish, with the LLM key masked in every text
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

#include <stdint.h>
#include <sys/queue.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "sw_addr.h"
#include "sagewai_plugin.h"
#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_executor.h"
#include "sw_http.h"
#include "sw_service.h"
#include "sw_store.h"

#define WORKER_PRODUCER "sagewai-worker"
#define WORKER_DEFAULT_GROUP "sagewai-worker"
#define WORKER_OUTPUT_MAX_DEFAULT (1u << 20) /* 1 MiB */
#define WORKER_CONCURRENCY_DEFAULT 64
/* step.started of a quick step is one more event for every reader of
 * sagewai.steps, and goes ahead of its outcome: put off this long */
#define WORKER_STARTED_AFTER_MS_DEFAULT 20
#define WORKER_PG_POOL_DEFAULT 4
#define WORKER_LINE_MIN 4096 /* messages held before pausing the consumer, at least */
#define WORKER_PLUGIN_THREADS 2
#define WORKER_POOL_STOP_MS 5000 /* then a thread stuck in a plugin is left behind */
#define WORKER_BUS_MAX_DEFAULT 1000000 /* librdkafka's message.max.bytes default */
#define WORKER_DRAIN_S 10	       /* grace for running steps at shutdown */
#define WORKER_HTTP_REDIRECTS 5	       /* redirects an http step follows, at most */

enum job_kind { KIND_NONE, KIND_TEMPLATE, KIND_LLM, KIND_HTTP, KIND_PLUGIN, KIND_REPLAY };

struct worker_task;

/* The worker's part of a step.dispatched being handled (x->owner). */
struct worker_job {
	struct sw_executor_job *x; /* the dispatch, its phase and step.finished */
	struct worker_env *env;
	json_t *with;	  /* borrowed from x->spec */
	const char *uses; /* borrowed from x->spec */
	size_t output_max;
	struct event *timer; /* step timeout */

	enum job_kind kind;
	/* llm / http */
	CURL *easy;
	struct curl_slist *hdrs;
	char *req_body;
	struct sw_buf resp; /* capped: over when the peer sent more than max */
	char curl_err[CURL_ERROR_SIZE];
	char refused[256]; /* http: the first destination refused, and why */
	/* plugin */
	struct worker_task *task;
	/* replay: spec.replay of a re-run's llm or http step (borrowed) */
	json_t *replay;
};

/* A plugin loaded at start. */
struct worker_plugin {
	char path[1024];
	void *dl;
	const struct sagewai_plugin *desc;
};

/* One plugin call, shared by the loop and a pool thread (under pool.mu). */
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
	struct sw_service *svc;
	const struct sw_config *cfg; /* the frame's, set in configure */
	struct event_base *base;     /* the frame's, set in start */
	struct sw_metrics *metrics;  /* the frame's, set in start */
	struct sw_event_registry *reg;
	struct sw_store *store;
	struct sw_executor *ex;
	int connected;	   /* the executor's Kafka clients exist */
	const char *group; /* the consumer group */
	int curl_global; /* curl_global_init ran */

	/* settings */
	char llm_base[512];
	char llm_key[512]; /* never logged, never in an event */
	char llm_model[128];
	size_t output_cap; /* SAGEWAI_STEP_OUTPUT_MAX */
	size_t bus_max;	   /* largest event the bus carries */
	int concurrency;
	int started_after_ms;	/* SAGEWAI_WORKER_STARTED_AFTER_MS */
	int produce_at_once;	/* SAGEWAI_WORKER_PRODUCE_GATHER=0 */
	size_t pg_pool;		/* SAGEWAI_PG_POOL */
	int multi_tenant;
	int sealed_preview;
	int ignore_other_modes; /* SAGEWAI_WORKER_OTHER_MODES=ignore: sandboxd takes them */
	struct sw_addr_allow http_allow; /* SAGEWAI_HTTP_ALLOW, parsed (sw_addr.h) */
	const char *http_allow_spec;	/* as given, for the start line */

	/* curl multi on the loop */
	CURLM *multi;
	struct event *curl_timer;

	/* plugins */
	struct worker_plugin *plugins;
	size_t nplugins;
	struct sw_handoff pool; /* WORKER_PLUGIN_THREADS threads, none without plugins */
	struct worker_taskq pool_queue, pool_done; /* under pool.mu */
	int pool_stuck; /* a thread is still in a plugin: leave the plugins mapped */
};

/* exec.c: the executor, its callbacks and the steps' own preflight */
/* The results table (schema "worker") and the executor on it. */
int worker_exec_new(struct worker_env *env, char *errstr, size_t errlen);
/* The executor's Kafka clients: the group reads sagewai.steps and
 * sagewai.runs. */
int worker_exec_connect(struct worker_env *env, char *errstr, size_t errlen);
/* Deliver what is due, commit and leave the group (once connected), then
 * free the executor and the store. */
void worker_exec_close(struct worker_env *env);
/* The step ended: sw_executor_finishf on j's dispatch (output stolen, may
 * be NULL; fmt the error text "<code>: <message>" for a status other than
 * SUCCEEDED). Only the first call for an attempt counts. */
#define worker_exec_finish(j, ...) sw_executor_finishf((j)->x, __VA_ARGS__)
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
/* Stop the threads; one stuck in a plugin is left to the process exit. */
void worker_pool_stop(struct worker_env *env);
void worker_plugins_unload(struct worker_env *env);
void worker_plugin_start(struct worker_job *j, const char *name);
/* Detach a running plugin call from its job (timeout, cancel). */
void worker_plugin_abandon(struct worker_job *j);

#endif
