/*
 * egress_relay.c: from a parsed request to bytes flowing: the allow-list
 * and address checks, the lookup (evdns), the connect to each acceptable
 * address in turn, then the relay both ways with its flow control and
 * half-closes.
 */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/buffer.h>

#include "egress.h"

static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";

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
	c->last_ms = sw_mono_ms();
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
		egress_conn_free(c);
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
		egress_conn_free(c);
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
	egress_decide(c, true, "allowed");
	c->st = ST_RELAY;
	if (c->tunnel)
		rc = bufferevent_write(c->cli.bev, established, sizeof(established) - 1);
	else
		rc = evbuffer_add_buffer(upout, c->fwd);
	if (rc == -1 || evbuffer_add_buffer(upout, bufferevent_get_input(c->cli.bev)) == -1) {
		egress_conn_free(c);
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
	egress_arm(c, c->e->cfg.idle_timeout_ms);
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

		egress_addr_text(sa, c->address, sizeof(c->address));
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
	egress_refuse(c, 502, "connect_failed", "cannot connect to %s:%d (%s)", c->host, c->port,
		      c->address);
}

/* Keep the acceptable addresses of res (freed here), in order. */
static void resolved(struct conn *c, int err, struct evutil_addrinfo *res)
{
	char refused[INET6_ADDRSTRLEN] = "";

	if (err != 0) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		egress_refuse(c, 502, "resolve_failed", "cannot resolve %s: %s", c->host,
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
		if (!c->e->cfg.allow_private && egress_addr_refused(ai->ai_addr)) {
			if (refused[0] == '\0')
				egress_addr_text(ai->ai_addr, refused, sizeof(refused));
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
		egress_refuse(c, 403, "private_address",
			      "egress to %s:%d refused: private_address (%s is not a public "
			      "address)",
			      c->host, c->port, refused);
	} else {
		egress_refuse(c, 502, "resolve_failed", "cannot resolve %s: no address", c->host);
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

/* The head is parsed: the allow-list, then the address. */
void egress_route(struct conn *c)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct dnsq *q;

	if (!egress_listed(c->e, c->host, c->port)) {
		egress_refuse(c, 403, "not_listed",
			      "egress to %s:%d refused: not_listed (not in this sandbox's "
			      "allow-list)",
			      c->host, c->port);
		return;
	}
	egress_arm(c, c->e->cfg.connect_timeout_ms);
	if (c->family != 0) {
		const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[0];

		egress_addr_text(sa, c->address, sizeof(c->address));
		if (!c->e->cfg.allow_private && egress_addr_refused(sa)) {
			egress_refuse(c, 403, "private_address",
				      "egress to %s:%d refused: private_address (not a public "
				      "address)",
				      c->host, c->port);
			return;
		}
		c->naddrs = 1;
		connect_next(c);
		return;
	}
	if (c->e->cfg.dns == NULL || (q = calloc(1, sizeof(*q))) == NULL) {
		egress_refuse(c, 502, "resolve_failed", "cannot resolve %s: %s", c->host,
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
		egress_refuse(c, 502, "resolve_failed", "cannot resolve %s", c->host);
		return;
	}
	q->req = req;
}
