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
 * = seq u64 | hash [32] | key id [32, NUL-padded] | Ed25519 sig [64]; see
 * "Signed checkpoints" below for what the signature covers).
 *
 * Appends are buffered; sw_alog_sync writes and fdatasyncs them (group
 * commit). At open, a torn tail (a partial or corrupt last record after a
 * crash) is cut off and the chain of the last segment checked. After a
 * failed write or sync, sw_alog_rollback cuts the log back to what the
 * last good sync made durable, so the writer can try again.
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

/* Roll to a new segment before an append once the current one holds
 * max_bytes (0: the size given to open) or is older than max_age_us (0: no
 * age limit; the age of a segment found at open counts from its birth time
 * where the file system keeps one, else from the open). */
void sw_alog_set_roll(struct sw_alog *l, size_t max_bytes, int64_t max_age_us);
/* Non-zero once a write or sync failed: appends and syncs are refused
 * until sw_alog_rollback succeeds. */
int sw_alog_failed(const struct sw_alog *l);
/* Cut the log back to the state of the last successful sync (or the
 * open): the current segment truncated to its durable size, segments made
 * after it removed, everything appended since forgotten; the handle is
 * usable again. The records appended since that sync must be appended
 * again. 0, or -1 with errstr (the handle stays failed; call it again
 * later). */
int sw_alog_rollback(struct sw_alog *l, char *errstr, size_t errlen);

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


/* ---- signed checkpoints -------------------------------------------------
 *
 * A checkpoint is a signed statement that a log (log_id) held records
 * 1..seq whose chain ends in hash, at time_us. It also signs prev_seq (the
 * seq the log's previous checkpoint covered, 0 for the first) and root:
 * the Merkle root (below) of the hashes of records prev_seq+1..seq, so
 * that one record can later be shown to be in the log without the others
 * (sw_alog_pub.h, bundles). The signed bytes are
 *
 *   "SWALOG-CP1" | u8 len | log_id | seq u64 | hash [32] | prev_seq u64 |
 *   root [32] | time_us i64 | u8 len | key_id          (little-endian)
 *
 * In the log a checkpoint is the record right after record seq: kind
 * SW_ALOG_CHECKPOINT, topic = log_id, partition -1, offset = prev_seq,
 * time_us = time_us, payload seq | hash | key id | signature. It is itself
 * the first leaf of the next checkpoint's tree.
 *
 * The Merkle tree is 4-ary: the leaves are the record hashes in seq order;
 * each level groups the one below in fours from the left (the last group
 * may hold 1..3), a node being BLAKE2b-256 (personal "SWALOG-MERKLE4-1")
 * of its children's concatenation, until one node, the root, is left (one
 * leaf: the root is that leaf).
 */
#define SW_ALOG_KEY_ID_MAX 32 /* key ids: 1..32 of [A-Za-z0-9._:-] */
#define SW_ALOG_LOG_ID_MAX 64 /* log ids: 1..64 of the same */
#define SW_ALOG_PK 32
#define SW_ALOG_SIG 64

struct sw_alog_checkpoint {
	char log_id[SW_ALOG_LOG_ID_MAX + 1];
	uint64_t seq;		     /* the last record covered */
	uint8_t hash[SW_ALOG_HASH];  /* the chain hash of record seq */
	uint64_t prev_seq;	     /* what the previous checkpoint covered, 0: none */
	uint8_t root[SW_ALOG_HASH];  /* Merkle root of records prev_seq+1..seq */
	int64_t time_us;	     /* when it was signed */
	char key_id[SW_ALOG_KEY_ID_MAX + 1];
	uint8_t sig[SW_ALOG_SIG];
};

/* 1 when s is a well-formed key id (or log id, max SW_ALOG_LOG_ID_MAX). */
int sw_alog_id_ok(const char *s, size_t max);

/* The secret half. A key file holds one line "KEYID HEX" (HEX: the 32-byte
 * Ed25519 seed) and must be a regular file that grants group and others
 * nothing (0600 or 0400); load refuses anything else. The key lives in
 * sodium_malloc'd memory, wiped by destroy. NULL + errstr. */
struct sw_alog_signer;
struct sw_alog_signer *sw_alog_signer_load(const char *path, char *errstr, size_t errlen);
void sw_alog_signer_destroy(struct sw_alog_signer *s);
const char *sw_alog_signer_key_id(const struct sw_alog_signer *s);
void sw_alog_signer_public(const struct sw_alog_signer *s, uint8_t pk[SW_ALOG_PK]);
/* Set cp->key_id and cp->sig over the other fields. 0, or -1 (a log id
 * that is not well-formed). */
int sw_alog_sign(const struct sw_alog_signer *s, struct sw_alog_checkpoint *cp);

/* Make a key pair: the key file at secret_path (created, never replaced,
 * mode 0600, synced) and the public key in pk. 0, or -1 with errstr. */
int sw_alog_keygen(const char *key_id, const char *secret_path, uint8_t pk[SW_ALOG_PK],
		   char *errstr, size_t errlen);

/* The public keys a verifier trusts: lines "KEYID HEX" (HEX: 32 bytes),
 * blank lines and '#' comments allowed; a key id listed twice with two
 * keys is an error. Old keys stay listed so that old checkpoints verify
 * after a rotation. NULL + errstr (naming the line). */
struct sw_alog_keys;
struct sw_alog_keys *sw_alog_keys_parse(const char *text, size_t len, char *errstr,
					size_t errlen);
struct sw_alog_keys *sw_alog_keys_load(const char *path, char *errstr, size_t errlen);
/* An empty set, to add to. */
struct sw_alog_keys *sw_alog_keys_new(void);
/* 0, or -1 with errstr (bad id, the id already listed with another key). */
int sw_alog_keys_add(struct sw_alog_keys *k, const char *key_id, const uint8_t pk[SW_ALOG_PK],
		     char *errstr, size_t errlen);
void sw_alog_keys_destroy(struct sw_alog_keys *k);
size_t sw_alog_keys_count(const struct sw_alog_keys *k);
/* The i-th key (0 <= i < count); its id is valid while k lives. */
const char *sw_alog_keys_get(const struct sw_alog_keys *k, size_t i, uint8_t pk[SW_ALOG_PK]);
/* The key of key_id: 0, or -1 when not listed. */
int sw_alog_keys_find(const struct sw_alog_keys *k, const char *key_id, uint8_t pk[SW_ALOG_PK]);

/* Check cp's signature: 0, or -1 with the reason in why ("signed by
 * unknown key 'k2'", "signature does not verify"). */
int sw_alog_checkpoint_verify(const struct sw_alog_keys *k, const struct sw_alog_checkpoint *cp,
			      char *why, size_t whylen);

/* The payload of cp's record (SW_ALOG_CHECKPOINT_LEN bytes), and back: the
 * fields the payload holds (seq, hash, key_id, sig); -1 when the key id
 * field is malformed. */
void sw_alog_checkpoint_payload(const struct sw_alog_checkpoint *cp,
				uint8_t out[SW_ALOG_CHECKPOINT_LEN]);
int sw_alog_checkpoint_parse(const void *payload, size_t len, struct sw_alog_checkpoint *cp);

/* The streaming Merkle tree: add leaves in order, take the root at any
 * point (add more later). Plain memory: copy it to save and restore. */
#define SW_ALOG_MT_LEVELS 32
struct sw_alog_mtree {
	uint64_t count[SW_ALOG_MT_LEVELS];		   /* nodes ever added per level */
	uint8_t pend[SW_ALOG_MT_LEVELS][3][SW_ALOG_HASH]; /* the open group per level */
};
void sw_alog_mtree_init(struct sw_alog_mtree *t);
void sw_alog_mtree_add(struct sw_alog_mtree *t, const uint8_t leaf[SW_ALOG_HASH]);
uint64_t sw_alog_mtree_leaves(const struct sw_alog_mtree *t);
/* 0, or -1 when there is no leaf. */
int sw_alog_mtree_root(const struct sw_alog_mtree *t, uint8_t root[SW_ALOG_HASH]);
/* The proof that leaves[index] is in the tree of the n leaves: the other
 * members of its group at every level, bottom up, into out (at most cap
 * hashes; 3 * levels always fits). Returns how many, or -1 (index >= n,
 * cap too small). */
int sw_alog_mtree_proof(const uint8_t (*leaves)[SW_ALOG_HASH], uint64_t n, uint64_t index,
			uint8_t (*out)[SW_ALOG_HASH], size_t cap);
/* The root that leaf at index of n with that proof leads to: 0, or -1
 * when the proof has not exactly the hashes the shape needs. */
int sw_alog_mtree_climb(const uint8_t leaf[SW_ALOG_HASH], uint64_t n, uint64_t index,
			const uint8_t (*proof)[SW_ALOG_HASH], size_t nproof,
			uint8_t root[SW_ALOG_HASH]);

/* What a writer keeps to make its next checkpoint: the tree of the records
 * since the last checkpoint record (that one included), the seq that
 * checkpoint covered, how many records came after it. Plain memory: copy
 * it to save and restore it around a write that may be rolled back. */
struct sw_alog_cpstate {
	struct sw_alog_mtree tree;
	uint64_t prev_seq;
	uint64_t since; /* records after the last checkpoint record */
	char log_id[SW_ALOG_LOG_ID_MAX + 1]; /* the last checkpoint's, "" if none */
};
void sw_alog_cpstate_init(struct sw_alog_cpstate *st);
/* A record read back from the log, in order from seq 1 (sw_alog_scan). */
void sw_alog_cpstate_feed(struct sw_alog_cpstate *st, const struct sw_alog_rec *rec);
/* A record just appended, by its hash (sw_alog_last_hash). */
void sw_alog_cpstate_add(struct sw_alog_cpstate *st, const uint8_t hash[SW_ALOG_HASH]);
/* Sign a checkpoint of every record appended so far and append it
 * (buffered, as any append: durable after the next sync). Fills cp when
 * not NULL. 0, or -1 with errstr (no record to cover, a bad log id, I/O). */
int sw_alog_checkpoint_append(struct sw_alog *l, struct sw_alog_cpstate *st,
			      const struct sw_alog_signer *s, const char *log_id, int64_t time_us,
			      struct sw_alog_checkpoint *cp, char *errstr, size_t errlen);

/* ---- the whole check: chain, signatures, published checkpoints ----------
 *
 * sw_alog_verify's checks, and with keys every checkpoint record's
 * signature (over the log id of its topic, its tree root recomputed from
 * the log, its prev_seq checked against the checkpoint before it), and
 * with published checkpoints (read back from sagewai.audit.checkpoints)
 * those of this log compared with it: a log ending before the record a
 * published checkpoint was written in (its tail deleted), a chain that
 * differs at a published seq (a record changed, inserted, reordered or
 * deleted and the chain rewritten), a published checkpoint whose
 * signature does not check. Published checkpoints of other logs are
 * counted and skipped. The first bad record (lowest seq) is reported.
 */
struct sw_alog_check_opts {
	int threads;			  /* <= 0: one per core */
	const struct sw_alog_keys *keys;  /* NULL: signatures cannot be checked */
	const struct sw_alog_checkpoint *published; /* may be NULL */
	size_t npublished;
	const char *log_id; /* NULL: the log's (its checkpoints'), else that */
};

struct sw_alog_check_result {
	struct sw_alog_verify_result v; /* ok, bad_seq, reason, ... of everything */
	char log_id[SW_ALOG_LOG_ID_MAX + 1]; /* "" when unknown */
	uint64_t last_seq;	 /* the log's last record */
	uint64_t signed_ok;	 /* checkpoint records whose signature checked */
	uint64_t unsigned_cps;	 /* checkpoints (log or published) left unchecked: no keys */
	uint64_t covered_seq;	 /* the last seq a good checkpoint of the log covers */
	uint64_t published;	 /* published checkpoints of this log */
	uint64_t published_ok;	 /* of those, signed and matching the log */
	uint64_t published_other; /* of other logs (skipped) */
	uint64_t published_max;	 /* the highest seq a good published one covers */
};
/* 0 when the log could be read (res says whether it checks), -1 with
 * errstr when not. Without keys, any checkpoint makes the result bad
 * ("cannot check N checkpoint signatures: no public keys"). */
int sw_alog_check(const char *dir, const struct sw_alog_check_opts *opts,
		  struct sw_alog_check_result *res, char *errstr, size_t errlen);

#endif
