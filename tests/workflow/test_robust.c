/*
 * Hostile and damaged workflow files: every truncation and many one-byte
 * mutations of the example files, random bytes, alias bombs, deep and
 * huge documents. Nothing may crash or leak (run under ASan in the
 * sanitizer build); every failure must carry a "FILE:LINE:COL: " message
 * that is valid UTF-8; every success must round-trip through JSON and
 * render against an empty context without crashing.
 *
 *   workflow_robust EXAMPLES_DIR
 */
#include "wf_test.h"

static unsigned long nparsed, nfailed;

static void check_err(const char *file, const char *err, const char *what, size_t at)
{
	int line = 0, col = 0, n = 0;
	size_t flen = strlen(file);
	json_t *s;

	SW_CHECKF(!strncmp(err, file, flen) && err[flen] == ':', "%s@%zu: bad message \"%s\"",
		  what, at, err);
	SW_CHECKF(sscanf(err + flen, ":%d:%d: %n", &line, &col, &n) == 2 && n > 0 && line >= 1 &&
		      col >= 1 && err[flen + (size_t)n] != '\0',
		  "%s@%zu: bad location in \"%s\"", what, at, err);
	s = json_string(err);
	SW_CHECKF(s != NULL, "%s@%zu: message is not UTF-8", what, at);
	json_decref(s);
}

static void one(const char *buf, size_t len, const char *what, size_t at)
{
	char err[512];
	struct sw_workflow *wf;

	memset(err, 0x55, sizeof(err));
	wf = sw_workflow_parse(buf, len, "f.yaml", err, sizeof(err));
	if (wf == NULL) {
		SW_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		check_err("f.yaml", err, what, at);
		nfailed++;
		return;
	}
	nparsed++;
	wf_check_roundtrip(wf, what);
	for (size_t i = 0; i < wf->nsteps; i++) {
		json_t *ctx = json_pack("{s:{}, s:{}}", "input", "steps");
		json_t *r = sw_template_render(wf->steps[i].with, ctx, err, sizeof(err));

		if (r == NULL) {
			json_t *m = json_string(err);

			SW_CHECKF(m != NULL && !strncmp(err, "with", 4), "render error \"%s\"",
				  err);
			json_decref(m);
		}
		json_decref(r);
		json_decref(ctx);
	}
	sw_workflow_free(wf);
}

static void torture_file(const char *dir, const char *name)
{
	static const char subst[] = {' ', ':', '-', '[', '{',  '&',  '*',	 '\n', '"', '\'',
				     '#', '!', '|', '>', '\t', '\0', (char)0xff, '$',  '}'};
	size_t len, i, k;
	char *text = wf_read_file(dir, name, &len);
	char *copy = malloc(len + 1);

	SW_CHECK(copy != NULL);
	/* every truncation, each in its own exactly-sized buffer so that ASan
	 * sees any read past the end */
	for (i = 0; i <= len; i++) {
		char *p = malloc(i ? i : 1);

		SW_CHECK(p != NULL);
		memcpy(p, text, i);
		one(p, i, name, i);
		free(p);
	}
	/* one-byte substitutions: four per position, the set rotating so
	 * that every substitute is tried all through the file */
	for (i = 0; i < len; i++) {
		for (k = 0; k < 4; k++) {
			memcpy(copy, text, len);
			copy[i] = subst[(i * 4 + k) % sizeof(subst)];
			one(copy, len, name, i);
		}
	}
	free(copy);
	free(text);
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail,
		    size_t *len)
{
	size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
	char *p = malloc(hl + ul * times + tl + 1);

	SW_CHECK(p != NULL);
	memcpy(p, head, hl);
	for (size_t i = 0; i < times; i++)
		memcpy(p + hl + i * ul, unit, ul);
	memcpy(p + hl + ul * times, tail, tl + 1);
	*len = hl + ul * times + tl;
	return p;
}

static void expect_fail(const char *buf, size_t len, const char *needle)
{
	char err[512];
	struct sw_workflow *wf = sw_workflow_parse(buf, len, "f.yaml", err, sizeof(err));

	SW_CHECK(wf == NULL);
	check_err("f.yaml", err, "hostile", 0);
	SW_CHECKF(strstr(err, needle) != NULL, "got \"%s\", want \"%s\"", err, needle);
}

static void hostile(void)
{
	static const char laughs[] =
	    "name: t\n"
	    "steps:\n"
	    "  - name: a\n"
	    "    uses: template\n"
	    "    with:\n"
	    "      value:\n"
	    "        l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	    "        l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n"
	    "        l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\n"
	    "        l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\n"
	    "        l4: [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]\n";
	const char *head = "name: t\nsteps:\n  - name: a\n    uses: template\n    with:\n"
			   "      value: ";
	size_t len;
	char *p;
	unsigned long seed = 12345;

	expect_fail(laughs, strlen(laughs), "f.yaml:7:13: anchors and aliases are not supported");

	p = repeat(head, "[", 100000, "", &len);
	expect_fail(p, len, "nested deeper than 32 levels");
	free(p);
	p = repeat(head, "{a: ", 100000, "", &len);
	expect_fail(p, len, "nested deeper than 32 levels");
	free(p);
	p = repeat(head, "- ", 100000, "x\n", &len);
	expect_fail(p, len, "f.yaml:6:");
	free(p);
	/* under 1 MiB but too many nodes */
	p = repeat("name: t\nsteps:\n  - name: a\n    uses: template\n    with:\n"
		   "      value: [",
		   "1,", 400000, "1]\n", &len);
	expect_fail(p, len, "too many nodes");
	free(p);
	/* many distinct keys: the duplicate check must stay cheap */
	{
		size_t n = 40000, o;
		char *q = malloc(strlen(head) + n * 16 + 8);

		SW_CHECK(q != NULL);
		o = (size_t)sprintf(q, "%s{", head);
		for (size_t i = 0; i < n; i++)
			o += (size_t)sprintf(q + o, "k%zu: %zu, ", i, i);
		o += (size_t)sprintf(q + o, "k0: 0}\n");
		expect_fail(q, o, "duplicate key \"k0\"");
		free(q);
	}
	/* a big but legitimate string value */
	{
		char err[512];
		struct sw_workflow *wf;

		p = repeat(
		    "name: t\nsteps:\n  - name: a\n    uses: llm\n    with:\n      prompt: \"",
		    "abcdefgh", 120000, "\"\n", &len);
		wf = sw_workflow_parse(p, len, "f.yaml", err, sizeof(err));
		SW_CHECKF(wf != NULL, "%s", err);
		SW_CHECK(json_string_length(json_object_get(wf->steps[0].with, "prompt")) ==
			 8 * 120000);
		sw_workflow_free(wf);
		free(p);
	}
	/* random bytes, and random bytes after a valid prefix */
	for (int round = 0; round < 3000; round++) {
		char buf[300];
		size_t n = 0, want;

		if (round % 2) {
			n = strlen(head);
			memcpy(buf, head, n);
		}
		want = n + (size_t)((seed >> 16) % (sizeof(buf) - n));
		while (n < want) {
			seed = seed * 1103515245 + 12345;
			buf[n++] = round % 3 ? "[]{}:,-&*!|>'\"#$ \nab1\t"[(seed >> 16) % 22]
					     : (char)(seed >> 16);
		}
		one(buf, n, "random", (size_t)round);
	}
}

int main(int argc, char **argv)
{
	static const char *files[] = {
	    "hello.yaml",
	    "portfolio.yaml",
	    "broken/alias.yaml",
	    "broken/later_step.yaml",
	    "broken/syntax.yaml",
	    "broken/two_docs.yaml",
	    "broken/duplicate_step.yaml",
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s EXAMPLES_DIR\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		torture_file(argv[1], files[i]);
	hostile();
	/* both outcomes must have happened, or the test proves little */
	SW_CHECKF(nparsed > 100 && nfailed > 100, "parsed %lu failed %lu", nparsed, nfailed);
	printf("workflow_robust: ok (%lu parsed, %lu refused)\n", nparsed, nfailed);
	return 0;
}
