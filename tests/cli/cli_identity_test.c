/*
 * sagewai secret ... and sagewai identity ... against a stand-in identity
 * service and scheduler: a small evhttp server in a thread of this test
 * answers canned JSON as docs/IDENTITY.md describes, and records every
 * request (method, path, query, Authorization, Content-Type, body).
 *
 * What it proves: each command sends the request of the API table (value_b64
 * is the base64 of what came on standard input or from the file, less one
 * trailing newline unless --raw); a secret value never appears in an
 * argument, the request's path or query, stdout or stderr; a value given on
 * the command line is refused before anything is sent, without echoing it;
 * tables and --json print what the server said; error answers become one
 * line naming the server's message; writes carry the admin token, reads the
 * admin token when set, else the tenant's key; --tenant, --level and the
 * system scope become the query; identity resolve sends the workflow's
 * identity-bearing steps and prints the cascade, the denials and a refusal
 * (exit 1).
 *
 *   cli_identity_test PATH_TO_SAGEWAI
 */
#include <pthread.h>
#include <sys/queue.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <sodium.h>

#include "cli_srv.h"

#define TOKEN "tenant-key-5e6f7a8b-SECRET"
#define ADMIN "admin-token-1c2d3e4f-SECRET"
#define VALUE "s3cr3t-VALUE-7Qz9" /* the secret value of most cases */

/* ---- the stand-in server ------------------------------------------- */

static void reply_json(struct evhttp_request *req, int status, const char *body)
{
	cli_srv_json(req, status, body);
}

static void reply_err(struct evhttp_request *req, int status, const char *code, const char *msg)
{
	cli_srv_err(req, status, code, msg);
}

static const char secrets_body[] =
	"{\"secrets\":["
	"{\"name\":\"gh_token\",\"backend\":\"builtin\",\"state\":\"active\",\"current\":3,"
	"\"versions\":[{\"version\":1,\"state\":\"revoked\",\"created\":\"2024-05-01T12:00:00Z\"},"
	"{\"version\":2,\"state\":\"deleted\",\"created\":\"2024-05-01T12:00:00Z\"},"
	"{\"version\":3,\"state\":\"active\",\"created\":\"2024-05-01T12:00:00Z\"}]},"
	"{\"name\":\"npm.publish-key\",\"backend\":\"vault\",\"state\":\"revoked\","
	"\"current\":null,\"versions\":[{\"version\":7,\"state\":\"revoked\","
	"\"created\":\"2024-05-01T12:00:00Z\"}]}"
	"]}";

static const char profiles_body[] =
	"{\"profiles\":["
	"{\"name\":\"default\",\"level\":\"system\",\"keys\":1,"
	"\"updated\":\"2024-05-01T12:00:00Z\"},"
	"{\"name\":\"deploy\",\"level\":\"workflow\",\"keys\":2,"
	"\"updated\":\"2024-05-02T08:30:00.250Z\"}]}";

static const char profile_body[] =
	"{\"name\":\"deploy\",\"level\":\"workflow\",\"body\":{\"keys\":{"
	"\"GITHUB_TOKEN\":{\"secret\":\"gh_token\",\"steps\":[\"ship/push\",\"release/*\"],"
	"\"agents\":[\"claude-code\"]},"
	"\"API_BASE\":{\"value\":\"https://api.internal\"}}}}";

static const char workflow_body[] =
	"{\"name\":\"ship\",\"version\":3,\"steps\":4,\"created\":\"2024-05-01T12:00:00Z\","
	"\"yaml\":\"name: ship\\n\",\"definition\":{\"name\":\"ship\",\"version\":3,\"steps\":["
	"{\"name\":\"build\",\"mode\":\"in_process\",\"uses\":\"template\",\"with\":{}},"
	"{\"name\":\"push\",\"mode\":\"identity_scoped\",\"identity\":\"deploy\",\"run\":\"env\"},"
	"{\"name\":\"review\",\"mode\":\"cli_agent\",\"cli_agent\":\"claude-code\","
	"\"identity\":\"deploy\"},"
	"{\"name\":\"tests\",\"mode\":\"sandboxed\",\"run\":\"make\"},"
	"{\"name\":\"fix\",\"mode\":\"cli_agent_jit\",\"cli_agent\":\"codex\"}]}}";

static const char resolved_ok[] =
	"{\"ok\":true,\"code\":\"\",\"error\":\"\",\"steps\":["
	"{\"step\":\"push\",\"keys\":["
	"{\"env\":\"GITHUB_TOKEN\",\"level\":\"workflow\",\"profile\":\"deploy\","
	"\"kind\":\"secret\","
	"\"secret\":\"gh_token\",\"version\":3,\"backend\":\"builtin\",\"mac\":\"00ff\"},"
	"{\"env\":\"API_BASE\",\"level\":\"system\",\"profile\":\"default\",\"kind\":\"plain\","
	"\"secret\":\"\",\"version\":0,\"backend\":\"\",\"mac\":\"\"}]},"
	"{\"step\":\"review\",\"keys\":["
	"{\"env\":\"NPM_TOKEN\",\"level\":\"user\",\"profile\":\"alice\",\"kind\":\"secret\","
	"\"secret\":\"npm.publish-key\",\"version\":7,\"backend\":\"vault\",\"mac\":\"aa\"}]},"
	"{\"step\":\"fix\",\"keys\":[]}],"
	"\"denied\":[{\"step\":\"review\",\"env\":\"GITHUB_TOKEN\",\"secret\":\"gh_token\","
	"\"reason\":\"agent claude-code not in acl\"}]}";

static const char resolved_refused[] =
	"{\"ok\":false,\"code\":\"revoked\","
	"\"error\":\"revoked: GITHUB_TOKEN (secret gh_token v2)\","
	"\"steps\":[],\"denied\":[]}";

static int is_admin(struct evhttp_request *req)
{
	const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

	return a != NULL && strcmp(a, "Bearer " ADMIN) == 0;
}

static void handle(struct evhttp_request *req, const struct cli_rq *rq)
{
	const char *path = rq->path, *query = rq->query, *body = rq->body;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int post = cmd == EVHTTP_REQ_POST, get = cmd == EVHTTP_REQ_GET;
	int put = cmd == EVHTTP_REQ_PUT, del = cmd == EVHTTP_REQ_DELETE;
	json_t *j;

	if ((put || post || del) && strncmp(path, "/v1/workflows", 13) != 0 &&
	    strcmp(path, "/v1/identity/resolve") != 0 && !is_admin(req)) {
		reply_err(req, 403, "forbidden", "writes need the operator's token");
	} else if (put && strcmp(path, "/v1/secrets/gh_token") == 0) {
		reply_json(req, 201,
			   "{\"name\":\"gh_token\",\"version\":1,\"backend\":\"builtin\"}");
	} else if (put && strcmp(path, "/v1/secrets/vaulted") == 0) {
		reply_json(req, 201, "{\"name\":\"vaulted\",\"version\":4,\"backend\":\"vault\"}");
	} else if (put && strcmp(path, "/v1/secrets/toolong") == 0) {
		reply_err(req, 413, "too_large", "the value is larger than the service takes");
	} else if (post && strcmp(path, "/v1/secrets/gh_token/rotate") == 0) {
		reply_json(req, 201, "{\"name\":\"gh_token\",\"version\":2}");
	} else if (post && strcmp(path, "/v1/secrets/gh_token/revoke") == 0) {
		j = json_loads(body, 0, NULL);
		reply_json(req, 200,
			   json_is_true(json_object_get(j, "hard"))
				   ? "{\"name\":\"gh_token\",\"versions_revoked\":[2],"
				     "\"hard\":true}"
				   : "{\"name\":\"gh_token\",\"versions_revoked\":[1,2,3],"
				     "\"hard\":false}");
		json_decref(j);
	} else if (del && strcmp(path, "/v1/secrets/gh_token") == 0) {
		reply_json(req, 200, "{\"name\":\"gh_token\",\"deleted\":true}");
	} else if (post && strcmp(path, "/v1/secrets/rekey") == 0) {
		reply_json(req, 200, "{\"key_id\":\"k2\",\"rows\":5}");
	} else if (get && strcmp(path, "/v1/secrets") == 0) {
		if (query != NULL && strcmp(query, "tenant=empty") == 0)
			reply_json(req, 200, "{\"secrets\":[]}");
		else
			reply_json(req, 200, secrets_body);
	} else if (put && strcmp(path, "/v1/identity/profiles/deploy") == 0) {
		reply_json(req, 200, "{\"name\":\"deploy\",\"level\":\"workflow\"}");
	} else if (put && strcmp(path, "/v1/identity/profiles/default") == 0) {
		reply_json(req, 200, "{\"name\":\"default\",\"level\":\"system\"}");
	} else if (put && strcmp(path, "/v1/identity/profiles/broken") == 0) {
		reply_err(req, 422, "missing", "key GITHUB_TOKEN: no secret named gh_tokn");
	} else if (get && strcmp(path, "/v1/identity/profiles/deploy") == 0) {
		reply_json(req, 200, profile_body);
	} else if (get && strcmp(path, "/v1/identity/profiles") == 0) {
		reply_json(req, 200, profiles_body);
	} else if (del && strcmp(path, "/v1/identity/profiles/deploy") == 0) {
		reply_json(req, 200, "{}");
	} else if (get && (strcmp(path, "/v1/workflows/ship") == 0 ||
			   strcmp(path, "/v1/workflows/ship/3") == 0)) {
		reply_json(req, 200, workflow_body);
	} else if (post && strcmp(path, "/v1/identity/resolve") == 0) {
		j = json_loads(body, 0, NULL);
		if (j == NULL)
			reply_err(req, 400, "bad_json", "not JSON");
		else if (strcmp(json_string_value(json_object_get(j, "user")), "mallory") == 0)
			reply_json(req, 200, resolved_refused);
		else
			reply_json(req, 200, resolved_ok);
		json_decref(j);
	} else {
		reply_err(req, 404, "not_found", "no such resource");
	}
}

static int nreqs(void)
{
	return cli_srv_nreqs();
}

/* The last request (fields valid until server_stop); it must be method path. */
static struct cli_rq *last(const char *method, const char *path)
{
	struct cli_rq *r;

	pthread_mutex_lock(&cli_srv.mu);
	SW_CHECK(cli_srv.nreqs > 0);
	r = &cli_srv.reqs[cli_srv.nreqs - 1];
	pthread_mutex_unlock(&cli_srv.mu);
	SW_CHECKF(strcmp(r->method, method) == 0 && strcmp(r->path, path) == 0,
		  "last request %s %s, expected %s %s", r->method, r->path, method, path);
	return r;
}

/* ---- running the CLI ----------------------------------------------- */

static const char *bin;
static char url[64];
static char tmpdir[] = "/tmp/sagewai-cli-identity-XXXXXX";

enum { ENV_BOTH, ENV_TENANT, ENV_NONE, ENV_WRONG };

/* Run sagewai with the identity service at the stand-in and the scheduler
 * unreachable (--url to port 1) unless args name --url again; tokens by
 * which. Every value the test uses must stay out of argv: checked here. */
static void cli_run(int which, const char *stdin_path, struct cli_out *o, ...)
{
	static char tok[] = "SAGEWAI_TOKEN=" TOKEN, adm[] = "SAGEWAI_ADMIN_TOKEN=" ADMIN;
	static char wrong[] = "SAGEWAI_ADMIN_TOKEN=not-the-admin-token";
	char *envs[4][3] = {{tok, adm, NULL}, {tok, NULL, NULL}, {NULL, NULL, NULL},
			    {tok, wrong, NULL}};
	const char *args[40];
	const char *a;
	va_list ap;
	int n = 0, i;

	args[n++] = "--identity-url";
	args[n++] = url;
	args[n++] = "--url";
	args[n++] = "http://127.0.0.1:1";
	va_start(ap, o);
	while ((a = va_arg(ap, const char *)) != NULL && n < 39)
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	cli_runv(bin, args, envs[which], stdin_path, o);
	for (i = 0; i < n; i++)
		SW_CHECKF(strstr(args[i], VALUE) == NULL, "the test put the value in argv");
	if (strstr(o->out, TOKEN) || strstr(o->err, TOKEN) || strstr(o->out, ADMIN) ||
	    strstr(o->err, ADMIN)) {
		cli_out_dump(args[4], o);
		SW_CHECKF(0, "a token was printed");
	}
	/* VALUE, and the stand-in value typed on the command line in the
	 * refused cases, both start so */
	if (strstr(o->out, "s3cr3t") || strstr(o->err, "s3cr3t")) {
		cli_out_dump(args[4], o);
		SW_CHECKF(0, "a secret value was printed");
	}
}

#define CLI(o, ...) cli_run(ENV_BOTH, NULL, o, __VA_ARGS__, (const char *)NULL)
#define CLI_IN(file, o, ...) cli_run(ENV_BOTH, file, o, __VA_ARGS__, (const char *)NULL)

static void expect(const char *what, struct cli_out *o, int status, const char *out,
		   const char *err)
{
	cli_expect(what, o, status, out, err);
}

/* exit status, stdout empty, stderr one line holding must */
static void expect_err(const char *what, struct cli_out *o, int status, const char *must)
{
	if (o->status != status || o->out[0] != '\0' || cli_lines(o->err) != 1 ||
	    strncmp(o->err, "sagewai: ", 9) != 0 || strstr(o->err, must) == NULL) {
		cli_out_dump(what, o);
		SW_CHECKF(0, "%s: expected exit %d and one line with '%s'", what, status, must);
	}
	cli_out_free(o);
}

static void write_bytes(const char *name, const void *data, size_t len, char *path, size_t n)
{
	cli_write_bytes(tmpdir, name, data, len, path, n);
}

static void write_file(const char *name, const char *text, char *path, size_t n)
{
	write_bytes(name, text, strlen(text), path, n);
}

/* The request carried JSON equal to want (a json_pack'd value, taken),
 * and neither its path nor its query holds the value. */
static void body_is(const struct cli_rq *r, json_t *want)
{
	json_t *got = json_loads(r->body, 0, NULL);

	SW_CHECKF(got != NULL && json_equal(got, want), "%s %s body: %s", r->method, r->path,
		  r->body);
	SW_CHECKF(r->ctype != NULL && strcmp(r->ctype, "application/json") == 0, "%s",
		  r->ctype ? r->ctype : "(no content type)");
	SW_CHECK(strstr(r->path, VALUE) == NULL);
	SW_CHECK(r->query == NULL || strstr(r->query, VALUE) == NULL);
	json_decref(got);
	json_decref(want);
}

static const char *b64(const void *p, size_t n)
{
	static char out[4096];

	SW_CHECK(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL) <= sizeof(out));
	return sodium_bin2base64(out, sizeof(out), p, n, sodium_base64_VARIANT_ORIGINAL);
}

static void query_is(const struct cli_rq *r, const char *q)
{
	SW_CHECKF((q == NULL && r->query == NULL) ||
		  (q != NULL && r->query != NULL && strcmp(r->query, q) == 0),
		  "%s %s: query %s, expected %s", r->method, r->path,
		  r->query ? r->query : "(none)", q ? q : "(none)");
}

static void auth_is(const struct cli_rq *r, const char *want)
{
	SW_CHECKF((want == NULL && r->auth == NULL) ||
		  (want != NULL && r->auth != NULL && strcmp(r->auth, want) == 0),
		  "%s %s: Authorization %s", r->method, r->path, r->auth ? "wrong" : "missing");
}

/* ---- the cases ----------------------------------------------------- */

static void test_secret_set(void)
{
	static const unsigned char bin_value[] = {'s', 0, 0xff, '\n', 0x80, '\r', '\n'};
	char p_nl[256], p_crlf[256], p_raw[256], p_empty[256], p_nl_only[256], p_big[256];
	char p_bin[256], p_two[256], p_max[256];
	struct cli_out o;
	struct cli_rq *r;
	int before;

	write_file("value.txt", VALUE "\n", p_nl, sizeof(p_nl));
	write_file("value-crlf.txt", VALUE "\r\n", p_crlf, sizeof(p_crlf));
	write_file("value-raw.txt", VALUE, p_raw, sizeof(p_raw));
	write_file("value-two.txt", VALUE "\n\n", p_two, sizeof(p_two));
	write_file("empty.txt", "", p_empty, sizeof(p_empty));
	write_file("nl.txt", "\n", p_nl_only, sizeof(p_nl_only));
	write_bytes("bin.dat", bin_value, sizeof(bin_value), p_bin, sizeof(p_bin));
	{
		size_t n = (64u << 10) + 1;
		char *big = malloc(n);

		SW_CHECK(big != NULL);
		memset(big, 'x', n);
		write_bytes("big.txt", big, n, p_big, sizeof(p_big));
		big[n - 1] = '\n'; /* 65536 bytes and a newline: the largest value */
		write_bytes("max.txt", big, n, p_max, sizeof(p_max));
		free(big);
	}

	/* from standard input: one trailing newline off */
	CLI_IN(p_nl, &o, "secret", "set", "gh_token");
	expect("set stdin", &o, 0, "secret gh_token: version 1 stored (backend builtin)\n", "");
	r = last("PUT", "/v1/secrets/gh_token");
	auth_is(r, "Bearer " ADMIN);
	query_is(r, NULL);
	body_is(r, json_pack("{s:s}", "value_b64", b64(VALUE, strlen(VALUE))));

	CLI_IN(p_crlf, &o, "secret", "set", "gh_token");
	expect("set crlf", &o, 0, NULL, "");
	body_is(last("PUT", "/v1/secrets/gh_token"),
		json_pack("{s:s}", "value_b64", b64(VALUE, strlen(VALUE))));
	/* only one newline goes */
	CLI_IN(p_two, &o, "secret", "set", "gh_token");
	expect("set two newlines", &o, 0, NULL, "");
	body_is(last("PUT", "/v1/secrets/gh_token"),
		json_pack("{s:s}", "value_b64", b64(VALUE "\n", strlen(VALUE) + 1)));
	/* --raw keeps every byte */
	CLI_IN(p_nl, &o, "secret", "set", "gh_token", "--raw");
	expect("set --raw", &o, 0, NULL, "");
	body_is(last("PUT", "/v1/secrets/gh_token"),
		json_pack("{s:s}", "value_b64", b64(VALUE "\n", strlen(VALUE) + 1)));
	/* no newline to take */
	CLI_IN(p_raw, &o, "secret", "set", "gh_token");
	expect("set no newline", &o, 0, NULL, "");
	body_is(last("PUT", "/v1/secrets/gh_token"),
		json_pack("{s:s}", "value_b64", b64(VALUE, strlen(VALUE))));
	/* binary, from a file, NUL bytes and all */
	CLI(&o, "secret", "set", "gh_token", "--from-file", p_bin, "--raw");
	expect("set binary file", &o, 0, NULL, "");
	body_is(last("PUT", "/v1/secrets/gh_token"),
		json_pack("{s:s}", "value_b64", b64(bin_value, sizeof(bin_value))));
	CLI(&o, "secret", "set", "gh_token", "--from-file", p_bin);
	expect("set binary file, newline off", &o, 0, NULL, "");
	body_is(last("PUT", "/v1/secrets/gh_token"),
		json_pack("{s:s}", "value_b64", b64(bin_value, sizeof(bin_value) - 2)));

	/* backend and tenant */
	CLI_IN(p_nl, &o, "secret", "set", "vaulted", "--backend", "vault", "--tenant",
	       "acme corp");
	expect("set vault", &o, 0, "secret vaulted: version 4 stored (backend vault)\n", "");
	r = last("PUT", "/v1/secrets/vaulted");
	query_is(r, "tenant=acme%20corp");
	body_is(r, json_pack("{s:s, s:s}", "value_b64", b64(VALUE, strlen(VALUE)), "backend",
			     "vault"));
	/* a Vault reference: no value is read (standard input has one: unused) */
	CLI_IN(p_nl, &o, "secret", "set", "vaulted", "--vault-path", "kv/app/token", "--tenant",
	       "_system");
	expect("set vault path", &o, 0, "secret vaulted: version 4 stored (backend vault)\n", "");
	r = last("PUT", "/v1/secrets/vaulted");
	query_is(r, "tenant=_system");
	body_is(r, json_pack("{s:s, s:s}", "backend", "vault", "vault_path", "kv/app/token"));
	CLI_IN(p_nl, &o, "--json", "secret", "set", "gh_token");
	expect("set --json", &o, 0,
	       "{\"name\":\"gh_token\",\"version\":1,\"backend\":\"builtin\"}\n", "");

	/* refused before anything is sent, the value never echoed */
	before = nreqs();
	CLI_IN(p_nl, &o, "secret", "set", "gh_token", "s3cr3t");
	expect_err("value on argv", &o, 2, "never taken from the command line");
	CLI_IN(p_nl, &o, "secret", "set", "gh_token", "--", "s3cr3t");
	expect_err("value after --", &o, 2, "never taken from the command line");
	CLI_IN(p_nl, &o, "secret", "set", "--value=s3cr3t", "gh_token");
	expect_err("--value=", &o, 2, "unknown option (not shown");
	CLI_IN(p_nl, &o, "secret", "set", "gh_token", "-s3cr3t");
	expect_err("-value", &o, 2, "unknown option (not shown");
	CLI_IN(p_nl, &o, "secret", "set", "gh_token", "--raw=s3cr3t");
	expect_err("--raw=", &o, 2, "--raw takes no value");
	CLI_IN(p_nl, &o, "secret", "rotate", "gh_token", "s3cr3t");
	expect_err("rotate value on argv", &o, 2, "never taken from the command line");
	CLI_IN(p_empty, &o, "secret", "set", "gh_token");
	expect_err("empty", &o, 2, "the value is empty");
	CLI_IN(p_nl_only, &o, "secret", "set", "gh_token");
	expect_err("newline only", &o, 2, "the value is empty");
	CLI(&o, "secret", "set", "gh_token");
	expect_err("/dev/null", &o, 2, "the value is empty");
	CLI_IN(p_big, &o, "secret", "set", "gh_token");
	expect_err("too large", &o, 1, "larger than 65536 bytes");
	SW_CHECKF(nreqs() == before, "a refused command sent %d requests", nreqs() - before);
	CLI_IN(p_max, &o, "secret", "set", "gh_token");
	expect("largest value", &o, 0, NULL, "");
	{
		json_t *j = json_loads(last("PUT", "/v1/secrets/gh_token")->body, 0, NULL);
		const char *v = json_string_value(json_object_get(j, "value_b64"));
		static unsigned char dec[70000];
		size_t n = 0;

		SW_CHECK(v != NULL);
		SW_CHECK(sodium_base642bin(dec, sizeof(dec), v, strlen(v), NULL, &n, NULL,
					   sodium_base64_VARIANT_ORIGINAL) == 0);
		SW_CHECKF(n == 65536 && dec[0] == 'x' && dec[n - 1] == 'x', "decoded %zu", n);
		json_decref(j);
	}
	before = nreqs();
	CLI(&o, "secret", "set", "gh_token", "--from-file", "/nonexistent/v");
	expect_err("no file", &o, 1, "cannot read /nonexistent/v");
	CLI_IN(p_nl, &o, "secret", "set", "GH/token");
	expect_err("bad name", &o, 2, "NAME must be");
	CLI_IN(p_nl, &o, "secret", "set");
	expect_err("no name", &o, 2, "missing NAME");
	CLI_IN(p_nl, &o, "secret", "set", "x", "--backend", "aws");
	expect_err("bad backend", &o, 2, "--backend must be builtin or vault");
	CLI_IN(p_nl, &o, "secret", "set", "x", "--vault-path", "kv/a", "--backend", "builtin");
	expect_err("vault path builtin", &o, 2, "the backend is vault");
	CLI_IN(p_nl, &o, "secret", "set", "x", "--vault-path", "kv/a", "--from-file", p_nl);
	expect_err("vault path and file", &o, 2, "stores no value");
	cli_run(ENV_TENANT, p_nl, &o, "secret", "set", "gh_token", (const char *)NULL);
	expect_err("no admin token", &o, 2, "SAGEWAI_ADMIN_TOKEN is not set");
	SW_CHECKF(nreqs() == before, "a refused command sent %d requests", nreqs() - before);

	/* the server's errors */
	CLI_IN(p_nl, &o, "secret", "set", "toolong");
	expect("server error", &o, 1, "",
	       "sagewai: the value is larger than the service takes (too_large, HTTP 413)\n");
	body_is(last("PUT", "/v1/secrets/toolong"),
		json_pack("{s:s}", "value_b64", b64(VALUE, strlen(VALUE))));
}

static void test_secret_others(void)
{
	char p_nl[256];
	struct cli_out o;
	struct cli_rq *r;

	write_file("rot.txt", VALUE "-v2\n", p_nl, sizeof(p_nl));
	CLI_IN(p_nl, &o, "secret", "rotate", "gh_token");
	expect("rotate", &o, 0, "secret gh_token rotated: version 2 is current\n", "");
	r = last("POST", "/v1/secrets/gh_token/rotate");
	auth_is(r, "Bearer " ADMIN);
	body_is(r, json_pack("{s:s}", "value_b64", b64(VALUE "-v2", strlen(VALUE) + 3)));
	CLI(&o, "secret", "rotate", "gh_token", "--from-file", p_nl, "--tenant", "acme");
	expect("rotate --from-file", &o, 0, NULL, "");
	r = last("POST", "/v1/secrets/gh_token/rotate");
	query_is(r, "tenant=acme");
	body_is(r, json_pack("{s:s}", "value_b64", b64(VALUE "-v2", strlen(VALUE) + 3)));
	CLI_IN(p_nl, &o, "secret", "rotate", "nope");
	expect("rotate 404", &o, 1, "", "sagewai: no such resource (not_found, HTTP 404)\n");

	CLI(&o, "secret", "revoke", "gh_token", "--version", "2", "--hard");
	expect("revoke hard", &o, 0,
	       "secret gh_token: version 2 revoked (hard: sandboxes holding it are killed)\n", "");
	body_is(last("POST", "/v1/secrets/gh_token/revoke"),
		json_pack("{s:i, s:b}", "version", 2, "hard", 1));
	CLI(&o, "secret", "revoke", "gh_token");
	expect("revoke all", &o, 0, "secret gh_token: versions 1, 2, 3 revoked\n", "");
	body_is(last("POST", "/v1/secrets/gh_token/revoke"), json_pack("{s:b}", "hard", 0));
	CLI(&o, "secret", "revoke", "gh_token", "--version", "0");
	expect_err("revoke version 0", &o, 2, "--version must be a positive integer");
	CLI(&o, "secret", "revoke", "gh_token", "--version", "2x");
	expect_err("revoke version 2x", &o, 2, "--version must be a positive integer");

	CLI(&o, "secret", "delete", "gh_token");
	expect("delete", &o, 0,
	       "secret gh_token deleted: every version revoked, the values destroyed\n", "");
	auth_is(last("DELETE", "/v1/secrets/gh_token"), "Bearer " ADMIN);
	CLI(&o, "secret", "delete", "nope");
	expect("delete 404", &o, 1, "", "sagewai: no such resource (not_found, HTTP 404)\n");

	CLI(&o, "secret", "rekey", "--tenant", "acme");
	expect("rekey", &o, 0, "rekeyed: 5 stored values now under master key k2\n", "");
	r = last("POST", "/v1/secrets/rekey");
	query_is(r, NULL);
	auth_is(r, "Bearer " ADMIN);
	CLI(&o, "--json", "secret", "rekey");
	expect("rekey --json", &o, 0, "{\"key_id\":\"k2\",\"rows\":5}\n", "");

	CLI(&o, "secret", "list");
	expect("list", &o, 0,
	       "NAME             BACKEND  STATE    CURRENT  VERSIONS\n"
	       "gh_token         builtin  active   3        3 (1 revoked, 1 deleted)\n"
	       "npm.publish-key  vault    revoked  -        1 (1 revoked)\n",
	       "");
	auth_is(last("GET", "/v1/secrets"), "Bearer " ADMIN);
	CLI(&o, "secret", "list", "--json");
	{
		char want[sizeof(secrets_body) + 1];

		snprintf(want, sizeof(want), "%s\n", secrets_body);
		expect("list --json", &o, 0, want, "");
	}
	/* a read with the tenant's key when no admin token is set */
	cli_run(ENV_TENANT, NULL, &o, "secret", "list", "--tenant", "empty", (const char *)NULL);
	expect("list as tenant", &o, 0, "no secrets\n", "");
	r = last("GET", "/v1/secrets");
	auth_is(r, "Bearer " TOKEN);
	query_is(r, "tenant=empty");
	cli_run(ENV_NONE, NULL, &o, "secret", "list", (const char *)NULL);
	expect("list without a token", &o, 0, NULL, "");
	auth_is(last("GET", "/v1/secrets"), NULL);
	/* a write with a token the server does not take: its answer shown */
	cli_run(ENV_WRONG, NULL, &o, "secret", "delete", "gh_token", (const char *)NULL);
	expect("delete, wrong admin token", &o, 1, "",
	       "sagewai: writes need the operator's token (forbidden, HTTP 403)\n");
	auth_is(last("DELETE", "/v1/secrets/gh_token"), "Bearer not-the-admin-token");
}

static void test_profiles(void)
{
	char p_json[256], p_bad[256], want[1024];
	struct cli_out o;
	struct cli_rq *r;
	json_t *file_body;

	CLI(&o, "identity", "profile", "set", "deploy", "--key", "GITHUB_TOKEN=secret:gh_token",
	    "--key=API_BASE=value:https://api.internal", "--key", "EMPTY=value:");
	expect("profile set --key", &o, 0, "profile deploy (level workflow) set: 3 keys\n", "");
	r = last("PUT", "/v1/identity/profiles/deploy");
	auth_is(r, "Bearer " ADMIN);
	query_is(r, "level=workflow");
	body_is(r, json_pack("{s:{s:{s:s}, s:{s:s}, s:{s:s}}}", "keys", "GITHUB_TOKEN", "secret",
			     "gh_token", "API_BASE", "value", "https://api.internal", "EMPTY",
			     "value", ""));
	CLI(&o, "identity", "profile", "set", "deploy", "--tenant", "acme", "--key",
	    "A=secret:a");
	expect("profile set --tenant", &o, 0, "profile deploy (level workflow) set: 1 key\n", "");
	query_is(last("PUT", "/v1/identity/profiles/deploy"), "level=workflow&tenant=acme");

	/* the system level is the _system scope */
	CLI(&o, "identity", "profile", "set", "default", "--level", "system", "--key",
	    "API_BASE=value:https://x");
	expect("profile set system", &o, 0, "profile default (level system) set: 1 key\n", "");
	query_is(last("PUT", "/v1/identity/profiles/default"), "level=system&tenant=_system");

	write_file("deploy.json",
		   "{\"keys\": {\"GITHUB_TOKEN\": {\"secret\": \"gh_token\", \"steps\": "
		   "[\"ship/*\"], \"agents\": [\"claude-code\"]}}}\n",
		   p_json, sizeof(p_json));
	CLI(&o, "identity", "profile", "set", "deploy", "--file", p_json);
	expect("profile set --file", &o, 0, "profile deploy (level workflow) set: 1 key\n", "");
	SW_CHECK((file_body = json_pack("{s:{s:{s:s, s:[s], s:[s]}}}", "keys", "GITHUB_TOKEN",
					"secret", "gh_token", "steps", "ship/*", "agents",
					"claude-code")) != NULL);
	body_is(last("PUT", "/v1/identity/profiles/deploy"), file_body);
	CLI(&o, "identity", "profile", "set", "broken", "--file", p_json);
	expect("profile set 422", &o, 1, "",
	       "sagewai: key GITHUB_TOKEN: no secret named gh_tokn (missing, HTTP 422)\n");

	/* usage errors: nothing sent */
	{
		int before = nreqs();

		write_file("bad.json", "{\"keys\": [1,\n", p_bad, sizeof(p_bad));
		CLI(&o, "identity", "profile", "set", "deploy", "--file", p_bad);
		snprintf(want, sizeof(want), "%s:2:0:", p_bad);
		expect_err("profile bad json", &o, 1, want);
		write_file("arr.json", "[1]", p_bad, sizeof(p_bad));
		CLI(&o, "identity", "profile", "set", "deploy", "--file", p_bad);
		expect_err("profile not an object", &o, 1, "a profile is a JSON object");
		CLI(&o, "identity", "profile", "set", "deploy");
		expect_err("profile set nothing", &o, 2, "either --file FILE.json or --key");
		CLI(&o, "identity", "profile", "set", "deploy", "--file", p_json, "--key",
		    "A=value:");
		expect_err("profile set both", &o, 2, "either --file FILE.json or --key");
		CLI(&o, "identity", "profile", "set", "deploy", "--key", "A=s3cr3t");
		expect_err("profile key kind", &o, 2, "expected A=secret:NAME or A=value:TEXT");
		CLI(&o, "identity", "profile", "set", "deploy", "--key", "s3cr3t");
		expect_err("profile key no =", &o, 2, "--key takes ENV=secret:NAME");
		CLI(&o, "identity", "profile", "set", "deploy", "--key", "9X=value:a");
		expect_err("profile key name", &o, 2, "'9X' is not an environment variable name");
		CLI(&o, "identity", "profile", "set", "deploy", "--key", "A=value:1", "--key",
		    "A=secret:b");
		expect_err("profile key twice", &o, 2, "--key A given twice");
		CLI(&o, "identity", "profile", "set", "deploy", "--key", "A=secret:");
		expect_err("profile key empty secret", &o, 2, "expected A=secret:NAME");
		CLI(&o, "identity", "profile", "set", "deploy", "--level", "team", "--key",
		    "A=value:1");
		expect_err("profile bad level", &o, 2, "--level must be system, workflow or user");
		CLI(&o, "identity", "profile", "set", "deploy", "--key");
		expect_err("profile --key no value", &o, 2, "--key needs");
		cli_run(ENV_TENANT, NULL, &o, "identity", "profile", "set", "deploy", "--key",
			"A=value:1", (const char *)NULL);
		expect_err("profile set no admin", &o, 2, "SAGEWAI_ADMIN_TOKEN is not set");
		cli_run(ENV_TENANT, NULL, &o, "identity", "profile", "delete", "deploy",
			(const char *)NULL);
		expect_err("profile delete no admin", &o, 2, "SAGEWAI_ADMIN_TOKEN is not set");
		SW_CHECK(nreqs() == before);
	}

	CLI(&o, "identity", "profile", "show", "deploy");
	expect("profile show", &o, 0,
	       "profile deploy (level workflow)\n"
	       "\n"
	       "  KEY           KIND    BINDS                 STEPS                AGENTS\n"
	       "  GITHUB_TOKEN  secret  gh_token              ship/push,release/*  claude-code\n"
	       "  API_BASE      value   https://api.internal  *                    *\n",
	       "");
	r = last("GET", "/v1/identity/profiles/deploy");
	query_is(r, "level=workflow");
	auth_is(r, "Bearer " ADMIN);
	cli_run(ENV_TENANT, NULL, &o, "identity", "profile", "show", "deploy", "--level", "user",
		"--json", (const char *)NULL);
	snprintf(want, sizeof(want), "%s\n", profile_body);
	expect("profile show --json", &o, 0, want, "");
	r = last("GET", "/v1/identity/profiles/deploy");
	query_is(r, "level=user");
	auth_is(r, "Bearer " TOKEN);
	CLI(&o, "identity", "profile", "show", "nope");
	expect("profile show 404", &o, 1, "", "sagewai: no such resource (not_found, HTTP 404)\n");

	CLI(&o, "identity", "profile", "list");
	expect("profile list", &o, 0,
	       "NAME     LEVEL     KEYS  UPDATED\n"
	       "default  system    1     2024-05-01 12:00:00.000\n"
	       "deploy   workflow  2     2024-05-02 08:30:00.250\n",
	       "");
	query_is(last("GET", "/v1/identity/profiles"), NULL);
	CLI(&o, "identity", "profile", "list", "--level", "system");
	expect("profile list system", &o, 0, NULL, "");
	query_is(last("GET", "/v1/identity/profiles"), "level=system&tenant=_system");

	CLI(&o, "identity", "profile", "delete", "deploy", "--tenant", "acme");
	expect("profile delete", &o, 0, "profile deploy (level workflow) deleted\n", "");
	r = last("DELETE", "/v1/identity/profiles/deploy");
	query_is(r, "level=workflow&tenant=acme");
	auth_is(r, "Bearer " ADMIN);
}

static void test_resolve(void)
{
	char want[2048];
	struct cli_out o;
	struct cli_rq *r;
	json_t *steps;

	steps = json_pack("[{s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}]",
			  "step", "push", "mode", "identity_scoped", "agent", "", "profile",
			  "deploy", "step", "review", "mode", "cli_agent", "agent", "claude-code",
			  "profile", "deploy", "step", "fix", "mode", "cli_agent_jit", "agent",
			  "codex", "profile", "");
	SW_CHECK(steps != NULL);

	CLI(&o, "--url", url, "identity", "resolve", "--workflow", "ship", "--user", "alice");
	expect("resolve", &o, 0,
	       "STEP    KEY           LEVEL     PROFILE  SECRET           VERSION  BACKEND\n"
	       "push    GITHUB_TOKEN  workflow  deploy   gh_token         3        builtin\n"
	       "push    API_BASE      system    default  (plain value)    -        -\n"
	       "review  NPM_TOKEN     user      alice    npm.publish-key  7        vault\n"
	       "\n"
	       "denied (not injected):\n"
	       "  STEP    KEY           SECRET    REASON\n"
	       "  review  GITHUB_TOKEN  gh_token  agent claude-code not in acl\n",
	       "");
	pthread_mutex_lock(&cli_srv.mu);
	SW_CHECK(cli_srv.nreqs >= 2);
	r = &cli_srv.reqs[cli_srv.nreqs - 2];
	pthread_mutex_unlock(&cli_srv.mu);
	SW_CHECK(strcmp(r->method, "GET") == 0 && strcmp(r->path, "/v1/workflows/ship") == 0);
	auth_is(r, "Bearer " TOKEN); /* the scheduler takes the tenant's key */
	r = last("POST", "/v1/identity/resolve");
	auth_is(r, "Bearer " ADMIN);
	query_is(r, NULL);
	body_is(r, json_pack("{s:s, s:s, s:O}", "workflow", "ship", "user", "alice", "steps",
			     steps));

	cli_run(ENV_TENANT, NULL, &o, "--url", url, "identity", "resolve", "--workflow", "ship",
		"--version", "3", "--tenant", "acme", (const char *)NULL);
	expect("resolve version", &o, 0, NULL, "");
	pthread_mutex_lock(&cli_srv.mu);
	r = &cli_srv.reqs[cli_srv.nreqs - 2];
	pthread_mutex_unlock(&cli_srv.mu);
	SW_CHECK(strcmp(r->path, "/v1/workflows/ship/3") == 0);
	r = last("POST", "/v1/identity/resolve");
	auth_is(r, "Bearer " TOKEN);
	query_is(r, "tenant=acme");
	body_is(r, json_pack("{s:s, s:s, s:O}", "workflow", "ship", "user", "", "steps", steps));

	CLI(&o, "--url", url, "identity", "resolve", "--workflow", "ship", "--user", "mallory");
	expect("resolve refused", &o, 1, "no identity-bearing step receives keys\n",
	       "sagewai: refused: revoked: GITHUB_TOKEN (secret gh_token v2) (revoked)\n");
	CLI(&o, "--url", url, "--json", "identity", "resolve", "--workflow", "ship", "--user",
	    "mallory");
	snprintf(want, sizeof(want), "%s\n", resolved_refused);
	expect("resolve refused --json", &o, 1, want,
	       "sagewai: refused: revoked: GITHUB_TOKEN (secret gh_token v2) (revoked)\n");
	CLI(&o, "--url", url, "identity", "resolve", "--workflow", "ship", "--json");
	snprintf(want, sizeof(want), "%s\n", resolved_ok);
	expect("resolve --json", &o, 0, want, "");

	CLI(&o, "--url", url, "identity", "resolve", "--workflow", "gone");
	expect("resolve unknown workflow", &o, 1, "",
	       "sagewai: no such resource (not_found, HTTP 404)\n");
	SW_CHECK(strcmp(last("GET", "/v1/workflows/gone")->path, "/v1/workflows/gone") == 0);
	CLI(&o, "identity", "resolve");
	expect_err("resolve no workflow", &o, 2, "missing --workflow W");
	CLI(&o, "identity", "resolve", "--workflow", "ship", "--version", "-1");
	expect_err("resolve bad version", &o, 2, "--version must be a positive integer");
	/* the scheduler unreachable: named in the error */
	CLI(&o, "identity", "resolve", "--workflow", "ship");
	expect_err("resolve no scheduler", &o, 1, "cannot reach the scheduler at");
	json_decref(steps);
}

/* Without a server: help of each command, the identity URL's default and
 * environment variable, an unreachable identity service. */
static void test_offline(void)
{
	static char e_url[] = "SAGEWAI_IDENTITY_URL=http://127.0.0.1:1/";
	static char e_bad[] = "SAGEWAI_IDENTITY_URL=ftp://x";
	static char adm[] = "SAGEWAI_ADMIN_TOKEN=" ADMIN;
	static const char *const helps[][5] = {
		{"secret", "--help", NULL, NULL, "usage: sagewai secret COMMAND"},
		{"secret", "set", "--help", NULL, "usage: sagewai secret set NAME"},
		{"secret", "list", "-h", NULL, "usage: sagewai secret list"},
		{"secret", "rotate", "--help", NULL, "usage: sagewai secret rotate NAME"},
		{"secret", "revoke", "--help", NULL, "usage: sagewai secret revoke NAME"},
		{"secret", "delete", "--help", NULL, "usage: sagewai secret delete NAME"},
		{"secret", "rekey", "--help", NULL, "usage: sagewai secret rekey"},
		{"identity", "--help", NULL, NULL, "usage: sagewai identity COMMAND"},
		{"identity", "profile", "--help", NULL, "usage: sagewai identity profile"},
		{"identity", "profile", "set", "--help", "usage: sagewai identity profile set"},
		{"identity", "profile", "show", "--help", "usage: sagewai identity profile show"},
		{"identity", "profile", "list", "--help", "usage: sagewai identity profile list"},
		{"identity", "profile", "delete", "--help",
		 "usage: sagewai identity profile delete"},
		{"identity", "resolve", "--help", NULL, "usage: sagewai identity resolve"},
		{"help", "secret", "set", NULL, "usage: sagewai secret set NAME"},
		{"--help", NULL, NULL, NULL, "usage: sagewai "},
	};
	char *env1[] = {e_url, adm, NULL}, *env2[] = {e_bad, NULL}, *env0[] = {adm, NULL};
	const char *args[8];
	struct cli_out o;
	size_t i;
	int j;

	for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		for (j = 0; j < 4 && helps[i][j] != NULL; j++)
			args[j] = helps[i][j];
		args[j] = NULL;
		cli_runv(bin, args, env0, NULL, &o);
		if (o.status != 0 || strncmp(o.out, helps[i][4], strlen(helps[i][4])) != 0 ||
		    o.err[0] != '\0') {
			cli_out_dump(helps[i][0], &o);
			SW_CHECKF(0, "help %zu", i);
		}
		cli_out_free(&o);
	}
	/* the main help lists the groups and the global options */
	args[0] = "--help";
	args[1] = NULL;
	cli_runv(bin, args, env0, NULL, &o);
	SW_CHECK(strstr(o.out, "secret set NAME") && strstr(o.out, "identity resolve") &&
		 strstr(o.out, "--identity-url") && strstr(o.out, "--tenant") &&
		 strstr(o.out, "SAGEWAI_IDENTITY_URL"));
	cli_out_free(&o);

	args[0] = "secret";
	args[1] = "list";
	args[2] = NULL;
	cli_runv(bin, args, env1, NULL, &o);
	expect_err("identity unreachable (env)", &o, 1,
		   "cannot reach the identity service at http://127.0.0.1:1:");
	cli_runv(bin, args, env0, NULL, &o);
	expect_err("identity default URL", &o, 1, "the identity service at http://127.0.0.1:8084");
	cli_runv(bin, args, env2, NULL, &o);
	expect_err("identity URL not http", &o, 2, "SAGEWAI_IDENTITY_URL must be an http");
	args[2] = "--identity-url";
	args[3] = "file:///etc/passwd";
	args[4] = NULL;
	cli_runv(bin, args, env0, NULL, &o);
	expect_err("--identity-url not http", &o, 2, "--identity-url must be an http");
	args[2] = "--tenant";
	args[3] = NULL;
	cli_runv(bin, args, env0, NULL, &o);
	expect_err("--tenant without value", &o, 2, "--tenant needs");
}

int main(int argc, char **argv)
{
	char cmd[300];

	if (argc != 2) {
		fprintf(stderr, "usage: cli_identity_test PATH_TO_SAGEWAI\n");
		return 2;
	}
	bin = argv[1];
	SW_CHECK(sodium_init() >= 0);
	SW_CHECK(mkdtemp(tmpdir) != NULL);
	cli_srv_start(handle);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", cli_srv.port);
	test_offline();
	test_secret_set();
	test_secret_others();
	test_profiles();
	test_resolve();
	cli_srv_stop();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	SW_CHECK(system(cmd) == 0);
	printf("cli identity canned-server test ok\n");
	return 0;
}
