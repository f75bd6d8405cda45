/*
 * The offline commands: verify and dump. They read a log directory and
 * never write to it, so they are safe on a live log (they see a prefix).
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"

int audit_cmd_verify(int argc, char **argv)
{
	struct sw_alog_verify_result r;
	char err[512], h[2 * SW_ALOG_HASH + 1];
	int json = 0, i;
	const char *dir = NULL;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--help") == 0) {
			printf("usage: sagewai-audit verify DIR [--json]\n");
			return 0;
		} else
			dir = argv[i];
	}
	if (dir == NULL) {
		fprintf(stderr, "usage: sagewai-audit verify DIR [--json]\n");
		return 2;
	}
	if (sw_alog_verify(dir, 0, &r, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagewai-audit verify: %s\n", err);
		return 2;
	}
	sw_hex_encode(r.last_hash, SW_ALOG_HASH, h);
	if (json) {
		json_t *o = json_pack("{s:b, s:I, s:I, s:s}", "ok", r.ok, "records",
				      (json_int_t)r.records, "checkpoints",
				      (json_int_t)r.checkpoints, "last_hash", h);
		if (!r.ok) {
			json_object_set_new(o, "bad_seq", json_integer((json_int_t)r.bad_seq));
			json_object_set_new(o, "segment", json_integer((json_int_t)r.segment));
			json_object_set_new(o, "file_offset",
					    json_integer((json_int_t)r.file_off));
			json_object_set_new(o, "reason", json_string(r.reason));
		}
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else if (r.ok) {
		printf("ok: %llu records, %llu checkpoints, chain head %s\n",
		       (unsigned long long)r.records, (unsigned long long)r.checkpoints, h);
	} else {
		printf("BAD: record seq %llu (segment %020llu, byte %llu): %s; %llu records "
		       "before it verified\n",
		       (unsigned long long)r.bad_seq, (unsigned long long)r.segment,
		       (unsigned long long)r.file_off, r.reason, (unsigned long long)r.records);
	}
	return r.ok ? 0 : 1;
}

struct dump_ctx {
	struct sw_event_registry *reg;
};

static int dump_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct dump_ctx *d = opaque;
	char err[256];
	json_t *o, *ev = NULL;

	o = json_pack("{s:I, s:i, s:s%, s:i, s:I, s:I}", "seq", (json_int_t)rec->seq, "kind",
		      rec->kind, "topic", rec->topic, rec->topic_len, "partition",
		      (int)rec->partition, "offset", (json_int_t)rec->offset, "time_us",
		      (json_int_t)rec->time_us);
	if (o == NULL)
		return -1;
	if (rec->kind == SW_ALOG_EVENT) {
		ev = sw_event_decode(d->reg, rec->payload, rec->payload_len, err, sizeof(err));
		if (ev != NULL)
			json_object_set_new(o, "event", ev);
		else
			json_object_set_new(o, "decode_error", json_string(err));
	} else {
		json_object_set_new(o, "bytes", json_integer((json_int_t)rec->payload_len));
	}
	json_dumpf(o, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(o);
	return 0;
}

int audit_cmd_dump(int argc, char **argv)
{
	struct dump_ctx d;
	char err[512];
	const char *dir = NULL;
	uint64_t from = 1;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
			from = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--help") == 0) {
			printf("usage: sagewai-audit dump DIR [--from SEQ]\n");
			return 0;
		} else
			dir = argv[i];
	}
	if (dir == NULL) {
		fprintf(stderr, "usage: sagewai-audit dump DIR [--from SEQ]\n");
		return 2;
	}
	if ((d.reg = sw_events_registry_new(err, sizeof(err))) == NULL) {
		fprintf(stderr, "sagewai-audit dump: %s\n", err);
		return 2;
	}
	rc = sw_alog_scan(dir, from, dump_rec, &d, err, sizeof(err));
	sw_events_registry_destroy(d.reg);
	if (rc != 0) {
		fprintf(stderr, "sagewai-audit dump: %s\n", err);
		return 1;
	}
	return 0;
}
