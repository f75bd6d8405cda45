/*
 * addr.c: the destination policy of tenant code (sw_addr.h): the
 * address classes refused by default, and the operator's allow-list.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_addr.h"

#define ALLOW_ENTRY_MAX 128 /* longest allow-list entry */

/* IPv4 blocks that are not publicly routable; the first match names it. */
static const struct {
	unsigned char net[4];
	unsigned bits;
	const char *why;
} v4_deny[] = {
    {{0, 0, 0, 0}, 8, "unspecified"},	      /* "this network" */
    {{10, 0, 0, 0}, 8, "private"},
    {{100, 64, 0, 0}, 10, "carrier-grade NAT"},
    {{127, 0, 0, 0}, 8, "loopback"},
    {{169, 254, 169, 254}, 32, "cloud metadata"},
    {{169, 254, 0, 0}, 16, "link-local"},
    {{172, 16, 0, 0}, 12, "private"},
    {{192, 0, 0, 0}, 24, "reserved"},	      /* IETF protocol assignments */
    {{192, 0, 2, 0}, 24, "documentation"},
    {{192, 168, 0, 0}, 16, "private"},
    {{198, 18, 0, 0}, 15, "benchmarking"},
    {{198, 51, 100, 0}, 24, "documentation"},
    {{203, 0, 113, 0}, 24, "documentation"},
    {{224, 0, 0, 0}, 4, "multicast"},
    {{255, 255, 255, 255}, 32, "broadcast"},
    {{240, 0, 0, 0}, 4, "reserved"},
};

/* How an IPv6 block is judged: refused outright, or by the IPv4 address it
 * carries (NAT64 and 6to4 reach that address through a gateway). The first
 * match decides; an address in none of them is public only when it is in
 * 2000::/3, the one block of global unicast addresses IANA allocates. */
enum v6_rule { V6_DENY, V6_LOW32, V6_6TO4 };

static const struct {
	unsigned char net[16];
	unsigned bits;
	enum v6_rule rule;
	const char *why;
} v6_deny[] = {
    {{0}, 128, V6_DENY, "unspecified"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, V6_DENY, "loopback"},
    {{0}, 96, V6_DENY, "IPv4-compatible"},
    {{0, 0x64, 0xff, 0x9b}, 96, V6_LOW32, NULL},
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, V6_DENY, "local-use NAT64"},
    {{0x20, 0x01}, 23, V6_DENY, "reserved"}, /* IETF protocol assignments */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, V6_DENY, "documentation"},
    {{0x20, 0x02}, 16, V6_6TO4, NULL},
    {{0xfc}, 7, V6_DENY, "private (unique-local)"},
    {{0xfe, 0x80}, 10, V6_DENY, "link-local"},
    {{0xfe, 0xc0}, 10, V6_DENY, "site-local"},
    {{0xff}, 8, V6_DENY, "multicast"},
};

static const unsigned char v6_global[1] = {0x20}; /* 2000::/3 */
static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int prefix_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	unsigned char mask;

	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/* sa as family, address bytes and port, an IPv4-mapped IPv6 address as
 * the IPv4 address it carries. -1 when sa is not an IP address. */
static int dest_norm(const struct sockaddr *sa, socklen_t len, int *family, unsigned char *b,
		     unsigned *port)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(*s4)) {
		*family = AF_INET;
		memcpy(b, &s4->sin_addr, 4);
		*port = ntohs(s4->sin_port);
		return 0;
	}
	if (sa->sa_family != AF_INET6 || len < (socklen_t)sizeof(*s6))
		return -1;
	*port = ntohs(s6->sin6_port);
	if (memcmp(s6->sin6_addr.s6_addr, v4_mapped, sizeof(v4_mapped)) == 0) {
		*family = AF_INET;
		memcpy(b, s6->sin6_addr.s6_addr + 12, 4);
	} else {
		*family = AF_INET6;
		memcpy(b, s6->sin6_addr.s6_addr, 16);
	}
	return 0;
}

static const char *class_v4(const unsigned char *a)
{
	size_t i;

	for (i = 0; i < sizeof(v4_deny) / sizeof(v4_deny[0]); i++)
		if (prefix_eq(a, v4_deny[i].net, v4_deny[i].bits))
			return v4_deny[i].why;
	return NULL;
}

static const char *class_v6(const unsigned char *a)
{
	size_t i;

	for (i = 0; i < sizeof(v6_deny) / sizeof(v6_deny[0]); i++) {
		if (!prefix_eq(a, v6_deny[i].net, v6_deny[i].bits))
			continue;
		switch (v6_deny[i].rule) {
		case V6_LOW32:
			return class_v4(a + 12);
		case V6_6TO4:
			return class_v4(a + 2);
		default:
			return v6_deny[i].why;
		}
	}
	return prefix_eq(a, v6_global, 3) ? NULL : "reserved";
}

const char *sw_addr_class(const struct sockaddr *sa, socklen_t len)
{
	unsigned char b[16];
	unsigned port;
	int family;

	if (dest_norm(sa, len, &family, b, &port) == -1)
		return "not an IP address";
	return family == AF_INET ? class_v4(b) : class_v6(b);
}

int sw_addr_allow_match(const struct sw_addr_allow *al, const struct sockaddr *sa, socklen_t len)
{
	const struct sw_addr_rule *r;
	unsigned char b[16];
	unsigned port;
	int family;
	size_t i;

	if (al == NULL || dest_norm(sa, len, &family, b, &port) == -1)
		return 0;
	for (i = 0; i < al->n; i++) {
		r = &al->rules[i];
		if (r->family == family && (r->port == 0 || r->port == port) &&
		    prefix_eq(b, r->addr, r->prefix))
			return 1;
	}
	return 0;
}

const char *sw_addr_check(const struct sw_addr_allow *al, const struct sockaddr *sa,
			      socklen_t len, char *name, size_t namelen)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
	char host[INET6_ADDRSTRLEN];
	const char *why;

	if (sa != NULL && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(*s4) &&
	    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host)) != NULL)
		snprintf(name, namelen, "%s:%u", host, (unsigned)ntohs(s4->sin_port));
	else if (sa != NULL && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(*s6) &&
		 inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host)) != NULL)
		snprintf(name, namelen, "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
	else
		snprintf(name, namelen, "(address family %d)", sa != NULL ? sa->sa_family : -1);
	if ((why = sw_addr_class(sa, len)) == NULL || sw_addr_allow_match(al, sa, len))
		return NULL;
	return why;
}

/* A decimal number of at most 5 digits, up to max. */
static int parse_small(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t n;

	n = strspn(s, "0123456789");
	if (n == 0 || n > 5 || s[n] != '\0')
		return -1;
	for (; *s; s++)
		v = v * 10 + (unsigned)(*s - '0');
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* One entry, s[0..n): [ADDR[/BITS]]:PORT, ADDR[/BITS]:PORT (IPv4), or
 * ADDR[/BITS] without a port. */
static int parse_rule(const char *s, size_t n, struct sw_addr_rule *r, char *err,
		      size_t errlen)
{
	char buf[ALLOW_ENTRY_MAX], *host = buf, *bits, *port = NULL, *c;
	unsigned max, i;

	if (n >= sizeof(buf)) {
		snprintf(err, errlen, "entry '%.40s...' is too long", s);
		return -1;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(r, 0, sizeof(*r));
	if (buf[0] == '[') {
		if ((c = strchr(buf, ']')) == NULL || (c[1] != '\0' && c[1] != ':')) {
			snprintf(err, errlen, "entry '%.*s': write an IPv6 address as [ADDR]:PORT",
				 (int)n, s);
			return -1;
		}
		host = buf + 1;
		*c = '\0';
		if (c[1] == ':')
			port = c + 2;
	} else if ((c = strchr(buf, ':')) != NULL && strchr(c + 1, ':') == NULL) {
		*c = '\0';
		port = c + 1;
	}
	if ((bits = strchr(host, '/')) != NULL)
		*bits++ = '\0';
	if (inet_pton(AF_INET, host, r->addr) == 1) {
		r->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, r->addr) == 1) {
		r->family = AF_INET6;
		max = 128;
	} else {
		snprintf(err, errlen,
			 "entry '%.*s': '%s' is not an IP address or CIDR block (host names are "
			 "not matched: list the addresses they resolve to)",
			 (int)n, s, host);
		return -1;
	}
	r->prefix = max;
	if (bits != NULL && parse_small(bits, max, &r->prefix) == -1) {
		snprintf(err, errlen, "entry '%.*s': the prefix length must be 0 to %u", (int)n,
			 s, max);
		return -1;
	}
	if (port != NULL && (parse_small(port, 65535, &r->port) == -1 || r->port == 0)) {
		snprintf(err, errlen, "entry '%.*s': the port must be 1 to 65535", (int)n, s);
		return -1;
	}
	for (i = r->prefix; i < max; i++)
		if (r->addr[i / 8] & (0x80 >> (i % 8))) {
			snprintf(err, errlen,
				 "entry '%.*s': the address has bits set past the /%u prefix",
				 (int)n, s, r->prefix);
			return -1;
		}
	/* ::ffff:a.b.c.d/N is the IPv4 block a.b.c.d/(N-96): connections are
	 * matched in that form */
	if (r->family == AF_INET6 && r->prefix >= 96 &&
	    memcmp(r->addr, v4_mapped, sizeof(v4_mapped)) == 0) {
		r->family = AF_INET;
		memmove(r->addr, r->addr + 12, 4);
		memset(r->addr + 4, 0, 12);
		r->prefix -= 96;
	}
	return 0;
}

int sw_addr_allow_parse(struct sw_addr_allow *al, const char *spec, char *errstr, size_t errlen)
{
	const char *p, *end, *s, *e;
	size_t cap = 0;

	al->rules = NULL;
	al->n = 0;
	if (spec == NULL)
		return 0;
	for (p = spec; *p; p++)
		if (*p == ',')
			cap++;
	if ((al->rules = calloc(cap + 1, sizeof(*al->rules))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	for (p = spec; *p != '\0'; p = *end ? end + 1 : end) {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		for (s = p; s < end && (*s == ' ' || *s == '\t'); s++)
			;
		for (e = end; e > s && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		if (e == s)
			continue; /* "a,,b" and a trailing comma */
		if (parse_rule(s, (size_t)(e - s), &al->rules[al->n], errstr, errlen) == -1) {
			sw_addr_allow_free(al);
			return -1;
		}
		al->n++;
	}
	return 0;
}

void sw_addr_allow_free(struct sw_addr_allow *al)
{
	free(al->rules);
	al->rules = NULL;
	al->n = 0;
}
