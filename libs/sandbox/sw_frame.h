/*
 * sw_frame: the framed protocol between sandboxd (the host side) and the
 * tool runner inside each sandbox. Both sides compile this file; it needs
 * nothing but libc.
 *
 * A frame is an 8-byte header and a payload:
 *
 *   type u8 | flags u8 | reserved u16 | len u32 (little endian) | payload[len]
 *
 * flags and reserved must be zero, len must be <= SW_FRAME_MAX and type
 * must be one the receiving side accepts; anything else is a protocol
 * error, which ends the connection (and the sandbox). What the runner
 * sends (READY, EXIT, ERROR, CRED_REQUEST) is a UTF-8 JSON object, read on
 * the host with jansson; what the host sends (EXEC, INJECT_ENV,
 * CRED_ANSWER) is binary, below, so that the runner links no JSON library;
 * STDOUT/STDERR payloads are raw bytes.
 *
 * Frames form a byte stream. The transport (a SOCK_SEQPACKET socketpair)
 * carries that stream in records of at most SW_FRAME_RECORD_MAX bytes; a
 * frame may span records and a record may hold several frames. A receiver
 * reads with a buffer of SW_FRAME_RECORD_MAX and treats a truncated record
 * as a protocol error.
 */
#ifndef SW_FRAME_H
#define SW_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SW_FRAME_HDR 8
#define SW_FRAME_MAX (1u << 20)		/* largest payload */
#define SW_FRAME_RECORD_MAX (64u << 10) /* largest transport record */

enum sw_frame_type {
	SW_FRAME_EXEC = 1,	   /* host -> runner: argv, env, cwd, timeout_ms, stdin */
	SW_FRAME_STDOUT = 2,	   /* runner -> host: a chunk of the command's stdout */
	SW_FRAME_STDERR = 3,	   /* runner -> host: a chunk of the command's stderr */
	SW_FRAME_EXIT = 4,	   /* runner -> host: JSON {status, signal, timed_out, ...} */
	SW_FRAME_KILL = 5,	   /* host -> runner: kill the running command (empty) */
	SW_FRAME_INJECT_ENV = 6,   /* host -> runner: name, value for the next EXEC */
	SW_FRAME_CRED_REQUEST = 7, /* runner -> host: JSON {id, name, scope, reason,
				    * timeout_ms, requester}: a credential asked from
				    * inside (sw_credsock.h), at most
				    * SW_FRAME_CRED_REQUEST_MAX bytes */
	SW_FRAME_ERROR = 8,	   /* runner -> host: JSON {message} */
	SW_FRAME_READY = 9,	   /* runner -> host, first frame: JSON {version, pid} */
	SW_FRAME_CRED_ANSWER = 10, /* host -> runner: id, status 0 with name and value (the
				    * runner keeps NAME=value for every later EXEC), or
				    * status 1-3 with code and error */
	SW_FRAME_TYPE_MAX = 10,
};

#define SW_FRAME_BIT(t) (1u << (t))
/* What each side accepts. */
#define SW_FRAME_FROM_RUNNER                                                                      \
	(SW_FRAME_BIT(SW_FRAME_STDOUT) | SW_FRAME_BIT(SW_FRAME_STDERR) |                          \
	 SW_FRAME_BIT(SW_FRAME_EXIT) | SW_FRAME_BIT(SW_FRAME_CRED_REQUEST) |                      \
	 SW_FRAME_BIT(SW_FRAME_ERROR) | SW_FRAME_BIT(SW_FRAME_READY))
#define SW_FRAME_FROM_HOST                                                                        \
	(SW_FRAME_BIT(SW_FRAME_EXEC) | SW_FRAME_BIT(SW_FRAME_KILL) |                              \
	 SW_FRAME_BIT(SW_FRAME_INJECT_ENV) | SW_FRAME_BIT(SW_FRAME_CRED_ANSWER))

#define SW_FRAME_VERSION 2	       /* sent in READY; 2: the host's payloads are binary */
#define SW_FRAME_CRED_REQUEST_MAX 4096 /* a CRED_REQUEST payload's largest */

/* The name of a frame type ("EXEC", ...), or "?" */
const char *sw_frame_type_name(unsigned type);

/* Write the header for a frame of type and payload length len into hdr. */
void sw_frame_header(uint8_t hdr[SW_FRAME_HDR], enum sw_frame_type type, uint32_t len);

/* Check a received header. Returns 0 and fills *type and *len, or -1 with
 * errstr filled (type not in allowed, a flag or reserved bit set, len too
 * large). allowed is a mask of SW_FRAME_BIT()s. */
int sw_frame_header_check(const uint8_t hdr[SW_FRAME_HDR], uint32_t allowed, unsigned *type,
			  uint32_t *len, char *errstr, size_t errlen);

/*
 * An incremental decoder of a frame stream. It holds at most one partial
 * frame (header + up to SW_FRAME_MAX bytes), whatever the caller feeds.
 */
struct sw_frame_parser;

/* A complete frame; payload is valid only during the callback. Return 0 to
 * go on, -1 to stop (the parser then stays failed). */
typedef int (*sw_frame_cb)(void *arg, unsigned type, const uint8_t *payload, uint32_t len);

/* NULL on allocation failure. allowed: mask of acceptable types. */
struct sw_frame_parser *sw_frame_parser_new(uint32_t allowed);
void sw_frame_parser_destroy(struct sw_frame_parser *p);

/* Feed n bytes, calling cb for each frame completed. Returns 0, or -1 when
 * the stream is bad or cb returned -1; errstr then says why (for a refusal
 * by cb, "stopped"). After -1 every further feed fails the same way. */
int sw_frame_parser_feed(struct sw_frame_parser *p, const void *buf, size_t n, sw_frame_cb cb,
			 void *arg, char *errstr, size_t errlen);

/* 1 when a frame is partially received (the stream ended mid-frame). */
int sw_frame_parser_partial(const struct sw_frame_parser *p);

/*
 * The host's payloads: little-endian integers, then fields, each
 *
 *   len u32 | bytes[len]
 *
 * in the order the type fixes, and nothing after the last:
 *
 *   EXEC         argc u32 | envc u32 | flags u32 (1: stdin follows) |
 *                timeout_ms u64 | cwd | argv[argc] | env[envc] | [stdin]
 *   INJECT_ENV   name | value
 *   CRED_ANSWER  id u32 | status u32 | name | value       (status 0: granted)
 *                id u32 | status u32 | code | error       (1 denied, 2 timed
 *                                                          out, 3 error)
 *
 * Text fields (all but stdin) hold no NUL. A decoder checks every length
 * against what is left before reading, and refuses a payload with bytes
 * left over. The encoders return a malloc'd payload (*len set), or NULL
 * when a count or length is out of range or memory runs out; payloads that
 * may hold a value are the caller's to wipe.
 */
#define SW_FRAME_ARGV_MAX 4096 /* argv entries of an EXEC, at most */
#define SW_FRAME_ENV_MAX 4096  /* env entries of an EXEC, at most */
#define SW_FRAME_EXEC_STDIN 1u /* EXEC flags: stdin follows */

/* A field as decoded: it points into the payload, not NUL-terminated. */
struct sw_frame_field {
	const uint8_t *p;
	uint32_t len;
};

/* An EXEC decoded: one allocation (mem, mem_len) holds NUL-terminated
 * copies of every field and the argv and env arrays; the caller frees it
 * (wiping first: env may hold what a step was given). */
struct sw_frame_exec {
	char **argv; /* argc entries, then NULL */
	char **env;  /* envc entries, then NULL */
	char *cwd;
	char *in; /* stdin (not NUL-terminated; may hold NUL), or NULL */
	size_t in_len;
	uint32_t argc, envc;
	uint64_t timeout_ms;
	void *mem;
	size_t mem_len;
};

uint8_t *sw_frame_exec_encode(const char *const *argv, const char *const *env, const char *cwd,
			      const void *in, size_t in_len, int has_stdin, uint64_t timeout_ms,
			      size_t *len);
/* 0, or -1 with errstr (nothing then to free). argc >= 1 is required. */
int sw_frame_exec_decode(const uint8_t *p, size_t n, struct sw_frame_exec *x, char *errstr,
			 size_t errlen);

uint8_t *sw_frame_inject_encode(const char *name, const char *value, size_t *len);
int sw_frame_inject_decode(const uint8_t *p, size_t n, struct sw_frame_field *name,
			   struct sw_frame_field *value, char *errstr, size_t errlen);

struct sw_frame_answer {
	uint32_t id, status;
	struct sw_frame_field a, b; /* name and value, or code and error */
};

uint8_t *sw_frame_answer_encode(uint32_t id, uint32_t status, const char *a, const char *b,
				size_t *len);
/* status above 3 is refused. */
int sw_frame_answer_decode(const uint8_t *p, size_t n, struct sw_frame_answer *ans, char *errstr,
			   size_t errlen);

/*
 * An outgoing byte queue for a non-blocking socket: frames are appended
 * whole and flushed in records of at most SW_FRAME_RECORD_MAX. Bytes are
 * wiped from the buffer once sent (frames may carry injected values).
 */
struct sw_frame_outq {
	uint8_t *buf;
	size_t off; /* first unsent byte */
	size_t len; /* end of queued bytes */
	size_t cap;
};

/* Append one frame. Returns 0, or -1 (payload too large, or no memory). */
int sw_frame_outq_push(struct sw_frame_outq *q, enum sw_frame_type type, const void *payload,
		       size_t len);
/* Bytes waiting. */
size_t sw_frame_outq_pending(const struct sw_frame_outq *q);
/* Send as much as the socket takes without blocking. Returns 0 (maybe with
 * bytes still pending) or -1 with errno set (EPIPE, ...). */
int sw_frame_outq_flush(struct sw_frame_outq *q, int fd);
void sw_frame_outq_free(struct sw_frame_outq *q);

#endif
