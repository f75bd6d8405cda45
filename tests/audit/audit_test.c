/*
 * Black-box tests of sagewai-audit over the real Kafka broker and
 * PostgreSQL of the harness. One program, one scenario per argument:
 *
 *   exactly_once  10,000 events arrive once, in order per partition, the
 *                 chain verifies, the index holds them, the run API answers
 *   kill9         kill -9 of the service mid-stream, restarted: nothing lost
 *                 or duplicated
 *   deadletter    garbage, unknown-fingerprint and truncated messages go to
 *                 sagewai.deadletter with the reason; consumption goes on
 *   pgrestart     a PostgreSQL restart mid-stream loses no index row
 *   flip          a flipped byte in a segment is reported at its record
 *   shortened     a log cut cleanly at a record boundary below what the index
 *                 records: the service refuses to start, naming both seqs
 *   torn          a torn tail (garbage after the last record): the service
 *                 starts, and the log's next record is audit.repaired, also
 *                 produced to Kafka (consumed back as a duplicate)
 *   keys          multi_tenant: the run API answers only keys learnt from
 *                 sagewai.tenants events; a tenant reads its own runs only
 *
 * Topics are shared by every test of a run, so each scenario names its runs
 * "<scenario>-<pid>-..." and counts only those; each uses its own database,
 * consumer group and data directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

#include "sw_alog.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

static struct sw_event_registry *reg;
static char prefix[40];     /* run id prefix of this scenario */
static char data_dir[512];  /* SAGEWAI_DATA_DIR of the service */
static char log_dir[600];   /* its audit log */
static char db_dsn[512];    /* this scenario's database */
static char group[128];
static int http_port;
static pid_t audit_pid = -1;
static rd_kafka_t *producer;
static const char *audit_mode = "SAGEWAI_MODE=single_org";

static void audit_start(void)
{
	static const char *const argv[] = {"sagewai-audit", "serve", NULL};
	char path[600], log[600], dir[600], dsn[600], gid[160], port[40];
	const char *const env[] = {dir,		       dsn,
				   gid,		       port,
				   audit_mode,	       "SAGEWAI_LOG_LEVEL=info",
				   SW_TEST_ENV_FAST_REBALANCE, NULL};

	snprintf(path, sizeof(path), "%s/services/audit/sagewai-audit", getenv("SW_BUILD_DIR"));
	snprintf(log, sizeof(log), "%s/audit.log", data_dir);
	snprintf(dir, sizeof(dir), "SAGEWAI_DATA_DIR=%s", data_dir);
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "audit");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(port, sizeof(port), "SAGEWAI_HTTP_PORT=%d", http_port);
	audit_pid = sw_test_proc_spawn(path, argv, env, log);
}

static void setup(const char *scenario)
{
	static const char *const producer_conf[] = {"linger.ms=5", NULL};
	const char *build = getenv("SW_BUILD_DIR");
	char q[1024], err[512];

	sw_test_env_load();
	sw_test_proc_watch(&audit_pid);
	SW_CHECK(build != NULL);
	snprintf(prefix, sizeof(prefix), "%s-%d", scenario, (int)getpid());
	snprintf(group, sizeof(group), "audit-test-%s", prefix);
	snprintf(data_dir, sizeof(data_dir), "%s/tests-tmp/audit-%s", build, prefix);
	snprintf(log_dir, sizeof(log_dir), "%s/audit", data_dir);
	snprintf(q, sizeof(q), "mkdir -p %s", data_dir);
	SW_CHECK(system(q) == 0);
	snprintf(q, sizeof(q), "%s/audit.log", data_dir);
	sw_test_log_watch(q, 40);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "audit", scenario);
	http_port = sw_test_port_free();
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, producer_conf);
}

static struct {
	void *buf;
	size_t len;
} sent_again[100];

/* One run.submitted event of run r carrying its per-run counter n. */
static void produce_event(int r, int n)
{
	struct sw_event_header h;
	char input[64], err[256];
	void *buf;
	size_t len;
	json_t *o;

	sw_event_header_init(&h, "run.submitted", "audit-test");
	snprintf(h.run_id, sizeof(h.run_id), "%s-r%03d", prefix, r);
	snprintf(input, sizeof(input), "{\"n\": %d}", n);
	o = json_pack("{s:s, s:i, s:s}", "workflow", "audit-test", "workflow_version", 1, "input",
		      input);
	SW_CHECKF(sw_event_encode(reg, "run.submitted", &h, o, &buf, &len, err, sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
	sw_test_kafka_send(producer, r % 2 ? "sagewai.runs" : "sagewai.steps", h.run_id, buf, len);
	if (n == 0 && r < 100) {
		/* kept to be sent again: the same event id must be stored once */
		sent_again[r].buf = buf;
		sent_again[r].len = len;
		return;
	}
	free(buf);
}

/* What the log holds of this scenario. */
struct tally {
	size_t events, dups, order_errors, raw_matches;
	struct {
		uint8_t id[16];
	} *ids;
	size_t nids, capids;
	int last_n[1000];            /* per run counter seen last */
	int64_t last_off[2][64];     /* per (topic, partition) last Kafka offset */
	const void *raw_needle;
	size_t raw_needle_len;
};

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static int tally_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct tally *t = opaque;
	struct sw_event_header h;
	char err[256];
	int ti;

	if (rec->kind == SW_ALOG_RAW && t->raw_needle != NULL &&
	    rec->payload_len == t->raw_needle_len &&
	    memcmp(rec->payload, t->raw_needle, t->raw_needle_len) == 0)
		t->raw_matches++;
	if (rec->kind != SW_ALOG_EVENT)
		return 0;
	if (sw_event_decode_header(reg, rec->payload, rec->payload_len, &h, err, sizeof(err)) != 0)
		return 0;
	if (strncmp(h.run_id, prefix, strlen(prefix)) != 0)
		return 0;
	ti = rec->topic_len == strlen("sagewai.runs") &&
	     memcmp(rec->topic, "sagewai.runs", rec->topic_len) == 0;
	if (rec->partition >= 0 && rec->partition < 64) {
		if (rec->offset <= t->last_off[ti][rec->partition])
			t->order_errors++;
		t->last_off[ti][rec->partition] = rec->offset;
	}
	{
		json_t *ev = sw_event_decode(reg, rec->payload, rec->payload_len, err, sizeof(err));
		json_t *in = ev ? json_loads(json_string_value(json_object_get(ev, "input")), 0,
					     NULL)
				: NULL;
		int r = atoi(h.run_id + strlen(prefix) + 2);
		int n = in ? (int)json_integer_value(json_object_get(in, "n")) : -1;

		if (r >= 0 && r < 1000) {
			if (n != t->last_n[r] + 1)
				t->order_errors++;
			t->last_n[r] = n;
		}
		json_decref(in);
		json_decref(ev);
	}
	if (t->nids == t->capids) {
		t->capids = t->capids ? t->capids * 2 : 1024;
		t->ids = realloc(t->ids, t->capids * sizeof(*t->ids));
		SW_CHECK(t->ids != NULL);
	}
	SW_CHECK(sw_uuid_parse(h.event_id, t->ids[t->nids].id) == 0);
	t->nids++;
	t->events++;
	return 0;
}

static void tally_log(struct tally *t)
{
	char err[256];
	size_t i;
	const void *needle = t->raw_needle;
	size_t nlen = t->raw_needle_len;

	free(t->ids);
	memset(t, 0, sizeof(*t));
	t->raw_needle = needle;
	t->raw_needle_len = nlen;
	memset(t->last_n, 0xff, sizeof(t->last_n)); /* -1: next expected is 0 */
	memset(t->last_off, 0xff, sizeof(t->last_off));
	if (access(log_dir, F_OK) != 0)
		return;
	SW_CHECKF(sw_alog_scan(log_dir, 1, tally_rec, t, err, sizeof(err)) == 0, "scan: %s", err);
	qsort(t->ids, t->nids, sizeof(*t->ids), cmp_id);
	for (i = 1; i < t->nids; i++)
		if (memcmp(t->ids[i - 1].id, t->ids[i].id, 16) == 0)
			t->dups++;
}

/* Wait until the log holds want events of ours (or fail after limit s). */
static void wait_events(struct tally *t, size_t want, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;

	for (;;) {
		tally_log(t);
		if (t->events >= want)
			return;
		SW_REQUIRE(audit_pid < 0 || sw_test_proc_running(audit_pid),
			   "sagewai-audit exited");
		SW_REQUIRE(sw_mono_ns() < until, "only %zu of %zu events in the log after %d s",
			   t->events, want, limit_s);
		sw_test_msleep(200);
	}
}

static void check_exact(struct tally *t, size_t want)
{
	SW_REQUIRE(t->events == want, "log holds %zu events, expected %zu", t->events, want);
	SW_REQUIRE(t->dups == 0, "%zu duplicate event ids in the log", t->dups);
	SW_REQUIRE(t->order_errors == 0, "%zu events out of order", t->order_errors);
}

static void check_verify(void)
{
	struct sw_alog_verify_result r;
	char err[256];

	SW_CHECKF(sw_alog_verify(log_dir, 0, &r, err, sizeof(err)) == 0, "%s", err);
	SW_CHECKF(r.ok, "verify: seq %llu: %s", (unsigned long long)r.bad_seq, r.reason);
}

static long index_count(void)
{
	char q[256];

	snprintf(q, sizeof(q), "SELECT count(*) FROM audit.events WHERE run_id LIKE '%s-%%'",
		 prefix);
	return sw_test_pg_long(db_dsn, q);
}

static void wait_index(long want, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;
	long n;

	while ((n = index_count()) < want) {
		SW_REQUIRE(sw_mono_ns() < until, "index holds %ld of %ld rows after %d s", n, want,
			   limit_s);
		sw_test_msleep(200);
	}
	SW_REQUIRE(n == want, "index holds %ld rows, expected %ld", n, want);
}

/* GET path on the service; returns the HTTP status, body in *out. */
static long http_get(const char *path, json_t **out)
{
	long status;
	char *body = sw_test_http_get(http_port, path, &status);

	if (out)
		*out = body ? json_loads(body, 0, NULL) : NULL;
	free(body);
	return status;
}

static void wait_http(void)
{
	sw_test_http_wait_healthy(http_port, audit_pid, "sagewai-audit");
}

static void scenario_exactly_once(void)
{
	struct tally t = {0};
	json_t *body;
	char path[256];
	int r, n;
	size_t i;

	audit_start();
	wait_http();
	for (n = 0; n < 100; n++)
		for (r = 0; r < 100; r++)
			produce_event(r, n);
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 10000, 180);
	/* re-publish 100 events unchanged (as a replay or a producer retry
	 * would): same event ids, so nothing new may be stored */
	for (r = 0; r < 100; r++) {
		char key[64];

		snprintf(key, sizeof(key), "%s-r%03d", prefix, r);
		sw_test_kafka_send(producer, r % 2 ? "sagewai.runs" : "sagewai.steps", key,
				   sent_again[r].buf, sent_again[r].len);
		free(sent_again[r].buf);
	}
	sw_test_kafka_flush(producer, 60000);
	{
		/* the duplicates have been consumed once the group's committed
		 * offsets pass them; the log must still hold 10000 */
		int64_t until = sw_mono_ns() + 60 * 1000000000LL;

		for (;;) {
			SW_CHECK(http_get("/metrics", NULL) == 200);
			if (sw_test_metric_get(http_port, "sagewai_audit_duplicates_total") >= 100)
				break;
			SW_REQUIRE(sw_mono_ns() < until, "duplicates not seen by the service");
			sw_test_msleep(200);
		}
	}
	sw_test_msleep(500); /* anything extra would show up now */
	tally_log(&t);
	check_exact(&t, 10000);
	check_verify();
	wait_index(10000, 120);

	snprintf(path, sizeof(path), "/v1/audit/runs/%s-r042", prefix);
	SW_CHECK(http_get(path, &body) == 200);
	SW_CHECK(body != NULL);
	SW_CHECKF(json_array_size(json_object_get(body, "events")) == 100, "run has %zu events",
		  json_array_size(json_object_get(body, "events")));
	for (i = 0; i < 100; i++) {
		json_t *ev = json_object_get(json_array_get(json_object_get(body, "events"), i),
					     "event");
		json_t *in = json_loads(json_string_value(json_object_get(ev, "input")), 0, NULL);

		SW_CHECK(in != NULL);
		SW_CHECK(json_integer_value(json_object_get(in, "n")) == (json_int_t)i);
		json_decref(in);
	}
	json_decref(body);
	SW_CHECK(http_get("/v1/audit/runs/bad%20id", NULL) == 400);
	SW_CHECK(http_get("/metrics", NULL) == 200);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	free(t.ids);
}

static void scenario_kill9(void)
{
	struct tally t = {0};
	int r, n, kills = 0;

	audit_start();
	wait_http();
	for (n = 0; n < 100; n++) {
		for (r = 0; r < 100; r++)
			produce_event(r, n);
		if (n % 5 == 4)
			sw_test_kafka_flush(producer, 60000);
		if (n == 20 || n == 45 || n == 70) {
			/* let it be mid-way through what was sent, then kill it */
			sw_test_msleep(150 + 100 * kills);
			sw_test_proc_stop(&audit_pid, SIGKILL, "sagewai-audit");
			kills++;
			audit_start();
		}
		sw_test_msleep(20);
	}
	sw_test_kafka_flush(producer, 60000);
	wait_http();
	wait_events(&t, 10000, 240);
	sw_test_msleep(1500);
	tally_log(&t);
	check_exact(&t, 10000);
	check_verify();
	wait_index(10000, 120);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	free(t.ids);
}

static void scenario_deadletter(void)
{
	struct tally t = {0};
	char garbage[128], reason[256], key[96], err[256];
	uint8_t unknown[64];
	struct sw_event_header h;
	void *valid;
	size_t vlen;
	json_t *o;
	int r;

	snprintf(key, sizeof(key), "%s-garbage", prefix);
	snprintf(garbage, sizeof(garbage), "this is not avro %s", prefix);
	audit_start();
	wait_http();

	/* garbage, then a well-formed header with an unknown fingerprint, then
	 * a valid message cut short, and then good events after all of them */
	sw_test_kafka_send(producer, "sagewai.runs", key, garbage, strlen(garbage));
	memset(unknown, 0x5a, sizeof(unknown));
	unknown[0] = 0xc3;
	unknown[1] = 0x01;
	memcpy(unknown + 10, prefix, strlen(prefix) < 50 ? strlen(prefix) : 50);
	sw_test_kafka_send(producer, "sagewai.steps", key, unknown, sizeof(unknown));
	sw_event_header_init(&h, "run.submitted", "audit-test");
	snprintf(h.run_id, sizeof(h.run_id), "%s-cut", prefix);
	o = json_pack("{s:s, s:i, s:s}", "workflow", prefix, "workflow_version", 1, "input", "{}");
	SW_CHECK(sw_event_encode(reg, "run.submitted", &h, o, &valid, &vlen, err, sizeof(err)) ==
		 0);
	json_decref(o);
	sw_test_kafka_send(producer, "sagewai.runs", key, valid, vlen - 3);
	for (r = 0; r < 50; r++)
		produce_event(r, 0);
	sw_test_kafka_flush(producer, 60000);

	t.raw_needle = garbage;
	t.raw_needle_len = strlen(garbage);
	wait_events(&t, 50, 120);
	/* the dead letter itself comes back through sagewai.deadletter, stored raw */
	{
		int64_t until = sw_mono_ns() + 60 * 1000000000LL;

		while (t.raw_matches == 0) {
			SW_REQUIRE(sw_mono_ns() < until, "dead letter not stored raw in the log");
			sw_test_msleep(200);
			tally_log(&t);
		}
	}
	check_exact(&t, 50);
	SW_CHECK(t.raw_matches == 1);
	SW_CHECKF(sw_test_kafka_deadletter_find(prefix, garbage, strlen(garbage), reason,
						sizeof(reason)),
		  "garbage not in sagewai.deadletter");
	fprintf(stderr, "garbage: %s\n", reason);
	SW_CHECKF(sw_test_kafka_deadletter_find(prefix, unknown, sizeof(unknown), reason,
						sizeof(reason)),
		  "unknown fingerprint not in sagewai.deadletter");
	fprintf(stderr, "unknown fingerprint: %s\n", reason);
	SW_CHECK(strstr(reason, "fingerprint") != NULL);
	SW_CHECKF(sw_test_kafka_deadletter_find(prefix, valid, vlen - 3, reason, sizeof(reason)),
		  "truncated message not in sagewai.deadletter");
	fprintf(stderr, "truncated: %s\n", reason);
	free(valid);
	check_verify();
	SW_CHECK(http_get("/healthz", NULL) == 200);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	free(t.ids);
}

static void scenario_pgrestart(void)
{
	struct tally t = {0};
	int r, n;

	audit_start();
	wait_http();
	for (n = 0; n < 50; n++) {
		for (r = 0; r < 100; r++)
			produce_event(r, n);
		sw_test_kafka_flush(producer, 60000);
		if (n == 25) {
			sw_test_pg_restart();
		}
		sw_test_msleep(20);
	}
	wait_events(&t, 5000, 180);
	tally_log(&t);
	check_exact(&t, 5000);
	wait_index(5000, 180);
	SW_CHECK(http_get("/healthz", NULL) == 200);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	free(t.ids);
}

struct find_ctx {
	uint64_t seq;
	struct sw_alog_rec rec;
	int found;
};

static int find_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct find_ctx *f = opaque;

	if (rec->seq != f->seq)
		return 0;
	f->rec = *rec;
	f->found = 1;
	return 1;
}

static void scenario_flip(void)
{
	struct tally t = {0};
	struct find_ctx f = {0};
	struct sw_alog_verify_result vr;
	char path[700], cmd[1400], out[512], err[256];
	uint64_t at;
	FILE *p;
	int r, fd;
	uint8_t byte;

	audit_start();
	wait_http();
	for (r = 0; r < 300; r++)
		produce_event(r % 100, r / 100);
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 300, 120);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	check_verify();

	/* flip one byte inside the payload of the record in the middle */
	SW_CHECK(sw_alog_verify(log_dir, 0, &vr, err, sizeof(err)) == 0 && vr.ok);
	f.seq = vr.records / 2;
	SW_CHECK(sw_alog_scan(log_dir, 1, find_rec, &f, err, sizeof(err)) >= 0 && f.found);
	snprintf(path, sizeof(path), "%s/seg-%020llu.swlog", log_dir,
		 (unsigned long long)f.rec.segment);
	/* record: len 4 | seq 8 | prev 32 | body; the payload is the body's tail */
	at = f.rec.file_off + 4 + 8 + 32 + 1 + 2 + f.rec.topic_len + 4 + 8 + 8 +
	     f.rec.payload_len / 2;
	fd = open(path, O_RDWR);
	SW_CHECKF(fd >= 0, "%s: %s", path, strerror(errno));
	SW_CHECK(pread(fd, &byte, 1, (off_t)at) == 1);
	byte ^= 0x20;
	SW_CHECK(pwrite(fd, &byte, 1, (off_t)at) == 1);
	close(fd);

	snprintf(cmd, sizeof(cmd), "%s/services/audit/sagewai-audit verify %s",
		 getenv("SW_BUILD_DIR"), log_dir);
	p = popen(cmd, "r");
	SW_CHECK(p != NULL);
	SW_CHECK(fgets(out, sizeof(out), p) != NULL);
	r = pclose(p);
	fprintf(stderr, "verify said: %s", out);
	SW_CHECK(WIFEXITED(r) && WEXITSTATUS(r) == 1);
	snprintf(cmd, sizeof(cmd), "seq %llu ", (unsigned long long)f.seq);
	SW_CHECKF(strstr(out, cmd) != NULL, "verify did not name seq %llu",
		  (unsigned long long)f.seq);
	free(t.ids);
}

/* ---- a shortened or torn log ------------------------------------------- */

/* Wait (60 s at most) for the service to exit by itself; its wait status. */
static int wait_exit(void)
{
	int64_t until = sw_mono_ns() + 60 * 1000000000LL;
	int status = 0;
	pid_t p;

	while ((p = waitpid(audit_pid, &status, WNOHANG)) == 0) {
		SW_REQUIRE(sw_mono_ns() < until, "sagewai-audit did not exit");
		sw_test_msleep(100);
	}
	SW_CHECK(p == audit_pid);
	audit_pid = -1;
	return status;
}

/* The service's log file holds needle. */
static int log_has(const char *needle)
{
	char path[600], *buf;
	FILE *f;
	long n;
	int found;

	snprintf(path, sizeof(path), "%s/audit.log", data_dir);
	SW_CHECK((f = fopen(path, "r")) != NULL);
	SW_CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
	rewind(f);
	SW_CHECK((buf = calloc(1, (size_t)n + 1)) != NULL);
	SW_CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	found = strstr(buf, needle) != NULL;
	free(buf);
	return found;
}

/* Fill the log with some of our events, stop the service; the highest
 * seq its index holds. */
static long fill_and_stop(int events)
{
	struct tally t = {0};
	char q[64];
	int r;

	audit_start();
	wait_http();
	for (r = 0; r < events; r++)
		produce_event(r % 100, r / 100);
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, (size_t)events, 120);
	wait_index(events, 120);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	free(t.ids);
	snprintf(q, sizeof(q), "SELECT coalesce(max(seq), 0) FROM audit.events");
	return sw_test_pg_long(db_dsn, q);
}

static void scenario_shortened(void)
{
	struct find_ctx f = {0};
	struct sw_alog_verify_result vr;
	char path[700], err[256], want[128];
	long indexed;
	int status;

	indexed = fill_and_stop(300);
	SW_REQUIRE(indexed >= 300, "index holds seq %ld", indexed);
	/* cut the log cleanly before record indexed - 5: it then ends at
	 * indexed - 6 and verifies, but the index knows seqs it lacks */
	f.seq = (uint64_t)indexed - 5;
	SW_CHECK(sw_alog_scan(log_dir, 1, find_rec, &f, err, sizeof(err)) >= 0 && f.found);
	snprintf(path, sizeof(path), "%s/seg-%020llu.swlog", log_dir,
		 (unsigned long long)f.rec.segment);
	SW_CHECKF(truncate(path, (off_t)f.rec.file_off) == 0, "%s: %s", path, strerror(errno));
	SW_CHECK(sw_alog_verify(log_dir, 0, &vr, err, sizeof(err)) == 0 && vr.ok);
	SW_CHECK(vr.records == (uint64_t)indexed - 6);

	audit_start();
	status = wait_exit();
	SW_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) != 0,
		   "sagewai-audit served a shortened log (status %d)", status);
	snprintf(want, sizeof(want), "ends at seq %ld but its index", indexed - 6);
	SW_REQUIRE(log_has(want), "no '%s' in the service log", want);
	snprintf(want, sizeof(want), "records seq %ld: the log was shortened", indexed);
	SW_REQUIRE(log_has(want), "no '%s' in the service log", want);
	/* and it touched nothing */
	SW_CHECK(sw_alog_verify(log_dir, 0, &vr, err, sizeof(err)) == 0 && vr.ok);
	SW_CHECK(vr.records == (uint64_t)indexed - 6);
}

static void scenario_torn(void)
{
	static const uint8_t junk[150] = {0x61, 0x00, 0x00, 0x00, 0x13, 0x37};
	struct find_ctx f = {0};
	struct sw_alog_verify_result vr;
	char path[700], err[256];
	json_t *ev;
	uint64_t last;
	int fd;

	(void)fill_and_stop(100);
	SW_CHECK(sw_alog_verify(log_dir, 0, &vr, err, sizeof(err)) == 0 && vr.ok);
	last = vr.records;
	/* a crash in the middle of an append: bytes of a record never made
	 * durable (and never indexed) after the last one */
	f.seq = last;
	SW_CHECK(sw_alog_scan(log_dir, 1, find_rec, &f, err, sizeof(err)) >= 0 && f.found);
	snprintf(path, sizeof(path), "%s/seg-%020llu.swlog", log_dir,
		 (unsigned long long)f.rec.segment);
	SW_CHECK((fd = open(path, O_WRONLY | O_APPEND)) >= 0);
	SW_CHECK(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	close(fd);
	SW_CHECK(sw_alog_verify(log_dir, 0, &vr, err, sizeof(err)) == 0 && !vr.ok);

	audit_start();
	wait_http();
	SW_REQUIRE(log_has("\"level\":\"error\"") && log_has("torn tail cut at start"),
		   "no error line about the repair");
	/* the next record is the repair itself */
	memset(&f, 0, sizeof(f));
	f.seq = last + 1;
	SW_CHECK(sw_alog_scan(log_dir, 1, find_rec, &f, err, sizeof(err)) >= 0);
	SW_REQUIRE(f.found, "no record after seq %llu", (unsigned long long)last);
	/* f.rec's payload pointed into the scan's buffer: read it by place */
	{
		struct sw_alog_rec rec;
		void *buf = NULL;

		SW_CHECK(sw_alog_read_at(log_dir, f.rec.segment, f.rec.file_off, &rec, &buf, err,
					 sizeof(err)) == 0);
		ev = sw_event_decode(reg, rec.payload, rec.payload_len, err, sizeof(err));
		SW_CHECKF(ev != NULL, "%s", err);
		free(buf);
	}
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(json_object_get(ev, "header"),
							     "type")),
			   "audit.repaired"),
		   "record %llu is not audit.repaired", (unsigned long long)(last + 1));
	SW_CHECK(json_integer_value(json_object_get(ev, "bytes_cut")) == (json_int_t)sizeof(junk));
	SW_CHECK(json_integer_value(json_object_get(ev, "first_seq")) == (json_int_t)(last + 1));
	SW_CHECK(json_integer_value(json_object_get(ev, "last_seq")) >= (json_int_t)(last + 1));
	json_decref(ev);
	/* it went to Kafka too: consumed back, it is a duplicate of that record */
	{
		int64_t until = sw_mono_ns() + 60 * 1000000000LL;

		while (sw_test_metric_get(http_port, "sagewai_audit_duplicates_total") < 1) {
			SW_REQUIRE(sw_mono_ns() < until, "audit.repaired never came back from Kafka");
			sw_test_msleep(200);
		}
	}
	SW_CHECK(sw_alog_verify(log_dir, 0, &vr, err, sizeof(err)) == 0 && vr.ok);
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM audit.events"
					 " WHERE type = 'audit.repaired'") == 1);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
}

/* ---- keys: the API in multi_tenant mode --------------------------------- */

static void produce_tenant_event(const char *type, const char *tenant, const char *producer_name,
				 json_t *fields)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;

	sw_event_header_init(&h, type, producer_name);
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	SW_CHECKF(sw_event_encode(reg, type, &h, fields, &buf, &len, err, sizeof(err)) == 0,
		  "%s: %s", type, err);
	json_decref(fields);
	sw_test_kafka_send(producer, "sagewai.tenants", tenant[0] ? tenant : h.event_id, buf, len);
	free(buf);
}

static void key_created(const char *tenant, const char *key, const char *role,
			const char *producer_name, char key_id[SW_UUID_STRLEN])
{
	uint8_t hash[32];
	char hex[65];

	sw_uuid_v7_str(key_id);
	crypto_hash_sha256(hash, (const uint8_t *)key, strlen(key));
	sw_hex_encode(hash, sizeof(hash), hex);
	produce_tenant_event("apikey.created", tenant, producer_name,
			     json_pack("{s:s, s:s, s:s, s:s}", "key_id", key_id, "tenant_id", tenant,
				       "role", role, "key_sha256", hex));
}

static long get_as(const char *path, const char *key)
{
	struct sw_test_http_reply r = {0};
	char url[512], auth[200];
	const char *h[2] = {auth, NULL};

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", http_port, path);
	if (key != NULL)
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	sw_test_http_request("GET", url, NULL, 0, key ? h : NULL, 30, &r);
	free(r.body);
	return r.status;
}

static void scenario_keys(void)
{
	char ta[SW_UUID_STRLEN], tb[SW_UUID_STRLEN], kid[SW_UUID_STRLEN], kida[SW_UUID_STRLEN];
	char path[256], input[16];
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;
	int64_t until;
	json_t *o;

	audit_mode = "SAGEWAI_MODE=multi_tenant";
	audit_start();
	wait_http();
	sw_uuid_v7_str(ta);
	sw_uuid_v7_str(tb);
	produce_tenant_event("tenant.created", ta, "sagewai-scheduler",
			     json_pack("{s:s, s:s}", "tenant_id", ta, "name", "acme"));
	key_created(ta, "swk_key-of-a", "TENANT", "sagewai-scheduler", kida);
	produce_tenant_event("tenant.created", tb, "sagewai-scheduler",
			     json_pack("{s:s, s:s}", "tenant_id", tb, "name", "globex"));
	key_created(tb, "swk_key-of-b", "TENANT", "sagewai-scheduler", kid);
	key_created("", "swk_key-of-the-auditor", "AUDITOR", "sagewai-scheduler", kid);
	/* a key minted by anyone but the scheduler is not a key */
	key_created("", "swk_forged", "AUDITOR", "sagewai-worker", kid);
	/* a run of tenant a */
	sw_event_header_init(&h, "run.submitted", "sagewai-scheduler");
	snprintf(h.run_id, sizeof(h.run_id), "%s-ra", prefix);
	snprintf(h.tenant, sizeof(h.tenant), "%s", ta);
	snprintf(input, sizeof(input), "{}");
	o = json_pack("{s:s, s:i, s:s}", "workflow", "w", "workflow_version", 1, "input", input);
	SW_CHECKF(sw_event_encode(reg, "run.submitted", &h, o, &buf, &len, err, sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
	sw_test_kafka_send(producer, "sagewai.runs", h.run_id, buf, len);
	free(buf);
	sw_test_kafka_flush(producer, 60000);
	wait_index(1, 120);

	snprintf(path, sizeof(path), "/v1/audit/runs/%s-ra", prefix);
	until = sw_mono_ns() + 60 * 1000000000LL;
	while (get_as(path, "swk_key-of-the-auditor") != 200) {
		SW_REQUIRE(sw_mono_ns() < until, "the auditor key never worked");
		sw_test_msleep(200);
	}
	SW_REQUIRE(get_as(path, NULL) == 401, "no key");
	SW_REQUIRE(get_as(path, "swk_made-up") == 401, "unknown key");
	SW_REQUIRE(get_as(path, "swk_forged") == 401, "a key not from the scheduler");
	SW_REQUIRE(get_as(path, "swk_key-of-b") == 404, "another tenant's run");
	SW_REQUIRE(get_as(path, "swk_key-of-a") == 200, "its own run");
	/* deletion revokes: a's key stops, the auditor still reads a's run */
	produce_tenant_event("tenant.deleted", ta, "sagewai-scheduler",
			     json_pack("{s:s, s:s, s:i}", "tenant_id", ta, "name", "acme",
				       "keys_revoked", 1));
	produce_tenant_event("apikey.revoked", ta, "sagewai-scheduler",
			     json_pack("{s:s, s:s, s:s}", "key_id", kida, "tenant_id", ta, "reason",
				       "tenant deleted"));
	sw_test_kafka_flush(producer, 60000);
	until = sw_mono_ns() + 60 * 1000000000LL;
	while (get_as(path, "swk_key-of-a") != 401) {
		SW_REQUIRE(sw_mono_ns() < until, "a deleted tenant's key still reads");
		sw_test_msleep(200);
	}
	SW_REQUIRE(get_as(path, "swk_key-of-the-auditor") == 200, "auditor after deletion");
	/* the auditor's key learnt, the forged one not (other tests' keys may be
	 * on sagewai.tenants too: count these two by their hashes) */
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM audit.apikeys WHERE key_hash ="
					 " sha256('swk_key-of-the-auditor') AND role = 'AUDITOR'") ==
		 1);
	SW_CHECK(sw_test_pg_long(db_dsn, "SELECT count(*) FROM audit.apikeys WHERE key_hash ="
					 " sha256('swk_forged')") == 0);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
	    {"exactly_once", scenario_exactly_once},
	    {"kill9", scenario_kill9},
	    {"deadletter", scenario_deadletter},
	    {"pgrestart", scenario_pgrestart},
	    {"flip", scenario_flip},
	    {"shortened", scenario_shortened},
	    {"torn", scenario_torn},
	    {"keys", scenario_keys},
	};
	const struct sw_test_scenario *sc =
	    sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]));

	setup(sc->name);
	sc->fn();
	rd_kafka_destroy(producer);
	sw_events_registry_destroy(reg);
	fprintf(stderr, "audit %s: ok\n", sc->name);
	return 0;
}
