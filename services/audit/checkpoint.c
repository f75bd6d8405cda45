/*
 * Checkpoints and the service's settings.
 *
 * The writer thread appends a signed checkpoint (sw_alog.h) after a group
 * of records once SAGEWAI_AUDIT_CHECKPOINT_RECORDS records came since the
 * last one, or when the timer (SAGEWAI_AUDIT_CHECKPOINT_MS) said so and
 * any record came; the sync that makes the group durable makes it durable
 * too, and only then does the loop publish it (audit.checkpoint on
 * sagewai.audit.checkpoints, keyed by the log id). A published checkpoint
 * thus always names records that are on disk. The unprotected tail (what
 * a checkpoint does not cover yet) is at most one interval plus a write.
 *
 * The log id names this log in its checkpoints: the one its checkpoint
 * records carry, or a new UUIDv7 for a log that has none.
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "sw_alog_pub.h"

struct setting {
	const char *key;
	long long def, lo, hi;
	size_t off; /* in struct audit_env */
};

static const struct setting settings[] = {
	{"SAGEWAI_AUDIT_CHECKPOINT_RECORDS", 10000, 1, 100000000,
	 offsetof(struct audit_env, cp_records)},
	{"SAGEWAI_AUDIT_CHECKPOINT_MS", 500, 10, 3600000, offsetof(struct audit_env, cp_ms)},
	{"SAGEWAI_AUDIT_SEGMENT_BYTES", AUDIT_SEGMENT_MAX, 65536, 1LL << 40,
	 offsetof(struct audit_env, segment_bytes)},
	{"SAGEWAI_AUDIT_SEGMENT_AGE_S", 86400, 0, 365LL * 86400,
	 offsetof(struct audit_env, segment_age_s)},
	{"SAGEWAI_AUDIT_DEDUPE_WINDOW", 1000000, 1000, 1000000000,
	 offsetof(struct audit_env, window)},
	{"SAGEWAI_AUDIT_RETRY_MAX_MS", 5000, 100, 600000, offsetof(struct audit_env, retry_max_ms)},
	{"SAGEWAI_AUDIT_GATHER_MS", AUDIT_GATHER_MS, 0, 10000, offsetof(struct audit_env, gather_ms)},
};

int audit_config_load(struct audit_env *env, char *errstr, size_t errlen)
{
	char *const *envp = sw_service_environ(env->svc);
	const char *key;
	size_t i;

	for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		long long v;

		if (sw_config_number(envp, settings[i].key, settings[i].def, settings[i].lo,
				     settings[i].hi, &v, errstr, errlen) == -1)
			return -1;
		*(int64_t *)((char *)env + settings[i].off) = v;
	}
	key = sw_config_env(envp, "SAGEWAI_AUDIT_SIGNING_KEY_FILE");
	if (key != NULL && *key != '\0' &&
	    (env->signer = sw_alog_signer_load(key, errstr, errlen)) == NULL)
		return -1;
	return 0;
}

void audit_cp_feed(struct audit_env *env, const struct sw_alog_rec *rec)
{
	struct sw_alog_checkpoint *cp = &env->cp_last;

	/* a checkpoint record: rebuild what was published from it -- the root
	 * of the records since the one before (the tree before this record is
	 * fed), the log id, prev_seq and time its record carries. Only the
	 * last one is published again, so its signature is checked then. */
	if (rec->kind == SW_ALOG_CHECKPOINT) {
		memset(cp, 0, sizeof(*cp));
		env->cp_last_have =
		    env->signer != NULL &&
		    sw_alog_checkpoint_parse(rec->payload, rec->payload_len, cp) == 0 &&
		    rec->topic_len > 0 && rec->topic_len <= SW_ALOG_LOG_ID_MAX &&
		    sw_alog_mtree_root(&env->cps.tree, cp->root) == 0;
		if (env->cp_last_have) {
			memcpy(cp->log_id, rec->topic, rec->topic_len);
			cp->log_id[rec->topic_len] = '\0';
			cp->prev_seq = (uint64_t)rec->offset;
			cp->time_us = rec->time_us;
		}
	}
	sw_alog_cpstate_feed(&env->cps, rec);
}

void audit_cp_republish(struct audit_env *env)
{
	struct sw_alog_checkpoint *cp, again = env->cp_last;

	if (!env->cp_last_have || env->producer == NULL)
		return;
	/* only if our key signs those fields to the same signature (Ed25519 is
	 * deterministic): one of another key (rotated since) is not ours to
	 * publish, one that would not verify is not published again */
	if (strcmp(again.key_id, sw_alog_signer_key_id(env->signer)) != 0)
		return;
	if (sw_alog_sign(env->signer, &again) != 0 ||
	    memcmp(again.sig, env->cp_last.sig, SW_ALOG_SIG) != 0) {
		sw_log(SW_LOG_WARN,
		       "the log's last checkpoint does not verify as rebuilt: not published again",
		       "key_id", env->cp_last.key_id, NULL);
		return;
	}
	if ((cp = malloc(sizeof(*cp))) == NULL) {
		audit_cp_delivered(env, "out of memory");
		return;
	}
	*cp = env->cp_last;
	audit_cp_publish(env, cp, 1);
}

int audit_cp_recovered(struct audit_env *env, char *errstr, size_t errlen)
{
	if (env->cps.log_id[0] != '\0' && strcmp(env->cps.log_id, env->log_id) != 0) {
		snprintf(errstr, errlen,
			 "the log's checkpoints name log %s but %.300s/log-id names %s: not"
			 " this log's id file",
			 env->cps.log_id, env->log_dir, env->log_id);
		return -1;
	}
	return 0;
}

/* Loop: the interval passed; the writer checkpoints if any record came. */
static void cp_tick(evutil_socket_t fd, short what, void *arg)
{
	struct audit_env *env = arg;

	(void)fd;
	(void)what;
	sw_handoff_lock(&env->writer);
	env->cp_due = 1;
	sw_handoff_signal(&env->writer, 0);
	sw_handoff_unlock(&env->writer);
}

int audit_cp_start(struct audit_env *env, char *errstr, size_t errlen)
{
	struct timeval tv = {.tv_sec = env->cp_ms / 1000, .tv_usec = (env->cp_ms % 1000) * 1000};

	if (env->signer == NULL) {
		sw_log(SW_LOG_WARN,
		       "audit checkpoints are off (SAGEWAI_AUDIT_SIGNING_KEY_FILE is not set): a "
		       "deleted tail of the log cannot be detected off-box",
		       NULL);
		return 0;
	}
	env->cp_timer = event_new(env->base, -1, EV_PERSIST, cp_tick, env);
	if (env->cp_timer == NULL || event_add(env->cp_timer, &tv) == -1) {
		snprintf(errstr, errlen, "cannot start the checkpoint timer");
		return -1;
	}
	return 0;
}

void audit_cp_stop(struct audit_env *env)
{
	if (env->cp_timer != NULL)
		event_free(env->cp_timer);
	env->cp_timer = NULL;
	sw_alog_signer_destroy(env->signer);
	env->signer = NULL;
	free(env->cp_out);
	env->cp_out = NULL;
}

int audit_cp_maybe(struct audit_env *env, int force, int64_t at_us, struct sw_alog_checkpoint *cp,
		   char *errstr, size_t errlen)
{
	if (env->signer == NULL || env->cps.since == 0 ||
	    (!force && env->cps.since < (uint64_t)env->cp_records))
		return 0;
	if (sw_alog_checkpoint_append(env->log, &env->cps, env->signer, env->log_id, at_us,
				      cp, errstr, errlen) != 0)
		return -1;
	return 1;
}

void audit_cp_publish(struct audit_env *env, struct sw_alog_checkpoint *cps, size_t n)
{
	char err[256];
	size_t i, len;
	void *msg;

	for (i = 0; i < n; i++) {
		/* a failure leaves it in the log; the next one covers its records */
		if (sw_alog_pub_encode(env->reg, &cps[i], &msg, &len, err, sizeof(err)) == -1) {
			audit_cp_delivered(env, err);
			continue;
		}
		if (sw_bus_produce(env->producer, SW_TOPIC_AUDIT_CHECKPOINTS, env->log_id, msg, len,
				   NULL, &env->cp_tag, err, sizeof(err)) == -1)
			audit_cp_delivered(env, err);
		free(msg);
	}
	free(cps);
}

void audit_cp_delivered(struct audit_env *env, const char *err)
{
	if (err != NULL) {
		env->cp_publish_errors++;
		sw_metrics_counter_add(env->metrics, "sagewai_audit_checkpoint_publish_errors_total",
				       "Checkpoints written to the log but not published", 1);
		sw_log(SW_LOG_ERROR, "audit checkpoint not published (it is in the log)", "error",
		       err, NULL);
		return;
	}
	env->cp_published++;
	sw_metrics_counter_add(env->metrics, "sagewai_audit_checkpoints_published_total",
			       "Signed checkpoints published on sagewai.audit.checkpoints", 1);
}
