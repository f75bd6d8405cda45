/*
 * Black-box tests of sagewai-worker over the real Kafka broker and
 * PostgreSQL of the harness, with sagewai-llm-mock as the LLM provider.
 * One program, one scenario per argument:
 *
 *   basic        template, llm (plain and JSON; the key reaches the mock
 *                and appears in no log line and no event), http (to a
 *                listener in this test, which records the body), plugin
 *                (wordcount, and a failing one), output over the limit,
 *                mode sandboxed refused, an unknown kind, a non-http URL
 *   preview      multi_tenant without SAGEWAI_SEALED_PREVIEW refuses a run
 *                with an identity-bearing mode before executing; with it
 *                the step runs; SAGEWAI_WORKER_OTHER_MODES=ignore leaves a
 *                sandboxed dispatch alone; a fenced JSON reply is parsed
 *   timeout      llm (mock --delay-ms) and plugin steps past timeout_ms
 *   cancel       run.cancel_requested aborts a running llm and plugin step,
 *                and pre-empts a later dispatch of that run
 *   redelivery   one dispatch produced several times (while running, after
 *                it finished, and to a restarted worker): one execution,
 *                one step.finished event id
 *   deadletter   garbage and a truncated dispatch go to sagewai.deadletter;
 *                the worker carries on; an llm step the provider refuses
 *                (401) fails naming status and message, never the key
 *   kill9        kill -9 of the worker mid-step; after a restart the step
 *                still finishes
 *   badplugin    a .so that is not a plugin refuses the start, naming it
 *   concurrency  steps run at once, up to SAGEWAI_WORKER_CONCURRENCY
 *
 * Topics are shared by every test of a run: each scenario names its runs
 * "<scenario>-<pid>-...", uses its own database and consumer group, and
 * positions that group at the end of the topics before the worker starts,
 * so the worker sees only what this scenario produces.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test.h"

#define KEY "sk-sagewai-test-6b1f2c9d8e7a40"

static struct sw_event_registry *reg;
static char scenario[32];
static char prefix[48];	  /* run id prefix of this scenario */
static char tmp_dir[512]; /* logs and plugin dir */
static char plugin_dir[600];
static char worker_log[600];
static char mock_log[600];
static char db_dsn[512];
static char group[128];
static pid_t worker_pid = -1, mock_pid = -1;
static int mock_port;
static rd_kafka_t *producer, *collector;
static size_t key_leaks; /* events on sagewai.steps holding the key */

struct ev {
	char type[32];
	char event_id[37];
	char run_id[64];
	char step_id[128];
	char status[16];
	json_t *output; /* parsed output, or NULL */
	char *error;
	int64_t offset;
	int32_t partition;
};
static struct ev *evs;
static size_t nevs, capevs;

static void show_logs(void)
{
	char cmd[1400];

	snprintf(cmd, sizeof(cmd), "tail -n 60 %s >&2; tail -n 10 %s >&2 2>/dev/null", worker_log,
		 mock_log);
	if (system(cmd) != 0)
		fprintf(stderr, "(no logs)\n");
}

#define REQUIRE(cond, ...)                                                                        \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			show_logs();                                                              \
			SW_CHECKF(cond, __VA_ARGS__);                                             \
		}                                                                                 \
	} while (0)

/* ---- processes ---------------------------------------------------------- */

static void exit_cleanup(void)
{
	if (worker_pid > 0) {
		kill(worker_pid, SIGKILL);
		waitpid(worker_pid, NULL, 0);
	}
	if (mock_pid > 0) {
		kill(mock_pid, SIGKILL);
		waitpid(mock_pid, NULL, 0);
	}
}

/* Start sagewai-worker; extra is a NULL-terminated list of "K=V" (or NULL). */
static void worker_start(const char *const *extra)
{
	char path[600], base_url[128];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/services/worker/sagewai-worker", getenv("SW_BUILD_DIR"));
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d/v1", mock_port);
	pid = fork();
	SW_CHECK(pid >= 0);
	if (pid == 0) {
		int fd = open(worker_log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		setenv("SAGEWAI_PG_DSN", db_dsn, 1);
		setenv("SAGEWAI_GROUP_ID", group, 1);
		setenv("SAGEWAI_HTTP_PORT", "0", 1);
		setenv("SAGEWAI_LOG_LEVEL", "debug", 1);
		setenv("SAGEWAI_LLM_BASE_URL", base_url, 1);
		setenv("SAGEWAI_LLM_API_KEY", KEY, 1);
		setenv("SAGEWAI_LLM_MODEL", "test-model", 1);
		setenv("SAGEWAI_PLUGIN_DIR", plugin_dir, 1);
		/* a killed member's partitions move after 6 s, not the default 45 */
		setenv("SAGEWAI_KAFKA_CONSUMER_CONFIG",
		       "session.timeout.ms=6000,heartbeat.interval.ms=1000", 1);
		for (; extra != NULL && *extra != NULL; extra++)
			putenv((char *)*extra);
		execl(path, "sagewai-worker", "serve", (char *)NULL);
		_exit(127);
	}
	worker_pid = pid;
}

/* Stop with sig; for SIGTERM the worker must exit 0 (clean shutdown). */
static void worker_stop(int sig)
{
	int status;

	if (worker_pid < 0)
		return;
	kill(worker_pid, sig);
	SW_CHECK(waitpid(worker_pid, &status, 0) == worker_pid);
	worker_pid = -1;
	if (sig == SIGTERM)
		REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			"sagewai-worker did not exit cleanly on SIGTERM (status %d)", status);
}

/* Start sagewai-llm-mock with args (NULL-terminated) and read its port. */
static void mock_start(const char *const *args)
{
	const char *argv[16] = {"sagewai-llm-mock"};
	char path[600], line[128];
	int fds[2], n = 1;
	FILE *f;
	pid_t pid;

	for (; args != NULL && *args != NULL && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	snprintf(path, sizeof(path), "%s/tools/llm-mock/sagewai-llm-mock", getenv("SW_BUILD_DIR"));
	SW_CHECK(pipe(fds) == 0);
	pid = fork();
	SW_CHECK(pid >= 0);
	if (pid == 0) {
		int fd = open(mock_log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		dup2(fds[1], 1);
		if (fd >= 0)
			dup2(fd, 2);
		close(fds[0]);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	mock_pid = pid;
	f = fdopen(fds[0], "r");
	SW_CHECK(f != NULL);
	SW_CHECKF(fgets(line, sizeof(line), f) != NULL, "llm-mock printed nothing");
	SW_CHECKF(sscanf(line, "listening on 127.0.0.1:%d", &mock_port) == 1, "llm-mock said: %s",
		  line);
	fclose(f);
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

/* A counter from the mock's /v1/mock/stats. */
static long mock_stat(const char *name)
{
	CURL *c = curl_easy_init();
	struct membuf m = {0};
	char url[128];
	json_t *j;
	long v;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/mock/stats", mock_port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	SW_CHECK(curl_easy_perform(c) == CURLE_OK);
	curl_easy_cleanup(c);
	j = json_loads(m.p, 0, NULL);
	SW_CHECK(j != NULL);
	v = (long)json_integer_value(json_object_get(j, name));
	json_decref(j);
	free(m.p);
	return v;
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

/* The end offsets of topics as a partition list (caller destroys). */
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

/* Commit the worker group at the end of its topics: it starts from there. */
static void position_group(void)
{
	static const char *const topics[] = {"sagewai.steps", "sagewai.runs", NULL};
	rd_kafka_t *rk = kafka_client(RD_KAFKA_CONSUMER, group);
	rd_kafka_topic_partition_list_t *l = ends(rk, topics);
	rd_kafka_resp_err_t e;

	e = rd_kafka_commit(rk, l, 0);
	SW_CHECKF(e == RD_KAFKA_RESP_ERR_NO_ERROR, "commit group position: %s",
		  rd_kafka_err2str(e));
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

/* Read sagewai.steps from its current end on. */
static void collector_start(void)
{
	static const char *const topics[] = {"sagewai.steps", NULL};
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
		/* what the worker wrote (our dispatches may quote the key on purpose) */
		if (strcmp(json_string_value(json_object_get(h, "producer")) ?: "",
			   "sagewai-worker") == 0 &&
		    memmem(m->payload, m->len, KEY, strlen(KEY)) != NULL)
			key_leaks++;
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
		out = json_object_get(e, "output");
		if (json_is_string(out))
			x->output = json_loads(json_string_value(out), JSON_DECODE_ANY, NULL);
		if (json_is_string(json_object_get(e, "error")))
			x->error = strdup(json_string_value(json_object_get(e, "error")));
		x->offset = m->offset;
		x->partition = m->partition;
		json_decref(e);
		rd_kafka_message_destroy(m);
	}
}

static size_t count(const char *type, const char *step_id)
{
	size_t i, n = 0;

	for (i = 0; i < nevs; i++)
		if (strcmp(evs[i].type, type) == 0 && strcmp(evs[i].step_id, step_id) == 0)
			n++;
	return n;
}

static struct ev *find(const char *type, const char *step_id, size_t nth)
{
	size_t i;

	for (i = 0; i < nevs; i++)
		if (strcmp(evs[i].type, type) == 0 && strcmp(evs[i].step_id, step_id) == 0 &&
		    nth-- == 0)
			return &evs[i];
	return NULL;
}

static void require_worker_alive(void)
{
	REQUIRE(worker_pid < 0 || waitpid(worker_pid, NULL, WNOHANG) == 0,
		"sagewai-worker exited");
}

/* Wait for the nth (from 0) event of type for step_id. */
static struct ev *wait_event(const char *type, const char *step_id, size_t nth, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;
	struct ev *e;

	for (;;) {
		collect(100);
		if ((e = find(type, step_id, nth)) != NULL)
			return e;
		require_worker_alive();
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

/* A spec: {"workflow", "workflow_version", "uses", "with", "run_modes",
 * "output_max"}; with is stolen. */
static json_t *spec(const char *uses, json_t *with)
{
	return json_pack("{s:s, s:i, s:s, s:o, s:[s], s:i}", "workflow", "worker-test",
			 "workflow_version", 1, "uses", uses, "with", with, "run_modes",
			 "in_process", "output_max", 1048576);
}

/* Encode (not produce) a step.dispatched of run <prefix>-<run>; sp stolen. */
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
	sw_event_header_init(&h, "step.dispatched", "worker-test");
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

static void dispatch_send(const struct dispatch *d)
{
	produce("sagewai.steps", d->run_id, d->buf, d->len);
}

/* Make and send a dispatch; d keeps its ids, not its bytes. */
static void dispatch(struct dispatch *d, const char *run, const char *step, const char *mode,
		     int64_t timeout_ms, json_t *sp)
{
	dispatch_make(d, run, step, mode, timeout_ms, sp);
	dispatch_send(d);
	free(d->buf);
	d->buf = NULL;
}

static void cancel_run(const char *run_id)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;
	json_t *o;

	sw_event_header_init(&h, "run.cancel_requested", "worker-test");
	snprintf(h.tenant, sizeof(h.tenant), "default");
	snprintf(h.run_id, sizeof(h.run_id), "%s", run_id);
	o = json_pack("{s:s, s:s}", "requested_by", "worker-test", "reason", "test");
	SW_CHECKF(
	    sw_event_encode(reg, "run.cancel_requested", &h, o, &buf, &len, err, sizeof(err)) == 0,
	    "%s", err);
	json_decref(o);
	produce("sagewai.runs", run_id, buf, len);
	free(buf);
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

static void require_output(const struct ev *e, const char *json)
{
	json_t *want = json_loads(json, JSON_DECODE_ANY, NULL);
	char *got;

	SW_CHECK(want != NULL);
	got = e->output ? json_dumps(e->output, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	REQUIRE(e->output != NULL && json_equal(e->output, want), "%s: output %s, expected %s",
		e->step_id, got ? got : "(none)", json);
	free(got);
	json_decref(want);
}

/* step.started came before step.finished (same partition, lower offset). */
static void require_started_first(const char *step_id)
{
	struct ev *s = find("step.started", step_id, 0), *f = find("step.finished", step_id, 0);

	REQUIRE(s != NULL && f != NULL, "%s: no step.started", step_id);
	REQUIRE(s->partition == f->partition && s->offset < f->offset,
		"%s: step.started not before step.finished", step_id);
}

static void require_not_started(const char *step_id)
{
	REQUIRE(count("step.started", step_id) == 0, "%s: was started", step_id);
}

/* ---- an HTTP target, on its own thread ----------------------------------- */

struct target {
	struct event_base *base;
	struct evhttp *http;
	int port;
	pthread_t th;
	pthread_mutex_t mu;
	int hits;
	char body[4096]; /* what /ok was sent, last */
	char ctype[128];
	char xtest[128];
	char method[16];
};
static struct target target;

static void target_cb(struct evhttp_request *req, void *arg)
{
	struct target *t = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req), *out = evbuffer_new();
	struct evkeyvalq *hs = evhttp_request_get_input_headers(req);
	const char *uri = evhttp_request_get_uri(req), *v;
	size_t n = evbuffer_get_length(in);
	char body[4096];

	if (n >= sizeof(body))
		n = sizeof(body) - 1;
	evbuffer_copyout(in, body, n);
	body[n] = '\0';
	pthread_mutex_lock(&t->mu);
	t->hits++;
	if (strcmp(uri, "/ok") != 0) {
		pthread_mutex_unlock(&t->mu);
		goto reply;
	}
	memcpy(t->body, body, n + 1);
	snprintf(t->ctype, sizeof(t->ctype), "%s",
		 (v = evhttp_find_header(hs, "Content-Type")) ? v : "");
	snprintf(t->xtest, sizeof(t->xtest), "%s",
		 (v = evhttp_find_header(hs, "X-Test")) ? v : "");
	snprintf(t->method, sizeof(t->method), "%s",
		 evhttp_request_get_command(req) == EVHTTP_REQ_POST  ? "POST"
		 : evhttp_request_get_command(req) == EVHTTP_REQ_PUT ? "PUT"
		 : evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET"
								     : "OTHER");
	pthread_mutex_unlock(&t->mu);
reply:
	if (strcmp(uri, "/ok") == 0) {
		evbuffer_add_printf(out, "{\"received\": %s}", n ? body : "null");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "application/json");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(uri, "/text") == 0) {
		evbuffer_add_printf(out, "plain words, not JSON");
		evhttp_send_reply(req, 200, "OK", out);
	} else {
		evbuffer_add_printf(out, "service unavailable right now");
		evhttp_send_reply(req, 503, "Unavailable", out);
	}
	evbuffer_free(out);
}

static void *target_main(void *arg)
{
	event_base_dispatch(((struct target *)arg)->base);
	return NULL;
}

static void target_start(void)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	SW_CHECK(evthread_use_pthreads() == 0);
	pthread_mutex_init(&target.mu, NULL);
	target.base = event_base_new();
	target.http = evhttp_new(target.base);
	SW_CHECK(target.base != NULL && target.http != NULL);
	evhttp_set_gencb(target.http, target_cb, &target);
	bs = evhttp_bind_socket_with_handle(target.http, "127.0.0.1", 0);
	SW_CHECK(bs != NULL);
	SW_CHECK(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&a, &len) == 0);
	target.port = ntohs(a.sin_port);
	SW_CHECK(pthread_create(&target.th, NULL, target_main, &target) == 0);
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
	char q[4096], dbname[128], err[256];

	sw_test_env_load();
	atexit(exit_cleanup);
	snprintf(scenario, sizeof(scenario), "%s", name);
	base_dsn = getenv("SAGEWAI_PG_DSN");
	SW_CHECK(base_dsn != NULL && build != NULL);
	snprintf(prefix, sizeof(prefix), "wt-%s-%d", name, (int)getpid());
	snprintf(group, sizeof(group), "worker-test-%s", prefix);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tests-tmp/worker-%s", build, prefix);
	snprintf(plugin_dir, sizeof(plugin_dir), "%s/plugins", tmp_dir);
	snprintf(worker_log, sizeof(worker_log), "%s/worker.log", tmp_dir);
	snprintf(mock_log, sizeof(mock_log), "%s/llm-mock.log", tmp_dir);
	/* the plugins under test: the wordcount example and the sleepy helper */
	snprintf(q, sizeof(q),
		 "mkdir -p %s && ln -sf %s/plugins/wordcount.so %s/ && "
		 "ln -sf %s/tests/worker/plugins/sleepy.so %s/",
		 plugin_dir, build, plugin_dir, build, plugin_dir);
	SW_CHECK(system(q) == 0);
	snprintf(dbname, sizeof(dbname), "worker_%s_%d", name, (int)getpid());
	snprintf(q, sizeof(q), "CREATE DATABASE %s", dbname);
	PQclear(sql(base_dsn, q));
	snprintf(db_dsn, sizeof(db_dsn), "%s dbname=%s", base_dsn, dbname);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = kafka_client(RD_KAFKA_PRODUCER, NULL);
	position_group();
	collector_start();
}

/* The key must not be in any worker log line nor in any event. */
static void require_key_secret(void)
{
	struct stat st;
	char *buf;
	FILE *f;
	size_t n;

	collect(500);
	REQUIRE(key_leaks == 0, "%zu worker events on sagewai.steps hold the LLM key", key_leaks);
	SW_CHECK(stat(worker_log, &st) == 0);
	buf = malloc((size_t)st.st_size + 1);
	f = fopen(worker_log, "r");
	SW_CHECK(buf != NULL && f != NULL);
	n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	REQUIRE(n > 0 && memmem(buf, n, KEY, strlen(KEY)) == NULL,
		"the LLM key appears in the worker log");
	free(buf);
}

/* ---- scenarios ---------------------------------------------------------- */

static void scenario_basic(void)
{
	static const char *const mock_args[] = {"--require-key", KEY, NULL};
	struct dispatch d[14];
	char url[128], big[201];
	struct ev *e;
	json_t *o, *want;

	mock_start(mock_args);
	target_start();
	worker_start(NULL);

	dispatch(
	    &d[0], "tpl", "hello", "in_process", 30000,
	    spec("template", json_pack("{s:{s:[i,s], s:s}}", "value", "a", 1, "x", "b", "c")));
	dispatch(
	    &d[1], "llm", "plain", "in_process", 30000,
	    spec("llm", json_pack("{s:s}", "prompt", "Write a tagline for a bakery in Lisbon")));
	dispatch(&d[2], "llm", "brief", "in_process", 30000,
		 spec("llm",
		      json_pack("{s:s, s:b, s:s}", "prompt", "a portfolio site for a photographer",
				"json", 1, "system", "You write website briefs.")));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", target.port);
	dispatch(&d[3], "http", "post", "in_process", 30000,
		 spec("http", json_pack("{s:s, s:{s:s, s:i}, s:{s:s}}", "url", url, "body",
					"hello", "world", "n", 7, "headers", "X-Test", "yes")));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/fail", target.port);
	dispatch(&d[4], "http", "fail", "in_process", 30000,
		 spec("http", json_pack("{s:s}", "url", url)));
	dispatch(&d[5], "http", "file", "in_process", 30000,
		 spec("http", json_pack("{s:s}", "url", "file:///etc/passwd")));
	dispatch(&d[6], "plugin", "count", "in_process", 30000,
		 spec("plugin:wordcount", json_pack("{s:s}", "text", "one two  three\nfour  ")));
	dispatch(&d[7], "plugin", "boom", "in_process", 30000,
		 spec("plugin:sleepy", json_pack("{s:b}", "fail", 1)));
	memset(big, 'x', 200);
	big[200] = '\0';
	o = spec("template", json_pack("{s:s}", "value", big));
	json_object_set_new(o, "output_max", json_integer(100));
	dispatch(&d[8], "big", "big", "in_process", 30000, o);
	dispatch(&d[9], "sandbox", "boxed", "sandboxed", 30000,
		 spec("template", json_pack("{s:s}", "value", "never")));
	dispatch(&d[10], "kind", "odd", "in_process", 30000, spec("frobnicate", json_pack("{}")));
	dispatch(&d[11], "redact", "echo", "in_process", 30000,
		 spec("template", json_pack("{s:s}", "value", "the key is " KEY)));
	dispatch(&d[12], "plugin", "garbage", "in_process", 30000,
		 spec("plugin:sleepy", json_pack("{s:b}", "garbage", 1)));
	dispatch(&d[13], "plugin", "nosuch", "in_process", 30000,
		 spec("plugin:nosuch", json_pack("{}")));

	e = wait_finished(d[0].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "{\"a\": [1, \"x\"], \"b\": \"c\"}");
	require_started_first(d[0].step_id);

	e = wait_finished(d[1].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "\"Summary: Write a tagline for a bakery in Lisbon\"");
	require_started_first(d[1].step_id);

	e = wait_finished(d[2].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(
	    e, "{\"title\": \"Portfolio site for a photographer\","
	       " \"sections\": [\"about\", \"gallery\", \"contact\"], \"tone\": \"warm\"}");
	SW_CHECK(mock_stat("completions") == 2);
	SW_CHECK(mock_stat("unauthorized") == 0); /* the key reached the mock */

	e = wait_finished(d[3].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "{\"status\": 200, \"body\": {\"received\": {\"hello\": \"world\","
			  " \"n\": 7}}}");
	pthread_mutex_lock(&target.mu);
	o = json_loads(target.body, 0, NULL);
	want = json_pack("{s:s, s:i}", "hello", "world", "n", 7);
	REQUIRE(o != NULL && json_equal(o, want), "the target received %s", target.body);
	json_decref(want);
	REQUIRE(strcmp(target.method, "POST") == 0, "method %s", target.method);
	REQUIRE(strcmp(target.ctype, "application/json") == 0, "Content-Type %s", target.ctype);
	REQUIRE(strcmp(target.xtest, "yes") == 0, "X-Test %s", target.xtest);
	pthread_mutex_unlock(&target.mu);
	json_decref(o);

	e = wait_finished(d[4].step_id);
	require_status(e, "FAILED", "http_error: HTTP 503");
	e = wait_finished(d[5].step_id);
	require_status(e, "FAILED", "bad_input: ");

	e = wait_finished(d[6].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "{\"words\": 4, \"lines\": 2, \"characters\": 21}");
	e = wait_finished(d[7].step_id);
	require_status(e, "FAILED", "plugin_error: sleepy: asked to fail");

	e = wait_finished(d[8].step_id);
	require_status(e, "FAILED",
		       "output_too_large: output is 202 bytes, over the limit of 100");

	e = wait_finished(d[9].step_id);
	require_status(e, "FAILED", "mode_unavailable: ");
	require_not_started(d[9].step_id);

	e = wait_finished(d[10].step_id);
	require_status(e, "FAILED", "bad_input: unknown step kind");

	e = wait_finished(d[11].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "\"the key is [REDACTED]\"");

	e = wait_finished(d[12].step_id);
	require_status(e, "FAILED", "plugin_error: sleepy returned invalid JSON");
	e = wait_finished(d[13].step_id);
	require_status(e, "FAILED", "plugin_error: no plugin named 'nosuch'");

	worker_stop(SIGTERM);
	require_key_secret();
}

static void scenario_preview(void)
{
	static const char *const multi[] = {"SAGEWAI_MODE=multi_tenant", NULL};
	static const char *const sealed[] = {"SAGEWAI_MODE=multi_tenant",
					     "SAGEWAI_SEALED_PREVIEW=1",
					     "SAGEWAI_WORKER_OTHER_MODES=ignore", NULL};
	static const char *const mock_args[] = {"--fence", NULL};
	struct dispatch d[5];
	struct ev *e;
	json_t *o;

	mock_start(mock_args);
	worker_start(multi);
	/* (the llm kind copes with a reply wrapped in prose and a ```json fence) */
	dispatch(
	    &d[4], "plain", "fenced", "in_process", 30000,
	    spec("llm", json_pack("{s:s, s:b}", "prompt", "a blog about sailing", "json", 1)));
	o = spec("template", json_pack("{s:s}", "value", "identity run"));
	json_object_set_new(o, "run_modes", json_pack("[s,s]", "in_process", "identity_scoped"));
	dispatch(&d[0], "gated", "first", "in_process", 30000, o);
	dispatch(&d[1], "plain", "first", "in_process", 30000,
		 spec("template", json_pack("{s:s}", "value", "plain run")));
	e = wait_finished(d[0].step_id);
	require_status(e, "FAILED", "preview_gate: ");
	require_not_started(d[0].step_id);
	e = wait_finished(d[1].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "\"plain run\"");
	e = wait_finished(d[4].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e,
		       "{\"title\": \"Blog about sailing\", \"sections\": [\"about\", \"posts\","
		       " \"contact\"], \"tone\": \"warm\"}");
	worker_stop(SIGTERM);

	/* the operator opts in: the same kind of run now executes; and with
	 * SAGEWAI_WORKER_OTHER_MODES=ignore a sandboxed step is left alone
	 * (dispatched first in the same run, so it is consumed first) */
	worker_start(sealed);
	dispatch(&d[3], "sealed", "boxed", "sandboxed", 30000,
		 spec("template", json_pack("{s:s}", "value", "not mine")));
	o = spec("template", json_pack("{s:s}", "value", "identity run"));
	json_object_set_new(o, "run_modes", json_pack("[s,s]", "in_process", "cli_agent_jit"));
	dispatch(&d[2], "sealed", "first", "in_process", 30000, o);
	e = wait_finished(d[2].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "\"identity run\"");
	collect(500);
	REQUIRE(count("step.finished", d[3].step_id) == 0, "the sandboxed step was answered");
	worker_stop(SIGTERM);
}

static void scenario_timeout(void)
{
	static const char *const mock_args[] = {"--delay-ms", "60000", NULL};
	struct dispatch d[4];
	struct ev *e;

	mock_start(mock_args);
	worker_start(NULL);
	dispatch(&d[0], "llm", "slow", "in_process", 500,
		 spec("llm", json_pack("{s:s}", "prompt", "take your time")));
	dispatch(&d[1], "plugin", "slow", "in_process", 300,
		 spec("plugin:sleepy", json_pack("{s:i}", "ms", 3000)));
	e = wait_finished(d[0].step_id);
	require_status(e, "TIMED_OUT", "timeout: ");
	require_started_first(d[0].step_id);
	e = wait_finished(d[1].step_id);
	require_status(e, "TIMED_OUT", "timeout: ");

	/* the abandoned plugin call comes back later and is dropped; the
	 * worker keeps serving meanwhile */
	dispatch(&d[2], "after", "quick", "in_process", 30000,
		 spec("template", json_pack("{s:i}", "value", 42)));
	e = wait_finished(d[2].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "42");
	dispatch(&d[3], "after", "nap", "in_process", 30000,
		 spec("plugin:sleepy", json_pack("{s:i}", "ms", 3500)));
	e = wait_finished(d[3].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "{\"slept\": 3500}");
	collect(500);
	SW_CHECK(count("step.finished", d[1].step_id) == 1);
	SW_CHECK(count("step.finished", d[0].step_id) == 1);
	worker_stop(SIGTERM);
}

static void scenario_cancel(void)
{
	static const char *const mock_args[] = {"--delay-ms", "60000", NULL};
	struct dispatch d[4];
	struct ev *e;

	mock_start(mock_args);
	worker_start(NULL);
	dispatch(&d[0], "llm", "long", "in_process", 0,
		 spec("llm", json_pack("{s:s}", "prompt", "a very long answer please")));
	dispatch(&d[1], "plugin", "long", "in_process", 0,
		 spec("plugin:sleepy", json_pack("{s:i}", "ms", 4000)));
	/* another run's step is not touched */
	dispatch(&d[2], "other", "stay", "in_process", 0,
		 spec("plugin:sleepy", json_pack("{s:i}", "ms", 1000)));
	wait_event("step.started", d[0].step_id, 0, 120);
	wait_event("step.started", d[1].step_id, 0, 120);
	cancel_run(d[0].run_id);
	cancel_run(d[1].run_id);
	e = wait_finished(d[0].step_id);
	require_status(e, "CANCELLED", "cancelled: ");
	e = wait_finished(d[1].step_id);
	require_status(e, "CANCELLED", "cancelled: ");
	e = wait_finished(d[2].step_id);
	require_status(e, "SUCCEEDED", NULL);

	/* a dispatch of a cancelled run that arrives afterwards never runs */
	dispatch(&d[3], "llm", "late", "in_process", 0,
		 spec("template", json_pack("{s:s}", "value", "too late")));
	e = wait_finished(d[3].step_id);
	require_status(e, "CANCELLED", "cancelled: ");
	require_not_started(d[3].step_id);
	worker_stop(SIGTERM);
}

static void scenario_redelivery(void)
{
	static const char *const mock_args[] = {"--delay-ms", "1500", NULL};
	struct dispatch d;
	struct ev *e;
	size_t i, n;

	mock_start(mock_args);
	worker_start(NULL);
	dispatch_make(&d, "dup", "once", "in_process", 60000,
		      spec("llm", json_pack("{s:s}", "prompt", "say this once")));
	/* twice while it runs */
	dispatch_send(&d);
	dispatch_send(&d);
	e = wait_finished(d.step_id);
	require_status(e, "SUCCEEDED", NULL);
	/* again once it finished: answered from the results table */
	dispatch_send(&d);
	wait_event("step.finished", d.step_id, 1, 120);
	/* and to a fresh worker process */
	worker_stop(SIGTERM);
	worker_start(NULL);
	dispatch_send(&d);
	wait_event("step.finished", d.step_id, 2, 120);
	collect(1000);
	n = count("step.finished", d.step_id);
	for (i = 0; i < n; i++)
		REQUIRE(strcmp(find("step.finished", d.step_id, i)->event_id, e->event_id) == 0,
			"step.finished #%zu has event id %s, the first had %s", i,
			find("step.finished", d.step_id, i)->event_id, e->event_id);
	REQUIRE(count("step.started", d.step_id) == 1, "started %zu times",
		count("step.started", d.step_id));
	REQUIRE(mock_stat("completions") == 1, "the mock answered %ld completions",
		mock_stat("completions"));
	worker_stop(SIGTERM);
	free(d.buf);
}

/* Consume sagewai.deadletter from the start; find a message whose value is
 * needle and that carries a non-empty sagewai.reason header. */
static int deadletter_has(const void *needle, size_t len, char *reason, size_t rlen)
{
	static int calls;
	rd_kafka_topic_partition_list_t *tl;
	rd_kafka_t *c;
	char gid[96];
	int found = 0, idle = 0;

	snprintf(gid, sizeof(gid), "%s-dl%d", prefix, calls++);
	c = kafka_client(RD_KAFKA_CONSUMER, gid);
	rd_kafka_poll_set_consumer(c);
	tl = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(tl, "sagewai.deadletter", RD_KAFKA_PARTITION_UA);
	SW_CHECK(rd_kafka_subscribe(c, tl) == 0);
	rd_kafka_topic_partition_list_destroy(tl);
	while (idle < 40 && !found) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 250);
		rd_kafka_headers_t *hs = NULL;
		const void *v;
		size_t vlen;

		if (m == NULL) {
			idle++;
			continue;
		}
		if (m->err == 0 && m->len == len && memcmp(m->payload, needle, len) == 0 &&
		    rd_kafka_message_headers(m, &hs) == 0 &&
		    rd_kafka_header_get_last(hs, "sagewai.reason", &v, &vlen) == 0 && vlen > 0) {
			snprintf(reason, rlen, "%.*s", (int)vlen, (const char *)v);
			found = 1;
		}
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(c);
	rd_kafka_destroy(c);
	return found;
}

static void scenario_deadletter(void)
{
	static const char *const mock_args[] = {"--require-key", "some-other-key", NULL};
	struct dispatch d[3];
	char garbage[128], key[96], reason[256];
	struct ev *e;

	/* the provider refuses our key: the error names the status and the
	 * provider's message, never the key */
	mock_start(mock_args);
	worker_start(NULL);
	dispatch(&d[2], "refused", "ask", "in_process", 0,
		 spec("llm", json_pack("{s:s}", "prompt", "hello")));
	e = wait_finished(d[2].step_id);
	require_status(e, "FAILED", "llm_error: HTTP 401: Incorrect API key provided");
	REQUIRE(strstr(e->error, KEY) == NULL, "the error holds the key");
	SW_CHECK(mock_stat("unauthorized") == 1);

	snprintf(key, sizeof(key), "%s-garbage", prefix);
	snprintf(garbage, sizeof(garbage), "not an event at all %s", prefix);
	produce("sagewai.steps", key, garbage, strlen(garbage));
	dispatch_make(&d[0], "cut", "cut", "in_process", 0,
		      spec("template", json_pack("{s:s}", "value", "never")));
	produce("sagewai.steps", d[0].run_id, d[0].buf, d[0].len - 5);
	dispatch(&d[1], "after", "fine", "in_process", 0,
		 spec("template", json_pack("{s:s}", "value", "still serving")));
	e = wait_finished(d[1].step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "\"still serving\"");
	SW_CHECKF(deadletter_has(garbage, strlen(garbage), reason, sizeof(reason)),
		  "garbage not in sagewai.deadletter");
	fprintf(stderr, "garbage: %s\n", reason);
	SW_CHECKF(deadletter_has(d[0].buf, d[0].len - 5, reason, sizeof(reason)),
		  "truncated dispatch not in sagewai.deadletter");
	fprintf(stderr, "truncated: %s\n", reason);
	collect(500);
	SW_CHECK(count("step.finished", d[0].step_id) == 0);
	worker_stop(SIGTERM);
	require_key_secret();
	free(d[0].buf);
}

static void scenario_kill9(void)
{
	static const char *const mock_args[] = {"--delay-ms", "4000", NULL};
	struct dispatch d;
	struct ev *e;

	mock_start(mock_args);
	worker_start(NULL);
	dispatch(&d, "crash", "slow", "in_process", 0,
		 spec("llm", json_pack("{s:s}", "prompt", "survive a crash")));
	wait_event("step.started", d.step_id, 0, 120);
	worker_stop(SIGKILL);
	collect(200);
	SW_CHECK(count("step.finished", d.step_id) == 0);
	worker_start(NULL);
	e = wait_finished(d.step_id);
	require_status(e, "SUCCEEDED", NULL);
	require_output(e, "\"Summary: survive a crash\"");
	REQUIRE(count("step.started", d.step_id) == 2, "started %zu times",
		count("step.started", d.step_id));
	collect(1000);
	SW_CHECK(count("step.finished", d.step_id) == 1);
	worker_stop(SIGTERM);
}

static void scenario_badplugin(void)
{
	char path[700], cmd[2000], log[4096];
	int status;
	FILE *f;
	size_t n;

	/* a file that is not a shared object at all */
	snprintf(path, sizeof(path), "%s/bad.so", plugin_dir);
	f = fopen(path, "w");
	SW_CHECK(f != NULL);
	fputs("not an ELF file\n", f);
	fclose(f);
	worker_start(NULL);
	SW_CHECK(waitpid(worker_pid, &status, 0) == worker_pid);
	worker_pid = -1;
	SW_CHECKF(WIFEXITED(status) && WEXITSTATUS(status) != 0, "worker started (status %d)",
		  status);
	f = fopen(worker_log, "r");
	SW_CHECK(f != NULL);
	n = fread(log, 1, sizeof(log) - 1, f);
	fclose(f);
	log[n] = '\0';
	REQUIRE(strstr(log, path) != NULL, "the error does not name %s", path);

	/* a shared object without the entry point */
	SW_CHECK(unlink(path) == 0);
	snprintf(cmd, sizeof(cmd), "ln -sf $(ls /usr/lib/*/libjansson.so.4 | head -1) %s/nope.so",
		 plugin_dir);
	SW_CHECK(system(cmd) == 0);
	SW_CHECK(truncate(worker_log, 0) == 0);
	worker_start(NULL);
	SW_CHECK(waitpid(worker_pid, &status, 0) == worker_pid);
	worker_pid = -1;
	SW_CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0);
	f = fopen(worker_log, "r");
	n = fread(log, 1, sizeof(log) - 1, f);
	fclose(f);
	log[n] = '\0';
	REQUIRE(strstr(log, "nope.so") != NULL && strstr(log, "sagewai_plugin_v1") != NULL,
		"the error does not name nope.so and the missing symbol");
}

static void scenario_concurrency(void)
{
	static const char *const mock_args[] = {"--delay-ms", "2000", NULL};
	static const char *const conc[] = {"SAGEWAI_WORKER_CONCURRENCY=3", NULL};
	struct dispatch d[8];
	char run[16];
	long maxd;
	int i;

	mock_start(mock_args);
	worker_start(conc);
	for (i = 0; i < 8; i++) {
		snprintf(run, sizeof(run), "r%d", i);
		dispatch(&d[i], run, "ask", "in_process", 0,
			 spec("llm", json_pack("{s:s}", "prompt", "in parallel")));
	}
	for (i = 0; i < 8; i++)
		require_status(wait_finished(d[i].step_id), "SUCCEEDED", NULL);
	maxd = mock_stat("max_delayed");
	fprintf(stderr, "at most %ld requests in flight at once\n", maxd);
	REQUIRE(maxd >= 2, "steps ran one at a time (max in flight %ld)", maxd);
	REQUIRE(maxd <= 3, "more than SAGEWAI_WORKER_CONCURRENCY=3 in flight (%ld)", maxd);
	SW_CHECK(mock_stat("completions") == 8);
	worker_stop(SIGTERM);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} scenarios[] = {
	    {"basic", scenario_basic},
	    {"preview", scenario_preview},
	    {"timeout", scenario_timeout},
	    {"cancel", scenario_cancel},
	    {"redelivery", scenario_redelivery},
	    {"deadletter", scenario_deadletter},
	    {"kill9", scenario_kill9},
	    {"badplugin", scenario_badplugin},
	    {"concurrency", scenario_concurrency},
	};
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: worker_test SCENARIO\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (strcmp(argv[1], scenarios[i].name) == 0)
			break;
	SW_CHECKF(i < sizeof(scenarios) / sizeof(scenarios[0]), "unknown scenario %s", argv[1]);
	setup(argv[1]);
	scenarios[i].fn();
	rd_kafka_destroy(collector);
	rd_kafka_destroy(producer);
	sw_events_registry_destroy(reg);
	fprintf(stderr, "worker %s: ok\n", argv[1]);
	return 0;
}
