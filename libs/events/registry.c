/*
 * The schema registry: the .avsc files compiled in from schemas/ (the
 * readers) and the writer schemas messages may carry.
 *
 * Every event schema refers to sagewai.Header by name; we substitute the
 * Header definition at its first use so that avro-c, which has no notion
 * of schema files, parses a self-contained schema, and so that the
 * fingerprint is that of the schema other Avro libraries build from the
 * same files.
 *
 * A writer schema other than its reader is resolved with avro-c's
 * resolved writer. avro-c cannot default a reader field the writer lacks,
 * so for such a writer we read into a projection of the reader without
 * those fields (records nested directly as field types are projected
 * too) and add the reader's defaults to the decoded JSON afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "events_int.h"

static avro_schema_t skip_links(avro_schema_t s)
{
	for (int i = 0; s != NULL && is_avro_link(s) && i < SW_EV_MAX_DEPTH; i++)
		s = avro_schema_link_target(s);
	return s;
}

/* Full name of a named avro-c schema, malloc'd. */
static char *avro_fullname(avro_schema_t s)
{
	const char *ns = avro_schema_namespace(s);
	const char *n = avro_schema_name(s);
	char *out;

	if (n == NULL)
		return NULL;
	if (ns == NULL || ns[0] == '\0')
		return strdup(n);
	if (asprintf(&out, "%s.%s", ns, n) < 0)
		return NULL;
	return out;
}

/* Replace the first reference to sagewai.Header under node (in document
 * order, as the canonical form visits it) with a copy of header. */
static int expand(json_t *node, json_t *header, int *done, int depth)
{
	static const char *const keys[] = {"type", "items", "values"};

	if (*done || depth > SW_EV_MAX_DEPTH)
		return 0;
	if (json_is_array(node)) {
		size_t i;
		json_t *b;

		json_array_foreach(node, i, b) {
			if (json_is_string(b) &&
			    strcmp(json_string_value(b), SW_EV_HEADER_NAME) == 0) {
				*done = 1;
				return json_array_set_new(node, i, json_deep_copy(header));
			}
			if (expand(b, header, done, depth + 1) < 0)
				return -1;
			if (*done)
				return 0;
		}
		return 0;
	}
	if (!json_is_object(node))
		return 0;
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		json_t *c = json_object_get(node, keys[k]);

		if (c == NULL)
			continue;
		if (json_is_string(c) && strcmp(json_string_value(c), SW_EV_HEADER_NAME) == 0) {
			*done = 1;
			return json_object_set_new(node, keys[k], json_deep_copy(header));
		}
		if (expand(c, header, done, depth + 1) < 0)
			return -1;
		if (*done)
			return 0;
	}
	return expand(json_object_get(node, "fields"), header, done, depth + 1);
}

/* Record every record's field defaults: table[fullname][field] = default. */
static int collect_defaults(json_t *node, const char *ns, json_t *table, int depth)
{
	json_t *t;
	size_t i;
	json_t *c;

	if (depth > SW_EV_MAX_DEPTH)
		return -1;
	if (json_is_array(node)) {
		json_array_foreach(node, i, c)
			if (collect_defaults(c, ns, table, depth + 1) < 0)
				return -1;
		return 0;
	}
	if (!json_is_object(node))
		return 0;
	t = json_object_get(node, "type");
	if (json_is_object(t) || json_is_array(t))
		return collect_defaults(t, ns, table, depth + 1);
	if (!json_is_string(t))
		return 0;
	if (strcmp(json_string_value(t), "array") == 0)
		return collect_defaults(json_object_get(node, "items"), ns, table, depth + 1);
	if (strcmp(json_string_value(t), "map") == 0)
		return collect_defaults(json_object_get(node, "values"), ns, table, depth + 1);
	if (strcmp(json_string_value(t), "record") == 0 ||
	    strcmp(json_string_value(t), "error") == 0) {
		char *full, *newns;
		json_t *d = json_object();
		int rc = 0;

		if (d == NULL || sw_ev_names(node, ns, &full, &newns) < 0) {
			json_decref(d);
			return -1;
		}
		json_array_foreach(json_object_get(node, "fields"), i, c) {
			json_t *def = json_object_get(c, "default");
			json_t *fname = json_object_get(c, "name");

			if (def != NULL && json_is_string(fname))
				json_object_set(d, json_string_value(fname), def);
			if (collect_defaults(json_object_get(c, "type"), newns, table, depth + 1) <
			    0)
				rc = -1;
		}
		if (json_object_get(table, full) == NULL)
			json_object_set(table, full, d);
		json_decref(d);
		free(full);
		free(newns);
		return rc;
	}
	return 0;
}

/* Parse an event .avsc: expand the header, check the shape, compute the
 * canonical form and fingerprint. Fills everything in rd but iface. */
static int parse_event(struct sw_event_registry *r, const char *text, size_t len,
		       struct sw_ev_reader *rd, char *errstr, size_t errlen)
{
	json_error_t jerr;
	json_t *st;
	avro_schema_t f0;
	int done = 0;
	char *hname = NULL;

	memset(rd, 0, sizeof(*rd));
	rd->json = json_loadb(text, len, 0, &jerr);
	if (rd->json == NULL) {
		sw_ev_err(errstr, errlen, "not JSON: line %d: %s", jerr.line, jerr.text);
		goto fail;
	}
	st = json_object_get(rd->json, "sagewai.type");
	if (!json_is_string(st)) {
		sw_ev_err(errstr, errlen, "no string \"sagewai.type\" property");
		goto fail;
	}
	if (expand(rd->json, r->header, &done, 0) < 0) {
		sw_ev_err(errstr, errlen, "out of memory expanding %s", SW_EV_HEADER_NAME);
		goto fail;
	}
	rd->type = strdup(json_string_value(st));
	rd->text = json_dumps(rd->json, JSON_COMPACT);
	rd->defaults = json_object();
	if (rd->type == NULL || rd->text == NULL || rd->defaults == NULL) {
		sw_ev_err(errstr, errlen, "out of memory");
		goto fail;
	}
	if (avro_schema_from_json_length(rd->text, strlen(rd->text), &rd->schema) != 0) {
		sw_ev_err(errstr, errlen, "avro: %s", avro_strerror());
		rd->schema = NULL;
		goto fail;
	}
	if (!is_avro_record(rd->schema) || avro_schema_record_size(rd->schema) == 0 ||
	    strcmp(avro_schema_record_field_name(rd->schema, 0), "header") != 0) {
		sw_ev_err(errstr, errlen, "not a record whose first field is \"header\"");
		goto fail;
	}
	f0 = skip_links(avro_schema_record_field_get_by_index(rd->schema, 0));
	if (f0 == NULL || !is_avro_record(f0) || (hname = avro_fullname(f0)) == NULL ||
	    strcmp(hname, SW_EV_HEADER_NAME) != 0) {
		sw_ev_err(errstr, errlen, "field \"header\" is not a %s", SW_EV_HEADER_NAME);
		goto fail;
	}
	free(hname);
	hname = NULL;
	if ((rd->fullname = avro_fullname(rd->schema)) == NULL) {
		sw_ev_err(errstr, errlen, "out of memory");
		goto fail;
	}
	if ((rd->canonical = sw_ev_canonical_json(rd->json, errstr, errlen)) == NULL)
		goto fail;
	rd->fp = sw_avro_crc64(rd->canonical, strlen(rd->canonical));
	if (collect_defaults(rd->json, NULL, rd->defaults, 0) < 0) {
		sw_ev_err(errstr, errlen, "cannot collect field defaults");
		goto fail;
	}
	return 0;
fail:
	free(hname);
	return -1;
}

static void reader_free(struct sw_ev_reader *rd)
{
	free(rd->type);
	free(rd->fullname);
	free(rd->text);
	free(rd->canonical);
	json_decref(rd->json);
	json_decref(rd->defaults);
	if (rd->iface != NULL)
		avro_value_iface_decref(rd->iface);
	if (rd->schema != NULL)
		avro_schema_decref(rd->schema);
	memset(rd, 0, sizeof(*rd));
}

static void writer_free(struct sw_ev_writer *w)
{
	if (w->hdr_resolver != NULL)
		avro_value_iface_decref(w->hdr_resolver);
	if (w->hdr_iface != NULL)
		avro_value_iface_decref(w->hdr_iface);
	if (w->hdr_schema != NULL)
		avro_schema_decref(w->hdr_schema);
	if (w->resolver != NULL)
		avro_value_iface_decref(w->resolver);
	if (w->target_iface != NULL)
		avro_value_iface_decref(w->target_iface);
	if (w->target != NULL)
		avro_schema_decref(w->target);
	if (w->schema != NULL)
		avro_schema_decref(w->schema);
	json_decref(w->fill);
	memset(w, 0, sizeof(*w));
}

/* The JSON form of a reader field's default: encoded as the field's
 * schema and read back by avro-c, so bytes defaults become hex and so on. */
static json_t *default_json(struct sw_ev_reader *rd, avro_schema_t fs, json_t *def,
			    const char *path, char *errstr, size_t errlen)
{
	avro_value_iface_t *iface = NULL;
	avro_reader_t rdr = NULL;
	struct sw_ev_buf buf = {0};
	avro_value_t v = {0};
	json_t *out = NULL;

	if (sw_ev_json_write(def, fs, rd->defaults, 1, path, &buf, errstr, errlen) < 0)
		goto out;
	if ((iface = avro_generic_class_from_schema(fs)) == NULL ||
	    avro_generic_value_new(iface, &v) != 0 ||
	    (rdr = avro_reader_memory(buf.buf != NULL ? (const char *)buf.buf : "",
				      (int64_t)buf.len)) == NULL ||
	    avro_value_read(rdr, &v) != 0) {
		sw_ev_err(errstr, errlen, "%s: avro: %s", path, avro_strerror());
		goto out;
	}
	out = sw_ev_value_to_json(&v, 0, errstr, errlen);
out:
	if (rdr != NULL)
		avro_reader_free(rdr);
	if (v.self != NULL)
		avro_value_decref(&v);
	if (iface != NULL)
		avro_value_iface_decref(iface);
	free(buf.buf);
	return out;
}

/* Project reader record rj (avro-c: rs) onto writer record ws: a copy of
 * rj without the fields ws lacks. *fill gets {"set": {field: default},
 * "sub": {field: fill}, "order": [reader field names]} or NULL when
 * nothing was left out. */
static json_t *project(struct sw_ev_reader *rd, json_t *rj, avro_schema_t rs, avro_schema_t ws,
		       const char *path, json_t **fill, int depth, char *errstr, size_t errlen)
{
	json_t *out = json_copy(rj);
	json_t *fields = json_array();
	json_t *f = json_pack("{s:{},s:{},s:[]}", "set", "sub", "order");
	json_t *fj;
	size_t i;
	int any = 0;

	*fill = NULL;
	if (out == NULL || fields == NULL || f == NULL) {
		sw_ev_err(errstr, errlen, "out of memory");
		goto fail;
	}
	if (depth > SW_EV_MAX_DEPTH) {
		sw_ev_err(errstr, errlen, "%s: nested too deep", path);
		goto fail;
	}
	json_array_foreach(json_object_get(rj, "fields"), i, fj) {
		const char *name = json_string_value(json_object_get(fj, "name"));
		json_t *ft = json_object_get(fj, "type");
		avro_schema_t rfs, wfs;
		char sub[512];
		int wi;

		if (name == NULL)
			goto fail;
		snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", name);
		json_array_append_new(json_object_get(f, "order"), json_string(name));
		rfs = avro_schema_record_field_get_by_index(rs, (int)i);
		wi = avro_schema_record_field_get_index(ws, name);
		if (wi < 0) {
			json_t *def = json_object_get(fj, "default"), *conv;

			if (def == NULL) {
				sw_ev_err(
				    errstr, errlen,
				    "%s: reader field has no default and the writer lacks it",
				    sub);
				goto fail;
			}
			if ((conv = default_json(rd, rfs, def, sub, errstr, errlen)) == NULL)
				goto fail;
			json_object_set_new(json_object_get(f, "set"), name, conv);
			any = 1;
			continue;
		}
		wfs = skip_links(avro_schema_record_field_get_by_index(ws, wi));
		rfs = skip_links(rfs);
		if (json_is_object(ft) && json_is_string(json_object_get(ft, "type")) &&
		    strcmp(json_string_value(json_object_get(ft, "type")), "record") == 0 &&
		    wfs != NULL && is_avro_record(wfs) && rfs != NULL && is_avro_record(rfs)) {
			json_t *subfill, *pj, *nf;

			pj = project(rd, ft, rfs, wfs, sub, &subfill, depth + 1, errstr, errlen);
			if (pj == NULL)
				goto fail;
			nf = json_copy(fj);
			json_object_set_new(nf, "type", pj);
			json_array_append_new(fields, nf);
			if (subfill != NULL) {
				json_object_set_new(json_object_get(f, "sub"), name, subfill);
				any = 1;
			}
			continue;
		}
		json_array_append(fields, fj);
	}
	json_object_set_new(out, "fields", fields);
	if (any)
		*fill = f;
	else
		json_decref(f);
	return out;
fail:
	json_decref(out);
	json_decref(fields);
	json_decref(f);
	return NULL;
}

int sw_ev_fill_apply(json_t *obj, json_t *fill, char *errstr, size_t errlen)
{
	json_t *sub = json_object_get(fill, "sub");
	json_t *set = json_object_get(fill, "set");
	json_t *order = json_object_get(fill, "order");
	json_t *out, *v, *name;
	const char *k;
	size_t i;

	if (!json_is_object(obj)) {
		sw_ev_err(errstr, errlen, "defaulting a record that is not an object");
		return -1;
	}
	json_object_foreach(sub, k, v)
		if (sw_ev_fill_apply(json_object_get(obj, k), v, errstr, errlen) < 0)
			return -1;
	if ((out = json_object()) == NULL)
		goto oom;
	json_array_foreach(order, i, name) {
		const char *n = json_string_value(name);
		json_t *val = json_object_get(obj, n);

		if (val == NULL && (val = json_object_get(set, n)) != NULL)
			val = json_deep_copy(val);
		else if (val != NULL)
			json_incref(val);
		if (val == NULL || json_object_set_new(out, n, val) < 0) {
			json_decref(out);
			goto oom;
		}
	}
	json_object_clear(obj);
	json_object_update(obj, out);
	json_decref(out);
	return 0;
oom:
	sw_ev_err(errstr, errlen, "out of memory applying defaults");
	return -1;
}

/* Find the enum named full anywhere in s. */
static avro_schema_t find_enum(avro_schema_t s, const char *full, int depth)
{
	avro_schema_t hit = NULL;
	char *n;

	if (s == NULL || is_avro_link(s) || depth > SW_EV_MAX_DEPTH)
		return NULL;
	if (is_avro_enum(s)) {
		n = avro_fullname(s);
		if (n != NULL && strcmp(n, full) == 0)
			hit = s;
		free(n);
		return hit;
	}
	if (is_avro_record(s)) {
		for (size_t i = 0; hit == NULL && i < avro_schema_record_size(s); i++)
			hit = find_enum(avro_schema_record_field_get_by_index(s, (int)i), full,
					depth + 1);
	} else if (is_avro_union(s)) {
		for (size_t i = 0; hit == NULL && i < avro_schema_union_size(s); i++)
			hit = find_enum(avro_schema_union_branch(s, (int)i), full, depth + 1);
	} else if (is_avro_array(s)) {
		hit = find_enum(avro_schema_array_items(s), full, depth + 1);
	} else if (is_avro_map(s)) {
		hit = find_enum(avro_schema_map_values(s), full, depth + 1);
	}
	return hit;
}

/* Enums evolve by appending symbols only: avro-c hands the writer's index
 * through, so a reordered enum would read as the wrong symbol. */
static int check_enums(avro_schema_t w, avro_schema_t rtop, int depth, char *errstr, size_t errlen)
{
	if (w == NULL || is_avro_link(w) || depth > SW_EV_MAX_DEPTH)
		return 0;
	if (is_avro_enum(w)) {
		char *n = avro_fullname(w);
		avro_schema_t r = n ? find_enum(rtop, n, 0) : NULL;
		int nw = avro_schema_enum_number_of_symbols(w);
		int rc = 0;

		if (r != NULL) {
			int nr = avro_schema_enum_number_of_symbols(r);

			for (int i = 0; i < nw && i < nr; i++) {
				if (strcmp(avro_schema_enum_get(w, i),
					   avro_schema_enum_get(r, i))) {
					sw_ev_err(errstr, errlen,
						  "enum %s: symbol %d is %s in the writer, %s in "
						  "the reader (symbols may only be appended)",
						  n, i, avro_schema_enum_get(w, i),
						  avro_schema_enum_get(r, i));
					rc = -1;
					break;
				}
			}
		}
		free(n);
		return rc;
	}
	if (is_avro_record(w)) {
		for (size_t i = 0; i < avro_schema_record_size(w); i++)
			if (check_enums(avro_schema_record_field_get_by_index(w, (int)i), rtop,
					depth + 1, errstr, errlen) < 0)
				return -1;
	} else if (is_avro_union(w)) {
		for (size_t i = 0; i < avro_schema_union_size(w); i++)
			if (check_enums(avro_schema_union_branch(w, (int)i), rtop, depth + 1,
					errstr, errlen) < 0)
				return -1;
	} else if (is_avro_array(w)) {
		return check_enums(avro_schema_array_items(w), rtop, depth + 1, errstr, errlen);
	} else if (is_avro_map(w)) {
		return check_enums(avro_schema_map_values(w), rtop, depth + 1, errstr, errlen);
	}
	return 0;
}

static int parse_schema(json_t *j, avro_schema_t *out, const char *what, char *errstr,
			size_t errlen)
{
	char *text = json_dumps(j, JSON_COMPACT);
	int rc = 0;

	*out = NULL;
	if (text == NULL || avro_schema_from_json_length(text, strlen(text), out) != 0) {
		sw_ev_err(errstr, errlen, "%s: avro: %s", what, text ? avro_strerror() : "OOM");
		*out = NULL;
		rc = -1;
	}
	free(text);
	return rc;
}

/* Does writer schema ws begin with today's header, field for field? Its
 * header is then read in place (decode.c, header_direct), and a reader's
 * written from the struct (encode.c, put_header). */
static int header_is_current(avro_schema_t ws)
{
	static const struct {
		const char *name;
		int nullable; /* ["null", "string"] */
		avro_type_t type;
	} want[] = {
	    {"event_id", 0, AVRO_STRING}, {"type", 0, AVRO_STRING},
	    {"time", 0, AVRO_INT64},	  {"tenant", 0, AVRO_STRING},
	    {"run_id", 0, AVRO_STRING},	  {"step_id", 1, AVRO_STRING},
	    {"trace_id", 0, AVRO_STRING}, {"producer", 0, AVRO_STRING},
	};
	avro_schema_t h, f;
	const char *name;
	size_t i;

	if (!is_avro_record(ws) || avro_schema_record_size(ws) < 1 ||
	    (name = avro_schema_record_field_name(ws, 0)) == NULL || strcmp(name, "header") != 0 ||
	    (h = avro_schema_record_field_get_by_index(ws, 0)) == NULL || !is_avro_record(h) ||
	    avro_schema_record_size(h) != sizeof(want) / sizeof(want[0]))
		return 0;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if ((name = avro_schema_record_field_name(h, (int)i)) == NULL ||
		    strcmp(name, want[i].name) != 0 ||
		    (f = avro_schema_record_field_get_by_index(h, (int)i)) == NULL)
			return 0;
		if (want[i].nullable) {
			if (!is_avro_union(f) || avro_schema_union_size(f) != 2 ||
			    !is_avro_null(avro_schema_union_branch(f, 0)) ||
			    avro_typeof(avro_schema_union_branch(f, 1)) != want[i].type)
				return 0;
		} else if (avro_typeof(f) != want[i].type) {
			return 0;
		}
	}
	return 1;
}

/* Set up everything decoding needs for writer schema ws (json: wj) of
 * reader rd. ws is taken over (even on failure). */
static int writer_setup(struct sw_ev_writer *w, struct sw_ev_reader *rd, avro_schema_t ws,
			uint64_t fp, char *errstr, size_t errlen)
{
	json_t *tj = NULL, *hj = NULL;
	int rc = -1;

	memset(w, 0, sizeof(*w));
	w->fp = fp;
	w->reader = rd;
	w->schema = ws;
	if (fp == rd->fp) {
		tj = json_incref(rd->json);
	} else {
		if (check_enums(ws, rd->schema, 0, errstr, errlen) < 0)
			goto out;
		tj = project(rd, rd->json, rd->schema, ws, "", &w->fill, 0, errstr, errlen);
		if (tj == NULL)
			goto out;
	}
	if (w->fill == NULL) {
		w->target = avro_schema_incref(rd->schema);
		w->target_iface = avro_value_iface_incref(rd->iface);
	} else {
		if (parse_schema(tj, &w->target, "projected reader", errstr, errlen) < 0)
			goto out;
		if ((w->target_iface = avro_generic_class_from_schema(w->target)) == NULL) {
			sw_ev_err(errstr, errlen, "avro: %s", avro_strerror());
			goto out;
		}
	}
	if (fp != rd->fp && (w->resolver = avro_resolved_writer_new(ws, w->target)) == NULL) {
		sw_ev_err(errstr, errlen, "writer does not resolve to reader %s: %s", rd->fullname,
			  avro_strerror());
		goto out;
	}
	/* the header alone: a record of the same name holding only "header" */
	hj = json_pack("{s:s,s:s,s:[{s:s,s:O}]}", "type", "record", "name", rd->fullname, "fields",
		       "name", "header", "type",
		       json_object_get(json_array_get(json_object_get(tj, "fields"), 0), "type"));
	if (hj == NULL) {
		sw_ev_err(errstr, errlen, "out of memory");
		goto out;
	}
	if (parse_schema(hj, &w->hdr_schema, "header reader", errstr, errlen) < 0)
		goto out;
	if ((w->hdr_iface = avro_generic_class_from_schema(w->hdr_schema)) == NULL ||
	    (w->hdr_resolver = avro_resolved_writer_new(ws, w->hdr_schema)) == NULL) {
		sw_ev_err(errstr, errlen, "header reader: avro: %s", avro_strerror());
		goto out;
	}
	w->hdr_direct = header_is_current(ws);
	rc = 0;
out:
	json_decref(tj);
	json_decref(hj);
	if (rc < 0)
		writer_free(w);
	return rc;
}

static int writers_grow(struct sw_event_registry *r)
{
	struct sw_ev_writer *nw;
	size_t cap = r->capwriters ? r->capwriters * 2 : 16;

	if (r->nwriters < r->capwriters)
		return 0;
	if ((nw = realloc(r->writers, cap * sizeof(*nw))) == NULL)
		return -1;
	r->writers = nw;
	r->capwriters = cap;
	return 0;
}

struct sw_event_registry *sw_events_registry_new(char *errstr, size_t errlen)
{
	struct sw_event_registry *r = calloc(1, sizeof(*r));
	json_error_t jerr;
	char sub[256];
	size_t i;

	if (r == NULL)
		goto oom;
	for (i = 0; i < sw_ev_avsc_count; i++)
		if (strcmp(sw_ev_avsc_table[i].file, SW_EV_HEADER_NAME ".avsc") == 0)
			r->header = json_loadb(sw_ev_avsc_table[i].text, sw_ev_avsc_table[i].len,
					       0, &jerr);
	if (r->header == NULL) {
		sw_ev_err(errstr, errlen, "%s.avsc missing or not JSON", SW_EV_HEADER_NAME);
		goto fail;
	}
	if ((r->readers = calloc(sw_ev_avsc_count, sizeof(*r->readers))) == NULL)
		goto oom;
	for (i = 0; i < sw_ev_avsc_count; i++) {
		const struct sw_ev_avsc *a = &sw_ev_avsc_table[i];
		struct sw_ev_reader *rd = &r->readers[r->nreaders];
		avro_schema_t ws;

		if (strcmp(a->file, SW_EV_HEADER_NAME ".avsc") == 0)
			continue;
		if (parse_event(r, a->text, a->len, rd, sub, sizeof(sub)) < 0) {
			reader_free(rd);
			sw_ev_err(errstr, errlen, "%s: %s", a->file, sub);
			goto fail;
		}
		r->nreaders++;
		if (sw_ev_reader_find(r, rd->type) != rd) {
			sw_ev_err(errstr, errlen, "%s: type %s defined twice", a->file, rd->type);
			goto fail;
		}
		if ((rd->iface = avro_generic_class_from_schema(rd->schema)) == NULL) {
			sw_ev_err(errstr, errlen, "%s: avro: %s", a->file, avro_strerror());
			goto fail;
		}
		rd->hdr_direct = header_is_current(rd->schema);
		if (writers_grow(r) < 0)
			goto oom;
		ws = avro_schema_incref(rd->schema);
		if (writer_setup(&r->writers[r->nwriters], rd, ws, rd->fp, sub, sizeof(sub)) < 0) {
			sw_ev_err(errstr, errlen, "%s: %s", a->file, sub);
			goto fail;
		}
		r->nwriters++;
	}
	for (i = 0; i < sw_ev_avsc_history_count; i++) {
		const struct sw_ev_avsc *a = &sw_ev_avsc_history[i];

		if (sw_events_registry_add_writer(r, a->text, sub, sizeof(sub)) < 0) {
			sw_ev_err(errstr, errlen, "%s: %s", a->file, sub);
			goto fail;
		}
	}
	return r;
oom:
	sw_ev_err(errstr, errlen, "out of memory");
fail:
	sw_events_registry_destroy(r);
	return NULL;
}

void sw_events_registry_destroy(struct sw_event_registry *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nwriters; i++)
		writer_free(&r->writers[i]);
	for (size_t i = 0; i < r->nreaders; i++)
		reader_free(&r->readers[i]);
	free(r->writers);
	free(r->readers);
	json_decref(r->header);
	free(r);
}

int sw_events_registry_add_writer(struct sw_event_registry *r, const char *avsc, char *errstr,
				  size_t errlen)
{
	struct sw_ev_reader tmp, *rd = NULL;
	char sub[256];
	int rc = -1;

	if (parse_event(r, avsc, strlen(avsc), &tmp, sub, sizeof(sub)) < 0) {
		sw_ev_err(errstr, errlen, "writer schema: %s", sub);
		goto out;
	}
	for (size_t i = 0; i < r->nreaders; i++)
		if (strcmp(r->readers[i].fullname, tmp.fullname) == 0)
			rd = &r->readers[i];
	if (rd == NULL) {
		sw_ev_err(errstr, errlen, "writer schema %s: no reader of that name",
			  tmp.fullname);
		goto out;
	}
	if (strcmp(rd->type, tmp.type) != 0) {
		sw_ev_err(errstr, errlen, "writer schema %s: sagewai.type %s, the reader's is %s",
			  tmp.fullname, tmp.type, rd->type);
		goto out;
	}
	if (sw_ev_writer_find(r, tmp.fp) != NULL) {
		rc = 0; /* already known */
		goto out;
	}
	if (writers_grow(r) < 0) {
		sw_ev_err(errstr, errlen, "out of memory");
		goto out;
	}
	if (writer_setup(&r->writers[r->nwriters], rd, avro_schema_incref(tmp.schema), tmp.fp, sub,
			 sizeof(sub)) < 0) {
		sw_ev_err(errstr, errlen, "writer schema %s: %s", tmp.fullname, sub);
		goto out;
	}
	r->nwriters++;
	rc = 0;
out:
	reader_free(&tmp);
	return rc;
}

struct sw_ev_reader *sw_ev_reader_find(const struct sw_event_registry *r, const char *type)
{
	for (size_t i = 0; type != NULL && i < r->nreaders; i++)
		if (strcmp(r->readers[i].type, type) == 0)
			return &r->readers[i];
	return NULL;
}

struct sw_ev_writer *sw_ev_writer_find(const struct sw_event_registry *r, uint64_t fp)
{
	for (size_t i = 0; i < r->nwriters; i++)
		if (r->writers[i].fp == fp)
			return &r->writers[i];
	return NULL;
}

size_t sw_events_type_count(const struct sw_event_registry *r)
{
	return r->nreaders;
}

const char *sw_events_type_name(const struct sw_event_registry *r, size_t i)
{
	return i < r->nreaders ? r->readers[i].type : NULL;
}

uint64_t sw_events_fingerprint(const struct sw_event_registry *r, const char *type)
{
	struct sw_ev_reader *rd = sw_ev_reader_find(r, type);

	return rd ? rd->fp : 0;
}

const char *sw_events_schema_json(const struct sw_event_registry *r, const char *type)
{
	struct sw_ev_reader *rd = sw_ev_reader_find(r, type);

	return rd ? rd->text : NULL;
}

const char *sw_events_schema_canonical(const struct sw_event_registry *r, const char *type)
{
	struct sw_ev_reader *rd = sw_ev_reader_find(r, type);

	return rd ? rd->canonical : NULL;
}

const char *sw_events_schema_fullname(const struct sw_event_registry *r, const char *type)
{
	struct sw_ev_reader *rd = sw_ev_reader_find(r, type);

	return rd ? rd->fullname : NULL;
}
