/*
 * alog_check.c: sw_alog_check, the whole check of a log: sw_alog_verify's
 * pass with a visitor that checks every checkpoint record's signature (its
 * Merkle root rebuilt from the records it covers) and notes the log's hash
 * at the seqs published checkpoints name, then the published checkpoints
 * against the log. See sw_alog.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "alog_int.h"

/* What the log holds at a seq a published checkpoint names. */
struct want {
	uint64_t seq;
	uint8_t hash[SW_ALOG_HASH]; /* the log's chain hash at seq */
	int have;		    /* the log reached seq */
	int next_seen;		    /* the log reached seq + 1 */
	int next_cp;		    /* record seq + 1 is a checkpoint... */
	uint8_t next_sig[SW_ALOG_SIG]; /* ...with this signature */
};

struct chk {
	const struct sw_alog_check_opts *o;
	struct sw_alog_check_result *res;
	struct sw_alog_mtree tree; /* records since the last checkpoint record */
	uint64_t prev_seq;	   /* what the last checkpoint record covered */
	uint8_t prev_hash[SW_ALOG_HASH];
	int have_log_id;
	uint64_t first_cp; /* seq of the first checkpoint record, 0: none */
	struct want *w;	   /* by seq, unique */
	size_t nw, wi;
};

static int visit_cp(struct chk *c, const struct sw_alog_rec *rec, struct sw_alog_checkpoint *cp,
		    char *why, size_t whylen)
{
	char e[200];

	if (sw_alog_checkpoint_parse(rec->payload, rec->payload_len, cp) != 0) {
		snprintf(why, whylen, "checkpoint: malformed key id field");
		return -1;
	}
	if (c->first_cp == 0)
		c->first_cp = rec->seq;
	if (cp->seq + 1 != rec->seq) {
		snprintf(why, whylen,
			 "checkpoint covers seq %" PRIu64 ", not the record just before it", cp->seq);
		return -1;
	}
	if (memcmp(cp->hash, c->prev_hash, SW_ALOG_HASH) != 0) {
		snprintf(why, whylen, "checkpoint hash does not match the chain at seq %" PRIu64,
			 cp->seq);
		return -1;
	}
	if (rec->topic_len == 0 || rec->topic_len > SW_ALOG_LOG_ID_MAX) {
		snprintf(why, whylen, "checkpoint names no well-formed log id");
		return -1;
	}
	memcpy(cp->log_id, rec->topic, rec->topic_len);
	cp->log_id[rec->topic_len] = '\0';
	if (!sw_alog_id_ok(cp->log_id, SW_ALOG_LOG_ID_MAX)) {
		snprintf(why, whylen, "checkpoint names no well-formed log id");
		return -1;
	}
	if (c->have_log_id && strcmp(cp->log_id, c->res->log_id) != 0) {
		snprintf(why, whylen, "checkpoint names log '%s', but %s '%s'", cp->log_id,
			 c->o->log_id ? "the log checked is" : "the log's earlier ones name",
			 c->res->log_id);
		return -1;
	}
	if (!c->have_log_id) {
		snprintf(c->res->log_id, sizeof(c->res->log_id), "%s", cp->log_id);
		c->have_log_id = 1;
	}
	if (rec->partition != -1 || rec->offset < 0 || (uint64_t)rec->offset != c->prev_seq) {
		snprintf(why, whylen,
			 "checkpoint says the one before it covered seq %lld, but that covered "
			 "seq %" PRIu64 " (a checkpoint was removed or moved)",
			 (long long)rec->offset, c->prev_seq);
		return -1;
	}
	cp->prev_seq = c->prev_seq;
	cp->time_us = rec->time_us;
	if (sw_alog_mtree_root(&c->tree, cp->root) != 0) {
		snprintf(why, whylen, "checkpoint covers no record");
		return -1;
	}
	if (c->o->keys == NULL) {
		c->res->unsigned_cps++;
	} else if (sw_alog_checkpoint_verify(c->o->keys, cp, e, sizeof(e)) != 0) {
		snprintf(why, whylen, "checkpoint of records %" PRIu64 "..%" PRIu64 ": %s",
			 cp->prev_seq + 1, cp->seq, e);
		return -1;
	} else {
		c->res->signed_ok++;
		c->res->covered_seq = cp->seq;
	}
	c->prev_seq = cp->seq;
	sw_alog_mtree_init(&c->tree);
	return 0;
}

static int visit(const struct sw_alog_rec *rec, void *opaque, char *why, size_t whylen)
{
	struct chk *c = opaque;
	struct sw_alog_checkpoint cp;
	int is_cp = rec->kind == SW_ALOG_CHECKPOINT;

	memset(&cp, 0, sizeof(cp));
	if (is_cp && visit_cp(c, rec, &cp, why, whylen) != 0)
		return 1;
	sw_alog_mtree_add(&c->tree, rec->hash);
	while (c->wi < c->nw && c->w[c->wi].seq + 1 < rec->seq)
		c->wi++;
	if (c->wi < c->nw && c->w[c->wi].seq + 1 == rec->seq) {
		struct want *w = &c->w[c->wi++];

		w->next_seen = 1;
		w->next_cp = is_cp;
		if (is_cp)
			memcpy(w->next_sig, cp.sig, SW_ALOG_SIG);
	}
	if (c->wi < c->nw && c->w[c->wi].seq == rec->seq) {
		memcpy(c->w[c->wi].hash, rec->hash, SW_ALOG_HASH);
		c->w[c->wi].have = 1;
	}
	memcpy(c->prev_hash, rec->hash, SW_ALOG_HASH);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Make the published checkpoints' seqs the wanted list (sorted, unique). */
static int wants(struct chk *c)
{
	uint64_t *seqs;
	size_t i, n = 0;

	if (c->o->npublished == 0)
		return 0;
	if ((seqs = malloc(c->o->npublished * sizeof(*seqs))) == NULL)
		return -1;
	for (i = 0; i < c->o->npublished; i++)
		if (c->o->published[i].seq > 0)
			seqs[n++] = c->o->published[i].seq;
	qsort(seqs, n, sizeof(*seqs), cmp_u64);
	if ((c->w = calloc(n ? n : 1, sizeof(*c->w))) == NULL) {
		free(seqs);
		return -1;
	}
	for (i = 0; i < n; i++)
		if (c->nw == 0 || c->w[c->nw - 1].seq != seqs[i])
			c->w[c->nw++].seq = seqs[i];
	free(seqs);
	return 0;
}

static const struct want *want_of(const struct chk *c, uint64_t seq)
{
	size_t a = 0, b = c->nw;

	while (a < b) {
		size_t m = a + (b - a) / 2;

		if (c->w[m].seq < seq)
			a = m + 1;
		else
			b = m;
	}
	return a < c->nw && c->w[a].seq == seq ? &c->w[a] : NULL;
}

/* The first bad record the published checkpoints show, if lower than
 * what res holds already (a tie keeps the log's own, more precise reason). */
static void bad_at(struct sw_alog_check_result *res, uint64_t seq, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void bad_at(struct sw_alog_check_result *res, uint64_t seq, const char *fmt, ...)
{
	va_list ap;

	if (!res->v.ok && res->v.bad_seq <= seq)
		return;
	res->v.ok = 0;
	res->v.bad_seq = seq;
	res->v.segment = 0; /* no place in a file */
	res->v.file_off = 0;
	if (res->v.records >= seq)
		res->v.records = seq - 1;
	va_start(ap, fmt);
	vsnprintf(res->v.reason, sizeof(res->v.reason), fmt, ap);
	va_end(ap);
}

static int cmp_cp(const void *a, const void *b)
{
	const struct sw_alog_checkpoint *x = *(const struct sw_alog_checkpoint *const *)a;
	const struct sw_alog_checkpoint *y = *(const struct sw_alog_checkpoint *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The last seq known sound before seq: what a published checkpoint that
 * matched covered (its record included), or a good signed checkpoint
 * record of the log itself. */
static uint64_t anchor(const struct sw_alog_check_result *res, uint64_t matched, uint64_t seq)
{
	uint64_t own = res->covered_seq > 0 ? res->covered_seq + 1 : 0;

	return own < seq && own > matched ? own : matched;
}

/* A signing time for people: "2026-01-02T03:04:05.123456Z". */
static const char *when(int64_t us, char out[40])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	if (us < 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, 40, "%lld us", (long long)us);
		return out;
	}
	snprintf(out + strlen(out), 40 - strlen(out), ".%06dZ", (int)(us % 1000000));
	return out;
}

/* The published checkpoints of the log against it. */
static int published(struct chk *c, char *errstr, size_t errlen)
{
	const struct sw_alog_check_opts *o = c->o;
	struct sw_alog_check_result *res = c->res;
	const struct sw_alog_checkpoint **mine;
	uint64_t last = res->v.records, matched = 0, first_unsigned = 0;
	uint64_t log_bad = res->v.bad_seq;
	int log_ok = res->v.ok;
	char e[200], tb[40], log_why[sizeof(res->v.reason)];
	size_t i, n = 0;

	memcpy(log_why, res->v.reason, sizeof(log_why));

	if (o->npublished == 0)
		return 0;
	if (res->log_id[0] == '\0') {
		/* a log without checkpoints: the published ones must name one log */
		for (i = 0; i < o->npublished; i++) {
			if (res->log_id[0] == '\0')
				snprintf(res->log_id, sizeof(res->log_id), "%s",
					 o->published[i].log_id);
			else if (strcmp(res->log_id, o->published[i].log_id) != 0) {
				alog_err(errstr, errlen,
					 "the log holds no checkpoint naming its log id, and the "
					 "published checkpoints name several logs ('%s', '%s', ...): "
					 "say which log this is",
					 res->log_id, o->published[i].log_id);
				return -1;
			}
		}
	}
	if ((mine = calloc(o->npublished, sizeof(*mine))) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < o->npublished; i++) {
		if (strcmp(o->published[i].log_id, res->log_id) == 0)
			mine[n++] = &o->published[i];
		else
			res->published_other++;
	}
	qsort(mine, n, sizeof(*mine), cmp_cp);
	res->published = n;
	for (i = 0; i < n; i++) {
		const struct sw_alog_checkpoint *cp = mine[i];
		const struct want *w = want_of(c, cp->seq);

		if (o->keys == NULL) {
			res->unsigned_cps++;
			if (first_unsigned == 0)
				first_unsigned = cp->seq + 1;
			continue;
		}
		if (cp->seq == 0 || sw_alog_checkpoint_verify(o->keys, cp, e, sizeof(e)) != 0) {
			bad_at(res, cp->seq + 1,
			       "published checkpoint of records %" PRIu64 "..%" PRIu64
			       " (signed %s): %s",
			       cp->prev_seq + 1, cp->seq, when(cp->time_us, tb),
			       cp->seq == 0 ? "covers no record" : e);
			continue;
		}
		if (cp->seq > res->published_max)
			res->published_max = cp->seq;
		if (!log_ok && cp->seq + 1 >= log_bad) {
			/* the log is bad at log_bad and this checkpoint saw it sound up
			 * to seq + 1. A bad record of the chain itself (hash, seq,
			 * prev) is where the damage is; a checkpoint that no longer
			 * fits is only where a rewritten chain shows it: the change
			 * lies between the last sound point and there. */
			uint64_t from = anchor(res, matched, cp->seq);

			if (from + 1 < log_bad && strncmp(log_why, "checkpoint", 10) == 0)
				bad_at(res, from + 1,
				       "records %" PRIu64 "..%" PRIu64 " differ from what the "
				       "checkpoint published %s covered: a record there was "
				       "changed, inserted, reordered or deleted (at %" PRIu64
				       ": %.60s)",
				       from + 1, log_bad, when(cp->time_us, tb), log_bad, log_why);
			continue;
		}
		if (w == NULL || !w->have || cp->seq + 1 > last) {
			bad_at(res, last + 1,
			       "the log ends at seq %" PRIu64 ", but a checkpoint published %s "
			       "(key '%s') was written as record %" PRIu64
			       ": records %" PRIu64 "..%" PRIu64 " were deleted",
			       last, when(cp->time_us, tb), cp->key_id, cp->seq + 1, last + 1,
			       cp->seq + 1);
			continue;
		}
		if (memcmp(w->hash, cp->hash, SW_ALOG_HASH) != 0) {
			uint64_t from = anchor(res, matched, cp->seq);

			bad_at(res, from + 1,
			       "the chain at seq %" PRIu64 " differs from the checkpoint published "
			       "%s: a record in %" PRIu64 "..%" PRIu64
			       " was changed, inserted, reordered or deleted and the chain "
			       "rewritten",
			       cp->seq, when(cp->time_us, tb), from + 1, cp->seq);
			continue;
		}
		if (!w->next_seen || !w->next_cp ||
		    memcmp(w->next_sig, cp->sig, SW_ALOG_SIG) != 0) {
			bad_at(res, cp->seq + 1,
			       "record %" PRIu64 " is not the checkpoint published %s: the log "
			       "was changed there",
			       cp->seq + 1, when(cp->time_us, tb));
			continue;
		}
		res->published_ok++;
		matched = cp->seq + 1; /* the checkpoint record itself checked too */
	}
	free(mine);
	if (first_unsigned != 0 && (c->first_cp == 0 || first_unsigned < c->first_cp))
		c->first_cp = first_unsigned;
	return 0;
}

int sw_alog_check(const char *dir, const struct sw_alog_check_opts *opts,
		  struct sw_alog_check_result *res, char *errstr, size_t errlen)
{
	struct chk c = {.o = opts, .res = res};
	int ret = -1;

	memset(res, 0, sizeof(*res));
	if (opts->log_id != NULL) {
		if (!sw_alog_id_ok(opts->log_id, SW_ALOG_LOG_ID_MAX)) {
			alog_err(errstr, errlen, "log id '%.80s' is not well-formed", opts->log_id);
			return -1;
		}
		snprintf(res->log_id, sizeof(res->log_id), "%s", opts->log_id);
		c.have_log_id = 1;
	}
	sw_alog_mtree_init(&c.tree);
	if (wants(&c) != 0) {
		alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	if (alog_verify_visit(dir, opts->threads, visit, &c, &res->v, errstr, errlen) != 0)
		goto out;
	res->last_seq = res->v.records;
	if (published(&c, errstr, errlen) != 0)
		goto out;
	if (opts->keys == NULL && res->unsigned_cps > 0)
		bad_at(res, c.first_cp ? c.first_cp : 1,
		       "cannot check %" PRIu64 " checkpoint signatures: no public keys given",
		       res->unsigned_cps);
	ret = 0;
out:
	free(c.w);
	return ret;
}
