/*
 * pool.c: the sandboxes of this host, and the thread that starts and
 * destroys them.
 *
 * Starting (bwrap, then the runner's READY) and destroying (kill, wait,
 * reap) block for milliseconds, so they never run on the loop: the pool
 * thread does them, in this order of priority: destroy what the loop gave
 * back, start what a job waits for (a cold start), refill the warm pools.
 * A warm pool per (variant, network) holds up to warm_target started
 * sandboxes with no identity; an acquire takes one under the mutex and
 * wakes the thread to start its replacement. A sandbox serves one step and
 * is destroyed afterwards, never reused.
 *
 * The thread outlives every sandbox it forked (bwrap's --die-with-parent
 * is tied to the forking thread): it stops only after destroying them all.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandboxd.h"

static const char *const sandbox_env[] = {"PATH=" SBD_PATH, "HOME=" SW_SANDBOX_WORKSPACE, NULL};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Pool thread: start one sandbox into s (s->sb NULL and s->err on failure). */
static void slot_start(struct sbd_pool *p, struct sbd_slot *s, const struct sw_sandbox_variant *v,
		       enum sw_sandbox_net net, const struct sw_sandbox_limits *limits)
{
	struct sw_sandbox_spec spec = {
	    .variant = v,
	    .net = net,
	    .env = sandbox_env,
	    .workspace = s->workspace,
	    .start_timeout_ms = 10000,
	};
	int64_t t0 = sw_mono_ns();

	if (limits != NULL)
		spec.limits = *limits;
	snprintf(s->workspace, sizeof(s->workspace), "%s/ws-%llu", p->state_dir,
		 (unsigned long long)++p->seq);
	if (mkdir(s->workspace, 0700) != 0) {
		snprintf(s->err, sizeof(s->err), "workspace %.400s: %s", s->workspace,
			 strerror(errno));
		s->workspace[0] = '\0';
		return;
	}
	s->sb = sw_sandbox_create(p->be, &spec, s->err, sizeof(s->err));
	s->start_us = (sw_mono_ns() - t0) / 1000;
	if (s->sb == NULL) {
		nftw(s->workspace, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		s->workspace[0] = '\0';
	}
}

/* Pool thread: destroy s's sandbox and workspace; s itself stays. */
static void slot_destroy(struct sbd_slot *s)
{
	if (s->sb != NULL)
		sw_sandbox_destroy(s->sb, &s->final);
	s->sb = NULL;
	if (s->workspace[0] != '\0')
		nftw(s->workspace, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	s->workspace[0] = '\0';
}

/* A warm pool below its target and not failing, or NULL. Under mu. */
static struct sbd_warm *needy(struct sbd_pool *p)
{
	struct sbd_warm *w;

	LIST_FOREACH(w, &p->warms, entry)
	if (!w->broken && w->nready + w->starting < p->warm_target)
		return w;
	return NULL;
}

static void *pool_main(void *arg)
{
	struct sbd_pool *p = arg;
	struct sbd_slot *s;
	struct sbd_warm *w;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		if ((s = TAILQ_FIRST(&p->doomed)) != NULL) {
			TAILQ_REMOVE(&p->doomed, s, entry);
			pthread_mutex_unlock(&p->mu);
			slot_destroy(s);
			pthread_mutex_lock(&p->mu);
			TAILQ_INSERT_TAIL(&p->gone, s, entry);
			event_active(p->ev, EV_READ, 0);
			continue;
		}
		if (p->stop)
			break;
		if ((s = TAILQ_FIRST(&p->cold)) != NULL) {
			TAILQ_REMOVE(&p->cold, s, entry);
			w = s->warm;
			pthread_mutex_unlock(&p->mu);
			slot_start(p, s, w->v, w->net, &s->limits);
			pthread_mutex_lock(&p->mu);
			w->started += s->sb != NULL;
			w->failed += s->sb == NULL;
			TAILQ_INSERT_TAIL(&p->started, s, entry);
			event_active(p->ev, EV_READ, 0);
			continue;
		}
		if ((w = needy(p)) != NULL) {
			if ((s = calloc(1, sizeof(*s))) == NULL) {
				w->broken = 1;
				continue;
			}
			s->warm = w;
			w->starting++;
			pthread_mutex_unlock(&p->mu);
			slot_start(p, s, w->v, w->net, NULL);
			pthread_mutex_lock(&p->mu);
			w->starting--;
			if (s->sb != NULL) {
				w->started++;
				w->start_us_sum += s->start_us;
				w->start_us_last = s->start_us;
				TAILQ_INSERT_TAIL(&w->ready, s, entry);
				w->nready++;
			} else {
				/* keep the reason for the log; retry on demand */
				w->failed++;
				w->broken = 1;
				TAILQ_INSERT_TAIL(&p->gone, s, entry);
			}
			event_active(p->ev, EV_READ, 0);
			continue;
		}
		pthread_cond_wait(&p->cv, &p->mu);
	}
	/* stopping: nothing is handed out any more; destroy what is held */
	LIST_FOREACH(w, &p->warms, entry)
	{
		while ((s = TAILQ_FIRST(&w->ready)) != NULL) {
			TAILQ_REMOVE(&w->ready, s, entry);
			w->nready--;
			pthread_mutex_unlock(&p->mu);
			slot_destroy(s);
			pthread_mutex_lock(&p->mu);
			TAILQ_INSERT_TAIL(&p->gone, s, entry);
		}
	}
	TAILQ_FOREACH(s, &p->started, entry)
	{
		pthread_mutex_unlock(&p->mu);
		slot_destroy(s);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void released(struct sbd_env *env, struct sbd_slot *s)
{
	json_t *o;

	if (s->h.run_id[0] == '\0')
		return;
	o = json_pack("{s:s, s:s, s:I, s:I, s:I}", "sandbox_id", s->id, "reason", s->reason,
		      "utime_us", (json_int_t)s->final.utime_us, "stime_us",
		      (json_int_t)s->final.stime_us, "maxrss_kb", (json_int_t)s->final.maxrss_kb);
	sbd_emit(env, "sandbox.released", &s->h, o);
}

/* Loop: take what the thread finished. */
static void pool_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_env *env = arg;
	struct sbd_pool *p = &env->pool;
	struct sbd_slotq started, gone;
	struct sbd_slot *s;

	(void)fd;
	(void)what;
	TAILQ_INIT(&started);
	TAILQ_INIT(&gone);
	pthread_mutex_lock(&p->mu);
	TAILQ_CONCAT(&started, &p->started, entry);
	TAILQ_CONCAT(&gone, &p->gone, entry);
	pthread_mutex_unlock(&p->mu);
	while ((s = TAILQ_FIRST(&started)) != NULL) {
		TAILQ_REMOVE(&started, s, entry);
		if (s->job != NULL) {
			struct sbd_job *j = s->job;

			s->job = NULL;
			sbd_exec_acquired(j, s);
		} else {
			snprintf(s->reason, sizeof(s->reason), "abandoned");
			sbd_pool_release(env, s);
		}
	}
	while ((s = TAILQ_FIRST(&gone)) != NULL) {
		TAILQ_REMOVE(&gone, s, entry);
		if (s->err[0] != '\0' && s->h.run_id[0] == '\0')
			sw_log(SW_LOG_WARN, "warm sandbox did not start", "error", s->err, NULL);
		released(env, s);
		free(s);
	}
	sbd_pool_metrics(env);
}

int sbd_pool_start(struct sbd_env *env, const char *runner, const char *bwrap, char *errstr,
		   size_t errlen)
{
	struct sbd_pool *p = &env->pool;
	struct sw_sandbox_bwrap_config bc = {.bwrap_path = bwrap, .runner_path = runner};

	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	LIST_INIT(&p->warms);
	TAILQ_INIT(&p->cold);
	TAILQ_INIT(&p->started);
	TAILQ_INIT(&p->doomed);
	TAILQ_INIT(&p->gone);
	/* workspaces live here and must be searchable by the run uid */
	if (chmod(p->state_dir, 0711) != 0) {
		snprintf(errstr, errlen, "state dir %s: %s", p->state_dir, strerror(errno));
		return -1;
	}
	bc.state_dir = p->state_dir;
	if ((p->be = sw_sandbox_bwrap_new(&bc, errstr, errlen)) == NULL)
		return -1;
	if ((p->ev = event_new(env->base, -1, 0, pool_cb, env)) == NULL) {
		snprintf(errstr, errlen, "event_new failed");
		return -1;
	}
	if (pthread_create(&p->th, NULL, pool_main, p) != 0) {
		snprintf(errstr, errlen, "cannot start the pool thread");
		return -1;
	}
	p->running = 1;
	return 0;
}

static void slotq_free(struct sbd_slotq *q)
{
	struct sbd_slot *s;

	while ((s = TAILQ_FIRST(q)) != NULL) {
		TAILQ_REMOVE(q, s, entry);
		free(s);
	}
}

void sbd_pool_stop(struct sbd_env *env)
{
	struct sbd_pool *p = &env->pool;
	struct sbd_warm *w;

	if (p->running) {
		pthread_mutex_lock(&p->mu);
		p->stop = 1;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->th, NULL);
		p->running = 0;
	}
	/* cold starts nobody began: nothing runs for them */
	slotq_free(&p->cold);
	slotq_free(&p->started);
	slotq_free(&p->gone);
	slotq_free(&p->doomed);
	while ((w = LIST_FIRST(&p->warms)) != NULL) {
		LIST_REMOVE(w, entry);
		slotq_free(&w->ready);
		sw_sandbox_variant_free(w->v);
		free(w);
	}
	if (p->ev != NULL)
		event_free(p->ev);
	p->ev = NULL;
	sw_sandbox_backend_free(p->be);
	p->be = NULL;
}

struct sbd_warm *sbd_pool_warm(struct sbd_env *env, const char *variant, enum sw_sandbox_net net,
			       char *errstr, size_t errlen)
{
	struct sbd_pool *p = &env->pool;
	struct sw_sandbox_variant *v;
	struct sbd_warm *w;

	/* only the loop adds pools, so reading the list here needs no lock */
	LIST_FOREACH(w, &p->warms, entry)
	if (w->net == net && strcmp(w->variant, variant) == 0)
		return w;
	/* a small local file, read once per variant */
	if ((v = sw_sandbox_variant_load(p->variants_dir, variant, errstr, errlen)) == NULL)
		return NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		sw_sandbox_variant_free(v);
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	snprintf(w->variant, sizeof(w->variant), "%s", v->name);
	w->net = net;
	w->v = v;
	TAILQ_INIT(&w->ready);
	pthread_mutex_lock(&p->mu);
	LIST_INSERT_HEAD(&p->warms, w, entry);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return w;
}

struct sbd_slot *sbd_pool_acquire(struct sbd_job *j, int *queued, char *errstr, size_t errlen)
{
	struct sbd_env *env = j->env;
	struct sbd_pool *p = &env->pool;
	struct sbd_warm *w = j->warm;
	struct sbd_slot *s;

	*queued = 0;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		s = j->custom_limits ? NULL : TAILQ_FIRST(&w->ready);
		if (s == NULL)
			break;
		TAILQ_REMOVE(&w->ready, s, entry);
		w->nready--;
		pthread_cond_signal(&p->cv); /* start its replacement */
		pthread_mutex_unlock(&p->mu);
		/* a runner that died or spoke while waiting is not handed out */
		if (sw_sandbox_read(s->sb, NULL, NULL) == 0) {
			pthread_mutex_lock(&p->mu);
			w->hits++;
			pthread_mutex_unlock(&p->mu);
			s->from_warm = true;
			sw_uuid_v7_str(s->id);
			sbd_pool_metrics(env);
			return s;
		}
		sw_log(SW_LOG_WARN, "warm sandbox died while waiting", "error",
		       sw_sandbox_error(s->sb), NULL);
		snprintf(s->reason, sizeof(s->reason), "died");
		sbd_pool_release(env, s);
	}
	/* a cold start, on the thread */
	w->misses++;
	w->broken = 0;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		pthread_mutex_unlock(&p->mu);
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	sw_uuid_v7_str(s->id);
	s->warm = w;
	s->limits = j->limits;
	s->job = j;
	TAILQ_INSERT_TAIL(&p->cold, s, entry);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	j->slot = s;
	j->slot_pending = 1;
	*queued = 1;
	sbd_pool_metrics(env);
	return NULL;
}

void sbd_pool_release(struct sbd_env *env, struct sbd_slot *s)
{
	struct sbd_pool *p = &env->pool;

	if (s->sb != NULL)
		sw_sandbox_kill(s->sb); /* at once; the thread waits for it */
	pthread_mutex_lock(&p->mu);
	TAILQ_INSERT_TAIL(&p->doomed, s, entry);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void sbd_pool_abandon(struct sbd_env *env, struct sbd_job *j)
{
	(void)env;
	/* the slot is the thread's until it comes back through pool_cb, which
	 * then releases it; only the loop reads slot->job */
	if (j->slot != NULL && j->slot_pending)
		j->slot->job = NULL;
	j->slot = NULL;
	j->slot_pending = 0;
}

void sbd_pool_metrics(struct sbd_env *env)
{
	struct sbd_pool *p = &env->pool;
	uint64_t hits = 0, misses = 0, started = 0, failed = 0;
	size_t ready = 0, npools = 0;
	int64_t sum = 0, last = 0;
	struct sbd_warm *w;

	pthread_mutex_lock(&p->mu);
	LIST_FOREACH(w, &p->warms, entry)
	{
		hits += w->hits;
		misses += w->misses;
		started += w->started;
		failed += w->failed;
		ready += w->nready;
		sum += w->start_us_sum;
		if (w->start_us_last > last)
			last = w->start_us_last;
		npools++;
	}
	pthread_mutex_unlock(&p->mu);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_warm_ready",
			     "Warm sandboxes started and waiting, all pools", (double)ready);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_warm_target",
			     "Warm sandboxes kept per (variant, network)", (double)p->warm_target);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_warm_pools",
			     "(variant, network) pools known", (double)npools);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_acquire_hits",
			     "Acquires served by a warm sandbox", (double)hits);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_acquire_misses",
			     "Acquires that needed a cold start", (double)misses);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_warm_started",
			     "Warm sandboxes started", (double)started);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_start_failures",
			     "Sandbox starts that failed", (double)failed);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_warm_start_seconds_last",
			     "Start time of the last warm sandbox", (double)last / 1e6);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_warm_start_seconds_avg",
			     "Mean start time of warm sandboxes",
			     started ? (double)sum / 1e6 / (double)started : 0);
}
