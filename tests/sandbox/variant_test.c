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
	test_name_mismatch();
	printf("variant_test: ok\n");
	return 0;
}
