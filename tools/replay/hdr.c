/*
 * hdr.c: the first fields of an event's header, read straight from its
 * Avro binary body, for the messages whose layout is known for certain.
 *
 * A replay job needs, for every event, its run id (the Kafka key) and for
 * a selection its type and time. sw_event_decode_header gives them through
 * avro-c and jansson, allocating as it goes: a few microseconds per event,
 * which on a small box is a good part of what re-publishing costs. Yet the
 * header is the first field of every event, and the Parsing Canonical Form
 * of each schema the registry knows says exactly how it is laid out. So,
 * at start, every event type whose canonical form begins its header with
 *
 *     event_id string, type string, time long, tenant string, run_id string
 *
 * has its fingerprint taken into a table; a message carrying one of those
 * fingerprints is read here (Avro binary: zig-zag varint longs, strings as
 * a long length and the bytes), every length checked against the message.
 * A message of any other writer (an older schema version), or one this
 * reader finds malformed, goes to sw_event_decode_header, which gives the
 * answer or the error. Only the header is read, not the rest of the body:
 * the log's events decoded in full when the audit service stored them, and
 * the hash chain shows they are unchanged since. tests/replay/test_hdr.c
 * holds both readers to the same answers, on every event type and on
 * damaged messages.
 */
#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replay_int.h"
#include "sw_alog_cursor.h"

/* What a conforming canonical form holds where its header starts. */
static const char prefix[] =
	"\"fields\":[{\"name\":\"header\",\"type\":{\"name\":\"sagewai.Header\",\"type\":\"record\","
	"\"fields\":[{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"type\",\"type\":"
	"\"string\"},{\"name\":\"time\",\"type\":\"long\"},{\"name\":\"tenant\",\"type\":"
	"\"string\"},{\"name\":\"run_id\",\"type\":\"string\"}";

int replay_hdrs_init(struct replay_hdrs *h, struct sw_event_registry *reg)
{
	size_t n = sw_events_type_count(reg), i;

	memset(h, 0, sizeof(*h));
	if ((h->fp = calloc(n ? n : 1, sizeof(*h->fp))) == NULL ||
	    (h->type = calloc(n ? n : 1, sizeof(*h->type))) == NULL) {
		replay_hdrs_free(h);
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *t = sw_events_type_name(reg, i);
		const char *c = sw_events_schema_canonical(reg, t);
		const char *f = c != NULL ? strstr(c, "\"fields\":[") : NULL;

		/* the record's own fields must begin with the header as above */
		if (f == NULL || strncmp(f, prefix, sizeof(prefix) - 1) != 0)
			continue;
		h->fp[h->n] = sw_events_fingerprint(reg, t);
		h->type[h->n] = t;
		h->n++;
	}
	return 0;
}

void replay_hdrs_free(struct replay_hdrs *h)
{
	free(h->fp);
	free(h->type);
	memset(h, 0, sizeof(*h));
}

/* A zig-zag varint long at *p (at most 10 bytes); -1 when cut short or
 * too long. */
static int get_long(const uint8_t **p, const uint8_t *end, int64_t *v)
{
	uint64_t u = 0;
	int shift;

	for (shift = 0; shift < 70; shift += 7) {
		uint8_t b;

		if (*p >= end)
			return -1;
		b = *(*p)++;
		u |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
			return 0;
		}
	}
	return -1;
}

static int get_str(const uint8_t **p, const uint8_t *end, const char **s, size_t *n)
{
	int64_t len;

	if (get_long(p, end, &len) == -1 || len < 0 || len > end - *p)
		return -1;
	*s = (const char *)*p;
	*n = (size_t)len;
	*p += len;
	return 0;
}

int replay_hdr_peek(const struct replay_hdrs *h, const void *buf, size_t len,
		    struct replay_hdr *out)
{
	const uint8_t *p = buf, *end = p + len;
	const char *s;
	uint64_t fp;
	size_t i, n;

	if (len < 10 || p[0] != 0xc3 || p[1] != 0x01)
		return 0;
	memcpy(&fp, p + 2, 8);
	fp = le64toh(fp);
	for (i = 0; i < h->n && h->fp[i] != fp; i++)
		;
	if (i == h->n)
		return 0;
	p += 10;
	if (get_str(&p, end, &out->event_id, &out->event_id_len) == -1 || /* event_id */
	    get_str(&p, end, &out->type, &out->type_len) == -1 ||	  /* type */
	    get_long(&p, end, &out->time_us) == -1 ||			  /* time */
	    get_str(&p, end, &s, &n) == -1 ||				  /* tenant */
	    get_str(&p, end, &out->run_id, &out->run_id_len) == -1)	  /* run_id */
		return 0;
	/* what sw_event_decode_header would refuse is left to it */
	if (out->type_len != strlen(h->type[i]) ||
	    memcmp(out->type, h->type[i], out->type_len) != 0 || out->run_id_len >= 64 ||
	    memchr(out->run_id, '\0', out->run_id_len) != NULL)
		return 0;
	return 1;
}

int replay_selected(const struct replay_state *st, const struct sw_alog_rec *rec,
		    const struct replay_hdr *h)
{
	size_t i;

	if (rec->time_us < st->since_us || rec->time_us >= st->until_us)
		return 0;
	if (st->has_run && (h->run_id_len != strlen(st->run_id) ||
			    memcmp(h->run_id, st->run_id, h->run_id_len) != 0))
		return 0;
	if (st->ntypes == 0)
		return 1;
	for (i = 0; i < st->ntypes; i++)
		if (h->type_len == strlen(st->types[i]) &&
		    memcmp(h->type, st->types[i], h->type_len) == 0)
			return 1;
	return 0;
}

int replay_rec_header(const struct replay_hdrs *hdrs, struct sw_event_registry *reg,
		      const struct sw_alog_rec *rec, struct replay_hdr *h,
		      struct sw_event_header *full, char *errstr, size_t errlen)
{
	char err[256];

	if (replay_hdr_peek(hdrs, rec->payload, rec->payload_len, h) == 1)
		return 0;
	if (sw_event_decode_header(reg, rec->payload, rec->payload_len, full, err,
				   sizeof(err)) == 0) {
		h->event_id = full->event_id;
		h->event_id_len = strlen(full->event_id);
		h->type = full->type;
		h->type_len = strlen(full->type);
		h->run_id = full->run_id;
		h->run_id_len = strlen(full->run_id);
		h->time_us = full->time_us;
		return 0;
	}
	snprintf(errstr, errlen,
		 "record seq %" PRIu64 ": its event does not decode (%s); is this sagewai older "
		 "than the log?",
		 rec->seq, err);
	return -1;
}

int replay_end_check(struct sw_alog_cursor *c, int *tries, char *errstr, size_t errlen)
{
	struct timespec pause = {0, 10 * 1000 * 1000};
	uint64_t seg, off;
	size_t have, want;
	char size[48] = "";

	if (!sw_alog_cursor_partial(c, &seg, &off, &have, &want))
		return 0;
	if (++*tries < REPLAY_PARTIAL_TRIES) {
		nanosleep(&pause, NULL);
		return 1;
	}
	if (want > 0)
		snprintf(size, sizeof(size), " of %zu", want);
	snprintf(errstr, errlen,
		 "segment %" PRIu64 ": record seq %" PRIu64 " at offset %" PRIu64
		 ": the log ends in part of it (%zu%s bytes), for over a second: a torn tail or "
		 "a changed length (the audit service repairs a torn tail when it starts; "
		 "sagewai audit verify names the record)",
		 seg, sw_alog_cursor_seq(c), off, have, size);
	return -1;
}

int replay_id_cmp(const void *a, const void *b)
{
	return strcmp(((const struct replay_id *)a)->s, ((const struct replay_id *)b)->s);
}

int replay_id_of(const struct replay_hdr *h, struct replay_id *id)
{
	if (h->event_id_len == 0 || h->event_id_len >= sizeof(id->s) ||
	    memchr(h->event_id, '\0', h->event_id_len) != NULL)
		return -1;
	memcpy(id->s, h->event_id, h->event_id_len);
	memset(id->s + h->event_id_len, 0, sizeof(id->s) - h->event_id_len);
	return 0;
}

int replay_needs_header(const struct replay_state *st)
{
	return st->has_run || st->ntypes > 0;
}
