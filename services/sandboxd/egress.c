/*
 * egress.c: the egress proxy of one egress_only sandbox (docs/SANDBOX.md,
 * "egress_only").
 *
 * The listening socket lives in the sandbox's network namespace; the
 * sockets towards destinations are made here, in sandboxd's. One struct
 * conn per accepted connection, driven by bufferevents on the loop:
 *
 *   HEAD        the request head is read: at most SBD_EGRESS_HEAD_MAX bytes
 *               (the read high watermark), within head_timeout_ms
 *   RESOLVING   a listed name is looked up with evdns_getaddrinfo
 *   CONNECTING  non-blocking connect to each acceptable address in turn;
 *               one deadline (connect_timeout_ms) covers lookup and connect
 *   RELAY       bytes both ways; at most RELAY_MAX bytes wait towards either
 *               side (the other side's reading stops until they drain); EOF
 *               from one side is passed on as a shutdown(SHUT_WR) of the
 *               other once what it sent is delivered; idle_timeout_ms
 *               without traffic ends it
 *   CLOSING     a response of ours (4xx/5xx) is written, the write side
 *               shut, and the client's bytes read and dropped until its
 *               EOF or LINGER_MS: closing with unread input would reset the
 *               connection and could destroy the response before it is read
 *
 * The callback gets exactly one decision per accepted connection: when the
 * head cannot be used, when the destination is refused, when no connection
 * to it could be made, or -- "allowed" -- when the connection to it is up,
 * before the 200 or the forwarded request: before any byte reaches it.
 * `allowed` is true exactly when the reason is "allowed" (a tunnel or a
 * forwarded request exists).
 *
 * Nothing here blocks, logs or prints.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "sandboxd.h"

#define HOST_MAX 260 /* canonical host, brackets and NUL included */
#define METHOD_MAX 32
#define ADDRS_MAX 8			  /* addresses of one name tried in turn */
#define CONN_HEADERS_MAX 16		  /* Connection header lines in one request */
#define RELAY_MAX (64u << 10)		  /* bytes waiting towards one side */
#define LINGER_MS 2000			  /* CLOSING: how long the client may take */
#define ACCEPT_RETRY_MS 100		  /* after accept failed (EMFILE, ...) */
#define REFUSING_MAX SBD_EGRESS_CONNS_MAX /* 503s in flight; beyond: closed */
#define HEAD_TIMEOUT_DEFAULT 10000
#define CONNECT_TIMEOUT_DEFAULT 10000
#define IDLE_TIMEOUT_DEFAULT 300000

static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";

enum state { ST_HEAD, ST_RESOLVING, ST_CONNECTING, ST_RELAY, ST_CLOSING };

struct allow {
	char host[HOST_MAX]; /* canonical: lower case, IPv6 as [inet_ntop] */
	int port;
};

struct conn;

/* The argument of one lookup: it outlives a cancelled lookup, whose
 * callback evdns runs later (c is then NULL). */
struct dnsq {
	struct conn *c;
	struct evdns_getaddrinfo_request *req;
};

struct side {
	struct bufferevent *bev;
	bool eof;	   /* it sent EOF */
	bool shut_pending; /* shut its write side once its output drains */
	bool shut;	   /* its write side is shut */
};

struct conn {
	TAILQ_ENTRY(conn) entry;
	struct sbd_egress *e;
	enum state st;
	bool refusing; /* over the cap: answers 503 */
	bool decided;
	struct side cli, up;
	struct event *timer; /* the deadline of the state */
	struct dnsq *dns;    /* RESOLVING */
	bool in_gai;	     /* inside evdns_getaddrinfo: its answer waits */
	bool gai_done;
	int gai_err;
	struct evutil_addrinfo *gai_res;

	/* the request */
	char method[METHOD_MAX]; /* "" until the head parsed */
	char host[HOST_MAX];
	int port;
	int family; /* 0: a name; AF_INET or AF_INET6: a literal */
	bool tunnel;
	struct evbuffer *fwd; /* plain HTTP: the head to send */

	struct sockaddr_storage addrs[ADDRS_MAX];
	socklen_t addrlens[ADDRS_MAX];
	size_t naddrs, next;
	char address[INET6_ADDRSTRLEN]; /* being connected to, or refused */
	struct timeval last;		/* RELAY: last traffic */
};
TAILQ_HEAD(connq, conn);

struct sbd_egress {
	struct event_base *base;
	struct evconnlistener *lis;
	struct event *retry; /* re-enables the listener after an accept error */
	struct sbd_egress_config cfg;
	sbd_egress_cb cb; /* NULL once sbd_egress_free began */
	void *arg;
	struct allow *allow;
	size_t nallow;
	struct connq conns;
	size_t nconns;	  /* every connection held */
	size_t nrefusing; /* of which answering 503 */
	uint64_t decisions;
};

static void conn_free(struct conn *c);
static void refuse(struct conn *c, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- hosts, ports and addresses ----------------------------------------- */

static bool is_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int parse_port(const char *s, size_t n)
{
	int v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v >= 1 && v <= 65535 ? v : -1;
}

/*
 * Parse the authority s[0..n): "host:port", or "host" with defport > 0.
 * host is a name, an IPv4 literal (dotted quad) or an [IPv6] literal (no
 * zone). Fills host with the canonical spelling (lower case, no trailing
 * dot; IPv6 as "[" inet_ntop "]"), *port, *family (0 for a name) and, for
 * a literal, *ss and *sslen with the port set. 0, or -1 with *why.
 */
static int parse_authority(const char *s, size_t n, int defport, char *host, int *port,
			   int *family, struct sockaddr_storage *ss, socklen_t *sslen,
			   const char **why)
{
	const char *h = s, *p = NULL;
	size_t hn = n, pn = 0;
	bool v6 = false, numeric = true;

	if (n == 0) {
		*why = "empty";
		return -1;
	}
	if (s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		if (rb == NULL) {
			*why = "unterminated [";
			return -1;
		}
		h = s + 1;
		hn = (size_t)(rb - h);
		if (rb + 1 < s + n) {
			if (rb[1] != ':') {
				*why = "junk after ]";
				return -1;
			}
			p = rb + 2;
			pn = (size_t)(s + n - p);
		}
		v6 = true;
	} else {
		const char *colon = memrchr(s, ':', n);

		if (colon != NULL) {
			hn = (size_t)(colon - s);
			p = colon + 1;
			pn = n - hn - 1;
		}
		if (memchr(h, ':', hn) != NULL) {
			*why = "an IPv6 address needs [brackets]";
			return -1;
		}
	}
	if (p == NULL) {
		if (defport <= 0) {
			*why = "no port";
			return -1;
		}
		*port = defport;
	} else if ((*port = parse_port(p, pn)) < 0) {
		*why = "bad port (want 1-65535)";
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		char tmp[INET6_ADDRSTRLEN];

		if (hn == 0 || hn >= sizeof(tmp)) {
			*why = "bad IPv6 address";
			return -1;
		}
		memcpy(tmp, h, hn);
		tmp[hn] = '\0';
		if (inet_pton(AF_INET6, tmp, &sin6->sin6_addr) != 1) {
			*why = "bad IPv6 address";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)*port);
		*sslen = sizeof(*sin6);
		*family = AF_INET6;
		inet_ntop(AF_INET6, &sin6->sin6_addr, tmp, sizeof(tmp));
		snprintf(host, HOST_MAX, "[%s]", tmp);
		return 0;
	}
	if (hn > 0 && h[hn - 1] == '.')
		hn--;
	if (hn == 0 || hn > 253) {
		*why = hn == 0 ? "no host" : "host name too long";
		return -1;
	}
	for (size_t i = 0, label = 0; i < hn; i++) {
		char ch = h[i];

		if (ch == '.') {
			if (label == 0) {
				*why = "empty label in host name";
				return -1;
			}
			label = 0;
			host[i] = '.';
			continue;
		}
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_')) {
			*why = "bad character in host name";
			return -1;
		}
		if (++label > 63) {
			*why = "host name label too long";
			return -1;
		}
		if (ch < '0' || ch > '9')
			numeric = false;
		host[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
	}
	host[hn] = '\0';
	*family = 0;
	if (numeric) {
		/* digits and dots: a dotted quad or nothing (no "127.1" or
		 * "2130706433", which resolvers read differently) */
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			*why = "bad IPv4 address";
			return -1;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)*port);
		*sslen = sizeof(*sin);
		*family = AF_INET;
	}
	return 0;
}

static bool v4_refused(const uint8_t *a)
{
	static const struct {
		uint32_t net, mask;
	} nets[] = {
	    {0x00000000, 0xff000000}, /* 0/8: this network, unspecified */
	    {0x0a000000, 0xff000000}, /* 10/8 */
	    {0x64400000, 0xffc00000}, /* 100.64/10: CGNAT */
	    {0x7f000000, 0xff000000}, /* 127/8: loopback */
	    {0xa9fe0000, 0xffff0000}, /* 169.254/16: link-local, metadata */
	    {0xac100000, 0xfff00000}, /* 172.16/12 */
	    {0xc0000000, 0xffffff00}, /* 192.0.0/24: IETF protocol assignments */
	    {0xc0a80000, 0xffff0000}, /* 192.168/16 */
	    {0xc6120000, 0xfffe0000}, /* 198.18/15: benchmarking */
	    {0xe0000000, 0xf0000000}, /* 224/4: multicast */
	    {0xf0000000, 0xf0000000}, /* 240/4: reserved, broadcast */
	};
	uint32_t x = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];

	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++)
		if ((x & nets[i].mask) == nets[i].net)
			return true;
	return false;
}

/* Whether sa is an address a tenant may not reach unless allow_private:
 * loopback, unspecified, private, CGNAT, link-local, ULA, site-local,
 * multicast, reserved, and IPv6 forms embedding such an IPv4 address
 * (mapped, compatible, NAT64 64:ff9b::/96, 6to4 2002::/16). */
static bool addr_refused(const struct sockaddr *sa)
{
	static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t zero[12];
	const uint8_t *a;

	if (sa->sa_family == AF_INET)
		return v4_refused((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
	if (sa->sa_family != AF_INET6)
		return true;
	a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return v4_refused(a + 12);
	if (a[0] == 0x20 && a[1] == 0x02)
		return v4_refused(a + 2);
	if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4] == 0 && a[5] == 1)
		return true;			  /* 64:ff9b:1::/48, local NAT64 */
	return (a[0] & 0xfe) == 0xfc ||		  /* fc00::/7: ULA */
	       (a[0] == 0xfe && (a[1] & 0x80)) || /* fe80::/10, fec0::/10 */
	       a[0] == 0xff;			  /* multicast */
}

static void addr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
	const void *a = sa->sa_family == AF_INET
			    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
			    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;

	if (inet_ntop(sa->sa_family, a, out, (socklen_t)outlen) == NULL)
		snprintf(out, outlen, "?");
}

/* ---- the request head ---------------------------------------------------- */

/* Length of the head at the start of p[0..n), through the empty line that
 * ends it (LF or CRLF line ends), or 0 while it is incomplete. */
static size_t head_length(const char *p, size_t n)
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

/*
 * Parse the complete head p[0..n) into c's request fields. For plain HTTP
 * the head to send upstream goes to c->fwd: origin-form request line, Host
 * from the request target (RFC 9112 3.2.2), the client's headers minus the
 * hop-by-hop ones (Proxy-Connection, Proxy-Authorization, Connection,
 * Keep-Alive and those the Connection headers name), Connection: close.
 * 0, or -1 with *why.
 */
static int parse_head(struct conn *c, const char *p, size_t n, const char **why)
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
		struct sockaddr_storage ss;
		socklen_t sslen = 0;

		c->tunnel = true;
		if (parse_authority(target, tlen, 0, c->host, &c->port, &c->family, &ss, &sslen,
				    why) == -1)
			goto fail;
		if (c->family != 0) {
			c->addrs[0] = ss;
			c->addrlens[0] = sslen;
		}
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
	{
		struct sockaddr_storage ss;
		socklen_t sslen = 0;

		if (parse_authority(auth, alen, 80, c->host, &c->port, &c->family, &ss, &sslen,
				    why) == -1)
			goto fail;
		if (c->family != 0) {
			c->addrs[0] = ss;
			c->addrlens[0] = sslen;
		}
	}
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

/* ---- decisions and responses ---------------------------------------------- */

static void emit(struct sbd_egress *e, const char *method, const char *host, int port,
		 const char *address, bool allowed, const char *reason)
{
	struct sbd_egress_decision d;

	e->decisions++;
	if (e->cb == NULL)
		return;
	d.method = method;
	d.host = host;
	d.port = port;
	d.address = address;
	d.allowed = allowed;
	d.reason = reason;
	e->cb(e->arg, &d);
}

static void decide(struct conn *c, bool allowed, const char *reason)
{
	if (c->decided)
		return;
	c->decided = true;
	emit(c->e, c->method, c->host, c->port, c->address, allowed, reason);
}

static const char *status_text(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	}
	return "Internal Server Error";
}

static void arm(struct conn *c, uint32_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(c->timer, &tv);
}

static void drop_upstream(struct conn *c)
{
	if (c->dns != NULL) {
		c->dns->c = NULL;
		evdns_getaddrinfo_cancel(c->dns->req);
		c->dns = NULL;
	}
	if (c->up.bev != NULL)
		bufferevent_free(c->up.bev);
	c->up.bev = NULL;
	if (c->fwd != NULL)
		evbuffer_free(c->fwd);
	c->fwd = NULL;
}

static void closing_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void closing_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (!c->cli.shut) {
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		c->cli.shut = true;
	}
	if (c->cli.eof)
		conn_free(c);
}

static void closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		c->cli.eof = true; /* the response still goes out */
		return;
	}
	conn_free(c);
}

/* Decide (when not yet), answer status with a text body and close. */
static void refuse(struct conn *c, int status, const char *reason, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->cli.bev);
	char body[512];
	va_list ap;

	decide(c, false, reason);
	drop_upstream(c);
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body) - 1, fmt, ap);
	va_end(ap);
	strcat(body, "\n");
	evbuffer_add_printf(
	    out,
	    "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\nsagewai egress proxy: %s",
	    status, status_text(status), strlen(body) + 22, body);
	c->st = ST_CLOSING;
	bufferevent_setcb(c->cli.bev, closing_read_cb, closing_write_cb, closing_event_cb, c);
	bufferevent_setwatermark(c->cli.bev, EV_READ | EV_WRITE, 0, 0);
	bufferevent_enable(c->cli.bev, c->cli.eof ? EV_WRITE : EV_READ | EV_WRITE);
	arm(c, LINGER_MS);
}

/* ---- relaying ------------------------------------------------------------- */

static struct side *side_of(struct conn *c, struct bufferevent *bev)
{
	return bev == c->cli.bev ? &c->cli : &c->up;
}

static struct side *other(struct conn *c, struct side *s)
{
	return s == &c->cli ? &c->up : &c->cli;
}

static void touch(struct conn *c)
{
	event_base_gettimeofday_cached(c->e->base, &c->last);
}

static void shut_if_drained(struct side *s)
{
	if (s->shut_pending && evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
		shutdown(bufferevent_getfd(s->bev), SHUT_WR);
		s->shut_pending = false;
		s->shut = true;
	}
}

/* 1 when both sides sent EOF and got everything: c is freed. */
static int relay_done(struct conn *c)
{
	if (c->cli.eof && c->up.eof && c->cli.shut && c->up.shut) {
		conn_free(c);
		return 1;
	}
	return 0;
}

static void relay_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct side *s = side_of(c, bev), *o = other(c, s);
	struct evbuffer *out = bufferevent_get_output(o->bev);

	touch(c);
	evbuffer_add_buffer(out, bufferevent_get_input(bev));
	if (evbuffer_get_length(out) >= RELAY_MAX)
		bufferevent_disable(bev, EV_READ);
}

/* bev's output drained below the low watermark (RELAY_MAX / 2). */
static void relay_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct side *s = side_of(c, bev), *o = other(c, s);

	touch(c);
	if (!o->eof)
		bufferevent_enable(o->bev, EV_READ);
	shut_if_drained(s);
	relay_done(c);
}

static void relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	struct side *s = side_of(c, bev), *o = other(c, s);

	if (!(what & BEV_EVENT_EOF) || (what & BEV_EVENT_ERROR)) {
		conn_free(c);
		return;
	}
	s->eof = true;
	evbuffer_add_buffer(bufferevent_get_output(o->bev), bufferevent_get_input(bev));
	o->shut_pending = !o->shut;
	shut_if_drained(o);
	relay_done(c);
}

static void nodelay(struct bufferevent *bev)
{
	int one = 1;

	setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The destination accepted: decide, then the 200 or the forwarded head,
 * then whatever the client sent after its head, then relay. */
static void connected(struct conn *c)
{
	struct evbuffer *upout = bufferevent_get_output(c->up.bev);
	struct bufferevent *b[2] = {c->cli.bev, c->up.bev};
	int rc = 0;

	evtimer_del(c->timer);
	decide(c, true, "allowed");
	c->st = ST_RELAY;
	if (c->tunnel)
		rc = bufferevent_write(c->cli.bev, established, sizeof(established) - 1);
	else
		rc = evbuffer_add_buffer(upout, c->fwd);
	if (rc == -1 || evbuffer_add_buffer(upout, bufferevent_get_input(c->cli.bev)) == -1) {
		conn_free(c);
		return;
	}
	if (c->fwd != NULL)
		evbuffer_free(c->fwd);
	c->fwd = NULL;
	for (int i = 0; i < 2; i++) {
		nodelay(b[i]);
		bufferevent_setcb(b[i], relay_read_cb, relay_write_cb, relay_event_cb, c);
		bufferevent_setwatermark(b[i], EV_READ, 0, 0);
		bufferevent_setwatermark(b[i], EV_WRITE, RELAY_MAX / 2, 0);
		bufferevent_enable(b[i], EV_READ | EV_WRITE);
	}
	touch(c);
	arm(c, c->e->cfg.idle_timeout_ms);
}

static void connect_next(struct conn *c);

static void up_connect_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		connected(c);
		return;
	}
	bufferevent_free(c->up.bev);
	c->up.bev = NULL;
	connect_next(c);
}

/* Try the next address; none left: 502. Callbacks are set only after
 * bufferevent_socket_connect returned 0, since it may call the event
 * callback from inside when the connect fails at once. */
static void connect_next(struct conn *c)
{
	c->st = ST_CONNECTING;
	while (c->next < c->naddrs) {
		const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[c->next];
		socklen_t len = c->addrlens[c->next++];
		struct bufferevent *bev;
		int fd;

		addr_text(sa, c->address, sizeof(c->address));
		fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1)
			continue;
		if ((bev = bufferevent_socket_new(c->e->base, fd, BEV_OPT_CLOSE_ON_FREE)) ==
		    NULL) {
			close(fd);
			continue;
		}
		if (bufferevent_socket_connect(bev, (struct sockaddr *)sa, (int)len) != 0) {
			bufferevent_free(bev);
			continue;
		}
		c->up.bev = bev;
		bufferevent_setcb(bev, NULL, NULL, up_connect_cb, c);
		return;
	}
	refuse(c, 502, "connect_failed", "cannot connect to %s:%d (%s)", c->host, c->port,
	       c->address);
}

/* Keep the acceptable addresses of res (freed here), in order. */
static void resolved(struct conn *c, int err, struct evutil_addrinfo *res)
{
	char refused[INET6_ADDRSTRLEN] = "";

	if (err != 0) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		refuse(c, 502, "resolve_failed", "cannot resolve %s: %s", c->host,
		       evutil_gai_strerror(err));
		return;
	}
	for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		struct sockaddr_storage *ss = &c->addrs[c->naddrs];

		if (c->naddrs == ADDRS_MAX)
			break;
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > (socklen_t)sizeof(*ss))
			continue;
		if (!c->e->cfg.allow_private && addr_refused(ai->ai_addr)) {
			if (refused[0] == '\0')
				addr_text(ai->ai_addr, refused, sizeof(refused));
			continue;
		}
		memcpy(ss, ai->ai_addr, ai->ai_addrlen);
		if (ai->ai_family == AF_INET)
			((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)c->port);
		else
			((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)c->port);
		c->addrlens[c->naddrs++] = ai->ai_addrlen;
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	if (c->naddrs > 0) {
		connect_next(c);
	} else if (refused[0] != '\0') {
		memcpy(c->address, refused, sizeof(refused));
		refuse(c, 403, "private_address",
		       "egress to %s:%d refused: private_address (%s is not a public address)",
		       c->host, c->port, refused);
	} else {
		refuse(c, 502, "resolve_failed", "cannot resolve %s: no address", c->host);
	}
}

static void gai_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct dnsq *q = arg;
	struct conn *c = q->c;

	free(q);
	if (c == NULL) { /* cancelled */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	c->dns = NULL;
	if (c->in_gai) { /* answered from inside evdns_getaddrinfo */
		c->gai_done = true;
		c->gai_err = err;
		c->gai_res = res;
		return;
	}
	resolved(c, err, res);
}

static bool listed(const struct sbd_egress *e, const char *host, int port)
{
	for (size_t i = 0; i < e->nallow; i++)
		if (e->allow[i].port == port && strcmp(e->allow[i].host, host) == 0)
			return true;
	return false;
}

/* The head is parsed: the allow-list, then the address. */
static void route(struct conn *c)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct dnsq *q;

	if (!listed(c->e, c->host, c->port)) {
		refuse(c, 403, "not_listed",
		       "egress to %s:%d refused: not_listed (not in this sandbox's allow-list)",
		       c->host, c->port);
		return;
	}
	arm(c, c->e->cfg.connect_timeout_ms);
	if (c->family != 0) {
		const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[0];

		addr_text(sa, c->address, sizeof(c->address));
		if (!c->e->cfg.allow_private && addr_refused(sa)) {
			refuse(c, 403, "private_address",
			       "egress to %s:%d refused: private_address (not a public address)",
			       c->host, c->port);
			return;
		}
		c->naddrs = 1;
		connect_next(c);
		return;
	}
	if (c->e->cfg.dns == NULL || (q = calloc(1, sizeof(*q))) == NULL) {
		refuse(c, 502, "resolve_failed", "cannot resolve %s: %s", c->host,
		       c->e->cfg.dns == NULL ? "no resolver" : "out of memory");
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	q->c = c;
	c->dns = q;
	c->st = ST_RESOLVING;
	c->in_gai = true;
	req = evdns_getaddrinfo(c->e->cfg.dns, c->host, NULL, &hints, gai_cb, q);
	c->in_gai = false;
	if (c->gai_done) { /* answered at once (hosts file, error): q is gone */
		resolved(c, c->gai_err, c->gai_res);
		return;
	}
	if (req == NULL) { /* no answer and no request: evdns never does this */
		free(q);
		c->dns = NULL;
		refuse(c, 502, "resolve_failed", "cannot resolve %s", c->host);
		return;
	}
	q->req = req;
}

/* ---- the head ------------------------------------------------------------- */

static void head_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), n, hl;
	const char *p, *why = "";

	n = len < SBD_EGRESS_HEAD_MAX ? len : SBD_EGRESS_HEAD_MAX;
	if (n == 0)
		return;
	if ((p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n)) == NULL) {
		refuse(c, 500, "internal", "out of memory");
		return;
	}
	if ((hl = head_length(p, n)) == 0) {
		if (len >= SBD_EGRESS_HEAD_MAX)
			refuse(c, 431, "head_too_large", "the request head exceeds %d bytes",
			       SBD_EGRESS_HEAD_MAX);
		return;
	}
	bufferevent_disable(bev, EV_READ);
	bufferevent_setwatermark(bev, EV_READ, 0, 0);
	if (parse_head(c, p, hl, &why) == -1) {
		refuse(c, 400, "bad_request", "bad request: %s", why);
		return;
	}
	evbuffer_drain(in, hl);
	route(c);
}

/* The client went away before a decision, or failed. */
static void early_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	(void)what;
	decide(c, false, "client_closed");
	conn_free(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct timeval now, d;
	uint64_t idle_ms;

	(void)fd;
	(void)what;
	switch (c->st) {
	case ST_HEAD:
		refuse(c, 408, "timeout", "no complete request head within %u ms",
		       c->e->cfg.head_timeout_ms);
		break;
	case ST_RESOLVING:
		refuse(c, 504, "resolve_timeout", "no address for %s within %u ms", c->host,
		       c->e->cfg.connect_timeout_ms);
		break;
	case ST_CONNECTING:
		refuse(c, 504, "connect_timeout", "no connection to %s:%d (%s) within %u ms",
		       c->host, c->port, c->address, c->e->cfg.connect_timeout_ms);
		break;
	case ST_RELAY:
		event_base_gettimeofday_cached(c->e->base, &now);
		evutil_timersub(&now, &c->last, &d);
		idle_ms =
		    d.tv_sec < 0 ? 0 : (uint64_t)d.tv_sec * 1000 + (uint64_t)d.tv_usec / 1000;
		if (idle_ms >= c->e->cfg.idle_timeout_ms)
			conn_free(c);
		else
			arm(c, c->e->cfg.idle_timeout_ms - (uint32_t)idle_ms);
		break;
	case ST_CLOSING:
		conn_free(c);
		break;
	}
}

/* ---- connections and the listener ------------------------------------------ */

static void conn_free(struct conn *c)
{
	struct sbd_egress *e = c->e;

	drop_upstream(c);
	if (c->cli.bev != NULL)
		bufferevent_free(c->cli.bev);
	if (c->timer != NULL)
		event_free(c->timer);
	TAILQ_REMOVE(&e->conns, c, entry);
	e->nconns--;
	if (c->refusing)
		e->nrefusing--;
	free(c);
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct sbd_egress *e = arg;
	bool over = e->nconns - e->nrefusing >= SBD_EGRESS_CONNS_MAX;
	struct conn *c;

	(void)lis;
	(void)sa;
	(void)salen;
	if (over && e->nrefusing >= REFUSING_MAX) {
		close(fd);
		emit(e, "", "", 0, "", false, "too_many_connections");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->cli.bev = bufferevent_socket_new(e->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL ||
	    (c->timer = evtimer_new(e->base, timer_cb, c)) == NULL) {
		if (c != NULL && c->cli.bev != NULL)
			bufferevent_free(c->cli.bev);
		else
			close(fd);
		free(c);
		emit(e, "", "", 0, "", false, "internal");
		return;
	}
	c->e = e;
	TAILQ_INSERT_TAIL(&e->conns, c, entry);
	e->nconns++;
	if (over) {
		c->refusing = true;
		e->nrefusing++;
		refuse(c, 503, "too_many_connections",
		       "more than %d connections open through this sandbox's proxy",
		       SBD_EGRESS_CONNS_MAX);
		return;
	}
	c->st = ST_HEAD;
	bufferevent_setcb(c->cli.bev, head_read_cb, NULL, early_event_cb, c);
	bufferevent_setwatermark(c->cli.bev, EV_READ, 0, SBD_EGRESS_HEAD_MAX);
	bufferevent_enable(c->cli.bev, EV_READ);
	arm(c, e->cfg.head_timeout_ms);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_egress *e = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(e->lis);
}

/* accept failed (out of descriptors, ...): a readable listener would spin,
 * so pause it briefly. */
static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
	struct sbd_egress *e = arg;
	struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

	evconnlistener_disable(lis);
	evtimer_add(e->retry, &tv);
}

struct sbd_egress *sbd_egress_new(struct event_base *base, int listen_fd,
				  const struct sbd_egress_config *cfg, sbd_egress_cb cb, void *arg,
				  char *errstr, size_t errlen)
{
	struct sbd_egress *e = NULL;
	int v = 0, type = 0;
	socklen_t len = sizeof(v);

	if (base == NULL || listen_fd < 0) {
		snprintf(errstr, errlen, "egress: no event base or listening socket");
		goto fail;
	}
	if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == -1 || v == 0 ||
	    (len = sizeof(type), getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &type, &len)) == -1 ||
	    type != SOCK_STREAM) {
		snprintf(errstr, errlen, "egress: fd %d is not a listening stream socket",
			 listen_fd);
		goto fail;
	}
	if (evutil_make_socket_nonblocking(listen_fd) == -1 ||
	    evutil_make_socket_closeonexec(listen_fd) == -1) {
		snprintf(errstr, errlen, "egress: listening socket: %s", strerror(errno));
		goto fail;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		snprintf(errstr, errlen, "egress: out of memory");
		goto fail;
	}
	e->base = base;
	if (cfg != NULL)
		e->cfg = *cfg;
	if (e->cfg.head_timeout_ms == 0)
		e->cfg.head_timeout_ms = HEAD_TIMEOUT_DEFAULT;
	if (e->cfg.connect_timeout_ms == 0)
		e->cfg.connect_timeout_ms = CONNECT_TIMEOUT_DEFAULT;
	if (e->cfg.idle_timeout_ms == 0)
		e->cfg.idle_timeout_ms = IDLE_TIMEOUT_DEFAULT;
	e->cb = cb;
	e->arg = arg;
	TAILQ_INIT(&e->conns);
	if ((e->retry = evtimer_new(base, accept_retry_cb, e)) == NULL) {
		snprintf(errstr, errlen, "egress: out of memory");
		goto fail;
	}
	/* backlog 0: the socket is listening already */
	e->lis = evconnlistener_new(base, accept_cb, e,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
	if (e->lis == NULL) {
		snprintf(errstr, errlen, "egress: cannot listen: %s", strerror(errno));
		goto fail;
	}
	evconnlistener_set_error_cb(e->lis, accept_error_cb);
	return e;
fail:
	if (e != NULL && e->retry != NULL)
		event_free(e->retry);
	free(e);
	if (listen_fd >= 0)
		close(listen_fd);
	return NULL;
}

int sbd_egress_allow(struct sbd_egress *e, const char *const *hostports, size_t n, char *errstr,
		     size_t errlen)
{
	struct allow *list = NULL;

	if (n > 0 && (hostports == NULL || (list = calloc(n, sizeof(*list))) == NULL)) {
		snprintf(errstr, errlen, "egress allow-list: %s",
			 hostports == NULL ? "no entries" : "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = hostports[i] != NULL ? hostports[i] : "", *why = "";
		struct sockaddr_storage ss;
		socklen_t sslen = 0;
		int family;

		if (parse_authority(s, strlen(s), 0, list[i].host, &list[i].port, &family, &ss,
				    &sslen, &why) == -1) {
			char shown[81];
			size_t k;

			for (k = 0; k + 1 < sizeof(shown) && s[k] != '\0'; k++)
				shown[k] = s[k] >= 0x20 && s[k] < 0x7f ? s[k] : '?';
			shown[k] = '\0';
			snprintf(errstr, errlen,
				 "egress allow-list entry '%s'%s: %s (want host:port)", shown,
				 s[k] != '\0' ? "..." : "", why);
			free(list);
			return -1;
		}
	}
	free(e->allow);
	e->allow = list;
	e->nallow = n;
	return 0;
}

size_t sbd_egress_open(const struct sbd_egress *e)
{
	return e->nconns;
}

/* Not from inside the callback: the connection that called it is still
 * being worked on when the callback returns. */
void sbd_egress_free(struct sbd_egress *e)
{
	if (e == NULL)
		return;
	e->cb = NULL;
	while (!TAILQ_EMPTY(&e->conns))
		conn_free(TAILQ_FIRST(&e->conns));
	evconnlistener_free(e->lis);
	event_free(e->retry);
	free(e->allow);
	free(e);
}
