/*
 * users.c: the users of a tenant (the operator's, SAGEWAI_ADMIN_TOKEN).
 *
 *   POST   /v1/tenants/{ref}/users {"name"}   201 {"user_id", "tenant_id", "name"}
 *   GET    /v1/tenants/{ref}/users            200 {"tenant_id", "users": [{"user_id",
 *                                             "name", "created", "keys"}]}
 *   DELETE /v1/tenants/{ref}/users/{name}     200 {"user_id", "tenant_id", "name",
 *                                             "deleted": true, "keys_revoked"}
 *
 * {ref} is a tenant's id or name, or "default" in single_org mode. A user
 * is an immutable id (UUIDv7) and a name ([a-z0-9][a-z0-9_.-]{0,62})
 * unique among the tenant's live users; a deleted user's name may be given
 * again, to a new id. Keys of a user come from POST /v1/keys {"tenant",
 * "user"} (tenants.c); a run submitted with one records the user, the
 * last level of the identity cascade (docs/IDENTITY.md). Deleting a user
 * revokes each of its keys in the same transaction. Events, through the
 * outbox on sagewai.tenants keyed by the tenant id: user.created;
 * user.deleted followed by apikey.revoked per key.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

int sched_user_name_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return 0;
	for (i = 1; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
		      s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

/* ---- POST .../users ------------------------------------------------------ */

static void create_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;

	if (err != NULL && strncmp(err, "23505", 5) == 0 && strstr(err, "users_live_name")) {
		sw_http_reply_error(c->req, 409, "conflict", "tenant %s has a user '%s'",
				    c->tenant_name, c->user);
	} else if (err != NULL && strncmp(err, "SWGON", 5) == 0) {
		sw_http_reply_error(c->req, 404, "not_found", "no such tenant");
	} else if (err != NULL && !(strncmp(err, "23505", 5) == 0 && strstr(err, "_pkey"))) {
		/* a duplicate primary key: our own insert, resent after a reconnect */
		sw_http_reply_error(c->req, 503, "unavailable", "user creation failed");
		sw_log(SW_LOG_ERROR, "user creation failed", "error", err, NULL);
	} else {
		if (err == NULL)
			sched_outbox_committed(c->env, res, c->ev, c->nev);
		sw_http_reply_json(c->req, 201,
				   json_pack("{s:s, s:s, s:s}", "user_id", c->user_id, "tenant_id",
					     c->tenant_id, "name", c->user));
		sw_log(SW_LOG_INFO, "user created", "tenant", c->tenant_id, "user", c->user,
		       NULL);
	}
	sched_admin_free(c);
}

static void user_create(struct sched_admin *c)
{
	struct sched_tx t = {0};

	sw_uuid_v7_str(c->user_id);
	if (sched_admin_event(c, "user.created", c->tenant_id, c->tenant_id,
			      json_pack("{s:s, s:s, s:s}", "user_id", c->user_id, "tenant_id",
					c->tenant_id, "name", c->user)) == -1)
		goto fail;
	sched_tx_add(&t, "SELECT tenant_live($1)", 1, c->tenant_id);
	sched_tx_add(&t, "INSERT INTO users (id, tenant_id, name) VALUES ($1::uuid, $2, $3)", 3,
		     c->user_id, c->tenant_id, c->user);
	if (sched_admin_commit(c, &t, create_cb) == 0)
		return;
fail:
	sched_tx_free(&t);
	sw_http_reply_error(c->req, 503, "unavailable", "user creation failed");
	sched_admin_free(c);
}

/* ---- GET .../users ---------------------------------------------------------- */

static void list_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;
	json_t *j;

	if (err != NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "user list failed");
		sw_log(SW_LOG_ERROR, "user list failed", "error", err, NULL);
	} else if ((j = json_loads(PQgetvalue(res, 0, 0), 0, NULL)) == NULL) {
		sw_http_reply_error(c->req, 500, "internal", "cannot encode the answer");
	} else {
		sw_http_reply_json(c->req, 200, j);
	}
	sched_admin_free(c);
}

static void user_list(struct sched_admin *c)
{
	const char *params[1] = {c->tenant_id};

	if (sw_store_query(c->env->store,
			   "SELECT json_build_object('tenant_id', $1::text, 'users',"
			   " coalesce(json_agg(json_build_object('user_id', u.id, 'name', u.name,"
			   "  'created', ts(u.created), 'keys', (SELECT count(*) FROM apikeys k"
			   "   WHERE k.tenant_id = u.tenant_id AND k.user_name = u.name"
			   "   AND k.revoked IS NULL)) ORDER BY u.name), '[]'))::text"
			   " FROM users u WHERE u.tenant_id = $1 AND u.deleted IS NULL",
			   1, params, list_cb, c) == -1) {
		sw_http_reply_error(c->req, 503, "unavailable", "user list failed");
		sched_admin_free(c);
	}
}

/* ---- DELETE .../users/{name} ------------------------------------------------ */

static void delete_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;

	if (err != NULL && strncmp(err, "SWGON", 5) == 0) {
		sw_http_reply_error(c->req, 404, "not_found", "no such user");
	} else if (err != NULL && strncmp(err, "SWREV", 5) == 0) {
		sw_http_reply_error(c->req, 409, "conflict",
				    "the user's keys changed meanwhile; try again");
	} else if (err != NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "user deletion failed");
		sw_log(SW_LOG_ERROR, "user deletion failed", "error", err, NULL);
	} else {
		sched_outbox_committed(c->env, res, c->ev, c->nev);
		/* no key of the user may be trusted from the cache any longer */
		sched_tcache_clear(c->env);
		sw_http_reply_json(c->req, 200,
				   json_pack("{s:s, s:s, s:s, s:b, s:i}", "user_id", c->user_id,
					     "tenant_id", c->tenant_id, "name", c->user, "deleted",
					     1, "keys_revoked", c->nkeys));
		sw_log(SW_LOG_INFO, "user deleted", "tenant", c->tenant_id, "user", c->user,
		       NULL);
	}
	sched_admin_free(c);
}

/* The user as read: its id and its live keys' ids (comma-separated). */
static void delete_read_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_admin *c = opaque;
	struct sched_tx t = {0};
	char *k, *save = NULL;

	if (err != NULL) {
		sw_http_reply_error(c->req, 503, "unavailable", "user lookup failed");
		sw_log(SW_LOG_ERROR, "user lookup failed", "error", err, NULL);
		goto out;
	}
	if (PQntuples(res) != 1) {
		sw_http_reply_error(c->req, 404, "not_found", "no such user");
		goto out;
	}
	snprintf(c->user_id, sizeof(c->user_id), "%s", PQgetvalue(res, 0, 0));
	if ((c->keys = strdup(PQgetvalue(res, 0, 1))) == NULL)
		goto fail;
	c->nkeys = 0;
	for (k = c->keys; *k != '\0'; k++)
		c->nkeys += *k == ',';
	c->nkeys += c->keys[0] != '\0';
	if (sched_admin_event(c, "user.deleted", c->tenant_id, c->tenant_id,
			      json_pack("{s:s, s:s, s:s}", "user_id", c->user_id, "tenant_id",
					c->tenant_id, "name", c->user)) == -1)
		goto fail;
	for (k = strtok_r(c->keys, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save))
		if (sched_admin_event(c, "apikey.revoked", c->tenant_id, c->tenant_id,
				      json_pack("{s:s, s:s, s:s}", "key_id", k, "tenant_id",
						c->tenant_id, "reason", "user deleted")) == -1)
			goto fail;
	sched_tx_add(&t, "SELECT user_delete($1, $2, $3::int)", 3, c->tenant_id, c->user,
		     sched_tx_fmt(&t, "%d", c->nkeys));
	if (sched_admin_commit(c, &t, delete_cb) == 0)
		return;
fail:
	sw_http_reply_error(c->req, 503, "unavailable", "user deletion failed");
out:
	sched_tx_free(&t);
	sched_admin_free(c);
}

static void user_delete(struct sched_admin *c)
{
	const char *params[2] = {c->tenant_id, c->user};

	if (sw_store_query(c->env->store,
			   "SELECT u.id::text, coalesce((SELECT string_agg(k.id::text, ',')"
			   "  FROM apikeys k WHERE k.tenant_id = u.tenant_id"
			   "  AND k.user_name = u.name AND k.revoked IS NULL), '')"
			   " FROM users u WHERE u.tenant_id = $1 AND u.name = $2"
			   " AND u.deleted IS NULL",
			   2, params, delete_read_cb, c) == -1) {
		sw_http_reply_error(c->req, 503, "unavailable", "user lookup failed");
		sched_admin_free(c);
	}
}

/* ---- routing ------------------------------------------------------------------ */

void sched_users_route(struct sched_env *env, struct evhttp_request *req, const char *rest)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *slash = strchr(rest, '/'), *sub = slash + 1, *name = NULL;
	struct sched_admin *c = NULL;
	char *ref = NULL, *uname = NULL;
	sched_admin_cb next;
	json_t *body = NULL;

	if (strcmp(sub, "users") == 0) {
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_POST) {
			sw_http_reply_method_not_allowed(req, "GET, POST");
			return;
		}
	} else if (strncmp(sub, "users/", 6) == 0 && strchr(sub + 6, '/') == NULL) {
		if (cmd != EVHTTP_REQ_DELETE) {
			sw_http_reply_method_not_allowed(req, "DELETE");
			return;
		}
		name = sub + 6;
	} else {
		sw_http_reply_error(req, 404, "not_found", "no such resource");
		return;
	}
	if (sched_admin_check(env, req) == -1)
		return;
	{
		char *raw = strndup(rest, (size_t)(slash - rest));

		ref = raw ? evhttp_uridecode(raw, 0, NULL) : NULL;
		free(raw);
	}
	if (ref == NULL) {
		sw_http_reply_error(req, 404, "not_found", "no such tenant");
		return;
	}
	if (name != NULL) {
		if ((uname = evhttp_uridecode(name, 0, NULL)) == NULL ||
		    !sched_user_name_valid(uname)) {
			sw_http_reply_error(req, 404, "not_found", "no such user");
			goto out;
		}
		next = user_delete;
	} else if (cmd == EVHTTP_REQ_POST) {
		const char *n;

		if ((body = sw_http_body_json(req)) == NULL)
			goto out;
		n = json_string_value(json_object_get(body, "name"));
		if (!json_is_object(body) || json_object_size(body) != 1 || n == NULL ||
		    !sched_user_name_valid(n)) {
			sw_http_reply_error(req, 400, "bad_request",
					    "body must be {\"name\": NAME}, NAME matching "
					    "[a-z0-9][a-z0-9_.-]{0,62}");
			goto out;
		}
		if ((uname = strdup(n)) == NULL) {
			sw_http_reply_error(req, 503, "unavailable", "out of memory");
			goto out;
		}
		next = user_create;
	} else {
		next = user_list;
	}
	if ((c = sched_admin_new(env, req)) == NULL)
		goto out;
	snprintf(c->user, sizeof(c->user), "%s", uname ? uname : "");
	sched_admin_tenant(c, ref, next);
out:
	json_decref(body);
	free(uname);
	free(ref);
}
