/*
 * bench-cli-agent: the overhead of sagewai-sandboxd's cli_agent mode around
 * the real Claude Code CLI, beside the same CLI with the same script run
 * directly in a raw bwrap sandbox, interleaved round by round in one run.
 * bench/cli_agent/run starts the harness (Kafka, PostgreSQL) and runs it.
 *
 * Both sides talk to one sagewai-llm-mock playing a script (write
 * index.html, write style.css, finish): the CLI really writes the small
 * site with its own tool. The mock logs each request with its arrival time
 * (t_us, CLOCK_REALTIME µs); every stamp below is CLOCK_REALTIME µs, the
 * events' header.time included, so they compare across processes.
 *
 *   ours  a cli_agent step (claude-code, network egress_only, the mock's
 *         host:port in egress_allow) dispatched on sagewai.steps.sandbox to
 *         sagewai-sandboxd, which seals the identity (this program plays
 *         the identity service, as tests/sandboxd/cliagent_test.c does),
 *         runs the CLI through its tool runner and the egress proxy, and
 *         pushes /workspace to a local git smart-HTTP server
 *         (tests/sandboxd/git_server.py) with GITHUB_TOKEN.
 *           start: step.dispatched produced -> the CLI's first model request
 *           end:   sandbox.exited (sandboxd saw the CLI exit) -> step.finished
 *                  (its header.time), the artifact's delivery included
 *           push:  the git push itself (push_us of sandboxd's "artifact
 *                  delivered" log line)
 *   raw   bwrap with the same namespaces, uid and variant binds (the
 *         claude-code variant root at /opt/sagewai/claude-code), a tmpfs
 *         /tmp with HOME on it, a host directory as /workspace, the same
 *         environment as the agent gets; the host network (no egress
 *         proxy: the CLI reaches the mock directly), no seccomp, cgroup or
 *         tool runner.
 *           start: fork of bwrap -> the CLI's first model request
 *           end:   bwrap's --json-status-fd "exit-code" (the CLI exited) ->
 *                  bwrap reaped
 *
 * Figures (JSON lines on stdout), p50 and p99 over the measured rounds:
 *   {"bench": "cli_agent", "figure": F, "ours": X, "raw": Y, "unit": "ms"}
 * start_to_first_request, exit_to_finished (raw: exit_to_reaped), push,
 * end_outside_push, cli_run (first request -> exit: the CLI's own run, the
 * proxy's cost per request shows here), added_ms_outside_push (per round:
 * (ours start - raw start) + (ours end - push - raw end); target <= 100 ms),
 * sandbox_only (ours: dispatch -> the CLI's exec plus end_outside_push;
 * raw: the same bwrap around /usr/bin/true, fork -> reaped) and
 * added_ms_outside_push_direct (their difference per round: the same
 * target without the CLI's own start, whose noise swamps the first on a
 * loaded machine)
 * and where ours spends its start and end (ours only: dispatch_to_started,
 * started_to_acquired, acquired_to_seal_requested (the agent's home made),
 * seal_round_trip (to the identity's answer), dispatch_to_exec (all of it
 * up to the CLI's exec: identity.injected), exec_to_first_request (the
 * CLI's own start, through the egress proxy), exit_to_pushing (the
 * snapshot, staging, the scan), pushed_to_finished). One line per round
 * and notes on stderr.
 *
 *   bench-cli-agent --work DIR [--rounds N] [--warmup W] [--variants DIR]
 *                   [--git-server PATH]
 * Needs SW_HARNESS_ENV (the harness's env file) and SW_BUILD_DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_sandbox.h"
#include "sw_test_svc.h"

#define PROMPT "Build a small static site: index.html and style.css."
#define PAGE "<!doctype html>\n<link rel=stylesheet href=style.css>\n<h1>Portfolio</h1>\n"
#define CSS "h1 { font-family: sans-serif; }\n"
#define ROUNDS_MAX 1000

static struct sw_test_stack stk; /* its dir: --work */
static char mock_log[600];
static char repo_url[256], mock_base[128], mock_allow[64];
static const char *variants_dir = SW_VARIANTS_DIR, *git_script = SW_GIT_SERVER;
static pid_t git_pid = -1, mock_pid = -1;
static struct sw_sandbox_variant *variant;
static char token[64], gh_token[64];
static long mock_off; /* of the mock's log: what earlier runs left */

/* the step waited for: when its step.finished was read */
static char cur_step[128];
static int64_t cur_finished_read_us;

/* The environment the agent gets beside the identity's (agent.c's claude-code
 * row, HOME and TMPDIR). */
static const char *const agent_env[] = {"HOME=/tmp/sagewai-home",
					"TMPDIR=/tmp",
					"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
					"CLAUDE_CODE_MAX_RETRIES=2",
					"CLAUDE_CODE_TMPDIR=/tmp",
					"IS_SANDBOX=1",
					"DISABLE_AUTOUPDATER=1",
					NULL};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("bench-cli-agent: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	sw_test_log_show();
	exit(1);
}

/* ---- the identity service we play (as cliagent_test.c) -------------------- */

static struct sw_test_idkey keys[3];

static void on_seen(const rd_kafka_message_t *m, json_t *e)
{
	json_t *h = json_object_get(e, "header");
	const char *type = json_string_value(json_object_get(h, "type"));
	const char *sid = json_string_value(json_object_get(h, "step_id"));

	(void)m;
	if (type == NULL || sid == NULL || strncmp(sid, stk.prefix, strlen(stk.prefix)) != 0)
		return;
	if (strcmp(type, "identity.seal_requested") == 0)
		sw_test_seal_answer(&stk, e, keys, sizeof(keys) / sizeof(keys[0]), NULL);
	else if (strcmp(type, "step.finished") == 0 && strcmp(sid, cur_step) == 0 &&
		 cur_finished_read_us == 0)
		cur_finished_read_us = sw_now_us();
}

/* ---- the helpers: git server, mock, sandboxd --------------------------------- */

static void git_start(void)
{
	char root[700];

	git_pid = sw_test_git_server(stk.dir, git_script, gh_token, root, sizeof(root), repo_url,
				     sizeof(repo_url));
}

static void mock_start(void)
{
	json_t *s = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s}]", "tool", "write", "path",
			      "index.html", "content", PAGE, "tool", "write", "path", "style.css",
			      "content", CSS, "text", "done");
	char *o = json_dumps(s, 0);
	int port;

	json_decref(s);
	if (o == NULL)
		die("out of memory");
	mock_pid = sw_test_llm_mock_start(stk.dir, o, token, &port);
	free(o);
	snprintf(mock_log, sizeof(mock_log), "%s/llm.log", stk.dir);
	snprintf(mock_base, sizeof(mock_base), "http://127.0.0.1:%d", port);
	snprintf(mock_allow, sizeof(mock_allow), "127.0.0.1:%d", port);
}

static void sbd_start(void)
{
	static char vd[700];

	snprintf(vd, sizeof(vd), "SAGEWAI_SANDBOX_VARIANTS_DIR=%s", variants_dir);
	stk.sbd_env[0] = "SAGEWAI_LOG_LEVEL=info";
	/* sandboxd's own defaults for these two */
	stk.sbd_env[1] = "SAGEWAI_KAFKA_CONSUMER_CONFIG";
	stk.sbd_env[2] = "SAGEWAI_SANDBOX_WARM";
	stk.sbd_env[3] = vd;
	stk.sbd_env[4] = "SAGEWAI_ARTIFACT_HTTP=allow";
	stk.sbd_env[5] = "SAGEWAI_ARTIFACT_PRIVATE=allow";
	stk.sbd_env[6] = "SAGEWAI_EGRESS_PRIVATE=allow";
	stk.sbd_env[7] = NULL;
	sw_test_stack_sbd_start(&stk);
}

static void stop(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	waitpid(*pid, NULL, 0);
	*pid = -1;
}

static void setup(void)
{
	static const char *const topics[] = {"sagewai.steps", "sagewai.sandbox",
					     "sagewai.identity", "sagewai.identity.sealed", NULL};
	char err[256];

	sw_test_stack_init(&stk, "bcli", NULL, topics, on_seen);
	sw_test_secret_new(token, sizeof(token), "swkey-", "-k9");
	sw_test_secret_new(gh_token, sizeof(gh_token), "swgit-", "-k9");
	if ((variant = sw_sandbox_variant_load(variants_dir, "claude-code", err, sizeof(err))) ==
	    NULL)
		die("variant: %s", err);
}

/* ---- the mock's log ------------------------------------------------------------ */

struct reqs {
	int n;
	int64_t first_us, last_us;
};

/* The scripted requests logged since the last call. */
static struct reqs mock_reqs(void)
{
	struct reqs r = {0};
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen(mock_log, "r");

	if (f == NULL || fseek(f, mock_off, SEEK_SET) != 0)
		die("%s: %s", mock_log, strerror(errno));
	while (getline(&line, &cap, f) > 0) {
		json_t *e = json_loads(line, 0, NULL);
		int64_t t = (int64_t)json_integer_value(json_object_get(e, "t_us"));

		if (e == NULL || t == 0)
			die("the mock's log: a line without t_us");
		if (r.n++ == 0)
			r.first_us = t;
		r.last_us = t;
		json_decref(e);
	}
	mock_off = ftell(f);
	free(line);
	fclose(f);
	return r;
}

/* ---- one round of ours ------------------------------------------------------ */

struct ours {
	double start, end, push, cli_run, to_exec_all;
	/* where it goes (ms) */
	double to_started, to_acquired, prepare, seal, to_exec, exec_to_req;
	double pack, art_queue, art_stage, art_scan, art_cleanup, to_finished, finished_read;
	int warm, requests, egress;
};

static int64_t ev_time(const struct sw_test_ev *e)
{
	return (int64_t)json_integer_value(
	    json_object_get(json_object_get(e->body, "header"), "time"));
}

static struct sw_test_ev *ev(const char *type, const char *step_id)
{
	return sw_test_evlog_wait(&stk.evl, type, step_id, 0, 60);
}

/* sandboxd's "artifact delivered" line of step_id: its fields, its time. */
static json_t *delivered_line(const char *step_id, int64_t *ts_us)
{
	for (int tries = 0; tries < 100; tries++) {
		char *line = NULL;
		size_t cap = 0;
		FILE *f = fopen(stk.sbd_log, "r");
		json_t *hit = NULL;

		if (f == NULL)
			die("%s: %s", stk.sbd_log, strerror(errno));
		while (hit == NULL && getline(&line, &cap, f) > 0) {
			json_t *e;

			if (strstr(line, "artifact delivered") == NULL ||
			    strstr(line, step_id) == NULL)
				continue;
			e = json_loads(line, 0, NULL);
			if (e != NULL &&
			    !strcmp(json_string_value(json_object_get(e, "step_id")) ?: "",
				    step_id))
				hit = e;
			else
				json_decref(e);
		}
		free(line);
		fclose(f);
		if (hit != NULL) {
			const char *ts = json_string_value(json_object_get(hit, "ts"));
			struct tm tm = {0};
			unsigned us = 0;
			char *rest;

			if (ts == NULL ||
			    (rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL ||
			    sscanf(rest, ".%6uZ", &us) != 1)
				die("sandboxd's log: a bad ts");
			*ts_us = (int64_t)timegm(&tm) * 1000000 + us;
			return hit;
		}
		sw_test_msleep(20);
	}
	die("no \"artifact delivered\" line for %s in sandboxd's log", step_id);
}

static double us_field(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	if (s == NULL)
		die("sandboxd's log: no %s", k);
	return strtod(s, NULL) / 1000.0;
}

static void ours_round(int i, struct ours *r)
{
	struct sw_test_dispatch d;
	struct sw_event_header h;
	struct sw_test_ev *st, *acq, *sreq, *sealed, *inj, *ex, *fin;
	struct reqs q;
	char err[256], *text, *id, branch[32];
	int64_t t0, dl_ts;
	json_t *spec, *o, *dl;

	memset(&d, 0, sizeof(d));
	snprintf(branch, sizeof(branch), "bench-%d", i);
	snprintf(d.run_id, sizeof(d.run_id), "%.20s-ours%d", stk.prefix, i);
	snprintf(d.step_id, sizeof(d.step_id), "%s/build/1", d.run_id);
	spec = json_pack("{s:s, s:i, s:s, s:{}, s:[s], s:i, s:s, s:s, s:[s], s:{s:s, s:s, s:s}}",
			 "workflow", "site", "workflow_version", 1, "uses", "", "with",
			 "run_modes", "cli_agent", "output_max", 1048576, "cli_agent",
			 "claude-code", "prompt", PROMPT, "egress_allow", mock_allow, "artifact",
			 "destination", "github", "repo", repo_url, "branch", branch);
	sw_event_header_init(&h, "step.dispatched", "bench-cli-agent");
	snprintf(h.tenant, sizeof(h.tenant), "%s", stk.tenant);
	snprintf(h.run_id, sizeof(h.run_id), "%s", d.run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%s", d.step_id);
	text = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	id = sw_test_identity_text(&stk, keys, sizeof(keys) / sizeof(keys[0]), "site");
	o = json_pack("{s:s, s:i, s:s, s:i, s:s, s:I, s:s}", "step", "build", "index", 0, "mode",
		      "cli_agent", "attempt", 1, "spec", text, "timeout_ms", (json_int_t)240000,
		      "identity", id);
	free(text);
	free(id);
	if (sw_event_encode(stk.reg, "step.dispatched", &h, o, &d.buf, &d.len, err, sizeof(err)) !=
	    0)
		die("%s", err);
	json_decref(o);
	snprintf(cur_step, sizeof(cur_step), "%s", d.step_id);
	cur_finished_read_us = 0;
	t0 = sw_now_us();
	sw_test_kafka_deliver(stk.producer, d.topic, d.run_id, d.buf, d.len);
	free(d.buf);

	fin = sw_test_evlog_finished(&stk.evl, d.step_id);
	if (strcmp(fin->status, "SUCCEEDED") != 0)
		die("round %d: the step %s: %s", i, fin->status, fin->error ? fin->error : "");
	st = ev("step.started", d.step_id);
	acq = ev("sandbox.acquired", d.step_id);
	sreq = ev("identity.seal_requested", d.step_id);
	sealed = ev("identity.sealed", d.step_id);
	inj = ev("identity.injected", d.step_id);
	ex = ev("sandbox.exited", d.step_id);
	(void)ev("artifact.pushed", d.step_id);
	(void)ev("sandbox.released", d.step_id);
	q = mock_reqs();
	if (q.n == 0 || q.first_us < t0)
		die("round %d: no model request of ours in the mock's log", i);
	dl = delivered_line(d.step_id, &dl_ts);

	r->requests = q.n;
	r->egress = (int)sw_test_evlog_count(&stk.evl, "sandbox.egress", d.step_id);
	r->warm = json_is_true(json_object_get(acq->body, "warm"));
	r->start = (double)(q.first_us - t0) / 1000.0;
	r->end = (double)(ev_time(fin) - ev_time(ex)) / 1000.0;
	r->push = us_field(dl, "push_us");
	r->cli_run = (double)(ev_time(ex) - q.first_us) / 1000.0;
	r->to_started = (double)(ev_time(st) - t0) / 1000.0;
	r->to_acquired = (double)(ev_time(acq) - ev_time(st)) / 1000.0;
	r->prepare = (double)(ev_time(sreq) - ev_time(acq)) / 1000.0;
	r->seal = (double)(ev_time(sealed) - ev_time(sreq)) / 1000.0;
	r->to_exec = (double)(ev_time(inj) - ev_time(sealed)) / 1000.0;
	r->exec_to_req = (double)(q.first_us - ev_time(inj)) / 1000.0;
	r->to_exec_all = (double)(ev_time(inj) - t0) / 1000.0;
	r->art_queue = us_field(dl, "queue_us");
	r->art_stage = us_field(dl, "stage_us");
	r->art_scan = us_field(dl, "scan_us");
	r->art_cleanup = us_field(dl, "cleanup_us");
	/* exited -> queued for delivery: the snapshot (tar of /workspace) */
	r->pack =
	    (double)(dl_ts - (int64_t)(us_field(dl, "total_us") * 1000.0) - ev_time(ex)) / 1000.0;
	r->to_finished = (double)(ev_time(fin) - dl_ts) / 1000.0;
	r->finished_read = (double)(cur_finished_read_us - ev_time(fin)) / 1000.0;
	json_decref(dl);
}

/* ---- one round of raw ------------------------------------------------------- */

struct raw {
	double start, end, cli_run, bwrap_true;
	int requests;
};

#define ARGS_MAX 256

static void raw_round(int i, struct raw *r)
{
	char *v[ARGS_MAX], ws[700], outp[700], path[1024], envs[16][1100];
	char links[32][PATH_MAX], buf[512];
	size_t n = 0, nl = 0, ne = 0, got = 0, tail;
	int pfd[2], status, exited = 0;
	int64_t t0, t_exit = 0, t_reaped, t0_true;
	struct reqs q;
	pid_t pid;

	snprintf(ws, sizeof(ws), "%s/raw-ws-%d", stk.dir, i);
	snprintf(outp, sizeof(outp), "%s/raw-out-%d.log", stk.dir, i);
	sw_test_sh("rm -rf %s && mkdir -m 777 %s", ws, ws);
	if (sw_sandbox_variant_path(variant, "/usr/local/bin:/usr/bin:/bin", path, sizeof(path)) !=
	    0)
		die("PATH");
#define A(x) (v[n++] = (char *)(x))
	A("/usr/bin/bwrap");
	A("--unshare-user");
	A("--uid");
	A("65534");
	A("--gid");
	A("65534");
	A("--disable-userns");
	A("--unshare-pid");
	A("--as-pid-1");
	A("--unshare-ipc");
	A("--unshare-uts");
	A("--unshare-cgroup-try");
	A("--hostname");
	A("sandbox");
	A("--die-with-parent");
	A("--new-session");
	A("--cap-drop");
	A("ALL");
	for (size_t k = 0; k < variant->n_ro_binds; k++) {
		const struct sw_sandbox_bind *b = &variant->ro_binds[k];
		int same = strcmp(b->at, b->path) == 0;
		struct stat sb;
		ssize_t len;

		if ((same ? lstat(b->path, &sb) : stat(b->path, &sb)) != 0)
			continue;
		if (same && S_ISLNK(sb.st_mode) && nl < 32 &&
		    (len = readlink(b->path, links[nl], PATH_MAX - 1)) > 0) {
			links[nl][len] = '\0';
			A("--symlink");
			A(links[nl++]);
			A(b->path);
		} else {
			A("--ro-bind");
			A(b->path);
			A(b->at);
		}
	}
	A("--proc");
	A("/proc");
	A("--dev");
	A("/dev");
	A("--tmpfs");
	A("/tmp");
	A("--dir");
	A("/tmp/sagewai-home");
	A("--bind");
	A(ws);
	A("/workspace");
	A("--remount-ro");
	A("/");
	A("--chdir");
	A("/workspace");
	A("--clearenv");
	snprintf(envs[ne++], sizeof(envs[0]), "PATH=%s", path);
	for (size_t k = 0; agent_env[k] != NULL; k++)
		snprintf(envs[ne++], sizeof(envs[0]), "%s", agent_env[k]);
	snprintf(envs[ne++], sizeof(envs[0]), "ANTHROPIC_API_KEY=%s", token);
	snprintf(envs[ne++], sizeof(envs[0]), "ANTHROPIC_BASE_URL=%s", mock_base);
	for (size_t k = 0; k < ne; k++) {
		char *eq = strchr(envs[k], '=');

		*eq = '\0';
		A("--setenv");
		A(envs[k]);
		A(eq + 1);
	}
	tail = n;
	A("--json-status-fd");
	A("3");
	A("--");
	A("claude");
	A("-p");
	A(PROMPT);
	A("--dangerously-skip-permissions");
	v[n] = NULL;
#undef A

	if (pipe2(pfd, O_CLOEXEC) != 0)
		die("pipe: %s", strerror(errno));
	t0 = sw_now_us();
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(pfd[1], 3); /* dup2 clears CLOEXEC */
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		fd = open("/dev/null", O_RDONLY);
		dup2(fd, 0);
		execv(v[0], v);
		_exit(127);
	}
	close(pfd[1]);
	/* {"child-pid": N} then, when the CLI exits, {"exit-code": N} */
	for (;;) {
		ssize_t k = read(pfd[0], buf + got, sizeof(buf) - 1 - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
		buf[got] = '\0';
		if (!exited && strstr(buf, "exit-code") != NULL) {
			t_exit = sw_now_us();
			exited = 1;
		}
		if (got >= sizeof(buf) - 1)
			got = 0;
	}
	close(pfd[0]);
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid: %s", strerror(errno));
	t_reaped = sw_now_us();
	if (!exited || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("raw round %d: the CLI failed (status %d; %s)", i, status, outp);
	/* the same sandbox around /usr/bin/true: what raw bwrap itself costs */
	v[tail] = "--";
	v[tail + 1] = "/usr/bin/true";
	v[tail + 2] = NULL;
	t0_true = sw_now_us();
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		execv(v[0], v);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("raw round %d: bwrap ... /usr/bin/true failed (status %d)", i, status);
	r->bwrap_true = (double)(sw_now_us() - t0_true) / 1000.0;
	q = mock_reqs();
	if (q.n == 0 || q.first_us < t0)
		die("raw round %d: no model request in the mock's log (%s)", i, outp);
	snprintf(path, sizeof(path), "%s/index.html", ws);
	if (access(path, R_OK) != 0)
		die("raw round %d: the CLI wrote no index.html (%s)", i, outp);
	r->requests = q.n;
	r->start = (double)(q.first_us - t0) / 1000.0;
	r->end = (double)(t_reaped - t_exit) / 1000.0;
	r->cli_run = (double)(t_exit - q.first_us) / 1000.0;
	sw_test_sh("rm -rf %s", ws);
}

/* ---- figures ------------------------------------------------------------------ */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The p-th percentile (nearest rank) of n values (copied). */
static double pct(const double *v, int n, int p)
{
	double s[ROUNDS_MAX];
	int k = (n * p + 99) / 100;

	memcpy(s, v, (size_t)n * sizeof(double));
	qsort(s, (size_t)n, sizeof(double), cmp_d);
	return s[k < 1 ? 0 : k > n ? n - 1 : k - 1];
}

static void figure(const char *name, const double *ours, const double *raw, int n)
{
	for (int p = 50; p <= 99; p += 49) {
		printf("{\"bench\": \"cli_agent\", \"figure\": \"%s_p%d\", \"ours\": %.2f, "
		       "\"raw\": ",
		       name, p, pct(ours, n, p));
		if (raw != NULL)
			printf("%.2f", pct(raw, n, p));
		else
			printf("null");
		printf(", \"unit\": \"ms\"}\n");
	}
}

int main(int argc, char **argv)
{
	static struct ours o[ROUNDS_MAX];
	static struct raw w[ROUNDS_MAX];
	static double a[20][ROUNDS_MAX];
	int rounds = 10, warmup = 1, n;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--work") && i + 1 < argc)
			snprintf(stk.dir, sizeof(stk.dir), "%s", argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
			warmup = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--variants") && i + 1 < argc)
			variants_dir = argv[++i];
		else if (!strcmp(argv[i], "--git-server") && i + 1 < argc)
			git_script = argv[++i];
		else {
			fprintf(stderr, "usage: bench-cli-agent --work DIR [--rounds N] "
					"[--warmup W] [--variants DIR] [--git-server PATH]\n");
			return 2;
		}
	}
	if (stk.dir[0] != '/' || rounds < 1 || rounds > ROUNDS_MAX || warmup < 0 || warmup > 100)
		die("--work DIR (absolute), --rounds 1..%d, --warmup 0..100", ROUNDS_MAX);
	signal(SIGPIPE, SIG_IGN);
	setup();
	keys[0] = (struct sw_test_idkey){"ANTHROPIC_API_KEY", "workflow", "llm", 2, token};
	keys[1] = (struct sw_test_idkey){"GITHUB_TOKEN", "workflow", "github", 1, gh_token};
	git_start();
	mock_start();
	keys[2] = (struct sw_test_idkey){"ANTHROPIC_BASE_URL", "workflow", NULL, 0, mock_base};
	sbd_start();
	fprintf(stderr,
		"bench-cli-agent: %d warm-up and %d measured rounds, each ours and raw "
		"(alternating which goes first)\n",
		warmup, rounds);
	for (int i = 0; i < warmup + rounds; i++) {
		struct ours *po = &o[i < warmup ? 0 : i - warmup];
		struct raw *pw = &w[i < warmup ? 0 : i - warmup];

		if (i % 2 == 0) {
			ours_round(i, po);
			sw_test_msleep(300);
			raw_round(i, pw);
		} else {
			raw_round(i, pw);
			sw_test_msleep(300);
			ours_round(i, po);
		}
		sw_test_msleep(300);
		fprintf(stderr,
			"round %d%s: ours start %.1f end %.1f (push %.1f) run %.1f | raw start "
			"%.1f end %.1f run %.1f, bwrap true %.1f | ours: dispatch->started %.1f "
			"->acquired %.1f (warm %d) prepare %.1f seal %.1f ->exec %.1f "
			"exec->request %.1f; pack "
			"%.1f queue %.1f stage %.1f scan %.1f cleanup %.1f ->finished %.1f, "
			"read %.1f later; requests %d/%d, egress decisions %d\n",
			i, i < warmup ? " (warm-up)" : "", po->start, po->end, po->push,
			po->cli_run, pw->start, pw->end, pw->cli_run, pw->bwrap_true,
			po->to_started, po->to_acquired, po->warm, po->prepare, po->seal,
			po->to_exec, po->exec_to_req, po->pack, po->art_queue, po->art_stage,
			po->art_scan, po->art_cleanup, po->to_finished, po->finished_read,
			po->requests, pw->requests, po->egress);
	}
	n = rounds;
	for (int i = 0; i < n; i++) {
		a[0][i] = o[i].start;
		a[1][i] = w[i].start;
		a[2][i] = o[i].end;
		a[3][i] = w[i].end;
		a[4][i] = o[i].push;
		a[5][i] = o[i].end - o[i].push;
		a[6][i] = o[i].cli_run;
		a[7][i] = w[i].cli_run;
		a[8][i] = (o[i].start - w[i].start) + (o[i].end - o[i].push - w[i].end);
		a[9][i] = o[i].to_started;
		a[10][i] = o[i].to_acquired;
		a[11][i] = o[i].prepare;
		a[12][i] = o[i].seal;
		a[13][i] = o[i].exec_to_req;
		a[14][i] = o[i].pack + o[i].art_queue + o[i].art_stage + o[i].art_scan;
		a[15][i] = o[i].art_cleanup + o[i].to_finished;
		a[16][i] = o[i].to_exec_all;
		a[17][i] = w[i].bwrap_true;
		a[18][i] = o[i].to_exec_all + (o[i].end - o[i].push);
		a[19][i] = a[18][i] - w[i].bwrap_true;
	}
	figure("start_to_first_request", a[0], a[1], n);
	figure("exit_to_finished", a[2], a[3], n); /* raw: exit -> reaped */
	figure("push", a[4], NULL, n);
	figure("end_outside_push", a[5], a[3], n);
	figure("cli_run", a[6], a[7], n);
	figure("added_ms_outside_push", a[8], NULL, n);
	/* the same without the CLI's own start in it (its noise swamps the
	 * above on a loaded machine): ours up to the exec and after the exit,
	 * outside the push, against a raw bwrap around /usr/bin/true */
	figure("sandbox_only", a[18], a[17], n);
	figure("added_ms_outside_push_direct", a[19], NULL, n);
	figure("ours_dispatch_to_started", a[9], NULL, n);
	figure("ours_started_to_acquired", a[10], NULL, n);
	figure("ours_acquired_to_seal_requested", a[11], NULL, n);
	figure("ours_seal_round_trip", a[12], NULL, n);
	figure("ours_dispatch_to_exec", a[16], NULL, n);
	figure("ours_exec_to_first_request", a[13], NULL, n);
	figure("ours_exit_to_pushing", a[14], NULL, n);
	figure("ours_pushed_to_finished", a[15], NULL, n);
	fflush(stdout);
	stop(&stk.sbd_pid);
	stop(&mock_pid);
	stop(&git_pid);
	sw_test_evlog_close(&stk.evl);
	rd_kafka_destroy(stk.producer);
	sw_sandbox_variant_free(variant);
	return 0;
}
