/*
 * egress.h: the parts of the egress proxy (sbd_egress_*, sandboxd.h), one
 * struct conn per accepted connection, driven by bufferevents on the loop:
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
 * The files:
 *   egress.c        the listener, connections, their deadlines, the head's
 *                   reading, decisions and our own responses
 *   egress_addr.c   host:port authorities, the allow-list, addresses a
 *                   tenant may not reach
 *   egress_head.c   the request head: CONNECT, or plain HTTP rewritten for
 *                   the destination
 *   egress_relay.c  resolving, connecting, and the relay both ways
 */
#ifndef SANDBOXD_EGRESS_H
#define SANDBOXD_EGRESS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/util.h>

#include "sandboxd.h"

#define HOST_MAX SW_HOST_MAX /* canonical host, brackets and NUL included */
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
	int64_t last_ms;		/* RELAY: last traffic (sw_mono_ms) */
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

/* egress.c */
/* Decide once: the first call for c reaches the callback. */
void egress_decide(struct conn *c, bool allowed, const char *reason);
/* (Re)start c's deadline, ms from now. */
void egress_arm(struct conn *c, uint32_t ms);
/* Decide (when not yet), answer status with a text body and close. */
void egress_refuse(struct conn *c, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void egress_conn_free(struct conn *c);

/* egress_addr.c */
/* Whether sa is an address a tenant may not reach unless allow_private. */
bool egress_addr_refused(const struct sockaddr *sa);
/* The numeric address of sa ("?" when it has none). */
void egress_addr_text(const struct sockaddr *sa, char *out, size_t outlen);
/* Whether host:port (canonical) is in e's allow-list. */
bool egress_listed(const struct sbd_egress *e, const char *host, int port);

/* egress_head.c */
/* Length of the head at the start of p[0..n), through the empty line that
 * ends it (LF or CRLF line ends), or 0 while it is incomplete. */
size_t egress_head_length(const char *p, size_t n);
/* Parse the complete head p[0..n) into c's request fields (c->fwd: the
 * head to send for plain HTTP). 0, or -1 with *why (c's fields cleared). */
int egress_head_parse(struct conn *c, const char *p, size_t n, const char **why);

/* egress_relay.c */
/* The head is parsed: the allow-list, the address, the connection, then
 * the relay; any refusal through egress_refuse. */
void egress_route(struct conn *c);

#endif
