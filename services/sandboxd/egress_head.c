/*
 * egress_head.c: the request head a sandbox sends its proxy: a CONNECT
 * host:port, or a plain HTTP request in absolute form, which is rewritten
 * for the destination (origin form, Host, no hop-by-hop headers,
 * Connection: close).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>

#include "egress.h"

static bool is_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Length of the head at the start of p[0..n), through the empty line that
 * ends it (LF or CRLF line ends), or 0 while it is incomplete. */
size_t egress_head_length(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < n && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* The line at p[*off..n) without its line end; *off moves past it. */
static int next_line(const char *p, size_t n, size_t *off, const char **line, size_t *len)
{
	const char *s = p + *off, *nl = memchr(s, '\n', n - *off);

	if (nl == NULL)
		return -1;
	*line = s;
	*len = (size_t)(nl - s);
	if (*len > 0 && s[*len - 1] == '\r')
		(*len)--;
	*off = (size_t)(nl + 1 - p);
	return 0;
}

static bool name_is(const char *name, size_t n, const char *what)
{
	return strlen(what) == n && strncasecmp(name, what, n) == 0;
}

struct span {
	const char *p;
	size_t n;
};

/* Whether name is one of the comma-separated tokens of the Connection
 * header values v[0..nv). */
static bool conn_listed(const struct span *v, size_t nv, const char *name, size_t n)
{
	for (size_t i = 0; i < nv; i++) {
		const char *s = v[i].p, *end = v[i].p + v[i].n;

		while (s < end) {
			const char *t, *comma = memchr(s, ',', (size_t)(end - s));
			const char *te = comma != NULL ? comma : end;

			while (s < te && (*s == ' ' || *s == '\t'))
				s++;
			t = te;
			while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
				t--;
			if ((size_t)(t - s) == n && strncasecmp(s, name, n) == 0)
				return true;
			s = te + (comma != NULL);
		}
	}
	return false;
}

static bool hop_by_hop(const char *name, size_t n)
{
	return name_is(name, n, "proxy-connection") || name_is(name, n, "proxy-authorization") ||
	       name_is(name, n, "connection") || name_is(name, n, "keep-alive") ||
	       name_is(name, n, "host");
}

/* The request's host and port from the authority s[0..n); a literal
 * address is c's first and only one to connect to. 0, or -1 with *why. */
static int destination(struct conn *c, const char *s, size_t n, int defport, const char **why)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;

	if (sw_hostport_parse(s, n, defport, c->host, &c->port, &c->family, &ss, &sslen,
				   why) == -1)
		return -1;
	if (c->family != 0) {
		c->addrs[0] = ss;
		c->addrlens[0] = sslen;
	}
	return 0;
}

/*
 * Parse the complete head p[0..n) into c's request fields. For plain HTTP
 * the head to send upstream goes to c->fwd: origin-form request line, Host
 * from the request target (RFC 9112 3.2.2), the client's headers minus the
 * hop-by-hop ones (Proxy-Connection, Proxy-Authorization, Connection,
 * Keep-Alive and those the Connection headers name), Connection: close.
 * 0, or -1 with *why.
 */
int egress_head_parse(struct conn *c, const char *p, size_t n, const char **why)
{
	const char *line, *sp, *target, *version, *name, *colon;
	size_t len, off = 0, hoff, mlen, tlen, nlen, nconn = 0;
	struct span conn[CONN_HEADERS_MAX];
	const char *auth, *path;
	size_t alen, plen;

	if (next_line(p, n, &off, &line, &len) == -1 || len == 0) {
		*why = "no request line";
		return -1;
	}
	if ((sp = memchr(line, ' ', len)) == NULL) {
		*why = "malformed request line";
		return -1;
	}
	mlen = (size_t)(sp - line);
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)line[i]))
			mlen = 0;
	if (mlen == 0 || mlen >= METHOD_MAX) {
		*why = "bad method";
		return -1;
	}
	target = sp + 1;
	if ((sp = memchr(target, ' ', len - mlen - 1)) == NULL || sp == target) {
		*why = "malformed request line";
		return -1;
	}
	tlen = (size_t)(sp - target);
	for (size_t i = 0; i < tlen; i++) {
		if (target[i] <= 0x20 || target[i] >= 0x7f) {
			*why = "bad character in request target";
			return -1;
		}
	}
	version = sp + 1;
	if ((size_t)(line + len - version) != 8 ||
	    (memcmp(version, "HTTP/1.1", 8) != 0 && memcmp(version, "HTTP/1.0", 8) != 0)) {
		*why = "not HTTP/1.0 or HTTP/1.1";
		return -1;
	}

	hoff = off;
	for (;;) {
		if (next_line(p, n, &off, &line, &len) == -1) {
			*why = "truncated head";
			return -1;
		}
		if (len == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t') {
			*why = "folded header line";
			return -1;
		}
		if ((colon = memchr(line, ':', len)) == NULL || colon == line) {
			*why = "malformed header line";
			return -1;
		}
		for (const char *q = line; q < colon; q++) {
			if (!is_tchar((unsigned char)*q)) {
				*why = "bad header name";
				return -1;
			}
		}
		for (const char *q = colon + 1; q < line + len; q++) {
			unsigned char ch = (unsigned char)*q;

			if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
				*why = "control character in header value";
				return -1;
			}
		}
		if (name_is(line, (size_t)(colon - line), "connection")) {
			if (nconn == CONN_HEADERS_MAX) {
				*why = "too many Connection headers";
				return -1;
			}
			conn[nconn].p = colon + 1;
			conn[nconn++].n = (size_t)(line + len - colon - 1);
		}
	}

	memcpy(c->method, p, mlen);
	c->method[mlen] = '\0';
	if (strcmp(c->method, "CONNECT") == 0) {
		c->tunnel = true;
		if (destination(c, target, tlen, 0, why) == -1)
			goto fail;
		return 0;
	}
	if (tlen >= 8 && strncasecmp(target, "https://", 8) == 0) {
		*why = "https:// through a proxy: use CONNECT (https_proxy)";
		goto fail;
	}
	if (tlen < 7 || strncasecmp(target, "http://", 7) != 0) {
		*why = target[0] == '/' ? "origin-form request: a proxy needs http://host/path"
					: "unsupported request target";
		goto fail;
	}
	auth = target + 7;
	for (alen = 0; alen < tlen - 7; alen++)
		if (auth[alen] == '/' || auth[alen] == '?' || auth[alen] == '#')
			break;
	if (memchr(auth, '@', alen) != NULL) {
		*why = "user information in the request target";
		goto fail;
	}
	if (destination(c, auth, alen, 80, why) == -1)
		goto fail;
	path = auth + alen;
	plen = tlen - 7 - alen;
	if ((sp = memchr(path, '#', plen)) != NULL)
		plen = (size_t)(sp - path);
	if ((c->fwd = evbuffer_new()) == NULL) {
		*why = "out of memory";
		goto fail;
	}
	if (evbuffer_add_printf(c->fwd, "%s %s%.*s %.8s\r\nHost: %s", c->method,
				plen == 0 || path[0] != '/' ? "/" : "", (int)plen, path, version,
				c->host) == -1 ||
	    (c->port != 80 && evbuffer_add_printf(c->fwd, ":%d", c->port) == -1) ||
	    evbuffer_add(c->fwd, "\r\n", 2) == -1)
		goto nomem;
	off = hoff;
	while (next_line(p, n, &off, &line, &len) == 0 && len > 0) {
		name = line;
		nlen = (size_t)((const char *)memchr(line, ':', len) - line);
		if (hop_by_hop(name, nlen) || conn_listed(conn, nconn, name, nlen))
			continue;
		if (evbuffer_add(c->fwd, line, len) == -1 || evbuffer_add(c->fwd, "\r\n", 2) == -1)
			goto nomem;
	}
	if (evbuffer_add(c->fwd, "Connection: close\r\n\r\n", 21) == -1)
		goto nomem;
	return 0;
nomem:
	*why = "out of memory";
fail:
	if (c->fwd != NULL)
		evbuffer_free(c->fwd);
	c->fwd = NULL;
	c->method[0] = c->host[0] = '\0';
	c->port = c->family = 0;
	c->tunnel = false;
	return -1;
}
