/*
 * The fast header reader of replay (tools/replay/hdr.c) against the full
 * decoder (sw_event_decode_header): every event type of this build is read
 * by the fast path and gives the same type, run id and time; so do the
 * messages of the fuzz corpus; on damaged messages (every truncation, byte
 * flips) whenever both readers give an answer it is the same one. (The
 * fast reader may answer where the full decoder refuses: damage in what it
 * does not read or check, past run_id or inside the tenant. Replay reads
 * only events the audit service decoded in full and the chain shows
 * unchanged.)
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "replay_int.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_test.h"

static struct sw_event_registry *reg;
static struct replay_hdrs hdrs;
static size_t agreed, declined, alone; /* alone: answered where the decoder refused */

/* A value of schema s (parsed JSON) that the encoder takes. */
static json_t *sample(json_t *s, json_t *named)
{
	const char *t = json_is_string(s) ? json_string_value(s)
					  : json_string_value(json_object_get(s, "type"));
	json_t *o, *f;
	size_t i;

	if (json_is_array(s)) /* a union: its first branch */
		return sample(json_array_get(s, 0), named);
	SW_CHECK(t != NULL);
	if (json_object_get(named, t) != NULL)
		return sample(json_object_get(named, t), named);
	if (strcmp(t, "record") == 0) {
		json_object_set(named, json_string_value(json_object_get(s, "name")), s);
		o = json_object();
		json_array_foreach(json_object_get(s, "fields"), i, f)
			json_object_set_new(o, json_string_value(json_object_get(f, "name")),
					    sample(json_object_get(f, "type"), named));
		return o;
	}
	if (strcmp(t, "enum") == 0)
		return json_incref(json_array_get(json_object_get(s, "symbols"), 0));
	if (strcmp(t, "array") == 0)
		return json_pack("[o]", sample(json_object_get(s, "items"), named));
	if (strcmp(t, "map") == 0)
		return json_pack("{s:o}", "k", sample(json_object_get(s, "values"), named));
	if (strcmp(t, "null") == 0)
		return json_null();
	if (strcmp(t, "boolean") == 0)
		return json_true();
	if (strcmp(t, "int") == 0 || strcmp(t, "long") == 0)
		return json_integer(7);
	if (strcmp(t, "float") == 0 || strcmp(t, "double") == 0)
		return json_real(0.5);
	if (strcmp(t, "bytes") == 0)
		return json_string("00ff");
	if (strcmp(t, "fixed") == 0) {
		char hex[256] = "";
		json_int_t n = json_integer_value(json_object_get(s, "size"));

		for (i = 0; i < (size_t)n && i < 100; i++)
			strcat(hex, "ab");
		return json_string(hex);
	}
	if (strcmp(t, "string") == 0)
		return json_string(json_string_value(json_object_get(s, "logicalType")) != NULL
					   ? "01890a5d-ac96-774b-bcce-b302099a8057"
					   : "some text");
	SW_CHECKF(0, "no sample for type %s", t);
	return NULL;
}

/* Compare both readers on msg; damage_at: where msg was damaged (-1: it
 * was not), against end, the end of the fast reader's fields. */
static void compare(const void *msg, size_t len, long damage_at, size_t fields_end,
		    const char *what)
{
	struct sw_event_header full;
	struct replay_hdr h;
	char err[256];
	int fast = replay_hdr_peek(&hdrs, msg, len, &h);
	int ok = sw_event_decode_header(reg, msg, len, &full, err, sizeof(err)) == 0;

	if (!fast) {
		SW_CHECKF(damage_at >= 0, "%s: the fast reader declined an undamaged message",
			  what);
		declined++;
		return;
	}
	if (!ok) {
		SW_CHECKF(damage_at >= 0, "%s: the decoder refuses an undamaged message: %s",
			  what, err);
		if (damage_at >= (long)fields_end)
			alone++; /* past the fields read: nothing to compare */
		return;
	}
	SW_CHECKF(h.type_len == strlen(full.type) && memcmp(h.type, full.type, h.type_len) == 0,
		  "%s: type", what);
	SW_CHECKF(h.run_id_len == strlen(full.run_id) &&
			  memcmp(h.run_id, full.run_id, h.run_id_len) == 0,
		  "%s: run id", what);
	SW_CHECKF(h.time_us == full.time_us, "%s: time", what);
	agreed++;
}

/* Where the fast reader's fields end in an undamaged message. */
static size_t fields_end(const uint8_t *msg, size_t len)
{
	struct replay_hdr h;

	SW_CHECK(replay_hdr_peek(&hdrs, msg, len, &h) == 1);
	return (size_t)((const uint8_t *)h.run_id - msg) + h.run_id_len;
}

static void damage(const uint8_t *msg, size_t len, const char *what)
{
	uint8_t *b = malloc(len);
	size_t end = fields_end(msg, len), k;

	SW_CHECK(b != NULL);
	for (k = 0; k < len; k++) /* every truncation */
		compare(msg, k, (long)k, end, what);
	for (k = 0; k < 3000; k++) { /* one or two bytes changed */
		size_t at = randombytes_uniform((uint32_t)len);
		size_t at2 = randombytes_uniform((uint32_t)len);

		memcpy(b, msg, len);
		b[at] ^= (uint8_t)(1 + randombytes_uniform(255));
		if (k % 2)
			b[at2] ^= (uint8_t)(1 + randombytes_uniform(255));
		compare(b, len, (long)(k % 2 && at2 < at ? at2 : at), end, what);
	}
	free(b);
}

static void each_type(void)
{
	size_t n = sw_events_type_count(reg), i;

	SW_CHECKF(hdrs.n == n, "the fast reader knows %zu of %zu event types", hdrs.n, n);
	for (i = 0; i < n; i++) {
		const char *t = sw_events_type_name(reg, i);
		json_t *schema = json_loads(sw_events_schema_json(reg, t), 0, NULL), *named;
		json_t *ev;
		struct sw_event_header h;
		char err[256];
		void *buf;
		size_t len;

		SW_CHECK(schema != NULL);
		named = json_object();
		ev = sample(schema, named);
		json_object_del(ev, "header");
		sw_event_header_init(&h, t, "test-hdr");
		snprintf(h.run_id, sizeof(h.run_id), "run-%s-%zu", t, i);
		SW_CHECKF(sw_event_encode(reg, t, &h, ev, &buf, &len, err, sizeof(err)) == 0,
			  "%s: %s", t, err);
		compare(buf, len, -1, 0, t);
		damage(buf, len, t);
		free(buf);
		json_decref(ev);
		json_decref(named);
		json_decref(schema);
	}
}

static void corpus(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t files = 0;

	SW_CHECKF(d != NULL, "%s", dir);
	while ((de = readdir(d)) != NULL) {
		char path[1024], *buf;
		size_t len;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		SW_CHECK((f = fopen(path, "rb")) != NULL);
		buf = malloc(1 << 16);
		len = fread(buf, 1, 1 << 16, f);
		fclose(f);
		/* older writers (.v1, .v2) are the full decoder's: the fast one declines */
		if (strstr(de->d_name, ".v") != NULL) {
			struct replay_hdr h;

			SW_CHECK(replay_hdr_peek(&hdrs, buf, len, &h) == 0);
		} else {
			compare(buf, len, -1, 0, de->d_name);
		}
		free(buf);
		files++;
	}
	closedir(d);
	SW_CHECK(files >= 8);
}

int main(void)
{
	char err[256];

	SW_CHECK(sodium_init() >= 0);
	reg = sw_events_registry_new(err, sizeof(err));
	SW_CHECKF(reg != NULL, "%s", err);
	SW_CHECK(replay_hdrs_init(&hdrs, reg) == 0);
	each_type();
	corpus(SW_CORPUS_DIR);
	printf("replay_hdr: %zu agreed, %zu declined, %zu read alone past the damage\n", agreed,
	       declined, alone);
	replay_hdrs_free(&hdrs);
	sw_events_registry_destroy(reg);
	return 0;
}
