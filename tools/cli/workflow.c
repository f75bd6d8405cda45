/*
 * sagewai workflow apply|list: register workflow files with the scheduler
 * and list what it holds.
 *
 * apply sends the YAML as it is (Content-Type: application/yaml) to
 * POST /v1/workflows?filename=<base name>, so that the scheduler's
 * validation errors name the user's file: they come back as
 * "FILE:LINE:COL: message" with HTTP 400 and are printed as they are.
 */
#include <string.h>

#include "cli.h"

#define WF_MAX_FILE (8u << 20)

static const char group_help[] =
	"usage: sagewai workflow COMMAND\n"
	"\n"
	"  apply FILE   register the workflow in FILE (YAML; '-' reads standard input)\n"
	"  list         list the registered workflows\n";

static const char apply_help[] =
	"usage: sagewai workflow apply FILE [--json]\n"
	"\n"
	"Register the workflow defined in FILE (YAML, '-' for standard input) with\n"
	"the scheduler. Prints \"applied NAME vVERSION (N steps)\", then each warning\n"
	"of the scheduler on standard error as \"warning: FILE:LINE:COL: text\" (the\n"
	"workflow is registered; e.g. a cli_agent step with nothing for its agent to\n"
	"decide, which belongs in mode identity_scoped). A file that does not\n"
	"validate is reported as FILE:LINE:COL: message (exit 1). Applying the same\n"
	"name and version again with other content is refused (HTTP 409).\n";

static const char list_help[] =
	"usage: sagewai workflow list [--json]\n"
	"\n"
	"List the registered workflows: name, version, number of steps, creation time.\n";

/* The scheduler's warnings (what registered but should be otherwise,
 * "FILE:LINE:COL: text"), one line each on stderr; text from the server is
 * shown on one line, without control characters. */
static void print_warnings(json_t *warnings)
{
	char line[1024];
	json_t *w;
	size_t i;

	json_array_foreach(warnings, i, w) {
		if (!json_is_string(w))
			continue;
		fprintf(stderr, "warning: %s\n", cli_oneline(json_string_value(w), 900, line,
							      sizeof(line)));
	}
}

static int wf_apply(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *pos[1], *base;
	char err[1024], *data = NULL, *esc = NULL, *path = NULL;
	size_t len;
	int n, rc = CLI_FAIL;
	json_int_t steps;

	if ((n = cli_parse(env, "workflow apply", argc, argv, NULL, pos, 1)) == -2) {
		fputs(apply_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage("workflow apply", "missing FILE");
	if ((data = cli_read_file(pos[0], WF_MAX_FILE, &len, err, sizeof(err))) == NULL) {
		cli_error("%s", err);
		return CLI_FAIL;
	}
	base = strrchr(pos[0], '/');
	base = base != NULL ? base + 1 : pos[0];
	if (strcmp(pos[0], "-") == 0 || *base == '\0')
		base = "workflow.yaml";
	if ((esc = cli_http_escape(base)) == NULL ||
	    asprintf(&path, "/v1/workflows?filename=%s", esc) == -1) {
		path = NULL;
		cli_error("out of memory");
		goto out;
	}
	if (cli_http_call(env, CLI_SCHEDULER, "POST", path, "application/yaml", data, len,
			  env->token, &r, err, sizeof(err)) == -1) {
		/* the validation error names the file and place: keep it as is */
		if (r.status == 400 && r.message != NULL)
			cli_error("%s", r.message);
		else
			cli_error("%s", err);
		goto out;
	}
	if (env->json) {
		cli_raw_print(&r, stdout);
	} else {
		steps = json_integer_value(json_object_get(r.json, "steps"));
		printf("applied %s v%lld (%lld step%s)\n", cli_jstr(r.json, "name", "?"),
		       (long long)json_integer_value(json_object_get(r.json, "version")),
		       (long long)steps, steps == 1 ? "" : "s");
		print_warnings(json_object_get(r.json, "warnings"));
	}
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	free(path);
	free(esc);
	free(data);
	return rc;
}

static int wf_list(struct cli_env *env, int argc, char **argv)
{
	static const char *const head[] = {"NAME", "VERSION", "STEPS", "CREATED"};
	struct cli_resp r = {0};
	struct cli_table *t = NULL;
	json_t *list, *w;
	size_t i;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "workflow list", argc, argv, NULL, NULL, 0)) == -2) {
		fputs(list_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (cli_call_json(env, CLI_SCHEDULER, "GET", "/v1/workflows", NULL, env->token, &r) < 0)
		goto out;
	if ((n = cli_answer_list(env, &r, "workflows", "the scheduler", "no workflows", &list)) <=
	    0) {
		rc = n == 0 ? CLI_OK : CLI_FAIL;
		goto out;
	}
	if ((t = cli_table_new(4, head)) == NULL)
		goto nomem;
	json_array_foreach(list, i, w) {
		char ver[32], steps[32], created[64];
		const char *row[4] = {cli_jstr(w, "name", "?"), ver, steps, created};

		snprintf(ver, sizeof(ver), "%lld",
			 (long long)json_integer_value(json_object_get(w, "version")));
		snprintf(steps, sizeof(steps), "%lld",
			 (long long)json_integer_value(json_object_get(w, "steps")));
		cli_time_fmt_str(cli_jstr(w, "created", NULL), created, sizeof(created));
		if (cli_table_add(t, row) == -1)
			goto nomem;
	}
	cli_table_print(t, stdout, "");
	rc = CLI_OK;
	goto out;
nomem:
	cli_error("out of memory");
out:
	cli_table_free(t);
	cli_resp_free(&r);
	return rc;
}

int cli_workflow(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"apply", wf_apply},
		{"list", wf_list},
		{NULL, NULL},
	};

	return cli_group(env, "workflow", group_help, cmds, argc, argv);
}
