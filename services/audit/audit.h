/*
 * sagewai-audit: the append-only, hash-chained log of every event on every
 * sagewai.* topic (but sagewai.identity.sealed), with its index in
 * PostgreSQL and the HTTP query API.
 *
 * Flow of one consumed batch:
 *
 *   loop thread                      writer thread (sw_handoff)
 *   ingest_batch(): decode header,
 *   drop duplicates (dedupe set),
 *   dead-letter garbage, queue  ---> append all queued batches,
 *                                    one fdatasync (group commit)
 *   settle() <----------------------  wake the loop
 *   in batch order, once written and every dead-letter delivery is
 *   confirmed: store offsets, commit, queue index rows to PostgreSQL.
 *
 * Offsets are committed only after the records are durable; a crash
 * before that redelivers them and the dedupe set (rebuilt from the log at
 * start) drops the copies. The index is rebuilt from the log for any seq
 * it lacks at start, so it may lag but never loses a record.
 */
#ifndef AUDIT_H
#define AUDIT_H

#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>

#include "sw_alog.h"
#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_http.h"
#include "sw_service.h"
#include "sw_store.h"

#define AUDIT_MAX_BATCH 2000    /* messages handed to one batch callback */
#define AUDIT_MAX_INFLIGHT 64   /* queued batches before the consumer pauses */
#define AUDIT_INDEX_CHUNK 2000  /* index rows per INSERT */
#define AUDIT_SEGMENT_MAX (256u << 20)
#define AUDIT_MAX_BODY (64u << 10)
/* The smallest record: len 4 | seq 8 | prev 32 | body 23 (no topic, no
 * payload) | hash 32 (sw_alog.h); bounds the seqs a cut can have held. */
#define AUDIT_MIN_RECORD 99
#define AUDIT_TOPIC_REPAIRED "sagewai.audit.checkpoints" /* audit.repaired goes here */

/* One message of a batch: where it came from and what to do with it. */
struct audit_item {
	char *topic;
	int32_t partition;
	int64_t offset;
	int64_t time_us;
	uint8_t kind;         /* SW_ALOG_EVENT / SW_ALOG_RAW; 0 = store offset only */
	void *payload;        /* copy of the message value (kind != 0) */
	size_t len;
	uint8_t id[16];       /* event id, or a digest of topic/partition/offset for raw */
	char run_id[64];
	char type[64];
	char tenant[128];     /* header.tenant: the tenant id */
	uint64_t seq, segment, file_off; /* filled by the writer */
};

struct audit_batch {
	TAILQ_ENTRY(audit_batch) entry;  /* env->inflight */
	TAILQ_ENTRY(audit_batch) wentry; /* env->wq */
	struct audit_item *items;
	size_t n;
	int pending_dl;       /* dead-letter deliveries not yet confirmed */
	int written;          /* set by the writer once durable */
	int failed;           /* the writer could not make it durable */
	char error[256];
};
TAILQ_HEAD(audit_batchq, audit_batch);

struct audit_feed; /* feed.c */

/* Open-addressing set of 16-byte ids. */
struct audit_idset {
	uint8_t (*slots)[16];
	size_t cap, len;
};

struct audit_env {
	struct sw_service *svc;
	const struct sw_config *cfg; /* the frame's, set in start */
	struct event_base *base;     /* the frame's */
	struct sw_event_registry *reg;
	struct sw_alog *log;
	char log_dir[SW_CONFIG_STR + 16];
	struct sw_store *store;
	struct sw_bus_producer *producer;
	struct sw_bus_consumer *consumer;
	const char *group; /* the consumer group */
	struct sw_http *http;	     /* the frame's */
	struct sw_metrics *metrics;  /* the frame's */
	struct audit_idset seen;
	int multi_tenant; /* SAGEWAI_MODE=multi_tenant: the API needs keys */
	void *repair_msg; /* audit.repaired recorded at open, to produce (owned) */
	size_t repair_len;

	/* batches in consumption order, from queueing until offsets stored */
	struct audit_batchq inflight;
	size_t ninflight;
	int paused;
	int draining; /* the first signal came: the consumer stays paused */
	int halted;   /* sw_service_fatal ran: take nothing more */

	/* the writer thread; inflight, wq and the batches' written, failed
	 * and pending_dl are under writer.mu while it runs */
	struct sw_handoff writer;
	struct audit_batchq wq; /* waiting for the writer */
	uint64_t appended, duplicates, deadlettered, skipped, indexed_rows;
	int index_busy;
	struct audit_feed *feed; /* feed.c: the long polls of GET /v1/audit/events */
};

/* idset.c */
int audit_idset_init(struct audit_idset *s, size_t cap);
void audit_idset_free(struct audit_idset *s);
/* 1 when id was added, 0 when already present, -1 on allocation failure */
int audit_idset_add(struct audit_idset *s, const uint8_t id[16]);
void audit_raw_id(const char *topic, size_t topic_len, int32_t partition, int64_t offset,
		  uint8_t out[16]);

/* ingest.c */
/* Create $SAGEWAI_DATA_DIR/audit and open the log there. Needs the store:
 * a log that ends before the index's highest seq is refused (errstr names
 * both seqs); a torn tail is cut and recorded as audit.repaired, appended
 * to the log and produced once ingest starts. */
int audit_log_open(struct audit_env *env, char *errstr, size_t errlen);
/* The dead-letter producer, the writer thread and the consumer. */
int audit_ingest_start(struct audit_env *env, char *errstr, size_t errlen);
/* Stop the writer once it wrote what is queued, and settle. */
void audit_ingest_stop(struct audit_env *env);
/* Drain: pause the consumer for good; audit_ingest_idle says when every
 * consumed batch is settled. */
void audit_ingest_drain(struct audit_env *env);
int audit_ingest_idle(const struct audit_env *env);
void audit_ingest_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque);
void audit_ingest_delivery(const char *err, void *msg_opaque, void *opaque);
/* Rebuild the dedupe set and bring the index up to the log's end. */
int audit_recover(struct audit_env *env, char *errstr, size_t errlen);

/* index.c */
extern const struct sw_migration audit_migrations[];
extern const size_t audit_nmigrations;
/* Queue the index rows of items (and, before them, the key-table effect of
 * their tenant.* and apikey.* events). */
void audit_index_items(struct audit_env *env, const struct audit_item *items, size_t n);
/* The highest seq the index holds (0: none). 0, or -1 with errstr. */
int audit_index_max_seq(struct audit_env *env, uint64_t *max, char *errstr, size_t errlen);
int audit_index_catch_up(struct audit_env *env, char *errstr, size_t errlen);

/* api.c */
int audit_api_start(struct audit_env *env, char *errstr, size_t errlen);
/* 1 for a run id of 1-63 characters of [A-Za-z0-9._-]. */
int audit_valid_run_id(const char *s);
/* The record at (segment, file_off) as an answer's item: {"seq", "topic",
 * "partition", "offset", "time_us", "event" | "decode_error"}. NULL with
 * errstr when it cannot be read. */
json_t *audit_api_item(struct audit_env *env, uint64_t segment, uint64_t file_off, char *errstr,
		       size_t errlen);
/* Who may read: called with req and NULL (every tenant: single_org, or an
 * auditor's key) or the tenant id of a tenant's key; or, after the refusal
 * (401, 503) was sent, with req NULL, for the caller to free its state. */
typedef void (*audit_auth_cb)(struct evhttp_request *req, const char *tenant, void *opaque);
void audit_api_auth(struct audit_env *env, struct evhttp_request *req, audit_auth_cb cb,
		    void *opaque);

/* feed.c: GET /v1/audit/events, with long polls woken by the index */
int audit_feed_start(struct audit_env *env, char *errstr, size_t errlen);
/* The index confirmed rows up to seq: answer the polls waiting for them. */
void audit_feed_wake(struct audit_env *env, uint64_t seq);
/* Answer every waiting poll (empty) before the HTTP server goes. */
void audit_feed_stop(struct audit_env *env);

/* tool.c: the offline commands */
int audit_cmd_verify(int argc, char **argv);
int audit_cmd_dump(int argc, char **argv);

#endif
