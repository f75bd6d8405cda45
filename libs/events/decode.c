/*
 * Decoding single-object messages.
 *
 * avro-c trusts the lengths it reads: a string or bytes length prefix is
 * allocated before it is checked against the input, an array block count
 * of items that take no bytes (null, empty records) loops and allocates
 * for as long as the count says, and a tenth varint byte shifts into the
 * sign bit. So before avro-c sees a body, a small walker checks it against
 * the writer schema with every length bounded by the bytes that remain,
 * a budget on the number of items, a depth limit, and the rule that the
 * body is consumed exactly. Only a body that passes is handed to avro-c,
 * whose reading is then bounded by the size of the message.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "events_int.h"
#include "sw_core.h"

struct walk {
	const uint8_t *p;
	size_t len;
	size_t pos;
	size_t budget; /* array and map items we still accept */
	char *errstr;
	size_t errlen;
};

static int walk_fail(struct walk *w, const char *what)
{
	sw_ev_err(w->errstr, w->errlen, "body: %s at byte %zu", what, w->pos);
	return -1;
}

/* A zig-zag varint of at most 10 bytes, the tenth only 0 or 1. */
static int walk_long(struct walk *w, int64_t *out)
{
	uint64_t v = 0;

	for (int i = 0; i < 10; i++) {
		uint8_t b;

		if (w->pos >= w->len)
			return walk_fail(w, "truncated varint");
		b = w->p[w->pos++];
		if (i == 9 && b > 1)
			return walk_fail(w, "varint overflows 64 bits");
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
			return 0;
		}
	}
	return walk_fail(w, "varint longer than 10 bytes");
}

static int walk_skip(struct walk *w, int64_t n, const char *what)
{
	if (n < 0)
		return walk_fail(w, what);
	if ((uint64_t)n > w->len - w->pos) {
		sw_ev_err(w->errstr, w->errlen, "body: %s of %lld bytes at byte %zu, %zu left",
			  what, (long long)n, w->pos, w->len - w->pos);
		return -1;
	}
	w->pos += (size_t)n;
	return 0;
}

static int walk_value(struct walk *w, avro_schema_t s, int depth);

/* Array and map blocks: count, or -count and a byte size, then items. */
static int walk_blocks(struct walk *w, avro_schema_t item, int is_map, int depth)
{
	for (;;) {
		int64_t count, size = -1;
		size_t start;

		if (walk_long(w, &count) < 0)
			return -1;
		if (count == 0)
			return 0;
		if (count < 0) {
			if (count == INT64_MIN)
				return walk_fail(w, "block count out of range");
			count = -count;
			if (walk_long(w, &size) < 0)
				return -1;
			if (size < 0 || (uint64_t)size > w->len - w->pos)
				return walk_fail(w, "block size out of range");
		}
		start = w->pos;
		for (int64_t i = 0; i < count; i++) {
			int64_t klen;

			if (w->budget == 0)
				return walk_fail(w, "too many array or map items");
			w->budget--;
			if (is_map) {
				if (walk_long(w, &klen) < 0 ||
				    walk_skip(w, klen, "map key length") < 0)
					return -1;
			}
			if (walk_value(w, item, depth + 1) < 0)
				return -1;
		}
		if (size >= 0 && w->pos - start != (size_t)size)
			return walk_fail(w, "block size does not match its items");
	}
}

static int walk_value(struct walk *w, avro_schema_t s, int depth)
{
	int64_t v;

	if (depth > SW_EV_MAX_DEPTH)
		return walk_fail(w, "value nested too deep");
	if (s == NULL)
		return walk_fail(w, "no schema");
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return 0;
	case AVRO_BOOLEAN:
		if (w->pos >= w->len)
			return walk_fail(w, "truncated boolean");
		if (w->p[w->pos] > 1)
			return walk_fail(w, "boolean not 0 or 1");
		w->pos++;
		return 0;
	case AVRO_INT32:
		if (walk_long(w, &v) < 0)
			return -1;
		if (v < INT32_MIN || v > INT32_MAX)
			return walk_fail(w, "int out of range");
		return 0;
	case AVRO_INT64:
		return walk_long(w, &v);
	case AVRO_FLOAT:
		return walk_skip(w, 4, "float");
	case AVRO_DOUBLE:
		return walk_skip(w, 8, "double");
	case AVRO_STRING:
	case AVRO_BYTES:
		if (walk_long(w, &v) < 0)
			return -1;
		return walk_skip(w, v, is_avro_string(s) ? "string length" : "bytes length");
	case AVRO_FIXED:
		return walk_skip(w, avro_schema_fixed_size(s), "fixed");
	case AVRO_ENUM:
		if (walk_long(w, &v) < 0)
			return -1;
		if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
			return walk_fail(w, "enum index out of range");
		return 0;
	case AVRO_ARRAY:
		return walk_blocks(w, avro_schema_array_items(s), 0, depth);
	case AVRO_MAP:
		return walk_blocks(w, avro_schema_map_values(s), 1, depth);
	case AVRO_RECORD:
		for (size_t i = 0; i < avro_schema_record_size(s); i++)
			if (walk_value(w, avro_schema_record_field_get_by_index(s, (int)i),
				       depth + 1) < 0)
				return -1;
		return 0;
	case AVRO_UNION:
		if (walk_long(w, &v) < 0)
			return -1;
		if (v < 0 || (uint64_t)v >= avro_schema_union_size(s))
			return walk_fail(w, "union branch out of range");
		return walk_value(w, avro_schema_union_branch(s, (int)v), depth + 1);
	case AVRO_LINK:
		return walk_value(w, avro_schema_link_target(s), depth + 1);
	default:
		return walk_fail(w, "unsupported schema type");
	}
}

int sw_ev_check(struct sw_event_registry *r, const void *buf, size_t len, struct sw_ev_writer **wp,
		const uint8_t **body, size_t *bodylen, char *errstr, size_t errlen)
{
	const uint8_t *p = buf;
	struct walk w;
	uint64_t fp = 0;

	if (buf == NULL || len < SW_EV_PREFIX) {
		sw_ev_err(errstr, errlen, "truncated: %zu bytes, a message has at least %d", len,
			  SW_EV_PREFIX);
		return -1;
	}
	if (p[0] != SW_EV_MAGIC0 || p[1] != SW_EV_MAGIC1) {
		sw_ev_err(errstr, errlen, "bad magic %02x %02x (want c3 01)", p[0], p[1]);
		return -1;
	}
	for (int i = 0; i < 8; i++)
		fp |= (uint64_t)p[2 + i] << (8 * i);
	if ((*wp = sw_ev_writer_find(r, fp)) == NULL) {
		sw_ev_err(errstr, errlen, "unknown schema fingerprint %016llx",
			  (unsigned long long)fp);
		return -1;
	}
	w = (struct walk){
	    .p = p + SW_EV_PREFIX,
	    .len = len - SW_EV_PREFIX,
	    .budget = len + 1024,
	    .errstr = errstr,
	    .errlen = errlen,
	};
	if (walk_value(&w, (*wp)->schema, 0) < 0)
		return -1;
	if (w.pos != w.len) {
		sw_ev_err(errstr, errlen, "body: %zu bytes left over after the %s record",
			  w.len - w.pos, (*wp)->reader->fullname);
		return -1;
	}
	*body = w.p;
	*bodylen = w.len;
	return 0;
}

static json_t *real_json(double d, char *errstr, size_t errlen)
{
	if (!isfinite(d)) {
		sw_ev_err(errstr, errlen, "a NaN or infinite number has no JSON form");
		return NULL;
	}
	return json_real(d);
}

json_t *sw_ev_value_to_json(avro_value_t *v, int depth, char *errstr, size_t errlen)
{
	avro_schema_t s = avro_value_get_schema(v);
	json_t *out = NULL, *c;
	const void *b;
	const char *str, *name;
	size_t n, i;
	int32_t i32;
	int64_t i64;
	float f;
	double d;
	int sym;

	for (int k = 0; s != NULL && is_avro_link(s) && k < SW_EV_MAX_DEPTH; k++)
		s = avro_schema_link_target(s);
	if (depth > SW_EV_MAX_DEPTH || s == NULL) {
		sw_ev_err(errstr, errlen, "value nested too deep");
		return NULL;
	}
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return json_null();
	case AVRO_BOOLEAN:
		if (avro_value_get_boolean(v, &sym) != 0)
			goto avro;
		return json_boolean(sym);
	case AVRO_INT32:
		if (avro_value_get_int(v, &i32) != 0)
			goto avro;
		return json_integer(i32);
	case AVRO_INT64:
		if (avro_value_get_long(v, &i64) != 0)
			goto avro;
		return json_integer(i64);
	case AVRO_FLOAT:
		if (avro_value_get_float(v, &f) != 0)
			goto avro;
		return real_json(f, errstr, errlen);
	case AVRO_DOUBLE:
		if (avro_value_get_double(v, &d) != 0)
			goto avro;
		return real_json(d, errstr, errlen);
	case AVRO_STRING:
		if (avro_value_get_string(v, &str, &n) != 0)
			goto avro;
		/* avro-c counts the NUL it appends */
		if ((out = json_stringn(str, n ? n - 1 : 0)) == NULL)
			sw_ev_err(errstr, errlen, "string is not valid UTF-8");
		return out;
	case AVRO_BYTES:
	case AVRO_FIXED: {
		char *h;

		if ((is_avro_bytes(s) ? avro_value_get_bytes(v, &b, &n)
				      : avro_value_get_fixed(v, &b, &n)) != 0)
			goto avro;
		if ((h = sw_hex_dup(b, n)) == NULL)
			goto oom;
		out = json_string(h);
		free(h);
		return out;
	}
	case AVRO_ENUM:
		if (avro_value_get_enum(v, &sym) != 0)
			goto avro;
		if (sym < 0 || sym >= avro_schema_enum_number_of_symbols(s)) {
			sw_ev_err(errstr, errlen, "enum %s: symbol %d unknown to this reader",
				  avro_schema_name(s), sym);
			return NULL;
		}
		return json_string(avro_schema_enum_get(s, sym));
	case AVRO_ARRAY:
	case AVRO_MAP:
	case AVRO_RECORD:
		if (avro_value_get_size(v, &n) != 0)
			goto avro;
		if ((out = is_avro_array(s) ? json_array() : json_object()) == NULL)
			goto oom;
		for (i = 0; i < n; i++) {
			avro_value_t child;

			name = NULL;
			if (avro_value_get_by_index(v, i, &child, &name) != 0) {
				json_decref(out);
				goto avro;
			}
			if ((c = sw_ev_value_to_json(&child, depth + 1, errstr, errlen)) == NULL) {
				json_decref(out);
				return NULL;
			}
			if ((is_avro_array(s)
				 ? json_array_append_new(out, c)
				 : json_object_set_new(out, name ? name : "", c)) < 0) {
				json_decref(out);
				sw_ev_err(errstr, errlen,
					  "map key not valid UTF-8, or out of memory");
				return NULL;
			}
		}
		return out;
	case AVRO_UNION: {
		avro_value_t branch;

		if (avro_value_get_current_branch(v, &branch) != 0)
			goto avro;
		return sw_ev_value_to_json(&branch, depth + 1, errstr, errlen);
	}
	default:
		sw_ev_err(errstr, errlen, "unsupported schema type");
		return NULL;
	}
avro:
	sw_ev_err(errstr, errlen, "avro: %s", avro_strerror());
	return NULL;
oom:
	sw_ev_err(errstr, errlen, "out of memory");
	return NULL;
}

/* Read a checked body into a new generic value of iface, through
 * resolver when the writer differs; *dst must be decref'd by the caller
 * when this returns 0. */
static int read_body(const uint8_t *body, size_t len, avro_value_iface_t *iface,
		     avro_value_iface_t *resolver, avro_value_t *dst, char *errstr, size_t errlen)
{
	avro_reader_t rd = avro_reader_memory((const char *)body, (int64_t)len);
	avro_value_t wv = {0};
	int rc = -1;

	dst->self = NULL;
	if (rd == NULL || avro_generic_value_new(iface, dst) != 0)
		goto avro;
	if (resolver != NULL) {
		if (avro_resolved_writer_new_value(resolver, &wv) != 0)
			goto avro;
		avro_resolved_writer_set_dest(&wv, dst);
		if (avro_value_read(rd, &wv) != 0)
			goto avro;
	} else if (avro_value_read(rd, dst) != 0) {
		goto avro;
	}
	rc = 0;
	goto out;
avro:
	sw_ev_err(errstr, errlen, "avro read: %s", avro_strerror());
out:
	if (wv.self != NULL)
		avro_value_decref(&wv);
	if (rc < 0 && dst->self != NULL) {
		avro_value_decref(dst);
		dst->self = NULL;
	}
	if (rd != NULL)
		avro_reader_free(rd);
	return rc;
}

/* The schema says what type an event is; a header that says otherwise is
 * a producer bug we do not pass on. */
static int check_type(json_t *hdr, const struct sw_ev_writer *w, char *errstr, size_t errlen)
{
	const char *t = json_string_value(json_object_get(hdr, "type"));

	if (t == NULL || strcmp(t, w->reader->type) != 0) {
		sw_ev_err(errstr, errlen, "header.type \"%s\" is not the schema's type \"%s\"",
			  t ? t : "", w->reader->type);
		return -1;
	}
	return 0;
}

json_t *sw_event_decode(struct sw_event_registry *r, const void *buf, size_t len, char *errstr,
			size_t errlen)
{
	struct sw_ev_writer *w;
	const uint8_t *body;
	size_t bodylen;
	avro_value_t v;
	json_t *out;

	if (sw_ev_check(r, buf, len, &w, &body, &bodylen, errstr, errlen) < 0)
		return NULL;
	if (read_body(body, bodylen, w->target_iface, w->resolver, &v, errstr, errlen) < 0)
		return NULL;
	out = sw_ev_value_to_json(&v, 0, errstr, errlen);
	avro_value_decref(&v);
	if (out == NULL)
		return NULL;
	if ((w->fill != NULL && sw_ev_fill_apply(out, w->fill, errstr, errlen) < 0) ||
	    check_type(json_object_get(out, "header"), w, errstr, errlen) < 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* Copy a decoded header string field into a fixed buffer; too long is an
 * error, not a truncation. null is the empty string. */
static int hdr_str(json_t *hdr, const char *name, char *dst, size_t cap, char *errstr,
		   size_t errlen)
{
	json_t *j = json_object_get(hdr, name);

	if (json_is_null(j)) {
		dst[0] = '\0';
		return 0;
	}
	if (!json_is_string(j)) {
		sw_ev_err(errstr, errlen, "header.%s: not a string", name);
		return -1;
	}
	if (json_string_length(j) >= cap ||
	    strlen(json_string_value(j)) != json_string_length(j)) {
		sw_ev_err(errstr, errlen, "header.%s: longer than %zu bytes or holds a NUL", name,
			  cap - 1);
		return -1;
	}
	memcpy(dst, json_string_value(j), json_string_length(j) + 1);
	return 0;
}

/* A string of the header read in place: its bytes in *s, *n. */
static int direct_str(struct walk *k, const char **s, size_t *n)
{
	int64_t len;

	if (walk_long(k, &len) < 0)
		return -1;
	*s = (const char *)k->p + k->pos;
	if (walk_skip(k, len, "string length") < 0)
		return -1;
	*n = (size_t)len;
	if (!sw_utf8_valid(*s, *n)) {
		sw_ev_err(k->errstr, k->errlen, "string is not valid UTF-8");
		return -1;
	}
	return 0;
}

/* As hdr_str, for a string read in place. */
static int direct_copy(const char *s, size_t n, const char *name, char *dst, size_t cap,
		       char *errstr, size_t errlen)
{
	if (n >= cap || memchr(s, '\0', n) != NULL) {
		sw_ev_err(errstr, errlen, "header.%s: longer than %zu bytes or holds a NUL", name,
			  cap - 1);
		return -1;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

/*
 * The header of a body that sw_ev_check has walked, read in place: for a
 * writer whose first field is today's sagewai.Header (w->hdr_direct), the
 * header is the body's first bytes, its fields in the Header's order. The
 * same checks and texts as the general path below, without building an
 * avro-c value and its JSON for every message every service consumes.
 */
static int header_direct(const struct sw_ev_writer *w, const uint8_t *body, size_t bodylen,
			 struct sw_event_header *h, char *errstr, size_t errlen)
{
	static const char *const names[] = {"event_id", "type",	    "tenant",  "run_id",
					    "step_id",	"trace_id", "producer"};
	struct walk k = {body, bodylen, 0, 0, errstr, errlen};
	char *dst[] = {h->event_id, h->type,	 h->tenant,  h->run_id,
		       h->step_id,  h->trace_id, h->producer};
	size_t cap[] = {sizeof(h->event_id), sizeof(h->type),	 sizeof(h->tenant),
			sizeof(h->run_id),   sizeof(h->step_id), sizeof(h->trace_id),
			sizeof(h->producer)};
	const char *s[7];
	size_t n[7], i;
	int64_t branch;

	/* event_id, type, time, tenant, run_id, step_id (null | string),
	 * trace_id, producer */
	if (direct_str(&k, &s[0], &n[0]) < 0 || direct_str(&k, &s[1], &n[1]) < 0 ||
	    walk_long(&k, &h->time_us) < 0 || direct_str(&k, &s[2], &n[2]) < 0 ||
	    direct_str(&k, &s[3], &n[3]) < 0 || walk_long(&k, &branch) < 0)
		return -1;
	if (branch == 1) {
		if (direct_str(&k, &s[4], &n[4]) < 0)
			return -1;
	} else if (branch == 0) {
		s[4] = "";
		n[4] = 0;
	} else {
		return walk_fail(&k, "union branch out of range");
	}
	if (direct_str(&k, &s[5], &n[5]) < 0 || direct_str(&k, &s[6], &n[6]) < 0)
		return -1;
	/* the type as a C string (to a NUL it may hold: direct_copy refuses it) */
	i = strnlen(s[1], n[1]);
	if (i != strlen(w->reader->type) || memcmp(s[1], w->reader->type, i) != 0) {
		sw_ev_err(errstr, errlen, "header.type \"%.*s\" is not the schema's type \"%s\"",
			  i > INT_MAX ? INT_MAX : (int)i, s[1], w->reader->type);
		return -1;
	}
	for (i = 0; i < 7; i++)
		if (direct_copy(s[i], n[i], names[i], dst[i], cap[i], errstr, errlen) < 0)
			return -1;
	return 0;
}

int sw_event_decode_header(struct sw_event_registry *r, const void *buf, size_t len,
			   struct sw_event_header *h, char *errstr, size_t errlen)
{
	struct sw_ev_writer *w;
	const uint8_t *body;
	size_t bodylen;

	memset(h, 0, sizeof(*h));
	if (sw_ev_check(r, buf, len, &w, &body, &bodylen, errstr, errlen) < 0)
		return -1;
	if (!w->hdr_direct)
		return sw_ev_header_general(w, body, bodylen, h, errstr, errlen);
	if (header_direct(w, body, bodylen, h, errstr, errlen) < 0) {
		memset(h, 0, sizeof(*h));
		return -1;
	}
	return 0;
}

int sw_ev_header_general(const struct sw_ev_writer *w, const uint8_t *body, size_t bodylen,
			 struct sw_event_header *h, char *errstr, size_t errlen)
{
	avro_value_t v;
	json_t *rec = NULL, *hdr, *t;
	int rc = -1;

	memset(h, 0, sizeof(*h));
	if (read_body(body, bodylen, w->hdr_iface, w->hdr_resolver, &v, errstr, errlen) < 0)
		return -1;
	rec = sw_ev_value_to_json(&v, 0, errstr, errlen);
	avro_value_decref(&v);
	if (rec == NULL)
		goto out;
	hdr = json_object_get(rec, "header");
	t = json_object_get(json_object_get(w->fill, "sub"), "header");
	if (t != NULL && sw_ev_fill_apply(hdr, t, errstr, errlen) < 0)
		goto out;
	if (check_type(hdr, w, errstr, errlen) < 0)
		goto out;
	t = json_object_get(hdr, "time");
	if (!json_is_integer(t)) {
		sw_ev_err(errstr, errlen, "header.time: not an integer");
		goto out;
	}
	h->time_us = json_integer_value(t);
	if (hdr_str(hdr, "event_id", h->event_id, sizeof(h->event_id), errstr, errlen) < 0 ||
	    hdr_str(hdr, "type", h->type, sizeof(h->type), errstr, errlen) < 0 ||
	    hdr_str(hdr, "tenant", h->tenant, sizeof(h->tenant), errstr, errlen) < 0 ||
	    hdr_str(hdr, "run_id", h->run_id, sizeof(h->run_id), errstr, errlen) < 0 ||
	    hdr_str(hdr, "step_id", h->step_id, sizeof(h->step_id), errstr, errlen) < 0 ||
	    hdr_str(hdr, "trace_id", h->trace_id, sizeof(h->trace_id), errstr, errlen) < 0 ||
	    hdr_str(hdr, "producer", h->producer, sizeof(h->producer), errstr, errlen) < 0)
		goto out;
	rc = 0;
out:
	json_decref(rec);
	if (rc < 0)
		memset(h, 0, sizeof(*h));
	return rc;
}
