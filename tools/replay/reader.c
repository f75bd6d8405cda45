/*
 * reader.c: the log read for a job, on a thread of its own.
 *
 * Everything sent must have been checked, and nothing may be sent from a
 * log that turns out broken further on. Checking is mostly hashing, so
 * the reader checks each record once and keeps the selected events in
 * memory (up to max_bytes) while the producer waits:
 *
 *   - when it reaches the end of the log (or the end seq of a resumed
 *     job) first, the whole job is checked and counted in this one pass:
 *     it reports R_AT_END with the end seq, its record's hash and the
 *     counts, and the producer sends what it holds;
 *   - when the events held pass max_bytes first, it reports R_OVER and
 *     waits; the producer then checks the whole log itself (the first pass
 *     of publish.c), tells the reader the job's end seq, and takes the
 *     events as the reader goes on, checking every record again.
 *
 * Either way a broken log is refused before anything is sent. While the
 * reader reads, the hashing is left to the producer's thread, which has
 * nothing else to do then (sw_alog_cursor_defer): the reader copies each
 * record as stored into hash batches, the producer checks them, and only
 * once every record read so far has checked does the producer go on (on
 * R_OVER, the reader hashes again itself from there on). On two cores
 * that halves the time before the first message. The events
 * come to the producer in groups, in log order; a group also says up to
 * which seq the reader has looked (records not selected, or already in the
 * topic, included), which the producer counts done once it has sent the
 * group.
 *
 * The reader has its own registry and header reader (avro-c values are not
 * shared between threads); of the job it reads the selection, the
 * acknowledged seq and the found seqs, none of which change meanwhile.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replay_int.h"
#include "sw_alog_cursor.h"

#define GROUP_ITEMS 256 /* events per group at most */
#define GROUP_SCAN 4096 /* records looked at before a group goes anyway */
#define HASH_BATCH (1u << 20)  /* record bytes per hash batch */
#define HASH_QUEUE (32u << 20) /* hash batch bytes waiting at most */

/* Records as stored, for the producer's thread to check their hashes. */
struct hrec {
	uint64_t seq, segment, file_off;
	size_t off, len; /* in buf */
};
struct hbatch {
	struct hbatch *next;
	uint8_t *buf;
	size_t len, cap;
	struct hrec *recs;
	size_t n, capn;
};

struct replay_reader {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;		  /* any change below */
	struct replay_group *head, *tail; /* queued groups, under mu */
	size_t bytes;			  /* their events' bytes, under mu */
	size_t max_bytes;
	enum replay_phase phase;	  /* under mu */
	int finished;			  /* the thread is done, under mu */
	int stop;			  /* the producer asks it to stop, under mu */
	uint64_t end;			  /* the job's end seq, under mu */
	int end_known;			  /* end is final, under mu */
	struct replay_check check;	  /* for R_AT_END, under mu */
	struct hbatch *hq_head, *hq_tail; /* hash batches to check, under mu */
	size_t hq_bytes;		  /* under mu */
	int hash_closed;		  /* no more hash batches will come, under mu */
	int read_done;			  /* all read, check filled, under mu */
	uint64_t bad_seq, bad_segment, bad_off; /* the first record found bad, under mu */
	enum sw_replay_rc rc;		  /* how it finished, under mu */
	char err[512];			  /* why, under mu */

	/* the reader thread's own */
	char *dir;
	const struct replay_state *st;
	uint64_t acked;			  /* the acknowledged seq at the start */
	int resuming;			  /* the end seq and its hash are the state's */
	uint8_t end_hash[SW_ALOG_HASH];	  /* a resumed job's end record's hash */
	const struct replay_id *found;
	size_t nfound;
	uint64_t total, resumed;
	struct sw_event_registry *reg;
	struct replay_hdrs hdrs;
};

void replay_group_free(struct replay_group *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < g->n; i++)
		free(g->items[i]);
	free(g->items);
	free(g);
}

static struct replay_group *group_new(void)
{
	struct replay_group *g = calloc(1, sizeof(*g));

	if (g != NULL && (g->items = calloc(GROUP_ITEMS, sizeof(*g->items))) == NULL) {
		free(g);
		g = NULL;
	}
	return g;
}

static void deadline(struct timespec *t, int ms)
{
	clock_gettime(CLOCK_REALTIME, t);
	t->tv_sec += ms / 1000;
	t->tv_nsec += (long)(ms % 1000) * 1000000;
	if (t->tv_nsec >= 1000000000) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000;
	}
}

static void hb_free(struct hbatch *b)
{
	if (b == NULL)
		return;
	free(b->buf);
	free(b->recs);
	free(b);
}

/* Copy the record the cursor just returned into b. 0 or -1 (memory). */
static int hb_add(struct hbatch *b, const struct sw_alog_rec *rec, const void *raw, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : HASH_BATCH;
		uint8_t *nb;

		while (cap < b->len + len)
			cap *= 2;
		if ((nb = realloc(b->buf, cap)) == NULL)
			return -1;
		b->buf = nb;
		b->cap = cap;
	}
	if (b->n == b->capn) {
		size_t capn = b->capn ? b->capn * 2 : 1024;
		struct hrec *nr = realloc(b->recs, capn * sizeof(*nr));

		if (nr == NULL)
			return -1;
		b->recs = nr;
		b->capn = capn;
	}
	b->recs[b->n].seq = rec->seq;
	b->recs[b->n].segment = rec->segment;
	b->recs[b->n].file_off = rec->file_off;
	b->recs[b->n].off = b->len;
	b->recs[b->n].len = len;
	b->n++;
	memcpy(b->buf + b->len, raw, len);
	b->len += len;
	return 0;
}

/* Queue b (may be NULL or empty) for the producer's thread to check;
 * close: no batch comes after it. 0, or -1 when asked to stop (b freed). */
static int hq_push(struct replay_reader *r, struct hbatch *b, int close)
{
	int rc;

	pthread_mutex_lock(&r->mu);
	while (!r->stop && b != NULL && r->hq_bytes > HASH_QUEUE)
		pthread_cond_wait(&r->cv, &r->mu);
	rc = r->stop ? -1 : 0;
	if (rc == 0 && b != NULL && b->n > 0) {
		if (r->hq_tail != NULL)
			r->hq_tail->next = b;
		else
			r->hq_head = b;
		r->hq_tail = b;
		r->hq_bytes += b->len;
		b = NULL;
	}
	if (close)
		r->hash_closed = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	hb_free(b);
	return rc;
}

/* Queue g for the producer; past max_bytes, say R_OVER (while still
 * reading) and wait for room. 0, or -1 when asked to stop (g is freed). */
static int push(struct replay_reader *r, struct replay_group *g)
{
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	if (r->tail != NULL)
		r->tail->next = g;
	else
		r->head = g;
	r->tail = g;
	r->bytes += g->bytes;
	if (r->bytes > r->max_bytes && r->phase == R_READING)
		r->phase = R_OVER;
	pthread_cond_broadcast(&r->cv);
	while (!r->stop && r->bytes > r->max_bytes)
		pthread_cond_wait(&r->cv, &r->mu);
	rc = r->stop ? -1 : 0;
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* Would queueing g pass max_bytes (with nothing taken before the end is
 * known, the queue only grows until then)? */
static int over_after(struct replay_reader *r, const struct replay_group *g)
{
	int over;

	pthread_mutex_lock(&r->mu);
	over = r->bytes + g->bytes > r->max_bytes;
	pthread_mutex_unlock(&r->mu);
	return over;
}

static struct replay_item *item_new(const struct sw_alog_rec *rec, const struct replay_hdr *h)
{
	struct replay_item *it = malloc(sizeof(*it) + h->run_id_len + rec->payload_len);

	if (it == NULL)
		return NULL;
	it->seq = rec->seq;
	it->partition = rec->partition;
	it->offset = rec->offset;
	snprintf(it->topic, sizeof(it->topic), "%.*s", (int)rec->topic_len, rec->topic);
	it->key_len = h->run_id_len;
	it->len = rec->payload_len;
	memcpy(it->data, h->run_id, h->run_id_len);
	memcpy(it->data + h->run_id_len, rec->payload, rec->payload_len);
	return it;
}

/* Set the reason under the lock (the producer may read it). */
static void fail_with(struct replay_reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail_with(struct replay_reader *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->mu);
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&r->mu);
}

/* Does rec become an item? 1 with *it made, 0 not (counted as it is), -1
 * with r->err. */
static int consider(struct replay_reader *r, const struct sw_alog_rec *rec,
		    struct replay_group *g, struct replay_item **it)
{
	const struct replay_state *st = r->st;
	struct sw_event_header full;
	struct replay_hdr h;
	char err[512];

	if (rec->kind != SW_ALOG_EVENT)
		return 0;
	if (!replay_needs_header(st) &&
	    (rec->time_us < st->since_us || rec->time_us >= st->until_us))
		return 0;
	if (replay_rec_header(&r->hdrs, r->reg, rec, &h, &full, err, sizeof(err)) != 0) {
		fail_with(r, "%s", err);
		return -1;
	}
	if (!replay_selected(st, rec, &h))
		return 0;
	r->total++;
	if (rec->seq <= r->acked) {
		r->resumed++;
		return 0;
	}
	if (r->nfound > 0) { /* delivered by a killed run (or already there) */
		struct replay_id id;

		if (replay_id_of(&h, &id) == 0 &&
		    bsearch(&id, r->found, r->nfound, sizeof(id), replay_id_cmp) != NULL) {
			g->found++;
			return 0;
		}
	}
	if ((*it = item_new(rec, &h)) == NULL) {
		fail_with(r, "out of memory");
		return -1;
	}
	return 1;
}

static enum sw_replay_rc read_all(struct replay_reader *r)
{
	struct sw_alog_cursor *c;
	struct replay_group *g = NULL;
	struct hbatch *hb = NULL;
	struct sw_alog_rec rec;
	uint8_t last_hash[SW_ALOG_HASH] = {0};
	uint64_t last = 0, end;
	size_t scanned = 0;
	char err[400];
	int rc = 0, known, over, stop, defer = 1, tries = 0, end_rc;

	if ((c = sw_alog_cursor_open(r->dir, err, sizeof(err))) == NULL) {
		fail_with(r, "%s", err);
		return SW_REPLAY_FAIL;
	}
	sw_alog_cursor_defer(c, 1); /* the producer's thread hashes (hq) */
	for (;;) {
		struct replay_item *it = NULL;
		int took;

		pthread_mutex_lock(&r->mu);
		known = r->end_known;
		end = r->end;
		over = r->phase != R_READING;
		stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (stop)
			goto stopped;
		if (known && last >= end)
			break;
		if (g == NULL && (g = group_new()) == NULL) {
			fail_with(r, "out of memory");
			goto fail;
		}
		if ((rc = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == -1)
			break;
		if (rc == 0) {
			struct timespec t;

			if ((end_rc = replay_end_check(c, &tries, err, sizeof(err))) == 1)
				continue;
			if (end_rc == -1) {
				rc = -1;
				break;
			}
			if (known) { /* the job's end lies beyond the log's */
				fail_with(r,
					  "the audit log %s ends at seq %" PRIu64
					  ", before the job's end %" PRIu64
					  ": it is not the log this job started on",
					  r->dir, last, end);
				goto fail;
			}
			if (!over) { /* all checked and held: the end is here */
				pthread_mutex_lock(&r->mu);
				r->end = last;
				r->end_known = 1;
				pthread_mutex_unlock(&r->mu);
				break;
			}
			/* the producer checks the log and tells the end */
			pthread_mutex_lock(&r->mu);
			deadline(&t, 10);
			if (!r->end_known && !r->stop)
				pthread_cond_timedwait(&r->cv, &r->mu, &t);
			pthread_mutex_unlock(&r->mu);
			continue;
		}
		tries = 0; /* a second for each record a writer is appending */
		last = rec.seq;
		memcpy(last_hash, rec.hash, SW_ALOG_HASH);
		if (defer) {
			const void *raw;
			size_t rlen;

			sw_alog_cursor_raw(c, &raw, &rlen);
			if ((hb == NULL && (hb = calloc(1, sizeof(*hb))) == NULL) ||
			    hb_add(hb, &rec, raw, rlen) == -1) {
				fail_with(r, "out of memory");
				goto fail;
			}
			if (hb->len >= HASH_BATCH) {
				rc = hq_push(r, hb, 0);
				hb = NULL;
				if (rc == -1)
					goto stopped;
			}
		}
		if ((took = consider(r, &rec, g, &it)) == -1)
			goto fail;
		if (took) {
			g->items[g->n++] = it;
			g->bytes += it->len;
		}
		g->scanned = rec.seq;
		/* a full group goes; so does one after many records not selected,
		 * so that the producer may count them done */
		if (g->n == GROUP_ITEMS || ++scanned % GROUP_SCAN == 0) {
			/* past what it may hold the producer checks the log: what
			 * was read so far must be checked before, what comes
			 * after is hashed here */
			if (defer && over_after(r, g)) {
				rc = hq_push(r, hb, 1);
				hb = NULL;
				defer = 0;
				sw_alog_cursor_defer(c, 0);
				if (rc == -1)
					goto stopped;
			}
			rc = push(r, g);
			g = NULL; /* the producer's now */
			if (rc == -1)
				goto stopped;
		}
	}
	if (rc == -1) {
		if (defer) { /* what was read is checked: the first bad record is named */
			(void)hq_push(r, hb, 1); /* takes hb */
			hb = NULL;
		}
		hb_free(hb);
		pthread_mutex_lock(&r->mu);
		if (r->phase == R_READING)
			snprintf(r->err, sizeof(r->err),
				 "the audit log %s is broken: %s; nothing was published", r->dir,
				 err);
		else
			snprintf(r->err, sizeof(r->err),
				 "the audit log %s broke while publishing: %s", r->dir, err);
		pthread_mutex_unlock(&r->mu);
		replay_group_free(g);
		sw_alog_cursor_close(c);
		return SW_REPLAY_BROKEN;
	}
	sw_alog_cursor_close(c);
	if (defer) {
		rc = hq_push(r, hb, 1);
		hb = NULL;
		if (rc == -1) {
			replay_group_free(g);
			return SW_REPLAY_STOPPED;
		}
	}
	if (r->resuming && last > 0 && memcmp(last_hash, r->end_hash, SW_ALOG_HASH) != 0) {
		/* the log must be the one the job started on */
		fail_with(r,
			  "record seq %" PRIu64 " of %s is not the one this job started on "
			  "(another hash): the log was replaced or rewritten",
			  last, r->dir);
		replay_group_free(g);
		return SW_REPLAY_FAIL;
	}
	if (g != NULL && push(r, g) == -1)
		return SW_REPLAY_STOPPED;
	pthread_mutex_lock(&r->mu);
	if (r->phase == R_READING) { /* R_AT_END once the hashes are checked */
		r->read_done = 1;
		r->check.end_seq = last;
		memcpy(r->check.end_hash, last_hash, SW_ALOG_HASH);
		r->check.total = r->total;
		r->check.resumed = r->resumed;
		pthread_cond_broadcast(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
	return SW_REPLAY_OK;
fail:
	/* the records read so far, the failing one among them, are still
	 * checked: a changed byte that made an event undecodable is named as
	 * what it is (a record whose hash does not match), before this */
	if (defer) {
		(void)hq_push(r, hb, 1); /* takes hb */
		hb = NULL;
	}
	hb_free(hb);
	replay_group_free(g);
	sw_alog_cursor_close(c);
	return SW_REPLAY_FAIL;
stopped:
	hb_free(hb);
	replay_group_free(g);
	sw_alog_cursor_close(c);
	return SW_REPLAY_STOPPED;
}

static void *reader_main(void *arg)
{
	struct replay_reader *r = arg;
	enum sw_replay_rc rc = read_all(r);

	pthread_mutex_lock(&r->mu);
	r->rc = rc;
	r->finished = 1;
	r->hash_closed = 1;
	if (rc != SW_REPLAY_OK && r->phase == R_READING)
		r->phase = R_FAILED;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

struct replay_reader *replay_reader_start(const char *dir, const struct replay_state *st,
					  int resuming, const struct replay_id *found,
					  size_t nfound, size_t max_bytes, char *errstr,
					  size_t errlen)
{
	struct replay_reader *r = calloc(1, sizeof(*r));
	int e;

	if (r == NULL || (r->dir = strdup(dir)) == NULL) {
		free(r);
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	r->st = st;
	r->acked = st->acked_seq;
	if (resuming) { /* the job's end is known: check up to it */
		r->resuming = 1;
		r->end = st->end_seq;
		r->end_known = 1;
		memcpy(r->end_hash, st->end_hash, SW_ALOG_HASH);
	}
	r->found = found;
	r->nfound = nfound;
	r->max_bytes = max_bytes;
	r->phase = R_READING;
	if ((r->reg = sw_events_registry_new(errstr, errlen)) == NULL)
		goto fail;
	if (replay_hdrs_init(&r->hdrs, r->reg) == -1) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if ((e = pthread_create(&r->th, NULL, reader_main, r)) != 0) {
		snprintf(errstr, errlen, "cannot start the reader thread: %s", strerror(e));
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		goto fail;
	}
	return r;
fail:
	replay_hdrs_free(&r->hdrs);
	sw_events_registry_destroy(r->reg);
	free(r->dir);
	free(r);
	return NULL;
}

/* Check the hashes of batch b (the producer's thread, unlocked); the
 * first bad record is kept if it is the first found. */
static void hb_check(struct replay_reader *r, struct hbatch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		const struct hrec *h = &b->recs[i];

		if (sw_alog_raw_check(b->buf + h->off, h->len) == 0)
			continue;
		pthread_mutex_lock(&r->mu);
		if (r->bad_seq == 0 || h->seq < r->bad_seq) {
			r->bad_seq = h->seq;
			r->bad_segment = h->segment;
			r->bad_off = h->file_off;
		}
		pthread_mutex_unlock(&r->mu);
		break;
	}
}

enum replay_phase replay_reader_wait(struct replay_reader *r, int wait_ms,
				     struct replay_check *check, enum sw_replay_rc *rc, char *errstr,
				     size_t errlen)
{
	struct timespec t;
	enum replay_phase ph;

	deadline(&t, wait_ms);
	pthread_mutex_lock(&r->mu);
	for (;;) {
		struct hbatch *b = r->hq_head;

		if (b != NULL) { /* hash what the reader read */
			if ((r->hq_head = b->next) == NULL)
				r->hq_tail = NULL;
			r->hq_bytes -= b->len;
			pthread_cond_broadcast(&r->cv);
			pthread_mutex_unlock(&r->mu);
			hb_check(r, b);
			hb_free(b);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		if (r->bad_seq != 0) {
			/* batches come in log order and the reader is past them all,
			 * so this is the first bad record of the log */
			r->phase = R_FAILED;
			r->rc = SW_REPLAY_BROKEN;
			snprintf(r->err, sizeof(r->err),
				 "the audit log %s is broken: segment %" PRIu64 ": record seq %" PRIu64
				 " at offset %" PRIu64 ": hash mismatch; nothing was published",
				 r->dir, r->bad_segment, r->bad_seq, r->bad_off);
			r->stop = 1;
			pthread_cond_broadcast(&r->cv);
			break;
		}
		if (r->hash_closed) {
			if (r->phase == R_READING && r->read_done)
				r->phase = R_AT_END;
			if (r->phase != R_READING)
				break;
		}
		if (pthread_cond_timedwait(&r->cv, &r->mu, &t) == ETIMEDOUT)
			break;
	}
	ph = r->phase;
	if (ph == R_AT_END)
		*check = r->check;
	if (ph == R_FAILED) {
		*rc = r->rc;
		snprintf(errstr, errlen, "%s", r->err);
	}
	pthread_mutex_unlock(&r->mu);
	return ph;
}

void replay_reader_set_end(struct replay_reader *r, uint64_t end)
{
	pthread_mutex_lock(&r->mu);
	r->end = end;
	r->end_known = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

int replay_reader_next(struct replay_reader *r, int wait_ms, struct replay_group **g)
{
	struct timespec t;
	int rc;

	*g = NULL;
	deadline(&t, wait_ms);
	pthread_mutex_lock(&r->mu);
	while (r->head == NULL && !r->finished &&
	       pthread_cond_timedwait(&r->cv, &r->mu, &t) != ETIMEDOUT)
		;
	if (r->head != NULL) {
		*g = r->head;
		if ((r->head = r->head->next) == NULL)
			r->tail = NULL;
		r->bytes -= (*g)->bytes;
		(*g)->next = NULL;
		pthread_cond_broadcast(&r->cv);
		rc = 1;
	} else {
		rc = r->finished ? -1 : 0;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

enum sw_replay_rc replay_reader_stop(struct replay_reader *r, char *errstr, size_t errlen)
{
	struct replay_group *g;
	enum sw_replay_rc rc;

	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->th, NULL);
	while ((g = r->head) != NULL) {
		r->head = g->next;
		replay_group_free(g);
	}
	while (r->hq_head != NULL) {
		struct hbatch *b = r->hq_head;

		r->hq_head = b->next;
		hb_free(b);
	}
	rc = r->rc;
	if (rc != SW_REPLAY_OK && rc != SW_REPLAY_STOPPED && errstr != NULL)
		snprintf(errstr, errlen, "%s", r->err);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	replay_hdrs_free(&r->hdrs);
	sw_events_registry_destroy(r->reg);
	free(r->dir);
	free(r);
	return rc;
}
