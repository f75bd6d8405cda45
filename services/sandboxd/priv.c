/*
 * priv.c: the privileged part of sandboxd, and how the rest talks to it.
 *
 * sagewai-sandboxd starts as one process and splits before anything else
 * runs (sbd_priv_split): the parent keeps the privileges and only creates
 * and destroys sandboxes; the child drops to an unprivileged uid (when
 * started as root), then speaks Kafka, PostgreSQL and HTTP, drives the tool
 * runners and runs the egress proxies. They talk over a SOCK_SEQPACKET
 * socketpair in fixed, length-checked binary messages (privmsg.h: a header
 * of type, length and request id; fixed-size fields and length-prefixed
 * strings), never JSON parsed as root:
 *
 *   CREATE {net, limits[8], variant}
 *       -> CREATED {handle, pid, start_us, limits[8]} with SCM_RIGHTS: the
 *          runner's control socket (READY already read) and, for
 *          egress_only, a socket listening on 127.0.0.1:SBD_EGRESS_PORT
 *          inside the sandbox's network namespace
 *   DESTROY {handle}
 *       -> DESTROYED {utime_us, stime_us, maxrss_kb, oom_killed}
 *   anything else, a message sbd_pm_decode refuses, or a refused request
 *       -> ERROR {text}, carrying the request's id
 *
 * The parent trusts nothing the child says: it decodes each datagram
 * strictly (its size, every length, every field's range), loads the variant from its own catalogue, takes limits only
 * when they lower the variant's (a CPU limit above it is lowered to it),
 * fixes the sandbox's environment itself (and its workspace: a tmpfs of
 * the sandbox's disk_bytes, never a host directory), and holds at most max_sandboxes. So a
 * child taken over through Kafka, PostgreSQL, HTTP or a hostile runner can
 * ask for sandboxes and nothing else. bwrap's --die-with-parent ties every
 * sandbox to the parent; the child gets SIGKILL when the parent dies; when
 * the child ends, the parent destroys every sandbox and exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "privmsg.h"
#include "sandboxd.h"

#define PRIV_LIMIT_CPU 6 /* cpu_millis: lowered to the variant's, not refused */

static uint64_t limit_get(const struct sw_sandbox_limits *l, int i)
{
	const uint64_t f[SBD_PM_LIMITS] = {l->nproc,	       l->memory_bytes, l->cpu_seconds,
					   l->file_size_bytes, l->nofile,	l->wall_ms,
					   l->cpu_millis,      l->disk_bytes};
	return f[i];
}

static void limit_set(struct sw_sandbox_limits *l, int i, uint64_t v)
{
	uint64_t *f[SBD_PM_LIMITS] = {&l->nproc,	   &l->memory_bytes, &l->cpu_seconds,
				      &l->file_size_bytes, &l->nofile,	     &l->wall_ms,
				      &l->cpu_millis,	   &l->disk_bytes};
	*f[i] = v;
}

/* ---- the wire: one datagram, optional fds ---------------------------------- */

static int send_raw(int fd, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

static int send_pm(int fd, const struct sbd_pm *m, const int *fds, int nfds)
{
	uint8_t buf[SBD_PM_MAX];
	size_t n = sbd_pm_encode(m, buf, sizeof(buf));

	if (n == 0) {
		errno = EINVAL;
		return -1;
	}
	return send_raw(fd, buf, n, fds, nfds);
}

/*
 * Receive one datagram into buf (cap bytes); up to 2 fds into fds[] (-1
 * when absent). Returns its length, 0 at EOF, -1 on error (errno; EBADMSG
 * for a truncated datagram or one with more than 2 fds, whose fds are
 * closed). EINTR is returned to the caller.
 */
static ssize_t recv_raw(int fd, uint8_t *buf, size_t cap, int fds[2])
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = buf, .iov_len = cap};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;
	ssize_t n;
	int bad = 0;

	fds[0] = fds[1] = -1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_TRUNC);
	if (n <= 0)
		return n;
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (i < 2 && fds[i] < 0)
				fds[i] = f;
			else
				close(f), bad = 1;
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC) || (size_t)n > cap)
		bad = 1;
	if (bad) {
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]), fds[i] = -1;
		errno = EBADMSG;
		return -1;
	}
	return n;
}

/* One message: 1, 0 at EOF, -1 (errno; EBADMSG with err for a message
 * sbd_pm_decode refused, m->id then its header's id or 0). */
static int recv_pm(int fd, struct sbd_pm *m, int fds[2], char *err, size_t errlen)
{
	uint8_t buf[SBD_PM_MAX];
	ssize_t n = recv_raw(fd, buf, sizeof(buf), fds);

	memset(m, 0, sizeof(*m));
	if (n <= 0) {
		if (n < 0 && errno == EBADMSG)
			snprintf(err, errlen, "oversized or truncated message, or stray fds");
		return (int)n;
	}
	if (sbd_pm_decode(buf, (size_t)n, m, err, errlen) != 0) {
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]), fds[i] = -1;
		errno = EBADMSG;
		return -1;
	}
	return 1;
}

/* ---- the privileged side ------------------------------------------------------ */

struct priv_box {
	uint64_t handle;
	struct sw_sandbox *sb;
	struct priv_box *next;
};

struct priv_variant {
	struct sw_sandbox_variant *v;
	struct priv_variant *next;
};

struct priv {
	const struct sbd_priv_config *cfg;
	struct sw_sandbox_backend *be;
	int sock;
	pid_t child;
	struct priv_box *boxes;
	size_t nboxes;
	struct priv_variant *variants;
	uint64_t next_handle;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static const struct sw_sandbox_variant *variant_get(struct priv *p, const char *name, char *err,
						    size_t errlen)
{
	struct priv_variant *pv;

	for (pv = p->variants; pv != NULL; pv = pv->next)
		if (strcmp(pv->v->name, name) == 0)
			return pv->v;
	if ((pv = calloc(1, sizeof(*pv))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((pv->v = sw_sandbox_variant_load(p->cfg->variants_dir, name, err, errlen)) == NULL) {
		free(pv);
		return NULL;
	}
	pv->next = p->variants;
	p->variants = pv;
	return pv->v;
}

/*
 * A socket listening on 127.0.0.1:SBD_EGRESS_PORT in the network namespace
 * of host pid `pid`, made by a short-lived child that joins the namespace
 * (and, when we are not root, first the sandbox's user namespace, which our
 * uid owns) and sends the socket back. -1 with err on failure.
 */
static int egress_listener(pid_t pid, char *err, size_t errlen)
{
	char path[64];
	int sv[2], nsfd, userfd = -1, fd = -1, one = 1;
	pid_t kid;
	int status;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	if ((nsfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "egress: %s: %s", path, strerror(errno));
		return -1;
	}
	if (geteuid() != 0) {
		snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
		if ((userfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			snprintf(err, errlen, "egress: %s: %s", path, strerror(errno));
			close(nsfd);
			return -1;
		}
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		snprintf(err, errlen, "egress: socketpair: %s", strerror(errno));
		close(nsfd);
		if (userfd >= 0)
			close(userfd);
		return -1;
	}
	if ((kid = fork()) == 0) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(SBD_EGRESS_PORT)};
		int s, code = 1;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if ((userfd >= 0 && setns(userfd, CLONE_NEWUSER) != 0) ||
		    setns(nsfd, CLONE_NEWNET) != 0)
			code = 2;
		else if ((s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
			code = 3;
		else if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
			 bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 64) != 0)
			code = 4;
		else if (send_raw(sv[1], "L", 1, &s, 1) == 0)
			code = 0;
		_exit(code);
	}
	close(nsfd);
	if (userfd >= 0)
		close(userfd);
	close(sv[1]);
	if (kid < 0) {
		snprintf(err, errlen, "egress: fork: %s", strerror(errno));
		close(sv[0]);
		return -1;
	}
	while (waitpid(kid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		uint8_t one_byte;
		int fds[2];

		if (recv_raw(sv[0], &one_byte, 1, fds) == 1) {
			fd = fds[0];
			if (fds[1] >= 0)
				close(fds[1]);
		}
	}
	close(sv[0]);
	if (fd < 0) {
		static const char *const why[] = {"", "", "cannot join the sandbox's namespaces",
						  "socket", "cannot listen on 127.0.0.1"};
		int c = WIFEXITED(status) ? WEXITSTATUS(status) : 0;

		snprintf(err, errlen, "egress proxy socket: %s",
			 c >= 2 && c <= 4 ? why[c] : "helper failed");
	}
	return fd;
}

/* Send an ERROR reply to request id: fmt with one %s. */
static void reply_error(struct priv *p, uint32_t id, const char *fmt, const char *a)
{
	struct sbd_pm r = {.type = SBD_PM_ERROR, .id = id};

	snprintf(r.u.error.text, sizeof(r.u.error.text), fmt, a);
	send_pm(p->sock, &r, NULL, 0);
}

static void box_free(struct priv_box *b, struct sw_sandbox_usage *final)
{
	sw_sandbox_destroy(b->sb, final);
	free(b);
}

#define PROXY "http://127.0.0.1:3128"
/* The sandbox's environment, fixed here: PATH (the variant's env_path
 * first: a CLI variant's bin directory), HOME, and for egress_only the
 * proxy. env_buf holds PATH's text. 0, or -1 (PATH too long). */
static int sandbox_env(const struct sw_sandbox_variant *v, enum sw_sandbox_net net,
		       const char *env[8], char *env_buf, size_t buflen)
{
	static const char *const proxy[] = {"http_proxy=" PROXY,  "https_proxy=" PROXY,
					    "HTTP_PROXY=" PROXY,  "HTTPS_PROXY=" PROXY,
					    "no_proxy=", NULL};
	size_t n = 0;

	memcpy(env_buf, "PATH=", 5);
	if (sw_sandbox_variant_path(v, SBD_PATH, env_buf + 5, buflen - 5) != 0)
		return -1;
	env[n++] = env_buf;
	env[n++] = "HOME=" SW_SANDBOX_WORKSPACE;
	for (size_t i = 0; net == SW_SANDBOX_NET_EGRESS_ONLY && proxy[i] != NULL; i++)
		env[n++] = proxy[i];
	env[n] = NULL;
	return 0;
}

static void do_create(struct priv *p, const struct sbd_pm *req)
{
	const struct sw_sandbox_variant *v;
	enum sw_sandbox_net net = (enum sw_sandbox_net)req->u.create.net;
	struct sw_sandbox_limits limits = {0};
	struct sw_sandbox_spec spec = {0};
	struct priv_box *b = NULL;
	struct sw_sandbox_stats st;
	struct sbd_pm reply = {.type = SBD_PM_CREATED, .id = req->id};
	const char *env[8];
	char err[600], path[1024];
	int fds[2] = {-1, -1}, nfds = 1;
	int64_t t0 = sw_mono_ns();

	/* sbd_pm_decode checked net's range and the variant's length and
	 * bytes; the catalogue checks the name itself */
	if ((v = variant_get(p, req->u.create.variant, err, sizeof(err))) == NULL) {
		reply_error(p, req->id, "%s", err);
		goto out;
	}
	for (int i = 0; i < SBD_PM_LIMITS; i++) {
		uint64_t want = req->u.create.limits[i], ceil = limit_get(&v->limits, i);

		if (want == 0) /* not asked: the variant's */
			continue;
		if (want > (i == PRIV_LIMIT_CPU ? SW_SANDBOX_CPU_MILLIS_MAX : ceil)) {
			reply_error(p, req->id, "limit '%s' is over the variant's",
				    sbd_pm_limit_names[i]);
			goto out;
		}
		/* A variant's CPU maximum is optional (0: none) and the child's
		 * copy of the catalogue may be older than ours: lowering to
		 * ours only ever narrows what was asked. */
		if (i == PRIV_LIMIT_CPU && ceil > 0 && want > ceil)
			want = ceil;
		limit_set(&limits, i, want);
	}
	if (p->nboxes >= p->cfg->max_sandboxes) {
		char n[32];

		snprintf(n, sizeof(n), "%zu", p->cfg->max_sandboxes);
		reply_error(p, req->id, "this host already holds its maximum of %s sandboxes", n);
		goto out;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		reply_error(p, req->id, "out of memory%s", "");
		goto out;
	}
	spec.variant = v;
	spec.net = net;
	spec.limits = limits;
	if (sandbox_env(v, net, env, path, sizeof(path)) != 0) {
		reply_error(p, req->id, "variant %s: its env_path makes PATH too long", v->name);
		goto out;
	}
	spec.env = env;
	spec.workspace = NULL; /* a tmpfs of limits.disk_bytes: bounded, no host path */
	spec.start_timeout_ms = 10000;
	if ((b->sb = sw_sandbox_create(p->be, &spec, err, sizeof(err))) == NULL) {
		reply_error(p, req->id, "%s", err);
		goto out;
	}
	if (sw_sandbox_stats(b->sb, &st) != 0) {
		reply_error(p, req->id, "sandbox has no pid%s", "");
		goto out;
	}
	if (net == SW_SANDBOX_NET_EGRESS_ONLY) {
		if ((fds[1] = egress_listener(st.pid, err, sizeof(err))) < 0) {
			reply_error(p, req->id, "%s", err);
			goto out;
		}
		nfds = 2;
	}
	if ((fds[0] = sw_sandbox_give_fd(b->sb)) < 0) {
		reply_error(p, req->id, "sandbox ended while starting%s", "");
		goto out;
	}
	for (int i = 0; i < SBD_PM_LIMITS; i++)
		reply.u.created.limits[i] = limit_get(sw_sandbox_limits(b->sb), i);
	b->handle = ++p->next_handle;
	reply.u.created.handle = b->handle;
	reply.u.created.pid = (uint32_t)st.pid;
	reply.u.created.start_us = (uint64_t)((sw_mono_ns() - t0) / 1000);
	if (send_pm(p->sock, &reply, fds, nfds) != 0)
		goto out; /* the child is gone or could not take it: nobody holds this one */
	b->next = p->boxes;
	p->boxes = b;
	p->nboxes++;
	b = NULL;
out:
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (b != NULL)
		box_free(b, NULL);
}

static void do_destroy(struct priv *p, const struct sbd_pm *req)
{
	struct sbd_pm reply = {.type = SBD_PM_DESTROYED, .id = req->id};
	struct priv_box **pp, *b;
	struct sw_sandbox_usage u;

	for (pp = &p->boxes; *pp != NULL && (*pp)->handle != req->u.destroy.handle;
	     pp = &(*pp)->next)
		;
	if ((b = *pp) == NULL) {
		reply_error(p, req->id, "no such sandbox%s", "");
		return;
	}
	*pp = b->next;
	p->nboxes--;
	box_free(b, &u);
	reply.u.destroyed.utime_us = (uint64_t)u.utime_us;
	reply.u.destroyed.stime_us = (uint64_t)u.stime_us;
	reply.u.destroyed.maxrss_kb = (uint64_t)u.maxrss_kb;
	reply.u.destroyed.oom_killed = u.oom_killed ? 1 : 0;
	send_pm(p->sock, &reply, NULL, 0);
}

/* The parent's whole life after the split. Returns the exit code. */
static int priv_serve(struct priv *p)
{
	struct sigaction sa = {0};
	int rc = 0, status = 0;

	sa.sa_handler = on_signal; /* no SA_RESTART: recvmsg returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct sbd_pm req;
		char err[256];
		int fds[2], n;

		if (got_signal) {
			/* the child drains and ends; its end ends us */
			kill(p->child, got_signal);
			got_signal = 0;
		}
		n = recv_pm(p->sock, &req, fds, err, sizeof(err));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EBADMSG) {
				sw_log(SW_LOG_WARN, "privileged part: malformed request refused",
				       "why", err, NULL);
				reply_error(p, req.id, "malformed request: %s", err);
				continue;
			}
			sw_log(SW_LOG_ERROR, "privileged part: socket", "error", strerror(errno),
			       NULL);
			rc = 1;
			break;
		}
		for (int i = 0; i < 2; i++) /* nothing is ever passed this way */
			if (fds[i] >= 0)
				close(fds[i]);
		if (req.type == SBD_PM_CREATE) {
			do_create(p, &req);
		} else if (req.type == SBD_PM_DESTROY) {
			do_destroy(p, &req);
		} else {
			/* a reply's type: well-formed, but never a request */
			sw_log(SW_LOG_WARN, "privileged part: unknown request refused", NULL);
			reply_error(p, req.id, "unknown request%s", "");
		}
	}
	/* the child ended (or broke the socket): nothing may outlive it */
	while (p->boxes != NULL) {
		struct priv_box *b = p->boxes;

		p->boxes = b->next;
		box_free(b, NULL);
	}
	close(p->sock);
	kill(p->child, SIGKILL);
	while (waitpid(p->child, &status, 0) < 0 && errno == EINTR)
		;
	if (rc == 0)
		rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	while (p->variants != NULL) {
		struct priv_variant *pv = p->variants;

		p->variants = pv->next;
		sw_sandbox_variant_free(pv->v);
		free(pv);
	}
	sw_sandbox_backend_free(p->be);
	nftw(p->cfg->state_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}

/* "name", "uid" or "uid:gid" -> ids. 0 or -1. */
static int parse_user(const char *s, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;
	unsigned long u, g;
	char *end;

	if ((pw = getpwnam(s)) != NULL) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
		return 0;
	}
	errno = 0;
	u = strtoul(s, &end, 10);
	if (errno != 0 || end == s || u == 0 || u > 0x7fffffff)
		return -1;
	g = u;
	if (*end == ':') {
		const char *gs = end + 1;

		g = strtoul(gs, &end, 10);
		if (errno != 0 || end == gs || g == 0 || g > 0x7fffffff)
			return -1;
	}
	if (*end != '\0')
		return -1;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}

/* Child: lose every privilege for good. */
static int drop_privileges(const struct sbd_priv_config *cfg, char *err, size_t errlen)
{
	uid_t uid;
	gid_t gid;

	if (geteuid() == 0) {
		if (parse_user(cfg->user, &uid, &gid) != 0) {
			snprintf(err, errlen, "SAGEWAI_SANDBOXD_USER '%.100s': not a user name, "
					      "uid or uid:gid (not root)", cfg->user);
			return -1;
		}
		if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
		    setresuid(uid, uid, uid) != 0) {
			snprintf(err, errlen, "cannot drop to %u:%u: %s", (unsigned)uid,
				 (unsigned)gid, strerror(errno));
			return -1;
		}
		if (setuid(0) == 0 || geteuid() == 0) {
			snprintf(err, errlen, "privileges came back after the drop");
			return -1;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0) != 0) {
		snprintf(err, errlen, "prctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int sbd_priv_split(const struct sbd_priv_config *cfg, int *sock, char *err, size_t errlen)
{
	struct sw_sandbox_bwrap_config bc = {.bwrap_path = cfg->bwrap,
					     .runner_path = cfg->runner,
					     .state_dir = cfg->state_dir,
					     .cgroup = cfg->cgroup,
					     .slirp_path = cfg->slirp[0] ? cfg->slirp : NULL,
					     .nft_path = cfg->nft[0] ? cfg->nft : NULL};
	struct priv p = {.cfg = cfg};
	pid_t parent = getpid();
	int sv[2];

	/* the sandboxes' state lives here and must be searchable by the run uid */
	if (chmod(cfg->state_dir, 0711) != 0) {
		snprintf(err, errlen, "state dir %s: %s", cfg->state_dir, strerror(errno));
		return -1;
	}
	if ((p.be = sw_sandbox_bwrap_new(&bc, err, errlen)) == NULL)
		return -1;
	sw_log(SW_LOG_INFO, "sandbox cgroups", "mode", sw_sandbox_bwrap_cgroup_mode(p.be), NULL);
	if (sw_sandbox_bwrap_full_why(p.be) != NULL)
		sw_log(SW_LOG_WARN, "sandbox network full unavailable, refused", "why",
		       sw_sandbox_bwrap_full_why(p.be), NULL);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		sw_sandbox_backend_free(p.be);
		return -1;
	}
	fflush(NULL);
	if ((p.child = fork()) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		sw_sandbox_backend_free(p.be);
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (p.child > 0) {
		close(sv[1]);
		p.sock = sv[0];
		if (cfg->forget != NULL)
			cfg->forget(cfg->forget_arg);
		exit(priv_serve(&p));
	}
	/* the child: the backend's state (and its directory) is the parent's;
	 * kept reachable, never used or freed here */
	static struct sw_sandbox_backend *parents;

	parents = p.be;
	(void)parents;
	close(sv[0]);
	if (drop_privileges(cfg, err, errlen) != 0) {
		close(sv[1]);
		return -1;
	}
	/* after the drop: a credential change clears the parent-death signal */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
		snprintf(err, errlen, "the privileged part is gone");
		close(sv[1]);
		return -1;
	}
	*sock = sv[1];
	return 0;
}

/* ---- the unprivileged side (the pool thread) --------------------------------- */

static uint32_t next_id;

/* Send req, wait for the reply carrying its id (the pool thread is the
 * only caller). 0 with *reply and fds, or -1 with err (an ERROR reply's
 * text, or why the exchange failed). */
static int call(int sock, struct sbd_pm *req, struct sbd_pm *reply, uint16_t want, int fds[2],
		char *err, size_t errlen)
{
	int n;

	fds[0] = fds[1] = -1;
	req->id = ++next_id;
	if (send_pm(sock, req, NULL, 0) != 0) {
		snprintf(err, errlen, "privileged part: cannot send: %s", strerror(errno));
		return -1;
	}
	while ((n = recv_pm(sock, reply, fds, err, errlen)) < 0 && errno == EINTR)
		;
	if (n <= 0) {
		if (n == 0)
			snprintf(err, errlen, "privileged part: gone");
		else if (errno != EBADMSG)
			snprintf(err, errlen, "privileged part: %s", strerror(errno));
		return -1;
	}
	if (reply->id != req->id || (reply->type != want && reply->type != SBD_PM_ERROR)) {
		snprintf(err, errlen, "privileged part: reply %u (type %u) to request %u",
			 (unsigned)reply->id, (unsigned)reply->type, (unsigned)req->id);
		goto bad;
	}
	if (reply->type == SBD_PM_ERROR) {
		snprintf(err, errlen, "%s",
			 reply->u.error.text[0] ? reply->u.error.text : "privileged part: refused");
		goto bad;
	}
	return 0;
bad:
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]), fds[i] = -1;
	return -1;
}

int sbd_priv_create(int sock, const char *variant, enum sw_sandbox_net net,
		    const struct sw_sandbox_limits *limits, struct sbd_priv_sandbox *out,
		    char *err, size_t errlen)
{
	struct sbd_pm req = {.type = SBD_PM_CREATE, .u.create.net = (uint8_t)net}, reply;
	int fds[2];

	memset(out, 0, sizeof(*out));
	out->ctl_fd = out->egress_fd = -1;
	if (strlen(variant) > SBD_PM_VARIANT_MAX) {
		snprintf(err, errlen, "variant name over %d bytes", SBD_PM_VARIANT_MAX);
		return -1;
	}
	snprintf(req.u.create.variant, sizeof(req.u.create.variant), "%s", variant);
	for (int i = 0; i < SBD_PM_LIMITS && limits != NULL; i++)
		req.u.create.limits[i] = limit_get(limits, i);
	if (call(sock, &req, &reply, SBD_PM_CREATED, fds, err, errlen) != 0)
		return -1;
	if (fds[0] < 0 || (net == SW_SANDBOX_NET_EGRESS_ONLY) != (fds[1] >= 0) ||
	    reply.u.created.handle == 0) {
		snprintf(err, errlen, "privileged part: bad create reply");
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return -1;
	}
	for (int i = 0; i < SBD_PM_LIMITS; i++)
		limit_set(&out->limits, i, reply.u.created.limits[i]);
	out->handle = reply.u.created.handle;
	out->start_us = (int64_t)reply.u.created.start_us;
	out->pid = (pid_t)reply.u.created.pid;
	out->ctl_fd = fds[0];
	out->egress_fd = fds[1];
	return 0;
}

int sbd_priv_destroy(int sock, uint64_t handle, struct sw_sandbox_usage *final, char *err,
		     size_t errlen)
{
	struct sbd_pm req = {.type = SBD_PM_DESTROY, .u.destroy.handle = handle}, reply;
	int fds[2];

	memset(final, 0, sizeof(*final));
	if (call(sock, &req, &reply, SBD_PM_DESTROYED, fds, err, errlen) != 0)
		return -1;
	final->utime_us = (int64_t)reply.u.destroyed.utime_us;
	final->stime_us = (int64_t)reply.u.destroyed.stime_us;
	final->maxrss_kb = (int64_t)reply.u.destroyed.maxrss_kb;
	final->oom_killed = reply.u.destroyed.oom_killed;
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return 0;
}
