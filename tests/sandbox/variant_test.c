/*
 * variant_test: the image-variant catalogue. The shipped base variant
 * loads and offers what issue 4 asks; an unknown variant gets a clear error
 * naming the catalogue; a file that tries to bind what must never enter a
 * sandbox, or is malformed, is refused with a reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_sandbox.h"
#include "sw_test.h"

static const char *variants_dir = SW_VARIANTS_DIR;

static void test_base(void)
{
	char err[512];
	struct sw_sandbox_variant *v =
	    sw_sandbox_variant_load(variants_dir, "base", err, sizeof(err));
	int has_usr = 0;

	SW_CHECKF(v != NULL, "%s", err);
	SW_CHECK(strcmp(v->name, "base") == 0);
	SW_CHECK(sw_sandbox_variant_offers(v, "shell"));
	SW_CHECK(sw_sandbox_variant_offers(v, "coreutils"));
	SW_CHECK(sw_sandbox_variant_offers(v, "python3"));
	SW_CHECK(sw_sandbox_variant_offers(v, "git"));
	SW_CHECK(!sw_sandbox_variant_offers(v, "claude-code"));
	for (size_t i = 0; i < v->n_ro_binds; i++) {
		SW_CHECK(strcmp(v->ro_binds[i].path, "/etc") != 0);
		SW_CHECK(strncmp(v->ro_binds[i].path, "/etc/shadow", 11) != 0);
		has_usr |= strcmp(v->ro_binds[i].path, "/usr") == 0;
	}
	SW_CHECK(has_usr);
	SW_CHECK(v->limits.nproc > 0 && v->limits.memory_bytes > 0 && v->limits.wall_ms > 0);
	sw_sandbox_variant_free(v);
}

static void test_unknown(void)
{
	char err[512];

	SW_CHECK(sw_sandbox_variant_load(variants_dir, "no-such-variant", err, sizeof(err)) ==
		 NULL);
	SW_CHECKF(strstr(err, "unknown sandbox variant 'no-such-variant'") != NULL, "%s", err);
	SW_CHECKF(strstr(err, "base") != NULL, "error should list the catalogue: %s", err);
	/* Names are not paths. */
	SW_CHECK(sw_sandbox_variant_load(variants_dir, "../variants/base", err, sizeof(err)) ==
		 NULL);
	SW_CHECK(strstr(err, "bad sandbox variant name") != NULL);
	SW_CHECK(sw_sandbox_variant_load(variants_dir, "", err, sizeof(err)) == NULL);
	SW_CHECK(sw_sandbox_variant_load(variants_dir, "Base", err, sizeof(err)) == NULL);
}

#define GOOD_LIMITS                                                                               \
	"\"limits\": {\"nproc\": 10, \"memory_bytes\": 100000000, \"cpu_seconds\": 5,"            \
	" \"file_size_bytes\": 1000, \"nofile\": 64, \"wall_ms\": 1000}"

static void expect_refused(const char *binds, const char *want)
{
	char doc[2048], err[512];
	struct sw_sandbox_variant *v;

	snprintf(doc, sizeof(doc),
		 "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
		 " \"ro_binds\": %s, " GOOD_LIMITS "}",
		 binds);
	v = sw_sandbox_variant_parse(doc, strlen(doc), err, sizeof(err));
	SW_CHECKF(v == NULL, "accepted %s", binds);
	SW_CHECKF(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
}

static void test_refusals(void)
{
	char err[512];
	const char *doc;
	struct sw_sandbox_variant *v;

	expect_refused("[{\"path\": \"/etc\"}]", "may not enter");
	expect_refused("[{\"path\": \"/etc/shadow\"}]", "may not enter");
	expect_refused("[{\"path\": \"/root/.ssh\"}]", "may not enter");
	expect_refused("[{\"path\": \"/proc\"}]", "may not enter");
	expect_refused("[{\"path\": \"/\"}]", "clean absolute path");
	expect_refused("[{\"path\": \"/etc/sagewai/sandboxd.conf\"}]", "may not enter");
	expect_refused("[{\"path\": \"/run/docker.sock\"}]", "may not enter");
	expect_refused("[{\"path\": \"/usr/../etc\"}]", "clean absolute path");
	expect_refused("[{\"path\": \"usr\"}]", "clean absolute path");
	expect_refused("[{\"path\": \"/usr/\"}]", "clean absolute path");
	expect_refused("[{\"path\": \"/usr\"}, {\"path\": \"/usr\"}]", "twice");
	expect_refused("[{\"path\": \"/usr\", \"rw\": true}]", "ro_binds[0]");
	expect_refused("[]", "1 to");
	/* Paths that merely share a prefix are fine. */
	doc = "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
	      " \"ro_binds\": [{\"path\": \"/etc/ssl/certs\"}, {\"path\": \"/procfoo\","
	      " \"optional\": true}], " GOOD_LIMITS "}";
	v = sw_sandbox_variant_parse(doc, strlen(doc), err, sizeof(err));
	SW_CHECKF(v != NULL, "%s", err);
	SW_CHECK(v->n_ro_binds == 2 && v->ro_binds[1].optional && !v->ro_binds[0].optional);
	SW_CHECK(v->limits.nofile == 64);
	SW_CHECK(v->limits.cpu_millis == 0); /* left out: no CPU bandwidth limit */
	sw_sandbox_variant_free(v);

	/* cpu_millis is optional; given, it must be a real limit. */
	{
		static const char *const cpu[] = {"1500", "0", "-5", "1000001", "\"2\""};

		for (int i = 0; i < 5; i++) {
			char d[1024];

			snprintf(d, sizeof(d),
				 "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
				 " \"ro_binds\": [{\"path\": \"/usr\"}], \"limits\": {\"nproc\": 1,"
				 " \"memory_bytes\": 1, \"cpu_seconds\": 1, \"file_size_bytes\": 1,"
				 " \"nofile\": 1, \"wall_ms\": 1, \"cpu_millis\": %s}}",
				 cpu[i]);
			v = sw_sandbox_variant_parse(d, strlen(d), err, sizeof(err));
			if (i == 0) {
				SW_CHECKF(v != NULL && v->limits.cpu_millis == 1500, "%s", err);
				sw_sandbox_variant_free(v);
			} else {
				SW_CHECKF(v == NULL, "accepted cpu_millis %s", cpu[i]);
				SW_CHECK(strstr(err, "limits") != NULL);
			}
		}
	}

	/* Unknown keys, missing or non-positive limits, bad offers. */
	doc = "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
	      " \"ro_binds\": [{\"path\": \"/usr\"}], \"extra\": 1, " GOOD_LIMITS "}";
	SW_CHECK(sw_sandbox_variant_parse(doc, strlen(doc), err, sizeof(err)) == NULL);
	doc = "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
	      " \"ro_binds\": [{\"path\": \"/usr\"}], \"limits\": {\"nproc\": 1}}";
	SW_CHECK(sw_sandbox_variant_parse(doc, strlen(doc), err, sizeof(err)) == NULL);
	SW_CHECK(strstr(err, "limits") != NULL);
	doc = "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
	      " \"ro_binds\": [{\"path\": \"/usr\"}], \"limits\": {\"nproc\": 0,"
	      " \"memory_bytes\": 1, \"cpu_seconds\": 1, \"file_size_bytes\": 1, \"nofile\": 1,"
	      " \"wall_ms\": 1}}";
	SW_CHECK(sw_sandbox_variant_parse(doc, strlen(doc), err, sizeof(err)) == NULL);
	SW_CHECK(strstr(err, "> 0") != NULL);
	doc = "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"Shell Tools\"],"
	      " \"ro_binds\": [{\"path\": \"/usr\"}], " GOOD_LIMITS "}";
	SW_CHECK(sw_sandbox_variant_parse(doc, strlen(doc), err, sizeof(err)) == NULL);
	SW_CHECK(strstr(err, "offers[0]") != NULL);
	doc = "{\"name\": \"../x\", \"description\": \"d\", \"offers\": [\"shell\"],"
	      " \"ro_binds\": [{\"path\": \"/usr\"}], " GOOD_LIMITS "}";
	SW_CHECK(sw_sandbox_variant_parse(doc, strlen(doc), err, sizeof(err)) == NULL);
	SW_CHECK(sw_sandbox_variant_parse("{", 1, err, sizeof(err)) == NULL);
}

/* A document with these binds (and env_path, when not NULL). */
static struct sw_sandbox_variant *parse_with(const char *binds, const char *env_path, char *err,
					     size_t errlen)
{
	char doc[4096];

	snprintf(doc, sizeof(doc),
		 "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
		 " \"ro_binds\": %s,%s%s%s " GOOD_LIMITS "}",
		 binds, env_path ? " \"env_path\": " : "", env_path ? env_path : "",
		 env_path ? "," : "");
	return sw_sandbox_variant_parse(doc, strlen(doc), err, errlen);
}

/*
 * "at" binds a host path elsewhere (a variant root at /opt/...), env_path
 * names directories to put before PATH. Both are checked like paths: the
 * host side by the host rules, the sandbox side may not cover the
 * sandbox's own places, destinations are unique and do not nest, env_path
 * lies inside a bind.
 */
static void test_at_and_env_path(void)
{
	static const char *const refused[][3] = {
	    /* binds, env_path, error */
	    {"[{\"path\": \"/usr\", \"at\": \"/proc\"}]", NULL, "nothing may be bound at /proc"},
	    {"[{\"path\": \"/usr\", \"at\": \"/.sagewai/toolrunner\"}]", NULL, "(/.sagewai)"},
	    {"[{\"path\": \"/usr\", \"at\": \"/workspace\"}]", NULL, "(/workspace)"},
	    {"[{\"path\": \"/usr\", \"at\": \"/tmp/x\"}]", NULL, "(/tmp)"},
	    {"[{\"path\": \"/usr\", \"at\": \"/etc/passwd\"}]", NULL, "bound at /etc/passwd"},
	    {"[{\"path\": \"/usr\", \"at\": \"/\"}]", NULL, "clean absolute path"},
	    {"[{\"path\": \"/usr\", \"at\": \"/opt/../etc\"}]", NULL, "clean absolute path"},
	    {"[{\"path\": \"/usr\", \"at\": \"opt\"}]", NULL, "clean absolute path"},
	    {"[{\"path\": \"/usr\", \"at\": 5}]", NULL, "ro_binds[0]"},
	    {"[{\"path\": \"/root/x\", \"at\": \"/opt/x\"}]", NULL, "may not enter"},
	    {"[{\"path\": \"/home/u/.cache/v\", \"at\": \"/opt/v\"}]", NULL, "may not enter"},
	    {"[{\"path\": \"/usr\"}, {\"path\": \"/var/lib/v\", \"at\": \"/usr\"}]", NULL,
	     "listed twice"},
	    {"[{\"path\": \"/usr\"}, {\"path\": \"/var/lib/v\", \"at\": \"/usr/local/v\"}]",
	     NULL, "nest"},
	    {"[{\"path\": \"/var/lib/v\", \"at\": \"/opt/v\"}, {\"path\": \"/opt\"}]", NULL,
	     "nest"},
	    {"[{\"path\": \"/var/lib/a\", \"at\": \"/opt/a\"},"
	     " {\"path\": \"/var/lib/b\", \"at\": \"/opt/a/b\"}]",
	     NULL, "nest"},
	    {"[{\"path\": \"/usr\"}]", "[\"/opt/x/bin\"]", "inside no ro_binds entry"},
	    {"[{\"path\": \"/var/lib/v\", \"at\": \"/opt/v\"}]", "[\"/opt/vv/bin\"]",
	     "inside no ro_binds"},
	    {"[{\"path\": \"/usr\"}]", "[\"/usr/bin:/evil\"]", "without ':'"},
	    {"[{\"path\": \"/usr\"}]", "[\"usr/bin\"]", "env_path[0]"},
	    {"[{\"path\": \"/usr\"}]", "[]", "1 to 8"},
	    {"[{\"path\": \"/usr\"}]", "\"/usr/bin\"", "1 to 8"},
	    {"[{\"path\": \"/usr\"}]", "[\"/usr/bin\", 3]", "env_path[1]"},
	    {"[{\"path\": \"/usr\"}]",
	     "[\"/usr/a\", \"/usr/b\", \"/usr/c\", \"/usr/d\", \"/usr/e\", \"/usr/f\","
	     " \"/usr/g\", \"/usr/h\", \"/usr/i\"]",
	     "1 to 8"},
	};
	struct sw_sandbox_variant *v;
	char err[512], path[256];

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		v = parse_with(refused[i][0], refused[i][1], err, sizeof(err));
		SW_CHECKF(v == NULL, "accepted %s / %s", refused[i][0],
			  refused[i][1] ? refused[i][1] : "-");
		SW_CHECKF(strstr(err, refused[i][2]) != NULL, "error '%s' lacks '%s'", err,
			  refused[i][2]);
	}

	/* A variant root at /opt, with its bin first in PATH. */
	v = parse_with("[{\"path\": \"/usr\"}, {\"path\": \"/var/lib/sagewai/variants/x\","
		       " \"at\": \"/opt/sagewai/x\"}, {\"path\": \"/opt/y\", \"optional\": true}]",
		       "[\"/opt/sagewai/x/bin\", \"/usr/local/bin\"]", err, sizeof(err));
	SW_CHECKF(v != NULL, "%s", err);
	SW_CHECK(v->n_ro_binds == 3 && strcmp(v->ro_binds[0].at, "/usr") == 0);
	SW_CHECK(strcmp(v->ro_binds[1].path, "/var/lib/sagewai/variants/x") == 0);
	SW_CHECK(strcmp(v->ro_binds[1].at, "/opt/sagewai/x") == 0 && !v->ro_binds[1].optional);
	SW_CHECK(strcmp(v->ro_binds[2].at, "/opt/y") == 0 && v->ro_binds[2].optional);
	SW_CHECK(v->n_env_path == 2);
	SW_CHECK(sw_sandbox_variant_path(v, "/usr/bin:/bin", path, sizeof(path)) == 0);
	SW_CHECKF(strcmp(path, "/opt/sagewai/x/bin:/usr/local/bin:/usr/bin:/bin") == 0, "%s",
		  path);
	SW_CHECK(sw_sandbox_variant_path(v, NULL, path, sizeof(path)) == 0);
	SW_CHECK(strcmp(path, "/opt/sagewai/x/bin:/usr/local/bin") == 0);
	SW_CHECK(sw_sandbox_variant_path(v, "/bin", path, 20) == -1); /* does not fit */
	SW_CHECK(sw_sandbox_variant_path(v, "/bin", path, 0) == -1);
	sw_sandbox_variant_free(v);

	/* No env_path: PATH is the base. */
	v = parse_with("[{\"path\": \"/usr\"}]", NULL, err, sizeof(err));
	SW_CHECKF(v != NULL && v->n_env_path == 0, "%s", err);
	SW_CHECK(sw_sandbox_variant_path(v, "/usr/bin", path, sizeof(path)) == 0);
	SW_CHECK(strcmp(path, "/usr/bin") == 0);
	sw_sandbox_variant_free(v);
}

/* The CLI variants of the catalogue load: their roots at /opt/sagewai,
 * their bin directories on PATH, the host's /usr beside. */
static void test_cli_variants(void)
{
	static const char *const names[] = {"claude-code", "codex", "gemini", "multi"};
	char err[512], path[1024];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct sw_sandbox_variant *v =
		    sw_sandbox_variant_load(variants_dir, names[i], err, sizeof(err));
		int roots = 0;

		SW_CHECKF(v != NULL, "%s: %s", names[i], err);
		SW_CHECK(sw_sandbox_variant_offers(v, "shell") && sw_sandbox_variant_offers(v, "git"));
		SW_CHECK(sw_sandbox_variant_offers(v, "node"));
		for (size_t k = 0; k < v->n_ro_binds; k++)
			if (strncmp(v->ro_binds[k].at, "/opt/sagewai/", 13) == 0) {
				roots++;
				SW_CHECK(strncmp(v->ro_binds[k].path, "/var/lib/sagewai/variants/",
						 26) == 0);
			}
		SW_CHECKF(roots == (i == 3 ? 3 : 1), "%s: %d roots", names[i], roots);
		SW_CHECK(v->n_env_path == (size_t)roots);
		SW_CHECK(sw_sandbox_variant_path(v, "/usr/bin:/bin", path, sizeof(path)) == 0);
		SW_CHECKF(strncmp(path, "/opt/sagewai/", 13) == 0, "%s", path);
		sw_sandbox_variant_free(v);
	}
}

/* A file whose name disagrees with its content is refused. */
static void test_name_mismatch(void)
{
	char dir[] = "/tmp/sw-variant-XXXXXX", path[256], err[512];
	FILE *f;

	SW_CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/other.json", dir);
	SW_CHECK((f = fopen(path, "w")) != NULL);
	fprintf(f, "{\"name\": \"t\", \"description\": \"d\", \"offers\": [\"shell\"],"
		   " \"ro_binds\": [{\"path\": \"/usr\"}], " GOOD_LIMITS "}");
	fclose(f);
	SW_CHECK(sw_sandbox_variant_load(dir, "other", err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "names itself 't'") != NULL, "%s", err);
	remove(path);
	remove(dir);
}

int main(void)
{
	test_base();
	test_unknown();
	test_refusals();
	test_at_and_env_path();
	test_cli_variants();
	test_name_mismatch();
	printf("variant_test: ok\n");
	return 0;
}
