/*
 * Black-box tests of sagewai-sandboxd's cli_agent mode over the harness's
 * Kafka and PostgreSQL, with real bubblewrap sandboxes. The test program
 * plays the identity service (as identity_test.c does: it answers the seal
 * requests with boxes sealed to the host key it gave sandboxd) and, where a
 * destination needs one, runs the other end: git http-backend behind a
 * token check (git_server.py), sagewai-llm-mock with a script. Every
 * message read from any topic is checked to hold no injected value in any
 * spelling. One scenario per argument:
 *
 *   deliver   a custom "CLI" (a shell script) writes a site into
 *             /workspace, prints its injected key (redacted in
 *             sandbox.output and in the step's output), its HOME, its
 *             prompt -- shell syntax that stays data, $1 of the script --
 *             and its stderr: delivered to local (the files under
 *             TENANT/RUN/STEP/PATH on the host), to none (the files in the
 *             output), and with no artifact (listed only); files_changed
 *             gives each file's size and sha256; an argv "CLI" gets the
 *             prompt as its last argument; the CLI's HOME is not in the
 *             workspace
 *   github    the site pushed to the git server with GITHUB_TOKEN from the
 *             identity (the commit on the server holds it); a wrong token
 *             fails with the server's answer and without the token
 *   scan      a CLI that writes its injected value into a file: the
 *             delivery is refused naming FILE:LINE, nothing reaches the
 *             destination
 *   fail      a CLI exiting 3 with its key on stderr: FAILED with the
 *             stderr tail redacted, nothing delivered; a timeout
 *   cancel    run.cancel_requested mid-CLI, and during the push (a slow
 *             git server): CANCELLED, the sandbox gone (no process left),
 *             nothing delivered; the times are printed, not asserted
 *   timeout   the step's timeout mid-CLI: TIMED_OUT, the sandbox gone
 *   kill9     kill -9 of sandboxd mid-CLI: no process of the sandbox is
 *             left; a restarted sandboxd gets the step again and runs it
 *             to the end
 *   hostile   crafted cli_agent dispatches (unknown agent, run for
 *             claude-code, custom without run, a prompt with NUL or over
 *             100 KiB, a bad artifact, a quote in OPENAI_BASE_URL, no
 *             identity): each bad_input before anything starts
 *   claude    the real Claude Code (variant claude-code) against the
 *             scripted sagewai-llm-mock through the egress proxy writes
 *             index.html with its own tool; it is pushed to the git server
 *             (skipped, 77, when the variant is not built); the workspace
 *             holds nothing else (the CLI's state is in its HOME)
 *   codex, gemini  the same with the Codex CLI (its config.toml from the
 *             identity's OPENAI_BASE_URL and OPENAI_MODEL) and the Gemini
 *             CLI (GOOGLE_GEMINI_BASE_URL, GEMINI_MODEL)
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_events.h"
#include "sw_test_svc.h"

static struct sw_test_stack stk;
static char local_dir[600];
static char local_env[700]; /* SAGEWAI_ARTIFACT_LOCAL_DIR=local_dir */
static const char *src_dir;
static const char *sbd_extra[8]; /* more settings for sandboxd, NULL-terminated */

/* ---- the values that must never leave (sw_test_secret_*) ------------------ */

static char token[64];	  /* the agent's key (ANTHROPIC_API_KEY, ...) */
static char gh_token[64]; /* GITHUB_TOKEN, as the git server knows it */

/* ---- the identity service we play ------------------------------------------ */

struct idstep {
	char step_id[128];
	const struct sw_test_idkey *keys;
	size_t nkeys;
	int answered;
};

static struct idstep idsteps[64];
static size_t nidsteps;

/* Every message read: no value in any spelling; our seal requests answered
 * with the step's values, sealed to the host key. */
static void on_seen(const rd_kafka_message_t *m, json_t *e)
{
	json_t *h = json_object_get(e, "header");
	const char *type = json_string_value(json_object_get(h, "type"));
	const char *sid = json_string_value(json_object_get(h, "step_id"));

	sw_test_secret_msg_clean(m);
	if (type == NULL || sid == NULL || strcmp(type, "identity.seal_requested") != 0)
		return;
	for (size_t i = 0; i < nidsteps; i++)
		if (strcmp(idsteps[i].step_id, sid) == 0) {
			idsteps[i].answered = 1;
			sw_test_seal_answer(&stk, e, idsteps[i].keys, idsteps[i].nkeys, NULL);
		}
}

/* ---- set-up ------------------------------------------------------------------- */

static void setup(const char *name)
{
	sw_test_stack_init(&stk, "sbc", name, NULL, on_seen);
	snprintf(local_dir, sizeof(local_dir), "%s/artifacts", stk.dir);
	snprintf(local_env, sizeof(local_env), "SAGEWAI_ARTIFACT_LOCAL_DIR=%s", local_dir);
	/* written by sandboxd's service part (another uid when root) */
	sw_test_sh("mkdir -p %s && chmod 777 %s", local_dir, local_dir);
	sw_test_secret_new(token, sizeof(token), "swkey-", "-k9");
	sw_test_secret_new(gh_token, sizeof(gh_token), "swgit-", "-k9");
}

static void sbd_start(void)
{
	size_t n = 0;

	stk.sbd_env[n++] = local_env;
	for (size_t i = 0; sbd_extra[i] != NULL; i++)
		stk.sbd_env[n++] = sbd_extra[i];
	stk.sbd_env[n] = NULL;
	sw_test_stack_sbd_start(&stk);
}

static void sbd_stop(void)
{
	sw_test_stack_sbd_stop(&stk);
}

/* sandboxd's log holds none of the values */
static void log_clean(void)
{
	sw_test_secret_file_clean(stk.sbd_log, "sandboxd's log");
}

/* ---- steps ------------------------------------------------------------------- */

/* A cli_agent spec as the scheduler dispatches one: agent, prompt (NULL:
 * none), run (stolen, NULL: none), artifact (stolen, NULL: none). */
static json_t *agent_spec(const char *agent, const char *prompt, json_t *run, json_t *artifact)
{
	json_t *s = json_pack("{s:s, s:i, s:s, s:{}, s:[s], s:i, s:s}", "workflow", "site",
			      "workflow_version", 1, "uses", "", "with", "run_modes", "cli_agent",
			      "output_max", 1048576, "cli_agent", agent);

	SW_CHECK(s != NULL);
	if (prompt != NULL)
		json_object_set_new(s, "prompt", json_string(prompt));
	if (run != NULL)
		json_object_set_new(s, "run", run);
	if (artifact != NULL)
		json_object_set_new(s, "artifact", artifact);
	return s;
}

/* Send a cli_agent step.dispatched with keys (identity text raw when
 * identity is not NULL). */
static void dispatch(struct sw_test_dispatch *d, const char *run, const char *step,
		     int64_t timeout_ms, json_t *sp, const struct sw_test_idkey *keys,
		     size_t nkeys, const char *identity)
{
	char *id = identity ? strdup(identity) : sw_test_identity_text(&stk, keys, nkeys, "site");

	SW_CHECK(id != NULL);
	if (identity == NULL) {
		struct idstep *st;

		SW_CHECK(nidsteps < sizeof(idsteps) / sizeof(idsteps[0]));
		st = &idsteps[nidsteps++];
		memset(st, 0, sizeof(*st));
		snprintf(st->step_id, sizeof(st->step_id), "%s-%s/%s/1", stk.prefix, run, step);
		st->keys = keys;
		st->nkeys = nkeys;
	}
	sw_test_stack_dispatch(&stk, d, "cliagent-test", run, step, "cli_agent", timeout_ms, sp,
			       id);
	free(id);
}

static void cancel_run(const char *run_id)
{
	sw_test_stack_emit(
	    &stk, "sagewai.runs", run_id, "run.cancel_requested", "cliagent-test", stk.tenant,
	    run_id, NULL,
	    json_pack("{s:s, s:s}", "requested_by", "cliagent-test", "reason", "test"));
	sw_test_kafka_flush(stk.producer, 30000);
}

/* All sandbox.output data of step_id's stream, in seq order (caller frees). */
static char *output_of(const char *step_id, const char *stream)
{
	return sw_test_evlog_output(&stk.evl, step_id, stream, NULL);
}

static const char *out_str(const struct sw_test_ev *f, const char *key)
{
	const char *s = json_string_value(json_object_get(f->output, key));

	SW_REQUIRE(s != NULL, "%s: no %s in the output", f->step_id, key);
	return s;
}

static void sha256_hex(const void *v, size_t n, char out[65])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, v, n);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* files_changed.list of the output holds path with size and sha256 of text */
static void changed_has(const struct sw_test_ev *f, const char *path, const char *text)
{
	json_t *list = json_object_get(json_object_get(f->output, "files_changed"), "list"), *e;
	char sha[65];
	size_t i;

	sha256_hex(text, strlen(text), sha);
	json_array_foreach(list, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "path")), path) != 0)
			continue;
		SW_REQUIRE(json_integer_value(json_object_get(e, "size")) ==
				   (json_int_t)strlen(text) &&
			       !strcmp(json_string_value(json_object_get(e, "sha256")), sha),
			   "%s: %s has size %lld sha256 %s, want %zu %s", f->step_id, path,
			   (long long)json_integer_value(json_object_get(e, "size")),
			   json_string_value(json_object_get(e, "sha256")), strlen(text), sha);
		return;
	}
	SW_REQUIRE(0, "%s: %s not in files_changed", f->step_id, path);
}

/* header.time of an event, µs */
static int64_t ev_time(const struct sw_test_ev *e)
{
	return (int64_t)json_integer_value(
	    json_object_get(json_object_get(e->body, "header"), "time"));
}

/* How long sandboxd took from ending the step (its step.finished) to the
 * sandbox being gone (its sandbox.released): printed. */
static void print_kill_time(const char *what, const char *step_id)
{
	struct sw_test_ev *f = sw_test_evlog_finished(&stk.evl, step_id);
	struct sw_test_ev *r = sw_test_evlog_wait(&stk.evl, "sandbox.released", step_id, 0, 30);

	printf("%s: sandboxd destroyed the sandbox %lld ms after it ended the step (%s)\n", what,
	       (long long)((ev_time(r) - ev_time(f)) / 1000),
	       json_string_value(json_object_get(r->body, "reason")));
}

static size_t changed_count(const struct sw_test_ev *f)
{
	return (size_t)json_integer_value(
	    json_object_get(json_object_get(f->output, "files_changed"), "files"));
}

/* Processes whose command line holds needle. */
static int procs_with(const char *needle)
{
	return sw_test_procs_holding("cmdline", needle);
}

/* ms until no process holds needle (at most limit_ms); -1 if one stays */
static int64_t gone_within(const char *needle, int64_t t0_ms, int limit_ms)
{
	while (procs_with(needle) > 0) {
		if (sw_mono_ms() - t0_ms > limit_ms)
			return -1;
		sw_test_msleep(5);
	}
	return sw_mono_ms() - t0_ms;
}

/* A git server for tokens; the bare repository ROOT/site.git. */
static pid_t git_server(char *root, size_t rootlen, char *url, size_t urllen)
{
	char script[700];

	snprintf(script, sizeof(script), "%s/git_server.py", src_dir);
	return sw_test_git_server(stk.dir, script, gh_token, root, rootlen, url, urllen);
}

/* ---- scenarios ----------------------------------------------------------------- */

/* The custom "CLI": a site, its key, HOME, its prompt ($1), a line on
 * stderr. */
static const char site_cli[] = "set -e\n"
			       "mkdir -p site/css\n"
			       "printf '<h1>portfolio</h1>\\n' > site/index.html\n"
			       "printf 'a{}\\n' > site/css/s.css\n"
			       /* what a hostile agent could leave for the host to follow */
			       "ln -s /etc/shadow site/shadow && mkfifo site/fifo\n"
			       "echo \"key=$ANTHROPIC_API_KEY\"\n"
			       "echo \"base=$ANTHROPIC_BASE_URL home=$HOME tmp=$TMPDIR\"\n"
			       "touch \"$HOME/.cli-state\" && echo home-writable\n"
			       "printf 'prompt=%s\\n' \"$1\"\n"
			       "echo \"ws=$(ls -A /workspace | tr '\\n' ' ')\"\n"
			       "echo 'to stderr' >&2\n";

#define PROMPT "build it $(touch /workspace/pwned) `id` \"q\" 'x'; rm -rf /workspace"

static struct sw_test_idkey k_agent[2];

static void keys_init(void)
{
	k_agent[0] =
	    (struct sw_test_idkey){"ANTHROPIC_API_KEY", "workflow", "anthropic", 2, token};
	k_agent[1] = (struct sw_test_idkey){"ANTHROPIC_BASE_URL", "workflow", NULL, 0,
					    "http://llm.internal:8080"};
}

static void scenario_deliver(void)
{
	struct sw_test_dispatch dl, dn, dx, da;
	struct sw_test_ev *f;
	char path[900], *page, *o, want[512];
	json_t *ws, *e;
	size_t i;
	int saw = 0;

	setup("deliver");
	keys_init();
	sbd_start();
	dispatch(&dl, "local", "build", 120000,
		 agent_spec("custom", PROMPT, json_string(site_cli),
			    json_pack("{s:s, s:s}", "destination", "local", "path", "out/site")),
		 k_agent, 2, NULL);
	dispatch(&dn, "none", "build", 120000,
		 agent_spec("custom", PROMPT, json_string(site_cli),
			    json_pack("{s:s}", "destination", "none")),
		 k_agent, 2, NULL);
	dispatch(&dx, "list", "build", 120000,
		 agent_spec("custom", PROMPT, json_string(site_cli), NULL), k_agent, 2, NULL);
	/* an argv CLI: the prompt is its last argument */
	dispatch(&da, "argv", "build", 120000,
		 agent_spec("custom", PROMPT,
			    json_pack("[s, s, s, s]", "/bin/sh", "-c",
				      "printf '%s' \"$1\" > p.txt; echo \"n=$#\"", "argv0"),
			    json_pack("{s:s}", "destination", "none")),
		 k_agent, 2, NULL);

	/* local */
	f = sw_test_evlog_finished(&stk.evl, dl.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	o = json_dumps(f->output, JSON_COMPACT);
	printf("local: %.600s\n", o);
	free(o);
	SW_REQUIRE(json_integer_value(json_object_get(f->output, "exit_code")) == 0 &&
		       !strcmp(out_str(f, "agent"), "custom"),
		   "exit_code/agent");
	snprintf(want, sizeof(want),
		 "key=[REDACTED:ANTHROPIC_API_KEY]\nbase=http://llm.internal:8080 "
		 "home=/tmp/sagewai-home tmp=/tmp\nhome-writable\nprompt=%s\nws=site \n",
		 PROMPT);
	SW_REQUIRE(strcmp(out_str(f, "stdout"), want) == 0, "stdout '%s', want '%s'",
		   out_str(f, "stdout"), want);
	SW_REQUIRE(strcmp(out_str(f, "stderr"), "to stderr\n") == 0, "stderr");
	changed_has(f, "site/index.html", "<h1>portfolio</h1>\n");
	changed_has(f, "site/css/s.css", "a{}\n");
	SW_REQUIRE(changed_count(f) == 2, "%zu files changed (the prompt ran as a command?)",
		   changed_count(f));
	/* the symlink and the fifo: skipped and named, never followed or read */
	o = json_dumps(json_object_get(json_object_get(f->output, "files_changed"), "skipped"),
		       JSON_COMPACT);
	SW_REQUIRE(o != NULL && strstr(o, "site/shadow") && strstr(o, "site/fifo"), "skipped: %s",
		   o ? o : "");
	free(o);
	snprintf(path, sizeof(path), "%s/%s/%s/%s/out/site/site/index.html", local_dir, stk.tenant,
		 dl.run_id, "build");
	page = sw_test_file_read(path, NULL); /* under TENANT/RUN/STEP (the step's name)/PATH */
	SW_REQUIRE(page != NULL && !strcmp(page, "<h1>portfolio</h1>\n"), "%s: %s", path,
		   page ? page : "(none)");
	free(page);
	SW_REQUIRE(strstr(json_string_value(
			      json_object_get(json_object_get(f->output, "artifact"), "location")),
			  "/out/site") != NULL,
		   "artifact location");
	/* the live output (before sandbox.released on the run's partition):
	 * redacted, in order */
	sw_test_evlog_wait(&stk.evl, "artifact.pushed", dl.step_id, 0, 30);
	sw_test_evlog_wait(&stk.evl, "sandbox.released", dl.step_id, 0, 30);
	o = output_of(dl.step_id, "stdout");
	SW_REQUIRE(strstr(o, "key=[REDACTED:ANTHROPIC_API_KEY]\n") != NULL, "sandbox.output: %s",
		   o);
	free(o);
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "identity.injected", dl.step_id) == 1,
		   "injected");

	/* none: the files in the output */
	f = sw_test_evlog_finished(&stk.evl, dn.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	ws = json_object_get(f->output, "workspace");
	json_array_foreach(ws, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "path")), "site/index.html"))
			saw = !strcmp(json_string_value(json_object_get(e, "text")),
				      "<h1>portfolio</h1>\n");
	SW_REQUIRE(saw, "none: index.html not in the workspace output");
	changed_has(f, "site/index.html", "<h1>portfolio</h1>\n");
	SW_REQUIRE(!strcmp(json_string_value(json_object_get(
			       json_object_get(f->output, "artifact"), "destination")),
			   "none"),
		   "none: destination");

	/* no artifact: listed, nothing delivered */
	f = sw_test_evlog_finished(&stk.evl, dx.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	SW_REQUIRE(json_is_null(json_object_get(f->output, "artifact")) &&
		       json_object_get(f->output, "workspace") == NULL,
		   "list only: an artifact");
	changed_has(f, "site/css/s.css", "a{}\n");
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "artifact.pushed", dx.step_id) == 0,
		   "list only: artifact.pushed");

	/* argv */
	f = sw_test_evlog_finished(&stk.evl, da.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	changed_has(f, "p.txt", PROMPT);
	SW_REQUIRE(!strcmp(out_str(f, "stdout"), "n=1\n"), "argv: %s", out_str(f, "stdout"));
	log_clean();
	sbd_stop();
}

static void scenario_github(void)
{
	struct sw_test_dispatch dg, dw;
	struct sw_test_ev *f;
	struct sw_test_idkey kg[2], kw[2];
	char root[700], url[256];
	pid_t git;

	setup("github");
	keys_init();
	git = git_server(root, sizeof(root), url, sizeof(url));
	sbd_extra[0] = "SAGEWAI_ARTIFACT_HTTP=allow";
	sbd_extra[1] = "SAGEWAI_ARTIFACT_PRIVATE=allow";
	sbd_extra[2] = NULL;
	sbd_start();
	kg[0] = k_agent[0];
	kg[1] = (struct sw_test_idkey){"GITHUB_TOKEN", "workflow", "github", 1, gh_token};
	kw[0] = k_agent[0];
	kw[1] = (struct sw_test_idkey){"GITHUB_TOKEN", "workflow", "github-old", 1,
				       "swgit-not-known-here-0000"};
	sw_test_secret_forbid_raw("swgit-not-known-here-0000");
	dispatch(&dg, "push", "build", 120000,
		 agent_spec("custom", "build a site", json_string(site_cli),
			    json_pack("{s:s, s:s, s:s}", "destination", "github", "repo", url,
				      "branch", "main")),
		 kg, 2, NULL);
	f = sw_test_evlog_finished(&stk.evl, dg.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	printf("pushed: %s\n", json_string_value(json_object_get(
				   json_object_get(f->output, "artifact"), "location")));
	{
		char cmd[1024];
		FILE *p;
		char buf[256] = "";

		snprintf(cmd, sizeof(cmd), "git --git-dir=%s/site.git show main:site/index.html",
			 root);
		SW_CHECK((p = popen(cmd, "r")) != NULL);
		if (fgets(buf, sizeof(buf), p) == NULL)
			buf[0] = '\0';
		pclose(p);
		SW_REQUIRE(!strcmp(buf, "<h1>portfolio</h1>\n"), "on the server: '%s'", buf);
	}
	dispatch(&dw, "wrong", "build", 120000,
		 agent_spec("custom", "build a site", json_string(site_cli),
			    json_pack("{s:s, s:s}", "destination", "github", "repo", url)),
		 kw, 2, NULL);
	f = sw_test_evlog_finished(&stk.evl, dw.step_id);
	sw_test_ev_require(f, "FAILED", "artifact_failed: ");
	printf("wrong token: %s\n", f->error);
	SW_REQUIRE(strstr(f->error, "bad credentials") != NULL, "not the server's answer: %s",
		   f->error);
	log_clean();
	sbd_stop();
	kill(git, SIGTERM);
	waitpid(git, NULL, 0);
}

static void scenario_scan(void)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f;
	char path[900];
	struct stat st;

	setup("scan");
	keys_init();
	sbd_start();
	dispatch(
	    &d, "leak", "build", 120000,
	    agent_spec("custom", "write the config",
		       json_string("mkdir -p site && printf 'a = 1\\nb = 2\\nkey = \"%s\"\\n' "
				   "\"$ANTHROPIC_API_KEY\" > site/config.js && echo ok"),
		       json_pack("{s:s, s:s}", "destination", "local", "path", "leak")),
	    k_agent, 2, NULL);
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	sw_test_ev_require(f, "FAILED",
			   "artifact_refused: site/config.js:3 holds the value of "
			   "ANTHROPIC_API_KEY; nothing was delivered to local");
	sw_test_evlog_wait(&stk.evl, "artifact.scan_refused", d.step_id, 0, 30);
	snprintf(path, sizeof(path), "%s/%s", local_dir, stk.tenant);
	SW_REQUIRE(stat(path, &st) != 0, "something was delivered under %s", path);
	log_clean();
	sbd_stop();
}

static void scenario_fail(void)
{
	struct sw_test_dispatch d, dt;
	struct sw_test_ev *f;
	char path[900];
	struct stat st;

	setup("fail");
	keys_init();
	sbd_start();
	dispatch(&d, "exit3", "build", 120000,
		 agent_spec("custom", "do it",
			    json_string("echo partial > index.html; echo \"no luck with "
					"$ANTHROPIC_API_KEY\" >&2; exit 3"),
			    json_pack("{s:s, s:s}", "destination", "local", "path", "x")),
		 k_agent, 2, NULL);
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	sw_test_ev_require(f, "FAILED",
			   "exit_status: the agent exited with status 3; stderr: no luck with "
			   "[REDACTED:ANTHROPIC_API_KEY]");
	snprintf(path, sizeof(path), "%s/%s", local_dir, stk.tenant);
	SW_REQUIRE(stat(path, &st) != 0, "a failed agent's workspace was delivered");
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "artifact.pushed", d.step_id) == 0, "pushed");
	/* the agent is killed at the step's timeout */
	dispatch(&dt, "slow", "build", 3000,
		 agent_spec("custom", "do it", json_string("echo started; sleep 60"), NULL),
		 k_agent, 2, NULL);
	f = sw_test_evlog_finished(&stk.evl, dt.step_id);
	sw_test_ev_require(f, "TIMED_OUT", "timeout: ");
	log_clean();
	sbd_stop();
}

static void scenario_cancel(void)
{
	struct sw_test_dispatch d, dp;
	struct sw_test_ev *f;
	char marker[64], prompt[128], root[700], url[256], path[900];
	struct sw_test_idkey kg[2];
	int64_t t0, ms;
	pid_t git;
	struct stat st;

	setup("cancel");
	keys_init();
	snprintf(marker, sizeof(marker), "mark-%s", stk.prefix);
	snprintf(prompt, sizeof(prompt), "%s-cli", marker);
	sbd_start();
	/* mid-CLI: the script waits for its sleep, its command line holds the
	 * prompt */
	dispatch(
	    &d, "mid", "build", 120000,
	    agent_spec("custom", prompt, json_string("echo started; sleep 300; echo done"), NULL),
	    k_agent, 2, NULL);
	sw_test_evlog_wait(&stk.evl, "sandbox.output", d.step_id, 0, 60);
	SW_REQUIRE(procs_with(prompt) > 0, "the CLI is not running");
	/* timed from the cancel's delivery to the broker (the test's producer
	 * may take a while for its first message to sagewai.runs) */
	t0 = sw_mono_ms();
	cancel_run(d.run_id);
	printf("cancel mid-CLI: run.cancel_requested delivered in %lld ms\n",
	       (long long)(sw_mono_ms() - t0));
	t0 = sw_mono_ms();
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	sw_test_ev_require(f, "CANCELLED", NULL);
	ms = sw_mono_ms() - t0;
	printf("cancel mid-CLI: step.finished CANCELLED read %lld ms after the delivery\n",
	       (long long)ms);
	ms = gone_within(prompt, t0, 30000);
	SW_REQUIRE(ms >= 0, "the CLI is still running after a cancel");
	printf("cancel mid-CLI: no process of the CLI left %lld ms after the delivery\n",
	       (long long)ms);
	sw_test_evlog_wait(&stk.evl, "sandbox.released", d.step_id, 0, 30);
	printf("cancel mid-CLI: sandbox.released read %lld ms after the delivery\n",
	       (long long)(sw_mono_ms() - t0));
	print_kill_time("cancel mid-CLI", d.step_id);

	/* during the push: a workspace of 300 MB to stage and scan */
	sbd_stop();
	git = git_server(root, sizeof(root), url, sizeof(url));
	sbd_extra[0] = "SAGEWAI_ARTIFACT_HTTP=allow";
	sbd_extra[1] = "SAGEWAI_ARTIFACT_PRIVATE=allow";
	sbd_extra[2] = NULL;
	sbd_start();
	kg[0] = k_agent[0];
	kg[1] = (struct sw_test_idkey){"GITHUB_TOKEN", "workflow", "github", 1, gh_token};
	dispatch(&dp, "push", "build", 300000,
		 agent_spec("custom", "make a big site",
			    json_string("for i in 1 2 3; do head -c 100000000 /dev/urandom > "
					"big$i.bin; done; echo written"),
			    json_pack("{s:s, s:s}", "destination", "github", "repo", url)),
		 kg, 2, NULL);
	/* the sandbox goes before the delivery starts */
	sw_test_evlog_wait(&stk.evl, "sandbox.released", dp.step_id, 0, 120);
	cancel_run(dp.run_id);
	t0 = sw_mono_ms();
	f = sw_test_evlog_finished(&stk.evl, dp.step_id);
	sw_test_ev_require(f, "CANCELLED", NULL);
	printf("cancel during the push: step.finished CANCELLED read %lld ms after the delivery\n",
	       (long long)(sw_mono_ms() - t0));
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "artifact.pushed", dp.step_id) == 0, "pushed");
	/* nothing reached the repository, and the staging copy is gone */
	snprintf(path, sizeof(path), "%s/site.git/refs/heads/main", root);
	SW_REQUIRE(stat(path, &st) != 0, "the push went through");
	for (int i = 0; i < 200; i++) {
		char cmd[900];

		snprintf(cmd, sizeof(cmd),
			 "test -z \"$(ls -A %s/stage/sagewai-artifact-*/ 2>/dev/null)\"", stk.dir);
		if (system(cmd) == 0)
			break;
		SW_REQUIRE(i < 199, "the abandoned delivery's staging copy stays");
		sw_test_msleep(100);
	}
	printf("cancel during the push: the staging copy gone %lld ms after the cancel\n",
	       (long long)(sw_mono_ms() - t0));
	log_clean();
	sbd_stop();
	kill(git, SIGTERM);
	waitpid(git, NULL, 0);
}

static void scenario_timeout(void)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f, *sd;
	char prompt[128];
	int64_t t0, ms;

	setup("timeout");
	keys_init();
	snprintf(prompt, sizeof(prompt), "mark-%s-cli", stk.prefix);
	sbd_start();
	dispatch(
	    &d, "slow", "build", 6000,
	    agent_spec("custom", prompt, json_string("echo started; sleep 300; echo done"), NULL),
	    k_agent, 2, NULL);
	sd = sw_test_evlog_wait(&stk.evl, "step.started", d.step_id, 0, 60);
	(void)sd;
	sw_test_evlog_wait(&stk.evl, "sandbox.output", d.step_id, 0, 60);
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	t0 = sw_mono_ms();
	sw_test_ev_require(f, "TIMED_OUT", "timeout: ");
	printf("timeout: %s\n", f->error);
	ms = gone_within(prompt, t0, 30000);
	SW_REQUIRE(ms >= 0, "the CLI is still running after its timeout");
	printf("timeout: no process of the CLI left %lld ms after step.finished was read\n",
	       (long long)ms);
	print_kill_time("timeout", d.step_id);
	sbd_stop();
}

static void scenario_kill9(void)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f;
	char prompt[128];
	int64_t t0, ms;

	setup("kill9");
	keys_init();
	snprintf(prompt, sizeof(prompt), "mark-%s-cli", stk.prefix);
	sbd_start();
	dispatch(&d, "k9", "build", 120000,
		 agent_spec("custom", prompt,
			    json_string("echo started; sleep 4; echo done > done.txt"),
			    json_pack("{s:s}", "destination", "none")),
		 k_agent, 2, NULL);
	sw_test_evlog_wait(&stk.evl, "sandbox.output", d.step_id, 0, 60);
	SW_REQUIRE(procs_with(prompt) > 0, "the CLI is not running");
	t0 = sw_mono_ms();
	SW_CHECK(kill(stk.sbd_pid, SIGKILL) == 0);
	SW_CHECK(waitpid(stk.sbd_pid, NULL, 0) == stk.sbd_pid);
	stk.sbd_pid = -1;
	ms = gone_within(prompt, t0, 10000);
	SW_REQUIRE(ms >= 0, "the CLI survived kill -9 of sandboxd");
	printf("kill -9: no process of the CLI left after %lld ms\n", (long long)ms);
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.finished", d.step_id) == 0,
		   "a step.finished from a killed sandboxd");
	/* the dispatch was never committed: a new sandboxd runs it again */
	sbd_start();
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	changed_has(f, "done.txt", "done\n");
	SW_REQUIRE(sw_test_evlog_count(&stk.evl, "sandbox.acquired", d.step_id) == 2,
		   "%zu sandboxes for the step",
		   sw_test_evlog_count(&stk.evl, "sandbox.acquired", d.step_id));
	printf("kill -9: the step ran again on the restarted sandboxd and succeeded\n");
	sbd_stop();
}

static void scenario_hostile(void)
{
	struct sw_test_dispatch d[16], dok;
	struct sw_test_idkey kurl[2];
	char *big;
	size_t n = 0;
	struct {
		const char *want;
	} want[16];

	setup("hostile");
	keys_init();
	sbd_start();
#define BAD(w, ...)                                                                               \
	do {                                                                                      \
		char run[16];                                                                     \
		snprintf(run, sizeof(run), "bad%zu", n);                                          \
		dispatch(&d[n], run, "build", 60000, __VA_ARGS__);                                \
		want[n++].want = w;                                                               \
	} while (0)
	BAD("bad_input: spec.cli_agent 'cursor' is not", agent_spec("cursor", "p", NULL, NULL),
	    k_agent, 2, NULL);
	BAD("bad_input: spec.run is only for cli_agent custom",
	    agent_spec("claude-code", "p", json_string("curl evil"), NULL), k_agent, 2, NULL);
	BAD("bad_input: cli_agent custom needs spec.run", agent_spec("custom", "p", NULL, NULL),
	    k_agent, 2, NULL);
	{
		json_t *s = agent_spec("codex", NULL, NULL, NULL);

		/* never parsed: a spec holding \u0000 is no JSON object to jansson */
		json_object_set_new(s, "prompt", json_stringn("a\0b", 3));
		BAD("bad_input: spec is not a JSON object", s, k_agent, 2, NULL);
	}
	big = malloc(200001);
	memset(big, 'x', 200000);
	big[200000] = '\0';
	BAD("bad_input: spec.prompt is 200000 bytes", agent_spec("gemini", big, NULL, NULL),
	    k_agent, 2, NULL);
	free(big);
	BAD("bad_input: artifact.path is refused",
	    agent_spec("claude-code", "p", NULL,
		       json_pack("{s:s, s:s}", "destination", "local", "path", "../../etc")),
	    k_agent, 2, NULL);
	kurl[0] = k_agent[0];
	kurl[1] = (struct sw_test_idkey){"OPENAI_BASE_URL", "workflow", NULL, 0,
					 "http://x\"\n[evil]\nk=\"v"};
	BAD("bad_input: the identity's OPENAI_BASE_URL is not",
	    agent_spec("codex", "p", NULL, NULL), kurl, 2, NULL);
	BAD("bad_input: cli_agent step without its identity",
	    agent_spec("custom", "p", json_string("true"), NULL), NULL, 0, "");
	BAD("bad_input: spec.cli_agent is missing",
	    json_pack("{s:s, s:[s]}", "workflow", "x", "run_modes", "cli_agent"), k_agent, 2,
	    NULL);
#undef BAD
	for (size_t i = 0; i < n; i++) {
		struct sw_test_ev *f = sw_test_evlog_finished(&stk.evl, d[i].step_id);

		sw_test_ev_require(f, "FAILED", want[i].want);
		printf("hostile %zu: %s\n", i, f->error);
		SW_REQUIRE(sw_test_evlog_count(&stk.evl, "step.started", d[i].step_id) == 0,
			   "a refused step was started");
	}
	dispatch(&dok, "ok", "build", 60000,
		 agent_spec("custom", "p", json_string("echo fine"), NULL), k_agent, 2, NULL);
	sw_test_ev_require(sw_test_evlog_finished(&stk.evl, dok.step_id), "SUCCEEDED", NULL);
	SW_CHECK(waitpid(stk.sbd_pid, NULL, WNOHANG) == 0);
	sbd_stop();
}

/* ---- the real Claude Code ----------------------------------------------------------- */

#define PAGE "<!doctype html>\n<h1>Built by a CLI agent in a sagewai sandbox</h1>\n"

/* The real CLI of agent (its variant must be built) against the scripted
 * mock, through sandboxd's egress proxy (the mock's host:port allowed),
 * the key and base URL from the identity; index.html pushed to the git
 * server with the identity's GITHUB_TOKEN. */
static void real_agent(const char *name, const char *agent, const char *key_env,
		       const char *url_env, const char *url_suffix, const char *model_env,
		       const char *model)
{
	struct sw_test_dispatch d;
	struct sw_test_ev *f;
	struct sw_test_idkey kc[4];
	char root[700], url[256], base[128], allow[64], bin[300], *o;
	pid_t git, mpid;
	int mport;
	size_t nk = 0;
	json_t *s;

	snprintf(bin, sizeof(bin), "/var/lib/sagewai/variants/%s/bin", agent);
	if (access(bin, X_OK) != 0) {
		printf("%s: the variant is not built (tools/setup); skipped\n", agent);
		exit(77);
	}
	setup(name);
	git = git_server(root, sizeof(root), url, sizeof(url));
	/* the scripted model endpoint */
	s = json_pack("[{s:s, s:s, s:s}, {s:s, s:s}, {s:s}]", "tool", "write", "path",
		      "index.html", "content", PAGE, "tool", "bash", "command", "ls", "text",
		      "done");
	o = json_dumps(s, 0);
	json_decref(s);
	SW_CHECK(o != NULL);
	mpid = sw_test_llm_mock_start(stk.dir, o, token, &mport);
	free(o);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d%s", mport, url_suffix);
	snprintf(allow, sizeof(allow), "127.0.0.1:%d", mport);
	kc[nk++] = (struct sw_test_idkey){key_env, "workflow", "llm", 2, token};
	kc[nk++] = (struct sw_test_idkey){url_env, "workflow", NULL, 0, base};
	kc[nk++] = (struct sw_test_idkey){"GITHUB_TOKEN", "workflow", "github", 1, gh_token};
	if (model_env != NULL)
		kc[nk++] = (struct sw_test_idkey){model_env, "workflow", NULL, 0, model};
	sbd_extra[0] = "SAGEWAI_ARTIFACT_HTTP=allow";
	sbd_extra[1] = "SAGEWAI_ARTIFACT_PRIVATE=allow";
	sbd_extra[2] = "SAGEWAI_EGRESS_PRIVATE=allow";
	sbd_extra[3] = NULL;
	sbd_start();
	s = agent_spec(
	    agent, "Build index.html for the brief, then list the directory.", NULL,
	    json_pack("{s:s, s:s, s:s}", "destination", "github", "repo", url, "branch", "main"));
	json_object_set_new(s, "egress_allow", json_pack("[s]", allow));
	dispatch(&d, "real", "build", 240000, s, kc, nk, NULL);
	f = sw_test_evlog_finished(&stk.evl, d.step_id);
	sw_test_evlog_wait(&stk.evl, "sandbox.released", d.step_id, 0, 60);
	{
		char *so = output_of(d.step_id, "stdout"), *se = output_of(d.step_id, "stderr");

		printf("%s: %s %s\nstdout: %.2000s\nstderr: %.3000s\n", agent, f->status,
		       f->error ? f->error : "", so, se);
		free(so);
		free(se);
	}
	sw_test_ev_require(f, "SUCCEEDED", NULL);
	changed_has(f, "index.html", PAGE);
	{
		char cmd[1024], buf[4096] = "";
		size_t n;
		FILE *p;

		snprintf(cmd, sizeof(cmd), "git --git-dir=%s/site.git show main:index.html", root);
		SW_CHECK((p = popen(cmd, "r")) != NULL);
		n = fread(buf, 1, sizeof(buf) - 1, p);
		buf[n] = '\0';
		pclose(p);
		SW_REQUIRE(!strcmp(buf, PAGE), "on the server: '%s'", buf);
	}
	/* nothing of the CLI's own state in the workspace: only the page */
	SW_REQUIRE(changed_count(f) == 1, "%zu files in the workspace", changed_count(f));
	printf("%s: index.html written by the CLI's own tool, pushed to %s\n", agent,
	       json_string_value(
		   json_object_get(json_object_get(f->output, "artifact"), "location")));
	/* every connection went through the proxy, to the endpoint only */
	for (size_t i = 0; i < stk.evl.n; i++) {
		json_t *b = stk.evl.ev[i]->body;

		if (strcmp(stk.evl.ev[i]->type, "sandbox.egress") != 0 ||
		    strcmp(stk.evl.ev[i]->step_id, d.step_id) != 0)
			continue;
		printf("egress: %s %s:%lld %s\n", json_string_value(json_object_get(b, "method")),
		       json_string_value(json_object_get(b, "target_host")),
		       (long long)json_integer_value(json_object_get(b, "target_port")),
		       json_string_value(json_object_get(b, "reason")));
	}
	log_clean();
	sbd_stop();
	kill(mpid, SIGTERM);
	waitpid(mpid, NULL, 0);
	kill(git, SIGTERM);
	waitpid(git, NULL, 0);
}

static void scenario_claude(void)
{
	real_agent("claude", "claude-code", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "", NULL,
		   NULL);
}

static void scenario_codex(void)
{
	real_agent("codex", "codex", "OPENAI_API_KEY", "OPENAI_BASE_URL", "/v1", "OPENAI_MODEL",
		   "mock-codex");
}

static void scenario_gemini(void)
{
	real_agent("gemini", "gemini", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "",
		   "GEMINI_MODEL", "gemini-2.5-pro");
}

int main(int argc, char **argv)
{
	static const struct sw_test_scenario scenarios[] = {
	    {"deliver", scenario_deliver}, {"github", scenario_github},
	    {"scan", scenario_scan},	   {"fail", scenario_fail},
	    {"cancel", scenario_cancel},   {"timeout", scenario_timeout},
	    {"kill9", scenario_kill9},	   {"hostile", scenario_hostile},
	    {"claude", scenario_claude},   {"codex", scenario_codex},
	    {"gemini", scenario_gemini},
	};

	src_dir = getenv("SW_SANDBOXD_TEST_SRC");
	if (src_dir == NULL)
		src_dir = SW_SANDBOXD_TEST_SRC;
	sw_test_scenario_pick(argc, argv, scenarios, sizeof(scenarios) / sizeof(scenarios[0]))
	    ->fn();
	return 0;
}
