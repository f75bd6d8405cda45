/*
 * ops.c: the operation engine. A state change (struct sched_op) reads a
 * snapshot of its run, has the state machine decide (apply.c, fsm.c) and
 * commits the result in one transaction guarded by the run's rev; a
 * conflict reads again. Operations on one run take turns in a per-run
 * queue, and a step.started waits a moment to be folded into its outcome.
 * A late, stale or repeated trigger is never applied: the state machine
 * takes an outcome or a start only for the attempt in flight, so what it
 * applied once it ignores after (no table of processed event ids is
 * written; docs/RUNS.md, "Fencing").
 */
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

uint32_t sched_run_hash(const char *run_id)
{
	return sw_fnv1a(SW_FNV1A_INIT, run_id);
}

static void op_read(struct sched_op *op);
static void op_begin(struct sched_op *op);

static void op_clear_events(struct sched_op *op)
{
	size_t i;

	for (i = 0; i < op->nev; i++)
		sched_event_clear(&op->ev[i]);
	op->nev = 0;
}

/*
 * One operation per run at a time: the others wait in the run's queue.
 * Without this, a step.started and a step.finished of one run consumed in
 * the same batch would read the same rev, and one of them would lose the
 * guard and read again; correct, but a wasted round trip per step.
 */
struct sched_run_lock {
	struct sched_run_lock *next; /* hash chain */
	char run_id[SW_UUID_STRLEN];
	struct sched_op *holder;      /* the op in progress */
	struct sched_op *head, *tail; /* waiting, in arrival order */
};

static struct sched_run_lock **lock_slot(struct sched_env *env, const char *run_id)
{
	struct sched_run_lock **l;

	for (l = &env->locks[sched_run_hash(run_id) % SCHED_LOCK_BUCKETS]; *l != NULL;
	     l = &(*l)->next)
		if (strcmp((*l)->run_id, run_id) == 0)
			break;
	return l;
}

/* op, a step.finished, supersedes w, a step.started. */
static int op_supersedes(const struct sched_op *op, const struct sched_op *w)
{
	return w->kind == SCHED_OP_STARTED && op->kind == SCHED_OP_FINISHED &&
	       w->attempt == op->attempt && strcmp(w->step, op->step) == 0;
}

/* 1: op holds its run now; 0: it waits; -1: out of memory. A step.started
 * holding the run while it waits for its outcome is woken by whatever
 * queues behind it: its outcome folds it, anything else must not wait. */
static int lock_take(struct sched_op *op)
{
	struct sched_env *env = op->env;
	struct sched_run_lock **l, *n;

	if (env->locks == NULL &&
	    (env->locks = calloc(SCHED_LOCK_BUCKETS, sizeof(*env->locks))) == NULL)
		return -1;
	l = lock_slot(env, op->run_id);
	if ((n = *l) != NULL) {
		if (n->tail != NULL)
			n->tail->next_waiting = op;
		else
			n->head = op;
		n->tail = op;
		if (n->holder != NULL && n->holder->hold_ev != NULL)
			event_active(n->holder->hold_ev, EV_TIMEOUT, 0);
		return 0;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return -1;
	snprintf(n->run_id, sizeof(n->run_id), "%s", op->run_id);
	n->holder = op;
	*l = n;
	return 1;
}

/* op is done with its run: the next waiting op, or NULL (lock dropped). */
static struct sched_op *lock_pass(struct sched_op *op)
{
	struct sched_run_lock **l, *n;
	struct sched_op *next;

	if (op->kind == SCHED_OP_SUBMIT || op->env->locks == NULL)
		return NULL; /* a submit takes no lock */
	l = lock_slot(op->env, op->run_id);
	if ((n = *l) == NULL)
		return NULL;
	if ((next = n->head) != NULL) {
		n->head = next->next_waiting;
		if (n->head == NULL)
			n->tail = NULL;
		next->next_waiting = NULL;
		n->holder = next;
		return next;
	}
	*l = n->next;
	free(n);
	return NULL;
}

void sched_ops_free(struct sched_env *env)
{
	size_t i;

	for (i = 0; env->locks != NULL && i < SCHED_LOCK_BUCKETS; i++)
		while (env->locks[i] != NULL) {
			struct sched_run_lock *n = env->locks[i];

			env->locks[i] = n->next;
			if (n->holder != NULL && n->holder->hold_ev != NULL) {
				event_free(n->holder->hold_ev);
				n->holder->hold_ev = NULL;
			}
			free(n); /* ops in progress or waiting are dropped at exit */
		}
	free(env->locks);
	env->locks = NULL;
}

/* The commit planned failed or will not be made: the run is read again. */
static void op_unsnap(struct sched_op *op)
{
	if (op->snap != NULL) {
		sched_snap_free(op->snap);
		free(op->snap);
		op->snap = NULL;
	}
}

/* The commit planned is made: its snapshot is the run's now (snapc.c). */
static void op_keep(struct sched_op *op)
{
	if (op->snap != NULL) {
		sched_snapc_put(op->env, op->run_id, op->snap);
		free(op->snap);
		op->snap = NULL;
	}
}

static void op_end(struct sched_op *op, enum sched_op_result r)
{
	struct sched_op *next = lock_pass(op);

	op_unsnap(op);

	if (op->hold_ev != NULL)
		event_free(op->hold_ev);
	if (op->done != NULL)
		op->done(op, r, op->opaque);
	op_clear_events(op);
	free(op->output);
	free(op->error);
	free(op);
	if (next != NULL)
		op_begin(next);
}

struct sched_op *sched_op_new(struct sched_env *env, enum sched_op_kind kind, const char *run_id,
			      sched_op_done_cb done, void *opaque)
{
	struct sched_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->env = env;
	op->kind = kind;
	op->idx = -1;
	snprintf(op->run_id, sizeof(op->run_id), "%s", run_id);
	op->done = done;
	op->opaque = opaque;
	return op;
}

static void op_count(struct sched_env *env, struct sched_op *op)
{
	sw_metrics_counter_add(env->metrics, "sagewai_scheduler_transitions_total",
			       "State transitions committed.", 1);
	if (op->dispatched)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_steps_dispatched_total",
				       "Step attempts dispatched.", op->dispatched);
	if (!op->finished_run)
		return;
	if (strcmp(op->run_state, RUN_SUCCEEDED) == 0)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_succeeded_total",
				       "Runs that succeeded.", 1);
	else if (strcmp(op->run_state, RUN_CANCELLED) == 0)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_cancelled_total",
				       "Runs cancelled.", 1);
	else
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_runs_failed_total",
				       "Runs that failed.", 1);
	sw_log(SW_LOG_INFO, "run finished", "run_id", op->run_id, "state", op->run_state, NULL);
}

static void op_tx_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_op *op = opaque;
	struct sched_env *env = op->env;

	if (err != NULL) {
		op_unsnap(op);
		if (strncmp(err, "SWREV", 5) == 0 || strncmp(err, "23505", 5) == 0) {
			/* the run moved on, or our own resent commit: read again */
			sw_metrics_counter_add(env->metrics, "sagewai_scheduler_conflicts_total",
					       "Transitions re-read after a concurrent change.",
					       1);
			op_clear_events(op);
			if (++op->tries < SCHED_MAX_TRIES) {
				op_read(op);
				return;
			}
		}
		snprintf(op->errmsg, sizeof(op->errmsg), "%s", err);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	if (op->nev > 0)
		sched_outbox_committed(env, res, op->ev, op->nev);
	op_keep(op);
	op_count(env, op);
	sched_sse_touch(env, op->run_id, sched_run_state_ended(op->run_state));
	op_end(op, SCHED_OP_APPLIED);
}

/*
 * Group commit. A planned transition (op->tx, its events in op->ev) joins
 * the queue; while fewer than SAGEWAI_GROUP_COMMITS (env->groups, 1 by
 * default) groups are in flight, the queue goes out as one transaction:
 * every op's statements (each guarded by its run's rev), then one outbox
 * INSERT of all their events. Under load the queue fills while a group
 * commits, so the outcomes of many runs share one COMMIT and one WAL
 * flush; one at a time, an op commits at once.
 *
 * A group that fails (a rev guard tripped, a duplicate, any refused
 * statement) is rolled back whole: its ops read their runs again and
 * commit alone (op->solo), where a failure is their own.
 */
struct group {
	struct sched_env *env;
	struct sched_op *ops[SCHED_GROUP_OPS];
	size_t n;
	struct sched_event evs[SCHED_GROUP_OPS * SCHED_OP_EVENTS]; /* borrowed from ops */
	size_t nev;
	char **ob_params;
	char *bparams[SCHED_B_N][SCHED_BATCH_COLS]; /* the batched statements' arrays */
	size_t batched[SCHED_B_N];		    /* rows of each (0: not sent batched) */
	int key_plans;				    /* sched_key_plans_sql is in st */
};

static void group_flush(struct sched_env *env);

/* sched_key_plans_sql into st at *nst, once a group: for the rest of its
 * transaction (schema.c). */
static void group_key_plans(struct group *g, struct sw_store_stmt *st, size_t *nst)
{
	if (g->key_plans)
		return;
	st[*nst].sql = sched_key_plans_sql;
	st[*nst].nparams = 0;
	st[(*nst)++].params = NULL;
	g->key_plans = 1;
}

static void group_free(struct group *g)
{
	int k, c;

	sched_outbox_params_free(g->ob_params);
	free(g->ob_params);
	for (k = 0; k < SCHED_B_N; k++)
		for (c = 0; c < SCHED_BATCH_COLS; c++)
			free(g->bparams[k][c]);
	free(g);
}

/* op's statements may go into the group's batches: none of a batch kind
 * twice (one row per run and kind) and each with its kind's parameters. */
static int op_batchable(const struct sched_op *op)
{
	unsigned seen = 0;
	size_t j;
	int k;

	for (j = 0; j < op->tx->n; j++) {
		if ((k = op->tx->batch[j]) == SCHED_B_NONE)
			continue;
		if (k >= SCHED_B_N || (seen & (1u << k)) ||
		    op->tx->st[j].nparams != sched_batch_stmts[k].ncols)
			return 0;
		seen |= 1u << k;
	}
	return 1;
}

/* The arrays of batch k over the group's batchable ops; -1 out of memory. */
static int group_batch_arrays(struct group *g, const int *ok, int k)
{
	struct sw_buf b[SCHED_BATCH_COLS];
	const struct sched_tx *tx;
	size_t i, j, rows = 0;
	int c, oom = 0;

	for (c = 0; c < sched_batch_stmts[k].ncols; c++) {
		sw_buf_init(&b[c], 0);
		sw_buf_add(&b[c], "{", 1);
	}
	for (i = 0; i < g->n; i++) {
		if (!ok[i])
			continue;
		tx = g->ops[i]->tx;
		for (j = 0; j < tx->n; j++) {
			if (tx->batch[j] != k)
				continue;
			for (c = 0; c < sched_batch_stmts[k].ncols; c++)
				sw_store_array_elem(&b[c], tx->st[j].params[c], rows == 0);
			rows++;
		}
	}
	for (c = 0; c < sched_batch_stmts[k].ncols; c++) {
		sw_buf_add(&b[c], "}", 1);
		if (b[c].oom) {
			oom = 1;
			sw_buf_free(&b[c]);
			continue;
		}
		g->bparams[k][c] = sw_buf_steal(&b[c], NULL);
	}
	g->batched[k] = rows;
	return oom ? -1 : 0;
}

/*
 * The group's statements into st (room for every op's statements, one a
 * batch, the plan settings, one an answer each, and the outbox INSERT): the
 * revision guards first, then what each op sends as it planned it (a
 * submit's inserts, a step's other transitions), in op order, then the
 * plan settings and the batches, so that a batched update of a row follows
 * what an op planned before it (a new run's steps are inserted before the
 * first is dispatched). Returns the count, or -1 when out of memory.
 */
static long group_stmts(struct group *g, struct sw_store_stmt *st)
{
	static const enum sched_rows after[] = {SCHED_B_STEP_OK, SCHED_B_DISPATCH,
						SCHED_B_RUN_END};
	int ok[SCHED_GROUP_OPS], k;
	size_t cnt[SCHED_B_N] = {0}, i, j, nst = 0;
	struct sched_tx *tx;

	for (i = 0; i < g->n; i++) {
		ok[i] = op_batchable(g->ops[i]);
		for (j = 0; ok[i] && j < g->ops[i]->tx->n; j++)
			cnt[g->ops[i]->tx->batch[j]]++;
	}
	/* one row goes as it is: the same statement, planned once */
	for (k = SCHED_B_NONE + 1; k < SCHED_B_N; k++)
		if (cnt[k] >= 2 && group_batch_arrays(g, ok, k) == -1)
			return -1;
	if (g->batched[SCHED_B_REV] > 0) {
		st[nst].sql = sched_batch_stmts[SCHED_B_REV].sql;
		st[nst].nparams = sched_batch_stmts[SCHED_B_REV].ncols;
		st[nst++].params = (const char *const *)g->bparams[SCHED_B_REV];
	}
	for (i = 0; i < g->n; i++) {
		tx = g->ops[i]->tx;
		for (j = 0; j < tx->n; j++)
			if (!ok[i] || g->batched[tx->batch[j]] == 0)
				st[nst++] = tx->st[j];
	}
	for (i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
		if (g->batched[after[i]] == 0)
			continue;
		group_key_plans(g, st, &nst);
		st[nst].sql = sched_batch_stmts[after[i]].sql;
		st[nst].nparams = sched_batch_stmts[after[i]].ncols;
		st[nst++].params = (const char *const *)g->bparams[after[i]];
	}
	return (long)nst;
}

static void op_untx(struct sched_op *op)
{
	if (op->tx != NULL) {
		sched_tx_free(op->tx);
		free(op->tx);
		op->tx = NULL;
	}
}

/* A submit committed alone (its group failed). */
static void submit_alone_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_op *op = opaque;

	if (err == NULL && op->nev > 0)
		sched_outbox_committed(op->env, res, op->ev, op->nev);
	if (err == NULL)
		op_keep(op);
	op_untx(op);
	if (err != NULL) {
		snprintf(op->errmsg, sizeof(op->errmsg), "%s", err);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	op_end(op, SCHED_OP_APPLIED);
}

/* A submit's plan holds: send it again alone, its outbox INSERT last. */
static void submit_alone(struct sched_op *op)
{
	sched_tx_outbox(op->tx, op->ev, op->nev);
	if (op->tx->oom || sw_store_tx_key(op->env->store, op->run_id, op->tx->st, op->tx->n,
					   submit_alone_cb, op) == -1) {
		op_untx(op);
		snprintf(op->errmsg, sizeof(op->errmsg), "cannot queue the submission");
		op_end(op, SCHED_OP_ERROR);
	}
}

static void group_cb(PGresult *res, const char *err, void *opaque)
{
	struct group *g = opaque;
	struct sched_env *env = g->env;
	struct sched_op *op;
	size_t i, rows;

	env->committing--;
	if (err != NULL && g->n > 1)
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_group_retries_total",
				       "Group commits rolled back and retried alone.", 1);
	for (i = 0; i < g->n; i++) {
		op = g->ops[i];
		if (err != NULL && op->kind == SCHED_OP_SUBMIT && g->n > 1) {
			submit_alone(op);
			continue;
		}
		op_untx(op);
		if (err != NULL && op->kind == SCHED_OP_SUBMIT) {
			snprintf(op->errmsg, sizeof(op->errmsg), "%s", err);
			op_end(op, SCHED_OP_ERROR);
		} else if (err != NULL && g->n == 1) {
			op_tx_cb(NULL, err, op);
		} else if (err != NULL) {
			op->solo = 1;
			op_unsnap(op);
			op_clear_events(op);
			op_read(op);
		}
	}
	if (err == NULL) {
		if (g->nev > 0)
			sched_outbox_committed(env, res, g->evs, g->nev);
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_group_commits_total",
				       "Transactions that committed transitions.", 1);
		for (i = SCHED_B_NONE + 1, rows = 0; i < SCHED_B_N; i++)
			rows += g->batched[i];
		if (rows > 0)
			sw_metrics_counter_add(
			    env->metrics, "sagewai_scheduler_batched_rows_total",
			    "Rows of transitions committed by a statement a group"
			    " sent once for many runs.",
			    (double)rows);
		for (i = 0; i < g->n; i++) {
			op = g->ops[i];
			op_keep(op);
			if (op->kind != SCHED_OP_SUBMIT) {
				op_count(env, op);
				sched_sse_touch(env, op->run_id,
						sched_run_state_ended(op->run_state));
			}
			op_end(op, SCHED_OP_APPLIED);
		}
	}
	group_free(g);
	group_flush(env);
}

/* The run as the commit leaves it, read in the commit (sched_wait_tenant),
 * for the waiting submit: answered before the group's ops end, sparing the
 * round trip of a read after the commit. Only in a small group: one at a
 * time it is the answer's last hop, while under load the reads of a large
 * group would lengthen its transaction (SCHED_GROUP_ANSWERS). */
static void group_answer_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_op *op = opaque;

	if (err == NULL)
		sched_wait_answer(op->env, op->run_id, op->answer_tenant, res);
}

static void group_flush(struct sched_env *env)
{
	struct sw_store_stmt *st = NULL;
	struct sw_store_each *each = NULL;
	struct group *g;
	struct sched_op *op;
	const char *t;
	size_t i, j, nst = 0, neach;
	long ns;

	while (env->committing < env->groups && env->cq_head != NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL)
			goto oom;
		g->env = env;
		while (g->n < SCHED_GROUP_OPS && (op = env->cq_head) != NULL) {
			env->cq_head = op->next_commit;
			if (env->cq_head == NULL)
				env->cq_tail = NULL;
			env->cq_n--;
			op->next_commit = NULL;
			g->ops[g->n++] = op;
			nst += op->tx->n;
			for (j = 0; j < op->nev; j++)
				g->evs[g->nev++] = op->ev[j];
		}
		if ((st = calloc(nst + 2 + g->n + SCHED_B_N, sizeof(*st))) == NULL ||
		    (each = calloc(g->n, sizeof(*each))) == NULL || (ns = group_stmts(g, st)) < 0)
			goto fail;
		nst = (size_t)ns;
		neach = 0;
		for (i = 0; i < g->n; i++) {
			op = g->ops[i];
			op->answer_tenant[0] = '\0';
			if (g->n > SCHED_GROUP_ANSWERS || !op->finished_run ||
			    (t = sched_wait_tenant(env, op->run_id)) == NULL)
				continue;
			/* after every statement of the group: it sees the op's;
			 * planned as the run read always is (sched_run_read) */
			group_key_plans(g, st, &nst);
			snprintf(op->answer_tenant, sizeof(op->answer_tenant), "%s", t);
			op->answer_params[0] = op->run_id;
			op->answer_params[1] = op->answer_tenant;
			st[nst].sql = sched_run_json_sql;
			st[nst].nparams = 2;
			st[nst].params = op->answer_params;
			each[neach].stmt = nst++;
			each[neach].cb = group_answer_cb;
			each[neach++].opaque = op;
		}
		if (g->nev > 0) {
			if ((g->ob_params = calloc(4, sizeof(*g->ob_params))) == NULL ||
			    sched_outbox_params(g->evs, g->nev, g->ob_params) == -1)
				goto fail;
			st[nst].sql = sched_outbox_insert_sql;
			st[nst].nparams = 4;
			st[nst].params = (const char *const *)g->ob_params;
			nst++;
		}
		if (sw_store_tx_each(env->store, NULL, st, nst, each, neach, group_cb, g) == -1)
			goto fail;
		env->committing++;
		free(st);
		free(each);
		st = NULL;
		each = NULL;
		nst = 0;
	}
	return;
fail:
	/* the group's ops go back to committing alone */
	free(st);
	free(each);
	for (i = 0; i < g->n; i++) {
		op = g->ops[i];
		if (op->kind == SCHED_OP_SUBMIT) {
			submit_alone(op);
			continue;
		}
		op_untx(op);
		op->solo = 1;
		op_unsnap(op);
		op_clear_events(op);
		op_read(op);
	}
	group_free(g);
	return;
oom:
	sw_service_fatal(env->svc, "group commit", "out of memory");
}

static void group_queue(struct sched_op *op)
{
	struct sched_env *env = op->env;

	if (env->cq_tail != NULL)
		env->cq_tail->next_commit = op;
	else
		env->cq_head = op;
	env->cq_tail = op;
	env->cq_n++;
	group_flush(env);
}

void sched_op_commit(struct sched_op *op)
{
	group_queue(op);
}

/* Decide op on its run's snapshot s (from memory when cached, else read;
 * moved: op or the cache owns it after) and commit what the machine says.
 * Only a decision to commit is taken on a snapshot in memory: any other is
 * taken again on the run as read. */
static void op_decide(struct sched_op *op, struct sched_snap *s, int cached)
{
	struct sched_env *env = op->env;
	struct sched_plan p;
	enum sched_fsm_verdict v;
	const char *rev;
	int lazy;

	snprintf(op->run_state, sizeof(op->run_state), "%s", sched_run_state_name(s->run.state));
	if (s->processed) {
		sched_snap_free(s); /* read: it may show a mark not yet durable */
		op_end(op, SCHED_OP_IGNORED);
		return;
	}
	sched_plan_init(&p, env, s, op->run_id, op->ev, &op->nev);
	rev = sched_tx_fmt(&p.tx, "%lld", s->rev);
	sched_tx_add(&p.tx, "SELECT bump_rev($1::uuid, $2::bigint)", 2, op->run_id, rev);
	sched_tx_batch(&p.tx, SCHED_B_REV);
	v = sched_plan_op(&p, op);
	if (v != SCHED_FSM_APPLY && cached) {
		/* only a commit is guarded by the run's rev: a snapshot in memory
		 * that says "nothing to do" may be one another instance has moved
		 * past (an outcome of an attempt it dispatched), so the run is
		 * read and the event decided again on what is stored */
		sched_tx_free(&p.tx);
		op_clear_events(op);
		sched_snap_free(s);
		memset(s, 0, sizeof(*s));
		sw_metrics_counter_add(env->metrics, "sagewai_scheduler_snapshot_rereads_total",
				       "Transitions whose snapshot in memory said nothing to do,"
				       " read again.",
				       1);
		op->uncached = 1;
		op_read(op);
		return;
	}
	if (v == SCHED_FSM_APPLY && (op->snap = malloc(sizeof(*op->snap))) != NULL) {
		/* the run as the commit will leave it (bump_rev) */
		*op->snap = *s;
		op->snap->rev++;
		op->snap->bytes += op->output != NULL ? strlen(op->output) : 0;
	} else {
		sched_snap_free(s);
	}
	memset(s, 0, sizeof(*s));
	/* step.started (not folded into its outcome) is a mark: it moves a
	 * step from dispatched to running and causes no event. Its commit
	 * does not wait for the disk; lost in a crash, the step shows
	 * dispatched until its outcome, which the machine takes from either
	 * state (docs/RUNS.md). */
	lazy = v == SCHED_FSM_APPLY && op->kind == SCHED_OP_STARTED && op->nev == 0;
	if (lazy)
		op_unsnap(op); /* a mark: the next transition reads the run */
	if (v != SCHED_FSM_APPLY) {
		sched_tx_free(&p.tx);
		op_clear_events(op);
		if (v == SCHED_FSM_TERMINAL) {
			op_end(op, SCHED_OP_TERMINAL);
			return;
		}
		op_end(op, SCHED_OP_IGNORED);
		return;
	}
	if (p.tx.oom || p.failed) {
		snprintf(op->errmsg, sizeof(op->errmsg), "cannot build the transition: %.200s",
			 p.failed ? p.errstr : "out of memory");
		sched_tx_free(&p.tx);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	if (p.finished_run)
		snprintf(op->run_state, sizeof(op->run_state), "%s", p.run_state);
	op->finished_run = p.finished_run;
	op->dispatched = p.dispatched;
	if (!lazy && !op->solo) {
		/* its events go into the group's one outbox INSERT */
		if ((op->tx = sched_tx_move(&p.tx)) == NULL) {
			sched_tx_free(&p.tx);
			snprintf(op->errmsg, sizeof(op->errmsg), "out of memory");
			op_end(op, SCHED_OP_ERROR);
			return;
		}
		group_queue(op);
		return;
	}
	sched_tx_outbox(&p.tx, op->ev, op->nev);
	if (p.tx.oom) {
		sched_tx_free(&p.tx);
		snprintf(op->errmsg, sizeof(op->errmsg), "out of memory");
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	if (lazy && p.tx.n < SCHED_TX_STMTS) {
		memmove(&p.tx.st[1], &p.tx.st[0], p.tx.n * sizeof(p.tx.st[0]));
		memmove(&p.tx.batch[1], &p.tx.batch[0], p.tx.n * sizeof(p.tx.batch[0]));
		p.tx.batch[0] = SCHED_B_NONE;
		p.tx.st[0].sql = SCHED_LAZY_SQL;
		p.tx.st[0].nparams = 0;
		p.tx.st[0].params = NULL;
		p.tx.n++;
	}
	if (sw_store_tx_key(env->store, op->run_id, p.tx.st, p.tx.n, op_tx_cb, op) == -1) {
		sched_tx_free(&p.tx);
		snprintf(op->errmsg, sizeof(op->errmsg), "cannot queue the transition");
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	sched_tx_free(&p.tx);
}

static void op_read_cb(PGresult *res, const char *err, void *opaque)
{
	struct sched_op *op = opaque;
	struct sched_snap s;

	if (err != NULL) {
		snprintf(op->errmsg, sizeof(op->errmsg), "%s", err);
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	if (PQntuples(res) != 1) {
		op_end(op, SCHED_OP_NOT_FOUND);
		return;
	}
	if (sched_snap_load(op->env, &s, res, op->errmsg, sizeof(op->errmsg)) == -1) {
		op_end(op, SCHED_OP_ERROR);
		return;
	}
	op_decide(op, &s, 0);
}

static void op_read(struct sched_op *op)
{
	const char *params[3] = {op->run_id, op->event_id[0] ? op->event_id : NULL,
				 op->kind == SCHED_OP_CANCEL ? op->tenant : NULL};
	struct sched_snap s;

	/* the first try decides on the snapshot in memory, if there is one;
	 * a conflict or a failed group reads the run */
	if (op->tries == 0 && !op->solo && !op->uncached &&
	    sched_snapc_take(op->env, op->run_id, &s) == 0) {
		if (op->kind == SCHED_OP_CANCEL && strcmp(s.tenant, op->tenant) != 0) {
			sched_snapc_put(op->env, op->run_id, &s);
			op_end(op, SCHED_OP_NOT_FOUND);
			return;
		}
		op_decide(op, &s, 1);
		return;
	}
	if (sw_store_query_key(op->env->store, op->run_id, sched_snap_sql, 3, params, op_read_cb,
			       op) == -1) {
		snprintf(op->errmsg, sizeof(op->errmsg), "cannot queue the read");
		op_end(op, SCHED_OP_ERROR);
	}
}

/* A step.started with the step.finished of the same attempt waiting
 * behind it: the outcome's transition covers it. */
static int op_superseded(struct sched_op *op)
{
	struct sched_run_lock *n;
	struct sched_op *w;

	if (op->kind != SCHED_OP_STARTED || (n = *lock_slot(op->env, op->run_id)) == NULL)
		return 0;
	for (w = n->head; w != NULL; w = w->next_waiting)
		if (op_supersedes(w, op))
			return 1;
	return 0;
}

static void op_fold(struct sched_op *op)
{
	sw_metrics_counter_add(op->env->metrics, "sagewai_scheduler_started_folded_total",
			       "step.started events folded into their step.finished transition.",
			       1);
	op_end(op, SCHED_OP_IGNORED);
}

/* The hold of a step.started is over: its outcome came (lock_take woke
 * us), or it did not come in time and the step is marked running. */
static void op_hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_op *op = arg;

	(void)fd;
	(void)what;
	event_free(op->hold_ev);
	op->hold_ev = NULL;
	if (op_superseded(op))
		op_fold(op);
	else
		op_read(op);
}

/* op holds its run: go, unless something behind it makes it moot; a
 * step.started first waits a moment for its outcome. */
static void op_begin(struct sched_op *op)
{
	struct timeval tv = {0, SCHED_STARTED_HOLD_MS * 1000};

	if (op_superseded(op)) {
		op_fold(op);
		return;
	}
	if (op->kind == SCHED_OP_STARTED && !op->env->stopping &&
	    (op->hold_ev = evtimer_new(op->env->base, op_hold_cb, op)) != NULL) {
		if (evtimer_add(op->hold_ev, &tv) == 0)
			return;
		event_free(op->hold_ev);
		op->hold_ev = NULL;
	}
	op_read(op);
}

void sched_ops_start(struct sched_op **ops, size_t n)
{
	struct sched_op *op;
	size_t i, k = 0;

	/* ops[0..k) become the ones that hold their run at once; the others
	 * wait in their run's queue and may be begun (and freed) as soon as an
	 * op before them ends, so they are not touched again here. */
	for (i = 0; i < n; i++) {
		op = ops[i];
		switch (lock_take(op)) {
		case 1:
			ops[k++] = op;
			break;
		case 0:
			break;
		default:
			snprintf(op->errmsg, sizeof(op->errmsg), "out of memory");
			if (op->done != NULL)
				op->done(op, SCHED_OP_ERROR, op->opaque);
			free(op->output);
			free(op->error);
			free(op);
		}
	}
	/* a holder lives until its own op_end, which only its op_begin reaches */
	for (i = 0; i < k; i++)
		op_begin(ops[i]);
}

void sched_op_start(struct sched_op *op)
{
	sched_ops_start(&op, 1);
}
