/*
 * replay_int.h: what the files of sw_replay share.
 *
 *   publish.c  the job: both passes over the log, the producer and its
 *              window of messages in flight
 *   state.c    the state file: load, check against the job, save
 *   resume.c   what a killed run delivered past its last saved state
 *   hdr.c      the header's first fields, fast, for the layouts it knows;
 *              the selection
 *   reader.c   the log read on a thread of its own: checked once, the
 *              selection held for the producer
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
	const char *event_id, *type, *run_id; /* into the message, not NUL-terminated */
	size_t event_id_len, type_len, run_id_len;
	int64_t time_us;
};
/* 0, or -1 (out of memory). */
int replay_hdrs_init(struct replay_hdrs *h, struct sw_event_registry *reg);
void replay_hdrs_free(struct replay_hdrs *h);
/* 1 with out filled; 0 when the message is not one this reader knows (or
 * it finds it malformed): use sw_event_decode_header. */
int replay_hdr_peek(const struct replay_hdrs *h, const void *buf, size_t len,
		    struct replay_hdr *out);

/* Does the event (its header h) belong to the job? */
int replay_selected(const struct replay_state *st, const struct sw_alog_rec *rec,
		    const struct replay_hdr *h);
/* Does the job need the header to select (not only for the key)? */
int replay_needs_header(const struct replay_state *st);
/* The header of an event record: replay_hdr_peek, else the full decoder
 * into *full, which h then points into. Its absence is an error, errstr
 * naming the record (the audit service stored it as an event because it
 * decoded). 0 or -1. */
int replay_rec_header(const struct replay_hdrs *hdrs, struct sw_event_registry *reg,
		      const struct sw_alog_rec *rec, struct replay_hdr *h,
		      struct sw_event_header *full, char *errstr, size_t errlen);

/*
 * The cursor c said the log holds no further whole record. 0 when the log
 * ends at a record boundary. When it ends in part of a record: 1 (pause
 * briefly, then ask the cursor again: a writer may be appending) while
 * *tries is below REPLAY_PARTIAL_TRIES (the caller sets it to 0 at each
 * record read), then -1 with errstr naming the record. A job must not
 * take a prefix of the log for all of it: a torn tail is repaired (and
 * audited) by the audit service, and a changed length of the last record
 * looks the same.
 */
#define REPLAY_PARTIAL_TRIES 100 /* 10 ms apart: one second */
struct sw_alog_cursor;
int replay_end_check(struct sw_alog_cursor *c, int *tries, char *errstr, size_t errlen);

/* An event id (a UUID, 36 characters), NUL-terminated; what a resume
 * finds in the target (sorted by replay_id_cmp). */
struct replay_id {
	char s[40];
};
int replay_id_cmp(const void *a, const void *b);
/* The event id of h as a key: 0, or -1 when it cannot be one (too long). */
int replay_id_of(const struct replay_hdr *h, struct replay_id *id);

/* reader.c: the second pass read ahead on its own thread */
struct replay_item {
	uint64_t seq;
	int32_t partition; /* where the event was consumed from */
	int64_t offset;
	char topic[256];
	size_t key_len, len;
	uint8_t data[]; /* the key (run id), then the event's bytes */
};
struct replay_group {
	struct replay_group *next;
	struct replay_item **items; /* in log order */
	size_t n;
	size_t bytes;	 /* of the events */
	uint64_t found;	 /* selected events already in the topic, not items */
	uint64_t scanned; /* every record up to this seq is in this group or before */
};
struct replay_reader;
enum replay_phase {
	R_READING, /* checking the log, holding the selected events */
	R_AT_END,  /* all checked and counted (struct replay_check) */
	R_OVER,	   /* more selected than it may hold: the producer checks the log */
	R_FAILED,  /* broken or failed before either */
};
struct replay_check {
	uint64_t end_seq;
	uint8_t end_hash[SW_ALOG_HASH];
	uint64_t total, resumed; /* as struct sw_replay_progress */
};
/* Start reading dir for the job st (resuming: up to its end seq, whose
 * hash must be the state's), found (sorted) being the ids of the events
 * already in the topic past the state's floors; at most max_bytes of events wait for the producer.
 * NULL + errstr. */
struct replay_reader *replay_reader_start(const char *dir, const struct replay_state *st,
					  int resuming, const struct replay_id *found,
					  size_t nfound, size_t max_bytes, char *errstr,
					  size_t errlen);
/* Wait up to wait_ms for the reader to leave R_READING; the phase. R_AT_END
 * fills check; R_FAILED fills rc and errstr. */
enum replay_phase replay_reader_wait(struct replay_reader *r, int wait_ms,
				     struct replay_check *check, enum sw_replay_rc *rc, char *errstr,
				     size_t errlen);
/* After R_OVER, once the producer has checked the log: the job ends at end. */
void replay_reader_set_end(struct replay_reader *r, uint64_t end);
/* The next group (caller frees with replay_group_free): 1; 0 when none
 * came within wait_ms; -1 when the reader is done (replay_reader_stop
 * tells how). */
int replay_reader_next(struct replay_reader *r, int wait_ms, struct replay_group **g);
void replay_group_free(struct replay_group *g);
/* Stop the reader (if it still runs), free it; how it ended: SW_REPLAY_OK
 * (all read), _STOPPED, or _FAIL / _BROKEN with errstr. */
enum sw_replay_rc replay_reader_stop(struct replay_reader *r, char *errstr, size_t errlen);

/* resume.c */
/* The event ids of the messages in st->topic past its floors, up to the
 * partitions' ends now (read from each message's value, headers or not):
 * sorted, malloc'd (*ids, *n). 0 or -1 with errstr. */
int replay_resume_scan(const struct sw_replay_opts *o, const struct replay_state *st,
		       const struct replay_hdrs *hdrs, struct sw_event_registry *reg,
		       struct replay_id **ids, size_t *n, char *errstr, size_t errlen);

#endif
