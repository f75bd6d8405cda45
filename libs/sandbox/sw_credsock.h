/*
 * sw_credsock: the local credential protocol inside a cli_agent_jit sandbox
 * (docs/JIT.md, "The local protocol"), spoken by the client sagewai-cred
 * and the tool runner, which forwards each request to sandboxd as a
 * CRED_REQUEST frame and answers with what CRED_ANSWER brings back.
 *
 * Transport: a SOCK_STREAM unix socket in the abstract namespace,
 * SW_CREDSOCK_NAME, which exists only in the sandbox's own network
 * namespace (every sandbox has one): no file to replace, nothing a sibling
 * sandbox can reach. One request per connection.
 *
 * Every message is u32 length (little endian) then that many bytes:
 *
 *   request  (client -> runner), at most SW_CREDSOCK_REQ_MAX bytes:
 *     version u8 (1) | op u8 (1: request) | reserved u16 (0) |
 *     timeout_ms u32 (1..SW_CREDSOCK_TIMEOUT_MAX) |
 *     name, scope, reason, argv0: each u16 length + bytes
 *   reply    (runner -> client), at most SW_CREDSOCK_REPLY_MAX bytes:
 *     version u8 (1) | status u8 (enum sw_credsock_status) | code_len u16 |
 *     text_len u32 | code | text
 *     (text: the value for SW_CREDSOCK_OK, else a sentence for a person)
 *
 * name is [A-Z_][A-Z0-9_]{0,127}; scope (at most 256 bytes), reason (at
 * most 1024) and argv0 (at most 128) are printable UTF-8 without control
 * characters; no byte may follow the last field. Anything else is refused.
 * Both sides compile this file; it needs nothing but libc.
 */
#ifndef SW_CREDSOCK_H
#define SW_CREDSOCK_H

#include <stddef.h>
#include <stdint.h>

#define SW_CREDSOCK_NAME "sagewai-cred" /* abstract: "\0sagewai-cred" */
#define SW_CREDSOCK_VERSION 1
#define SW_CREDSOCK_OP_REQUEST 1
#define SW_CREDSOCK_NAME_MAX 128
#define SW_CREDSOCK_SCOPE_MAX 256
#define SW_CREDSOCK_REASON_MAX 1024
#define SW_CREDSOCK_ARGV0_MAX 128
#define SW_CREDSOCK_REQ_MAX 2048	  /* a request's body, bytes */
#define SW_CREDSOCK_VALUE_MAX (64u << 10) /* a delivered value, bytes */
#define SW_CREDSOCK_TEXT_MAX 1024	  /* a refusal's sentence, bytes */
#define SW_CREDSOCK_REPLY_MAX (SW_CREDSOCK_VALUE_MAX + 256)
#define SW_CREDSOCK_TIMEOUT_MAX 600000	  /* ms */
#define SW_CREDSOCK_TIMEOUT_DEFAULT 60000 /* ms */

enum sw_credsock_status {
	SW_CREDSOCK_OK = 0,	 /* text is the value */
	SW_CREDSOCK_DENIED = 1,	 /* policy said no, or the key may not be had */
	SW_CREDSOCK_TIMEOUT = 2, /* no decision or value in time */
	SW_CREDSOCK_ERROR = 3,	 /* a bad request, or something broke */
};

struct sw_credsock_req {
	uint32_t timeout_ms;
	char name[SW_CREDSOCK_NAME_MAX + 1];
	char scope[SW_CREDSOCK_SCOPE_MAX + 1];
	char reason[SW_CREDSOCK_REASON_MAX + 1];
	char argv0[SW_CREDSOCK_ARGV0_MAX + 1];
};

/* NAME is [A-Z_][A-Z0-9_]{0,127}. */
int sw_credsock_name_ok(const char *s, size_t n);
/* n bytes of s are printable UTF-8: no control character, no NUL. */
int sw_credsock_text_ok(const char *s, size_t n);

/* Encode req's body (without the u32 length) into buf (cap bytes). Returns
 * its length, or 0 when a field breaks the rules above. */
size_t sw_credsock_req_encode(const struct sw_credsock_req *req, uint8_t *buf, size_t cap);
/* Decode and check a body of n bytes into req. 0, or -1 with errstr. */
int sw_credsock_req_decode(const uint8_t *p, size_t n, struct sw_credsock_req *req, char *errstr,
			   size_t errlen);

/* Encode a reply body into buf (cap bytes); its length, or 0 when it does
 * not fit (or status/code/text break the caps). */
size_t sw_credsock_reply_encode(enum sw_credsock_status status, const char *code, const char *text,
				size_t text_len, uint8_t *buf, size_t cap);
/* Decode a reply body: *code and *text point into p (not NUL-terminated).
 * 0, or -1 with errstr. */
int sw_credsock_reply_decode(const uint8_t *p, size_t n, unsigned *status, const char **code,
			     size_t *code_len, const char **text, size_t *text_len, char *errstr,
			     size_t errlen);

#endif
