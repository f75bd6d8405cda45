/*
 * prune.c: the background deletion of old rows (sw_prune.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "sw_core.h"
#include "sw_http.h"
#include "sw_prune.h"
#include "sw_service.h"
#include "sw_store.h"

struct sw_prune {
	struct sw_service *svc;
	struct sw_store *store;
	const struct sw_prune_def *def;
	char secs[24]; /* the retention, the statements' parameter */
	struct event *timer;
	/* the pass under way */
	int running;
	int freed; /* sw_prune_free came while a statement was out */
	size_t stmt;
	int round;
	long long deleted;
};

static void arm(struct sw_prune *p, int secs)
{
	struct timeval tv = {secs, 0};

	evtimer_add(p->timer, &tv);
}

static void pass_next(struct sw_prune *p);

static void deleted_cb(PGresult *res, const char *err, void *opaque)
{
	struct sw_prune *p = opaque;
	long long n = 0;

	if (p->freed) {
		free(p);
		return;
	}
	if (err != NULL) {
		sw_log(SW_LOG_WARN, "pruning failed (tried again later)", "error", err, NULL);
		p->stmt = p->def->nsql;
	} else {
		if (PQntuples(res) == 1)
			n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		p->deleted += n;
		/* a full batch: more may be left in this table */
		if (n >= SW_PRUNE_BATCH && ++p->round < SW_PRUNE_ROUNDS) {
			pass_next(p);
			return;
		}
		p->stmt++;
		p->round = 0;
	}
	pass_next(p);
}

static void pass_next(struct sw_prune *p)
{
	const char *params[1] = {p->secs};

	if (p->stmt >= p->def->nsql || sw_service_stopping(p->svc)) {
		if (p->deleted > 0) {
			char n[24];

			snprintf(n, sizeof(n), "%lld", p->deleted);
			sw_log(SW_LOG_INFO, p->def->what, "rows", n, NULL);
			sw_metrics_counter_add(sw_service_metrics(p->svc), p->def->metric,
					       p->def->help, (double)p->deleted);
		}
		p->running = 0;
		arm(p, SW_PRUNE_EVERY_S);
		return;
	}
	if (sw_store_query(p->store, p->def->sql[p->stmt], 1, params, deleted_cb, p) == -1)
		deleted_cb(NULL, "cannot queue", p);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sw_prune *p = arg;

	(void)fd;
	(void)what;
	if (p->running || sw_service_stopping(p->svc))
		return;
	p->running = 1;
	p->stmt = 0;
	p->round = 0;
	p->deleted = 0;
	pass_next(p);
}

struct sw_prune *sw_prune_new(struct sw_service *svc, struct sw_store *store,
			      const struct sw_prune_def *def, long long retention_s, char *errstr,
			      size_t errlen)
{
	struct sw_prune *p = calloc(1, sizeof(*p));

	if (p == NULL || (p->timer = evtimer_new(sw_service_base(svc), prune_cb, p)) == NULL) {
		free(p);
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	p->svc = svc;
	p->store = store;
	p->def = def;
	snprintf(p->secs, sizeof(p->secs), "%lld", retention_s);
	arm(p, 1);
	return p;
}

void sw_prune_free(struct sw_prune *p)
{
	if (p == NULL)
		return;
	event_free(p->timer);
	p->timer = NULL;
	if (p->running)
		p->freed = 1; /* deleted_cb frees it, if the store still answers */
	else
		free(p);
}
