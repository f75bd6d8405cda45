/*
 * alog_bundle.c: one run's records with what proves them, built from a log
 * in one pass and checked without it. See sw_alog_pub.h.
 *
 * Building: the records since the last checkpoint record are kept as
 * leaves (their hashes); a record of the run waits, with its bytes and its
 * leaf index, for the checkpoint record that closes its interval, which
 * then gives the root, the signed statement and every waiting record's
 * proof.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "alog_int.h"
#include "sw_alog_pub.h"
#include "sw_core.h"

#define BUNDLE_PROOF_MAX (3 * SW_ALOG_MT_LEVELS)

struct waiting {
	uint64_t seq;
	uint64_t leaf; /* index among the interval's leaves */
	char *hex;     /* the record's bytes, hex */
};

struct build {
	struct sw_event_registry *reg;
	const char *run_id;
	const struct sw_alog_keys *keys;
	uint8_t prev[SW_ALOG_HASH]; /* the hash of the record before */
	uint64_t prev_seq;	    /* what the last checkpoint covered */
	uint8_t (*leaves)[SW_ALOG_HASH];
	uint64_t nleaves, capleaves;
	struct waiting *w;
	size_t nw, capw;
	json_t *records, *checkpoints, *pubkeys;
	char log_id[SW_ALOG_LOG_ID_MAX + 1];
	char *err;
	size_t errlen;
};

/* The record's bytes as they lie in the log, rebuilt from its fields and
 * the hash before it; hex, malloc'd. NULL when its hash does not come out
 * (cannot happen for a record the scan checked). */
static char *record_hex(const struct sw_alog_rec *rec, const uint8_t prev[SW_ALOG_HASH])
{
	size_t body = ALOG_BODY_MIN + rec->topic_len + rec->payload_len;
	size_t size = ALOG_REC_OVER + body;
	uint8_t *p = malloc(size), h[SW_ALOG_HASH];
	char *hex = NULL;

	if (p == NULL)
		return NULL;
	alog_put32(p, (uint32_t)body);
	alog_put64(p + 4, rec->seq);
	memcpy(p + 12, prev, SW_ALOG_HASH);
	p[ALOG_REC_HEAD] = rec->kind;
	alog_put16(p + ALOG_REC_HEAD + 1, (uint16_t)rec->topic_len);
	memcpy(p + ALOG_REC_HEAD + 3, rec->topic, rec->topic_len);
	alog_put32(p + ALOG_REC_HEAD + 3 + rec->topic_len, (uint32_t)rec->partition);
	alog_put64(p + ALOG_REC_HEAD + 7 + rec->topic_len, (uint64_t)rec->offset);
	alog_put64(p + ALOG_REC_HEAD + 15 + rec->topic_len, (uint64_t)rec->time_us);
	memcpy(p + ALOG_REC_HEAD + ALOG_BODY_MIN + rec->topic_len, rec->payload, rec->payload_len);
	alog_rec_hash(p, (uint32_t)body, h);
	memcpy(p + ALOG_REC_HEAD + body, h, SW_ALOG_HASH);
	if (memcmp(h, rec->hash, SW_ALOG_HASH) == 0)
		hex = sw_hex_dup(p, size);
	free(p);
	return hex;
}

static int of_run(struct build *b, const struct sw_alog_rec *rec)
{
	struct sw_event_header h;
	char e[128];

	return rec->kind == SW_ALOG_EVENT &&
	       sw_event_decode_header(b->reg, rec->payload, rec->payload_len, &h, e, sizeof(e)) ==
		       0 &&
	       strcmp(h.run_id, b->run_id) == 0;
}

static int add_leaf(struct build *b, const uint8_t hash[SW_ALOG_HASH])
{
	if (b->nleaves == b->capleaves) {
		uint64_t cap = b->capleaves ? b->capleaves * 2 : 4096;
		uint8_t(*nl)[SW_ALOG_HASH] = realloc(b->leaves, (size_t)cap * SW_ALOG_HASH);

		if (nl == NULL)
			return -1;
		b->leaves = nl;
		b->capleaves = cap;
	}
	memcpy(b->leaves[b->nleaves++], hash, SW_ALOG_HASH);
	return 0;
}

/* The public key of key_id into the bundle once. */
static int add_pubkey(struct build *b, const char *key_id)
{
	uint8_t pk[SW_ALOG_PK];
	char hex[2 * SW_ALOG_PK + 1];
	size_t i;
	json_t *k;

	json_array_foreach(b->pubkeys, i, k)
		if (strcmp(json_string_value(json_object_get(k, "key_id")), key_id) == 0)
			return 0;
	if (sw_alog_keys_find(b->keys, key_id, pk) != 0) {
		alog_err(b->err, b->errlen,
			 "checkpoints are signed by key '%s', which the public keys given do not "
			 "list",
			 key_id);
		return -1;
	}
	sw_hex_encode(pk, SW_ALOG_PK, hex);
	return json_array_append_new(b->pubkeys, json_pack("{s:s, s:s}", "key_id", key_id,
							   "public_key", hex));
}

/* A checkpoint record closes the interval: the waiting records go into the
 * bundle with their proofs, under this checkpoint. */
static int close_interval(struct build *b, const struct sw_alog_rec *rec)
{
	struct sw_alog_checkpoint cp;
	struct sw_alog_mtree t;
	uint8_t proof[BUNDLE_PROOF_MAX][SW_ALOG_HASH];
	char hash[2 * SW_ALOG_HASH + 1], root[2 * SW_ALOG_HASH + 1], sig[2 * SW_ALOG_SIG + 1];
	char ph[2 * SW_ALOG_HASH + 1];
	json_t *arr;
	size_t i, idx;
	uint64_t k;
	int np;

	memset(&cp, 0, sizeof(cp));
	if (sw_alog_checkpoint_parse(rec->payload, rec->payload_len, &cp) != 0 ||
	    rec->topic_len == 0 || rec->topic_len > SW_ALOG_LOG_ID_MAX) {
		alog_err(b->err, b->errlen, "record %" PRIu64 ": malformed checkpoint", rec->seq);
		return -1;
	}
	memcpy(cp.log_id, rec->topic, rec->topic_len);
	cp.log_id[rec->topic_len] = '\0';
	if (b->log_id[0] == '\0')
		snprintf(b->log_id, sizeof(b->log_id), "%s", cp.log_id);
	if (b->nw == 0)
		goto done;
	if (strcmp(cp.log_id, b->log_id) != 0 || cp.seq + 1 != rec->seq) {
		alog_err(b->err, b->errlen,
			 "record %" PRIu64 ": a checkpoint of another log or place; run sagewai "
			 "audit verify on this log",
			 rec->seq);
		return -1;
	}
	sw_alog_mtree_init(&t);
	for (k = 0; k < b->nleaves; k++)
		sw_alog_mtree_add(&t, b->leaves[k]);
	if (sw_alog_mtree_root(&t, cp.root) != 0)
		return -1;
	if (add_pubkey(b, cp.key_id) != 0)
		return -1;
	sw_hex_encode(cp.hash, SW_ALOG_HASH, hash);
	sw_hex_encode(cp.root, SW_ALOG_HASH, root);
	sw_hex_encode(cp.sig, SW_ALOG_SIG, sig);
	idx = json_array_size(b->checkpoints);
	if (json_array_append_new(b->checkpoints,
				  json_pack("{s:I, s:s, s:I, s:s, s:I, s:s, s:s}", "seq",
					    (json_int_t)cp.seq, "hash", hash, "prev_seq",
					    (json_int_t)b->prev_seq, "root", root, "time_us",
					    (json_int_t)rec->time_us, "key_id", cp.key_id,
					    "signature", sig)) != 0)
		goto oom;
	for (i = 0; i < b->nw; i++) {
		struct waiting *w = &b->w[i];

		np = sw_alog_mtree_proof((const uint8_t(*)[SW_ALOG_HASH])b->leaves, b->nleaves,
					 w->leaf, proof, BUNDLE_PROOF_MAX);
		if (np < 0 || (arr = json_array()) == NULL)
			goto oom;
		for (k = 0; k < (uint64_t)np; k++) {
			sw_hex_encode(proof[k], SW_ALOG_HASH, ph);
			json_array_append_new(arr, json_string(ph));
		}
		if (json_array_append_new(b->records,
					  json_pack("{s:I, s:s, s:I, s:o}", "seq",
						    (json_int_t)w->seq, "record", w->hex,
						    "checkpoint", (json_int_t)idx, "proof", arr)) !=
		    0)
			goto oom;
		free(w->hex);
		w->hex = NULL;
	}
	b->nw = 0;
done:
	b->prev_seq = cp.seq;
	b->nleaves = 0;
	return 0;
oom:
	alog_err(b->err, b->errlen, "out of memory");
	return -1;
}

static int build_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct build *b = opaque;

	if (rec->kind == SW_ALOG_CHECKPOINT && close_interval(b, rec) != 0)
		return -1;
	if (rec->kind != SW_ALOG_CHECKPOINT && of_run(b, rec)) {
		if (b->nw == b->capw) {
			size_t cap = b->capw ? b->capw * 2 : 64;
			struct waiting *nw = realloc(b->w, cap * sizeof(*nw));

			if (nw == NULL)
				goto oom;
			b->w = nw;
			b->capw = cap;
		}
		b->w[b->nw].seq = rec->seq;
		b->w[b->nw].leaf = b->nleaves;
		if ((b->w[b->nw].hex = record_hex(rec, b->prev)) == NULL)
			goto oom;
		b->nw++;
	}
	if (add_leaf(b, rec->hash) != 0)
		goto oom;
	memcpy(b->prev, rec->hash, SW_ALOG_HASH);
	return 0;
oom:
	alog_err(b->err, b->errlen, "out of memory");
	return -1;
}

json_t *sw_alog_bundle_build(const char *dir, const char *run_id, struct sw_event_registry *reg,
			     const struct sw_alog_keys *keys, int *uncovered, char *errstr,
			     size_t errlen)
{
	struct build b = {.reg = reg, .run_id = run_id, .keys = keys, .err = errstr,
			  .errlen = errlen};
	json_t *out = NULL;
	size_t i;

	*uncovered = 0;
	b.records = json_array();
	b.checkpoints = json_array();
	b.pubkeys = json_array();
	if (b.records == NULL || b.checkpoints == NULL || b.pubkeys == NULL) {
		alog_err(errstr, errlen, "out of memory");
		goto out;
	}
	if (sw_alog_scan(dir, 1, build_rec, &b, errstr, errlen) != 0)
		goto out;
	if (b.nw > 0) {
		*uncovered = 1;
		alog_err(errstr, errlen,
			 "record %" PRIu64 " of run %s is not covered by a checkpoint yet (%s)",
			 b.w[0].seq, run_id,
			 b.log_id[0] ? "the next one comes within a second while the service runs"
				     : "the log has no checkpoint: is a signing key configured?");
		goto out;
	}
	if (json_array_size(b.records) == 0) {
		/* not yet, perhaps: the service trails the bus (gathering) */
		*uncovered = 1;
		alog_err(errstr, errlen, "the log holds no event of run %s", run_id);
		goto out;
	}
	out = json_pack("{s:s, s:s, s:s, s:O, s:O, s:O}", "format", SW_ALOG_BUNDLE_FORMAT,
			"log_id", b.log_id, "run_id", run_id, "public_keys", b.pubkeys,
			"checkpoints", b.checkpoints, "records", b.records);
	if (out == NULL)
		alog_err(errstr, errlen, "out of memory");
out:
	for (i = 0; i < b.nw; i++)
		free(b.w[i].hex);
	free(b.w);
	free(b.leaves);
	json_decref(b.records);
	json_decref(b.checkpoints);
	json_decref(b.pubkeys);
	return out;
}

/* ---- checking ------------------------------------------------------------------- */

static int json_u64(json_t *o, const char *name, uint64_t *v)
{
	json_t *x = json_object_get(o, name);

	if (!json_is_integer(x) || json_integer_value(x) < 0)
		return -1;
	*v = (uint64_t)json_integer_value(x);
	return 0;
}

static int json_hex(json_t *o, const char *name, uint8_t *out, size_t n)
{
	const char *s = json_string_value(json_object_get(o, name));

	return s != NULL && strlen(s) == 2 * n && sw_hex_decode(s, out, n) == 0 ? 0 : -1;
}

struct bcp {
	struct sw_alog_checkpoint cp;
	int ok;
	char why[200];
};

static void bundle_bad(struct sw_alog_bundle_result *res, uint64_t seq, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void bundle_bad(struct sw_alog_bundle_result *res, uint64_t seq, const char *fmt, ...)
{
	va_list ap;

	res->ok = 0;
	res->bad_seq = seq;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

/* One record of the bundle: 0 checks, -1 (res filled). */
static int check_record(json_t *r, const struct bcp *cps, size_t ncp, uint64_t last_seq,
			struct sw_event_registry *reg, struct sw_alog_bundle_result *res)
{
	const char *hex = json_string_value(json_object_get(r, "record"));
	uint8_t *bytes = NULL, proof[BUNDLE_PROOF_MAX][SW_ALOG_HASH], root[SW_ALOG_HASH];
	json_t *parr = json_object_get(r, "proof"), *x;
	struct sw_event_header h;
	struct sw_alog_rec rec;
	struct alog_view v;
	uint64_t seq = 0, ci;
	size_t n, i, np;
	char why[160];
	int ret = -1;

	if (json_u64(r, "seq", &seq) != 0 || seq == 0) {
		bundle_bad(res, 0, "a record without a seq");
		return -1;
	}
	if (seq <= last_seq) {
		bundle_bad(res, seq, "records out of order or repeated");
		return -1;
	}
	if (hex == NULL || (n = strlen(hex)) % 2 != 0 || n / 2 < ALOG_REC_OVER + ALOG_BODY_MIN ||
	    n / 2 > ALOG_REC_OVER + SW_ALOG_MAX_RECORD || (bytes = malloc(n / 2)) == NULL ||
	    sw_hex_decode(hex, bytes, n / 2) != 0) {
		bundle_bad(res, seq, "the record's bytes are missing or not hex");
		goto out;
	}
	switch (alog_rec_view(bytes, n / 2, 1, &v)) {
	case ALOG_OK:
		break;
	case ALOG_BADHASH:
		bundle_bad(res, seq, "hash mismatch: the record was altered");
		goto out;
	default:
		bundle_bad(res, seq, "malformed record (length)");
		goto out;
	}
	if (v.size != n / 2 || v.seq != seq) {
		bundle_bad(res, seq, "the record's bytes are not one record of seq %" PRIu64, seq);
		goto out;
	}
	if (alog_body_parse(v.body, v.len, &rec, why, sizeof(why)) != 0) {
		bundle_bad(res, seq, "%s", why);
		goto out;
	}
	if (rec.kind != SW_ALOG_EVENT ||
	    sw_event_decode_header(reg, rec.payload, rec.payload_len, &h, why, sizeof(why)) != 0) {
		bundle_bad(res, seq, "not an event that decodes (%s)",
			   rec.kind != SW_ALOG_EVENT ? "kind" : why);
		goto out;
	}
	if (strcmp(h.run_id, res->run_id) != 0) {
		bundle_bad(res, seq, "an event of run '%.60s', not of the bundle's run", h.run_id);
		goto out;
	}
	if (json_u64(r, "checkpoint", &ci) != 0 || ci >= ncp) {
		bundle_bad(res, seq, "names no checkpoint of the bundle");
		goto out;
	}
	if (!cps[ci].ok) {
		bundle_bad(res, seq, "its checkpoint (records %" PRIu64 "..%" PRIu64 "): %s",
			   cps[ci].cp.prev_seq + 1, cps[ci].cp.seq, cps[ci].why);
		goto out;
	}
	if (seq <= cps[ci].cp.prev_seq || seq > cps[ci].cp.seq) {
		bundle_bad(res, seq, "its checkpoint covers records %" PRIu64 "..%" PRIu64 " only",
			   cps[ci].cp.prev_seq + 1, cps[ci].cp.seq);
		goto out;
	}
	np = json_array_size(parr);
	if (!json_is_array(parr) || np > BUNDLE_PROOF_MAX) {
		bundle_bad(res, seq, "malformed proof");
		goto out;
	}
	json_array_foreach(parr, i, x) {
		const char *s = json_string_value(x);

		if (s == NULL || strlen(s) != 2 * SW_ALOG_HASH ||
		    sw_hex_decode(s, proof[i], SW_ALOG_HASH) != 0) {
			bundle_bad(res, seq, "malformed proof");
			goto out;
		}
	}
	if (sw_alog_mtree_climb(v.hash, cps[ci].cp.seq - cps[ci].cp.prev_seq,
				seq - cps[ci].cp.prev_seq - 1, (const uint8_t(*)[SW_ALOG_HASH])proof,
				np, root) != 0 ||
	    memcmp(root, cps[ci].cp.root, SW_ALOG_HASH) != 0) {
		bundle_bad(res, seq,
			   "not in the log its checkpoint signed: the Merkle proof does not lead "
			   "to the signed root (the record, its seq or its proof was altered)");
		goto out;
	}
	ret = 0;
out:
	free(bytes);
	return ret;
}

int sw_alog_bundle_check(json_t *bundle, struct sw_event_registry *reg,
			 const struct sw_alog_keys *pinned, struct sw_alog_bundle_result *res,
			 char *errstr, size_t errlen)
{
	const char *format = json_string_value(json_object_get(bundle, "format"));
	const char *log_id = json_string_value(json_object_get(bundle, "log_id"));
	const char *run_id = json_string_value(json_object_get(bundle, "run_id"));
	json_t *keys_j = json_object_get(bundle, "public_keys");
	json_t *cps_j = json_object_get(bundle, "checkpoints");
	json_t *recs_j = json_object_get(bundle, "records"), *x;
	struct sw_alog_keys *own = NULL;
	const struct sw_alog_keys *keys;
	struct bcp *cps = NULL;
	uint64_t last = 0;
	size_t i, ncp;
	int ret = -1;

	memset(res, 0, sizeof(*res));
	if (format == NULL || strcmp(format, SW_ALOG_BUNDLE_FORMAT) != 0 || log_id == NULL ||
	    run_id == NULL || !json_is_array(keys_j) || !json_is_array(cps_j) ||
	    !json_is_array(recs_j)) {
		alog_err(errstr, errlen,
			 "not an audit bundle (format %s with log_id, run_id, public_keys, "
			 "checkpoints, records)",
			 SW_ALOG_BUNDLE_FORMAT);
		return -1;
	}
	res->ok = 1;
	snprintf(res->run_id, sizeof(res->run_id), "%s", run_id);
	snprintf(res->log_id, sizeof(res->log_id), "%s", log_id);
	res->pinned = pinned != NULL;
	if (!sw_alog_id_ok(log_id, SW_ALOG_LOG_ID_MAX)) {
		bundle_bad(res, 0, "malformed log id");
		return 0;
	}
	if (pinned == NULL) {
		if ((own = sw_alog_keys_new()) == NULL)
			goto oom;
		json_array_foreach(keys_j, i, x) {
			const char *id = json_string_value(json_object_get(x, "key_id"));
			uint8_t pk[SW_ALOG_PK];
			char e[160];

			if (id == NULL || json_hex(x, "public_key", pk, SW_ALOG_PK) != 0 ||
			    sw_alog_keys_add(own, id, pk, e, sizeof(e)) != 0) {
				bundle_bad(res, 0, "malformed public key %zu", i);
				ret = 0;
				goto out;
			}
		}
	}
	keys = pinned != NULL ? pinned : own;
	ncp = json_array_size(cps_j);
	res->checkpoints = ncp;
	if ((cps = calloc(ncp ? ncp : 1, sizeof(*cps))) == NULL)
		goto oom;
	json_array_foreach(cps_j, i, x) {
		struct sw_alog_checkpoint *cp = &cps[i].cp;
		const char *kid = json_string_value(json_object_get(x, "key_id"));
		json_t *t = json_object_get(x, "time_us");

		snprintf(cp->log_id, sizeof(cp->log_id), "%s", log_id);
		if (kid == NULL || strlen(kid) > SW_ALOG_KEY_ID_MAX || !json_is_integer(t) ||
		    json_u64(x, "seq", &cp->seq) != 0 ||
		    json_u64(x, "prev_seq", &cp->prev_seq) != 0 || cp->seq <= cp->prev_seq || json_hex(x, "hash", cp->hash, SW_ALOG_HASH) != 0 ||
		    json_hex(x, "root", cp->root, SW_ALOG_HASH) != 0 ||
		    json_hex(x, "signature", cp->sig, SW_ALOG_SIG) != 0) {
			snprintf(cps[i].why, sizeof(cps[i].why), "malformed checkpoint");
			continue;
		}
		snprintf(cp->key_id, sizeof(cp->key_id), "%s", kid);
		cp->time_us = (int64_t)json_integer_value(t);
		cps[i].ok = sw_alog_checkpoint_verify(keys, cp, cps[i].why, sizeof(cps[i].why)) == 0;
	}
	if (json_array_size(recs_j) == 0) {
		bundle_bad(res, 0, "the bundle holds no record");
		ret = 0;
		goto out;
	}
	json_array_foreach(recs_j, i, x) {
		if (check_record(x, cps, ncp, last, reg, res) != 0)
			break;
		json_u64(x, "seq", &last);
		res->records++;
	}
	ret = 0;
	goto out;
oom:
	alog_err(errstr, errlen, "out of memory");
out:
	free(cps);
	sw_alog_keys_destroy(own);
	return ret;
}
