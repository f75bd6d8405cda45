/*
 * The operator's commands, with SAGEWAI_ADMIN_TOKEN (taken only from the
 * environment, so it does not show in the process list):
 *
 *   sagewai tenant create NAME     POST /v1/tenants: its id and key, once
 *   sagewai tenant delete NAME|ID  DELETE /v1/tenants/{NAME|ID}: every key
 *                                  revoked; runs and audit trail kept
 *   sagewai key create --role auditor   POST /v1/keys: a key for the audit
 *                                  API that reads every tenant's runs
 *
 * Keys are printed once: the scheduler stores only their hashes.
 */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "cli.h"

static const char group_help[] =
	"usage: sagewai tenant COMMAND\n"
	"\n"
	"  create NAME        create a tenant and print its id and API key\n"
	"  delete NAME|ID     delete a tenant: its keys stop working, its runs are kept\n"
	"(both need SAGEWAI_ADMIN_TOKEN)\n";

static const char delete_help[] =
	"usage: sagewai tenant delete NAME|ID [--json]\n"
	"\n"
	"Delete the live tenant NAME (or the tenant with id ID): every API key of it is\n"
	"revoked at once. Its runs and audit trail are kept (an auditor key reads them);\n"
	"the name becomes free, and a tenant created with it later gets a new id and\n"
	"sees nothing of this one. Needs SAGEWAI_ADMIN_TOKEN.\n";

static const char key_help[] =
	"usage: sagewai key create --role auditor [--json]\n"
	"\n"
	"Create an auditor key: it reads every run's audit trail (GET /v1/audit/runs/ID),\n"
	"deleted tenants' too, and nothing of the run API. Printed once. Needs\n"
	"SAGEWAI_ADMIN_TOKEN.\n";

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
	printf("id: %s\n", cli_oneline(cli_jstr(r.json, "id", "?"), 40, name, sizeof(name)));
	printf("api key: %s\n", key);
	printf("note: this key is shown once and cannot be read back; store it now.\n");
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	json_decref(req);
	free(body);
	return rc;
}

static int tenant_delete(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *pos[1];
	char err[1024], path[256], *ref = NULL, a[128], b[128];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "tenant delete", argc, argv, NULL, pos, 1)) == -2) {
		fputs(delete_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage("tenant delete", "missing NAME or ID");
	if (env->admin_token == NULL)
		return cli_usage("tenant delete", "SAGEWAI_ADMIN_TOKEN is not set");
	if ((ref = curl_easy_escape(NULL, pos[0], 0)) == NULL ||
	    (size_t)snprintf(path, sizeof(path), "/v1/tenants/%s", ref) >= sizeof(path)) {
		curl_free(ref);
		return cli_usage("tenant delete", "NAME or ID too long");
	}
	curl_free(ref);
	if (cli_http_call(env, CLI_SCHEDULER, "DELETE", path, NULL, NULL, 0, env->admin_token, &r,
			  err, sizeof(err)) == -1) {
		cli_error("%s", err);
		goto out;
	}
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("tenant %s (%s) deleted; %lld key(s) revoked\n",
		       cli_oneline(cli_jstr(r.json, "name", pos[0]), 100, a, sizeof(a)),
		       cli_oneline(cli_jstr(r.json, "id", "?"), 40, b, sizeof(b)),
		       (long long)json_integer_value(json_object_get(r.json, "keys_revoked")));
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	return rc;
}

static int key_create(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *role = NULL, *key;
	const struct cli_opt opts[] = {{"--role", &role, NULL}, {NULL, NULL, NULL}};
	static const char body[] = "{\"role\":\"auditor\"}";
	char err[1024];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "key create", argc, argv, opts, NULL, 0)) == -2) {
		fputs(key_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (role == NULL || strcmp(role, "auditor") != 0)
		return cli_usage("key create", "--role auditor is the one role to create "
					       "(a tenant's key comes with 'tenant create')");
	if (env->admin_token == NULL)
		return cli_usage("key create", "SAGEWAI_ADMIN_TOKEN is not set");
	if (cli_http_call(env, CLI_SCHEDULER, "POST", "/v1/keys", "application/json", body,
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
	    strcmp(cli_oneline(key, 0, err, sizeof(err)), key) != 0) {
		cli_error("the scheduler's answer has no printable api_key");
		goto out;
	}
	printf("auditor key: %s\n", key);
	printf("note: this key is shown once and cannot be read back; store it now.\n");
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	return rc;
}

int cli_key(struct cli_env *env, int argc, char **argv)
{
	static const char help[] = "usage: sagewai key COMMAND\n"
				   "\n"
				   "  create --role auditor   an auditor key for the audit API "
				   "(needs SAGEWAI_ADMIN_TOKEN)\n";
	static const struct cli_cmd cmds[] = {
		{"create", key_create},
		{NULL, NULL},
	};

	return cli_group(env, "key", help, cmds, argc, argv);
}

int cli_tenant(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"create", tenant_create},
		{"delete", tenant_delete},
		{NULL, NULL},
	};

	return cli_group(env, "tenant", group_help, cmds, argc, argv);
}
