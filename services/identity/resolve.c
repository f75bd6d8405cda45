/*
 * resolve.c: the cascade, the ACLs and the input check (resolve), and the
 * sealed delivery of pinned values (seal). Both are state machines on the
 * loop: PostgreSQL through sw_store, Vault through vault.c's threads.
 *
 * Resolve, for a tenant and its identity-bearing steps:
 *
 *   1. the profiles: the system one (_system/system/default), each step's
 *      workflow profile (one named but absent is code missing), the user's
 *      (tenant/user/<user>, if any); cached (cache.c);
 *   2. per step, system then workflow then user keys, a later level's key
 *      replacing an earlier one's; a key whose ACL refuses the step (steps:
 *      globs over "workflow/step", fnmatch) or its CLI agent (agents; for
 *      cli_agent and cli_agent_jit steps only) is denied, not resolved;
 *   3. each secret a kept key binds (the system level binds _system's): its
 *      latest version, which must be active (revoked latest: code revoked,
 *      naming the key; none: missing); a Vault secret is read (that version,
 *      or the current one of an operator's path) so a Vault that is down
 *      fails closed here already; cached (metadata and MAC, never values);
 *   4. input_macs against the MACs of every active version of the tenant's
 *      and _system's secrets: a match is credential_in_input naming the
 *      field (and the secret, never its value).
 *
 * A re-run's request pins keys (pins: step, key, secret, version, MAC, from
 * the scheduler's record of the original run): a pinned key takes that
 * version instead of the latest, after steps 1 and 2 exactly as above, so a
 * pin never widens access. It must name a key the step's cascade gives
 * after the ACLs, bound to the same secret (else not_allowed: no other
 * tenant's secret, no key the step may not have); the version must exist
 * with its value (else version_gone), be active (else revoked) and hold
 * the original's value (its MAC; else version_gone). A Vault secret's
 * version is read (?version=N). Read from PostgreSQL, never the cache.
 *
 * Seal checks the host key is listed, each pin is one that a resolution of
 * that run, step and tenant gave, and its version is active -- read from
 * PostgreSQL, never from the cache -- then reads the values, seals them to
 * the host key and wipes them.
 *
 * A seal on a decision (cli_agent_jit, docs/JIT.md): an allow
 * credential.decided is itself the grant. It names the run, attempt, step,
 * tenant, sandbox, key and the requesting host's seal key, and one key is
 * sealed for exactly those: the decided secret's current version, else the
 * key as the run's resolution gave it (the cascade with its ACLs at
 * submit: a key the ACL denied is not_allowed, one the cascade lacks is
 * missing); then as above: host listed, active, read, sealed. The answer's
 * request_id is the credential request's. A seal request carrying a grant
 * (the former path) is refused.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "identity.h"

/* ---- validation ----------------------------------------------------------- */

int id_name_valid(const char *s)
{
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 63)
		return 0;
	if (!(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return 0;
	for (i = 1; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' ||
		      s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

/* Keys a step may never be given: the sandbox's own and the loader's. */
static const char *const reserved_env[] = {
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "TMPDIR", "HOSTNAME",
	"IFS", "ENV", "BASH_ENV", "TERM", "LANG", "GCONV_PATH", "LOCPATH", "NLSPATH",
	"GLIBC_TUNABLES", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "NODE_OPTIONS",
	"PERL5LIB", "PERL5OPT", "RUBYOPT", "HOSTALIASES", "RESOLV_HOST_CONF", NULL,
};
static const char *const reserved_prefix[] = {"LD_", "SAGEWAI_", "LC_", "MALLOC_", NULL};

int id_env_valid(const char *s, const char **why)
{
	size_t i, n;

	*why = "an environment key is [A-Z_][A-Z0-9_]{0,127}";
	if (s == NULL || (n = strlen(s)) == 0 || n > 128)
		return 0;
	if (!(isupper((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (i = 1; i < n; i++)
		if (!(isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
			return 0;
	*why = "a reserved key (the sandbox's own, the loader's or Sagewai's)";
	for (i = 0; reserved_env[i] != NULL; i++)
		if (strcmp(s, reserved_env[i]) == 0)
			return 0;
	for (i = 0; reserved_prefix[i] != NULL; i++)
		if (strncmp(s, reserved_prefix[i], strlen(reserved_prefix[i])) == 0)
			return 0;
	return 1;
}

static const char *const level_names[] = {"system", "workflow", "user"};

int id_level_parse(const char *s, enum id_level *out)
{
	int i;

	for (i = 0; i < 3; i++)
		if (s != NULL && strcmp(s, level_names[i]) == 0) {
			*out = (enum id_level)i;
			return 0;
		}
	return -1;
}

const char *id_level_name(enum id_level l)
{
	return level_names[l];
}

static const char *const agent_names[] = {"claude-code", "codex", "gemini", "custom", NULL};

static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

#define ERR(...)                                                                                  \
	do {                                                                                      \
		snprintf(errstr, errlen, __VA_ARGS__);                                            \
		return -1;                                                                        \
	} while (0)

/* One key's binding: {"secret"|"value", "steps"?, "agents"?}. */
static int check_binding(const char *env, json_t *b, json_t *names, char *errstr, size_t errlen)
{
	const char *k, *why;
	json_t *v, *x;
	size_t i, j;
	int have = 0;

	if (!id_env_valid(env, &why))
		ERR("keys.%.130s: %s", env, why);
	if (!json_is_object(b))
		ERR("keys.%s: an object {\"secret\": NAME} or {\"value\": TEXT} is expected", env);
	json_object_foreach(b, k, v) {
		if (strcmp(k, "secret") == 0) {
			if (!json_is_string(v) || !id_name_valid(json_string_value(v)))
				ERR("keys.%s.secret: a secret name [a-z0-9][a-z0-9_.-]{0,62}", env);
			have++;
			json_array_append(names, v);
		} else if (strcmp(k, "value") == 0) {
			if (!json_is_string(v) || json_string_length(v) > 4096 ||
			    strlen(json_string_value(v)) != json_string_length(v))
				ERR("keys.%s.value: a string of at most 4096 bytes (a plain, "
				    "non-secret knob)",
				    env);
			have++;
		} else if (strcmp(k, "steps") == 0) {
			if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 64)
				ERR("keys.%s.steps: an array of 1 to 64 globs over \"workflow/step\"",
				    env);
			json_array_foreach(v, i, x)
				if (!json_is_string(x) || json_string_length(x) == 0 ||
				    json_string_length(x) > 256 ||
				    strlen(json_string_value(x)) != json_string_length(x) ||
				    !printable(json_string_value(x)))
					ERR("keys.%s.steps[%zu]: a glob of 1 to 256 printable "
					    "characters",
					    env, i);
		} else if (strcmp(k, "agents") == 0) {
			if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 8)
				ERR("keys.%s.agents: an array of CLI agents (claude-code, codex, "
				    "gemini, custom)",
				    env);
			json_array_foreach(v, i, x) {
				for (j = 0; agent_names[j] != NULL; j++)
					if (json_is_string(x) &&
					    strcmp(json_string_value(x), agent_names[j]) == 0)
						break;
				if (agent_names[j] == NULL)
					ERR("keys.%s.agents[%zu]: one of claude-code, codex, gemini, "
					    "custom",
					    env, i);
			}
		} else {
			ERR("keys.%s.%.64s: unknown field (secret, value, steps, agents)", env, k);
		}
	}
	if (have != 1)
		ERR("keys.%s: exactly one of secret and value", env);
	return 0;
}

int id_profile_check(json_t *body, enum id_level level, json_t *names, char *errstr,
		     size_t errlen)
{
	const char *k;
	json_t *keys, *v;

	(void)level;
	if (!json_is_object(body))
		ERR("the body must be an object {\"keys\": {...}}");
	json_object_foreach(body, k, v)
		if (strcmp(k, "keys") != 0)
			ERR("%.64s: unknown field (keys)", k);
	keys = json_object_get(body, "keys");
	if (!json_is_object(keys))
		ERR("keys: an object of environment keys is required");
	if (json_object_size(keys) > ID_MAX_KEYS)
		ERR("keys: at most %d keys", ID_MAX_KEYS);
	json_object_foreach(keys, k, v)
		if (check_binding(k, v, names, errstr, errlen) == -1)
			return -1;
	return 0;
}

#undef ERR

/* A tenant id as a request's header carries it: a UUID or "default";
 * never the operator's scope _system. */
static int tenant_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-_") == n &&
	       strcmp(s, ID_SYSTEM) != 0;
}

static int text_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	return n > 0 && n <= max && printable(s);
}

/* ---- resolve --------------------------------------------------------------- */

enum { PRIO_BAD, PRIO_INPUT, PRIO_PROFILE, PRIO_KEY, PRIO_NONE };

struct rslv {
	struct id_env *env;
	struct id_resolve_in in;
	id_resolve_cb cb;
	void *opaque;
	json_t *profiles; /* "scope|level|name" -> body, or null when absent */
	json_t *asked;	  /* the keys of profiles read from PostgreSQL (to cache) */
	json_t *metas;	  /* "scope|name" -> {backend, vault_path, version, state, mac,
			     code?, error?, fresh?}, null when absent */
	json_t *matches;  /* input MAC matches [{field, secret, version}] */
	json_t *pmetas;	  /* pinned versions: "scope|name|version" -> {backend, vault_path,
			     version, state, mac, code?, error?}, null when absent */
	json_t *plans;	  /* per step: {env: {level, profile, spec}} */
	json_t *denied;
	int pending;
	int phase;
	int prio;
	char code[32];
	char error[512];
};

static void rslv_next(struct rslv *r);

static void set_error(struct rslv *r, int prio, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void set_error(struct rslv *r, int prio, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (prio >= r->prio)
		return;
	r->prio = prio;
	snprintf(r->code, sizeof(r->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

static void rslv_free(struct rslv *r)
{
	json_decref(r->in.steps);
	json_decref(r->in.input_macs);
	json_decref(r->in.pins);
	json_decref(r->pmetas);
	json_decref(r->profiles);
	json_decref(r->asked);
	json_decref(r->metas);
	json_decref(r->matches);
	json_decref(r->plans);
	json_decref(r->denied);
	free(r);
}

static void done_one(struct rslv *r)
{
	if (--r->pending == 0)
		rslv_next(r);
}

static const char *step_str(json_t *s, const char *k)
{
	const char *v = json_string_value(json_object_get(s, k));

	return v != NULL ? v : "";
}

static int hex_mac_or_empty(const char *s)
{
	size_t n = strlen(s);

	return n == 0 || (n == 2 * ID_MAC_BYTES && strspn(s, "0123456789abcdef") == n);
}

/* A re-run's pins: each {step (one of steps), env, secret, version >= 1,
 * mac (64 hex or "")}, one per step and key; bad_request otherwise. */
static int pins_validate(struct rslv *r)
{
	json_t *p, *q, *s, *v;
	const char *why;
	size_t i, j;

	if (r->in.pins == NULL)
		return 0;
	if (!json_is_array(r->in.pins) || json_array_size(r->in.pins) > ID_MAX_PINS) {
		set_error(r, PRIO_BAD, "bad_request", "pins: an array of at most %d pins",
			  ID_MAX_PINS);
		return -1;
	}
	json_array_foreach(r->in.pins, i, p) {
		const char *step = step_str(p, "step"), *env = step_str(p, "env");

		v = json_object_get(p, "version");
		if (!json_is_object(p) || !text_ok(step, 128) || !id_env_valid(env, &why) ||
		    !id_name_valid(step_str(p, "secret")) || !json_is_integer(v) ||
		    json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX ||
		    !hex_mac_or_empty(step_str(p, "mac"))) {
			set_error(r, PRIO_BAD, "bad_request",
				  "pins[%zu]: {step, env, secret, version, mac} with a valid key"
				  " and secret name, a version from 1 and a 32-byte MAC or none",
				  i);
			return -1;
		}
		json_array_foreach(r->in.steps, j, s)
			if (strcmp(step_str(s, "step"), step) == 0)
				break;
		if (j == json_array_size(r->in.steps)) {
			set_error(r, PRIO_BAD, "bad_request",
				  "pins[%zu]: step %.128s is not an identity-bearing step of the"
				  " request",
				  i, step);
			return -1;
		}
		for (j = 0; j < i; j++) {
			q = json_array_get(r->in.pins, j);
			if (strcmp(step_str(q, "step"), step) == 0 &&
			    strcmp(step_str(q, "env"), env) == 0) {
				set_error(r, PRIO_BAD, "bad_request",
					  "pins[%zu]: key %s of step %.128s is pinned twice", i,
					  env, step);
				return -1;
			}
		}
	}
	return 0;
}

/* The request's own checks: bad_request when it is malformed. */
static int rslv_validate(struct rslv *r)
{
	json_t *s, *m;
	size_t i;

	if (!tenant_valid(r->in.tenant)) {
		set_error(r, PRIO_BAD, "bad_request", "header.tenant is not a tenant id");
		return -1;
	}
	if (!json_is_array(r->in.steps) || json_array_size(r->in.steps) > ID_MAX_STEPS) {
		set_error(r, PRIO_BAD, "bad_request", "steps: an array of at most %d steps",
			  ID_MAX_STEPS);
		return -1;
	}
	json_array_foreach(r->in.steps, i, s) {
		const char *p = step_str(s, "profile");

		if (!json_is_object(s) || !text_ok(step_str(s, "step"), 128) ||
		    !json_is_string(json_object_get(s, "mode")) ||
		    strlen(step_str(s, "agent")) > 64 || (p[0] != '\0' && !id_name_valid(p))) {
			set_error(r, PRIO_BAD, "bad_request",
				  "steps[%zu]: {step, mode, agent, profile} with a step name of "
				  "1-128 characters and a valid profile name",
				  i);
			return -1;
		}
	}
	if (pins_validate(r) == -1)
		return -1;
	if (r->in.input_macs == NULL)
		return 0;
	if (!json_is_array(r->in.input_macs) ||
	    json_array_size(r->in.input_macs) > ID_MAX_INPUT_MACS) {
		set_error(r, PRIO_BAD, "bad_request", "input_macs: at most %d entries",
			  ID_MAX_INPUT_MACS);
		return -1;
	}
	json_array_foreach(r->in.input_macs, i, m) {
		const char *mac = step_str(m, "mac");

		if (!text_ok(step_str(m, "field"), 512) ||
		    (strlen(mac) != 2 * ID_MAC_BYTES && mac[0] != '\0')) {
			set_error(r, PRIO_BAD, "bad_request",
				  "input_macs[%zu]: {field, mac} with a 32-byte MAC", i);
			return -1;
		}
	}
	return 0;
}

/* -- phase 1: profiles and the input check -- */

static void pkey(char *out, size_t len, const char *scope, const char *level, const char *name)
{
	snprintf(out, len, "%s|%s|%s", scope, level, name);
}

static void profiles_cb(PGresult *res, const char *err, void *opaque)
{
	struct rslv *r = opaque;
	char k[512], ck[160];
	int i;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "profile read failed", "error", err, NULL);
		set_error(r, PRIO_BAD, "backend_unavailable",
			  "backend builtin unavailable: cannot read the profiles");
	} else {
		for (i = 0; i < PQntuples(res); i++) {
			json_t *body = json_loads(PQgetvalue(res, i, 3), 0, NULL);

			pkey(k, sizeof(k), PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
			     PQgetvalue(res, i, 2));
			if (body == NULL)
				continue;
			json_object_set_new(r->profiles, k, body);
		}
		/* cache what was asked, absent ones as null */
		{
			const char *key;
			json_t *v;

			json_object_foreach(r->asked, key, v) {
				char scope[128], rest[128];
				const char *bar = strchr(key, '|');

				if (bar == NULL || (size_t)(bar - key) >= sizeof(scope))
					continue;
				snprintf(scope, sizeof(scope), "%.*s", (int)(bar - key), key);
				snprintf(rest, sizeof(rest), "%s", bar + 1);
				snprintf(ck, sizeof(ck), "p/%s", rest);
				id_cache_put(r->env, scope, ck, json_object_get(r->profiles, key));
			}
		}
	}
	done_one(r);
}

static void matches_cb(PGresult *res, const char *err, void *opaque)
{
	struct rslv *r = opaque;
	json_t *m;
	size_t j;
	int i;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "input check failed", "error", err, NULL);
		set_error(r, PRIO_BAD, "backend_unavailable",
			  "backend builtin unavailable: cannot check the input");
		done_one(r);
		return;
	}
	for (i = 0; i < PQntuples(res); i++) {
		const char *mac = PQgetvalue(res, i, 3);

		json_array_foreach(r->in.input_macs, j, m)
			if (strcasecmp(step_str(m, "mac"), mac) == 0)
				json_array_append_new(
					r->matches,
					json_pack("{s:s, s:s, s:s, s:i}", "field", step_str(m, "field"),
						  "scope", PQgetvalue(res, i, 0), "secret",
						  PQgetvalue(res, i, 1), "version",
						  atoi(PQgetvalue(res, i, 2))));
	}
	done_one(r);
}

static void want_profile(struct rslv *r, struct sw_buf q[3], size_t *nq, const char *scope,
			 const char *level, const char *name)
{
	char k[512], ck[128];
	json_t *c;

	pkey(k, sizeof(k), scope, level, name);
	if (json_object_get(r->profiles, k) != NULL)
		return;
	snprintf(ck, sizeof(ck), "p/%s|%s", level, name);
	if ((c = id_cache_get(r->env, scope, ck)) != NULL) {
		json_object_set_new(r->profiles, k, c);
		return;
	}
	json_object_set_new(r->profiles, k, json_null()); /* absent unless the query finds it */
	json_object_set_new(r->asked, k, json_true());
	sw_buf_printf(&q[0], "%s\"%s\"", *nq ? "," : "", scope);
	sw_buf_printf(&q[1], "%s\"%s\"", *nq ? "," : "", level);
	sw_buf_printf(&q[2], "%s\"%s\"", *nq ? "," : "", name);
	(*nq)++;
}

/* Close the n Postgres array literals a[] (opened with "{"), and when nq
 * rows are asked for, queue sql over them as $1..$n; a failure to queue is
 * the resolution's error ("cannot read <what>"). Frees a[]. */
static void query_arrays(struct rslv *r, struct sw_buf *a, int n, size_t nq, const char *sql,
			 sw_store_cb cb, const char *what)
{
	const char *params[3];
	int c, oom = 0;

	for (c = 0; c < n; c++) {
		sw_buf_add(&a[c], "}", 1);
		params[c] = a[c].p;
		oom |= a[c].oom;
	}
	if (nq > 0) {
		r->pending++;
		if (oom || sw_store_query(r->env->store, sql, n, params, cb, r) == -1) {
			set_error(r, PRIO_BAD, "backend_unavailable",
				  "backend builtin unavailable: cannot read %s", what);
			r->pending--;
		}
	}
	for (c = 0; c < n; c++)
		sw_buf_free(&a[c]);
}

static void phase_profiles(struct rslv *r)
{
	struct sw_buf q[3] = {{0}};
	size_t nq = 0, i;
	json_t *s;
	int c;

	for (c = 0; c < 3; c++)
		sw_buf_add(&q[c], "{", 1);
	want_profile(r, q, &nq, ID_SYSTEM, "system", "default");
	json_array_foreach(r->in.steps, i, s)
		if (step_str(s, "profile")[0] != '\0')
			want_profile(r, q, &nq, r->in.tenant, "workflow", step_str(s, "profile"));
	if (id_name_valid(r->in.user))
		want_profile(r, q, &nq, r->in.tenant, "user", r->in.user);
	r->pending = 1; /* held until everything is queued */
	query_arrays(r, q, 3, nq,
		     "SELECT p.tenant, p.level, p.name, p.body::text FROM profiles p"
		     " JOIN unnest($1::text[], $2::text[], $3::text[])"
		     "  AS u(tenant, level, name)"
		     " ON p.tenant = u.tenant AND p.level = u.level AND p.name = u.name",
		     profiles_cb, "the profiles");
	if (r->in.input_macs != NULL && json_array_size(r->in.input_macs) > 0) {
		struct sw_buf m = {0};
		json_t *x;
		const char *p2[2];

		sw_buf_add(&m, "{", 1);
		json_array_foreach(r->in.input_macs, i, x)
			if (step_str(x, "mac")[0] != '\0')
				sw_buf_printf(&m, "%s\"%s\"", m.len > 1 ? "," : "",
					      step_str(x, "mac"));
		sw_buf_add(&m, "}", 1);
		p2[0] = r->in.tenant;
		p2[1] = m.p;
		r->pending++;
		if (m.oom ||
		    sw_store_query(r->env->store,
				   "SELECT v.tenant, v.name, v.version, encode(v.mac, 'hex')"
				   " FROM versions v WHERE v.state = 'active'"
				   " AND v.tenant IN ($1, '_system')"
				   " AND v.mac IN (SELECT decode(x, 'hex') FROM unnest($2::text[]) x)"
				   " ORDER BY v.tenant, v.name, v.version",
				   2, p2, matches_cb, r) == -1) {
			set_error(r, PRIO_BAD, "backend_unavailable",
				  "backend builtin unavailable: cannot check the input");
			r->pending--;
		}
		sw_buf_free(&m);
	}
	done_one(r);
}

/* -- phase 2: the cascade per step, then the secrets it binds -- */

static int acl_allows(json_t *spec, const char *workflow, json_t *step, const char **reason)
{
	json_t *steps = json_object_get(spec, "steps");
	json_t *agents = json_object_get(spec, "agents");
	const char *mode = step_str(step, "mode"), *agent = step_str(step, "agent");
	char subject[300];
	json_t *g;
	size_t i;
	int ok;

	if (json_is_array(steps)) {
		snprintf(subject, sizeof(subject), "%s/%s", workflow, step_str(step, "step"));
		ok = 0;
		json_array_foreach(steps, i, g)
			if (fnmatch(json_string_value(g), subject, 0) == 0)
				ok = 1;
		if (!ok) {
			*reason = "step not in acl";
			return 0;
		}
	}
	if (json_is_array(agents) &&
	    (strcmp(mode, "cli_agent") == 0 || strcmp(mode, "cli_agent_jit") == 0)) {
		ok = 0;
		json_array_foreach(agents, i, g)
			if (strcmp(json_string_value(g), agent) == 0)
				ok = 1;
		if (!ok) {
			*reason = "agent not in acl";
			return 0;
		}
	}
	return 1;
}

/* Lay the keys of one profile over plan. */
static void overlay(json_t *plan, json_t *body, const char *level, const char *profile)
{
	const char *k;
	json_t *v;

	if (!json_is_object(body))
		return;
	json_object_foreach(json_object_get(body, "keys"), k, v)
		json_object_set_new(plan, k,
				    json_pack("{s:s, s:s, s:O}", "level", level, "profile", profile,
					      "spec", v));
}

static const char *owner_of(struct rslv *r, const char *level)
{
	return strcmp(level, "system") == 0 ? ID_SYSTEM : r->in.tenant;
}

static void metas_cb(PGresult *res, const char *err, void *opaque)
{
	struct rslv *r = opaque;
	char k[512];
	int i;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "secret read failed", "error", err, NULL);
		set_error(r, PRIO_BAD, "backend_unavailable",
			  "backend builtin unavailable: cannot read the secrets");
		done_one(r);
		return;
	}
	for (i = 0; i < PQntuples(res); i++) {
		snprintf(k, sizeof(k), "%s|%s", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		json_object_set_new(
			r->metas, k,
			json_pack("{s:s, s:s, s:i, s:s, s:s, s:b}", "backend",
				  PQgetvalue(res, i, 2), "vault_path", PQgetvalue(res, i, 3),
				  "version", atoi(PQgetvalue(res, i, 4)), "state",
				  PQgetvalue(res, i, 5), "mac", PQgetvalue(res, i, 6), "fresh", 1));
	}
	done_one(r);
}

static void pmetas_cb(PGresult *res, const char *err, void *opaque)
{
	struct rslv *r = opaque;
	char k[512];
	int i;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "pinned version read failed", "error", err, NULL);
		set_error(r, PRIO_BAD, "backend_unavailable",
			  "backend builtin unavailable: cannot read the pinned versions");
		done_one(r);
		return;
	}
	for (i = 0; i < PQntuples(res); i++) {
		snprintf(k, sizeof(k), "%s|%s|%s", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
			 PQgetvalue(res, i, 4));
		json_object_set_new(
			r->pmetas, k,
			json_pack("{s:s, s:s, s:i, s:s, s:s}", "backend", PQgetvalue(res, i, 2),
				  "vault_path", PQgetvalue(res, i, 3), "version",
				  atoi(PQgetvalue(res, i, 4)), "state", PQgetvalue(res, i, 5),
				  "mac", PQgetvalue(res, i, 6)));
	}
	done_one(r);
}

/* The pin of key env of step s, or NULL. */
static json_t *pin_of(struct rslv *r, json_t *s, const char *env)
{
	json_t *p;
	size_t i;

	json_array_foreach(r->in.pins, i, p)
		if (strcmp(step_str(p, "step"), step_str(s, "step")) == 0 &&
		    strcmp(step_str(p, "env"), env) == 0)
			return p;
	return NULL;
}

/* Every pin of step s must name a key its plan (the cascade after the
 * ACLs) binds to the same secret: a pin never widens access. */
static void pins_check(struct rslv *r, json_t *s, json_t *plan)
{
	json_t *p, *e, *d = NULL;
	size_t i, j;

	json_array_foreach(r->in.pins, i, p) {
		const char *env = step_str(p, "env"), *sec = step_str(p, "secret"), *now;

		if (strcmp(step_str(p, "step"), step_str(s, "step")) != 0)
			continue;
		e = json_object_get(plan, env);
		now = json_string_value(json_object_get(json_object_get(e, "spec"), "secret"));
		if (now != NULL && strcmp(now, sec) == 0)
			continue;
		if (e != NULL) {
			set_error(r, PRIO_KEY, "not_allowed",
				  "not_allowed: %s (secret %s v%d) is pinned, but step %s is given"
				  " %s %s now",
				  env, sec, (int)json_integer_value(json_object_get(p, "version")),
				  step_str(s, "step"), now != NULL ? "secret" : "a plain knob",
				  now != NULL ? now : "");
			continue;
		}
		json_array_foreach(r->denied, j, d)
			if (strcmp(step_str(d, "step"), step_str(s, "step")) == 0 &&
			    strcmp(step_str(d, "env"), env) == 0)
				break;
		set_error(r, PRIO_KEY, "not_allowed",
			  "not_allowed: %s (secret %s v%d) is pinned, but step %s is not given"
			  " the key (%s)",
			  env, sec, (int)json_integer_value(json_object_get(p, "version")),
			  step_str(s, "step"),
			  j < json_array_size(r->denied) ? step_str(d, "reason")
							 : "its cascade does not bind it");
	}
}

static void phase_cascade(struct rslv *r)
{
	struct sw_buf q[2] = {{0}}, pq[3] = {{0}};
	char k[512];
	size_t i, nq = 0, npq = 0;
	json_t *s;
	int c;

	r->pending = 1;
	for (c = 0; c < 2; c++)
		sw_buf_add(&q[c], "{", 1);
	for (c = 0; c < 3; c++)
		sw_buf_add(&pq[c], "{", 1);
	json_array_foreach(r->in.steps, i, s) {
		json_t *plan = json_object(), *body, *e;
		const char *prof = step_str(s, "profile"), *env;

		pkey(k, sizeof(k), ID_SYSTEM, "system", "default");
		overlay(plan, json_object_get(r->profiles, k), "system", "default");
		if (prof[0] != '\0') {
			pkey(k, sizeof(k), r->in.tenant, "workflow", prof);
			body = json_object_get(r->profiles, k);
			if (!json_is_object(body))
				set_error(r, PRIO_PROFILE, "missing", "missing: profile %s (step %s)",
					  prof, step_str(s, "step"));
			overlay(plan, body, "workflow", prof);
		}
		if (id_name_valid(r->in.user)) {
			pkey(k, sizeof(k), r->in.tenant, "user", r->in.user);
			overlay(plan, json_object_get(r->profiles, k), "user", r->in.user);
		}
		/* the ACL of each key that won; refused keys leave the plan */
		json_object_foreach_safe(plan, body, env, e) {
			json_t *spec = json_object_get(e, "spec");
			const char *why, *secret = json_string_value(json_object_get(spec, "secret"));
			json_t *m;

			if (!acl_allows(spec, r->in.workflow, s, &why)) {
				json_array_append_new(
					r->denied,
					json_pack("{s:s, s:s, s:s, s:s, s:s}", "step",
						  step_str(s, "step"), "env", env, "secret",
						  secret ? secret : "", "reason", why, "level",
						  json_string_value(json_object_get(e, "level"))));
				json_object_del(plan, env);
				continue;
			}
			if (secret == NULL)
				continue;
			if ((m = pin_of(r, s, env)) != NULL &&
			    strcmp(step_str(m, "secret"), secret) == 0) {
				/* a re-run's version of this secret, read below */
				const char *owner =
					owner_of(r, json_string_value(json_object_get(e, "level")));
				int ver = (int)json_integer_value(json_object_get(m, "version"));

				json_object_set_new(e, "pin", json_integer(ver));
				snprintf(k, sizeof(k), "%s|%s|%d", owner, secret, ver);
				if (json_object_get(r->pmetas, k) != NULL)
					continue;
				json_object_set_new(r->pmetas, k, json_null());
				sw_buf_printf(&pq[0], "%s\"%s\"", npq ? "," : "", owner);
				sw_buf_printf(&pq[1], "%s\"%s\"", npq ? "," : "", secret);
				sw_buf_printf(&pq[2], "%s%d", npq ? "," : "", ver);
				npq++;
				continue;
			}
			snprintf(k, sizeof(k), "%s|%s",
				 owner_of(r, json_string_value(json_object_get(e, "level"))),
				 secret);
			if (json_object_get(r->metas, k) != NULL)
				continue;
			{
				char ck[80];
				const char *owner =
					owner_of(r, json_string_value(json_object_get(e, "level")));

				snprintf(ck, sizeof(ck), "s/%s", secret);
				if ((m = id_cache_get(r->env, owner, ck)) != NULL) {
					json_object_set_new(r->metas, k, m);
					continue;
				}
				json_object_set_new(r->metas, k, json_null());
				sw_buf_printf(&q[0], "%s\"%s\"", nq ? "," : "", owner);
				sw_buf_printf(&q[1], "%s\"%s\"", nq ? "," : "", secret);
				nq++;
			}
		}
		pins_check(r, s, plan);
		json_array_append_new(r->plans, plan);
	}
	query_arrays(r, pq, 3, npq,
		     "SELECT s.tenant, s.name, s.backend, s.vault_path, v.version,"
		     " v.state, coalesce(encode(v.mac, 'hex'), '')"
		     " FROM secrets s JOIN unnest($1::text[], $2::text[], $3::int[])"
		     "  AS u(tenant, name, version)"
		     "  ON s.tenant = u.tenant AND s.name = u.name"
		     " JOIN versions v ON v.tenant = s.tenant AND v.name = s.name"
		     "  AND v.version = u.version",
		     pmetas_cb, "the pinned versions");
	query_arrays(r, q, 2, nq,
		     "SELECT s.tenant, s.name, s.backend, s.vault_path,"
		     " coalesce(v.version, 0), coalesce(v.state, ''),"
		     " coalesce(encode(v.mac, 'hex'), '')"
		     " FROM secrets s JOIN unnest($1::text[], $2::text[]) AS u(tenant, name)"
		     "  ON s.tenant = u.tenant AND s.name = u.name"
		     " LEFT JOIN LATERAL (SELECT version, state, mac FROM versions x"
		     "  WHERE x.tenant = s.tenant AND x.name = s.name"
		     "  ORDER BY version DESC LIMIT 1) v ON true",
		     metas_cb, "the secrets");
	done_one(r);
}

/* -- phase 3: Vault secrets are read (the version, or a reference's current) -- */

struct vread {
	struct rslv *r;
	char key[512]; /* in metas */
	char tenant[128], name[64];
};

static void meta_cache(struct rslv *r, const char *key, json_t *meta)
{
	char scope[128], ck[80];
	const char *bar = strchr(key, '|');

	if (bar == NULL || (size_t)(bar - key) >= sizeof(scope))
		return;
	snprintf(scope, sizeof(scope), "%.*s", (int)(bar - key), key);
	snprintf(ck, sizeof(ck), "s/%s", bar + 1);
	json_object_del(meta, "fresh");
	id_cache_put(r->env, scope, ck, meta);
}

static void ref_state_cb(PGresult *res, const char *err, void *opaque)
{
	struct vread *v = opaque;
	struct rslv *r = v->r;
	json_t *meta = json_object_get(r->metas, v->key);

	if (err != NULL || PQntuples(res) != 1) {
		if (err != NULL)
			sw_log(SW_LOG_ERROR, "vault version record failed", "error", err, NULL);
		json_object_set_new(meta, "code", json_string("backend_unavailable"));
		json_object_set_new(meta, "error",
				    json_string("backend builtin unavailable: cannot record the "
						"Vault version"));
	} else {
		json_object_set_new(meta, "state", json_string(PQgetvalue(res, 0, 0)));
		meta_cache(r, v->key, meta);
	}
	free(v);
	done_one(r);
}

static void vault_read_cb(struct id_env *env, const struct id_bvalue *b, void *opaque)
{
	struct vread *v = opaque;
	struct rslv *r = v->r;
	json_t *meta = json_object_get(r->metas, v->key);
	char mac[2 * ID_MAC_BYTES + 1], ver[16], *pm;
	const char *params[4];
	struct sw_store_stmt st[2];

	if (b->err != ID_BOK) {
		json_object_set_new(meta, "code",
				    json_string(b->err == ID_BMISSING   ? "missing"
						: b->err == ID_BREVOKED ? "revoked"
									: "backend_unavailable"));
		json_object_set_new(meta, "error", json_string(b->error));
		free(v);
		done_one(r);
		return;
	}
	sw_hex_encode(b->mac, ID_MAC_BYTES, mac);
	json_object_set_new(meta, "mac", json_string(mac));
	if (strcmp(json_string_value(json_object_get(meta, "vault_path")), "") == 0) {
		meta_cache(r, v->key, meta);
		free(v);
		done_one(r);
		return;
	}
	/* a reference: record the version Vault holds now; its state decides */
	json_object_set_new(meta, "version", json_integer(b->version));
	snprintf(ver, sizeof(ver), "%d", b->version);
	if ((pm = id_pg_bytea_param(b->mac, ID_MAC_BYTES)) == NULL)
		goto fail;
	params[0] = v->tenant;
	params[1] = v->name;
	params[2] = ver;
	params[3] = pm;
	st[0].sql = "INSERT INTO versions (tenant, name, version, mac) VALUES ($1, $2, $3::int,"
		    " $4::bytea) ON CONFLICT DO NOTHING";
	st[0].nparams = 4;
	st[0].params = params;
	st[1].sql = "SELECT state FROM versions WHERE tenant = $1 AND name = $2 AND version = $3::int";
	st[1].nparams = 3;
	st[1].params = params;
	if (sw_store_tx(env->store, st, 2, ref_state_cb, v) == -1) {
		free(pm);
		goto fail;
	}
	free(pm);
	return;
fail:
	json_object_set_new(meta, "code", json_string("backend_unavailable"));
	json_object_set_new(meta, "error", json_string("out of memory"));
	free(v);
	done_one(r);
}

/* The first key of the plans bound to meta key k (for errors). */
static const char *first_env(struct rslv *r, const char *k)
{
	const char *env;
	json_t *plan, *e;
	size_t i;
	char kk[512];

	json_array_foreach(r->plans, i, plan)
		json_object_foreach(plan, env, e) {
			const char *sec = json_string_value(
				json_object_get(json_object_get(e, "spec"), "secret"));

			if (sec == NULL)
				continue;
			snprintf(kk, sizeof(kk), "%s|%s",
				 owner_of(r, json_string_value(json_object_get(e, "level"))), sec);
			if (strcmp(kk, k) == 0)
				return env;
		}
	return "";
}

/* A pinned Vault version read: it must be there, with the row's value. */
static void pin_vault_cb(struct id_env *env, const struct id_bvalue *b, void *opaque)
{
	struct vread *v = opaque;
	struct rslv *r = v->r;
	json_t *meta = json_object_get(r->pmetas, v->key);
	char mac[2 * ID_MAC_BYTES + 1];

	(void)env;
	if (b->err != ID_BOK) {
		json_object_set_new(meta, "code",
				    json_string(b->err == ID_BMISSING   ? "version_gone"
						: b->err == ID_BREVOKED ? "revoked"
									: "backend_unavailable"));
		json_object_set_new(meta, "error", json_string(b->error));
	} else {
		sw_hex_encode(b->mac, ID_MAC_BYTES, mac);
		if (strcmp(mac, step_str(meta, "mac")) != 0)
			json_object_set_new(meta, "changed", json_true());
	}
	free(v);
	done_one(r);
}

/* The first key of the plans pinned to version ver of owner's secret name
 * (for errors). */
static const char *pinned_env(struct rslv *r, const char *owner, const char *name, int ver)
{
	const char *env;
	json_t *plan, *e;
	size_t i;

	json_array_foreach(r->plans, i, plan)
		json_object_foreach(plan, env, e)
			if (json_integer_value(json_object_get(e, "pin")) == ver &&
			    strcmp(step_str(json_object_get(e, "spec"), "secret"), name) == 0 &&
			    strcmp(owner_of(r, step_str(e, "level")), owner) == 0)
				return env;
	return "";
}

/* Read each active pinned Vault version (builtin values are read at seal). */
static void phase_vault_pins(struct rslv *r)
{
	const char *k;
	json_t *meta;

	json_object_foreach(r->pmetas, k, meta) {
		struct id_secret_ref ref;
		const char *b1 = strchr(k, '|'), *b2 = b1 ? strchr(b1 + 1, '|') : NULL;
		struct vread *v;

		if (!json_is_object(meta) || b2 == NULL ||
		    strcmp(step_str(meta, "backend"), "vault") != 0 ||
		    strcmp(step_str(meta, "state"), "active") != 0)
			continue;
		if (r->env->vault == NULL) {
			json_object_set_new(meta, "code", json_string("backend_unavailable"));
			json_object_set_new(
				meta, "error",
				json_string("backend vault is not configured (SAGEWAI_VAULT_ADDR)"));
			continue;
		}
		memset(&ref, 0, sizeof(ref));
		snprintf(ref.tenant, sizeof(ref.tenant), "%.*s", (int)(b1 - k), k);
		snprintf(ref.name, sizeof(ref.name), "%.*s", (int)(b2 - b1 - 1), b1 + 1);
		snprintf(ref.env, sizeof(ref.env), "%s",
			 pinned_env(r, ref.tenant, ref.name,
				    (int)json_integer_value(json_object_get(meta, "version"))));
		snprintf(ref.backend, sizeof(ref.backend), "vault");
		snprintf(ref.vault_path, sizeof(ref.vault_path), "%s",
			 step_str(meta, "vault_path"));
		if ((v = calloc(1, sizeof(*v))) == NULL) {
			json_object_set_new(meta, "code", json_string("backend_unavailable"));
			json_object_set_new(meta, "error", json_string("out of memory"));
			continue;
		}
		v->r = r;
		snprintf(v->key, sizeof(v->key), "%s", k);
		r->pending++;
		if (id_backend_get(r->env, &ref,
				   (int)json_integer_value(json_object_get(meta, "version")),
				   pin_vault_cb, v) == -1) {
			r->pending--;
			free(v);
			json_object_set_new(meta, "code", json_string("backend_unavailable"));
			json_object_set_new(meta, "error",
					    json_string("backend vault: cannot queue the read"));
		}
	}
}

static void phase_vault(struct rslv *r)
{
	const char *k;
	json_t *meta;

	r->pending = 1;
	phase_vault_pins(r);
	json_object_foreach(r->metas, k, meta) {
		struct id_secret_ref ref;
		const char *bar = strchr(k, '|');
		struct vread *v;
		int version;

		if (!json_is_object(meta) || !json_is_true(json_object_get(meta, "fresh")))
			continue;
		if (strcmp(json_string_value(json_object_get(meta, "backend")), "vault") != 0) {
			meta_cache(r, k, meta);
			continue;
		}
		version = (int)json_integer_value(json_object_get(meta, "version"));
		memset(&ref, 0, sizeof(ref));
		snprintf(ref.tenant, sizeof(ref.tenant), "%.*s", (int)(bar - k), k);
		snprintf(ref.name, sizeof(ref.name), "%s", bar + 1);
		snprintf(ref.env, sizeof(ref.env), "%s", first_env(r, k));
		snprintf(ref.backend, sizeof(ref.backend), "vault");
		snprintf(ref.vault_path, sizeof(ref.vault_path), "%s",
			 json_string_value(json_object_get(meta, "vault_path")));
		if (ref.vault_path[0] == '\0' &&
		    (version == 0 ||
		     strcmp(json_string_value(json_object_get(meta, "state")), "active") != 0)) {
			meta_cache(r, k, meta); /* nothing to read: missing or revoked */
			continue;
		}
		if (r->env->vault == NULL) {
			json_object_set_new(meta, "code", json_string("backend_unavailable"));
			json_object_set_new(
				meta, "error",
				json_string("backend vault is not configured (SAGEWAI_VAULT_ADDR)"));
			continue;
		}
		if ((v = calloc(1, sizeof(*v))) == NULL)
			continue;
		v->r = r;
		snprintf(v->key, sizeof(v->key), "%s", k);
		snprintf(v->tenant, sizeof(v->tenant), "%s", ref.tenant);
		snprintf(v->name, sizeof(v->name), "%s", ref.name);
		r->pending++;
		if (id_backend_get(r->env, &ref, ref.vault_path[0] ? 0 : version, vault_read_cb,
				   v) == -1) {
			r->pending--;
			free(v);
			json_object_set_new(meta, "code", json_string("backend_unavailable"));
			json_object_set_new(meta, "error",
					    json_string("backend vault: cannot queue the read"));
		}
	}
	done_one(r);
}

/* -- phase 4: the answer -- */

static int cmp_env(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void phase_answer(struct rslv *r)
{
	json_t *steps = json_array(), *stored = json_array(), *answer, *s, *m;
	size_t i;

	if (json_array_size(r->matches) > 0) {
		m = json_array_get(r->matches, 0);
		set_error(r, PRIO_INPUT, "credential_in_input",
			  "credential in input: %s carries the value of secret %s%s",
			  step_str(m, "field"), step_str(m, "secret"),
			  strcmp(step_str(m, "scope"), ID_SYSTEM) == 0 ? " of _system" : "");
	}
	json_array_foreach(r->in.steps, i, s) {
		json_t *plan = json_array_get(r->plans, i), *keys = json_array(),
		       *skeys = json_array(), *e;
		const char **envs = NULL, *env;
		size_t n = 0, j;

		if (plan != NULL && json_object_size(plan) > 0 &&
		    (envs = calloc(json_object_size(plan), sizeof(*envs))) != NULL) {
			json_object_foreach(plan, env, e)
				envs[n++] = env;
			qsort(envs, n, sizeof(*envs), cmp_env);
		}
		for (j = 0; j < n; j++) {
			json_t *spec, *meta;
			const char *level, *secret, *owner, *state;
			char k[512];

			e = json_object_get(plan, envs[j]);
			spec = json_object_get(e, "spec");
			level = json_string_value(json_object_get(e, "level"));
			secret = json_string_value(json_object_get(spec, "secret"));
			if (secret == NULL) {
				json_array_append_new(
					keys, json_pack("{s:s, s:s, s:O, s:s, s:s, s:i, s:s, s:O, s:s}",
							"env", envs[j], "level", level, "profile",
							json_object_get(e, "profile"), "kind", "plain",
							"secret", "", "version", 0, "backend", "",
							"value", json_object_get(spec, "value"), "mac",
							""));
				continue;
			}
			owner = owner_of(r, level);
			if (json_object_get(e, "pin") != NULL) {
				int ver = (int)json_integer_value(json_object_get(e, "pin"));
				const char *sys = strcmp(owner, ID_SYSTEM) == 0 ? " of _system" : "";
				json_t *pin = pin_of(r, s, envs[j]);

				snprintf(k, sizeof(k), "%s|%s|%d", owner, secret, ver);
				meta = json_object_get(r->pmetas, k);
				if (!json_is_object(meta)) {
					set_error(r, PRIO_KEY, "version_gone",
						  "version_gone: %s (secret %s%s v%d): no such version",
						  envs[j], secret, sys, ver);
					continue;
				}
				state = step_str(meta, "state");
				if (strcmp(state, "deleted") == 0) {
					set_error(r, PRIO_KEY, "version_gone",
						  "version_gone: %s (secret %s%s v%d): its value was"
						  " destroyed",
						  envs[j], secret, sys, ver);
					continue;
				}
				if (strcmp(state, "active") != 0) {
					set_error(r, PRIO_KEY, "revoked", "revoked: %s (secret %s%s v%d)",
						  envs[j], secret, sys, ver);
					continue;
				}
				if (json_object_get(meta, "code") != NULL) {
					set_error(r, PRIO_KEY, step_str(meta, "code"), "%s",
						  step_str(meta, "error"));
					continue;
				}
				if (json_is_true(json_object_get(meta, "changed")) ||
				    (step_str(pin, "mac")[0] != '\0' &&
				     strcmp(step_str(pin, "mac"), step_str(meta, "mac")) != 0)) {
					set_error(r, PRIO_KEY, "version_gone",
						  "version_gone: %s (secret %s%s v%d): the version holds"
						  " another value than the original run's",
						  envs[j], secret, sys, ver);
					continue;
				}
			} else {
				snprintf(k, sizeof(k), "%s|%s", owner, secret);
				meta = json_object_get(r->metas, k);
			}
			if (!json_is_object(meta) ||
			    json_integer_value(json_object_get(meta, "version")) == 0) {
				set_error(r, PRIO_KEY, "missing", "missing: %s (secret %s%s)",
					  envs[j], secret,
					  strcmp(owner, ID_SYSTEM) == 0 ? " of _system" : "");
				continue;
			}
			if (json_object_get(meta, "code") != NULL) {
				set_error(r, PRIO_KEY, step_str(meta, "code"), "%s",
					  step_str(meta, "error"));
				continue;
			}
			state = step_str(meta, "state");
			if (strcmp(state, "active") != 0) {
				set_error(r, PRIO_KEY, "revoked", "revoked: %s (secret %s%s v%d)",
					  envs[j], secret,
					  strcmp(owner, ID_SYSTEM) == 0 ? " of _system" : "",
					  (int)json_integer_value(json_object_get(meta, "version")));
				continue;
			}
			json_array_append_new(
				keys, json_pack("{s:s, s:s, s:O, s:s, s:s, s:O, s:O, s:s, s:O}", "env",
						envs[j], "level", level, "profile",
						json_object_get(e, "profile"), "kind", "secret",
						"secret", secret, "version",
						json_object_get(meta, "version"), "backend",
						json_object_get(meta, "backend"), "value", "", "mac",
						json_object_get(meta, "mac")));
			json_array_append_new(
				skeys, json_pack("{s:s, s:s, s:s, s:O, s:O, s:s, s:O}", "env", envs[j],
						 "scope", owner, "secret", secret, "version",
						 json_object_get(meta, "version"), "backend",
						 json_object_get(meta, "backend"), "level", level, "mac",
						 json_object_get(meta, "mac")));
		}
		free(envs);
		json_array_append_new(steps, json_pack("{s:s, s:o}", "step", step_str(s, "step"),
						       "keys", keys));
		json_array_append_new(stored, json_pack("{s:s, s:o}", "step", step_str(s, "step"),
							"keys", skeys));
	}
	if (r->prio != PRIO_NONE) {
		json_decref(steps);
		json_decref(stored);
		steps = json_array();
		stored = NULL;
	}
	answer = json_pack("{s:b, s:s, s:s, s:o, s:O}", "ok", r->prio == PRIO_NONE, "code",
			   r->prio == PRIO_NONE ? "" : r->code, "error",
			   r->prio == PRIO_NONE ? "" : r->error, "steps", steps, "denied",
			   r->denied);
	r->cb(r->env, answer, stored, r->opaque);
	json_decref(answer);
	json_decref(stored);
	r->env->busy--;
	rslv_free(r);
}

static void rslv_next(struct rslv *r)
{
	if (r->prio <= PRIO_BAD) {
		phase_answer(r);
		return;
	}
	switch (r->phase++) {
	case 0:
		phase_profiles(r);
		break;
	case 1:
		phase_cascade(r);
		break;
	case 2:
		phase_vault(r);
		break;
	default:
		phase_answer(r);
		break;
	}
}

void id_resolve(struct id_env *env, const struct id_resolve_in *in, id_resolve_cb cb,
		void *opaque)
{
	struct rslv *r = calloc(1, sizeof(*r));
	json_t *answer;

	if (r == NULL || (r->profiles = json_object()) == NULL ||
	    (r->asked = json_object()) == NULL ||
	    (r->metas = json_object()) == NULL || (r->matches = json_array()) == NULL ||
	    (r->pmetas = json_object()) == NULL ||
	    (r->plans = json_array()) == NULL || (r->denied = json_array()) == NULL) {
		if (r != NULL)
			rslv_free(r);
		answer = json_pack("{s:b, s:s, s:s, s:[], s:[]}", "ok", 0, "code",
				   "backend_unavailable", "error", "out of memory", "steps",
				   "denied");
		cb(env, answer, NULL, opaque);
		json_decref(answer);
		return;
	}
	env->busy++;
	r->env = env;
	r->in = *in;
	json_incref(r->in.steps);
	json_incref(r->in.input_macs);
	json_incref(r->in.pins);
	r->cb = cb;
	r->opaque = opaque;
	r->prio = PRIO_NONE;
	if (rslv_validate(r) == -1) {
		phase_answer(r);
		return;
	}
	rslv_next(r);
}

/* ---- seal ------------------------------------------------------------------ */

struct pin {
	char env[130];
	char secret[64];
	int version;
	char scope[128];
	char backend[8];
	char vault_path[256];
	uint8_t mac[ID_MAC_BYTES];
	char rmac[2 * ID_MAC_BYTES + 1]; /* the MAC the resolution gave */
	uint8_t *value; /* sodium_malloc'd */
	size_t len;
};

struct seal {
	struct id_env *env;
	struct sw_event_header h;
	char request_id[SW_UUID_STRLEN];
	int grant; /* sealed on an allow decision (cli_agent_jit) */
	char step[130];
	char sandbox_id[SW_UUID_STRLEN];
	uint8_t host_key[32];
	struct pin *pins;
	size_t npins;
	int pending;
	int lookups; /* reads of its resolution so far (seal_resolutions_cb) */
	char code[32];
	char error[512];
	id_seal_cb cb;
	void *opaque;
};

#define SEAL_LOOKUPS 25	     /* a resolution not found is looked up again ... */
#define SEAL_LOOKUP_GAP_MS 40 /* ... this often: for up to a second */

static void seal_free(struct seal *s)
{
	size_t i;

	for (i = 0; i < s->npins; i++)
		id_secure_free(s->pins[i].value);
	free(s->pins);
	free(s);
}

static void seal_error(struct seal *s, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seal_error(struct seal *s, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (s->code[0] != '\0')
		return;
	snprintf(s->code, sizeof(s->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
}

/* A JSON string literal of s into b (escaped). */
static void json_str(struct sw_buf *b, const char *s)
{
	sw_buf_add(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			sw_buf_printf(b, "\\%c", c);
		else if (c < 0x20)
			sw_buf_printf(b, "\\u%04x", c);
		else
			sw_buf_add(b, s, 1);
	}
	sw_buf_add(b, "\"", 1);
}

/* The plaintext of the box, in sodium_malloc'd memory; NULL if none. */
static uint8_t *seal_plaintext(struct seal *s, size_t *len)
{
	struct sw_buf b = {0};
	size_t i, total = 256, at;
	uint8_t *pt;

	/* everything but the values (not secret) first */
	sw_buf_puts(&b, "{\"request_id\":");
	json_str(&b, s->request_id);
	sw_buf_puts(&b, ",\"run_id\":");
	json_str(&b, s->h.run_id);
	sw_buf_puts(&b, ",\"step_id\":");
	json_str(&b, s->h.step_id);
	sw_buf_puts(&b, ",\"sandbox_id\":");
	json_str(&b, s->sandbox_id);
	sw_buf_puts(&b, ",\"tenant\":");
	json_str(&b, s->h.tenant);
	sw_buf_puts(&b, ",\"keys\":[");
	if (b.oom) {
		sw_buf_free(&b);
		return NULL;
	}
	for (i = 0; i < s->npins; i++)
		total += 300 + sodium_base64_ENCODED_LEN(s->pins[i].len,
							 sodium_base64_VARIANT_ORIGINAL);
	if ((pt = sodium_malloc(b.len + total)) == NULL) {
		sw_buf_free(&b);
		return NULL;
	}
	memcpy(pt, b.p, b.len);
	at = b.len;
	sw_buf_free(&b);
	for (i = 0; i < s->npins; i++) {
		struct pin *p = &s->pins[i];

		at += (size_t)sprintf((char *)pt + at,
				      "%s{\"env\":\"%s\",\"secret\":\"%s\",\"version\":%d,"
				      "\"value_b64\":\"",
				      i ? "," : "", p->env, p->secret, p->version);
		sodium_bin2base64((char *)pt + at, b.len + total - at, p->value, p->len,
				  sodium_base64_VARIANT_ORIGINAL);
		at += strlen((char *)pt + at);
		pt[at++] = '"';
		pt[at++] = '}';
	}
	pt[at++] = ']';
	pt[at++] = '}';
	*len = at;
	return pt;
}

static void seal_answer(struct seal *s)
{
	json_t *keys = json_array(), *fields;
	char mac[2 * ID_MAC_BYTES + 1], *hex = NULL;
	uint8_t *pt = NULL, *box = NULL;
	size_t ptlen = 0, i, total = 0;

	for (i = 0; s->code[0] == '\0' && i < s->npins; i++)
		total += s->pins[i].len;
	if (s->code[0] == '\0' && total > (512u << 10))
		seal_error(s, "bad_request", "the values of the step are larger than 512 KiB");
	if (s->code[0] == '\0') {
		if ((pt = seal_plaintext(s, &ptlen)) == NULL ||
		    (box = malloc(ptlen + crypto_box_SEALBYTES)) == NULL ||
		    crypto_box_seal(box, pt, ptlen, s->host_key) != 0 ||
		    (hex = sw_hex_dup(box, ptlen + crypto_box_SEALBYTES)) == NULL)
			seal_error(s, "backend_unavailable", "cannot seal: out of memory");
		id_secure_free(pt);
		free(box);
	}
	/* the plaintext values go now, whatever happens next */
	for (i = 0; i < s->npins; i++) {
		id_secure_free(s->pins[i].value);
		s->pins[i].value = NULL;
	}
	if (s->code[0] == '\0')
		for (i = 0; i < s->npins; i++) {
			sw_hex_encode(s->pins[i].mac, ID_MAC_BYTES, mac);
			json_array_append_new(keys, json_pack("{s:s, s:s, s:i, s:s}", "env",
							      s->pins[i].env, "secret",
							      s->pins[i].secret, "version",
							      s->pins[i].version, "mac", mac));
		}
	fields = json_pack("{s:s, s:b, s:s, s:s, s:s, s:o, s:s, s:s}", "request_id",
			   s->request_id, "ok", s->code[0] == '\0', "code", s->code, "error",
			   s->error, "sealed", s->code[0] == '\0' && hex ? hex : "", "keys", keys,
			   "sandbox_id", s->grant ? s->sandbox_id : "", "name",
			   s->grant && s->npins == 1 ? s->pins[0].env : "");
	free(hex);
	s->cb(s->env, fields, s->opaque);
	json_decref(fields);
	s->env->busy--;
	seal_free(s);
}

static void seal_done_one(struct seal *s)
{
	if (--s->pending == 0)
		seal_answer(s);
}

/* A pin read through the backend interface. */
struct pread {
	struct seal *s;
	struct pin *p;
};

static void pin_value_cb(struct id_env *env, const struct id_bvalue *b, void *opaque)
{
	struct pread *pr = opaque;
	struct seal *s = pr->s;
	struct pin *p = pr->p;

	(void)env;
	free(pr);
	if (b->err == ID_BREVOKED || b->err == ID_BMISSING) {
		seal_error(s, "revoked", "revoked: %s (secret %s v%d): %s", p->env, p->secret,
			   p->version, b->error);
	} else if (b->err != ID_BOK) {
		seal_error(s, "backend_unavailable", "%s", b->error);
	} else if (b->version != p->version) {
		seal_error(s, "backend_unavailable",
			   "backend %s answered another version for %s (secret %s v%d)",
			   p->backend, p->env, p->secret, p->version);
	} else if (sodium_memcmp(b->mac, p->mac, ID_MAC_BYTES) != 0) {
		seal_error(s, "backend_unavailable",
			   "backend %s holds another value for %s (secret %s v%d) than was "
			   "resolved",
			   p->backend, p->env, p->secret, p->version);
	} else if ((p->value = id_secure_dup(b->value, b->len)) == NULL) {
		seal_error(s, "backend_unavailable", "out of memory");
	} else {
		p->len = b->len;
	}
	seal_done_one(s);
}

static void seal_rows_cb(PGresult *res, const char *err, void *opaque)
{
	struct seal *s = opaque;
	size_t i;
	int j;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "seal: version read failed", "error", err, NULL);
		seal_error(s, "backend_unavailable",
			   "backend builtin unavailable: cannot read the versions");
		seal_answer(s);
		return;
	}
	s->pending = 1;
	for (i = 0; i < s->npins && s->code[0] == '\0'; i++) {
		struct pin *p = &s->pins[i];
		struct id_secret_ref ref;
		struct pread *pr;
		uint8_t *mac = NULL;
		size_t mlen = 0;

		for (j = 0; j < PQntuples(res); j++)
			if (strcmp(PQgetvalue(res, j, 0), p->scope) == 0 &&
			    strcmp(PQgetvalue(res, j, 1), p->secret) == 0 &&
			    atoi(PQgetvalue(res, j, 2)) == p->version)
				break;
		if (j == PQntuples(res) || strcmp(PQgetvalue(res, j, 3), "active") != 0) {
			seal_error(s, "revoked", "revoked: %s (secret %s v%d)", p->env, p->secret,
				   p->version);
			break;
		}
		if (id_pg_bytea(PQgetvalue(res, j, 4), &mac, &mlen) == -1 || mlen != ID_MAC_BYTES) {
			free(mac);
			seal_error(s, "backend_unavailable", "malformed version row for %s",
				   p->env);
			break;
		}
		memcpy(p->mac, mac, ID_MAC_BYTES);
		free(mac);
		{
			char hex[2 * ID_MAC_BYTES + 1];

			sw_hex_encode(p->mac, ID_MAC_BYTES, hex);
			if (p->rmac[0] != '\0' && strcmp(hex, p->rmac) != 0) {
				seal_error(s, "revoked",
					   "revoked: %s (secret %s v%d): the version holds another "
					   "value than was resolved",
					   p->env, p->secret, p->version);
				break;
			}
		}
		snprintf(p->backend, sizeof(p->backend), "%s", PQgetvalue(res, j, 5));
		snprintf(p->vault_path, sizeof(p->vault_path), "%s", PQgetvalue(res, j, 6));
		memset(&ref, 0, sizeof(ref));
		snprintf(ref.tenant, sizeof(ref.tenant), "%s", p->scope);
		snprintf(ref.name, sizeof(ref.name), "%s", p->secret);
		snprintf(ref.env, sizeof(ref.env), "%s", p->env);
		snprintf(ref.backend, sizeof(ref.backend), "%s", p->backend);
		snprintf(ref.vault_path, sizeof(ref.vault_path), "%s", p->vault_path);
		if ((pr = calloc(1, sizeof(*pr))) == NULL) {
			seal_error(s, "backend_unavailable", "out of memory");
			break;
		}
		pr->s = s;
		pr->p = p;
		s->pending++;
		/* builtin: the value is in the row read already (columns 7..10) */
		if (strcmp(p->backend, "builtin") == 0 &&
		    id_backend_get_row(s->env, &ref, p->version, res, j, 7, pin_value_cb, pr) == 0)
			continue;
		if (id_backend_get(s->env, &ref, p->version, pin_value_cb, pr) == -1) {
			s->pending--;
			free(pr);
			seal_error(s, "backend_unavailable", "backend %s unavailable for %s (secret "
				   "%s): not configured", p->backend, p->env, p->secret);
		}
	}
	seal_done_one(s);
}

static void seal_resolutions_cb(PGresult *res, const char *err, void *opaque);

/* Read the resolutions of (run, step, tenant). */
static void seal_lookup(struct seal *s)
{
	const char *params[3];

	params[0] = s->h.run_id;
	params[1] = s->step;
	params[2] = s->h.tenant;
	if (sw_store_query(s->env->store,
			   "SELECT keys::text FROM resolutions"
			   " WHERE run_id = $1 AND step = $2 AND tenant = $3",
			   3, params, seal_resolutions_cb, s) == -1) {
		seal_error(s, "backend_unavailable", "cannot queue the resolution read");
		seal_answer(s);
	}
}

static void seal_lookup_again(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	seal_lookup(arg);
}

/* The resolutions of (run, step, tenant): each pin must be one of them. */
static void seal_resolutions_cb(PGresult *res, const char *err, void *opaque)
{
	struct seal *s = opaque;
	struct sw_buf q[3] = {{0}};
	const char *params[3];
	size_t i;
	int j, c;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "seal: resolution read failed", "error", err, NULL);
		seal_error(s, "backend_unavailable",
			   "backend builtin unavailable: cannot read the resolution");
		seal_answer(s);
		return;
	}
	for (i = 0; i < s->npins; i++) {
		struct pin *p = &s->pins[i];
		int found = 0;

		for (j = 0; j < PQntuples(res) && !found; j++) {
			json_t *keys = json_loads(PQgetvalue(res, j, 0), 0, NULL), *k;
			size_t n;

			json_array_foreach(keys, n, k)
				if (strcmp(step_str(k, "env"), p->env) == 0 &&
				    strcmp(step_str(k, "secret"), p->secret) == 0 &&
				    json_integer_value(json_object_get(k, "version")) == p->version) {
					snprintf(p->scope, sizeof(p->scope), "%s",
						 step_str(k, "scope"));
					snprintf(p->rmac, sizeof(p->rmac), "%s",
						 step_str(k, "mac"));
					found = 1;
					break;
				}
			json_decref(keys);
		}
		if (!found && ++s->lookups < SEAL_LOOKUPS) {
			/* its record is written beside the answer (bus.c) and
			 * may still be on its way: look again shortly */
			struct timeval tv = {0, SEAL_LOOKUP_GAP_MS * 1000};

			if (event_base_once(s->env->base, -1, EV_TIMEOUT, seal_lookup_again, s,
					    &tv) == 0)
				return;
		}
		if (!found) {
			seal_error(s, "not_allowed",
				   "not_allowed: %s (secret %s v%d) was not resolved for this run "
				   "and step",
				   p->env, p->secret, p->version);
			seal_answer(s);
			return;
		}
	}
	if (s->npins == 0) {
		seal_answer(s);
		return;
	}
	for (c = 0; c < 3; c++)
		sw_buf_add(&q[c], "{", 1);
	for (i = 0; i < s->npins; i++) {
		sw_buf_printf(&q[0], "%s\"%s\"", i ? "," : "", s->pins[i].scope);
		sw_buf_printf(&q[1], "%s\"%s\"", i ? "," : "", s->pins[i].secret);
		sw_buf_printf(&q[2], "%s%d", i ? "," : "", s->pins[i].version);
	}
	for (c = 0; c < 3; c++) {
		sw_buf_add(&q[c], "}", 1);
		params[c] = q[c].p;
	}
	if (q[0].oom || q[1].oom || q[2].oom ||
	    sw_store_query(s->env->store,
			   "SELECT v.tenant, v.name, v.version, v.state, v.mac, s.backend,"
			   " s.vault_path, v.state, v.key_id, v.nonce, v.ct FROM versions v"
			   " JOIN secrets s ON s.tenant = v.tenant AND s.name = v.name"
			   " JOIN unnest($1::text[], $2::text[], $3::int[]) AS u(tenant, name, version)"
			   "  ON v.tenant = u.tenant AND v.name = u.name AND v.version = u.version",
			   3, params, seal_rows_cb, s) == -1) {
		seal_error(s, "backend_unavailable", "cannot queue the version read");
		seal_answer(s);
	}
	for (c = 0; c < 3; c++)
		sw_buf_free(&q[c]);
}

/* ---- seal on an allow decision (cli_agent_jit) ---------------------------- */

static void seal_resolutions_cb(PGresult *res, const char *err, void *opaque);
static void seal_rows_cb(PGresult *res, const char *err, void *opaque);

/* A token minted on the allow decision (mint.c): the one pin's value. */
static void grant_minted_cb(struct id_env *env, const struct id_bvalue *b, void *opaque)
{
	struct seal *s = opaque;
	struct pin *p = &s->pins[0];

	(void)env;
	if (b->err == ID_BREVOKED)
		seal_error(s, "revoked", "revoked: %s", b->error);
	else if (b->err != ID_BOK)
		seal_error(s, "backend_unavailable", "%s", b->error);
	else if ((p->value = id_secure_dup(b->value, b->len)) == NULL)
		seal_error(s, "backend_unavailable", "out of memory");
	else {
		p->len = b->len;
		p->version = b->version;
		memcpy(p->mac, b->mac, ID_MAC_BYTES);
		snprintf(p->scope, sizeof(p->scope), "%s", s->h.tenant);
	}
	seal_answer(s);
}

/* The decided secret names no secret of the tenant but a mint source. */
static void grant_mint(struct seal *s)
{
	struct id_mint_for m;

	memset(&m, 0, sizeof(m));
	snprintf(m.tenant, sizeof(m.tenant), "%s", s->h.tenant);
	snprintf(m.run_id, sizeof(m.run_id), "%s", s->h.run_id);
	snprintf(m.step_id, sizeof(m.step_id), "%s", s->h.step_id);
	snprintf(m.sandbox_id, sizeof(m.sandbox_id), "%s", s->sandbox_id);
	/* the credential request the decision allowed */
	snprintf(m.grant, sizeof(m.grant), "%s", s->request_id);
	snprintf(m.source, sizeof(m.source), "%s", s->pins[0].secret);
	snprintf(m.env, sizeof(m.env), "%s", s->pins[0].env);
	if (id_mint(s->env, &m, grant_minted_cb, s) == -1) {
		seal_error(s, "backend_unavailable", "backend vault unavailable for %s (mint %s): "
			   "cannot queue", m.env, m.source);
		seal_answer(s);
	}
}

/* The decided secret's latest version (the tenant's own secret). */
static void grant_version_cb(PGresult *res, const char *err, void *opaque)
{
	struct seal *s = opaque;
	struct pin *p = &s->pins[0];

	if (err == NULL && PQntuples(res) == 0 &&
	    id_mint_source(s->env, s->h.tenant, p->secret)) {
		grant_mint(s);
		return;
	}
	if (err == NULL && PQntuples(res) == 0) {
		seal_error(s, "missing", "missing: %s (secret %s has no version)", p->env,
			   p->secret);
		seal_answer(s);
		return;
	}
	if (err == NULL) {
		snprintf(p->scope, sizeof(p->scope), "%s", PQgetvalue(res, 0, 0));
		p->version = atoi(PQgetvalue(res, 0, 2));
	}
	seal_rows_cb(res, err, s); /* active, its MAC, then the value */
}

/* The key in the run's resolution (keys or denied), or not there. */
static void grant_cascade_cb(PGresult *res, const char *err, void *opaque)
{
	struct seal *s = opaque;
	struct pin *p = &s->pins[0];
	int j;

	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "seal: resolution read failed", "error", err, NULL);
		seal_error(s, "backend_unavailable",
			   "backend builtin unavailable: cannot read the resolution");
		seal_answer(s);
		return;
	}
	for (j = 0; j < PQntuples(res); j++) {
		json_t *keys = json_loads(PQgetvalue(res, j, 0), 0, NULL);
		json_t *denied = json_loads(PQgetvalue(res, j, 1), 0, NULL), *k;
		size_t n;
		int hit = 0;

		json_array_foreach(denied, n, k)
			if (!hit && strcmp(step_str(k, "env"), p->env) == 0) {
				seal_error(s, "not_allowed", "not_allowed: %s: %s", p->env,
					   step_str(k, "reason")[0] ? step_str(k, "reason")
								    : "denied by the key's ACL");
				hit = 1;
			}
		json_array_foreach(keys, n, k)
			if (!hit && strcmp(step_str(k, "env"), p->env) == 0) {
				snprintf(p->secret, sizeof(p->secret), "%s", step_str(k, "secret"));
				p->version = (int)json_integer_value(json_object_get(k, "version"));
				hit = 2;
			}
		json_decref(keys);
		json_decref(denied);
		if (hit == 1) {
			seal_answer(s);
			return;
		}
		if (hit == 2) {
			/* now an ordinary pin of this resolution */
			seal_resolutions_cb(res, NULL, s);
			return;
		}
	}
	seal_error(s, "missing", "missing: %s is not in the identity cascade of this step",
		   p->env);
	seal_answer(s);
}

/*
 * Fill s from an allow credential.decided: its request, sandbox, step, the
 * one key (env = name, secret = the decided secret or "") and the host key.
 * -1 (with s->code set) when it is malformed.
 */
static int decided_parse(struct seal *s, json_t *ev)
{
	const char *rid = step_str(ev, "request_id"), *sid = step_str(ev, "sandbox_id");
	const char *hk = step_str(ev, "host_key"), *env = step_str(ev, "name");
	const char *sec = step_str(ev, "secret"), *why;
	uint8_t u[16];

	snprintf(s->request_id, sizeof(s->request_id), "%s", rid);
	s->grant = 1;
	/* named in any answer, refusals too (the host matches on them) */
	if (strlen(sid) == 36 && sw_uuid_parse(sid, u) == 0)
		snprintf(s->sandbox_id, sizeof(s->sandbox_id), "%s", sid);
	if (!tenant_valid(s->h.tenant) || s->h.run_id[0] == '\0' || s->h.step_id[0] == '\0') {
		seal_error(s, "bad_request", "header.tenant, run_id and step_id are required");
		return -1;
	}
	if (!text_ok(step_str(ev, "step"), 128)) {
		seal_error(s, "bad_request", "step: 1-128 printable characters");
		return -1;
	}
	snprintf(s->step, sizeof(s->step), "%s", step_str(ev, "step"));
	if (strlen(sid) != 36 || sw_uuid_parse(sid, u) == -1) {
		seal_error(s, "bad_request", "sandbox_id is not a UUID");
		return -1;
	}
	snprintf(s->sandbox_id, sizeof(s->sandbox_id), "%s", sid);
	if (strlen(hk) != 64 || sw_hex_decode(hk, s->host_key, 32) == -1) {
		seal_error(s, "bad_request",
			   "the decision names no host key (32 bytes): nothing is sealed");
		return -1;
	}
	if (!id_env_valid(env, &why) || (sec[0] != '\0' && !id_name_valid(sec))) {
		seal_error(s, "bad_request", "the decision's name or secret is malformed");
		return -1;
	}
	if ((s->pins = calloc(1, sizeof(*s->pins))) == NULL) {
		seal_error(s, "backend_unavailable", "out of memory");
		return -1;
	}
	snprintf(s->pins[0].env, sizeof(s->pins[0].env), "%s", env);
	snprintf(s->pins[0].secret, sizeof(s->pins[0].secret), "%s", sec);
	s->npins = 1;
	return 0;
}

/* The decided key's value: the named secret's latest version, else the key
 * in the run's resolution of this step. */
static void decided_lookup(struct seal *s)
{
	struct pin *p = &s->pins[0];
	const char *params[3];

	if (p->secret[0] != '\0') {
		params[0] = s->h.tenant;
		params[1] = p->secret;
		if (sw_store_query(s->env->store,
				   "SELECT v.tenant, v.name, v.version, v.state, v.mac, s.backend,"
				   " s.vault_path, v.state, v.key_id, v.nonce, v.ct FROM versions v"
				   " JOIN secrets s ON s.tenant = v.tenant AND s.name = v.name"
				   " WHERE v.tenant = $1 AND v.name = $2 AND v.state <> 'deleted'"
				   " ORDER BY v.version DESC LIMIT 1",
				   2, params, grant_version_cb, s) == -1) {
			seal_error(s, "backend_unavailable", "cannot queue the version read");
			seal_answer(s);
		}
		return;
	}
	params[0] = s->h.run_id;
	params[1] = s->step;
	params[2] = s->h.tenant;
	if (sw_store_query(s->env->store,
			   "SELECT keys::text, denied::text FROM resolutions"
			   " WHERE run_id = $1 AND step = $2 AND tenant = $3",
			   3, params, grant_cascade_cb, s) == -1) {
		seal_error(s, "backend_unavailable", "cannot queue the resolution read");
		seal_answer(s);
	}
}

/* Fill s from the event; -1 (with s->code set) when it is malformed. */
static int seal_parse(struct seal *s, json_t *ev)
{
	const char *rid = step_str(ev, "request_id"), *sid = step_str(ev, "sandbox_id");
	const char *hk = step_str(ev, "host_key"), *why;
	json_t *keys = json_object_get(ev, "keys"), *k;
	uint8_t u[16];
	size_t i;

	snprintf(s->request_id, sizeof(s->request_id), "%s", rid);
	if (strlen(rid) != 36 || sw_uuid_parse(rid, u) == -1) {
		snprintf(s->request_id, sizeof(s->request_id), "00000000-0000-0000-0000-000000000000");
		seal_error(s, "bad_request", "request_id is not a UUID");
		return -1;
	}
	if (!tenant_valid(s->h.tenant) || s->h.run_id[0] == '\0') {
		seal_error(s, "bad_request", "header.tenant and header.run_id are required");
		return -1;
	}
	if (!text_ok(step_str(ev, "step"), 128)) {
		seal_error(s, "bad_request", "step: 1-128 printable characters");
		return -1;
	}
	snprintf(s->step, sizeof(s->step), "%s", step_str(ev, "step"));
	if (strlen(sid) != 36 || sw_uuid_parse(sid, u) == -1) {
		seal_error(s, "bad_request", "sandbox_id is not a UUID");
		return -1;
	}
	snprintf(s->sandbox_id, sizeof(s->sandbox_id), "%s", sid);
	if (strlen(hk) != 64 || sw_hex_decode(hk, s->host_key, 32) == -1) {
		seal_error(s, "bad_request", "host_key: 32 bytes expected");
		return -1;
	}
	if (!json_is_array(keys) || json_array_size(keys) > ID_MAX_KEYS) {
		seal_error(s, "bad_request", "keys: at most %d pins", ID_MAX_KEYS);
		return -1;
	}
	if (step_str(ev, "grant")[0] != '\0') {
		seal_error(s, "bad_request",
			   "a seal request with a grant is not taken: a credential allowed by "
			   "its decision is sealed on the decision itself (docs/JIT.md)");
		return -1;
	}
	if (json_array_size(keys) > 0 &&
	    (s->pins = calloc(json_array_size(keys), sizeof(*s->pins))) == NULL) {
		seal_error(s, "backend_unavailable", "out of memory");
		return -1;
	}
	json_array_foreach(keys, i, k) {
		struct pin *p = &s->pins[i];
		json_int_t v = json_integer_value(json_object_get(k, "version"));

		if (!id_env_valid(step_str(k, "env"), &why) ||
		    !id_name_valid(step_str(k, "secret")) || v < 1 || v > INT32_MAX) {
			seal_error(s, "bad_request", "keys[%zu]: {env, secret, version} malformed",
				   i);
			return -1;
		}
		snprintf(p->env, sizeof(p->env), "%s", step_str(k, "env"));
		snprintf(p->secret, sizeof(p->secret), "%s", step_str(k, "secret"));
		p->version = (int)v;
		s->npins++;
	}
	return 0;
}

static void seal_start(struct id_env *env, const struct sw_event_header *h, json_t *ev,
		       int decision, id_seal_cb cb, void *opaque)
{
	struct seal *s = calloc(1, sizeof(*s));
	json_t *fields;

	if (s == NULL) {
		fields = json_pack("{s:s, s:b, s:s, s:s, s:s, s:[]}", "request_id",
				   step_str(ev, "request_id"), "ok", 0, "code",
				   "backend_unavailable", "error", "out of memory", "sealed", "",
				   "keys");
		cb(env, fields, opaque);
		json_decref(fields);
		return;
	}
	env->busy++;
	s->env = env;
	s->h = *h;
	s->cb = cb;
	s->opaque = opaque;
	if ((decision ? decided_parse(s, ev) : seal_parse(s, ev)) == -1) {
		seal_answer(s);
		return;
	}
	id_hosts_refresh(env);
	if (id_host_find(env, s->host_key) == NULL) {
		seal_error(s, "unknown_host",
			   "unknown_host: the host key is not listed in SAGEWAI_IDENTITY_HOSTS_FILE");
		seal_answer(s);
		return;
	}
	if (s->grant)
		decided_lookup(s);
	else
		seal_lookup(s);
}

void id_seal(struct id_env *env, const struct sw_event_header *h, json_t *ev, id_seal_cb cb,
	     void *opaque)
{
	seal_start(env, h, ev, 0, cb, opaque);
}

void id_seal_decided(struct id_env *env, const struct sw_event_header *h, json_t *ev,
		     id_seal_cb cb, void *opaque)
{
	seal_start(env, h, ev, 1, cb, opaque);
}
