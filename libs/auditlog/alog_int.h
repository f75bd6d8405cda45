/*
 * alog_int.h: what the files of sw_alog share (not installed).
 *
 *   alog_format.c  byte layout: segment names and headers, record checks,
 *                  body parsing, the segment listing of a directory
 *   sw_alog.c      the writer: open (with torn-tail repair), append, sync
 *   alog_read.c    sw_alog_scan and sw_alog_read_at
 *   alog_verify.c  sw_alog_verify: the whole log, hashes in parallel
 *   alog_sign.c    signed checkpoints: key files, signatures, Merkle tree
 *   alog_check.c   sw_alog_check: verify with signatures and published
 *                  checkpoints
 */
#ifndef ALOG_INT_H
#define ALOG_INT_H

#include <endian.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "sw_alog.h"

#define ALOG_MAGIC "SWALOG01"
#define ALOG_HDR 64	       /* segment header */
#define ALOG_REC_HEAD 44       /* len u32 | seq u64 | prev [32] */
#define ALOG_REC_OVER 76       /* ALOG_REC_HEAD + trailing hash */
#define ALOG_BODY_MIN 23       /* kind | topic_len | partition | offset | time_us */
#define ALOG_SEG_NAME 40       /* "seg-" 20 digits ".swlog" NUL, rounded up */

static inline uint16_t alog_get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t alog_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t alog_get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void alog_put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void alog_put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void alog_put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

/* "sequence gap" when records are missing, else "sequence out of order". */
static inline const char *alog_seq_word(uint64_t expect, uint64_t found)
{
	return found > expect ? "gap" : "out of order";
}

/* A record as it lies in memory; pointers into the caller's bytes. */
struct alog_view {
	uint32_t len; /* body length */
	uint64_t seq;
	const uint8_t *prev;
	const uint8_t *body;
	const uint8_t *hash; /* the stored hash */
	size_t size;	     /* whole record: ALOG_REC_OVER + len */
};

enum alog_rc {
	ALOG_OK,
	ALOG_PARTIAL, /* fewer bytes available than the record needs */
	ALOG_BADLEN,  /* length out of range (above the maximum or below a body) */
	ALOG_BADHASH, /* stored hash differs from the computed one */
};

/* "seg-<first, 20 digits>.swlog" into out (ALOG_SEG_NAME bytes). */
void alog_seg_name(char out[ALOG_SEG_NAME], uint64_t first);
/* The sorted first seqs of the segments in dir. *firsts is malloc'd (NULL
 * when there are none). 0, or -1 with errstr (unreadable directory). */
int alog_list(const char *dir, uint64_t **firsts, size_t *n, char *errstr, size_t errlen);
/* The same of an open directory descriptor, which it takes (closes). */
int alog_list_fd(int dfd, uint64_t **firsts, size_t *n, char *errstr, size_t errlen);

void alog_hdr_build(uint8_t h[ALOG_HDR], uint64_t first, const uint8_t prev[SW_ALOG_HASH]);
/* Check a header read from the segment named name_first: 0, or -1 with the
 * reason in why. */
int alog_hdr_check(const uint8_t h[ALOG_HDR], uint64_t name_first, char *why, size_t whylen);
static inline uint64_t alog_hdr_first(const uint8_t *h)
{
	return alog_get64(h + 8);
}
static inline const uint8_t *alog_hdr_prev(const uint8_t *h)
{
	return h + 16;
}

/* Decode the record at p given avail readable bytes; with check_hash also
 * recompute and compare the hash. Fills v unless ALOG_PARTIAL before the
 * length could be read (v->len is then 0 and v->size 0). */
enum alog_rc alog_rec_view(const uint8_t *p, size_t avail, int check_hash,
			   struct alog_view *v);
/* hash = BLAKE2b-256 over the ALOG_REC_HEAD + len bytes at p. */
void alog_rec_hash(const uint8_t *p, uint32_t len, uint8_t out[SW_ALOG_HASH]);

/* Parse a body into rec's kind..payload fields, every length checked.
 * 0, or -1 with the reason in why. */
int alog_body_parse(const uint8_t *body, size_t len, struct sw_alog_rec *rec, char *why,
		    size_t whylen);

/* sw_alog_verify with a visitor for its in-order pass: every record that
 * checked, in log order, body parsed (rec's payload points into the
 * mapped segment). Non-zero (with the reason in why) makes that record
 * the first bad one. */
typedef int (*alog_visit_fn)(const struct sw_alog_rec *rec, void *opaque, char *why,
			     size_t whylen);
int alog_verify_visit(const char *dir, int threads, alog_visit_fn visit, void *opaque,
		      struct sw_alog_verify_result *res, char *errstr, size_t errlen);

void alog_err(char *errstr, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Full write / read loops over EINTR and short transfers. 0 or -1 (errno). */
int alog_write_all(int fd, const void *buf, size_t len);
/* Returns bytes read (less than len only at end of file) or -1. */
ssize_t alog_pread_full(int fd, void *buf, size_t len, off_t off);

#endif
