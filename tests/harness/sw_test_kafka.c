/*
 * sw_test_kafka: librdkafka clients of the harness's broker for tests.
 */
#include "sw_test_svc.h"

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[256];

	SW_CHECKF(rd_kafka_conf_set(conf, name, value, err, sizeof(err)) == RD_KAFKA_CONF_OK,
		  "%s=%s: %s", name, value, err);
}

rd_kafka_t *sw_test_kafka_new(rd_kafka_type_t type, const char *group, const char *const *extra)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *bootstrap = getenv("SAGEWAI_KAFKA_BOOTSTRAP");
	char err[256];
	rd_kafka_t *rk;

	SW_CHECKF(bootstrap != NULL,
		  "SAGEWAI_KAFKA_BOOTSTRAP is not set (sw_test_env_load first)");
	conf_set(conf, "bootstrap.servers", bootstrap);
	if (type == RD_KAFKA_PRODUCER) {
		conf_set(conf, "enable.idempotence", "true");
		conf_set(conf, "linger.ms", "1");
	} else {
		SW_CHECK(group != NULL);
		conf_set(conf, "group.id", group);
		conf_set(conf, "enable.auto.commit", "false");
		conf_set(conf, "auto.offset.reset", "earliest");
	}
	for (; extra != NULL && *extra != NULL; extra++) {
		const char *eq = strchr(*extra, '=');
		char name[128];

		SW_CHECKF(eq != NULL && (size_t)(eq - *extra) < sizeof(name), "extra %s", *extra);
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *extra), *extra);
		conf_set(conf, name, eq + 1);
	}
	rk = rd_kafka_new(type, conf, err, sizeof(err));
	SW_CHECKF(rk != NULL, "%s", err);
	return rk;
}

int sw_test_kafka_partitions(rd_kafka_t *rk, const char *topic)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	int n;

	SW_CHECK(t != NULL);
	SW_CHECK(rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	SW_CHECK(md->topic_cnt == 1 && md->topics[0].partition_cnt > 0);
	n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	return n;
}

rd_kafka_topic_partition_list_t *sw_test_kafka_ends(rd_kafka_t *rk, const char *const *topics)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	int64_t lo, hi;
	int p, n;

	for (; *topics; topics++) {
		n = sw_test_kafka_partitions(rk, *topics);
		for (p = 0; p < n; p++) {
			SW_CHECK(
			    rd_kafka_query_watermark_offsets(rk, *topics, p, &lo, &hi, 10000) ==
			    RD_KAFKA_RESP_ERR_NO_ERROR);
			rd_kafka_topic_partition_list_add(l, *topics, p)->offset = hi;
		}
	}
	return l;
}

/* Commit l (the group's positions) with rk, then close rk; l is freed. */
static void group_commit(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l)
{
	rd_kafka_resp_err_t e;

	if (l->cnt > 0) {
		e = rd_kafka_commit(rk, l, 0);
		SW_CHECKF(e == RD_KAFKA_RESP_ERR_NO_ERROR, "commit group position: %s",
			  rd_kafka_err2str(e));
	}
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

void sw_test_kafka_group_to_end(const char *group, const char *const *topics)
{
	rd_kafka_t *rk = sw_test_kafka_new(RD_KAFKA_CONSUMER, group, NULL);

	group_commit(rk, sw_test_kafka_ends(rk, topics));
}

void sw_test_kafka_group_to_end_prefix(const char *group, const char *prefix)
{
	rd_kafka_t *rk = sw_test_kafka_new(RD_KAFKA_CONSUMER, group, NULL);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(32);
	const struct rd_kafka_metadata *md;
	int64_t lo, hi;
	int i, p;

	SW_CHECK(rd_kafka_metadata(rk, 1, NULL, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	for (i = 0; i < md->topic_cnt; i++) {
		const struct rd_kafka_metadata_topic *t = &md->topics[i];

		/* a topic another test is making right now has no leader yet:
		 * it holds nothing of earlier tests */
		if (strncmp(t->topic, prefix, strlen(prefix)) != 0 || t->err)
			continue;
		for (p = 0; p < t->partition_cnt; p++) {
			if (t->partitions[p].err || rd_kafka_query_watermark_offsets(
							rk, t->topic, t->partitions[p].id, &lo,
							&hi, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
				continue;
			rd_kafka_topic_partition_list_add(l, t->topic, t->partitions[p].id)
			    ->offset = hi;
		}
	}
	rd_kafka_metadata_destroy(md);
	group_commit(rk, l);
}

rd_kafka_t *sw_test_kafka_tail(const char *group, const char *const *topics)
{
	rd_kafka_t *rk = sw_test_kafka_new(RD_KAFKA_CONSUMER, group, NULL);
	rd_kafka_topic_partition_list_t *l;

	rd_kafka_poll_set_consumer(rk);
	l = sw_test_kafka_ends(rk, topics);
	SW_CHECK(rd_kafka_assign(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(l);
	return rk;
}

void sw_test_kafka_send(rd_kafka_t *p, const char *topic, const char *key, const void *v,
			size_t len)
{
	rd_kafka_resp_err_t e;

	for (;;) {
		e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
				      RD_KAFKA_V_VALUE((void *)v, len),
				      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		rd_kafka_poll(p, 10);
	}
	SW_CHECKF(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
	rd_kafka_poll(p, 0);
}

void sw_test_kafka_flush(rd_kafka_t *p, int timeout_ms)
{
	SW_CHECK(rd_kafka_flush(p, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

void sw_test_kafka_deliver(rd_kafka_t *p, const char *topic, const char *key, const void *v,
			   size_t len)
{
	sw_test_kafka_send(p, topic, key, v, len);
	sw_test_kafka_flush(p, 30000);
}

int sw_test_kafka_deadletter_find(const char *prefix, const void *needle, size_t len, char *reason,
				  size_t rlen)
{
	static int calls;
	rd_kafka_topic_partition_list_t *tl;
	int found = 0, idle = 0, p, n;
	char group[128];
	rd_kafka_t *rk;

	/* a fresh group each time, committing nothing: every call reads all */
	snprintf(group, sizeof(group), "%s-dl%d", prefix, calls++);
	rk = sw_test_kafka_new(RD_KAFKA_CONSUMER, group, NULL);
	rd_kafka_poll_set_consumer(rk);
	n = sw_test_kafka_partitions(rk, "sagewai.deadletter");
	tl = rd_kafka_topic_partition_list_new(n);
	for (p = 0; p < n; p++)
		rd_kafka_topic_partition_list_add(tl, "sagewai.deadletter", p)->offset =
		    RD_KAFKA_OFFSET_BEGINNING;
	SW_CHECK(rd_kafka_assign(rk, tl) == RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(tl);
	while (idle < 40 && !found) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 250);
		rd_kafka_headers_t *hs = NULL;
		const void *v;
		size_t vlen;

		if (m == NULL) {
			idle++;
			continue;
		}
		if (m->err == 0 && m->len == len && memcmp(m->payload, needle, len) == 0 &&
		    rd_kafka_message_headers(m, &hs) == 0 &&
		    rd_kafka_header_get_last(hs, "sagewai.reason", &v, &vlen) == 0 && vlen > 0) {
			snprintf(reason, rlen, "%.*s", (int)vlen, (const char *)v);
			found = 1;
		}
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return found;
}
