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
#include "sw_addr.h"

/* Whether sa is an address a tenant may not reach unless allow_private:
 * the one policy of sw_addr_class (loopback, private, link-local and
 * metadata, CGNAT, multicast, reserved, documentation, and IPv6 forms
 * embedding such an IPv4 address), shared with the worker's http steps. */
bool egress_addr_refused(const struct sockaddr *sa)
{
	socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						 : sizeof(struct sockaddr_in);

	return sw_addr_class(sa, len) != NULL;
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
