/*
 * sw_events: the Avro event contract.
 *
 * Every event is an Avro record whose first field is "header"
 * (schemas/sagewai.Header.avsc). Messages use Avro single-object encoding:
 *
 *     C3 01 | CRC-64-AVRO fingerprint of the writer schema (8 bytes, LE) | body
 *
 * The fingerprint is taken over the schema's Parsing Canonical Form, with
 * named references to sagewai.Header expanded, so any Avro implementation
 * can decode a message from the .avsc files alone.
 *
 * A registry holds the schemas compiled into the binary (the reader
 * schemas) and any extra writer schemas added at run time (e.g. newer
 * versions shipped to readers before the writers upgrade). Decoding looks
 * up the writer schema by fingerprint and resolves it to the reader schema
 * of the same Avro full name, so an old reader reads a newer writer's
 * event (fields added with defaults are dropped, missing ones defaulted).
 *
 * In-memory form is jansson JSON: records are objects, unions with null
 * are null or the bare value, bytes/fixed are lowercase hex strings, enums
 * are their symbol, long/int are integers, maps are objects.
 */
#ifndef SW_EVENTS_H
#define SW_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct sw_event_registry;

/* The registry of the schemas compiled in from schemas/. NULL + errstr on
 * failure (a malformed embedded schema is a build bug). */
struct sw_event_registry *sw_events_registry_new(char *errstr, size_t errlen);
void sw_events_registry_destroy(struct sw_event_registry *r);

/* Add a writer schema (the text of an .avsc; references to sagewai.Header
 * are expanded). It must share its full name with a compiled-in reader
 * schema and be resolvable to it. 0, or -1 with errstr.
 * A registry is read-only once built: encode and decode may run from many
 * threads at once, but add writers before that, not concurrently. Enum
 * symbols may only be appended; reader fields a writer lacks must have
 * defaults. */
int sw_events_registry_add_writer(struct sw_event_registry *r, const char *avsc, char *errstr,
				  size_t errlen);

/* Event type names ("run.submitted", ...) are the "sagewai.type" property
 * of each .avsc; the Avro full name is e.g. "sagewai.run.Submitted". */
size_t sw_events_type_count(const struct sw_event_registry *r);
const char *sw_events_type_name(const struct sw_event_registry *r, size_t i);
/* Fingerprint of the reader schema for type; 0 if unknown. */
uint64_t sw_events_fingerprint(const struct sw_event_registry *r, const char *type);

/* The reader schema of type as JSON text with sagewai.Header expanded, its
 * Parsing Canonical Form, and its Avro full name; owned by r, NULL if the
 * type is unknown. */
const char *sw_events_schema_json(const struct sw_event_registry *r, const char *type);
const char *sw_events_schema_canonical(const struct sw_event_registry *r, const char *type);
const char *sw_events_schema_fullname(const struct sw_event_registry *r, const char *type);

/* CRC-64-AVRO (Rabin) of a byte string, and the Parsing Canonical Form of
 * a schema given as JSON text (caller frees). */
uint64_t sw_avro_crc64(const void *buf, size_t len);
char *sw_avro_canonical(const char *schema_json, char *errstr, size_t errlen);

/* The common header, decoded. Strings are NUL-terminated; step_id and
 * tenant may be empty. */
struct sw_event_header {
	char event_id[37];
	char type[64];
	int64_t time_us;
	char tenant[128];
	char run_id[64];
	char step_id[128];
	char trace_id[64];
	char producer[64];
};

/* Fill h for a new event of type: a fresh UUIDv7, now, the given
 * producer; the other fields empty. */
void sw_event_header_init(struct sw_event_header *h, const char *type, const char *producer);

/* Encode obj (the event's fields; "header" may be omitted when h is given,
 * and h then wins) with the reader schema of type. On success *out is a
 * malloc'd single-object message of *outlen bytes. Missing fields with a
 * default take it; a missing field without one, a wrong JSON type, or an
 * unknown field is an error naming the field path. */
int sw_event_encode(struct sw_event_registry *r, const char *type,
		    const struct sw_event_header *h, json_t *obj, void **out, size_t *outlen,
		    char *errstr, size_t errlen);

/* Decode a single-object message into a new JSON object (with "header").
 * Truncated input, a bad magic, an unknown fingerprint or a body that does
 * not parse fully are errors with a reason in errstr; never a crash. */
json_t *sw_event_decode(struct sw_event_registry *r, const void *buf, size_t len, char *errstr,
			size_t errlen);

/* Decode only the header (cheap path for the audit log and routers). */
int sw_event_decode_header(struct sw_event_registry *r, const void *buf, size_t len,
			   struct sw_event_header *h, char *errstr, size_t errlen);

#endif
