/*
 * sagewai-event: encode, decode and inspect Sagewai events (Avro
 * single-object messages) from the command line. See usage() below.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <sodium.h>

#include "event.h"
#include "sw_bus.h"
#include "sw_core.h"

#define PROG "sagewai-event"
#define RAW_MAX (64u << 20) /* a length prefix above this means a corrupt stream */

static void usage(FILE *o)
{
	fputs("usage: " PROG " decode [--raw] [--writer FILE.avsc]...\n"
	      "       " PROG " encode [TYPE]\n"
	      "       " PROG " produce --bootstrap BROKERS [--topic TOPIC] [TYPE]\n"
	      "       " PROG " types\n"
	      "       " PROG " schema [--canonical] TYPE\n"
	      "       " PROG " docs\n"
	      "       " PROG " --help\n"
	      "\n"
	      "decode   reads messages from stdin, one per line in base64 (standard\n"
	      "         alphabet, padded), or with --raw each as a 4-byte big-endian\n"
	      "         length and that many bytes; prints one JSON object per message:\n"
	      "         {\"type\": TYPE, \"header\": {...}, ...fields}. A message that does\n"
	      "         not decode is reported on stderr with its line (or message)\n"
	      "         number; decoding goes on and the exit status is 1.\n"
	      "         --writer adds a writer schema (e.g. a newer version of an event).\n"
	      "encode   reads JSON objects, one per line, and prints each as a base64\n"
	      "         single-object message. TYPE may be left out when every object\n"
	      "         has a \"type\" member (as decode prints). Without a \"header\" one\n"
	      "         is made: a fresh UUIDv7 event_id, time now, the type, producer\n"
	      "         \"" PROG "\", run_id \"\"; a partial header gets all but run_id\n"
	      "         where missing.\n"
	      "produce  encodes like encode and sends each event to Kafka (idempotent,\n"
	      "         acks=all), keyed by header.run_id, to TOPIC or by default to the\n"
	      "         topic its schema names (sagewai.topic: run.* to sagewai.runs,\n"
	      "         identity.resolved to sagewai.identity.replies, ...); prints the\n"
	      "         number sent.\n"
	      "types    lists event types, their CRC-64-AVRO fingerprints (as a number\n"
	      "         in hex; on the wire it follows C3 01 little-endian) and names.\n"
	      "schema   prints the schema of TYPE with sagewai.Header expanded, then its\n"
	      "         Parsing Canonical Form; --canonical prints only the latter.\n"
	      "docs     prints the Markdown reference of every event type (topic, key,\n"
	      "         producer, consumers, fields): docs/EVENTS.md is its output.\n"
	      "\n"
	      "Reading a topic with kcat (1.7): -f '%R%s' writes each payload prefixed\n"
	      "with its length as a 32-bit big-endian integer, which is what --raw reads\n"
	      "('%s\\n' alone would break on newline bytes inside messages):\n"
	      "\n"
	      "    kcat -C -b BROKER -t sagewai.runs -o beginning -e -f '%R%s' \\\n"
	      "        | " PROG " decode --raw\n"
	      "\n"
	      "Producing one event with kcat: a file argument to -P is sent as one\n"
	      "message, so decode the base64 into a file first:\n"
	      "\n"
	      "    echo '{\"header\": {\"run_id\": \"R\"}, \"reason\": \"x\"}' \\\n"
	      "        | " PROG " encode run.cancel_requested | base64 -d > ev.bin\n"
	      "    kcat -P -b BROKER -t sagewai.runs -k R ev.bin\n",
	      o);
}

/* The whole file, NUL-terminated (caller frees); NULL with errno set. */
static void *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct sw_buf b = {0};
	char chunk[8192];
	size_t got;
	int e;

	if (f == NULL)
		return NULL;
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (sw_buf_add(&b, chunk, got) == -1)
			break;
	sw_buf_add(&b, "", 0); /* an empty file is "", not NULL */
	if (b.oom || ferror(f)) {
		e = b.oom ? ENOMEM : errno;
		sw_buf_free(&b);
		fclose(f);
		errno = e;
		return NULL;
	}
	fclose(f);
	return sw_buf_steal(&b, len);
}

/* Print one decoded message as {"type": ..., ...event}; 0 or -1. */
static int print_event(struct sw_event_registry *r, const void *msg, size_t len, const char *where,
		       unsigned long no)
{
	char err[512];
	json_t *ev = sw_event_decode(r, msg, len, err, sizeof(err));
	json_t *out;
	const char *type;

	if (ev == NULL) {
		fprintf(stderr, PROG ": %s %lu: %s\n", where, no, err);
		return -1;
	}
	type = json_string_value(json_object_get(json_object_get(ev, "header"), "type"));
	out = json_pack("{s:s}", "type", type ? type : "");
	if (out == NULL || json_object_update(out, ev) < 0 ||
	    json_dumpf(out, stdout, JSON_COMPACT) < 0) {
		fprintf(stderr, PROG ": %s %lu: cannot print\n", where, no);
		json_decref(out);
		json_decref(ev);
		return -1;
	}
	fputc('\n', stdout);
	json_decref(out);
	json_decref(ev);
	return 0;
}

static int decode_lines(struct sw_event_registry *r)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long no = 0;
	int failed = 0;
	unsigned char *bin = NULL;
	size_t bincap = 0;

	while ((n = getline(&line, &cap, stdin)) >= 0) {
		size_t binlen;

		no++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if ((size_t)n / 4 * 3 + 3 > bincap) {
			unsigned char *nb = realloc(bin, bincap = (size_t)n / 4 * 3 + 3);

			if (nb == NULL) {
				fprintf(stderr, PROG ": line %lu: out of memory\n", no);
				failed = 1;
				break;
			}
			bin = nb;
		}
		if (n == 0 || sodium_base642bin(bin, bincap, line, (size_t)n, NULL, &binlen, NULL,
						sodium_base64_VARIANT_ORIGINAL) != 0) {
			fprintf(stderr, PROG ": line %lu: %s\n", no,
				n ? "not base64 (standard alphabet, padded)" : "empty line");
			failed = 1;
			continue;
		}
		if (print_event(r, bin, binlen, "line", no) < 0)
			failed = 1;
	}
	free(line);
	free(bin);
	return failed;
}

static int decode_raw(struct sw_event_registry *r)
{
	unsigned char pre[4], *msg = NULL;
	unsigned long no = 0;
	int failed = 0;
	size_t got;

	while ((got = fread(pre, 1, 4, stdin)) > 0) {
		uint32_t len;

		no++;
		if (got < 4) {
			fprintf(stderr, PROG ": message %lu: stream ends inside a length prefix\n",
				no);
			failed = 1;
			break;
		}
		len = (uint32_t)pre[0] << 24 | (uint32_t)pre[1] << 16 | (uint32_t)pre[2] << 8 |
		      pre[3];
		if (len == 0xffffffffu) { /* kcat's -1: a null payload (tombstone) */
			fprintf(stderr, PROG ": message %lu: null payload\n", no);
			failed = 1;
			continue;
		}
		if (len > RAW_MAX) {
			fprintf(stderr,
				PROG ": message %lu: length %u is not plausible; stopping\n", no,
				len);
			failed = 1;
			break;
		}
		free(msg);
		if ((msg = malloc(len ? len : 1)) == NULL) {
			fprintf(stderr, PROG ": message %lu: out of memory\n", no);
			failed = 1;
			break;
		}
		if (fread(msg, 1, len, stdin) != len) {
			fprintf(stderr, PROG ": message %lu: stream ends inside the message\n",
				no);
			failed = 1;
			break;
		}
		if (print_event(r, msg, len, "message", no) < 0)
			failed = 1;
	}
	free(msg);
	return failed;
}

/* Complete the header of an event we encode; 0 or -1 with err. */
static int fill_header(json_t *ev, const char *type, char *err, size_t errlen)
{
	struct sw_event_header h;
	json_t *hdr = json_object_get(ev, "header");

	sw_event_header_init(&h, type, PROG);
	if (hdr == NULL) {
		/* no header at all: an event of no run; a partial header must
		 * name its run_id itself */
		hdr = json_pack("{s:s}", "run_id", "");
		if (hdr == NULL || json_object_set_new(ev, "header", hdr) < 0)
			goto oom;
	}
	if (!json_is_object(hdr)) {
		snprintf(err, errlen, "header: expected an object");
		return -1;
	}
	if ((json_object_get(hdr, "event_id") == NULL &&
	     json_object_set_new(hdr, "event_id", json_string(h.event_id)) < 0) ||
	    (json_object_get(hdr, "type") == NULL &&
	     json_object_set_new(hdr, "type", json_string(type)) < 0) ||
	    (json_object_get(hdr, "time") == NULL &&
	     json_object_set_new(hdr, "time", json_integer(h.time_us)) < 0) ||
	    (json_object_get(hdr, "producer") == NULL &&
	     json_object_set_new(hdr, "producer", json_string(PROG)) < 0))
		goto oom;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* Where an event of type goes by default: the topic its schema names
 * (sagewai.topic), e.g. identity.resolved to sagewai.identity.replies; a
 * step.dispatched of a mode other than in_process to sandboxd's topic, as
 * the scheduler routes it. */
static void default_topic(struct sw_event_registry *r, const char *type, json_t *ev, char *out,
			  size_t len)
{
	const char *text = sw_events_schema_json(r, type), *t, *mode;
	json_t *s = text != NULL ? json_loads(text, 0, NULL) : NULL;

	mode = json_string_value(json_object_get(ev, "mode"));
	if (strcmp(type, "step.dispatched") == 0 && mode != NULL) {
		snprintf(out, len, "%s", sw_bus_dispatch_topic(mode));
		json_decref(s);
		return;
	}
	t = json_string_value(json_object_get(s, "sagewai.topic"));
	snprintf(out, len, "%s", t != NULL ? t : "sagewai.deadletter");
	json_decref(s);
}

static int delivery_failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err) {
		fprintf(stderr, PROG ": delivery to %s failed: %s\n", rd_kafka_topic_name(m->rkt),
			rd_kafka_err2str(m->err));
		delivery_failed = 1;
	}
}

/* Send one encoded event; 0 or -1 with err. */
static int produce_one(struct sw_event_registry *r, rd_kafka_t *rk, const char *topic_arg,
		       const char *type, json_t *ev, const void *msg, size_t len, char *err,
		       size_t errlen)
{
	json_t *jkey = json_object_get(json_object_get(ev, "header"), "run_id");
	const char *key = json_string_value(jkey);
	char topic[128];
	rd_kafka_resp_err_t e;

	if (topic_arg != NULL)
		snprintf(topic, sizeof(topic), "%s", topic_arg);
	else
		default_topic(r, type, ev, topic, sizeof(topic));
	do {
		e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
				      RD_KAFKA_V_KEY(key, key ? json_string_length(jkey) : 0),
				      RD_KAFKA_V_VALUE((void *)msg, len),
				      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 100);
	} while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
	rd_kafka_poll(rk, 0);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errlen, "produce to %s: %s", topic, rd_kafka_err2str(e));
		return -1;
	}
	return 0;
}

static int encode_lines(struct sw_event_registry *r, const char *type_arg, rd_kafka_t *rk,
			const char *topic_arg, unsigned long *sent)
{
	char *line = NULL, err[512];
	size_t cap = 0;
	ssize_t n;
	unsigned long no = 0;
	int failed = 0;

	while ((n = getline(&line, &cap, stdin)) >= 0) {
		json_error_t jerr;
		json_t *ev = NULL, *jt;
		const char *type = type_arg;
		void *msg = NULL;
		size_t len;
		char *b64 = NULL, tbuf[128];

		no++;
		/* decode prints strings holding U+0000 as \u0000: take them back */
		ev = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
		if (!json_is_object(ev)) {
			snprintf(err, sizeof(err), "not a JSON object%s%s", ev ? "" : ": ",
				 ev ? "" : jerr.text);
			goto bad;
		}
		jt = json_object_get(ev, "type");
		if (jt != NULL) {
			if (!json_is_string(jt) ||
			    strlen(json_string_value(jt)) != json_string_length(jt) ||
			    (type != NULL && strcmp(type, json_string_value(jt)) != 0)) {
				snprintf(err, sizeof(err), "\"type\" member does not match %s",
					 type ? type : "a type name");
				goto bad;
			}
			snprintf(tbuf, sizeof(tbuf), "%s", json_string_value(jt));
			type = tbuf;
			json_object_del(ev, "type");
		}
		if (type == NULL) {
			snprintf(err, sizeof(err), "no TYPE argument and no \"type\" member");
			goto bad;
		}
		if (sw_events_fingerprint(r, type) == 0) {
			snprintf(err, sizeof(err), "unknown event type \"%s\"", type);
			goto bad;
		}
		if (fill_header(ev, type, err, sizeof(err)) < 0 ||
		    sw_event_encode(r, type, NULL, ev, &msg, &len, err, sizeof(err)) < 0)
			goto bad;
		if (rk != NULL) {
			int prc = produce_one(r, rk, topic_arg, type, ev, msg, len, err, sizeof(err));

			free(msg);
			if (prc < 0)
				goto bad;
			(*sent)++;
			json_decref(ev);
			continue;
		}
		b64 = malloc(sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL));
		if (b64 == NULL) {
			snprintf(err, sizeof(err), "out of memory");
			free(msg);
			goto bad;
		}
		sodium_bin2base64(b64,
				  sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL),
				  msg, len, sodium_base64_VARIANT_ORIGINAL);
		puts(b64);
		free(b64);
		free(msg);
		json_decref(ev);
		continue;
	bad:
		fprintf(stderr, PROG ": line %lu: %s\n", no, err);
		failed = 1;
		json_decref(ev);
	}
	free(line);
	return failed;
}

static int cmd_schema(struct sw_event_registry *r, int argc, char **argv)
{
	int canon_only = 0;
	const char *type = NULL, *text, *canon;
	json_t *j;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--canonical") == 0)
			canon_only = 1;
		else if (type == NULL)
			type = argv[i];
		else
			type = NULL, i = argc;
	}
	if (type == NULL || (text = sw_events_schema_json(r, type)) == NULL) {
		fprintf(stderr, PROG ": schema: %s (see " PROG " types)\n",
			type ? "unknown type" : "one TYPE expected");
		return 2;
	}
	canon = sw_events_schema_canonical(r, type);
	if (canon_only) {
		puts(canon);
		return 0;
	}
	j = json_loads(text, 0, NULL);
	if (j == NULL || json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0) {
		json_decref(j);
		return 1;
	}
	json_decref(j);
	printf("\n\n# Parsing Canonical Form, CRC-64-AVRO %016llx\n%s\n",
	       (unsigned long long)sw_events_fingerprint(r, type), canon);
	return 0;
}

static int cmd_produce(struct sw_event_registry *r, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"bootstrap", required_argument, NULL, 'b'},
	    {"topic", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	const char *bootstrap = NULL, *topic = NULL, *type = NULL;
	char err[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	unsigned long sent = 0;
	int c, rc;

	optind = 2;
	while ((c = getopt_long(argc, argv, "b:t:", opts, NULL)) != -1) {
		if (c == 'b')
			bootstrap = optarg;
		else if (c == 't')
			topic = optarg;
		else {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		type = argv[optind++];
	if (bootstrap == NULL || optind != argc ||
	    (type != NULL && sw_events_fingerprint(r, type) == 0)) {
		fprintf(stderr, PROG ": produce needs --bootstrap and at most one known TYPE\n");
		return 2;
	}
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)) ||
	    rd_kafka_conf_set(conf, "acks", "all", err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		rd_kafka_conf_destroy(conf);
		return 2;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	rc = encode_lines(r, type, rk, topic, &sent);
	if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, PROG ": %d events not delivered in 30 s\n", rd_kafka_outq_len(rk));
		rc = 1;
	}
	rd_kafka_destroy(rk);
	if (delivery_failed)
		rc = 1;
	printf("%lu events sent\n", sent);
	return rc;
}

int main(int argc, char **argv)
{
	struct sw_event_registry *r;
	char err[512];
	int rc = 0;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, PROG ": libsodium init failed\n");
		return 1;
	}
	if ((r = sw_events_registry_new(err, sizeof(err))) == NULL) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	if (strcmp(argv[1], "decode") == 0) {
		static const struct option opts[] = {
		    {"raw", no_argument, NULL, 'r'},
		    {"writer", required_argument, NULL, 'w'},
		    {"help", no_argument, NULL, 'h'},
		    {NULL, 0, NULL, 0},
		};
		int raw = 0, c;

		optind = 2;
		while ((c = getopt_long(argc, argv, "rw:h", opts, NULL)) != -1) {
			size_t len;
			char *avsc;

			switch (c) {
			case 'r':
				raw = 1;
				break;
			case 'w':
				if ((avsc = read_file(optarg, &len)) == NULL) {
					fprintf(stderr, PROG ": %s: %s\n", optarg,
						strerror(errno));
					rc = 2;
					goto out;
				}
				if (sw_events_registry_add_writer(r, avsc, err, sizeof(err)) < 0) {
					fprintf(stderr, PROG ": %s: %s\n", optarg, err);
					free(avsc);
					rc = 2;
					goto out;
				}
				free(avsc);
				break;
			case 'h':
				usage(stdout);
				goto out;
			default:
				usage(stderr);
				rc = 2;
				goto out;
			}
		}
		if (optind != argc) {
			usage(stderr);
			rc = 2;
			goto out;
		}
		rc = raw ? decode_raw(r) : decode_lines(r);
	} else if (strcmp(argv[1], "encode") == 0) {
		if (argc > 3) {
			usage(stderr);
			rc = 2;
			goto out;
		}
		if (argc == 3 && sw_events_fingerprint(r, argv[2]) == 0) {
			fprintf(stderr, PROG ": unknown event type \"%s\" (see " PROG " types)\n",
				argv[2]);
			rc = 2;
			goto out;
		}
		rc = encode_lines(r, argc == 3 ? argv[2] : NULL, NULL, NULL, NULL);
	} else if (strcmp(argv[1], "produce") == 0) {
		rc = cmd_produce(r, argc, argv);
	} else if (strcmp(argv[1], "types") == 0) {
		for (size_t i = 0; i < sw_events_type_count(r); i++) {
			const char *t = sw_events_type_name(r, i);

			printf("%-22s %016llx %s\n", t,
			       (unsigned long long)sw_events_fingerprint(r, t),
			       sw_events_schema_fullname(r, t));
		}
	} else if (strcmp(argv[1], "schema") == 0) {
		rc = cmd_schema(r, argc - 1, argv + 1);
	} else if (strcmp(argv[1], "docs") == 0 && argc == 2) {
		if (event_docs(r, stdout) < 0) {
			fprintf(stderr, PROG ": docs: cannot generate\n");
			rc = 1;
		}
	} else {
		fprintf(stderr, PROG ": unknown command \"%s\"\n", argv[1]);
		usage(stderr);
		rc = 2;
	}
out:
	sw_events_registry_destroy(r);
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
