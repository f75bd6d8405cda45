/*
 * The sagewai command line without any server: --help of every command,
 * usage errors (exit 2, one line), an unreachable scheduler or audit
 * service (exit 1, one line naming the URL, no token in it), and the
 * offline "audit verify" on a log written here with sw_alog.
 *
 *   cli_test PATH_TO_SAGEWAI
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "cli_spawn.h"
#include "sw_alog.h"

static const char *bin;

#define TOKEN "tok-9f8e7d6c5b4a-SECRET"
#define ADMIN "adm-0a1b2c3d4e5f-SECRET"

static char *env_clean[] = {"PATH=/usr/bin:/bin", NULL};

static void run(const char *const *args, char *const *envp, struct cli_out *o)
{
	cli_runv(bin, args, envp ? envp : env_clean, NULL, o);
}

static void join(const char *const *args, char *out, size_t n)
{
	size_t len = 0;
	int i;

	out[0] = '\0';
	for (i = 0; args[i] != NULL && len < n; i++)
		len += (size_t)snprintf(out + len, n - len, "%s%s", i ? " " : "", args[i]);
}

/* --help: exit 0, the usage line on stdout naming the command, each
 * argument mentioned, nothing on stderr. */
struct help_case {
	const char *args[6];
	const char *usage;     /* expected start of stdout */
	const char *must[6];   /* substrings stdout must hold */
};

static void test_help(void)
{
	static const struct help_case cases[] = {
		{{"--help"}, "usage: sagewai ", {"workflow apply FILE", "run submit WORKFLOW",
						"audit verify [DIR]", "tenant create NAME",
						"--url", "--token"}},
		{{"-h"}, "usage: sagewai ", {"SAGEWAI_URL", "SAGEWAI_AUDIT_URL", "SAGEWAI_TOKEN",
					    "--json"}},
		{{"help"}, "usage: sagewai ", {"run show ID"}},
		{{"workflow", "--help"}, "usage: sagewai workflow", {"apply FILE", "list"}},
		{{"workflow", "apply", "--help"}, "usage: sagewai workflow apply FILE",
		 {"FILE:LINE:COL"}},
		{{"workflow", "list", "--help"}, "usage: sagewai workflow list", {"version"}},
		{{"run", "--help"}, "usage: sagewai run", {"submit WORKFLOW", "show ID", "list",
							 "cancel ID", "watch ID"}},
		{{"run", "submit", "--help"}, "usage: sagewai run submit WORKFLOW",
		 {"--version N", "--input JSON", "@FILE", "--watch", "--json"}},
		{{"run", "show", "--help"}, "usage: sagewai run show ID", {"attempts", "output"}},
		{{"run", "list", "--help"}, "usage: sagewai run list", {"newest"}},
		{{"run", "cancel", "--help"}, "usage: sagewai run cancel ID", {"409"}},
		{{"run", "watch", "--help"}, "usage: sagewai run watch ID", {"Exit 0"}},
		{{"audit", "--help"}, "usage: sagewai audit", {"run ID", "verify [DIR]"}},
		{{"audit", "run", "--help"}, "usage: sagewai audit run ID", {"--audit-url"}},
		{{"audit", "verify", "--help"}, "usage: sagewai audit verify [DIR]",
		 {"SAGEWAI_DATA_DIR", "ok:", "BAD:"}},
		{{"--help"}, "usage: sagewai ", {"audit tail", "replay publish --to TOPIC"}},
		{{"audit", "tail", "--help"}, "usage: sagewai audit tail",
		 {"--follow", "--run ID", "--type T", "--lines N", "--log DIR", "--json"}},
		{{"replay", "--help"}, "usage: sagewai replay", {"publish --to TOPIC"}},
		{{"replay", "publish", "--help"}, "usage: sagewai replay publish --to TOPIC",
		 {"--state FILE", "--into-live", "--rate N", "--mark",
		  "sagewai.replay=\"ID/SEQ TOPIC/PARTITION/OFFSET\""}},
		{{"tenant", "--help"}, "usage: sagewai tenant", {"create NAME"}},
		{{"tenant", "create", "--help"}, "usage: sagewai tenant create NAME",
		 {"SAGEWAI_ADMIN_TOKEN", "shown once"}},
		{{"--help"}, "usage: sagewai ", {"user create|delete NAME --tenant T",
						"user list --tenant T", "key create --tenant T"}},
		{{"user", "--help"}, "usage: sagewai user", {"create NAME --tenant T",
							   "list --tenant T",
							   "delete NAME --tenant T"}},
		{{"user", "create", "--help"}, "usage: sagewai user create NAME --tenant T",
		 {"[a-z0-9][a-z0-9_.-]{0,62}", "default", "SAGEWAI_ADMIN_TOKEN", "--json"}},
		{{"user", "list", "--help"}, "usage: sagewai user list --tenant T", {"keys"}},
		{{"user", "delete", "--help"}, "usage: sagewai user delete NAME --tenant T",
		 {"revoked"}},
		{{"key", "--help"}, "usage: sagewai key", {"--role auditor", "--tenant T [--user U]"}},
		{{"key", "create", "--help"}, "usage: sagewai key create --role auditor",
		 {"--tenant T [--user U]", "record U", "Printed once", "SAGEWAI_ADMIN_TOKEN"}},
		/* help wins over anything else on the line */
		{{"run", "submit", "--bogus", "-h"}, "usage: sagewai run submit", {"--watch"}},
		{{"help", "run", "submit"}, "usage: sagewai run submit", {"--input"}},
		{{"--json", "audit", "verify", "--help"}, "usage: sagewai audit verify", {"DIR"}},
	};
	size_t i;
	int j;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct help_case *c = &cases[i];
		struct cli_out o;
		char what[256];

		join(c->args, what, sizeof(what));
		run(c->args, NULL, &o);
		if (o.status != 0 || strncmp(o.out, c->usage, strlen(c->usage)) != 0 ||
		    o.err[0] != '\0') {
			cli_out_dump(what, &o);
			SW_CHECKF(0, "help of '%s'", what);
		}
		for (j = 0; j < (int)(sizeof(c->must) / sizeof(c->must[0])) && c->must[j] != NULL;
		     j++)
			SW_CHECKF(strstr(o.out, c->must[j]) != NULL, "help of '%s' lacks '%s'",
				  what, c->must[j]);
		cli_out_free(&o);
	}
}

/* Usage errors: exit 2, nothing on stdout, one line "sagewai: ..." on
 * stderr holding the expected words. */
struct usage_case {
	const char *args[8];
	const char *must;
};

static void test_usage(void)
{
	static const struct usage_case cases[] = {
		{{NULL}, "missing command"},
		{{"frobnicate"}, "unknown command 'frobnicate'"},
		{{"--bogus"}, "unknown option --bogus"},
		{{"workflow"}, "workflow: missing command"},
		{{"workflow", "delete"}, "unknown command 'delete'"},
		{{"workflow", "apply"}, "missing FILE"},
		{{"workflow", "apply", "a.yaml", "b.yaml"}, "unexpected argument 'b.yaml'"},
		{{"workflow", "list", "extra"}, "unexpected argument"},
		{{"run"}, "run: missing command"},
		{{"run", "submit"}, "missing WORKFLOW"},
		{{"run", "submit", "wf", "--version", "0"}, "--version must be a positive integer"},
		{{"run", "submit", "wf", "--version", "2x"}, "positive integer"},
		{{"run", "submit", "wf", "--version"}, "--version needs a value"},
		{{"run", "submit", "wf", "--input", "{\"a\":"}, "--input is not valid JSON"},
		{{"run", "submit", "wf", "--input", "[1,2]"}, "--input must be a JSON object"},
		{{"run", "submit", "wf", "--watch=yes"}, "--watch takes no value"},
		{{"run", "submit", "wf", "--frob=" TOKEN}, "unknown option --frob"},
		{{"run", "show"}, "missing ID"},
		{{"run", "cancel"}, "missing ID"},
		{{"run", "watch"}, "missing ID"},
		{{"run", "show", "a", "b"}, "unexpected argument 'b'"},
		{{"audit", "run"}, "missing ID"},
		{{"audit", "verify"}, "SAGEWAI_DATA_DIR is not set"},
		{{"audit", "verify", "a", "b"}, "unexpected argument"},
		{{"audit", "tail", "--lines", "-1"}, "--lines: a number from 0 to 5000"},
		{{"audit", "tail", "--run", "a/b"}, "--run: a run id is 1-63 characters"},
		{{"audit", "tail", "--type", "run.nonesuch"}, "unknown event type 'run.nonesuch'"},
		{{"audit", "tail", "--type"}, "--type needs a value"},
		{{"replay"}, "replay: missing command"},
		{{"replay", "publish"}, "--to TOPIC is required"},
		{{"replay", "publish", "--to", "t", "--type", "x.y"}, "unknown event type 'x.y'"},
		{{"replay", "publish", "--to", "t", "--rate", "0"}, "--rate: a number of events"},
		{{"replay", "publish", "--to", "t", "--memory", "0"}, "--memory: a number of MB"},
		{{"replay", "publish", "--to", "t", "--since", "yesterday"},
		 "--since: not an RFC 3339 time"},
		{{"replay", "publish", "--to", "t", "--until", "2025-13-01T00:00:00Z"},
		 "--until: not an RFC 3339 time"},
		{{"replay", "publish", "--to", "t", "--run", ""}, "--run: a run id of 1-63"},
		{{"tenant", "create"}, "missing NAME"},
		{{"tenant", "create", "acme"}, "SAGEWAI_ADMIN_TOKEN is not set"},
		{{"user"}, "user: missing command"},
		{{"user", "rename"}, "unknown command 'rename'"},
		{{"user", "create", "--tenant", "acme"}, "missing NAME"},
		{{"user", "create", "alice"}, "--tenant T is required"},
		{{"user", "create", "alice", "--tenant"}, "--tenant needs a tenant's name or id"},
		{{"user", "create", "alice", "bob", "--tenant", "acme"}, "unexpected argument 'bob'"},
		{{"user", "create", "alice", "--tenant", "acme"}, "SAGEWAI_ADMIN_TOKEN is not set"},
		{{"user", "list"}, "--tenant T is required"},
		{{"user", "list", "extra", "--tenant", "acme"}, "unexpected argument 'extra'"},
		{{"user", "delete", "--tenant", "acme"}, "missing NAME"},
		{{"user", "delete", "alice", "--tenant", "acme"}, "SAGEWAI_ADMIN_TOKEN is not set"},
		{{"key", "create"}, "give either --role auditor or --tenant T"},
		{{"key", "create", "--role", "auditor", "--tenant", "acme"}, "give either"},
		{{"key", "create", "--role", "tenant"}, "--role auditor is the one role"},
		{{"key", "create", "--role", "auditor", "--user", "u"}, "--user goes with --tenant"},
		{{"key", "create", "--tenant", "acme"}, "SAGEWAI_ADMIN_TOKEN is not set"},
		{{"--url", "ftp://example.com", "run", "list"}, "--url must be an http"},
		{{"run", "list", "--url"}, "--url needs a value"},
		{{"run", "list", "--token"}, "--token needs a value"},
		{{"run", "list", "--audit-url", "localhost:1"}, "--audit-url must be an http"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct usage_case *c = &cases[i];
		struct cli_out o;
		char what[256];

		join(c->args, what, sizeof(what));
		run(c->args, NULL, &o);
		if (o.status != 2 || o.out[0] != '\0' || cli_lines(o.err) != 1 ||
		    strncmp(o.err, "sagewai: ", 9) != 0 || strstr(o.err, c->must) == NULL ||
		    strstr(o.err, TOKEN) != NULL) {
			cli_out_dump(what, &o);
			SW_CHECKF(0, "usage error of '%s' (want '%s')", what, c->must);
		}
		cli_out_free(&o);
	}
	/* a token with a line break never reaches a header */
	{
		char *envp[] = {"SAGEWAI_TOKEN=abc\r\nX-Evil: 1", NULL};
		const char *args[] = {"run", "list", NULL};
		struct cli_out o;

		run(args, envp, &o);
		SW_CHECK(o.status == 2 && cli_lines(o.err) == 1);
		SW_CHECK(strstr(o.err, "X-Evil") == NULL);
		cli_out_free(&o);
	}
}

/* A TCP port on loopback that refuses connections: bound, never listening. */
static int refusing_port(int *fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	SW_CHECK((*fd = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	SW_CHECK(bind(*fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	SW_CHECK(getsockname(*fd, (struct sockaddr *)&a, &len) == 0);
	return ntohs(a.sin_port);
}

static void test_unreachable(void)
{
	static const char *const cmds[][8] = {
		{"workflow", "list"},
		{"workflow", "apply", "/dev/null"},
		{"run", "submit", "wf", "--input", "{\"x\":1}"},
		{"run", "submit", "wf", "--watch"},
		{"run", "show", "r1"},
		{"run", "list"},
		{"run", "watch", "r1"},
		{"run", "cancel", "r1"},
		{"tenant", "create", "acme"},
		{"user", "create", "alice", "--tenant", "acme"},
		{"user", "list", "--tenant", "acme"},
		{"user", "delete", "alice", "--tenant", "acme"},
		{"key", "create", "--tenant", "acme", "--user", "alice"},
		{"audit", "run", "r1"},
	};
	char url[64], aurl[64], tokenenv[] = "SAGEWAI_TOKEN=" TOKEN,
					     adminenv[] = "SAGEWAI_ADMIN_TOKEN=" ADMIN;
	char urlenv[96], aurlenv[96];
	int fd, port = refusing_port(&fd);
	size_t i;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	snprintf(aurl, sizeof(aurl), "http://127.0.0.1:%d/", port);
	snprintf(urlenv, sizeof(urlenv), "SAGEWAI_URL=%s", url);
	snprintf(aurlenv, sizeof(aurlenv), "SAGEWAI_AUDIT_URL=%s", aurl);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int audit = strcmp(cmds[i][0], "audit") == 0;
		char *envp[] = {urlenv, aurlenv, tokenenv, adminenv, NULL};
		char want[160], what[256];
		struct cli_out o;
		int by_flag;

		join(cmds[i], what, sizeof(what));
		/* once through the environment, once through flags */
		for (by_flag = 0; by_flag < 2; by_flag++) {
			char *flag_env[] = {adminenv, NULL}, af[96];
			const char *args[16];
			int n = 0, k;

			snprintf(af, sizeof(af), "--audit-url=%s", aurl);
			if (by_flag) {
				args[n++] = "--url";
				args[n++] = url;
				args[n++] = "--token";
				args[n++] = TOKEN;
			}
			for (k = 0; cmds[i][k] != NULL; k++)
				args[n++] = cmds[i][k];
			if (by_flag)
				args[n++] = af;
			args[n] = NULL;
			run(args, by_flag ? flag_env : envp, &o);
			snprintf(want, sizeof(want), "sagewai: cannot reach the %s at %s: ",
				 audit ? "audit service" : "scheduler", url);
			if (o.status != 1 || cli_lines(o.err) != 1 ||
			    strncmp(o.err, want, strlen(want)) != 0 ||
			    strstr(o.err, TOKEN) != NULL || strstr(o.err, ADMIN) != NULL ||
			    o.out[0] != '\0') {
				cli_out_dump(what, &o);
				SW_CHECKF(0, "unreachable: '%s' (flags %d)", what, by_flag);
			}
			cli_out_free(&o);
		}
	}
	close(fd);
}

static void test_verify(void)
{
	char dir[] = "/tmp/sagewai-cli-verify-XXXXXX", logdir[128], path[256], err[256];
	char dataenv[160], *envp[] = {dataenv, NULL};
	const char *args_dir[] = {"audit", "verify", logdir, NULL};
	const char *args_json[] = {"audit", "verify", "--json", logdir, NULL};
	const char *args_dflt[] = {"audit", "verify", NULL};
	struct sw_alog *l;
	struct cli_out o;
	uint64_t seq, seg, off, off2 = 0;
	int i, fd;

	SW_CHECK(mkdtemp(dir) != NULL);
	snprintf(logdir, sizeof(logdir), "%s/audit", dir);
	snprintf(dataenv, sizeof(dataenv), "SAGEWAI_DATA_DIR=%s", dir);
	SW_CHECKF((l = sw_alog_open(logdir, 0, NULL, err, sizeof(err))) != NULL, "%s", err);
	for (i = 0; i < 3; i++) {
		SW_CHECK(sw_alog_append(l, SW_ALOG_RAW, "sagewai.runs", 0, i, 1000 + i, "payload",
					7, &seq, &seg, &off, err, sizeof(err)) == 0);
		if (i == 1)
			off2 = off;
	}
	SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == 0);
	sw_alog_close(l);

	run(args_dir, NULL, &o);
	if (o.status != 0 || strncmp(o.out, "ok: 3 records, 0 checkpoints, chain head ", 41) != 0) {
		cli_out_dump("audit verify DIR", &o);
		SW_CHECK(0);
	}
	cli_out_free(&o);
	run(args_dflt, envp, &o);
	SW_CHECK(o.status == 0 && strncmp(o.out, "ok: 3 records", 13) == 0);
	cli_out_free(&o);
	run(args_json, NULL, &o);
	SW_CHECK(o.status == 0 && strncmp(o.out, "{\"ok\":true,\"records\":3", 22) == 0);
	cli_out_free(&o);

	/* flip a byte of the second record's body */
	snprintf(path, sizeof(path), "%s/seg-%020llu.swlog", logdir, (unsigned long long)seg);
	SW_CHECK((fd = open(path, O_RDWR)) != -1);
	{
		char c;

		SW_CHECK(pread(fd, &c, 1, (off_t)off2 + 4 + 8 + 32 + 3) == 1);
		c ^= 0x20;
		SW_CHECK(pwrite(fd, &c, 1, (off_t)off2 + 4 + 8 + 32 + 3) == 1);
	}
	close(fd);
	run(args_dir, NULL, &o);
	if (o.status != 1 || strncmp(o.out, "BAD: record seq 2 ", 18) != 0 || o.err[0]) {
		cli_out_dump("audit verify (corrupt)", &o);
		SW_CHECK(0);
	}
	cli_out_free(&o);
	run(args_json, NULL, &o);
	SW_CHECK(o.status == 1 && strstr(o.out, "\"bad_seq\":2") != NULL);
	cli_out_free(&o);

	/* no such directory: one line, failure */
	{
		const char *args[] = {"audit", "verify", "/nonexistent/sagewai/audit", NULL};

		run(args, NULL, &o);
		SW_CHECK(o.status == 1 && cli_lines(o.err) == 1 && o.out[0] == '\0');
		SW_CHECK(strncmp(o.err, "sagewai: audit verify: ", 23) == 0);
		cli_out_free(&o);
	}
	unlink(path);
	rmdir(logdir);
	rmdir(dir);
}

static void test_files(void)
{
	const char *a1[] = {"workflow", "apply", "/nonexistent/wf.yaml", NULL};
	const char *a2[] = {"run", "submit", "wf", "--input", "@/nonexistent/in.json", NULL};
	struct cli_out o;

	run(a1, NULL, &o);
	SW_CHECK(o.status == 1 && cli_lines(o.err) == 1);
	SW_CHECK(strstr(o.err, "cannot read /nonexistent/wf.yaml") != NULL);
	cli_out_free(&o);
	run(a2, NULL, &o);
	SW_CHECK(o.status == 1 && cli_lines(o.err) == 1);
	SW_CHECK(strstr(o.err, "cannot read /nonexistent/in.json") != NULL);
	cli_out_free(&o);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: cli_test PATH_TO_SAGEWAI\n");
		return 2;
	}
	bin = argv[1];
	test_help();
	test_usage();
	test_unreachable();
	test_verify();
	test_files();
	printf("cli ok\n");
	return 0;
}
