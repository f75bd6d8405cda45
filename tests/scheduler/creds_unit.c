/*
 * Unit tests of services/scheduler/creds.c, without any service:
 *   - each credential shape is found inside ordinary text, at its start,
 *     end and alone, and named by kind;
 *     (sw_credshape_find, libs/core: the scheduler's and sandboxd's artifact
 *     scan's), with the offset of the first one;
 *   - near misses and ordinary text do not fire (too short, no word
 *     boundary, hyphenated words after sk-, lower case after AKIA, prose
 *     about PEM files, base64 and hex blobs, UUIDs, URLs);
 *   - the field paths of input, with, env, run and prompt strings, odd
 *     keys shown by position, a credential-shaped key reported as a key,
 *     long paths cut with "...";
 *   - the candidates of a string: itself and its tokens of >= 4 bytes.
 */
#include <string.h>

#include "creds.h"
#include "sw_credshape.h"
#include "sw_test.h"

/* Realistic-looking keys, made up (not valid anywhere). */
#define AWS "AKIAZ7Q3R5T2LMN4PX6W"
#define ASIA "ASIAQ2W3E4R5T6Y7U8I9"
#define GHP "ghp_4fTq9ZkLm2Rx7PwY1vB8nC3dE6gH0jK5sA2b"
#define GHS "ghs_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
#define GHPAT "github_pat_11ABCDEFG0abcdefghij_klmnopqrstuvwxyz0123456789ABCDEFGH"
#define SK "sk-Xy7Pq2Lm9Rt4Vb6Nc1Kd8Hf3Js5Wg0Ze"
#define SKANT "sk-ant-api03-Qw3rTy7uIo1pAs5dFg9hJk2lZx4cVb8nM6_q-W1eR3tY5uI7oP9aS2dF4gH6jK8lZ0xC"
#define SKPROJ "sk-proj-a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0"
#define PEM "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"

static void expect(const char *s, const char *kind)
{
	const char *got = sw_credshape_find(s, strlen(s), NULL);

	if (kind == NULL)
		SW_CHECKF(got == NULL, "false positive (%s) on: %s", got, s);
	else
		SW_CHECKF(got != NULL && strcmp(got, kind) == 0, "want %s, got %s on: %s", kind,
			  got ? got : "nothing", s);
}

static void test_shapes(void)
{
	static const char aws[] = "an AWS access key id", gh[] = "a GitHub token",
			  sk[] = "an API key (sk-...)", pem[] = "a PEM private key";

	expect(AWS, aws);
	expect(ASIA, aws);
	expect("key=" AWS "&region=eu", aws);
	expect("export AWS_ACCESS_KEY_ID=" AWS, aws);
	expect(GHP, gh);
	expect(GHS, gh);
	expect("git clone https://x:" GHP "@github.com/a/b", gh);
	expect(GHPAT, gh);
	expect(SK, sk);
	expect(SKANT, sk);
	expect(SKPROJ, sk);
	expect("Authorization: Bearer " SK, sk);
	expect(PEM, pem);
	expect("-----BEGIN PRIVATE KEY-----\nMIIE", pem);
	expect("-----BEGIN OPENSSH PRIVATE KEY-----", pem);
	expect("key: -----BEGIN EC PRIVATE KEY-----", pem);
	expect("-----BEGIN ENCRYPTED PRIVATE KEY-----", pem);
	/* in a string holding a NUL byte, after it */
	{
		const char s[] = "x\0" AWS;

		size_t off = 0;

		SW_CHECK(sw_credshape_find(s, sizeof(s) - 1, &off) != NULL && off == 2);
		SW_CHECK(sw_credshape_find(s, 1, NULL) == NULL);
	}
	/* the offset of the first one (the artifact scan names its line) */
	{
		static const char t[] = "line one\nx = \"" GHP "\"\n" AWS "\n";
		static const char p[] = "a\n\n  -----BEGIN RSA PRIVATE KEY-----\n";
		size_t off = 0;

		SW_CHECK(strcmp(sw_credshape_find(t, sizeof(t) - 1, &off), gh) == 0 && off == 14);
		SW_CHECK(strcmp(sw_credshape_find(p, sizeof(p) - 1, &off), pem) == 0 && off == 5);
		SW_CHECK(sw_credshape_find("sk-learn-is-a-library", 21, &off) == NULL);
	}

	/* ordinary text and near misses */
	expect("", NULL);
	expect("hello world, deploy to production on friday", NULL);
	expect("AKIA", NULL);
	expect("AKIAZ7Q3R5T2LMN4PX6", NULL);	   /* 15 after the prefix */
	expect("AKIAZ7Q3R5T2LMN4PX6WQ", NULL);	   /* 17: not an id */
	expect("XAKIAZ7Q3R5T2LMN4PX6W", NULL);	   /* no word start */
	expect("AKIAz7q3r5t2lmn4px6w", NULL);	   /* lower case */
	expect("the AKIA prefix marks AWS key ids", NULL);
	expect("ghp_tooshort123", NULL);
	expect("highp_4fTq9ZkLm2Rx7PwY1vB8nC3dE6gH0jK5sA2b", NULL);
	expect("github_pat_short", NULL);
	expect("sk-learn-is-a-python-library-for-machine-learning", NULL);
	expect("risk-assessment-2024-quarterly-report-final", NULL);
	expect("task-0123456789abcdefghij", NULL);  /* no word start */
	expect("sk-2024-quarterly-report-final-v2", NULL);
	expect("sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL); /* no digits */
	expect("sk-short1", NULL);
	expect("see the -----BEGIN PUBLIC KEY----- block", NULL);
	expect("-----BEGIN CERTIFICATE-----\nMIIB", NULL);
	expect("put your private key in ~/.ssh/id_ed25519", NULL);
	expect("-----BEGIN private key-----", NULL);
	expect("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", NULL);
	expect("d41d8cd98f00b204e9800998ecf8427ee3b0c44298fc1c149afbf4c8996fb924", NULL);
	expect("aGVsbG8gd29ybGQgdGhpcyBpcyBqdXN0IGJhc2U2NCBub3QgYSBrZXk=", NULL);
	expect("https://api.example.com/v1/items?page=2&sort=desc", NULL);
	expect("swk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", NULL);
}

/* ---- walking ----------------------------------------------------------- */

struct seen {
	char fields[32][SCHED_CREDS_PATH];
	char values[32][128];
	int keys[32];
	size_t n;
};

static int collect(const char *field, const char *s, size_t len, int is_key, void *arg)
{
	struct seen *v = arg;

	SW_CHECK(v->n < 32);
	snprintf(v->fields[v->n], sizeof(v->fields[0]), "%s", field);
	snprintf(v->values[v->n], sizeof(v->values[0]), "%.*s", (int)len, s);
	v->keys[v->n] = is_key;
	v->n++;
	return 0;
}

static int has(const struct seen *v, const char *field, const char *value, int is_key)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		if (!strcmp(v->fields[i], field) && !strcmp(v->values[i], value) &&
		    v->keys[i] == is_key)
			return 1;
	return 0;
}

static const char wf_yaml[] = "name: w\n"
			      "steps:\n"
			      "  - name: fetch\n"
			      "    uses: template\n"
			      "    with:\n"
			      "      value: \"${{ input.deploy.token }}\"\n"
			      "      list: [a, {deep: text}]\n"
			      "  - name: push\n"
			      "    mode: sandboxed\n"
			      "    run: [git, push]\n"
			      "    env:\n"
			      "      AUTH: plain-value\n"
			      "  - name: ask\n"
			      "    mode: cli_agent\n"
			      "    cli_agent: claude-code\n"
			      "    prompt: write it\n";

static void test_walk(void)
{
	struct sw_workflow *wf;
	struct seen v;
	char err[512], msg[512];
	json_t *in;

	wf = sw_workflow_parse(wf_yaml, strlen(wf_yaml), "w.yaml", err, sizeof(err));
	SW_CHECKF(wf != NULL, "%s", err);
	in = json_loads("{\"deploy\": {\"token\": \"t0ken\", \"n\": 3}, \"items\": [\"x\", [\"y\"]],"
			" \"odd key!\": \"z\"}",
			0, NULL);
	SW_CHECK(in != NULL);
	memset(&v, 0, sizeof(v));
	SW_CHECK(sched_creds_walk(in, wf, collect, &v) == 0);
	SW_CHECK(has(&v, "input", "deploy", 1));
	SW_CHECK(has(&v, "input.deploy", "token", 1));
	SW_CHECK(has(&v, "input.deploy.token", "t0ken", 0));
	SW_CHECK(has(&v, "input.items[0]", "x", 0));
	SW_CHECK(has(&v, "input.items[1][0]", "y", 0));
	SW_CHECK(has(&v, "input", "odd key!", 1));
	SW_CHECK(has(&v, "input.#2", "z", 0));
	SW_CHECK(has(&v, "steps.fetch.with.value", "${{ input.deploy.token }}", 0));
	SW_CHECK(has(&v, "steps.fetch.with.list[1].deep", "text", 0));
	SW_CHECK(has(&v, "steps.push.run[1]", "push", 0));
	SW_CHECK(has(&v, "steps.push.env.AUTH", "plain-value", 0));
	SW_CHECK(has(&v, "steps.ask.prompt", "write it", 0));

	/* finding: the path and the kind, never the value */
	SW_CHECK(sched_creds_find(in, wf, msg, sizeof(msg)) == 0);
	json_object_set_new(json_object_get(in, "deploy"), "token", json_string("x " GHP " y"));
	SW_CHECK(sched_creds_find(in, wf, msg, sizeof(msg)) == 1);
	SW_CHECKF(strcmp(msg, "input.deploy.token looks like a GitHub token") == 0, "%s", msg);
	SW_CHECK(strstr(msg, "ghp_") == NULL);
	json_object_set_new(json_object_get(in, "deploy"), "token", json_string("t0ken"));
	json_object_set_new(in, AWS, json_true());
	SW_CHECK(sched_creds_find(in, wf, msg, sizeof(msg)) == 1);
	SW_CHECKF(strcmp(msg, "a key in input looks like an AWS access key id") == 0, "%s", msg);
	json_object_del(in, AWS);
	json_object_set_new(json_object_get(wf->steps[1].extra, "env"), "AUTH", json_string(SK));
	SW_CHECK(sched_creds_find(in, wf, msg, sizeof(msg)) == 1);
	SW_CHECKF(strcmp(msg, "steps.push.env.AUTH looks like an API key (sk-...)") == 0, "%s",
		  msg);
	json_decref(in);
	sw_workflow_free(wf);

	/* a deep input: the path is cut, never overflows */
	{
		json_t *deep = json_string(PEM), *o;
		int i;

		for (i = 0; i < 200; i++) {
			o = json_object();
			json_object_set_new(o, "level_name_long", deep);
			deep = o;
		}
		SW_CHECK(sched_creds_find(deep, NULL, msg, sizeof(msg)) == 1);
		SW_CHECKF(strstr(msg, "...") != NULL && strstr(msg, "a PEM private key") != NULL &&
			      strlen(msg) < SCHED_CREDS_PATH + 40,
			  "%s", msg);
		json_decref(deep);
	}
}

/* ---- tokens ------------------------------------------------------------ */

static int tok_collect(const char *tok, size_t len, void *arg)
{
	struct seen *v = arg;

	SW_CHECK(v->n < 32);
	snprintf(v->values[v->n++], sizeof(v->values[0]), "%.*s", (int)len, tok);
	return 0;
}

static void test_tokens(void)
{
	static const char s[] = "curl -H 'Authorization: token abcd1234' https://x.io/a?key=VALUE9";
	struct seen v;

	memset(&v, 0, sizeof(v));
	SW_CHECK(sched_creds_tokens(s, strlen(s), tok_collect, &v) == 0);
	SW_CHECK(v.n == 8);
	SW_CHECK(!strcmp(v.values[0], s));
	SW_CHECK(!strcmp(v.values[1], "curl"));
	SW_CHECK(!strcmp(v.values[2], "Authorization"));
	SW_CHECK(!strcmp(v.values[3], "token"));
	SW_CHECK(!strcmp(v.values[4], "abcd1234"));
	SW_CHECK(!strcmp(v.values[5], "https"));
	SW_CHECK(!strcmp(v.values[6], "x.io")); /* "a", "-H" and "key" are too short */
	SW_CHECK(!strcmp(v.values[7], "VALUE9"));
	/* a string without delimiters is one candidate; a short one none */
	memset(&v, 0, sizeof(v));
	SW_CHECK(sched_creds_tokens("secretvalue", 11, tok_collect, &v) == 0 && v.n == 1);
	memset(&v, 0, sizeof(v));
	SW_CHECK(sched_creds_tokens("abc", 3, tok_collect, &v) == 0 && v.n == 0);
	memset(&v, 0, sizeof(v));
	SW_CHECK(sched_creds_tokens("a b\tc", 5, tok_collect, &v) == 0 && v.n == 1);
}

int main(void)
{
	test_shapes();
	test_walk();
	test_tokens();
	fprintf(stderr, "creds unit: ok\n");
	return 0;
}
