/*
 * sagewai tenant create: POST /v1/tenants with the operator's
 * SAGEWAI_ADMIN_TOKEN (taken only from the environment, so it does not
 * show in the process list). The new tenant's key is printed once: the
 * scheduler stores only its hash.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char group_help[] =
	"usage: sagewai tenant COMMAND\n"
	"\n"
	"  create NAME    create a tenant and print its API key (needs SAGEWAI_ADMIN_TOKEN)\n";

static const char create_help[] =
	"usage: sagewai tenant create NAME [--json]\n"
	"\n"
	"Create tenant NAME (multi-tenant mode) and print its API key. The key is\n"
	"shown once and cannot be read back: store it now. Needs the operator's token\n"
	"in the environment variable SAGEWAI_ADMIN_TOKEN.\n";

static int tenant_create(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *pos[1], *key;
	json_t *req = NULL;
	char err[1024], *body = NULL, name[128];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "tenant create", argc, argv, NULL, pos, 1)) == -2) {
		fputs(create_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage("tenant create", "missing NAME");
	if (env->admin_token == NULL)
		return cli_usage("tenant create", "SAGEWAI_ADMIN_TOKEN is not set");
	if ((req = json_pack("{s:s}", "name", pos[0])) == NULL) {
		cli_error("tenant create: the name is not valid UTF-8");
		return CLI_USAGE;
	}
	if ((body = json_dumps(req, JSON_COMPACT)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_http_call(env, CLI_SCHEDULER, "POST", "/v1/tenants", "application/json", body,
			  strlen(body), env->admin_token, &r, err, sizeof(err)) == -1) {
		cli_error("%s", err);
		goto out;
	}
	if (env->json) {
		cli_raw_print(&r, stdout);
		rc = CLI_OK;
		goto out;
	}
	if ((key = cli_jstr(r.json, "api_key", NULL)) == NULL || *key == '\0' ||
	    strlen(cli_oneline(key, 0, err, sizeof(err))) != strlen(key) ||
	    strcmp(err, key) != 0) {
		cli_error("the scheduler's answer has no printable api_key");
		goto out;
	}
	printf("tenant %s created\n",
	       cli_oneline(cli_jstr(r.json, "name", pos[0]), 100, name, sizeof(name)));
	printf("api key: %s\n", key);
	printf("note: this key is shown once and cannot be read back; store it now.\n");
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	json_decref(req);
	free(body);
	return rc;
}

int cli_tenant(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"create", tenant_create},
		{NULL, NULL},
	};

	return cli_group(env, "tenant", group_help, cmds, argc, argv);
}
