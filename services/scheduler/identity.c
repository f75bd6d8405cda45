/*
 * identity.c: the scheduler's side of sagewai-identity (SAGEWAI_IDENTITY=1;
 * the protocol is docs/IDENTITY.md, "On Kafka", step 1).
 *
 * Every submit, once the workflow and the credential shapes are checked
 * and before anything is stored, becomes identity.resolve_requested on
 * sagewai.identity (Kafka key and header.run_id: the run id the run will
 * get): a fresh request id, the workflow, the submitting user, the
 * identity-bearing steps (mode, CLI agent, the profile named by
 * identity:), and the keyed MACs (BLAKE2b-256 under the deployment's MAC
 * key) of the run's strings -- each string of the input and of the steps'
 * definitions and each of its tokens of SCHED_CREDS_MIN_TOKEN bytes or
 * more (creds.h), at most SCHED_ID_MACS_MAX distinct ones, each with the
 * field path where it was first found. A run with more is refused (413)
 * rather than checked in part. The values never leave the process.
 * A re-run (docs/AUDIT.md "Re-run") adds pins: the secret keys (key,
 * secret, version, MAC) this scheduler stored for the original run's
 * steps -- never what the client sent -- so identity gives each the
 * original's version, or refuses (revoked, version_gone, not_allowed).
 *
 * The answer, identity.resolved with the same request id, is read by a
 * tail reader (sw_bus_tail_new: every partition of sagewai.identity.replies
 * from its end, no group), so every scheduler instance sees every answer
 * and takes only those of its own waiting requests; others (another
 * instance's, an answer after the timeout, other event types of the
 * topic) are skipped, undecodable messages counted and logged (rate
 * limited) -- never a reason to stop. The answers have a topic of their
 * own so that the requests and the identity service's other traffic never
 * wake this reader, nor the answers the readers of the requests (a reader
 * woken is CPU and a broker fetch taken from the answer's way back).
 * Nothing blocks: a request waits in a table with its timer
 * (SAGEWAI_IDENTITY_TIMEOUT_MS, then 503 identity_unavailable); a failed
 * delivery answers 503 at once.
 *
 * An answer not ok refuses the submit with the code it names (revoked 409,
 * version_gone 409, missing 422, not_allowed 403, credential_in_input 422,
 * backend_unavailable 503, bad_request 400; anything else 503
 * identity_unavailable) and its error as the message. An ok answer gives
 * each identity-bearing step its keys: the JSON text of the ResolvedKey
 * records as decoded (bytes as lowercase hex), which runs.c stores with
 * the step and apply.c puts in each of its step.dispatched.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "creds.h"
#include "scheduler.h"

#define SCHED_ID_BUCKETS 1024	    /* hash chains of waiting requests */
#define SCHED_ID_WAITING_MAX 20000  /* requests waiting at once */
#define SCHED_ID_MACS_MAX 10000	    /* distinct candidate strings of one run */
#define SCHED_ID_MSG_MAX (900u << 10) /* an encoded request (Kafka's default cap is 1 MB) */
#define SCHED_ID_KEYS_MAX (64u << 10) /* the JSON text of one step's keys */
#define SCHED_ID_ERROR_MAX 1024	    /* an answer's error, as shown */
#define SCHED_ID_LOG_EVERY_MS 10000 /* at most one log line of garbage per period */

struct sched_idreq {
	LIST_ENTRY(sched_idreq) entry;
	struct sched_env *env;
	char request_id[SW_UUID_STRLEN];
	char run_id[SW_UUID_STRLEN];
	json_t *steps;		    /* the names of the identity-bearing steps asked for */
	json_t *fields;		    /* the request's fields, until it is encoded */
	struct sw_event_header hdr; /* ... and its header */
	void *buf;		    /* the request encoded, until it is sent */
	size_t len;
	struct event *timer;
	sched_identity_cb done;
	void *opaque;
};

/* The delivery report's opaque: which request (by id: it may be gone). */
struct id_dr {
	struct sched_dr dr;
	char request_id[SW_UUID_STRLEN];
};

static size_t bucket(const char *request_id)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *request_id; request_id++)
		h = (h ^ (uint8_t)*request_id) * 0x100000001b3ULL;
	return (size_t)(h % SCHED_ID_BUCKETS);
}

static struct sched_idreq *find(struct sched_env *env, const char *request_id)
{
	struct sched_idreq *r;

	if (env->idreqs == NULL)
		return NULL;
	LIST_FOREACH(r, &env->idreqs[bucket(request_id)], entry)
		if (strcmp(r->request_id, request_id) == 0)
			return r;
	return NULL;
}

static void idreq_free(struct sched_idreq *r)
{
	if (r->timer != NULL)
		event_free(r->timer);
	json_decref(r->steps);
	json_decref(r->fields);
	free(r->buf);
	free(r);
}

/* Take r out of the table and answer with it; then free it. */
static void finish(struct sched_idreq *r, int status, const char *code, const char *message,
		   json_t *steps)
{
	struct sched_env *env = r->env;

	LIST_REMOVE(r, entry);
	env->nidreqs--;
	r->done(env, status, code, message, steps, r->opaque);
	idreq_free(r);
}

static void unavailable(struct sched_idreq *r, const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	finish(r, 503, "identity_unavailable", msg, NULL);
}

/* ---- the request ----------------------------------------------------------- */

/* The candidates of a run as they are MAC'd: a set of MACs (open
 * addressing on their first 8 bytes) and the input_macs array. */
struct cands {
	const uint8_t *key;
	uint8_t (*set)[32];
	size_t cap, n;
	json_t *macs;
	const char *field; /* of the string being split */
	int over;	   /* more than SCHED_ID_MACS_MAX */
	int oom;
};

/* The slot of mac in c's set: where it is, or the empty one it goes in. */
static size_t cand_slot(const struct cands *c, const uint8_t mac[32])
{
	uint64_t h;
	size_t i;

	memcpy(&h, mac, sizeof(h));
	for (i = h & (c->cap - 1); sodium_is_zero(c->set[i], 32) == 0; i = (i + 1) & (c->cap - 1))
		if (memcmp(c->set[i], mac, 32) == 0)
			break;
	return i;
}

/* Double the set (kept at most half full). Most runs have a few dozen
 * strings: sizing it for SCHED_ID_MACS_MAX up front zeroed a MiB a submit. */
static int cand_grow(struct cands *c)
{
	struct cands g = *c;
	size_t i;

	g.cap = c->cap * 2;
	if ((g.set = calloc(g.cap, 32)) == NULL)
		return -1;
	for (i = 0; i < c->cap; i++)
		if (sodium_is_zero(c->set[i], 32) == 0)
			memcpy(g.set[cand_slot(&g, c->set[i])], c->set[i], 32);
	sodium_memzero(c->set, c->cap * 32);
	free(c->set);
	c->set = g.set;
	c->cap = g.cap;
	return 0;
}

static int cand_token(const char *tok, size_t len, void *arg)
{
	struct cands *c = arg;
	uint8_t mac[32];
	char hex[65];
	size_t i;

	crypto_generichash(mac, sizeof(mac), (const uint8_t *)tok, len, c->key, 32);
	i = cand_slot(c, mac);
	if (sodium_is_zero(c->set[i], 32) == 0)
		return 0; /* seen */
	if (c->n == SCHED_ID_MACS_MAX) {
		c->over = 1;
		return 1;
	}
	if (2 * (c->n + 1) > c->cap) {
		if (cand_grow(c) == -1) {
			c->oom = 1;
			return 1;
		}
		i = cand_slot(c, mac);
	}
	memcpy(c->set[i], mac, 32);
	c->n++;
	sw_hex_encode(mac, sizeof(mac), hex);
	if (json_array_append_new(c->macs, json_pack("{s:s, s:s}", "field", c->field, "mac",
						    hex)) == -1) {
		c->oom = 1;
		return 1;
	}
	return 0;
}

static int cand_string(const char *field, const char *s, size_t len, int is_key, void *arg)
{
	struct cands *c = arg;

	(void)is_key;
	c->field = field;
	return sched_creds_tokens(s, len, cand_token, c);
}

/* A re-run: the secret keys of one step of the original (the JSON text
 * the scheduler stored for it, read from our own store) appended to pins
 * as {step, env, secret, version, mac}. A text that is not the stored
 * shape pins nothing (identity then gives the latest and replay_pins_differ
 * refuses the re-run). -1 when out of memory. */
static int original_pins(json_t *text, const char *step, json_t *pins)
{
	json_t *keys, *k;
	size_t i;
	int rc = 0;

	if (!json_is_string(text) || (keys = json_loads(json_string_value(text), 0, NULL)) == NULL)
		return 0;
	json_array_foreach(keys, i, k) {
		json_t *v = json_object_get(k, "version");
		const char *kind = json_string_value(json_object_get(k, "kind"));
		const char *env = json_string_value(json_object_get(k, "env"));
		const char *secret = json_string_value(json_object_get(k, "secret"));
		const char *mac = json_string_value(json_object_get(k, "mac"));

		if (kind == NULL || strcmp(kind, "secret") != 0 || env == NULL || secret == NULL ||
		    !json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > INT32_MAX)
			continue;
		if (json_array_append_new(pins, json_pack("{s:s, s:s, s:s, s:O, s:s}", "step",
							  step, "env", env, "secret", secret,
							  "version", v, "mac",
							  mac != NULL ? mac : "")) == -1) {
			rc = -1;
			break;
		}
	}
	json_decref(keys);
	return rc;
}

/* identity.resolve_requested's fields for run run_id (new reference), the
 * step names asked for into *names; NULL with status and reason. */
static json_t *request_fields(struct sched_env *env, const char *request_id, const char *user,
			      const struct sw_workflow *wf, json_t *input, json_t *original,
			      json_t **names, int *status, char *message, size_t msglen)
{
	struct cands c;
	json_t *steps = json_array(), *pins = json_array(), *f = NULL;
	size_t i;

	memset(&c, 0, sizeof(c));
	c.key = env->mac_key;
	c.cap = 64; /* a power of two; doubled as it fills (cand_grow) */
	c.set = calloc(c.cap, 32);
	c.macs = json_array();
	*names = json_array();
	if (steps == NULL || pins == NULL || c.set == NULL || c.macs == NULL || *names == NULL)
		goto oom;
	for (i = 0; i < wf->nsteps; i++) {
		const struct sw_step *st = &wf->steps[i];
		const char *agent = json_string_value(json_object_get(st->extra, "cli_agent"));
		const char *profile = json_string_value(json_object_get(st->extra, "identity"));

		if (!sw_mode_identity_bearing(st->mode))
			continue;
		if (json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:s}", "step",
							   st->name, "mode",
							   sw_mode_name(st->mode), "agent",
							   agent ? agent : "", "profile",
							   profile ? profile : "")) == -1 ||
		    json_array_append_new(*names, json_string(st->name)) == -1 ||
		    original_pins(json_object_get(original, st->name), st->name, pins) == -1)
			goto oom;
	}
	sched_creds_walk(input, wf, cand_string, &c);
	if (c.oom)
		goto oom;
	if (c.over) {
		*status = 413;
		snprintf(message, msglen,
			 "the input and the steps' definitions hold more than %d distinct strings"
			 " to check for secret values; send less",
			 SCHED_ID_MACS_MAX);
		goto fail;
	}
	f = json_pack("{s:s, s:s, s:i, s:s, s:o, s:o, s:o}", "request_id", request_id,
		      "workflow", wf->name, "workflow_version", wf->version, "user", user, "steps",
		      steps, "input_macs", c.macs, "pins", pins);
	steps = c.macs = pins = NULL;
	if (f == NULL)
		goto oom;
	sodium_memzero(c.set, c.cap * 32);
	free(c.set);
	return f;
oom:
	*status = 503;
	snprintf(message, msglen, "out of memory");
fail:
	if (c.set != NULL)
		sodium_memzero(c.set, c.cap * 32);
	free(c.set);
	json_decref(c.macs);
	json_decref(steps);
	json_decref(pins);
	json_decref(*names);
	*names = NULL;
	return NULL;
}

/*
 * The input check without the round trip (docs/IDENTITY.md, "The input
 * check"). A submit with no identity-bearing step (and so no pins) asks
 * identity only one thing: whether a string of the run equals the value
 * of an active secret of the tenant or _system. identity.input_matches
 * answers exactly that from identity's own table, in the same transaction
 * isolation as identity's resolve (read committed, at the moment of the
 * submit), with one boolean: the scheduler's role may call that function
 * (USAGE on identity's schema) and read no table of identity's.
 *
 *   false  the run goes on, as on an ok answer with no steps;
 *   true   the round trip after all: identity refuses it as before, with
 *          the message naming the field and the secret, and its refusal
 *          (identity.resolved, ok false) is audited as before;
 *   error  (the grant missing, identity not migrated yet, PostgreSQL
 *          down) the round trip for this submit, and for every submit of
 *          the next SCHED_ID_DIRECT_OFF_MS, with one warning.
 *
 * So a refusal is always identity's, and a clean input never waits on
 * Kafka. SAGEWAI_IDENTITY_DIRECT_CHECK=0 sends every submit the old way.
 */
#define SCHED_ID_DIRECT_OFF_MS 60000
#define SCHED_ID_DIRECT_MACS_MAX 4096 /* identity's cap (ID_MAX_INPUT_MACS) and the function's */

struct direct_q {
	struct sched_env *env;
	char request_id[SW_UUID_STRLEN];
};

/* No identity-bearing step (so no pins either: a re-run pins only those
 * steps' keys); more MACs than identity takes: its bad_request, as before. */
static int direct_eligible(const struct sched_env *env, json_t *names, json_t *macs)
{
	return env->id_direct && json_array_size(names) == 0 &&
	       json_array_size(macs) <= SCHED_ID_DIRECT_MACS_MAX &&
	       sw_mono_ms() >= env->id_direct_off_ms;
}

/* input_macs' MACs as a PostgreSQL text[] literal (cand_token's 64 hex
 * digits each: nothing to quote). -1 when out of memory. */
static int macs_literal(json_t *macs, struct sw_buf *out)
{
	json_t *m;
	size_t i;

	sw_buf_add(out, "{", 1);
	json_array_foreach(macs, i, m) {
		const char *mac = json_string_value(json_object_get(m, "mac"));

		if (mac != NULL)
			sw_buf_printf(out, "%s%s", out->len > 1 ? "," : "", mac);
	}
	sw_buf_add(out, "}", 1);
	if (out->oom) {
		sw_buf_free(out);
		return -1;
	}
	return 0;
}

/* Encode r's request (a clean input checked directly never is). 0; -1
 * with the answer's status, code and message when it cannot be (logged:
 * 503) or is larger than Kafka takes (413 too_large). */
static int encode_request(struct sched_idreq *r, int *status, char *code, size_t codelen,
			  char *message, size_t msglen)
{
	char err[256];

	if (sw_event_encode(r->env->reg, "identity.resolve_requested", &r->hdr, r->fields, &r->buf,
			    &r->len, err, sizeof(err)) == -1) {
		r->buf = NULL;
		sw_log(SW_LOG_ERROR, "cannot encode identity.resolve_requested", "error", err,
		       NULL);
		*status = 503;
		snprintf(code, codelen, "identity_unavailable");
		snprintf(message, msglen, "cannot encode the resolution request");
		return -1;
	}
	json_decref(r->fields);
	r->fields = NULL;
	if (r->len > SCHED_ID_MSG_MAX) {
		*status = 413;
		snprintf(code, codelen, "too_large");
		snprintf(message, msglen,
			 "the input and the steps' definitions hold too many strings to check for"
			 " secret values (%zu bytes of MACs and field paths); send less",
			 r->len);
		return -1;
	}
	return 0;
}

/* Send r's request to the identity service (the round trip); dr is
 * consumed either way. 0, or -1 (logged). */
static int send_request(struct sched_idreq *r, struct id_dr *dr)
{
	struct sched_env *env = r->env;
	char err[256];

	if (dr == NULL && (dr = calloc(1, sizeof(*dr))) == NULL)
		return -1;
	dr->dr.kind = SCHED_DR_IDENTITY;
	snprintf(dr->request_id, sizeof(dr->request_id), "%s", r->request_id);
	if (sw_bus_produce(env->producer, SW_TOPIC_IDENTITY, r->run_id, r->buf, r->len, NULL, dr,
			   err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "cannot send identity.resolve_requested", "error", err, NULL);
		free(dr);
		return -1;
	}
	free(r->buf);
	r->buf = NULL;
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_identity_requests_total",
			       "Identity resolutions asked for.", 1);
	return 0;
}

void sched_identity_direct_failed(struct sched_env *env, const char *err)
{
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_identity_direct_failed_total",
			       "identity.input_matches calls that failed (round trip taken).", 1);
	if (sw_mono_ms() >= env->id_direct_off_ms)
		sw_log(SW_LOG_WARN,
		       "the input check through identity.input_matches failed; submits"
		       " take the round trip to sagewai-identity for a minute (is"
		       " USAGE on schema identity granted to the scheduler's role?)",
		       "error", err, NULL);
	env->id_direct_off_ms = sw_mono_ms() + SCHED_ID_DIRECT_OFF_MS;
}

void sched_identity_direct_clean(struct sched_env *env)
{
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_identity_direct_clean_total",
			       "Inputs found clean by identity.input_matches (no round trip).", 1);
}

int sched_identity_direct_macs(struct sched_env *env, const char *user,
			       const struct sw_workflow *wf, json_t *input, char **macs)
{
	struct sw_buf lit = {0};
	json_t *fields, *names = NULL;
	char msg[256];
	int status, ok;

	*macs = NULL;
	if (!env->id_direct || sw_mono_ms() < env->id_direct_off_ms)
		return 0;
	/* what the resolve would send; an input it refuses (413) goes that way
	 * and is refused there */
	if ((fields = request_fields(env, "", user, wf, input, NULL, &names, &status, msg,
				     sizeof(msg))) == NULL)
		return 0;
	ok = direct_eligible(env, names, json_object_get(fields, "input_macs")) &&
	     macs_literal(json_object_get(fields, "input_macs"), &lit) == 0;
	json_decref(fields);
	json_decref(names);
	if (!ok) {
		sw_buf_free(&lit);
		return 0;
	}
	*macs = lit.p; /* sw_buf's own, NUL-terminated (sw_buf_add) */
	return 1;
}

static void direct_cb(PGresult *res, const char *err, void *opaque)
{
	struct direct_q *q = opaque;
	struct sched_env *env = q->env;
	struct sched_idreq *r = find(env, q->request_id);
	char code[32], msg[512];
	json_t *none;
	int status;

	free(q);
	if (r == NULL) /* timed out, or the scheduler is stopping */
		return;
	if (err == NULL && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 'f') {
		sched_identity_direct_clean(env);
		if ((none = json_object()) == NULL) {
			unavailable(r, "%s", "out of memory");
			return;
		}
		finish(r, 0, NULL, NULL, none);
		json_decref(none);
		return;
	}
	if (err != NULL || PQntuples(res) != 1 || PQgetvalue(res, 0, 0)[0] != 't') {
		sched_identity_direct_failed(env,
					     err != NULL ? err : "no answer of true or false");
	} else {
		sw_metrics_counter_add(env->metrics,
				       "sagewai_scheduler_identity_direct_matched_total",
				       "Inputs holding a secret's value by identity.input_matches"
				       " (sent to sagewai-identity, which refuses them).",
				       1);
	}
	if (encode_request(r, &status, code, sizeof(code), msg, sizeof(msg)) == -1) {
		finish(r, status, code, msg, NULL);
		return;
	}
	if (send_request(r, NULL) == -1)
		unavailable(r, "%s", "cannot send the resolution request");
}

/* Queue the direct check of r (its request not encoded yet: direct_cb
 * encodes it if the round trip is taken after all). 0, or -1 (nothing
 * queued: the caller sends the request). */
static int direct_start(struct sched_idreq *r, const char *tenant, const char *macs)
{
	const char *params[2] = {tenant, macs};
	struct direct_q *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -1;
	q->env = r->env;
	snprintf(q->request_id, sizeof(q->request_id), "%s", r->request_id);
	if (sw_store_query(r->env->store, "SELECT identity.input_matches($1, $2::text[])", 2,
			   params, direct_cb, q) == -1) {
		free(q);
		return -1;
	}
	return 0;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sched_idreq *r = arg;
	char ms[24];

	(void)fd;
	(void)what;
	sw_metrics_counter_add(r->env->metrics, "sagewai_scheduler_identity_timeouts_total",
			       "Identity resolutions that got no answer in time.", 1);
	sw_log(SW_LOG_WARN, "identity resolution timed out", "run_id", r->run_id, "request_id",
	       r->request_id, NULL);
	snprintf(ms, sizeof(ms), "%lld", r->env->identity_timeout_ms);
	unavailable(r, "the identity service did not answer within %s ms; try again", ms);
}

int sched_identity_resolve(struct sched_env *env, const char *tenant, const char *user,
			   const char *run_id, const struct sw_workflow *wf, json_t *input,
			   json_t *original, sched_identity_cb done, void *opaque, int *status, char *code,
			   size_t codelen, char *message, size_t msglen)
{
	struct sched_idreq *r = NULL;
	struct id_dr *dr = NULL;
	struct sw_buf direct = {0};
	struct timeval tv;
	json_t *fields, *names = NULL;

	snprintf(code, codelen, "identity_unavailable");
	*status = 503;
	if (env->idreqs == NULL || env->nidreqs >= SCHED_ID_WAITING_MAX) {
		snprintf(message, msglen, "too many submits wait for the identity service");
		return -1;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL || (dr = calloc(1, sizeof(*dr))) == NULL) {
		snprintf(message, msglen, "out of memory");
		goto fail;
	}
	r->env = env;
	r->done = done;
	r->opaque = opaque;
	sw_uuid_v7_str(r->request_id);
	snprintf(r->run_id, sizeof(r->run_id), "%s", run_id);
	fields = request_fields(env, r->request_id, user, wf, input, original, &names, status,
				message, msglen);
	if (fields == NULL) {
		if (*status == 413)
			snprintf(code, codelen, "too_large");
		goto fail;
	}
	r->steps = names;
	r->fields = fields;
	sw_event_header_init(&r->hdr, "identity.resolve_requested", SCHED_PRODUCER);
	snprintf(r->hdr.tenant, sizeof(r->hdr.tenant), "%s", tenant);
	snprintf(r->hdr.run_id, sizeof(r->hdr.run_id), "%s", run_id);
	if (direct_eligible(env, names, json_object_get(fields, "input_macs")) &&
	    macs_literal(json_object_get(fields, "input_macs"), &direct) == -1) {
		snprintf(message, msglen, "out of memory");
		goto fail;
	}
	r->timer = evtimer_new(env->base, on_timeout, r);
	tv.tv_sec = (time_t)(env->identity_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(env->identity_timeout_ms % 1000) * 1000;
	if (r->timer == NULL || evtimer_add(r->timer, &tv) == -1) {
		snprintf(message, msglen, "cannot arm a timer");
		goto fail;
	}
	if (direct.p != NULL && direct_start(r, tenant, direct.p) == 0) {
		sw_buf_free(&direct);
		free(dr);
		LIST_INSERT_HEAD(&env->idreqs[bucket(r->request_id)], r, entry);
		env->nidreqs++;
		return 0; /* the request is encoded only if it is sent after all */
	}
	if (encode_request(r, status, code, codelen, message, msglen) == -1)
		goto fail;
	sw_buf_free(&direct);
	if (send_request(r, dr) == -1) {
		dr = NULL;
		snprintf(message, msglen, "cannot send the resolution request");
		goto fail;
	}
	LIST_INSERT_HEAD(&env->idreqs[bucket(r->request_id)], r, entry);
	env->nidreqs++;
	return 0;
fail:
	sw_buf_free(&direct);
	free(dr);
	if (r != NULL)
		idreq_free(r);
	return -1;
}

void sched_identity_delivery(struct sched_env *env, const char *err, struct sched_dr *dr)
{
	struct id_dr *d = (struct id_dr *)dr;
	struct sched_idreq *r;

	if (err != NULL && (r = find(env, d->request_id)) != NULL) {
		sw_log(SW_LOG_ERROR, "identity.resolve_requested not delivered", "run_id",
		       r->run_id, "error", err, NULL);
		unavailable(r, "%s", "the resolution request could not be delivered; try again");
	}
	free(d);
}

/* ---- the answer ------------------------------------------------------------ */

static int refusal_status(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} map[] = {
		{"revoked", 409},	 {"missing", 422},	       {"not_allowed", 403},
		{"credential_in_input", 422}, {"backend_unavailable", 503}, {"bad_request", 400},
		{"version_gone", 409},
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].status;
	return 0;
}

static int hex64_or_empty(const char *s)
{
	size_t i, n = strlen(s);

	if (n != 0 && n != 64)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* The steps of an ok answer as an object: step name -> keys as JSON text,
 * every step asked for (one the answer leaves out gets "[]"). NULL with
 * why when the answer does not fit the question. */
static json_t *answer_steps(const struct sched_idreq *r, json_t *steps, char *why, size_t whylen)
{
	json_t *out = json_object(), *st, *name, *k;
	size_t i, j;

	if (out == NULL || !json_is_array(steps)) {
		snprintf(why, whylen, "no steps");
		goto fail;
	}
	json_array_foreach(steps, i, st) {
		const char *step = json_string_value(json_object_get(st, "step"));
		json_t *keys = json_object_get(st, "keys");
		char *text;
		size_t n;
		int asked = 0;

		json_array_foreach(r->steps, j, name)
			asked |= step != NULL && strcmp(step, json_string_value(name)) == 0;
		if (!asked || json_object_get(out, step) != NULL || !json_is_array(keys)) {
			snprintf(why, whylen, "step %zu is not one asked for, or twice", i);
			goto fail;
		}
		json_array_foreach(keys, j, k) {
			const char *mac = json_string_value(json_object_get(k, "mac"));
			const char *env = json_string_value(json_object_get(k, "env"));

			if (mac == NULL || !hex64_or_empty(mac) || env == NULL || env[0] == '\0') {
				snprintf(why, whylen, "a key of step %s has no env or a bad mac",
					 step);
				goto fail;
			}
		}
		text = json_dumps(keys, JSON_COMPACT);
		n = text ? strlen(text) : 0;
		if (text == NULL || n > SCHED_ID_KEYS_MAX ||
		    json_object_set_new(out, step, json_string(text)) == -1) {
			free(text);
			snprintf(why, whylen, "the keys of step %s are too large", step);
			goto fail;
		}
		free(text);
	}
	json_array_foreach(r->steps, j, name)
		if (json_object_get(out, json_string_value(name)) == NULL &&
		    json_object_set_new(out, json_string_value(name), json_string("[]")) == -1)
			goto fail;
	return out;
fail:
	json_decref(out);
	return NULL;
}

static void answer(struct sched_idreq *r, json_t *ev)
{
	struct sched_env *env = r->env;
	const char *code = json_string_value(json_object_get(ev, "code"));
	const char *error = json_string_value(json_object_get(ev, "error"));
	char msg[SCHED_ID_ERROR_MAX + 8], why[256];
	json_t *steps;
	int status;

	if (json_is_true(json_object_get(ev, "ok"))) {
		if ((steps = answer_steps(r, json_object_get(ev, "steps"), why, sizeof(why))) ==
		    NULL) {
			sw_log(SW_LOG_ERROR, "malformed identity.resolved", "run_id", r->run_id,
			       "error", why, NULL);
			unavailable(r, "the identity service's answer is malformed: %s", why);
			return;
		}
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_identity_resolved_total",
				       "Identity resolutions answered ok.", 1);
		finish(r, 0, NULL, NULL, steps);
		json_decref(steps);
		return;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_identity_refused_total",
			       "Submits the identity service refused.", 1);
	code = code ? code : "";
	error = error && error[0] ? error : code;
	/* a sentence, cut at a character boundary */
	snprintf(msg, sizeof(msg), "%.*s", SCHED_ID_ERROR_MAX, error);
	if (strlen(error) > SCHED_ID_ERROR_MAX) {
		size_t n = SCHED_ID_ERROR_MAX;

		while (n > 0 && ((unsigned char)msg[n] & 0xc0) == 0x80)
			n--;
		snprintf(msg + n, sizeof(msg) - n, "...");
	}
	if ((status = refusal_status(code)) == 0) {
		snprintf(why, sizeof(why), "%.64s", code);
		unavailable(r, "the identity service refused with an unknown code '%s'", why);
		return;
	}
	sw_log(SW_LOG_INFO, "submit refused by the identity service", "run_id", r->run_id,
	       "code", code, NULL);
	finish(r, status, code, msg, NULL);
}

static void garbage(struct sched_env *env, const struct sw_bus_msg *m, const char *why)
{
	int64_t now = sw_mono_ms();
	char part[16], off[24];

	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_identity_garbage_total",
			       "Undecodable messages read on sagewai.identity.replies.", 1);
	if (env->idgarbage_ms != 0 && now - env->idgarbage_ms < SCHED_ID_LOG_EVERY_MS)
		return;
	env->idgarbage_ms = now;
	snprintf(part, sizeof(part), "%d", (int)m->partition);
	snprintf(off, sizeof(off), "%lld", (long long)m->offset);
	sw_log(SW_LOG_WARN, "undecodable message on sagewai.identity.replies skipped", "partition",
	       part, "offset", off, "error", why, NULL);
}

static void on_batch(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sched_env *env = opaque;
	struct sw_event_header h;
	struct sched_idreq *r;
	char err[256];
	json_t *ev;
	size_t i;

	for (i = 0; i < n; i++) {
		const char *request_id;

		if (msgs[i].len == 0 || msgs[i].value == NULL) {
			garbage(env, &msgs[i], "empty message");
			continue;
		}
		if (sw_event_decode_header(env->reg, msgs[i].value, msgs[i].len, &h, err,
					   sizeof(err)) == -1) {
			garbage(env, &msgs[i], err);
			continue;
		}
		/* identity.denied shares the topic: only identity.resolved is ours */
		if (strcmp(h.type, "identity.resolved") != 0)
			continue;
		if ((ev = sw_event_decode(env->reg, msgs[i].value, msgs[i].len, err,
					  sizeof(err))) == NULL) {
			garbage(env, &msgs[i], err);
			continue;
		}
		if (h.time_us > 0 && sw_now_us() - h.time_us > 1000000)
			sw_metrics_counter_add(
			    env->metrics, "sagewai_scheduler_identity_answers_late_total",
			    "identity.resolved read more than a second after it was "
			    "made (the identity service's clock)",
			    1);
		request_id = json_string_value(json_object_get(ev, "request_id"));
		if (request_id == NULL || (r = find(env, request_id)) == NULL) {
			/* another instance's, or one answered or timed out already */
			sw_metrics_counter_add(env->metrics,
					       "sagewai_scheduler_identity_ignored_total",
					       "identity.resolved of no request waiting here.", 1);
			json_decref(ev);
			continue;
		}
		answer(r, ev);
		json_decref(ev);
	}
}

static void on_tail_error(int fatal, const char *reason, void *opaque)
{
	struct sched_env *env = opaque;

	if (fatal)
		sw_service_fatal(env->svc, "Kafka reader of sagewai.identity.replies failed",
				 reason);
	else
		sw_log(SW_LOG_WARN, "Kafka reader of sagewai.identity.replies", "error", reason,
		       NULL);
}

int sched_identity_start(struct sched_env *env, char *errstr, size_t errlen)
{
	static const char *const topics[] = {SW_TOPIC_IDENTITY_REPLIES, NULL};
	char tuning[SW_CONFIG_STR];
	const char *extra[SCHED_BUS_EXTRA];

	if (!env->identity)
		return 0;
	if ((env->idreqs = calloc(SCHED_ID_BUCKETS, sizeof(*env->idreqs))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	if (sched_bus_extra(env, "SAGEWAI_KAFKA_CONSUMER_CONFIG", NULL, extra, tuning,
			    sizeof(tuning)) == -1) {
		snprintf(errstr, errlen, "SAGEWAI_KAFKA_CONSUMER_CONFIG has too many entries");
		return -1;
	}
	env->idtail = sw_bus_tail_new(env->base, env->cfg->kafka_bootstrap, topics, extra, 500,
				      on_batch, env, errstr, errlen);
	if (env->idtail == NULL)
		return -1;
	sw_bus_consumer_set_error_cb(env->idtail, on_tail_error, env);
	return 0;
}

size_t sched_identity_pending(const struct sched_env *env)
{
	return env->nidreqs;
}

void sched_identity_stop(struct sched_env *env)
{
	struct sched_idreq *r;
	size_t i;

	for (i = 0; env->idreqs != NULL && i < SCHED_ID_BUCKETS; i++)
		while ((r = LIST_FIRST(&env->idreqs[i])) != NULL)
			unavailable(r, "%s", "the scheduler is stopping; try again");
}

void sched_identity_free(struct sched_env *env)
{
	sched_identity_stop(env);
	if (env->idtail != NULL)
		sw_bus_consumer_destroy(env->idtail);
	env->idtail = NULL;
	free(env->idreqs);
	env->idreqs = NULL;
	sodium_memzero(env->mac_key, sizeof(env->mac_key));
}
