/*
 * artifact.h: artifact destinations of cli_agent steps (docs/SANDBOX.md,
 * "Artifacts"). Once a step's agent is done, its /workspace goes where the
 * step's `artifact:` says -- a git push (github), objects in a bucket (s3),
 * a host directory (local) or the step's output (none) -- after a scan that
 * refuses the delivery when any file holds a value injected into the
 * sandbox (in any spelling sw_redact knows) or an obvious credential
 * (sw_credshape).
 *
 *   artifact.c        settings, the worker threads (sw_handoff), requests
 *                     in, results and events out on the loop
 *   artifact_stage.c  the workspace snapshot: a tar stream or a hostile
 *                     directory, copied into a private staging directory
 *                     (regular files and directories only)
 *   artifact_scan.c   the secret scan of the staged snapshot
 *   artifact_push.c   the four destinations
 *
 * Where the workspace comes from. A sandbox's /workspace is a tmpfs in its
 * own mount namespace, owned by the sandbox's uid, mode 0700: the service
 * part (another uid, no capabilities) cannot read it, and the privileged
 * part should not walk hostile trees as root. So the snapshot is made
 * inside the sandbox, as one more exec through the tool runner
 * (SBD_ARTIFACT_PACK_ARGV: tar of /workspace to stdout), under the
 * sandbox's own uid, seccomp filter and limits; the caller collects that
 * stdout, unredacted and capped, into a memfd and hands it over as
 * workspace_fd. Tests and tools may pass a directory instead; either way
 * the input is hostile and is staged privately first, so what is scanned
 * is exactly what is delivered (a process left in the sandbox cannot change
 * files between the scan and the push).
 *
 * Where the credentials go. The push runs in sandboxd's service part, the
 * process that already holds the step's injected values (its redactor):
 * the token of a github push is given to git only through a credential
 * helper reading a memfd (never argv, a URL, the environment or a file);
 * AWS keys only to libcurl's SigV4 signer in this process. The workspace
 * cannot steer them: git runs with a git directory and configuration of
 * ours (no hooks, no workspace .git/config, no redirects, the repository
 * address checked and pinned), S3 requests go to operator-allowed
 * endpoints only. Nothing of the workspace's .git is delivered.
 */
#ifndef SBD_ARTIFACT_H
#define SBD_ARTIFACT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>
#include <jansson.h>

#include "sw_events.h"
#include "sw_service.h"
#include "sw_workflow.h"

struct sbd_env;

/* The snapshot command, run in the sandbox by the tool runner once the
 * agent has exited: a tar stream of /workspace on stdout. */
/* clang-format off */
#define SBD_ARTIFACT_PACK_ARGV \
	{"tar", "--create", "--file=-", "--directory=/workspace", "--numeric-owner", ".", NULL}
/* clang-format on */

#define SBD_ARTIFACT_INLINE_MAX_DEFAULT (1u << 20) /* none: output bytes */
#define SBD_ARTIFACT_MAX_FILES_DEFAULT 10000
#define SBD_ARTIFACT_MAX_BYTES_DEFAULT (256ull << 20)
#define SBD_ARTIFACT_TIMEOUT_MS_DEFAULT 600000
#define SBD_ARTIFACT_THREADS_DEFAULT 2
#define SBD_ARTIFACT_SECRETS_MAX 64
#define SBD_ARTIFACT_LIST_MAX 1000 /* files named in a summary */

/* Settings (sbd_artifact_configure reads them from the environment). */
struct sbd_artifact_config {
	char stage_parent[512];	 /* SAGEWAI_ARTIFACT_STAGE_DIR: a private directory is made
				  * under it (/tmp) */
	char local_dir[512];	 /* SAGEWAI_ARTIFACT_LOCAL_DIR: local's root; "": refused */
	size_t inline_max;	 /* SAGEWAI_ARTIFACT_INLINE_MAX */
	size_t max_files;	 /* SAGEWAI_ARTIFACT_MAX_FILES */
	uint64_t max_bytes;	 /* SAGEWAI_ARTIFACT_MAX_BYTES: the files' total */
	int64_t timeout_ms;	 /* SAGEWAI_ARTIFACT_TIMEOUT_MS: one delivery */
	int threads;		 /* SAGEWAI_ARTIFACT_THREADS */
	char s3_endpoints[1024]; /* SAGEWAI_ARTIFACT_S3_ENDPOINTS: scheme://host[:port], ... */
	char s3_region[33];	 /* SAGEWAI_ARTIFACT_S3_REGION: default region (us-east-1) */
	char git[256];		 /* SAGEWAI_ARTIFACT_GIT: the git program (/usr/bin/git) */
	bool insecure_http;	 /* SAGEWAI_ARTIFACT_HTTP=allow: http:// repositories */
	bool allow_private;	 /* SAGEWAI_ARTIFACT_PRIVATE=allow: repositories at loopback
				  * or private addresses */
};

/* A value injected into the sandbox: scanned for, and used by a push. */
struct sbd_artifact_secret {
	const char *env;   /* GITHUB_TOKEN, AWS_ACCESS_KEY_ID, ... */
	const void *value; /* copied into locked memory, wiped after */
	size_t len;
};

struct sbd_artifact_req {
	json_t *spec;	  /* the rendered artifact: object (borrowed, copied); NULL with
			   * list_only */
	bool list_only;	  /* no destination: stage and list the files (with their
			   * sha256), deliver nothing, no scan, no event */
	int workspace_fd; /* taken, even on failure: a directory, or a readable tar
			   * stream (memfd, file or pipe) */
	const struct sbd_artifact_secret *secrets;
	size_t nsecrets;
	const struct sw_event_header *h; /* tenant, run, step, trace of the step (copied) */
	const char *step;		 /* step name */
	const char *sandbox_id;		 /* for the events; may be "" */
};

/*
 * The outcome, valid during the callback only. ok: location says where it
 * went ("https://host/o/r.git#main@<commit>", "s3://bucket/prefix",
 * the host path, "" for none and list_only) and summary is {"destination",
 * "location", "files", "bytes", "list": [{"path", "size", "sha256"}] (the
 * first SBD_ARTIFACT_LIST_MAX), "skipped": [{"path", "why"}]}, for none
 * with "workspace": [{"path", "size", "sha256", "text" | "base64"}]
 * instead of "list" (list_only: destination "").
 * !ok: error is "<code>: <message>", never holding a value: bad_input,
 * mode_unavailable, artifact_refused (the scan), artifact_too_large,
 * artifact_failed (the destination's answer), disk_full, timeout, internal.
 */
struct sbd_artifact_result {
	bool ok;
	const char *destination;
	const char *location;
	size_t files;
	uint64_t bytes;
	json_t *summary; /* borrowed: json_incref to keep */
	const char *error;
};

typedef void (*sbd_artifact_cb)(void *opaque, const struct sbd_artifact_result *r);

/* Events on sagewai.sandbox (artifact.pushed, artifact.scan_refused);
 * sandboxd's is sbd_emit. fields is stolen. Called on the loop. */
typedef void (*sbd_artifact_emit_fn)(void *arg, const char *type,
				     const struct sw_event_header *like, json_t *fields);

/* Defaults, then the environment. 0, or -1 with err naming the setting. */
int sbd_artifact_configure(struct sbd_artifact_config *cfg, char *const *envp, char *err,
			   size_t errlen);

/* The module on base: its staging directory (made now, removed at stop)
 * and cfg->threads workers. NULL with err. */
struct sbd_art *sbd_artifact_start(struct event_base *base, const struct sbd_artifact_config *cfg,
				   sbd_artifact_emit_fn emit, void *emit_arg, char *err,
				   size_t errlen);
/* Abandon what is queued or running (no callback), join the workers,
 * remove the staging directory. NULL-safe. Loop thread. */
void sbd_artifact_stop(struct sbd_art *a);

/*
 * Deliver req's workspace to req->spec's destination, off the loop. 0:
 * cb(opaque, result) follows on the loop exactly once, unless abandoned;
 * -1 with err ("bad_input: ..." for a spec that breaks sw_artifact_check,
 * "mode_unavailable: ..." for a destination this host does not offer,
 * "internal: ...") and nothing queued. env->art must be started.
 */
int sbd_artifact_deliver(struct sbd_env *env, const struct sbd_artifact_req *req,
			 sbd_artifact_cb cb, void *opaque, char *err, size_t errlen);
/* Forget every delivery made with opaque: no callback; its work stops at
 * the next check (a running git or upload is killed). Loop thread. */
void sbd_artifact_abandon(struct sbd_env *env, void *opaque);
/* Deliveries queued or running. */
size_t sbd_artifact_pending(const struct sbd_art *a);

/* ---- internal: shared by the artifact*.c files --------------------------- */

struct sw_redact;

struct sbd_art_file {
	char *path; /* relative, '/'-separated */
	uint64_t size;
	char sha256[65]; /* of the staged copy, hex; "" until sbd_art_hash */
};

struct sbd_art_job {
	TAILQ_ENTRY(sbd_art_job) entry;
	struct sbd_art *a;
	sbd_artifact_cb cb;
	void *opaque;
	int abandoned; /* under a->h.mu; read by the worker through sbd_art_cancelled */
	/* the request */
	json_t *spec; /* NULL when list_only */
	bool list_only;
	enum sw_artifact_dest dest;
	char dest_name[16];
	int fd;
	struct {
		char env[256];
		unsigned char *value; /* sodium_malloc'd */
		size_t len;
	} secrets[SBD_ARTIFACT_SECRETS_MAX];
	size_t nsecrets;
	struct sw_event_header h;
	char step[128];
	char sandbox_id[64];
	int64_t deadline_ms; /* sw_mono_ms */
	/* the worker's */
	struct sw_redact *red; /* the secrets, for the scan and for error texts */
	int stage_fd;	       /* the staging directory of this job */
	int tree_fd;	       /* its tree/: the snapshot */
	char stage[640];       /* its path */
	struct sbd_art_file *files;
	size_t nfiles, files_cap;
	uint64_t bytes;
	json_t *skipped; /* [{"path", "why"}] */
	/* the outcome */
	bool ok;
	char location[1024];
	char error[1024];
	json_t *summary;
	bool refused; /* the scan: artifact.scan_refused */
	char ref_file[512];
	size_t ref_line;
	char ref_what[160];
	/* sw_mono_ns stamps, for the "artifact delivered" log line (0: not
	 * reached): queued, picked by a worker, staged and hashed, scanned,
	 * pushed, cleaned up */
	int64_t t_queued, t_start, t_staged, t_scanned, t_pushed, t_done;
};
TAILQ_HEAD(sbd_art_jobq, sbd_art_job);

struct sbd_art {
	struct sw_handoff h;
	struct sbd_artifact_config cfg;
	struct event_base *base;
	sbd_artifact_emit_fn emit;
	void *emit_arg;
	char stage_dir[600];	    /* this process's, removed at stop */
	struct sbd_art_jobq queued; /* loop -> workers */
	struct sbd_art_jobq active; /* on a worker */
	struct sbd_art_jobq done;   /* workers -> loop */
	size_t running;
	uint64_t delivered, refused, failed;
};

/* artifact.c */
/* The job's error as "<code>: <fmt...>", redacted of its secrets. -1. */
int sbd_art_fail(struct sbd_art_job *j, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Non-zero when the job was abandoned, the module stops or the deadline
 * passed (then the error is set). */
int sbd_art_cancelled(struct sbd_art_job *j);
/* The value of the secret env of j, or NULL. */
const unsigned char *sbd_art_secret(const struct sbd_art_job *j, const char *env, size_t *len);

/* artifact_stage.c */
/* The snapshot: j->fd (tar or directory) into j->stage/tree, j->files
 * and j->bytes filled, caps enforced. 0, or -1 with j's error. */
int sbd_art_stage(struct sbd_art_job *j);
/* Remove a directory tree at dirfd/name without following symlinks. */
int sbd_art_rmtree(int dirfd, const char *name);
/* Open the staged file path (relative to the tree) for reading; -1. */
int sbd_art_open_staged(struct sbd_art_job *j, const char *path);
/* Copy the open file in to the new file out (an fd), at most max bytes
 * (more: -1 with errno EFBIG). Bytes copied, or -1 with errno. */
int64_t sbd_art_copy_fd(int in, int out, uint64_t max);

/* artifact_scan.c */
/* Every staged file and path name: 0 when clean, -1 with j->refused (or
 * another error) set. */
int sbd_art_scan(struct sbd_art_job *j);
/* The sha256 of every staged file into j->files[].sha256. 0, or -1 with
 * j's error. */
int sbd_art_hash(struct sbd_art_job *j);

/* artifact_push.c */
int sbd_art_push_github(struct sbd_art_job *j);
int sbd_art_push_s3(struct sbd_art_job *j);
int sbd_art_push_local(struct sbd_art_job *j);
int sbd_art_push_none(struct sbd_art_job *j);

#endif
