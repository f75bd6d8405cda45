/*
 * priv.c: the privileged part of sandboxd, and how the rest talks to it.
 *
 * sagewai-sandboxd starts as one process and splits before anything else
 * runs (sbd_priv_split): the parent keeps the privileges and only creates
 * and destroys sandboxes; the child drops to an unprivileged uid (when
 * started as root), then speaks Kafka, PostgreSQL and HTTP, drives the tool
 * runners and runs the egress proxies. They talk over a SOCK_SEQPACKET
 * socketpair, one JSON request and one JSON reply at a time:
 *
 *   {"op":"create","variant":"base","net":"none","limits":{...}}
 *       -> {"ok":true,"handle":N,"pid":P,"start_us":U,"limits":{...}}
 *          with SCM_RIGHTS: the runner's control socket (READY already
 *          read) and, for egress_only, a socket listening on
 *          127.0.0.1:SBD_EGRESS_PORT inside the sandbox's network namespace
 *   {"op":"destroy","handle":N}
 *       -> {"ok":true,"utime_us":..,"stime_us":..,"maxrss_kb":..,"oom_killed":b}
 *   anything else, or a bad field -> {"ok":false,"error":"..."}
 *
 * The parent trusts nothing the child says: it parses each datagram
 * strictly, loads the variant from its own catalogue, takes limits only
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

#include "sandboxd.h"

#define PRIV_MSG_MAX 16384
#define PRIV_LIMIT_KEYS 8
#define PRIV_LIMIT_CPU 6 /* cpu_millis: lowered to the variant's, not refused */

static const char *const limit_names[PRIV_LIMIT_KEYS] = {
    "nproc",   "memory_bytes", "cpu_seconds", "file_size_bytes",
    "nofile",  "wall_ms",	    "cpu_millis",  "disk_bytes"};

static uint64_t limit_get(const struct sw_sandbox_limits *l, int i)
{
	const uint64_t f[PRIV_LIMIT_KEYS] = {l->nproc,		 l->memory_bytes, l->cpu_seconds,
					     l->file_size_bytes, l->nofile,	  l->wall_ms,
					     l->cpu_millis,	 l->disk_bytes};
	return f[i];
}

static void limit_set(struct sw_sandbox_limits *l, int i, uint64_t v)
{
	uint64_t *f[PRIV_LIMIT_KEYS] = {&l->nproc,	     &l->memory_bytes, &l->cpu_seconds,
					&l->file_size_bytes, &l->nofile,       &l->wall_ms,
					&l->cpu_millis,	     &l->disk_bytes};
	*f[i] = v;
}

/* ---- the wire: one datagram, optional fds ---------------------------------- */

static int send_msg(int fd, json_t *o, const int *fds, int nfds)
{
	char *text = json_dumps(o, JSON_COMPACT);
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov;
	struct msghdr mh = {0};
	ssize_t n;

	if (text == NULL)
		return -1;
	iov.iov_base = text;
	iov.iov_len = strlen(text);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
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
	free(text);
	return n == (ssize_t)iov.iov_len ? 0 : -1;
}

/*
 * Receive one datagram into a JSON object; up to 2 fds into fds[] (-1 when
 * absent). Returns 1, 0 at EOF, -1 on error (errno, or EBADMSG for a bad
 * datagram, whose fds are closed). EINTR is returned to the caller.
 */
static int recv_msg(int fd, json_t **out, int fds[2])
{
	char *buf = malloc(PRIV_MSG_MAX + 1);
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = buf, .iov_len = PRIV_MSG_MAX + 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;
	ssize_t n;
	int bad = 0;

	fds[0] = fds[1] = -1;
	*out = NULL;
	if (buf == NULL)
		return -1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0) {
		free(buf);
		return n == 0 ? 0 : -1;
	}
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
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC) || n > PRIV_MSG_MAX)
		bad = 1;
	if (!bad) {
		*out = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
		bad = *out == NULL || !json_is_object(*out);
	}
	free(buf);
	if (bad) {
		json_decref(*out);
		*out = NULL;
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
		json_t *o;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if ((userfd >= 0 && setns(userfd, CLONE_NEWUSER) != 0) ||
		    setns(nsfd, CLONE_NEWNET) != 0)
			code = 2;
		else if ((s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
			code = 3;
		else if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
			 bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 64) != 0)
			code = 4;
		else if ((o = json_object()) != NULL && send_msg(sv[1], o, &s, 1) == 0)
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
		json_t *o;
		int fds[2];

		if (recv_msg(sv[0], &o, fds) == 1) {
			fd = fds[0];
			if (fds[1] >= 0)
				close(fds[1]);
			json_decref(o);
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

static json_t *reply_error(const char *fmt, const char *a)
{
	char msg[700];

	snprintf(msg, sizeof(msg), fmt, a);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
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

static void do_create(struct priv *p, json_t *req)
{
	const char *op, *variant = NULL, *net_s = NULL;
	json_t *lim = NULL, *reply, *lj;
	const struct sw_sandbox_variant *v;
	enum sw_sandbox_net net;
	struct sw_sandbox_limits limits = {0};
	struct sw_sandbox_spec spec = {0};
	struct priv_box *b = NULL;
	struct sw_sandbox_stats st;
	const char *env[8];
	char err[600], path[1024];
	int fds[2] = {-1, -1}, nfds = 1;
	int64_t t0 = sw_mono_ns();
	const char *k;
	json_t *val;

	if (json_unpack(req, "{s:s, s:s, s:s, s?o !}", "op", &op, "variant", &variant, "net",
			&net_s, "limits", &lim) != 0) {
		reply = reply_error("bad create request%s", "");
		goto out;
	}
	if (sw_sandbox_net_parse(net_s, &net) != 0) {
		reply = reply_error("unknown network policy '%.40s'", net_s);
		goto out;
	}
	if ((v = variant_get(p, variant, err, sizeof(err))) == NULL) {
		reply = reply_error("%s", err);
		goto out;
	}
	if (lim != NULL && !json_is_object(lim)) {
		reply = reply_error("limits is not an object%s", "");
		goto out;
	}
	json_object_foreach(lim, k, val)
	{
		uint64_t want, ceil = 0;
		int i;

		for (i = 0; i < PRIV_LIMIT_KEYS && strcmp(k, limit_names[i]) != 0; i++)
			;
		if (i < PRIV_LIMIT_KEYS)
			ceil = limit_get(&v->limits, i);
		if (i == PRIV_LIMIT_KEYS || !json_is_integer(val) || json_integer_value(val) < 0 ||
		    (uint64_t)json_integer_value(val) >
			(i == PRIV_LIMIT_CPU ? SW_SANDBOX_CPU_MILLIS_MAX : ceil)) {
			reply = reply_error("limit '%.40s' is unknown or over the variant's", k);
			goto out;
		}
		/* A variant's CPU maximum is optional (0: none) and the child's
		 * copy of the catalogue may be older than ours: lowering to
		 * ours only ever narrows what was asked. */
		want = (uint64_t)json_integer_value(val);
		if (i == PRIV_LIMIT_CPU && ceil > 0 && want > ceil)
			want = ceil;
		limit_set(&limits, i, want);
	}
	if (p->nboxes >= p->cfg->max_sandboxes) {
		char n[32];

		snprintf(n, sizeof(n), "%zu", p->cfg->max_sandboxes);
		reply = reply_error("this host already holds its maximum of %s sandboxes", n);
		goto out;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		reply = reply_error("out of memory%s", "");
		goto out;
	}
	spec.variant = v;
	spec.net = net;
	spec.limits = limits;
	if (sandbox_env(v, net, env, path, sizeof(path)) != 0) {
		reply = reply_error("variant %s: its env_path makes PATH too long", variant);
		goto out;
	}
	spec.env = env;
	spec.workspace = NULL; /* a tmpfs of limits.disk_bytes: bounded, no host path */
	spec.start_timeout_ms = 10000;
	if ((b->sb = sw_sandbox_create(p->be, &spec, err, sizeof(err))) == NULL) {
		reply = reply_error("%s", err);
		goto out;
	}
	if (sw_sandbox_stats(b->sb, &st) != 0) {
		reply = reply_error("sandbox has no pid%s", "");
		goto out;
	}
	if (net == SW_SANDBOX_NET_EGRESS_ONLY) {
		if ((fds[1] = egress_listener(st.pid, err, sizeof(err))) < 0) {
			reply = reply_error("%s", err);
			goto out;
		}
		nfds = 2;
	}
	if ((fds[0] = sw_sandbox_give_fd(b->sb)) < 0) {
		reply = reply_error("sandbox ended while starting%s", "");
		goto out;
	}
	lj = json_object();
	for (int i = 0; i < PRIV_LIMIT_KEYS; i++)
		json_object_set_new(
		    lj, limit_names[i],
		    json_integer((json_int_t)limit_get(sw_sandbox_limits(b->sb), i)));
	b->handle = ++p->next_handle;
	reply = json_pack("{s:b, s:I, s:i, s:I, s:o}", "ok", 1, "handle", (json_int_t)b->handle,
			  "pid", (int)st.pid, "start_us", (json_int_t)((sw_mono_ns() - t0) / 1000),
			  "limits", lj);
	if (reply == NULL || send_msg(p->sock, reply, fds, nfds) != 0) {
		/* the child is gone or could not take it: nobody holds this one */
		json_decref(reply);
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		box_free(b, NULL);
		return;
	}
	json_decref(reply);
	for (int i = 0; i < 2; i++)
		close(fds[i]);
	b->next = p->boxes;
	p->boxes = b;
	p->nboxes++;
	return;
out:
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (b != NULL)
		box_free(b, NULL);
	if (reply != NULL)
		send_msg(p->sock, reply, NULL, 0);
	json_decref(reply);
}

static void do_destroy(struct priv *p, json_t *req)
{
	json_int_t h = 0;
	const char *op;
	struct priv_box **pp, *b;
	struct sw_sandbox_usage u;
	json_t *reply;

	if (json_unpack(req, "{s:s, s:I !}", "op", &op, "handle", &h) != 0) {
		reply = reply_error("bad destroy request%s", "");
		goto out;
	}
	for (pp = &p->boxes; *pp != NULL && (*pp)->handle != (uint64_t)h; pp = &(*pp)->next)
		;
	if ((b = *pp) == NULL) {
		reply = reply_error("no such sandbox%s", "");
		goto out;
	}
	*pp = b->next;
	p->nboxes--;
	box_free(b, &u);
	reply = json_pack("{s:b, s:I, s:I, s:I, s:b}", "ok", 1, "utime_us", (json_int_t)u.utime_us,
			  "stime_us", (json_int_t)u.stime_us, "maxrss_kb", (json_int_t)u.maxrss_kb,
			  "oom_killed", u.oom_killed);
out:
	if (reply != NULL)
		send_msg(p->sock, reply, NULL, 0);
	json_decref(reply);
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
		json_t *req;
		const char *op;
		int fds[2], n;

		if (got_signal) {
			/* the child drains and ends; its end ends us */
			kill(p->child, got_signal);
			got_signal = 0;
		}
		n = recv_msg(p->sock, &req, fds);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EBADMSG) {
				sw_log(SW_LOG_WARN, "privileged part: malformed request refused",
				       NULL);
				json_t *r = reply_error("malformed request%s", "");

				send_msg(p->sock, r, NULL, 0);
				json_decref(r);
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
		op = json_string_value(json_object_get(req, "op"));
		if (op != NULL && strcmp(op, "create") == 0) {
			do_create(p, req);
		} else if (op != NULL && strcmp(op, "destroy") == 0) {
			do_destroy(p, req);
		} else {
			json_t *r = reply_error("unknown request%s", "");

			sw_log(SW_LOG_WARN, "privileged part: unknown request refused", NULL);
			send_msg(p->sock, r, NULL, 0);
			json_decref(r);
		}
		json_decref(req);
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

static int call(int sock, json_t *req, json_t **reply, int fds[2], char *err, size_t errlen)
{
	int n;

	fds[0] = fds[1] = -1;
	if (req == NULL || send_msg(sock, req, NULL, 0) != 0) {
		json_decref(req);
		snprintf(err, errlen, "privileged part: cannot send: %s", strerror(errno));
		return -1;
	}
	json_decref(req);
	while ((n = recv_msg(sock, reply, fds)) < 0 && errno == EINTR)
		;
	if (n <= 0) {
		snprintf(err, errlen, "privileged part: %s", n == 0 ? "gone" : strerror(errno));
		return -1;
	}
	if (!json_is_true(json_object_get(*reply, "ok"))) {
		const char *e = json_string_value(json_object_get(*reply, "error"));

		snprintf(err, errlen, "%s", e ? e : "privileged part: refused");
		json_decref(*reply);
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]), fds[i] = -1;
		return -1;
	}
	return 0;
}

int sbd_priv_create(int sock, const char *variant, enum sw_sandbox_net net,
		    const struct sw_sandbox_limits *limits, struct sbd_priv_sandbox *out,
		    char *err, size_t errlen)
{
	json_t *lj = json_object(), *reply, *rl;
	struct sw_sandbox_limits l = {0};
	json_int_t h = 0, su = 0;
	int fds[2], pid = 0;

	memset(out, 0, sizeof(*out));
	out->ctl_fd = out->egress_fd = -1;
	if (limits != NULL)
		l = *limits;
	for (int i = 0; i < PRIV_LIMIT_KEYS && lj != NULL; i++)
		if (limit_get(&l, i) > 0)
			json_object_set_new(lj, limit_names[i],
					    json_integer((json_int_t)limit_get(&l, i)));
	if (call(sock,
		 json_pack("{s:s, s:s, s:s, s:o*}", "op", "create", "variant", variant, "net",
			   sw_sandbox_net_name(net), "limits", lj),
		 &reply, fds, err, errlen) != 0)
		return -1;
	rl = json_object_get(reply, "limits");
	if (json_unpack(reply, "{s:I, s:I, s:i}", "handle", &h, "start_us", &su, "pid", &pid) != 0 ||
	    fds[0] < 0 || (net == SW_SANDBOX_NET_EGRESS_ONLY) != (fds[1] >= 0) ||
	    !json_is_object(rl)) {
		snprintf(err, errlen, "privileged part: bad create reply");
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		json_decref(reply);
		return -1;
	}
	for (int i = 0; i < PRIV_LIMIT_KEYS; i++)
		limit_set(&out->limits, i,
			  (uint64_t)json_integer_value(json_object_get(rl, limit_names[i])));
	out->handle = (uint64_t)h;
	out->start_us = su;
	out->pid = (pid_t)pid;
	out->ctl_fd = fds[0];
	out->egress_fd = fds[1];
	json_decref(reply);
	return 0;
}

int sbd_priv_destroy(int sock, uint64_t handle, struct sw_sandbox_usage *final, char *err,
		     size_t errlen)
{
	json_t *reply;
	json_int_t u = 0, s = 0, r = 0;
	int fds[2], oom = 0;

	memset(final, 0, sizeof(*final));
	if (call(sock, json_pack("{s:s, s:I}", "op", "destroy", "handle", (json_int_t)handle),
		 &reply, fds, err, errlen) != 0)
		return -1;
	json_unpack(reply, "{s?I, s?I, s?I, s?b}", "utime_us", &u, "stime_us", &s, "maxrss_kb", &r,
		    "oom_killed", &oom);
	final->utime_us = u;
	final->stime_us = s;
	final->maxrss_kb = r;
	final->oom_killed = oom;
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	json_decref(reply);
	return 0;
}
