/*
 * Black-box tests of GET /v1/audit/events (services/audit/feed.c), the
 * cursor that `sagewai audit tail` reads, over the harness's Kafka and
 * PostgreSQL:
 *
 *   feed       paging with after/limit gives every event once in log order,
 *              next ends at head; run, type and last filter; a long poll
 *              answers as soon as its event is indexed, and with nothing
 *              after its wait; hostile queries are 400 and the service
 *              goes on; clients that hang up mid-poll cost nothing; a poll
 *              still waiting at shutdown is answered and the service exits 0
 *   feed_keys  multi_tenant: no key 401; a tenant's key sees only its
 *              tenant's events, also in a long poll woken by another
 *              tenant's event; an auditor's key sees both
 *   feed_race  40 long polls (wait=1) for a run that has no event while
 *              other events stream: each is woken and requeried over and
 *              over, so its wait runs out while a requery is in flight; every
 *              poll is answered empty after its wait and the service lives
 *              (it used to answer and free the poll there, under its query)
 *
 * The service's consumer group starts at the topics' ends, so its log holds
 * only what a scenario produces.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

static struct sw_event_registry *reg;
static char prefix[40];
static char data_dir[512];
static char db_dsn[512];
static char group[128];
static int http_port;
static pid_t audit_pid = -1;
static rd_kafka_t *producer;
static const char *audit_mode = "SAGEWAI_MODE=single_org";

static void audit_start(void)
{
	static const char *const argv[] = {"sagewai-audit", "serve", NULL};
	char path[600], log[600], dir[600], dsn[600], gid[160], port[40];
	const char *const env[] = {dir, dsn, gid, port, audit_mode, "SAGEWAI_LOG_LEVEL=info",
				   SW_TEST_ENV_FAST_REBALANCE, NULL};

	snprintf(path, sizeof(path), "%s/services/audit/sagewai-audit", getenv("SW_BUILD_DIR"));
	snprintf(log, sizeof(log), "%s/audit.log", data_dir);
	snprintf(dir, sizeof(dir), "SAGEWAI_DATA_DIR=%s", data_dir);
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "audit");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(port, sizeof(port), "SAGEWAI_HTTP_PORT=%d", http_port);
	audit_pid = sw_test_proc_spawn(path, argv, env, log);
	sw_test_http_wait_healthy(http_port, audit_pid, "sagewai-audit");
}

static void setup(const char *scenario)
{
	const char *build = getenv("SW_BUILD_DIR");
	char q[1100], err[256];

	sw_test_env_load();
	sw_test_proc_watch(&audit_pid);
	SW_CHECK(build != NULL && sodium_init() >= 0);
	snprintf(prefix, sizeof(prefix), "%s-%d", scenario, (int)getpid());
	snprintf(group, sizeof(group), "audit-feed-%s", prefix);
	snprintf(data_dir, sizeof(data_dir), "%s/tests-tmp/audit-%s", build, prefix);
	snprintf(q, sizeof(q), "mkdir -p %s", data_dir);
	SW_CHECK(system(q) == 0);
	snprintf(q, sizeof(q), "%s/audit.log", data_dir);
	sw_test_log_watch(q, 40);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "audit", scenario);
	http_port = sw_test_port_free();
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
	/* sagewai-audit reads every sagewai.* topic: none of what earlier
	 * tests left there */
	sw_test_kafka_group_to_end_prefix(group, "sagewai.");
}

/* An event of run "<prefix>-<run>" (tenant may be ""), delivered. */
static void produce(const char *run, const char *type, const char *tenant)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;
	json_t *o;

	sw_event_header_init(&h, type, "sagewai-scheduler");
	snprintf(h.run_id, sizeof(h.run_id), "%s-%s", prefix, run);
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	if (strcmp(type, "run.submitted") == 0)
		o = json_pack("{s:s, s:i, s:s}", "workflow", "w", "workflow_version", 1, "input",
			      "{}");
	else
		o = json_pack("{s:s, s:i}", "workflow", "w", "workflow_version", 1);
	SW_CHECKF(sw_event_encode(reg, type, &h, o, &buf, &len, err, sizeof(err)) == 0, "%s",
		  err);
	json_decref(o);
	sw_test_kafka_send(producer, "sagewai.runs", h.run_id, buf, len);
	free(buf);
}

struct get {
	long status;
	json_t *body;
	double secs;
};

/* GET path (as key when not NULL). */
static struct get get_as(const char *path, const char *key)
{
	struct sw_test_http_reply r = {0};
	struct get g = {0};
	char url[700], auth[200];
	const char *h[2] = {auth, NULL};
	int64_t t0 = sw_mono_ns();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", http_port, path);
	if (key != NULL)
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	sw_test_http_request("GET", url, NULL, 0, key ? h : NULL, 60, &r);
	g.status = r.status;
	g.body = r.body ? json_loads(r.body, 0, NULL) : NULL;
	g.secs = (double)(sw_mono_ns() - t0) / 1e9;
	free(r.body);
	return g;
}

static struct get get(const char *path)
{
	return get_as(path, NULL);
}

static long long jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static const char *ev_str(json_t *item, const char *k)
{
	return json_string_value(
		json_object_get(json_object_get(json_object_get(item, "event"), "header"), k));
}

/* Wait until the index holds want events of this scenario. */
static void wait_indexed(long want)
{
	char q[256];
	int64_t until = sw_mono_ns() + 120 * 1000000000LL;

	snprintf(q, sizeof(q), "SELECT count(*) FROM audit.events WHERE run_id LIKE '%s-%%'",
		 prefix);
	while (sw_test_pg_long(db_dsn, q) < want) {
		SW_REQUIRE(sw_mono_ns() < until, "index never reached %ld rows", want);
		sw_test_msleep(100);
	}
}

struct poll_arg {
	char path[512];
	const char *key;
	struct get g;
};

static void *poll_thread(void *arg)
{
	struct poll_arg *a = arg;

	a->g = get_as(a->path, a->key);
	return NULL;
}

static void expect_400(const char *query)
{
	char path[700];
	struct get g;

	snprintf(path, sizeof(path), "/v1/audit/events?%s", query);
	g = get(path);
	SW_REQUIRE(g.status == 400, "%s: status %ld", query, g.status);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(json_object_get(g.body, "error"),
							    "code")),
			  "bad_query") == 0,
		   "%s: error code", query);
	json_decref(g.body);
}

/* Connect, send a long poll and hang up at once. */
static void hang_up_poll(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
	char req[200];
	int fd = socket(AF_INET, SOCK_STREAM, 0), n;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	SW_CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	n = snprintf(req, sizeof(req),
		     "GET /v1/audit/events?after=999999999&wait=30 HTTP/1.1\r\nHost: x\r\n\r\n");
	SW_CHECK(write(fd, req, (size_t)n) == n);
	sw_test_msleep(5);
	close(fd);
}

static void scenario_feed(void)
{
	struct get g;
	json_t *item;
	struct poll_arg pa = {0};
	pthread_t th;
	char path[512];
	long long after = 0, head, seqs[64], last_seq = 0, r2[64];
	size_t i, n = 0, nr2 = 0;
	char r2name[64];
	int k;

	audit_start();
	g = get("/v1/audit/events?last=5");
	SW_REQUIRE(g.status == 200 && json_array_size(json_object_get(g.body, "events")) == 0 &&
			   jint(g.body, "head") == 0 && jint(g.body, "next") == 0,
		   "an empty log");
	json_decref(g.body);

	/* a long poll answered by the first event, not by its wait */
	snprintf(pa.path, sizeof(pa.path), "/v1/audit/events?after=0&wait=25");
	SW_CHECK(pthread_create(&th, NULL, poll_thread, &pa) == 0);
	sw_test_msleep(1000);
	produce("r0", "run.submitted", "default");
	sw_test_kafka_flush(producer, 30000);
	SW_CHECK(pthread_join(th, NULL) == 0);
	SW_REQUIRE(pa.g.status == 200 && pa.g.secs < 10 &&
			   json_array_size(json_object_get(pa.g.body, "events")) == 1,
		   "long poll: status %ld after %.1f s", pa.g.status, pa.g.secs);
	item = json_array_get(json_object_get(pa.g.body, "events"), 0);
	SW_REQUIRE(strcmp(ev_str(item, "type"), "run.submitted") == 0 &&
			   jint(pa.g.body, "next") == jint(item, "seq"),
		   "the event and next");
	fprintf(stderr, "long poll answered %.2f s after it was sent\n", pa.g.secs);
	json_decref(pa.g.body);

	/* 29 more: three runs, two types */
	for (k = 1; k < 30; k++) {
		char run[8];

		snprintf(run, sizeof(run), "r%d", k % 3);
		produce(run, k % 2 ? "run.started" : "run.submitted", "default");
	}
	sw_test_kafka_flush(producer, 30000);
	wait_indexed(30);

	/* paging: every event once, in log order */
	snprintf(r2name, sizeof(r2name), "%s-r2", prefix);
	for (;;) {
		snprintf(path, sizeof(path), "/v1/audit/events?after=%lld&limit=7", after);
		g = get(path);
		SW_REQUIRE(g.status == 200, "page after %lld: %ld", after, g.status);
		json_array_foreach(json_object_get(g.body, "events"), i, item) {
			SW_REQUIRE(jint(item, "seq") > last_seq, "seq order");
			last_seq = jint(item, "seq");
			SW_CHECK(n < 64);
			seqs[n++] = last_seq;
			if (strcmp(ev_str(item, "run_id"), r2name) == 0)
				r2[nr2++] = last_seq;
		}
		head = jint(g.body, "head");
		if (json_array_size(json_object_get(g.body, "events")) == 0) {
			SW_REQUIRE(jint(g.body, "next") == head && head == last_seq, "the end");
			json_decref(g.body);
			break;
		}
		SW_REQUIRE(json_array_size(json_object_get(g.body, "events")) <= 7, "limit");
		after = jint(g.body, "next");
		json_decref(g.body);
	}
	SW_REQUIRE(n == 30 && seqs[0] == 1 && seqs[29] == 30, "%zu events paged", n);

	/* filters */
	snprintf(path, sizeof(path), "/v1/audit/events?run=%s-r1", prefix);
	g = get(path);
	SW_REQUIRE(json_array_size(json_object_get(g.body, "events")) == 10, "run filter");
	json_array_foreach(json_object_get(g.body, "events"), i, item) {
		char want[64];

		snprintf(want, sizeof(want), "%s-r1", prefix);
		SW_REQUIRE(strcmp(ev_str(item, "run_id"), want) == 0, "run filter");
	}
	json_decref(g.body);
	g = get("/v1/audit/events?type=run.started");
	SW_REQUIRE(json_array_size(json_object_get(g.body, "events")) == 15, "type filter");
	json_array_foreach(json_object_get(g.body, "events"), i, item)
		SW_REQUIRE(strcmp(ev_str(item, "type"), "run.started") == 0, "type filter");
	json_decref(g.body);
	g = get("/v1/audit/events?type=run.started,run.submitted&limit=100");
	SW_REQUIRE(json_array_size(json_object_get(g.body, "events")) == 30, "two types");
	json_decref(g.body);
	snprintf(path, sizeof(path), "/v1/audit/events?last=4&run=%s-r2", prefix);
	g = get(path);
	SW_REQUIRE(nr2 == 10 && json_array_size(json_object_get(g.body, "events")) == 4 &&
			   jint(g.body, "next") == 30,
		   "last 4 of r2, next at head");
	for (k = 0; k < 4; k++)
		SW_REQUIRE(jint(json_array_get(json_object_get(g.body, "events"), (size_t)k),
				"seq") == r2[6 + k],
			   "the newest 4 of r2, oldest first");
	json_decref(g.body);

	/* a long poll with nothing to wake it ends with its wait */
	g = get("/v1/audit/events?after=30&wait=2");
	SW_REQUIRE(g.status == 200 && g.secs >= 1.9 && g.secs < 8 &&
			   json_array_size(json_object_get(g.body, "events")) == 0 &&
			   jint(g.body, "next") == 30,
		   "an idle poll: %.1f s", g.secs);
	json_decref(g.body);
	/* woken by an event of another run only: it keeps waiting, then answers */
	snprintf(pa.path, sizeof(pa.path), "/v1/audit/events?after=30&wait=3&run=%s-r1", prefix);
	SW_CHECK(pthread_create(&th, NULL, poll_thread, &pa) == 0);
	sw_test_msleep(500);
	produce("r2", "run.started", "default");
	sw_test_kafka_flush(producer, 30000);
	SW_CHECK(pthread_join(th, NULL) == 0);
	SW_REQUIRE(pa.g.status == 200 && pa.g.secs >= 2.9 &&
			   json_array_size(json_object_get(pa.g.body, "events")) == 0 &&
			   jint(pa.g.body, "next") == 31,
		   "a poll for r1 is not answered by r2's event (%.1f s, next %lld)", pa.g.secs,
		   jint(pa.g.body, "next"));
	json_decref(pa.g.body);

	/* hostile queries */
	expect_400("after=-1");
	expect_400("after=abc");
	expect_400("after=99999999999999999999");
	expect_400("last=0");
	expect_400("last=5001");
	expect_400("limit=0");
	expect_400("wait=31");
	expect_400("type=Run.Started");
	expect_400("type=,");
	expect_400("type=run.started,");
	expect_400("type=a'b");
	expect_400("run=a/b");
	expect_400("run=");
	expect_400("nonesuch=1");
	expect_400("after=1&after=2");
	expect_400("last=3&after=1");
	expect_400("last=3&wait=1");
	{
		char many[600] = "type=";

		for (k = 0; k < 33; k++)
			strcat(many, k ? ",a" : "a");
		expect_400(many);
	}
	/* clients hanging up in the middle of their polls */
	for (k = 0; k < 50; k++)
		hang_up_poll();
	sw_test_msleep(300);
	g = get("/v1/audit/events?last=1");
	SW_REQUIRE(g.status == 200 && jint(g.body, "head") == 31, "still serving");
	json_decref(g.body);

	/* a poll still waiting when the service stops is answered */
	snprintf(pa.path, sizeof(pa.path), "/v1/audit/events?after=31&wait=30");
	SW_CHECK(pthread_create(&th, NULL, poll_thread, &pa) == 0);
	sw_test_msleep(500);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	SW_CHECK(pthread_join(th, NULL) == 0);
	SW_REQUIRE(pa.g.secs < 20, "the waiting poll held the shutdown (%.1f s)", pa.g.secs);
	json_decref(pa.g.body);
}

static void produce_tenant_event(const char *type, const char *tenant, json_t *fields)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;

	sw_event_header_init(&h, type, "sagewai-scheduler");
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	SW_CHECKF(sw_event_encode(reg, type, &h, fields, &buf, &len, err, sizeof(err)) == 0,
		  "%s: %s", type, err);
	json_decref(fields);
	sw_test_kafka_send(producer, "sagewai.tenants", tenant[0] ? tenant : h.event_id, buf, len);
	free(buf);
}

static void key_created(const char *tenant, const char *key, const char *role)
{
	char key_id[SW_UUID_STRLEN], hex[65];
	uint8_t hash[32];

	sw_uuid_v7_str(key_id);
	crypto_hash_sha256(hash, (const uint8_t *)key, strlen(key));
	sw_hex_encode(hash, sizeof(hash), hex);
	produce_tenant_event("apikey.created", tenant,
			     json_pack("{s:s, s:s, s:s, s:s}", "key_id", key_id, "tenant_id",
				       tenant, "role", role, "key_sha256", hex));
}

/* Every event the key reads from the cursor: how many, and whether any is
 * of another tenant than only (NULL: any tenant allowed). */
static size_t read_all(const char *key, const char *only, size_t *foreign)
{
	char path[128];
	long long after = 0;
	size_t n = 0, i;
	json_t *item;
	struct get g;

	*foreign = 0;
	for (;;) {
		snprintf(path, sizeof(path), "/v1/audit/events?after=%lld&limit=50", after);
		g = get_as(path, key);
		SW_REQUIRE(g.status == 200, "status %ld", g.status);
		if (json_array_size(json_object_get(g.body, "events")) == 0) {
			json_decref(g.body);
			return n;
		}
		json_array_foreach(json_object_get(g.body, "events"), i, item) {
			const char *t = ev_str(item, "tenant");

			if (only != NULL && (t == NULL || strcmp(t, only) != 0))
				(*foreign)++;
			n++;
		}
		after = jint(g.body, "next");
		json_decref(g.body);
	}
}

static void scenario_feed_keys(void)
{
	char ta[SW_UUID_STRLEN], tb[SW_UUID_STRLEN], path[256];
	struct poll_arg pa = {0};
	size_t foreign, n;
	pthread_t th;
	struct get g;
	int64_t until;
	int k;

	char ka[80], kb[80], kaud[80];

	audit_mode = "SAGEWAI_MODE=multi_tenant";
	audit_start();
	/* keys of this run only (a key's hash is unique among all learnt) */
	snprintf(ka, sizeof(ka), "swk_feed-a-%s", prefix);
	snprintf(kb, sizeof(kb), "swk_feed-b-%s", prefix);
	snprintf(kaud, sizeof(kaud), "swk_feed-auditor-%s", prefix);
	sw_uuid_v7_str(ta);
	sw_uuid_v7_str(tb);
	produce_tenant_event("tenant.created", ta, json_pack("{s:s, s:s}", "tenant_id", ta, "name",
							     "acme"));
	produce_tenant_event("tenant.created", tb, json_pack("{s:s, s:s}", "tenant_id", tb, "name",
							     "globex"));
	key_created(ta, ka, "TENANT");
	key_created(tb, kb, "TENANT");
	key_created("", kaud, "AUDITOR");
	for (k = 0; k < 6; k++)
		produce(k % 2 ? "rb" : "ra", "run.submitted", k % 2 ? tb : ta);
	sw_test_kafka_flush(producer, 30000);
	wait_indexed(6);
	until = sw_mono_ns() + 60 * 1000000000LL;
	while ((g = get_as("/v1/audit/events?last=1", kaud)).status != 200) {
		json_decref(g.body);
		SW_REQUIRE(sw_mono_ns() < until, "the auditor key never worked");
		sw_test_msleep(200);
	}
	json_decref(g.body);
	g = get("/v1/audit/events?last=1");
	SW_REQUIRE(g.status == 401, "no key: %ld", g.status);
	json_decref(g.body);
	g = get_as("/v1/audit/events?last=1", "swk_made-up");
	SW_REQUIRE(g.status == 401, "unknown key: %ld", g.status);
	json_decref(g.body);

	/* its 3 run events, and its tenant.created and apikey.created */
	n = read_all(ka, ta, &foreign);
	SW_REQUIRE(n == 5 && foreign == 0, "tenant a reads %zu events, %zu foreign", n, foreign);
	n = read_all(kb, tb, &foreign);
	SW_REQUIRE(n == 5 && foreign == 0, "tenant b reads %zu events, %zu foreign", n, foreign);
	/* the auditor: every event, the auditor key's own too */
	n = read_all(kaud, NULL, &foreign);
	SW_REQUIRE(n == 11, "the auditor reads %zu events", n);

	/* a's long poll is not answered with b's event */
	g = get_as("/v1/audit/events?last=1", kaud);
	snprintf(pa.path, sizeof(pa.path), "/v1/audit/events?after=%lld&wait=3",
		 jint(g.body, "head"));
	json_decref(g.body);
	pa.key = ka;
	SW_CHECK(pthread_create(&th, NULL, poll_thread, &pa) == 0);
	sw_test_msleep(500);
	produce("rb", "run.started", tb);
	sw_test_kafka_flush(producer, 30000);
	SW_CHECK(pthread_join(th, NULL) == 0);
	SW_REQUIRE(pa.g.status == 200 &&
			   json_array_size(json_object_get(pa.g.body, "events")) == 0 &&
			   pa.g.secs >= 2.9,
		   "a's poll saw b's event (%.1f s)", pa.g.secs);
	json_decref(pa.g.body);
	snprintf(path, sizeof(path), "/v1/audit/events?run=%s-rb", prefix);
	g = get_as(path, ka);
	SW_REQUIRE(g.status == 200 && json_array_size(json_object_get(g.body, "events")) == 0,
		   "a reads b's run by name");
	json_decref(g.body);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
}

/* ---- wait timers that run out during a requery -------------------------- */

#define RACE_POLLS 40
#define RACE_ROUNDS 3

static volatile int race_streaming = 1;

/* Events of run "busy", one every 5 ms, until race_streaming is cleared:
 * every index insert wakes the parked polls. */
static void *race_stream(void *arg)
{
	(void)arg;
	while (race_streaming) {
		produce("busy", "run.started", "default");
		sw_test_msleep(5);
	}
	return NULL;
}

/* 1 when g is the HTTP guard's refusal of a connection over its
 * per-address cap: nothing was done. The pollers' 1 s timers run out
 * together, so all of them reconnect at once while the server may not have
 * freed their previous connections yet (40 + 40 over a cap of 64). */
static int refused_at_accept(const struct get *g)
{
	const char *code =
	    json_string_value(json_object_get(json_object_get(g->body, "error"), "code"));

	return g->status == 503 && code != NULL && strcmp(code, "too_many_connections") == 0;
}

static void *race_poller(void *arg)
{
	struct poll_arg *a = arg;
	int k, tries;

	for (k = 0; k < RACE_ROUNDS; k++) {
		for (tries = 0;; tries++) {
			a->g = get_as(a->path, NULL);
			if (!refused_at_accept(&a->g) || tries == 200)
				break;
			json_decref(a->g.body);
			a->g.body = NULL;
			sw_test_msleep(5);
		}
		if (a->g.status != 200 || a->g.secs < 0.9 ||
		    json_array_size(json_object_get(a->g.body, "events")) != 0)
			return a; /* checked by the caller */
		json_decref(a->g.body);
		a->g.body = NULL;
	}
	return NULL;
}

static void scenario_feed_race(void)
{
	static struct poll_arg pa[RACE_POLLS];
	pthread_t th[RACE_POLLS], st;
	struct get g;
	void *bad;
	int k, status;

	audit_start();
	produce("busy", "run.started", "default");
	sw_test_kafka_flush(producer, 30000);
	wait_indexed(1);
	SW_CHECK(pthread_create(&st, NULL, race_stream, NULL) == 0);
	for (k = 0; k < RACE_POLLS; k++) {
		snprintf(pa[k].path, sizeof(pa[k].path),
			 "/v1/audit/events?after=0&run=%s-none&wait=1", prefix);
		SW_CHECK(pthread_create(&th[k], NULL, race_poller, &pa[k]) == 0);
	}
	for (k = 0; k < RACE_POLLS; k++) {
		SW_CHECK(pthread_join(th[k], &bad) == 0);
		if (bad != NULL) {
			char *text = json_dumps(pa[k].g.body, JSON_COMPACT);

			SW_REQUIRE(0, "poll %d: status %ld after %.2f s, %zu events: %s", k,
				   pa[k].g.status, pa[k].g.secs,
				   json_array_size(json_object_get(pa[k].g.body, "events")),
				   text != NULL ? text : "(no body)");
		}
	}
	race_streaming = 0;
	SW_CHECK(pthread_join(st, NULL) == 0);
	SW_REQUIRE(waitpid(audit_pid, &status, WNOHANG) == 0, "sagewai-audit died (status %d)",
		   status);
	g = get("/v1/audit/events?last=1");
	SW_REQUIRE(g.status == 200 && jint(g.body, "head") > 100, "still serving (head %lld)",
		   jint(g.body, "head"));
	json_decref(g.body);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
		{"feed", scenario_feed},
		{"feed_keys", scenario_feed_keys},
		{"feed_race", scenario_feed_race},
	};
	const struct sw_test_scenario *sc = sw_test_scenario_pick(argc, argv, scenarios, 3);

	setup(sc->name);
	sc->fn();
	rd_kafka_destroy(producer);
	sw_events_registry_destroy(reg);
	fprintf(stderr, "audit %s: ok\n", sc->name);
	return 0;
}
