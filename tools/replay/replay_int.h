/*
 * replay_int.h: what the files of sw_replay share.
 *
 *   publish.c  the job: both passes over the log, the producer and its
 *              window of messages in flight
 *   state.c    the state file: load, check against the job, save
 *   resume.c   what a killed run delivered past its last saved state
 *   hdr.c      the header's first fields, fast, for the layouts it knows
 */
#ifndef REPLAY_INT_H
#define REPLAY_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sw_alog.h"
#include "sw_events.h"
#include "sw_replay.h"

#define REPLAY_STATE_MAX (1u << 20) /* a state file larger than this is refused */
#define REPLAY_MAX_PARTITIONS 4096

/* The state of a job, as kept in its file. */
struct replay_state {
	char id[37];		       /* the job's UUIDv7 */
	char topic[256];
	char run_id[64];	       /* "" with has_run 0 */
	int has_run;
	char **types;		       /* sorted, owned; NULL with ntypes 0 */
	size_t ntypes;
	int64_t since_us, until_us;    /* INT64_MIN / INT64_MAX when unbounded */
	uint64_t end_seq;
	uint8_t end_hash[SW_ALOG_HASH]; /* of record end_seq (zeros when 0) */
	uint64_t acked_seq;
	uint64_t done;		       /* selected events up to acked_seq */
	int64_t *floors;	       /* per partition: where a resume looks (-1: earliest) */
	int32_t nfloors;
	int complete;
};

/* state.c */
/* Fill st from the job's options (types copied and sorted). 0 or -1. */
int replay_state_from_opts(struct replay_state *st, const struct sw_replay_opts *o,
			   char *errstr, size_t errlen);
/* Load path into st. 1 loaded, 0 no such file, -1 with errstr (unreadable,
 * not a state file, a field missing or out of range). */
int replay_state_load(const char *path, struct replay_state *st, char *errstr, size_t errlen);
/* 0 when the job in st (loaded) is the one o asks for, else -1 with
 * errstr naming the difference. */
int replay_state_match(const struct replay_state *st, const struct replay_state *want,
		       char *errstr, size_t errlen);
/* Write st to path atomically and durably (tmp file, fsync, rename, fsync
 * of the directory). 0 or -1. */
int replay_state_save(const char *path, const struct replay_state *st, char *errstr,
		      size_t errlen);
/* Grow the floors to cover partition p (new ones -1). 0 or -1. */
int replay_state_floor_grow(struct replay_state *st, int32_t p);
void replay_state_free(struct replay_state *st);

/* hdr.c: the header's first fields without avro-c, for known layouts */
struct replay_hdrs {
	uint64_t *fp;	   /* fingerprints of the writers laid out as expected */
	const char **type; /* and their types (owned by the registry) */
	size_t n;
};
struct replay_hdr {
	const char *type, *run_id; /* into the message, not NUL-terminated */
	size_t type_len, run_id_len;
	int64_t time_us;
};
/* 0, or -1 (out of memory). */
int replay_hdrs_init(struct replay_hdrs *h, struct sw_event_registry *reg);
void replay_hdrs_free(struct replay_hdrs *h);
/* 1 with out filled; 0 when the message is not one this reader knows (or
 * it finds it malformed): use sw_event_decode_header. */
int replay_hdr_peek(const struct replay_hdrs *h, const void *buf, size_t len,
		    struct replay_hdr *out);

/* resume.c */
/* The seqs of job st->id found in st->topic past its floors, up to the
 * partitions' ends now, above st->acked_seq: sorted, malloc'd (*seqs, *n).
 * 0 or -1 with errstr. */
int replay_resume_scan(const struct sw_replay_opts *o, const struct replay_state *st,
		       uint64_t **seqs, size_t *n, char *errstr, size_t errlen);

#endif
