/*
 * snapc.c: the runs' snapshots in memory, so that a transition decides
 * without reading its run first (ops.c). PostgreSQL stays the record: a
 * snapshot is put here only after the transaction that made it committed
 * (with the rev that transaction left), and every transition built from
 * one is still guarded by that rev (bump_rev). A snapshot that is stale --
 * another instance moved the run, the run was deleted -- therefore costs a
 * conflict and a read, never a wrong commit; an event that came twice is
 * decided on the state its first application left, where the state machine
 * ignores it.
 *
 * Only a decision to commit is taken on a snapshot: one that says there is
 * nothing to do (a stale or duplicate event, an attempt it never saw) may
 * be behind what another instance stored, and that decision commits no
 * guarded rev, so ops.c takes it again on the run as read
 * (sagewai_scheduler_snapshot_rereads_total). Else an outcome of an attempt
 * dispatched by another instance would be dropped as unknown.
 *
 * A transition takes its run's snapshot out (one operation per run at a
 * time holds it) and puts the next one back once committed; a failure
 * drops it, and the next operation reads the run. Finished runs are not
 * kept. At most SAGEWAI_SNAPSHOT_CACHE snapshots (0: none, every
 * transition reads) and SCHED_SNAPC_BYTES of their input and outputs are
 * kept; the oldest put goes first.
 *
 * Only durable state is kept: a snapshot after a durable commit (which
 * flushed every earlier mark with it), never after a mark committed with
 * synchronous_commit off, nor one read and left unchanged (it may show such
 * a mark). A crash of PostgreSQL may lose marks: when the store has
 * reconnected since, every snapshot is dropped before the next is used.
 */
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

#define SNAPC_BUCKETS 8192

struct snapc_ent {
	struct snapc_ent *next;	       /* hash chain */
	TAILQ_ENTRY(snapc_ent) order; /* oldest first */
	char run_id[SW_UUID_STRLEN];
	struct sched_snap s; /* s.wf unset: looked up again at take */
};

TAILQ_HEAD(snapc_order, snapc_ent);

struct sched_snapc {
	struct snapc_ent *b[SNAPC_BUCKETS];
	struct snapc_order order;
	size_t n, bytes;
	unsigned long reconnects; /* sw_store_reconnects when the snapshots were made */
};

static struct snapc_ent **slot(struct sched_snapc *c, const char *run_id)
{
	struct snapc_ent **e;

	for (e = &c->b[sched_run_hash(run_id) % SNAPC_BUCKETS]; *e != NULL; e = &(*e)->next)
		if (strcmp((*e)->run_id, run_id) == 0)
			break;
	return e;
}

/* Unlink *e (its slot) and return it. */
static struct snapc_ent *unlink_ent(struct sched_snapc *c, struct snapc_ent **e)
{
	struct snapc_ent *x = *e;

	*e = x->next;
	TAILQ_REMOVE(&c->order, x, order);
	c->n--;
	c->bytes -= x->s.bytes;
	return x;
}

/* Drop every snapshot if the store reconnected since they were made. */
static void check_store(struct sched_env *env, struct sched_snapc *c)
{
	unsigned long now = sw_store_reconnects(env->store);
	struct snapc_ent *x;

	if (now == c->reconnects)
		return;
	c->reconnects = now;
	while ((x = TAILQ_FIRST(&c->order)) != NULL)
		sched_snapc_drop(env, x->run_id);
}

int sched_snapc_take(struct sched_env *env, const char *run_id, struct sched_snap *s)
{
	struct sched_snapc *c = env->snapc;
	struct snapc_ent **e, *x;
	char err[64];

	if (c == NULL)
		return -1;
	check_store(env, c);
	if (*(e = slot(c, run_id)) == NULL) {
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_snapshot_misses_total",
				       "Transitions that read their run from PostgreSQL.", 1);
		return -1;
	}
	x = unlink_ent(c, e);
	*s = x->s;
	free(x);
	/* the definitions' cache may have been emptied since */
	if ((s->wf = sched_def_get(env, s->tenant, s->workflow, s->version, NULL, err,
				   sizeof(err))) == NULL) {
		sched_snap_free(s);
		return -1;
	}
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_snapshot_hits_total",
			       "Transitions decided on their run's snapshot in memory.", 1);
	return 0;
}

void sched_snapc_put(struct sched_env *env, const char *run_id, struct sched_snap *s)
{
	struct sched_snapc *c = env->snapc;
	struct snapc_ent **e, *x;

	if (env->snap_cache == 0 || sched_run_state_ended(sched_run_state_name(s->run.state)) ||
	    s->bytes > SCHED_SNAPC_BYTES / 4) {
		sched_snap_free(s);
		return;
	}
	if (c == NULL) {
		if ((c = env->snapc = calloc(1, sizeof(*c))) == NULL) {
			sched_snap_free(s);
			return;
		}
		TAILQ_INIT(&c->order);
		c->reconnects = sw_store_reconnects(env->store);
	}
	check_store(env, c);
	/* e: where the run's entry goes in its chain, found once */
	if (*(e = slot(c, run_id)) != NULL) { /* not expected: one holder per run */
		x = unlink_ent(c, e);
		sched_snap_free(&x->s);
		free(x);
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		sched_snap_free(s);
		return;
	}
	snprintf(x->run_id, sizeof(x->run_id), "%s", run_id);
	x->s = *s;
	x->s.wf = NULL;
	x->s.processed = 0;
	memset(s, 0, sizeof(*s));
	x->next = *e;
	*e = x;
	TAILQ_INSERT_TAIL(&c->order, x, order);
	c->n++;
	c->bytes += x->s.bytes;
	while (c->n > (size_t)env->snap_cache || c->bytes > SCHED_SNAPC_BYTES) {
		struct snapc_ent *old = TAILQ_FIRST(&c->order);

		x = unlink_ent(c, slot(c, old->run_id));
		sched_snap_free(&x->s);
		free(x);
	}
	sw_metrics_gauge_set(env->metrics, "sagewai_scheduler_snapshots",
			     "Runs' snapshots held in memory.", (double)c->n);
}

void sched_snapc_drop(struct sched_env *env, const char *run_id)
{
	struct sched_snapc *c = env->snapc;
	struct snapc_ent **e, *x;

	if (c == NULL || *(e = slot(c, run_id)) == NULL)
		return;
	x = unlink_ent(c, e);
	sched_snap_free(&x->s);
	free(x);
}

void sched_snapc_free(struct sched_env *env)
{
	struct sched_snapc *c = env->snapc;
	struct snapc_ent *x;

	if (c == NULL)
		return;
	while ((x = TAILQ_FIRST(&c->order)) != NULL) {
		TAILQ_REMOVE(&c->order, x, order);
		sched_snap_free(&x->s);
		free(x);
	}
	free(c);
	env->snapc = NULL;
}
