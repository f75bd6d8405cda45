/*
 * sw_test_proc: service processes of a black-box test, their logs, /proc.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sw_test_svc.h"

#define MAX_LOGS 8
#define MAX_WATCHED 8

static struct {
	char path[600];
	int lines;
} logs[MAX_LOGS];
static int nlogs;

static pid_t *watched[MAX_WATCHED];
static int nwatched;

void sw_test_msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

const struct sw_test_scenario *
sw_test_scenario_pick(int argc, char **argv, const struct sw_test_scenario *table, size_t n)
{
	size_t i;

	for (i = 0; argc == 2 && i < n; i++) {
		if (strcmp(argv[1], table[i].name) != 0)
			continue;
		signal(SIGPIPE, SIG_IGN);
		SW_CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
		return &table[i];
	}
	fprintf(stderr, "usage: %s SCENARIO, one of:", argc > 0 ? argv[0] : "test");
	for (i = 0; i < n; i++)
		fprintf(stderr, " %s", table[i].name);
	fputc('\n', stderr);
	exit(2);
}

void sw_test_log_watch(const char *path, int lines)
{
	SW_CHECK(nlogs < MAX_LOGS && strlen(path) < sizeof(logs[0].path));
	snprintf(logs[nlogs].path, sizeof(logs[nlogs].path), "%s", path);
	logs[nlogs++].lines = lines;
}

void sw_test_log_show(void)
{
	char cmd[sizeof(logs[0].path) + 64];
	int i;

	for (i = 0; i < nlogs && i < MAX_LOGS; i++) {
		snprintf(cmd, sizeof(cmd), "tail -n %d %.*s >&2 2>/dev/null", logs[i].lines,
			 (int)sizeof(logs[i].path), logs[i].path);
		if (system(cmd) != 0)
			fprintf(stderr, "(no log %s)\n", logs[i].path);
	}
}

static void kill_watched(void)
{
	int i, j;

	for (i = 0; i < nwatched; i++) {
		pid_t pid = *watched[i];

		for (j = 0; j < i; j++)
			if (*watched[j] == pid)
				break;
		if (pid > 0 && j == i) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
	}
}

void sw_test_proc_watch(pid_t *pid)
{
	SW_CHECK(nwatched < MAX_WATCHED);
	if (nwatched == 0)
		atexit(kill_watched);
	watched[nwatched++] = pid;
}

pid_t sw_test_proc_spawn(const char *path, const char *const *argv, const char *const *env,
			 const char *log)
{
	pid_t pid = fork();

	SW_CHECK(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		signal(SIGPIPE, SIG_DFL); /* as from a shell, whatever the test ignores */
		for (; env != NULL && *env != NULL; env++) {
			if (strchr(*env, '=') != NULL)
				putenv((char *)*env);
			else
				unsetenv(*env);
		}
		execv(path, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int sw_test_proc_running(pid_t pid)
{
	return waitpid(pid, NULL, WNOHANG) == 0;
}

void sw_test_proc_stop(pid_t *pid, int sig, const char *name)
{
	pid_t p = *pid;
	int status;

	if (p < 0)
		return;
	kill(p, sig);
	SW_CHECK(waitpid(p, &status, 0) == p);
	*pid = -1;
	if (sig == SIGTERM)
		SW_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			   "%s did not exit cleanly on SIGTERM (status %d)", name, status);
}

int sw_test_proc_wait_port(pid_t pid, const char *name, const char *log, const char *started)
{
	static const char key[] = "\"http_port\":\"";
	int i, port = 0;

	for (i = 0; i < 600 && port == 0; i++) {
		char line[4096];
		FILE *f = fopen(log, "r");

		while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			char *p = strstr(line, key);

			if (strstr(line, started) && p != NULL)
				port = atoi(p + strlen(key));
		}
		if (f != NULL)
			fclose(f);
		SW_REQUIRE(sw_test_proc_running(pid), "%s exited at start", name);
		if (port == 0)
			sw_test_msleep(50);
	}
	SW_REQUIRE(port > 0, "%s did not log its port", name);
	return port;
}

ssize_t sw_test_proc_read(pid_t pid, const char *file, char *buf, size_t len)
{
	char path[64];
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	if ((fd = open(path, O_RDONLY)) < 0)
		return -1;
	r = read(fd, buf, len - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = '\0';
	return r;
}

pid_t sw_test_proc_ppid(pid_t pid)
{
	char buf[512], *p;
	int ppid;

	/* "pid (comm) state ppid ...": comm may hold anything, even ") " */
	if (sw_test_proc_read(pid, "stat", buf, sizeof(buf)) < 0 ||
	    (p = strrchr(buf, ')')) == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

int sw_test_proc_alive(pid_t pid)
{
	char buf[512], *p;

	if (sw_test_proc_read(pid, "stat", buf, sizeof(buf)) < 0)
		return 0;
	p = strrchr(buf, ')');
	return p != NULL && p[2] != 'Z' && p[2] != 'X';
}

int sw_test_procs_holding(const char *file, const char *needle)
{
	static char buf[65536];
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	SW_CHECK(d != NULL);
	while ((e = readdir(d)) != NULL) {
		pid_t p = atoi(e->d_name);
		ssize_t r;

		if (p <= 0)
			continue;
		r = sw_test_proc_read(p, file, buf, sizeof(buf));
		if (r > 0 && memmem(buf, (size_t)r, needle, strlen(needle)) != NULL)
			n++;
	}
	closedir(d);
	return n;
}

size_t sw_test_proc_descendants(pid_t pid, pid_t *out, size_t max)
{
	size_t n = 0, i;

	out[n++] = pid;
	for (i = 0; i < n; i++) {
		DIR *d = opendir("/proc");
		struct dirent *e;

		SW_CHECK(d != NULL);
		while ((e = readdir(d)) != NULL && n < max) {
			pid_t p = atoi(e->d_name);

			if (p > 0 && sw_test_proc_ppid(p) == out[i])
				out[n++] = p;
		}
		closedir(d);
	}
	return n;
}

void sw_test_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	SW_REQUIRE(rc == 0, "%s: %d", cmd, rc);
}

void sw_test_file_write(const char *path, const char *text, mode_t mode)
{
	int fd;

	unlink(path); /* a fresh file, never written through a link */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	SW_CHECKF(fd >= 0, "%s: %s", path, strerror(errno));
	SW_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	SW_CHECK(fchmod(fd, mode) == 0);
	close(fd);
}

char *sw_test_file_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	SW_CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	SW_CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

pid_t sw_test_helper_start(const char *const *argv, int *port)
{
	int p[2];
	pid_t pid;
	char line[256];
	FILE *f;

	SW_CHECK(pipe(p) == 0);
	SW_CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	SW_CHECK((f = fdopen(p[0], "r")) != NULL);
	SW_REQUIRE(fgets(line, sizeof(line), f) != NULL && sscanf(line, "port %d", port) == 1,
		   "%s did not start", argv[1] != NULL ? argv[1] : argv[0]);
	fclose(f);
	return pid;
}
