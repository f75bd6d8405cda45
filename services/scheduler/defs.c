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

struct sched_defs {
	struct sched_def *b[DEFS_BUCKETS];
	size_t n;
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
	for (i = 0; i < DEFS_BUCKETS; i++)
		for (d = c->b[i]; d != NULL; d = next) {
			next = d->next;
			def_free(d);
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
