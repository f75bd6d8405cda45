/*
 * log.c: one JSON object per line. The line is built in memory by jansson
 * (which does the escaping) and written with a single locked fwrite, so
 * lines from several threads never interleave. A string that is not valid
 * UTF-8 is logged with its non-ASCII bytes replaced by '?', never dropped.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sw_core.h"

static const char *log_service = "sagewai";
static FILE *log_out;
static enum sw_log_level log_min = SW_LOG_INFO;

static const char *const level_names[] = {
	[SW_LOG_DEBUG] = "debug",
	[SW_LOG_INFO] = "info",
	[SW_LOG_WARN] = "warn",
	[SW_LOG_ERROR] = "error",
};

void sw_log_init(const char *service, FILE *out, enum sw_log_level min)
{
	log_service = service != NULL ? service : "sagewai";
	log_out = out;
	log_min = min;
}

enum sw_log_level sw_log_level_parse(const char *s)
{
	size_t i;

	if (s == NULL)
		return SW_LOG_INFO;
	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (enum sw_log_level)i;
	return SW_LOG_INFO;
}

static void log_timestamp(char *buf, size_t len)
{
	int64_t us = sw_now_us();
	time_t sec = (time_t)(us / 1000000);
	unsigned int frac = (unsigned int)(us % 1000000);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06uZ", frac % 1000000u);
}

/* Builds and writes the line; fields (may be NULL) is a va_list of
 * key/value string pairs ended by a NULL key, kv (may be NULL) the same as
 * an array. Keys that clash with the fixed ones are written as given after
 * them (JSON keeps the last). */
static void log_emit(enum sw_log_level lvl, const char *msg, va_list *fields,
		     const char *const *kv)
{
	FILE *out = log_out != NULL ? log_out : stderr;
	char ts[64];
	json_t *obj;
	char *line;
	const char *k, *v;

	if (lvl < SW_LOG_DEBUG || lvl > SW_LOG_ERROR)
		lvl = SW_LOG_ERROR;
	log_timestamp(ts, sizeof(ts));
	if ((obj = json_object()) == NULL)
		return;
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level", json_string(level_names[lvl]));
	json_object_set_new(obj, "svc", sw_json_string_lossy(log_service));
	json_object_set_new(obj, "msg", sw_json_string_lossy(msg));
	while (fields != NULL && (k = va_arg(*fields, const char *)) != NULL) {
		v = va_arg(*fields, const char *);
		if (json_object_set_new(obj, k, sw_json_string_lossy(v)) < 0)
			json_object_set_new(obj, "badkey", sw_json_string_lossy(k));
	}
	for (; kv != NULL && kv[0] != NULL; kv += 2) {
		if (json_object_set_new(obj, kv[0], sw_json_string_lossy(kv[1])) < 0)
			json_object_set_new(obj, "badkey", sw_json_string_lossy(kv[0]));
	}
	line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	if (line == NULL)
		return;
	flockfile(out);
	fputs(line, out);
	fputc('\n', out);
	fflush(out);
	funlockfile(out);
	free(line);
}

void sw_log(enum sw_log_level lvl, const char *msg, ...)
{
	va_list ap;

	if (lvl < log_min)
		return;
	va_start(ap, msg);
	log_emit(lvl, msg, &ap, NULL);
	va_end(ap);
}

void sw_logf(enum sw_log_level lvl, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int n;

	if (lvl < log_min)
		return;
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	log_emit(lvl, msg, NULL, NULL);
	free(msg);
}

void sw_log_kv(enum sw_log_level lvl, const char *msg, const char *const *kv)
{
	if (lvl < log_min)
		return;
	log_emit(lvl, msg, NULL, kv);
}
