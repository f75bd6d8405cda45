/*
 * sw_addr: which addresses a tenant's code may connect to (the worker's http
 * steps, sandboxd's egress proxy).
 *
 * The worker runs next to the project's own services (audit, scheduler,
 * the LLM provider, sandboxd, PostgreSQL, Kafka) and often inside a cloud
 * network; a tenant's `uses: http` step must not reach any of them. So an
 * address that is not publicly routable -- loopback, private, link-local
 * (the cloud metadata service), carrier-grade NAT, multicast, reserved,
 * documentation, benchmarking, unspecified, IPv6 outside 2000::/3 -- is
 * refused unless the operator's allow-list (SAGEWAI_HTTP_ALLOW) names it.
 * NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged by the
 * IPv4 address they carry. The check is made on the address actually
 * connected (httpstep.c calls it from curl's socket callbacks), never on a
 * URL or a host name, so DNS rebinding and odd spellings of an address
 * (2130706433, 0x7f.1, [::ffff:127.0.0.1]) are judged by what they resolve
 * to.
 *
 * The allow-list: entries separated by commas, each an address or a CIDR
 * block with an optional port, e.g.
 *
 *   127.0.0.1:8080, 10.0.0.0/8, [::1]:9000, fd00::/8, [fd00::/8]:443
 *
 * A port given means that port only. Host names are refused: the worker
 * judges addresses, so list the addresses the name resolves to. An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged, and matched, as the
 * IPv4 address it carries.
 *
 * Pure functions over struct sockaddr: no curl, no I/O, no environment.
 */
#ifndef SW_ADDR_H
#define SW_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One allow-list entry. */
struct sw_addr_rule {
	int family;		 /* AF_INET or AF_INET6 */
	unsigned char addr[16];	 /* network order; 4 bytes used for AF_INET */
	unsigned prefix;	 /* bits compared: 0..32 or 0..128 */
	unsigned port;		 /* 0: any port */
};

/* The parsed SAGEWAI_HTTP_ALLOW; zeroed means empty. */
struct sw_addr_allow {
	struct sw_addr_rule *rules; /* owned, freed by sw_addr_allow_free */
	size_t n;
};

/* Parse spec (NULL or "" is the empty list) into al, replacing nothing:
 * al must be zeroed. 0, or -1 with errstr naming the bad entry (al is then
 * left empty). */
int sw_addr_allow_parse(struct sw_addr_allow *al, const char *spec, char *errstr, size_t errlen);
void sw_addr_allow_free(struct sw_addr_allow *al);

/* Why sa must not be connected to by default: a static string such as
 * "loopback" or "private", or NULL when it is a public address. Anything
 * but AF_INET and AF_INET6 is "not an IP address". */
const char *sw_addr_class(const struct sockaddr *sa, socklen_t len);

/* 1 when an allow-list entry covers sa (address and, when given, port). */
int sw_addr_allow_match(const struct sw_addr_allow *al, const struct sockaddr *sa, socklen_t len);

/* The decision for a connection to sa: NULL when allowed (public, or on
 * the allow-list), else the reason from sw_addr_class. name receives
 * sa in print form, "127.0.0.1:8081" or "[::1]:8081", either way. */
const char *sw_addr_check(const struct sw_addr_allow *al, const struct sockaddr *sa,
			      socklen_t len, char *name, size_t namelen);

#endif
