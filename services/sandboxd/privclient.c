/*
 * privclient.c: the service part's end of the socket to the privileged part
 * (priv.c), on the service's libevent loop.
 *
 * A request is queued and sent without waiting for its answer; each carries
 * a fresh id, and the answer with that id (in whatever order the
 * privileged part finishes) runs the request's callback on the loop. So
 * many creates and destroys are in flight at once and the loop never
 * blocks on the privileged part. Replies are checked like any input: an id
 * nobody asked for, a type that does not answer the request, or a CREATED
 * without its fds is refused (the request then fails). When the socket
 * ends, every request still waiting fails.
 *
 * sbd_priv_create and sbd_priv_destroy at the end are blocking round trips
 * on a socket of their own, for tests of the privileged part.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "privmsg.h"
#include "sandboxd.h"

#define CLIENT_READS_PER_CB 32

struct call {
	TAILQ_ENTRY(call) entry;
	uint32_t id;
	uint16_t want; /* SBD_PM_CREATED or SBD_PM_DESTROYED */
	enum sw_sandbox_net net;
	sbd_priv_cb cb;
	void *arg;
};
TAILQ_HEAD(callq, call);

struct sbd_priv_client {
	struct event_base *base;
	int sock;
	struct event *rd, *wr;
	struct sbd_pm_outq out;
	struct callq calls;
	size_t ncalls;
	uint32_t next_id;
	char dead[200]; /* why the socket ended, or "" */
};

static void close_fds(int fds[2])
{
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]), fds[i] = -1;
}

/* Run c's callback with an error and forget c. */
static void call_fail(struct sbd_priv_client *cl, struct call *c, const char *why)
{
	struct sbd_priv_result r;

	memset(&r, 0, sizeof(r));
	r.err = why;
	r.created.ctl_fd = r.created.egress_fd = -1;
	TAILQ_REMOVE(&cl->calls, c, entry);
	cl->ncalls--;
	c->cb(c->arg, &r);
	free(c);
}

/* The socket is gone: every waiting request fails. */
static void client_dead(struct sbd_priv_client *cl, const char *why)
{
	if (cl->dead[0] == '\0')
		snprintf(cl->dead, sizeof(cl->dead), "privileged part: %s", why);
	event_del(cl->rd);
	event_del(cl->wr);
	sbd_pm_outq_free(&cl->out);
	while (!TAILQ_EMPTY(&cl->calls))
		call_fail(cl, TAILQ_FIRST(&cl->calls), cl->dead);
}

/* One decoded reply (and its fds, taken). */
static void on_reply(struct sbd_priv_client *cl, const struct sbd_pm *m, int fds[2])
{
	struct sbd_priv_result r;
	struct call *c;
	char why[SBD_PM_TEXT_MAX + 1];

	TAILQ_FOREACH(c, &cl->calls, entry)
		if (c->id == m->id)
			break;
	if (c == NULL) {
		sw_log(SW_LOG_WARN, "privileged part: reply to no request, dropped", NULL);
		close_fds(fds);
		return;
	}
	if (m->type == SBD_PM_ERROR || m->type != c->want) {
		close_fds(fds);
		if (m->type == SBD_PM_ERROR)
			snprintf(why, sizeof(why), "%s",
				 m->u.error.text[0] ? m->u.error.text
						    : "privileged part: refused");
		else
			snprintf(why, sizeof(why),
				 "privileged part: reply of type %u to a request",
				 (unsigned)m->type);
		call_fail(cl, c, why);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.created.ctl_fd = r.created.egress_fd = -1;
	if (m->type == SBD_PM_CREATED) {
		if (fds[0] < 0 || (c->net == SW_SANDBOX_NET_EGRESS_ONLY) != (fds[1] >= 0) ||
		    m->u.created.handle == 0) {
			close_fds(fds);
			call_fail(cl, c, "privileged part: bad create reply");
			return;
		}
		for (int i = 0; i < SBD_PM_LIMITS; i++)
			sbd_pm_limit_set(&r.created.limits, i, m->u.created.limits[i]);
		r.created.handle = m->u.created.handle;
		r.created.start_us = (int64_t)m->u.created.start_us;
		r.created.pid = (pid_t)m->u.created.pid;
		r.created.ctl_fd = fds[0];
		r.created.egress_fd = fds[1];
	} else {
		close_fds(fds);
		r.final.utime_us = (int64_t)m->u.destroyed.utime_us;
		r.final.stime_us = (int64_t)m->u.destroyed.stime_us;
		r.final.maxrss_kb = (int64_t)m->u.destroyed.maxrss_kb;
		r.final.oom_killed = m->u.destroyed.oom_killed;
	}
	TAILQ_REMOVE(&cl->calls, c, entry);
	cl->ncalls--;
	c->cb(c->arg, &r); /* owns the fds now */
	free(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_priv_client *cl = arg;

	(void)what;
	for (int k = 0; k < CLIENT_READS_PER_CB && cl->dead[0] == '\0'; k++) {
		struct sbd_pm m;
		char err[256];
		int fds[2], n;

		n = sbd_pm_recv((int)fd, &m, fds, MSG_DONTWAIT, err, sizeof(err));
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == 0) {
			client_dead(cl, "gone");
			return;
		}
		if (n < 0) {
			/* the privileged part does not send garbage: treat it as gone */
			client_dead(cl, errno == EBADMSG ? err : strerror(errno));
			return;
		}
		on_reply(cl, &m, fds);
	}
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_priv_client *cl = arg;

	(void)what;
	if (cl->dead[0] != '\0') { /* a send failed (send_call): the rest fail here */
		client_dead(cl, "");
		return;
	}
	if (sbd_pm_flush((int)fd, &cl->out) != 0) {
		client_dead(cl, strerror(errno));
		return;
	}
	if (!TAILQ_EMPTY(&cl->out))
		event_add(cl->wr, NULL);
}

struct sbd_priv_client *sbd_priv_client_new(struct event_base *base, int sock, char *errstr,
					    size_t errlen)
{
	struct sbd_priv_client *cl = calloc(1, sizeof(*cl));
	int fl;

	if (cl == NULL) {
		snprintf(errstr, errlen, "out of memory");
		close(sock);
		return NULL;
	}
	cl->base = base;
	cl->sock = sock;
	TAILQ_INIT(&cl->out);
	TAILQ_INIT(&cl->calls);
	if ((fl = fcntl(sock, F_GETFL)) < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) != 0 ||
	    (cl->rd = event_new(base, sock, EV_READ | EV_PERSIST, on_readable, cl)) == NULL ||
	    (cl->wr = event_new(base, sock, EV_WRITE, on_writable, cl)) == NULL ||
	    event_add(cl->rd, NULL) != 0) {
		snprintf(errstr, errlen, "privileged part's socket: cannot watch it");
		sbd_priv_client_free(cl);
		return NULL;
	}
	return cl;
}

void sbd_priv_client_free(struct sbd_priv_client *cl)
{
	struct call *c;

	if (cl == NULL)
		return;
	if (cl->rd != NULL)
		event_free(cl->rd);
	if (cl->wr != NULL)
		event_free(cl->wr);
	sbd_pm_outq_free(&cl->out);
	while ((c = TAILQ_FIRST(&cl->calls)) != NULL) {
		TAILQ_REMOVE(&cl->calls, c, entry);
		free(c);
	}
	close(cl->sock);
	free(cl);
}

size_t sbd_priv_client_pending(const struct sbd_priv_client *cl)
{
	return cl->ncalls;
}

/* Queue req as a call; 0, or -1 with err (nothing will call cb). */
static int send_call(struct sbd_priv_client *cl, struct sbd_pm *req, uint16_t want,
		     enum sw_sandbox_net net, sbd_priv_cb cb, void *arg, char *err, size_t errlen)
{
	struct call *c;

	if (cl->dead[0] != '\0') {
		snprintf(err, errlen, "%s", cl->dead);
		return -1;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (++cl->next_id == 0)
		cl->next_id = 1;
	req->id = cl->next_id;
	if (sbd_pm_queue(&cl->out, req, NULL, 0) != 0) {
		snprintf(err, errlen, "privileged part: request does not encode");
		free(c);
		return -1;
	}
	c->id = req->id;
	c->want = want;
	c->net = net;
	c->cb = cb;
	c->arg = arg;
	TAILQ_INSERT_TAIL(&cl->calls, c, entry);
	cl->ncalls++;
	/* sent now when the socket takes it; callbacks only ever from the loop */
	if (sbd_pm_flush(cl->sock, &cl->out) != 0) {
		snprintf(err, errlen, "privileged part: %s", strerror(errno));
		snprintf(cl->dead, sizeof(cl->dead), "%s", err);
		TAILQ_REMOVE(&cl->calls, c, entry);
		cl->ncalls--;
		free(c);
		event_active(cl->wr, EV_WRITE, 0); /* the others fail on the loop */
		return -1;
	}
	if (!TAILQ_EMPTY(&cl->out))
		event_add(cl->wr, NULL);
	return 0;
}

int sbd_priv_client_create(struct sbd_priv_client *cl, const char *variant,
			   enum sw_sandbox_net net, const struct sw_sandbox_limits *limits,
			   sbd_priv_cb cb, void *arg, char *err, size_t errlen)
{
	struct sbd_pm req = {.type = SBD_PM_CREATE, .u.create.net = (uint8_t)net};

	if (strlen(variant) > SBD_PM_VARIANT_MAX) {
		snprintf(err, errlen, "variant name over %d bytes", SBD_PM_VARIANT_MAX);
		return -1;
	}
	snprintf(req.u.create.variant, sizeof(req.u.create.variant), "%s", variant);
	for (int i = 0; i < SBD_PM_LIMITS && limits != NULL; i++)
		req.u.create.limits[i] = sbd_pm_limit_get(limits, i);
	return send_call(cl, &req, SBD_PM_CREATED, net, cb, arg, err, errlen);
}

int sbd_priv_client_destroy(struct sbd_priv_client *cl, uint64_t handle, sbd_priv_cb cb, void *arg,
			    char *err, size_t errlen)
{
	struct sbd_pm req = {.type = SBD_PM_DESTROY, .u.destroy.handle = handle};

	return send_call(cl, &req, SBD_PM_DESTROYED, SW_SANDBOX_NET_NONE, cb, arg, err, errlen);
}

/* ---- blocking round trips (tests) ------------------------------------------- */

static uint32_t next_id;

static int wait_fd(int fd, short events)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	while (poll(&pfd, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/* Send req, wait for the reply carrying its id. 0 with *reply and fds, or
 * -1 with err (an ERROR reply's text, or why the exchange failed). */
static int call(int sock, struct sbd_pm *req, struct sbd_pm *reply, uint16_t want, int fds[2],
		char *err, size_t errlen)
{
	uint8_t buf[SBD_PM_MAX];
	size_t len;
	int n;

	fds[0] = fds[1] = -1;
	req->id = ++next_id;
	if ((len = sbd_pm_encode(req, buf, sizeof(buf))) == 0) {
		snprintf(err, errlen, "privileged part: request does not encode");
		return -1;
	}
	while (sbd_pm_send_raw(sock, buf, len, NULL, 0) != 0) {
		if ((errno != EAGAIN && errno != EWOULDBLOCK) || wait_fd(sock, POLLOUT) != 0) {
			snprintf(err, errlen, "privileged part: cannot send: %s", strerror(errno));
			return -1;
		}
	}
	while ((n = sbd_pm_recv(sock, reply, fds, 0, err, errlen)) < 0 &&
	       (errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(sock, POLLIN) == 0)
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
			 reply->u.error.text[0] ? reply->u.error.text
						: "privileged part: refused");
		goto bad;
	}
	return 0;
bad:
	close_fds(fds);
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
		req.u.create.limits[i] = sbd_pm_limit_get(limits, i);
	if (call(sock, &req, &reply, SBD_PM_CREATED, fds, err, errlen) != 0)
		return -1;
	if (fds[0] < 0 || (net == SW_SANDBOX_NET_EGRESS_ONLY) != (fds[1] >= 0) ||
	    reply.u.created.handle == 0) {
		snprintf(err, errlen, "privileged part: bad create reply");
		close_fds(fds);
		return -1;
	}
	for (int i = 0; i < SBD_PM_LIMITS; i++)
		sbd_pm_limit_set(&out->limits, i, reply.u.created.limits[i]);
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
	close_fds(fds);
	return 0;
}
