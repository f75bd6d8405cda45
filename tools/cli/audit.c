/*
 * sagewai audit run|verify|export.
 *
 * run reads one run's events from the audit service
 * (GET /v1/audit/runs/{id}) and prints one line per event; verify checks
 * a log directory (chain, checkpoint signatures, published checkpoints)
 * or a bundle offline, export writes a run's bundle from a log directory:
 * both exactly as "sagewai-audit verify" and "export" do (sw_alog_pub.h).
 * The public keys come from --pubkeys or $SAGEWAI_AUDIT_PUBKEYS.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sw_alog.h"
#include "sw_alog_pub.h"
#include "sw_core.h"

#define AUDIT_SUMMARY_MAX 120

static const char group_help[] =
	"usage: sagewai audit COMMAND\n"
	"\n"
	"  run ID           the events of run ID, from the audit service\n"
	"  verify [DIR]     check an audit log offline (default $SAGEWAI_DATA_DIR/audit),\n"
	"                   or a bundle (--bundle FILE)\n"
	"  export --run ID  write run ID's records with what proves them (a bundle)\n";

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
	"to FILE (default: standard output). Records the next checkpoint will cover are\n"
	"waited for (default 5000 ms). \"sagewai audit verify --bundle FILE\" checks it\n"
	"anywhere; it shows each record is in the signed log, not that none was left out.\n";

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
	char err[1024], *esc = NULL, *path = NULL, shown[128];
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
	if (cli_http_call(env, CLI_AUDIT_SVC, "GET", path, NULL, NULL, 0, env->token, &r, err,
			  sizeof(err)) == -1) {
		cli_error("%s", err);
		goto out;
	}
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

int cli_audit(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"run", audit_run},
		{"verify", audit_verify},
		{"export", audit_export},
		{NULL, NULL},
	};

	return cli_group(env, "audit", group_help, cmds, argc, argv);
}
