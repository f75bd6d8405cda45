/*
 * credsock.c: the local credential protocol's codec (sw_credsock.h). Shared
 * by the client and the tool runner; libc only, no allocation.
 */
#include <stdio.h>
#include <string.h>

#include "sw_credsock.h"

int sw_credsock_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > SW_CREDSOCK_NAME_MAX || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z')))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return 1;
}

int sw_credsock_text_ok(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned c = u[i];
		size_t k;
		unsigned min, cp;

		if (c < 0x20 || c == 0x7f)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, min = 0x80, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, min = 0x800, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, min = 0x10000, cp = c & 0x07;
		else
			return 0;
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((u[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (u[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		    (cp >= 0x80 && cp < 0xa0))
			return 0;
		i += k + 1;
	}
	return 1;
}

static void put16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, size_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

static uint32_t get16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | get16(p + 2) << 16;
}

size_t sw_credsock_req_encode(const struct sw_credsock_req *req, uint8_t *buf, size_t cap)
{
	const char *f[4] = {req->name, req->scope, req->reason, req->argv0};
	size_t at = 8;

	if (cap < 8 || !sw_credsock_name_ok(req->name, strlen(req->name)) ||
	    req->timeout_ms == 0 || req->timeout_ms > SW_CREDSOCK_TIMEOUT_MAX ||
	    strlen(req->scope) > SW_CREDSOCK_SCOPE_MAX ||
	    strlen(req->reason) > SW_CREDSOCK_REASON_MAX ||
	    strlen(req->argv0) > SW_CREDSOCK_ARGV0_MAX)
		return 0;
	buf[0] = SW_CREDSOCK_VERSION;
	buf[1] = SW_CREDSOCK_OP_REQUEST;
	buf[2] = buf[3] = 0;
	put32(buf + 4, req->timeout_ms);
	for (int i = 0; i < 4; i++) {
		size_t n = strlen(f[i]);

		if (!sw_credsock_text_ok(f[i], n) || at + 2 + n > cap ||
		    at + 2 + n > SW_CREDSOCK_REQ_MAX)
			return 0;
		put16(buf + at, n);
		memcpy(buf + at + 2, f[i], n);
		at += 2 + n;
	}
	return at;
}

int sw_credsock_req_decode(const uint8_t *p, size_t n, struct sw_credsock_req *req, char *errstr,
			   size_t errlen)
{
	static const char *const names[4] = {"name", "scope", "reason", "argv0"};
	static const size_t max[4] = {SW_CREDSOCK_NAME_MAX, SW_CREDSOCK_SCOPE_MAX,
				      SW_CREDSOCK_REASON_MAX, SW_CREDSOCK_ARGV0_MAX};
	char *dst[4] = {req->name, req->scope, req->reason, req->argv0};
	size_t at = 8;

	memset(req, 0, sizeof(*req));
	if (n < 8 || n > SW_CREDSOCK_REQ_MAX) {
		snprintf(errstr, errlen, "a request is 8..%d bytes, not %zu", SW_CREDSOCK_REQ_MAX,
			 n);
		return -1;
	}
	if (p[0] != SW_CREDSOCK_VERSION || p[1] != SW_CREDSOCK_OP_REQUEST || p[2] || p[3]) {
		snprintf(errstr, errlen, "not a version 1 request");
		return -1;
	}
	req->timeout_ms = get32(p + 4);
	if (req->timeout_ms == 0 || req->timeout_ms > SW_CREDSOCK_TIMEOUT_MAX) {
		snprintf(errstr, errlen, "timeout_ms is 1..%d", SW_CREDSOCK_TIMEOUT_MAX);
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		size_t len;

		if (n - at < 2 || (len = get16(p + at)) > max[i] || n - at - 2 < len) {
			snprintf(errstr, errlen, "%s: missing, truncated or over %zu bytes",
				 names[i], max[i]);
			return -1;
		}
		if (!sw_credsock_text_ok((const char *)p + at + 2, len)) {
			snprintf(errstr, errlen, "%s: not printable UTF-8", names[i]);
			return -1;
		}
		memcpy(dst[i], p + at + 2, len);
		dst[i][len] = '\0';
		at += 2 + len;
	}
	if (at != n) {
		snprintf(errstr, errlen, "%zu bytes after the last field", n - at);
		return -1;
	}
	if (!sw_credsock_name_ok(req->name, strlen(req->name))) {
		snprintf(errstr, errlen, "name is not [A-Z_][A-Z0-9_]{0,127}");
		return -1;
	}
	return 0;
}

size_t sw_credsock_reply_encode(enum sw_credsock_status status, const char *code, const char *text,
				size_t text_len, uint8_t *buf, size_t cap)
{
	size_t cl = strlen(code);

	if (status > SW_CREDSOCK_ERROR || cl > 64 ||
	    text_len > (status == SW_CREDSOCK_OK ? SW_CREDSOCK_VALUE_MAX : SW_CREDSOCK_TEXT_MAX) ||
	    8 + cl + text_len > cap || 8 + cl + text_len > SW_CREDSOCK_REPLY_MAX)
		return 0;
	buf[0] = SW_CREDSOCK_VERSION;
	buf[1] = (uint8_t)status;
	put16(buf + 2, cl);
	put32(buf + 4, text_len);
	memcpy(buf + 8, code, cl);
	memcpy(buf + 8 + cl, text, text_len);
	return 8 + cl + text_len;
}

int sw_credsock_reply_decode(const uint8_t *p, size_t n, unsigned *status, const char **code,
			     size_t *code_len, const char **text, size_t *text_len, char *errstr,
			     size_t errlen)
{
	size_t cl, tl;

	if (n < 8 || n > SW_CREDSOCK_REPLY_MAX || p[0] != SW_CREDSOCK_VERSION ||
	    p[1] > SW_CREDSOCK_ERROR) {
		snprintf(errstr, errlen, "not a version 1 reply");
		return -1;
	}
	cl = get16(p + 2);
	tl = get32(p + 4);
	if (cl > 64 || tl > SW_CREDSOCK_VALUE_MAX || 8 + cl + tl != n) {
		snprintf(errstr, errlen, "reply lengths do not add up");
		return -1;
	}
	*status = p[1];
	*code = (const char *)p + 8;
	*code_len = cl;
	*text = (const char *)p + 8 + cl;
	*text_len = tl;
	return 0;
}
