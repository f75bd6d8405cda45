/*
 * sw_workflow: workflow files (YAML, via libyaml) and step-input templates.
 *
 * A workflow file:
 *
 *     name: portfolio            # [a-z0-9][a-z0-9_.-]{0,62}
 *     version: 1                 # optional integer >= 1 (default 1)
 *     description: text          # optional
 *     steps:
 *       - name: plan             # unique, [a-z0-9][a-z0-9_-]{0,62}
 *         mode: in_process       # one of the five modes (default in_process)
 *         uses: llm              # in_process: template | llm | http | plugin:<name>
 *         with:                  # any YAML mapping; strings may hold ${{ expr }}
 *           prompt: "Extract requirements from: ${{ input.brief }}"
 *         timeout: 30s           # optional: ms, s, m (e.g. 500ms, 30s, 5m); default 60s
 *         retries: 2             # optional, 0..20, default 0
 *         backoff: 1s            # optional, first retry delay, doubled each retry; default 1s
 *         # sandboxed and later modes (parsed and kept, checked by their issue):
 *         run: "python3 -c ..."  # a shell command or script, or an argv list
 *                                # (no shell: templated values stay data)
 *         variant: base
 *         network: none | egress_only | full
 *         egress_allow: ["host:port", ...]
 *         limits: {memory_mb: 512, cpus: 1, pids: 64}   # see below
         env: {NAME: "value ${{ input.x }}"}          # see below
 *         cli_agent: claude-code | codex | gemini | custom
 *         identity: profile-name
 *         artifact: {destination: github|s3|local|none, ...}
 *         prompt: "..."
 *
 * cli_agent steps: cli_agent is required; claude-code, codex and gemini
 * need a prompt (the agent's task; the sandbox host builds their command
 * line, so run is refused), custom needs run (and gets the prompt, if
 * any, as its last argument). An empty prompt, or custom without one, is
 * anti-pattern 2 (a CLI agent for an identity_scoped task): a warning in
 * wf->warnings, not an error. Their timeout defaults to 30m. cli_agent,
 * prompt and artifact are refused on sandboxed and identity_scoped steps.
 *
 * artifact (cli_agent and cli_agent_jit steps only): where the sandbox
 * host delivers the step's /workspace once the agent is done
 * (docs/SANDBOX.md, "Artifacts"); string values, templates allowed (a
 * templated value is checked by the sandbox host once rendered):
 *   {destination: github, repo: https://host/owner/name.git, branch: main}
 *       repo: an http(s) URL without user@, query or fragment; branch
 *       (default main): a branch name, [A-Za-z0-9._/-], no .., //, /.
 *   {destination: s3, bucket: B, prefix?: P, endpoint?: URL, region?: R}
 *       an S3 bucket name; prefix a relative key prefix; endpoint
 *       scheme://host[:port] (the sandbox host must allow it)
 *   {destination: local, path: REL}   under the host's artifact directory
 *   {destination: none}                the workspace is the step's output
 *
 * Expressions: ${{ input.PATH }} and ${{ steps.NAME.output.PATH }} where
 * PATH is dot-separated keys and [N] indexes (input.items[0].name); a
 * string that is exactly one expression takes the JSON value (object,
 * number...), otherwise values are interpolated as text (strings bare,
 * other JSON compactly serialised). A steps.NAME reference must name an
 * earlier step. Unknown roots, unterminated ${{, bad paths: errors.
 *
 * limits: a mapping of memory_mb (SW_LIMIT_MEMORY_MB_*), pids, cpus (a
 * number, fractions allowed), cpu_seconds, file_size_mb, open_files; plain
 * numbers (no templates), each in its range below; any other key is an
 * error. The sandbox host maps them onto the variant it runs the step on
 * (docs/SANDBOX.md); one over the variant's bound is lowered to it there.
 *
 * env: a mapping of at most SW_STEP_ENV_MAX variables, names
 * [A-Za-z_][A-Za-z0-9_]* and not reserved (sw_step_env_refusal), values
 * strings (templated), names and values at most SW_STEP_ENV_BYTES_MAX
 * together. Values are plain: they travel in events and are no place for
 * secrets.
 *
 * Validation errors read "FILE:LINE:COL: message" (LINE and COL from 1).
 *
 * As read: YAML 1.2 core schema (plain 42, 1.5, true, null, ~ become JSON
 * numbers, booleans, null; quoted scalars and !!str stay strings); refused:
 * anchors and aliases, other tags, several documents, nesting deeper than
 * 32, duplicate keys, more than 1000 steps. uses is required for (and only
 * allowed on) in_process steps; the sandbox keys (run ... env) are refused
 * on in_process steps; timeout 1ms..24h, backoff 0..1h. Templates are
 * checked in with: and in the string values of the sandbox keys.
 * docs/WORKFLOWS.md is the reference for workflow authors.
 */
#ifndef SW_WORKFLOW_H
#define SW_WORKFLOW_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

enum sw_mode {
	SW_MODE_IN_PROCESS,
	SW_MODE_SANDBOXED,
	SW_MODE_IDENTITY_SCOPED,
	SW_MODE_CLI_AGENT,
	SW_MODE_CLI_AGENT_JIT,
	SW_MODE_COUNT
};

const char *sw_mode_name(enum sw_mode m);         /* "in_process", ... */
int sw_mode_parse(const char *s, enum sw_mode *m); /* 0 or -1 */
/* identity_scoped, cli_agent, cli_agent_jit: the preview-gated modes */
int sw_mode_identity_bearing(enum sw_mode m);

struct sw_step {
	char *name;
	enum sw_mode mode;
	char *uses;          /* in_process: "template", "llm", "http", "plugin:<name>" */
	json_t *with;        /* inputs, unrendered (owned; an object, maybe empty) */
	int64_t timeout_ms;
	int retries;
	int64_t backoff_ms;
	json_t *extra;       /* the other keys (run, variant, network, ...) as JSON (owned;
			      * always an object; env values always strings) */
	int line, col;       /* where the step starts in the file (0 from JSON) */
};

struct sw_workflow {
	char *name;
	int version;
	char *description;   /* may be NULL */
	struct sw_step *steps;
	size_t nsteps;
	json_t *warnings;    /* strings "FILE:LINE:COL: text" ("$.path: text" from JSON):
			      * what registers but should be otherwise (owned; an array,
			      * maybe empty) */
};

/* Parse and validate YAML text. filename is used in messages only. NULL
 * with errstr "FILE:LINE:COL: message" on any error (syntax, unknown key,
 * wrong type, duplicate step, unknown mode, bad uses for the mode, a
 * template naming an unknown or later step, limits out of range). Input
 * larger than 1 MiB is refused. */
struct sw_workflow *sw_workflow_parse(const char *yaml, size_t len, const char *filename,
				      char *errstr, size_t errlen);
void sw_workflow_free(struct sw_workflow *wf);

/* The canonical JSON form (for storage and the API) and back:
 * {"name", "version", "description"?, "steps": [{"name", "mode", "uses"?,
 * "with", "timeout_ms", "retries", "backoff_ms", <extra keys>...}]}.
 * to_json returns a new reference sharing nothing with wf. from_json does
 * not take j and applies every rule of the YAML parser; its errors read
 * "$.steps[1].name: message". */
json_t *sw_workflow_to_json(const struct sw_workflow *wf);
struct sw_workflow *sw_workflow_from_json(json_t *j, char *errstr, size_t errlen);

/* First step whose mode is not in runnable (a bit mask of 1 << mode), or
 * -1 when every step can run. */
int sw_workflow_first_unrunnable(const struct sw_workflow *wf, unsigned runnable);
/* 1 when any step is identity-bearing. */
int sw_workflow_identity_bearing(const struct sw_workflow *wf);

/* The preview gate's backstop on an executor (worker, sandboxd): the name of
 * the first identity-bearing mode in a step.dispatched spec's "run_modes"
 * array (the modes of the whole workflow), or NULL when there is none. */
const char *sw_spec_identity_mode(json_t *spec);

/* Render a step's with: against ctx = {"input": <run input>, "steps":
 * {"<name>": {"output": <value>}, ...}}. Returns a new reference, or NULL
 * with errstr naming the key path and the expression, e.g.
 * "with.prompt: ${{ input.brief }}: input.brief: no such key". The result
 * shares nothing with ctx (NULL ctx = {}) and may not exceed 64 MiB. */
json_t *sw_template_render(json_t *with, json_t *ctx, char *errstr, size_t errlen);

/* A step's env: how many variables, and how many bytes of "NAME=value\0"
 * entries together (checked at registration on the text as written, and
 * again by the executor after templating). */
#define SW_STEP_ENV_MAX 64
#define SW_STEP_ENV_BYTES_MAX (32u << 10)

/* Why a step's env may not set the variable name (len bytes): NULL when it
 * may, else a static reason ("is not a variable name ...", "is reserved by
 * the sandbox ..."). Reserved: PATH, HOME, the proxy variables (http_proxy,
 * https_proxy, ftp_proxy, all_proxy, no_proxy, in any case), everything
 * starting with SAGEWAI_ or LD_. Executors re-check dispatched specs with
 * it. */
const char *sw_step_env_refusal(const char *name, size_t len);

/* The ranges of the limits vocabulary (inclusive). */
#define SW_LIMIT_MEMORY_MB_MIN 16
#define SW_LIMIT_MEMORY_MB_MAX (1 << 20) /* 1 TiB */
#define SW_LIMIT_PIDS_MIN 1
#define SW_LIMIT_PIDS_MAX 65536
#define SW_LIMIT_CPUS_MAX 256 /* cpus: > 0 */
#define SW_LIMIT_CPU_SECONDS_MIN 1
#define SW_LIMIT_CPU_SECONDS_MAX 86400
#define SW_LIMIT_FILE_SIZE_MB_MIN 1
#define SW_LIMIT_FILE_SIZE_MB_MAX (1 << 20)
#define SW_LIMIT_DISK_MB_MIN 1
#define SW_LIMIT_DISK_MB_MAX 65536
#define SW_LIMIT_OPEN_FILES_MIN 16
#define SW_LIMIT_OPEN_FILES_MAX 65536

/* Parse "500ms", "30s", "5m", "1h" or a bare number of seconds. 0 or -1. */
int sw_duration_parse(const char *s, int64_t *ms);

/* ---- artifacts (artifact.c) ------------------------------------------- */

#define SW_ARTIFACT_URL_MAX 512	 /* repo, endpoint */
#define SW_ARTIFACT_PATH_MAX 512 /* prefix, path */

enum sw_artifact_dest {
	SW_ARTIFACT_NONE,
	SW_ARTIFACT_GITHUB,
	SW_ARTIFACT_S3,
	SW_ARTIFACT_LOCAL,
};

/* "none", "github", "s3", "local" -> d. 0 or -1. */
int sw_artifact_dest_parse(const char *s, enum sw_artifact_dest *d);

/* Why value[0..len) is refused for key (NULL when it is fine); each a
 * sentence part such as "it must not hold credentials (user@host): ...". */
const char *sw_artifact_repo_refusal(const char *s, size_t len);
const char *sw_artifact_branch_refusal(const char *s, size_t len);
const char *sw_artifact_bucket_refusal(const char *s, size_t len);
const char *sw_artifact_prefix_refusal(const char *s, size_t len);
const char *sw_artifact_endpoint_refusal(const char *s, size_t len);
const char *sw_artifact_region_refusal(const char *s, size_t len);
const char *sw_artifact_path_refusal(const char *s, size_t len);

/* For key of destination dest (a valid one): "is not a key of this
 * destination" when it has no such key, else value's refusal (NULL: fine;
 * value NULL: only the key is checked). *allowed: the destination's keys,
 * for messages. */
const char *sw_artifact_key_refusal(const char *dest, const char *key, const char *value,
				    size_t len, const char **allowed);
/* The first required key of dest that has(key, arg) says is absent, or
 * NULL. */
const char *sw_artifact_missing(const char *dest, int (*has)(const char *key, void *arg),
				void *arg);
/* A rendered artifact spec (a JSON object) by every rule above. 0, or -1
 * with err naming the key at fault, never more than 40 bytes of a key and
 * none of a value. */
int sw_artifact_check(json_t *spec, char *err, size_t errlen);

#endif
