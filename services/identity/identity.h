/*
 * sagewai-identity: secrets, profiles, the identity cascade and sealed
 * delivery to sandbox hosts (docs/IDENTITY.md is the contract).
 *
 *   config.c    settings and the key files (master keys, MAC key, hosts)
 *   crypto.c    libsodium: values at rest, MACs, sealed boxes, wiped memory
 *   store.c     PostgreSQL schema "identity": migrations and shared queries
 *   cache.c     resolved profiles and secret metadata, for at most
 *               SAGEWAI_IDENTITY_CACHE_MS, dropped on every change event
 *   backend.c   the one interface both backends answer: value of a version,
 *               put a new version, destroy; builtin (PostgreSQL) here
 *   vault.c     the Vault KV v2 backend: libcurl on worker threads
 *   mint.c      tokens minted on a credential grant (Vault token/create),
 *               their accessors recorded and revoked when the step ends
 *   resolve.c   the cascade, ACLs, the input check, and seal
 *   api.c       the HTTP API (auth, secrets, profiles, resolve, rekey)
 *   bus.c       Kafka: producer, the group consumer of requests and tenant
 *               events, the tail reader of change events, dead letters
 *   tenants.c   tenants, API keys and users learnt from sagewai.tenants
 *   prune.c     old resolutions and revoked minted rows deleted in the
 *               background (SAGEWAI_IDENTITY_RETENTION_S)
 *
 * Everything runs on the loop but Vault calls (worker threads). Secret
 * values live only in sodium_malloc'd memory or in memory wiped on free
 * (jansson's allocator is replaced, crypto.c); they are never logged, put
 * in an event or in an error message: errors name the backend, the scope,
 * the secret and the key.
 */
#ifndef IDENTITY_H
#define IDENTITY_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "sw_auth.h"
#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_http.h"
#include "sw_prune.h"
#include "sw_service.h"
#include "sw_store.h"
#include "sw_svcbus.h"

#define ID_PRODUCER "sagewai-identity"
#define ID_GROUP "sagewai-identity"
#define ID_SYSTEM "_system"     /* the operator-wide scope */
#define ID_SINGLE_TENANT "default"
#define ID_VALUE_MAX (64u << 10) /* a secret value's longest */
#define ID_VALUE_MIN 4		 /* shorter values could not be redacted */
#define ID_MAX_BODY (160u << 10) /* HTTP body cap: a value in base64 fits */
#define ID_MAX_INFLIGHT 8192	 /* consumed messages in hand before pausing, */
#define ID_MAX_INFLIGHT_BYTES (32u << 20) /* or their bytes (sw_svcbus.h: for overload) */
#define ID_MAX_STEPS 256	 /* steps of one resolve request */
#define ID_MAX_INPUT_MACS 4096	 /* input MACs of one resolve request */
#define ID_MAX_KEYS 256		 /* keys of one profile, pins of one seal */
#define ID_MAX_PINS 4096	 /* pinned keys of one resolve request (a re-run) */
#define ID_MAC_BYTES 32
#define ID_KEY_BYTES 32
#define ID_KEYID_MAX 32

enum id_level { ID_LEVEL_SYSTEM, ID_LEVEL_WORKFLOW, ID_LEVEL_USER };

/* One master key (the last of the file is current). */
struct id_mkey {
	char id[ID_KEYID_MAX + 1];
	uint8_t *key; /* ID_KEY_BYTES, sodium_malloc'd, read-only */
};

/* A sandbox host that may receive sealed values. */
struct id_host {
	char name[64];
	uint8_t pk[32];
};

struct id_cache;
struct id_vault;

struct id_item; /* a consumed message (bus.c) */

struct id_env {
	struct sw_service *svc;
	const struct sw_config *cfg;
	char *const *envp;
	struct event_base *base;
	struct sw_metrics *metrics;
	struct sw_event_registry *reg;
	struct sw_store *store;
	/* Kafka (bus.c): the group consumer reads requests and tenant events,
	 * the tail change events (every instance) */
	struct sw_svcbus bus;
	struct sw_http *http;

	/* settings (config.c) */
	int multi_tenant;
	char *admin_token; /* sodium_malloc'd; "" when none */
	char group[128];
	char mkeys_path[SW_CONFIG_STR];
	struct id_mkey *mkeys;
	size_t nmkeys;
	uint8_t *mac_key; /* ID_KEY_BYTES, sodium_malloc'd */
	char hosts_path[SW_CONFIG_STR];
	struct id_host *hosts;
	size_t nhosts;
	struct timespec hosts_mtime; /* of the file as last read */
	ino_t hosts_ino;
	off_t hosts_size;
	long long cache_ms;
	long long pg_pool;
	/* the Vault backend; vault_addr "" = none */
	char vault_addr[SW_CONFIG_STR];
	char *vault_token; /* sodium_malloc'd */
	char vault_namespace[256];
	char vault_mount[128];
	char vault_prefix[128];
	long long vault_timeout_ms;
	long long vault_threads;
	long long retention_s; /* SAGEWAI_IDENTITY_RETENTION_S; 0: keep all */

	struct id_cache *cache;
	struct id_vault *vault;
	/* resolution records waiting for their batch, and the batch being
	 * written: one INSERT at a time (bus.c) */
	struct id_item **rec_wait, **rec_flight;
	size_t rec_nwait, rec_capwait, rec_nflight;
	json_t *mints;		/* mint sources (mint.c); NULL: none configured */
	struct event *mint_tick; /* retries revocations (mint.c) */
	struct sw_prune *prune;	 /* old rows deleted (prune.c); NULL: none */

	int running;
	size_t busy; /* resolutions, seals and HTTP writes in hand */
};

/* ---- config.c ------------------------------------------------------------ */
int id_config_load(struct id_env *env, char *errstr, size_t errlen);
void id_config_free(struct id_env *env);
/* Re-read the hosts file when it changed since it was read (a failed
 * re-read keeps the list and is logged). */
void id_hosts_refresh(struct id_env *env);
/* Parsers, exposed for the offline checks: 0, or -1 with errstr. */
int id_read_key_file(const char *path, const char *what, char **text, size_t *len, char *errstr,
		     size_t errlen);

/* ---- crypto.c ------------------------------------------------------------ */
/* jansson allocates through these from main() on: freed memory is wiped. */
void id_json_wipe_alloc(void);
/* A copy of n bytes in sodium_malloc'd memory (+1 NUL); NULL if none. */
uint8_t *id_secure_dup(const void *p, size_t n);
void id_secure_free(void *p); /* sodium_free; NULL is fine */
/* Keyed BLAKE2b-256 under the deployment's MAC key (the scheduler's formula). */
void id_mac(const struct id_env *env, const uint8_t *v, size_t n, uint8_t out[ID_MAC_BYTES]);
const struct id_mkey *id_mkey_current(const struct id_env *env);
const struct id_mkey *id_mkey_find(const struct id_env *env, const char *id);
/* Encrypt under key k for the row (tenant, name, version): *ct is malloc'd
 * (len + tag), nonce filled. 0 or -1. */
int id_encrypt(const struct id_mkey *k, const char *tenant, const char *name, int version,
	       const uint8_t *pt, size_t len, uint8_t nonce[24], uint8_t **ct, size_t *ctlen);
/* Decrypt a row's value into sodium_malloc'd *pt (NUL-terminated). 0, or
 * -1 with errstr (never the value). */
int id_decrypt(const struct id_env *env, const char *key_id, const char *tenant, const char *name,
	       int version, const uint8_t nonce[24], const uint8_t *ct, size_t ctlen,
	       uint8_t **pt, size_t *ptlen, char *errstr, size_t errlen);
/* A host's listed name, or NULL when pk is not listed. */
const char *id_host_find(const struct id_env *env, const uint8_t pk[32]);
/* base64 (standard, padded) of n bytes, in memory wiped on free (free with
 * id_secure_free). */
char *id_b64(const uint8_t *p, size_t n);
/* Decode standard base64 (padding optional, no whitespace) into
 * sodium_malloc'd *out; -1 when malformed or longer than max. */
int id_unb64(const char *s, size_t slen, size_t max, uint8_t **out, size_t *outlen);

/* ---- store.c ------------------------------------------------------------- */
extern const struct sw_migration id_migrations[];
extern const size_t id_nmigrations;
/* A bytea result column (text format "\x..") into malloc'd bytes; -1 if malformed. */
int id_pg_bytea(const char *text, uint8_t **out, size_t *len);
/* "\x" + hex of n bytes into a malloc'd string for a bytea parameter. */
char *id_pg_bytea_param(const uint8_t *p, size_t n);

/* ---- cache.c ------------------------------------------------------------- */
int id_cache_new(struct id_env *env);
void id_cache_free(struct id_env *env);
/* The cached JSON of key (a new reference) or NULL when absent or old. */
json_t *id_cache_get(struct id_env *env, const char *tenant, const char *key);
/* Keep a reference to v under (tenant, key) for cache_ms. */
void id_cache_put(struct id_env *env, const char *tenant, const char *key, json_t *v);
/* Drop every entry of tenant (NULL or "_system": all of them). */
void id_cache_drop(struct id_env *env, const char *tenant);

/* ---- backend.c: the interface of both backends --------------------------- */

/* What a backend needs of a secret. */
struct id_secret_ref {
	char tenant[128]; /* the owning scope: a tenant id or _system */
	char name[64];
	char env[130];	     /* the key it is read for, for errors; "" if none */
	char backend[8];     /* builtin, vault */
	char vault_path[256]; /* an operator's Vault path; "" when owned */
};

enum id_berr {
	ID_BOK = 0,
	ID_BUNAVAILABLE, /* backend down, slow, refused, garbage */
	ID_BMISSING,	 /* no such version */
	ID_BREVOKED,	 /* destroyed or not active */
	ID_BINTERNAL,
};

/* A value read: version, value (sodium_malloc'd, owned by the callee until
 * the callback returns) and its MAC. */
struct id_bvalue {
	enum id_berr err;
	char error[320]; /* names backend, scope, secret, key; never the value */
	int version;
	const uint8_t *value;
	size_t len;
	uint8_t mac[ID_MAC_BYTES];
	char accessor[128]; /* a minted token's accessor (not a secret); else "" */
};
typedef void (*id_bvalue_cb)(struct id_env *env, const struct id_bvalue *v, void *opaque);

/* Value of version (0: the latest the backend holds, vault references
 * only). builtin: the row in PostgreSQL, decrypted; vault: a read of that
 * version. cb runs later on the loop, always exactly once, unless -1. */
int id_backend_get(struct id_env *env, const struct id_secret_ref *ref, int version,
		   id_bvalue_cb cb, void *opaque);
/* The same for a builtin version whose row was read already (row of res,
 * columns col..col+3: state, key_id, nonce, ct): one read less. cb runs
 * before it returns; -1 (cb not run) when ref is not builtin or res has no
 * such row or columns. */
int id_backend_get_row(struct id_env *env, const struct id_secret_ref *ref, int version,
		       PGresult *res, int row, int col, id_bvalue_cb cb, void *opaque);
/* Store a new version of value (copied; NULL for a Vault reference: its
 * current version is recorded): builtin encrypts and inserts it, vault
 * writes it to Vault then records it; the secrets row must exist. cb gets
 * the version and MAC (err != ID_BOK on failure). */
int id_backend_put(struct id_env *env, const struct id_secret_ref *ref, const uint8_t *value,
		   size_t len, id_bvalue_cb cb, void *opaque);
/* Re-encrypt every builtin row whose master key is not the current one, in
 * batches; cb(rows, error or NULL) once none is left. */
typedef void (*id_rekey_cb)(struct id_env *env, long long rows, const char *err, void *opaque);
int id_backend_rekey(struct id_env *env, id_rekey_cb cb, void *opaque);
/* Destroy the values in the backend (vault: destroy every version of an
 * owned path, keeping its metadata so that its version numbers go on;
 * builtin: nothing, the rows are wiped by the caller). */
int id_backend_destroy(struct id_env *env, const struct id_secret_ref *ref, id_bvalue_cb cb,
		       void *opaque);

/* ---- vault.c ------------------------------------------------------------- */
enum id_vop { ID_VREAD, ID_VWRITE, ID_VDELETE, ID_VMINT, ID_VREVOKE };
int id_vault_start(struct id_env *env, char *errstr, size_t errlen);
void id_vault_stop(struct id_env *env);
int id_vault_idle(const struct id_env *env);
/* Queue one Vault call for ref: read version (0 latest), write value
 * (copied), delete (destroy every version the path's metadata lists),
 * mint (value: the token/create body; the answer's value is the token,
 * accessor its accessor), revoke (value: an accessor; ID_BMISSING when
 * Vault no longer knows it). cb on the loop with the outcome. */
int id_vault_call(struct id_env *env, enum id_vop op, const struct id_secret_ref *ref,
		  int version, const uint8_t *value, size_t len, id_bvalue_cb cb, void *opaque);

/* ---- mint.c -------------------------------------------------------------- */
/* SAGEWAI_IDENTITY_MINTS_FILE: the operator's mint sources; 0 or -1. */
int id_mint_load(struct id_env *env, char *errstr, size_t errlen);
int id_mint_start(struct id_env *env, char *errstr, size_t errlen);
void id_mint_stop(struct id_env *env);
/* Is name a mint source tenant may use? */
int id_mint_source(struct id_env *env, const char *tenant, const char *name);
/* What a token is minted for (the grant's seal). */
struct id_mint_for {
	char tenant[128];
	char run_id[64];
	char step_id[200];
	char sandbox_id[SW_UUID_STRLEN];
	char grant[SW_UUID_STRLEN];
	char source[64];
	char env[130];
};
/* Mint a token from source m->source, record its accessor, then cb with
 * the token as the value (version 1, its MAC); a token whose accessor
 * cannot be recorded is revoked and not handed out. -1: not queued. */
int id_mint(struct id_env *env, const struct id_mint_for *m, id_bvalue_cb cb, void *opaque);
/* The step attempt (step_id; NULL: the whole run) ended: its minted
 * tokens are revoked. done(opaque, ok) once that is recorded. */
void id_mint_ended(struct id_env *env, const char *run_id, const char *step_id,
		   void (*done)(void *opaque, int ok), void *opaque);

/* ---- resolve.c ----------------------------------------------------------- */

/* What to resolve; the caller owns it until the callback. */
struct id_resolve_in {
	char tenant[128];
	char run_id[64];
	char request_id[SW_UUID_STRLEN];
	char workflow[128];
	char user[128];
	json_t *steps;	    /* [{step, mode, agent, profile}] */
	json_t *input_macs; /* [{field, mac (hex)}] or NULL */
	json_t *pins;	    /* a re-run's [{step, env, secret, version, mac (hex)}] or NULL */
};
/* The answer, as in identity.resolved: {ok, code, error, steps, denied}
 * (steps[].keys[] with env, level, profile, kind, secret, version, backend,
 * value, mac (hex)); stored is the resolution's keys per step with the
 * owning scope, for the resolutions table. Both owned by resolve.c. */
typedef void (*id_resolve_cb)(struct id_env *env, json_t *answer, json_t *stored, void *opaque);
void id_resolve(struct id_env *env, const struct id_resolve_in *in, id_resolve_cb cb,
		void *opaque);

/* Seal: answer an identity.seal_requested event (decoded). cb gets the
 * fields of identity.sealed (without header) to produce. */
typedef void (*id_seal_cb)(struct id_env *env, json_t *fields, void *opaque);
void id_seal(struct id_env *env, const struct sw_event_header *h, json_t *ev, id_seal_cb cb,
	     void *opaque);
/* Seal on an allow credential.decided (decoded; cli_agent_jit): the one key
 * it names for its sandbox, to its host key; the answer (cb, as above)
 * carries the credential request's id. */
void id_seal_decided(struct id_env *env, const struct sw_event_header *h, json_t *ev,
		     id_seal_cb cb, void *opaque);

/* Validation shared with api.c. */
int id_name_valid(const char *s);
int id_env_valid(const char *s, const char **why);
int id_level_parse(const char *s, enum id_level *out);
const char *id_level_name(enum id_level l);
/* Check a profile body: 0, or -1 with errstr naming the key path. The
 * secret names it binds are appended to names (a JSON array). */
int id_profile_check(json_t *body, enum id_level level, json_t *names, char *errstr,
		     size_t errlen);

/* ---- api.c --------------------------------------------------------------- */
int id_api_start(struct id_env *env, char *errstr, size_t errlen);

/* ---- bus.c --------------------------------------------------------------- */
int id_bus_start(struct id_env *env, char *errstr, size_t errlen);
/* No message nor anything of ours in hand (the rest: sw_svcbus.h on
 * env->bus; events of ours are produced with sw_svcbus_publish). */
int id_bus_idle(const struct id_env *env);

/* ---- prune.c ------------------------------------------------------------- */
/* Arm the background deletion of old rows (nothing when retention_s is 0). */
int id_prune_start(struct id_env *env, char *errstr, size_t errlen);
void id_prune_stop(struct id_env *env);

/* ---- tenants.c ----------------------------------------------------------- */
/* Apply one decoded event of sagewai.tenants; done(ok) on the loop once it
 * is durable (or ignored). */
void id_tenants_apply(struct id_env *env, json_t *ev, void (*done)(void *opaque, int ok),
		      void *opaque);

#endif
