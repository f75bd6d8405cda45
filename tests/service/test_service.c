/*
 * service_frame: the daemon frame (libs/service) as a daemon built on it
 * behaves, each case in a child process:
 *   - serve reports its kernel-chosen port in $SAGEWAI_PORT_FILE and the
 *     started line, answers /healthz (and 503 when unhealthy) and /metrics;
 *   - SIGTERM drains (drain, then drained polled until true) and exits 0;
 *     a second signal stops at once, before the drain is done;
 *   - sw_service_fatal exits 1 and runs the halt hook; sw_service_halted
 *     and sw_service_stopping say so, as draining makes the latter say;
 *   - a configure failure exits 2, a start failure exits 1, both stop;
 *   - --help exits 0, an unknown command 2, a subcommand gets its argv;
 * and the worker-thread hand-off: tasks queued by the loop run on the
 * threads, the loop is woken for their results, stop joins them.
 */
#include <fcntl.h>
#include <curl/curl.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw_service.h"
#include "sw_test.h"

static char dir[] = "/tmp/sw_service_XXXXXX";

struct app {
	int unhealthy;
	int fail_configure, fail_start, fatal_after_ms, drain_never;
	int drop_root; /* configure gives up root, as sandboxd's service part does */
	struct event *timer;
	char log[512];
};

static void note(struct app *a, const char *what)
{
	FILE *f = fopen(a->log, "a");

	if (f != NULL) {
		fprintf(f, "%s\n", what);
		fclose(f);
	}
}

static int app_configure(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct app *a = arg;

	(void)svc;
	note(a, "configure");
	if (a->drop_root && geteuid() == 0 &&
	    (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)) {
		snprintf(err, errlen, "cannot drop root");
		return -1;
	}
	if (a->fail_configure) {
		snprintf(err, errlen, "SETTING: bad");
		return -1;
	}
	return 0;
}

static void fatal_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sw_service_fatal(arg, "boom", "on purpose");
}

static int app_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct app *a = arg;
	const char *kv[] = {"role", "test", NULL};

	note(a, "start");
	SW_CHECK(!sw_service_stopping(svc) && !sw_service_halted(svc));
	if (a->fail_start) {
		snprintf(err, errlen, "cannot start on purpose");
		return -1;
	}
	if (sw_service_http(svc, 1024, err, errlen) == NULL)
		return -1;
	SW_CHECK(sw_service_http(svc, 1024, err, errlen) != NULL); /* same one */
	sw_service_started_fields(svc, kv);
	if (a->fatal_after_ms > 0) {
		struct timeval tv = {0, a->fatal_after_ms * 1000};

		a->timer = evtimer_new(sw_service_base(svc), fatal_cb, svc);
		evtimer_add(a->timer, &tv);
	}
	return 0;
}

static void app_drain(struct sw_service *svc, void *arg)
{
	SW_CHECK(sw_service_draining(svc) && sw_service_stopping(svc) && !sw_service_halted(svc));
	note(arg, "drain");
}

static int app_drained(void *arg)
{
	struct app *a = arg;

	return !a->drain_never;
}

static void app_halt(void *arg)
{
	note(arg, "halt");
}

static void app_stop(struct sw_service *svc, void *arg)
{
	struct app *a = arg;

	if (a->timer != NULL)
		event_free(a->timer);
	if (sw_service_halted(svc) && sw_service_stopping(svc))
		note(a, "halted");
	note(a, "stop");
}

static int app_health(void *arg)
{
	return ((struct app *)arg)->unhealthy ? -1 : 0;
}

static int cmd_echo(int argc, char **argv)
{
	return argc == 2 && strcmp(argv[0], "echo") == 0 && strcmp(argv[1], "x") == 0 ? 7 : 3;
}

static const struct sw_service_cmd cmds[] = {{"echo", cmd_echo}, {NULL, NULL}};

static const struct sw_service_def def = {
	.name = "frametest",
	.synopsis = "       sagewai-frametest echo X\n",
	.help = "A daemon for the frame's test.\n",
	.cmds = cmds,
	.drain_ms = 60000,
	.configure = app_configure,
	.start = app_start,
	.drain = app_drain,
	.drained = app_drained,
	.halt = app_halt,
	.stop = app_stop,
	.health = app_health,
};

/* Run sw_service_main in a child with argv; returns its pid. */
static pid_t spawn(struct app *a, int argc, char **argv)
{
	pid_t pid = fork();

	SW_CHECK(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0 && getenv("SW_TEST_VERBOSE") == NULL)
			dup2(fd, 2);
		_exit(sw_service_main(&def, a, argc, argv));
	}
	return pid;
}

static int wait_exit(pid_t pid)
{
	int st;

	SW_CHECK(waitpid(pid, &st, 0) == pid);
	SW_CHECK(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int read_port(const char *path)
{
	int i, port = 0;
	FILE *f;

	for (i = 0; i < 500; i++) {
		if ((f = fopen(path, "r")) != NULL) {
			int got = fscanf(f, "%d", &port);

			fclose(f);
			if (got == 1)
				return port;
		}
		usleep(10000);
	}
	SW_CHECK(!"no port file");
	return 0;
}

/* The port file holds no port: absent, or created empty and never filled. */
static int no_port(const char *path)
{
	struct stat st;

	return stat(path, &st) == -1 || st.st_size == 0;
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return s * n;
}

static long get(int port, const char *path)
{
	char url[128];
	long code = 0;
	CURL *c = curl_easy_init();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
	SW_CHECK(curl_easy_perform(c) == CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	return code;
}

static int logged(struct app *a, const char *what)
{
	char line[64];
	int found = 0;
	FILE *f = fopen(a->log, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		found |= strcmp(line, what) == 0;
	}
	fclose(f);
	return found;
}

static void fresh(struct app *a, const char *name, char *portfile, size_t len)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->log, sizeof(a->log), "%s/%s.log", dir, name);
	snprintf(portfile, len, "%s/%s.port", dir, name);
	setenv("SAGEWAI_PORT_FILE", portfile, 1);
}

static void test_serve_and_drain(void)
{
	char *argv[] = {"sagewai-frametest", NULL};
	char pf[600];
	struct app a;
	pid_t pid;
	int port;

	fresh(&a, "serve", pf, sizeof(pf));
	pid = spawn(&a, 1, argv);
	port = read_port(pf);
	SW_CHECK(port > 0);
	SW_CHECK(get(port, "/healthz") == 200);
	SW_CHECK(get(port, "/metrics") == 200);
	SW_CHECK(get(port, "/nope") == 404);
	SW_CHECK(kill(pid, SIGTERM) == 0);
	SW_CHECK(wait_exit(pid) == 0);
	SW_CHECK(logged(&a, "configure") && logged(&a, "start") && logged(&a, "drain") &&
		 logged(&a, "stop") && !logged(&a, "halt") && !logged(&a, "halted"));

	/* a service that drops root in configure still reports its port, in a
	 * directory only root may write */
	fresh(&a, "dropped", pf, sizeof(pf));
	a.drop_root = 1;
	pid = spawn(&a, 1, argv);
	port = read_port(pf);
	SW_CHECK(port > 0 && get(port, "/healthz") == 200);
	SW_CHECK(kill(pid, SIGTERM) == 0);
	SW_CHECK(wait_exit(pid) == 0);

	/* unhealthy: 503 */
	fresh(&a, "sick", pf, sizeof(pf));
	a.unhealthy = 1;
	pid = spawn(&a, 1, argv);
	port = read_port(pf);
	SW_CHECK(get(port, "/healthz") == 503);
	kill(pid, SIGINT);
	SW_CHECK(wait_exit(pid) == 0);

	/* a drain that never ends: the second signal stops it */
	fresh(&a, "stuck", pf, sizeof(pf));
	a.drain_never = 1;
	pid = spawn(&a, 1, argv);
	read_port(pf);
	SW_CHECK(kill(pid, SIGTERM) == 0);
	while (!logged(&a, "drain"))
		usleep(10000);
	usleep(100000);
	SW_CHECK(waitpid(pid, NULL, WNOHANG) == 0); /* still draining */
	SW_CHECK(kill(pid, SIGTERM) == 0);
	SW_CHECK(wait_exit(pid) == 0);
	SW_CHECK(logged(&a, "stop"));
}

static void test_failures(void)
{
	char *argv[] = {"sagewai-frametest", "serve", NULL};
	char pf[600];
	struct app a;

	fresh(&a, "fatal", pf, sizeof(pf));
	a.fatal_after_ms = 50;
	SW_CHECK(wait_exit(spawn(&a, 2, argv)) == 1);
	SW_CHECK(logged(&a, "halt") && logged(&a, "halted") && logged(&a, "stop"));

	fresh(&a, "conf", pf, sizeof(pf));
	a.fail_configure = 1;
	SW_CHECK(wait_exit(spawn(&a, 2, argv)) == 2);
	SW_CHECK(!logged(&a, "start") && no_port(pf));

	fresh(&a, "start", pf, sizeof(pf));
	a.fail_start = 1;
	SW_CHECK(wait_exit(spawn(&a, 2, argv)) == 1);
	SW_CHECK(logged(&a, "stop") && no_port(pf));

	/* a configuration that cannot load: exit 2 before anything */
	fresh(&a, "badport", pf, sizeof(pf));
	setenv("SAGEWAI_HTTP_PORT", "99999", 1);
	SW_CHECK(wait_exit(spawn(&a, 2, argv)) == 2);
	SW_CHECK(!logged(&a, "configure"));
	unsetenv("SAGEWAI_HTTP_PORT");
}

/* A TCP connection to the service, held open (nothing sent). */
static int hold(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	SW_CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return fd;
}

/* The soft open-files limit of process pid, from /proc/pid/limits. */
static long long soft_nofile(pid_t pid)
{
	char path[64], line[256];
	long long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	SW_CHECK((f = fopen(path, "r")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Max open files", 14) == 0)
			n = strtoll(line + 14, NULL, 10);
	fclose(f);
	return n;
}

/*
 * SAGEWAI_HTTP_MAX_CONNECTIONS: a bad value stops the start; a value caps the open connections
 * (one more gets 503); a cap above the open-files limit raises it, or the start fails.
 */
static void test_max_connections(void)
{
	char *argv[] = {"sagewai-frametest", "serve", NULL};
	char pf[600];
	struct rlimit rl;
	struct app a;
	int port, fd[2];
	pid_t pid;

	fresh(&a, "capbad", pf, sizeof(pf));
	setenv("SAGEWAI_HTTP_MAX_CONNECTIONS", "0", 1);
	SW_CHECK(wait_exit(spawn(&a, 2, argv)) == 1);
	SW_CHECK(logged(&a, "stop") && no_port(pf));

	fresh(&a, "cap2", pf, sizeof(pf));
	setenv("SAGEWAI_HTTP_MAX_CONNECTIONS", "2", 1);
	pid = spawn(&a, 2, argv);
	port = read_port(pf);
	SW_CHECK(get(port, "/healthz") == 200);
	fd[0] = hold(port);
	fd[1] = hold(port);
	usleep(200000); /* both accepted */
	SW_CHECK(get(port, "/healthz") == 503);
	close(fd[0]);
	close(fd[1]);
	for (int i = 0; i < 100 && get(port, "/healthz") != 200; i++)
		usleep(20000);
	SW_CHECK(get(port, "/healthz") == 200);
	SW_CHECK(kill(pid, SIGTERM) == 0 && wait_exit(pid) == 0);

	SW_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	fresh(&a, "capfiles", pf, sizeof(pf));
	setenv("SAGEWAI_HTTP_MAX_CONNECTIONS", "5000", 1);
	pid = spawn(&a, 2, argv);
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= 5256) {
		port = read_port(pf);
		SW_CHECK(port > 0 && soft_nofile(pid) >= 5256);
		SW_CHECK(kill(pid, SIGTERM) == 0 && wait_exit(pid) == 0);
	} else {
		SW_CHECK(wait_exit(pid) == 1 && no_port(pf));
	}
	unsetenv("SAGEWAI_HTTP_MAX_CONNECTIONS");
}

static void test_commands(void)
{
	char *help[] = {"x", "--help", NULL}, *unk[] = {"x", "frobnicate", NULL};
	char *echo[] = {"x", "echo", "x", NULL}, *extra[] = {"x", "serve", "more", NULL};
	struct app a;
	char pf[600];

	fresh(&a, "cmd", pf, sizeof(pf));
	SW_CHECK(wait_exit(spawn(&a, 2, help)) == 0);
	SW_CHECK(wait_exit(spawn(&a, 2, unk)) == 2);
	SW_CHECK(wait_exit(spawn(&a, 3, echo)) == 7);
	SW_CHECK(wait_exit(spawn(&a, 3, extra)) == 2);
	SW_CHECK(!logged(&a, "configure"));
}

/* ---- hand-off ---- */

struct task {
	TAILQ_ENTRY(task) entry;
	int in, out;
};
TAILQ_HEAD(taskq, task);

struct pool {
	struct sw_handoff h;
	struct taskq todo, done;
	struct event_base *base;
	int finished, total;
};

static void *pool_thread(struct sw_handoff *h, void *arg)
{
	struct pool *p = arg;
	struct task *t;

	sw_handoff_lock(h);
	for (;;) {
		while (TAILQ_EMPTY(&p->todo))
			if (!sw_handoff_wait(h))
				goto out;
		t = TAILQ_FIRST(&p->todo);
		TAILQ_REMOVE(&p->todo, t, entry);
		sw_handoff_unlock(h);
		t->out = t->in * t->in;
		sw_handoff_lock(h);
		TAILQ_INSERT_TAIL(&p->done, t, entry);
		sw_handoff_wake(h);
	}
out:
	sw_handoff_unlock(h);
	return NULL;
}

static void pool_loop(void *arg)
{
	struct pool *p = arg;
	struct taskq got;
	struct task *t;

	TAILQ_INIT(&got);
	sw_handoff_lock(&p->h);
	TAILQ_CONCAT(&got, &p->done, entry);
	sw_handoff_unlock(&p->h);
	while ((t = TAILQ_FIRST(&got)) != NULL) {
		TAILQ_REMOVE(&got, t, entry);
		SW_CHECK(t->out == t->in * t->in);
		p->finished++;
		free(t);
	}
	if (p->finished == p->total)
		event_base_loopbreak(p->base);
}

static void test_handoff(void)
{
	struct pool p;
	char err[128];
	int i;

	SW_CHECK(evthread_use_pthreads() == 0);
	memset(&p, 0, sizeof(p));
	TAILQ_INIT(&p.todo);
	TAILQ_INIT(&p.done);
	SW_CHECK((p.base = event_base_new()) != NULL);
	SW_CHECK(sw_handoff_start(&p.h, p.base, 3, pool_thread, pool_loop, &p, err,
				  sizeof(err)) == 0);
	p.total = 1000;
	for (i = 0; i < p.total; i++) {
		struct task *t = calloc(1, sizeof(*t));

		t->in = i;
		sw_handoff_lock(&p.h);
		TAILQ_INSERT_TAIL(&p.todo, t, entry);
		sw_handoff_signal(&p.h, 0);
		sw_handoff_unlock(&p.h);
	}
	/* the wake event is never added: without other events the loop would
	 * end as soon as it has nothing active, before the threads are done */
	event_base_loop(p.base, EVLOOP_NO_EXIT_ON_EMPTY);
	SW_CHECK(p.finished == p.total);
	SW_CHECK(sw_handoff_stop(&p.h, 5000) == 0);
	SW_CHECK(sw_handoff_stop(&p.h, 5000) == 0); /* twice is harmless */

	/* no thread: the loop side alone */
	SW_CHECK(sw_handoff_start(&p.h, p.base, 0, pool_thread, pool_loop, &p, err,
				  sizeof(err)) == 0);
	SW_CHECK(sw_handoff_stop(&p.h, 0) == 0);
	event_base_free(p.base);
}

int main(void)
{
	char cmd[128];

	SW_CHECK(mkdtemp(dir) != NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	test_commands();
	test_serve_and_drain();
	test_failures();
	test_max_connections();
	test_handoff();
	curl_global_cleanup();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	SW_CHECK(system(cmd) == 0);
	printf("service_frame: ok\n");
	return 0;
}
