/*
 * The operator's commands, with SAGEWAI_ADMIN_TOKEN (taken only from the
 * environment, so it does not show in the process list):
 *
 *   sagewai tenant create NAME     POST /v1/tenants: its id and key, once
 *   sagewai tenant delete NAME|ID  DELETE /v1/tenants/{NAME|ID}: every key
 *                                  revoked; runs and audit trail kept
 *   sagewai key create --role auditor   POST /v1/keys: a key for the audit
 *                                  API that reads every tenant's runs
 *   sagewai key create --tenant T [--user U]   POST /v1/keys: a key of
 *                                  tenant T (of its user U): runs submitted
 *                                  with it record U
 *   sagewai user create NAME --tenant T   POST /v1/tenants/T/users
 *   sagewai user list --tenant T          GET /v1/tenants/T/users
 *   sagewai user delete NAME --tenant T   DELETE /v1/tenants/T/users/NAME:
 *                                  every key of the user revoked
 *
 * T is a tenant's id or name, or "default" in single_org mode. Keys are
 * printed once: the scheduler stores only their hashes.
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
	"       sagewai key create --tenant T [--user U] [--json]\n"
	"\n"
	"--role auditor: an auditor key; it reads every run's audit trail\n"
	"(GET /v1/audit/runs/ID), deleted tenants' too, and nothing of the run API.\n"
	"--tenant T: a key of tenant T (its id or name; \"default\" in single_org mode)\n"
	"for the run API; with --user U it belongs to the tenant's user U, and the runs\n"
	"submitted with it record U (deleting U revokes it). Printed once. Needs\n"
	"SAGEWAI_ADMIN_TOKEN.\n";

static const char user_help[] =
	"usage: sagewai user COMMAND --tenant T\n"
	"\n"
	"  create NAME --tenant T   add user NAME to tenant T\n"
	"  list --tenant T          the live users of tenant T\n"
	"  delete NAME --tenant T   delete user NAME: every key of it is revoked\n"
	"T is a tenant's id or name, or \"default\" in single_org mode. A user's keys\n"
	"come from 'sagewai key create --tenant T --user NAME'. Needs SAGEWAI_ADMIN_TOKEN.\n";

static const char user_create_help[] =
	"usage: sagewai user create NAME --tenant T [--json]\n"
	"\n"
	"Add user NAME ([a-z0-9][a-z0-9_.-]{0,62}, unique among the tenant's live users)\n"
	"to tenant T (id or name; \"default\" in single_org mode). Runs submitted with a\n"
	"key of the user record it, and its identity profile is the last level of the\n"
	"cascade. Needs SAGEWAI_ADMIN_TOKEN.\n";

static const char user_list_help[] =
	"usage: sagewai user list --tenant T [--json]\n"
	"\n"
	"The live users of tenant T: name, id, live keys, created. Needs\n"
	"SAGEWAI_ADMIN_TOKEN.\n";

static const char user_delete_help[] =
	"usage: sagewai user delete NAME --tenant T [--json]\n"
	"\n"
	"Delete user NAME of tenant T: each of its keys is revoked at once. Its runs are\n"
	"kept; the name becomes free, and a user created with it later gets a new id.\n"
	"Needs SAGEWAI_ADMIN_TOKEN.\n";

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
	char err[1024], name[128];
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
	if (cli_call_json(env, CLI_SCHEDULER, "POST", "/v1/tenants", req, env->admin_token, &r) <
	    0)
		goto out;
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
	return rc;
}

static int tenant_delete(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *pos[1];
	char path[256], *ref = NULL, a[128], b[128];
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
	if (cli_call_json(env, CLI_SCHEDULER, "DELETE", path, NULL, env->admin_token, &r) < 0)
		goto out;
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

/* The printable api_key of an answer, or NULL after saying so. */
static const char *answer_key(struct cli_resp *r)
{
	char err[256];
	const char *key = cli_jstr(r->json, "api_key", NULL);

	if (key == NULL || *key == '\0' || strlen(key) >= sizeof(err) ||
	    strcmp(cli_oneline(key, 0, err, sizeof(err)), key) != 0) {
		cli_error("the scheduler's answer has no printable api_key");
		return NULL;
	}
	return key;
}

static int key_create(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *role = NULL, *tenant = NULL, *user = NULL, *key;
	const struct cli_opt opts[] = {{"--role", &role, NULL},
				       {"--tenant", &tenant, NULL},
				       {"--user", &user, NULL},
				       {NULL, NULL, NULL}};
	char a[128], b[128];
	json_t *req = NULL;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "key create", argc, argv, opts, NULL, 0)) == -2) {
		fputs(key_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (tenant == NULL) /* --tenant is also a global option (main.c) */
		tenant = env->tenant;
	if ((role == NULL) == (tenant == NULL))
		return cli_usage("key create", "give either --role auditor or --tenant T");
	if (role != NULL && strcmp(role, "auditor") != 0)
		return cli_usage("key create", "--role auditor is the one role to create "
					       "(a tenant's key: --tenant T)");
	if (role != NULL && user != NULL)
		return cli_usage("key create", "--user goes with --tenant, not --role");
	if (env->admin_token == NULL)
		return cli_usage("key create", "SAGEWAI_ADMIN_TOKEN is not set");
	req = role != NULL ? json_pack("{s:s}", "role", "auditor")
		: user != NULL ? json_pack("{s:s, s:s}", "tenant", tenant, "user", user)
			       : json_pack("{s:s}", "tenant", tenant);
	if (req == NULL) {
		cli_error("key create: the tenant or user is not valid UTF-8");
		return CLI_USAGE;
	}
	if (cli_call_json(env, CLI_SCHEDULER, "POST", "/v1/keys", req, env->admin_token, &r) < 0)
		goto out;
	if (env->json) {
		cli_raw_print(&r, stdout);
		rc = CLI_OK;
		goto out;
	}
	if ((key = answer_key(&r)) == NULL)
		goto out;
	if (role != NULL)
		printf("auditor key: %s\n", key);
	else if (user != NULL)
		printf("key of user %s of tenant %s: %s\n",
		       cli_oneline(cli_jstr(r.json, "user", user), 100, a, sizeof(a)),
		       cli_oneline(cli_jstr(r.json, "tenant_id", tenant), 100, b, sizeof(b)), key);
	else
		printf("key of tenant %s: %s\n",
		       cli_oneline(cli_jstr(r.json, "tenant_id", tenant), 100, b, sizeof(b)), key);
	printf("note: this key is shown once and cannot be read back; store it now.\n");
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	json_decref(req);
	return rc;
}

/* ---- users ---------------------------------------------------------------- */

/* "/v1/tenants/<tenant>/users[/<name>]" escaped into path; -1 when too long. */
static int users_path(char *path, size_t len, const char *tenant, const char *name)
{
	char *t = cli_http_escape(tenant), *u = name ? cli_http_escape(name) : NULL;
	int n = -1;

	if (t != NULL && (name == NULL || u != NULL))
		n = snprintf(path, len, "/v1/tenants/%s/users%s%s", t, name ? "/" : "",
			     name ? u : "");
	free(t);
	free(u);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The common start of a user command: its NAME (if it takes one) and
 * --tenant. -2 after printing help, else CLI_OK or an exit code. */
static int user_args(struct cli_env *env, const char *cmd, const char *help, int argc,
		     char **argv, const char **name, const char **tenant)
{
	const struct cli_opt opts[] = {{"--tenant", tenant, NULL}, {NULL, NULL, NULL}};
	const char *pos[1];
	int n;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, name ? 1 : 0)) == -2) {
		fputs(help, stdout);
		return -2;
	}
	if (n == -1)
		return CLI_USAGE;
	if (*tenant == NULL) /* --tenant is also a global option (main.c) */
		*tenant = env->tenant;
	if (name != NULL && n == 0)
		return cli_usage(cmd, "missing NAME");
	if (name != NULL)
		*name = pos[0];
	if (*tenant == NULL)
		return cli_usage(cmd, "--tenant T is required (an id or name; \"default\" in "
				      "single_org mode)");
	if (env->admin_token == NULL)
		return cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
	return CLI_OK;
}

static int user_create(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *name = NULL, *tenant = NULL;
	char path[512], a[128], b[128];
	json_t *req = NULL;
	int rc;

	if ((rc = user_args(env, "user create", user_create_help, argc, argv, &name, &tenant)) !=
	    CLI_OK)
		return rc == -2 ? CLI_OK : rc;
	if (users_path(path, sizeof(path), tenant, NULL) == -1)
		return cli_usage("user create", "--tenant too long");
	if ((req = json_pack("{s:s}", "name", name)) == NULL) {
		cli_error("user create: the name is not valid UTF-8");
		return CLI_USAGE;
	}
	rc = CLI_FAIL;
	if (cli_call_json(env, CLI_SCHEDULER, "POST", path, req, env->admin_token, &r) < 0)
		goto out;
	if (env->json) {
		cli_raw_print(&r, stdout);
	} else {
		printf("user %s created\n",
		       cli_oneline(cli_jstr(r.json, "name", name), 100, a, sizeof(a)));
		printf("id: %s\n", cli_oneline(cli_jstr(r.json, "user_id", "?"), 40, a, sizeof(a)));
		printf("tenant: %s\n",
		       cli_oneline(cli_jstr(r.json, "tenant_id", tenant), 100, b, sizeof(b)));
	}
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	json_decref(req);
	return rc;
}

static int user_list(struct cli_env *env, int argc, char **argv)
{
	static const char *const head[] = {"NAME", "ID", "KEYS", "CREATED"};
	struct cli_resp r = {0};
	const char *tenant = NULL;
	struct cli_table *t = NULL;
	char path[512];
	json_t *users, *u;
	size_t i;
	int rc;

	if ((rc = user_args(env, "user list", user_list_help, argc, argv, NULL, &tenant)) !=
	    CLI_OK)
		return rc == -2 ? CLI_OK : rc;
	if (users_path(path, sizeof(path), tenant, NULL) == -1)
		return cli_usage("user list", "--tenant too long");
	rc = CLI_FAIL;
	if (cli_call_json(env, CLI_SCHEDULER, "GET", path, NULL, env->admin_token, &r) < 0)
		goto out;
	if (env->json) {
		cli_raw_print(&r, stdout);
		rc = CLI_OK;
		goto out;
	}
	users = json_object_get(r.json, "users");
	if (!json_is_array(users)) {
		cli_error("the scheduler's answer has no users");
		goto out;
	}
	if (json_array_size(users) == 0) {
		printf("no users\n");
		rc = CLI_OK;
		goto out;
	}
	if ((t = cli_table_new(4, head)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	json_array_foreach(users, i, u) {
		char keys[24], created[64];
		const char *row[4] = {cli_jstr(u, "name", "?"), cli_jstr(u, "user_id", "?"), keys,
				      created};

		snprintf(keys, sizeof(keys), "%lld",
			 (long long)json_integer_value(json_object_get(u, "keys")));
		cli_time_fmt_str(cli_jstr(u, "created", NULL), created, sizeof(created));
		if (cli_table_add(t, row) == -1) {
			cli_error("out of memory");
			goto out;
		}
	}
	cli_table_print(t, stdout, "");
	rc = CLI_OK;
out:
	cli_table_free(t);
	cli_resp_free(&r);
	return rc;
}

static int user_delete(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *name = NULL, *tenant = NULL;
	char path[512], a[128], b[128];
	int rc;

	if ((rc = user_args(env, "user delete", user_delete_help, argc, argv, &name, &tenant)) !=
	    CLI_OK)
		return rc == -2 ? CLI_OK : rc;
	if (users_path(path, sizeof(path), tenant, name) == -1)
		return cli_usage("user delete", "NAME or --tenant too long");
	rc = CLI_FAIL;
	if (cli_call_json(env, CLI_SCHEDULER, "DELETE", path, NULL, env->admin_token, &r) < 0)
		goto out;
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("user %s (%s) deleted; %lld key(s) revoked\n",
		       cli_oneline(cli_jstr(r.json, "name", name), 100, a, sizeof(a)),
		       cli_oneline(cli_jstr(r.json, "user_id", "?"), 40, b, sizeof(b)),
		       (long long)json_integer_value(json_object_get(r.json, "keys_revoked")));
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	return rc;
}

int cli_user(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"create", user_create},
		{"list", user_list},
		{"delete", user_delete},
		{NULL, NULL},
	};

	return cli_group(env, "user", user_help, cmds, argc, argv);
}

int cli_key(struct cli_env *env, int argc, char **argv)
{
	static const char help[] = "usage: sagewai key COMMAND\n"
				   "\n"
				   "  create --role auditor           an auditor key for the audit API\n"
				   "  create --tenant T [--user U]    a key of tenant T (of its user U)\n"
				   "(both need SAGEWAI_ADMIN_TOKEN)\n";
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
