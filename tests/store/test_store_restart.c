/*
 * test_store_restart: PostgreSQL restarts while the store is busy, and no
 * queued or in-flight effect is lost.
 *
 * A feeder timer keeps queueing idempotent inserts (plain statements and
 * two-statement transactions); once some have completed it forks a child
 * running the restart command (fast stop + start, same port), and keeps
 * feeding while the child runs and for a while after it exited. Then it
 * waits for every callback and checks: each succeeded, once, in queue
 * order; every row exists exactly once; the store did reconnect.
 *
 * The restart command is $SW_PG_RESTART_CMD, else
 * "$SW_SOURCE_DIR/tests/harness/harness pg-restart $SW_HARNESS_DIR".
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_test.h"

#define BATCH 25	  /* units queued per feeder tick */
#define MIN_TOTAL 3000	  /* at least this many units in all */
#define AFTER 500	  /* units queued after the restart command finished */
#define START_AT 200	  /* completed units before the restart begins */
#define MAX_BACKLOG 10000 /* units queued while PostgreSQL is down */
#define MAX_TOTAL 200000
#define NKEYS 16

struct feed {
	struct sw_store *s;
	struct event *ev;
	char cmd[1024];
	pid_t child;
	int child_status;
	int child_done;
	int queued;	 /* units queued */
	int after;	 /* units queued after the child exited */
	int completed;	 /* callbacks seen */
	int ntx;	 /* of which transactions */
	int stopped;	 /* feeder finished */
	int done;	 /* all callbacks seen, feeder finished */
	int *ids;	 /* callback opaque: the unit's number */
	int pool;	 /* connections; > 1: keyed units */
	int last[NKEYS]; /* pool: last unit completed per key */
};

static struct feed F;

static void unit_cb(PGresult *res, const char *err, void *opaque)
{
	int id = *(int *)opaque;

	SW_CHECKF(err == NULL, "unit %d failed: %s", id, err);
	SW_CHECK(res != NULL);
	if (F.pool > 1) {
		SW_CHECKF(id > F.last[id % NKEYS], "unit %d of key %d completed after unit %d", id,
			  id % NKEYS, F.last[id % NKEYS]);
		SW_CHECKF(id == F.last[id % NKEYS] + NKEYS,
			  "a unit of key %d before %d is missing", id % NKEYS, id);
		F.last[id % NKEYS] = id;
	} else {
		SW_CHECKF(id == F.completed, "unit %d completed as #%d", id, F.completed);
	}
	F.completed++;
	if (F.stopped && F.completed == F.queued)
		F.done = 1;
}

static void queue_one(void)
{
	char idbuf[16], key[16];
	const char *p[1] = {idbuf};
	const char *k = F.pool > 1 ? key : NULL;
	int id = F.queued;

	SW_CHECK(id < MAX_TOTAL);
	F.ids[id] = id;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	snprintf(key, sizeof(key), "k%d", id % NKEYS);
	/* r has no unique key: only idempotent statements keep it at one row per id */
	if (id % 3 == 0) {
		struct sw_store_stmt st[] = {
		    {"INSERT INTO r (id) SELECT $1::int "
		     "WHERE NOT EXISTS (SELECT 1 FROM r WHERE id = $1::int)",
		     1, p},
		    {"INSERT INTO r_tx (id) VALUES ($1::int) ON CONFLICT DO NOTHING", 1, p},
		};

		SW_CHECK(sw_store_tx_key(F.s, k, st, 2, unit_cb, &F.ids[id]) == 0);
		F.ntx++;
	} else {
		SW_CHECK(
		    sw_store_query_key(F.s, k,
				       "INSERT INTO r (id) SELECT $1::int "
				       "WHERE NOT EXISTS (SELECT 1 FROM r WHERE id = $1::int)",
				       1, p, unit_cb, &F.ids[id]) == 0);
	}
	F.queued++;
}

static void start_restart(void)
{
	F.child = fork();
	SW_CHECK(F.child >= 0);
	if (F.child == 0) {
		execl("/bin/sh", "sh", "-c", F.cmd, (char *)NULL);
		_exit(127);
	}
}

static void feed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = {0, 5000};
	int i;

	(void)fd;
	(void)what;
	(void)arg;
	if (F.child == 0 && F.completed >= START_AT)
		start_restart();
	if (F.child > 0 && !F.child_done && waitpid(F.child, &F.child_status, WNOHANG) == F.child)
		F.child_done = 1;
	/* Keep the queue short of runaway while connected; during the
	 * outage it grows, which is the point. */
	if (sw_store_pending(F.s) < 4 * BATCH ||
	    (!sw_store_connected(F.s) && sw_store_pending(F.s) < MAX_BACKLOG)) {
		for (i = 0; i < BATCH; i++) {
			queue_one();
			if (F.child_done)
				F.after++;
		}
	}
	if (F.child_done && F.after >= AFTER && F.queued >= MIN_TOTAL) {
		F.stopped = 1;
		if (F.completed == F.queued)
			F.done = 1;
		return;
	}
	evtimer_add(F.ev, &tv);
}

int main(int argc, char **argv)
{
	const char *dsn = store_test_dsn();
	const char *cmd = getenv("SW_PG_RESTART_CMD");
	struct event_base *base = event_base_new();
	struct sw_migration migs[] = {
	    {1, "CREATE TABLE r (id int NOT NULL); CREATE INDEX ON r (id);"
		"CREATE TABLE r_tx (id int PRIMARY KEY)"},
	};
	struct timeval now = {0, 0};
	char schema[64], err[512], want[32];
	int i;

	SW_CHECK(base != NULL);
	F.pool = argc > 1 ? atoi(argv[1]) : 1;
	SW_CHECKF(F.pool >= 1 && F.pool <= 64, "pool size %s", argv[1]);
	for (i = 0; i < NKEYS; i++)
		F.last[i] = i - NKEYS;
	if (cmd != NULL && *cmd != '\0') {
		snprintf(F.cmd, sizeof(F.cmd), "%s", cmd);
	} else {
		const char *src = getenv("SW_SOURCE_DIR"), *dir = getenv("SW_HARNESS_DIR");

		SW_CHECKF(src != NULL && dir != NULL, "SW_SOURCE_DIR / SW_HARNESS_DIR not set");
		snprintf(F.cmd, sizeof(F.cmd), "'%s/tests/harness/harness' pg-restart '%s'", src,
			 dir);
	}
	F.ids = calloc(MAX_TOTAL, sizeof(int));
	SW_CHECK(F.ids != NULL);

	snprintf(schema, sizeof(schema), "t_restart_%d", (int)getpid());
	store_test_drop(dsn, schema);
	F.s = sw_store_new_pool(base, dsn, schema, migs, 1, (size_t)F.pool, err, sizeof(err));
	SW_CHECKF(F.s != NULL, "%s", err);

	F.ev = evtimer_new(base, feed_cb, NULL);
	evtimer_add(F.ev, &now);
	store_test_run(base, &F.done, 300);

	SW_CHECKF(WIFEXITED(F.child_status) && WEXITSTATUS(F.child_status) == 0,
		  "restart command failed: %s", F.cmd);
	SW_CHECK(F.completed == F.queued);
	SW_CHECK(sw_store_pending(F.s) == 0);
	SW_CHECKF(sw_store_reconnects(F.s) >= (unsigned long)F.pool,
		  "%lu reconnects of %d connections: the restart went unnoticed",
		  sw_store_reconnects(F.s), F.pool);
	fprintf(stderr, "restart: %d units (%d tx), %lu reconnects\n", F.queued, F.ntx,
		sw_store_reconnects(F.s));

	snprintf(want, sizeof(want), "%d", F.queued);
	store_test_expect(F.s, "SELECT count(*) FROM r", want);
	store_test_expect(F.s, "SELECT count(DISTINCT id) FROM r", want);
	store_test_expect(F.s, "SELECT min(id) FROM r", "0");
	snprintf(want, sizeof(want), "%d", F.queued - 1);
	store_test_expect(F.s, "SELECT max(id) FROM r", want);
	snprintf(want, sizeof(want), "%d", F.ntx);
	store_test_expect(F.s, "SELECT count(*) FROM r_tx", want);

	event_free(F.ev);
	sw_store_destroy(F.s);
	event_base_free(base);
	store_test_drop(dsn, schema);
	free(F.ids);
	return 0;
}
