/*
 * sync.c: the blocking side of the store: the connection opened at start
 * and its migrations, and sw_store_exec_sync. These use PQexec on blocking
 * connections and never touch the event loop.
 */
#include <stdio.h>
#include <string.h>

#include "store_int.h"

/* ---- blocking helpers (start-up, exec_sync) -------------------------- */

/* Run one statement on a blocking connection; a NULL *out discards the
 * result. nparams < 0 runs sql with PQexec (several statements allowed).
 * On failure fills errstr with "<what>: <error>" and returns -1. */
static int store_run(PGconn *c, const char *what, const char *sql, int nparams,
		     const char *const *params, PGresult **out, char *errstr, size_t errlen)
{
	PGresult *r;
	char msg[1024];

	if (nparams < 0)
		r = PQexec(c, sql);
	else
		r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
	switch (PQresultStatus(r)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		if (out != NULL)
			*out = r;
		else
			PQclear(r);
		return 0;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
		snprintf(errstr, errlen, "%s: COPY is not supported", what);
		break;
	default:
		store_errfmt(msg, sizeof(msg), r, c);
		snprintf(errstr, errlen, "%s: %s", what, msg);
		break;
	}
	PQclear(r);
	return -1;
}

PGconn *store_connect_sync(const char *conninfo, const char *set_path, char *errstr,
				  size_t errlen)
{
	PGconn *c = PQconnectdb(conninfo);
	char msg[1024];

	if (c == NULL) {
		snprintf(errstr, errlen, "connect: out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		store_errfmt(msg, sizeof(msg), NULL, c);
		snprintf(errstr, errlen, "connect: %s", msg);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, store_notice, NULL);
	if (set_path != NULL &&
	    store_run(c, "search_path", set_path, 0, NULL, NULL, errstr, errlen) < 0) {
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Create the schema and the migrations table, then apply each migration
 * not yet recorded, each in its own transaction under an advisory lock
 * keyed on the schema name, re-checking the version under the lock. */
int store_migrate(struct sw_store *s, PGconn *c, const struct sw_migration *migs,
			 size_t nmigs, char *errstr, size_t errlen)
{
	const char *lock = "SELECT pg_advisory_xact_lock(hashtext($1))";
	const char *has = "SELECT 1 FROM schema_migrations WHERE version = $1";
	const char *record = "INSERT INTO schema_migrations (version, applied_at) "
			     "VALUES ($1, now())";
	const char *schema_p[1] = {s->schema};
	PGresult *r = NULL;
	char sql[256], what[64], ver[16];
	const char *ver_p[1] = {ver};
	size_t i;
	int found;

	/* The catalog check first: CREATE SCHEMA needs database CREATE
	 * rights even when the schema exists (pre-created by a DBA). */
	if (store_run(c, "begin", "BEGIN", 0, NULL, NULL, errstr, errlen) < 0 ||
	    store_run(c, "lock", lock, 1, schema_p, NULL, errstr, errlen) < 0 ||
	    store_run(c, "schema", "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, schema_p,
		      &r, errstr, errlen) < 0)
		goto fail;
	found = PQntuples(r) > 0;
	PQclear(r);
	r = NULL;
	snprintf(sql, sizeof(sql), "CREATE SCHEMA \"%s\"", s->schema);
	if (!found && store_run(c, "schema", sql, 0, NULL, NULL, errstr, errlen) < 0)
		goto fail;
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE IF NOT EXISTS \"%s\".schema_migrations ("
		 "version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		 s->schema);
	if (store_run(c, "schema_migrations", sql, 0, NULL, NULL, errstr, errlen) < 0 ||
	    store_run(c, "commit", "COMMIT", 0, NULL, NULL, errstr, errlen) < 0 ||
	    store_run(c, "search_path", s->set_path, 0, NULL, NULL, errstr, errlen) < 0)
		goto fail;

	for (i = 0; i < nmigs; i++) {
		snprintf(ver, sizeof(ver), "%d", migs[i].version);
		snprintf(what, sizeof(what), "migration %d", migs[i].version);
		/* cheap pre-check without the lock: the common case is "applied" */
		if (store_run(c, what, has, 1, ver_p, &r, errstr, errlen) < 0)
			goto fail;
		found = PQntuples(r) > 0;
		PQclear(r);
		r = NULL;
		if (found)
			continue;
		if (store_run(c, what, "BEGIN", 0, NULL, NULL, errstr, errlen) < 0 ||
		    store_run(c, what, lock, 1, schema_p, NULL, errstr, errlen) < 0 ||
		    store_run(c, what, has, 1, ver_p, &r, errstr, errlen) < 0)
			goto fail;
		found = PQntuples(r) > 0;
		PQclear(r);
		r = NULL;
		if (!found &&
		    (store_run(c, what, migs[i].sql, -1, NULL, NULL, errstr, errlen) < 0 ||
		     store_run(c, what, record, 1, ver_p, NULL, errstr, errlen) < 0))
			goto fail;
		if (store_run(c, what, "COMMIT", 0, NULL, NULL, errstr, errlen) < 0)
			goto fail;
	}
	return 0;
fail:
	PQclear(r);
	if (PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	return -1;
}

PGresult *sw_store_exec_sync(struct sw_store *s, const char *sql, int nparams,
			     const char *const *params, char *errstr, size_t errlen)
{
	PGresult *r = NULL;
	int attempt;

	if (s == NULL || sql == NULL || nparams < 0 || nparams > STORE_MAX_PARAMS ||
	    (nparams > 0 && params == NULL)) {
		snprintf(errstr, errlen, "store: invalid arguments");
		return NULL;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		if (s->sync_conn != NULL && PQstatus(s->sync_conn) == CONNECTION_BAD) {
			PQfinish(s->sync_conn);
			s->sync_conn = NULL;
		}
		if (s->sync_conn == NULL &&
		    (s->sync_conn =
			 store_connect_sync(s->conninfo, s->set_path, errstr, errlen)) == NULL)
			return NULL;
		if (store_run(s->sync_conn, "exec", sql, nparams == 0 ? -1 : nparams, params, &r,
			      errstr, errlen) == 0)
			return r;
		/* A connection that died since the last call (server
		 * restart): reconnect once and run the statement again. */
		if (PQstatus(s->sync_conn) != CONNECTION_BAD)
			return NULL;
	}
	return NULL;
}
