/*
 * sagewai-sandboxd: runs the sandboxed steps of workflow runs on one sandbox
 * host (docs/SANDBOX.md, "sandboxd"). Two processes (priv.c): a privileged
 * part that only creates and destroys sandboxes, and the service part
 * described here — one libevent loop that never blocks; it asks the
 * privileged part to start and destroy sandboxes without waiting for the
 * answers (many in flight, privclient.c).
 *
 * Flow of one step.dispatched message of mode sandboxed: the mechanics
 * are sw_executor's (libs/executor: offsets, duplicates, other modes left
 * alone, the results table in schema "sandboxd", the preview gate's
 * backstop, concurrency slots, cancels, step.started and step.finished);
 * sandboxd adds
 *
 *   exec.c      preflight: spec checks (run, env, variant, network, limits,
 *               output_max); in a slot, an acquire from the pool
 *   pool.c      a warm sandbox of (variant, network) when one is ready (a
 *               replacement is asked for at once), else a cold start of its
 *               own, whose answer comes back on the loop (cold_started)
 *   exec.c      the command runs: the control socket is driven on the loop
 *               with the non-blocking sw_sandbox_* calls; output is captured
 *               (capped) and streamed as sandbox.output events (capped); the
 *               exit (or timeout, or a broken sandbox) goes to
 *               sw_executor_finish
 *   identity.c  identity_scoped only (with a seal key): once the sandbox is
 *               held, its values are asked for (identity.seal_requested), the
 *               sealed answer (read by a tail reader) opened and checked, the
 *               values injected before the EXEC and redacted from everything
 *               the step says; secret.revoked (hard) kills its sandbox
 *   agent.c     cli_agent only (with a seal key): the agent's command line
 *               and home from a per-agent table, prepared before the seal;
 *               after the agent, the workspace snapshot (one more exec), the
 *               sandbox destroyed, the artifact delivered (artifact.h)
 *   pool.c      the sandbox's socket is closed and the privileged part asked
 *               to destroy it (never reused); its answer carries the final
 *               usage -> sandbox.released
 *
 * Threads: the loop thread owns jobs, the bus, the store, the pool and
 * every sandbox handle; the sandboxes themselves are the privileged part's
 * (its one loop forks every bwrap, so --die-with-parent ties them to a
 * thread that lives as long as that process). The artifact workers are
 * the only other threads (artifact.c).
 */
#ifndef SANDBOXD_H
#define SANDBOXD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>
#include <jansson.h>

#include "sw_bus.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_http.h"
#include "sw_redact.h"
#include "sw_sandbox.h"
#include "sw_service.h"
#include "sw_store.h"

#include "artifact.h"
#include "credparse.h"

/* sw_executor.h (libs/executor) is included by the files that use it; this
 * header is also compiled into tests that do not link the executor. */
struct sw_executor;
struct sw_executor_job;
struct sw_executor_ops;
struct sw_executor_report;

#define SBD_PRODUCER "sagewai-sandboxd"
#define SBD_DEFAULT_GROUP "sagewai-sandboxd"
#define SBD_OUTPUT_MAX_DEFAULT (1u << 20)	   /* spec.output_max default, 1 MiB */
#define SBD_OUTPUT_EVENTS_DEFAULT (64u << 10) /* sandbox.output bytes per step */
#define SBD_CONCURRENCY_DEFAULT 16
/* dispatches held before pausing the consumer, at least: a pause costs up
 * to fetch.wait.max.ms of reading after the resume, so a burst of steps
 * must not cause one (the executor also stops at EXEC_LINE_BYTES) */
#define SBD_LINE_MIN 4096
#define SBD_WARM_DEFAULT 2
#define SBD_BUS_MAX_DEFAULT 1000000
#define SBD_GRACE_MS 5000    /* host-side slack over the runner's own timeout */
#define SBD_DRAIN_S 10	     /* grace for running steps at shutdown */
#define SBD_STDERR_TAIL 400  /* stderr quoted in an exit_status error */
#define SBD_PATH "/usr/local/bin:/usr/bin:/bin:/.sagewai/bin" /* sagewai-cred last */
#define SBD_USER_DEFAULT "65533:65533" /* the service part, when started as root */
#define SBD_SANDBOX_MAX_DEFAULT 256

struct sbd_job;

/*
 * One sandbox of this host, from the create request to the destroy's
 * answer (all on the loop). Fields above the line are set by whoever made
 * the request; below it, by the answers and the job holding it.
 */
struct sbd_slot {
	TAILQ_ENTRY(sbd_slot) entry; /* a warm pool's ready list, or pool.inflight */
	char id[SW_UUID_STRLEN];     /* sandbox id */
	struct sbd_warm *warm;	     /* the warm pool it belongs to (request key) */
	struct sw_sandbox_limits limits; /* cold start: the job's limits */
	struct sbd_job *job;	     /* cold start: the requester (NULL: abandoned) */
	struct sbd_env *env;
	int64_t t0_ns; /* when its create was asked for */
	/* ---- */
	struct sw_sandbox *sb;	 /* NULL when the start failed */
	uint64_t handle;	 /* the privileged part's name for it, 0: none */
	int egress_fd;		 /* egress_only: its proxy's listener until used, else -1 */
	struct sbd_egress *egress; /* the proxy while handed out */
	const struct sw_redact *red; /* the step's injected values, while it holds it (loop) */
	int64_t start_us;	 /* how long the start took */
	bool from_warm;		 /* handed out of a warm pool */
	char err[512];		 /* why the start failed */
	struct sw_sandbox_usage final; /* after destroy */
	/* identity of its one use, for sandbox.released */
	struct sw_event_header h;
	char reason[64];
	/* killed by a hard revocation: identity.revoke_killed once it is gone */
	char step[128];
	char revoke_event_id[SW_UUID_STRLEN]; /* "" when not */
	char revoke_secret[64];
	int revoke_version;
	int64_t revoke_time_us; /* the revocation's header.time */
};
TAILQ_HEAD(sbd_slotq, sbd_slot);

/* The warm pool of one (variant, network). */
struct sbd_warm {
	LIST_ENTRY(sbd_warm) entry;
	char variant[64];
	enum sw_sandbox_net net;
	struct sw_sandbox_variant *v; /* from the catalogue (pool->catalogue owns it) */
	struct sbd_slotq ready;	      /* started, no identity, waiting */
	size_t nready, starting;
	uint64_t hits, misses, started, failed;
	int64_t start_us_sum, start_us_last; /* warm starts (started counts them) */
	uint64_t cold_started;		     /* cold starts for a waiting step */
	int64_t cold_us_sum, cold_us_last;
	int broken; /* a warm start failed: no refill until the next acquire */
};

struct sbd_pool {
	struct sbd_priv_client *cl; /* requests to the privileged part */
	int priv_fd;		    /* its socket until the client takes it */
	char variants_dir[512];
	struct sw_sandbox_variant **catalogue; /* read once, before the split */
	size_t ncatalogue;
	size_t warm_target;
	LIST_HEAD(, sbd_warm) warms;
	struct sbd_slotq inflight; /* waiting for a create's or a destroy's answer */
	int stopping;
};

/* Where an active job (SW_EXECUTOR_ACTIVE) is. */
enum sbd_stage {
	SBD_ACQUIRING,	/* waiting for a sandbox */
	SBD_PREPARING,	/* cli_agent: the agent's home and configuration are written */
	SBD_SEALING,	/* identity_scoped, cli_agent: sandbox held, waiting for
			 * identity.sealed */
	SBD_RUNNING,	/* the command (the agent) runs */
	SBD_PACKING,	/* cli_agent: the workspace snapshot is taken */
	SBD_DELIVERING, /* cli_agent: the sandbox is gone, the artifact is delivered */
};

struct sbd_agent; /* agent.c */

/* One key of an identity_scoped step (step.dispatched.identity): a pinned
 * secret, whose value comes sealed, or a plain knob, whose value is in the
 * dispatch. Never a secret value. */
struct sbd_idkey {
	char env[256];	  /* the variable */
	char secret[64];  /* the secret's name; "" for a plain knob */
	int version;	  /* pinned version; 0 for a plain knob */
	bool system;	  /* level system: a secret of the scope _system */
	char mac[65];	  /* keyed BLAKE2b-256 of the value, hex; "" for a plain knob */
	char *plain;	  /* a plain knob's value (not secret; owned); NULL for a secret */
};

#define SBD_CRED_PENDING_MAX 4 /* credential requests of one sandbox waiting at once */
#define SBD_CRED_RATE_DEFAULT 60 /* requests of one sandbox per minute */
#define SBD_CRED_GRANTS_MAX 16 /* distinct values delivered to one sandbox */

/* One redaction layer: a set and its two streams (stdout, stderr). */
struct sbd_layer {
	struct sw_redact *red;
	struct sw_redact_stream *rs[2];
};

/* The identity side of one identity_scoped job (identity.c). */
struct sbd_ident {
	struct sbd_idkey *keys; /* the dispatch's, in its order */
	size_t nkeys;
	size_t npins;		/* of which secrets */
	char request_id[SW_UUID_STRLEN]; /* the seal request in flight, "" before */
	struct event *timer;		 /* its deadline (SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS) */
	struct sw_redact *red;		 /* the injected values, until the step ends */
	struct sw_redact_stream *rs[2];	 /* stdout, stderr */
	struct sw_buf scratch;		 /* redacted bytes of one chunk */
	bool injected;			 /* INJECT_ENV frames queued */
	/* cli_agent_jit: one layer per value delivered at run time (a set is
	 * immutable once its streams exist); output goes through red, then
	 * each of these in order */
	struct sbd_layer grants[SBD_CRED_GRANTS_MAX];
	size_t ngrants;
};

/* A credential request of a cli_agent_jit sandbox (cred.c). */
enum sbd_cred_stage {
	SBD_CRED_DECIDING, /* credential.requested out, credential.decided awaited */
	SBD_CRED_SEALING,  /* allowed: the box identity seals on the decision awaited */
};

struct sbd_cred {
	LIST_ENTRY(sbd_cred) entry;
	struct sbd_job *j;
	enum sbd_cred_stage stage;
	uint32_t id;			 /* the runner's */
	char request_id[SW_UUID_STRLEN]; /* ours, in every credential.* event */
	char name[129];
	int64_t timeout_ms;
	struct event *timer; /* the requester's deadline */
};
LIST_HEAD(sbd_credl, sbd_cred);

/* sandboxd's part of a step.dispatched being handled (x->owner). */
struct sbd_job {
	struct sw_executor_job *x; /* the dispatch, its phase and step.finished */
	struct sbd_env *env;
	enum sbd_stage stage;
	char **argv; /* owned, NULL-terminated */
	char **envp; /* spec.env as "NAME=value", owned, NULL-terminated; NULL: none */
	struct sbd_warm *warm;
	struct sw_sandbox_limits limits; /* the spec's (0 = variant default) */
	bool custom_limits;
	size_t output_max;
	int64_t acquire_t0_ns; /* the acquire began */

	struct sbd_slot *slot; /* the sandbox, while held (or being started) */
	int slot_pending;      /* slot is a cold start not yet done */
	struct event *rd, *wr; /* on its control socket */
	struct event *timer;   /* host-side deadline */
	struct sw_buf out, err; /* captured output (output_max caps both together) */
	bool truncated;
	size_t ev_bytes; /* sent as sandbox.output */
	int ev_seq;
	bool ev_truncated;
	bool exited;
	struct sw_sandbox_exit ex;
	char ex_error[256];
	int64_t exec_t0_ns;

	struct sbd_agent *agent;	 /* cli_agent: its agent and artifact; else NULL */
	bool redact_failed;		 /* out of memory redacting: nothing more is released */
	struct sbd_ident *ident;	 /* identity_scoped: its keys and redactor; else NULL */
	LIST_ENTRY(sbd_job) id_entry; /* env->idjobs while ident is set */
	struct sbd_credl creds;	      /* cli_agent_jit: requests in flight */
	size_t ncreds;
	int64_t cred_window_ms; /* the rate limit's minute began (monotonic) */
	long long cred_window_n; /* requests in it */
	uint64_t replay_used;	 /* a re-run: the recorded decisions taken (cred.c) */
};
LIST_HEAD(sbd_jobl, sbd_job);

struct sbd_env {
	struct sw_service *svc;	     /* the frame (libs/service) */
	struct event_base *base;     /* the frame's, borrowed */
	struct sw_metrics *metrics;  /* the frame's, borrowed */
	struct sw_event_registry *reg;
	struct sw_store *store;
	struct sbd_pool pool;
	struct sw_executor *ex;
	const char *executor; /* sw_service_instance: step.started's executor */
	const char *group;    /* the consumer group */
	char state_dir[512];  /* this process's, under SAGEWAI_SANDBOX_STATE_DIR */
	int serving;	      /* sbd_start completed: close the consumer at the end */

	/* settings */
	size_t output_cap; /* SAGEWAI_STEP_OUTPUT_MAX */
	size_t output_events_max;
	size_t bus_max;
	int concurrency;
	int multi_tenant;   /* SAGEWAI_MODE=multi_tenant */
	int sealed_preview; /* SAGEWAI_SEALED_PREVIEW=1 */
	int egress_private; /* SAGEWAI_EGRESS_PRIVATE=allow */
	unsigned networks;  /* SAGEWAI_SANDBOX_NETWORKS: bit (1 << enum sw_sandbox_net) */
	struct evdns_base *dns; /* for the egress proxies */

	/* identity_scoped (identity.c); only with SAGEWAI_SANDBOXD_SEAL_KEY_FILE */
	unsigned char *seal_sk;	     /* X25519 secret key (sodium_malloc, read-only); NULL: none */
	unsigned char seal_pk[32];   /* its public key */
	char seal_pk_hex[65];
	int64_t seal_timeout_ms;     /* SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS */
	long long cred_rate;	     /* SAGEWAI_SANDBOXD_CRED_RATE: requests per sandbox per
				      * minute (cli_agent_jit) */
	unsigned char *mac_key;	     /* SAGEWAI_SECRET_MAC_KEY_FILE (sodium_malloc), or NULL:
				      * sealed values are checked against the pinned MACs */
	struct sw_bus_consumer *idtail; /* sagewai.identity{,.sealed} from their ends */
	struct sbd_jobl idjobs;	     /* identity_scoped jobs in flight */

	/* artifact destinations (artifact.h) */
	struct sbd_artifact_config art_cfg;
	struct sbd_art *art; /* started by sbd_start */
};

/* main.c: the struct sw_service_def wiring the roles below; nothing else. */

/* config.c: def->configure, before the loop and before any thread: the
 * settings beyond struct sw_config, this process's state directory, the
 * variant catalogue, then the privileged/unprivileged split (a fork). */
int sbd_configure(struct sw_service *svc, void *arg, char *err, size_t errlen);

/* serve.c: the frame's other callbacks (arg: the env) */
/* The roles: resolver, pool, store, executor and its Kafka clients, HTTP. */
int sbd_start(struct sw_service *svc, void *arg, char *err, size_t errlen);
/* First signal: the executor takes no more messages, running steps end. */
void sbd_drain(struct sw_service *svc, void *arg);
int sbd_drained(void *arg);
/* Fatal: the executor takes nothing more. */
void sbd_halt(void *arg);
/* After the loop or a failed start (or configure): close what is open. */
void sbd_stop(struct sw_service *svc, void *arg);
int sbd_health(void *arg);
/* sw_executor's report and fatal callbacks (arg: the env); fatal is
 * sw_service_fatal. */
void sbd_report(void *arg, const struct sw_executor_report *r);
void sbd_on_fatal(void *arg, const char *what, const char *why);

/* exec.c: sw_executor's callbacks (sw_executor.h) and the execution */
extern const struct sw_executor_ops sbd_exec_ops;
/* A cold start requested by j is done (slot->sb NULL on failure). */
void sbd_exec_acquired(struct sbd_job *j, struct sbd_slot *slot);
/* The step ended: sw_executor_finish on j's dispatch (output stolen, may
 * be NULL; fmt "<code>: <message>"), output and error redacted first when
 * the job holds injected values. Only the first call for an attempt
 * counts. */
void sbd_exec_finish(struct sbd_job *j, int st, json_t *output, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* identity_scoped: the values are injected (or there were none to seal):
 * queue the EXEC. */
void sbd_exec_run(struct sbd_job *j);
/* Start ex on j's sandbox (its timeout: ex->timeout_ms if given and
 * shorter, else what is left of the step's); the exit comes back through
 * the loop. 0, or -1 after finishing the step. */
int sbd_exec_launch(struct sbd_job *j, struct sw_sandbox_exec *ex);
/* What is left of the step's timeout, ms (0: none, else at least 1). */
int64_t sbd_exec_left_ms(const struct sbd_job *j);
/* The host-side backstop back at the step's own deadline (+ grace), after
 * a shorter exec of sandboxd's own. */
void sbd_exec_rearm(struct sbd_job *j);
/* j is done with its sandbox (the step goes on): it is destroyed. */
void sbd_exec_drop_sandbox(struct sbd_job *j);

/* pool.c */
/* The client of the privileged part on pool.priv_fd, on the loop. 0, or
 * -1 with errstr. */
int sbd_pool_start(struct sbd_env *env, char *errstr, size_t errlen);
/* Close the privileged part's socket (it then destroys every sandbox and
 * exits), free the pools, the slots waiting for answers and the
 * catalogue. Idempotent; copes with a pool never started. */
void sbd_pool_stop(struct sbd_env *env);
/* Read the whole variant catalogue (before the split: the service part
 * never reads it again). 0, or -1 with errstr (a bad variant file). */
int sbd_pool_catalogue(struct sbd_env *env, char *errstr, size_t errlen);
/* The warm pool of (variant, net), made (and filled in the background) on
 * first use; NULL with errstr for a variant not in the catalogue. */
struct sbd_warm *sbd_pool_warm(struct sbd_env *env, const char *variant, enum sw_sandbox_net net,
			       char *errstr, size_t errlen);
/* A sandbox for j: returns a warm slot at once, or NULL when a cold start
 * was queued (sbd_exec_acquired follows) or could not be queued (errstr
 * filled, *queued 0). */
struct sbd_slot *sbd_pool_acquire(struct sbd_job *j, int *queued, char *errstr, size_t errlen);
/* Hand a slot back: its sandbox is destroyed by the privileged part and, if it
 * served a run (slot->h.run_id set), sandbox.released follows. */
void sbd_pool_release(struct sbd_env *env, struct sbd_slot *slot);
/* A job gives up a cold start it is waiting for. */
void sbd_pool_abandon(struct sbd_env *env, struct sbd_job *j);
void sbd_pool_metrics(struct sbd_env *env);

/* identity.c: the identity_scoped mode (docs/SANDBOX.md, "identity_scoped").
 * Configuration (before the split): SAGEWAI_SANDBOXD_SEAL_KEY_FILE, the
 * host's X25519 secret key as 64 hex (mode 0600 or stricter; sodium_malloc'd),
 * SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS and, optionally, the deployment's MAC key
 * (SAGEWAI_SECRET_MAC_KEY_FILE). 0, or -1 with err. */
int sbd_identity_configure(struct sbd_env *env, char *const *envp, char *err, size_t errlen);
/* The privileged part's copy of the key is wiped (sbd_priv_config.forget). */
void sbd_identity_forget(void *arg);
/* The tail reader of sagewai.identity and sagewai.identity.sealed (answers
 * to our seal requests, revocations); nothing without a key. 0 or -1. */
int sbd_identity_start(struct sbd_env *env, char *err, size_t errlen);
void sbd_identity_stop(struct sbd_env *env);
/* Preflight: j's dispatch identity parsed and checked into j->ident (a
 * bad one: -1 with err, the step fails bad_input). */
int sbd_identity_parse(struct sbd_job *j, char *err, size_t errlen);
/* j holds its sandbox: ask for the sealed values (identity.seal_requested);
 * the answer injects them and calls sbd_exec_run, or fails the step. */
void sbd_identity_seal(struct sbd_job *j);
/* The EXEC is queued: identity.injected (the keys with their MACs). */
void sbd_identity_injected(struct sbd_job *j);
/* The job is done with its identity: timers, the redactor (wiped). */
void sbd_identity_release(struct sbd_job *j);
/* Redaction of j's output: feed a chunk of stream (1 stdout, 2 stderr),
 * redacted bytes appended to out; flush at the end. 0, or -1 (out of
 * memory: nothing may be released). Without injected values, a copy. */
int sbd_identity_feed(struct sbd_job *j, int stream, const void *buf, size_t len,
		      struct sw_buf *out);
int sbd_identity_flush(struct sbd_job *j, int stream, struct sw_buf *out);
/* A malloc'd redacted copy of text (NULL when out of memory). */
char *sbd_identity_redact(const struct sbd_job *j, const char *text);
/* j holds values to redact (pinned or granted). */
int sbd_identity_redacting(const struct sbd_job *j);
/* v redacted (a new reference; NULL when out of memory); v's reference is
 * stolen. */
json_t *sbd_identity_redact_json(const struct sbd_job *j, json_t *v);
/* cli_agent_jit: redact value (len bytes) as env from now on (a new
 * layer). 0; 1 when it is redacted already (no layer added); -1 with err
 * (too short to redact, too many, no memory). */
int sbd_identity_grant(struct sbd_job *j, const char *env, const void *value, size_t len,
		       char *err, size_t errlen);
/* A sealed answer nobody's seal waits for: the credential flow's? */
void sbd_cred_sealed(struct sbd_env *env, json_t *ev);

/* agent.c: the cli_agent mode (docs/SANDBOX.md, "cli_agent"): after the
 * sandbox is acquired, the agent's home is prepared (PREPARING), the
 * identity sealed and injected (SEALING), the agent run (RUNNING); on its
 * exit 0 the workspace snapshot is taken (PACKING), the sandbox destroyed
 * and the artifact delivered (DELIVERING); then step.finished. */
/* Preflight: spec.cli_agent, prompt, artifact, run (custom only) into
 * j->agent; *variant: the agent's default variant. 0, or -1 with err. */
int sbd_agent_new(struct sbd_job *j, const char **variant, char *err, size_t errlen);
/* j's agent is custom (its command is spec.run). */
int sbd_agent_custom(const struct sbd_job *j);
/* Preflight, after the env and the identity are parsed: the agent's
 * command line (j->argv), its environment (added to j->envp) and the file
 * its home needs (from the identity's plain knobs). 0, or -1 with err. */
int sbd_agent_build(struct sbd_job *j, char *err, size_t errlen);
/* The sandbox is held: write the agent's home, then sbd_identity_seal. */
void sbd_agent_prepare(struct sbd_job *j);
/* The agent's EXEC is about to be queued (ex is j->argv/j->envp's). 0. */
int sbd_agent_running(struct sbd_job *j, struct sw_sandbox_exec *ex);
/* Output while not RUNNING (the home, the snapshot): consumed, 1; else 0.
 * Never ends the step (the sandbox is being read). */
int sbd_agent_output(struct sbd_job *j, int stream, const uint8_t *buf, size_t len);
/* The exit of an exec of ours (PREPARING, PACKING) is in j->ex. */
void sbd_agent_exited(struct sbd_job *j);
/* The agent exited 0: the snapshot. */
void sbd_agent_ran(struct sbd_job *j);
/* identity.c, opening the box: a value injected into j's sandbox, kept
 * (sodium memory) for the artifact's scan and push. 0, or -1. */
int sbd_agent_keep(struct sbd_job *j, const char *env, const void *value, size_t len);
/* The job ends: a delivery in flight is abandoned, kept values wiped. */
void sbd_agent_release(struct sbd_job *j);

/* cred.c: the cli_agent_jit credential requests (docs/JIT.md) */
/* A CRED_REQUEST frame from j's runner (payload as received). Never ends
 * the step: a bad one is refused to the runner and logged. */
void sbd_cred_request(struct sbd_job *j, const char *json, size_t len);
/* A credential.decided (decoded) from the tail reader. */
void sbd_cred_decided(struct sbd_env *env, json_t *ev, const struct sw_event_header *h);
/* The job ends, or its sandbox is dropped: pending requests are withdrawn
 * (credential.withdrawn). */
void sbd_cred_release(struct sbd_job *j);
/* exec.c: queue what j's sandbox has to be sent. */
void sbd_exec_want_write(struct sbd_job *j);

/* events.c: lifecycle events on sagewai.sandbox (informative: a lost one
 * is logged, never retried) */
void sbd_emit(struct sbd_env *env, const char *type, const struct sw_event_header *like,
	      json_t *fields);

/* priv.c: the privileged part (creates and destroys sandboxes, nothing
 * else); privclient.c: the service part's end of its socket. */
struct sbd_priv_config {
	char runner[1024];	 /* sagewai-toolrunner */
	char bwrap[1024];	 /* bubblewrap */
	char slirp[1024];	 /* slirp4netns, for network full */
	char nft[1024];		 /* nft, for network full */
	char variants_dir[512];	 /* the catalogue, read by the privileged part itself */
	char state_dir[512];	 /* made by the caller; workspaces; removed at the end */
	char user[128];		 /* when root: the service part's user (name|uid[:gid]) */
	char cgroup[256];	 /* per-sandbox cgroups: auto, v1, v2 or off */
	size_t max_sandboxes;	 /* held at once, warm ones included */
	/* the privileged part calls this once forked (secrets it must not keep) */
	void (*forget)(void *arg);
	void *forget_arg;
};

struct sbd_priv_sandbox {
	uint64_t handle;		 /* the privileged part's name for it */
	int ctl_fd;			 /* the runner's control socket (READY consumed) */
	int egress_fd;			 /* egress_only: listening in its netns, else -1 */
	struct sw_sandbox_limits limits; /* effective */
	int64_t start_us;
	pid_t pid; /* host pid of its runner */
};

/* Fork: the parent becomes the privileged part and never returns (it
 * exits when the child ends); the child drops its privileges and gets the
 * socket in *sock. -1 with err when the split failed (nothing forked, or
 * the child could not drop privileges). Call before any thread exists. */
int sbd_priv_split(const struct sbd_priv_config *cfg, int *sock, char *err, size_t errlen);

/* privclient.c: requests to the privileged part from the service's loop,
 * many in flight, each answered through its callback on the loop. */
struct sbd_priv_result {
	const char *err;		 /* NULL: done; else why not */
	struct sbd_priv_sandbox created; /* a create's: its fds are the callback's */
	struct sw_sandbox_usage final;	 /* a destroy's: the whole sandbox's usage */
};
typedef void (*sbd_priv_cb)(void *arg, struct sbd_priv_result *r);
struct sbd_priv_client;
/* Takes sock (even on failure). NULL with errstr. */
struct sbd_priv_client *sbd_priv_client_new(struct event_base *base, int sock, char *errstr,
					    size_t errlen);
/* Closes the socket (the privileged part then destroys every sandbox and
 * exits); no callback runs any more. NULL is fine. */
void sbd_priv_client_free(struct sbd_priv_client *cl);
/* Send a request; cb runs once, later, on the loop (never from inside
 * this call). 0, or -1 with err (the socket is gone: cb never runs). */
int sbd_priv_client_create(struct sbd_priv_client *cl, const char *variant,
			   enum sw_sandbox_net net, const struct sw_sandbox_limits *limits,
			   sbd_priv_cb cb, void *arg, char *err, size_t errlen);
int sbd_priv_client_destroy(struct sbd_priv_client *cl, uint64_t handle, sbd_priv_cb cb,
			    void *arg, char *err, size_t errlen);
size_t sbd_priv_client_pending(const struct sbd_priv_client *cl);
/* Blocking round trips on a socket no client drives (tests). */
int sbd_priv_create(int sock, const char *variant, enum sw_sandbox_net net,
		    const struct sw_sandbox_limits *limits, struct sbd_priv_sandbox *out,
		    char *err, size_t errlen);
int sbd_priv_destroy(int sock, uint64_t handle, struct sw_sandbox_usage *final, char *err,
		     size_t errlen);

/* egress*.c (their private header: egress.h): the egress proxy of one
 * egress_only sandbox (docs/SANDBOX.md, "egress_only"). It serves a
 * listening socket that lives in the sandbox's network namespace
 * (127.0.0.1:SBD_EGRESS_PORT there) and speaks HTTP CONNECT
 * and plain HTTP (absolute-form requests). Each connection asks for one
 * host:port; it is allowed only if listed (sbd_egress_allow) and, unless
 * allow_private, its address is public. Every decision goes to the callback
 * before any byte reaches the destination. Runs on the loop; never blocks. */
#define SBD_EGRESS_PORT 3128
#define SBD_EGRESS_HEAD_MAX 8192  /* request line + headers */
#define SBD_EGRESS_CONNS_MAX 64	  /* open connections per sandbox */
#define SBD_EGRESS_ALLOW_MAX 64	  /* entries of a step's egress_allow */

struct sbd_egress;

struct sbd_egress_decision {
	const char *method;  /* "CONNECT", "GET", ...; "" when unparsable */
	const char *host;    /* lower-cased; "" when unparsable */
	int port;	     /* 0 when unparsable */
	const char *address; /* numeric address connected to or refused; "" */
	bool allowed;
	const char *reason; /* "allowed", "not_listed", "private_address",
			     * "bad_request", "head_too_large", "resolve_failed",
			     * "too_many_connections", "timeout", ... */
};

typedef void (*sbd_egress_cb)(void *arg, const struct sbd_egress_decision *d);

struct sbd_egress_config {
	struct evdns_base *dns; /* resolver on the same base (borrowed) */
	bool allow_private;	/* let listed hosts resolve to loopback/private/... */
	uint32_t head_timeout_ms;    /* 0: 10000 */
	uint32_t connect_timeout_ms; /* 0: 10000 */
	uint32_t idle_timeout_ms;    /* 0: 300000 */
};

/* Takes listen_fd (a listening TCP socket) even on failure. Allows nothing
 * until sbd_egress_allow. NULL with errstr on failure. */
struct sbd_egress *sbd_egress_new(struct event_base *base, int listen_fd,
				  const struct sbd_egress_config *cfg, sbd_egress_cb cb, void *arg,
				  char *errstr, size_t errlen);
/* Replace the allow-list with hostports ("host:port", host a name or an IPv4
 * or [IPv6] literal, port 1-65535), n of them. 0, or -1 with errstr naming
 * the bad entry (the old list stays). */
int sbd_egress_allow(struct sbd_egress *e, const char *const *hostports, size_t n, char *errstr,
		     size_t errlen);
/* Connections open now. */
size_t sbd_egress_open(const struct sbd_egress *e);
/* Close the listener and every connection; no callback afterwards. */
void sbd_egress_free(struct sbd_egress *e);

#endif
