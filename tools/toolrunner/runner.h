/*
 * sagewai-toolrunner: the first process (pid 1) of every sandbox. It speaks
 * the frame protocol (libs/sandbox/sw_frame.h) with sandboxd over the
 * control socket on fd 3, runs one command at a time in its own session and
 * process group under the sandbox's limits, streams its output, enforces
 * its wall-clock timeout and reports its exit and resource usage.
 *
 *   main.c  start-up, the poll loop, frames in and out
 *   job.c   starting a command, reaping, killing
 */
#ifndef RUNNER_H
#define RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sw_frame.h"
#include "sw_sandbox.h"

#define RUNNER_OUTQ_HIGH (1u << 20) /* stop reading the command above this */

/* What a child that could not start writes on its CLOEXEC pipe. */
struct exec_failure {
	int stage; /* 0 exec, 1 chdir, 2 setrlimit, 3 setup */
	int err;
};

struct runner_limits {
	uint64_t nproc, as, cpu, fsize, nofile, wall_ms;
};

struct job {
	bool running; /* an EXEC is in progress */
	pid_t pid;    /* the command (session and group leader) */
	bool exited;  /* reaped */
	int wstatus;
	int out_fd, err_fd; /* read ends, -1 once at EOF */
	int in_fd;	    /* write end of stdin, -1 when done */
	char *in_buf;	    /* stdin bytes */
	size_t in_len, in_off;
	int errpipe; /* exec failure report, -1 once at EOF */
	int64_t deadline_ms;
	bool timed_out, killed;
	bool swept; /* job_kill done: no deadline any more */
	int64_t utime_us, stime_us, maxrss_kb;
	char error[256]; /* could not start */
};

struct runner {
	int ctl;      /* control socket (fd 3) */
	int sigfd;    /* signalfd for SIGCHLD */
	bool is_init; /* pid 1 of the sandbox: may sweep with kill(-1) */
	struct sw_frame_parser *parser;
	struct sw_frame_outq outq;
	struct runner_limits lim;
	char **base_env; /* the sandbox's environment */
	char **inject;	 /* NAME=value for the next EXEC (wiped after) */
	size_t n_inject;
	struct job job;
};

/* job.c */
int job_start(struct runner *r, char **argv, char **env, const char *cwd, uint32_t timeout_ms,
	      const char *in, size_t in_len, char *errstr, size_t errlen);
void job_reap(struct runner *r);
void job_kill(struct runner *r);
bool job_done(const struct runner *r);
void job_close(struct job *j);
int64_t runner_now_ms(void);

/* main.c */
int runner_send(struct runner *r, enum sw_frame_type type, const void *p, size_t n);
void runner_error(struct runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
