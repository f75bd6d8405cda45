/*
 * sw_alog: the append-only, hash-chained audit log on local disk.
 *
 * A log is a directory of segment files "seg-<first seq, 20 digits>.swlog".
 * Each segment starts with a 64-byte header:
 *
 *     magic "SWALOG01" (8) | first seq u64 | prev hash (32) | reserved (16)
 *
 * followed by records, all integers little-endian:
 *
 *     len u32 | seq u64 | prev hash [32] | body [len] | hash [32]
 *
 * hash = BLAKE2b-256(len | seq | prev | body), prev = the hash of record
 * seq-1 (32 zero bytes for seq 1). Sequence numbers start at 1 and have no
 * gaps. A body is:
 *
 *     kind u8 | topic_len u16 | topic | partition i32 | offset i64 |
 *     time_us i64 | payload
 *
 * kind: SW_ALOG_EVENT (payload = the single-object Avro message as it came
 * off Kafka), SW_ALOG_RAW (a message that could not be decoded, e.g. from
 * the dead-letter topic; payload as received), SW_ALOG_CHECKPOINT (payload
 * = signed checkpoint: seq u64 | hash [32] | key id [32] | Ed25519 sig [64];
 * written by the replay issue, understood by verify now).
 *
 * Appends are buffered; sw_alog_sync writes and fdatasyncs them (group
 * commit). At open, a torn tail (a partial or corrupt last record after a
 * crash) is cut off and the chain of the last segment checked.
 */
#ifndef SW_ALOG_H
#define SW_ALOG_H

#include <stddef.h>
#include <stdint.h>

#define SW_ALOG_HASH 32
#define SW_ALOG_MAX_RECORD (16u << 20) /* a body larger than 16 MiB is refused */
#define SW_ALOG_SEGMENT_DEFAULT (128u << 20) /* segment_max 0 means this */
#define SW_ALOG_CHECKPOINT_LEN 136 /* seq u64 | hash [32] | key id [32] | sig [64] */

enum sw_alog_kind { SW_ALOG_EVENT = 1, SW_ALOG_RAW = 2, SW_ALOG_CHECKPOINT = 3 };

struct sw_alog;

struct sw_alog_rec {
	uint64_t seq;
	uint8_t kind;
	const char *topic; /* not NUL-terminated */
	size_t topic_len;
	int32_t partition;
	int64_t offset;
	int64_t time_us;
	const void *payload;
	size_t payload_len;
	uint8_t hash[SW_ALOG_HASH];
	uint64_t segment;  /* first seq of the segment file holding it */
	uint64_t file_off; /* byte offset of the record in that file */
};

/* Open (creating dir if needed) for appending; one writer per directory
 * (an flock on the directory; a second open fails). A handle is not
 * thread-safe. segment_max: roll to a new
 * segment once the current one exceeds this many bytes. *repaired (may be
 * NULL) is set to the number of bytes cut from a torn tail. NULL + errstr. */
struct sw_alog *sw_alog_open(const char *dir, size_t segment_max, size_t *repaired,
			     char *errstr, size_t errlen);
/* Syncs pending records, then closes; a failure there goes unreported,
 * so call sw_alog_sync first when it matters. */
void sw_alog_close(struct sw_alog *l);

/* Append one record (buffered, not yet durable). Fills *seq, *segment and
 * *file_off when not NULL. 0 or -1 with errstr (record too large, I/O). */
int sw_alog_append(struct sw_alog *l, uint8_t kind, const char *topic, int32_t partition,
		   int64_t offset, int64_t time_us, const void *payload, size_t len, uint64_t *seq,
		   uint64_t *segment, uint64_t *file_off, char *errstr, size_t errlen);
/* Write buffered records and fdatasync (and the directory on a new
 * segment). After 0 every appended record is durable. */
int sw_alog_sync(struct sw_alog *l, char *errstr, size_t errlen);
/* Next sequence number to be assigned; the last record's hash. */
uint64_t sw_alog_next_seq(const struct sw_alog *l);
void sw_alog_last_hash(const struct sw_alog *l, uint8_t out[SW_ALOG_HASH]);

/* Iterate records with seq >= from_seq in order; cb returning non-zero
 * stops (that value is returned). Reads through a separate descriptor, so
 * it may be used on a log another process appends to (it sees a prefix).
 * -1 with errstr on a malformed record. rec and what it points to live
 * until cb returns. Each delivered record's length, seq, hash and body are
 * checked, and its prev against the record before it, except for the first
 * one delivered when from_seq is inside a segment (records before it are
 * skipped by length, not hashed; sw_alog_verify checks everything). */
typedef int (*sw_alog_scan_cb)(const struct sw_alog_rec *rec, void *opaque);
int sw_alog_scan(const char *dir, uint64_t from_seq, sw_alog_scan_cb cb, void *opaque,
		 char *errstr, size_t errlen);

/* Read the record at (segment, file_off). 0 or -1. The payload points into
 * buf (malloc'd, caller frees). Length, hash and body are checked. */
int sw_alog_read_at(const char *dir, uint64_t segment, uint64_t file_off,
		    struct sw_alog_rec *rec, void **buf, char *errstr, size_t errlen);

/* Offline verification of a whole log. threads <= 0 means one per core.
 * Returns 0 when the log could be read (res->ok then tells whether it
 * checks; on a failure res names the first bad record and why), -1 with
 * errstr when it could not (no such directory, unreadable file). */
struct sw_alog_verify_result {
	int ok;             /* 1 when every record checks */
	uint64_t records;   /* records checked before the first bad one */
	uint64_t bad_seq;   /* seq of the first bad record (0 if ok) */
	uint64_t segment;   /* its segment and byte offset */
	uint64_t file_off;
	char reason[256];   /* e.g. "hash mismatch", "prev hash does not chain",
			       "sequence gap: expected 17, found 19" */
	uint8_t last_hash[SW_ALOG_HASH];
	uint64_t checkpoints; /* checkpoint records seen */
};
int sw_alog_verify(const char *dir, int threads, struct sw_alog_verify_result *res,
		   char *errstr, size_t errlen);

/* The signature hook of verify: called for every checkpoint record in log
 * order with its decoded payload (after the (seq, hash) pair was found in
 * the chain, when that seq lies in the same segment). Return 0 to accept,
 * non-zero to report the checkpoint as bad ("checkpoint signature
 * rejected"). sw_alog_verify checks no signatures (cb NULL). */
typedef int (*sw_alog_checkpoint_cb)(const struct sw_alog_rec *rec, uint64_t cp_seq,
				     const uint8_t cp_hash[SW_ALOG_HASH], const uint8_t key_id[32],
				     const uint8_t sig[64], void *opaque);
int sw_alog_verify_ex(const char *dir, int threads, sw_alog_checkpoint_cb cb, void *opaque,
		      struct sw_alog_verify_result *res, char *errstr, size_t errlen);

#endif
