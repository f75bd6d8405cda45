/*
 * cache.c: what resolution reads from PostgreSQL (and Vault), kept for at
 * most SAGEWAI_IDENTITY_CACHE_MS (0: nothing is kept).
 *
 * Entries are JSON values under (scope, key): profiles ("p/<level>/<name>")
 * and secret metadata ("s/<name>": latest version, state, backend, MAC).
 * No value is ever cached. Every secret.* and profile.* event, seen by
 * every instance through its tail reader, drops the entries of its scope
 * at once; a change made through this instance drops them before it
 * answers. A change of the _system scope drops everything (the system
 * level is part of every tenant's cascade). Seal never trusts the cache:
 * it reads each pinned version's state from PostgreSQL.
 */
#include <stdlib.h>
#include <string.h>

#include "identity.h"

#define CACHE_BUCKETS 1024
#define CACHE_MAX 8192 /* entries; a full cache starts over */

struct centry {
	struct centry *next;
	char *tenant;
	char *key;
	json_t *v;
	int64_t until_ms;
};

struct id_cache {
	struct centry *b[CACHE_BUCKETS];
	size_t n;
};

static unsigned hash(const char *tenant, const char *key)
{
	unsigned h = 2166136261u;
	const char *s;

	for (s = tenant; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (s = key; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % CACHE_BUCKETS;
}

static void centry_free(struct centry *e)
{
	free(e->tenant);
	free(e->key);
	json_decref(e->v);
	free(e);
}

int id_cache_new(struct id_env *env)
{
	env->cache = calloc(1, sizeof(*env->cache));
	return env->cache == NULL ? -1 : 0;
}

static void drop_all(struct id_cache *c)
{
	struct centry *e, *next;
	size_t i;

	for (i = 0; i < CACHE_BUCKETS; i++) {
		for (e = c->b[i]; e != NULL; e = next) {
			next = e->next;
			centry_free(e);
		}
		c->b[i] = NULL;
	}
	c->n = 0;
}

void id_cache_free(struct id_env *env)
{
	if (env->cache == NULL)
		return;
	drop_all(env->cache);
	free(env->cache);
	env->cache = NULL;
}

json_t *id_cache_get(struct id_env *env, const char *tenant, const char *key)
{
	struct id_cache *c = env->cache;
	struct centry *e;

	if (c == NULL || env->cache_ms == 0)
		return NULL;
	for (e = c->b[hash(tenant, key)]; e != NULL; e = e->next)
		if (strcmp(e->tenant, tenant) == 0 && strcmp(e->key, key) == 0)
			return e->until_ms > sw_mono_ms() ? json_incref(e->v) : NULL;
	return NULL;
}

void id_cache_put(struct id_env *env, const char *tenant, const char *key, json_t *v)
{
	struct id_cache *c = env->cache;
	struct centry *e, **pp;
	unsigned h;

	if (c == NULL || env->cache_ms == 0 || v == NULL)
		return;
	h = hash(tenant, key);
	for (pp = &c->b[h]; (e = *pp) != NULL; pp = &e->next)
		if (strcmp(e->tenant, tenant) == 0 && strcmp(e->key, key) == 0) {
			json_decref(e->v);
			e->v = json_incref(v);
			e->until_ms = sw_mono_ms() + env->cache_ms;
			return;
		}
	if (c->n >= CACHE_MAX) {
		drop_all(c);
		h = hash(tenant, key);
	}
	if ((e = calloc(1, sizeof(*e))) == NULL || (e->tenant = strdup(tenant)) == NULL ||
	    (e->key = strdup(key)) == NULL) {
		if (e != NULL) {
			free(e->tenant);
			free(e);
		}
		return;
	}
	e->v = json_incref(v);
	e->until_ms = sw_mono_ms() + env->cache_ms;
	e->next = c->b[h];
	c->b[h] = e;
	c->n++;
	sw_metrics_gauge_set(env->metrics, "sagewai_identity_cache_entries",
			     "Entries in the resolution cache", (double)c->n);
}

void id_cache_drop(struct id_env *env, const char *tenant)
{
	struct id_cache *c = env->cache;
	struct centry *e, **pp;
	size_t i;

	if (c == NULL)
		return;
	if (tenant == NULL || strcmp(tenant, ID_SYSTEM) == 0) {
		drop_all(c);
		return;
	}
	for (i = 0; i < CACHE_BUCKETS; i++)
		for (pp = &c->b[i]; (e = *pp) != NULL;) {
			if (strcmp(e->tenant, tenant) == 0) {
				*pp = e->next;
				centry_free(e);
				c->n--;
			} else {
				pp = &e->next;
			}
		}
}
