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
/* How many processes have needle in their /proc/<pid>/<file> (its first
 * 64 KiB), cmdline or environ say. */
int sw_test_procs_holding(const char *file, const char *needle);
/* pid and every descendant of it into out (pid first, at most max). */
size_t sw_test_proc_descendants(pid_t pid, pid_t *out, size_t max);

/* Run the command fmt makes with system(); it must exit 0. */
void sw_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Write text to path (a new file: an old one is removed first), then
 * chmod it to mode. */
void sw_test_file_write(const char *path, const char *text, mode_t mode);
/* The contents of path, NUL-terminated (caller frees), their length in
 * *len if len is not NULL; NULL if path cannot be opened. */
char *sw_test_file_read(const char *path, size_t *len);

/* Start argv (argv[0] looked up in PATH) whose first line on stdout is
 * "port N"; returns its pid, N in *port. */
pid_t sw_test_helper_start(const char *const *argv, int *port);

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
/* The same as the environment entry "SAGEWAI_PG_DSN=..." of a service
 * (entry, returned). */
const char *sw_test_pg_svc_env(char *entry, size_t len, const char *db_dsn, const char *svc);
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
/* The same for every topic whose name starts with prefix (a service that
 * subscribes by pattern, as sagewai-audit does to all of sagewai.*, reads
 * every such topic: the events earlier tests left in any of them are not
 * this test's). */
void sw_test_kafka_group_to_end_prefix(const char *group, const char *prefix);
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

/* Encode o (stolen) as type from producer_name, its header of tenant,
 * run_id and step_id (NULL: ""), and produce it to topic with key; not
 * flushed. */
void sw_test_event_send(struct sw_event_registry *reg, rd_kafka_t *p, const char *topic,
			const char *key, const char *type, const char *producer_name,
			const char *tenant, const char *run_id, const char *step_id, json_t *o);

/* The answers a service publishes to requests, read back by request_id. */
#define SW_TEST_REPLIES_MAX 4096
struct sw_test_replies {
	rd_kafka_t *consumer;
	struct sw_event_registry *reg;
	json_t *ev[SW_TEST_REPLIES_MAX]; /* decoded, in the order read (owned) */
	size_t n;
	pid_t *pid;	  /* the service (-1: none): its exit ends a wait */
	const char *name; /* its name, for messages */
	/* if set, called with every message read and its decoded event */
	void (*check)(const rd_kafka_message_t *m, json_t *event);
};

/* Read topics (NULL-terminated) from their ends, as consumer group. */
void sw_test_replies_open(struct sw_test_replies *r, struct sw_event_registry *reg,
			  const char *group, const char *const *topics, pid_t *pid,
			  const char *name);
/* Take in what has arrived, waiting up to wait_ms for the first message. */
void sw_test_replies_poll(struct sw_test_replies *r, int wait_ms);
/* The event of type answering request rid (waited for up to 30 s). */
json_t *sw_test_replies_for(struct sw_test_replies *r, const char *type, const char *rid);
/* How many events of type (answering rid; NULL: any) were read so far. */
size_t sw_test_replies_count(const struct sw_test_replies *r, const char *type, const char *rid);

/* Who sends step.dispatched events to a service under test. */
struct sw_test_sender {
	struct sw_event_registry *reg;
	rd_kafka_t *producer;
	const char *name;   /* the producer named in the header */
	const char *prefix; /* runs are "<prefix>-<run>" */
	/* the topic of every dispatch (the one executor under test reads, for
	 * a test that sends it other modes too); NULL: by mode, as the
	 * scheduler routes them */
	const char *dispatch_topic;
};

/* A step.dispatched as a worker-like service receives it. */
struct sw_test_dispatch {
	char run_id[64];
	char step_id[128];
	const char *topic; /* its executor's: sw_bus_dispatch_topic(mode) */
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
/* Deliver d's bytes to its executor's dispatch topic, keyed by its run. */
void sw_test_dispatch_send(const struct sw_test_sender *s, const struct sw_test_dispatch *d);
/* Make and send; d keeps its ids, not its bytes. */
void sw_test_dispatch_post(const struct sw_test_sender *s, struct sw_test_dispatch *d,
			   const char *run, const char *step, const char *mode, int64_t timeout_ms,
			   json_t *spec);

/* ---- sw_test_stack.c: sandboxd (and identity) set up for a test ---------- */

/*
 * Secret values a test hands out, and every spelling of them that must
 * never leave: the value, its hex (both cases), base64 (standard and
 * URL-safe, unpadded) and percent-encoding.
 */
void sw_test_secret_forbid(const char *v);
/* Forbid s itself only (no other spelling). */
void sw_test_secret_forbid_raw(const char *s);
/* A fresh value "<head><24 random hex><tail>" into out, forbidden. */
void sw_test_secret_new(char *out, size_t len, const char *head, const char *tail);
/* The first forbidden spelling in buf[0..len), or NULL. */
const char *sw_test_secret_leak(const void *buf, size_t len);
/* The message (of any topic) holds no forbidden spelling. */
void sw_test_secret_msg_clean(const rd_kafka_message_t *m);
/* The file path (what, for the message) holds none. */
void sw_test_secret_file_clean(const char *path, const char *what);

#define SW_TEST_STACK_ENV_MAX 12

/*
 * What a test of sagewai-sandboxd (and of sagewai-identity beside it)
 * sets up: names of its own, a directory, a database, the host's sealing
 * key pair and the deployment's MAC key in files, the event registry, a
 * producer and the events read from the ends of some topics.
 */
struct sw_test_stack {
	char prefix[48];  /* runs are "<prefix>-..." */
	char tenant[64];  /* "tenant-<prefix>" */
	char dir[512];	  /* preset before _init, or <build>/tests-tmp/<prefix> */
	char stage_dir[600]; /* dir/stage (SAGEWAI_ARTIFACT_STAGE_DIR) */
	char db_dsn[512]; /* the test's database (superuser) */
	struct sw_event_registry *reg;
	rd_kafka_t *producer;
	struct sw_test_evlog evl; /* of sandboxd */
	unsigned char host_pk[32], host_sk[32], mac_key[32];
	char seal_file[600]; /* hex of host_sk (SAGEWAI_SANDBOXD_SEAL_KEY_FILE) */
	char mac_file[600];  /* hex of mac_key (SAGEWAI_SECRET_MAC_KEY_FILE) */
	/* sagewai-sandboxd */
	char sbd_group[128], sbd_log[600];
	pid_t sbd_pid; /* -1 while not running */
	int sbd_port;
	/* more of its environment (as sw_test_proc_spawn's env: "NAME=VALUE",
	 * or "NAME" to unset), NULL-terminated; after the defaults */
	const char *sbd_env[SW_TEST_STACK_ENV_MAX + 1];
	/* sagewai-identity (sw_test_stack_id_init) */
	char id_group[128], id_log[600];
	char mkeys_file[600], hosts_file[600], admin_file[600];
	char admin[65]; /* its admin token */
	pid_t id_pid;
	int id_port;
	const char *id_env[SW_TEST_STACK_ENV_MAX + 1];
};

/*
 * Set s up for scenario (NULL: none) of the test tag: prefix
 * "<tag>[-<scenario>]-<pid>", the directory (0755, with a world-writable
 * stage/: sandboxd's service part may run as another uid), the database, the key
 * files, sandboxd's group committed at the ends of sagewai.steps.sandbox and
 * sagewai.runs, and s->evl reading topics (NULL-terminated; NULL: every
 * topic sandboxd and identity read or write), seen as its callback.
 * Nothing is started.
 */
void sw_test_stack_init(struct sw_test_stack *s, const char *tag, const char *scenario,
			const char *const *topics,
			void (*seen)(const rd_kafka_message_t *m, json_t *event));
/* Start sandboxd, its environment: the database, its group, port 0, log
 * level debug, the state directory s->dir, fast rebalancing, one warm
 * sandbox, the seal and MAC key files, the stage directory s->dir/stage,
 * then s->sbd_env. Returns the pid (also in s->sbd_pid), not waiting. */
pid_t sw_test_stack_sbd_spawn(struct sw_test_stack *s);
/* Spawn it and wait for its port (s->sbd_port). */
void sw_test_stack_sbd_start(struct sw_test_stack *s);
/* SIGTERM: it must exit 0. */
void sw_test_stack_sbd_stop(struct sw_test_stack *s);

/* For the real sagewai-identity beside it: the files of its master key,
 * its hosts (host-a with s->host_pk) and admin token, its group
 * committed at the ends of the topics it reads. */
void sw_test_stack_id_init(struct sw_test_stack *s);
/* Start it (single_org, port 0, log level debug, fast rebalancing, then
 * s->id_env) and wait for its port (s->id_port). */
void sw_test_stack_id_start(struct sw_test_stack *s);

/* Produce o (stolen) of type from producer_name to topic with key, its
 * header of tenant, run_id and step_id (NULL: ""); not flushed. */
void sw_test_stack_emit(struct sw_test_stack *s, const char *topic, const char *key,
			const char *type, const char *producer_name, const char *tenant,
			const char *run_id, const char *step_id, json_t *o);

/*
 * Deliver a step.dispatched (attempt 1, index 0, tenant s->tenant) of step
 * in run "<prefix>-<run>" (its step id "<run id>/<step>/1", both into d),
 * mode, spec sp (stolen, sent as its JSON text) and identity text, from
 * producer_name.
 */
void sw_test_stack_dispatch(struct sw_test_stack *s, struct sw_test_dispatch *d,
			    const char *producer_name, const char *run, const char *step,
			    const char *mode, int64_t timeout_ms, json_t *sp,
			    const char *identity);

/* A key the scheduler pins for a step (step.dispatched.identity). */
struct sw_test_idkey {
	const char *env;
	const char *level;  /* system, workflow, user; NULL: workflow */
	const char *secret; /* NULL: a plain knob */
	int version;
	const char *value;
};

/* Hex of the MAC of value under s->mac_key, as the identity service has it. */
void sw_test_stack_mac_hex(const struct sw_test_stack *s, const char *value, char out[65]);
/* The step.dispatched.identity of keys, of profile (caller frees). */
char *sw_test_identity_text(const struct sw_test_stack *s, const struct sw_test_idkey *keys,
			    size_t n, const char *profile);

/* All sandbox.output data of step_id's stream among l's events, in seq
 * order (caller frees; "" if none); *chunks (if not NULL) gets their number. */
char *sw_test_evlog_output(const struct sw_test_evlog *l, const char *step_id, const char *stream,
			   size_t *chunks);

/* How an answer to a seal request is forged (all zero: a true one). */
struct sw_test_seal_forge {
	const unsigned char *pk;    /* sealed to this key, not s->host_pk */
	const char *request_id;	    /* the answer's and the box's request id */
	const char *box_request_id; /* the box's only */
	const char *step_id;	    /* the box's step */
	const char *sandbox_id;	    /* the box's sandbox */
	const char *value;	    /* every value in the box (the MACs stay) */
	int version_delta;	    /* added to the versions in the box */
	int drop_first;		    /* the box lacks the first key asked */
	int extra_key;		    /* the box holds a key more */
};

/*
 * Answer req (a decoded identity.seal_requested) as the identity service:
 * identity.sealed on sagewai.identity.sealed with the values of the keys
 * asked (each must be a pinned secret of keys) sealed to the host key,
 * forged as forge says (NULL: not).
 */
void sw_test_seal_answer(struct sw_test_stack *s, json_t *req, const struct sw_test_idkey *keys,
			 size_t n, const struct sw_test_seal_forge *forge);
/* Refuse req: ok=false with code and error. */
void sw_test_seal_refuse(struct sw_test_stack *s, json_t *req, const char *code,
			 const char *error);

/*
 * sagewai-llm-mock playing script (JSON text) in dir (script.json, its log
 * llm.log, its output llm.out), requiring key; returns its pid, its port
 * in *port.
 */
pid_t sw_test_llm_mock_start(const char *dir, const char *script, const char *key, int *port);
/* tests/sandboxd/git_server.py (script) in dir: the bare repository
 * root (dir/git-root, into root)/site.git, which token may push to; its
 * URL into url; returns its pid. */
pid_t sw_test_git_server(const char *dir, const char *script, const char *token, char *root,
			 size_t rootlen, char *url, size_t urllen);

#endif
