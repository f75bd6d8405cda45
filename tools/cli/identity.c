/*
 * sagewai identity profile set|show|list|delete and identity resolve: a
 * thin client of sagewai-identity's API (docs/IDENTITY.md).
 *
 *   profile set NAME [--level L] (--file F.json | --key ENV=secret:S ...
 *                                 | --key ENV=value:TEXT ...)
 *                              PUT /v1/identity/profiles/NAME?level=L
 *   profile show NAME          GET /v1/identity/profiles/NAME?level=L
 *   profile list               GET /v1/identity/profiles[?level=L]
 *   profile delete NAME        DELETE /v1/identity/profiles/NAME?level=L
 *   resolve --workflow W [--version N] [--user U]
 *                              GET /v1/workflows/W[/N] from the scheduler,
 *                              then POST /v1/identity/resolve with its
 *                              identity-bearing steps
 *
 * Writes need SAGEWAI_ADMIN_TOKEN; reads send it when set, else the
 * tenant's key. The operator names the tenant with --tenant (sent as
 * ?tenant=); the system level is scope "_system". No answer of this API
 * holds a secret value, so nothing printed here can.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define ID_MAX_FILE (1u << 20) /* a profile file */
#define ID_MAX_KEYS 256        /* --key options on one line */

static const char group_help[] =
	"usage: sagewai identity COMMAND\n"
	"\n"
	"  profile set NAME [--level L] (--file FILE.json | --key ENV=secret:NAME ...\n"
	"                   | --key ENV=value:TEXT ...)   create or replace a profile\n"
	"  profile show NAME [--level L]                  its keys and their ACLs\n"
	"  profile list [--level L]                       the profiles\n"
	"  profile delete NAME [--level L]                delete a profile\n"
	"  resolve --workflow W [--version N] [--user U]  the cascade each identity-bearing\n"
	"                                                 step of W would receive\n"
	"\n"
	"Levels: system (one profile, 'default', operator-wide), workflow (the default:\n"
	"a profile steps name with identity:), user (named after a user). The cascade\n"
	"applies system, then workflow, then user; a later level's key wins.\n";

static const char profile_help[] =
	"usage: sagewai identity profile COMMAND\n"
	"\n"
	"  set NAME [--level L] (--file FILE.json | --key ENV=secret:NAME ...\n"
	"           | --key ENV=value:TEXT ...)\n"
	"  show NAME [--level L]\n"
	"  list [--level L]\n"
	"  delete NAME [--level L]\n"
	"\n"
	"L is system, workflow (the default) or user.\n";

static const char set_help[] =
	"usage: sagewai identity profile set NAME [--level L] [--json]\n"
	"           (--file FILE.json | --key ENV=secret:SECRET ... | --key ENV=value:TEXT ...)\n"
	"\n"
	"Create or replace profile NAME at level L (system, workflow or user; default\n"
	"workflow). Either the whole body from FILE.json ('-' for standard input):\n"
	"\n"
	"  {\"keys\": {\"GITHUB_TOKEN\": {\"secret\": \"gh_token\", \"steps\": [\"deploy/*\"],\n"
	"                              \"agents\": [\"claude-code\"]},\n"
	"            \"API_BASE\": {\"value\": \"https://api.internal\"}}}\n"
	"\n"
	"or its keys, one --key each: ENV=secret:SECRET binds the environment variable\n"
	"ENV to the tenant's secret SECRET; ENV=value:TEXT sets a plain, non-secret\n"
	"knob (it travels in clear). ACLs (steps, agents) need --file. The server\n"
	"refuses a bad key (HTTP 400) and a secret that does not exist (HTTP 422).\n"
	"Needs SAGEWAI_ADMIN_TOKEN; --tenant REF names the tenant.\n";

static const char show_help[] =
	"usage: sagewai identity profile show NAME [--level L] [--json]\n"
	"\n"
	"Show profile NAME of level L (default workflow): each key, whether it binds\n"
	"a secret or a plain value, and its ACL (steps, agents; '*' when any).\n";

static const char list_help[] =
	"usage: sagewai identity profile list [--level L] [--json]\n"
	"\n"
	"List the profiles (of level L only, when given): name, level, number of keys,\n"
	"last update.\n";

static const char delete_help[] =
	"usage: sagewai identity profile delete NAME [--level L] [--json]\n"
	"\n"
	"Delete profile NAME of level L (default workflow). Runs already resolved keep\n"
	"the keys they were given. Needs SAGEWAI_ADMIN_TOKEN.\n";

static const char resolve_help[] =
	"usage: sagewai identity resolve --workflow W [--version N] [--user U] [--json]\n"
	"\n"
	"Read workflow W (version N, default the latest) from the scheduler and ask\n"
	"the identity service what each of its identity-bearing steps (identity_scoped,\n"
	"cli_agent, cli_agent_jit) would receive, as the user U when given. Prints\n"
	"the cascade (STEP KEY LEVEL PROFILE SECRET VERSION BACKEND), the keys an ACL\n"
	"denies, and the refusal, if any (exit 1). No value is ever shown.\n";

const char *cli_id_read_token(const struct cli_env *env)
{
	return env->admin_token != NULL ? env->admin_token : env->token;
}

char *cli_id_query(const struct cli_env *env, const char *level)
{
	const char *tenant = env->tenant;
	char *lv = NULL, *tn = NULL, *q = NULL;
	int rc;

	if (tenant == NULL && level != NULL && strcmp(level, "system") == 0)
		tenant = "_system";
	if ((level != NULL && (lv = cli_http_escape(level)) == NULL) ||
	    (tenant != NULL && (tn = cli_http_escape(tenant)) == NULL))
		goto out;
	if (lv != NULL && tn != NULL)
		rc = asprintf(&q, "?level=%s&tenant=%s", lv, tn);
	else if (lv != NULL)
		rc = asprintf(&q, "?level=%s", lv);
	else if (tn != NULL)
		rc = asprintf(&q, "?tenant=%s", tn);
	else
		rc = (q = strdup("")) == NULL ? -1 : 0;
	if (rc == -1)
		q = NULL;
out:
	free(lv);
	free(tn);
	return q;
}

char *cli_id_path(const char *collection, const char *name, const char *suffix,
		  const char *query)
{
	char *esc = NULL, *p;

	if (name != NULL && (esc = cli_http_escape(name)) == NULL)
		return NULL;
	if (asprintf(&p, "/v1/%s%s%s%s%s", collection, esc ? "/" : "", esc ? esc : "",
		     suffix ? suffix : "", query ? query : "") == -1)
		p = NULL;
	free(esc);
	return p;
}

static int level_ok(const char *l)
{
	return strcmp(l, "system") == 0 || strcmp(l, "workflow") == 0 || strcmp(l, "user") == 0;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*, at most 128 bytes. */
static int env_name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* ---- profile set ------------------------------------------------------ */

/* Take every "--key V" / "--key=V" out of argv (up to "--") into keys;
 * the rest stays in argv, argc updated. -1 after a usage error. */
static int take_keys(int *argc, char **argv, const char **keys, int *nkeys)
{
	int i, o = 0;

	*nkeys = 0;
	for (i = 0; i < *argc; i++) {
		const char *a = argv[i], *v = NULL;

		if (i > 0 && strcmp(a, "--") == 0) {
			while (i < *argc)
				argv[o++] = argv[i++];
			break;
		}
		if (i > 0 && strcmp(a, "--key") == 0) {
			if (i + 1 >= *argc) {
				cli_usage("identity profile set", "--key needs ENV=secret:NAME or "
								  "ENV=value:TEXT");
				return -1;
			}
			v = argv[++i];
		} else if (i > 0 && strncmp(a, "--key=", 6) == 0) {
			v = a + 6;
		} else {
			argv[o++] = argv[i];
			continue;
		}
		if (*nkeys >= ID_MAX_KEYS) {
			cli_usage("identity profile set", "more than %d --key options",
				  ID_MAX_KEYS);
			return -1;
		}
		keys[(*nkeys)++] = v;
	}
	*argc = o;
	argv[o] = NULL;
	return 0;
}

/* {"keys": {...}} from the --key options; NULL after a usage error. */
static json_t *keys_body(const char **keys, int nkeys)
{
	json_t *body = json_object(), *map = json_object(), *k;
	char env[160];
	int i;

	if (body == NULL || map == NULL || json_object_set_new(body, "keys", map) != 0) {
		json_decref(map);
		cli_error("out of memory");
		goto fail;
	}
	for (i = 0; i < nkeys; i++) {
		const char *eq = strchr(keys[i], '='), *what;
		size_t n = eq != NULL ? (size_t)(eq - keys[i]) : 0;

		if (eq == NULL) {
			/* no echo: a mistaken --key TOKEN might be a secret */
			cli_usage("identity profile set",
				  "--key takes ENV=secret:NAME or ENV=value:TEXT");
			goto fail;
		}
		if (!env_name_ok(keys[i], n)) {
			char shown[64];

			snprintf(env, sizeof(env), "%.*s", (int)(n < 100 ? n : 100), keys[i]);
			cli_usage("identity profile set",
				  "--key: '%s' is not an environment variable name",
				  cli_oneline(env, 40, shown, sizeof(shown)));
			goto fail;
		}
		memcpy(env, keys[i], n);
		env[n] = '\0';
		what = eq + 1;
		if (json_object_get(map, env) != NULL) {
			cli_usage("identity profile set", "--key %s given twice", env);
			goto fail;
		}
		if (strncmp(what, "secret:", 7) == 0 && what[7] != '\0')
			k = json_pack("{s:s}", "secret", what + 7);
		else if (strncmp(what, "value:", 6) == 0)
			k = json_pack("{s:s}", "value", what + 6);
		else {
			cli_usage("identity profile set",
				  "--key %s: expected %s=secret:NAME or %s=value:TEXT", env, env,
				  env);
			goto fail;
		}
		if (k == NULL) {
			cli_usage("identity profile set", "--key %s: not valid UTF-8", env);
			goto fail;
		}
		if (json_object_set_new(map, env, k) != 0) {
			cli_error("out of memory");
			goto fail;
		}
	}
	return body;
fail:
	json_decref(body);
	return NULL;
}

static int profile_set(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "identity profile set";
	const char *level = "workflow", *file = NULL, *pos[1], *keys[ID_MAX_KEYS];
	const struct cli_opt opts[] = {{"--level", &level, NULL},
				       {"--file", &file, NULL},
				       {NULL, NULL, NULL}};
	struct cli_resp r = {0};
	json_t *body = NULL;
	json_error_t je;
	char err[1024], *data = NULL, *q = NULL, *path = NULL, a[128], b[32];
	size_t len;
	int n, nkeys, rc = CLI_FAIL;

	if (take_keys(&argc, argv, keys, &nkeys) == -1)
		return CLI_USAGE;
	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 1)) == -2) {
		fputs(set_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing NAME");
	if (!level_ok(level))
		return cli_usage(cmd, "--level must be system, workflow or user");
	if ((file == NULL) == (nkeys == 0))
		return cli_usage(cmd, "give either --file FILE.json or --key options");
	if (nkeys > 0 && (body = keys_body(keys, nkeys)) == NULL)
		return CLI_USAGE;
	if (env->admin_token == NULL) {
		json_decref(body);
		return cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
	}
	if (file != NULL) {
		if ((data = cli_read_file(file, ID_MAX_FILE, &len, err, sizeof(err))) == NULL) {
			cli_error("%s", err);
			return CLI_FAIL;
		}
		if ((body = json_loadb(data, len, 0, &je)) == NULL || !json_is_object(body)) {
			cli_oneline(file, 100, a, sizeof(a));
			if (body == NULL)
				cli_error("%s:%d:%d: %s", a, je.line, je.column, je.text);
			else
				cli_error("%s: a profile is a JSON object {\"keys\": {...}}", a);
			goto out;
		}
	}
	if ((q = cli_id_query(env, level)) == NULL ||
	    (path = cli_id_path("identity/profiles", pos[0], NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_call_json(env, CLI_IDENTITY_SVC, "PUT", path, body, env->admin_token, &r) < 0)
		goto out;
	if (env->json) {
		cli_raw_print(&r, stdout);
	} else {
		json_t *k = json_object_get(body, "keys");

		printf("profile %s (level %s) set: %zu key%s\n",
		       cli_oneline(cli_jstr(r.json, "name", pos[0]), 100, a, sizeof(a)),
		       cli_oneline(cli_jstr(r.json, "level", level), 20, b, sizeof(b)),
		       json_object_size(k), json_object_size(k) == 1 ? "" : "s");
	}
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	json_decref(body);
	free(data);
	free(q);
	free(path);
	return rc;
}

/* ---- profile show / list / delete ------------------------------------- */

/* "a, b" from a JSON array of strings; "*" when absent. */
static void join_list(json_t *arr, char *out, size_t outlen)
{
	json_t *v;
	size_t i, o = 0;

	if (!json_is_array(arr)) {
		snprintf(out, outlen, "*");
		return;
	}
	out[0] = '\0';
	json_array_foreach(arr, i, v) {
		int w = snprintf(out + o, outlen - o, "%s%s", i ? "," : "",
				 json_is_string(v) ? json_string_value(v) : "?");

		if (w < 0 || (size_t)w >= outlen - o)
			break;
		o += (size_t)w;
	}
}

static int profile_show(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "identity profile show";
	static const char *const head[] = {"KEY", "KIND", "BINDS", "STEPS", "AGENTS"};
	const char *level = "workflow", *pos[1], *kname;
	const struct cli_opt opts[] = {{"--level", &level, NULL}, {NULL, NULL, NULL}};
	struct cli_resp r = {0};
	struct cli_table *t = NULL;
	json_t *keys, *k;
	char *q = NULL, *path = NULL, a[128], b[32], steps[512], agents[256];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 1)) == -2) {
		fputs(show_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing NAME");
	if (!level_ok(level))
		return cli_usage(cmd, "--level must be system, workflow or user");
	if ((q = cli_id_query(env, level)) == NULL ||
	    (path = cli_id_path("identity/profiles", pos[0], NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_call_json(env, CLI_IDENTITY_SVC, "GET", path, NULL, cli_id_read_token(env), &r) <
	    0)
		goto out;
	if (env->json) {
		cli_raw_print(&r, stdout);
		rc = CLI_OK;
		goto out;
	}
	keys = json_object_get(json_object_get(r.json, "body"), "keys");
	if (!json_is_object(keys)) {
		cli_error("the identity service's answer has no profile body with \"keys\"");
		goto out;
	}
	printf("profile %s (level %s)\n",
	       cli_oneline(cli_jstr(r.json, "name", pos[0]), 100, a, sizeof(a)),
	       cli_oneline(cli_jstr(r.json, "level", level), 20, b, sizeof(b)));
	if (json_object_size(keys) == 0) {
		printf("no keys\n");
		rc = CLI_OK;
		goto out;
	}
	if ((t = cli_table_new(5, head)) == NULL)
		goto nomem;
	json_object_foreach(keys, kname, k) {
		const char *secret = cli_jstr(k, "secret", NULL);
		const char *row[5] = {kname, secret ? "secret" : "value",
				      secret ? secret : cli_jstr(k, "value", ""), steps, agents};

		join_list(json_object_get(k, "steps"), steps, sizeof(steps));
		join_list(json_object_get(k, "agents"), agents, sizeof(agents));
		if (cli_table_add(t, row) == -1)
			goto nomem;
	}
	putchar('\n');
	cli_table_print(t, stdout, "  ");
	rc = CLI_OK;
	goto out;
nomem:
	cli_error("out of memory");
out:
	cli_table_free(t);
	cli_resp_free(&r);
	free(q);
	free(path);
	return rc;
}

static int profile_list(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "identity profile list";
	static const char *const head[] = {"NAME", "LEVEL", "KEYS", "UPDATED"};
	const char *level = NULL;
	const struct cli_opt opts[] = {{"--level", &level, NULL}, {NULL, NULL, NULL}};
	struct cli_resp r = {0};
	struct cli_table *t = NULL;
	json_t *list, *p;
	size_t i;
	char *q = NULL, *path = NULL;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, NULL, 0)) == -2) {
		fputs(list_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (level != NULL && !level_ok(level))
		return cli_usage(cmd, "--level must be system, workflow or user");
	if ((q = cli_id_query(env, level)) == NULL ||
	    (path = cli_id_path("identity/profiles", NULL, NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_call_json(env, CLI_IDENTITY_SVC, "GET", path, NULL, cli_id_read_token(env), &r) <
	    0)
		goto out;
	if ((n = cli_answer_list(env, &r, "profiles", "the identity service", "no profiles",
				 &list)) <= 0) {
		rc = n == 0 ? CLI_OK : CLI_FAIL;
		goto out;
	}
	if ((t = cli_table_new(4, head)) == NULL)
		goto nomem;
	json_array_foreach(list, i, p) {
		char nkeys[32], updated[64];
		const char *row[4] = {cli_jstr(p, "name", "?"), cli_jstr(p, "level", "?"), nkeys,
				      updated};

		snprintf(nkeys, sizeof(nkeys), "%lld",
			 (long long)json_integer_value(json_object_get(p, "keys")));
		cli_time_fmt_str(cli_jstr(p, "updated", NULL), updated, sizeof(updated));
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
	free(q);
	free(path);
	return rc;
}

static int profile_delete(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "identity profile delete";
	const char *level = "workflow", *pos[1];
	const struct cli_opt opts[] = {{"--level", &level, NULL}, {NULL, NULL, NULL}};
	struct cli_resp r = {0};
	char *q = NULL, *path = NULL, a[128];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 1)) == -2) {
		fputs(delete_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing NAME");
	if (!level_ok(level))
		return cli_usage(cmd, "--level must be system, workflow or user");
	if (env->admin_token == NULL)
		return cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
	if ((q = cli_id_query(env, level)) == NULL ||
	    (path = cli_id_path("identity/profiles", pos[0], NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_call_json(env, CLI_IDENTITY_SVC, "DELETE", path, NULL, env->admin_token, &r) < 0)
		goto out;
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("profile %s (level %s) deleted\n", cli_oneline(pos[0], 100, a, sizeof(a)),
		       level);
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	free(q);
	free(path);
	return rc;
}

static int cli_profile(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"set", profile_set},
		{"show", profile_show},
		{"list", profile_list},
		{"delete", profile_delete},
		{NULL, NULL},
	};

	return cli_group(env, "identity profile", profile_help, cmds, argc, argv);
}

/* ---- resolve ---------------------------------------------------------- */

static int bearing(const char *mode)
{
	return strcmp(mode, "identity_scoped") == 0 || strcmp(mode, "cli_agent") == 0 ||
	       strcmp(mode, "cli_agent_jit") == 0;
}

/* The resolve request for workflow answer wf (GET /v1/workflows/...):
 * {"workflow", "user", "steps": [{"step", "mode", "agent", "profile"}]}.
 * NULL with errstr. */
static json_t *resolve_request(json_t *wf, const char *user, char *errstr, size_t errlen)
{
	json_t *def = json_object_get(wf, "definition"), *steps, *s, *out, *list;
	const char *name = cli_jstr(wf, "name", NULL);
	size_t i;

	if (!json_is_object(def))
		def = wf;
	if (name == NULL)
		name = cli_jstr(def, "name", NULL);
	steps = json_object_get(def, "steps");
	if (name == NULL || !json_is_array(steps)) {
		snprintf(errstr, errlen, "the scheduler's answer has no workflow definition "
					 "with \"steps\"");
		return NULL;
	}
	out = json_pack("{s:s, s:s, s:[]}", "workflow", name, "user", user ? user : "", "steps");
	if (out == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	list = json_object_get(out, "steps");
	json_array_foreach(steps, i, s) {
		const char *mode = cli_jstr(s, "mode", NULL), *sn = cli_jstr(s, "name", NULL);
		json_t *need;
		int agent;

		if (mode == NULL || sn == NULL) {
			snprintf(errstr, errlen, "the workflow's step %zu has no name or mode", i);
			goto fail;
		}
		if (!bearing(mode))
			continue;
		agent = strncmp(mode, "cli_agent", 9) == 0;
		need = json_pack("{s:s, s:s, s:s, s:s}", "step", sn, "mode", mode, "agent",
				 agent ? cli_jstr(s, "cli_agent", "") : "", "profile",
				 cli_jstr(s, "identity", ""));
		if (json_array_append_new(list, need) != 0) {
			snprintf(errstr, errlen, "out of memory");
			goto fail;
		}
	}
	return out;
fail:
	json_decref(out);
	return NULL;
}

/* The cascade, the denied keys; 0, or -1 when the answer is malformed. */
static int print_cascade(json_t *ans)
{
	static const char *const head[] = {"STEP", "KEY", "LEVEL", "PROFILE",
					   "SECRET", "VERSION", "BACKEND"};
	static const char *const dhead[] = {"STEP", "KEY", "SECRET", "REASON"};
	struct cli_table *t = NULL, *d = NULL;
	json_t *steps = json_object_get(ans, "steps"), *denied = json_object_get(ans, "denied");
	json_t *s, *k;
	size_t i, j, nkeys = 0;
	int rc = -1;

	if ((steps != NULL && !json_is_array(steps)) ||
	    (denied != NULL && !json_is_array(denied))) {
		cli_error("the identity service's answer has malformed \"steps\" or \"denied\"");
		return -1;
	}
	if ((t = cli_table_new(7, head)) == NULL || (d = cli_table_new(4, dhead)) == NULL)
		goto nomem;
	json_array_foreach(steps, i, s) {
		json_array_foreach(json_object_get(s, "keys"), j, k) {
			int plain = strcmp(cli_jstr(k, "kind", "secret"), "plain") == 0;
			json_int_t v = json_integer_value(json_object_get(k, "version"));
			char ver[32];
			const char *row[7] = {
				cli_jstr(s, "step", "?"), cli_jstr(k, "env", "?"),
				cli_jstr(k, "level", "?"), cli_jstr(k, "profile", "-"),
				plain ? "(plain value)" : cli_jstr(k, "secret", "?"), ver,
				plain ? "-" : cli_jstr(k, "backend", "?")};

			if (plain)
				snprintf(ver, sizeof(ver), "-");
			else
				snprintf(ver, sizeof(ver), "%lld", (long long)v);
			if (cli_table_add(t, row) == -1)
				goto nomem;
			nkeys++;
		}
	}
	if (nkeys > 0)
		cli_table_print(t, stdout, "");
	else if (json_array_size(steps) == 0)
		printf("no identity-bearing step receives keys\n");
	else
		printf("no keys for %zu identity-bearing step%s\n", json_array_size(steps),
		       json_array_size(steps) == 1 ? "" : "s");
	json_array_foreach(denied, i, k) {
		const char *row[4] = {cli_jstr(k, "step", "?"), cli_jstr(k, "env", "?"),
				      cli_jstr(k, "secret", "-"), cli_jstr(k, "reason", "")};

		if (cli_table_add(d, row) == -1)
			goto nomem;
	}
	if (json_array_size(denied) > 0) {
		printf("\ndenied (not injected):\n");
		cli_table_print(d, stdout, "  ");
	}
	rc = 0;
	goto out;
nomem:
	cli_error("out of memory");
out:
	cli_table_free(t);
	cli_table_free(d);
	return rc;
}

static int resolve(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "identity resolve";
	const char *wf = NULL, *version = NULL, *user = NULL;
	const struct cli_opt opts[] = {{"--workflow", &wf, NULL},
				       {"--version", &version, NULL},
				       {"--user", &user, NULL},
				       {NULL, NULL, NULL}};
	struct cli_resp w = {0}, r = {0};
	json_t *req = NULL, *ok;
	char err[1024], *esc = NULL, *path = NULL, *q = NULL, c[64], e[512];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, NULL, 0)) == -2) {
		fputs(resolve_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (wf == NULL || *wf == '\0')
		return cli_usage(cmd, "missing --workflow W");
	if (version != NULL) {
		char *end;
		long v = strtol(version, &end, 10);

		if (*version == '\0' || *end != '\0' || v < 1 || v > 0x7fffffff)
			return cli_usage(cmd, "--version must be a positive integer");
	}
	if ((esc = cli_http_escape(wf)) == NULL ||
	    asprintf(&path, "/v1/workflows/%s%s%s", esc, version ? "/" : "",
		     version ? version : "") == -1) {
		path = NULL;
		cli_error("out of memory");
		goto out;
	}
	if (cli_http_call(env, CLI_SCHEDULER, "GET", path, NULL, NULL, 0, env->token, &w, err,
			  sizeof(err)) == -1) {
		cli_error("%s", err);
		goto out;
	}
	if ((req = resolve_request(w.json, user, err, sizeof(err))) == NULL) {
		cli_error("%s", err);
		goto out;
	}
	free(path);
	path = NULL;
	if ((q = cli_id_query(env, NULL)) == NULL ||
	    (path = cli_id_path("identity/resolve", NULL, NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_call_json(env, CLI_IDENTITY_SVC, "POST", path, req, cli_id_read_token(env), &r) <
	    0)
		goto out;
	ok = json_object_get(r.json, "ok");
	if (!json_is_boolean(ok)) {
		if (env->json)
			cli_raw_print(&r, stdout);
		cli_error("the identity service's answer has no \"ok\"");
		goto out;
	}
	if (env->json)
		cli_raw_print(&r, stdout);
	else if (print_cascade(r.json) == -1)
		goto out;
	if (!json_is_true(ok)) {
		cli_oneline(cli_jstr(r.json, "code", "refused"), 40, c, sizeof(c));
		cli_oneline(cli_jstr(r.json, "error", "(no reason given)"), 400, e, sizeof(e));
		cli_error("refused: %s (%s)", e, c);
		goto out;
	}
	rc = CLI_OK;
out:
	cli_resp_free(&w);
	cli_resp_free(&r);
	json_decref(req);
	free(esc);
	free(path);
	free(q);
	return rc;
}

int cli_identity(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"profile", cli_profile},
		{"resolve", resolve},
		{NULL, NULL},
	};

	return cli_group(env, "identity", group_help, cmds, argc, argv);
}
