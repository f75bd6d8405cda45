/*
 * Decoding bytes nobody vouches for: every truncation of a valid message
 * of every type, many random corruptions, bad magic, unknown
 * fingerprints, and length prefixes that claim far more than is there.
 * Each must be an error with a reason (or, for a corruption that still
 * parses, a clean result), never a crash, a hang or a huge allocation
 * (the sanitizer build runs this too). The header read in place (a writer
 * with today's header) must equal the header read through avro-c, or fail
 * with the same text, for every one of them.
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
	sw_events_registry_destroy(r);
	printf("events hostile: ok (%zu headers read both ways)\n", direct_compared);
	return 0;
}
