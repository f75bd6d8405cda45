/*
 * frame.c: the sandbox frame codec (see sw_frame.h). Shared by sandboxd and
 * the tool runner, so it uses libc only and never allocates more than one
 * frame's worth of memory for a peer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sw_frame.h"

struct sw_frame_parser {
	uint32_t allowed;
	int failed;
	char why[128]; /* the error latched by a failed feed */
	uint8_t hdr[SW_FRAME_HDR];
	size_t hdr_have;  /* header bytes received of the current frame */
	unsigned type;	  /* of the current frame, once the header is whole */
	uint32_t len;	  /* its payload length */
	uint8_t *payload; /* its payload so far (allocated to len) */
	uint32_t have;	  /* payload bytes received */
};

static const char *const type_names[] = {
    [SW_FRAME_EXEC] = "EXEC",
    [SW_FRAME_STDOUT] = "STDOUT",
    [SW_FRAME_STDERR] = "STDERR",
    [SW_FRAME_EXIT] = "EXIT",
    [SW_FRAME_KILL] = "KILL",
    [SW_FRAME_INJECT_ENV] = "INJECT_ENV",
    [SW_FRAME_CRED_REQUEST] = "CRED_REQUEST",
    [SW_FRAME_ERROR] = "ERROR",
    [SW_FRAME_READY] = "READY",
    [SW_FRAME_CRED_ANSWER] = "CRED_ANSWER",
};

const char *sw_frame_type_name(unsigned type)
{
	if (type == 0 || type > SW_FRAME_TYPE_MAX)
		return "?";
	return type_names[type];
}

void sw_frame_header(uint8_t hdr[SW_FRAME_HDR], enum sw_frame_type type, uint32_t len)
{
	hdr[0] = (uint8_t)type;
	hdr[1] = 0;
	hdr[2] = 0;
	hdr[3] = 0;
	hdr[4] = (uint8_t)len;
	hdr[5] = (uint8_t)(len >> 8);
	hdr[6] = (uint8_t)(len >> 16);
	hdr[7] = (uint8_t)(len >> 24);
}

int sw_frame_header_check(const uint8_t hdr[SW_FRAME_HDR], uint32_t allowed, unsigned *type,
			  uint32_t *len, char *errstr, size_t errlen)
{
	uint32_t n = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 |
		     (uint32_t)hdr[7] << 24;
	unsigned t = hdr[0];

	if (t == 0 || t > SW_FRAME_TYPE_MAX || !(allowed & SW_FRAME_BIT(t))) {
		snprintf(errstr, errlen, "frame type %u (%s) not accepted here", t,
			 sw_frame_type_name(t));
		return -1;
	}
	if (hdr[1] != 0 || hdr[2] != 0 || hdr[3] != 0) {
		snprintf(errstr, errlen, "%s frame with flags/reserved bits set",
			 sw_frame_type_name(t));
		return -1;
	}
	if (n > SW_FRAME_MAX) {
		snprintf(errstr, errlen, "%s frame of %u bytes exceeds %u", sw_frame_type_name(t),
			 n, SW_FRAME_MAX);
		return -1;
	}
	*type = t;
	*len = n;
	return 0;
}

struct sw_frame_parser *sw_frame_parser_new(uint32_t allowed)
{
	struct sw_frame_parser *p = calloc(1, sizeof(*p));

	if (p != NULL)
		p->allowed = allowed;
	return p;
}

void sw_frame_parser_destroy(struct sw_frame_parser *p)
{
	if (p == NULL)
		return;
	free(p->payload);
	free(p);
}

int sw_frame_parser_partial(const struct sw_frame_parser *p)
{
	return p->hdr_have > 0;
}

static int fail(struct sw_frame_parser *p, char *errstr, size_t errlen)
{
	p->failed = 1;
	free(p->payload);
	p->payload = NULL;
	snprintf(errstr, errlen, "%s", p->why);
	return -1;
}

/* Deliver the current frame and reset for the next one. */
static int deliver(struct sw_frame_parser *p, const uint8_t *payload, sw_frame_cb cb, void *arg)
{
	int rc = cb(arg, p->type, payload, p->len);

	free(p->payload);
	p->payload = NULL;
	p->hdr_have = 0;
	p->have = 0;
	if (rc != 0)
		snprintf(p->why, sizeof(p->why), "stopped");
	return rc;
}

int sw_frame_parser_feed(struct sw_frame_parser *p, const void *buf, size_t n, sw_frame_cb cb,
			 void *arg, char *errstr, size_t errlen)
{
	const uint8_t *in = buf;

	if (p->failed) {
		snprintf(errstr, errlen, "%s", p->why);
		return -1;
	}
	while (n > 0) {
		if (p->hdr_have < SW_FRAME_HDR) {
			size_t take = SW_FRAME_HDR - p->hdr_have;

			if (take > n)
				take = n;
			memcpy(p->hdr + p->hdr_have, in, take);
			p->hdr_have += take;
			in += take;
			n -= take;
			if (p->hdr_have < SW_FRAME_HDR)
				break;
			if (sw_frame_header_check(p->hdr, p->allowed, &p->type, &p->len, p->why,
						  sizeof(p->why)) != 0)
				return fail(p, errstr, errlen);
			p->have = 0;
			/* The whole payload is already here: no copy. */
			if (n >= p->len) {
				const uint8_t *pl = in;

				in += p->len;
				n -= p->len;
				if (deliver(p, pl, cb, arg) != 0)
					return fail(p, errstr, errlen);
				continue;
			}
			if ((p->payload = malloc(p->len)) == NULL) {
				snprintf(p->why, sizeof(p->why), "out of memory");
				return fail(p, errstr, errlen);
			}
		}
		if (p->have < p->len) {
			size_t take = p->len - p->have;

			if (take > n)
				take = n;
			memcpy(p->payload + p->have, in, take);
			p->have += (uint32_t)take;
			in += take;
			n -= take;
		}
		if (p->have == p->len && deliver(p, p->payload, cb, arg) != 0)
			return fail(p, errstr, errlen);
	}
	return 0;
}

int sw_frame_outq_push(struct sw_frame_outq *q, enum sw_frame_type type, const void *payload,
		       size_t len)
{
	size_t need;

	if (len > SW_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (q->off > 0 && q->off == q->len)
		q->off = q->len = 0;
	need = q->len + SW_FRAME_HDR + len;
	if (need > q->cap) {
		size_t cap = q->cap ? q->cap : 4096;
		uint8_t *nb;

		/* Reclaim the sent prefix before growing (and wipe what moved:
		 * frames may carry injected values). */
		if (q->off > 0) {
			size_t old = q->len;

			memmove(q->buf, q->buf + q->off, q->len - q->off);
			q->len -= q->off;
			q->off = 0;
			explicit_bzero(q->buf + q->len, old - q->len);
			need = q->len + SW_FRAME_HDR + len;
		}
		while (cap < need)
			cap *= 2;
		if (cap != q->cap) {
			if ((nb = realloc(q->buf, cap)) == NULL)
				return -1;
			q->buf = nb;
			q->cap = cap;
		}
	}
	sw_frame_header(q->buf + q->len, type, (uint32_t)len);
	if (len > 0)
		memcpy(q->buf + q->len + SW_FRAME_HDR, payload, len);
	q->len += SW_FRAME_HDR + len;
	return 0;
}

size_t sw_frame_outq_pending(const struct sw_frame_outq *q)
{
	return q->len - q->off;
}

int sw_frame_outq_flush(struct sw_frame_outq *q, int fd)
{
	while (q->off < q->len) {
		size_t n = q->len - q->off;
		ssize_t w;

		if (n > SW_FRAME_RECORD_MAX)
			n = SW_FRAME_RECORD_MAX;
		w = send(fd, q->buf + q->off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		q->off += (size_t)w;
	}
	explicit_bzero(q->buf, q->len);
	q->off = q->len = 0;
	return 0;
}

void sw_frame_outq_free(struct sw_frame_outq *q)
{
	if (q->buf != NULL)
		explicit_bzero(q->buf, q->cap);
	free(q->buf);
	memset(q, 0, sizeof(*q));
}
