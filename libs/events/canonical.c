/*
 * Parsing Canonical Form and the CRC-64-AVRO fingerprint, as the Avro
 * specification ("Schema Resolution" / "Parsing Canonical Form for
 * Schemas" / "Schema Fingerprints") defines them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events_int.h"

#define CRC64_EMPTY 0xc15d213aa4d7a795ULL

static uint64_t crc64_table[256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

static void crc64_init(void)
{
	for (int i = 0; i < 256; i++) {
		uint64_t fp = (uint64_t)i;

		for (int j = 0; j < 8; j++)
			fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1));
		crc64_table[i] = fp;
	}
}

uint64_t sw_avro_crc64(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t fp = CRC64_EMPTY;

	pthread_once(&crc64_once, crc64_init);
	for (size_t i = 0; i < len; i++)
		fp = (fp >> 8) ^ crc64_table[(fp ^ p[i]) & 0xff];
	return fp;
}

void sw_ev_err(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

static const char *const primitives[] = {
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
};

static int is_primitive(const char *s)
{
	for (size_t i = 0; i < sizeof(primitives) / sizeof(primitives[0]); i++)
		if (strcmp(s, primitives[i]) == 0)
			return 1;
	return 0;
}

/* [STRINGS]: JSON string literal with escapes only where JSON needs them;
 * jansson leaves UTF-8 as is unless asked otherwise. */
static int put_string(FILE *o, const char *s)
{
	json_t *j = json_string(s);
	int rc;

	if (j == NULL)
		return -1;
	rc = json_dumpf(j, o, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(j);
	return rc;
}

/* [FULLNAMES] a name in namespace ns (NULL or "" for none). */
static int put_fullname(FILE *o, const char *name, const char *ns)
{
	char *full;
	int rc;

	if (strchr(name, '.') != NULL || ns == NULL || ns[0] == '\0')
		return put_string(o, name);
	if (asprintf(&full, "%s.%s", ns, name) < 0)
		return -1;
	rc = put_string(o, full);
	free(full);
	return rc;
}

static int pcf(FILE *o, json_t *s, const char *ns, int depth, char *errstr, size_t errlen);

/* The full name a named type's definition gives, and the namespace it
 * encloses (NULL for none); both malloc'd. -1 on a missing name or OOM. */
int sw_ev_names(json_t *named, const char *ns, char **full, char **newns)
{
	json_t *name = json_object_get(named, "name");
	json_t *jns = json_object_get(named, "namespace");
	const char *n, *dot;

	*full = *newns = NULL;
	if (!json_is_string(name))
		return -1;
	n = json_string_value(name);
	if ((dot = strrchr(n, '.')) != NULL) {
		*newns = strndup(n, (size_t)(dot - n));
		*full = strdup(n);
	} else {
		if (json_is_string(jns))
			ns = json_string_value(jns);
		if (ns != NULL && ns[0] != '\0') {
			*newns = strdup(ns);
			if (asprintf(full, "%s.%s", ns, n) < 0)
				*full = NULL;
		} else {
			*full = strdup(n);
		}
	}
	if (*full == NULL || (*newns == NULL && ((dot != NULL) || (ns && ns[0])))) {
		free(*full);
		free(*newns);
		*full = *newns = NULL;
		return -1;
	}
	return 0;
}

/* A named type: record, error, enum or fixed. */
static int pcf_named(FILE *o, json_t *s, const char *type, const char *ns, int depth, char *errstr,
		     size_t errlen)
{
	char *full = NULL, *newns = NULL;
	const char *n;
	int rc = -1;

	if (sw_ev_names(s, ns, &full, &newns) < 0) {
		sw_ev_err(errstr, errlen, "%s without a string \"name\"", type);
		return -1;
	}
	n = full;
	fputs("{\"name\":", o);
	if (put_string(o, full) < 0)
		goto out;
	fputs(",\"type\":", o);
	put_string(o, type);

	if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
		json_t *fields = json_object_get(s, "fields");
		size_t i;
		json_t *f;

		if (!json_is_array(fields)) {
			sw_ev_err(errstr, errlen, "record %s: \"fields\" is not an array", n);
			goto out;
		}
		fputs(",\"fields\":[", o);
		json_array_foreach(fields, i, f) {
			json_t *fname = json_object_get(f, "name");

			if (!json_is_string(fname) || json_object_get(f, "type") == NULL) {
				sw_ev_err(errstr, errlen,
					  "record %s: field %zu needs name and type", n, i);
				goto out;
			}
			fputs(i ? ",{\"name\":" : "{\"name\":", o);
			put_string(o, json_string_value(fname));
			fputs(",\"type\":", o);
			if (pcf(o, json_object_get(f, "type"), newns, depth + 1, errstr, errlen) <
			    0)
				goto out;
			fputc('}', o);
		}
		fputc(']', o);
	} else if (strcmp(type, "enum") == 0) {
		json_t *syms = json_object_get(s, "symbols");
		size_t i;
		json_t *sym;

		if (!json_is_array(syms)) {
			sw_ev_err(errstr, errlen, "enum %s: \"symbols\" is not an array", n);
			goto out;
		}
		fputs(",\"symbols\":[", o);
		json_array_foreach(syms, i, sym) {
			if (!json_is_string(sym)) {
				sw_ev_err(errstr, errlen, "enum %s: symbol %zu is not a string", n,
					  i);
				goto out;
			}
			if (i)
				fputc(',', o);
			put_string(o, json_string_value(sym));
		}
		fputc(']', o);
	} else { /* fixed */
		json_t *size = json_object_get(s, "size");

		if (!json_is_integer(size) || json_integer_value(size) < 0) {
			sw_ev_err(errstr, errlen,
				  "fixed %s: \"size\" is not a non-negative integer", n);
			goto out;
		}
		/* [INTEGERS] no quotes, no leading zeros */
		fprintf(o, ",\"size\":%lld", (long long)json_integer_value(size));
	}
	fputc('}', o);
	rc = 0;
out:
	free(full);
	free(newns);
	return rc;
}

/* Write the canonical form of s, in enclosing namespace ns, to o. */
static int pcf(FILE *o, json_t *s, const char *ns, int depth, char *errstr, size_t errlen)
{
	if (depth > SW_EV_MAX_DEPTH) {
		sw_ev_err(errstr, errlen, "schema nested deeper than %d", SW_EV_MAX_DEPTH);
		return -1;
	}
	if (json_is_string(s)) {
		const char *n = json_string_value(s);

		/* [PRIMITIVES] stay bare; any other name is a reference */
		return is_primitive(n) ? put_string(o, n) : put_fullname(o, n, ns);
	}
	if (json_is_array(s)) {
		size_t i;
		json_t *b;

		fputc('[', o);
		json_array_foreach(s, i, b) {
			if (i)
				fputc(',', o);
			if (pcf(o, b, ns, depth + 1, errstr, errlen) < 0)
				return -1;
		}
		fputc(']', o);
		return 0;
	}
	if (json_is_object(s)) {
		json_t *jt = json_object_get(s, "type");
		const char *t;

		if (json_is_object(jt) || json_is_array(jt))
			return pcf(o, jt, ns, depth + 1, errstr, errlen);
		if (!json_is_string(jt)) {
			sw_ev_err(errstr, errlen, "schema object without a \"type\"");
			return -1;
		}
		t = json_string_value(jt);
		if (is_primitive(t))
			return put_string(o, t); /* [STRIP] of everything else */
		if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0 ||
		    strcmp(t, "enum") == 0 || strcmp(t, "fixed") == 0)
			return pcf_named(o, s, t, ns, depth, errstr, errlen);
		if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
			int arr = t[0] == 'a';
			json_t *sub = json_object_get(s, arr ? "items" : "values");

			if (sub == NULL) {
				sw_ev_err(errstr, errlen, "%s without \"%s\"", t,
					  arr ? "items" : "values");
				return -1;
			}
			fputs(arr ? "{\"type\":\"array\",\"items\":"
				  : "{\"type\":\"map\",\"values\":",
			      o);
			if (pcf(o, sub, ns, depth + 1, errstr, errlen) < 0)
				return -1;
			fputc('}', o);
			return 0;
		}
		return put_fullname(o, t, ns); /* {"type": "some.Named"} */
	}
	sw_ev_err(errstr, errlen, "a schema must be a string, an array or an object");
	return -1;
}

/* The canonical form of an already parsed schema. */
char *sw_ev_canonical_json(json_t *schema, char *errstr, size_t errlen)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *o = open_memstream(&buf, &n);
	int rc;

	if (o == NULL) {
		sw_ev_err(errstr, errlen, "out of memory");
		return NULL;
	}
	rc = pcf(o, schema, NULL, 0, errstr, errlen);
	if (fclose(o) != 0 && rc == 0) {
		sw_ev_err(errstr, errlen, "out of memory");
		rc = -1;
	}
	if (rc < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

char *sw_avro_canonical(const char *schema_json, char *errstr, size_t errlen)
{
	json_error_t jerr;
	json_t *j;
	char *out;

	j = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		sw_ev_err(errstr, errlen, "schema is not JSON: line %d: %s", jerr.line, jerr.text);
		return NULL;
	}
	out = sw_ev_canonical_json(j, errstr, errlen);
	json_decref(j);
	return out;
}
