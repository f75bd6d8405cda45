/*
 * artifact.c: see artifact.h. Requests come in on the loop
 * (sbd_artifact_deliver copies what it needs: the spec, the secrets into
 * sodium_malloc'd memory, the header), are done on the workers (stage,
 * scan, push, clean up), and come back on the loop through the sw_handoff
 * wake-up: the events (artifact.pushed, artifact.scan_refused), then the
 * caller's callback. An abandoned job runs on until its next check
 * (sbd_art_cancelled) and is freed without a callback.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <sodium.h>

#include "sandboxd.h"
#include "sw_redact.h"

int sbd_artifact_configure(struct sbd_artifact_config *cfg, char *const *envp, char *err,
			   size_t errlen)
{
	const char *v;
	long long n;

	memset(cfg, 0, sizeof(*cfg));
	v = sw_config_env(envp, "SAGEWAI_ARTIFACT_STAGE_DIR");
	snprintf(cfg->stage_parent, sizeof(cfg->stage_parent), "%s", v && *v ? v : "/tmp");
	v = sw_config_env(envp, "SAGEWAI_ARTIFACT_LOCAL_DIR");
	if (v != NULL && *v != '\0' && (v[0] != '/' || strlen(v) >= sizeof(cfg->local_dir))) {
		snprintf(err, errlen, "SAGEWAI_ARTIFACT_LOCAL_DIR: an absolute path");
		return -1;
	}
	snprintf(cfg->local_dir, sizeof(cfg->local_dir), "%s", v ? v : "");
	if (sw_config_number(envp, "SAGEWAI_ARTIFACT_INLINE_MAX", SBD_ARTIFACT_INLINE_MAX_DEFAULT,
			     0, 64LL << 20, &n, err, errlen) == -1)
		return -1;
	cfg->inline_max = (size_t)n;
	if (sw_config_number(envp, "SAGEWAI_ARTIFACT_MAX_FILES", SBD_ARTIFACT_MAX_FILES_DEFAULT, 1,
			     10000000, &n, err, errlen) == -1)
		return -1;
	cfg->max_files = (size_t)n;
	if (sw_config_number(envp, "SAGEWAI_ARTIFACT_MAX_BYTES",
			     (long long)SBD_ARTIFACT_MAX_BYTES_DEFAULT, 1, 1LL << 40, &n, err,
			     errlen) == -1)
		return -1;
	cfg->max_bytes = (uint64_t)n;
	if (sw_config_number(envp, "SAGEWAI_ARTIFACT_TIMEOUT_MS", SBD_ARTIFACT_TIMEOUT_MS_DEFAULT,
			     100, 24LL * 3600 * 1000, &n, err, errlen) == -1)
		return -1;
	cfg->timeout_ms = n;
	if (sw_config_number(envp, "SAGEWAI_ARTIFACT_THREADS", SBD_ARTIFACT_THREADS_DEFAULT, 1, 64,
			     &n, err, errlen) == -1)
		return -1;
	cfg->threads = (int)n;
	v = sw_config_env(envp, "SAGEWAI_ARTIFACT_S3_ENDPOINTS");
	if (v != NULL && strlen(v) >= sizeof(cfg->s3_endpoints)) {
		snprintf(err, errlen, "SAGEWAI_ARTIFACT_S3_ENDPOINTS: too long");
		return -1;
	}
	snprintf(cfg->s3_endpoints, sizeof(cfg->s3_endpoints), "%s", v ? v : "");
	v = sw_config_env(envp, "SAGEWAI_ARTIFACT_S3_REGION");
	if (v != NULL && *v != '\0' && sw_artifact_region_refusal(v, strlen(v)) != NULL) {
		snprintf(err, errlen, "SAGEWAI_ARTIFACT_S3_REGION: %s",
			 sw_artifact_region_refusal(v, strlen(v)));
		return -1;
	}
	snprintf(cfg->s3_region, sizeof(cfg->s3_region), "%s", v && *v ? v : "us-east-1");
	v = sw_config_env(envp, "SAGEWAI_ARTIFACT_GIT");
	snprintf(cfg->git, sizeof(cfg->git), "%s", v && *v ? v : "/usr/bin/git");
	v = sw_config_env(envp, "SAGEWAI_ARTIFACT_HTTP");
	if (v != NULL && *v != '\0' && strcmp(v, "allow") && strcmp(v, "deny")) {
		snprintf(err, errlen, "SAGEWAI_ARTIFACT_HTTP: allow or deny");
		return -1;
	}
	cfg->insecure_http = v != NULL && !strcmp(v, "allow");
	v = sw_config_env(envp, "SAGEWAI_ARTIFACT_PRIVATE");
	if (v != NULL && *v != '\0' && strcmp(v, "allow") && strcmp(v, "deny")) {
		snprintf(err, errlen, "SAGEWAI_ARTIFACT_PRIVATE: allow or deny");
		return -1;
	}
	cfg->allow_private = v != NULL && !strcmp(v, "allow");
	return 0;
}

/* ---- jobs ------------------------------------------------------------------ */

static void job_free(struct sbd_art_job *j)
{
	size_t i;

	if (j == NULL)
		return;
	json_decref(j->spec);
	json_decref(j->summary);
	json_decref(j->skipped);
	for (i = 0; i < j->nfiles; i++)
		free(j->files[i].path);
	free(j->files);
	for (i = 0; i < j->nsecrets; i++)
		sodium_free(j->secrets[i].value);
	sw_redact_destroy(j->red);
	if (j->fd >= 0)
		close(j->fd);
	if (j->stage_fd >= 0)
		close(j->stage_fd);
	if (j->tree_fd >= 0)
		close(j->tree_fd);
	free(j);
}

int sbd_art_fail(struct sbd_art_job *j, const char *code, const char *fmt, ...)
{
	char msg[900], *safe;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* a destination's answer could quote what we sent */
	safe = j->red != NULL ? sw_redact_buf(j->red, msg, strlen(msg), NULL, NULL) : NULL;
	if (j->red != NULL && safe == NULL)
		snprintf(msg, sizeof(msg), "(out of memory while redacting the error)");
	if (j->error[0] == '\0')
		snprintf(j->error, sizeof(j->error), "%s: %s", code, safe ? safe : msg);
	free(safe);
	j->ok = false;
	return -1;
}

int sbd_art_cancelled(struct sbd_art_job *j)
{
	int gone;

	sw_handoff_lock(&j->a->h);
	gone = j->abandoned || sw_handoff_stopping(&j->a->h);
	sw_handoff_unlock(&j->a->h);
	if (gone)
		return sbd_art_fail(j, "internal", "the delivery was abandoned"), 1;
	if (sw_mono_ms() > j->deadline_ms)
		return sbd_art_fail(j, "timeout", "the artifact was not delivered within %lld ms",
				    (long long)j->a->cfg.timeout_ms),
		       1;
	return 0;
}

const unsigned char *sbd_art_secret(const struct sbd_art_job *j, const char *env, size_t *len)
{
	for (size_t i = 0; i < j->nsecrets; i++)
		if (!strcmp(j->secrets[i].env, env)) {
			*len = j->secrets[i].len;
			return j->secrets[i].value;
		}
	return NULL;
}

/* The summary of a delivered artifact (not for none, whose push makes its
 * own). */
static int make_summary(struct sbd_art_job *j)
{
	json_t *list = json_array();
	size_t i;

	if (list == NULL)
		return -1;
	for (i = 0; i < j->nfiles && i < SBD_ARTIFACT_LIST_MAX; i++)
		if (json_array_append_new(list, json_pack("{s:o, s:I, s:s}", "path",
							  sw_json_string_lossy(j->files[i].path),
							  "size", (json_int_t)j->files[i].size,
							  "sha256", j->files[i].sha256))) {
			json_decref(list);
			return -1;
		}
	j->summary = json_pack("{s:s, s:s, s:I, s:I, s:o, s:O}", "destination", j->dest_name,
			       "location", j->location, "files", (json_int_t)j->nfiles, "bytes",
			       (json_int_t)j->bytes, "list", list, "skipped", j->skipped);
	return j->summary != NULL ? 0 : -1;
}

/* One delivery, on a worker. */
static void job_run(struct sbd_art_job *j)
{
	char err[256];
	int rc;

	if ((j->red = sw_redact_new()) == NULL || (j->skipped = json_array()) == NULL) {
		sbd_art_fail(j, "internal", "out of memory");
		return;
	}
	for (size_t i = 0; i < j->nsecrets; i++)
		if (strcmp(j->secrets[i].env, "AWS_REGION") != 0 && /* a knob, not a secret */
		    strcmp(j->secrets[i].env, "AWS_DEFAULT_REGION") != 0 &&
		    sw_redact_add(j->red, j->secrets[i].env, j->secrets[i].value,
				  j->secrets[i].len, err, sizeof(err)) != 0) {
			sbd_art_fail(j, "internal", "the value of %s cannot be scanned for: %s",
				     j->secrets[i].env, err);
			return;
		}
	if (sbd_art_stage(j) != 0 || sbd_art_cancelled(j) || sbd_art_hash(j) != 0)
		return;
	j->t_staged = sw_mono_ns();
	if (j->list_only) {
		/* nothing leaves: no scan, no push */
		if (make_summary(j) != 0) {
			sbd_art_fail(j, "internal", "out of memory");
			return;
		}
		j->ok = true;
		return;
	}
	if (sbd_art_scan(j) != 0 || sbd_art_cancelled(j))
		return;
	j->t_scanned = sw_mono_ns();
	switch (j->dest) {
	case SW_ARTIFACT_GITHUB:
		rc = sbd_art_push_github(j);
		break;
	case SW_ARTIFACT_S3:
		rc = sbd_art_push_s3(j);
		break;
	case SW_ARTIFACT_LOCAL:
		rc = sbd_art_push_local(j);
		break;
	default:
		rc = sbd_art_push_none(j);
		break;
	}
	if (rc != 0)
		return;
	j->t_pushed = sw_mono_ns();
	if (j->summary == NULL && make_summary(j) != 0) {
		sbd_art_fail(j, "internal", "out of memory");
		return;
	}
	j->ok = true;
}

static void *worker_main(struct sw_handoff *h, void *arg)
{
	struct sbd_art *a = arg;
	struct sbd_art_job *j;
	char gone[sizeof(j->stage)];

	sw_handoff_lock(h);
	for (;;) {
		if ((j = TAILQ_FIRST(&a->queued)) == NULL) {
			if (!sw_handoff_wait(h))
				break;
			continue;
		}
		TAILQ_REMOVE(&a->queued, j, entry);
		TAILQ_INSERT_TAIL(&a->active, j, entry);
		sw_handoff_unlock(h);

		j->t_start = sw_mono_ns();
		if (!sbd_art_cancelled(j))
			job_run(j);
		if (j->tree_fd >= 0) {
			close(j->tree_fd);
			j->tree_fd = -1;
		}
		if (j->stage_fd >= 0) {
			close(j->stage_fd);
			j->stage_fd = -1;
		}
		/* the staging copy goes whatever happened: below, once the job
		 * is handed back (the loop frees it, so its name is copied) */
		gone[0] = '\0';
		if (j->stage[0] != '\0')
			snprintf(gone, sizeof(gone), "%s", strrchr(j->stage, '/') + 1);
		for (size_t i = 0; i < j->nsecrets; i++) {
			sodium_free(j->secrets[i].value);
			j->secrets[i].value = NULL;
		}
		sw_redact_destroy(j->red);
		j->red = NULL;
		j->t_done = sw_mono_ns();

		sw_handoff_lock(h);
		TAILQ_REMOVE(&a->active, j, entry);
		TAILQ_INSERT_TAIL(&a->done, j, entry);
		sw_handoff_wake(h);
		/* off the step's path: the step ends while its copy is removed
		 * (a sandboxd killed meanwhile leaves it to the next one's
		 * sweep_stale) */
		if (gone[0] != '\0') {
			int dfd;

			sw_handoff_unlock(h);
			if ((dfd = open(a->stage_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
				sbd_art_rmtree(dfd, gone);
				close(dfd);
			}
			sw_handoff_lock(h);
		}
	}
	sw_handoff_unlock(h);
	return NULL;
}

/* On the loop: where a delivered job's time went, in µs (an info line:
 * bench/cli_agent reads it): waiting for a worker, staging and hashing the
 * snapshot, the secret scan, the push, closing up (the staging copy is
 * removed after the hand-back), and all of it up to this line. */
static void log_timing(const struct sbd_art_job *j)
{
	char q[24], st[24], sc[24], pu[24], cl[24], to[24];
	int64_t now = sw_mono_ns();

	snprintf(q, sizeof(q), "%lld", (long long)((j->t_start - j->t_queued) / 1000));
	snprintf(st, sizeof(st), "%lld", (long long)((j->t_staged - j->t_start) / 1000));
	snprintf(sc, sizeof(sc), "%lld", (long long)((j->t_scanned - j->t_staged) / 1000));
	snprintf(pu, sizeof(pu), "%lld", (long long)((j->t_pushed - j->t_scanned) / 1000));
	snprintf(cl, sizeof(cl), "%lld", (long long)((j->t_done - j->t_pushed) / 1000));
	snprintf(to, sizeof(to), "%lld", (long long)((now - j->t_queued) / 1000));
	sw_log(SW_LOG_INFO, "artifact delivered", "run_id", j->h.run_id, "step_id", j->h.step_id,
	       "destination", j->dest_name, "queue_us", q, "stage_us", st, "scan_us", sc,
	       "push_us", pu, "cleanup_us", cl, "total_us", to, NULL);
}

/* On the loop: the events, then the callbacks of finished jobs. */
static void on_loop(void *arg)
{
	struct sbd_art *a = arg;
	struct sbd_art_jobq q = TAILQ_HEAD_INITIALIZER(q);
	struct sbd_art_job *j;
	int gone;

	sw_handoff_lock(&a->h);
	TAILQ_CONCAT(&q, &a->done, entry);
	sw_handoff_unlock(&a->h);
	while ((j = TAILQ_FIRST(&q)) != NULL) {
		struct sbd_artifact_result r = {.ok = j->ok,
						.destination = j->dest_name,
						.location = j->ok ? j->location : "",
						.files = j->nfiles,
						.bytes = j->bytes,
						.summary = j->ok ? j->summary : NULL,
						.error = j->ok ? NULL : j->error};

		TAILQ_REMOVE(&q, j, entry);
		sw_handoff_lock(&a->h);
		a->running--;
		gone = j->abandoned;
		sw_handoff_unlock(&a->h);
		if (j->ok && j->list_only) {
			/* nothing was delivered */
		} else if (j->ok) {
			a->delivered++;
			log_timing(j);
			if (a->emit != NULL)
				a->emit(a->emit_arg, "artifact.pushed", &j->h,
					json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "step",
						  j->step, "sandbox_id", j->sandbox_id,
						  "destination", j->dest_name, "location",
						  j->location, "files", (json_int_t)j->nfiles,
						  "bytes", (json_int_t)j->bytes));
		} else if (j->refused) {
			a->refused++;
			if (a->emit != NULL)
				a->emit(a->emit_arg, "artifact.scan_refused", &j->h,
					json_pack("{s:s, s:s, s:s, s:o, s:I, s:s}", "step",
						  j->step, "sandbox_id", j->sandbox_id,
						  "destination", j->dest_name, "file",
						  sw_json_string_lossy(j->ref_file), "line",
						  (json_int_t)j->ref_line, "what", j->ref_what));
		} else {
			a->failed++;
		}
		if (!gone)
			j->cb(j->opaque, &r);
		job_free(j);
	}
}

/* Staging directories a crashed sandboxd left in parent (ours, their pid
 * gone) are removed. */
static void sweep_stale(const char *parent)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd;

	if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		int pid = 0, n = 0;

		if (sscanf(de->d_name, "sagewai-artifact-%d-%n", &pid, &n) != 1 || n == 0 ||
		    pid <= 0 || pid == getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue; /* alive (or not ours to signal) */
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode) && st.st_uid == geteuid())
			sbd_art_rmtree(dirfd(d), de->d_name);
	}
	closedir(d);
}

struct sbd_art *sbd_artifact_start(struct event_base *base, const struct sbd_artifact_config *cfg,
				   sbd_artifact_emit_fn emit, void *emit_arg, char *err,
				   size_t errlen)
{
	struct sbd_art *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "libsodium or libcurl cannot start");
		free(a);
		return NULL;
	}
	a->cfg = *cfg;
	a->base = base;
	a->emit = emit;
	a->emit_arg = emit_arg;
	TAILQ_INIT(&a->queued);
	TAILQ_INIT(&a->active);
	TAILQ_INIT(&a->done);
	sweep_stale(cfg->stage_parent);
	snprintf(a->stage_dir, sizeof(a->stage_dir), "%s/sagewai-artifact-%d-XXXXXX",
		 cfg->stage_parent, (int)getpid());
	if (mkdtemp(a->stage_dir) == NULL) {
		snprintf(err, errlen,
			 "SAGEWAI_ARTIFACT_STAGE_DIR: cannot make a directory under %s: %s",
			 cfg->stage_parent, strerror(errno));
		free(a);
		return NULL;
	}
	if (sw_handoff_start(&a->h, base, cfg->threads, worker_main, on_loop, a, err, errlen) !=
	    0) {
		rmdir(a->stage_dir);
		free(a);
		return NULL;
	}
	return a;
}

void sbd_artifact_stop(struct sbd_art *a)
{
	struct sbd_art_job *j;
	char *slash;
	int dfd;

	if (a == NULL)
		return;
	sw_handoff_lock(&a->h);
	TAILQ_FOREACH(j, &a->queued, entry)
		j->abandoned = 1;
	TAILQ_FOREACH(j, &a->active, entry)
		j->abandoned = 1;
	sw_handoff_unlock(&a->h);
	/* workers see stopping at their next check and finish up */
	if (sw_handoff_stop(&a->h, 30000) != 0)
		return; /* a worker is stuck: leave it all to the exit */
	while ((j = TAILQ_FIRST(&a->queued)) != NULL) {
		TAILQ_REMOVE(&a->queued, j, entry);
		job_free(j);
	}
	while ((j = TAILQ_FIRST(&a->done)) != NULL) {
		TAILQ_REMOVE(&a->done, j, entry);
		job_free(j);
	}
	slash = strrchr(a->stage_dir, '/');
	*slash = '\0';
	if ((dfd = open(a->stage_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		sbd_art_rmtree(dfd, slash + 1);
		close(dfd);
	}
	free(a);
}

size_t sbd_artifact_pending(const struct sbd_art *a)
{
	return a != NULL ? a->running : 0;
}

/* The destination is one this host offers: 0, or -1 with err. */
static int offered(const struct sbd_art *a, enum sw_artifact_dest d, json_t *spec, char *err,
		   size_t errlen)
{
	const char *repo = json_string_value(json_object_get(spec, "repo"));
	const char *ep = json_string_value(json_object_get(spec, "endpoint"));

	if (d == SW_ARTIFACT_LOCAL && a->cfg.local_dir[0] == '\0') {
		snprintf(err, errlen,
			 "mode_unavailable: the local artifact destination is not configured on "
			 "this sandbox host (SAGEWAI_ARTIFACT_LOCAL_DIR)");
		return -1;
	}
	if (d == SW_ARTIFACT_GITHUB && !a->cfg.insecure_http && !strncmp(repo, "http://", 7)) {
		snprintf(
		    err, errlen,
		    "mode_unavailable: plain http repositories are refused on this sandbox "
		    "host (the token would cross the network in clear; SAGEWAI_ARTIFACT_HTTP)");
		return -1;
	}
	if (d == SW_ARTIFACT_S3 && ep != NULL) {
		const char *p = a->cfg.s3_endpoints;
		size_t n = strlen(ep);

		if (n > 0 && ep[n - 1] == '/')
			n--;
		while (*p != '\0') {
			size_t m = strcspn(p, ", ");

			if (m == n && !strncmp(p, ep, n))
				return 0;
			p += m;
			p += strspn(p, ", ");
		}
		snprintf(err, errlen,
			 "mode_unavailable: the s3 endpoint %.200s is not allowed on this sandbox "
			 "host (SAGEWAI_ARTIFACT_S3_ENDPOINTS)",
			 ep);
		return -1;
	}
	return 0;
}

int sbd_artifact_deliver(struct sbd_env *env, const struct sbd_artifact_req *req,
			 sbd_artifact_cb cb, void *opaque, char *err, size_t errlen)
{
	struct sbd_art *a = env->art;
	struct sbd_art_job *j = NULL;
	char why[300];
	size_t i;

	if (a == NULL) {
		snprintf(err, errlen, "internal: artifacts are not started");
		goto fail;
	}
	if (!req->list_only && sw_artifact_check(req->spec, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "bad_input: %s", why);
		goto fail;
	}
	if (req->nsecrets > SBD_ARTIFACT_SECRETS_MAX) {
		snprintf(err, errlen, "internal: more than %d secrets", SBD_ARTIFACT_SECRETS_MAX);
		goto fail;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		snprintf(err, errlen, "internal: out of memory");
		goto fail;
	}
	j->fd = req->workspace_fd;
	j->stage_fd = -1;
	j->tree_fd = -1;
	j->a = a;
	j->cb = cb;
	j->opaque = opaque;
	j->list_only = req->list_only;
	if (!j->list_only) {
		snprintf(j->dest_name, sizeof(j->dest_name), "%s",
			 json_string_value(json_object_get(req->spec, "destination")));
		sw_artifact_dest_parse(j->dest_name, &j->dest);
		if (offered(a, j->dest, req->spec, err, errlen) != 0)
			goto fail_job;
		if ((j->spec = json_deep_copy(req->spec)) == NULL) {
			snprintf(err, errlen, "internal: out of memory");
			goto fail_job;
		}
	}
	for (i = 0; i < req->nsecrets; i++) {
		const struct sbd_artifact_secret *s = &req->secrets[i];

		if (strlen(s->env) >= sizeof(j->secrets[i].env) || s->len == 0 ||
		    (j->secrets[i].value = sodium_malloc(s->len)) == NULL) {
			snprintf(err, errlen, "internal: secret %zu cannot be kept", i);
			goto fail_job;
		}
		snprintf(j->secrets[i].env, sizeof(j->secrets[i].env), "%s", s->env);
		memcpy(j->secrets[i].value, s->value, s->len);
		j->secrets[i].len = s->len;
		j->nsecrets++;
	}
	j->h = *req->h;
	snprintf(j->step, sizeof(j->step), "%s", req->step ? req->step : "");
	snprintf(j->sandbox_id, sizeof(j->sandbox_id), "%s",
		 req->sandbox_id ? req->sandbox_id : "");
	j->deadline_ms = sw_mono_ms() + a->cfg.timeout_ms;
	j->t_queued = sw_mono_ns();
	sw_handoff_lock(&a->h);
	TAILQ_INSERT_TAIL(&a->queued, j, entry);
	a->running++;
	sw_handoff_signal(&a->h, 0);
	sw_handoff_unlock(&a->h);
	return 0;
fail:
	if (req->workspace_fd >= 0)
		close(req->workspace_fd);
	return -1;
fail_job:
	job_free(j); /* closes the fd */
	return -1;
}

void sbd_artifact_abandon(struct sbd_env *env, void *opaque)
{
	struct sbd_art *a = env->art;
	struct sbd_art_job *j;

	if (a == NULL)
		return;
	sw_handoff_lock(&a->h);
	TAILQ_FOREACH(j, &a->queued, entry)
		if (j->opaque == opaque)
			j->abandoned = 1;
	TAILQ_FOREACH(j, &a->active, entry)
		if (j->opaque == opaque)
			j->abandoned = 1;
	TAILQ_FOREACH(j, &a->done, entry)
		if (j->opaque == opaque)
			j->abandoned = 1;
	sw_handoff_unlock(&a->h);
}
