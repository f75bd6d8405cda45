/*
 * sw_tenants: the statement that applies one event of sagewai.tenants to a
 * service's own copy of the tenant, key and user tables, for the services
 * that learn tenants from the scheduler's events rather than its tables
 * (identity, policy):
 *
 *   tenant.created / tenant.deleted   tenants (id, name, deleted)
 *   apikey.created / apikey.revoked   apikeys (key_id, key_hash, tenant_id,
 *                                     role, username, revoked): the SHA-256
 *                                     of each key; revoked is sticky, even
 *                                     when it arrives first
 *   user.created / user.deleted       users (user_id, tenant_id, name,
 *                                     deleted), when the caller keeps users
 *
 * Only events whose header names the scheduler as producer count (Kafka
 * ACLs must keep anyone else from producing to sagewai.tenants). Every
 * statement is an idempotent upsert; the caller queues it keyed by the
 * tenant, so that a tenant's events commit in their order.
 */
#ifndef SW_TENANTS_H
#define SW_TENANTS_H

#include <stddef.h>
#include <jansson.h>

struct sw_store;

#define SW_TENANTS_MAX_PARAMS 5

struct sw_tenants_stmt {
	const char *type;   /* the event's type (into ev), for messages */
	const char *tenant; /* the key to queue by (into ev) */
	const char *sql;
	const char *params[SW_TENANTS_MAX_PARAMS]; /* into ev and bhash */
	int nparams;
	char bhash[70]; /* the key hash as a bytea literal */
};

enum sw_tenants_rc {
	SW_TENANTS_APPLY,    /* st holds the statement */
	SW_TENANTS_NOTHING,  /* nothing to change here (user.* without users) */
	SW_TENANTS_FOREIGN,  /* not the scheduler's event: ignore it */
	SW_TENANTS_MALFORMED /* unknown type or a field missing: ignore it */
};

/* The statement for the decoded event ev (its JSON form), users: whether
 * the caller keeps a users table. st points into ev: keep ev until the
 * statement is queued. */
enum sw_tenants_rc sw_tenants_stmt(json_t *ev, int users, struct sw_tenants_stmt *st);

/* Apply ev to the tables of store: its statement queued keyed by the
 * tenant (a tenant's events commit in their order), done(opaque, ok) called
 * once it committed (ok 0 after a logged failure), or at once for an event
 * that changes nothing here or is ignored (logged). 0, or -1 with errstr
 * when it could not be queued (done not called: the caller stops). */
int sw_tenants_apply(struct sw_store *store, json_t *ev, int users,
		     void (*done)(void *opaque, int ok), void *opaque, char *errstr,
		     size_t errlen);

#endif
