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

/* Every integer on the wire is little endian. */
static uint8_t *put_u32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
	return b + 4;
}

static uint32_t get_u32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void sw_frame_header(uint8_t hdr[SW_FRAME_HDR], enum sw_frame_type type, uint32_t len)
{
	hdr[0] = (uint8_t)type;
	hdr[1] = 0;
	hdr[2] = 0;
	hdr[3] = 0;
	put_u32(hdr + 4, len);
}

int sw_frame_header_check(const uint8_t hdr[SW_FRAME_HDR], uint32_t allowed, unsigned *type,
			  uint32_t *len, char *errstr, size_t errlen)
{
	uint32_t n = get_u32(hdr + 4);
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

/* A payload may hold an injected or granted value: wiped before it is freed. */
static void payload_free(struct sw_frame_parser *p)
{
	if (p->payload != NULL)
		explicit_bzero(p->payload, p->len);
	free(p->payload);
	p->payload = NULL;
}

void sw_frame_parser_destroy(struct sw_frame_parser *p)
{
	if (p == NULL)
		return;
	payload_free(p);
	free(p);
}

int sw_frame_parser_partial(const struct sw_frame_parser *p)
{
	return p->hdr_have > 0;
}

static int fail(struct sw_frame_parser *p, char *errstr, size_t errlen)
{
	p->failed = 1;
	payload_free(p);
	snprintf(errstr, errlen, "%s", p->why);
	return -1;
}

/* Deliver the current frame and reset for the next one. */
static int deliver(struct sw_frame_parser *p, const uint8_t *payload, sw_frame_cb cb, void *arg)
{
	int rc = cb(arg, p->type, payload, p->len);

	payload_free(p);
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

/* ---- the host's payloads -------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t n, off;
};

static int rd_u32(struct rd *r, uint32_t *v)
{
	if (r->n - r->off < 4)
		return -1;
	*v = get_u32(r->p + r->off);
	r->off += 4;
	return 0;
}

/* A field; text: no NUL in it. 0, -1 truncated, -2 NUL in text. */
static int rd_field(struct rd *r, struct sw_frame_field *f, int text)
{
	uint32_t len;

	if (rd_u32(r, &len) != 0 || len > r->n - r->off)
		return -1;
	f->p = r->p + r->off;
	f->len = len;
	r->off += len;
	if (text && memchr(f->p, '\0', len) != NULL)
		return -2;
	return 0;
}

static int rd_fail(int rc, const char *what, char *errstr, size_t errlen)
{
	snprintf(errstr, errlen, "%s: %s", what,
		 rc == -2 ? "a text field holds NUL" : "truncated or a length past its end");
	return -1;
}

static int rd_done(const struct rd *r, const char *what, char *errstr, size_t errlen)
{
	if (r->off == r->n)
		return 0;
	snprintf(errstr, errlen, "%s: %zu bytes after its last field", what, r->n - r->off);
	return -1;
}

static uint8_t *put_field(uint8_t *b, const void *s, size_t len)
{
	b = put_u32(b, (uint32_t)len);
	if (len > 0)
		memcpy(b, s, len);
	return b + len;
}

/* *total += 4 + len, refusing what no frame can carry. */
static int room(size_t *total, size_t len)
{
	if (len > SW_FRAME_MAX || *total > SW_FRAME_MAX - 4 - len)
		return -1;
	*total += 4 + len;
	return 0;
}

uint8_t *sw_frame_exec_encode(const char *const *argv, const char *const *env, const char *cwd,
			      const void *in, size_t in_len, int has_stdin, uint64_t timeout_ms,
			      size_t *len)
{
	size_t argc = 0, envc = 0, total = 20;
	uint8_t *buf, *b;

	if (argv == NULL || cwd == NULL || room(&total, strlen(cwd)) != 0)
		return NULL;
	for (; argv[argc] != NULL; argc++)
		if (argc >= SW_FRAME_ARGV_MAX || room(&total, strlen(argv[argc])) != 0)
			return NULL;
	for (; env != NULL && env[envc] != NULL; envc++)
		if (envc >= SW_FRAME_ENV_MAX || room(&total, strlen(env[envc])) != 0)
			return NULL;
	if (argc == 0 || (has_stdin && room(&total, in_len) != 0) || (buf = malloc(total)) == NULL)
		return NULL;
	b = put_u32(buf, (uint32_t)argc);
	b = put_u32(b, (uint32_t)envc);
	b = put_u32(b, has_stdin ? SW_FRAME_EXEC_STDIN : 0);
	b = put_u32(b, (uint32_t)timeout_ms);
	b = put_u32(b, (uint32_t)(timeout_ms >> 32));
	b = put_field(b, cwd, strlen(cwd));
	for (size_t i = 0; i < argc; i++)
		b = put_field(b, argv[i], strlen(argv[i]));
	for (size_t i = 0; i < envc; i++)
		b = put_field(b, env[i], strlen(env[i]));
	if (has_stdin)
		b = put_field(b, in, in_len);
	*len = (size_t)(b - buf);
	return buf;
}

/* Copy f into *at as a C string; the next free byte after it. */
static char *cstr(char **at, const struct sw_frame_field *f)
{
	char *s = *at;

	memcpy(s, f->p, f->len);
	s[f->len] = '\0';
	*at = s + f->len + 1;
	return s;
}

int sw_frame_exec_decode(const uint8_t *p, size_t n, struct sw_frame_exec *x, char *errstr,
			 size_t errlen)
{
	struct rd r = {p, n, 0};
	struct sw_frame_field f, cwd, in = {NULL, 0};
	uint32_t argc, envc, flags, lo, hi;
	size_t text = 0, slots;
	char *at;
	int rc;

	memset(x, 0, sizeof(*x));
	if (rd_u32(&r, &argc) != 0 || rd_u32(&r, &envc) != 0 || rd_u32(&r, &flags) != 0 ||
	    rd_u32(&r, &lo) != 0 || rd_u32(&r, &hi) != 0)
		return rd_fail(-1, "EXEC", errstr, errlen);
	if (argc == 0 || argc > SW_FRAME_ARGV_MAX || envc > SW_FRAME_ENV_MAX ||
	    (flags & ~SW_FRAME_EXEC_STDIN) != 0) {
		snprintf(errstr, errlen, "EXEC: argc %u, envc %u or flags %#x out of range", argc,
			 envc, flags);
		return -1;
	}
	/* first pass: check, and size the copy */
	if ((rc = rd_field(&r, &cwd, 1)) != 0)
		return rd_fail(rc, "EXEC", errstr, errlen);
	text += cwd.len + 1;
	for (uint32_t i = 0; i < argc + envc; i++) {
		if ((rc = rd_field(&r, &f, 1)) != 0)
			return rd_fail(rc, "EXEC", errstr, errlen);
		text += f.len + 1;
	}
	if ((flags & SW_FRAME_EXEC_STDIN) && (rc = rd_field(&r, &in, 0)) != 0)
		return rd_fail(rc, "EXEC", errstr, errlen);
	if (rd_done(&r, "EXEC", errstr, errlen) != 0)
		return -1;
	/* second pass: copy (every length is within n, so nothing overflows) */
	slots = (size_t)argc + 1 + envc + 1;
	x->mem_len = slots * sizeof(char *) + text + in.len;
	if ((x->mem = malloc(x->mem_len)) == NULL) {
		snprintf(errstr, errlen, "EXEC: out of memory");
		return -1;
	}
	x->argv = x->mem;
	x->env = x->argv + argc + 1;
	at = (char *)(x->env + envc + 1);
	r.off = 20;
	(void)rd_field(&r, &f, 1);
	x->cwd = cstr(&at, &f);
	for (uint32_t i = 0; i < argc; i++) {
		(void)rd_field(&r, &f, 1);
		x->argv[i] = cstr(&at, &f);
	}
	x->argv[argc] = NULL;
	for (uint32_t i = 0; i < envc; i++) {
		(void)rd_field(&r, &f, 1);
		x->env[i] = cstr(&at, &f);
	}
	x->env[envc] = NULL;
	if (flags & SW_FRAME_EXEC_STDIN) {
		x->in = at;
		if (in.len > 0)
			memcpy(at, in.p, in.len);
		x->in_len = in.len;
	}
	x->argc = argc;
	x->envc = envc;
	x->timeout_ms = (uint64_t)hi << 32 | lo;
	return 0;
}

uint8_t *sw_frame_inject_encode(const char *name, const char *value, size_t *len)
{
	size_t nl = strlen(name), vl = strlen(value), total = 0;
	uint8_t *buf, *b;

	if (room(&total, nl) != 0 || room(&total, vl) != 0 || (buf = malloc(total)) == NULL)
		return NULL;
	b = put_field(buf, name, nl);
	b = put_field(b, value, vl);
	*len = (size_t)(b - buf);
	return buf;
}

int sw_frame_inject_decode(const uint8_t *p, size_t n, struct sw_frame_field *name,
			   struct sw_frame_field *value, char *errstr, size_t errlen)
{
	struct rd r = {p, n, 0};
	int rc;

	if ((rc = rd_field(&r, name, 1)) != 0 || (rc = rd_field(&r, value, 1)) != 0)
		return rd_fail(rc, "INJECT_ENV", errstr, errlen);
	return rd_done(&r, "INJECT_ENV", errstr, errlen);
}

uint8_t *sw_frame_answer_encode(uint32_t id, uint32_t status, const char *a, const char *b,
				size_t *len)
{
	size_t al = strlen(a), bl = strlen(b), total = 8;
	uint8_t *buf, *o;

	if (status > 3 || room(&total, al) != 0 || room(&total, bl) != 0 ||
	    (buf = malloc(total)) == NULL)
		return NULL;
	o = put_u32(buf, id);
	o = put_u32(o, status);
	o = put_field(o, a, al);
	o = put_field(o, b, bl);
	*len = (size_t)(o - buf);
	return buf;
}

int sw_frame_answer_decode(const uint8_t *p, size_t n, struct sw_frame_answer *ans, char *errstr,
			   size_t errlen)
{
	struct rd r = {p, n, 0};
	int rc;

	memset(ans, 0, sizeof(*ans));
	if (rd_u32(&r, &ans->id) != 0 || rd_u32(&r, &ans->status) != 0)
		return rd_fail(-1, "CRED_ANSWER", errstr, errlen);
	if (ans->status > 3) {
		snprintf(errstr, errlen, "CRED_ANSWER: status %u out of range", ans->status);
		return -1;
	}
	if ((rc = rd_field(&r, &ans->a, 1)) != 0 || (rc = rd_field(&r, &ans->b, 1)) != 0)
		return rd_fail(rc, "CRED_ANSWER", errstr, errlen);
	return rd_done(&r, "CRED_ANSWER", errstr, errlen);
}
