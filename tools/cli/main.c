/*
 * sagewai: see cli.h. This file reads the environment and the global
 * options, parses each command's arguments and dispatches to a group.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sw_core.h"

static const char main_help[] =
	"usage: sagewai [global options] COMMAND [arguments]\n"
	"\n"
	"Commands:\n"
	"  workflow apply FILE             register a workflow from its YAML file\n"
	"  workflow list                   list the registered workflows\n"
	"  run submit WORKFLOW [--version N] [--input JSON|@FILE] [--watch]\n"
	"                                  start a run (and follow it)\n"
	"  run show ID                     a run and its steps\n"
	"  run list                        the newest runs\n"
	"  run watch ID                    follow a run until it ends\n"
	"  run cancel ID                   ask for a run to be cancelled\n"
	"  audit run ID                    a run's events from the audit log\n"
	"  audit verify [DIR]              check an audit log offline\n"
	"  audit export --run ID           a run's records with what proves them\n"
	"  audit tail [--follow]           the newest audit events (and then new ones)\n"
	"  replay publish --to TOPIC       re-publish audit log events to a Kafka topic\n"
	"  replay run ID [--latest]        re-run a run from its audit trail, diff the outputs\n"
	"  tenant create NAME              create a tenant and print its id and key\n"
	"  tenant delete NAME|ID           delete a tenant (its keys stop working)\n"
	"  key create --role auditor       an auditor key for the audit API\n"
	"  key create --tenant T [--user U]  a key of tenant T (of its user U)\n"
	"  user create|delete NAME --tenant T, user list --tenant T\n"
	"                                  a tenant's users (runs record who submitted)\n"
	"  secret set NAME [--backend B]   store a secret read from stdin (a new version)\n"
	"  secret list|rotate|revoke|delete|rekey\n"
	"                                  a tenant's secrets (see 'sagewai secret --help')\n"
	"  identity profile set|show|list|delete NAME\n"
	"                                  identity profiles (system, workflow, user)\n"
	"  identity resolve --workflow W   the identity cascade of a workflow's steps\n"
	"  policy apply|show|test          a tenant's credential policy (docs/POLICY.md)\n"
	"  approvals list|approve|deny|watch\n"
	"                                  credential requests waiting for a person\n"
	"\n"
	"Global options (accepted anywhere on the line):\n"
	"  --url URL         the scheduler (SAGEWAI_URL, default " CLI_DEFAULT_URL ")\n"
	"  --audit-url URL   the audit service (SAGEWAI_AUDIT_URL, default "
	CLI_DEFAULT_AUDIT_URL ")\n"
	"  --identity-url URL  the identity service (SAGEWAI_IDENTITY_URL, default\n"
	"                    " CLI_DEFAULT_IDENTITY_URL ")\n"
	"  --policy-url URL  the policy service (SAGEWAI_POLICY_URL, default\n"
	"                    " CLI_DEFAULT_POLICY_URL ")\n"
	"  --tenant REF      the tenant (name or id) an operator's secret/identity call\n"
	"                    acts on ('_system' for operator-wide secrets)\n"
	"  --token TOKEN     the tenant's API key, sent as a Bearer token (SAGEWAI_TOKEN)\n"
	"  --json            print the raw JSON answers (for scripts)\n"
	"  --help, -h        help; 'sagewai COMMAND [SUBCOMMAND] --help' for one command\n"
	"\n"
	"Environment: SAGEWAI_ADMIN_TOKEN (tenant, key, user, secret, identity),\n"
	"SAGEWAI_DATA_DIR (audit verify, replay publish), SAGEWAI_KAFKA_BOOTSTRAP (replay\n"
	"publish).\n"
	"Exit status: 0 ok, 1 failure (server error, failed run, bad log), 2 usage.\n";

static void vline(const char *prefix, const char *fmt, va_list ap)
{
	char msg[2048], line[2048];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	cli_oneline(msg, 0, line, sizeof(line));
	fprintf(stderr, "sagewai: %s%s\n", prefix, line);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline("", fmt, ap);
	va_end(ap);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cmd != NULL)
		cli_error("%s: %s (see 'sagewai %s --help')", cmd, msg, cmd);
	else
		cli_error("%s (see 'sagewai --help')", msg);
	return CLI_USAGE;
}

/* Store a base URL without its trailing slashes; -1 if it is no http(s) URL. */
static int set_url(char **dst, const char *v)
{
	size_t n = strlen(v);
	char *u;

	if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
		return -1;
	while (n > 0 && v[n - 1] == '/')
		n--;
	if ((u = strndup(v, n)) == NULL)
		return -1;
	free(*dst);
	*dst = u;
	return 0;
}

/* A token goes into a header line: refuse control characters. */
static int token_ok(const char *t)
{
	for (; *t; t++)
		if ((unsigned char)*t < 0x20 || *t == 0x7f)
			return 0;
	return 1;
}

/* The option name of argv[*i] (before any '='), and its value: after '='
 * or the next argument. NULL value when there is none. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (a[n] == '=')
		return a + n + 1;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static int opt_is(const char *a, const char *name)
{
	size_t n = strlen(name);

	return strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

/* A global option at argv[*i]: 1 when taken (and *i advanced past its
 * value), 0 when argv[*i] is none, -1 after a usage error. */
static int global_opt(struct cli_env *env, const char *cmd, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *v;

	if (strcmp(a, "--json") == 0) {
		env->json = 1;
		return 1;
	}
	if (opt_is(a, "--url") || opt_is(a, "--audit-url")) {
		int audit = opt_is(a, "--audit-url");
		const char *name = audit ? "--audit-url" : "--url";

		if ((v = opt_value(argc, argv, i, name)) == NULL) {
			cli_usage(cmd, "%s needs a value", name);
			return -1;
		}
		if (set_url(audit ? &env->audit_url : &env->url, v) == -1) {
			cli_usage(cmd, "%s must be an http:// or https:// URL", name);
			return -1;
		}
		return 1;
	}
	if (opt_is(a, "--identity-url")) {
		if ((v = opt_value(argc, argv, i, "--identity-url")) == NULL) {
			cli_usage(cmd, "--identity-url needs a value");
			return -1;
		}
		if (set_url(&env->identity_url, v) == -1) {
			cli_usage(cmd, "--identity-url must be an http:// or https:// URL");
			return -1;
		}
		return 1;
	}
	if (opt_is(a, "--policy-url")) {
		if ((v = opt_value(argc, argv, i, "--policy-url")) == NULL) {
			cli_usage(cmd, "--policy-url needs a value");
			return -1;
		}
		if (set_url(&env->policy_url, v) == -1) {
			cli_usage(cmd, "--policy-url must be an http:// or https:// URL");
			return -1;
		}
		return 1;
	}
	if (opt_is(a, "--tenant")) {
		if ((v = opt_value(argc, argv, i, "--tenant")) == NULL || *v == '\0') {
			cli_usage(cmd, "--tenant needs a tenant's name or id");
			return -1;
		}
		env->tenant = v;
		return 1;
	}
	if (opt_is(a, "--token")) {
		if ((v = opt_value(argc, argv, i, "--token")) == NULL) {
			cli_usage(cmd, "--token needs a value");
			return -1;
		}
		if (!token_ok(v)) {
			cli_usage(cmd, "the --token value contains control characters");
			return -1;
		}
		env->token = v;
		return 1;
	}
	return 0;
}

static int is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* The name of an unknown option without any "=value" (which may be secret). */
static void opt_name(const char *a, char *out, size_t outlen)
{
	size_t n = strcspn(a, "=");
	char tmp[64];

	snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 63 ? n : 63), a);
	cli_oneline(tmp, 40, out, outlen);
}

int cli_parse(struct cli_env *env, const char *cmd, int argc, char **argv,
	      const struct cli_opt *opts, const char **pos, int maxpos)
{
	const struct cli_opt *o;
	char name[64], shown[64];
	int i, npos = 0, rc;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (is_help(argv[i]))
			return -2;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			for (i++; i < argc; i++) {
				if (npos >= maxpos)
					goto extra;
				pos[npos++] = argv[i];
			}
			break;
		}
		if ((rc = global_opt(env, cmd, argc, argv, &i)) == -1)
			return -1;
		if (rc == 1)
			continue;
		for (o = opts; o != NULL && o->name != NULL; o++)
			if (opt_is(a, o->name))
				break;
		if (o != NULL && o->name != NULL) {
			if (o->val == NULL) {
				if (a[strlen(o->name)] == '=') {
					cli_usage(cmd, "%s takes no value", o->name);
					return -1;
				}
				*o->flag = 1;
			} else if ((*o->val = opt_value(argc, argv, &i, o->name)) == NULL) {
				cli_usage(cmd, "%s needs a value", o->name);
				return -1;
			}
			continue;
		}
		if (a[0] == '-' && a[1] != '\0') {
			opt_name(a, name, sizeof(name));
			cli_usage(cmd, "unknown option %s", name);
			return -1;
		}
		if (npos >= maxpos)
			goto extra;
		pos[npos++] = a;
	}
	return npos;
extra:
	cli_oneline(argv[i], 40, shown, sizeof(shown));
	cli_usage(cmd, "unexpected argument '%s'", shown);
	return -1;
}

int cli_group(struct cli_env *env, const char *group, const char *help,
	      const struct cli_cmd *cmds, int argc, char **argv)
{
	const struct cli_cmd *c;
	char name[64];
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(help, stdout);
			return CLI_OK;
		}
		if ((rc = global_opt(env, group, argc, argv, &i)) == -1)
			return CLI_USAGE;
		if (rc == 1)
			continue;
		if (argv[i][0] == '-') {
			opt_name(argv[i], name, sizeof(name));
			return cli_usage(group, "unknown option %s", name);
		}
		break;
	}
	if (i >= argc)
		return cli_usage(group, "missing command");
	for (c = cmds; c->name != NULL; c++)
		if (strcmp(c->name, argv[i]) == 0)
			return c->fn(env, argc - i, argv + i);
	cli_oneline(argv[i], 40, name, sizeof(name));
	return cli_usage(group, "unknown command '%s'", name);
}

static int dispatch(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd groups[] = {
		{"workflow", cli_workflow},
		{"run", cli_run},
		{"audit", cli_audit},
		{"tenant", cli_tenant},
		{"key", cli_key},
		{"user", cli_user},
		{"secret", cli_secret},
		{"identity", cli_identity},
		{"replay", cli_replay},
		{"policy", cli_policy},
		{"approvals", cli_approvals},
		{NULL, NULL},
	};
	char **hargv = NULL;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(main_help, stdout);
			return CLI_OK;
		}
		if ((rc = global_opt(env, NULL, argc, argv, &i)) == -1)
			return CLI_USAGE;
		if (rc == 0 && argv[i][0] == '-') {
			char name[64];

			opt_name(argv[i], name, sizeof(name));
			return cli_usage(NULL, "unknown option %s", name);
		}
		if (rc == 0)
			break;
	}
	if (i >= argc) {
		cli_usage(NULL, "missing command");
		return CLI_USAGE;
	}
	/* "sagewai help [GROUP [COMMAND]]" is "sagewai GROUP COMMAND --help" */
	if (strcmp(argv[i], "help") == 0) {
		int n = argc - i - 1;

		if (n == 0) {
			fputs(main_help, stdout);
			return CLI_OK;
		}
		if ((hargv = calloc((size_t)n + 2, sizeof(*hargv))) == NULL) {
			cli_error("out of memory");
			return CLI_FAIL;
		}
		memcpy(hargv, argv + i + 1, (size_t)n * sizeof(*hargv));
		hargv[n] = "--help";
		argc = n + 1;
		argv = hargv;
		i = 0;
	}
	{
		const struct cli_cmd *c;
		char name[64];

		for (c = groups; c->name != NULL; c++)
			if (strcmp(c->name, argv[i]) == 0)
				break;
		if (c->name != NULL) {
			rc = c->fn(env, argc - i, argv + i);
		} else {
			cli_oneline(argv[i], 40, name, sizeof(name));
			rc = cli_usage(NULL, "unknown command '%s'", name);
		}
	}
	free(hargv);
	return rc;
}

int main(int argc, char **argv)
{
	struct cli_env env;
	const char *v;
	int rc;

	memset(&env, 0, sizeof(env));
	v = getenv("SAGEWAI_URL");
	if (set_url(&env.url, v != NULL && *v ? v : CLI_DEFAULT_URL) == -1) {
		cli_error("SAGEWAI_URL must be an http:// or https:// URL");
		return CLI_USAGE;
	}
	v = getenv("SAGEWAI_AUDIT_URL");
	if (set_url(&env.audit_url, v != NULL && *v ? v : CLI_DEFAULT_AUDIT_URL) == -1) {
		cli_error("SAGEWAI_AUDIT_URL must be an http:// or https:// URL");
		rc = CLI_USAGE;
		goto out;
	}
	v = getenv("SAGEWAI_IDENTITY_URL");
	if (set_url(&env.identity_url, v != NULL && *v ? v : CLI_DEFAULT_IDENTITY_URL) == -1) {
		cli_error("SAGEWAI_IDENTITY_URL must be an http:// or https:// URL");
		rc = CLI_USAGE;
		goto out;
	}
	v = getenv("SAGEWAI_POLICY_URL");
	if (set_url(&env.policy_url, v != NULL && *v ? v : CLI_DEFAULT_POLICY_URL) == -1) {
		cli_error("SAGEWAI_POLICY_URL must be an http:// or https:// URL");
		rc = CLI_USAGE;
		goto out;
	}
	v = getenv("SAGEWAI_TOKEN");
	env.token = v != NULL && *v ? v : NULL;
	v = getenv("SAGEWAI_ADMIN_TOKEN");
	env.admin_token = v != NULL && *v ? v : NULL;
	v = getenv("SAGEWAI_DATA_DIR");
	env.data_dir = v != NULL && *v ? v : NULL;
	if ((env.token != NULL && !token_ok(env.token)) ||
	    (env.admin_token != NULL && !token_ok(env.admin_token))) {
		cli_error("SAGEWAI_TOKEN or SAGEWAI_ADMIN_TOKEN contains control characters");
		rc = CLI_USAGE;
		goto out;
	}
	if (cli_http_init() == -1) {
		cli_error("cannot initialise libcurl");
		rc = CLI_FAIL;
		goto out;
	}
	rc = dispatch(&env, argc, argv);
	cli_http_cleanup();
	if (fflush(stdout) == EOF && rc == CLI_OK) {
		cli_error("cannot write the output: %s", strerror(errno));
		rc = CLI_FAIL;
	}
out:
	free(env.url);
	free(env.audit_url);
	free(env.identity_url);
	free(env.policy_url);
	return rc;
}

char *cli_read_file(const char *path, size_t max, size_t *len, char *errstr, size_t errlen)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	struct sw_buf b;
	char chunk[4096], shown[256];
	size_t got;

	cli_oneline(path, 200, shown, sizeof(shown));
	if (f == NULL) {
		snprintf(errstr, errlen, "cannot read %s: %s", shown, strerror(errno));
		return NULL;
	}
	sw_buf_init(&b, max);
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (sw_buf_add(&b, chunk, got) == -1)
			break;
	sw_buf_add(&b, "", 0); /* an empty file is "", not NULL */
	if (b.oom) {
		snprintf(errstr, errlen, "out of memory reading %s", shown);
		goto fail;
	}
	if (b.over) {
		snprintf(errstr, errlen, "%s is larger than %zu bytes", shown, max);
		goto fail;
	}
	if (ferror(f)) {
		snprintf(errstr, errlen, "cannot read %s: %s", shown, strerror(errno));
		goto fail;
	}
	if (f != stdin)
		fclose(f);
	return sw_buf_steal(&b, len);
fail:
	sw_buf_free(&b);
	if (f != stdin)
		fclose(f);
	return NULL;
}
