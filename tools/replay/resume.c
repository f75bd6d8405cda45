/*
 * resume.c: what a killed run of a job delivered after its last saved
 * state. The state names, per target partition, the offset after the last
 * event it counts as acknowledged (or none: from the beginning); a killed
 * run's later deliveries can only lie past it, since one producer's
 * messages keep their order within a partition. Those offsets are read up
 * to each partition's end as it is now, and every message carrying this
 * job's id and a seq above the acknowledged one (sagewai.replay = "ID/SEQ
 * ...") is
 * collected: the rerun does not send them again.
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int header_str(rd_kafka_headers_t *h, const char *name, char *out, size_t outlen)
{
	const void *v;
	size_t n;

	if (h == NULL || rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    v == NULL || n == 0 || n >= outlen)
		return -1;
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

struct found {
	uint64_t *v;
	size_t n, cap;
};

static int found_add(struct found *f, uint64_t seq)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 1024;
		uint64_t *nv = realloc(f->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		f->v = nv;
		f->cap = cap;
	}
	f->v[f->n++] = seq;
	return 0;
}

/* Take one message: a seq of this job above acked goes into f. */
static int take(const rd_kafka_message_t *m, const struct replay_state *st, struct found *f)
{
	rd_kafka_headers_t *h = NULL;
	char job[400], *end;
	size_t idlen = strlen(st->id);
	uint64_t seq;

	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	/* "ID/SEQ TOPIC/PARTITION/OFFSET", ID this job's */
	if (header_str(h, SW_REPLAY_HDR, job, sizeof(job)) != 0 ||
	    strncmp(job, st->id, idlen) != 0 || job[idlen] != '/' || job[idlen + 1] < '0' ||
	    job[idlen + 1] > '9')
		return 0;
	seq = strtoull(job + idlen + 1, &end, 10);
	if (*end != ' ' || seq <= st->acked_seq || seq > st->end_seq)
		return 0;
	return found_add(f, seq);
}

int replay_resume_scan(const struct sw_replay_opts *o, const struct replay_state *st,
		       uint64_t **seqs, size_t *n, char *errstr, size_t errlen)
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

	*seqs = NULL;
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
			if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && take(m, st, &f) == -1) {
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
		} else if (take(m, st, &f) == -1) {
			rd_kafka_message_destroy(m);
			snprintf(errstr, errlen, "out of memory");
			goto out;
		}
		rd_kafka_message_destroy(m);
	}
	if (f.n > 1)
		qsort(f.v, f.n, sizeof(*f.v), cmp_u64);
	*seqs = f.v;
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
