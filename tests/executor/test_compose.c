/*
 * executor_compose: step.finished as sw_executor_compose encodes it, read
 * back with the registry: the header taken from the dispatch with a fresh
 * event id, the output or the error text, and the rules -- an output over
 * the job's limit or over what the bus carries fails "output_too_large",
 * secrets pass the redaction hook, error texts become valid UTF-8 -- and
 * sw_executor_utf8 itself. Needs nothing running.
 */
#include <stdlib.h>
#include <string.h>

#include "sw_executor.h"
#include "sw_test.h"

static struct sw_event_registry *reg;
static int redactions;

static int t_wants(void *arg, const char *mode)
{
	(void)arg;
	(void)mode;
	return 1;
}

static int t_job_new(void *arg, struct sw_executor_job *j)
{
	(void)arg;
	(void)j;
	return 0;
}

static void t_job(void *arg, struct sw_executor_job *j)
{
	(void)arg;
	(void)j;
}

static void t_report(void *arg, const struct sw_executor_report *r)
{
	(void)arg;
	(void)r;
}

static void t_fatal(void *arg, const char *what, const char *why)
{
	(void)arg;
	SW_CHECKF(0, "fatal: %s: %s", what, why);
}

/* Masks every "hunter2" as "[REDACTED]". */
static char *t_redact(void *arg, const char *text)
{
	const char *key = "hunter2", *hit;
	char *out = malloc(strlen(text) * 2 + 16), *o = out;

	(void)arg;
	SW_CHECK(out != NULL);
	redactions++;
	while ((hit = strstr(text, key)) != NULL) {
		memcpy(o, text, (size_t)(hit - text));
		o += hit - text;
		memcpy(o, "[REDACTED]", 10);
		o += 10;
		text = hit + strlen(key);
	}
	strcpy(o, text);
	return out;
}

static const struct sw_executor_ops ops = {
    .wants = t_wants,
    .job_new = t_job_new,
    .begin = t_job,
    .start = t_job,
    .job_free = t_job,
    .redact = t_redact,
    .report = t_report,
    .fatal = t_fatal,
};

static struct sw_executor *executor(struct event_base *base, size_t bus_max)
{
	struct sw_executor_config c = {
	    .base = base,
	    .reg = reg,
	    .producer = "sagewai-test",
	    .metrics_prefix = "sagewai_test",
	    .executor = "sagewai-test@here/1",
	    .bus_max = bus_max,
	    .concurrency = 1,
	    .ops = &ops,
	};
	char err[256];
	struct sw_executor *ex = sw_executor_new(&c, err, sizeof(err));

	SW_CHECKF(ex != NULL, "%s", err);
	return ex;
}

static void job_init(struct sw_executor_job *j)
{
	memset(j, 0, sizeof(*j));
	sw_event_header_init(&j->dh, "step.dispatched", "sagewai-scheduler");
	snprintf(j->dh.tenant, sizeof(j->dh.tenant), "acme");
	snprintf(j->dh.run_id, sizeof(j->dh.run_id), "run-1");
	snprintf(j->dh.step_id, sizeof(j->dh.step_id), "run-1/greet/2");
	snprintf(j->dh.trace_id, sizeof(j->dh.trace_id), "trace-9");
	snprintf(j->step, sizeof(j->step), "greet");
	snprintf(j->mode, sizeof(j->mode), "in_process");
	j->attempt = 2;
	j->t0_ns = sw_mono_ns();
}

/* Compose and decode; the caller decrefs. */
static json_t *compose(struct sw_executor *ex, struct sw_executor_job *j, enum sw_step_status st,
		       json_t *output, const char *error)
{
	char err[256];
	json_t *ev;

	SW_CHECKF(sw_executor_compose(ex, j, st, output, error, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(j->finished != NULL && j->finished_len > 0);
	ev = sw_event_decode(reg, j->finished, j->finished_len, err, sizeof(err));
	SW_CHECKF(ev != NULL, "%s", err);
	return ev;
}

static const char *str(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(o, path1);

	if (path2 != NULL)
		v = json_object_get(v, path2);
	return json_string_value(v);
}

static void t_succeeded(struct sw_executor *ex)
{
	struct sw_executor_job j;
	uint8_t id[16];
	json_t *out = json_pack("{s:s, s:i}", "text", "hello hunter2", "n", 3), *ev;

	job_init(&j);
	redactions = 0;
	ev = compose(ex, &j, SW_STEP_SUCCEEDED, out, NULL);
	SW_CHECK(j.status == SW_STEP_SUCCEEDED);
	SW_CHECK(strcmp(str(ev, "header", "type"), "step.finished") == 0);
	SW_CHECK(strcmp(str(ev, "header", "producer"), "sagewai-test") == 0);
	SW_CHECK(strcmp(str(ev, "header", "tenant"), "acme") == 0);
	SW_CHECK(strcmp(str(ev, "header", "run_id"), "run-1") == 0);
	SW_CHECK(strcmp(str(ev, "header", "step_id"), "run-1/greet/2") == 0);
	SW_CHECK(strcmp(str(ev, "header", "trace_id"), "trace-9") == 0);
	SW_CHECK(sw_uuid_parse(str(ev, "header", "event_id"), id) == 0);
	SW_CHECK(strcmp(str(ev, "header", "event_id"), j.dh.event_id) != 0);
	SW_CHECK(strcmp(str(ev, "step", NULL), "greet") == 0);
	SW_CHECK(json_integer_value(json_object_get(ev, "attempt")) == 2);
	SW_CHECK(strcmp(str(ev, "status", NULL), "SUCCEEDED") == 0);
	SW_CHECKF(strcmp(str(ev, "output", NULL), "{\"text\":\"hello [REDACTED]\",\"n\":3}") == 0,
		  "output %s", str(ev, "output", NULL));
	SW_CHECK(json_is_null(json_object_get(ev, "error")));
	SW_CHECK(json_integer_value(json_object_get(ev, "duration_us")) >= 0);
	SW_CHECK(redactions == 1);
	json_decref(ev);
	json_decref(out);
	free(j.finished);
}

static void t_failed(struct sw_executor *ex)
{
	struct sw_executor_job j;
	json_t *ev;
	const char *e;

	job_init(&j);
	/* a peer's text cut mid-character, and the secret */
	ev = compose(ex, &j, SW_STEP_FAILED, NULL,
		     "http_error: HTTP 500: caf\xc3 hunter2 \xe2\x82\xac ok");
	SW_CHECK(j.status == SW_STEP_FAILED);
	SW_CHECK(strcmp(str(ev, "status", NULL), "FAILED") == 0);
	SW_CHECK(json_is_null(json_object_get(ev, "output")));
	e = str(ev, "error", NULL);
	SW_CHECKF(e != NULL && strcmp(e, "http_error: HTTP 500: caf\xef\xbf\xbd [REDACTED] "
					 "\xe2\x82\xac ok") == 0,
		  "error %s", e ? e : "(null)");
	json_decref(ev);
	free(j.finished);

	job_init(&j);
	ev = compose(ex, &j, SW_STEP_TIMED_OUT, NULL, "timeout: step exceeded its timeout");
	SW_CHECK(strcmp(str(ev, "status", NULL), "TIMED_OUT") == 0);
	SW_CHECK(strcmp(str(ev, "error", NULL), "timeout: step exceeded its timeout") == 0);
	json_decref(ev);
	free(j.finished);

	job_init(&j);
	ev = compose(ex, &j, SW_STEP_CANCELLED, NULL, "cancelled: the run was cancelled");
	SW_CHECK(strcmp(str(ev, "status", NULL), "CANCELLED") == 0);
	json_decref(ev);
	free(j.finished);
}

static void t_too_large(struct sw_executor *ex, struct sw_executor *small)
{
	static const char prefix[] = "output_too_large: output is 2002 bytes, over the limit of ";
	struct sw_executor_job j;
	char big[2001];
	json_t *out, *ev;

	/* over the job's own limit: the JSON text is 202 bytes */
	memset(big, 'x', 200);
	big[200] = '\0';
	out = json_string(big);
	job_init(&j);
	j.text_max = 100;
	ev = compose(ex, &j, SW_STEP_SUCCEEDED, out, NULL);
	SW_CHECK(j.status == SW_STEP_FAILED);
	SW_CHECKF(strcmp(str(ev, "error", NULL),
			 "output_too_large: output is 202 bytes, over the limit of 100") == 0,
		  "error %s", str(ev, "error", NULL));
	SW_CHECK(json_is_null(json_object_get(ev, "output")));
	json_decref(ev);
	free(j.finished);
	/* at the limit it passes */
	j.finished = NULL;
	job_init(&j);
	j.text_max = 202;
	ev = compose(ex, &j, SW_STEP_SUCCEEDED, out, NULL);
	SW_CHECK(j.status == SW_STEP_SUCCEEDED);
	json_decref(ev);
	json_decref(out);
	free(j.finished);

	/* within the step's limit, over the bus's 1000 bytes */
	memset(big, 'y', 2000);
	big[2000] = '\0';
	out = json_string(big);
	job_init(&j);
	ev = compose(small, &j, SW_STEP_SUCCEEDED, out, NULL);
	SW_CHECK(j.status == SW_STEP_FAILED);
	SW_CHECK(j.finished_len <= 1000);
	SW_CHECKF(strncmp(str(ev, "error", NULL), prefix, strlen(prefix)) == 0 &&
		      atoi(str(ev, "error", NULL) + strlen(prefix)) > 0 &&
		      atoi(str(ev, "error", NULL) + strlen(prefix)) < 1000,
		  "error %s", str(ev, "error", NULL));
	json_decref(ev);
	json_decref(out);
	free(j.finished);
}

static void t_utf8(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
	    {"plain", 5, "plain"},
	    {"\xc3\xa9t\xc3\xa9", 5, "\xc3\xa9t\xc3\xa9"},		  /* été */
	    {"\xf0\x9f\x99\x82", 4, "\xf0\x9f\x99\x82"},		  /* 4 bytes */
	    {"a\xc0\x80z", 4, "a\xef\xbf\xbd\xef\xbf\xbdz"},	  /* overlong NUL */
	    {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
	    {"end\xe2\x82", 5, "end\xef\xbf\xbd\xef\xbf\xbd"},	  /* cut short */
	    {"a\0b", 3, "a\xef\xbf\xbd" "b"},			  /* NUL */
	    {"\xff", 1, "\xef\xbf\xbd"},
	    {"", 0, ""},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = sw_executor_utf8(cases[i].in, cases[i].len);

		SW_CHECK(s != NULL);
		SW_CHECKF(strcmp(s, cases[i].out) == 0, "case %zu", i);
		free(s);
	}
	SW_CHECK(strcmp(sw_executor_status_name(SW_STEP_SUCCEEDED), "SUCCEEDED") == 0);
	SW_CHECK(strcmp(sw_executor_status_name(SW_STEP_TIMED_OUT), "TIMED_OUT") == 0);
	SW_CHECK(strcmp(sw_executor_status_name(SW_STEP_CANCELLED), "CANCELLED") == 0);
}

static void t_bad_config(struct event_base *base)
{
	struct sw_executor_config c = {.base = base, .reg = reg, .ops = &ops, .concurrency = 0};
	char err[256];

	c.bus_max = 1000;
	c.producer = "p";
	c.executor = "e";
	c.metrics_prefix = "m";
	SW_CHECK(sw_executor_new(&c, err, sizeof(err)) == NULL && err[0] != '\0');
	c.concurrency = 1;
	c.producer = NULL;
	SW_CHECK(sw_executor_new(&c, err, sizeof(err)) == NULL && err[0] != '\0');
	SW_CHECK(sw_executor_new(NULL, err, sizeof(err)) == NULL);
}

int main(void)
{
	struct event_base *base = event_base_new();
	struct sw_executor *ex, *small;
	char err[256];

	SW_CHECK(base != NULL);
	SW_CHECKF((reg = sw_events_registry_new(err, sizeof(err))) != NULL, "%s", err);
	ex = executor(base, 1000000);
	small = executor(base, 1000);
	t_succeeded(ex);
	t_failed(ex);
	t_too_large(ex, small);
	t_utf8();
	t_bad_config(base);
	sw_executor_destroy(ex);
	sw_executor_destroy(small);
	sw_events_registry_destroy(reg);
	event_base_free(base);
	return 0;
}
