/*
 * bus_real.h: what the sw_bus tests against a real broker share: the
 * bootstrap from the harness, fresh topic names and topic creation.
 */
#ifndef BUS_REAL_H
#define BUS_REAL_H

#include <librdkafka/rdkafka.h>

#include "bus_test.h"
#include "sw_core.h"

static inline const char *real_bootstrap(void)
{
	const char *b;

	sw_test_env_load();
	b = getenv("SAGEWAI_KAFKA_BOOTSTRAP");
	SW_CHECKF(b != NULL && *b != '\0', "SAGEWAI_KAFKA_BOOTSTRAP missing from harness env");
	return b;
}

/* prefix + a fresh UUIDv7, so reruns against one broker never collide. */
static inline void real_name(char *buf, size_t len, const char *prefix)
{
	char id[SW_UUID_STRLEN];

	sw_uuid_v7_str(id);
	snprintf(buf, len, "%s.%s", prefix, id);
}

/* Create a topic with the Admin API and wait for the result. */
static inline void real_topic_create(const char *bootstrap, const char *topic, int partitions)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const rd_kafka_CreateTopics_result_t *res;
	const rd_kafka_topic_result_t **topics;
	rd_kafka_NewTopic_t *nt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	rd_kafka_t *rk;
	char err[512];
	size_t cnt;

	SW_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ==
		 RD_KAFKA_CONF_OK);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	SW_CHECKF(rk != NULL, "%s", err);
	nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
	SW_CHECKF(nt != NULL, "%s", err);
	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 60000);
	SW_CHECKF(ev != NULL, "CreateTopics %s: no answer", topic);
	SW_CHECKF(rd_kafka_event_error(ev) == 0, "CreateTopics %s: %s", topic,
		  rd_kafka_event_error_string(ev));
	res = rd_kafka_event_CreateTopics_result(ev);
	SW_CHECK(res != NULL);
	topics = rd_kafka_CreateTopics_result_topics(res, &cnt);
	SW_CHECK(cnt == 1);
	SW_CHECKF(rd_kafka_topic_result_error(topics[0]) == 0, "CreateTopics %s: %s", topic,
		  rd_kafka_topic_result_error_string(topics[0]));
	rd_kafka_event_destroy(ev);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy(rk);
}

static inline void real_err_cb(int fatal, const char *reason, void *opaque)
{
	(void)opaque;
	fprintf(stderr, "bus error (%s): %s\n", fatal ? "fatal" : "transient", reason);
	SW_CHECKF(!fatal, "fatal client error: %s", reason);
}

#endif
