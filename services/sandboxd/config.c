/*
 * config.c: sandboxd's settings beyond struct sw_config, and what must
 * happen before any thread exists: the state directory, the variant
 * catalogue (read once: the service part never reads it again) and the
 * privileged/unprivileged split (sbd_priv_split forks; the parent stays
 * the privileged part and never comes back here).
 *
 * Settings beyond struct sw_config (environment only):
 *   SAGEWAI_SANDBOX_VARIANTS_DIR   the variant catalogue (build tree's
 *                                  infra/sandbox/variants)
 *   SAGEWAI_SANDBOX_RUNNER         sagewai-toolrunner (the build tree's)
 *   SAGEWAI_SANDBOX_BWRAP          bubblewrap (/usr/bin/bwrap)
 *   SAGEWAI_SANDBOX_SLIRP4NETNS    network full: slirp4netns (/usr/bin/slirp4netns)
 *   SAGEWAI_SANDBOX_NFT            network full: nft (/usr/sbin/nft); either missing:
 *                                  full steps fail with mode_unavailable
 *   SAGEWAI_SANDBOX_STATE_DIR      the backend's state (workspaces are tmpfs); a fresh directory
 *                                  under it is made and removed (/tmp)
 *   SAGEWAI_SANDBOXD_USER          started as root, the part that speaks Kafka,
 *                                  PostgreSQL and HTTP runs as this user (name,
 *                                  uid or uid:gid; 65533:65533, not the sandboxes'
 *                                  65534); only the privileged part keeps root
 *   SAGEWAI_SANDBOX_MAX            sandboxes held at once, warm ones included (256)
 *   SAGEWAI_SANDBOX_CGROUP         per-sandbox cgroups bounding each sandbox's memory
 *                                  and tasks as a whole: auto (the default: v2, else
 *                                  v1, else off with the reason logged), v1, v2, off
 *   SAGEWAI_SANDBOX_NETWORKS       network policies offered (none,egress_only,full;
 *                                  none,egress_only in multi_tenant mode)
 *   SAGEWAI_EGRESS_PRIVATE         allow: egress_only steps may reach listed hosts
 *                                  that resolve to loopback/private addresses
 *                                  (deny, the default, protects the host's services)
 *   SAGEWAI_SANDBOX_WARM           warm sandboxes per (variant, network) (2)
 *   SAGEWAI_SANDBOX_OUTPUT_EVENTS_MAX  bytes of a step's output sent as
 *                                  sandbox.output events (65536)
 *   SAGEWAI_SANDBOXD_CONCURRENCY   steps executing at once (16)
 *   SAGEWAI_STEP_OUTPUT_MAX        cap of any step's captured output (1 MiB)
 *   SAGEWAI_MODE, SAGEWAI_SEALED_PREVIEW  the preview gate's backstop: in
 *                                  multi_tenant mode, no step of a workflow with an
 *                                  identity-bearing mode runs unless the preview is on
 *   SAGEWAI_KAFKA_MESSAGE_MAX      largest event the bus carries (1000000)
 *   SAGEWAI_KAFKA_CONSUMER_CONFIG  "name=value,..." librdkafka tuning (serve.c)
 *   SAGEWAI_SANDBOXD_SEAL_KEY_FILE this host's X25519 secret key (64 hex, mode 0600 or
 *                                  0400): identity_scoped steps are taken only with it
 *                                  (identity.c); its public key is logged at start
 *   SAGEWAI_SANDBOXD_SEAL_TIMEOUT_MS  how long a step waits for its sealed values (10000)
 *   SAGEWAI_ARTIFACT_*             artifact destinations of cli_agent steps
 *                                  (artifact.c: LOCAL_DIR, STAGE_DIR, INLINE_MAX,
 *                                  MAX_FILES, MAX_BYTES, TIMEOUT_MS, THREADS,
 *                                  S3_ENDPOINTS, S3_REGION, GIT, HTTP, PRIVATE)
 *   SAGEWAI_INSTANCE_ID            this instance's group.instance.id (serve.c): static
 *                                  group membership, so a restart gets its partitions
 *                                  back at once; stable across restarts, unique in the
 *                                  group; unset: dynamic membership (a guessed id two
 *                                  instances share would have the broker fence one)
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandboxd.h"

/* jansson's memory may hold an injected value (the opened box is parsed
 * with it): wiped before it is freed, whoever frees it. */
static void wipe_free(void *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

/* "none,egress_only" -> a bit per enum sw_sandbox_net. 0 or -1. */
static int networks_parse(const char *list, unsigned *out)
{
	char buf[128], *tok, *save = NULL;
	enum sw_sandbox_net net;

	if (strlen(list) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", list);
	*out = 0;
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (sw_sandbox_net_parse(tok, &net) != 0)
			return -1;
		*out |= 1u << net;
	}
	return *out != 0 ? 0 : -1;
}

/* The settings into env and pc; the parent of the state directory into
 * state_parent. 0, or -1 with err. */
static int settings_load(struct sbd_env *env, char *const *envp, const struct sw_config *cfg,
			 struct sbd_priv_config *pc, char *state_parent, size_t parentlen,
			 char *err, size_t errlen)
{
	const char *v;
	long long n;

	if (sw_config_number(envp, "SAGEWAI_STEP_OUTPUT_MAX", SBD_OUTPUT_MAX_DEFAULT, 1,
			     1LL << 30, &n, err, errlen) == -1)
		return -1;
	env->output_cap = (size_t)n;
	/* the preview gate's backstop, as in the worker */
	env->multi_tenant = strcmp(cfg->mode, "multi_tenant") == 0;
	v = sw_config_env(envp, "SAGEWAI_SEALED_PREVIEW");
	env->sealed_preview = v != NULL && strcmp(v, "1") == 0;
	if (sw_config_number(envp, "SAGEWAI_KAFKA_MESSAGE_MAX", SBD_BUS_MAX_DEFAULT, 65536,
			     1LL << 30, &n, err, errlen) == -1)
		return -1;
	env->bus_max = (size_t)n;
	if (sw_config_number(envp, "SAGEWAI_SANDBOXD_CONCURRENCY", SBD_CONCURRENCY_DEFAULT, 1,
			     10000, &n, err, errlen) == -1)
		return -1;
	env->concurrency = (int)n;
	if (sw_config_number(envp, "SAGEWAI_SANDBOX_WARM", SBD_WARM_DEFAULT, 0, 1000, &n, err,
			     errlen) == -1)
		return -1;
	env->pool.warm_target = (size_t)n;
	if (sw_config_number(envp, "SAGEWAI_SANDBOX_OUTPUT_EVENTS_MAX",
			     SBD_OUTPUT_EVENTS_DEFAULT, 0, 1LL << 30, &n, err, errlen) == -1)
		return -1;
	env->output_events_max = (size_t)n;
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_VARIANTS_DIR");
	snprintf(env->pool.variants_dir, sizeof(env->pool.variants_dir), "%s",
		 v && *v ? v : SBD_DEFAULT_VARIANTS_DIR);
	snprintf(pc->variants_dir, sizeof(pc->variants_dir), "%s", env->pool.variants_dir);
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_RUNNER");
	snprintf(pc->runner, sizeof(pc->runner), "%s", v && *v ? v : SBD_DEFAULT_RUNNER);
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_BWRAP");
	snprintf(pc->bwrap, sizeof(pc->bwrap), "%s", v && *v ? v : "/usr/bin/bwrap");
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_SLIRP4NETNS");
	snprintf(pc->slirp, sizeof(pc->slirp), "%s", v && *v ? v : "/usr/bin/slirp4netns");
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_NFT");
	snprintf(pc->nft, sizeof(pc->nft), "%s", v && *v ? v : "/usr/sbin/nft");
	v = sw_config_env(envp, "SAGEWAI_SANDBOXD_USER");
	snprintf(pc->user, sizeof(pc->user), "%s", v && *v ? v : SBD_USER_DEFAULT);
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_CGROUP");
	snprintf(pc->cgroup, sizeof(pc->cgroup), "%s", v && *v ? v : "auto");
	if (sw_config_number(envp, "SAGEWAI_SANDBOX_MAX", SBD_SANDBOX_MAX_DEFAULT, 1, 100000, &n,
			     err, errlen) == -1)
		return -1;
	pc->max_sandboxes = (size_t)n;
	v = sw_config_env(envp, "SAGEWAI_EGRESS_PRIVATE");
	if (v != NULL && *v != '\0' && strcmp(v, "allow") != 0 && strcmp(v, "deny") != 0) {
		snprintf(err, errlen, "SAGEWAI_EGRESS_PRIVATE: allow or deny");
		return -1;
	}
	env->egress_private = v != NULL && strcmp(v, "allow") == 0;
	/* network policies offered; `full` (the host's network, its loopback
	 * services included) only where the operator says so in multi_tenant */
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_NETWORKS");
	if (v == NULL || *v == '\0')
		v = env->multi_tenant ? "none,egress_only" : "none,egress_only,full";
	if (networks_parse(v, &env->networks) != 0) {
		snprintf(err, errlen,
			 "SAGEWAI_SANDBOX_NETWORKS: a comma list of none, egress_only, full");
		return -1;
	}
	v = sw_config_env(envp, "SAGEWAI_SANDBOX_STATE_DIR");
	snprintf(state_parent, parentlen, "%s", v && *v ? v : "/tmp");
	return sbd_artifact_configure(&env->art_cfg, envp, err, errlen);
}

int sbd_configure(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct sbd_env *env = arg;
	struct sbd_priv_config pc;
	char parent[400];

	memset(&pc, 0, sizeof(pc));
	/* before any thread; memory jansson already holds is malloc's too */
	json_set_alloc_funcs(malloc, wipe_free);
	env->svc = svc;
	env->pool.priv_fd = -1;
	if (settings_load(env, sw_service_environ(svc), sw_service_config(svc), &pc, parent,
			  sizeof(parent), err, errlen) == -1)
		return -1;
	/* before the split: the key file is for root's eyes only */
	if (sbd_identity_configure(env, sw_service_environ(svc), err, errlen) == -1)
		return -1;
	pc.forget = sbd_identity_forget;
	pc.forget_arg = env;
	snprintf(pc.state_dir, sizeof(pc.state_dir), "%s/sagewai-sandboxd-XXXXXX", parent);
	if (mkdtemp(pc.state_dir) == NULL) {
		snprintf(err, errlen, "state directory under %s: %s", parent, strerror(errno));
		return -1;
	}
	snprintf(env->state_dir, sizeof(env->state_dir), "%s", pc.state_dir);
	if (sbd_pool_catalogue(env, err, errlen) == -1)
		goto fail;
	/* before any thread: the privileged part forks off here */
	if (sbd_priv_split(&pc, &env->pool.priv_fd, err, errlen) == -1)
		goto fail;
	return 0;
fail:
	rmdir(pc.state_dir);
	sbd_identity_forget(env);
	return -1;
}
