/*
 * egress_test: the egress proxy (services/sandboxd/egress.c) in-process.
 *
 * One libevent loop runs the proxy, an upstream echo server and a tiny HTTP
 * server, all on 127.0.0.1. Clients are plain sockets; the test turns the
 * loop until what it waits for happened (a guard timer only stops a hang).
 * Names resolve through evdns from a hosts file the test writes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "sandboxd.h"
#include "sw_test.h"

#define GUARD_S 30

static const char established_[] = "HTTP/1.1 200 Connection established\r\n\r\n";

static struct event_base *base;
static struct evdns_base *dns;

/* ---- decisions ---- */

struct rec {
	char method[32], host[300], address[64], reason[64];
	int port;
	bool allowed;
};
static struct rec recs[512];
static size_t nrecs;

static void on_decision(void *arg, const struct sbd_egress_decision *d)
{
	struct rec *r;

	(void)arg;
	SW_CHECK(nrecs < sizeof(recs) / sizeof(recs[0]));
	SW_CHECK(d->method != NULL && d->host != NULL && d->address != NULL && d->reason != NULL);
	r = &recs[nrecs++];
	snprintf(r->method, sizeof(r->method), "%s", d->method);
	snprintf(r->host, sizeof(r->host), "%s", d->host);
	snprintf(r->address, sizeof(r->address), "%s", d->address);
	snprintf(r->reason, sizeof(r->reason), "%s", d->reason);
	r->port = d->port;
	r->allowed = d->allowed;
	SW_CHECK(r->allowed == (strcmp(r->reason, "allowed") == 0));
}

/* ---- running the loop ---- */

static bool stuck;

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	stuck = true;
}

#define RUN_UNTIL(cond)                                                                           \
	do {                                                                                      \
		struct timeval tv_ = {GUARD_S, 0};                                                \
		struct event *g_ = evtimer_new(base, guard_cb, NULL);                             \
		stuck = false;                                                                    \
		evtimer_add(g_, &tv_);                                                            \
		while (!(cond) && !stuck)                                                         \
			event_base_loop(base, EVLOOP_ONCE);                                       \
		event_free(g_);                                                                   \
		SW_CHECKF(!stuck, "waited %d s for: %s", GUARD_S, #cond);                         \
	} while (0)

/* Turn the loop a little (for "nothing else happens" checks). */
static void spin(int ms)
{
	struct timeval tv = {0, ms * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* ---- upstream servers ---- */

struct srv {
	struct evconnlistener *lis;
	int port;
	int accepts;
	int live; /* connections open */
	bool http;
	bool paused;		  /* echo: accepted connections do not read... */
	struct bufferevent *held; /* ...this one, until the test says */
	char head[4096];	  /* http: the last head received */
};
static struct srv echo_srv, http_srv;

static void srv_close(struct bufferevent *bev, struct srv *s)
{
	bufferevent_free(bev);
	s->live--;
}

static void srv_write_cb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		srv_close(bev, arg);
}

static void srv_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if ((what & BEV_EVENT_EOF) && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		bufferevent_setcb(bev, NULL, srv_write_cb, srv_event_cb, arg);
		return;
	}
	srv_close(bev, arg);
}

static void srv_read_cb(struct bufferevent *bev, void *arg)
{
	struct srv *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr end;
	static const char resp[] =
	    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

	if (!s->http) {
		bufferevent_write_buffer(bev, in);
		return;
	}
	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos < 0)
		return;
	SW_CHECK((size_t)end.pos + 4 < sizeof(s->head));
	evbuffer_remove(in, s->head, (size_t)end.pos + 4);
	s->head[end.pos + 4] = '\0';
	bufferevent_write(bev, resp, sizeof(resp) - 1);
	bufferevent_setcb(bev, NULL, srv_write_cb, srv_event_cb, s);
}

static void srv_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			  int salen, void *arg)
{
	struct srv *s = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

	(void)l;
	(void)sa;
	(void)salen;
	SW_CHECK(bev != NULL);
	s->accepts++;
	s->live++;
	bufferevent_setcb(bev, srv_read_cb, NULL, srv_event_cb, s);
	if (s->paused) {
		SW_CHECK(s->held == NULL);
		s->held = bev;
		return;
	}
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static int bound_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	SW_CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	return ntohs(sin.sin_port);
}

static int listen_local(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	SW_CHECK(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	SW_CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	SW_CHECK(listen(fd, 256) == 0);
	return fd;
}

static void srv_start(struct srv *s, bool http)
{
	int fd = listen_local();

	s->http = http;
	s->port = bound_port(fd);
	SW_CHECK(evutil_make_socket_nonblocking(fd) == 0);
	s->lis = evconnlistener_new(base, srv_accept_cb, s, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	SW_CHECK(s->lis != NULL);
}

/* A port nothing listens on (bound, then closed). */
static int dead_port(void)
{
	int fd = listen_local(), port = bound_port(fd);

	close(fd);
	return port;
}

/* ---- the proxy ---- */

static int proxy_port;

static struct sbd_egress *proxy(const struct sbd_egress_config *cfg, const char *const *allow,
				size_t n)
{
	struct sbd_egress_config c = *cfg;
	struct sbd_egress *e;
	char err[256];
	int fd = listen_local();

	proxy_port = bound_port(fd);
	c.dns = dns;
	e = sbd_egress_new(base, fd, &c, on_decision, NULL, err, sizeof(err));
	SW_CHECKF(e != NULL, "%s", err);
	SW_CHECKF(sbd_egress_allow(e, allow, n, err, sizeof(err)) == 0, "%s", err);
	return e;
}

/* ---- clients ---- */

struct client {
	int fd;
	struct event *ev;
	struct evbuffer *in;
	bool eof;
};

static void cl_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	char buf[16384];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf));
	if (n > 0) {
		evbuffer_add(cl->in, buf, (size_t)n);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		cl->eof = true;
		event_del(cl->ev);
	}
}

static void cl_send(struct client *cl, const char *data, size_t n)
{
	while (n > 0) {
		ssize_t w = write(cl->fd, data, n);

		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			spin(1);
			continue;
		}
		SW_CHECKF(w > 0, "write: %s", strerror(errno));
		data += w;
		n -= (size_t)w;
	}
}

static struct client *cl_open(int port, const char *req)
{
	struct client *cl = calloc(1, sizeof(*cl));
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	SW_CHECK(cl != NULL);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	SW_CHECK(cl->fd >= 0);
	SW_CHECKF(connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "connect: %s",
		  strerror(errno));
	SW_CHECK(fcntl(cl->fd, F_SETFL, O_NONBLOCK) == 0);
	cl->in = evbuffer_new();
	cl->ev = event_new(base, cl->fd, EV_READ | EV_PERSIST, cl_read_cb, cl);
	SW_CHECK(cl->in != NULL && cl->ev != NULL);
	event_add(cl->ev, NULL);
	if (req != NULL)
		cl_send(cl, req, strlen(req));
	return cl;
}

static void cl_close(struct client *cl)
{
	event_free(cl->ev);
	close(cl->fd);
	evbuffer_free(cl->in);
	free(cl);
}

static bool cl_has(struct client *cl, const char *s)
{
	return evbuffer_search(cl->in, s, strlen(s), NULL).pos >= 0;
}

/* What the client received, NUL-terminated (static). */
static const char *cl_text(struct client *cl)
{
	static char text[70000];
	size_t n = evbuffer_get_length(cl->in);

	if (n >= sizeof(text))
		n = sizeof(text) - 1;
	evbuffer_copyout(cl->in, text, n);
	text[n] = '\0';
	return text;
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Send req, wait for the whole answer (EOF) and the decision. */
static const char *exchange(const char *req, size_t nrecs_before)
{
	struct client *cl = cl_open(proxy_port, req);
	static char text[70000];

	RUN_UNTIL(cl->eof && nrecs > nrecs_before);
	snprintf(text, sizeof(text), "%s", cl_text(cl));
	cl_close(cl);
	return text;
}

static const struct rec *last(void)
{
	SW_CHECK(nrecs > 0);
	return &recs[nrecs - 1];
}

static void check_rec(const struct rec *r, const char *method, const char *host, int port,
		      const char *address, const char *reason)
{
	SW_CHECKF(strcmp(r->method, method) == 0 && strcmp(r->host, host) == 0 &&
		      r->port == port && strcmp(r->address, address) == 0 &&
		      strcmp(r->reason, reason) == 0,
		  "decision %s %s %d %s %s, want %s %s %d %s %s", r->method, r->host, r->port,
		  r->address, r->reason, method, host, port, address, reason);
}

static void free_proxy(struct sbd_egress *e)
{
	size_t before = nrecs;

	sbd_egress_free(e);
	spin(20);
	SW_CHECK(nrecs == before); /* no callback after free */
	RUN_UNTIL(echo_srv.live == 0 && http_srv.live == 0);
}

/* ---- cases ---- */

static void t_allow_entries(void)
{
	static const struct sbd_egress_config cfg;
	static const char *const bad[] = {"x",	   "h:0",      "h:70000",      "[::1",	   "",
					  "[::1]", "::1:80",   "a..b:80",      "h:-1",	   "h:8x",
					  "h :80", "1.2.3:80", "[1.2.3.4]:80", "[::1]x:80"};
	static const char *const good[] = {"example.com:443", "[::1]:8080", "10.1.2.3:80",
					   "Example.COM.:443", "under_score.test:1"};
	struct sbd_egress *e = proxy(&cfg, good, sizeof(good) / sizeof(good[0]));
	char err[256], want[32];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *one[1] = {bad[i]};

		err[0] = '\0';
		SW_CHECKF(sbd_egress_allow(e, one, 1, err, sizeof(err)) == -1, "'%s' accepted",
			  bad[i]);
		snprintf(want, sizeof(want), "'%s'", bad[i]);
		SW_CHECKF(strstr(err, want) != NULL, "error for '%s': %s", bad[i], err);
	}
	{
		const char *mixed[2] = {"ok.test:1", "h:0"};

		SW_CHECK(sbd_egress_allow(e, mixed, 2, err, sizeof(err)) == -1);
		SW_CHECK(strstr(err, "'h:0'") != NULL);
	}
	SW_CHECK(sbd_egress_allow(e, NULL, 0, err, sizeof(err)) == 0);
	free_proxy(e);
}

/* CONNECT to the listed echo server with allow_private: 200, early bytes
 * first, bytes both ways, half-close passed on. */
static void t_connect_echo(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	char entry[64], req[256], err[256];
	const char *allow[1] = {entry}, *bad[1] = {"h:0"};
	struct sbd_egress *e;
	struct client *cl;
	size_t before = nrecs;
	int accepts = echo_srv.accepts;

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", echo_srv.port);
	e = proxy(&cfg, allow, 1);
	/* a failed replacement keeps the old list */
	SW_CHECK(sbd_egress_allow(e, bad, 1, err, sizeof(err)) == -1);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\nearly",
		 echo_srv.port);
	cl = cl_open(proxy_port, req);
	RUN_UNTIL(cl_has(cl, "early"));
	SW_CHECKF(strcmp(cl_text(cl), "HTTP/1.1 200 Connection established\r\n\r\nearly") == 0,
		  "got %s", cl_text(cl));
	SW_CHECK(nrecs == before + 1);
	check_rec(last(), "CONNECT", "127.0.0.1", echo_srv.port, "127.0.0.1", "allowed");
	SW_CHECK(echo_srv.accepts == accepts + 1);
	SW_CHECK(sbd_egress_open(e) == 1);
	cl_send(cl, "ping", 4);
	RUN_UNTIL(cl_has(cl, "earlyping"));
	cl_send(cl, "bye", 3);
	SW_CHECK(shutdown(cl->fd, SHUT_WR) == 0);
	RUN_UNTIL(cl->eof);
	SW_CHECKF(strstr(cl_text(cl), "earlypingbye") != NULL, "got %s", cl_text(cl));
	RUN_UNTIL(sbd_egress_open(e) == 0);
	cl_close(cl);
	SW_CHECK(nrecs == before + 1);
	free_proxy(e);
}

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + i / 251);
}

/* Backpressure: the upstream does not read, the client keeps writing. The
 * proxy must stop reading from the client once RELAY_MAX waits, so the
 * client's writes stall for good long before LIMIT (without backpressure the
 * proxy would swallow it all). Then the upstream reads again, the client
 * half-closes, and every byte comes back in order, then EOF. */
static void t_backpressure(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	const size_t limit = 256u << 20, hl = sizeof(established_) - 1;
	char entry[64], req[256], chunk[65536];
	const char *allow[1] = {entry};
	struct sbd_egress *e;
	struct client *cl;
	size_t sent = 0, got, i;
	int idle = 0;

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", echo_srv.port);
	e = proxy(&cfg, allow, 1);
	echo_srv.paused = true;
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", echo_srv.port);
	cl = cl_open(proxy_port, req);
	RUN_UNTIL(evbuffer_get_length(cl->in) >= hl && echo_srv.held != NULL);
	SW_CHECK(memcmp(cl_text(cl), established_, hl) == 0);
	evbuffer_drain(cl->in, hl);
	/* "stalled": 100 turns of the loop in a row took no byte */
	while (sent < limit && idle < 100) {
		ssize_t w;

		for (i = 0; i < sizeof(chunk); i++)
			chunk[i] = (char)pattern(sent + i);
		w = write(cl->fd, chunk, sizeof(chunk));
		if (w > 0) {
			sent += (size_t)w;
			idle = 0;
			continue;
		}
		SW_CHECKF(errno == EAGAIN, "write: %s", strerror(errno));
		idle++;
		spin(5);
	}
	SW_CHECKF(sent < limit, "the proxy took %zu bytes without pushing back", sent);
	bufferevent_enable(echo_srv.held, EV_READ);
	echo_srv.held = NULL;
	echo_srv.paused = false;
	SW_CHECK(shutdown(cl->fd, SHUT_WR) == 0);
	RUN_UNTIL(cl->eof);
	got = evbuffer_get_length(cl->in);
	SW_CHECKF(got == sent, "sent %zu, got back %zu", sent, got);
	for (size_t off = 0; off < got; off += sizeof(chunk)) {
		size_t n = got - off < sizeof(chunk) ? got - off : sizeof(chunk);

		evbuffer_remove(cl->in, chunk, n);
		for (i = 0; i < n; i++)
			SW_CHECKF((unsigned char)chunk[i] == pattern(off + i), "byte %zu differs",
				  off + i);
	}
	cl_close(cl);
	RUN_UNTIL(sbd_egress_open(e) == 0);
	free_proxy(e);
}

/* allow_private false: listed literals and names that are not public are
 * refused, and nothing reaches the upstream. */
static void t_private(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = false};
	static const struct {
		const char *target, *address;
	} lits[] = {
	    {"[::1]", "::1"},
	    {"[::ffff:127.0.0.1]", "::ffff:127.0.0.1"},
	    {"[::]", "::"},
	    {"10.0.0.1", "10.0.0.1"},
	    {"172.16.5.4", "172.16.5.4"},
	    {"192.168.1.1", "192.168.1.1"},
	    {"100.64.0.1", "100.64.0.1"},
	    {"169.254.169.254", "169.254.169.254"},
	    {"0.0.0.0", "0.0.0.0"},
	    {"224.0.0.1", "224.0.0.1"},
	    {"255.255.255.255", "255.255.255.255"},
	    {"[fe80::1]", "fe80::1"},
	    {"[fd00::1]", "fd00::1"},
	    {"[ff02::1]", "ff02::1"},
	    {"[64:ff9b::a00:1]", "64:ff9b::a00:1"},
	};
	size_t nl = sizeof(lits) / sizeof(lits[0]);
	char entries[20][64], req[256], host[64], want[96];
	const char *allow[20];
	struct sbd_egress *e;
	int accepts = echo_srv.accepts, p = echo_srv.port;
	const char *got;

	for (size_t i = 0; i < nl; i++) {
		snprintf(entries[i], sizeof(entries[i]), "%s:%d", lits[i].target, p);
		allow[i] = entries[i];
	}
	snprintf(entries[nl], sizeof(entries[nl]), "127.0.0.1:%d", p);
	allow[nl] = entries[nl];
	snprintf(entries[nl + 1], sizeof(entries[nl + 1]), "localhost:%d", p);
	allow[nl + 1] = entries[nl + 1];
	e = proxy(&cfg, allow, nl + 2);

	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", p);
	got = exchange(req, nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 403 Forbidden\r\n"), "got %s", got);
	snprintf(want, sizeof(want), "127.0.0.1:%d", p);
	SW_CHECKF(strstr(got, want) != NULL && strstr(got, "private_address") != NULL, "got %s",
		  got);
	check_rec(last(), "CONNECT", "127.0.0.1", p, "127.0.0.1", "private_address");
	SW_CHECK(!last()->allowed);

	for (size_t i = 0; i < nl; i++) {
		snprintf(req, sizeof(req), "CONNECT %s:%d HTTP/1.1\r\n\r\n", lits[i].target, p);
		got = exchange(req, nrecs);
		SW_CHECKF(starts(got, "HTTP/1.1 403 "), "%s: got %s", lits[i].target, got);
		snprintf(host, sizeof(host), "%s", lits[i].target);
		check_rec(last(), "CONNECT", host, p, lits[i].address, "private_address");
	}
	/* a listed name that resolves to loopback */
	snprintf(req, sizeof(req), "CONNECT localhost:%d HTTP/1.1\r\n\r\n", p);
	got = exchange(req, nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 403 "), "got %s", got);
	check_rec(last(), "CONNECT", "localhost", p, "127.0.0.1", "private_address");
	/* plain HTTP too */
	snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/ HTTP/1.1\r\n\r\n", p);
	got = exchange(req, nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 403 "), "got %s", got);
	check_rec(last(), "GET", "127.0.0.1", p, "127.0.0.1", "private_address");

	SW_CHECK(echo_srv.accepts == accepts);
	free_proxy(e);
}

/* An address the filter lets through is connected to. TEST-NET-1 is
 * refused by default like every address that is not public (the filter's
 * classes are unit-tested in core_addr), so the operator's allow_private
 * lets it through here, and no packet leaves for a real host: the connect
 * fails or times out, whichever this host does. */
static void t_public(void)
{
	static const struct sbd_egress_config cfg = {.connect_timeout_ms = 300,
						     .allow_private = true};
	const char *allow[1] = {"192.0.2.1:9"};
	struct sbd_egress *e = proxy(&cfg, allow, 1);
	const char *got = exchange("CONNECT 192.0.2.1:9 HTTP/1.1\r\n\r\n", nrecs);

	SW_CHECKF(starts(got, "HTTP/1.1 502 ") || starts(got, "HTTP/1.1 504 "), "got %s", got);
	SW_CHECKF(strcmp(last()->reason, "connect_failed") == 0 ||
		      strcmp(last()->reason, "connect_timeout") == 0,
		  "reason %s", last()->reason);
	SW_CHECK(strcmp(last()->address, "192.0.2.1") == 0 && !last()->allowed);
	free_proxy(e);
}

/* A listed name the resolver cannot answer (no nameservers: the lookup
 * waits): 504 at the connect deadline, the lookup cancelled; and a proxy
 * freed while a lookup waits. ASan checks that nothing leaks. */
static void t_resolve_timeout(void)
{
	static const struct sbd_egress_config cfg = {.connect_timeout_ms = 200};
	const char *allow[1] = {"nowhere.invalid:80"}, *got;
	struct sbd_egress *e = proxy(&cfg, allow, 1);
	struct client *cl;
	size_t before;

	got = exchange("CONNECT nowhere.invalid:80 HTTP/1.1\r\n\r\n", nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 504 "), "got %s", got);
	check_rec(last(), "CONNECT", "nowhere.invalid", 80, "", "resolve_timeout");
	got = exchange("GET http://NoWhere.Invalid./x HTTP/1.1\r\n\r\n", nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 504 "), "got %s", got);
	check_rec(last(), "GET", "nowhere.invalid", 80, "", "resolve_timeout");

	before = nrecs;
	cl = cl_open(proxy_port, "CONNECT nowhere.invalid:80 HTTP/1.1\r\n\r\n");
	spin(50);
	SW_CHECK(nrecs == before && sbd_egress_open(e) == 1);
	free_proxy(e);
	RUN_UNTIL(cl->eof);
	cl_close(cl);
}

static void t_not_listed(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	char entry[64], req[256];
	const char *allow[1] = {entry};
	struct sbd_egress *e;
	int other = echo_srv.port == 65535 ? 1 : echo_srv.port + 1;
	const char *got;

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", echo_srv.port);
	e = proxy(&cfg, allow, 1);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", other);
	got = exchange(req, nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 403 Forbidden\r\n") && strstr(got, "not_listed"), "got %s",
		  got);
	check_rec(last(), "CONNECT", "127.0.0.1", other, "", "not_listed");
	snprintf(req, sizeof(req), "CONNECT localhost:%d HTTP/1.1\r\n\r\n", echo_srv.port);
	got = exchange(req, nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 403 "), "got %s", got);
	check_rec(last(), "CONNECT", "localhost", echo_srv.port, "", "not_listed");
	free_proxy(e);
}

/* A listed name through evdns (the hosts file), case-insensitively. */
static void t_localhost(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	char entry[64], req[256];
	const char *allow[1] = {entry};
	struct sbd_egress *e;
	struct client *cl;

	snprintf(entry, sizeof(entry), "localhost:%d", echo_srv.port);
	e = proxy(&cfg, allow, 1);
	snprintf(req, sizeof(req), "CONNECT LocalHost:%d HTTP/1.0\r\n\r\n", echo_srv.port);
	cl = cl_open(proxy_port, req);
	RUN_UNTIL(cl_has(cl, "\r\n\r\n"));
	SW_CHECKF(strcmp(cl_text(cl), "HTTP/1.1 200 Connection established\r\n\r\n") == 0,
		  "got %s", cl_text(cl));
	check_rec(last(), "CONNECT", "localhost", echo_srv.port, "127.0.0.1", "allowed");
	cl_send(cl, "x", 1);
	RUN_UNTIL(cl_has(cl, "\r\n\r\nx"));
	cl_close(cl);
	RUN_UNTIL(sbd_egress_open(e) == 0);
	free_proxy(e);
}

/* Plain HTTP: origin-form upstream, hop-by-hop headers gone, Host from the
 * target, Connection: close; the response comes back. */
static void t_http(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	char entry[64], req[1024], want[128];
	const char *allow[1] = {entry}, *got, *h = http_srv.head;
	struct sbd_egress *e;
	int p = http_srv.port;

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", p);
	e = proxy(&cfg, allow, 1);
	snprintf(req, sizeof(req),
		 "GET http://127.0.0.1:%d/x?y=1 HTTP/1.1\r\nHost: evil.example\r\n"
		 "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
		 "Connection: keep-alive, X-Hop\r\nKeep-Alive: 300\r\nX-Hop: 1\r\n"
		 "X-Test: yes\r\nUser-Agent: t\r\n\r\n",
		 p);
	got = exchange(req, nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 200 OK\r\n") && strstr(got, "\r\n\r\nhello") != NULL,
		  "got %s", got);
	check_rec(last(), "GET", "127.0.0.1", p, "127.0.0.1", "allowed");
	SW_CHECKF(starts(h, "GET /x?y=1 HTTP/1.1\r\n"), "upstream got %s", h);
	snprintf(want, sizeof(want), "\r\nHost: 127.0.0.1:%d\r\n", p);
	SW_CHECKF(strstr(h, want) != NULL, "upstream got %s", h);
	SW_CHECKF(strstr(h, "\r\nConnection: close\r\n") != NULL, "upstream got %s", h);
	SW_CHECKF(strstr(h, "\r\nX-Test: yes\r\n") != NULL, "upstream got %s", h);
	SW_CHECKF(strstr(h, "\r\nUser-Agent: t\r\n") != NULL, "upstream got %s", h);
	SW_CHECKF(strstr(h, "Proxy-") == NULL && strstr(h, "Keep-Alive") == NULL &&
		      strstr(h, "keep-alive") == NULL && strstr(h, "X-Hop") == NULL &&
		      strstr(h, "evil") == NULL,
		  "upstream got %s", h);

	/* default port 80: not listed, so refused before any connection */
	got = exchange("GET http://127.0.0.1/ HTTP/1.1\r\n\r\n", nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 403 "), "got %s", got);
	check_rec(last(), "GET", "127.0.0.1", 80, "", "not_listed");
	free_proxy(e);
}

static void t_bad_requests(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	char entry[64], req[512];
	const char *allow[1] = {entry}, *got;
	struct sbd_egress *e;
	int p = http_srv.port, accepts = http_srv.accepts;
	static const char *const fmts[] = {
	    "GARBAGE\r\n\r\n",
	    "GET https://127.0.0.1:%d/ HTTP/1.1\r\n\r\n",
	    "GET /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
	    "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
	    "GET http://u@127.0.0.1:%d/ HTTP/1.1\r\n\r\n",
	    "GET http://127.0.0.1:%d/ HTTP/2.0\r\n\r\n",
	    "GET http://127.0.0.1:%d/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
	    "GET http://127.0.0.1:%d/ HTTP/1.1\r\nNoColon\r\n\r\n",
	    "\r\n\r\n",
	};

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", p);
	e = proxy(&cfg, allow, 1);
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		snprintf(req, sizeof(req), fmts[i], p);
		got = exchange(req, nrecs);
		SW_CHECKF(starts(got, "HTTP/1.1 400 Bad Request\r\n"), "%s: got %s", fmts[i], got);
		check_rec(last(), "", "", 0, "", "bad_request");
		if (i == 1)
			SW_CHECKF(strstr(got, "CONNECT") != NULL, "got %s", got);
	}
	SW_CHECK(http_srv.accepts == accepts);
	free_proxy(e);
}

static void t_head_too_large(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	char entry[64], *req;
	const char *allow[1] = {entry}, *got;
	struct sbd_egress *e;
	int p = http_srv.port, accepts = http_srv.accepts, n;

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", p);
	e = proxy(&cfg, allow, 1);
	SW_CHECK((req = malloc(20000)) != NULL);
	n = snprintf(req, 20000, "GET http://127.0.0.1:%d/ HTTP/1.1\r\nX-Big: ", p);
	memset(req + n, 'a', 9000);
	strcpy(req + n + 9000, "\r\n\r\n");
	got = exchange(req, nrecs);
	free(req);
	SW_CHECKF(starts(got, "HTTP/1.1 431 "), "got %s", got);
	check_rec(last(), "", "", 0, "", "head_too_large");
	SW_CHECK(http_srv.accepts == accepts);
	free_proxy(e);
}

static void t_head_timeout(void)
{
	static const struct sbd_egress_config cfg = {.head_timeout_ms = 100};
	const char *allow[1] = {"example.com:443"};
	struct sbd_egress *e = proxy(&cfg, allow, 1);
	const char *got;

	got = exchange(NULL, nrecs);
	SW_CHECKF(got[0] == '\0' || starts(got, "HTTP/1.1 408 "), "got %s", got);
	check_rec(last(), "", "", 0, "", "timeout");
	got = exchange("CONNECT exa", nrecs); /* a partial head */
	SW_CHECKF(got[0] == '\0' || starts(got, "HTTP/1.1 408 "), "got %s", got);
	check_rec(last(), "", "", 0, "", "timeout");
	RUN_UNTIL(sbd_egress_open(e) == 0);
	free_proxy(e);
}

static void t_idle_timeout(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true,
						     .idle_timeout_ms = 200};
	char entry[64], req[256];
	const char *allow[1] = {entry};
	struct sbd_egress *e;
	struct client *cl;

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", echo_srv.port);
	e = proxy(&cfg, allow, 1);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", echo_srv.port);
	cl = cl_open(proxy_port, req);
	RUN_UNTIL(cl->eof);
	SW_CHECKF(strcmp(cl_text(cl), "HTTP/1.1 200 Connection established\r\n\r\n") == 0,
		  "got %s", cl_text(cl));
	check_rec(last(), "CONNECT", "127.0.0.1", echo_srv.port, "127.0.0.1", "allowed");
	SW_CHECK(sbd_egress_open(e) == 0);
	cl_close(cl);
	free_proxy(e);
}

static void t_no_listener(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true};
	char entry[64], req[256];
	const char *allow[1] = {entry}, *got;
	struct sbd_egress *e;
	int p = dead_port();

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", p);
	e = proxy(&cfg, allow, 1);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", p);
	got = exchange(req, nrecs);
	SW_CHECKF(starts(got, "HTTP/1.1 502 Bad Gateway\r\n"), "got %s", got);
	check_rec(last(), "CONNECT", "127.0.0.1", p, "127.0.0.1", "connect_failed");
	SW_CHECK(!last()->allowed);
	free_proxy(e);
}

/* 64 connections open; the 65th gets 503; closing one makes room. */
static void t_too_many(void)
{
	static const struct sbd_egress_config cfg = {.allow_private = true,
						     .head_timeout_ms = 600000};
	struct client *cls[SBD_EGRESS_CONNS_MAX + 1], *extra;
	char entry[64], req[256];
	const char *allow[1] = {entry};
	struct sbd_egress *e;
	size_t before;
	int i;

	snprintf(entry, sizeof(entry), "127.0.0.1:%d", echo_srv.port);
	e = proxy(&cfg, allow, 1);
	for (i = 0; i < SBD_EGRESS_CONNS_MAX; i++)
		cls[i] = cl_open(proxy_port, NULL);
	RUN_UNTIL(sbd_egress_open(e) == SBD_EGRESS_CONNS_MAX);
	before = nrecs;
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", echo_srv.port);
	cls[i] = cl_open(proxy_port, req);
	RUN_UNTIL(cls[i]->eof && nrecs == before + 1);
	SW_CHECKF(starts(cl_text(cls[i]), "HTTP/1.1 503 "), "got %s", cl_text(cls[i]));
	check_rec(last(), "", "", 0, "", "too_many_connections");
	cl_close(cls[i]);
	RUN_UNTIL(sbd_egress_open(e) == SBD_EGRESS_CONNS_MAX);
	for (i = 0; i < SBD_EGRESS_CONNS_MAX; i++)
		SW_CHECK(evbuffer_get_length(cls[i]->in) == 0 && !cls[i]->eof);

	cl_close(cls[0]);
	RUN_UNTIL(sbd_egress_open(e) == SBD_EGRESS_CONNS_MAX - 1);
	check_rec(last(), "", "", 0, "", "client_closed");
	extra = cl_open(proxy_port, req);
	RUN_UNTIL(cl_has(extra, "\r\n\r\n"));
	SW_CHECKF(starts(cl_text(extra), "HTTP/1.1 200 "), "got %s", cl_text(extra));

	/* free with 64 connections open, one of them relaying */
	before = nrecs;
	free_proxy(e);
	SW_CHECK(nrecs == before);
	RUN_UNTIL(extra->eof);
	for (i = 1; i < SBD_EGRESS_CONNS_MAX; i++) {
		RUN_UNTIL(cls[i]->eof);
		cl_close(cls[i]);
	}
	cl_close(extra);
}

static void write_hosts(const char *path)
{
	FILE *f = fopen(path, "w");

	SW_CHECK(f != NULL);
	fputs("127.0.0.1 localhost\n", f);
	SW_CHECK(fclose(f) == 0);
}

static void quiet(int severity, const char *msg)
{
	(void)severity;
	(void)msg;
}

int main(void)
{
	char hosts[] = "/tmp/egress_test_hosts_XXXXXX";
	int fd;

	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(quiet);
	SW_CHECK((base = event_base_new()) != NULL);
	SW_CHECK((fd = mkstemp(hosts)) >= 0);
	close(fd);
	write_hosts(hosts);
	SW_CHECK((dns = evdns_base_new(base, 0)) != NULL);
	SW_CHECK(evdns_base_load_hosts(dns, hosts) == 0);
	unlink(hosts);
	srv_start(&echo_srv, false);
	srv_start(&http_srv, true);

	t_allow_entries();
	t_connect_echo();
	t_backpressure();
	t_private();
	t_public();
	t_resolve_timeout();
	t_not_listed();
	t_localhost();
	t_http();
	t_bad_requests();
	t_head_too_large();
	t_head_timeout();
	t_idle_timeout();
	t_no_listener();
	t_too_many();

	evconnlistener_free(echo_srv.lis);
	evconnlistener_free(http_srv.lis);
	evdns_base_free(dns, 0);
	event_base_free(base);
	libevent_global_shutdown();
	printf("egress_test: ok\n");
	return 0;
}
