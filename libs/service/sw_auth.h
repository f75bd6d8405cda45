/*
 * sw_auth: the credentials of a service's HTTP API, read the same way by
 * every service (identity, policy, audit, scheduler):
 *
 *   - the credential is the value of "Authorization: Bearer <value>"
 *     (the scheme in any case, blanks around the value dropped);
 *   - the operator's admin token is compared in constant time
 *     (sodium_memcmp), never through strcmp;
 *   - a tenant's API key is never stored: the apikeys tables hold its
 *     SHA-256 (key_hash), which is what a key is looked up by.
 *
 * What a service answers to each outcome (status, code, text, the
 * WWW-Authenticate header) stays its own.
 */
#ifndef SW_AUTH_H
#define SW_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <event2/http.h>

#include "sw_store.h"

#define SW_AUTH_HASH_BYTES 32 /* SHA-256 */
/* "\\x" and 64 hex digits: a key hash as a bytea literal, NUL included */
#define SW_AUTH_HASH_LITERAL (2 * SW_AUTH_HASH_BYTES + 3)

/* The Bearer value of req copied into out: 0; 1 when req has no
 * Authorization header; -1 when it has one that is not "Bearer <value>",
 * or whose value is empty or does not fit outlen. */
int sw_auth_bearer(struct evhttp_request *req, char *out, size_t outlen);

/* Non-zero when tok is the admin token: admin is set ("" is no token) and
 * tok equals it, compared in constant time. */
int sw_auth_is_admin(const char *tok, const char *admin);

/* The SHA-256 of an API key (hash may be NULL) and, when literal is not
 * NULL, the same as a bytea literal for a $n::bytea parameter. */
void sw_auth_key_hash(const char *key, uint8_t hash[SW_AUTH_HASH_BYTES],
		      char literal[SW_AUTH_HASH_LITERAL]);

/* What a request's Bearer value is (sw_auth_credential). */
enum sw_auth_cred {
	SW_AUTH_NONE,  /* no Authorization header, or a malformed one */
	SW_AUTH_ADMIN, /* the operator's admin token */
	SW_AUTH_KEY    /* anything else: an API key to look up */
};

/* The credential of req (sw_auth_bearer, sw_auth_is_admin); with
 * SW_AUTH_KEY its value is in tok (toklen bytes, the longest accepted
 * plus one), else tok is wiped. */
enum sw_auth_cred sw_auth_credential(struct evhttp_request *req, const char *admin, char *tok,
				     size_t toklen);

/* Look up the API key key: sql, with $1 its hash as a bytea literal
 * ($1::bytea), queued on store with cb(opaque) for its rows. key (keylen
 * bytes) is wiped, whatever the outcome; neither it nor its hash is kept.
 * 0, or -1 when the query could not be queued (cb not called). */
int sw_auth_key_query(struct sw_store *store, const char *sql, char *key, size_t keylen,
		      sw_store_cb cb, void *opaque);

/* The same for a tenant's key in the tables sw_tenants keeps (a live key
 * of role TENANT of a tenant not deleted): columns, of apikeys k and
 * tenants t, are the row's (e.g. "k.tenant_id, t.name"); no row: no such
 * key. */
int sw_auth_tenant_key(struct sw_store *store, const char *columns, char *key, size_t keylen,
		       sw_store_cb cb, void *opaque);

#endif
