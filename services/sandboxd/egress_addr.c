/*
 * egress_addr.c: what a destination is and whether it may be reached:
 * host:port authorities (request targets and allow-list entries alike),
 * the allow-list, and the addresses a tenant may not reach.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"

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
bool egress_addr_refused(const struct sockaddr *sa)
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

void egress_addr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
	const void *a = sa->sa_family == AF_INET
			    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
			    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;

	if (inet_ntop(sa->sa_family, a, out, (socklen_t)outlen) == NULL)
		snprintf(out, outlen, "?");
}

bool egress_listed(const struct sbd_egress *e, const char *host, int port)
{
	for (size_t i = 0; i < e->nallow; i++)
		if (e->allow[i].port == port && strcmp(e->allow[i].host, host) == 0)
			return true;
	return false;
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

		if (sw_hostport_parse(s, strlen(s), 0, list[i].host, &list[i].port, &family,
					   &ss, &sslen, &why) == -1) {
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
