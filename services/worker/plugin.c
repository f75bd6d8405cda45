/*
 * plugin.c: plugins (libs/plugin/sagewai_plugin.h) and the threads that
 * run them.
 *
 * Plugins are loaded once at start; any bad one refuses the start. A
 * plugin step becomes a task on pool_queue; one of WORKER_PLUGIN_THREADS
 * threads of the hand-off (sw_handoff, env->pool) runs it, copies the
 * output (releasing the plugin's buffer on that thread), moves the task to
 * pool_done and wakes the loop (pool_done_loop). task->job is read and
 * written by the loop thread only: a timeout or a cancel sets it to NULL
 * (abandon) and the loop frees the task when it comes back; a task no
 * thread has taken yet is just unlinked.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

static int name_ok(const char *name)
{
	size_t n = 0;

	if (name == NULL)
		return 0;
	for (; name[n]; n++)
		if (!((name[n] >= 'a' && name[n] <= 'z') || (name[n] >= '0' && name[n] <= '9') ||
		      name[n] == '_' || name[n] == '-'))
			return 0;
	return n > 0 && n <= SAGEWAI_PLUGIN_NAME_MAX;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load one file; -1 with errstr naming it. */
static int load_one(struct worker_env *env, const char *path, char *errstr, size_t errlen)
{
	struct worker_plugin *pl = &env->plugins[env->nplugins];
	sagewai_plugin_v1_fn entry;
	const struct sagewai_plugin *d;
	size_t i;

	snprintf(pl->path, sizeof(pl->path), "%s", path);
	if ((pl->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(errstr, errlen, "plugin %s: cannot load: %s", path, dlerror());
		return -1;
	}
	*(void **)&entry = dlsym(pl->dl, SAGEWAI_PLUGIN_SYMBOL);
	if (entry == NULL) {
		snprintf(errstr, errlen, "plugin %s: no symbol %s", path, SAGEWAI_PLUGIN_SYMBOL);
		goto fail;
	}
	if ((d = entry()) == NULL) {
		snprintf(errstr, errlen, "plugin %s: %s() returned NULL", path,
			 SAGEWAI_PLUGIN_SYMBOL);
		goto fail;
	}
	if (d->abi_version != SAGEWAI_ABI_VERSION) {
		snprintf(errstr, errlen, "plugin %s: ABI version %u, this worker speaks %u", path,
			 (unsigned)d->abi_version, (unsigned)SAGEWAI_ABI_VERSION);
		goto fail;
	}
	if (!name_ok(d->name)) {
		snprintf(errstr, errlen, "plugin %s: name must be 1..%d characters of [a-z0-9_-]",
			 path, SAGEWAI_PLUGIN_NAME_MAX);
		goto fail;
	}
	if (d->run == NULL) {
		snprintf(errstr, errlen, "plugin %s: no run function", path);
		goto fail;
	}
	for (i = 0; i < env->nplugins; i++)
		if (strcmp(env->plugins[i].desc->name, d->name) == 0) {
			snprintf(errstr, errlen, "plugin %s: name '%s' is taken by %s", path,
				 d->name, env->plugins[i].path);
			goto fail;
		}
	pl->desc = d;
	env->nplugins++;
	sw_log(SW_LOG_INFO, "plugin loaded", "name", d->name, "file", path, NULL);
	return 0;
fail:
	dlclose(pl->dl);
	pl->dl = NULL;
	return -1;
}

int worker_plugins_load(struct worker_env *env, const char *dir, char *errstr, size_t errlen)
{
	char **names = NULL, path[1024];
	size_t n = 0, i, len;
	struct dirent *de;
	DIR *d;
	int rc = -1;

	if ((d = opendir(dir)) == NULL) {
		snprintf(errstr, errlen, "SAGEWAI_PLUGIN_DIR %s: %m", dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		char **nn;

		len = strlen(de->d_name);
		if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
			continue;
		if ((nn = realloc(names, (n + 1) * sizeof(*names))) == NULL)
			goto out;
		names = nn;
		if ((names[n] = strdup(de->d_name)) == NULL)
			goto out;
		n++;
	}
	qsort(names, n, sizeof(*names), cmp_str);
	if (n > 0 && (env->plugins = calloc(n, sizeof(*env->plugins))) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
			snprintf(errstr, errlen, "plugin %s/%s: path too long", dir, names[i]);
			goto out_err;
		}
		if (load_one(env, path, errstr, errlen) == -1)
			goto out_err;
	}
	rc = 0;
	goto out_err;
out:
	snprintf(errstr, errlen, "SAGEWAI_PLUGIN_DIR %s: out of memory", dir);
out_err:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

void worker_plugins_unload(struct worker_env *env)
{
	size_t i;

	/* a pool thread left running a plugin would return into unmapped
	 * code: unload only when the pool is gone */
	if (env->pool_stuck)
		return;
	for (i = 0; i < env->nplugins; i++)
		if (env->plugins[i].dl != NULL)
			dlclose(env->plugins[i].dl);
	free(env->plugins);
	env->plugins = NULL;
	env->nplugins = 0;
}

static void task_free(struct worker_task *t)
{
	free(t->input);
	free(t->output);
	free(t);
}

/* A pool thread: run the queued tasks until the pool stops (a task still
 * queued then is freed by worker_pool_stop). */
static void *pool_main(struct sw_handoff *h, void *arg)
{
	struct worker_env *env = arg;
	struct worker_task *t;
	char *out;
	size_t outlen;

	sw_handoff_lock(h);
	for (;;) {
		while (TAILQ_EMPTY(&env->pool_queue))
			if (!sw_handoff_wait(h))
				goto out;
		if (sw_handoff_stopping(h))
			break;
		t = TAILQ_FIRST(&env->pool_queue);
		TAILQ_REMOVE(&env->pool_queue, t, entry);
		t->started = 1;
		sw_handoff_unlock(h);

		out = NULL;
		outlen = 0;
		t->err[0] = '\0';
		t->rc = t->plugin->run(t->input, t->len, &out, &outlen, t->err, sizeof(t->err));
		t->err[sizeof(t->err) - 1] = '\0';
		if (t->rc == 0 && out == NULL) {
			t->rc = -1;
			snprintf(t->err, sizeof(t->err), "returned no output");
		} else if (t->rc == 0) {
			if ((t->output = malloc(outlen + 1)) != NULL) {
				memcpy(t->output, out, outlen);
				t->output[outlen] = '\0';
				t->output_len = outlen;
			} else {
				t->rc = -1;
				snprintf(t->err, sizeof(t->err), "out of memory copying output");
			}
			if (t->plugin->free_output != NULL)
				t->plugin->free_output(out);
			else
				free(out);
		} else if (t->err[0] == '\0') {
			snprintf(t->err, sizeof(t->err), "failed (code %d)", t->rc);
		}

		sw_handoff_lock(h);
		TAILQ_INSERT_TAIL(&env->pool_done, t, entry);
		sw_handoff_wake(h);
	}
out:
	sw_handoff_unlock(h);
	return NULL;
}

static void task_result(struct worker_job *j, struct worker_task *t)
{
	const char *name = t->plugin->name;
	json_error_t jerr;
	json_t *out;

	if (t->rc != 0) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "plugin_error: %s: %s", name, t->err);
		return;
	}
	out = json_loadb(t->output, t->output_len, JSON_DECODE_ANY, &jerr);
	if (out == NULL) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "plugin_error: %s returned invalid JSON: %s", name, jerr.text);
		return;
	}
	worker_exec_finish(j, SW_STEP_SUCCEEDED, out, NULL);
}

/* The loop, woken by a pool thread: hand the finished tasks to their jobs
 * (an abandoned one is just freed). */
static void pool_done_loop(void *arg)
{
	struct worker_env *env = arg;
	struct worker_taskq done;
	struct worker_task *t;
	struct worker_job *j;

	TAILQ_INIT(&done);
	sw_handoff_lock(&env->pool);
	TAILQ_CONCAT(&done, &env->pool_done, entry);
	sw_handoff_unlock(&env->pool);
	while ((t = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, t, entry);
		if ((j = t->job) != NULL) {
			j->task = NULL;
			task_result(j, t);
		}
		task_free(t);
	}
}

int worker_pool_start(struct worker_env *env, char *errstr, size_t errlen)
{
	TAILQ_INIT(&env->pool_queue);
	TAILQ_INIT(&env->pool_done);
	/* no plugin, no thread */
	return sw_handoff_start(&env->pool, env->base,
				env->nplugins > 0 ? WORKER_PLUGIN_THREADS : 0, pool_main,
				pool_done_loop, env, errstr, errlen);
}

/* A thread stuck in a plugin is given a few seconds and then left (with
 * its task, the queues and the plugins) to the process exit. */
void worker_pool_stop(struct worker_env *env)
{
	struct worker_task *t;

	if (!env->pool.inited)
		return;
	if (sw_handoff_stop(&env->pool, WORKER_POOL_STOP_MS) == -1) {
		env->pool_stuck = 1;
		sw_log(SW_LOG_WARN, "a plugin thread did not stop", NULL);
		return;
	}
	while ((t = TAILQ_FIRST(&env->pool_queue)) != NULL) {
		TAILQ_REMOVE(&env->pool_queue, t, entry);
		task_free(t);
	}
	while ((t = TAILQ_FIRST(&env->pool_done)) != NULL) {
		TAILQ_REMOVE(&env->pool_done, t, entry);
		task_free(t);
	}
}

void worker_plugin_start(struct worker_job *j, const char *name)
{
	struct worker_env *env = j->env;
	struct worker_task *t;
	size_t i;

	for (i = 0; i < env->nplugins; i++)
		if (strcmp(env->plugins[i].desc->name, name) == 0)
			break;
	if (i == env->nplugins) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "plugin_error: no plugin named '%.64s'", name);
		return;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->input = j->with ? json_dumps(j->with, JSON_COMPACT | JSON_ENCODE_ANY)
				: strdup("{}")) == NULL) {
		free(t);
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "internal: out of memory");
		return;
	}
	t->len = strlen(t->input);
	t->plugin = env->plugins[i].desc;
	t->job = j;
	j->task = t;
	sw_handoff_lock(&env->pool);
	TAILQ_INSERT_TAIL(&env->pool_queue, t, entry);
	sw_handoff_signal(&env->pool, 0);
	sw_handoff_unlock(&env->pool);
}

void worker_plugin_abandon(struct worker_job *j)
{
	struct worker_env *env = j->env;
	struct worker_task *t = j->task;

	if (t == NULL)
		return;
	j->task = NULL;
	sw_handoff_lock(&env->pool);
	if (!t->started) {
		TAILQ_REMOVE(&env->pool_queue, t, entry);
		sw_handoff_unlock(&env->pool);
		task_free(t);
		return;
	}
	t->job = NULL; /* the loop frees it when the thread hands it back */
	sw_handoff_unlock(&env->pool);
}
