/*
 * store_test.h: helpers shared by the sw_store tests (one static copy per
 * test program).
 */
#ifndef STORE_TEST_H
#define STORE_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "sw_store.h"
#include "sw_test.h"

static void store_test_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static inline const char *store_test_dsn(void)
{
	const char *dsn;

	sw_test_env_load();
	dsn = getenv("SAGEWAI_PG_DSN");
	SW_CHECKF(dsn != NULL && *dsn != '\0', "SAGEWAI_PG_DSN missing from the harness env");
	return dsn;
}

/* Run sql on a plain libpq connection of the test's own (set-up and
 * clean-up outside any store schema). */
static inline void store_test_admin(const char *dsn, const char *sql)
{
	PGconn *c = PQconnectdb(dsn);
	PGresult *r;

	SW_CHECKF(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	PQsetNoticeProcessor(c, store_test_quiet, NULL);
	r = PQexec(c, sql);
	SW_CHECKF(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
		  "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static inline void store_test_drop(const char *dsn, const char *schema)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
	store_test_admin(dsn, sql);
}

/* Run sql synchronously on s; fail the test on error. */
static inline void store_test_exec(struct sw_store *s, const char *sql)
{
	char err[512];
	PGresult *r = sw_store_exec_sync(s, sql, 0, NULL, err, sizeof(err));

	SW_CHECKF(r != NULL, "%s: %s", sql, err);
	PQclear(r);
}

/* First cell of sql's first row as a malloc'd string ("" for no row,
 * "(null)" for SQL NULL). */
static inline char *store_test_scalar(struct sw_store *s, const char *sql)
{
	char err[512];
	PGresult *r = sw_store_exec_sync(s, sql, 0, NULL, err, sizeof(err));
	char *v;

	SW_CHECKF(r != NULL, "%s: %s", sql, err);
	if (PQntuples(r) == 0 || PQnfields(r) == 0)
		v = strdup("");
	else if (PQgetisnull(r, 0, 0))
		v = strdup("(null)");
	else
		v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	SW_CHECK(v != NULL);
	return v;
}

static inline long store_test_long(struct sw_store *s, const char *sql)
{
	char *v = store_test_scalar(s, sql);
	long n = strtol(v, NULL, 10);

	free(v);
	return n;
}

static inline void store_test_expect(struct sw_store *s, const char *sql, const char *want)
{
	char *v = store_test_scalar(s, sql);

	SW_CHECKF(strcmp(v, want) == 0, "%s: got '%s', want '%s'", sql, v, want);
	free(v);
}

static void store_test_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fprintf(stderr, "store test: no completion within %ld s (hung?)\n", (long)(intptr_t)arg);
	exit(1);
}

/* Run the loop until *done is set by a callback (which need do
 * nothing else); a hang fails the test rather than the ctest
 * timeout. Not a timing assertion: the bound is far above any normal run. */
static inline void store_test_run(struct event_base *base, const int *done, long limit_s)
{
	struct timeval tv = {limit_s, 0};
	struct event *guard =
		evtimer_new(base, store_test_deadline_cb, (void *)(intptr_t)limit_s);

	SW_CHECK(guard != NULL);
	evtimer_add(guard, &tv);
	while (!*done)
		SW_CHECK(event_base_loop(base, EVLOOP_ONCE) == 0);
	event_free(guard);
}

#endif
