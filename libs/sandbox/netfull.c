/*
 * netfull.c: network policy "full" for the bubblewrap backend.
 *
 * A full sandbox has its own network namespace like the others (bwrap
 * --unshare-net), and two things make it reach the internet but nothing
 * of the host's:
 *
 *   1. nftables rules in the sandbox's namespace, loaded by nft run in
 *      that namespace before create returns (so before any command of the
 *      sandbox runs; the sandbox has no CAP_NET_ADMIN to undo them):
 *      everything but lo and slirp's DNS (10.0.2.3:53) towards loopback,
 *      private, link-local, shared, documentation, multicast and reserved
 *      IPv4 networks and towards the host's own addresses is rejected, and
 *      IPv6 (not offered) entirely.
 *   2. slirp4netns attached to the namespace (tap0, 10.0.2.100/24, routes
 *      via 10.0.2.2), with --disable-host-loopback so that 10.0.2.2 never
 *      means the host's 127.0.0.1. It runs as the run uid (joining the
 *      user namespace that owns the sandbox's network namespace) where
 *      /dev/net/tun allows, else as root in its own --enable-sandbox; it
 *      dies with the creator (PDEATHSIG) and when its --exit-fd is closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox_net.h"

#define NETFULL_WAIT_MS 10000 /* nft to finish, slirp4netns to be ready */

static const char rules_head[] =
    "table inet sagewai {\n"
    "  chain out {\n"
    "    type filter hook output priority 0; policy accept;\n"
    "    oifname \"lo\" accept\n"
    "    ip daddr 10.0.2.3 udp dport 53 accept\n"
    "    ip daddr 10.0.2.3 tcp dport 53 accept\n"
    "    ip daddr { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16,\n"
    "               172.16.0.0/12, 192.0.0.0/24, 192.0.2.0/24, 192.168.0.0/16,\n"
    "               198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24, 224.0.0.0/4,\n"
    "               240.0.0.0/4 } reject with icmpx type admin-prohibited\n"
    "    meta nfproto ipv6 reject with icmpx type admin-prohibited\n";
static const char rules_tail[] = "  }\n}\n";

/*
 * The rules: the fixed set above, and every IPv4 address of the host's own
 * interfaces as they are now (a public one included: through slirp4netns
 * it would reach the host's services listening on all addresses).
 */
static char *make_rules(size_t *len)
{
	struct ifaddrs *ifs = NULL, *i;
	char *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);
	int first = 1;

	if (f == NULL)
		return NULL;
	fputs(rules_head, f);
	if (getifaddrs(&ifs) == 0) {
		for (i = ifs; i != NULL; i = i->ifa_next) {
			char ip[INET_ADDRSTRLEN];

			if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
			    inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip,
				      sizeof(ip)) == NULL)
				continue;
			fprintf(f, "%s%s", first ? "    ip daddr { " : ", ", ip);
			first = 0;
		}
		freeifaddrs(ifs);
	}
	if (!first)
		fputs(" } reject with icmpx type admin-prohibited\n", f);
	fputs(rules_tail, f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	*len = n;
	return text;
}

int sw_sandbox_netfull_check(const struct sw_sandbox_netfull_cfg *cfg, char *why, size_t len)
{
	if (access(cfg->slirp_path, X_OK) != 0) {
		snprintf(why, len, "%s: %s (Debian package slirp4netns)", cfg->slirp_path,
			 strerror(errno));
		return -1;
	}
	if (access(cfg->nft_path, X_OK) != 0) {
		snprintf(why, len, "%s: %s (Debian package nftables)", cfg->nft_path,
			 strerror(errno));
		return -1;
	}
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void errlog_text(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

/* Child after fork: fds into place (src[i] -> i), then the rest closed. */
static void child_fds(const int *src, int n)
{
	int tmp[8];

	for (int i = 0; i < n; i++)
		if ((tmp[i] = fcntl(src[i], F_DUPFD, 100)) < 0)
			_exit(126);
	for (int i = 0; i < n; i++)
		if (dup2(tmp[i], i) < 0)
			_exit(126);
	if (syscall(SYS_close_range, n, ~0U, 0) != 0)
		_exit(126);
}

static void child_signals(void)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Wait for pid (bounded by deadline); 0 when it exited with status 0. */
static int wait_ok(pid_t pid, int64_t deadline)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0), status = 0;
	struct pollfd p = {.fd = pfd, .events = POLLIN};
	int64_t left = deadline - now_ms();

	if (pfd >= 0) {
		while (left > 0 && poll(&p, 1, (int)left) < 0 && errno == EINTR)
			left = deadline - now_ms();
		close(pfd);
	}
	if (waitpid(pid, &status, WNOHANG) != pid) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return -1;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* nft -f /dev/stdin, run in the sandbox's network namespace. */
static int load_rules(const struct sw_sandbox_netfull_cfg *cfg, int netns, int userns,
		      int64_t deadline, char *errstr, size_t errlen)
{
	char *const argv[] = {(char *)cfg->nft_path, "-f", "/dev/stdin", NULL};
	static char *const empty_env[] = {NULL};
	int in = -1, out = -1, err = -1, rc = -1;
	char text[256], *rules;
	size_t rules_len = 0;
	pid_t pid;

	if ((rules = make_rules(&rules_len)) == NULL) {
		snprintf(errstr, errlen, "network full: out of memory");
		return -1;
	}
	if ((in = (int)syscall(SYS_memfd_create, "sw-nft", MFD_CLOEXEC)) < 0 ||
	    write(in, rules, rules_len) != (ssize_t)rules_len ||
	    lseek(in, 0, SEEK_SET) != 0 || (out = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0 ||
	    (err = (int)syscall(SYS_memfd_create, "sw-nft-err", MFD_CLOEXEC)) < 0) {
		snprintf(errstr, errlen, "network full: nft fds: %s", strerror(errno));
		goto out;
	}
	if ((pid = fork()) < 0) {
		snprintf(errstr, errlen, "network full: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		const int src[3] = {in, out, err};

		child_signals();
		/* Not root: we own the user namespace that owns the network
		 * namespace; join it first to have CAP_NET_ADMIN there. */
		if (geteuid() != 0 && setns(userns, CLONE_NEWUSER) != 0)
			_exit(125);
		if (setns(netns, CLONE_NEWNET) != 0)
			_exit(125);
		child_fds(src, 3);
		execve(cfg->nft_path, argv, empty_env);
		_exit(127);
	}
	if (wait_ok(pid, deadline) != 0) {
		errlog_text(err, text, sizeof(text));
		snprintf(errstr, errlen, "network full: nft did not load the rules: %s",
			 text[0] ? text : "setns or exec failed");
		goto out;
	}
	rc = 0;
out:
	free(rules);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (err >= 0)
		close(err);
	return rc;
}

static int start_slirp(const struct sw_sandbox_netfull_cfg *cfg, int netns, int userns,
		       int64_t deadline, struct sw_sandbox_netfull *n, char *errstr,
		       size_t errlen)
{
	/* fds in the child: 3 exit-fd, 4 ready-fd, 5 user ns, 6 net ns */
	char *argv[16] = {(char *)cfg->slirp_path,
			  "--configure",
			  "--mtu=65520",
			  "--disable-host-loopback",
			  "--enable-seccomp",
			  "--exit-fd=3",
			  "--ready-fd=4",
			  "--userns-path=/proc/self/fd/5",
			  "--netns-type=path",
			  "/proc/self/fd/6",
			  "tap0",
			  NULL};
	struct stat tun;
	/* As the run uid where it may open /dev/net/tun (the usual 0666);
	 * a host that keeps it root's (0600) gets slirp4netns as root, but
	 * confined by its own sandbox: an empty root, no capabilities but
	 * CAP_NET_BIND_SERVICE, and its seccomp filter. */
	bool drop = cfg->drop && stat("/dev/net/tun", &tun) == 0 && (tun.st_mode & 0006) == 0006;
	static char *const empty_env[] = {NULL};
	int exitp[2] = {-1, -1}, ready[2] = {-1, -1}, null = -1, err = -1, rc = -1;
	char text[256], c = 0;
	pid_t pid, parent = getpid();

	if (cfg->drop && !drop) {
		memmove(&argv[2], &argv[1], 11 * sizeof(argv[0]));
		argv[1] = "--enable-sandbox";
	}
	if (pipe2(exitp, O_CLOEXEC) != 0 || pipe2(ready, O_CLOEXEC) != 0 ||
	    (null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
	    (err = (int)syscall(SYS_memfd_create, "sw-slirp-err", MFD_CLOEXEC)) < 0) {
		snprintf(errstr, errlen, "network full: slirp4netns fds: %s", strerror(errno));
		goto out;
	}
	if ((pid = fork()) < 0) {
		snprintf(errstr, errlen, "network full: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		const int src[7] = {null, null, err, exitp[0], ready[1], userns, netns};

		child_signals();
		child_fds(src, 7);
		if (drop && (syscall(SYS_setgroups, 0, NULL) != 0 ||
				  syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid) != 0 ||
				  syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid) != 0))
			_exit(126);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(125);
		execve(cfg->slirp_path, argv, empty_env);
		_exit(127);
	}
	n->pid = pid;
	n->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	n->exit_fd = exitp[1];
	exitp[1] = -1;
	close(ready[1]);
	ready[1] = -1;
	{
		struct pollfd p = {.fd = ready[0], .events = POLLIN};
		int64_t left;

		while ((left = deadline - now_ms()) > 0 && poll(&p, 1, (int)left) < 0 &&
		       errno == EINTR)
			;
		if (!(p.revents & POLLIN) || read(ready[0], &c, 1) != 1 || c != '1') {
			errlog_text(err, text, sizeof(text));
			snprintf(errstr, errlen, "network full: slirp4netns not ready: %s",
				 text[0] ? text : "no answer");
			sw_sandbox_netfull_stop(n);
			goto out;
		}
	}
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (exitp[i] >= 0)
			close(exitp[i]);
		if (ready[i] >= 0)
			close(ready[i]);
	}
	if (null >= 0)
		close(null);
	if (err >= 0)
		close(err);
	return rc;
}

int sw_sandbox_netfull_start(const struct sw_sandbox_netfull_cfg *cfg, pid_t sandbox_pid,
			     struct sw_sandbox_netfull *n, char *errstr, size_t errlen)
{
	int64_t deadline = now_ms() + NETFULL_WAIT_MS;
	int netns = -1, userns = -1, rc = -1;
	char path[64];

	n->pid = 0;
	n->pidfd = n->exit_fd = -1;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)sandbox_pid);
	if ((netns = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(errstr, errlen, "network full: %s: %s", path, strerror(errno));
		goto out;
	}
	/* the user namespace owning it: bwrap may have nested another one
	 * below it for the sandbox's processes */
	if ((userns = ioctl(netns, NS_GET_USERNS)) < 0) {
		snprintf(errstr, errlen, "network full: NS_GET_USERNS: %s", strerror(errno));
		goto out;
	}
	if (fcntl(userns, F_SETFD, FD_CLOEXEC) != 0 ||
	    load_rules(cfg, netns, userns, deadline, errstr, errlen) != 0 ||
	    start_slirp(cfg, netns, userns, deadline, n, errstr, errlen) != 0)
		goto out;
	rc = 0;
out:
	if (netns >= 0)
		close(netns);
	if (userns >= 0)
		close(userns);
	return rc;
}

void sw_sandbox_netfull_stop(struct sw_sandbox_netfull *n)
{
	int status;

	if (n->exit_fd >= 0)
		close(n->exit_fd);
	n->exit_fd = -1;
	if (n->pid > 0) {
		if (n->pidfd >= 0)
			syscall(SYS_pidfd_send_signal, n->pidfd, SIGKILL, NULL, 0);
		else
			kill(n->pid, SIGKILL);
		while (waitpid(n->pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (n->pidfd >= 0)
		close(n->pidfd);
	n->pidfd = -1;
	n->pid = 0;
}
