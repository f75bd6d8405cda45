/*
 * The offline commands: verify, dump and export read a log directory and
 * never write to it, so they are safe on a live log (they see a prefix);
 * keygen makes a signing key. verify and export run as sagewai audit runs
 * them (sw_alog_pub.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "sw_alog_pub.h"

/* "--name VALUE" at argv[*i]: the value, else NULL (usage printed). */
static const char *opt_value(int argc, char **argv, int *i, const char *name, const char *usage)
{
	if (strcmp(argv[*i], name) != 0)
		return NULL;
	if (*i + 1 >= argc) {
		fprintf(stderr, "sagewai-audit: %s needs a value\n%s", name, usage);
		exit(2);
	}
	return argv[++*i];
}

static const char verify_usage[] =
	"usage: sagewai-audit verify DIR [--pubkeys FILE] [--checkpoints FILE |\n"
	"                     --checkpoints-from-kafka BOOTSTRAP] [--log-id ID] [--json]\n"
	"       sagewai-audit verify --bundle FILE [--pubkeys FILE] [--json]\n"
	"The public keys default to $SAGEWAI_AUDIT_PUBKEYS.\n";

int audit_cmd_verify(int argc, char **argv)
{
	struct sw_alog_verify_cmd c = {0};
	const char *v;
	char err[600], *report = NULL;
	int i, rc;

	c.pubkeys = getenv("SAGEWAI_AUDIT_PUBKEYS");
	if (c.pubkeys != NULL && *c.pubkeys == '\0')
		c.pubkeys = NULL;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			c.json = 1;
		else if (strcmp(argv[i], "--help") == 0) {
			fputs(verify_usage, stdout);
			return 0;
		} else if ((v = opt_value(argc, argv, &i, "--pubkeys", verify_usage)))
			c.pubkeys = v;
		else if ((v = opt_value(argc, argv, &i, "--checkpoints", verify_usage)))
			c.checkpoints = v;
		else if ((v = opt_value(argc, argv, &i, "--checkpoints-from-kafka", verify_usage)))
			c.kafka = v;
		else if ((v = opt_value(argc, argv, &i, "--log-id", verify_usage)))
			c.log_id = v;
		else if ((v = opt_value(argc, argv, &i, "--bundle", verify_usage)))
			c.bundle = v;
		else if (argv[i][0] == '-' || c.dir != NULL) {
			fprintf(stderr, "sagewai-audit verify: unexpected '%s'\n%s", argv[i],
				verify_usage);
			return 2;
		} else
			c.dir = argv[i];
	}
	rc = sw_alog_verify_run(&c, &report, err, sizeof(err));
	if (rc == 2) {
		fprintf(stderr, "sagewai-audit verify: %s\n", err);
		return 2;
	}
	printf("%s\n", report);
	free(report);
	return rc;
}

static const char keygen_usage[] =
	"usage: sagewai-audit keygen --key-id ID --secret-key FILE [--public-keys FILE]\n"
	"Make an Ed25519 key pair: the secret key into FILE (created, mode 0600: what\n"
	"SAGEWAI_AUDIT_SIGNING_KEY_FILE names), the line \"ID HEX\" of its public key\n"
	"appended to the public keys file (what verifiers are given) and printed.\n"
	"To rotate: make a new key with a new id, keep the old line in the public\n"
	"keys file, point the service at the new secret key and restart it.\n";

int audit_cmd_keygen(int argc, char **argv)
{
	const char *id = NULL, *secret = NULL, *pub = NULL, *v;
	struct sw_alog_keys *have = NULL;
	uint8_t pk[SW_ALOG_PK], old[SW_ALOG_PK];
	char hex[2 * SW_ALOG_PK + 1], err[300];
	FILE *f;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			fputs(keygen_usage, stdout);
			return 0;
		} else if ((v = opt_value(argc, argv, &i, "--key-id", keygen_usage)))
			id = v;
		else if ((v = opt_value(argc, argv, &i, "--secret-key", keygen_usage)))
			secret = v;
		else if ((v = opt_value(argc, argv, &i, "--public-keys", keygen_usage)))
			pub = v;
		else {
			fprintf(stderr, "sagewai-audit keygen: unexpected '%s'\n%s", argv[i],
				keygen_usage);
			return 2;
		}
	}
	if (id == NULL || secret == NULL) {
		fputs(keygen_usage, stderr);
		return 2;
	}
	if (pub != NULL && access(pub, F_OK) == 0) {
		if ((have = sw_alog_keys_load(pub, err, sizeof(err))) == NULL) {
			fprintf(stderr, "sagewai-audit keygen: %s\n", err);
			return 2;
		}
		if (sw_alog_keys_find(have, id, old) == 0) {
			fprintf(stderr, "sagewai-audit keygen: %s already lists key id '%s'\n", pub,
				id);
			sw_alog_keys_destroy(have);
			return 2;
		}
		sw_alog_keys_destroy(have);
	}
	if (sw_alog_keygen(id, secret, pk, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagewai-audit keygen: %s\n", err);
		return 1;
	}
	sw_hex_encode(pk, sizeof(pk), hex);
	if (pub != NULL) {
		if ((f = fopen(pub, "a")) == NULL || fprintf(f, "%s %s\n", id, hex) < 0 ||
		    fflush(f) != 0 || fsync(fileno(f)) != 0) {
			fprintf(stderr, "sagewai-audit keygen: %s: %s\n", pub, strerror(errno));
			if (f != NULL)
				fclose(f);
			return 1;
		}
		fclose(f);
	}
	printf("%s %s\n", id, hex);
	return 0;
}

static const char export_usage[] =
	"usage: sagewai-audit export DIR --run ID [--pubkeys FILE] [-o FILE] [--wait-ms N]\n"
	"Write the bundle of run ID's events in the log DIR (its records, the signed\n"
	"checkpoints covering them, each record's Merkle proof, the public keys) to\n"
	"FILE (default: standard output). Records the next checkpoint will cover, and a\n"
	"run not written yet, are waited for (--wait-ms, default 5000). Public keys:\n"
	"--pubkeys or $SAGEWAI_AUDIT_PUBKEYS. Check it anywhere with:\n"
	"sagewai-audit verify --bundle FILE\n";

int audit_cmd_export(int argc, char **argv)
{
	const char *dir = NULL, *run = NULL, *out = "-", *v;
	const char *pub = getenv("SAGEWAI_AUDIT_PUBKEYS");
	char err[600], *text = NULL;
	size_t n;
	int i, wait_ms = 5000;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			fputs(export_usage, stdout);
			return 0;
		} else if ((v = opt_value(argc, argv, &i, "--run", export_usage)))
			run = v;
		else if ((v = opt_value(argc, argv, &i, "--pubkeys", export_usage)))
			pub = v;
		else if ((v = opt_value(argc, argv, &i, "-o", export_usage)))
			out = v;
		else if ((v = opt_value(argc, argv, &i, "--wait-ms", export_usage)))
			wait_ms = atoi(v);
		else if (argv[i][0] == '-' || dir != NULL) {
			fprintf(stderr, "sagewai-audit export: unexpected '%s'\n%s", argv[i],
				export_usage);
			return 2;
		} else
			dir = argv[i];
	}
	if (dir == NULL || run == NULL) {
		fputs(export_usage, stderr);
		return 2;
	}
	if (pub != NULL && *pub == '\0')
		pub = NULL;
	if (sw_alog_export_run(dir, run, pub, out, wait_ms, &n, &text, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagewai-audit export: %s\n", err);
		return 1;
	}
	if (text != NULL) {
		printf("%s\n", text);
		free(text);
	} else {
		fprintf(stderr, "sagewai-audit export: %zu records of run %s into %s\n", n, run,
			out);
	}
	return 0;
}

struct dump_ctx {
	struct sw_event_registry *reg;
};

static int dump_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct dump_ctx *d = opaque;
	struct sw_alog_checkpoint cp;
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
	} else if (rec->kind == SW_ALOG_CHECKPOINT &&
		   sw_alog_checkpoint_parse(rec->payload, rec->payload_len, &cp) == 0) {
		char h[2 * SW_ALOG_HASH + 1];

		sw_hex_encode(cp.hash, SW_ALOG_HASH, h);
		json_object_set_new(o, "checkpoint",
				    json_pack("{s:s%, s:I, s:s, s:I, s:s}", "log_id", rec->topic,
					      rec->topic_len, "seq", (json_int_t)cp.seq, "hash", h,
					      "prev_seq", (json_int_t)rec->offset, "key_id",
					      cp.key_id));
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
