/*
 * defs.c: parsed workflow definitions, cached.
 *
 * A registered version of a workflow never changes (registering other
 * content under the same version is refused), so its parsed form can be
 * kept by (tenant, name, version) and every transition of every run of it
 * spares parsing the stored JSON again. The cache is bounded; when full
 * it starts over.
 */
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

#define DEFS_BUCKETS 512
#define DEFS_MAX 1024

struct sched_def {
	struct sched_def *next;
	uint64_t hash;
	char *tenant;
	char *name;
	int version;
	struct sw_workflow *wf;
};

/* The version of a workflow a submit without one last found the latest:
 * a hint, checked in the submit's own transaction (submit_guard). */
struct sched_latest {
	struct sched_latest *next;
	uint64_t hash;
	char *tenant;
	char *name;
	int version;
};

struct sched_defs {
	struct sched_def *b[DEFS_BUCKETS];
	size_t n;
	struct sched_latest *lb[DEFS_BUCKETS];
	size_t nl;
};

static uint64_t defs_hash(const char *tenant, const char *name, int version)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *p;

	for (p = tenant; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	h = (h ^ 0xff) * 0x100000001b3ULL;
	for (p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	return (h ^ (uint64_t)(uint32_t)version) * 0x100000001b3ULL;
}

static void def_free(struct sched_def *d)
{
	sw_workflow_free(d->wf);
	free(d->tenant);
	free(d->name);
	free(d);
}

void sched_defs_free(struct sched_env *env)
{
	struct sched_defs *c = env->defs;
	struct sched_def *d, *next;
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < DEFS_BUCKETS; i++) {
		struct sched_latest *l, *lnext;

		for (d = c->b[i]; d != NULL; d = next) {
			next = d->next;
			def_free(d);
		}
		for (l = c->lb[i]; l != NULL; l = lnext) {
			lnext = l->next;
			free(l->tenant);
			free(l->name);
			free(l);
		}
	}
	free(c);
	env->defs = NULL;
}

const struct sw_workflow *sched_def_get(struct sched_env *env, const char *tenant,
					const char *name, int version, const char *def_text,
					char *errstr, size_t errlen)
{
	uint64_t h = defs_hash(tenant, name, version);
	struct sched_def *d;
	struct sw_workflow *wf;
	json_error_t jerr;
	json_t *def;

	if (env->defs == NULL && (env->defs = calloc(1, sizeof(*env->defs))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	for (d = env->defs->b[h % DEFS_BUCKETS]; d != NULL; d = d->next)
		if (d->hash == h && d->version == version && strcmp(d->name, name) == 0 &&
		    strcmp(d->tenant, tenant) == 0)
			return d->wf;
	if (def_text == NULL) {
		snprintf(errstr, errlen, "not cached");
		return NULL;
	}
	if ((def = json_loads(def_text, 0, &jerr)) == NULL) {
		snprintf(errstr, errlen, "stored definition unreadable: %s", jerr.text);
		return NULL;
	}
	wf = sw_workflow_from_json(def, errstr, errlen);
	json_decref(def);
	if (wf == NULL)
		return NULL;
	if (env->defs->n == DEFS_MAX) {
		sched_defs_free(env);
		if ((env->defs = calloc(1, sizeof(*env->defs))) == NULL)
			goto oom;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		goto oom;
	d->hash = h;
	d->version = version;
	d->wf = wf;
	if ((d->tenant = strdup(tenant)) == NULL || (d->name = strdup(name)) == NULL) {
		def_free(d);
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	d->next = env->defs->b[h % DEFS_BUCKETS];
	env->defs->b[h % DEFS_BUCKETS] = d;
	env->defs->n++;
	return wf;
oom:
	sw_workflow_free(wf);
	snprintf(errstr, errlen, "out of memory");
	return NULL;
}

static struct sched_latest **latest_slot(struct sched_defs *c, const char *tenant,
					 const char *name, uint64_t h)
{
	struct sched_latest **l;

	for (l = &c->lb[h % DEFS_BUCKETS]; *l != NULL; l = &(*l)->next)
		if ((*l)->hash == h && strcmp((*l)->name, name) == 0 &&
		    strcmp((*l)->tenant, tenant) == 0)
			break;
	return l;
}

int sched_def_latest(struct sched_env *env, const char *tenant, const char *name)
{
	struct sched_latest **l;

	if (env->defs == NULL)
		return 0;
	l = latest_slot(env->defs, tenant, name, defs_hash(tenant, name, 0));
	return *l != NULL ? (*l)->version : 0;
}

void sched_def_latest_set(struct sched_env *env, const char *tenant, const char *name, int version)
{
	uint64_t h = defs_hash(tenant, name, 0);
	struct sched_latest **l, *n;

	if (env->defs == NULL)
		return; /* only beside a cached definition */
	l = latest_slot(env->defs, tenant, name, h);
	if (*l != NULL) {
		if (version > 0) {
			(*l)->version = version;
			return;
		}
		n = *l;
		*l = n->next;
		env->defs->nl--;
		free(n->tenant);
		free(n->name);
		free(n);
		return;
	}
	if (version <= 0 || env->defs->nl >= DEFS_MAX || (n = calloc(1, sizeof(*n))) == NULL)
		return; /* a hint: none is fine */
	if ((n->tenant = strdup(tenant)) == NULL || (n->name = strdup(name)) == NULL) {
		free(n->tenant);
		free(n);
		return;
	}
	n->hash = h;
	n->version = version;
	n->next = env->defs->lb[h % DEFS_BUCKETS];
	env->defs->lb[h % DEFS_BUCKETS] = n;
	env->defs->nl++;
}
