/*
 * sagewai run submit|show|list|watch|cancel.
 *
 * Watching follows GET /v1/runs/{id}/events (text/event-stream, "step" and
 * "run" events carrying the step's or the run's JSON, "output" events a
 * chunk of a sandbox step's output, redacted by the sandbox host) and
 * prints one line per step state change, and each output line as
 * "  STEP | text" (stdout) or "  STEP ! text" (stderr), until the run's
 * terminal event. Output comes from the sandbox: control characters are
 * shown as '?', never passed to the terminal. Should the stream
 * end early, the run is read with GET /v1/runs/{id}; if it has not ended
 * the stream is opened again (a few times), repeated states are not
 * printed twice.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sse.h"

#define RUN_MAX_INPUT (16u << 20)
#define RUN_STREAM_RETRIES 5
#define RUN_NAME_WIDTH 11

static const char group_help[] =
	"usage: sagewai run COMMAND\n"
	"\n"
	"  submit WORKFLOW [--version N] [--input JSON|@FILE] [--watch]\n"
	"                 start a run and print its id\n"
	"  show ID [--follow]\n"
	"                 the run, its steps and its output (--follow: then watch it)\n"
	"  list           the newest runs\n"
	"  watch ID       follow a run until it ends\n"
	"  cancel ID      ask for a run to be cancelled\n";

static const char submit_help[] =
	"usage: sagewai run submit WORKFLOW [--version N] [--input JSON|@FILE] [--watch] [--json]\n"
	"\n"
	"Start a run of WORKFLOW and print the run id.\n"
	"  --version N        the workflow version (default: the latest)\n"
	"  --input JSON       the run's input, a JSON object (default {});\n"
	"  --input @FILE      read it from FILE ('@-' for standard input)\n"
	"  --watch            follow the run step by step until it ends; then exit 0\n"
	"                     when it succeeded, 1 when it failed or was cancelled\n"
	"  --json             print the answer (and with --watch each event) as JSON\n";

static const char show_help[] =
	"usage: sagewai run show ID [--follow] [--json]\n"
	"\n"
	"Show run ID: workflow, state, times, a table of its steps (name, mode,\n"
	"state, attempts, duration, error) and its output. --follow: then, unless\n"
	"the run has ended, follow it as 'run watch' does (step changes and the\n"
	"live output of its sandbox steps) until it ends.\n";

static const char list_help[] =
	"usage: sagewai run list [--json]\n"
	"\n"
	"List the newest runs (at most 100): id, workflow, state, creation time, duration.\n";

static const char watch_help[] =
	"usage: sagewai run watch ID [--json]\n"
	"\n"
	"Follow run ID step by step until it ends, with the output of its sandbox\n"
	"steps (CLI agents included) as it comes: \"  STEP | line\" for stdout,\n"
	"\"  STEP ! line\" for stderr (secret values already redacted by the sandbox\n"
	"host). Exit 0 when it succeeded, 1 when it failed or was cancelled. --json\n"
	"prints each event as {\"event\", \"data\"}.\n";

static const char cancel_help[] =
	"usage: sagewai run cancel ID [--json]\n"
	"\n"
	"Ask the scheduler to cancel run ID. A run that already ended cannot be\n"
	"cancelled (HTTP 409, exit 1).\n";

static int terminal(const char *state)
{
	return state != NULL && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
				 strcmp(state, "cancelled") == 0);
}

static long long jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* "/v1/runs/<escaped id><suffix>"; NULL when out of memory. */
static char *run_path(const char *id, const char *suffix)
{
	char *esc = cli_http_escape(id), *p;

	if (esc == NULL)
		return NULL;
	if (asprintf(&p, "/v1/runs/%s%s", esc, suffix) == -1)
		p = NULL;
	free(esc);
	return p;
}

/* GET /v1/runs/{id}: 0 with *run (owned), or -1 after printing the error. */
static int get_run(struct cli_env *env, const char *id, struct cli_resp *r)
{
	char err[1024], *path = run_path(id, "");
	int rc;

	memset(r, 0, sizeof(*r));
	if (path == NULL) {
		cli_error("out of memory");
		return -1;
	}
	rc = cli_http_call(env, CLI_SCHEDULER, "GET", path, NULL, NULL, 0, env->token, r, err,
			   sizeof(err));
	free(path);
	if (rc == -1) {
		cli_error("%s", err);
		return -1;
	}
	if (!json_is_object(r->json)) {
		cli_error("the scheduler's answer for run %s is not an object", id);
		return -1;
	}
	return 0;
}

/* ---- watch --------------------------------------------------------- */

#define WATCH_FINAL 1 /* parser callback values */
#define WATCH_ERROR 2

struct watch {
	struct cli_env *env;
	const char *run_id;
	json_t *seen;  /* step name -> "state/attempts" last printed */
	char open[160]; /* "step/stream" of the output line left unfinished, or "" */
	json_t *final; /* the run object of the terminal event (owned) */
	char err[512];
};

static void print_step(struct watch *w, json_t *s)
{
	const char *name = cli_jstr(s, "name", "?"), *state = cli_jstr(s, "state", "?");
	const char *error = cli_jstr(s, "error", NULL);
	long long attempts = jint(s, "attempts");
	char key[96], nm[128], st[32], dur[32], e[256] = "";
	const char *prev;

	snprintf(key, sizeof(key), "%.64s/%lld", state, attempts);
	prev = cli_jstr(w->seen, name, NULL);
	if ((prev != NULL && strcmp(prev, key) == 0) || strcmp(state, "pending") == 0)
		return;
	json_object_set_new(w->seen, name, json_string(key));
	cli_oneline(name, 64, nm, sizeof(nm));
	cli_oneline(state, 20, st, sizeof(st));
	if (error != NULL)
		cli_oneline(error, 200, e, sizeof(e));
	printf("  %-*s ", RUN_NAME_WIDTH, nm);
	if (strcmp(state, "dispatched") == 0 || strcmp(state, "running") == 0) {
		printf("%s (attempt %lld)\n", st, attempts);
	} else if (strcmp(state, "retrying") == 0) {
		printf("retrying (attempt %lld failed%s%s)\n", attempts, e[0] ? ": " : "", e);
	} else {
		cli_duration_between(s, "started", "finished", dur, sizeof(dur));
		if (dur[0] == '\0' && e[0] == '\0')
			printf("%s\n", st);
		else if (e[0] == '\0')
			printf("%-10s %s\n", st, dur);
		else if (dur[0] == '\0')
			printf("%-10s %s\n", st, e);
		else
			printf("%-10s %s  %s\n", st, dur, e);
	}
	fflush(stdout);
}

/* One chunk of a step's output: each line prefixed with the step's name and
 * the stream's mark; a line cut between chunks continues on the next. The
 * bytes are the sandbox's: C0 and C1 controls (but tab) and DEL become
 * '?', so nothing reaches the terminal as an escape sequence. */
static void print_output(struct watch *w, json_t *o)
{
	const char *step = cli_jstr(o, "step", "?"), *stream = cli_jstr(o, "stream", "stdout");
	json_t *d = json_object_get(o, "data");
	const unsigned char *p = (const unsigned char *)json_string_value(d);
	size_t n = json_string_length(d), i;
	char key[160], nm[128];
	int err = strcmp(stream, "stderr") == 0, open;

	if (p == NULL)
		return;
	snprintf(key, sizeof(key), "%.64s/%s", step, err ? "stderr" : "stdout");
	if (w->open[0] != '\0' && strcmp(w->open, key) != 0)
		putchar('\n'); /* another stream's line: it goes on under its own prefix */
	open = strcmp(w->open, key) == 0;
	cli_oneline(step, 64, nm, sizeof(nm));
	for (i = 0; i < n; i++) {
		if (!open) {
			printf("  %-*s %c ", RUN_NAME_WIDTH, nm, err ? '!' : '|');
			open = 1;
		}
		if (p[i] == '\n') {
			putchar('\n');
			open = 0;
		} else if (p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
			putchar('?'); /* a C1 control: U+0080..U+009F */
			i++;
		} else if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
			putchar('?');
		} else {
			putchar(p[i]);
		}
	}
	if (json_is_true(json_object_get(o, "truncated"))) {
		if (open)
			putchar('\n');
		printf("  %-*s %c [output truncated: the rest is in the step's result]\n",
		       RUN_NAME_WIDTH, nm, err ? '!' : '|');
		open = 0;
	}
	snprintf(w->open, sizeof(w->open), "%s", open ? key : "");
	fflush(stdout);
}

/* Finish the lines of output left open (before a step's or the run's
 * state is printed). */
static void close_output(struct watch *w)
{
	if (w->open[0] != '\0')
		putchar('\n');
	w->open[0] = '\0';
}

static int on_event(const char *event, const char *data, size_t len, void *opaque)
{
	struct watch *w = opaque;
	json_error_t je;
	json_t *o;
	int rc = 0;

	if ((o = json_loadb(data, len, 0, &je)) == NULL || !json_is_object(o)) {
		snprintf(w->err, sizeof(w->err), "event stream: a \"%.32s\" event is not a JSON "
			 "object: %s", event, o == NULL ? je.text : "other JSON value");
		json_decref(o);
		return WATCH_ERROR;
	}
	if (w->env->json) {
		json_t *line = json_pack("{s:s, s:O}", "event", event, "data", o);

		json_dumpf(line, stdout, JSON_COMPACT);
		putchar('\n');
		fflush(stdout);
		json_decref(line);
	} else if (strcmp(event, "step") == 0) {
		close_output(w);
		print_step(w, o);
	} else if (strcmp(event, "output") == 0) {
		print_output(w, o);
	}
	/* other event types (e.g. keep-alives) carry nothing for us */
	if (strcmp(event, "run") == 0 && terminal(cli_jstr(o, "state", NULL))) {
		w->final = json_incref(o);
		rc = WATCH_FINAL;
	}
	json_decref(o);
	return rc;
}

/* Print the end of a run; the exit code. */
static int print_final(struct cli_env *env, const char *id, json_t *run)
{
	const char *state = cli_jstr(run, "state", "?"), *error = cli_jstr(run, "error", NULL);
	json_t *out = json_object_get(run, "output");
	char e[512] = "", shown[128];
	int ok = strcmp(state, "succeeded") == 0;

	if (env->json)
		return ok ? CLI_OK : CLI_FAIL;
	cli_oneline(id, 100, shown, sizeof(shown));
	if (error != NULL)
		cli_oneline(error, 400, e, sizeof(e));
	printf("run %s %s%s%s\n", shown, state, e[0] ? ": " : "", e);
	if (ok && out != NULL && !json_is_null(out))
		cli_json_print(out, stdout);
	return ok ? CLI_OK : CLI_FAIL;
}

static int watch(struct cli_env *env, const char *id)
{
	struct watch w = {.env = env, .run_id = id};
	struct cli_resp r = {0};
	struct cli_sse *sse;
	char err[1024], *path;
	int attempt, rc = CLI_FAIL, src;

	if ((path = run_path(id, "/events")) == NULL || (w.seen = json_object()) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	for (attempt = 0;; attempt++) {
		if ((sse = cli_sse_new(0, on_event, &w)) == NULL) {
			cli_error("out of memory");
			goto out;
		}
		src = cli_http_stream(env, path, sse, err, sizeof(err));
		cli_sse_destroy(sse);
		if (src == WATCH_FINAL)
			break;
		if (src == WATCH_ERROR) {
			cli_error("%s", w.err);
			goto out;
		}
		if (src == -1) {
			cli_error("%s", err);
			goto out;
		}
		/* the stream ended without the run's terminal event */
		if (get_run(env, id, &r) == -1)
			goto out;
		if (terminal(cli_jstr(r.json, "state", NULL))) {
			w.final = json_incref(r.json);
			if (env->json) {
				json_t *line = json_pack("{s:s, s:O}", "event", "run", "data",
							 r.json);

				json_dumpf(line, stdout, JSON_COMPACT);
				putchar('\n');
				json_decref(line);
			}
			break;
		}
		cli_resp_free(&r);
		if (attempt >= RUN_STREAM_RETRIES) {
			cli_error("the event stream of run %s keeps ending before the run does", id);
			goto out;
		}
		sleep(1);
	}
	/* a terminal event without the output: read the run for it */
	if (!env->json && strcmp(cli_jstr(w.final, "state", ""), "succeeded") == 0 &&
	    json_object_get(w.final, "output") == NULL) {
		cli_resp_free(&r);
		if (get_run(env, id, &r) == -1)
			goto out;
		json_decref(w.final);
		w.final = json_incref(r.json);
	}
	if (!env->json)
		close_output(&w);
	rc = print_final(env, id, w.final);
out:
	cli_resp_free(&r);
	json_decref(w.final);
	json_decref(w.seen);
	free(path);
	return rc;
}

/* ---- commands ------------------------------------------------------ */

/* The --input value as a JSON object: 0, or -1 after printing the error
 * (*code set to the exit code). */
static int parse_input(const char *arg, json_t **out, int *code)
{
	json_error_t je;
	char err[1024], *text = NULL;
	size_t len;

	*code = CLI_USAGE;
	if (arg == NULL) {
		*out = json_object();
		return 0;
	}
	if (arg[0] == '@') {
		if ((text = cli_read_file(arg + 1, RUN_MAX_INPUT, &len, err, sizeof(err))) ==
		    NULL) {
			cli_error("run submit: --input: %s", err);
			*code = CLI_FAIL;
			return -1;
		}
		*out = json_loadb(text, len, 0, &je);
		free(text);
	} else {
		*out = json_loads(arg, 0, &je);
	}
	if (*out == NULL) {
		cli_usage("run submit", "--input is not valid JSON: line %d column %d: %s",
			  je.line, je.column, je.text);
		return -1;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		cli_usage("run submit", "--input must be a JSON object");
		return -1;
	}
	return 0;
}

static int run_submit(struct cli_env *env, int argc, char **argv)
{
	const char *version = NULL, *input = NULL, *pos[1];
	int watch_flag = 0, n, rc = CLI_FAIL;
	const struct cli_opt opts[] = {
		{"--version", &version, NULL},
		{"--input", &input, NULL},
		{"--watch", NULL, &watch_flag},
		{NULL, NULL, NULL},
	};
	struct cli_resp r = {0};
	json_t *in = NULL, *req = NULL;
	char *end;
	const char *id;
	long long ver = 0;

	if ((n = cli_parse(env, "run submit", argc, argv, opts, pos, 1)) == -2) {
		fputs(submit_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage("run submit", "missing WORKFLOW");
	if (version != NULL) {
		ver = strtoll(version, &end, 10);
		if (*version == '\0' || *end != '\0' || ver < 1 || ver > 2147483647)
			return cli_usage("run submit", "--version must be a positive integer");
	}
	if (parse_input(input, &in, &rc) == -1)
		return rc;
	rc = CLI_FAIL;
	req = json_pack("{s:s, s:o}", "workflow", pos[0], "input", in);
	in = NULL;
	if (req == NULL) {
		cli_error("the workflow name is not valid UTF-8");
		return CLI_USAGE;
	}
	if (ver > 0)
		json_object_set_new(req, "version", json_integer(ver));
	if (cli_call_json(env, CLI_SCHEDULER, "POST", "/v1/runs", req, env->token, &r) < 0)
		goto out;
	if ((id = cli_jstr(r.json, "run_id", NULL)) == NULL || *id == '\0') {
		cli_error("the scheduler's answer has no run_id");
		goto out;
	}
	if (env->json) {
		cli_raw_print(&r, stdout);
	} else {
		char shown[128];

		printf("%s\n", cli_oneline(id, 100, shown, sizeof(shown)));
	}
	fflush(stdout);
	rc = watch_flag ? watch(env, id) : CLI_OK;
out:
	cli_resp_free(&r);
	json_decref(req);
	return rc;
}

/* The single ID argument of show, watch and cancel: the parse result. */
static int one_id(struct cli_env *env, const char *cmd, const char *help, int argc,
		  char **argv, const char **id)
{
	int n = cli_parse(env, cmd, argc, argv, NULL, id, 1);

	if (n == -2) {
		fputs(help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage(cmd, "missing ID");
	return -1;
}

static void print_steps(json_t *steps)
{
	static const char *const head[] = {"STEP", "MODE", "STATE", "ATTEMPTS", "DURATION",
					   "ERROR"};
	struct cli_table *t = cli_table_new(6, head);
	json_t *s;
	size_t i;

	if (t == NULL)
		return;
	json_array_foreach(steps, i, s) {
		char att[32], dur[32];
		const char *row[6] = {cli_jstr(s, "name", "?"), cli_jstr(s, "mode", ""),
				      cli_jstr(s, "state", "?"), att, dur,
				      cli_jstr(s, "error", "")};

		snprintf(att, sizeof(att), "%lld", jint(s, "attempts"));
		cli_duration_between(s, "started", "finished", dur, sizeof(dur));
		if (cli_table_add(t, row) == -1)
			break;
	}
	cli_table_print(t, stdout, "  ");
	cli_table_free(t);
}

static int run_show(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r;
	const char *id;
	json_t *run, *steps, *v;
	char buf[1024], tm[64], dur[32], *in;
	int follow = 0, n, ended;
	const struct cli_opt opts[] = {
		{"--follow", NULL, &follow},
		{NULL, NULL, NULL},
	};

	if ((n = cli_parse(env, "run show", argc, argv, opts, &id, 1)) == -2) {
		fputs(show_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage("run show", "missing ID");
	if (get_run(env, id, &r) == -1) {
		cli_resp_free(&r);
		return CLI_FAIL;
	}
	ended = terminal(cli_jstr(r.json, "state", NULL));
	if (env->json) {
		cli_raw_print(&r, stdout);
		cli_resp_free(&r);
		return follow && !ended ? watch(env, id) : CLI_OK;
	}
	run = r.json;
	printf("run       %s\n", cli_oneline(cli_jstr(run, "run_id", id), 100, buf, sizeof(buf)));
	printf("workflow  %s", cli_oneline(cli_jstr(run, "workflow", "?"), 100, buf, sizeof(buf)));
	printf(" v%lld\n", jint(run, "version"));
	printf("state     %s\n", cli_oneline(cli_jstr(run, "state", "?"), 40, buf, sizeof(buf)));
	cli_time_fmt_str(cli_jstr(run, "created", NULL), tm, sizeof(tm));
	printf("created   %s\n", tm);
	cli_time_fmt_str(cli_jstr(run, "started", NULL), tm, sizeof(tm));
	printf("started   %s\n", tm);
	cli_time_fmt_str(cli_jstr(run, "finished", NULL), tm, sizeof(tm));
	cli_duration_between(run, "started", "finished", dur, sizeof(dur));
	printf("finished  %s%s%s%s\n", tm, dur[0] ? " (" : "", dur, dur[0] ? ")" : "");
	if ((v = json_object_get(run, "error")) != NULL && json_is_string(v))
		printf("error     %s\n", cli_oneline(json_string_value(v), 0, buf, sizeof(buf)));
	if ((v = json_object_get(run, "input")) != NULL &&
	    (in = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL) {
		printf("input     %s\n", cli_oneline(in, 200, buf, sizeof(buf)));
		free(in);
	}
	if (json_is_array(steps = json_object_get(run, "steps")) && json_array_size(steps) > 0) {
		putchar('\n');
		print_steps(steps);
	}
	if ((v = json_object_get(run, "output")) != NULL && !json_is_null(v)) {
		printf("\noutput:\n");
		cli_json_print(v, stdout);
	}
	cli_resp_free(&r);
	if (!follow || ended)
		return CLI_OK;
	printf("\nfollowing:\n");
	fflush(stdout);
	return watch(env, id);
}

static int run_list(struct cli_env *env, int argc, char **argv)
{
	static const char *const head[] = {"RUN", "WORKFLOW", "STATE", "CREATED", "DURATION"};
	struct cli_resp r = {0};
	struct cli_table *t = NULL;
	json_t *runs, *x;
	size_t i;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "run list", argc, argv, NULL, NULL, 0)) == -2) {
		fputs(list_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (cli_call_json(env, CLI_SCHEDULER, "GET", "/v1/runs", NULL, env->token, &r) < 0)
		goto out;
	if ((n = cli_answer_list(env, &r, "runs", "the scheduler", "no runs", &runs)) <= 0) {
		rc = n == 0 ? CLI_OK : CLI_FAIL;
		goto out;
	}
	if ((t = cli_table_new(5, head)) == NULL)
		goto nomem;
	json_array_foreach(runs, i, x) {
		char wf[160], created[64], dur[32];
		const char *row[5] = {cli_jstr(x, "run_id", "?"), wf, cli_jstr(x, "state", "?"),
				      created, dur};

		snprintf(wf, sizeof(wf), "%.128s v%lld", cli_jstr(x, "workflow", "?"),
			 jint(x, "version"));
		cli_time_fmt_str(cli_jstr(x, "created", NULL), created, sizeof(created));
		cli_duration_between(x, "started", "finished", dur, sizeof(dur));
		if (cli_table_add(t, row) == -1)
			goto nomem;
	}
	cli_table_print(t, stdout, "");
	rc = CLI_OK;
	goto out;
nomem:
	cli_error("out of memory");
out:
	cli_table_free(t);
	cli_resp_free(&r);
	return rc;
}

static int run_watch(struct cli_env *env, int argc, char **argv)
{
	const char *id;
	int rc;

	if ((rc = one_id(env, "run watch", watch_help, argc, argv, &id)) != -1)
		return rc;
	return watch(env, id);
}

static int run_cancel(struct cli_env *env, int argc, char **argv)
{
	struct cli_resp r = {0};
	const char *id;
	char err[1024], shown[128], st[64], *path;
	int rc;

	if ((rc = one_id(env, "run cancel", cancel_help, argc, argv, &id)) != -1)
		return rc;
	if ((path = run_path(id, "/cancel")) == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	rc = cli_http_call(env, CLI_SCHEDULER, "POST", path, NULL, NULL, 0, env->token, &r, err,
			   sizeof(err));
	free(path);
	if (rc == -1) {
		cli_error("%s", err);
		cli_resp_free(&r);
		return CLI_FAIL;
	}
	if (env->json)
		cli_raw_print(&r, stdout);
	else
		printf("cancel requested for run %s (state %s)\n",
		       cli_oneline(id, 100, shown, sizeof(shown)),
		       cli_oneline(cli_jstr(r.json, "state", "?"), 40, st, sizeof(st)));
	cli_resp_free(&r);
	return CLI_OK;
}

int cli_run(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"submit", run_submit},
		{"show", run_show},
		{"list", run_list},
		{"watch", run_watch},
		{"cancel", run_cancel},
		{NULL, NULL},
	};

	return cli_group(env, "run", group_help, cmds, argc, argv);
}
