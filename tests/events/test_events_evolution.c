/*
 * Schema evolution: the compiled-in (old) reader reads messages from a
 * newer writer (tests/events/run.finished.v2.avsc: a field added in the
 * middle, a map, an appended enum symbol), and defaults what an older
 * writer lacks (run.submitted.v0.avsc, including a header field).
 * Writer schemas that cannot resolve are refused when added.
 */
#include "ev_test.h"

static const char *dir;
static char schemas[1024];

/* A run.finished written with v2: status index, attempts, output, error,
 * labels map, marks. */
static void v2_message(struct ev_buf *b, uint64_t fp, int status, int nlabels)
{
	b->n = 0;
	ev_put_prefix(b, fp);
	ev_put_header(b, "run.finished", "run-v2", 1);
	ev_put_long(b, status);
	ev_put_long(b, 3); /* attempts */
	ev_put_long(b, 1); /* output: string branch */
	ev_put_str(b, "{\"ok\":true}");
	ev_put_long(b, 0); /* error: null */
	if (nlabels > 0) {
		ev_put_long(b, -nlabels); /* a block with its byte size */
		struct ev_buf blk = {.n = 0};

		for (int i = 0; i < nlabels; i++) {
			char k[16];

			snprintf(k, sizeof(k), "k%d", i);
			ev_put_str(&blk, k);
			ev_put_str(&blk, "v");
		}
		ev_put_long(b, (int64_t)blk.n);
		ev_put(b, blk.b, blk.n);
	}
	ev_put_long(b, 0); /* end of labels */
	ev_put_long(b, 2); /* marks: two nulls */
	ev_put_long(b, 0);
}

static void test_new_writer(void)
{
	char err[512], *v2 = ev_read(dir, "run.finished.v2.avsc");
	struct sw_event_registry *r = sw_events_registry_new(err, sizeof(err));
	uint64_t fp = ev_avsc_fp(schemas, v2);
	struct sw_event_header h;
	struct ev_buf b;
	json_t *got, *want;

	SW_CHECKF(r != NULL, "%s", err);
	SW_CHECK(fp != sw_events_fingerprint(r, "run.finished"));
	v2_message(&b, fp, 1, 3);
	/* before the writer is known its fingerprint is unknown */
	SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "unknown schema fingerprint") != NULL, "%s", err);

	SW_CHECKF(sw_events_registry_add_writer(r, v2, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(sw_events_registry_add_writer(r, v2, err, sizeof(err)) == 0); /* idempotent */
	got = sw_event_decode(r, b.b, b.n, err, sizeof(err));
	SW_CHECKF(got != NULL, "%s", err);
	/* modes: not in that writer, the reader's default */
	want = json_pack("{s:{s:s,s:s,s:I,s:s,s:s,s:n,s:s,s:s},s:s,s:s,s:n,s:n}", "header",
			 "event_id", "0190b1a8-7b2c-7def-8abc-0123456789ab", "type",
			 "run.finished", "time", (json_int_t)1720000000123456LL, "tenant", "acme",
			 "run_id", "run-v2", "step_id", "trace_id", "", "producer", "test",
			 "status", "FAILED", "output", "{\"ok\":true}", "error", "modes");
	if (!json_equal(got, want))
		SW_CHECKF(0, "got %s", json_dumps(got, JSON_COMPACT));
	json_decref(got);
	json_decref(want);
	SW_CHECKF(sw_event_decode_header(r, b.b, b.n, &h, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(h.run_id, "run-v2") == 0 && strcmp(h.tenant, "acme") == 0);

	/* no labels: the empty-map path */
	v2_message(&b, fp, 0, 0);
	got = sw_event_decode(r, b.b, b.n, err, sizeof(err));
	SW_CHECKF(got != NULL, "%s", err);
	SW_CHECK(strcmp(json_string_value(json_object_get(got, "status")), "SUCCEEDED") == 0);
	json_decref(got);

	/* a symbol the old reader does not know is an error, not a wrong symbol */
	v2_message(&b, fp, 3, 1);
	SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "RunStatus") != NULL || strstr(err, "enum") != NULL, "%s", err);

	/* a block size that lies is caught */
	v2_message(&b, fp, 1, 2);
	{
		/* find the block size byte after status/attempts/output/error: rebuild
		 * with a wrong size instead of patching bytes */
		struct ev_buf c = {.n = 0};

		ev_put_prefix(&c, fp);
		ev_put_header(&c, "run.finished", "run-v2", 1);
		ev_put_long(&c, 1);
		ev_put_long(&c, 3);
		ev_put_long(&c, 0);
		ev_put_long(&c, 0);
		ev_put_long(&c, -1);
		ev_put_long(&c, 5); /* the item below takes 4 */
		ev_put_str(&c, "k");
		ev_put_str(&c, "v");
		ev_put_long(&c, 0);
		ev_put_long(&c, 0);
		ev_put_long(&c, 0);
		SW_CHECK(sw_event_decode(r, c.b, c.n, err, sizeof(err)) == NULL);
	}

	/* items that take no bytes: a huge count is bounded, not looped over */
	{
		struct ev_buf c = {.n = 0};

		ev_put_prefix(&c, fp);
		ev_put_header(&c, "run.finished", "run-v2", 1);
		ev_put_long(&c, 1);
		ev_put_long(&c, 3);
		ev_put_long(&c, 0);
		ev_put_long(&c, 0);
		ev_put_long(&c, 0);		/* labels: empty */
		ev_put_long(&c, INT64_MAX / 2); /* marks */
		ev_put_long(&c, 0);
		SW_CHECK(sw_event_decode(r, c.b, c.n, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "too many") != NULL, "%s", err);
		SW_CHECK(sw_event_decode_header(r, c.b, c.n, &h, err, sizeof(err)) == -1);
	}
	free(v2);
	sw_events_registry_destroy(r);
}

static void test_old_writer(void)
{
	char err[512], *v0 = ev_read(dir, "run.submitted.v0.avsc");
	struct sw_event_registry *r = sw_events_registry_new(err, sizeof(err));
	uint64_t fp = ev_avsc_fp(schemas, v0);
	struct sw_event_header h;
	struct ev_buf b = {.n = 0};
	json_t *got, *want;
	char *a, *w;

	SW_CHECKF(r != NULL, "%s", err);
	SW_CHECKF(sw_events_registry_add_writer(r, v0, err, sizeof(err)) == 0, "%s", err);
	ev_put_prefix(&b, fp);
	ev_put_header(&b, "run.submitted", "run-v0", 0);
	ev_put_str(&b, "wf");
	ev_put_long(&b, 4);
	ev_put_str(&b, "{\"x\":1}");
	got = sw_event_decode(r, b.b, b.n, err, sizeof(err));
	SW_CHECKF(got != NULL, "%s", err);
	want = json_pack("{s:{s:s,s:s,s:I,s:s,s:s,s:n,s:s,s:s},s:s,s:i,s:s,s:s,s:[],s:s}",
			 "header", "event_id", "0190b1a8-7b2c-7def-8abc-0123456789ab", "type",
			 "run.submitted", "time", (json_int_t)1720000000123456LL, "tenant", "acme",
			 "run_id", "run-v0", "step_id", "trace_id", "", "producer", "test",
			 "workflow", "wf", "workflow_version", 4, "input", "{\"x\":1}", "user", "",
			 "modes", "replay_of", "");
	/* equal, and in the reader's field order (compare the text) */
	a = json_dumps(got, JSON_COMPACT);
	w = json_dumps(want, JSON_COMPACT);
	SW_CHECKF(strcmp(a, w) == 0, "\n got %s\nwant %s", a, w);
	free(a);
	free(w);
	json_decref(got);
	json_decref(want);
	SW_CHECKF(sw_event_decode_header(r, b.b, b.n, &h, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(h.run_id, "run-v0") == 0 && h.trace_id[0] == '\0');
	SW_CHECK(strcmp(h.producer, "test") == 0);
	/* one byte more or less is refused */
	b.b[b.n++] = 0;
	SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "left over") != NULL, "%s", err);
	SW_CHECK(sw_event_decode(r, b.b, b.n - 2, err, sizeof(err)) == NULL);
	free(v0);
	sw_events_registry_destroy(r);
}

static void expect_refused(struct sw_event_registry *r, const char *avsc, const char *want)
{
	char err[512] = "";

	SW_CHECKF(sw_events_registry_add_writer(r, avsc, err, sizeof(err)) == -1, "%s added",
		  avsc);
	SW_CHECKF(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

#define REC(name, type, fields)                                                                   \
	"{\"type\":\"record\",\"name\":\"" name "\",\"sagewai.type\":\"" type "\","               \
	"\"fields\":[{\"name\":\"header\",\"type\":\"sagewai.Header\"}" fields "]}"

static void test_refused_writers(void)
{
	char err[512];
	struct sw_event_registry *r = sw_events_registry_new(err, sizeof(err));
	size_t n_types;

	SW_CHECKF(r != NULL, "%s", err);
	n_types = sw_events_type_count(r);
	expect_refused(r, "{", "not JSON");
	expect_refused(r, REC("sagewai.run.Nope", "run.nope", ""), "no reader");
	expect_refused(r, REC("sagewai.run.Started", "run.other", ""), "sagewai.type");
	/* a reader field without a default that the writer lacks */
	expect_refused(r,
		       REC("sagewai.run.Started", "run.started",
			   ",{\"name\":\"workflow\",\"type\":\"string\"}"),
		       "workflow_version");
	/* incompatible types */
	expect_refused(r,
		       REC("sagewai.run.Started", "run.started",
			   ",{\"name\":\"workflow\",\"type\":\"int\"},"
			   "{\"name\":\"workflow_version\",\"type\":\"int\"}"),
		       "workflow");
	/* enum symbols reordered */
	expect_refused(r,
		       REC("sagewai.run.Finished", "run.finished",
			   ",{\"name\":\"status\",\"type\":{\"type\":\"enum\","
			   "\"name\":\"RunStatus\",\"symbols\":[\"FAILED\",\"SUCCEEDED\","
			   "\"CANCELLED\"]}}"),
		       "symbols may only be appended");
	/* no header */
	expect_refused(r,
		       "{\"type\":\"record\",\"name\":\"sagewai.run.Started\","
		       "\"sagewai.type\":\"run.started\",\"fields\":[{\"name\":\"workflow\","
		       "\"type\":\"string\"}]}",
		       "header");
	/* refused writers leave the registry as it was */
	SW_CHECK(sw_events_type_count(r) == n_types);
	sw_events_registry_destroy(r);
}

int main(int argc, char **argv)
{
	SW_CHECKF(argc == 3, "usage: %s TEST_DIR SCHEMAS_DIR", argv[0]);
	dir = argv[1];
	snprintf(schemas, sizeof(schemas), "%s", argv[2]);
	test_new_writer();
	test_old_writer();
	test_refused_writers();
	printf("events evolution: ok\n");
	return 0;
}
