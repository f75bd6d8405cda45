/*
 * cred.c: credential requests from inside a cli_agent_jit sandbox
 * (docs/JIT.md is the contract).
 *
 *   1. The tool runner forwards a request (CRED_REQUEST, sbd_cred_request):
 *      checked again here (credparse.c), the step's mode, stage and rate
 *      limits; then a request_id and credential.requested on
 *      sagewai.credentials. A refusal goes back to the runner (CRED_ANSWER)
 *      and, once the request is known, as credential.refused.
 *      The request names this host's seal key (host_key): on allow the
 *      identity service seals the value to it on the decision itself.
 *   2. credential.decided for that request_id (the tail reader, identity.c)
 *      must name our run, attempt, tenant, sandbox and key. deny: the
 *      refusal, credential.refused (denied). allow: nothing to send; the
 *      box is awaited.
 *   3. identity.sealed with request_id = the credential request's
 *      (sbd_cred_sealed; it may overtake the decision on its way here, it
 *      comes only of an allow decision naming this request): opened with the
 *      host key, checked (ids, the one key, its MAC), added to the step's
 *      redaction as a new layer, kept for the artifact scan, sent to that
 *      sandbox's runner only (CRED_ANSWER: the client gets it, later
 *      commands have it in their environment), credential.delivered.
 *   4. The requester's deadline: credential.withdrawn while undecided
 *      (credential.refused, timeout, once allowed); the step ending does
 *      the same for whatever still waits.
 *
 * Nothing here ever puts a value in an event, a log line or an error; the
 * value lives in sodium memory while it is checked and handed on, then
 * only in the redactor and in the sandbox, and dies with both.
 */
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "sandboxd.h"
#include "sw_executor.h"

/* The refusal classes a client sees (sw_credsock.h's statuses). */
enum { ST_DENIED = 1, ST_TIMEOUT = 2, ST_ERROR = 3 };

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void counter(struct sbd_env *env, const char *what)
{
	char name[96];

	snprintf(name, sizeof(name), "sagewai_sandboxd_credentials_%s_total", what);
	sw_metrics_counter_add(env->metrics, name, "Credential requests by outcome", 1);
}

/* Answer the runner's request id (the sandbox must still be there). */
static void answer(struct sbd_job *j, uint32_t id, int status, const char *code, const char *name,
		   const char *text)
{
	char why[200];

	if (j->slot == NULL || j->slot->sb == NULL || id == 0)
		return;
	if (sw_sandbox_cred_answer(j->slot->sb, id, status, code, name, text, why, sizeof(why)) !=
	    0) {
		sw_log(SW_LOG_WARN, "credential answer not sent", "run_id", j->x->dh.run_id,
		       "step_id", j->x->dh.step_id, "error", why, NULL);
		return;
	}
	sbd_exec_want_write(j);
}

static void emit(struct sbd_job *j, const char *type, json_t *fields)
{
	sw_executor_emit(j->env->ex, SW_TOPIC_CREDENTIALS, type, &j->x->dh, fields);
}

/* credential.refused for a request of ours, and the refusal to the client. */
static void refuse(struct sbd_job *j, uint32_t id, const char *request_id, const char *name,
		   int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void refuse(struct sbd_job *j, uint32_t id, const char *request_id, const char *name,
		   int status, const char *code, const char *fmt, ...)
{
	char text[512], *safe;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* the text may quote the requester's or a person's words: redacted */
	safe = sbd_identity_redact(j, text);
	answer(j, id, status, code, "", safe ? safe : code);
	if (request_id != NULL)
		emit(j, "credential.refused",
		     json_pack("{s:s, s:s, s:s, s:s, s:s}", "request_id", request_id, "sandbox_id",
			       j->slot != NULL ? j->slot->id
					       : "00000000-0000-0000-0000-000000000000",
			       "name", name, "code", code, "error", safe ? safe : code));
	sw_log(SW_LOG_INFO, "credential refused", "run_id", j->x->dh.run_id, "step_id",
	       j->x->dh.step_id, "request_id", request_id ? request_id : "", "name", name, "code",
	       code, NULL);
	free(safe);
	counter(j->env, "refused");
}

static void cred_free(struct sbd_cred *c)
{
	LIST_REMOVE(c, entry);
	c->j->ncreds--;
	if (c->timer != NULL)
		event_free(c->timer);
	free(c);
}

static void withdraw(struct sbd_cred *c, const char *why)
{
	emit(c->j, "credential.withdrawn",
	     json_pack("{s:s, s:s}", "request_id", c->request_id, "reason", why));
	counter(c->j->env, "withdrawn");
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_cred *c = arg;
	struct sbd_job *j = c->j;
	char why[160];

	(void)fd;
	(void)what;
	if (c->stage == SBD_CRED_DECIDING) {
		snprintf(why, sizeof(why), "timeout: no decision within the requester's %lld ms",
			 (long long)c->timeout_ms);
		answer(j, c->id, ST_TIMEOUT, "timeout", "", why);
		withdraw(c, why);
	} else {
		refuse(j, c->id, c->request_id, c->name, ST_TIMEOUT, "timeout",
		       "timeout: %s was allowed but its value did not come within %lld ms",
		       c->name, (long long)c->timeout_ms);
	}
	cred_free(c);
}

static const char *str(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v != NULL ? v : "";
}

/* The refusal of a deny decision d (live, or recorded for a re-run: the
 * client reads the same sentence either way). */
static void deny(struct sbd_job *j, uint32_t id, const char *rid, const char *name, json_t *d)
{
	const char *by = str(d, "by"), *rule = str(d, "rule");

	if (strcmp(by, "replay") == 0 && strncmp(str(d, "reason"), "not_recorded:", 13) == 0)
		/* the policy found no such decision in the original's record */
		refuse(j, id, rid, name, ST_DENIED, "not_recorded", "%.400s", str(d, "reason"));
	else if (strcmp(by, "no_rule") == 0)
		refuse(j, id, rid, name, ST_DENIED, "denied", "denied: no policy rule allows %s",
		       name);
	else if (strcmp(by, "deadline") == 0)
		refuse(j, id, rid, name, ST_DENIED, "denied",
		       "denied: nobody approved %s before the deadline", name);
	else
		refuse(j, id, rid, name, ST_DENIED, "denied", "denied: %s (by %.16s%s%.80s): %.300s",
		       name, by, rule[0] ? " " : "", rule, str(d, "reason"));
}

/*
 * A re-run (spec.replay.decisions: the original's credential.decided events,
 * from `sagewai replay run`): the n-th request for NAME takes the n-th
 * recorded decision for NAME (at most the first 64 decisions count). None
 * left: refused (not_recorded) without asking anyone. A recorded deny:
 * refused at once with the original's words, nobody asked. A recorded allow
 * goes to the policy as a request with replay_of = the recorded decision's
 * request_id (copied to of): the record comes with the submit and proves
 * nothing, so the policy checks it against its own record and allows again
 * only what it allowed in the original run, asking nobody (docs/JIT.md,
 * "Re-runs"). 1 when answered here, else 0.
 */
static int replay_answer(struct sbd_job *j, const struct sbd_cred_req *req, const char *rid,
			 char of_rid[SW_UUID_STRLEN])
{
	json_t *rp = json_object_get(j->x->spec, "replay");
	json_t *ds = json_object_get(rp, "decisions"), *d;
	const char *of = json_string_value(json_object_get(rp, "of"));
	size_t i;

	if (!json_is_array(ds))
		return 0;
	json_array_foreach(ds, i, d) {
		if (i >= 64)
			break;
		if ((j->replay_used & (UINT64_C(1) << i)) || !json_is_object(d) ||
		    strcmp(str(d, "name"), req->name) != 0)
			continue;
		j->replay_used |= UINT64_C(1) << i;
		if (strcmp(str(d, "decision"), "allow") == 0 &&
		    strlen(str(d, "request_id")) == SW_UUID_STRLEN - 1) {
			snprintf(of_rid, SW_UUID_STRLEN, "%s", str(d, "request_id"));
			return 0;
		}
		if (strcmp(str(d, "decision"), "allow") == 0)
			break; /* a recorded allow without its request id */
		sw_log(SW_LOG_INFO, "credential refused from the original run's record", "run_id",
		       j->x->dh.run_id, "step_id", j->x->dh.step_id, "request_id", rid,
		       "replay_of", of != NULL ? of : "", "name", req->name, NULL);
		deny(j, req->id, rid, req->name, d);
		return 1;
	}
	refuse(j, req->id, rid, req->name, ST_DENIED, "not_recorded",
	       "not_recorded: a re-run answers only what the original run %.36s asked; its "
	       "recorded decisions hold none (or no more) for %s",
	       of != NULL ? of : "", req->name);
	return 1;
}

void sbd_cred_request(struct sbd_job *j, const char *json, size_t len)
{
	struct sbd_env *env = j->env;
	struct sbd_cred_req req;
	struct sbd_cred *c;
	const char *agent = json_string_value(json_object_get(j->x->spec, "cli_agent"));
	const char *wf = json_string_value(json_object_get(j->x->spec, "workflow"));
	char err[256], rid[SW_UUID_STRLEN], of_rid[SW_UUID_STRLEN] = "";
	int64_t left, timeout;
	struct timeval tv;

	counter(env, "requested");
	/* at most SAGEWAI_SANDBOXD_CRED_RATE a minute; past it a flood is
	 * answered without events (one line in the log per minute) */
	if (sw_mono_ns() / 1000000 - j->cred_window_ms >= 60000 || j->cred_window_n == 0) {
		j->cred_window_ms = sw_mono_ns() / 1000000;
		j->cred_window_n = 0;
	}
	if (++j->cred_window_n > env->cred_rate) {
		if (j->cred_window_n == env->cred_rate + 1)
			sw_log(SW_LOG_WARN, "credential requests over the rate: refused quietly",
			       "run_id", j->x->dh.run_id, "step_id", j->x->dh.step_id, NULL);
		sbd_cred_parse(json, len, &req, err, sizeof(err));
		answer(j, req.id, ST_ERROR, "bad_request", "",
		       "bad_request: this sandbox asks for credentials too often (its limit "
		       "is per minute)");
		counter(env, "refused");
		return;
	}
	sw_uuid_v7_str(rid);
	if (sbd_cred_parse(json, len, &req, err, sizeof(err)) != 0) {
		refuse(j, req.id, rid, "", ST_ERROR, "bad_request", "bad_request: %s", err);
		return;
	}
	if (strcmp(j->x->mode, "cli_agent_jit") != 0) {
		refuse(j, req.id, rid, req.name, ST_DENIED, "not_jit",
		       "not_jit: this is a %s step; only cli_agent_jit steps may ask for "
		       "credentials",
		       j->x->mode);
		return;
	}
	if (j->stage != SBD_RUNNING || j->x->phase != SW_EXECUTOR_ACTIVE || j->ident == NULL) {
		refuse(j, req.id, rid, req.name, ST_ERROR, "unavailable",
		       "unavailable: the step is not running its agent");
		return;
	}
	if (j->ncreds >= SBD_CRED_PENDING_MAX) {
		refuse(j, req.id, rid, req.name, ST_ERROR, "bad_request",
		       "bad_request: %d credential requests of this sandbox are already waiting",
		       SBD_CRED_PENDING_MAX);
		return;
	}
	for (c = LIST_FIRST(&j->creds); c != NULL; c = LIST_NEXT(c, entry))
		if (c->id == req.id)
			break;
	if (c != NULL) {
		/* a runner reusing an id would get two answers: it is broken */
		refuse(j, 0, rid, req.name, ST_ERROR, "bad_request",
		       "bad_request: request id %u is already waiting", req.id);
		return;
	}
	if (replay_answer(j, &req, rid, of_rid))
		return;
	/* never past the step's own end */
	timeout = req.timeout_ms;
	left = sbd_exec_left_ms(j);
	if (left > 0 && timeout > left)
		timeout = left;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->timer = evtimer_new(env->base, deadline_cb, c)) == NULL) {
		free(c);
		refuse(j, req.id, rid, req.name, ST_ERROR, "unavailable",
		       "unavailable: out of memory");
		return;
	}
	c->j = j;
	c->id = req.id;
	c->timeout_ms = timeout;
	c->stage = SBD_CRED_DECIDING;
	snprintf(c->request_id, sizeof(c->request_id), "%s", rid);
	snprintf(c->name, sizeof(c->name), "%s", req.name);
	LIST_INSERT_HEAD(&j->creds, c, entry);
	j->ncreds++;
	tv.tv_sec = (time_t)(timeout / 1000);
	tv.tv_usec = (suseconds_t)(timeout % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	sw_log(SW_LOG_INFO, "credential requested", "run_id", j->x->dh.run_id, "step_id",
	       j->x->dh.step_id, "request_id", rid, "sandbox_id", j->slot->id, "name", req.name,
	       NULL);
	emit(j, "credential.requested",
	     json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s}",
		       "request_id", rid, "workflow", wf ? wf : "", "step", j->x->step, "cli_agent",
		       agent ? agent : "", "sandbox_id", j->slot->id, "host", env->executor,
		       "name", req.name, "scope", req.scope, "reason", req.reason, "requester",
		       req.requester, "deadline_ms", (json_int_t)(wall_ms() + timeout),
		       "replay_of", of_rid, "host_key", env->seal_pk_hex));
}

/* The request of ours with this id (any job), or NULL. */
static struct sbd_cred *find(struct sbd_env *env, const char *rid)
{
	struct sbd_job *j;
	struct sbd_cred *c;

	LIST_FOREACH(j, &env->idjobs, id_entry)
	LIST_FOREACH(c, &j->creds, entry)
	if (strcmp(c->request_id, rid) == 0)
		return c;
	return NULL;
}

/* [a-z0-9][a-z0-9_.-]{0,62}, or "" (the key from the step's cascade). */
static int secret_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return 1;
	if (n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

void sbd_cred_decided(struct sbd_env *env, json_t *ev, const struct sw_event_header *h)
{
	const char *rid = str(ev, "request_id"), *decision = str(ev, "decision");
	const char *secret = str(ev, "secret");
	struct sbd_cred *c = find(env, rid);
	struct sbd_job *j;

	if (c == NULL || c->stage != SBD_CRED_DECIDING || c->j->slot == NULL)
		return; /* another host's, decided already, or given up */
	j = c->j;
	if (strcmp(h->run_id, j->x->dh.run_id) != 0 || strcmp(h->step_id, j->x->dh.step_id) != 0 ||
	    strcmp(h->tenant, j->x->dh.tenant) != 0 ||
	    strcmp(str(ev, "sandbox_id"), j->slot->id) != 0 ||
	    strcmp(str(ev, "name"), c->name) != 0) {
		sw_log(SW_LOG_WARN,
		       "ignored a credential decision that does not match its request",
		       "request_id", rid, "event_id", h->event_id, NULL);
		counter(env, "mismatched_decisions");
		return;
	}
	if (strcmp(decision, "allow") != 0) {
		deny(j, c->id, c->request_id, c->name, ev);
		cred_free(c);
		return;
	}
	if (!secret_ok(secret)) {
		refuse(j, c->id, c->request_id, c->name, ST_ERROR, "bad_request",
		       "bad_request: the decision names no valid secret");
		cred_free(c);
		return;
	}
	/* the identity service seals on this same decision: the box is awaited */
	c->stage = SBD_CRED_SEALING;
	sw_log(SW_LOG_INFO, "credential allowed: its box awaited", "run_id", j->x->dh.run_id,
	       "step_id", j->x->dh.step_id, "request_id", c->request_id, NULL);
}

/* Map identity's refusal codes onto the contract's. */
static const char *seal_code(const char *code, int *status)
{
	static const char *const denied[] = {"not_allowed", "missing", "revoked", NULL};

	for (int i = 0; denied[i] != NULL; i++)
		if (strcmp(code, denied[i]) == 0) {
			*status = ST_DENIED;
			return denied[i];
		}
	*status = ST_ERROR;
	return strcmp(code, "bad_request") == 0 ? "bad_request" : "unavailable";
}

/*
 * Open the box of c's seal into *value (sodium_malloc'd, NUL-terminated) and
 * its key's secret and version. 0, or -1 with err (never a value).
 */
static int open_grant(struct sbd_cred *c, json_t *ev, unsigned char **value, size_t *vlen,
		      char *secret, size_t slen, int *version, char *err, size_t errlen)
{
	struct sbd_job *j = c->j;
	struct sbd_env *env = j->env;
	const char *hex = str(ev, "sealed"), *kenv, *ksec, *b64, *tenant = NULL, *x;
	size_t hexlen = strlen(hex), clen = hexlen / 2, bin = 0, b64len, n;
	unsigned char *ct = NULL, *m = NULL;
	json_t *box = NULL, *keys, *k;
	json_int_t kver;
	json_error_t jerr;
	int rc = -1;

	*value = NULL;
	if (hexlen % 2 != 0 || clen <= crypto_box_SEALBYTES || clen > (256u << 10) ||
	    (ct = malloc(clen)) == NULL ||
	    (m = sodium_malloc(clen - crypto_box_SEALBYTES + 1)) == NULL ||
	    sodium_hex2bin(ct, clen, hex, hexlen, NULL, &bin, NULL) != 0 || bin != clen) {
		snprintf(err, errlen, "the sealed box is empty or malformed");
		goto out;
	}
	if (crypto_box_seal_open(m, ct, clen, env->seal_pk, env->seal_sk) != 0) {
		snprintf(err, errlen, "the sealed box does not open with this host's key");
		goto out;
	}
	m[clen - crypto_box_SEALBYTES] = '\0';
	if ((box = json_loadb((const char *)m, clen - crypto_box_SEALBYTES, JSON_REJECT_DUPLICATES,
			      &jerr)) == NULL ||
	    json_unpack_ex(box, &jerr, JSON_STRICT, "{s:s, s:s, s:s, s:s, s?s, s:o}", "request_id",
			   &x, "run_id", &x, "step_id", &x, "sandbox_id", &x, "tenant", &tenant,
			   "keys", &keys) != 0) {
		snprintf(err, errlen,
			 "the sealed box is not {request_id, run_id, step_id, "
			 "sandbox_id, tenant, keys}");
		goto out;
	}
	if (strcmp(str(box, "request_id"), c->request_id) != 0 ||
	    strcmp(str(box, "run_id"), j->x->dh.run_id) != 0 ||
	    strcmp(str(box, "step_id"), j->x->dh.step_id) != 0 ||
	    strcmp(str(box, "sandbox_id"), j->slot->id) != 0 ||
	    (tenant != NULL && strcmp(tenant, j->x->dh.tenant) != 0)) {
		snprintf(err, errlen,
			 "the sealed box is for another request, run, step, tenant "
			 "or sandbox: not used");
		goto out;
	}
	if (!json_is_array(keys) || json_array_size(keys) != 1 ||
	    json_unpack_ex((k = json_array_get(keys, 0)), &jerr, JSON_STRICT,
			   "{s:s, s:s, s:I, s:s%}", "env", &kenv, "secret", &ksec, "version",
			   &kver, "value_b64", &b64, &b64len) != 0 ||
	    strcmp(kenv, c->name) != 0 || !secret_ok(ksec) || ksec[0] == '\0' || kver < 1 ||
	    kver > INT32_MAX) {
		snprintf(err, errlen,
			 "the sealed box does not hold exactly the key asked: not used");
		goto out;
	}
	n = b64len / 4 * 3 + 3;
	if ((*value = sodium_malloc(n + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (sodium_base642bin(*value, n, b64, b64len, NULL, vlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    *vlen == 0 || memchr(*value, '\0', *vlen) != NULL) {
		snprintf(err, errlen, "the value of %s is not base64 text without NUL", c->name);
		goto out;
	}
	(*value)[*vlen] = '\0';
	snprintf(secret, slen, "%s", ksec);
	*version = (int)kver;
	rc = 0;
out:
	if (rc != 0) {
		sodium_free(*value);
		*value = NULL;
	}
	json_decref(box);
	sodium_free(m);
	free(ct);
	return rc;
}

/* The hex MAC the answer gives for the key, checked against the value when
 * this host has the MAC key. 0, or -1. */
static int answer_mac(struct sbd_env *env, json_t *ev, const unsigned char *v, size_t n,
		      char hex[65])
{
	const char *mac = str(json_array_get(json_object_get(ev, "keys"), 0), "mac");
	unsigned char want[32], got[32];
	size_t bin = 0;

	if (strlen(mac) != 64 || strspn(mac, "0123456789abcdef") != 64 ||
	    sodium_hex2bin(want, 32, mac, 64, NULL, &bin, NULL) != 0 || bin != 32)
		return -1;
	if (env->mac_key != NULL) {
		crypto_generichash(got, sizeof(got), v, n, env->mac_key, 32);
		if (sodium_memcmp(got, want, 32) != 0)
			return -1;
	}
	memcpy(hex, mac, 65);
	return 0;
}

void sbd_cred_sealed(struct sbd_env *env, json_t *ev)
{
	struct sbd_cred *c = find(env, str(ev, "request_id"));
	struct sbd_job *j;
	unsigned char *value = NULL;
	size_t vlen = 0;
	char err[320], secret[64], mac[65];
	const char *code;
	int version = 0, status, known;

	/* DECIDING too: the box may overtake its allow decision on the way */
	if (c == NULL || c->j->slot == NULL)
		return; /* another host's, or one we gave up on */
	j = c->j;
	if (strcmp(str(ev, "sandbox_id"), j->slot->id) != 0 ||
	    strcmp(str(ev, "name"), c->name) != 0) {
		/* sealed on a decision naming another sandbox or key (forged or
		 * mistaken): not this request's answer, which may still come */
		sw_log(SW_LOG_WARN, "ignored a sealed answer for another sandbox or key",
		       "request_id", c->request_id, NULL);
		counter(env, "mismatched_boxes");
		return;
	}
	if (!json_is_true(json_object_get(ev, "ok"))) {
		const char *e = str(ev, "error");

		code = seal_code(str(ev, "code"), &status);
		/* identity's sentences start with their code already */
		if (strncmp(e, code, strlen(code)) == 0 && e[strlen(code)] == ':')
			refuse(j, c->id, c->request_id, c->name, status, code, "%.400s", e);
		else
			refuse(j, c->id, c->request_id, c->name, status, code, "%s: %.400s", code,
			       e[0] ? e : "the identity service refused");
		goto done;
	}
	if (open_grant(c, ev, &value, &vlen, secret, sizeof(secret), &version, err, sizeof(err)) !=
	    0) {
		counter(env, "bad_boxes");
		refuse(j, c->id, c->request_id, c->name, ST_ERROR, "unavailable",
		       "unavailable: %s", err);
		goto done;
	}
	if (answer_mac(env, ev, value, vlen, mac) != 0) {
		counter(env, "bad_boxes");
		refuse(j, c->id, c->request_id, c->name, ST_ERROR, "unavailable",
		       "unavailable: the value of %s does not match the MAC the identity service "
		       "gave: not used",
		       c->name);
		goto done;
	}
	/* redacted from here on, kept for the artifact scan, or not given */
	if ((known = sbd_identity_grant(j, c->name, value, vlen, err, sizeof(err))) < 0) {
		refuse(j, c->id, c->request_id, c->name, ST_ERROR, "unavailable",
		       "unavailable: %s cannot be delivered: %s", c->name, err);
		goto done;
	}
	if (!known && j->agent != NULL && sbd_agent_keep(j, c->name, value, vlen) != 0) {
		refuse(j, c->id, c->request_id, c->name, ST_ERROR, "unavailable",
		       "unavailable: out of memory");
		goto done;
	}
	answer(j, c->id, 0, "", c->name, (const char *)value);
	sw_log(SW_LOG_INFO, "credential delivered", "run_id", j->x->dh.run_id, "step_id",
	       j->x->dh.step_id, "request_id", c->request_id, "sandbox_id", j->slot->id, "name",
	       c->name, "secret", secret, NULL);
	counter(env, "delivered");
	emit(j, "credential.delivered",
	     json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "request_id", c->request_id, "sandbox_id",
		       j->slot->id, "name", c->name, "secret", secret, "version", version, "mac",
		       mac));
done:
	sodium_free(value);
	cred_free(c);
}

void sbd_cred_release(struct sbd_job *j)
{
	struct sbd_cred *c;

	while ((c = LIST_FIRST(&j->creds)) != NULL) {
		if (c->stage == SBD_CRED_DECIDING)
			withdraw(c, "step_ended: the step ended before a decision");
		else
			emit(j, "credential.refused",
			     json_pack("{s:s, s:s, s:s, s:s, s:s}", "request_id", c->request_id,
				       "sandbox_id",
				       j->slot != NULL ? j->slot->id
						       : "00000000-0000-0000-0000-000000000000",
				       "name", c->name, "code", "withdrawn", "error",
				       "withdrawn: the step ended before the value came"));
		cred_free(c);
	}
}
