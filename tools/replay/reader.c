/*
 * reader.c: the second pass of a job read on a thread of its own.
 *
 * Reading the log back is mostly hashing (every record is checked again as
 * it is read: what is sent must be what was checked). Done on the thread
 * that produces, it would add to the time of every message; here it runs
 * beside it, and it starts while the first pass still checks the log, so
 * on two cores the first REPLAY_AHEAD bytes of the second pass cost no
 * time at all. The producer takes the selected events in groups, in log
 * order. A group also says up to which seq the reader has looked
 * (records not selected, or already in the topic, included), so the
 * producer may count those as done once it has sent the group.
 *
 * The reader has its own registry and header reader (avro-c values are
 * not shared across threads); it reads the job's selection, acknowledged
 * and end seqs and the found seqs, none of which change while it runs.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replay_int.h"
#include "sw_alog_cursor.h"

#define GROUP_ITEMS 256	     /* events per group at most */
#define GROUP_SCAN 4096	     /* records looked at before a group goes anyway */

struct replay_reader {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;	     /* a group was queued, or taken, or the end */
	struct replay_group *head, *tail; /* queued, under mu */
	size_t bytes;		     /* queued payload bytes, under mu */
	size_t max_bytes;
	int finished;		     /* the reader is done (end or error), under mu */
	int stop;		     /* the producer asks it to stop, under mu */
	enum sw_replay_rc rc;	     /* how it finished */
	char err[512];

	uint64_t end;		     /* the job's end seq, under mu */
	int end_known;		     /* the first pass is through: end is the end, under mu */

	/* the reader thread's own */
	char *dir;
	const struct replay_state *st; /* its selection (which does not change) */
	uint64_t acked;		     /* the acknowledged seq at the start */
	const uint64_t *found;
	size_t nfound, ifound;
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

/* Hand g to the producer, waiting while too much is queued. 0, or -1 when
 * asked to stop (g is freed). */
static int push(struct replay_reader *r, struct replay_group *g)
{
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	while (!r->stop && r->bytes > r->max_bytes)
		pthread_cond_wait(&r->cv, &r->mu);
	if (r->stop) {
		rc = -1;
	} else {
		if (r->tail != NULL)
			r->tail->next = g;
		else
			r->head = g;
		r->tail = g;
		r->bytes += g->bytes;
		pthread_cond_broadcast(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
	if (rc == -1)
		replay_group_free(g);
	return rc;
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

/* Does rec become an item? 1 with *it made, 0 not (g->found counted), -1
 * with r->err. */
static int consider(struct replay_reader *r, const struct sw_alog_rec *rec,
		    struct replay_group *g, struct replay_item **it)
{
	const struct replay_state *st = r->st;
	struct sw_event_header full;
	struct replay_hdr h;

	if (rec->seq <= r->acked || rec->kind != SW_ALOG_EVENT)
		return 0;
	if (!replay_needs_header(st) &&
	    (rec->time_us < st->since_us || rec->time_us >= st->until_us))
		return 0;
	if (replay_rec_header(&r->hdrs, r->reg, rec, &h, &full, r->err, sizeof(r->err)) != 0)
		return -1;
	if (!replay_selected(st, rec, &h))
		return 0;
	while (r->ifound < r->nfound && r->found[r->ifound] < rec->seq)
		r->ifound++;
	if (r->ifound < r->nfound && r->found[r->ifound] == rec->seq) {
		g->found++;
		return 0;
	}
	if ((*it = item_new(rec, &h)) == NULL) {
		snprintf(r->err, sizeof(r->err), "out of memory");
		return -1;
	}
	return 1;
}

/* The second pass: every record up to end_seq checked; the selected events
 * above acked_seq not found in the topic become items, in groups. */
/* Whether the job's end seq is known yet (then *end is it), waiting up to
 * 10 ms for it when wait; -1 when the reader is to stop. */
static int end_of(struct replay_reader *r, int wait, uint64_t *end)
{
	struct timespec until;
	int known;

	pthread_mutex_lock(&r->mu);
	if (!r->end_known && wait && !r->stop) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 10 * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cv, &r->mu, &until);
	}
	known = r->stop ? -1 : r->end_known;
	*end = r->end;
	pthread_mutex_unlock(&r->mu);
	return known;
}

static enum sw_replay_rc read_all(struct replay_reader *r)
{
	struct sw_alog_cursor *c;
	struct replay_group *g = NULL;
	struct sw_alog_rec rec;
	uint64_t last = 0, end;
	size_t scanned = 0;
	char err[400];
	int rc = 0, known;

	if ((c = sw_alog_cursor_open(r->dir, r->err, sizeof(r->err))) == NULL)
		return SW_REPLAY_FAIL;
	for (;;) {
		struct replay_item *it = NULL;
		int took;

		/* the end is known once the first pass is through: until then,
		 * read on (what lies past it the producer drops) */
		if ((known = end_of(r, 0, &end)) == -1)
			goto stopped;
		if (known && last >= end)
			break;
		if (g == NULL && (g = group_new()) == NULL) {
			snprintf(r->err, sizeof(r->err), "out of memory");
			goto fail;
		}
		if ((rc = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == -1)
			break;
		if (rc == 0) {
			if (known) { /* the first pass saw records this one does not */
				snprintf(r->err, sizeof(r->err),
					 "the audit log %s ended at seq %" PRIu64
					 " while publishing, before the job's end %" PRIu64,
					 r->dir, last, end);
				goto fail;
			}
			(void)end_of(r, 1, &end);
			continue;
		}
		last = rec.seq;
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
			rc = push(r, g);
			g = NULL; /* the producer's now, or freed */
			if (rc == -1)
				goto stopped;
		}
	}
	if (rc == -1) {
		snprintf(r->err, sizeof(r->err), "the audit log %s broke while publishing: %s",
			 r->dir, err);
		replay_group_free(g);
		sw_alog_cursor_close(c);
		return SW_REPLAY_BROKEN;
	}
	sw_alog_cursor_close(c);
	if (g != NULL && push(r, g) == -1)
		return SW_REPLAY_STOPPED;
	return SW_REPLAY_OK;
fail:
	replay_group_free(g);
	sw_alog_cursor_close(c);
	return SW_REPLAY_FAIL;
stopped:
	replay_group_free(g);
	sw_alog_cursor_close(c);
	return SW_REPLAY_STOPPED;
}

void replay_reader_set_end(struct replay_reader *r, uint64_t end)
{
	pthread_mutex_lock(&r->mu);
	r->end = end;
	r->end_known = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void *reader_main(void *arg)
{
	struct replay_reader *r = arg;
	enum sw_replay_rc rc = read_all(r);

	pthread_mutex_lock(&r->mu);
	r->rc = rc;
	r->finished = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

struct replay_reader *replay_reader_start(const char *dir, const struct replay_state *st,
					  const uint64_t *found, size_t nfound, size_t max_bytes,
					  char *errstr, size_t errlen)
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
	r->found = found;
	r->nfound = nfound;
	r->max_bytes = max_bytes;
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

int replay_reader_next(struct replay_reader *r, int wait_ms, struct replay_group **g)
{
	struct timespec until;
	int rc;

	*g = NULL;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&r->mu);
	while (r->head == NULL && !r->finished &&
	       pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
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
