/*
 * sagewai policy apply|show|test and sagewai approvals list|approve|deny|
 * watch: a thin client of sagewai-policy's API (docs/POLICY.md).
 *
 *   policy apply FILE            PUT  /v1/policies/{tenant}?filename=F
 *   policy show                  GET  /v1/policies/{tenant}
 *   policy test --request JSON   POST /v1/policies/{tenant}/test
 *   approvals list [--all]       GET  /v1/approvals[?state=pending][&tenant=T]
 *   approvals approve|deny ID --reason R
 *                                POST /v1/approvals/{id}/approve|deny
 *   approvals watch              GET  /v1/approvals/stream (until interrupted)
 *
 * The tenant is --tenant (its name or id; "default" when not given, the
 * single_org tenant; "_system" for the operator's policy). The credential
 * is SAGEWAI_ADMIN_TOKEN when set, else the key of --token/SAGEWAI_TOKEN.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "sse.h"
#include "sw_core.h"

#define POLICY_MAX_FILE (256u << 10)

static const char policy_help[] =
	"usage: sagewai policy COMMAND [--tenant T]\n"
	"\n"
	"  apply FILE                 check and apply a policy file (YAML) for the tenant\n"
	"  show                       the policy applied, as it was applied\n"
	"  test --request JSON|@FILE  which rule fires for a request {\"name\", \"scope\",\n"
	"                             \"workflow\", \"step\", \"cli_agent\"}\n"
	"\n"
	"The tenant is --tenant (name or id; default 'default'; '_system' for the\n"
	"operator's policy). The policy service is at --policy-url or $SAGEWAI_POLICY_URL\n"
	"(default " CLI_DEFAULT_POLICY_URL "). See docs/POLICY.md for the language.\n";

static const char apply_help[] =
	"usage: sagewai policy apply FILE [--tenant T] [--json]\n"
	"\n"
	"Send FILE ('-' for standard input) to the policy service, which checks it and,\n"
	"when it is valid, makes it the tenant's policy (a new version). An invalid file\n"
	"is refused with FILE:LINE:COL and the reason; so is a policy that would allow\n"
	"every credential (unless its rule says override: allow-all with a\n"
	"justification:, which is logged and recorded). Needs SAGEWAI_ADMIN_TOKEN or the\n"
	"tenant's tenant-wide key.\n";

static const char show_help[] =
	"usage: sagewai policy show [--tenant T] [--json]\n"
	"\n"
	"Print the tenant's policy as it was applied, after a comment line with its\n"
	"version, file name, who applied it and when.\n";

static const char test_help[] =
	"usage: sagewai policy test --request JSON|@FILE [--tenant T] [--json]\n"
	"\n"
	"Ask which rule fires for a credential request, without deciding anything:\n"
	"JSON is {\"name\": ENV, \"scope\": S, \"workflow\": W, \"step\": S, \"cli_agent\": A}\n"
	"(name required). The operator's _system policy is evaluated first, then the\n"
	"tenant's; no match denies. Prints e.g. \"allow by rule push-own-org (tenant\n"
	"policy, line 4)\".\n";

static const char approvals_help[] =
	"usage: sagewai approvals COMMAND\n"
	"\n"
	"  list [--all]            the credential requests waiting for a person\n"
	"                          (--all: and the recent decided ones)\n"
	"  approve ID --reason R   grant the request of approval ID\n"
	"  deny ID --reason R      refuse it\n"
	"  watch                   print approvals as they change, until interrupted\n"
	"\n"
	"The operator's token sees every tenant (or --tenant T); a tenant's key sees its\n"
	"own. Deciding needs SAGEWAI_ADMIN_TOKEN or the key of a user named in the\n"
	"tenant's policy under approvers:.\n";

static const char list_help[] =
	"usage: sagewai approvals list [--all] [--tenant T] [--json]\n"
	"\n"
	"One line per approval: ID, RUN, STEP, NAME, SCOPE, STATUS (pending, approved,\n"
	"denied, expired, withdrawn), the time left (pending) or who decided, and the\n"
	"requester's reason.\n";

static const char decide_help[] =
	"usage: sagewai approvals approve|deny ID --reason R [--json]\n"
	"\n"
	"Decide approval ID (from 'approvals list'). The reason and who decided (the\n"
	"operator, or the key's user) are recorded and published with the decision. An\n"
	"approval already decided, expired or withdrawn is refused (HTTP 409).\n";

static const char watch_help[] =
	"usage: sagewai approvals watch [--tenant T] [--json]\n"
	"\n"
	"Print the approvals (pending first), then one line per change as it happens\n"
	"(new, approved, denied, expired, withdrawn) until interrupted. --json prints\n"
	"each approval as one JSON line.\n";

static const char *token_of(const struct cli_env *env)
{
	return env->admin_token != NULL ? env->admin_token : env->token;
}

static int call(struct cli_env *env, const char *method, const char *path, const char *ctype,
		const char *body, size_t blen, struct cli_resp *r)
{
	char err[2048];

	if (cli_http_call(env, CLI_POLICY_SVC, method, path, ctype, body, blen, token_of(env), r,
			  err, sizeof(err)) == -1) {
		cli_error("%s", err);
		return -1;
	}
	return 0;
}

/* "/v1/policies/<tenant><suffix>" (the tenant escaped); caller frees. */
static char *policy_path(const struct cli_env *env, const char *suffix)
{
	char *t = cli_http_escape(env->tenant != NULL ? env->tenant : "default"), *p = NULL;

	if (t != NULL && asprintf(&p, "/v1/policies/%s%s", t, suffix) == -1)
		p = NULL;
	free(t);
	return p;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s != NULL ? s + 1 : path;
}

static int policy_apply(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "policy apply";
	const struct cli_opt opts[] = {{NULL, NULL, NULL}};
	const char *pos[1], *fname;
	char err[512], *text = NULL, *path = NULL, *suffix = NULL, *fe = NULL, a[200];
	struct cli_resp r = {0};
	size_t len, i;
	json_t *o;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 1)) == -2) {
		fputs(apply_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing FILE");
	if ((text = cli_read_file(pos[0], POLICY_MAX_FILE, &len, err, sizeof(err))) == NULL) {
		cli_error("%s", err);
		return CLI_FAIL;
	}
	fname = strcmp(pos[0], "-") == 0 ? "stdin.yaml" : base_name(pos[0]);
	if (strspn(fname, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		    strlen(fname) ||
	    strlen(fname) == 0 || strlen(fname) > 100)
		fname = "policy.yaml";
	if ((fe = cli_http_escape(fname)) == NULL || asprintf(&suffix, "?filename=%s", fe) == -1 ||
	    (path = policy_path(env, suffix)) == NULL) {
		suffix = NULL;
		cli_error("out of memory");
		goto out;
	}
	if (call(env, "PUT", path, "application/yaml", text, len, &r) == -1)
		goto out;
	rc = CLI_OK;
	if (env->json) {
		cli_raw_print(&r, stdout);
		goto out;
	}
	printf("applied %s for tenant %s: version %lld, %zu rules, %zu approvers\n",
	       cli_oneline(fname, 100, a, sizeof(a)), env->tenant ? env->tenant : "default",
	       (long long)json_integer_value(json_object_get(r.json, "version")),
	       json_array_size(json_object_get(r.json, "rules")),
	       json_array_size(json_object_get(r.json, "approvers")));
	json_array_foreach(json_object_get(r.json, "overrides"), i, o)
		printf("warning: rule %s allows every credential (override: %s)\n",
		       cli_jstr(o, "rule", "?"), cli_jstr(o, "justification", ""));
out:
	cli_resp_free(&r);
	free(text);
	free(fe);
	free(suffix);
	free(path);
	return rc;
}

static int policy_show(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "policy show";
	const struct cli_opt opts[] = {{NULL, NULL, NULL}};
	const char *pos[1], *yaml;
	struct cli_resp r = {0};
	char *path = NULL, when[64];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 0)) == -2) {
		fputs(show_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if ((path = policy_path(env, "")) == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if (call(env, "GET", path, NULL, NULL, 0, &r) == -1)
		goto out;
	rc = CLI_OK;
	if (env->json) {
		cli_raw_print(&r, stdout);
		goto out;
	}
	cli_time_fmt_str(cli_jstr(r.json, "updated", NULL), when, sizeof(when));
	printf("# tenant %s, version %lld, file %s, applied by %s at %s\n",
	       cli_jstr(r.json, "tenant", "?"),
	       (long long)json_integer_value(json_object_get(r.json, "version")),
	       cli_jstr(r.json, "filename", "?"), cli_jstr(r.json, "updated_by", "?"), when);
	yaml = cli_jstr(r.json, "yaml", "");
	fputs(yaml, stdout);
	if (yaml[0] != '\0' && yaml[strlen(yaml) - 1] != '\n')
		putchar('\n');
out:
	cli_resp_free(&r);
	free(path);
	return rc;
}

static int policy_test(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "policy test";
	const char *req = NULL, *pos[1];
	const struct cli_opt opts[] = {{"--request", &req, NULL}, {NULL, NULL, NULL}};
	struct cli_resp r = {0};
	char *path = NULL, *body = NULL, err[512];
	size_t len;
	json_t *j;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 0)) == -2) {
		fputs(test_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (req == NULL)
		return cli_usage(cmd, "missing --request JSON (or @FILE)");
	if (req[0] == '@') {
		if ((body = cli_read_file(req + 1, 64u << 10, &len, err, sizeof(err))) == NULL) {
			cli_error("%s", err);
			return CLI_FAIL;
		}
	} else if ((body = strdup(req)) == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if ((j = json_loads(body, 0, NULL)) == NULL || !json_is_object(j)) {
		json_decref(j);
		free(body);
		return cli_usage(cmd, "--request must be a JSON object");
	}
	json_decref(j);
	if ((path = policy_path(env, "/test")) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (call(env, "POST", path, "application/json", body, strlen(body), &r) == -1)
		goto out;
	rc = CLI_OK;
	if (env->json) {
		cli_raw_print(&r, stdout);
		goto out;
	}
	if (strcmp(cli_jstr(r.json, "by", ""), "no_rule") == 0) {
		printf("deny: no rule matches (%s)\n", cli_jstr(r.json, "reason", ""));
		goto out;
	}
	printf("%s by rule %s (%s policy, line %lld)", cli_jstr(r.json, "decision", "?"),
	       cli_jstr(r.json, "rule", "?"), cli_jstr(r.json, "level", "?"),
	       (long long)json_integer_value(json_object_get(r.json, "line")));
	if (cli_jstr(r.json, "secret", "")[0] != '\0')
		printf(", secret %s", cli_jstr(r.json, "secret", ""));
	if (json_object_get(r.json, "deadline_s") != NULL)
		printf(", a person decides within %llds",
		       (long long)json_integer_value(json_object_get(r.json, "deadline_s")));
	putchar('\n');
out:
	cli_resp_free(&r);
	free(body);
	free(path);
	return rc;
}

int cli_policy(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"apply", policy_apply},
		{"show", policy_show},
		{"test", policy_test},
		{NULL, NULL},
	};

	return cli_group(env, "policy", policy_help, cmds, argc, argv);
}

/* ---- approvals ------------------------------------------------------------------- */

static void left_or_by(json_t *a, char *out, size_t len)
{
	const char *st = cli_jstr(a, "status", "");

	if (strcmp(st, "pending") == 0) {
		long long ms = (long long)json_integer_value(json_object_get(a, "deadline_ms")) -
			       (long long)time(NULL) * 1000;

		if (ms <= 0)
			snprintf(out, len, "due");
		else
			snprintf(out, len, "%lldm%02llds left", ms / 60000, (ms / 1000) % 60);
	} else if (strcmp(st, "expired") == 0) {
		snprintf(out, len, "deadline");
	} else if (strcmp(st, "withdrawn") == 0) {
		snprintf(out, len, "withdrawn");
	} else {
		snprintf(out, len, "%s", cli_jstr(a, "approver", ""));
	}
}

static int approvals_list(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "approvals list";
	static const char *const head[] = {"ID",     "RUN",	"STEP",	  "NAME",
					   "SCOPE",  "STATUS", "LEFT/BY", "REASON"};
	int all = 0, n, rc = CLI_FAIL;
	const struct cli_opt opts[] = {{"--all", NULL, &all}, {NULL, NULL, NULL}};
	const char *pos[1];
	struct cli_resp r = {0};
	struct cli_table *t = NULL;
	char *path = NULL, *te = NULL, lb[160];
	json_t *a;
	size_t i;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 0)) == -2) {
		fputs(list_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (env->tenant != NULL && (te = cli_http_escape(env->tenant)) == NULL)
		goto nomem;
	if (asprintf(&path, "/v1/approvals?state=%s%s%s", all ? "all" : "pending",
		     te ? "&tenant=" : "", te ? te : "") == -1) {
		path = NULL;
		goto nomem;
	}
	if (call(env, "GET", path, NULL, NULL, 0, &r) == -1)
		goto out;
	rc = CLI_OK;
	if (env->json) {
		cli_raw_print(&r, stdout);
		goto out;
	}
	if (json_array_size(json_object_get(r.json, "approvals")) == 0) {
		printf(all ? "no approvals\n" : "nothing is waiting\n");
		goto out;
	}
	if ((t = cli_table_new(8, head)) == NULL)
		goto nomem;
	json_array_foreach(json_object_get(r.json, "approvals"), i, a) {
		const char *row[8] = {cli_jstr(a, "id", ""),	 cli_jstr(a, "run_id", ""),
				      cli_jstr(a, "step", ""),	 cli_jstr(a, "name", ""),
				      cli_jstr(a, "scope", ""),	 cli_jstr(a, "status", ""),
				      lb,			 cli_jstr(a, "request_reason", "")};

		left_or_by(a, lb, sizeof(lb));
		if (cli_table_add(t, row) == -1)
			goto nomem;
	}
	cli_table_print(t, stdout, "");
	goto out;
nomem:
	cli_error("out of memory");
	rc = CLI_FAIL;
out:
	cli_table_free(t);
	cli_resp_free(&r);
	free(te);
	free(path);
	return rc;
}

static int approvals_decide(struct cli_env *env, int argc, char **argv)
{
	const char *reason = NULL, *pos[1];
	const struct cli_opt opts[] = {{"--reason", &reason, NULL}, {NULL, NULL, NULL}};
	int approve = strcmp(argv[0], "approve") == 0, n, rc = CLI_FAIL;
	const char *cmd = approve ? "approvals approve" : "approvals deny";
	struct cli_resp r = {0};
	char *path = NULL, *ie = NULL, *body = NULL;
	json_t *b;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 1)) == -2) {
		fputs(decide_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing ID (see 'sagewai approvals list')");
	if (reason == NULL || reason[0] == '\0')
		return cli_usage(cmd, "missing --reason R (it is recorded with the decision)");
	if ((b = json_pack("{s:s}", "reason", reason)) == NULL)
		return cli_usage(cmd, "--reason must be UTF-8 text");
	body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	if (body == NULL || (ie = cli_http_escape(pos[0])) == NULL ||
	    asprintf(&path, "/v1/approvals/%s/%s", ie, approve ? "approve" : "deny") == -1) {
		path = NULL;
		cli_error("out of memory");
		goto out;
	}
	if (call(env, "POST", path, "application/json", body, strlen(body), &r) == -1)
		goto out;
	rc = CLI_OK;
	if (env->json) {
		cli_raw_print(&r, stdout);
		goto out;
	}
	printf("%s %s: %s for run %s, step %s\n", approve ? "approved" : "denied",
	       cli_jstr(r.json, "id", pos[0]), cli_jstr(r.json, "name", "?"),
	       cli_jstr(r.json, "run_id", "?"), cli_jstr(r.json, "step", "?"));
out:
	cli_resp_free(&r);
	free(body);
	free(ie);
	free(path);
	return rc;
}

struct watch {
	struct cli_env *env;
};

static void watch_line(struct cli_env *env, json_t *a)
{
	char lb[160], line[1024], out[1024];

	if (env->json) {
		json_dumpf(a, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		left_or_by(a, lb, sizeof(lb));
		snprintf(line, sizeof(line), "%s %-9s %s %s scope=%s run=%s step=%s (%s) %s",
			 cli_jstr(a, "id", "?"), cli_jstr(a, "status", "?"),
			 cli_jstr(a, "tenant", ""), cli_jstr(a, "name", "?"),
			 cli_jstr(a, "scope", ""), cli_jstr(a, "run_id", ""),
			 cli_jstr(a, "step", ""), lb, cli_jstr(a, "request_reason", ""));
		printf("%s\n", cli_oneline(line, 0, out, sizeof(out)));
	}
	fflush(stdout);
}

static int watch_event(const char *event, const char *data, size_t len, void *opaque)
{
	struct watch *w = opaque;
	json_t *j = json_loadb(data, len, 0, NULL), *a;
	size_t i;

	if (j == NULL)
		return 0;
	if (strcmp(event, "snapshot") == 0)
		json_array_foreach(json_object_get(j, "approvals"), i, a)
			watch_line(w->env, a);
	else if (strcmp(event, "approval") == 0)
		watch_line(w->env, j);
	json_decref(j);
	return 0;
}

static int approvals_watch(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "approvals watch";
	const struct cli_opt opts[] = {{NULL, NULL, NULL}};
	const char *pos[1];
	struct watch w = {env};
	struct cli_sse *sse;
	char *path = NULL, *te = NULL, err[1024];
	int n, rc;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 0)) == -2) {
		fputs(watch_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if ((env->tenant != NULL && (te = cli_http_escape(env->tenant)) == NULL) ||
	    asprintf(&path, "/v1/approvals/stream%s%s", te ? "?tenant=" : "", te ? te : "") == -1 ||
	    (sse = cli_sse_new(0, watch_event, &w)) == NULL) {
		free(te);
		cli_error("out of memory");
		return CLI_FAIL;
	}
	rc = cli_http_stream_at(env, CLI_POLICY_SVC, path, token_of(env), sse, err, sizeof(err));
	cli_sse_destroy(sse);
	free(te);
	free(path);
	if (rc == -1) {
		cli_error("%s", err);
		return CLI_FAIL;
	}
	return CLI_OK;
}

int cli_approvals(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"list", approvals_list},
		{"approve", approvals_decide},
		{"deny", approvals_decide},
		{"watch", approvals_watch},
		{NULL, NULL},
	};

	return cli_group(env, "approvals", approvals_help, cmds, argc, argv);
}
