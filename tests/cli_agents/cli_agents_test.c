/*
 * cli_agents_test: the real agent CLIs, inside real sandboxes, against the
 * scripted model endpoint.
 *
 *   cli_agents_test CASE     claude | codex | gemini | multi
 *
 * For claude, codex and gemini: the variant of that name (its root built by
 * tools/variant-build, bound read-only at /opt/sagewai/NAME) is loaded from
 * the catalogue and a bubblewrap sandbox made from it through libs/sandbox
 * (seccomp, rlimits, the tool runner as pid 1, uid 65534), with network
 * egress_only and no proxy: its namespace holds only lo, where the test's
 * egress hook listens on 127.0.0.1 and a bridge thread forwards each
 * connection to sagewai-llm-mock on the host's loopback -- the sandbox
 * reaches the model endpoint and nothing else. /workspace is a host
 * directory (read-write), HOME a directory on the sandbox's /tmp. The CLI
 * runs headless with the flags and environment of docs/AGENTS.md; the mock
 * plays the script: write index.html (through the CLI's own write tool, or a
 * shell command for codex), run ls, say done. Checked: the CLI exits 0,
 * index.html on the host has exactly the scripted content, the mock saw
 * three authorized requests whose last carries the output of ls (naming
 * index.html), every request the CLI sent went to the scripted endpoint, and
 * the key never shows in the mock's record. The run's wall time is printed
 * (docs/BENCHMARKS.md).
 *
 * multi: the multi variant offers all three CLIs on PATH (each --version).
 *
 * A variant root that is not built fails the test, unless the npm registry
 * is unreachable (then it exits 77, skipped, saying so): tools/setup builds
 * the roots, and a machine that can reach the registry has no excuse.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sw_sandbox.h"
#include "sw_test.h"

extern char **environ;

#define KEY "sk-mock-9f2c41d7e0b3a6c5"
#define PAGE                                                                                      \
	"<!doctype html>\n<h1>Built by a scripted agent</h1>\n<p>caf\xc3\xa9 \"quotes\" 'and' "   \
	"$HOME</p>\n"

static char tmpdir[] = "/tmp/sw-cli-agents-XXXXXX";
static char workspace[512];
static pid_t mock_pid = -1;
static int mock_port;

/* ---- the bridge: sandbox loopback -> host loopback ---------------------- */

struct hook_ctx {
	int listen_fd;
	int port; /* in the sandbox */
};

static int egress_hook(void *arg, int netns_fd, pid_t pid, char *errstr, size_t errlen)
{
	struct hook_ctx *c = arg;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), rc = -1;

	if (self < 0 || pid <= 1 || setns(netns_fd, CLONE_NEWNET) != 0) {
		snprintf(errstr, errlen, "setns: %s", strerror(errno));
		goto out;
	}
	c->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->listen_fd >= 0 && sw_sandbox_bind_loopback(c->listen_fd, 0, 2000) == 0 &&
	    listen(c->listen_fd, 16) == 0 &&
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

#define PAIRS 32

struct bridge {
	int listen_fd, stop[2];
	int fd[PAIRS][2]; /* [0] sandbox side, [1] mock side; -1 unused */
	int eof[PAIRS][2];
	unsigned long accepted;
	pthread_t th;
};

static int connect_mock(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)mock_port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void pair_close(struct bridge *b, int i)
{
	close(b->fd[i][0]);
	close(b->fd[i][1]);
	b->fd[i][0] = b->fd[i][1] = -1;
}

/* One thread forwarding bytes both ways, a connection to the mock per
 * connection from the sandbox, half-closes passed on. */
static void *bridge_main(void *arg)
{
	struct bridge *b = arg;
	static char buf[65536];

	for (;;) {
		struct pollfd p[2 + 2 * PAIRS];
		int who[2 + 2 * PAIRS][2], n = 0;

		p[n] = (struct pollfd){.fd = b->stop[0], .events = POLLIN};
		who[n][0] = -1;
		n++;
		p[n] = (struct pollfd){.fd = b->listen_fd, .events = POLLIN};
		who[n][0] = -2;
		n++;
		for (int i = 0; i < PAIRS; i++)
			for (int s = 0; s < 2; s++)
				if (b->fd[i][s] >= 0 && !b->eof[i][s]) {
					p[n] =
					    (struct pollfd){.fd = b->fd[i][s], .events = POLLIN};
					who[n][0] = i;
					who[n][1] = s;
					n++;
				}
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (p[0].revents)
			return NULL;
		if (p[1].revents & POLLIN) {
			int c = accept4(b->listen_fd, NULL, NULL, SOCK_CLOEXEC), i;

			for (i = 0; c >= 0 && i < PAIRS && b->fd[i][0] >= 0; i++)
				;
			if (c >= 0 && i < PAIRS && (b->fd[i][1] = connect_mock()) >= 0) {
				b->fd[i][0] = c;
				b->eof[i][0] = b->eof[i][1] = 0;
				b->accepted++;
			} else if (c >= 0) {
				close(c);
			}
		}
		for (int k = 2; k < n; k++) {
			int i = who[k][0], s = who[k][1];
			ssize_t r;

			if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR)) || b->fd[i][s] < 0)
				continue;
			r = read(b->fd[i][s], buf, sizeof(buf));
			if (r > 0 && write_all(b->fd[i][!s], buf, (size_t)r) == 0)
				continue;
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0) {
				b->eof[i][s] = 1;
				shutdown(b->fd[i][!s], SHUT_WR);
				if (b->eof[i][!s])
					pair_close(b, i);
			} else {
				pair_close(b, i);
			}
		}
	}
}

static void bridge_start(struct bridge *b, int listen_fd)
{
	memset(b, 0, sizeof(*b));
	memset(b->fd, -1, sizeof(b->fd));
	b->listen_fd = listen_fd;
	SW_CHECK(pipe2(b->stop, O_CLOEXEC) == 0);
	SW_CHECK(pthread_create(&b->th, NULL, bridge_main, b) == 0);
}

static void bridge_stop(struct bridge *b)
{
	SW_CHECK(write(b->stop[1], "x", 1) == 1);
	pthread_join(b->th, NULL);
	for (int i = 0; i < PAIRS; i++)
		if (b->fd[i][0] >= 0)
			pair_close(b, i);
	close(b->stop[0]);
	close(b->stop[1]);
	close(b->listen_fd);
}

/* ---- the mock ------------------------------------------------------------ */

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	SW_CHECKF(f != NULL, "%s: %s", path, strerror(errno));
	fputs(s, f);
	SW_CHECK(fclose(f) == 0);
}

static void mock_start(void)
{
	char script_path[600], key_path[600], port_path[600], out[600], log[600], *script;
	posix_spawn_file_actions_t fa;
	json_t *s;
	FILE *f;

	snprintf(script_path, sizeof(script_path), "%s/script.json", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key", tmpdir);
	snprintf(port_path, sizeof(port_path), "%s/port", tmpdir);
	snprintf(out, sizeof(out), "%s/mock.out", tmpdir);
	snprintf(log, sizeof(log), "%s/mock.log", tmpdir);
	s = json_pack("[{s:s, s:s, s:s}, {s:s, s:s}, {s:s}]", "tool", "write", "path",
		      "index.html", "content", PAGE, "tool", "bash", "command", "ls", "text",
		      "done");
	SW_CHECK(s != NULL && (script = json_dumps(s, 0)) != NULL);
	write_file(script_path, script);
	free(script);
	json_decref(s);
	write_file(key_path, KEY "\n");
	{
		const char *argv[] = {
		    SW_LLM_MOCK, "--port",    "0",	   "--port-file", port_path,
		    "--script",	 script_path, "--workdir", "/workspace",  "--require-key-file",
		    key_path,	 "--log",     log,	   NULL};

		SW_CHECK(posix_spawn_file_actions_init(&fa) == 0);
		posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
		SW_CHECK(posix_spawn(&mock_pid, SW_LLM_MOCK, &fa, NULL, (char **)argv, environ) ==
			 0);
		posix_spawn_file_actions_destroy(&fa);
	}
	for (int i = 0; i < 500 && mock_port == 0; i++) {
		if ((f = fopen(port_path, "r")) != NULL) {
			if (fscanf(f, "%d", &mock_port) != 1)
				mock_port = 0;
			fclose(f);
		}
		if (mock_port == 0)
			usleep(10000);
	}
	SW_CHECKF(mock_port > 0, "the mock did not start (see %s)", out);
}

static void mock_stop(void)
{
	if (mock_pid > 0) {
		kill(mock_pid, SIGTERM);
		waitpid(mock_pid, NULL, 0);
		mock_pid = -1;
	}
}

/* GET path from the mock; the parsed JSON body. */
static json_t *mock_get(const char *path)
{
	char req[256], *buf = malloc(64u << 20), *body;
	size_t have = 0;
	ssize_t r;
	json_t *j;
	int fd = connect_mock();

	SW_CHECK(fd >= 0 && buf != NULL);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	SW_CHECK(write_all(fd, req, strlen(req)) == 0);
	while ((r = read(fd, buf + have, (64u << 20) - 1 - have)) > 0)
		have += (size_t)r;
	close(fd);
	buf[have] = '\0';
	SW_CHECKF(strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 ") != NULL, "%.200s", buf);
	SW_CHECK((body = strstr(buf, "\r\n\r\n")) != NULL);
	j = json_loads(body + 4, 0, NULL);
	SW_CHECK(j != NULL);
	free(buf);
	return j;
}

/* ---- the sandbox ----------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void cleanup(void)
{
	mock_stop();
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The variant's root must be built; if not, fail -- or skip (77) when the
 * npm registry cannot be reached from here, the one excuse. */
static void require_built(const struct sw_sandbox_variant *v)
{
	for (size_t i = 0; i < v->n_ro_binds; i++) {
		char marker[600];
		int rc;

		if (strncmp(v->ro_binds[i].at, "/opt/sagewai/", 13) != 0)
			continue;
		snprintf(marker, sizeof(marker), "%s/.sagewai-variant", v->ro_binds[i].path);
		if (access(marker, R_OK) == 0)
			continue;
		rc = system("timeout 20 npm ping >/dev/null 2>&1");
		if (rc != 0) {
			printf(
			    "SKIP: variant %s is not built (%s missing) and the npm registry is "
			    "unreachable (npm ping failed), so tools/setup could not build it\n",
			    v->name, marker);
			cleanup();
			exit(77);
		}
		fprintf(stderr,
			"variant %s is not built (%s missing) although the npm registry is "
			"reachable: run tools/setup (or tools/variant-build %s)\n",
			v->name, marker, v->name);
		cleanup();
		exit(1);
	}
}

static struct sw_sandbox_backend *backend;

static struct sw_sandbox_variant *load_variant(const char *name)
{
	struct sw_sandbox_variant *v;
	char err[512];

	SW_CHECKF((v = sw_sandbox_variant_load(SW_VARIANTS_DIR, name, err, sizeof(err))) != NULL,
		  "%s", err);
	require_built(v);
	return v;
}

static void run(struct sw_sandbox *sb, const char *const *argv, const char *const *env,
		const char *stdin_data, uint32_t timeout_ms, struct sw_sandbox_result *res)
{
	struct sw_sandbox_exec ex = {.argv = argv,
				     .env = env,
				     .timeout_ms = timeout_ms,
				     .stdin_data = stdin_data,
				     .stdin_len = stdin_data ? strlen(stdin_data) : 0};
	char err[512];

	SW_CHECKF(sw_sandbox_run(sb, &ex, 4u << 20, res, err, sizeof(err)) == 0, "%s", err);
}

/* Write stdin to the file path inside the sandbox (its directory made). */
static void put_file(struct sw_sandbox *sb, const char *path, const char *content)
{
	const char *argv[] = {"sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"",
			      "sh", path, NULL};
	struct sw_sandbox_result r;

	run(sb, argv, NULL, content, 10000, &r);
	SW_CHECKF(r.exit.status == 0, "writing %s: %s", path, r.err);
	sw_sandbox_result_free(&r);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the cases ---------------------------------------------------------------- */

struct cli {
	const char *name;   /* the case and the variant */
	const char *config; /* a file to write in the sandbox, or NULL */
	const char *config_text;
	const char *const *argv;
	const char *env[8]; /* beyond PATH and HOME; "%d" is the port */
};

#define PROMPT "Build index.html for the brief, then list the directory."

static const char *const claude_argv[] = {"claude", "-p", PROMPT, "--dangerously-skip-permissions",
					  NULL};
static const char *const codex_argv[] = {
    "codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
    PROMPT,  NULL};
static const char *const gemini_argv[] = {"gemini", "-m", "gemini-2.5-pro", "-p", PROMPT,
					  "--yolo", NULL};

static const char codex_config[] = "model = \"mock-codex\"\n"
				   "model_provider = \"sagewai\"\n"
				   "check_for_update_on_startup = false\n"
				   "[model_providers.sagewai]\n"
				   "name = \"sagewai\"\n"
				   "base_url = \"http://127.0.0.1:%d/v1\"\n"
				   "wire_api = \"responses\"\n"
				   "env_key = \"OPENAI_API_KEY\"\n"
				   "request_max_retries = 0\n"
				   "stream_max_retries = 0\n"
				   "[analytics]\n"
				   "enabled = false\n"
				   "[features]\n"
				   "plugins = false\n"
				   "apps = false\n"
				   "remote_plugin = false\n";

static const char gemini_settings[] =
    "{\"security\": {\"auth\": {\"selectedType\": \"gemini-api-key\"},"
    " \"folderTrust\": {\"enabled\": false}},"
    " \"privacy\": {\"usageStatisticsEnabled\": false},"
    " \"general\": {\"disableAutoUpdate\": true, \"disableUpdateNag\": true},"
    " \"telemetry\": {\"enabled\": false}}\n";

static const struct cli clis[] = {
    {"claude-code",
     NULL,
     NULL,
     claude_argv,
     {"ANTHROPIC_BASE_URL=http://127.0.0.1:%d", "ANTHROPIC_API_KEY=" KEY,
      "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "CLAUDE_CODE_MAX_RETRIES=0",
      "CLAUDE_CODE_TMPDIR=/tmp", "IS_SANDBOX=1", NULL}},
    {"codex",
     "/tmp/home/.codex/config.toml",
     codex_config,
     codex_argv,
     {"CODEX_HOME=/tmp/home/.codex", "OPENAI_API_KEY=" KEY, NULL}},
    {"gemini",
     "/tmp/home/.gemini/settings.json",
     gemini_settings,
     gemini_argv,
     {"GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:%d", "GEMINI_API_KEY=" KEY,
      "NODE_OPTIONS=--disable-wasm-trap-handler", "GEMINI_CLI_NO_RELAUNCH=true", NULL}},
};

static void check_requests(const char *cli, const char *expect_provider)
{
	json_t *all = mock_get("/v1/mock/requests"), *reqs = json_object_get(all, "requests"), *e;
	json_t *last = NULL;
	size_t i, scripted = 0;
	char *dump;

	SW_CHECK(json_is_array(reqs));
	json_array_foreach(reqs, i, e) {
		const char *prov = json_string_value(json_object_get(e, "provider"));

		SW_CHECKF(json_integer_value(json_object_get(e, "status")) == 200,
			  "%s: request %zu: %s", cli, i,
			  json_string_value(json_object_get(e, "error")));
		SW_CHECKF(prov && strcmp(prov, expect_provider) == 0, "%s: request %zu went to %s",
			  cli, i, prov);
		SW_CHECK(json_is_true(json_object_get(e, "authorized")));
		if (json_array_size(json_object_get(e, "tools")) > 0) {
			scripted++;
			last = e;
		}
	}
	SW_CHECKF(scripted == 3, "%s: %zu scripted requests, want 3", cli, scripted);
	/* the last one carries ls's output and is answered "done" */
	{
		json_t *results = json_object_get(last, "tool_results"), *r;
		int saw_ls = 0;

		SW_CHECK(json_integer_value(json_object_get(last, "turn")) == 2);
		SW_CHECK(json_array_size(results) >= 2);
		r = json_array_get(results, json_array_size(results) - 1);
		saw_ls = json_is_string(r) && strstr(json_string_value(r), "index.html") != NULL;
		SW_CHECKF(saw_ls, "%s: the last tool result is not ls's: %s", cli,
			  json_string_value(r));
		SW_CHECK(strcmp(json_string_value(
				    json_object_get(json_object_get(last, "reply"), "text")),
				"done") == 0);
	}
	/* the key is in no record (headers redacted) */
	dump = json_dumps(all, JSON_COMPACT);
	SW_CHECK(dump != NULL);
	SW_CHECKF(strstr(dump, KEY) == NULL, "%s: the key shows in the mock's record", cli);
	free(dump);
	printf("%s: %zu requests, %zu scripted; the last carried ls's output\n", cli,
	       json_array_size(reqs), scripted);
	json_decref(all);
}

static void t_cli(const struct cli *c)
{
	static const char *const provider[] = {"anthropic", "responses", "gemini"};
	struct sw_sandbox_variant *v = load_variant(c->name);
	struct hook_ctx hook = {.listen_fd = -1};
	char path[1024], envbuf[8][256], page[4096], err[512], file[600], *cfg = NULL;
	const char *base_env[3], *env[9];
	struct sw_sandbox_spec spec = {0};
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;
	struct bridge br;
	int64_t t0, wall;
	size_t n = 0;
	FILE *f;

	mock_start();
	SW_CHECK(sw_sandbox_variant_path(v, "/usr/local/bin:/usr/bin:/bin", path + 5,
					 sizeof(path) - 5) == 0);
	memcpy(path, "PATH=", 5);
	base_env[0] = path;
	base_env[1] = "HOME=/tmp/home";
	base_env[2] = NULL;
	spec.variant = v;
	spec.net = SW_SANDBOX_NET_EGRESS_ONLY;
	spec.env = base_env;
	spec.workspace = workspace;
	spec.egress_hook = egress_hook;
	spec.egress_arg = &hook;
	SW_CHECKF((sb = sw_sandbox_create(backend, &spec, err, sizeof(err))) != NULL, "%s", err);
	bridge_start(&br, hook.listen_fd);

	if (c->config != NULL) {
		SW_CHECK(asprintf(&cfg, c->config_text, hook.port) > 0);
		put_file(sb, c->config, cfg);
		free(cfg);
	}
	for (size_t i = 0; c->env[i] != NULL; i++) {
		snprintf(envbuf[i], sizeof(envbuf[i]), c->env[i], hook.port);
		env[n++] = envbuf[i];
	}
	env[n] = NULL;

	t0 = now_ms();
	run(sb, c->argv, env, NULL, 150000, &r);
	wall = now_ms() - t0;
	printf("%s: exit %d, %lld ms wall (the CLI's run, in the sandbox)\n", c->name,
	       r.exit.status, (long long)wall);
	SW_CHECKF(r.exit.status == 0 && !r.exit.timed_out,
		  "%s failed: %s\nstdout: %.2000s\nstderr: %.4000s", c->name,
		  r.exit.error ? r.exit.error : "", r.out, r.err);
	if (getenv("SW_CLI_AGENTS_VERBOSE") != NULL)
		printf("stdout: %s\nstderr: %s\n", r.out, r.err);
	sw_sandbox_result_free(&r);

	/* the file, written through the CLI's own tool, on the host */
	snprintf(file, sizeof(file), "%s/index.html", workspace);
	SW_CHECKF((f = fopen(file, "r")) != NULL, "%s: no index.html in the workspace", c->name);
	n = fread(page, 1, sizeof(page) - 1, f);
	page[n] = '\0';
	fclose(f);
	SW_CHECKF(strcmp(page, PAGE) == 0, "%s: index.html holds %s", c->name, page);

	bridge_stop(&br);
	SW_CHECK(br.accepted >= 1);
	check_requests(c->name, provider[c - clis]);
	sw_sandbox_destroy(sb, NULL);
	sw_sandbox_variant_free(v);
}

/* The multi variant puts all three CLIs on PATH. */
static void t_multi(void)
{
	struct sw_sandbox_variant *v = load_variant("multi");
	static const char *const argv[] = {
	    "sh", "-c", "claude --version && codex --version && gemini --version", NULL};
	static const char *const env[] = {"NODE_OPTIONS=--disable-wasm-trap-handler", NULL};
	char path[1024], err[512];
	const char *base_env[] = {path, "HOME=/tmp", NULL};
	struct sw_sandbox_spec spec = {
	    .variant = v, .net = SW_SANDBOX_NET_NONE, .env = base_env, .workspace = workspace};
	struct sw_sandbox_result r;
	struct sw_sandbox *sb;

	memcpy(path, "PATH=", 5);
	SW_CHECK(sw_sandbox_variant_path(v, "/usr/bin:/bin", path + 5, sizeof(path) - 5) == 0);
	SW_CHECKF((sb = sw_sandbox_create(backend, &spec, err, sizeof(err))) != NULL, "%s", err);
	run(sb, argv, env, NULL, 60000, &r);
	SW_CHECKF(r.exit.status == 0, "status %d: %s %s", r.exit.status, r.out, r.err);
	SW_CHECKF(strstr(r.out, "(Claude Code)") != NULL && strstr(r.out, "codex-cli") != NULL,
		  "%s", r.out);
	printf("multi:\n%s", r.out);
	sw_sandbox_result_free(&r);
	sw_sandbox_destroy(sb, NULL);
	sw_sandbox_variant_free(v);
}

int main(int argc, char **argv)
{
	struct sw_sandbox_bwrap_config cfg = {.runner_path = SW_TOOLRUNNER, .cgroup = "auto"};
	char err[512];
	const char *which = argc > 1 ? argv[1] : "";

	signal(SIGPIPE, SIG_IGN);
	atexit(mock_stop); /* a failed check exits: never leave the mock running */
	SW_CHECK(mkdtemp(tmpdir) != NULL && chmod(tmpdir, 0755) == 0);
	snprintf(workspace, sizeof(workspace), "%s/workspace", tmpdir);
	SW_CHECK(mkdir(workspace, 0755) == 0);
	SW_CHECKF((backend = sw_sandbox_bwrap_new(&cfg, err, sizeof(err))) != NULL, "%s", err);
	if (strcmp(which, "claude") == 0)
		t_cli(&clis[0]);
	else if (strcmp(which, "codex") == 0)
		t_cli(&clis[1]);
	else if (strcmp(which, "gemini") == 0)
		t_cli(&clis[2]);
	else if (strcmp(which, "multi") == 0)
		t_multi();
	else {
		fprintf(stderr, "usage: cli_agents_test claude|codex|gemini|multi\n");
		return 2;
	}
	sw_sandbox_backend_free(backend);
	cleanup();
	printf("cli_agents_test %s: ok\n", which);
	return 0;
}
