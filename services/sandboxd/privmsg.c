/*
 * privmsg.c: encode and decode the privileged part's messages (the format
 * is in privmsg.h). No allocation, no I/O: the same code runs in both parts
 * and in the fuzz target (tests/fuzz/fuzz_privmsg.c).
 */
#include <stdio.h>
#include <string.h>

#include "privmsg.h"

const char *const sbd_pm_limit_names[SBD_PM_LIMITS] = {
    "nproc", "memory_bytes", "cpu_seconds", "file_size_bytes",
    "nofile", "wall_ms", "cpu_millis", "disk_bytes"};

/* ---- writing: w.ok drops to 0 on the first overrun ---- */

struct wr {
	uint8_t *p;
	size_t n, len;
	int ok;
};

static void put(struct wr *w, uint64_t v, int bytes)
{
	if (w->len - w->n < (size_t)bytes) {
		w->ok = 0;
		return;
	}
	for (int i = bytes - 1; i >= 0; i--)
		w->p[w->n++] = (uint8_t)(v >> (8 * i));
}

static void put_str(struct wr *w, const char *s, size_t max)
{
	size_t k = strnlen(s, max + 1);

	if (k > max || w->len - w->n < 2 + k) {
		w->ok = 0;
		return;
	}
	put(w, k, 2);
	memcpy(w->p + w->n, s, k);
	w->n += k;
}

size_t sbd_pm_encode(const struct sbd_pm *m, uint8_t *buf, size_t buflen)
{
	struct wr w = {.p = buf, .len = buflen < SBD_PM_MAX ? buflen : SBD_PM_MAX, .ok = 1};

	put(&w, m->type, 2);
	put(&w, 0, 4); /* the length, filled in below */
	put(&w, m->id, 4);
	switch (m->type) {
	case SBD_PM_CREATE:
		if (m->u.create.net > SBD_PM_NET_MAX)
			return 0;
		put(&w, m->u.create.net, 1);
		for (int i = 0; i < SBD_PM_LIMITS; i++)
			put(&w, m->u.create.limits[i], 8);
		put_str(&w, m->u.create.variant, SBD_PM_VARIANT_MAX);
		break;
	case SBD_PM_DESTROY:
		put(&w, m->u.destroy.handle, 8);
		break;
	case SBD_PM_CREATED:
		put(&w, m->u.created.handle, 8);
		put(&w, m->u.created.pid, 4);
		put(&w, m->u.created.start_us, 8);
		for (int i = 0; i < SBD_PM_LIMITS; i++)
			put(&w, m->u.created.limits[i], 8);
		break;
	case SBD_PM_DESTROYED:
		if (m->u.destroyed.oom_killed > 1)
			return 0;
		put(&w, m->u.destroyed.utime_us, 8);
		put(&w, m->u.destroyed.stime_us, 8);
		put(&w, m->u.destroyed.maxrss_kb, 8);
		put(&w, m->u.destroyed.oom_killed, 1);
		break;
	case SBD_PM_ERROR:
		put_str(&w, m->u.error.text, SBD_PM_TEXT_MAX);
		break;
	default:
		return 0;
	}
	if (!w.ok)
		return 0;
	for (int i = 0; i < 4; i++)
		buf[2 + i] = (uint8_t)(w.n >> (8 * (3 - i)));
	return w.n;
}

/* ---- reading: r.ok drops to 0 on the first field past the end ---- */

struct rd {
	const uint8_t *p;
	size_t n, len;
	int ok;
	const char *why;
};

static uint64_t get(struct rd *r, int bytes)
{
	uint64_t v = 0;

	if (!r->ok || r->len - r->n < (size_t)bytes) {
		if (r->ok)
			r->why = "body too short";
		r->ok = 0;
		return 0;
	}
	for (int i = 0; i < bytes; i++)
		v = v << 8 | r->p[r->n++];
	return v;
}

static void get_str(struct rd *r, char *out, size_t max)
{
	size_t k = (size_t)get(r, 2);

	out[0] = '\0';
	if (!r->ok)
		return;
	if (k > max) {
		r->ok = 0, r->why = "string over its cap";
		return;
	}
	if (r->len - r->n < k) {
		r->ok = 0, r->why = "string past the end";
		return;
	}
	if (memchr(r->p + r->n, '\0', k) != NULL) {
		r->ok = 0, r->why = "NUL in a string";
		return;
	}
	memcpy(out, r->p + r->n, k);
	out[k] = '\0';
	r->n += k;
}

int sbd_pm_decode(const uint8_t *p, size_t n, struct sbd_pm *m, char *err, size_t errlen)
{
	struct rd r = {.p = p, .len = n, .ok = 1};
	uint32_t len;

	memset(m, 0, sizeof(*m));
	if (n < SBD_PM_HDR || n > SBD_PM_MAX) {
		snprintf(err, errlen, "message of %zu bytes (%d..%d)", n, SBD_PM_HDR, SBD_PM_MAX);
		return -1;
	}
	m->type = (uint16_t)get(&r, 2);
	len = (uint32_t)get(&r, 4);
	m->id = (uint32_t)get(&r, 4);
	if (len != n) {
		snprintf(err, errlen, "length field %u, datagram %zu bytes", (unsigned)len, n);
		return -1;
	}
	switch (m->type) {
	case SBD_PM_CREATE:
		m->u.create.net = (uint8_t)get(&r, 1);
		for (int i = 0; i < SBD_PM_LIMITS; i++)
			m->u.create.limits[i] = get(&r, 8);
		get_str(&r, m->u.create.variant, SBD_PM_VARIANT_MAX);
		if (r.ok && m->u.create.net > SBD_PM_NET_MAX)
			r.ok = 0, r.why = "unknown network policy";
		if (r.ok && m->u.create.variant[0] == '\0')
			r.ok = 0, r.why = "empty variant";
		break;
	case SBD_PM_DESTROY:
		m->u.destroy.handle = get(&r, 8);
		break;
	case SBD_PM_CREATED:
		m->u.created.handle = get(&r, 8);
		m->u.created.pid = (uint32_t)get(&r, 4);
		m->u.created.start_us = get(&r, 8);
		for (int i = 0; i < SBD_PM_LIMITS; i++)
			m->u.created.limits[i] = get(&r, 8);
		break;
	case SBD_PM_DESTROYED:
		m->u.destroyed.utime_us = get(&r, 8);
		m->u.destroyed.stime_us = get(&r, 8);
		m->u.destroyed.maxrss_kb = get(&r, 8);
		m->u.destroyed.oom_killed = (uint8_t)get(&r, 1);
		if (r.ok && m->u.destroyed.oom_killed > 1)
			r.ok = 0, r.why = "oom_killed not 0 or 1";
		break;
	case SBD_PM_ERROR:
		get_str(&r, m->u.error.text, SBD_PM_TEXT_MAX);
		break;
	default:
		snprintf(err, errlen, "unknown message type %u", (unsigned)m->type);
		return -1;
	}
	if (r.ok && r.n != n)
		r.ok = 0, r.why = "trailing bytes after the body";
	if (!r.ok) {
		snprintf(err, errlen, "message type %u: %s", (unsigned)m->type, r.why);
		return -1;
	}
	return 0;
}
