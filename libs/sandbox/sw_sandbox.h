/*
 * sw_sandbox: isolated environments whose first process is the tool runner.
 *
 *   variants    the operator's catalogue of image variants (infra/sandbox/
 *               variants/<name>.json): read-only host paths, what the
 *               variant offers, default limits.
 *   backends    an isolation backend is a table of functions (struct
 *               sw_sandbox_backend): create one sandbox whose first process
 *               is the tool runner connected to a control socket, kill it,
 *               destroy it (killing everything), account for it. The first
 *               backend is bubblewrap (sw_sandbox_bwrap_new); docs/SANDBOX.md
 *               maps crun/OCI and Kubernetes pods onto the same table.
 *   sandboxes   struct sw_sandbox: a backend instance plus the host side of
 *               the frame protocol (sw_frame.h) with its tool runner: exec,
 *               output chunks, exit with usage, kill, env injection. The
 *               protocol part never blocks; sw_sandbox_run() is a blocking
 *               convenience built on it, bounded by deadlines.
 *
 * Nothing here logs, exits or reads the environment. A sandbox whose
 * runner breaks the protocol is killed at once; the handle then reports
 * why (sw_sandbox_error) until the caller destroys it. Handles are not
 * thread-safe; one thread (one event loop) drives each.
 */
#ifndef SW_SANDBOX_H
#define SW_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sw_frame.h"

/* Fixed places inside every sandbox. */
#define SW_SANDBOX_RUNNER "/.sagewai/toolrunner"	 /* the tool runner, read-only */
#define SW_SANDBOX_EGRESS_SOCKET "/.sagewai/egress.sock" /* egress proxy socket, if bound */
#define SW_SANDBOX_SHARED "/.sagewai"			 /* read-only, shared by all */
#define SW_SANDBOX_CRED "/.sagewai/bin/sagewai-cred"	 /* the credential client (the
							  * runner by another name) */
#define SW_SANDBOX_WORKSPACE "/workspace"		 /* the only writable dir but /tmp */
#define SW_SANDBOX_CTL_FD 3				 /* the runner's control socket */
#define SW_SANDBOX_UID 65534				 /* uid/gid of everything inside */

/* ---- limits and network policy ----------------------------------------- */

/*
 * Resource limits of one sandbox. The runner applies them (setrlimit,
 * soft = hard) to every command it starts, so they bound each process of
 * the sandbox; nproc counts all processes of the sandbox (its own user
 * namespace). A backend with per-sandbox cgroups (bwrap's cgroup setting)
 * also holds the whole sandbox to memory_bytes of memory (no swap) and
 * nproc (+ a small margin) tasks. 0 in a spec means "the variant's
 * default".
 *
 * cpu_millis is the one limit no rlimit can give: a CPU bandwidth for
 * the whole sandbox (1000 = one CPU's worth of time per period), enforced
 * only by the cgroup cpu controller (v1 cpu.cfs_quota_us, v2 cpu.max).
 * 0 in a variant: none; 0 in a spec: the variant's. A create asking for
 * one (its own or the variant's) where the backend has no cpu controller
 * fails with an error containing SW_SANDBOX_ERR_NO_CPU, never runs
 * unbounded.
 */
#define SW_SANDBOX_CPU_MILLIS_MAX 1000000 /* 1000 CPUs */
#define SW_SANDBOX_ERR_NO_CPU "cpu limit cannot be enforced"
#define SW_SANDBOX_DISK_BYTES_DEFAULT (256ULL << 20) /* a variant without disk_bytes */
#define SW_SANDBOX_DISK_BYTES_MAX (64ULL << 30)

struct sw_sandbox_limits {
	uint64_t nproc;		  /* RLIMIT_NPROC; cgroup pids.max */
	uint64_t memory_bytes;	  /* RLIMIT_AS per process; cgroup memory of the whole */
	uint64_t cpu_seconds;	  /* RLIMIT_CPU, per process */
	uint64_t file_size_bytes; /* RLIMIT_FSIZE */
	uint64_t nofile;	  /* RLIMIT_NOFILE */
	uint64_t wall_ms;	  /* default exec timeout (runner kills the command) */
	uint64_t cpu_millis;	  /* cgroup CPU bandwidth, 1/1000 CPU; 0: none */
	uint64_t disk_bytes;	  /* size of the tmpfs /tmp and /workspace, each */
};

enum sw_sandbox_net {
	SW_SANDBOX_NET_NONE,	    /* own network namespace holding only lo */
	SW_SANDBOX_NET_EGRESS_ONLY, /* own namespace; the egress proxy is the way out */
	SW_SANDBOX_NET_FULL,	    /* own namespace, the internet through slirp4netns;
				     * the host's and private networks rejected */
};

/* "none" | "egress_only" | "full" <-> enum. parse returns 0 or -1. */
int sw_sandbox_net_parse(const char *s, enum sw_sandbox_net *out);
const char *sw_sandbox_net_name(enum sw_sandbox_net net);

/* ---- image variants ------------------------------------------------------ */

struct sw_sandbox_bind {
	char *path;    /* absolute host path */
	char *at;      /* where the sandbox sees it: == path (a host symlink is then
			* recreated as a symlink), or another place ("at"; the host
			* path is then followed if it is a symlink, and bound) */
	bool optional; /* skipped when the host has no such path */
};

struct sw_sandbox_variant {
	char name[64];
	char *description;
	char **offers; /* what it provides ("shell", "python3", ...) */
	size_t n_offers;
	struct sw_sandbox_bind *ro_binds; /* mounted read-only */
	size_t n_ro_binds;
	char **env_path; /* directories put before PATH ("env_path"), each inside a bind */
	size_t n_env_path;
	struct sw_sandbox_limits limits; /* defaults; every field > 0 but cpu_millis
					  * (optional; 0: no CPU bandwidth limit) */
};

/*
 * Load variant `name` from catalogue directory dir (<dir>/<name>.json).
 * name must match [a-z0-9][a-z0-9_-]{0,62}. An unknown variant fails with
 * "unknown sandbox variant 'x' (catalogue <dir> has: base, ...)". The file
 * is validated: known keys only, name matching the file, absolute clean
 * paths, none of the host paths that must never enter a sandbox (/etc as a
 * whole, /etc/shadow, /root, /proc, /sys, /dev, /run, ...), all limits
 * present and positive but cpu_millis, which may be left out (1 ..
 * SW_SANDBOX_CPU_MILLIS_MAX when given). Caller frees with sw_sandbox_variant_free.
 */
struct sw_sandbox_variant *sw_sandbox_variant_load(const char *dir, const char *name, char *errstr,
						   size_t errlen);
/* The same validation on a JSON document in memory. */
struct sw_sandbox_variant *sw_sandbox_variant_parse(const char *json, size_t len, char *errstr,
						    size_t errlen);
void sw_sandbox_variant_free(struct sw_sandbox_variant *v);
/* 1 if the variant offers `what`. */
int sw_sandbox_variant_offers(const struct sw_sandbox_variant *v, const char *what);
/*
 * The PATH a sandbox of this variant should get: the variant's env_path
 * directories, in order, then base (e.g. "/usr/bin:/bin"; NULL or "" for
 * none), ':'-separated, into out. 0, or -1 when it does not fit in outlen.
 * The library never sets an environment by itself: whoever builds the
 * spec's env (sandboxd, a test) calls this.
 */
int sw_sandbox_variant_path(const struct sw_sandbox_variant *v, const char *base, char *out,
			    size_t outlen);

/* ---- one sandbox's description ------------------------------------------ */

/*
 * Called during create for SW_SANDBOX_NET_EGRESS_ONLY, before the runner is
 * handed out: netns_fd is an open fd of the sandbox's network namespace
 * (valid during the call only) and pid the host pid of its first process.
 * This is where the egress proxy attaches (e.g. setns() a thread into the
 * namespace and listen on 127.0.0.1 there, or move a veth in). Return 0, or
 * -1 with errstr filled to fail the create.
 */
typedef int (*sw_sandbox_egress_hook)(void *arg, int netns_fd, pid_t pid, char *errstr,
				      size_t errlen);

/*
 * For a hook in the sandbox's network namespace: bind s to 127.0.0.1:port
 * (0: any). bwrap brings the namespace's loopback up in its child, which
 * may not have happened yet when the hook runs (the pid is reported
 * first): while bind says EADDRNOTAVAIL it is tried again every
 * millisecond, for up to wait_ms. 0, or -1 with errno.
 */
int sw_sandbox_bind_loopback(int s, uint16_t port, int wait_ms);

struct sw_sandbox_spec {
	const struct sw_sandbox_variant *variant; /* borrowed for the call */
	enum sw_sandbox_net net;
	struct sw_sandbox_limits limits;    /* 0 fields: the variant's default */
	const char *const *env;		    /* NULL-terminated "NAME=value": exactly the env */
	const char *workspace;		    /* existing host dir, bound read-write at /workspace
					    * (bwrap: chowned to the run uid when root; its
					    * parents must be searchable by that uid) */
	const char *hostname;		    /* NULL: "sandbox" */
	sw_sandbox_egress_hook egress_hook; /* egress_only: may be NULL */
	void *egress_arg;
	const char *egress_socket; /* egress_only: host unix socket bound read-only at
				    * SW_SANDBOX_EGRESS_SOCKET, or NULL */
	uint32_t start_timeout_ms; /* for the runner's READY; 0: 10000 */
};

/* ---- accounting ----------------------------------------------------------- */

struct sw_sandbox_usage {
	int64_t utime_us;  /* at destroy with a cpu cgroup: the sandbox's, if larger */
	int64_t stime_us;  /* likewise */
	int64_t maxrss_kb; /* at destroy with a cgroup: the sandbox's peak, if larger */
	bool oom_killed;   /* at destroy: the sandbox's cgroup saw an OOM kill */
};

struct sw_sandbox_stats {
	pid_t pid;	   /* host pid of the sandbox's first process (the runner) */
	pid_t monitor_pid; /* host pid of the backend's process owning it, or 0 */
	int nproc;	   /* processes alive in the sandbox now (-1: unknown) */
	pid_t pids[64];	   /* host pids of the first min(nproc, 64) of them */
};

/* ---- the backend interface ------------------------------------------------ */

/*
 * An isolation backend. create() starts one sandbox for spec with the
 * given effective limits (already merged with the variant's defaults); its
 * first process must be the tool runner with the other end of *ctl_fd (a
 * connected SOCK_SEQPACKET or SOCK_STREAM socket, O_CLOEXEC, owned by the
 * caller from then on) and nothing else of the host. *inst is the
 * backend's per-sandbox state.
 *
 * kill() makes every process of the sandbox die (SIGKILL or equivalent);
 * it is idempotent, async-signal-safe in spirit (no allocation) and does
 * not wait. destroy() kills, waits until nothing of the sandbox is left,
 * fills *final (may be NULL) with the whole sandbox's CPU and memory usage
 * when known (else zeros), releases everything and frees inst. stats()
 * reports pids and live process count; returns 0 or -1. A backend must
 * be driven from a thread that outlives its sandboxes (bwrap's
 * --die-with-parent follows the creating thread).
 */
struct sw_sandbox_backend {
	const char *name; /* "bwrap", ... */
	void *state;	  /* backend configuration */
	int (*create)(void *state, const struct sw_sandbox_spec *spec,
		      const struct sw_sandbox_limits *limits, void **inst, int *ctl_fd,
		      char *errstr, size_t errlen);
	void (*kill)(void *inst);
	void (*destroy)(void *inst, struct sw_sandbox_usage *final);
	int (*stats)(void *inst, struct sw_sandbox_stats *st);
	/* What the backend knows of why the sandbox died (e.g. bwrap's
	 * stderr), into buf; "" when nothing. May be NULL. */
	void (*why)(void *inst, char *buf, size_t len);
	void (*free)(void *state);
	/*
	 * Optional (NULL: create() is used, blocking): create in two halves
	 * for a caller on an event loop. create_begin starts the sandbox
	 * without waiting (bwrap: fork and exec) and gives *wait_fd (owned by
	 * inst), readable when create_step has work; create_step returns 0
	 * (wait for wait_fd again), 1 (started: pids known, network set up)
	 * or -1 with errstr (the caller destroys inst and closes *ctl_fd).
	 */
	int (*create_begin)(void *state, const struct sw_sandbox_spec *spec,
			    const struct sw_sandbox_limits *limits, void **inst, int *ctl_fd,
			    int *wait_fd, char *errstr, size_t errlen);
	int (*create_step)(void *inst, char *errstr, size_t errlen);
	/* Optional, cheap (no /proc scan): the first process's host pid, or
	 * 0; an fd readable once the sandbox is gone and destroy() will not
	 * wait (bwrap: its monitor's pidfd), or -1. */
	pid_t (*pid)(void *inst);
	int (*gone_fd)(void *inst);
};

/* Free a backend made by one of the constructors below. */
void sw_sandbox_backend_free(struct sw_sandbox_backend *be);

/*
 * The bubblewrap backend. When the caller is root, bwrap runs as run_uid/
 * run_gid on the host (default 65534/65534) so that even an escaped
 * process owns nothing; otherwise as the caller. Inside, everything runs as
 * SW_SANDBOX_UID in a fresh user namespace that cannot create others. See
 * docs/SANDBOX.md for every flag.
 */
struct sw_sandbox_bwrap_config {
	const char *bwrap_path;	 /* NULL: "/usr/bin/bwrap" */
	const char *runner_path; /* host path of sagewai-toolrunner (required; copied) */
	const char *state_dir;	 /* where the backend makes its private directory
				  * (removed by sw_sandbox_backend_free); NULL: /tmp */
	uid_t run_uid;		 /* used when root; 0 = 65534 */
	gid_t run_gid;		 /* used when root; 0 = 65534 */
	const char *cgroup;	 /* per-sandbox cgroups: NULL, "" or "off"; "auto"
				  * (v2, else v1); "v1" or "v2" (only that one) */
	const char *slirp_path;	 /* policy full; NULL: "/usr/bin/slirp4netns" */
	const char *nft_path;	 /* policy full; NULL: "/usr/sbin/nft" */
};

/*
 * NULL with errstr on failure (also for an unknown cgroup setting). With
 * cgroup "auto", "v1" or "v2", the cgroup to make sandbox cgroups under is
 * found here, once: a child of the caller's own cgroup. When there is none
 * the caller may use (not root and nothing delegated, controllers missing)
 * the backend still works, with the runner's rlimits only:
 * sw_sandbox_bwrap_cgroup_mode says which. The cpu controller is looked
 * for too, but not required: without it (or without cgroups) only a
 * create with a CPU limit (cpu_millis) fails, with SW_SANDBOX_ERR_NO_CPU.
 */
struct sw_sandbox_backend *sw_sandbox_bwrap_new(const struct sw_sandbox_bwrap_config *cfg,
						char *errstr, size_t errlen);

/* "v2", "v1", "v2; cpu off: <why>", "v1; cpu off: <why>" (memory and
 * pids only, CPU limits refused) or "off: <why>" (for the caller's log);
 * be is a bwrap backend, anything else gives "off: not a bwrap backend". */
const char *sw_sandbox_bwrap_cgroup_mode(const struct sw_sandbox_backend *be);

/*
 * At sw_sandbox_bwrap_new, sandbox cgroups whose creating process is gone
 * (sagewai-sbx-<pid>-<seq>: no such pid, a zombie, or a process younger
 * than the cgroup) are removed, and whatever still ran in them killed
 * first: a creator killed mid-create can leave a bwrap child that no
 * parent-death signal reaches. How many such cgroups were still in use
 * (for the caller's log); 0 for anything but a bwrap backend.
 */
int sw_sandbox_bwrap_swept(const struct sw_sandbox_backend *be);

/*
 * Keep n (0..16) per-sandbox cgroups made ahead, refilled after each
 * create's fork while bwrap starts, so that a create does not pay their
 * mkdir on its path (a v1 memory cgroup: ~2 ms). Removed by
 * sw_sandbox_backend_free (a crashed process's are swept at the next
 * start, like its sandboxes'). Nothing to do with cgroups off. 0, or -1
 * (not a bwrap backend, n out of range, or one could not be made).
 */
int sw_sandbox_bwrap_spares(struct sw_sandbox_backend *be, int n);

/*
 * Policy full needs slirp4netns and nft (netfull.c): NULL when this
 * backend has both, else why not; a full create then fails with an error
 * starting with SW_SANDBOX_ERR_NO_FULL.
 */
#define SW_SANDBOX_ERR_NO_FULL "network full is not available on this host"
const char *sw_sandbox_bwrap_full_why(const struct sw_sandbox_backend *be);

/*
 * The seccomp filter every bwrap sandbox gets, as a BPF program written to
 * fd (for --seccomp FD). Default allow; EPERM for the calls listed in
 * docs/SANDBOX.md; ENOSYS for clone3 (so libc falls back to clone, whose
 * flags the filter can see). Returns 0 or -1 with errstr filled.
 */
int sw_sandbox_seccomp_export(int fd, char *errstr, size_t errlen);

/* ---- sandboxes --------------------------------------------------------------- */

struct sw_sandbox;

/*
 * Start a sandbox with be (borrowed; must outlive the sandbox) and wait,
 * at most spec->start_timeout_ms, for its runner's READY frame. NULL with
 * errstr filled on any failure (bad spec, backend failure with its message,
 * runner broke the protocol or never became ready); nothing is left
 * running then.
 */
struct sw_sandbox *sw_sandbox_create(struct sw_sandbox_backend *be,
				     const struct sw_sandbox_spec *spec, char *errstr,
				     size_t errlen);

/*
 * The same create for a caller on an event loop, in steps that never wait:
 * sw_sandbox_start_new begins it (bwrap: forked and exec'd, nothing waited
 * for) or returns NULL with errstr. Then, each time sw_sandbox_start_fd is
 * readable (the fd may change between steps: watch it anew after each),
 * or when sw_sandbox_start_left_ms reaches 0, call sw_sandbox_start_step:
 * 0 not yet; 1 done, *out the ready sandbox; -1 failed with errstr
 * (nothing is left running). After 1 or -1, st is freed. A start not
 * wanted any more: sw_sandbox_start_abort (kills and reaps it). Backends
 * without create_begin do their first half blocking in _new. Drive every
 * start of a backend from one thread that outlives the sandboxes.
 */
struct sw_sandbox_start;
struct sw_sandbox_start *sw_sandbox_start_new(struct sw_sandbox_backend *be,
					      const struct sw_sandbox_spec *spec, char *errstr,
					      size_t errlen);
int sw_sandbox_start_fd(const struct sw_sandbox_start *st);
int64_t sw_sandbox_start_left_ms(const struct sw_sandbox_start *st);
int sw_sandbox_start_step(struct sw_sandbox_start *st, struct sw_sandbox **out, char *errstr,
			  size_t errlen);
void sw_sandbox_start_abort(struct sw_sandbox_start *st);

/*
 * A handle on a runner reached some other way (e.g. a control socket
 * passed over SCM_RIGHTS by a privileged creator). Takes ownership of
 * ctl_fd, even on failure. There is no backend: kill and destroy only shut
 * the socket, which makes the runner (pid 1 of its sandbox) exit and the
 * sandbox die. ready: the runner's READY was already consumed by whoever
 * created the sandbox; otherwise the handle expects it first.
 */
struct sw_sandbox *sw_sandbox_attach(int ctl_fd, const struct sw_sandbox_limits *limits,
				     bool ready, char *errstr, size_t errlen);

/*
 * Hand the control socket over (e.g. to pass it to an unprivileged process
 * with SCM_RIGHTS): returns it and forgets it; the handle keeps the
 * backend's instance, so sw_sandbox_kill/destroy/stats still work, but the
 * protocol calls fail from then on. -1 when the sandbox is dead or has no
 * socket. The caller owns the returned fd.
 */
int sw_sandbox_give_fd(struct sw_sandbox *sb);

/* Kill everything, wait, release; final usage into *final if not NULL. */
void sw_sandbox_destroy(struct sw_sandbox *sb, struct sw_sandbox_usage *final);

/* Kill every process of the sandbox now (the handle stays until destroy). */
void sw_sandbox_kill(struct sw_sandbox *sb);

int sw_sandbox_fd(const struct sw_sandbox *sb);	    /* control socket, for an event loop */
bool sw_sandbox_ready(const struct sw_sandbox *sb); /* READY received */
bool sw_sandbox_dead(const struct sw_sandbox *sb);  /* ended; see sw_sandbox_error */
bool sw_sandbox_busy(const struct sw_sandbox *sb);  /* an exec is running */
/* Why the sandbox ended ("tool runner: protocol error: ..."), or "". */
const char *sw_sandbox_error(const struct sw_sandbox *sb);
/* The effective limits it runs with. */
const struct sw_sandbox_limits *sw_sandbox_limits(const struct sw_sandbox *sb);
int sw_sandbox_stats(struct sw_sandbox *sb, struct sw_sandbox_stats *st);
/* The runner's host pid (0: unknown or attached), without sw_sandbox_stats'
 * scan of /proc. */
pid_t sw_sandbox_pid(const struct sw_sandbox *sb);
/* After sw_sandbox_kill: an fd readable once sw_sandbox_destroy will not
 * wait any more (bwrap: its monitor exited), or -1 (none known: destroy
 * may wait). For a caller on an event loop. */
int sw_sandbox_gone_fd(const struct sw_sandbox *sb);

/* ---- the protocol, non-blocking ------------------------------------------- */

struct sw_sandbox_exec {
	const char *const *argv; /* NULL-terminated, argv[0] required; PATH searched */
	const char *const *env;	 /* NULL-terminated "NAME=value" added to the sandbox env */
	const char *cwd;	 /* NULL: /workspace */
	uint32_t timeout_ms;	 /* 0: the sandbox's wall_ms */
	const void *stdin_data;	 /* NULL: /dev/null (must be valid UTF-8 otherwise) */
	size_t stdin_len;
};

struct sw_sandbox_exit {
	int status;		       /* exit code, or -1 when killed by a signal */
	int signal;		       /* the killing signal, or 0 */
	bool timed_out;		       /* the runner killed it at its timeout */
	bool killed;		       /* killed on a KILL frame */
	struct sw_sandbox_usage usage; /* wait4() of the command and its reaped children */
	const char *error;	       /* could not start it (exec failure), else NULL */
	const char *disk_full;	       /* failed with "/workspace" or "/tmp" full, or NULL */
};

struct sw_sandbox_events {
	/* stream 1 = stdout, 2 = stderr; a chunk as the runner read it. */
	void (*on_output)(void *arg, int stream, const uint8_t *buf, size_t len);
	/* The running exec ended; ex valid during the call. */
	void (*on_exit)(void *arg, const struct sw_sandbox_exit *ex);
	/* A runner-side error (its message), not fatal by itself. */
	void (*on_error)(void *arg, const char *message);
	/* A credential request from inside: a JSON object, as received. */
	void (*on_cred_request)(void *arg, const char *json, size_t len);
};

/* Queue an EXEC (one at a time). 0, or -1 with errstr (busy, dead, bad
 * argv/env, too large). Call sw_sandbox_flush when sw_sandbox_want_write. */
int sw_sandbox_exec_start(struct sw_sandbox *sb, const struct sw_sandbox_exec *ex, char *errstr,
			  size_t errlen);
/* Queue a KILL of the running exec (no-op when none). 0 or -1. */
int sw_sandbox_exec_kill(struct sw_sandbox *sb);
/* Queue an INJECT_ENV for the next exec. 0, or -1 with errstr (bad name,
 * NUL in value). The value is wiped from the handle's memory once sent. */
int sw_sandbox_inject_env(struct sw_sandbox *sb, const char *name, const char *value, char *errstr,
			  size_t errlen);
/* Queue a CRED_ANSWER for the runner's request id: status 0 gives name its
 * value text (the runner hands it to the asking client and keeps it for
 * every later exec); 1 denied, 2 timeout, 3 error give code and the
 * sentence text. 0, or -1 with errstr. The frame is wiped once sent. */
int sw_sandbox_cred_answer(struct sw_sandbox *sb, uint32_t id, int status, const char *code,
			   const char *name, const char *text, char *errstr, size_t errlen);
bool sw_sandbox_want_write(const struct sw_sandbox *sb);
/* Send what the socket takes now. 0, or -1 when the sandbox ended. */
int sw_sandbox_flush(struct sw_sandbox *sb);

/*
 * Read what is available on the control socket (at most a bounded number
 * of records per call, so a flooding runner cannot starve the caller's
 * loop) and dispatch it to ev. Returns 0 (call again when readable), or
 * -1 when the sandbox ended: EOF, a socket error, or a protocol error, in
 * which case the sandbox has been killed. sw_sandbox_error says which.
 */
int sw_sandbox_read(struct sw_sandbox *sb, const struct sw_sandbox_events *ev, void *arg);

/*
 * Feed bytes as if read from the control socket (for other transports and
 * for fuzzing); same contract as sw_sandbox_read.
 */
int sw_sandbox_feed(struct sw_sandbox *sb, const void *buf, size_t len,
		    const struct sw_sandbox_events *ev, void *arg);

/* ---- blocking convenience --------------------------------------------------- */

struct sw_sandbox_result {
	struct sw_sandbox_exit exit; /* exit.error points into error[] */
	char *out;		     /* stdout, NUL-terminated, at most max_output bytes */
	size_t out_len;
	char *err; /* stderr, likewise */
	size_t err_len;
	bool out_truncated, err_truncated;
	char error[256];
};

/*
 * Run one command to its end: exec_start, then flush/read until EXIT,
 * keeping at most max_output bytes of each stream. The host side gives up
 * (kills the sandbox) if the runner is not done timeout + 5 s after the
 * start. Returns 0 with res filled (any status), or -1 with errstr when the
 * sandbox failed (it is then dead). Free res with sw_sandbox_result_free.
 */
int sw_sandbox_run(struct sw_sandbox *sb, const struct sw_sandbox_exec *ex, size_t max_output,
		   struct sw_sandbox_result *res, char *errstr, size_t errlen);
void sw_sandbox_result_free(struct sw_sandbox_result *res);

#endif
