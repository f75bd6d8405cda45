/*
 * sw_service: the frame every Sagewai daemon runs on.
 *
 * A service describes itself in a struct sw_service_def and hands its
 * main() to sw_service_main(). The frame then
 *
 *   - dispatches the command line: no argument or "serve" runs the daemon,
 *     "--help" / "-h" prints the usage, any other word is looked up in
 *     def->cmds (offline subcommands such as "sagewai-audit verify DIR");
 *   - loads the configuration (struct sw_config from the environment and
 *     the KEY=VALUE file $SAGEWAI_CONFIG names) and starts the JSON log
 *     lines under def->name;
 *   - initialises libsodium (a failure is "bad configuration", exit 2);
 *   - calls def->configure for the service's own settings (a failure is
 *     "bad configuration", exit 2), then makes the event base (libevent
 *     threads enabled), the metrics registry and calls def->start, which
 *     builds the service's roles (a failure is "failed to start", exit 1);
 *   - serves /healthz (def->health) and /metrics on SAGEWAI_HTTP_ADDR and
 *     SAGEWAI_HTTP_PORT (0, the default, is a port the kernel picks) once
 *     a role asks for the HTTP server, and reports the port it got in the
 *     "started" log line and, when SAGEWAI_PORT_FILE names a file, in that
 *     file (created empty before configure, while the process still has the
 *     rights it started with, and given the port in one write once the
 *     server listens: a reader waits for it to be non-empty; nothing picks a
 *     "free" port and uses it later);
 *   - handles SIGTERM and SIGINT on the loop: the first starts a graceful
 *     drain (def->drain, then def->drained polled every 20 ms until it says
 *     done or def->drain_ms passes), a second ends the loop at once;
 *     SIGPIPE is ignored;
 *   - after the loop: def->stop, then frees what it made itself; the
 *     process exits 0, or 1 after sw_service_fatal.
 *
 * One struct sw_service per process; the service's own state is the arg
 * it passes to sw_service_main, handed back to every callback. Role files
 * reach the frame through the accessors below, never through main.c.
 *
 * sw_handoff is the one way a blocking job leaves the loop: threads that
 * wait on a condition under a mutex for work the loop queued, and wake the
 * loop with an event when they have finished something.
 */
#ifndef SW_SERVICE_H
#define SW_SERVICE_H

#include <pthread.h>
#include <stddef.h>
#include <event2/event.h>

#include "sw_core.h"

struct sw_http;
struct sw_metrics;
struct sw_service;

/* An offline subcommand: argv[0] is its name; returns the exit code. */
struct sw_service_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
};

struct sw_service_def {
	const char *name;     /* "worker": log lines' svc; the binary is sagewai-<name> */
	const char *synopsis; /* usage lines after "sagewai-<name> [serve]", may be NULL */
	const char *help;     /* what the service does, for --help */
	const struct sw_service_cmd *cmds; /* ends with a NULL name; may be NULL */
	int drain_ms;	      /* longest graceful drain (0: 5000) */

	/* The service's own settings, before the loop exists (may be NULL). */
	int (*configure)(struct sw_service *svc, void *arg, char *err, size_t errlen);
	/* Build the roles: the loop and the metrics exist, nothing runs yet. */
	int (*start)(struct sw_service *svc, void *arg, char *err, size_t errlen);
	/* First signal: stop taking new work (may be NULL). */
	void (*drain)(struct sw_service *svc, void *arg);
	/* While draining: non-zero once the work in hand is done (NULL: at
	 * once after drain). */
	int (*drained)(void *arg);
	/* Fatal: stop what must not go on (e.g. executors) before the loop
	 * breaks (may be NULL). */
	void (*halt)(void *arg);
	/* After the loop, or after a failed start: close what start opened.
	 * Must cope with a half-done start. */
	void (*stop)(struct sw_service *svc, void *arg);
	/* /healthz: 0 healthy, else 503 (may be NULL: always healthy). */
	int (*health)(void *arg);
};

/* Run the command line argv under def; returns the process's exit code. */
int sw_service_main(const struct sw_service_def *def, void *arg, int argc, char **argv);

/* ---- for the roles ----------------------------------------------------- */

struct event_base *sw_service_base(struct sw_service *svc);
const struct sw_config *sw_service_config(const struct sw_service *svc);
/* The process environment the settings come from (sw_config_env etc.). */
char *const *sw_service_environ(const struct sw_service *svc);
struct sw_metrics *sw_service_metrics(struct sw_service *svc);
/* "sagewai-<name>@<host>/<pid>": this instance, for executor fields; the
 * pid is the loop's process, set after def->configure ("" before). */
const char *sw_service_instance(const struct sw_service *svc);
const char *sw_service_name(const struct sw_service *svc);

/* The HTTP server (with /healthz and /metrics), made on first call with
 * max_body as its request body cap; the frame owns it. NULL with err. */
struct sw_http *sw_service_http(struct sw_service *svc, size_t max_body, char *err,
				size_t errlen);

/* Log an error line (what, "error": why), run def->halt, end the loop;
 * the process exits 1. Loop thread only. */
void sw_service_fatal(struct sw_service *svc, const char *what, const char *why);
/* The same as a callback of the (void *arg, what, why) kind, arg = svc. */
void sw_service_on_fatal(void *svc, const char *what, const char *why);
/* Non-zero once the first signal came. */
int sw_service_draining(const struct sw_service *svc);
/* Non-zero once sw_service_fatal was called. */
int sw_service_halted(const struct sw_service *svc);
/* Halted or draining: what /healthz of a service that is healthy only
 * while it takes work reports (def->health may return it). */
int sw_service_stopping(const struct sw_service *svc);
/* Start the drain as the first signal would (tests, admin routes). */
void sw_service_shutdown(struct sw_service *svc);

/* The fields of the "<name> started" line (NULL-terminated pairs, copied);
 * call from start. The frame adds http_port. */
void sw_service_started_fields(struct sw_service *svc, const char *const *kv);

/* ---- the worker-thread hand-off ---------------------------------------- */

/*
 * nthreads threads run thread_main(h, arg); the service's queues live in
 * its own structures, guarded by h->mu. A thread waits for work with
 * sw_handoff_wait (false once stopping), the loop queues work under the
 * lock and calls sw_handoff_signal; a thread that finished something calls
 * sw_handoff_wake, and the loop then runs on_loop(arg) (once for any
 * number of wakes in between).
 */
struct sw_handoff {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct event *ev;  /* on the loop: on_loop */
	pthread_t *th;
	int nthreads;	   /* started */
	int stopping;	   /* under mu */
	int inited;
	void *(*thread_main)(struct sw_handoff *h, void *arg);
	void *arg;
};

/* Start nthreads (0 is allowed: only the loop side exists). 0, or -1 with
 * err (threads started before the failure are stopped). */
int sw_handoff_start(struct sw_handoff *h, struct event_base *base, int nthreads,
		     void *(*thread_main)(struct sw_handoff *h, void *arg),
		     void (*on_loop)(void *arg), void *arg, char *err, size_t errlen);
void sw_handoff_lock(struct sw_handoff *h);
void sw_handoff_unlock(struct sw_handoff *h);
/* Thread, under the lock: wait for a signal; returns 0 once stopping. */
int sw_handoff_wait(struct sw_handoff *h);
/* The same for at most ms milliseconds (a retry's backoff that a stop
 * cuts short): 0 once stopping, else 1 (signalled or timed out). */
int sw_handoff_wait_ms(struct sw_handoff *h, int ms);
/* Under the lock: wake one waiting thread (all: broadcast non-zero). */
void sw_handoff_signal(struct sw_handoff *h, int broadcast);
/* Any thread: have the loop run on_loop. */
void sw_handoff_wake(struct sw_handoff *h);
/* Under the lock: non-zero once sw_handoff_stop began. */
int sw_handoff_stopping(const struct sw_handoff *h);
/* Tell the threads to stop and join them, waiting at most timeout_ms
 * (< 0: forever). Returns 0, or -1 when a thread did not end in time: it
 * is left to the process exit, and so is h (not freed). Loop thread. */
int sw_handoff_stop(struct sw_handoff *h, int timeout_ms);

#endif
