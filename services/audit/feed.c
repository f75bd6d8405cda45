/*
 * feed.c: GET /v1/audit/events, the whole log as a cursor, for
 * `sagewai audit tail` and anyone following the log:
 *
 *   after=SEQ  the events above seq SEQ, oldest first (the default, from 0)
 *   last=N     or the newest N events (1..5000), oldest first
 *   run=ID     only the events of run ID
 *   type=T,U   only events of these types (at most 32)
 *   limit=N    with after: at most N events (1..5000, default 500)
 *   wait=S     with after: when there is none yet, hold the request until
 *              one is indexed or S seconds (0..30) pass (a long poll)
 *
 * Answer: {"events": [items as /v1/audit/runs/{id}], "next": SEQ, "head": SEQ}.
 * head is the highest seq the index held when the query ran; next is the
 * after of the following call: everything up to it was considered (the
 * last event returned when the limit cut the answer short, else head).
 * Both come from one statement, so one snapshot: the index's rows are a
 * prefix of the log (inserted in log order on one connection), and no row
 * at or below head can appear later. Who may read is as for the run API
 * (api.c): a tenant's key sees its own tenant's events only.
 *
 * A parked poll is woken when the index confirms new rows (index.c), at
 * most every FEED_WAKE_MS so that a busy log does not turn each poll into
 * a query per batch; at most FEED_MAX_POLLS wait at once (more are
 * answered at once, empty: a client simply asks again).
 */
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "audit.h"

#define FEED_MAX 5000
#define FEED_LIMIT 500
#define FEED_MAX_WAIT_S 30
#define FEED_MAX_TYPES 32
#define FEED_MAX_POLLS 256
#define FEED_WAKE_MS 50

struct audit_poll {
	TAILQ_ENTRY(audit_poll) entry; /* in feed->polls while parked */
	struct audit_env *env;
	struct evhttp_request *req;
	struct evhttp_connection *conn; /* its close callback is ours while parked */
	struct event *timer;		/* the end of the wait */
	uint64_t after;
	int last;	   /* last=N (0: the after form) */
	int limit;
	int wait_s;
	int parked;
	char run[64];	   /* "" = any */
	char types[FEED_MAX_TYPES * 65 + 3]; /* a PostgreSQL array literal; "" = any */
	char tenant[128];
	int filtered;	   /* a tenant's key: only tenant's events */
};

struct audit_feed {
	TAILQ_HEAD(, audit_poll) polls;
	size_t npolls;
	struct event *wake; /* coalesces the index's wake-ups */
	int wake_pending;
};

static const char *const sql_after =
	"WITH h AS (SELECT coalesce(max(seq), 0) AS head FROM events WHERE log_id = $6)"
	" SELECT h.head, e.seq, e.segment, e.file_off FROM h LEFT JOIN LATERAL"
	" (SELECT seq, segment, file_off FROM events WHERE log_id = $6"
	"  AND seq > $1::bigint AND seq <= h.head"
	"  AND ($2::text IS NULL OR run_id = $2)"
	"  AND ($3::text[] IS NULL OR type = ANY($3::text[]))"
	"  AND ($4::text IS NULL OR tenant = $4) ORDER BY seq LIMIT $5::int) e ON true"
	" ORDER BY e.seq";

static const char *const sql_last =
	"WITH h AS (SELECT coalesce(max(seq), 0) AS head FROM events WHERE log_id = $6)"
	" SELECT h.head, e.seq, e.segment, e.file_off FROM h LEFT JOIN LATERAL"
	" (SELECT seq, segment, file_off FROM events WHERE log_id = $6 AND seq <= h.head"
	"  AND ($2::text IS NULL OR run_id = $2)"
	"  AND ($3::text[] IS NULL OR type = ANY($3::text[]))"
	"  AND ($4::text IS NULL OR tenant = $4) AND $1::bigint >= 0"
	"  ORDER BY seq DESC LIMIT $5::int) e ON true"
	" ORDER BY e.seq";

static void poll_query(struct audit_poll *p);

static void poll_free(struct audit_poll *p)
{
	if (p->timer != NULL)
		event_free(p->timer);
	free(p);
}

/* Take p off the waiting list (it is being answered or requeried). */
static void poll_unpark(struct audit_poll *p)
{
	struct audit_feed *f = p->env->feed;

	if (!p->parked)
		return;
	TAILQ_REMOVE(&f->polls, p, entry);
	f->npolls--;
	p->parked = 0;
	if (p->conn != NULL)
		evhttp_connection_set_closecb(p->conn, NULL, NULL);
	p->conn = NULL; /* the timer runs on: a requeried poll may park again */
}

/* The client went away while its poll waited: the request is detached
 * from its connection, and answering it frees it. */
static void poll_closed(struct evhttp_connection *conn, void *arg)
{
	struct audit_poll *p = arg;

	(void)conn;
	p->conn = NULL;
	poll_unpark(p);
	evhttp_send_reply(p->req, 200, "OK", NULL);
	poll_free(p);
}

static void reply(struct audit_poll *p, json_t *events, uint64_t next, uint64_t head)
{
	sw_http_reply_json(p->req, 200,
			   json_pack("{s:o, s:I, s:I}", "events", events, "next", (json_int_t)next,
				     "head", (json_int_t)head));
	poll_free(p);
}

static void poll_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct audit_poll *p = arg;

	(void)fd;
	(void)what;
	/* woken and requeried: its query is in flight and answers it (poll_park
	 * finds the timer gone and replies); answering here would free it under
	 * the query */
	if (!p->parked)
		return;
	poll_unpark(p);
	reply(p, json_array(), p->after, p->after);
}

/* Wait for the index to grow past p->after (or the timer). */
static void poll_park(struct audit_poll *p)
{
	struct audit_feed *f = p->env->feed;
	struct timeval tv = {p->wait_s, 0};

	if (p->timer == NULL) {
		if ((p->timer = evtimer_new(p->env->base, poll_timeout, p)) == NULL ||
		    evtimer_add(p->timer, &tv) == -1) {
			reply(p, json_array(), p->after, p->after);
			return;
		}
	} else if (!evtimer_pending(p->timer, NULL)) {
		/* woken and requeried after its time ran out: answer now */
		reply(p, json_array(), p->after, p->after);
		return;
	}
	TAILQ_INSERT_TAIL(&f->polls, p, entry);
	f->npolls++;
	p->parked = 1;
	if ((p->conn = evhttp_request_get_connection(p->req)) != NULL)
		evhttp_connection_set_closecb(p->conn, poll_closed, p);
}

static void poll_rows(PGresult *res, const char *err, void *opaque)
{
	struct audit_poll *p = opaque;
	uint64_t head, next, last_seq = 0;
	json_t *events;
	int i, n, got = 0;

	if (err != NULL) {
		sw_http_reply_error(p->req, 500, "index_error", "audit index query failed: %s",
				    err);
		poll_free(p);
		return;
	}
	n = PQntuples(res);
	head = n > 0 ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	events = json_array();
	for (i = 0; i < n; i++) {
		char e[256];
		json_t *item;

		if (PQgetisnull(res, i, 1))
			continue; /* no event: the one row carries head only */
		item = audit_api_item(p->env, strtoull(PQgetvalue(res, i, 2), NULL, 10),
				      strtoull(PQgetvalue(res, i, 3), NULL, 10), e, sizeof(e));
		if (item == NULL) {
			json_decref(events);
			sw_http_reply_error(p->req, 500, "log_error",
					    "audit log record unreadable: %s", e);
			poll_free(p);
			return;
		}
		json_array_append_new(events, item);
		last_seq = strtoull(PQgetvalue(res, i, 1), NULL, 10);
		got++;
	}
	if (p->last > 0)
		next = head;
	else if (got == p->limit)
		next = last_seq;
	else
		next = head > p->after ? head : p->after;
	if (got == 0 && p->last == 0 && p->wait_s > 0) {
		json_decref(events);
		p->after = next;
		if (p->env->feed == NULL || p->env->feed->npolls >= FEED_MAX_POLLS) {
			reply(p, json_array(), next, head);
			return;
		}
		poll_park(p);
		return;
	}
	reply(p, events, next, head);
}

static void poll_query(struct audit_poll *p)
{
	char after[24], limit[16];
	const char *params[6];

	snprintf(after, sizeof(after), "%llu", (unsigned long long)p->after);
	snprintf(limit, sizeof(limit), "%d", p->last > 0 ? p->last : p->limit);
	params[0] = after;
	params[1] = p->run[0] ? p->run : NULL;
	params[2] = p->types[0] ? p->types : NULL;
	params[3] = p->filtered ? p->tenant : NULL;
	params[4] = limit;
	params[5] = p->env->log_id; /* this instance's log (seqs are per log) */
	if (sw_store_query(p->env->store, p->last > 0 ? sql_last : sql_after, 6, params, poll_rows,
			   p) == -1) {
		sw_http_reply_error(p->req, 503, "unavailable", "index unavailable");
		poll_free(p);
	}
}

static void feed_authed(struct evhttp_request *req, const char *tenant, void *opaque)
{
	struct audit_poll *p = opaque;

	if (req == NULL) {
		free(p);
		return;
	}
	if (tenant != NULL) {
		p->filtered = 1;
		snprintf(p->tenant, sizeof(p->tenant), "%s", tenant);
	}
	poll_query(p);
}

/* A whole decimal number in lo..hi; -1 otherwise. */
static int num(const char *s, long long lo, long long hi, long long *v)
{
	char *end;

	if (*s < '0' || *s > '9' || strlen(s) > 19)
		return -1;
	*v = strtoll(s, &end, 10);
	return *end == '\0' && *v >= lo && *v <= hi ? 0 : -1;
}

/* type=T,U,...: each 1-63 of [a-z0-9._], into a PostgreSQL array literal. */
static int parse_types(const char *s, char *out, size_t outlen)
{
	size_t n = 0, o = 0, len = 0;
	const char *c;

	if (*s == '\0')
		return -1;
	out[o++] = '{';
	for (c = s;; c++) {
		if (*c == ',' || *c == '\0') {
			if (len == 0 || ++n > FEED_MAX_TYPES)
				return -1;
			if (*c == '\0')
				break;
			len = 0;
		} else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' ||
			     *c == '_') ||
			   ++len > 63) {
			return -1;
		}
		if (o + 2 >= outlen)
			return -1;
		out[o++] = *c;
	}
	out[o++] = '}';
	out[o] = '\0';
	return 0;
}

static int bad(struct evhttp_request *req, const char *msg)
{
	sw_http_reply_error(req, 400, "bad_query", "%s", msg);
	return -1;
}

/* Fill p from the query string; replies 400 itself on a bad one. */
static int parse(struct evhttp_request *req, struct audit_poll *p)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq kv;
	struct evkeyval *e;
	long long v;
	int seen_after = 0, seen_limit = 0, seen_wait = 0, rc = -1;
	unsigned mask = 0;

	p->limit = FEED_LIMIT;
	TAILQ_INIT(&kv);
	if (q != NULL && evhttp_parse_query_str(q, &kv) != 0)
		return bad(req, "malformed query string");
	TAILQ_FOREACH(e, &kv, next) {
		static const char *const keys[] = {"after", "last", "run", "type", "limit", "wait",
						   NULL};
		unsigned k;

		for (k = 0; keys[k] != NULL && strcmp(keys[k], e->key) != 0; k++)
			;
		if (keys[k] == NULL) {
			bad(req, "unknown parameter: the parameters are after, last, run, type, "
				 "limit, wait");
			goto out;
		}
		if (mask & (1u << k)) {
			bad(req, "a parameter given twice");
			goto out;
		}
		mask |= 1u << k;
		if (k == 0) {
			if (num(e->value, 0, INT64_MAX, &v) == -1) {
				bad(req, "after: a sequence number");
				goto out;
			}
			p->after = (uint64_t)v;
			seen_after = 1;
		} else if (k == 1) {
			if (num(e->value, 1, FEED_MAX, &v) == -1) {
				bad(req, "last: a number of events, 1 to 5000");
				goto out;
			}
			p->last = (int)v;
		} else if (k == 2) {
			if (!audit_valid_run_id(e->value)) {
				bad(req, "run: a run id is 1-63 characters of [A-Za-z0-9._-]");
				goto out;
			}
			snprintf(p->run, sizeof(p->run), "%s", e->value);
		} else if (k == 3) {
			if (parse_types(e->value, p->types, sizeof(p->types)) == -1) {
				bad(req, "type: 1 to 32 comma-separated event types of "
					 "[a-z0-9._]");
				goto out;
			}
		} else if (k == 4) {
			if (num(e->value, 1, FEED_MAX, &v) == -1) {
				bad(req, "limit: a number of events, 1 to 5000");
				goto out;
			}
			p->limit = (int)v;
			seen_limit = 1;
		} else {
			if (num(e->value, 0, FEED_MAX_WAIT_S, &v) == -1) {
				bad(req, "wait: a number of seconds, 0 to 30");
				goto out;
			}
			p->wait_s = (int)v;
			seen_wait = 1;
		}
	}
	if (p->last > 0 && (seen_after || seen_limit || seen_wait)) {
		bad(req, "last goes without after, limit and wait");
		goto out;
	}
	rc = 0;
out:
	evhttp_clear_headers(&kv);
	return rc;
}

static void events_cb(struct evhttp_request *req, void *arg)
{
	struct audit_env *env = arg;
	struct audit_poll *p;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		sw_http_reply_method_not_allowed(req, "GET");
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		sw_http_reply_error(req, 503, "unavailable", "out of memory");
		return;
	}
	p->env = env;
	p->req = req;
	if (parse(req, p) == -1) {
		free(p);
		return;
	}
	audit_api_auth(env, req, feed_authed, p);
}

/* Requery every parked poll the new rows may answer. */
static void feed_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct audit_env *env = arg;
	struct audit_feed *f = env->feed;
	struct audit_poll *p, *next;

	(void)fd;
	(void)what;
	f->wake_pending = 0;
	for (p = TAILQ_FIRST(&f->polls); p != NULL; p = next) {
		next = TAILQ_NEXT(p, entry);
		poll_unpark(p);
		poll_query(p);
	}
}

void audit_feed_wake(struct audit_env *env, uint64_t seq)
{
	struct audit_feed *f = env->feed;
	struct timeval tv = {0, FEED_WAKE_MS * 1000};

	(void)seq;
	if (f == NULL || f->npolls == 0 || f->wake_pending)
		return;
	if (evtimer_add(f->wake, &tv) == 0)
		f->wake_pending = 1;
}

int audit_feed_start(struct audit_env *env, char *errstr, size_t errlen)
{
	struct audit_feed *f = calloc(1, sizeof(*f));

	if (f == NULL || (f->wake = evtimer_new(env->base, feed_wake_cb, env)) == NULL) {
		free(f);
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	TAILQ_INIT(&f->polls);
	env->feed = f;
	if (sw_http_route(env->http, "/v1/audit/events", events_cb, env) == -1) {
		snprintf(errstr, errlen, "cannot route /v1/audit/events");
		return -1;
	}
	return 0;
}

void audit_feed_stop(struct audit_env *env)
{
	struct audit_feed *f = env->feed;
	struct audit_poll *p;

	if (f == NULL)
		return;
	while ((p = TAILQ_FIRST(&f->polls)) != NULL) {
		poll_unpark(p);
		reply(p, json_array(), p->after, p->after);
	}
	event_free(f->wake);
	free(f);
	env->feed = NULL;
}
