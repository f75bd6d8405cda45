/*
 * sw_bus: Kafka for Sagewai services, driven by a libevent loop.
 *
 * librdkafka's queues signal a pipe (rd_kafka_queue_io_event_enable) that
 * the event base watches, so no callback ever blocks on Kafka. The producer
 * is idempotent with acks=all. The consumer is a group member that never
 * auto-commits: the service stores an offset only once the message's
 * effect is durable, and the bus commits stored offsets.
 *
 * Topic names: SW_TOPIC_* below. The message key is the run id.
 */
#ifndef SW_BUS_H
#define SW_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#define SW_TOPIC_RUNS "sagewai.runs"
#define SW_TOPIC_STEPS "sagewai.steps"
/* step.dispatched, by who runs the step: a topic per executor kind, so that
 * an executor wakes for its own work only, not for every step event of
 * every run (docs/KAFKA.md "Topics by reader") */
#define SW_TOPIC_STEPS_WORKER "sagewai.steps.worker"
#define SW_TOPIC_STEPS_SANDBOX "sagewai.steps.sandbox"
#define SW_TOPIC_IDENTITY "sagewai.identity"
#define SW_TOPIC_IDENTITY_SEALED "sagewai.identity.sealed"
#define SW_TOPIC_IDENTITY_REPLIES "sagewai.identity.replies"
#define SW_TOPIC_SANDBOX "sagewai.sandbox"
#define SW_TOPIC_CREDENTIALS "sagewai.credentials"
#define SW_TOPIC_AUDIT_CHECKPOINTS "sagewai.audit.checkpoints"
#define SW_TOPIC_DEADLETTER "sagewai.deadletter"
#define SW_TOPIC_TENANTS "sagewai.tenants"

/* All topics, NULL-terminated (for devbroker and infra). */
extern const char *const sw_bus_topics[];

/* The topic a step of mode (its name: "in_process", "sandboxed", ...) is
 * dispatched on: SW_TOPIC_STEPS_WORKER for in_process, else
 * SW_TOPIC_STEPS_SANDBOX. */
const char *sw_bus_dispatch_topic(const char *mode);

/* Extra librdkafka properties (name=value pairs, NULL-terminated array,
 * may be NULL) let tests and operators tune the client. Each entry is one
 * "name=value" string, applied after our defaults; the guarantees stated
 * below (idempotence, acks=all, no auto commit) cannot be overridden.
 * librdkafka's own logging is off unless a "debug=..." entry is given. */

/* Errors from librdkafka (all brokers down, a failed commit, a fatal
 * idempotence error...), served from the event base. fatal != 0 means the
 * client is unusable and must be destroyed. Optional: librdkafka retries
 * transient errors itself, so without a callback they are dropped. */
typedef void (*sw_bus_error_cb)(int fatal, const char *reason, void *opaque);

/* ---- producer --------------------------------------------------------- */

struct sw_bus_producer;

/* Delivery report: err is NULL on success, else a reason. */
typedef void (*sw_bus_delivery_cb)(const char *err, void *msg_opaque, void *opaque);

/* Idempotent producer (enable.idempotence=true, acks=all). dr may be NULL.
 * Delivery reports are served from the event base. */
struct sw_bus_producer *sw_bus_producer_new(struct event_base *base, const char *bootstrap,
					    const char *client_id, const char *const *extra,
					    sw_bus_delivery_cb dr, void *opaque, char *errstr,
					    size_t errlen);
/* Copies key and value. headers: NULL-terminated name,value pairs or NULL.
 * 0, or -1 with errstr (queue full, unknown topic...). */
int sw_bus_produce(struct sw_bus_producer *p, const char *topic, const char *key,
		   const void *value, size_t len, const char *const *headers, void *msg_opaque,
		   char *errstr, size_t errlen);
/* Gathering on (on != 0): a message produced while others are in flight
 * waits, in order, until all of them are delivered, then goes with the
 * rest produced meanwhile as one burst; with none in flight it goes at the
 * end of the event base's current pass. Off by default (each message goes
 * to librdkafka at once). See producer.c for why. */
void sw_bus_producer_gather(struct sw_bus_producer *p, int on);
/* Block until all outstanding messages are delivered or timeout. For
 * shutdown and tools only, never from a callback. 0 or -1. */
int sw_bus_producer_flush(struct sw_bus_producer *p, int timeout_ms);
/* Messages not yet delivered (held ones included). */
int sw_bus_producer_outq(struct sw_bus_producer *p);
/* The librdkafka statistics JSON idempotence state ("Assigned" when a
 * producer id is held), for checks; copied into buf. 0 or -1. */
int sw_bus_producer_idemp_state(struct sw_bus_producer *p, char *buf, size_t len,
				int64_t *producer_id);
/* Does not flush: call sw_bus_producer_flush first to deliver the queue. */
void sw_bus_producer_destroy(struct sw_bus_producer *p);
void sw_bus_producer_set_error_cb(struct sw_bus_producer *p, sw_bus_error_cb cb, void *opaque);

/* ---- consumer --------------------------------------------------------- */

struct sw_bus_msg {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const void *key;
	size_t key_len;
	const void *value;
	size_t len;
	int64_t timestamp_ms;
	void *rk_msg; /* the underlying rd_kafka_message_t, for sw_bus_msg_header */
};

/* Called with up to max_batch messages each time the queue has data. The
 * messages are valid only during the call. */
typedef void (*sw_bus_batch_cb)(const struct sw_bus_msg *msgs, size_t n, void *opaque);

struct sw_bus_consumer;

/* Join group and subscribe to topics (NULL-terminated; an entry starting
 * with '^' is a regex, e.g. "^sagewai\\..*"). enable.auto.commit and
 * enable.auto.offset.store are off; auto.offset.reset=earliest. */
struct sw_bus_consumer *sw_bus_consumer_new(struct event_base *base, const char *bootstrap,
					    const char *group, const char *const *topics,
					    const char *const *extra, size_t max_batch,
					    sw_bus_batch_cb cb, void *opaque, char *errstr,
					    size_t errlen);
/* A tail reader: no group; every partition of topics, from the end as of
 * this call (high watermarks queried, blocking up to 10 s: at start only),
 * so each instance of a service sees every message produced after it
 * started. For replies to requests (match them by a request id and ignore
 * the others) and for broadcasts (revocations). Nothing is stored or
 * committed: store/commit return -1, close just stops. Destroy with
 * sw_bus_consumer_destroy. */
struct sw_bus_consumer *sw_bus_tail_new(struct event_base *base, const char *bootstrap,
					const char *const *topics, const char *const *extra,
					size_t max_batch, sw_bus_batch_cb cb, void *opaque,
					char *errstr, size_t errlen);
/* Mark msg processed (its offset+1 will be committed). */
int sw_bus_consumer_store(struct sw_bus_consumer *c, const struct sw_bus_msg *msg);
/* Store by coordinates (for effects that complete after the batch). */
int sw_bus_consumer_store_at(struct sw_bus_consumer *c, const char *topic, int32_t partition,
			     int64_t offset);
/* Commit stored offsets (asynchronous), at most once per commit interval
 * (SW_BUS_COMMIT_MS unless set): a commit asked for sooner is made when
 * the interval has passed. A commit is a broker request (and a write to
 * its offsets log), and one per message would cost the broker more than
 * the messages. What is stored and not yet committed is committed on
 * close and on revocation; a crash redelivers it, so handling must be
 * idempotent (it must be anyway: a commit can always be lost). 0 or -1. */
int sw_bus_consumer_commit(struct sw_bus_consumer *c);
#define SW_BUS_COMMIT_MS 50
/* ms 0: every commit at once. */
void sw_bus_consumer_set_commit_interval(struct sw_bus_consumer *c, int ms);
/* Stop/start delivering messages to cb (backpressure). */
void sw_bus_consumer_pause(struct sw_bus_consumer *c);
void sw_bus_consumer_resume(struct sw_bus_consumer *c);
/* Commit stored offsets synchronously and leave the group cleanly
 * (LeaveGroup). A static member (group.instance.id in extra) sends no
 * LeaveGroup: its partitions wait for it until its session times out. For
 * shutdown, from a signal event, not from the batch cb. */
int sw_bus_consumer_close(struct sw_bus_consumer *c);
/* Leaves the group without committing if close was not called. Not from
 * the batch cb. */
void sw_bus_consumer_destroy(struct sw_bus_consumer *c);
void sw_bus_consumer_set_error_cb(struct sw_bus_consumer *c, sw_bus_error_cb cb, void *opaque);

/* Result of each asynchronous commit: err NULL on success (also when there
 * was nothing to commit). Served from the event base. */
typedef void (*sw_bus_commit_cb)(const char *err, void *opaque);
void sw_bus_consumer_set_commit_cb(struct sw_bus_consumer *c, sw_bus_commit_cb cb, void *opaque);
/* 1 when the group's last rebalance gave this member (topic, partition),
 * else 0 (also for a tail reader, or before any assignment). Kept from the
 * rebalance callbacks, so it costs no call into librdkafka. */
int sw_bus_consumer_owns(const struct sw_bus_consumer *c, const char *topic, int32_t partition);
/* Number of partitions currently assigned to this member, or -1. */
int sw_bus_consumer_assigned(struct sw_bus_consumer *c);

/* A header value of a consumed message (NULL if absent); *len set. */
const void *sw_bus_msg_header(const struct sw_bus_msg *m, const char *name, size_t *len);

/* For offline tools (blocks; never in a service's loop): read every
 * partition of topic from its first message to its end as of the call,
 * calling cb for each message in order per partition. cb returning
 * non-zero stops the read (that value is returned). 0, or -1 with errstr
 * (no such topic, the broker unreachable, not done within timeout_ms). */
int sw_bus_read_topic(const char *bootstrap, const char *topic, const char *const *extra,
		      int timeout_ms, int (*cb)(const struct sw_bus_msg *m, void *opaque),
		      void *opaque, char *errstr, size_t errlen);

/* Send m unchanged (key, value) to sagewai.deadletter with headers
 * sagewai.reason, sagewai.topic, sagewai.partition, sagewai.offset.
 * msg_opaque is handed to the producer's delivery callback. */
int sw_bus_deadletter(struct sw_bus_producer *p, const struct sw_bus_msg *m, const char *reason,
		      void *msg_opaque, char *errstr, size_t errlen);

#endif
