/*
 * store_int.h: what the files of sw_store share.
 *
 *   store.c     the pool: routing units to connections, the public API
 *   pipeline.c  the batch in flight: sending a unit, reading its results,
 *               the prepared-statement cache
 *   conn.c      connection loss, backoff and reconnect; server errors
 *   sync.c      blocking connections: migrations, sw_store_exec_sync
 */
#ifndef SW_STORE_INT_H
#define SW_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sw_store.h"

#ifndef LIBPQ_HAS_PIPELINING
#error "sw_store needs libpq >= 14 (pipeline mode)"
#endif

#define STORE_SCHEMA_MAX 63 /* NAMEDATALEN - 1 */
#define STORE_MAX_PARAMS 65535
#define STORE_BACKOFF_MIN_MS 50
#define STORE_BACKOFF_MAX_MS 5000
#define STORE_CONNECT_STEP_S 10 /* longest wait for one PQconnectPoll step */
#define STORE_POOL_MAX 64
#define STORE_PREP_MAX 256 /* prepared statements per connection */
#define STORE_PREP_MAX_S "256"

struct store_stmt {
	char *sql;
	int nparams;
	char **params; /* nparams entries; NULL is SQL NULL */
	sw_store_cb cb; /* its own result wanted (sw_store_tx_each), or NULL */
	void *opaque;
	PGresult *res; /* that result, kept until the unit ends */
};

/* A queued unit of work: what is sent as one pipeline batch. */
struct store_unit {
	struct store_unit *next;
	int tx; /* wrap in BEGIN ... COMMIT */
	size_t n;
	struct store_stmt *stmts;
	sw_store_cb cb;
	void *opaque;
};

enum store_state {
	STORE_READY,	  /* connected; the head unit may be in flight */
	STORE_SETUP,	  /* connected; SET search_path in flight */
	STORE_CONNECTING, /* PQconnectPoll in progress */
	STORE_BACKOFF,	  /* waiting for the timer before the next attempt */
};

enum store_phase {
	PHASE_SETUP,	/* SET search_path after a reconnect */
	PHASE_MAIN,	/* the head unit's statements */
	PHASE_ROLLBACK, /* ROLLBACK after a failed transaction */
};

/* A statement prepared (or being prepared) on one connection. */
struct store_prep {
	uint64_t hash;
	char *sql;
	char name[24];
	int ready; /* its Parse answered; 0: sent in the batch in flight */
};

struct sw_store;

/* One connection of the pool and its queue. */
struct store_conn {
	struct sw_store *s;
	PGconn *conn; /* NULL while disconnected */
	enum store_state state;
	struct event *ev_read;	/* persistent, on PQsocket while connected */
	struct event *ev_write; /* persistent, armed while libpq holds unsent output */
	struct event *ev_conn;	/* one PQconnectPoll step */
	struct event *ev_timer; /* backoff before reconnecting */
	unsigned backoff_ms;
	uint64_t rng; /* xorshift state for backoff jitter */
	unsigned long reconnects;

	struct store_unit *head, *tail;
	size_t npending;

	/* The batch in flight. */
	int inflight;
	enum store_phase phase;
	int nsent;     /* queries sent in the batch (Parses included), Sync excluded */
	int rx;	       /* index of the query whose results are being read */
	int last;      /* index of the query whose result the callback gets */
	int decided;   /* outcome known: finish with err rather than resend */
	PGresult *res; /* result of query `last`, kept until the Sync */
	char *err;     /* first error of the batch (malloc'd) */
	int *items;    /* per query of the batch: the preps index its Parse
			* makes; -1 for an Execute of no statement of the unit
			* (BEGIN, COMMIT); -2 - i for the Execute of the
			* unit's statement i */
	size_t cap_items;

	struct store_prep *preps; /* STORE_PREP_MAX slots */
	size_t nprep;
	int prep_full_said;	/* the cache-full warning was logged */
	unsigned long prep_seq; /* names: sw_<seq>, never reused on a connection */
};

struct sw_store {
	struct event_base *base;
	char *conninfo;
	char schema[STORE_SCHEMA_MAX + 1];
	char set_path[STORE_SCHEMA_MAX + 32]; /* SET search_path TO "schema" */
	PGconn *sync_conn;		      /* sw_store_exec_sync's, opened lazily */
	struct store_conn *conns;
	size_t nconns;
	size_t npending; /* over all connections */
	size_t rr;	 /* where the next least-loaded search starts */
};

/* store.c */

void store_unit_free(struct store_unit *u);
/* FNV-1a, 64 bits: key routing and the prepared-statement cache. */
uint64_t store_hash(const char *p);

/* pipeline.c */

/* Forget the prepared entries whose Parse did not answer (the batch is
 * over), or every entry (all != 0: the session is gone). */
void store_prep_sweep(struct store_conn *c, int all);
/* Forget the batch in flight (its result and error included). */
void store_batch_reset(struct store_conn *c);
/* Pop the head unit and report its outcome. The callback may queue more. */
void store_finish(struct store_conn *c);
/* Send the head unit when the connection is ready and idle. */
void store_pump(struct store_conn *c);
/* Send one unprepared statement as a batch of its own; 0 or -1 (lost). */
int store_send_alone(struct store_conn *c, const char *sql);
/* Read every result libpq has complete, in order. */
void store_drain(struct store_conn *c);
void store_read_cb(evutil_socket_t fd, short what, void *arg);
void store_write_cb(evutil_socket_t fd, short what, void *arg);

/* conn.c */

void store_notice(void *arg, const char *msg);
/* Strip trailing newlines and spaces in place. */
void store_trim(char *p);
/* "<SQLSTATE>: <message>[ (<detail>)]" from a failed result, or the
 * connection's message; store_errdup returns it malloc'd (NULL: no memory). */
void store_errfmt(char *buf, size_t len, const PGresult *r, const PGconn *c);
char *store_errdup(const PGresult *r, const PGconn *c);
/* 1 when a failed result means the connection is gone or going. */
int store_conn_error(const PGresult *r, const PGconn *c);
/* Free the connection and its events; the prepared cache goes with it. */
void store_close(struct store_conn *c);
/* The connection is gone: close it, keep or finish the head unit, and
 * schedule a reconnect. Always -1. */
int store_lost(struct store_conn *c);
/* Make a fresh connection the async one (non-blocking, pipeline mode,
 * watched by the loop); 0 or -1. */
int store_attach(struct store_conn *c);
/* The backoff timer: start a reconnect. */
void store_timer_cb(evutil_socket_t fd, short what, void *arg);

/* sync.c */

/* A blocking connection, search_path set when set_path is not NULL;
 * NULL + errstr. */
PGconn *store_connect_sync(const char *conninfo, const char *set_path, char *errstr,
			   size_t errlen);
/* Create the schema and apply the migrations not yet recorded; 0, or -1
 * + errstr ("migration N: <error>"). */
int store_migrate(struct sw_store *s, PGconn *c, const struct sw_migration *migs, size_t nmigs,
		  char *errstr, size_t errlen);

#endif
