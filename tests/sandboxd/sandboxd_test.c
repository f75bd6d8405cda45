/*
 * Black-box tests of sagewai-sandboxd over the real Kafka broker and
 * PostgreSQL of the harness, with real bubblewrap sandboxes. One program,
 * one scenario per argument:
 *
 *   basic        a Python snippet reads its stdin-less input from argv and
 *                prints JSON: step.finished SUCCEEDED carries its output;
 *                the environment inside is exactly PATH and HOME; a nonzero
 *                exit is FAILED "exit_status: ..." with the stderr tail; a
 *                command over its timeout is TIMED_OUT; an argv-array run;
 *                an unknown variant is bad_input; an in_process dispatch is
 *                left alone; the lifecycle events (acquired, output, exited,
 *                released) are on sagewai.sandbox; step.started precedes
 *                step.finished; /metrics shows the warm pool
 *   redelivery   the same dispatch produced again after it finished: one
 *                execution, the same step.finished event id
 *   deadletter   garbage and a truncated dispatch go to sagewai.deadletter;
 *                sandboxd carries on serving
 *   egress       egress_only end to end through the proxy: listed host reached,
 *                unlisted denied (403) and never connected, the host loopback
 *                unreachable directly, a sandbox.egress event per decision
 *   escape       the escape suite through sandboxd: host files, sandboxd's own
 *                state, host processes, the runner's control socket, writes
 *                outside /workspace, the host loopback with policy none,
 *                ptrace/mount/unshare/setns, a fork bomb, a memory bomb; each
 *                refused, and sandboxd serves on
 *   hostile      every sandbox's runner misbehaves (garbage, oversized or
 *                unknown frames, a flood, silence...): each step ends with
 *                sandbox_error or its timeout, sandboxd keeps serving
 *   kill9        kill -9 of sandboxd while a step runs: no process of any of
 *                its sandboxes (tool runners included) is left; started as
 *                root, its service part runs as another uid
 *   kill9service kill -9 of the service part only: the privileged part
 *                destroys every sandbox and exits non-zero
 *
 * Each scenario names its runs "<scenario>-<pid>-...", uses its own database
 * and consumer group positioned at the end of the topics.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test.h"

static struct sw_event_registry *reg;
static char prefix[48];
static char tmp_dir[512];
static char sbd_log[600];
static char db_dsn[512];
static char group[128];
static pid_t sbd_pid = -1;
static int sbd_port;
static const char *sbd_egress_private; /* SAGEWAI_EGRESS_PRIVATE, or NULL */
static char sbd_runner[600];	       /* SAGEWAI_SANDBOX_RUNNER, or "" */
static rd_kafka_t *producer, *collector;

struct ev {
	char type[32];
	char event_id[37];
	char run_id[64];
	char step_id[128];
	char status[16];
	json_t *body; /* the decoded event */
	json_t *output;
	char *error;
	int64_t offset;
	int32_t partition;
	char topic[32];
};
static struct ev *evs;
static size_t nevs, capevs;

static void show_logs(void)
{
	char cmd[700];

	snprintf(cmd, sizeof(cmd), "tail -n 60 %s >&2", sbd_log);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log)\n");
}

#define REQUIRE(cond, ...)                                                                        \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			show_logs();                                                              \
			SW_CHECKF(cond, __VA_ARGS__);                                             \
		}                                                                                 \
	} while (0)

static void exit_cleanup(void)
{
	if (sbd_pid > 0) {
		kill(sbd_pid, SIGKILL);
		waitpid(sbd_pid, NULL, 0);
	}
}

static void sbd_start(void)
{
	char path[600], portfile[600];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/services/sandboxd/sagewai-sandboxd",
		 getenv("SW_BUILD_DIR"));
	snprintf(portfile, sizeof(portfile), "%s/port", tmp_dir);
	pid = fork();
	SW_CHECK(pid >= 0);
	if (pid == 0) {
		int fd = open(sbd_log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		setenv("SAGEWAI_PG_DSN", db_dsn, 1);
		setenv("SAGEWAI_GROUP_ID", group, 1);
		setenv("SAGEWAI_HTTP_PORT", "0", 1);
		setenv("SAGEWAI_LOG_LEVEL", "debug", 1);
		setenv("SAGEWAI_SANDBOX_STATE_DIR", tmp_dir, 1);
		if (sbd_egress_private != NULL)
			setenv("SAGEWAI_EGRESS_PRIVATE", sbd_egress_private, 1);
		if (sbd_runner[0] != '\0')
			setenv("SAGEWAI_SANDBOX_RUNNER", sbd_runner, 1);
		setenv("SAGEWAI_KAFKA_CONSUMER_CONFIG",
		       "session.timeout.ms=6000,heartbeat.interval.ms=1000", 1);
		execl(path, "sagewai-sandboxd", "serve", (char *)NULL);
		_exit(127);
	}
	sbd_pid = pid;
	/* the port, from the start log line */
	for (int i = 0; i < 600 && sbd_port == 0; i++) {
		char line[4096];
		FILE *f = fopen(sbd_log, "r");

		while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			char *p = strstr(line, "\"http_port\":\"");

			if (strstr(line, "sandboxd started") && p != NULL)
				sbd_port = atoi(p + strlen("\"http_port\":\""));
		}
		if (f != NULL)
			fclose(f);
		REQUIRE(waitpid(sbd_pid, NULL, WNOHANG) == 0, "sagewai-sandboxd exited at start");
		if (sbd_port == 0)
			usleep(50000);
	}
	REQUIRE(sbd_port > 0, "sagewai-sandboxd did not log its port");
}

/* ---- Kafka -------------------------------------------------------------- */

static rd_kafka_t *kafka_client(rd_kafka_type_t type, const char *gid)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];
	rd_kafka_t *rk;

#define SET(k, v) SW_CHECK(rd_kafka_conf_set(conf, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK)
	SET("bootstrap.servers", getenv("SAGEWAI_KAFKA_BOOTSTRAP"));
	if (type == RD_KAFKA_PRODUCER) {
		SET("enable.idempotence", "true");
		SET("linger.ms", "1");
	} else {
		SET("group.id", gid);
		SET("enable.auto.commit", "false");
		SET("auto.offset.reset", "earliest");
	}
#undef SET
	rk = rd_kafka_new(type, conf, err, sizeof(err));
	SW_CHECKF(rk != NULL, "%s", err);
	return rk;
}

static int partitions_of(rd_kafka_t *rk, const char *topic)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	int n;

	SW_CHECK(rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	SW_CHECK(md->topic_cnt == 1 && md->topics[0].partition_cnt > 0);
	n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	return n;
}

static rd_kafka_topic_partition_list_t *ends(rd_kafka_t *rk, const char *const *topics)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	int64_t lo, hi;
	int p, n;

	for (; *topics; topics++) {
		n = partitions_of(rk, *topics);
		for (p = 0; p < n; p++) {
			SW_CHECK(
			    rd_kafka_query_watermark_offsets(rk, *topics, p, &lo, &hi, 10000) ==
			    RD_KAFKA_RESP_ERR_NO_ERROR);
			rd_kafka_topic_partition_list_add(l, *topics, p)->offset = hi;
		}
	}
	return l;
}

static void position_group(void)
{
	static const char *const topics[] = {"sagewai.steps", "sagewai.runs", NULL};
	rd_kafka_t *rk = kafka_client(RD_KAFKA_CONSUMER, group);
	rd_kafka_topic_partition_list_t *l = ends(rk, topics);

	SW_CHECK(rd_kafka_commit(rk, l, 0) == RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

static void collector_start(void)
{
	static const char *const topics[] = {"sagewai.steps", "sagewai.sandbox", NULL};
	char gid[96];
	rd_kafka_topic_partition_list_t *l;

	snprintf(gid, sizeof(gid), "%s-collector", prefix);
	collector = kafka_client(RD_KAFKA_CONSUMER, gid);
	rd_kafka_poll_set_consumer(collector);
	l = ends(collector, topics);
	SW_CHECK(rd_kafka_assign(collector, l) == RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(l);
}

static void collect(int wait_ms)
{
	rd_kafka_message_t *m;
	char err[256];
	json_t *e, *h, *out;
	struct ev *x;

	while ((m = rd_kafka_consumer_poll(collector, wait_ms)) != NULL) {
		wait_ms = 0;
		if (m->err) {
			rd_kafka_message_destroy(m);
			continue;
		}
		e = sw_event_decode(reg, m->payload, m->len, err, sizeof(err));
		h = json_object_get(e, "header");
		if (e == NULL || strncmp(json_string_value(json_object_get(h, "run_id")) ?: "",
					 prefix, strlen(prefix)) != 0) {
			json_decref(e);
			rd_kafka_message_destroy(m);
			continue;
		}
		if (nevs == capevs) {
			capevs = capevs ? capevs * 2 : 64;
			evs = realloc(evs, capevs * sizeof(*evs));
			SW_CHECK(evs != NULL);
		}
		x = &evs[nevs++];
		memset(x, 0, sizeof(*x));
		snprintf(x->type, sizeof(x->type), "%s",
			 json_string_value(json_object_get(h, "type")));
		snprintf(x->event_id, sizeof(x->event_id), "%s",
			 json_string_value(json_object_get(h, "event_id")));
		snprintf(x->run_id, sizeof(x->run_id), "%s",
			 json_string_value(json_object_get(h, "run_id")));
		snprintf(x->step_id, sizeof(x->step_id), "%s",
			 json_string_value(json_object_get(h, "step_id")) ?: "");
		snprintf(x->status, sizeof(x->status), "%s",
			 json_string_value(json_object_get(e, "status")) ?: "");
		snprintf(x->topic, sizeof(x->topic), "%s", rd_kafka_topic_name(m->rkt));
		out = json_object_get(e, "output");
		if (json_is_string(out))
			x->output = json_loads(json_string_value(out), JSON_DECODE_ANY, NULL);
		if (json_is_string(json_object_get(e, "error")))
			x->error = strdup(json_string_value(json_object_get(e, "error")));
		x->offset = m->offset;
		x->partition = m->partition;
		x->body = e;
		rd_kafka_message_destroy(m);
	}
}

static size_t count(const char *type, const char *step_id)
{
	size_t n = 0;

	for (size_t i = 0; i < nevs; i++)
		if (strcmp(evs[i].type, type) == 0 && strcmp(evs[i].step_id, step_id) == 0)
			n++;
	return n;
}

static struct ev *find(const char *type, const char *step_id, size_t nth)
{
	for (size_t i = 0; i < nevs; i++)
		if (strcmp(evs[i].type, type) == 0 && strcmp(evs[i].step_id, step_id) == 0 &&
		    nth-- == 0)
			return &evs[i];
	return NULL;
}

static struct ev *wait_event(const char *type, const char *step_id, size_t nth, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;
	struct ev *e;

	for (;;) {
		collect(100);
		if ((e = find(type, step_id, nth)) != NULL)
			return e;
		REQUIRE(sbd_pid < 0 || waitpid(sbd_pid, NULL, WNOHANG) == 0,
			"sagewai-sandboxd exited");
		REQUIRE(sw_mono_ns() < until, "no %s #%zu for %s after %d s", type, nth, step_id,
			limit_s);
	}
}

static struct ev *wait_finished(const char *step_id)
{
	return wait_event("step.finished", step_id, 0, 120);
}

static void produce(const char *topic, const char *key, const void *v, size_t len)
{
	rd_kafka_resp_err_t e;

	e = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
			      RD_KAFKA_V_VALUE((void *)v, len),
			      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	SW_CHECKF(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
	SW_CHECK(rd_kafka_flush(producer, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* ---- dispatches ----------------------------------------------------------- */

struct dispatch {
	char run_id[64];
	char step_id[128];
	void *buf;
	size_t len;
};

/* A sandboxed spec with run (stolen: a string or an array) and extra keys. */
static json_t *spec(json_t *run)
{
	return json_pack("{s:s, s:i, s:s, s:o, s:[s], s:i}", "workflow", "sandboxd-test",
			 "workflow_version", 1, "uses", "", "run", run, "run_modes", "sandboxed",
			 "output_max", 1048576);
}

static void dispatch_make(struct dispatch *d, const char *run, const char *step, const char *mode,
			  int64_t timeout_ms, json_t *sp)
{
	struct sw_event_header h;
	char err[256], *text;
	json_t *o;

	memset(d, 0, sizeof(*d));
	SW_CHECK(sp != NULL);
	snprintf(d->run_id, sizeof(d->run_id), "%s-%s", prefix, run);
	snprintf(d->step_id, sizeof(d->step_id), "%s/%s/1", d->run_id, step);
	sw_event_header_init(&h, "step.dispatched", "sandboxd-test");
	snprintf(h.tenant, sizeof(h.tenant), "default");
	snprintf(h.run_id, sizeof(h.run_id), "%s", d->run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%s", d->step_id);
	text = json_dumps(sp, JSON_COMPACT);
	json_decref(sp);
	o = json_pack("{s:s, s:i, s:s, s:i, s:s, s:I}", "step", step, "index", 0, "mode", mode,
		      "attempt", 1, "spec", text, "timeout_ms", (json_int_t)timeout_ms);
	free(text);
	SW_CHECKF(sw_event_encode(reg, "step.dispatched", &h, o, &d->buf, &d->len, err,
				  sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
}

static void dispatch(struct dispatch *d, const char *run, const char *step, const char *mode,
		     int64_t timeout_ms, json_t *sp)
{
	dispatch_make(d, run, step, mode, timeout_ms, sp);
	produce("sagewai.steps", d->run_id, d->buf, d->len);
	free(d->buf);
	d->buf = NULL;
}

static void require_status(const struct ev *e, const char *status, const char *error_prefix)
{
	REQUIRE(strcmp(e->status, status) == 0, "%s: status %s, expected %s (error: %s)",
		e->step_id, e->status, status, e->error ? e->error : "-");
	if (error_prefix != NULL)
		REQUIRE(e->error != NULL &&
			    strncmp(e->error, error_prefix, strlen(error_prefix)) == 0,
			"%s: error '%s' does not start with '%s'", e->step_id,
			e->error ? e->error : "(none)", error_prefix);
}

/* ---- set-up ------------------------------------------------------------- */

static PGresult *sql(const char *dsn, const char *q)
{
	PGconn *c = PQconnectdb(dsn);
	PGresult *r;

	SW_CHECKF(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, q);
	SW_CHECKF(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
		  "%s: %s", q, PQerrorMessage(c));
	PQfinish(c);
	return r;
}

static void setup(const char *name)
{
	const char *base_dsn, *build = getenv("SW_BUILD_DIR");
	char q[2048], dbname[128], err[256];

	sw_test_env_load();
	atexit(exit_cleanup);
	base_dsn = getenv("SAGEWAI_PG_DSN");
	SW_CHECK(base_dsn != NULL && build != NULL);
	snprintf(prefix, sizeof(prefix), "sbt-%s-%d", name, (int)getpid());
	snprintf(group, sizeof(group), "sandboxd-test-%s", prefix);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tests-tmp/sandboxd-%s", build, prefix);
	snprintf(sbd_log, sizeof(sbd_log), "%s/sandboxd.log", tmp_dir);
	snprintf(q, sizeof(q), "mkdir -p %s && chmod 755 %s/.. %s", tmp_dir, tmp_dir, tmp_dir);
	SW_CHECK(system(q) == 0);
	snprintf(dbname, sizeof(dbname), "sandboxd_%s_%d", name, (int)getpid());
	snprintf(q, sizeof(q), "CREATE DATABASE %s", dbname);
	PQclear(sql(base_dsn, q));
	snprintf(db_dsn, sizeof(db_dsn), "%s dbname=%s", base_dsn, dbname);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = kafka_client(RD_KAFKA_PRODUCER, NULL);
	position_group();
	collector_start();
}

struct membuf {
	char *p;
	size_t len;
};

static size_t collect_body(char *d, size_t sz, size_t nm, void *u)
{
	struct membuf *m = u;

	m->p = realloc(m->p, m->len + sz * nm + 1);
	SW_CHECK(m->p != NULL);
	memcpy(m->p + m->len, d, sz * nm);
	m->len += sz * nm;
	m->p[m->len] = '\0';
	return sz * nm;
}

static char *http_get(const char *path)
{
	CURL *c = curl_easy_init();
	struct membuf m = {0};
	char url[256];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", sbd_port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	SW_CHECK(curl_easy_perform(c) == CURLE_OK);
	curl_easy_cleanup(c);
	return m.p;
}

/* The value of a metric line "name value", or -1. */
static double metric(const char *text, const char *name)
{
	const char *p = text;
	size_t n = strlen(name);

	while ((p = strstr(p, name)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atof(p + n + 1);
		p += n;
	}
	return -1;
}

/* ---- scenarios ------------------------------------------------------------ */

static const char py_snippet[] =
    "import json, os, sys\n"
    "data = json.loads(sys.argv[1])\n"
    "env = open('/proc/self/environ').read().split('\\0')\n"
    "print(json.dumps({'sum': sum(data['numbers']),\n"
    "                  'env': sorted(e.split('=')[0] for e in env if e),\n"
    "                  'home': os.environ.get('HOME'), 'cwd': os.getcwd()}))\n";

static void scenario_basic(void)
{
	struct dispatch d_py, d_fail, d_slow, d_argv, d_var, d_inproc, d_big;
	struct ev *e, *s, *f;
	json_t *stdout_json, *v;
	char *metrics;
	size_t i, outputs = 0;
	int acquired = 0, exited = 0, released = 0;

	setup("basic");
	sbd_start();
	dispatch(&d_inproc, "inproc", "t", "in_process", 0,
		 json_pack("{s:s, s:{s:i}}", "uses", "template", "with", "value", 1));
	dispatch(&d_py, "py", "check", "sandboxed", 60000,
		 spec(json_pack("[s, s, s, s]", "python3", "-c", py_snippet,
				"{\"numbers\": [1, 2, 3, 36]}")));
	dispatch(&d_fail, "fail", "bad", "sandboxed", 60000,
		 spec(json_string("echo starting; echo 'it broke' >&2; exit 3")));
	dispatch(&d_slow, "slow", "sleepy", "sandboxed", 1500, spec(json_string("sleep 30")));
	dispatch(&d_argv, "argv", "echo", "sandboxed", 60000,
		 spec(json_pack("[s, s]", "/bin/echo", "hello from argv")));
	{
		json_t *sp = spec(json_string("true"));

		json_object_set_new(sp, "variant", json_string("no-such-variant"));
		dispatch(&d_var, "variant", "v", "sandboxed", 60000, sp);
	}
	{
		json_t *sp = spec(json_string("head -c 5000 /dev/zero | tr '\\0' x"));

		json_object_set_new(sp, "output_max", json_integer(1000));
		dispatch(&d_big, "big", "big", "sandboxed", 60000, sp);
	}

	/* the Python snippet's output */
	f = wait_finished(d_py.step_id);
	require_status(f, "SUCCEEDED", NULL);
	REQUIRE(f->output != NULL &&
		    json_integer_value(json_object_get(f->output, "exit_code")) == 0,
		"no exit_code 0 in the output");
	v = json_object_get(f->output, "stdout");
	REQUIRE(json_is_string(v), "no stdout");
	stdout_json = json_loads(json_string_value(v), 0, NULL);
	REQUIRE(stdout_json != NULL, "stdout is not the snippet's JSON: %s", json_string_value(v));
	REQUIRE(json_integer_value(json_object_get(stdout_json, "sum")) == 42, "sum is not 42");
	/* exactly PATH and HOME as exec'd (Python itself adds LC_CTYPE to os.environ) */
	v = json_object_get(stdout_json, "env");
	{
		char *envs = json_dumps(v, JSON_COMPACT);

		REQUIRE(json_array_size(v) == 2 &&
			    strcmp(json_string_value(json_array_get(v, 0)), "HOME") == 0 &&
			    strcmp(json_string_value(json_array_get(v, 1)), "PATH") == 0,
			"environment inside is %s, expected [HOME, PATH]", envs);
		free(envs);
	}
	REQUIRE(strcmp(json_string_value(json_object_get(stdout_json, "cwd")), "/workspace") == 0,
		"cwd is not /workspace");
	json_decref(stdout_json);
	s = find("step.started", d_py.step_id, 0);
	REQUIRE(s != NULL && s->partition == f->partition && s->offset < f->offset,
		"step.started not before step.finished");

	/* a nonzero exit */
	f = wait_finished(d_fail.step_id);
	require_status(f, "FAILED", "exit_status: ");
	REQUIRE(strstr(f->error, "status 3") != NULL && strstr(f->error, "it broke") != NULL,
		"error '%s' lacks the status or the stderr tail", f->error);

	/* over its timeout */
	f = wait_finished(d_slow.step_id);
	require_status(f, "TIMED_OUT", "timeout: ");

	/* argv form */
	f = wait_finished(d_argv.step_id);
	require_status(f, "SUCCEEDED", NULL);
	REQUIRE(strcmp(json_string_value(json_object_get(f->output, "stdout")),
		       "hello from argv\n") == 0,
		"argv step stdout is wrong");

	/* unknown variant: refused, nothing started */
	f = wait_finished(d_var.step_id);
	require_status(f, "FAILED", "bad_input: ");
	REQUIRE(strstr(f->error, "no-such-variant") != NULL, "error does not name the variant");
	REQUIRE(count("step.started", d_var.step_id) == 0, "a refused step was started");

	/* output capped at output_max, and said so */
	f = wait_finished(d_big.step_id);
	require_status(f, "SUCCEEDED", NULL);
	REQUIRE(json_string_length(json_object_get(f->output, "stdout")) == 1000 &&
		    json_is_true(json_object_get(f->output, "truncated")),
		"output not capped at 1000 bytes with truncated: true");

	/* lifecycle of the Python step's sandbox */
	for (int tries = 0; tries < 100 && (acquired == 0 || released == 0); tries++) {
		collect(100);
		acquired = exited = released = 0;
		outputs = 0;
		for (i = 0; i < nevs; i++) {
			if (strcmp(evs[i].step_id, d_py.step_id) != 0)
				continue;
			REQUIRE(strncmp(evs[i].type, "step.", 5) == 0 ||
				    strcmp(evs[i].type, "step.finished") == 0 ||
				    strcmp(evs[i].topic, "sagewai.sandbox") == 0,
				"%s on %s", evs[i].type, evs[i].topic);
			acquired += strcmp(evs[i].type, "sandbox.acquired") == 0;
			exited += strcmp(evs[i].type, "sandbox.exited") == 0;
			released += strcmp(evs[i].type, "sandbox.released") == 0;
			outputs += strcmp(evs[i].type, "sandbox.output") == 0;
		}
	}
	REQUIRE(acquired == 1 && exited == 1 && released == 1 && outputs >= 1,
		"lifecycle: %d acquired, %zu output, %d exited, %d released", acquired, outputs,
		exited, released);
	e = find("sandbox.exited", d_py.step_id, 0);
	REQUIRE(json_integer_value(json_object_get(e->body, "exit_code")) == 0 &&
		    json_integer_value(json_object_get(e->body, "utime_us")) +
			    json_integer_value(json_object_get(e->body, "stime_us")) >
			0,
		"sandbox.exited lacks exit code or usage");
	{
		const char *sid = json_string_value(json_object_get(
		    find("sandbox.acquired", d_py.step_id, 0)->body, "sandbox_id"));
		struct ev *r = find("sandbox.released", d_py.step_id, 0);

		REQUIRE(sid != NULL &&
			    strcmp(sid, json_string_value(
					    json_object_get(r->body, "sandbox_id"))) == 0 &&
			    strcmp(json_string_value(json_object_get(r->body, "reason")),
				   "finished") == 0,
			"released names another sandbox or reason");
	}
	e = find("sandbox.output", d_py.step_id, 0);
	REQUIRE(strstr(json_string_value(json_object_get(e->body, "data")), "\"sum\": 42") != NULL,
		"first output chunk lacks the snippet's output");
	/* the failing step's sandbox was released too, as failed */
	wait_event("sandbox.released", d_fail.step_id, 0, 60);
	REQUIRE(strcmp(json_string_value(json_object_get(
			   find("sandbox.released", d_fail.step_id, 0)->body, "reason")),
		       "failed") == 0,
		"failed step's sandbox released with another reason");

	/* the in_process dispatch was left to the worker */
	REQUIRE(count("step.finished", d_inproc.step_id) == 0 &&
		    count("step.started", d_inproc.step_id) == 0,
		"sandboxd answered an in_process dispatch");

	metrics = http_get("/metrics");
	REQUIRE(metric(metrics, "sagewai_sandboxd_warm_target") == 2, "warm target not 2:\n%s",
		metrics);
	REQUIRE(metric(metrics, "sagewai_sandboxd_acquire_hits") +
			metric(metrics, "sagewai_sandboxd_acquire_misses") >=
		    5,
		"acquires not counted:\n%s", metrics);
	REQUIRE(metric(metrics, "sagewai_sandboxd_warm_started") >= 1, "no warm start:\n%s",
		metrics);
	free(metrics);
}

static void scenario_redelivery(void)
{
	struct dispatch d;
	struct ev *f1, *f2;

	setup("redelivery");
	sbd_start();
	dispatch_make(&d, "once", "count", "sandboxed", 60000,
		      spec(json_string("echo ran >> /tmp/x; date +%s%N")));
	produce("sagewai.steps", d.run_id, d.buf, d.len);
	f1 = wait_finished(d.step_id);
	require_status(f1, "SUCCEEDED", NULL);
	produce("sagewai.steps", d.run_id, d.buf, d.len);
	f2 = wait_event("step.finished", d.step_id, 1, 120);
	f1 = find("step.finished", d.step_id, 0);
	REQUIRE(strcmp(f1->event_id, f2->event_id) == 0, "re-published with another event id");
	REQUIRE(count("sandbox.acquired", d.step_id) == 1 && count("step.started", d.step_id) == 1,
		"the step ran twice");
	free(d.buf);
}

/* Consume sagewai.deadletter from the start; 1 if a message holds needle. */
static int deadletter_has(const void *needle, size_t len)
{
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *tl;
	rd_kafka_message_t *m;
	char gid[96];
	int found = 0, n, idle = 0;

	snprintf(gid, sizeof(gid), "%s-dl-%d", prefix, rand());
	rk = kafka_client(RD_KAFKA_CONSUMER, gid);
	rd_kafka_poll_set_consumer(rk);
	n = partitions_of(rk, "sagewai.deadletter");
	tl = rd_kafka_topic_partition_list_new(n);
	for (int p = 0; p < n; p++)
		rd_kafka_topic_partition_list_add(tl, "sagewai.deadletter", p)->offset =
		    RD_KAFKA_OFFSET_BEGINNING;
	SW_CHECK(rd_kafka_assign(rk, tl) == RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(tl);
	while (!found && idle < 30) {
		m = rd_kafka_consumer_poll(rk, 200);
		if (m == NULL) {
			idle++;
			continue;
		}
		if (!m->err && memmem(m->payload, m->len, needle, len) != NULL)
			found = 1;
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return found;
}

static void scenario_deadletter(void)
{
	char garbage[128];
	struct dispatch d[2];
	struct ev *f;
	int found = 0;

	setup("deadletter");
	sbd_start();
	snprintf(garbage, sizeof(garbage), "not an event %s", prefix);
	produce("sagewai.steps", prefix, garbage, strlen(garbage));
	dispatch_make(&d[0], "cut", "x", "sandboxed", 60000, spec(json_string("true")));
	produce("sagewai.steps", d[0].run_id, d[0].buf, d[0].len - 5);
	dispatch(&d[1], "after", "ok", "sandboxed", 60000, spec(json_string("echo still here")));
	f = wait_finished(d[1].step_id);
	require_status(f, "SUCCEEDED", NULL);
	for (int i = 0; i < 20 && !found; i++)
		found = deadletter_has(garbage, strlen(garbage));
	REQUIRE(found, "garbage not in sagewai.deadletter");
	REQUIRE(deadletter_has(d[0].buf, d[0].len - 5), "truncated dispatch not dead-lettered");
	REQUIRE(count("step.finished", d[0].step_id) == 0, "the truncated dispatch ran");
	free(d[0].buf);
}

/* Every descendant of pid, into out (at most max); returns how many. */
static size_t descendants(pid_t pid, pid_t *out, size_t max)
{
	size_t n = 0, i = 0;

	out[n++] = pid;
	for (i = 0; i < n; i++) {
		DIR *d = opendir("/proc");
		struct dirent *e;

		SW_CHECK(d != NULL);
		while ((e = readdir(d)) != NULL && n < max) {
			char path[300], buf[512], *p;
			int fd, ppid;
			ssize_t r;

			if (atoi(e->d_name) <= 0)
				continue;
			snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
			if ((fd = open(path, O_RDONLY)) < 0)
				continue;
			r = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (r <= 0)
				continue;
			buf[r] = '\0';
			if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1)
				continue;
			if (ppid == out[i])
				out[n++] = atoi(e->d_name);
		}
		closedir(d);
	}
	return n;
}

/* 1 if pid exists and is not a zombie. */
static int alive(pid_t pid)
{
	char path[64], buf[512], *p;
	int fd;
	ssize_t r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY)) < 0)
		return 0;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return 0;
	buf[r] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[2] != 'Z' && p[2] != 'X';
}

static int is_runner(pid_t pid)
{
	char path[64], buf[256] = "";
	int fd;
	ssize_t r;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY)) < 0)
		return 0;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return r > 0 && strstr(buf, "toolrunner") != NULL;
}

/* Live processes (not this one) whose command line holds dir. */
static size_t names_dir(const char *dir)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t n = 0;

	SW_CHECK(d != NULL);
	while ((e = readdir(d)) != NULL) {
		char path[300], buf[4096];
		int fd, pid = atoi(e->d_name);
		ssize_t r;

		if (pid <= 0 || pid == (int)getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		if ((fd = open(path, O_RDONLY)) < 0)
			continue;
		r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (r <= 0)
			continue;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] == '\0')
				buf[i] = ' ';
		buf[r] = '\0';
		n += strstr(buf, dir) != NULL && alive(pid);
	}
	closedir(d);
	return n;
}


/* ---- listeners on the host's loopback ------------------------------------- */

/* A thread that answers every connection with one HTTP response and counts
 * them; the first request line it saw is kept. */
struct upstream {
	int fd, port;
	pthread_t th;
	volatile int accepted;
	char first_line[256];
	int answer; /* 0: only count (close at once) */
};

static void *upstream_main(void *arg)
{
	struct upstream *u = arg;
	int c;

	while ((c = accept(u->fd, NULL, NULL)) >= 0) {
		char buf[2048];
		ssize_t n;

		u->accepted++;
		if (u->answer && (n = read(c, buf, sizeof(buf) - 1)) > 0) {
			static const char resp[] = "HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n"
						   "hello-egress";
			char *eol;

			buf[n] = '\0';
			if ((eol = strstr(buf, "\r\n")) != NULL)
				*eol = '\0';
			if (u->first_line[0] == '\0')
				snprintf(u->first_line, sizeof(u->first_line), "%.200s", buf);
			if (write(c, resp, sizeof(resp) - 1) < 0)
				u->answer = u->answer;
		}
		close(c);
	}
	return NULL;
}

static void upstream_start(struct upstream *u, int answer)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);

	memset(u, 0, sizeof(*u));
	u->answer = answer;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	u->fd = socket(AF_INET, SOCK_STREAM, 0);
	SW_CHECK(u->fd >= 0 && bind(u->fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		 listen(u->fd, 16) == 0 && getsockname(u->fd, (struct sockaddr *)&a, &len) == 0);
	u->port = ntohs(a.sin_port);
	SW_CHECK(pthread_create(&u->th, NULL, upstream_main, u) == 0);
}

/* ---- egress ----------------------------------------------------------------- */

static const char egress_py[] =
    "import json, os, socket, sys, urllib.request\n"
    "port, other = int(sys.argv[1]), int(sys.argv[2])\n"
    "res = {'proxy': os.environ.get('http_proxy', '')}\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', port), 3); res['direct'] = 'connected'\n"
    "except OSError:\n"
    "    res['direct'] = 'refused'\n"
    "op = urllib.request.build_opener(urllib.request.ProxyHandler(\n"
    "    {'http': os.environ['http_proxy']}))\n"
    "res['listed'] = op.open('http://127.0.0.1:%d/x?y=1' % port, timeout=20).read().decode()\n"
    "s = socket.create_connection(('127.0.0.1', 3128), 10)\n"
    "s.sendall(b'CONNECT 127.0.0.1:%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' % other)\n"
    "res['unlisted'] = s.recv(200).decode().split('\\r\\n')[0]\n"
    "print(json.dumps(res))\n";

/* The egress event of step_id whose target_port is port, or NULL. */
static struct ev *egress_event(const char *step_id, int port)
{
	for (size_t i = 0; i < nevs; i++)
		if (strcmp(evs[i].type, "sandbox.egress") == 0 &&
		    strcmp(evs[i].step_id, step_id) == 0 &&
		    json_integer_value(json_object_get(evs[i].body, "target_port")) == port)
			return &evs[i];
	return NULL;
}

/*
 * egress_only end to end: from inside, the host's loopback is out of reach
 * except through the proxy; a listed host:port is reached (plain HTTP,
 * origin-form upstream), an unlisted one is denied with 403 and never
 * connected to; each decision is a sandbox.egress event. egress_allow
 * without egress_only is bad input; a `none` sandbox has no proxy.
 */
static void scenario_egress(void)
{
	struct upstream up, other;
	struct dispatch d_eg, d_bad, d_none;
	struct ev *f, *e;
	json_t *sp, *out;
	char hp[64], ports[2][16];

	upstream_start(&up, 1);
	upstream_start(&other, 0);
	sbd_egress_private = "allow"; /* the listed host is the loopback here */
	setup("egress");
	sbd_start();
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", up.port);
	snprintf(ports[0], sizeof(ports[0]), "%d", up.port);
	snprintf(ports[1], sizeof(ports[1]), "%d", other.port);
	sp = spec(json_pack("[s, s, s, s, s]", "python3", "-c", egress_py, ports[0], ports[1]));
	json_object_set_new(sp, "network", json_string("egress_only"));
	json_object_set_new(sp, "egress_allow", json_pack("[s]", hp));
	dispatch(&d_eg, "egress", "fetch", "sandboxed", 60000, sp);
	sp = spec(json_string("true"));
	json_object_set_new(sp, "egress_allow", json_pack("[s]", hp));
	dispatch(&d_bad, "egressbad", "bad", "sandboxed", 60000, sp);
	dispatch(&d_none, "egressnone", "none", "sandboxed", 60000,
		 spec(json_pack("[s, s, s]", "python3", "-c",
				"import socket\n"
				"try:\n"
				"    socket.create_connection(('127.0.0.1', 3128), 3); print('open')\n"
				"except OSError:\n"
				"    print('closed')\n")));

	f = wait_finished(d_eg.step_id);
	require_status(f, "SUCCEEDED", NULL);
	out = json_object_get(f->output, "stdout");
	REQUIRE(json_is_string(out), "no stdout in %s", d_eg.step_id);
	out = json_loads(json_string_value(out), 0, NULL);
	REQUIRE(out != NULL, "stdout is not JSON: %s", json_string_value(json_object_get(f->output, "stdout")));
	SW_CHECKF(strcmp(json_string_value(json_object_get(out, "proxy")), "http://127.0.0.1:3128") == 0,
		  "http_proxy inside: %s", json_string_value(json_object_get(out, "proxy")));
	SW_CHECKF(strcmp(json_string_value(json_object_get(out, "direct")), "refused") == 0,
		  "the host loopback was reached directly");
	SW_CHECKF(strcmp(json_string_value(json_object_get(out, "listed")), "hello-egress") == 0,
		  "listed host: %s", json_string_value(json_object_get(out, "listed")));
	SW_CHECKF(strncmp(json_string_value(json_object_get(out, "unlisted")), "HTTP/1.1 403", 12) == 0,
		  "unlisted host: %s", json_string_value(json_object_get(out, "unlisted")));
	json_decref(out);
	SW_CHECKF(strcmp(up.first_line, "GET /x?y=1 HTTP/1.1") == 0, "upstream saw '%s'",
		  up.first_line);
	SW_CHECKF(up.accepted == 1, "listed upstream accepted %d", up.accepted);
	SW_CHECKF(other.accepted == 0, "unlisted upstream accepted %d", other.accepted);
	/* one event per decision */
	for (int i = 0; i < 100 && (egress_event(d_eg.step_id, up.port) == NULL ||
				    egress_event(d_eg.step_id, other.port) == NULL);
	     i++)
		collect(100);
	e = egress_event(d_eg.step_id, up.port);
	REQUIRE(e != NULL, "no sandbox.egress for the listed host");
	SW_CHECK(json_is_true(json_object_get(e->body, "allowed")));
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "reason")), "allowed") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "target_host")), "127.0.0.1") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "method")), "GET") == 0);
	e = egress_event(d_eg.step_id, other.port);
	REQUIRE(e != NULL, "no sandbox.egress for the unlisted host");
	SW_CHECK(json_is_false(json_object_get(e->body, "allowed")));
	SW_CHECKF(strcmp(json_string_value(json_object_get(e->body, "reason")), "not_listed") == 0,
		  "reason %s", json_string_value(json_object_get(e->body, "reason")));
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "method")), "CONNECT") == 0);
	SW_CHECK(count("sandbox.egress", d_eg.step_id) == 2);

	require_status(wait_finished(d_bad.step_id), "FAILED",
		       "bad_input: spec.egress_allow needs network egress_only");
	f = wait_finished(d_none.step_id);
	require_status(f, "SUCCEEDED", NULL);
	SW_CHECK(strcmp(json_string_value(json_object_get(f->output, "stdout")), "closed\n") == 0);
}

/* ---- escape attempts through sandboxd ---------------------------------------- */

/*
 * Each attempt runs as a sandboxed step of its own (policy none) and
 * prints what it managed; the step must show it refused, and sandboxd must
 * serve on: a normal step after all of them succeeds and /healthz is up.
 */
static const char escape_py[] =
    "import ctypes, errno, json, os, socket, sys\n"
    "what, arg = sys.argv[1], sys.argv[2]\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def tryopen(p):\n"
    "    try:\n"
    "        open(p).read(64); return 'read'\n"
    "    except OSError as e:\n"
    "        return errno.errorcode.get(e.errno, str(e.errno))\n"
    "r = {}\n"
    "if what == 'files':\n"
    "    r['shadow'] = tryopen('/etc/shadow')\n"
    "    r['statelog'] = tryopen(arg + '/sandboxd.log')\n"
    "    r['runner_fd'] = tryopen('/proc/1/fd/3')\n"
    "    r['runner_environ'] = tryopen('/proc/1/environ')\n"
    "    seen = []\n"
    "    for p in os.listdir('/proc'):\n"
    "        if p.isdigit() and int(p) != os.getpid():\n"
    "            try: seen.append(open('/proc/%s/cmdline' % p, 'rb').read().decode(errors='replace'))\n"
    "            except OSError: pass\n"
    "    r['host_procs'] = [c[:80] for c in seen if 'sagewai-sandboxd' in c or 'kafka.Kafka' in c\n"
    "                       or 'postgres' in c]\n"
    "    r['nprocs'] = len(seen)\n"
    "elif what == 'write':\n"
    "    for p in ['/etc/x', '/usr/x', '/x', '/.sagewai/x', '/workspace/ok', '/tmp/ok']:\n"
    "        try:\n"
    "            open(p, 'w').write('x'); r[p] = 'written'\n"
    "        except OSError as e:\n"
    "            r[p] = errno.errorcode.get(e.errno, str(e.errno))\n"
    "elif what == 'loopback':\n"
    "    try:\n"
    "        socket.create_connection(('127.0.0.1', int(arg)), 3); r['connect'] = 'connected'\n"
    "    except OSError as e:\n"
    "        r['connect'] = 'refused'\n"
    "elif what == 'syscalls':\n"
    "    def call(f, *a):\n"
    "        rc = f(*a); return 'ok' if rc == 0 else errno.errorcode.get(ctypes.get_errno(), '?')\n"
    "    r['ptrace'] = call(libc.ptrace, 0, 0, None, None)\n"
    "    r['mount'] = call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None)\n"
    "    r['unshare'] = call(libc.unshare, 0x10000000)\n"
    "    r['setns'] = call(libc.setns, os.open('/proc/self/ns/net', os.O_RDONLY), 0)\n"
    "print(json.dumps(r))\n";

static json_t *escape_out(const char *step_id)
{
	struct ev *f = wait_finished(step_id);
	json_t *o;

	require_status(f, "SUCCEEDED", NULL);
	o = json_loads(json_string_value(json_object_get(f->output, "stdout")), 0, NULL);
	REQUIRE(o != NULL, "%s: stdout is not JSON: %s", step_id,
		json_dumps(f->output, JSON_COMPACT));
	return o;
}

static const char *str(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v ? v : "(missing)";
}

static void scenario_escape(void)
{
	struct upstream host;
	struct dispatch d_files, d_write, d_loop, d_sys, d_fork, d_mem, d_after;
	json_t *o, *sp;
	struct ev *f;
	char port[16], *health;

	upstream_start(&host, 0);
	setup("escape");
	sbd_start();
	snprintf(port, sizeof(port), "%d", host.port);
#define PY(what, arg) spec(json_pack("[s, s, s, s, s]", "python3", "-c", escape_py, what, arg))
	dispatch(&d_files, "files", "files", "sandboxed", 60000, PY("files", tmp_dir));
	dispatch(&d_write, "write", "write", "sandboxed", 60000, PY("write", "-"));
	dispatch(&d_loop, "loopback", "loopback", "sandboxed", 60000, PY("loopback", port));
	dispatch(&d_sys, "syscalls", "syscalls", "sandboxed", 60000, PY("syscalls", "-"));
#undef PY
	/* a fork bomb, held by the process limit; then it says how far it got */
	sp = spec(json_pack("[s, s, s]", "python3", "-c",
			    "import os, time\n"
			    "n = 0\n"
			    "try:\n"
			    "    while n < 2000:\n"
			    "        if os.fork() == 0:\n"
			    "            os.close(1); os.close(2); time.sleep(20); os._exit(0)\n"
			    "        n += 1\n"
			    "except OSError:\n"
			    "    pass\n"
			    "print('started', n)\n"));
	json_object_set_new(sp, "limits", json_pack("{s:i}", "nproc", 40));
	dispatch(&d_fork, "forkbomb", "forkbomb", "sandboxed", 60000, sp);
	/* a memory bomb, killed or refused at the memory limit */
	sp = spec(json_pack("[s, s, s]", "python3", "-c",
			    "b = []\n"
			    "while True: b.append(bytearray(64 << 20))\n"));
	json_object_set_new(sp, "limits", json_pack("{s:I}", "memory_bytes",
						     (json_int_t)256 << 20));
	dispatch(&d_mem, "membomb", "membomb", "sandboxed", 60000, sp);

	o = escape_out(d_files.step_id);
	SW_CHECKF(strcmp(str(o, "shadow"), "read") != 0, "read /etc/shadow");
	SW_CHECKF(strcmp(str(o, "statelog"), "ENOENT") == 0, "sandboxd's state dir: %s",
		  str(o, "statelog"));
	SW_CHECKF(strcmp(str(o, "runner_fd"), "read") != 0, "reached the runner's control socket");
	SW_CHECKF(strcmp(str(o, "runner_environ"), "read") != 0, "read the runner's environ");
	SW_CHECKF(json_array_size(json_object_get(o, "host_procs")) == 0,
		  "host processes visible inside");
	SW_CHECKF(json_integer_value(json_object_get(o, "nprocs")) <= 3, "%lld other processes inside",
		  (long long)json_integer_value(json_object_get(o, "nprocs")));
	json_decref(o);

	o = escape_out(d_write.step_id);
	SW_CHECKF(strcmp(str(o, "/etc/x"), "written") != 0, "wrote /etc/x");
	SW_CHECKF(strcmp(str(o, "/usr/x"), "written") != 0, "wrote /usr/x");
	SW_CHECKF(strcmp(str(o, "/x"), "written") != 0, "wrote /x");
	SW_CHECKF(strcmp(str(o, "/.sagewai/x"), "written") != 0, "wrote /.sagewai/x");
	SW_CHECKF(strcmp(str(o, "/workspace/ok"), "written") == 0, "/workspace: %s",
		  str(o, "/workspace/ok"));
	SW_CHECKF(strcmp(str(o, "/tmp/ok"), "written") == 0, "/tmp: %s", str(o, "/tmp/ok"));
	json_decref(o);

	o = escape_out(d_loop.step_id);
	SW_CHECKF(strcmp(str(o, "connect"), "refused") == 0, "host loopback: %s",
		  str(o, "connect"));
	SW_CHECKF(host.accepted == 0, "the host listener accepted %d", host.accepted);
	json_decref(o);

	o = escape_out(d_sys.step_id);
	SW_CHECKF(strcmp(str(o, "ptrace"), "EPERM") == 0, "ptrace: %s", str(o, "ptrace"));
	SW_CHECKF(strcmp(str(o, "mount"), "EPERM") == 0, "mount: %s", str(o, "mount"));
	SW_CHECKF(strcmp(str(o, "unshare"), "EPERM") == 0, "unshare: %s", str(o, "unshare"));
	SW_CHECKF(strcmp(str(o, "setns"), "EPERM") == 0, "setns: %s", str(o, "setns"));
	json_decref(o);

	f = wait_finished(d_fork.step_id);
	require_status(f, "SUCCEEDED", NULL);
	{
		const char *so = json_string_value(json_object_get(f->output, "stdout"));
		int n = -1;

		REQUIRE(so != NULL && sscanf(so, "started %d", &n) == 1, "fork bomb said %s",
			so ? so : "(nothing)");
		SW_CHECKF(n > 0 && n <= 40, "%d processes under an nproc limit of 40", n);
	}
	f = wait_finished(d_mem.step_id);
	require_status(f, "FAILED", "exit_status");

	/* and sandboxd is unharmed */
	dispatch(&d_after, "after", "after", "sandboxed", 60000, spec(json_string("echo fine")));
	f = wait_finished(d_after.step_id);
	require_status(f, "SUCCEEDED", NULL);
	health = http_get("/healthz");
	SW_CHECK(health != NULL);
	free(health);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}


/* ---- a hostile tool runner ------------------------------------------------- */

/*
 * sandboxd with tests/sandbox/hostile_runner.py as every sandbox's runner,
 * which misbehaves after READY the way the first EXEC's argv[0] says: each
 * step ends (sandbox_error, or its timeout for a runner that goes quiet),
 * the sandbox is released, and sandboxd neither crashes nor blocks: the
 * steps finish in parallel and /healthz answers throughout.
 */
static void scenario_hostile(void)
{
	static const char *const modes[] = {"garbage", "twice_ready", "early_exit", "huge",
					    "unknown", "flags",	      "exec_frame", "bad_json",
					    "bigrecord", "midframe"};
	/* valid but endless output, or none: held to the step's timeout */
	static const char *const quiet[] = {"silent", "deaf", "flood"};
	struct dispatch d[16];
	size_t n = sizeof(modes) / sizeof(modes[0]), k;
	char *health;

	snprintf(sbd_runner, sizeof(sbd_runner), "%s/tests/sandbox/hostile_runner.py",
		 getenv("SW_SOURCE_DIR"));
	setup("hostile");
	sbd_start();
	for (k = 0; k < n; k++)
		dispatch(&d[k], modes[k], modes[k], "sandboxed", 60000,
			 spec(json_pack("[s]", modes[k])));
	for (k = 0; k < 3; k++)
		dispatch(&d[n + k], quiet[k], quiet[k], "sandboxed", 1500,
			 spec(json_pack("[s]", quiet[k])));
	for (k = 0; k < n; k++) {
		struct ev *f = wait_finished(d[k].step_id);

		require_status(f, "FAILED", "sandbox_error: ");
		health = http_get("/healthz");
		SW_CHECK(health != NULL);
		free(health);
	}
	for (k = 0; k < 3; k++) {
		struct ev *f = wait_finished(d[n + k].step_id);

		REQUIRE(strcmp(f->status, "TIMED_OUT") == 0 || strcmp(f->status, "FAILED") == 0,
			"%s: %s", quiet[k], f->status);
	}
	/* every sandbox went back and was destroyed */
	for (k = 0; k < n + 3; k++)
		wait_event("sandbox.released", d[k].step_id, 0, 60);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}

/* ---- kill -9 ------------------------------------------------------------- */

/* The service part: the child of sbd_pid that is sagewai-sandboxd too. */
static pid_t service_part(const pid_t *pids, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		char path[64], buf[256] = "", st[512];
		int fd, ppid = 0;
		ssize_t r;
		char *p;

		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pids[i]);
		if ((fd = open(path, O_RDONLY)) < 0)
			continue;
		r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pids[i]);
		if ((fd = open(path, O_RDONLY)) < 0)
			continue;
		r = read(fd, st, sizeof(st) - 1);
		close(fd);
		if (r <= 0)
			continue;
		st[r] = '\0';
		if ((p = strrchr(st, ')')) == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1)
			continue;
		if (ppid == sbd_pid && strstr(buf, "sagewai-sandboxd") != NULL)
			return pids[i];
	}
	return -1;
}

/*
 * kill -9 while a step runs, of the whole of sandboxd (its privileged
 * part, the process started) or of its service part only: either way no
 * process of any sandbox survives, and in the second case the privileged
 * part notices, destroys everything and exits.
 */
static void kill9(int service_only)
{
	struct dispatch d;
	pid_t pids[512], victim;
	size_t n, runners = 0, left;
	int64_t until;
	int st;

	setup(service_only ? "kill9service" : "kill9");
	sbd_start();
	dispatch(&d, "long", "sleep", "sandboxed", 120000, spec(json_string("sleep 100")));
	wait_event("sandbox.acquired", d.step_id, 0, 120);
	n = descendants(sbd_pid, pids, 512);
	REQUIRE(names_dir(tmp_dir) >= 2, "no sandbox names the state directory");
	for (size_t i = 1; i < n; i++)
		runners += is_runner(pids[i]);
	/* the step's sandbox, and the warm ones */
	REQUIRE(runners >= 2, "only %zu tool runners under sandboxd", runners);
	victim = service_part(pids, n);
	REQUIRE(victim > 0, "no service part under sandboxd %d", (int)sbd_pid);
	if (geteuid() == 0) {
		/* started as root, the service part is not */
		char path[64], line[256];
		FILE *f;
		int uid = -1;

		snprintf(path, sizeof(path), "/proc/%d/status", (int)victim);
		f = fopen(path, "r");
		while (f != NULL && fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "Uid: %d", &uid) == 1)
				break;
		if (f != NULL)
			fclose(f);
		REQUIRE(uid > 0, "the service part runs as uid %d", uid);
	}
	if (service_only) {
		kill(victim, SIGKILL);
		/* the privileged part ends by itself */
		SW_CHECK(waitpid(sbd_pid, &st, 0) == sbd_pid);
		SW_CHECKF(WIFEXITED(st) && WEXITSTATUS(st) != 0, "sandboxd ended with %d", st);
	} else {
		kill(sbd_pid, SIGKILL);
		SW_CHECK(waitpid(sbd_pid, NULL, 0) == sbd_pid);
	}
	sbd_pid = -1;
	/* --die-with-parent: the kernel kills them; wait until it has */
	until = sw_mono_ns() + 60 * 1000000000LL;
	do {
		left = 0;
		for (size_t i = 1; i < n; i++)
			left += alive(pids[i]);
		if (left > 0)
			usleep(50000);
	} while (left > 0 && sw_mono_ns() < until);
	SW_CHECKF(left == 0, "%zu sandboxd or sandbox processes outlived sandboxd", left);
	/* and nothing alive names our state directory (bwrap's command line
	 * binds from it) */
	SW_CHECKF(names_dir(tmp_dir) == 0, "a process still names %s", tmp_dir);
}

static void scenario_kill9(void)
{
	kill9(0);
}

static void scenario_kill9service(void)
{
	kill9(1);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} scenarios[] = {
	    {"basic", scenario_basic},
	    {"redelivery", scenario_redelivery},
	    {"deadletter", scenario_deadletter},
	    {"egress", scenario_egress},
	    {"escape", scenario_escape},
	    {"hostile", scenario_hostile},
	    {"kill9", scenario_kill9},
	    {"kill9service", scenario_kill9service},
	};

	SW_CHECKF(argc == 2, "usage: %s SCENARIO", argv[0]);
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (strcmp(argv[1], scenarios[i].name) == 0) {
			scenarios[i].fn();
			return 0;
		}
	}
	SW_CHECKF(0, "unknown scenario %s", argv[1]);
	return 1;
}
