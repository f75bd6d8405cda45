/*
 * http_limits: the connection guard of struct sw_http, over raw loopback
 * sockets from a client thread while this test's event loop runs two
 * servers: A with short deadlines (head and body 400 ms), B with small
 * caps (3 connections per address, 6 in all).
 *  - a client trickling a header one byte at a time is answered 408 JSON
 *    and disconnected, while another client is served meanwhile;
 *  - a kept-alive connection serves several requests, idles longer than
 *    the head deadline between two, and is still cut when a later request
 *    is trickled;
 *  - a declared Content-Length: 1000000000 gets a JSON 413 at once and the
 *    connection is closed; so do a body sent past the read limit and a
 *    chunked body whose sizes add up past it; a body just over the cap
 *    still gets a JSON 413 and the connection stays usable;
 *  - a response streamed for three times the head deadline is not cut;
 *  - over the per-address cap a connection gets 503 JSON
 *    too_many_connections while a client from another address gets 200;
 *    over the global cap likewise; once connections close, the address
 *    is served again; the refusals are in /metrics.
 * Waits are bounded; nothing asserts how fast anything happens.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "sw_http.h"
#include "sw_test.h"

#define MAX_BODY 1024
#define DEADLINE_MS 400
#define STREAM_TICKS 12
#define STREAM_TICK_MS 100 /* 12 x 100 ms: three head deadlines */

static int port_a, port_b;
static int done_pipe[2];
static struct event_base *base;

/* ---- server side (event loop thread) ---------------------------------- */

struct stream {
	struct evhttp_request *req;
	struct event *ev;
	int n;
};

static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	struct timeval tv = {0, STREAM_TICK_MS * 1000};
	struct evbuffer *b = evbuffer_new();

	(void)fd;
	(void)what;
	SW_CHECK(b != NULL);
	evbuffer_add_printf(b, "tick %d\n", s->n++);
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
	if (s->n < STREAM_TICKS) {
		evtimer_add(s->ev, &tv);
		return;
	}
	evhttp_send_reply_end(s->req);
	event_free(s->ev);
	free(s);
}

/* Like the scheduler's event stream: no read timeout, no Nagle. */
static void stream(struct evhttp_request *req, void *opaque)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
	struct timeval wt = {60, 0}, tv = {0, STREAM_TICK_MS * 1000};
	struct stream *s = calloc(1, sizeof(*s));
	int one = 1;

	(void)opaque;
	SW_CHECK(s != NULL);
	SW_CHECK(setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one)) == 0);
	bufferevent_set_timeouts(bev, NULL, &wt);
	s->req = req;
	SW_CHECK((s->ev = evtimer_new(base, stream_tick, s)) != NULL);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain");
	evhttp_send_reply_start(req, 200, "OK");
	evtimer_add(s->ev, &tv);
}

static void echo(struct evhttp_request *req, void *opaque)
{
	json_t *in;

	(void)opaque;
	if ((in = sw_http_body_json(req)) == NULL)
		return;
	sw_http_reply_json(req, 201, json_pack("{s:o}", "got", in));
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* ---- client side ------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* A connection to port from source address src ("127.0.0.x"). */
static int dial(const char *src, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	SW_CHECK(fd >= 0);
	SW_CHECK(inet_pton(AF_INET, src, &sa.sin_addr) == 1);
	SW_CHECKF(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s", src,
		  strerror(errno));
	SW_CHECK(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr) == 1);
	sa.sin_port = htons((uint16_t)port);
	SW_CHECKF(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
		  strerror(errno));
	return fd;
}

static void send_str(int fd, const char *s)
{
	size_t len = strlen(s), off = 0;

	while (off < len) {
		ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);

		SW_CHECKF(n > 0, "send: %s", strerror(errno));
		off += (size_t)n;
	}
}

/* 1 when fd has something to read (data or EOF) within ms. */
static int readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, ms) == 1;
}

struct resp {
	char buf[65536];
	size_t len;
	int status;
	char *body; /* into buf */
	int eof;    /* the server closed */
};

/* One response, within ms: read until its head and Content-Length body
 * are in (or, without a length, until EOF); with want_eof, also until the
 * server closes. */
static void read_resp(int fd, int ms, int want_eof, struct resp *r)
{
	int64_t end = now_ms() + ms;
	char *he;

	memset(r, 0, sizeof(*r));
	for (;;) {
		int64_t left = end - now_ms();
		ssize_t n;

		he = strstr(r->buf, "\r\n\r\n");
		if (he != NULL && !want_eof) {
			const char *cl = strcasestr(r->buf, "\r\nContent-Length:");

			if (cl != NULL && cl < he &&
			    r->len >= (size_t)(he + 4 - r->buf) + strtoul(cl + 17, NULL, 10))
				break;
		}
		SW_CHECKF(left > 0 && readable(fd, (int)left),
			  "no complete response within %d ms; got %zu bytes: %s", ms, r->len,
			  r->buf);
		n = recv(fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, 0);
		if (n <= 0) {
			r->eof = 1;
			break;
		}
		r->len += (size_t)n;
		r->buf[r->len] = '\0';
	}
	he = strstr(r->buf, "\r\n\r\n");
	SW_CHECKF(he != NULL && sscanf(r->buf, "HTTP/1.%*d %d", &r->status) == 1,
		  "not a response: %s", r->buf);
	r->body = he + 4;
}

/* The response is a JSON error with this status and code. */
static void check_error(const struct resp *r, int status, const char *code)
{
	json_error_t jerr;
	json_t *j;
	const char *got;

	SW_CHECKF(r->status == status, "status %d, want %d: %s", r->status, status, r->buf);
	SW_CHECKF(strcasestr(r->buf, "\r\nContent-Type: application/json\r\n") != NULL,
		  "not JSON: %s", r->buf);
	SW_CHECKF((j = json_loads(r->body, 0, &jerr)) != NULL, "bad JSON: %s", r->body);
	SW_CHECKF(json_unpack(j, "{s:{s:s}}", "error", "code", &got) == 0 &&
			  strcmp(got, code) == 0,
		  "code, want %s: %s", code, r->body);
	json_decref(j);
}

/* GET path on fd (kept alive) answers status. */
static void get_ok(int fd, const char *path)
{
	char req[256];
	struct resp r;

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
	send_str(fd, req);
	read_resp(fd, 5000, 0, &r);
	SW_CHECKF(r.status == 200, "GET %s: %s", path, r.buf);
}

/* Trickle an endless header one byte per 50 ms until the server answers
 * (within 4 s); calling mid once, after half a second. The answer must be
 * a 408 JSON and the connection closed. */
static void trickle_until_cut(int fd, void (*mid)(void))
{
	int64_t end = now_ms() + 4000, start = now_ms();
	struct resp r;

	send_str(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ");
	while (!readable(fd, 0)) {
		SW_CHECKF(now_ms() < end, "still connected after trickling for 4 s");
		if (send(fd, "a", 1, MSG_NOSIGNAL) != 1)
			break;
		if (mid != NULL && now_ms() - start > 500) {
			mid();
			mid = NULL;
		}
		sleep_ms(50);
	}
	read_resp(fd, 5000, 1, &r);
	check_error(&r, 408, "request_timeout");
	SW_CHECK(r.eof);
}

static void another_client_served(void)
{
	int fd = dial("127.0.0.1", port_a);

	get_ok(fd, "/healthz");
	close(fd);
}

static void test_trickle(void)
{
	int fd = dial("127.0.0.1", port_a);

	trickle_until_cut(fd, another_client_served);
	close(fd);
}

static void test_keepalive(void)
{
	int fd = dial("127.0.0.1", port_a);
	struct resp r;

	get_ok(fd, "/healthz");
	send_str(fd, "POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
	read_resp(fd, 5000, 0, &r);
	SW_CHECKF(r.status == 201 && strstr(r.body, "{\"got\":{\"a\":1}}") != NULL, "%s", r.buf);
	/* Idle between requests is not head time. */
	sleep_ms(3 * DEADLINE_MS / 2);
	get_ok(fd, "/healthz");
	get_ok(fd, "/metrics");
	/* A later request trickled is cut all the same. */
	trickle_until_cut(fd, NULL);
	close(fd);
}

static void test_too_large(void)
{
	struct resp r;
	char *big;
	int fd, flags;
	size_t off = 0;

	/* Declared, never sent. */
	fd = dial("127.0.0.1", port_a);
	send_str(fd, "POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n");
	read_resp(fd, 5000, 1, &r);
	check_error(&r, 413, "too_large");
	SW_CHECK(r.eof);
	close(fd);

	/* Sent past the read limit (as much as the socket takes). */
	fd = dial("127.0.0.1", port_a);
	send_str(fd, "POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
	SW_CHECK((big = malloc(200000)) != NULL);
	memset(big, ' ', 200000);
	flags = fcntl(fd, F_GETFL);
	SW_CHECK(fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
	while (off < 200000) {
		ssize_t n = send(fd, big + off, 200000 - off, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	SW_CHECK(fcntl(fd, F_SETFL, flags) == 0);
	read_resp(fd, 5000, 0, &r);
	check_error(&r, 413, "too_large");
	close(fd);
	free(big);

	/* Chunk sizes adding up past it. */
	fd = dial("127.0.0.1", port_a);
	send_str(fd, "POST /v1/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "10\r\n0123456789abcdef\r\n100000\r\n");
	read_resp(fd, 5000, 1, &r);
	check_error(&r, 413, "too_large");
	close(fd);

	/* Just over the cap: read, refused, and the connection still serves. */
	fd = dial("127.0.0.1", port_a);
	SW_CHECK((big = malloc(MAX_BODY + 200)) != NULL);
	snprintf(big, MAX_BODY + 200,
		 "POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n", MAX_BODY + 1);
	off = strlen(big);
	memset(big + off, ' ', MAX_BODY + 1);
	big[off + MAX_BODY + 1] = '\0';
	send_str(fd, big);
	read_resp(fd, 5000, 0, &r);
	check_error(&r, 413, "too_large");
	get_ok(fd, "/healthz");
	close(fd);
	free(big);
}

static void test_stream(void)
{
	int fd = dial("127.0.0.1", port_a);
	struct resp r;
	const char *p;
	int ticks = 0;

	send_str(fd, "GET /v1/stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	read_resp(fd, 10000, 1, &r);
	SW_CHECKF(r.status == 200, "%s", r.buf);
	for (p = r.body; (p = strstr(p, "tick ")) != NULL; p++)
		ticks++;
	SW_CHECKF(ticks == STREAM_TICKS, "%d ticks: %s", ticks, r.buf);
	SW_CHECKF(strstr(r.body, "\r\n0\r\n\r\n") != NULL, "stream not ended: %s", r.body);
	close(fd);
}

/* The counter name on port's /metrics is at least min (and at most max). */
static void check_metric(int port, const char *name, double min, double max)
{
	int fd = dial("127.0.0.5", port);
	char key[128];
	const char *p;
	struct resp r;
	double v;

	send_str(fd, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
	read_resp(fd, 5000, 0, &r);
	snprintf(key, sizeof(key), "\n%s ", name);
	SW_CHECKF((p = strstr(r.body, key)) != NULL, "no %s in:\n%s", name, r.body);
	v = strtod(p + strlen(key), NULL);
	SW_CHECKF(v >= min && v <= max, "%s %g, want %g..%g", name, v, min, max);
	close(fd);
}

static void test_caps(void)
{
	int held[6], fd, i;
	struct resp r;

	/* Three from .1 (the per-address cap), held open after a request. */
	for (i = 0; i < 3; i++) {
		held[i] = dial("127.0.0.1", port_b);
		get_ok(held[i], "/healthz");
	}
	fd = dial("127.0.0.1", port_b);
	send_str(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
	read_resp(fd, 5000, 1, &r);
	check_error(&r, 503, "too_many_connections");
	SW_CHECK(r.eof);
	close(fd);
	/* Another address is served meanwhile, and so are the held ones. */
	held[3] = dial("127.0.0.2", port_b);
	get_ok(held[3], "/healthz");
	get_ok(held[0], "/healthz");

	/* Six in all (the global cap): a seventh from a new address is refused. */
	held[4] = dial("127.0.0.3", port_b);
	get_ok(held[4], "/healthz");
	held[5] = dial("127.0.0.3", port_b);
	get_ok(held[5], "/healthz");
	fd = dial("127.0.0.4", port_b);
	send_str(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
	read_resp(fd, 5000, 1, &r);
	check_error(&r, 503, "too_many_connections");
	close(fd);

	/* Closed connections free their places (the server notices them in its
	 * own time: retry, bounded). */
	for (i = 0; i < 6; i++)
		close(held[i]);
	for (i = 0;; i++) {
		fd = dial("127.0.0.1", port_b);
		send_str(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		read_resp(fd, 5000, 0, &r);
		close(fd);
		if (r.status == 200)
			break;
		SW_CHECKF(i < 50, "still refused after the others closed: %s", r.buf);
		sleep_ms(100);
	}
	/* The retries above may have been refused too. */
	check_metric(port_b, "sw_http_refused_per_address_total", 1, 1 + i);
	check_metric(port_b, "sw_http_refused_max_connections_total", 1, 1 + i);
}

static void *client(void *arg)
{
	(void)arg;
	test_trickle();
	test_keepalive();
	test_too_large();
	test_stream();
	check_metric(port_a, "sw_http_refused_head_timeout_total", 2, 2);
	check_metric(port_a, "sw_http_too_large_total", 4, 4);
	test_caps();
	SW_CHECK(write(done_pipe[1], "x", 1) == 1);
	return NULL;
}

int main(void)
{
	struct sw_http_limits la, lb;
	struct sw_metrics *ma, *mb;
	struct sw_http *a, *b;
	struct event *done;
	char err[256];
	pthread_t th;

	signal(SIGPIPE, SIG_IGN);
	SW_CHECK((base = event_base_new()) != NULL);
	SW_CHECK((ma = sw_metrics_new()) != NULL && (mb = sw_metrics_new()) != NULL);

	sw_http_limits_default(&la);
	SW_CHECK(la.max_connections == 1024 && la.max_per_address == 64 && la.head_ms == 10000 &&
		 la.body_ms == 60000);
	la.head_ms = la.body_ms = DEADLINE_MS;
	la.idle_ms = 10000;
	a = sw_http_new_opts(base, "127.0.0.1", 0, MAX_BODY, &la, ma, NULL, NULL, err,
			     sizeof(err));
	SW_CHECKF(a != NULL, "%s", err);
	port_a = sw_http_port(a);
	SW_CHECK(sw_http_route(a, "/v1/stream", stream, NULL) == 0);
	SW_CHECK(sw_http_route(a, "/v1/echo", echo, NULL) == 0);

	memset(&lb, 0, sizeof(lb)); /* zero: defaults */
	lb.max_connections = 6;
	lb.max_per_address = 3;
	b = sw_http_new_opts(base, "127.0.0.1", 0, MAX_BODY, &lb, mb, NULL, NULL, err,
			     sizeof(err));
	SW_CHECKF(b != NULL, "%s", err);
	port_b = sw_http_port(b);

	SW_CHECK(pipe(done_pipe) == 0);
	done = event_new(base, done_pipe[0], EV_READ, on_done, base);
	SW_CHECK(done != NULL && event_add(done, NULL) == 0);
	SW_CHECK(pthread_create(&th, NULL, client, NULL) == 0);
	SW_CHECK(event_base_dispatch(base) == 0);
	SW_CHECK(pthread_join(th, NULL) == 0);

	event_free(done);
	close(done_pipe[0]);
	close(done_pipe[1]);
	sw_http_destroy(a);
	sw_http_destroy(b);
	sw_metrics_destroy(ma);
	sw_metrics_destroy(mb);
	event_base_free(base);
	printf("http_limits: ok\n");
	return 0;
}
