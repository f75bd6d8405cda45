/*
 * publish.c: a replay job (sw_replay.h).
 *
 *   1. the state file, if any: a new job, or the one it holds (which must
 *      be the job asked for);
 *   2. a resumed job reads what its killed run delivered past its state
 *      (resume.c);
 *   3. the reader (reader.c, on a thread of its own) checks the whole log
 *      up to its end as it is now (or the job's end seq on resume, whose
 *      record must still carry the same hash), counting the selection and
 *      holding it; if the selection is more than it may hold, the first
 *      pass here checks and counts the whole log while the reader waits.
 *      Either way a broken log stops everything before a message is sent;
 *   4. a new job notes each target partition's end (where a resume starts
 *      looking) and saves its state before producing;
 *   5. the reader hands the selected events over in log order (checking
 *      again what it reads after the first pass); each is produced and
 *      remembered in a ring (the window) until its delivery report;
 *      the acknowledged seq advances over the oldest reported slots only,
 *      so it never passes an event whose delivery is unknown. Reports
 *      arrive out of order across partitions, hence the ring.
 *
 * The producer is librdkafka's, idempotent with acks=all, polled from this
 * thread (a tool, not a daemon: blocking here is fine).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "replay_int.h"
#include "sw_alog_cursor.h"
#include "sw_core.h"
#include "sw_events.h"

#define RING (1u << 18)	   /* messages in flight at most */
#define STATE_EVERY_MS 200 /* state file saved this often while running */
#define FLUSH_MS 120000	   /* waiting for the last delivery reports */
#define REPLAY_HOLD (256u << 20) /* event bytes the reader may hold (default) */

enum slot_state { SLOT_SENT = 1, SLOT_ACKED = 2, SLOT_FAILED = 3 };

struct slot {
	struct replay_item *item; /* produced without a copy: freed on its report */
	uint64_t seq;
	int64_t offset;
	int32_t partition;
	uint8_t state;
};

struct job {
	const struct sw_replay_opts *o;
	struct sw_event_registry *reg;
	struct replay_hdrs hdrs; /* the fast header reader */
	struct replay_state st;
	rd_kafka_t *rk;
	struct slot *ring;
	uint64_t head, tail; /* ordinals: [head, tail) not yet released */
	uint64_t scanned;    /* the last seq the second pass is done with */
	struct replay_id *found; /* ids already in the topic (resume), sorted */
	size_t nfound;
	struct sw_replay_progress pr;
	int64_t t0_ns, last_state_ms, last_progress_ms;
	char dr_err[256]; /* the first failed delivery */
	uint64_t dr_err_seq;
	int state_dirty;
	int counted; /* the first pass is done */
};

int sw_replay_topic_is_live(const char *topic)
{
	return strncmp(topic, "sagewai.", 8) == 0;
}

/* Kafka's rule for topic names. */
static int topic_valid(const char *t)
{
	size_t n = strlen(t), i;

	if (n == 0 || n > 249 || strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
		      (t[i] >= '0' && t[i] <= '9') || t[i] == '.' || t[i] == '_' || t[i] == '-'))
			return 0;
	return 1;
}

static void report(struct job *j, int finished)
{
	double el = (double)(sw_mono_ns() - j->t0_ns) / 1e9;

	j->pr.elapsed_s = el;
	j->pr.rate = el > 0 && j->pr.done >= j->pr.resumed + j->pr.found
			     ? (double)(j->pr.done - j->pr.resumed - j->pr.found) / el
			     : 0;
	j->pr.acked_seq = j->st.acked_seq;
	j->pr.finished = finished;
	if (j->o->progress != NULL)
		j->o->progress(&j->pr, j->o->opaque);
}

/* ---- pass 1 ------------------------------------------------------------ */

/* Check the log up to its end (or the job's end seq) and count the
 * selection: pr.total, and pr.resumed (selected, at or below acked_seq). A
 * new job fixes end_seq and end_hash here. */
static enum sw_replay_rc pass_count(struct job *j, int resuming, char *errstr, size_t errlen)
{
	struct sw_alog_cursor *c;
	struct sw_alog_rec rec;
	struct sw_event_header full;
	struct replay_hdr h;
	uint64_t last = 0;
	uint8_t last_hash[SW_ALOG_HASH] = {0};
	char err[512];
	int rc, tries = 0, end;

	if ((c = sw_alog_cursor_open(j->o->log_dir, errstr, errlen)) == NULL)
		return SW_REPLAY_FAIL;
	while (!resuming || last < j->st.end_seq) {
		if ((rc = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == 0 &&
		    (end = replay_end_check(c, &tries, err, sizeof(err))) != 0) {
			if (end == 1)
				continue;
			rc = -1;
		}
		if (rc != 1)
			break;
		tries = 0; /* a second for each record a writer is appending */
		last = rec.seq;
		memcpy(last_hash, rec.hash, SW_ALOG_HASH);
		if (rec.kind != SW_ALOG_EVENT)
			continue;
		if (replay_needs_header(&j->st) && replay_rec_header(&j->hdrs, j->reg, &rec, &h, &full, errstr, errlen) != 0)
			goto fail;
		if (!replay_needs_header(&j->st))
			memset(&h, 0, sizeof(h));
		if (!replay_selected(&j->st, &rec, &h))
			continue;
		j->pr.total++;
		if (rec.seq <= j->st.acked_seq)
			j->pr.resumed++;
	}
	if (rc == -1) {
		snprintf(errstr, errlen, "the audit log %s is broken: %s; nothing was published",
			 j->o->log_dir, err);
		sw_alog_cursor_close(c);
		return SW_REPLAY_BROKEN;
	}
	sw_alog_cursor_close(c);
	if (!resuming) {
		j->st.end_seq = last;
		memcpy(j->st.end_hash, last_hash, SW_ALOG_HASH);
	} else if (last < j->st.end_seq) {
		snprintf(errstr, errlen,
			 "the audit log %s ends at seq %" PRIu64 ", before the job's end %" PRIu64
			 ": it is not the log this job started on",
			 j->o->log_dir, last, j->st.end_seq);
		return SW_REPLAY_FAIL;
	} else if (last > 0 && memcmp(last_hash, j->st.end_hash, SW_ALOG_HASH) != 0) {
		snprintf(errstr, errlen,
			 "record seq %" PRIu64 " of %s is not the one this job started on "
			 "(another hash): the log was replaced or rewritten",
			 last, j->o->log_dir);
		return SW_REPLAY_FAIL;
	}
	j->pr.end_seq = j->st.end_seq;
	return SW_REPLAY_OK;
fail:
	sw_alog_cursor_close(c);
	return SW_REPLAY_FAIL;
}

/* ---- Kafka ------------------------------------------------------------- */

/* Release the oldest slots that are reported, advancing acked_seq. */
static void release(struct job *j)
{
	while (j->head < j->tail) {
		struct slot *s = &j->ring[j->head % RING];

		if (s->state != SLOT_ACKED)
			break;
		if (replay_state_floor_grow(&j->st, s->partition) == 0 &&
		    s->offset + 1 > j->st.floors[s->partition])
			j->st.floors[s->partition] = s->offset + 1;
		j->st.acked_seq = s->seq;
		j->st.done++;
		j->pr.done++;
		j->head++;
		j->state_dirty = 1;
	}
	if (j->head == j->tail && j->scanned > j->st.acked_seq) {
		j->st.acked_seq = j->scanned; /* nothing in flight: all up to here done */
		j->state_dirty = 1;
	} else if (j->head < j->tail && j->ring[j->head % RING].seq - 1 > j->st.acked_seq) {
		j->st.acked_seq = j->ring[j->head % RING].seq - 1;
		j->state_dirty = 1;
	}
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct job *j = opaque;
	uint64_t ord = (uint64_t)(uintptr_t)m->_private;
	struct slot *s = &j->ring[ord % RING];

	(void)rk;
	free(s->item); /* librdkafka is done with its bytes */
	s->item = NULL;
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		s->state = SLOT_FAILED;
		if (j->dr_err[0] == '\0') {
			snprintf(j->dr_err, sizeof(j->dr_err), "%s", rd_kafka_err2str(m->err));
			j->dr_err_seq = s->seq;
		}
		return;
	}
	s->state = SLOT_ACKED;
	s->partition = m->partition;
	s->offset = m->offset;
}

static rd_kafka_t *producer_new(struct job *j, char *errstr, size_t errlen)
{
	static const char *const defaults[] = {
		"linger.ms=5",
		"message.timeout.ms=120000",
		"queue.buffering.max.messages=200000",
		"queue.buffering.max.kbytes=262144",
		NULL,
	};
	static const char *const forced[] = {"enable.idempotence=true", "acks=all", NULL};
	const char *const *lists[3] = {defaults, j->o->kafka_extra, forced};
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512], name[256];
	rd_kafka_t *rk;
	int l;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", j->o->bootstrap, err, sizeof(err)) != 0 ||
	    rd_kafka_conf_set(conf, "client.id", "sagewai-replay", err, sizeof(err)) != 0 ||
	    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)) != 0)
		goto bad;
	for (l = 0; l < 3; l++) {
		const char *const *e;

		for (e = lists[l]; e != NULL && *e != NULL; e++) {
			const char *eq = strchr(*e, '=');

			if (eq == NULL || eq == *e || (size_t)(eq - *e) >= sizeof(name)) {
				snprintf(err, sizeof(err), "'%s' is not name=value", *e);
				goto bad;
			}
			snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
			if (rd_kafka_conf_set(conf, name, eq + 1, err, sizeof(err)) != 0)
				goto bad;
		}
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, j);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL)
		goto bad;
	return rk;
bad:
	snprintf(errstr, errlen, "kafka producer: %s", err);
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* Every partition of a topic's metadata has a leader. */
static int all_led(const struct rd_kafka_metadata_topic *t)
{
	int i;

	if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partition_cnt <= 0)
		return 0;
	for (i = 0; i < t->partition_cnt; i++)
		if (t->partitions[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partitions[i].leader < 0)
			return 0;
	return 1;
}

/* A new job: the target's partitions and their ends now, as floors (the
 * metadata request creates the topic where the broker allows that). A
 * topic being created answers without partitions, or without leaders, or
 * "not leader" for a moment: that is waited out (15 s at most). */
static int floors_init(struct job *j, char *errstr, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(j->rk, j->st.topic, NULL);
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
	int64_t lo, hi, deadline = sw_mono_ms() + 15000;
	int32_t np = 0, p = 0;
	int rc = -1;

	if (t == NULL) {
		snprintf(errstr, errlen, "kafka: topic %s: out of memory", j->st.topic);
		return -1;
	}
	for (;;) {
		if (md != NULL)
			rd_kafka_metadata_destroy(md);
		md = NULL;
		e = rd_kafka_metadata(j->rk, 0, t, &md, 10000);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
			if (all_led(&md->topics[0]))
				break;
			e = md->topics[0].err;
		}
		if (sw_mono_ms() >= deadline) {
			snprintf(errstr, errlen, "kafka: topic %s is not available: %s",
				 j->st.topic, rd_kafka_err2str(e));
			goto out;
		}
		usleep(20 * 1000);
	}
	np = md->topics[0].partition_cnt;
	if (np > REPLAY_MAX_PARTITIONS || replay_state_floor_grow(&j->st, np - 1) == -1) {
		snprintf(errstr, errlen, "kafka: topic %s: %d partitions", j->st.topic, (int)np);
		goto out;
	}
	while (p < np) {
		e = rd_kafka_query_watermark_offsets(j->rk, j->st.topic, p, &lo, &hi, 10000);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
			j->st.floors[p++] = hi;
			continue;
		}
		if (sw_mono_ms() >= deadline) {
			snprintf(errstr, errlen, "kafka: end offsets of %s [%d]: %s", j->st.topic,
				 (int)p, rd_kafka_err2str(e));
			goto out;
		}
		usleep(20 * 1000); /* e.g. not the leader yet: ask again */
	}
	rc = 0;
out:
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	return rc;
}

static int save(struct job *j, char *errstr, size_t errlen)
{
	if (j->o->state == NULL)
		return 0;
	j->state_dirty = 0;
	j->last_state_ms = sw_mono_ms();
	return replay_state_save(j->o->state, &j->st, errstr, errlen);
}

/* Serve delivery reports (waiting up to ms), release, and save the state
 * and report progress when due. 0 or -1 (the state could not be saved). */
static int tick(struct job *j, int ms, char *errstr, size_t errlen)
{
	int64_t now;

	rd_kafka_poll(j->rk, ms);
	release(j);
	now = sw_mono_ms();
	if (j->state_dirty && now - j->last_state_ms >= STATE_EVERY_MS &&
	    save(j, errstr, errlen) == -1)
		return -1;
	if (now - j->last_progress_ms >= (j->o->progress_ms > 0 ? j->o->progress_ms : 1000)) {
		j->last_progress_ms = now;
		report(j, 0);
	}
	return 0;
}

/* Append the decimal v to p (no NUL); the end. snprintf costs a good part
 * of a small message's time here. */
static char *put_dec(char *p, int64_t v)
{
	char tmp[24];
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	int n = 0;

	if (v < 0)
		*p++ = '-';
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

/* Produce one event, taking it over (*it is NULL after, whatever the
 * outcome); waits while the queue or the window is full. The event's bytes
 * are not copied: the slot holds the item until its delivery report. */
static int produce(struct job *j, struct replay_item **itp, char *errstr, size_t errlen)
{
	/* "ID/SEQ TOPIC/PARTITION/OFFSET" (the id is 36, the topic < 256) */
	char hv[400], *p;
	struct replay_item *it = *itp;
	rd_kafka_resp_err_t e;
	struct slot *s;
	size_t tl;

	while (j->tail - j->head >= RING)
		if (tick(j, 10, errstr, errlen) == -1)
			goto fail;
	p = hv;
	if (j->o->mark) {
		memcpy(hv, j->st.id, 36);
		hv[36] = '/';
		p = put_dec(hv + 37, (int64_t)it->seq);
		*p++ = ' ';
		tl = strlen(it->topic);
		memcpy(p, it->topic, tl);
		p += tl;
		*p++ = '/';
		p = put_dec(p, it->partition);
		*p++ = '/';
		p = put_dec(p, it->offset);
	}
	s = &j->ring[j->tail % RING];
	s->item = it;
	*itp = NULL;
	s->seq = it->seq;
	s->state = SLOT_SENT;
	s->partition = -1;
	s->offset = -1;
	for (;;) {
		if (j->o->mark) /* a header costs librdkafka an allocation per message */
			e = rd_kafka_producev(
			    j->rk, RD_KAFKA_V_TOPIC(j->st.topic),
			    RD_KAFKA_V_KEY(it->key_len ? it->data : NULL, it->key_len),
			    RD_KAFKA_V_VALUE((void *)(it->data + it->key_len), it->len),
			    RD_KAFKA_V_HEADER(SW_REPLAY_HDR, hv, (ssize_t)(p - hv)),
			    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)j->tail), RD_KAFKA_V_END);
		else
			e = rd_kafka_producev(
			    j->rk, RD_KAFKA_V_TOPIC(j->st.topic),
			    RD_KAFKA_V_KEY(it->key_len ? it->data : NULL, it->key_len),
			    RD_KAFKA_V_VALUE((void *)(it->data + it->key_len), it->len),
			    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)j->tail), RD_KAFKA_V_END);
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		if (tick(j, 10, errstr, errlen) == -1)
			break;
	}
	if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		goto unslot; /* tick failed: errstr says why */
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errlen, "kafka: producing seq %" PRIu64 " to %s: %s", it->seq,
			 j->st.topic, rd_kafka_err2str(e));
		goto unslot;
	}
	j->tail++;
	j->pr.sent++;
	return 0;
unslot: /* not produced: the slot past tail is not in the window */
	s->item = NULL;
fail:
	free(it);
	*itp = NULL;
	return -1;
}

/* Hold back to the rate: wait until sent / elapsed <= rate. */
static int pace(struct job *j, char *errstr, size_t errlen)
{
	for (;;) {
		double due = (double)j->pr.sent / j->o->rate;
		double el = (double)(sw_mono_ns() - j->t0_ns) / 1e9;
		int ms;

		if (el >= due)
			return 0;
		ms = (int)((due - el) * 1000) + 1;
		if (tick(j, ms < 100 ? ms : 100, errstr, errlen) == -1)
			return -1;
	}
}

/* The second pass: produce what the reader hands over (everything
 * selected above acked_seq, up to end_seq, not found in the topic). */
static enum sw_replay_rc pass_publish(struct job *j, struct replay_reader *r, char *errstr,
				      size_t errlen)
{
	struct replay_group *g;
	uint64_t n = 0;
	size_t i;
	int got;

	for (;;) {
		if (j->o->stop != NULL && *j->o->stop)
			return SW_REPLAY_STOPPED;
		if (j->dr_err[0] != '\0')
			return SW_REPLAY_OK; /* sw_replay_publish reports it */
		if ((got = replay_reader_next(r, 50, &g)) == -1)
			return SW_REPLAY_OK; /* the reader is done: how, it tells */
		if (got == 0) {
			if (tick(j, 0, errstr, errlen) == -1)
				return SW_REPLAY_FAIL;
			continue;
		}
		for (i = 0; i < g->n && g->items[i]->seq <= j->st.end_seq; i++) {
			if (j->o->stop != NULL && *j->o->stop)
				break;
			if ((j->o->rate > 0 && pace(j, errstr, errlen) == -1) ||
			    produce(j, &g->items[i], errstr, errlen) == -1) {
				replay_group_free(g);
				return SW_REPLAY_FAIL;
			}
			j->scanned = j->ring[(j->tail - 1) % RING].seq;
			if ((++n & 63) == 0 && tick(j, 0, errstr, errlen) == -1) {
				replay_group_free(g);
				return SW_REPLAY_FAIL;
			}
		}
		if (i == g->n) { /* all of it sent: what it looked at is done */
			j->pr.found += g->found;
			j->pr.done += g->found;
			j->st.done += g->found;
			j->scanned = g->scanned < j->st.end_seq ? g->scanned : j->st.end_seq;
		}
		replay_group_free(g);
	}
}

/* Wait for every report (or FLUSH_MS), release and save. */
static int drain(struct job *j, char *errstr, size_t errlen)
{
	int64_t deadline = sw_mono_ms() + FLUSH_MS;

	while (j->head < j->tail && sw_mono_ms() < deadline) {
		if (tick(j, 50, errstr, errlen) == -1)
			return -1;
		if (j->dr_err[0] != '\0' && rd_kafka_outq_len(j->rk) == 0)
			break;
	}
	release(j);
	if (j->head < j->tail && j->dr_err[0] == '\0') {
		snprintf(j->dr_err, sizeof(j->dr_err), "no delivery report within %d s",
			 FLUSH_MS / 1000);
		j->dr_err_seq = j->ring[j->head % RING].seq;
	}
	return save(j, errstr, errlen);
}

static enum sw_replay_rc check_opts(const struct sw_replay_opts *o, char *errstr, size_t errlen)
{
	struct stat sb;

	if (o->log_dir == NULL || o->bootstrap == NULL || o->bootstrap[0] == '\0' ||
	    o->topic == NULL) {
		snprintf(errstr, errlen, "a log directory, Kafka bootstrap servers and a target "
					 "topic are needed");
		return SW_REPLAY_REFUSED;
	}
	if (stat(o->log_dir, &sb) != 0) {
		snprintf(errstr, errlen, "no audit log at %s: %s", o->log_dir, strerror(errno));
		return SW_REPLAY_FAIL;
	}
	if (!S_ISDIR(sb.st_mode)) {
		snprintf(errstr, errlen, "no audit log at %s: not a directory", o->log_dir);
		return SW_REPLAY_FAIL;
	}
	if (!topic_valid(o->topic)) {
		snprintf(errstr, errlen,
			 "'%.60s' is not a Kafka topic name (1-249 of [a-zA-Z0-9._-])", o->topic);
		return SW_REPLAY_REFUSED;
	}
	if (sw_replay_topic_is_live(o->topic) && !o->into_live) {
		snprintf(errstr, errlen,
			 "refusing to publish into the live topic %s: every service consuming it "
			 "would receive these events again and act on any it does not recognise "
			 "by event id as seen (dispatch steps, finish runs); publish to another "
			 "topic, or pass --into-live if that is what you want",
			 o->topic);
		return SW_REPLAY_REFUSED;
	}
	if (o->rate < 0) {
		snprintf(errstr, errlen, "the rate must not be negative");
		return SW_REPLAY_REFUSED;
	}
	return SW_REPLAY_OK;
}

enum sw_replay_rc sw_replay_publish(const struct sw_replay_opts *o, struct sw_replay_progress *out,
				    char *errstr, size_t errlen)
{
	struct replay_state want = {0};
	struct replay_reader *reader = NULL;
	struct replay_check chk;
	enum replay_phase ph;
	struct job j;
	enum sw_replay_rc rc, rrc;
	char why[512], rerr[512];
	int loaded = 0;

	memset(&j, 0, sizeof(j));
	j.o = o;
	j.t0_ns = sw_mono_ns();
	if ((rc = check_opts(o, errstr, errlen)) != SW_REPLAY_OK)
		return rc;
	rc = SW_REPLAY_FAIL;
	if (replay_state_from_opts(&want, o, errstr, errlen) == -1)
		return SW_REPLAY_FAIL;
	if (o->state != NULL &&
	    (loaded = replay_state_load(o->state, &j.st, errstr, errlen)) == -1)
		goto out;
	if (loaded && replay_state_match(&j.st, &want, why, sizeof(why)) == -1) {
		snprintf(errstr, errlen,
			 "the state file %s is of another replay job: %s; give another --state "
			 "file (or remove it to start this job afresh)",
			 o->state, why);
		rc = SW_REPLAY_REFUSED;
		goto out;
	}
	if (!loaded) {
		j.st = want;
		memset(&want, 0, sizeof(want));
		sw_uuid_v7_str(j.st.id);
	}
	snprintf(j.pr.replay_id, sizeof(j.pr.replay_id), "%s", j.st.id);
	if ((j.reg = sw_events_registry_new(errstr, errlen)) == NULL)
		goto out;
	if (replay_hdrs_init(&j.hdrs, j.reg) == -1) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	if (loaded && j.st.complete) { /* done before: check the log is still its log */
		if ((rc = pass_count(&j, loaded, errstr, errlen)) == SW_REPLAY_OK) {
			j.counted = 1;
			j.pr.done = j.pr.resumed;
			j.scanned = j.st.end_seq;
		}
		goto out;
	}
	/* the reader checks the log, holding the selection, while we wait */
	if (loaded && replay_resume_scan(o, &j.st, &j.hdrs, j.reg, &j.found, &j.nfound, errstr,
					 errlen) == -1)
		goto out;
	if ((reader = replay_reader_start(o->log_dir, &j.st, loaded, j.found, j.nfound,
					  o->hold_bytes ? o->hold_bytes : REPLAY_HOLD, errstr,
					  errlen)) == NULL)
		goto out;
	/* the producer connects meanwhile (it touches no topic before the log
	 * is found sound) */
	if ((j.ring = calloc(RING, sizeof(*j.ring))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	if ((j.rk = producer_new(&j, errstr, errlen)) == NULL)
		goto out;
	while ((ph = replay_reader_wait(reader, 100, &chk, &rc, errstr, errlen)) == R_READING) {
		if (o->stop != NULL && *o->stop) {
			rc = SW_REPLAY_STOPPED;
			goto out;
		}
	}
	if (ph == R_FAILED)
		goto out;
	if (ph == R_AT_END) { /* checked and counted in one pass */
		if (!loaded) {
			j.st.end_seq = chk.end_seq;
			memcpy(j.st.end_hash, chk.end_hash, SW_ALOG_HASH);
		}
		j.pr.total = chk.total;
		j.pr.resumed = chk.resumed;
		j.pr.end_seq = j.st.end_seq;
	} else { /* more than it holds: check the whole log here first */
		if ((rc = pass_count(&j, loaded, errstr, errlen)) != SW_REPLAY_OK)
			goto out;
		replay_reader_set_end(reader, j.st.end_seq);
	}
	rc = SW_REPLAY_FAIL;
	j.counted = 1;
	j.pr.done = j.pr.resumed;
	j.st.done = j.pr.resumed;
	if (!loaded && (floors_init(&j, errstr, errlen) == -1 || save(&j, errstr, errlen) == -1))
		goto out;
	j.scanned = j.st.acked_seq;
	j.t0_ns = sw_mono_ns();
	report(&j, 0);
	j.last_progress_ms = sw_mono_ms();
	rc = pass_publish(&j, reader, errstr, errlen);
	rrc = replay_reader_stop(reader, rerr, sizeof(rerr));
	reader = NULL;
	if (rc == SW_REPLAY_OK && (rrc == SW_REPLAY_FAIL || rrc == SW_REPLAY_BROKEN)) {
		snprintf(errstr, errlen, "%s", rerr);
		rc = rrc;
	}
	/* after a failure errstr holds its reason: a drain error goes to why */
	if (rc == SW_REPLAY_OK) {
		if (drain(&j, errstr, errlen) == -1)
			rc = SW_REPLAY_FAIL;
	} else {
		(void)drain(&j, why, sizeof(why));
	}
	if (rc == SW_REPLAY_OK && j.dr_err[0] != '\0') {
		snprintf(errstr, errlen,
			 "kafka: delivery of seq %" PRIu64 " to %s failed: %s; the state holds "
			 "what was acknowledged: rerun with the same --state to go on",
			 j.dr_err_seq, j.st.topic, j.dr_err);
		rc = SW_REPLAY_FAIL;
	}
	if (rc == SW_REPLAY_OK && j.st.acked_seq >= j.st.end_seq) {
		j.st.complete = 1;
		if (save(&j, errstr, errlen) == -1)
			rc = SW_REPLAY_FAIL;
	}
out:
	if (reader != NULL)
		(void)replay_reader_stop(reader, NULL, 0);
	if (j.rk != NULL) {
		rd_kafka_flush(j.rk, 1000); /* only after a failure is anything left */
		rd_kafka_destroy(j.rk);
	}
	for (; j.ring != NULL && j.head < j.tail; j.head++) /* never reported */
		free(j.ring[j.head % RING].item);
	if (j.counted) /* the first pass went through: the counts mean something */
		report(&j, 1);
	if (out != NULL)
		*out = j.pr;
	free(j.found);
	free(j.ring);
	replay_hdrs_free(&j.hdrs);
	sw_events_registry_destroy(j.reg);
	replay_state_free(&j.st);
	replay_state_free(&want);
	return rc;
}
