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
 *   checkpoints   signed checkpoints are written and published; the log
 *                 verifies against them (sagewai-audit and sagewai audit,
 *                 from Kafka and from files of JSON or raw lines); its tail
 *                 cut at a record boundary verifies alone but not against
 *                 them, naming the first record cut
 *   rotation      a key rotated on restart: both keys listed, all verifies;
 *                 the old one missing: its checkpoints are by an unknown key;
 *                 published checkpoints forged (another key, a bad signature)
 *                 are named, not believed
 *   diskfull      the log's file system fills up (a tmpfs): the service stops
 *                 committing, /healthz says why, nothing is lost, and once
 *                 space returns every event is in the log exactly once
 *   export        a run's bundle verifies without the log, on its own keys or
 *                 pinned ones; a tampered bundle names the record
 *   window        a dedupe window of 1000 ids: events re-published long after
 *                 (and after a restart) are found in the index and dropped
 *   republish     a checkpoint synced to the log but never published (a kill
 *                 between the two), no record after it: the restarted
 *                 service publishes it, so the records it covers are
 *                 protected off-box without waiting for new events
 *   adopt         an index and a log from before log ids (rows with log id
 *                 '', no log-id file): the service makes the file and takes
 *                 the rows as its log's; the same rows with an empty log:
 *                 it refuses to start (their log is not here)
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

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "sw_alog.h"
#include "sw_alog_pub.h"
#include "sw_bus.h"
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
static char extra_env[6][800]; /* more settings of a scenario ("" unused) */

static void audit_start(void)
{
	static const char *const argv[] = {"sagewai-audit", "serve", NULL};
	char path[600], log[600], dir[600], dsn[600], gid[160], port[40];
	const char *env[16] = {dir,	   dsn,
			       gid,	   port,
			       audit_mode, "SAGEWAI_LOG_LEVEL=info",
			       SW_TEST_ENV_FAST_REBALANCE};
	int k, n = 7;

	for (k = 0; k < 6; k++)
		if (extra_env[k][0] != '\0')
			env[n++] = extra_env[k];
	env[n] = NULL;

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
	/* sagewai-audit reads every sagewai.* topic: none of what earlier
	 * tests left there (their audit.repaired events, their runs) */
	sw_test_kafka_group_to_end_prefix(group, "sagewai.");
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
	if (t->nids > 1) /* ids is NULL while none of ours is in the log */
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

/* ---- an index from before log ids ---------------------------------------- */

/* The log id in log_dir/log-id. */
static void read_log_id(char *out, size_t len)
{
	char path[700];
	FILE *f;

	snprintf(path, sizeof(path), "%s/log-id", log_dir);
	SW_REQUIRE((f = fopen(path, "r")) != NULL, "no %s", path);
	SW_CHECK(fgets(out, (int)len, f) != NULL);
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
	SW_REQUIRE(strlen(out) == 36, "log id '%s' is no UUID", out);
}

static long rows_of_log(const char *id)
{
	char q[256];

	snprintf(q, sizeof(q), "SELECT count(*) FROM audit.events WHERE log_id = '%s'", id);
	return sw_test_pg_long(db_dsn, q);
}

static void scenario_adopt(void)
{
	char id[128], path[700], moved[720];
	long rows;
	int status;

	(void)fill_and_stop(200);
	read_log_id(id, sizeof(id));
	rows = rows_of_log(id);
	SW_REQUIRE(rows >= 200 && rows_of_log("") == 0, "%ld rows of log %s", rows, id);
	/* as an index and a log made before log ids */
	PQclear(sw_test_pg_exec(db_dsn, "UPDATE audit.events SET log_id = ''"));
	snprintf(path, sizeof(path), "%s/log-id", log_dir);
	SW_CHECK(unlink(path) == 0);
	audit_start();
	wait_http();
	read_log_id(id, sizeof(id));
	SW_REQUIRE(rows_of_log(id) == rows && rows_of_log("") == 0,
		   "after the start: %ld rows of log %s (want %ld), %ld without a log id",
		   rows_of_log(id), id, rows, rows_of_log(""));
	SW_REQUIRE(log_has("rows from before log ids adopted"), "no adoption in the log");
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");

	/* the same rows, and the log they index gone */
	PQclear(sw_test_pg_exec(db_dsn, "UPDATE audit.events SET log_id = ''"));
	snprintf(moved, sizeof(moved), "%s.gone", log_dir);
	SW_CHECK(rename(log_dir, moved) == 0);
	audit_start();
	status = wait_exit();
	SW_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) != 0,
		   "sagewai-audit started on an empty log and another log's rows (status %d)",
		   status);
	SW_REQUIRE(log_has("this log is empty: that log was lost"), "no reason in the log");
	SW_REQUIRE(rows_of_log("") == rows, "the rows were touched");
}

/*
 * A live chunk of index rows meets a row already there (as after a resend
 * across a reconnect): the insert without ON CONFLICT is refused (23505),
 * and the chunk goes again as the idempotent insert. Every other row of
 * it is indexed, the service says so by a metric, and nothing is an error.
 */
static void scenario_resend(void)
{
	struct tally t = {0};
	char id[128], q[512];
	long top, last;
	int r;

	audit_start();
	wait_http();
	for (r = 0; r < 100; r++)
		produce_event(r, 0);
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 100, 120);
	wait_index(100, 120);
	read_log_id(id, sizeof(id));
	snprintf(q, sizeof(q), "SELECT max(seq) FROM audit.events WHERE log_id = '%s'", id);
	top = sw_test_pg_long(db_dsn, q);
	SW_REQUIRE(top >= 100, "the index of log %s ends at seq %ld", id, top);
	/* the row of a record the log does not hold yet, at a seq the next
	 * chunk takes */
	snprintf(q, sizeof(q),
		 "INSERT INTO audit.events (seq, event_id, run_id, type, topic, kafka_partition,"
		 " kafka_offset, time_us, segment, file_off, kind, tenant, log_id)"
		 " VALUES (%ld, gen_random_uuid(), 'resend-there', 'run.submitted',"
		 " 'sagewai.runs', 0, 0, 0, 0, 0, 1, NULL, '%s')",
		 top + 5, id);
	PQclear(sw_test_pg_exec(db_dsn, q));
	SW_CHECK(sw_test_metric_get(http_port, "sagewai_audit_index_resends_total") <= 0);
	for (r = 0; r < 50; r++)
		produce_event(r, 1);
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 150, 120);
	/* every seq past top is in the index: the one taken by the row that
	 * was there, the others by the chunk sent again */
	wait_index(149, 120);
	snprintf(q, sizeof(q), "SELECT max(seq) FROM audit.events WHERE log_id = '%s'", id);
	last = sw_test_pg_long(db_dsn, q);
	snprintf(q, sizeof(q),
		 "SELECT count(*) FROM audit.events WHERE log_id = '%s' AND seq > %ld", id, top);
	SW_REQUIRE(last >= top + 50 && sw_test_pg_long(db_dsn, q) == last - top,
		   "seqs %ld..%ld: %ld rows", top + 1, last, sw_test_pg_long(db_dsn, q));
	snprintf(q, sizeof(q),
		 "SELECT count(*) FROM audit.events WHERE log_id = '%s' AND seq = %ld"
		 " AND run_id = 'resend-there'",
		 id, top + 5);
	SW_REQUIRE(sw_test_pg_long(db_dsn, q) == 1, "the row that was there was replaced");
	SW_REQUIRE(sw_test_metric_get(http_port, "sagewai_audit_index_resends_total") >= 1,
		   "no chunk was sent again");
	SW_REQUIRE(sw_test_metric_get(http_port, "sagewai_audit_index_errors_total") <= 0,
		   "an index error was counted");
	SW_REQUIRE(!log_has("audit index insert failed"), "an insert failure was logged");
	check_exact(&t, 150);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	for (r = 0; r < 100; r++) /* produce_event keeps each run's n = 0 event */
		free(sent_again[r].buf);
	free(t.ids);
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
	/* indexed once (the index catches up with the log on its own time) */
	{
		int64_t until = sw_mono_ns() + 30 * 1000000000LL;
		long n;

		while ((n = sw_test_pg_long(db_dsn, "SELECT count(*) FROM audit.events"
						    " WHERE type = 'audit.repaired'")) < 1 &&
		       sw_mono_ns() < until)
			sw_test_msleep(200);
		SW_REQUIRE(n == 1, "%ld audit.repaired rows in the index, not 1", n);
	}
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

/* ---- signed checkpoints ------------------------------------------------- */

static char pubkeys[700]; /* the public keys file of the scenario */

/* A signing key id in data_dir/keys, its public key added to pubkeys; the
 * service is to use it (extra_env[0]). */
static void key_make(const char *id, int use)
{
	char secret[700], err[256], hex[65];
	uint8_t pk[32];
	FILE *f;

	snprintf(secret, sizeof(secret), "%s/keys", data_dir);
	mkdir(secret, 0700);
	snprintf(secret, sizeof(secret), "%s/keys/%s.key", data_dir, id);
	SW_CHECKF(sw_alog_keygen(id, secret, pk, err, sizeof(err)) == 0, "%s", err);
	snprintf(pubkeys, sizeof(pubkeys), "%s/keys/audit.pub", data_dir);
	sw_hex_encode(pk, 32, hex);
	SW_CHECK((f = fopen(pubkeys, "a")) != NULL);
	fprintf(f, "%s %s\n", id, hex);
	fclose(f);
	if (use)
		snprintf(extra_env[0], sizeof(extra_env[0]), "SAGEWAI_AUDIT_SIGNING_KEY_FILE=%s",
			 secret);
}

/* Run a shell command; its first line of output in out, its exit status. */
static int run_cmd(const char *cmd, char *out, size_t outlen)
{
	FILE *p = popen(cmd, "r");
	int st;

	SW_CHECK(p != NULL);
	out[0] = '\0';
	if (fgets(out, (int)outlen, p) == NULL)
		out[0] = '\0';
	while (fgetc(p) != EOF)
		;
	st = pclose(p);
	out[strcspn(out, "\n")] = '\0';
	fprintf(stderr, "$ %s\n  -> %s (exit %d)\n", cmd, out, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *tool(void)
{
	static char path[600];

	snprintf(path, sizeof(path), "%s/services/audit/sagewai-audit", getenv("SW_BUILD_DIR"));
	return path;
}

static const char *cli(void)
{
	static char path[600];

	snprintf(path, sizeof(path), "%s/tools/cli/sagewai", getenv("SW_BUILD_DIR"));
	return path;
}

/* sagewai-audit verify of the log with keys (pub) and the checkpoints read
 * back from Kafka, as JSON (NULL when it printed none, its first line in
 * line); its exit status. */
static int verify_try(const char *pub, const char *source, json_t **out, char *line,
		      size_t linelen)
{
	char cmd[3000];
	int st;

	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s %s --json 2>&1", tool(), log_dir,
		 pub, source);
	st = run_cmd(cmd, line, linelen);
	*out = json_loads(line, 0, NULL);
	return st;
}

static int verify_json(const char *pub, const char *source, json_t **out)
{
	char line[4096];
	int st = verify_try(pub, source, out, line, sizeof(line));

	SW_CHECKF(*out != NULL, "verify printed no JSON: %s", line);
	return st;
}

static long jlong(json_t *o, const char *k)
{
	return (long)json_integer_value(json_object_get(o, k));
}

static char kafka_source[700];

/* Wait until the log verifies against its published checkpoints and the
 * last of them covers every record but the checkpoint itself. */
static void wait_covered(int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;
	char line[4096];
	json_t *j;

	/* Until the log holds a checkpoint of its own, verify cannot tell it
	 * from the other logs whose checkpoints share the topic (earlier
	 * tests' services) and says so without JSON: wait on. */
	for (;;) {
		int st = verify_try(pubkeys, kafka_source, &j, line, sizeof(line));

		if (j != NULL && st == 0 && json_is_true(json_object_get(j, "ok")) &&
		    jlong(j, "published_max") + 1 == jlong(j, "records") &&
		    jlong(j, "covered_seq") == jlong(j, "published_max")) {
			json_decref(j);
			return;
		}
		json_decref(j);
		SW_REQUIRE(sw_mono_ns() < until,
			   "the log is not covered by published checkpoints: %s", line);
		sw_test_msleep(300);
	}
}

static void checkpoint_env(void)
{
	snprintf(extra_env[1], sizeof(extra_env[1]), "SAGEWAI_AUDIT_CHECKPOINT_RECORDS=100");
	snprintf(extra_env[2], sizeof(extra_env[2]), "SAGEWAI_AUDIT_CHECKPOINT_MS=200");
	snprintf(kafka_source, sizeof(kafka_source), "--checkpoints-from-kafka %s",
		 getenv("SAGEWAI_KAFKA_BOOTSTRAP"));
}

/* Cut the log cleanly before record seq (and drop any later segment). */
static void cut_before(uint64_t seq)
{
	struct find_ctx f = {0};
	char path[700], err[256];
	uint64_t s;

	f.seq = seq;
	SW_CHECK(sw_alog_scan(log_dir, 1, find_rec, &f, err, sizeof(err)) >= 0 && f.found);
	snprintf(path, sizeof(path), "%s/seg-%020llu.swlog", log_dir,
		 (unsigned long long)f.rec.segment);
	SW_CHECKF(truncate(path, (off_t)f.rec.file_off) == 0, "%s: %s", path, strerror(errno));
	for (s = f.rec.segment + 1; s <= seq + 10; s++) {
		snprintf(path, sizeof(path), "%s/seg-%020llu.swlog", log_dir, (unsigned long long)s);
		unlink(path);
	}
}

/* The published checkpoints now in Kafka into files: JSON lines and raw
 * messages in hex. */
static void save_published(const char *json_path, const char *hex_path)
{
	struct sw_alog_pubset set = {0};
	FILE *fj = fopen(json_path, "w"), *fh = fopen(hex_path, "w");
	char err[300];
	size_t i;

	SW_CHECK(fj != NULL && fh != NULL);
	SW_CHECKF(sw_alog_pub_read_kafka(reg, getenv("SAGEWAI_KAFKA_BOOTSTRAP"), 30000, &set, err,
					 sizeof(err)) == 0,
		  "%s", err);
	fprintf(fj, "# audit.checkpoint events, as sagewai-event decode prints them\n\n");
	for (i = 0; i < set.n; i++) {
		void *msg;
		size_t len;
		char *hex, *text;
		json_t *ev;

		SW_CHECK(sw_alog_pub_encode(reg, &set.v[i], &msg, &len, err, sizeof(err)) == 0);
		SW_CHECK((hex = sw_hex_dup(msg, len)) != NULL);
		fprintf(fh, "%s\n", hex);
		SW_CHECK((ev = sw_event_decode(reg, msg, len, err, sizeof(err))) != NULL);
		SW_CHECK((text = json_dumps(ev, JSON_COMPACT)) != NULL);
		fprintf(fj, "%s\n", text);
		free(text);
		json_decref(ev);
		free(hex);
		free(msg);
	}
	fclose(fj);
	fclose(fh);
	sw_alog_pubset_free(&set);
}

/* A verdict read from Kafka without the note on messages that were no
 * checkpoint at all: the shared topic may hold other tests' hostile
 * messages, which a file saved from its checkpoints does not. */
static void strip_unreadable(char *line)
{
	char *p = strstr(line, " messages on " SW_TOPIC_AUDIT_CHECKPOINTS " were no checkpoint");

	while (p != NULL && p > line && *p != '(')
		p--;
	if (p != NULL && p > line && p[-1] == ' ')
		p[-1] = '\0';
}

static void scenario_checkpoints(void)
{
	struct sw_alog_verify_result vr;
	struct tally t = {0};
	char cmd[3000], line[4096], line2[4096], want[200], jpath[700], hpath[700], err[256];
	long records, pmax, cut;
	json_t *j;
	int r;

	key_make("k1", 1);
	checkpoint_env();
	/* a message that is no checkpoint at all on the shared topic (other
	 * tests put hostile ones there too): verify reads past it and says so */
	sw_test_kafka_send(producer, SW_TOPIC_AUDIT_CHECKPOINTS, "not-a-log", "garbage", 7);
	audit_start();
	wait_http();
	SW_REQUIRE(log_has("\"checkpoints\":\"k1\""), "the started line does not name key k1");
	for (r = 0; r < 500; r++)
		produce_event(r % 50, r / 50);
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 500, 120);
	wait_covered(60);
	SW_CHECK(sw_test_metric_get(http_port, "sagewai_audit_checkpoints_published_total") >= 5);
	SW_CHECK(http_get("/healthz", NULL) == 200);

	/* both tools say the same */
	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s %s", tool(), log_dir, pubkeys,
		 kafka_source);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 0);
	SW_CHECKF(strncmp(line, "ok: ", 4) == 0 && strstr(line, "published checkpoints match"),
		  "%s", line);
	snprintf(cmd, sizeof(cmd), "SAGEWAI_AUDIT_PUBKEYS=%s %s audit verify %s %s", pubkeys,
		 cli(), log_dir, kafka_source);
	SW_CHECK(run_cmd(cmd, line2, sizeof(line2)) == 0);
	SW_CHECKF(strcmp(line, line2) == 0, "sagewai audit verify said '%s'", line2);
	/* no keys: not believed */
	snprintf(cmd, sizeof(cmd), "env -u SAGEWAI_AUDIT_PUBKEYS %s verify %s", tool(), log_dir);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 1);
	SW_CHECK(strstr(line, "no public keys") != NULL);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	snprintf(jpath, sizeof(jpath), "%s/published.jsonl", data_dir);
	snprintf(hpath, sizeof(hpath), "%s/published.hex", data_dir);
	save_published(jpath, hpath);

	/* the tail cut at a record boundary, its last checkpoint with it */
	SW_CHECK(verify_json(pubkeys, kafka_source, &j) == 0);
	records = jlong(j, "records");
	pmax = jlong(j, "published_max");
	json_decref(j);
	cut = pmax + 1 - 10;
	cut_before((uint64_t)cut);
	SW_CHECK(sw_alog_verify(log_dir, 0, &vr, err, sizeof(err)) == 0);
	SW_REQUIRE(vr.ok && vr.records == (uint64_t)cut - 1,
		   "the cut log does not verify by itself (%s)", vr.reason);
	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s", tool(), log_dir, pubkeys);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 0); /* alone, it cannot tell */
	snprintf(want, sizeof(want), "BAD: record seq %ld: the log ends at seq %ld", cut, cut - 1);
	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s %s", tool(), log_dir, pubkeys,
		 kafka_source);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 1);
	SW_CHECKF(strncmp(line, want, strlen(want)) == 0 && strstr(line, "were deleted"), "%s",
		  line);
	snprintf(cmd, sizeof(cmd), "SAGEWAI_AUDIT_PUBKEYS=%s %s audit verify %s %s", pubkeys,
		 cli(), log_dir, kafka_source);
	SW_CHECK(run_cmd(cmd, line2, sizeof(line2)) == 1 && strcmp(line, line2) == 0);
	SW_CHECKF(strstr(line, "were no checkpoint at all") != NULL, "%s", line);
	strip_unreadable(line);
	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s --checkpoints %s", tool(), log_dir,
		 pubkeys, jpath);
	SW_CHECK(run_cmd(cmd, line2, sizeof(line2)) == 1 && strcmp(line, line2) == 0);
	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s --checkpoints %s", tool(), log_dir,
		 pubkeys, hpath);
	SW_CHECK(run_cmd(cmd, line2, sizeof(line2)) == 1 && strcmp(line, line2) == 0);
	/* hostile checkpoint files: named by line, nothing believed */
	{
		FILE *f = fopen(hpath, "a");

		fprintf(f, "zz-not-hex\n");
		fclose(f);
		snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s --checkpoints %s 2>&1",
			 tool(), log_dir, pubkeys, hpath);
		SW_CHECK(run_cmd(cmd, line2, sizeof(line2)) == 2 && strstr(line2, "line"));
	}
	(void)records;
	free(t.ids);
}

/* Publish a checkpoint made here (signed by s, or s's signature spoilt). */
static void publish_forged(const char *log_id, uint64_t seq, struct sw_alog_signer *s,
			   const char *claim_key, int spoil)
{
	struct sw_alog_checkpoint cp;
	char err[256];
	void *msg;
	size_t len;

	memset(&cp, 0, sizeof(cp));
	snprintf(cp.log_id, sizeof(cp.log_id), "%s", log_id);
	cp.seq = seq;
	cp.prev_seq = seq - 1;
	cp.time_us = sw_now_us();
	randombytes_buf(cp.hash, 32);
	randombytes_buf(cp.root, 32);
	SW_CHECK(sw_alog_sign(s, &cp) == 0);
	if (claim_key != NULL)
		snprintf(cp.key_id, sizeof(cp.key_id), "%s", claim_key);
	if (spoil)
		cp.sig[7] ^= 0x10;
	SW_CHECK(sw_alog_pub_encode(reg, &cp, &msg, &len, err, sizeof(err)) == 0);
	sw_test_kafka_deliver(producer, SW_TOPIC_AUDIT_CHECKPOINTS, log_id, msg, len);
	free(msg);
}

/* Events from..to-1 of runs (r % runs, its n r / runs) in, the log
 * covered by published checkpoints, the service stopped (TERM). */
static void fill_covered(struct tally *t, int from, int to, int runs)
{
	int r;

	for (r = from; r < to; r++)
		produce_event(r % runs, r / runs);
	sw_test_kafka_flush(producer, 60000);
	wait_events(t, (size_t)to, 120);
	wait_covered(60);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
}

static void scenario_rotation(void)
{
	struct tally t = {0};
	char cmd[3000], line[4096], only2[700], k9path[700], err[256], log_id[80] = "";
	uint8_t pk[32];
	struct sw_alog_signer *k9;
	long records, first_cp;
	json_t *j;

	key_make("k1", 1);
	checkpoint_env();
	audit_start();
	wait_http();
	fill_covered(&t, 0, 200, 20);

	/* rotate: a new key, the old one stays listed */
	key_make("k2", 1);
	audit_start();
	wait_http();
	SW_REQUIRE(log_has("\"checkpoints\":\"k2\""), "the restarted service does not sign with k2");
	fill_covered(&t, 200, 400, 20);
	SW_CHECK(verify_json(pubkeys, kafka_source, &j) == 0);
	snprintf(log_id, sizeof(log_id), "%s", json_string_value(json_object_get(j, "log_id")));
	records = jlong(j, "records");
	json_decref(j);

	/* only k2 listed: k1's checkpoints are by an unknown key, the first
	 * of them named */
	{
		FILE *in = fopen(pubkeys, "r"), *out;
		char l[200];

		snprintf(only2, sizeof(only2), "%s/keys/only2.pub", data_dir);
		SW_CHECK(in != NULL && (out = fopen(only2, "w")) != NULL);
		while (fgets(l, sizeof(l), in) != NULL)
			if (strncmp(l, "k2 ", 3) == 0)
				fputs(l, out);
		fclose(in);
		fclose(out);
	}
	{
		struct sw_alog_rec rec;
		struct find_ctx f = {0};

		(void)rec;
		for (first_cp = 1; first_cp <= records; first_cp++) {
			f.seq = (uint64_t)first_cp;
			f.found = 0;
			SW_CHECK(sw_alog_scan(log_dir, f.seq, find_rec, &f, err, sizeof(err)) >= 0);
			if (f.found && f.rec.kind == SW_ALOG_CHECKPOINT)
				break;
		}
		SW_CHECK(first_cp <= records);
	}
	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s", tool(), log_dir, only2);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 1);
	{
		char want[100];

		snprintf(want, sizeof(want), "BAD: record seq %ld ", first_cp);
		SW_CHECKF(strncmp(line, want, strlen(want)) == 0 &&
				  strstr(line, "unknown key 'k1'"),
			  "%s", line);
	}

	/* forged published checkpoints: a key nobody lists claiming the log
	 * is longer, and k1's id with a spoilt signature */
	snprintf(k9path, sizeof(k9path), "%s/keys/k9.key", data_dir);
	SW_CHECK(sw_alog_keygen("k9", k9path, pk, err, sizeof(err)) == 0);
	SW_CHECK((k9 = sw_alog_signer_load(k9path, err, sizeof(err))) != NULL);
	publish_forged(log_id, (uint64_t)records + 50, k9, NULL, 0);
	SW_CHECK(verify_json(pubkeys, kafka_source, &j) == 1);
	SW_CHECKF(jlong(j, "bad_seq") == records + 51 &&
			  strstr(json_string_value(json_object_get(j, "reason")),
				 "unknown key 'k9'"),
		  "%s", json_string_value(json_object_get(j, "reason")));
	json_decref(j);
	publish_forged(log_id, (uint64_t)records + 20, k9, "k1", 0);
	SW_CHECK(verify_json(pubkeys, kafka_source, &j) == 1);
	SW_CHECKF(jlong(j, "bad_seq") == records + 21 &&
			  strstr(json_string_value(json_object_get(j, "reason")),
				 "does not verify with key 'k1'"),
		  "%s", json_string_value(json_object_get(j, "reason")));
	json_decref(j);
	sw_alog_signer_destroy(k9);
	free(t.ids);
}

/* ---- the log's disk full ---------------------------------------------------- */

static int mounted;

static void unmount_log(void)
{
	if (mounted)
		umount2(log_dir, MNT_DETACH);
}

static long committed_sum(void)
{
	static const char *const topics[] = {"sagewai.runs", "sagewai.steps", NULL};
	rd_kafka_t *rk = sw_test_kafka_new(RD_KAFKA_CONSUMER, group, NULL);
	rd_kafka_topic_partition_list_t *l = sw_test_kafka_ends(rk, topics);
	long sum = 0;
	int i;

	SW_CHECK(rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	for (i = 0; i < l->cnt; i++)
		if (l->elems[i].offset > 0)
			sum += (long)l->elems[i].offset;
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
	return sum;
}

static char *healthz(long *status)
{
	return sw_test_http_get(http_port, "/healthz", status);
}

static void scenario_diskfull(void)
{
	struct tally t = {0};
	struct statvfs sv;
	char ballast[700], line[4096], cmd[3000], *body;
	long status, c1, c2;
	int64_t until;
	int r, fd;

	if (geteuid() != 0) {
		fprintf(stderr, "audit diskfull: skipped: mounting a tmpfs needs root\n");
		exit(77);
	}
	SW_CHECK(mkdir(log_dir, 0700) == 0 || errno == EEXIST);
	if (mount("tmpfs", log_dir, "tmpfs", 0, "size=4m,mode=0700") != 0) {
		fprintf(stderr, "audit diskfull: skipped: mount tmpfs: %s\n", strerror(errno));
		exit(77);
	}
	mounted = 1;
	atexit(unmount_log);
	/* only this scenario's events: the others' would fill the disk first */
	sw_test_kafka_group_to_end(group, sw_bus_topics);
	key_make("k1", 1);
	checkpoint_env();
	snprintf(extra_env[3], sizeof(extra_env[3]), "SAGEWAI_AUDIT_SEGMENT_BYTES=262144");
	snprintf(extra_env[4], sizeof(extra_env[4]), "SAGEWAI_AUDIT_RETRY_MAX_MS=400");
	audit_start();
	wait_http();
	for (r = 0; r < 100; r++)
		produce_event(r % 50, r / 50);
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 100, 120);

	/* leave about 150 KiB: room for a few hundred records */
	snprintf(ballast, sizeof(ballast), "%s/ballast", log_dir);
	SW_CHECK(statvfs(log_dir, &sv) == 0);
	SW_CHECK((fd = open(ballast, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	{
		static char zero[65536];
		long left = (long)(sv.f_bavail * sv.f_frsize) - (150 << 10);

		while (left > 0) {
			ssize_t w = write(fd, zero, left < 65536 ? (size_t)left : sizeof(zero));

			SW_CHECK(w > 0);
			left -= w;
		}
	}
	close(fd);
	for (r = 100; r < 3000; r++)
		produce_event(r % 50, r / 50);
	sw_test_kafka_flush(producer, 60000);

	/* it says so: /healthz, its log, the metric */
	until = sw_mono_ns() + 60 * 1000000000LL;
	for (;;) {
		body = healthz(&status);
		if (status == 503 && body != NULL && strstr(body, "cannot be written"))
			break;
		free(body);
		SW_REQUIRE(sw_mono_ns() < until, "/healthz never said the log cannot be written");
		SW_REQUIRE(sw_test_proc_running(audit_pid), "sagewai-audit exited");
		sw_test_msleep(200);
	}
	fprintf(stderr, "/healthz: %s\n", body);
	SW_CHECK(strstr(body, "No space left on device") != NULL);
	free(body);
	SW_REQUIRE(log_has("audit log cannot be written: not committing offsets"),
		   "no error line in the service log");
	SW_CHECK(sw_test_metric_get(http_port, "sagewai_audit_log_failing") == 1);
	/* nothing is committed while it fails */
	c1 = committed_sum();
	sw_test_msleep(2500);
	c2 = committed_sum();
	body = healthz(&status);
	free(body);
	SW_REQUIRE(status == 503, "recovered with no space returned");
	SW_REQUIRE(c1 == c2, "offsets were committed while the log could not be written (%ld, %ld)",
		   c1, c2);
	tally_log(&t);
	SW_REQUIRE(t.events < 3000, "all events fit: the disk was not full");
	fprintf(stderr, "while full: %zu events in the log, committed offsets %ld\n", t.events, c1);

	/* space returns: it resumes by itself and nothing is lost */
	SW_CHECK(unlink(ballast) == 0);
	wait_events(&t, 3000, 180);
	sw_test_http_wait_healthy(http_port, audit_pid, "sagewai-audit");
	sw_test_msleep(1000);
	tally_log(&t);
	check_exact(&t, 3000);
	SW_REQUIRE(log_has("audit log writable again"), "no line saying it recovered");
	SW_CHECK(committed_sum() > c2);
	wait_covered(60);
	snprintf(cmd, sizeof(cmd), "%s verify %s --pubkeys %s %s", tool(), log_dir, pubkeys,
		 kafka_source);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 0);
	wait_index(3000, 120);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	free(t.ids);
}

/* ---- export and bundles ----------------------------------------------------- */

static json_t *bundle_load(const char *path)
{
	json_t *b = json_load_file(path, 0, NULL);

	SW_CHECKF(b != NULL, "%s is not JSON", path);
	return b;
}

static void bundle_save(json_t *b, const char *path)
{
	SW_CHECK(json_dump_file(b, path, JSON_COMPACT) == 0);
}

/* sagewai-audit verify --bundle path [pinned]; first line in out. */
static int bundle_verify(const char *path, const char *pinned, char *out, size_t outlen)
{
	char cmd[3000];

	snprintf(cmd, sizeof(cmd), "env -u SAGEWAI_AUDIT_PUBKEYS %s verify --bundle %s%s%s 2>&1",
		 tool(), path, pinned ? " --pubkeys " : "", pinned ? pinned : "");
	return run_cmd(cmd, out, outlen);
}

/* Flip one hex digit of s at i. */
static void flip_hex(char *s, size_t i)
{
	s[i] = s[i] == '0' ? '1' : '0';
}

static void scenario_export(void)
{
	struct tally t = {0};
	char cmd[3000], line[4096], path[700], tpath[700], other[700], run_a[80], want[200];
	json_t *b, *recs, *rec;
	long seq10;
	int r;

	key_make("k1", 1);
	checkpoint_env();
	audit_start();
	wait_http();
	/* 10 runs of 30 events, in rounds a checkpoint interval apart: a run's
	 * records spread over several checkpoints */
	for (r = 0; r < 300; r++) {
		produce_event(r % 10, r / 10);
		if (r % 30 == 29) {
			sw_test_kafka_flush(producer, 60000);
			sw_test_msleep(300);
		}
	}
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 300, 120);
	wait_covered(60);
	snprintf(run_a, sizeof(run_a), "%s-r003", prefix);

	snprintf(path, sizeof(path), "%s/bundle.json", data_dir);
	snprintf(cmd, sizeof(cmd), "%s export %s --run %s --pubkeys %s -o %s 2>&1", tool(),
		 log_dir, run_a, pubkeys, path);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 0 && strstr(line, "30 records"));
	/* pinned keys, the bundle's own keys (another machine: no log there) */
	SW_CHECK(bundle_verify(path, pubkeys, line, sizeof(line)) == 0);
	snprintf(want, sizeof(want), "ok: 30 records of run %s", run_a);
	SW_CHECKF(strncmp(line, want, strlen(want)) == 0 && strstr(line, "verifier's own"), "%s",
		  line);
	snprintf(other, sizeof(other), "/tmp/audit-bundle-%d.json", (int)getpid());
	b = bundle_load(path);
	bundle_save(b, other);
	SW_CHECK(bundle_verify(other, NULL, line, sizeof(line)) == 0);
	SW_CHECK(strstr(line, "not pinned") != NULL);
	unlink(other);
	/* the CLI: the same bundle from the same log */
	snprintf(tpath, sizeof(tpath), "%s/bundle-cli.json", data_dir);
	snprintf(cmd, sizeof(cmd),
		 "SAGEWAI_AUDIT_PUBKEYS=%s %s audit export --run %s --dir %s --output %s 2>&1",
		 pubkeys, cli(), run_a, log_dir, tpath);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 0);
	snprintf(cmd, sizeof(cmd), "SAGEWAI_AUDIT_PUBKEYS=%s %s audit verify --bundle %s",
		 pubkeys, cli(), tpath);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 0 && strncmp(line, want, strlen(want)) == 0);
	/* a run with nothing in the log (after a second's wait for it) */
	snprintf(cmd, sizeof(cmd), "%s export %s --run %s-none --pubkeys %s --wait-ms 1000 2>&1",
		 tool(), log_dir, prefix, pubkeys);
	SW_CHECK(run_cmd(cmd, line, sizeof(line)) == 1 && strstr(line, "no event of run"));

	recs = json_object_get(b, "records");
	SW_CHECK(json_array_size(recs) == 30);
	SW_CHECKF(json_array_size(json_object_get(b, "checkpoints")) >= 3,
		  "the run's records are under %zu checkpoints only",
		  json_array_size(json_object_get(b, "checkpoints")));
	rec = json_array_get(recs, 9);
	seq10 = jlong(rec, "seq");
	snprintf(tpath, sizeof(tpath), "%s/tampered.json", data_dir);
	snprintf(want, sizeof(want), "BAD: record seq %ld: ", seq10);

	/* a byte of the tenth record's event changed */
	{
		json_t *c = json_deep_copy(b), *x = json_array_get(json_object_get(c, "records"), 9);
		char *hex = strdup(json_string_value(json_object_get(x, "record")));

		flip_hex(hex, strlen(hex) - 64 - 10);
		json_object_set_new(x, "record", json_string(hex));
		free(hex);
		bundle_save(c, tpath);
		json_decref(c);
		SW_CHECK(bundle_verify(tpath, pubkeys, line, sizeof(line)) == 1);
		SW_CHECKF(strncmp(line, want, strlen(want)) == 0 && strstr(line, "hash mismatch"),
			  "%s", line);
	}
	/* the record and its hash changed together: its proof fails */
	{
		json_t *c = json_deep_copy(b), *x = json_array_get(json_object_get(c, "records"), 9);
		const char *hex = json_string_value(json_object_get(x, "record"));
		size_t n = strlen(hex) / 2;
		uint8_t *raw = malloc(n), h[32];
		char *nhex;

		SW_CHECK(sw_hex_decode(hex, raw, n) == 0);
		raw[n - 32 - 5] ^= 1;
		crypto_generichash(h, 32, raw, n - 32, NULL, 0);
		memcpy(raw + n - 32, h, 32);
		nhex = sw_hex_dup(raw, n);
		json_object_set_new(x, "record", json_string(nhex));
		bundle_save(c, tpath);
		free(nhex);
		free(raw);
		json_decref(c);
		SW_CHECK(bundle_verify(tpath, pubkeys, line, sizeof(line)) == 1);
		SW_CHECKF(strncmp(line, want, strlen(want)) == 0 && strstr(line, "Merkle proof"),
			  "%s", line);
	}
	/* another run's claim: the bundle says run_a, the record is of r004 */
	{
		json_t *c = json_deep_copy(b);

		json_object_set_new(c, "run_id", json_string("someone-else"));
		bundle_save(c, tpath);
		json_decref(c);
		SW_CHECK(bundle_verify(tpath, pubkeys, line, sizeof(line)) == 1);
		SW_CHECKF(strstr(line, "not of the bundle's run") != NULL, "%s", line);
	}
	/* the checkpoint over the tenth record altered: every record under it,
	 * the first of them named */
	{
		json_t *c = json_deep_copy(b), *x = json_array_get(json_object_get(c, "records"), 9);
		long ci = jlong(x, "checkpoint"), first = 0;
		json_t *cp = json_array_get(json_object_get(c, "checkpoints"), (size_t)ci);
		char *root = strdup(json_string_value(json_object_get(cp, "root")));
		size_t i;

		flip_hex(root, 3);
		json_object_set_new(cp, "root", json_string(root));
		free(root);
		json_array_foreach(json_object_get(c, "records"), i, x) {
			if (jlong(x, "checkpoint") == ci) {
				first = jlong(x, "seq");
				break;
			}
		}
		bundle_save(c, tpath);
		json_decref(c);
		SW_CHECK(bundle_verify(tpath, pubkeys, line, sizeof(line)) == 1);
		snprintf(want, sizeof(want), "BAD: record seq %ld: its checkpoint", first);
		SW_CHECKF(strncmp(line, want, strlen(want)) == 0 &&
				  strstr(line, "signature does not verify"),
			  "%s", line);
	}
	/* pinned keys that did not sign it */
	{
		char pk2[700], secret[700], err[256], hex[65];
		uint8_t pk[32];
		FILE *f;

		snprintf(secret, sizeof(secret), "%s/keys/other.key", data_dir);
		SW_CHECK(sw_alog_keygen("k1", secret, pk, err, sizeof(err)) == 0);
		snprintf(pk2, sizeof(pk2), "%s/keys/other.pub", data_dir);
		sw_hex_encode(pk, 32, hex);
		SW_CHECK((f = fopen(pk2, "w")) != NULL);
		fprintf(f, "k1 %s\n", hex);
		fclose(f);
		SW_CHECK(bundle_verify(path, pk2, line, sizeof(line)) == 1);
		SW_CHECKF(strstr(line, "signature does not verify with key 'k1'") != NULL, "%s",
			  line);
	}
	/* not a bundle at all */
	{
		FILE *f = fopen(tpath, "w");

		fputs("{\"format\": \"something else\"}\n", f);
		fclose(f);
		SW_CHECK(bundle_verify(tpath, pubkeys, line, sizeof(line)) == 2);
		SW_CHECK(strstr(line, "not an audit bundle") != NULL);
		f = fopen(tpath, "w");
		fputs("\x01\x02 garbage", f);
		fclose(f);
		SW_CHECK(bundle_verify(tpath, pubkeys, line, sizeof(line)) == 2);
	}
	json_decref(b);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	free(t.ids);
}

/* ---- the dedupe window ------------------------------------------------------- */

/* Send the kept copies again and wait until the service counted them as
 * duplicates (its counter since its start: from base). */
struct kept {
	void *buf;
	size_t len;
	char key[64];
	const char *topic;
};

static void resend_dups(struct kept *keep, size_t n, double base)
{
	int64_t until = sw_mono_ns() + 90 * 1000000000LL;
	size_t i;

	for (i = 0; i < n; i++)
		sw_test_kafka_send(producer, keep[i].topic, keep[i].key, keep[i].buf, keep[i].len);
	sw_test_kafka_flush(producer, 60000);
	while (sw_test_metric_get(http_port, "sagewai_audit_duplicates_total") < base + (double)n) {
		SW_REQUIRE(sw_mono_ns() < until, "the re-published events were not all dropped");
		sw_test_msleep(200);
	}
}

static void scenario_window(void)
{
	static struct kept keep[200];
	struct tally t = {0};
	size_t nkeep = 0, i;
	double ids;
	int r, n;

	snprintf(extra_env[1], sizeof(extra_env[1]), "SAGEWAI_AUDIT_DEDUPE_WINDOW=1000");
	audit_start();
	wait_http();
	for (n = 0; n < 40; n++) {
		for (r = 0; r < 100; r++) {
			struct sw_event_header h;
			char input[64], err[256];
			const char *topic = r % 2 ? "sagewai.runs" : "sagewai.steps";
			void *buf;
			size_t len;
			json_t *o;

			sw_event_header_init(&h, "run.submitted", "audit-test");
			snprintf(h.run_id, sizeof(h.run_id), "%s-r%03d", prefix, r);
			snprintf(input, sizeof(input), "{\"n\": %d}", n);
			o = json_pack("{s:s, s:i, s:s}", "workflow", "audit-test", "workflow_version",
				      1, "input", input);
			SW_CHECK(sw_event_encode(reg, "run.submitted", &h, o, &buf, &len, err,
						 sizeof(err)) == 0);
			json_decref(o);
			sw_test_kafka_send(producer, topic, h.run_id, buf, len);
			if ((n == 0 || n == 20) && nkeep < 200) {
				keep[nkeep].buf = buf;
				keep[nkeep].len = len;
				keep[nkeep].topic = topic;
				snprintf(keep[nkeep].key, sizeof(keep[nkeep].key), "%s", h.run_id);
				nkeep++;
			} else {
				free(buf);
			}
		}
		if (n % 10 == 9)
			sw_test_kafka_flush(producer, 60000);
	}
	sw_test_kafka_flush(producer, 60000);
	wait_events(&t, 4000, 180);
	wait_index(4000, 120);
	{
		/* the log holds the other scenarios' events too: bounded once the
		 * index has them all */
		int64_t until = sw_mono_ns() + 60 * 1000000000LL;

		while ((ids = sw_test_metric_get(http_port, "sagewai_audit_dedupe_ids")) > 1000) {
			SW_REQUIRE(sw_mono_ns() < until, "%g ids in a window of 1000", ids);
			sw_test_msleep(200);
		}
	}
	fprintf(stderr, "dedupe window holds %g ids\n", ids);

	/* long after: they left the window; the index knows them */
	resend_dups(keep, nkeep, sw_test_metric_get(http_port, "sagewai_audit_duplicates_total"));
	SW_CHECK(sw_test_metric_get(http_port, "sagewai_audit_dedupe_lookups") >= (double)nkeep);
	/* the Kafka places are indexed for raw records only (migration 4): an
	 * event's row does not pay for an index only raw lookups use */
	SW_REQUIRE(sw_test_pg_long(db_dsn, "SELECT count(*) FROM pg_indexes WHERE schemaname ="
					   " 'audit' AND indexname = 'events_raw' AND indexdef"
					   " LIKE '%(topic, kafka_partition, kafka_offset)"
					   " WHERE (kind = 2)'") == 1 &&
		       sw_test_pg_long(db_dsn, "SELECT count(*) FROM pg_indexes WHERE"
					       " schemaname = 'audit' AND indexname ="
					       " 'events_topic'") == 0,
		   "the raw records' index is not the partial one of migration 4");
	sw_test_msleep(500);
	tally_log(&t);
	check_exact(&t, 4000);

	/* after a restart: the window rebuilt from the log's last records */
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	audit_start();
	wait_http();
	resend_dups(keep, nkeep, 0);
	sw_test_msleep(500);
	tally_log(&t);
	check_exact(&t, 4000);
	check_verify();
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	for (i = 0; i < nkeep; i++)
		free(keep[i].buf);
	free(t.ids);
}

/*
 * gather: SAGEWAI_AUDIT_GATHER_MS out of range stops the service at start,
 * naming the setting; in range (1 s here), 200 events trickled in one by
 * one over a second or more are all logged, in far fewer batches than
 * events -- taken one by one, as without gathering, they would make about
 * one batch each. The bound is loose (other tests' events share the
 * topics): three batches per second of trickle, plus ten.
 */
static void scenario_gather(void)
{
	struct tally t = {0};
	char path[700];
	char *log;
	double b0, b1;
	int64_t until, t0;
	int i;

	snprintf(extra_env[0], sizeof(extra_env[0]), "SAGEWAI_AUDIT_GATHER_MS=20000");
	audit_start();
	until = sw_mono_ns() + 60 * 1000000000LL;
	while (sw_test_proc_running(audit_pid)) {
		SW_REQUIRE(sw_mono_ns() < until, "sagewai-audit kept running with "
						 "SAGEWAI_AUDIT_GATHER_MS=20000");
		sw_test_msleep(100);
	}
	audit_pid = -1;
	snprintf(path, sizeof(path), "%s/audit.log", data_dir);
	log = sw_test_file_read(path, NULL);
	SW_REQUIRE(log != NULL, "no %s", path);
	SW_CHECKF(strstr(log, "SAGEWAI_AUDIT_GATHER_MS") != NULL,
		  "the refusal does not name the setting: %.500s", log);
	free(log);

	snprintf(extra_env[0], sizeof(extra_env[0]), "SAGEWAI_AUDIT_GATHER_MS=1000");
	audit_start();
	wait_http();
	sw_test_msleep(3000); /* what the topics held already is taken in */
	b0 = sw_test_metric_get(http_port, "sagewai_audit_batches_total");
	t0 = sw_mono_ns();
	for (i = 0; i < 200; i++) {
		produce_event(i % 10, i / 10);
		sw_test_kafka_flush(producer, 10000);
		sw_test_msleep(5);
	}
	wait_events(&t, 200, 120);
	b1 = sw_test_metric_get(http_port, "sagewai_audit_batches_total");
	check_exact(&t, 200);
	SW_CHECKF(b1 - b0 <= 3.0 * (double)(sw_mono_ns() - t0) / 1e9 + 10.0,
		  "200 events trickled over %.1f s came in %.0f batches",
		  (double)(sw_mono_ns() - t0) / 1e9, b1 - b0);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	for (i = 0; i < 10; i++) /* produce_event keeps each run's n = 0 event */
		free(sent_again[i].buf);
	free(t.ids);
}

/* ---- a checkpoint in the log, never published ------------------------ */

static int feed_cps(const struct sw_alog_rec *rec, void *opaque)
{
	sw_alog_cpstate_feed(opaque, rec);
	return 0;
}

/* 1 when a checkpoint of log_id covering exactly seq is on the topic. */
static int published_at(const char *log_id, uint64_t seq)
{
	struct sw_alog_pubset set = {0};
	char err[300];
	size_t i;
	int found = 0;

	SW_CHECKF(sw_alog_pub_read_kafka(reg, getenv("SAGEWAI_KAFKA_BOOTSTRAP"), 30000, &set, err,
					 sizeof(err)) == 0,
		  "%s", err);
	for (i = 0; i < set.n; i++)
		if (strcmp(set.v[i].log_id, log_id) == 0 && set.v[i].seq == seq)
			found = 1;
	sw_alog_pubset_free(&set);
	return found;
}

static void scenario_republish(void)
{
	struct tally t = {0};
	struct sw_alog_cpstate cps;
	struct sw_alog_checkpoint cp;
	struct sw_alog_signer *k1;
	struct sw_alog *l;
	struct sw_event_header h;
	char path[700], err[256], log_id[80];
	size_t repaired = 0, len;
	void *buf;
	json_t *o, *j;

	key_make("k1", 1);
	checkpoint_env();
	audit_start();
	wait_http();
	fill_covered(&t, 0, 20, 20);
	SW_CHECK(verify_json(pubkeys, kafka_source, &j) == 0);
	snprintf(log_id, sizeof(log_id), "%s", json_string_value(json_object_get(j, "log_id")));
	json_decref(j);

	/* what a kill between a checkpoint's sync and its publish leaves: an
	 * event and a signed checkpoint of it, durable in the log, never on
	 * the topic (the service's own key, the service stopped) */
	snprintf(path, sizeof(path), "%s/keys/k1.key", data_dir);
	SW_REQUIRE((k1 = sw_alog_signer_load(path, err, sizeof(err))) != NULL, "%s", err);
	sw_alog_cpstate_init(&cps);
	SW_CHECKF(sw_alog_scan(log_dir, 1, feed_cps, &cps, err, sizeof(err)) == 0, "%s", err);
	l = sw_alog_open(log_dir, 0, &repaired, err, sizeof(err));
	SW_REQUIRE(l != NULL, "%s", err);
	sw_event_header_init(&h, "run.submitted", "audit-test");
	snprintf(h.run_id, sizeof(h.run_id), "%s-unpublished", prefix);
	o = json_pack("{s:s, s:i, s:s}", "workflow", "audit-test", "workflow_version", 1, "input",
		      "{}");
	SW_CHECKF(sw_event_encode(reg, "run.submitted", &h, o, &buf, &len, err, sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
	SW_CHECKF(sw_alog_append(l, SW_ALOG_EVENT, "sagewai.runs", 0, 1000000000, sw_now_us(), buf,
				 len, NULL, NULL, NULL, err, sizeof(err)) == 0,
		  "%s", err);
	free(buf);
	{
		uint8_t hash[SW_ALOG_HASH];

		sw_alog_last_hash(l, hash);
		sw_alog_cpstate_add(&cps, hash);
	}
	SW_CHECKF(sw_alog_checkpoint_append(l, &cps, k1, log_id, sw_now_us(), &cp, err,
					    sizeof(err)) == 0,
		  "%s", err);
	SW_CHECKF(sw_alog_sync(l, err, sizeof(err)) == 0, "%s", err);
	sw_alog_close(l);
	sw_alog_signer_destroy(k1);
	SW_REQUIRE(!published_at(log_id, cp.seq), "checkpoint %llu is on the topic already",
		   (unsigned long long)cp.seq);

	/* restarted, with nothing new to take in: it publishes that one */
	audit_start();
	wait_http();
	wait_covered(30);
	SW_CHECKF(published_at(log_id, cp.seq),
		  "the checkpoint of records ..%llu in the log was not published",
		  (unsigned long long)cp.seq);
	sw_test_proc_stop(&audit_pid, SIGTERM, "sagewai-audit");
	SW_CHECK(verify_json(pubkeys, kafka_source, &j) == 0);
	SW_CHECK(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	free(t.ids);
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
	    {"checkpoints", scenario_checkpoints},
	    {"rotation", scenario_rotation},
	    {"diskfull", scenario_diskfull},
	    {"export", scenario_export},
	    {"window", scenario_window},
	    {"adopt", scenario_adopt},
	    {"resend", scenario_resend},
	    {"gather", scenario_gather},
	    {"republish", scenario_republish},
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
