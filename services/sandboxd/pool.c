/*
 * pool.c: the sandboxes of this host: warm pools, cold starts, destroys.
 *
 * Starting and destroying are done by the privileged part (priv.c), which
 * creates many sandboxes at once; this side asks without waiting
 * (privclient.c) and takes each answer on the loop when it comes, so
 * nothing here blocks and no thread is involved. A warm pool per (variant,
 * network) holds up to warm_target started sandboxes with no identity; an
 * acquire pops one and asks for its replacement at once. A step that finds
 * none (or has limits of its own, which are fixed when a sandbox starts)
 * waits for a cold start of its own. A sandbox serves one step and is
 * destroyed afterwards, never reused; its final usage comes back with the
 * destroy's answer (sandbox.released).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandboxd.h"

static void released(struct sbd_env *env, struct sbd_slot *s);

/* Take a create's answer into s (s->sb NULL and s->err on failure). */
static void slot_take(struct sbd_slot *s, struct sbd_priv_result *r)
{
	TAILQ_REMOVE(&s->env->pool.inflight, s, entry);
	if (r->err != NULL) {
		snprintf(s->err, sizeof(s->err), "%s", r->err);
		return;
	}
	s->handle = r->created.handle;
	s->egress_fd = r->created.egress_fd;
	s->start_us = (sw_mono_ns() - s->t0_ns) / 1000;
	s->sb = sw_sandbox_attach(r->created.ctl_fd, &r->created.limits, true, s->err,
				  sizeof(s->err));
	/* the handle exists even when attaching failed: release destroys it */
}

/* A warm start answered. */
static void warm_started(void *arg, struct sbd_priv_result *r)
{
	struct sbd_slot *s = arg;
	struct sbd_env *env = s->env;
	struct sbd_warm *w = s->warm;

	slot_take(s, r);
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
		sw_log(SW_LOG_WARN, "warm sandbox did not start", "error", s->err, NULL);
		sbd_pool_release(env, s);
	}
	sbd_pool_metrics(env);
}

/* Ask for what the warm pools lack. */
static void refill(struct sbd_env *env)
{
	struct sbd_pool *p = &env->pool;
	struct sbd_warm *w;
	char err[256];

	LIST_FOREACH(w, &p->warms, entry)
	{
		while (!w->broken && !p->stopping && w->nready + w->starting < p->warm_target) {
			struct sbd_slot *s = calloc(1, sizeof(*s));

			if (s == NULL) {
				w->broken = 1;
				break;
			}
			s->warm = w;
			s->env = env;
			s->egress_fd = -1;
			s->t0_ns = sw_mono_ns();
			if (sbd_priv_client_create(p->cl, w->v->name, w->net, NULL, warm_started, s,
						   err, sizeof(err)) != 0) {
				sw_log(SW_LOG_WARN, "warm sandbox not asked for", "error", err,
				       NULL);
				free(s);
				w->broken = 1;
				break;
			}
			TAILQ_INSERT_TAIL(&p->inflight, s, entry);
			w->starting++;
		}
	}
}

/* A cold start answered: to its job, or back if the job is gone. */
static void cold_started(void *arg, struct sbd_priv_result *r)
{
	struct sbd_slot *s = arg;
	struct sbd_env *env = s->env;
	struct sbd_warm *w = s->warm;

	slot_take(s, r);
	if (s->sb != NULL) {
		w->cold_started++;
		w->cold_us_sum += s->start_us;
		w->cold_us_last = s->start_us;
	}
	w->failed += s->sb == NULL;
	if (s->job != NULL) {
		struct sbd_job *j = s->job;

		s->job = NULL;
		sbd_exec_acquired(j, s);
	} else {
		snprintf(s->reason, sizeof(s->reason), "abandoned");
		sbd_pool_release(env, s);
	}
	sbd_pool_metrics(env);
}

/* A destroy answered: its usage, sandbox.released, and the slot is gone. */
static void destroyed(void *arg, struct sbd_priv_result *r)
{
	struct sbd_slot *s = arg;

	TAILQ_REMOVE(&s->env->pool.inflight, s, entry);
	if (r->err != NULL)
		sw_log(SW_LOG_WARN, "sandbox destroy failed", "error", r->err, NULL);
	else
		s->final = r->final;
	released(s->env, s);
	free(s);
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

int sbd_pool_start(struct sbd_env *env, char *errstr, size_t errlen)
{
	struct sbd_pool *p = &env->pool;

	LIST_INIT(&p->warms);
	TAILQ_INIT(&p->inflight);
	if ((p->cl = sbd_priv_client_new(env->base, p->priv_fd, errstr, errlen)) == NULL) {
		p->priv_fd = -1;
		return -1;
	}
	p->priv_fd = -1; /* the client's now */
	return 0;
}

void sbd_pool_stop(struct sbd_env *env)
{
	struct sbd_pool *p = &env->pool;
	struct sbd_warm *w;
	struct sbd_slot *s;

	/*
	 * Closing the socket makes the privileged part destroy every sandbox
	 * it holds (those starting, waiting warm or being destroyed) and then
	 * exit: nothing outlives the service part. No answer comes any more:
	 * the slots still waiting for one are freed here.
	 */
	p->stopping = 1;
	sbd_priv_client_free(p->cl);
	p->cl = NULL;
	while ((s = TAILQ_FIRST(&p->inflight)) != NULL) {
		TAILQ_REMOVE(&p->inflight, s, entry);
		free(s);
	}
	if (p->priv_fd >= 0)
		close(p->priv_fd);
	p->priv_fd = -1;
	while ((w = LIST_FIRST(&p->warms)) != NULL) {
		LIST_REMOVE(w, entry);
		while ((s = TAILQ_FIRST(&w->ready)) != NULL) {
			TAILQ_REMOVE(&w->ready, s, entry);
			sw_sandbox_destroy(s->sb, NULL);
			if (s->egress_fd >= 0)
				close(s->egress_fd);
			free(s);
		}
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
	LIST_INSERT_HEAD(&p->warms, w, entry);
	refill(env);
	return w;
}

struct sbd_slot *sbd_pool_acquire(struct sbd_job *j, int *queued, char *errstr, size_t errlen)
{
	struct sbd_env *env = j->env;
	struct sbd_pool *p = &env->pool;
	struct sbd_warm *w = j->warm;
	struct sbd_slot *s;

	*queued = 0;
	while (!j->custom_limits && (s = TAILQ_FIRST(&w->ready)) != NULL) {
		TAILQ_REMOVE(&w->ready, s, entry);
		w->nready--;
		/* a runner that died or spoke while waiting is not handed out */
		if (sw_sandbox_read(s->sb, NULL, NULL) == 0) {
			w->hits++;
			s->from_warm = true;
			sw_uuid_v7_str(s->id);
			refill(env); /* its replacement */
			sbd_pool_metrics(env);
			return s;
		}
		sw_log(SW_LOG_WARN, "warm sandbox died while waiting", "error",
		       sw_sandbox_error(s->sb), NULL);
		snprintf(s->reason, sizeof(s->reason), "died");
		sbd_pool_release(env, s);
	}
	/* a cold start of its own */
	w->misses++;
	w->broken = 0;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	sw_uuid_v7_str(s->id);
	s->warm = w;
	s->env = env;
	s->egress_fd = -1;
	s->limits = j->limits;
	s->job = j;
	s->t0_ns = sw_mono_ns();
	if (sbd_priv_client_create(p->cl, w->v->name, w->net, &s->limits, cold_started, s, errstr,
				   errlen) != 0) {
		free(s);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&p->inflight, s, entry);
	j->slot = s;
	j->slot_pending = 1;
	*queued = 1;
	refill(env); /* a failed warm start is retried on demand */
	sbd_pool_metrics(env);
	return NULL;
}

void sbd_pool_release(struct sbd_env *env, struct sbd_slot *s)
{
	struct sbd_pool *p = &env->pool;
	char err[256];

	if (s->egress != NULL)
		sbd_egress_free(s->egress); /* the loop's; no callback after this */
	s->egress = NULL;
	if (s->egress_fd >= 0)
		close(s->egress_fd);
	s->egress_fd = -1;
	/* closing the control socket ends the runner, pid 1 of the sandbox, at
	 * once; the privileged part then reaps what is left */
	sw_sandbox_destroy(s->sb, NULL);
	s->sb = NULL;
	s->env = env;
	if (s->handle != 0 && p->cl != NULL &&
	    sbd_priv_client_destroy(p->cl, s->handle, destroyed, s, err, sizeof(err)) == 0) {
		TAILQ_INSERT_TAIL(&p->inflight, s, entry);
		return;
	}
	if (s->handle != 0 && p->cl != NULL)
		sw_log(SW_LOG_WARN, "sandbox destroy failed", "error", err, NULL);
	released(env, s);
	free(s);
}

void sbd_pool_abandon(struct sbd_env *env, struct sbd_job *j)
{
	(void)env;
	/* the slot comes back through cold_started, which then releases it */
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
