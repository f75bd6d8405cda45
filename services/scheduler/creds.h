/*
 * creds.h: the strings of a run (its input, its steps' definitions) and
 * the credentials that must not be among them (anti-pattern 3: a secret
 * passed as run input travels in events, logs and the audit trail).
 *
 * Pure: jansson and the workflow structs only, no I/O; unit-tested by
 * tests/scheduler/creds_unit.c.
 *
 * The strings of a run, each with its field path:
 *   input...                 every string leaf of the input
 *                            ("input.deploy.token", "input.items[2]")
 *   steps.NAME.with...       every string leaf of a step's with, as registered
 *   steps.NAME.env.VAR       every value of its env
 *   steps.NAME.run[...]      its run command (a string or an argv list)
 *   steps.NAME.prompt        its prompt
 * Object keys are strings too: a plain key ([A-Za-z0-9_-], at most 64
 * bytes) names its member in the path, any other key shows as "#N" (its
 * position), so a path never repeats an odd key verbatim. A path longer
 * than SCHED_CREDS_PATH - 1 bytes ends in "...".
 *
 * Obvious credential shapes: sw_credshape.h (libs/core), shared with
 * sandboxd's artifact scan.
 */
#ifndef SCHED_CREDS_H
#define SCHED_CREDS_H

#include <stddef.h>
#include <jansson.h>

#include "sw_workflow.h"

#define SCHED_CREDS_PATH 256   /* a field path, NUL included */
#define SCHED_CREDS_MIN_TOKEN 4 /* shorter candidates are not MAC'd */

/* One string of a run: its field path, its bytes, whether it is an object
 * key (then field is the path of the object holding it). A non-zero return
 * stops the walk. */
typedef int (*sched_creds_fn)(const char *field, const char *s, size_t len, int is_key,
			      void *arg);

/* Call fn for every string of input (a JSON value, may be NULL) and of
 * wf's steps (wf may be NULL), in that order. Returns fn's first non-zero
 * value, else 0. */
int sched_creds_walk(json_t *input, const struct sw_workflow *wf, sched_creds_fn fn, void *arg);

/* The candidates of s (len bytes) for the secret-value check: s itself and
 * each of its tokens (split on whitespace and on " ' = : , ; & ? / @ < > ( )
 * [ ] { }), those of at least SCHED_CREDS_MIN_TOKEN bytes, in order (s
 * itself first; a token equal to s is not repeated). A non-zero return of
 * fn stops and is returned. */
int sched_creds_tokens(const char *s, size_t len, int (*fn)(const char *tok, size_t len, void *arg),
		       void *arg);

/* The first obvious credential among the strings of input and wf: 1 with
 * a sentence naming where and what, never the value ("input.deploy.token
 * looks like a GitHub token") in msg; 0 when there is none. */
int sched_creds_find(json_t *input, const struct sw_workflow *wf, char *msg, size_t msglen);

#endif
