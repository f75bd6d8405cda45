/*
 * bwrap.c: the bubblewrap isolation backend.
 *
 * One sandbox is one bwrap process (the monitor, our child) and, inside
 * fresh user/pid/mount/ipc/uts/cgroup (and, by policy, network) namespaces,
 * the tool runner as pid 1 (--as-pid-1): when it dies the kernel kills
 * everything else in its pid namespace. The runner gets the control socket
 * as fd 3 and nothing else of ours; bwrap gets the seccomp program on a
 * fixed fd, its stderr in a memfd we read back for diagnostics, and
 * reports the runner's host pid on --info-fd. When we are root, bwrap
 * itself runs as the configured unprivileged host uid (default 65534), so
 * the sandbox owns nothing on the host even outside its namespaces.
 *
 * What every sandbox gets lives in one host directory made by
 * sw_sandbox_bwrap_new: a copy of the runner and the generated etc/passwd
 * and etc/group. They are copied (--file) into each sandbox's root tmpfs,
 * never bound: a bind shows its host path in /proc/<pid>/mountinfo. The
 * workspace and /tmp are tmpfs of the sandbox's disk_bytes (a host
 * workspace is bound only when the spec names one). Policy full adds
 * slirp4netns and nftables rules to the sandbox's own network namespace
 * (netfull.c). docs/SANDBOX.md explains each flag.
 *
 * With per-sandbox cgroups on (cgroup.c), bwrap's process joins the
 * sandbox's cgroup between fork and exec, still privileged, so that
 * everything of the sandbox is born inside it and bound as a whole.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sandbox_cg.h"
#include "sandbox_net.h"
#include "sw_sandbox.h"

/* Where things land in bwrap's (and then the runner's) fd table. */
enum {
	FD_CTL = SW_SANDBOX_CTL_FD, /* 3 */
	FD_SECCOMP = 4,
	FD_INFO = 5,
	FD_HOSTS = 6,  /* /etc/hosts */
	FD_RUNNER = 7, /* the runner's copy, copied into the sandbox */
	FD_PASSWD = 8,
	FD_GROUP = 9,
	FD_RESOLV = 10, /* /etc/resolv.conf of policy full */
	FD_FIRST_FREE = 11,
};

#define MAX_ARGS 1024
#define SW_SANDBOX_MAX_LINKS 32 /* host symlinks a variant may mirror */
#define SPAWN_STACK (64 * 1024) /* exec_bwrap's stack until its execve */
#define KILL_WAIT_MS 3000	/* for the runner to die before bwrap is killed too */
#define DEFAULT_HOSTNAME "sandbox"

struct bwrap {
	char *bwrap_path;
	bool drop; /* we are root: run bwrap as uid/gid */
	uid_t uid;
	gid_t gid;
	char *dir;    /* our state directory */
	char *root;   /* <dir>/root, bound at /.sagewai */
	uint8_t *bpf; /* the seccomp program */
	size_t bpf_len;
	struct sw_sandbox_cg cg; /* where sandbox cgroups go, or off */
	struct sw_sandbox_netfull_cfg net; /* policy full: slirp4netns, nft */
	char *slirp_path, *nft_path;
	bool full_ok;	    /* both there */
	char full_why[300]; /* else why not */
};

struct bwrap_inst {
	pid_t bwrap_pid; /* our child, the monitor */
	pid_t pid;	 /* the runner, host pid */
	int pidfd;	 /* of the runner, or -1 */
	int mon_pidfd;	 /* of bwrap, or -1 */
	int errlog;	 /* memfd holding bwrap's stderr */
	dev_t ns_dev;	 /* the sandbox's pid namespace */
	ino_t ns_ino;
	bool reaped;
	struct sw_sandbox_cg_box cg; /* its cgroup(s), when on */
	struct sw_sandbox_netfull net; /* policy full: its slirp4netns */
	/* while starting (bw_create_begin .. bw_create_step) */
	struct bwrap *b;
	int info_fd;		 /* --info-fd's read end, non-blocking, or -1 */
	char info[1024];	 /* what it said so far */
	size_t info_have;
	enum sw_sandbox_net net_policy;
	sw_sandbox_egress_hook egress_hook;
	void *egress_arg;
};

struct argv_buf {
	char *v[MAX_ARGS + 1];
	size_t n;
	char *owned[64]; /* strings allocated for numbers */
	size_t n_owned;
	bool overflow;
};

static void arg(struct argv_buf *a, const char *s)
{
	if (a->n >= MAX_ARGS) {
		a->overflow = true;
		return;
	}
	a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

static void arg_num(struct argv_buf *a, unsigned long long v)
{
	char *s;

	if (a->n_owned >= sizeof(a->owned) / sizeof(a->owned[0]) || asprintf(&s, "%llu", v) < 0) {
		a->overflow = true;
		return;
	}
	a->owned[a->n_owned++] = s;
	arg(a, s);
}

static void argv_free(struct argv_buf *a)
{
	for (size_t i = 0; i < a->n_owned; i++)
		free(a->owned[i]);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int memfd_with(const char *name, const void *data, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	const uint8_t *p = data;

	if (fd < 0)
		return -1;
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	if (lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tree(const char *dir)
{
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Create path with mode and exactly these bytes. */
static int write_file(const char *path, mode_t mode, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	const uint8_t *p = data;

	if (fd < 0)
		return -1;
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fchmod(fd, mode) != 0) {
		close(fd);
		return -1;
	}
	return close(fd);
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
	struct stat st;
	char *buf = NULL;
	int fd, rc = -1;

	if ((fd = open(from, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > (64 << 20) || (buf = malloc((size_t)st.st_size)) == NULL ||
	    read(fd, buf, (size_t)st.st_size) != st.st_size)
		goto out;
	rc = write_file(to, mode, buf, (size_t)st.st_size);
out:
	free(buf);
	close(fd);
	return rc;
}

/* The shared, read-only /.sagewai tree (see the top of this file). */
static int make_state(struct bwrap *b, const char *parent, const char *runner, char *errstr,
		      size_t errlen)
{
	char path[PATH_MAX], text[256];

	if (asprintf(&b->dir, "%s/sagewai-sandbox-XXXXXX", parent ? parent : "/tmp") < 0) {
		b->dir = NULL;
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	if (mkdtemp(b->dir) == NULL) {
		snprintf(errstr, errlen, "bwrap: state directory under %s: %s",
			 parent ? parent : "/tmp", strerror(errno));
		free(b->dir);
		b->dir = NULL;
		return -1;
	}
	if (asprintf(&b->root, "%s/root", b->dir) < 0) {
		b->root = NULL;
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/etc", b->root);
	if (chmod(b->dir, 0755) != 0 || mkdir(b->root, 0755) != 0 || mkdir(path, 0755) != 0 ||
	    chmod(b->root, 0755) != 0 || chmod(path, 0755) != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/toolrunner", b->root);
	if (copy_file(runner, path, 0555) != 0) {
		snprintf(errstr, errlen, "bwrap: cannot copy the tool runner %s: %s", runner,
			 strerror(errno));
		return -1;
	}
	snprintf(text, sizeof(text),
		 "root:x:0:0:root:/:/usr/sbin/nologin\n"
		 "sandbox:x:%d:%d:sandbox:%s:/bin/sh\n",
		 SW_SANDBOX_UID, SW_SANDBOX_UID, SW_SANDBOX_WORKSPACE);
	snprintf(path, sizeof(path), "%s/etc/passwd", b->root);
	if (write_file(path, 0444, text, strlen(text)) != 0)
		goto fail;
	snprintf(text, sizeof(text), "root:x:0:\nsandbox:x:%d:\n", SW_SANDBOX_UID);
	snprintf(path, sizeof(path), "%s/etc/group", b->root);
	if (write_file(path, 0444, text, strlen(text)) != 0)
		goto fail;
	snprintf(text, sizeof(text), "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t%s\n",
		 DEFAULT_HOSTNAME);
	snprintf(path, sizeof(path), "%s/etc/hosts", b->root);
	if (write_file(path, 0444, text, strlen(text)) != 0)
		goto fail;
	/* Mount point for an egress socket (the tree itself is read-only). */
	snprintf(path, sizeof(path), "%s/egress.sock", b->root);
	if (write_file(path, 0444, "", 0) != 0)
		goto fail;
	return 0;
fail:
	snprintf(errstr, errlen, "bwrap: state directory %s: %s", b->dir, strerror(errno));
	return -1;
}

/* ---- the backend --------------------------------------------------------- */

static void bw_free(void *state)
{
	struct bwrap *b = state;

	if (b == NULL)
		return;
	if (b->dir != NULL)
		remove_tree(b->dir);
	sw_sandbox_cg_fini(&b->cg);
	free(b->bwrap_path);
	free(b->slirp_path);
	free(b->nft_path);
	free(b->dir);
	free(b->root);
	free(b->bpf);
	free(b);
}

/* The variant's binds: at their own place, a host symlink is recreated as
 * the same symlink (merged-/usr hosts have /bin -> usr/bin), anything else
 * ro-bound; elsewhere ("at"), the host path is followed (a variant store's
 * "current" link to a content-addressed root) and its target ro-bound. */
static int add_binds(struct argv_buf *a, const struct sw_sandbox_variant *v,
		     char links[][PATH_MAX], size_t *n_links, char *errstr, size_t errlen)
{
	for (size_t i = 0; i < v->n_ro_binds; i++) {
		const struct sw_sandbox_bind *b = &v->ro_binds[i];
		int same = strcmp(b->at, b->path) == 0;
		struct stat st;
		ssize_t n;

		if ((same ? lstat(b->path, &st) : stat(b->path, &st)) != 0) {
			if (b->optional && errno == ENOENT)
				continue;
			if (same)
				snprintf(errstr, errlen, "variant %s: %s: %s", v->name, b->path,
					 strerror(errno));
			else
				snprintf(errstr, errlen,
					 "variant %s: %s (bound at %s): %s (is the variant "
					 "built?)",
					 v->name, b->path, b->at, strerror(errno));
			return -1;
		}
		if (same && S_ISLNK(st.st_mode)) {
			if (*n_links >= SW_SANDBOX_MAX_LINKS) {
				snprintf(errstr, errlen, "variant %s: too many symlinks", v->name);
				return -1;
			}
			n = readlink(b->path, links[*n_links], PATH_MAX - 1);
			if (n <= 0) {
				snprintf(errstr, errlen, "variant %s: readlink %s: %s", v->name,
					 b->path, strerror(errno));
				return -1;
			}
			links[*n_links][n] = '\0';
			arg(a, "--symlink");
			arg(a, links[(*n_links)++]);
			arg(a, b->path);
		} else {
			arg(a, b->optional ? "--ro-bind-try" : "--ro-bind");
			arg(a, b->path);
			arg(a, b->at);
		}
	}
	return 0;
}

/* Parse bwrap's --info-fd JSON for "child-pid". */
static pid_t parse_info(const char *buf, size_t len)
{
	json_t *j = json_loadb(buf, len, 0, NULL);
	json_int_t pid = 0;

	if (j != NULL)
		pid = json_integer_value(json_object_get(j, "child-pid"));
	json_decref(j);
	return pid > 1 && pid <= INT_MAX ? (pid_t)pid : 0;
}

/*
 * Read what the info pipe has now (bwrap writes one JSON object, then
 * closes it once the child exists). 1 when it is complete (the object's
 * closing brace, EOF or a full buffer), 0 when more may come.
 */
static int info_read(struct bwrap_inst *in)
{
	for (;;) {
		ssize_t n = read(in->info_fd, in->info + in->info_have,
				 sizeof(in->info) - 1 - in->info_have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			return 1;
		in->info_have += (size_t)n;
		if (in->info_have == sizeof(in->info) - 1 ||
		    memchr(in->info, '}', in->info_have) != NULL)
			return 1;
	}
}

/* bwrap's stderr so far, first line, for an error message. */
static void errlog_line(int fd, char *out, size_t outlen)
{
	ssize_t n = fd >= 0 ? pread(fd, out, outlen - 1, 0) : -1;
	char *nl;

	out[n > 0 ? n : 0] = '\0';
	if ((nl = strchr(out, '\n')) != NULL)
		*nl = '\0';
}

static void bw_kill(void *vinst)
{
	struct bwrap_inst *in = vinst;

	if (in->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, in->pidfd, SIGKILL, NULL, 0);
	else if (!in->reaped)
		kill(in->bwrap_pid, SIGKILL);
}

static void bw_destroy(void *vinst, struct sw_sandbox_usage *final)
{
	struct bwrap_inst *in = vinst;
	struct rusage ru;
	int64_t deadline;
	int status;

	if (in == NULL)
		return;
	bw_kill(in);
	/* The runner is pid 1 of the sandbox: when it is gone, so is every
	 * other process of it. Let bwrap reap it (so its usage adds up into
	 * bwrap's), then reap bwrap; kill bwrap too if it lingers. */
	deadline = mono_ms() + KILL_WAIT_MS;
	for (int i = 0; i < 2; i++) {
		struct pollfd pfd = {.fd = i == 0 ? in->pidfd : in->mon_pidfd, .events = POLLIN};
		int64_t left = deadline - mono_ms();

		if (pfd.fd >= 0 && left > 0)
			while (poll(&pfd, 1, (int)left) < 0 && errno == EINTR)
				;
	}
	memset(&ru, 0, sizeof(ru));
	if (!in->reaped) {
		if (wait4(in->bwrap_pid, &status, WNOHANG, &ru) != in->bwrap_pid) {
			kill(in->bwrap_pid, SIGKILL);
			while (wait4(in->bwrap_pid, &status, 0, &ru) < 0 && errno == EINTR)
				;
		}
		in->reaped = true;
	}
	if (final != NULL) {
		final->utime_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
		final->stime_us = (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
		final->maxrss_kb = ru.ru_maxrss;
	}
	/* Everything is reaped: the cgroup can tell its peak, and go. */
	sw_sandbox_cg_box_destroy(&in->cg, final);
	sw_sandbox_netfull_stop(&in->net);
	if (in->pidfd >= 0)
		close(in->pidfd);
	if (in->mon_pidfd >= 0)
		close(in->mon_pidfd);
	if (in->errlog >= 0)
		close(in->errlog);
	if (in->info_fd >= 0)
		close(in->info_fd);
	free(in);
}

static int bw_stats(void *vinst, struct sw_sandbox_stats *st)
{
	struct bwrap_inst *in = vinst;
	struct dirent *e;
	DIR *d;

	st->pid = in->pid;
	st->monitor_pid = in->reaped ? 0 : in->bwrap_pid;
	st->nproc = 0;
	if ((d = opendir("/proc")) == NULL) {
		st->nproc = -1;
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		char path[64];
		struct stat s;
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (*end != '\0' || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/ns/pid", pid);
		if (stat(path, &s) != 0 || s.st_ino != in->ns_ino || s.st_dev != in->ns_dev)
			continue;
		if ((size_t)st->nproc < sizeof(st->pids) / sizeof(st->pids[0]))
			st->pids[st->nproc] = (pid_t)pid;
		st->nproc++;
	}
	closedir(d);
	return 0;
}

/* Child side of create: into the sandbox's cgroup, fds into place, drop
 * to the run uid, exec bwrap. It runs on the creator's memory (spawn_bwrap)
 * with every signal blocked: only raw system calls and async-signal-safe
 * ones, nothing that writes to memory the creator uses (no malloc, no
 * stdio, no set*id wrappers that signal the creator's other threads). */
static void __attribute__((noreturn, no_sanitize_address))
exec_bwrap(const struct bwrap *b, char *const argv[], const int src[FD_FIRST_FREE],
	   const struct sw_sandbox_cg_box *cg, pid_t parent)
{
	static char *const empty_env[] = {NULL};
	int tmp[FD_FIRST_FREE];
	sigset_t none;

	if (sw_sandbox_cg_box_join(cg) != 0) {
		static const char msg[] = "sandbox: cannot join the sandbox cgroup\n";

		(void)!write(src[2], msg, sizeof(msg) - 1);
		_exit(126);
	}
	/* Move every source out of the way first, then into place. */
	for (int i = 0; i < FD_FIRST_FREE; i++)
		if ((tmp[i] = fcntl(src[i], F_DUPFD, 100)) < 0)
			_exit(126);
	for (int i = 0; i < FD_FIRST_FREE; i++)
		if (dup2(tmp[i], i) < 0)
			_exit(126);
	if (syscall(SYS_close_range, FD_FIRST_FREE, ~0U, 0) != 0) {
		for (int fd = FD_FIRST_FREE; fd < 65536; fd++)
			close(fd);
	}
	/* Ignored signals and the mask survive exec: reset them. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Raw syscalls: this thread is the process now, no libc broadcast. */
	if (b->drop && (syscall(SYS_setgroups, 0, NULL) != 0 ||
			syscall(SYS_setresgid, b->gid, b->gid, b->gid) != 0 ||
			syscall(SYS_setresuid, b->uid, b->uid, b->uid) != 0)) {
		static const char msg[] = "sandbox: cannot drop to the run uid\n";

		(void)!write(2, msg, sizeof(msg) - 1);
		_exit(126);
	}
	/*
	 * Die with the creating thread from here on, not only once bwrap's own
	 * --die-with-parent runs: a creator killed in between would otherwise
	 * leave this bwrap behind. After the uid change, which clears the
	 * setting; kept across the exec (bwrap is not set-uid).
	 */
	if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
	    syscall(SYS_getppid) != parent)
		_exit(125);
	execve(b->bwrap_path, argv, empty_env);
	{
		static const char msg[] = "sandbox: cannot execute bwrap\n";

		(void)!write(2, msg, sizeof(msg) - 1);
	}
	_exit(127);
}

struct spawn_arg {
	const struct bwrap *b;
	char *const *argv;
	const int *src;
	const struct sw_sandbox_cg_box *cg;
	pid_t parent;
};

__attribute__((no_sanitize_address)) static int spawn_child(void *arg)
{
	const struct spawn_arg *sa = arg;

	exec_bwrap(sa->b, sa->argv, sa->src, sa->cg, sa->parent);
}

/*
 * Start exec_bwrap in a child that shares our memory until its execve, as
 * posix_spawn does (CLONE_VM | CLONE_VFORK: this thread waits meanwhile).
 * A fork would copy the page tables of the whole creating process and pay
 * copy-on-write faults on both sides, for a child that only moves file
 * descriptors and execs: about half of the privileged part's CPU in a
 * burst of creates. Every signal stays blocked across the clone, so no
 * handler of ours runs on the shared memory; the child sets them to the
 * default before unblocking (exec_bwrap). Its own stack, mapped for the
 * call. The child's pid, or -1 with errno.
 */
static pid_t spawn_bwrap(struct spawn_arg *sa)
{
	const size_t size = SPAWN_STACK;
	sigset_t all, old;
	pid_t pid;
	void *stack;
	int e;

	stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
		     -1, 0);
	if (stack == MAP_FAILED)
		return -1;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pid = clone(spawn_child, (char *)stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, sa);
	e = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	munmap(stack, size);
	errno = e;
	return pid;
}

/*
 * The first half of a create: everything up to bwrap's fork and exec,
 * without waiting for it. *wait_fd (the info pipe, owned by inst) becomes
 * readable when bw_create_step has something to do.
 */
static int bw_create_begin(void *state, const struct sw_sandbox_spec *spec,
			   const struct sw_sandbox_limits *lim, void **out_inst, int *ctl_fd,
			   int *wait_fd, char *errstr, size_t errlen)
{
	struct bwrap *b = state;
	struct bwrap_inst *in = NULL;
	struct argv_buf a = {.n = 0};
	char hosts[256], path[PATH_MAX];
	const char *hostname = spec->hostname ? spec->hostname : DEFAULT_HOSTNAME;
	int sv[2] = {-1, -1}, info[2] = {-1, -1};
	int fd_seccomp = -1, fd_hosts = -1, fd_null = -1, fd_copy[3] = {-1, -1, -1};
	int fd_resolv = -1;
	static const char resolv[] = "nameserver 10.0.2.3\n"; /* slirp4netns's DNS */
	char(*mylinks)[PATH_MAX] = NULL;
	size_t n_links = 0;
	struct stat st;
	pid_t pid;

	if (spec->workspace != NULL && (stat(spec->workspace, &st) != 0 || !S_ISDIR(st.st_mode))) {
		snprintf(errstr, errlen, "bwrap: workspace %s is not a directory", spec->workspace);
		return -1;
	}
	if (spec->net == SW_SANDBOX_NET_FULL && !b->full_ok) {
		snprintf(errstr, errlen, "%s (%s)", SW_SANDBOX_ERR_NO_FULL, b->full_why);
		return -1;
	}
	if (lim->disk_bytes == 0 || lim->disk_bytes > SW_SANDBOX_DISK_BYTES_MAX) {
		snprintf(errstr, errlen, "bwrap: disk_bytes out of range");
		return -1;
	}
	if (spec->workspace != NULL && b->drop && st.st_uid != b->uid &&
	    chown(spec->workspace, b->uid, b->gid) != 0) {
		snprintf(errstr, errlen, "bwrap: chown workspace: %s", strerror(errno));
		return -1;
	}
	if (strlen(hostname) == 0 || strlen(hostname) > 63 ||
	    strpbrk(hostname, " \t\n/") != NULL) {
		snprintf(errstr, errlen, "bwrap: bad hostname");
		return -1;
	}
	if ((in = calloc(1, sizeof(*in))) == NULL ||
	    (mylinks = calloc(SW_SANDBOX_MAX_LINKS, PATH_MAX)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	in->pidfd = in->mon_pidfd = in->errlog = in->info_fd = -1;
	in->b = b;
	in->net_policy = spec->net;
	in->egress_hook = spec->egress_hook;
	in->egress_arg = spec->egress_arg;
	in->net.pidfd = in->net.exit_fd = -1;
	for (int i = 0; i < SW_CG_MAX; i++)
		in->cg.procs[i] = -1;

	snprintf(hosts, sizeof(hosts), "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t%s\n",
		 hostname);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0 ||
	    pipe2(info, O_CLOEXEC) != 0 || fcntl(info[0], F_SETFL, O_NONBLOCK) != 0 ||
	    (fd_seccomp = memfd_with("sw-seccomp", b->bpf, b->bpf_len)) < 0 ||
	    (fd_null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
	    (fd_hosts = memfd_with("sw-hosts", hosts, strlen(hosts))) < 0 ||
	    (fd_resolv = memfd_with("sw-resolv", resolv, strlen(resolv))) < 0 ||
	    (in->errlog = memfd_create("sw-bwrap-stderr", MFD_CLOEXEC)) < 0) {
		snprintf(errstr, errlen, "bwrap: setting up fds: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < 3; i++) {
		static const char *const src[] = {"toolrunner", "etc/passwd", "etc/group"};

		snprintf(path, sizeof(path), "%s/%s", b->root, src[i]);
		if ((fd_copy[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			snprintf(errstr, errlen, "bwrap: %s: %s", path, strerror(errno));
			goto fail;
		}
	}

	arg(&a, b->bwrap_path);
	arg(&a, "--unshare-user");
	arg(&a, "--uid");
	arg_num(&a, SW_SANDBOX_UID);
	arg(&a, "--gid");
	arg_num(&a, SW_SANDBOX_UID);
	arg(&a, "--disable-userns");
	arg(&a, "--unshare-pid");
	arg(&a, "--as-pid-1");
	arg(&a, "--unshare-ipc");
	arg(&a, "--unshare-uts");
	arg(&a, "--unshare-cgroup-try");
	/* every policy: own network namespace (full: slirp4netns, below) */
	arg(&a, "--unshare-net");
	arg(&a, "--hostname");
	arg(&a, hostname);
	arg(&a, "--die-with-parent");
	arg(&a, "--new-session");
	arg(&a, "--cap-drop");
	arg(&a, "ALL");
	if (add_binds(&a, spec->variant, mylinks, &n_links, errstr, errlen) != 0)
		goto fail;
	/* The runner and /etc/{passwd,group,hosts} are copied (--file) into
	 * the sandbox's own root tmpfs, not bound from our state directory:
	 * a bind shows its host path in /proc/self/mountinfo, a copied file
	 * is no mount at all. */
	arg(&a, "--dir");
	arg(&a, "/.sagewai");
	arg(&a, "--perms");
	arg(&a, "0555");
	arg(&a, "--file");
	arg_num(&a, FD_RUNNER);
	arg(&a, SW_SANDBOX_RUNNER);
	/* the credential client is the runner under another name */
	arg(&a, "--dir");
	arg(&a, SW_SANDBOX_SHARED "/bin");
	arg(&a, "--symlink");
	arg(&a, "../toolrunner");
	arg(&a, SW_SANDBOX_CRED);
	for (int i = 0; i < 3; i++) {
		static const char *const dst[] = {"/etc/passwd", "/etc/group", "/etc/hosts"};
		static const int fds[] = {FD_PASSWD, FD_GROUP, FD_HOSTS};

		arg(&a, "--perms");
		arg(&a, "0444");
		arg(&a, "--file");
		arg_num(&a, (unsigned long long)fds[i]);
		arg(&a, dst[i]);
	}
	if (spec->net == SW_SANDBOX_NET_FULL) {
		arg(&a, "--perms");
		arg(&a, "0444");
		arg(&a, "--file");
		arg_num(&a, FD_RESOLV);
		arg(&a, "/etc/resolv.conf");
	}
	if (spec->net == SW_SANDBOX_NET_EGRESS_ONLY && spec->egress_socket != NULL) {
		arg(&a, "--ro-bind");
		arg(&a, spec->egress_socket);
		arg(&a, SW_SANDBOX_EGRESS_SOCKET);
	}
	arg(&a, "--proc");
	arg(&a, "/proc");
	arg(&a, "--dev");
	arg(&a, "/dev");
	/* /tmp and (without a host workspace) /workspace: tmpfs of at most
	 * disk_bytes each, their pages charged to the sandbox's memory
	 * cgroup. */
	arg(&a, "--size");
	arg_num(&a, lim->disk_bytes);
	arg(&a, "--tmpfs");
	arg(&a, "/tmp");
	if (spec->workspace != NULL) {
		arg(&a, "--bind");
		arg(&a, spec->workspace);
		arg(&a, SW_SANDBOX_WORKSPACE);
	} else {
		arg(&a, "--perms");
		arg(&a, "0700");
		arg(&a, "--size");
		arg_num(&a, lim->disk_bytes);
		arg(&a, "--tmpfs");
		arg(&a, SW_SANDBOX_WORKSPACE);
	}
	/* The root tmpfs bwrap built is read-only from here on; /tmp,
	 * /workspace, /dev and /proc are their own mounts. */
	arg(&a, "--remount-ro");
	arg(&a, "/");
	arg(&a, "--chdir");
	arg(&a, SW_SANDBOX_WORKSPACE);
	arg(&a, "--clearenv");
	for (size_t i = 0; spec->env != NULL && spec->env[i] != NULL; i++) {
		const char *eq = strchr(spec->env[i], '=');
		char *name;

		if (eq == NULL || a.n_owned >= sizeof(a.owned) / sizeof(a.owned[0]) ||
		    (name = strndup(spec->env[i], (size_t)(eq - spec->env[i]))) == NULL) {
			a.overflow = true;
			break;
		}
		a.owned[a.n_owned++] = name;
		arg(&a, "--setenv");
		arg(&a, name);
		arg(&a, eq + 1);
	}
	arg(&a, "--seccomp");
	arg_num(&a, FD_SECCOMP);
	arg(&a, "--info-fd");
	arg_num(&a, FD_INFO);
	arg(&a, "--");
	arg(&a, SW_SANDBOX_RUNNER);
	arg(&a, "--nproc");
	arg_num(&a, lim->nproc);
	arg(&a, "--as");
	arg_num(&a, lim->memory_bytes);
	arg(&a, "--cpu");
	arg_num(&a, lim->cpu_seconds);
	arg(&a, "--fsize");
	arg_num(&a, lim->file_size_bytes);
	arg(&a, "--nofile");
	arg_num(&a, lim->nofile);
	arg(&a, "--wall");
	arg_num(&a, lim->wall_ms);
	if (a.overflow) {
		snprintf(errstr, errlen,
			 "bwrap: command line too long (environment > 60 entries?)");
		goto fail;
	}
	if (sw_sandbox_cg_box_new(&b->cg, lim, &in->cg, errstr, errlen) != 0)
		goto fail;

	{
		const int src[FD_FIRST_FREE] = {
		    fd_null,  fd_null,	   in->errlog,	sv[1],	    fd_seccomp,
		    info[1],  fd_hosts,	   fd_copy[0],	fd_copy[1], fd_copy[2],
		    fd_resolv,
		};

		struct spawn_arg sa = {b, a.v, src, &in->cg, getpid()};

		if ((pid = spawn_bwrap(&sa)) < 0) {
			snprintf(errstr, errlen, "bwrap: clone: %s", strerror(errno));
			goto fail;
		}
	}
	sw_sandbox_cg_box_close(&in->cg);
	/* while bwrap starts: the next create's cgroup, made ahead (a failure
	 * here only means the next one makes its own) */
	(void)sw_sandbox_cg_spare_fill(&b->cg);
	in->bwrap_pid = pid;
	in->mon_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	close(sv[1]);
	close(info[1]);
	sv[1] = info[1] = -1;
	close(fd_seccomp);
	close(fd_hosts);
	close(fd_null);
	close(fd_resolv);
	fd_seccomp = fd_hosts = fd_null = fd_resolv = -1;
	for (int i = 0; i < 3; i++) {
		close(fd_copy[i]);
		fd_copy[i] = -1;
	}

	in->info_fd = info[0];
	info[0] = -1;
	argv_free(&a);
	free(mylinks);
	*out_inst = in;
	*ctl_fd = sv[0];
	*wait_fd = in->info_fd;
	return 0;

fail:
	argv_free(&a);
	free(mylinks);
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (info[i] >= 0)
			close(info[i]);
	}
	if (fd_seccomp >= 0)
		close(fd_seccomp);
	if (fd_hosts >= 0)
		close(fd_hosts);
	if (fd_resolv >= 0)
		close(fd_resolv);
	for (int i = 0; i < 3; i++)
		if (fd_copy[i] >= 0)
			close(fd_copy[i]);
	if (fd_null >= 0)
		close(fd_null);
	if (in != NULL) {
		if (in->errlog >= 0)
			close(in->errlog);
		if (in->mon_pidfd >= 0)
			close(in->mon_pidfd);
		sw_sandbox_cg_box_destroy(&in->cg, NULL);
		free(in);
	}
	return -1;
}

/*
 * The second half, called when the info pipe is readable: 0 while bwrap
 * has not said everything yet; 1 once the runner's host pid is known and
 * the network is set up (policy full, the egress hook); -1 with errstr
 * (the caller destroys inst). Only policy full waits here (slirp4netns
 * and nft, netfull.c).
 */
static int bw_create_step(void *vinst, char *errstr, size_t errlen)
{
	struct bwrap_inst *in = vinst;
	char line[256], path[64];
	struct stat st;

	if (in->info_fd < 0) {
		snprintf(errstr, errlen, "bwrap: not starting");
		return -1;
	}
	if (info_read(in) == 0)
		return 0;
	close(in->info_fd);
	in->info_fd = -1;
	in->pid = in->info_have ? parse_info(in->info, in->info_have) : 0;
	if (in->pid == 0) {
		int status;

		/* bwrap closed the pipe without a child: it has failed */
		kill(in->bwrap_pid, SIGKILL);
		while (waitpid(in->bwrap_pid, &status, 0) < 0 && errno == EINTR)
			;
		in->reaped = true;
		errlog_line(in->errlog, line, sizeof(line));
		snprintf(errstr, errlen, "bwrap failed: %s", line[0] ? line : "no child started");
		return -1;
	}
	in->pidfd = (int)syscall(SYS_pidfd_open, in->pid, 0);
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)in->pid);
	if (stat(path, &st) == 0) {
		in->ns_dev = st.st_dev;
		in->ns_ino = st.st_ino;
	}
	/* Before the create ends, so before any command of the sandbox runs. */
	if (in->net_policy == SW_SANDBOX_NET_FULL &&
	    sw_sandbox_netfull_start(&in->b->net, in->pid, &in->net, errstr, errlen) != 0)
		return -1;
	if (in->net_policy == SW_SANDBOX_NET_EGRESS_ONLY && in->egress_hook != NULL) {
		int nfd;

		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)in->pid);
		if ((nfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			snprintf(errstr, errlen, "bwrap: %s: %s", path, strerror(errno));
			return -1;
		}
		if (in->egress_hook(in->egress_arg, nfd, in->pid, errstr, errlen) != 0) {
			close(nfd);
			return -1;
		}
		close(nfd);
	}
	return 1;
}

/* Both halves, waiting in poll for the info pipe (at most the spec's start
 * timeout). */
static int bw_create(void *state, const struct sw_sandbox_spec *spec,
		     const struct sw_sandbox_limits *lim, void **out_inst, int *ctl_fd,
		     char *errstr, size_t errlen)
{
	uint32_t start_ms = spec->start_timeout_ms ? spec->start_timeout_ms : 10000;
	int64_t deadline = mono_ms() + start_ms;
	void *inst;
	int fd, wait_fd, rc;

	if (bw_create_begin(state, spec, lim, &inst, &fd, &wait_fd, errstr, errlen) != 0)
		return -1;
	while ((rc = bw_create_step(inst, errstr, errlen)) == 0) {
		struct pollfd pfd = {.fd = wait_fd, .events = POLLIN};
		int64_t left = deadline - mono_ms();

		if (left <= 0) {
			snprintf(errstr, errlen, "bwrap failed: no child started in %u ms",
				 start_ms);
			rc = -1;
			break;
		}
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
			snprintf(errstr, errlen, "bwrap: poll: %s", strerror(errno));
			rc = -1;
			break;
		}
	}
	if (rc < 0) {
		close(fd);
		bw_destroy(inst, NULL);
		return -1;
	}
	*out_inst = inst;
	*ctl_fd = fd;
	return 0;
}

static pid_t bw_pid(void *vinst)
{
	return ((struct bwrap_inst *)vinst)->pid;
}

static int bw_gone_fd(void *vinst)
{
	struct bwrap_inst *in = vinst;

	return in->reaped ? -1 : in->mon_pidfd;
}

static void bw_why(void *vinst, char *buf, size_t len)
{
	struct bwrap_inst *in = vinst;

	errlog_line(in->errlog, buf, len);
}

struct sw_sandbox_backend *sw_sandbox_bwrap_new(const struct sw_sandbox_bwrap_config *cfg,
						char *errstr, size_t errlen)
{
	struct sw_sandbox_backend *be = calloc(1, sizeof(*be));
	struct bwrap *b = calloc(1, sizeof(*b));
	const char *bw = cfg->bwrap_path ? cfg->bwrap_path : "/usr/bin/bwrap";
	struct stat st;
	int fd = -1;
	off_t n;

	if (be == NULL || b == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	if (access(bw, X_OK) != 0) {
		snprintf(errstr, errlen, "bwrap: %s: %s", bw, strerror(errno));
		goto fail;
	}
	if (cfg->runner_path == NULL || stat(cfg->runner_path, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(errstr, errlen, "bwrap: tool runner %s missing",
			 cfg->runner_path ? cfg->runner_path : "(none)");
		goto fail;
	}
	if ((b->bwrap_path = strdup(bw)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	if (make_state(b, cfg->state_dir, cfg->runner_path, errstr, errlen) != 0)
		goto fail;
	if (sw_sandbox_cg_init(&b->cg, cfg->cgroup, errstr, errlen) != 0)
		goto fail;
	b->drop = geteuid() == 0;
	b->uid = cfg->run_uid ? cfg->run_uid : SW_SANDBOX_UID;
	b->gid = cfg->run_gid ? cfg->run_gid : SW_SANDBOX_UID;
	if ((b->slirp_path = strdup(cfg->slirp_path ? cfg->slirp_path : "/usr/bin/slirp4netns")) ==
		NULL ||
	    (b->nft_path = strdup(cfg->nft_path ? cfg->nft_path : "/usr/sbin/nft")) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	b->net.slirp_path = b->slirp_path;
	b->net.nft_path = b->nft_path;
	b->net.drop = b->drop;
	b->net.uid = b->uid;
	b->net.gid = b->gid;
	b->full_ok = sw_sandbox_netfull_check(&b->net, b->full_why, sizeof(b->full_why)) == 0;
	if ((fd = memfd_create("sw-seccomp", MFD_CLOEXEC)) < 0) {
		snprintf(errstr, errlen, "memfd_create: %s", strerror(errno));
		goto fail;
	}
	if (sw_sandbox_seccomp_export(fd, errstr, errlen) != 0)
		goto fail;
	if ((n = lseek(fd, 0, SEEK_CUR)) <= 0 || (b->bpf = malloc((size_t)n)) == NULL ||
	    pread(fd, b->bpf, (size_t)n, 0) != n) {
		snprintf(errstr, errlen, "seccomp: cannot read back the program");
		goto fail;
	}
	b->bpf_len = (size_t)n;
	close(fd);
	be->name = "bwrap";
	be->state = b;
	be->create = bw_create;
	be->create_begin = bw_create_begin;
	be->create_step = bw_create_step;
	be->pid = bw_pid;
	be->gone_fd = bw_gone_fd;
	be->kill = bw_kill;
	be->destroy = bw_destroy;
	be->stats = bw_stats;
	be->why = bw_why;
	be->free = bw_free;
	return be;
fail:
	if (fd >= 0)
		close(fd);
	bw_free(b);
	free(be);
	return NULL;
}

const char *sw_sandbox_bwrap_cgroup_mode(const struct sw_sandbox_backend *be)
{
	if (be == NULL || be->free != bw_free)
		return "off: not a bwrap backend";
	return ((const struct bwrap *)be->state)->cg.mode;
}

int sw_sandbox_bwrap_swept(const struct sw_sandbox_backend *be)
{
	if (be == NULL || be->free != bw_free)
		return 0;
	return ((const struct bwrap *)be->state)->cg.swept_busy;
}

int sw_sandbox_bwrap_spares(struct sw_sandbox_backend *be, int n)
{
	struct bwrap *b;

	if (be == NULL || be->free != bw_free || n < 0 || n > SW_SANDBOX_CG_SPARES_MAX)
		return -1;
	b = be->state;
	b->cg.want_spares = n;
	return sw_sandbox_cg_spare_fill(&b->cg);
}

const char *sw_sandbox_bwrap_full_why(const struct sw_sandbox_backend *be)
{
	if (be == NULL || be->free != bw_free)
		return "not a bwrap backend";
	return ((const struct bwrap *)be->state)->full_ok ? NULL
							  : ((const struct bwrap *)be->state)->full_why;
}
