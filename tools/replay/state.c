/*
 * state.c: the state file of a replay job, one JSON object:
 *
 *   {"version": 1, "replay_id": UUID, "topic": T,
 *    "select": {"run": S|null, "types": [S...], "since_us": N|null, "until_us": N|null},
 *    "end_seq": N, "end_hash": HEX64, "acked_seq": N, "done": N,
 *    "floors": [N...], "complete": B}
 *
 * Everything read back is checked (types, ranges, lengths): a state file
 * is input like any other. Saving writes a temporary file beside it,
 * fsyncs it, renames it over the old one and fsyncs the directory, so the
 * file is always one whole state, old or new, even after a kill -9 or a
 * crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "replay_int.h"
#include "sw_core.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void replay_state_free(struct replay_state *st)
{
	size_t i;

	for (i = 0; i < st->ntypes; i++)
		free(st->types[i]);
	free(st->types);
	free(st->floors);
	memset(st, 0, sizeof(*st));
}

int replay_state_floor_grow(struct replay_state *st, int32_t p)
{
	int64_t *nf;
	int32_t i;

	if (p < st->nfloors)
		return 0;
	if (p < 0 || p >= REPLAY_MAX_PARTITIONS)
		return -1;
	if ((nf = realloc(st->floors, (size_t)(p + 1) * sizeof(*nf))) == NULL)
		return -1;
	for (i = st->nfloors; i <= p; i++)
		nf[i] = -1;
	st->floors = nf;
	st->nfloors = p + 1;
	return 0;
}

static int add_type(struct replay_state *st, const char *t)
{
	char **nt = realloc(st->types, (st->ntypes + 1) * sizeof(*nt));

	if (nt == NULL)
		return -1;
	st->types = nt;
	if ((st->types[st->ntypes] = strdup(t)) == NULL)
		return -1;
	st->ntypes++;
	return 0;
}

int replay_state_from_opts(struct replay_state *st, const struct sw_replay_opts *o,
			   char *errstr, size_t errlen)
{
	const char *const *t;

	memset(st, 0, sizeof(*st));
	snprintf(st->topic, sizeof(st->topic), "%s", o->topic);
	if (o->sel.run_id != NULL) {
		st->has_run = 1;
		snprintf(st->run_id, sizeof(st->run_id), "%s", o->sel.run_id);
	}
	for (t = o->sel.types; t != NULL && *t != NULL; t++) {
		if (add_type(st, *t) == -1) {
			snprintf(errstr, errlen, "out of memory");
			replay_state_free(st);
			return -1;
		}
	}
	if (st->ntypes > 1)
		qsort(st->types, st->ntypes, sizeof(*st->types), cmp_str);
	st->since_us = o->sel.since_us;
	st->until_us = o->sel.until_us;
	return 0;
}

/* An unsigned integer field in range; -1 when missing or not one. */
static int get_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return -1;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

/* A bound: null (unbounded: dflt) or an integer. */
static int get_bound(json_t *o, const char *key, int64_t dflt, int64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (j == NULL || json_is_null(j)) {
		*v = dflt;
		return 0;
	}
	if (!json_is_integer(j))
		return -1;
	*v = json_integer_value(j);
	return 0;
}

static int valid_text(const char *s, size_t max)
{
	size_t n = strlen(s), i;

	if (n == 0 || n >= max)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int replay_state_load(const char *path, struct replay_state *st, char *errstr, size_t errlen)
{
	json_t *root = NULL, *sel, *j, *v;
	json_error_t je;
	struct stat sb;
	uint8_t id[16];
	const char *s;
	size_t i;
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (stat(path, &sb) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(errstr, errlen, "state file %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size > (off_t)REPLAY_STATE_MAX) {
		snprintf(errstr, errlen, "state file %s: not a regular file of at most %u bytes",
			 path, REPLAY_STATE_MAX);
		return -1;
	}
	if ((root = json_load_file(path, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		snprintf(errstr, errlen, "state file %s is not JSON: %s (line %d)", path, je.text,
			 je.line);
		return -1;
	}
#define BAD(what)                                                                             \
	do {                                                                                  \
		snprintf(errstr, errlen, "state file %s: %s", path, what);                   \
		goto out;                                                                     \
	} while (0)
	if (!json_is_object(root) || !json_is_integer(json_object_get(root, "version")) ||
	    json_integer_value(json_object_get(root, "version")) != 1)
		BAD("not a replay state (version 1)");
	s = json_string_value(json_object_get(root, "replay_id"));
	if (s == NULL || sw_uuid_parse(s, id) != 0)
		BAD("replay_id is not a UUID");
	sw_uuid_format(id, st->id);
	s = json_string_value(json_object_get(root, "topic"));
	if (s == NULL || !valid_text(s, sizeof(st->topic)))
		BAD("bad topic");
	snprintf(st->topic, sizeof(st->topic), "%s", s);
	sel = json_object_get(root, "select");
	if (!json_is_object(sel))
		BAD("no select object");
	j = json_object_get(sel, "run");
	if (j != NULL && !json_is_null(j)) {
		if (!json_is_string(j) || !valid_text(json_string_value(j), sizeof(st->run_id)))
			BAD("bad select.run");
		st->has_run = 1;
		snprintf(st->run_id, sizeof(st->run_id), "%s", json_string_value(j));
	}
	j = json_object_get(sel, "types");
	if (!json_is_array(j) || json_array_size(j) > 1024)
		BAD("bad select.types");
	json_array_foreach(j, i, v) {
		if (!json_is_string(v) || !valid_text(json_string_value(v), 64))
			BAD("bad select.types");
		if (add_type(st, json_string_value(v)) == -1)
			BAD("out of memory");
	}
	if (st->ntypes > 1)
		qsort(st->types, st->ntypes, sizeof(*st->types), cmp_str);
	if (get_bound(sel, "since_us", INT64_MIN, &st->since_us) == -1 ||
	    get_bound(sel, "until_us", INT64_MAX, &st->until_us) == -1)
		BAD("bad select.since_us or until_us");
	if (get_u64(root, "end_seq", &st->end_seq) == -1 ||
	    get_u64(root, "acked_seq", &st->acked_seq) == -1 ||
	    get_u64(root, "done", &st->done) == -1 || st->acked_seq > st->end_seq ||
	    st->done > st->acked_seq)
		BAD("bad end_seq, acked_seq or done");
	s = json_string_value(json_object_get(root, "end_hash"));
	if (s == NULL || sw_hex_decode(s, st->end_hash, SW_ALOG_HASH) != 0)
		BAD("bad end_hash");
	j = json_object_get(root, "floors");
	if (!json_is_array(j) || json_array_size(j) > REPLAY_MAX_PARTITIONS)
		BAD("bad floors");
	if (json_array_size(j) > 0 &&
	    replay_state_floor_grow(st, (int32_t)json_array_size(j) - 1) == -1)
		BAD("out of memory");
	json_array_foreach(j, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < -1)
			BAD("bad floors");
		st->floors[i] = json_integer_value(v);
	}
	if (!json_is_boolean(json_object_get(root, "complete")))
		BAD("bad complete");
	st->complete = json_is_true(json_object_get(root, "complete"));
#undef BAD
	rc = 1;
out:
	json_decref(root);
	if (rc != 1)
		replay_state_free(st);
	return rc;
}

static void bound_str(int64_t v, int64_t none, char *out, size_t n)
{
	if (v == none)
		snprintf(out, n, "none");
	else
		snprintf(out, n, "%" PRId64, v);
}

int replay_state_match(const struct replay_state *st, const struct replay_state *want,
		       char *errstr, size_t errlen)
{
	char a[32], b[32];
	size_t i;

	if (strcmp(st->topic, want->topic) != 0) {
		snprintf(errstr, errlen, "it publishes to topic %s, not %s", st->topic,
			 want->topic);
		return -1;
	}
	if (st->has_run != want->has_run || strcmp(st->run_id, want->run_id) != 0) {
		snprintf(errstr, errlen, "it selects run %s, not %s",
			 st->has_run ? st->run_id : "(any)",
			 want->has_run ? want->run_id : "(any)");
		return -1;
	}
	for (i = 0; i < st->ntypes && i < want->ntypes; i++)
		if (strcmp(st->types[i], want->types[i]) != 0)
			break;
	if (st->ntypes != want->ntypes || i < st->ntypes) {
		snprintf(errstr, errlen, "it selects other event types (%zu of them, not %zu)",
			 st->ntypes, want->ntypes);
		return -1;
	}
	if (st->since_us != want->since_us || st->until_us != want->until_us) {
		bound_str(st->since_us, INT64_MIN, a, sizeof(a));
		bound_str(st->until_us, INT64_MAX, b, sizeof(b));
		snprintf(errstr, errlen, "it selects another time range (since %s, until %s us)",
			 a, b);
		return -1;
	}
	return 0;
}

static json_t *bound_json(int64_t v, int64_t none)
{
	return v == none ? json_null() : json_integer((json_int_t)v);
}

int replay_state_save(const char *path, const struct replay_state *st, char *errstr,
		      size_t errlen)
{
	char tmp[4200], hash[2 * SW_ALOG_HASH + 1], *text = NULL, *dcopy = NULL;
	json_t *root, *types, *floors;
	int fd = -1, dfd, rc = -1;
	size_t i, len;

	sw_hex_encode(st->end_hash, SW_ALOG_HASH, hash);
	types = json_array();
	floors = json_array();
	for (i = 0; i < st->ntypes; i++)
		json_array_append_new(types, json_string(st->types[i]));
	for (i = 0; i < (size_t)st->nfloors; i++)
		json_array_append_new(floors, json_integer((json_int_t)st->floors[i]));
	root = json_pack("{s:i, s:s, s:s, s:{s:o, s:o, s:o, s:o}, s:I, s:s, s:I, s:I, s:o, s:b}",
			 "version", 1, "replay_id", st->id, "topic", st->topic, "select", "run",
			 st->has_run ? json_string(st->run_id) : json_null(), "types", types,
			 "since_us", bound_json(st->since_us, INT64_MIN), "until_us",
			 bound_json(st->until_us, INT64_MAX), "end_seq", (json_int_t)st->end_seq,
			 "end_hash", hash, "acked_seq", (json_int_t)st->acked_seq, "done",
			 (json_int_t)st->done, "floors", floors, "complete", st->complete);
	if (root == NULL || (text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	len = strlen(text);
	text[len++] = '\n'; /* json_dumps leaves room: the NUL */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
		snprintf(errstr, errlen, "cannot write the state file %s: %s", tmp,
			 strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		snprintf(errstr, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	if ((dcopy = strdup(path)) != NULL &&
	    (dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(dcopy);
	free(text);
	json_decref(root);
	return rc;
}
