/*
 * redact.c: the secret redactor of sw_redact.h.
 *
 * Each secret owns one sodium_malloc'd arena holding its value and every
 * pattern derived from it, made read-only once built. The set keeps one
 * array of all patterns sorted by first byte, longest first, with a table
 * of where each first byte's run starts: at a position, only the patterns
 * starting with that byte are tried, and the first that matches is the
 * longest.
 *
 * One scanner serves the one-shot and the streaming forms: it decides a
 * position only once the bytes it has are enough to know the longest
 * pattern there (all of them at the end of input), so a stream that
 * stops at the first undecided position and resumes with more bytes
 * makes the same decisions as one pass over the whole input.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "sw_redact.h"

#define MARK_PREFIX "[REDACTED:"

struct pattern {
	const unsigned char *p; /* in its secret's arena */
	size_t len;
	size_t secret; /* index into secrets: whose marker replaces it */
};

struct secret {
	char *marker; /* "[REDACTED:KEY]" (malloc'd; not secret) */
	size_t markerlen;
	unsigned char *arena; /* sodium_malloc'd: the value and its patterns */
};

struct sw_redact {
	struct secret *secrets;
	size_t nsecrets;
	struct pattern *pats; /* by first byte, then longest first */
	size_t npats;
	size_t first[257]; /* pats[first[b]..first[b + 1]) start with byte b */
	size_t maxlen;     /* longest pattern */
};

struct sw_redact_stream {
	const struct sw_redact *r;
	unsigned char *buf; /* sodium_malloc'd, 2 * maxlen: held-back bytes first */
	size_t hold;        /* bytes held back, buf[0..hold) */
	size_t span;        /* bytes from buf[0] on inside a marked span */
	size_t last;        /* the secret whose marker was written last */
	size_t hits;
	int spent; /* an append to out failed */
};

/* ---- building patterns -------------------------------------------------- */

/* The new secret's patterns while sw_redact_add builds them. */
struct build {
	const struct sw_redact *r;
	unsigned char *arena;
	size_t off; /* next pattern is written at arena + off */
	struct pattern pats[24];
	size_t npats;
};

static int same(const struct pattern *p, const unsigned char *s, size_t len)
{
	return p->len == len && memcmp(p->p, s, len) == 0;
}

/* Keep the pattern just written at arena + off, unless some secret (this
 * one included) has it already. */
static void commit(struct build *b, size_t len)
{
	const unsigned char *s = b->arena + b->off;
	const struct sw_redact *r = b->r;
	size_t i;

	if (len < SW_REDACT_MIN)
		return;
	for (i = r->first[s[0]]; i < r->first[s[0] + 1]; i++)
		if (same(&r->pats[i], s, len))
			return;
	for (i = 0; i < b->npats; i++)
		if (same(&b->pats[i], s, len))
			return;
	b->pats[b->npats].p = s;
	b->pats[b->npats].len = len;
	b->pats[b->npats].secret = r->nsecrets;
	b->npats++;
	b->off += len;
}

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* Percent-encoding (RFC 3986 unreserved kept), space as '+' when plus. */
static size_t pct_encode(unsigned char *o, const unsigned char *v, size_t n, const char *hex,
			 int plus)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if (unreserved(v[i])) {
			o[k++] = v[i];
		} else if (plus && v[i] == ' ') {
			o[k++] = '+';
		} else {
			o[k++] = '%';
			o[k++] = (unsigned char)hex[v[i] >> 4];
			o[k++] = (unsigned char)hex[v[i] & 15];
		}
	}
	return k;
}

/* The inside of a JSON string as encoders write it: \" \\ \b \f \n \r \t,
 * other control bytes \u00XX; everything else as is. */
static size_t json_escape(unsigned char *o, const unsigned char *v, size_t n, const char *hex)
{
	static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
	const char *e;
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if ((e = memchr(from, v[i], sizeof(from) - 1)) != NULL) {
			o[k++] = '\\';
			o[k++] = (unsigned char)to[e - from];
		} else if (v[i] < 0x20) {
			memcpy(o + k, "\\u00", 4);
			k += 4;
			o[k++] = (unsigned char)hex[v[i] >> 4];
			o[k++] = (unsigned char)hex[v[i] & 15];
		} else {
			o[k++] = v[i];
		}
	}
	return k;
}

/*
 * The base64 patterns of v[0..n) in one alphabet: the whole encoding,
 * padded and not, and for v at byte offset a (0, 1, 2) of a longer text
 * the characters whose 6 bits all come from v: from ceil(8a / 6) to
 * floor(8(a + n) / 6). tmp has room for n + 2 bytes and their encoding.
 */
static void base64_patterns(struct build *b, const unsigned char *v, size_t n, int urlsafe,
			    unsigned char *tmp)
{
	int pad = urlsafe ? sodium_base64_VARIANT_URLSAFE : sodium_base64_VARIANT_ORIGINAL;
	int nopad = urlsafe ? sodium_base64_VARIANT_URLSAFE_NO_PADDING
			    : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
	char *enc = (char *)tmp + n + 2;
	size_t a, from, to, elen = sodium_base64_ENCODED_LEN(n + 2, pad);

	sodium_bin2base64((char *)b->arena + b->off, elen, v, n, pad);
	commit(b, strlen((char *)b->arena + b->off));
	sodium_bin2base64((char *)b->arena + b->off, elen, v, n, nopad);
	commit(b, strlen((char *)b->arena + b->off));
	for (a = 0; a < 3; a++) {
		memset(tmp, 0, a);
		memcpy(tmp + a, v, n);
		sodium_bin2base64(enc, elen, tmp, a + n, nopad);
		from = (8 * a + 5) / 6;
		to = 8 * (a + n) / 6;
		memcpy(b->arena + b->off, enc + from, to - from);
		commit(b, to - from);
	}
}

/* Bytes the arena of an n-byte value needs: each pattern's room (and a
 * NUL some encoders write), then the scratch of base64_patterns. */
static size_t arena_size(size_t n)
{
	size_t enc = sodium_base64_ENCODED_LEN(n + 2, sodium_base64_VARIANT_ORIGINAL);

	return n + 2 * (2 * n + 1) + 4 * (3 * n) + 2 * (6 * n) + 10 * enc + (n + 2) + enc;
}

/* Every pattern of v[0..n) into b (whose arena is arena_size(n) bytes). */
static void build_patterns(struct build *b, const unsigned char *v, size_t n)
{
	static const char upper[] = "0123456789ABCDEF", lower[] = "0123456789abcdef";
	unsigned char *tmp;
	size_t i;

	memcpy(b->arena, v, n);
	commit(b, n);
	sodium_bin2hex((char *)b->arena + b->off, 2 * n + 1, v, n);
	commit(b, 2 * n);
	sodium_bin2hex((char *)b->arena + b->off, 2 * n + 1, v, n);
	for (i = 0; i < 2 * n; i++)
		if (b->arena[b->off + i] >= 'a')
			b->arena[b->off + i] -= 'a' - 'A';
	commit(b, 2 * n);
	commit(b, pct_encode(b->arena + b->off, v, n, upper, 0));
	commit(b, pct_encode(b->arena + b->off, v, n, lower, 0));
	commit(b, pct_encode(b->arena + b->off, v, n, upper, 1));
	commit(b, pct_encode(b->arena + b->off, v, n, lower, 1));
	commit(b, json_escape(b->arena + b->off, v, n, upper));
	commit(b, json_escape(b->arena + b->off, v, n, lower));
	tmp = b->arena + arena_size(n) - (n + 2) -
	      sodium_base64_ENCODED_LEN(n + 2, sodium_base64_VARIANT_ORIGINAL);
	base64_patterns(b, v, n, 0, tmp);
	base64_patterns(b, v, n, 1, tmp);
	sodium_memzero(b->arena + b->off, arena_size(n) - b->off);
}

static int key_ok(const char *key, size_t *len)
{
	size_t i;

	if (key == NULL)
		return 0;
	for (i = 0; key[i] != '\0'; i++)
		if (i >= SW_REDACT_KEY_MAX || key[i] < 0x20 || key[i] > 0x7e || key[i] == ']')
			return 0;
	*len = i;
	return i > 0;
}

/* A pattern spelled inside a marker would be in the output of every
 * redaction: refuse the new secret (its patterns in b, its marker m) if
 * any of its patterns is inside any marker or its marker holds an older
 * secret's pattern. */
static int markers_clash(const struct sw_redact *r, const struct build *b, const char *m,
			 size_t mlen, const char *key, char *errstr, size_t errlen)
{
	size_t i, j;

	for (i = 0; i < b->npats; i++) {
		if (memmem(m, mlen, b->pats[i].p, b->pats[i].len) != NULL) {
			snprintf(errstr, errlen, "%s: the value is spelled in its own marker", key);
			return 1;
		}
		for (j = 0; j < r->nsecrets; j++) {
			if (memmem(r->secrets[j].marker, r->secrets[j].markerlen, b->pats[i].p,
				   b->pats[i].len) != NULL) {
				snprintf(errstr, errlen, "%s: the value is spelled in the marker %s",
					 key, r->secrets[j].marker);
				return 1;
			}
		}
	}
	for (i = 0; i < r->npats; i++) {
		if (memmem(m, mlen, r->pats[i].p, r->pats[i].len) != NULL) {
			snprintf(errstr, errlen, "%s: its marker spells the value of %s", key,
				 r->secrets[r->pats[i].secret].marker);
			return 1;
		}
	}
	return 0;
}

static int pattern_order(const void *x, const void *y)
{
	const struct pattern *a = x, *b = y;

	if (a->p[0] != b->p[0])
		return a->p[0] < b->p[0] ? -1 : 1;
	if (a->len != b->len)
		return a->len > b->len ? -1 : 1;
	return (a->secret > b->secret) - (a->secret < b->secret);
}

static void index_patterns(struct sw_redact *r)
{
	size_t i, b;

	qsort(r->pats, r->npats, sizeof(*r->pats), pattern_order);
	memset(r->first, 0, sizeof(r->first));
	for (i = 0; i < r->npats; i++)
		r->first[r->pats[i].p[0] + 1]++;
	for (b = 1; b < 257; b++)
		r->first[b] += r->first[b - 1];
	r->maxlen = 0;
	for (i = 0; i < r->npats; i++)
		if (r->pats[i].len > r->maxlen)
			r->maxlen = r->pats[i].len;
}

struct sw_redact *sw_redact_new(void)
{
	if (sodium_init() < 0)
		return NULL;
	return calloc(1, sizeof(struct sw_redact));
}

int sw_redact_add(struct sw_redact *r, const char *key, const void *value, size_t len,
		  char *errstr, size_t errlen)
{
	struct build b = {.r = r};
	struct secret *ns;
	struct pattern *np;
	char *marker = NULL;
	size_t klen, mlen, i;

	if (!key_ok(key, &klen)) {
		snprintf(errstr, errlen, "bad key: 1 to %d printable bytes, no ']'",
			 SW_REDACT_KEY_MAX);
		return -1;
	}
	if (len < SW_REDACT_MIN) {
		snprintf(errstr, errlen,
			 "%s: a value shorter than %d bytes cannot be redacted (it would "
			 "match everywhere)",
			 key, SW_REDACT_MIN);
		return -1;
	}
	if (len > SW_REDACT_MAX) {
		snprintf(errstr, errlen, "%s: a value longer than %d bytes", key, SW_REDACT_MAX);
		return -1;
	}
	mlen = strlen(MARK_PREFIX) + klen + 1;
	if ((marker = malloc(mlen + 1)) == NULL ||
	    (b.arena = sodium_malloc(arena_size(len))) == NULL)
		goto oom;
	snprintf(marker, mlen + 1, "%s%s]", MARK_PREFIX, key);
	build_patterns(&b, value, len);
	if (markers_clash(r, &b, marker, mlen, key, errstr, errlen))
		goto fail;
	if ((ns = realloc(r->secrets, (r->nsecrets + 1) * sizeof(*ns))) == NULL)
		goto oom;
	r->secrets = ns;
	if ((np = realloc(r->pats, (r->npats + b.npats + 1) * sizeof(*np))) == NULL)
		goto oom;
	r->pats = np;
	sodium_mprotect_readonly(b.arena);
	ns[r->nsecrets].marker = marker;
	ns[r->nsecrets].markerlen = mlen;
	ns[r->nsecrets].arena = b.arena;
	r->nsecrets++;
	for (i = 0; i < b.npats; i++)
		r->pats[r->npats++] = b.pats[i];
	index_patterns(r);
	return 0;
oom:
	snprintf(errstr, errlen, "%s: out of memory", key);
fail:
	sodium_free(b.arena);
	free(marker);
	return -1;
}

size_t sw_redact_count(const struct sw_redact *r)
{
	return r->nsecrets;
}

size_t sw_redact_maxlen(const struct sw_redact *r)
{
	return r->maxlen;
}

void sw_redact_destroy(struct sw_redact *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nsecrets; i++) {
		sodium_free(r->secrets[i].arena); /* wipes, munlocks */
		free(r->secrets[i].marker);
	}
	free(r->secrets);
	free(r->pats);
	free(r);
}

/* ---- matching ----------------------------------------------------------- */

#define NONE ((size_t)-1)
#define UNDECIDED ((size_t)-2)

/* The longest pattern starting at b[0] (avail >= 1 bytes known): its
 * index, NONE, or UNDECIDED when, short of eof, the bytes to come could
 * still complete a pattern longer than any that matches now. */
static size_t longest(const struct sw_redact *r, const unsigned char *b, size_t avail, int eof)
{
	size_t i, end = r->first[b[0] + 1];

	for (i = r->first[b[0]]; i < end; i++) {
		const struct pattern *p = &r->pats[i];

		if (p->len > avail) {
			if (!eof && memcmp(b + 1, p->p + 1, avail - 1) == 0)
				return UNDECIDED;
			continue;
		}
		if (memcmp(b + 1, p->p + 1, p->len - 1) == 0)
			return i;
	}
	return NONE;
}

/*
 * Decide the positions *pos..limit of buf[0..n) in order, appending the
 * released bytes and markers to out: stops early at the first position
 * that cannot be decided yet (never when eof), leaving *pos there. *span
 * counts the bytes from *pos on that lie inside a marked span: a pattern
 * starting inside one that reaches beyond it extends it, adding its own
 * marker when its secret is not the one *last names (so "ababab" for
 * "abab" is one marker). 0, or -1 when out refused an append.
 */
static int scan(const struct sw_redact *r, const unsigned char *buf, size_t n, size_t *pos,
		size_t limit, int eof, size_t *span, size_t *last, size_t *hits,
		struct sw_buf *out)
{
	size_t i, lit = *pos, m, k;

	for (i = *pos; i < limit; i++) {
		if ((m = longest(r, buf + i, n - i, eof)) == UNDECIDED)
			break;
		if (m != NONE && r->pats[m].len > *span) {
			k = r->pats[m].secret;
			if (*span == 0 || k != *last) {
				if (sw_buf_add(out, buf + lit, i - lit) == -1 ||
				    sw_buf_add(out, r->secrets[k].marker,
					       r->secrets[k].markerlen) == -1)
					return -1;
				(*hits)++;
				*last = k;
			}
			*span = r->pats[m].len;
		}
		if (*span > 0) {
			(*span)--;
			lit = i + 1;
		}
	}
	*pos = i;
	return lit < i ? sw_buf_add(out, buf + lit, i - lit) : 0;
}

char *sw_redact_buf(const struct sw_redact *r, const void *buf, size_t len, size_t *outlen,
		    size_t *hits)
{
	struct sw_buf out;
	size_t pos = 0, span = 0, last = 0, h = 0;

	sw_buf_init(&out, 0);
	if (sw_buf_add(&out, "", 0) == -1 ||
	    scan(r, buf, len, &pos, len, 1, &span, &last, &h, &out) == -1) {
		sw_buf_free(&out);
		return NULL;
	}
	if (hits != NULL)
		*hits += h;
	return sw_buf_steal(&out, outlen);
}

int sw_redact_find(const struct sw_redact *r, const void *buf, size_t len, size_t *off,
		   size_t *mlen, char *key, size_t keylen)
{
	const unsigned char *b = buf;
	size_t i, m;

	for (i = 0; i < len; i++) {
		if (r->first[b[i]] == r->first[b[i] + 1])
			continue;
		if ((m = longest(r, b + i, len - i, 1)) == NONE)
			continue;
		*off = i;
		if (mlen != NULL)
			*mlen = r->pats[m].len;
		if (key != NULL && keylen > 0) {
			const struct secret *s = &r->secrets[r->pats[m].secret];
			size_t n = s->markerlen - strlen(MARK_PREFIX) - 1;

			if (n >= keylen)
				n = keylen - 1;
			memcpy(key, s->marker + strlen(MARK_PREFIX), n);
			key[n] = '\0';
		}
		return 1;
	}
	return 0;
}

/* ---- JSON --------------------------------------------------------------- */

/* Redact s[0..n) (valid UTF-8), then drop the bytes a cut through a
 * character left that start no valid sequence: they sit at the edges of
 * the released runs, next to a marker, so dropping them joins no two runs. */
static char *redact_utf8(const struct sw_redact *r, const char *s, size_t n, size_t *outlen,
			 size_t *hits)
{
	unsigned char *o;
	size_t i = 0, k = 0, len, q;

	if ((o = (unsigned char *)sw_redact_buf(r, s, n, &len, hits)) == NULL)
		return NULL;
	while (i < len) {
		if ((q = sw_utf8_seq(o + i, len - i)) == 0) {
			i++;
			continue;
		}
		memmove(o + k, o + i, q);
		i += q;
		k += q;
	}
	o[k] = '\0';
	*outlen = k;
	return (char *)o;
}

/* A string, number, true, false or null: v itself when no pattern is in
 * its text, else a string of the redacted text. */
static json_t *redact_scalar(const struct sw_redact *r, json_t *v, size_t *hits)
{
	const char *text;
	char *dump = NULL, *red;
	size_t n, h = 0;
	json_t *res;

	if (json_is_string(v)) {
		text = json_string_value(v);
		n = json_string_length(v);
	} else {
		if ((dump = json_dumps(v, JSON_ENCODE_ANY)) == NULL)
			return NULL;
		text = dump;
		n = strlen(dump);
	}
	red = redact_utf8(r, text, n, &n, &h);
	free(dump);
	if (red == NULL)
		return NULL;
	if (h == 0) {
		free(red);
		return json_incref(v);
	}
	res = json_stringn(red, n);
	free(red);
	if (res != NULL && hits != NULL)
		*hits += h;
	return res;
}

json_t *sw_redact_json(const struct sw_redact *r, json_t *v, size_t *hits)
{
	json_t *res, *val, *nv;
	const char *key;
	char *nk;
	size_t klen, nklen, i, h = 0;
	int changed = 0;

	if (v == NULL)
		return NULL;
	if (json_is_object(v)) {
		if ((res = json_object()) == NULL)
			return NULL;
		json_object_keylen_foreach(v, key, klen, val)
		{
			if ((nk = redact_utf8(r, key, klen, &nklen, &h)) == NULL)
				goto fail;
			nv = sw_redact_json(r, val, &h);
			changed |= nv != val || nklen != klen || memcmp(nk, key, klen) != 0;
			if (nv == NULL || json_object_setn_new(res, nk, nklen, nv) == -1) {
				free(nk);
				goto fail;
			}
			free(nk);
		}
	} else if (json_is_array(v)) {
		if ((res = json_array()) == NULL)
			return NULL;
		json_array_foreach(v, i, val)
		{
			nv = sw_redact_json(r, val, &h);
			changed |= nv != val;
			if (nv == NULL || json_array_append_new(res, nv) == -1)
				goto fail;
		}
	} else {
		return redact_scalar(r, v, hits);
	}
	if (!changed) {
		json_decref(res);
		return json_incref(v);
	}
	if (hits != NULL)
		*hits += h;
	return res;
fail:
	json_decref(res);
	return NULL;
}

/* ---- streams ------------------------------------------------------------ */

struct sw_redact_stream *sw_redact_stream_new(const struct sw_redact *r)
{
	struct sw_redact_stream *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->r = r;
	if ((s->buf = sodium_malloc(2 * r->maxlen + 1)) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

/*
 * The held-back bytes need the chunk's first bytes to be decided: they
 * are scanned in buf with up to maxlen bytes of the chunk behind them,
 * enough to decide every one of them unless the chunk is shorter (then
 * all of it is in buf, and what stays undecided is held again). The rest
 * is scanned in the chunk itself, and its undecided tail copied to buf.
 */
int sw_redact_stream_feed(struct sw_redact_stream *s, const void *chunk, size_t len,
			  struct sw_buf *out)
{
	const unsigned char *c = chunk;
	size_t m, k, pos = 0;

	if (s->spent)
		return -1;
	if (len == 0)
		return 0; /* nothing to decide (chunk may be NULL) */
	if (s->hold > 0) {
		m = len < s->r->maxlen ? len : s->r->maxlen;
		memcpy(s->buf + s->hold, c, m);
		k = s->hold + m;
		if (scan(s->r, s->buf, k, &pos, s->hold, 0, &s->span, &s->last, &s->hits, out) ==
		    -1)
			goto spent;
		if (pos < s->hold) { /* then m == len: keep it all */
			memmove(s->buf, s->buf + pos, k - pos);
			s->hold = k - pos;
			return 0;
		}
		s->hold = 0;
		pos = 0;
	}
	if (scan(s->r, c, len, &pos, len, 0, &s->span, &s->last, &s->hits, out) == -1)
		goto spent;
	memcpy(s->buf, c + pos, len - pos);
	s->hold = len - pos;
	return 0;
spent:
	s->spent = 1;
	return -1;
}

int sw_redact_stream_flush(struct sw_redact_stream *s, struct sw_buf *out)
{
	size_t pos = 0;
	int rc;

	if (s->spent)
		return -1;
	rc = scan(s->r, s->buf, s->hold, &pos, s->hold, 1, &s->span, &s->last, &s->hits, out);
	sodium_memzero(s->buf, s->hold);
	s->hold = 0;
	s->span = 0;
	if (rc == -1)
		s->spent = 1;
	return rc;
}

size_t sw_redact_stream_hits(const struct sw_redact_stream *s)
{
	return s->hits;
}

void sw_redact_stream_destroy(struct sw_redact_stream *s)
{
	if (s == NULL)
		return;
	sodium_free(s->buf); /* wipes */
	free(s);
}
