/*
 * http_server: a struct sw_http on an ephemeral loopback port, driven by
 * this test's own event loop; a client thread talks to it with libcurl.
 * Covers /healthz (ok and 503), /metrics exposition, 404 JSON for unknown
 * paths, exact and prefix routes, 405 from a handler, malformed JSON ->
 * 400 JSON, an oversized body -> 413 JSON with the connection still usable,
 * a body beyond evhttp's own limit -> 413 JSON at once, and that the server keeps
 * answering after each refusal. A second server on the same port fails.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "sw_http.h"
#include "sw_test.h"

#define MAX_BODY 1024

static atomic_int unhealthy;
static int port;
static int done_pipe[2];

struct reply {
	long status;
	char *body;
	size_t len;
	char ctype[128];
	char allow[64];
};

/* ---- server side (event loop thread) ---------------------------------- */

static int health(void *opaque)
{
	return atomic_load((atomic_int *)opaque);
}

static void echo(struct evhttp_request *req, void *opaque)
{
	struct sw_metrics *m = opaque;
	json_t *in;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		sw_http_reply_method_not_allowed(req, "POST");
		return;
	}
	if ((in = sw_http_body_json(req)) == NULL)
		return;
	sw_metrics_counter_add(m, "test_echo_total", "Echo requests answered.", 1);
	sw_http_reply_json(req, 201, json_pack("{s:o}", "got", in));
}

static void item(struct evhttp_request *req, void *opaque)
{
	sw_http_reply_json(req, 200, json_pack("{s:s,s:s}", "route", (const char *)opaque,
					       "path", sw_http_path(req)));
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* ---- client side ------------------------------------------------------ */

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct reply *r = arg;
	char *b = realloc(r->body, r->len + sz * n + 1);

	SW_CHECK(b != NULL);
	memcpy(b + r->len, p, sz * n);
	r->body = b;
	r->len += sz * n;
	b[r->len] = '\0';
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = sz * n;

	if (len > 14 && strncasecmp(p, "Content-Type: ", 14) == 0)
		snprintf(r->ctype, sizeof(r->ctype), "%.*s", (int)(len - 16), p + 14);
	if (len > 7 && strncasecmp(p, "Allow: ", 7) == 0)
		snprintf(r->allow, sizeof(r->allow), "%.*s", (int)(len - 9), p + 7);
	return len;
}

/* One request on handle c (connections are reused between calls). */
static void request(CURL *c, const char *method, const char *path, const char *body,
		    size_t blen, const char *expect, struct reply *r)
{
	struct curl_slist *hdrs = NULL;
	char url[256];
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	curl_easy_reset(c);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	hdrs = curl_slist_append(hdrs, expect != NULL ? expect : "Expect:");
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	SW_CHECKF(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->body == NULL)
		r->body = strdup("");
}

/* The reply is a JSON error object with this code; returns nothing,
 * fails the test otherwise. */
static void check_error(const struct reply *r, long status, const char *code)
{
	json_error_t jerr;
	json_t *j = json_loads(r->body, 0, &jerr);
	const char *got_code = NULL, *msg = NULL;

	SW_CHECKF(r->status == status, "status %ld, want %ld (%s)", r->status, status, r->body);
	SW_CHECKF(j != NULL, "not JSON: %s", r->body);
	SW_CHECKF(json_unpack(j, "{s:{s:s,s:s}}", "error", "code", &got_code, "message", &msg) ==
			  0,
		  "no error object: %s", r->body);
	SW_CHECKF(strcmp(got_code, code) == 0, "code %s, want %s", got_code, code);
	SW_CHECK(strlen(msg) > 0);
	SW_CHECKF(strcmp(r->ctype, "application/json") == 0, "content-type %s", r->ctype);
	json_decref(j);
}

static json_t *check_json(const struct reply *r, long status)
{
	json_error_t jerr;
	json_t *j = json_loads(r->body, 0, &jerr);

	SW_CHECKF(r->status == status, "status %ld, want %ld (%s)", r->status, status, r->body);
	SW_CHECKF(j != NULL, "not JSON: %s", r->body);
	SW_CHECKF(strcmp(r->ctype, "application/json") == 0, "content-type %s", r->ctype);
	return j;
}

static void healthz_ok(CURL *c)
{
	struct reply r;
	json_t *j;

	request(c, "GET", "/healthz", NULL, 0, NULL, &r);
	j = check_json(&r, 200);
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "status")), "ok") == 0);
	json_decref(j);
	free(r.body);
}

static void *client(void *arg)
{
	CURL *c = curl_easy_init();
	struct reply r;
	json_t *j;
	char *big;
	long connects;

	(void)arg;
	SW_CHECK(c != NULL);

	healthz_ok(c);
	atomic_store(&unhealthy, 1);
	request(c, "GET", "/healthz", NULL, 0, NULL, &r);
	check_error(&r, 503, "unhealthy");
	free(r.body);
	atomic_store(&unhealthy, 0);
	request(c, "POST", "/healthz", "{}", 2, NULL, &r);
	check_error(&r, 405, "method_not_allowed");
	free(r.body);

	/* Unknown paths, including a near miss of the prefix route. */
	request(c, "GET", "/nope", NULL, 0, NULL, &r);
	check_error(&r, 404, "not_found");
	free(r.body);
	request(c, "GET", "/v1/items", NULL, 0, NULL, &r);
	check_error(&r, 404, "not_found");
	free(r.body);

	/* Routes: JSON echo, prefix, exact beating prefix, handler's 405. */
	request(c, "POST", "/v1/echo?x=1", "{\"a\":[1,\"\\u00e9\"]}", 18, NULL, &r);
	j = check_json(&r, 201);
	SW_CHECK(json_integer_value(json_array_get(json_object_get(json_object_get(j, "got"),
								  "a"),
						 0)) == 1);
	json_decref(j);
	free(r.body);
	request(c, "GET", "/v1/items/abc/def", NULL, 0, NULL, &r);
	j = check_json(&r, 200);
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "route")), "prefix") == 0);
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "path")), "/v1/items/abc/def") ==
		 0);
	json_decref(j);
	free(r.body);
	request(c, "GET", "/v1/items/special", NULL, 0, NULL, &r);
	j = check_json(&r, 200);
	SW_CHECK(strcmp(json_string_value(json_object_get(j, "route")), "exact") == 0);
	json_decref(j);
	free(r.body);
	request(c, "GET", "/v1/echo", NULL, 0, NULL, &r);
	check_error(&r, 405, "method_not_allowed");
	SW_CHECKF(strcmp(r.allow, "POST") == 0, "allow '%s'", r.allow);
	free(r.body);

	/* Bad bodies. */
	request(c, "POST", "/v1/echo", "{\"a\":", 5, NULL, &r);
	check_error(&r, 400, "bad_json");
	free(r.body);
	request(c, "POST", "/v1/echo", "{\"a\":1,\"a\":2}", 13, NULL, &r);
	check_error(&r, 400, "bad_json");
	free(r.body);
	request(c, "POST", "/v1/echo", "", 0, NULL, &r);
	check_error(&r, 400, "bad_request");
	free(r.body);

	/* Over our cap: JSON 413, and the same connection keeps working. */
	SW_CHECK((big = malloc(200000)) != NULL);
	memset(big, ' ', 200000);
	big[0] = '[';
	big[MAX_BODY - 1] = ']';
	request(c, "POST", "/v1/echo", big, MAX_BODY, NULL, &r);
	j = check_json(&r, 201); /* exactly at the cap is accepted */
	json_decref(j);
	free(r.body);
	big[MAX_BODY - 1] = ' ';
	big[MAX_BODY] = ']';
	request(c, "POST", "/v1/echo", big, MAX_BODY + 1, NULL, &r);
	check_error(&r, 413, "too_large");
	free(r.body);
	request(c, "GET", "/healthz", NULL, 0, NULL, &r);
	SW_CHECK(r.status == 200);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
	SW_CHECKF(connects == 0, "connection not reused after 413 (%ld new)", connects);
	free(r.body);

	/* Far over: refused from the declared length before reading (Expect
	 * lets the client hear it before sending); JSON 413, then the server
	 * still serves. */
	request(c, "POST", "/v1/echo", big, 200000, "Expect: 100-continue", &r);
	check_error(&r, 413, "too_large");
	free(r.body);
	healthz_ok(c);

	/* Metrics exposition. */
	request(c, "GET", "/metrics", NULL, 0, NULL, &r);
	SW_CHECK(r.status == 200);
	SW_CHECKF(strncmp(r.ctype, "text/plain; version=0.0.4", 25) == 0, "ctype %s", r.ctype);
	SW_CHECKF(strstr(r.body, "# HELP test_echo_total Echo requests answered.\n"
				 "# TYPE test_echo_total counter\n"
				 "test_echo_total 2\n") != NULL,
		  "%s", r.body);
	SW_CHECKF(strstr(r.body, "# HELP test_build_info Build marker.\n"
				 "# TYPE test_build_info gauge\n"
				 "test_build_info 1\n") != NULL,
		  "%s", r.body);
	SW_CHECKF(strstr(r.body, "# TYPE sw_http_too_large_total counter\n"
				 "sw_http_too_large_total 2\n") != NULL,
		  "%s", r.body);
	SW_CHECK(strstr(r.body, "# TYPE sw_http_requests_total counter\n") != NULL);
	free(r.body);

	free(big);
	curl_easy_cleanup(c);
	SW_CHECK(write(done_pipe[1], "x", 1) == 1);
	return NULL;
}

int main(void)
{
	struct event_base *base;
	struct sw_metrics *m;
	struct sw_http *h, *h2;
	struct event *done;
	char err[256];
	pthread_t th;

	SW_CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == 0);
	SW_CHECK((base = event_base_new()) != NULL);
	SW_CHECK((m = sw_metrics_new()) != NULL);
	sw_metrics_gauge_set(m, "test_build_info", "Build marker.", 1);
	h = sw_http_new(base, "127.0.0.1", 0, MAX_BODY, m, health, &unhealthy, err, sizeof(err));
	SW_CHECKF(h != NULL, "%s", err);
	port = sw_http_port(h);
	SW_CHECK(port > 0 && sw_http_evhttp(h) != NULL);

	err[0] = '\0';
	h2 = sw_http_new(base, "127.0.0.1", port, MAX_BODY, NULL, NULL, NULL, err, sizeof(err));
	SW_CHECK(h2 == NULL);
	SW_CHECKF(strstr(err, "cannot listen") != NULL, "%s", err);

	SW_CHECK(sw_http_route(h, "/v1/echo", echo, m) == 0);
	SW_CHECK(sw_http_route(h, "/v1/items/*", item, "prefix") == 0);
	SW_CHECK(sw_http_route(h, "/v1/items/special", item, "exact") == 0);
	SW_CHECK(sw_http_route(h, "/v1/echo", echo, m) == -1);
	SW_CHECK(sw_http_route(h, "/healthz", echo, m) == -1);
	SW_CHECK(sw_http_route(h, "relative", echo, m) == -1);

	SW_CHECK(pipe(done_pipe) == 0);
	done = event_new(base, done_pipe[0], EV_READ, on_done, base);
	SW_CHECK(done != NULL && event_add(done, NULL) == 0);
	SW_CHECK(pthread_create(&th, NULL, client, NULL) == 0);
	SW_CHECK(event_base_dispatch(base) == 0);
	SW_CHECK(pthread_join(th, NULL) == 0);

	event_free(done);
	close(done_pipe[0]);
	close(done_pipe[1]);
	sw_http_destroy(h);
	sw_metrics_destroy(m);
	event_base_free(base);
	curl_global_cleanup();
	printf("http_server: ok\n");
	return 0;
}
