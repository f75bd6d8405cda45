/*
 * sagewai-toolrunner: the first process (pid 1) of every sandbox. It speaks
 * the frame protocol (libs/sandbox/sw_frame.h) with sandboxd over the
 * control socket on fd 3, runs one command at a time in its own session and
 * process group under the sandbox's limits, streams its output, enforces
 * its wall-clock timeout and reports its exit and resource usage.
 *
 *   main.c     start-up, the poll loop, frames in and out
 *   job.c      starting a command, reaping, killing
 *   credsrv.c  the local credential socket (cli_agent_jit, docs/JIT.md)
 *   cred.c     the client, sagewai-cred (the same binary, by its name)
 */
#ifndef RUNNER_H
#define RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <poll.h>

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

#define CRED_CONNS_MAX 8    /* client connections at once */
#define CRED_PENDING_MAX 4  /* requests waiting for sandboxd */
#define CRED_GRANTS_MAX 64  /* values kept for later commands */

/* One client connection on the credential socket. */
struct cred_conn {
	int fd;		     /* -1: free */
	int pidx;	     /* its pollfd this round, -1 */
	bool reading;	     /* the request is being read */
	bool waiting;	     /* forwarded; the answer is awaited */
	uint32_t id;	     /* the CRED_REQUEST id */
	int64_t deadline_ms; /* read, answer or write deadline */
	uint8_t in[4 + 2048]; /* length + request (SW_CREDSOCK_REQ_MAX) */
	size_t in_len;
	uint8_t *out; /* the reply (may hold a value: wiped) */
	size_t out_len, out_off;
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
	int cred_lfd;	 /* the credential socket, -1: none */
	int cred_lidx;	 /* its pollfd this round, -1 */
	uint32_t cred_next_id;
	struct cred_conn cred[CRED_CONNS_MAX];
	char **grants; /* NAME=value granted in this sandbox, for every later EXEC */
	size_t n_grants;
};

/* job.c */
int job_start(struct runner *r, char **argv, char **env, const char *cwd, uint32_t timeout_ms,
	      const char *in, size_t in_len, char *errstr, size_t errlen);
void job_reap(struct runner *r);
void job_kill(struct runner *r);
bool job_done(const struct runner *r);
void job_close(struct job *j);
int64_t runner_now_ms(void);

/* credsrv.c */
void cred_init(struct runner *r);
/* Add the socket's fds to pf from np; returns the new count; lowers
 * *timeout (ms, -1 none) to the nearest deadline. */
int cred_poll_add(struct runner *r, struct pollfd *pf, int np, int *timeout);
void cred_poll_run(struct runner *r, const struct pollfd *pf);
/* A CRED_ANSWER frame. 0, or -1 (a protocol error). */
int cred_answer(struct runner *r, const uint8_t *p, uint32_t n);

/* cred.c: sagewai-cred */
int cred_main(int argc, char **argv);

/* jsonw.c: the object a frame to the host carries, written from jw_open
 * to runner_send_jw (which closes it); jw_obj opens one nested object
 * under a key, jw_close closes it. */
struct jw {
	char *buf;
	size_t len, cap;
	int depth;
	bool first[2]; /* no member yet at this depth */
};
void jw_open(struct jw *w);
void jw_obj(struct jw *w, const char *key);
void jw_close(struct jw *w);
void jw_int(struct jw *w, const char *key, long long v);
void jw_bool(struct jw *w, const char *key, bool v);
void jw_str(struct jw *w, const char *key, const char *s);
void runner_send_jw(struct runner *r, enum sw_frame_type type, struct jw *w);

/* main.c */
void runner_wipe_free(void *p);
int runner_send(struct runner *r, enum sw_frame_type type, const void *p, size_t n);
void runner_error(struct runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
