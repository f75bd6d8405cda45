/*
 * priv_test: the split of sagewai-sandboxd (services/sandboxd/priv.c) with
 * real bubblewrap sandboxes, no Kafka or PostgreSQL.
 *
 * The test forks a process that calls sbd_priv_split(): its parent becomes
 * the privileged part, its child (the "service side") runs the checks:
 *   - started as root, the service side runs as the configured uid with no
 *     capabilities, and cannot get root back;
 *   - create/destroy round trips; the sandbox's runner answers on the
 *     passed control socket; limits come back effective;
 *   - a CPU limit (cpu_millis) above the variant's maximum is lowered to
 *     it, and is what the sandbox's cgroup holds; without one in the
 *     variant it is taken as asked (where the host has no cpu controller:
 *     refused with SW_SANDBOX_ERR_NO_CPU, never run unbounded);
 *   - egress_only: a second fd listening on 127.0.0.1:3128 inside the
 *     sandbox's own network namespace, reachable from inside only;
 *   - hostile messages (garbage, short headers, length fields that
 *     disagree with the datagram, truncated bodies, strings past the end,
 *     over their cap or holding a NUL, trailing bytes, unknown types,
 *     replies sent as requests, traversal variant names, unknown network,
 *     limits over the variant's, fds passed in, oversize datagrams,
 *     unknown handles, 300 random mutations) each get one ERROR reply
 *     with the request's id, create nothing, and the privileged part
 *     keeps serving;
 *   - many creates in flight at once through the service part's client
 *     (privclient.c): 16 asked together, one of a variant whose bwrap
 *     fails after the fork and one of an unknown variant: exactly those
 *     two fail, with their own ids' errors, and each of the 14 others
 *     answers on its own control socket (egress_only ones with their
 *     listener); then all destroyed at once, every runner gone;
 *   - a service side that sends requests without reading the answers is
 *     held back (the privileged part stops reading; its reply queue is
 *     bounded), then gets every answer in order;
 *   - at most max_sandboxes at once;
 *   - when the service side ends, the privileged part destroys every
 *     sandbox it holds and exits with the service side's status.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "privmsg.h"
#include "sandboxd.h"
#include "sw_test.h"

#define TEST_MAX 24 /* max_sandboxes */
#define CONC_N 16   /* creates asked at once */

static const char *runner_path, *variants_dir;
static char state_dir[256], my_variants[256], locked[256];
static int sock;

/* Send raw bytes (and optionally an fd); return 1 when the reply is not
 * an ERROR, and copy an ERROR's text into err. The reply must decode and
 * carry the request's id (when its header had one). */
static int raw(const void *buf, size_t len, int pass_fd, char *err, size_t errlen)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} u;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	uint8_t reply[SBD_PM_MAX];
	struct sbd_pm m;
	char derr[256];
	ssize_t n;

	if (pass_fd >= 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = sizeof(u.b);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	SW_CHECK(sendmsg(sock, &mh, 0) == (ssize_t)len);
	n = recv(sock, reply, sizeof(reply), 0);
	SW_CHECKF(n > 0, "no reply (%s)", n < 0 ? strerror(errno) : "EOF");
	SW_CHECKF(sbd_pm_decode(reply, (size_t)n, &m, derr, sizeof(derr)) == 0,
		  "reply does not decode: %s", derr);
	if (len >= SBD_PM_HDR && len <= SBD_PM_MAX)
		SW_CHECKF(m.id == ((uint32_t)((const uint8_t *)buf)[6] << 24 |
				   (uint32_t)((const uint8_t *)buf)[7] << 16 |
				   (uint32_t)((const uint8_t *)buf)[8] << 8 |
				   ((const uint8_t *)buf)[9]),
			  "reply id %u", (unsigned)m.id);
	snprintf(err, errlen, "%s", m.type == SBD_PM_ERROR ? m.u.error.text : "");
	return m.type != SBD_PM_ERROR;
}

static void refused_bytes(const char *what, const void *req, size_t len, const char *needle)
{
	char err[800];

	SW_CHECKF(!raw(req, len, -1, err, sizeof(err)), "accepted: %s", what);
	SW_CHECKF(strstr(err, needle) != NULL, "%s: error '%s' lacks '%s'", what, err, needle);
}

/* A well-formed message, then refused. */
static void refused(const struct sbd_pm *m, const char *needle)
{
	uint8_t buf[SBD_PM_MAX];
	size_t n = sbd_pm_encode(m, buf, sizeof(buf));

	SW_CHECK(n > 0);
	refused_bytes("message", buf, n, needle);
}

/* Run argv in an attached sandbox; stdout into out. */
static int run_in(struct sw_sandbox *sb, const char *const *argv, char *out, size_t outlen)
{
	struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = 20000};
	struct sw_sandbox_result res;
	char err[256];

	SW_CHECKF(sw_sandbox_run(sb, &ex, 4096, &res, err, sizeof(err)) == 0, "run: %s", err);
	snprintf(out, outlen, "%s", res.out ? res.out : "");
	int st = res.exit.status;
	sw_sandbox_result_free(&res);
	return st;
}

static void check_identity(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	int caps_zero = 0, saw_uid = 0;

	SW_CHECK(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "CapEff:", 7) == 0)
			caps_zero = strstr(line, "0000000000000000") != NULL;
		if (strncmp(line, "Uid:", 4) == 0)
			saw_uid = strstr(line, "65533\t65533\t65533\t65533") != NULL;
	}
	fclose(f);
	SW_CHECK(caps_zero);
	SW_CHECK(saw_uid);
	SW_CHECK(setuid(0) != 0);
	SW_CHECK(geteuid() == 65533);
}

static void check_create_destroy(void)
{
	struct sbd_priv_sandbox c;
	struct sw_sandbox_limits lim = {.nproc = 10};
	struct sw_sandbox_usage u;
	struct sw_sandbox *sb;
	char err[512], out[256];
	const char *const id[] = {"id", "-u", NULL};
	const char *const ls[] = {"sh", "-c", "ls -A /workspace | wc -l", NULL};

	SW_CHECKF(sbd_priv_create(sock, "base", SW_SANDBOX_NET_NONE, &lim, &c, err,
				  sizeof(err)) == 0,
		  "create: %s", err);
	SW_CHECK(c.handle > 0 && c.ctl_fd >= 0 && c.egress_fd == -1 && c.pid > 0);
	SW_CHECK(c.limits.nproc == 10 && c.limits.memory_bytes > 0 && c.limits.wall_ms > 0);
	sb = sw_sandbox_attach(c.ctl_fd, &c.limits, true, err, sizeof(err));
	SW_CHECK(sb != NULL);
	SW_CHECK(run_in(sb, id, out, sizeof(out)) == 0);
	SW_CHECKF(strcmp(out, "65534\n") == 0, "id -u inside: %s", out);
	SW_CHECK(run_in(sb, ls, out, sizeof(out)) == 0);
	SW_CHECKF(strcmp(out, "0\n") == 0, "workspace not empty: %s", out);
	sw_sandbox_destroy(sb, NULL);
	SW_CHECKF(sbd_priv_destroy(sock, c.handle, &u, err, sizeof(err)) == 0, "destroy: %s", err);
	SW_CHECKF(kill(c.pid, 0) != 0, "runner %d outlived destroy", (int)c.pid);
	/* twice: no such sandbox */
	SW_CHECK(sbd_priv_destroy(sock, c.handle, &u, err, sizeof(err)) != 0);
	SW_CHECKF(strstr(err, "no such sandbox") != NULL, "%s", err);
}

/*
 * The CPU bandwidth the cgroup of host pid `pid` holds, in millis, read
 * from its cgroup files (v1 cpu hierarchy, else v2 cpu.max); -1 unknown.
 */
static long long cgroup_cpu_millis(pid_t pid)
{
	char path[600], line[512], rel[400] = "";
	long long quota = -1, period = -1;
	int v1 = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (c2 == NULL)
			continue;
		*c2 = '\0';
		c2[strcspn(c2 + 1, "\n") + 1] = '\0';
		if (strcmp(c1 + 1, "cpu") == 0 || strncmp(c1 + 1, "cpu,", 4) == 0 ||
		    strstr(c1 + 1, ",cpu,") != NULL) {
			snprintf(rel, sizeof(rel), "%s", c2 + 1);
			v1 = 1;
		} else if (!v1 && strcmp(line, "0") == 0 && c1[1] == '\0') {
			snprintf(rel, sizeof(rel), "%s", c2 + 1);
		}
	}
	fclose(f);
	if (v1) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu%s/cpu.cfs_quota_us", rel);
		if ((f = fopen(path, "re")) == NULL || fscanf(f, "%lld", &quota) != 1)
			quota = -1;
		if (f != NULL)
			fclose(f);
		snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu%s/cpu.cfs_period_us", rel);
	} else {
		snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", rel);
	}
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	if (v1 ? fscanf(f, "%lld", &period) != 1 : fscanf(f, "%lld %lld", &quota, &period) != 2)
		period = -1;
	fclose(f);
	return quota > 0 && period > 0 ? quota * 1000 / period : -1;
}

static void check_cpu(void)
{
	struct sw_sandbox_limits want = {.cpu_millis = 4000};
	struct sbd_priv_sandbox c;
	struct sw_sandbox_usage u;
	char err[512];

	/* "capped" allows 300 millis (0.3 CPU): 4000 is lowered, not refused */
	if (sbd_priv_create(sock, "capped", SW_SANDBOX_NET_NONE, &want, &c, err, sizeof(err)) !=
	    0) {
		SW_CHECKF(strstr(err, SW_SANDBOX_ERR_NO_CPU) != NULL, "create capped: %s", err);
		printf("priv_test: no cpu controller here, CPU limits refused: %s\n", err);
		return;
	}
	SW_CHECKF(c.limits.cpu_millis == 300, "cpu_millis %llu, not the variant's 300",
		  (unsigned long long)c.limits.cpu_millis);
	SW_CHECKF(cgroup_cpu_millis(c.pid) == 300, "the sandbox's cgroup holds %lld millis",
		  cgroup_cpu_millis(c.pid));
	close(c.ctl_fd);
	SW_CHECK(sbd_priv_destroy(sock, c.handle, &u, err, sizeof(err)) == 0);
	/* below the maximum: as asked; none asked: the variant's */
	want.cpu_millis = 120;
	SW_CHECKF(sbd_priv_create(sock, "capped", SW_SANDBOX_NET_NONE, &want, &c, err,
				  sizeof(err)) == 0,
		  "create capped 120: %s", err);
	SW_CHECK(c.limits.cpu_millis == 120 && cgroup_cpu_millis(c.pid) == 120);
	close(c.ctl_fd);
	SW_CHECK(sbd_priv_destroy(sock, c.handle, &u, err, sizeof(err)) == 0);
	SW_CHECKF(sbd_priv_create(sock, "capped", SW_SANDBOX_NET_NONE, NULL, &c, err,
				  sizeof(err)) == 0,
		  "create capped: %s", err);
	SW_CHECK(c.limits.cpu_millis == 300 && cgroup_cpu_millis(c.pid) == 300);
	close(c.ctl_fd);
	SW_CHECK(sbd_priv_destroy(sock, c.handle, &u, err, sizeof(err)) == 0);
	/* base has no CPU maximum: taken as asked */
	want.cpu_millis = 1500;
	SW_CHECKF(sbd_priv_create(sock, "base", SW_SANDBOX_NET_NONE, &want, &c, err,
				  sizeof(err)) == 0,
		  "create base 1500: %s", err);
	SW_CHECK(c.limits.cpu_millis == 1500 && cgroup_cpu_millis(c.pid) == 1500);
	close(c.ctl_fd);
	SW_CHECK(sbd_priv_destroy(sock, c.handle, &u, err, sizeof(err)) == 0);
}

/*
 * A catalogue of our own: the real base, and "capped", the same with a
 * CPU maximum of 300 millis.
 */
static void make_variants(void)
{
	char path[600], err[512];
	json_error_t jerr;
	json_t *v;

	snprintf(my_variants, sizeof(my_variants), "/tmp/sw-priv-variants-XXXXXX");
	SW_CHECK(mkdtemp(my_variants) != NULL);
	snprintf(path, sizeof(path), "%s/base.json", variants_dir);
	SW_CHECKF((v = json_load_file(path, 0, &jerr)) != NULL, "%s: %s", path, jerr.text);
	snprintf(path, sizeof(path), "%s/base.json", my_variants);
	SW_CHECK(json_dump_file(v, path, 0) == 0);
	json_object_set_new(v, "name", json_string("capped"));
	json_object_set_new(json_object_get(v, "limits"), "cpu_millis", json_integer(300));
	snprintf(path, sizeof(path), "%s/capped.json", my_variants);
	SW_CHECK(json_dump_file(v, path, 0) == 0);
	/* valid to the catalogue and to the privileged part's checks, but
	 * bwrap fails after the fork (in its child, after --info-fd said its
	 * pid: the runner never sends READY): it runs as uid 65534 (we are root) and
	 * cannot reach a directory inside a 0700 root-owned one (under
	 * /var/tmp: /tmp may not enter a sandbox) */
	snprintf(locked, sizeof(locked), "/var/tmp/sw-priv-locked-XXXXXX");
	SW_CHECK(mkdtemp(locked) != NULL);
	snprintf(path, sizeof(path), "%s/inner", locked);
	SW_CHECK(mkdir(path, 0755) == 0);
	json_object_set_new(v, "name", json_string("broken"));
	json_object_del(json_object_get(v, "limits"), "cpu_millis");
	json_array_append_new(json_object_get(v, "ro_binds"),
			      json_pack("{s:s, s:s}", "path", path, "at", "/opt/broken"));
	snprintf(path, sizeof(path), "%s/broken.json", my_variants);
	SW_CHECK(json_dump_file(v, path, 0) == 0);
	json_decref(v);
	{
		struct sw_sandbox_variant *cv = sw_sandbox_variant_load(my_variants, "capped", err,
									sizeof(err));

		SW_CHECKF(cv != NULL && cv->limits.cpu_millis == 300, "capped: %s", err);
		sw_sandbox_variant_free(cv);
	}
}

static void remove_variants(void)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/base.json", my_variants);
	unlink(path);
	snprintf(path, sizeof(path), "%s/capped.json", my_variants);
	unlink(path);
	snprintf(path, sizeof(path), "%s/broken.json", my_variants);
	unlink(path);
	snprintf(path, sizeof(path), "%s/inner", locked);
	rmdir(path);
	rmdir(locked);
	rmdir(my_variants);
}

static void check_egress(void)
{
	struct sbd_priv_sandbox c;
	struct sw_sandbox_usage u;
	struct sw_sandbox *sb;
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	char err[512], out[256];
	int one;
	/* connect from inside, say a line, print what came back */
	const char *const py[] = {
	    "python3", "-c",
	    "import socket,os\n"
	    "s=socket.create_connection(('127.0.0.1',3128),5)\n"
	    "s.sendall(b'hello\\n'); print(s.recv(64).decode().strip())\n"
	    "print(os.environ.get('https_proxy',''))\n",
	    NULL};
	pid_t kid;

	SW_CHECKF(sbd_priv_create(sock, "base", SW_SANDBOX_NET_EGRESS_ONLY, NULL, &c, err,
				  sizeof(err)) == 0,
		  "create egress_only: %s", err);
	SW_CHECK(c.egress_fd >= 0);
	SW_CHECK(getsockname(c.egress_fd, (struct sockaddr *)&a, &alen) == 0);
	SW_CHECK(a.sin_family == AF_INET && ntohs(a.sin_port) == SBD_EGRESS_PORT &&
		 a.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
	one = 0;
	alen = sizeof(one);
	SW_CHECK(getsockopt(c.egress_fd, SOL_SOCKET, SO_ACCEPTCONN, &one, &alen) == 0 && one);
	/* this process's 127.0.0.1:3128 is another namespace's: nothing there */
	{
		int s = socket(AF_INET, SOCK_STREAM, 0);

		SW_CHECK(connect(s, (struct sockaddr *)&a, sizeof(a)) != 0);
		close(s);
	}
	/* answer one connection from inside */
	if ((kid = fork()) == 0) {
		int fl = fcntl(c.egress_fd, F_GETFL), s;

		fcntl(c.egress_fd, F_SETFL, fl & ~O_NONBLOCK);
		s = accept(c.egress_fd, NULL, NULL);
		if (s < 0)
			_exit(1);
		char buf[64];
		ssize_t n = read(s, buf, sizeof(buf));
		if (n != 6 || memcmp(buf, "hello\n", 6) != 0)
			_exit(2);
		if (write(s, "proxy\n", 6) != 6)
			_exit(3);
		_exit(0);
	}
	sb = sw_sandbox_attach(c.ctl_fd, &c.limits, true, err, sizeof(err));
	SW_CHECK(sb != NULL);
	SW_CHECK(run_in(sb, py, out, sizeof(out)) == 0);
	SW_CHECKF(strcmp(out, "proxy\nhttp://127.0.0.1:3128\n") == 0, "inside said: %s", out);
	{
		int st;

		SW_CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	close(c.egress_fd);
	sw_sandbox_destroy(sb, NULL);
	SW_CHECK(sbd_priv_destroy(sock, c.handle, &u, err, sizeof(err)) == 0);
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static struct sbd_pm create_msg(const char *variant, uint8_t net)
{
	struct sbd_pm m = {.type = SBD_PM_CREATE, .id = 77, .u.create.net = net};

	snprintf(m.u.create.variant, sizeof(m.u.create.variant), "%s", variant);
	return m;
}

/*
 * A service side that asks without reading the answers: the privileged
 * part stops reading (its queue of replies is bounded) instead of growing
 * without end, and once the answers are read every request has its one
 * ERROR, in order.
 */
static void check_flood(void)
{
	uint8_t b[SBD_PM_HDR], r[SBD_PM_MAX];
	int fl = fcntl(sock, F_GETFL);
	uint32_t sent = 0;
	bool held = false;

	SW_CHECK(fl >= 0 && fcntl(sock, F_SETFL, fl | O_NONBLOCK) == 0);
	while (sent < 20000 && !held) {
		uint32_t id = sent + 1;

		b[0] = 0, b[1] = 77; /* an unknown type */
		b[2] = 0, b[3] = 0, b[4] = 0, b[5] = SBD_PM_HDR;
		b[6] = (uint8_t)(id >> 24), b[7] = (uint8_t)(id >> 16);
		b[8] = (uint8_t)(id >> 8), b[9] = (uint8_t)id;
		if (send(sock, b, sizeof(b), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(b)) {
			sent++;
			continue;
		}
		SW_CHECKF(errno == EAGAIN || errno == EWOULDBLOCK, "send: %s", strerror(errno));
		usleep(300 * 1000); /* time to drain, if it still read */
		if (send(sock, b, sizeof(b), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(b))
			sent++;
		else
			held = true;
	}
	SW_CHECKF(held, "the privileged part took %u requests whose answers nobody read", sent);
	for (uint32_t i = 1; i <= sent; i++) {
		struct sbd_pm m;
		char err[256];
		ssize_t n;

		while ((n = recv(sock, r, sizeof(r), 0)) < 0 && (errno == EAGAIN || errno == EINTR))
			usleep(1000);
		SW_CHECK(n > 0);
		SW_CHECKF(sbd_pm_decode(r, (size_t)n, &m, err, sizeof(err)) == 0, "%s", err);
		SW_CHECKF(m.type == SBD_PM_ERROR && m.id == i, "reply %u: type %u id %u", i,
			  (unsigned)m.type, (unsigned)m.id);
	}
	SW_CHECK(fcntl(sock, F_SETFL, fl) == 0);
}

static void check_hostile(void)
{
	uint8_t big[20000], b[SBD_PM_MAX];
	char err[800];
	struct sbd_pm m;
	size_t n;
	int fds[2];

	refused_bytes("text", "this is not a message", 21, "malformed");
	refused_bytes("short header", "\0\1\0\0", 4, "malformed");
	/* the length field disagrees with the datagram */
	m = create_msg("base", 0);
	n = sbd_pm_encode(&m, b, sizeof(b));
	SW_CHECK(n > 0);
	put_be(b + 2, n + 1, 4);
	refused_bytes("length+1", b, n, "length field");
	put_be(b + 2, n - 1, 4);
	refused_bytes("length-1", b, n, "length field");
	/* the datagram cut short, its length field fixed up to match */
	put_be(b + 2, n - 3, 4);
	refused_bytes("truncated body", b, n - 3, "past the end");
	put_be(b + 2, 20, 4);
	refused_bytes("truncated limits", b, 20, "too short");
	/* a string length pointing past the end, over the cap, with a NUL */
	put_be(b + 2, n, 4);
	put_be(b + SBD_PM_HDR + 1 + 64, 40, 2);
	refused_bytes("string past end", b, n, "past the end");
	put_be(b + SBD_PM_HDR + 1 + 64, SBD_PM_VARIANT_MAX + 1, 2);
	refused_bytes("string over cap", b, n, "cap");
	put_be(b + SBD_PM_HDR + 1 + 64, 4, 2);
	b[SBD_PM_HDR + 1 + 64 + 2 + 1] = '\0';
	refused_bytes("NUL in variant", b, n, "NUL");
	/* trailing bytes after a valid body */
	m = (struct sbd_pm){.type = SBD_PM_DESTROY, .id = 5, .u.destroy.handle = 1};
	n = sbd_pm_encode(&m, b, sizeof(b));
	b[n] = 'x';
	put_be(b + 2, n + 1, 4);
	refused_bytes("trailing", b, n + 1, "trailing");
	/* unknown type; a reply's type sent as a request */
	put_be(b, 99, 2);
	put_be(b + 2, n, 4);
	refused_bytes("type 99", b, n, "unknown message type");
	m = (struct sbd_pm){.type = SBD_PM_CREATED, .id = 6, .u.created.handle = 1};
	refused(&m, "unknown request");
	m = (struct sbd_pm){.type = SBD_PM_ERROR, .id = 8};
	refused(&m, "unknown request");
	/* well-formed creates the catalogue or the limits refuse */
	m = create_msg("../../etc/passwd", 0);
	refused(&m, "variant");
	m = create_msg("nosuch", 0);
	refused(&m, "unknown sandbox variant");
	m = create_msg("base", 0);
	n = sbd_pm_encode(&m, b, sizeof(b));
	b[SBD_PM_HDR] = 7; /* no such network policy */
	refused_bytes("net 7", b, n, "network policy");
	m = create_msg("base", 0);
	m.u.create.limits[0] = 1000000000; /* nproc */
	refused(&m, "over the variant");
	m = create_msg("base", 0);
	m.u.create.limits[6] = 1000001; /* cpu_millis */
	refused(&m, "over the variant");
	m = create_msg("base", 0);
	m.u.create.limits[1] = UINT64_MAX; /* memory_bytes */
	refused(&m, "over the variant");
	m = create_msg("", 0);
	n = sbd_pm_encode(&m, b, sizeof(b));
	refused_bytes("empty variant", b, n, "empty variant");
	m = (struct sbd_pm){.type = SBD_PM_DESTROY, .id = 9, .u.destroy.handle = 424242};
	refused(&m, "no such sandbox");
	m.u.destroy.handle = 0;
	refused(&m, "no such sandbox");
	/* oversize: truncated by the socket, refused whole */
	memset(big, 'A', sizeof(big));
	m = create_msg("base", 0);
	n = sbd_pm_encode(&m, big, sizeof(big));
	put_be(big + 2, sizeof(big), 4);
	SW_CHECK(!raw(big, sizeof(big), -1, err, sizeof(err)));
	SW_CHECKF(strstr(err, "malformed") != NULL, "oversize: %s", err);
	/* an fd passed to the privileged part is closed, the request refused */
	SW_CHECK(pipe(fds) == 0);
	m = (struct sbd_pm){.type = SBD_PM_DESTROY, .id = 10, .u.destroy.handle = 7};
	n = sbd_pm_encode(&m, b, sizeof(b));
	SW_CHECK(!raw(b, n, fds[0], err, sizeof(err)));
	close(fds[0]);
	{
		/* our copy is the only reader left: a write would SIGPIPE if the
		 * privileged part had kept none either, so test with poll-free
		 * EPIPE */
		signal(SIGPIPE, SIG_IGN);
		SW_CHECK(write(fds[1], "x", 1) == -1 && errno == EPIPE);
		close(fds[1]);
	}
	/* a random burst: every datagram gets exactly one reply, none creates
	 * (check_max afterwards finds the host empty) */
	srandom(14);
	for (int i = 0; i < 300; i++) {
		size_t len = SBD_PM_HDR + (size_t)(random() % 120);

		m = create_msg("base", 0);
		n = sbd_pm_encode(&m, b, sizeof(b));
		for (size_t k = 0; k < len; k++)
			if (k >= n || random() % 8 == 0)
				b[k] = (uint8_t)random();
		if (sbd_pm_decode(b, len, &m, err, sizeof(err)) == 0 &&
		    m.type == SBD_PM_CREATE)
			continue; /* it mutated into a valid create */
		SW_CHECK(!raw(b, len, -1, err, sizeof(err)));
	}
}

/* ---- many creates at once, through the client ---- */

struct conc {
	int i;
	const char *variant;
	enum sw_sandbox_net net;
	bool done, ok;
	char err[512];
	struct sbd_priv_sandbox c;
	struct sw_sandbox_usage u;
};

static int conc_left;

static void conc_created(void *arg, struct sbd_priv_result *r)
{
	struct conc *k = arg;

	SW_CHECKF(!k->done, "create %d answered twice", k->i);
	k->done = true;
	k->ok = r->err == NULL;
	if (r->err != NULL)
		snprintf(k->err, sizeof(k->err), "%s", r->err);
	else
		k->c = r->created;
	conc_left--;
}

static void conc_destroyed(void *arg, struct sbd_priv_result *r)
{
	struct conc *k = arg;

	SW_CHECKF(r->err == NULL, "destroy %d: %s", k->i, r->err);
	k->u = r->final;
	k->done = true;
	conc_left--;
}

static void conc_wait(struct event_base *base)
{
	int64_t t0 = sw_mono_ms();

	while (conc_left > 0) {
		SW_CHECKF(sw_mono_ms() - t0 < 60000, "%d answers missing after 60 s", conc_left);
		event_base_loop(base, EVLOOP_ONCE);
	}
}

static void check_concurrent(void)
{
	struct event_base *base = event_base_new();
	struct sbd_priv_client *cl;
	struct conc k[CONC_N];
	char err[512];
	int fd = dup(sock);

	SW_CHECK(base != NULL && fd >= 0);
	SW_CHECKF((cl = sbd_priv_client_new(base, fd, err, sizeof(err))) != NULL, "%s", err);
	memset(k, 0, sizeof(k));
	for (int i = 0; i < CONC_N; i++) {
		struct sw_sandbox_limits lim = {.nproc = (uint64_t)(20 + i)};

		k[i].i = i;
		k[i].variant = i == 5 ? "broken" : i == 9 ? "nosuch" : "base";
		k[i].net = i % 4 == 1 ? SW_SANDBOX_NET_EGRESS_ONLY : SW_SANDBOX_NET_NONE;
		SW_CHECKF(sbd_priv_client_create(cl, k[i].variant, k[i].net, &lim, conc_created,
						 &k[i], err, sizeof(err)) == 0,
			  "send %d: %s", i, err);
		conc_left++;
	}
	/* all asked before any answer is read */
	SW_CHECK(sbd_priv_client_pending(cl) == CONC_N);
	conc_wait(base);
	for (int i = 0; i < CONC_N; i++) {
		if (i == 5) {
			/* not root: bwrap runs as us and may reach it */
			SW_CHECKF(getuid() != 65533 ||
					  (!k[i].ok && strstr(k[i].err, "/inner: Permission denied") != NULL),
				  "broken variant: %s", k[i].ok ? "created" : k[i].err);
			if (k[i].ok) {
				close(k[i].c.ctl_fd);
				if (k[i].c.egress_fd >= 0)
					close(k[i].c.egress_fd);
				k[i].ok = false; /* left to the privileged part's end */
			}
			continue;
		}
		if (i == 9) {
			SW_CHECKF(!k[i].ok && strstr(k[i].err, "nosuch") != NULL,
				  "unknown variant: %s", k[i].ok ? "created" : k[i].err);
			continue;
		}
		SW_CHECKF(k[i].ok, "create %d: %s", i, k[i].err);
		SW_CHECK(k[i].c.limits.nproc == (uint64_t)(20 + i));
		SW_CHECK((k[i].c.egress_fd >= 0) == (k[i].net == SW_SANDBOX_NET_EGRESS_ONLY));
		for (int j = 0; j < i; j++)
			SW_CHECK(!k[j].ok || k[j].c.handle != k[i].c.handle);
	}
	/* each runner answers on its own socket */
	for (int i = 0; i < CONC_N; i++) {
		const char *const argv[] = {"awk", "/Max processes/ {print $3}",
					    "/proc/self/limits", NULL};
		struct sw_sandbox *sb;
		char out[64], want[16];

		if (!k[i].ok)
			continue;
		sb = sw_sandbox_attach(k[i].c.ctl_fd, &k[i].c.limits, true, err, sizeof(err));
		SW_CHECK(sb != NULL);
		SW_CHECK(run_in(sb, argv, out, sizeof(out)) == 0);
		snprintf(want, sizeof(want), "%d\n", 20 + i);
		SW_CHECKF(strcmp(out, want) == 0, "sandbox %d: max processes %s", i, out);
		sw_sandbox_destroy(sb, NULL);
		if (k[i].c.egress_fd >= 0)
			close(k[i].c.egress_fd);
	}
	/* all destroyed at once */
	for (int i = 0; i < CONC_N; i++) {
		if (!k[i].ok)
			continue;
		k[i].done = false;
		SW_CHECK(sbd_priv_client_destroy(cl, k[i].c.handle, conc_destroyed, &k[i], err,
						 sizeof(err)) == 0);
		conc_left++;
	}
	conc_wait(base);
	for (int i = 0; i < CONC_N; i++)
		SW_CHECKF(!k[i].ok || kill(k[i].c.pid, 0) != 0, "runner %d outlived destroy",
			  (int)k[i].c.pid);
	sbd_priv_client_free(cl);
	event_base_free(base);
}

static void check_max(pid_t *held)
{
	struct sbd_priv_sandbox c;
	char err[512], want[32];

	/* TEST_MAX are held, one more is refused */
	for (int i = 0; i < TEST_MAX; i++) {
		SW_CHECKF(sbd_priv_create(sock, "base", SW_SANDBOX_NET_NONE, NULL, &c, err,
					  sizeof(err)) == 0,
			  "create %d: %s", i, err);
		if (i < 2)
			held[i] = c.pid;
	}
	SW_CHECK(sbd_priv_create(sock, "base", SW_SANDBOX_NET_NONE, NULL, &c, err,
				 sizeof(err)) != 0);
	snprintf(want, sizeof(want), "maximum of %d", TEST_MAX);
	SW_CHECKF(strstr(err, want) != NULL, "%s", err);
	/* the control sockets stay open here: the privileged part must end them */
}

/* The service side. Writes the pids of the sandboxes it leaves behind to
 * fd out for the top-level process to check. */
static void service_side(int out)
{
	pid_t held[2];
	char line[64];

	if (geteuid() == 65533)
		check_identity();
	check_create_destroy();
	check_cpu();
	check_egress();
	check_hostile();
	check_flood();
	check_create_destroy(); /* still serving */
	check_concurrent();
	check_create_destroy(); /* the blocking calls still pair up */
	check_max(held);
	snprintf(line, sizeof(line), "%d %d\n", (int)held[0], (int)held[1]);
	SW_CHECK(write(out, line, strlen(line)) == (ssize_t)strlen(line));
	exit(7); /* the privileged part must pass this status on */
}

int main(int argc, char **argv)
{
	struct sbd_priv_config cfg = {.max_sandboxes = TEST_MAX};
	char err[512], buf[64] = "";
	pid_t top;
	int st, a = 0, b = 0, pp[2];
	ssize_t n, got = 0;

	SW_CHECK(argc == 3);
	runner_path = argv[1];
	variants_dir = argv[2];
	snprintf(state_dir, sizeof(state_dir), "/tmp/sw-priv-test-XXXXXX");
	SW_CHECK(mkdtemp(state_dir) != NULL);
	SW_CHECK(pipe(pp) == 0);
	snprintf(cfg.runner, sizeof(cfg.runner), "%s", runner_path);
	snprintf(cfg.bwrap, sizeof(cfg.bwrap), "/usr/bin/bwrap");
	make_variants();
	snprintf(cfg.variants_dir, sizeof(cfg.variants_dir), "%s", my_variants);
	/* as sandboxd runs: per-sandbox cgroups where the host has them */
	snprintf(cfg.cgroup, sizeof(cfg.cgroup), "auto");
	snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s", state_dir);
	snprintf(cfg.user, sizeof(cfg.user), "65533:65533");
	sw_log_init("priv_test", stderr, SW_LOG_ERROR);

	if ((top = fork()) == 0) {
		close(pp[0]);
		if (sbd_priv_split(&cfg, &sock, err, sizeof(err)) != 0) {
			fprintf(stderr, "split: %s\n", err);
			_exit(90);
		}
		service_side(pp[1]);
	}
	SW_CHECK(top > 0);
	close(pp[1]);
	while ((n = read(pp[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = '\0';
	close(pp[0]);
	SW_CHECK(waitpid(top, &st, 0) == top);
	SW_CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 7, "privileged part ended with %d",
		  WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
	SW_CHECKF(sscanf(buf, "%d %d", &a, &b) == 2, "service side said '%s'", buf);
	SW_CHECK(a > 0 && b > 0);
	/* the privileged part destroyed what the service side still held */
	SW_CHECKF(kill(a, 0) != 0 && kill(b, 0) != 0, "sandboxes %d %d outlived sandboxd", a, b);
	/* and removed its state directory */
	{
		struct stat sst;

		SW_CHECK(stat(state_dir, &sst) != 0 && errno == ENOENT);
	}
	remove_variants();
	printf("priv_test: ok\n");
	return 0;
}
