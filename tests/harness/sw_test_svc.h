/*
 * sw_test_svc: what the black-box tests of the services share (library
 * sw_test_svc): a service binary started and stopped, its logs shown when a
 * check fails, the harness's Kafka (clients, end offsets, producing, the
 * dead-letter topic, the events a service publishes), PostgreSQL one-shots
 * and plain HTTP calls to a service on the loopback.
 *
 * Like SW_CHECK, a helper ends the test (exit 1) on anything it cannot
 * report back; what it does report is said above each prototype.
 */
#ifndef SW_TEST_SVC_H
#define SW_TEST_SVC_H

#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <sys/types.h>

#include "sw_events.h"
#include "sw_test.h"

/* ---- sw_test_proc.c: processes, their logs, /proc ----------------------- */

void sw_test_msleep(int ms);

/* One scenario of a test program that runs one per argument. */
struct sw_test_scenario {
	const char *name;
	void (*fn)(void);
};

/* The scenario of table (n of them) that argv[1] names, the process made
 * ready for it (SIGPIPE ignored, libcurl initialised); exits 2 with a
 * usage message naming them all if there is none. */
const struct sw_test_scenario *
sw_test_scenario_pick(int argc, char **argv, const struct sw_test_scenario *table, size_t n);

/* Show the last lines of log (path copied) whenever a SW_REQUIRE fails. */
void sw_test_log_watch(const char *path, int lines);
void sw_test_log_show(void);

/* SW_CHECKF that first shows the watched logs; cond is evaluated once. */
#define SW_REQUIRE(cond, ...)                                                                     \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			sw_test_log_show();                                                       \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
			fprintf(stderr, __VA_ARGS__);                                             \
			fputc('\n', stderr);                                                      \
			exit(1);                                                                  \
		}                                                                                 \
	} while (0)

/* SAGEWAI_KAFKA_CONSUMER_CONFIG for a service under test: a killed
 * member's partitions move after 6 s, not librdkafka's default 45. */
#define SW_TEST_ENV_FAST_REBALANCE                                                                \
	"SAGEWAI_KAFKA_CONSUMER_CONFIG=session.timeout.ms=6000,heartbeat.interval.ms=1000"

/* At exit, kill -9 and reap *pid if it is > 0 then (the variable is read
 * at exit, so it may change meanwhile). */
void sw_test_proc_watch(pid_t *pid);

/*
 * Fork and exec path with argv (NULL-terminated, argv[0] included), its
 * stdout and stderr appended to log. In the child each env entry
 * "NAME=VALUE" is set and an entry "NAME" (no '=') removed, in order, over
 * the test's own environment; SIGPIPE is back to its default. Returns the
 * child's pid.
 */
pid_t sw_test_proc_spawn(const char *path, const char *const *argv, const char *const *env,
			 const char *log);

/* 1 while pid has not exited; reaps it once it has. */
int sw_test_proc_running(pid_t pid);

/* Send sig to *pid and reap it; *pid becomes -1 (nothing if it is < 0).
 * After SIGTERM the process (name, for the message) must have exited 0. */
void sw_test_proc_stop(pid_t *pid, int sig, const char *name);

/* Wait (30 s at most, pid up meanwhile) for a line of log holding started
 * and "http_port":"N"; returns N. */
int sw_test_proc_wait_port(pid_t pid, const char *name, const char *log, const char *started);

/* /proc/<pid>/<file> into buf (NUL-terminated); bytes read, -1 if none. */
ssize_t sw_test_proc_read(pid_t pid, const char *file, char *buf, size_t len);
/* The parent of pid, -1 if unknown. */
pid_t sw_test_proc_ppid(pid_t pid);
/* 1 if pid exists and is not a zombie. */
int sw_test_proc_alive(pid_t pid);
/* pid and every descendant of it into out (pid first, at most max). */
size_t sw_test_proc_descendants(pid_t pid, pid_t *out, size_t max);

/* ---- sw_test_pg.c: PostgreSQL ------------------------------------------- */

/* Run q on a fresh connection to dsn; it must succeed. Caller PQclear()s. */
PGresult *sw_test_pg_exec(const char *dsn, const char *q);
/* The first value of q's first row, as a number. */
long sw_test_pg_long(const char *dsn, const char *q);
/* Likewise, or -1 while the server cannot be reached or q fails. */
long sw_test_pg_long_try(const char *dsn, const char *q);
/* CREATE DATABASE <svc>_<scenario>_<pid> on $SAGEWAI_PG_DSN; its DSN into
 * dsn. */
void sw_test_pg_db_create(char *dsn, size_t len, const char *svc, const char *scenario);
/* The DSN service svc ("scheduler", "worker", "sandboxd", "audit") connects
 * with to the database of db_dsn (one of sw_test_pg_db_create): its own
 * role, $SAGEWAI_PG_DSN_<SVC> of the harness, never the superuser's; the
 * test keeps db_dsn for its own checks. */
void sw_test_pg_svc_dsn(char *dsn, size_t len, const char *db_dsn, const char *svc);
/* The same as the environment entry "SAGEWAI_PG_DSN=..." of a service. */
void sw_test_pg_svc_env(char *entry, size_t len, const char *db_dsn, const char *svc);
/* Restart the harness's PostgreSQL (harness pg-restart). */
void sw_test_pg_restart(void);
/* Stop it as a crash would (immediate: WAL still in its buffers is lost),
 * then start it again (harness pg-crash). */
void sw_test_pg_crash(void);

/* ---- sw_test_http.c: HTTP clients --------------------------------------- */

struct sw_test_buf {
	char *p; /* NUL-terminated, or NULL while empty (owned) */
	size_t len;
};

/* A CURLOPT_WRITEFUNCTION appending to the struct sw_test_buf in u. */
size_t sw_test_http_collect(char *d, size_t sz, size_t nm, void *u);

struct sw_test_http_reply {
	long status; /* the answer's status, 0 if none came */
	CURLcode rc;
	char *body; /* NUL-terminated, or NULL if empty (owned) */
};

/*
 * method url: body (len bytes) is sent when not NULL; headers is a
 * NULL-terminated list of "Name: value" or NULL; timeout_s 0 means none.
 * The status is filled even when curl fails later (a 413 cut short).
 */
void sw_test_http_request(const char *method, const char *url, const char *body, size_t len,
			  const char *const *headers, long timeout_s,
			  struct sw_test_http_reply *r);

/* GET http://127.0.0.1:port<path>; the body (owned, may be NULL), the
 * status in *status (0 unless the request completed). */
char *sw_test_http_get(int port, const char *path, long *status);

/* The value of the metric line "name value" in text, -1 if absent. */
double sw_test_metric(const char *text, const char *name);
/* The same from the service's /metrics; -1 if absent or unreachable. */
double sw_test_metric_get(int port, const char *name);

/* Wait (30 s at most, pid up meanwhile) until /healthz answers 200. */
void sw_test_http_wait_healthy(int port, pid_t pid, const char *name);

/* A loopback TCP port free right now. */
int sw_test_port_free(void);

/* ---- sw_test_kafka.c: the harness's broker ------------------------------ */

/*
 * A client of $SAGEWAI_KAFKA_BOOTSTRAP: a producer is idempotent with
 * linger.ms 1; a consumer in group commits nothing and starts at the
 * earliest offset. extra ("name=value", NULL-terminated, or NULL) is set
 * last.
 */
rd_kafka_t *sw_test_kafka_new(rd_kafka_type_t type, const char *group, const char *const *extra);
int sw_test_kafka_partitions(rd_kafka_t *rk, const char *topic);
/* The end offsets of topics (NULL-terminated); caller destroys the list. */
rd_kafka_topic_partition_list_t *sw_test_kafka_ends(rd_kafka_t *rk, const char *const *topics);
/* Commit group at the end of topics: a service in it starts from there. */
void sw_test_kafka_group_to_end(const char *group, const char *const *topics);
/* A consumer (group, committing nothing) reading topics from their ends. */
rd_kafka_t *sw_test_kafka_tail(const char *group, const char *const *topics);

/* Produce a copy of v, waiting while the queue is full. */
void sw_test_kafka_send(rd_kafka_t *p, const char *topic, const char *key, const void *v,
			size_t len);
void sw_test_kafka_flush(rd_kafka_t *p, int timeout_ms);
/* Send and flush (30 s): on return the message is in the broker. */
void sw_test_kafka_deliver(rd_kafka_t *p, const char *topic, const char *key, const void *v,
			   size_t len);

/*
 * Read sagewai.deadletter from its beginning (a fresh consumer group
 * "<prefix>-dl<n>" each call) until 10 s pass without a message; 1 if a
 * message's value is exactly needle and it carries a non-empty
 * sagewai.reason header, copied into reason.
 */
int sw_test_kafka_deadletter_find(const char *prefix, const void *needle, size_t len, char *reason,
				  size_t rlen);

/* ---- sw_test_events.c: what a service publishes ------------------------- */

struct sw_test_ev {
	char type[32];
	char event_id[37];
	char run_id[64];
	char step_id[128];
	char status[16]; /* "status", or "" */
	char topic[32];
	json_t *body;	/* the decoded event */
	json_t *output; /* "output" parsed from its JSON text, or NULL */
	char *error;	/* "error", or NULL */
	int64_t offset;
	int32_t partition;
};

/* The events of runs "<prefix>..." on some topics, read from their ends. */
struct sw_test_evlog {
	rd_kafka_t *consumer;
	struct sw_event_registry *reg;
	char prefix[64];
	struct sw_test_ev **ev; /* in the order read; each stays put until close */
	size_t n, cap;
	pid_t *pid;	  /* the service under test (-1: none), set by the caller */
	const char *name; /* its name, for messages */
	/* if set, called with every message read and its decoded event (NULL
	 * if it does not decode), whichever run it is of */
	void (*seen)(const rd_kafka_message_t *m, json_t *event);
};

/* Start reading topics (NULL-terminated) at their current ends. */
void sw_test_evlog_open(struct sw_test_evlog *l, struct sw_event_registry *reg, const char *prefix,
			const char *const *topics);
/* Take in what has arrived, waiting up to wait_ms for the first message. */
void sw_test_evlog_poll(struct sw_test_evlog *l, int wait_ms);
size_t sw_test_evlog_count(const struct sw_test_evlog *l, const char *type, const char *step_id);
/* The nth (from 0) event of type of step_id, or NULL. */
struct sw_test_ev *sw_test_evlog_find(struct sw_test_evlog *l, const char *type,
				      const char *step_id, size_t nth);
/* Poll until that event is in (or fail after limit_s, or if the service
 * exits). */
struct sw_test_ev *sw_test_evlog_wait(struct sw_test_evlog *l, const char *type,
				      const char *step_id, size_t nth, int limit_s);
/* The first step.finished of step_id, waited for up to 120 s. */
struct sw_test_ev *sw_test_evlog_finished(struct sw_test_evlog *l, const char *step_id);
void sw_test_evlog_close(struct sw_test_evlog *l);

/* e has status and, if error_prefix is not NULL, an error starting so. */
void sw_test_ev_require(const struct sw_test_ev *e, const char *status, const char *error_prefix);

/* Who sends step.dispatched events to a service under test. */
struct sw_test_sender {
	struct sw_event_registry *reg;
	rd_kafka_t *producer;
	const char *name;   /* the producer named in the header */
	const char *prefix; /* runs are "<prefix>-<run>" */
};

/* A step.dispatched as a worker-like service receives it. */
struct sw_test_dispatch {
	char run_id[64];
	char step_id[128];
	void *buf; /* the encoded event (owned; NULL after _post) */
	size_t len;
};

/*
 * Encode (not send) a step.dispatched, attempt 1 and index 0, of step in
 * run "<prefix>-<run>", with spec (stolen: sent as its JSON text).
 */
void sw_test_dispatch_make(const struct sw_test_sender *s, struct sw_test_dispatch *d,
			   const char *run, const char *step, const char *mode, int64_t timeout_ms,
			   json_t *spec);
/* Deliver d's bytes to sagewai.steps, keyed by its run. */
void sw_test_dispatch_send(const struct sw_test_sender *s, const struct sw_test_dispatch *d);
/* Make and send; d keeps its ids, not its bytes. */
void sw_test_dispatch_post(const struct sw_test_sender *s, struct sw_test_dispatch *d,
			   const char *run, const char *step, const char *mode, int64_t timeout_ms,
			   json_t *spec);

#endif
