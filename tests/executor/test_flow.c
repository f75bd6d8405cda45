/*
 * executor_flow: sw_executor from consumed messages to committed offsets,
 * against librdkafka's mock cluster (the producer's delivery reports are
 * real) and without a results table. Batches are handed to
 * sw_executor_consume directly, so offsets are the test's own.
 *
 *   - garbage and an empty message are dead-lettered; other events and
 *     modes the service does not run are done at once;
 *   - a copy of a dispatch in flight joins it and is done with it;
 *   - offsets settle in order: nothing past a message not yet done, even
 *     when later ones are;
 *   - one slot: the second dispatch waits, then starts when the first ends;
 *   - a cancelled run: its active step ends CANCELLED, a later dispatch of
 *     it is cancelled before its preflight; a spec that is not JSON and the
 *     preview gate fail in preflight without starting;
 *   - a shutdown takes no more messages and breaks the loop once nothing
 *     is in flight; the close commits.
 *
 * Waits are bounded (a stuck test fails); no check depends on timing.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sw_executor.h"
#include "sw_test.h"

#define MAXJ 16

struct tjob {
	char step[128];
	struct sw_executor_job *x;
};

static struct state {
	struct sw_event_registry *reg;
	struct sw_executor *ex;
	struct tjob *started[MAXJ];
	size_t nstarted, nbegun, nfreed, nhalted;
	size_t deadlettered, duplicates, cancelling;
	int drained; /* the loop ran until the executor broke it */
	struct {
		char step[128];
		enum sw_step_status st;
		char error[256];
	} finished[MAXJ];
	size_t nfinished;
} S;

static int t_wants(void *arg, const char *mode)
{
	(void)arg;
	return strcmp(mode, "sandboxed") != 0;
}

static int t_job_new(void *arg, struct sw_executor_job *x)
{
	struct tjob *t = calloc(1, sizeof(*t));

	(void)arg;
	SW_CHECK(t != NULL);
	snprintf(t->step, sizeof(t->step), "%s", x->step);
	t->x = x;
	x->owner = t;
	return 0;
}

static void t_begin(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	S.nbegun++;
	SW_CHECK(json_is_object(x->spec));
	sw_executor_admit(x);
}

static void t_start(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	SW_CHECK(x->phase == SW_EXECUTOR_ACTIVE);
	SW_CHECK(S.nstarted < MAXJ);
	S.started[S.nstarted++] = x->owner;
}

static void t_halt(void *arg, struct sw_executor_job *x, enum sw_step_status st)
{
	(void)arg;
	(void)x;
	(void)st;
	S.nhalted++;
}

static void t_job_free(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	free(x->owner);
	S.nfreed++;
}

static const char *field(const struct sw_executor_report *r, const char *key)
{
	size_t i;

	for (i = 0; r->fields[i] != NULL; i += 2)
		if (strcmp(r->fields[i], key) == 0)
			return r->fields[i + 1];
	return NULL;
}

static void t_report(void *arg, const struct sw_executor_report *r)
{
	(void)arg;
	switch (r->kind) {
	case SW_EXECUTOR_DEADLETTERED:
		S.deadlettered++;
		SW_CHECK(field(r, "reason") != NULL && field(r, "topic") != NULL);
		break;
	case SW_EXECUTOR_DUPLICATE:
		S.duplicates++;
		SW_CHECK(strcmp(field(r, "run_id"), r->job->dh.run_id) == 0);
		break;
	case SW_EXECUTOR_CANCELLING:
		S.cancelling++;
		break;
	case SW_EXECUTOR_FINISHED:
		SW_CHECK(S.nfinished < MAXJ);
		snprintf(S.finished[S.nfinished].step, sizeof(S.finished[0].step), "%s",
			 r->job->step);
		S.finished[S.nfinished].st = r->job->status;
		snprintf(S.finished[S.nfinished].error, sizeof(S.finished[0].error), "%s",
			 field(r, "error"));
		SW_CHECK(strcmp(field(r, "status"), sw_executor_status_name(r->job->status)) ==
			 0);
		S.nfinished++;
		break;
	default:
		if (r->msg != NULL)
			fprintf(stderr, "report: %s\n", r->msg);
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

struct msg {
	char topic[64];
	int32_t partition;
	int64_t offset;
	void *value;
	size_t len;
};

static void *encode(const char *type, const struct sw_event_header *h, json_t *o, size_t *len)
{
	char err[256];
	void *buf = NULL;

	SW_CHECK(o != NULL);
	SW_CHECKF(sw_event_encode(S.reg, type, h, o, &buf, len, err, sizeof(err)) == 0, "%s", err);
	json_decref(o);
	return buf;
}

static void *dispatch(const char *run, const char *step, const char *mode, const char *spec,
		      size_t *len)
{
	struct sw_event_header h;
	char step_id[128];

	sw_event_header_init(&h, "step.dispatched", "sagewai-scheduler");
	snprintf(h.run_id, sizeof(h.run_id), "%s", run);
	snprintf(step_id, sizeof(step_id), "%s/%s/1", run, step);
	snprintf(h.step_id, sizeof(h.step_id), "%s", step_id);
	return encode("step.dispatched", &h,
		      json_pack("{s:s, s:i, s:s, s:i, s:s, s:I}", "step", step, "index", 0, "mode",
				mode, "attempt", 1, "spec", spec, "timeout_ms", (json_int_t)0),
		      len);
}

static void *cancel_requested(const char *run, size_t *len)
{
	struct sw_event_header h;

	sw_event_header_init(&h, "run.cancel_requested", "sagewai-scheduler");
	snprintf(h.run_id, sizeof(h.run_id), "%s", run);
	return encode("run.cancel_requested", &h, json_object(), len);
}

/* Hand ms to the executor as one batch, then free their values. */
static void feed(struct msg *ms, size_t n)
{
	struct sw_bus_msg b[16];
	size_t i;

	SW_CHECK(n <= 16);
	memset(b, 0, sizeof(b));
	for (i = 0; i < n; i++) {
		b[i].topic = ms[i].topic;
		b[i].partition = ms[i].partition;
		b[i].offset = ms[i].offset;
		b[i].value = ms[i].value;
		b[i].len = ms[i].len;
	}
	sw_executor_consume(b, n, S.ex);
	for (i = 0; i < n; i++) {
		free(ms[i].value);
		ms[i].value = NULL;
	}
}

/* ---- the loop ------------------------------------------------------------ */

typedef int (*cond_fn)(void);

struct waiter {
	struct event_base *base;
	cond_fn cond;
	time_t deadline;
	int met;
};

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;

	(void)fd;
	(void)what;
	if (w->cond()) {
		w->met = 1;
		event_base_loopbreak(w->base);
	} else if (time(NULL) > w->deadline) {
		event_base_loopbreak(w->base);
	}
}

/* Run the loop until cond holds; fail after 60 s. */
static void run_until(struct event_base *base, cond_fn cond, const char *what)
{
	struct waiter w = {base, cond, time(NULL) + 60, 0};
	struct timeval tv = {0, 5000};
	struct event *ev = event_new(base, -1, EV_PERSIST, tick, &w);

	SW_CHECK(ev != NULL && event_add(ev, &tv) == 0);
	event_base_dispatch(base);
	event_free(ev);
	SW_CHECKF(w.met, "waited in vain for %s (settled %lld %lld %lld, started %zu)", what,
		  (long long)sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 0),
		  (long long)sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 1),
		  (long long)sw_executor_settled(S.ex, SW_TOPIC_RUNS, 0), S.nstarted);
}

static int delivered(void)
{
	return sw_executor_outq(S.ex) == 0;
}

static int settled_p0_2(void)
{
	return sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 0) == 2 && S.nstarted == 2;
}

static int settled_p0_all(void)
{
	return sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 0) == 6;
}

static int settled_rest(void)
{
	return sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 1) == 2 &&
	       sw_executor_settled(S.ex, SW_TOPIC_RUNS, 0) == 0 && S.nstarted == 3;
}

static int settled_all(void)
{
	return sw_executor_settled(S.ex, SW_TOPIC_RUNS, 0) == 1 &&
	       sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 1) == 4 &&
	       sw_executor_inflight(S.ex) == 0;
}

static int settled_long(void)
{
	return sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 1) == 25 && sw_executor_outq(S.ex) == 0;
}

static int settled_big(void)
{
	return sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 1) == 29 &&
	       sw_executor_inflight(S.ex) == 0 && sw_executor_outq(S.ex) == 0;
}

static void give_up(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	S.drained = 0;
	event_base_loopbreak(arg);
}

static const char *finished_error(const char *step, enum sw_step_status *st)
{
	size_t i;

	for (i = 0; i < S.nfinished; i++) {
		if (strcmp(S.finished[i].step, step) == 0) {
			*st = S.finished[i].st;
			return S.finished[i].error;
		}
	}
	SW_CHECKF(0, "step %s did not finish", step);
	return NULL;
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
	static const char gate[] = "preview_gate: the workflow uses mode identity_scoped";
	struct sw_executor_config c;
	char err[512], bootstrap[512];
	enum sw_step_status st;
	struct msg m[8];
	size_t i, n;
	rd_kafka_t *rk;
	const char *e;

	SW_CHECK(base != NULL);
	SW_CHECKF((S.reg = sw_events_registry_new(err, sizeof(err))) != NULL, "%s", err);
	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	SW_CHECKF((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) != NULL, "%s",
		  err);
	SW_CHECK((mc = rd_kafka_mock_cluster_new(rk, 1)) != NULL);
	snprintf(bootstrap, sizeof(bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(mc));
	SW_CHECK(rd_kafka_mock_topic_create(mc, SW_TOPIC_STEPS, 2, 1) == 0);
	SW_CHECK(rd_kafka_mock_topic_create(mc, SW_TOPIC_STEPS_WORKER, 2, 1) == 0);
	SW_CHECK(rd_kafka_mock_topic_create(mc, SW_TOPIC_DEADLETTER, 1, 1) == 0);
	SW_CHECK(rd_kafka_mock_topic_create(mc, "exec.other", 1, 1) == 0);

	memset(&c, 0, sizeof(c));
	c.base = base;
	c.reg = S.reg;
	c.producer = "sagewai-test";
	c.metrics_prefix = "sagewai_test";
	c.executor = "sagewai-test@here/1";
	c.bus_max = 1000000;
	c.concurrency = 1;
	/* the line is long in messages (as the services make it), and bounded
	 * in bytes: 64 KiB here */
	c.line_min = 4096;
	c.line_bytes = 64 << 10;
	c.refuse_identity_modes = 1;
	c.ops = &ops;
	SW_CHECKF((S.ex = sw_executor_new(&c, err, sizeof(err))) != NULL, "%s", err);
	/* a member of its own group, on a topic of its own: pause, resume
	 * and the drain reach a real client; stores for sagewai.* fail,
	 * which the executor takes as a revoked partition */
	SW_CHECKF(sw_executor_connect(S.ex, bootstrap, "exec-test", topics, NULL, cextra, err,
				      sizeof(err)) == 0,
		  "%s", err);
	SW_CHECK(sw_executor_connect(S.ex, bootstrap, "exec-test", topics, NULL, cextra, err,
				     sizeof(err)) == -1);

	/* sagewai.steps.worker partition 0 */
	memset(m, 0, sizeof(m));
	for (i = 0; i < 7; i++) {
		snprintf(m[i].topic, sizeof(m[i].topic), SW_TOPIC_STEPS_WORKER);
		m[i].offset = (int64_t)i;
	}
	m[0].value = dispatch("run-1", "a", "in_process", "{\"uses\":\"x\"}", &m[0].len);
	m[1].value = strdup("garbage");
	m[1].len = 7;
	m[2].value = malloc(m[0].len);
	memcpy(m[2].value, m[0].value, m[0].len); /* a copy of a */
	m[2].len = m[0].len;
	m[3].value = dispatch("run-1", "b", "in_process", "{\"uses\":\"x\"}", &m[3].len);
	{
		struct sw_event_header h;

		sw_event_header_init(&h, "step.started", "sagewai-worker");
		snprintf(h.run_id, sizeof(h.run_id), "run-1");
		snprintf(h.step_id, sizeof(h.step_id), "run-1/z/1");
		m[4].value = encode("step.started", &h,
				    json_pack("{s:s, s:i, s:s}", "step", "z", "attempt", 1,
					      "executor", "elsewhere"),
				    &m[4].len);
	}
	m[5].value = dispatch("run-1", "c", "sandboxed", "{\"uses\":\"x\"}", &m[5].len);
	m[6].value = NULL; /* empty */
	feed(m, 7);

	SW_CHECK(S.nbegun == 2 && S.nstarted == 1);
	SW_CHECK(strcmp(S.started[0]->step, "a") == 0);
	SW_CHECK(S.duplicates == 1 && S.deadlettered == 2);
	SW_CHECK(sw_executor_njobs(S.ex) == 2 && sw_executor_running(S.ex) == 1);
	SW_CHECK(sw_executor_inflight(S.ex) == 7);

	/* the dead letters delivered, 1, 4, 5 and 6 are done; 0 is not */
	run_until(base, delivered, "the dead letters");
	sw_executor_settle(S.ex);
	SW_CHECKF(sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 0) == -1, "settled %lld",
		  (long long)sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 0));
	SW_CHECK(sw_executor_inflight(S.ex) == 7);

	/* a ends: 0, 1, 2 settle, b takes the slot; 3 (b) holds the rest */
	sw_executor_finish(S.started[0]->x, SW_STEP_SUCCEEDED, json_pack("{s:i}", "n", 1), NULL);
	sw_executor_finish(S.started[0]->x, SW_STEP_FAILED, NULL, "late: ignored");
	run_until(base, settled_p0_2, "offsets 0..2 and b started");
	SW_CHECK(strcmp(S.started[1]->step, "b") == 0);
	SW_CHECK(sw_executor_inflight(S.ex) == 4);

	sw_executor_finishf(S.started[1]->x, SW_STEP_FAILED, NULL, "x_error: %d went wrong", 42);
	run_until(base, settled_p0_all, "offsets up to 6");

	/* cancels and preflight failures, on partition 1 (d, bad, gate, f,
	 * no step_id) and sagewai.runs */
	memset(m, 0, sizeof(m));
	n = 0;
	snprintf(m[n].topic, sizeof(m[n].topic), SW_TOPIC_RUNS);
	m[n].value = cancel_requested("run-3", &m[n].len);
	n++;
	for (i = 0; i < 5; i++, n++) {
		snprintf(m[n].topic, sizeof(m[n].topic), SW_TOPIC_STEPS_WORKER);
		m[n].partition = 1;
		m[n].offset = (int64_t)i;
	}
	m[1].value = dispatch("run-3", "d", "in_process", "{\"uses\":\"x\"}", &m[1].len);
	m[2].value = dispatch("run-4", "bad", "in_process", "not json", &m[2].len);
	m[3].value = dispatch("run-4", "gate", "in_process",
			      "{\"uses\":\"x\","
			      "\"run_modes\":[\"in_process\",\"identity_scoped\"]}",
			      &m[3].len);
	m[4].value = dispatch("run-4", "f", "in_process", "{\"uses\":\"x\"}", &m[4].len);
	{
		struct sw_event_header h;

		sw_event_header_init(&h, "step.dispatched", "sagewai-scheduler");
		snprintf(h.run_id, sizeof(h.run_id), "run-4"); /* no step_id */
		m[5].value = encode("step.dispatched", &h,
				    json_pack("{s:s, s:i, s:s, s:i, s:s}", "step", "g", "index",
					      0, "mode", "in_process", "attempt", 1, "spec", "{}"),
				    &m[5].len);
	}
	feed(m, n);
	SW_CHECK(S.deadlettered == 3);
	run_until(base, settled_rest, "partition 1 but f, and f started");
	SW_CHECK(strcmp(S.started[2]->step, "f") == 0);
	SW_CHECK(S.nbegun == 3); /* a, b, f: d is fenced, bad and gate fail before */

	/* run-4 cancelled while f runs */
	memset(m, 0, sizeof(m));
	snprintf(m[0].topic, sizeof(m[0].topic), SW_TOPIC_RUNS);
	m[0].offset = 1;
	m[0].value = cancel_requested("run-4", &m[0].len);
	feed(m, 1);
	SW_CHECK(S.cancelling == 1);
	SW_CHECK(sw_executor_cancelled(S.ex, "run-4") && sw_executor_cancelled(S.ex, "run-3"));
	SW_CHECK(!sw_executor_cancelled(S.ex, "run-1"));
	run_until(base, settled_all, "everything settled");
	SW_CHECK(sw_executor_njobs(S.ex) == 0 && sw_executor_running(S.ex) == 0);

	e = finished_error("a", &st);
	SW_CHECK(st == SW_STEP_SUCCEEDED && e[0] == '\0');
	e = finished_error("b", &st);
	SW_CHECK(st == SW_STEP_FAILED && strcmp(e, "x_error: 42 went wrong") == 0);
	e = finished_error("d", &st);
	SW_CHECK(st == SW_STEP_CANCELLED &&
		 strcmp(e, "cancelled: the run was cancelled before the step started") == 0);
	e = finished_error("bad", &st);
	SW_CHECK(st == SW_STEP_FAILED && strcmp(e, "bad_input: spec is not a JSON object") == 0);
	e = finished_error("gate", &st);
	SW_CHECK(st == SW_STEP_FAILED && strncmp(e, gate, strlen(gate)) == 0);
	e = finished_error("f", &st);
	SW_CHECK(st == SW_STEP_CANCELLED && strcmp(e, "cancelled: the run was cancelled") == 0);
	SW_CHECK(S.nfinished == 6 && S.nstarted == 3 && S.nhalted == 6 && S.nfreed == 6);

	/* a long step holds partition 1's commits; messages done behind it
	 * (here: 20 dispatches of a mode not ours) must not pause reading, or
	 * one long step stalls every other */
	memset(m, 0, sizeof(m));
	snprintf(m[0].topic, sizeof(m[0].topic), SW_TOPIC_STEPS_WORKER);
	m[0].partition = 1;
	m[0].offset = 5;
	m[0].value = dispatch("run-6", "long", "in_process", "{\"uses\":\"x\"}", &m[0].len);
	feed(m, 1);
	SW_CHECK(S.nstarted == 4 && strcmp(S.started[3]->step, "long") == 0);
	for (i = 0; i < 20; i += 4) {
		size_t k;

		memset(m, 0, sizeof(m));
		for (k = 0; k < 4; k++) {
			snprintf(m[k].topic, sizeof(m[k].topic), SW_TOPIC_STEPS_WORKER);
			m[k].partition = 1;
			m[k].offset = (int64_t)(6 + i + k);
			m[k].value = dispatch("run-7", "other", "sandboxed", "{\"uses\":\"x\"}",
					      &m[k].len);
		}
		feed(m, 4);
	}
	SW_CHECKF(!sw_executor_paused(S.ex), "reading paused behind one long step (%zu held)",
		  sw_executor_inflight(S.ex));
	SW_CHECK(sw_executor_inflight(S.ex) == 21);
	sw_executor_finish(S.started[3]->x, SW_STEP_SUCCEEDED, json_true(), NULL);
	run_until(base, settled_long, "partition 1 after the long step");

	/* a line of large dispatches: one runs, the others wait; reading
	 * pauses once the waiting bytes reach line_bytes, however few the
	 * messages, and resumes once they are done */
	{
		static const char head[] = "{\"uses\":\"x\",\"pad\":\"";
		static char spec[20 << 10];
		size_t k;

		memset(spec, 'x', sizeof(spec) - 1); /* NUL-terminated */
		memcpy(spec, head, strlen(head));
		memcpy(spec + sizeof(spec) - 3, "\"}", 2);
		for (k = 0; k < 4; k++) {
			char step[8];

			memset(m, 0, sizeof(m));
			snprintf(step, sizeof(step), "big%zu", k);
			snprintf(m[0].topic, sizeof(m[0].topic), SW_TOPIC_STEPS_WORKER);
			m[0].partition = 1;
			m[0].offset = (int64_t)(26 + k);
			m[0].value = dispatch("run-8", step, "in_process", spec, &m[0].len);
			feed(m, 1);
			/* 20 KiB each: 60 KiB do not pause, 80 KiB do */
			SW_CHECKF(sw_executor_paused(S.ex) == (k == 3),
				  "paused %d with %zu dispatches of 20 KiB held",
				  sw_executor_paused(S.ex), k + 1);
		}
		SW_CHECK(S.nstarted == 5 && strcmp(S.started[4]->step, "big0") == 0);
		memset(m, 0, sizeof(m));
		snprintf(m[0].topic, sizeof(m[0].topic), SW_TOPIC_RUNS);
		m[0].offset = 2;
		m[0].value = cancel_requested("run-8", &m[0].len);
		feed(m, 1);
		run_until(base, settled_big, "the large dispatches cancelled and settled");
		SW_CHECKF(!sw_executor_paused(S.ex), "still paused with nothing held");
	}

	/* shutdown: a step in flight holds the loop; no message is taken; the
	 * loop breaks once the step is done */
	memset(m, 0, sizeof(m));
	snprintf(m[0].topic, sizeof(m[0].topic), SW_TOPIC_STEPS_WORKER);
	m[0].offset = 7;
	m[0].value = dispatch("run-5", "h", "in_process", "{\"uses\":\"x\"}", &m[0].len);
	feed(m, 1);
	SW_CHECK(S.nstarted == 6);
	sw_executor_shutdown(S.ex, 60);
	SW_CHECK(sw_executor_draining(S.ex));
	m[0].offset = 8;
	m[0].value = dispatch("run-5", "i", "in_process", "{\"uses\":\"x\"}", &m[0].len);
	feed(m, 1);
	/* a, b, f, long, big0-3 and h begun; i not taken */
	SW_CHECK(sw_executor_inflight(S.ex) == 1 && S.nbegun == 9);
	sw_executor_finish(S.started[5]->x, SW_STEP_SUCCEEDED, json_true(), NULL);
	{
		struct timeval tv = {60, 0};
		struct event *ev = evtimer_new(base, give_up, base);

		SW_CHECK(ev != NULL && evtimer_add(ev, &tv) == 0);
		S.drained = 1;
		event_base_dispatch(base);
		event_free(ev);
	}
	SW_CHECKF(S.drained, "the loop did not break once drained");
	SW_CHECK(sw_executor_inflight(S.ex) == 0 && sw_executor_njobs(S.ex) == 0);
	SW_CHECK(sw_executor_settled(S.ex, SW_TOPIC_STEPS_WORKER, 0) == 7);
	SW_CHECK(sw_executor_close(S.ex, 5000) == 0);

	sw_executor_destroy(S.ex);
	sw_events_registry_destroy(S.reg);
	event_base_free(base);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
