/*
 * sw_redact: replace secret values by "[REDACTED:KEY]" in text, JSON and
 * byte streams -- the sandbox host runs every byte a tool writes (stdout,
 * stderr, the step output, every event) through it before it leaves.
 *
 *   sw_redact_new/_add/_destroy   a set of secrets and the patterns
 *                                 derived from each value
 *   sw_redact_buf                 one-shot redaction of a buffer
 *   sw_redact_json                every string of a JSON value
 *   sw_redact_stream_*            the same over a stream cut into chunks
 *
 * Patterns. For a value V added under KEY, every one of these spellings
 * is replaced by "[REDACTED:KEY]":
 *   - V itself;
 *   - hex, lower and upper case;
 *   - base64, standard and URL-safe alphabets, padded and unpadded; and,
 *     for V inside a longer base64 text, the stable inner part of the
 *     encoding at each of the 3 byte alignments (the characters whose 6
 *     bits come from V alone; the 1 or 2 characters at each edge that mix
 *     V's bits with its neighbours' stay, at most 4 bits of V each);
 *   - percent-encoding as RFC 3986 encoders write it (A-Z a-z 0-9 - . _ ~
 *     kept, every other byte %XX), upper and lower hex, and its form
 *     encoding variant (space as '+');
 *   - JSON string escaping (\" \\ \n ..., \u00XX upper and lower case)
 *     when V holds a byte JSON escapes.
 * Identical patterns are kept once, under the first key that had them (two
 * variables holding one token redact as the first).
 *
 * Values shorter than SW_REDACT_MIN (4) bytes are refused: a 1-3 byte
 * value ("1", "yes", "dev") occurs by chance everywhere, and redacting it
 * would destroy the output while protecting nothing; a caller that gets
 * -1 for a secret should not hand that secret to a tool whose output it
 * releases. A value longer than SW_REDACT_MAX is refused too, as is a value
 * one of whose patterns is part of a marker (the value "ACTED" would be
 * spelled by every marker), or a key whose marker holds a pattern of a
 * value added before.
 *
 * Matching. At each position the longest pattern starting there wins;
 * its bytes are replaced by the marker of its key. Patterns starting
 * inside a replaced span that reach beyond it extend the span (adding
 * their key's marker when it is not the one just written), so no byte of
 * any occurrence of any pattern is ever released: "abab" overlapping
 * itself in "ababab" is one marker; "abcdef" (A) overlapping "defghi"
 * (B) in "abcdefghi" is two. Text outside markers never holds a pattern; a
 * pattern may only straddle a marker and its neighbouring text (value
 * "ab[R", input "ab" then another secret: "ab[REDACTED:K]"), which shows
 * nothing the input and the marker did not.
 *
 * Streaming: for any cut of the input into chunks, the bytes fed then
 * flushed equal sw_redact_buf of the whole input. A stream holds back
 * only the tail that is a proper prefix of some pattern (or lies inside a
 * span still to be extended), at most sw_redact_maxlen() - 1 bytes.
 *
 * Memory: values and patterns live in sodium_malloc'd memory (guard
 * pages, mlock'ed where the limits allow, read-only once built) that
 * sw_redact_destroy wipes; a stream's held-back bytes likewise.
 * A set is immutable once the adds are done: add every secret before
 * the first sw_redact_stream_new, and destroy the streams before the set.
 * Reading a finished set (buf, json, streams) from several threads is
 * safe; each stream belongs to one thread at a time.
 */
#ifndef SW_REDACT_H
#define SW_REDACT_H

#include <stddef.h>

#include <jansson.h>

#include "sw_core.h"

#define SW_REDACT_MIN 4 /* shortest value accepted, bytes */
#define SW_REDACT_MAX 65536 /* longest value accepted, bytes */
#define SW_REDACT_KEY_MAX 128 /* longest key, bytes */

struct sw_redact;

/* An empty set; NULL when out of memory (or libsodium cannot start). */
struct sw_redact *sw_redact_new(void);

/*
 * Add a secret: key labels its marker (1..SW_REDACT_KEY_MAX printable
 * ASCII bytes, no ']'), value[0..len) its bytes, copied. 0, or -1 with
 * errstr (bad key, value too short or too long, a pattern inside a
 * marker, out of memory); the set is unchanged on -1. errstr never holds
 * the value.
 */
int sw_redact_add(struct sw_redact *r, const char *key, const void *value, size_t len,
		  char *errstr, size_t errlen);

/* Secrets added (duplicates included). */
size_t sw_redact_count(const struct sw_redact *r);

/* Longest pattern length, 0 for an empty set (a stream holds back at most
 * this - 1 bytes). */
size_t sw_redact_maxlen(const struct sw_redact *r);

/*
 * A malloc'd redacted copy of buf[0..len), NUL-terminated for convenience
 * (*outlen, if not NULL, excludes the NUL); *hits (if not NULL) grows by
 * the markers written. NULL only when out of memory.
 */
char *sw_redact_buf(const struct sw_redact *r, const void *buf, size_t len, size_t *outlen,
		    size_t *hits);

/*
 * A new reference to v redacted: every string, object keys included,
 * recursively, through sw_redact_buf. A number, true, false or null whose
 * JSON text holds a pattern becomes the redacted text as a string. A cut
 * that leaves a partial UTF-8 character in a string drops that
 * character's remaining bytes (strings stay valid UTF-8); two keys of one
 * object that redact to the same text keep the later value. Unchanged
 * parts are shared with v. NULL when out of memory or v is NULL.
 */
json_t *sw_redact_json(const struct sw_redact *r, json_t *v, size_t *hits);

/*
 * The first occurrence in buf[0..len) of any pattern of r (the value of a
 * secret in any of the spellings above): 1 with *off its offset, *mlen
 * (if not NULL) its length and key[0..keylen) (if key is not NULL) the key
 * it was added under, NUL-terminated and cut to keylen - 1; 0 when buf
 * holds none. At the earliest offset the longest pattern wins, as when
 * redacting. For scanning what is about to leave (an artifact) without
 * releasing any of it; never says which spelling matched.
 */
int sw_redact_find(const struct sw_redact *r, const void *buf, size_t len, size_t *off,
		   size_t *mlen, char *key, size_t keylen);

/* ---- streams ------------------------------------------------------------ */

struct sw_redact_stream;

/* A stream over the finished set r (which must outlive it), one per output
 * stream (stdout, stderr). NULL when out of memory. */
struct sw_redact_stream *sw_redact_stream_new(const struct sw_redact *r);

/*
 * Feed chunk[0..len): appends to out the redacted bytes that are safe to
 * release and holds back the rest (at most maxlen - 1 bytes). 0, or -1
 * when out refused an append (its cap, or out of memory): the stream is
 * then spent, and every later feed or flush returns -1 without writing.
 */
int sw_redact_stream_feed(struct sw_redact_stream *s, const void *chunk, size_t len,
			  struct sw_buf *out);

/* End of stream: append the held-back tail, redacted. 0 or -1 as feed.
 * After 0 the stream is empty and may carry a new stream. */
int sw_redact_stream_flush(struct sw_redact_stream *s, struct sw_buf *out);

/* Markers written by this stream so far. */
size_t sw_redact_stream_hits(const struct sw_redact_stream *s);

/* Wipes the held-back bytes and frees. NULL-safe. */
void sw_redact_stream_destroy(struct sw_redact_stream *s);

/* Wipes the values and patterns and frees the set. NULL-safe. */
void sw_redact_destroy(struct sw_redact *r);

#endif
