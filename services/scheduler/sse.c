/*
 * sse.c: GET /v1/runs/{id}/events, a text/event-stream of one run.
 *
 * The stream opens with the run as GET /v1/runs/{id} shows it
 * ("event: run"), then, each time the run may have changed, the run is
 * read again and compared with what the client last got: every step whose
 * state, attempts or error changed goes out as "event: step" (that step's
 * JSON), a changed run state as "event: run" (the whole run). After the
 * terminal run event the stream ends. A comment line every
 * SCHED_SSE_KEEPALIVE_MS keeps proxies from closing an idle stream.
 *
 * "May have changed" is: a transition this process committed, any event
 * of the run on sagewai.runs, sagewai.steps or the executors' dispatch
 * topics (sagewai.steps.worker, .sandbox) seen by the tail reader below that this
 * process did not commit itself (its commit woke the stream already) and
 * that is not a step event of a partition its own consumer owns (the
 * transition it causes here wakes the stream when it commits), and,
 * every SAGEWAI_SSE_POLL_MS, anyway. When several schedulers share the
 * database, another instance commits most of a run's transitions; the
 * events it produces after each commit (the next dispatch, run.finished)
 * reach every instance's tail reader, so a stream held here follows them
 * at once, and the poll only covers a reader that fails.
 * Intermediate states that come and go between two reads are not shown;
 * the final state always is. The reads of all the streams touched in one
 * pass of the event loop go together, one statement (stream_read).
 *
 * Live output ("event: output"): the sandbox hosts publish each chunk a
 * sandboxed, identity_scoped or cli_agent step writes, already redacted of
 * the step's injected values, as sandbox.output on sagewai.sandbox, keyed
 * by run id. Every scheduler instance reads that topic from its end with a
 * tail reader (no group: each instance sees every chunk, so a stream is
 * served whichever instance holds it); a message whose key is not the run
 * of an open stream is dropped undecoded. A chunk goes to the streams of
 * its run and tenant as {"step", "step_id", "attempt", "stream", "seq",
 * "data", "truncated"}. Output is informative, like the event: a chunk
 * produced before this instance started, or while the client was away, is
 * not replayed (the step's result holds the captured output). Chunks and
 * step.finished travel on different topics, so a run that ends is held
 * back SCHED_SSE_LINGER_MS before its last events go out, letting the
 * chunks produced before its end arrive first.
 *
 * A waiting submit (POST /v1/runs?wait=S) is a stream that sends one
 * answer: woken only when the run may have ended (a commit here whose new
 * run state is final, another instance's run.finished, or the poll), no
 * read before that (the run was just stored, and its submit said in which
 * state), and the run as GET
 * /v1/runs/{id} shows it once a read finds it ended (200), or at the
 * deadline whatever it is then (202: follow it with GET .../events). A
 * client gone meanwhile is noticed at the answer (libevent frees the
 * request), so a waiter lives at most S seconds.
 */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

#include "scheduler.h"

#define SSE_WRITE_TIMEOUT_S 60

struct sched_stream {
	LIST_ENTRY(sched_stream) entry;
	LIST_ENTRY(sched_stream) hentry; /* env->sbuckets[bucket(run_id)] */
	struct sched_env *env;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	char run_id[SW_UUID_STRLEN];
	char tenant[128];
	json_t *last; /* the run as last sent */
	int started;  /* 200 and headers sent */
	int reading;  /* a read is queued */
	int dirty;    /* touched while reading */
	int gone;     /* the client went away */
	int64_t last_read_ms;
	int64_t last_write_ms;
	struct event *linger; /* the run ended: its last events wait for its output */
	int lingered;	      /* ... and have waited */
	int wait;	      /* a waiting submit: one answer, no stream */
	int expired;	      /* ... its deadline passed: answer what the next read finds */
	struct event *deadline;
};

static void stream_read(struct sched_stream *s);

static struct sched_streams *bucket(struct sched_env *env, const char *run_id)
{
	return &env->sbuckets[sched_run_hash(run_id) % SCHED_SSE_BUCKETS];
}

/* s, its run id set, joins the streams */
static void stream_add(struct sched_env *env, struct sched_stream *s)
{
	LIST_INSERT_HEAD(&env->streams, s, entry);
	LIST_INSERT_HEAD(bucket(env, s->run_id), s, hentry);
	env->nstreams++;
}

static void stream_free(struct sched_stream *s)
{
	LIST_REMOVE(s, entry);
	LIST_REMOVE(s, hentry);
	s->env->nstreams--;
	json_decref(s->last);
	if (s->linger != NULL)
		event_free(s->linger);
	if (s->deadline != NULL)
		event_free(s->deadline);
	free(s);
}

/* Finish the reply (or free a request whose connection is gone) and the
 * stream. */
static void stream_end(struct sched_stream *s)
{
	if (s->conn != NULL)
		evhttp_connection_set_closecb(s->conn, NULL, NULL);
	if (s->started)
		evhttp_send_reply_end(s->req);
	stream_free(s);
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct sched_stream *s = arg;

	(void)conn;
	s->gone = 1;
	s->conn = NULL;
	if (!s->reading)
		stream_end(s); /* the request was detached: reply_end frees it */
}

static void send_text(struct sched_stream *s, const char *event, const char *data)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		return;
	if (event != NULL)
		evbuffer_add_printf(b, "event: %s\ndata: %s\n\n", event, data);
	else
		evbuffer_add_printf(b, "%s", data);
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
	s->last_write_ms = sw_mono_ms();
}

static void send_json(struct sched_stream *s, const char *event, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	if (text == NULL)
		return;
	send_text(s, event, text);
	free(text);
}

static int differs(json_t *a, json_t *b, const char *key)
{
	return !json_equal(json_object_get(a, key), json_object_get(b, key));
}

static int terminal(json_t *run)
{
	const char *st = json_string_value(json_object_get(run, "state"));

	return st != NULL && sched_run_state_ended(st);
}

/* The run has a step that runs on a sandbox host (whose output streams). */
static int has_sandbox_steps(json_t *run)
{
	json_t *st;
	size_t i;

	json_array_foreach(json_object_get(run, "steps"), i, st) {
		const char *mode = json_string_value(json_object_get(st, "mode"));

		if (mode != NULL && strcmp(mode, "in_process") != 0)
			return 1;
	}
	return 0;
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_stream *s = arg;

	(void)fd;
	(void)what;
	if (!s->gone)
		stream_read(s);
}

/* The run just ended: hold its last events back for a moment (its output
 * comes on another topic). 1 when held, 0 to send them now. */
static int linger(struct sched_stream *s, json_t *run)
{
	struct timeval tv = {SCHED_SSE_LINGER_MS / 1000, (SCHED_SSE_LINGER_MS % 1000) * 1000};

	if (s->lingered || !has_sandbox_steps(run))
		return 0;
	s->lingered = 1;
	if (s->linger == NULL && (s->linger = evtimer_new(s->env->base, linger_cb, s)) == NULL)
		return 0;
	return evtimer_add(s->linger, &tv) == 0;
}

static void stream_start(struct sched_stream *s, json_t *run)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(s->req);
	struct evhttp_connection *conn = evhttp_request_get_connection(s->req);
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	struct timeval wt = {SSE_WRITE_TIMEOUT_S, 0};
	int one = 1;

	/* A stream is a series of small writes, each wanted at once. With
	 * Nagle on, a write waits for the ACK of the one before, which the
	 * client delays (40 ms on Linux) as it has nothing to send back. */
	if (bev != NULL)
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evhttp_remove_header(h, "Content-Type");
	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	evhttp_send_reply_start(s->req, 200, "OK");
	s->started = 1;
	if (conn != NULL) {
		s->conn = conn;
		evhttp_connection_set_closecb(conn, on_close, s);
		/* the client sends nothing more: no read timeout on a stream */
		bufferevent_set_timeouts(bev, NULL, &wt);
	}
	send_json(s, "run", run);
}

/* Send what changed between s->last and run. */
static void stream_diff(struct sched_stream *s, json_t *run)
{
	json_t *old = json_object_get(s->last, "steps"), *cur = json_object_get(run, "steps");
	json_t *st;
	size_t i;

	json_array_foreach(cur, i, st) {
		json_t *prev = json_array_get(old, i);

		if (prev == NULL || differs(prev, st, "state") || differs(prev, st, "attempts") ||
		    differs(prev, st, "error"))
			send_json(s, "step", st);
	}
	if (differs(s->last, run, "state"))
		send_json(s, "run", run);
}

/* A waiting submit's one answer: the run (taken), or its id when there is
 * none to show; then the waiter goes. */
static void wait_end(struct sched_stream *s, int status, json_t *run)
{
	sw_http_reply_json(s->req, status,
			   run != NULL ? run : json_pack("{s:s}", "run_id", s->run_id));
	stream_free(s);
}

/* A waiting submit's read (text: the run's JSON, NULL when not found):
 * answer it if the run ended or time is up. */
static void wait_read(struct sched_stream *s, const char *text, const char *err)
{
	json_t *run = NULL;

	if (err == NULL && text != NULL)
		run = json_loads(text, 0, NULL);
	if (run != NULL && terminal(run)) {
		wait_end(s, 200, run);
		return;
	}
	if (s->expired || s->env->stopping) {
		/* stored, not ended yet (or not read): the client follows it */
		wait_end(s, 202, run);
		return;
	}
	json_decref(run);
	if (err != NULL)
		sw_log(SW_LOG_WARN, "waiting submit: run read failed", "run_id", s->run_id,
		       "error", err, NULL); /* the poll tries again */
	if (s->dirty) {
		s->dirty = 0;
		stream_read(s);
	}
}

/* A stream's read is over: text, the run's JSON (NULL: no such run of its
 * tenant), or err. */
static void read_done(struct sched_stream *s, const char *text, const char *err)
{
	json_t *run;

	s->reading = 0;
	s->last_read_ms = sw_mono_ms();
	if (s->wait) {
		wait_read(s, text, err);
		return;
	}
	if (s->gone) {
		stream_end(s);
		return;
	}
	if (err != NULL) {
		sw_log(SW_LOG_WARN, "stream read failed", "run_id", s->run_id, "error", err, NULL);
		if (!s->started) {
			sw_http_reply_error(s->req, 503, "unavailable", "run read failed");
			stream_free(s);
		}
		return; /* the poll tries again */
	}
	if (text == NULL || (run = json_loads(text, 0, NULL)) == NULL) {
		if (!s->started) {
			sw_http_reply_error(s->req, 404, "not_found", "no such run");
			stream_free(s);
		} else {
			stream_end(s);
		}
		return;
	}
	if (!s->started && s->env->stopping) {
		json_decref(run);
		sw_http_reply_error(s->req, 503, "unavailable", "the scheduler is stopping");
		stream_free(s);
		return;
	}
	if (s->started && terminal(run) && linger(s, run)) {
		json_decref(run); /* read again when the output had its moment */
		return;
	}
	if (!s->started)
		stream_start(s, run);
	else
		stream_diff(s, run);
	json_decref(s->last);
	s->last = run;
	if (s->gone) {
		/* a failed write may have closed the connection meanwhile */
		return;
	}
	if (terminal(run)) {
		stream_end(s);
		return;
	}
	if (s->dirty) {
		s->dirty = 0;
		stream_read(s);
	}
}

/*
 * The reads of the streams are queued and go together at the end of the
 * event loop's pass: one statement (sched_runs_json_sql) for every stream
 * touched meanwhile, not a transaction each. Under load a group commit ends
 * dozens of runs at once and wakes as many waiting submits; one at a time
 * the batch is of one, read in the same pass as before.
 */
#define SSE_READ_BATCH 256 /* streams read by one statement at most */

struct read_batch {
	size_t n;
	char *ids, *tenants; /* the array literals */
	const char *params[2];
	struct sched_stream *s[];
};

static void batch_cb(PGresult *res, const char *err, void *opaque)
{
	struct read_batch *b = opaque;
	size_t i;

	if (err == NULL && PQntuples(res) != (int)b->n)
		err = "the run read gave a row count other than asked";
	/* a stream's read_done may queue its next read: the batch is ours */
	for (i = 0; i < b->n; i++)
		read_done(b->s[i],
			  err == NULL && !PQgetisnull(res, (int)i, 0) ? PQgetvalue(res, (int)i, 0)
								      : NULL,
			  err);
	free(b->ids);
	free(b->tenants);
	free(b);
}

static void rq_send(evutil_socket_t fd, short what, void *arg)
{
	struct sched_env *env = arg;

	(void)fd;
	(void)what;
	while (env->nrq > 0) {
		size_t n = env->nrq < SSE_READ_BATCH ? env->nrq : SSE_READ_BATCH, i, k = 0;
		struct sched_stream *take[SSE_READ_BATCH];
		struct read_batch *b = calloc(1, sizeof(*b) + n * sizeof(b->s[0]));
		const char **ids = calloc(n, sizeof(*ids)),
			   **tenants = calloc(n, sizeof(*tenants));
		struct sw_store_stmt st[2] = {{0}};
		uint8_t u[16];

		/* out of the queue first: an answer below may queue a stream again */
		memcpy(take, env->rq, n * sizeof(*take));
		memmove(env->rq, env->rq + n, (env->nrq - n) * sizeof(*env->rq));
		env->nrq -= n;
		if (b == NULL || ids == NULL || tenants == NULL) {
			free(b);
			free(ids);
			free(tenants);
			for (i = 0; i < n; i++)
				read_done(take[i], NULL, "out of memory");
			continue;
		}
		for (i = 0; i < n; i++) {
			if (sw_uuid_parse(take[i]->run_id, u) == -1) {
				read_done(take[i], NULL, NULL); /* no run has that id */
				continue;
			}
			ids[k] = take[i]->run_id;
			tenants[k] = take[i]->tenant;
			b->s[k++] = take[i];
		}
		b->n = k;
		if (k > 0) {
			b->ids = sw_store_array(ids, k);
			b->tenants = sw_store_array(tenants, k);
		}
		free(ids);
		free(tenants);
		if (k == 0) {
			free(b);
			continue;
		}
		if (b->ids == NULL || b->tenants == NULL) {
			batch_cb(NULL, "out of memory", b);
			continue;
		}
		b->params[0] = b->ids;
		b->params[1] = b->tenants;
		/* planned as every run read is (sched_run_read) */
		st[0].sql = sched_key_plans_sql;
		st[1].sql = sched_runs_json_sql;
		st[1].nparams = 2;
		st[1].params = b->params;
		if (sw_store_tx(env->store, st, 2, batch_cb, b) == -1)
			batch_cb(NULL, "store unavailable", b);
	}
}

/* Queue s's read (at most one out a stream: a touch meanwhile reads again
 * after it). Not queued (out of memory): s->reading stays 0, and the caller
 * answers or the poll tries again. */
static void stream_read(struct sched_stream *s)
{
	struct sched_env *env = s->env;

	if (s->reading) {
		s->dirty = 1;
		return;
	}
	if (env->nrq == env->rq_cap) {
		size_t cap = env->rq_cap ? env->rq_cap * 2 : 64;
		struct sched_stream **q = realloc(env->rq, cap * sizeof(*q));

		if (q == NULL)
			return;
		env->rq = q;
		env->rq_cap = cap;
	}
	if (env->rq_ev == NULL && (env->rq_ev = event_new(env->base, -1, 0, rq_send, env)) == NULL)
		return;
	env->rq[env->nrq++] = s;
	s->reading = 1;
	event_active(env->rq_ev, EV_TIMEOUT, 0);
}

void sched_sse_open(struct sched_env *env, struct evhttp_request *req, const char *run_id,
		    const char *tenant)
{
	struct sched_stream *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return;
	}
	s->env = env;
	s->req = req;
	snprintf(s->run_id, sizeof(s->run_id), "%s", run_id);
	snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
	s->last_write_ms = sw_mono_ms();
	stream_add(env, s);
	stream_read(s);
	if (!s->reading) {
		sw_http_reply_error(req, 503, "unavailable", "store unavailable");
		stream_free(s);
	}
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_stream *s = arg;

	(void)fd;
	(void)what;
	s->expired = 1;
	stream_read(s); /* answers, as it is now */
	if (!s->reading)
		wait_end(s, 202, NULL);
}

void sched_wait_open(struct sched_env *env, struct evhttp_request *req, const char *run_id,
		     const char *tenant, const char *state, int wait_s)
{
	struct sched_stream *s = calloc(1, sizeof(*s));
	struct timeval tv = {wait_s, 0};

	if (s == NULL || (s->deadline = evtimer_new(env->base, deadline_cb, s)) == NULL ||
	    evtimer_add(s->deadline, &tv) == -1) {
		/* stored all the same: answer as a submit without wait */
		if (s != NULL && s->deadline != NULL)
			event_free(s->deadline);
		free(s);
		sw_http_reply_json(req, 201, json_pack("{s:s}", "run_id", run_id));
		return;
	}
	s->env = env;
	s->req = req;
	s->wait = 1;
	snprintf(s->run_id, sizeof(s->run_id), "%s", run_id);
	snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
	s->last_read_ms = sw_mono_ms();
	stream_add(env, s);
	/* running: the next transition's wake-up reads it; ended at once
	 * (failed at submit): read it now */
	if (state == NULL || strcmp(state, RUN_RUNNING) != 0)
		stream_read(s);
}

/* A stream still opening has its first read out: the touch marks it dirty,
 * so it reads again once that read is answered. Dropping the touch instead
 * would leave a stream whose first read saw the run before a commit that
 * landed meanwhile waiting for the poll (SAGEWAI_SSE_POLL_MS), the commit's
 * own event being skipped by the tail reader. */
void sched_sse_touch(struct sched_env *env, const char *run_id, int ended)
{
	struct sched_stream *s;

	/* stream_read only queues a read: s stays */
	LIST_FOREACH(s, bucket(env, run_id), hentry)
	if (!s->gone && strcmp(s->run_id, run_id) == 0 && (ended || !s->wait))
		stream_read(s);
}

const char *sched_wait_tenant(struct sched_env *env, const char *run_id)
{
	struct sched_stream *s;

	LIST_FOREACH(s, bucket(env, run_id), hentry)
	if (s->wait && !s->gone && !s->reading && strcmp(s->run_id, run_id) == 0)
		return s->tenant;
	return NULL;
}

void sched_wait_answer(struct sched_env *env, const char *run_id, const char *tenant,
		       PGresult *res)
{
	struct sched_stream *s, *next;
	json_t *run;

	if (res == NULL || PQntuples(res) != 1 ||
	    (run = json_loads(PQgetvalue(res, 0, 0), 0, NULL)) == NULL)
		return; /* the touch after the commit reads it */
	if (terminal(run))
		for (s = LIST_FIRST(bucket(env, run_id)); s != NULL; s = next) {
			next = LIST_NEXT(s, hentry);
			/* one with a read out is answered by that read (the
			 * touch marks it dirty): freeing it here would leave
			 * the read's callback a freed stream */
			if (s->wait && !s->gone && !s->reading && strcmp(s->run_id, run_id) == 0 &&
			    strcmp(s->tenant, tenant) == 0) {
				wait_end(s, 200, json_incref(run));
				sw_metrics_counter_add(
				    env->metrics, "sagewai_scheduler_wait_answers_in_commit_total",
				    "Waiting submits answered with the run read in the commit that"
				    " ended it.",
				    1);
			}
		}
	json_decref(run);
}

int sched_run_state_ended(const char *state)
{
	return state == NULL || state[0] == '\0' ||
	       (strcmp(state, RUN_RUNNING) != 0 && strcmp(state, "pending") != 0);
}

static void sse_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sched_env *env = arg;
	struct sched_stream *s;
	int64_t now = sw_mono_ms();

	(void)fd;
	(void)what;
	for (s = LIST_FIRST(&env->streams); s != NULL; s = LIST_NEXT(s, entry)) {
		if (s->wait) {
			if (now - s->last_read_ms >= env->sse_poll_ms)
				stream_read(s);
			continue;
		}
		if (!s->started || s->gone)
			continue;
		if (now - s->last_write_ms >= SCHED_SSE_KEEPALIVE_MS)
			send_text(s, NULL, ": keep-alive\n\n");
		if (now - s->last_read_ms >= env->sse_poll_ms)
			stream_read(s);
	}
}

/* The run id (a UUID) of a message's key into out; 0, or -1. */
static int key_run(const struct sw_bus_msg *m, char out[SW_UUID_STRLEN])
{
	if (m->key == NULL || m->key_len == 0 || m->key_len >= SW_UUID_STRLEN)
		return -1;
	memcpy(out, m->key, m->key_len);
	out[m->key_len] = '\0';
	return 0;
}

/* A sandbox.output: to every stream of its run and tenant. */
static void output(struct sched_env *env, const struct sw_event_header *h, json_t *ev)
{
	const char *first = strchr(h->step_id, '/'), *last = strrchr(h->step_id, '/');
	struct sched_stream *s;
	json_t *data, *d = json_object_get(ev, "data"), *stream = json_object_get(ev, "stream");
	char step[128];

	if (first == NULL || last == NULL || last <= first + 1 ||
	    (size_t)(last - first - 1) >= sizeof(step) || !json_is_string(d) ||
	    !json_is_string(stream))
		return;
	memcpy(step, first + 1, (size_t)(last - first - 1));
	step[last - first - 1] = '\0';
	data = json_pack("{s:s, s:s, s:i, s:O, s:O, s:O, s:b}", "step", step, "step_id",
			 h->step_id, "attempt", atoi(last + 1), "stream", stream, "seq",
			 json_object_get(ev, "seq"), "data", d, "truncated",
			 json_is_true(json_object_get(ev, "truncated")));
	if (data == NULL)
		return;
	LIST_FOREACH(s, bucket(env, h->run_id), hentry)
	if (s->started && !s->gone && strcmp(s->run_id, h->run_id) == 0 &&
	    strcmp(s->tenant, h->tenant) == 0)
		send_json(s, "output", data);
	json_decref(data);
}

static void tail_cb(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sched_env *env = opaque;
	struct sw_event_header h;
	struct sched_stream *s;
	char run[SW_UUID_STRLEN], why[256];
	json_t *ev;

	for (size_t i = 0; i < n && !LIST_EMPTY(&env->streams); i++) {
		const struct sw_bus_msg *m = &msgs[i];

		if (m->value == NULL || key_run(m, run) != 0)
			continue;
		LIST_FOREACH(s, bucket(env, run), hentry)
		if (!s->gone && strcmp(s->run_id, run) == 0)
			break;
		if (s == NULL)
			continue; /* nobody follows that run here */
		if (sw_event_decode_header(env->reg, m->value, m->len, &h, why, sizeof(why)) ||
		    strcmp(h.run_id, run) != 0)
			continue;
		if (strcmp(m->topic, SW_TOPIC_SANDBOX) != 0) {
			/* the run moved on, maybe at another instance. Not when
			 * this process will tell its streams anyway: an event it
			 * committed woke them at the commit, and a step event of
			 * a partition its consumer owns (consume.c) wakes them
			 * when its transition commits -- a read now would only
			 * find the run as it was. */
			if (!sched_outbox_ours(env, h.event_id) &&
			    !(strcmp(m->topic, SW_TOPIC_STEPS) == 0 &&
			      sw_bus_consumer_owns(env->consumer, m->topic, m->partition)))
				sched_sse_touch(env, run, strcmp(h.type, "run.finished") == 0);
			continue;
		}
		if (strcmp(h.type, "sandbox.output") != 0)
			continue;
		if ((ev = sw_event_decode(env->reg, m->value, m->len, why, sizeof(why))) == NULL) {
			sw_log(SW_LOG_WARN, "a sandbox.output does not decode", "run_id", run,
			       "error", why, NULL);
			continue;
		}
		output(env, &h, ev);
		json_decref(ev);
	}
}

static void on_tail_error(int fatal, const char *reason, void *opaque)
{
	struct sched_env *env = opaque;

	/* informative: a reader that fails loses the chunks, and streams fall
	 * back to the poll for other instances' commits */
	sw_log(fatal ? SW_LOG_ERROR : SW_LOG_WARN, "Kafka reader of the event streams", "error",
	       reason, NULL);
	(void)env;
}

int sched_sse_start(struct sched_env *env, char *errstr, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_SANDBOX,	     SW_TOPIC_RUNS,
					     SW_TOPIC_STEPS,	     SW_TOPIC_STEPS_WORKER,
					     SW_TOPIC_STEPS_SANDBOX, NULL};
	struct timeval tv = {1, 0};
	char tuning[SW_CONFIG_STR], why[256];
	/* Gathered: the broker answers this reader's fetch once a MiB is there
	 * or SCHED_SSE_GATHER's wait passed, not at every event of every run. What
	 * this process commits wakes its streams at the commit, so the wait
	 * only delays what another instance did and live output, by at most
	 * that long. The operator's settings come after, and win. */
	const char *extra[SCHED_BUS_EXTRA + 2] = {SCHED_SSE_GATHER, "fetch.min.bytes=1048576"};
	char err[128];

	LIST_INIT(&env->streams);
	if (sw_config_list(env->envp, "SAGEWAI_KAFKA_CONSUMER_CONFIG", extra, 2,
			   sizeof(extra) / sizeof(extra[0]), tuning, sizeof(tuning), err,
			   sizeof(err)) == -1) {
		snprintf(errstr, errlen, "SAGEWAI_KAFKA_CONSUMER_CONFIG has too many entries");
		return -1;
	}
	/* output is informative: without the topic the streams carry states only */
	env->sse_tail = sw_bus_tail_new(env->base, env->cfg->kafka_bootstrap, topics, extra, 500,
					tail_cb, env, why, sizeof(why));
	if (env->sse_tail != NULL)
		sw_bus_consumer_set_error_cb(env->sse_tail, on_tail_error, env);
	else
		sw_log(SW_LOG_WARN,
		       "no live output on event streams (cannot read sagewai.sandbox, .runs, "
		       ".steps): streams follow other instances' commits by the poll only",
		       "error", why, NULL);
	env->sse_ev = event_new(env->base, -1, EV_PERSIST, sse_tick, env);
	if (env->sse_ev == NULL || event_add(env->sse_ev, &tv) == -1) {
		snprintf(errstr, errlen, "cannot start the stream timer");
		return -1;
	}
	return 0;
}

void sched_sse_stop(struct sched_env *env)
{
	struct sched_stream *s, *next;

	if (env->sse_ev != NULL)
		event_del(env->sse_ev);
	for (s = LIST_FIRST(&env->streams); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (s->wait) {
			/* 202: stored, follow it elsewhere (a read out answers so) */
			if (!s->reading)
				wait_end(s, 202, NULL);
			continue;
		}
		if (!s->started)
			continue; /* its first read answers it */
		if (s->conn != NULL)
			evhttp_connection_set_closecb(s->conn, NULL, NULL);
		evhttp_send_reply_end(s->req); /* also frees a detached request */
		s->conn = NULL;
		s->started = 0;
		s->gone = 1;
		if (!s->reading)
			stream_free(s); /* else read_done frees it */
	}
}

void sched_sse_free(struct sched_env *env)
{
	if (env->sse_ev != NULL)
		event_free(env->sse_ev);
	env->sse_ev = NULL;
	if (env->rq_ev != NULL)
		event_free(env->rq_ev);
	env->rq_ev = NULL;
	free(env->rq);
	env->rq = NULL;
	env->nrq = env->rq_cap = 0;
	if (env->sse_tail != NULL)
		sw_bus_consumer_destroy(env->sse_tail);
	env->sse_tail = NULL;
}
