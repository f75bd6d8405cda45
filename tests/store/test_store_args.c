/*
 * test_store_args: sw_store_new refuses bad schema names and migration
 * lists before touching the network, and reports an unreachable server.
 * Needs nothing running.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "sw_store.h"
#include "sw_test.h"

/* Nothing listens here: a refused connection must fail cleanly. */
#define DEAD_DSN "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=5"

static void expect_fail(struct event_base *base, const char *schema,
			const struct sw_migration *migs, size_t n, const char *want)
{
	char err[256] = "";
	struct sw_store *s = sw_store_new(base, DEAD_DSN, schema, migs, n, err, sizeof(err));

	SW_CHECKF(s == NULL, "schema '%s' accepted", schema ? schema : "(null)");
	SW_CHECKF(strstr(err, want) != NULL, "schema '%s': error '%s' lacks '%s'",
		  schema ? schema : "(null)", err, want);
}

/* Array literals: quoted, '"' and '\\' escaped, NULL elements bare. */
static void check_arrays(void)
{
	const char *v[] = {"a", "b \"q\" \\ {x,y}", NULL, "", "NULL"};
	char *s = sw_store_array(v, 5);

	SW_CHECK(s != NULL);
	SW_CHECKF(strcmp(s, "{\"a\",\"b \\\"q\\\" \\\\ {x,y}\",NULL,\"\",\"NULL\"}") == 0,
		  "array literal %s", s);
	free(s);
	s = sw_store_array(v, 0);
	SW_CHECK(s != NULL && strcmp(s, "{}") == 0);
	free(s);
}

int main(void)
{
	struct event_base *base = event_base_new();
	struct sw_migration ok[] = {{1, "SELECT 1"}, {2, "SELECT 2"}};
	struct sw_migration dup[] = {{1, "SELECT 1"}, {1, "SELECT 2"}};
	struct sw_migration down[] = {{2, "SELECT 1"}, {1, "SELECT 2"}};
	struct sw_migration zero[] = {{0, "SELECT 1"}};
	struct sw_migration nosql[] = {{1, NULL}};
	char long_name[80];

	SW_CHECK(base != NULL);
	check_arrays();
	memset(long_name, 'a', 64);
	long_name[64] = '\0';

	expect_fail(base, NULL, ok, 2, "invalid schema");
	expect_fail(base, "", ok, 2, "invalid schema");
	expect_fail(base, "Audit", ok, 2, "invalid schema");
	expect_fail(base, "1audit", ok, 2, "invalid schema");
	expect_fail(base, "au-dit", ok, 2, "invalid schema");
	expect_fail(base, "au\"dit", ok, 2, "invalid schema");
	expect_fail(base, "audit;drop", ok, 2, "invalid schema");
	expect_fail(base, long_name, ok, 2, "invalid schema");
	expect_fail(base, "audit", dup, 2, "strictly increasing");
	expect_fail(base, "audit", down, 2, "strictly increasing");
	expect_fail(base, "audit", zero, 1, "strictly increasing");
	expect_fail(base, "audit", nosql, 1, "strictly increasing");
	expect_fail(base, "audit", NULL, 1, "no migrations");

	/* A valid request reaches the network and reports the refusal. */
	long_name[63] = '\0';
	expect_fail(base, long_name, ok, 2, "connect:");
	expect_fail(base, "_audit_2", NULL, 0, "connect:");

	event_base_free(base);
	return 0;
}
