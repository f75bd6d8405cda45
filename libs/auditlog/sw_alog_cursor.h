/*
 * sw_alog_cursor: reading a log one record at a time, from its first
 * record, checking every record on the way (length, seq, hash, body, and
 * its prev against the record before it, across segments), and following
 * the log as a writer appends to it.
 *
 * Where sw_alog_scan hands records to a callback, a cursor is pulled: the
 * caller takes the next record when it is ready for it (a producer with a
 * full queue, a rate limit), and asks again later for records appended
 * since. It never skips a record unchecked, so the chain up to any record
 * it returns is sound from seq 1 (or the log's first segment).
 *
 * Like sw_alog_scan it reads through its own descriptors with pread, so it
 * may read a log another process appends to: the last segment may end in a
 * partial record (being written, or a torn tail not yet repaired), which is
 * "nothing more for now". A partial record in a segment that has a
 * successor is corruption.
 */
#ifndef SW_ALOG_CURSOR_H
#define SW_ALOG_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "sw_alog.h"

struct sw_alog_cursor;

/* A cursor at the start of the log in dir (which may hold no segment yet;
 * a missing directory is an error of the first sw_alog_cursor_next). NULL
 * + errstr (out of memory). */
struct sw_alog_cursor *sw_alog_cursor_open(const char *dir, char *errstr, size_t errlen);
void sw_alog_cursor_close(struct sw_alog_cursor *c);

/*
 * The next record: 1 with rec filled (rec and what it points to stay valid
 * until the next call or close); 0 when the log holds no further complete
 * record now (call again for records appended since); -1 with errstr when
 * the log is broken or unreadable. A broken log's message names the
 * record: "segment 1: record seq 150 at offset 12345: hash mismatch". After
 * -1 the cursor returns -1 again.
 */
int sw_alog_cursor_next(struct sw_alog_cursor *c, struct sw_alog_rec *rec, char *errstr,
			size_t errlen);

/* The seq of the record the next sw_alog_cursor_next would return (1 at
 * the start of a log that begins at seq 1). */
uint64_t sw_alog_cursor_seq(const struct sw_alog_cursor *c);

/*
 * After sw_alog_cursor_next returned 0: 1 when the log ends in part of a
 * record (have bytes of it at off in the segment that starts at seq
 * segment; want is its size when its length is there, else 0), 0 when it
 * ends at a record boundary. A writer's append shows so for a moment; a
 * torn tail (a crash mid-append, until the audit service repairs it on
 * start) or a record whose length was changed stays so. Whoever must not
 * take a prefix of the log for all of it asks again a little later, then
 * refuses.
 */
int sw_alog_cursor_partial(const struct sw_alog_cursor *c, uint64_t *segment, uint64_t *off,
			   size_t *have, size_t *want);

/*
 * Hashing left to the caller, for hashing on other threads: with on, the
 * cursor checks everything but each record's hash (its length, seq, body,
 * and its prev against the stored hash of the record before it), and the
 * caller must check every record it is handed with sw_alog_raw_check on
 * the bytes sw_alog_cursor_raw gives (copied: they live until the next
 * call). Only the two together check the chain; off (the default) the
 * cursor checks it alone.
 */
void sw_alog_cursor_defer(struct sw_alog_cursor *c, int on);
/* The last record returned, as it lies in the log (len | seq | prev | body
 * | hash); valid until the next call. */
void sw_alog_cursor_raw(const struct sw_alog_cursor *c, const void **raw, size_t *len);
/* 0 when raw (one whole record) carries the hash of its bytes, else -1. */
int sw_alog_raw_check(const void *raw, size_t len);

#endif
