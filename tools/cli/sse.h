/*
 * sse: an incremental parser of text/event-stream (the WHATWG "server-sent
 * events" format), fed whatever chunks the transport delivers.
 *
 * Lines end with CRLF, LF or CR (a CR at the end of one chunk and an LF at
 * the start of the next are one line end). "event:" sets the type,
 * "data:" lines are joined with "\n", ":" lines are comments, "id" and
 * "retry" are ignored; a blank line dispatches the event if it has data
 * (type "message" when none was given). One space after the colon is
 * dropped. A byte-order mark at the very start is skipped.
 */
#ifndef CLI_SSE_H
#define CLI_SSE_H

#include <stddef.h>

struct cli_sse;

/* Called once per dispatched event. event and data are NUL-terminated
 * (data may hold NULs too: data_len counts its bytes) and live until the
 * callback returns. A positive return stops the parser: cli_sse_feed
 * returns that value and every later feed returns it again. */
typedef int (*cli_sse_cb)(const char *event, const char *data, size_t data_len, void *opaque);

/* max_event caps one line and one event's data (bytes); 0 means 4 MiB.
 * NULL when out of memory. */
struct cli_sse *cli_sse_new(size_t max_event, cli_sse_cb cb, void *opaque);
void cli_sse_destroy(struct cli_sse *s);

/* Parse len bytes. 0 when all were consumed; the callback's non-zero
 * value when it stopped the parser; -1 with errstr when a line or an
 * event exceeds max_event or memory runs out (the parser stays failed). */
int cli_sse_feed(struct cli_sse *s, const char *buf, size_t len, char *errstr, size_t errlen);

/* 1 when bytes of an incomplete line or event are pending (the stream
 * ended mid-event), else 0. An incomplete event is never dispatched. */
int cli_sse_pending(const struct cli_sse *s);

#endif
