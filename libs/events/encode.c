/*
 * Encoding: JSON (the in-memory form described in sw_events.h) into an
 * avro-c generic value of the reader schema, then into a single-object
 * message. Every mismatch names the field path ("header.run_id",
 * "modes[2]").
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"
#include "events_int.h"

struct enc {
	json_t *defaults;
	int is_default; /* j is an Avro default literal */
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

static int avro_fail(struct enc *e)
{
	sw_ev_err(e->errstr, e->errlen, "%s: avro: %s", path_of(e), avro_strerror());
	return -1;
}

/* Append ".name" or "[i]" to the path; returns the old length. */
static size_t path_push(struct enc *e, const char *name, size_t idx)
{
	size_t n = strlen(e->path);

	if (name != NULL)
		snprintf(e->path + n, sizeof(e->path) - n, "%s%s", n ? "." : "", name);
	else
		snprintf(e->path + n, sizeof(e->path) - n, "[%zu]", idx);
	return n;
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

static int set_value(struct enc *e, json_t *j, avro_value_t *v, int depth);

static int set_record(struct enc *e, json_t *j, avro_value_t *v, avro_schema_t s, int depth)
{
	const char *ns = avro_schema_namespace(s), *key;
	char full[512];
	json_t *defs, *jv;
	size_t nf = avro_schema_record_size(s);

	if (!json_is_object(j))
		return wrong(e, "object", j);
	if (ns != NULL && ns[0] != '\0')
		snprintf(full, sizeof(full), "%s.%s", ns, avro_schema_name(s));
	else
		snprintf(full, sizeof(full), "%s", avro_schema_name(s));
	defs = json_object_get(e->defaults, full);
	json_object_foreach(j, key, jv) {
		if (avro_schema_record_field_get_index(s, key) < 0) {
			path_push(e, key, 0);
			return fail(e, "unknown field");
		}
	}
	for (size_t i = 0; i < nf; i++) {
		const char *name = avro_schema_record_field_name(s, (int)i);
		size_t old = path_push(e, name, 0);
		int was_default = e->is_default;
		avro_value_t child;

		jv = json_object_get(j, name);
		if (jv == NULL) {
			if ((jv = json_object_get(defs, name)) == NULL)
				return fail(e, "missing, and the field has no default");
			e->is_default = 1;
		}
		if (avro_value_get_by_index(v, i, &child, NULL) != 0)
			return avro_fail(e);
		if (set_value(e, jv, &child, depth + 1) < 0)
			return -1;
		e->is_default = was_default;
		e->path[old] = '\0';
	}
	return 0;
}

static int set_union(struct enc *e, json_t *j, avro_value_t *v, avro_schema_t s, int depth)
{
	size_t n = avro_schema_union_size(s);
	avro_value_t branch;
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
	if (avro_value_set_branch(v, (int)i, &branch) != 0)
		return avro_fail(e);
	return set_value(e, j, &branch, depth + 1);
}

static int set_value(struct enc *e, json_t *j, avro_value_t *v, int depth)
{
	avro_schema_t s = skip_links(avro_value_get_schema(v));
	uint8_t *b;
	size_t n, i;
	json_t *item;
	const char *key;
	int rc;

	if (s == NULL)
		return fail(e, "value without a schema");
	if (depth > SW_EV_MAX_DEPTH)
		return fail(e, "nested too deep");
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		if (!json_is_null(j))
			return wrong(e, "null", j);
		rc = avro_value_set_null(v);
		break;
	case AVRO_BOOLEAN:
		if (!json_is_boolean(j))
			return wrong(e, "boolean", j);
		rc = avro_value_set_boolean(v, json_is_true(j));
		break;
	case AVRO_INT32:
		if (!json_is_integer(j))
			return wrong(e, "integer", j);
		if (json_integer_value(j) < INT32_MIN || json_integer_value(j) > INT32_MAX)
			return fail(e, "integer out of range for int");
		rc = avro_value_set_int(v, (int32_t)json_integer_value(j));
		break;
	case AVRO_INT64:
		if (!json_is_integer(j))
			return wrong(e, "integer", j);
		rc = avro_value_set_long(v, (int64_t)json_integer_value(j));
		break;
	case AVRO_FLOAT:
		if (!json_is_number(j))
			return wrong(e, "number", j);
		rc = avro_value_set_float(v, (float)json_number_value(j));
		break;
	case AVRO_DOUBLE:
		if (!json_is_number(j))
			return wrong(e, "number", j);
		rc = avro_value_set_double(v, json_number_value(j));
		break;
	case AVRO_STRING:
		if (!json_is_string(j))
			return wrong(e, "string", j);
		rc = avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1);
		break;
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
		rc = is_avro_fixed(s) ? avro_value_set_fixed(v, b, n)
				      : avro_value_set_bytes(v, b, n);
		free(b);
		break;
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
		rc = avro_value_set_enum(v, sym);
		break;
	}
	case AVRO_ARRAY:
		if (!json_is_array(j))
			return wrong(e, "array", j);
		json_array_foreach(j, i, item) {
			size_t old = path_push(e, NULL, i);
			avro_value_t child;

			if (avro_value_append(v, &child, NULL) != 0)
				return avro_fail(e);
			if (set_value(e, item, &child, depth + 1) < 0)
				return -1;
			e->path[old] = '\0';
		}
		return 0;
	case AVRO_MAP:
		if (!json_is_object(j))
			return wrong(e, "object", j);
		json_object_foreach(j, key, item) {
			size_t old = path_push(e, key, 0);
			avro_value_t child;

			if (avro_value_add(v, key, &child, NULL, NULL) != 0)
				return avro_fail(e);
			if (set_value(e, item, &child, depth + 1) < 0)
				return -1;
			e->path[old] = '\0';
		}
		return 0;
	case AVRO_RECORD:
		return set_record(e, j, v, s, depth);
	case AVRO_UNION:
		return set_union(e, j, v, s, depth);
	default:
		return fail(e, "unsupported schema type");
	}
	return rc != 0 ? avro_fail(e) : 0;
}

int sw_ev_json_to_value(json_t *j, avro_value_t *dst, json_t *defaults, int is_default,
			const char *path, char *errstr, size_t errlen)
{
	struct enc e = {
	    .defaults = defaults, .is_default = is_default, .errstr = errstr, .errlen = errlen};

	snprintf(e.path, sizeof(e.path), "%s", path ? path : "");
	return set_value(&e, j, dst, 0);
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

int sw_event_encode(struct sw_event_registry *r, const char *type, const struct sw_event_header *h,
		    json_t *obj, void **out, size_t *outlen, char *errstr, size_t errlen)
{
	struct sw_ev_reader *rd = sw_ev_reader_find(r, type);
	avro_writer_t wr = NULL;
	avro_value_t v = {0};
	json_t *work = NULL;
	uint8_t *buf = NULL;
	size_t size;
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
	if (h != NULL) {
		json_t *hj = header_json(h);

		work = json_copy(obj);
		if (hj == NULL || work == NULL || json_object_set_new(work, "header", hj) < 0) {
			sw_ev_err(errstr, errlen, "header: not valid UTF-8, or out of memory");
			goto out;
		}
	} else {
		work = json_incref(obj);
	}
	if (check_header(json_object_get(work, "header"), type, errstr, errlen) < 0)
		goto out;
	if (avro_generic_value_new(rd->iface, &v) != 0) {
		sw_ev_err(errstr, errlen, "avro: %s", avro_strerror());
		goto out;
	}
	if (sw_ev_json_to_value(work, &v, rd->defaults, 0, "", errstr, errlen) < 0)
		goto out;
	if (avro_value_sizeof(&v, &size) != 0) {
		sw_ev_err(errstr, errlen, "avro: %s", avro_strerror());
		goto out;
	}
	if ((buf = malloc(SW_EV_PREFIX + size)) == NULL) {
		sw_ev_err(errstr, errlen, "out of memory");
		goto out;
	}
	buf[0] = SW_EV_MAGIC0;
	buf[1] = SW_EV_MAGIC1;
	for (int i = 0; i < 8; i++)
		buf[2 + i] = (uint8_t)(rd->fp >> (8 * i));
	wr = avro_writer_memory((const char *)buf + SW_EV_PREFIX, (int64_t)size);
	if (wr == NULL || avro_value_write(wr, &v) != 0 || avro_writer_tell(wr) != (int64_t)size) {
		sw_ev_err(errstr, errlen, "avro write: %s", avro_strerror());
		goto out;
	}
	*out = buf;
	*outlen = SW_EV_PREFIX + size;
	buf = NULL;
	rc = 0;
out:
	if (wr != NULL)
		avro_writer_free(wr);
	if (v.self != NULL)
		avro_value_decref(&v);
	json_decref(work);
	free(buf);
	return rc;
}
