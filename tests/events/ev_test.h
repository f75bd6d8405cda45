/*
 * Helpers shared by the sw_events tests: sample events made from the
 * schemas themselves, and a hand-rolled Avro binary writer for messages
 * our encoder would never produce (other schema versions, hostile bytes).
 */
#ifndef EV_TEST_H
#define EV_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_events.h"
#include "sw_test.h"

/* A sample value of schema s (expanded JSON). variant 0: every union
 * takes its first non-null branch; 1: null wherever a union allows it. */
static inline json_t *ev_sample(json_t *s, int variant)
{
	const char *t;

	if (json_is_array(s)) {
		size_t i;
		json_t *b;

		json_array_foreach(s, i, b) {
			int is_null =
			    json_is_string(b) && strcmp(json_string_value(b), "null") == 0;

			if (variant == 1 ? is_null : !is_null)
				return ev_sample(b, variant);
		}
		return ev_sample(json_array_get(s, 0), variant);
	}
	if (json_is_object(s)) {
		json_t *tj = json_object_get(s, "type");

		if (!json_is_string(tj))
			return ev_sample(tj, variant);
		t = json_string_value(tj);
		if (strcmp(t, "record") == 0) {
			json_t *o = json_object(), *f;
			size_t i;

			json_array_foreach(json_object_get(s, "fields"), i, f)
				json_object_set_new(
				    o, json_string_value(json_object_get(f, "name")),
				    ev_sample(json_object_get(f, "type"), variant));
			return o;
		}
		if (strcmp(t, "enum") == 0) {
			json_t *syms = json_object_get(s, "symbols");

			return json_copy(json_array_get(syms, json_array_size(syms) - 1));
		}
		if (strcmp(t, "array") == 0)
			return json_pack("[o,o]", ev_sample(json_object_get(s, "items"), variant),
					 ev_sample(json_object_get(s, "items"), variant));
		if (strcmp(t, "map") == 0)
			return json_pack("{s:o}", "k",
					 ev_sample(json_object_get(s, "values"), variant));
		if (strcmp(t, "fixed") == 0) {
			json_int_t n = json_integer_value(json_object_get(s, "size"));
			char *h = calloc(1, (size_t)n * 2 + 1);
			json_t *o;

			memset(h, 'a', (size_t)n * 2);
			o = json_string(h);
			free(h);
			return o;
		}
	} else {
		t = json_string_value(s);
	}
	if (strcmp(t, "string") == 0)
		return json_string(variant ? "" : "s \"quoted\" \xc3\xa9\n");
	if (strcmp(t, "int") == 0)
		return json_integer(variant ? -1 : 2147483647);
	if (strcmp(t, "long") == 0)
		return json_integer(variant ? 0 : -9007199254740993LL);
	if (strcmp(t, "bytes") == 0)
		return json_string(variant ? "" : "00ff7f80");
	if (strcmp(t, "boolean") == 0)
		return json_boolean(!variant);
	if (strcmp(t, "float") == 0 || strcmp(t, "double") == 0)
		return json_real(1.5);
	return json_null();
}

/* A sample event of type whose header passes the encoder's checks. */
static inline json_t *ev_sample_event(struct sw_event_registry *r, const char *type, int variant)
{
	json_t *s = json_loads(sw_events_schema_json(r, type), 0, NULL);
	json_t *ev, *h;

	SW_CHECK(s != NULL);
	ev = ev_sample(s, variant);
	json_decref(s);
	h = json_object_get(ev, "header");
	SW_CHECK(h != NULL);
	json_object_set_new(h, "event_id", json_string("0190b1a8-7b2c-7def-8abc-0123456789ab"));
	json_object_set_new(h, "type", json_string(type));
	json_object_set_new(h, "time", json_integer(1720000000123456LL));
	return ev;
}

/* Avro binary, by hand. */
struct ev_buf {
	uint8_t b[8192];
	size_t n;
};

static inline void ev_put(struct ev_buf *b, const void *p, size_t n)
{
	SW_CHECK(b->n + n <= sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static inline void ev_put_long(struct ev_buf *b, int64_t v)
{
	uint64_t n = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);

	while (n & ~0x7fULL) {
		uint8_t c = (uint8_t)((n & 0x7f) | 0x80);

		ev_put(b, &c, 1);
		n >>= 7;
	}
	ev_put(b, &(uint8_t){(uint8_t)n}, 1);
}

static inline void ev_put_str(struct ev_buf *b, const char *s)
{
	ev_put_long(b, (int64_t)strlen(s));
	ev_put(b, s, strlen(s));
}

/* magic and fingerprint */
static inline void ev_put_prefix(struct ev_buf *b, uint64_t fp)
{
	ev_put(b, "\xc3\x01", 2);
	for (int i = 0; i < 8; i++)
		ev_put(b, &(uint8_t){(uint8_t)(fp >> (8 * i))}, 1);
}

/* The header our current schema has, with step_id null. */
static inline void ev_put_header(struct ev_buf *b, const char *type, const char *run_id,
				 int with_trace_id)
{
	ev_put_str(b, "0190b1a8-7b2c-7def-8abc-0123456789ab");
	ev_put_str(b, type);
	ev_put_long(b, 1720000000123456LL);
	ev_put_str(b, "acme");
	ev_put_str(b, run_id);
	ev_put_long(b, 0); /* step_id: null branch */
	if (with_trace_id)
		ev_put_str(b, "");
	ev_put_str(b, "test");
}

/* Read a file from the test source directory (argv[1]). */
static inline char *ev_read(const char *dir, const char *name)
{
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	SW_CHECKF(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	SW_CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	return buf;
}

/* The fingerprint of an .avsc that refers to sagewai.Header, computed by
 * substituting the header here rather than through the library. */
static inline uint64_t ev_avsc_fp(const char *schemas_dir, const char *avsc)
{
	char *htext = ev_read(schemas_dir, "sagewai.Header.avsc");
	json_t *h = json_loads(htext, 0, NULL), *s = json_loads(avsc, 0, NULL), *f0;
	char err[256], *text, *canon;
	uint64_t fp;

	SW_CHECK(h != NULL && s != NULL);
	f0 = json_array_get(json_object_get(s, "fields"), 0);
	if (json_is_string(json_object_get(f0, "type")))
		json_object_set(f0, "type", h);
	text = json_dumps(s, 0);
	canon = sw_avro_canonical(text, err, sizeof(err));
	SW_CHECKF(canon != NULL, "%s", err);
	fp = sw_avro_crc64(canon, strlen(canon));
	free(canon);
	free(text);
	free(htext);
	json_decref(h);
	json_decref(s);
	return fp;
}

#endif
