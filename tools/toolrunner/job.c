/*
 * job.c: one command of the tool runner. It runs in a new session (so its
 * own process group), with stdout/stderr on pipes, stdin from the EXEC or
 * /dev/null, the sandbox's limits set hard, nothing of the runner's fds and
 * the default signal state. Exec failures come back over a CLOEXEC pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runner.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int64_t runner_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void child_fail(int fd, int stage, int err)
{
	struct exec_failure f = {stage, err};

	(void)!write(fd, &f, sizeof(f));
	_exit(127);
}

static const char *env_get(char **env, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; env[i] != NULL; i++)
		if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
			return env[i] + n + 1;
	return NULL;
}

/* execve argv[0], searching the command's own PATH when it has no '/'. */
static int exec_path(char **argv, char **env)
{
	const char *path = env_get(env, "PATH"), *p;
	char buf[4096];
	int err = ENOENT;

	if (strchr(argv[0], '/') != NULL) {
		execve(argv[0], argv, env);
		return errno;
	}
	if (path == NULL)
		path = "/usr/bin:/bin";
	for (p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dl = (size_t)(end - p);

		if (dl == 0) {
			p = end;
		} else if (dl + 1 + strlen(argv[0]) < sizeof(buf)) {
			memcpy(buf, p, dl);
			buf[dl] = '/';
			strcpy(buf + dl + 1, argv[0]);
			execve(buf, argv, env);
			if (errno != ENOENT && errno != ENOTDIR)
				err = errno;
			p = end;
		} else {
			p = end;
		}
		if (*p == '\0')
			break;
	}
	return err;
}

static int set_limit(int res, uint64_t v)
{
	struct rlimit rl = {.rlim_cur = v, .rlim_max = v};

	return setrlimit(res, &rl);
}

static void __attribute__((noreturn))
child(struct runner *r, char **argv, char **env, const char *cwd, int in, int out, int err, int ep)
{
	sigset_t none;

	if (setsid() < 0)
		child_fail(ep, 3, errno);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		child_fail(ep, 3, errno);
	/* Nothing of the runner survives exec; ep closes on success. */
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		child_fail(ep, 3, errno);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (set_limit(RLIMIT_NPROC, r->lim.nproc) != 0 || set_limit(RLIMIT_AS, r->lim.as) != 0 ||
	    set_limit(RLIMIT_CPU, r->lim.cpu) != 0 || set_limit(RLIMIT_FSIZE, r->lim.fsize) != 0 ||
	    set_limit(RLIMIT_NOFILE, r->lim.nofile) != 0 || set_limit(RLIMIT_CORE, 0) != 0)
		child_fail(ep, 2, errno);
	if (chdir(cwd) != 0)
		child_fail(ep, 1, errno);
	child_fail(ep, 0, exec_path(argv, env));
	_exit(127);
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void job_close(struct job *j)
{
	if (j->out_fd >= 0)
		close(j->out_fd);
	if (j->err_fd >= 0)
		close(j->err_fd);
	if (j->in_fd >= 0)
		close(j->in_fd);
	if (j->errpipe >= 0)
		close(j->errpipe);
	free(j->in_buf);
	memset(j, 0, sizeof(*j));
	j->out_fd = j->err_fd = j->in_fd = j->errpipe = -1;
}

int job_start(struct runner *r, char **argv, char **env, const char *cwd, uint32_t timeout_ms,
	      const char *in, size_t in_len, char *errstr, size_t errlen)
{
	struct job *j = &r->job;
	int po[2] = {-1, -1}, pe[2] = {-1, -1}, pi[2] = {-1, -1}, pf[2] = {-1, -1};
	pid_t pid;

	if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0 || pipe2(pf, O_CLOEXEC) != 0 ||
	    (in != NULL ? pipe2(pi, O_CLOEXEC)
			: (pi[0] = open("/dev/null", O_RDONLY | O_CLOEXEC))) < 0) {
		snprintf(errstr, errlen, "pipes: %s", strerror(errno));
		goto fail;
	}
	if ((pid = fork()) < 0) {
		snprintf(errstr, errlen, "fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0)
		child(r, argv, env, cwd, pi[0], po[1], pe[1], pf[1]);
	close(po[1]);
	close(pe[1]);
	close(pf[1]);
	close(pi[0]);
	job_close(j);
	j->running = true;
	j->pid = pid;
	j->out_fd = po[0];
	j->err_fd = pe[0];
	j->errpipe = pf[0];
	j->in_fd = pi[1];
	j->deadline_ms = runner_now_ms() + timeout_ms;
	if (in != NULL && in_len > 0 && (j->in_buf = malloc(in_len)) != NULL) {
		memcpy(j->in_buf, in, in_len);
		j->in_len = in_len;
	}
	if (j->in_fd >= 0 && j->in_len == 0) {
		close(j->in_fd);
		j->in_fd = -1;
	}
	nonblock(j->out_fd);
	nonblock(j->err_fd);
	nonblock(j->errpipe);
	if (j->in_fd >= 0)
		nonblock(j->in_fd);
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
		if (pi[i] >= 0)
			close(pi[i]);
		if (pf[i] >= 0)
			close(pf[i]);
	}
	return -1;
}

/* Reap every exited child: the command itself, and, as pid 1, orphans of
 * the sandbox (their usage counts towards the running command). */
void job_reap(struct runner *r)
{
	struct job *j = &r->job;
	struct rusage ru;
	int st;
	pid_t pid;

	while ((pid = wait4(-1, &st, WNOHANG, &ru)) > 0) {
		if (!j->running)
			continue;
		j->utime_us += (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
		j->stime_us += (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
		if (ru.ru_maxrss > j->maxrss_kb)
			j->maxrss_kb = ru.ru_maxrss;
		if (pid == j->pid) {
			j->exited = true;
			j->wstatus = st;
			/* What the command left behind in its group goes with it. */
			kill(-j->pid, SIGKILL);
		}
	}
}

/* Kill the command's group and, as pid 1, every other process of the
 * sandbox (so a process that left the group dies too). */
void job_kill(struct runner *r)
{
	struct job *j = &r->job;

	if (!j->running)
		return;
	if (!j->exited)
		kill(-j->pid, SIGKILL);
	if (r->is_init)
		kill(-1, SIGKILL);
	j->swept = true;
}

bool job_done(const struct runner *r)
{
	const struct job *j = &r->job;

	return j->running && j->exited && j->out_fd < 0 && j->err_fd < 0 && j->errpipe < 0;
}
