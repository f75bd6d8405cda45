/*
 * test_store_async: the queue against a real PostgreSQL.
 *
 *  1. many queries and transactions complete in queue order, each with
 *     its own result;
 *  2. server errors (statement, mid-transaction, at COMMIT) reach the
 *     callback as "<SQLSTATE>: ...", a failed transaction leaves nothing
 *     behind, and the store keeps working; callbacks may queue more;
 *  3. the backend is terminated while a statement is in flight (it waits
 *     on a lock the test holds): the store reconnects, sets search_path
 *     again (statements use unqualified names) and resends it, so the
 *     effect happens once and its callback fires once, with success;
 *  4. sw_store_tx_each: the chosen statements' own results reach their
 *     callbacks, in statement order, before the unit's; a transaction that
 *     fails calls none of them, only the unit's with its error.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store_test.h"

struct expect {
	int seq;         /* position among the callbacks */
	const char *val; /* first cell wanted (NULL: don't look) */
	const char *err; /* SQLSTATE prefix wanted, NULL for success */
	int hits;
};

static int g_next;  /* callbacks seen */
static int g_total; /* callbacks wanted */
static int g_done;

static void expect_cb(PGresult *res, const char *err, void *opaque)
{
	struct expect *e = opaque;

	SW_CHECKF(e->seq == g_next, "callback #%d came as #%d", e->seq, g_next);
	g_next++;
	e->hits++;
	if (e->err != NULL) {
		SW_CHECKF(err != NULL && strncmp(err, e->err, strlen(e->err)) == 0,
			  "#%d: want error %s, got %s", e->seq, e->err, err ? err : "success");
		SW_CHECK(res == NULL);
	} else {
		SW_CHECKF(err == NULL, "#%d: unexpected error: %s", e->seq, err);
		SW_CHECK(res != NULL);
		if (e->val != NULL) {
			SW_CHECKF(PQntuples(res) == 1, "#%d: %d rows", e->seq, PQntuples(res));
			SW_CHECKF(strcmp(PQgetvalue(res, 0, 0), e->val) == 0,
				  "#%d: got '%s', want '%s'", e->seq, PQgetvalue(res, 0, 0),
				  e->val);
		}
	}
	if (g_next == g_total)
		g_done = 1;
}

static void reset(int total)
{
	g_next = 0;
	g_total = total;
	g_done = 0;
}

/* ---- 1 ---------------------------------------------------------------- */

#define NORDER 400

static void test_order(struct event_base *base, struct sw_store *s)
{
	static struct expect ex[NORDER];
	static char vals[NORDER][16], args[NORDER][16];
	int i;

	reset(NORDER);
	for (i = 0; i < NORDER; i++) {
		const char *p[1] = {args[i]};

		snprintf(args[i], sizeof(args[i]), "%d", i);
		snprintf(vals[i], sizeof(vals[i]), "%d", 2 * i);
		ex[i] = (struct expect){.seq = i, .val = vals[i]};
		if (i % 7 == 3) {
			struct sw_store_stmt st[] = {
				{"INSERT INTO seen (i) VALUES ($1::int)", 1, p},
				{"SELECT $1::int * 2", 1, p},
			};

			SW_CHECK(sw_store_tx(s, st, 2, expect_cb, &ex[i]) == 0);
		} else {
			SW_CHECK(sw_store_query(s, "SELECT $1::int * 2", 1, p, expect_cb,
						&ex[i]) == 0);
		}
	}
	SW_CHECKF(sw_store_pending(s) == NORDER, "pending %zu", sw_store_pending(s));
	store_test_run(base, &g_done, 120);
	SW_CHECK(sw_store_pending(s) == 0);
	for (i = 0; i < NORDER; i++)
		SW_CHECK(ex[i].hits == 1);
	/* statements ran in queue order too, not only their callbacks */
	store_test_expect(s, "SELECT count(*) FROM seen", "57");
	store_test_expect(s, "SELECT bool_and(i > prev) FROM (SELECT i, lag(i, 1, -1) "
			     "OVER (ORDER BY n) AS prev FROM seen) x", "t");
}

/* ---- 2 ---------------------------------------------------------------- */

static struct expect chained;

static void chain_cb(PGresult *res, const char *err, void *opaque)
{
	struct sw_store *s = opaque;

	SW_CHECKF(err == NULL, "%s", err);
	SW_CHECK(strcmp(PQgetvalue(res, 0, 0), "first") == 0);
	g_next++;
	/* queue from inside a callback */
	chained = (struct expect){.seq = g_next, .val = "chained"};
	SW_CHECK(sw_store_query(s, "SELECT 'chained'", 0, NULL, expect_cb, &chained) == 0);
}

static void test_errors(struct event_base *base, struct sw_store *s)
{
	static struct expect ex[16];
	const char *nul[1] = {NULL};
	const char *two[1] = {"2"};
	int n = 0;

	struct sw_store_stmt ok_tx[] = {
		{"INSERT INTO acct VALUES (1, 10) ON CONFLICT DO NOTHING", 0, NULL},
		{"SELECT n FROM acct WHERE id = 1", 0, NULL},
	};
	struct sw_store_stmt bad_tx[] = {
		{"INSERT INTO acct VALUES ($1::int, 20)", 1, two},
		{"SELECT 1/0", 0, NULL},
		{"INSERT INTO acct VALUES (4, 40)", 0, NULL},
	};
	struct sw_store_stmt bad_commit[] = {
		{"INSERT INTO d VALUES (1)", 0, NULL},
		{"INSERT INTO d VALUES (1) RETURNING id", 0, NULL},
	};

#define Q(sql, np, p, v, e)                                                                 \
	do {                                                                                \
		ex[n] = (struct expect){.seq = n, .val = (v), .err = (e)};                  \
		SW_CHECK(sw_store_query(s, sql, np, p, expect_cb, &ex[n]) == 0);            \
		n++;                                                                        \
	} while (0)
#define TX(st, v, e)                                                                        \
	do {                                                                                \
		ex[n] = (struct expect){.seq = n, .val = (v), .err = (e)};                  \
		SW_CHECK(sw_store_tx(s, st, sizeof(st) / sizeof(st[0]), expect_cb, &ex[n]) == \
			 0);                                                                \
		n++;                                                                        \
	} while (0)

	reset(0);
	Q("SELECT 1/0", 0, NULL, NULL, "22012");
	Q("SELECT 'ok'", 0, NULL, "ok", NULL);
	Q("SELEKT 1", 0, NULL, NULL, "42601");
	TX(bad_tx, NULL, "22012");
	TX(ok_tx, "10", NULL); /* proves the failed block was rolled back */
	TX(bad_commit, NULL, "23505");
	Q("SELECT count(*) FROM acct WHERE id IN (2, 4)", 0, NULL, "0", NULL);
	Q("SELECT count(*) FROM d", 0, NULL, "0", NULL);
	Q("SELECT $1::text IS NULL", 1, nul, "t", NULL);
	SW_CHECK(sw_store_query(s, "INSERT INTO acct VALUES (3, 30)", 0, NULL, NULL, NULL) == 0);
	Q("SELECT n FROM acct WHERE id = 3", 0, NULL, "30", NULL);
	g_total = n;
	store_test_run(base, &g_done, 120);
	SW_CHECK(g_next == n);

	/* a callback that queues */
	reset(2);
	SW_CHECK(sw_store_query(s, "SELECT 'first'", 0, NULL, chain_cb, s) == 0);
	store_test_run(base, &g_done, 120);
	SW_CHECK(chained.hits == 1);

	/* refused at the door */
	SW_CHECK(sw_store_query(s, NULL, 0, NULL, NULL, NULL) == -1);
	SW_CHECK(sw_store_query(s, "SELECT 1", -1, NULL, NULL, NULL) == -1);
	SW_CHECK(sw_store_query(s, "SELECT $1", 1, NULL, NULL, NULL) == -1);
	SW_CHECK(sw_store_query(s, "SELECT 1", 70000, nul, NULL, NULL) == -1);
	SW_CHECK(sw_store_tx(s, ok_tx, 0, NULL, NULL) == -1);
	SW_CHECK(sw_store_pending(s) == 0);
	SW_CHECK(sw_store_connected(s) == 1);
	SW_CHECK(sw_store_reconnects(s) == 0);
#undef Q
#undef TX
}

/* ---- 4 ---------------------------------------------------------------- */

static void test_each(struct event_base *base, struct sw_store *s)
{
	static struct expect ex[8];
	struct sw_store_stmt ok[] = {
	    {"SELECT 'a'", 0, NULL},
	    {"INSERT INTO acct VALUES (5, 50) ON CONFLICT DO NOTHING", 0, NULL},
	    {"SELECT 'b'", 0, NULL},
	    {"SELECT n FROM acct WHERE id = 5", 0, NULL},
	};
	struct sw_store_stmt bad[] = {
	    {"SELECT 'x'", 0, NULL},
	    {"SELECT 1/0", 0, NULL},
	};
	struct sw_store_each ok_each[] = {
	    {2, expect_cb, &ex[1]},
	    {0, expect_cb, &ex[0]},
	    {3, expect_cb, &ex[2]},
	};
	struct sw_store_each bad_each[] = {{0, expect_cb, &ex[5]}};
	struct sw_store_each out_of_range[] = {{2, expect_cb, &ex[6]}};
	struct sw_store_each no_cb[] = {{0, NULL, NULL}};

	reset(5);
	ex[0] = (struct expect){.seq = 0, .val = "a"};
	ex[1] = (struct expect){.seq = 1, .val = "b"};
	ex[2] = (struct expect){.seq = 2, .val = "50"};
	ex[3] = (struct expect){.seq = 3, .val = "50"};
	ex[4] = (struct expect){.seq = 4, .err = "22012"};
	ex[5] = (struct expect){.seq = 99}; /* must not be called */
	SW_CHECK(sw_store_tx_each(s, NULL, ok, 4, ok_each, 3, expect_cb, &ex[3]) == 0);
	SW_CHECK(sw_store_tx_each(s, "k", bad, 2, bad_each, 1, expect_cb, &ex[4]) == 0);
	store_test_run(base, &g_done, 120);
	SW_CHECK(g_next == 5);
	SW_CHECK(ex[5].hits == 0);
	SW_CHECK(sw_store_tx_each(s, NULL, bad, 2, out_of_range, 1, expect_cb, &ex[6]) == -1);
	SW_CHECK(sw_store_tx_each(s, NULL, bad, 2, no_cb, 1, expect_cb, &ex[6]) == -1);
	SW_CHECK(sw_store_tx_each(s, NULL, bad, 2, NULL, 1, expect_cb, &ex[6]) == -1);
	SW_CHECK(sw_store_pending(s) == 0);
}

/* ---- the cache of prepared statements ---------------------------------- */

/* More statement texts than the cache holds: each still answers, the
 * cache stops at its size (the rest go unprepared, planned at each use;
 * the store logs that once a connection). A caller that makes texts without bound (the
 * scheduler's outbox INSERT had one per event count) fills it. */
static void test_prep_full(struct event_base *base, struct sw_store *s)
{
	enum { N = 300 };
	static struct expect ex[N + 1];
	static char sql[N][48], val[N][16];
	const char *p[] = {"1"};
	int i;

	reset(N + 1);
	for (i = 0; i < N; i++) {
		snprintf(sql[i], sizeof(sql[i]), "SELECT $1::int + %d", i);
		snprintf(val[i], sizeof(val[i]), "%d", i + 1);
		ex[i] = (struct expect){.seq = i, .val = val[i]};
		SW_CHECK(sw_store_query(s, sql[i], 1, p, expect_cb, &ex[i]) == 0);
	}
	ex[N] = (struct expect){.seq = N, .val = "256"};
	SW_CHECK(sw_store_query(s, "SELECT count(*) FROM pg_prepared_statements", 0, NULL,
				expect_cb, &ex[N]) == 0);
	store_test_run(base, &g_done, 120);
	SW_CHECK(g_next == N + 1);
}

/* ---- 3 ---------------------------------------------------------------- */

struct killer {
	PGconn *ctl;     /* holds the lock; terminates the store's backend */
	struct event *ev;
	int killed;
};

static void killer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct killer *k = arg;
	struct timeval tv = {0, 10000};
	PGresult *r;

	(void)fd;
	(void)what;
	/* the backend our lock blocks (its query text in pg_stat_activity may
	 * still be the previous statement's while it waits in parse analysis) */
	r = PQexec(k->ctl, "SELECT pid FROM pg_stat_activity "
			   "WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))");
	SW_CHECKF(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(k->ctl));
	if (PQntuples(r) == 0) {
		/* the store's statement has not reached the lock yet */
		PQclear(r);
		evtimer_add(k->ev, &tv);
		return;
	}
	{
		const char *p[1] = {PQgetvalue(r, 0, 0)};
		PGresult *t = PQexecParams(k->ctl, "SELECT pg_terminate_backend($1::int, 30000)",
					   1, NULL, p, NULL, NULL, 0);

		SW_CHECKF(PQresultStatus(t) == PGRES_TUPLES_OK &&
				  strcmp(PQgetvalue(t, 0, 0), "t") == 0,
			  "terminate: %s", PQerrorMessage(k->ctl));
		PQclear(t);
	}
	PQclear(r);
	r = PQexec(k->ctl, "COMMIT"); /* release the lock for the resend */
	SW_CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
	PQclear(r);
	k->killed = 1;
}

static void test_terminate(struct event_base *base, struct sw_store *s, const char *dsn,
			   const char *schema)
{
	static struct expect ex[2];
	struct killer k = {0};
	struct timeval tv = {0, 0};
	char sql[128];
	PGresult *r;

	store_test_exec(s, "CREATE TABLE lockt (id int PRIMARY KEY)");
	k.ctl = PQconnectdb(dsn);
	SW_CHECK(PQstatus(k.ctl) == CONNECTION_OK);
	snprintf(sql, sizeof(sql), "BEGIN; LOCK TABLE \"%s\".lockt IN ACCESS EXCLUSIVE MODE",
		 schema);
	r = PQexec(k.ctl, sql);
	SW_CHECKF(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(k.ctl));
	PQclear(r);

	reset(2);
	ex[0] = (struct expect){.seq = 0};
	ex[1] = (struct expect){.seq = 1, .val = "1"};
	SW_CHECK(sw_store_query(s, "INSERT INTO lockt VALUES (1) ON CONFLICT DO NOTHING", 0, NULL,
				expect_cb, &ex[0]) == 0);
	SW_CHECK(sw_store_query(s, "SELECT count(*) FROM lockt", 0, NULL, expect_cb, &ex[1]) ==
		 0);
	k.ev = evtimer_new(base, killer_cb, &k);
	evtimer_add(k.ev, &tv);
	store_test_run(base, &g_done, 120);
	SW_CHECK(k.killed == 1);
	SW_CHECK(ex[0].hits == 1 && ex[1].hits == 1);
	SW_CHECKF(sw_store_reconnects(s) == 1, "reconnects %lu", sw_store_reconnects(s));
	SW_CHECK(sw_store_connected(s) == 1);
	SW_CHECK(sw_store_pending(s) == 0);
	store_test_expect(s, "SELECT count(*) FROM lockt", "1");
	event_free(k.ev);
	PQfinish(k.ctl);
}

int main(void)
{
	const char *dsn = store_test_dsn();
	struct event_base *base = event_base_new();
	struct sw_migration migs[] = {
		{1, "CREATE TABLE seen (n serial PRIMARY KEY, i int NOT NULL);"
		    "CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL);"
		    "CREATE TABLE d (id int, CONSTRAINT d_u UNIQUE (id) "
		    "DEFERRABLE INITIALLY DEFERRED)"},
	};
	struct sw_store *s;
	char schema[64], err[512];

	SW_CHECK(base != NULL);
	snprintf(schema, sizeof(schema), "t_async_%d", (int)getpid());
	store_test_drop(dsn, schema);
	s = sw_store_new(base, dsn, schema, migs, 1, err, sizeof(err));
	SW_CHECKF(s != NULL, "%s", err);
	SW_CHECK(sw_store_connected(s) == 1);

	test_order(base, s);
	test_errors(base, s);
	test_each(base, s);
	test_prep_full(base, s);
	test_terminate(base, s, dsn, schema);

	sw_store_destroy(s);
	event_base_free(base);
	store_test_drop(dsn, schema);
	return 0;
}
