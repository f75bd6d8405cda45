/*
 * sagewai: the operator and client command line.
 *
 *   sagewai [global options] GROUP COMMAND [arguments]
 *
 * It speaks the scheduler HTTP API of docs/RUNS.md, the audit service's
 * GET /v1/audit/runs/{id} and the identity service's API of
 * docs/IDENTITY.md, the audit service's GET /v1/audit/events, verifies and
 * tails audit logs offline with sw_alog, and re-publishes them with sw_replay.
 * Everything goes through one struct cli_env built by main.c from the
 * flags and the environment (SAGEWAI_URL, SAGEWAI_AUDIT_URL,
 * SAGEWAI_IDENTITY_URL, SAGEWAI_TOKEN, SAGEWAI_ADMIN_TOKEN, SAGEWAI_DATA_DIR).
 *
 * Output: human-readable on stdout, or with --json the server's answer
 * as it came. Errors: exactly one line "sagewai: <reason>" on stderr.
 * Exit codes: 0 ok, 1 failure (server error, failed run, bad log),
 * 2 usage. Tokens are sent as "Authorization: Bearer" and never printed.
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"
#define CLI_DEFAULT_AUDIT_URL "http://127.0.0.1:8081"
#define CLI_DEFAULT_IDENTITY_URL "http://127.0.0.1:8084"
#define CLI_DEFAULT_POLICY_URL "http://127.0.0.1:8085"

struct cli_env {
	char *url;               /* scheduler base URL, no trailing '/' (owned) */
	char *audit_url;         /* audit service base URL, no trailing '/' (owned) */
	char *identity_url;      /* identity service base URL, no trailing '/' (owned) */
	char *policy_url;        /* policy service base URL, no trailing '/' (owned) */
	const char *tenant;      /* --tenant: the tenant an admin call acts on; may be NULL */
	const char *token;       /* tenant key (--token, SAGEWAI_TOKEN); may be NULL */
	const char *admin_token; /* SAGEWAI_ADMIN_TOKEN; may be NULL */
	const char *data_dir;    /* SAGEWAI_DATA_DIR; may be NULL */
	int json;                /* --json: print raw JSON answers */
};

/* ---- main.c: options and errors --------------------------------------- */

/* One option of a command: "--name VALUE" (or "--name=VALUE") stores the
 * value in *val; a flag (val NULL) sets *flag to 1. */
struct cli_opt {
	const char *name; /* with the dashes, e.g. "--version" */
	const char **val;
	int *flag;
};

/* Parse a command's arguments (argv[0] is the command itself) against
 * opts (terminated by a NULL name) and the global options, which may
 * appear anywhere. Positionals go to pos (at most maxpos). Returns the
 * number of positionals; -1 after printing a usage error (exit 2);
 * -2 when --help/-h was given (print the help, exit 0). cmd names the
 * command in messages ("run submit"). */
int cli_parse(struct cli_env *env, const char *cmd, int argc, char **argv,
	      const struct cli_opt *opts, const char **pos, int maxpos);

/* Print "sagewai: <message>" as one line on stderr (control characters
 * become spaces). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* cli_error with a pointer to the command's help; returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Read a whole file ("-" = standard input), at most max bytes, into a
 * NUL-terminated buffer (caller frees); NULL with errstr. */
char *cli_read_file(const char *path, size_t max, size_t *len, char *errstr, size_t errlen);

/* A command of a group: argv[0] is the command's name. */
struct cli_cmd {
	const char *name;
	int (*fn)(struct cli_env *env, int argc, char **argv);
};

/* Run the group's command named by the first non-option argument after
 * argv[0] (the group), applying global options met on the way; --help
 * before it prints help. Returns the exit code. */
int cli_group(struct cli_env *env, const char *group, const char *help,
	      const struct cli_cmd *cmds, int argc, char **argv);

/* Dispatch a command group: argv[0] is "workflow", "run", ... One entry
 * per table row below; returns the exit code. */
int cli_workflow(struct cli_env *env, int argc, char **argv);
int cli_run(struct cli_env *env, int argc, char **argv);
int cli_audit(struct cli_env *env, int argc, char **argv);
int cli_tenant(struct cli_env *env, int argc, char **argv);
int cli_key(struct cli_env *env, int argc, char **argv);
int cli_secret(struct cli_env *env, int argc, char **argv);
int cli_identity(struct cli_env *env, int argc, char **argv);
int cli_user(struct cli_env *env, int argc, char **argv);
int cli_replay(struct cli_env *env, int argc, char **argv);
int cli_policy(struct cli_env *env, int argc, char **argv);
int cli_approvals(struct cli_env *env, int argc, char **argv);

/* ---- rerun.c: sagewai replay run -------------------------------------- */

int cli_replay_run(struct cli_env *env, int argc, char **argv);

/* ---- replay.c: repeatable options ----------------------------------- */

/* Take every "NAME VALUE" / "NAME=VALUE" out of argv (up to a "--"),
 * closing the gaps (*argc shrinks, argv[*argc] = NULL), the values into
 * vals (at most max; *n of them). -1 after a usage error (exit 2). */
int cli_take_list(int *argc, char **argv, const char *name, const char **vals, size_t max,
		  size_t *n, const char *cmd);
/* 0 when each of the n types is an event type this build knows; -1 after
 * a usage error naming the first that is not. */
int cli_check_types(const char *const *types, size_t n, const char *cmd);

/* ---- http.c: one request, or one event stream ----------------------- */

enum cli_target { CLI_SCHEDULER, CLI_AUDIT_SVC, CLI_IDENTITY_SVC, CLI_POLICY_SVC };

struct cli_resp {
	long status;   /* HTTP status, 0 when no answer came */
	char *body;    /* raw body, NUL-terminated (owned; may be NULL) */
	size_t len;
	json_t *json;  /* the parsed body of a 2xx answer (owned) */
	char code[64]; /* an error answer's error.code, else "" */
	char *message; /* an error answer's error.message (owned), else NULL */
};

/* Process-wide setup and teardown of libcurl (main only). */
int cli_http_init(void);
void cli_http_cleanup(void);

/* Send one request to target + path (path starts with '/', already
 * escaped). body (blen bytes, content type ctype) may be NULL. bearer,
 * when not NULL, goes in the Authorization header. Returns 0 for a 2xx
 * answer whose body is JSON (an empty body reads as {}); -1 with errstr
 * otherwise: transport failures ("cannot reach the scheduler at URL: ..."),
 * error answers ("<message> (<code>, HTTP <status>)"), non-JSON answers.
 * resp is filled as far as it got; cli_resp_free it in every case. */
int cli_http_call(struct cli_env *env, enum cli_target t, const char *method, const char *path,
		  const char *ctype, const char *body, size_t blen, const char *bearer,
		  struct cli_resp *resp, char *errstr, size_t errlen);
void cli_resp_free(struct cli_resp *r);

/* cli_http_call with body (may be NULL) sent as compact JSON and the
 * error said on stderr: 0 for a 2xx JSON answer, -1 otherwise. */
int cli_call_json(struct cli_env *env, enum cli_target t, const char *method, const char *path,
		  json_t *body, const char *bearer, struct cli_resp *resp);

/* The array under key in a list answer from who ("the scheduler"). 1: *list
 * is a non-empty array for the caller to print; 0: nothing left to do
 * (with --json the answer was printed, an empty list printed none);
 * -1: the answer has no such list (said on stderr). */
int cli_answer_list(const struct cli_env *env, const struct cli_resp *r, const char *key,
		    const char *who, const char *none, json_t **list);

struct cli_sse;
/* GET path from the scheduler as text/event-stream, feeding every chunk
 * to sse. Returns 0 when the server ended the stream, the parser
 * callback's positive value when it stopped the stream, -1 with errstr
 * (transport, HTTP error answer, malformed stream). */
int cli_http_stream(struct cli_env *env, const char *path, struct cli_sse *sse, char *errstr,
		    size_t errlen);
/* The same from target t with bearer (may be NULL). */
int cli_http_stream_at(struct cli_env *env, enum cli_target t, const char *path,
		       const char *bearer, struct cli_sse *sse, char *errstr, size_t errlen);

/* Percent-encode s for use as one path segment or query value; caller
 * frees. NULL when out of memory. */
char *cli_http_escape(const char *s);

/* ---- fmt.c: what the commands print --------------------------------- */

/* Copy s into out as one printable line: control characters become
 * spaces, and when it does not fit (or exceeds max bytes, 0 = no limit)
 * it ends in "..." (never cutting a UTF-8 sequence). Returns out. */
char *cli_oneline(const char *s, size_t max, char *out, size_t outlen);

/* RFC 3339 ("2024-05-01T12:00:00.123456Z", any offset) to microseconds
 * since the epoch; 0 or -1. */
int cli_time_parse(const char *s, int64_t *us);
/* "2024-05-01 12:00:00.123" (UTC) from microseconds. */
void cli_time_fmt(int64_t us, char *out, size_t outlen);
/* The same from an RFC 3339 string; the string itself when it does not
 * parse; "-" for NULL. */
void cli_time_fmt_str(const char *rfc3339, char *out, size_t outlen);
/* "0.35 ms", "1.2 ms", "3.41 s", "2m05s", "1h02m". */
void cli_duration_fmt(int64_t us, char *out, size_t outlen);
/* Duration between two RFC 3339 strings of obj's fields a and b;
 * "" when either is missing or unparsable. */
void cli_duration_between(json_t *obj, const char *a, const char *b, char *out, size_t outlen);

/* String field of obj, or dflt when absent, null or not a string. */
const char *cli_jstr(json_t *obj, const char *key, const char *dflt);

/* A table printed with columns padded to their widest cell. Cells are
 * copied (and made one-line); the last column is not padded. */
struct cli_table;
struct cli_table *cli_table_new(int ncols, const char *const *header);
int cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(const struct cli_table *t, FILE *out, const char *indent);
void cli_table_free(struct cli_table *t);

/* Print a JSON value pretty (indent 2) followed by a newline. */
void cli_json_print(json_t *v, FILE *out);
/* Print the raw body of an answer as it came, newline-terminated (--json). */
void cli_raw_print(const struct cli_resp *r, FILE *out);

/* ---- identity.c: shared by the secret and identity groups ------------ */

/* The token of a read of the identity API: the operator's when set, else
 * the tenant's; may be NULL (single_org mode reads need none). */
const char *cli_id_read_token(const struct cli_env *env);
/* "?level=L&tenant=T" for the identity API: level when not NULL, the
 * --tenant when given (else "_system" for level "system"); "" when
 * neither. Caller frees; NULL when out of memory. */
char *cli_id_query(const struct cli_env *env, const char *level);
/* "/v1/<collection>/<escaped name><suffix><query>"; caller frees, NULL
 * when out of memory. */
char *cli_id_path(const char *collection, const char *name, const char *suffix,
		  const char *query);

#endif
