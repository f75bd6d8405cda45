/*
 * sw_bench: what the benchmarks share (sw_bench.h).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sw_bench.h"

int64_t sw_bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long sw_bench_epoch_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sw_bench_cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

double sw_bench_pct_ms(int64_t *v, size_t n, double p)
{
	qsort(v, n, sizeof(*v), sw_bench_cmp64);
	return (double)v[(size_t)((double)(n - 1) * p)] / 1e6;
}

size_t sw_bench_collect(char *d, size_t sz, size_t nm, void *u)
{
	struct sw_bench_buf *b = u;
	size_t n = sz * nm;

	return sw_buf_add(&b->body, d, n) == 0 ? n : 0;
}

size_t sw_bench_sse_collect(char *d, size_t sz, size_t nm, void *u)
{
	struct sw_bench_buf *b = u;
	char *ev, *end;

	if (sw_bench_collect(d, sz, nm, u) == 0)
		return 0;
	while ((end = strstr(b->body.p + b->seen, "\n\n")) != NULL) {
		json_t *run;
		const char *st;

		ev = b->body.p + b->seen;
		b->seen = (size_t)(end - b->body.p) + 2;
		if (strncmp(ev, "event: run\ndata: ", 17) != 0)
			continue;
		run = json_loadb(ev + 17, (size_t)(end - ev) - 17, 0, NULL);
		st = json_string_value(json_object_get(run, "state"));
		if (st != NULL && strcmp(st, "succeeded") == 0) {
			b->done = 1;
		} else if (st == NULL ||
			   (strcmp(st, "running") != 0 && strcmp(st, "pending") != 0)) {
			b->failed = 1;
			snprintf(b->failed_state, sizeof(b->failed_state), "%s",
				 st != NULL ? st : "(a run event without a state)");
		}
		json_decref(run);
		if (b->done || b->failed)
			return 0; /* abort the transfer: we have what we wanted */
	}
	return sz * nm;
}

long sw_bench_perform(CURL *c, const char *method, const char *body, const char *ctype,
		      struct sw_bench_buf *out)
{
	struct curl_slist *h = NULL;
	char ct[128];
	long status = 0;
	CURLcode rc;

	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sw_bench_collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	if (body != NULL) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		h = curl_slist_append(h, ct);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	if ((rc = curl_easy_perform(c)) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(out->curl_err, sizeof(out->curl_err), "%s", curl_easy_strerror(rc));
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	return status;
}

void sw_bench_workflow_yaml(char *yaml, size_t len, const char *name, int steps)
{
	size_t off = (size_t)snprintf(yaml, len, "name: %s\nversion: 1\nsteps:\n", name);

	for (int i = 0; i < steps && off < len; i++)
		off += (size_t)snprintf(yaml + off, len - off,
					"  - name: s%d\n    mode: in_process\n    uses: template\n"
					"    with:\n      value: \"step %d of ${{ input.n }}\"\n",
					i, i);
}

rd_kafka_t *sw_bench_kafka_producer(const char *bootstrap, char *err, size_t errlen)
{
	rd_kafka_conf_t *pc = rd_kafka_conf_new();
	rd_kafka_t *p;

	if (rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, err, errlen) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(pc, "enable.idempotence", "true", err, errlen) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(pc, "linger.ms", "0", err, errlen) != RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(pc);
		return NULL;
	}
	if ((p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, errlen)) == NULL)
		rd_kafka_conf_destroy(pc);
	return p;
}

/* Add every partition of topic to tl at its end now; -1 and err if unknown. */
static int tail_add(rd_kafka_t *c, rd_kafka_topic_partition_list_t *tl, const char *topic,
		    char *err, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(c, topic, NULL);
	int parts = 0;

	if (t != NULL && rd_kafka_metadata(c, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    md->topic_cnt == 1)
		parts = md->topics[0].partition_cnt;
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	if (t != NULL)
		rd_kafka_topic_destroy(t);
	if (parts < 1) {
		snprintf(err, errlen, "metadata of %s", topic);
		return -1;
	}
	for (int p = 0; p < parts; p++) {
		int64_t lo, hi;

		if (rd_kafka_query_watermark_offsets(c, topic, p, &lo, &hi, 10000) != 0)
			hi = RD_KAFKA_OFFSET_END;
		rd_kafka_topic_partition_list_add(tl, topic, p)->offset = hi;
	}
	return 0;
}

rd_kafka_t *sw_bench_kafka_tail(const char *bootstrap, const char *group,
				const char *const *topics, const char *fetch_wait_ms, char *err,
				size_t errlen)
{
	rd_kafka_conf_t *cc = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *tl;
	rd_kafka_t *c;
	int rc = 0;

	if (rd_kafka_conf_set(cc, "bootstrap.servers", bootstrap, err, errlen) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(cc, "group.id", group, err, errlen) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(cc, "enable.auto.commit", "false", err, errlen) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(cc, "fetch.wait.max.ms", fetch_wait_ms, err, errlen) !=
		RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(cc);
		return NULL;
	}
	if ((c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, errlen)) == NULL) {
		rd_kafka_conf_destroy(cc);
		return NULL;
	}
	rd_kafka_poll_set_consumer(c);
	tl = rd_kafka_topic_partition_list_new(8);
	for (size_t k = 0; rc == 0 && topics[k] != NULL; k++)
		rc = tail_add(c, tl, topics[k], err, errlen);
	if (rc == 0 && rd_kafka_assign(c, tl) != 0) {
		snprintf(err, errlen, "assign");
		rc = -1;
	}
	rd_kafka_topic_partition_list_destroy(tl);
	if (rc != 0) {
		rd_kafka_destroy(c);
		return NULL;
	}
	return c;
}

int sw_bench_rt_open(struct sw_bench_rt *rt, const char *bootstrap, const char *group,
		     const char *fetch_wait_ms, char *err, size_t errlen)
{
	const char *const topics[] = {"bench.roundtrip", NULL};

	rt->topic = topics[0];
	rt->c = NULL;
	if ((rt->p = sw_bench_kafka_producer(bootstrap, err, errlen)) == NULL)
		return -1;
	for (int i = 0; i < 5; i++) { /* the topic exists before the tail looks */
		rd_kafka_producev(rt->p, RD_KAFKA_V_TOPIC(rt->topic), RD_KAFKA_V_PARTITION(0),
				  RD_KAFKA_V_VALUE("w", 1),
				  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		rd_kafka_flush(rt->p, 5000);
	}
	if ((rt->c = sw_bench_kafka_tail(bootstrap, group, topics, fetch_wait_ms, err, errlen)) ==
	    NULL) {
		rd_kafka_destroy(rt->p);
		rt->p = NULL;
		return -1;
	}
	return 0;
}

void sw_bench_rt_send(struct sw_bench_rt *rt, uint64_t id)
{
	rd_kafka_producev(rt->p, RD_KAFKA_V_TOPIC(rt->topic), RD_KAFKA_V_PARTITION(0),
			  RD_KAFKA_V_VALUE(&id, sizeof(id)),
			  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	rd_kafka_poll(rt->p, 0);
}

int sw_bench_rt_recv(struct sw_bench_rt *rt, int wait_ms, uint64_t *id)
{
	rd_kafka_message_t *m = rd_kafka_consumer_poll(rt->c, wait_ms);
	int got = 0;

	rd_kafka_poll(rt->p, 0);
	if (m == NULL)
		return 0;
	if (m->err == 0 && m->len == sizeof(*id)) {
		memcpy(id, m->payload, sizeof(*id));
		got = 1;
	}
	rd_kafka_message_destroy(m);
	return got;
}

int64_t sw_bench_rt_once(struct sw_bench_rt *rt, uint64_t id)
{
	int64_t t0 = sw_bench_now_ns();
	uint64_t got = 0;

	sw_bench_rt_send(rt, id);
	while (!sw_bench_rt_recv(rt, 100, &got) || got != id)
		;
	return sw_bench_now_ns() - t0;
}

void sw_bench_rt_close(struct sw_bench_rt *rt)
{
	if (rt->c != NULL) {
		rd_kafka_consumer_close(rt->c);
		rd_kafka_destroy(rt->c);
	}
	if (rt->p != NULL)
		rd_kafka_destroy(rt->p);
	rt->c = rt->p = NULL;
}

void sw_bench_peers_latency(int64_t *lat, size_t n, long long t0)
{
	qsort(lat, n, sizeof(*lat), sw_bench_cmp64);
	printf("{\"case\":\"latency\",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"n\":%zu,"
	       "\"t0\":%lld,\"t1\":%lld}\n",
	       (double)lat[(n - 1) / 2] / 1e6, (double)lat[(size_t)((double)(n - 1) * 0.99)] / 1e6,
	       n, t0, sw_bench_epoch_ms());
	fflush(stdout);
}

void sw_bench_peers_case(int steps, int conc, size_t runs, size_t errors, size_t retries_503,
			 double runs_per_s, long long t0, int64_t *lat, size_t nlat)
{
	char pct[96] = "";

	if (lat != NULL && nlat > 0) {
		qsort(lat, nlat, sizeof(*lat), sw_bench_cmp64);
		snprintf(pct, sizeof(pct), ",\"p50_ms\":%.3f,\"p99_ms\":%.3f",
			 (double)lat[(nlat - 1) / 2] / 1e6,
			 (double)lat[(size_t)((double)(nlat - 1) * 0.99)] / 1e6);
	}
	printf("{\"case\":\"%d:%d\",\"steps\":%d,\"conc\":%d,\"runs\":%zu,\"errors\":%zu,"
	       "\"retries_503\":%zu,\"runs_per_s\":%.3f%s,\"t0\":%lld,\"t1\":%lld}\n",
	       steps, conc, steps, conc, runs, errors, retries_503, runs_per_s, pct, t0,
	       sw_bench_epoch_ms());
	fflush(stdout);
}

int sw_bench_peers_parse_case(const char *tok, int *steps, int *conc, size_t *total)
{
	*steps = *conc = 0;
	*total = 0;
	if (sscanf(tok, "%d:%d:%zu", steps, conc, total) < 2 || (*steps != 1 && *steps != 3) ||
	    *conc < 1 || *conc > 8192)
		return -1;
	return 0;
}
