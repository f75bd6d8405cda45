/*
 * sw_workflow parsing and validation: the examples parse and round-trip
 * through the canonical JSON form, and every class of error names the
 * right FILE:LINE:COL.
 *
 *   workflow_parse EXAMPLES_DIR
 */
#include <math.h>

#include "wf_test.h"

static const char *examples;

/* Parse text as "t.yaml" and expect an error that starts with prefix
 * and contains needle. */
static void expect_err_at(int line, const char *yaml, const char *prefix, const char *needle)
{
	char err[512];
	struct sw_workflow *wf = sw_workflow_parse(yaml, strlen(yaml), "t.yaml", err, sizeof(err));

	if (wf != NULL) {
		fprintf(stderr, "line %d: parsed but expected \"%s\"\n", line, prefix);
		exit(1);
	}
	if (strncmp(err, prefix, strlen(prefix)) != 0 ||
	    (needle != NULL && strstr(err, needle) == NULL)) {
		fprintf(stderr, "line %d: got \"%s\"\n  expected prefix \"%s\" and \"%s\"\n", line,
			err, prefix, needle ? needle : "");
		exit(1);
	}
}
#define expect_err(y, p, n) expect_err_at(__LINE__, y, p, n)

static struct sw_workflow *parse_ok_at(int line, const char *yaml)
{
	char err[512];
	struct sw_workflow *wf = sw_workflow_parse(yaml, strlen(yaml), "t.yaml", err, sizeof(err));

	if (wf == NULL) {
		fprintf(stderr, "line %d: unexpected error: %s\n", line, err);
		exit(1);
	}
	wf_check_roundtrip(wf, "inline");
	return wf;
}
#define parse_ok(y) parse_ok_at(__LINE__, y)

static void test_hello(void)
{
	char err[512];
	size_t len;
	char *text = wf_read_file(examples, "hello.yaml", &len);
	struct sw_workflow *wf = sw_workflow_parse(text, len, "hello.yaml", err, sizeof(err));
	json_t *with;

	SW_CHECKF(wf != NULL, "%s", err);
	SW_CHECK(!strcmp(wf->name, "hello") && wf->version == 1 && wf->description != NULL);
	SW_CHECK(wf->nsteps == 4);
	SW_CHECK(!strcmp(wf->steps[0].name, "plan") && !strcmp(wf->steps[0].uses, "llm"));
	SW_CHECK(!strcmp(wf->steps[1].name, "transform") &&
		 !strcmp(wf->steps[1].uses, "template"));
	SW_CHECK(!strcmp(wf->steps[2].name, "check") && wf->steps[2].mode == SW_MODE_SANDBOXED);
	SW_CHECK(json_array_size(json_object_get(wf->steps[2].extra, "run")) == 4);
	SW_CHECK(!strcmp(json_string_value(json_object_get(wf->steps[2].extra, "network")),
			 "none"));
	SW_CHECK(!strcmp(wf->steps[3].name, "summarise") && !strcmp(wf->steps[3].uses, "llm"));
	for (size_t i = 0; i < 4; i++) {
		if (i == 2)
			continue;
		SW_CHECK(wf->steps[i].mode == SW_MODE_IN_PROCESS);
		SW_CHECK(json_is_object(wf->steps[i].with) && json_is_object(wf->steps[i].extra));
		SW_CHECK(json_object_size(wf->steps[i].extra) == 0);
	}
	with = wf->steps[0].with;
	SW_CHECK(json_is_true(json_object_get(with, "json")));
	SW_CHECK(json_integer_value(json_object_get(with, "max_tokens")) == 400);
	SW_CHECK(json_is_integer(json_object_get(with, "temperature")));
	SW_CHECK(strstr(json_string_value(json_object_get(with, "prompt")),
			"${{ input.brief }}\n\nPlan a web page") != NULL);
	SW_CHECK(wf->steps[0].timeout_ms == 30000 && wf->steps[0].retries == 2 &&
		 wf->steps[0].backoff_ms == 500);
	SW_CHECK(wf->steps[1].timeout_ms == 60000 && wf->steps[1].retries == 0 &&
		 wf->steps[1].backoff_ms == 1000);
	SW_CHECK(wf->steps[0].line == 9 && wf->steps[0].col == 5);
	SW_CHECK(wf->steps[1].line == 25 && wf->steps[1].col == 5);
	SW_CHECK(json_integer_value(json_object_get(json_object_get(wf->steps[1].with, "value"),
						    "outline_version")) == 1);
	SW_CHECK(!sw_workflow_identity_bearing(wf));
	SW_CHECK(sw_workflow_first_unrunnable(wf, 1u << SW_MODE_IN_PROCESS) == 2);
	SW_CHECK(sw_workflow_first_unrunnable(wf, 1u << SW_MODE_SANDBOXED) == 0);
	SW_CHECK(sw_workflow_first_unrunnable(
		     wf, (1u << SW_MODE_IN_PROCESS) | (1u << SW_MODE_SANDBOXED)) == -1);
	wf_check_roundtrip(wf, "hello.yaml");
	sw_workflow_free(wf);
	free(text);
}

static void test_portfolio(void)
{
	char err[512];
	size_t len;
	char *text = wf_read_file(examples, "portfolio.yaml", &len);
	struct sw_workflow *wf = sw_workflow_parse(text, len, "portfolio.yaml", err, sizeof(err));
	const struct sw_step *s;
	json_t *x;

	SW_CHECKF(wf != NULL, "%s", err);
	SW_CHECK(!strcmp(wf->name, "portfolio") && wf->nsteps == 4);
	s = &wf->steps[0];
	SW_CHECK(!strcmp(s->name, "receive_brief") && s->mode == SW_MODE_IN_PROCESS &&
		 !strcmp(s->uses, "llm"));
	SW_CHECK(json_is_true(json_object_get(s->with, "json")));
	s = &wf->steps[1];
	SW_CHECK(!strcmp(s->name, "scaffold") && s->mode == SW_MODE_CLI_AGENT && s->uses == NULL);
	SW_CHECK(
	    !strcmp(json_string_value(json_object_get(s->extra, "cli_agent")), "claude-code"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(s->extra, "identity")),
			 "portfolio-customer-x"));
	x = json_object_get(s->extra, "artifact");
	SW_CHECK(!strcmp(json_string_value(json_object_get(x, "destination")), "github"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(x, "repo")), "${{ input.repo }}"));
	SW_CHECK(strstr(json_string_value(json_object_get(s->extra, "prompt")),
			"${{ steps.receive_brief.output }}") != NULL);
	x = json_object_get(s->extra, "egress_allow");
	SW_CHECK(json_array_size(x) == 1 &&
		 !strcmp(json_string_value(json_array_get(x, 0)), "127.0.0.1:8788"));
	SW_CHECK(s->timeout_ms == 10 * 60 * 1000);
	s = &wf->steps[2];
	SW_CHECK(!strcmp(s->name, "verify") && s->mode == SW_MODE_SANDBOXED);
	SW_CHECK(!strcmp(json_string_value(json_object_get(s->extra, "variant")), "base"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(s->extra, "network")), "egress_only"));
	x = json_object_get(s->extra, "egress_allow");
	SW_CHECK(json_array_size(x) == 1 &&
		 !strcmp(json_string_value(json_array_get(x, 0)), "127.0.0.1:8789"));
	SW_CHECK(strstr(json_string_value(json_object_get(s->extra, "run")), "git clone") != NULL);
	SW_CHECK(!strcmp(json_string_value(json_object_get(json_object_get(s->extra, "env"),
							   "PUSHED")),
			 "${{ steps.scaffold.output.artifact.location }}"));
	SW_CHECK(json_integer_value(
		     json_object_get(json_object_get(s->extra, "limits"), "memory_mb")) == 512);
	SW_CHECK(s->with != NULL && json_object_size(s->with) == 0);
	SW_CHECK(s->retries == 1);
	SW_CHECK(!strcmp(wf->steps[3].name, "summarise") && !strcmp(wf->steps[3].uses, "llm"));

	SW_CHECK(sw_workflow_identity_bearing(wf));
	SW_CHECK(sw_workflow_first_unrunnable(wf, 1u << SW_MODE_IN_PROCESS) == 1);
	SW_CHECK(sw_workflow_first_unrunnable(wf, (1u << SW_MODE_IN_PROCESS) |
						      (1u << SW_MODE_CLI_AGENT)) == 2);
	SW_CHECK(sw_workflow_first_unrunnable(wf, (1u << SW_MODE_COUNT) - 1) == -1);
	wf_check_roundtrip(wf, "portfolio.yaml");
	sw_workflow_free(wf);
	free(text);
}

/* The files in examples/broken, each with its exact location. */
static void test_broken_files(void)
{
	static const struct {
		const char *file, *prefix, *needle;
	} cases[] = {
	    {"broken/unknown_key.yaml", "broken/unknown_key.yaml:8:5: ", "\"retry\""},
	    {"broken/duplicate_step.yaml",
	     "broken/duplicate_step.yaml:10:11: ", "duplicate step name \"ask\""},
	    {"broken/bad_mode.yaml", "broken/bad_mode.yaml:5:11: ",
	     "unknown mode \"docker\" (expected one of in_process, sandboxed, "
	     "identity_scoped, cli_agent, cli_agent_jit)"},
	    {"broken/later_step.yaml",
	     "broken/later_step.yaml:8:19: ", "step \"second\" is a later step"},
	    {"broken/unknown_step.yaml",
	     "broken/unknown_step.yaml:10:15: ", "unknown step \"frist\""},
	    {"broken/unknown_root.yaml",
	     "broken/unknown_root.yaml:7:15: ", "unknown root \"env\""},
	    {"broken/alias.yaml", "broken/alias.yaml:8:12: ", "anchors and aliases"},
	    {"broken/syntax.yaml", "broken/syntax.yaml:7:5: ", "did not find expected"},
	    {"broken/no_uses.yaml", "broken/no_uses.yaml:4:5: ", "needs \"uses\""},
	    {"broken/uses_sandboxed.yaml", "broken/uses_sandboxed.yaml:6:5: ",
	     "\"uses\" applies only to in_process steps (this step is sandboxed)"},
	    {"broken/no_steps.yaml", "broken/no_steps.yaml:4:8: ", "at least one step"},
	    {"broken/two_docs.yaml", "broken/two_docs.yaml:4:1: ", "more than one YAML document"},
	};
	char err[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *text = wf_read_file(examples, cases[i].file, &len);
		struct sw_workflow *wf =
		    sw_workflow_parse(text, len, cases[i].file, err, sizeof(err));

		SW_CHECKF(wf == NULL, "%s parsed", cases[i].file);
		SW_CHECKF(!strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) &&
			      strstr(err, cases[i].needle) != NULL,
			  "%s: got \"%s\"", cases[i].file, err);
		free(text);
	}
}

#define HEAD "name: t\nsteps:\n"

static void test_structure_errors(void)
{
	/* top level */
	expect_err("name: t\nstep:\n  - {name: a, uses: llm}\n",
		   "t.yaml:2:1: ", "unknown key \"step\"");
	expect_err("name: [t]\nsteps: []\n",
		   "t.yaml:1:7: ", "name: expected a string, got a sequence");
	expect_err("name: 12\nsteps: []\n",
		   "t.yaml:1:7: ", "name: expected a string, got an integer");
	expect_err("name: Hello World\n", "t.yaml:1:7: ", "is not a valid workflow name");
	expect_err("name: -x\n", "t.yaml:1:7: ", "is not a valid workflow name");
	expect_err("name: t\nversion: 0\n", "t.yaml:2:10: ", "version: 0 is out of range");
	expect_err("name: t\nversion: \"1\"\n",
		   "t.yaml:2:10: ", "version: expected an integer, got a string");
	expect_err("name: t\nversion: 1.5\n",
		   "t.yaml:2:10: ", "expected an integer, got a number");
	expect_err("name: t\nversion: 3000000000\n", "t.yaml:2:10: ", "out of range");
	expect_err("name: t\ndescription: {a: 1}\n", "t.yaml:2:14: ", "expected a string");
	expect_err("version: 2\nsteps: []\n", "t.yaml:1:1: ", "missing key \"name\"");
	expect_err("# a comment\nname: t\n", "t.yaml:2:1: ", "missing key \"steps\"");
	expect_err("name: t\nsteps: {a: 1}\n", "t.yaml:2:8: ", "steps: expected a sequence");
	expect_err("name: t\nsteps:\n", "t.yaml:2:7: ", "steps: expected a sequence");
	expect_err("- a\n- b\n", "t.yaml:1:1: ", "a workflow must be a mapping, got a sequence");
	expect_err("", "t.yaml:1:1: ", "empty workflow");
	expect_err("# nothing\n", "t.yaml:2:1: ", "empty workflow");
	expect_err("just text\n", "t.yaml:1:1: ", "a workflow must be a mapping, got a string");

	/* steps */
	expect_err(HEAD "  - just a string\n", "t.yaml:3:5: ", "a step must be a mapping");
	expect_err(HEAD "  - uses: llm\n    with: {prompt: x}\n",
		   "t.yaml:3:5: ", "step has no name");
	expect_err(HEAD "  - name: Big\n    uses: llm\n",
		   "t.yaml:3:11: ", "not a valid step name");
	expect_err(HEAD "  - name: a.b\n    uses: llm\n",
		   "t.yaml:3:11: ", "not a valid step name");
	expect_err(HEAD "  - name: [a]\n    uses: llm\n",
		   "t.yaml:3:11: ", "name: expected a string, got a sequence");
	expect_err(HEAD "  - name: a\n    uses: llm\n    colour: blue\n",
		   "t.yaml:5:5: ", "unknown step key \"colour\"");
	expect_err(HEAD "  - name: a\n    uses: llm\n    timeout_ms: 5\n",
		   "t.yaml:5:5: ", "unknown step key \"timeout_ms\"");
	expect_err(HEAD "  - name: a\n    mode: 3\n",
		   "t.yaml:4:11: ", "mode: expected a string, got an integer");
	expect_err(HEAD "  - name: a\n    mode: In_Process\n    uses: llm\n", "t.yaml:4:11: ",
		   "in_process, sandboxed, identity_scoped, cli_agent, cli_agent_jit");
	expect_err(
	    HEAD "  - {name: a, uses: llm}\n  - {name: b, uses: llm}\n  - {name: a, uses: llm}\n",
	    "t.yaml:5:12: ", "duplicate step name \"a\"");

	/* uses */
	expect_err(HEAD "  - name: a\n    uses: shell\n", "t.yaml:4:11: ",
		   "unknown step kind \"shell\" (expected template, llm, http or plugin:NAME)");
	expect_err(HEAD "  - name: a\n    uses: \"plugin:\"\n",
		   "t.yaml:4:11: ", "unknown step kind");
	expect_err(HEAD "  - name: a\n    uses: plugin:Bad\n",
		   "t.yaml:4:11: ", "unknown step kind");
	expect_err(HEAD "  - name: a\n    uses: [llm]\n",
		   "t.yaml:4:11: ", "uses: expected a string, got a sequence");
	expect_err(HEAD "  - name: a\n    mode: in_process\n",
		   "t.yaml:3:5: ", "step \"a\": an in_process step needs \"uses\"");
	expect_err(HEAD "  - name: a\n    uses: llm\n    mode: cli_agent\n", "t.yaml:4:5: ",
		   "\"uses\" applies only to in_process steps (this step is cli_agent)");
	expect_err(HEAD "  - name: a\n    uses: llm\n    run: make\n",
		   "t.yaml:5:5: ", "\"run\" does not apply to in_process steps");

	/* with */
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: [1]\n",
		   "t.yaml:5:11: ", "with: expected a mapping, got a sequence");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: {x: 1, x: 2}\n",
		   "t.yaml:5:18: ", "duplicate key \"x\"");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: {[1]: 2}\n",
		   "t.yaml:5:12: ", "mapping keys must be scalars");
}

static void test_limits(void)
{
	struct sw_workflow *wf;

	expect_err(HEAD "  - name: a\n    uses: llm\n    timeout: 0\n",
		   "t.yaml:5:14: ", "timeout: 0 is out of range (1ms..24h)");
	expect_err(HEAD "  - name: a\n    uses: llm\n    timeout: 25h\n",
		   "t.yaml:5:14: ", "timeout: 25h is out of range");
	expect_err(HEAD "  - name: a\n    uses: llm\n    timeout: 86401\n",
		   "t.yaml:5:14: ", "out of range");
	expect_err(HEAD "  - name: a\n    uses: llm\n    timeout: -1\n",
		   "t.yaml:5:14: ", "out of range");
	expect_err(HEAD "  - name: a\n    uses: llm\n    timeout: 30x\n",
		   "t.yaml:5:14: ", "timeout: \"30x\" is not a duration");
	expect_err(HEAD "  - name: a\n    uses: llm\n    timeout: 1.5\n",
		   "t.yaml:5:14: ", "timeout: expected a duration such as 30s, got a number");
	expect_err(HEAD "  - name: a\n    uses: llm\n    retries: 21\n",
		   "t.yaml:5:14: ", "retries: 21 is out of range (0..20)");
	expect_err(HEAD "  - name: a\n    uses: llm\n    retries: -1\n",
		   "t.yaml:5:14: ", "out of range");
	expect_err(HEAD "  - name: a\n    uses: llm\n    retries: \"2\"\n",
		   "t.yaml:5:14: ", "retries: expected an integer, got a string");
	expect_err(HEAD "  - name: a\n    uses: llm\n    backoff: 2h\n",
		   "t.yaml:5:14: ", "backoff: 2h is out of range (0..1h)");
	expect_err(HEAD "  - name: a\n    uses: llm\n    backoff: soon\n",
		   "t.yaml:5:14: ", "not a duration");

	wf = parse_ok(HEAD "  - name: a\n    uses: llm\n    timeout: 86400\n    retries: 20\n"
			   "    backoff: 0\n");
	SW_CHECK(wf->steps[0].timeout_ms == 86400000 && wf->steps[0].retries == 20 &&
		 wf->steps[0].backoff_ms == 0);
	sw_workflow_free(wf);
	wf = parse_ok(HEAD "  - name: a\n    uses: llm\n    timeout: 1ms\n    backoff: 1h\n");
	SW_CHECK(wf->steps[0].timeout_ms == 1 && wf->steps[0].backoff_ms == 3600000);
	sw_workflow_free(wf);
}

static void test_sandbox_keys(void)
{
	struct sw_workflow *wf;
	json_t *env;

#define SBX HEAD "  - name: a\n    mode: sandboxed\n"
	expect_err(SBX "    network: open\n", "t.yaml:5:14: ",
		   "network: unknown value \"open\" (expected one of none, egress_only, full)");
	expect_err(SBX "    network: [none]\n", "t.yaml:5:14: ", "network: expected a string");
	expect_err(SBX "    egress_allow: github.com:443\n",
		   "t.yaml:5:19: ", "egress_allow: expected a sequence");
	expect_err(SBX "    egress_allow: [\"github.com\"]\n",
		   "t.yaml:5:20: ", "\"github.com\" is not host:port");
	expect_err(SBX
		   "    egress_allow:\n      - \"a.example:443\"\n      - \"b.example:70000\"\n",
		   "t.yaml:7:9: ", "is not host:port");
	expect_err(SBX "    egress_allow: [1]\n",
		   "t.yaml:5:20: ", "expected a \"host:port\" string");
	/* what sandboxd's proxy would refuse at run time is refused here */
	expect_err(SBX "    egress_allow: [\"127.1:8080\"]\n", "t.yaml:5:20: ",
		   "\"127.1:8080\" is not host:port (bad IPv4 address)");
	expect_err(SBX "    egress_allow: [\"2130706433:80\"]\n", "t.yaml:5:20: ",
		   "(bad IPv4 address)");
	expect_err(SBX "    egress_allow: [\"*:443\"]\n", "t.yaml:5:20: ",
		   "(bad character in host name)");
	expect_err(SBX "    egress_allow: [\"*.example.com:443\"]\n", "t.yaml:5:20: ",
		   "(bad character in host name)");
	expect_err(SBX "    egress_allow: [\"a..example:443\"]\n", "t.yaml:5:20: ",
		   "(empty label in host name)");
	expect_err(SBX "    egress_allow: [\"::1:443\"]\n", "t.yaml:5:20: ",
		   "(an IPv6 address needs [brackets])");
	expect_err(SBX "    egress_allow: [\"[::1]\"]\n", "t.yaml:5:20: ", "(no port)");
	wf = parse_ok(SBX "    egress_allow: [\"PyPI.org:443\", \"10.0.0.1:80\", \"[::1]:8080\"]\n");
	sw_workflow_free(wf);
	expect_err(SBX "    limits: 5\n", "t.yaml:5:13: ", "limits: expected a mapping");
	/* one vocabulary: the documented keys, in range, nothing else */
	wf = parse_ok(SBX "    limits: {memory_mb: 128, pids: 64, cpus: 1}\n");
	SW_CHECK(json_integer_value(json_object_get(
		     json_object_get(wf->steps[0].extra, "limits"), "memory_mb")) == 128);
	sw_workflow_free(wf);
	wf = parse_ok(SBX "    limits:\n      cpus: 0.5\n      cpu_seconds: 60\n"
			  "      file_size_mb: 10\n      open_files: 256\n"
			  "      memory_mb: 1048576\n      pids: 65536\n");
	SW_CHECK(json_real_value(json_object_get(json_object_get(wf->steps[0].extra, "limits"),
						 "cpus")) == 0.5);
	sw_workflow_free(wf);
	expect_err(SBX "    limits: {memory_mb: 128, nproc: 40}\n", "t.yaml:5:30: ",
		   "limits: unknown limit \"nproc\" (expected memory_mb, pids, cpus");
	expect_err(SBX "    limits: {memory_bytes: 1000000}\n", "t.yaml:5:14: ",
		   "unknown limit \"memory_bytes\"");
	expect_err(SBX "    limits:\n      pids: 0\n", "t.yaml:6:13: ",
		   "limits: pids: 0 is out of range (1..65536)");
	expect_err(SBX "    limits: {pids: 65537}\n", "t.yaml:5:20: ", "out of range (1..65536)");
	expect_err(SBX "    limits: {memory_mb: 8}\n", "t.yaml:5:25: ",
		   "limits: memory_mb: 8 is out of range (16..1048576)");
	expect_err(SBX "    limits: {memory_mb: 1048577}\n", "t.yaml:5:25: ", "out of range");
	expect_err(SBX "    limits: {memory_mb: 1.5}\n", "t.yaml:5:25: ",
		   "limits: memory_mb: expected an integer, got a number");
	expect_err(SBX "    limits: {memory_mb: \"${{ input.m }}\"}\n", "t.yaml:5:25: ",
		   "expected an integer, got a string");
	expect_err(SBX "    limits: {cpus: 0}\n", "t.yaml:5:20: ",
		   "limits: cpus: 0 is out of range (more than 0, at most 256)");
	expect_err(SBX "    limits: {cpus: 257}\n", "t.yaml:5:20: ", "out of range");
	expect_err(SBX "    limits: {cpus: -1}\n", "t.yaml:5:20: ", "out of range");
	expect_err(SBX "    limits: {cpus: two}\n", "t.yaml:5:20: ",
		   "limits: cpus: expected a number, got a string");
	expect_err(SBX "    limits: {cpu_seconds: 86401}\n", "t.yaml:5:27: ", "out of range");
	expect_err(SBX "    limits: {open_files: 3}\n", "t.yaml:5:26: ", "out of range (16..");
	expect_err(SBX "    limits: {file_size_mb: 0}\n", "t.yaml:5:28: ", "out of range");
	expect_err(SBX "    run: []\n", "t.yaml:5:10: ", "run: an argv must not be empty");
	expect_err(SBX "    run: [python3, {a: 1}]\n", "t.yaml:5:20: ",
		   "expected a string (an argv element)");
	wf = parse_ok(SBX "    run: [python3, -c, \"print(1)\", \"${{ input.x }}\"]\n");
	SW_CHECK(json_array_size(json_object_get(wf->steps[0].extra, "run")) == 4);
	sw_workflow_free(wf);
	expect_err(SBX "    cli_agent: cursor\n",
		   "t.yaml:5:16: ", "(expected one of claude-code, codex, gemini, custom)");
	expect_err(SBX "    artifact: {repo: x}\n",
		   "t.yaml:5:15: ", "artifact: missing destination");
	expect_err(SBX "    artifact: {destination: ftp}\n", "t.yaml:5:29: ",
		   "destination: unknown value \"ftp\" (expected one of github, s3, local, none)");
	expect_err(SBX "    env: {1X: a}\n",
		   "t.yaml:5:11: ", "env: \"1X\" is not a variable name");
	/* names the sandbox sets itself, or that change how programs load */
	expect_err(SBX "    env: {GREETING: hi, PATH: /tmp}\n", "t.yaml:5:25: ",
		   "env: \"PATH\" is reserved by the sandbox");
	expect_err(SBX "    env:\n      A: b\n      HOME: /x\n", "t.yaml:7:7: ",
		   "env: \"HOME\" is reserved by the sandbox");
	expect_err(SBX "    env: {LD_PRELOAD: /tmp/x.so}\n", "t.yaml:5:11: ",
		   "env: \"LD_PRELOAD\" is reserved");
	expect_err(SBX "    env: {LD_LIBRARY_PATH: /tmp}\n", "t.yaml:5:11: ", "is reserved");
	expect_err(SBX "    env: {LD_AUDIT: /tmp}\n", "t.yaml:5:11: ", "is reserved");
	expect_err(SBX "    env: {LD_BIND_NOW: 1}\n", "t.yaml:5:11: ", "is reserved");
	expect_err(SBX "    env: {SAGEWAI_TOKEN: x}\n", "t.yaml:5:11: ",
		   "env: \"SAGEWAI_TOKEN\" is reserved");
	static const char *const proxies[] = {"http_proxy", "https_proxy", "HTTP_PROXY",
					      "HTTPS_PROXY", "no_proxy",    "NO_PROXY",
					      "All_Proxy",  NULL};
	for (int i = 0; proxies[i] != NULL; i++) {
		char y[256];

		snprintf(y, sizeof(y), SBX "    env: {%s: \"http://evil:1\"}\n", proxies[i]);
		expect_err(y, "t.yaml:5:11: ", "is reserved by the sandbox");
	}
	expect_err(SBX "    env: {A-B: x}\n", "t.yaml:5:11: ", "is not a variable name");
	{
		/* at most SW_STEP_ENV_MAX variables and SW_STEP_ENV_BYTES_MAX bytes */
		char *y = malloc(64 << 10);
		size_t o = (size_t)snprintf(y, 64 << 10, SBX "    env:\n");

		for (int i = 0; i <= SW_STEP_ENV_MAX; i++)
			o += (size_t)snprintf(y + o, (64 << 10) - o, "      V%d: x\n", i);
		expect_err(y, "t.yaml:6:7: ", "env: more than 64 variables");
		o = (size_t)snprintf(y, 64 << 10, SBX "    env:\n      A: \"");
		memset(y + o, 'x', SW_STEP_ENV_BYTES_MAX);
		snprintf(y + o + SW_STEP_ENV_BYTES_MAX, 16, "\"\n");
		expect_err(y, "t.yaml:6:10: ", "env: more than 32768 bytes");
		free(y);
	}
	wf = parse_ok(SBX "    env: {GREETING: \"${{ input.x }}\", _x1: \"a=b\", ld_x: y}\n"
			  "    run: echo $GREETING\n");
	env = json_object_get(wf->steps[0].extra, "env");
	SW_CHECK(!strcmp(json_string_value(json_object_get(env, "GREETING")), "${{ input.x }}"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(env, "_x1")), "a=b"));
	sw_workflow_free(wf);
	expect_err(SBX "    env: {GREETING: \"${{ steps.zz.output }}\"}\n", "t.yaml:5:21: ",
		   "unknown step \"zz\"");
	SW_CHECK(sw_step_env_refusal("PATH", 4) != NULL);
	SW_CHECK(sw_step_env_refusal("PATHX", 5) == NULL);
	SW_CHECK(sw_step_env_refusal("PAT", 3) == NULL);
	SW_CHECK(sw_step_env_refusal("LD_", 3) != NULL);
	SW_CHECK(sw_step_env_refusal("", 0) != NULL);
	SW_CHECK(sw_step_env_refusal("A\0B", 3) != NULL);
	expect_err(SBX "    env: {X: }\n", "t.yaml:5:14: ", "env: X: expected a string, got null");
	expect_err(SBX "    env: {X: [1]}\n", "t.yaml:5:14: ", "env: X: expected a string");
	expect_err(SBX "    run: \"\"\n", "t.yaml:5:10: ", "run: must not be empty");
	expect_err(SBX "    identity: 5\n", "t.yaml:5:15: ", "identity: expected a string");
	expect_err(SBX "    run: \"echo ${{ steps.b.output }}\"\n  - {name: b, uses: llm}\n",
		   "t.yaml:5:10: ", "step \"b\" is a later step");

	wf = parse_ok(SBX "    network: none\n    env: {PORT: 8080, DEBUG: true, NAME: x}\n"
			  "    run: make\n    with: {n: 1}\n");
	env = json_object_get(wf->steps[0].extra, "env");
	SW_CHECK(!strcmp(json_string_value(json_object_get(env, "PORT")), "8080"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(env, "DEBUG")), "true"));
	SW_CHECK(json_integer_value(json_object_get(wf->steps[0].with, "n")) == 1);
	SW_CHECK(wf->steps[0].uses == NULL);
	sw_workflow_free(wf);
	/* identity_scoped and the agent modes parse too; a step with only a
	 * mode and no other keys is fine outside in_process. */
	wf = parse_ok(HEAD "  - {name: a, mode: identity_scoped, identity: p, run: x}\n"
			   "  - {name: b, mode: cli_agent_jit, cli_agent: codex,\n"
			   "     artifact: {destination: none}}\n"
			   "  - {name: c, mode: sandboxed}\n");
	SW_CHECK(wf->steps[0].mode == SW_MODE_IDENTITY_SCOPED);
	SW_CHECK(wf->steps[1].mode == SW_MODE_CLI_AGENT_JIT);
	SW_CHECK(sw_workflow_identity_bearing(wf));
	sw_workflow_free(wf);
#undef SBX
}

static void test_template_errors(void)
{
#define STEP HEAD "  - name: a\n    uses: template\n    with:\n      value: "
	expect_err(STEP "\"${{ steps.a.output }}\"\n",
		   "t.yaml:6:14: ", "step \"a\" cannot use its own output");
	expect_err(STEP "\"x ${{ input.a\"\n", "t.yaml:6:14: ", "unterminated \"${{\"");
	expect_err(STEP "\"${{ input..a }}\"\n", "t.yaml:6:14: ", "bad path");
	expect_err(STEP "\"${{ input.a[x] }}\"\n", "t.yaml:6:14: ", "bad path");
	expect_err(STEP "\"${{ input a }}\"\n", "t.yaml:6:14: ", "bad path");
	expect_err(STEP "\"${{ }}\"\n", "t.yaml:6:14: ", "empty expression");
	expect_err(STEP "\"${{ steps.a }}\"\n", "t.yaml:6:14: ", "expected steps.NAME.output");
	expect_err(STEP "\"${{ steps.a.result }}\"\n",
		   "t.yaml:6:14: ", "expected steps.NAME.output");
	expect_err(STEP "\"${{ secrets.KEY }}\"\n", "t.yaml:6:14: ",
		   "${{ secrets.KEY }}: unknown root \"secrets\" (expected input or steps)");
	/* nested deep inside with: */
	expect_err(
	    HEAD
	    "  - {name: a, uses: llm}\n  - name: b\n    uses: http\n    with:\n"
	    "      body:\n        items:\n          - ok\n          - \"${{ steps.c.output }}\"\n",
	    "t.yaml:10:13: ", "unknown step \"c\"");
	/* keys are not templated, so not checked */
	sw_workflow_free(parse_ok(STEP "{\"${{ nonsense\": 1}\n"));
#undef STEP
}

static void test_yaml_level(void)
{
	char big[40 + 50 * 2 + 1];
	char *huge;
	size_t n, i;

	expect_err(HEAD "  - name: &x a\n    uses: llm\n", "t.yaml:3:11: ", "anchors and aliases");
	expect_err(HEAD "  - &s\n    name: a\n    uses: llm\n",
		   "t.yaml:3:5: ", "anchors and aliases");
	expect_err("name: &n t\nsteps:\n  - {name: *n, uses: llm}\n", "t.yaml:1:7: ", "anchors");
	expect_err("name: t\nsteps: *s\n", "t.yaml:2:8: ", "anchors and aliases");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: {n: !!int 3}\n",
		   "t.yaml:5:15: ", "tags other than !!str are not supported");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: !foo {n: 3}\n",
		   "t.yaml:5:11: ", "tags are not supported");
	expect_err("name: t\nsteps:\n- name: \"unterminated\n",
		   "t.yaml:4:1: ", "found unexpected end of stream");
	expect_err("name: t\n  steps: x\n", "t.yaml:2:8: ", "mapping values are not allowed");
	expect_err("name: t\n\tsteps: x\n", "t.yaml:2:1: ", "found a tab character");
	expect_err("name: t\nsteps: []\n---\nname: u\n",
		   "t.yaml:3:1: ", "more than one YAML document");
	expect_err("name: t\nsteps: []\n...\n--- x\n", "t.yaml:4:1: ", "more than one");
	expect_err("name: \"t\xff\"\n", "t.yaml:1:9: ", "invalid leading UTF-8 octet");
	expect_err("name: t\ndescription: \"\xc3\xa9\xc3\"\n", "t.yaml:2:17: ", "UTF-8");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: {n: 99999999999999999999}\n",
		   "t.yaml:5:15: ", "integer 99999999999999999999 is out of range");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: {n: 1e400}\n",
		   "t.yaml:5:15: ", "out of range");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: {n: -.inf}\n",
		   "t.yaml:5:15: ", "no JSON form");
	expect_err(HEAD "  - name: a\n    uses: llm\n    with: {n: .NaN}\n",
		   "t.yaml:5:15: ", "no JSON form");
	expect_err("name: \"a\\0b\"\n", "t.yaml:1:7: ", "NUL character");

	/* Nesting: root map 1, steps 2, step 3, with 4, so the 29th '[' of
	 * value is level 33, at column 14 + 28. */
	n = (size_t)snprintf(big, sizeof(big), "%s", "");
	for (i = 0; i < 50; i++)
		big[n++] = '[';
	for (i = 0; i < 50; i++)
		big[n++] = ']';
	big[n] = '\0';
	{
		char doc[512];

		snprintf(doc, sizeof(doc),
			 HEAD "  - name: a\n    uses: template\n    with:\n"
			      "      value: %s\n",
			 big);
		expect_err(doc, "t.yaml:6:42: ", "nested deeper than 32 levels");
		/* 32 levels exactly are fine */
		snprintf(doc, sizeof(doc),
			 HEAD "  - name: a\n    uses: template\n    with:\n"
			      "      value: %.28s%.28s\n",
			 big, big + 50);
		sw_workflow_free(parse_ok(doc));
	}

	/* more than 1 MiB */
	n = (1u << 20) + 1;
	huge = malloc(n + 1);
	SW_CHECK(huge != NULL);
	memset(huge, '#', n);
	memcpy(huge, "name: t\n", 8);
	huge[n] = '\0';
	expect_err(huge, "t.yaml:1:1: ", "larger than 1 MiB");
	free(huge);
}

/* YAML 1.2 core schema: plain scalars take JSON types, quoted stay strings. */
static void test_core_schema(void)
{
	struct sw_workflow *wf = parse_ok(
	    HEAD "  - name: a\n    uses: template\n    with:\n"
		 "      i: 42\n      neg: -7\n      pos: +5\n      hex: 0x1F\n      oct: 0o17\n"
		 "      lead: 007\n      f: 1.5\n      e: 1e3\n      dot: .5\n"
		 "      t: true\n      T: True\n      F: FALSE\n      n: null\n      tilde: ~\n"
		 "      empty:\n      q: \"42\"\n      sq: 'true'\n      tagged: !!str 12\n"
		 "      yes: yes\n      on: on\n      und: 1_000\n      date: 2024-01-01\n"
		 "      s: plain text\n      7: seven\n      list: [1, \"1\", a]\n");
	json_t *w = wf->steps[0].with;

	SW_CHECK(json_integer_value(json_object_get(w, "i")) == 42);
	SW_CHECK(json_integer_value(json_object_get(w, "neg")) == -7);
	SW_CHECK(json_integer_value(json_object_get(w, "pos")) == 5);
	SW_CHECK(json_integer_value(json_object_get(w, "hex")) == 31);
	SW_CHECK(json_integer_value(json_object_get(w, "oct")) == 15);
	SW_CHECK(json_integer_value(json_object_get(w, "lead")) == 7);
	SW_CHECK(json_is_real(json_object_get(w, "f")) &&
		 json_real_value(json_object_get(w, "f")) == 1.5);
	SW_CHECK(json_is_real(json_object_get(w, "e")) &&
		 json_real_value(json_object_get(w, "e")) == 1000.0);
	SW_CHECK(json_real_value(json_object_get(w, "dot")) == 0.5);
	SW_CHECK(json_is_true(json_object_get(w, "t")) && json_is_true(json_object_get(w, "T")));
	SW_CHECK(json_is_false(json_object_get(w, "F")));
	SW_CHECK(json_is_null(json_object_get(w, "n")) &&
		 json_is_null(json_object_get(w, "tilde")));
	SW_CHECK(json_is_null(json_object_get(w, "empty")));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "q")), "42"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "sq")), "true"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "tagged")), "12"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "yes")), "yes"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "on")), "on"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "und")), "1_000"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "date")), "2024-01-01"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "s")), "plain text"));
	SW_CHECK(!strcmp(json_string_value(json_object_get(w, "7")), "seven"));
	SW_CHECK(json_integer_value(json_array_get(json_object_get(w, "list"), 0)) == 1);
	SW_CHECK(json_is_string(json_array_get(json_object_get(w, "list"), 1)));
	sw_workflow_free(wf);
}

static void test_from_json(void)
{
	char err[512];
	json_t *j;
	struct sw_workflow *wf;

	j = json_loads("{\"name\": \"t\", \"steps\": [{\"name\": \"a\", \"uses\": \"llm\", "
		       "\"timeout_ms\": 5000, \"backoff_ms\": 0, \"retries\": 1}]}",
		       0, NULL);
	SW_CHECK(j != NULL);
	wf = sw_workflow_from_json(j, err, sizeof(err));
	SW_CHECKF(wf != NULL, "%s", err);
	SW_CHECK(wf->version == 1 && wf->steps[0].timeout_ms == 5000 &&
		 wf->steps[0].backoff_ms == 0 && wf->steps[0].retries == 1);
	SW_CHECK(wf->steps[0].line == 0);
	wf_check_roundtrip(wf, "json");
	sw_workflow_free(wf);
	json_decref(j);

	static const struct {
		const char *json, *err;
	} bad[] = {
	    {"[]", "$: a workflow must be a mapping, got a sequence"},
	    {"{\"name\": \"t\", \"steps\": [{\"name\": \"a\", \"mode\": \"vm\"}]}",
	     "$.steps[0].mode: mode: unknown mode \"vm\""},
	    {"{\"name\": \"t\", \"steps\": [{\"name\": \"a\", \"uses\": \"llm\", "
	     "\"timeout\": \"5s\"}]}",
	     "$.steps[0].timeout: unknown step key \"timeout\""},
	    {"{\"name\": \"t\", \"steps\": [{\"name\": \"a\", \"uses\": \"llm\", "
	     "\"timeout_ms\": \"5s\"}]}",
	     "$.steps[0].timeout_ms: timeout_ms: expected an integer number of milliseconds"},
	    {"{\"name\": \"t\", \"steps\": [{\"name\": \"a\", \"uses\": \"llm\", "
	     "\"timeout_ms\": 0}]}",
	     "$.steps[0].timeout_ms: timeout_ms: 0 is out of range"},
	    {"{\"name\": \"t\", \"steps\": [{\"name\": \"a\", \"uses\": \"llm\", \"with\": "
	     "{\"p\": [\"${{ steps.b.output }}\"]}}, {\"name\": \"b\", \"uses\": \"llm\"}]}",
	     "$.steps[0].with.p[0]: ${{ steps.b.output }}: step \"b\" is a later step"},
	    {"{\"name\": \"t\", \"steps\": [{\"name\": \"a\", \"uses\": \"llm\"}, "
	     "{\"name\": \"a\", \"uses\": \"llm\"}]}",
	     "$.steps[1].name: duplicate step name \"a\""},
	    {"{\"name\": \"t\", \"steps\": []}", "$.steps: steps: a workflow needs at least"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = json_loads(bad[i].json, 0, NULL);
		SW_CHECKF(j != NULL, "%s", bad[i].json);
		wf = sw_workflow_from_json(j, err, sizeof(err));
		SW_CHECKF(wf == NULL, "%s parsed", bad[i].json);
		SW_CHECKF(!strncmp(err, bad[i].err, strlen(bad[i].err)), "got \"%s\" want \"%s\"",
			  err, bad[i].err);
		json_decref(j);
	}
	SW_CHECK(sw_workflow_from_json(NULL, err, sizeof(err)) == NULL);
}

/* artifact: (cli_agent steps): each destination's keys, the value rules of
 * artifact.c at the value's line and column, templates left to the sandbox
 * host, and sw_artifact_check on rendered specs. */
static void test_artifact(void)
{
#define CLI HEAD "  - name: a\n    mode: cli_agent\n    cli_agent: codex\n    artifact: "
	static const struct {
		const char *yaml, *at, *needle;
	} bad[] = {
	    {"{destination: github}", "t.yaml:6:15: ", "destination github needs repo"},
	    {"{destination: github, repo: \"https://x:tok@h.example/o/r.git\"}", "t.yaml:6:43: ",
	     "repo: \"https://x:tok@h.example/o/r.git\" is refused: it must not hold credentials"},
	    {"{destination: github, repo: \"ftp://h/o/r\"}", "t.yaml:6:43: ",
	     "is refused: it is not an https:// (or http://) URL"},
	    {"{destination: github, repo: \"https://h/o/r?x=1\"}", "t.yaml:6:43: ",
	     "must not have a query"},
	    {"{destination: github, repo: \"https://h/\"}", "t.yaml:6:43: ", "no repository path"},
	    {"{destination: github, repo: \"https://h/o/../r\"}", "t.yaml:6:43: ", ". or .. segment"},
	    {"{destination: github, repo: \"https://h:99999/o/r\"}", "t.yaml:6:43: ", "port"},
	    {"{destination: github, repo: \"https://h/o/r\", branch: \"a..b\"}", "t.yaml:6:68: ",
	     "branch: \"a..b\" is refused"},
	    {"{destination: github, repo: \"https://h/o/r\", branch: -x}", "t.yaml:6:68: ",
	     "must not start with"},
	    {"{destination: github, repo: \"https://h/o/r\", branch: x.lock}", "t.yaml:6:68: ",
	     "not a valid branch name"},
	    {"{destination: github, repo: 5}", "t.yaml:6:43: ", "repo: expected a string, got an"},
	    {"{destination: github, repo: \"https://h/o/r\", path: x}", "t.yaml:6:60: ",
	     "\"path\" is not a key of destination github (expected destination, repo, branch)"},
	    {"{destination: s3}", "t.yaml:6:15: ", "destination s3 needs bucket"},
	    {"{destination: s3, bucket: Bad_Bucket}", "t.yaml:6:41: ", "a bucket name holds only"},
	    {"{destination: s3, bucket: ab}", "t.yaml:6:41: ", "3..63 bytes"},
	    {"{destination: s3, bucket: 10.0.0.1}", "t.yaml:6:41: ", "not an IP address"},
	    {"{destination: s3, bucket: b-1, prefix: /abs}", "t.yaml:6:54: ", "must be relative"},
	    {"{destination: s3, bucket: b-1, prefix: a/../b}", "t.yaml:6:54: ", ". or .. component"},
	    {"{destination: s3, bucket: b-1, endpoint: \"http://h:9000/x\"}", "t.yaml:6:56: ",
	     "without a path"},
	    {"{destination: s3, bucket: b-1, endpoint: \"http://u:p@h:9000\"}", "t.yaml:6:56: ",
	     "must not hold credentials"},
	    {"{destination: s3, bucket: b-1, region: EU}", "t.yaml:6:54: ", "a region holds only"},
	    {"{destination: local}", "t.yaml:6:15: ", "destination local needs path"},
	    {"{destination: local, path: ../up}", "t.yaml:6:42: ", ". or .. component"},
	    {"{destination: local, path: /etc}", "t.yaml:6:42: ", "must be relative"},
	    {"{destination: local, path: \"a//b\"}", "t.yaml:6:42: ", "empty component"},
	    {"{destination: local, path: \"a/\"}", "t.yaml:6:42: ", "empty component"},
	    {"{destination: local, path: \"\"}", "t.yaml:6:42: ", "must not be empty"},
	    {"{destination: local, path: \"a\\\\b\"}", "t.yaml:6:42: ", "holds a character"},
	    {"{destination: none, path: x}", "t.yaml:6:35: ",
	     "\"path\" is not a key of destination none (expected destination)"},
	    {"[none]", "t.yaml:6:15: ", "artifact: expected a mapping with a destination"},
	};
	char y[512];
	struct sw_workflow *wf;
	json_t *spec;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(y, sizeof(y), CLI "%s\n", bad[i].yaml);
		expect_err_at((int)i, y, bad[i].at, bad[i].needle);
	}
	wf = parse_ok(CLI "{destination: github, repo: \"http://127.0.0.1:8080/o/r.git\", branch: "
			  "feature/x-1}\n    prompt: p\n");
	spec = json_object_get(wf->steps[0].extra, "artifact");
	SW_CHECK(!strcmp(json_string_value(json_object_get(spec, "branch")), "feature/x-1"));
	sw_workflow_free(wf);
	/* a template is the sandbox host's to check once rendered */
	wf = parse_ok(HEAD "  - {name: a, uses: llm}\n  - name: b\n    mode: cli_agent\n"
			   "    cli_agent: custom\n    run: x\n    prompt: p\n"
			   "    artifact: {destination: s3, bucket: b-1, prefix: "
			   "\"runs/${{ steps.a.output.id }}/\", region: eu-west-1,\n"
			   "               endpoint: \"http://127.0.0.1:9000\"}\n");
	sw_workflow_free(wf);
	expect_err(HEAD "  - name: b\n    mode: cli_agent\n    artifact: {destination: local, "
			"path: \"${{ steps.zz.output }}\"}\n",
		   "t.yaml:5:42: ", "unknown step \"zz\"");
	wf = parse_ok(CLI "{destination: local, path: site/out-1.v2}\n    prompt: p\n");
	sw_workflow_free(wf);
	/* only the agent modes deliver artifacts */
	expect_err(HEAD "  - name: a\n    mode: sandboxed\n    artifact: {destination: none}\n",
		   "t.yaml:5:5: ",
		   "\"artifact\" applies only to cli_agent and cli_agent_jit steps (this step is "
		   "sandboxed)");
	expect_err(HEAD "  - name: a\n    mode: identity_scoped\n    artifact: {destination: none}\n",
		   "t.yaml:5:5: ", "(this step is identity_scoped)");
	wf = parse_ok(HEAD "  - {name: a, mode: cli_agent_jit, artifact: {destination: none}}\n");
	sw_workflow_free(wf);

	/* the rendered spec, as sandboxd checks it */
	{
		static const struct {
			const char *json, *err;
		} cases[] = {
		    {"{\"destination\": \"github\", \"repo\": \"https://h/o/r.git\"}", NULL},
		    {"{\"destination\": \"none\"}", NULL},
		    {"{\"destination\": \"s3\", \"bucket\": \"b-1\", \"prefix\": \"\"}", NULL},
		    {"{\"destination\": \"local\", \"path\": \"a/b\"}", NULL},
		    {"{\"destination\": \"github\", \"repo\": \"https://u:SECRETX@h/o/r\"}",
		     "artifact.repo is refused: it must not hold credentials"},
		    {"{\"destination\": \"local\", \"path\": \"../../etc\"}",
		     "artifact.path is refused: it holds a . or .. component"},
		    {"{\"destination\": \"local\", \"path\": \"a\\u0000b\"}", "holds NUL"},
		    {"{\"destination\": \"local\", \"path\": 5}", "artifact.path is not a string"},
		    {"{\"destination\": \"local\"}", "artifact: destination local needs path"},
		    {"{\"destination\": \"ftp\"}", "artifact.destination is not github"},
		    {"{\"destination\": \"none\", \"x\": \"y\"}",
		     "artifact.x is not a key of this destination (none: destination)"},
		    {"[]", "artifact is not an object"},
		};
		char err[256];

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			json_t *j = json_loads(cases[i].json, JSON_ALLOW_NUL, NULL);
			int rc;

			SW_CHECKF(j != NULL, "%s", cases[i].json);
			err[0] = '\0';
			rc = sw_artifact_check(j, err, sizeof(err));
			if (cases[i].err == NULL)
				SW_CHECKF(rc == 0, "%s: %s", cases[i].json, err);
			else
				SW_CHECKF(rc == -1 && strstr(err, cases[i].err) != NULL &&
						  strstr(err, "SECRETX") == NULL,
					  "%s: got \"%s\"", cases[i].json, err);
			json_decref(j);
		}
	}
#undef CLI
}

/* One warning of wf: it is the only one, and starts with at and holds
 * needle. */
static void expect_warning(const struct sw_workflow *wf, const char *at, const char *needle)
{
	const char *w = json_string_value(json_array_get(wf->warnings, 0));

	SW_CHECKF(json_array_size(wf->warnings) == 1 && w != NULL, "%zu warnings",
		  json_array_size(wf->warnings));
	SW_CHECKF(!strncmp(w, at, strlen(at)) && strstr(w, needle) != NULL,
		  "warning \"%s\", want \"%s\" and \"%s\"", w, at, needle);
}

/* cli_agent steps: the agent, its prompt or run, anti-pattern 2 as a
 * warning (FILE:LINE:COL, and $.path from JSON), the 30m default timeout,
 * the agent keys refused on the other sandbox modes. */
static void test_cli_agent(void)
{
	struct sw_workflow *wf, *wf2;
	char err[512];
	json_t *j;

#define AG HEAD "  - name: a\n    mode: cli_agent\n"
	expect_err(AG "    prompt: p\n", "t.yaml:3:5: ",
		   "step \"a\": a cli_agent step needs cli_agent (claude-code, codex, gemini or "
		   "custom)");
	expect_err(AG "    cli_agent: claude-code\n", "t.yaml:3:5: ",
		   "step \"a\": cli_agent: claude-code needs a prompt (the agent's task)");
	expect_err(AG "    cli_agent: codex\n    prompt: p\n    run: make\n", "t.yaml:7:5: ",
		   "\"run\" applies only to cli_agent: custom (the command line of codex is the "
		   "sandbox host's");
	expect_err(AG "    cli_agent: custom\n    prompt: p\n", "t.yaml:3:5: ",
		   "step \"a\": cli_agent: custom needs run");
	expect_err(AG "    cli_agent: gemini\n    prompt: [p]\n", "t.yaml:6:13: ",
		   "prompt: expected a string");
	expect_err(AG "    cli_agent: gemini\n    prompt: p\n    timeout: 25h\n", "t.yaml:7:14: ",
		   "out of range (1ms..24h)");

	/* a real task: no warning; 30 minutes unless given, up to 24 hours */
	wf = parse_ok(AG "    cli_agent: claude-code\n    prompt: \"build ${{ input.x }}\"\n"
			 "    identity: site\n    variant: claude-code\n");
	SW_CHECK(json_array_size(wf->warnings) == 0);
	SW_CHECK(wf->steps[0].timeout_ms == 30LL * 60 * 1000);
	sw_workflow_free(wf);
	wf = parse_ok(AG "    cli_agent: codex\n    prompt: p\n    timeout: 24h\n");
	SW_CHECK(wf->steps[0].timeout_ms == 24LL * 3600 * 1000);
	sw_workflow_free(wf);
	wf = parse_ok(AG "    cli_agent: custom\n    run: [my-agent, --task]\n    prompt: p\n");
	SW_CHECK(json_array_size(wf->warnings) == 0);
	sw_workflow_free(wf);

	/* anti-pattern 2: registered, with a warning pointing at identity_scoped */
	wf = parse_ok(AG "    cli_agent: claude-code\n    prompt: \"\"\n");
	expect_warning(wf, "t.yaml:6:13: ",
		       "step \"a\": the prompt is empty, so the agent has no task to decide on "
		       "(anti-pattern 2");
	SW_CHECK(strstr(json_string_value(json_array_get(wf->warnings, 0)), "identity_scoped"));
	sw_workflow_free(wf);
	wf = parse_ok(AG "    cli_agent: gemini\n    prompt: \"  \\n\"\n");
	expect_warning(wf, "t.yaml:6:13: ", "the prompt is empty");
	sw_workflow_free(wf);
	wf = parse_ok(AG "    cli_agent: custom\n    run: \"aws s3 cp /workspace s3://b/ --recursive\"\n");
	expect_warning(wf, "t.yaml:5:16: ",
		       "step \"a\": cli_agent: custom runs a fixed command with no prompt, so "
		       "nothing is left for an agent to decide (anti-pattern 2");
	SW_CHECK(strstr(json_string_value(json_array_get(wf->warnings, 0)),
			"run it in mode identity_scoped instead"));
	/* the stored JSON form warns the same, by path */
	j = sw_workflow_to_json(wf);
	wf2 = sw_workflow_from_json(j, err, sizeof(err));
	SW_CHECKF(wf2 != NULL, "%s", err);
	expect_warning(wf2, "$.steps[0].cli_agent: ", "custom runs a fixed command");
	sw_workflow_free(wf2);
	json_decref(j);
	sw_workflow_free(wf);
	/* two steps, two warnings, in order; other modes none */
	wf = parse_ok(HEAD "  - {name: a, mode: cli_agent, cli_agent: codex, prompt: \"\"}\n"
			   "  - {name: b, mode: sandboxed, run: x}\n"
			   "  - {name: c, mode: cli_agent, cli_agent: custom, run: x}\n");
	SW_CHECK(json_array_size(wf->warnings) == 2);
	SW_CHECK(!strncmp(json_string_value(json_array_get(wf->warnings, 0)), "t.yaml:3:", 9));
	SW_CHECK(!strncmp(json_string_value(json_array_get(wf->warnings, 1)), "t.yaml:5:", 9));
	sw_workflow_free(wf);
	wf = parse_ok(HEAD "  - {name: a, uses: llm}\n");
	SW_CHECK(json_is_array(wf->warnings) && json_array_size(wf->warnings) == 0);
	sw_workflow_free(wf);

	/* nothing runs an agent on the other sandbox modes */
	expect_err(HEAD "  - name: a\n    mode: identity_scoped\n    run: x\n    cli_agent: codex\n",
		   "t.yaml:6:5: ",
		   "\"cli_agent\" applies only to cli_agent and cli_agent_jit steps (this step is "
		   "identity_scoped)");
	expect_err(HEAD "  - name: a\n    mode: sandboxed\n    run: x\n    prompt: go\n",
		   "t.yaml:6:5: ", "\"prompt\" applies only to cli_agent and cli_agent_jit steps");
#undef AG
}

static void test_durations(void)
{
	static const struct {
		const char *s;
		int rc;
		int64_t ms;
	} cases[] = {
	    {"500ms", 0, 500},
	    {"30s", 0, 30000},
	    {"5m", 0, 300000},
	    {"1h", 0, 3600000},
	    {"45", 0, 45000},
	    {"0", 0, 0},
	    {"0ms", 0, 0},
	    {"007s", 0, 7000},
	    {"9223372036854775807ms", 0, INT64_MAX},
	    {"9223372036854775807s", -1, 0},
	    {"99999999999999999999", -1, 0},
	    {"", -1, 0},
	    {"s", -1, 0},
	    {"-1s", -1, 0},
	    {"+1s", -1, 0},
	    {" 1s", -1, 0},
	    {"1s ", -1, 0},
	    {"1.5s", -1, 0},
	    {"1d", -1, 0},
	    {"1S", -1, 0},
	    {"1m30s", -1, 0},
	    {"1 s", -1, 0},
	    {"1sec", -1, 0},
	};
	int64_t ms;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms = -42;
		int rc = sw_duration_parse(cases[i].s, &ms);

		SW_CHECKF(rc == cases[i].rc, "\"%s\": rc %d", cases[i].s, rc);
		if (rc == 0)
			SW_CHECKF(ms == cases[i].ms, "\"%s\": %lld", cases[i].s, (long long)ms);
	}
	SW_CHECK(sw_duration_parse(NULL, &ms) == -1);
}

static void test_modes(void)
{
	enum sw_mode m;
	static const char *names[] = {"in_process", "sandboxed", "identity_scoped", "cli_agent",
				      "cli_agent_jit"};

	for (int i = 0; i < SW_MODE_COUNT; i++) {
		SW_CHECK(!strcmp(sw_mode_name((enum sw_mode)i), names[i]));
		SW_CHECK(sw_mode_parse(names[i], &m) == 0 && m == (enum sw_mode)i);
	}
	SW_CHECK(sw_mode_parse("IN_PROCESS", &m) == -1);
	SW_CHECK(sw_mode_parse("", &m) == -1);
	SW_CHECK(sw_mode_parse(NULL, &m) == -1);
	SW_CHECK(!sw_mode_identity_bearing(SW_MODE_IN_PROCESS));
	SW_CHECK(!sw_mode_identity_bearing(SW_MODE_SANDBOXED));
	SW_CHECK(sw_mode_identity_bearing(SW_MODE_IDENTITY_SCOPED));
	SW_CHECK(sw_mode_identity_bearing(SW_MODE_CLI_AGENT));
	SW_CHECK(sw_mode_identity_bearing(SW_MODE_CLI_AGENT_JIT));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s EXAMPLES_DIR\n", argv[0]);
		return 2;
	}
	examples = argv[1];
	test_hello();
	test_portfolio();
	test_broken_files();
	test_structure_errors();
	test_limits();
	test_sandbox_keys();
	test_template_errors();
	test_yaml_level();
	test_core_schema();
	test_from_json();
	test_artifact();
	test_cli_agent();
	test_durations();
	test_modes();
	printf("workflow_parse: ok\n");
	return 0;
}
