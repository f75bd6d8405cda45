/*
 * core_addr: the destination policy of tenant code (libs/core/addr.c).
 * Every refused range with the addresses on both sides of its bounds,
 * IPv4-mapped, NAT64 and 6to4 forms judged by the IPv4 address they carry,
 * the allow-list (with and without a port, IPv4 and IPv6, mapped entries)
 * and its configuration errors.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "sw_addr.h"
#include "sw_test.h"

/* addr (IPv4 or IPv6 text) and port as a sockaddr; its length. */
static socklen_t mk(struct sockaddr_storage *ss, const char *addr, unsigned port)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		return sizeof(*s4);
	}
	SW_CHECKF(inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1, "bad test address %s", addr);
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons((uint16_t)port);
	return sizeof(*s6);
}

static const char *cls(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len = mk(&ss, addr, 80);

	return sw_addr_class((struct sockaddr *)&ss, len);
}

/* NULL want: public. */
static const struct {
	const char *addr;
	const char *want;
} classes[] = {
    /* 0.0.0.0/8 */
    {"0.0.0.0", "unspecified"},
    {"0.255.255.255", "unspecified"},
    {"1.0.0.0", NULL},
    /* 10/8 */
    {"9.255.255.255", NULL},
    {"10.0.0.0", "private"},
    {"10.255.255.255", "private"},
    {"11.0.0.0", NULL},
    /* 100.64/10 */
    {"100.63.255.255", NULL},
    {"100.64.0.0", "carrier-grade NAT"},
    {"100.127.255.255", "carrier-grade NAT"},
    {"100.128.0.0", NULL},
    /* 127/8 */
    {"126.255.255.255", NULL},
    {"127.0.0.0", "loopback"},
    {"127.0.0.1", "loopback"},
    {"127.255.255.255", "loopback"},
    {"128.0.0.0", NULL},
    /* 169.254/16, the metadata address in it */
    {"169.253.255.255", NULL},
    {"169.254.0.0", "link-local"},
    {"169.254.169.253", "link-local"},
    {"169.254.169.254", "cloud metadata"},
    {"169.254.169.255", "link-local"},
    {"169.254.255.255", "link-local"},
    {"169.255.0.0", NULL},
    /* 172.16/12 */
    {"172.15.255.255", NULL},
    {"172.16.0.0", "private"},
    {"172.31.255.255", "private"},
    {"172.32.0.0", NULL},
    /* 192.0.0/24, 192.0.2/24 */
    {"191.255.255.255", NULL},
    {"192.0.0.0", "reserved"},
    {"192.0.0.255", "reserved"},
    {"192.0.1.0", NULL},
    {"192.0.1.255", NULL},
    {"192.0.2.0", "documentation"},
    {"192.0.2.255", "documentation"},
    {"192.0.3.0", NULL},
    /* 192.168/16 */
    {"192.167.255.255", NULL},
    {"192.168.0.0", "private"},
    {"192.168.255.255", "private"},
    {"192.169.0.0", NULL},
    /* 198.18/15 */
    {"198.17.255.255", NULL},
    {"198.18.0.0", "benchmarking"},
    {"198.19.255.255", "benchmarking"},
    {"198.20.0.0", NULL},
    /* 198.51.100/24 */
    {"198.51.99.255", NULL},
    {"198.51.100.0", "documentation"},
    {"198.51.100.255", "documentation"},
    {"198.51.101.0", NULL},
    /* 203.0.113/24 */
    {"203.0.112.255", NULL},
    {"203.0.113.0", "documentation"},
    {"203.0.113.255", "documentation"},
    {"203.0.114.0", NULL},
    /* 224/4, 240/4, the broadcast address */
    {"223.255.255.255", NULL},
    {"224.0.0.0", "multicast"},
    {"239.255.255.255", "multicast"},
    {"240.0.0.0", "reserved"},
    {"255.255.255.254", "reserved"},
    {"255.255.255.255", "broadcast"},
    /* public */
    {"8.8.8.8", NULL},
    {"1.1.1.1", NULL},
    {"93.184.216.34", NULL},

    /* IPv6: ::, ::1, ::/96 (IPv4-compatible) */
    {"::", "unspecified"},
    {"::1", "loopback"},
    {"::2", "IPv4-compatible"},
    {"::7f00:1", "IPv4-compatible"},
    {"::8.8.8.8", "IPv4-compatible"},
    {"::ffff:ffff", "IPv4-compatible"},
    {"::1:0:0", "reserved"},
    /* ::ffff:0:0/96, judged as the IPv4 address */
    {"::ffff:127.0.0.1", "loopback"},
    {"::ffff:10.0.0.1", "private"},
    {"::ffff:169.254.169.254", "cloud metadata"},
    {"::ffff:0.0.0.0", "unspecified"},
    {"::ffff:8.8.8.8", NULL},
    {"::fffe:7f00:1", "reserved"},
    {"::1:ffff:7f00:1", "reserved"},
    /* 64:ff9b::/96 NAT64, judged as the IPv4 address; 64:ff9b:1::/48 */
    {"64:ff9b::127.0.0.1", "loopback"},
    {"64:ff9b::7f00:1", "loopback"},
    {"64:ff9b::10.1.2.3", "private"},
    {"64:ff9b::169.254.169.254", "cloud metadata"},
    {"64:ff9b::8.8.8.8", NULL},
    {"64:ff9b:0:0:0:1::1", "reserved"},
    {"64:ff9b:1::1", "local-use NAT64"},
    {"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"},
    /* 2002::/16 6to4, judged as the IPv4 address */
    {"2002:7f00:1::1", "loopback"},
    {"2002:a00:1::", "private"},
    {"2002:808:808::1", NULL},
    /* 2001::/23, 2001:db8::/32 */
    {"2001::1", "reserved"},
    {"2001:1ff:ffff::1", "reserved"},
    {"2001:200::1", NULL},
    {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"2001:db8::", "documentation"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"},
    {"2001:db9::", NULL},
    /* 2000::/3 is the public block */
    {"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"},
    {"2000::", NULL},
    {"2606:4700:4700::1111", NULL},
    {"2001:4860:4860::8888", NULL},
    {"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"4000::", "reserved"},
    /* fc00::/7, fe80::/10, fec0::/10, ff00::/8 */
    {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"},
    {"fc00::", "private (unique-local)"},
    {"fd00:ec2::254", "private (unique-local)"},
    {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private (unique-local)"},
    {"fe00::", "reserved"},
    {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"},
    {"fe80::", "link-local"},
    {"fe80::1", "link-local"},
    {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"},
    {"fec0::", "site-local"},
    {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "site-local"},
    {"ff00::", "multicast"},
    {"ff02::1", "multicast"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"},
};

static void test_classes(void)
{
	struct sockaddr_un un;
	const char *got;
	size_t i;

	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		got = cls(classes[i].addr);
		SW_CHECKF((got == NULL && classes[i].want == NULL) ||
			      (got != NULL && classes[i].want != NULL &&
			       strcmp(got, classes[i].want) == 0),
			  "%s: got %s, expected %s", classes[i].addr, got ? got : "public",
			  classes[i].want ? classes[i].want : "public");
	}
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	got = sw_addr_class((struct sockaddr *)&un, sizeof(un));
	SW_CHECK(got != NULL && strcmp(got, "not an IP address") == 0);
	SW_CHECK(sw_addr_class(NULL, 0) != NULL);
	/* a length too short for the family is not trusted */
	{
		struct sockaddr_storage ss;

		mk(&ss, "8.8.8.8", 80);
		SW_CHECK(sw_addr_class((struct sockaddr *)&ss, 4) != NULL);
		mk(&ss, "2606:4700:4700::1111", 80);
		SW_CHECK(sw_addr_class((struct sockaddr *)&ss, sizeof(struct sockaddr_in)) !=
			 NULL);
	}
}

/* sw_addr_check of addr:port: NULL when allowed; name checked too. */
static const char *check(const struct sw_addr_allow *al, const char *addr, unsigned port,
			 const char *want_name)
{
	struct sockaddr_storage ss;
	socklen_t len = mk(&ss, addr, port);
	const char *why;
	char name[80];

	why = sw_addr_check(al, (struct sockaddr *)&ss, len, name, sizeof(name));
	if (want_name != NULL)
		SW_CHECKF(strcmp(name, want_name) == 0, "name %s, expected %s", name, want_name);
	return why;
}

static void test_allow(void)
{
	struct sw_addr_allow al = {0}, none = {0};
	char err[300];

	SW_CHECKF(sw_addr_allow_parse(&al,
				     " 127.0.0.1:8080, 10.0.0.0/8,[::1]:9000, fd00::/8 ,"
				     "[fc00::/16]:443,::ffff:192.168.1.0/120,,203.0.113.7",
				     err, sizeof(err)) == 0,
		  "%s", err);
	SW_CHECK(al.n == 7);

	/* without a list: only public addresses */
	SW_CHECK(check(&none, "8.8.8.8", 443, "8.8.8.8:443") == NULL);
	SW_CHECK(strcmp(check(&none, "127.0.0.1", 8081, "127.0.0.1:8081"), "loopback") == 0);
	SW_CHECK(strcmp(check(&none, "::1", 8081, "[::1]:8081"), "loopback") == 0);
	SW_CHECK(strcmp(check(NULL, "::ffff:127.0.0.1", 80, "[::ffff:127.0.0.1]:80"),
			"loopback") == 0);

	/* address and port */
	SW_CHECK(check(&al, "127.0.0.1", 8080, NULL) == NULL);
	SW_CHECK(check(&al, "::ffff:127.0.0.1", 8080, NULL) == NULL);
	SW_CHECK(strcmp(check(&al, "127.0.0.1", 8081, NULL), "loopback") == 0);
	SW_CHECK(strcmp(check(&al, "127.0.0.1", 80, NULL), "loopback") == 0);
	SW_CHECK(strcmp(check(&al, "127.0.0.2", 8080, NULL), "loopback") == 0);
	/* a CIDR block, any port */
	SW_CHECK(check(&al, "10.0.0.0", 1, NULL) == NULL);
	SW_CHECK(check(&al, "10.255.255.255", 65535, NULL) == NULL);
	SW_CHECK(check(&al, "::ffff:10.1.2.3", 80, NULL) == NULL);
	SW_CHECK(strcmp(check(&al, "172.16.0.1", 80, NULL), "private") == 0);
	/* the list does not widen what is public */
	SW_CHECK(check(&al, "11.0.0.0", 80, NULL) == NULL);
	/* IPv6 address and port; the family matters */
	SW_CHECK(check(&al, "::1", 9000, NULL) == NULL);
	SW_CHECK(strcmp(check(&al, "::1", 9001, NULL), "loopback") == 0);
	SW_CHECK(strcmp(check(&al, "127.0.0.1", 9000, NULL), "loopback") == 0);
	/* IPv6 blocks, with and without a port */
	SW_CHECK(check(&al, "fd00::1", 5, NULL) == NULL);
	SW_CHECK(check(&al, "fdff:ffff::1", 5, NULL) == NULL);
	SW_CHECK(check(&al, "fc00:0:1::1", 443, NULL) == NULL);
	SW_CHECK(strcmp(check(&al, "fc00:0:1::1", 80, NULL), "private (unique-local)") == 0);
	SW_CHECK(strcmp(check(&al, "fc01::1", 443, NULL), "private (unique-local)") == 0);
	SW_CHECK(strcmp(check(&al, "fe80::1", 443, NULL), "link-local") == 0);
	/* a mapped block is the IPv4 block */
	SW_CHECK(check(&al, "192.168.1.0", 80, NULL) == NULL);
	SW_CHECK(check(&al, "192.168.1.255", 80, NULL) == NULL);
	SW_CHECK(strcmp(check(&al, "192.168.2.0", 80, NULL), "private") == 0);
	SW_CHECK(strcmp(check(&al, "192.168.0.255", 80, NULL), "private") == 0);
	/* a single address without a port */
	SW_CHECK(check(&al, "203.0.113.7", 1234, NULL) == NULL);
	SW_CHECK(strcmp(check(&al, "203.0.113.8", 1234, NULL), "documentation") == 0);
	/* NAT64 is matched as itself, not as the IPv4 address it carries */
	SW_CHECK(strcmp(check(&al, "64:ff9b::127.0.0.1", 8080, NULL), "loopback") == 0);
	sw_addr_allow_free(&al);
	SW_CHECK(al.rules == NULL && al.n == 0);

	/* everything, and nothing */
	SW_CHECK(sw_addr_allow_parse(&al, "0.0.0.0/0,::/0", err, sizeof(err)) == 0);
	SW_CHECK(check(&al, "127.0.0.1", 1, NULL) == NULL && check(&al, "::1", 1, NULL) == NULL);
	sw_addr_allow_free(&al);
	SW_CHECK(sw_addr_allow_parse(&al, "", err, sizeof(err)) == 0 && al.n == 0);
	sw_addr_allow_free(&al);
	SW_CHECK(sw_addr_allow_parse(&al, " , ", err, sizeof(err)) == 0 && al.n == 0);
	sw_addr_allow_free(&al);
	SW_CHECK(sw_addr_allow_parse(&al, NULL, err, sizeof(err)) == 0 && al.n == 0);
	sw_addr_allow_free(&al);
}

static void expect_error(const char *spec, const char *part)
{
	struct sw_addr_allow al = {0};
	char err[300] = "";

	SW_CHECKF(sw_addr_allow_parse(&al, spec, err, sizeof(err)) == -1, "'%s' was accepted",
		  spec);
	SW_CHECKF(strstr(err, part) != NULL, "'%s': error '%s' does not say '%s'", spec, err,
		  part);
	SW_CHECK(al.rules == NULL && al.n == 0);
}

static void test_errors(void)
{
	char big[300];

	expect_error("internal.example:443", "host names are not matched");
	expect_error("127.0.0.1:8080,localhost", "'localhost' is not an IP address");
	expect_error("2130706433", "not an IP address");
	expect_error("10.0.0.1/8", "bits set past the /8 prefix");
	expect_error("fd00::1/8", "bits set past");
	expect_error("10.0.0.0/33", "prefix length must be 0 to 32");
	expect_error("::/129", "prefix length must be 0 to 128");
	expect_error("10.0.0.0/", "prefix length");
	expect_error("10.0.0.0/-1", "prefix length");
	expect_error("127.0.0.1:0", "port must be 1 to 65535");
	expect_error("127.0.0.1:65536", "port must be 1 to 65535");
	expect_error("127.0.0.1:80x", "port must be");
	expect_error("127.0.0.1:", "port must be");
	expect_error("[::1]:", "port must be");
	expect_error("[::1", "[ADDR]:PORT");
	expect_error("[::1]9000", "[ADDR]:PORT");
	expect_error("[localhost]:80", "not an IP address");
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_error(big, "too long");
}

int main(void)
{
	test_classes();
	test_allow();
	test_errors();
	printf("worker_dest: ok\n");
	return 0;
}
