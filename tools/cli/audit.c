/*
 * sagewai audit run|verify|export|tail.
 *
 * run reads one run's events from the audit service
 * (GET /v1/audit/runs/{id}) and prints one line per event; verify checks
 * a log directory (chain, checkpoint signatures, published checkpoints)
 * or a bundle offline, export writes a run's bundle from a log directory:
 * both exactly as "sagewai-audit verify" and "export" do (sw_alog_pub.h).
 * The public keys come from --pubkeys or $SAGEWAI_AUDIT_PUBKEYS.
 * tail prints the newest events of the log and, with --follow, every new one
 * as it is logged: from the audit service's cursor (GET /v1/audit/events,
 * long polls), or from a log directory (--log DIR) read with sw_alog_cursor.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sw_alog.h"
#include "sw_alog_pub.h"
#include "sw_alog_cursor.h"
#include "sw_core.h"
#include "sw_events.h"

#define AUDIT_SUMMARY_MAX 160

static const char group_help[] =
	"usage: sagewai audit COMMAND\n"
	"\n"
	"  run ID           the events of run ID, from the audit service\n"
	"  verify [DIR]     check an audit log offline (default $SAGEWAI_DATA_DIR/audit),\n"
	"                   or a bundle (--bundle FILE)\n"
	"  export --run ID  write run ID's records with what proves them (a bundle)\n"
	"  tail             the newest events of the log; with --follow, then new ones\n";

static const char tail_help[] =
	"usage: sagewai audit tail [--follow] [--run ID] [--type T]... [--lines N]\n"
	"           [--log DIR] [--audit-url URL] [--json]\n"
	"\n"
	"Print the newest N events of the audit log (default 20), oldest first, one line\n"
	"each: time (UTC), sequence number, type, run, step and the event's key fields.\n"
	"\n"
	"  --follow, -f   then keep printing events as they are logged, until interrupted\n"
	"  --run ID       only the events of run ID\n"
	"  --type T       only events of type T (repeatable)\n"
	"  --lines N, -n N  how many of the newest to print first (0: none)\n"
	"  --log DIR      read the log directory DIR instead of the audit service\n"
	"                 (its hash chain checked on the way; a broken log is an error)\n"
	"  --json         each event as one JSON line: {\"seq\", \"topic\", \"partition\",\n"
	"                 \"offset\", \"time_us\", \"event\"} with the event decoded\n"
	"\n"
	"The audit service is at --audit-url or $SAGEWAI_AUDIT_URL (default "
	CLI_DEFAULT_AUDIT_URL ");\n"
	"in multi_tenant mode it needs a key (--token or $SAGEWAI_TOKEN): a tenant's key\n"
	"sees its own events, an auditor key all of them.\n";

static const char run_help[] =
	"usage: sagewai audit run ID [--audit-url URL] [--json]\n"
	"\n"
	"Print the events the audit log holds for run ID, in log order, one line each:\n"
	"sequence number, time (UTC), event type, step, and a short summary.\n"
	"The audit service is at --audit-url or $SAGEWAI_AUDIT_URL (default "
	CLI_DEFAULT_AUDIT_URL ").\n"
	"In multi_tenant mode it needs a key (--token or $SAGEWAI_TOKEN): a tenant's key\n"
	"reads its own runs, an auditor key (sagewai key create --role auditor) any run.\n";

static const char verify_help[] =
	"usage: sagewai audit verify [DIR] [--pubkeys FILE] [--checkpoints FILE |\n"
	"                            --checkpoints-from-kafka BOOTSTRAP] [--log-id ID] [--json]\n"
	"       sagewai audit verify --bundle FILE [--pubkeys FILE] [--json]\n"
	"\n"
	"Check the audit log in DIR offline (default $SAGEWAI_DATA_DIR/audit): every\n"
	"record's length, sequence number and hash, the hash chain, and every signed\n"
	"checkpoint's signature with the public keys of --pubkeys (default\n"
	"$SAGEWAI_AUDIT_PUBKEYS; lines \"KEYID HEX\"). Given the checkpoints the service\n"
	"published (read back from Kafka, or a file of them: JSON lines or raw messages\n"
	"in hex), it also finds a log shorter than its last published checkpoint and a\n"
	"chain rewritten after a record was changed, moved or deleted. With --bundle,\n"
	"check an exported bundle instead, without the log (its own keys unless\n"
	"--pubkeys pins them). Prints \"ok: ...\" (exit 0) or \"BAD: ...\" naming the\n"
	"first bad record (exit 1).\n";

static const char export_help[] =
	"usage: sagewai audit export --run ID [--dir DIR] [--pubkeys FILE] [--output FILE]\n"
	"                            [--wait-ms N]\n"
	"\n"
	"Write the bundle of run ID: its records in the audit log DIR (default\n"
	"$SAGEWAI_DATA_DIR/audit), the signed checkpoints covering them, each record's\n"
	"Merkle proof and the public keys (--pubkeys, default $SAGEWAI_AUDIT_PUBKEYS),\n"
	"to FILE (default: standard output). Records the next checkpoint will cover, and\n"
	"a run the service has not written yet, are waited for (default 5000 ms).\n"
	"\"sagewai audit verify --bundle FILE\" checks it anywhere; it shows each record\n"
	"is in the signed log, not that none was left out.\n";

/* $SAGEWAI_AUDIT_PUBKEYS, the public keys of the stack (NULL when unset) */
static const char *env_pubkeys(void)
{
	const char *v = getenv("SAGEWAI_AUDIT_PUBKEYS");

	return v != NULL && *v != '\0' ? v : NULL;
}

static long long jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* The step name of an event: its "step" field, else the middle part of
 * header.step_id ("<run>/<step>/<attempt>"), else "-". */
static void step_of(json_t *ev, json_t *hdr, char *out, size_t outlen)
{
	const char *s = cli_jstr(ev, "step", NULL), *id, *a, *b;

	if (s != NULL) {
		snprintf(out, outlen, "%s", s);
		return;
	}
	id = cli_jstr(hdr, "step_id", NULL);
	if (id != NULL && (a = strchr(id, '/')) != NULL && (b = strrchr(id, '/')) > a) {
		snprintf(out, outlen, "%.*s", (int)(b - a - 1), a + 1);
		return;
	}
	snprintf(out, outlen, "-");
}

/* "ENV level/secret vN, ..." of the keys an identity event names (never a
 * value: these events hold none). */
static void identity_keys(json_t *keys, char *out, size_t n)
{
	size_t i, len;
	json_t *k;

	json_array_foreach(keys, i, k)
	{
		const char *sec = cli_jstr(k, "secret", ""), *lvl = cli_jstr(k, "level", NULL);

		len = strlen(out);
		if (len + 1 >= n)
			return;
		snprintf(out + len, n - len, "%s%s", i ? ", " : "", cli_jstr(k, "env", "?"));
		len = strlen(out);
		if (*sec != '\0')
			snprintf(out + len, n - len, " = %s%s%s v%lld", lvl ? lvl : "", lvl ? "/" : "",
				 sec, jint(k, "version"));
		else if (lvl != NULL)
			snprintf(out + len, n - len, " = %s/plain", lvl);
	}
}

static void identity_summary(const char *type, json_t *ev, char *out, size_t n)
{
	json_t *steps = json_object_get(ev, "steps"), *st;
	size_t i, len;

	out[0] = '\0';
	if (strcmp(type, "identity.resolved") == 0) {
		if (!json_is_true(json_object_get(ev, "ok"))) {
			snprintf(out, n, "refused: %s", cli_jstr(ev, "error", "?"));
			return;
		}
		json_array_foreach(steps, i, st)
		{
			len = strlen(out);
			snprintf(out + len, n - len, "%s%s: ", i ? "; " : "",
				 cli_jstr(st, "step", "?"));
			identity_keys(json_object_get(st, "keys"), out, n);
		}
		if (json_array_size(steps) == 0)
			snprintf(out, n, "ok, no identity-bearing step");
		return;
	}
	snprintf(out, n, "%s ", strcmp(type, "identity.injected") == 0 ? "injected" : "asked for");
	identity_keys(json_object_get(ev, "keys"), out, n);
}

/* The sandbox's first 8 characters: enough to follow one through a trail. */
static const char *sbx(json_t *ev)
{
	static char id[9];

	snprintf(id, sizeof(id), "%s", cli_jstr(ev, "sandbox_id", "?"));
	return id;
}

static void sandbox_summary(const char *type, json_t *ev, char *out, size_t n)
{
	char dur[32];

	if (strcmp(type, "sandbox.acquired") == 0) {
		cli_duration_fmt(jint(ev, "acquire_us"), dur, sizeof(dur));
		snprintf(out, n, "sandbox %s: %s, network %s, %s in %s", sbx(ev),
			 cli_jstr(ev, "variant", "?"), cli_jstr(ev, "network", "?"),
			 json_is_true(json_object_get(ev, "warm")) ? "warm" : "cold", dur);
	} else if (strcmp(type, "sandbox.egress") == 0) {
		snprintf(out, n, "sandbox %s: %s %s:%lld %s%s%s", sbx(ev),
			 cli_jstr(ev, "method", "?"), cli_jstr(ev, "target_host", "?"),
			 jint(ev, "target_port"),
			 json_is_true(json_object_get(ev, "allowed")) ? "allowed" : "refused",
			 *cli_jstr(ev, "reason", "") ? ": " : "", cli_jstr(ev, "reason", ""));
	} else if (strcmp(type, "sandbox.exited") == 0) {
		const char *err = cli_jstr(ev, "error", "");

		cli_duration_fmt(jint(ev, "duration_us"), dur, sizeof(dur));
		snprintf(out, n, "sandbox %s: exit %lld%s%s after %s, %lld+%lld bytes out%s%s%s",
			 sbx(ev), jint(ev, "exit_code"),
			 json_is_true(json_object_get(ev, "timed_out")) ? ", timed out" : "",
			 json_is_true(json_object_get(ev, "killed")) ? ", killed" : "", dur,
			 jint(ev, "stdout_bytes"), jint(ev, "stderr_bytes"),
			 json_is_true(json_object_get(ev, "output_truncated")) ? " (truncated)" : "",
			 *err ? ": " : "", err);
	} else if (strcmp(type, "sandbox.released") == 0) {
		snprintf(out, n, "sandbox %s: %s%s", sbx(ev), cli_jstr(ev, "reason", "?"),
			 json_is_true(json_object_get(ev, "oom_killed")) ? ", out of memory" : "");
	} else if (strcmp(type, "sandbox.output") == 0) {
		snprintf(out, n, "sandbox %s: %s", sbx(ev), cli_jstr(ev, "stream", "output"));
	} else if (strcmp(type, "artifact.pushed") == 0) {
		snprintf(out, n, "%s: %lld files, %lld bytes to %s", cli_jstr(ev, "destination", "?"),
			 jint(ev, "files"), jint(ev, "bytes"), cli_jstr(ev, "location", "?"));
	} else if (strcmp(type, "artifact.scan_refused") == 0) {
		snprintf(out, n, "%s refused: %s at %s:%lld", cli_jstr(ev, "destination", "?"),
			 cli_jstr(ev, "what", "?"), cli_jstr(ev, "file", "?"), jint(ev, "line"));
	} else {
		snprintf(out, n, "sandbox %s", sbx(ev));
	}
}

static void credential_summary(const char *type, json_t *ev, char *out, size_t n)
{
	const char *name = cli_jstr(ev, "name", "?");

	if (strcmp(type, "credential.requested") == 0)
		snprintf(out, n, "%s for %s: %s", name, cli_jstr(ev, "scope", "?"),
			 cli_jstr(ev, "reason", ""));
	else if (strcmp(type, "credential.pending") == 0)
		snprintf(out, n, "waits for a person (rule %s)", cli_jstr(ev, "rule", "?"));
	else if (strcmp(type, "credential.decided") == 0)
		snprintf(out, n, "%s %s by %s%s%s%s%s", name, cli_jstr(ev, "decision", "?"),
			 cli_jstr(ev, "by", "?"), *cli_jstr(ev, "rule", "") ? " " : "",
			 cli_jstr(ev, "rule", ""), *cli_jstr(ev, "approver", "") ? " " : "",
			 cli_jstr(ev, "approver", ""));
	else if (strcmp(type, "credential.delivered") == 0)
		snprintf(out, n, "%s = %s v%lld into sandbox %s", name, cli_jstr(ev, "secret", "?"),
			 jint(ev, "version"), sbx(ev));
	else if (strcmp(type, "credential.refused") == 0)
		snprintf(out, n, "%s refused (%s): %s", name, cli_jstr(ev, "code", "?"),
			 cli_jstr(ev, "error", ""));
	else
		snprintf(out, n, "withdrawn: %s", cli_jstr(ev, "reason", "?"));
}

static void summary(const char *type, json_t *ev, json_t *hdr, char *out, size_t n)
{
	const char *err = cli_jstr(ev, "error", NULL), *x;
	char dur[32];

	if (strcmp(type, "run.submitted") == 0) {
		snprintf(out, n, "workflow %s v%lld, input %s", cli_jstr(ev, "workflow", "?"),
			 jint(ev, "workflow_version"), cli_jstr(ev, "input", "?"));
	} else if (strcmp(type, "run.started") == 0) {
		snprintf(out, n, "workflow %s v%lld", cli_jstr(ev, "workflow", "?"),
			 jint(ev, "workflow_version"));
	} else if (strcmp(type, "run.cancel_requested") == 0) {
		x = cli_jstr(ev, "requested_by", "");
		snprintf(out, n, "requested%s%s%s%s", *x ? " by " : "", x,
			 *cli_jstr(ev, "reason", "") ? ": " : "", cli_jstr(ev, "reason", ""));
	} else if (strcmp(type, "run.finished") == 0) {
		snprintf(out, n, "%s%s%s", cli_jstr(ev, "status", "?"), err ? ": " : "",
			 err ? err : "");
	} else if (strcmp(type, "step.dispatched") == 0) {
		long long t = jint(ev, "timeout_ms");

		snprintf(out, n, "attempt %lld, %s, ", jint(ev, "attempt"),
			 cli_jstr(ev, "mode", "?"));
		if (t > 0)
			snprintf(out + strlen(out), n - strlen(out), "timeout %lld ms", t);
		else
			snprintf(out + strlen(out), n - strlen(out), "no timeout");
	} else if (strcmp(type, "step.started") == 0) {
		x = cli_jstr(ev, "executor", "");
		snprintf(out, n, "attempt %lld%s%s", jint(ev, "attempt"), *x ? " on " : "", x);
	} else if (strcmp(type, "step.finished") == 0) {
		cli_duration_fmt(jint(ev, "duration_us"), dur, sizeof(dur));
		x = cli_jstr(ev, "output", NULL);
		snprintf(out, n, "attempt %lld %s in %s%s%s%s%s", jint(ev, "attempt"),
			 cli_jstr(ev, "status", "?"), dur, err ? ": " : "", err ? err : "",
			 x ? ", output " : "", x ? x : "");
	} else if (strcmp(type, "identity.resolved") == 0 ||
		   strcmp(type, "identity.injected") == 0 ||
		   strcmp(type, "identity.seal_requested") == 0) {
		identity_summary(type, ev, out, n);
	} else if (strcmp(type, "identity.revoke_killed") == 0) {
		snprintf(out, n, "secret %s revoked: sandbox killed in %lld ms",
			 cli_jstr(ev, "secret", "?"), jint(ev, "elapsed_ms"));
	} else if (strncmp(type, "sandbox.", 8) == 0 || strncmp(type, "artifact.", 9) == 0) {
		sandbox_summary(type, ev, out, n);
	} else if (strncmp(type, "credential.", 11) == 0) {
		credential_summary(type, ev, out, n);
	} else {
		snprintf(out, n, "from %s", cli_jstr(hdr, "producer", "?"));
	}
}

static int audit_run(struct cli_env *env, int argc, char **argv)
{
	static const char *const head[] = {"SEQ", "TIME", "TYPE", "STEP", "SUMMARY"};
	struct cli_resp r = {0};
	struct cli_table *t = NULL;
	const char *pos[1];
	json_t *events, *item;
	size_t i;
	char *esc = NULL, *path = NULL, shown[128];
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "audit run", argc, argv, NULL, pos, 1)) == -2) {
		fputs(run_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (n == 0)
		return cli_usage("audit run", "missing ID");
	if ((esc = cli_http_escape(pos[0])) == NULL ||
	    asprintf(&path, "/v1/audit/runs/%s", esc) == -1) {
		path = NULL;
		goto nomem;
	}
	if (cli_call_json(env, CLI_AUDIT_SVC, "GET", path, NULL, env->token, &r) < 0)
		goto out;
	if (env->json) {
		cli_raw_print(&r, stdout);
		rc = CLI_OK;
		goto out;
	}
	if (!json_is_array(events = json_object_get(r.json, "events"))) {
		cli_error("the audit service's answer has no \"events\" list");
		goto out;
	}
	if (json_array_size(events) == 0) {
		printf("no audit events for run %s\n",
		       cli_oneline(pos[0], 100, shown, sizeof(shown)));
		rc = CLI_OK;
		goto out;
	}
	if ((t = cli_table_new(5, head)) == NULL)
		goto nomem;
	json_array_foreach(events, i, item) {
		json_t *ev = json_object_get(item, "event"), *hdr = json_object_get(ev, "header");
		char seq[32], tm[64], type[64], step[80], sum[1024], cut[AUDIT_SUMMARY_MAX + 8];
		const char *row[5] = {seq, tm, type, step, cut};
		json_t *time = json_object_get(hdr, "time");

		snprintf(seq, sizeof(seq), "%lld", jint(item, "seq"));
		cli_time_fmt(json_is_integer(time) ? json_integer_value(time)
						   : jint(item, "time_us"),
			     tm, sizeof(tm));
		if (json_is_object(ev)) {
			snprintf(type, sizeof(type), "%s", cli_jstr(hdr, "type", "?"));
			step_of(ev, hdr, step, sizeof(step));
			summary(type, ev, hdr, sum, sizeof(sum));
		} else {
			snprintf(type, sizeof(type), "(undecodable)");
			snprintf(step, sizeof(step), "-");
			snprintf(sum, sizeof(sum), "%s: %s", cli_jstr(item, "topic", "?"),
				 cli_jstr(item, "decode_error", "no event"));
		}
		cli_oneline(sum, AUDIT_SUMMARY_MAX, cut, sizeof(cut));
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
	free(path);
	free(esc);
	return rc;
}

static int audit_verify(struct cli_env *env, int argc, char **argv)
{
	struct sw_alog_verify_cmd c = {0};
	const char *pos[1], *timeout = NULL;
	const struct cli_opt opts[] = {
		{"--pubkeys", &c.pubkeys, NULL},
		{"--checkpoints", &c.checkpoints, NULL},
		{"--checkpoints-from-kafka", &c.kafka, NULL},
		{"--log-id", &c.log_id, NULL},
		{"--bundle", &c.bundle, NULL},
		{"--timeout-ms", &timeout, NULL},
		{NULL, NULL, NULL},
	};
	char err[600], *dir = NULL, *report = NULL;
	int n, rc;

	c.pubkeys = env_pubkeys();
	if ((n = cli_parse(env, "audit verify", argc, argv, opts, pos, 1)) == -2) {
		fputs(verify_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (c.bundle != NULL && n == 1)
		return cli_usage("audit verify", "a DIR or --bundle FILE, not both");
	if (c.bundle == NULL) {
		if (n == 1)
			dir = strdup(pos[0]);
		else if (env->data_dir == NULL)
			return cli_usage("audit verify",
					 "no DIR given and SAGEWAI_DATA_DIR is not set");
		else if (asprintf(&dir, "%s/audit", env->data_dir) == -1)
			dir = NULL;
		if (dir == NULL) {
			cli_error("out of memory");
			return CLI_FAIL;
		}
	}
	c.dir = dir;
	c.json = env->json;
	c.timeout_ms = timeout ? atoi(timeout) : 0;
	rc = sw_alog_verify_run(&c, &report, err, sizeof(err));
	free(dir);
	if (rc == 2) {
		cli_error("audit verify: %s", err);
		return CLI_FAIL;
	}
	printf("%s\n", report);
	free(report);
	return rc == 0 ? CLI_OK : CLI_FAIL;
}

static int audit_export(struct cli_env *env, int argc, char **argv)
{
	const char *run = NULL, *dir_opt = NULL, *out = "-", *wait = NULL;
	const char *pubkeys = env_pubkeys();
	const struct cli_opt opts[] = {
		{"--run", &run, NULL},
		{"--dir", &dir_opt, NULL},
		{"--pubkeys", &pubkeys, NULL},
		{"--output", &out, NULL},
		{"--wait-ms", &wait, NULL},
		{NULL, NULL, NULL},
	};
	char err[600], *dir = NULL, *text = NULL;
	size_t records;
	int n, rc = CLI_FAIL;

	if ((n = cli_parse(env, "audit export", argc, argv, opts, NULL, 0)) == -2) {
		fputs(export_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (run == NULL)
		return cli_usage("audit export", "missing --run ID");
	if (dir_opt != NULL)
		dir = strdup(dir_opt);
	else if (env->data_dir == NULL)
		return cli_usage("audit export", "no --dir given and SAGEWAI_DATA_DIR is not set");
	else if (asprintf(&dir, "%s/audit", env->data_dir) == -1)
		dir = NULL;
	if (dir == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if (sw_alog_export_run(dir, run, pubkeys, out, wait ? atoi(wait) : 5000, &records, &text,
			       err, sizeof(err)) != 0) {
		cli_error("audit export: %s", err);
		goto out;
	}
	if (text != NULL)
		printf("%s\n", text);
	else
		fprintf(stderr, "%zu records of run %s into %s\n", records, run, out);
	rc = CLI_OK;
out:
	free(text);
	free(dir);
	return rc;
}


/* ---- tail ------------------------------------------------------------------ */

#define TAIL_MAX_TYPES 32
#define TAIL_MAX_LINES 5000
#define TAIL_WAIT_S 25	     /* one long poll of the audit service */
#define TAIL_POLL_MS 200     /* a log directory is looked at this often */

struct tail {
	struct cli_env *env;
	const char *run;	    /* NULL: any */
	const char *types[TAIL_MAX_TYPES + 1];
	size_t ntypes;
	long lines;
	int follow;
};

/* One event (an item as the audit API answers it) as one line, or as
 * compact JSON with --json. */
static void tail_print(const struct tail *t, json_t *item)
{
	json_t *ev = json_object_get(item, "event"), *hdr = json_object_get(ev, "header");
	json_t *time = json_object_get(hdr, "time");
	char tm[64], type[64], step[80], sum[1024], cut[AUDIT_SUMMARY_MAX + 8], run[80];

	if (t->env->json) {
		json_dumpf(item, stdout, JSON_COMPACT);
		putchar('\n');
		fflush(stdout);
		return;
	}
	cli_time_fmt(json_is_integer(time) ? json_integer_value(time) : jint(item, "time_us"), tm,
		     sizeof(tm));
	if (json_is_object(ev)) {
		cli_oneline(cli_jstr(hdr, "type", "?"), 40, type, sizeof(type));
		cli_oneline(*cli_jstr(hdr, "run_id", "") ? cli_jstr(hdr, "run_id", "") : "-", 64,
			    run, sizeof(run));
		step_of(ev, hdr, step, sizeof(step));
		summary(type, ev, hdr, sum, sizeof(sum));
	} else {
		snprintf(type, sizeof(type), "(undecodable)");
		snprintf(run, sizeof(run), "-");
		snprintf(step, sizeof(step), "-");
		snprintf(sum, sizeof(sum), "%s: %s", cli_jstr(item, "topic", "?"),
			 cli_jstr(item, "decode_error", "no event"));
	}
	cli_oneline(sum, AUDIT_SUMMARY_MAX, cut, sizeof(cut));
	cli_oneline(step, 40, sum, sizeof(sum));
	printf("%s  %8lld  %-22s  %-36s  %-12s  %s\n", tm, jint(item, "seq"), type, run, sum, cut);
	fflush(stdout);
}

/* The query string of the filters: "&run=...&type=a,b" (caller frees). */
static char *tail_filters(const struct tail *t)
{
	struct sw_buf b = {0};
	char *esc;
	size_t i;

	sw_buf_add(&b, "", 0);
	if (t->run != NULL) {
		if ((esc = cli_http_escape(t->run)) == NULL)
			goto nomem;
		sw_buf_printf(&b, "&run=%s", esc);
		free(esc);
	}
	for (i = 0; i < t->ntypes; i++) {
		if ((esc = cli_http_escape(t->types[i])) == NULL)
			goto nomem;
		sw_buf_printf(&b, "%s%s", i == 0 ? "&type=" : ",", esc);
		free(esc);
	}
	if (b.oom)
		goto nomem;
	return sw_buf_steal(&b, NULL);
nomem:
	sw_buf_free(&b);
	return NULL;
}

/* One GET of the cursor: print its events (unless quiet), *next from the
 * answer. 0, or -1 with err (worth retrying when *transient). */
static int tail_get(const struct tail *t, const char *path, int quiet, long long *next,
		    int *transient, char *err, size_t errlen)
{
	struct cli_resp r = {0};
	json_t *events, *item;
	size_t i;
	int rc = -1;

	*transient = 0;
	if (cli_http_call(t->env, CLI_AUDIT_SVC, "GET", path, NULL, NULL, 0, t->env->token, &r,
			  err, errlen) == -1) {
		*transient = r.status == 0 || r.status >= 500;
		goto out;
	}
	if (!json_is_array(events = json_object_get(r.json, "events")) ||
	    !json_is_integer(json_object_get(r.json, "next"))) {
		snprintf(err, errlen, "the audit service's answer has no \"events\" and \"next\"");
		goto out;
	}
	if (!quiet)
		json_array_foreach(events, i, item)
			tail_print(t, item);
	*next = json_integer_value(json_object_get(r.json, "next"));
	rc = 0;
out:
	cli_resp_free(&r);
	return rc;
}

static int tail_api(const struct tail *t)
{
	char *filters = tail_filters(t), *path = NULL, err[1024];
	long long next = 0;
	int transient, down = 0, rc = CLI_FAIL;

	if (filters == NULL)
		goto nomem;
	/* the newest lines; with none wanted, only where the log ends now */
	if (asprintf(&path, "/v1/audit/events?last=%ld%s", t->lines > 0 ? t->lines : 1,
		     filters) == -1) {
		path = NULL;
		goto nomem;
	}
	if (tail_get(t, path, t->lines == 0, &next, &transient, err, sizeof(err)) == -1)
		goto fail;
	while (t->follow) {
		free(path);
		if (asprintf(&path, "/v1/audit/events?after=%lld&wait=%d&limit=500%s", next,
			     TAIL_WAIT_S, filters) == -1) {
			path = NULL;
			goto nomem;
		}
		if (tail_get(t, path, 0, &next, &transient, err, sizeof(err)) == 0) {
			down = 0;
			continue;
		}
		if (!transient)
			goto fail;
		if (!down)
			cli_error("%s; retrying every second", err);
		down = 1;
		sleep(1);
	}
	rc = CLI_OK;
	goto out;
fail:
	cli_error("%s", err);
	goto out;
nomem:
	cli_error("out of memory");
out:
	free(path);
	free(filters);
	return rc;
}

/* ---- tail of a log directory ------------------------------------------------ */

struct tail_log {
	const struct tail *t;
	struct sw_event_registry *reg;
	json_t **ring; /* the newest lines matching items, oldest at head */
	size_t head, n;
};

/* The record as an item of the audit API when it matches, else NULL
 * (*oom set when memory ran out). */
static json_t *tail_item(struct tail_log *tl, const struct sw_alog_rec *rec, int *oom)
{
	const struct tail *t = tl->t;
	struct sw_event_header h;
	char err[256];
	json_t *item, *ev = NULL;
	size_t i;

	*oom = 0;
	if (rec->kind == SW_ALOG_CHECKPOINT)
		return NULL;
	if (rec->kind == SW_ALOG_EVENT &&
	    sw_event_decode_header(tl->reg, rec->payload, rec->payload_len, &h, err,
				   sizeof(err)) == 0) {
		if (t->run != NULL && strcmp(h.run_id, t->run) != 0)
			return NULL;
		for (i = 0; i < t->ntypes && strcmp(h.type, t->types[i]) != 0; i++)
			;
		if (t->ntypes > 0 && i == t->ntypes)
			return NULL;
	} else if (t->run != NULL || t->ntypes > 0) {
		return NULL; /* no header: matches no filter */
	}
	item = json_pack("{s:I, s:s%, s:i, s:I, s:I}", "seq", (json_int_t)rec->seq, "topic",
			 rec->topic, rec->topic_len, "partition", (int)rec->partition, "offset",
			 (json_int_t)rec->offset, "time_us", (json_int_t)rec->time_us);
	if (item == NULL) {
		*oom = 1;
		return NULL;
	}
	if (rec->kind == SW_ALOG_EVENT)
		ev = sw_event_decode(tl->reg, rec->payload, rec->payload_len, err, sizeof(err));
	if (ev != NULL)
		json_object_set_new(item, "event", ev);
	else
		json_object_set_new(item, "decode_error",
				    json_string(rec->kind == SW_ALOG_EVENT ? err
									 : "not an event"));
	return item;
}

static int tail_dir(const struct tail *t, const char *dir)
{
	struct tail_log tl = {.t = t};
	struct sw_alog_cursor *c = NULL;
	struct sw_alog_rec rec;
	char err[1024];
	int r, oom, rc = CLI_FAIL;
	size_t i;

	if ((tl.reg = sw_events_registry_new(err, sizeof(err))) == NULL ||
	    (c = sw_alog_cursor_open(dir, err, sizeof(err))) == NULL)
		goto fail;
	if (t->lines > 0 && (tl.ring = calloc((size_t)t->lines, sizeof(*tl.ring))) == NULL)
		goto nomem;
	/* the log as it is: keep the newest lines matching */
	while ((r = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == 1) {
		json_t *item;

		if (t->lines == 0)
			continue;
		if ((item = tail_item(&tl, &rec, &oom)) == NULL) {
			if (oom)
				goto nomem;
			continue;
		}
		if (tl.n == (size_t)t->lines) {
			json_decref(tl.ring[tl.head]);
			tl.ring[tl.head] = item;
			tl.head = (tl.head + 1) % (size_t)t->lines;
		} else {
			tl.ring[(tl.head + tl.n++) % (size_t)t->lines] = item;
		}
	}
	if (r == -1)
		goto broken;
	for (i = 0; i < tl.n; i++)
		tail_print(t, tl.ring[(tl.head + i) % (size_t)t->lines]);
	/* then what is appended */
	while (t->follow) {
		json_t *item;

		if ((r = sw_alog_cursor_next(c, &rec, err, sizeof(err))) == -1)
			goto broken;
		if (r == 0) {
			usleep(TAIL_POLL_MS * 1000);
			continue;
		}
		if ((item = tail_item(&tl, &rec, &oom)) == NULL) {
			if (oom)
				goto nomem;
			continue;
		}
		tail_print(t, item);
		json_decref(item);
	}
	rc = CLI_OK;
	goto out;
broken:
	cli_error("audit tail: the audit log %s is broken: %s", dir, err);
	goto out;
fail:
	cli_error("audit tail: %s", err);
	goto out;
nomem:
	cli_error("out of memory");
out:
	for (i = 0; i < tl.n; i++)
		json_decref(tl.ring[(tl.head + i) % (size_t)t->lines]);
	free(tl.ring);
	sw_alog_cursor_close(c);
	sw_events_registry_destroy(tl.reg);
	return rc;
}

static int audit_tail(struct cli_env *env, int argc, char **argv)
{
	struct tail t = {.env = env, .lines = 20};
	const char *run = NULL, *lines = NULL, *nlines = NULL, *log = NULL, *pos[1];
	int follow = 0, f = 0, n;
	char *end;
	const struct cli_opt opts[] = {
		{"--follow", NULL, &follow}, {"-f", NULL, &f},
		{"--run", &run, NULL},	     {"--lines", &lines, NULL},
		{"-n", &nlines, NULL},	     {"--log", &log, NULL},
		{NULL, NULL, NULL},
	};

	if (cli_take_list(&argc, argv, "--type", t.types, TAIL_MAX_TYPES, &t.ntypes,
			  "audit tail") == -1)
		return CLI_USAGE;
	if ((n = cli_parse(env, "audit tail", argc, argv, opts, pos, 0)) == -2) {
		fputs(tail_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (cli_check_types(t.types, t.ntypes, "audit tail") == -1)
		return CLI_USAGE;
	t.follow = follow || f;
	if (lines == NULL)
		lines = nlines;
	if (lines != NULL) {
		t.lines = strtol(lines, &end, 10);
		if (end == lines || *end != '\0' || t.lines < 0 || t.lines > TAIL_MAX_LINES)
			return cli_usage("audit tail", "--lines: a number from 0 to %d",
					 TAIL_MAX_LINES);
	}
	if (run != NULL) {
		size_t i, len = strlen(run);

		for (i = 0; i < len; i++)
			if (!(run[i] == '-' || run[i] == '_' || run[i] == '.' ||
			      (run[i] >= '0' && run[i] <= '9') ||
			      (run[i] >= 'a' && run[i] <= 'z') ||
			      (run[i] >= 'A' && run[i] <= 'Z')))
				break;
		if (len == 0 || len >= 64 || i < len)
			return cli_usage("audit tail",
					 "--run: a run id is 1-63 characters of [A-Za-z0-9._-]");
		t.run = run;
	}
	if (log != NULL)
		return tail_dir(&t, log);
	return tail_api(&t);
}

int cli_audit(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"run", audit_run},
		{"verify", audit_verify},
		{"export", audit_export},
		{"tail", audit_tail},
		{NULL, NULL},
	};

	return cli_group(env, "audit", group_help, cmds, argc, argv);
}
