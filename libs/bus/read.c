/*
 * read.c: sw_bus_read_topic, a whole topic read once from its first
 * message to its end as of the call, for offline tools (blocking).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_int.h"

static const char *const read_defaults[] = {
    "enable.partition.eof=true",
    NULL,
};

static const char *const read_forced[] = {
    "enable.auto.commit=false",
    "enable.auto.offset.store=false",
    NULL,
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Assign every partition of topic from its low watermark; *ends gets the
 * high watermarks (indexed like the list), *left the partitions that hold
 * anything. */
static int assign_all(rd_kafka_t *rk, const char *topic, int timeout_ms,
		      rd_kafka_topic_partition_list_t *list, int64_t **ends, int *left,
		      char *errstr, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t err;
	int p, n, rc = -1;

	if (rkt == NULL) {
		snprintf(errstr, errlen, "topic %s: %s", topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	rd_kafka_topic_destroy(rkt);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err)
		err = md->topics[0].err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topics[0].partition_cnt == 0) {
		snprintf(errstr, errlen, "metadata of %s: %s", topic,
			 err ? rd_kafka_err2str(err) : "no partitions");
		goto out;
	}
	n = md->topics[0].partition_cnt;
	if ((*ends = calloc((size_t)n, sizeof(**ends))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	*left = 0;
	for (p = 0; p < n; p++) {
		int32_t id = md->topics[0].partitions[p].id;
		int64_t lo, hi;

		err = rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, timeout_ms);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errlen, "watermarks of %s [%d]: %s", topic, (int)id,
				 rd_kafka_err2str(err));
			goto out;
		}
		rd_kafka_topic_partition_list_add(list, topic, id)->offset = lo;
		(*ends)[p] = hi;
		if (hi > lo)
			(*left)++;
	}
	if ((err = rd_kafka_assign(rk, list)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errlen, "assign: %s", rd_kafka_err2str(err));
		goto out;
	}
	rc = 0;
out:
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	return rc;
}

int sw_bus_read_topic(const char *bootstrap, const char *topic, const char *const *extra,
		      int timeout_ms, int (*cb)(const struct sw_bus_msg *m, void *opaque),
		      void *opaque, char *errstr, size_t errlen)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk = NULL;
	int64_t *ends = NULL, until = mono_ms() + timeout_ms;
	char group[64], rkerr[256], *done = NULL;
	int left = 0, rc = -1, i;

	conf = bus_conf_new(bootstrap, read_defaults, extra, read_forced, errstr, errlen);
	if (conf == NULL)
		goto out;
	/* never joined nor committed: assign() alone; librdkafka wants a name */
	snprintf(group, sizeof(group), "sagewai-read-%p", (void *)&group);
	if (rd_kafka_conf_set(conf, "group.id", group, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK ||
	    (rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr))) == NULL) {
		snprintf(errstr, errlen, "consumer: %s", rkerr);
		rd_kafka_conf_destroy(conf);
		goto out;
	}
	rd_kafka_poll_set_consumer(rk);
	if (assign_all(rk, topic, timeout_ms, list, &ends, &left, errstr, errlen) != 0)
		goto out;
	if ((done = calloc((size_t)list->cnt + 1, 1)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < list->cnt; i++)
		done[i] = ends[i] <= list->elems[i].offset; /* empty */
	while (left > 0) {
		rd_kafka_message_t *m;
		int64_t now = mono_ms();

		if (now >= until) {
			snprintf(errstr, errlen, "%s: not read to its end within %d ms", topic,
				 timeout_ms);
			goto out;
		}
		if ((m = rd_kafka_consumer_poll(rk, (int)(until - now))) == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			/* at the end (offsets may have gaps: transaction markers) */
			for (i = 0; i < list->cnt; i++)
				if (list->elems[i].partition == m->partition && !done[i] &&
				    m->offset >= ends[i]) {
					done[i] = 1;
					left--;
				}
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errlen, "%s: %s", topic, rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			goto out;
		}
		for (i = 0; i < list->cnt; i++) {
			struct sw_bus_msg bm;
			int stop;

			if (list->elems[i].partition != m->partition)
				continue;
			if (done[i] || m->offset >= ends[i])
				break; /* produced after the call: not ours */
			memset(&bm, 0, sizeof(bm));
			bm.topic = topic;
			bm.partition = m->partition;
			bm.offset = m->offset;
			bm.key = m->key;
			bm.key_len = m->key_len;
			bm.value = m->payload;
			bm.len = m->len;
			bm.timestamp_ms = rd_kafka_message_timestamp(m, NULL);
			bm.rk_msg = m;
			stop = cb(&bm, opaque);
			if (m->offset + 1 >= ends[i]) {
				done[i] = 1;
				left--;
			}
			if (stop != 0) {
				rd_kafka_message_destroy(m);
				rc = stop;
				goto out;
			}
			break;
		}
		rd_kafka_message_destroy(m);
	}
	rc = 0;
out:
	free(done);
	free(ends);
	rd_kafka_topic_partition_list_destroy(list);
	if (rk != NULL) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	return rc;
}
