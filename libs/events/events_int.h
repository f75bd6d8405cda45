/*
 * sw_events internals, shared by the files of libs/events.
 *
 *   canonical.c  Parsing Canonical Form and CRC-64-AVRO
 *   registry.c   the schema registry: embedded .avsc, Header expansion,
 *                writer schemas and their resolution to readers
 *   encode.c     JSON -> avro-c generic value -> single-object bytes
 *   decode.c     bounded pre-validation of bodies, bytes -> JSON
 */
#ifndef SW_EVENTS_INT_H
#define SW_EVENTS_INT_H

#include <stdarg.h>
#include <avro.h>

#include "sw_events.h"

#define SW_EV_HEADER_NAME "sagewai.Header"
#define SW_EV_MAGIC0 0xC3
#define SW_EV_MAGIC1 0x01
#define SW_EV_PREFIX 10	   /* magic + fingerprint */
#define SW_EV_MAX_DEPTH 64 /* nesting of schemas and values we accept */

/* One .avsc compiled in (generated from schemas/ at build time). */
struct sw_ev_avsc {
	const char *file; /* base name, e.g. "run.submitted.avsc" */
	const char *text;
	size_t len;
};
extern const struct sw_ev_avsc sw_ev_avsc_table[];
extern const size_t sw_ev_avsc_count;
/* earlier versions of evolved events (schemas/history), added as writers */
extern const struct sw_ev_avsc sw_ev_avsc_history[];
extern const size_t sw_ev_avsc_history_count;

/* A compiled-in event schema: what decoding produces and encoding takes. */
struct sw_ev_reader {
	char *type;	 /* "sagewai.type", e.g. "run.submitted" */
	char *fullname;	 /* e.g. "sagewai.run.Submitted" */
	json_t *json;	 /* the schema with sagewai.Header expanded */
	char *text;	 /* json, as compact text */
	char *canonical; /* its Parsing Canonical Form */
	uint64_t fp;	 /* CRC-64-AVRO of canonical */
	avro_schema_t schema;
	avro_value_iface_t *iface; /* generic class of schema */
	json_t *defaults;	   /* record full name -> {field: default} */
	int hdr_direct;		   /* its first field is today's header (registry.c) */
};

/* A schema messages may be written with: every reader, plus extras. */
struct sw_ev_writer {
	uint64_t fp;
	struct sw_ev_reader *reader; /* same full name */
	avro_schema_t schema;
	avro_schema_t target;		  /* what we read into: reader or a projection */
	avro_value_iface_t *target_iface; /* generic class of target */
	avro_value_iface_t *resolver;	  /* writer -> target; NULL if identical */
	json_t *fill;			  /* reader fields the writer lacks, or NULL */
	avro_schema_t hdr_schema;	  /* full name + header field only */
	avro_value_iface_t *hdr_iface;
	avro_value_iface_t *hdr_resolver; /* writer -> hdr_schema */
	int hdr_direct; /* the writer's first field is today's header: read it in place */
};

struct sw_event_registry {
	json_t *header; /* sagewai.Header.avsc */
	struct sw_ev_reader *readers;
	size_t nreaders;
	struct sw_ev_writer *writers; /* the readers' own first */
	size_t nwriters;
	size_t capwriters;
};

/* errstr helpers: never NULL-dereference, always NUL-terminate. */
void sw_ev_err(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* canonical.c: the Parsing Canonical Form of a parsed schema (caller
 * frees), and the full name and namespace a named type's definition
 * gives, within enclosing namespace ns (NULL for none). */
char *sw_ev_canonical_json(json_t *schema, char *errstr, size_t errlen);
int sw_ev_names(json_t *named, const char *ns, char **full, char **newns);

/* registry.c */
struct sw_ev_reader *sw_ev_reader_find(const struct sw_event_registry *r, const char *type);
struct sw_ev_writer *sw_ev_writer_find(const struct sw_event_registry *r, uint64_t fp);

/* Add the defaults recorded in fill (see registry.c) to a decoded
 * record, keeping the reader's field order. */
int sw_ev_fill_apply(json_t *obj, json_t *fill, char *errstr, size_t errlen);

/* A growing buffer of bytes (free buf when done). */
struct sw_ev_buf {
	uint8_t *buf;
	size_t len, cap;
};

/* encode.c: append j as a value of schema s in Avro's binary encoding to
 * out. defaults is the reader's table; is_default makes bytes/fixed
 * strings Avro default literals (code points 0-255) rather than hex. path
 * names the value in errors. 0 or -1 + errstr. */
int sw_ev_json_write(json_t *j, avro_schema_t s, json_t *defaults, int is_default,
		     const char *path, struct sw_ev_buf *out, char *errstr, size_t errlen);

/* decode.c: the JSON form of a value; NULL + errstr on failure. */
json_t *sw_ev_value_to_json(avro_value_t *v, int depth, char *errstr, size_t errlen);

/* Look up a writer by the 10-byte prefix of a message and check that
 * the body is well-formed for its schema, without trusting any length
 * in it. On success *w and the body are set. */
int sw_ev_check(struct sw_event_registry *r, const void *buf, size_t len, struct sw_ev_writer **w,
		const uint8_t **body, size_t *bodylen, char *errstr, size_t errlen);

/* decode.c: the header of a checked body (sw_ev_check) through avro-c and
 * JSON, for any writer; sw_event_decode_header reads today's header in
 * place instead. Both give the same answer (tests/fuzz/fuzz_decode.c). */
int sw_ev_header_general(const struct sw_ev_writer *w, const uint8_t *body, size_t bodylen,
			 struct sw_event_header *h, char *errstr, size_t errlen);

#endif
