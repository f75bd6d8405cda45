/*
 * priv.c: the privileged part of sandboxd.
 *
 * sagewai-sandboxd starts as one process and splits before anything else
 * runs (sbd_priv_split): the parent keeps the privileges and only creates
 * and destroys sandboxes; the child drops to an unprivileged uid (when
 * started as root), then speaks Kafka, PostgreSQL and HTTP, drives the tool
 * runners and runs the egress proxies (its end of the socket:
 * privclient.c). They talk over a SOCK_SEQPACKET socketpair in fixed,
 * length-checked binary messages (privmsg.h: a header of type, length and
 * request id; fixed-size fields and length-prefixed strings; privwire.c
 * puts them on the socket), never JSON parsed as root:
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
 * The parent is one libevent loop, in the manner of OpenBSD's privsep
 * daemons: many requests are in flight at once and each reply carries its
 * request's id, so replies come in the order the sandboxes are ready, not
 * the order asked. A create forks bwrap and returns to the loop
 * (sw_sandbox_start_*); bwrap's --info-fd, then the runner's READY on its
 * control socket, are read when the loop says they are readable; the
 * egress listener's helper answers on a socket too; a destroy kills the
 * runner and waits on the loop for bwrap's pidfd before reaping it. So a
 * slow or failing create never holds up another. Signals (SIGTERM, SIGINT,
 * SIGCHLD) come through the loop. One thread: bwrap's --die-with-parent
 * (PR_SET_PDEATHSIG) follows the thread that forked it, and this one lives
 * as long as the process.
 *
 * The parent trusts nothing the child says: it decodes each datagram
 * strictly (its size, every length, every field's range), loads the
 * variant from its own catalogue, takes limits only when they lower the
 * variant's (a CPU limit above it is lowered to it), fixes the sandbox's
 * environment itself (and its workspace: a tmpfs of the sandbox's
 * disk_bytes, never a host directory), and holds at most max_sandboxes
 * (those starting and those being destroyed included). So a child taken
 * over through Kafka, PostgreSQL, HTTP or a hostile runner can ask for
 * sandboxes and nothing else. bwrap's --die-with-parent ties every sandbox
 * to the parent; the child gets SIGKILL when the parent dies; when the
 * child ends (or closes its end, which it does as it stops), the parent
 * destroys every sandbox, waits a little for the child's exit status and
 * exits with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
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
#include <event2/event.h>
#include <event2/event_struct.h>

#include "privmsg.h"
#include "sandboxd.h"

#define PRIV_LIMIT_CPU 6	/* cpu_millis: lowered to the variant's, not refused */
#define PRIV_READS_PER_CB 32	/* requests read per wake-up of the loop */
#define PRIV_EGRESS_WAIT_MS 5000 /* for the egress helper's socket */
#define PRIV_LO_WAIT_MS 2000	 /* for the sandbox's loopback to come up */
#define PRIV_GONE_WAIT_MS 3000	/* for a killed sandbox's monitor, then destroy anyway */
#define PRIV_REAP_MAX 64	/* egress helpers not reaped yet */
#define PRIV_OUT_MAX 256	/* replies queued before requests wait (backpressure) */
#define PRIV_CG_SPARES 4	/* per-sandbox cgroups made ahead */
#define PRIV_CHILD_WAIT_MS 5000 /* for the child to exit once it closed the socket */

/* ---- the privileged side ------------------------------------------------------ */

enum box_state {
	BOX_STARTING, /* bwrap forked; waiting for its pid, then READY */
	BOX_EGRESS,   /* started; waiting for the egress helper's listener */
	BOX_LIVE,     /* handed to the service part */
	BOX_DYING,    /* killed; waiting for its monitor to exit */
};

struct priv;

struct priv_box {
	LIST_ENTRY(priv_box) entry;
	struct priv *p;
	enum box_state state;
	uint64_t handle;
	uint32_t id; /* the request it serves now (CREATE, then DESTROY) */
	enum sw_sandbox_net net;
	struct sw_sandbox_start *st; /* BOX_STARTING */
	struct sw_sandbox *sb;	     /* from BOX_EGRESS on */
	pid_t helper;		     /* BOX_EGRESS: the egress helper, and */
	int helper_sock;	     /* its answer socket, or -1 */
	struct event ev;	     /* the fd (and deadline) waited for */
	bool ev_set;
	int64_t t0_ns;
};

struct priv_variant {
	struct sw_sandbox_variant *v;
	struct priv_variant *next;
};

struct priv {
	const struct sbd_priv_config *cfg;
	struct sw_sandbox_backend *be;
	struct event_base *base;
	int sock;
	struct event *rd, *wr, *sigs[4];
	struct sbd_pm_outq out;
	size_t nout;  /* replies in out */
	bool reading; /* rd is added: not held back by a full out */
	pid_t child;
	bool child_gone;
	int child_status;
	LIST_HEAD(, priv_box) boxes;
	size_t nboxes; /* every state: what max_sandboxes bounds */
	struct priv_variant *variants;
	uint64_t next_handle;
	pid_t reap[PRIV_REAP_MAX]; /* egress helpers to reap */
	int rc;
};

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
 * Start the helper that makes a socket listening on 127.0.0.1:
 * SBD_EGRESS_PORT in the network namespace of host pid `pid`: a forked
 * child that joins the namespace (and, when we are not root, first the
 * sandbox's user namespace, which our uid owns) and sends the socket back
 * on *sock ("L" with the fd), or one byte saying why not. Nothing here
 * waits: the answer is read on the loop, the helper reaped on SIGCHLD.
 * The helper's pid, or -1 with err.
 */
static pid_t egress_helper(pid_t pid, int *sock, char *err, size_t errlen)
{
	char path[64];
	int sv[2], nsfd, userfd = -1, one = 1;
	pid_t kid;

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
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
		snprintf(err, errlen, "egress: socketpair: %s", strerror(errno));
		close(nsfd);
		if (userfd >= 0)
			close(userfd);
		return -1;
	}
	if ((kid = fork()) == 0) {
		uint8_t code = 1;
		int s;

		if ((userfd >= 0 && setns(userfd, CLONE_NEWUSER) != 0) ||
		    setns(nsfd, CLONE_NEWNET) != 0)
			code = 2;
		else if ((s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
			code = 3;
		else if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
			 sw_sandbox_bind_loopback(s, SBD_EGRESS_PORT, PRIV_LO_WAIT_MS) != 0 ||
			 listen(s, 64) != 0)
			code = 4;
		else if (sbd_pm_send_raw(sv[1], "L", 1, &s, 1) == 0)
			_exit(0);
		(void)sbd_pm_send_raw(sv[1], &code, 1, NULL, 0);
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
	*sock = sv[0];
	return kid;
}

/* The helper's answer: the listener, or -1 with err (0 when none yet:
 * *again set). */
static int egress_answer(int sock, bool *again, char *err, size_t errlen)
{
	static const char *const why[] = {"helper failed", "helper failed",
					  "cannot join the sandbox's namespaces", "socket",
					  "cannot listen on 127.0.0.1"};
	uint8_t b = 0;
	int fds[2];
	ssize_t n = sbd_pm_recv_raw(sock, &b, 1, fds, MSG_DONTWAIT);

	*again = false;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		*again = true;
		return -1;
	}
	if (n == 1 && b == 'L' && fds[0] >= 0 && fds[1] < 0)
		return fds[0];
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	snprintf(err, errlen, "egress proxy socket: %s",
		 n == 1 && b >= 2 && b <= 4 ? why[b] : why[0]);
	return -1;
}

static void reap_add(struct priv *p, pid_t pid)
{
	int status;

	if (waitpid(pid, &status, WNOHANG) == pid)
		return;
	for (int i = 0; i < PRIV_REAP_MAX; i++)
		if (p->reap[i] == 0) {
			p->reap[i] = pid;
			return;
		}
	/* full (64 helpers not yet gone): wait for this one, it is on its way out */
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
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

static void reply(struct priv *p, const struct sbd_pm *m, const int *fds, int nfds);

/* Send an ERROR reply to request id: fmt with one %s. */
static void reply_error(struct priv *p, uint32_t id, const char *fmt, const char *a)
{
	struct sbd_pm r = {.type = SBD_PM_ERROR, .id = id};

	snprintf(r.u.error.text, sizeof(r.u.error.text), fmt, a);
	reply(p, &r, NULL, 0);
}

static void on_writable(evutil_socket_t fd, short what, void *arg);

/*
 * Queue a reply (taking fds) and send what the socket takes; the rest goes
 * when it is writable. A child that asks without reading its answers
 * would grow the queue without end: past PRIV_OUT_MAX replies, requests
 * are not read until it has drained (the socket's buffers then fill and
 * the child's sends wait). A peer gone ends the loop.
 */
static void reply(struct priv *p, const struct sbd_pm *m, const int *fds, int nfds)
{
	if (sbd_pm_queue(&p->out, m, fds, nfds) != 0) {
		sw_log(SW_LOG_ERROR, "privileged part: cannot encode a reply", NULL);
		return;
	}
	p->nout++;
	on_writable(p->sock, EV_WRITE, p);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct priv *p = arg;
	struct sbd_pm_out *o;

	(void)what;
	if (sbd_pm_flush((int)fd, &p->out) != 0) {
		/* the child closed its end (it stops without waiting for the
		 * answers to its last destroys): its exit status tells */
		if (errno != EPIPE && errno != ECONNRESET) {
			sw_log(SW_LOG_ERROR, "privileged part: socket", "error", strerror(errno),
			       NULL);
			p->rc = 1;
		}
		event_base_loopbreak(p->base);
		return;
	}
	p->nout = 0;
	TAILQ_FOREACH(o, &p->out, entry)
	p->nout++;
	if (p->nout > 0)
		event_add(p->wr, NULL);
	else
		event_del(p->wr);
	if (p->reading && p->nout >= PRIV_OUT_MAX) {
		event_del(p->rd);
		p->reading = false;
	} else if (!p->reading && p->nout < PRIV_OUT_MAX / 2) {
		event_add(p->rd, NULL);
		p->reading = true;
	}
}

static void box_unwatch(struct priv_box *b)
{
	if (b->ev_set)
		event_del(&b->ev);
	b->ev_set = false;
}

/* Wait for fd to be readable, at most ms, then cb. */
static int box_watch(struct priv_box *b, int fd, int64_t ms,
		     void (*cb)(evutil_socket_t, short, void *))
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	box_unwatch(b);
	if (fd < 0)
		event_assign(&b->ev, b->p->base, -1, 0, cb, b);
	else
		event_assign(&b->ev, b->p->base, fd, EV_READ, cb, b);
	b->ev_set = true;
	return event_add(&b->ev, &tv);
}

/* Forget b, destroying what it holds (waiting, if it must: only at the
 * end, or for a box that failed early). */
static void box_free(struct priv_box *b, struct sw_sandbox_usage *final)
{
	struct priv *p = b->p;

	box_unwatch(b);
	LIST_REMOVE(b, entry);
	p->nboxes--;
	if (b->st != NULL)
		sw_sandbox_start_abort(b->st);
	if (b->helper_sock >= 0)
		close(b->helper_sock);
	if (b->helper > 0)
		reap_add(p, b->helper);
	sw_sandbox_destroy(b->sb, final);
	free(b);
}

/* Started, its listener (if any) made: hand it over. */
static void box_created(struct priv_box *b, int egress_fd)
{
	struct priv *p = b->p;
	struct sbd_pm r = {.type = SBD_PM_CREATED, .id = b->id};
	int fds[2] = {-1, egress_fd};

	if ((fds[0] = sw_sandbox_give_fd(b->sb)) < 0) {
		if (egress_fd >= 0)
			close(egress_fd);
		reply_error(p, b->id, "sandbox ended while starting%s", "");
		box_free(b, NULL);
		return;
	}
	for (int i = 0; i < SBD_PM_LIMITS; i++)
		r.u.created.limits[i] = sbd_pm_limit_get(sw_sandbox_limits(b->sb), i);
	r.u.created.handle = b->handle;
	r.u.created.pid = (uint32_t)sw_sandbox_pid(b->sb);
	r.u.created.start_us = (uint64_t)((sw_mono_ns() - b->t0_ns) / 1000);
	b->state = BOX_LIVE;
	reply(p, &r, fds, egress_fd >= 0 ? 2 : 1);
}

static void on_egress(evutil_socket_t fd, short what, void *arg)
{
	struct priv_box *b = arg;
	char err[300];
	bool again;
	int lfd;

	(void)fd;
	b->ev_set = false;
	if (what & EV_TIMEOUT) {
		reply_error(b->p, b->id, "egress proxy socket: helper did not answer%s", "");
		box_free(b, NULL);
		return;
	}
	lfd = egress_answer(b->helper_sock, &again, err, sizeof(err));
	if (lfd < 0 && again) {
		box_watch(b, b->helper_sock, PRIV_EGRESS_WAIT_MS, on_egress);
		return;
	}
	close(b->helper_sock);
	b->helper_sock = -1;
	reap_add(b->p, b->helper);
	b->helper = 0;
	if (lfd < 0) {
		reply_error(b->p, b->id, "%s", err);
		box_free(b, NULL);
		return;
	}
	box_created(b, lfd);
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
	struct priv_box *b = arg;
	char err[600];
	int rc;

	(void)fd;
	(void)what; /* a timeout is the step's to tell */
	b->ev_set = false;
	rc = sw_sandbox_start_step(b->st, &b->sb, err, sizeof(err));
	if (rc == 0) {
		box_watch(b, sw_sandbox_start_fd(b->st), sw_sandbox_start_left_ms(b->st) + 1,
			  on_start);
		return;
	}
	b->st = NULL; /* freed by the step, either way */
	if (rc < 0) {
		reply_error(b->p, b->id, "%s", err);
		box_free(b, NULL);
		return;
	}
	if (b->net != SW_SANDBOX_NET_EGRESS_ONLY) {
		box_created(b, -1);
		return;
	}
	b->state = BOX_EGRESS;
	if ((b->helper = egress_helper(sw_sandbox_pid(b->sb), &b->helper_sock, err,
				       sizeof(err))) < 0) {
		b->helper = 0;
		reply_error(b->p, b->id, "%s", err);
		box_free(b, NULL);
		return;
	}
	box_watch(b, b->helper_sock, PRIV_EGRESS_WAIT_MS, on_egress);
}

static void do_create(struct priv *p, const struct sbd_pm *req)
{
	const struct sw_sandbox_variant *v;
	enum sw_sandbox_net net = (enum sw_sandbox_net)req->u.create.net;
	struct sw_sandbox_limits limits = {0};
	struct sw_sandbox_spec spec = {0};
	struct priv_box *b = NULL;
	const char *env[8];
	char err[600], path[1024];

	/* sbd_pm_decode checked net's range and the variant's length and
	 * bytes; the catalogue checks the name itself */
	if ((v = variant_get(p, req->u.create.variant, err, sizeof(err))) == NULL) {
		reply_error(p, req->id, "%s", err);
		return;
	}
	for (int i = 0; i < SBD_PM_LIMITS; i++) {
		uint64_t want = req->u.create.limits[i], ceil = sbd_pm_limit_get(&v->limits, i);

		if (want == 0) /* not asked: the variant's */
			continue;
		if (want > (i == PRIV_LIMIT_CPU ? SW_SANDBOX_CPU_MILLIS_MAX : ceil)) {
			reply_error(p, req->id, "limit '%s' is over the variant's",
				    sbd_pm_limit_names[i]);
			return;
		}
		/* A variant's CPU maximum is optional (0: none) and the child's
		 * copy of the catalogue may be older than ours: lowering to
		 * ours only ever narrows what was asked. */
		if (i == PRIV_LIMIT_CPU && ceil > 0 && want > ceil)
			want = ceil;
		sbd_pm_limit_set(&limits, i, want);
	}
	if (p->nboxes >= p->cfg->max_sandboxes) {
		char n[32];

		snprintf(n, sizeof(n), "%zu", p->cfg->max_sandboxes);
		reply_error(p, req->id, "this host already holds its maximum of %s sandboxes", n);
		return;
	}
	if (sandbox_env(v, net, env, path, sizeof(path)) != 0) {
		reply_error(p, req->id, "variant %s: its env_path makes PATH too long", v->name);
		return;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		reply_error(p, req->id, "out of memory%s", "");
		return;
	}
	b->p = p;
	b->id = req->id;
	b->net = net;
	b->helper_sock = -1;
	b->t0_ns = sw_mono_ns();
	spec.variant = v;
	spec.net = net;
	spec.limits = limits;
	spec.env = env;
	spec.workspace = NULL; /* a tmpfs of limits.disk_bytes: bounded, no host path */
	spec.start_timeout_ms = 10000;
	/* forks bwrap and returns: the rest on the loop (on_start) */
	if ((b->st = sw_sandbox_start_new(p->be, &spec, err, sizeof(err))) == NULL) {
		reply_error(p, req->id, "%s", err);
		free(b);
		return;
	}
	b->handle = ++p->next_handle;
	LIST_INSERT_HEAD(&p->boxes, b, entry);
	p->nboxes++;
	box_watch(b, sw_sandbox_start_fd(b->st), sw_sandbox_start_left_ms(b->st) + 1, on_start);
}

/* A killed box's monitor is gone (or took too long): reap, account, reply. */
static void on_gone(evutil_socket_t fd, short what, void *arg)
{
	struct priv_box *b = arg;
	struct priv *p = b->p;
	struct sbd_pm r = {.type = SBD_PM_DESTROYED, .id = b->id};
	struct sw_sandbox_usage u;

	(void)fd;
	(void)what;
	b->ev_set = false;
	box_free(b, &u);
	r.u.destroyed.utime_us = (uint64_t)u.utime_us;
	r.u.destroyed.stime_us = (uint64_t)u.stime_us;
	r.u.destroyed.maxrss_kb = (uint64_t)u.maxrss_kb;
	r.u.destroyed.oom_killed = u.oom_killed ? 1 : 0;
	reply(p, &r, NULL, 0);
}

static void do_destroy(struct priv *p, const struct sbd_pm *req)
{
	struct priv_box *b;

	/* only what was handed over has a handle the child knows */
	LIST_FOREACH(b, &p->boxes, entry)
	if (b->state == BOX_LIVE && b->handle == req->u.destroy.handle)
		break;
	if (b == NULL) {
		reply_error(p, req->id, "no such sandbox%s", "");
		return;
	}
	b->id = req->id;
	b->state = BOX_DYING;
	sw_sandbox_kill(b->sb);
	/* reaped once its monitor has exited, so the destroy does not wait
	 * (no pidfd for it: destroyed now, waiting as long as it takes) */
	if (sw_sandbox_gone_fd(b->sb) < 0)
		on_gone(-1, EV_TIMEOUT, b);
	else
		box_watch(b, sw_sandbox_gone_fd(b->sb), PRIV_GONE_WAIT_MS, on_gone);
}

static void on_request(evutil_socket_t fd, short what, void *arg)
{
	struct priv *p = arg;

	(void)what;
	for (int k = 0; k < PRIV_READS_PER_CB && p->reading; k++) {
		struct sbd_pm req;
		char err[256];
		int fds[2], n;

		n = sbd_pm_recv((int)fd, &req, fds, MSG_DONTWAIT, err, sizeof(err));
		if (n == 0) {
			event_base_loopbreak(p->base); /* the child ended */
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EBADMSG) {
				sw_log(SW_LOG_WARN, "privileged part: malformed request refused",
				       "why", err, NULL);
				reply_error(p, req.id, "malformed request: %s", err);
				continue;
			}
			if (errno != ECONNRESET) { /* else the child is gone, as at EOF */
				sw_log(SW_LOG_ERROR, "privileged part: socket", "error",
				       strerror(errno), NULL);
				p->rc = 1;
			}
			event_base_loopbreak(p->base);
			return;
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
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct priv *p = arg;
	int status;

	(void)what;
	if (sig != SIGCHLD) {
		/* the child drains and ends; its end ends us */
		kill(p->child, (int)sig);
		return;
	}
	for (int i = 0; i < PRIV_REAP_MAX; i++)
		if (p->reap[i] > 0 && waitpid(p->reap[i], &status, WNOHANG) == p->reap[i])
			p->reap[i] = 0;
	if (!p->child_gone && waitpid(p->child, &p->child_status, WNOHANG) == p->child) {
		p->child_gone = true;
		event_base_loopbreak(p->base);
	}
}

/* The parent's whole life after the split. Returns the exit code. */
static int priv_serve(struct priv *p)
{
	static const int sigs[4] = {SIGTERM, SIGINT, SIGCHLD, SIGPIPE};
	int status = 0;

	LIST_INIT(&p->boxes);
	TAILQ_INIT(&p->out);
	signal(SIGPIPE, SIG_IGN);
	/* cgroups made ahead: a cold start does not wait for their mkdir */
	if (sw_sandbox_bwrap_spares(p->be, PRIV_CG_SPARES) != 0)
		sw_log(SW_LOG_WARN, "privileged part: no cgroups made ahead", NULL);
	if ((p->base = event_base_new()) == NULL ||
	    fcntl(p->sock, F_SETFL, fcntl(p->sock, F_GETFL) | O_NONBLOCK) != 0 ||
	    (p->rd = event_new(p->base, p->sock, EV_READ | EV_PERSIST, on_request, p)) == NULL ||
	    (p->wr = event_new(p->base, p->sock, EV_WRITE, on_writable, p)) == NULL ||
	    event_add(p->rd, NULL) != 0) {
		sw_log(SW_LOG_ERROR, "privileged part: cannot set up its loop", NULL);
		p->rc = 1;
	}
	p->reading = true;
	for (int i = 0; i < 3 && p->rc == 0; i++)
		if ((p->sigs[i] = evsignal_new(p->base, sigs[i], on_signal, p)) == NULL ||
		    event_add(p->sigs[i], NULL) != 0)
			p->rc = 1;
	if (p->rc == 0)
		event_base_dispatch(p->base);
	/* the child ended (or broke the socket): nothing may outlive it */
	while (!LIST_EMPTY(&p->boxes))
		box_free(LIST_FIRST(&p->boxes), NULL);
	sbd_pm_outq_free(&p->out);
	if (p->rd != NULL)
		event_free(p->rd);
	if (p->wr != NULL)
		event_free(p->wr);
	p->rd = p->wr = NULL;
	close(p->sock);
	/* the child closes its end as it stops: give it PRIV_CHILD_WAIT_MS to
	 * finish, then no more */
	for (int64_t t0 = sw_mono_ms(); !p->child_gone;) {
		if (waitpid(p->child, &p->child_status, WNOHANG) == p->child) {
			p->child_gone = true;
		} else if (sw_mono_ms() - t0 >= PRIV_CHILD_WAIT_MS) {
			kill(p->child, SIGKILL);
			while (waitpid(p->child, &p->child_status, 0) < 0 && errno == EINTR)
				;
			p->child_gone = true;
		} else {
			usleep(5000);
		}
	}
	status = p->child_status;
	for (int i = 0; i < PRIV_REAP_MAX; i++)
		if (p->reap[i] > 0)
			while (waitpid(p->reap[i], NULL, 0) < 0 && errno == EINTR)
				;
	if (p->rc == 0)
		p->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	for (int i = 0; i < 4; i++)
		if (p->sigs[i] != NULL)
			event_free(p->sigs[i]);
	if (p->rd != NULL)
		event_free(p->rd);
	if (p->wr != NULL)
		event_free(p->wr);
	if (p->base != NULL)
		event_base_free(p->base);
	while (p->variants != NULL) {
		struct priv_variant *pv = p->variants;

		p->variants = pv->next;
		sw_sandbox_variant_free(pv->v);
		free(pv);
	}
	sw_sandbox_backend_free(p->be);
	nftw(p->cfg->state_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return p->rc;
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
	if (sw_sandbox_bwrap_swept(p.be) > 0) {
		char n[16];

		snprintf(n, sizeof(n), "%d", sw_sandbox_bwrap_swept(p.be));
		sw_log(SW_LOG_WARN, "sandboxes of a dead instance were still running: killed",
		       "cgroups", n, NULL);
	}
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

