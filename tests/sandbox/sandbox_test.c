/*
 * sandbox_test: real bubblewrap sandboxes with the real tool runner.
 * Needs bwrap and root (or unprivileged user namespaces); nothing else.
 *
 *   sandbox_test CASE
 *
 * Behaviour: python, env, workspace, exec_errors, output, kill, egress_hook.
 * The escape suite (each attempt refused, the host unharmed, and where it
 * can be, a control showing the attempt would have worked without the
 * wall): files, proc, write, net, forkbomb, membomb, syscalls, timeout,
 * parent_kill, hostile.
 * Per-sandbox cgroups: cgroup_memory, cgroup_pids, cgroup_cpu,
 * cgroup_cleanup; they exit 77 (skipped) with a note when the host gives
 * us no cgroup (cgroup_cpu: no cpu controller).
 *
 * The shared backend runs with cgroup "auto", as sandboxd does.
 */
#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sw_sandbox.h"
#include "sw_test.h"

#define MAX_OUT (4u << 20)

static struct sw_sandbox_variant *variant;
static struct sw_sandbox_backend *backend;
static char workspace[] = "/tmp/sw-sbx-test-XXXXXX";
static const char *const base_env[] = {"PATH=/usr/bin:/bin", "HOME=/workspace", NULL};
static int skipped; /* the case could not run here: exit 77 */

static void setup(void)
{
	struct sw_sandbox_bwrap_config cfg = {.runner_path = SW_TOOLRUNNER, .cgroup = "auto"};
	char err[512];

	SW_CHECKF((variant = sw_sandbox_variant_load(SW_VARIANTS_DIR, "base", err, sizeof(err))) !=
		      NULL,
		  "%s", err);
	SW_CHECKF((backend = sw_sandbox_bwrap_new(&cfg, err, sizeof(err))) != NULL, "%s", err);
	SW_CHECK(mkdtemp(workspace) != NULL);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void teardown(void)
{
	nftw(workspace, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	sw_sandbox_backend_free(backend);
	sw_sandbox_variant_free(variant);
}

static struct sw_sandbox *make(struct sw_sandbox_backend *be, enum sw_sandbox_net net,
			       const struct sw_sandbox_limits *lim, const char *const *env)
{
	struct sw_sandbox_spec spec = {
	    .variant = variant,
	    .net = net,
	    .env = env ? env : base_env,
	    .workspace = workspace,
	};
	struct sw_sandbox *sb;
	char err[512];

	if (lim != NULL)
		spec.limits = *lim;
	SW_CHECKF((sb = sw_sandbox_create(be, &spec, err, sizeof(err))) != NULL, "%s", err);
	return sb;
}

static int full_available(void);

/* A sandbox whose /workspace is its own tmpfs of lim's disk_bytes. */
static struct sw_sandbox *make_tmpfs(enum sw_sandbox_net net, const struct sw_sandbox_limits *lim)
{
	struct sw_sandbox_spec spec = {.variant = variant, .net = net, .env = base_env};
	struct sw_sandbox *sb;
	char err[512];

	if (lim != NULL)
		spec.limits = *lim;
	SW_CHECKF((sb = sw_sandbox_create(backend, &spec, err, sizeof(err))) != NULL, "%s", err);
	return sb;
}

static struct sw_sandbox *sandbox(void)
{
	return make(backend, SW_SANDBOX_NET_NONE, NULL, NULL);
}

/* Run argv to its end (any status); the sandbox itself must not fail. */
static void run_argv(struct sw_sandbox *sb, const char *const *argv, uint32_t timeout_ms,
		     const char *in, struct sw_sandbox_result *res)
{
	struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = timeout_ms};
	char err[512];

	if (in != NULL) {
		ex.stdin_data = in;
		ex.stdin_len = strlen(in);
	}
	SW_CHECKF(sw_sandbox_run(sb, &ex, MAX_OUT, res, err, sizeof(err)) == 0, "%s", err);
}

static void sh(struct sw_sandbox *sb, const char *script, uint32_t timeout_ms,
	       struct sw_sandbox_result *res)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};

	run_argv(sb, argv, timeout_ms, NULL, res);
}

static void py(struct sw_sandbox *sb, const char *script, uint32_t timeout_ms,
	       struct sw_sandbox_result *res)
{
	const char *argv[] = {"python3", "-c", script, NULL};

	run_argv(sb, argv, timeout_ms, NULL, res);
}

static int nproc_of(struct sw_sandbox *sb)
{
	struct sw_sandbox_stats st;

	SW_CHECK(sw_sandbox_stats(sb, &st) == 0);
	return st.nproc;
}

/* Wait (bounded) until only the runner is left in the sandbox. */
static int settles_to_runner(struct sw_sandbox *sb)
{
	for (int i = 0; i < 500; i++) {
		if (nproc_of(sb) == 1)
			return 1;
		usleep(10000);
	}
	return 0;
}

/* ---- behaviour -------------------------------------------------------------- */

static void t_python(void)
{
	static const char *const argv[] = {"python3", "-c",
					   "import sys\n"
					   "nums = [int(x) for x in sys.stdin.read().split()]\n"
					   "print('sum', sum(nums))\n"
					   "print('to stderr', file=sys.stderr)\n"
					   "sys.exit(7)\n",
					   NULL};
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;

	run_argv(sb, argv, 20000, "1 2 3 4\n", &r);
	SW_CHECKF(r.exit.status == 7 && r.exit.signal == 0, "status %d signal %d err %s",
		  r.exit.status, r.exit.signal, r.err);
	SW_CHECKF(strcmp(r.out, "sum 10\n") == 0, "out '%s'", r.out);
	SW_CHECK(strcmp(r.err, "to stderr\n") == 0);
	SW_CHECK(!r.exit.timed_out && !r.exit.killed && r.exit.error == NULL);
	sw_sandbox_result_free(&r);
	/* An exception is an ordinary failure with its traceback. */
	py(sb, "x = 1 // 0", 20000, &r);
	SW_CHECK(r.exit.status == 1 && strstr(r.err, "ZeroDivisionError") != NULL);
	sw_sandbox_result_free(&r);
	/* Some CPU work shows in the usage. */
	py(sb, "x = 0\nfor i in range(2000000): x += i\nprint(x)", 60000, &r);
	SW_CHECK(r.exit.status == 0 && strcmp(r.out, "1999999000000\n") == 0);
	SW_CHECK(r.exit.usage.utime_us > 0 && r.exit.usage.maxrss_kb > 0);
	sw_sandbox_result_free(&r);
	/* The whole sandbox's usage comes back at destroy: at least that. */
	{
		struct sw_sandbox_usage u;
		int64_t cmd_us = r.exit.usage.utime_us;

		sw_sandbox_destroy(sb, &u);
		SW_CHECKF(u.utime_us >= cmd_us && u.maxrss_kb > 0, "%lld us < %lld us",
			  (long long)u.utime_us, (long long)cmd_us);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted lines of s into v (at most n); returns the count. */
static size_t lines(char *s, char **v, size_t n)
{
	size_t k = 0;

	for (char *save, *t = strtok_r(s, "\n", &save); t && k < n;
	     t = strtok_r(NULL, "\n", &save))
		v[k++] = t;
	qsort(v, k, sizeof(char *), cmp_str);
	return k;
}

static void t_env(void)
{
	static const char *const env_argv[] = {"/usr/bin/env", NULL};
	static const char *const extra[] = {"EXTRA=1", "HOME=/tmp", NULL};
	struct sw_sandbox_exec ex = {.argv = env_argv, .env = extra};
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	char *v[16], err[512];
	size_t n;

	/* Sandboxed mode: PATH and HOME, nothing else. */
	run_argv(sb, env_argv, 10000, NULL, &r);
	SW_CHECK(r.exit.status == 0);
	n = lines(r.out, v, 16);
	SW_CHECKF(n == 2, "%zu variables", n);
	SW_CHECK(strcmp(v[0], "HOME=/workspace") == 0 && strcmp(v[1], "PATH=/usr/bin:/bin") == 0);
	sw_sandbox_result_free(&r);

	/* An exec's env adds to and overrides the sandbox's. */
	SW_CHECK(sw_sandbox_run(sb, &ex, MAX_OUT, &r, err, sizeof(err)) == 0);
	n = lines(r.out, v, 16);
	SW_CHECK(n == 3 && strcmp(v[0], "EXTRA=1") == 0 && strcmp(v[1], "HOME=/tmp") == 0);
	sw_sandbox_result_free(&r);

	/* An injected variable serves the next exec only. */
	SW_CHECK(
	    sw_sandbox_inject_env(sb, "SW_TOKEN", "v4lue with \"quotes\"", err, sizeof(err)) == 0);
	run_argv(sb, env_argv, 10000, NULL, &r);
	SW_CHECKF(strstr(r.out, "SW_TOKEN=v4lue with \"quotes\"\n") != NULL, "%s", r.out);
	sw_sandbox_result_free(&r);
	run_argv(sb, env_argv, 10000, NULL, &r);
	SW_CHECK(strstr(r.out, "SW_TOKEN") == NULL);
	sw_sandbox_result_free(&r);

	/* The runner's own environment and memory are not readable from a
	 * command (it is not dumpable). */
	py(sb,
	   "for p in ('/proc/1/environ', '/proc/1/mem', '/proc/1/fd/3'):\n"
	   "    try:\n"
	   "        open(p, 'rb').read(1); print('READ', p)\n"
	   "    except OSError as e:\n"
	   "        print('refused', p, e.errno)\n",
	   20000, &r);
	SW_CHECKF(strstr(r.out, "READ") == NULL && strstr(r.out, "refused /proc/1/environ"), "%s",
		  r.out);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);

	/* A hostname of the spec's own. */
	{
		struct sw_sandbox_spec spec = {.variant = variant,
					       .env = base_env,
					       .workspace = workspace,
					       .hostname = "tester"};

		SW_CHECKF((sb = sw_sandbox_create(backend, &spec, err, sizeof(err))) != NULL, "%s",
			  err);
		py(sb,
		   "import socket\nprint(socket.gethostname(), "
		   "'tester' in open('/etc/hosts').read())",
		   20000, &r);
		SW_CHECKF(strcmp(r.out, "tester True\n") == 0, "%s %s", r.out, r.err);
		sw_sandbox_result_free(&r);
		sw_sandbox_destroy(sb, NULL);
	}
}

static void t_workspace(void)
{
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	char path[256], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/from-host.txt", workspace);
	SW_CHECK((f = fopen(path, "w")) != NULL);
	fputs("host data\n", f);
	fclose(f);
	sh(sb,
	   "pwd; cat from-host.txt; echo sandbox data > made-inside.txt; echo tmp > /tmp/t && "
	   "cat /tmp/t",
	   10000, &r);
	SW_CHECKF(r.exit.status == 0, "%s", r.err);
	SW_CHECK(strcmp(r.out, "/workspace\nhost data\ntmp\n") == 0);
	sw_sandbox_result_free(&r);
	snprintf(path, sizeof(path), "%s/made-inside.txt", workspace);
	SW_CHECK((f = fopen(path, "r")) != NULL);
	SW_CHECK(fgets(buf, sizeof(buf), f) != NULL && strcmp(buf, "sandbox data\n") == 0);
	fclose(f);
	sw_sandbox_destroy(sb, NULL);

	/* /tmp is per sandbox; the workspace is what carries over. */
	sb = sandbox();
	sh(sb, "cat /tmp/t; cat made-inside.txt", 10000, &r);
	SW_CHECK(strcmp(r.out, "sandbox data\n") == 0 && strstr(r.err, "/tmp/t") != NULL);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
}

static void t_exec_errors(void)
{
	static const char *const nope[] = {"no-such-command-xyz", NULL};
	static const char *const ok[] = {"true", NULL};
	struct sw_sandbox_exec ex = {.argv = ok, .cwd = "/no/such/dir"};
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	char err[512];

	run_argv(sb, nope, 10000, NULL, &r);
	SW_CHECK(r.exit.status == 127);
	SW_CHECKF(r.exit.error && strstr(r.exit.error, "No such file"), "%s",
		  r.exit.error ? r.exit.error : "(none)");
	sw_sandbox_result_free(&r);
	SW_CHECK(sw_sandbox_run(sb, &ex, MAX_OUT, &r, err, sizeof(err)) == 0);
	SW_CHECK(r.exit.status == 127 && r.exit.error && strstr(r.exit.error, "chdir"));
	sw_sandbox_result_free(&r);
	/* Bad requests are refused host-side and the sandbox carries on. */
	ex.argv = (const char *const[]){NULL};
	SW_CHECK(sw_sandbox_run(sb, &ex, MAX_OUT, &r, err, sizeof(err)) == -1);
	SW_CHECK(!sw_sandbox_dead(sb));
	run_argv(sb, ok, 10000, NULL, &r);
	SW_CHECK(r.exit.status == 0 && r.exit.error == NULL);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
}

static void t_output(void)
{
	static const char *const big[] = {
	    "/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; echo e >&2", NULL};
	struct sw_sandbox_exec ex = {.argv = big};
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	char err[512];
	size_t i;

	run_argv(sb, big, 30000, NULL, &r);
	SW_CHECK(r.exit.status == 0 && r.out_len == 3000000 && !r.out_truncated);
	for (i = 0; i < r.out_len && r.out[i] == 'a'; i++)
		;
	SW_CHECK(i == 3000000 && strcmp(r.err, "e\n") == 0);
	sw_sandbox_result_free(&r);
	/* The host keeps at most what it asked for. */
	SW_CHECK(sw_sandbox_run(sb, &ex, 1000, &r, err, sizeof(err)) == 0);
	SW_CHECK(r.out_len == 1000 && r.out_truncated && r.exit.status == 0);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
}

struct exit_wait {
	bool done;
	struct sw_sandbox_exit ex;
};

static void on_exit_cb(void *arg, const struct sw_sandbox_exit *ex)
{
	struct exit_wait *w = arg;

	w->done = true;
	w->ex = *ex;
}

/* Drive the non-blocking API by hand until EXIT. */
static void pump_until_exit(struct sw_sandbox *sb, struct exit_wait *w, int max_ms)
{
	struct sw_sandbox_events ev = {.on_exit = on_exit_cb};

	for (int waited = 0; !w->done && waited < max_ms; waited += 10) {
		struct pollfd pfd = {.fd = sw_sandbox_fd(sb), .events = POLLIN};

		if (sw_sandbox_want_write(sb))
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 10) > 0) {
			if (pfd.revents & POLLOUT)
				SW_CHECK(sw_sandbox_flush(sb) == 0);
			if (pfd.revents & POLLIN)
				SW_CHECKF(sw_sandbox_read(sb, &ev, w) == 0, "%s",
					  sw_sandbox_error(sb));
		}
	}
	SW_CHECK(w->done);
}

static void t_kill(void)
{
	static const char *const argv[] = {"sleep", "1000", NULL};
	struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = 600000};
	struct exit_wait w = {0};
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	char err[512];

	SW_CHECK(sw_sandbox_exec_start(sb, &ex, err, sizeof(err)) == 0);
	SW_CHECK(sw_sandbox_flush(sb) == 0);
	/* Until sleep runs, the runner alone is there. */
	for (int i = 0; i < 500 && nproc_of(sb) < 2; i++)
		usleep(10000);
	SW_CHECK(nproc_of(sb) == 2);
	SW_CHECK(sw_sandbox_exec_kill(sb) == 0);
	pump_until_exit(sb, &w, 20000);
	SW_CHECK(w.ex.killed && !w.ex.timed_out && w.ex.signal == SIGKILL && w.ex.status == -1);
	SW_CHECK(settles_to_runner(sb));
	sh(sb, "echo still here", 10000, &r);
	SW_CHECK(strcmp(r.out, "still here\n") == 0);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
}

/* ---- credential requests from inside (cli_agent_jit's runner side) -------- */

struct cbuf {
	char *p;
	size_t len;
};

static void cbuf_add(struct cbuf *b, const void *p, size_t n)
{
	SW_CHECK((b->p = realloc(b->p, b->len + n + 1)) != NULL);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

struct cred_ctx {
	struct sw_sandbox *sb;
	int requests;
	char names[4][64];
	char requester[128];
	struct exit_wait w;
	struct cbuf out, err;
};

/* The host answers: GRANTED_KEY gets a value, DENIED_KEY a denial, SLOW
 * nothing. */
static void cred_cb(void *arg, const char *json, size_t len)
{
	struct cred_ctx *c = arg;
	json_t *j = json_loadb(json, len, 0, NULL);
	const char *name = json_string_value(json_object_get(j, "name"));
	uint32_t id = (uint32_t)json_integer_value(json_object_get(j, "id"));
	char err[200];

	SW_CHECK(j != NULL && name != NULL && id > 0);
	if (c->requests < 4)
		snprintf(c->names[c->requests], sizeof(c->names[0]), "%s", name);
	c->requests++;
	snprintf(c->requester, sizeof(c->requester), "%s",
		 json_string_value(json_object_get(j, "requester")));
	if (strcmp(name, "GRANTED_KEY") == 0)
		SW_CHECK(sw_sandbox_cred_answer(c->sb, id, 0, "", name, "granted-value-42", err,
						sizeof(err)) == 0);
	else if (strcmp(name, "DENIED_KEY") == 0)
		SW_CHECK(sw_sandbox_cred_answer(c->sb, id, 1, "denied", "", "denied: no rule", err,
						sizeof(err)) == 0);
	json_decref(j);
}

static void cred_out(void *arg, int stream, const uint8_t *buf, size_t len)
{
	struct cred_ctx *c = arg;

	cbuf_add(stream == 1 ? &c->out : &c->err, buf, len);
}

static void cred_exit(void *arg, const struct sw_sandbox_exit *ex)
{
	struct cred_ctx *c = arg;

	c->w.done = true;
	c->w.ex = *ex;
}

/* Run script with the credential callbacks until it exits. */
static void cred_run(struct cred_ctx *c, const char *script)
{
	static const struct sw_sandbox_events ev = {
	    .on_output = cred_out, .on_exit = cred_exit, .on_cred_request = cred_cb};
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = 30000};
	char err[512];

	memset(&c->w, 0, sizeof(c->w));
	free(c->out.p);
	free(c->err.p);
	memset(&c->out, 0, sizeof(c->out));
	memset(&c->err, 0, sizeof(c->err));
	SW_CHECK(sw_sandbox_exec_start(c->sb, &ex, err, sizeof(err)) == 0);
	for (int waited = 0; !c->w.done && waited < 30000; waited += 10) {
		struct pollfd pfd = {.fd = sw_sandbox_fd(c->sb), .events = POLLIN};

		if (sw_sandbox_want_write(c->sb))
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 10) > 0) {
			if (pfd.revents & POLLOUT)
				SW_CHECK(sw_sandbox_flush(c->sb) == 0);
			if (pfd.revents & POLLIN)
				SW_CHECKF(sw_sandbox_read(c->sb, &ev, c) == 0, "%s",
					  sw_sandbox_error(c->sb));
		}
	}
	SW_CHECK(c->w.done);
}

static void t_cred(void)
{
	struct cred_ctx c = {0};

	c.sb = sandbox();
	/* granted: the client prints the value; the command's own env is as it was */
	cred_run(&c, "v=$(/.sagewai/bin/sagewai-cred request GRANTED_KEY --scope s --reason r); echo \"rc=$? "
		     "v=$v own=${GRANTED_KEY:-unset}\"");
	SW_CHECKF(c.out.p && strcmp(c.out.p, "rc=0 v=granted-value-42 own=unset\n") == 0, "%s",
		  c.out.p ? c.out.p : "");
	SW_CHECK(c.requests == 1 && strcmp(c.names[0], "GRANTED_KEY") == 0);
	SW_CHECKF(strncmp(c.requester, "sagewai-cred (pid ", 18) == 0, "%s", c.requester);
	/* a later command the runner starts has it in its environment */
	cred_run(&c, "echo \"later=$GRANTED_KEY\"");
	SW_CHECKF(c.out.p && strcmp(c.out.p, "later=granted-value-42\n") == 0, "%s",
		  c.out.p ? c.out.p : "");
	/* denied: the sentence on stderr, exit 2 */
	cred_run(&c, "/.sagewai/bin/sagewai-cred request DENIED_KEY --scope s --reason r; echo \"rc=$?\"");
	SW_CHECKF(c.out.p && strcmp(c.out.p, "rc=2\n") == 0, "%s", c.out.p ? c.out.p : "");
	SW_CHECKF(c.err.p && strstr(c.err.p, "refused (denied): denied: no rule"), "%s",
		  c.err.p ? c.err.p : "");
	/* usage errors never reach the host: exit 1 */
	cred_run(&c, "/.sagewai/bin/sagewai-cred request lower --scope s --reason r; echo \"rc=$?\";"
		     "/.sagewai/bin/sagewai-cred request X --scope s; echo \"rc=$?\";"
		     "/.sagewai/bin/sagewai-cred request X --scope s --reason r --timeout 0; echo \"rc=$?\"");
	SW_CHECKF(c.out.p && strcmp(c.out.p, "rc=1\nrc=1\nrc=1\n") == 0, "%s",
		  c.out.p ? c.out.p : "");
	SW_CHECK(c.requests == 2);
	/* nobody answers: the runner's own deadline is the request's + slack;
	 * the client gives up at its own; a killed client is forgotten */
	cred_run(&c, "timeout -s KILL 1 /.sagewai/bin/sagewai-cred request SLOW --scope s --reason r; "
		     "echo \"rc=$?\"; echo \"later=$GRANTED_KEY\"");
	SW_CHECKF(c.out.p && strcmp(c.out.p, "rc=137\nlater=granted-value-42\n") == 0, "%s",
		  c.out.p ? c.out.p : "");
	free(c.out.p);
	free(c.err.p);
	sw_sandbox_destroy(c.sb, NULL);
}

/* ---- egress hook: how the proxy will attach --------------------------------- */

struct hook_ctx {
	int listen_fd; /* created inside the sandbox's network namespace */
	int port;
	int calls;
};

/* Put a TCP listener on 127.0.0.1 inside the sandbox's namespace, as the
 * egress proxy will, then return this thread to ours. */
static int egress_hook(void *arg, int netns_fd, pid_t pid, char *errstr, size_t errlen)
{
	struct hook_ctx *c = arg;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), rc = -1;

	c->calls++;
	if (self < 0 || pid <= 1 || setns(netns_fd, CLONE_NEWNET) != 0) {
		snprintf(errstr, errlen, "setns: %s", strerror(errno));
		goto out;
	}
	c->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->listen_fd >= 0 && sw_sandbox_bind_loopback(c->listen_fd, 0, 2000) == 0 &&
	    listen(c->listen_fd, 4) == 0 &&
	    getsockname(c->listen_fd, (struct sockaddr *)&a, &al) == 0) {
		c->port = ntohs(a.sin_port);
		rc = 0;
	} else {
		snprintf(errstr, errlen, "listen in sandbox: %s", strerror(errno));
	}
	if (setns(self, CLONE_NEWNET) != 0)
		abort(); /* this thread would be stranded in the sandbox */
out:
	if (self >= 0)
		close(self);
	return rc;
}

static int host_listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	SW_CHECK(fd >= 0);
	SW_CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 4) == 0);
	SW_CHECK(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static const char *connect_py =
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.settimeout(5)\n"
    "try:\n"
    "    s.connect(('127.0.0.1', %d)); s.sendall(b'hello'); s.close()\n"
    "    print('connected')\n"
    "except OSError as e:\n"
    "    print('refused', e.errno)\n";

static void t_egress_hook(void)
{
	struct hook_ctx c = {.listen_fd = -1};
	struct sw_sandbox_spec spec = {
	    .variant = variant,
	    .net = SW_SANDBOX_NET_EGRESS_ONLY,
	    .env = base_env,
	    .workspace = workspace,
	    .egress_hook = egress_hook,
	    .egress_arg = &c,
	};
	struct sockaddr_un ua = {.sun_family = AF_UNIX};
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;
	char script[1024], err[512], buf[16] = "", sockdir[] = "/tmp/sw-egress-XXXXXX";
	int hport, hfd = host_listener(&hport), ufd, conn;

	/* The proxy's unix socket, bound into the sandbox. */
	SW_CHECK(mkdtemp(sockdir) != NULL && chmod(sockdir, 0755) == 0);
	snprintf(ua.sun_path, sizeof(ua.sun_path), "%s/egress.sock", sockdir);
	SW_CHECK((ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	SW_CHECK(bind(ufd, (struct sockaddr *)&ua, sizeof(ua)) == 0 && listen(ufd, 4) == 0);
	SW_CHECK(chmod(ua.sun_path, 0666) == 0);
	spec.egress_socket = ua.sun_path;

	SW_CHECKF((sb = sw_sandbox_create(backend, &spec, err, sizeof(err))) != NULL, "%s", err);
	SW_CHECK(c.calls == 1 && c.listen_fd >= 0);
	/* Through the hook's listener: reachable. */
	snprintf(script, sizeof(script), connect_py, c.port);
	py(sb, script, 20000, &r);
	SW_CHECKF(strcmp(r.out, "connected\n") == 0, "%s %s", r.out, r.err);
	sw_sandbox_result_free(&r);
	SW_CHECK((conn = accept(c.listen_fd, NULL, NULL)) >= 0);
	SW_CHECK(read(conn, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0);
	close(conn);
	/* The host's loopback: not reachable. */
	snprintf(script, sizeof(script), connect_py, hport);
	py(sb, script, 20000, &r);
	SW_CHECKF(strncmp(r.out, "refused", 7) == 0, "%s", r.out);
	sw_sandbox_result_free(&r);
	SW_CHECK(accept(hfd, NULL, NULL) < 0 && errno == EAGAIN);
	/* The bound proxy socket: reachable, read-only mount or not. */
	py(sb,
	   "import socket\n"
	   "s = socket.socket(socket.AF_UNIX)\n"
	   "s.connect('" SW_SANDBOX_EGRESS_SOCKET "'); s.sendall(b'proxy'); print('ok')\n",
	   20000, &r);
	SW_CHECKF(strcmp(r.out, "ok\n") == 0, "%s", r.err);
	sw_sandbox_result_free(&r);
	SW_CHECK((conn = accept(ufd, NULL, NULL)) >= 0);
	SW_CHECK(read(conn, buf, 5) == 5 && memcmp(buf, "proxy", 5) == 0);
	close(conn);
	sw_sandbox_destroy(sb, NULL);
	close(c.listen_fd);
	close(hfd);
	close(ufd);
	unlink(ua.sun_path);
	rmdir(sockdir);
}

/* ---- the escape suite ----------------------------------------------------------- */

static void t_files(void)
{
	char secret[] = "/tmp/sw-host-secret-XXXXXX", script[2048];
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	int fd = mkstemp(secret);

	SW_CHECK(fd >= 0 && write(fd, "s3cret", 6) == 6);
	close(fd);
	/* Control: the host can read all of these. */
	SW_CHECK(access("/etc/shadow", R_OK) == 0 && access(secret, R_OK) == 0);
	snprintf(script, sizeof(script),
		 "import os\n"
		 "for p in ('/etc/shadow', '/etc/gshadow', '/root', '/home', '/etc/ssh', '%s',\n"
		 "          '/etc/sagewai', '/var/lib', '/run', '/sys/kernel', '/boot'):\n"
		 "    try:\n"
		 "        if os.path.isdir(p): os.listdir(p)\n"
		 "        else: open(p, 'rb').read()\n"
		 "        print('READ', p)\n"
		 "    except OSError as e:\n"
		 "        print('refused', p)\n"
		 "pw = open('/etc/passwd').read()\n"
		 "print('passwd', 'sandbox:x:65534' in pw, '/root' in pw)\n",
		 secret);
	py(sb, script, 20000, &r);
	SW_CHECKF(r.exit.status == 0, "%s", r.err);
	SW_CHECKF(strstr(r.out, "READ") == NULL, "%s", r.out);
	SW_CHECK(strstr(r.out, "refused /etc/shadow") && strstr(r.out, "refused /root"));
	SW_CHECK(strstr(r.out, "passwd True False\n") != NULL);
	sw_sandbox_result_free(&r);
	unlink(secret);
	sw_sandbox_destroy(sb, NULL);
}

static void t_proc(void)
{
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	char marker[64], rev[64], script[2048];
	size_t ml;

	char envent[96];
	char *const sleep_argv[] = {"/bin/sleep", "1000", NULL};
	char *const sleep_env[] = {envent, NULL};
	pid_t host_proc;
	int st;

	/* Something unique in the environment of a host process. */
	snprintf(marker, sizeof(marker), "sw-marker-%d-%ld", (int)getpid(), (long)time(NULL));
	snprintf(envent, sizeof(envent), "SW_ESCAPE_MARKER=%s", marker);
	SW_CHECK(posix_spawn(&host_proc, sleep_argv[0], NULL, NULL, sleep_argv, sleep_env) == 0);
	ml = strlen(marker);
	for (size_t i = 0; i < ml; i++)
		rev[i] = marker[ml - 1 - i];
	rev[ml] = '\0';
	snprintf(script, sizeof(script),
		 "import os\n"
		 "m = '%s'[::-1].encode()\n" /* not the marker itself: it is in our argv */
		 "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
		 "seen = 0\n"
		 "for p in pids:\n"
		 "    for f in ('environ', 'cmdline'):\n"
		 "        try:\n"
		 "            if m in open('/proc/%%s/%%s' %% (p, f), 'rb').read(): seen += 1\n"
		 "        except OSError:\n"
		 "            pass\n"
		 "print('pids', len(pids), 'max', max(int(p) for p in pids), 'marker', seen)\n",
		 rev);
	py(sb, script, 20000, &r);
	SW_CHECKF(r.exit.status == 0, "%s", r.err);
	/* Only the sandbox's own processes (runner, python) are there. */
	SW_CHECKF(strncmp(r.out, "pids 2 max ", 11) == 0 && strstr(r.out, "marker 0\n"), "%s",
		  r.out);
	sw_sandbox_result_free(&r);
	/* Control: the marker is really in that host process. */
	{
		char path[64], buf[65536];
		FILE *f;
		size_t n;

		snprintf(path, sizeof(path), "/proc/%d/environ", (int)host_proc);
		SW_CHECK((f = fopen(path, "rb")) != NULL);
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		SW_CHECK(memmem(buf, n, marker, strlen(marker)) != NULL);
	}
	kill(host_proc, SIGKILL);
	waitpid(host_proc, &st, 0);

	/* No inherited fds: a command has 0, 1, 2 (and the one listing them);
	 * the idle runner 0-2 on /dev/null, its socket, its signalfd and the
	 * credential socket's listener (fd 5). */
	py(sb, "import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))", 20000, &r);
	SW_CHECKF(strcmp(r.out, "[0, 1, 2, 3]\n") == 0, "%s", r.out);
	sw_sandbox_result_free(&r);
	{
		struct sw_sandbox_stats ss;
		char path[64], link[256];
		int nfd = 0;

		SW_CHECK(sw_sandbox_stats(sb, &ss) == 0);
		for (int fd = 0; fd < 1024; fd++) {
			ssize_t k;

			snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)ss.pid, fd);
			if ((k = readlink(path, link, sizeof(link) - 1)) < 0)
				continue;
			link[k] = '\0';
			nfd++;
			if (fd <= 2)
				SW_CHECKF(strcmp(link, "/dev/null") == 0, "fd %d: %s", fd, link);
			else if (fd == 3 || fd == 5)
				SW_CHECKF(strncmp(link, "socket:", 7) == 0, "fd %d: %s", fd, link);
			else
				SW_CHECKF(fd == 4 && strstr(link, "signalfd"), "fd %d: %s", fd,
					  link);
		}
		SW_CHECKF(nfd == 6, "runner has %d fds", nfd);
	}
	sw_sandbox_destroy(sb, NULL);
}

static void t_write(void)
{
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;
	struct stat st;

	py(sb,
	   "import os\n"
	   "for p in ('/usr/sw_pwned', '/etc/sw_pwned', '/sw_pwned', '/bin/sw_pwned',\n"
	   "          '/lib/sw_pwned', '/.sagewai/toolrunner', '/etc/passwd',\n"
	   "          '/proc/sys/kernel/hostname', '/usr/bin/python3'):\n"
	   "    try:\n"
	   "        open(p, 'ab').write(b'x'); print('WROTE', p)\n"
	   "    except OSError as e:\n"
	   "        print('refused', p, e.errno)\n"
	   "for p in ('/tmp/ok', '/workspace/ok'):\n"
	   "    open(p, 'w').write('ok'); print('wrote', p)\n"
	   "try:\n"
	   "    os.chmod('/usr/bin/python3', 0o777); print('CHMOD')\n"
	   "except OSError as e:\n"
	   "    print('refused chmod', e.errno)\n",
	   20000, &r);
	SW_CHECKF(r.exit.status == 0, "%s", r.err);
	SW_CHECKF(strstr(r.out, "WROTE") == NULL && strstr(r.out, "CHMOD") == NULL, "%s", r.out);
	SW_CHECK(strstr(r.out, "wrote /tmp/ok") && strstr(r.out, "wrote /workspace/ok"));
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
	/* The host is untouched. */
	SW_CHECK(stat("/usr/sw_pwned", &st) != 0 && stat("/etc/sw_pwned", &st) != 0 &&
		 stat("/sw_pwned", &st) != 0 && stat("/usr/bin/sw_pwned", &st) != 0);
	SW_CHECK(stat("/usr/bin/python3", &st) == 0);
}

/*
 * Policy full: its own namespace (lo and slirp4netns's tap0), and none of
 * the host's addresses reachable: a listener on all of the host's
 * addresses is connected to at 127.0.0.1, 10.0.2.2 (slirp's gateway, the
 * host) and each of the host's own IPv4 addresses, and never accepts.
 */
static void t_net_full(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	socklen_t al = sizeof(a);
	char script[4096], addrs[2048] = "'127.0.0.1', '10.0.2.2', '10.0.2.3'";
	struct ifaddrs *ifs, *i;
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;
	int fd, port;

	if (!full_available()) {
		char err[512];
		struct sw_sandbox_spec spec = {.variant = variant, .net = SW_SANDBOX_NET_FULL,
					       .env = base_env};

		SW_CHECK(sw_sandbox_create(backend, &spec, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, SW_SANDBOX_ERR_NO_FULL) != NULL, "%s", err);
		return;
	}
	SW_CHECK((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) >= 0);
	SW_CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 16) == 0);
	SW_CHECK(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	port = ntohs(a.sin_port);
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
		 "s = socket.socket(socket.AF_INET6); s.settimeout(3)\n"
		 "try:\n"
		 "    s.connect(('::1', %d)); print('connected ::1')\n"
		 "except OSError as e:\n"
		 "    print('refused ::1', e.errno)\n",
		 addrs, port, port);
	sb = make(backend, SW_SANDBOX_NET_FULL, NULL, NULL);
	py(sb, script, 60000, &r);
	SW_CHECKF(r.exit.status == 0 && strstr(r.out, "connected") == NULL &&
		      strstr(r.out, "refused 127.0.0.1") != NULL,
		  "%s %s", r.out, r.err);
	sw_sandbox_result_free(&r);
	SW_CHECK(accept(fd, NULL, NULL) < 0 && errno == EAGAIN);
	/* its own namespace: lo and tap0, routed through slirp4netns */
	sh(sb, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort; "
	       "cut -f1,2 /proc/net/route | tail -n +2; cat /etc/resolv.conf",
	   10000, &r);
	SW_CHECKF(strncmp(r.out, "lo\ntap0\n", 8) == 0 && strstr(r.out, "tap0\t00000000") != NULL &&
		      strstr(r.out, "nameserver 10.0.2.3") != NULL,
		  "%s", r.out);
	sw_sandbox_result_free(&r);
	/* its own loopback works */
	py(sb,
	   "import socket\n"
	   "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\n"
	   "c = socket.create_connection(l.getsockname(), 3); print('own lo ok')\n",
	   10000, &r);
	SW_CHECKF(strcmp(r.out, "own lo ok\n") == 0, "%s %s", r.out, r.err);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
	close(fd);
}

static void t_net(void)
{
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;
	char script[1024];
	int port, fd = host_listener(&port);

	snprintf(script, sizeof(script), connect_py, port);
	/* Policy none: the host's loopback is another namespace's. */
	sb = sandbox();
	py(sb, script, 20000, &r);
	SW_CHECKF(strncmp(r.out, "refused", 7) == 0, "%s %s", r.out, r.err);
	sw_sandbox_result_free(&r);
	sh(sb, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '", 10000, &r);
	SW_CHECKF(strcmp(r.out, "lo\n") == 0, "interfaces: %s", r.out);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
	SW_CHECK(accept(fd, NULL, NULL) < 0 && errno == EAGAIN);

	close(fd);
	t_net_full();
}

static int host_fork_ok(void)
{
	int st;
	pid_t p = fork();

	if (p == 0)
		_exit(0);
	return p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void t_forkbomb(void)
{
	struct sw_sandbox_limits lim = {.nproc = 32};
	struct sw_sandbox *sb = make(backend, SW_SANDBOX_NET_NONE, &lim, NULL);
	struct sw_sandbox_result r;
	int n = -1, e = -1;

	/* Counted: forks stop at the limit with EAGAIN. */
	py(sb,
	   "import os, time\n"
	   "n = 0; err = None\n"
	   "for i in range(200):\n"
	   "    try:\n"
	   "        pid = os.fork()\n"
	   "    except OSError as e:\n"
	   "        err = e.errno; break\n"
	   "    if pid == 0:\n"
	   "        time.sleep(60); os._exit(0)\n"
	   "    n += 1\n"
	   "print(n, err)\n",
	   60000, &r);
	SW_CHECKF(sscanf(r.out, "%d %d", &n, &e) == 2, "%s %s", r.out, r.err);
	SW_CHECKF(n > 0 && n < 32 && e == EAGAIN, "forked %d, errno %d", n, e);
	sw_sandbox_result_free(&r);
	/* Its sleeping children went with it. */
	SW_CHECK(settles_to_runner(sb));

	/* The real thing: while it rages, the sandbox stays at its limit and
	 * the host forks as usual; KILL ends it all. */
	{
		/* Every process forks forever, retrying when refused. */
		static const char *const argv[] = {"python3", "-c",
						   "import os, time\n"
						   "while True:\n"
						   "    try: os.fork()\n"
						   "    except OSError: time.sleep(0.01)\n",
						   NULL};
		struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = 600000};
		struct exit_wait w = {0};
		char err[512];
		int most = 0;

		SW_CHECK(sw_sandbox_exec_start(sb, &ex, err, sizeof(err)) == 0);
		SW_CHECK(sw_sandbox_flush(sb) == 0);
		for (int i = 0; i < 1000 && most < 30; i++) {
			int n = nproc_of(sb);

			most = n > most ? n : most;
			usleep(10000);
		}
		SW_CHECKF(most >= 30, "the bomb reached only %d processes", most);
		for (int i = 0; i < 20; i++) {
			int n = nproc_of(sb);

			most = n > most ? n : most;
			usleep(10000);
		}
		SW_CHECKF(most <= 32, "%d processes under a limit of 32", most);
		SW_CHECK(host_fork_ok());
		SW_CHECK(sw_sandbox_exec_kill(sb) == 0);
		pump_until_exit(sb, &w, 30000);
		SW_CHECK(w.ex.killed);
	}
	SW_CHECK(settles_to_runner(sb));
	sh(sb, "echo alive", 10000, &r);
	SW_CHECK(strcmp(r.out, "alive\n") == 0);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
}

static void t_membomb(void)
{
	struct sw_sandbox_limits lim = {.memory_bytes = 512u << 20};
	struct sw_sandbox *sb = make(backend, SW_SANDBOX_NET_NONE, &lim, NULL);
	struct sw_sandbox_result r;

	py(sb, "x = bytearray(8 << 30)\nprint('GOT 8 GiB')", 60000, &r);
	SW_CHECKF(r.exit.status != 0 && strstr(r.err, "MemoryError"), "%d %s", r.exit.status,
		  r.out);
	SW_CHECK(strstr(r.out, "GOT") == NULL);
	sw_sandbox_result_free(&r);
	py(sb, "a = []\nwhile True: a.append(bytearray(32 << 20))", 60000, &r);
	SW_CHECKF(r.exit.status != 0 && strstr(r.err, "MemoryError"), "%d %s", r.exit.status,
		  r.err);
	SW_CHECK(r.exit.usage.maxrss_kb < 600 * 1024);
	sw_sandbox_result_free(&r);
	/* Control: under the limit, allocation works. */
	py(sb, "x = bytearray(64 << 20)\nprint('ok')", 60000, &r);
	SW_CHECK(strcmp(r.out, "ok\n") == 0);
	sw_sandbox_result_free(&r);
	SW_CHECK(host_fork_ok());
	sw_sandbox_destroy(sb, NULL);
}

/* ---- per-sandbox cgroups ------------------------------------------------------ */

/* 1 when the backend has cgroups; else note why this case is skipped. */
static int cgroups_on(const char *what)
{
	const char *mode = sw_sandbox_bwrap_cgroup_mode(backend);

	if (strncmp(mode, "off", 3) != 0)
		return 1;
	printf("sandbox_test %s: skipped, no per-sandbox cgroups here (%s)\n", what, mode);
	skipped = 1;
	return 0;
}

/*
 * Where our sandbox cgroups must be, found independently of the library:
 * our own cgroup of controller ctrl (v1; NULL: v2) from /proc/self/cgroup,
 * under the usual mount points.
 */
static void cg_base(const char *ctrl, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[1024];
	int found = 0;

	SW_CHECK(f != NULL);
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *tok, *save;

		if (c2 == NULL)
			continue;
		*c2 = '\0';
		c2[strcspn(c2 + 1, "\n") + 1] = '\0';
		if (ctrl == NULL) {
			if (strcmp(line, "0:") != 0 || c1[1] != '\0')
				continue;
			/* the library may have moved us into a leaf of our cgroup */
			tok = strrchr(c2 + 1, '/');
			if (tok != NULL && strcmp(tok, "/sagewai-sandboxd") == 0)
				*tok = '\0';
			snprintf(out, len, "/sys/fs/cgroup%s", c2 + 1);
			found = 1;
			continue;
		}
		for (tok = strtok_r(c1 + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			if (strcmp(tok, ctrl) == 0)
				found = 1;
		if (found)
			snprintf(out, len, "/sys/fs/cgroup/%s%s", ctrl,
				 strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1);
	}
	fclose(f);
	SW_CHECKF(found, "no %s line in /proc/self/cgroup", ctrl ? ctrl : "0::");
}

/* The bases to look in: v1 memory and pids, or the v2 one. */
static int cg_bases(char base[2][512])
{
	if (strncmp(sw_sandbox_bwrap_cgroup_mode(backend), "v2", 2) == 0) {
		cg_base(NULL, base[0], sizeof(base[0]));
		return 1;
	}
	SW_CHECK(strncmp(sw_sandbox_bwrap_cgroup_mode(backend), "v1", 2) == 0);
	cg_base("memory", base[0], sizeof(base[0]));
	cg_base("pids", base[1], sizeof(base[1]));
	return 2;
}

/* How many sandbox cgroups of this process are under dir; the last one's
 * path into last (may be NULL). */
static int our_cgroups(const char *dir, char *last, size_t len)
{
	char prefix[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(prefix, sizeof(prefix), "sagewai-sbx-%d-", (int)getpid());
	SW_CHECKF((d = opendir(dir)) != NULL, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		if (last != NULL)
			snprintf(last, len, "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static long long read_num(const char *dir, const char *file)
{
	char path[1200], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	SW_CHECKF((f = fopen(path, "re")) != NULL, "%s: %s", path, strerror(errno));
	SW_CHECK(fgets(buf, sizeof(buf), f) != NULL);
	fclose(f);
	return strcmp(buf, "max\n") == 0 ? -1 : strtoll(buf, NULL, 10);
}

static void write_str(const char *dir, const char *file, const char *v)
{
	char path[1200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	SW_CHECKF((f = fopen(path, "we")) != NULL, "%s: %s", path, strerror(errno));
	SW_CHECK(fputs(v, f) >= 0 && fclose(f) == 0);
}

/*
 * Four processes, each allocating and touching 64 MiB, then waiting (20 s
 * at most) until all four hold theirs. Each fits the per-process limit;
 * together they do not fit 128 MiB.
 */
static const char *const four_hogs =
    "for i in 1 2 3 4; do python3 -c '\n"
    "import os, sys, time\n"
    "b = bytearray(64 << 20)\n"
    "for k in range(0, len(b), 4096): b[k] = 1\n"
    "open(\"/tmp/ready-\" + sys.argv[1], \"w\").close()\n"
    "end = time.time() + 20\n"
    "while len([f for f in os.listdir(\"/tmp\") if f.startswith(\"ready-\")]) < 4 "
    "and time.time() < end:\n"
    "    time.sleep(0.05)\n"
    "print(\"done\", sys.argv[1], flush=True)\n"
    "' $i & done; wait; echo end";

static int count_words(const char *s, const char *w)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, w)) != NULL; p += strlen(w))
		n++;
	return n;
}

static void t_cgroup_memory(void)
{
	struct sw_sandbox_limits lim = {.memory_bytes = 128u << 20};
	struct sw_sandbox_bwrap_config cfg = {.runner_path = SW_TOOLRUNNER};
	struct sw_sandbox_backend *off;
	struct sw_sandbox_usage u;
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;
	char err[512];

	/* Control, without cgroups: the per-process limit lets all four be. */
	SW_CHECKF((off = sw_sandbox_bwrap_new(&cfg, err, sizeof(err))) != NULL, "%s", err);
	SW_CHECK(strcmp(sw_sandbox_bwrap_cgroup_mode(off), "off: disabled") == 0);
	sb = make(off, SW_SANDBOX_NET_NONE, &lim, NULL);
	sh(sb, four_hogs, 120000, &r);
	SW_CHECKF(count_words(r.out, "done") == 4 && strstr(r.out, "end") != NULL,
		  "without cgroups: out '%s' err '%s'", r.out, r.err);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, &u);
	SW_CHECK(!u.oom_killed);
	sw_sandbox_backend_free(off);

	if (!cgroups_on("cgroup_memory"))
		return;
	printf("cgroup mode: %s\n", sw_sandbox_bwrap_cgroup_mode(backend));
	/* With them, the sandbox as a whole is held to 128 MiB. */
	sb = make(backend, SW_SANDBOX_NET_NONE, &lim, NULL);
	sh(sb, four_hogs, 120000, &r);
	SW_CHECKF(count_words(r.out, "done") < 4 && strstr(r.out, "end") != NULL,
		  "with cgroups: out '%s' err '%s'", r.out, r.err);
	sw_sandbox_result_free(&r);
	/* The runner survived it. */
	sh(sb, "echo alive", 10000, &r);
	SW_CHECK(strcmp(r.out, "alive\n") == 0);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, &u);
	SW_CHECK(u.oom_killed);
	/* The peak is the sandbox's, near the limit (the cgroup's count). */
	SW_CHECKF(u.maxrss_kb > 64 * 1024 && u.maxrss_kb <= 128 * 1024, "peak %lld kB",
		  (long long)u.maxrss_kb);
	/* And a sandbox that stays below its limit is not flagged. */
	sb = sandbox();
	sh(sb, "echo fine", 10000, &r);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, &u);
	SW_CHECK(!u.oom_killed);
}

static const char *const fork_many =
    "import os, time\n"
    "n = 0; err = None\n"
    "for i in range(200):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError as e:\n"
    "        err = e.errno; break\n"
    "    if pid == 0:\n"
    "        time.sleep(60); os._exit(0)\n"
    "    n += 1\n"
    "print(n, err)\n";

static void t_cgroup_pids(void)
{
	struct sw_sandbox_limits lim = {.nproc = 64};
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;
	char base[2][512], dir[1024];
	int n = -1, e = -1, nb;

	if (!cgroups_on("cgroup_pids"))
		return;
	nb = cg_bases(base);
	sb = make(backend, SW_SANDBOX_NET_NONE, &lim, NULL);
	/* One cgroup of ours, bound to nproc + margin, holding the sandbox
	 * (bwrap and the runner at least). */
	SW_CHECK(our_cgroups(base[nb - 1], dir, sizeof(dir)) == 1);
	SW_CHECKF(read_num(dir, "pids.max") == 64 + 4, "pids.max %lld",
		  read_num(dir, "pids.max"));
	SW_CHECKF(read_num(dir, "pids.current") >= 2, "pids.current %lld",
		  read_num(dir, "pids.current"));
	/* Forks stop below nproc + margin. */
	py(sb, fork_many, 60000, &r);
	SW_CHECKF(sscanf(r.out, "%d %d", &n, &e) == 2, "%s %s", r.out, r.err);
	SW_CHECKF(n > 0 && n < 64 + 4 && e == EAGAIN, "forked %d, errno %d", n, e);
	sw_sandbox_result_free(&r);
	SW_CHECK(settles_to_runner(sb));
	/* The cgroup, not only the runner's rlimit (64), holds every process
	 * of the sandbox: below the rlimit, its bound is the one that acts. */
	write_str(dir, "pids.max", "16");
	py(sb, fork_many, 60000, &r);
	SW_CHECKF(sscanf(r.out, "%d %d", &n, &e) == 2, "%s %s", r.out, r.err);
	SW_CHECKF(n > 0 && n <= 16 - 3 && e == EAGAIN, "forked %d, errno %d", n, e);
	sw_sandbox_result_free(&r);
	SW_CHECK(settles_to_runner(sb));
	SW_CHECK(host_fork_ok());
	sw_sandbox_destroy(sb, NULL);
	SW_CHECK(our_cgroups(base[nb - 1], NULL, 0) == 0);
}

/*
 * Two processes busy for 1.5 s of wall time each, however much CPU they
 * get; prints nothing. Their CPU time is the exec's usage (wait4 of the
 * shell, which reaped them).
 */
static const char *const two_busy =
    "for i in 1 2; do python3 -c '\n"
    "import time\n"
    "end = time.monotonic() + 1.5\n"
    "while time.monotonic() < end: pass\n"
    "' & done; wait";

/* CPU time (s) the busy pair got in sb; the sandbox must survive it. */
static double busy_cpu(struct sw_sandbox *sb)
{
	struct sw_sandbox_result r;
	double cpu;

	sh(sb, two_busy, 60000, &r);
	SW_CHECKF(r.exit.status == 0, "busy loop: status %d, err '%s'", r.exit.status, r.err);
	cpu = (double)(r.exit.usage.utime_us + r.exit.usage.stime_us) / 1e6;
	sw_sandbox_result_free(&r);
	return cpu;
}

static void t_cgroup_cpu(void)
{
	struct sw_sandbox_limits lim = {.cpu_millis = 200}, tiny = {.cpu_millis = 5};
	struct sw_sandbox_bwrap_config cfg = {.runner_path = SW_TOOLRUNNER};
	struct sw_sandbox_spec spec = {
	    .variant = variant, .net = SW_SANDBOX_NET_NONE, .env = base_env,
	    .workspace = workspace, .limits = lim};
	struct sw_sandbox_backend *off;
	struct sw_sandbox_usage u;
	struct sw_sandbox *sb;
	const char *mode = sw_sandbox_bwrap_cgroup_mode(backend);
	char err[512], dir[1024], base[512];
	double free_cpu, held_cpu;
	int v2 = strncmp(mode, "v2", 2) == 0;

	/* Without cgroups a CPU limit cannot be held: the create is refused,
	 * never run unbounded. */
	SW_CHECKF((off = sw_sandbox_bwrap_new(&cfg, err, sizeof(err))) != NULL, "%s", err);
	SW_CHECK(sw_sandbox_create(off, &spec, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, SW_SANDBOX_ERR_NO_CPU) != NULL, "%s", err);
	sw_sandbox_backend_free(off);
	if (!cgroups_on("cgroup_cpu"))
		return;
	printf("cgroup mode: %s\n", mode);
	if (strstr(mode, "cpu off") != NULL) {
		/* the same refusal with memory and pids cgroups but no cpu */
		SW_CHECK(sw_sandbox_create(backend, &spec, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, SW_SANDBOX_ERR_NO_CPU) != NULL, "%s", err);
		printf("sandbox_test cgroup_cpu: skipped, no cpu controller here\n");
		skipped = 1;
		return;
	}
	cg_base(v2 ? NULL : "cpu", base, sizeof(base));

	/* Control: unlimited, the pair gets what the host gives it. */
	sb = sandbox();
	free_cpu = busy_cpu(sb);
	sw_sandbox_destroy(sb, NULL);

	/* 0.2 CPU for the whole sandbox: 20 ms each 100 ms period. */
	sb = make(backend, SW_SANDBOX_NET_NONE, &lim, NULL);
	SW_CHECK(sw_sandbox_limits(sb)->cpu_millis == 200);
	SW_CHECK(our_cgroups(base, dir, sizeof(dir)) == 1);
	if (v2) {
		char path[1200], buf[64] = "";
		FILE *f;

		snprintf(path, sizeof(path), "%s/cpu.max", dir);
		SW_CHECKF((f = fopen(path, "re")) != NULL, "%s: %s", path, strerror(errno));
		SW_CHECK(fgets(buf, sizeof(buf), f) != NULL);
		fclose(f);
		SW_CHECKF(strcmp(buf, "20000 100000\n") == 0, "cpu.max %s", buf);
	} else {
		SW_CHECKF(read_num(dir, "cpu.cfs_quota_us") == 20000 &&
			      read_num(dir, "cpu.cfs_period_us") == 100000,
			  "quota %lld period %lld", read_num(dir, "cpu.cfs_quota_us"),
			  read_num(dir, "cpu.cfs_period_us"));
	}
	held_cpu = busy_cpu(sb);
	sw_sandbox_destroy(sb, &u);
	printf("busy pair, 1.5 s each: unlimited %.3f s CPU, 0.2 CPU %.3f s; at destroy "
	       "%.3f s\n",
	       free_cpu, held_cpu, (double)(u.utime_us + u.stime_us) / 1e6);
	/* 0.2 x 1.5 s is 0.3 s, whatever the pair wanted (up to 3 s) */
	SW_CHECKF(held_cpu < 0.5 * 1.5, "limited to 0.2 CPU, got %.3f s in 1.5 s", held_cpu);
	/* the control means something only when the host gave the unlimited
	 * pair clearly more than the limit allows (a loaded host may not) */
	if (free_cpu > 1.5 * 0.2 * 1.5)
		SW_CHECKF(free_cpu > 1.5 * held_cpu, "unlimited %.3f s is not above limited %.3f s",
			  free_cpu, held_cpu);
	else
		printf("the host gave the unlimited pair only %.3f s: too loaded to compare it "
		       "with the limited one\n",
		       free_cpu);
	/* the cgroup counted it too, and is gone */
	SW_CHECKF(u.utime_us + u.stime_us >= (int64_t)(held_cpu * 1e6 * 0.9),
		  "usage at destroy %lld us", (long long)(u.utime_us + u.stime_us));
	SW_CHECK(our_cgroups(base, NULL, 0) == 0);

	/* Below 10 millis the quota would be under the kernel's 1 ms: a 1 s
	 * period instead. */
	sb = make(backend, SW_SANDBOX_NET_NONE, &tiny, NULL);
	SW_CHECK(our_cgroups(base, dir, sizeof(dir)) == 1);
	if (!v2)
		SW_CHECKF(read_num(dir, "cpu.cfs_quota_us") == 5000 &&
			      read_num(dir, "cpu.cfs_period_us") == 1000000,
			  "quota %lld period %lld", read_num(dir, "cpu.cfs_quota_us"),
			  read_num(dir, "cpu.cfs_period_us"));
	sw_sandbox_destroy(sb, NULL);
	SW_CHECK(our_cgroups(base, NULL, 0) == 0);
}

static int failing_hook(void *arg, int netns_fd, pid_t pid, char *errstr, size_t errlen)
{
	(void)arg;
	(void)netns_fd;
	(void)pid;
	snprintf(errstr, errlen, "hook says no");
	return -1;
}

static void t_cgroup_cleanup(void)
{
	struct sw_sandbox_limits small = {.memory_bytes = 64u << 20};
	struct sw_sandbox_spec spec = {
	    .variant = variant,
	    .net = SW_SANDBOX_NET_EGRESS_ONLY,
	    .env = base_env,
	    .workspace = workspace,
	    .egress_hook = failing_hook,
	};
	struct sw_sandbox_bwrap_config bad = {.runner_path = SW_TOOLRUNNER, .cgroup = "sometimes"};
	struct sw_sandbox *sb[3];
	struct sw_sandbox_result r;
	char base[2][512], err[512];
	int nb;

	/* An unknown setting is refused, not taken for off. */
	SW_CHECK(sw_sandbox_bwrap_new(&bad, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "sometimes") != NULL, "%s", err);
	if (!cgroups_on("cgroup_cleanup"))
		return;
	nb = cg_bases(base);
	for (int i = 0; i < 3; i++)
		sb[i] = make(backend, SW_SANDBOX_NET_NONE, i == 2 ? &small : NULL, NULL);
	for (int k = 0; k < nb; k++)
		SW_CHECKF(our_cgroups(base[k], NULL, 0) == 3, "%s", base[k]);
	/* Leave things running, and one sandbox OOM-killed. */
	sh(sb[0], "sleep 1000 & sleep 1000 & echo started", 10000, &r);
	sw_sandbox_result_free(&r);
	sh(sb[2],
	   "for i in 1 2 3; do python3 -c 'import time; b = bytearray(30 << 20); time.sleep(5)' & "
	   "done; wait; echo end",
	   60000, &r);
	sw_sandbox_result_free(&r);
	for (int i = 0; i < 3; i++) {
		struct sw_sandbox_usage u;

		sw_sandbox_destroy(sb[i], &u);
		if (i == 2)
			printf("64 MiB sandbox, 3 x 30 MiB: oom_killed %d\n", u.oom_killed);
	}
	for (int k = 0; k < nb; k++)
		SW_CHECKF(our_cgroups(base[k], NULL, 0) == 0, "%s", base[k]);
	/* A create that fails after its cgroup was made leaves none either. */
	SW_CHECK(sw_sandbox_create(backend, &spec, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "hook says no") != NULL, "%s", err);
	for (int k = 0; k < nb; k++)
		SW_CHECKF(our_cgroups(base[k], NULL, 0) == 0, "%s", base[k]);
}

/* A process left in dirs (nb of them, joined in order), whose parent has
 * exited: an orphan, as a killed creator's bwrap child is. Its pid. */
static pid_t orphan_in(char dirs[][1100], int nb)
{
	int p[2];
	pid_t mid, pid = -1;

	SW_CHECK(pipe(p) == 0);
	SW_CHECK((mid = fork()) >= 0);
	if (mid == 0) {
		pid_t g;

		for (int k = 0; k < nb; k++) {
			char path[1200];
			int fd;

			snprintf(path, sizeof(path), "%s/cgroup.procs", dirs[k]);
			if ((fd = open(path, O_WRONLY)) < 0 || write(fd, "0", 1) != 1)
				_exit(1);
			close(fd);
		}
		if ((g = fork()) == 0) {
			int null = open("/dev/null", O_RDWR);

			/* a failed check must not leave our output open */
			for (int fd = 0; fd < 3; fd++)
				dup2(null, fd);
			close(p[1]);
			for (;;)
				pause();
		}
		_exit(write(p[1], &g, sizeof(g)) == sizeof(g) ? 0 : 1);
	}
	close(p[1]);
	SW_CHECK(read(p[0], &pid, sizeof(pid)) == sizeof(pid) && pid > 0);
	close(p[0]);
	{
		int st;

		SW_CHECK(waitpid(mid, &st, 0) == mid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	return pid;
}

/*
 * A live process whose pid was chosen before it started (the pid of a
 * cgroup made earlier): ns_last_pid set to pid - 1 before the fork, as
 * checkpoint/restore tools do. -1 when this host does not let us.
 */
static pid_t fork_as(pid_t want)
{
	for (int tries = 0; tries < 20; tries++) {
		FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "we");
		pid_t pid;

		if (f == NULL || fprintf(f, "%d", (int)want - 1) < 0 || fclose(f) != 0)
			return -1;
		SW_CHECK((pid = fork()) >= 0);
		if (pid == 0) {
			int null = open("/dev/null", O_RDWR);

			for (int fd = 0; fd < 3; fd++)
				dup2(null, fd);
			for (;;)
				pause();
		}
		if (pid == want)
			return pid;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return -1;
}

/*
 * A creator killed mid-create can leave a bwrap child that no
 * parent-death signal reaches, in its sandbox's cgroup. The next start
 * (a new backend) kills it and removes the cgroup, when the creator is
 * gone, a zombie, or its pid now another, younger process's; a cgroup
 * whose creator still lives is left alone.
 */
static void t_cgroup_sweep(void)
{
	enum { GONE, ZOMBIE, REUSED, LIVE, NCASE };
	static const char *const what[NCASE] = {"gone", "zombie", "pid reused", "live"};
	struct sw_sandbox_bwrap_config cfg = {.runner_path = SW_TOOLRUNNER, .cgroup = "auto"};
	struct sw_sandbox_backend *be;
	char base[2][512], dir[NCASE][2][1100], err[512];
	pid_t creator[NCASE], orphan[NCASE], w = 0, reused = -1;
	int nb, st = 0, ncase = NCASE;

	if (!cgroups_on("cgroup_sweep"))
		return;
	nb = cg_bases(base);
	SW_CHECK((creator[GONE] = fork()) >= 0);
	if (creator[GONE] == 0)
		_exit(0);
	SW_CHECK(waitpid(creator[GONE], NULL, 0) == creator[GONE]);
	SW_CHECK((creator[ZOMBIE] = fork()) >= 0);
	if (creator[ZOMBIE] == 0)
		_exit(0);
	/* a pid free now, that a process started later will have */
	SW_CHECK((creator[REUSED] = fork()) >= 0);
	if (creator[REUSED] == 0)
		_exit(0);
	SW_CHECK(waitpid(creator[REUSED], NULL, 0) == creator[REUSED]);
	creator[LIVE] = getppid();
	/* orphans come to us, so that their end can be seen */
	SW_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
	for (int c = 0; c < NCASE; c++)
		for (int k = 0; k < nb; k++) {
			snprintf(dir[c][k], sizeof(dir[c][k]), "%s/sagewai-sbx-%d-t%d.%d", base[k],
				 (int)creator[c], (int)getpid(), c);
			SW_CHECKF(mkdir(dir[c][k], 0755) == 0, "%s: %s", dir[c][k],
				  strerror(errno));
		}
	for (int c = 0; c < NCASE; c++)
		orphan[c] = orphan_in(dir[c], nb);
	/* after the cgroup, by more than the margin of a second's rounding */
	sleep(4);
	if ((reused = fork_as(creator[REUSED])) < 0) {
		printf("sandbox_test cgroup_sweep: the pid-reuse case not run here "
		       "(ns_last_pid)\n");
		SW_CHECK(kill(orphan[REUSED], SIGKILL) == 0);
		SW_CHECK(waitpid(orphan[REUSED], NULL, 0) == orphan[REUSED]);
		ncase--;
	}

	SW_CHECKF((be = sw_sandbox_bwrap_new(&cfg, err, sizeof(err))) != NULL, "%s", err);
	SW_CHECKF(sw_sandbox_bwrap_swept(be) >= (ncase == NCASE ? 3 : 2), "swept %d",
		  sw_sandbox_bwrap_swept(be));
	for (int c = 0; c < LIVE; c++) {
		if (c == REUSED && reused < 0)
			continue;
		for (int i = 0; i < 500 && (w = waitpid(orphan[c], &st, WNOHANG)) == 0; i++)
			usleep(10000);
		SW_CHECKF(w == orphan[c] && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
			  "creator %s: its leftover still runs (waitpid %d)", what[c], (int)w);
		for (int k = 0; k < nb; k++)
			SW_CHECKF(access(dir[c][k], F_OK) != 0 && errno == ENOENT, "%s left",
				  dir[c][k]);
	}
	/* a live creator's: untouched */
	SW_CHECK(waitpid(orphan[LIVE], &st, WNOHANG) == 0 && kill(orphan[LIVE], 0) == 0);
	for (int k = 0; k < nb; k++)
		SW_CHECKF(access(dir[LIVE][k], F_OK) == 0, "%s removed", dir[LIVE][k]);
	sw_sandbox_backend_free(be);

	SW_CHECK(kill(orphan[LIVE], SIGKILL) == 0 &&
		 waitpid(orphan[LIVE], &st, 0) == orphan[LIVE]);
	SW_CHECK(waitpid(creator[ZOMBIE], NULL, 0) == creator[ZOMBIE]);
	if (reused > 0) {
		kill(reused, SIGKILL);
		waitpid(reused, NULL, 0);
	}
	for (int c = 0; c < NCASE; c++)
		for (int k = 0; k < nb; k++)
			for (int i = 0; i < 200 && rmdir(dir[c][k]) != 0 && errno == EBUSY; i++)
				usleep(10000);
}

struct sc_expect {
	const char *name;
	int err; /* expected errno; 0: must succeed */
};

/*
 * Each line of the script prints "name ret errno". Syscall numbers come
 * from this build's <sys/syscall.h>. Where a call would succeed (or fail
 * differently) without the filter, that is noted: those prove it is on.
 */
static void t_syscalls(void)
{
	static const struct sc_expect want[] = {
	    {"ptrace_traceme", EPERM}, /* would succeed */
	    {"ptrace_attach_1", EPERM},
	    {"mount", EPERM},
	    {"umount2", EPERM},
	    {"unshare_user", EPERM}, /* ENOSPC from --disable-userns otherwise */
	    {"unshare_mount", EPERM},
	    {"setns", EPERM},
	    {"clone_newuser", EPERM},
	    {"clone_newns", EPERM},
	    {"clone3", ENOSYS}, /* EFAULT otherwise */
	    {"keyctl", EPERM},	/* would succeed */
	    {"add_key", EPERM},
	    {"request_key", EPERM},
	    {"bpf", EPERM},
	    {"perf_event_open", EPERM},
	    {"userfaultfd", EPERM},
	    {"io_uring_setup", EPERM},	     /* EFAULT otherwise */
	    {"process_vm_readv", EPERM},     /* would succeed on itself */
	    {"personality_norandom", EPERM}, /* would succeed */
	    {"personality_query", 0},
	    {"personality_linux", 0},
	    {"chroot", EPERM},
	    {"pivot_root", EPERM},
	    {"kexec_load", EPERM},
	    {"init_module", EPERM},
	    {"finit_module", EPERM},
	    {"delete_module", EPERM},
	    {"swapon", EPERM},
	    {"open_by_handle_at", EPERM},
	    {"fsopen", EPERM},
	    {"getpid", 0},
	    {"fork", 0},
	};
	char script[8192], *hay;
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;

	snprintf(script, sizeof(script),
		 "import ctypes, os\n"
		 "libc = ctypes.CDLL(None, use_errno=True)\n"
		 "libc.syscall.restype = ctypes.c_long\n"
		 "def sc(name, nr, *a):\n"
		 "    ctypes.set_errno(0)\n"
		 "    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])\n"
		 "    if r == 0 and name.startswith('clone'): os._exit(0)\n"
		 "    print(name, r, ctypes.get_errno() if r < 0 else 0, flush=True)\n"
		 "def fn(name, f, *a):\n"
		 "    ctypes.set_errno(0)\n"
		 "    r = f(*a)\n"
		 "    print(name, r, ctypes.get_errno() if r < 0 else 0, flush=True)\n"
		 "sc('ptrace_traceme', %ld, 0, 0, 0, 0)\n"
		 "sc('ptrace_attach_1', %ld, 16, 1, 0, 0)\n"
		 "fn('mount', libc.mount, b'none', b'/tmp', b'tmpfs', 0, None)\n"
		 "fn('umount2', libc.umount2, b'/tmp', 0)\n"
		 "sc('unshare_user', %ld, 0x10000000)\n"
		 "sc('unshare_mount', %ld, 0x00020000)\n"
		 "fd = os.open('/proc/self/ns/net', os.O_RDONLY)\n"
		 "sc('setns', %ld, fd, 0)\n"
		 "sc('clone_newuser', %ld, 0x10000000 | 17, 0, 0, 0, 0)\n"
		 "sc('clone_newns', %ld, 0x00020000 | 17, 0, 0, 0, 0)\n"
		 "sc('clone3', %ld, 0, 0)\n"
		 "sc('keyctl', %ld, 0, -3, 1)\n"
		 "sc('add_key', %ld, 0, 0, 0, 0, 0)\n"
		 "sc('request_key', %ld, 0, 0, 0, 0)\n"
		 "sc('bpf', %ld, 0, 0, 0)\n"
		 "sc('perf_event_open', %ld, 0, 0, -1, -1, 0)\n"
		 "sc('userfaultfd', %ld, 0)\n"
		 "sc('io_uring_setup', %ld, 1, 0)\n"
		 "sc('process_vm_readv', %ld, os.getpid(), 0, 0, 0, 0, 0)\n"
		 "sc('personality_norandom', %ld, 0x0040000)\n"
		 "sc('personality_query', %ld, 0xffffffff)\n"
		 "sc('personality_linux', %ld, 0)\n"
		 "fn('chroot', libc.chroot, b'/tmp')\n"
		 "sc('pivot_root', %ld, 0, 0)\n"
		 "sc('kexec_load', %ld, 0, 0, 0, 0)\n"
		 "sc('init_module', %ld, 0, 0, 0)\n"
		 "sc('finit_module', %ld, 0, 0, 0)\n"
		 "sc('delete_module', %ld, 0, 0)\n"
		 "sc('swapon', %ld, 0, 0)\n"
		 "sc('open_by_handle_at', %ld, -1, 0, 0)\n"
		 "sc('fsopen', %ld, 0, 0)\n"
		 "sc('getpid', %ld)\n"
		 "pid = os.fork()\n"
		 "if pid == 0: os._exit(0)\n"
		 "os.waitpid(pid, 0); print('fork', pid, 0)\n",
		 (long)SYS_ptrace, (long)SYS_ptrace, (long)SYS_unshare, (long)SYS_unshare,
		 (long)SYS_setns, (long)SYS_clone, (long)SYS_clone, (long)SYS_clone3,
		 (long)SYS_keyctl, (long)SYS_add_key, (long)SYS_request_key, (long)SYS_bpf,
		 (long)SYS_perf_event_open, (long)SYS_userfaultfd, (long)SYS_io_uring_setup,
		 (long)SYS_process_vm_readv, (long)SYS_personality, (long)SYS_personality,
		 (long)SYS_personality, (long)SYS_pivot_root, (long)SYS_kexec_load,
		 (long)SYS_init_module, (long)SYS_finit_module, (long)SYS_delete_module,
		 (long)SYS_swapon, (long)SYS_open_by_handle_at, (long)SYS_fsopen,
		 (long)SYS_getpid);
	py(sb, script, 30000, &r);
	SW_CHECKF(r.exit.status == 0, "%s", r.err);
	/* A leading newline makes every line start with "\nname ". */
	SW_CHECK((hay = malloc(r.out_len + 2)) != NULL);
	hay[0] = '\n';
	memcpy(hay + 1, r.out, r.out_len + 1);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char key[64], *line;
		long ret = 0;
		int err = -1;

		snprintf(key, sizeof(key), "\n%s ", want[i].name);
		line = strstr(hay, key);
		SW_CHECKF(line != NULL, "no result for %s in:\n%s", want[i].name, r.out);
		SW_CHECK(sscanf(line + strlen(key), "%ld %d", &ret, &err) == 2);
		if (want[i].err == 0)
			SW_CHECKF(ret >= 0 && err == 0, "%s: ret %ld errno %d", want[i].name, ret,
				  err);
		else
			SW_CHECKF(ret == -1 && err == want[i].err, "%s: ret %ld errno %d, want %d",
				  want[i].name, ret, err, want[i].err);
	}
	free(hay);
	sw_sandbox_result_free(&r);
	/* Control: this process, outside, may change its personality. */
	SW_CHECK(personality(0xffffffff) != -1);
	sw_sandbox_destroy(sb, NULL);
}

static void t_timeout(void)
{
	struct sw_sandbox *sb = sandbox();
	struct sw_sandbox_result r;

	/* A busy loop is killed at its timeout. */
	sh(sb, "while :; do :; done", 500, &r);
	SW_CHECK(r.exit.timed_out && r.exit.signal == SIGKILL && r.exit.status == -1);
	sw_sandbox_result_free(&r);
	SW_CHECK(settles_to_runner(sb));
	/* A process that left the command's session and holds its output is
	 * swept at the deadline; the command itself had exited fine. */
	sh(sb, "setsid sleep 1000 & echo started", 1500, &r);
	SW_CHECK(r.exit.status == 0 && !r.exit.timed_out && strcmp(r.out, "started\n") == 0);
	sw_sandbox_result_free(&r);
	SW_CHECK(settles_to_runner(sb));
	/* Nothing escapes the default timeout either. */
	sh(sb, "sleep 1000", 700, &r);
	SW_CHECK(r.exit.timed_out);
	sw_sandbox_result_free(&r);
	sh(sb, "echo ok", 10000, &r);
	SW_CHECK(strcmp(r.out, "ok\n") == 0);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
}

static int pid_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int alive = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
		alive = p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	fclose(f);
	return alive;
}

/*
 * kill -9 of the process owning a sandbox leaves nothing of it behind. With
 * the real runner two things see to it: the control socket's EOF (the
 * runner, pid 1, exits) and --die-with-parent. A runner that ignores EOF
 * (the fake one, mode "deaf") leaves only the latter.
 */
static void parent_kill_case(struct sw_sandbox_backend *be, const char *const *env, bool sleepers)
{
	struct sw_sandbox_stats st;
	int p[2], status, want = sleepers ? 4 : 1;
	pid_t helper, pids[66];
	int n = 0;

	SW_CHECK(pipe(p) == 0);
	if ((helper = fork()) == 0) {
		static const char *const argv[] = {"/bin/sh", "-c", "sleep 1000 & sleep 1000",
						   NULL};
		struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = 600000};
		struct sw_sandbox *sb = make(be, SW_SANDBOX_NET_NONE, NULL, env);
		char err[512];

		if (sleepers) {
			SW_CHECK(sw_sandbox_exec_start(sb, &ex, err, sizeof(err)) == 0);
			SW_CHECK(sw_sandbox_flush(sb) == 0);
		}
		for (int i = 0; i < 1000 && nproc_of(sb) < want; i++)
			usleep(10000);
		SW_CHECK(sw_sandbox_stats(sb, &st) == 0 && st.nproc == want);
		st.pids[st.nproc] = st.monitor_pid; /* bwrap itself */
		st.nproc++;
		SW_CHECK(write(p[1], &st, sizeof(st)) == sizeof(st));
		for (;;)
			pause();
	}
	close(p[1]);
	SW_CHECK(read(p[0], &st, sizeof(st)) == sizeof(st));
	close(p[0]);
	for (int i = 0; i < st.nproc; i++) {
		SW_CHECK(pid_alive(st.pids[i]));
		pids[n++] = st.pids[i];
	}
	SW_CHECK(n == want + 1);
	SW_CHECK(kill(helper, SIGKILL) == 0);
	SW_CHECK(waitpid(helper, &status, 0) == helper);
	for (int round = 0; round < 1500; round++) {
		int left = 0;

		while (waitpid(-1, &status, WNOHANG) > 0)
			;
		for (int i = 0; i < n; i++)
			left += pid_alive(pids[i]);
		if (left == 0)
			break;
		usleep(10000);
	}
	for (int i = 0; i < n; i++)
		SW_CHECKF(!pid_alive(pids[i]), "pid %d survived its owner", (int)pids[i]);
}

/* A backend whose "runner" is tests/sandbox/hostile_runner.py. */
static struct sw_sandbox_backend *hostile_backend(char *dir, char *path, size_t pathlen)
{
	struct sw_sandbox_bwrap_config cfg = {.runner_path = path};
	struct sw_sandbox_backend *be;
	char cmd[512], err[512];

	/* The fake runner, where the run uid can read it. */
	SW_CHECK(mkdtemp(dir) != NULL && chmod(dir, 0755) == 0);
	snprintf(path, pathlen, "%s/runner.py", dir);
	snprintf(cmd, sizeof(cmd), "install -m 0755 %s %s", SW_HOSTILE_RUNNER, path);
	SW_CHECK(system(cmd) == 0);
	SW_CHECKF((be = sw_sandbox_bwrap_new(&cfg, err, sizeof(err))) != NULL, "%s", err);
	return be;
}

static void t_parent_kill(void)
{
	static const char *const deaf[] = {"PATH=/usr/bin:/bin", "HOSTILE_MODE=deaf", NULL};
	char dir[] = "/tmp/sw-hostile-XXXXXX", path[256];
	struct sw_sandbox_backend *be;

	/* Orphans come to us, so that we can tell dead from zombie. */
	SW_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	parent_kill_case(backend, NULL, true);
	be = hostile_backend(dir, path, sizeof(path));
	parent_kill_case(be, deaf, false);
	sw_sandbox_backend_free(be);
	unlink(path);
	rmdir(dir);
}

struct hostile_case {
	const char *mode;
	bool at_create; /* fails already at create */
	const char *want;
};

static void t_hostile(void)
{
	static const struct hostile_case cases[] = {
	    {"garbage", true, "protocol error: frame type 222"},
	    {"never_ready", true, "not ready"},
	    {"twice_ready", true, "second READY"},
	    {"early_exit", true, "EXIT with no exec"},
	    {"huge", false, "exceeds"},
	    {"unknown", false, "frame type 200"},
	    {"flags", false, "flags"},
	    {"exec_frame", false, "frame type 1 (EXEC) not accepted"},
	    {"bad_json", false, "bad EXIT"},
	    {"bigrecord", false, "record over"},
	    {"midframe", false, "mid-frame"},
	    {"silent", false, "did not end the command"},
	    {"flood", false, "did not end the command"},
	};
	static const char *const argv[] = {"true", NULL};
	char dir[] = "/tmp/sw-hostile-XXXXXX", path[256], err[512];
	struct sw_sandbox_backend *be = hostile_backend(dir, path, sizeof(path));

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hostile_case *c = &cases[i];
		char mode[64];
		const char *env[] = {"PATH=/usr/bin:/bin", mode, NULL};
		struct sw_sandbox_spec spec = {.variant = variant,
					       .env = env,
					       .workspace = workspace,
					       .start_timeout_ms = 3000};
		struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = 200};
		struct sw_sandbox_result r;
		struct sw_sandbox_stats st;
		struct sw_sandbox *sb;

		snprintf(mode, sizeof(mode), "HOSTILE_MODE=%s", c->mode);
		sb = sw_sandbox_create(be, &spec, err, sizeof(err));
		if (c->at_create) {
			SW_CHECKF(sb == NULL, "%s: created", c->mode);
			SW_CHECKF(strstr(err, c->want) != NULL, "%s: '%s' lacks '%s'", c->mode,
				  err, c->want);
			continue;
		}
		SW_CHECKF(sb != NULL, "%s: %s", c->mode, err);
		SW_CHECK(sw_sandbox_stats(sb, &st) == 0 && st.pid > 0);
		SW_CHECKF(sw_sandbox_run(sb, &ex, 100000, &r, err, sizeof(err)) == -1,
			  "%s: run succeeded", c->mode);
		SW_CHECK(sw_sandbox_dead(sb));
		SW_CHECKF(strstr(err, c->want) != NULL, "%s: '%s' lacks '%s'", c->mode, err,
			  c->want);
		sw_sandbox_destroy(sb, NULL);
		/* The fake runner and everything of its sandbox are gone. */
		SW_CHECKF(!pid_alive(st.pid), "%s: runner %d survived", c->mode, (int)st.pid);
	}
	sw_sandbox_backend_free(be);
	unlink(path);
	rmdir(dir);
	/* And the real runner still works after all that. */
	{
		struct sw_sandbox *sb = sandbox();
		struct sw_sandbox_result r;

		sh(sb, "echo fine", 10000, &r);
		SW_CHECK(strcmp(r.out, "fine\n") == 0);
		sw_sandbox_result_free(&r);
		sw_sandbox_destroy(sb, NULL);
	}
}

/* Whether this host can run policy full (slirp4netns). */
static int full_available(void)
{
	return sw_sandbox_bwrap_full_why(backend) == NULL;
}

/*
 * Every mount line's root (field 4: the path inside its source file
 * system) must be "/", bwrap's own /newroot, or a tail of the mount point
 * itself (/dev/null from devtmpfs's /null): anything else is a host path.
 */
static void check_mountinfo(const char *text, const char *what)
{
	char *copy = strdup(text), *save = NULL;

	SW_CHECK(copy != NULL);
	SW_CHECKF(strstr(text, "sagewai") == NULL && strstr(text, "sw-sbx-test") == NULL,
		  "%s names a host path:\n%s", what, text);
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char root[512], mnt[512];
		size_t lr, lm;

		if (line[0] == '=') /* the separator printed between files */
			continue;
		SW_CHECKF(sscanf(line, "%*s %*s %*s %511s %511s", root, mnt) == 2, "%s", line);
		lr = strlen(root);
		lm = strlen(mnt);
		SW_CHECKF(strcmp(root, "/") == 0 || strcmp(root, "/newroot") == 0 ||
			      (lm >= lr && strcmp(mnt + lm - lr, root) == 0),
			  "%s: host path in %s", what, line);
	}
	free(copy);
}

static void t_mountinfo(void)
{
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;

	/* The control: a host workspace bound in shows its host path. */
	sb = sandbox();
	sh(sb, "cat /proc/self/mountinfo", 10000, &r);
	SW_CHECKF(r.exit.status == 0 && strstr(r.out, workspace) != NULL, "%s", r.out);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);

	/* As sandboxd runs them: tmpfs workspace, runner and /etc copied in. */
	for (int net = SW_SANDBOX_NET_NONE; net <= SW_SANDBOX_NET_FULL; net++) {
		if (net == SW_SANDBOX_NET_FULL && !full_available())
			continue;
		sb = make_tmpfs((enum sw_sandbox_net)net, NULL);
		sh(sb,
		   "cat /proc/self/mountinfo; echo ===; cat /proc/1/mountinfo; echo ===; "
		   "sh -c 'cat /proc/$$/mountinfo'",
		   10000, &r);
		SW_CHECKF(r.exit.status == 0 && strstr(r.out, " /workspace ") != NULL, "%s %s",
			  r.out, r.err);
		check_mountinfo(r.out, "mountinfo");
		sw_sandbox_result_free(&r);
		/* and what it needs is still there */
		sh(sb, "test -x /.sagewai/toolrunner && grep -q '^sandbox:' /etc/passwd && "
		       "grep -q localhost /etc/hosts && touch /workspace/x /tmp/x && id -un",
		   10000, &r);
		SW_CHECKF(r.exit.status == 0 && strcmp(r.out, "sandbox\n") == 0, "%s %s", r.out,
			  r.err);
		sw_sandbox_result_free(&r);
		sw_sandbox_destroy(sb, NULL);
	}
}

static void t_disk(void)
{
	struct sw_sandbox_limits lim = {.disk_bytes = 64ull << 20, .memory_bytes = 512ull << 20};
	struct sw_sandbox *sb = make_tmpfs(SW_SANDBOX_NET_NONE, &lim);
	struct sw_sandbox_result r;

	SW_CHECK(sw_sandbox_limits(sb)->disk_bytes == 64ull << 20);
	sh(sb, "df -k /workspace /tmp | tail -n 2 | awk '{print $2}'", 10000, &r);
	SW_CHECKF(strcmp(r.out, "65536\n65536\n") == 0, "%s %s", r.out, r.err);
	sw_sandbox_result_free(&r);
	/* 600 MiB into 64: dd fails with ENOSPC, the runner says which. */
	sh(sb, "dd if=/dev/zero of=/workspace/f bs=1M count=600", 60000, &r);
	SW_CHECKF(r.exit.status != 0 && r.exit.disk_full != NULL &&
		      strcmp(r.exit.disk_full, "/workspace") == 0,
		  "status %d disk_full %s: %s", r.exit.status,
		  r.exit.disk_full ? r.exit.disk_full : "(none)", r.err);
	sw_sandbox_result_free(&r);
	/* /tmp the same, and an ordinary failure is not blamed on the disk */
	sh(sb, "rm -f /workspace/f; dd if=/dev/zero of=/tmp/f bs=1M count=600", 60000, &r);
	SW_CHECKF(r.exit.status != 0 && r.exit.disk_full != NULL &&
		      strcmp(r.exit.disk_full, "/tmp") == 0, "%s", r.err);
	sw_sandbox_result_free(&r);
	sh(sb, "rm -f /tmp/f; exit 3", 10000, &r);
	SW_CHECK(r.exit.status == 3 && r.exit.disk_full == NULL);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);

	/* The variant's default: 256 MiB. */
	sb = make_tmpfs(SW_SANDBOX_NET_NONE, NULL);
	SW_CHECK(sw_sandbox_limits(sb)->disk_bytes == SW_SANDBOX_DISK_BYTES_DEFAULT);
	sw_sandbox_destroy(sb, NULL);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
    {"mountinfo", t_mountinfo},
    {"disk", t_disk},
    {"python", t_python},
    {"env", t_env},
    {"workspace", t_workspace},
    {"exec_errors", t_exec_errors},
    {"output", t_output},
    {"kill", t_kill},
    {"egress_hook", t_egress_hook},
    {"files", t_files},
    {"proc", t_proc},
    {"write", t_write},
    {"net", t_net},
    {"forkbomb", t_forkbomb},
    {"membomb", t_membomb},
    {"syscalls", t_syscalls},
    {"timeout", t_timeout},
    {"parent_kill", t_parent_kill},
    {"hostile", t_hostile},
    {"cgroup_memory", t_cgroup_memory},
    {"cgroup_pids", t_cgroup_pids},
    {"cgroup_cpu", t_cgroup_cpu},
    {"cgroup_cleanup", t_cgroup_cleanup},
    {"cgroup_sweep", t_cgroup_sweep},
    {"cred", t_cred},
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sandbox_test CASE\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (strcmp(argv[1], tests[i].name) != 0)
			continue;
		setup();
		tests[i].fn();
		teardown();
		if (skipped)
			return 77;
		printf("sandbox_test %s: ok\n", argv[1]);
		return 0;
	}
	fprintf(stderr, "sandbox_test: unknown case %s\n", argv[1]);
	return 2;
}
