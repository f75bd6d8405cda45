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
 * before that redelivers them and the dedupe window (rebuilt from the log
 * at start) drops the copies; an id older than the window is looked up in
 * the index (dedupe.c). The index is rebuilt from the log for any seq it
 * lacks at start, so it may lag but never loses a record.
 *
 * Fail closed: a write or sync that fails leaves the batches with the
 * writer, which cuts the log back to its last sync and tries again with
 * backoff; nothing is committed meanwhile and /healthz says why.
 *
 * Checkpoints (checkpoint.c): every SAGEWAI_AUDIT_CHECKPOINT_RECORDS
 * records or SAGEWAI_AUDIT_CHECKPOINT_MS, the writer signs the log's head
 * into the log (sw_alog.h); once durable, the loop publishes it on
 * sagewai.audit.checkpoints.
 */
#ifndef AUDIT_H
#define AUDIT_H

#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>

#include "sw_alog.h"
#include "sw_auth.h"
#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_http.h"
#include "sw_service.h"
#include "sw_store.h"

#define AUDIT_MAX_BATCH 2000    /* messages handed to one batch callback */
#define AUDIT_MAX_INFLIGHT 64   /* queued batches before the consumer pauses */
#define AUDIT_INDEX_CHUNK 2000  /* index rows per INSERT */
#define AUDIT_SEGMENT_MAX (256u << 20) /* SAGEWAI_AUDIT_SEGMENT_BYTES default */
#define AUDIT_GATHER_MS 100 /* SAGEWAI_AUDIT_GATHER_MS default (docs/AUDIT.md "Gathering") */
#define AUDIT_MAX_BODY (64u << 10)
/* The smallest record: len 4 | seq 8 | prev 32 | body 23 (no topic, no
 * payload) | hash 32 (sw_alog.h); bounds the seqs a cut can have held. */
#define AUDIT_MIN_RECORD 99
#define AUDIT_TOPIC_REPAIRED "sagewai.audit.checkpoints" /* audit.repaired goes here */
#define AUDIT_RETRY_FIRST_MS 100 /* first backoff of a failed write */

/* One message of a batch: where it came from and what to do with it. */
struct audit_item {
	char *topic;
	int lookup;           /* its id is being looked up in the index */
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
	uint64_t no;          /* batches are numbered in consumption order */
	int lookup;           /* ids being looked up in the index (dedupe.c) */
	int queued;           /* handed to the writer */
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

/* Where raw records (dead letters, id = a digest of the place) of one
 * topic partition reach. */
struct audit_rawmax {
	char topic[64];
	int32_t partition;
	int64_t offset;
};
#define AUDIT_RAWMAX 64

/* One generation of the window: its ids, and what is needed to know,
 * once they are dropped, which ids may be among them. */
struct audit_gen {
	struct audit_idset ids;
	int nonv7;                    /* holds an event id that is no UUIDv7 */
	struct audit_rawmax raw[AUDIT_RAWMAX];
	size_t nraw;
	int raw_overflow;             /* more partitions than raw[] holds */
};

/*
 * The dedupe window: the ids of the last records in two generations (each
 * up to half the window); when the current one is full and the previous
 * one's records are all in the index, the previous one is dropped. What
 * was dropped is kept only as a summary: the seconds its UUIDv7 ids were
 * made in (ranges, at most AUDIT_RANGES, merged when more), whether any
 * was no UUIDv7, and per dead-letter partition the highest offset. An id
 * missed in memory that the summary says may have been dropped is looked
 * up in the index; any other is new.
 */
#define AUDIT_RANGES 4096
struct audit_dedupe {
	struct audit_gen gen[2];
	int cur;		/* gen[cur] takes new ids, gen[!cur] is the previous */
	size_t half;		/* a generation is full at this many ids */
	struct {
		uint64_t lo, hi; /* seconds since the epoch, inclusive */
	} *ranges;
	size_t nranges;
	int nonv7;		/* a dropped event id was no UUIDv7 */
	struct audit_rawmax raw[AUDIT_RAWMAX];
	size_t nraw;
	int raw_overflow;
	uint64_t dropped;	/* ids dropped so far */
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
	struct audit_dedupe seen;
	uint64_t batch_no;     /* the last batch's number */
	uint64_t settled_batch; /* the last settled batch's number */
	uint64_t seal_batch;   /* the previous generation's ids are all in batches <= this */
	int prev_known;        /* ... and those are settled: */
	uint64_t prev_max_seq; /* the highest seq they can have */
	uint64_t settled_seq;  /* the highest seq settled (offsets stored) */
	uint64_t indexed_seq;  /* the highest seq the index confirmed */
	int multi_tenant; /* SAGEWAI_MODE=multi_tenant: the API needs keys */
	void *repair_msg; /* audit.repaired recorded at open, to produce (owned) */
	size_t repair_len;

	/* batches in consumption order, from queueing until offsets stored */
	struct audit_batchq inflight;
	size_t ninflight;
	int paused;
	int draining; /* the first signal came: the consumer stays paused */
	int halted;   /* sw_service_fatal ran: take nothing more */

	/* settings (configure) */
	int64_t cp_records;    /* SAGEWAI_AUDIT_CHECKPOINT_RECORDS */
	int64_t cp_ms;         /* SAGEWAI_AUDIT_CHECKPOINT_MS */
	int64_t segment_bytes; /* SAGEWAI_AUDIT_SEGMENT_BYTES */
	int64_t segment_age_s; /* SAGEWAI_AUDIT_SEGMENT_AGE_S, 0: none */
	int64_t window;        /* SAGEWAI_AUDIT_DEDUPE_WINDOW */
	int64_t retry_max_ms;  /* SAGEWAI_AUDIT_RETRY_MAX_MS */
	int64_t gather_ms;     /* SAGEWAI_AUDIT_GATHER_MS, 0: every message at once */

	/* checkpoints: the signer and cps are the writer's once ingest runs */
	struct sw_alog_signer *signer; /* NULL: checkpoints off */
	char log_id[SW_ALOG_LOG_ID_MAX + 1]; /* DIR/log-id: the index's key, the checkpoints' */
	struct sw_alog_cpstate cps;
	struct event *cp_timer;
	int cp_tag;            /* its address marks checkpoint deliveries */
	uint64_t cp_published, cp_publish_errors;
	/* the log's last checkpoint record, rebuilt at recovery, published
	 * again at start if this key signed it (a crash may have come between
	 * its sync and its publish); have: rebuilt */
	struct sw_alog_checkpoint cp_last;
	int cp_last_have;

	/* the writer thread; inflight, wq, cp_due, cp_out, the failure state
	 * and the batches' written, failed and pending_dl are under writer.mu
	 * while it runs */
	struct sw_handoff writer;
	struct audit_batchq wq; /* waiting for the writer */
	int cp_due;             /* the checkpoint interval passed */
	struct sw_alog_checkpoint *cp_out; /* durable, to publish */
	size_t ncp_out, capcp_out;
	int failing;            /* the log cannot be written: nothing is committed */
	char fail_reason[256];
	int64_t fail_since_us;
	uint64_t fail_attempts;
	int fail_logged;        /* the loop said so (loop only) */
	char health_why[400];   /* /healthz's reason (loop only) */
	uint64_t appended, duplicates, deadlettered, skipped, indexed_rows, lookups;
	int index_busy;
	struct audit_feed *feed; /* feed.c: the long polls of GET /v1/audit/events */
};

/* idset.c */
int audit_idset_init(struct audit_idset *s, size_t cap);
void audit_idset_free(struct audit_idset *s);
/* 1 when id was added, 0 when already present, -1 on allocation failure */
int audit_idset_add(struct audit_idset *s, const uint8_t id[16]);
/* 1 when present */
int audit_idset_has(const struct audit_idset *s, const uint8_t id[16]);
void audit_raw_id(const char *topic, size_t topic_len, int32_t partition, int64_t offset,
		  uint8_t out[16]);

/* dedupe.c */
#define AUDIT_DD_NEW 1     /* not seen: certainly new */
#define AUDIT_DD_DUP 0     /* in the window: a duplicate */
#define AUDIT_DD_ASK 2     /* not in the window, may be older: ask the index */
/* window: ids kept at least (two generations of window / 2). 0 or -1. */
int audit_dedupe_init(struct audit_dedupe *d, size_t window);
void audit_dedupe_free(struct audit_dedupe *d);
/* Add id (raw: topic is the record's topic and partition/offset its
 * place; an event: topic NULL). AUDIT_DD_* or -1 (out of memory). */
int audit_dedupe_add(struct audit_dedupe *d, const uint8_t id[16], const char *topic,
		     int32_t partition, int64_t offset);
/* Non-zero when the previous generation should go (once the index holds
 * its records): the current one is full, or both hold more than the
 * window. */
int audit_dedupe_full(const struct audit_dedupe *d);
/* Drop the previous generation into the summary; the current becomes the
 * previous. 0 or -1 (out of memory: nothing changed). */
int audit_dedupe_rotate(struct audit_dedupe *d);
size_t audit_dedupe_len(const struct audit_dedupe *d);

/* ingest.c */
/* /healthz: why it is not healthy, NULL when it is. */
const char *audit_health_why(struct audit_env *env);
/* Hand the batches the dedupe window is done with to the writer, in order. */
void audit_ingest_dispatch(struct audit_env *env);
/* Drop the window's previous generation if it is due and all in the index
 * (after an id is added, a batch settled, an index insert confirmed). */
void audit_ingest_window(struct audit_env *env);
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

/* checkpoint.c */
/* The settings and the signing key (SAGEWAI_AUDIT_SIGNING_KEY_FILE). */
int audit_config_load(struct audit_env *env, char *errstr, size_t errlen);
/* The checkpoint state, from a record read back in order from seq 1; once
 * all are read, check that the log's checkpoints name env->log_id (the
 * log-id file's, audit_log_open). 0, or -1 with errstr. */
void audit_cp_feed(struct audit_env *env, const struct sw_alog_rec *rec);
int audit_cp_recovered(struct audit_env *env, char *errstr, size_t errlen);
/* At start, once the producer is up: publish the log's last checkpoint
 * again. A kill between a checkpoint's sync and its publish, with no
 * record coming after, would otherwise leave the records it covers
 * unprotected off-box; a checkpoint published twice is harmless (verify
 * checks each). */
void audit_cp_republish(struct audit_env *env);
/* The checkpoint timer. */
int audit_cp_start(struct audit_env *env, char *errstr, size_t errlen);
void audit_cp_stop(struct audit_env *env);
/* Writer thread: append a checkpoint dated at_us when one is due (force:
 * the timer said so). 1 appended (cp filled), 0 none due, -1 with errstr. */
int audit_cp_maybe(struct audit_env *env, int force, int64_t at_us, struct sw_alog_checkpoint *cp,
		   char *errstr, size_t errlen);
/* Loop: publish durable checkpoints (n of them, cps taken, freed). */
void audit_cp_publish(struct audit_env *env, struct sw_alog_checkpoint *cps, size_t n);
/* A delivery report of a published checkpoint. */
void audit_cp_delivered(struct audit_env *env, const char *err);

/* index.c */
extern const struct sw_migration audit_migrations[];
extern const size_t audit_nmigrations;
/* Queue the index rows of items (and, before them, the key-table effect of
 * their tenant.* and apikey.* events). */
void audit_index_items(struct audit_env *env, const struct audit_item *items, size_t n);
/* Rows indexed before the index had log ids (log_id ''; one index served
 * one log then) become this log's; with empty set (this log has no record)
 * such rows are an error: their log is not here. 0, or -1 with errstr. */
int audit_index_adopt(struct audit_env *env, int empty, char *errstr, size_t errlen);
/* The highest seq the index holds of this log (0: none). 0, or -1 with
 * errstr. */
int audit_index_max_seq(struct audit_env *env, uint64_t *max, char *errstr, size_t errlen);
int audit_index_catch_up(struct audit_env *env, char *errstr, size_t errlen);
/* At stop, after ingest: let the index rows still queued reach PostgreSQL
 * (the loop runs for them, at most ms; the log has them anyway). */
void audit_index_flush(struct audit_env *env, int ms);
/* Look up a batch's AUDIT_DD_ASK items (it->lookup set) in the index;
 * those found become duplicates, then the batch goes on
 * (audit_ingest_dispatch). */
void audit_dedupe_lookup(struct audit_env *env, struct audit_batch *b);

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
int audit_cmd_keygen(int argc, char **argv);
int audit_cmd_export(int argc, char **argv);

#endif
