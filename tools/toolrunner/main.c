/*
 * main.c: start-up and the single-threaded poll loop of the tool runner.
 *
 * usage (by the sandbox backend, never by hand):
 *   sagewai-toolrunner --nproc N --as BYTES --cpu SECONDS --fsize BYTES
 *                      --nofile N --wall MS
 * with the control socket on fd 3. The runner keeps fd 3 and nothing else,
 * points 0/1/2 at /dev/null, makes itself non-dumpable (same-uid processes
 * of the sandbox cannot read its memory or fds through /proc), sends READY
 * and serves frames until the socket closes; then it exits, and as pid 1
 * takes the whole sandbox with it. A protocol error from the host is
 * answered with ERROR and ends the runner the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994 /* linux/magic.h, which musl's headers lack */
#endif

#define CHUNK (SW_FRAME_RECORD_MAX - SW_FRAME_HDR) /* output bytes per frame */
#define MAX_INJECT 256

extern char **environ;

/* Memory that held an injected or granted value: wiped before freeing. */
void runner_wipe_free(void *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

int runner_send(struct runner *r, enum sw_frame_type type, const void *p, size_t n)
{
	if (sw_frame_outq_push(&r->outq, type, p, n) != 0)
		_exit(3);
	return 0;
}

void runner_error(struct runner *r, const char *fmt, ...)
{
	char msg[256];
	struct jw w;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	jw_open(&w);
	jw_str(&w, "message", msg);
	runner_send_jw(r, SW_FRAME_ERROR, &w);
}

/* Push out what is queued, waiting at most ms; used before exiting. */
static void drain(struct runner *r, int ms)
{
	int64_t deadline = runner_now_ms() + ms;

	while (sw_frame_outq_pending(&r->outq) > 0 && runner_now_ms() < deadline) {
		struct pollfd pfd = {.fd = r->ctl, .events = POLLOUT};

		if (sw_frame_outq_flush(&r->outq, r->ctl) != 0)
			return;
		if (sw_frame_outq_pending(&r->outq) > 0)
			poll(&pfd, 1, 50);
	}
}

static void __attribute__((noreturn)) die(struct runner *r, const char *why)
{
	runner_error(r, "%s", why);
	drain(r, 1000);
	_exit(2);
}

static int env_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 255 ||
	    !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return 1;
}

static size_t name_len(const char *entry)
{
	const char *eq = strchr(entry, '=');

	return eq ? (size_t)(eq - entry) : 0;
}

/* Add entry to env (n used, cap slots), replacing one of the same name. */
static void env_put(char **env, size_t *n, const char *entry)
{
	size_t nl = name_len(entry);

	for (size_t i = 0; i < *n; i++) {
		if (name_len(env[i]) == nl && strncmp(env[i], entry, nl) == 0) {
			env[i] = (char *)entry;
			return;
		}
	}
	env[(*n)++] = (char *)entry;
	env[*n] = NULL;
}

static void inject_clear(struct runner *r)
{
	for (size_t i = 0; i < r->n_inject; i++)
		runner_wipe_free(r->inject[i]);
	r->n_inject = 0;
}

/*
 * Which of the sandbox's own file systems a failed command left full, or
 * NULL: under 1/64 of it free after the command (a write that hit ENOSPC
 * fills a tmpfs to the page). Checked only for a failure, so a command
 * that merely filled its disk and succeeded is not blamed.
 */
static const char *full_disk(void)
{
	static const char *const paths[] = {"/workspace", "/tmp"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct statfs f;

		if (statfs(paths[i], &f) == 0 && f.f_type == TMPFS_MAGIC && f.f_blocks > 0 &&
		    f.f_bavail * 64 < f.f_blocks)
			return paths[i];
	}
	return NULL;
}

/* EXIT: status, signal, timed_out, killed, usage{utime_us, stime_us,
 * maxrss_kb}, and error or disk_full when there is one. */
static void exit_frame(struct runner *r, int status, int sig, bool timed_out, bool killed,
		       const struct job *j, const char *error, const char *full)
{
	struct jw w;

	jw_open(&w);
	jw_int(&w, "status", status);
	jw_int(&w, "signal", sig);
	jw_bool(&w, "timed_out", timed_out);
	jw_bool(&w, "killed", killed);
	jw_obj(&w, "usage");
	jw_int(&w, "utime_us", j ? j->utime_us : 0);
	jw_int(&w, "stime_us", j ? j->stime_us : 0);
	jw_int(&w, "maxrss_kb", j ? j->maxrss_kb : 0);
	jw_close(&w);
	if (error != NULL)
		jw_str(&w, "error", error);
	if (full != NULL)
		jw_str(&w, "disk_full", full);
	runner_send_jw(r, SW_FRAME_EXIT, &w);
}

static void send_exit(struct runner *r)
{
	struct job *j = &r->job;
	int status = 0, sig = 0;
	const char *full = NULL;

	if (WIFEXITED(j->wstatus)) {
		status = WEXITSTATUS(j->wstatus);
	} else if (WIFSIGNALED(j->wstatus)) {
		status = -1;
		sig = WTERMSIG(j->wstatus);
	}
	if (j->error[0] == '\0' && !j->timed_out && !j->killed && (status != 0 || sig != 0))
		full = full_disk();
	exit_frame(r, status, sig, j->timed_out, j->killed, j, j->error[0] ? j->error : NULL,
		   full);
}

/* A command that cannot even be forked still gets its EXIT. */
static void send_start_failure(struct runner *r, const char *why)
{
	exit_frame(r, 127, 0, false, false, NULL, why, NULL);
}

static int on_exec(struct runner *r, const uint8_t *p, uint32_t n)
{
	struct sw_frame_exec x;
	size_t ne, k = 0;
	char **env = NULL, err[256];
	int rc = -1;

	if (r->job.running) {
		runner_error(r, "busy: an exec is running");
		return 0;
	}
	if (sw_frame_exec_decode(p, n, &x, err, sizeof(err)) != 0) {
		runner_error(r, "%s", err);
		return -1;
	}
	if (x.cwd[0] != '/' || x.timeout_ms == 0 || x.timeout_ms > 7ULL * 86400 * 1000) {
		runner_error(r, "EXEC: bad cwd or timeout_ms");
		runner_wipe_free(x.mem);
		return -1;
	}
	for (ne = 0; r->base_env[ne] != NULL; ne++)
		;
	if ((env = calloc(ne + x.envc + r->n_grants + r->n_inject + 1, sizeof(char *))) == NULL)
		_exit(3);
	for (size_t i = 0; r->base_env[i] != NULL; i++)
		env_put(env, &k, r->base_env[i]);
	for (size_t i = 0; i < x.envc; i++) {
		const char *e = x.env[i];

		if (!env_name_ok(e, name_len(e))) {
			runner_error(r, "EXEC: env[%zu] is not NAME=value", i);
			goto out;
		}
		env_put(env, &k, e);
	}
	/* credentials granted in this sandbox (cli_agent_jit), then the
	 * step's injected values */
	for (size_t i = 0; i < r->n_grants; i++)
		env_put(env, &k, r->grants[i]);
	for (size_t i = 0; i < r->n_inject; i++)
		env_put(env, &k, r->inject[i]);
	if (job_start(r, x.argv, env, x.cwd, (uint32_t)x.timeout_ms, x.in, x.in_len, err,
		      sizeof(err)) != 0)
		send_start_failure(r, err);
	rc = 0;
out:
	/* Injected values serve one exec only, started or not. */
	inject_clear(r);
	free(env);
	runner_wipe_free(x.mem);
	return rc;
}

static int on_inject(struct runner *r, const uint8_t *p, uint32_t n)
{
	struct sw_frame_field name, value;
	char *entry, err[160];

	if (sw_frame_inject_decode(p, n, &name, &value, err, sizeof(err)) != 0) {
		runner_error(r, "%s", err);
		return -1;
	}
	if (!env_name_ok((const char *)name.p, name.len) || r->n_inject >= MAX_INJECT ||
	    asprintf(&entry, "%.*s=%.*s", (int)name.len, (const char *)name.p, (int)value.len,
		     (const char *)value.p) < 0) {
		runner_error(r, "INJECT_ENV: bad name or too many");
		return -1;
	}
	for (size_t i = 0; i < r->n_inject; i++) {
		if (name_len(r->inject[i]) == name.len &&
		    strncmp(r->inject[i], entry, name.len + 1) == 0) {
			runner_wipe_free(r->inject[i]);
			r->inject[i] = entry;
			return 0;
		}
	}
	r->inject[r->n_inject++] = entry;
	return 0;
}

static int on_frame(void *arg, unsigned type, const uint8_t *p, uint32_t n)
{
	struct runner *r = arg;

	switch (type) {
	case SW_FRAME_EXEC:
		return on_exec(r, p, n);
	case SW_FRAME_KILL:
		if (n != 0) {
			runner_error(r, "KILL with a payload");
			return -1;
		}
		if (r->job.running && !r->job.exited && !r->job.swept)
			r->job.killed = true;
		job_kill(r);
		return 0;
	case SW_FRAME_INJECT_ENV:
		return on_inject(r, p, n);
	case SW_FRAME_CRED_ANSWER:
		return cred_answer(r, p, n);
	}
	return -1;
}

static void read_ctl(struct runner *r)
{
	static uint8_t buf[SW_FRAME_RECORD_MAX];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	char why[160], msg[200];
	ssize_t n = recvmsg(r->ctl, &mh, MSG_DONTWAIT);
	int rc;

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		_exit(0);
	}
	if (n == 0)
		_exit(0); /* sandboxd is gone: so is the sandbox */
	if (mh.msg_flags & MSG_TRUNC)
		die(r, "protocol error: record too large");
	rc = sw_frame_parser_feed(r->parser, buf, (size_t)n, on_frame, r, why, sizeof(why));
	/* the record may have held an injected or granted value */
	explicit_bzero(buf, (size_t)n);
	if (rc != 0) {
		snprintf(msg, sizeof(msg), "protocol error: %s", why);
		die(r, msg);
	}
}

/* Read one chunk of output; close the fd at EOF. */
static void read_output(struct runner *r, int *fd, enum sw_frame_type type)
{
	static uint8_t buf[CHUNK];
	ssize_t n = read(*fd, buf, sizeof(buf));

	if (n > 0) {
		runner_send(r, type, buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	close(*fd);
	*fd = -1;
}

static void read_failure(struct runner *r)
{
	static const char *const stage[] = {"exec", "chdir", "setrlimit", "setup"};
	struct exec_failure f;
	ssize_t n = read(r->job.errpipe, &f, sizeof(f));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == (ssize_t)sizeof(f) && f.stage >= 0 && f.stage <= 3)
		snprintf(r->job.error, sizeof(r->job.error), "%s: %s", stage[f.stage],
			 strerror(f.err));
	close(r->job.errpipe);
	r->job.errpipe = -1;
}

static void write_stdin(struct runner *r)
{
	struct job *j = &r->job;
	ssize_t n = write(j->in_fd, j->in_buf + j->in_off, j->in_len - j->in_off);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		j->in_off += (size_t)n;
	if (n <= 0 || j->in_off == j->in_len) {
		close(j->in_fd);
		j->in_fd = -1;
	}
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0)
		return -1;
	*out = v;
	return 0;
}

/* Requested limits, capped at the hard limits we were started with. */
static int parse_args(int argc, char **argv, struct runner_limits *l)
{
	static const struct {
		const char *flag;
		size_t off;
		int res;
	} opts[] = {
	    {"--nproc", offsetof(struct runner_limits, nproc), RLIMIT_NPROC},
	    {"--as", offsetof(struct runner_limits, as), RLIMIT_AS},
	    {"--cpu", offsetof(struct runner_limits, cpu), RLIMIT_CPU},
	    {"--fsize", offsetof(struct runner_limits, fsize), RLIMIT_FSIZE},
	    {"--nofile", offsetof(struct runner_limits, nofile), RLIMIT_NOFILE},
	    {"--wall", offsetof(struct runner_limits, wall_ms), -1},
	};
	unsigned seen = 0;
	struct rlimit rl;
	uint64_t *v;

	if (argc != 13)
		return -1;
	for (int i = 1; i < argc; i += 2) {
		size_t k;

		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (strcmp(argv[i], opts[k].flag) == 0)
				break;
		if (k == sizeof(opts) / sizeof(opts[0]) || (seen & (1u << k)))
			return -1;
		seen |= 1u << k;
		v = (uint64_t *)((char *)l + opts[k].off);
		if (parse_u64(argv[i + 1], v) != 0)
			return -1;
		if (opts[k].res >= 0 && getrlimit(opts[k].res, &rl) == 0 &&
		    rl.rlim_max != RLIM_INFINITY && *v > rl.rlim_max)
			*v = rl.rlim_max;
	}
	return 0;
}

static void setup(struct runner *r, int argc, char **argv)
{
	struct stat st;
	sigset_t chld;
	size_t n;
	int fd;

	r->ctl = SW_SANDBOX_CTL_FD;
	if (fstat(r->ctl, &st) != 0 || !S_ISSOCK(st.st_mode))
		_exit(2);
	if (fcntl(r->ctl, F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(r->ctl, F_SETFL, fcntl(r->ctl, F_GETFL) | O_NONBLOCK) != 0)
		_exit(2);
	/* Whatever else the backend left open is not ours to keep. */
	if (syscall(SYS_close_range, r->ctl + 1, ~0U, 0) != 0)
		for (fd = r->ctl + 1; fd < 65536; fd++)
			close(fd);
	if ((fd = open("/dev/null", O_RDWR)) < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 ||
	    dup2(fd, 2) < 0)
		_exit(2);
	if (fd > 2)
		close(fd);
	prctl(PR_SET_DUMPABLE, 0);
	if ((r->parser = sw_frame_parser_new(SW_FRAME_FROM_HOST)) == NULL)
		_exit(3);
	r->job.out_fd = r->job.err_fd = r->job.in_fd = r->job.errpipe = -1;
	if (parse_args(argc, argv, &r->lim) != 0)
		die(r, "usage: sagewai-toolrunner --nproc N --as B --cpu S --fsize B --nofile N "
		       "--wall MS");
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0 ||
	    (r->sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		die(r, "signalfd failed");
	r->is_init = getpid() == 1;
	for (n = 0; environ[n] != NULL; n++)
		;
	if ((r->base_env = calloc(n + 1, sizeof(char *))) == NULL ||
	    (r->inject = calloc(MAX_INJECT, sizeof(char *))) == NULL ||
	    (r->grants = calloc(CRED_GRANTS_MAX, sizeof(char *))) == NULL)
		_exit(3);
	/* The sandbox's environment is exactly what the backend set, except
	 * PWD, which bwrap adds by itself. */
	for (size_t i = 0, k = 0; i < n; i++) {
		if (strncmp(environ[i], "PWD=", 4) == 0)
			continue;
		if ((r->base_env[k++] = strdup(environ[i])) == NULL)
			_exit(3);
	}
	cred_init(r);
	{
		struct jw w;

		jw_open(&w);
		jw_int(&w, "version", SW_FRAME_VERSION);
		jw_int(&w, "pid", (int)getpid());
		runner_send_jw(r, SW_FRAME_READY, &w);
	}
}

static void loop(struct runner *r)
{
	for (;;) {
		struct job *j = &r->job;
		struct pollfd pf[6 + CRED_CONNS_MAX + 1];
		int np = 0, i_out = -1, i_err = -1, i_fail = -1, i_in = -1, timeout = -1;
		int64_t now;

		pf[np++] = (struct pollfd){.fd = r->ctl, .events = POLLIN};
		if (sw_frame_outq_pending(&r->outq) > 0)
			pf[0].events |= POLLOUT;
		pf[np++] = (struct pollfd){.fd = r->sigfd, .events = POLLIN};
		if (j->running) {
			bool room = sw_frame_outq_pending(&r->outq) < RUNNER_OUTQ_HIGH;

			if (room && j->out_fd >= 0) {
				i_out = np;
				pf[np++] = (struct pollfd){.fd = j->out_fd, .events = POLLIN};
			}
			if (room && j->err_fd >= 0) {
				i_err = np;
				pf[np++] = (struct pollfd){.fd = j->err_fd, .events = POLLIN};
			}
			if (j->errpipe >= 0) {
				i_fail = np;
				pf[np++] = (struct pollfd){.fd = j->errpipe, .events = POLLIN};
			}
			if (j->in_fd >= 0) {
				i_in = np;
				pf[np++] = (struct pollfd){.fd = j->in_fd, .events = POLLOUT};
			}
			if (!j->swept) {
				now = runner_now_ms();
				timeout = j->deadline_ms > now ? (int)(j->deadline_ms - now) : 0;
			}
		}
		np = cred_poll_add(r, pf, np, &timeout);
		if (poll(pf, (nfds_t)np, timeout) < 0 && errno != EINTR)
			die(r, "poll failed");
		cred_poll_run(r, pf);
		/* Past the deadline nothing of the command may stay (even what
		 * holds its pipes after it exited). */
		if (j->running && !j->swept && runner_now_ms() >= j->deadline_ms) {
			j->timed_out = !j->exited;
			job_kill(r);
		}
		if (pf[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				;
			job_reap(r);
		}
		if (i_fail >= 0 && pf[i_fail].revents)
			read_failure(r);
		if (i_out >= 0 && pf[i_out].revents)
			read_output(r, &j->out_fd, SW_FRAME_STDOUT);
		if (i_err >= 0 && pf[i_err].revents)
			read_output(r, &j->err_fd, SW_FRAME_STDERR);
		if (i_in >= 0 && pf[i_in].revents)
			write_stdin(r);
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
			read_ctl(r);
		if (job_done(r)) {
			send_exit(r);
			job_close(j);
		}
		if (sw_frame_outq_flush(&r->outq, r->ctl) != 0)
			_exit(0);
	}
}

int main(int argc, char **argv)
{
	static struct runner r;
	const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;

	/* one binary, two programs: as sagewai-cred it is the client */
	base = base != NULL ? base + 1 : argc > 0 ? argv[0] : "";
	if (strcmp(base, "sagewai-cred") == 0)
		return cred_main(argc, argv);

	setup(&r, argc, argv);
	loop(&r);
	return 0;
}
