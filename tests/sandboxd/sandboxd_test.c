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
 *   spec         a step's env and limits as the workflow parser gives them:
 *                env values templated from the input reach the command,
 *                next to PATH and HOME; limits {memory_mb, pids, cpus} are
 *                the command's rlimits and the sandbox's CPU bandwidth
 *                (cpus -> cpu_millis in sandbox.acquired); one over the
 *                variant's is lowered to it; a crafted dispatch setting PATH
 *                or LD_PRELOAD (or using another limits vocabulary) is
 *                refused with bad_input
 *   cpuoff       sandboxd without cgroups (SAGEWAI_SANDBOX_CGROUP=off): a
 *                step with a cpus limit fails with mode_unavailable instead
 *                of running unbounded; one without runs
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
#include <ifaddrs.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"
#include "sw_workflow.h"

static struct sw_event_registry *reg;
static char prefix[48];
static char tmp_dir[512];
static char sbd_log[600];
static char db_dsn[512];
static char group[128];
static pid_t sbd_pid = -1;
static int sbd_port;
static const char *sbd_egress_private; /* SAGEWAI_EGRESS_PRIVATE, or NULL */
static const char *sbd_networks;       /* SAGEWAI_SANDBOX_NETWORKS, or NULL */
static const char *sbd_cgroup;	       /* SAGEWAI_SANDBOX_CGROUP, or NULL */
static const char *sbd_slirp;	       /* SAGEWAI_SANDBOX_SLIRP4NETNS, or NULL */
static char sbd_runner[600];	       /* SAGEWAI_SANDBOX_RUNNER, or "" */
static rd_kafka_t *producer;
static struct sw_test_evlog evl; /* runs "<prefix>..." on sagewai.steps and sagewai.sandbox */
static struct sw_test_sender tx; /* our dispatches */

static void sbd_start(void)
{
	static const char *const argv[] = {"sagewai-sandboxd", "serve", NULL};
	char path[600], dsn[600], gid[160], state[600], egress[300], runner[700], nets[200];
	char cgroup[200], slirp[200];
	const char *env[12] = {dsn,
			      gid,
			      "SAGEWAI_HTTP_PORT=0",
			      "SAGEWAI_LOG_LEVEL=debug",
			      state,
			      SW_TEST_ENV_FAST_REBALANCE};
	int n = 6;

	snprintf(path, sizeof(path), "%s/services/sandboxd/sagewai-sandboxd",
		 getenv("SW_BUILD_DIR"));
	sw_test_pg_svc_env(dsn, sizeof(dsn), db_dsn, "sandboxd");
	snprintf(gid, sizeof(gid), "SAGEWAI_GROUP_ID=%s", group);
	snprintf(state, sizeof(state), "SAGEWAI_SANDBOX_STATE_DIR=%s", tmp_dir);
	if (sbd_egress_private != NULL) {
		snprintf(egress, sizeof(egress), "SAGEWAI_EGRESS_PRIVATE=%s", sbd_egress_private);
		env[n++] = egress;
	}
	if (sbd_runner[0] != '\0') {
		snprintf(runner, sizeof(runner), "SAGEWAI_SANDBOX_RUNNER=%s", sbd_runner);
		env[n++] = runner;
	}
	if (sbd_networks != NULL) {
		snprintf(nets, sizeof(nets), "SAGEWAI_SANDBOX_NETWORKS=%s", sbd_networks);
		env[n++] = nets;
	}
	if (sbd_slirp != NULL) {
		snprintf(slirp, sizeof(slirp), "SAGEWAI_SANDBOX_SLIRP4NETNS=%s", sbd_slirp);
		env[n++] = slirp;
	}
	if (sbd_cgroup != NULL) {
		snprintf(cgroup, sizeof(cgroup), "SAGEWAI_SANDBOX_CGROUP=%s", sbd_cgroup);
		env[n++] = cgroup;
	}
	env[n] = NULL;
	sbd_pid = sw_test_proc_spawn(path, argv, env, sbd_log);
	/* the port, from the start log line */
	sbd_port =
	    sw_test_proc_wait_port(sbd_pid, "sagewai-sandboxd", sbd_log, "sandboxd started");
}

/* ---- dispatches ----------------------------------------------------------- */

/* A sandboxed spec with run (stolen: a string or an array) and extra keys. */
static json_t *spec(json_t *run)
{
	return json_pack("{s:s, s:i, s:s, s:o, s:[s], s:i}", "workflow", "sandboxd-test",
			 "workflow_version", 1, "uses", "", "run", run, "run_modes", "sandboxed",
			 "output_max", 1048576);
}

/* ---- set-up ------------------------------------------------------------- */

static void setup(const char *name)
{
	static const char *const group_topics[] = {"sagewai.steps.sandbox", "sagewai.runs", NULL};
	static const char *const topics[] = {"sagewai.steps", "sagewai.sandbox", NULL};
	const char *build = getenv("SW_BUILD_DIR");
	char q[2048], err[256];

	sw_test_env_load();
	sw_test_proc_watch(&sbd_pid);
	SW_CHECK(build != NULL);
	snprintf(prefix, sizeof(prefix), "sbt-%s-%d", name, (int)getpid());
	snprintf(group, sizeof(group), "sandboxd-test-%s", prefix);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tests-tmp/sandboxd-%s", build, prefix);
	snprintf(sbd_log, sizeof(sbd_log), "%s/sandboxd.log", tmp_dir);
	snprintf(q, sizeof(q), "mkdir -p %s && chmod 755 %s/.. %s", tmp_dir, tmp_dir, tmp_dir);
	SW_CHECK(system(q) == 0);
	sw_test_log_watch(sbd_log, 60);
	sw_test_pg_db_create(db_dsn, sizeof(db_dsn), "sandboxd", name);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	producer = sw_test_kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
	/* every dispatch on sandboxd's topic, in_process too (left alone) */
	tx = (struct sw_test_sender){reg, producer, "sandboxd-test", prefix,
				     "sagewai.steps.sandbox"};
	/* sandboxd's group starts at the end: it sees only what we send */
	sw_test_kafka_group_to_end(group, group_topics);
	sw_test_evlog_open(&evl, reg, prefix, topics);
	evl.pid = &sbd_pid;
	evl.name = "sagewai-sandboxd";
}

static char *http_get(const char *path)
{
	long status;
	char *body = sw_test_http_get(sbd_port, path, &status);

	SW_CHECK(status != 0);
	return body;
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
	struct sw_test_dispatch d_py, d_fail, d_slow, d_argv, d_var, d_inproc, d_big, d_both;
	struct sw_test_ev *e, *s, *f;
	json_t *stdout_json, *v;
	char *metrics;
	size_t i, outputs = 0;
	int acquired = 0, exited = 0, released = 0;

	setup("basic");
	sbd_start();
	/* an in_process dispatch on sandboxd's own topic (misrouted): not its work */
	sw_test_dispatch_make(&tx, &d_inproc, "inproc", "t", "in_process", 0,
			      json_pack("{s:s, s:{s:i}}", "uses", "template", "with", "value", 1));
	d_inproc.topic = "sagewai.steps.sandbox";
	sw_test_dispatch_send(&tx, &d_inproc);
	free(d_inproc.buf);
	d_inproc.buf = NULL;
	sw_test_dispatch_post(&tx, &d_py, "py", "check", "sandboxed", 60000,
			      spec(json_pack("[s, s, s, s]", "python3", "-c", py_snippet,
					     "{\"numbers\": [1, 2, 3, 36]}")));
	sw_test_dispatch_post(&tx, &d_fail, "fail", "bad", "sandboxed", 60000,
			      spec(json_string("echo starting; echo 'it broke' >&2; exit 3")));
	sw_test_dispatch_post(&tx, &d_argv, "argv", "echo", "sandboxed", 60000,
			      spec(json_pack("[s, s]", "/bin/echo", "hello from argv")));
	{
		json_t *sp = spec(json_string("true"));

		json_object_set_new(sp, "variant", json_string("no-such-variant"));
		sw_test_dispatch_post(&tx, &d_var, "variant", "v", "sandboxed", 60000, sp);
	}
	{
		json_t *sp = spec(json_string("head -c 5000 /dev/zero | tr '\\0' x"));

		json_object_set_new(sp, "output_max", json_integer(1000));
		sw_test_dispatch_post(&tx, &d_big, "big", "big", "sandboxed", 60000, sp);
	}
	{
		/* stderr floods first: stdout still gets its share */
		json_t *sp = spec(json_string("head -c 5000 /dev/zero | tr '\\0' e >&2; "
					      "sleep 0.3; head -c 5000 /dev/zero | tr '\\0' o"));

		json_object_set_new(sp, "output_max", json_integer(1000));
		sw_test_dispatch_post(&tx, &d_both, "both", "both", "sandboxed", 60000, sp);
	}

	/* the Python snippet's output */
	f = sw_test_evlog_finished(&evl, d_py.step_id);
	/* sandboxd has its partitions now: a short timeout runs out while the
	 * command runs, not before the dispatch is consumed (that attempt
	 * would be fenced unstarted) */
	sw_test_dispatch_post(&tx, &d_slow, "slow", "sleepy", "sandboxed", 1500,
			      spec(json_string("sleep 30")));
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(f->output != NULL &&
		       json_integer_value(json_object_get(f->output, "exit_code")) == 0,
		   "no exit_code 0 in the output");
	v = json_object_get(f->output, "stdout");
	SW_REQUIRE(json_is_string(v), "no stdout");
	stdout_json = json_loads(json_string_value(v), 0, NULL);
	SW_REQUIRE(stdout_json != NULL, "stdout is not the snippet's JSON: %s",
		   json_string_value(v));
	SW_REQUIRE(json_integer_value(json_object_get(stdout_json, "sum")) == 42, "sum is not 42");
	/* exactly PATH and HOME as exec'd (Python itself adds LC_CTYPE to os.environ) */
	v = json_object_get(stdout_json, "env");
	{
		char *envs = json_dumps(v, JSON_COMPACT);

		SW_REQUIRE(json_array_size(v) == 2 &&
			       strcmp(json_string_value(json_array_get(v, 0)), "HOME") == 0 &&
			       strcmp(json_string_value(json_array_get(v, 1)), "PATH") == 0,
			   "environment inside is %s, expected [HOME, PATH]", envs);
		free(envs);
	}
	SW_REQUIRE(strcmp(json_string_value(json_object_get(stdout_json, "cwd")), "/workspace") ==
		       0,
		   "cwd is not /workspace");
	json_decref(stdout_json);
	s = sw_test_evlog_find(&evl, "step.started", d_py.step_id, 0);
	SW_REQUIRE(s != NULL && s->partition == f->partition && s->offset < f->offset,
		   "step.started not before step.finished");

	/* a nonzero exit */
	f = sw_test_evlog_finished(&evl, d_fail.step_id);
	sw_test_ev_require(f, "FAILED", "exit_status: ");
	SW_REQUIRE(strstr(f->error, "status 3") != NULL && strstr(f->error, "it broke") != NULL,
		   "error '%s' lacks the status or the stderr tail", f->error);

	/* over its timeout */
	f = sw_test_evlog_finished(&evl, d_slow.step_id);
	sw_test_ev_require(f, "TIMED_OUT", "timeout: ");

	/* argv form */
	f = sw_test_evlog_finished(&evl, d_argv.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(strcmp(json_string_value(json_object_get(f->output, "stdout")),
			  "hello from argv\n") == 0,
		   "argv step stdout is wrong");

	/* unknown variant: refused, nothing started */
	f = sw_test_evlog_finished(&evl, d_var.step_id);
	sw_test_ev_require(f, "FAILED", "bad_input: ");
	SW_REQUIRE(strstr(f->error, "no-such-variant") != NULL, "error does not name the variant");
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d_var.step_id) == 0,
		   "a refused step was started");

	/* output capped at output_max, and said so */
	f = sw_test_evlog_finished(&evl, d_big.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(json_string_length(json_object_get(f->output, "stdout")) == 1000 &&
		       json_is_true(json_object_get(f->output, "truncated")),
		   "output not capped at 1000 bytes with truncated: true");
	f = sw_test_evlog_finished(&evl, d_both.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(json_string_length(json_object_get(f->output, "stderr")) == 500 &&
		       json_string_length(json_object_get(f->output, "stdout")) == 500 &&
		       json_is_true(json_object_get(f->output, "truncated")),
		   "a stderr flood took stdout's share: stdout %zu, stderr %zu bytes",
		   json_string_length(json_object_get(f->output, "stdout")),
		   json_string_length(json_object_get(f->output, "stderr")));

	/* lifecycle of the Python step's sandbox */
	for (int tries = 0; tries < 100 && (acquired == 0 || released == 0); tries++) {
		sw_test_evlog_poll(&evl, 100);
		acquired = exited = released = 0;
		outputs = 0;
		for (i = 0; i < evl.n; i++) {
			if (strcmp(evl.ev[i]->step_id, d_py.step_id) != 0)
				continue;
			SW_REQUIRE(strncmp(evl.ev[i]->type, "step.", 5) == 0 ||
				       strcmp(evl.ev[i]->type, "step.finished") == 0 ||
				       strcmp(evl.ev[i]->topic, "sagewai.sandbox") == 0,
				   "%s on %s", evl.ev[i]->type, evl.ev[i]->topic);
			acquired += strcmp(evl.ev[i]->type, "sandbox.acquired") == 0;
			exited += strcmp(evl.ev[i]->type, "sandbox.exited") == 0;
			released += strcmp(evl.ev[i]->type, "sandbox.released") == 0;
			outputs += strcmp(evl.ev[i]->type, "sandbox.output") == 0;
		}
	}
	SW_REQUIRE(acquired == 1 && exited == 1 && released == 1 && outputs >= 1,
		   "lifecycle: %d acquired, %zu output, %d exited, %d released", acquired, outputs,
		   exited, released);
	e = sw_test_evlog_find(&evl, "sandbox.exited", d_py.step_id, 0);
	SW_REQUIRE(json_integer_value(json_object_get(e->body, "exit_code")) == 0 &&
		       json_integer_value(json_object_get(e->body, "utime_us")) +
			       json_integer_value(json_object_get(e->body, "stime_us")) >
			   0,
		   "sandbox.exited lacks exit code or usage");
	{
		const char *sid = json_string_value(json_object_get(
		    sw_test_evlog_find(&evl, "sandbox.acquired", d_py.step_id, 0)->body,
		    "sandbox_id"));
		struct sw_test_ev *r =
		    sw_test_evlog_find(&evl, "sandbox.released", d_py.step_id, 0);

		SW_REQUIRE(sid != NULL &&
			       strcmp(sid, json_string_value(
					       json_object_get(r->body, "sandbox_id"))) == 0 &&
			       strcmp(json_string_value(json_object_get(r->body, "reason")),
				      "finished") == 0,
			   "released names another sandbox or reason");
	}
	e = sw_test_evlog_find(&evl, "sandbox.output", d_py.step_id, 0);
	SW_REQUIRE(strstr(json_string_value(json_object_get(e->body, "data")), "\"sum\": 42") !=
		       NULL,
		   "first output chunk lacks the snippet's output");
	/* the failing step's sandbox was released too, as failed */
	sw_test_evlog_wait(&evl, "sandbox.released", d_fail.step_id, 0, 60);
	SW_REQUIRE(
	    strcmp(json_string_value(json_object_get(
		       sw_test_evlog_find(&evl, "sandbox.released", d_fail.step_id, 0)->body,
		       "reason")),
		   "failed") == 0,
	    "failed step's sandbox released with another reason");

	/* the in_process dispatch was left alone (the worker's, wherever it comes) */
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d_inproc.step_id) == 0 &&
		       sw_test_evlog_count(&evl, "step.started", d_inproc.step_id) == 0,
		   "sandboxd answered an in_process dispatch");

	metrics = http_get("/metrics");
	SW_REQUIRE(sw_test_metric(metrics, "sagewai_sandboxd_warm_target") == 2,
		   "warm target not 2:\n%s", metrics);
	SW_REQUIRE(sw_test_metric(metrics, "sagewai_sandboxd_acquire_hits") +
			   sw_test_metric(metrics, "sagewai_sandboxd_acquire_misses") >=
		       5,
		   "acquires not counted:\n%s", metrics);
	SW_REQUIRE(sw_test_metric(metrics, "sagewai_sandboxd_warm_started") >= 1,
		   "no warm start:\n%s", metrics);
	free(metrics);
}

/* The spec the scheduler dispatches for step idx of wf with input: the
 * step's own keys rendered against {"input": input} (runs.c plan_dispatch). */
static json_t *step_spec(const struct sw_workflow *wf, size_t idx, json_t *input)
{
	json_t *ctx = json_pack("{s:O, s:{}}", "input", input, "steps"), *extra, *sp;
	char err[512];

	SW_CHECK(ctx != NULL && idx < wf->nsteps);
	extra = sw_template_render(wf->steps[idx].extra, ctx, err, sizeof(err));
	SW_CHECKF(extra != NULL, "render: %s", err);
	json_decref(ctx);
	sp = json_pack("{s:s, s:i, s:s, s:{}, s:[s], s:i}", "workflow", wf->name,
		       "workflow_version", wf->version, "uses", "", "with", "run_modes",
		       "sandboxed", "output_max", 1048576);
	SW_CHECK(sp != NULL && json_object_update_missing(sp, extra) == 0);
	json_decref(extra);
	return sp;
}

/* The value of "Max <what>" (soft) in a /proc/<pid>/limits text, or -1. */
static long long proc_limit(const char *text, const char *what)
{
	const char *p = text != NULL ? strstr(text, what) : NULL;
	long long v = -1;

	if (p != NULL)
		sscanf(p + strlen(what), " %lld", &v);
	return v;
}

static json_int_t acquired_limit(const char *step_id, const char *name)
{
	struct sw_test_ev *e;
	json_t *l;

	sw_test_evlog_wait(&evl, "sandbox.acquired", step_id, 0, 60);
	e = sw_test_evlog_find(&evl, "sandbox.acquired", step_id, 0);
	SW_REQUIRE(e != NULL, "no sandbox.acquired for %s", step_id);
	l = json_loads(json_string_value(json_object_get(e->body, "limits")), 0, NULL);
	SW_REQUIRE(l != NULL, "sandbox.acquired has no limits");
	json_int_t v = json_integer_value(json_object_get(l, name));
	json_decref(l);
	return v;
}

static void scenario_spec(void)
{
	static const char yaml[] =
	    "name: spec\n"
	    "steps:\n"
	    "  - name: greet\n"
	    "    mode: sandboxed\n"
	    "    env: {GREETING: \"${{ input.x }}\", COUNT: \"${{ input.n }}\"}\n"
	    "    run: 'printf \"%s|%s|%s|%s\" \"$GREETING\" \"$COUNT\" \"$PATH\" \"$HOME\"'\n"
	    "  - name: limited\n"
	    "    mode: sandboxed\n"
	    "    limits: {memory_mb: 128, pids: 64, cpus: 1}\n"
	    "    run: [cat, /proc/self/limits]\n"
	    "  - name: lowered\n"
	    "    mode: sandboxed\n"
	    "    limits: {memory_mb: 1048576, pids: 65536, cpus: 256}\n"
	    "    run: [cat, /proc/self/limits]\n";
	struct sw_test_dispatch d_greet, d_lim, d_low, d_path, d_ld, d_vocab;
	struct sw_test_ev *f;
	struct sw_workflow *wf;
	json_t *input, *sp;
	const char *so;
	char err[512];

	wf = sw_workflow_parse(yaml, strlen(yaml), "spec.yaml", err, sizeof(err));
	SW_CHECKF(wf != NULL, "%s", err);
	setup("spec");
	sbd_start();
	input = json_pack("{s:s, s:i}", "x", "hello from the input", "n", 42);
	sw_test_dispatch_post(&tx, &d_greet, "greet", "greet", "sandboxed", 60000,
			      step_spec(wf, 0, input));
	sw_test_dispatch_post(&tx, &d_lim, "limited", "limited", "sandboxed", 60000,
			      step_spec(wf, 1, input));
	sw_test_dispatch_post(&tx, &d_low, "lowered", "lowered", "sandboxed", 60000,
			      step_spec(wf, 2, input));
	/* crafted dispatches: no registered workflow gives these */
	sp = spec(json_string("echo $PATH"));
	json_object_set_new(sp, "env", json_pack("{s:s, s:s}", "GREETING", "hi", "PATH", "/tmp"));
	sw_test_dispatch_post(&tx, &d_path, "path", "path", "sandboxed", 60000, sp);
	sp = spec(json_string("true"));
	json_object_set_new(sp, "env", json_pack("{s:s}", "LD_PRELOAD", "/workspace/evil.so"));
	sw_test_dispatch_post(&tx, &d_ld, "ldpreload", "ld", "sandboxed", 60000, sp);
	sp = spec(json_string("true"));
	json_object_set_new(sp, "limits", json_pack("{s:i}", "memory_bytes", 1 << 28));
	sw_test_dispatch_post(&tx, &d_vocab, "vocab", "vocab", "sandboxed", 60000, sp);
	json_decref(input);

	/* env: templated from the input, beside the sandbox's PATH and HOME */
	f = sw_test_evlog_finished(&evl, d_greet.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	so = json_string_value(json_object_get(f->output, "stdout"));
	SW_REQUIRE(so != NULL && strcmp(so, "hello from the input|42|/usr/local/bin:/usr/bin:/bin:/.sagewai/bin|"
					    "/workspace") == 0,
		   "env step printed '%s'", so ? so : "(nothing)");

	/* limits in the workflow vocabulary: the command's rlimits */
	f = sw_test_evlog_finished(&evl, d_lim.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	so = json_string_value(json_object_get(f->output, "stdout"));
	SW_REQUIRE(proc_limit(so, "Max processes") == 64 &&
		       proc_limit(so, "Max address space") == 128LL << 20,
		   "limits inside:\n%s", so ? so : "(nothing)");
	SW_REQUIRE(acquired_limit(d_lim.step_id, "nproc") == 64 &&
		       acquired_limit(d_lim.step_id, "memory_bytes") == 128LL << 20,
		   "sandbox.acquired limits are not the step's");

	/* over the variant's: lowered to the variant's bound, never refused */
	f = sw_test_evlog_finished(&evl, d_low.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	so = json_string_value(json_object_get(f->output, "stdout"));
	SW_REQUIRE(proc_limit(so, "Max processes") == 256 &&
		       proc_limit(so, "Max address space") == 2147483648LL,
		   "lowered limits inside (base: nproc 256, 2 GiB):\n%s", so ? so : "(nothing)");
	/* cpus: CPU bandwidth in millis (base has no CPU maximum: as asked) */
	SW_REQUIRE(acquired_limit(d_lim.step_id, "cpu_millis") == 1000 &&
		       acquired_limit(d_low.step_id, "cpu_millis") == 256000,
		   "sandbox.acquired cpu_millis %lld and %lld, expected 1000 and 256000",
		   (long long)acquired_limit(d_lim.step_id, "cpu_millis"),
		   (long long)acquired_limit(d_low.step_id, "cpu_millis"));

	/* crafted: refused before anything starts */
	f = sw_test_evlog_finished(&evl, d_path.step_id);
	sw_test_ev_require(f, "FAILED", "bad_input: spec.env: \"PATH\" is reserved");
	f = sw_test_evlog_finished(&evl, d_ld.step_id);
	sw_test_ev_require(f, "FAILED", "bad_input: spec.env: \"LD_PRELOAD\" is reserved");
	f = sw_test_evlog_finished(&evl, d_vocab.step_id);
	sw_test_ev_require(f, "FAILED", "bad_input: spec.limits: unknown limit 'memory_bytes'");
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.started", d_path.step_id) == 0 &&
		       sw_test_evlog_count(&evl, "step.started", d_ld.step_id) == 0 &&
		       sw_test_evlog_count(&evl, "step.started", d_vocab.step_id) == 0,
		   "a refused step was started");
	sw_workflow_free(wf);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}

/*
 * The workspace is a tmpfs of the step's disk_mb: a step writing 600 MiB
 * into 64 fails with disk_full and sandboxd goes on; the mount table a
 * sandbox sees names none of sandboxd's host paths.
 */
static void scenario_disk(void)
{
	struct sw_test_dispatch d_full, d_mounts, d_after;
	struct sw_test_ev *f;
	const char *so;
	json_t *sp;

	setup("disk");
	sbd_start();
	sp = spec(json_string("dd if=/dev/zero of=/workspace/f bs=1M count=600"));
	json_object_set_new(sp, "limits", json_pack("{s:i, s:i}", "disk_mb", 64, "memory_mb", 512));
	sw_test_dispatch_post(&tx, &d_full, "full", "full", "sandboxed", 60000, sp);
	sw_test_dispatch_post(
	    &tx, &d_mounts, "mounts", "mounts", "sandboxed", 60000,
	    spec(json_string("cat /proc/self/mountinfo /proc/1/mountinfo; df -k /workspace")));
	f = sw_test_evlog_finished(&evl, d_full.step_id);
	sw_test_ev_require(f, "FAILED", "disk_full: /workspace is full (64 MiB)");
	SW_REQUIRE(acquired_limit(d_full.step_id, "disk_bytes") == 64LL << 20,
		   "sandbox.acquired disk_bytes is not the step's 64 MiB");

	f = sw_test_evlog_finished(&evl, d_mounts.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	so = json_string_value(json_object_get(f->output, "stdout"));
	SW_REQUIRE(so != NULL && strstr(so, " /workspace ") != NULL &&
		       strstr(so, tmp_dir) == NULL && strstr(so, "sagewai-sandbox") == NULL &&
		       strstr(so, "/tmp/") == NULL,
		   "mountinfo names host paths (state dir under %s):\n%s", tmp_dir,
		   so ? so : "(nothing)");
	/* the variant's default: 256 MiB */
	SW_REQUIRE(strstr(so, " 262144 ") != NULL, "workspace size:\n%s", so);

	/* and sandboxd keeps serving; disk_mb over the variant's is lowered */
	sp = spec(json_string("df -k /workspace | tail -n 1"));
	json_object_set_new(sp, "limits", json_pack("{s:i}", "disk_mb", 65536));
	sw_test_dispatch_post(&tx, &d_after, "after", "after", "sandboxed", 60000, sp);
	f = sw_test_evlog_finished(&evl, d_after.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	so = json_string_value(json_object_get(f->output, "stdout"));
	SW_REQUIRE(so != NULL && strstr(so, " 262144 ") != NULL &&
		       acquired_limit(d_after.step_id, "disk_bytes") == 256LL << 20,
		   "disk_mb 65536 not lowered to base's 256 MiB: %s", so ? so : "(nothing)");
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}

/*
 * Network full: the sandbox's own namespace (lo and tap0) and nothing of
 * the host's: a listener on all the host's addresses is tried at
 * 127.0.0.1, slirp's gateway 10.0.2.2 and each address of the host's
 * interfaces, and never accepts. Without slirp4netns: mode_unavailable.
 */
static void scenario_netfull(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	socklen_t al = sizeof(a);
	struct sw_test_dispatch d_probe;
	char script[4096], addrs[2048] = "'127.0.0.1', '10.0.2.2'";
	struct ifaddrs *ifs, *i;
	struct sw_test_ev *f;
	const char *so;
	json_t *sp;
	int fd;

	setup("netfull");
	sbd_start();
	SW_CHECK((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) >= 0);
	SW_CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 16) == 0);
	SW_CHECK(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	SW_CHECK(getifaddrs(&ifs) == 0);
	for (i = ifs; i != NULL; i = i->ifa_next) {
		char ip[INET_ADDRSTRLEN];

		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof(ip));
		snprintf(addrs + strlen(addrs), sizeof(addrs) - strlen(addrs), ", '%s'", ip);
	}
	freeifaddrs(ifs);
	snprintf(script, sizeof(script),
		 "import socket\n"
		 "for a in [%s]:\n"
		 "    s = socket.socket(); s.settimeout(3)\n"
		 "    try:\n"
		 "        s.connect((a, %d)); print('connected', a)\n"
		 "    except OSError as e:\n"
		 "        print('refused', a, e.errno)\n"
		 "    s.close()\n"
		 "print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n",
		 addrs, ntohs(a.sin_port));
	sp = spec(json_pack("[s, s, s]", "python3", "-c", script));
	json_object_set_new(sp, "network", json_string("full"));
	sw_test_dispatch_post(&tx, &d_probe, "probe", "probe", "sandboxed", 60000, sp);
	f = sw_test_evlog_finished(&evl, d_probe.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	so = json_string_value(json_object_get(f->output, "stdout"));
	SW_REQUIRE(so != NULL && strstr(so, "connected") == NULL &&
		       strstr(so, "refused 127.0.0.1") != NULL &&
		       strstr(so, "['lo', 'tap0']") != NULL,
		   "network full probe:\n%s", so ? so : "(nothing)");
	SW_REQUIRE(accept(fd, NULL, NULL) < 0 && errno == EAGAIN, "the host's listener was reached");
	close(fd);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}

static void scenario_netfulloff(void)
{
	struct sw_test_dispatch d_full, d_none;
	struct sw_test_ev *f;
	json_t *sp;

	setup("netfulloff");
	sbd_slirp = "/nonexistent/slirp4netns";
	sbd_start();
	sp = spec(json_string("echo ran"));
	json_object_set_new(sp, "network", json_string("full"));
	sw_test_dispatch_post(&tx, &d_full, "full", "full", "sandboxed", 60000, sp);
	sw_test_dispatch_post(&tx, &d_none, "none", "none", "sandboxed", 60000,
			      spec(json_string("echo ran")));
	/* never the host's namespace instead */
	f = sw_test_evlog_finished(&evl, d_full.step_id);
	sw_test_ev_require(f, "FAILED",
			   "mode_unavailable: network full is not available on this host (");
	f = sw_test_evlog_finished(&evl, d_none.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}

static void scenario_cpuoff(void)
{
	struct sw_test_dispatch d_cpu, d_plain;
	struct sw_test_ev *f;
	json_t *sp;

	setup("cpuoff");
	sbd_cgroup = "off";
	sbd_start();
	sp = spec(json_string("echo ran"));
	json_object_set_new(sp, "limits", json_pack("{s:f}", "cpus", 0.5));
	sw_test_dispatch_post(&tx, &d_cpu, "cpu", "cpu", "sandboxed", 60000, sp);
	sw_test_dispatch_post(&tx, &d_plain, "plain", "plain", "sandboxed", 60000,
			      spec(json_string("echo ran")));
	/* a CPU limit no cgroup can hold: refused, never run unbounded */
	f = sw_test_evlog_finished(&evl, d_cpu.step_id);
	sw_test_ev_require(f, "FAILED", "mode_unavailable: ");
	SW_REQUIRE(strstr(f->error, "cpu limit cannot be enforced") != NULL, "error: %s", f->error);
	SW_REQUIRE(sw_test_evlog_count(&evl, "sandbox.acquired", d_cpu.step_id) == 0,
		   "the cpu-limited step got a sandbox");
	/* without one, steps run as before */
	f = sw_test_evlog_finished(&evl, d_plain.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}

static void scenario_redelivery(void)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f1, *f2;

	setup("redelivery");
	sbd_start();
	sw_test_dispatch_make(&tx, &d, "once", "count", "sandboxed", 60000,
			      spec(json_string("echo ran >> /tmp/x; date +%s%N")));
	sw_test_kafka_deliver(producer, d.topic, d.run_id, d.buf, d.len);
	f1 = sw_test_evlog_finished(&evl, d.step_id);
	sw_test_ev_require(f1, "SUCCEEDED", NULL);
	sw_test_kafka_deliver(producer, d.topic, d.run_id, d.buf, d.len);
	f2 = sw_test_evlog_wait(&evl, "step.finished", d.step_id, 1, 120);
	f1 = sw_test_evlog_find(&evl, "step.finished", d.step_id, 0);
	SW_REQUIRE(strcmp(f1->event_id, f2->event_id) == 0, "re-published with another event id");
	SW_REQUIRE(sw_test_evlog_count(&evl, "sandbox.acquired", d.step_id) == 1 &&
		       sw_test_evlog_count(&evl, "step.started", d.step_id) == 1,
		   "the step ran twice");
	free(d.buf);
}

/* 1 if sagewai.deadletter holds needle, with a reason. */
static int deadletter_has(const void *needle, size_t len)
{
	char reason[256];

	return sw_test_kafka_deadletter_find(prefix, needle, len, reason, sizeof(reason));
}

static void scenario_deadletter(void)
{
	char garbage[128];
	struct sw_test_dispatch d[2];
	struct sw_test_ev *f;
	int found = 0;

	setup("deadletter");
	sbd_start();
	snprintf(garbage, sizeof(garbage), "not an event %s", prefix);
	sw_test_kafka_deliver(producer, "sagewai.steps.sandbox", prefix, garbage, strlen(garbage));
	sw_test_dispatch_make(&tx, &d[0], "cut", "x", "sandboxed", 60000,
			      spec(json_string("true")));
	sw_test_kafka_deliver(producer, d[0].topic, d[0].run_id, d[0].buf, d[0].len - 5);
	sw_test_dispatch_post(&tx, &d[1], "after", "ok", "sandboxed", 60000,
			      spec(json_string("echo still here")));
	f = sw_test_evlog_finished(&evl, d[1].step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	for (int i = 0; i < 20 && !found; i++)
		found = deadletter_has(garbage, strlen(garbage));
	SW_REQUIRE(found, "garbage not in sagewai.deadletter");
	SW_REQUIRE(deadletter_has(d[0].buf, d[0].len - 5), "truncated dispatch not dead-lettered");
	SW_REQUIRE(sw_test_evlog_count(&evl, "step.finished", d[0].step_id) == 0,
		   "the truncated dispatch ran");
	free(d[0].buf);
}

static int is_runner(pid_t pid)
{
	char buf[256];

	/* argv[0] only: the read stops at its NUL */
	return sw_test_proc_read(pid, "cmdline", buf, sizeof(buf)) > 0 &&
	       strstr(buf, "toolrunner") != NULL;
}

/* Live processes (not this one) whose command line holds dir. */
static size_t names_dir(const char *dir)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t n = 0;

	SW_CHECK(d != NULL);
	while ((e = readdir(d)) != NULL) {
		int pid = atoi(e->d_name);
		char buf[4096];
		ssize_t r;

		if (pid <= 0 || pid == (int)getpid())
			continue;
		if ((r = sw_test_proc_read(pid, "cmdline", buf, sizeof(buf))) < 0)
			continue;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] == '\0')
				buf[i] = ' ';
		n += strstr(buf, dir) != NULL && sw_test_proc_alive(pid);
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
static struct sw_test_ev *egress_event(const char *step_id, int port)
{
	for (size_t i = 0; i < evl.n; i++)
		if (strcmp(evl.ev[i]->type, "sandbox.egress") == 0 &&
		    strcmp(evl.ev[i]->step_id, step_id) == 0 &&
		    json_integer_value(json_object_get(evl.ev[i]->body, "target_port")) == port)
			return evl.ev[i];
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
	struct sw_test_dispatch d_eg, d_bad, d_none;
	struct sw_test_ev *f, *e;
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
	sw_test_dispatch_post(&tx, &d_eg, "egress", "fetch", "sandboxed", 60000, sp);
	sp = spec(json_string("true"));
	json_object_set_new(sp, "egress_allow", json_pack("[s]", hp));
	sw_test_dispatch_post(&tx, &d_bad, "egressbad", "bad", "sandboxed", 60000, sp);
	sw_test_dispatch_post(
	    &tx, &d_none, "egressnone", "none", "sandboxed", 60000,
	    spec(json_pack("[s, s, s]", "python3", "-c",
			   "import socket\n"
			   "try:\n"
			   "    socket.create_connection(('127.0.0.1', 3128), 3); print('open')\n"
			   "except OSError:\n"
			   "    print('closed')\n")));

	f = sw_test_evlog_finished(&evl, d_eg.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	out = json_object_get(f->output, "stdout");
	SW_REQUIRE(json_is_string(out), "no stdout in %s", d_eg.step_id);
	out = json_loads(json_string_value(out), 0, NULL);
	SW_REQUIRE(out != NULL, "stdout is not JSON: %s",
		   json_string_value(json_object_get(f->output, "stdout")));
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
		sw_test_evlog_poll(&evl, 100);
	e = egress_event(d_eg.step_id, up.port);
	SW_REQUIRE(e != NULL, "no sandbox.egress for the listed host");
	SW_CHECK(json_is_true(json_object_get(e->body, "allowed")));
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "reason")), "allowed") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "target_host")), "127.0.0.1") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "method")), "GET") == 0);
	e = egress_event(d_eg.step_id, other.port);
	SW_REQUIRE(e != NULL, "no sandbox.egress for the unlisted host");
	SW_CHECK(json_is_false(json_object_get(e->body, "allowed")));
	SW_CHECKF(strcmp(json_string_value(json_object_get(e->body, "reason")), "not_listed") == 0,
		  "reason %s", json_string_value(json_object_get(e->body, "reason")));
	SW_CHECK(strcmp(json_string_value(json_object_get(e->body, "method")), "CONNECT") == 0);
	SW_CHECK(sw_test_evlog_count(&evl, "sandbox.egress", d_eg.step_id) == 2);

	sw_test_ev_require(sw_test_evlog_finished(&evl, d_bad.step_id), "FAILED",
			   "bad_input: spec.egress_allow needs network egress_only");
	f = sw_test_evlog_finished(&evl, d_none.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
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
	struct sw_test_ev *f = sw_test_evlog_finished(&evl, step_id);
	json_t *o;

	sw_test_ev_require(f, "SUCCEEDED", NULL);
	o = json_loads(json_string_value(json_object_get(f->output, "stdout")), 0, NULL);
	SW_REQUIRE(o != NULL, "%s: stdout is not JSON: %s", step_id,
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
	struct sw_test_dispatch d_files, d_write, d_loop, d_sys, d_full, d_fork, d_mem, d_after;
	json_t *o, *sp;
	struct sw_test_ev *f;
	char port[16], *health;

	upstream_start(&host, 0);
	sbd_networks = "none,egress_only"; /* as multi_tenant has it by default */
	setup("escape");
	sbd_start();
	snprintf(port, sizeof(port), "%d", host.port);
#define PY(what, arg) spec(json_pack("[s, s, s, s, s]", "python3", "-c", escape_py, what, arg))
	sw_test_dispatch_post(&tx, &d_files, "files", "files", "sandboxed", 60000,
			      PY("files", tmp_dir));
	sw_test_dispatch_post(&tx, &d_write, "write", "write", "sandboxed", 60000,
			      PY("write", "-"));
	sw_test_dispatch_post(&tx, &d_loop, "loopback", "loopback", "sandboxed", 60000,
			      PY("loopback", port));
	sw_test_dispatch_post(&tx, &d_sys, "syscalls", "syscalls", "sandboxed", 60000,
			      PY("syscalls", "-"));
	/* the host's network, where the operator does not offer it */
	sp = PY("loopback", port);
	json_object_set_new(sp, "network", json_string("full"));
	sw_test_dispatch_post(&tx, &d_full, "full", "full", "sandboxed", 60000, sp);
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
	json_object_set_new(sp, "limits", json_pack("{s:i}", "pids", 40));
	sw_test_dispatch_post(&tx, &d_fork, "forkbomb", "forkbomb", "sandboxed", 60000, sp);
	/* a memory bomb, killed or refused at the memory limit */
	sp = spec(json_pack("[s, s, s]", "python3", "-c",
			    "b = []\n"
			    "while True: b.append(bytearray(64 << 20))\n"));
	json_object_set_new(sp, "limits", json_pack("{s:i}", "memory_mb", 256));
	sw_test_dispatch_post(&tx, &d_mem, "membomb", "membomb", "sandboxed", 60000, sp);

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

	f = sw_test_evlog_finished(&evl, d_full.step_id);
	sw_test_ev_require(f, "FAILED", "mode_unavailable: network full is not offered");
	SW_CHECK(sw_test_evlog_count(&evl, "step.started", d_full.step_id) == 0);
	SW_CHECKF(host.accepted == 0, "the host listener accepted %d", host.accepted);

	f = sw_test_evlog_finished(&evl, d_fork.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	{
		const char *so = json_string_value(json_object_get(f->output, "stdout"));
		int n = -1;

		SW_REQUIRE(so != NULL && sscanf(so, "started %d", &n) == 1, "fork bomb said %s",
			   so ? so : "(nothing)");
		SW_CHECKF(n > 0 && n <= 40, "%d processes under an nproc limit of 40", n);
	}
	f = sw_test_evlog_finished(&evl, d_mem.step_id);
	sw_test_ev_require(f, "FAILED", "exit_status");

	/* and sandboxd is unharmed */
	sw_test_dispatch_post(&tx, &d_after, "after", "after", "sandboxed", 60000,
			      spec(json_string("echo fine")));
	f = sw_test_evlog_finished(&evl, d_after.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	health = http_get("/healthz");
	SW_CHECK(health != NULL);
	free(health);
	/* the fork and memory bombs had limits of their own: cold starts */
	health = http_get("/metrics");
	SW_REQUIRE(sw_test_metric(health, "sagewai_sandboxd_cold_started") >= 2 &&
			   sw_test_metric(health, "sagewai_sandboxd_cold_start_seconds_avg") > 0,
		   "cold starts not in /metrics:\n%s", health);
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
	struct sw_test_dispatch d[16];
	size_t n = sizeof(modes) / sizeof(modes[0]), k;
	char *health;

	snprintf(sbd_runner, sizeof(sbd_runner), "%s/tests/sandbox/hostile_runner.py",
		 getenv("SW_SOURCE_DIR"));
	setup("hostile");
	sbd_start();
	for (k = 0; k < n; k++)
		sw_test_dispatch_post(&tx, &d[k], modes[k], modes[k], "sandboxed", 60000,
				      spec(json_pack("[s]", modes[k])));
	for (k = 0; k < n; k++) {
		struct sw_test_ev *f = sw_test_evlog_finished(&evl, d[k].step_id);

		sw_test_ev_require(f, "FAILED", "sandbox_error: ");
		health = http_get("/healthz");
		SW_CHECK(health != NULL);
		free(health);
		/* once sandboxd has its partitions: a 1.5 s attempt consumed later
		 * than that would be fenced, and never get a sandbox */
		if (k == 0)
			for (size_t q = 0; q < 3; q++)
				sw_test_dispatch_post(&tx, &d[n + q], quiet[q], quiet[q],
						      "sandboxed", 1500,
						      spec(json_pack("[s]", quiet[q])));
	}
	for (k = 0; k < 3; k++) {
		struct sw_test_ev *f = sw_test_evlog_finished(&evl, d[n + k].step_id);

		SW_REQUIRE(strcmp(f->status, "TIMED_OUT") == 0 || strcmp(f->status, "FAILED") == 0,
			   "%s: %s", quiet[k], f->status);
	}
	/* every sandbox went back and was destroyed */
	for (k = 0; k < n + 3; k++)
		sw_test_evlog_wait(&evl, "sandbox.released", d[k].step_id, 0, 60);
	SW_CHECK(waitpid(sbd_pid, NULL, WNOHANG) == 0);
}

/* ---- kill -9 ------------------------------------------------------------- */

/* The service part: the child of sbd_pid that is sagewai-sandboxd too. */
static pid_t service_part(const pid_t *pids, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		char buf[256];

		if (sw_test_proc_read(pids[i], "cmdline", buf, sizeof(buf)) < 0)
			continue;
		if (sw_test_proc_ppid(pids[i]) == sbd_pid &&
		    strstr(buf, "sagewai-sandboxd") != NULL)
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
	struct sw_test_dispatch d;
	pid_t pids[512], victim;
	size_t n, runners = 0, left;
	int64_t until;
	int st;

	setup(service_only ? "kill9service" : "kill9");
	sbd_start();
	sw_test_dispatch_post(&tx, &d, "long", "sleep", "sandboxed", 120000,
			      spec(json_string("sleep 100")));
	sw_test_evlog_wait(&evl, "sandbox.acquired", d.step_id, 0, 120);
	n = sw_test_proc_descendants(sbd_pid, pids, 512);
	/* sandboxes no longer bind from the state directory (tmpfs workspaces,
	 * the runner copied in): not even bwrap's command line names it */
	SW_REQUIRE(names_dir(tmp_dir) == 0, "a sandbox names the state directory");
	for (size_t i = 1; i < n; i++)
		runners += is_runner(pids[i]);
	/* the step's sandbox, and the warm ones */
	SW_REQUIRE(runners >= 2, "only %zu tool runners under sandboxd", runners);
	victim = service_part(pids, n);
	SW_REQUIRE(victim > 0, "no service part under sandboxd %d", (int)sbd_pid);
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
		SW_REQUIRE(uid > 0, "the service part runs as uid %d", uid);
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
			left += sw_test_proc_alive(pids[i]);
		if (left > 0)
			usleep(50000);
	} while (left > 0 && sw_mono_ns() < until);
	SW_CHECKF(left == 0, "%zu sandboxd or sandbox processes outlived sandboxd", left);
	/* and nothing alive names our state directory */
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
	static const struct sw_test_scenario scenarios[] = {
	    {"basic", scenario_basic},		 {"spec", scenario_spec},
	    {"cpuoff", scenario_cpuoff},	 {"disk", scenario_disk},
	    {"netfull", scenario_netfull},	 {"netfulloff", scenario_netfulloff},
	    {"redelivery", scenario_redelivery},
	    {"deadletter", scenario_deadletter}, {"egress", scenario_egress},
	    {"escape", scenario_escape},	 {"hostile", scenario_hostile},
	    {"kill9", scenario_kill9},		 {"kill9service", scenario_kill9service},
	};

	sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]))
	    ->fn();
	return 0;
}
