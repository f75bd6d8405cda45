/*
 * sw_test_pg: one-shot PostgreSQL statements and per-test databases.
 */
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "sw_test_svc.h"

PGresult *sw_test_pg_exec(const char *dsn, const char *q)
{
	PGconn *c = PQconnectdb(dsn);
	PGresult *r;

	SW_CHECKF(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, q);
	SW_CHECKF(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
		  "%s: %s", q, PQerrorMessage(c));
	PQfinish(c);
	return r;
}

long sw_test_pg_long(const char *dsn, const char *q)
{
	PGresult *r = sw_test_pg_exec(dsn, q);
	long n;

	SW_CHECKF(PQntuples(r) > 0 && PQnfields(r) > 0, "%s: no value", q);
	n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

long sw_test_pg_long_try(const char *dsn, const char *q)
{
	PGconn *c = PQconnectdb(dsn);
	PGresult *r;
	long n = -1;

	if (PQstatus(c) == CONNECTION_OK) {
		r = PQexec(c, q);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0)
			n = atol(PQgetvalue(r, 0, 0));
		PQclear(r);
	}
	PQfinish(c);
	return n;
}

void sw_test_pg_db_create(char *dsn, size_t len, const char *svc, const char *scenario)
{
	const char *base = getenv("SAGEWAI_PG_DSN");
	char q[256];

	SW_CHECKF(base != NULL, "SAGEWAI_PG_DSN is not set (sw_test_env_load first)");
	snprintf(q, sizeof(q), "CREATE DATABASE %s_%s_%d", svc, scenario, (int)getpid());
	PQclear(sw_test_pg_exec(base, q));
	SW_CHECK((size_t)snprintf(dsn, len, "%s dbname=%s", base, q + strlen("CREATE DATABASE ")) <
		 len);
}

void sw_test_pg_svc_dsn(char *dsn, size_t len, const char *db_dsn, const char *svc)
{
	PQconninfoOption *opts, *o;
	const char *base, *db = NULL;
	char var[64], *err = NULL;
	size_t i;

	snprintf(var, sizeof(var), "SAGEWAI_PG_DSN_%s", svc);
	for (i = strlen("SAGEWAI_PG_DSN_"); var[i] != '\0'; i++)
		var[i] = (char)toupper((unsigned char)var[i]);
	base = getenv(var);
	SW_CHECKF(base != NULL && *base != '\0', "%s is not set (sw_test_env_load first)", var);
	opts = PQconninfoParse(db_dsn, &err);
	SW_CHECKF(opts != NULL, "%s: %s", db_dsn, err ? err : "out of memory");
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "dbname") == 0 && o->val != NULL)
			db = o->val;
	SW_CHECKF(db != NULL, "%s names no database", db_dsn);
	SW_CHECK((size_t)snprintf(dsn, len, "%s dbname=%s", base, db) < len);
	PQconninfoFree(opts);
}

const char *sw_test_pg_svc_env(char *entry, size_t len, const char *db_dsn, const char *svc)
{
	static const char key[] = "SAGEWAI_PG_DSN=";

	SW_CHECK(len > sizeof(key));
	memcpy(entry, key, sizeof(key) - 1);
	sw_test_pg_svc_dsn(entry + sizeof(key) - 1, len - (sizeof(key) - 1), db_dsn, svc);
	return entry;
}

static void pg_harness(const char *what)
{
	const char *src = getenv("SW_SOURCE_DIR"), *dir = getenv("SW_HARNESS_DIR");
	char cmd[1024];

	SW_CHECK(src != NULL && dir != NULL);
	snprintf(cmd, sizeof(cmd), "%s/tests/harness/harness %s %s", src, what, dir);
	SW_CHECK(system(cmd) == 0);
}

void sw_test_pg_restart(void)
{
	pg_harness("pg-restart");
}

void sw_test_pg_crash(void)
{
	pg_harness("pg-crash");
}
