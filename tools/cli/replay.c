/*
 * sagewai replay publish: re-publish events of the audit log to a Kafka
 * topic with sw_replay (tools/replay/sw_replay.h), showing progress as a
 * bar on a terminal and as JSON lines otherwise.
 *
 * Also cli_take_list, the repeatable options (--type T --type U) that
 * cli_parse does not know, shared with audit tail.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sw_core.h"
#include "sw_events.h"
#include "sw_replay.h"

#define MAX_TYPES 64

static const char group_help[] =
	"usage: sagewai replay COMMAND\n"
	"\n"
	"  publish --to TOPIC   re-publish events of the audit log to a Kafka topic\n"
	"  run ID               re-run run ID from its audit trail and diff the outputs\n";

static const char publish_help[] =
	"usage: sagewai replay publish --to TOPIC [--log DIR] [--run ID] [--type T]...\n"
	"           [--since TIME] [--until TIME] [--rate N] [--memory MB] [--state FILE]\n"
	"           [--kafka SERVERS] [--into-live] [--mark] [--json]\n"
	"\n"
	"Read the events of the audit log in DIR (default $SAGEWAI_DATA_DIR/audit), checking\n"
	"its hash chain first (a broken log is refused, naming the record, before anything\n"
	"is sent), and produce the selected ones to TOPIC: the exact stored bytes, in log\n"
	"order, keyed by their run id as the original producers key them, with no header\n"
	"(see --mark). Event ids are kept: a consumer that deduplicates by id sees each\n"
	"event once; a resumed job finds what it delivered by their event ids.\n"
	"\n"
	"  --run ID        only the events of run ID\n"
	"  --type T        only events of type T (repeatable)\n"
	"  --since TIME    only events at or after TIME (RFC 3339, e.g. 2025-01-31T12:00:00Z)\n"
	"  --until TIME    only events before TIME\n"
	"  --rate N        at most N events per second\n"
	"  --memory MB     hold at most MB of events in memory while the log is checked\n"
	"                  (default 256); a larger selection is read from the log twice\n"
	"  --state FILE    make the job resumable: FILE records what Kafka acknowledged;\n"
	"                  rerunning the same command after an interruption (even kill -9)\n"
	"                  goes on from there without publishing any event twice\n"
	"  --kafka SERVERS Kafka bootstrap servers (default $SAGEWAI_KAFKA_BOOTSTRAP);\n"
	"                  $SAGEWAI_KAFKA_PRODUCER_CONFIG adds name=value,... settings\n"
	"  --into-live     allow a live sagewai.* topic as TOPIC: every service consuming\n"
	"                  it would receive the events again (refused without it)\n"
	"  --mark          add to each message the header\n"
	"                  sagewai.replay=\"ID/SEQ TOPIC/PARTITION/OFFSET\" (the job, the\n"
	"                  record's seq in the log; where the event came from); headers\n"
	"                  cost librdkafka an allocation per message: ~0.8 x the speed\n"
	"  --json          progress as JSON lines (the default when stdout is no terminal)\n"
	"\n"
	"Exit status: 0 done, 1 failure or interrupted (the state is saved), 2 usage.\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

int cli_take_list(int *argc, char **argv, const char *name, const char **vals, size_t max,
		  size_t *n, const char *cmd)
{
	size_t nl = strlen(name);
	int i, o = 1;

	*n = 0;
	for (i = 1; i < *argc; i++) {
		const char *a = argv[i], *v = NULL;

		if (strcmp(a, "--") == 0) {
			while (i < *argc)
				argv[o++] = argv[i++];
			break;
		}
		if (strncmp(a, name, nl) != 0 || (a[nl] != '\0' && a[nl] != '=')) {
			argv[o++] = argv[i];
			continue;
		}
		if (a[nl] == '=')
			v = a + nl + 1;
		else if (i + 1 < *argc)
			v = argv[++i];
		if (v == NULL || *v == '\0') {
			cli_usage(cmd, "%s needs a value", name);
			return -1;
		}
		if (*n >= max) {
			cli_usage(cmd, "at most %zu %s options", max, name);
			return -1;
		}
		vals[(*n)++] = v;
	}
	*argc = o;
	argv[o] = NULL;
	return 0;
}

int cli_check_types(const char *const *types, size_t n, const char *cmd)
{
	struct sw_event_registry *reg;
	char err[256], shown[80];
	size_t i, k, nt;

	if (n == 0)
		return 0;
	if ((reg = sw_events_registry_new(err, sizeof(err))) == NULL) {
		cli_error("%s", err);
		return -1;
	}
	nt = sw_events_type_count(reg);
	for (i = 0; i < n; i++) {
		for (k = 0; k < nt; k++)
			if (strcmp(types[i], sw_events_type_name(reg, k)) == 0)
				break;
		if (k == nt) {
			sw_events_registry_destroy(reg);
			cli_usage(cmd, "unknown event type '%s' (the types are the names of "
				       "schemas/*.avsc, e.g. run.finished)",
				  cli_oneline(types[i], 60, shown, sizeof(shown)));
			return -1;
		}
	}
	sw_events_registry_destroy(reg);
	return 0;
}

struct show {
	int bar;	  /* a terminal: redraw a bar */
	int64_t last_ms;  /* last bar drawn */
	const char *topic;
};

static void fmt_count(uint64_t v, char *out, size_t n)
{
	char tmp[32];
	size_t len, i, o = 0;

	snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	len = strlen(tmp);
	for (i = 0; i < len && o + 2 < n; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = tmp[i];
	}
	out[o] = '\0';
}

static void progress(const struct sw_replay_progress *p, void *opaque)
{
	struct show *s = opaque;
	char done[32], total[32], rate[32], eta[32];
	int64_t now = sw_mono_ms();
	double frac = p->total ? (double)p->done / (double)p->total : 1.0;
	int width = 30, filled = (int)(frac * width), i;

	if (!s->bar) {
		json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, "
				      "s:b}",
				      "replay_id", p->replay_id, "topic", s->topic, "total",
				      (json_int_t)p->total, "done", (json_int_t)p->done, "sent",
				      (json_int_t)p->sent, "resumed", (json_int_t)p->resumed,
				      "found", (json_int_t)p->found, "acked_seq",
				      (json_int_t)p->acked_seq, "end_seq", (json_int_t)p->end_seq,
				      "elapsed_s", p->elapsed_s, "rate", p->rate, "finished",
				      p->finished);

		if (o != NULL) {
			json_dumpf(o, stdout, JSON_COMPACT);
			putchar('\n');
			fflush(stdout);
			json_decref(o);
		}
		return;
	}
	if (!p->finished && now - s->last_ms < 100)
		return;
	s->last_ms = now;
	fmt_count(p->done, done, sizeof(done));
	fmt_count(p->total, total, sizeof(total));
	fmt_count((uint64_t)p->rate, rate, sizeof(rate));
	eta[0] = '\0';
	if (!p->finished && p->rate > 0 && p->total > p->done)
		cli_duration_fmt((int64_t)((double)(p->total - p->done) / p->rate * 1e6), eta,
				 sizeof(eta));
	printf("\r[");
	for (i = 0; i < width; i++)
		putchar(i < filled ? '#' : '-');
	printf("] %3d%%  %s/%s events  %s/s%s%s\033[K", (int)(frac * 100), done, total, rate,
	       eta[0] ? "  ETA " : "", eta);
	if (p->finished)
		putchar('\n');
	fflush(stdout);
}

static int replay_publish(struct cli_env *env, int argc, char **argv)
{
	const char *types[MAX_TYPES + 1], *to = NULL, *log = NULL, *run = NULL, *since = NULL,
		   *until = NULL, *rate = NULL, *state = NULL, *kafka = NULL, *memory = NULL;
	const char *extra[65], *pos[1];
	char err[1024], *dir = NULL, cfgbuf[2048], *end;
	struct sw_replay_opts o;
	struct sw_replay_progress pr;
	struct sigaction sa, old_int, old_term;
	struct show show = {0};
	int into_live = 0, mark = 0, n, rc = CLI_FAIL;
	size_t ntypes;
	enum sw_replay_rc r;
	const struct cli_opt opts[] = {
		{"--to", &to, NULL},	   {"--log", &log, NULL},
		{"--run", &run, NULL},	   {"--since", &since, NULL},
		{"--until", &until, NULL}, {"--rate", &rate, NULL},
		{"--state", &state, NULL}, {"--kafka", &kafka, NULL},
		{"--memory", &memory, NULL},
		{"--into-live", NULL, &into_live}, {"--mark", NULL, &mark},
		{NULL, NULL, NULL},
	};

	memset(&o, 0, sizeof(o));
	if (cli_take_list(&argc, argv, "--type", types, MAX_TYPES, &ntypes, "replay publish") ==
	    -1)
		return CLI_USAGE;
	types[ntypes] = NULL;
	if ((n = cli_parse(env, "replay publish", argc, argv, opts, pos, 0)) == -2) {
		fputs(publish_help, stdout);
		return CLI_OK;
	}
	if (n == -1)
		return CLI_USAGE;
	if (to == NULL)
		return cli_usage("replay publish", "--to TOPIC is required");
	if (cli_check_types(types, ntypes, "replay publish") == -1)
		return CLI_USAGE;
	o.sel.since_us = INT64_MIN;
	o.sel.until_us = INT64_MAX;
	if (since != NULL && cli_time_parse(since, &o.sel.since_us) == -1)
		return cli_usage("replay publish", "--since: not an RFC 3339 time");
	if (until != NULL && cli_time_parse(until, &o.sel.until_us) == -1)
		return cli_usage("replay publish", "--until: not an RFC 3339 time");
	if (rate != NULL) {
		o.rate = strtod(rate, &end);
		if (end == rate || *end != '\0' || !(o.rate > 0) || o.rate > 1e9)
			return cli_usage("replay publish",
					 "--rate: a number of events per second");
	}
	if (memory != NULL) {
		long mb = strtol(memory, &end, 10);

		if (end == memory || *end != '\0' || mb < 1 || mb > 1 << 20)
			return cli_usage("replay publish", "--memory: a number of MB, at least 1");
		o.hold_bytes = (size_t)mb << 20;
	}
	if (run != NULL && (strlen(run) == 0 || strlen(run) >= 64))
		return cli_usage("replay publish", "--run: a run id of 1-63 characters");
	if (kafka == NULL)
		kafka = getenv("SAGEWAI_KAFKA_BOOTSTRAP");
	if (kafka == NULL || *kafka == '\0')
		return cli_usage("replay publish",
				 "no Kafka: give --kafka SERVERS or set SAGEWAI_KAFKA_BOOTSTRAP");
	if (sw_config_list(environ, "SAGEWAI_KAFKA_PRODUCER_CONFIG", extra, 0, 65, cfgbuf,
			   sizeof(cfgbuf), err, sizeof(err)) == -1)
		return cli_usage("replay publish", "%s", err);
	if (log != NULL)
		dir = strdup(log);
	else if (env->data_dir == NULL)
		return cli_usage("replay publish", "no --log DIR given and SAGEWAI_DATA_DIR is "
						   "not set");
	else if (asprintf(&dir, "%s/audit", env->data_dir) == -1)
		dir = NULL;
	if (dir == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	o.log_dir = dir;
	o.bootstrap = kafka;
	o.topic = to;
	o.into_live = into_live;
	o.mark = mark;
	o.state = state;
	o.kafka_extra = extra;
	o.sel.run_id = run;
	o.sel.types = ntypes > 0 ? types : NULL;
	o.progress = progress;
	o.opaque = &show;
	o.progress_ms = 100;
	o.stop = &stop_flag;
	show.topic = to;
	show.bar = !env->json && isatty(STDOUT_FILENO);
	if (!show.bar)
		o.progress_ms = 1000;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: waits end early */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	r = sw_replay_publish(&o, &pr, err, sizeof(err));
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);

	switch (r) {
	case SW_REPLAY_OK:
		if (show.bar) {
			char d[32], t[32], sent[32];

			cli_duration_fmt((int64_t)(pr.elapsed_s * 1e6), t, sizeof(t));
			fmt_count(pr.done, d, sizeof(d));
			fmt_count(pr.sent, sent, sizeof(sent));
			printf("published %s events to %s in %s; all %s events of the job (log "
			       "up to seq %llu) are there; replay id %s\n",
			       sent, to, t, d, (unsigned long long)pr.end_seq, pr.replay_id);
			if (pr.resumed + pr.found > 0)
				printf("  %llu of them were acknowledged in an earlier run, %llu "
				       "found in the topic\n",
				       (unsigned long long)pr.resumed,
				       (unsigned long long)pr.found);
		}
		rc = CLI_OK;
		break;
	case SW_REPLAY_STOPPED:
		cli_error("interrupted after %llu of %llu events%s%s%s",
			  (unsigned long long)pr.done, (unsigned long long)pr.total,
			  state ? "; the state is saved in " : " (no --state: not resumable)",
			  state ? state : "", state ? ": rerun the same command to go on" : "");
		break;
	case SW_REPLAY_REFUSED:
		rc = cli_usage("replay publish", "%s", err);
		break;
	default:
		cli_error("replay publish: %s", err);
		break;
	}
	free(dir);
	return rc;
}

int cli_replay(struct cli_env *env, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{"publish", replay_publish},
		{"run", cli_replay_run},
		{NULL, NULL},
	};

	return cli_group(env, "replay", group_help, cmds, argc, argv);
}
