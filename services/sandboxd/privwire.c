/*
 * privwire.c: the privileged part's messages (privmsg.h) on the socket
 * between sandboxd's two parts: one message per SOCK_SEQPACKET datagram,
 * fds beside it as SCM_RIGHTS, a queue for what the socket does not take
 * at once. Used by both parts (priv.c, privclient.c); never waits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "privmsg.h"
#include "sw_sandbox.h"

int sbd_pm_send_raw(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds < 0 || nfds > 2) {
		errno = EINVAL;
		return -1;
	}
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
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n >= 0 && n != (ssize_t)len) {
		errno = EMSGSIZE;
		return -1;
	}
	return n < 0 ? -1 : 0;
}

static void out_free(struct sbd_pm_out *o)
{
	for (int i = 0; i < o->nfds; i++)
		if (o->fds[i] >= 0)
			close(o->fds[i]);
	free(o);
}

int sbd_pm_queue(struct sbd_pm_outq *q, const struct sbd_pm *m, const int *fds, int nfds)
{
	struct sbd_pm_out *o = calloc(1, sizeof(*o));

	if (o == NULL || nfds < 0 || nfds > 2 ||
	    (o->len = sbd_pm_encode(m, o->buf, sizeof(o->buf))) == 0) {
		for (int i = 0; i < nfds && i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		free(o);
		errno = EINVAL;
		return -1;
	}
	o->nfds = nfds;
	for (int i = 0; i < nfds; i++)
		o->fds[i] = fds[i];
	TAILQ_INSERT_TAIL(q, o, entry);
	return 0;
}

int sbd_pm_flush(int sock, struct sbd_pm_outq *q)
{
	struct sbd_pm_out *o;

	while ((o = TAILQ_FIRST(q)) != NULL) {
		if (sbd_pm_send_raw(sock, o->buf, o->len, o->fds, o->nfds) != 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? 0
											   : -1;
		TAILQ_REMOVE(q, o, entry);
		out_free(o); /* the peer holds its copies of the fds now */
	}
	return 0;
}

void sbd_pm_outq_free(struct sbd_pm_outq *q)
{
	struct sbd_pm_out *o;

	while ((o = TAILQ_FIRST(q)) != NULL) {
		TAILQ_REMOVE(q, o, entry);
		out_free(o);
	}
}

ssize_t sbd_pm_recv_raw(int sock, uint8_t *buf, size_t cap, int fds[2], int flags)
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
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_TRUNC | flags);
	while (n < 0 && errno == EINTR);
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

int sbd_pm_recv(int sock, struct sbd_pm *m, int fds[2], int flags, char *err, size_t errlen)
{
	uint8_t buf[SBD_PM_MAX];
	ssize_t n = sbd_pm_recv_raw(sock, buf, sizeof(buf), fds, flags);

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

uint64_t sbd_pm_limit_get(const struct sw_sandbox_limits *l, int i)
{
	const uint64_t f[SBD_PM_LIMITS] = {l->nproc,	       l->memory_bytes, l->cpu_seconds,
					   l->file_size_bytes, l->nofile,	l->wall_ms,
					   l->cpu_millis,      l->disk_bytes};
	return f[i];
}

void sbd_pm_limit_set(struct sw_sandbox_limits *l, int i, uint64_t v)
{
	uint64_t *f[SBD_PM_LIMITS] = {&l->nproc,	   &l->memory_bytes, &l->cpu_seconds,
				      &l->file_size_bytes, &l->nofile,	     &l->wall_ms,
				      &l->cpu_millis,	   &l->disk_bytes};
	*f[i] = v;
}
