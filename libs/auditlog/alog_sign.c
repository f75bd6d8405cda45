/*
 * alog_sign.c: signed checkpoints (see sw_alog.h): the key files, the
 * signed bytes, Ed25519 signing and checking, the 4-ary Merkle tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "alog_int.h"

#define CP_DOMAIN "SWALOG-CP1"
#define MT_PERSONAL "SWALOG-MERKLE4-1" /* exactly 16 bytes: BLAKE2b's personal */
#define KEYFILE_MAX 4096
#define KEYS_FILE_MAX (1u << 20)
#define KEYS_MAX 4096

int sw_alog_id_ok(const char *s, size_t max)
{
	size_t n, i;

	if (s == NULL || (n = strlen(s)) == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

/* ---- hex ----------------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly 2 * n hex digits at s (len of them) into out. 0 or -1. */
static int unhex(const char *s, size_t len, uint8_t *out, size_t n)
{
	size_t i;

	if (len != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Split a line into "ID HEX": pointers into line (modified: NULs put in).
 * 0, or -1 when it has not exactly two words. */
static int two_words(char *line, char **id, char **hex)
{
	char *p = line, *save = NULL;

	*id = strtok_r(p, " \t\r", &save);
	*hex = *id ? strtok_r(NULL, " \t\r", &save) : NULL;
	return *id && *hex && strtok_r(NULL, " \t\r", &save) == NULL ? 0 : -1;
}

/* ---- the signed bytes ------------------------------------------------------ */

#define CP_MSG_MAX (10 + 1 + SW_ALOG_LOG_ID_MAX + 8 + 32 + 8 + 32 + 8 + 1 + SW_ALOG_KEY_ID_MAX)

static size_t cp_message(const struct sw_alog_checkpoint *cp, uint8_t out[CP_MSG_MAX])
{
	size_t ll = strlen(cp->log_id), kl = strlen(cp->key_id), at = 0;

	memcpy(out, CP_DOMAIN, 10);
	at = 10;
	out[at++] = (uint8_t)ll;
	memcpy(out + at, cp->log_id, ll);
	at += ll;
	alog_put64(out + at, cp->seq);
	at += 8;
	memcpy(out + at, cp->hash, SW_ALOG_HASH);
	at += SW_ALOG_HASH;
	alog_put64(out + at, cp->prev_seq);
	at += 8;
	memcpy(out + at, cp->root, SW_ALOG_HASH);
	at += SW_ALOG_HASH;
	alog_put64(out + at, (uint64_t)cp->time_us);
	at += 8;
	out[at++] = (uint8_t)kl;
	memcpy(out + at, cp->key_id, kl);
	return at + kl;
}

/* ---- the secret key -------------------------------------------------------- */

struct sw_alog_signer {
	char key_id[SW_ALOG_KEY_ID_MAX + 1];
	uint8_t pk[SW_ALOG_PK];
	uint8_t *sk; /* crypto_sign_SECRETKEYBYTES, sodium_malloc'd */
};

struct sw_alog_signer *sw_alog_signer_load(const char *path, char *errstr, size_t errlen)
{
	struct sw_alog_signer *s = NULL;
	char *buf = NULL, *id, *hex, *nl;
	uint8_t *seed = NULL;
	struct stat st;
	ssize_t n;
	int fd = -1;

	if (sodium_init() < 0) {
		alog_err(errstr, errlen, "libsodium failed to initialise");
		return NULL;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		alog_err(errstr, errlen, "signing key %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		alog_err(errstr, errlen, "signing key %s: not a regular file", path);
		goto fail;
	}
	if (st.st_mode & 077) {
		alog_err(errstr, errlen,
			 "signing key %s: mode %04o lets group or others at it; it must be 0600 "
			 "or 0400 (chmod 600)",
			 path, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_size <= 0 || st.st_size > KEYFILE_MAX) {
		alog_err(errstr, errlen, "signing key %s: %lld bytes, expected one line", path,
			 (long long)st.st_size);
		goto fail;
	}
	buf = sodium_malloc((size_t)st.st_size + 1);
	seed = sodium_malloc(crypto_sign_SEEDBYTES);
	s = calloc(1, sizeof(*s));
	if (buf == NULL || seed == NULL || s == NULL ||
	    (s->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES)) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		goto fail;
	}
	n = alog_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		alog_err(errstr, errlen, "signing key %s: short read", path);
		goto fail;
	}
	buf[n] = '\0';
	if ((nl = strchr(buf, '\n')) != NULL) {
		*nl = '\0';
		if (nl[1] != '\0') {
			alog_err(errstr, errlen, "signing key %s: more than one line", path);
			goto fail;
		}
	}
	if (memchr(buf, '\0', (size_t)(nl ? nl - buf : n)) != NULL ||
	    two_words(buf, &id, &hex) != 0 || !sw_alog_id_ok(id, SW_ALOG_KEY_ID_MAX) ||
	    unhex(hex, strlen(hex), seed, crypto_sign_SEEDBYTES) != 0) {
		alog_err(errstr, errlen,
			 "signing key %s: expected one line \"KEYID HEX\" (a key id of 1-%d "
			 "characters of [A-Za-z0-9._:-], 64 hex digits)",
			 path, SW_ALOG_KEY_ID_MAX);
		goto fail;
	}
	snprintf(s->key_id, sizeof(s->key_id), "%s", id);
	crypto_sign_seed_keypair(s->pk, s->sk, seed);
	sodium_free(seed);
	sodium_free(buf);
	close(fd);
	return s;
fail:
	if (seed != NULL)
		sodium_free(seed);
	if (buf != NULL)
		sodium_free(buf);
	sw_alog_signer_destroy(s);
	close(fd);
	return NULL;
}

void sw_alog_signer_destroy(struct sw_alog_signer *s)
{
	if (s == NULL)
		return;
	if (s->sk != NULL)
		sodium_free(s->sk); /* wipes */
	free(s);
}

const char *sw_alog_signer_key_id(const struct sw_alog_signer *s)
{
	return s->key_id;
}

void sw_alog_signer_public(const struct sw_alog_signer *s, uint8_t pk[SW_ALOG_PK])
{
	memcpy(pk, s->pk, SW_ALOG_PK);
}

int sw_alog_sign(const struct sw_alog_signer *s, struct sw_alog_checkpoint *cp)
{
	uint8_t msg[CP_MSG_MAX];
	size_t n;

	if (!sw_alog_id_ok(cp->log_id, SW_ALOG_LOG_ID_MAX))
		return -1;
	snprintf(cp->key_id, sizeof(cp->key_id), "%s", s->key_id);
	n = cp_message(cp, msg);
	crypto_sign_detached(cp->sig, NULL, msg, n, s->sk);
	return 0;
}

int sw_alog_keygen(const char *key_id, const char *secret_path, uint8_t pk[SW_ALOG_PK],
		   char *errstr, size_t errlen)
{
	uint8_t *sk = NULL, seed[crypto_sign_SEEDBYTES];
	char line[SW_ALOG_KEY_ID_MAX + 2 * crypto_sign_SEEDBYTES + 4];
	int fd = -1, ret = -1;
	size_t n;

	if (sodium_init() < 0) {
		alog_err(errstr, errlen, "libsodium failed to initialise");
		return -1;
	}
	if (!sw_alog_id_ok(key_id, SW_ALOG_KEY_ID_MAX)) {
		alog_err(errstr, errlen,
			 "key id '%.40s': 1-%d characters of [A-Za-z0-9._:-] expected", key_id,
			 SW_ALOG_KEY_ID_MAX);
		return -1;
	}
	if ((sk = sodium_malloc(crypto_sign_SECRETKEYBYTES)) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	if ((fd = open(secret_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) <
	    0) {
		alog_err(errstr, errlen, "%s: %s", secret_path, strerror(errno));
		goto out;
	}
	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	n = (size_t)snprintf(line, sizeof(line), "%s ", key_id);
	tohex(seed, sizeof(seed), line + n);
	n = strlen(line);
	line[n++] = '\n';
	if (fchmod(fd, 0600) != 0 || alog_write_all(fd, line, n) != 0 || fsync(fd) != 0) {
		alog_err(errstr, errlen, "%s: %s", secret_path, strerror(errno));
		unlink(secret_path);
		goto out;
	}
	ret = 0;
out:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(line, sizeof(line));
	sodium_free(sk);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* ---- the public keys ------------------------------------------------------- */

struct alog_key {
	char id[SW_ALOG_KEY_ID_MAX + 1];
	uint8_t pk[SW_ALOG_PK];
};

struct sw_alog_keys {
	struct alog_key *v;
	size_t n, cap;
};

struct sw_alog_keys *sw_alog_keys_new(void)
{
	return calloc(1, sizeof(struct sw_alog_keys));
}

void sw_alog_keys_destroy(struct sw_alog_keys *k)
{
	if (k == NULL)
		return;
	free(k->v);
	free(k);
}

size_t sw_alog_keys_count(const struct sw_alog_keys *k)
{
	return k->n;
}

const char *sw_alog_keys_get(const struct sw_alog_keys *k, size_t i, uint8_t pk[SW_ALOG_PK])
{
	memcpy(pk, k->v[i].pk, SW_ALOG_PK);
	return k->v[i].id;
}

int sw_alog_keys_find(const struct sw_alog_keys *k, const char *key_id, uint8_t pk[SW_ALOG_PK])
{
	size_t i;

	for (i = 0; k != NULL && i < k->n; i++) {
		if (strcmp(k->v[i].id, key_id) == 0) {
			memcpy(pk, k->v[i].pk, SW_ALOG_PK);
			return 0;
		}
	}
	return -1;
}

int sw_alog_keys_add(struct sw_alog_keys *k, const char *key_id, const uint8_t pk[SW_ALOG_PK],
		     char *errstr, size_t errlen)
{
	uint8_t have[SW_ALOG_PK];

	if (!sw_alog_id_ok(key_id, SW_ALOG_KEY_ID_MAX)) {
		alog_err(errstr, errlen, "key id '%.40s': 1-%d characters of [A-Za-z0-9._:-]",
			 key_id, SW_ALOG_KEY_ID_MAX);
		return -1;
	}
	if (sw_alog_keys_find(k, key_id, have) == 0) {
		if (memcmp(have, pk, SW_ALOG_PK) == 0)
			return 0;
		alog_err(errstr, errlen, "key id '%s' is listed with two different keys", key_id);
		return -1;
	}
	if (k->n == KEYS_MAX) {
		alog_err(errstr, errlen, "more than %d keys", KEYS_MAX);
		return -1;
	}
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;
		struct alog_key *nv = realloc(k->v, cap * sizeof(*nv));

		if (nv == NULL) {
			alog_err(errstr, errlen, "out of memory");
			return -1;
		}
		k->v = nv;
		k->cap = cap;
	}
	snprintf(k->v[k->n].id, sizeof(k->v[k->n].id), "%s", key_id);
	memcpy(k->v[k->n].pk, pk, SW_ALOG_PK);
	k->n++;
	return 0;
}

struct sw_alog_keys *sw_alog_keys_parse(const char *text, size_t len, char *errstr, size_t errlen)
{
	struct sw_alog_keys *k = sw_alog_keys_new();
	char *copy = NULL, *line, *id, *hex, e[200];
	uint8_t pk[SW_ALOG_PK];
	unsigned lineno = 0;

	if (k == NULL || (copy = malloc(len + 1)) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		goto fail;
	}
	if (memchr(text, '\0', len) != NULL) {
		alog_err(errstr, errlen, "public keys: a NUL byte");
		goto fail;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	for (line = copy; line != NULL;) {
		char *nl = strchr(line, '\n'), *q;

		lineno++;
		if (nl != NULL)
			*nl = '\0';
		for (q = line; *q == ' ' || *q == '\t' || *q == '\r'; q++)
			;
		if (*q != '\0' && *q != '#') {
			if (two_words(q, &id, &hex) != 0 ||
			    unhex(hex, strlen(hex), pk, SW_ALOG_PK) != 0) {
				alog_err(errstr, errlen,
					 "public keys line %u: expected \"KEYID HEX\" (64 hex digits)",
					 lineno);
				goto fail;
			}
			if (sw_alog_keys_add(k, id, pk, e, sizeof(e)) != 0) {
				alog_err(errstr, errlen, "public keys line %u: %s", lineno, e);
				goto fail;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	free(copy);
	return k;
fail:
	free(copy);
	sw_alog_keys_destroy(k);
	return NULL;
}

struct sw_alog_keys *sw_alog_keys_load(const char *path, char *errstr, size_t errlen)
{
	struct sw_alog_keys *k = NULL;
	struct stat st;
	char *buf = NULL, e[256];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		alog_err(errstr, errlen, "public keys %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > KEYS_FILE_MAX) {
		alog_err(errstr, errlen, "public keys %s: not a regular file of at most %u bytes",
			 path, KEYS_FILE_MAX);
		goto out;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		goto out;
	}
	if ((n = alog_pread_full(fd, buf, (size_t)st.st_size, 0)) < 0) {
		alog_err(errstr, errlen, "public keys %s: %s", path, strerror(errno));
		goto out;
	}
	if ((k = sw_alog_keys_parse(buf, (size_t)n, e, sizeof(e))) == NULL)
		alog_err(errstr, errlen, "%s: %s", path, e);
out:
	free(buf);
	close(fd);
	return k;
}

int sw_alog_checkpoint_verify(const struct sw_alog_keys *k, const struct sw_alog_checkpoint *cp,
			      char *why, size_t whylen)
{
	uint8_t msg[CP_MSG_MAX], pk[SW_ALOG_PK];
	size_t n;

	if (!sw_alog_id_ok(cp->log_id, SW_ALOG_LOG_ID_MAX) ||
	    !sw_alog_id_ok(cp->key_id, SW_ALOG_KEY_ID_MAX)) {
		alog_err(why, whylen, "malformed log id or key id");
		return -1;
	}
	if (sw_alog_keys_find(k, cp->key_id, pk) != 0) {
		alog_err(why, whylen, "signed by unknown key '%s'", cp->key_id);
		return -1;
	}
	n = cp_message(cp, msg);
	if (crypto_sign_verify_detached(cp->sig, msg, n, pk) != 0) {
		alog_err(why, whylen, "signature does not verify with key '%s'", cp->key_id);
		return -1;
	}
	return 0;
}

void sw_alog_checkpoint_payload(const struct sw_alog_checkpoint *cp,
				uint8_t out[SW_ALOG_CHECKPOINT_LEN])
{
	memset(out, 0, SW_ALOG_CHECKPOINT_LEN);
	alog_put64(out, cp->seq);
	memcpy(out + 8, cp->hash, SW_ALOG_HASH);
	memcpy(out + 40, cp->key_id, strnlen(cp->key_id, SW_ALOG_KEY_ID_MAX));
	memcpy(out + 72, cp->sig, SW_ALOG_SIG);
}

int sw_alog_checkpoint_parse(const void *payload, size_t len, struct sw_alog_checkpoint *cp)
{
	const uint8_t *p = payload;
	size_t kl;

	if (len != SW_ALOG_CHECKPOINT_LEN)
		return -1;
	cp->seq = alog_get64(p);
	memcpy(cp->hash, p + 8, SW_ALOG_HASH);
	kl = strnlen((const char *)p + 40, SW_ALOG_KEY_ID_MAX);
	memcpy(cp->key_id, p + 40, kl);
	cp->key_id[kl] = '\0';
	memcpy(cp->sig, p + 72, SW_ALOG_SIG);
	/* NUL padding only after the id */
	for (size_t i = kl; i < SW_ALOG_KEY_ID_MAX; i++)
		if (p[40 + i] != 0)
			return -1;
	return sw_alog_id_ok(cp->key_id, SW_ALOG_KEY_ID_MAX) ? 0 : -1;
}

/* ---- the Merkle tree ------------------------------------------------------- */

static void mt_node(const uint8_t *children, size_t n, uint8_t out[SW_ALOG_HASH])
{
	crypto_generichash_blake2b_salt_personal(out, SW_ALOG_HASH, children,
						 (unsigned long long)n * SW_ALOG_HASH, NULL, 0,
						 NULL, (const unsigned char *)MT_PERSONAL);
}

void sw_alog_mtree_init(struct sw_alog_mtree *t)
{
	memset(t->count, 0, sizeof(t->count));
}

uint64_t sw_alog_mtree_leaves(const struct sw_alog_mtree *t)
{
	return t->count[0];
}

void sw_alog_mtree_add(struct sw_alog_mtree *t, const uint8_t leaf[SW_ALOG_HASH])
{
	uint8_t group[4][SW_ALOG_HASH], node[SW_ALOG_HASH];
	const uint8_t *h = leaf;
	int lv;

	for (lv = 0; lv < SW_ALOG_MT_LEVELS; lv++) {
		size_t at = (size_t)(t->count[lv] % 4);

		t->count[lv]++;
		if (at < 3) {
			memcpy(t->pend[lv][at], h, SW_ALOG_HASH);
			return;
		}
		memcpy(group, t->pend[lv], 3 * SW_ALOG_HASH);
		memcpy(group[3], h, SW_ALOG_HASH);
		mt_node(&group[0][0], 4, node);
		h = node;
	}
}

int sw_alog_mtree_root(const struct sw_alog_mtree *t, uint8_t root[SW_ALOG_HASH])
{
	uint8_t group[4][SW_ALOG_HASH], carry[SW_ALOG_HASH];
	int have_carry = 0, lv;

	if (t->count[0] == 0)
		return -1;
	for (lv = 0; lv < SW_ALOG_MT_LEVELS; lv++) {
		uint64_t total = t->count[lv] + (have_carry ? 1 : 0);
		size_t open = (size_t)(t->count[lv] % 4);

		if (total == 1) {
			memcpy(root, have_carry ? carry : t->pend[lv][0], SW_ALOG_HASH);
			return 0;
		}
		/* the level's last group: its open members, then the carry */
		memcpy(group, t->pend[lv], open * SW_ALOG_HASH);
		if (have_carry)
			memcpy(group[open++], carry, SW_ALOG_HASH);
		if (open > 0) {
			mt_node(&group[0][0], open, carry);
			have_carry = 1;
		} else {
			have_carry = 0;
		}
	}
	return -1; /* 4^32 leaves: not reached */
}

int sw_alog_mtree_proof(const uint8_t (*leaves)[SW_ALOG_HASH], uint64_t n, uint64_t index,
			uint8_t (*out)[SW_ALOG_HASH], size_t cap)
{
	uint8_t(*level)[SW_ALOG_HASH] = NULL, (*next)[SW_ALOG_HASH] = NULL;
	uint64_t size = n, i, idx = index;
	size_t np = 0;
	int ret = -1;

	if (index >= n)
		return -1;
	if ((level = malloc((size_t)n * SW_ALOG_HASH)) == NULL)
		return -1;
	memcpy(level, leaves, (size_t)n * SW_ALOG_HASH);
	while (size > 1) {
		uint64_t g = idx / 4, start = g * 4, gs = size - start < 4 ? size - start : 4;
		uint64_t up = (size + 3) / 4;

		for (i = start; i < start + gs; i++) {
			if (i == idx)
				continue;
			if (np == cap)
				goto out;
			memcpy(out[np++], level[i], SW_ALOG_HASH);
		}
		if ((next = malloc((size_t)up * SW_ALOG_HASH)) == NULL)
			goto out;
		for (i = 0; i < up; i++) {
			uint64_t s = i * 4, c = size - s < 4 ? size - s : 4;

			mt_node(level[s], (size_t)c, next[i]);
		}
		free(level);
		level = next;
		next = NULL;
		size = up;
		idx = g;
	}
	ret = (int)np;
out:
	free(level);
	free(next);
	return ret;
}

int sw_alog_mtree_climb(const uint8_t leaf[SW_ALOG_HASH], uint64_t n, uint64_t index,
			const uint8_t (*proof)[SW_ALOG_HASH], size_t nproof,
			uint8_t root[SW_ALOG_HASH])
{
	uint8_t group[4][SW_ALOG_HASH], h[SW_ALOG_HASH];
	uint64_t size = n, idx = index, i;
	size_t used = 0;

	if (index >= n)
		return -1;
	memcpy(h, leaf, SW_ALOG_HASH);
	while (size > 1) {
		uint64_t g = idx / 4, start = g * 4, gs = size - start < 4 ? size - start : 4;

		for (i = 0; i < gs; i++) {
			if (start + i == idx) {
				memcpy(group[i], h, SW_ALOG_HASH);
				continue;
			}
			if (used == nproof)
				return -1;
			memcpy(group[i], proof[used++], SW_ALOG_HASH);
		}
		mt_node(&group[0][0], (size_t)gs, h);
		size = (size + 3) / 4;
		idx = g;
	}
	if (used != nproof)
		return -1;
	memcpy(root, h, SW_ALOG_HASH);
	return 0;
}

/* ---- the writer's side --------------------------------------------------- */

void sw_alog_cpstate_init(struct sw_alog_cpstate *st)
{
	sw_alog_mtree_init(&st->tree);
	st->prev_seq = 0;
	st->since = 0;
	st->log_id[0] = '\0';
}

static void cpstate_restart(struct sw_alog_cpstate *st, uint64_t covered,
			    const uint8_t hash[SW_ALOG_HASH])
{
	sw_alog_mtree_init(&st->tree);
	sw_alog_mtree_add(&st->tree, hash);
	st->prev_seq = covered;
	st->since = 0;
}

void sw_alog_cpstate_feed(struct sw_alog_cpstate *st, const struct sw_alog_rec *rec)
{
	if (rec->kind == SW_ALOG_CHECKPOINT && rec->payload_len == SW_ALOG_CHECKPOINT_LEN) {
		size_t n = rec->topic_len < SW_ALOG_LOG_ID_MAX ? rec->topic_len : SW_ALOG_LOG_ID_MAX;

		memcpy(st->log_id, rec->topic, n);
		st->log_id[n] = '\0';
		cpstate_restart(st, alog_get64(rec->payload), rec->hash);
		return;
	}
	sw_alog_cpstate_add(st, rec->hash);
}

void sw_alog_cpstate_add(struct sw_alog_cpstate *st, const uint8_t hash[SW_ALOG_HASH])
{
	sw_alog_mtree_add(&st->tree, hash);
	st->since++;
}

int sw_alog_checkpoint_append(struct sw_alog *l, struct sw_alog_cpstate *st,
			      const struct sw_alog_signer *s, const char *log_id, int64_t time_us,
			      struct sw_alog_checkpoint *cp, char *errstr, size_t errlen)
{
	struct sw_alog_checkpoint c;
	uint8_t pl[SW_ALOG_CHECKPOINT_LEN], h[SW_ALOG_HASH];

	memset(&c, 0, sizeof(c));
	if (sw_alog_next_seq(l) <= 1 || sw_alog_mtree_root(&st->tree, c.root) != 0) {
		alog_err(errstr, errlen, "checkpoint: no record to cover");
		return -1;
	}
	if (!sw_alog_id_ok(log_id, SW_ALOG_LOG_ID_MAX)) {
		alog_err(errstr, errlen, "checkpoint: log id '%.80s' is not well-formed", log_id);
		return -1;
	}
	snprintf(c.log_id, sizeof(c.log_id), "%s", log_id);
	c.seq = sw_alog_next_seq(l) - 1;
	sw_alog_last_hash(l, c.hash);
	c.prev_seq = st->prev_seq;
	c.time_us = time_us;
	sw_alog_sign(s, &c);
	sw_alog_checkpoint_payload(&c, pl);
	if (sw_alog_append(l, SW_ALOG_CHECKPOINT, log_id, -1, (int64_t)c.prev_seq, time_us, pl,
			   sizeof(pl), NULL, NULL, NULL, errstr, errlen) != 0)
		return -1;
	sw_alog_last_hash(l, h);
	snprintf(st->log_id, sizeof(st->log_id), "%s", log_id);
	cpstate_restart(st, c.seq, h);
	if (cp != NULL)
		*cp = c;
	return 0;
}
