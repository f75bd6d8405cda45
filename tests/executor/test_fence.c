/*
 * executor_fence: an executor never starts a dispatch whose attempt is no
 * longer current, and stops one that stops being current while it runs
 * (sw_executor.h, "fences"). Against librdkafka's mock cluster, batches
 * handed to sw_executor_consume directly, no results table.
 *
 *   expired     a dispatch consumed after its deadline (header time +
 *               timeout_ms) finishes TIMED_OUT "fenced: ..." unbegun;
 *               one that waited in the queue past it likewise; an active
 *               one is stopped at its deadline (TIMED_OUT "timeout: ...")
 *   cancelled   a dispatch of a run already cancelled: CANCELLED, unbegun
 *   finished    a dispatch of a run already finished: CANCELLED
 *               "fenced: ...", unbegun; an active step of a run that
 *               finishes is stopped
 *   superseded  attempt 1 consumed after attempt 2 is refused; attempt 1
 *               running when attempt 2 comes is stopped, attempt 2 runs
 *   instance    group.instance.id is checked, and a static member connects
 *
 * Waits are bounded (a stuck test fails); nothing asserts a duration: the
 * deadlines used are either long past or a little ahead, and the checks
 * only wait for them to pass.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sw_executor.h"
#include "sw_test.h"

#define MAXJ 32

static struct state {
	struct sw_event_registry *reg;
	struct sw_executor *ex;
	struct sw_executor_job *started[MAXJ]; /* in start order; NULL once finished */
	char started_ids[MAXJ][128];
	size_t nstarted, nbegun, nfenced, nhalted;
	struct {
		char step_id[128];
		enum sw_step_status st;
		char error[512];
	} finished[MAXJ];
	size_t nfinished;
	int64_t offset; /* the next offset on sagewai.steps.worker 0 */
	int64_t roffset; /* the next offset on sagewai.runs 0 */
} S;

static int t_wants(void *arg, const char *mode)
{
	(void)arg;
	(void)mode;
	return 1;
}

static int t_job_new(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	(void)x;
	return 0;
}

static void t_begin(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	S.nbegun++;
	sw_executor_admit(x);
}

static void t_start(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	SW_CHECK(x->phase == SW_EXECUTOR_ACTIVE && S.nstarted < MAXJ);
	snprintf(S.started_ids[S.nstarted], sizeof(S.started_ids[0]), "%s", x->dh.step_id);
	S.started[S.nstarted++] = x;
}

static void t_halt(void *arg, struct sw_executor_job *x, enum sw_step_status st)
{
	size_t i;

	(void)arg;
	(void)st;
	S.nhalted++;
	for (i = 0; i < S.nstarted; i++)
		if (S.started[i] == x)
			S.started[i] = NULL;
}

static void t_job_free(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	(void)x;
}

static const char *field(const struct sw_executor_report *r, const char *key)
{
	size_t i;

	for (i = 0; r->fields[i] != NULL; i += 2)
		if (strcmp(r->fields[i], key) == 0)
			return r->fields[i + 1];
	return "";
}

static void t_report(void *arg, const struct sw_executor_report *r)
{
	(void)arg;
	if (r->kind == SW_EXECUTOR_FENCED) {
		S.nfenced++;
		SW_CHECK(field(r, "reason")[0] != '\0');
	} else if (r->kind == SW_EXECUTOR_FINISHED) {
		SW_CHECK(S.nfinished < MAXJ);
		snprintf(S.finished[S.nfinished].step_id, sizeof(S.finished[0].step_id), "%s",
			 r->job->dh.step_id);
		S.finished[S.nfinished].st = r->job->status;
		snprintf(S.finished[S.nfinished].error, sizeof(S.finished[0].error), "%s",
			 field(r, "error"));
		S.nfinished++;
	}
}

static void t_fatal(void *arg, const char *what, const char *why)
{
	(void)arg;
	SW_CHECKF(0, "fatal: %s: %s", what, why);
}

static const struct sw_executor_ops ops = {
    .wants = t_wants,
    .job_new = t_job_new,
    .begin = t_begin,
    .start = t_start,
    .halt = t_halt,
    .job_free = t_job_free,
    .report = t_report,
    .fatal = t_fatal,
};

/* ---- messages ------------------------------------------------------------ */

static void feed_one(const char *topic, int64_t offset, void *value, size_t len)
{
	struct sw_bus_msg m;

	memset(&m, 0, sizeof(m));
	m.topic = topic;
	m.offset = offset;
	m.value = value;
	m.len = len;
	sw_executor_consume(&m, 1, S.ex);
	free(value);
}

static void *encode(const char *type, const struct sw_event_header *h, json_t *o, size_t *len)
{
	char err[256];
	void *buf = NULL;

	SW_CHECK(o != NULL);
	SW_CHECKF(sw_event_encode(S.reg, type, h, o, &buf, len, err, sizeof(err)) == 0, "%s", err);
	json_decref(o);
	return buf;
}

/* Consume a dispatch of attempt of run/step with timeout_ms, sent age_ms
 * ago; its step id into step_id. */
static void dispatch(const char *run, const char *step, int attempt, int64_t timeout_ms,
		     int64_t age_ms, char *step_id, size_t idlen)
{
	struct sw_event_header h;
	void *buf;
	size_t len;

	sw_event_header_init(&h, "step.dispatched", "sagewai-scheduler");
	h.time_us -= age_ms * 1000;
	snprintf(h.run_id, sizeof(h.run_id), "%s", run);
	snprintf(h.step_id, sizeof(h.step_id), "%s/%s/%d", run, step, attempt);
	snprintf(step_id, idlen, "%s", h.step_id);
	buf = encode("step.dispatched", &h,
		     json_pack("{s:s, s:i, s:s, s:i, s:s, s:I}", "step", step, "index", 0, "mode",
			       "in_process", "attempt", attempt, "spec", "{\"uses\":\"x\"}",
			       "timeout_ms", (json_int_t)timeout_ms),
		     &len);
	feed_one(SW_TOPIC_STEPS_WORKER, S.offset++, buf, len);
}

static void run_event(const char *type, const char *run)
{
	struct sw_event_header h;
	json_t *o;
	void *buf;
	size_t len;

	sw_event_header_init(&h, type, "sagewai-scheduler");
	snprintf(h.run_id, sizeof(h.run_id), "%s", run);
	o = strcmp(type, "run.finished") == 0
		? json_pack("{s:s, s:n, s:s}", "status", "FAILED", "output", "error", "x")
		: json_object();
	buf = encode(type, &h, o, &len);
	feed_one(SW_TOPIC_RUNS, S.roffset++, buf, len);
}

/* ---- checks --------------------------------------------------------------- */

static int was_started(const char *step_id)
{
	size_t i;

	for (i = 0; i < S.nstarted; i++)
		if (strcmp(S.started_ids[i], step_id) == 0)
			return 1;
	return 0;
}

/* The job started as step_id, still running. */
static struct sw_executor_job *running(const char *step_id)
{
	size_t i;

	for (i = 0; i < S.nstarted; i++)
		if (S.started[i] != NULL && strcmp(S.started_ids[i], step_id) == 0)
			return S.started[i];
	SW_CHECKF(0, "%s is not running", step_id);
	return NULL;
}

/* step_id finished with st and an error starting with prefix. */
static void require_finished(const char *step_id, enum sw_step_status st, const char *prefix)
{
	size_t i;

	for (i = 0; i < S.nfinished; i++) {
		if (strcmp(S.finished[i].step_id, step_id) != 0)
			continue;
		SW_CHECKF(S.finished[i].st == st, "%s finished %s, not %s", step_id,
			  sw_executor_status_name(S.finished[i].st), sw_executor_status_name(st));
		SW_CHECKF(strncmp(S.finished[i].error, prefix, strlen(prefix)) == 0,
			  "%s: error '%s' does not start with '%s'", step_id, S.finished[i].error,
			  prefix);
		return;
	}
	SW_CHECKF(0, "%s did not finish", step_id);
}

static int is_finished(const char *step_id)
{
	size_t i;

	for (i = 0; i < S.nfinished; i++)
		if (strcmp(S.finished[i].step_id, step_id) == 0)
			return 1;
	return 0;
}

struct waiter {
	struct event_base *base;
	const char *step_id;
	int64_t until_us; /* or a time to pass */
	time_t deadline;
	int met;
};

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;

	(void)fd;
	(void)what;
	if ((w->step_id != NULL && is_finished(w->step_id)) ||
	    (w->step_id == NULL && sw_now_us() >= w->until_us)) {
		w->met = 1;
		event_base_loopbreak(w->base);
	} else if (time(NULL) > w->deadline) {
		event_base_loopbreak(w->base);
	}
}

/* Run the loop until step_id finished (or, NULL, until the wall clock
 * reaches until_us); fail after 60 s. */
static void run_until(struct event_base *base, const char *step_id, int64_t until_us)
{
	struct waiter w = {base, step_id, until_us, time(NULL) + 60, 0};
	struct timeval tv = {0, 5000};
	struct event *ev = event_new(base, -1, EV_PERSIST, tick, &w);

	SW_CHECK(ev != NULL && event_add(ev, &tv) == 0);
	event_base_dispatch(base);
	event_free(ev);
	SW_CHECKF(w.met, "waited in vain for %s", step_id ? step_id : "the time");
}

int main(void)
{
	static const char *const cextra[] = {"session.timeout.ms=6000",
					     "heartbeat.interval.ms=500", NULL};
	/* the dispatch topic first (sw_executor_connect); nothing is produced to
	 * it, the dispatches are fed straight in */
	static const char *const topics[] = {SW_TOPIC_STEPS_WORKER, NULL};
	struct event_base *base = event_base_new();
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_mock_cluster_t *mc;
	struct sw_executor_config c;
	char err[512], bootstrap[512], a[128], b[128], d[128], e[128];
	size_t begun, fenced;
	rd_kafka_t *rk;

	SW_CHECK(base != NULL);
	SW_CHECKF((S.reg = sw_events_registry_new(err, sizeof(err))) != NULL, "%s", err);
	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	SW_CHECKF((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) != NULL, "%s",
		  err);
	SW_CHECK((mc = rd_kafka_mock_cluster_new(rk, 1)) != NULL);
	snprintf(bootstrap, sizeof(bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(mc));
	SW_CHECK(rd_kafka_mock_topic_create(mc, SW_TOPIC_STEPS, 1, 1) == 0);
	SW_CHECK(rd_kafka_mock_topic_create(mc, SW_TOPIC_STEPS_WORKER, 1, 1) == 0);
	SW_CHECK(rd_kafka_mock_topic_create(mc, "fence.other", 1, 1) == 0);

	memset(&c, 0, sizeof(c));
	c.base = base;
	c.reg = S.reg;
	c.producer = "sagewai-test";
	c.metrics_prefix = "sagewai_test";
	c.executor = "sagewai-test@here/1";
	c.bus_max = 1000000;
	c.concurrency = 1;
	c.ops = &ops;

	/* instance: a bad group.instance.id is refused; a good one joins */
	SW_CHECK(sw_executor_instance_ok("") && sw_executor_instance_ok("worker-host1.a_2"));
	SW_CHECK(!sw_executor_instance_ok("has space") && !sw_executor_instance_ok("a/b"));
	c.instance_id = "bad id";
	SW_CHECK(sw_executor_new(&c, err, sizeof(err)) == NULL);
	c.instance_id = "fence-test-1";
	SW_CHECKF((S.ex = sw_executor_new(&c, err, sizeof(err))) != NULL, "%s", err);
	SW_CHECKF(sw_executor_connect(S.ex, bootstrap, "fence-test", topics, NULL, cextra, err,
				      sizeof(err)) == 0,
		  "%s", err);

	/* expired: a dispatch consumed 10 s after it was sent with a 1 s
	 * timeout never begins; its outcome says why */
	dispatch("run-e", "late", 1, 1000, 10000, a, sizeof(a));
	SW_CHECK(S.nbegun == 0 && S.nstarted == 0 && S.nfenced == 1);
	require_finished(a, SW_STEP_TIMED_OUT, "fenced: attempt 1 of step late reached its deadline");
	/* without a timeout there is no deadline, however old */
	dispatch("run-e", "old", 1, 0, 3600 * 1000, b, sizeof(b));
	SW_CHECK(S.nbegun == 1 && was_started(b));

	/* expired while queued: the slot is b's; d's deadline passes while it
	 * waits; when b ends, d is refused, not started */
	dispatch("run-q", "queued", 1, 300, 0, d, sizeof(d));
	SW_CHECK(S.nbegun == 2 && !was_started(d) && !is_finished(d));
	run_until(base, NULL, sw_now_us() + 400 * 1000);
	sw_executor_finish(running(b), SW_STEP_SUCCEEDED, json_true(), NULL);
	run_until(base, d, 0);
	require_finished(d, SW_STEP_TIMED_OUT, "fenced: attempt 1 of step queued reached");
	SW_CHECK(!was_started(d) && S.nfenced == 2);

	/* expired while active: stopped at the deadline */
	dispatch("run-a", "slow", 1, 300, 0, e, sizeof(e));
	SW_CHECK(was_started(e));
	run_until(base, e, 0);
	require_finished(e, SW_STEP_TIMED_OUT, "timeout: attempt 1 of step slow reached");
	SW_CHECK(S.nhalted >= 3);

	/* cancelled: refused before its preflight */
	begun = S.nbegun;
	run_event("run.cancel_requested", "run-c");
	dispatch("run-c", "x", 1, 60000, 0, a, sizeof(a));
	SW_CHECK(S.nbegun == begun && !was_started(a));
	require_finished(a, SW_STEP_CANCELLED, "cancelled: ");

	/* finished: a dispatch of a run that is over is refused; a step
	 * running when its run finishes is stopped */
	run_event("run.finished", "run-f");
	SW_CHECK(sw_executor_run_over(S.ex, "run-f") && !sw_executor_run_over(S.ex, "run-x"));
	dispatch("run-f", "x", 1, 60000, 0, a, sizeof(a));
	SW_CHECK(S.nbegun == begun && !was_started(a));
	require_finished(a, SW_STEP_CANCELLED, "fenced: the run finished before attempt 1");
	dispatch("run-g", "y", 1, 60000, 0, b, sizeof(b));
	SW_CHECK(was_started(b));
	fenced = S.nfenced;
	run_event("run.finished", "run-g");
	SW_CHECK(S.nfenced == fenced + 1);
	require_finished(b, SW_STEP_CANCELLED, "fenced: the run finished while attempt 1");
	run_until(base, b, 0);

	/* superseded: attempt 1 running, attempt 2 comes: 1 stops, 2 runs */
	dispatch("run-s", "z", 1, 60000, 0, a, sizeof(a));
	SW_CHECK(was_started(a));
	dispatch("run-s", "z", 2, 60000, 0, b, sizeof(b));
	require_finished(a, SW_STEP_TIMED_OUT, "fenced: attempt 1 of step z is superseded by "
					       "attempt 2");
	run_until(base, NULL, sw_now_us() + 50 * 1000); /* the slot is handed on the loop */
	SW_CHECK(was_started(b));
	/* a copy of attempt 1 redelivered afterwards is refused */
	begun = S.nbegun;
	fenced = S.nfenced;
	dispatch("run-s", "z", 1, 60000, 0, d, sizeof(d));
	SW_CHECK(S.nbegun == begun && S.nfenced == fenced + 1);
	sw_executor_finish(running(b), SW_STEP_SUCCEEDED, json_true(), NULL);
	run_until(base, b, 0);
	SW_CHECK(sw_executor_running(S.ex) == 0);

	/* every fenced attempt never reached ops->start: only b (old), e, b
	 * (run-g), a and b (run-s) did */
	SW_CHECK(S.nstarted == 5);

	sw_executor_halt(S.ex);
	sw_executor_destroy(S.ex);
	sw_events_registry_destroy(S.reg);
	event_base_free(base);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
