/*
 * sw_core: the small pieces every Sagewai process shares.
 *
 *   sw_log_*     structured JSON log lines (one object per line, to a FILE,
 *                stderr by default); the process chooses the stream, the
 *                library never writes anywhere else.
 *   sw_config_*  configuration from a KEY=VALUE file and an environment
 *                array (later overrides earlier), secrets from files named
 *                by KEY_FILE; nothing here calls getenv.
 *   sw_uuid_*    UUIDv7 (RFC 9562) generation, formatting and parsing.
 *   sw_now_*     clocks.
 *   sw_buf_*     a growable byte buffer, optionally capped.
 *   sw_hex_*     lower-case hex encoding and decoding.
 *   sw_hostport_* host:port authorities.
 */
#ifndef SW_CORE_H
#define SW_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* ---- logging ---------------------------------------------------------- */

enum sw_log_level { SW_LOG_DEBUG, SW_LOG_INFO, SW_LOG_WARN, SW_LOG_ERROR };

/* Set the service name stamped on each line, the stream (NULL = stderr)
 * and the minimum level. Not thread-safe; call once at start. */
void sw_log_init(const char *service, FILE *out, enum sw_log_level min);

/* Write one line: {"ts":"...","level":"info","svc":"audit","msg":"...",k:v,...}.
 * The variadic part is pairs of (const char *key, const char *value)
 * terminated by a NULL key; values are JSON-escaped strings. */
void sw_log(enum sw_log_level lvl, const char *msg, ...);

/* printf-style message with no extra fields. */
void sw_logf(enum sw_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* sw_log with the fields as an array: NULL-terminated key/value pairs (a
 * NULL kv is no field). */
void sw_log_kv(enum sw_log_level lvl, const char *msg, const char *const *kv);

/* ---- configuration ---------------------------------------------------- */

#define SW_CONFIG_STR 512

/* Every setting a service may read. Strings are NUL-terminated and empty
 * when unset. */
struct sw_config {
	char kafka_bootstrap[SW_CONFIG_STR]; /* SAGEWAI_KAFKA_BOOTSTRAP */
	char pg_dsn[SW_CONFIG_STR];          /* SAGEWAI_PG_DSN, else built from PG* */
	char data_dir[SW_CONFIG_STR];        /* SAGEWAI_DATA_DIR */
	char http_addr[64];                  /* SAGEWAI_HTTP_ADDR (default 127.0.0.1) */
	int http_port;                       /* SAGEWAI_HTTP_PORT (0 = ephemeral) */
	char group_id[128];                  /* SAGEWAI_GROUP_ID (service default if empty) */
	char log_level[16];                  /* SAGEWAI_LOG_LEVEL: debug|info|warn|error */
	char mode[32];                       /* SAGEWAI_MODE: single_org|multi_tenant */
};

/*
 * Fill cfg with defaults, then the KEY=VALUE lines of file (if not NULL;
 * '#' comments and blank lines allowed), then envp (if not NULL).
 * PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD compose pg_dsn when
 * SAGEWAI_PG_DSN is not given. Returns 0, or -1 with errstr filled
 * (unreadable file, malformed line with its number, bad port).
 *
 * The _FILE convention: for any KEY above, KEY_FILE=/path (in the file or
 * in envp) means KEY's value is the contents of that file, one trailing
 * newline ("\n" or "\r\n") removed, so that a secret (PGPASSWORD, a DSN
 * holding a password) need not sit in any process's environment. The file
 * must be a regular file granting its group and others no access (0600 or
 * 0400), hold no NUL byte and fit the setting; anything else is an error,
 * as is envp holding both KEY and KEY_FILE.
 */
int sw_config_load(struct sw_config *cfg, const char *file, char *const *envp, char *errstr,
		   size_t errlen);

/* Look up KEY in an environment array; NULL when absent. */
const char *sw_config_env(char *const *envp, const char *key);

/* A secret setting KEY of envp (an API key, a token) into buf (len bytes,
 * NUL included): KEY's value, or the contents of the file KEY_FILE names,
 * checked as in sw_config_load. Use it, never sw_config_env, for a secret.
 * 1 when set, 0 when neither is (buf ""), -1 with errstr (both set, the
 * file refused or unreadable, the value longer than len - 1). */
int sw_config_secret(char *const *envp, const char *key, char *buf, size_t len, char *errstr,
		     size_t errlen);

/* A whole-number setting KEY of envp into *out: def when unset or empty,
 * else its decimal value, which must lie in lo..hi. 0, or -1 with errstr
 * ("KEY: 'v' is not a number in lo..hi"; "... a number >= lo" when hi is
 * LLONG_MAX). */
int sw_config_number(char *const *envp, const char *key, long long def, long long lo,
		     long long hi, long long *out, char *errstr, size_t errlen);

/* The "name=value,name=value" setting KEY of envp (librdkafka tuning) as
 * entries of out: the value is copied into buf and split at each ',' (empty
 * entries skipped); the entries follow the n already in out (fixed ones)
 * and a NULL ends them; out has cap slots. Unset KEY: no entry. Returns the
 * entries in out, NULL excluded, or -1 with errstr when the value does not
 * fit buf or the entries do not fit out. */
int sw_config_list(char *const *envp, const char *key, const char **out, size_t n, size_t cap,
		   char *buf, size_t buflen, char *errstr, size_t errlen);

/* Enumeration of log levels from a string; SW_LOG_INFO when unknown. */
enum sw_log_level sw_log_level_parse(const char *s);

/* ---- UUIDv7 ----------------------------------------------------------- */

#define SW_UUID_STRLEN 37 /* 36 chars + NUL */

/* A new UUIDv7: 48-bit Unix ms timestamp, monotonic within the process
 * (a counter in rand_a when two calls share a millisecond), random rest
 * from libsodium. Thread-safe. */
void sw_uuid_v7(uint8_t out[16]);
void sw_uuid_format(const uint8_t in[16], char out[SW_UUID_STRLEN]);
/* Parse the 8-4-4-4-12 hex form; returns 0 or -1. */
int sw_uuid_parse(const char *s, uint8_t out[16]);
/* Convenience: a new v7 directly as a string. */
void sw_uuid_v7_str(char out[SW_UUID_STRLEN]);
/* The id of the event that label names for base (another event's id), the
 * same on every call: base's 48-bit timestamp, then version 7, the variant,
 * and 74 bits of BLAKE2b-128 of (label, base). A UUIDv7 whose time is
 * base's, for events that must get the same id when made twice (a pure
 * step's step.finished, from its dispatch's id). */
void sw_uuid_derive(const uint8_t base[16], const char *label, uint8_t out[16]);

/* ---- clocks ----------------------------------------------------------- */

int64_t sw_now_us(void);      /* CLOCK_REALTIME, microseconds */
int64_t sw_mono_ns(void);     /* CLOCK_MONOTONIC, nanoseconds */
int64_t sw_mono_ms(void);     /* CLOCK_MONOTONIC, milliseconds (sw_mono_ns / 1e6) */

/* ---- growable buffer -------------------------------------------------- */

/*
 * Bytes appended at the end; p is always NUL-terminated once anything was
 * added (p[len] == 0), so text can be used as a string. max caps len (0:
 * no cap): an append that would pass it adds nothing, sets over and fails.
 * An allocation failure sets oom and fails; later appends then fail too,
 * so a caller may append a series and check once. The buffer owns p.
 * A zeroed struct is an empty, uncapped buffer.
 */
struct sw_buf {
	char *p;
	size_t len, cap;
	size_t max; /* 0: no cap */
	int over;   /* an append was refused for passing max */
	int oom;    /* an allocation failed */
};

void sw_buf_init(struct sw_buf *b, size_t max);
/* Append n bytes; 0, or -1 (over or oom set). */
int sw_buf_add(struct sw_buf *b, const void *p, size_t n);
int sw_buf_puts(struct sw_buf *b, const char *s);
int sw_buf_printf(struct sw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Forget the contents, keep the memory and the cap; clears over. */
void sw_buf_reset(struct sw_buf *b);
/* Free the memory; the buffer is empty again (the cap is kept). */
void sw_buf_free(struct sw_buf *b);
/* The contents, now the caller's (free()); NULL when empty. The buffer
 * is empty again. *len (if not NULL) gets the length. */
char *sw_buf_steal(struct sw_buf *b, size_t *len);

/* ---- hex ---------------------------------------------------------------- */

/* n bytes as 2n lower-case hex digits and a NUL into out (2n+1 bytes). */
void sw_hex_encode(const void *in, size_t n, char *out);
/* The same, allocated (caller frees); NULL when out of memory. */
char *sw_hex_dup(const void *in, size_t n);
/* The value of one hex digit (either case), or -1. */
int sw_hex_digit(char c);
/* 2n hex digits (either case) into n bytes; 0, or -1 when s is not exactly
 * 2n hex digits. */
int sw_hex_decode(const char *s, void *out, size_t n);

/* ---- hashing -------------------------------------------------------------- */

/* FNV-1a over the bytes of s (to its NUL), continuing from h: start with
 * SW_FNV1A_INIT. For hash tables of ids, not for anything an attacker's
 * collisions could harm beyond speed. */
#define SW_FNV1A_INIT 2166136261u
uint32_t sw_fnv1a(uint32_t h, const char *s);

/* ---- JSON text ---------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at s[0..n) (n > 0), as jansson
 * takes UTF-8 (a NUL is a sequence of one byte), or 0 when none starts
 * there. */
size_t sw_utf8_seq(const unsigned char *s, size_t n);
/* 1 when s[0..n) is valid UTF-8 as jansson takes it, else 0. */
int sw_utf8_valid(const char *s, size_t n);

struct json_t;
/* A jansson string of s, with every byte of an invalid UTF-8 sequence
 * shown as '?' (jansson refuses invalid UTF-8); NULL s is "(null)". NULL
 * only when out of memory. */
struct json_t *sw_json_string_lossy(const char *s);

/* ---- host:port ---------------------------------------------------------- */

#define SW_HOST_MAX 260 /* a canonical host, brackets and NUL included */

/*
 * Parse the authority s[0..n): "host:port", or "host" when defport > 0.
 * host is a DNS name, a dotted-quad IPv4 literal or an [IPv6] literal (no
 * zone). Other numeric spellings that resolvers read differently ("127.1",
 * "2130706433", "0x7f.1") are refused, as are wildcards ("*") and empty
 * labels. Fills host with the canonical spelling (lower case, no trailing
 * dot; IPv6 as "[" inet_ntop "]"), *port, *family (0 for a name, AF_INET,
 * AF_INET6) and, for a literal, *ss and *sslen with the port set.
 * 0, or -1 with *why (a static string).
 */
int sw_hostport_parse(const char *s, size_t n, int defport, char host[SW_HOST_MAX], int *port,
		      int *family, struct sockaddr_storage *ss, socklen_t *sslen,
		      const char **why);

#endif
