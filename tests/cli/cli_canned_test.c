/*
 * The sagewai command line against a stand-in scheduler and audit service:
 * a small evhttp server in a thread of this test answers canned JSON (and
 * event streams sent in odd-sized chunks) so that the CLI's output is
 * checked line by line, --watch end to end, error answers turned into one
 * line, and every request's method, path, query, headers and body.
 * Tests against the real scheduler are in tests/e2e.
 *
 *   cli_canned_test PATH_TO_SAGEWAI
 */
#include <pthread.h>
#include <sys/queue.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>

#include "cli_srv.h"

#define TOKEN "tenant-key-77aa88bb-SECRET"
#define ADMIN "admin-token-99cc00dd-SECRET"

/* ---- the stand-in server ------------------------------------------- */

static void reply(struct evhttp_request *req, int status, const char *ctype, const char *body)
{
	cli_srv_reply(req, status, ctype, body);
}

static void reply_json(struct evhttp_request *req, int status, const char *body)
{
	cli_srv_json(req, status, body);
}

static void reply_err(struct evhttp_request *req, int status, const char *code, const char *msg)
{
	cli_srv_err(req, status, code, msg);
}

/* An event stream sent in chunks of awkward sizes, one every 2 ms. */
struct stream {
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	const char *data;
	size_t len, off;
	int n;
	int closed; /* the client went away: req is gone */
	struct event *ev;
};

static void stream_closed(struct evhttp_connection *evcon, void *arg)
{
	struct stream *st = arg;

	(void)evcon;
	st->closed = 1;
}

static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
	static const size_t sizes[] = {1, 5, 2, 17, 3, 40, 7, 11, 64, 1, 1, 29};
	struct stream *st = arg;
	struct timeval tv = {0, 2000};
	size_t n;

	(void)fd;
	(void)what;
	if (st->closed)
		goto done;
	n = sizes[st->n++ % (sizeof(sizes) / sizeof(sizes[0]))];
	if (n > st->len - st->off)
		n = st->len - st->off;
	if (n > 0) {
		struct evbuffer *b = evbuffer_new();

		evbuffer_add(b, st->data + st->off, n);
		evhttp_send_reply_chunk(st->req, b);
		evbuffer_free(b);
		st->off += n;
	}
	if (st->off < st->len) {
		event_add(st->ev, &tv);
		return;
	}
	evhttp_connection_set_closecb(st->evcon, NULL, NULL);
	evhttp_send_reply_end(st->req);
done:
	event_free(st->ev);
	free(st);
}

static void reply_stream(struct evhttp_request *req, const char *data)
{
	struct stream *st = calloc(1, sizeof(*st));
	struct timeval tv = {0, 2000};

	SW_CHECK(st != NULL);
	st->req = req;
	st->evcon = evhttp_request_get_connection(req);
	st->data = data;
	st->len = strlen(data);
	SW_CHECK((st->ev = evtimer_new(cli_srv.base, stream_tick, st)) != NULL);
	evhttp_connection_set_closecb(st->evcon, stream_closed, st);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/event-stream");
	evhttp_send_reply_start(req, 200, "OK");
	event_add(st->ev, &tv);
}

#define T0 "2024-05-01T12:00:00"

#define STEP(name, state, att, extra)                                                        \
	"{\"name\":\"" name "\",\"index\":0,\"mode\":\"in_process\",\"state\":\"" state     \
	"\",\"attempts\":" #att "," extra "}"

/* run-ok: every kind of line end, a keep-alive comment, a repeated state,
 * and the final run object split over two data lines. */
static const char stream_ok[] =
	": hello\r\n\r\n"
	"event: step\r\ndata: " STEP("plan", "dispatched", 1, "\"error\":null,\"started\":null,"
					"\"finished\":null") "\r\n\r\n"
	"event: run\ndata: {\"run_id\":\"run-ok\",\"state\":\"running\"}\n\n"
	"event: step\ndata: " STEP("plan", "running", 1, "\"started\":\"" T0 ".000100Z\"") "\n\n"
	"event: step\rdata: " STEP("plan", "running", 1, "\"started\":\"" T0 ".000100Z\"") "\r\r"
	"event: step\ndata: " STEP("plan", "succeeded", 1, "\"started\":\"" T0 ".000100Z\","
				   "\"finished\":\"" T0 ".001300Z\",\"output\":{\"p\":1}") "\n\n"
	"event: step\ndata: " STEP("write", "pending", 0, "\"error\":null") "\n\n"
	"event: step\ndata: " STEP("write", "running", 1, "\"started\":\"" T0 ".5Z\"") "\n\n"
	"event: step\ndata: " STEP("write", "retrying", 1, "\"error\":\"llm_error: upstream 503\"")
	"\n\n"
	"event: step\ndata: " STEP("write", "running", 2, "\"started\":\"2024-05-01T12:00:01Z\"")
	"\n\n"
	"event: step\ndata: " STEP("write", "succeeded", 2, "\"started\":\"2024-05-01T12:00:01Z\","
				   "\"finished\":\"2024-05-01T14:00:03+02:00\"") "\n\n"
	"event: run\ndata: {\"run_id\":\"run-ok\",\"state\":\"succeeded\",\n"
	"data: \"output\":{\"report\":\"done\",\"n\":2}}\n\n";

static const char stream_fail[] =
	"event: step\ndata: " STEP("plan", "running", 1, "\"started\":\"" T0 ".000100Z\"") "\n\n"
	"event: step\ndata: " STEP("plan", "failed", 1, "\"started\":\"" T0 ".000100Z\","
				   "\"finished\":\"" T0 ".003100Z\",\"error\":\"llm_error: boom\"")
	"\n\n"
	"event: run\ndata: {\"run_id\":\"run-fail\",\"state\":\"failed\","
	"\"error\":\"step plan failed: llm_error: boom\",\"output\":null}\n\n";

/* ends without the run's terminal event; GET says it succeeded */
static const char stream_drop[] =
	"event: step\ndata: " STEP("only", "running", 1, "\"started\":null") "\n\n";

static const char stream_bad[] = "event: step\ndata: {not json\n\n";

/* a cli_agent step's live output: lines cut across chunks, both streams,
 * a terminal escape and a C1 CSI from the sandbox, the cap */
#define OUT(stream, seq, data, trunc)                                                          \
	"event: output\ndata: {\"step\":\"build\",\"step_id\":\"run-out/build/1\",\"stream\":\"" \
	stream "\",\"seq\":" #seq ",\"data\":\"" data "\",\"truncated\":" trunc "}\n\n"
static const char stream_out[] =
	"event: step\ndata: " STEP("build", "running", 1, "\"started\":null") "\n\n"
	OUT("stdout", 0, "writing index.html\\nhalf a ", "false")
	OUT("stdout", 1, "line\\nkey=[REDACTED:ANTHROPIC_API_KEY]\\n", "false")
	OUT("stderr", 0, "warn: \\u001b[31mred\\u001b[0m \\u009b2J\\tend", "false")
	OUT("stdout", 2, "more", "true")
	"event: step\ndata: " STEP("build", "succeeded", 1, "\"started\":\"" T0 ".000100Z\","
				   "\"finished\":\"" T0 ".003100Z\"") "\n\n"
	"event: run\ndata: {\"run_id\":\"run-out\",\"state\":\"succeeded\","
	"\"output\":{\"exit_code\":0}}\n\n";

static const char run_show_body[] =
	"{\"run_id\":\"run-show\",\"workflow\":\"portfolio\",\"version\":2,\"state\":\"failed\","
	"\"input\":{\"brief\":\"x\"},\"output\":null,"
	"\"error\":\"step write failed: llm_error: upstream 503\","
	"\"created\":\"" T0 "Z\",\"started\":\"" T0 ".000Z\",\"finished\":\"" T0
	".5Z\",\"steps\":["
	"{\"name\":\"plan\",\"index\":0,\"mode\":\"in_process\",\"state\":\"succeeded\","
	"\"attempts\":1,\"output\":{\"p\":1},\"error\":null,\"started\":\"" T0 ".000100Z\","
	"\"finished\":\"" T0 ".001300Z\"},"
	"{\"name\":\"write\",\"index\":1,\"mode\":\"in_process\",\"state\":\"failed\","
	"\"attempts\":3,\"output\":null,\"error\":\"llm_error: upstream\\n503\","
	"\"started\":\"2024-05-01T12:00:01Z\",\"finished\":\"2024-05-01T12:00:03Z\"},"
	"{\"name\":\"publish\",\"index\":2,\"mode\":\"sandboxed\",\"state\":\"skipped\","
	"\"attempts\":0,\"output\":null,\"error\":null,\"started\":null,\"finished\":null}]}";

static const char run_drop_body[] =
	"{\"run_id\":\"run-drop\",\"workflow\":\"w\",\"version\":1,\"state\":\"succeeded\","
	"\"input\":{},\"output\":\"fine\",\"error\":null,\"created\":\"" T0 "Z\","
	"\"started\":null,\"finished\":null,\"steps\":[]}";

static const char run_loop_body[] =
	"{\"run_id\":\"run-loop\",\"workflow\":\"w\",\"version\":1,\"state\":\"running\","
	"\"steps\":[]}";

static const char runs_body[] =
	"{\"runs\":[{\"run_id\":\"run-ok\",\"workflow\":\"portfolio\",\"version\":2,"
	"\"state\":\"succeeded\",\"created\":\"" T0 "Z\",\"started\":\"" T0 "Z\","
	"\"finished\":\"2024-05-01T12:00:01.5Z\"},"
	"{\"run_id\":\"run-2\",\"workflow\":\"other\",\"version\":1,\"state\":\"running\","
	"\"created\":\"2024-05-01T12:01:00Z\",\"started\":null,\"finished\":null}]}";

static const char workflows_body[] =
	"{\"workflows\":[{\"name\":\"good\",\"version\":2,\"steps\":3,\"created\":\"" T0 "Z\"},"
	"{\"name\":\"portfolio-extended\",\"version\":11,\"steps\":1,\"created\":null}]}";

#define HDR(type, t, step_id, producer)                                                      \
	"\"header\":{\"event_id\":\"0190\",\"type\":\"" type "\",\"time\":" t ","             \
	"\"tenant\":\"\",\"run_id\":\"run-ok\",\"step_id\":" step_id ",\"trace_id\":\"\","    \
	"\"producer\":\"" producer "\"}"

static const char audit_body[] =
	"{\"run_id\":\"run-ok\",\"events\":["
	"{\"seq\":10,\"topic\":\"sagewai.runs\",\"partition\":0,\"offset\":4,"
	"\"time_us\":1714564800000000,\"event\":{" HDR("run.submitted", "1714564800000000", "null",
						       "sagewai-scheduler")
	",\"workflow\":\"portfolio\",\"workflow_version\":2,\"input\":\"{\\\"brief\\\":\\\"x\\\"}\","
	"\"user\":\"\",\"modes\":[\"in_process\"]}},"
	"{\"seq\":11,\"topic\":\"sagewai.steps\",\"partition\":0,\"offset\":5,"
	"\"time_us\":1,\"event\":{" HDR("step.dispatched", "1714564800000100",
					"\"run-ok/plan/1\"", "sagewai-scheduler")
	",\"step\":\"plan\",\"index\":0,\"mode\":\"in_process\",\"attempt\":1,\"spec\":\"{}\","
	"\"timeout_ms\":30000}},"
	"{\"seq\":12,\"topic\":\"sagewai.steps\",\"partition\":0,\"offset\":6,"
	"\"time_us\":1,\"event\":{" HDR("step.started", "1714564800001000", "\"run-ok/plan/1\"",
					"sagewai-worker")
	",\"step\":\"plan\",\"attempt\":1,\"executor\":\"worker-1\"}},"
	"{\"seq\":13,\"topic\":\"sagewai.steps\",\"partition\":0,\"offset\":7,"
	"\"time_us\":1,\"event\":{" HDR("step.finished", "1714564800002000", "\"run-ok/plan/1\"",
					"sagewai-worker")
	",\"step\":\"plan\",\"attempt\":1,\"status\":\"SUCCEEDED\",\"output\":\"{\\\"p\\\":1}\","
	"\"error\":null,\"duration_us\":1200}},"
	"{\"seq\":14,\"topic\":\"sagewai.runs\",\"partition\":0,\"offset\":8,"
	"\"time_us\":1714564800003000,\"decode_error\":\"unknown fingerprint\"},"
	"{\"seq\":15,\"topic\":\"sagewai.runs\",\"partition\":0,\"offset\":9,"
	"\"time_us\":1,\"event\":{" HDR("run.finished", "1714564800004000", "null",
					"sagewai-scheduler")
	",\"status\":\"FAILED\",\"output\":null,\"error\":\"step write failed\"}},"
	"{\"seq\":16,\"topic\":\"sagewai.audit.checkpoints\",\"partition\":0,\"offset\":1,"
	"\"time_us\":1,\"event\":{" HDR("audit.checkpoint", "1714564800005000",
					"\"run-ok/write/2\"", "sagewai-audit")
	"}},"
	"{\"seq\":17,\"topic\":\"sagewai.sandbox\",\"partition\":0,\"offset\":1,"
	"\"time_us\":1,\"event\":{" HDR("sandbox.egress", "1714564800006000",
					"\"run-ok/site/1\"", "sagewai-sandboxd")
	",\"sandbox_id\":\"0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000\",\"method\":\"CONNECT\","
	"\"target_host\":\"example.com\",\"target_port\":443,\"address\":\"\","
	"\"allowed\":false,\"reason\":\"not_listed\"}},"
	"{\"seq\":18,\"topic\":\"sagewai.sandbox\",\"partition\":0,\"offset\":2,"
	"\"time_us\":1,\"event\":{" HDR("artifact.pushed", "1714564800007000",
					"\"run-ok/site/1\"", "sagewai-sandboxd")
	",\"step\":\"site\",\"sandbox_id\":\"0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000\","
	"\"destination\":\"github\",\"location\":\"https://git.example/site@abc123\","
	"\"files\":2,\"bytes\":1234}},"
	"{\"seq\":19,\"topic\":\"sagewai.credentials\",\"partition\":0,\"offset\":1,"
	"\"time_us\":1,\"event\":{" HDR("credential.decided", "1714564800008000",
					"\"run-ok/site/1\"", "sagewai-policy")
	",\"request_id\":\"0190aaaa-bbbb-7ccc-8ddd-eeeeffff0001\","
	"\"sandbox_id\":\"0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000\",\"step\":\"site\","
	"\"name\":\"GITHUB_TOKEN_X\",\"decision\":\"allow\",\"by\":\"human\","
	"\"rule\":\"new-keys\",\"approver\":\"ops-ann\",\"reason\":\"ok\",\"secret\":\"\"}}]}";

static void handle(struct evhttp_request *req, const struct cli_rq *rq)
{
	const char *path = rq->path, *query = rq->query, *body = rq->body;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int post = cmd == EVHTTP_REQ_POST, get = cmd == EVHTTP_REQ_GET;

	if (post && strcmp(path, "/v1/workflows") == 0) {
		char fname[128] = "workflow.yaml", msg[256];
		struct evkeyvalq q;
		const char *f;

		TAILQ_INIT(&q);
		if (query != NULL && evhttp_parse_query_str(query, &q) == 0 &&
		    (f = evhttp_find_header(&q, "filename")) != NULL)
			snprintf(fname, sizeof(fname), "%s", f);
		evhttp_clear_headers(&q);
		if (strstr(body, "name: good") != NULL) {
			reply_json(req, 201, "{\"name\":\"good\",\"version\":2,\"steps\":3}");
		} else if (strstr(body, "name: warned") != NULL) {
			reply_json(req, 201,
				   "{\"name\":\"warned\",\"version\":1,\"steps\":2,\"warnings\":["
				   "\"w.yaml:6:13: step \\\"a\\\": the prompt is empty\\u001b[2J\","
				   "\"w.yaml:9:16: step \\\"b\\\": cli_agent: custom runs a fixed "
				   "command\"]}");
		} else if (strstr(body, "name: one") != NULL) {
			reply_json(req, 201, "{\"name\":\"one\",\"version\":1,\"steps\":1}");
		} else {
			snprintf(msg, sizeof(msg), "%s:3:7: unknown key \"stpes\"", fname);
			reply_err(req, 400, "invalid_workflow", msg);
		}
	} else if (get && strcmp(path, "/v1/workflows") == 0) {
		reply_json(req, 200, workflows_body);
	} else if (post && strcmp(path, "/v1/runs") == 0) {
		json_t *j = json_loads(body, 0, NULL);
		const char *wf = json_string_value(json_object_get(j, "workflow"));

		if (wf == NULL)
			reply_err(req, 400, "bad_request", "no workflow");
		else if (strcmp(wf, "missing") == 0)
			reply_err(req, 404, "not_found", "no workflow named missing");
		else if (strcmp(wf, "ok") == 0)
			reply_json(req, 201, "{\"run_id\":\"run-ok\"}");
		else if (strcmp(wf, "fail") == 0)
			reply_json(req, 201, "{\"run_id\":\"run-fail\"}");
		else
			reply_json(req, 201, "{\"run_id\":\"run-sub\"}");
		json_decref(j);
	} else if (get && strcmp(path, "/v1/runs") == 0) {
		reply_json(req, 200, runs_body);
	} else if (get && strcmp(path, "/v1/runs/run-ok/events") == 0) {
		reply_stream(req, stream_ok);
	} else if (get && strcmp(path, "/v1/runs/run-fail/events") == 0) {
		reply_stream(req, stream_fail);
	} else if (get && strcmp(path, "/v1/runs/run-drop/events") == 0) {
		reply_stream(req, stream_drop);
	} else if (get && strcmp(path, "/v1/runs/run-loop/events") == 0) {
		reply_stream(req, ": nothing yet\n\n");
	} else if (get && strcmp(path, "/v1/runs/run-out/events") == 0) {
		reply_stream(req, stream_out);
	} else if (get && strcmp(path, "/v1/runs/run-out") == 0) {
		reply_json(req, 200,
			   "{\"run_id\":\"run-out\",\"workflow\":\"site\",\"version\":1,"
			   "\"state\":\"running\",\"steps\":[]}");
	} else if (get && strcmp(path, "/v1/runs/run-bad/events") == 0) {
		reply_stream(req, stream_bad);
	} else if (get && strcmp(path, "/v1/runs/run-show") == 0) {
		reply_json(req, 200, run_show_body);
	} else if (get && strcmp(path, "/v1/runs/run-drop") == 0) {
		reply_json(req, 200, run_drop_body);
	} else if (get && strcmp(path, "/v1/runs/run-loop") == 0) {
		reply_json(req, 200, run_loop_body);
	} else if (get && strcmp(path, "/v1/runs/run-html") == 0) {
		reply(req, 502, "text/html", "<html>\n<b>bad gateway</b>\n</html>\n");
	} else if (post && strcmp(path, "/v1/runs/run-ok/cancel") == 0) {
		reply_err(req, 409, "conflict", "run run-ok already finished");
	} else if (post && strcmp(path, "/v1/runs/run-live/cancel") == 0) {
		reply_json(req, 202, "{\"run_id\":\"run-live\",\"state\":\"running\"}");
	} else if (post && strcmp(path, "/v1/tenants") == 0) {
		const char *a = rq->auth;

		if (a == NULL || strcmp(a, "Bearer " ADMIN) != 0)
			reply_err(req, 401, "unauthorized", "admin token required");
		else
			reply_json(req, 201,
				   "{\"id\":\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\","
				   "\"name\":\"acme\",\"api_key\":\"swk_live_abc123\"}");
	} else if (strcmp(path, "/v1/tenants/acme") == 0 &&
		   evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
		const char *a = rq->auth;

		if (a == NULL || strcmp(a, "Bearer " ADMIN) != 0)
			reply_err(req, 401, "unauthorized", "admin token required");
		else
			reply_json(req, 200,
				   "{\"id\":\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\","
				   "\"name\":\"acme\",\"deleted\":true,\"keys_revoked\":1}");
	} else if (post && strcmp(path, "/v1/keys") == 0) {
		const char *a = rq->auth;

		if (a == NULL || strcmp(a, "Bearer " ADMIN) != 0)
			reply_err(req, 401, "unauthorized", "admin token required");
		else if (strstr(body, "\"user\":\"ghost\"") != NULL)
			reply_err(req, 404, "not_found", "tenant acme has no user 'ghost'");
		else if (strstr(body, "\"user\":\"alice\"") != NULL)
			reply_json(req, 201,
				   "{\"key_id\":\"k2\",\"role\":\"tenant\","
				   "\"api_key\":\"swk_alice_1\",\"tenant_id\":"
				   "\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\",\"user\":\"alice\"}");
		else if (strstr(body, "\"tenant\"") != NULL)
			reply_json(req, 201,
				   "{\"key_id\":\"k3\",\"role\":\"tenant\","
				   "\"api_key\":\"swk_wide_2\",\"tenant_id\":"
				   "\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\",\"user\":\"\"}");
		else
			reply_json(req, 201,
				   "{\"key_id\":\"k1\",\"role\":\"auditor\","
				   "\"api_key\":\"swk_aud_xyz\"}");
	} else if (strcmp(path, "/v1/tenants/acme/users") == 0 && post) {
		reply_json(req, 201,
			   "{\"user_id\":\"0190a1b2-c3d4-7e5f-8a9b-000000000001\","
			   "\"tenant_id\":\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\","
			   "\"name\":\"alice\"}");
	} else if (strcmp(path, "/v1/tenants/acme/users") == 0 && get) {
		reply_json(req, 200,
			   "{\"tenant_id\":\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\",\"users\":["
			   "{\"user_id\":\"0190a1b2-c3d4-7e5f-8a9b-000000000001\",\"name\":\"alice\","
			   "\"created\":\"2024-05-01T12:00:00.000000Z\",\"keys\":2},"
			   "{\"user_id\":\"0190a1b2-c3d4-7e5f-8a9b-000000000002\","
			   "\"name\":\"bob.the-builder\","
			   "\"created\":\"2024-05-02T08:30:00.500000Z\",\"keys\":0}]}");
	} else if (strcmp(path, "/v1/tenants/empty/users") == 0 && get) {
		reply_json(req, 200, "{\"tenant_id\":\"e\",\"users\":[]}");
	} else if (strcmp(path, "/v1/tenants/acme/users/alice") == 0 &&
		   evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
		reply_json(req, 200,
			   "{\"user_id\":\"0190a1b2-c3d4-7e5f-8a9b-000000000001\","
			   "\"tenant_id\":\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\","
			   "\"name\":\"alice\",\"deleted\":true,\"keys_revoked\":2}");
	} else if (strcmp(path, "/v1/tenants/acme/users/ghost") == 0 &&
		   evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
		reply_err(req, 404, "not_found", "no such user");
	} else if (get && strcmp(path, "/v1/audit/runs/run-ok") == 0) {
		reply_json(req, 200, audit_body);
	} else if (get && strcmp(path, "/v1/audit/runs/run-none") == 0) {
		reply_json(req, 200, "{\"run_id\":\"run-none\",\"events\":[]}");
	} else {
		reply_err(req, 404, "not_found", "no such resource");
	}
}

/* The last request received whose path is path (a copy of its fields
 * valid until server_stop), or NULL. */
static struct cli_rq *last_req(const char *method, const char *path)
{
	return cli_srv_last(method, path);
}

static int count_req(const char *method, const char *path)
{
	return cli_srv_count(method, path);
}

/* ---- running the CLI ----------------------------------------------- */

static const char *bin;
static char url[64];
static char tmpdir[] = "/tmp/sagewai-cli-canned-XXXXXX";

/* Run sagewai --url URL --audit-url URL ARGS... (NULL-terminated), with
 * the tenant and admin tokens in the environment. */
static void cli_in(const char *stdin_path, struct cli_out *o, ...)
{
	static char tok[] = "SAGEWAI_TOKEN=" TOKEN, adm[] = "SAGEWAI_ADMIN_TOKEN=" ADMIN;
	char *envp[] = {tok, adm, NULL};
	const char *args[32];
	const char *a;
	va_list ap;
	int n = 0;

	args[n++] = "--url";
	args[n++] = url;
	args[n++] = "--audit-url";
	args[n++] = url;
	va_start(ap, o);
	while ((a = va_arg(ap, const char *)) != NULL && n < 31)
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	cli_runv(bin, args, envp, stdin_path, o);
	/* no token, whatever happened */
	if (strstr(o->out, TOKEN) || strstr(o->err, TOKEN) || strstr(o->out, ADMIN) ||
	    strstr(o->err, ADMIN)) {
		cli_out_dump(args[4], o);
		SW_CHECKF(0, "a token was printed");
	}
}

#define CLI(o, ...) cli_in(NULL, o, __VA_ARGS__, (const char *)NULL)

/* Exit status, and exact stdout / stderr when not NULL. */
static void expect(const char *what, struct cli_out *o, int status, const char *out,
		   const char *err)
{
	cli_expect(what, o, status, out, err);
}

static void write_file(const char *name, const char *text, char *path, size_t n)
{
	cli_write_bytes(tmpdir, name, text, strlen(text), path, n);
}

/* ---- the cases ----------------------------------------------------- */

static void test_workflow(void)
{
	static const char good[] = "name: good\nversion: 2\nsteps:\n  - name: a\n    uses: template\n";
	char gpath[256], bpath[256], opath[256], wpath[256];
	struct cli_out o;
	struct cli_rq *r;

	write_file("good.yaml", good, gpath, sizeof(gpath));
	write_file("bad file.yaml", "name: bad\nsteps:\n  stpes: 1\n", bpath, sizeof(bpath));
	write_file("one.yaml", "name: one\n", opath, sizeof(opath));

	CLI(&o, "workflow", "apply", gpath);
	expect("apply good", &o, 0, "applied good v2 (3 steps)\n", "");
	SW_CHECK((r = last_req("POST", "/v1/workflows")) != NULL);
	SW_CHECKF(r->query && strcmp(r->query, "filename=good.yaml") == 0, "%s", r->query);
	SW_CHECK(r->ctype && strcmp(r->ctype, "application/yaml") == 0);
	SW_CHECK(strcmp(r->body, good) == 0);

	CLI(&o, "workflow", "apply", opath);
	expect("apply one", &o, 0, "applied one v1 (1 step)\n", "");

	/* the scheduler's warnings: registered (exit 0), each on stderr, on one
	 * line without control characters */
	write_file("w.yaml", "name: warned\n", wpath, sizeof(wpath));
	CLI(&o, "workflow", "apply", wpath);
	expect("apply warned", &o, 0, "applied warned v1 (2 steps)\n",
	       "warning: w.yaml:6:13: step \"a\": the prompt is empty [2J\n"
	       "warning: w.yaml:9:16: step \"b\": cli_agent: custom runs a fixed command\n");
	CLI(&o, "--json", "workflow", "apply", wpath);
	SW_CHECKF(o.status == 0 && strstr(o.out, "\"warnings\":[") != NULL && o.err[0] == '\0',
		  "apply warned --json: %d %s%s", o.status, o.out, o.err);
	cli_out_free(&o);

	CLI(&o, "workflow", "apply", bpath);
	expect("apply bad", &o, 1, "", "sagewai: bad file.yaml:3:7: unknown key \"stpes\"\n");
	SW_CHECK((r = last_req("POST", "/v1/workflows")) != NULL);
	SW_CHECKF(strcmp(r->query, "filename=bad%20file.yaml") == 0, "%s", r->query);

	/* standard input has no name: the server's default applies */
	cli_in(bpath, &o, "workflow", "apply", "-", (const char *)NULL);
	expect("apply -", &o, 1, "", "sagewai: workflow.yaml:3:7: unknown key \"stpes\"\n");

	CLI(&o, "--json", "workflow", "apply", gpath);
	expect("apply --json", &o, 0, "{\"name\":\"good\",\"version\":2,\"steps\":3}\n", "");

	CLI(&o, "workflow", "list");
	expect("workflow list", &o, 0,
	       "NAME                VERSION  STEPS  CREATED\n"
	       "good                2        3      2024-05-01 12:00:00.000\n"
	       "portfolio-extended  11       1      -\n",
	       "");
	CLI(&o, "workflow", "list", "--json");
	expect("workflow list --json", &o, 0, NULL, "");
}

static void test_submit(void)
{
	char ipath[256];
	struct cli_out o;
	struct cli_rq *r;
	json_t *j, *want;

	write_file("in.json", "{\"brief\": \"hello\"}\n", ipath, sizeof(ipath));
	{
		char at[300];

		snprintf(at, sizeof(at), "@%s", ipath);
		CLI(&o, "run", "submit", "portfolio", "--version", "2", "--input", at);
	}
	expect("submit", &o, 0, "run-sub\n", "");
	SW_CHECK((r = last_req("POST", "/v1/runs")) != NULL);
	SW_CHECK(r->ctype && strcmp(r->ctype, "application/json") == 0);
	SW_CHECK((j = json_loads(r->body, 0, NULL)) != NULL);
	want = json_pack("{s:s, s:i, s:{s:s}}", "workflow", "portfolio", "version", 2, "input",
			 "brief", "hello");
	SW_CHECKF(json_equal(j, want), "%s", r->body);
	json_decref(j);
	json_decref(want);

	/* no --input: {} and no version */
	cli_in(NULL, &o, "run", "submit", "--input={\"k\":[1]}", "w2", (const char *)NULL);
	expect("submit inline", &o, 0, "run-sub\n", "");
	SW_CHECK((r = last_req("POST", "/v1/runs")) != NULL);
	SW_CHECKF(strcmp(r->body, "{\"workflow\":\"w2\",\"input\":{\"k\":[1]}}") == 0, "%s",
		  r->body);
	CLI(&o, "run", "submit", "w3");
	expect("submit default input", &o, 0, "run-sub\n", "");
	SW_CHECK((r = last_req("POST", "/v1/runs")) != NULL);
	SW_CHECKF(strcmp(r->body, "{\"workflow\":\"w3\",\"input\":{}}") == 0, "%s", r->body);
	/* input from standard input */
	cli_in(ipath, &o, "run", "submit", "w4", "--input", "@-", (const char *)NULL);
	expect("submit @-", &o, 0, "run-sub\n", "");
	SW_CHECK((r = last_req("POST", "/v1/runs")) != NULL);
	SW_CHECKF(strstr(r->body, "\"input\":{\"brief\":\"hello\"}") != NULL, "%s", r->body);

	CLI(&o, "run", "submit", "missing");
	expect("submit missing", &o, 1, "",
	       "sagewai: no workflow named missing (not_found, HTTP 404)\n");
	CLI(&o, "run", "submit", "x", "--json");
	expect("submit --json", &o, 0, "{\"run_id\":\"run-sub\"}\n", "");
}

static void test_watch(void)
{
	struct cli_out o;
	char *line, *save = NULL;
	int n = 0, steps = 0, last_ok = 0;

	CLI(&o, "run", "submit", "ok", "--watch");
	expect("watch ok", &o, 0,
	       "run-ok\n"
	       "  plan        dispatched (attempt 1)\n"
	       "  plan        running (attempt 1)\n"
	       "  plan        succeeded  1.2 ms\n"
	       "  write       running (attempt 1)\n"
	       "  write       retrying (attempt 1 failed: llm_error: upstream 503)\n"
	       "  write       running (attempt 2)\n"
	       "  write       succeeded  2.00 s\n"
	       "run run-ok succeeded\n"
	       "{\n"
	       "  \"report\": \"done\",\n"
	       "  \"n\": 2\n"
	       "}\n",
	       "");

	CLI(&o, "run", "submit", "fail", "--watch");
	expect("watch fail", &o, 1,
	       "run-fail\n"
	       "  plan        running (attempt 1)\n"
	       "  plan        failed     3.0 ms  llm_error: boom\n"
	       "run run-fail failed: step plan failed: llm_error: boom\n",
	       "");

	/* the stream ends early: the run is read, it has succeeded */
	CLI(&o, "run", "watch", "run-drop");
	expect("watch drop", &o, 0,
	       "  only        running (attempt 1)\n"
	       "run run-drop succeeded\n"
	       "\"fine\"\n",
	       "");
	SW_CHECK(count_req("GET", "/v1/runs/run-drop/events") == 1);

	/* a stream that never ends the run: give up after a few reconnects */
	CLI(&o, "run", "watch", "run-loop");
	expect("watch loop", &o, 1, "",
	       "sagewai: the event stream of run run-loop keeps ending before the run does\n");
	SW_CHECK(count_req("GET", "/v1/runs/run-loop/events") == 6);

	/* a step's live output, prefixed per line; escapes defused */
	CLI(&o, "run", "watch", "run-out");
	expect("watch output", &o, 0,
	       "  build       running (attempt 1)\n"
	       "  build       | writing index.html\n"
	       "  build       | half a line\n"
	       "  build       | key=[REDACTED:ANTHROPIC_API_KEY]\n"
	       "  build       ! warn: ?[31mred?[0m ?2J\tend\n"
	       "  build       | more\n"
	       "  build       | [output truncated: the rest is in the step's result]\n"
	       "  build       succeeded  3.0 ms\n"
	       "run run-out succeeded\n"
	       "{\n"
	       "  \"exit_code\": 0\n"
	       "}\n",
	       "");
	/* show --follow: the run as it is, then its stream */
	CLI(&o, "run", "show", "run-out", "--follow");
	SW_CHECKF(o.status == 0 && strstr(o.out, "state     running\n") != NULL &&
		      strstr(o.out, "\nfollowing:\n  build       running (attempt 1)\n") != NULL &&
		      strstr(o.out, "  build       | half a line\n") != NULL &&
		      strstr(o.out, "run run-out succeeded\n") != NULL,
		  "show --follow: %d\n%s%s", o.status, o.out, o.err);
	cli_out_free(&o);
	/* a run that has ended is shown, not followed */
	CLI(&o, "run", "show", "run-show", "--follow");
	SW_CHECK(o.status == 0 && strstr(o.out, "following") == NULL);
	cli_out_free(&o);

	CLI(&o, "run", "watch", "run-bad");
	expect("watch bad", &o, 1, "",
	       "sagewai: event stream: a \"step\" event is not a JSON object: "
	       "string or '}' expected near 'not'\n");

	CLI(&o, "run", "watch", "run-nope");
	expect("watch 404", &o, 1, "", "sagewai: no such resource (not_found, HTTP 404)\n");

	/* --json: the submit answer, then one {"event", "data"} line per event */
	CLI(&o, "--json", "run", "submit", "ok", "--watch");
	SW_CHECK(o.status == 0 && o.err[0] == '\0');
	for (line = strtok_r(o.out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save), n++) {
		json_t *j = json_loads(line, 0, NULL);
		const char *ev = json_string_value(json_object_get(j, "event"));

		SW_CHECKF(j != NULL, "not JSON: %s", line);
		if (n == 0)
			SW_CHECK(strcmp(line, "{\"run_id\":\"run-ok\"}") == 0);
		else
			SW_CHECK(ev != NULL && json_is_object(json_object_get(j, "data")));
		steps += ev != NULL && strcmp(ev, "step") == 0;
		last_ok = ev != NULL && strcmp(ev, "run") == 0 &&
			  strcmp(json_string_value(json_object_get(
					 json_object_get(j, "data"), "state")),
				 "succeeded") == 0;
		json_decref(j);
	}
	SW_CHECKF(steps == 9 && last_ok && n == 12, "steps %d lines %d", steps, n);
	cli_out_free(&o);
}

static void test_show_list_cancel(void)
{
	struct cli_out o;
	char want[512];

	CLI(&o, "run", "show", "run-show");
	expect("run show", &o, 0,
	       "run       run-show\n"
	       "workflow  portfolio v2\n"
	       "state     failed\n"
	       "created   2024-05-01 12:00:00.000\n"
	       "started   2024-05-01 12:00:00.000\n"
	       "finished  2024-05-01 12:00:00.500 (500.0 ms)\n"
	       "error     step write failed: llm_error: upstream 503\n"
	       "input     {\"brief\":\"x\"}\n"
	       "\n"
	       "  STEP     MODE        STATE      ATTEMPTS  DURATION  ERROR\n"
	       "  plan     in_process  succeeded  1         1.2 ms\n"
	       "  write    in_process  failed     3         2.00 s    llm_error: upstream 503\n"
	       "  publish  sandboxed   skipped    0\n",
	       "");
	CLI(&o, "run", "show", "run-drop");
	expect("run show output", &o, 0,
	       "run       run-drop\n"
	       "workflow  w v1\n"
	       "state     succeeded\n"
	       "created   2024-05-01 12:00:00.000\n"
	       "started   -\n"
	       "finished  -\n"
	       "input     {}\n"
	       "\n"
	       "output:\n"
	       "\"fine\"\n",
	       "");
	{
		char body[sizeof(run_show_body) + 1];

		snprintf(body, sizeof(body), "%s\n", run_show_body);
		CLI(&o, "run", "show", "--json", "run-show");
		expect("run show --json", &o, 0, body, "");
	}
	CLI(&o, "run", "show", "run-nope");
	expect("run show 404", &o, 1, "", "sagewai: no such resource (not_found, HTTP 404)\n");
	CLI(&o, "run", "show", "run-html");
	snprintf(want, sizeof(want),
		 "sagewai: the scheduler at %s answered HTTP 502: <html> <b>bad gateway</b> "
		 "</html> \n",
		 url);
	expect("run show 502", &o, 1, "", want);

	CLI(&o, "run", "list");
	expect("run list", &o, 0,
	       "RUN     WORKFLOW      STATE      CREATED                  DURATION\n"
	       "run-ok  portfolio v2  succeeded  2024-05-01 12:00:00.000  1.50 s\n"
	       "run-2   other v1      running    2024-05-01 12:01:00.000\n",
	       "");

	CLI(&o, "run", "cancel", "run-ok");
	expect("cancel finished", &o, 1, "",
	       "sagewai: run run-ok already finished (conflict, HTTP 409)\n");
	CLI(&o, "run", "cancel", "run-live");
	expect("cancel", &o, 0, "cancel requested for run run-live (state running)\n", "");
	SW_CHECK(last_req("POST", "/v1/runs/run-live/cancel") != NULL);
	/* ids are escaped into the path */
	CLI(&o, "run", "show", "a/b c");
	expect("escaped id", &o, 1, NULL, NULL);
	SW_CHECK(last_req("GET", "/v1/runs/a%2Fb%20c") != NULL);
}

static void test_audit_tenant(void)
{
	char want[4096];
	struct cli_out o;
	struct cli_rq *r;

	snprintf(want, sizeof(want),
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n"
		 "%-5s%-25s%-20s%-7s%s\n",
		 "SEQ", "TIME", "TYPE", "STEP", "SUMMARY",
		 "10", "2024-05-01 12:00:00.000", "run.submitted", "-",
		 "workflow portfolio v2, input {\"brief\":\"x\"}",
		 "11", "2024-05-01 12:00:00.000", "step.dispatched", "plan",
		 "attempt 1, in_process, timeout 30000 ms",
		 "12", "2024-05-01 12:00:00.001", "step.started", "plan", "attempt 1 on worker-1",
		 "13", "2024-05-01 12:00:00.002", "step.finished", "plan",
		 "attempt 1 SUCCEEDED in 1.2 ms, output {\"p\":1}",
		 "14", "2024-05-01 12:00:00.003", "(undecodable)", "-",
		 "sagewai.runs: unknown fingerprint",
		 "15", "2024-05-01 12:00:00.004", "run.finished", "-", "FAILED: step write failed",
		 "16", "2024-05-01 12:00:00.005", "audit.checkpoint", "write",
		 "from sagewai-audit", "17", "2024-05-01 12:00:00.006", "sandbox.egress", "site",
		 "sandbox 0190aaaa: CONNECT example.com:443 refused: not_listed", "18",
		 "2024-05-01 12:00:00.007", "artifact.pushed", "site",
		 "github: 2 files, 1234 bytes to https://git.example/site@abc123", "19",
		 "2024-05-01 12:00:00.008", "credential.decided", "site",
		 "GITHUB_TOKEN_X allow by human new-keys ops-ann");
	CLI(&o, "audit", "run", "run-ok");
	expect("audit run", &o, 0, want, "");
	CLI(&o, "audit", "run", "run-none");
	expect("audit run empty", &o, 0, "no audit events for run run-none\n", "");
	CLI(&o, "--json", "audit", "run", "run-ok");
	snprintf(want, sizeof(want), "%s\n", audit_body);
	expect("audit run --json", &o, 0, want, "");

	CLI(&o, "tenant", "create", "acme");
	expect("tenant create", &o, 0,
	       "tenant acme created\n"
	       "id: 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n"
	       "api key: swk_live_abc123\n"
	       "note: this key is shown once and cannot be read back; store it now.\n",
	       "");
	SW_CHECK((r = last_req("POST", "/v1/tenants")) != NULL);
	SW_CHECK(r->auth != NULL && strcmp(r->auth, "Bearer " ADMIN) == 0);
	SW_CHECK(strcmp(r->body, "{\"name\":\"acme\"}") == 0);
	CLI(&o, "tenant", "delete", "acme");
	expect("tenant delete", &o, 0,
	       "tenant acme (0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b) deleted; 1 key(s) revoked\n", "");
	SW_CHECK((r = last_req("DELETE", "/v1/tenants/acme")) != NULL);
	CLI(&o, "key", "create", "--role", "auditor");
	expect("key create", &o, 0,
	       "auditor key: swk_aud_xyz\n"
	       "note: this key is shown once and cannot be read back; store it now.\n",
	       "");
	SW_CHECK((r = last_req("POST", "/v1/keys")) != NULL);
	SW_CHECK(strcmp(r->body, "{\"role\":\"auditor\"}") == 0);
}

static void test_users(void)
{
	char want[2048];
	struct cli_out o;
	struct cli_rq *r;

	CLI(&o, "user", "create", "alice", "--tenant", "acme");
	expect("user create", &o, 0,
	       "user alice created\n"
	       "id: 0190a1b2-c3d4-7e5f-8a9b-000000000001\n"
	       "tenant: 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n",
	       "");
	SW_CHECK((r = last_req("POST", "/v1/tenants/acme/users")) != NULL);
	SW_CHECK(strcmp(r->body, "{\"name\":\"alice\"}") == 0);
	SW_CHECK(r->auth != NULL && strcmp(r->auth, "Bearer " ADMIN) == 0);
	CLI(&o, "--json", "user", "create", "alice", "--tenant=acme");
	SW_CHECK(o.status == 0 && strstr(o.out, "\"user_id\"") != NULL);
	cli_out_free(&o);

	snprintf(want, sizeof(want),
		 "%-17s%-38s%-6s%s\n"
		 "%-17s%-38s%-6s%s\n"
		 "%-17s%-38s%-6s%s\n",
		 "NAME", "ID", "KEYS", "CREATED",
		 "alice", "0190a1b2-c3d4-7e5f-8a9b-000000000001", "2", "2024-05-01 12:00:00.000",
		 "bob.the-builder", "0190a1b2-c3d4-7e5f-8a9b-000000000002", "0",
		 "2024-05-02 08:30:00.500");
	CLI(&o, "user", "list", "--tenant", "acme");
	expect("user list", &o, 0, want, "");
	CLI(&o, "user", "list", "--tenant", "empty");
	expect("user list empty", &o, 0, "no users\n", "");

	CLI(&o, "user", "delete", "alice", "--tenant", "acme");
	expect("user delete", &o, 0,
	       "user alice (0190a1b2-c3d4-7e5f-8a9b-000000000001) deleted; 2 key(s) revoked\n", "");
	SW_CHECK(last_req("DELETE", "/v1/tenants/acme/users/alice") != NULL);
	CLI(&o, "user", "delete", "ghost", "--tenant", "acme");
	expect("user delete missing", &o, 1, "",
	       "sagewai: no such user (not_found, HTTP 404)\n");
	/* names and tenants are escaped into the path */
	CLI(&o, "user", "delete", "a/b", "--tenant", "x y");
	SW_CHECK(o.status == 1);
	cli_out_free(&o);
	SW_CHECK(last_req("DELETE", "/v1/tenants/x%20y/users/a%2Fb") != NULL);

	CLI(&o, "key", "create", "--tenant", "acme", "--user", "alice");
	expect("key create --user", &o, 0,
	       "key of user alice of tenant 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b: swk_alice_1\n"
	       "note: this key is shown once and cannot be read back; store it now.\n",
	       "");
	SW_CHECK((r = last_req("POST", "/v1/keys")) != NULL);
	SW_CHECK(strcmp(r->body, "{\"tenant\":\"acme\",\"user\":\"alice\"}") == 0);
	CLI(&o, "key", "create", "--tenant", "acme");
	expect("key create --tenant", &o, 0,
	       "key of tenant 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b: swk_wide_2\n"
	       "note: this key is shown once and cannot be read back; store it now.\n",
	       "");
	SW_CHECK((r = last_req("POST", "/v1/keys")) != NULL);
	SW_CHECK(strcmp(r->body, "{\"tenant\":\"acme\"}") == 0);
	CLI(&o, "key", "create", "--tenant", "acme", "--user", "ghost");
	expect("key create of a missing user", &o, 1, "",
	       "sagewai: tenant acme has no user 'ghost' (not_found, HTTP 404)\n");
	CLI(&o, "--json", "key", "create", "--tenant", "acme", "--user", "alice");
	SW_CHECK(o.status == 0 && strstr(o.out, "\"api_key\":\"swk_alice_1\"") != NULL);
	cli_out_free(&o);
}

/* Every request to the scheduler carried the tenant key (the admin token
 * only where it belongs). */
static void test_auth(void)
{
	int i, n = 0;

	pthread_mutex_lock(&cli_srv.mu);
	for (i = 0; i < cli_srv.nreqs; i++) {
		struct cli_rq *r = &cli_srv.reqs[i];
		const char *want = strncmp(r->path, "/v1/tenants", 11) == 0 ||
						   strcmp(r->path, "/v1/keys") == 0
					   ? "Bearer " ADMIN
					   : "Bearer " TOKEN;

		SW_CHECKF(r->auth != NULL && strcmp(r->auth, want) == 0, "%s %s: %s", r->method,
			  r->path, r->auth ? "wrong token" : "no token");
		n++;
	}
	pthread_mutex_unlock(&cli_srv.mu);
	SW_CHECK(n > 30);
}

int main(int argc, char **argv)
{
	char cmd[300];

	if (argc != 2) {
		fprintf(stderr, "usage: cli_canned_test PATH_TO_SAGEWAI\n");
		return 2;
	}
	bin = argv[1];
	SW_CHECK(mkdtemp(tmpdir) != NULL);
	cli_srv_start(handle);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", cli_srv.port);
	test_workflow();
	test_submit();
	test_watch();
	test_show_list_cancel();
	test_audit_tenant();
	test_users();
	test_auth();
	cli_srv_stop();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	SW_CHECK(system(cmd) == 0);
	printf("cli canned-server test ok\n");
	return 0;
}
