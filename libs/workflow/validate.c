/*
 * The workflow rules: from a wf_node tree (YAML or canonical JSON) to a
 * checked struct sw_workflow. Every message names the node at fault.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sw_core.h"
#include "wf_int.h"

#define TIMEOUT_MAX_MS (24LL * 3600 * 1000)
#define BACKOFF_MAX_MS (3600LL * 1000)
#define RETRIES_MAX 20
#define CLI_AGENT_TIMEOUT_MS (30LL * 60 * 1000) /* a cli_agent step's default */

struct vctx {
	struct wf_doc *d;
	char **names; /* each step's name, NULL where it is missing or invalid */
	size_t nsteps;
	size_t self; /* the step being checked */
};

static const char *const extra_keys[] = {"run",	   "variant",	"network",  "egress_allow",
					 "limits", "cli_agent", "identity", "artifact",
					 "prompt", "env",	NULL};

static int in_list(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (!strcmp(s, *list))
			return 1;
	return 0;
}

static int is_str(const struct wf_node *n)
{
	return n->kind == WF_SCALAR && json_is_string(n->value);
}

/* [a-z0-9][a-z0-9<extra>]{0,62} */
static int name_ok(const char *s, size_t len, const char *extra)
{
	size_t i;

	if (len == 0 || len > 63)
		return 0;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (i == 0 || c == '\0' || strchr(extra, c) == NULL)
			return 0;
	}
	return 1;
}

static const char *q(const struct wf_node *n, char *buf)
{
	return wf_quote(n->text, n->len, buf, 80);
}

static int want(struct vctx *v, const struct wf_node *k, const struct wf_node *val,
		const char *what)
{
	return wf_fail(v->d, val, "%s: expected %s, got %s", k->text, what, wf_kind_name(val));
}

/* ---- templates ------------------------------------------------------- */

static int ref_check(const char *name, size_t namelen, const char *expr, size_t exprlen, void *arg,
		     char *err, size_t errlen)
{
	struct vctx *v = arg;
	char qn[80], qe[80];
	size_t j;

	for (j = 0; j < v->nsteps; j++)
		if (v->names[j] != NULL && strlen(v->names[j]) == namelen &&
		    !memcmp(v->names[j], name, namelen))
			break;
	wf_quote(name, namelen, qn, sizeof(qn));
	wf_quote(expr, exprlen, qe, sizeof(qe));
	if (j == v->nsteps)
		snprintf(err, errlen, "${{ %s }}: unknown step \"%s\"", qe, qn);
	else if (j == v->self)
		snprintf(err, errlen, "${{ %s }}: step \"%s\" cannot use its own output", qe, qn);
	else if (j > v->self)
		snprintf(err, errlen,
			 "${{ %s }}: step \"%s\" is a later step (only earlier steps' outputs "
			 "can be used)",
			 qe, qn);
	else
		return 0;
	return -1;
}

/* Check every string under n (values, not keys) for template errors. */
static int check_templates(struct vctx *v, const struct wf_node *n)
{
	char msg[400];
	size_t i;

	if (n->kind == WF_SCALAR) {
		if (n->is_key || !json_is_string(n->value))
			return 0;
		if (wf_template_scan(n->text, n->len, ref_check, v, msg, sizeof(msg)))
			return wf_fail(v->d, n, "%s", msg);
		return 0;
	}
	for (i = 0; i < n->nkids; i++)
		if (check_templates(v, n->kids[i]))
			return -1;
	return 0;
}

/* ---- fields ---------------------------------------------------------- */

static int get_duration(struct vctx *v, const struct wf_node *k, const struct wf_node *val,
			int64_t min, int64_t max, const char *range, int64_t *ms)
{
	char b[80];

	if (v->d->json) {
		if (val->kind != WF_SCALAR || !json_is_integer(val->value))
			return want(v, k, val, "an integer number of milliseconds");
		*ms = json_integer_value(val->value);
	} else if (val->kind == WF_SCALAR && json_is_integer(val->value)) {
		json_int_t s = json_integer_value(val->value);

		if (s < 0 || s > max / 1000)
			return wf_fail(v->d, val, "%s: %s is out of range (%s)", k->text,
				       q(val, b), range);
		*ms = s * 1000;
	} else if (is_str(val)) {
		if (sw_duration_parse(val->text, ms))
			return wf_fail(
			    v->d, val,
			    "%s: \"%s\" is not a duration (use ms, s, m or h, e.g. 30s)", k->text,
			    q(val, b));
	} else {
		return want(v, k, val, "a duration such as 30s");
	}
	if (*ms < min || *ms > max)
		return wf_fail(v->d, val, "%s: %s is out of range (%s)", k->text, q(val, b),
			       range);
	return 0;
}

/* An egress_allow entry: exactly what sandboxd's proxy accepts at run time
 * (sw_hostport_parse), so nothing registered is refused later. */
static int host_port_ok(const char *s, size_t len, const char **why)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char host[SW_HOST_MAX];
	int port, family;

	return sw_hostport_parse(s, len, 0, host, &port, &family, &ss, &sslen, why) == 0;
}

static int env_name_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

const char *sw_step_env_refusal(const char *name, size_t len)
{
	static const char *const proxies[] = {"http_proxy", "https_proxy", "ftp_proxy",
					      "all_proxy", "no_proxy", NULL};
	size_t i;

	if (name == NULL || !env_name_ok(name, len))
		return "is not a variable name (expected [A-Za-z_][A-Za-z0-9_]*)";
	if ((len == 4 && !memcmp(name, "PATH", 4)) || (len == 4 && !memcmp(name, "HOME", 4)))
		return "is reserved by the sandbox (it sets PATH and HOME itself)";
	for (i = 0; proxies[i] != NULL; i++)
		if (strlen(proxies[i]) == len && !strncasecmp(name, proxies[i], len))
			return "is reserved by the sandbox (the proxy variables are its own)";
	if (len >= 8 && !memcmp(name, "SAGEWAI_", 8))
		return "is reserved by the sandbox (SAGEWAI_* is Sagewai's own)";
	if (len >= 3 && !memcmp(name, "LD_", 3))
		return "is reserved by the sandbox (LD_* would change how every program loads)";
	return NULL;
}

/* One limit of the vocabulary (sw_workflow.h). */
struct limit_rule {
	const char *name;
	int real;	   /* a number, fractions allowed (else an integer) */
	long long min, max; /* for real: (0, max] */
};

static const struct limit_rule limit_rules[] = {
    {"memory_mb", 0, SW_LIMIT_MEMORY_MB_MIN, SW_LIMIT_MEMORY_MB_MAX},
    {"pids", 0, SW_LIMIT_PIDS_MIN, SW_LIMIT_PIDS_MAX},
    {"cpus", 1, 0, SW_LIMIT_CPUS_MAX},
    {"cpu_seconds", 0, SW_LIMIT_CPU_SECONDS_MIN, SW_LIMIT_CPU_SECONDS_MAX},
    {"file_size_mb", 0, SW_LIMIT_FILE_SIZE_MB_MIN, SW_LIMIT_FILE_SIZE_MB_MAX},
    {"open_files", 0, SW_LIMIT_OPEN_FILES_MIN, SW_LIMIT_OPEN_FILES_MAX},
    {"disk_mb", 0, SW_LIMIT_DISK_MB_MIN, SW_LIMIT_DISK_MB_MAX},
};
#define LIMIT_KEYS "memory_mb, pids, cpus, cpu_seconds, file_size_mb, open_files, disk_mb"

/* limits: a mapping of the vocabulary's keys to numbers in range. */
static int check_limits(struct vctx *v, const struct wf_node *k, const struct wf_node *val)
{
	char b[80];
	size_t i, r;

	if (val->kind != WF_MAP)
		return want(v, k, val, "a mapping (" LIMIT_KEYS ")");
	for (i = 0; i + 1 < val->nkids; i += 2) {
		const struct wf_node *lk = val->kids[i], *lv = val->kids[i + 1];
		const struct limit_rule *rule = NULL;

		for (r = 0; r < sizeof(limit_rules) / sizeof(*limit_rules); r++)
			if (!strcmp(lk->text, limit_rules[r].name))
				rule = &limit_rules[r];
		if (rule == NULL)
			return wf_fail(v->d, lk, "limits: unknown limit \"%s\" (expected %s)",
				       q(lk, b), LIMIT_KEYS);
		if (rule->real) {
			double x;

			if (lv->kind != WF_SCALAR || !json_is_number(lv->value))
				return wf_fail(v->d, lv, "limits: %s: expected a number, got %s",
					       rule->name, wf_kind_name(lv));
			x = json_number_value(lv->value);
			if (!(x > 0) || x > (double)rule->max)
				return wf_fail(v->d, lv,
					       "limits: %s: %s is out of range (more than 0, at "
					       "most %lld)",
					       rule->name, q(lv, b), rule->max);
		} else {
			json_int_t x;

			if (lv->kind != WF_SCALAR || !json_is_integer(lv->value))
				return wf_fail(v->d, lv, "limits: %s: expected an integer, got %s",
					       rule->name, wf_kind_name(lv));
			x = json_integer_value(lv->value);
			if (x < rule->min || x > rule->max)
				return wf_fail(v->d, lv,
					       "limits: %s: %s is out of range (%lld..%lld)",
					       rule->name, q(lv, b), rule->min, rule->max);
		}
	}
	return 0;
}

static int one_of(struct vctx *v, const struct wf_node *k, const struct wf_node *val,
		  const char *const *allowed, const char *list)
{
	char b[80];

	if (!is_str(val))
		return want(v, k, val, "a string");
	if (!in_list(val->text, allowed))
		return wf_fail(v->d, val, "%s: unknown value \"%s\" (expected one of %s)", k->text,
			       q(val, b), list);
	return 0;
}

static int artifact_has(const char *key, void *arg)
{
	const struct wf_node *m = arg;
	size_t i;

	for (i = 0; i + 1 < m->nkids; i += 2)
		if (!strcmp(m->kids[i]->text, key))
			return 1;
	return 0;
}

/* artifact: {destination: D, ...}: the keys of D only, strings, each
 * checked by the rules of artifact.c unless it holds a template (then
 * sandboxd checks the value it renders to). */
static int check_artifact(struct vctx *v, const struct wf_node *k, const struct wf_node *val)
{
	static const char *const dests[] = {"github", "s3", "local", "none", NULL};
	const struct wf_node *dest = NULL;
	const char *why, *allowed, *miss;
	char b[80];
	size_t i;

	if (val->kind != WF_MAP)
		return want(v, k, val, "a mapping with a destination");
	for (i = 0; i + 1 < val->nkids; i += 2)
		if (!strcmp(val->kids[i]->text, "destination"))
			dest = val->kids[i + 1];
	if (dest == NULL)
		return wf_fail(v->d, val, "artifact: missing destination (github, s3, local or none)");
	for (i = 0; i + 1 < val->nkids; i += 2)
		if (val->kids[i + 1] == dest &&
		    one_of(v, val->kids[i], dest, dests, "github, s3, local, none"))
			return -1;
	for (i = 0; i + 1 < val->nkids; i += 2) {
		const struct wf_node *ak = val->kids[i], *av = val->kids[i + 1];
		int templ;

		if (av == dest)
			continue;
		if (sw_artifact_key_refusal(dest->text, ak->text, NULL, 0, &allowed) != NULL)
			return wf_fail(v->d, ak,
				       "artifact: \"%s\" is not a key of destination %s (expected "
				       "%s)",
				       q(ak, b), dest->text, allowed);
		if (!is_str(av))
			return wf_fail(v->d, av, "artifact: %s: expected a string, got %s",
				       ak->text, wf_kind_name(av));
		templ = memmem(av->text, av->len, "${{", 3) != NULL;
		if (!templ && (why = sw_artifact_key_refusal(dest->text, ak->text, av->text,
							     av->len, &allowed)) != NULL)
			return wf_fail(v->d, av, "artifact: %s: \"%s\" is refused: %s", ak->text,
				       q(av, b), why);
	}
	if ((miss = sw_artifact_missing(dest->text, artifact_has, (void *)val)) != NULL)
		return wf_fail(v->d, val, "artifact: destination %s needs %s", dest->text, miss);
	return 0;
}

/* Check one of the sandbox keys and add its JSON form to extra. */
static int check_extra(struct vctx *v, const struct wf_node *k, const struct wf_node *val,
		       json_t *extra)
{
	static const char *const networks[] = {"none", "egress_only", "full", NULL};
	static const char *const agents[] = {"claude-code", "codex", "gemini", "custom", NULL};
	const char *key = k->text;
	json_t *j = NULL;
	char b[80];
	size_t i, total = 0;
	const char *why = "";

	if (!strcmp(key, "network")) {
		if (one_of(v, k, val, networks, "none, egress_only, full"))
			return -1;
	} else if (!strcmp(key, "cli_agent")) {
		if (one_of(v, k, val, agents, "claude-code, codex, gemini, custom"))
			return -1;
	} else if (!strcmp(key, "egress_allow")) {
		if (val->kind != WF_SEQ)
			return want(v, k, val, "a sequence of \"host:port\" strings");
		for (i = 0; i < val->nkids; i++) {
			const struct wf_node *e = val->kids[i];

			if (!is_str(e))
				return want(v, k, e, "a \"host:port\" string");
			if (memmem(e->text, e->len, "${{", 3) == NULL &&
			    !host_port_ok(e->text, e->len, &why))
				return wf_fail(v->d, e,
					       "egress_allow: \"%s\" is not host:port (%s)",
					       q(e, b), why);
		}
	} else if (!strcmp(key, "run") && val->kind == WF_SEQ) {
		/* an argv: no shell, so step outputs templated into it stay data */
		if (val->nkids == 0)
			return wf_fail(v->d, val, "run: an argv must not be empty");
		for (i = 0; i < val->nkids; i++)
			if (!is_str(val->kids[i]))
				return want(v, k, val->kids[i], "a string (an argv element)");
	} else if (!strcmp(key, "limits")) {
		if (check_limits(v, k, val))
			return -1;
	} else if (!strcmp(key, "artifact")) {
		if (check_artifact(v, k, val))
			return -1;
	} else if (!strcmp(key, "env")) {
		if (val->kind != WF_MAP)
			return want(v, k, val, "a mapping of names to strings");
		if (val->nkids / 2 > SW_STEP_ENV_MAX)
			return wf_fail(v->d, val, "env: more than %d variables", SW_STEP_ENV_MAX);
		if ((j = json_object()) == NULL)
			return wf_fail(v->d, val, "out of memory");
		for (i = 0; i + 1 < val->nkids; i += 2) {
			const struct wf_node *ek = val->kids[i], *ev = val->kids[i + 1];
			const char *why = sw_step_env_refusal(ek->text, ek->len);

			if (why != NULL) {
				wf_fail(v->d, ek, "env: \"%s\" %s", q(ek, b), why);
				goto fail;
			}
			/* Scalars are kept as written: PORT: 8080 is "8080". */
			if (ev->kind != WF_SCALAR || json_is_null(ev->value)) {
				wf_fail(v->d, ev, "env: %s: expected a string, got %s", ek->text,
					wf_kind_name(ev));
				goto fail;
			}
			if (json_object_set_new(j, ek->text, json_stringn(ev->text, ev->len))) {
				wf_fail(v->d, ev, "env: %s: invalid value", ek->text);
				goto fail;
			}
			total += ek->len + ev->len + 2; /* "NAME=value\0" */
			if (total > SW_STEP_ENV_BYTES_MAX) {
				wf_fail(v->d, ev, "env: more than %u bytes of names and values",
					SW_STEP_ENV_BYTES_MAX);
				goto fail;
			}
		}
	} else {
		/* run, variant, identity, prompt; an empty prompt is anti-pattern
		 * 2, a warning (cli_agent_check), not an error */
		if (!is_str(val))
			return want(v, k, val, "a string");
		if (val->len == 0 && strcmp(key, "prompt") != 0)
			return wf_fail(v->d, val, "%s: must not be empty", key);
	}
	if (check_templates(v, val))
		goto fail;
	if (j == NULL && (j = wf_node_json(val)) == NULL)
		return wf_fail(v->d, val, "%s: invalid value", key);
	if (json_object_set_new(extra, key, j))
		return wf_fail(v->d, val, "out of memory");
	return 0;
fail:
	json_decref(j);
	return -1;
}

static int uses_ok(const char *s, size_t len)
{
	if (!strcmp(s, "template") || !strcmp(s, "llm") || !strcmp(s, "http"))
		return 1;
	return len > 7 && !strncmp(s, "plugin:", 7) && name_ok(s + 7, len - 7, "_.-");
}

/* ---- steps ----------------------------------------------------------- */

/* The keys of a step that the checks after the loop need. */
struct step_keys {
	const struct wf_node *artifact_k, *agent_k, *agent, *prompt_k, *prompt, *run_k;
	int timeout_given;
};

/* Only blanks (or nothing): the agent would get no task. */
static int blank(const struct wf_node *n)
{
	return strspn(n->text, " \t\r\n") == n->len;
}

/*
 * A cli_agent step: the agent is required; claude-code, codex and gemini
 * get their command line from the sandbox host and need a prompt (their
 * task), custom needs its run (and gets the prompt, if any, as its last
 * argument). Anti-pattern 2 -- a cli_agent step with nothing for an agent
 * to decide (an empty prompt, or a custom command with none) -- is a
 * warning: the workflow registers, and the answer says why it should
 * rather be an identity_scoped step.
 */
static int cli_agent_check(struct vctx *v, const struct wf_node *item, struct sw_step *st,
			   const struct step_keys *sk)
{
	struct wf_doc *d = v->d;
	int custom;

	if (sk->agent == NULL)
		return wf_fail(d, item,
			       "step \"%s\": a cli_agent step needs cli_agent (claude-code, "
			       "codex, gemini or custom)",
			       st->name);
	custom = !strcmp(sk->agent->text, "custom");
	if (!custom && sk->run_k != NULL)
		return wf_fail(d, sk->run_k,
			       "\"run\" applies only to cli_agent: custom (the command line of %s "
			       "is the sandbox host's; give it its task in prompt)",
			       sk->agent->text);
	if (custom && sk->run_k == NULL)
		return wf_fail(d, item,
			       "step \"%s\": cli_agent: custom needs run (the agent's command; "
			       "the prompt is passed as its last argument)",
			       st->name);
	if (!custom && sk->prompt == NULL)
		return wf_fail(d, item,
			       "step \"%s\": cli_agent: %s needs a prompt (the agent's task)",
			       st->name, sk->agent->text);
	if (sk->prompt != NULL && blank(sk->prompt))
		wf_warn(d, sk->prompt,
			"step \"%s\": the prompt is empty, so the agent has no task to decide on "
			"(anti-pattern 2: a CLI agent for an identity-scoped task); a fixed "
			"operation belongs in mode identity_scoped, which runs it with the same "
			"credentials and no agent",
			st->name);
	else if (custom && sk->prompt == NULL)
		wf_warn(d, sk->agent,
			"step \"%s\": cli_agent: custom runs a fixed command with no prompt, so "
			"nothing is left for an agent to decide (anti-pattern 2: a CLI agent for an "
			"identity-scoped task); run it in mode identity_scoped instead",
			st->name);
	if (!sk->timeout_given)
		st->timeout_ms = CLI_AGENT_TIMEOUT_MS;
	return 0;
}

static int build_step(struct vctx *v, const struct wf_node *item, struct sw_step *st)
{
	struct wf_doc *d = v->d;
	const struct wf_node *name = NULL, *uses_k = NULL, *uses = NULL, *first_extra = NULL;
	struct step_keys sk = {0};
	const char *tkey = d->json ? "timeout_ms" : "timeout";
	const char *bkey = d->json ? "backoff_ms" : "backoff";
	char b[80];
	size_t i, j;

	st->line = item->line;
	st->col = item->col;
	st->mode = SW_MODE_IN_PROCESS;
	st->timeout_ms = 60000;
	st->backoff_ms = 1000;
	if ((st->extra = json_object()) == NULL)
		return wf_fail(d, item, "out of memory");
	if (item->kind != WF_MAP)
		return wf_fail(d, item, "a step must be a mapping, got %s", wf_kind_name(item));
	for (i = 0; i + 1 < item->nkids; i += 2) {
		const struct wf_node *k = item->kids[i], *val = item->kids[i + 1];
		const char *key = k->text;

		if (!strcmp(key, "name")) {
			if (!is_str(val))
				return want(v, k, val, "a string");
			if (!name_ok(val->text, val->len, "_-"))
				return wf_fail(d, val,
					       "name: \"%s\" is not a valid step name "
					       "(expected [a-z0-9][a-z0-9_-]{0,62})",
					       q(val, b));
			for (j = 0; j < v->self; j++)
				if (v->names[j] != NULL && !strcmp(v->names[j], val->text))
					return wf_fail(d, val, "duplicate step name \"%s\"",
						       val->text);
			name = val;
		} else if (!strcmp(key, "mode")) {
			if (!is_str(val))
				return want(v, k, val, "a string");
			if (sw_mode_parse(val->text, &st->mode))
				return wf_fail(
				    d, val,
				    "mode: unknown mode \"%s\" (expected one of "
				    "in_process, sandboxed, identity_scoped, cli_agent, "
				    "cli_agent_jit)",
				    q(val, b));
		} else if (!strcmp(key, "uses")) {
			uses_k = k;
			uses = val;
		} else if (!strcmp(key, "with")) {
			if (val->kind == WF_SCALAR && json_is_null(val->value))
				continue;
			if (val->kind != WF_MAP)
				return want(v, k, val, "a mapping");
			if (check_templates(v, val))
				return -1;
			json_decref(st->with);
			if ((st->with = wf_node_json(val)) == NULL)
				return wf_fail(d, val, "with: invalid value");
		} else if (!strcmp(key, tkey)) {
			if (get_duration(v, k, val, 1, TIMEOUT_MAX_MS, "1ms..24h",
					 &st->timeout_ms))
				return -1;
			sk.timeout_given = 1;
		} else if (!strcmp(key, bkey)) {
			if (get_duration(v, k, val, 0, BACKOFF_MAX_MS, "0..1h", &st->backoff_ms))
				return -1;
		} else if (!strcmp(key, "retries")) {
			if (val->kind != WF_SCALAR || !json_is_integer(val->value))
				return want(v, k, val, "an integer");
			if (json_integer_value(val->value) < 0 ||
			    json_integer_value(val->value) > RETRIES_MAX)
				return wf_fail(d, val, "retries: %s is out of range (0..%d)",
					       q(val, b), RETRIES_MAX);
			st->retries = (int)json_integer_value(val->value);
		} else if (in_list(key, extra_keys)) {
			if (first_extra == NULL)
				first_extra = k;
			if (!strcmp(key, "artifact"))
				sk.artifact_k = k;
			else if (!strcmp(key, "cli_agent"))
				sk.agent_k = k, sk.agent = val;
			else if (!strcmp(key, "prompt"))
				sk.prompt_k = k, sk.prompt = val;
			else if (!strcmp(key, "run"))
				sk.run_k = k;
			if (check_extra(v, k, val, st->extra))
				return -1;
		} else {
			return wf_fail(d, k,
				       "unknown step key \"%s\" (expected name, mode, uses, with, "
				       "%s, retries, %s, run, variant, network, egress_allow, "
				       "limits, cli_agent, identity, artifact, prompt, env)",
				       q(k, b), tkey, bkey);
		}
	}
	if (name == NULL)
		return wf_fail(d, item, "step has no name");
	if ((st->name = strdup(name->text)) == NULL)
		return wf_fail(d, item, "out of memory");
	if (st->mode == SW_MODE_IN_PROCESS) {
		if (uses == NULL)
			return wf_fail(d, item,
				       "step \"%s\": an in_process step needs \"uses\" "
				       "(template, llm, http or plugin:NAME)",
				       st->name);
		if (!is_str(uses))
			return want(v, uses_k, uses, "a string");
		if (!uses_ok(uses->text, uses->len))
			return wf_fail(d, uses,
				       "uses: unknown step kind \"%s\" (expected template, llm, "
				       "http or plugin:NAME)",
				       q(uses, b));
		if (first_extra != NULL)
			return wf_fail(d, first_extra,
				       "\"%s\" does not apply to in_process steps (it is for "
				       "sandboxed and later modes)",
				       first_extra->text);
		if ((st->uses = strdup(uses->text)) == NULL)
			return wf_fail(d, item, "out of memory");
	} else if (uses != NULL) {
		return wf_fail(d, uses_k,
			       "\"uses\" applies only to in_process steps (this step "
			       "is %s)",
			       sw_mode_name(st->mode));
	}
	if (st->mode == SW_MODE_SANDBOXED || st->mode == SW_MODE_IDENTITY_SCOPED) {
		/* nothing there would run an agent or deliver its work */
		const struct wf_node *agent_only[] = {sk.artifact_k, sk.agent_k, sk.prompt_k};

		for (i = 0; i < sizeof(agent_only) / sizeof(agent_only[0]); i++)
			if (agent_only[i] != NULL)
				return wf_fail(d, agent_only[i],
					       "\"%s\" applies only to cli_agent and cli_agent_jit "
					       "steps (this step is %s)",
					       agent_only[i]->text, sw_mode_name(st->mode));
	}
	if (st->mode == SW_MODE_CLI_AGENT && cli_agent_check(v, item, st, &sk) != 0)
		return -1;
	if (st->with == NULL && (st->with = json_object()) == NULL)
		return wf_fail(d, item, "out of memory");
	return 0;
}

static const struct wf_node *map_get(const struct wf_node *m, const char *key)
{
	size_t i;

	for (i = 0; i + 1 < m->nkids; i += 2)
		if (!strcmp(m->kids[i]->text, key))
			return m->kids[i + 1];
	return NULL;
}

static int build_steps(struct vctx *v, const struct wf_node *k, const struct wf_node *seq,
		       struct sw_workflow *wf)
{
	struct wf_doc *d = v->d;
	const struct wf_node *n;
	size_t i;

	if (seq->kind != WF_SEQ)
		return want(v, k, seq, "a sequence of steps");
	if (seq->nkids == 0)
		return wf_fail(d, seq, "steps: a workflow needs at least one step");
	if (seq->nkids > WF_MAX_STEPS)
		return wf_fail(d, seq, "steps: more than %d steps", WF_MAX_STEPS);
	v->nsteps = seq->nkids;
	if ((v->names = calloc(seq->nkids, sizeof(*v->names))) == NULL ||
	    (wf->steps = calloc(seq->nkids, sizeof(*wf->steps))) == NULL)
		return wf_fail(d, seq, "out of memory");
	wf->nsteps = seq->nkids;
	/* First the names, so that templates can tell a later step from an
	 * unknown one. */
	for (i = 0; i < seq->nkids; i++) {
		n = seq->kids[i];
		if (n->kind == WF_MAP && (n = map_get(n, "name")) != NULL && is_str(n) &&
		    name_ok(n->text, n->len, "_-"))
			v->names[i] = n->text;
	}
	for (i = 0; i < seq->nkids; i++) {
		v->self = i;
		if (build_step(v, seq->kids[i], &wf->steps[i]))
			return -1;
	}
	return 0;
}

struct sw_workflow *wf_build(struct wf_doc *d, const struct wf_node *root)
{
	struct vctx v = {.d = d};
	struct sw_workflow *wf;
	const struct wf_node *name = NULL, *steps = NULL, *steps_k = NULL;
	char b[80];
	size_t i;

	if ((wf = calloc(1, sizeof(*wf))) == NULL) {
		wf_fail(d, root, "out of memory");
		return NULL;
	}
	wf->version = 1;
	if (root->kind != WF_MAP) {
		wf_fail(d, root, "a workflow must be a mapping, got %s", wf_kind_name(root));
		goto fail;
	}
	for (i = 0; i + 1 < root->nkids; i += 2) {
		const struct wf_node *k = root->kids[i], *val = root->kids[i + 1];

		if (!strcmp(k->text, "name")) {
			if (!is_str(val)) {
				want(&v, k, val, "a string");
				goto fail;
			}
			if (!name_ok(val->text, val->len, "_.-")) {
				wf_fail(d, val,
					"name: \"%s\" is not a valid workflow name "
					"(expected [a-z0-9][a-z0-9_.-]{0,62})",
					q(val, b));
				goto fail;
			}
			name = val;
		} else if (!strcmp(k->text, "version")) {
			if (val->kind != WF_SCALAR || !json_is_integer(val->value)) {
				want(&v, k, val, "an integer");
				goto fail;
			}
			if (json_integer_value(val->value) < 1 ||
			    json_integer_value(val->value) > INT_MAX) {
				wf_fail(d, val, "version: %s is out of range (1..%d)", q(val, b),
					INT_MAX);
				goto fail;
			}
			wf->version = (int)json_integer_value(val->value);
		} else if (!strcmp(k->text, "description")) {
			if (val->kind == WF_SCALAR && json_is_null(val->value))
				continue;
			if (!is_str(val)) {
				want(&v, k, val, "a string");
				goto fail;
			}
			free(wf->description);
			if ((wf->description = strdup(val->text)) == NULL) {
				wf_fail(d, val, "out of memory");
				goto fail;
			}
		} else if (!strcmp(k->text, "steps")) {
			steps_k = k;
			steps = val;
		} else {
			wf_fail(d, k,
				"unknown key \"%s\" (expected name, version, description, steps)",
				q(k, b));
			goto fail;
		}
	}
	if (name == NULL) {
		wf_fail(d, root, "missing key \"name\"");
		goto fail;
	}
	if ((wf->name = strdup(name->text)) == NULL) {
		wf_fail(d, root, "out of memory");
		goto fail;
	}
	if (steps == NULL) {
		wf_fail(d, root, "missing key \"steps\"");
		goto fail;
	}
	if (build_steps(&v, steps_k, steps, wf))
		goto fail;
	free(v.names);
	return wf;
fail:
	free(v.names);
	sw_workflow_free(wf);
	return NULL;
}

/* ---- entry points ---------------------------------------------------- */

/* wf_build with the warnings collected into wf->warnings; root freed. */
static struct sw_workflow *build_warned(struct wf_doc *d, struct wf_node *root)
{
	struct sw_workflow *wf = NULL;

	if ((d->warnings = json_array()) == NULL)
		wf_fail(d, root, "out of memory");
	else if ((wf = wf_build(d, root)) != NULL)
		wf->warnings = json_incref(d->warnings);
	json_decref(d->warnings);
	d->warnings = NULL;
	wf_node_free(root);
	return wf;
}

struct sw_workflow *sw_workflow_parse(const char *yaml, size_t len, const char *filename,
				      char *errstr, size_t errlen)
{
	struct wf_doc d = {
	    .file = filename != NULL ? filename : "workflow", .err = errstr, .errlen = errlen};
	struct wf_node *root;

	if (errstr != NULL && errlen > 0)
		errstr[0] = '\0';
	if (yaml == NULL && len > 0) {
		wf_fail(&d, NULL, "no input");
		return NULL;
	}
	if ((root = wf_yaml_load(&d, yaml != NULL ? yaml : "", len)) == NULL)
		return NULL;
	return build_warned(&d, root);
}

struct sw_workflow *sw_workflow_from_json(json_t *j, char *errstr, size_t errlen)
{
	struct wf_doc d = {.json = 1, .err = errstr, .errlen = errlen};
	struct wf_node *root;

	if (errstr != NULL && errlen > 0)
		errstr[0] = '\0';
	if ((root = wf_json_load(&d, j)) == NULL)
		return NULL;
	return build_warned(&d, root);
}
