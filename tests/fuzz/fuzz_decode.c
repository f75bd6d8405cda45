/*
 * libFuzzer target for sw_event_decode and sw_event_decode_header, with
 * the compiled-in readers plus the test writer schemas of tests/events
 * (so resolution and defaulting are fuzzed too).
 *
 * Beyond "no crash, no leak, no huge allocation" it checks three
 * properties: whatever decodes also yields its header (unless a header
 * string outgrows struct sw_event_header); the header read in place (a
 * writer with today's header) is the header read through avro-c, or the
 * same error; and an event that decodes and re-encodes decodes again to
 * the same JSON.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events_int.h"

static struct sw_event_registry *reg;

static void add_writer(const char *name)
{
	char path[1024], err[512], *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", SW_FUZZ_WRITERS, name);
	if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (buf = calloc(1, (size_t)n + 1)) == NULL ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "fuzz_decode: cannot read %s\n", path);
		abort();
	}
	fclose(f);
	if (sw_events_registry_add_writer(reg, buf, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_decode: %s: %s\n", path, err);
		abort();
	}
	free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512];

	(void)argc;
	(void)argv;
	if ((reg = sw_events_registry_new(err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_decode: %s\n", err);
		abort();
	}
	add_writer("run.finished.v2.avsc");
	add_writer("run.submitted.v0.avsc");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], err2[512];
	struct sw_event_header h;
	json_t *ev = sw_event_decode(reg, data, size, err, sizeof(err));
	int hrc = sw_event_decode_header(reg, data, size, &h, err2, sizeof(err2));
	const char *type;
	void *msg;
	size_t len;

	struct sw_event_header g;
	struct sw_ev_writer *w;
	const uint8_t *body;
	size_t bodylen;
	char err3[512];

	if (sw_ev_check(reg, data, size, &w, &body, &bodylen, err3, sizeof(err3)) == 0) {
		int grc = sw_ev_header_general(w, body, bodylen, &g, err3, sizeof(err3));

		if (grc != hrc || (grc == 0 && memcmp(&g, &h, sizeof(g)) != 0) ||
		    (grc != 0 && strcmp(err2, err3) != 0)) {
			fprintf(stderr,
				"header in place (%d: %s) differs from avro-c's (%d: %s)\n", hrc,
				hrc ? err2 : h.type, grc, grc ? err3 : g.type);
			abort();
		}
	}
	if (ev == NULL)
		return 0;
	if (hrc != 0 && strstr(err2, "longer than") == NULL) {
		fprintf(stderr, "decoded, but not the header: %s\n", err2);
		abort();
	}
	type = json_string_value(json_object_get(json_object_get(ev, "header"), "type"));
	if (type == NULL)
		abort(); /* decode checks the header's type */
	if (sw_event_encode(reg, type, NULL, ev, &msg, &len, err, sizeof(err)) == 0) {
		json_t *again = sw_event_decode(reg, msg, len, err, sizeof(err));

		if (again == NULL || !json_equal(again, ev)) {
			fprintf(stderr, "re-encoded event does not decode the same: %s\n",
				again ? "differs" : err);
			abort();
		}
		json_decref(again);
		free(msg);
	}
	json_decref(ev);
	return 0;
}
