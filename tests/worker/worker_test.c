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
 *                (the listener is on SAGEWAI_HTTP_ALLOW)
 *   preview      multi_tenant without SAGEWAI_SEALED_PREVIEW refuses a run
 *                with an identity-bearing mode before executing; with it
 *                the step runs; SAGEWAI_WORKER_OTHER_MODES=ignore leaves a
 *                sandboxed dispatch alone; a fenced JSON reply is parsed
 *   timeout      llm (mock --delay-ms) and plugin steps past timeout_ms; a
 *                dispatch consumed after its deadline is refused unstarted
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
 *   replay       a re-run's llm and http steps (spec.replay) answer from the
 *                recorded outcome without calling the model or URL (the
 *                mock counts no completion; the URL is unreachable): a
 *                recorded output, a recorded failure; a request other
 *                than the recorded one, no recorded request, an output
 *                that is not JSON, a cancelled original: each a clear
 *                failure; a template step ignores spec.replay
 *   groupsave    40 quick steps dispatched at once (their results saved in
 *                groups, several rows per INSERT), run names with '"',
 *                '\' and ',' included: each finishes once, and a second
 *                copy of every dispatch is answered from the results table
 *                with the first step.finished's event id, never run again
 *                (recorded answers: steps with no effect that keep a row)
 *   pure         a template step is pure: its step.finished's event id is
 *                the one derived from its dispatch's, it leaves no results
 *                row, and a second copy runs again to the same event id and
 *                output; a recorded answer still leaves its row
 *   ssrf         an http step reaches a loopback listener only when
 *                SAGEWAI_HTTP_ALLOW names it: refused to 127.0.0.1, to
 *                localhost, to [::1], to the metadata address, to the LLM
 *                provider's port (whose llm steps still work), and at a
 *                redirect from an allowed listener to another port; a bad
 *                SAGEWAI_HTTP_ALLOW refuses the start (exit 2)
 *   lazysave     a recorded answer's step.finished goes out while its row
 *                waits on a locked table; its offset is committed only
 *                after the row lands; a redelivery re-publishes that event
 *   startedafter SAGEWAI_WORKER_STARTED_AFTER_MS=1000: a quick step has no
 *                step.started, ever; a plugin and an llm step that run
 *                longer, and one timed out after the delay, have one each,
 *                before their outcome (the other scenarios set 0: at once)
 *
 * Topics are shared by every test of a run: each scenario names its runs
 * "<scenario>-<pid>-...", uses its own database and consumer group, and
 * positions that group at the end of the topics before the worker starts,
 * so the worker sees only what this scenario produces.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

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
static rd_kafka_t *producer;
static struct sw_test_evlog evl; /* runs "<prefix>..." on sagewai.steps */
static struct sw_test_sender tx; /* our dispatches */
static size_t key_leaks;	 /* events on sagewai.steps holding the key */

/* ---- processes ---------------------------------------------------------- */

/* Start sagewai-worker; extra is a NULL-terminated list of "K=V" (or NULL). */
static void worker_start(const char *const *extra)
{
	static const char *const argv[] = {"sagewai-worker", "serve", NULL};
	char path[600], base_url[160], dsn[600], gid[160], plugins[700];
	const char *env[32] = {dsn,
			       gid,
			       "SAGEWAI_HTTP_PORT=0",
			       "SAGEWAI_LOG_LEVEL=debug",
			       base_url,
			       "SAGEWAI_LLM_API_KEY=" KEY,
			       "SAGEWAI_LLM_MODEL=test-model",
			       plugins,
			       SW_TEST_ENV_FAST_REBALANCE};
	int n = 9, started;

	snprintf(path, sizeof(path), "%s/services/worker/sagewai-worker", getenv("SW_BUILD_DIR"));
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "worker");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(base_url, sizeof(base_url), "SAGEWAI_LLM_BASE_URL=http://127.0.0.1:%d/v1",
		 mock_port);
	snprintf(plugins, sizeof(plugins), "SAGEWAI_PLUGIN_DIR=%s", plugin_dir);
	/* every step's step.started at once, unless the scenario says */
	started = n;
	env[n++] = "SAGEWAI_WORKER_STARTED_AFTER_MS=0";
	for (; extra != NULL && *extra != NULL; extra++) {
		SW_CHECK(n < 31);
		if (strncmp(*extra, "SAGEWAI_WORKER_STARTED_AFTER_MS=", 32) == 0)
			env[started] = *extra;
		else
			env[n++] = *extra;
	}
	env[n] = NULL;
	worker_pid = sw_test_proc_spawn(path, argv, env, worker_log);
}

/* Stop with sig; for SIGTERM the worker must exit 0 (clean shutdown). */
static void worker_stop(int sig)
{
	sw_test_proc_stop(&worker_pid, sig, "sagewai-worker");
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

/* A counter from the mock's /v1/mock/stats. */
static long mock_stat(const char *name)
{
	long status, v;
	char *body = sw_test_http_get(mock_port, "/v1/mock/stats", &status);
	json_t *j;

	SW_CHECK(status != 0);
	j = body != NULL ? json_loads(body, 0, NULL) : NULL;
	SW_CHECK(j != NULL);
	v = (long)json_integer_value(json_object_get(j, name));
	json_decref(j);
	free(body);
	return v;
}

/* ---- Kafka -------------------------------------------------------------- */

/* What the worker wrote (our dispatches may quote the key on purpose). */
static void key_leak_check(const rd_kafka_message_t *m, json_t *e)
{
	const char *who =
	    json_string_value(json_object_get(json_object_get(e, "header"), "producer"));

	if (who != NULL && strcmp(who, "sagewai-worker") == 0 &&
	    memmem(m->payload, m->len, KEY, strlen(KEY)) != NULL)
		key_leaks++;
}

/* ---- dispatches ----------------------------------------------------------- */

/* A spec: {"workflow", "workflow_version", "uses", "with", "run_modes",
 * "output_max"}; with is stolen. */
static json_t *spec(const char *uses, json_t *with)
{
	return json_pack("{s:s, s:i, s:s, s:o, s:[s], s:i}", "workflow", "worker-test",
			 "workflow_version", 1, "uses", uses, "with", with, "run_modes",
			 "in_process", "output_max", 1048576);
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
	sw_test_kafka_deliver(producer, "sagewai.runs", run_id, buf, len);
	free(buf);
}

static void require_output(const struct sw_test_ev *e, const char *json)
{
	json_t *want = json_loads(json, JSON_DECODE_ANY, NULL);
	char *got;

	SW_CHECK(want != NULL);
	got = e->output ? json_dumps(e->output, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	SW_REQUIRE(e->output != NULL && json_equal(e->output, want), "%s: output %s, expected %s",
		   e->step_id, got ? got : "(none)", json);
	free(got);
	json_decref(want);
}

/* step.started came before step.finished (same partition, lower offset). */
static void require_started_first(const char *step_id)
{
	struct sw_test_ev *s = sw_test_evlog_find(&evl, "step.started", step_id, 0),
			  *f = sw_test_evlog_find(&evl, "step.finished", step_id, 0);

	SW_REQUIRE(s != NULL && f != NULL, "%s: no step.started", step_id);
	SW_REQUIRE(s->partition == f->partition && s->offset < f->offset,
		   "%s: step.started not before step.finished", step_id);
}

static void require_not_started(const char *step_id)
{
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", step_id) == 0, "%s: was started",
		   step_id);
}

/* ---- an HTTP target, on its own thread ----------------------------------- */

struct target {
	struct event_base *base;
	struct evhttp *http;
	int port;  /* the listener the tests allow */
	int port2; /* another one, on the same server */
	pthread_t th;
	pthread_mutex_t mu;
	int hits;
	int secret_hits; /* requests for /secret */
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
	if (strcmp(uri, "/secret") == 0)
		t->secret_hits++;
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
	} else if (strcmp(uri, "/redirect") == 0) {
		/* to the other listener: must be refused there */
		snprintf(body, sizeof(body), "http://127.0.0.1:%d/secret", t->port2);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Location", body);
		evhttp_send_reply(req, 302, "Found", out);
	} else if (strcmp(uri, "/secret") == 0) {
		evbuffer_add_printf(out, "{\"secret\": \"loopback only\"}");
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

static int target_listen(void)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	bs = evhttp_bind_socket_with_handle(target.http, "127.0.0.1", 0);
	SW_CHECK(bs != NULL);
	SW_CHECK(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&a, &len) == 0);
	return ntohs(a.sin_port);
}

static void target_start(void)
{

	SW_CHECK(evthread_use_pthreads() == 0);
	pthread_mutex_init(&target.mu, NULL);
	target.base = event_base_new();
	target.http = evhttp_new(target.base);
	SW_CHECK(target.base != NULL && target.http != NULL);
	evhttp_set_gencb(target.http, target_cb, &target);
	target.port = target_listen();
	target.port2 = target_listen();
	SW_CHECK(pthread_create(&target.th, NULL, target_main, &target) == 0);
}

/* ---- set-up ------------------------------------------------------------- */

static void setup(const char *name)
{
	static const char *const group_topics[] = {"sagewai.steps.worker", "sagewai.runs", NULL};
	static const char *const topics[] = {"sagewai.steps", NULL};
	const char *build = getenv("SW_BUILD_DIR");
	char q[4096], err[256];

	sw_test_env_load();
	sw_test_proc_watch(&worker_pid);
	sw_test_proc_watch(&mock_pid);
	snprintf(scenario, sizeof(scenario), "%s", name);
	SW_CHECK(build != NULL);
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
	sw_test_log_watch(worker_log, 60);
	sw_test_log_watch(mock_log, 10);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "worker", name);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
	/* every dispatch on the worker's topic, other modes too (refused or
	 * ignored there, as a misrouted one would be) */
	tx = (struct sw_test_sender){reg, producer, "worker-test", prefix, "sagewai.steps.worker"};
	/* the worker group starts at the end: it sees only what we send */
	sw_test_kafka_group_to_end(group, group_topics);
	sw_test_evlog_open(&evl, reg, prefix, topics);
	evl.pid = &worker_pid;
	evl.name = "sagewai-worker";
	evl.seen = key_leak_check;
}

/* The key must not be in any worker log line nor in any event. */
static void require_key_secret(void)
{
	struct stat st;
	char *buf;
	FILE *f;
	size_t n;

	sw_test_evlog_poll(&evl, 500);
	SW_REQUIRE(key_leaks == 0, "%zu worker events on sagewai.steps hold the LLM key",
		   key_leaks);
	SW_CHECK(stat(worker_log, &st) == 0);
	buf = malloc((size_t)st.st_size + 1);
	f = fopen(worker_log, "r");
	SW_CHECK(buf != NULL && f != NULL);
	n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	SW_REQUIRE(n > 0 && memmem(buf, n, KEY, strlen(KEY)) == NULL,
		   "the LLM key appears in the worker log");
	free(buf);
}

/* ---- scenarios ---------------------------------------------------------- */

static void scenario_basic(void)
{
	static const char *const mock_args[] = {"--require-key", KEY, NULL};
	const char *allow[] = {NULL, NULL};
	struct sw_test_dispatch d[14];
	char url[128], big[201], allow_env[64];
	struct sw_test_ev *e;
	json_t *o, *want;

	mock_start(mock_args);
	target_start();
	snprintf(allow_env, sizeof(allow_env), "SAGEWAI_HTTP_ALLOW=127.0.0.1:%d", target.port);
	allow[0] = allow_env;
	worker_start(allow);

	sw_test_dispatch_post(
	    &tx, &d[0], "tpl", "hello", "in_process", 30000,
	    spec("template", json_pack("{s:{s:[i,s], s:s}}", "value", "a", 1, "x", "b", "c")));
	sw_test_dispatch_post(
	    &tx, &d[1], "llm", "plain", "in_process", 30000,
	    spec("llm", json_pack("{s:s}", "prompt", "Write a tagline for a bakery in Lisbon")));
	sw_test_dispatch_post(&tx, &d[2], "llm", "brief", "in_process", 30000,
			      spec("llm", json_pack("{s:s, s:b, s:s}", "prompt",
						    "a portfolio site for a photographer", "json",
						    1, "system", "You write website briefs.")));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", target.port);
	sw_test_dispatch_post(
	    &tx, &d[3], "http", "post", "in_process", 30000,
	    spec("http", json_pack("{s:s, s:{s:s, s:i}, s:{s:s}}", "url", url, "body", "hello",
				   "world", "n", 7, "headers", "X-Test", "yes")));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/fail", target.port);
	sw_test_dispatch_post(&tx, &d[4], "http", "fail", "in_process", 30000,
			      spec("http", json_pack("{s:s}", "url", url)));
	sw_test_dispatch_post(&tx, &d[5], "http", "file", "in_process", 30000,
			      spec("http", json_pack("{s:s}", "url", "file:///etc/passwd")));
	sw_test_dispatch_post(
	    &tx, &d[6], "plugin", "count", "in_process", 30000,
	    spec("plugin:wordcount", json_pack("{s:s}", "text", "one two  three\nfour  ")));
	sw_test_dispatch_post(&tx, &d[7], "plugin", "boom", "in_process", 30000,
			      spec("plugin:sleepy", json_pack("{s:b}", "fail", 1)));
	memset(big, 'x', 200);
	big[200] = '\0';
	o = spec("template", json_pack("{s:s}", "value", big));
	json_object_set_new(o, "output_max", json_integer(100));
	sw_test_dispatch_post(&tx, &d[8], "big", "big", "in_process", 30000, o);
	sw_test_dispatch_post(&tx, &d[9], "sandbox", "boxed", "sandboxed", 30000,
			      spec("template", json_pack("{s:s}", "value", "never")));
	sw_test_dispatch_post(&tx, &d[10], "kind", "odd", "in_process", 30000,
			      spec("frobnicate", json_pack("{}")));
	sw_test_dispatch_post(&tx, &d[11], "redact", "echo", "in_process", 30000,
			      spec("template", json_pack("{s:s}", "value", "the key is " KEY)));
	sw_test_dispatch_post(&tx, &d[12], "plugin", "garbage", "in_process", 30000,
			      spec("plugin:sleepy", json_pack("{s:b}", "garbage", 1)));
	sw_test_dispatch_post(&tx, &d[13], "plugin", "nosuch", "in_process", 30000,
			      spec("plugin:nosuch", json_pack("{}")));

	e = sw_test_evlog_finished(&evl, d[0].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "{\"a\": [1, \"x\"], \"b\": \"c\"}");
	require_started_first(d[0].step_id);

	e = sw_test_evlog_finished(&evl, d[1].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"Summary: Write a tagline for a bakery in Lisbon\"");
	require_started_first(d[1].step_id);

	e = sw_test_evlog_finished(&evl, d[2].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(
	    e, "{\"title\": \"Portfolio site for a photographer\","
	       " \"sections\": [\"about\", \"gallery\", \"contact\"], \"tone\": \"warm\"}");
	SW_CHECK(mock_stat("completions") == 2);
	SW_CHECK(mock_stat("unauthorized") == 0); /* the key reached the mock */

	e = sw_test_evlog_finished(&evl, d[3].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "{\"status\": 200, \"body\": {\"received\": {\"hello\": \"world\","
			  " \"n\": 7}}}");
	pthread_mutex_lock(&target.mu);
	o = json_loads(target.body, 0, NULL);
	want = json_pack("{s:s, s:i}", "hello", "world", "n", 7);
	SW_REQUIRE(o != NULL && json_equal(o, want), "the target received %s", target.body);
	json_decref(want);
	SW_REQUIRE(strcmp(target.method, "POST") == 0, "method %s", target.method);
	SW_REQUIRE(strcmp(target.ctype, "application/json") == 0, "Content-Type %s", target.ctype);
	SW_REQUIRE(strcmp(target.xtest, "yes") == 0, "X-Test %s", target.xtest);
	pthread_mutex_unlock(&target.mu);
	json_decref(o);

	e = sw_test_evlog_finished(&evl, d[4].step_id);
	sw_test_ev_require(e, "FAILED", "http_error: HTTP 503");
	e = sw_test_evlog_finished(&evl, d[5].step_id);
	sw_test_ev_require(e, "FAILED", "bad_input: ");

	e = sw_test_evlog_finished(&evl, d[6].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "{\"words\": 4, \"lines\": 2, \"characters\": 21}");
	e = sw_test_evlog_finished(&evl, d[7].step_id);
	sw_test_ev_require(e, "FAILED", "plugin_error: sleepy: asked to fail");

	e = sw_test_evlog_finished(&evl, d[8].step_id);
	sw_test_ev_require(e, "FAILED",
			   "output_too_large: output is 202 bytes, over the limit of 100");

	e = sw_test_evlog_finished(&evl, d[9].step_id);
	sw_test_ev_require(e, "FAILED", "mode_unavailable: ");
	require_not_started(d[9].step_id);

	e = sw_test_evlog_finished(&evl, d[10].step_id);
	sw_test_ev_require(e, "FAILED", "bad_input: unknown step kind");

	e = sw_test_evlog_finished(&evl, d[11].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"the key is [REDACTED]\"");

	e = sw_test_evlog_finished(&evl, d[12].step_id);
	sw_test_ev_require(e, "FAILED", "plugin_error: sleepy returned invalid JSON");
	e = sw_test_evlog_finished(&evl, d[13].step_id);
	sw_test_ev_require(e, "FAILED", "plugin_error: no plugin named 'nosuch'");

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
	struct sw_test_dispatch d[7];
	struct sw_test_ev *e;
	json_t *o;

	mock_start(mock_args);
	worker_start(multi);
	/* (the llm kind copes with a reply wrapped in prose and a ```json fence) */
	sw_test_dispatch_post(
	    &tx, &d[4], "plain", "fenced", "in_process", 30000,
	    spec("llm", json_pack("{s:s, s:b}", "prompt", "a blog about sailing", "json", 1)));
	o = spec("template", json_pack("{s:s}", "value", "identity run"));
	json_object_set_new(o, "run_modes", json_pack("[s,s]", "in_process", "identity_scoped"));
	sw_test_dispatch_post(&tx, &d[0], "gated", "first", "in_process", 30000, o);
	sw_test_dispatch_post(&tx, &d[1], "plain", "first", "in_process", 30000,
			      spec("template", json_pack("{s:s}", "value", "plain run")));
	e = sw_test_evlog_finished(&evl, d[0].step_id);
	sw_test_ev_require(e, "FAILED", "preview_gate: ");
	require_not_started(d[0].step_id);
	e = sw_test_evlog_finished(&evl, d[1].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"plain run\"");
	e = sw_test_evlog_finished(&evl, d[4].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e,
		       "{\"title\": \"Blog about sailing\", \"sections\": [\"about\", \"posts\","
		       " \"contact\"], \"tone\": \"warm\"}");
	worker_stop(SIGTERM);

	/* the operator opts in: the same kind of run now executes; and with
	 * SAGEWAI_WORKER_OTHER_MODES=ignore a sandboxed, an identity_scoped and
	 * a cli_agent step (sandboxd's) are left alone (dispatched first in the same run, so
	 * they are consumed first) */
	worker_start(sealed);
	sw_test_dispatch_post(&tx, &d[3], "sealed", "boxed", "sandboxed", 30000,
			      spec("template", json_pack("{s:s}", "value", "not mine")));
	sw_test_dispatch_post(&tx, &d[5], "sealed", "keyed", "identity_scoped", 30000,
			      spec("template", json_pack("{s:s}", "value", "not mine")));
	sw_test_dispatch_post(&tx, &d[6], "sealed", "agent", "cli_agent", 30000,
			      spec("template", json_pack("{s:s}", "value", "not mine")));
	o = spec("template", json_pack("{s:s}", "value", "identity run"));
	json_object_set_new(o, "run_modes", json_pack("[s,s]", "in_process", "cli_agent_jit"));
	sw_test_dispatch_post(&tx, &d[2], "sealed", "first", "in_process", 30000, o);
	e = sw_test_evlog_finished(&evl, d[2].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"identity run\"");
	sw_test_evlog_poll(&evl, 500);
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d[3].step_id) == 0,
		   "the sandboxed step was answered");
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d[5].step_id) == 0,
		   "the identity_scoped step was answered");
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d[6].step_id) == 0,
		   "the cli_agent step was answered");
	worker_stop(SIGTERM);
}

/* A re-run's llm or http dispatch: the spec of uses/with, and spec.replay
 * with the recorded request (that spec, or req when not NULL), status and
 * answer. */
static json_t *replay_spec(const char *uses, json_t *with, json_t *req, const char *status,
			   const char *output, const char *error)
{
	json_t *o = spec(uses, with), *r = req != NULL ? req : json_deep_copy(o);

	json_object_set_new(r, "workflow_version", json_integer(7)); /* not compared */
	json_object_set_new(o, "replay",
			    json_pack("{s:s, s:o, s:s, s:{s:s?, s:s?}}", "of",
				      "01900000-0000-7000-8000-000000000000", "request", r,
				      "status", status, "answer", "output", output, "error",
				      error));
	return o;
}

/* A step with no effect that keeps a (lazy) results row: a re-run's
 * recorded answer, whose output is the JSON text output. A template is pure
 * and keeps none (scenario_pure). */
static json_t *recorded(const char *output)
{
	return replay_spec("llm", json_pack("{s:s}", "prompt", "recorded"), NULL, "SUCCEEDED",
			   output, NULL);
}

static void scenario_replay(void)
{
	struct sw_test_dispatch d[8];
	struct sw_test_ev *e;
	json_t *o;

	mock_start(NULL);
	worker_start(NULL);
	sw_test_dispatch_post(&tx, &d[0], "llm", "answered", "in_process", 30000,
			      replay_spec("llm", json_pack("{s:s}", "prompt", "Summarise 7"), NULL,
					  "SUCCEEDED", "{\"summary\": \"recorded\"}", NULL));
	/* port 1: nothing listens, and loopback is not allowed anyway */
	sw_test_dispatch_post(
	    &tx, &d[1], "http", "answered", "in_process", 30000,
	    replay_spec("http",
			json_pack("{s:s, s:s}", "url", "http://127.0.0.1:1/x", "method", "GET"),
			NULL, "SUCCEEDED", "{\"status\": 200}", NULL));
	sw_test_dispatch_post(&tx, &d[2], "llm", "other", "in_process", 30000,
			      replay_spec("llm", json_pack("{s:s}", "prompt", "Condense 7"),
					  spec("llm", json_pack("{s:s}", "prompt", "Summarise 7")),
					  "SUCCEEDED", "\"x\"", NULL));
	o = spec("llm", json_pack("{s:s}", "prompt", "Summarise 7"));
	json_object_set_new(o, "replay", json_pack("{s:s}", "of", "x"));
	sw_test_dispatch_post(&tx, &d[3], "llm", "norequest", "in_process", 30000, o);
	sw_test_dispatch_post(&tx, &d[4], "llm", "notjson", "in_process", 30000,
			      replay_spec("llm", json_pack("{s:s}", "prompt", "Summarise 7"), NULL,
					  "SUCCEEDED", "{not json", NULL));
	sw_test_dispatch_post(&tx, &d[5], "llm", "failed", "in_process", 30000,
			      replay_spec("llm", json_pack("{s:s}", "prompt", "Summarise 7"), NULL,
					  "FAILED", NULL, "upstream: the provider said no"));
	sw_test_dispatch_post(&tx, &d[6], "llm", "cancelled", "in_process", 30000,
			      replay_spec("llm", json_pack("{s:s}", "prompt", "Summarise 7"), NULL,
					  "CANCELLED", NULL, NULL));
	sw_test_dispatch_post(&tx, &d[7], "tpl", "ignores", "in_process", 30000,
			      replay_spec("template", json_pack("{s:s}", "value", "live"), NULL,
					  "SUCCEEDED", "\"recorded\"", NULL));

	e = sw_test_evlog_finished(&evl, d[0].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "{\"summary\": \"recorded\"}");
	e = sw_test_evlog_finished(&evl, d[1].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "{\"status\": 200}");
	sw_test_ev_require(sw_test_evlog_finished(&evl, d[2].step_id), "FAILED",
			   "replay: step other asks another request than the original run's");
	sw_test_ev_require(sw_test_evlog_finished(&evl, d[3].step_id), "FAILED",
			   "bad_input: spec.replay has no recorded request");
	sw_test_ev_require(sw_test_evlog_finished(&evl, d[4].step_id), "FAILED",
			   "replay: the recorded output of step notjson is not JSON");
	sw_test_ev_require(sw_test_evlog_finished(&evl, d[5].step_id), "FAILED",
			   "upstream: the provider said no");
	sw_test_ev_require(sw_test_evlog_finished(&evl, d[6].step_id), "FAILED",
			   "replay: no recorded outcome of step cancelled");
	e = sw_test_evlog_finished(&evl, d[7].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"live\"");
	SW_REQUIRE(mock_stat("requests") == 0, "the model was called %ld times for re-run steps",
		   mock_stat("requests"));
	/* and the same llm step without spec.replay does call it */
	sw_test_dispatch_post(&tx, &d[0], "llm", "live", "in_process", 30000,
			      spec("llm", json_pack("{s:s}", "prompt", "Summarise 7")));
	sw_test_ev_require(sw_test_evlog_finished(&evl, d[0].step_id), "SUCCEEDED", NULL);
	SW_REQUIRE(mock_stat("completions") == 1, "no completion for the live step");
	worker_stop(SIGTERM);
}

static void scenario_timeout(void)
{
	static const char *const mock_args[] = {"--delay-ms", "60000", NULL};
	struct sw_test_dispatch d[4], expired, warm;
	struct sw_test_ev *e;

	mock_start(mock_args);
	/* dispatched while no worker runs, with 300 ms to live: by the time
	 * the worker has its partitions the attempt is over, and it is
	 * refused without running */
	sw_test_dispatch_post(&tx, &expired, "expired", "gone", "in_process", 300,
			      spec("template", json_pack("{s:i}", "value", 1)));
	worker_start(NULL);
	/* the worker has its partitions: the short timeouts below run from a
	 * prompt consumption, so they time out running, not fenced */
	sw_test_dispatch_post(&tx, &warm, "warm", "up", "in_process", 60000,
			      spec("template", json_pack("{s:i}", "value", 1)));
	e = sw_test_evlog_finished(&evl, expired.step_id);
	sw_test_ev_require(e, "TIMED_OUT", "fenced: ");
	require_not_started(expired.step_id);
	sw_test_ev_require(sw_test_evlog_finished(&evl, warm.step_id), "SUCCEEDED", NULL);
	sw_test_dispatch_post(&tx, &d[0], "llm", "slow", "in_process", 500,
			      spec("llm", json_pack("{s:s}", "prompt", "take your time")));
	sw_test_dispatch_post(&tx, &d[1], "plugin", "slow", "in_process", 300,
			      spec("plugin:sleepy", json_pack("{s:i}", "ms", 3000)));
	e = sw_test_evlog_finished(&evl, d[0].step_id);
	sw_test_ev_require(e, "TIMED_OUT", "timeout: ");
	require_started_first(d[0].step_id);
	e = sw_test_evlog_finished(&evl, d[1].step_id);
	sw_test_ev_require(e, "TIMED_OUT", "timeout: ");

	/* the abandoned plugin call comes back later and is dropped; the
	 * worker keeps serving meanwhile */
	sw_test_dispatch_post(&tx, &d[2], "after", "quick", "in_process", 30000,
			      spec("template", json_pack("{s:i}", "value", 42)));
	e = sw_test_evlog_finished(&evl, d[2].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "42");
	sw_test_dispatch_post(&tx, &d[3], "after", "nap", "in_process", 30000,
			      spec("plugin:sleepy", json_pack("{s:i}", "ms", 3500)));
	e = sw_test_evlog_finished(&evl, d[3].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "{\"slept\": 3500}");
	sw_test_evlog_poll(&evl, 500);
	SW_CHECK(sw_test_evlog_count(&evl, "step.finished", d[1].step_id) == 1);
	SW_CHECK(sw_test_evlog_count(&evl, "step.finished", d[0].step_id) == 1);
	worker_stop(SIGTERM);
}

/*
 * SAGEWAI_WORKER_STARTED_AFTER_MS (1 s here, so that a loaded machine
 * does not make the template step late): a step done sooner has no step.started
 * (not even late: the timer dies with the attempt); one that runs longer
 * has exactly one, before its outcome; a step timed out after it has one.
 */
static void scenario_startedafter(void)
{
	static const char *const mock_args[] = {"--delay-ms", "3000", NULL};
	const char *const extra[] = {"SAGEWAI_WORKER_STARTED_AFTER_MS=1000", NULL};
	struct sw_test_dispatch quick, nap, llm, cut;

	mock_start(mock_args);
	worker_start(extra);
	sw_test_dispatch_post(&tx, &quick, "tpl", "quick", "in_process", 30000,
			      spec("template", json_pack("{s:i}", "value", 7)));
	sw_test_dispatch_post(&tx, &nap, "plugin", "nap", "in_process", 30000,
			      spec("plugin:sleepy", json_pack("{s:i}", "ms", 2500)));
	sw_test_dispatch_post(&tx, &llm, "llm", "slow", "in_process", 30000,
			      spec("llm", json_pack("{s:s}", "prompt", "take your time")));
	sw_test_dispatch_post(&tx, &cut, "llm", "cut", "in_process", 2000,
			      spec("llm", json_pack("{s:s}", "prompt", "too slow")));
	sw_test_ev_require(sw_test_evlog_finished(&evl, quick.step_id), "SUCCEEDED", NULL);
	sw_test_ev_require(sw_test_evlog_finished(&evl, nap.step_id), "SUCCEEDED", NULL);
	sw_test_ev_require(sw_test_evlog_finished(&evl, llm.step_id), "SUCCEEDED", NULL);
	sw_test_ev_require(sw_test_evlog_finished(&evl, cut.step_id), "TIMED_OUT", "timeout: ");
	/* well past the delay: a timer left behind would have fired */
	sw_test_evlog_poll(&evl, 2500);
	require_not_started(quick.step_id);
	require_started_first(nap.step_id);
	require_started_first(llm.step_id);
	require_started_first(cut.step_id);
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", nap.step_id) == 1 &&
		       sw_test_evlog_count(&evl, "step.started", llm.step_id) == 1 &&
		       sw_test_evlog_count(&evl, "step.started", cut.step_id) == 1,
		   "a step.started more than once");
	worker_stop(SIGTERM);
}

static void scenario_cancel(void)
{
	static const char *const mock_args[] = {"--delay-ms", "60000", NULL};
	struct sw_test_dispatch d[4];
	struct sw_test_ev *e;

	mock_start(mock_args);
	worker_start(NULL);
	sw_test_dispatch_post(
	    &tx, &d[0], "llm", "long", "in_process", 0,
	    spec("llm", json_pack("{s:s}", "prompt", "a very long answer please")));
	sw_test_dispatch_post(&tx, &d[1], "plugin", "long", "in_process", 0,
			      spec("plugin:sleepy", json_pack("{s:i}", "ms", 4000)));
	/* another run's step is not touched */
	sw_test_dispatch_post(&tx, &d[2], "other", "stay", "in_process", 0,
			      spec("plugin:sleepy", json_pack("{s:i}", "ms", 1000)));
	sw_test_evlog_wait(&evl, "step.started", d[0].step_id, 0, 120);
	sw_test_evlog_wait(&evl, "step.started", d[1].step_id, 0, 120);
	cancel_run(d[0].run_id);
	cancel_run(d[1].run_id);
	e = sw_test_evlog_finished(&evl, d[0].step_id);
	sw_test_ev_require(e, "CANCELLED", "cancelled: ");
	e = sw_test_evlog_finished(&evl, d[1].step_id);
	sw_test_ev_require(e, "CANCELLED", "cancelled: ");
	e = sw_test_evlog_finished(&evl, d[2].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);

	/* a dispatch of a cancelled run that arrives afterwards never runs */
	sw_test_dispatch_post(&tx, &d[3], "llm", "late", "in_process", 0,
			      spec("template", json_pack("{s:s}", "value", "too late")));
	e = sw_test_evlog_finished(&evl, d[3].step_id);
	sw_test_ev_require(e, "CANCELLED", "cancelled: ");
	require_not_started(d[3].step_id);
	worker_stop(SIGTERM);
}

static void scenario_redelivery(void)
{
	static const char *const mock_args[] = {"--delay-ms", "1500", NULL};
	struct sw_test_dispatch d;
	struct sw_test_ev *e;
	size_t i, n;

	mock_start(mock_args);
	worker_start(NULL);
	sw_test_dispatch_make(&tx, &d, "dup", "once", "in_process", 60000,
			      spec("llm", json_pack("{s:s}", "prompt", "say this once")));
	/* twice while it runs */
	sw_test_dispatch_send(&tx, &d);
	sw_test_dispatch_send(&tx, &d);
	e = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	/* again once it finished: answered from the results table. The job
	 * goes with its step.finished's delivery report, which may come after
	 * this test reads the event; a copy before that joins the job (one
	 * step.finished for both), so give the report a moment */
	usleep(500 * 1000);
	sw_test_dispatch_send(&tx, &d);
	sw_test_evlog_wait(&evl, "step.finished", d.step_id, 1, 120);
	/* and to a fresh worker process */
	worker_stop(SIGTERM);
	worker_start(NULL);
	sw_test_dispatch_send(&tx, &d);
	sw_test_evlog_wait(&evl, "step.finished", d.step_id, 2, 120);
	sw_test_evlog_poll(&evl, 1000);
	n = sw_test_evlog_count(&evl, "step.finished", d.step_id);
	for (i = 0; i < n; i++)
		SW_REQUIRE(
		    strcmp(sw_test_evlog_find(&evl, "step.finished", d.step_id, i)->event_id,
			   e->event_id) == 0,
		    "step.finished #%zu has event id %s, the first had %s", i,
		    sw_test_evlog_find(&evl, "step.finished", d.step_id, i)->event_id,
		    e->event_id);
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d.step_id) == 1, "started %zu times",
		   sw_test_evlog_count(&evl, "step.started", d.step_id));
	SW_REQUIRE(mock_stat("completions") == 1, "the mock answered %ld completions",
		   mock_stat("completions"));
	worker_stop(SIGTERM);
	free(d.buf);
}

static void scenario_deadletter(void)
{
	static const char *const mock_args[] = {"--require-key", "some-other-key", NULL};
	struct sw_test_dispatch d[3];
	char garbage[128], key[96], reason[256];
	struct sw_test_ev *e;

	/* the provider refuses our key: the error names the status and the
	 * provider's message, never the key */
	mock_start(mock_args);
	worker_start(NULL);
	sw_test_dispatch_post(&tx, &d[2], "refused", "ask", "in_process", 0,
			      spec("llm", json_pack("{s:s}", "prompt", "hello")));
	e = sw_test_evlog_finished(&evl, d[2].step_id);
	sw_test_ev_require(e, "FAILED", "llm_error: HTTP 401: Incorrect API key provided");
	SW_REQUIRE(strstr(e->error, KEY) == NULL, "the error holds the key");
	SW_CHECK(mock_stat("unauthorized") == 1);

	snprintf(key, sizeof(key), "%s-garbage", prefix);
	snprintf(garbage, sizeof(garbage), "not an event at all %s", prefix);
	sw_test_kafka_deliver(producer, "sagewai.steps.worker", key, garbage, strlen(garbage));
	sw_test_dispatch_make(&tx, &d[0], "cut", "cut", "in_process", 0,
			      spec("template", json_pack("{s:s}", "value", "never")));
	sw_test_kafka_deliver(producer, d[0].topic, d[0].run_id, d[0].buf, d[0].len - 5);
	sw_test_dispatch_post(&tx, &d[1], "after", "fine", "in_process", 0,
			      spec("template", json_pack("{s:s}", "value", "still serving")));
	e = sw_test_evlog_finished(&evl, d[1].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"still serving\"");
	SW_CHECKF(sw_test_kafka_deadletter_find(prefix, garbage, strlen(garbage), reason,
						sizeof(reason)),
		  "garbage not in sagewai.deadletter");
	fprintf(stderr, "garbage: %s\n", reason);
	SW_CHECKF(
	    sw_test_kafka_deadletter_find(prefix, d[0].buf, d[0].len - 5, reason, sizeof(reason)),
	    "truncated dispatch not in sagewai.deadletter");
	fprintf(stderr, "truncated: %s\n", reason);
	sw_test_evlog_poll(&evl, 500);
	SW_CHECK(sw_test_evlog_count(&evl, "step.finished", d[0].step_id) == 0);
	worker_stop(SIGTERM);
	require_key_secret();
	free(d[0].buf);
}

static void scenario_kill9(void)
{
	static const char *const mock_args[] = {"--delay-ms", "4000", NULL};
	struct sw_test_dispatch d;
	struct sw_test_ev *e;

	mock_start(mock_args);
	worker_start(NULL);
	sw_test_dispatch_post(&tx, &d, "crash", "slow", "in_process", 0,
			      spec("llm", json_pack("{s:s}", "prompt", "survive a crash")));
	sw_test_evlog_wait(&evl, "step.started", d.step_id, 0, 120);
	worker_stop(SIGKILL);
	sw_test_evlog_poll(&evl, 200);
	SW_CHECK(sw_test_evlog_count(&evl, "step.finished", d.step_id) == 0);
	worker_start(NULL);
	e = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"Summary: survive a crash\"");
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d.step_id) == 2, "started %zu times",
		   sw_test_evlog_count(&evl, "step.started", d.step_id));
	sw_test_evlog_poll(&evl, 1000);
	SW_CHECK(sw_test_evlog_count(&evl, "step.finished", d.step_id) == 1);
	worker_stop(SIGTERM);
}

/* Start the worker, which must refuse to (exit non-zero); its log in log. */
static int worker_refuses(const char *const *extra, char *log, size_t len)
{
	int status;
	size_t n;
	FILE *f;

	worker_start(extra);
	SW_CHECK(waitpid(worker_pid, &status, 0) == worker_pid);
	worker_pid = -1;
	SW_CHECKF(WIFEXITED(status) && WEXITSTATUS(status) != 0, "worker started (status %d)",
		  status);
	f = fopen(worker_log, "r");
	SW_CHECK(f != NULL);
	n = fread(log, 1, len - 1, f);
	fclose(f);
	log[n] = '\0';
	return WEXITSTATUS(status);
}

static void scenario_badplugin(void)
{
	char path[700], cmd[2000], log[4096];
	FILE *f;

	/* a file that is not a shared object at all */
	snprintf(path, sizeof(path), "%s/bad.so", plugin_dir);
	f = fopen(path, "w");
	SW_CHECK(f != NULL);
	fputs("not an ELF file\n", f);
	fclose(f);
	worker_refuses(NULL, log, sizeof(log));
	SW_REQUIRE(strstr(log, path) != NULL, "the error does not name %s", path);

	/* a shared object without the entry point */
	SW_CHECK(unlink(path) == 0);
	snprintf(cmd, sizeof(cmd), "ln -sf $(ls /usr/lib/*/libjansson.so.4 | head -1) %s/nope.so",
		 plugin_dir);
	SW_CHECK(system(cmd) == 0);
	SW_CHECK(truncate(worker_log, 0) == 0);
	worker_refuses(NULL, log, sizeof(log));
	SW_REQUIRE(strstr(log, "nope.so") != NULL && strstr(log, "sagewai_plugin_v1") != NULL,
		   "the error does not name nope.so and the missing symbol");
}

static void scenario_concurrency(void)
{
	static const char *const mock_args[] = {"--delay-ms", "2000", NULL};
	static const char *const conc[] = {"SAGEWAI_WORKER_CONCURRENCY=3", NULL};
	struct sw_test_dispatch d[8];
	char run[16];
	long maxd;
	int i;

	mock_start(mock_args);
	worker_start(conc);
	for (i = 0; i < 8; i++) {
		snprintf(run, sizeof(run), "r%d", i);
		sw_test_dispatch_post(&tx, &d[i], run, "ask", "in_process", 0,
				      spec("llm", json_pack("{s:s}", "prompt", "in parallel")));
	}
	for (i = 0; i < 8; i++)
		sw_test_ev_require(sw_test_evlog_finished(&evl, d[i].step_id), "SUCCEEDED", NULL);
	maxd = mock_stat("max_delayed");
	fprintf(stderr, "at most %ld requests in flight at once\n", maxd);
	SW_REQUIRE(maxd >= 2, "steps ran one at a time (max in flight %ld)", maxd);
	SW_REQUIRE(maxd <= 3, "more than SAGEWAI_WORKER_CONCURRENCY=3 in flight (%ld)", maxd);
	SW_CHECK(mock_stat("completions") == 8);
	worker_stop(SIGTERM);
}

static void scenario_groupsave(void)
{
	enum { N = 40 };
	static struct sw_test_dispatch d[N];
	static char first[N][64];
	struct sw_test_ev *e;
	char run[32];
	int i;

	worker_start(NULL);
	/* made first, sent back to back: the results finish together */
	for (i = 0; i < N; i++) {
		/* characters an array literal must escape, in run_id and step_id */
		snprintf(run, sizeof(run), i % 4 == 0 ? "g%d\"q" : i % 4 == 1 ? "g%d\\b"
						 : i % 4 == 2 ? "g%d,c" : "g%d", i);
		sw_test_dispatch_make(&tx, &d[i], run, "quick", "in_process", 0,
				      recorded("\"fast\""));
	}
	for (i = 0; i < N; i++)
		sw_test_dispatch_send(&tx, &d[i]);
	for (i = 0; i < N; i++) {
		e = sw_test_evlog_finished(&evl, d[i].step_id);
		sw_test_ev_require(e, "SUCCEEDED", NULL);
		snprintf(first[i], sizeof(first[i]), "%s", e->event_id);
	}
	/* every row was stored as produced: a redelivery re-publishes it (once
	 * the jobs went with their delivery reports: a copy before that joins
	 * its job, scenario_redelivery) */
	usleep(500 * 1000);
	for (i = 0; i < N; i++)
		sw_test_dispatch_send(&tx, &d[i]);
	for (i = 0; i < N; i++) {
		sw_test_evlog_wait(&evl, "step.finished", d[i].step_id, 1, 120);
		e = sw_test_evlog_find(&evl, "step.finished", d[i].step_id, 1);
		SW_REQUIRE(strcmp(e->event_id, first[i]) == 0,
			   "%s: re-published %s, first was %s", d[i].step_id, e->event_id,
			   first[i]);
		SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d[i].step_id) == 1,
			   "%s started %zu times", d[i].step_id,
			   sw_test_evlog_count(&evl, "step.started", d[i].step_id));
	}
	worker_stop(SIGTERM);
	for (i = 0; i < N; i++)
		free(d[i].buf);
}

/* The results row of dispatch d in the worker's schema: 1 or 0. */
static long result_rows(const struct sw_test_dispatch *d)
{
	char q[256];

	snprintf(q, sizeof(q), "SELECT count(*) FROM worker.results WHERE step_id = '%s'",
		 d->step_id);
	return sw_test_pg_long(db_dsn, q);
}

/*
 * A crash of PostgreSQL (immediate stop: WAL still in its buffers is lost)
 * right after step.finished. The result of a step with an effect (an llm
 * call) was a durable commit: it is there after the crash, and a
 * redelivered dispatch re-publishes it without calling the model again. A
 * recorded answer's (a re-run's step: no effect) commits without waiting for
 * the disk (docs/RUNS.md, "Durability"): after the crash it may be gone, and
 * a redelivered dispatch then answers again, to the same output. The WAL writer is
 * slowed to 10 s so that nothing but a durable commit flushes the WAL.
 */
static void scenario_pgcrash(void)
{
	struct sw_test_dispatch t1, l1, l2, t2;
	struct sw_test_ev *e;
	char first[64], q[128];
	long had;

	PQclear(sw_test_pg_exec(db_dsn, "ALTER SYSTEM SET wal_writer_delay = '10s'"));
	PQclear(sw_test_pg_exec(db_dsn, "SELECT pg_reload_conf()"));
	mock_start(NULL);
	worker_start(NULL);

	/* round 1: a recorded answer, then an llm step last before the crash */
	sw_test_dispatch_make(&tx, &t1, "crash1", "shape", "in_process", 60000,
			      recorded("\"shaped\""));
	sw_test_dispatch_send(&tx, &t1);
	sw_test_ev_require(sw_test_evlog_finished(&evl, t1.step_id), "SUCCEEDED", NULL);
	sw_test_dispatch_make(&tx, &l1, "crash1", "ask", "in_process", 60000,
			      spec("llm", json_pack("{s:s}", "prompt", "say this once")));
	sw_test_dispatch_send(&tx, &l1);
	e = sw_test_evlog_finished(&evl, l1.step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	snprintf(first, sizeof(first), "%s", e->event_id);
	sw_test_pg_crash();
	SW_REQUIRE(result_rows(&l1) == 1, "the llm step's result did not survive the crash");
	/* the durable commit after it carried the lazy row along */
	SW_REQUIRE(result_rows(&t1) == 1, "the lazy row, older than a durable commit, "
					  "was lost");
	sw_test_dispatch_send(&tx, &l1);
	sw_test_evlog_wait(&evl, "step.finished", l1.step_id, 1, 120);
	e = sw_test_evlog_find(&evl, "step.finished", l1.step_id, 1);
	SW_REQUIRE(strcmp(e->event_id, first) == 0, "re-published %s, first was %s",
		   e->event_id, first);
	SW_REQUIRE(mock_stat("completions") == 1, "the mock answered %ld completions",
		   mock_stat("completions"));

	/* round 2: an llm step, then a recorded answer last before the crash */
	sw_test_dispatch_make(&tx, &l2, "crash2", "ask", "in_process", 60000,
			      spec("llm", json_pack("{s:s}", "prompt", "and once more")));
	sw_test_dispatch_send(&tx, &l2);
	sw_test_ev_require(sw_test_evlog_finished(&evl, l2.step_id), "SUCCEEDED", NULL);
	sw_test_dispatch_make(&tx, &t2, "crash2", "shape", "in_process", 60000,
			      recorded("\"again\""));
	sw_test_dispatch_send(&tx, &t2);
	e = sw_test_evlog_finished(&evl, t2.step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	snprintf(first, sizeof(first), "%s", e->event_id);
	sw_test_pg_crash();
	SW_REQUIRE(result_rows(&l2) == 1, "the llm step's result did not survive the crash");
	had = result_rows(&t2);
	sw_test_dispatch_send(&tx, &t2);
	sw_test_evlog_wait(&evl, "step.finished", t2.step_id, 1, 120);
	e = sw_test_evlog_find(&evl, "step.finished", t2.step_id, 1);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	SW_REQUIRE(json_is_string(e->output) && strcmp(json_string_value(e->output), "again") == 0,
		   "the recorded output after the crash is not \"again\"");
	if (had == 1)
		SW_REQUIRE(strcmp(e->event_id, first) == 0, "row kept, yet re-published %s, "
			   "first was %s", e->event_id, first);
	fprintf(stderr,
		"worker pgcrash: the recorded answer's lazy row was %s by the crash (%s)\n",
		had ? "kept" : "lost", had ? "re-published" : "run again");
	SW_REQUIRE(mock_stat("completions") == 2, "the mock answered %ld completions",
		   mock_stat("completions"));
	snprintf(q, sizeof(q), "ALTER SYSTEM RESET wal_writer_delay");
	PQclear(sw_test_pg_exec(db_dsn, q));
	PQclear(sw_test_pg_exec(db_dsn, "SELECT pg_reload_conf()"));
	worker_stop(SIGTERM);
	free(t1.buf);
	free(l1.buf);
	free(l2.buf);
	free(t2.buf);
}

/*
 * A template is pure (sw_executor_ops.pure): no results lookup, no row, and
 * its step.finished's event id is derived from the dispatch's
 * (sw_uuid_derive), so a copy of the dispatch runs again and finishes as the
 * same event. A recorded answer, also without effect, keeps its row.
 */
static void scenario_pure(void)
{
	struct sw_test_dispatch t, r;
	struct sw_event_header h;
	struct sw_test_ev *e;
	uint8_t d[16], id[16];
	char want[SW_UUID_STRLEN], err[256];
	int i;

	worker_start(NULL);
	sw_test_dispatch_make(&tx, &t, "pure1", "shape", "in_process", 60000,
			      spec("template", json_pack("{s:s}", "value", "shaped")));
	SW_CHECKF(sw_event_decode_header(reg, t.buf, t.len, &h, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(sw_uuid_parse(h.event_id, d) == 0);
	sw_uuid_derive(d, "step.finished", id);
	sw_uuid_format(id, want);
	sw_test_dispatch_send(&tx, &t);
	e = sw_test_evlog_finished(&evl, t.step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"shaped\"");
	SW_REQUIRE(strcmp(e->event_id, want) == 0, "step.finished %s, derived from %s is %s",
		   e->event_id, h.event_id, want);
	/* its delivery report frees the job: a copy then is no joined duplicate */
	usleep(500 * 1000);
	sw_test_dispatch_send(&tx, &t);
	sw_test_evlog_wait(&evl, "step.finished", t.step_id, 1, 120);
	e = sw_test_evlog_find(&evl, "step.finished", t.step_id, 1);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"shaped\"");
	SW_REQUIRE(strcmp(e->event_id, want) == 0, "the copy finished as %s, the first as %s",
		   e->event_id, want);
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", t.step_id) == 2,
		   "the copy did not run again (%zu step.started)",
		   sw_test_evlog_count(&evl, "step.started", t.step_id));
	SW_REQUIRE(result_rows(&t) == 0, "a pure step left a results row");

	sw_test_dispatch_make(&tx, &r, "pure1", "kept", "in_process", 60000, recorded("\"kept\""));
	sw_test_dispatch_send(&tx, &r);
	sw_test_ev_require(sw_test_evlog_finished(&evl, r.step_id), "SUCCEEDED", NULL);
	for (i = 0; i < 100 && result_rows(&r) == 0; i++)
		usleep(100 * 1000); /* a lazy row may land after its event */
	SW_REQUIRE(result_rows(&r) == 1, "a recorded answer left no results row");
	fprintf(stderr, "worker pure: template finished twice as %s (derived from %s), no row\n",
		want, h.event_id);
	worker_stop(SIGTERM);
	free(t.buf);
	free(r.buf);
}

/* The delivery report of lazysave's own producer: where the dispatch went. */
static int64_t lazy_offset = -1;

static void lazy_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	SW_CHECKF(m->err == RD_KAFKA_RESP_ERR_NO_ERROR, "dispatch not delivered: %s",
		  rd_kafka_err2str(m->err));
	lazy_offset = m->offset;
}

/* The worker group's committed offset of sagewai.steps.worker partition 0
 * (RD_KAFKA_OFFSET_INVALID: none). */
static int64_t committed0(rd_kafka_t *c)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	int64_t off;

	rd_kafka_topic_partition_list_add(l, "sagewai.steps.worker", 0);
	SW_CHECK(rd_kafka_committed(c, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	off = l->elems[0].offset;
	rd_kafka_topic_partition_list_destroy(l);
	return off;
}

/*
 * A recorded answer's results row is lazy: its step.finished is produced beside the
 * save, not after it, and its message is done only when both are. With the
 * results table locked, the step.finished comes out while the row cannot be
 * written, and the dispatch's offset is not committed; once the lock goes,
 * the row lands, the offset is committed, and a redelivery re-publishes the
 * very event id that went out first.
 */
static void scenario_lazysave(void)
{
	struct sw_test_dispatch w, t;
	struct sw_test_ev *e;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *p, *c;
	char err[256], first[64];
	PGconn *lk;
	PGresult *r;
	int64_t off = RD_KAFKA_OFFSET_INVALID, held;
	int i;

	worker_start(NULL);
	/* the worker is up and its table made */
	sw_test_dispatch_post(&tx, &w, "lazy0", "warm", "in_process", 60000,
			      spec("template", json_pack("{s:s}", "value", "warm")));
	sw_test_ev_require(sw_test_evlog_finished(&evl, w.step_id), "SUCCEEDED", NULL);

	lk = PQconnectdb(db_dsn);
	SW_CHECKF(PQstatus(lk) == CONNECTION_OK, "%s", PQerrorMessage(lk));
	r = PQexec(lk, "BEGIN; LOCK TABLE worker.results IN EXCLUSIVE MODE");
	SW_CHECKF(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(lk));
	PQclear(r);

	/* the dispatch on a partition we know, its offset from the report */
	SW_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", getenv("SAGEWAI_KAFKA_BOOTSTRAP"),
				   err, sizeof(err)) == RD_KAFKA_CONF_OK);
	SW_CHECK(rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)) ==
		 RD_KAFKA_CONF_OK);
	rd_kafka_conf_set_dr_msg_cb(conf, lazy_dr);
	SW_CHECKF((p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) != NULL, "%s",
		  err);
	sw_test_dispatch_make(&tx, &t, "lazy1", "shape", "in_process", 60000,
			      recorded("\"shaped\""));
	SW_CHECK(rd_kafka_producev(
		     p, RD_KAFKA_V_TOPIC("sagewai.steps.worker"), RD_KAFKA_V_PARTITION(0),
		     RD_KAFKA_V_KEY(t.run_id, strlen(t.run_id)), RD_KAFKA_V_VALUE(t.buf, t.len),
		     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		     RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
	SW_CHECK(rd_kafka_flush(p, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	SW_CHECK(lazy_offset >= 0);

	/* produced while its row cannot be written */
	e = sw_test_evlog_wait(&evl, "step.finished", t.step_id, 0, 60);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	snprintf(first, sizeof(first), "%s", e->event_id);
	SW_REQUIRE(result_rows(&t) == 0, "the row was written through the lock");
	/* and not done: the offset stays at or before the dispatch (a commit
	 * follows a done message within a loop turn; give it two seconds) */
	c = sw_test_kafka_new(RD_KAFKA_CONSUMER, group, NULL);
	sleep(2);
	held = off = committed0(c);
	SW_REQUIRE(off <= lazy_offset,
		   "offset %lld committed past the dispatch at %lld before "
		   "its row was saved",
		   (long long)off, (long long)lazy_offset);

	r = PQexec(lk, "COMMIT");
	SW_CHECKF(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(lk));
	PQclear(r);
	PQfinish(lk);
	for (i = 0; i < 600 && (off = committed0(c)) <= lazy_offset; i++)
		usleep(100 * 1000);
	SW_REQUIRE(off > lazy_offset,
		   "the dispatch's offset %lld was not committed after its row "
		   "was saved (committed %lld)",
		   (long long)lazy_offset, (long long)off);
	SW_REQUIRE(result_rows(&t) == 1, "the row did not land once the lock went");
	fprintf(stderr,
		"worker lazysave: step.finished out with the table locked; committed offset "
		"%lld (the dispatch at %lld) until the save, %lld after it\n",
		(long long)held, (long long)lazy_offset, (long long)off);

	/* the row holds what went out: a redelivery re-publishes that event */
	sw_test_dispatch_send(&tx, &t);
	sw_test_evlog_wait(&evl, "step.finished", t.step_id, 1, 120);
	e = sw_test_evlog_find(&evl, "step.finished", t.step_id, 1);
	SW_REQUIRE(strcmp(e->event_id, first) == 0, "re-published %s, first was %s", e->event_id,
		   first);
	worker_stop(SIGTERM);
	rd_kafka_destroy(c);
	rd_kafka_destroy(p);
	free(t.buf);
}

/* The step's error must be exactly the refusal of dest (an address:port)
 * for why. */
static void require_refused(const char *step_id, const char *dest, const char *why)
{
	struct sw_test_ev *e = sw_test_evlog_finished(&evl, step_id);
	char want[300];

	snprintf(want, sizeof(want),
		 "http_error: destination %s is not allowed (%s); operators can allow it with "
		 "SAGEWAI_HTTP_ALLOW",
		 dest, why);
	sw_test_ev_require(e, "FAILED", "http_error: destination ");
	SW_REQUIRE(strcmp(e->error, want) == 0, "%s: error '%s', expected '%s'", step_id,
		   e->error, want);
}

/* An http step of this scenario to url: GET, step name name. */
static void http_post(struct sw_test_dispatch *d, const char *run, const char *name,
		      const char *url)
{
	sw_test_dispatch_post(&tx, d, run, name, "in_process", 30000,
			      spec("http", json_pack("{s:s, s:s}", "url", url, "method", "GET")));
}

static void scenario_ssrf(void)
{
	const char *allow[] = {NULL, NULL};
	static const char *const bad[] = {"SAGEWAI_HTTP_ALLOW=127.0.0.1:8080,internal.example:443",
					  NULL};
	struct sw_test_dispatch d[12];
	char url[160], dest[64], allow_env[64], log[4096];
	struct sw_test_ev *e;
	int i;

	mock_start(NULL);
	target_start();
	snprintf(allow_env, sizeof(allow_env), "SAGEWAI_HTTP_ALLOW=127.0.0.1:%d", target.port);
	allow[0] = allow_env;
	worker_start(allow);

	/* the allowed listener answers */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", target.port);
	http_post(&d[0], "allowed", "get", url);
	/* the other port of the same address does not */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/secret", target.port2);
	http_post(&d[1], "direct", "get", url);
	/* a name that resolves to loopback */
	snprintf(url, sizeof(url), "http://localhost:%d/secret", target.port2);
	http_post(&d[2], "name", "get", url);
	/* IPv6 loopback, the cloud metadata address, 0.0.0.0, 127.0.0.1 in
	 * decimal */
	snprintf(url, sizeof(url), "http://[::1]:%d/secret", target.port2);
	http_post(&d[3], "v6", "get", url);
	http_post(&d[4], "metadata", "get", "http://169.254.169.254/latest/meta-data/");
	snprintf(url, sizeof(url), "http://0.0.0.0:%d/secret", target.port2);
	http_post(&d[5], "zero", "get", url);
	snprintf(url, sizeof(url), "http://2130706433:%d/secret", target.port2);
	http_post(&d[6], "decimal", "get", url);
	/* a redirect from the allowed listener to the other port */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/redirect", target.port);
	http_post(&d[7], "redirect", "get", url);
	/* an llm step works (its base URL is the operator's, on loopback) ... */
	sw_test_dispatch_post(&tx, &d[8], "llm", "ask", "in_process", 30000,
			      spec("llm", json_pack("{s:s}", "prompt", "hello from ssrf")));

	e = sw_test_evlog_finished(&evl, d[0].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "{\"status\": 200, \"body\": {\"received\": null}}");
	snprintf(dest, sizeof(dest), "127.0.0.1:%d", target.port2);
	require_refused(d[1].step_id, dest, "loopback");
	e = sw_test_evlog_finished(&evl, d[2].step_id);
	sw_test_ev_require(e, "FAILED", "http_error: destination ");
	SW_REQUIRE(strstr(e->error, "is not allowed (loopback); operators can allow it with "
				    "SAGEWAI_HTTP_ALLOW") != NULL,
		   "localhost: %s", e->error);
	snprintf(dest, sizeof(dest), "[::1]:%d", target.port2);
	require_refused(d[3].step_id, dest, "loopback");
	require_refused(d[4].step_id, "169.254.169.254:80", "cloud metadata");
	snprintf(dest, sizeof(dest), "0.0.0.0:%d", target.port2);
	require_refused(d[5].step_id, dest, "unspecified");
	snprintf(dest, sizeof(dest), "127.0.0.1:%d", target.port2);
	require_refused(d[6].step_id, dest, "loopback");
	require_refused(d[7].step_id, dest, "loopback");
	e = sw_test_evlog_finished(&evl, d[8].step_id);
	sw_test_ev_require(e, "SUCCEEDED", NULL);
	require_output(e, "\"Summary: hello from ssrf\"");

	/* ... but an http step to the provider's port is refused, on a fresh
	 * connection or on one the llm step left in the pool */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/mock/stats", mock_port);
	snprintf(dest, sizeof(dest), "127.0.0.1:%d", mock_port);
	for (i = 0; i < 2; i++) {
		sw_test_dispatch_post(&tx, &d[9], "llm", i ? "again-2" : "again-1", "in_process",
				      30000, spec("llm", json_pack("{s:s}", "prompt", "again")));
		sw_test_ev_require(sw_test_evlog_finished(&evl, d[9].step_id), "SUCCEEDED",
				   NULL);
		http_post(&d[10 + i], "provider", i ? "get-2" : "get-1", url);
		require_refused(d[10 + i].step_id, dest, "loopback");
	}

	pthread_mutex_lock(&target.mu);
	SW_REQUIRE(target.secret_hits == 0, "/secret was fetched %d times", target.secret_hits);
	pthread_mutex_unlock(&target.mu);
	worker_stop(SIGTERM);

	/* a host name in the allow-list is a configuration error */
	SW_CHECK(truncate(worker_log, 0) == 0);
	SW_REQUIRE(worker_refuses(bad, log, sizeof(log)) == 2, "a bad allow-list: not exit 2");
	SW_REQUIRE(strstr(log, "SAGEWAI_HTTP_ALLOW: entry 'internal.example:443'") != NULL &&
		       strstr(log, "host names are not matched") != NULL,
		   "the error does not explain the bad entry: %s", log);
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
	    {"basic", scenario_basic},
	    {"preview", scenario_preview},
	    {"timeout", scenario_timeout},
	    {"cancel", scenario_cancel},
	    {"redelivery", scenario_redelivery},
	    {"deadletter", scenario_deadletter},
	    {"kill9", scenario_kill9},
	    {"badplugin", scenario_badplugin},
	    {"concurrency", scenario_concurrency},
	    {"groupsave", scenario_groupsave},
	    {"pgcrash", scenario_pgcrash},
	    {"lazysave", scenario_lazysave},
	    {"pure", scenario_pure},
	    {"ssrf", scenario_ssrf},
	    {"replay", scenario_replay},
	    {"startedafter", scenario_startedafter},
	};
	const struct sw_test_scenario *sc =
	    sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]));

	setup(sc->name);
	sc->fn();
	sw_test_evlog_close(&evl);
	rd_kafka_destroy(producer);
	sw_events_registry_destroy(reg);
	fprintf(stderr, "worker %s: ok\n", sc->name);
	return 0;
}
