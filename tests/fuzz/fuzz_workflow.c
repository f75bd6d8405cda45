/*
 * libFuzzer target for sw_workflow_parse (YAML workflow files), seeded
 * with the .yaml files of examples/ and examples/broken/.
 *
 * Beyond "no crash, no leak": a failure always has a "f.yaml:L:C: "
 * message in valid UTF-8; a workflow that parses round-trips through
 * its canonical JSON (to_json, from_json, to_json gives the same JSON),
 * and each step's with: renders or fails cleanly against a small context.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_workflow.h"

static json_t *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ctx = json_loads(
	    "{\"input\": {\"brief\": \"b\", \"webhook_url\": \"http://x\", \"n\": [1, {}]},"
	    " \"steps\": {}}",
	    0, NULL);
	if (ctx == NULL)
		abort();
	return 0;
}

static void check_message(const char *err)
{
	int line = 0, col = 0;
	json_t *s;

	if (strncmp(err, "f.yaml:", 7) != 0 || sscanf(err + 6, ":%d:%d: ", &line, &col) != 2 ||
	    line < 1 || col < 1) {
		fprintf(stderr, "bad message: %s\n", err);
		abort();
	}
	if ((s = json_string(err)) == NULL) {
		fprintf(stderr, "message is not UTF-8: %s\n", err);
		abort();
	}
	json_decref(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct sw_workflow *wf, *wf2;
	json_t *j, *j2, *r;
	size_t i;

	wf = sw_workflow_parse((const char *)data, size, "f.yaml", err, sizeof(err));
	if (wf == NULL) {
		check_message(err);
		return 0;
	}
	if ((j = sw_workflow_to_json(wf)) == NULL)
		abort();
	if ((wf2 = sw_workflow_from_json(j, err, sizeof(err))) == NULL) {
		fprintf(stderr, "canonical JSON does not load: %s\n", err);
		abort();
	}
	j2 = sw_workflow_to_json(wf2);
	if (j2 == NULL || !json_equal(j, j2)) {
		fprintf(stderr, "round trip differs\n");
		abort();
	}
	for (i = 0; i < wf->nsteps; i++) {
		r = sw_template_render(wf->steps[i].with, ctx, err, sizeof(err));
		if (r == NULL && strncmp(err, "with", 4) != 0) {
			fprintf(stderr, "bad render message: %s\n", err);
			abort();
		}
		json_decref(r);
		/* then give the step an output, as the scheduler would */
		json_object_set_new(json_object_get(ctx, "steps"), wf->steps[i].name,
				    json_pack("{s:{s:s}}", "output", "title", "t"));
	}
	json_object_clear(json_object_get(ctx, "steps"));
	json_decref(j);
	json_decref(j2);
	sw_workflow_free(wf);
	sw_workflow_free(wf2);
	return 0;
}
