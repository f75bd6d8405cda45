/*
 * What the commands print: one-line text that is safe on a terminal,
 * times, durations and padded tables. Every string that came from a
 * server goes through cli_oneline before it reaches the terminal, so an
 * answer cannot move the cursor or split an error into several lines.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

char *cli_oneline(const char *s, size_t max, char *out, size_t outlen)
{
	size_t lim, o = 0, i = 0;

	if (outlen == 0)
		return out;
	lim = outlen - 1;
	if (max > 0 && max < lim)
		lim = max;
	while (s[i] != '\0' && o < lim) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			out[o++] = ' ';
			i++;
		} else if (c == 0xc2 && (unsigned char)s[i + 1] >= 0x80 &&
			   (unsigned char)s[i + 1] <= 0x9f) {
			out[o++] = ' '; /* a C1 control, e.g. U+009B (CSI) */
			i += 2;
		} else {
			out[o++] = s[i++];
		}
	}
	if (s[i] != '\0') {
		o = lim > 3 ? lim - 3 : 0;
		while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80)
			o--;
		for (i = 0; i < 3 && o < lim; i++)
			out[o++] = '.';
	}
	out[o] = '\0';
	return out;
}

/* n decimal digits at *p into *v; advances *p. */
static int digits(const char **p, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		*v = *v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return 0;
}

int cli_time_parse(const char *s, int64_t *us)
{
	struct tm tm;
	const char *p = s;
	int v, frac = 0, scale = 1000000, off = 0, oh, om = 0;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || digits(&p, 4, &v) == -1 || *p++ != '-')
		return -1;
	tm.tm_year = v - 1900;
	if (digits(&p, 2, &v) == -1 || v < 1 || v > 12 || *p++ != '-')
		return -1;
	tm.tm_mon = v - 1;
	if (digits(&p, 2, &v) == -1 || v < 1 || v > 31)
		return -1;
	tm.tm_mday = v;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (digits(&p, 2, &tm.tm_hour) == -1 || tm.tm_hour > 23 || *p++ != ':' ||
	    digits(&p, 2, &tm.tm_min) == -1 || tm.tm_min > 59 || *p++ != ':' ||
	    digits(&p, 2, &tm.tm_sec) == -1 || tm.tm_sec > 60)
		return -1;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1;

		if (digits(&p, 2, &oh) == -1)
			return -1;
		if (*p == ':')
			p++;
		if (*p >= '0' && *p <= '9' && digits(&p, 2, &om) == -1)
			return -1;
		off = sign * (oh * 3600 + om * 60);
	} else {
		return -1;
	}
	if (*p != '\0' || (t = timegm(&tm)) == (time_t)-1)
		return -1;
	*us = ((int64_t)t - off) * 1000000 + frac;
	return 0;
}

void cli_time_fmt(int64_t us, char *out, size_t outlen)
{
	time_t t = (time_t)(us / 1000000);
	int ms = (int)((us % 1000000) / 1000);
	struct tm tm;
	char b[32];

	if (us < 0 || gmtime_r(&t, &tm) == NULL) {
		snprintf(out, outlen, "-");
		return;
	}
	strftime(b, sizeof(b), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(out, outlen, "%s.%03d", b, ms);
}

void cli_time_fmt_str(const char *s, char *out, size_t outlen)
{
	int64_t us;

	if (s == NULL)
		snprintf(out, outlen, "-");
	else if (cli_time_parse(s, &us) == 0)
		cli_time_fmt(us, out, outlen);
	else
		cli_oneline(s, 40, out, outlen);
}

void cli_duration_fmt(int64_t us, char *out, size_t outlen)
{
	if (us < 0)
		snprintf(out, outlen, "-");
	else if (us < 100)
		snprintf(out, outlen, "%.2f ms", (double)us / 1000.0);
	else if (us < 1000000)
		snprintf(out, outlen, "%.1f ms", (double)us / 1000.0);
	else if (us < 60 * 1000000LL)
		snprintf(out, outlen, "%.2f s", (double)us / 1e6);
	else if (us < 3600 * 1000000LL)
		snprintf(out, outlen, "%dm%02ds", (int)(us / 60000000),
			 (int)(us / 1000000 % 60));
	else
		snprintf(out, outlen, "%lldh%02dm", (long long)(us / 3600000000LL),
			 (int)(us / 60000000 % 60));
}

void cli_duration_between(json_t *obj, const char *a, const char *b, char *out, size_t outlen)
{
	int64_t ta, tb;

	if (cli_time_parse(cli_jstr(obj, a, NULL), &ta) == -1 ||
	    cli_time_parse(cli_jstr(obj, b, NULL), &tb) == -1 || tb < ta) {
		snprintf(out, outlen, "%s", "");
		return;
	}
	cli_duration_fmt(tb - ta, out, outlen);
}

const char *cli_jstr(json_t *obj, const char *key, const char *dflt)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : dflt;
}

struct cli_table {
	int ncols;
	size_t nrows, cap;
	char **cells; /* nrows * ncols, row 0 the header */
};

struct cli_table *cli_table_new(int ncols, const char *const *header)
{
	struct cli_table *t;

	if (ncols < 1 || ncols > 16 || (t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->ncols = ncols;
	if (cli_table_add(t, header) == -1) {
		cli_table_free(t);
		return NULL;
	}
	return t;
}

int cli_table_add(struct cli_table *t, const char *const *cells)
{
	char line[1024];
	int i;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **np = realloc(t->cells, cap * (size_t)t->ncols * sizeof(*np));

		if (np == NULL)
			return -1;
		t->cells = np;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++) {
		cli_oneline(cells[i] ? cells[i] : "", 0, line, sizeof(line));
		if ((t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = strdup(line)) == NULL) {
			while (i-- > 0)
				free(t->cells[t->nrows * (size_t)t->ncols + (size_t)i]);
			return -1;
		}
	}
	t->nrows++;
	return 0;
}

/* Terminal columns of a UTF-8 string (one per code point). */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void cli_table_print(const struct cli_table *t, FILE *out, const char *indent)
{
	size_t w[16] = {0}, r;
	int c, nc = t->ncols < 16 ? t->ncols : 16;

	for (r = 0; r < t->nrows; r++)
		for (c = 0; c < nc; c++) {
			size_t x = width(t->cells[r * (size_t)t->ncols + (size_t)c]);

			if (x > w[c])
				w[c] = x;
		}
	for (r = 0; r < t->nrows; r++) {
		/* trailing empty cells leave no trailing spaces */
		int last = nc - 1;

		while (last > 0 && t->cells[r * (size_t)t->ncols + (size_t)last][0] == '\0')
			last--;
		fputs(indent, out);
		for (c = 0; c <= last; c++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];

			fputs(s, out);
			if (c < last)
				fprintf(out, "%*s", (int)(w[c] - width(s) + 2), "");
		}
		fputc('\n', out);
	}
}

void cli_table_free(struct cli_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

void cli_json_print(json_t *v, FILE *out)
{
	json_dumpf(v, out, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', out);
}

void cli_raw_print(const struct cli_resp *r, FILE *out)
{
	if (r->body == NULL || r->len == 0) {
		fputs("{}\n", out);
		return;
	}
	fwrite(r->body, 1, r->len, out);
	if (r->body[r->len - 1] != '\n')
		fputc('\n', out);
}
