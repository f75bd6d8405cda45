/*
 * sagewai replay run: re-run a past run as a new run linked to it, from its
 * audit trail, and show step by step how the outputs compare
 * (docs/AUDIT.md, "Re-run").
 *
 * The original's events come from the audit service (GET
 * /v1/audit/runs/{id}, as audit run reads them) or, with --log DIR, from
 * the log directory (sw_alog_cursor: the chain checked). From them: the workflow,
 * version and input of run.submitted; per step the last attempt's
 * step.dispatched (mode, spec, pinned identity) and step.finished (status,
 * output, error); the credential.decided events by step. The re-run is an
 * ordinary submit (POST /v1/runs, so every check of a submit applies: the
 * preview gate first) with a "replay" field naming the original and, per
 * step, what it is given: an in_process llm or http step its recorded
 * request and outcome (the worker answers from them), an identity-bearing
 * step its pinned keys (informational: the scheduler pins the versions from
 * its own record of the original, and identity gives those versions), a
 * cli_agent_jit step its recorded decisions. Then the run is read (polled)
 * until it ends and each step's outcome is compared with the original's:
 * same, or changed with a unified diff of the two as JSON.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sw_alog.h"
#include "sw_alog_cursor.h"
#include "sw_core.h"
#include "sw_events.h"

#define RERUN_TIMEOUT_S 600	  /* waiting for the re-run to end, by default */
#define RERUN_DIFF_CELLS 4000000u /* lines(a) x lines(b) a diff computes, at most */
#define RERUN_CONTEXT 3		  /* lines of context in a hunk */

static const char run_help[] =
	"usage: sagewai replay run ID [--latest] [--log DIR] [--timeout SECONDS] [--json]\n"
	"\n"
	"Re-run run ID as a new run linked to it (run.submitted.replay_of), from its\n"
	"audit trail, and compare the outputs step by step:\n"
	"  in_process llm and http steps answer from the original's recorded responses\n"
	"    (the model or URL is not called; a step whose request differs fails);\n"
	"  template, plugin and sandboxed steps run again on the same inputs;\n"
	"  identity-bearing steps get the original's secret versions even when rotated\n"
	"    since, or the re-run is refused before any step runs (409 revoked or\n"
	"    version_gone) when one was revoked or destroyed since;\n"
	"  cli_agent_jit steps get the recorded credential decisions.\n"
	"The re-run is an ordinary submit: the preview gate and every other check apply.\n"
	"\n"
	"  --latest         run the workflow's latest version, not the original's\n"
	"                   (to see what a changed workflow does on the recorded inputs)\n"
	"  --log DIR        read the original's events from the audit log directory DIR\n"
	"                   (its hash chain checked on the way) instead of the audit service\n"
	"  --timeout SECONDS  wait at most this long for the re-run to end (default 600)\n"
	"  --json           the comparison as one JSON object\n"
	"\n"
	"The original's events come from the audit service ($SAGEWAI_AUDIT_URL), the\n"
	"re-run goes to the scheduler ($SAGEWAI_URL), both with --token / $SAGEWAI_TOKEN.\n"
	"Exit status: 0 every step the same, 1 a step changed or a failure, 2 usage.\n";

/* What the audit trail recorded of one step (its last attempt). */
struct rstep {
	char name[128];
	int index;
	int attempt;	    /* of the latest step.dispatched */
	int fin_attempt;    /* of the latest step.finished, 0: none */
	json_t *dispatched; /* the step.dispatched event (borrowed from the answer) */
	json_t *finished;   /* the matching step.finished, or NULL */
	json_t *decisions;  /* credential.decided of the step (owned array) */
};

struct rerun {
	json_t *submitted, *finished_run; /* borrowed */
	struct rstep *steps;
	size_t n;
};

static const char *ev_type(json_t *ev)
{
	return cli_jstr(json_object_get(ev, "header"), "type", "");
}

static struct rstep *step_get(struct rerun *r, const char *name)
{
	size_t i;
	struct rstep *p;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->steps[i].name, name) == 0)
			return &r->steps[i];
	if ((p = realloc(r->steps, (r->n + 1) * sizeof(*p))) == NULL)
		return NULL;
	r->steps = p;
	p = &r->steps[r->n++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->index = 1 << 30;
	p->decisions = json_array();
	return p;
}

static int cmp_step(const void *a, const void *b)
{
	const struct rstep *x = a, *y = b;

	return x->index < y->index ? -1 : x->index > y->index;
}

/* The original's trail (the audit service's events, in log order) into r.
 * Log order is not the run's order across topics: a dispatch (on its
 * executor's topic) may be logged after its outcome (on sagewai.steps), so
 * each step keeps its latest dispatch and its latest outcome, matched by
 * attempt at the end. -1 after printing the error. */
static int trail_read(struct rerun *r, json_t *events, const char *id)
{
	json_t *item, *ev;
	size_t i;
	struct rstep *s;
	const char *t, *name;
	int attempt;

	json_array_foreach(events, i, item) {
		ev = json_object_get(item, "event");
		if (!json_is_object(ev))
			continue;
		t = ev_type(ev);
		if (strcmp(t, "run.submitted") == 0 && r->submitted == NULL) {
			r->submitted = ev;
			continue;
		}
		if (strcmp(t, "run.finished") == 0) {
			r->finished_run = ev;
			continue;
		}
		if (strcmp(t, "step.dispatched") != 0 && strcmp(t, "step.finished") != 0 &&
		    strcmp(t, "credential.decided") != 0)
			continue;
		name = cli_jstr(ev, "step", NULL);
		if (name == NULL || strlen(name) >= sizeof(s->name))
			continue;
		if ((s = step_get(r, name)) == NULL)
			return cli_error("out of memory"), -1;
		attempt = (int)json_integer_value(json_object_get(ev, "attempt"));
		if (strcmp(t, "step.dispatched") == 0) {
			if (attempt >= s->attempt) {
				s->attempt = attempt;
				s->dispatched = ev;
				s->index = (int)json_integer_value(json_object_get(ev, "index"));
			}
		} else if (strcmp(t, "step.finished") == 0) {
			if (attempt >= s->fin_attempt) {
				s->fin_attempt = attempt;
				s->finished = ev;
			}
		} else if (strcmp(t, "credential.decided") == 0) {
			json_t *d = json_deep_copy(ev);

			json_object_del(d, "header");
			json_array_append_new(s->decisions, d);
		}
	}
	if (r->submitted == NULL) {
		cli_error("the audit log holds no run.submitted of run %s (no such run, another "
			  "tenant's, or not logged yet)",
			  id);
		return -1;
	}
	if (r->finished_run == NULL) {
		cli_error("run %s has not finished (no run.finished in the audit log): a re-run "
			  "compares with a finished run",
			  id);
		return -1;
	}
	for (i = 0; i < r->n; i++)
		if (r->steps[i].dispatched == NULL ||
		    r->steps[i].fin_attempt != r->steps[i].attempt)
			r->steps[i].finished = NULL; /* the latest attempt has no outcome */
	if (r->n > 0)
		qsort(r->steps, r->n, sizeof(*r->steps), cmp_step);
	return 0;
}

/* The submit's body: the original's workflow and input, and "replay". */
static json_t *submit_body(struct rerun *r, const char *id, int latest)
{
	json_t *input, *steps = json_object(), *body;
	json_error_t jerr;
	size_t i;

	input = json_loads(cli_jstr(r->submitted, "input", "{}"), 0, &jerr);
	if (input == NULL || steps == NULL) {
		json_decref(input);
		json_decref(steps);
		return NULL;
	}
	for (i = 0; i < r->n; i++) {
		struct rstep *s = &r->steps[i];
		json_t *e = json_object(), *spec;
		const char *mode, *uses, *pin;

		if (s->dispatched == NULL || e == NULL) {
			json_decref(e);
			continue;
		}
		mode = cli_jstr(s->dispatched, "mode", "");
		spec = json_loads(cli_jstr(s->dispatched, "spec", ""), 0, NULL);
		uses = cli_jstr(spec, "uses", "");
		if (strcmp(mode, "in_process") == 0 && json_is_object(spec) &&
		    (strcmp(uses, "llm") == 0 || strcmp(uses, "http") == 0) &&
		    s->finished != NULL) {
			json_t *out = json_object_get(s->finished, "output");
			json_t *err = json_object_get(s->finished, "error");

			json_object_set(e, "request", spec);
			json_object_set_new(e, "status",
					    json_string(cli_jstr(s->finished, "status", "")));
			json_object_set_new(e, "answer",
					    json_pack("{s:O, s:O}", "output",
						      json_is_string(out) ? out : json_null(),
						      "error",
						      json_is_string(err) ? err : json_null()));
		}
		json_decref(spec);
		pin = cli_jstr(s->dispatched, "identity", "");
		if (pin[0] != '\0')
			json_object_set_new(e, "identity", json_string(pin));
		if (json_array_size(s->decisions) > 0)
			json_object_set(e, "decisions", s->decisions);
		if (json_object_size(e) > 0)
			json_object_set(steps, s->name, e);
		json_decref(e);
	}
	body = json_pack("{s:s, s:o, s:{s:s, s:o}}", "workflow",
			 cli_jstr(r->submitted, "workflow", ""), "input", input, "replay", "of",
			 id, "steps", steps);
	if (body != NULL && !latest)
		json_object_set_new(body, "version",
				    json_integer(json_integer_value(
					json_object_get(r->submitted, "workflow_version"))));
	return body;
}

/* ---- the comparison --------------------------------------------------- */

/* A step's outcome as compared and shown: {"status", "output"} or
 * {"status", "error"}; "not run" when it never ran. */
static json_t *outcome_orig(const struct rstep *s)
{
	json_t *out;
	const char *st;
	char low[32];
	size_t i;

	if (s == NULL || s->finished == NULL)
		return json_pack("{s:s}", "status", "not run");
	st = cli_jstr(s->finished, "status", "?");
	for (i = 0; st[i] != '\0' && i + 1 < sizeof(low); i++)
		low[i] = (char)(st[i] >= 'A' && st[i] <= 'Z' ? st[i] - 'A' + 'a' : st[i]);
	low[i] = '\0';
	if (strcmp(low, "timed_out") == 0)
		snprintf(low, sizeof(low), "failed");
	if (strcmp(low, "succeeded") == 0) {
		out = json_loads(cli_jstr(s->finished, "output", "null"), JSON_DECODE_ANY, NULL);
		return json_pack("{s:s, s:o}", "status", low, "output", out ? out : json_null());
	}
	return json_pack("{s:s, s:s}", "status", low, "error", cli_jstr(s->finished, "error", ""));
}

static json_t *outcome_new(json_t *st)
{
	const char *state = cli_jstr(st, "state", "not run");

	/* skipped: after an earlier step failed, as a step the original never ran */
	if (st == NULL || strcmp(state, "pending") == 0 || strcmp(state, "skipped") == 0)
		return json_pack("{s:s}", "status", "not run");
	if (strcmp(state, "succeeded") == 0)
		return json_pack("{s:s, s:O}", "status", state, "output",
				 json_object_get(st, "output") ? json_object_get(st, "output")
							       : json_null());
	return json_pack("{s:s, s:s}", "status", state, "error", cli_jstr(st, "error", ""));
}

struct lines {
	char **l;
	size_t n;
	char *buf;
};

static int lines_split(struct lines *L, json_t *doc)
{
	char *p;

	memset(L, 0, sizeof(*L));
	if ((L->buf = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS)) == NULL)
		return -1;
	for (p = L->buf;; p++) {
		char **nl = realloc(L->l, (L->n + 1) * sizeof(*nl));

		if (nl == NULL)
			return -1;
		L->l = nl;
		L->l[L->n++] = p;
		if ((p = strchr(p, '\n')) == NULL)
			break;
		*p = '\0';
	}
	return 0;
}

static void lines_free(struct lines *L)
{
	free(L->l);
	free(L->buf);
}

/* One line of a diff: ' ', '-' or '+' and the line. */
struct dline {
	char op;
	const char *s;
};

static void hunk_print(struct sw_buf *o, const struct dline *d, size_t from, size_t to)
{
	size_t i, a0 = 0, b0 = 0, na = 0, nb = 0, a = 0, b = 0;

	/* positions: count lines of each side before from */
	for (i = 0; i < from; i++) {
		a += d[i].op != '+';
		b += d[i].op != '-';
	}
	a0 = a + 1;
	b0 = b + 1;
	for (i = from; i < to; i++) {
		na += d[i].op != '+';
		nb += d[i].op != '-';
	}
	sw_buf_printf(o, "@@ -%zu,%zu +%zu,%zu @@\n", na ? a0 : a0 - 1, na, nb ? b0 : b0 - 1, nb);
	for (i = from; i < to; i++)
		sw_buf_printf(o, "%c%s\n", d[i].op, d[i].s);
}

/* A unified diff of a and b (pretty JSON, sorted keys) into o: the
 * longest common subsequence of lines, hunks with RERUN_CONTEXT lines of
 * context. Past RERUN_DIFF_CELLS the whole of a is removed and b added. */
static int diff_unified(json_t *a, json_t *b, const char *name, struct sw_buf *o)
{
	struct lines A = {0}, B = {0};
	struct dline *d = NULL;
	unsigned *T = NULL;
	size_t i, j, n = 0, k, start, end, last;
	int rc = -1;

	if (lines_split(&A, a) == -1 || lines_split(&B, b) == -1)
		goto out;
	if ((d = calloc(A.n + B.n, sizeof(*d))) == NULL)
		goto out;
	if ((A.n + 1) * (B.n + 1) <= RERUN_DIFF_CELLS &&
	    (T = calloc((A.n + 1) * (B.n + 1), sizeof(*T))) != NULL) {
		size_t w = B.n + 1;

		for (i = A.n; i-- > 0;)
			for (j = B.n; j-- > 0;)
				T[i * w + j] = strcmp(A.l[i], B.l[j]) == 0
						   ? T[(i + 1) * w + j + 1] + 1
						   : (T[(i + 1) * w + j] > T[i * w + j + 1]
							  ? T[(i + 1) * w + j]
							  : T[i * w + j + 1]);
		for (i = 0, j = 0; i < A.n || j < B.n;) {
			if (i < A.n && j < B.n && strcmp(A.l[i], B.l[j]) == 0) {
				d[n++] = (struct dline){' ', A.l[i]};
				i++;
				j++;
			} else if (i < A.n &&
				   (j == B.n || T[(i + 1) * w + j] >= T[i * w + j + 1])) {
				d[n++] = (struct dline){'-', A.l[i++]};
			} else {
				d[n++] = (struct dline){'+', B.l[j++]};
			}
		}
	} else {
		for (i = 0; i < A.n; i++)
			d[n++] = (struct dline){'-', A.l[i]};
		for (j = 0; j < B.n; j++)
			d[n++] = (struct dline){'+', B.l[j]};
	}
	sw_buf_printf(o, "--- original/%s\n+++ rerun/%s\n", name, name);
	for (k = 0; k < n;) {
		while (k < n && d[k].op == ' ')
			k++;
		if (k == n)
			break;
		start = k > RERUN_CONTEXT ? k - RERUN_CONTEXT : 0;
		/* extend while changes are within 2 * context of each other */
		last = k;
		for (end = k; end < n; end++) {
			if (d[end].op != ' ')
				last = end;
			else if (end - last > 2 * RERUN_CONTEXT)
				break;
		}
		end = last + 1 + RERUN_CONTEXT < n ? last + 1 + RERUN_CONTEXT : n;
		hunk_print(o, d, start, end);
		k = end;
	}
	rc = o->oom ? -1 : 0;
out:
	free(T);
	free(d);
	lines_free(&A);
	lines_free(&B);
	return rc;
}

static json_t *new_step(json_t *run, const char *name)
{
	json_t *st;
	size_t i;

	json_array_foreach(json_object_get(run, "steps"), i, st)
		if (strcmp(cli_jstr(st, "name", ""), name) == 0)
			return st;
	return NULL;
}

/* Seconds between two RFC 3339 fields of o; -1 when either is missing. */
static double secs(json_t *o, const char *a, const char *b)
{
	int64_t x, y;

	if (cli_time_parse(cli_jstr(o, a, ""), &x) == -1 ||
	    cli_time_parse(cli_jstr(o, b, ""), &y) == -1)
		return -1;
	return (double)(y - x) / 1e6;
}

/* One step's outcomes a (the original's) and b (the re-run's), both
 * stolen, appended to out as {step, mode, same, original, rerun[, diff]}.
 * 1 when they are the same. */
static int compare_one(json_t *out, const char *name, const char *mode, json_t *a, json_t *b,
		       struct sw_buf *diff)
{
	int eq = a != NULL && b != NULL && json_equal(a, b);
	json_t *doc;

	diff->len = 0;
	doc = json_pack("{s:s, s:s, s:b, s:O, s:O}", "step", name, "mode", mode, "same", eq,
			"original", a ? a : json_null(), "rerun", b ? b : json_null());
	if (!eq && a != NULL && b != NULL && diff_unified(a, b, name, diff) == 0)
		json_object_set_new(doc, "diff", json_stringn(diff->p, diff->len));
	json_array_append_new(out, doc);
	json_decref(a);
	json_decref(b);
	return eq;
}

/* The comparison, printed; 0 all the same, 1 a change. */
static int compare(struct cli_env *env, struct rerun *r, const char *id, json_t *orig_run,
		   json_t *run, double wall_s)
{
	json_t *out = json_array(), *st, *doc;
	struct sw_buf diff = {0};

	if (out == NULL)
		return cli_error("out of memory"), 1;
	size_t i, same = 0, changed = 0;
	const char *new_id = cli_jstr(run, "run_id", "?");
	char shown[160];

	/* the original's steps in order */
	for (i = 0; i < r->n; i++) {
		json_t *a = outcome_orig(&r->steps[i]);
		json_t *b = outcome_new(new_step(run, r->steps[i].name));

		compare_one(out, r->steps[i].name,
			    r->steps[i].dispatched ? cli_jstr(r->steps[i].dispatched, "mode", "")
						   : "",
			    a, b, &diff)
		    ? same++
		    : changed++;
	}
	/* then the steps only the re-run has (--latest) */
	json_array_foreach(json_object_get(run, "steps"), i, st) {
		size_t k;

		for (k = 0; k < r->n; k++)
			if (strcmp(r->steps[k].name, cli_jstr(st, "name", "")) == 0)
				break;
		if (k < r->n)
			continue;
		compare_one(out, cli_jstr(st, "name", "?"), cli_jstr(st, "mode", ""),
			    json_pack("{s:s}", "status", "not in the original"), outcome_new(st),
			    &diff)
		    ? same++
		    : changed++;
	}
	if (env->json) {
		json_t *o = json_pack(
		    "{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:o, s:f, s:f, s:f}", "original", id,
		    "run_id", new_id, "state", cli_jstr(run, "state", "?"), "original_state",
		    cli_jstr(orig_run, "state", cli_jstr(r->finished_run, "state", "?")),
		    "identical", changed == 0, "same", (json_int_t)same, "changed",
		    (json_int_t)changed, "steps", out, "original_s",
		    secs(orig_run, "started", "finished"), "rerun_s",
		    secs(run, "started", "finished"), "wall_s", wall_s);

		cli_json_print(o, stdout);
		json_decref(o);
	} else {
		double a = secs(orig_run, "started", "finished"),
		       b = secs(run, "started", "finished");

		printf("re-run of %s: run %s %s", cli_oneline(id, 40, shown, sizeof(shown)),
		       new_id, cli_jstr(run, "state", "?"));
		if (a >= 0 && b >= 0)
			printf(" in %.3f s (original %.3f s)", b, a);
		printf("\n");
		json_array_foreach(out, i, doc) {
			printf("  %-24s %-16s %s\n", cli_jstr(doc, "step", "?"),
			       cli_jstr(doc, "mode", ""),
			       json_is_true(json_object_get(doc, "same")) ? "same" : "changed");
			if (!json_is_true(json_object_get(doc, "same"))) {
				const char *p = cli_jstr(doc, "diff", ""), *nl;

				for (; *p != '\0'; p = nl + 1) {
					nl = strchr(p, '\n');
					if (nl == NULL)
						nl = p + strlen(p) - 1;
					printf("      %.*s\n", (int)(nl - p), p);
					if (nl[1] == '\0')
						break;
				}
			}
		}
		printf("%zu step%s: %zu same, %zu changed%s\n", same + changed,
		       same + changed == 1 ? "" : "s", same, changed,
		       changed == 0 ? " -- identical to the original" : "");
		json_decref(out);
	}
	sw_buf_free(&diff);
	return changed == 0 ? 0 : 1;
}

static int get_json(struct cli_env *env, enum cli_target t, const char *fmt, const char *id,
		    struct cli_resp *resp, int quiet)
{
	char err[1024], *esc = cli_http_escape(id), *path = NULL;
	int rc = -1;

	memset(resp, 0, sizeof(*resp));
	if (esc == NULL || asprintf(&path, fmt, esc) == -1) {
		path = NULL;
		cli_error("out of memory");
		goto out;
	}
	if (cli_http_call(env, t, "GET", path, NULL, NULL, 0, env->token, resp, err,
			  sizeof(err)) == -1) {
		if (!quiet)
			cli_error("%s", err);
		goto out;
	}
	rc = 0;
out:
	free(esc);
	free(path);
	return rc;
}

/* The events of run id in the audit log directory dir, as the audit
 * service answers them ({"events": [{"seq", "event"}, ...]}), the whole
 * chain checked on the way. -1 after printing the error. */
static int trail_from_log(const char *dir, const char *id, struct cli_resp *resp)
{
	struct sw_event_registry *reg = NULL;
	struct sw_alog_cursor *c = NULL;
	struct sw_event_header h;
	struct sw_alog_rec rec;
	json_t *events = json_array(), *ev;
	char err[1024];
	int r, rc = -1;

	memset(resp, 0, sizeof(*resp));
	if (events == NULL || (reg = sw_events_registry_new(err, sizeof(err))) == NULL ||
	    (c = sw_alog_cursor_open(dir, err, sizeof(err))) == NULL) {
		cli_error("replay run: %s", events == NULL ? "out of memory" : err);
		goto out;
	}
	while ((r = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == 1) {
		if (rec.kind != SW_ALOG_EVENT ||
		    sw_event_decode_header(reg, rec.payload, rec.payload_len, &h, err,
					   sizeof(err)) != 0 ||
		    strcmp(h.run_id, id) != 0)
			continue;
		ev = sw_event_decode(reg, rec.payload, rec.payload_len, err, sizeof(err));
		if (ev == NULL)
			continue;
		if (json_array_append_new(events, json_pack("{s:I, s:o}", "seq",
							    (json_int_t)rec.seq, "event", ev)) ==
		    -1) {
			cli_error("out of memory");
			goto out;
		}
	}
	if (r == -1) {
		cli_error("replay run: the audit log %s is broken: %s", dir, err);
		goto out;
	}
	resp->json = json_pack("{s:O}", "events", events);
	rc = resp->json != NULL ? 0 : -1;
out:
	json_decref(events);
	sw_alog_cursor_close(c);
	sw_events_registry_destroy(reg);
	return rc;
}

static int terminal(const char *state)
{
	return state != NULL && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
				 strcmp(state, "cancelled") == 0);
}

int cli_replay_run(struct cli_env *env, int argc, char **argv)
{
	const char *pos[1], *timeout = NULL, *log = NULL;
	int latest = 0, n, rc = CLI_FAIL;
	struct cli_resp trail = {0}, sub = {0}, run = {0}, orig = {0};
	struct rerun r = {0};
	json_t *body = NULL, *events;
	char err[1024], *text = NULL, *end;
	const char *new_id;
	long tmo = RERUN_TIMEOUT_S;
	int64_t t0, deadline, wait_ms = 5;
	size_t i;
	const struct cli_opt opts[] = {
	    {"--latest", NULL, &latest},
	    {"--timeout", &timeout, NULL},
	    {"--log", &log, NULL},
	    {NULL, NULL, NULL},
	};

	if ((n = cli_parse(env, "replay run", argc, argv, opts, pos, 1)) == -2) {
		fputs(run_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage("replay run", "missing ID (the run to re-run)");
	if (strlen(pos[0]) != 36)
		return cli_usage("replay run", "ID: a run id (a UUID)");
	if (timeout != NULL) {
		tmo = strtol(timeout, &end, 10);
		if (end == timeout || *end != '\0' || tmo < 1 || tmo > 86400)
			return cli_usage("replay run", "--timeout: seconds, 1 to 86400");
	}
	if (log != NULL ? trail_from_log(log, pos[0], &trail) == -1
			: get_json(env, CLI_AUDIT_SVC, "/v1/audit/runs/%s", pos[0], &trail, 0) == -1)
		goto out;
	if (!json_is_array(events = json_object_get(trail.json, "events"))) {
		cli_error("the audit service's answer has no \"events\" list");
		goto out;
	}
	if (trail_read(&r, events, pos[0]) == -1)
		goto out;
	if ((body = submit_body(&r, pos[0], latest)) == NULL ||
	    (text = json_dumps(body, JSON_COMPACT)) == NULL) {
		cli_error("the recorded input of run %s is not a JSON object, or out of memory",
			  pos[0]);
		goto out;
	}
	/* the original as the scheduler holds it, for its times (may be gone) */
	get_json(env, CLI_SCHEDULER, "/v1/runs/%s", pos[0], &orig, 1);
	t0 = sw_mono_ms();
	if (cli_http_call(env, CLI_SCHEDULER, "POST", "/v1/runs", "application/json", text,
			  strlen(text), env->token, &sub, err, sizeof(err)) == -1) {
		cli_error("re-run of %s refused: %s", pos[0], err);
		goto out;
	}
	new_id = cli_jstr(sub.json, "run_id", NULL);
	if (new_id == NULL) {
		cli_error("the scheduler's answer has no run_id");
		goto out;
	}
	if (!env->json)
		fprintf(stderr, "re-running %s as run %s\n", pos[0], new_id);
	deadline = t0 + tmo * 1000;
	for (;;) {
		cli_resp_free(&run);
		if (get_json(env, CLI_SCHEDULER, "/v1/runs/%s", new_id, &run, 0) == -1)
			goto out;
		if (terminal(cli_jstr(run.json, "state", NULL)))
			break;
		if (sw_mono_ms() >= deadline) {
			cli_error("run %s (the re-run of %s) has not ended after %ld s", new_id,
				  pos[0], tmo);
			goto out;
		}
		usleep((useconds_t)wait_ms * 1000);
		if (wait_ms < 200)
			wait_ms *= 2;
	}
	rc = compare(env, &r, pos[0], orig.json, run.json, (double)(sw_mono_ms() - t0) / 1e3) == 0
		 ? CLI_OK
		 : CLI_FAIL;
out:
	for (i = 0; i < r.n; i++)
		json_decref(r.steps[i].decisions);
	free(r.steps);
	json_decref(body);
	free(text);
	cli_resp_free(&trail);
	cli_resp_free(&sub);
	cli_resp_free(&run);
	cli_resp_free(&orig);
	return rc;
}
