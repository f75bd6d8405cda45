/*
 * Decoding bytes nobody vouches for: every truncation of a valid message
 * of every type, many random corruptions, bad magic, unknown
 * fingerprints, and length prefixes that claim far more than is there.
 * Each must be an error with a reason (or, for a corruption that still
 * parses, a clean result), never a crash, a hang or a huge allocation
 * (the sanitizer build runs this too). The header read in place (a writer
 * with today's header) must equal the header read through avro-c, or fail
 * with the same text, for every one of them. And what our encoder writes
 * is, byte for byte, what avro-c writes for the same value.
 */
#include "ev_test.h"
#include "events_int.h"

static const char *const types[] = {
    "run.submitted",   "run.started",  "run.finished",	"run.cancel_requested",
    "step.dispatched", "step.started", "step.finished", "audit.checkpoint",
};

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void *encode(struct sw_event_registry *r, const char *type, int variant, size_t *len)
{
	json_t *ev = ev_sample_event(r, type, variant);
	char err[512];
	void *msg;

	SW_CHECKF(sw_event_encode(r, type, NULL, ev, &msg, len, err, sizeof(err)) == 0, "%s", err);
	json_decref(ev);
	return msg;
}

static size_t direct_compared; /* bodies whose header was read both ways */

/* sw_event_decode_header's answer (rc, h, err) is what the general path
 * gives for m[0..n): the same header, or the same error. */
static void same_header(struct sw_event_registry *r, const uint8_t *m, size_t n, int rc,
			const struct sw_event_header *h, const char *err)
{
	struct sw_event_header g;
	struct sw_ev_writer *w;
	const uint8_t *body;
	size_t bodylen;
	char gerr[512] = "";
	int grc;

	if (sw_ev_check(r, m, n, &w, &body, &bodylen, gerr, sizeof(gerr)) < 0)
		return;
	direct_compared += w->hdr_direct;
	grc = sw_ev_header_general(w, body, bodylen, &g, gerr, sizeof(gerr));
	SW_CHECKF(grc == rc, "header in place %d (%s), through avro-c %d (%s)", rc, err, grc,
		  gerr);
	if (rc == 0)
		SW_CHECK(memcmp(&g, h, sizeof(g)) == 0);
	else
		SW_CHECKF(strcmp(err, gerr) == 0, "in place: %s; through avro-c: %s", err, gerr);
}

/* Decode both ways; a failure must say why. Returns whether decode took it. */
static int try_decode(struct sw_event_registry *r, const uint8_t *m, size_t n)
{
	char err[512] = "";
	struct sw_event_header h;
	json_t *j = sw_event_decode(r, m, n, err, sizeof(err));
	int ok = j != NULL, hrc;

	if (!ok)
		SW_CHECK(err[0] != '\0');
	json_decref(j);
	err[0] = '\0';
	hrc = sw_event_decode_header(r, m, n, &h, err, sizeof(err));
	if (hrc < 0)
		SW_CHECK(err[0] != '\0');
	same_header(r, m, n, hrc, &h, err);
	/* the header path checks the whole body too: what decodes, has a header,
	 * unless a header string outgrew struct sw_event_header */
	SW_CHECKF(!ok || hrc == 0 || strstr(err, "longer than"), "decoded, header did not: %s",
		  err);
	return ok;
}

static void test_truncations(struct sw_event_registry *r)
{
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		for (int variant = 0; variant < 2; variant++) {
			size_t len;
			uint8_t *msg = encode(r, types[t], variant, &len);

			SW_CHECK(try_decode(r, msg, len));
			for (size_t n = 0; n < len; n++) {
				/* a private copy, so ASan sees any read past n */
				uint8_t *cut = malloc(n ? n : 1);

				memcpy(cut, msg, n);
				SW_CHECKF(!try_decode(r, cut, n), "%s cut to %zu decoded",
					  types[t], n);
				free(cut);
			}
			free(msg);
		}
	}
	SW_CHECK(!try_decode(r, NULL, 0));
}

static void test_flips(struct sw_event_registry *r)
{
	size_t decoded = 0, total = 0;

	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		size_t len;
		uint8_t *msg = encode(r, types[t], 0, &len);
		uint8_t *m = malloc(len + 16);

		for (int i = 0; i < 25000; i++) {
			int nflips = 1 + (int)(next() % 4);
			size_t n = len;

			memcpy(m, msg, len);
			for (int k = 0; k < nflips; k++) {
				/* mostly in the body; sometimes the prefix */
				size_t pos =
				    (next() % 8) ? 10 + next() % (len - 10) : next() % len;

				switch (next() % 3) {
				case 0:
					m[pos] ^= (uint8_t)(1u << (next() % 8));
					break;
				case 1:
					m[pos] = (uint8_t)next();
					break;
				default:
					m[pos] = 0xff; /* long varints, big lengths */
					break;
				}
			}
			if (next() % 10 == 0)
				n = len - 1 - next() % (len - 10);
			decoded += try_decode(r, m, n);
			total++;
		}
		free(m);
		free(msg);
	}
	/* some flips hit string contents and still decode: both paths ran */
	SW_CHECKF(decoded > 0 && decoded < total, "%zu of %zu decoded", decoded, total);
}

static void test_prefix(struct sw_event_registry *r)
{
	char err[512];
	size_t len;
	uint8_t *msg = encode(r, "run.started", 0, &len);

	msg[0] = 0xc2;
	SW_CHECK(sw_event_decode(r, msg, len, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "magic") != NULL, "%s", err);
	msg[0] = 0xc3;
	msg[1] = 0x02;
	SW_CHECK(sw_event_decode(r, msg, len, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "magic") != NULL, "%s", err);
	msg[1] = 0x01;
	msg[9] ^= 0x40;
	SW_CHECK(sw_event_decode(r, msg, len, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "unknown schema fingerprint") != NULL, "%s", err);
	msg[9] ^= 0x40;
	SW_CHECK(sw_event_decode(r, msg, 9, err, sizeof(err)) == NULL);
	SW_CHECKF(strstr(err, "truncated") != NULL, "%s", err);
	/* a message of another type's fingerprint but this body */
	{
		uint64_t fp = sw_events_fingerprint(r, "run.cancel_requested");

		for (int i = 0; i < 8; i++)
			msg[2 + i] = (uint8_t)(fp >> (8 * i));
		SW_CHECK(sw_event_decode(r, msg, len, err, sizeof(err)) == NULL);
	}
	free(msg);
}

/* Length prefixes and counts far beyond the message. */
static void test_huge_lengths(struct sw_event_registry *r)
{
	static const int64_t lens[] = {
	    1LL << 20,	   1LL << 31, (1LL << 31) - 1, 1LL << 40, INT64_MAX,
	    INT64_MAX / 2, -1,	      INT64_MIN,
	};
	uint64_t fp = sw_events_fingerprint(r, "run.submitted");
	char err[512];

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct ev_buf b = {.n = 0};

		/* event_id claims a huge string */
		ev_put_prefix(&b, fp);
		ev_put_long(&b, lens[i]);
		ev_put(&b, "abcd", 4);
		SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);

		/* modes claims a huge array of strings, with and without a block size */
		for (int sized = 0; sized < 2; sized++) {
			b.n = 0;
			ev_put_prefix(&b, fp);
			ev_put_header(&b, "run.submitted", "r", 1);
			ev_put_str(&b, "wf");
			ev_put_long(&b, 1);
			ev_put_str(&b, "{}");
			ev_put_str(&b, "");
			ev_put_long(&b, sized && lens[i] != INT64_MIN ? -lens[i] : lens[i]);
			if (sized)
				ev_put_long(&b, lens[i]);
			ev_put_str(&b, "x");
			ev_put_long(&b, 0);
			SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
		}
	}
	/* a varint of eleven bytes, and one whose tenth byte overflows */
	{
		struct ev_buf b = {.n = 0};

		ev_put_prefix(&b, fp);
		ev_put(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
		SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "varint") != NULL, "%s", err);
		b.n = 10;
		ev_put(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10);
		SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "varint") != NULL, "%s", err);
	}
	/* a union branch and an enum index out of range */
	{
		struct ev_buf b = {.n = 0};

		ev_put_prefix(&b, sw_events_fingerprint(r, "run.finished"));
		ev_put_header(&b, "run.finished", "r", 1);
		ev_put_long(&b, 3); /* status: 3 symbols */
		ev_put_long(&b, 0);
		ev_put_long(&b, 0);
		SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "enum") != NULL, "%s", err);
		b.n = 0;
		ev_put_prefix(&b, sw_events_fingerprint(r, "run.finished"));
		ev_put_header(&b, "run.finished", "r", 1);
		ev_put_long(&b, 0);
		ev_put_long(&b, 2); /* output: 2 branches */
		ev_put_long(&b, 0);
		SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "union") != NULL, "%s", err);
		/* and the same, well-formed, decodes: the cases above are not vacuous */
		b.b[b.n - 2] = 0;
		ev_put_long(&b, 0); /* modes: null */
		SW_CHECKF(try_decode(r, b.b, b.n), "well-formed run.finished refused");
	}
	/* a header whose type is not the schema's, and invalid UTF-8 */
	{
		struct ev_buf b = {.n = 0};

		ev_put_prefix(&b, sw_events_fingerprint(r, "run.started"));
		ev_put_header(&b, "run.finished", "r", 1);
		ev_put_str(&b, "wf");
		ev_put_long(&b, 1);
		SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "header.type") != NULL, "%s", err);
		b.n = 0;
		ev_put_prefix(&b, sw_events_fingerprint(r, "run.started"));
		ev_put_header(&b, "run.started", "r", 1);
		ev_put_str(&b, "\xc3\x28");
		ev_put_long(&b, 1);
		SW_CHECK(sw_event_decode(r, b.b, b.n, err, sizeof(err)) == NULL);
		SW_CHECKF(strstr(err, "UTF-8") != NULL, "%s", err);
	}
}

/* A step.started whose header names tenant (and step id sid: NULL for
 * none), encoded; *len its length. */
static uint8_t *header_event(struct sw_event_registry *r, const char *tenant, const char *sid,
			     size_t *len)
{
	json_t *ev = ev_sample_event(r, "step.started", 0), *h = json_object_get(ev, "header");
	char err[512];
	void *msg;

	json_object_set_new(h, "tenant", json_string(tenant));
	json_object_set_new(h, "run_id", json_string("0190b1a8-7b2c-7def-8abc-0123456789ac"));
	json_object_set_new(h, "step_id", sid ? json_string(sid) : json_null());
	json_object_set_new(h, "trace_id", json_string("4bf92f3577b34da6a3ce929d0e0e4736"));
	json_object_set_new(h, "producer", json_string("sagewai-worker"));
	SW_CHECKF(sw_event_encode(r, "step.started", NULL, ev, &msg, len, err, sizeof(err)) == 0,
		  "%s", err);
	json_decref(ev);
	return msg;
}

/* m[0..n)'s header is refused with want as its error (exact: the whole
 * text, else within it), and the same both ways. */
static void header_refused(struct sw_event_registry *r, const uint8_t *m, size_t n,
			   const char *want, int exact)
{
	struct sw_event_header h;
	char err[512];

	SW_CHECKF(sw_event_decode_header(r, m, n, &h, err, sizeof(err)) == -1 &&
		      (exact ? strcmp(err, want) == 0 : strstr(err, want) != NULL),
		  "want '%s', got '%s'", want, err);
	try_decode(r, m, n);
}

/* The header's fields one by one, each way (same_header via try_decode):
 * as written; a byte of invalid UTF-8, a NUL, another type, a type with a
 * NUL, a string longer than struct sw_event_header holds. */
static void test_header_fields(struct sw_event_registry *r)
{
	static const char tenant[] = "tenant-abcdef";
	char err[512], big[201];
	struct sw_event_header h;
	size_t len, before = direct_compared;
	uint8_t *msg, *at;

	for (int sid = 0; sid < 2; sid++) {
		msg = header_event(r, tenant,
				   sid ? "0190b1a8-7b2c-7def-8abc-0123456789ac/s/1" : NULL, &len);
		SW_CHECK(try_decode(r, msg, len));
		SW_CHECKF(sw_event_decode_header(r, msg, len, &h, err, sizeof(err)) == 0, "%s",
			  err);
		SW_CHECK(
		    strcmp(h.tenant, tenant) == 0 && strcmp(h.type, "step.started") == 0 &&
		    strcmp(h.producer, "sagewai-worker") == 0 &&
		    strcmp(h.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736") == 0 &&
		    h.time_us == 1720000000123456LL &&
		    strcmp(h.step_id, sid ? "0190b1a8-7b2c-7def-8abc-0123456789ac/s/1" : "") == 0);
		at = memmem(msg, len, tenant, strlen(tenant));
		SW_CHECK(at != NULL);
		at[0] = 0xff;
		header_refused(r, msg, len, "string is not valid UTF-8", 1);
		at[0] = 't';
		at[3] = '\0';
		header_refused(r, msg, len, "header.tenant: longer than 127 bytes or holds a NUL",
			       0);
		at[3] = 'a';
		at = memmem(msg, len, "step.started", 12);
		SW_CHECK(at != NULL);
		at[11] = 'e';
		header_refused(r, msg, len,
			       "header.type \"step.startee\" is not the schema's type", 0);
		at[11] = '\0';
		header_refused(r, msg, len, "header.type \"step.starte\" is not", 0);
		free(msg);
	}
	/* 127 bytes fit struct sw_event_header's tenant; 128 and 200 do not */
	for (size_t n = 127; n <= 200; n += n == 128 ? 72 : 1) {
		memset(big, 'x', n);
		big[n] = '\0';
		msg = header_event(r, big, NULL, &len);
		if (n == 127) {
			SW_CHECK(sw_event_decode_header(r, msg, len, &h, err, sizeof(err)) == 0 &&
				 strcmp(h.tenant, big) == 0);
			try_decode(r, msg, len);
		} else {
			header_refused(r, msg, len, "header.tenant: longer than 127 bytes", 0);
		}
		free(msg);
	}
	/* today's writers take the path in place */
	SW_CHECKF(direct_compared > before, "no header read in place (%zu)", direct_compared);
}

/* ---- our writer against avro-c's -------------------------------------------- */

/* A random string of 0..299 bytes: ASCII, 2-, 3- and 4-byte UTF-8, and the
 * characters JSON escapes. */
static json_t *random_string(void)
{
	static const char *const bits[] = {"a",	 "Z", "0", " ", "\"", "\\",
					   "\n", "é", "€", "😀", "{",  ","};
	char buf[1400];
	size_t n = next() % 300, len = 0;

	for (size_t i = 0; i < n && len + 5 < sizeof(buf); i++) {
		const char *b = bits[next() % (sizeof(bits) / sizeof(bits[0]))];

		memcpy(buf + len, b, strlen(b));
		len += strlen(b);
	}
	return json_stringn(buf, len);
}

/* Vary a sample: strings (not the header's, which are checked) get random
 * text, integers random magnitudes, arrays more items. What the schema
 * refuses then (an enum symbol, an int out of range) is skipped by the
 * caller. */
static void vary(json_t *j, int depth)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach(j, key, v) {
			if (depth == 0 && strcmp(key, "header") == 0)
				continue;
			if (json_is_string(v) && next() % 2)
				json_object_set_new(j, key, random_string());
			else if (json_is_integer(v))
				json_object_set_new(
				    j, key,
				    json_integer((json_int_t)(next() >> (next() % 64)) *
						 (next() % 2 ? 1 : -1)));
			else
				vary(v, depth + 1);
		}
	} else if (json_is_array(j)) {
		size_t n = json_array_size(j), more = next() % 4;

		for (i = 0; i < n; i++)
			vary(json_array_get(j, i), depth + 1);
		for (i = 0; n > 0 && i < more; i++)
			json_array_append_new(j, json_deep_copy(json_array_get(j, 0)));
		if (next() % 5 == 0)
			json_array_clear(j);
	}
}

/* A header of random words (step_id empty one time in three), and its
 * JSON as the encoder's callers would have written it. */
static json_t *random_header(struct sw_event_header *h, const char *type)
{
	static const char *const words[] = {
	    "", "default", "r-1", "é€😀", "a\"b\\c", "0190b1a8-7b2c-7def-8abc-0123456789ab"};
	const size_t nw = sizeof(words) / sizeof(words[0]);

	sw_event_header_init(h, type, words[next() % nw]);
	snprintf(h->tenant, sizeof(h->tenant), "%s", words[next() % nw]);
	snprintf(h->run_id, sizeof(h->run_id), "%s", words[next() % nw]);
	if (next() % 3 != 0)
		snprintf(h->step_id, sizeof(h->step_id), "%s/s/%u", words[next() % nw],
			 (unsigned)(next() % 1000));
	if (next() % 2)
		snprintf(h->trace_id, sizeof(h->trace_id), "%032x", (unsigned)next());
	h->time_us = (int64_t)(next() >> 1) * (next() % 2 ? 1 : -1);
	/* a field filled to its end, no NUL: read to the array's end */
	if (next() % 4 == 0)
		memset(h->step_id, 's', sizeof(h->step_id));
	if (next() % 4 == 0)
		memset(h->tenant, 't', sizeof(h->tenant));
#define HS(f) h->f, strnlen(h->f, sizeof(h->f))
	return json_pack("{s:s%,s:s%,s:I,s:s%,s:s%,s:o,s:s%,s:s%}", "event_id", HS(event_id),
			 "type", HS(type), "time", (json_int_t)h->time_us, "tenant", HS(tenant),
			 "run_id", HS(run_id), "step_id",
			 h->step_id[0] ? json_stringn(HS(step_id)) : json_null(), "trace_id",
			 HS(trace_id), "producer", HS(producer));
#undef HS
}

/* The header given as a struct is written as its JSON would be. */
static void same_as_json_header(struct sw_event_registry *r, const char *type, json_t *ev)
{
	struct sw_event_header h;
	json_t *hj = random_header(&h, type), *jev = json_copy(ev);
	void *a, *b;
	size_t alen, blen;
	char err[512], jerr[512];
	int arc, brc;

	json_object_set_new(jev, "header", hj);
	arc = sw_event_encode(r, type, &h, ev, &a, &alen, err, sizeof(err));
	brc = sw_event_encode(r, type, NULL, jev, &b, &blen, jerr, sizeof(jerr));
	SW_CHECKF(arc == brc, "%s: struct header %d (%s), JSON header %d (%s)", type, arc, err,
		  brc, jerr);
	if (arc == 0) {
		SW_CHECKF(alen == blen && memcmp(a, b, alen) == 0,
			  "%s: the header struct written differs from its JSON's", type);
		free(a);
		free(b);
	}
	json_decref(jev);
}

/*
 * sw_event_encode writes Avro's binary encoding itself, as it walks the
 * JSON. Every message it makes must be exactly what avro-c writes for the
 * same value: read each back into an avro-c value of the reader schema,
 * write that with avro_value_write, and compare the bytes. Every type of
 * the registry, both samples, and many variations of them.
 */
static void test_writer_is_avroc(struct sw_event_registry *r)
{
	size_t compared = 0;

	for (size_t t = 0; t < r->nreaders; t++) {
		struct sw_ev_reader *rd = &r->readers[t];

		for (int k = 0; k < 202; k++) {
			json_t *ev = ev_sample_event(r, rd->type, k % 2);
			avro_value_t v;
			avro_reader_t in;
			avro_writer_t out;
			char err[512], back[16384];
			size_t len, blen;
			void *msg;

			if (k >= 2)
				vary(ev, 0);
			same_as_json_header(r, rd->type, ev);
			if (sw_event_encode(r, rd->type, NULL, ev, &msg, &len, err, sizeof(err)) !=
			    0) {
				SW_CHECKF(k >= 2, "%s: the sample does not encode: %s", rd->type,
					  err);
				json_decref(ev);
				continue;
			}
			SW_CHECK(len > SW_EV_PREFIX && len - SW_EV_PREFIX <= sizeof(back));
			SW_CHECK(avro_generic_value_new(rd->iface, &v) == 0);
			in = avro_reader_memory((const char *)msg + SW_EV_PREFIX,
						(int64_t)(len - SW_EV_PREFIX));
			SW_CHECKF(in != NULL && avro_value_read(in, &v) == 0, "%s: avro-c: %s",
				  rd->type, avro_strerror());
			out = avro_writer_memory(back, sizeof(back));
			SW_CHECKF(out != NULL && avro_value_write(out, &v) == 0, "%s: avro-c: %s",
				  rd->type, avro_strerror());
			blen = (size_t)avro_writer_tell(out);
			SW_CHECKF(blen == len - SW_EV_PREFIX &&
				      memcmp(back, (char *)msg + SW_EV_PREFIX, blen) == 0,
				  "%s (sample %d): our %zu bytes differ from avro-c's %zu",
				  rd->type, k, len - SW_EV_PREFIX, blen);
			compared++;
			avro_writer_free(out);
			avro_reader_free(in);
			avro_value_decref(&v);
			free(msg);
			json_decref(ev);
		}
	}
	{
		struct sw_event_header h;
		json_t *ev = ev_sample_event(r, "run.finished", 0);
		char err[512];
		void *m;
		size_t len;

		sw_event_header_init(&h, "run.finished", "p");
		memcpy(h.run_id, "\xff\xfe", 3); /* not UTF-8 */
		SW_CHECK(sw_event_encode(r, "run.finished", &h, ev, &m, &len, err, sizeof(err)) ==
			 -1);
		SW_CHECKF(strstr(err, "header.run_id") && strstr(err, "UTF-8"), "%s", err);
		sw_event_header_init(&h, "run.started", "p");
		SW_CHECK(sw_event_encode(r, "run.finished", &h, ev, &m, &len, err, sizeof(err)) ==
			 -1);
		SW_CHECKF(strstr(err, "is not the event type"), "%s", err);
		sw_event_header_init(&h, "run.finished", "p");
		memset(h.producer, 'p', sizeof(h.producer)); /* no NUL: read to its end */
		SW_CHECK(sw_event_encode(r, "run.finished", &h, ev, &m, &len, err, sizeof(err)) ==
			 0);
		free(m);
		json_decref(ev);
	}
	/* most variations must encode, or this tests little */
	SW_CHECKF(compared > r->nreaders * 50, "only %zu messages compared", compared);
	printf("writer: %zu messages byte for byte as avro-c writes them\n", compared);
}

int main(void)
{
	char err[512];
	struct sw_event_registry *r = sw_events_registry_new(err, sizeof(err));

	SW_CHECKF(r != NULL, "%s", err);
	test_prefix(r);
	test_header_fields(r);
	test_truncations(r);
	test_huge_lengths(r);
	test_flips(r);
	test_writer_is_avroc(r);
	sw_events_registry_destroy(r);
	printf("events hostile: ok (%zu headers read both ways)\n", direct_compared);
	return 0;
}
