/*
 * alog_format.c: the on-disk layout of sw_alog (see sw_alog.h), shared by
 * the writer, the readers and verify.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sodium.h>

#include "alog_int.h"

void alog_err(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

void alog_seg_name(char out[ALOG_SEG_NAME], uint64_t first)
{
	snprintf(out, ALOG_SEG_NAME, "seg-%020" PRIu64 ".swlog", first);
}

/* Strictly "seg-" + 20 digits + ".swlog"; anything else is not ours. */
static int seg_parse(const char *name, uint64_t *first)
{
	uint64_t v = 0;
	int i;

	if (strlen(name) != 30 || memcmp(name, "seg-", 4) != 0 ||
	    strcmp(name + 24, ".swlog") != 0)
		return -1;
	for (i = 4; i < 24; i++) {
		unsigned d;

		if (name[i] < '0' || name[i] > '9')
			return -1;
		d = (unsigned)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*first = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int list_dir(DIR *d, const char *dir, uint64_t **firsts, size_t *n, char *errstr,
		    size_t errlen);

int alog_list(const char *dir, uint64_t **firsts, size_t *n, char *errstr, size_t errlen)
{
	DIR *d;

	*firsts = NULL;
	*n = 0;
	if ((d = opendir(dir)) == NULL) {
		alog_err(errstr, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	return list_dir(d, dir, firsts, n, errstr, errlen);
}

int alog_list_fd(int dfd, uint64_t **firsts, size_t *n, char *errstr, size_t errlen)
{
	DIR *d;

	*firsts = NULL;
	*n = 0;
	if ((d = fdopendir(dfd)) == NULL) {
		alog_err(errstr, errlen, "log directory: %s", strerror(errno));
		close(dfd);
		return -1;
	}
	rewinddir(d);
	return list_dir(d, "log directory", firsts, n, errstr, errlen);
}

static int list_dir(DIR *d, const char *dir, uint64_t **firsts, size_t *n, char *errstr,
		    size_t errlen)
{
	uint64_t *v = NULL, *nv;
	size_t len = 0, cap = 0;
	struct dirent *de;

	errno = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t first;

		if (seg_parse(de->d_name, &first) != 0)
			continue;
		if (len == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				alog_err(errstr, errlen, "out of memory");
				goto fail;
			}
			v = nv;
		}
		v[len++] = first;
	}
	if (errno != 0) {
		alog_err(errstr, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	closedir(d);
	if (len > 1)
		qsort(v, len, sizeof(*v), cmp_u64);
	*firsts = v;
	*n = len;
	return 0;
fail:
	closedir(d);
	free(v);
	return -1;
}

void alog_hdr_build(uint8_t h[ALOG_HDR], uint64_t first, const uint8_t prev[SW_ALOG_HASH])
{
	memset(h, 0, ALOG_HDR);
	memcpy(h, ALOG_MAGIC, 8);
	alog_put64(h + 8, first);
	memcpy(h + 16, prev, SW_ALOG_HASH);
}

int alog_hdr_check(const uint8_t h[ALOG_HDR], uint64_t name_first, char *why, size_t whylen)
{
	int i;

	if (memcmp(h, ALOG_MAGIC, 8) != 0) {
		alog_err(why, whylen, "segment header: bad magic");
		return -1;
	}
	if (alog_hdr_first(h) != name_first) {
		alog_err(why, whylen,
			 "segment header: first seq %" PRIu64 " does not match the file name",
			 alog_hdr_first(h));
		return -1;
	}
	if (name_first == 0) {
		alog_err(why, whylen, "segment header: first seq 0");
		return -1;
	}
	for (i = 48; i < ALOG_HDR; i++) {
		if (h[i] != 0) {
			alog_err(why, whylen, "segment header: reserved bytes are not zero");
			return -1;
		}
	}
	return 0;
}

void alog_rec_hash(const uint8_t *p, uint32_t len, uint8_t out[SW_ALOG_HASH])
{
	crypto_generichash(out, SW_ALOG_HASH, p, (unsigned long long)ALOG_REC_HEAD + len, NULL,
			   0);
}

enum alog_rc alog_rec_view(const uint8_t *p, size_t avail, int check_hash, struct alog_view *v)
{
	uint8_t h[SW_ALOG_HASH];

	memset(v, 0, sizeof(*v));
	if (avail < 4)
		return ALOG_PARTIAL;
	v->len = alog_get32(p);
	if (v->len > SW_ALOG_MAX_RECORD || v->len < ALOG_BODY_MIN)
		return ALOG_BADLEN;
	v->size = (size_t)ALOG_REC_OVER + v->len;
	if (avail >= 12)
		v->seq = alog_get64(p + 4);
	if (avail < v->size)
		return ALOG_PARTIAL;
	v->prev = p + 12;
	v->body = p + ALOG_REC_HEAD;
	v->hash = p + ALOG_REC_HEAD + v->len;
	if (check_hash) {
		alog_rec_hash(p, v->len, h);
		if (sodium_memcmp(h, v->hash, SW_ALOG_HASH) != 0)
			return ALOG_BADHASH;
	}
	return ALOG_OK;
}

int alog_body_parse(const uint8_t *body, size_t len, struct sw_alog_rec *rec, char *why,
		    size_t whylen)
{
	size_t tl, at;

	if (len < ALOG_BODY_MIN) {
		alog_err(why, whylen, "malformed body: %zu bytes, below the minimum", len);
		return -1;
	}
	rec->kind = body[0];
	if (rec->kind < SW_ALOG_EVENT || rec->kind > SW_ALOG_CHECKPOINT) {
		alog_err(why, whylen, "malformed body: unknown kind %u", rec->kind);
		return -1;
	}
	tl = alog_get16(body + 1);
	if (tl > len - ALOG_BODY_MIN) {
		alog_err(why, whylen, "malformed body: topic length %zu exceeds the body", tl);
		return -1;
	}
	rec->topic = (const char *)body + 3;
	rec->topic_len = tl;
	at = 3 + tl;
	rec->partition = (int32_t)alog_get32(body + at);
	rec->offset = (int64_t)alog_get64(body + at + 4);
	rec->time_us = (int64_t)alog_get64(body + at + 12);
	at += 20;
	rec->payload = body + at;
	rec->payload_len = len - at;
	if (rec->kind == SW_ALOG_CHECKPOINT && rec->payload_len != SW_ALOG_CHECKPOINT_LEN) {
		alog_err(why, whylen, "malformed checkpoint: payload of %zu bytes, not %d",
			 rec->payload_len, SW_ALOG_CHECKPOINT_LEN);
		return -1;
	}
	return 0;
}

int alog_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

ssize_t alog_pread_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(fd, p + got, len - got, off + (off_t)got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}
