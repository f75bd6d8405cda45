/*
 * bus_test.h: what the sw_bus tests share: a sink that records consumed
 * messages, delivery-report counters and "run the loop until" helpers.
 * Waits are bounded so that a stuck test fails instead of hanging; no
 * check depends on how fast anything happens.
 */
#ifndef BUS_TEST_H
#define BUS_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "sw_bus.h"
#include "sw_test.h"

struct rec {
	char topic[128];
	int32_t partition;
	int64_t offset;
	char key[128];
	size_t key_len;
	char *val; /* NUL-terminated copy */
	size_t len;
	char hdr[128]; /* header "h", if any */
};

struct sink;
typedef void (*sink_hook)(struct sink *s, const struct sw_bus_msg *msgs, size_t n);

struct sink {
	struct rec *r;
	size_t n, cap;
	size_t batches;
	size_t biggest; /* largest batch seen */
	struct sw_bus_consumer *c;
	sink_hook hook; /* called after recording each batch */
	void *arg;
};

static inline void sink_cb(const struct sw_bus_msg *msgs, size_t n, void *opaque)
{
	struct sink *s = opaque;

	SW_CHECK(n > 0);
	s->batches++;
	if (n > s->biggest)
		s->biggest = n;
	for (size_t i = 0; i < n; i++) {
		const struct sw_bus_msg *m = &msgs[i];
		struct rec *r;
		const void *h;
		size_t hl;

		if (s->n == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 64;
			s->r = realloc(s->r, s->cap * sizeof(*s->r));
			SW_CHECK(s->r != NULL);
		}
		r = &s->r[s->n++];
		memset(r, 0, sizeof(*r));
		SW_CHECK(strlen(m->topic) < sizeof(r->topic));
		strcpy(r->topic, m->topic);
		r->partition = m->partition;
		r->offset = m->offset;
		SW_CHECK(m->key_len < sizeof(r->key));
		if (m->key_len > 0)
			memcpy(r->key, m->key, m->key_len);
		r->key_len = m->key_len;
		r->val = malloc(m->len + 1);
		SW_CHECK(r->val != NULL);
		if (m->len > 0)
			memcpy(r->val, m->value, m->len);
		r->val[m->len] = '\0';
		r->len = m->len;
		h = sw_bus_msg_header(m, "h", &hl);
		if (h != NULL && hl < sizeof(r->hdr))
			memcpy(r->hdr, h, hl);
	}
	if (s->hook != NULL)
		s->hook(s, msgs, n);
}

static inline void sink_reset(struct sink *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->r[i].val);
	free(s->r);
	memset(s, 0, sizeof(*s));
}

struct drs {
	size_t ok;
	size_t failed;
	char last_err[256];
};

static inline void drs_cb(const char *err, void *msg_opaque, void *opaque)
{
	struct drs *d = opaque;

	(void)msg_opaque;
	if (err == NULL) {
		d->ok++;
	} else {
		d->failed++;
		snprintf(d->last_err, sizeof(d->last_err), "%s", err);
	}
}

static inline double test_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef int (*test_cond)(void *arg);

struct run_ctx {
	struct event_base *base;
	test_cond cond;
	void *arg;
	double deadline;
	int met;
};

static inline void run_tick(evutil_socket_t fd, short what, void *arg)
{
	struct run_ctx *rc = arg;

	(void)fd;
	(void)what;
	if (rc->cond != NULL && rc->cond(rc->arg)) {
		rc->met = 1;
		event_base_loopbreak(rc->base);
	} else if (test_now() >= rc->deadline) {
		event_base_loopbreak(rc->base);
	}
}

/* Run the loop until cond(arg) holds (1) or timeout_s passed (0). With a
 * NULL cond, just run for timeout_s. */
static inline int run_until(struct event_base *base, test_cond cond, void *arg, double timeout_s)
{
	struct run_ctx rc = {base, cond, arg, test_now() + timeout_s, 0};
	struct timeval tv = {0, 5000};
	struct event *ev = event_new(base, -1, EV_PERSIST, run_tick, &rc);

	SW_CHECK(ev != NULL);
	if (cond != NULL && cond(arg))
		rc.met = 1;
	else {
		event_add(ev, &tv);
		event_base_dispatch(base);
	}
	event_free(ev);
	return rc.met;
}

struct count_want {
	const size_t *count;
	size_t want;
};

static inline int count_reached(void *arg)
{
	struct count_want *cw = arg;

	return *cw->count >= cw->want;
}

/* Run until *count >= want; fail the test after timeout_s. */
#define RUN_UNTIL_COUNT(base, countp, wantv, timeout_s)                                           \
	do {                                                                                      \
		struct count_want cw_ = {(countp), (wantv)};                                      \
		SW_CHECKF(run_until((base), count_reached, &cw_, (timeout_s)),                    \
			  "%s reached %zu of %zu", #countp, *(countp), (size_t)(wantv));          \
	} while (0)

/* Produce values "v-<seq>" for seq in [from, to), key "run-<seq % keys>". */
static inline void produce_seq(struct sw_bus_producer *p, const char *topic, int from, int to,
			       int keys)
{
	char key[32], val[32], hv[32], err[256];

	for (int i = from; i < to; i++) {
		const char *hdrs[] = {"h", hv, NULL};

		snprintf(key, sizeof(key), "run-%d", i % keys);
		snprintf(val, sizeof(val), "v-%d", i);
		snprintf(hv, sizeof(hv), "x-%d", i);
		SW_CHECKF(sw_bus_produce(p, topic, key, val, strlen(val), hdrs, NULL, err,
					 sizeof(err)) == 0,
			  "%s", err);
	}
}

/* Every seq in [from, to) arrived exactly once with its key and header,
 * offsets rise within each partition and seqs rise within each key.
 * log_dups allows a seq to be in the log twice at different offsets (the
 * mock cluster does not deduplicate retries of a non-transactional
 * idempotent producer); order is then checked on first occurrences, and
 * the number of such copies is returned. */
static inline size_t check_seq_dups(const struct sink *s, int from, int to, int keys, int log_dups)
{
	int n = to - from;
	char *seen = calloc(n, 1);
	int last_seq[64];
	int64_t last_off[64];
	char want[32];
	size_t dups = 0;

	SW_CHECK(seen != NULL && keys <= 64);
	for (int i = 0; i < 64; i++) {
		last_seq[i] = -1;
		last_off[i] = -1;
	}
	for (size_t i = 0; getenv("BUS_TEST_DUMP") != NULL && i < s->n; i++)
		fprintf(stderr, "%d %" PRId64 " %s\n", (int)s->r[i].partition, s->r[i].offset,
			s->r[i].val);
	if (!log_dups)
		SW_CHECKF(s->n == (size_t)n, "got %zu messages, want %d", s->n, n);
	for (size_t i = 0; i < s->n; i++) {
		const struct rec *r = &s->r[i];
		int seq;

		SW_CHECKF(sscanf(r->val, "v-%d", &seq) == 1, "value %s", r->val);
		SW_CHECKF(seq >= from && seq < to, "seq %d outside [%d,%d)", seq, from, to);
		snprintf(want, sizeof(want), "run-%d", seq % keys);
		SW_CHECKF(r->key_len == strlen(want) && memcmp(r->key, want, r->key_len) == 0,
			  "seq %d key %.*s", seq, (int)r->key_len, r->key);
		snprintf(want, sizeof(want), "x-%d", seq);
		SW_CHECKF(strcmp(r->hdr, want) == 0, "seq %d header %s", seq, r->hdr);
		SW_CHECK(r->partition >= 0 && r->partition < 64);
		/* the consumer never hands out the same offset twice */
		SW_CHECKF(r->offset > last_off[r->partition],
			  "partition %d offset %" PRId64 " after %" PRId64, (int)r->partition,
			  r->offset, last_off[r->partition]);
		last_off[r->partition] = r->offset;
		if (seen[seq - from]) {
			SW_CHECKF(log_dups, "seq %d delivered twice", seq);
			dups++;
			continue;
		}
		seen[seq - from] = 1;
		SW_CHECKF(seq > last_seq[seq % keys], "key run-%d: seq %d after %d", seq % keys,
			  seq, last_seq[seq % keys]);
		last_seq[seq % keys] = seq;
	}
	for (int i = 0; i < n; i++)
		SW_CHECKF(seen[i], "seq %d lost", from + i);
	free(seen);
	return dups;
}

static inline void check_seq(const struct sink *s, int from, int to, int keys)
{
	check_seq_dups(s, from, to, keys, 0);
}

struct idemp_wait {
	struct sw_bus_producer *p;
	char state[64];
	int64_t pid;
};

static inline int idemp_assigned(void *arg)
{
	struct idemp_wait *w = arg;

	return sw_bus_producer_idemp_state(w->p, w->state, sizeof(w->state), &w->pid) == 0 &&
	       strcmp(w->state, "Assigned") == 0;
}

#endif
