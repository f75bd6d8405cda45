/*
 * sw_store: PostgreSQL for Sagewai services through libpq's asynchronous
 * API on a libevent loop.
 *
 * A store holds one connection (sw_store_new) or a pool of them
 * (sw_store_new_pool). Each connection has its own FIFO queue and runs one
 * unit (a statement or a transaction) at a time; a pool runs as many units
 * at once as it has connections, so their commits can share a WAL flush.
 * A unit given with a key (sw_store_query_key, sw_store_tx_key) always goes
 * to the same connection for that key, so units with one key run and
 * complete in the order they were queued; a unit without a key goes to the
 * least loaded connection, and is ordered only with respect to the units
 * queued before it on a one-connection store. A callback that queues the
 * next unit of a chain orders it in every case.
 *
 * A query (or a transaction) interrupted by a lost connection is not
 * reported: the store reconnects with backoff and sends it again, so every
 * statement given to the store must be idempotent (INSERT ... ON CONFLICT,
 * UPDATE with a guard). Callers thus see only the final outcome, and an
 * effect whose callback reported success is committed.
 *
 * IDEMPOTENCE IS REQUIRED, NOT ADVISED. "Connection lost" covers a socket
 * error, CONNECTION_BAD, SQLSTATE class 08 and 57P01/57P02/57P03 (server
 * shutdown, crash, not yet accepting connections). When it strikes, the
 * unit in flight stays at the head of its connection's queue and is resent
 * from its first statement after reconnecting (search_path is set again
 * first, and statements are prepared again).
 * The store cannot know how far the server got: in particular, COMMIT
 * sent and the connection dead before its reply means the transaction may
 * or may not have committed. Resending it is correct only because the
 * statements are idempotent; a non-idempotent statement (a bare INSERT
 * into a table without a key, "n = n + 1") may then apply twice.
 *
 * Any other server error is not retried: it reaches the callback, a
 * failed transaction is rolled back, and the queue carries on.
 *
 * Each async connection uses pipeline mode (libpq >= 14): a transaction is
 * sent as one batch (BEGIN, statements, COMMIT, Sync) in one round trip.
 * Statements go through the extended protocol, so each sql string holds
 * exactly one statement; COPY is not supported. Each connection prepares
 * the SELECT, INSERT, UPDATE, DELETE and WITH statements it sees (up to
 * 256 distinct sql strings per connection, matched by their exact text)
 * and executes them by name afterwards, so the server parses and plans a
 * statement once per connection rather than once per use; this is
 * invisible to callers, except that an sql string should be a constant
 * with $n parameters rather than text with values spliced in, or a list
 * whose length varies (an array parameter instead): once 256 texts filled
 * a connection's cache, the statements it has not seen yet are parsed
 * and planned at each use there (logged once a connection).
 *
 * Hostnames in conninfo are resolved with a blocking getaddrinfo on
 * reconnect: prefer hostaddr= or a literal address where that matters.
 * Put TCP keepalive settings in conninfo to detect a silently vanished
 * server.
 *
 * Each service owns one schema; its migrations are applied at start.
 */
#ifndef SW_STORE_H
#define SW_STORE_H

#include <stddef.h>
#include <event2/event.h>
#include <libpq-fe.h>

struct sw_store;

struct sw_migration {
	int version;	 /* 1, 2, 3 ... strictly increasing */
	const char *sql; /* may hold several statements; runs in one transaction */
};

/* Connect (blocking: at start only), create schema if missing, set
 * search_path to it, and apply the migrations newer than the recorded
 * version, each in its own transaction under an advisory lock so that
 * concurrent starts apply each exactly once. NULL + errstr on failure.
 *
 * schema must match [a-z_][a-z0-9_]* (at most 63 characters); it also
 * keys the lock (pg_advisory_xact_lock(hashtext(schema))). Applied
 * versions are rows of <schema>.schema_migrations(version, applied_at).
 * A migration's sql runs with PQexec inside BEGIN ... COMMIT: it may not
 * COMMIT itself nor use COPY or statements that refuse a transaction
 * block (CREATE INDEX CONCURRENTLY). A failing migration is rolled back,
 * its version stays unrecorded, and errstr reads "migration N: <error>".
 * base is borrowed (it must outlive the store), conninfo is copied, migs
 * is read during the call only. */
struct sw_store *sw_store_new(struct event_base *base, const char *conninfo, const char *schema,
			      const struct sw_migration *migs, size_t nmigs, char *errstr,
			      size_t errlen);
/* The same with npool connections (1..64), all opened at start; the
 * migrations run once, on the first. */
struct sw_store *sw_store_new_pool(struct event_base *base, const char *conninfo,
				   const char *schema, const struct sw_migration *migs,
				   size_t nmigs, size_t npool, char *errstr, size_t errlen);

/* Close the connections and drop queued units WITHOUT calling their
 * callbacks (wait for sw_store_pending() == 0 for a clean stop). Never
 * from a store callback. */
void sw_store_destroy(struct sw_store *s);

/* Result callback: res is valid only during the call (NULL when err is
 * set); err is a server error message for a failed statement, formatted
 * "<SQLSTATE>: <message>[ (<detail>)]" (e.g. "23505: duplicate key ...")
 * so callers can test the code with strncmp(err, "23505", 5). Callbacks
 * may queue further queries. */
typedef void (*sw_store_cb)(PGresult *res, const char *err, void *opaque);

/* Queue a parameterised statement (text parameters, values may be NULL
 * for SQL NULL; copied). cb may be NULL. 0, or -1 on bad arguments (no
 * sql, nparams outside 0..65535) or out of memory. Sent at once when the
 * store is idle and connected, else when its turn comes. */
int sw_store_query(struct sw_store *s, const char *sql, int nparams, const char *const *params,
		   sw_store_cb cb, void *opaque);

/* Queue a transaction: BEGIN, each statement, COMMIT, sent as one unit and
 * retried as one unit after reconnect. cb gets the last statement's result,
 * only once COMMIT succeeded; an error in any statement or in COMMIT itself
 * (deferred constraint, serialization failure) reaches cb after ROLLBACK.
 * n >= 1; -1 as for sw_store_query. */
struct sw_store_stmt {
	const char *sql;
	int nparams;
	const char *const *params;
};
int sw_store_tx(struct sw_store *s, const struct sw_store_stmt *stmts, size_t n, sw_store_cb cb,
		void *opaque);

/* The same, routed by key (a NUL-terminated string, e.g. a run id; NULL
 * means no key): every unit with an equal key goes to the same connection
 * and so runs and completes in queue order with the others of its key. */
int sw_store_query_key(struct sw_store *s, const char *key, const char *sql, int nparams,
		       const char *const *params, sw_store_cb cb, void *opaque);
int sw_store_tx_key(struct sw_store *s, const char *key, const struct sw_store_stmt *stmts,
		    size_t n, sw_store_cb cb, void *opaque);

/* A transaction (key as for sw_store_tx_key, may be NULL) whose chosen
 * statements' own results are wanted too: each[i].cb gets the result of
 * statement each[i].stmt (with err NULL), after COMMIT succeeded and just
 * before cb; when the transaction fails, only cb is called (with err).
 * -1 as for sw_store_tx, or when an each[i].stmt is not below n or has no
 * cb. */
struct sw_store_each {
	size_t stmt;
	sw_store_cb cb;
	void *opaque;
};
int sw_store_tx_each(struct sw_store *s, const char *key, const struct sw_store_stmt *stmts,
		     size_t n, const struct sw_store_each *each, size_t neach, sw_store_cb cb,
		     void *opaque);

/* PostgreSQL array literals, for a statement that takes many rows at once
 * as arrays (unnest): every element is double-quoted with '"' and '\'
 * escaped, a NULL element is SQL NULL. sw_store_array_elem appends one
 * element to the literal in b (first: no comma before it; the braces are
 * the caller's); sw_store_array makes the literal of n strings, malloc'd
 * (NULL when out of memory). */
struct sw_buf;
void sw_store_array_elem(struct sw_buf *b, const char *v, int first);
char *sw_store_array(const char *const *v, size_t n);

/* Queries queued or in flight, on all connections. */
size_t sw_store_pending(const struct sw_store *s);
/* 1 when every connection is connected (idle or working), 0 while any of
 * them is reconnecting. */
int sw_store_connected(const struct sw_store *s);
/* Times a connection of the store reconnected, summed (metrics, tests). */
unsigned long sw_store_reconnects(const struct sw_store *s);
/* Connections of the store. */
size_t sw_store_pool_size(const struct sw_store *s);
/* Which of them (0 .. pool size - 1) takes the units of key: keys with
 * the same connection may share one unit and stay in order with each. */
size_t sw_store_key_conn(const struct sw_store *s, const char *key);

/* Run one statement synchronously (start-up, tools, tests; never from an
 * event callback). Returns a PGresult the caller clears, or NULL + errstr.
 * Uses a second, blocking connection of the store's own (opened at first
 * use, search_path set), so it is not ordered with the async queue and
 * sees only what is committed. With nparams == 0 sql may hold several
 * statements (the last one's result is returned). A connection found
 * dead is reopened and the statement run once more (idempotence again). */
PGresult *sw_store_exec_sync(struct sw_store *s, const char *sql, int nparams,
			     const char *const *params, char *errstr, size_t errlen);

#endif
