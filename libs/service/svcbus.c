/*
 * svcbus.c: a service's Kafka clients and the order of its offsets
 * (sw_svcbus.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"
#include "sw_http.h"
#include "sw_service.h"
#include "sw_svcbus.h"

/* What a produced message's delivery report is for. */
struct pub {
	sw_svcbus_sent_cb cb;
	void *opaque;
};

static void item_free(struct sw_svcbus *bus, struct sw_svcbus_item *it)
{
	if (bus->def.item_clear != NULL)
		bus->def.item_clear(it);
	free(it->topic);
	free(it);
}

void sw_svcbus_settle(struct sw_svcbus *bus)
{
	struct sw_svcbus_item *it;
	int stored = 0;

	while ((it = TAILQ_FIRST(&bus->items)) != NULL && it->pending == 0) {
		TAILQ_REMOVE(&bus->items, it, entry);
		bus->nitems--;
		bus->nbytes -= it->bytes;
		if (bus->consumer != NULL)
			sw_bus_consumer_store_at(bus->consumer, it->topic, it->partition,
						 it->offset);
		stored = 1;
		item_free(bus, it);
	}
	if (stored && bus->consumer != NULL)
		sw_bus_consumer_commit(bus->consumer);
	if (bus->paused && !bus->draining && bus->nitems < bus->def.max_inflight / 2 &&
	    (bus->def.max_bytes == 0 || bus->nbytes < bus->def.max_bytes / 2)) {
		bus->paused = 0;
		sw_bus_consumer_resume(bus->consumer);
	}
	sw_metrics_gauge_set(bus->metrics, bus->m_inflight,
			     "Consumed messages whose effect is not yet durable",
			     (double)bus->nitems);
}

void sw_svcbus_release(struct sw_svcbus_item *it)
{
	if (--it->pending == 0)
		sw_svcbus_settle(it->bus);
}

static void on_delivery(const char *err, void *msg_opaque, void *opaque)
{
	struct sw_svcbus *bus = opaque;
	struct pub *p = msg_opaque;

	if (p == NULL)
		return;
	if (p->cb != NULL)
		p->cb(bus->arg, err, p->opaque);
	free(p);
}

static void kafka_error(struct sw_service *svc, const char *client, int fatal, const char *reason)
{
	char what[64];

	if (fatal) {
		snprintf(what, sizeof(what), "%s failed", client);
		sw_service_fatal(svc, what, reason);
	} else {
		sw_log(SW_LOG_WARN, client, "error", reason, NULL);
	}
}

void sw_svcbus_producer_error(int fatal, const char *reason, void *svc)
{
	kafka_error(svc, "Kafka producer", fatal, reason);
}

void sw_svcbus_consumer_error(int fatal, const char *reason, void *svc)
{
	kafka_error(svc, "Kafka consumer", fatal, reason);
}

int sw_svcbus_publish(struct sw_svcbus *bus, const char *type, const char *topic, const char *key,
		      const struct sw_event_header *h, json_t *fields, sw_svcbus_sent_cb cb,
		      void *opaque, char *errstr, size_t errlen)
{
	struct pub *p = NULL;
	void *buf = NULL;
	size_t len;
	int rc = -1;

	if (fields == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	if (sw_event_encode(bus->reg, type, h, fields, &buf, &len, errstr, errlen) == -1)
		goto out;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	p->cb = cb;
	p->opaque = opaque;
	if (sw_bus_produce(bus->producer, topic, key, buf, len, NULL, p, errstr, errlen) == -1) {
		free(p);
		goto out;
	}
	sw_metrics_counter_add(bus->metrics, bus->m_events, bus->h_events, 1);
	rc = 0;
out:
	json_decref(fields);
	free(buf);
	return rc;
}

/* A dead letter of item it was delivered: it may settle. */
static void deadletter_sent(void *arg, const char *err, void *opaque)
{
	struct sw_svcbus_item *it = opaque;

	(void)arg;
	if (err != NULL) {
		/* nothing may be committed past it: stop; it comes back */
		sw_service_fatal(it->bus->svc, "dead letter not delivered", err);
		return;
	}
	sw_svcbus_release(it);
}

void sw_svcbus_deadletter(struct sw_svcbus_item *it, const struct sw_bus_msg *m, const char *why)
{
	struct sw_svcbus *bus = it->bus;
	struct pub *p = calloc(1, sizeof(*p));
	char err[256];

	if (p == NULL) {
		sw_service_fatal(bus->svc, "dead letter", "out of memory");
		return;
	}
	p->cb = deadletter_sent;
	p->opaque = it;
	it->pending++;
	if (sw_bus_deadletter(bus->producer, m, why, p, err, sizeof(err)) == -1) {
		it->pending--;
		free(p);
		sw_service_fatal(bus->svc, "dead-letter produce failed", err);
		return;
	}
	sw_metrics_counter_add(bus->metrics, bus->m_dead,
			       "Undecodable messages sent to sagewai.deadletter", 1);
	sw_log(SW_LOG_WARN, "dead-lettered undecodable message", "topic", m->topic, "reason", why,
	       NULL);
}

static void on_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sw_svcbus *bus = opaque;
	size_t i;

	for (i = 0; i < n; i++) {
		struct sw_svcbus_item *it = calloc(1, bus->def.item_size);

		if (it == NULL || (it->topic = strdup(msgs[i].topic)) == NULL) {
			free(it);
			sw_service_fatal(bus->svc, "consume", "out of memory");
			return;
		}
		it->bus = bus;
		it->partition = msgs[i].partition;
		it->offset = msgs[i].offset;
		it->pending = 1; /* held while handling */
		it->bytes = msgs[i].len;
		TAILQ_INSERT_TAIL(&bus->items, it, entry);
		bus->nitems++;
		bus->nbytes += it->bytes;
		bus->def.handle(bus->arg, it, &msgs[i]);
		sw_svcbus_release(it);
	}
	if (!bus->paused && (bus->nitems >= bus->def.max_inflight ||
			     (bus->def.max_bytes > 0 && bus->nbytes >= bus->def.max_bytes))) {
		bus->paused = 1;
		sw_bus_consumer_pause(bus->consumer);
		sw_metrics_counter_add(
		    bus->metrics, bus->m_pauses,
		    "Times consumption paused: as many consumed messages in hand "
		    "as the service takes at once",
		    1);
	}
}

int sw_svcbus_extra(char *const *envp, const char *var, const char *def, const char **out,
		    size_t cap, char *buf, size_t buflen, char *errstr, size_t errlen)
{
	size_t n = 0;

	if (def != NULL)
		out[n++] = def;
	return sw_config_list(envp, var, out, n, cap, buf, buflen, errstr, errlen) == -1 ? -1 : 0;
}

int sw_svcbus_start(struct sw_svcbus *bus, struct sw_service *svc, struct sw_event_registry *reg,
		    const struct sw_svcbus_def *def, void *arg, char *errstr, size_t errlen)
{
	struct event_base *base = sw_service_base(svc);
	const char *bootstrap = sw_service_config(svc)->kafka_bootstrap;
	char *const *envp = sw_service_environ(svc);
	const char *name = sw_service_name(svc);
	char pbuf[SW_CONFIG_STR], cbuf[SW_CONFIG_STR];
	const char *pextra[SW_SVCBUS_EXTRA], *cextra[SW_SVCBUS_EXTRA];

	bus->svc = svc;
	bus->metrics = sw_service_metrics(svc);
	bus->reg = reg;
	bus->def = *def;
	bus->arg = arg;
	TAILQ_INIT(&bus->items);
	snprintf(bus->m_events, sizeof(bus->m_events), "sagewai_%s_events_total", name);
	snprintf(bus->h_events, sizeof(bus->h_events), "Events produced by the %s service", name);
	snprintf(bus->m_dead, sizeof(bus->m_dead), "sagewai_%s_deadlettered_total", name);
	snprintf(bus->m_inflight, sizeof(bus->m_inflight), "sagewai_%s_inflight", name);
	snprintf(bus->m_pauses, sizeof(bus->m_pauses), "sagewai_%s_consumer_pauses_total", name);
	if (sw_svcbus_extra(envp, "SAGEWAI_KAFKA_PRODUCER_CONFIG", def->producer_default, pextra,
			    SW_SVCBUS_EXTRA, pbuf, sizeof(pbuf), errstr, errlen) == -1 ||
	    sw_svcbus_extra(envp, "SAGEWAI_KAFKA_CONSUMER_CONFIG", NULL, cextra, SW_SVCBUS_EXTRA,
			    cbuf, sizeof(cbuf), errstr, errlen) == -1)
		return -1;
	bus->producer = sw_bus_producer_new(base, bootstrap, def->client_id, pextra, on_delivery,
					    bus, errstr, errlen);
	if (bus->producer == NULL)
		return -1;
	sw_bus_producer_set_error_cb(bus->producer, sw_svcbus_producer_error, svc);
	/* the tail first: a change made once requests flow is never missed */
	if (def->tail_topics != NULL) {
		bus->tail = sw_bus_tail_new(base, bootstrap, def->tail_topics, cextra, 256,
					    def->tail, arg, errstr, errlen);
		if (bus->tail == NULL)
			return -1;
		sw_bus_consumer_set_error_cb(bus->tail, sw_svcbus_consumer_error, svc);
	}
	bus->consumer = sw_bus_consumer_new(base, bootstrap, def->group, def->topics, cextra, 256,
					    on_batch, bus, errstr, errlen);
	if (bus->consumer == NULL)
		return -1;
	sw_bus_consumer_set_error_cb(bus->consumer, sw_svcbus_consumer_error, svc);
	return 0;
}

void sw_svcbus_pause(struct sw_svcbus *bus)
{
	bus->draining = 1;
	if (bus->consumer != NULL && !bus->paused) {
		bus->paused = 1;
		sw_bus_consumer_pause(bus->consumer);
	}
}

int sw_svcbus_idle(const struct sw_svcbus *bus)
{
	return bus->nitems == 0 &&
	       (bus->producer == NULL || sw_bus_producer_outq(bus->producer) == 0);
}

void sw_svcbus_close(struct sw_svcbus *bus)
{
	if (bus->consumer != NULL)
		sw_bus_consumer_close(bus->consumer);
	if (bus->producer != NULL)
		sw_bus_producer_flush(bus->producer, 2000);
}

void sw_svcbus_free(struct sw_svcbus *bus)
{
	struct sw_svcbus_item *it;

	if (bus->consumer != NULL)
		sw_bus_consumer_destroy(bus->consumer);
	bus->consumer = NULL;
	if (bus->tail != NULL)
		sw_bus_consumer_destroy(bus->tail);
	bus->tail = NULL;
	if (bus->producer != NULL)
		sw_bus_producer_destroy(bus->producer);
	bus->producer = NULL;
	/* a start that never ran has no queue yet */
	while (bus->items.tqh_first != NULL && (it = TAILQ_FIRST(&bus->items)) != NULL) {
		TAILQ_REMOVE(&bus->items, it, entry);
		bus->nitems--;
		item_free(bus, it);
	}
}
