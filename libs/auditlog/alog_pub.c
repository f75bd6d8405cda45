/*
 * alog_pub.c: published checkpoints (the audit.checkpoint events) and the
 * reports of the verify commands. See sw_alog_pub.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "alog_int.h"
#include "sw_alog_pub.h"
#include "sw_bus.h"
#include "sw_core.h"

#define PUB_LINE_MAX (64u << 10)

int sw_alog_pub_encode(struct sw_event_registry *reg, const struct sw_alog_checkpoint *cp,
		       void **msg, size_t *len, char *errstr, size_t errlen)
{
	char hash[2 * SW_ALOG_HASH + 1], root[2 * SW_ALOG_HASH + 1], sig[2 * SW_ALOG_SIG + 1];
	struct sw_event_header h;
	json_t *o;
	int rc;

	sw_hex_encode(cp->hash, SW_ALOG_HASH, hash);
	sw_hex_encode(cp->root, SW_ALOG_HASH, root);
	sw_hex_encode(cp->sig, SW_ALOG_SIG, sig);
	sw_event_header_init(&h, "audit.checkpoint", "sagewai-audit");
	h.time_us = cp->time_us;
	o = json_pack("{s:s, s:I, s:s, s:I, s:s, s:s, s:s}", "log_id", cp->log_id, "seq",
		      (json_int_t)cp->seq, "hash", hash, "prev_checkpoint_seq",
		      cp->prev_seq == 0 ? (json_int_t)-1 : (json_int_t)cp->prev_seq, "key_id",
		      cp->key_id, "signature", sig, "root", root);
	if (o == NULL) {
		alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	rc = sw_event_encode(reg, "audit.checkpoint", &h, o, msg, len, errstr, errlen);
	json_decref(o);
	return rc;
}

/* A hex string field of exactly n bytes into out. */
static int hex_field(json_t *ev, const char *name, uint8_t *out, size_t n)
{
	const char *s = json_string_value(json_object_get(ev, name));

	return s != NULL && strlen(s) == 2 * n && sw_hex_decode(s, out, n) == 0 ? 0 : -1;
}

int sw_alog_pub_from_json(json_t *ev, struct sw_alog_checkpoint *cp, char *errstr, size_t errlen)
{
	json_t *h = json_object_get(ev, "header"), *seq, *prev, *time;
	const char *type = json_string_value(json_object_get(h, "type"));
	const char *log_id = json_string_value(json_object_get(ev, "log_id"));
	const char *key_id = json_string_value(json_object_get(ev, "key_id"));
	const char *root = json_string_value(json_object_get(ev, "root"));

	if (!json_is_object(ev) || type == NULL) {
		alog_err(errstr, errlen, "not an event (no header.type)");
		return -1;
	}
	if (strcmp(type, "audit.checkpoint") != 0)
		return 0;
	memset(cp, 0, sizeof(*cp));
	seq = json_object_get(ev, "seq");
	prev = json_object_get(ev, "prev_checkpoint_seq");
	time = json_object_get(h, "time");
	if (!sw_alog_id_ok(log_id, SW_ALOG_LOG_ID_MAX) ||
	    !sw_alog_id_ok(key_id, SW_ALOG_KEY_ID_MAX) || !json_is_integer(seq) || json_integer_value(seq) < 1 || !json_is_integer(prev) ||
	    json_integer_value(prev) < -1 || !json_is_integer(time) ||
	    hex_field(ev, "hash", cp->hash, SW_ALOG_HASH) != 0 ||
	    hex_field(ev, "signature", cp->sig, SW_ALOG_SIG) != 0) {
		alog_err(errstr, errlen,
			 "malformed audit.checkpoint (log_id, key_id, seq, prev_checkpoint_seq, "
			 "header.time, hash of 32 bytes, signature of 64)");
		return -1;
	}
	if (root == NULL || root[0] == '\0' || hex_field(ev, "root", cp->root, SW_ALOG_HASH) != 0) {
		alog_err(errstr, errlen,
			 "audit.checkpoint of seq %lld has no Merkle root: it cannot be checked",
			 (long long)json_integer_value(seq));
		return -1;
	}
	snprintf(cp->log_id, sizeof(cp->log_id), "%s", log_id);
	snprintf(cp->key_id, sizeof(cp->key_id), "%s", key_id);
	cp->seq = (uint64_t)json_integer_value(seq);
	cp->prev_seq = json_integer_value(prev) < 0 ? 0 : (uint64_t)json_integer_value(prev);
	cp->time_us = (int64_t)json_integer_value(time);
	return 1;
}

int sw_alog_pub_from_msg(struct sw_event_registry *reg, const void *msg, size_t len,
			 struct sw_alog_checkpoint *cp, char *errstr, size_t errlen)
{
	json_t *ev = sw_event_decode(reg, msg, len, errstr, errlen);
	int rc;

	if (ev == NULL)
		return -1;
	rc = sw_alog_pub_from_json(ev, cp, errstr, errlen);
	json_decref(ev);
	return rc;
}

void sw_alog_pubset_free(struct sw_alog_pubset *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int pubset_add(struct sw_alog_pubset *s, const struct sw_alog_checkpoint *cp)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct sw_alog_checkpoint *nv = realloc(s->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = *cp;
	return 0;
}

/* One line of a checkpoints file: 1 added, 0 skipped, -1 (why). */
static int pub_line(struct sw_event_registry *reg, char *line, struct sw_alog_pubset *s,
		    char *why, size_t whylen)
{
	struct sw_alog_checkpoint cp;
	size_t n = strlen(line);
	json_error_t je;
	uint8_t *raw;
	json_t *ev;
	int rc;

	while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
		line[--n] = '\0';
	while (*line == ' ' || *line == '\t')
		line++, n--;
	if (n == 0 || line[0] == '#')
		return 0;
	if (line[0] == '{') {
		if ((ev = json_loads(line, 0, &je)) == NULL) {
			alog_err(why, whylen, "not JSON: %s", je.text);
			return -1;
		}
		rc = sw_alog_pub_from_json(ev, &cp, why, whylen);
		json_decref(ev);
	} else {
		if (n % 2 != 0 || (raw = malloc(n / 2 + 1)) == NULL ||
		    sw_hex_decode(line, raw, n / 2) != 0) {
			if (n % 2 == 0)
				free(raw);
			alog_err(why, whylen, "neither a JSON event nor a message in hex");
			return -1;
		}
		rc = sw_alog_pub_from_msg(reg, raw, n / 2, &cp, why, whylen);
		free(raw);
	}
	if (rc == 0)
		s->other++;
	if (rc != 1)
		return rc;
	if (pubset_add(s, &cp) != 0) {
		alog_err(why, whylen, "out of memory");
		return -1;
	}
	return 1;
}

int sw_alog_pub_read_file(struct sw_event_registry *reg, const char *path,
			  struct sw_alog_pubset *s, char *errstr, size_t errlen)
{
	char *line = NULL, why[300];
	size_t cap = 0;
	unsigned lineno = 0;
	ssize_t got;
	FILE *f;
	int ret = 0;

	if ((f = fopen(path, "re")) == NULL) {
		alog_err(errstr, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((got = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if ((size_t)got > PUB_LINE_MAX || memchr(line, '\0', (size_t)got) != NULL) {
			alog_err(errstr, errlen, "%s line %u: too long, or a NUL byte", path, lineno);
			ret = -1;
			break;
		}
		if (got > 0 && line[got - 1] == '\n')
			line[got - 1] = '\0';
		if (pub_line(reg, line, s, why, sizeof(why)) < 0) {
			alog_err(errstr, errlen, "%s line %u: %s", path, lineno, why);
			ret = -1;
			break;
		}
	}
	if (ret == 0 && ferror(f)) {
		alog_err(errstr, errlen, "%s: read error", path);
		ret = -1;
	}
	free(line);
	fclose(f);
	return ret;
}

struct kread {
	struct sw_event_registry *reg;
	struct sw_alog_pubset *s;
	int oom;
};

static int kread_msg(const struct sw_bus_msg *m, void *opaque)
{
	struct kread *k = opaque;
	struct sw_alog_checkpoint cp;
	char why[200];
	int rc = m->value ? sw_alog_pub_from_msg(k->reg, m->value, m->len, &cp, why, sizeof(why))
			  : -1;

	if (rc == 0)
		k->s->other++;
	else if (rc < 0)
		k->s->unreadable++;
	else if (pubset_add(k->s, &cp) != 0) {
		k->oom = 1;
		return 1;
	}
	return 0;
}

int sw_alog_pub_read_kafka(struct sw_event_registry *reg, const char *bootstrap, int timeout_ms,
			   struct sw_alog_pubset *s, char *errstr, size_t errlen)
{
	struct kread k = {.reg = reg, .s = s};

	if (sw_bus_read_topic(bootstrap, SW_TOPIC_AUDIT_CHECKPOINTS, NULL, timeout_ms, kread_msg,
			      &k, errstr, errlen) != 0) {
		if (k.oom)
			alog_err(errstr, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* ---- reports ------------------------------------------------------------------- */

void sw_alog_report_text(const struct sw_alog_check_result *r, char *out, size_t outlen)
{
	char h[2 * SW_ALOG_HASH + 1], place[80] = "", pub[200] = "", tail[120] = "";

	if (!r->v.ok) {
		if (r->v.segment != 0)
			snprintf(place, sizeof(place), " (segment %020" PRIu64 ", byte %" PRIu64 ")",
				 r->v.segment, r->v.file_off);
		snprintf(out, outlen,
			 "BAD: record seq %" PRIu64 "%s: %s; %" PRIu64 " records before it verified",
			 r->v.bad_seq, place, r->v.reason, r->v.records);
		return;
	}
	sw_hex_encode(r->v.last_hash, SW_ALOG_HASH, h);
	if (r->published > 0 || r->published_other > 0)
		snprintf(pub, sizeof(pub),
			 ", %" PRIu64 " published checkpoints match (%" PRIu64
			 " of other logs skipped)",
			 r->published_ok, r->published_other);
	if (r->v.checkpoints == 0)
		snprintf(tail, sizeof(tail), "; no checkpoint: a deleted tail goes unseen");
	else if (r->covered_seq + 1 < r->last_seq) /* covered_seq + 1: the checkpoint */
		snprintf(tail, sizeof(tail),
			 "; records %" PRIu64 "..%" PRIu64 " not yet covered by a checkpoint",
			 r->covered_seq + 2, r->last_seq);
	snprintf(out, outlen,
		 "ok: %" PRIu64 " records, %" PRIu64 " checkpoints, chain head %s; %" PRIu64
		 " signatures good%s%s%s%s",
		 r->v.records, r->v.checkpoints, h, r->signed_ok, pub,
		 r->log_id[0] ? ", log " : "", r->log_id, tail);
}

json_t *sw_alog_report_json(const struct sw_alog_check_result *r)
{
	char h[2 * SW_ALOG_HASH + 1];
	json_t *o;

	sw_hex_encode(r->v.last_hash, SW_ALOG_HASH, h);
	o = json_pack("{s:b, s:I, s:I, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "ok", r->v.ok,
		      "records", (json_int_t)r->v.records, "checkpoints",
		      (json_int_t)r->v.checkpoints, "signatures_ok", (json_int_t)r->signed_ok,
		      "last_hash", h, "log_id", r->log_id, "covered_seq",
		      (json_int_t)r->covered_seq, "published", (json_int_t)r->published,
		      "published_ok", (json_int_t)r->published_ok, "published_other",
		      (json_int_t)r->published_other, "published_max",
		      (json_int_t)r->published_max);
	if (o != NULL && !r->v.ok) {
		json_object_set_new(o, "bad_seq", json_integer((json_int_t)r->v.bad_seq));
		if (r->v.segment != 0) {
			json_object_set_new(o, "segment", json_integer((json_int_t)r->v.segment));
			json_object_set_new(o, "file_offset",
					    json_integer((json_int_t)r->v.file_off));
		}
		json_object_set_new(o, "reason", json_string(r->v.reason));
	}
	return o;
}

void sw_alog_bundle_report_text(const struct sw_alog_bundle_result *r, char *out, size_t outlen)
{
	if (!r->ok) {
		if (r->bad_seq != 0)
			snprintf(out, outlen, "BAD: record seq %" PRIu64 ": %s", r->bad_seq,
				 r->reason);
		else
			snprintf(out, outlen, "BAD: %s", r->reason);
		return;
	}
	snprintf(out, outlen,
		 "ok: %" PRIu64 " records of run %s in log %s, proven by %" PRIu64
		 " signed checkpoints (%s)",
		 r->records, r->run_id, r->log_id, r->checkpoints,
		 r->pinned ? "keys: the verifier's own"
			   : "keys: the bundle's own, not pinned: give --pubkeys to pin them");
}

json_t *sw_alog_bundle_report_json(const struct sw_alog_bundle_result *r)
{
	json_t *o = json_pack("{s:b, s:I, s:I, s:s, s:s, s:b}", "ok", r->ok, "records",
			      (json_int_t)r->records, "checkpoints", (json_int_t)r->checkpoints,
			      "run_id", r->run_id, "log_id", r->log_id, "keys_pinned", r->pinned);

	if (o != NULL && !r->ok) {
		if (r->bad_seq != 0)
			json_object_set_new(o, "bad_seq", json_integer((json_int_t)r->bad_seq));
		json_object_set_new(o, "reason", json_string(r->reason));
	}
	return o;
}
