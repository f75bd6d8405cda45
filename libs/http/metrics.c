/*
 * metrics.c: a small registry of counters and gauges rendered in the
 * Prometheus text exposition format 0.0.4. Metrics keep their creation
 * order. Misuse (a bad name, a negative counter increment, a name reused
 * with the other type) cannot be returned to the caller through the void
 * update functions, so it is counted in sw_metrics_invalid_total, which
 * every rendering carries: nothing is dropped without a trace.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sw_http.h"

#define METRICS_INVALID "sw_metrics_invalid_total"
#define METRICS_NAME_MAX 200
#define METRICS_HELP_MAX 1024

enum metric_type { METRIC_COUNTER, METRIC_GAUGE };

struct metric {
	char *name;
	char *help;
	enum metric_type type;
	double value;
};

struct sw_metrics {
	struct metric *v; /* creation order */
	size_t n, cap;
	double invalid; /* misuses, rendered as METRICS_INVALID */
};

struct sw_metrics *sw_metrics_new(void)
{
	return calloc(1, sizeof(struct sw_metrics));
}

void sw_metrics_destroy(struct sw_metrics *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n; i++) {
		free(m->v[i].name);
		free(m->v[i].help);
	}
	free(m->v);
	free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]*, at most METRICS_NAME_MAX bytes. */
static int metric_name_ok(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || strlen(s) > METRICS_NAME_MAX)
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':')
			continue;
		if (i > 0 && c >= '0' && c <= '9')
			continue;
		return 0;
	}
	return 1;
}

/* The metric called name with this type, created on first use; NULL on
 * misuse or allocation failure (counted as invalid). */
static struct metric *metric_get(struct sw_metrics *m, const char *name, const char *help,
				 enum metric_type type)
{
	struct metric *e;
	size_t i;

	if (!metric_name_ok(name) || strcmp(name, METRICS_INVALID) == 0)
		goto invalid;
	for (i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].name, name) != 0)
			continue;
		if (m->v[i].type != type)
			goto invalid;
		return &m->v[i];
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct metric *v = realloc(m->v, cap * sizeof(*v));

		if (v == NULL)
			goto invalid;
		m->v = v;
		m->cap = cap;
	}
	e = &m->v[m->n];
	e->name = strdup(name);
	e->help = strndup(help != NULL ? help : "", METRICS_HELP_MAX);
	if (e->name == NULL || e->help == NULL) {
		free(e->name);
		free(e->help);
		goto invalid;
	}
	e->type = type;
	e->value = 0;
	m->n++;
	return e;
invalid:
	m->invalid += 1;
	return NULL;
}

void sw_metrics_counter_add(struct sw_metrics *m, const char *name, const char *help, double v)
{
	struct metric *e;

	if (m == NULL)
		return;
	if (!(v >= 0) || isinf(v)) {
		m->invalid += 1;
		return;
	}
	if ((e = metric_get(m, name, help, METRIC_COUNTER)) != NULL)
		e->value += v;
}

void sw_metrics_gauge_set(struct sw_metrics *m, const char *name, const char *help, double v)
{
	struct metric *e;

	if (m == NULL)
		return;
	if ((e = metric_get(m, name, help, METRIC_GAUGE)) != NULL)
		e->value = v;
}

/* The shortest %g form that reads back as the same double, or the
 * exposition format's spelling of the special values. */
static void metric_value(FILE *f, double v)
{
	char buf[64];

	if (isnan(v)) {
		fputs("NaN", f);
		return;
	}
	if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", f);
		return;
	}
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	fputs(buf, f);
}

/* HELP text escapes backslash and newline. */
static void metric_help(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void metric_render_one(FILE *f, const char *name, const char *help, const char *type,
			      double v)
{
	fprintf(f, "# HELP %s", name);
	if (help[0] != '\0') {
		fputc(' ', f);
		metric_help(f, help);
	}
	fprintf(f, "\n# TYPE %s %s\n%s ", name, type, name);
	metric_value(f, v);
	fputc('\n', f);
}

char *sw_metrics_render(const struct sw_metrics *m)
{
	char *out = NULL;
	size_t len = 0, i;
	FILE *f;

	if ((f = open_memstream(&out, &len)) == NULL)
		return NULL;
	for (i = 0; m != NULL && i < m->n; i++)
		metric_render_one(f, m->v[i].name, m->v[i].help,
				  m->v[i].type == METRIC_COUNTER ? "counter" : "gauge",
				  m->v[i].value);
	metric_render_one(f, METRICS_INVALID, "Metric updates refused (bad name, type or value).",
			  "counter", m != NULL ? m->invalid : 0);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
