/*
 * resume.c: what a killed run of a job delivered after its last saved
 * state. The state names, per target partition, the offset after the last
 * event it counts as acknowledged (or none: from the beginning); a killed
 * run's later deliveries can only lie past it, since one producer's
 * messages keep their order within a partition. Those offsets are read up
 * to each partition's end as it is now, and the event id of every message
 * there is collected, read from its value (the header sagewai.replay is
 * optional: --mark): the rerun does not send again an event whose id it
 * finds. Event ids are unique in the log (the audit service dedupes by
 * id), so an id found is that event delivered; one put there by someone
 * else since the job began is that event too, for a consumer that dedupes
 * by id.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "replay_int.h"
#include "sw_core.h"

#define META_TIMEOUT_MS 10000
#define READ_IDLE_MS 30000 /* no message for this long before an end: give up */

struct found {
	struct replay_id *v;
	size_t n, cap;
};

/* Take one message: its event id goes into f (a value that is not an
 * event of this registry is no event of this job: skipped). 0 or -1. */
static int take(const rd_kafka_message_t *m, const struct replay_hdrs *hdrs,
		struct sw_event_registry *reg, struct found *f)
{
	struct sw_event_header full;
	struct replay_hdr h;
	char err[256];

	if (m->payload == NULL || m->len == 0)
		return 0;
	memset(&h, 0, sizeof(h));
	if (replay_hdr_peek(hdrs, m->payload, m->len, &h) != 1) {
		if (sw_event_decode_header(reg, m->payload, m->len, &full, err, sizeof(err)) != 0)
			return 0;
		h.event_id = full.event_id;
		h.event_id_len = strlen(full.event_id);
	}
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 1024;
		struct replay_id *nv = realloc(f->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		f->v = nv;
		f->cap = cap;
	}
	if (replay_id_of(&h, &f->v[f->n]) == 0)
		f->n++;
	return 0;
}

int replay_resume_scan(const struct sw_replay_opts *o, const struct replay_state *st,
		       const struct replay_hdrs *hdrs, struct sw_event_registry *reg,
		       struct replay_id **ids, size_t *n, char *errstr, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *assign = NULL;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = NULL;
	rd_kafka_t *rk = NULL;
	struct found f = {0};
	int64_t *ends = NULL, lo, hi, idle_since;
	int32_t np = 0, p, left = 0;
	const char *const *e;
	char err[512];
	int rc = -1;

	*ids = NULL;
	*n = 0;
	if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, err, sizeof(err)) != 0 ||
	    rd_kafka_conf_set(conf, "group.id", "sagewai-replay-resume", err, sizeof(err)) != 0 ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) != 0 ||
	    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) != 0 ||
	    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)) != 0) {
		snprintf(errstr, errlen, "kafka: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	for (e = o->kafka_extra; e != NULL && *e != NULL; e++) {
		char name[256];
		const char *eq = strchr(*e, '=');

		/* producer-only settings are refused by a consumer: skip those */
		if (eq == NULL || (size_t)(eq - *e) >= sizeof(name))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
		(void)rd_kafka_conf_set(conf, name, eq + 1, err, sizeof(err));
	}
	if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
		snprintf(errstr, errlen, "kafka: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	if ((t = rd_kafka_topic_new(rk, st->topic, NULL)) == NULL ||
	    rd_kafka_metadata(rk, 0, t, &md, META_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    md->topic_cnt != 1) {
		snprintf(errstr, errlen, "kafka: no metadata for topic %s", st->topic);
		goto out;
	}
	if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
		rc = 0; /* nothing was ever delivered there */
		goto out;
	}
	np = md->topics[0].partition_cnt;
	if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR || np <= 0 ||
	    np > REPLAY_MAX_PARTITIONS) {
		snprintf(errstr, errlen, "kafka: topic %s: %s", st->topic,
			 rd_kafka_err2str(md->topics[0].err));
		goto out;
	}
	if ((ends = calloc((size_t)np, sizeof(*ends))) == NULL ||
	    (assign = rd_kafka_topic_partition_list_new(np)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	for (p = 0; p < np; p++) {
		int64_t from = p < st->nfloors ? st->floors[p] : -1;
		rd_kafka_resp_err_t qe;

		qe = rd_kafka_query_watermark_offsets(rk, st->topic, p, &lo, &hi,
						      META_TIMEOUT_MS);
		if (qe != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errlen, "kafka: end offsets of %s [%" PRId32 "]: %s",
				 st->topic, p, rd_kafka_err2str(qe));
			goto out;
		}
		if (from < lo)
			from = lo;
		ends[p] = hi;
		if (from >= hi)
			continue;
		rd_kafka_topic_partition_list_add(assign, st->topic, p)->offset = from;
		left++;
	}
	if (left > 0 && rd_kafka_assign(rk, assign) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errlen, "kafka: cannot read %s", st->topic);
		goto out;
	}
	idle_since = sw_mono_ms();
	while (left > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);

		if (m == NULL) {
			if (sw_mono_ms() - idle_since > READ_IDLE_MS) {
				snprintf(errstr, errlen,
					 "kafka: reading %s back timed out (%d partitions left)",
					 st->topic, left);
				goto out;
			}
			continue;
		}
		idle_since = sw_mono_ms();
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
		    (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->partition >= 0 &&
		     m->partition < np && m->offset + 1 >= ends[m->partition])) {
			if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && take(m, hdrs, reg, &f) == -1) {
				rd_kafka_message_destroy(m);
				snprintf(errstr, errlen, "out of memory");
				goto out;
			}
			if (m->partition >= 0 && m->partition < np && ends[m->partition] >= 0) {
				ends[m->partition] = -1; /* done with it */
				left--;
			}
		} else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errlen, "kafka: reading %s back: %s", st->topic,
				 rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			goto out;
		} else if (take(m, hdrs, reg, &f) == -1) {
			rd_kafka_message_destroy(m);
			snprintf(errstr, errlen, "out of memory");
			goto out;
		}
		rd_kafka_message_destroy(m);
	}
	if (f.n > 1)
		qsort(f.v, f.n, sizeof(*f.v), replay_id_cmp);
	*ids = f.v;
	*n = f.n;
	f.v = NULL;
	rc = 0;
out:
	free(f.v);
	free(ends);
	if (assign != NULL)
		rd_kafka_topic_partition_list_destroy(assign);
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	if (t != NULL)
		rd_kafka_topic_destroy(t);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return rc;
}
