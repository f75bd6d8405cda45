/*
 * bench-identity: the identity cascade resolved through sagewai-identity,
 * request on Kafka to reply, against a running stack (bench/identity/run
 * starts one on the harness's real Kafka broker, a private PostgreSQL and
 * an OpenBao dev server).
 *
 *   builtin   a 3-level cascade (system, workflow, user), one key per level,
 *             each bound to a built-in secret: identity.resolve_requested
 *             produced -> identity.resolved consumed, p50/p99, one at a time;
 *             baselines in the same run: a raw librdkafka produce -> consume
 *             round trip (one hop) on the same broker, a raw request/reply
 *             (two hops: an echo thread with its own consumer and producer),
 *             and a raw PostgreSQL primary-key SELECT (prepared)
 *   vault     the same cascade with the workflow key in Vault KV v2;
 *             baseline: a raw HTTP GET of the same KV path (keep-alive)
 *   service   the service's own work per resolution: its
 *             sagewai_identity_resolve_seconds_sum / _count from /metrics
 *             over the builtin run
 *
 * One JSON line per figure: {"bench","figure","value","unit","baseline",
 * "ratio"}. Setup goes through the identity HTTP API with the admin token.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "sw_bench.h"
#include "sw_core.h"
#include "sw_events.h"

static const char *url, *bootstrap, *pg, *vault_addr, *vault_token, *admin;
static struct sw_event_registry *reg;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench-identity: %s: %s\n", what, why);
	exit(1);
}

static size_t collect(char *d, size_t sz, size_t nm, void *u)
{
	return sw_buf_add(u, d, sz * nm) == 0 ? sz * nm : 0;
}

/* One HTTP call; the body of the answer in out (caller frees). */
static long http(CURL *c, const char *method, const char *u, const char *hdr, const char *body,
		 struct sw_buf *out)
{
	struct curl_slist *h = NULL;
	long status = 0;

	sw_buf_reset(out);
	curl_easy_setopt(c, CURLOPT_URL, u);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	h = curl_slist_append(h, "Content-Type: application/json");
	if (hdr != NULL)
		h = curl_slist_append(h, hdr);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	if (body == NULL)
		curl_easy_setopt(c, CURLOPT_HTTPGET, strcmp(method, "GET") == 0 ? 1L : 0L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	return status;
}

static void api(CURL *c, const char *method, const char *path, const char *body)
{
	char u[512], auth[512];
	struct sw_buf out;
	long st;

	sw_buf_init(&out, 1 << 20);
	snprintf(u, sizeof(u), "%s%s", url, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
	st = http(c, method, u, auth, body, &out);
	if (st < 200 || st > 299) {
		fprintf(stderr, "bench-identity: %s %s: HTTP %ld %.*s\n", method, path, st,
			(int)out.len, out.p ? out.p : "");
		exit(1);
	}
	sw_buf_free(&out);
}

/* 32 random bytes as base64 of a printable value */
static void put_secret(CURL *c, const char *scope, const char *name, const char *backend)
{
	unsigned char raw[24];
	char val[64], b64[128], body[512], path[256];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(val, sizeof(val), raw, sizeof(raw));
	sodium_bin2base64(b64, sizeof(b64), (unsigned char *)val, strlen(val),
			  sodium_base64_VARIANT_ORIGINAL);
	snprintf(body, sizeof(body), "{\"value_b64\": \"%s\", \"backend\": \"%s\"}", b64, backend);
	snprintf(path, sizeof(path), "/v1/secrets/%s?tenant=%s", name, scope);
	api(c, "PUT", path, body);
}

static void setup(CURL *c)
{
	put_secret(c, "_system", "bench_sys", "builtin");
	put_secret(c, "default", "bench_wf", "builtin");
	put_secret(c, "default", "bench_user", "builtin");
	api(c, "PUT", "/v1/identity/profiles/default?level=system&tenant=_system",
	    "{\"keys\": {\"SYS_KEY\": {\"secret\": \"bench_sys\"}}}");
	api(c, "PUT", "/v1/identity/profiles/bench?level=workflow&tenant=default",
	    "{\"keys\": {\"WF_KEY\": {\"secret\": \"bench_wf\"}}}");
	api(c, "PUT", "/v1/identity/profiles/benchuser?level=user&tenant=default",
	    "{\"keys\": {\"USER_KEY\": {\"secret\": \"bench_user\"}}}");
	if (vault_addr != NULL) {
		put_secret(c, "default", "bench_vault", "vault");
		api(c, "PUT", "/v1/identity/profiles/benchv?level=workflow&tenant=default",
		    "{\"keys\": {\"WF_KEY\": {\"secret\": \"bench_vault\"}}}");
	}
}

/* ---- Kafka: raw round trips and identity requests ------------------------ */

static rd_kafka_t *kp, *kc;	   /* identity requests, and replies (their own topic) */
static struct sw_bench_rt raw;	   /* raw baseline */

static rd_kafka_t *producer(void)
{
	char err[256];
	rd_kafka_t *p = sw_bench_kafka_producer(bootstrap, err, sizeof(err));

	if (p == NULL)
		die("producer", err);
	return p;
}

/* A consumer of every partition of topic from its end now. */
static rd_kafka_t *tail(const char *topic)
{
	const char *const topics[] = {topic, NULL};
	char err[256], group[64];
	rd_kafka_t *c;

	snprintf(group, sizeof(group), "bench-identity-%d", (int)getpid());
	if ((c = sw_bench_kafka_tail(bootstrap, group, topics, "10", err, sizeof(err))) == NULL)
		die("consumer", err);
	return c;
}

static void raw_setup(void)
{
	char err[256], group[64];

	snprintf(group, sizeof(group), "bench-identity-%d", (int)getpid());
	if (sw_bench_rt_open(&raw, bootstrap, group, "10", err, sizeof(err)) != 0)
		die("raw round trip", err);
}

/* Where the time of each resolution goes, from the events' header times
 * (CLOCK_REALTIME on this one machine): request made -> answer made
 * (the first hop and the service's work), answer made -> answer here. */
static int64_t *hop_there, *hop_back;
static size_t nhops, caphops;

static int64_t real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A raw request/reply: an echo thread (its own consumer and producer, as a
 * service has) answers each message of bench.req on bench.rep; the main
 * thread produces to one and consumes the other. Two hops, no work: the
 * floor of any Kafka request/reply on this broker. */
static rd_kafka_t *echo_c, *echo_p, *rr_p, *rr_c;
static volatile int echo_stop;

static void *echo_main(void *arg)
{
	(void)arg;
	while (!echo_stop) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(echo_c, 50);

		rd_kafka_poll(echo_p, 0);
		if (m == NULL)
			continue;
		if (m->err == 0)
			rd_kafka_producev(echo_p, RD_KAFKA_V_TOPIC("bench.rep"),
					  RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE(m->payload, m->len),
					  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		rd_kafka_message_destroy(m);
	}
	return NULL;
}

static void echo_setup(pthread_t *t)
{
	const char *topics[] = {"bench.req", "bench.rep"};

	echo_p = producer();
	rr_p = producer();
	for (int k = 0; k < 2; k++) { /* the topics exist before the tails look */
		rd_kafka_producev(rr_p, RD_KAFKA_V_TOPIC(topics[k]), RD_KAFKA_V_PARTITION(0),
				  RD_KAFKA_V_VALUE("w", 1), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				  RD_KAFKA_V_END);
		rd_kafka_flush(rr_p, 5000);
	}
	echo_c = tail("bench.req");
	rr_c = tail("bench.rep");
	pthread_create(t, NULL, echo_main, NULL);
}

static int64_t echo_once(uint64_t id)
{
	int64_t t0 = sw_bench_now_ns();

	rd_kafka_producev(rr_p, RD_KAFKA_V_TOPIC("bench.req"), RD_KAFKA_V_PARTITION(0),
			  RD_KAFKA_V_VALUE(&id, sizeof(id)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			  RD_KAFKA_V_END);
	for (;;) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rr_c, 100);
		int hit = 0;

		rd_kafka_poll(rr_p, 0);
		if (m == NULL) {
			if (sw_bench_now_ns() - t0 > 10000000000LL)
				die("echo", "no reply within 10 s");
			continue;
		}
		if (m->err == 0 && m->len == sizeof(id)) {
			uint64_t got;

			memcpy(&got, m->payload, sizeof(got));
			hit = got == id;
		}
		rd_kafka_message_destroy(m);
		if (hit)
			return sw_bench_now_ns() - t0;
	}
}

/* One resolution of workflow profile wfprof for user "benchuser";
 * returns the round trip in ns. */
static int64_t resolve_once(const char *wfprof)
{
	struct sw_event_header h;
	char rid[SW_UUID_STRLEN], err[256], run[SW_UUID_STRLEN];
	uint8_t u[16];
	void *msg;
	size_t len;
	json_t *ev;
	int64_t t0;

	sw_uuid_v7(u);
	sw_uuid_format(u, rid);
	sw_uuid_v7(u);
	sw_uuid_format(u, run);
	sw_event_header_init(&h, "identity.resolve_requested", "bench-identity");
	snprintf(h.tenant, sizeof(h.tenant), "default");
	snprintf(h.run_id, sizeof(h.run_id), "%s", run);
	ev = json_pack("{s:s,s:s,s:i,s:s,s:[{s:s,s:s,s:s,s:s}],s:[]}", "request_id", rid,
		       "workflow", "bench", "workflow_version", 1, "user", "benchuser", "steps",
		       "step", "use", "mode", "identity_scoped", "agent", "", "profile", wfprof,
		       "input_macs");
	if (sw_event_encode(reg, "identity.resolve_requested", &h, ev, &msg, &len, err,
			    sizeof(err)) < 0)
		die("encode", err);
	json_decref(ev);
	t0 = sw_bench_now_ns();
	if (rd_kafka_producev(kp, RD_KAFKA_V_TOPIC("sagewai.identity"), RD_KAFKA_V_KEY(run, 36),
			      RD_KAFKA_V_VALUE(msg, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			      RD_KAFKA_V_END) != 0)
		die("produce", "identity.resolve_requested");
	free(msg);
	for (;;) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(kc, 100);
		struct sw_event_header rh;
		int done = 0;

		rd_kafka_poll(kp, 0);
		if (m == NULL) {
			if (sw_bench_now_ns() - t0 > 10000000000LL)
				die("resolve", "no identity.resolved within 10 s");
			continue;
		}
		if (m->err == 0 &&
		    sw_event_decode_header(reg, m->payload, m->len, &rh, err, sizeof(err)) == 0 &&
		    strcmp(rh.type, "identity.resolved") == 0) {
			json_t *r = sw_event_decode(reg, m->payload, m->len, err, sizeof(err));
			const char *got = json_string_value(json_object_get(r, "request_id"));

			if (got != NULL && strcmp(got, rid) == 0 && nhops < caphops) {
				hop_there[nhops] = (rh.time_us - h.time_us) * 1000;
				hop_back[nhops++] = (real_us() - rh.time_us) * 1000;
			}
			if (got != NULL && strcmp(got, rid) == 0) {
				if (!json_is_true(json_object_get(r, "ok")))
					die("resolve", json_string_value(json_object_get(r, "error")));
				if (json_array_size(json_object_get(
					json_array_get(json_object_get(r, "steps"), 0), "keys")) != 3)
					die("resolve", "the cascade did not give 3 keys");
				done = 1;
			}
			json_decref(r);
		}
		rd_kafka_message_destroy(m);
		if (done)
			return sw_bench_now_ns() - t0;
	}
}

/* ---- PostgreSQL and Vault baselines --------------------------------------- */

static PGconn *pgc;

static void pg_setup(void)
{
	PGresult *r;

	if ((pgc = PQconnectdb(pg)) == NULL || PQstatus(pgc) != CONNECTION_OK)
		die("postgresql", pgc ? PQerrorMessage(pgc) : "no memory");
	r = PQexec(pgc, "CREATE TEMP TABLE bench_pk (k int PRIMARY KEY, v text);"
			"INSERT INTO bench_pk SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("postgresql", PQerrorMessage(pgc));
	PQclear(r);
	r = PQprepare(pgc, "pk", "SELECT v FROM bench_pk WHERE k = $1", 1, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("postgresql", PQerrorMessage(pgc));
	PQclear(r);
}

static int64_t pg_once(int k)
{
	char v[16];
	const char *p[1] = {v};
	int64_t t0;
	PGresult *r;

	snprintf(v, sizeof(v), "%d", 1 + k % 1000);
	t0 = sw_bench_now_ns();
	r = PQexecPrepared(pgc, "pk", 1, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		die("postgresql", PQerrorMessage(pgc));
	PQclear(r);
	return sw_bench_now_ns() - t0;
}

static int64_t vault_once(CURL *c, const char *u, const char *hdr, struct sw_buf *out)
{
	int64_t t0 = sw_bench_now_ns();

	if (http(c, "GET", u, hdr, NULL, out) != 200)
		die("vault", "raw GET of the KV path failed");
	return sw_bench_now_ns() - t0;
}

/* ---- figures --------------------------------------------------------------- */

static void emit(const char *figure, double value, const char *unit, const char *base_name,
		 double baseline)
{
	printf("{\"bench\": \"identity\", \"figure\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", "
	       "\"baseline_name\": \"%s\", \"baseline\": %.3f, \"ratio\": %.3f}\n",
	       figure, value, unit, base_name, baseline, baseline > 0 ? value / baseline : 0);
	fflush(stdout);
}

/* sum and count of the service's resolve timer, or -1 */
static int metric(CURL *c, double *sum, double *count)
{
	char u[512];
	struct sw_buf out;
	const char *s, *n;
	int rc = -1;

	sw_buf_init(&out, 4 << 20);
	snprintf(u, sizeof(u), "%s/metrics", url);
	curl_easy_reset(c);
	if (http(c, "GET", u, NULL, NULL, &out) == 200 && sw_buf_add(&out, "", 1) == 0 &&
	    (s = strstr(out.p, "\nsagewai_identity_resolve_seconds_sum ")) != NULL &&
	    (n = strstr(out.p, "\nsagewai_identity_resolve_seconds_count ")) != NULL) {
		*sum = strtod(s + strlen("\nsagewai_identity_resolve_seconds_sum "), NULL);
		*count = strtod(n + strlen("\nsagewai_identity_resolve_seconds_count "), NULL);
		rc = 0;
	}
	sw_buf_free(&out);
	return rc;
}

int main(int argc, char **argv)
{
	size_t n = 2000, warm = 300, i;
	int64_t *a, *b, *d, *e;
	pthread_t echo_t;
	double s0 = 0, c0 = 0, s1 = 0, c1 = 0;
	char err[256];
	CURL *c;

	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--url") == 0 && k + 1 < argc)
			url = argv[++k];
		else if (strcmp(argv[k], "--bootstrap") == 0 && k + 1 < argc)
			bootstrap = argv[++k];
		else if (strcmp(argv[k], "--pg") == 0 && k + 1 < argc)
			pg = argv[++k];
		else if (strcmp(argv[k], "--vault-addr") == 0 && k + 1 < argc)
			vault_addr = argv[++k];
		else if (strcmp(argv[k], "--vault-token") == 0 && k + 1 < argc)
			vault_token = argv[++k];
		else if (strcmp(argv[k], "-n") == 0 && k + 1 < argc)
			n = strtoul(argv[++k], NULL, 10);
		else if (strcmp(argv[k], "--warmup") == 0 && k + 1 < argc)
			warm = strtoul(argv[++k], NULL, 10);
		else
			die("usage", "bench-identity --url IDENTITY_URL --bootstrap HOST:PORT --pg DSN"
				     " [--vault-addr URL --vault-token T] [-n N] [--warmup N]"
				     " (SAGEWAI_ADMIN_TOKEN in the environment)");
	}
	admin = getenv("SAGEWAI_ADMIN_TOKEN");
	if (url == NULL || bootstrap == NULL || pg == NULL || admin == NULL || n < 10)
		die("usage", "--url, --bootstrap, --pg and SAGEWAI_ADMIN_TOKEN are required");
	if (sodium_init() < 0 || (reg = sw_events_registry_new(err, sizeof(err))) == NULL)
		die("init", err);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c = curl_easy_init();
	setup(c);
	kp = producer();
	kc = tail("sagewai.identity.replies");
	raw_setup();
	echo_setup(&echo_t);
	pg_setup();
	a = calloc(n, sizeof(*a));
	b = calloc(n, sizeof(*b));
	d = calloc(n, sizeof(*d));
	e = calloc(n, sizeof(*e));
	for (i = 0; i < warm; i++) { /* JIT of the broker, caches, connections */
		resolve_once("bench");
		sw_bench_rt_once(&raw, i);
		echo_once(i);
		pg_once((int)i);
	}
	metric(c, &s0, &c0);
	hop_there = calloc(n, sizeof(*hop_there));
	hop_back = calloc(n, sizeof(*hop_back));
	caphops = n;
	for (i = 0; i < n; i++) { /* interleaved: the same conditions for each */
		a[i] = resolve_once("bench");
		b[i] = sw_bench_rt_once(&raw, warm + i);
		e[i] = echo_once(warm + i);
		d[i] = pg_once((int)i);
	}
	if (metric(c, &s1, &c1) != 0 || c1 <= c0)
		fprintf(stderr, "bench-identity: /metrics gave no resolve timer (%.0f -> %.0f)\n", c0,
			c1);
	else
		emit("service_own_work_mean_ms", (s1 - s0) / (c1 - c0) * 1e3, "ms",
		     "raw_pg_pk_select_p50", sw_bench_pct_ms(d, n, 0.5));
	{
		double rp50 = sw_bench_pct_ms(a, n, 0.5), rp99 = sw_bench_pct_ms(a, n, 0.99);
		double kp50 = sw_bench_pct_ms(b, n, 0.5), kp99 = sw_bench_pct_ms(b, n, 0.99);

		double ep50 = sw_bench_pct_ms(e, n, 0.5), ep99 = sw_bench_pct_ms(e, n, 0.99);

		emit("builtin_resolve_p50_ms", rp50, "ms", "raw_kafka_roundtrip_p50", kp50);
		emit("builtin_resolve_p50_ms", rp50, "ms", "raw_kafka_request_reply_p50", ep50);
		emit("builtin_resolve_p99_ms", rp99, "ms", "raw_kafka_request_reply_p99", ep99);
		if (nhops > 0) {
			emit("builtin_request_to_answer_made_p50_ms",
			     sw_bench_pct_ms(hop_there, nhops, 0.5), "ms",
			     "raw_kafka_roundtrip_p50", kp50);
			emit("builtin_answer_made_to_received_p50_ms",
			     sw_bench_pct_ms(hop_back, nhops, 0.5), "ms",
			     "raw_kafka_roundtrip_p50", kp50);
		}
		caphops = 0; /* the vault rounds are not broken down */
		emit("builtin_resolve_p99_ms", rp99, "ms", "raw_kafka_roundtrip_p99", kp99);
		emit("pg_pk_select_p50_ms", sw_bench_pct_ms(d, n, 0.5), "ms", "none", 0);
		emit("pg_pk_select_p99_ms", sw_bench_pct_ms(d, n, 0.99), "ms", "none", 0);
	}
	if (vault_addr != NULL && vault_token != NULL) {
		char u[512], hdr[512];
		struct sw_buf out;

		sw_buf_init(&out, 1 << 20);
		snprintf(u, sizeof(u), "%s/v1/secret/data/sagewai/default/bench_vault", vault_addr);
		snprintf(hdr, sizeof(hdr), "X-Vault-Token: %s", vault_token);
		for (i = 0; i < warm / 3; i++) {
			resolve_once("benchv");
			vault_once(c, u, hdr, &out);
		}
		for (i = 0; i < n; i++) {
			a[i] = resolve_once("benchv");
			b[i] = vault_once(c, u, hdr, &out);
		}
		emit("vault_resolve_p50_ms", sw_bench_pct_ms(a, n, 0.5), "ms",
		     "raw_vault_kv_get_p50", sw_bench_pct_ms(b, n, 0.5));
		emit("vault_resolve_p99_ms", sw_bench_pct_ms(a, n, 0.99), "ms",
		     "raw_vault_kv_get_p99", sw_bench_pct_ms(b, n, 0.99));
		sw_buf_free(&out);
	}
	echo_stop = 1;
	pthread_join(echo_t, NULL);
	free(a);
	free(b);
	free(d);
	free(e);
	curl_easy_cleanup(c);
	rd_kafka_destroy(kp);
	rd_kafka_consumer_close(kc);
	rd_kafka_destroy(kc);
	sw_bench_rt_close(&raw);
	PQfinish(pgc);
	sw_events_registry_destroy(reg);
	return 0;
}
