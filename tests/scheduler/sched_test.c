/*
 * Black-box tests of sagewai-scheduler over the harness's real Kafka broker
 * and PostgreSQL. One program, one scenario per argument (see main).
 *
 * The test plays the executors: a "fake worker" consumes the dispatch
 * topics (sagewai.steps.worker, sagewai.steps.sandbox), and for each
 * step.dispatched of a run this test submitted it answers on sagewai.steps
 * with step.started and step.finished as the scenario's behaviour function
 * says (succeed with the rendered with.value, fail, never answer, answer
 * later...). It also records every event of those runs on sagewai.runs,
 * sagewai.steps and the dispatch topics, so a scenario can check what the
 * scheduler published, and where.
 *
 * Topics are shared with every other test, so only runs submitted here
 * are looked at; each scenario has its own database, consumer group and
 * scheduler process.
 */
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"
#include "scheduler.h"
#include "sw_test_svc.h"

/* ---- process and environment ------------------------------------------ */

static struct sw_event_registry *reg;
static char scenario[32];
static char data_dir[512];
static char db_dsn[600];
static char group[128];
static int http_port;
static pid_t sched_pid = -1;
static rd_kafka_t *producer, *consumer;
static const char *sched_extra[16]; /* NAME=VALUE for the next start */

static void sched_start(void)
{
	static const char *const argv[] = {"sagewai-scheduler", "serve", NULL};
	char path[600], log[600], dsn[700], gid[160], port[40];
	const char *env[32] = {"SAGEWAI_MODE",
			       "SAGEWAI_SEALED_PREVIEW",
			       "SAGEWAI_RUNNABLE_MODES",
			       "SAGEWAI_ADMIN_TOKEN",
			       dsn,
			       gid,
			       port,
			       "SAGEWAI_LOG_LEVEL=info",
			       SW_TEST_ENV_FAST_REBALANCE};
	int i, n = 9;

	snprintf(path, sizeof(path), "%s/services/scheduler/sagewai-scheduler",
		 getenv("SW_BUILD_DIR"));
	snprintf(log, sizeof(log), "%s/scheduler.log", data_dir);
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "scheduler");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(port, sizeof(port), "SAGEWAI_HTTP_PORT=%d", http_port);
	for (i = 0; sched_extra[i] != NULL; i++)
		env[n++] = sched_extra[i];
	env[n] = NULL;
	sched_pid = sw_test_proc_spawn(path, argv, env, log);
}

static void sched_stop(int sig)
{
	sw_test_proc_stop(&sched_pid, sig, "sagewai-scheduler");
}

static pid_t other_pid = -1; /* a second scheduler (twin) */

static long sql_long(const char *q)
{
	return sw_test_pg_long(db_dsn, q);
}

/* ---- HTTP --------------------------------------------------------------- */

static char last_body[4096]; /* the last answer's text, for messages */
static void pump(int ms);
static double metric(const char *name);
static double metric_reaches(const char *name, double want, int limit_s);

/* method path [body] [token]: returns the status, JSON answer in *out. */
static long http(const char *method, const char *path, const char *body, size_t len,
		 const char *token, json_t **out)
{
	struct sw_test_http_reply r;
	const char *h[4];
	char url[512], auth[300];
	int n = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", http_port, path);
	if (body != NULL)
		h[n++] = strncmp(path, "/v1/workflows", 13) == 0
			     ? "Content-Type: application/yaml"
			     : "Content-Type: application/json";
	if (token != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		h[n++] = auth;
	}
	h[n++] = "Expect:";
	h[n] = NULL;
	sw_test_http_request(method, url, body, len, h, 60, &r);
	if (r.rc != CURLE_OK && r.status == 0)
		fprintf(stderr, "%s %s: %s\n", method, path, curl_easy_strerror(r.rc));
	snprintf(last_body, sizeof(last_body), "%s", r.body ? r.body : "");
	if (out != NULL)
		*out = r.body ? json_loads(r.body, 0, NULL) : NULL;
	free(r.body);
	return r.status;
}

static long http_s(const char *method, const char *path, const char *body, const char *token,
		   json_t **out)
{
	return http(method, path, body, body ? strlen(body) : 0, token, out);
}

static const char *err_code(json_t *j)
{
	const char *s = json_string_value(json_object_get(json_object_get(j, "error"), "code"));

	return s ? s : "";
}

static const char *err_msg(json_t *j)
{
	const char *s = json_string_value(json_object_get(json_object_get(j, "error"), "message"));

	return s ? s : "";
}

/* Up, and consuming step outcomes: a step's outcome is then applied
 * promptly, which the scenarios with short timeouts need. */
static void wait_ready(void)
{
	int64_t until;

	sw_test_http_wait_healthy(http_port, sched_pid, "sagewai-scheduler");
	until = sw_mono_ns() + 120 * 1000000000LL;
	for (;;) {
		if (metric("sagewai_scheduler_partitions_assigned") > 0)
			return;
		SW_REQUIRE(sw_mono_ns() < until, "the scheduler's consumer has no partitions");
		SW_REQUIRE(sw_test_proc_running(sched_pid), "sagewai-scheduler exited");
		pump(200);
	}
}

static void register_wf(const char *yaml, const char *token)
{
	json_t *j;
	long st = http_s("POST", "/v1/workflows", yaml, token, &j);

	SW_REQUIRE(st == 201, "register: %ld %s", st, last_body);
	json_decref(j);
}

/* ---- the fake worker ---------------------------------------------------- */

#define MAX_RUNS 512
#define MAX_RECS 20000
#define MAX_DISPATCH 4096

struct dispatch {
	char event_id[40];
	char run_id[64];
	char tenant[128];
	char step[64];
	char step_id[160];
	int index, attempt;
	int64_t timeout_ms;
	json_t *spec;
	json_t *value; /* spec.with.value, borrowed from spec */
};

struct rec {
	char id[40];
	char type[64];
	char run_id[64];
	char step_id[160];
	json_t *ev;
};

static char runs[MAX_RUNS][64];
static size_t nruns;
static struct rec recs[MAX_RECS];
static size_t nrecs;
static struct dispatch dispatches[MAX_DISPATCH];
static size_t ndispatches;
static size_t answered; /* step.finished sent */

enum act { ACT_SUCCEED, ACT_FAIL, ACT_IGNORE, ACT_START_ONLY, ACT_REPEAT };
/* What to do with a dispatch; for ACT_FAIL, err says why. */
typedef enum act (*behave_fn)(const struct dispatch *d, char *err, size_t errlen);
static enum act behave_succeed(const struct dispatch *d, char *err, size_t errlen)
{
	(void)d;
	(void)err;
	(void)errlen;
	return ACT_SUCCEED;
}
static behave_fn behave = behave_succeed;

/* runs[] is shared with the identity responder's thread (identity). */
static pthread_mutex_t runs_mu = PTHREAD_MUTEX_INITIALIZER;

static void track(const char *run_id)
{
	pthread_mutex_lock(&runs_mu);
	SW_CHECK(nruns < MAX_RUNS);
	snprintf(runs[nruns++], sizeof(runs[0]), "%s", run_id);
	pthread_mutex_unlock(&runs_mu);
}

static int tracked(const char *run_id)
{
	size_t i;
	int found = 0;

	pthread_mutex_lock(&runs_mu);
	for (i = 0; i < nruns && !found; i++)
		found = strcmp(runs[i], run_id) == 0;
	pthread_mutex_unlock(&runs_mu);
	return found;
}

/* Send an event of d's step, copies times with the same bytes (event id). */
static void emit_copies(const char *type, const struct dispatch *d, int attempt, json_t *fields,
			int copies)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;

	sw_event_header_init(&h, type, "sched-test-worker");
	snprintf(h.tenant, sizeof(h.tenant), "%s", d->tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", d->run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%.40s/%.63s/%d", d->run_id, d->step, attempt);
	SW_CHECKF(sw_event_encode(reg, type, &h, fields, &buf, &len, err, sizeof(err)) == 0, "%s",
		  err);
	json_decref(fields);
	while (copies-- > 0)
		sw_test_kafka_send(producer, "sagewai.steps", d->run_id, buf, len);
	free(buf);
}

static void emit(const char *type, const struct dispatch *d, int attempt, json_t *fields)
{
	emit_copies(type, d, attempt, fields, 1);
}

static void send_started(const struct dispatch *d)
{
	emit("step.started", d, d->attempt,
	     json_pack("{s:s, s:i, s:s}", "step", d->step, "attempt", d->attempt, "executor",
		       "fake"));
}

/* step.finished for attempt of d's step: status, output (JSON, borrowed)
 * or error. */
static void send_finished(const struct dispatch *d, int attempt, const char *status,
			  json_t *output, const char *error)
{
	char *text = output ? json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

	emit("step.finished", d, attempt,
	     json_pack("{s:s, s:i, s:s, s:o, s:o, s:I}", "step", d->step, "attempt", attempt,
		       "status", status, "output", text ? json_string(text) : json_null(), "error",
		       error ? json_string(error) : json_null(), "duration_us", (json_int_t)1000));
	free(text);
	answered++;
}

static void on_dispatch(struct rec *r)
{
	struct dispatch *d;
	char err[256] = "";
	size_t i;

	for (i = 0; i < ndispatches; i++)
		if (strcmp(dispatches[i].event_id, r->id) == 0)
			return; /* a redelivered dispatch: answered already */
	SW_CHECK(ndispatches < MAX_DISPATCH);
	d = &dispatches[ndispatches++];
	memset(d, 0, sizeof(*d));
	snprintf(d->event_id, sizeof(d->event_id), "%s", r->id);
	snprintf(d->run_id, sizeof(d->run_id), "%s", r->run_id);
	snprintf(d->step_id, sizeof(d->step_id), "%s", r->step_id);
	snprintf(d->tenant, sizeof(d->tenant), "%s",
		 json_string_value(json_object_get(json_object_get(r->ev, "header"), "tenant")));
	snprintf(d->step, sizeof(d->step), "%s",
		 json_string_value(json_object_get(r->ev, "step")));
	d->index = (int)json_integer_value(json_object_get(r->ev, "index"));
	d->attempt = (int)json_integer_value(json_object_get(r->ev, "attempt"));
	d->timeout_ms = json_integer_value(json_object_get(r->ev, "timeout_ms"));
	d->spec = json_loads(json_string_value(json_object_get(r->ev, "spec")), 0, NULL);
	SW_CHECKF(d->spec != NULL, "dispatch spec is not JSON");
	d->value = json_object_get(json_object_get(d->spec, "with"), "value");
	switch (behave(d, err, sizeof(err))) {
	case ACT_SUCCEED:
		send_started(d);
		send_finished(d, d->attempt, "SUCCEEDED", d->value ? d->value : json_null(), NULL);
		break;
	case ACT_FAIL:
		send_started(d);
		send_finished(d, d->attempt, "FAILED", NULL, err);
		break;
	case ACT_START_ONLY:
		send_started(d);
		break;
	case ACT_REPEAT: {
		/* as a redelivery and a racing copy would: the start and the
		 * outcome twice each with one event id, then another outcome of
		 * the same attempt under a new id, with another output */
		char *text =
		    json_dumps(d->value ? d->value : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
		json_t *late = json_string("a late copy");

		SW_CHECK(text != NULL && late != NULL);
		emit_copies("step.started", d, d->attempt,
			    json_pack("{s:s, s:i, s:s}", "step", d->step, "attempt", d->attempt,
				      "executor", "fake"),
			    2);
		emit_copies("step.finished", d, d->attempt,
			    json_pack("{s:s, s:i, s:s, s:s, s:n, s:I}", "step", d->step, "attempt",
				      d->attempt, "status", "SUCCEEDED", "output", text, "error",
				      "duration_us", (json_int_t)1000),
			    2);
		send_finished(d, d->attempt, "SUCCEEDED", late, NULL);
		json_decref(late);
		free(text);
		break;
	}
	case ACT_IGNORE:
		break;
	}
}

/* Poll the test consumer for up to ms; record events of our runs, answer
 * dispatches. */
static void pump(int ms)
{
	int64_t until = sw_mono_ns() + (int64_t)ms * 1000000;

	do {
		rd_kafka_message_t *m;
		struct sw_event_header h;
		char err[256];
		struct rec *r;

		if ((m = rd_kafka_consumer_poll(consumer, 50)) == NULL)
			continue;
		if (m->err != 0 || m->len == 0 ||
		    sw_event_decode_header(reg, m->payload, m->len, &h, err, sizeof(err)) != 0 ||
		    !tracked(h.run_id)) {
			rd_kafka_message_destroy(m);
			continue;
		}
		SW_CHECK(nrecs < MAX_RECS);
		r = &recs[nrecs++];
		snprintf(r->id, sizeof(r->id), "%s", h.event_id);
		snprintf(r->type, sizeof(r->type), "%s", h.type);
		snprintf(r->run_id, sizeof(r->run_id), "%s", h.run_id);
		snprintf(r->step_id, sizeof(r->step_id), "%s", h.step_id);
		r->ev = sw_event_decode(reg, m->payload, m->len, err, sizeof(err));
		SW_CHECKF(r->ev != NULL, "decode: %s", err);
		if (strcmp(r->type, "step.dispatched") == 0) {
			/* on the topic of its executor, and only there */
			const char *mode = json_string_value(json_object_get(r->ev, "mode"));
			const char *want = mode != NULL && strcmp(mode, "in_process") == 0
					       ? "sagewai.steps.worker"
					       : "sagewai.steps.sandbox";

			SW_REQUIRE(strcmp(rd_kafka_topic_name(m->rkt), want) == 0,
				   "step.dispatched %s (mode %s) on %s, not %s", r->step_id,
				   mode ? mode : "?", rd_kafka_topic_name(m->rkt), want);
		}
		rd_kafka_message_destroy(m);
		if (strcmp(r->type, "step.dispatched") == 0)
			on_dispatch(r);
	} while (sw_mono_ns() < until);
	rd_kafka_poll(producer, 0);
}

static json_t *run_get(const char *id, const char *token)
{
	char path[128];
	json_t *j;
	long st;

	snprintf(path, sizeof(path), "/v1/runs/%s", id);
	st = http_s("GET", path, NULL, token, &j);
	SW_REQUIRE(st == 200 && j != NULL, "GET %s: %ld %s", path, st, last_body);
	return j;
}

static const char *jstate(json_t *j)
{
	const char *s = json_string_value(json_object_get(j, "state"));

	return s ? s : "";
}

static int terminal(const char *s)
{
	return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

/* Pump until the run is terminal (or fail after limit_s); its JSON. */
static json_t *wait_run(const char *id, const char *token, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;

	for (;;) {
		json_t *j;

		pump(100);
		j = run_get(id, token);
		if (terminal(jstate(j)))
			return j;
		SW_REQUIRE(sw_mono_ns() < until, "run %s still %s after %d s", id, jstate(j),
			   limit_s);
		SW_REQUIRE(sched_pid < 0 || sw_test_proc_running(sched_pid),
			   "sagewai-scheduler exited");
		json_decref(j);
	}
}

static char *submit(const char *workflow, const char *input_json, const char *token)
{
	char body[4096];
	json_t *j;
	long st;
	char *id;

	snprintf(body, sizeof(body), "{\"workflow\": \"%s\", \"input\": %s}", workflow,
		 input_json);
	st = http_s("POST", "/v1/runs", body, token, &j);
	SW_REQUIRE(st == 201, "submit %s: %ld %s", workflow, st, last_body);
	id = strdup(json_string_value(json_object_get(j, "run_id")));
	json_decref(j);
	track(id);
	return id;
}

/* Events of run of type; with step_attempt > 0 only those of that step
 * and attempt (step name in step). Counts distinct ids in *distinct. */
static size_t events_of(const char *run, const char *type, const char *step, int attempt,
			size_t *distinct)
{
	size_t i, j, n = 0, d = 0;

	for (i = 0; i < nrecs; i++) {
		char want[200];

		if (strcmp(recs[i].run_id, run) != 0 || strcmp(recs[i].type, type) != 0)
			continue;
		if (step != NULL) {
			snprintf(want, sizeof(want), "%s/%s/%d", run, step, attempt);
			if (strcmp(recs[i].step_id, want) != 0)
				continue;
		}
		n++;
		for (j = 0; j < i; j++)
			if (strcmp(recs[j].id, recs[i].id) == 0)
				break;
		if (j == i)
			d++;
	}
	if (distinct != NULL)
		*distinct = d;
	return n;
}

static struct rec *event_find(const char *run, const char *type)
{
	size_t i;

	for (i = 0; i < nrecs; i++)
		if (!strcmp(recs[i].run_id, run) && !strcmp(recs[i].type, type))
			return &recs[i];
	return NULL;
}

/* Pump until run has count events of type (distinct ids) or limit. */
static void wait_events(const char *run, const char *type, size_t count, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;
	size_t d = 0;

	for (;;) {
		events_of(run, type, NULL, 0, &d);
		if (d >= count)
			return;
		SW_REQUIRE(sw_mono_ns() < until, "run %s: %zu of %zu %s events after %d s", run, d,
			   count, type, limit_s);
		pump(100);
	}
}

/* Where the first event of type of run is among the records (its topic's
 * partition keeps a run's events in the order they were produced), or
 * nrecs. */
static size_t first_of(const char *run, const char *type)
{
	size_t i;

	for (i = 0; i < nrecs; i++)
		if (strcmp(recs[i].run_id, run) == 0 && strcmp(recs[i].type, type) == 0)
			break;
	return i;
}

/* Exactly-once: no event id twice in Kafka (exact) or, after a crash,
 * each logical event with one id (duplicates of that id allowed). Without
 * a crash (exact), a run's events on sagewai.runs are in the order of the
 * commits that made them, also when the scheduler holds them back
 * (SAGEWAI_RUNS_HOLD_MS). */
static void check_unique(const char *run, int exact, const char *const *steps, int nsteps)
{
	static const char *const once[] = {"run.submitted", "run.started", "run.finished"};
	size_t i, n, d;

	for (i = 0; i < 3; i++) {
		n = events_of(run, once[i], NULL, 0, &d);
		SW_REQUIRE(d == 1, "run %s: %zu distinct %s events", run, d, once[i]);
		if (exact)
			SW_REQUIRE(n == 1, "run %s: %s delivered %zu times", run, once[i], n);
	}
	if (exact)
		SW_REQUIRE(first_of(run, "run.submitted") < first_of(run, "run.started") &&
			       first_of(run, "run.started") < first_of(run, "run.finished"),
			   "run %s: its run events out of order on sagewai.runs", run);
	for (i = 0; i < (size_t)nsteps; i++) {
		n = events_of(run, "step.dispatched", steps[i], 1, &d);
		SW_REQUIRE(d == 1, "run %s step %s: %zu distinct dispatches", run, steps[i], d);
		if (exact)
			SW_REQUIRE(n == 1, "run %s step %s: dispatch delivered %zu times", run,
				   steps[i], n);
	}
}

/* ---- setup -------------------------------------------------------------- */

static void setup(void)
{
	const char *build = getenv("SW_BUILD_DIR");
	char gid[160], err[512], cmd[700];
	rd_kafka_topic_partition_list_t *tl;

	sw_test_env_load();
	sw_test_proc_watch(&sched_pid);
	sw_test_proc_watch(&other_pid);
	SW_CHECK(sodium_init() >= 0);
	SW_CHECK(build != NULL);
	snprintf(group, sizeof(group), "sched-test-%s-%d", scenario, (int)getpid());
	snprintf(data_dir, sizeof(data_dir), "%s/tests-tmp/sched-%s-%d", build, scenario,
		 (int)getpid());
	snprintf(cmd, sizeof(cmd), "mkdir -p %s", data_dir);
	SW_CHECK(system(cmd) == 0);
	snprintf(cmd, sizeof(cmd), "%s/scheduler.log", data_dir);
	sw_test_log_watch(cmd, 40);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "sched", scenario);
	http_port = sw_test_port_free();
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);

	/* from the start: earlier tests' events are skipped, none of ours missed */
	snprintf(gid, sizeof(gid), "%s-observer", group);
	consumer = sw_test_kafka_new(RD_KAFKA_CONSUMER, gid, NULL);
	rd_kafka_poll_set_consumer(consumer);
	tl = rd_kafka_topic_partition_list_new(4);
	rd_kafka_topic_partition_list_add(tl, "sagewai.runs", RD_KAFKA_PARTITION_UA);
	rd_kafka_topic_partition_list_add(tl, "sagewai.steps", RD_KAFKA_PARTITION_UA);
	rd_kafka_topic_partition_list_add(tl, "sagewai.steps.worker", RD_KAFKA_PARTITION_UA);
	rd_kafka_topic_partition_list_add(tl, "sagewai.steps.sandbox", RD_KAFKA_PARTITION_UA);
	SW_CHECK(rd_kafka_subscribe(consumer, tl) == 0);
	rd_kafka_topic_partition_list_destroy(tl);
	pump(200);
}

/* ---- scenarios ---------------------------------------------------------- */

static const char *const chain_yaml =
	"name: chain\n"
	"version: 1\n"
	"steps:\n"
	"  - name: first\n"
	"    uses: template\n"
	"    with:\n"
	"      value: \"${{ input.word }}\"\n"
	"  - name: second\n"
	"    uses: template\n"
	"    with:\n"
	"      value:\n"
	"        upper: \"${{ steps.first.output }}-2\"\n"
	"        n: \"${{ input.n }}\"\n"
	"  - name: third\n"
	"    uses: template\n"
	"    with:\n"
	"      value: \"got ${{ steps.second.output.upper }} and ${{ steps.second.output.n }}\"\n";
static const char *const chain_steps[] = {"first", "second", "third"};

static json_t *step_of(json_t *run, size_t i)
{
	return json_array_get(json_object_get(run, "steps"), i);
}

static void check_chain_run(json_t *run, const char *word, int n)
{
	char want[128];
	json_t *second;

	SW_REQUIRE(!strcmp(jstate(run), "succeeded"), "run state %s", jstate(run));
	snprintf(want, sizeof(want), "got %s-2 and %d", word, n);
	SW_REQUIRE(json_is_string(json_object_get(run, "output")) &&
		       !strcmp(json_string_value(json_object_get(run, "output")), want),
		   "run output is not \"%s\"", want);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(step_of(run, 0), "output")), word),
		   "first output");
	second = json_object_get(step_of(run, 1), "output");
	snprintf(want, sizeof(want), "%s-2", word);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(second, "upper")), want),
		   "second.upper");
	SW_REQUIRE(json_integer_value(json_object_get(second, "n")) == n,
		   "second.n is not the number %d", n);
}

/* Submit chain run i: word "<tag><i>", number i. */
static char *submit_chain(char tag, int i)
{
	char input[64];

	snprintf(input, sizeof(input), "{\"word\": \"%c%d\", \"n\": %d}", tag, i, i);
	return submit("chain", input, NULL);
}

/* A scheduler up with the chain workflow, and n chain runs of it submitted. */
static void start_chains(char **ids, int n, char tag)
{
	int i;

	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	for (i = 0; i < n; i++)
		ids[i] = submit_chain(tag, i);
}

/*
 * The n runs of submit_chain(tag, i) succeeded with their outputs and
 * their run.finished is in; settle_ms later, each logical event has one id
 * (and with exact, was delivered once). Frees the ids.
 */
static void check_chains(char **ids, int n, char tag, int settle_ms, int exact)
{
	char word[16];
	int i;

	for (i = 0; i < n; i++) {
		json_t *run = run_get(ids[i], NULL);

		snprintf(word, sizeof(word), "%c%d", tag, i);
		check_chain_run(run, word, i);
		json_decref(run);
		wait_events(ids[i], "run.finished", 1, 60);
	}
	pump(settle_ms);
	for (i = 0; i < n; i++) {
		check_unique(ids[i], exact, chain_steps, 3);
		free(ids[i]);
	}
}

static void scenario_three_step(void)
{
	json_t *run, *spec, *hdr;
	struct rec *r;
	char *id;
	size_t i;

	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	id = submit("chain", "{\"word\": \"hello\", \"n\": 7}", NULL);
	run = wait_run(id, NULL, 60);
	check_chain_run(run, "hello", 7);
	SW_REQUIRE(json_integer_value(json_object_get(run, "version")) == 1, "version");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(run, "workflow")), "chain"),
		   "workflow");
	SW_REQUIRE(json_is_string(json_object_get(run, "created")) &&
		       json_is_string(json_object_get(run, "finished")),
		   "times");
	for (i = 0; i < 3; i++) {
		json_t *st = step_of(run, i);

		SW_REQUIRE(!strcmp(jstate(st), "succeeded"), "step %zu state %s", i, jstate(st));
		SW_REQUIRE(json_integer_value(json_object_get(st, "attempts")) == 1, "attempts");
		SW_REQUIRE(!strcmp(json_string_value(json_object_get(st, "mode")), "in_process"),
			   "mode");
		SW_REQUIRE(json_integer_value(json_object_get(st, "index")) == (json_int_t)i,
			   "index");
	}
	/* the events: each once, right fields */
	wait_events(id, "run.finished", 1, 30);
	pump(1500); /* anything duplicated would show up now */
	check_unique(id, 1, chain_steps, 3);
	r = event_find(id, "run.finished");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(r->ev, "status")), "SUCCEEDED"),
		   "run.finished status");
	SW_REQUIRE(
	    !strcmp(json_string_value(json_object_get(r->ev, "output")), "\"got hello-2 and 7\""),
	    "run.finished output %s", json_string_value(json_object_get(r->ev, "output")));
	/* its modes, as in run.submitted: the policy service records only the
	 * ends of runs with a cli_agent_jit step */
	SW_REQUIRE(
	    json_array_size(json_object_get(r->ev, "modes")) == 1 &&
		!strcmp(json_string_value(json_array_get(json_object_get(r->ev, "modes"), 0)),
			"in_process"),
	    "run.finished modes");
	r = event_find(id, "run.submitted");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(r->ev, "workflow")), "chain"),
		   "run.submitted workflow");
	hdr = json_object_get(r->ev, "header");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(hdr, "tenant")), "default"),
		   "tenant in header");
	SW_REQUIRE(
	    !strcmp(json_string_value(json_object_get(hdr, "producer")), "sagewai-scheduler"),
	    "producer");
	for (i = 0; i < ndispatches; i++) {
		struct dispatch *d = &dispatches[i];
		char want[200];

		if (strcmp(d->run_id, id) != 0)
			continue;
		snprintf(want, sizeof(want), "%s/%s/%d", id, d->step, d->attempt);
		SW_REQUIRE(!strcmp(d->step_id, want), "step_id %s", d->step_id);
		spec = d->spec;
		SW_REQUIRE(!strcmp(json_string_value(json_object_get(spec, "workflow")), "chain"),
			   "spec.workflow");
		SW_REQUIRE(json_integer_value(json_object_get(spec, "workflow_version")) == 1,
			   "spec.workflow_version");
		SW_REQUIRE(!strcmp(json_string_value(json_object_get(spec, "uses")), "template"),
			   "spec.uses");
		SW_REQUIRE(json_array_size(json_object_get(spec, "run_modes")) == 1 &&
			       !strcmp(json_string_value(
					   json_array_get(json_object_get(spec, "run_modes"), 0)),
				       "in_process"),
			   "spec.run_modes");
		SW_REQUIRE(json_integer_value(json_object_get(spec, "output_max")) > 0,
			   "spec.output_max");
		SW_REQUIRE(d->timeout_ms == 60000, "default timeout %lld",
			   (long long)d->timeout_ms);
		{
			char *text = json_dumps(spec, 0);

			SW_REQUIRE(strstr(text, "${{") == NULL, "unrendered template");
			free(text);
		}
	}
	{
		/* the run list and metrics */
		json_t *list;

		SW_REQUIRE(http_s("GET", "/v1/runs", NULL, NULL, &list) == 200, "GET /v1/runs");
		SW_REQUIRE(json_array_size(json_object_get(list, "runs")) == 1, "one run listed");
		SW_REQUIRE(json_object_get(json_array_get(json_object_get(list, "runs"), 0),
					   "steps") == NULL,
			   "the list has no steps");
		json_decref(list);
		SW_REQUIRE(http_s("GET", "/v1/workflows", NULL, NULL, &list) == 200,
			   "GET workflows");
		SW_REQUIRE(json_integer_value(json_object_get(
			       json_array_get(json_object_get(list, "workflows"), 0), "steps")) ==
			       3,
			   "workflow list steps");
		json_decref(list);
		SW_REQUIRE(metric("sagewai_scheduler_runs_succeeded_total") == 1,
			   "metrics: runs succeeded %g",
			   metric("sagewai_scheduler_runs_succeeded_total"));
	}
	/* a second run and a clean stop */
	free(id);
	id = submit("chain", "{\"word\": \"again\", \"n\": -3}", NULL);
	json_decref(run);
	run = wait_run(id, NULL, 60);
	check_chain_run(run, "again", -3);
	json_decref(run);
	sched_stop(SIGTERM);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.outbox") == 0, "outbox not drained");
	free(id);
}

static const char *const flaky_yaml = "name: flaky\n"
				      "steps:\n"
				      "  - name: only\n"
				      "    uses: template\n"
				      "    retries: 2\n"
				      "    backoff: 100ms\n"
				      "    with:\n"
				      "      value: \"${{ input.tag }}\"\n";

static enum act behave_flaky(const struct dispatch *d, char *err, size_t errlen)
{
	const char *tag = json_string_value(d->value);

	snprintf(err, errlen, "plugin_error: boom %d", d->attempt);
	if (!strcmp(tag, "always"))
		return ACT_FAIL;
	if (!strcmp(tag, "twice"))
		return d->attempt <= 2 ? ACT_FAIL : ACT_SUCCEED;
	return ACT_SUCCEED;
}

static void scenario_retry(void)
{
	static const char *const only[] = {"only"};
	json_t *run, *st;
	size_t d;
	char *a, *b;
	int i;

	behave = behave_flaky;
	sched_start();
	wait_ready();
	register_wf(flaky_yaml, NULL);
	a = submit("flaky", "{\"tag\": \"always\"}", NULL);
	b = submit("flaky", "{\"tag\": \"twice\"}", NULL);

	run = wait_run(a, NULL, 60);
	SW_REQUIRE(!strcmp(jstate(run), "failed"), "always: %s", jstate(run));
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(run, "error")),
			   "step only: plugin_error: boom 3"),
		   "always: error %s", json_string_value(json_object_get(run, "error")));
	st = step_of(run, 0);
	SW_REQUIRE(!strcmp(jstate(st), "failed"), "always: step %s", jstate(st));
	SW_REQUIRE(json_integer_value(json_object_get(st, "attempts")) == 3, "always: attempts");
	SW_REQUIRE(json_is_null(json_object_get(run, "output")), "always: output");
	json_decref(run);

	run = wait_run(b, NULL, 60);
	SW_REQUIRE(!strcmp(jstate(run), "succeeded"), "twice: %s", jstate(run));
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(run, "output")), "twice"),
		   "twice: output");
	st = step_of(run, 0);
	SW_REQUIRE(json_integer_value(json_object_get(st, "attempts")) == 3, "twice: attempts");
	SW_REQUIRE(json_is_null(json_object_get(st, "error")), "twice: error left");
	json_decref(run);

	wait_events(a, "run.finished", 1, 30);
	wait_events(b, "run.finished", 1, 30);
	pump(1500);
	check_unique(a, 1, only, 1);
	check_unique(b, 1, only, 1);
	for (i = 1; i <= 3; i++) {
		SW_REQUIRE(events_of(a, "step.dispatched", "only", i, &d) == 1 && d == 1,
			   "always: attempt %d dispatched %zu times", i, d);
		SW_REQUIRE(events_of(b, "step.dispatched", "only", i, &d) == 1 && d == 1,
			   "twice: attempt %d dispatched %zu times", i, d);
	}
	SW_REQUIRE(events_of(a, "step.dispatched", "only", 4, &d) == 0, "always: a 4th attempt");
	SW_REQUIRE(!strcmp(json_string_value(
			       json_object_get(event_find(a, "run.finished")->ev, "status")),
			   "FAILED"),
		   "always: run.finished status");
	sched_stop(SIGTERM);
	free(a);
	free(b);
}

/* The snapshot in memory (snapc.c) is guarded: the fake worker holds step
 * second's outcome while the test moves the run behind the scheduler's
 * back, as another instance would -- attempt 2 of second dispatched, the
 * run's rev bumped. The outcome of attempt 1 then decided on the snapshot
 * in memory would move the run on; the rev guard must make the scheduler
 * read the run, find attempt 2 and leave the run where it is. Attempt 2's
 * outcome then finishes it. */
static enum act behave_hold_second(const struct dispatch *d, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return strcmp(d->step, "second") == 0 ? ACT_IGNORE : ACT_SUCCEED;
}

/* Submit a chain run (word, n) and wait for its step second to be
 * dispatched (and held); that dispatch. */
static struct dispatch *held_second(const char *word, int n, char **id)
{
	struct dispatch *second = NULL;
	char input[128];
	size_t i;

	snprintf(input, sizeof(input), "{\"word\": \"%s\", \"n\": %d}", word, n);
	*id = submit("chain", input, NULL);
	wait_events(*id, "step.dispatched", 2, 30);
	pump(300);
	for (i = 0; i < ndispatches; i++)
		if (strcmp(dispatches[i].run_id, *id) == 0 &&
		    !strcmp(dispatches[i].step, "second"))
			second = &dispatches[i];
	SW_REQUIRE(second != NULL, "step second not dispatched");
	return second;
}

/* What another instance would do: attempt 2 of step second dispatched,
 * the run's rev bumped (in the database only). */
static void move_behind(const char *id)
{
	char q[512];

	snprintf(q, sizeof(q),
		 "WITH s AS (UPDATE scheduler.steps SET attempt = 2 WHERE run_id = '%s' AND"
		 " idx = 1 RETURNING 1), r AS (UPDATE scheduler.runs SET rev = rev + 1"
		 " WHERE id = '%s' RETURNING 1) SELECT (SELECT count(*) FROM s) +"
		 " (SELECT count(*) FROM r)",
		 id, id);
	SW_REQUIRE(sql_long(q) == 2, "the run was not moved behind the scheduler's back");
}

static void scenario_snapshot(void)
{
	struct dispatch *second;
	json_t *run;
	double hits, conflicts;
	char *id;

	behave = behave_hold_second;
	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	second = held_second("held", 1, &id);
	hits = metric("sagewai_scheduler_snapshot_hits_total");
	SW_REQUIRE(hits >= 1, "the first step's outcome was not decided in memory");
	conflicts = metric("sagewai_scheduler_conflicts_total");

	move_behind(id);
	send_started(second);
	send_finished(second, 1, "SUCCEEDED", second->value, NULL);
	SW_REQUIRE(metric_reaches("sagewai_scheduler_conflicts_total", conflicts + 1, 30) >=
		       conflicts + 1,
		   "the stale snapshot's commit did not trip the rev guard");
	pump(1000);
	/* one conflict, then the read: not the stale snapshot again */
	SW_REQUIRE(metric("sagewai_scheduler_conflicts_total") == conflicts + 1,
		   "%g conflicts for one stale snapshot",
		   metric("sagewai_scheduler_conflicts_total") - conflicts);
	run = run_get(id, NULL);
	SW_REQUIRE(!strcmp(jstate(run), "running"), "attempt 1's outcome moved the run: %s",
		   jstate(run));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 1)), "dispatched") &&
		       json_integer_value(json_object_get(step_of(run, 1), "attempts")) == 2,
		   "step second: %s, attempts %lld", jstate(step_of(run, 1)),
		   (long long)json_integer_value(json_object_get(step_of(run, 1), "attempts")));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 2)), "pending"), "step third: %s",
		   jstate(step_of(run, 2)));
	json_decref(run);

	/* the attempt the database holds finishes the run */
	send_started(second);
	send_finished(second, 2, "SUCCEEDED", second->value, NULL);
	run = wait_run(id, NULL, 60);
	check_chain_run(run, "held", 1);
	json_decref(run);
	free(id);

	/* the other way round: the snapshot in memory is behind, and the
	 * outcome is of the attempt the database holds. On the snapshot it is
	 * an outcome of an attempt never dispatched, nothing to do -- a
	 * decision no rev guards, so it must be taken again on the run as
	 * read, which moves the run on. (Lost, the run would wait for its
	 * deadline, retry and fail, as another instance's runs did under a
	 * broker kill in tests/scale before this.) */
	second = held_second("ahead", 2, &id);
	move_behind(id);
	send_finished(second, 2, "SUCCEEDED", second->value, NULL);
	run = wait_run(id, NULL, 30);
	check_chain_run(run, "ahead", 2);
	json_decref(run);
	SW_REQUIRE(metric("sagewai_scheduler_snapshot_rereads_total") >= 1,
		   "the snapshot's 'nothing to do' was not read again");
	sched_stop(SIGTERM);
	free(id);
}

/* retries x backoff that would keep the run open for days */
static const char *const stubborn_yaml = "name: stubborn\n"
					 "steps:\n"
					 "  - name: only\n"
					 "    uses: template\n"
					 "    retries: 20\n"
					 "    backoff: 1s\n"
					 "    with:\n"
					 "      value: \"${{ input.tag }}\"\n"
					 "  - name: after\n"
					 "    uses: template\n"
					 "    with: {value: 1}\n";

/* SAGEWAI_RUN_MAX bounds a run's life: a step that always fails, with 20
 * retries and a doubling backoff, fails the run with run_timeout once its
 * time is up; the step waiting to retry is cancelled, the next skipped,
 * and executors are told with run.cancel_requested. */
static void scenario_run_max(void)
{
	json_t *run;
	const char *err;
	char *a;

	behave = behave_flaky;
	sched_extra[0] = "SAGEWAI_RUN_MAX=3";
	sched_start();
	wait_ready();
	register_wf(stubborn_yaml, NULL);
	a = submit("stubborn", "{\"tag\": \"always\"}", NULL);
	run = wait_run(a, NULL, 60);
	SW_REQUIRE(!strcmp(jstate(run), "failed"), "stubborn: %s", jstate(run));
	err = json_string_value(json_object_get(run, "error"));
	SW_REQUIRE(err != NULL && strncmp(err, "run_timeout: ", 13) == 0, "error %s", err);
	SW_REQUIRE(!strcmp(jstate(step_of(run, 0)), "cancelled"), "step 0: %s",
		   jstate(step_of(run, 0)));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 1)), "skipped"), "step 1: %s",
		   jstate(step_of(run, 1)));
	json_decref(run);
	wait_events(a, "run.finished", 1, 30);
	wait_events(a, "run.cancel_requested", 1, 30);
	SW_REQUIRE(http_s("GET", "/healthz", NULL, NULL, NULL) == 200, "healthz");
	/* the scan reads the oldest running runs on their own index (migration
	 * 6), not every running run sorted (seq scans off: the table is tiny) */
	SW_REQUIRE(
	    sql_long("SET enable_seqscan = off;"
		     "CREATE FUNCTION pg_temp.plan(q text) RETURNS text LANGUAGE plpgsql AS $$"
		     " DECLARE r text; o text := '';"
		     " BEGIN FOR r IN EXECUTE 'EXPLAIN ' || q LOOP o := o || r || ' ';"
		     " END LOOP; RETURN o; END $$;"
		     "SELECT position('runs_running_created' IN pg_temp.plan("
		     "$q$SELECT id FROM scheduler.runs WHERE state = 'running'"
		     " AND created <= now() - interval '3 seconds'"
		     " ORDER BY created LIMIT 200$q$))") > 0,
	    "the scan of old running runs does not use runs_running_created");
	sched_stop(SIGTERM);
	sched_extra[0] = NULL;
	free(a);
}

static const char *const hold_yaml = "name: hold\n"
				     "steps:\n"
				     "  - name: wait\n"
				     "    uses: template\n"
				     "    timeout: 10m\n"
				     "    with:\n"
				     "      value: \"${{ input.tag }}\"\n"
				     "  - name: after\n"
				     "    uses: template\n"
				     "    with:\n"
				     "      value: 1\n";

static enum act behave_hold(const struct dispatch *d, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return d->index == 0 ? ACT_START_ONLY : ACT_SUCCEED;
}

/* Pump until step idx of run id is in state. */
static void wait_step_state(const char *id, size_t idx, const char *state)
{
	int64_t until = sw_mono_ns() + 60 * 1000000000LL;
	json_t *run;

	for (;;) {
		pump(100);
		run = run_get(id, NULL);
		if (!strcmp(jstate(step_of(run, idx)), state))
			break;
		SW_REQUIRE(sw_mono_ns() < until, "step %zu never %s: %s", idx, state,
			   jstate(step_of(run, idx)));
		json_decref(run);
	}
	json_decref(run);
}

static void scenario_cancel(void)
{
	json_t *run, *j, *late = json_string("late");
	char path[128];
	struct rec *r;
	char *id;
	size_t d;

	behave = behave_hold;
	sched_start();
	wait_ready();
	register_wf(hold_yaml, NULL);
	id = submit("hold", "{\"tag\": \"x\"}", NULL);
	/* running once the fake worker's step.started is in */
	wait_step_state(id, 0, "running");
	run = run_get(id, NULL);
	SW_REQUIRE(!strcmp(jstate(run), "running"), "run %s", jstate(run));
	json_decref(run);
	snprintf(path, sizeof(path), "/v1/runs/%s/cancel", id);
	SW_REQUIRE(http_s("POST", path, "", NULL, &j) == 202, "cancel: %s", last_body);
	SW_REQUIRE(!strcmp(jstate(j), "cancelled"), "cancel answer");
	json_decref(j);
	run = run_get(id, NULL);
	SW_REQUIRE(!strcmp(jstate(run), "cancelled"), "after cancel: %s", jstate(run));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 0)), "cancelled"), "step 0: %s",
		   jstate(step_of(run, 0)));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 1)), "skipped"), "step 1: %s",
		   jstate(step_of(run, 1)));
	json_decref(run);
	SW_REQUIRE(http_s("POST", path, "", NULL, &j) == 409, "second cancel: %s", last_body);
	SW_REQUIRE(!strcmp(err_code(j), "conflict"), "409 code");
	json_decref(j);

	/* the worker's late outcome changes nothing */
	send_finished(&dispatches[0], 1, "SUCCEEDED", late, NULL);
	sw_test_kafka_flush(producer, 30000);
	wait_events(id, "run.finished", 1, 30);
	wait_events(id, "run.cancel_requested", 1, 30);
	pump(2000);
	run = run_get(id, NULL);
	SW_REQUIRE(!strcmp(jstate(run), "cancelled"), "after late outcome: %s", jstate(run));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 0)), "cancelled"), "step after late outcome");
	json_decref(run);
	SW_REQUIRE(events_of(id, "run.cancel_requested", NULL, 0, &d) == 1 && d == 1,
		   "cancel_requested events");
	SW_REQUIRE(events_of(id, "run.finished", NULL, 0, &d) == 1 && d == 1,
		   "run.finished events");
	r = event_find(id, "run.finished");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(r->ev, "status")), "CANCELLED"),
		   "run.finished CANCELLED");
	SW_REQUIRE(events_of(id, "step.dispatched", "after", 1, NULL) == 0,
		   "step after dispatched");
	/* cancelling a missing run */
	SW_REQUIRE(http_s("POST", "/v1/runs/01890000-0000-7000-8000-000000000000/cancel", "", NULL,
			  NULL) == 404,
		   "cancel of a missing run");
	/* the late outcome changed nothing, and left nothing: repeats are the
	 * state machine's to ignore, no table of processed ids grows */
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.processed") == 0,
		   "processed ids were written");
	sched_stop(SIGTERM);
	json_decref(late);
	free(id);
}

static enum act behave_repeat(const struct dispatch *d, char *err, size_t errlen)
{
	(void)d;
	(void)err;
	(void)errlen;
	return ACT_REPEAT;
}

/*
 * Every start and outcome comes twice under one event id, and a third
 * outcome of the same attempt under another id (another output): the run
 * takes each step's first outcome once. Each step has one attempt and its
 * first output, each next step one dispatch, the run one end. Nothing but
 * the state machine guards this: no processed ids are written.
 */
static void scenario_repeat(void)
{
	json_t *run;
	char *id;
	size_t i;

	behave = behave_repeat;
	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	id = submit("chain", "{\"word\": \"twice\", \"n\": 2}", NULL);
	run = wait_run(id, NULL, 60);
	check_chain_run(run, "twice", 2);
	for (i = 0; i < 3; i++)
		SW_REQUIRE(
		    json_integer_value(json_object_get(step_of(run, i), "attempts")) == 1,
		    "step %zu: %lld attempts", i,
		    (long long)json_integer_value(json_object_get(step_of(run, i), "attempts")));
	json_decref(run);
	wait_events(id, "run.finished", 1, 30);
	pump(1500); /* a second application would show now */
	check_unique(id, 1, chain_steps, 3);
	run = run_get(id, NULL);
	check_chain_run(run, "twice", 2);
	json_decref(run);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.processed") == 0,
		   "processed ids were written");
	SW_REQUIRE(http_s("GET", "/healthz", NULL, NULL, NULL) == 200, "healthz");
	sched_stop(SIGTERM);
	behave = behave_succeed;
	free(id);
}

/* "slow": attempt 1 goes unanswered and times out; attempt 2 is answered
 * at once, well within its 5 s. "never": nothing is ever answered. */
static const char *const slow_yaml = "name: slow\n"
				     "steps:\n"
				     "  - name: wait\n"
				     "    uses: template\n"
				     "    timeout: 5s\n"
				     "    retries: 1\n"
				     "    backoff: 100ms\n"
				     "    with:\n"
				     "      value: \"${{ input.tag }}\"\n";
static const char *const never_yaml = "name: never\n"
				      "steps:\n"
				      "  - name: wait\n"
				      "    uses: template\n"
				      "    timeout: 300ms\n"
				      "    retries: 1\n"
				      "    backoff: 100ms\n"
				      "    with:\n"
				      "      value: \"${{ input.tag }}\"\n";

static enum act behave_slow(const struct dispatch *d, char *err, size_t errlen)
{
	const char *tag = json_string_value(d->value);

	(void)err;
	(void)errlen;
	if (!strcmp(tag, "second"))
		return d->attempt == 1 ? ACT_START_ONLY : ACT_SUCCEED;
	return ACT_IGNORE;
}

static void scenario_timeout(void)
{
	static const char *const wait1[] = {"wait"};
	json_t *run, *st, *late = json_string("late");
	char *a, *b;
	size_t i, d;

	behave = behave_slow;
	sched_start();
	wait_ready();
	register_wf(slow_yaml, NULL);
	register_wf(never_yaml, NULL);
	a = submit("slow", "{\"tag\": \"second\"}", NULL);
	b = submit("never", "{\"tag\": \"never\"}", NULL);

	run = wait_run(a, NULL, 60);
	SW_REQUIRE(!strcmp(jstate(run), "succeeded"), "second: %s (%s)", jstate(run),
		   json_string_value(json_object_get(run, "error")));
	st = step_of(run, 0);
	SW_REQUIRE(json_integer_value(json_object_get(st, "attempts")) == 2, "second: attempts");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(run, "output")), "second"), "output");
	json_decref(run);

	run = wait_run(b, NULL, 60);
	SW_REQUIRE(!strcmp(jstate(run), "failed"), "never: %s", jstate(run));
	st = step_of(run, 0);
	SW_REQUIRE(!strcmp(jstate(st), "timed_out"), "never: step %s", jstate(st));
	SW_REQUIRE(json_integer_value(json_object_get(st, "attempts")) == 2, "never: attempts");
	SW_REQUIRE(
	    strstr(json_string_value(json_object_get(run, "error")), "step wait: timeout") ==
		json_string_value(json_object_get(run, "error")),
	    "never: error %s", json_string_value(json_object_get(run, "error")));
	json_decref(run);

	/* late outcomes of timed-out attempts are ignored */
	for (i = 0; i < ndispatches; i++) {
		if (dispatches[i].attempt != 1)
			continue;
		send_finished(&dispatches[i], 1, "SUCCEEDED", late, NULL);
	}
	sw_test_kafka_flush(producer, 30000);
	pump(2500);
	run = run_get(a, NULL);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(run, "output")), "second") &&
		       !strcmp(jstate(run), "succeeded"),
		   "a late outcome changed run a");
	json_decref(run);
	run = run_get(b, NULL);
	SW_REQUIRE(!strcmp(jstate(run), "failed"), "a late outcome changed run b");
	json_decref(run);
	check_unique(a, 1, wait1, 1);
	check_unique(b, 1, wait1, 1);
	SW_REQUIRE(events_of(b, "step.dispatched", "wait", 2, &d) == 1, "never: attempt 2");
	SW_REQUIRE(events_of(b, "step.dispatched", "wait", 3, &d) == 0, "never: attempt 3");
	json_decref(late);
	sched_stop(SIGTERM);
	free(a);
	free(b);
}

static void scenario_kill9(void)
{
	enum { N = 20 };
	char *ids[N];
	size_t kills = 0, sent_at_kill = 0;
	int done;
	int64_t until;

	/* the run events held back as long as allowed: a kill finds some
	 * committed and not yet produced, which the next start's sweep sends */
	sched_extra[0] = "SAGEWAI_RUNS_HOLD_MS=100";
	sched_extra[1] = NULL;
	start_chains(ids, N, 'w');
	/* answer; kill -9 twice while outcomes are being applied */
	until = sw_mono_ns() + 240 * 1000000000LL;
	for (;;) {
		pump(50);
		if ((kills == 0 && answered >= 15) ||
		    (kills == 1 && answered >= sent_at_kill + 20)) {
			sw_test_kafka_flush(producer, 30000);
			sw_test_msleep(30 + 40 * (int)kills);
			sched_stop(SIGKILL);
			kills++;
			sent_at_kill = answered;
			sched_start();
			wait_ready();
		}
		done =
		    (int)sql_long("SELECT count(*) FROM scheduler.runs WHERE state <> 'running'");
		if (done == N && kills == 2)
			break;
		SW_REQUIRE(sw_mono_ns() < until, "%d of %d runs finished after %zu kills", done, N,
			   kills);
	}
	SW_REQUIRE(kills == 2, "kills");
	sched_extra[0] = NULL;
	check_chains(ids, N, 'w', 3000, 0);
	{
		size_t j, dup = 0;

		for (j = 1; j < nrecs; j++)
			for (size_t k = 0; k < j; k++)
				if (!strcmp(recs[j].id, recs[k].id)) {
					dup++;
					break;
				}
		fprintf(stderr, "kill9: %zu events seen, %zu redelivered with the same id\n",
			nrecs, dup);
	}
	sched_stop(SIGTERM);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.outbox") == 0, "outbox not drained");
}

/* PostgreSQL restarts while outcomes are being applied: the store resends
 * what was in flight, the guards make that harmless, every run completes. */
static void scenario_pgrestart(void)
{
	enum { N = 20 };
	char *ids[N];
	int restarted = 0;
	long done;
	int64_t until;

	start_chains(ids, N, 'p');
	until = sw_mono_ns() + 240 * 1000000000LL;
	for (;;) {
		pump(50);
		if (!restarted && answered >= 20) {
			sw_test_kafka_flush(producer, 30000);
			sw_test_pg_restart();
			restarted = 1;
		}
		done = sw_test_pg_long_try(
		    db_dsn, "SELECT count(*) FROM scheduler.runs WHERE state <> 'running'");
		if (restarted && done == N)
			break;
		SW_REQUIRE(sw_mono_ns() < until, "%ld of %d runs finished", done, N);
		SW_REQUIRE(sw_test_proc_running(sched_pid), "sagewai-scheduler exited");
	}
	check_chains(ids, N, 'p', 3000, 0);
	{
		/* the restart did reach the scheduler */
		SW_REQUIRE(metric("sagewai_scheduler_store_reconnects") >= 1,
			   "no store reconnect seen");
	}
	sched_stop(SIGTERM);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.outbox") == 0, "outbox not drained");
}

static enum act behave_ignore(const struct dispatch *d, char *err, size_t errlen)
{
	(void)d;
	(void)err;
	(void)errlen;
	return ACT_IGNORE;
}

static pid_t worker_pid = -1;

/* The real sagewai-worker instead of the fake one. */
static void scenario_worker(void)
{
	static const char *const failing_yaml = "name: failing\n"
						"steps:\n"
						"  - name: ok\n"
						"    uses: template\n"
						"    with:\n"
						"      value: 1\n"
						"  - name: bad\n"
						"    uses: plugin:no_such_plugin\n"
						"    retries: 1\n"
						"    backoff: 50ms\n";
	static const char *const argv[] = {"sagewai-worker", NULL};
	char path[600], log[600], dsn[700], wgroup[200], *a, *b;
	/* every step.started at once, to count them (worker_startedafter
	 * tests the default, which leaves quick steps without one) */
	const char *const env[] = {dsn,
				   wgroup,
				   "SAGEWAI_HTTP_PORT=0",
				   "SAGEWAI_WORKER_STARTED_AFTER_MS=0",
				   SW_TEST_ENV_FAST_REBALANCE,
				   NULL};
	json_t *run;
	int status;
	size_t d;

	behave = behave_ignore;
	snprintf(path, sizeof(path), "%s/services/worker/sagewai-worker", getenv("SW_BUILD_DIR"));
	snprintf(log, sizeof(log), "%s/worker.log", data_dir);
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "worker");
	snprintf(wgroup, sizeof(wgroup), "SAGEWAI_GROUP_ID=%s-worker", group);
	sw_test_proc_watch(&worker_pid);
	worker_pid = sw_test_proc_spawn(path, argv, env, log);
	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	register_wf(failing_yaml, NULL);
	a = submit("chain", "{\"word\": \"real\", \"n\": 5}", NULL);
	b = submit("failing", "{}", NULL);
	run = wait_run(a, NULL, 180);
	check_chain_run(run, "real", 5);
	json_decref(run);
	run = wait_run(b, NULL, 180);
	SW_REQUIRE(!strcmp(jstate(run), "failed"), "failing: %s", jstate(run));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 0)), "succeeded") &&
		       !strcmp(jstate(step_of(run, 1)), "failed") &&
		       json_integer_value(json_object_get(step_of(run, 1), "attempts")) == 2,
		   "failing: step states");
	SW_REQUIRE(strncmp(json_string_value(json_object_get(run, "error")), "step bad: ", 10) ==
		       0,
		   "failing: error %s", json_string_value(json_object_get(run, "error")));
	fprintf(stderr, "worker: failing run error: %s\n",
		json_string_value(json_object_get(run, "error")));
	json_decref(run);
	wait_events(a, "run.finished", 1, 30);
	wait_events(b, "run.finished", 1, 30);
	pump(1500);
	check_unique(a, 1, chain_steps, 3);
	SW_REQUIRE(events_of(a, "step.started", NULL, 0, &d) == 3 && d == 3, "step.started: %zu",
		   d);
	SW_REQUIRE(events_of(a, "step.finished", NULL, 0, &d) == 3 && d == 3, "step.finished");
	sched_stop(SIGTERM);
	kill(worker_pid, SIGTERM);
	SW_CHECK(waitpid(worker_pid, &status, 0) == worker_pid);
	worker_pid = -1;
	free(a);
	free(b);
}

/* The metric's value, 0 if absent, -1 if /metrics does not answer (read
 * whole: the page is longer than last_body). */
static double metric(const char *name)
{
	long status;
	char *text = sw_test_http_get(http_port, "/metrics", &status);
	double v = status == 200 && text != NULL ? sw_test_metric(text, name) : -1;

	free(text);
	return status != 200 ? -1 : v < 0 ? 0 : v;
}

/* Wait up to limit_s for the metric to reach at least want; its value. The
 * readers count what they skip on their own time: a run may end first. */
static double metric_reaches(const char *name, double want, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;
	double v;

	while ((v = metric(name)) < want && sw_mono_ns() < until)
		sw_test_msleep(50);
	return v;
}

/* Two schedulers on one database, each in its own consumer group, so both
 * apply every step outcome: the rev guard must let exactly one of them move
 * the run each time. Left alone the two rarely collide (group commit makes
 * the window small), so the race is forced: while the test holds the runs'
 * rows locked, both read each run at the same rev and both block on their
 * guarded UPDATE; when the lock goes, one moves the run and the other must
 * lose the guard, read again and find the outcome applied. */
static void scenario_twin(void)
{
	enum { N = 30 };
	char *ids[N], group_a[128];
	pid_t pid_a, pid_b;
	int port_a, port_b, i;
	int64_t until;
	double conflicts;
	PGconn *lock;
	PGresult *res;

	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	other_pid = pid_a = sched_pid;
	port_a = http_port;
	snprintf(group_a, sizeof(group_a), "%s", group);
	http_port = port_b = sw_test_port_free();
	snprintf(group + strlen(group), sizeof(group) - strlen(group), "-b");
	sched_start();
	wait_ready();
	pid_b = sched_pid;
	for (i = 0; i < N; i++) {
		http_port = i % 2 ? port_a : port_b;
		ids[i] = submit_chain('t', i);
	}
	/* every run is in; its first dispatch waits, unanswered, on the bus */
	lock = PQconnectdb(db_dsn);
	SW_CHECKF(PQstatus(lock) == CONNECTION_OK, "lock connection: %s", PQerrorMessage(lock));
	res = PQexec(lock, "BEGIN; SELECT id FROM scheduler.runs WHERE state = 'running' FOR UPDATE");
	SW_CHECKF(PQresultStatus(res) == PGRES_TUPLES_OK, "lock: %s", PQerrorMessage(lock));
	PQclear(res);
	/* answer the dispatches (pump is the worker); both schedulers block */
	until = sw_mono_ns() + 60 * 1000000000LL;
	while (sql_long("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
			" AND wait_event_type = 'Lock'") < 2) {
		pump(100);
		SW_REQUIRE(sw_mono_ns() < until, "twin: the two schedulers never both waited");
	}
	pump(300); /* more of the outcomes find the rows locked */
	res = PQexec(lock, "COMMIT");
	SW_CHECKF(PQresultStatus(res) == PGRES_COMMAND_OK, "unlock: %s", PQerrorMessage(lock));
	PQclear(res);
	PQfinish(lock);
	until = sw_mono_ns() + 240 * 1000000000LL;
	while (sql_long("SELECT count(*) FROM scheduler.runs WHERE state <> 'running'") < N) {
		pump(200);
		SW_REQUIRE(sw_mono_ns() < until, "twin: runs not finished");
		SW_REQUIRE(sw_test_proc_running(pid_a) && sw_test_proc_running(pid_b),
			   "a scheduler exited");
	}
	check_chains(ids, N, 't', 3000, 0);
	conflicts = metric("sagewai_scheduler_conflicts_total");
	http_port = port_a;
	conflicts += metric("sagewai_scheduler_conflicts_total");
	fprintf(stderr, "twin: %.0f transitions lost the guard and were re-read\n", conflicts);
	/* both waited on the same rows at the same rev: one of them lost */
	SW_REQUIRE(conflicts > 0, "no transition ever lost the guard");
	sched_stop(SIGTERM); /* b */
	sched_pid = pid_a;
	other_pid = -1;
	sched_stop(SIGTERM);
}

/* Rows left in the outbox (as after a crash) all go out at start, in
 * pages, each once, and the outbox empties. */
static void scenario_outbox(void)
{
	enum { N = 2500, CHUNK = 250 };
	char run_id[SW_UUID_STRLEN], err[256];
	static char ids[N][SW_UUID_STRLEN];
	size_t i, k, d;
	int64_t until;

	sched_start(); /* the schema */
	wait_ready();
	sched_stop(SIGTERM);
	sw_uuid_v7_str(run_id);
	track(run_id);
	for (i = 0; i < N; i += CHUNK) {
		size_t cap = CHUNK * 700 + 200, len = 0;
		char *q = malloc(cap);

		len += (size_t)snprintf(q, cap,
					"INSERT INTO scheduler.outbox (event_id, topic, key, payload)"
					" VALUES ");
		for (k = i; k < i + CHUNK; k++) {
			struct sw_event_header h;
			void *buf;
			size_t blen, b;
			json_t *o = json_pack("{s:s, s:i}", "workflow", "none",
					      "workflow_version", (int)k + 1);

			sw_event_header_init(&h, "run.started", "sched-test");
			snprintf(h.run_id, sizeof(h.run_id), "%s", run_id);
			SW_CHECKF(sw_event_encode(reg, "run.started", &h, o, &buf, &blen, err,
						  sizeof(err)) == 0,
				  "%s", err);
			json_decref(o);
			snprintf(ids[k], sizeof(ids[k]), "%s", h.event_id);
			len += (size_t)snprintf(q + len, cap - len, "%s('%s', 'sagewai.runs', '%s', '\\x",
						k > i ? ", " : "", h.event_id, run_id);
			for (b = 0; b < blen; b++)
				len += (size_t)snprintf(q + len, cap - len, "%02x",
							((uint8_t *)buf)[b]);
			len += (size_t)snprintf(q + len, cap - len, "'::bytea)");
			free(buf);
			SW_CHECK(len < cap);
		}
		PQclear(sw_test_pg_exec(db_dsn, q));
		free(q);
	}
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.outbox") == N, "rows inserted");
	sched_start();
	wait_ready();
	until = sw_mono_ns() + 120 * 1000000000LL;
	for (;;) {
		events_of(run_id, "run.started", NULL, 0, &d);
		if (d == N)
			break;
		SW_REQUIRE(sw_mono_ns() < until, "%zu of %d leftover events sent", d, N);
		pump(200);
	}
	until = sw_mono_ns() + 60 * 1000000000LL;
	while (sql_long("SELECT count(*) FROM scheduler.outbox") != 0) {
		SW_REQUIRE(sw_mono_ns() < until, "outbox not emptied");
		pump(200);
	}
	pump(2500); /* a second copy would show now */
	SW_REQUIRE(events_of(run_id, "run.started", NULL, 0, &d) == N && d == N,
		   "leftover events: %zu delivered, %zu distinct",
		   events_of(run_id, "run.started", NULL, 0, NULL), d);
	for (i = 0; i < N; i += 97) {
		for (k = 0; k < nrecs; k++)
			if (!strcmp(recs[k].id, ids[i]))
				break;
		SW_REQUIRE(k < nrecs, "event %zu (%s) not delivered", i, ids[i]);
	}
	sched_stop(SIGTERM);
}

/* Pump (as the worker) until n runs have ended. */
static void wait_runs_ended(long n)
{
	int64_t until = sw_mono_ns() + 240 * 1000000000LL;

	while (sql_long("SELECT count(*) FROM scheduler.runs WHERE state <> 'running'") < n) {
		pump(200);
		SW_REQUIRE(
		    sw_mono_ns() < until, "%ld of %ld runs finished",
		    sql_long("SELECT count(*) FROM scheduler.runs WHERE state <> 'running'"), n);
	}
}

static void scenario_concurrent(void)
{
	enum { N = 100 };
	char *ids[N];
	int i;

	/* with the run events held back: still once each, in order */
	sched_extra[0] = "SAGEWAI_RUNS_HOLD_MS=20";
	sched_extra[1] = NULL;
	sched_start();
	sched_extra[0] = NULL;
	wait_ready();
	register_wf(chain_yaml, NULL);
	for (i = 0; i < N; i++) {
		ids[i] = submit_chain('c', i);
		pump(0);
	}
	wait_runs_ended(N);
	check_chains(ids, N, 'c', 2000, 1);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.steps WHERE attempt <> 1") == 0,
		   "a step needed more than one attempt");
	fprintf(stderr, "concurrent: %g conflicts re-read\n",
		metric("sagewai_scheduler_conflicts_total"));
	sched_stop(SIGTERM);
}

/* Many outcomes consumed at once commit as a group that sends each kind
 * of row (revision guards, steps done, dispatches, runs ended) as one
 * statement of arrays: the words hold what a PostgreSQL array literal and
 * JSON must escape, and every output comes back as it went in. */
static void batch_runs(void)
{
	enum { N = 64 };
	char *ids[N], input[160], word[64];
	int i;

	sched_start();
	sched_extra[0] = NULL;
	wait_ready();
	register_wf(chain_yaml, NULL);
	for (i = 0; i < N; i++) {
		snprintf(input, sizeof(input),
			 "{\"word\": \"b%d \\\"q\\\" \\\\ {x,y} NULL\", \"n\": %d}", i, i);
		ids[i] = submit("chain", input, NULL);
	}
	wait_runs_ended(N);
	for (i = 0; i < N; i++) {
		json_t *run = run_get(ids[i], NULL);

		snprintf(word, sizeof(word), "b%d \"q\" \\ {x,y} NULL", i);
		check_chain_run(run, word, i);
		json_decref(run);
	}
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.steps WHERE attempt <> 1 OR"
			    " state <> 'succeeded' OR finished IS NULL OR deadline IS NOT NULL"
			    " OR dispatch_event_id IS NULL") == 0,
		   "a step is not as its batched updates leave it");
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs WHERE rev < 3 OR"
			    " finished IS NULL") == 0,
		   "a run is not as its batched updates leave it");
	/* the pump answered many dispatches at once: some groups batched */
	SW_REQUIRE(metric("sagewai_scheduler_batched_rows_total") > 0,
		   "no group sent its rows batched");
	/* and none failed: alone, each transition would have committed */
	SW_REQUIRE(metric("sagewai_scheduler_group_retries_total") == 0,
		   "%g group commits failed and were retried alone",
		   metric("sagewai_scheduler_group_retries_total"));
	fprintf(stderr, "batch: %g rows batched in %g groups\n",
		metric("sagewai_scheduler_batched_rows_total"),
		metric("sagewai_scheduler_group_commits_total"));
	for (i = 0; i < N; i++)
		free(ids[i]);
	sched_stop(SIGTERM);
}

static void scenario_batch(void)
{
	batch_runs();
}

static void refuses_to_start(const char *needle);

/* The same with four group commits in flight at once, each on its own
 * connection (SAGEWAI_GROUP_COMMITS): every run as before, none retried.
 * None in flight is no setting. */
static void scenario_batch_groups(void)
{
	sched_extra[0] = "SAGEWAI_GROUP_COMMITS=0";
	sched_extra[1] = NULL;
	refuses_to_start("SAGEWAI_GROUP_COMMITS: '0' is not a number in 1..64");
	sched_extra[0] = "SAGEWAI_GROUP_COMMITS=4";
	sched_extra[1] = NULL;
	batch_runs();
}

static int matches(const char *s, const char *re)
{
	regex_t r;
	int ok;

	SW_CHECK(regcomp(&r, re, REG_EXTENDED | REG_NOSUB) == 0);
	ok = regexec(&r, s, 0, NULL, 0) == 0;
	regfree(&r);
	return ok;
}

static void check_nothing_stored(long workflows)
{
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.workflows") == workflows, "workflows");
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs") == 0, "runs stored");
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.steps") == 0, "steps stored");
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.outbox") == 0, "outbox rows");
}

static void scenario_bad_input(void)
{
	json_t *j, *run;
	char *big, *id;
	long st;

	sched_start();
	wait_ready();
	/* malformed YAML: 400 naming file, line and column */
	st = http_s("POST", "/v1/workflows", "name: x\nsteps:\n  - name: [unclosed\n", NULL, &j);
	SW_REQUIRE(st == 400, "malformed: %ld", st);
	SW_REQUIRE(matches(err_msg(j), "^workflow\\.yaml:[0-9]+:[0-9]+: "), "malformed: %s",
		   err_msg(j));
	json_decref(j);
	st = http_s("POST", "/v1/workflows?filename=mine.yaml", "name: x\nsteps: [\n", NULL, &j);
	SW_REQUIRE(st == 400 && matches(err_msg(j), "^mine\\.yaml:[0-9]+:[0-9]+: "),
		   "filename: %ld %s", st, err_msg(j));
	json_decref(j);
	/* unknown mode */
	st = http_s("POST", "/v1/workflows",
		    "name: m\nsteps:\n  - name: a\n    mode: teleport\n    uses: template\n", NULL,
		    &j);
	SW_REQUIRE(st == 400 && matches(err_msg(j), "^workflow\\.yaml:4:[0-9]+: .*teleport"),
		   "unknown mode: %ld %s", st, err_msg(j));
	json_decref(j);
	/* a template naming an unknown step */
	st = http_s("POST", "/v1/workflows",
		    "name: t\nsteps:\n  - name: a\n    uses: template\n    with:\n"
		    "      value: \"${{ steps.nope.output }}\"\n",
		    NULL, &j);
	SW_REQUIRE(st == 400 && matches(err_msg(j), "^workflow\\.yaml:6:[0-9]+: .*nope"),
		   "unknown step: %ld %s", st, err_msg(j));
	json_decref(j);
	/* 10 MB and 1.5 MB bodies: 413 */
	big = malloc(10 << 20);
	memset(big, 'a', 10 << 20);
	st = http("POST", "/v1/workflows", big, 10 << 20, NULL, NULL);
	SW_REQUIRE(st == 413, "10 MB body: %ld", st);
	st = http("POST", "/v1/runs", big, 3 << 19, NULL, &j);
	SW_REQUIRE(st == 413 && !strcmp(err_code(j), "too_large"), "1.5 MB body: %ld %s", st,
		   last_body);
	json_decref(j);
	free(big);
	check_nothing_stored(0);

	/* runs: invalid JSON, input not an object, no such workflow or version */
	register_wf(chain_yaml, NULL);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"chain\", \"input\": {", NULL, &j);
	SW_REQUIRE(st == 400, "invalid JSON: %ld", st);
	json_decref(j);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"chain\", \"input\": [1]}", NULL, &j);
	SW_REQUIRE(st == 400, "array input: %ld", st);
	json_decref(j);
	st = http_s("POST", "/v1/runs", "{\"input\": {}}", NULL, &j);
	SW_REQUIRE(st == 400, "no workflow named: %ld", st);
	json_decref(j);
	/* a misspelt field is refused, not ignored (the run would get no input) */
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"chain\", \"inputs\": {\"n\": 1}}", NULL,
		    &j);
	SW_REQUIRE(st == 400 &&
			   strstr(json_string_value(json_object_get(json_object_get(j, "error"),
								    "message")),
				  "unknown field \"inputs\"") != NULL,
		   "unknown field: %ld", st);
	json_decref(j);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"nope\", \"input\": {}}", NULL, &j);
	SW_REQUIRE(st == 404 && !strcmp(err_code(j), "not_found"), "missing workflow: %ld", st);
	json_decref(j);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"chain\", \"version\": 2, \"input\": {}}",
		    NULL, &j);
	SW_REQUIRE(st == 404, "missing version: %ld", st);
	json_decref(j);
	big = malloc((300 << 10) + 100);
	{
		int off = sprintf(big, "{\"workflow\": \"chain\", \"input\": {\"s\": \"");

		memset(big + off, 'x', 300 << 10);
		strcpy(big + off + (300 << 10), "\"}}");
	}
	st = http("POST", "/v1/runs", big, strlen(big), NULL, &j);
	SW_REQUIRE(st == 413, "300 KiB input: %ld %s", st, last_body);
	json_decref(j);
	free(big);
	st = http_s("GET", "/v1/runs/not-a-uuid", NULL, NULL, NULL);
	SW_REQUIRE(st == 404, "bad id: %ld", st);
	st = http_s("GET", "/v1/runs/01890000-0000-7000-8000-000000000000", NULL, NULL, NULL);
	SW_REQUIRE(st == 404, "missing run: %ld", st);
	st = http_s("DELETE", "/v1/runs", NULL, NULL, NULL);
	SW_REQUIRE(st == 405, "DELETE: %ld", st);
	/* same name and version: identical is fine, different is 409 */
	register_wf(chain_yaml, NULL);
	st = http_s("POST", "/v1/workflows",
		    "name: chain\nsteps:\n  - name: a\n    uses: template\n", NULL, &j);
	SW_REQUIRE(st == 409, "conflicting version: %ld %s", st, last_body);
	json_decref(j);
	check_nothing_stored(1);

	/* a first step whose template finds no such input fails the run */
	id = submit("chain", "{\"n\": 1}", NULL);
	run = run_get(id, NULL);
	SW_REQUIRE(!strcmp(jstate(run), "failed"), "render error: run %s", jstate(run));
	SW_REQUIRE(strstr(json_string_value(json_object_get(run, "error")), "step first: ") !=
			   NULL &&
		       strstr(json_string_value(json_object_get(run, "error")), "word") != NULL,
		   "render error: %s", json_string_value(json_object_get(run, "error")));
	SW_REQUIRE(!strcmp(jstate(step_of(run, 0)), "failed") &&
		       !strcmp(jstate(step_of(run, 2)), "skipped"),
		   "render error: step states");
	json_decref(run);
	wait_events(id, "run.finished", 1, 30);
	SW_REQUIRE(events_of(id, "step.dispatched", NULL, 0, NULL) == 0,
		   "render error dispatched");
	SW_REQUIRE(http_s("GET", "/healthz", NULL, NULL, NULL) == 200, "healthz");
	sched_stop(SIGTERM);
	free(id);
}

static const char *const gated_yaml = "name: gated\n"
				      "steps:\n"
				      "  - name: local\n"
				      "    uses: template\n"
				      "    with:\n"
				      "      value: 1\n"
				      "  - name: secret\n"
				      "    mode: identity_scoped\n"
				      "    run: \"echo hi\"\n"
				      "    identity: payroll\n";

static const char *const agent_yaml = "name: agent\n"
				      "steps:\n"
				      "  - name: scaffold\n"
				      "    mode: cli_agent\n"
				      "    cli_agent: claude-code\n"
				      "    prompt: \"write ${{ input.what }}\"\n";

static int starts(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* anti-pattern 2 twice: registered, with a warning for each step */
static const char *const fixed_agent_yaml = "name: fixed\n"
					    "steps:\n"
					    "  - name: empty\n"
					    "    mode: cli_agent\n"
					    "    cli_agent: codex\n"
					    "    prompt: \"\"\n"
					    "  - name: copy\n"
					    "    mode: cli_agent\n"
					    "    cli_agent: custom\n"
					    "    run: \"cp -r /workspace /tmp/x\"\n";

/* Create tenant name; its key (malloc'd), its id into id (may be NULL). */
static char *tenant_create_id(const char *name, const char *admin, char id[SW_UUID_STRLEN])
{
	char body[128];
	const char *tid;
	json_t *j;
	long st;
	char *key;

	snprintf(body, sizeof(body), "{\"name\": \"%s\"}", name);
	st = http_s("POST", "/v1/tenants", body, admin, &j);
	SW_REQUIRE(st == 201, "create tenant %s: %ld %s", name, st, last_body);
	key = strdup(json_string_value(json_object_get(j, "api_key")));
	SW_REQUIRE(strncmp(key, "swk_", 4) == 0 && strlen(key) == 47, "key format %s", key);
	tid = json_string_value(json_object_get(j, "id"));
	SW_REQUIRE(tid != NULL && strlen(tid) == 36 && tid[14] == '7', "tenant id: %s",
		   tid ? tid : "(none)");
	if (id != NULL)
		snprintf(id, SW_UUID_STRLEN, "%s", tid);
	json_decref(j);
	return key;
}

static char *tenant_create(const char *name, const char *admin)
{
	return tenant_create_id(name, admin, NULL);
}

/* The refusal of identity_scoped where it cannot run. */
static void require_no_identity(json_t *j, long st)
{
	SW_REQUIRE(st == 422 && !strcmp(err_code(j), "mode_unavailable"), "no identity: %ld %s",
		   st, last_body);
	SW_REQUIRE(strstr(err_msg(j), "step 'secret' runs in mode identity_scoped, which needs "
				      "the identity service (SAGEWAI_IDENTITY=1) and a sandbox "
				      "host that runs identity_scoped") != NULL,
		   "no identity message: %s", err_msg(j));
}

/* A re-run's workflow: each kind of step the replay field feeds. */
static const char *const replay_yaml =
    "name: rr\n"
    "steps:\n"
    "  - name: first\n"
    "    uses: template\n"
    "    with: {value: \"${{ input.n }}\"}\n"
    "  - name: think\n"
    "    uses: llm\n"
    "    with: {prompt: \"about ${{ steps.first.output }}\", value: 1}\n"
    "  - name: box\n"
    "    mode: sandboxed\n"
    "    run: [\"true\"]\n"
    "    with: {value: 2}\n"
    "  - name: agent\n"
    "    mode: cli_agent_jit\n"
    "    cli_agent: claude-code\n"
    "    prompt: \"write ${{ input.n }}\"\n"
    "    with: {value: 3}\n";

/* The replay field reaches the dispatches of the steps it is for: the llm
 * step's recorded request and answer, the cli_agent_jit step's recorded
 * decisions (nothing serves that mode yet: this is where it gets them);
 * the template and sandboxed steps run again without. run.submitted and
 * the run carry replay_of. The identity-bearing step's keys are pinned in
 * the re-run's identity.resolve_requested from the scheduler's own record
 * of the original (a client's "identity" field is not what is pinned); an
 * answer that is not the original's versions is refused (409 replay_pin),
 * and identity's version_gone is 409. The original must be a run of the
 * tenant (404), hostile replay fields are 400, and nothing is stored for
 * any of them. */
static void id_responder_start(const char *keys_json, char *kf_env, size_t kf_len);
static void id_responder_stop(void);
static void id_keys_set(const char *keys_json);
static void id_set(const char *code, const char *error, int silent, int decoy);
static json_t *id_request_of(const char *run_id);

#define REPLAY_MAC "abababababababababababababababababababababababababababababababab"
#define REPLAY_KEY(v)                                                                             \
	"[{\"env\": \"GH_TOKEN\", \"level\": \"workflow\", \"profile\": \"p\", \"kind\":"         \
	" \"secret\", \"secret\": \"gh\", \"version\": " #v ", \"backend\": \"builtin\","         \
	" \"value\": \"\", \"mac\": \"" REPLAY_MAC "\"}]"

static void scenario_replay(void)
{
	const char *fmt = "{\"workflow\": \"rr\", \"input\": {\"n\": 7}, \"replay\": %s}";
	char body[4096], field[2048], kf_env[700], *orig, *id;
	json_t *j, *run;
	struct rec *r;
	size_t i, seen = 0;
	long st;

	/* cli_agent_jit is runnable with identity (played here: no keys) and
	 * a policy service */
	id_responder_start(REPLAY_KEY(1), kf_env, sizeof(kf_env));
	sched_extra[0] = "SAGEWAI_RUNNABLE_MODES=in_process,sandboxed,cli_agent_jit";
	sched_extra[1] = "SAGEWAI_IDENTITY=1";
	sched_extra[2] = "SAGEWAI_POLICY=1";
	sched_extra[3] = kf_env;
	sched_extra[4] = NULL;
	sched_start();
	wait_ready();
	register_wf(replay_yaml, NULL);
	orig = submit("rr", "{\"n\": 7}", NULL);
	json_decref(wait_run(orig, NULL, 60));
	snprintf(field, sizeof(field),
		 "{\"of\": \"%s\", \"steps\": {"
		 "\"think\": {\"request\": {\"uses\": \"llm\"}, \"status\": \"SUCCEEDED\","
		 " \"answer\": {\"output\": \"\\\"recorded\\\"\", \"error\": null}},"
		 "\"box\": {\"identity\": \"\"},"
		 "\"agent\": {\"identity\": \"[{\\\"env\\\": \\\"GH_TOKEN\\\", \\\"kind\\\":"
		 " \\\"secret\\\", \\\"secret\\\": \\\"gh\\\", \\\"version\\\": 7}]\","
		 " \"decisions\": [{\"name\": \"GH_TOKEN\", \"decision\": \"deny\","
		 " \"by\": \"rule\"}]},"
		 "\"gone\": {\"decisions\": []}}}",
		 orig);
	snprintf(body, sizeof(body), fmt, field);
	st = http_s("POST", "/v1/runs", body, NULL, &j);
	SW_REQUIRE(st == 201, "re-run: %ld %s", st, last_body);
	id = strdup(json_string_value(json_object_get(j, "run_id")));
	json_decref(j);
	track(id);
	run = wait_run(id, NULL, 60);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(run, "replay_of")), orig),
		   "run replay_of: %s", last_body);
	json_decref(run);
	run = run_get(orig, NULL);
	SW_REQUIRE(json_is_null(json_object_get(run, "replay_of")), "original replay_of");
	json_decref(run);
	wait_events(id, "run.finished", 1, 30);
	r = event_find(id, "run.submitted");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(r->ev, "replay_of")), orig),
		   "run.submitted replay_of");
	r = event_find(orig, "run.submitted");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(r->ev, "replay_of")), ""),
		   "the original's run.submitted replay_of");
	for (i = 0; i < ndispatches; i++) {
		struct dispatch *d = &dispatches[i];
		json_t *rp = json_object_get(d->spec, "replay");

		if (strcmp(d->run_id, id) != 0)
			continue;
		seen++;
		if (!strcmp(d->step, "think")) {
			SW_REQUIRE(
			    json_is_object(rp) &&
				!strcmp(json_string_value(json_object_get(rp, "of")), orig) &&
				!strcmp(json_string_value(json_object_get(
					    json_object_get(rp, "request"), "uses")),
					"llm") &&
				!strcmp(json_string_value(json_object_get(
					    json_object_get(rp, "answer"), "output")),
					"\"recorded\"") &&
				!strcmp(json_string_value(json_object_get(rp, "status")),
					"SUCCEEDED"),
			    "think's spec.replay");
		} else if (!strcmp(d->step, "agent")) {
			SW_REQUIRE(
			    json_is_object(rp) &&
				!strcmp(json_string_value(json_object_get(
					    json_array_get(json_object_get(rp, "decisions"), 0),
					    "decision")),
					"deny") &&
				json_object_get(rp, "request") == NULL,
			    "agent's spec.replay");
		} else {
			SW_REQUIRE(rp == NULL, "step %s got spec.replay", d->step);
		}
	}
	SW_REQUIRE(seen == 4, "%zu dispatches of the re-run", seen);
	/* the re-run's resolution pinned the original's key from the
	 * scheduler's record (v1), not from the client's field (v7); the
	 * original's pinned nothing */
	{
		json_t *oreq = id_request_of(orig), *req = id_request_of(id), *p;
		char *t = json_dumps(json_object_get(req, "pins"), JSON_COMPACT);

		SW_REQUIRE(oreq != NULL && json_array_size(json_object_get(oreq, "pins")) == 0,
			   "the original's resolution has pins");
		p = json_array_get(json_object_get(req, "pins"), 0);
		SW_REQUIRE(json_array_size(json_object_get(req, "pins")) == 1 &&
				   !strcmp(json_string_value(json_object_get(p, "step")), "agent") &&
				   !strcmp(json_string_value(json_object_get(p, "env")), "GH_TOKEN") &&
				   !strcmp(json_string_value(json_object_get(p, "secret")), "gh") &&
				   json_integer_value(json_object_get(p, "version")) == 1 &&
				   !strcmp(json_string_value(json_object_get(p, "mac")), REPLAY_MAC),
			   "the re-run's pins: %s", t ? t : "none");
		free(t);
		json_decref(oreq);
		json_decref(req);
	}
	/* identity answers another version (it should not): the scheduler's
	 * backstop refuses; identity's version_gone is 409 */
	id_keys_set(REPLAY_KEY(2));
	st = http_s("POST", "/v1/runs", body, NULL, &j);
	SW_REQUIRE(st == 409 && !strcmp(err_code(j), "replay_pin") &&
			   strstr(err_msg(j), "key GH_TOKEN was secret gh v1, now secret gh v2"),
		   "another version answered: %ld %s", st, last_body);
	json_decref(j);
	id_keys_set(REPLAY_KEY(1));
	id_set("version_gone", "version_gone: GH_TOKEN (secret gh v1): no such version", 0, 0);
	st = http_s("POST", "/v1/runs", body, NULL, &j);
	SW_REQUIRE(st == 409 && !strcmp(err_code(j), "version_gone") &&
			   strstr(err_msg(j), "GH_TOKEN (secret gh v1)"),
		   "version_gone: %ld %s", st, last_body);
	json_decref(j);
	id_set(NULL, NULL, 0, 0);

	/* refused: nothing stored */
	snprintf(field, sizeof(field),
		 "{\"of\": \"01900000-0000-7000-8000-000000000000\", \"steps\": {}}");
	snprintf(body, sizeof(body), fmt, field);
	st = http_s("POST", "/v1/runs", body, NULL, &j);
	SW_REQUIRE(st == 404 && strstr(err_msg(j), "to re-run") != NULL,
		   "unknown original: %ld %s", st, last_body);
	json_decref(j);
	{
		static const char *const bad[] = {
		    "[]",
		    "{\"of\": 1, \"steps\": {}}",
		    "{\"of\": \"%s\"}",
		    "{\"of\": \"%s\", \"steps\": {}, \"x\": 1}",
		    "{\"of\": \"%s\", \"steps\": {\"think\": 1}}",
		    "{\"of\": \"%s\", \"steps\": {\"think\": {\"status\": \"SUCCEEDED\"}}}",
		    "{\"of\": \"%s\", \"steps\": {\"think\": {\"request\": {},"
		    " \"status\": \"SUCCEEDED\", \"answer\": {\"output\": 1, \"error\": null}}}}",
		    "{\"of\": \"%s\", \"steps\": {\"think\": {\"identity\": []}}}",
		    "{\"of\": \"%s\", \"steps\": {\"agent\": {\"decisions\": [1]}}}",
		    "{\"of\": \"%s\", \"steps\": {\"agent\": {\"shell\": \"rm -rf /\"}}}",
		    NULL,
		};

		for (i = 0; bad[i] != NULL; i++) {
			snprintf(field, sizeof(field), bad[i], orig);
			snprintf(body, sizeof(body), fmt, field);
			st = http_s("POST", "/v1/runs", body, NULL, &j);
			SW_REQUIRE(st == 400 && !strcmp(err_code(j), "bad_request") &&
				       strncmp(err_msg(j), "replay: ", 8) == 0,
				   "hostile replay %s: %ld %s", field, st, last_body);
			json_decref(j);
		}
	}
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs") == 2, "a refused run stored");
	free(id);
	free(orig);
	sched_stop(SIGTERM);
	id_responder_stop();
}

static void scenario_preview_gate(void)
{
	json_t *j;
	char *key;
	long st;

	/* multi_tenant without the preview flag: 403, nothing stored */
	sched_extra[0] = "SAGEWAI_MODE=multi_tenant";
	sched_extra[1] = "SAGEWAI_ADMIN_TOKEN=op-secret-1";
	sched_extra[2] = "SAGEWAI_RUNNABLE_MODES=in_process,identity_scoped";
	sched_extra[3] = NULL;
	sched_start();
	wait_ready();
	key = tenant_create("acme", "op-secret-1");
	register_wf(gated_yaml, key);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"gated\", \"input\": {}}", key, &j);
	SW_REQUIRE(st == 403 && !strcmp(err_code(j), "preview_gate"), "gate: %ld %s", st,
		   last_body);
	SW_REQUIRE(strstr(err_msg(j), "secret") != NULL && strstr(err_msg(j), "identity_scoped"),
		   "gate message: %s", err_msg(j));
	json_decref(j);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs") == 0, "gated run stored");
	sched_stop(SIGTERM);

	/* with SAGEWAI_SEALED_PREVIEW=1 the gate opens, but identity_scoped
	 * still needs the identity service (the identity scenario has it) */
	sched_extra[3] = "SAGEWAI_SEALED_PREVIEW=1";
	sched_extra[4] = NULL;
	sched_start();
	wait_ready();
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"gated\", \"input\": {}}", key, &j);
	require_no_identity(j, st);
	json_decref(j);
	sched_stop(SIGTERM);

	/* single_org: no gate; the mode must still be runnable, which
	 * identity_scoped is not without SAGEWAI_IDENTITY=1 */
	sched_extra[0] = "SAGEWAI_RUNNABLE_MODES=in_process,identity_scoped";
	sched_extra[1] = NULL;
	sched_start();
	wait_ready();
	register_wf(gated_yaml, NULL);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"gated\", \"input\": {}}", NULL, &j);
	require_no_identity(j, st);
	json_decref(j);
	sched_stop(SIGTERM);

	/* and without the mode in SAGEWAI_RUNNABLE_MODES: 422 naming it */
	sched_extra[0] = NULL;
	sched_start();
	wait_ready();
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"gated\", \"input\": {}}", NULL, &j);
	require_no_identity(j, st);
	SW_REQUIRE(strstr(err_msg(j), "this deployment runs only: in_process") != NULL,
		   "unrunnable message: %s", err_msg(j));
	json_decref(j);
	register_wf(agent_yaml, NULL);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"agent\", \"input\": {\"what\": \"x\"}}",
		    NULL, &j);
	SW_REQUIRE(st == 422 &&
		       !strcmp(err_msg(j), "step 'scaffold' runs in mode cli_agent, which "
					   "needs the identity service (SAGEWAI_IDENTITY=1) and a "
					   "sandbox host that runs cli_agent; this deployment runs "
					   "only: in_process"),
		   "cli_agent: %ld %s", st, err_msg(j));
	json_decref(j);
	/* a real task registers without warnings; anti-pattern 2 registers
	 * with them, each naming the place and identity_scoped */
	st = http_s("POST", "/v1/workflows?filename=agent.yaml", agent_yaml, NULL, &j);
	SW_REQUIRE(st == 201 && json_array_size(json_object_get(j, "warnings")) == 0,
		   "agent warnings: %ld %s", st, last_body);
	json_decref(j);
	st = http_s("POST", "/v1/workflows?filename=fixed.yaml", fixed_agent_yaml, NULL, &j);
	SW_REQUIRE(st == 201 && json_array_size(json_object_get(j, "warnings")) == 2 &&
		       starts(json_string_value(json_array_get(json_object_get(j, "warnings"), 0)),
			      "fixed.yaml:6:13: step \"empty\": the prompt is empty") &&
		       starts(json_string_value(json_array_get(json_object_get(j, "warnings"), 1)),
			      "fixed.yaml:9:16: step \"copy\": cli_agent: custom runs a fixed") &&
		       strstr(last_body, "identity_scoped") != NULL,
		   "anti-pattern 2 warnings: %ld %s", st, last_body);
	json_decref(j);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.workflows WHERE name = 'fixed'") == 1,
		   "the warned workflow is registered");
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs") == 0, "runs stored");
	sched_stop(SIGTERM);

	/* cli_agent listed, but no identity service: still not runnable */
	sched_extra[0] = "SAGEWAI_RUNNABLE_MODES=in_process,cli_agent";
	sched_extra[1] = NULL;
	sched_start();
	wait_ready();
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"agent\", \"input\": {\"what\": \"x\"}}",
		    NULL, &j);
	SW_REQUIRE(st == 422 && strstr(err_msg(j), "a sandbox host that runs cli_agent; this "
						   "deployment runs only: in_process") != NULL,
		   "cli_agent without identity: %ld %s", st, err_msg(j));
	json_decref(j);
	sched_stop(SIGTERM);

	/* cli_agent_jit listed, but neither identity nor a policy service
	 * (SAGEWAI_POLICY=1): refused naming what it needs */
	sched_extra[0] = "SAGEWAI_RUNNABLE_MODES=in_process,cli_agent_jit";
	sched_extra[1] = NULL;
	sched_start();
	wait_ready();
	register_wf("name: jit\nsteps:\n  - name: fix\n    mode: cli_agent_jit\n"
		    "    cli_agent: codex\n    prompt: fix it\n",
		    NULL);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"jit\", \"input\": {}}", NULL, &j);
	SW_REQUIRE(st == 422 && !strcmp(err_code(j), "mode_unavailable") &&
		       strstr(err_msg(j), "(SAGEWAI_POLICY=1)") != NULL &&
		       strstr(err_msg(j), "this deployment runs only: in_process") != NULL,
		   "cli_agent_jit without policy: %ld %s", st, err_msg(j));
	json_decref(j);
	sched_stop(SIGTERM);
	free(key);
}

static void scenario_tenancy(void)
{
	json_t *j, *run;
	char *ka, *kb, *ka2, *kaud, *id, path[160], cmd[800];
	char ida[SW_UUID_STRLEN], idb[SW_UUID_STRLEN], ida2[SW_UUID_STRLEN];
	long st;

	sched_extra[0] = "SAGEWAI_MODE=multi_tenant";
	sched_extra[1] = "SAGEWAI_ADMIN_TOKEN=op-secret-2";
	sched_extra[2] = NULL;
	sched_start();
	wait_ready();
	SW_REQUIRE(http_s("POST", "/v1/tenants", "{\"name\": \"a\"}", NULL, NULL) == 401,
		   "no token");
	SW_REQUIRE(http_s("POST", "/v1/tenants", "{\"name\": \"a\"}", "op-secret-3", NULL) == 401,
		   "wrong token");
	SW_REQUIRE(http_s("POST", "/v1/tenants", "{\"name\": \"A!\"}", "op-secret-2", NULL) == 400,
		   "bad name");
	/* "default" is single_org's tenant id; a UUID-shaped name would read as an id */
	SW_REQUIRE(http_s("POST", "/v1/tenants", "{\"name\": \"default\"}", "op-secret-2",
			  NULL) == 400,
		   "a tenant named default");
	SW_REQUIRE(http_s("POST", "/v1/tenants",
			  "{\"name\": \"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\"}", "op-secret-2",
			  NULL) == 400,
		   "a tenant named like an id");
	ka = tenant_create_id("tenant-a", "op-secret-2", ida);
	kb = tenant_create_id("tenant-b", "op-secret-2", idb);
	SW_REQUIRE(strcmp(ka, kb) != 0 && strcmp(ida, idb) != 0, "same keys or ids");
	SW_REQUIRE(
	    http_s("POST", "/v1/tenants", "{\"name\": \"tenant-a\"}", "op-secret-2", NULL) == 409,
	    "duplicate tenant");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, NULL, NULL) == 401, "no key");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, "swk_nope", NULL) == 401, "unknown key");
	SW_REQUIRE(http_s("POST", "/v1/workflows", chain_yaml, NULL, NULL) == 401,
		   "no key register");

	register_wf(chain_yaml, ka);
	id = submit("chain", "{\"word\": \"a\", \"n\": 1}", ka);
	run = wait_run(id, ka, 60);
	check_chain_run(run, "a", 1);
	json_decref(run);
	SW_REQUIRE(!strcmp(dispatches[0].tenant, ida), "tenant id in dispatch header: %s",
		   dispatches[0].tenant);

	/* tenant b sees none of it */
	snprintf(path, sizeof(path), "/v1/runs/%s", id);
	SW_REQUIRE(http_s("GET", path, NULL, kb, NULL) == 404, "b reads a's run");
	snprintf(path, sizeof(path), "/v1/runs/%s/events", id);
	SW_REQUIRE(http_s("GET", path, NULL, kb, NULL) == 404, "b streams a's run");
	snprintf(path, sizeof(path), "/v1/runs/%s/cancel", id);
	SW_REQUIRE(http_s("POST", path, "", kb, NULL) == 404, "b cancels a's run");
	SW_REQUIRE(http_s("GET", "/v1/workflows/chain", NULL, kb, NULL) == 404, "b reads a's wf");
	SW_REQUIRE(http_s("GET", "/v1/workflows/chain", NULL, ka, &j) == 200, "a reads its wf");
	SW_REQUIRE(json_integer_value(json_object_get(j, "version")) == 1, "wf version");
	json_decref(j);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"chain\", \"input\": {}}", kb, &j);
	SW_REQUIRE(st == 404, "b runs a's workflow: %ld", st);
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/workflows", NULL, kb, &j) == 200 &&
		       json_array_size(json_object_get(j, "workflows")) == 0,
		   "b lists a's workflows");
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kb, &j) == 200 &&
		       json_array_size(json_object_get(j, "runs")) == 0,
		   "b lists a's runs");
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, ka, &j) == 200 &&
		       json_array_size(json_object_get(j, "runs")) == 1,
		   "a lists its run");
	json_decref(j);
	/* b may use the same workflow name, with other content */
	register_wf("name: chain\nsteps:\n  - name: solo\n    uses: template\n", kb);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.workflows") == 2, "workflows");
	/* only hashes are stored, and no key or token reaches the log */
	{
		uint8_t h[crypto_hash_sha256_BYTES];
		char hexs[2 * sizeof(h) + 1], q[300];

		crypto_hash_sha256(h, (const uint8_t *)ka, strlen(ka));
		sodium_bin2hex(hexs, sizeof(hexs), h, sizeof(h));
		snprintf(q, sizeof(q),
			 "SELECT count(*) FROM scheduler.apikeys k JOIN scheduler.tenants t"
			 " ON t.id::text = k.tenant_id WHERE t.name = 'tenant-a'"
			 " AND k.key_hash = '\\x%s'::bytea",
			 hexs);
		SW_REQUIRE(sql_long(q) == 1, "key hash");
	}
	/* an auditor key is for the audit API only */
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"role\": \"auditor\"}", NULL, NULL) == 401,
		   "auditor key without the admin token");
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"role\": \"tenant\"}", "op-secret-2", NULL) ==
		       400,
		   "a key of another role");
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"role\": \"auditor\"}", "op-secret-2", &j) == 201,
		   "auditor key: %s", last_body);
	kaud = strdup(json_string_value(json_object_get(j, "api_key")));
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kaud, NULL) == 401, "auditor key on the run API");

	/* deletion: admin only, every key revoked at once, runs kept */
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/tenant-a", NULL, NULL, NULL) == 401,
		   "delete without the admin token");
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/tenant-a", NULL, ka, NULL) == 401,
		   "delete with a tenant's key");
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/tenant-a", NULL, "op-secret-2", &j) == 200,
		   "delete tenant-a: %s", last_body);
	SW_REQUIRE(json_integer_value(json_object_get(j, "keys_revoked")) == 1 &&
		       !strcmp(json_string_value(json_object_get(j, "id")), ida),
		   "delete answer: %s", last_body);
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, ka, NULL) == 401, "a deleted tenant's key");
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/tenant-a", NULL, "op-secret-2", NULL) == 404,
		   "delete twice");
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs") == 1, "runs kept");
	/* the name again: a new tenant, which inherits nothing */
	ka2 = tenant_create_id("tenant-a", "op-secret-2", ida2);
	SW_REQUIRE(strcmp(ida, ida2) != 0, "the id came back with the name");
	snprintf(path, sizeof(path), "/v1/runs/%s", id);
	SW_REQUIRE(http_s("GET", path, NULL, ka2, NULL) == 404, "new tenant-a reads the old run");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, ka2, &j) == 200 &&
		       json_array_size(json_object_get(j, "runs")) == 0,
		   "new tenant-a lists the old runs");
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/workflows", NULL, ka2, &j) == 200 &&
		       json_array_size(json_object_get(j, "workflows")) == 0,
		   "new tenant-a lists the old workflows");
	json_decref(j);
	/* by id too */
	snprintf(path, sizeof(path), "/v1/tenants/%s", idb);
	SW_REQUIRE(http_s("DELETE", path, NULL, "op-secret-2", NULL) == 200, "delete by id");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kb, NULL) == 401, "b's key after deletion");
	/* every change went out as events, on sagewai.tenants through the outbox */
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.apikeys WHERE revoked IS NOT NULL") ==
		       2,
		   "revoked keys");
	sched_stop(SIGTERM);
	snprintf(cmd, sizeof(cmd),
		 "grep -q -e '%s' -e '%s' -e '%s' -e '%s' -e op-secret-2 %s/scheduler.log", ka, kb,
		 ka2, kaud, data_dir);
	SW_REQUIRE(system(cmd) != 0, "a key or the admin token is in the service log");
	free(ka);
	free(kb);
	free(ka2);
	free(kaud);
	free(id);
}

/* ---- progress streams ---------------------------------------------------- */

struct stream {
	char url[256];
	struct sw_test_buf m;
	CURLcode rc;
	long status;
	int stop_after_first; /* disconnect after the first event */
	volatile int got_first;
	volatile int done;
	pthread_t th;
};

static size_t stream_collect(char *d, size_t sz, size_t nm, void *u)
{
	struct stream *s = u;

	sw_test_http_collect(d, sz, nm, &s->m);
	if (strstr(s->m.p, "\n\n") != NULL) {
		s->got_first = 1;
		if (s->stop_after_first)
			return 0; /* abort: the client goes away */
	}
	return sz * nm;
}

static void *stream_main(void *arg)
{
	struct stream *s = arg;
	CURL *c = curl_easy_init();

	curl_easy_setopt(c, CURLOPT_URL, s->url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream_collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	s->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
	curl_easy_cleanup(c);
	s->done = 1;
	return NULL;
}

static void stream_open(struct stream *s, const char *id, int stop_after_first)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/v1/runs/%s/events", http_port, id);
	s->stop_after_first = stop_after_first;
	SW_CHECK(pthread_create(&s->th, NULL, stream_main, s) == 0);
}

static void stream_wait(struct stream *s, volatile int *flag, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;

	while (!*flag) {
		SW_REQUIRE(sw_mono_ns() < until, "stream: nothing after %d s", limit_s);
		pump(50);
	}
	(void)s;
}

/* The events of a stream's text, as (type, JSON) pairs. */
static size_t stream_events(const char *text, char types[][16], json_t **data, size_t max)
{
	const char *p = text;
	size_t n = 0;

	while (p != NULL && *p && n < max) {
		const char *end = strstr(p, "\n\n");
		char block[65536];
		size_t len;

		if (end == NULL)
			break;
		len = (size_t)(end - p);
		if (len >= sizeof(block))
			len = sizeof(block) - 1;
		memcpy(block, p, len);
		block[len] = '\0';
		p = end + 2;
		if (block[0] == ':')
			continue; /* comment */
		SW_CHECKF(strncmp(block, "event: ", 7) == 0, "stream block: %s", block);
		char *nl = strchr(block, '\n');

		SW_CHECK(nl != NULL && strncmp(nl + 1, "data: ", 6) == 0);
		*nl = '\0';
		snprintf(types[n], 16, "%.15s", block + 7);
		data[n] = json_loads(nl + 7, 0, NULL);
		SW_CHECKF(data[n] != NULL, "stream data: %s", nl + 7);
		n++;
	}
	return n;
}

/* A sandbox host's output for a dispatch: chunks on sagewai.sandbox, as
 * sandboxd emits them (keyed by run id), one of them claiming another
 * tenant; then the step succeeds. */
static void output_chunk(const struct dispatch *d, const char *tenant_id, int seq,
			 const char *stream, const char *data)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;
	json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:b}", "sandbox_id",
			      "01890000-0000-7000-8000-0000000000aa", "stream", stream, "seq", seq,
			      "data", data, "truncated", 0);

	sw_event_header_init(&h, "sandbox.output", "sched-test-sandboxd");
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant_id);
	snprintf(h.run_id, sizeof(h.run_id), "%s", d->run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%.40s/%.63s/%d", d->run_id, d->step, d->attempt);
	SW_CHECKF(sw_event_encode(reg, "sandbox.output", &h, o, &buf, &len, err, sizeof(err)) ==
		      0,
		  "%s", err);
	json_decref(o);
	sw_test_kafka_send(producer, "sagewai.sandbox", d->run_id, buf, len);
	free(buf);
}

static enum act behave_output(const struct dispatch *d, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	if (strcmp(d->step, "box") == 0) {
		send_started(d);
		output_chunk(d, d->tenant, 0, "stdout", "building [REDACTED:TOKEN]\nhalf ");
		output_chunk(d, "someone-else", 1, "stdout", "NOT FOR THIS TENANT\n");
		output_chunk(d, d->tenant, 1, "stderr", "warn\n");
		output_chunk(d, d->tenant, 2, "stdout", "line\n");
		sw_test_kafka_flush(producer, 5000);
	}
	return ACT_SUCCEED;
}

static const char *const boxed_yaml = "name: boxed\n"
				      "steps:\n"
				      "  - name: box\n"
				      "    mode: sandboxed\n"
				      "    run: \"echo hi\"\n";

static void scenario_sse(void)
{
	struct stream s, s2;
	char types[64][16], path[160];
	json_t *data[64], *run;
	size_t n, i, steps_done[3] = {0};
	char *id, *held;
	long st;

	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	register_wf(hold_yaml, NULL);

	/* unknown run: 404, no stream */
	st = http_s("GET", "/v1/runs/01890000-0000-7000-8000-000000000000/events", NULL, NULL,
		    NULL);
	SW_REQUIRE(st == 404, "stream of a missing run: %ld", st);

	/* a client that goes away mid-stream does no harm */
	behave = behave_hold;
	held = submit("hold", "{\"tag\": \"z\"}", NULL);
	stream_open(&s2, held, 1);
	stream_wait(&s2, &s2.done, 60);
	pthread_join(s2.th, NULL);
	SW_REQUIRE(s2.got_first && s2.status == 200, "aborted stream: %ld", s2.status);
	free(s2.m.p);
	wait_step_state(held, 0, "running");
	{
		/* the scheduler notices (at the latest on its next keep-alive) */
		int64_t until = sw_mono_ns() + 90 * 1000000000LL;

		for (;;) {
			if (metric("sagewai_scheduler_streams") == 0)
				break;
			SW_REQUIRE(sw_mono_ns() < until, "the closed stream is still open");
			pump(500);
		}
	}

	/* the fake worker holds back until the stream is open */
	behave = behave_succeed;
	id = submit("chain", "{\"word\": \"sse\", \"n\": 2}", NULL);
	stream_open(&s, id, 0);
	{
		int64_t until = sw_mono_ns() + 60 * 1000000000LL;

		while (!s.got_first) {
			SW_REQUIRE(sw_mono_ns() < until, "no first stream event");
			sw_test_msleep(20);
		}
	}
	stream_wait(&s, &s.done, 90);
	pthread_join(s.th, NULL);
	SW_REQUIRE(s.rc == CURLE_OK && s.status == 200, "stream ended with %s (%ld)",
		   curl_easy_strerror(s.rc), s.status);
	n = stream_events(s.m.p, types, data, 64);
	fprintf(stderr, "stream: %zu events\n", n);
	SW_REQUIRE(n >= 5, "stream: only %zu events:\n%s", n, s.m.p);
	SW_REQUIRE(!strcmp(types[0], "run") && !strcmp(jstate(data[0]), "running"),
		   "first event: %s %s", types[0], jstate(data[0]));
	SW_REQUIRE(json_array_size(json_object_get(data[0], "steps")) == 3, "first event steps");
	SW_REQUIRE(!strcmp(types[n - 1], "run") && !strcmp(jstate(data[n - 1]), "succeeded"),
		   "last event: %s %s", types[n - 1], jstate(data[n - 1]));
	check_chain_run(data[n - 1], "sse", 2);
	for (i = 1; i + 1 < n; i++) {
		const char *name;

		SW_REQUIRE(!strcmp(types[i], "step"), "event %zu is %s", i, types[i]);
		name = json_string_value(json_object_get(data[i], "name"));
		if (!strcmp(jstate(data[i]), "succeeded"))
			steps_done[json_integer_value(json_object_get(data[i], "index"))]++;
		SW_REQUIRE(name != NULL && json_object_get(data[i], "attempts") != NULL,
			   "step event fields");
	}
	for (i = 0; i < 3; i++)
		SW_REQUIRE(steps_done[i] == 1, "step %zu succeeded %zu times in the stream", i,
			   steps_done[i]);
	for (i = 0; i < n; i++)
		json_decref(data[i]);
	free(s.m.p);

	/* a finished run: its snapshot, then the end */
	stream_open(&s, id, 0);
	stream_wait(&s, &s.done, 30);
	pthread_join(s.th, NULL);
	n = stream_events(s.m.p, types, data, 64);
	SW_REQUIRE(s.rc == CURLE_OK && n == 1 && !strcmp(jstate(data[0]), "succeeded"),
		   "stream of a finished run: %zu events", n);
	json_decref(data[0]);
	free(s.m.p);

	/* the held run still cancels; the service is fine */
	snprintf(path, sizeof(path), "/v1/runs/%s/cancel", held);
	SW_REQUIRE(http_s("POST", path, "", NULL, NULL) == 202, "cancel held run");
	run = run_get(held, NULL);
	SW_REQUIRE(!strcmp(jstate(run), "cancelled"), "held run");
	json_decref(run);
	SW_REQUIRE(http_s("GET", "/healthz", NULL, NULL, NULL) == 200, "healthz");
	sched_stop(SIGTERM);
	free(id);
	free(held);

	/* a sandboxed step's live output: "event: output" chunks of the run's
	 * own tenant, in order, before the run's end */
	sched_extra[0] = "SAGEWAI_RUNNABLE_MODES=in_process,sandboxed";
	sched_extra[1] = NULL;
	sched_start();
	wait_ready();
	register_wf(boxed_yaml, NULL);
	behave = behave_output;
	id = submit("boxed", "{}", NULL);
	stream_open(&s, id, 0);
	{
		int64_t until = sw_mono_ns() + 60 * 1000000000LL;

		while (!s.got_first) {
			SW_REQUIRE(sw_mono_ns() < until, "no first stream event");
			sw_test_msleep(20);
		}
	}
	stream_wait(&s, &s.done, 90);
	pthread_join(s.th, NULL);
	n = stream_events(s.m.p, types, data, 64);
	{
		size_t nout = 0, last_out = 0;
		const char *want[][3] = {{"stdout", "building [REDACTED:TOKEN]\nhalf ", "0"},
					 {"stderr", "warn\n", "1"},
					 {"stdout", "line\n", "2"}};

		for (i = 0; i < n; i++) {
			if (strcmp(types[i], "output") != 0)
				continue;
			SW_REQUIRE(nout < 3, "more output than sent:\n%s", s.m.p);
			SW_REQUIRE(!strcmp(json_string_value(json_object_get(data[i], "stream")),
					   want[nout][0]) &&
				       !strcmp(json_string_value(json_object_get(data[i], "data")),
					       want[nout][1]) &&
				       json_integer_value(json_object_get(data[i], "seq")) ==
					   atoi(want[nout][2]) &&
				       !strcmp(json_string_value(json_object_get(data[i], "step")),
					       "box") &&
				       json_integer_value(json_object_get(data[i], "attempt")) == 1,
				   "output %zu: %s", nout, s.m.p);
			nout++;
			last_out = i;
		}
		SW_REQUIRE(nout == 3, "%zu output events of 3:\n%s", nout, s.m.p);
		SW_REQUIRE(strstr(s.m.p, "NOT FOR THIS TENANT") == NULL,
			   "another tenant's chunk went out");
		SW_REQUIRE(!strcmp(types[n - 1], "run") && !strcmp(jstate(data[n - 1]), "succeeded") &&
			       last_out < n - 1,
			   "the run's end came before its output:\n%s", s.m.p);
	}
	for (i = 0; i < n; i++)
		json_decref(data[i]);
	free(s.m.p);
	sched_stop(SIGTERM);
	free(id);
	behave = behave_succeed;
}

/* ---- users, keys and the submitting user ---------------------------------- */

/* s is a UUIDv7 in its 8-4-4-4-12 form */
static int sched_uuid_like(const char *s)
{
	uint8_t u[16];

	return s != NULL && strlen(s) == 36 && sw_uuid_parse(s, u) == 0 && s[14] == '7';
}

/* A reader of sagewai.tenants from its end (tail), and the events it saw. */
static rd_kafka_t *tenants_tail;
static json_t *tenant_evs[512];
static size_t ntenant_evs;

static void tenants_open(void)
{
	static const char *const topics[] = {"sagewai.tenants", NULL};
	char gid[200];

	snprintf(gid, sizeof(gid), "%s-tenants", group);
	tenants_tail = sw_test_kafka_tail(gid, topics);
}

/* The event of type whose header.tenant is tenant and whose field equals
 * value (any when field is NULL), waited for up to 30 s (borrowed). */
static json_t *tenant_event(const char *type, const char *tenant, const char *field,
			    const char *value)
{
	int64_t until = sw_mono_ns() + 30 * 1000000000LL;
	char err[256];
	size_t i;

	for (;;) {
		rd_kafka_message_t *m;

		for (i = 0; i < ntenant_evs; i++) {
			json_t *e = tenant_evs[i], *h = json_object_get(e, "header");

			if (!strcmp(json_string_value(json_object_get(h, "type")), type) &&
			    !strcmp(json_string_value(json_object_get(h, "tenant")), tenant) &&
			    (field == NULL ||
			     !strcmp(json_string_value(json_object_get(e, field)), value)))
				return e;
		}
		SW_REQUIRE(sw_mono_ns() < until, "no %s of tenant %s (%s = %s)", type, tenant,
			   field ? field : "-", value ? value : "-");
		if ((m = rd_kafka_consumer_poll(tenants_tail, 200)) == NULL)
			continue;
		if (m->err == 0 && m->len > 0 && ntenant_evs < 512) {
			json_t *e = sw_event_decode(reg, m->payload, m->len, err, sizeof(err));

			SW_REQUIRE(e != NULL, "undecodable event on sagewai.tenants: %s", err);
			tenant_evs[ntenant_evs++] = e;
		}
		rd_kafka_message_destroy(m);
	}
}

/* POST .../users: the answer (new reference), status checked. */
static json_t *user_create(const char *ref, const char *name, const char *admin, long want)
{
	char path[200], body[200];
	json_t *j;
	long st;

	snprintf(path, sizeof(path), "/v1/tenants/%s/users", ref);
	snprintf(body, sizeof(body), "{\"name\": \"%s\"}", name);
	st = http_s("POST", path, body, admin, &j);
	SW_REQUIRE(st == want, "create user %s of %s: %ld %s", name, ref, st, last_body);
	return j;
}

/* POST /v1/keys for a tenant (and user, may be NULL): the key (malloc'd). */
static char *user_key(const char *tenant, const char *user, const char *admin)
{
	char body[300];
	json_t *j;
	char *key;
	long st;

	if (user != NULL)
		snprintf(body, sizeof(body), "{\"tenant\": \"%s\", \"user\": \"%s\"}", tenant, user);
	else
		snprintf(body, sizeof(body), "{\"tenant\": \"%s\"}", tenant);
	st = http_s("POST", "/v1/keys", body, admin, &j);
	SW_REQUIRE(st == 201, "key of %s/%s: %ld %s", tenant, user ? user : "-", st, last_body);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(j, "user")), user ? user : ""),
		   "key's user: %s", last_body);
	SW_REQUIRE(sched_uuid_like(json_string_value(json_object_get(j, "key_id"))), "key id");
	key = strdup(json_string_value(json_object_get(j, "api_key")));
	SW_REQUIRE(strncmp(key, "swk_", 4) == 0, "key format");
	json_decref(j);
	return key;
}

/* The run's "user", and that of its run.submitted. */
static void check_run_user(const char *id, const char *token, const char *user)
{
	struct rec *r;
	json_t *run = run_get(id, token);

	SW_REQUIRE(!strcmp(json_string_value(json_object_get(run, "user")), user),
		   "run %s user: %s", id, last_body);
	json_decref(run);
	wait_events(id, "run.submitted", 1, 30);
	r = event_find(id, "run.submitted");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(r->ev, "user")), user),
		   "run.submitted user of %s: %s", id,
		   json_string_value(json_object_get(r->ev, "user")));
}

/* Run the CLI with the admin token against the scheduler: its exit code,
 * stdout into out. */
static int cli(char *out, size_t outlen, const char *admin, const char *args)
{
	char cmd[1200];
	size_t n = 0, got;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd),
		 "SAGEWAI_URL=http://127.0.0.1:%d SAGEWAI_ADMIN_TOKEN=%s %s/tools/cli/sagewai %s"
		 " 2>&1",
		 http_port, admin, getenv("SW_BUILD_DIR"), args);
	SW_CHECK((p = popen(cmd, "r")) != NULL);
	while (n + 1 < outlen && (got = fread(out + n, 1, outlen - n - 1, p)) > 0)
		n += got;
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void scenario_users(void)
{
	char ida[SW_UUID_STRLEN], uid[SW_UUID_STRLEN], path[200], out[4096];
	char *ka, *kal, *kwide, *kbob, *id, *id2, *id3, *id4;
	json_t *j, *e;

	tenants_open();
	sched_extra[0] = "SAGEWAI_MODE=multi_tenant";
	sched_extra[1] = "SAGEWAI_ADMIN_TOKEN=op-users";
	sched_extra[2] = NULL;
	sched_start();
	wait_ready();
	ka = tenant_create_id("acme", "op-users", ida);
	free(tenant_create("globex", "op-users"));

	/* the operator only */
	SW_REQUIRE(http_s("POST", "/v1/tenants/acme/users", "{\"name\": \"alice\"}", NULL,
			  NULL) == 401,
		   "user without the admin token");
	SW_REQUIRE(http_s("POST", "/v1/tenants/acme/users", "{\"name\": \"alice\"}", ka, NULL) ==
		       401,
		   "user with a tenant's key");
	SW_REQUIRE(http_s("GET", "/v1/tenants/acme/users", NULL, ka, NULL) == 401,
		   "user list with a tenant's key");
	SW_REQUIRE(http_s("PUT", "/v1/tenants/acme/users", "{}", "op-users", NULL) == 405, "PUT");
	SW_REQUIRE(http_s("GET", "/v1/tenants/acme/nope", NULL, "op-users", NULL) == 404,
		   "unknown sub-resource");
	/* names: [a-z0-9][a-z0-9_.-]{0,62} */
	json_decref(user_create("acme", "Alice", "op-users", 400));
	json_decref(user_create("acme", ".alice", "op-users", 400));
	json_decref(user_create("acme", "a/b", "op-users", 400));
	json_decref(user_create("acme", "", "op-users", 400));
	json_decref(user_create("acme",
				"a123456789012345678901234567890123456789012345678901234567890123",
				"op-users", 400));
	SW_REQUIRE(http_s("POST", "/v1/tenants/acme/users", "{\"name\": \"x\", \"role\": 1}",
			  "op-users", NULL) == 400,
		   "an unknown field");
	/* an unknown tenant, and "default" (single_org's only) */
	json_decref(user_create("nope", "alice", "op-users", 404));
	json_decref(user_create("default", "alice", "op-users", 404));
	json_decref(user_create("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "alice", "op-users", 404));

	j = user_create("acme", "alice.smith-1", "op-users", 201);
	SW_REQUIRE(sched_uuid_like(json_string_value(json_object_get(j, "user_id"))) &&
		       !strcmp(json_string_value(json_object_get(j, "tenant_id")), ida) &&
		       !strcmp(json_string_value(json_object_get(j, "name")), "alice.smith-1"),
		   "user answer: %s", last_body);
	snprintf(uid, sizeof(uid), "%s", json_string_value(json_object_get(j, "user_id")));
	json_decref(j);
	/* by id too, and a name taken is 409 */
	snprintf(path, sizeof(path), "/v1/tenants/%s/users", ida);
	SW_REQUIRE(http_s("POST", path, "{\"name\": \"alice.smith-1\"}", "op-users", NULL) == 409,
		   "duplicate user: %s", last_body);
	/* another tenant may have the name */
	json_decref(user_create("globex", "alice.smith-1", "op-users", 201));
	e = tenant_event("user.created", ida, "user_id", uid);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(e, "name")), "alice.smith-1") &&
		       !strcmp(json_string_value(json_object_get(e, "tenant_id")), ida),
		   "user.created fields");

	/* keys: of a user, tenant-wide, and refusals */
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"tenant\": \"acme\", \"user\": \"bob\"}",
			  "op-users", NULL) == 404,
		   "key of a missing user: %s", last_body);
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"tenant\": \"nope\", \"user\": \"alice.smith-1\"}",
			  "op-users", NULL) == 404,
		   "key of a missing tenant");
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"tenant\": \"acme\", \"user\": \"Bad!\"}",
			  "op-users", NULL) == 400,
		   "key of a bad user name");
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"tenant\": \"acme\", \"extra\": 1}", "op-users",
			  NULL) == 400,
		   "key with an unknown field");
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"tenant\": \"acme\", \"user\": \"alice.smith-1\"}",
			  ka, NULL) == 401,
		   "key with a tenant's key");
	kal = user_key("acme", "alice.smith-1", "op-users");
	kwide = user_key(ida, NULL, "op-users");
	e = tenant_event("apikey.created", ida, "user", "alice.smith-1");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(e, "role")), "TENANT") &&
		       strlen(json_string_value(json_object_get(e, "key_sha256"))) == 64,
		   "apikey.created of a user's key");
	/* the auditor key as before */
	SW_REQUIRE(http_s("POST", "/v1/keys", "{\"role\": \"auditor\"}", "op-users", &j) == 201 &&
		       !strcmp(json_string_value(json_object_get(j, "role")), "auditor"),
		   "auditor key: %s", last_body);
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/tenants/acme/users", NULL, "op-users", &j) == 200, "list");
	SW_REQUIRE(json_array_size(json_object_get(j, "users")) == 1 &&
		       json_integer_value(json_object_get(
			   json_array_get(json_object_get(j, "users"), 0), "keys")) == 1,
		   "user list: %s", last_body);
	json_decref(j);

	/* the submitting user: on the run, in the list, in run.submitted */
	register_wf(chain_yaml, kal);
	id = submit("chain", "{\"word\": \"u\", \"n\": 1}", kal);
	json_decref(wait_run(id, kal, 60));
	check_run_user(id, kal, "alice.smith-1");
	id2 = submit("chain", "{\"word\": \"w\", \"n\": 1}", kwide);
	check_run_user(id2, ka, "");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, ka, &j) == 200, "list runs");
	{
		json_t *r0 = json_array_get(json_object_get(j, "runs"), 0);
		json_t *r1 = json_array_get(json_object_get(j, "runs"), 1);

		SW_REQUIRE(!strcmp(json_string_value(json_object_get(r0, "user")), "") &&
			       !strcmp(json_string_value(json_object_get(r1, "user")),
				       "alice.smith-1"),
			   "run list users: %s", last_body);
	}
	json_decref(j);
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs WHERE user_name = "
			    "'alice.smith-1'") == 1,
		   "runs.user_name");

	/* deletion: the user's keys stop at once, its runs stay */
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/acme/users/alice.smith-1", NULL, ka, NULL) ==
		       401,
		   "delete a user with a tenant's key");
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/acme/users/alice.smith-1", NULL, "op-users",
			  &j) == 200,
		   "delete user: %s", last_body);
	SW_REQUIRE(json_integer_value(json_object_get(j, "keys_revoked")) == 1 &&
		       !strcmp(json_string_value(json_object_get(j, "user_id")), uid),
		   "delete answer: %s", last_body);
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kal, NULL) == 401, "a deleted user's key");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kwide, NULL) == 200, "the tenant-wide key");
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/acme/users/alice.smith-1", NULL, "op-users",
			  NULL) == 404,
		   "delete twice");
	e = tenant_event("user.deleted", ida, "user_id", uid);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(e, "name")), "alice.smith-1"),
		   "user.deleted");
	e = tenant_event("apikey.revoked", ida, "reason", "user deleted");
	json_decref(run_get(id, ka));
	/* the name again: a new id, the old key stays dead */
	j = user_create("acme", "alice.smith-1", "op-users", 201);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(j, "user_id")), uid) != 0,
		   "the user id came back with the name");
	json_decref(j);
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kal, NULL) == 401, "the old key revived");

	/* the CLI, against this scheduler */
	SW_REQUIRE(cli(out, sizeof(out), "op-users", "user create carol --tenant acme") == 0 &&
			   strstr(out, "user carol created") != NULL,
		   "cli user create: %s", out);
	SW_REQUIRE(cli(out, sizeof(out), "op-users", "--json user list --tenant acme") == 0 &&
			   strstr(out, "\"carol\"") != NULL,
		   "cli user list: %s", out);
	SW_REQUIRE(cli(out, sizeof(out), "op-users", "user list --tenant acme") == 0 &&
			   strstr(out, "carol") != NULL && strstr(out, "alice.smith-1") != NULL,
		   "cli user list: %s", out);
	SW_REQUIRE(cli(out, sizeof(out), "op-users", "--json key create --tenant acme --user carol") ==
			   0 &&
		       strstr(out, "\"user\":\"carol\"") != NULL,
		   "cli key create: %s", out);
	{
		json_t *k = json_loads(out, 0, NULL);

		SW_REQUIRE(k != NULL, "cli key create --json: %s", out);
		id3 = submit("chain", "{\"word\": \"c\", \"n\": 1}",
			     json_string_value(json_object_get(k, "api_key")));
		check_run_user(id3, ka, "carol");
		SW_REQUIRE(cli(out, sizeof(out), "op-users", "user delete carol --tenant acme") == 0 &&
				   strstr(out, "1 key(s) revoked") != NULL,
			   "cli user delete: %s", out);
		SW_REQUIRE(http_s("GET", "/v1/runs", NULL,
				  json_string_value(json_object_get(k, "api_key")), NULL) == 401,
			   "carol's key after the CLI deleted her");
		json_decref(k);
	}
	SW_REQUIRE(cli(out, sizeof(out), "op-users", "user delete carol --tenant acme") == 1 &&
			   strstr(out, "no such user") != NULL,
		   "cli user delete twice: %s", out);

	/* a tenant's deletion deletes its users */
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/acme", NULL, "op-users", NULL) == 200,
		   "delete tenant");
	{
		char q[200];

		snprintf(q, sizeof(q),
			 "SELECT count(*) FROM scheduler.users WHERE tenant_id = '%s'"
			 " AND deleted IS NULL",
			 ida);
		SW_REQUIRE(sql_long(q) == 0, "live users of a deleted tenant");
	}
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kwide, NULL) == 401, "keys of a deleted tenant");
	sched_stop(SIGTERM);

	/* single_org: tenant "default" has users and keys too; a key, when
	 * given, must be one of them */
	sched_extra[0] = "SAGEWAI_ADMIN_TOKEN=op-users";
	sched_extra[1] = NULL;
	sched_start();
	wait_ready();
	j = user_create("default", "bob", "op-users", 201);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(j, "tenant_id")), "default"),
		   "default's user: %s", last_body);
	json_decref(j);
	kbob = user_key("default", "bob", "op-users");
	register_wf(chain_yaml, NULL);
	id4 = submit("chain", "{\"word\": \"b\", \"n\": 1}", kbob);
	check_run_user(id4, NULL, "bob");
	free(id4);
	id4 = submit("chain", "{\"word\": \"n\", \"n\": 1}", NULL);
	check_run_user(id4, kbob, "");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, "swk_not-a-key", NULL) == 401,
		   "single_org: an unknown key");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, ka, NULL) == 401,
		   "single_org: a (deleted) multi_tenant tenant's key");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, "op-users", NULL) == 401,
		   "single_org: the admin token as a key");
	SW_REQUIRE(http_s("DELETE", "/v1/tenants/default/users/bob", NULL, "op-users", NULL) ==
		       200,
		   "delete bob");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, kbob, NULL) == 401, "bob's key after deletion");
	SW_REQUIRE(http_s("GET", "/v1/runs", NULL, NULL, NULL) == 200, "single_org without a key");
	sched_stop(SIGTERM);
	{
		char cmd[800];

		snprintf(cmd, sizeof(cmd), "grep -q -e '%s' -e '%s' -e '%s' -e op-users %s/scheduler.log",
			 kal, kwide, kbob, data_dir);
		SW_REQUIRE(system(cmd) != 0, "a key or the admin token is in the service log");
	}
	free(ka);
	free(kal);
	free(kwide);
	free(kbob);
	free(id);
	free(id2);
	free(id3);
	free(id4);
}

/* ---- anti-pattern 3: credentials in a run ------------------------------- */

#define T_AWS "AKIAZ7Q3R5T2LMN4PX6W"
#define T_GHP "ghp_4fTq9ZkLm2Rx7PwY1vB8nC3dE6gH0jK5sA2b"
#define T_SK "sk-ant-api03-Qw3rTy7uIo1pAs5dFg9hJk2lZx4cVb8nM6qW1eR3tY5uI7oP9aS2dF4gH6j"
#define T_PEM "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\n"

static const char *const envwf_yaml = "name: envwf\n"
				      "steps:\n"
				      "  - name: fetch\n"
				      "    mode: sandboxed\n"
				      "    run: \"curl https://example.com\"\n"
				      "    env:\n"
				      "      AUTH: \"" T_AWS "\"\n";

/* A submit of workflow with input refused for a credential at field. */
static void refuse_shape(const char *workflow, const char *input, const char *field,
			 const char *kind, const char *value)
{
	char body[1024], want[300];
	json_t *j;
	long st;

	snprintf(body, sizeof(body), "{\"workflow\": \"%s\", \"input\": %s}", workflow, input);
	st = http_s("POST", "/v1/runs", body, NULL, &j);
	snprintf(want, sizeof(want), "%s looks like %s; ", field, kind);
	SW_REQUIRE(st == 422 && !strcmp(err_code(j), "credential_in_input"), "%s: %ld %s", field,
		   st, last_body);
	SW_REQUIRE(strncmp(err_msg(j), want, strlen(want)) == 0, "%s: message %s", field,
		   err_msg(j));
	SW_REQUIRE(strstr(last_body, value) == NULL, "the value is echoed: %s", last_body);
	json_decref(j);
}

static void scenario_creds(void)
{
	char *id;

	sched_extra[0] = "SAGEWAI_RUNNABLE_MODES=in_process,sandboxed";
	sched_extra[1] = NULL;
	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	refuse_shape("chain", "{\"aws\": {\"id\": \"" T_AWS "\"}}", "input.aws.id",
		     "an AWS access key id", T_AWS);
	refuse_shape("chain", "{\"deploy\": {\"token\": \"x " T_GHP "\"}}", "input.deploy.token",
		     "a GitHub token", T_GHP);
	refuse_shape("chain", "{\"llm\": [\"ok\", {\"key\": \"Bearer " T_SK "\"}]}",
		     "input.llm[1].key", "an API key (sk-...)", T_SK);
	refuse_shape("chain", "{\"tls\": \"" T_PEM "\"}", "input.tls", "a PEM private key",
		     "b3BlbnNzaC1rZXktdjEAAAAA");
	/* in a workflow's env, as registered (registration itself is not refused) */
	register_wf(envwf_yaml, NULL);
	refuse_shape("envwf", "{}", "steps.fetch.env.AUTH", "an AWS access key id", T_AWS);
	check_nothing_stored(2);
	/* ordinary text that merely resembles: accepted */
	id = submit("chain",
		    "{\"word\": \"sk-learn-is-a-python-library and AKIA alone\", \"n\": 1,"
		    " \"doc\": \"-----BEGIN PUBLIC KEY-----\"}",
		    NULL);
	json_decref(wait_run(id, NULL, 60));
	SW_REQUIRE(sql_long("SELECT count(*) FROM scheduler.runs") == 1, "runs");
	SW_REQUIRE(http_s("GET", "/healthz", NULL, NULL, NULL) == 200, "healthz");
	sched_stop(SIGTERM);
	{
		char cmd[800];

		snprintf(cmd, sizeof(cmd), "grep -q -e '%s' -e '%s' -e '%s' %s/scheduler.log", T_AWS,
			 T_GHP, T_SK, data_dir);
		SW_REQUIRE(system(cmd) != 0, "a credential is in the service log");
	}
	free(id);
}

/* ---- the identity service, played by the test ------------------------------- */

#define MAC_KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

struct idreq {
	char request_id[40];
	char run_id[64];
	char tenant[128];
	json_t *ev; /* the decoded request */
};

/* The responder runs in a thread of its own (the test's HTTP calls block
 * while the scheduler waits for the answer); id_mu guards what it shares:
 * the requests seen and how to answer. */
static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t id_thread;
static volatile int id_stop;
static rd_kafka_t *idtail;	 /* sagewai.identity from its end */
static struct idreq idreqs[256]; /* requests seen, in order */
static size_t nidreqs;
static const char *id_code;  /* NULL: answer ok */
static const char *id_error; /* the refusal's error */
static int id_silent;	     /* answer nothing */
static int id_decoy;	     /* first an ok answer to a request id nobody asked */
static json_t *id_keys;	     /* every step's keys in an ok answer (read only) */

static size_t id_count(void)
{
	size_t n;

	pthread_mutex_lock(&id_mu);
	n = nidreqs;
	pthread_mutex_unlock(&id_mu);
	return n;
}

/* How to answer from now on. */
static void id_set(const char *code, const char *error, int silent, int decoy)
{
	pthread_mutex_lock(&id_mu);
	id_code = code;
	id_error = error;
	id_silent = silent;
	id_decoy = decoy;
	pthread_mutex_unlock(&id_mu);
}

static void id_send(const char *tenant, const char *run_id, const char *request_id, int ok,
		    const char *code, const char *error, json_t *steps)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;
	json_t *f;

	sw_event_header_init(&h, "identity.resolved", "sched-test-identity");
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", run_id);
	f = json_pack("{s:s, s:b, s:s, s:s, s:o, s:[]}", "request_id", request_id, "ok", ok,
		      "code", code, "error", error, "steps", steps, "denied");
	SW_CHECKF(sw_event_encode(reg, "identity.resolved", &h, f, &buf, &len, err,
				  sizeof(err)) == 0,
		  "%s", err);
	json_decref(f);
	sw_test_kafka_send(producer, "sagewai.identity.replies", run_id, buf, len);
	free(buf);
}

/* The steps of an ok answer to r: each step asked for gets id_keys. */
static json_t *id_steps(const struct idreq *r)
{
	json_t *out = json_array(), *st;
	size_t i;

	json_array_foreach(json_object_get(r->ev, "steps"), i, st)
		json_array_append_new(out, json_pack("{s:O, s:O}", "step",
						     json_object_get(st, "step"), "keys", id_keys));
	return out;
}

/* Answer r as told (under id_mu). */
static void id_answer(const struct idreq *r)
{
	char fake[SW_UUID_STRLEN];

	if (id_silent)
		return;
	if (id_decoy) {
		sw_uuid_v7_str(fake);
		id_send(r->tenant, r->run_id, fake, 1, "", "", id_steps(r));
	}
	if (id_code == NULL)
		id_send(r->tenant, r->run_id, r->request_id, 1, "", "", id_steps(r));
	else
		id_send(r->tenant, r->run_id, r->request_id, 0, id_code, id_error, json_array());
	sw_test_kafka_flush(producer, 10000);
}

static void *id_main(void *arg)
{
	(void)arg;
	while (!id_stop) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(idtail, 100);
		struct sw_event_header h;
		struct idreq *r;
		char err[256];

		if (m == NULL)
			continue;
		if (m->err != 0 || m->len == 0 ||
		    sw_event_decode_header(reg, m->payload, m->len, &h, err, sizeof(err)) != 0 ||
		    strcmp(h.type, "identity.resolve_requested") != 0 ||
		    strcmp(h.producer, "sagewai-scheduler") != 0) {
			rd_kafka_message_destroy(m);
			continue;
		}
		pthread_mutex_lock(&id_mu);
		SW_CHECK(nidreqs < 256);
		r = &idreqs[nidreqs];
		r->ev = sw_event_decode(reg, m->payload, m->len, err, sizeof(err));
		SW_REQUIRE(r->ev != NULL, "undecodable identity.resolve_requested: %s", err);
		rd_kafka_message_destroy(m);
		snprintf(r->request_id, sizeof(r->request_id), "%s",
			 json_string_value(json_object_get(r->ev, "request_id")));
		snprintf(r->run_id, sizeof(r->run_id), "%s", h.run_id);
		snprintf(r->tenant, sizeof(r->tenant), "%s", h.tenant);
		track(r->run_id); /* its events, if any, are recorded */
		id_answer(r);
		nidreqs++;
		pthread_mutex_unlock(&id_mu);
	}
	return NULL;
}

static void write_file(const char *path, const char *text, mode_t mode);

/* Play identity for a scenario: every resolve answered ok with keys_json
 * for each step; kf_env gets SAGEWAI_SECRET_MAC_KEY_FILE=... for the
 * scheduler. */
static void id_responder_start(const char *keys_json, char *kf_env, size_t kf_len)
{
	static const char *const topics[] = {"sagewai.identity", NULL};
	char keyfile[600], gid[200];

	snprintf(keyfile, sizeof(keyfile), "%s/mac.key", data_dir);
	write_file(keyfile, MAC_KEY_HEX "\n", 0600);
	snprintf(kf_env, kf_len, "SAGEWAI_SECRET_MAC_KEY_FILE=%s", keyfile);
	snprintf(gid, sizeof(gid), "%s-identity", group);
	idtail = sw_test_kafka_tail(gid, topics);
	id_keys = json_loads(keys_json, 0, NULL);
	SW_CHECK(id_keys != NULL);
	id_set(NULL, NULL, 0, 0);
	id_stop = 0;
	SW_CHECK(pthread_create(&id_thread, NULL, id_main, NULL) == 0);
}

/* Answer with keys_json for every step from now on. */
static void id_keys_set(const char *keys_json)
{
	json_t *k = json_loads(keys_json, 0, NULL);

	SW_CHECK(k != NULL);
	pthread_mutex_lock(&id_mu);
	json_decref(id_keys);
	id_keys = k;
	pthread_mutex_unlock(&id_mu);
}

/* A copy of the last resolution request of run_id, or NULL. */
static json_t *id_request_of(const char *run_id)
{
	json_t *ev = NULL;
	size_t i;

	pthread_mutex_lock(&id_mu);
	for (i = 0; i < nidreqs; i++)
		if (!strcmp(idreqs[i].run_id, run_id)) {
			json_decref(ev);
			ev = json_deep_copy(idreqs[i].ev);
		}
	pthread_mutex_unlock(&id_mu);
	return ev;
}

static void id_responder_stop(void)
{
	id_stop = 1;
	pthread_join(id_thread, NULL);
	rd_kafka_destroy(idtail);
	idtail = NULL;
	json_decref(id_keys);
	id_keys = NULL;
}

static const char *const idwf_yaml = "name: idwf\n"
				     "steps:\n"
				     "  - name: local\n"
				     "    uses: template\n"
				     "    with:\n"
				     "      value: \"${{ input.deploy.token }}\"\n"
				     "      motto: \"keep calm: carry-on-42\"\n"
				     "  - name: secret\n"
				     "    mode: identity_scoped\n"
				     "    run: \"echo hi\"\n"
				     "    identity: payroll\n"
				     "    retries: 1\n"
				     "    backoff: 100ms\n"
				     "    env:\n"
				     "      MODE: \"fast-lane\"\n";

static const char *const id_keys_json =
	"[{\"env\": \"GITHUB_TOKEN\", \"level\": \"workflow\", \"profile\": \"payroll\","
	" \"kind\": \"secret\", \"secret\": \"gh_token\", \"version\": 2, \"backend\": \"builtin\","
	" \"value\": \"\", \"mac\": "
	"\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"},"
	" {\"env\": \"API_BASE\", \"level\": \"system\", \"profile\": \"default\","
	" \"kind\": \"plain\", \"secret\": \"\", \"version\": 0, \"backend\": \"\","
	" \"value\": \"https://api.internal\", \"mac\": \"\"}]";

/* The MAC the scheduler must send for s. */
static void mac_hex(const char *s, char out[65])
{
	uint8_t key[32], mac[32];

	SW_CHECK(sodium_hex2bin(key, sizeof(key), MAC_KEY_HEX, 64, NULL, NULL, NULL) == 0);
	crypto_generichash(mac, sizeof(mac), (const uint8_t *)s, strlen(s), key, sizeof(key));
	sodium_bin2hex(out, 65, mac, sizeof(mac));
}

/* r's input_macs hold the MAC of s at field. */
static int has_mac(const struct idreq *r, const char *field, const char *s)
{
	char want[65];
	json_t *m;
	size_t i;

	mac_hex(s, want);
	json_array_foreach(json_object_get(r->ev, "input_macs"), i, m)
		if (!strcmp(json_string_value(json_object_get(m, "field")), field) &&
		    !strcmp(json_string_value(json_object_get(m, "mac")), want))
			return 1;
	return 0;
}

/* The step.dispatched of run's step and attempt, waited for. */
static struct rec *dispatch_of(const char *run, const char *step, int attempt)
{
	int64_t until = sw_mono_ns() + 60 * 1000000000LL;
	char want[200];
	size_t i;

	snprintf(want, sizeof(want), "%s/%s/%d", run, step, attempt);
	for (;;) {
		for (i = 0; i < nrecs; i++)
			if (!strcmp(recs[i].type, "step.dispatched") &&
			    !strcmp(recs[i].step_id, want))
				return &recs[i];
		SW_REQUIRE(sw_mono_ns() < until, "no dispatch %s", want);
		pump(100);
	}
}

static void require_pinned(struct rec *r)
{
	json_t *got = json_loads(json_string_value(json_object_get(r->ev, "identity")), 0, NULL);

	SW_REQUIRE(got != NULL && json_equal(got, id_keys), "step.dispatched.identity of %s: %s",
		   r->step_id, json_string_value(json_object_get(r->ev, "identity")));
	json_decref(got);
}

static int hold_secret; /* the fake worker ignores attempt 1 of step secret */
static enum act behave_id(const struct dispatch *d, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	if (hold_secret && !strcmp(d->step, "secret") && d->attempt == 1)
		return ACT_IGNORE;
	return ACT_SUCCEED;
}

/* A submit refused by identity: the status and code, the message, the
 * request it caused (its run id into run_id), nothing stored. */
static void refused(const char *body, const char *key, long want, const char *code,
		    const char *msg, char run_id[64])
{
	size_t before = id_count();
	json_t *j;
	long st = http_s("POST", "/v1/runs", body, key, &j);

	SW_REQUIRE(st == want && !strcmp(err_code(j), code), "want %ld %s: %ld %s", want, code,
		   st, last_body);
	if (msg != NULL)
		SW_REQUIRE(!strcmp(err_msg(j), msg), "message: %s", err_msg(j));
	json_decref(j);
	pump(200);
	SW_REQUIRE(id_count() == before + 1, "%zu requests for one submit", id_count() - before);
	snprintf(run_id, 64, "%s", idreqs[before].run_id);
}

/* Nothing of run_id was stored or published. */
static void require_absent(const char *run_id)
{
	char q[300];

	snprintf(q, sizeof(q), "SELECT count(*) FROM scheduler.runs WHERE id = '%.64s'", run_id);
	SW_REQUIRE(sql_long(q) == 0, "refused run %s stored", run_id);
	snprintf(q, sizeof(q), "SELECT count(*) FROM scheduler.steps WHERE run_id = '%.64s'",
		 run_id);
	SW_REQUIRE(sql_long(q) == 0, "refused run %s has steps", run_id);
	snprintf(q, sizeof(q), "SELECT count(*) FROM scheduler.outbox WHERE key = '%.64s'", run_id);
	SW_REQUIRE(sql_long(q) == 0, "refused run %s has outbox rows", run_id);
	SW_REQUIRE(events_of(run_id, "run.submitted", NULL, 0, NULL) == 0 &&
		       events_of(run_id, "step.dispatched", NULL, 0, NULL) == 0,
		   "refused run %s published events", run_id);
}

/* The scheduler refuses to start with extra; its log says why (needle). */
static void refuses_to_start(const char *needle)
{
	char path[600], *text;
	int64_t until = sw_mono_ns() + 30 * 1000000000LL;

	sched_start();
	while (sw_test_proc_running(sched_pid)) {
		SW_REQUIRE(sw_mono_ns() < until, "the scheduler started (wanted: %s)", needle);
		sw_test_msleep(50);
	}
	sched_pid = -1;
	snprintf(path, sizeof(path), "%s/scheduler.log", data_dir);
	{
		FILE *f = fopen(path, "r");
		size_t n;

		SW_CHECK(f != NULL);
		text = calloc(1, 1 << 20);
		n = fread(text, 1, (1 << 20) - 1, f);
		text[n] = '\0';
		fclose(f);
	}
	SW_REQUIRE(strstr(text, needle) != NULL, "the log does not say '%s'", needle);
	free(text);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	SW_CHECK(f != NULL && fputs(text, f) >= 0 && fclose(f) == 0);
	SW_CHECK(chmod(path, mode) == 0);
}

static void scenario_identity(void)
{
	static const char *const topics[] = {"sagewai.identity", NULL};
	static const struct {
		const char *code;
		long status;
	} refusals[] = {
		{"revoked", 409},	      {"missing", 422},		    {"not_allowed", 403},
		{"credential_in_input", 422}, {"backend_unavailable", 503}, {"bad_request", 400},
	};
	char keyfile[600], badfile[600], openfile[600], kf_env[700], bad_env[700], open_env[700];
	char gid[200], absent[16][64], body[512], msg[200];
	size_t nabsent = 0, i;
	char *kal, *id;
	struct idreq *r;
	struct dispatch *held = NULL;
	json_t *j;
	int64_t t0;
	long st;

	snprintf(keyfile, sizeof(keyfile), "%s/mac.key", data_dir);
	snprintf(badfile, sizeof(badfile), "%s/mac-bad.key", data_dir);
	snprintf(openfile, sizeof(openfile), "%s/mac-open.key", data_dir);
	write_file(keyfile, MAC_KEY_HEX "\n", 0600);
	write_file(badfile, "0011zz\n", 0600);
	write_file(openfile, MAC_KEY_HEX "\n", 0644);
	snprintf(kf_env, sizeof(kf_env), "SAGEWAI_SECRET_MAC_KEY_FILE=%s", keyfile);
	snprintf(bad_env, sizeof(bad_env), "SAGEWAI_SECRET_MAC_KEY_FILE=%s", badfile);
	snprintf(open_env, sizeof(open_env), "SAGEWAI_SECRET_MAC_KEY_FILE=%s", openfile);

	/* SAGEWAI_IDENTITY=1 without a good, private key file: no start */
	sched_extra[0] = "SAGEWAI_IDENTITY=1";
	sched_extra[1] = NULL;
	refuses_to_start("SAGEWAI_IDENTITY=1 needs SAGEWAI_SECRET_MAC_KEY_FILE");
	sched_extra[1] = bad_env;
	sched_extra[2] = NULL;
	refuses_to_start("must hold 64 hex digits");
	sched_extra[1] = open_env;
	refuses_to_start("SAGEWAI_SECRET_MAC_KEY_FILE");
	sched_extra[1] = "SAGEWAI_SECRET_MAC_KEY=" MAC_KEY_HEX;
	refuses_to_start("give the MAC key as a file");
	/* the direct input check is on (1) or off (0), nothing else */
	sched_extra[1] = kf_env;
	sched_extra[2] = "SAGEWAI_IDENTITY_DIRECT_CHECK=yes";
	sched_extra[3] = NULL;
	refuses_to_start("SAGEWAI_IDENTITY_DIRECT_CHECK: 'yes' is not a number in 0..1");
	sched_extra[2] = "SAGEWAI_IDENTITY_DIRECT_CHECK=2";
	refuses_to_start("SAGEWAI_IDENTITY_DIRECT_CHECK: '2' is not a number in 0..1");
	sched_extra[2] = NULL;
	SW_REQUIRE(system("true") == 0, "shell");

	/* identity_scoped runs only with identity AND in SAGEWAI_RUNNABLE_MODES */
	sched_extra[1] = kf_env;
	sched_extra[2] = "SAGEWAI_RUNNABLE_MODES=in_process";
	sched_extra[3] = NULL;
	sched_start();
	wait_ready();
	register_wf(idwf_yaml, NULL);
	st = http_s("POST", "/v1/runs", "{\"workflow\": \"idwf\", \"input\": {}}", NULL, &j);
	SW_REQUIRE(st == 422 && !strcmp(err_code(j), "mode_unavailable"), "not runnable: %ld %s",
		   st, last_body);
	json_decref(j);
	sched_stop(SIGTERM);

	snprintf(gid, sizeof(gid), "%s-identity", group);
	idtail = sw_test_kafka_tail(gid, topics);
	id_keys = json_loads(id_keys_json, 0, NULL);
	SW_CHECK(id_keys != NULL);
	SW_CHECK(pthread_create(&id_thread, NULL, id_main, NULL) == 0);
	sched_extra[2] = "SAGEWAI_RUNNABLE_MODES=in_process,identity_scoped";
	sched_extra[3] = "SAGEWAI_IDENTITY_TIMEOUT_MS=2000";
	sched_extra[4] = "SAGEWAI_ADMIN_TOKEN=op-id";
	sched_extra[5] = NULL;
	sched_start();
	wait_ready();
	json_decref(user_create("default", "alice", "op-id", 201));
	kal = user_key("default", "alice", "op-id");

	/* ok: stored, pinned keys in every dispatch of the step -- a retry,
	 * and one made by a restarted scheduler from what it stored */
	behave = behave_id;
	hold_secret = 1;
	id = submit("idwf",
		    "{\"deploy\": {\"token\": \"tok-ABCDEF123\"},"
		    " \"note\": \"please use hunter2secret now\"}",
		    kal);
	SW_REQUIRE(id_count() == 1, "%zu resolution requests", id_count());
	r = &idreqs[0];
	SW_REQUIRE(!strcmp(r->run_id, id), "request run id %s, run %s", r->run_id, id);
	SW_REQUIRE(!strcmp(r->tenant, "default"), "request tenant %s", r->tenant);
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(r->ev, "user")), "alice") &&
		       !strcmp(json_string_value(json_object_get(r->ev, "workflow")), "idwf") &&
		       json_integer_value(json_object_get(r->ev, "workflow_version")) == 1,
		   "request fields");
	j = json_loads("[{\"step\": \"secret\", \"mode\": \"identity_scoped\", \"agent\": \"\","
		       " \"profile\": \"payroll\"}]",
		       0, NULL);
	SW_REQUIRE(json_equal(j, json_object_get(r->ev, "steps")), "request steps");
	json_decref(j);
	SW_REQUIRE(has_mac(r, "input.deploy.token", "tok-ABCDEF123"), "MAC of the input token");
	SW_REQUIRE(has_mac(r, "input.note", "hunter2secret"), "MAC of a word of the input");
	SW_REQUIRE(has_mac(r, "input.note", "please use hunter2secret now"), "MAC of the string");
	SW_REQUIRE(!has_mac(r, "input.note", "use"), "a 3-byte token was MAC'd");
	SW_REQUIRE(has_mac(r, "steps.local.with.motto", "carry-on-42"), "MAC of a with token");
	SW_REQUIRE(has_mac(r, "steps.secret.env.MODE", "fast-lane"), "MAC of an env value");
	{
		char q[1200];

		snprintf(q, sizeof(q),
			 "SELECT count(*) FROM scheduler.steps WHERE run_id = '%s' AND"
			 " ((name = 'secret' AND identity::jsonb = '%s'::jsonb) OR"
			 "  (name = 'local' AND identity IS NULL))",
			 id, id_keys_json);
		SW_REQUIRE(sql_long(q) == 2, "steps.identity as stored");
	}
	require_pinned(dispatch_of(id, "secret", 1));
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(dispatch_of(id, "local", 1)->ev,
							      "identity")),
			   ""),
		   "identity of an in_process step");
	for (i = 0; i < ndispatches; i++)
		if (!strcmp(dispatches[i].run_id, id) && !strcmp(dispatches[i].step, "secret"))
			held = &dispatches[i];
	SW_CHECK(held != NULL);
	sched_stop(SIGTERM);
	sched_start();
	wait_ready();
	send_finished(held, 1, "FAILED", NULL, "boom");
	require_pinned(dispatch_of(id, "secret", 2));
	j = wait_run(id, kal, 60);
	SW_REQUIRE(!strcmp(jstate(j), "succeeded"), "identity run: %s", last_body);
	json_decref(j);
	check_run_user(id, kal, "alice");
	hold_secret = 0;
	free(id);

	/* many strings: every one MAC'd once (the set grows as it fills), a
	 * repeated one not twice; past the limit, 413 before identity is asked */
	{
		size_t n = 300, cap = 200000, len = 0, k, before;
		char *big = malloc(cap), val[32], fld[32], val2[65];
		json_t *m;

		SW_CHECK(big != NULL);
		len += (size_t)snprintf(big + len, cap - len,
					"{\"workflow\": \"idwf\", \"input\": {");
		for (k = 0; k < n; k++)
			len += (size_t)snprintf(big + len, cap - len,
						"\"k%03zu\": \"val-%03zu-zz\", ", k, k);
		len += (size_t)snprintf(big + len, cap - len, "\"again\": \"val-007-zz\"}}");
		before = id_count();
		st = http_s("POST", "/v1/runs", big, kal, &j);
		SW_REQUIRE(st == 201, "300 strings: %ld %s", st, last_body);
		track(json_string_value(json_object_get(j, "run_id")));
		json_decref(j);
		for (k = 0; id_count() == before && k < 100; k++)
			pump(100);
		SW_REQUIRE(id_count() == before + 1, "no request for the 300 strings");
		r = &idreqs[before];
		for (k = 0; k < n; k++) {
			snprintf(fld, sizeof(fld), "input.k%03zu", k);
			snprintf(val, sizeof(val), "val-%03zu-zz", k);
			SW_REQUIRE(has_mac(r, fld, val), "MAC of %s", fld);
		}
		{
			size_t same = 0;

			mac_hex("val-007-zz", val2);
			json_array_foreach(json_object_get(r->ev, "input_macs"), k, m)
				same +=
				    !strcmp(json_string_value(json_object_get(m, "mac")), val2);
			SW_REQUIRE(same == 1, "a repeated string MAC'd %zu times", same);
		}

		len =
		    (size_t)snprintf(big, cap, "{\"workflow\": \"idwf\", \"input\": {\"list\": [");
		for (k = 0; k <= 10000; k++)
			len += (size_t)snprintf(big + len, cap - len, "%s\"v%05zu-abcd\"",
						k ? "," : "", k);
		SW_CHECK(len + 8 < cap);
		snprintf(big + len, cap - len, "]}}");
		before = id_count();
		st = http_s("POST", "/v1/runs", big, kal, &j);
		SW_REQUIRE(st == 413 &&
			       strstr(err_msg(j), "more than 10000 distinct strings") != NULL,
			   "10,001 strings: %ld %.300s", st, last_body);
		json_decref(j);
		pump(300);
		SW_REQUIRE(id_count() == before, "identity asked about 10,001 strings");

		/* fewer strings, on long paths: a request larger than Kafka takes */
		len = (size_t)snprintf(big, cap, "{\"workflow\": \"idwf\", \"input\": ");
		for (k = 0; k < 70; k++)
			len += (size_t)snprintf(big + len, cap - len, "{\"aa\": ");
		len += (size_t)snprintf(big + len, cap - len, "[");
		for (k = 0; k < 4000; k++)
			len += (size_t)snprintf(big + len, cap - len, "%s\"v%05zu-abcd\"",
						k ? "," : "", k);
		len += (size_t)snprintf(big + len, cap - len, "]");
		for (k = 0; k < 70; k++)
			len += (size_t)snprintf(big + len, cap - len, "}");
		SW_CHECK(len + 8 < cap);
		snprintf(big + len, cap - len, "}");
		before = id_count();
		st = http_s("POST", "/v1/runs", big, kal, &j);
		SW_REQUIRE(st == 413 && !strcmp(err_code(j), "too_large") &&
			       strstr(err_msg(j), "bytes of MACs and field paths") != NULL,
			   "4,000 strings on 216-byte paths: %ld %.300s", st, last_body);
		json_decref(j);
		pump(300);
		SW_REQUIRE(id_count() == before, "identity asked with a request too large");
		free(big);
	}

	/* each refusal: its status, its code, its error; nothing stored */
	for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		snprintf(msg, sizeof(msg), "%s: GITHUB_TOKEN (secret gh_token v2)",
			 refusals[i].code);
		id_set(refusals[i].code, msg, 0, 0);
		refused("{\"workflow\": \"idwf\", \"input\": {\"deploy\": {\"token\": \"t\"}}}", kal,
			refusals[i].status, refusals[i].code, msg, absent[nabsent++]);
	}
	/* an unknown code: the service is not trusted to be up to date */
	id_set("weird", "?", 0, 0);
	refused("{\"workflow\": \"idwf\", \"input\": {}}", NULL, 503, "identity_unavailable", NULL,
		absent[nabsent++]);
	/* an answer to another request id first: not taken for ours */
	id_set("missing", "missing: secret gh_token", 0, 1);
	refused("{\"workflow\": \"idwf\", \"input\": {}}", NULL, 422, "missing",
		"missing: secret gh_token", absent[nabsent++]);
	/* no answer: 503 after the timeout; a late answer changes nothing */
	id_set(NULL, NULL, 1, 0);
	t0 = sw_mono_ns();
	refused("{\"workflow\": \"idwf\", \"input\": {}}", NULL, 503, "identity_unavailable", NULL,
		absent[nabsent++]);
	SW_REQUIRE(sw_mono_ns() - t0 >= 1900000000LL && sw_mono_ns() - t0 < 15000000000LL,
		   "answered after %lld ms", (long long)((sw_mono_ns() - t0) / 1000000));
	id_set(NULL, NULL, 0, 0);
	r = &idreqs[id_count() - 1];
	id_send(r->tenant, r->run_id, r->request_id, 1, "", "", id_steps(r));
	sw_test_kafka_flush(producer, 10000);

	/* garbage on sagewai.identity.replies disturbs nothing */
	{
		static const char junk[] = "not avro at all";
		static const uint8_t badfp[] = {0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9};
		static const char rt[] = "sagewai.identity.replies";
		struct sw_event_header h;
		char err[256];
		void *buf;
		size_t len;

		sw_test_kafka_send(producer, rt, "x", junk, sizeof(junk) - 1);
		sw_test_kafka_send(producer, rt, "x", badfp, sizeof(badfp));
		sw_test_kafka_send(producer, rt, "x", "", 0);
		json_t *f = json_pack("{s:s, s:b, s:s, s:s, s:[], s:[]}", "request_id",
				      "01890000-0000-7000-8000-000000000000", "ok", 1, "code", "",
				      "error", "", "steps", "denied");

		sw_event_header_init(&h, "identity.resolved", "sched-test-identity");
		SW_CHECK(sw_event_encode(reg, "identity.resolved", &h, f, &buf, &len, err,
					 sizeof(err)) == 0);
		json_decref(f);
		sw_test_kafka_send(producer, rt, "x", buf, len - 3); /* cut */
		sw_test_kafka_send(producer, rt, "x", buf, len);     /* nobody's */
		free(buf);
		sw_test_kafka_flush(producer, 10000);
	}
	id = submit("idwf", "{\"deploy\": {\"token\": \"after-garbage\"}}", NULL);
	j = wait_run(id, NULL, 60);
	SW_REQUIRE(!strcmp(jstate(j), "succeeded"), "run after garbage: %s", last_body);
	json_decref(j);
	free(id);
	SW_REQUIRE(metric_reaches("sagewai_scheduler_identity_garbage_total", 3, 10) >= 3,
		   "garbage counted");
	SW_REQUIRE(metric_reaches("sagewai_scheduler_identity_ignored_total", 3, 10) >= 3,
		   "decoy, late and nobody's answers counted as ignored");
	SW_REQUIRE(metric("sagewai_scheduler_identity_timeouts_total") == 1, "timeouts");

	/* a credential shape is refused before identity is asked */
	{
		size_t before = id_count();

		snprintf(body, sizeof(body),
			 "{\"workflow\": \"idwf\", \"input\": {\"deploy\": {\"token\": \"%s\"}}}",
			 T_GHP);
		st = http_s("POST", "/v1/runs", body, NULL, &j);
		SW_REQUIRE(st == 422 && !strcmp(err_code(j), "credential_in_input") &&
				   !strncmp(err_msg(j), "input.deploy.token looks like a GitHub token",
					    44),
			   "shape with identity: %ld %s", st, last_body);
		json_decref(j);
		pump(500);
		SW_REQUIRE(id_count() == before, "identity was asked about a refused shape");
	}

	/* nothing of a refused submit anywhere, events included */
	pump(1500);
	for (i = 0; i < nabsent; i++)
		require_absent(absent[i]);
	SW_REQUIRE(http_s("GET", "/healthz", NULL, NULL, NULL) == 200, "healthz");
	sched_stop(SIGTERM);
	{
		char cmd[800];

		snprintf(cmd, sizeof(cmd), "grep -q -e '%s' -e '%s' -e hunter2secret %s/scheduler.log",
			 MAC_KEY_HEX, kal, data_dir);
		SW_REQUIRE(system(cmd) != 0, "the MAC key, a key or an input value is in the log");
	}
	id_stop = 1;
	pthread_join(id_thread, NULL);
	rd_kafka_destroy(idtail);
	idtail = NULL;
	json_decref(id_keys);
	free(kal);
}

/* Two schedulers in one consumer group share the runs' partitions, so
 * each moves some of the runs. A stream held by one instance follows the
 * runs the other moves, from the events both read: the poll is an hour
 * here, so without them the streams of the other's runs would not end. */
static void scenario_sse_peers(void)
{
	enum { N = 8, ROUNDS = 6 };
	struct stream s[N * ROUNDS];
	char *ids[N * ROUNDS];
	pid_t pid_a, pid_b;
	int port_a, port_b, i, n = 0;
	int64_t until;
	double moved_a = 0, moved_b = 0;

	sched_extra[0] = "SAGEWAI_SSE_POLL_MS=3600000";
	sched_start();
	wait_ready();
	register_wf(chain_yaml, NULL);
	other_pid = pid_a = sched_pid;
	port_a = http_port;
	http_port = port_b = sw_test_port_free();
	sched_start(); /* the same group */
	wait_ready();
	pid_b = sched_pid;
	sched_extra[0] = NULL;
	until = sw_mono_ns() + 90 * 1000000000LL;
	while (metric("sagewai_scheduler_partitions_assigned") < 1) {
		SW_REQUIRE(sw_mono_ns() < until, "the second scheduler never got a partition");
		pump(500);
	}
	/*
	 * Which instance moves a run depends on its id's partition: eight runs
	 * all land on the first instance's partitions now and then (1 in 256
	 * with an even split), so another round of eight goes in until the
	 * other instance has moved some.
	 */
	while (moved_b == 0 && n < N * ROUNDS) {
		int first = n;

		for (; n < first + N; n++) {
			http_port = port_a;
			ids[n] = submit_chain('p', n);
			stream_open(&s[n], ids[n], 0); /* every stream at the first instance */
		}
		for (i = first; i < n; i++) {
			stream_wait(&s[i], &s[i].done, 90);
			pthread_join(s[i].th, NULL);
			SW_REQUIRE(s[i].rc == CURLE_OK && s[i].status == 200,
				   "stream %d: %s (%ld)", i, curl_easy_strerror(s[i].rc),
				   s[i].status);
			SW_REQUIRE(strstr(s[i].m.p, "\"succeeded\"") != NULL,
				   "stream %d ended without the run's end:\n%s", i, s[i].m.p);
			free(s[i].m.p);
		}
		http_port = port_b;
		moved_b = metric("sagewai_scheduler_transitions_total");
		http_port = port_a;
		moved_a = metric("sagewai_scheduler_transitions_total");
		fprintf(
		    stderr,
		    "sse_peers: %d runs: transitions %.0f at the stream's instance, %.0f at the "
		    "other\n",
		    n, moved_a, moved_b);
	}
	/* else every run was the first instance's and this proved nothing */
	SW_REQUIRE(moved_b > 0, "the other instance moved none of %d runs", n);
	check_chains(ids, n, 'p', 1000, 0);
	sched_pid = pid_b;
	sched_stop(SIGTERM);
	sched_pid = pid_a;
	other_pid = -1;
	sched_stop(SIGTERM);
}

/*
 * plans: the scheduler's statements keep finding their rows by key when
 * the tables grow after a plan was cached. A connection caches a statement's
 * generic plan after five uses; made while a table is small and has no
 * statistics (a new database's first minute, before autovacuum), it may read
 * the whole table, and it stays in use as the table grows (inserts do not
 * invalidate it). Seen twice: the run read (sched_run_json_sql, every GET
 * /v1/runs/{id}, event stream read and waiting submit) once filtered id on
 * runs_tenant_created and read all of the tenant's runs at every call; a
 * group's batches (schema.c, sched_batch_stmts, and bump_revs) joined
 * unnest($1) to a scan of all of runs or steps at every group commit. And
 * planned afresh on a table of a few thousand rows without statistics, a
 * hash join over a scan of it still looks cheaper than as many lookups by
 * key as the batch holds rows.
 *
 * Here, with autovacuum off on runs and steps and one connection: 192
 * chain runs with the tables almost empty (every statement used more than
 * five times, the pump answering many dispatches at once so that groups
 * batch), then 5,000 runs of the same tenant and their 15,000 steps added,
 * then 64 runs more. Their statements must not have scanned runs or steps
 * whole (pg_stat_user_tables.seq_scan, read once every backend's counters
 * are in), and the run read, prepared and made generic on the small table
 * in this connection, must use runs_pkey and read a handful of buffers.
 */
extern const char *const sched_run_json_sql;  /* services/scheduler/schema.c */
extern const char *const sched_runs_json_sql; /* the streams' reads together */

/* The lines of the EXPLAIN q into plan. */
static void explain_into(PGconn *c, const char *q, struct sw_buf *plan)
{
	PGresult *res = PQexec(c, q);

	SW_REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK, "explain: %s", PQerrorMessage(c));
	for (int i = 0; i < PQntuples(res); i++) {
		sw_buf_puts(plan, PQgetvalue(res, i, 0));
		sw_buf_puts(plan, "\n");
	}
	PQclear(res);
	SW_REQUIRE(plan->p != NULL && !plan->oom, "no plan");
}

static void exec_ok(PGconn *c, const char *q)
{
	PGresult *res = PQexec(c, q);

	SW_REQUIRE(PQresultStatus(res) == PGRES_COMMAND_OK ||
		       PQresultStatus(res) == PGRES_TUPLES_OK,
		   "%.60s: %s", q, PQerrorMessage(c));
	PQclear(res);
}

/* n chain runs submitted at once, each waited for (by its id: the run
 * read, no scan of runs by the test itself). One id is kept in keep. */
static void chains_done(int n, char tag, char *keep, size_t len)
{
	char *ids[64];
	int i;

	SW_CHECK(n <= 64);
	for (i = 0; i < n; i++)
		ids[i] = submit_chain(tag, i);
	for (i = 0; i < n; i++) {
		json_t *run = wait_run(ids[i], NULL, 120);
		char word[16];

		snprintf(word, sizeof(word), "%c%d", tag, i);
		check_chain_run(run, word, i);
		json_decref(run);
		if (i == 0 && keep != NULL)
			snprintf(keep, len, "%s", ids[i]);
		free(ids[i]);
	}
}

/* Whole-table scans of runs and steps so far. A backend sends its
 * counters when idle, at most once a second, or 10 s later: 11 s of
 * quiet first. */
static long table_scans(void)
{
	pump(11000);
	return sql_long("SELECT sum(seq_scan) FROM pg_stat_user_tables"
			" WHERE schemaname = 'scheduler' AND relname IN ('runs', 'steps')");
}

static void scenario_plans(void)
{
	char sql[4096], id[SW_UUID_STRLEN];
	double batched;
	long scans;
	PGconn *c;
	struct sw_buf plan = {0};

	/* one connection: each statement used there more than five times */
	sched_extra[0] = "SAGEWAI_PG_POOL=1";
	sched_extra[1] = NULL;
	sched_start();
	sched_extra[0] = NULL;
	wait_ready();
	c = PQconnectdb(db_dsn);
	SW_REQUIRE(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	exec_ok(c, "ALTER TABLE scheduler.runs SET (autovacuum_enabled = false);"
		   "ALTER TABLE scheduler.steps SET (autovacuum_enabled = false);"
		   "SET search_path = scheduler, public;"
		   "SET plan_cache_mode = force_generic_plan");
	register_wf(chain_yaml, NULL);
	chains_done(64, 'a', id, sizeof(id));
	chains_done(64, 'b', NULL, 0);
	chains_done(64, 'c', NULL, 0);
	fprintf(stderr, "plans: %g rows batched in %g groups before the tables grew\n",
		metric("sagewai_scheduler_batched_rows_total"),
		metric("sagewai_scheduler_group_commits_total"));

	snprintf(sql, sizeof(sql), "PREPARE run_read (uuid, text) AS %s", sched_run_json_sql);
	exec_ok(c, sql);
	snprintf(sql, sizeof(sql), "EXPLAIN EXECUTE run_read ('%s', 'default')", id);
	exec_ok(c, sql); /* the generic plan, made and cached now */
	snprintf(sql, sizeof(sql), "PREPARE runs_read (uuid[], text[]) AS %s",
		 sched_runs_json_sql);
	exec_ok(c, sql);
	snprintf(sql, sizeof(sql), "EXPLAIN EXECUTE runs_read ('{%s,%s}', '{default,other}')", id,
		 id);
	exec_ok(c, sql);

	exec_ok(c, "INSERT INTO runs (id, tenant, workflow, version, input, state, rev, created)"
		   " SELECT gen_random_uuid(), 'default', 'chain', 1, '{}', 'succeeded', 3,"
		   " now() - make_interval(secs => g) FROM generate_series(1, 5000) g;"
		   "INSERT INTO steps (run_id, idx, name, mode, state)"
		   " SELECT id, i, 's', 'in_process', 'succeeded' FROM runs,"
		   " generate_series(0, 2) i ON CONFLICT DO NOTHING");
	scans = table_scans();
	batched = metric("sagewai_scheduler_batched_rows_total");
	chains_done(64, 'd', NULL, 0);
	/* the later runs' groups batched too: their plans were used */
	SW_REQUIRE(metric("sagewai_scheduler_batched_rows_total") > batched,
		   "no group sent its rows batched after the tables grew");
	scans = table_scans() - scans;
	SW_REQUIRE(scans == 0,
		   "%ld scans of the whole of runs or steps by 64 runs after the tables grew"
		   " (a plan made while they were small)",
		   scans);
	sched_stop(SIGTERM);

	snprintf(sql, sizeof(sql),
		 "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE run_read ('%s', 'default')", id);
	explain_into(c, sql, &plan);
	SW_REQUIRE(strstr(plan.p, "runs_pkey") != NULL && strstr(plan.p, "Seq Scan") == NULL &&
		       strstr(plan.p, "runs_tenant_created") == NULL,
		   "the run read does not find its run by primary key once runs grew:\n%s",
		   plan.p);
	sw_buf_free(&plan);
	exec_ok(c, "DEALLOCATE run_read");
	/* the streams' reads together: by key too, a row a run in order, NULL
	 * for another tenant's */
	snprintf(sql, sizeof(sql),
		 "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE runs_read ('{%s,%s}',"
		 " '{default,other}')",
		 id, id);
	memset(&plan, 0, sizeof(plan));
	explain_into(c, sql, &plan);
	SW_REQUIRE(
	    strstr(plan.p, "runs_pkey") != NULL && strstr(plan.p, "Seq Scan") == NULL &&
		strstr(plan.p, "runs_tenant_created") == NULL,
	    "the streams' run read does not find its runs by primary key once runs grew:\n%s",
	    plan.p);
	sw_buf_free(&plan);
	{
		PGresult *res;

		snprintf(sql, sizeof(sql),
			 "EXECUTE runs_read ('{%s,%s,00000000-0000-7000-8000-000000000000}',"
			 " '{default,other,default}')",
			 id, id);
		res = PQexec(c, sql);
		SW_REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 3,
			   "runs_read: %s", PQerrorMessage(c));
		SW_REQUIRE(!PQgetisnull(res, 0, 0) && strstr(PQgetvalue(res, 0, 0), id) != NULL &&
			       PQgetisnull(res, 1, 0) && PQgetisnull(res, 2, 0),
			   "runs_read: its run, then NULL for another tenant and for no run");
		PQclear(res);
	}
	exec_ok(c, "DEALLOCATE runs_read");
	PQfinish(c);
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
	    {"three_step", scenario_three_step},
	    {"repeat", scenario_repeat},
	    {"retry", scenario_retry},
	    {"snapshot", scenario_snapshot},
	    {"run_max", scenario_run_max},
	    {"cancel", scenario_cancel},
	    {"timeout", scenario_timeout},
	    {"kill9", scenario_kill9},
	    {"pgrestart", scenario_pgrestart},
	    {"twin", scenario_twin},
	    {"sse_peers", scenario_sse_peers},
	    {"outbox", scenario_outbox},
	    {"concurrent", scenario_concurrent},
	    {"batch", scenario_batch},
	    {"batch_groups", scenario_batch_groups},
	    {"bad_input", scenario_bad_input},
	    {"preview_gate", scenario_preview_gate},
	    {"replay", scenario_replay},
	    {"tenancy", scenario_tenancy},
	    {"sse", scenario_sse},
	    {"worker", scenario_worker},
	    {"users", scenario_users},
	    {"creds", scenario_creds},
	    {"identity", scenario_identity},
	    {"plans", scenario_plans},
	};
	const struct sw_test_scenario *sc =
	    sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]));

	snprintf(scenario, sizeof(scenario), "%s", sc->name);
	setup();
	sc->fn();
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	rd_kafka_destroy(producer);
	sw_events_registry_destroy(reg);
	fprintf(stderr, "scheduler %s: ok\n", sc->name);
	return 0;
}
