/*
 * sagewai secret set|list|rotate|revoke|delete|rekey: a thin client of
 * sagewai-identity's secrets API (docs/IDENTITY.md).
 *
 *   set NAME [--backend builtin|vault] [--vault-path P] [--from-file F] [--raw]
 *                          PUT /v1/secrets/NAME {"value_b64", "backend", "vault_path"}
 *   list                   GET /v1/secrets
 *   rotate NAME [--from-file F] [--raw]
 *                          POST /v1/secrets/NAME/rotate {"value_b64"}
 *   revoke NAME [--version N] [--hard]
 *                          POST /v1/secrets/NAME/revoke {"version"?, "hard"}
 *   delete NAME            DELETE /v1/secrets/NAME
 *   rekey                  POST /v1/secrets/rekey
 *
 * A value is never taken from the command line (it would stay in the
 * shell's history and show in ps and /proc/PID/cmdline): it is read from
 * standard input (without echo from a terminal) or --from-file, into a
 * locked buffer that is wiped, with the request body built from it, once
 * the request is done. One trailing newline ("\n" or "\r\n") is taken off,
 * so that `echo "$V" | sagewai secret set NAME` stores $V; --raw keeps
 * every byte. A value is never printed, and no argument of these commands
 * is echoed back in an error: a mistyped value on the line stays unseen.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sodium.h>

#include "cli.h"

#define SECRET_MAX (64u << 10) /* bytes of one value */

static const char group_help[] =
	"usage: sagewai secret COMMAND\n"
	"\n"
	"  set NAME [--backend builtin|vault] [--vault-path PATH] [--from-file FILE] [--raw]\n"
	"                         store a value (read from standard input) as a new version\n"
	"  list                   the secrets: backend, state, current version, versions\n"
	"  rotate NAME [--from-file FILE] [--raw]\n"
	"                         a new version of an existing secret\n"
	"  revoke NAME [--version N] [--hard]\n"
	"                         revoke one version, or all; --hard kills the sandboxes\n"
	"                         holding it\n"
	"  delete NAME            revoke every version and destroy the values\n"
	"  rekey                  re-encrypt every stored value under the current master key\n"
	"\n"
	"Values are read from standard input or a file, never from the command line.\n"
	"Writes need SAGEWAI_ADMIN_TOKEN; --tenant REF names the tenant ('_system' for\n"
	"operator-wide secrets).\n";

static const char set_help[] =
	"usage: sagewai secret set NAME [--backend builtin|vault] [--vault-path PATH]\n"
	"                               [--from-file FILE] [--raw] [--json]\n"
	"\n"
	"Store a value for secret NAME ([a-z0-9][a-z0-9_.-], at most 63): the first set\n"
	"creates version 1, each later set (or rotate) adds a version. The value is read\n"
	"from standard input (typed without echo on a terminal) or from FILE, at most\n"
	"65536 bytes, and never taken from the command line: arguments stay in the\n"
	"shell's history and show in ps. One trailing newline (\\n or \\r\\n) is removed;\n"
	"--raw keeps every byte. An empty value is refused.\n"
	"  --backend builtin   stored encrypted in PostgreSQL (the default)\n"
	"  --backend vault     written to the Vault KV engine identity is configured with\n"
	"  --vault-path PATH   refer to a value the operator keeps in Vault at PATH\n"
	"                      (implies --backend vault; no value is read)\n"
	"The backend is chosen when the secret is first set. Needs SAGEWAI_ADMIN_TOKEN;\n"
	"--tenant REF names the tenant ('_system' for operator-wide secrets).\n"
	"Example: sagewai secret set gh_token --tenant acme < token.txt\n";

static const char list_help[] =
	"usage: sagewai secret list [--json]\n"
	"\n"
	"List the secrets: name, backend, state, current version and how many versions\n"
	"(and how many of them are revoked or deleted). Never a value.\n";

static const char rotate_help[] =
	"usage: sagewai secret rotate NAME [--from-file FILE] [--raw] [--json]\n"
	"\n"
	"Add a version to existing secret NAME (HTTP 404 when there is none); runs\n"
	"submitted from now on get it. The value is read as for 'secret set' (standard\n"
	"input or FILE, one trailing newline removed unless --raw). Needs\n"
	"SAGEWAI_ADMIN_TOKEN.\n";

static const char revoke_help[] =
	"usage: sagewai secret revoke NAME [--version N] [--hard] [--json]\n"
	"\n"
	"Revoke version N of secret NAME (every version without --version): no run is\n"
	"given it any more, and submits that would need it are refused. --hard also\n"
	"kills, within a second, every running sandbox holding it (its step fails with\n"
	"revoked: NAME). Needs SAGEWAI_ADMIN_TOKEN.\n";

static const char delete_help[] =
	"usage: sagewai secret delete NAME [--json]\n"
	"\n"
	"Revoke every version of secret NAME and destroy the stored values. Needs\n"
	"SAGEWAI_ADMIN_TOKEN.\n";

static const char rekey_help[] =
	"usage: sagewai secret rekey [--json]\n"
	"\n"
	"Re-encrypt every builtin secret of every tenant under the identity service's\n"
	"current master key (the last line of its master keys file). Needs\n"
	"SAGEWAI_ADMIN_TOKEN.\n";

/* [a-z0-9][a-z0-9_.-]{0,62} */
static int name_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return 0;
	for (i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

/* An option of argv (before "--") that is neither one of opts nor a global
 * option: 1 after the usage error, which does not repeat it (it may be a
 * value typed on the line). cli_parse would name it. */
static int stray_option(const char *cmd, int argc, char **argv, const struct cli_opt *opts)
{
	static const char *const globals[] = {"--url", "--audit-url", "--identity-url", "--tenant",
					      "--token", NULL};
	const struct cli_opt *o;
	int i, j;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *a = argv[i];
		size_t n = strcspn(a, "=");
		int known = 0;

		if (a[0] != '-' || a[1] == '\0' || strcmp(a, "--json") == 0)
			continue;
		for (o = opts; o->name != NULL && !known; o++)
			if (strlen(o->name) == n && strncmp(a, o->name, n) == 0)
				known = 1 + (o->val != NULL && a[n] == '\0');
		for (j = 0; globals[j] != NULL && !known; j++)
			if (strlen(globals[j]) == n && strncmp(a, globals[j], n) == 0)
				known = 1 + (a[n] == '\0');
		if (!known) {
			cli_usage(cmd, "unknown option (not shown: it may be the value, "
				       "which is read from standard input or --from-file, "
				       "never the command line)");
			return 1;
		}
		if (known == 2)
			i++; /* its value */
	}
	return 0;
}

/* --help or -h before any "--" */
static int wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

/* A value in memory kept off swap and wiped when done. */
struct secret_buf {
	unsigned char *p;
	size_t len, cap;
};

static void secret_buf_free(struct secret_buf *b)
{
	if (b->p != NULL) {
		sodium_memzero(b->p, b->cap);
		sodium_munlock(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

static int secret_buf_alloc(struct secret_buf *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	if ((b->p = malloc(cap)) == NULL)
		return -1;
	b->cap = cap;
	(void)sodium_mlock(b->p, cap); /* best effort: RLIMIT_MEMLOCK may refuse */
	return 0;
}

static struct termios tty_saved;
static volatile sig_atomic_t tty_fd = -1;

static void tty_restore(int sig)
{
	if (tty_fd >= 0)
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read everything from fd (a terminal: one line, without echo) into b.
 * 0, or -1 with errstr. */
static int read_value(int fd, const char *shown, const char *name, struct secret_buf *b,
		      char *errstr, size_t errlen)
{
	struct termios t;
	int tty = isatty(fd), rc = -1;
	ssize_t got;

	if (tty && tcgetattr(fd, &tty_saved) == 0) {
		fprintf(stderr, "value of secret %s (not echoed; end with Enter): ", name);
		fflush(stderr);
		t = tty_saved;
		t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		tty_fd = fd;
		signal(SIGINT, tty_restore);
		signal(SIGTERM, tty_restore);
		signal(SIGHUP, tty_restore);
		tcsetattr(fd, TCSAFLUSH, &t);
	} else {
		tty = 0;
	}
	for (;;) {
		if (b->len == b->cap) {
			snprintf(errstr, errlen, "the value in %s is larger than %u bytes", shown,
				 SECRET_MAX);
			goto out;
		}
		got = read(fd, b->p + b->len, b->cap - b->len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(errstr, errlen, "cannot read %s: %s", shown, strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		b->len += (size_t)got;
		if (tty && b->p[b->len - 1] == '\n')
			break;
	}
	rc = 0;
out:
	if (tty) {
		tcsetattr(fd, TCSAFLUSH, &tty_saved);
		tty_fd = -1;
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		fputc('\n', stderr);
	}
	return rc;
}

/* The request body {"value_b64": "...", <the members of rest>} built in
 * the locked buffer body from the value of file (NULL: standard input).
 * Returns 0, or a CLI exit code after printing the error. */
static int value_body(const char *cmd, const char *name, const char *file, int raw,
		      json_t *rest, struct secret_buf *body)
{
	struct secret_buf v = {0};
	char err[512], shown[128], *tail = NULL;
	size_t b64len, tlen;
	int fd = 0, rc = CLI_FAIL;

	memset(body, 0, sizeof(*body));
	if (sodium_init() < 0) {
		cli_error("cannot initialise libsodium");
		return CLI_FAIL;
	}
	if (file != NULL && strcmp(file, "-") != 0) {
		cli_oneline(file, 100, shown, sizeof(shown));
		if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
			cli_error("cannot read %s: %s", shown, strerror(errno));
			return CLI_FAIL;
		}
	} else {
		snprintf(shown, sizeof(shown), "standard input");
	}
	/* room for a "\r\n" to take off, and one byte to tell "too large" */
	if (secret_buf_alloc(&v, SECRET_MAX + 3) == -1) {
		cli_error("out of memory");
		goto out;
	}
	if (read_value(fd, shown, name, &v, err, sizeof(err)) == -1) {
		cli_error("%s: %s", cmd, err);
		goto out;
	}
	if (!raw && v.len > 0 && v.p[v.len - 1] == '\n') {
		v.len--;
		if (v.len > 0 && v.p[v.len - 1] == '\r')
			v.len--;
	}
	if (v.len > SECRET_MAX) {
		cli_error("%s: the value in %s is larger than %u bytes", cmd, shown, SECRET_MAX);
		goto out;
	}
	if (v.len == 0) {
		cli_error("%s: the value is empty (nothing read from %s)", cmd, shown);
		rc = CLI_USAGE;
		goto out;
	}
	if ((tail = json_dumps(rest, JSON_COMPACT)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	/* {"value_b64":"B64"} or {"value_b64":"B64",REST} */
	tlen = strlen(tail);
	b64len = sodium_base64_ENCODED_LEN(v.len, sodium_base64_VARIANT_ORIGINAL);
	if (secret_buf_alloc(body, b64len + tlen + 32) == -1) {
		cli_error("out of memory");
		goto out;
	}
	memcpy(body->p, "{\"value_b64\":\"", 14);
	sodium_bin2base64((char *)body->p + 14, b64len, v.p, v.len,
			  sodium_base64_VARIANT_ORIGINAL);
	body->len = 14 + strlen((char *)body->p + 14);
	body->p[body->len++] = '"';
	if (tlen > 2) {
		body->p[body->len++] = ',';
		memcpy(body->p + body->len, tail + 1, tlen - 1);
		body->len += tlen - 1;
	} else {
		body->p[body->len++] = '}';
	}
	body->p[body->len] = '\0';
	rc = 0;
out:
	if (rc != 0)
		secret_buf_free(body);
	secret_buf_free(&v);
	free(tail);
	if (fd > 0)
		close(fd);
	return rc;
}

static int send_value(struct cli_env *env, const char *method, const char *path,
		      struct secret_buf *body, struct cli_resp *r)
{
	char err[1024];
	int rc;

	rc = cli_http_call(env, CLI_IDENTITY_SVC, method, path, "application/json",
			   (const char *)body->p, body->len, env->admin_token, r, err,
			   sizeof(err));
	secret_buf_free(body);
	if (rc == -1)
		cli_error("%s", err);
	return rc;
}

static int secret_set(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "secret set";
	const char *backend = NULL, *vault_path = NULL, *file = NULL, **pos = NULL;
	int raw = 0;
	const struct cli_opt opts[] = {{"--backend", &backend, NULL},
				       {"--vault-path", &vault_path, NULL},
				       {"--from-file", &file, NULL},
				       {"--raw", NULL, &raw},
				       {NULL, NULL, NULL}};
	struct secret_buf body = {0};
	struct cli_resp r = {0};
	json_t *rest = NULL;
	char *q = NULL, *path = NULL, *text = NULL, a[128], b[32];
	int n, rc = CLI_USAGE;

	if ((pos = calloc((size_t)argc + 1, sizeof(*pos))) == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if (wants_help(argc, argv)) {
		fputs(set_help, stdout);
		rc = CLI_OK;
		goto out;
	}
	if (stray_option(cmd, argc, argv, opts) ||
	    (n = cli_parse(env, cmd, argc, argv, opts, pos, argc)) == -1)
		goto out;
	if (n == 0) {
		cli_usage(cmd, "missing NAME");
		goto out;
	}
	if (n > 1) {
		cli_usage(cmd, "a value is never taken from the command line (it would stay in "
			       "the shell's history and show in ps): give it on standard input "
			       "or with --from-file FILE");
		goto out;
	}
	if (!name_ok(pos[0])) {
		cli_usage(cmd, "NAME must be 1 to 63 of a-z 0-9 _ . - (starting with a letter "
			       "or digit)");
		goto out;
	}
	if (backend != NULL && strcmp(backend, "builtin") != 0 && strcmp(backend, "vault") != 0) {
		cli_usage(cmd, "--backend must be builtin or vault");
		goto out;
	}
	if (vault_path != NULL) {
		if (backend != NULL && strcmp(backend, "vault") != 0) {
			cli_usage(cmd, "--vault-path refers to a value in Vault: the backend is "
				       "vault");
			goto out;
		}
		if (*vault_path == '\0') {
			cli_usage(cmd, "--vault-path needs a path");
			goto out;
		}
		if (file != NULL || raw) {
			cli_usage(cmd, "--vault-path stores no value: no --from-file or --raw");
			goto out;
		}
		backend = "vault";
	}
	if (env->admin_token == NULL) {
		cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
		goto out;
	}
	rc = CLI_FAIL;
	if ((rest = json_object()) == NULL ||
	    (backend != NULL && json_object_set_new(rest, "backend", json_string(backend))) ||
	    (vault_path != NULL &&
	     json_object_set_new(rest, "vault_path", json_string(vault_path)))) {
		cli_error("%s: out of memory, or the vault path is not valid UTF-8", cmd);
		goto out;
	}
	if ((q = cli_id_query(env, NULL)) == NULL ||
	    (path = cli_id_path("secrets", pos[0], NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (vault_path != NULL) {
		char err[1024];

		if ((text = json_dumps(rest, JSON_COMPACT)) == NULL) {
			cli_error("out of memory");
			goto out;
		}
		if (cli_http_call(env, CLI_IDENTITY_SVC, "PUT", path, "application/json", text,
				  strlen(text), env->admin_token, &r, err, sizeof(err)) == -1) {
			cli_error("%s", err);
			goto out;
		}
	} else {
		if ((rc = value_body(cmd, pos[0], file, raw, rest, &body)) != 0)
			goto out;
		rc = CLI_FAIL;
		if (send_value(env, "PUT", path, &body, &r) == -1)
			goto out;
	}
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("secret %s: version %lld stored (backend %s)\n",
		       cli_oneline(cli_jstr(r.json, "name", pos[0]), 100, a, sizeof(a)),
		       (long long)json_integer_value(json_object_get(r.json, "version")),
		       cli_oneline(cli_jstr(r.json, "backend", backend ? backend : "builtin"), 20,
				   b, sizeof(b)));
	rc = CLI_OK;
out:
	secret_buf_free(&body);
	cli_resp_free(&r);
	json_decref(rest);
	free(pos);
	free(q);
	free(path);
	free(text);
	return rc;
}

static int secret_rotate(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "secret rotate";
	const char *file = NULL, **pos = NULL;
	int raw = 0;
	const struct cli_opt opts[] = {{"--from-file", &file, NULL},
				       {"--raw", NULL, &raw},
				       {NULL, NULL, NULL}};
	struct secret_buf body = {0};
	struct cli_resp r = {0};
	json_t *rest = NULL;
	char *q = NULL, *path = NULL, a[128];
	int n, rc = CLI_USAGE;

	if ((pos = calloc((size_t)argc + 1, sizeof(*pos))) == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if (wants_help(argc, argv)) {
		fputs(rotate_help, stdout);
		rc = CLI_OK;
		goto out;
	}
	if (stray_option(cmd, argc, argv, opts) ||
	    (n = cli_parse(env, cmd, argc, argv, opts, pos, argc)) == -1)
		goto out;
	if (n == 0) {
		cli_usage(cmd, "missing NAME");
		goto out;
	}
	if (n > 1) {
		cli_usage(cmd, "a value is never taken from the command line (it would stay in "
			       "the shell's history and show in ps): give it on standard input "
			       "or with --from-file FILE");
		goto out;
	}
	if (!name_ok(pos[0])) {
		cli_usage(cmd, "NAME must be 1 to 63 of a-z 0-9 _ . - (starting with a letter "
			       "or digit)");
		goto out;
	}
	if (env->admin_token == NULL) {
		cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
		goto out;
	}
	rc = CLI_FAIL;
	if ((rest = json_object()) == NULL || (q = cli_id_query(env, NULL)) == NULL ||
	    (path = cli_id_path("secrets", pos[0], "/rotate", q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if ((rc = value_body(cmd, pos[0], file, raw, rest, &body)) != 0)
		goto out;
	rc = CLI_FAIL;
	if (send_value(env, "POST", path, &body, &r) == -1)
		goto out;
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("secret %s rotated: version %lld is current\n",
		       cli_oneline(cli_jstr(r.json, "name", pos[0]), 100, a, sizeof(a)),
		       (long long)json_integer_value(json_object_get(r.json, "version")));
	rc = CLI_OK;
out:
	secret_buf_free(&body);
	cli_resp_free(&r);
	json_decref(rest);
	free(pos);
	free(q);
	free(path);
	return rc;
}

/* "1, 2" from versions_revoked (an array of numbers, or a count). */
static void revoked_list(json_t *v, char *out, size_t outlen)
{
	json_t *x;
	size_t i, o = 0;

	if (json_is_integer(v)) {
		snprintf(out, outlen, "%lld version%s", (long long)json_integer_value(v),
			 json_integer_value(v) == 1 ? "" : "s");
		return;
	}
	if (!json_is_array(v) || json_array_size(v) == 0) {
		snprintf(out, outlen, "no version (all were revoked already)");
		return;
	}
	o = (size_t)snprintf(out, outlen, "version%s ", json_array_size(v) == 1 ? "" : "s");
	json_array_foreach(v, i, x) {
		int w = snprintf(out + o, outlen - o, "%s%lld", i ? ", " : "",
				 (long long)json_integer_value(x));

		if (w < 0 || (size_t)w >= outlen - o)
			break;
		o += (size_t)w;
	}
}

static int secret_revoke(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "secret revoke";
	const char *version = NULL, *pos[1];
	int hard = 0;
	const struct cli_opt opts[] = {{"--version", &version, NULL},
				       {"--hard", NULL, &hard},
				       {NULL, NULL, NULL}};
	struct cli_resp r = {0};
	json_t *body = NULL;
	char err[1024], *q = NULL, *path = NULL, *text = NULL, a[128], list[256];
	long v = 0;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, opts, pos, 1)) == -2) {
		fputs(revoke_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing NAME");
	if (!name_ok(pos[0]))
		return cli_usage(cmd, "NAME must be 1 to 63 of a-z 0-9 _ . - (starting with a "
				      "letter or digit)");
	if (version != NULL) {
		char *end;

		v = strtol(version, &end, 10);
		if (*version == '\0' || *end != '\0' || v < 1 || v > 0x7fffffff)
			return cli_usage(cmd, "--version must be a positive integer");
	}
	if (env->admin_token == NULL)
		return cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
	body = version != NULL ? json_pack("{s:i, s:b}", "version", (int)v, "hard", hard)
			       : json_pack("{s:b}", "hard", hard);
	if (body == NULL || (text = json_dumps(body, JSON_COMPACT)) == NULL ||
	    (q = cli_id_query(env, NULL)) == NULL ||
	    (path = cli_id_path("secrets", pos[0], "/revoke", q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_http_call(env, CLI_IDENTITY_SVC, "POST", path, "application/json", text,
			  strlen(text), env->admin_token, &r, err, sizeof(err)) == -1) {
		cli_error("%s", err);
		goto out;
	}
	if (env->json) {
		cli_raw_print(&r, stdout);
	} else {
		revoked_list(json_object_get(r.json, "versions_revoked"), list, sizeof(list));
		printf("secret %s: %s revoked%s\n",
		       cli_oneline(cli_jstr(r.json, "name", pos[0]), 100, a, sizeof(a)), list,
		       json_is_true(json_object_get(r.json, "hard"))
			       ? " (hard: sandboxes holding it are killed)"
			       : "");
	}
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	json_decref(body);
	free(text);
	free(q);
	free(path);
	return rc;
}

static int secret_delete(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "secret delete";
	const char *pos[1];
	struct cli_resp r = {0};
	char *q = NULL, *path = NULL, a[128];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, NULL, pos, 1)) == -2) {
		fputs(delete_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing NAME");
	if (!name_ok(pos[0]))
		return cli_usage(cmd, "NAME must be 1 to 63 of a-z 0-9 _ . - (starting with a "
				      "letter or digit)");
	if (env->admin_token == NULL)
		return cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
	if ((q = cli_id_query(env, NULL)) == NULL ||
	    (path = cli_id_path("secrets", pos[0], NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_call_json(env, CLI_IDENTITY_SVC, "DELETE", path, NULL, env->admin_token, &r) < 0)
		goto out;
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("secret %s deleted: every version revoked, the values destroyed\n",
		       cli_oneline(pos[0], 100, a, sizeof(a)));
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	free(q);
	free(path);
	return rc;
}

static int secret_rekey(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "secret rekey";
	struct cli_resp r = {0};
	char a[128];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, NULL, NULL, 0)) == -2) {
		fputs(rekey_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (env->admin_token == NULL)
		return cli_usage(cmd, "SAGEWAI_ADMIN_TOKEN is not set");
	if (cli_call_json(env, CLI_IDENTITY_SVC, "POST", "/v1/secrets/rekey", NULL,
			  env->admin_token, &r) < 0)
		goto out;
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("rekeyed: %lld stored value%s now under master key %s\n",
		       (long long)json_integer_value(json_object_get(r.json, "rows")),
		       json_integer_value(json_object_get(r.json, "rows")) == 1 ? "" : "s",
		       cli_oneline(cli_jstr(r.json, "key_id", "?"), 64, a, sizeof(a)));
	rc = CLI_OK;
out:
	cli_resp_free(&r);
	return rc;
}

/* "3" or "3 (1 revoked, 1 deleted)" from a secret's versions. */
static void versions_summary(json_t *versions, char *out, size_t outlen)
{
	json_t *v;
	size_t i, revoked = 0, deleted = 0, n = json_array_size(versions);

	json_array_foreach(versions, i, v) {
		const char *st = cli_jstr(v, "state", "");

		revoked += strcmp(st, "revoked") == 0;
		deleted += strcmp(st, "deleted") == 0;
	}
	if (revoked && deleted)
		snprintf(out, outlen, "%zu (%zu revoked, %zu deleted)", n, revoked, deleted);
	else if (revoked || deleted)
		snprintf(out, outlen, "%zu (%zu %s)", n, revoked + deleted,
			 revoked ? "revoked" : "deleted");
	else
		snprintf(out, outlen, "%zu", n);
}

static int secret_list(struct cli_env *env, int argc, char **argv)
{
	static const char cmd[] = "secret list";
	static const char *const head[] = {"NAME", "BACKEND", "STATE", "CURRENT", "VERSIONS"};
	struct cli_resp r = {0};
	struct cli_table *t = NULL;
	json_t *list, *s;
	size_t i;
	char *q = NULL, *path = NULL;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, cmd, argc, argv, NULL, NULL, 0)) == -2) {
		fputs(list_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if ((q = cli_id_query(env, NULL)) == NULL ||
	    (path = cli_id_path("secrets", NULL, NULL, q)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (cli_call_json(env, CLI_IDENTITY_SVC, "GET", path, NULL, cli_id_read_token(env), &r) <
	    0)
		goto out;
	if ((n = cli_answer_list(env, &r, "secrets", "the identity service", "no secrets",
				 &list)) <= 0) {
		rc = n == 0 ? CLI_OK : CLI_FAIL;
		goto out;
	}
	if ((t = cli_table_new(5, head)) == NULL)
		goto nomem;
	json_array_foreach(list, i, s) {
		char cur[32], vers[96];
		const char *row[5] = {cli_jstr(s, "name", "?"), cli_jstr(s, "backend", "?"),
				      cli_jstr(s, "state", "?"), cur, vers};
		json_t *c = json_object_get(s, "current");

		if (json_is_integer(c) && json_integer_value(c) > 0)
			snprintf(cur, sizeof(cur), "%lld", (long long)json_integer_value(c));
		else
			snprintf(cur, sizeof(cur), "-");
		versions_summary(json_object_get(s, "versions"), vers, sizeof(vers));
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

int cli_secret(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"set", secret_set},
		{"list", secret_list},
		{"rotate", secret_rotate},
		{"revoke", secret_revoke},
		{"delete", secret_delete},
		{"rekey", secret_rekey},
		{NULL, NULL},
	};

	return cli_group(env, "secret", group_help, cmds, argc, argv);
}
