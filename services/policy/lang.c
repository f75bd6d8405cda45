/*
 * lang.c: the policy language (docs/POLICY.md).
 *
 *   approvers: [alice, bob]        # users whose keys may decide (optional)
 *   rules:
 *     - id: push-own-org           # optional; else FILE:LINE names the rule
 *       name: "GITHUB_TOKEN_*"     # globs (fnmatch, '*' crosses '/'); absent = any
 *       scope: "github:push:acme/x*"
 *       workflow: "*"  step: "*"  cli_agent: claude-code
 *       tenant: "acme"             # the operator's _system file only
 *       effect: allow | deny | ask
 *       deadline: 10m              # ask only: Ns, Nm or Nh, at most 24h (10m)
 *       secret: github-push        # allow/ask: the tenant secret granted
 *       reason: "pushes to our own organisation"
 *       override: allow-all        # with justification: lets an allow rule
 *       justification: "..."       #   match every name and scope
 *
 * The YAML is read with libyaml's event API as libs/workflow reads
 * workflows: anchors, aliases and tags are refused, nesting is bounded and
 * every error is "FILE:LINE:COL: why" at the node it is about.
 *
 * Anti-pattern 4: an allow rule whose name and scope globs both match
 * everything (absent, "*", or any glob that matches every probe below) is
 * refused with the reason, unless it says override: allow-all with a
 * justification of at least 20 characters; such a rule is listed in the
 * policy's overrides, which api.c logs and records with the policy.
 */
#include <ctype.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "policy.h"

#define MAX_DEPTH 8
#define MAX_NODES 20000

enum kind { K_SCALAR, K_MAP, K_SEQ };

struct node {
	enum kind kind;
	int line, col;
	char *text; /* scalar */
	int plain;  /* a plain (unquoted) scalar */
	struct node **kids; /* map: key, value, ...; seq: items */
	size_t nkids, cap;
};

struct doc {
	const char *file;
	char *err;
	size_t errlen;
	size_t nnodes;
};

static int fail_at(struct doc *d, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail_at(struct doc *d, int line, int col, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(d->err, d->errlen, "%s:%d:%d: %s", d->file, line, col, msg);
	return -1;
}

#define FAIL(d, n, ...) fail_at((d), (n)->line, (n)->col, __VA_ARGS__)

static void node_free(struct node *n)
{
	size_t i;

	if (n == NULL)
		return;
	for (i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

static struct node *node_new(struct doc *d, enum kind k, const yaml_event_t *ev)
{
	struct node *n;

	if (++d->nnodes > MAX_NODES) {
		fail_at(d, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
			"too many nodes (more than %d)", MAX_NODES);
		return NULL;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL) {
		fail_at(d, 1, 1, "out of memory");
		return NULL;
	}
	n->kind = k;
	n->line = (int)ev->start_mark.line + 1;
	n->col = (int)ev->start_mark.column + 1;
	return n;
}

static int node_add(struct doc *d, struct node *p, struct node *k)
{
	if (p->nkids == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct node **v = realloc(p->kids, cap * sizeof(*v));

		if (v == NULL)
			return fail_at(d, k->line, k->col, "out of memory");
		p->kids = v;
		p->cap = cap;
	}
	p->kids[p->nkids++] = k;
	return 0;
}

static int parse_error(struct doc *d, yaml_parser_t *p)
{
	return fail_at(d, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, "%s",
		       p->problem ? p->problem : "malformed YAML");
}

/* The node that starts with event ev (already taken), its children read. */
static struct node *load_node(struct doc *d, yaml_parser_t *p, yaml_event_t *ev, int depth)
{
	struct node *n = NULL, *k;
	yaml_event_t e;
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		fail_at(d, line, col, "anchors and aliases are not supported");
		return NULL;
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.anchor != NULL) {
			fail_at(d, line, col, "anchors and aliases are not supported");
			return NULL;
		}
		if (ev->data.scalar.tag != NULL &&
		    strcmp((char *)ev->data.scalar.tag, "tag:yaml.org,2002:str") != 0) {
			fail_at(d, line, col, "tags are not supported");
			return NULL;
		}
		if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length) != NULL) {
			fail_at(d, line, col, "a NUL byte in a value");
			return NULL;
		}
		if ((n = node_new(d, K_SCALAR, ev)) == NULL)
			return NULL;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		if ((n->text = strndup((char *)ev->data.scalar.value, ev->data.scalar.length)) ==
		    NULL) {
			fail_at(d, line, col, "out of memory");
			free(n);
			return NULL;
		}
		return n;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		int map = ev->type == YAML_MAPPING_START_EVENT;
		yaml_char_t *anchor = map ? ev->data.mapping_start.anchor
					  : ev->data.sequence_start.anchor;
		yaml_char_t *tag = map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;

		if (anchor != NULL) {
			fail_at(d, line, col, "anchors and aliases are not supported");
			return NULL;
		}
		if (tag != NULL) {
			fail_at(d, line, col, "tags are not supported");
			return NULL;
		}
		if (depth >= MAX_DEPTH) {
			fail_at(d, line, col, "nested deeper than %d levels", MAX_DEPTH);
			return NULL;
		}
		if ((n = node_new(d, map ? K_MAP : K_SEQ, ev)) == NULL)
			return NULL;
		for (;;) {
			if (!yaml_parser_parse(p, &e)) {
				parse_error(d, p);
				goto fail;
			}
			if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&e);
				return n;
			}
			k = load_node(d, p, &e, depth + 1);
			yaml_event_delete(&e);
			if (k == NULL)
				goto fail;
			if (node_add(d, n, k) == -1) {
				node_free(k);
				goto fail;
			}
		}
	}
	default:
		fail_at(d, line, col, "unexpected YAML event");
		return NULL;
	}
fail:
	node_free(n);
	return NULL;
}

static struct node *yaml_load(struct doc *d, const char *text, size_t len)
{
	yaml_parser_t p;
	yaml_event_t e;
	struct node *root = NULL;
	int done = 0;

	if (!yaml_parser_initialize(&p)) {
		fail_at(d, 1, 1, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!done) {
		if (!yaml_parser_parse(&p, &e)) {
			parse_error(d, &p);
			goto fail;
		}
		switch (e.type) {
		case YAML_STREAM_START_EVENT:
		case YAML_DOCUMENT_END_EVENT:
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (root != NULL) {
				fail_at(d, (int)e.start_mark.line + 1, (int)e.start_mark.column + 1,
					"more than one YAML document");
				yaml_event_delete(&e);
				goto fail;
			}
			break;
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		default:
			if (root != NULL) {
				yaml_event_delete(&e);
				fail_at(d, 1, 1, "more than one YAML document");
				goto fail;
			}
			root = load_node(d, &p, &e, 0);
			if (root == NULL) {
				yaml_event_delete(&e);
				goto fail;
			}
		}
		yaml_event_delete(&e);
	}
	yaml_parser_delete(&p);
	if (root == NULL)
		fail_at(d, 1, 1, "empty policy (expected a mapping with rules)");
	return root;
fail:
	yaml_parser_delete(&p);
	node_free(root);
	return NULL;
}

/* ---- checks ---------------------------------------------------------------- */

const char *pol_effect_name(enum pol_effect e)
{
	return e == POL_ALLOW ? "allow" : e == POL_DENY ? "deny" : "ask";
}

int pol_env_name_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 128 || !(isupper((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (i = 1; i < n; i++)
		if (!(isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

static int secret_name_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 63 && (islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])) &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static int user_name_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 63 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-@") == n;
}

/* A glob: printable ASCII, at most POL_GLOB_MAX bytes, brackets closed. */
static const char *glob_problem(const char *s)
{
	size_t i, n = strlen(s);
	int open = 0;

	if (n == 0)
		return "an empty glob matches nothing (leave the field out to match anything)";
	if (n > POL_GLOB_MAX)
		return "a glob is at most 256 characters";
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return "a glob is printable ASCII";
		if (s[i] == '[')
			open = 1;
		else if (s[i] == ']')
			open = 0;
	}
	if (open)
		return "an unclosed [ in the glob";
	return NULL;
}

/* Values that a glob matching "everything" must match. */
static const char *const name_probes[] = {"A", "Z", "_", "X9", "GITHUB_TOKEN_REPO_X",
					  "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "ADMIN",
					  "Q_1_2_3_4_5_6_7_8_9", NULL};
/* no empty scope: a glob that matches every non-empty scope ("?*") allows
 * everything a requester can ask for */
static const char *const scope_probes[] = {"a", "*", "github:push:acme/site",
					   "aws:iam:role/admin", "any thing at all",
					   "/", "0", "~!@#$%^&()", NULL};

static int glob_all(const char *g, const char *const *probes)
{
	size_t i;

	if (g == NULL)
		return 1;
	for (i = 0; probes[i] != NULL; i++)
		if (fnmatch(g, probes[i], 0) != 0)
			return 0;
	return 1;
}

static int deadline_parse(const char *s, long long *ms)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	v = strtoll(s, &end, 10);
	if (v <= 0 || v > 100000 || end[0] == '\0' || end[1] != '\0')
		return -1;
	switch (end[0]) {
	case 's': *ms = v * 1000; break;
	case 'm': *ms = v * 60 * 1000; break;
	case 'h': *ms = v * 3600 * 1000; break;
	default: return -1;
	}
	return 0;
}

static struct node *map_get(const struct node *m, const char *key)
{
	size_t i;

	for (i = 0; i + 1 < m->nkids; i += 2)
		if (strcmp(m->kids[i]->text, key) == 0)
			return m->kids[i + 1];
	return NULL;
}

/* A string field: a scalar (a plain null/~ is refused as a value). */
static int str_of(struct doc *d, const struct node *v, const char *key, size_t max,
		  const char **out)
{
	if (v->kind != K_SCALAR)
		return FAIL(d, v, "%s: a string is expected", key);
	if (v->plain && (strcmp(v->text, "null") == 0 || strcmp(v->text, "~") == 0 ||
			 v->text[0] == '\0'))
		return FAIL(d, v, "%s: a value is expected", key);
	if (strlen(v->text) > max)
		return FAIL(d, v, "%s: longer than %zu characters", key, max);
	*out = v->text;
	return 0;
}

static int glob_of(struct doc *d, const struct node *v, const char *key, char **out)
{
	const char *s, *why;

	if (str_of(d, v, key, POL_GLOB_MAX, &s) == -1)
		return -1;
	if ((why = glob_problem(s)) != NULL)
		return FAIL(d, v, "%s: %s", key, why);
	if ((*out = strdup(s)) == NULL)
		return FAIL(d, v, "out of memory");
	return 0;
}

static int rule_build(struct doc *d, const struct node *m, size_t idx, int system,
		      struct pol_rule *r)
{
	static const char *const keys[] = {"id",       "name",	 "scope",    "workflow",
					   "step",     "cli_agent", "tenant",   "effect",
					   "deadline", "secret",	 "reason",   "override",
					   "justification", NULL};
	const struct node *v;
	const char *s;
	size_t i, j;

	(void)idx;
	if (m->kind != K_MAP)
		return FAIL(d, m, "a rule is a mapping (name, scope, effect, ...)");
	r->line = m->line;
	snprintf(r->id, sizeof(r->id), "%s:%d", d->file, m->line);
	for (i = 0; i + 1 < m->nkids; i += 2) {
		const struct node *k = m->kids[i];

		if (k->kind != K_SCALAR)
			return FAIL(d, k, "a key is a string");
		for (j = 0; keys[j] != NULL && strcmp(keys[j], k->text) != 0; j++)
			;
		if (keys[j] == NULL)
			return FAIL(d, k,
				    "unknown key '%.40s' (a rule has id, name, scope, workflow, "
				    "step, cli_agent, %seffect, deadline, secret, reason, override, "
				    "justification)",
				    k->text, system ? "tenant, " : "");
		for (j = 0; j < i; j += 2)
			if (strcmp(m->kids[j]->text, k->text) == 0)
				return FAIL(d, k, "duplicate key '%.40s'", k->text);
	}
	if ((v = map_get(m, "id")) != NULL) {
		if (str_of(d, v, "id", 64, &s) == -1)
			return -1;
		if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		    strlen(s))
			return FAIL(d, v, "id: letters, digits, '_', '.' and '-' only");
		snprintf(r->id, sizeof(r->id), "%s", s);
	}
	if (((v = map_get(m, "name")) != NULL && glob_of(d, v, "name", &r->name) == -1) ||
	    ((v = map_get(m, "scope")) != NULL && glob_of(d, v, "scope", &r->scope) == -1) ||
	    ((v = map_get(m, "workflow")) != NULL && glob_of(d, v, "workflow", &r->workflow) == -1) ||
	    ((v = map_get(m, "step")) != NULL && glob_of(d, v, "step", &r->step) == -1) ||
	    ((v = map_get(m, "cli_agent")) != NULL &&
	     glob_of(d, v, "cli_agent", &r->cli_agent) == -1))
		return -1;
	if ((v = map_get(m, "tenant")) != NULL) {
		if (!system)
			return FAIL(d, v,
				    "tenant: only the operator's _system policy matches on tenant "
				    "(a tenant's policy is its own)");
		if (glob_of(d, v, "tenant", &r->tenant) == -1)
			return -1;
	}
	if ((v = map_get(m, "effect")) == NULL)
		return FAIL(d, m, "effect is missing (allow, deny or ask)");
	if (str_of(d, v, "effect", 16, &s) == -1)
		return -1;
	if (strcmp(s, "allow") == 0)
		r->effect = POL_ALLOW;
	else if (strcmp(s, "deny") == 0)
		r->effect = POL_DENY;
	else if (strcmp(s, "ask") == 0)
		r->effect = POL_ASK;
	else
		return FAIL(d, v, "effect: allow, deny or ask, not '%.20s'", s);
	r->deadline_ms = r->effect == POL_ASK ? POL_DEADLINE_DEFAULT_MS : 0;
	if ((v = map_get(m, "deadline")) != NULL) {
		if (r->effect != POL_ASK)
			return FAIL(d, v, "deadline: only an ask rule waits for a person");
		if (str_of(d, v, "deadline", 16, &s) == -1)
			return -1;
		if (deadline_parse(s, &r->deadline_ms) == -1)
			return FAIL(d, v, "deadline: a number and s, m or h (e.g. 10m), not '%.20s'",
				    s);
		if (r->deadline_ms > POL_DEADLINE_MAX_MS)
			return FAIL(d, v, "deadline: at most 24h");
	}
	if ((v = map_get(m, "secret")) != NULL) {
		if (r->effect == POL_DENY)
			return FAIL(d, v, "secret: a deny rule grants nothing");
		if (str_of(d, v, "secret", 63, &s) == -1)
			return -1;
		if (!secret_name_valid(s))
			return FAIL(d, v, "secret: a secret name is [a-z0-9][a-z0-9_.-]{0,62}");
		snprintf(r->secret, sizeof(r->secret), "%s", s);
	}
	if ((v = map_get(m, "reason")) != NULL) {
		if (str_of(d, v, "reason", POL_REASON_MAX - 1, &s) == -1)
			return -1;
		snprintf(r->reason, sizeof(r->reason), "%s", s);
	}
	if ((v = map_get(m, "justification")) != NULL) {
		if (str_of(d, v, "justification", POL_REASON_MAX - 1, &s) == -1)
			return -1;
		snprintf(r->justification, sizeof(r->justification), "%s", s);
	}
	r->allow_all = r->effect == POL_ALLOW && glob_all(r->name, name_probes) &&
		       glob_all(r->scope, scope_probes);
	if ((v = map_get(m, "override")) != NULL) {
		if (str_of(d, v, "override", 16, &s) == -1)
			return -1;
		if (strcmp(s, "allow-all") != 0)
			return FAIL(d, v, "override: the only override is allow-all");
		if (!r->allow_all)
			return FAIL(d, v,
				    "override: allow-all on a rule that does not allow everything "
				    "(remove it)");
		if (strlen(r->justification) < 20)
			return FAIL(d, v,
				    "override: allow-all needs a justification: of at least 20 "
				    "characters (it is recorded and logged)");
		return 0;
	}
	if (map_get(m, "justification") != NULL)
		return FAIL(d, map_get(m, "justification"),
			    "justification: only with override: allow-all");
	if (r->allow_all)
		return FAIL(d, m,
			    "rule %s allows every credential name in every scope (%s%s%s%s): a "
			    "policy must not grant everything (anti-pattern 4); narrow name or "
			    "scope, use ask, or add override: allow-all with a justification:",
			    r->id, r->name ? "name " : "name absent", r->name ? r->name : "",
			    r->scope ? ", scope " : ", scope absent", r->scope ? r->scope : "");
	return 0;
}

static void rule_clear(struct pol_rule *r)
{
	free(r->name);
	free(r->scope);
	free(r->workflow);
	free(r->step);
	free(r->cli_agent);
	free(r->tenant);
}

void pol_free(struct pol_policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->nrules; i++)
		rule_clear(&p->rules[i]);
	free(p->rules);
	for (i = 0; i < p->napprovers; i++)
		free(p->approvers[i]);
	free(p->approvers);
	free(p);
}

struct pol_policy *pol_parse(const char *text, size_t len, const char *file, int system,
			     char *errstr, size_t errlen)
{
	struct doc d = {file, errstr, errlen, 0};
	struct pol_policy *p = NULL;
	struct node *root = NULL, *rules, *appr;
	size_t i, j;

	if (len > POL_MAX_BODY) {
		fail_at(&d, 1, 1, "larger than %u bytes", POL_MAX_BODY);
		return NULL;
	}
	if (memchr(text, '\0', len) != NULL) {
		fail_at(&d, 1, 1, "the policy holds a NUL byte");
		return NULL;
	}
	if ((root = yaml_load(&d, text, len)) == NULL)
		return NULL;
	if (root->kind != K_MAP) {
		FAIL(&d, root, "a policy is a mapping with rules (and approvers)");
		goto fail;
	}
	for (i = 0; i + 1 < root->nkids; i += 2) {
		const struct node *k = root->kids[i];

		if (k->kind != K_SCALAR ||
		    (strcmp(k->text, "rules") != 0 && strcmp(k->text, "approvers") != 0)) {
			FAIL(&d, k, "unknown key '%.40s' (a policy has rules and approvers)",
			     k->kind == K_SCALAR ? k->text : "?");
			goto fail;
		}
		for (j = 0; j < i; j += 2)
			if (strcmp(root->kids[j]->text, k->text) == 0) {
				FAIL(&d, k, "duplicate key '%s'", k->text);
				goto fail;
			}
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		fail_at(&d, 1, 1, "out of memory");
		goto fail;
	}
	snprintf(p->file, sizeof(p->file), "%s", file);
	if ((rules = map_get(root, "rules")) == NULL) {
		FAIL(&d, root, "rules is missing (a list of rules; an empty list denies all)");
		goto fail;
	}
	if (rules->kind != K_SEQ && !(rules->kind == K_SCALAR && !rules->plain &&
				      rules->text[0] == '\0')) {
		FAIL(&d, rules, "rules: a list of rules is expected");
		goto fail;
	}
	if (rules->kind == K_SEQ && rules->nkids > POL_MAX_RULES) {
		FAIL(&d, rules, "rules: at most %d", POL_MAX_RULES);
		goto fail;
	}
	if (rules->kind == K_SEQ && rules->nkids > 0 &&
	    (p->rules = calloc(rules->nkids, sizeof(*p->rules))) == NULL) {
		fail_at(&d, 1, 1, "out of memory");
		goto fail;
	}
	for (i = 0; rules->kind == K_SEQ && i < rules->nkids; i++) {
		p->nrules++;
		if (rule_build(&d, rules->kids[i], i, system, &p->rules[i]) == -1)
			goto fail;
		for (j = 0; j < i; j++)
			if (strcmp(p->rules[j].id, p->rules[i].id) == 0) {
				FAIL(&d, rules->kids[i], "duplicate rule id '%s'", p->rules[i].id);
				goto fail;
			}
	}
	if ((appr = map_get(root, "approvers")) != NULL) {
		if (appr->kind != K_SEQ) {
			FAIL(&d, appr, "approvers: a list of user names is expected");
			goto fail;
		}
		if (appr->nkids > POL_MAX_APPROVERS) {
			FAIL(&d, appr, "approvers: at most %d", POL_MAX_APPROVERS);
			goto fail;
		}
		if (appr->nkids > 0 &&
		    (p->approvers = calloc(appr->nkids, sizeof(*p->approvers))) == NULL) {
			fail_at(&d, 1, 1, "out of memory");
			goto fail;
		}
		for (i = 0; i < appr->nkids; i++) {
			const struct node *u = appr->kids[i];

			if (u->kind != K_SCALAR || !user_name_valid(u->text)) {
				FAIL(&d, u, "approvers: a user name is [a-z0-9_.@-]{1,63}");
				goto fail;
			}
			if (system) {
				FAIL(&d, u,
				     "approvers: the _system policy has none (the operator's "
				     "token decides)");
				goto fail;
			}
			if ((p->approvers[i] = strdup(u->text)) == NULL) {
				fail_at(&d, 1, 1, "out of memory");
				goto fail;
			}
			p->napprovers++;
		}
	}
	node_free(root);
	return p;
fail:
	node_free(root);
	pol_free(p);
	return NULL;
}

static int glob_ok(const char *g, const char *v)
{
	return g == NULL || fnmatch(g, v != NULL ? v : "", 0) == 0;
}

const struct pol_rule *pol_match(const struct pol_policy *p, const struct pol_query *q)
{
	size_t i;

	for (i = 0; p != NULL && i < p->nrules; i++) {
		const struct pol_rule *r = &p->rules[i];

		if (glob_ok(r->name, q->name) && glob_ok(r->scope, q->scope) &&
		    glob_ok(r->workflow, q->workflow) && glob_ok(r->step, q->step) &&
		    glob_ok(r->cli_agent, q->cli_agent) &&
		    (r->tenant == NULL || glob_ok(r->tenant, q->tenant) ||
		     (q->tenant_name != NULL && q->tenant_name[0] != '\0' &&
		      glob_ok(r->tenant, q->tenant_name))))
			return r;
	}
	return NULL;
}

int pol_is_approver(const struct pol_policy *p, const char *user)
{
	size_t i;

	if (p == NULL || user == NULL || user[0] == '\0')
		return 0;
	for (i = 0; i < p->napprovers; i++)
		if (strcmp(p->approvers[i], user) == 0)
			return 1;
	return 0;
}

static void set_glob(json_t *o, const char *k, const char *g)
{
	if (g != NULL)
		json_object_set_new(o, k, json_string(g));
}

json_t *pol_to_json(const struct pol_policy *p)
{
	json_t *rules = json_array(), *appr = json_array(), *r;
	size_t i;

	for (i = 0; p != NULL && i < p->nrules; i++) {
		const struct pol_rule *x = &p->rules[i];

		r = json_pack("{s:s, s:s, s:i}", "id", x->id, "effect", pol_effect_name(x->effect),
			      "line", x->line);
		if (r == NULL)
			continue;
		set_glob(r, "name", x->name);
		set_glob(r, "scope", x->scope);
		set_glob(r, "workflow", x->workflow);
		set_glob(r, "step", x->step);
		set_glob(r, "cli_agent", x->cli_agent);
		set_glob(r, "tenant", x->tenant);
		if (x->effect == POL_ASK)
			json_object_set_new(r, "deadline_s", json_integer(x->deadline_ms / 1000));
		if (x->secret[0] != '\0')
			json_object_set_new(r, "secret", json_string(x->secret));
		if (x->reason[0] != '\0')
			json_object_set_new(r, "reason", sw_json_string_lossy(x->reason));
		if (x->allow_all)
			json_object_set_new(r, "override", json_string("allow-all"));
		json_array_append_new(rules, r);
	}
	for (i = 0; p != NULL && i < p->napprovers; i++)
		json_array_append_new(appr, json_string(p->approvers[i]));
	return json_pack("{s:o, s:o}", "rules", rules, "approvers", appr);
}

json_t *pol_overrides(const struct pol_policy *p)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; p != NULL && i < p->nrules; i++)
		if (p->rules[i].allow_all)
			json_array_append_new(
				a, json_pack("{s:s, s:o}", "rule", p->rules[i].id, "justification",
					     sw_json_string_lossy(p->rules[i].justification)));
	return a;
}
