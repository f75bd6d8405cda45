/*
 * agent.c: the cli_agent mode on this sandbox host (docs/SANDBOX.md,
 * "cli_agent").
 *
 * A cli_agent step is an identity_scoped step whose command is a coding
 * agent's CLI, built here from a per-agent table -- never from a shell
 * line of the workflow's (but for custom, whose spec.run is the command):
 *
 *   claude-code  claude -p PROMPT --dangerously-skip-permissions
 *   codex        codex exec --skip-git-repo-check
 *                      --dangerously-bypass-approvals-and-sandbox PROMPT
 *                (and $CODEX_HOME/config.toml: the provider's base_url from
 *                the identity's OPENAI_BASE_URL, env_key OPENAI_API_KEY,
 *                update checks, analytics and plugins off)
 *   gemini       gemini [-m GEMINI_MODEL] -p PROMPT --yolo
 *                (and ~/.gemini/settings.json: API-key auth, no folder
 *                trust prompt, no telemetry or update checks)
 *   custom       spec.run (argv: PROMPT appended; a string: /bin/sh -c RUN
 *                sagewai-agent PROMPT, so the prompt is $1, data to the shell)
 *
 * The prompt is one argv element (a leading '-' gets a space before it, so
 * that no CLI reads it as an option). HOME is a private directory on the
 * sandbox's /tmp (so the CLIs' own state never lands in /workspace, which
 * is the artifact), TMPDIR /tmp; the proxy variables are the sandbox's.
 *
 * Order of one step, all through the tool runner, on the loop:
 *   PREPARING   /bin/sh -c <fixed script> makes HOME (0700) and writes the
 *               agent's configuration file from stdin (ours: no workflow
 *               text in the script), or, for an agent without one,
 *               mkdir -p -m 0700 HOME; no identity yet
 *   SEALING     identity.c: the values sealed to this host, injected for
 *               the next exec only; each value is also kept here (sodium
 *               memory) for the artifact's scan and push
 *   RUNNING     the agent, output streamed redacted (exec.c, as
 *               identity_scoped); non-zero: the step fails, nothing is
 *               delivered
 *   PACKING     SBD_ARTIFACT_PACK_ARGV: a tar of /workspace on stdout, raw,
 *               into a memfd capped at SAGEWAI_ARTIFACT_MAX_BYTES plus tar's
 *               overhead (never streamed: the scan decides what may leave)
 *   DELIVERING  the sandbox is destroyed; artifact.c stages, hashes, scans
 *               and delivers the snapshot (or, without an artifact, only
 *               lists it); its answer ends the step with {agent, exit_code,
 *               files_changed, artifact, stdout, stderr}.
 * A cancel, a timeout, a revocation, anything that ends the attempt first
 * kills the sandbox (exec.c) and abandons the delivery (no callback).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sodium.h>

#include "sandboxd.h"
#include "sw_executor.h"

#define SBD_AGENT_HOME "/tmp/sagewai-home"
#define SBD_AGENT_PROMPT_MAX (100u << 10) /* one argv element: below MAX_ARG_STRLEN */
#define SBD_AGENT_STDOUT_TAIL (16u << 10) /* of the agent's stdout in the output */
#define SBD_AGENT_STDERR_TAIL (4u << 10)
#define SBD_AGENT_PREP_TIMEOUT_MS 30000
#define SBD_AGENT_KEEP_MAX SBD_ARTIFACT_SECRETS_MAX
#define SBD_AGENT_URL_MAX 512

/* The home's setup: $1 the home, $2 its configuration file (relative, or
 * "") written from stdin. Fixed text; the arguments are ours. */
#define SBD_AGENT_PREP_SCRIPT                                                                     \
	"umask 077 && mkdir -p \"$1\" && if [ -n \"$2\" ]; then "                                 \
	"mkdir -p \"$(dirname \"$1/$2\")\" && cat > \"$1/$2\"; fi"

enum sbd_agent_kind { AGENT_CLAUDE, AGENT_CODEX, AGENT_GEMINI, AGENT_CUSTOM };

static const struct agent_def {
	const char *name;	  /* spec.cli_agent */
	const char *variant;	  /* the default variant */
	const char *config;	  /* its configuration file under HOME, or NULL */
	const char *const env[6]; /* its environment beyond HOME and TMPDIR */
} agents[] = {
    [AGENT_CLAUDE] = {"claude-code",
		      "claude-code",
		      NULL,
		      {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "CLAUDE_CODE_MAX_RETRIES=2",
		       "CLAUDE_CODE_TMPDIR=/tmp", "IS_SANDBOX=1", "DISABLE_AUTOUPDATER=1", NULL}},
    [AGENT_CODEX] = {"codex",
		     "codex",
		     ".codex/config.toml",
		     {"CODEX_HOME=" SBD_AGENT_HOME "/.codex", NULL}},
    [AGENT_GEMINI] = {"gemini",
		      "gemini",
		      ".gemini/settings.json",
		      {"NODE_OPTIONS=--disable-wasm-trap-handler", "GEMINI_CLI_NO_RELAUNCH=true",
		       NULL}},
    [AGENT_CUSTOM] = {"custom", "base", NULL, {NULL}},
};

struct sbd_agent {
	enum sbd_agent_kind kind;
	char *prompt;	  /* the rendered prompt, "" when none */
	json_t *artifact; /* the rendered spec.artifact, or NULL: list only */
	char *config;	  /* the configuration file's text, or NULL */
	int exit_code;	  /* the agent's */
	/* the snapshot */
	int pack_fd; /* memfd */
	uint64_t pack_bytes, pack_max;
	bool pack_over;	       /* over pack_max: the exec was killed */
	int pack_errno;	       /* a write to the memfd failed */
	struct sw_buf errtail; /* stderr of our execs (the home, the snapshot), capped */
	/* the injected values, for the artifact */
	struct sbd_artifact_secret keep[SBD_AGENT_KEEP_MAX];
	unsigned char *keepv[SBD_AGENT_KEEP_MAX]; /* sodium_malloc'd */
	char keepenv[SBD_AGENT_KEEP_MAX][256];
	size_t nkeep;
	bool delivering; /* a delivery is queued: abandon it if the job ends */
	char sandbox_id[SW_UUID_STRLEN];
};

int sbd_agent_custom(const struct sbd_job *j)
{
	return j->agent != NULL && j->agent->kind == AGENT_CUSTOM;
}

/* ---- preflight ------------------------------------------------------------ */

int sbd_agent_new(struct sbd_job *j, const char **variant, char *err, size_t errlen)
{
	json_t *spec = j->x->spec, *a = json_object_get(spec, "cli_agent");
	json_t *p = json_object_get(spec, "prompt"), *art = json_object_get(spec, "artifact");
	json_t *run = json_object_get(spec, "run");
	struct sbd_agent *ag;
	char why[300];
	size_t k;

	if (!json_is_string(a)) {
		snprintf(err, errlen,
			 "spec.cli_agent is missing (claude-code, codex, gemini or "
			 "custom)");
		return -1;
	}
	for (k = 0; k < sizeof(agents) / sizeof(agents[0]); k++)
		if (strcmp(json_string_value(a), agents[k].name) == 0)
			break;
	if (k == sizeof(agents) / sizeof(agents[0])) {
		snprintf(err, errlen,
			 "spec.cli_agent '%.40s' is not claude-code, codex, gemini or "
			 "custom",
			 json_string_value(a));
		return -1;
	}
	if (json_is_string(p) && strlen(json_string_value(p)) != json_string_length(p)) {
		snprintf(err, errlen, "spec.prompt holds NUL");
		return -1;
	}
	if (k != AGENT_CUSTOM && run != NULL && !json_is_null(run)) {
		snprintf(err, errlen,
			 "spec.run is only for cli_agent custom (%s's command line is "
			 "this host's)",
			 agents[k].name);
		return -1;
	}
	if (k == AGENT_CUSTOM && (run == NULL || json_is_null(run))) {
		snprintf(err, errlen, "cli_agent custom needs spec.run");
		return -1;
	}
	if (art != NULL && !json_is_null(art) && sw_artifact_check(art, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	if ((ag = calloc(1, sizeof(*ag))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ag->kind = (enum sbd_agent_kind)k;
	ag->pack_fd = -1;
	sw_buf_init(&ag->errtail, 0);
	j->agent = ag;
	if (p == NULL || json_is_null(p))
		ag->prompt = strdup("");
	else if (json_is_string(p))
		ag->prompt = strdup(json_string_value(p));
	else /* a template made it a JSON value: its compact text, as env's */
		ag->prompt = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
	if (ag->prompt == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (strlen(ag->prompt) > SBD_AGENT_PROMPT_MAX) {
		snprintf(err, errlen, "spec.prompt is %zu bytes, over %u", strlen(ag->prompt),
			 SBD_AGENT_PROMPT_MAX);
		return -1;
	}
	if (art != NULL && !json_is_null(art))
		ag->artifact = json_incref(art);
	*variant = agents[k].variant;
	return 0;
}

/* The plain knob env of j's identity, or NULL. */
static const char *knob(const struct sbd_job *j, const char *env)
{
	for (size_t i = 0; j->ident != NULL && i < j->ident->nkeys; i++)
		if (j->ident->keys[i].plain != NULL && strcmp(j->ident->keys[i].env, env) == 0)
			return j->ident->keys[i].plain;
	return NULL;
}

/* An http(s) URL that can stand in a TOML basic string as is: no quote,
 * backslash, space or control character. */
static int url_ok(const char *s)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				 "-._~:/?#[]@!$&'()*+,;=%";
	size_t n = strlen(s);

	return (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0) &&
	       n <= SBD_AGENT_URL_MAX && strspn(s, ok) == n;
}

/* A model name as the providers spell them. */
static int model_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 128 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:/") ==
		   n;
}

/* Append s (copied) to the NULL-terminated *v of *n. 0 or -1. */
static int vec_add(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));

	if (nv == NULL)
		return -1;
	*v = nv;
	if ((nv[*n] = strdup(s)) == NULL) {
		nv[*n] = NULL;
		return -1;
	}
	nv[++*n] = NULL;
	return 0;
}

static size_t vec_len(char **v)
{
	size_t n = 0;

	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

static int codex_config(struct sbd_job *j, char *err, size_t errlen)
{
	const char *url = knob(j, "OPENAI_BASE_URL"), *model = knob(j, "OPENAI_MODEL");
	char mline[160] = "";

	if (url == NULL)
		url = "https://api.openai.com/v1";
	if (!url_ok(url)) {
		snprintf(err, errlen,
			 "the identity's OPENAI_BASE_URL is not an http(s) URL of "
			 "plain characters");
		return -1;
	}
	if (model != NULL) {
		if (!model_ok(model)) {
			snprintf(err, errlen, "the identity's OPENAI_MODEL is not a model name");
			return -1;
		}
		snprintf(mline, sizeof(mline), "model = \"%s\"\n", model);
	}
	if (asprintf(&j->agent->config,
		     "%s"
		     "model_provider = \"sagewai\"\n"
		     "check_for_update_on_startup = false\n"
		     "[model_providers.sagewai]\n"
		     "name = \"sagewai\"\n"
		     "base_url = \"%s\"\n"
		     "wire_api = \"responses\"\n"
		     "env_key = \"OPENAI_API_KEY\"\n"
		     "request_max_retries = 2\n"
		     "stream_max_retries = 2\n"
		     "[analytics]\n"
		     "enabled = false\n"
		     "[features]\n"
		     "plugins = false\n"
		     "apps = false\n"
		     "remote_plugin = false\n",
		     mline, url) < 0) {
		j->agent->config = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int sbd_agent_build(struct sbd_job *j, char *err, size_t errlen)
{
	struct sbd_agent *ag = j->agent;
	const struct agent_def *d = &agents[ag->kind];
	size_t na = vec_len(j->argv), ne = vec_len(j->envp);
	const char *model;
	char *prompt = ag->prompt;
	int rc = -1;

	/* a prompt is data: never an option of the CLI */
	if (prompt[0] == '-' && asprintf(&prompt, " %s", ag->prompt) < 0) {
		prompt = NULL;
		goto oom;
	}
	switch (ag->kind) {
	case AGENT_CLAUDE:
		if (vec_add(&j->argv, &na, "claude") || vec_add(&j->argv, &na, "-p") ||
		    vec_add(&j->argv, &na, prompt) ||
		    vec_add(&j->argv, &na, "--dangerously-skip-permissions"))
			goto oom;
		break;
	case AGENT_CODEX:
		if (codex_config(j, err, errlen) != 0)
			goto out;
		if (vec_add(&j->argv, &na, "codex") || vec_add(&j->argv, &na, "exec") ||
		    vec_add(&j->argv, &na, "--skip-git-repo-check") ||
		    vec_add(&j->argv, &na, "--dangerously-bypass-approvals-and-sandbox") ||
		    vec_add(&j->argv, &na, prompt))
			goto oom;
		break;
	case AGENT_GEMINI:
		if ((ag->config = strdup(
			 "{\"security\": {\"auth\": {\"selectedType\": \"gemini-api-key\"},"
			 " \"folderTrust\": {\"enabled\": false}},"
			 " \"privacy\": {\"usageStatisticsEnabled\": false},"
			 " \"general\": {\"disableAutoUpdate\": true, \"disableUpdateNag\": true},"
			 " \"telemetry\": {\"enabled\": false}}\n")) == NULL ||
		    vec_add(&j->argv, &na, "gemini"))
			goto oom;
		if ((model = knob(j, "GEMINI_MODEL")) != NULL) {
			if (!model_ok(model)) {
				snprintf(err, errlen,
					 "the identity's GEMINI_MODEL is not a model "
					 "name");
				goto out;
			}
			if (vec_add(&j->argv, &na, "-m") || vec_add(&j->argv, &na, model))
				goto oom;
		}
		if (vec_add(&j->argv, &na, "-p") || vec_add(&j->argv, &na, prompt) ||
		    vec_add(&j->argv, &na, "--yolo"))
			goto oom;
		break;
	case AGENT_CUSTOM:
		/* spec.run as exec.c parsed it; a string ran as sh -c RUN: the
		 * prompt is its $1 ($0 names it) */
		if (prompt[0] != '\0' && json_is_string(json_object_get(j->x->spec, "run")) &&
		    vec_add(&j->argv, &na, "sagewai-agent"))
			goto oom;
		if (prompt[0] != '\0' && vec_add(&j->argv, &na, prompt))
			goto oom;
		break;
	}
	if (na > 4096) {
		snprintf(err, errlen, "spec.run: too many arguments");
		goto out;
	}
	/* the region a push to s3 may need is a plain knob, not a secret */
	for (size_t i = 0; i < 2; i++) {
		const char *name = i ? "AWS_DEFAULT_REGION" : "AWS_REGION", *v = knob(j, name);

		if (v != NULL && v[0] != '\0' && sbd_agent_keep(j, name, v, strlen(v)) != 0)
			goto oom;
	}
	/* ours over the step's env (the runner: the last of a name wins) */
	if (vec_add(&j->envp, &ne, "HOME=" SBD_AGENT_HOME) ||
	    vec_add(&j->envp, &ne, "TMPDIR=/tmp"))
		goto oom;
	for (size_t i = 0; d->env[i] != NULL; i++)
		if (vec_add(&j->envp, &ne, d->env[i]))
			goto oom;
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	if (prompt != ag->prompt)
		free(prompt);
	return rc;
}

/* ---- the stages --------------------------------------------------------------- */

/* Keep the tail of our own execs' stderr (for an error text). */
static void errtail_add(struct sbd_agent *ag, const uint8_t *buf, size_t len)
{
	if (len >= SBD_AGENT_STDERR_TAIL) {
		sw_buf_reset(&ag->errtail);
		buf += len - SBD_AGENT_STDERR_TAIL;
		len = SBD_AGENT_STDERR_TAIL;
	} else if (ag->errtail.len + len > SBD_AGENT_STDERR_TAIL) {
		size_t drop = ag->errtail.len + len - SBD_AGENT_STDERR_TAIL;

		memmove(ag->errtail.p, ag->errtail.p + drop, ag->errtail.len - drop);
		ag->errtail.len -= drop;
	}
	(void)sw_buf_add(&ag->errtail, buf, len); /* out of memory: a shorter tail */
}

/* The tail as text for an error, redacted (a snapshot's tar could name a
 * file spelled with a value); "" when none. Caller frees. */
static char *errtail_text(struct sbd_job *j)
{
	struct sbd_agent *ag = j->agent;
	size_t n = ag->errtail.len;
	char *t, *r;

	while (n > 0 && (ag->errtail.p[n - 1] == '\n' || ag->errtail.p[n - 1] == '\r'))
		n--;
	if ((t = sw_executor_utf8(n ? ag->errtail.p : "", n)) == NULL)
		return NULL;
	r = sbd_identity_redact(j, t);
	free(t);
	return r;
}

void sbd_agent_prepare(struct sbd_job *j)
{
	struct sbd_agent *ag = j->agent;
	const char *cfg = agents[ag->kind].config;
	const char *argv[] = {
	    "/bin/sh",	    "-c", SBD_AGENT_PREP_SCRIPT, "sagewai-prep", SBD_AGENT_HOME,
	    cfg ? cfg : "", NULL};
	/* no configuration file: the home alone, one exec instead of a shell
	 * and its mkdir (bench/cli_agent: the step waits for it) */
	const char *mkdir_argv[] = {"/bin/mkdir", "-p", "-m", "0700", SBD_AGENT_HOME, NULL};
	struct sw_sandbox_exec ex = {.argv = cfg ? argv : mkdir_argv,
				     .timeout_ms = SBD_AGENT_PREP_TIMEOUT_MS,
				     .stdin_data = ag->config,
				     .stdin_len = ag->config ? strlen(ag->config) : 0};

	j->stage = SBD_PREPARING;
	snprintf(ag->sandbox_id, sizeof(ag->sandbox_id), "%s", j->slot->id);
	(void)sbd_exec_launch(j, &ex);
}

int sbd_agent_running(struct sbd_job *j, struct sw_sandbox_exec *ex)
{
	(void)ex; /* the agent runs for what is left of the step's timeout */
	sw_buf_reset(&j->agent->errtail);
	return 0;
}

int sbd_agent_output(struct sbd_job *j, int stream, const uint8_t *buf, size_t len)
{
	struct sbd_agent *ag = j->agent;

	if (j->stage == SBD_RUNNING)
		return 0;
	if (stream != 1 || j->stage != SBD_PACKING) {
		errtail_add(ag, buf, len);
		return 1;
	}
	/* the snapshot, raw: the scan, not the redactor, decides what leaves */
	if (ag->pack_over || ag->pack_errno != 0)
		return 1;
	if (ag->pack_bytes + len > ag->pack_max) {
		ag->pack_over = true;
		(void)sw_sandbox_exec_kill(j->slot->sb); /* sent once the read is done */
		return 1;
	}
	while (len > 0) {
		ssize_t w = write(ag->pack_fd, buf, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			ag->pack_errno = w < 0 ? errno : EIO;
			(void)sw_sandbox_exec_kill(j->slot->sb);
			return 1;
		}
		buf += w;
		len -= (size_t)w;
		ag->pack_bytes += (uint64_t)w;
	}
	return 1;
}

static void delivered(void *opaque, const struct sbd_artifact_result *r);

/* The agent exited 0: tar /workspace to stdout, into a memfd. */
void sbd_agent_ran(struct sbd_job *j)
{
	static const char *const pack[] = SBD_ARTIFACT_PACK_ARGV;
	struct sbd_agent *ag = j->agent;
	struct sw_sandbox_exec ex = {.argv = pack};
	const struct sbd_artifact_config *c = &j->env->art_cfg;

	ag->exit_code = j->ex.status;
	j->stage = SBD_PACKING;
	sw_buf_reset(&ag->errtail);
	/* tar's headers and padding: at most 1.5 KiB per file beyond its bytes */
	ag->pack_max = c->max_bytes + (uint64_t)c->max_files * 1536 + (1u << 20);
	if ((ag->pack_fd = memfd_create("sagewai-workspace", MFD_CLOEXEC)) < 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"internal: cannot hold the workspace snapshot: %s",
				strerror(errno));
		return;
	}
	(void)sbd_exec_launch(j, &ex);
}

/* After the snapshot: the sandbox goes, the delivery is queued. */
static void deliver(struct sbd_job *j)
{
	struct sbd_agent *ag = j->agent;
	struct sbd_artifact_req req = {.spec = ag->artifact,
				       .list_only = ag->artifact == NULL,
				       .workspace_fd = ag->pack_fd,
				       .secrets = ag->keep,
				       .nsecrets = ag->nkeep,
				       .h = &j->x->dh,
				       .step = j->x->step,
				       .sandbox_id = ag->sandbox_id};
	char err[600];
	int rc;

	j->stage = SBD_DELIVERING;
	sbd_exec_drop_sandbox(j); /* nothing more runs in it */
	sbd_exec_rearm(j);
	if (lseek(ag->pack_fd, 0, SEEK_SET) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"internal: cannot read the workspace snapshot back");
		return;
	}
	ag->pack_fd = -1; /* taken, even on failure */
	rc = sbd_artifact_deliver(j->env, &req, delivered, j, err, sizeof(err));
	/* the module copied them: ours go now */
	for (size_t i = 0; i < ag->nkeep; i++) {
		sodium_free(ag->keepv[i]);
		ag->keepv[i] = NULL;
	}
	ag->nkeep = 0;
	if (rc != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "%s", err);
		return;
	}
	ag->delivering = true;
}

void sbd_agent_exited(struct sbd_job *j)
{
	struct sbd_agent *ag = j->agent;
	const struct sw_sandbox_exit *ex = &j->ex;
	char *tail;

	if (j->stage == SBD_PREPARING) {
		if (ex->error == NULL && !ex->timed_out && ex->status == 0) {
			sbd_exec_rearm(j);
			if (j->x->phase == SW_EXECUTOR_ACTIVE)
				sbd_identity_seal(j); /* sbd_exec_run once the values are in */
			return;
		}
		tail = errtail_text(j);
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"sandbox_error: the agent's home could not be prepared in variant "
				"%s (%s%s%d)%s%s",
				j->warm->variant, ex->error ? ex->error : "",
				ex->error ? ", " : "status ", ex->status,
				tail && tail[0] ? ": " : "", tail ? tail : "");
		free(tail);
		return;
	}
	/* the snapshot */
	if (ag->pack_over) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"artifact_too_large: the workspace is more than %llu bytes "
				"(SAGEWAI_ARTIFACT_MAX_BYTES); nothing was delivered",
				(unsigned long long)j->env->art_cfg.max_bytes);
		return;
	}
	if (ag->pack_errno != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"internal: the workspace snapshot could not be kept: %s",
				strerror(ag->pack_errno));
		return;
	}
	if (ex->error != NULL || ex->timed_out || ex->status != 0) {
		tail = errtail_text(j);
		if (ex->timed_out)
			sbd_exec_finish(
			    j, SW_STEP_TIMED_OUT, NULL,
			    "timeout: the workspace snapshot did not finish within the "
			    "step's timeout");
		else
			sbd_exec_finish(
			    j, SW_STEP_FAILED, NULL,
			    "artifact_failed: the workspace snapshot failed (%s %d)%s%s; "
			    "nothing was delivered",
			    ex->error ? ex->error : "tar exited with status",
			    ex->error ? 0 : ex->status, tail && tail[0] ? ": " : "",
			    tail ? tail : "");
		free(tail);
		return;
	}
	deliver(j);
}

/* The last max bytes of b as text (valid UTF-8); NULL when out of memory. */
static char *tail_of(const struct sw_buf *b, size_t max)
{
	size_t from = b->len > max ? b->len - max : 0;

	/* not inside a UTF-8 sequence */
	while (from > 0 && from < b->len && ((unsigned char)b->p[from] & 0xc0) == 0x80)
		from++;
	return sw_executor_utf8(b->len ? b->p + from : "", b->len - from);
}

/* files_changed: the snapshot's files with size and sha256 (the first
 * SBD_ARTIFACT_LIST_MAX), from the summary's list or, for none, its
 * workspace (without the contents, which are under "workspace"). */
static json_t *files_changed(const struct sbd_artifact_result *r)
{
	json_t *src = json_object_get(r->summary, "list"), *list = json_array(), *f;
	size_t i;

	if (src == NULL)
		src = json_object_get(r->summary, "workspace");
	if (list == NULL)
		return NULL;
	json_array_foreach(src, i, f)
		if (json_array_append_new(list, json_pack("{s:O, s:O, s:O}", "path",
							  json_object_get(f, "path"), "size",
							  json_object_get(f, "size"), "sha256",
							  json_object_get(f, "sha256"))) != 0) {
			json_decref(list);
			return NULL;
		}
	return json_pack("{s:I, s:I, s:o, s:O*}", "files", (json_int_t)r->files, "bytes",
			 (json_int_t)r->bytes, "list", list, "skipped",
			 json_object_get(r->summary, "skipped"));
}

static void delivered(void *opaque, const struct sbd_artifact_result *r)
{
	struct sbd_job *j = opaque;
	struct sbd_agent *ag = j->agent;
	char *out = NULL, *err = NULL;
	json_t *o = NULL, *fc;

	ag->delivering = false;
	if (!r->ok) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "%s", r->error);
		return;
	}
	if ((fc = files_changed(r)) == NULL ||
	    (out = tail_of(&j->out, SBD_AGENT_STDOUT_TAIL)) == NULL ||
	    (err = tail_of(&j->err, SBD_AGENT_STDERR_TAIL)) == NULL ||
	    (o = json_pack("{s:s, s:i, s:o, s:s, s:s}", "agent", agents[ag->kind].name,
			   "exit_code", ag->exit_code, "files_changed", fc, "stdout", out,
			   "stderr", err)) == NULL) {
		if (o == NULL)
			json_decref(fc);
		free(out);
		free(err);
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "internal: out of memory");
		return;
	}
	free(out);
	free(err);
	if (!r->ok || ag->artifact == NULL)
		json_object_set_new(o, "artifact", json_null());
	else
		json_object_set_new(o, "artifact",
				    json_pack("{s:s, s:s}", "destination", r->destination,
					      "location", r->location));
	if (json_object_get(r->summary, "workspace") != NULL)
		json_object_set(o, "workspace", json_object_get(r->summary, "workspace"));
	if (j->truncated || j->out.len > SBD_AGENT_STDOUT_TAIL ||
	    j->err.len > SBD_AGENT_STDERR_TAIL)
		json_object_set_new(o, "truncated", json_true());
	sbd_exec_finish(j, SW_STEP_SUCCEEDED, o, NULL);
}

/* ---- the values -------------------------------------------------------------- */

int sbd_agent_keep(struct sbd_job *j, const char *env, const void *value, size_t len)
{
	struct sbd_agent *ag = j->agent;
	size_t i = ag->nkeep;

	if (i >= SBD_AGENT_KEEP_MAX || len == 0 || strlen(env) >= sizeof(ag->keepenv[i]) ||
	    (ag->keepv[i] = sodium_malloc(len)) == NULL)
		return -1;
	memcpy(ag->keepv[i], value, len);
	snprintf(ag->keepenv[i], sizeof(ag->keepenv[i]), "%s", env);
	ag->keep[i] = (struct sbd_artifact_secret){ag->keepenv[i], ag->keepv[i], len};
	ag->nkeep++;
	return 0;
}

void sbd_agent_release(struct sbd_job *j)
{
	struct sbd_agent *ag = j->agent;

	if (ag == NULL)
		return;
	if (ag->delivering)
		sbd_artifact_abandon(j->env, j); /* no callback; a running push is killed */
	for (size_t i = 0; i < ag->nkeep; i++)
		sodium_free(ag->keepv[i]);
	if (ag->pack_fd >= 0)
		close(ag->pack_fd);
	free(ag->prompt);
	free(ag->config);
	json_decref(ag->artifact);
	sw_buf_free(&ag->errtail);
	free(ag);
	j->agent = NULL;
}
