/*
 * credsrv.c: the tool runner's side of the local credential protocol
 * (libs/sandbox/sw_credsock.h, docs/JIT.md). The runner listens on the
 * abstract unix socket SW_CREDSOCK_NAME of its sandbox's network namespace,
 * reads one length-checked request per connection, forwards it to sandboxd
 * as a CRED_REQUEST frame (JSON, with the asker's pid from SO_PEERCRED),
 * and answers the client with what CRED_ANSWER brings back. A granted value
 * is also kept (cred_grants) and added to the environment of every command
 * the runner starts afterwards in this sandbox.
 *
 * Whatever runs in the sandbox may connect: every byte is hostile. Bounds:
 * CRED_CONNS_MAX connections at once (more are closed at accept),
 * CRED_PENDING_MAX requests waiting for sandboxd, a whole request within
 * CRED_READ_MS of the accept, a reply written within CRED_WRITE_MS.
 * Garbage, an oversized length or a slow writer gets an error reply (when
 * it can be written) and the connection closed; the runner serves on.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "runner.h"
#include "sw_credsock.h"

#define CRED_READ_MS 5000
#define CRED_WRITE_MS 5000
#define CRED_SLACK_MS 15000 /* past the request's own timeout: sandboxd is late */

static void conn_close(struct cred_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->out != NULL) {
		explicit_bzero(c->out, c->out_len);
		free(c->out);
	}
	explicit_bzero(c, sizeof(*c));
	c->fd = -1;
}

void cred_init(struct runner *r)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(SW_CREDSOCK_NAME));

	for (int i = 0; i < CRED_CONNS_MAX; i++)
		r->cred[i].fd = -1;
	memcpy(sa.sun_path + 1, SW_CREDSOCK_NAME, strlen(SW_CREDSOCK_NAME));
	r->cred_lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->cred_lfd < 0 || bind(r->cred_lfd, (struct sockaddr *)&sa, len) != 0 ||
	    listen(r->cred_lfd, 16) != 0) {
		/* no credential requests in this sandbox; commands still run */
		if (r->cred_lfd >= 0)
			close(r->cred_lfd);
		r->cred_lfd = -1;
	}
}

/* Queue a reply for c and stop reading it. */
static void reply(struct cred_conn *c, enum sw_credsock_status st, const char *code,
		  const char *text, size_t text_len)
{
	size_t cap = 4 + SW_CREDSOCK_REPLY_MAX, n;

	c->waiting = false;
	c->reading = false;
	if ((c->out = malloc(cap)) == NULL)
		_exit(3);
	n = sw_credsock_reply_encode(st, code, text, text_len, c->out + 4, cap - 4);
	if (n == 0)
		n = sw_credsock_reply_encode(SW_CREDSOCK_ERROR, "error", "reply too large", 15,
					     c->out + 4, cap - 4);
	c->out[0] = (uint8_t)n;
	c->out[1] = (uint8_t)(n >> 8);
	c->out[2] = (uint8_t)(n >> 16);
	c->out[3] = (uint8_t)(n >> 24);
	c->out_len = n + 4;
	c->out_off = 0;
	c->deadline_ms = runner_now_ms() + CRED_WRITE_MS;
}

static void refuse(struct cred_conn *c, const char *why)
{
	reply(c, SW_CREDSOCK_ERROR, "bad_request", why, strlen(why));
}

static int pending(const struct runner *r)
{
	int n = 0;

	for (int i = 0; i < CRED_CONNS_MAX; i++)
		n += r->cred[i].fd >= 0 && r->cred[i].waiting;
	return n;
}

/* A whole request in c->in: check it and forward it. */
static void forward(struct runner *r, struct cred_conn *c)
{
	struct sw_credsock_req req;
	struct ucred uc;
	socklen_t ul = sizeof(uc);
	char why[160], requester[192];
	struct jw w;

	if (sw_credsock_req_decode(c->in + 4, c->in_len - 4, &req, why, sizeof(why)) != 0) {
		refuse(c, why);
		return;
	}
	if (pending(r) >= CRED_PENDING_MAX) {
		refuse(c, "too many credential requests are waiting in this sandbox");
		return;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) != 0)
		uc.pid = 0;
	snprintf(requester, sizeof(requester), "%s (pid %d)", req.argv0[0] ? req.argv0 : "?",
		 (int)uc.pid);
	c->id = ++r->cred_next_id;
	jw_open(&w);
	jw_int(&w, "id", c->id);
	jw_str(&w, "name", req.name);
	jw_str(&w, "scope", req.scope);
	jw_str(&w, "reason", req.reason);
	jw_int(&w, "timeout_ms", (long long)req.timeout_ms);
	jw_str(&w, "requester", requester);
	runner_send_jw(r, SW_FRAME_CRED_REQUEST, &w);
	c->reading = false;
	c->waiting = true;
	c->deadline_ms = runner_now_ms() + req.timeout_ms + CRED_SLACK_MS;
}

static void on_read(struct runner *r, struct cred_conn *c)
{
	ssize_t n;
	uint32_t want;

	if (!c->reading) {
		/* waiting or writing: a hang-up ends it, extra bytes are refused */
		uint8_t b;

		n = recv(c->fd, &b, 1, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			conn_close(c);
		else if (n > 0 && c->waiting)
			refuse(c, "one request per connection");
		return;
	}
	if (c->in_len < 4)
		want = 4;
	else
		want = 4 + ((uint32_t)c->in[0] | (uint32_t)c->in[1] << 8 |
			    (uint32_t)c->in[2] << 16 | (uint32_t)c->in[3] << 24);
	n = recv(c->fd, c->in + c->in_len, want - c->in_len, MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		conn_close(c);
		return;
	}
	if (n < 0)
		return;
	c->in_len += (size_t)n;
	if (c->in_len == 4) {
		uint32_t len = (uint32_t)c->in[0] | (uint32_t)c->in[1] << 8 |
			       (uint32_t)c->in[2] << 16 | (uint32_t)c->in[3] << 24;

		if (len < 8 || len > SW_CREDSOCK_REQ_MAX) {
			refuse(c, "a request's length must be 8..2048 bytes");
			return;
		}
		return;
	}
	if (c->in_len == want)
		forward(r, c);
}

static void on_write(struct cred_conn *c)
{
	ssize_t n =
	    send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->out_off += (size_t)n;
	if (c->out_off == c->out_len)
		conn_close(c);
}

static void on_accept(struct runner *r)
{
	int fd = accept4(r->cred_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (int i = 0; i < CRED_CONNS_MAX; i++) {
		struct cred_conn *c = &r->cred[i];

		if (c->fd >= 0)
			continue;
		c->fd = fd;
		c->reading = true;
		c->in_len = 0;
		c->deadline_ms = runner_now_ms() + CRED_READ_MS;
		return;
	}
	close(fd); /* too many at once */
}

int cred_poll_add(struct runner *r, struct pollfd *pf, int np, int *timeout)
{
	int64_t now = runner_now_ms();
	int free_slot = 0;

	r->cred_lidx = -1;
	for (int i = 0; i < CRED_CONNS_MAX; i++) {
		struct cred_conn *c = &r->cred[i];
		int64_t left;

		c->pidx = -1;
		if (c->fd < 0) {
			free_slot = 1;
			continue;
		}
		c->pidx = np;
		pf[np++] =
		    (struct pollfd){.fd = c->fd, .events = c->out != NULL ? POLLOUT : POLLIN};
		left = c->deadline_ms > now ? c->deadline_ms - now : 0;
		if (*timeout < 0 || left < *timeout)
			*timeout = (int)left;
	}
	if (r->cred_lfd >= 0 && free_slot) {
		r->cred_lidx = np;
		pf[np++] = (struct pollfd){.fd = r->cred_lfd, .events = POLLIN};
	}
	return np;
}

void cred_poll_run(struct runner *r, const struct pollfd *pf)
{
	int64_t now = runner_now_ms();

	for (int i = 0; i < CRED_CONNS_MAX; i++) {
		struct cred_conn *c = &r->cred[i];

		if (c->fd < 0 || c->pidx < 0)
			continue;
		if (pf[c->pidx].revents & POLLOUT)
			on_write(c);
		else if (pf[c->pidx].revents)
			on_read(r, c);
		if (c->fd < 0 || now < c->deadline_ms)
			continue;
		if (c->out != NULL)
			conn_close(c); /* a client that does not read its reply */
		else if (c->waiting)
			reply(c, SW_CREDSOCK_TIMEOUT, "timeout", "sandboxd did not answer in time",
			      31);
		else
			refuse(c, "the request was not sent in time");
	}
	if (r->cred_lidx >= 0 && (pf[r->cred_lidx].revents & POLLIN))
		on_accept(r);
}

/* Keep NAME=value for later commands (replacing an older grant of NAME). */
static void grant_keep(struct runner *r, const char *name, const char *value)
{
	size_t nl = strlen(name);
	char *entry;

	if (asprintf(&entry, "%s=%s", name, value) < 0)
		_exit(3);
	for (size_t i = 0; i < r->n_grants; i++)
		if (strncmp(r->grants[i], entry, nl + 1) == 0) {
			runner_wipe_free(r->grants[i]);
			r->grants[i] = entry;
			return;
		}
	if (r->n_grants >= CRED_GRANTS_MAX) {
		runner_wipe_free(entry);
		return;
	}
	r->grants[r->n_grants++] = entry;
}

int cred_answer(struct runner *r, const uint8_t *p, uint32_t n)
{
	struct sw_frame_answer a;
	char *name = NULL, *value = NULL, *code = NULL, *error = NULL, err[160];
	int ok;

	if (sw_frame_answer_decode(p, n, &a, err, sizeof(err)) != 0) {
		runner_error(r, "%s", err);
		return -1;
	}
	ok = a.status == 0;
	/* C strings of the fields (no NUL in them: decoded as text) */
	if ((ok && ((name = strndup((const char *)a.a.p, a.a.len)) == NULL ||
		    (value = strndup((const char *)a.b.p, a.b.len)) == NULL)) ||
	    (!ok && ((code = strndup((const char *)a.a.p, a.a.len)) == NULL ||
		     (error = strndup((const char *)a.b.p, a.b.len)) == NULL)))
		_exit(3);
	if (ok && (!sw_credsock_name_ok(name, a.a.len) || a.b.len > SW_CREDSOCK_VALUE_MAX ||
		   r->grants == NULL)) {
		runner_error(r, "CRED_ANSWER: bad name or value");
		free(name);
		runner_wipe_free(value);
		return -1;
	}
	if (ok)
		grant_keep(r, name, value);
	for (int i = 0; i < CRED_CONNS_MAX; i++) {
		struct cred_conn *c = &r->cred[i];

		if (c->fd < 0 || !c->waiting || c->id != a.id)
			continue;
		if (ok)
			reply(c, SW_CREDSOCK_OK, "", value, a.b.len);
		else
			reply(c,
			      a.status == 1   ? SW_CREDSOCK_DENIED
			      : a.status == 2 ? SW_CREDSOCK_TIMEOUT
					      : SW_CREDSOCK_ERROR,
			      a.a.len <= 64 ? code : "error", error,
			      strnlen(error, SW_CREDSOCK_TEXT_MAX));
		break;
	}
	free(name);
	runner_wipe_free(value);
	free(code);
	free(error);
	return 0;
}
