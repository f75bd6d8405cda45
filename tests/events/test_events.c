/*
 * sw_events: canonical form and fingerprints against the Avro
 * specification's own test vectors, the compiled-in registry, round trips
 * of every schema, the header paths, and encoder errors naming the field.
 */
#include "ev_test.h"

/* share/test/data/schema-tests.txt of the Avro project: input, Parsing
 * Canonical Form, and (where given) the fingerprint as a signed 64-bit
 * number, which the Java implementation cross-checks. */
static const struct {
	const char *in, *canon;
	int has_fp;
	int64_t fp;
} spec[] = {
    {"\"null\"", "\"null\"", 1, 7195948357588979594LL},
    {"{\"type\":\"null\"}", "\"null\"", 0, 0},
    {"\"boolean\"", "\"boolean\"", 1, -6970731678124411036LL},
    {"{\"type\":\"boolean\"}", "\"boolean\"", 0, 0},
    {"\"int\"", "\"int\"", 1, 8247732601305521295LL},
    {"{\"type\":\"int\"}", "\"int\"", 0, 0},
    {"\"long\"", "\"long\"", 1, -3434872931120570953LL},
    {"{\"type\":\"long\"}", "\"long\"", 0, 0},
    {"\"float\"", "\"float\"", 1, 5583340709985441680LL},
    {"{\"type\":\"float\"}", "\"float\"", 0, 0},
    {"\"double\"", "\"double\"", 1, -8181574048448539266LL},
    {"{\"type\":\"double\"}", "\"double\"", 0, 0},
    {"\"bytes\"", "\"bytes\"", 1, 5746618253357095269LL},
    {"{\"type\":\"bytes\"}", "\"bytes\"", 0, 0},
    {"\"string\"", "\"string\"", 1, -8142146995180207161LL},
    {"{\"type\":\"string\"}", "\"string\"", 0, 0},
    {"[  ]", "[]", 1, -1241056759729112623LL},
    {"[ \"int\"  ]", "[\"int\"]", 1, -5232228896498058493LL},
    {"[ \"int\" , {\"type\":\"boolean\"} ]", "[\"int\",\"boolean\"]", 1, 5392556393470105090LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}", 1, 5916914534497305771LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}", 1, -4616218487480524110LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful info\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"foo\", "
     "\"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[{\"type\":{\"type\":\"boolean\"}, \"name\":\"f1\"}], \"type\":\"record\", "
     "\"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
     1, 7843277075252814651LL},
    {"{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\", "
     "\"default\":\"true\"},\n"
     "            "
     "{\"order\":\"descending\",\"name\":\"f2\",\"doc\":\"Hello\",\"type\":\"int\"}],\n"
     "  \"type\":\"record\", \"name\":\"foo\"\n}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"},"
     "{\"name\":\"f2\",\"type\":\"int\"}]}",
     1, -4860222112080293046LL},
    {"{\"type\":\"enum\", \"name\":\"foo\", \"symbols\":[\"A1\"]}",
     "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A1\"]}", 1, -6342190197741309591LL},
    {"{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"symbols\":[\"A1\", \"A2\"]}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}", 1,
     -4448647247586288245LL},
    {"{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
     "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}", 1, 1756455273707447556LL},
    {"{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"size\":32}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}", 1, -3064184465700546786LL},
    {"{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
     "{\"type\":\"array\",\"items\":\"null\"}", 1, -589620603366471059LL},
    {"{ \"values\":\"string\", \"type\":\"map\"}", "{\"type\":\"map\",\"values\":\"string\"}", 1,
     -8732877298790414990LL},
    {"  {\"name\":\"PigValue\",\"type\":\"record\",\n"
     "   \"fields\":[{\"name\":\"value\", \"type\":[\"null\", \"int\", \"long\", "
     "\"PigValue\"]}]}",
     "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\","
     "\"type\":[\"null\",\"int\",\"long\",\"PigValue\"]}]}",
     1, -1759257747318642341LL},
    /* ours: nested namespaces, references, custom properties */
    {"{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a\",\"x-prop\":1,\"fields\":["
     "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}},"
     "{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"b.F\",\"size\":2}},"
     "{\"name\":\"g\",\"type\":[\"E\",\"b.F\",{\"type\":\"long\",\"logicalType\":\"t\"}]},"
     "{\"name\":\"h\",\"type\":{\"type\":\"record\",\"name\":\"S\",\"namespace\":\"\","
     "\"fields\":[{\"name\":\"i\",\"type\":\"E2\",\"default\":\"X\"}]}}]}",
     "{\"name\":\"a.R\",\"type\":\"record\",\"fields\":["
     "{\"name\":\"e\",\"type\":{\"name\":\"a.E\",\"type\":\"enum\",\"symbols\":[\"X\"]}},"
     "{\"name\":\"f\",\"type\":{\"name\":\"b.F\",\"type\":\"fixed\",\"size\":2}},"
     "{\"name\":\"g\",\"type\":[\"a.E\",\"b.F\",\"long\"]},"
     "{\"name\":\"h\",\"type\":{\"name\":\"S\",\"type\":\"record\",\"fields\":["
     "{\"name\":\"i\",\"type\":\"E2\"}]}}]}",
     0, 0},
};

static void test_spec_vectors(void)
{
	char err[256];

	/* CRC-64-AVRO of nothing is the spec's EMPTY constant */
	SW_CHECK(sw_avro_crc64("", 0) == 0xc15d213aa4d7a795ULL);
	for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
		char *c = sw_avro_canonical(spec[i].in, err, sizeof(err));

		SW_CHECKF(c != NULL, "vector %zu: %s", i, err);
		SW_CHECKF(strcmp(c, spec[i].canon) == 0, "vector %zu: got %s want %s", i, c,
			  spec[i].canon);
		if (spec[i].has_fp)
			SW_CHECKF((int64_t)sw_avro_crc64(c, strlen(c)) == spec[i].fp,
				  "vector %zu: fingerprint %lld want %lld", i,
				  (long long)sw_avro_crc64(c, strlen(c)), (long long)spec[i].fp);
		free(c);
	}
	SW_CHECK(sw_avro_canonical("{\"type\":\"record\"}", err, sizeof(err)) == NULL);
	SW_CHECK(strstr(err, "name") != NULL);
	SW_CHECK(sw_avro_canonical("not json", err, sizeof(err)) == NULL);
	SW_CHECK(sw_avro_canonical("{\"type\":\"fixed\",\"name\":\"f\",\"size\":\"3\"}", err,
				   sizeof(err)) == NULL);
}

static const char *const types[] = {
    "run.submitted",   "run.started",  "run.finished",	"run.cancel_requested",
    "step.dispatched", "step.started", "step.finished", "audit.checkpoint",
    "sandbox.acquired", "sandbox.output", "sandbox.exited", "sandbox.released", "sandbox.egress",
    "tenant.created", "tenant.deleted", "apikey.created", "apikey.revoked", "audit.repaired",
    "identity.resolve_requested", "identity.resolved", "identity.denied",
    "identity.seal_requested", "identity.sealed", "identity.injected", "identity.revoke_killed",
    "secret.set", "secret.revoked", "secret.rekeyed", "profile.set", "profile.deleted",
    "user.created", "user.deleted", "artifact.pushed", "artifact.scan_refused",
    "credential.requested", "credential.pending", "credential.decided", "credential.withdrawn",
    "credential.delivered", "credential.refused",
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

static void test_registry(struct sw_event_registry *r, const char *schemas)
{
	SW_CHECKF(sw_events_type_count(r) == NTYPES, "%zu types", sw_events_type_count(r));
	SW_CHECK(sw_events_type_name(r, NTYPES) == NULL);
	for (size_t i = 0; i < NTYPES; i++) {
		const char *canon = sw_events_schema_canonical(r, types[i]);
		char file[128], *text;
		int found = 0;

		for (size_t k = 0; k < sw_events_type_count(r); k++)
			found |= strcmp(sw_events_type_name(r, k), types[i]) == 0;
		SW_CHECKF(found, "type %s not listed", types[i]);
		SW_CHECK(canon != NULL);
		SW_CHECK(sw_events_fingerprint(r, types[i]) ==
			 sw_avro_crc64(canon, strlen(canon)));
		/* the header is expanded: the canonical form defines it */
		SW_CHECK(
		    strstr(canon, "{\"name\":\"header\",\"type\":{\"name\":\"sagewai.Header\"") !=
		    NULL);
		/* custom properties, docs and defaults do not reach it */
		SW_CHECK(strstr(canon, "sagewai.type") == NULL && strstr(canon, "doc") == NULL &&
			 strstr(canon, "default") == NULL && strstr(canon, "logicalType") == NULL);
		/* the compiled-in text is the file's: same fingerprint computed here */
		snprintf(file, sizeof(file), "%s.avsc", types[i]);
		text = ev_read(schemas, file);
		SW_CHECKF(ev_avsc_fp(schemas, text) == sw_events_fingerprint(r, types[i]), "%s",
			  types[i]);
		free(text);
	}
	SW_CHECK(sw_events_fingerprint(r, "no.such") == 0);
	SW_CHECK(sw_events_schema_json(r, "no.such") == NULL);
	SW_CHECK(strcmp(sw_events_schema_fullname(r, "step.finished"), "sagewai.step.Finished") ==
		 0);
}

static void roundtrip(struct sw_event_registry *r, const char *type, json_t *ev, json_t *want)
{
	char err[512];
	void *msg;
	size_t len;
	json_t *got;
	struct sw_event_header h;
	uint64_t fp = sw_events_fingerprint(r, type);

	SW_CHECKF(sw_event_encode(r, type, NULL, ev, &msg, &len, err, sizeof(err)) == 0, "%s: %s",
		  type, err);
	SW_CHECK(len > 10 && ((uint8_t *)msg)[0] == 0xc3 && ((uint8_t *)msg)[1] == 0x01);
	for (int i = 0; i < 8; i++)
		SW_CHECK(((uint8_t *)msg)[2 + i] == (uint8_t)(fp >> (8 * i)));
	got = sw_event_decode(r, msg, len, err, sizeof(err));
	SW_CHECKF(got != NULL, "%s: %s", type, err);
	if (!json_equal(got, want)) {
		char *a = json_dumps(got, JSON_COMPACT), *b = json_dumps(want, JSON_COMPACT);

		SW_CHECKF(0, "%s round trip:\n got %s\nwant %s", type, a, b);
	}
	/* field order is the schema's */
	SW_CHECK(strcmp(json_object_iter_key(json_object_iter(got)), "header") == 0);
	json_decref(got);

	SW_CHECKF(sw_event_decode_header(r, msg, len, &h, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(h.type, type) == 0);
	SW_CHECK(strcmp(h.event_id, "0190b1a8-7b2c-7def-8abc-0123456789ab") == 0);
	SW_CHECK(h.time_us == 1720000000123456LL);
	SW_CHECK(strcmp(h.run_id, json_string_value(json_object_get(
				      json_object_get(want, "header"), "run_id"))) == 0);
	free(msg);
}

static void test_roundtrips(struct sw_event_registry *r)
{
	for (size_t i = 0; i < NTYPES; i++) {
		for (int variant = 0; variant < 2; variant++) {
			json_t *ev = ev_sample_event(r, types[i], variant);

			roundtrip(r, types[i], ev, ev);
			json_decref(ev);
		}
		/* leave out every field that has a default: decoding restores it */
		{
			json_t *s = json_loads(sw_events_schema_json(r, types[i]), 0, NULL);
			json_t *full = ev_sample_event(r, types[i], 0);
			json_t *sparse = json_deep_copy(full), *f;
			json_t *hs = json_object_get(
			    json_array_get(json_object_get(s, "fields"), 0), "type");
			size_t k;
			int dropped = 0;

			json_array_foreach(json_object_get(s, "fields"), k, f) {
				const char *n = json_string_value(json_object_get(f, "name"));
				json_t *d = json_object_get(f, "default");

				if (d != NULL) {
					json_object_del(sparse, n);
					json_object_set(full, n, d);
					dropped++;
				}
			}
			json_array_foreach(json_object_get(hs, "fields"), k, f) {
				const char *n = json_string_value(json_object_get(f, "name"));
				json_t *d = json_object_get(f, "default");

				if (d != NULL) {
					json_object_del(json_object_get(sparse, "header"), n);
					json_object_set(json_object_get(full, "header"), n, d);
				}
			}
			SW_CHECK(json_object_size(json_object_get(sparse, "header")) == 5);
			roundtrip(r, types[i], sparse, full);
			json_decref(s);
			json_decref(full);
			json_decref(sparse);
			(void)dropped;
		}
	}
}

static void test_header(struct sw_event_registry *r)
{
	struct sw_event_header h, h2;
	char err[512];
	void *msg;
	size_t len;
	json_t *ev = json_pack("{s:{s:s},s:s,s:i}", "header", "run_id", "ignored", "step", "fetch",
			       "attempt", 2);
	json_t *got;

	sw_event_header_init(&h, "step.started", "sagewai-worker");
	SW_CHECK(strlen(h.event_id) == 36 && h.event_id[14] == '7'); /* UUIDv7 */
	SW_CHECK(strcmp(h.type, "step.started") == 0 && strcmp(h.producer, "sagewai-worker") == 0);
	SW_CHECK(h.time_us > 1600000000000000LL);
	SW_CHECK(h.run_id[0] == '\0' && h.step_id[0] == '\0' && h.tenant[0] == '\0');
	snprintf(h.run_id, sizeof(h.run_id), "run-1");
	snprintf(h.step_id, sizeof(h.step_id), "run-1/fetch");
	snprintf(h.tenant, sizeof(h.tenant), "acme");

	/* h wins over the object's header */
	SW_CHECKF(sw_event_encode(r, "step.started", &h, ev, &msg, &len, err, sizeof(err)) == 0,
		  "%s", err);
	SW_CHECKF(sw_event_decode_header(r, msg, len, &h2, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(memcmp(&h, &h2, sizeof(h)) == 0);
	got = sw_event_decode(r, msg, len, err, sizeof(err));
	SW_CHECK(got != NULL);
	SW_CHECK(
	    strcmp(json_string_value(json_object_get(json_object_get(got, "header"), "run_id")),
		   "run-1") == 0);
	SW_CHECK(json_integer_value(json_object_get(got, "attempt")) == 2);
	SW_CHECK(strcmp(json_string_value(json_object_get(got, "executor")), "") == 0);
	/* the caller's object is left alone */
	SW_CHECK(
	    strcmp(json_string_value(json_object_get(json_object_get(ev, "header"), "run_id")),
		   "ignored") == 0);
	json_decref(got);
	free(msg);

	/* empty step_id travels as null and comes back empty */
	h.step_id[0] = '\0';
	SW_CHECK(sw_event_encode(r, "step.started", &h, ev, &msg, &len, err, sizeof(err)) == 0);
	SW_CHECK(sw_event_decode_header(r, msg, len, &h2, err, sizeof(err)) == 0);
	SW_CHECK(h2.step_id[0] == '\0');
	got = sw_event_decode(r, msg, len, err, sizeof(err));
	SW_CHECK(json_is_null(json_object_get(json_object_get(got, "header"), "step_id")));
	json_decref(got);
	free(msg);

	/* a header type that is not the event's is refused */
	SW_CHECK(sw_event_encode(r, "step.finished", &h, ev, &msg, &len, err, sizeof(err)) < 0);
	SW_CHECKF(strstr(err, "header.type") != NULL, "%s", err);
	json_decref(ev);
}

static void expect_error(struct sw_event_registry *r, const char *type, const char *json,
			 const char *want)
{
	json_error_t jerr;
	json_t *ev = json_loads(json, 0, &jerr);
	char err[512] = "";
	void *msg = (void *)1;
	size_t len = 1;

	SW_CHECKF(ev != NULL, "bad test JSON %s: %s", json, jerr.text);
	SW_CHECKF(sw_event_encode(r, type, NULL, ev, &msg, &len, err, sizeof(err)) == -1,
		  "%s encoded", json);
	SW_CHECK(msg == NULL && len == 0);
	SW_CHECKF(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
	json_decref(ev);
}

#define HDR                                                                                       \
	"\"header\":{\"event_id\":\"0190b1a8-7b2c-7def-8abc-0123456789ab\","                      \
	"\"type\":\"run.finished\",\"time\":1,\"run_id\":\"r\",\"producer\":\"p\"}"

static void test_encode_errors(struct sw_event_registry *r)
{
	expect_error(r, "no.such", "{}", "unknown event type");
	expect_error(r, "run.finished", "{" HDR "}", "status: missing");
	expect_error(r, "run.finished", "{" HDR ",\"status\":\"DONE\"}",
		     "status: \"DONE\" is not a symbol");
	expect_error(r, "run.finished", "{" HDR ",\"status\":\"FAILED\",\"eror\":\"x\"}",
		     "eror: unknown field");
	expect_error(r, "run.finished", "{" HDR ",\"status\":\"FAILED\",\"error\":3}",
		     "error: no branch of the union takes a JSON integer");
	expect_error(r, "run.finished", "{\"status\":\"FAILED\"}", "header: missing");
	expect_error(
	    r, "run.finished",
	    "{\"header\":{\"event_id\":\"0190b1a8-7b2c-7def-8abc-0123456789ab\","
	    "\"type\":\"run.finished\",\"time\":\"now\",\"run_id\":\"r\",\"producer\":\"p\"},"
	    "\"status\":\"FAILED\"}",
	    "header.time: expected integer, got string");
	expect_error(r, "run.finished",
		     "{\"header\":{\"event_id\":\"nope\",\"type\":\"run.finished\",\"time\":1,"
		     "\"run_id\":\"r\",\"producer\":\"p\"},\"status\":\"FAILED\"}",
		     "header.event_id");
	expect_error(
	    r, "run.finished",
	    "{\"header\":{\"event_id\":\"0190b1a8-7b2c-7def-8abc-0123456789ab\","
	    "\"type\":\"run.finished\",\"time\":1,\"producer\":\"p\"},\"status\":\"FAILED\"}",
	    "header.run_id: missing");
	expect_error(
	    r, "step.dispatched",
	    "{\"header\":{\"event_id\":\"0190b1a8-7b2c-7def-8abc-0123456789ab\","
	    "\"type\":\"step.dispatched\",\"time\":1,\"run_id\":\"r\",\"producer\":\"p\"},"
	    "\"step\":\"s\",\"index\":2147483648,\"mode\":\"sandboxed\",\"attempt\":1,"
	    "\"spec\":\"{}\"}",
	    "index: integer out of range");
	expect_error(r, "run.submitted",
		     "{\"header\":{\"event_id\":\"0190b1a8-7b2c-7def-8abc-0123456789ab\","
		     "\"type\":\"run.submitted\",\"time\":1,\"run_id\":\"r\",\"producer\":\"p\"},"
		     "\"workflow\":\"w\",\"workflow_version\":1,\"input\":\"{}\","
		     "\"modes\":[\"in_process\",7]}",
		     "modes[1]: expected string, got integer");
	expect_error(
	    r, "audit.checkpoint",
	    "{\"header\":{\"event_id\":\"0190b1a8-7b2c-7def-8abc-0123456789ab\","
	    "\"type\":\"audit.checkpoint\",\"time\":1,\"run_id\":\"\",\"producer\":\"p\"},"
	    "\"log_id\":\"l\",\"seq\":1,\"hash\":\"abc\",\"prev_checkpoint_seq\":0,"
	    "\"key_id\":\"k\",\"signature\":\"00\"}",
	    "hash: expected a hex string");
	expect_error(r, "audit.checkpoint", "[1]", "must be a JSON object");
}

int main(int argc, char **argv)
{
	struct sw_event_registry *r;
	char err[512];

	SW_CHECKF(argc == 2, "usage: %s SCHEMAS_DIR", argv[0]);
	test_spec_vectors();
	r = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(r != NULL, "%s", err);
	test_registry(r, argv[1]);
	test_roundtrips(r);
	test_header(r);
	test_encode_errors(r);
	sw_events_registry_destroy(r);
	printf("events: ok\n");
	return 0;
}
