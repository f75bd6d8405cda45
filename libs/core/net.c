/*
 * net.c: host:port authorities, spelled one way wherever the project
 * meets them (sandboxd's egress proxy, allow-list entries at workflow
 * registration and at run time).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"

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

int sw_hostport_parse(const char *s, size_t n, int defport, char host[SW_HOST_MAX], int *port,
		      int *family, struct sockaddr_storage *ss, socklen_t *sslen, const char **why)
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
		snprintf(host, SW_HOST_MAX, "[%s]", tmp);
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

