/* Helpers shared by the sw_workflow tests. */
#ifndef WF_TEST_H
#define WF_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_test.h"
#include "sw_workflow.h"

/* Read a whole file; exits on failure. */
static inline char *wf_read_file(const char *dir, const char *name, size_t *len)
{
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	SW_CHECKF(f != NULL, "cannot open %s", path);
	SW_CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0);
	buf = malloc((size_t)n + 1);
	SW_CHECK(buf != NULL);
	SW_CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* to_json, from_json, to_json again: the two JSON forms must be equal. */
static inline void wf_check_roundtrip(const struct sw_workflow *wf, const char *what)
{
	char err[512];
	json_t *j = sw_workflow_to_json(wf), *j2;
	struct sw_workflow *wf2;
	char *a, *b;

	SW_CHECKF(j != NULL, "%s: to_json", what);
	wf2 = sw_workflow_from_json(j, err, sizeof(err));
	SW_CHECKF(wf2 != NULL, "%s: from_json: %s", what, err);
	j2 = sw_workflow_to_json(wf2);
	SW_CHECK(j2 != NULL);
	a = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	b = json_dumps(j2, JSON_SORT_KEYS | JSON_COMPACT);
	SW_CHECKF(json_equal(j, j2), "%s: round trip differs:\n%s\n%s", what, a, b);
	SW_CHECK(wf2->nsteps == wf->nsteps);
	free(a);
	free(b);
	json_decref(j);
	json_decref(j2);
	sw_workflow_free(wf2);
}

#endif
