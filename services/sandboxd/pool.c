/*
 * pool.c: the sandboxes of this host, and the thread that starts and
 * destroys them.
 *
 * Starting and destroying are done by the privileged part (priv.c) and
 * block for milliseconds, so they never run on the loop: the pool thread
 * makes those round trips, in this order of priority: destroy what the loop gave
 * back, start what a job waits for (a cold start), refill the warm pools.
 * A warm pool per (variant, network) holds up to warm_target started
 * sandboxes with no identity; an acquire takes one under the mutex and
 * wakes the thread to start its replacement. A sandbox serves one step and
 * is destroyed afterwards, never reused.
 *
 * The thread is the pool's sw_handoff (one thread; the loop queues under
 * h.mu and signals, the thread wakes the loop for pool_cb). It outlives
 * every sandbox it forked (bwrap's --die-with-parent is tied to the forking
 * thread): it stops only after destroying them all, and sbd_pool_stop
 * waits for it without a limit.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandboxd.h"

/* Pool thread: start one sandbox into s (s->sb NULL and s->err on failure),
 * through the privileged part. */
static void slot_start(struct sbd_pool *p, struct sbd_slot *s, const struct sw_sandbox_variant *v,
		       enum sw_sandbox_net net, const struct sw_sandbox_limits *limits)
{
	struct sbd_priv_sandbox c;
	int64_t t0 = sw_mono_ns();

	s->egress_fd = -1;
	if (sbd_priv_create(p->priv_fd, v->name, net, limits, &c, s->err, sizeof(s->err)) != 0)
		return;
	s->handle = c.handle;
	s->egress_fd = c.egress_fd;
	s->sb = sw_sandbox_attach(c.ctl_fd, &c.limits, true, s->err, sizeof(s->err));
	s->start_us = (sw_mono_ns() - t0) / 1000;
}

/* Pool thread: destroy s's sandbox; s itself stays. */
static void slot_destroy(struct sbd_pool *p, struct sbd_slot *s)
{
	char err[256];

	if (s->egress_fd >= 0)
		close(s->egress_fd);
	s->egress_fd = -1;
	/* closing the control socket ends the runner, pid 1 of the sandbox */
	sw_sandbox_destroy(s->sb, NULL);
	s->sb = NULL;
	if (s->handle != 0 && sbd_priv_destroy(p->priv_fd, s->handle, &s->final, err,
					       sizeof(err)) != 0)
		sw_log(SW_LOG_WARN, "sandbox destroy failed", "error", err, NULL);
	s->handle = 0;
}

/* A warm pool below its target and not failing, or NULL. Under h.mu. */
static struct sbd_warm *needy(struct sbd_pool *p)
{
	struct sbd_warm *w;

	LIST_FOREACH(w, &p->warms, entry)
	if (!w->broken && w->nready + w->starting < p->warm_target)
		return w;
	return NULL;
}

/* The pool thread. In order: destroy what the loop gave back (stopping
 * too), start what a job waits for, refill the warm pools; then wait. */
static void *pool_main(struct sw_handoff *h, void *arg)
{
	struct sbd_env *env = arg;
	struct sbd_pool *p = &env->pool;
	struct sbd_slot *s;
	struct sbd_warm *w;

	sw_handoff_lock(h);
	for (;;) {
		if ((s = TAILQ_FIRST(&p->doomed)) != NULL) {
			TAILQ_REMOVE(&p->doomed, s, entry);
			sw_handoff_unlock(h);
			slot_destroy(p, s);
			sw_handoff_lock(h);
			TAILQ_INSERT_TAIL(&p->gone, s, entry);
			sw_handoff_wake(h);
			continue;
		}
		if (sw_handoff_stopping(h))
			break;
		if ((s = TAILQ_FIRST(&p->cold)) != NULL) {
			TAILQ_REMOVE(&p->cold, s, entry);
			w = s->warm;
			sw_handoff_unlock(h);
			slot_start(p, s, w->v, w->net, &s->limits);
			sw_handoff_lock(h);
			if (s->sb != NULL) {
				w->cold_started++;
				w->cold_us_sum += s->start_us;
				w->cold_us_last = s->start_us;
			}
			w->failed += s->sb == NULL;
			TAILQ_INSERT_TAIL(&p->started, s, entry);
			sw_handoff_wake(h);
			continue;
		}
		if ((w = needy(p)) != NULL) {
			if ((s = calloc(1, sizeof(*s))) == NULL) {
				w->broken = 1;
				continue;
			}
			s->warm = w;
			s->egress_fd = -1;
			w->starting++;
			sw_handoff_unlock(h);
			slot_start(p, s, w->v, w->net, NULL);
			sw_handoff_lock(h);
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
			sw_handoff_wake(h);
			continue;
		}
		/* stopping: back to the top, where what is doomed goes first */
		(void)sw_handoff_wait(h);
	}
	/* stopping: nothing is handed out any more; destroy what is held */
	LIST_FOREACH(w, &p->warms, entry)
	{
		while ((s = TAILQ_FIRST(&w->ready)) != NULL) {
			TAILQ_REMOVE(&w->ready, s, entry);
			w->nready--;
			sw_handoff_unlock(h);
			slot_destroy(p, s);
			sw_handoff_lock(h);
			TAILQ_INSERT_TAIL(&p->gone, s, entry);
		}
	}
	TAILQ_FOREACH(s, &p->started, entry)
	{
		sw_handoff_unlock(h);
		slot_destroy(p, s);
		sw_handoff_lock(h);
	}
	sw_handoff_unlock(h);
	return NULL;
}

static void released(struct sbd_env *env, struct sbd_slot *s)
{
	json_t *o;
	int64_t elapsed;

	if (s->h.run_id[0] == '\0')
		return;
	o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b}", "sandbox_id", s->id, "reason", s->reason,
		      "utime_us", (json_int_t)s->final.utime_us, "stime_us",
		      (json_int_t)s->final.stime_us, "maxrss_kb", (json_int_t)s->final.maxrss_kb,
		      "oom_killed", s->final.oom_killed);
	sbd_emit(env, "sandbox.released", &s->h, o);
	if (s->revoke_event_id[0] == '\0')
		return;
	/* a hard revocation killed it: it is gone now */
	elapsed = (sw_now_us() - s->revoke_time_us) / 1000;
	sbd_emit(env, "identity.revoke_killed", &s->h,
		 json_pack("{s:s, s:s, s:s, s:i, s:s, s:I}", "step", s->step, "sandbox_id", s->id,
			   "secret", s->revoke_secret, "version", s->revoke_version,
			   "revoke_event_id", s->revoke_event_id, "elapsed_ms",
			   (json_int_t)(elapsed > 0 ? elapsed : 0)));
}

/* Loop: take what the thread finished. */
static void pool_cb(void *arg)
{
	struct sbd_env *env = arg;
	struct sbd_pool *p = &env->pool;
	struct sbd_slotq started, gone;
	struct sbd_slot *s;

	TAILQ_INIT(&started);
	TAILQ_INIT(&gone);
	sw_handoff_lock(&p->h);
	TAILQ_CONCAT(&started, &p->started, entry);
	TAILQ_CONCAT(&gone, &p->gone, entry);
	sw_handoff_unlock(&p->h);
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

int sbd_pool_start(struct sbd_env *env, char *errstr, size_t errlen)
{
	struct sbd_pool *p = &env->pool;

	LIST_INIT(&p->warms);
	TAILQ_INIT(&p->cold);
	TAILQ_INIT(&p->started);
	TAILQ_INIT(&p->doomed);
	TAILQ_INIT(&p->gone);
	return sw_handoff_start(&p->h, env->base, 1, pool_main, pool_cb, env, errstr, errlen);
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

	/* no limit: the thread must outlive the sandboxes it forked */
	sw_handoff_stop(&p->h, -1);
	/* cold starts nobody began: nothing runs for them */
	slotq_free(&p->cold);
	slotq_free(&p->started);
	slotq_free(&p->gone);
	slotq_free(&p->doomed);
	while ((w = LIST_FIRST(&p->warms)) != NULL) {
		LIST_REMOVE(w, entry);
		slotq_free(&w->ready);
		free(w);
	}
	for (size_t i = 0; i < p->ncatalogue; i++)
		sw_sandbox_variant_free(p->catalogue[i]);
	free(p->catalogue);
	p->catalogue = NULL;
	p->ncatalogue = 0;
}

int sbd_pool_catalogue(struct sbd_env *env, char *errstr, size_t errlen)
{
	struct sbd_pool *p = &env->pool;
	DIR *d = opendir(p->variants_dir);
	struct dirent *e;

	if (d == NULL) {
		snprintf(errstr, errlen, "variant catalogue %.400s: %s", p->variants_dir,
			 strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		char name[128];
		struct sw_sandbox_variant *v, **grown;

		if (n <= 5 || n - 5 >= sizeof(name) || strcmp(e->d_name + n - 5, ".json") != 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(n - 5), e->d_name);
		if ((v = sw_sandbox_variant_load(p->variants_dir, name, errstr, errlen)) == NULL)
			goto fail;
		if ((grown = realloc(p->catalogue, (p->ncatalogue + 1) * sizeof(*grown))) == NULL) {
			sw_sandbox_variant_free(v);
			snprintf(errstr, errlen, "out of memory");
			goto fail;
		}
		p->catalogue = grown;
		p->catalogue[p->ncatalogue++] = v;
	}
	closedir(d);
	if (p->ncatalogue == 0) {
		snprintf(errstr, errlen, "variant catalogue %.400s holds no variant", p->variants_dir);
		return -1;
	}
	return 0;
fail:
	closedir(d);
	return -1;
}

struct sbd_warm *sbd_pool_warm(struct sbd_env *env, const char *variant, enum sw_sandbox_net net,
			       char *errstr, size_t errlen)
{
	struct sbd_pool *p = &env->pool;
	struct sw_sandbox_variant *v = NULL;
	struct sbd_warm *w;
	size_t i, o = 0;

	/* only the loop adds pools, so reading the list here needs no lock */
	LIST_FOREACH(w, &p->warms, entry)
	if (w->net == net && strcmp(w->variant, variant) == 0)
		return w;
	for (i = 0; i < p->ncatalogue && v == NULL; i++)
		if (strcmp(p->catalogue[i]->name, variant) == 0)
			v = p->catalogue[i];
	if (v == NULL) {
		o = (size_t)snprintf(errstr, errlen, "unknown sandbox variant '%.64s' (this host has:",
				     variant);
		for (i = 0; i < p->ncatalogue && o < errlen; i++)
			o += (size_t)snprintf(errstr + o, errlen - o, " %s", p->catalogue[i]->name);
		if (o < errlen)
			snprintf(errstr + o, errlen - o, ")");
		return NULL;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	snprintf(w->variant, sizeof(w->variant), "%s", v->name);
	w->net = net;
	w->v = v;
	TAILQ_INIT(&w->ready);
	sw_handoff_lock(&p->h);
	LIST_INSERT_HEAD(&p->warms, w, entry);
	sw_handoff_signal(&p->h, 0);
	sw_handoff_unlock(&p->h);
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
		sw_handoff_lock(&p->h);
		s = j->custom_limits ? NULL : TAILQ_FIRST(&w->ready);
		if (s == NULL)
			break;
		TAILQ_REMOVE(&w->ready, s, entry);
		w->nready--;
		sw_handoff_signal(&p->h, 0); /* start its replacement */
		sw_handoff_unlock(&p->h);
		/* a runner that died or spoke while waiting is not handed out */
		if (sw_sandbox_read(s->sb, NULL, NULL) == 0) {
			sw_handoff_lock(&p->h);
			w->hits++;
			sw_handoff_unlock(&p->h);
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
		sw_handoff_unlock(&p->h);
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	sw_uuid_v7_str(s->id);
	s->warm = w;
	s->egress_fd = -1;
	s->limits = j->limits;
	s->job = j;
	TAILQ_INSERT_TAIL(&p->cold, s, entry);
	sw_handoff_signal(&p->h, 0);
	sw_handoff_unlock(&p->h);
	j->slot = s;
	j->slot_pending = 1;
	*queued = 1;
	sbd_pool_metrics(env);
	return NULL;
}

void sbd_pool_release(struct sbd_env *env, struct sbd_slot *s)
{
	struct sbd_pool *p = &env->pool;

	if (s->egress != NULL)
		sbd_egress_free(s->egress); /* the loop's; no callback after this */
	s->egress = NULL;
	if (s->sb != NULL)
		sw_sandbox_kill(s->sb); /* at once; the thread waits for it */
	sw_handoff_lock(&p->h);
	if (s->revoke_event_id[0] != '\0')
		TAILQ_INSERT_HEAD(&p->doomed, s, entry); /* a hard revocation: first */
	else
		TAILQ_INSERT_TAIL(&p->doomed, s, entry);
	sw_handoff_signal(&p->h, 0);
	sw_handoff_unlock(&p->h);
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
	uint64_t hits = 0, misses = 0, started = 0, failed = 0, cold = 0;
	size_t ready = 0, npools = 0;
	int64_t sum = 0, last = 0, cold_sum = 0, cold_last = 0;
	struct sbd_warm *w;

	sw_handoff_lock(&p->h);
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
		cold += w->cold_started;
		cold_sum += w->cold_us_sum;
		if (w->cold_us_last > cold_last)
			cold_last = w->cold_us_last;
		npools++;
	}
	sw_handoff_unlock(&p->h);
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
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_cold_started",
			     "Sandboxes started for a waiting step (cold starts)", (double)cold);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_cold_start_seconds_last",
			     "Start time of the last cold start (largest over pools)",
			     (double)cold_last / 1e6);
	sw_metrics_gauge_set(env->metrics, "sagewai_sandboxd_cold_start_seconds_avg",
			     "Mean start time of cold starts",
			     cold ? (double)cold_sum / 1e6 / (double)cold : 0);
}
