/*
 * sw_svcbus: the Kafka clients of a service that answers events (identity,
 * policy), and the order in which the offsets of what it consumed are
 * stored:
 *
 *   producer   idempotent (sw_bus); sw_svcbus_publish encodes an event and
 *              hands its delivery report to the caller's callback;
 *              SAGEWAI_KAFKA_PRODUCER_CONFIG ("name=value,...") tunes it,
 *              after the service's default
 *   consumer   a group member on def->topics; each message becomes an item
 *              (def->item_size bytes, a struct sw_svcbus_item first)
 *              handed to def->handle; SAGEWAI_KAFKA_CONSUMER_CONFIG tunes
 *              it (and the tail)
 *   tail       optional: every partition of def->tail_topics from the end
 *              (sw_bus_tail_new), to def->tail
 *
 * An item holds pending counts (1 while handle runs); the service adds one
 * for each effect it starts and releases it when the effect is durable.
 * Items settle in consumption order: an item's offset is stored only once
 * it and every item consumed before it have no effect pending, then the
 * stored offsets are committed. With def->max_inflight items in hand, or
 * def->max_bytes of their messages, the consumer pauses, and resumes once
 * both are under half that (not once draining). A pause costs more than
 * the wait: librdkafka drops what it had fetched for the paused partitions
 * and takes a fetch cycle or more to start again after the resume, so a
 * service under a burst it could take in that pauses and resumes over and
 * over leaves requests in Kafka for seconds. The caps are therefore for
 * overload (memory, a stalled dependency), set well above the requests a
 * deployment has in flight; the byte cap bounds the memory.
 *
 * A fatal Kafka error stops the service (sw_service_fatal); so does a dead
 * letter or a publish whose delivery fails: nothing may be committed past
 * the message it belongs to, which comes back at restart.
 *
 * Metrics, <name> the service's: sagewai_<name>_events_total (events
 * produced), sagewai_<name>_deadlettered_total, sagewai_<name>_inflight
 * (items not settled), sagewai_<name>_consumer_pauses_total.
 */
#ifndef SW_SVCBUS_H
#define SW_SVCBUS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <jansson.h>

#include "sw_bus.h"
#include "sw_events.h"

struct sw_service;
struct sw_metrics;
struct sw_svcbus;

/* Entries SAGEWAI_KAFKA_*_CONFIG may hold, the default included. */
#define SW_SVCBUS_EXTRA 24

struct sw_svcbus_item {
	TAILQ_ENTRY(sw_svcbus_item) entry;
	struct sw_svcbus *bus;
	char *topic;
	int32_t partition;
	int64_t offset;
	int pending; /* effects outstanding (1 while handled) */
	size_t bytes; /* its message's value */
};
TAILQ_HEAD(sw_svcbus_itemq, sw_svcbus_item);

struct sw_svcbus_def {
	const char *client_id;		/* the producer's, e.g. "sagewai-identity" */
	const char *producer_default;	/* first producer property (may be NULL) */
	const char *group;		/* the consumer's group */
	const char *const *topics;	/* the consumer's, NULL-terminated */
	const char *const *tail_topics; /* NULL: no tail */
	size_t max_inflight;		/* items in hand before pausing */
	size_t max_bytes;		/* or their messages' bytes (0: no cap) */
	size_t item_size;		/* >= sizeof(struct sw_svcbus_item) */
	/* A consumed message, its item zeroed but for the struct
	 * sw_svcbus_item; m is valid during the call only. */
	void (*handle)(void *arg, struct sw_svcbus_item *it, const struct sw_bus_msg *m);
	/* Free what the service's part of an item holds (may be NULL): when
	 * it settled, or at sw_svcbus_free. */
	void (*item_clear)(struct sw_svcbus_item *it);
	/* The tail's messages (with tail_topics). */
	sw_bus_batch_cb tail;
};

struct sw_svcbus {
	struct sw_service *svc;
	struct sw_metrics *metrics;
	struct sw_event_registry *reg;
	struct sw_svcbus_def def;
	void *arg; /* handed to def's callbacks and the delivery callbacks */
	struct sw_bus_producer *producer;
	struct sw_bus_consumer *consumer;
	struct sw_bus_consumer *tail;
	struct sw_svcbus_itemq items; /* in consumption order, until settled */
	size_t nitems;
	size_t nbytes; /* the items' messages */
	int paused;
	int draining;
	char m_events[96], h_events[96], m_dead[96], m_inflight[96], m_pauses[96];
};

/* Make the clients of def (copied; the arrays it points to must last)
 * on svc's loop; reg encodes what is published. 0, or -1 with errstr (bus
 * is then for sw_svcbus_free). */
int sw_svcbus_start(struct sw_svcbus *bus, struct sw_service *svc, struct sw_event_registry *reg,
		    const struct sw_svcbus_def *def, void *arg, char *errstr, size_t errlen);

/* A delivery report: err NULL once delivered, else why not. */
typedef void (*sw_svcbus_sent_cb)(void *arg, const char *err, void *opaque);

/* Encode fields (stolen, may be NULL: out of memory) as an event of type
 * under h and produce it to topic keyed by key; cb (may be NULL) is called
 * with its delivery report. 0, or -1 with errstr (cb not called). */
int sw_svcbus_publish(struct sw_svcbus *bus, const char *type, const char *topic, const char *key,
		      const struct sw_event_header *h, json_t *fields, sw_svcbus_sent_cb cb,
		      void *opaque, char *errstr, size_t errlen);

/* Send m to sagewai.deadletter with the reason why, as one more effect
 * of it (released once delivered). */
void sw_svcbus_deadletter(struct sw_svcbus_item *it, const struct sw_bus_msg *m, const char *why);

/* One effect of it is durable: release it (it may settle, and be freed). */
void sw_svcbus_release(struct sw_svcbus_item *it);
/* Store and commit the offsets of the items settled from the front; for
 * a caller that lowered several items' pending counts itself. */
void sw_svcbus_settle(struct sw_svcbus *bus);

/* Draining: consume no more. */
void sw_svcbus_pause(struct sw_svcbus *bus);
/* Non-zero when no item is in hand and nothing produced awaits delivery. */
int sw_svcbus_idle(const struct sw_svcbus *bus);
/* Commit the stored offsets, leave the group, deliver what is queued. */
void sw_svcbus_close(struct sw_svcbus *bus);
/* Destroy the clients and the items left (idempotent). */
void sw_svcbus_free(struct sw_svcbus *bus);

/* Error callbacks (sw_bus_error_cb) with opaque the struct sw_service: a
 * fatal error stops the service ("Kafka producer failed" / "Kafka
 * consumer failed"), another is logged as a warning. */
void sw_svcbus_producer_error(int fatal, const char *reason, void *svc);
void sw_svcbus_consumer_error(int fatal, const char *reason, void *svc);

/* The properties of the variable var (SAGEWAI_KAFKA_PRODUCER_CONFIG...)
 * into out (cap slots, NULL-terminated), after def (may be NULL); the
 * strings live in buf. 0, or -1 with errstr. */
int sw_svcbus_extra(char *const *envp, const char *var, const char *def, const char **out,
		    size_t cap, char *buf, size_t buflen, char *errstr, size_t errlen);

#endif
