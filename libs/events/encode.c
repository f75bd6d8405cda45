/*
 * Encoding: JSON (the in-memory form described in sw_events.h) into a
 * single-object message of the reader schema, the Avro binary encoding
 * written as the JSON and the schema are walked together (no avro-c value
 * between: building one allocated a node per field, then it was walked
 * twice more to size and to write it). Every mismatch names the field
 * path ("header.run_id", "modes[2]").
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"
#include "events_int.h"

struct enc {
	json_t *defaults;
	int is_default; /* j is an Avro default literal */
	json_t *header; /* the top record's header field, if given apart */
	const struct sw_event_header *hs; /* or as the struct, written as is */
	struct sw_ev_buf *out;
	char path[512];
	char *errstr;
	size_t errlen;
};

static const char *jtype(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "null";
	}
}

static const char *path_of(struct enc *e)
{
	return e->path[0] ? e->path : "(event)";
}

static int fail(struct enc *e, const char *what)
{
	sw_ev_err(e->errstr, e->errlen, "%s: %s", path_of(e), what);
	return -1;
}

static int wrong(struct enc *e, const char *want, const json_t *j)
{
	sw_ev_err(e->errstr, e->errlen, "%s: expected %s, got %s", path_of(e), want, jtype(j));
	return -1;
}

/* Append ".name" or "[i]" to the path (cut at its size); returns the old
 * length. Once a field: no printf. */
static size_t path_push(struct enc *e, const char *name, size_t idx)
{
	size_t old = strlen(e->path), n = old, k, room = sizeof(e->path) - 1 - n;

	if (name == NULL) {
		snprintf(e->path + n, sizeof(e->path) - n, "[%zu]", idx);
		return old;
	}
	if (n > 0 && room > 0) {
		e->path[n++] = '.';
		room--;
	}
	k = strlen(name);
	k = k < room ? k : room;
	memcpy(e->path + n, name, k);
	e->path[n + k] = '\0';
	return old;
}

static avro_schema_t skip_links(avro_schema_t s)
{
	for (int i = 0; s != NULL && is_avro_link(s) && i < SW_EV_MAX_DEPTH; i++)
		s = avro_schema_link_target(s);
	return s;
}

/* Bytes of a bytes/fixed JSON string: hex, or for defaults the Avro
 * convention of one code point 0-255 per byte. malloc'd in *out. */
static int bytes_of(struct enc *e, const json_t *j, uint8_t **out, size_t *outlen)
{
	const char *s = json_string_value(j);
	size_t n = json_string_length(j), k = 0;
	uint8_t *b = malloc(n / 2 + n + 1);

	if (b == NULL)
		return fail(e, "out of memory");
	if (e->is_default) {
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c < 0x80) {
				b[k++] = c;
			} else if ((c == 0xc2 || c == 0xc3) && i + 1 < n) {
				b[k++] = (uint8_t)(((c & 0x03) << 6) | (s[++i] & 0x3f));
			} else {
				free(b);
				return fail(e, "bytes default has a code point above 255");
			}
		}
	} else {
		/* jansson's strings end in a NUL, which sw_hex_decode checks */
		if (n % 2 != 0 || sw_hex_decode(s, b, n / 2) == -1)
			goto bad;
		k = n / 2;
	}
	*out = b;
	*outlen = k;
	return 0;
bad:
	free(b);
	return fail(e, "expected a hex string");
}

/* Whether a union branch of schema b can take j (shallow). */
static int accepts(avro_schema_t b, const json_t *j)
{
	switch (avro_typeof(b)) {
	case AVRO_NULL:
		return json_is_null(j);
	case AVRO_BOOLEAN:
		return json_is_boolean(j);
	case AVRO_INT32:
		return json_is_integer(j) && json_integer_value(j) >= INT32_MIN &&
		       json_integer_value(j) <= INT32_MAX;
	case AVRO_INT64:
		return json_is_integer(j);
	case AVRO_FLOAT:
	case AVRO_DOUBLE:
		return json_is_number(j);
	case AVRO_STRING:
	case AVRO_BYTES:
		return json_is_string(j);
	case AVRO_ENUM:
		return json_is_string(j) &&
		       avro_schema_enum_get_by_name(b, json_string_value(j)) >= 0;
	case AVRO_FIXED:
		return json_is_string(j) &&
		       (int64_t)json_string_length(j) == 2 * avro_schema_fixed_size(b);
	case AVRO_ARRAY:
		return json_is_array(j);
	case AVRO_MAP:
	case AVRO_RECORD:
		return json_is_object(j);
	default:
		return 0;
	}
}

/* ---- the Avro binary encoding, written as the JSON is walked ---------- */

static int put(struct enc *e, const void *p, size_t n)
{
	struct sw_ev_buf *o = e->out;

	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 256;
		uint8_t *b;

		while (cap < o->len + n)
			cap *= 2;
		if ((b = realloc(o->buf, cap)) == NULL)
			return fail(e, "out of memory");
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

/* int and long alike: zig-zag, then 7 bits a byte, low first */
static int put_long(struct enc *e, int64_t l)
{
	uint64_t z = ((uint64_t)l << 1) ^ (uint64_t)(l >> 63);
	uint8_t b[10];
	size_t n = 0;

	while (z > 0x7f) {
		b[n++] = (uint8_t)((z & 0x7f) | 0x80);
		z >>= 7;
	}
	b[n++] = (uint8_t)z;
	return put(e, b, n);
}

static int put_bytes(struct enc *e, const void *p, size_t n)
{
	if (put_long(e, (int64_t)n) < 0)
		return -1;
	return n > 0 ? put(e, p, n) : 0;
}

/* little-endian, as Avro writes float and double */
static int put_le(struct enc *e, uint64_t bits, size_t n)
{
	uint8_t b[8];

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(bits >> (8 * i));
	return put(e, b, n);
}

static int put_value(struct enc *e, json_t *j, avro_schema_t s, int depth);

/* A header field's string: at most the array, and valid UTF-8. */
static int put_hstr(struct enc *e, const char *name, const char *p, size_t size)
{
	size_t old = path_push(e, name, 0), n = strnlen(p, size);

	if (!sw_utf8_valid(p, n))
		return fail(e, "not valid UTF-8");
	if (put_bytes(e, p, n) < 0)
		return -1;
	e->path[old] = '\0';
	return 0;
}

/* step_id: the union's null when empty, else its string */
static int put_step_id(struct enc *e, const struct sw_event_header *h)
{
	if (h->step_id[0] == '\0')
		return put_long(e, 0);
	if (put_long(e, 1) < 0)
		return -1;
	return put_hstr(e, "step_id", h->step_id, sizeof(h->step_id));
}

/* The header from its struct, as header_json would make it and
 * put_record write it. The reader's header is today's, field for field
 * (rd->hdr_direct), so the fields go in its order. */
static int put_header(struct enc *e)
{
	const struct sw_event_header *h = e->hs;

	if (put_hstr(e, "event_id", h->event_id, sizeof(h->event_id)) < 0 ||
	    put_hstr(e, "type", h->type, sizeof(h->type)) < 0 || put_long(e, h->time_us) < 0 ||
	    put_hstr(e, "tenant", h->tenant, sizeof(h->tenant)) < 0 ||
	    put_hstr(e, "run_id", h->run_id, sizeof(h->run_id)) < 0 || put_step_id(e, h) < 0 ||
	    put_hstr(e, "trace_id", h->trace_id, sizeof(h->trace_id)) < 0)
		return -1;
	return put_hstr(e, "producer", h->producer, sizeof(h->producer));
}

/* The defaults of record s (NULL: none), by its full name. */
static json_t *record_defaults(struct enc *e, avro_schema_t s)
{
	const char *ns = avro_schema_namespace(s);
	char full[512];

	if (ns != NULL && ns[0] != '\0')
		snprintf(full, sizeof(full), "%s.%s", ns, avro_schema_name(s));
	else
		snprintf(full, sizeof(full), "%s", avro_schema_name(s));
	return json_object_get(e->defaults, full);
}

#define RECORD_FIELDS_MAX 64 /* fields looked up once; a wider record twice */

static int put_record(struct enc *e, json_t *j, avro_schema_t s, int depth)
{
	const char *key;
	json_t *defs = NULL, *jv, *got[RECORD_FIELDS_MAX];
	size_t nf = avro_schema_record_size(s), present = 0;
	int looked = nf <= RECORD_FIELDS_MAX;

	if (!json_is_object(j))
		return wrong(e, "object", j);
	/* every key of j must be a field: when fewer of the fields are in j
	 * than j has keys, name the stranger */
	for (size_t i = 0; looked && i < nf; i++) {
		got[i] = json_object_get(j, avro_schema_record_field_name(s, (int)i));
		present += got[i] != NULL;
	}
	if (!looked || present != json_object_size(j)) {
		json_object_foreach(j, key, jv) {
			if (avro_schema_record_field_get_index(s, key) < 0) {
				path_push(e, key, 0);
				return fail(e, "unknown field");
			}
		}
	}
	for (size_t i = 0; i < nf; i++) {
		const char *name = avro_schema_record_field_name(s, (int)i);
		size_t old = path_push(e, name, 0);
		int was_default = e->is_default;

		/* the event's own header, given apart (sw_event_encode) */
		if (depth == 0 && e->hs != NULL && strcmp(name, "header") == 0) {
			if (put_header(e) < 0)
				return -1;
			e->path[old] = '\0';
			continue;
		}
		if (depth == 0 && e->header != NULL && strcmp(name, "header") == 0)
			jv = e->header;
		else
			jv = looked ? got[i] : json_object_get(j, name);
		if (jv == NULL) {
			if (defs == NULL)
				defs = record_defaults(e, s);
			if ((jv = json_object_get(defs, name)) == NULL)
				return fail(e, "missing, and the field has no default");
			e->is_default = 1;
		}
		if (put_value(e, jv, avro_schema_record_field_get_by_index(s, (int)i), depth + 1) <
		    0)
			return -1;
		e->is_default = was_default;
		e->path[old] = '\0';
	}
	return 0;
}

static int put_union(struct enc *e, json_t *j, avro_schema_t s, int depth)
{
	size_t n = avro_schema_union_size(s);
	size_t i;

	if (e->is_default) {
		i = 0; /* a union's default is of its first branch */
	} else {
		for (i = 0; i < n; i++)
			if (accepts(skip_links(avro_schema_union_branch(s, (int)i)), j))
				break;
	}
	if (i >= n) {
		sw_ev_err(e->errstr, e->errlen, "%s: no branch of the union takes a JSON %s",
			  path_of(e), jtype(j));
		return -1;
	}
	if (put_long(e, (int64_t)i) < 0)
		return -1;
	return put_value(e, j, avro_schema_union_branch(s, (int)i), depth + 1);
}

static int put_value(struct enc *e, json_t *j, avro_schema_t s, int depth)
{
	uint8_t *b = NULL;
	size_t n = 0, i;
	json_t *item;
	const char *key;
	int rc;

	s = skip_links(s);
	if (s == NULL)
		return fail(e, "value without a schema");
	if (depth > SW_EV_MAX_DEPTH)
		return fail(e, "nested too deep");
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		if (!json_is_null(j))
			return wrong(e, "null", j);
		return 0;
	case AVRO_BOOLEAN: {
		uint8_t t = json_is_true(j);

		if (!json_is_boolean(j))
			return wrong(e, "boolean", j);
		return put(e, &t, 1);
	}
	case AVRO_INT32:
		if (!json_is_integer(j))
			return wrong(e, "integer", j);
		if (json_integer_value(j) < INT32_MIN || json_integer_value(j) > INT32_MAX)
			return fail(e, "integer out of range for int");
		return put_long(e, (int64_t)json_integer_value(j));
	case AVRO_INT64:
		if (!json_is_integer(j))
			return wrong(e, "integer", j);
		return put_long(e, (int64_t)json_integer_value(j));
	case AVRO_FLOAT: {
		float f;
		uint32_t bits;

		if (!json_is_number(j))
			return wrong(e, "number", j);
		f = (float)json_number_value(j);
		memcpy(&bits, &f, sizeof(bits));
		return put_le(e, bits, 4);
	}
	case AVRO_DOUBLE: {
		double d;
		uint64_t bits;

		if (!json_is_number(j))
			return wrong(e, "number", j);
		d = json_number_value(j);
		memcpy(&bits, &d, sizeof(bits));
		return put_le(e, bits, 8);
	}
	case AVRO_STRING:
		if (!json_is_string(j))
			return wrong(e, "string", j);
		return put_bytes(e, json_string_value(j), json_string_length(j));
	case AVRO_BYTES:
	case AVRO_FIXED:
		if (!json_is_string(j))
			return wrong(e, "string", j);
		if (bytes_of(e, j, &b, &n) < 0)
			return -1;
		if (is_avro_fixed(s) && (int64_t)n != avro_schema_fixed_size(s)) {
			free(b);
			sw_ev_err(e->errstr, e->errlen, "%s: fixed of %lld bytes, got %zu",
				  path_of(e), (long long)avro_schema_fixed_size(s), n);
			return -1;
		}
		rc = is_avro_fixed(s) ? (n > 0 ? put(e, b, n) : 0) : put_bytes(e, b, n);
		free(b);
		return rc;
	case AVRO_ENUM: {
		int sym;

		if (!json_is_string(j))
			return wrong(e, "string", j);
		/* a symbol is a C string: one holding U+0000 matches none */
		if (strlen(json_string_value(j)) != json_string_length(j) ||
		    (sym = avro_schema_enum_get_by_name(s, json_string_value(j))) < 0) {
			sw_ev_err(e->errstr, e->errlen, "%s: \"%s\" is not a symbol of %s",
				  path_of(e), json_string_value(j), avro_schema_name(s));
			return -1;
		}
		return put_long(e, sym);
	}
	case AVRO_ARRAY:
		/* one block of all the items, then the empty block */
		if (!json_is_array(j))
			return wrong(e, "array", j);
		if (json_array_size(j) > 0 && put_long(e, (int64_t)json_array_size(j)) < 0)
			return -1;
		json_array_foreach(j, i, item) {
			size_t old = path_push(e, NULL, i);

			if (put_value(e, item, avro_schema_array_items(s), depth + 1) < 0)
				return -1;
			e->path[old] = '\0';
		}
		return put_long(e, 0);
	case AVRO_MAP:
		if (!json_is_object(j))
			return wrong(e, "object", j);
		if (json_object_size(j) > 0 && put_long(e, (int64_t)json_object_size(j)) < 0)
			return -1;
		json_object_foreach(j, key, item) {
			size_t old = path_push(e, key, 0);

			/* a key is a C string to avro-c's readers */
			if (put_bytes(e, key, strlen(key)) < 0 ||
			    put_value(e, item, avro_schema_map_values(s), depth + 1) < 0)
				return -1;
			e->path[old] = '\0';
		}
		return put_long(e, 0);
	case AVRO_RECORD:
		return put_record(e, j, s, depth);
	case AVRO_UNION:
		return put_union(e, j, s, depth);
	default:
		return fail(e, "unsupported schema type");
	}
}

int sw_ev_json_write(json_t *j, avro_schema_t s, json_t *defaults, int is_default,
		     const char *path, struct sw_ev_buf *out, char *errstr, size_t errlen)
{
	struct enc e = {.defaults = defaults,
			.is_default = is_default,
			.errstr = errstr,
			.errlen = errlen,
			.out = out};

	snprintf(e.path, sizeof(e.path), "%s", path ? path : "");
	return put_value(&e, j, s, 0);
}

void sw_event_header_init(struct sw_event_header *h, const char *type, const char *producer)
{
	memset(h, 0, sizeof(*h));
	sw_uuid_v7_str(h->event_id);
	snprintf(h->type, sizeof(h->type), "%s", type ? type : "");
	h->time_us = sw_now_us();
	snprintf(h->producer, sizeof(h->producer), "%s", producer ? producer : "");
}

static json_t *header_json(const struct sw_event_header *h)
{
	/* the struct may come from anywhere: never read past its arrays */
	return json_pack("{s:s%,s:s%,s:I,s:s%,s:s%,s:o,s:s%,s:s%}", "event_id", h->event_id,
			 strnlen(h->event_id, sizeof(h->event_id)), "type", h->type,
			 strnlen(h->type, sizeof(h->type)), "time", (json_int_t)h->time_us,
			 "tenant", h->tenant, strnlen(h->tenant, sizeof(h->tenant)), "run_id",
			 h->run_id, strnlen(h->run_id, sizeof(h->run_id)), "step_id",
			 h->step_id[0]
			     ? json_stringn(h->step_id, strnlen(h->step_id, sizeof(h->step_id)))
			     : json_null(),
			 "trace_id", h->trace_id, strnlen(h->trace_id, sizeof(h->trace_id)),
			 "producer", h->producer, strnlen(h->producer, sizeof(h->producer)));
}

/* The header checks no schema expresses: its type is the event's, and
 * event_id is a UUID. */
static int check_header(json_t *hdr, const char *type, char *errstr, size_t errlen)
{
	json_t *t = json_object_get(hdr, "type");
	json_t *id = json_object_get(hdr, "event_id");
	uint8_t uuid[16];

	/* compared by length: a string may hold U+0000 */
	if (json_is_string(t) && (json_string_length(t) != strlen(type) ||
				  memcmp(json_string_value(t), type, strlen(type)) != 0)) {
		sw_ev_err(errstr, errlen, "header.type: \"%s\" is not the event type \"%s\"",
			  json_string_value(t), type);
		return -1;
	}
	if (json_is_string(id) && (strlen(json_string_value(id)) != json_string_length(id) ||
				   sw_uuid_parse(json_string_value(id), uuid) != 0)) {
		sw_ev_err(errstr, errlen, "header.event_id: \"%s\" is not a UUID",
			  json_string_value(id));
		return -1;
	}
	return 0;
}

/* check_header of a header struct, with the same messages. */
static int check_header_struct(const struct sw_event_header *h, const char *type, char *errstr,
			       size_t errlen)
{
	size_t n = strnlen(h->type, sizeof(h->type));
	char t[sizeof(h->type) + 1], id[sizeof(h->event_id) + 1];
	uint8_t uuid[16];

	if (n != strlen(type) || memcmp(h->type, type, n) != 0) {
		memcpy(t, h->type, n);
		t[n] = '\0';
		sw_ev_err(errstr, errlen, "header.type: \"%s\" is not the event type \"%s\"", t,
			  type);
		return -1;
	}
	n = strnlen(h->event_id, sizeof(h->event_id));
	memcpy(id, h->event_id, n);
	id[n] = '\0';
	if (sw_uuid_parse(id, uuid) != 0) {
		sw_ev_err(errstr, errlen, "header.event_id: \"%s\" is not a UUID", id);
		return -1;
	}
	return 0;
}

int sw_event_encode(struct sw_event_registry *r, const char *type, const struct sw_event_header *h,
		    json_t *obj, void **out, size_t *outlen, char *errstr, size_t errlen)
{
	struct sw_ev_reader *rd = sw_ev_reader_find(r, type);
	struct sw_ev_buf buf = {0};
	struct enc e = {.errstr = errstr, .errlen = errlen, .out = &buf};
	json_t *hj = NULL;
	uint8_t prefix[SW_EV_PREFIX];
	int rc = -1;

	*out = NULL;
	*outlen = 0;
	if (rd == NULL) {
		sw_ev_err(errstr, errlen, "unknown event type \"%s\"", type ? type : "(null)");
		return -1;
	}
	if (!json_is_object(obj)) {
		sw_ev_err(errstr, errlen, "%s: the event must be a JSON object", type);
		return -1;
	}
	if (h != NULL && rd->hdr_direct) {
		/* the struct written as it is: no JSON of it */
		if (check_header_struct(h, type, errstr, errlen) < 0)
			return -1;
		e.hs = h;
	} else if (h != NULL) {
		if ((hj = header_json(h)) == NULL) {
			sw_ev_err(errstr, errlen, "header: not valid UTF-8, or out of memory");
			return -1;
		}
	}
	if (e.hs == NULL && check_header(hj != NULL ? hj : json_object_get(obj, "header"), type,
					 errstr, errlen) < 0)
		goto out;
	prefix[0] = SW_EV_MAGIC0;
	prefix[1] = SW_EV_MAGIC1;
	for (int i = 0; i < 8; i++)
		prefix[2 + i] = (uint8_t)(rd->fp >> (8 * i));
	e.defaults = rd->defaults;
	e.header = hj;
	/* the record straight into the message: no avro-c value between */
	if (put(&e, prefix, sizeof(prefix)) < 0 || put_value(&e, obj, rd->schema, 0) < 0)
		goto out;
	*out = buf.buf;
	*outlen = buf.len;
	buf.buf = NULL;
	rc = 0;
out:
	json_decref(hj);
	free(buf.buf);
	return rc;
}
