/*
 * sw_alog_pub: what leaves the box about an audit log, and how it is
 * checked elsewhere (library sw_alog_pub, on sw_alog, sw_events, sw_bus).
 *
 *   published checkpoints  the audit.checkpoint events of
 *                          sagewai.audit.checkpoints, to and from struct
 *                          sw_alog_checkpoint; read back from a file (JSON
 *                          lines as sagewai-event decode prints them, or
 *                          lines of the raw messages in hex) or from Kafka
 *   bundles                one run's records with the checkpoints that
 *                          cover them, each record's Merkle proof and the
 *                          public keys: checkable on another machine
 *                          without the log
 *   reports                the text and JSON both verify commands print
 *
 * Bundle (one JSON object):
 *
 *   {"format": "sagewai-audit-bundle-1", "log_id": ID, "run_id": RUN,
 *    "public_keys": [{"key_id": K, "public_key": HEX}],
 *    "checkpoints": [{"seq", "hash", "prev_seq", "root", "time_us",
 *                     "key_id", "signature"}],
 *    "records": [{"seq": N, "record": HEX (the record's bytes as in the
 *                 log: len | seq | prev | body | hash), "checkpoint": I
 *                 (index into checkpoints), "proof": [HEX, ...]}]}
 *
 * A record checks when its bytes hash to the hash they end with, it is an
 * event of the bundle's run, and its hash, at its place among the records
 * its checkpoint covers, climbs its proof to the root that checkpoint
 * signs; the checkpoint checks when its signature does, with a pinned key
 * (the verifier's own public keys) or else the bundle's. What a bundle
 * cannot show: that no record of the run was left out of it.
 */
#ifndef SW_ALOG_PUB_H
#define SW_ALOG_PUB_H

#include <stddef.h>
#include <jansson.h>

#include "sw_alog.h"
#include "sw_events.h"

#define SW_ALOG_BUNDLE_FORMAT "sagewai-audit-bundle-1"

/* ---- published checkpoints ------------------------------------------------ */

/* The audit.checkpoint event of cp (header.time = cp->time_us), malloc'd
 * into *msg. 0, or -1 with errstr. */
int sw_alog_pub_encode(struct sw_event_registry *reg, const struct sw_alog_checkpoint *cp,
		       void **msg, size_t *len, char *errstr, size_t errlen);
/* A decoded event (JSON as sw_event_decode gives it) into cp: 1 done, 0
 * another event type (the topic carries audit.repaired too), -1 with
 * errstr when malformed (a missing root: a checkpoint that cannot be
 * checked). */
int sw_alog_pub_from_json(json_t *ev, struct sw_alog_checkpoint *cp, char *errstr,
			  size_t errlen);
/* The same of a raw single-object message. */
int sw_alog_pub_from_msg(struct sw_event_registry *reg, const void *msg, size_t len,
			 struct sw_alog_checkpoint *cp, char *errstr, size_t errlen);

struct sw_alog_pubset {
	struct sw_alog_checkpoint *v;
	size_t n, cap;
	size_t other;	   /* other events of the topic, skipped */
	size_t unreadable; /* messages that were no event at all (Kafka only) */
};
void sw_alog_pubset_free(struct sw_alog_pubset *s);
/* A file of them, one per line: JSON, or a raw message in hex; blank and
 * '#' lines skipped. 0, or -1 with errstr naming the line. */
int sw_alog_pub_read_file(struct sw_event_registry *reg, const char *path,
			  struct sw_alog_pubset *s, char *errstr, size_t errlen);
/* Every message of sagewai.audit.checkpoints now in Kafka (blocks up to
 * timeout_ms). Messages that decode to nothing are counted, not fatal:
 * anyone who can produce to the topic could add them. 0, or -1. */
int sw_alog_pub_read_kafka(struct sw_event_registry *reg, const char *bootstrap, int timeout_ms,
			   struct sw_alog_pubset *s, char *errstr, size_t errlen);

/* ---- bundles ----------------------------------------------------------------- */

/* The bundle of run_id's events in the log at dir, with the public keys of
 * keys that signed the checkpoints needed. NULL with errstr: no event of
 * the run or a record not yet covered by a checkpoint (*uncovered set: try
 * again, the running service may not have written or checkpointed it
 * yet), a key id keys lacks, a log that does not read. */
json_t *sw_alog_bundle_build(const char *dir, const char *run_id, struct sw_event_registry *reg,
			     const struct sw_alog_keys *keys, int *uncovered, char *errstr,
			     size_t errlen);

struct sw_alog_bundle_result {
	int ok;
	uint64_t records;     /* records that checked (all of them when ok) */
	uint64_t checkpoints; /* checkpoints in the bundle */
	uint64_t bad_seq;     /* the first bad record (0: none, or unreadable) */
	char reason[256];
	char run_id[64];
	char log_id[SW_ALOG_LOG_ID_MAX + 1];
	int pinned; /* checked with the caller's keys, not the bundle's */
};
/* Check a bundle; pinned (may be NULL) are keys the caller trusts, used
 * instead of the bundle's own. 0 when it could be read as a bundle (res
 * says whether it checks), -1 with errstr when it is no bundle at all. */
int sw_alog_bundle_check(json_t *bundle, struct sw_event_registry *reg,
			 const struct sw_alog_keys *pinned, struct sw_alog_bundle_result *res,
			 char *errstr, size_t errlen);

/* ---- reports ------------------------------------------------------------------- */

/* "ok: ..." or "BAD: record seq N ...: reason; R records before it
 * verified", one line, no newline. */
void sw_alog_report_text(const struct sw_alog_check_result *r, char *out, size_t outlen);
json_t *sw_alog_report_json(const struct sw_alog_check_result *r);
void sw_alog_bundle_report_text(const struct sw_alog_bundle_result *r, char *out,
				size_t outlen);
json_t *sw_alog_bundle_report_json(const struct sw_alog_bundle_result *r);

/* ---- the commands both tools run (sagewai-audit and sagewai audit) -------- */

struct sw_alog_verify_cmd {
	const char *dir;	 /* a log directory, or */
	const char *bundle;	 /* a bundle file */
	const char *pubkeys;	 /* the public keys file (NULL: none; bundles: their own) */
	const char *checkpoints; /* published checkpoints from a file, or */
	const char *kafka;	 /* from this bootstrap */
	const char *log_id;	 /* which log (NULL: the log's own) */
	int json;
	int timeout_ms; /* Kafka (0: 30 s) */
};
/* Run a verification; *report (malloc'd, one line or one JSON object, no
 * newline) says what came out. 0 sound, 1 not (*report names the first bad
 * record), 2 could not check (errstr: unreadable, bad arguments). */
int sw_alog_verify_run(const struct sw_alog_verify_cmd *c, char **report, char *errstr,
		       size_t errlen);
/* Write the bundle of run_id's events in the log at dir to out_path
 * (created; "-": the caller prints *text instead), with the keys of
 * pubkeys. Records the next checkpoint will cover are waited for up to
 * wait_ms. 0 (*records, *text when out_path is "-"), or -1 with errstr. */
int sw_alog_export_run(const char *dir, const char *run_id, const char *pubkeys,
		       const char *out_path, int wait_ms, size_t *records, char **text,
		       char *errstr, size_t errlen);

#endif
