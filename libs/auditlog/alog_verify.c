/*
 * alog_verify.c: offline verification of a whole log.
 *
 * Every record stores its predecessor's hash, so each record's hash depends
 * only on its own bytes and all checks but one are independent per record:
 * its seq against its index, its prev against the stored hash just before
 * it, its stored hash against BLAKE2b of its bytes, its body. Per segment
 * (mapped read-only) one thread walks the lengths to find the records, then
 * the threads check chunks of records in parallel, and the first bad record
 * is the lowest bad index. What must run in order, in one thread, is
 * cheap: the length walk and the checkpoint hook. A checkpoint naming a seq
 * in an earlier segment is resolved at the end, from that segment.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "alog_int.h"

#define MAX_THREADS 64
#define PAR_MIN 256 /* fewer records than this: one thread */
#define CHUNK 256   /* records a thread takes at a time */
#define NONE SIZE_MAX

struct vseg {
	int fd;
	const uint8_t *p;
	size_t size;
	uint64_t first;
	uint64_t *offs; /* offsets of the records found by the walk */
	size_t n, cap;
	size_t walk_off; /* where the walk stopped on a bad length, else NONE */
	char walk_why[200];
};

struct vslice {
	const struct vseg *s;
	size_t lo, hi;
	size_t bad; /* first bad index in [lo, hi), else NONE */
	char why[200];
};

struct deferred {
	uint64_t cp_seq; /* the seq the checkpoint names */
	uint8_t cp_hash[SW_ALOG_HASH];
	uint64_t seq, segment, off; /* the checkpoint record itself */
	uint8_t prev[SW_ALOG_HASH];
};

struct verify {
	const char *dir;
	int dfd; /* the log directory */
	uint64_t *firsts;
	size_t nseg;
	struct deferred *def;
	size_t ndef, capdef;
	alog_visit_fn visit; /* may be NULL */
	void *visit_opaque;
};

static const uint8_t *rec_hash_at(const struct vseg *s, size_t k)
{
	const uint8_t *p = s->p + s->offs[k];

	return p + ALOG_REC_HEAD + alog_get32(p);
}

static void seg_unmap(struct vseg *s)
{
	if (s->p != NULL)
		munmap((void *)s->p, s->size);
	if (s->fd >= 0)
		close(s->fd);
	s->p = NULL;
	s->fd = -1;
	s->n = 0;
}

/* Map segment "first"; -1 with errno on failure (a short file maps fine). */
static int seg_map(struct verify *vf, struct vseg *s, uint64_t first)
{
	char name[ALOG_SEG_NAME];
	struct stat st;
	void *p;

	seg_unmap(s);
	s->first = first;
	s->size = 0;
	alog_seg_name(name, first);
	if ((s->fd = openat(vf->dfd, name, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(s->fd, &st) != 0)
		return -1;
	s->size = (size_t)st.st_size;
	if (s->size < ALOG_HDR)
		return 0;
	p = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
	if (p == MAP_FAILED)
		return -1;
	s->p = p;
	madvise(p, s->size, MADV_SEQUENTIAL | MADV_WILLNEED);
	return 0;
}

/* Find the records of a mapped segment by their lengths. Stops at the first
 * length that is out of range or runs past the end (walk_off, walk_why). */
static int seg_walk(struct vseg *s)
{
	size_t off = ALOG_HDR;

	s->n = 0;
	s->walk_off = NONE;
	while (off < s->size) {
		size_t left = s->size - off;
		uint32_t len;

		if (left < ALOG_REC_HEAD) {
			snprintf(s->walk_why, sizeof(s->walk_why),
				 "truncated record: %zu bytes left, less than a record header",
				 left);
			s->walk_off = off;
			return 0;
		}
		len = alog_get32(s->p + off);
		if (len > SW_ALOG_MAX_RECORD)
			snprintf(s->walk_why, sizeof(s->walk_why),
				 "record length %" PRIu32 " exceeds the maximum of %u", len,
				 SW_ALOG_MAX_RECORD);
		else if (len < ALOG_BODY_MIN)
			snprintf(s->walk_why, sizeof(s->walk_why),
				 "record length %" PRIu32 " is below the minimum body of %d", len,
				 ALOG_BODY_MIN);
		else if ((size_t)ALOG_REC_OVER + len > left)
			snprintf(s->walk_why, sizeof(s->walk_why),
				 "record length %" PRIu32
				 " runs %zu bytes past the end of the file",
				 len, (size_t)ALOG_REC_OVER + len - left);
		else
			s->walk_why[0] = '\0';
		if (s->walk_why[0] != '\0') {
			s->walk_off = off;
			return 0;
		}
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 4096;
			uint64_t *no = realloc(s->offs, cap * sizeof(*no));

			if (no == NULL)
				return -1;
			s->offs = no;
			s->cap = cap;
		}
		s->offs[s->n++] = off;
		off += (size_t)ALOG_REC_OVER + len;
	}
	return 0;
}

/* Check records [lo, hi) of a walked segment; everything but the checkpoint
 * hook and checkpoints naming an earlier segment. */
static void check_slice(struct vslice *w)
{
	const struct vseg *s = w->s;
	struct sw_alog_rec rec;
	uint8_t h[SW_ALOG_HASH];
	size_t k;

	for (k = w->lo; k < w->hi; k++) {
		const uint8_t *p = s->p + s->offs[k];
		const uint8_t *prev = k == 0 ? alog_hdr_prev(s->p) : rec_hash_at(s, k - 1);
		uint32_t len = alog_get32(p);
		uint64_t seq = alog_get64(p + 4), expect = s->first + k;

		if (seq != expect) {
			snprintf(w->why, sizeof(w->why),
				 "sequence %s: expected %" PRIu64 ", found %" PRIu64,
				 alog_seq_word(expect, seq), expect, seq);
			goto bad;
		}
		if (memcmp(p + 12, prev, SW_ALOG_HASH) != 0) {
			snprintf(w->why, sizeof(w->why), "prev hash does not chain");
			goto bad;
		}
		alog_rec_hash(p, len, h);
		if (memcmp(h, p + ALOG_REC_HEAD + len, SW_ALOG_HASH) != 0) {
			/* A corrupt length misplaces the next record too: say so. */
			size_t next = s->offs[k] + ALOG_REC_OVER + len;

			if (next < s->size &&
			    (s->size - next < 12 || alog_get64(s->p + next + 4) != seq + 1))
				snprintf(w->why, sizeof(w->why),
					 "hash mismatch (length %" PRIu32 " does not lead to the "
					 "next record: corrupt length?)",
					 len);
			else
				snprintf(w->why, sizeof(w->why), "hash mismatch");
			goto bad;
		}
		if (alog_body_parse(p + ALOG_REC_HEAD, len, &rec, w->why, sizeof(w->why)) != 0)
			goto bad;
		if (rec.kind == SW_ALOG_CHECKPOINT) {
			uint64_t cp = alog_get64(rec.payload);

			if (cp == 0 || cp >= seq) {
				snprintf(w->why, sizeof(w->why),
					 "checkpoint names seq %" PRIu64 ", not an earlier record",
					 cp);
				goto bad;
			}
			if (cp >= s->first &&
			    memcmp(rec_hash_at(s, cp - s->first), (const uint8_t *)rec.payload + 8,
				   SW_ALOG_HASH) != 0) {
				snprintf(w->why, sizeof(w->why),
					 "checkpoint hash does not match the chain at seq "
					 "%" PRIu64,
					 cp);
				goto bad;
			}
		}
	}
	w->bad = NONE;
	return;
bad:
	w->bad = k;
}

/* One segment's check shared by the threads: they take chunks of CHUNK
 * records in order from `next`, so a thread the scheduler holds back delays
 * no more than its chunk; chunks after the first bad one are skipped. */
struct vjob {
	const struct vseg *s;
	size_t nchunks;
	atomic_size_t next;
	atomic_size_t bad_chunk; /* lowest chunk holding a bad record, else NONE */
	pthread_mutex_t mu;	 /* guards bad and why */
	size_t bad;
	char why[200];
};

static void *job_run(void *arg)
{
	struct vjob *j = arg;
	struct vslice w;
	size_t c;

	w.s = j->s;
	while ((c = atomic_fetch_add(&j->next, 1)) < j->nchunks &&
	       c < atomic_load(&j->bad_chunk)) {
		w.lo = c * CHUNK;
		w.hi = w.lo + CHUNK < j->s->n ? w.lo + CHUNK : j->s->n;
		check_slice(&w);
		if (w.bad == NONE)
			continue;
		pthread_mutex_lock(&j->mu);
		if (c < atomic_load(&j->bad_chunk)) {
			atomic_store(&j->bad_chunk, c);
			j->bad = w.bad;
			memcpy(j->why, w.why, sizeof(j->why));
		}
		pthread_mutex_unlock(&j->mu);
	}
	return NULL;
}

/* First bad index of a walked segment (NONE if all check), in parallel. */
static size_t check_segment(const struct vseg *s, int threads, char *why, size_t whylen)
{
	pthread_t t[MAX_THREADS];
	struct vjob j = {.s = s, .bad = NONE};
	int i, nt = s->n < PAR_MIN ? 1 : threads, started = 0;

	j.nchunks = (s->n + CHUNK - 1) / CHUNK;
	atomic_init(&j.next, 0);
	atomic_init(&j.bad_chunk, NONE);
	pthread_mutex_init(&j.mu, NULL);
	for (i = 1; i < nt && pthread_create(&t[i], NULL, job_run, &j) == 0; i++)
		started = i;
	job_run(&j); /* with whatever threads could start */
	for (i = 1; i <= started; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&j.mu);
	if (j.bad != NONE)
		snprintf(why, whylen, "%s", j.why);
	return j.bad;
}

static void set_bad(struct sw_alog_verify_result *res, uint64_t seq, uint64_t segment,
		    uint64_t off, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_bad(struct sw_alog_verify_result *res, uint64_t seq, uint64_t segment,
		    uint64_t off, const char *fmt, ...)
{
	va_list ap;

	res->ok = 0;
	res->bad_seq = seq;
	res->segment = segment;
	res->file_off = off;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

/* In log order over the records [0, upto) that checked: count checkpoints,
 * call the signature hook and the visitor, remember checkpoints naming an
 * earlier segment. Returns the index of a record the hook or the visitor
 * rejected (its reason in why), else NONE (also on a memory failure,
 * which sets *oom). */
static size_t checkpoints(struct verify *vf, const struct vseg *s, size_t upto,
			  sw_alog_checkpoint_cb cb, void *opaque,
			  struct sw_alog_verify_result *res, int *oom, char *why, size_t whylen)
{
	struct sw_alog_rec rec;
	size_t k;

	for (k = 0; k < upto; k++) {
		const uint8_t *p = s->p + s->offs[k];
		const uint8_t *pl;
		uint64_t cp;

		if (p[ALOG_REC_HEAD] != SW_ALOG_CHECKPOINT && vf->visit == NULL)
			continue;
		if (alog_body_parse(p + ALOG_REC_HEAD, alog_get32(p), &rec, why, whylen) != 0)
			continue; /* cannot happen: check_slice passed it */
		rec.seq = alog_get64(p + 4);
		memcpy(rec.hash, rec_hash_at(s, k), SW_ALOG_HASH);
		rec.segment = s->first;
		rec.file_off = s->offs[k];
		if (vf->visit != NULL && vf->visit(&rec, vf->visit_opaque, why, whylen) != 0)
			return k;
		if (rec.kind != SW_ALOG_CHECKPOINT)
			continue;
		res->checkpoints++;
		pl = rec.payload;
		cp = alog_get64(pl);
		if (cp < s->first) {
			struct deferred *d;

			if (vf->ndef == vf->capdef) {
				size_t cap = vf->capdef ? vf->capdef * 2 : 64;

				if ((d = realloc(vf->def, cap * sizeof(*d))) == NULL) {
					*oom = 1;
					return NONE;
				}
				vf->def = d;
				vf->capdef = cap;
			}
			d = &vf->def[vf->ndef++];
			d->cp_seq = cp;
			memcpy(d->cp_hash, pl + 8, SW_ALOG_HASH);
			d->seq = rec.seq;
			d->segment = s->first;
			d->off = s->offs[k];
			memcpy(d->prev, p + 12, SW_ALOG_HASH);
		}
		if (cb != NULL && cb(&rec, cp, pl + 8, pl + 40, pl + 72, opaque) != 0) {
			snprintf(why, whylen, "checkpoint signature rejected");
			return k;
		}
	}
	return NONE;
}

static int cmp_def(const void *a, const void *b)
{
	const struct deferred *x = a, *y = b;

	return x->cp_seq < y->cp_seq ? -1 : x->cp_seq > y->cp_seq;
}

/* Check the checkpoints that name a seq in an earlier segment; those
 * segments checked already, so their stored hashes are the chain's. The
 * earliest failing checkpoint (if before the current first bad record)
 * becomes the first bad record. */
static int resolve_deferred(struct verify *vf, struct sw_alog_verify_result *res)
{
	struct vseg s = {.fd = -1};
	struct deferred *bad = NULL;
	size_t i, j;

	qsort(vf->def, vf->ndef, sizeof(*vf->def), cmp_def);
	for (i = 0; i < vf->ndef; i++) {
		struct deferred *d = &vf->def[i];
		size_t a = 0, b = vf->nseg;

		while (b - a > 1) { /* last segment with first <= cp_seq */
			size_t m = a + (b - a) / 2;

			if (vf->firsts[m] <= d->cp_seq)
				a = m;
			else
				b = m;
		}
		if (s.p == NULL || s.first != vf->firsts[a]) {
			if (seg_map(vf, &s, vf->firsts[a]) != 0 || s.p == NULL ||
			    seg_walk(&s) != 0)
				goto fail;
		}
		j = d->cp_seq - s.first;
		if (d->cp_seq < s.first || j >= s.n ||
		    memcmp(rec_hash_at(&s, j), d->cp_hash, SW_ALOG_HASH) != 0) {
			if (bad == NULL || d->seq < bad->seq)
				bad = d;
		}
	}
	seg_unmap(&s);
	free(s.offs);
	if (bad != NULL && (res->ok || bad->seq < res->bad_seq)) {
		set_bad(res, bad->seq, bad->segment, bad->off,
			"checkpoint hash does not match the chain at seq %" PRIu64, bad->cp_seq);
		res->records = bad->seq - 1;
		memcpy(res->last_hash, bad->prev, SW_ALOG_HASH);
	}
	return 0;
fail:
	seg_unmap(&s);
	free(s.offs);
	return -1;
}

/* Check segment i, continuing the chain at (*expect, last); on damage fill
 * res and return 0 with res->ok cleared. -1 with errstr when it cannot be
 * read. */
static int verify_segment(struct verify *vf, struct vseg *s, size_t i, int threads,
			  sw_alog_checkpoint_cb cb, void *opaque, uint64_t *expect,
			  uint8_t last[SW_ALOG_HASH], struct sw_alog_verify_result *res,
			  char *errstr, size_t errlen)
{
	uint64_t first = vf->firsts[i];
	size_t bad, rej, good;
	char why[200], rwhy[200];
	int oom = 0;

	if (seg_map(vf, s, first) != 0) {
		alog_err(errstr, errlen, "segment %" PRIu64 ": %s", first, strerror(errno));
		return -1;
	}
	if (s->size < ALOG_HDR) {
		set_bad(res, first, first, 0, "segment header truncated (%zu bytes)", s->size);
		return 0;
	}
	if (alog_hdr_check(s->p, first, why, sizeof(why)) != 0) {
		set_bad(res, first, first, 0, "%s", why);
		return 0;
	}
	if (first != *expect) {
		set_bad(res, first, first, 0, "sequence %s: expected %" PRIu64 ", found %" PRIu64,
			alog_seq_word(*expect, first), *expect, first);
		return 0;
	}
	if (memcmp(alog_hdr_prev(s->p), last, SW_ALOG_HASH) != 0) {
		set_bad(res, first, first, 0, "segment header prev hash does not chain to %s",
			i == 0 ? "the start of the log (zero)" : "the previous segment");
		return 0;
	}
	if (seg_walk(s) != 0) {
		alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	bad = s->n > 0 ? check_segment(s, threads, why, sizeof(why)) : NONE;
	rej = checkpoints(vf, s, bad == NONE ? s->n : bad, cb, opaque, res, &oom, rwhy,
			  sizeof(rwhy));
	if (oom) {
		alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	if (rej != NONE) {
		bad = rej;
		snprintf(why, sizeof(why), "%s", rwhy);
	}
	good = bad == NONE ? s->n : bad;
	res->records += good;
	if (good > 0)
		memcpy(last, rec_hash_at(s, good - 1), SW_ALOG_HASH);
	*expect = first + good;
	if (bad != NONE)
		set_bad(res, *expect, first, s->offs[bad], "%s", why);
	else if (s->walk_off != NONE)
		set_bad(res, *expect, first, s->walk_off, "%s", s->walk_why);
	return 0;
}

static int verify_run(const char *dir, int threads, sw_alog_checkpoint_cb cb, void *opaque,
		      alog_visit_fn visit, void *visit_opaque, struct sw_alog_verify_result *res,
		      char *errstr, size_t errlen)
{
	struct verify vf = {.dir = dir, .dfd = -1, .visit = visit, .visit_opaque = visit_opaque};
	struct vseg s = {.fd = -1};
	uint8_t last[SW_ALOG_HASH] = {0};
	uint64_t expect = 1;
	int ret = -1;
	size_t i;

	memset(res, 0, sizeof(*res));
	res->ok = 1;
	if (sodium_init() < 0) {
		alog_err(errstr, errlen, "libsodium failed to initialise");
		return -1;
	}
	if (threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (int)n : 1;
	}
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	if (alog_list(dir, &vf.firsts, &vf.nseg, errstr, errlen) != 0)
		return -1;
	if ((vf.dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		alog_err(errstr, errlen, "open %s: %s", dir, strerror(errno));
		goto out;
	}
	for (i = 0; i < vf.nseg && res->ok; i++) {
		if (verify_segment(&vf, &s, i, threads, cb, opaque, &expect, last, res, errstr,
				   errlen) != 0)
			goto out;
	}
	memcpy(res->last_hash, last, SW_ALOG_HASH);
	if (vf.ndef > 0 && resolve_deferred(&vf, res) != 0) {
		alog_err(errstr, errlen, "re-reading a segment for a checkpoint: %s",
			 strerror(errno));
		goto out;
	}
	ret = 0;
out:
	seg_unmap(&s);
	free(s.offs);
	free(vf.def);
	free(vf.firsts);
	if (vf.dfd >= 0)
		close(vf.dfd);
	return ret;
}

int sw_alog_verify_ex(const char *dir, int threads, sw_alog_checkpoint_cb cb, void *opaque,
		      struct sw_alog_verify_result *res, char *errstr, size_t errlen)
{
	return verify_run(dir, threads, cb, opaque, NULL, NULL, res, errstr, errlen);
}

int alog_verify_visit(const char *dir, int threads, alog_visit_fn visit, void *opaque,
		      struct sw_alog_verify_result *res, char *errstr, size_t errlen)
{
	return verify_run(dir, threads, NULL, NULL, visit, opaque, res, errstr, errlen);
}

int sw_alog_verify(const char *dir, int threads, struct sw_alog_verify_result *res,
		   char *errstr, size_t errlen)
{
	return sw_alog_verify_ex(dir, threads, NULL, NULL, res, errstr, errlen);
}
