/*
 * test_store_pool: a store of several connections against a real
 * PostgreSQL.
 *
 *  1. units with a key run and complete in queue order per key, always on
 *     the same connection (backend pid), while different keys spread over
 *     the pool;
 *  2. units without a key go to the least loaded connection: as many
 *     queued at once as the pool is large land on distinct backends;
 *  3. statements are prepared once per connection and executed by name; a
 *     statement whose Parse was skipped (it followed an error in its
 *     transaction) is prepared again on its next use; a statement that
 *     does not parse fails every time with its own error.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store_test.h"

#define POOL 4
#define NKEYS 12
#define PER_KEY 60

static int g_done;
static int g_left;

struct keyed {
	int key;
	int i;
};

static int g_next[NKEYS];     /* next i expected per key */
static char g_pid[NKEYS][16]; /* backend of each key */

static void keyed_cb(PGresult *res, const char *err, void *opaque)
{
	struct keyed *k = opaque;
	const char *pid;

	SW_CHECKF(err == NULL, "key %d #%d: %s", k->key, k->i, err);
	SW_CHECK(res != NULL && PQntuples(res) == 1);
	SW_CHECKF(k->i == g_next[k->key], "key %d: #%d completed as #%d", k->key, k->i,
		  g_next[k->key]);
	g_next[k->key]++;
	pid = PQgetvalue(res, 0, 0);
	if (g_pid[k->key][0] == '\0')
		snprintf(g_pid[k->key], sizeof(g_pid[k->key]), "%s", pid);
	SW_CHECKF(strcmp(pid, g_pid[k->key]) == 0, "key %d moved from backend %s to %s", k->key,
		  g_pid[k->key], pid);
	if (--g_left == 0)
		g_done = 1;
}

static void test_keyed(struct event_base *base, struct sw_store *s)
{
	static struct keyed ks[NKEYS * PER_KEY];
	char key[16], kbuf[NKEYS * PER_KEY][16], ibuf[NKEYS * PER_KEY][16];
	int n = 0, i, k, distinct = 0, j;

	g_done = 0;
	g_left = NKEYS * PER_KEY;
	/* interleaved: key 0 #0, key 1 #0, ..., key 0 #1, ... */
	for (i = 0; i < PER_KEY; i++) {
		for (k = 0; k < NKEYS; k++, n++) {
			const char *p[2] = {kbuf[n], ibuf[n]};

			snprintf(key, sizeof(key), "run-%d", k);
			snprintf(kbuf[n], sizeof(kbuf[n]), "%d", k);
			snprintf(ibuf[n], sizeof(ibuf[n]), "%d", i);
			ks[n] = (struct keyed){k, i};
			if (i % 3 == 1) {
				struct sw_store_stmt st[] = {
				    {"INSERT INTO ev (k, i) VALUES ($1::int, $2::int)", 2, p},
				    {"SELECT pg_backend_pid()", 0, NULL},
				};

				SW_CHECK(sw_store_tx_key(s, key, st, 2, keyed_cb, &ks[n]) == 0);
			} else {
				SW_CHECK(sw_store_query_key(
					     s, key,
					     "INSERT INTO ev (k, i) VALUES ($1::int, $2::int)"
					     " RETURNING pg_backend_pid()",
					     2, p, keyed_cb, &ks[n]) == 0);
			}
		}
	}
	SW_CHECK(sw_store_pending(s) == (size_t)n);
	store_test_run(base, &g_done, 120);
	SW_CHECK(sw_store_pending(s) == 0);
	for (k = 0; k < NKEYS; k++) {
		SW_CHECK(g_next[k] == PER_KEY);
		for (j = 0; j < k && strcmp(g_pid[j], g_pid[k]) != 0; j++)
			;
		distinct += j == k;
	}
	SW_CHECKF(distinct >= 2, "all %d keys went to one connection", NKEYS);
	/* the statements ran in queue order per key, not only their callbacks */
	store_test_expect(s, "SELECT count(*) FROM ev", "720");
	store_test_expect(s,
			  "SELECT bool_and(i = prev + 1) FROM (SELECT i, lag(i, 1, -1)"
			  " OVER (PARTITION BY k ORDER BY n) AS prev FROM ev) x",
			  "t");
}

static char g_spread[POOL][16];
static int g_nspread;

static void spread_cb(PGresult *res, const char *err, void *opaque)
{
	(void)opaque;
	SW_CHECKF(err == NULL, "%s", err);
	SW_CHECK(g_nspread < POOL);
	snprintf(g_spread[g_nspread++], sizeof(g_spread[0]), "%s", PQgetvalue(res, 0, 0));
	if (g_nspread == POOL)
		g_done = 1;
}

static void test_spread(struct event_base *base, struct sw_store *s)
{
	int i, j;

	g_done = 0;
	for (i = 0; i < POOL; i++)
		SW_CHECK(sw_store_query(s, "SELECT pg_backend_pid(), pg_sleep(0.01)", 0, NULL,
					spread_cb, NULL) == 0);
	store_test_run(base, &g_done, 120);
	for (i = 0; i < POOL; i++)
		for (j = 0; j < i; j++)
			SW_CHECKF(strcmp(g_spread[i], g_spread[j]) != 0,
				  "two unkeyed units queued together shared backend %s",
				  g_spread[i]);
}

struct expect {
	const char *val; /* first cell wanted, or NULL */
	const char *err; /* SQLSTATE wanted, or NULL */
	int hit;
};

static int g_seq;

static void expect_cb(PGresult *res, const char *err, void *opaque)
{
	struct expect *e = opaque;

	e->hit = ++g_seq;
	if (e->err != NULL) {
		SW_CHECKF(err != NULL && strncmp(err, e->err, 5) == 0, "want %s, got %s", e->err,
			  err ? err : "success");
	} else {
		SW_CHECKF(err == NULL, "%s", err);
		if (e->val != NULL)
			SW_CHECKF(PQntuples(res) == 1 &&
				      strcmp(PQgetvalue(res, 0, 0), e->val) == 0,
				  "got '%s', want '%s'",
				  PQntuples(res) ? PQgetvalue(res, 0, 0) : "(no row)", e->val);
	}
	if (--g_left == 0)
		g_done = 1;
}

static void test_prepared(struct event_base *base, struct sw_store *s)
{
	static struct expect ex[16];
	const char *one[1] = {"1"}, *six[1] = {"6"};
	struct sw_store_stmt aborted[] = {
	    {"SELECT 1/0", 0, NULL},
	    {"SELECT $1::int * 7", 1, six},
	};
	int n = 0, i;

#define KQ(sql, np, p, v, e)                                                                      \
	do {                                                                                      \
		ex[n] = (struct expect){(v), (e), 0};                                             \
		SW_CHECK(sw_store_query_key(s, "prep", sql, np, p, expect_cb, &ex[n]) == 0);      \
		n++;                                                                              \
	} while (0)

	g_done = 0;
	g_seq = 0;
	KQ("SELECT $1::int + 1", 1, one, "2", NULL);
	KQ("SELECT $1::int + 1", 1, one, "2", NULL);
	KQ("SELECT $1::int + 1", 1, one, "2", NULL);
	KQ("SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1'", 0,
	   NULL, "1", NULL);
	ex[n] = (struct expect){NULL, "22012", 0};
	SW_CHECK(sw_store_tx_key(s, "prep", aborted, 2, expect_cb, &ex[n]) == 0);
	n++;
	KQ("SELECT $1::int * 7", 1, six, "42", NULL);
	KQ("SELECT $1::int * 7", 1, six, "42", NULL);
	KQ("SELECT 1 +", 0, NULL, NULL, "42601"); /* its Parse fails, twice */
	KQ("SELECT 1 +", 0, NULL, NULL, "42601");
	KQ("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'sw\\_%'"
	   " AND statement IN ('SELECT $1::int * 7', 'SELECT 1 +')",
	   0, NULL, "1", NULL);
	g_left = n;
	store_test_run(base, &g_done, 120);
	for (i = 0; i < n; i++)
		SW_CHECKF(ex[i].hit == i + 1, "unit %d completed as #%d", i, ex[i].hit);
#undef KQ
}

int main(void)
{
	const char *dsn = store_test_dsn();
	struct event_base *base = event_base_new();
	struct sw_migration migs[] = {
	    {1, "CREATE TABLE ev (n bigserial PRIMARY KEY, k int NOT NULL, i int NOT NULL)"},
	};
	struct sw_store *s;
	char schema[64], err[512];

	SW_CHECK(base != NULL);
	snprintf(schema, sizeof(schema), "t_pool_%d", (int)getpid());
	store_test_drop(dsn, schema);
	SW_CHECK(sw_store_new_pool(base, dsn, schema, migs, 1, 0, err, sizeof(err)) == NULL);
	SW_CHECK(sw_store_new_pool(base, dsn, schema, migs, 1, 65, err, sizeof(err)) == NULL);
	s = sw_store_new_pool(base, dsn, schema, migs, 1, POOL, err, sizeof(err));
	SW_CHECKF(s != NULL, "%s", err);
	SW_CHECK(sw_store_pool_size(s) == POOL);
	SW_CHECK(sw_store_connected(s) == 1);
	/* migrations ran once */
	store_test_expect(s, "SELECT count(*) FROM schema_migrations", "1");

	test_keyed(base, s);
	test_spread(base, s);
	test_prepared(base, s);
	SW_CHECK(sw_store_reconnects(s) == 0);

	sw_store_destroy(s);
	event_base_free(base);
	store_test_drop(dsn, schema);
	return 0;
}
