/*
 * test_store_migrate: migrations are applied once and versioned.
 *
 *  1. a fresh schema gets migrations 1..2, recorded in schema_migrations;
 *  2. opening again applies nothing (non-idempotent migrations would fail
 *     or double their rows, and applied_at stays as it was);
 *  3. a new migration 3 applies only itself;
 *  4. a failing migration 4 rolls back (its table does not exist), the
 *     version stays 3 and sw_store_new fails with the migration's error;
 *  5. several processes starting at once (fork, released together) apply
 *     each migration exactly once.
 */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_test.h"

#define NCHILD 4

static const struct sw_migration migs[] = {
	{1, "CREATE TABLE items (id int PRIMARY KEY);"
	    "CREATE TABLE applied (v int NOT NULL);"
	    "INSERT INTO applied VALUES (1)"},
	{2, "ALTER TABLE items ADD COLUMN name text; INSERT INTO applied VALUES (2)"},
	{3, "CREATE TABLE three (x int); INSERT INTO applied VALUES (3)"},
	/* creates a table, records itself, then fails: all of it must go */
	{4, "CREATE TABLE four (x int); INSERT INTO applied VALUES (4);"
	    "SELECT * FROM no_such_table"},
};

/* Racing starts: a sleep inside migration 1 widens the window in which
 * the others wait on the advisory lock. */
static const struct sw_migration cmigs[] = {
	{1, "CREATE TABLE log (v int NOT NULL); INSERT INTO log VALUES (1);"
	    "SELECT pg_sleep(0.3)"},
	{2, "CREATE TABLE two (x int); INSERT INTO log VALUES (2)"},
	{3, "INSERT INTO log VALUES (3)"},
};

static struct sw_store *open_store(struct event_base *base, const char *dsn, const char *schema,
				   const struct sw_migration *m, size_t n)
{
	char err[512];
	struct sw_store *s = sw_store_new(base, dsn, schema, m, n, err, sizeof(err));

	SW_CHECKF(s != NULL, "sw_store_new(%s, %zu migrations): %s", schema, n, err);
	return s;
}

static void test_sequence(struct event_base *base, const char *dsn, const char *schema)
{
	struct sw_store *s;
	char err[512], *at1, *at2;
	const char *stamps = "SELECT string_agg(applied_at::text, ',' ORDER BY version) "
			     "FROM schema_migrations";

	store_test_drop(dsn, schema);

	/* 1: fresh */
	s = open_store(base, dsn, schema, migs, 2);
	store_test_expect(s, "SELECT string_agg(version::text, ',' ORDER BY version) "
			     "FROM schema_migrations", "1,2");
	store_test_expect(s, "SELECT string_agg(v::text, ',' ORDER BY v) FROM applied", "1,2");
	store_test_expect(s, "SELECT count(*) FROM schema_migrations WHERE applied_at IS NULL",
			  "0");
	at1 = store_test_scalar(s, stamps);
	sw_store_destroy(s);

	/* 2: reopen applies nothing */
	s = open_store(base, dsn, schema, migs, 2);
	store_test_expect(s, "SELECT string_agg(v::text, ',' ORDER BY v) FROM applied", "1,2");
	at2 = store_test_scalar(s, stamps);
	SW_CHECKF(strcmp(at1, at2) == 0, "applied_at changed: %s -> %s", at1, at2);
	free(at2);
	sw_store_destroy(s);

	/* 3: only the new one */
	s = open_store(base, dsn, schema, migs, 3);
	store_test_expect(s, "SELECT string_agg(v::text, ',' ORDER BY v) FROM applied", "1,2,3");
	store_test_expect(s, "SELECT string_agg(version::text, ',' ORDER BY version) "
			     "FROM schema_migrations", "1,2,3");
	at2 = store_test_scalar(s, "SELECT string_agg(applied_at::text, ',' ORDER BY version) "
				   "FROM schema_migrations WHERE version <= 2");
	SW_CHECKF(strcmp(at1, at2) == 0, "applied_at of 1,2 changed: %s -> %s", at1, at2);
	free(at1);
	free(at2);
	store_test_expect(s, "SELECT to_regclass('three') IS NOT NULL", "t");
	sw_store_destroy(s);

	/* 4: failing migration */
	s = sw_store_new(base, dsn, schema, migs, 4, err, sizeof(err));
	SW_CHECK(s == NULL);
	SW_CHECKF(strstr(err, "migration 4") != NULL && strstr(err, "42P01") != NULL &&
			  strstr(err, "no_such_table") != NULL,
		  "error lacks the migration's failure: %s", err);
	s = open_store(base, dsn, schema, migs, 3);
	store_test_expect(s, "SELECT max(version) FROM schema_migrations", "3");
	store_test_expect(s, "SELECT to_regclass('four') IS NULL", "t");
	store_test_expect(s, "SELECT string_agg(v::text, ',' ORDER BY v) FROM applied", "1,2,3");
	/* the store still works after all that */
	store_test_expect(s, "SELECT count(*) FROM items", "0");
	sw_store_destroy(s);

	store_test_drop(dsn, schema);
}

static void test_concurrent(const char *dsn, const char *schema)
{
	struct event_base *base;
	struct sw_store *s;
	pid_t pids[NCHILD];
	int gate[2], i, status;
	char c;

	store_test_drop(dsn, schema);
	SW_CHECK(pipe(gate) == 0);
	for (i = 0; i < NCHILD; i++) {
		pids[i] = fork();
		SW_CHECK(pids[i] >= 0);
		if (pids[i] == 0) {
			char err[512];

			close(gate[1]);
			/* released together when the parent closes the pipe */
			if (read(gate[0], &c, 1) < 0)
				_exit(2);
			base = event_base_new();
			s = sw_store_new(base, dsn, schema, cmigs, 3, err, sizeof(err));
			if (s == NULL) {
				fprintf(stderr, "child %d: %s\n", i, err);
				_exit(1);
			}
			sw_store_destroy(s);
			event_base_free(base);
			_exit(0);
		}
	}
	close(gate[0]);
	close(gate[1]);
	for (i = 0; i < NCHILD; i++) {
		SW_CHECK(waitpid(pids[i], &status, 0) == pids[i]);
		SW_CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
	}

	base = event_base_new();
	s = open_store(base, dsn, schema, cmigs, 3);
	store_test_expect(s, "SELECT string_agg(v::text, ',' ORDER BY v) FROM log", "1,2,3");
	store_test_expect(s, "SELECT string_agg(version::text, ',' ORDER BY version) "
			     "FROM schema_migrations", "1,2,3");
	sw_store_destroy(s);
	event_base_free(base);
	store_test_drop(dsn, schema);
}

int main(void)
{
	const char *dsn = store_test_dsn();
	struct event_base *base = event_base_new();
	char schema[64];

	SW_CHECK(base != NULL);
	snprintf(schema, sizeof(schema), "t_mig_%d", (int)getpid());
	test_sequence(base, dsn, schema);
	event_base_free(base);

	snprintf(schema, sizeof(schema), "t_migc_%d", (int)getpid());
	test_concurrent(dsn, schema);
	return 0;
}
