/*
 * Signed checkpoints and what they make detectable (sw_alog.h):
 *
 *   keys       key files (0600 or refused), key ids, public key lists
 *   merkle     the streaming 4-ary tree against a level-by-level oracle,
 *              proofs for every leaf, wrong leaves and proofs refused
 *   sign       signatures verify; a flipped bit, another key, an unknown
 *              key id do not
 *   rollback   a write that fails (RLIMIT_FSIZE) is cut back to the last
 *              sync, across a segment roll too, and the log goes on
 *   age        segments roll by age
 *   check      sw_alog_check: a good log with key rotation; a forged
 *              checkpoint, an unknown key, a removed checkpoint; a tail cut
 *              at a record boundary caught by the published checkpoints; a
 *              record deleted or two swapped and the chain rewritten; a
 *              forged published checkpoint; checkpoints of another log
 */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sodium.h>

#include "alog_util.h"
#include "sw_core.h"

static char *scratch;

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", scratch, name);
}

/* ---- keys ------------------------------------------------------------------ */

static struct sw_alog_signer *make_key(const char *id, uint8_t pk[32])
{
	char path[512], err[256];
	struct sw_alog_signer *s;

	snprintf(path, sizeof(path), "%s/%s.key", scratch, id);
	unlink(path);
	SW_CHECKF(sw_alog_keygen(id, path, pk, err, sizeof(err)) == 0, "%s", err);
	s = sw_alog_signer_load(path, err, sizeof(err));
	SW_CHECKF(s != NULL, "%s", err);
	return s;
}

static void test_keys(void)
{
	char path[512], err[256], text[512], hex[65];
	struct sw_alog_signer *s;
	struct sw_alog_keys *k;
	uint8_t pk[32], pk2[32];
	FILE *f;

	SW_CHECK(sw_alog_id_ok("k1", 32) && sw_alog_id_ok("audit-2024.06:a_b", 32));
	SW_CHECK(!sw_alog_id_ok("", 32) && !sw_alog_id_ok("a b", 32) && !sw_alog_id_ok("a/b", 32));
	SW_CHECK(!sw_alog_id_ok("0123456789012345678901234567890123", 32));

	s = make_key("k1", pk);
	SW_CHECK(strcmp(sw_alog_signer_key_id(s), "k1") == 0);
	sw_alog_signer_public(s, pk2);
	SW_CHECK(memcmp(pk, pk2, 32) == 0);
	sw_alog_signer_destroy(s);

	/* never replaced; a bad id refused */
	path_in(path, sizeof(path), "k1.key");
	SW_CHECK(sw_alog_keygen("k1", path, pk, err, sizeof(err)) == -1);
	SW_CHECK(sw_alog_keygen("bad id", "/nonexistent/x", pk, err, sizeof(err)) == -1);

	/* group- or world-readable: refused, naming the mode */
	SW_CHECK(chmod(path, 0640) == 0);
	SW_CHECK(sw_alog_signer_load(path, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "0640") && strstr(err, "chmod 600"), "%s", err);
	SW_CHECK(chmod(path, 0400) == 0);
	s = sw_alog_signer_load(path, err, sizeof(err));
	SW_CHECKF(s != NULL, "%s", err);
	sw_alog_signer_destroy(s);

	/* malformed key files */
	path_in(path, sizeof(path), "bad.key");
	f = fopen(path, "w");
	SW_CHECK(f != NULL);
	fputs("k1 abcd\n", f);
	fclose(f);
	SW_CHECK(chmod(path, 0600) == 0);
	SW_CHECK(sw_alog_signer_load(path, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "KEYID HEX") != NULL, "%s", err);
	f = fopen(path, "w");
	fputs("k1 00000000000000000000000000000000000000000000000000000000000000000\nmore\n", f);
	fclose(f);
	SW_CHECK(sw_alog_signer_load(path, err, sizeof(err)) == NULL);
	path_in(path, sizeof(path), "dir.key");
	mkdir(path, 0700);
	SW_CHECK(sw_alog_signer_load(path, err, sizeof(err)) == NULL);
	SW_CHECK(sw_alog_signer_load("/nonexistent/k", err, sizeof(err)) == NULL);

	/* public key lists */
	sw_hex_encode(pk, 32, hex);
	snprintf(text, sizeof(text), "# audit keys\n\nk1 %s\n  k2\t%s  \n", hex, hex);
	k = sw_alog_keys_parse(text, strlen(text), err, sizeof(err));
	SW_CHECKF(k != NULL, "%s", err);
	SW_CHECK(sw_alog_keys_count(k) == 2);
	SW_CHECK(sw_alog_keys_find(k, "k2", pk2) == 0 && memcmp(pk, pk2, 32) == 0);
	SW_CHECK(sw_alog_keys_find(k, "k3", pk2) == -1);
	sw_alog_keys_destroy(k);
	snprintf(text, sizeof(text), "k1 %s\nk1 %.63s%c\n", hex, hex, hex[63] == '0' ? '1' : '0');
	SW_CHECK(sw_alog_keys_parse(text, strlen(text), err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "line 2") && strstr(err, "two different keys"), "%s", err);
	snprintf(text, sizeof(text), "k1 %s extra\n", hex);
	SW_CHECK(sw_alog_keys_parse(text, strlen(text), err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "line 1") != NULL, "%s", err);
	SW_CHECK(sw_alog_keys_parse("k1 zz\n", 6, err, sizeof(err)) == NULL);
	SW_CHECK(sw_alog_keys_parse("a\0b", 3, err, sizeof(err)) == NULL);
}

/* ---- the Merkle tree ---------------------------------------------------------- */

/* The definition, level by level, as independent of the streaming code as
 * it can be. */
static void oracle_root(uint8_t (*leaves)[32], uint64_t n, uint8_t root[32])
{
	uint8_t(*lv)[32] = malloc(n * 32);
	uint64_t size = n, i;

	memcpy(lv, leaves, n * 32);
	while (size > 1) {
		uint64_t up = 0;

		for (i = 0; i < size; i += 4) {
			uint64_t c = size - i < 4 ? size - i : 4;

			crypto_generichash_blake2b_salt_personal(
			    lv[up], 32, lv[i], c * 32, NULL, 0, NULL,
			    (const unsigned char *)"SWALOG-MERKLE4-1");
			up++;
		}
		size = up;
	}
	memcpy(root, lv[0], 32);
	free(lv);
}

static void test_merkle(void)
{
	static const uint64_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 63, 64, 65, 100,
					 255, 256, 257, 1023, 1025, 4096, 4097, 10007};
	uint8_t(*leaves)[32] = malloc(10007 * 32), root[32], want[32], got[32];
	uint8_t proof[96][32], bad[32];
	struct sw_alog_mtree t;
	size_t si;
	uint64_t i;

	randombytes_buf(leaves, 10007 * 32);
	sw_alog_mtree_init(&t);
	SW_CHECK(sw_alog_mtree_root(&t, root) == -1);
	for (si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint64_t n = sizes[si];

		sw_alog_mtree_init(&t);
		for (i = 0; i < n; i++)
			sw_alog_mtree_add(&t, leaves[i]);
		SW_CHECK(sw_alog_mtree_leaves(&t) == n);
		SW_CHECK(sw_alog_mtree_root(&t, root) == 0);
		oracle_root(leaves, n, want);
		SW_CHECKF(memcmp(root, want, 32) == 0, "streaming root differs at n=%" PRIu64, n);
		/* the root can be taken, and more added */
		if (n > 1) {
			sw_alog_mtree_init(&t);
			for (i = 0; i < n; i++) {
				sw_alog_mtree_add(&t, leaves[i]);
				if (i == n / 2)
					SW_CHECK(sw_alog_mtree_root(&t, got) == 0);
			}
			SW_CHECK(sw_alog_mtree_root(&t, got) == 0 && memcmp(got, want, 32) == 0);
		}
		if (n == 1)
			SW_CHECK(memcmp(root, leaves[0], 32) == 0);
		for (i = 0; i < n; i += (n > 300 ? 97 : 1)) {
			int np = sw_alog_mtree_proof((const uint8_t(*)[32])leaves, n, i, proof, 96);

			SW_CHECKF(np >= 0, "proof n=%" PRIu64 " i=%" PRIu64, n, i);
			SW_CHECK(sw_alog_mtree_climb(leaves[i], n, i, (const uint8_t(*)[32])proof,
						     (size_t)np, got) == 0);
			SW_CHECKF(memcmp(got, want, 32) == 0, "proof of %" PRIu64 "/%" PRIu64, i, n);
			/* another leaf, another place, a short or long proof: no */
			memcpy(bad, leaves[i], 32);
			bad[3] ^= 1;
			SW_CHECK(sw_alog_mtree_climb(bad, n, i, (const uint8_t(*)[32])proof,
						     (size_t)np, got) != 0 ||
				 memcmp(got, want, 32) != 0);
			if (n > 1) {
				SW_CHECK(sw_alog_mtree_climb(leaves[i], n, (i + 1) % n,
							     (const uint8_t(*)[32])proof, (size_t)np,
							     got) != 0 ||
					 memcmp(got, want, 32) != 0);
				SW_CHECK(sw_alog_mtree_climb(leaves[i], n, i,
							     (const uint8_t(*)[32])proof,
							     (size_t)np - 1, got) != 0);
			}
			SW_CHECK(sw_alog_mtree_climb(leaves[i], n, i, (const uint8_t(*)[32])proof,
						     (size_t)np + 1, got) != 0);
		}
		SW_CHECK(sw_alog_mtree_proof((const uint8_t(*)[32])leaves, n, n, proof, 96) == -1);
	}
	free(leaves);
}

/* ---- signatures ----------------------------------------------------------------- */

static void test_sign(void)
{
	struct sw_alog_checkpoint cp, x;
	struct sw_alog_signer *s1, *s2;
	struct sw_alog_keys *k = sw_alog_keys_new();
	uint8_t pk1[32], pk2[32], pl[SW_ALOG_CHECKPOINT_LEN];
	char why[200], err[200];

	s1 = make_key("k1", pk1);
	s2 = make_key("k2", pk2);
	SW_CHECK(sw_alog_keys_add(k, "k1", pk1, err, sizeof(err)) == 0);
	memset(&cp, 0, sizeof(cp));
	snprintf(cp.log_id, sizeof(cp.log_id), "log-a");
	cp.seq = 42;
	cp.prev_seq = 30;
	cp.time_us = 1700000000000000;
	randombytes_buf(cp.hash, 32);
	randombytes_buf(cp.root, 32);
	SW_CHECK(sw_alog_sign(s1, &cp) == 0);
	SW_CHECK(strcmp(cp.key_id, "k1") == 0);
	SW_CHECKF(sw_alog_checkpoint_verify(k, &cp, why, sizeof(why)) == 0, "%s", why);
	/* every signed field matters */
	x = cp;
	x.seq++;
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	SW_CHECKF(strstr(why, "does not verify") != NULL, "%s", why);
	x = cp;
	x.prev_seq--;
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	x = cp;
	x.root[31] ^= 1;
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	x = cp;
	x.time_us++;
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	x = cp;
	snprintf(x.log_id, sizeof(x.log_id), "log-b");
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	x = cp;
	x.sig[10] ^= 0x40;
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	/* signed by k2 but claiming k1: forged */
	x = cp;
	SW_CHECK(sw_alog_sign(s2, &x) == 0);
	snprintf(x.key_id, sizeof(x.key_id), "k1");
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	/* k2 is not listed */
	SW_CHECK(sw_alog_sign(s2, &x) == 0);
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == -1);
	SW_CHECKF(strstr(why, "unknown key 'k2'") != NULL, "%s", why);
	/* rotation: both listed, both verify */
	SW_CHECK(sw_alog_keys_add(k, "k2", pk2, err, sizeof(err)) == 0);
	SW_CHECK(sw_alog_checkpoint_verify(k, &x, why, sizeof(why)) == 0);
	SW_CHECK(sw_alog_checkpoint_verify(k, &cp, why, sizeof(why)) == 0);
	/* the record payload round trip */
	sw_alog_checkpoint_payload(&cp, pl);
	memset(&x, 0, sizeof(x));
	SW_CHECK(sw_alog_checkpoint_parse(pl, sizeof(pl), &x) == 0);
	SW_CHECK(x.seq == cp.seq && !memcmp(x.hash, cp.hash, 32) && !strcmp(x.key_id, "k1") &&
		 !memcmp(x.sig, cp.sig, 64));
	SW_CHECK(sw_alog_checkpoint_parse(pl, sizeof(pl) - 1, &x) == -1);
	pl[40 + 20] = 'x'; /* a byte after the id's NUL */
	SW_CHECK(sw_alog_checkpoint_parse(pl, sizeof(pl), &x) == -1);
	SW_CHECK(sw_alog_sign(s1, &(struct sw_alog_checkpoint){.log_id = "bad id"}) == -1);
	sw_alog_signer_destroy(s1);
	sw_alog_signer_destroy(s2);
	sw_alog_keys_destroy(k);
}

/* ---- rollback after a failed write --------------------------------------------- */

static void test_rollback(void)
{
	char *dir = t_mkdir("rollback"), err[256], path[512];
	struct sw_alog_verify_result r;
	struct rlimit old, lim;
	struct sw_alog *l;
	static uint8_t pl[40000];
	uint64_t before, durable;
	int i, rc = 0;

	signal(SIGXFSZ, SIG_IGN);
	SW_CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
	l = sw_alog_open(dir, 1 << 20, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "%s", err);
	t_fill(l, 50, 10, NULL);
	/* no file may grow past 30 KiB: a write fails in the middle */
	lim = old;
	lim.rlim_cur = 30 << 10;
	SW_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	memset(pl, 7, sizeof(pl));
	durable = sw_alog_next_seq(l);
	for (i = 0; i < 100 && rc == 0; i++) {
		rc = sw_alog_append(l, SW_ALOG_EVENT, "t", 0, i, i, pl, 4000, NULL, NULL, NULL,
				    err, sizeof(err));
		if (rc == 0 && i % 3 == 2) {
			rc = sw_alog_sync(l, err, sizeof(err));
			if (rc == 0)
				durable = sw_alog_next_seq(l);
		}
	}
	SW_CHECKF(rc == -1, "the file size limit never hit");
	SW_CHECK(sw_alog_failed(l));
	SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, 0, 0, pl, 10, NULL, NULL, NULL, err,
				sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "earlier I/O error") != NULL, "%s", err);
	/* rollback needs no room (it only cuts): back to the last sync */
	SW_CHECKF(sw_alog_rollback(l, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(!sw_alog_failed(l));
	SW_CHECK(sw_alog_next_seq(l) == durable);

	/* the failure after a roll: the new segment goes, the old one is cut
	 * back to the last sync */
	sw_alog_set_roll(l, 20 << 10, 0);
	SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, 0, 0, pl, 100, NULL, NULL, NULL, err,
				sizeof(err)) == 0);
	SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, 0, 0, pl, sizeof(pl), NULL, NULL, NULL,
				err, sizeof(err)) == 0); /* rolls, then cannot be written */
	SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == -1);
	t_seg_path(path, sizeof(path), dir, durable + 1);
	SW_CHECKF(access(path, F_OK) == 0, "no rolled segment %s", path);
	SW_CHECKF(sw_alog_rollback(l, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(sw_alog_next_seq(l) == durable);
	SW_CHECKF(access(path, F_OK) != 0, "the segment made after the sync stayed");
	r = t_verify(dir, 0);
	SW_CHECKF(r.ok && r.records == durable - 1, "%s", r.reason);

	/* room again: the same records go in, and everything verifies */
	SW_CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, 0, 0, pl, sizeof(pl), NULL, NULL, NULL,
				err, sizeof(err)) == 0);
	before = sw_alog_next_seq(l);
	t_fill(l, 300, 7, NULL);
	SW_CHECK(sw_alog_next_seq(l) == before + 300);
	sw_alog_close(l);
	r = t_verify(dir, 0);
	SW_CHECKF(r.ok && r.records == before + 299, "%s (records %" PRIu64 ")", r.reason,
		  r.records);
	t_rmrf(dir);
	free(dir);

	/* a brand-new log whose first sync fails: the header is written again */
	dir = t_mkdir("rollback0");
	l = sw_alog_open(dir, 0, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	lim.rlim_cur = 10;
	SW_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, 0, 0, pl, 10, NULL, NULL, NULL, err,
				sizeof(err)) == 0);
	SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == -1);
	SW_CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	SW_CHECKF(sw_alog_rollback(l, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(sw_alog_next_seq(l) == 1);
	t_fill(l, 5, 0, NULL);
	sw_alog_close(l);
	r = t_verify(dir, 0);
	SW_CHECKF(r.ok && r.records == 5, "%s", r.reason);
	t_rmrf(dir);
	free(dir);
}

static uint8_t *read_all(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	SW_CHECK(fd >= 0 && fstat(fd, &st) == 0);
	SW_CHECK((p = malloc((size_t)st.st_size + 1)) != NULL);
	SW_CHECK(pread(fd, p, (size_t)st.st_size, 0) == st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

/* An attempt repeated after a rollback writes the very bytes the failed
 * one left in the file, even when the segment came of age in between (the
 * age is asked once after each sync): a reader that read those bytes
 * before the cut still reads one chain. */
static void test_retry_same_bytes(void)
{
	char *dir = t_mkdir("retry"), err[256], path[512];
	struct rlimit old, lim;
	struct sw_alog *l;
	uint8_t pl[4000], *torn, *now;
	size_t tlen, nlen;
	int i;

	signal(SIGXFSZ, SIG_IGN);
	SW_CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
	l = sw_alog_open(dir, 1 << 20, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "%s", err);
	sw_alog_set_roll(l, 0, 300000); /* 0.3 s */
	t_fill(l, 5, 0, NULL);
	t_seg_path(path, sizeof(path), dir, 1);
	free(read_all(path, &tlen));
	memset(pl, 9, sizeof(pl));
	lim = old;
	lim.rlim_cur = tlen + 3 * sizeof(pl); /* room for under three of the five */
	SW_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	for (i = 0; i < 5; i++)
		SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, i, i, pl, sizeof(pl), NULL, NULL,
					NULL, err, sizeof(err)) == 0);
	SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == -1);
	SW_CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	torn = read_all(path, &tlen); /* what a reader may have seen */
	usleep(400000);		      /* the segment is old enough to roll now */
	SW_CHECKF(sw_alog_rollback(l, err, sizeof(err)) == 0, "%s", err);
	for (i = 0; i < 5; i++)
		SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, i, i, pl, sizeof(pl), NULL, NULL,
					NULL, err, sizeof(err)) == 0);
	SW_CHECKF(sw_alog_sync(l, err, sizeof(err)) == 0, "%s", err);
	now = read_all(path, &nlen);
	SW_CHECKF(nlen > tlen && memcmp(torn, now, tlen) == 0,
		  "the repeated attempt wrote other bytes (%zu then %zu bytes)", tlen, nlen);
	t_seg_path(path, sizeof(path), dir, 6);
	SW_CHECKF(access(path, F_OK) != 0, "the repeat rolled where the first attempt did not");
	/* the age still counts: the next append after this sync rolls */
	t_fill(l, 1, 0, NULL);
	t_seg_path(path, sizeof(path), dir, 11);
	SW_CHECKF(access(path, F_OK) == 0, "no roll by age after the sync");
	sw_alog_close(l);
	SW_CHECK(t_verify(dir, 0).ok);
	free(torn);
	free(now);
	t_rmrf(dir);
	free(dir);
}

static void test_age(void)
{
	char *dir = t_mkdir("age"), err[256];
	struct sw_alog *l;
	uint64_t segs[2] = {0, 0};
	int n = 0;

	l = sw_alog_open(dir, 0, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	sw_alog_set_roll(l, 0, 200000); /* 0.2 s */
	t_fill(l, 3, 0, NULL);
	usleep(300000);
	t_fill(l, 3, 0, NULL);
	sw_alog_close(l);
	{
		char path[512];

		t_seg_path(path, sizeof(path), dir, 1);
		segs[n++] = access(path, F_OK) == 0;
		t_seg_path(path, sizeof(path), dir, 4);
		segs[n++] = access(path, F_OK) == 0;
	}
	SW_CHECKF(segs[0] && segs[1], "no segment rolled by age at seq 4");
	SW_CHECK(t_verify(dir, 0).ok);
	t_rmrf(dir);
	free(dir);
}

/* ---- the whole check ------------------------------------------------------------- */

#define MAXCP 64

struct written {
	struct sw_alog_checkpoint cp[MAXCP]; /* as published */
	size_t ncp;
	uint64_t last;
};

/* A log of `rounds` rounds of `per` records, a checkpoint after each round
 * signed by keys[round * nkeys / rounds]. */
static void write_log(const char *dir, int rounds, int per, struct sw_alog_signer **keys,
		      int nkeys, const char *log_id, struct written *w)
{
	struct sw_alog_cpstate st;
	struct sw_alog *l;
	uint8_t pl[512], h[32];
	char err[256];
	int r, i;

	memset(w, 0, sizeof(*w));
	sw_alog_cpstate_init(&st);
	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECKF(l != NULL, "%s", err);
	for (r = 0; r < rounds; r++) {
		for (i = 0; i < per; i++) {
			uint64_t seq = sw_alog_next_seq(l);
			size_t len = t_payload(seq, pl, sizeof(pl));

			SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "sagewai.runs", 0, (int64_t)seq,
						(int64_t)seq, pl, len, NULL, NULL, NULL, err,
						sizeof(err)) == 0);
			sw_alog_last_hash(l, h);
			sw_alog_cpstate_add(&st, h);
		}
		SW_CHECK(w->ncp < MAXCP);
		SW_CHECKF(sw_alog_checkpoint_append(l, &st, keys[r * nkeys / rounds], log_id,
						    1700000000000000 + r, &w->cp[w->ncp++], err,
						    sizeof(err)) == 0,
			  "%s", err);
		SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == 0);
	}
	w->last = sw_alog_next_seq(l) - 1;
	sw_alog_close(l);
}

static struct sw_alog_check_result check(const char *dir, const struct sw_alog_keys *k,
					 const struct written *pub, const char *log_id)
{
	struct sw_alog_check_opts o = {.threads = 2, .keys = k, .log_id = log_id};
	struct sw_alog_check_result r;
	char err[256];

	if (pub != NULL) {
		o.published = pub->cp;
		o.npublished = pub->ncp;
	}
	SW_CHECKF(sw_alog_check(dir, &o, &r, err, sizeof(err)) == 0, "check: %s", err);
	return r;
}

struct collected {
	struct {
		uint8_t kind;
		char topic[64];
		int32_t partition;
		int64_t offset, time_us;
		uint8_t payload[512];
		size_t len;
	} *r;
	size_t n;
};

static int collect(const struct sw_alog_rec *rec, void *opaque)
{
	struct collected *c = opaque;

	c->r = realloc(c->r, (c->n + 1) * sizeof(*c->r));
	SW_CHECK(c->r != NULL && rec->payload_len <= 512 && rec->topic_len < 64);
	c->r[c->n].kind = rec->kind;
	memcpy(c->r[c->n].topic, rec->topic, rec->topic_len);
	c->r[c->n].topic[rec->topic_len] = '\0';
	c->r[c->n].partition = rec->partition;
	c->r[c->n].offset = rec->offset;
	c->r[c->n].time_us = rec->time_us;
	memcpy(c->r[c->n].payload, rec->payload, rec->payload_len);
	c->r[c->n].len = rec->payload_len;
	c->n++;
	return 0;
}

/* What someone with write access and the tools does: read the log, drop
 * record `drop` (0: none) or swap records a and a + 1 (0: none), and write
 * it all again with a fresh, consistent chain (checkpoint records kept as
 * they were: they cannot be signed again). */
static void rewrite(const char *dir, uint64_t drop, uint64_t swap)
{
	struct collected c = {0};
	struct sw_alog *l;
	char err[256];
	size_t i;

	SW_CHECK(sw_alog_scan(dir, 1, collect, &c, err, sizeof(err)) == 0);
	if (swap) {
		__typeof__(*c.r) t = c.r[swap - 1];

		c.r[swap - 1] = c.r[swap];
		c.r[swap] = t;
	}
	t_rmrf(dir);
	l = sw_alog_open(dir, 8192, NULL, err, sizeof(err));
	SW_CHECK(l != NULL);
	for (i = 0; i < c.n; i++) {
		if (drop && i + 1 == drop)
			continue;
		SW_CHECKF(sw_alog_append(l, c.r[i].kind, c.r[i].topic, c.r[i].partition,
					 c.r[i].offset, c.r[i].time_us, c.r[i].payload, c.r[i].len,
					 NULL, NULL, NULL, err, sizeof(err)) == 0,
			  "%s", err);
	}
	SW_CHECK(sw_alog_sync(l, err, sizeof(err)) == 0);
	sw_alog_close(l);
	free(c.r);
}

static int find_cb(const struct sw_alog_rec *rec, void *opaque)
{
	struct t_loc *loc = opaque;

	if (rec->seq != loc->seq)
		return 0;
	loc->segment = rec->segment;
	loc->off = rec->file_off;
	loc->size = 76 + 23 + rec->topic_len + rec->payload_len;
	return 1;
}

static struct t_loc locate(const char *dir, uint64_t seq)
{
	struct t_loc loc = {.seq = seq};
	char err[256];

	SW_CHECK(sw_alog_scan(dir, 1, find_cb, &loc, err, sizeof(err)) >= 0 && loc.segment);
	return loc;
}

/* Cut the log cleanly before record seq: what an attacker who deletes its
 * tail does. */
static void cut_at(const char *dir, uint64_t seq)
{
	struct t_loc loc = locate(dir, seq);
	char path[512];
	uint64_t s;

	t_truncate(dir, loc.segment, (off_t)loc.off);
	for (s = loc.segment + 1; s < seq + 1000; s++) {
		t_seg_path(path, sizeof(path), dir, s);
		unlink(path);
	}
}

static void test_check(void)
{
	struct sw_alog_signer *k1, *k2, *k9, *ks[2];
	struct sw_alog_keys *both = sw_alog_keys_new(), *only2 = sw_alog_keys_new();
	struct sw_alog_check_result r;
	struct written w, other;
	uint8_t pk1[32], pk2[32], pk9[32];
	char *dir, *dir2, err[256];

	k1 = make_key("k1", pk1);
	k2 = make_key("k2", pk2);
	k9 = make_key("k9", pk9);
	SW_CHECK(sw_alog_keys_add(both, "k1", pk1, err, sizeof(err)) == 0);
	SW_CHECK(sw_alog_keys_add(both, "k2", pk2, err, sizeof(err)) == 0);
	SW_CHECK(sw_alog_keys_add(only2, "k2", pk2, err, sizeof(err)) == 0);
	ks[0] = k1;
	ks[1] = k2;

	/* Good, with a key rotation half-way, against its published
	 * checkpoints; several segments (8 KiB each). */
	dir = t_mkdir("check");
	write_log(dir, 10, 20, ks, 2, "log-a", &w);
	r = check(dir, both, &w, NULL);
	SW_CHECKF(r.v.ok, "seq %" PRIu64 ": %s", r.v.bad_seq, r.v.reason);
	SW_CHECK(r.last_seq == w.last && r.signed_ok == 10 && r.covered_seq == w.last - 1);
	SW_CHECK(r.published == 10 && r.published_ok == 10 && r.published_max == w.last - 1);
	SW_CHECK(strcmp(r.log_id, "log-a") == 0);
	/* the old key no longer listed: its checkpoints are by an unknown key */
	r = check(dir, only2, NULL, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 21 && strstr(r.v.reason, "unknown key 'k1'"), "%s",
		  r.v.reason);
	/* no keys: not ok, said so */
	r = check(dir, NULL, NULL, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 21 && strstr(r.v.reason, "no public keys"), "%s",
		  r.v.reason);
	/* the wrong log id asked for */
	r = check(dir, both, NULL, "log-b");
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 21 && strstr(r.v.reason, "names log 'log-a'"), "%s",
		  r.v.reason);

	/* The tail cut at a record boundary: verifies alone, not against the
	 * published checkpoints. */
	cut_at(dir, 150);
	r = check(dir, both, NULL, NULL);
	SW_CHECKF(r.v.ok && r.last_seq == 149, "%s", r.v.reason);
	r = check(dir, both, &w, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 150 && strstr(r.v.reason, "ends at seq 149") &&
			  strstr(r.v.reason, "deleted"),
		  "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	/* cut right before a checkpoint record: the published one is missing */
	cut_at(dir, 147); /* record 147 is the 7th checkpoint (covers 146) */
	r = check(dir, both, &w, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 147 && strstr(r.v.reason, "written as record 147"),
		  "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	t_rmrf(dir);
	free(dir);

	/* A forged checkpoint: signed with k9's key, claiming k1. */
	dir = t_mkdir("forged");
	ks[0] = k1;
	ks[1] = k9;
	write_log(dir, 4, 10, ks, 2, "log-a", &w);
	r = check(dir, both, NULL, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 33 && strstr(r.v.reason, "unknown key 'k9'"), "%s",
		  r.v.reason);
	t_rmrf(dir);
	{
		/* k9 signs, the record says k1 */
		struct sw_alog_cpstate st;
		struct sw_alog_checkpoint cp;
		struct sw_alog *l = sw_alog_open(dir, 0, NULL, err, sizeof(err));
		uint8_t h[32], pl[SW_ALOG_CHECKPOINT_LEN];

		SW_CHECK(l != NULL);
		sw_alog_cpstate_init(&st);
		for (int i = 0; i < 10; i++) {
			SW_CHECK(sw_alog_append(l, SW_ALOG_EVENT, "t", 0, i, i, "x", 1, NULL, NULL,
						NULL, err, sizeof(err)) == 0);
			sw_alog_last_hash(l, h);
			sw_alog_cpstate_add(&st, h);
		}
		memset(&cp, 0, sizeof(cp));
		snprintf(cp.log_id, sizeof(cp.log_id), "log-a");
		cp.seq = 10;
		sw_alog_last_hash(l, cp.hash);
		SW_CHECK(sw_alog_mtree_root(&st.tree, cp.root) == 0);
		cp.time_us = 5;
		SW_CHECK(sw_alog_sign(k9, &cp) == 0);
		snprintf(cp.key_id, sizeof(cp.key_id), "k1");
		sw_alog_checkpoint_payload(&cp, pl);
		SW_CHECK(sw_alog_append(l, SW_ALOG_CHECKPOINT, "log-a", -1, 0, 5, pl, sizeof(pl),
					NULL, NULL, NULL, err, sizeof(err)) == 0);
		t_fill(l, 3, 0, NULL);
		sw_alog_close(l);
		SW_CHECK(t_verify(dir, 0).ok); /* the chain is fine */
		r = check(dir, both, NULL, NULL);
		SW_CHECKF(!r.v.ok && r.v.bad_seq == 11 &&
				  strstr(r.v.reason, "signature does not verify with key 'k1'"),
			  "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	}
	t_rmrf(dir);
	free(dir);

	/* A record deleted, and the chain rewritten after it: the checkpoint
	 * records that follow no longer check, and the published checkpoints
	 * name the range it is in. */
	dir = t_mkdir("deleted");
	ks[0] = k1;
	write_log(dir, 6, 10, ks, 1, "log-a", &w);
	rewrite(dir, 25, 0);
	r = check(dir, both, NULL, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 32, "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	r = check(dir, both, &w, NULL);
	/* checkpoints cover 10, 21, 32...: 25 is in 23..32 */
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 23 && strstr(r.v.reason, "23..32"),
		  "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	t_rmrf(dir);

	/* Two records swapped, the chain rewritten. */
	write_log(dir, 6, 10, ks, 1, "log-a", &w);
	rewrite(dir, 0, 40);
	r = check(dir, both, NULL, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 44, "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	r = check(dir, both, &w, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 34 && strstr(r.v.reason, "34..44"), "%" PRIu64 " %s",
		  r.v.bad_seq, r.v.reason);
	t_rmrf(dir);

	/* Two records swapped as they were (seq and hash kept): named by the
	 * chain alone. */
	write_log(dir, 3, 10, ks, 1, "log-a", &w);
	{
		struct t_loc a = locate(dir, 15), b = locate(dir, 16);
		char path[512];
		uint8_t *x = malloc(a.size), *y = malloc(b.size);
		int fd;

		t_seg_path(path, sizeof(path), dir, a.segment);
		SW_CHECK(a.segment == b.segment && (fd = open(path, O_RDWR)) >= 0);
		SW_CHECK(pread(fd, x, a.size, (off_t)a.off) == (ssize_t)a.size);
		SW_CHECK(pread(fd, y, b.size, (off_t)b.off) == (ssize_t)b.size);
		SW_CHECK(pwrite(fd, y, b.size, (off_t)a.off) == (ssize_t)b.size);
		SW_CHECK(pwrite(fd, x, a.size, (off_t)(a.off + b.size)) == (ssize_t)a.size);
		close(fd);
		free(x);
		free(y);
	}
	r = check(dir, both, &w, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 15 && strstr(r.v.reason, "sequence gap"),
		  "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	t_rmrf(dir);

	/* A checkpoint record removed (chain rewritten): the next one says
	 * what the previous covered. */
	write_log(dir, 4, 10, ks, 1, "log-a", &w);
	rewrite(dir, 22, 0);
	r = check(dir, both, NULL, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 32, "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	t_rmrf(dir);

	/* Published checkpoints: a forged one (bad signature), one of another
	 * log (skipped), a log without checkpoints naming one log. */
	write_log(dir, 3, 10, ks, 1, "log-a", &w);
	dir2 = t_mkdir("other");
	write_log(dir2, 2, 5, ks, 1, "log-b", &other);
	w.cp[w.ncp] = other.cp[0];
	w.ncp++;
	r = check(dir, both, &w, NULL);
	SW_CHECKF(r.v.ok && r.published == 3 && r.published_other == 1, "%s", r.v.reason);
	w.cp[1].sig[0] ^= 1;
	r = check(dir, both, &w, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 22 && strstr(r.v.reason, "published checkpoint") &&
			  strstr(r.v.reason, "does not verify"),
		  "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	w.cp[1].sig[0] ^= 1;
	snprintf(w.cp[1].key_id, sizeof(w.cp[1].key_id), "k7");
	r = check(dir, both, &w, NULL);
	SW_CHECKF(!r.v.ok && r.v.bad_seq == 22 && strstr(r.v.reason, "unknown key 'k7'"),
		  "%" PRIu64 " %s", r.v.bad_seq, r.v.reason);
	t_rmrf(dir2);
	free(dir2);
	t_rmrf(dir);
	free(dir);

	sw_alog_signer_destroy(k1);
	sw_alog_signer_destroy(k2);
	sw_alog_signer_destroy(k9);
	sw_alog_keys_destroy(both);
	sw_alog_keys_destroy(only2);
}

int main(void)
{
	SW_CHECK(sodium_init() >= 0);
	scratch = t_mkdir("sign");
	test_keys();
	test_merkle();
	test_sign();
	test_rollback();
	test_retry_same_bytes();
	test_age();
	test_check();
	t_rmrf(scratch);
	free(scratch);
	fprintf(stderr, "alog_sign: ok\n");
	return 0;
}
