/*
 * HTTP for the CLI: libcurl's easy interface (a command line may block).
 * Every answer body is capped; error answers are turned into one line
 * from their {"error": {"code", "message"}} body. The bearer token only
 * ever goes into a request header: no verbose mode, never in a message.
 */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "cli.h"
#include "sse.h"
#include "sw_core.h"

#define CLI_MAX_BODY (64u << 20)   /* an answer larger than this is refused */
#define CLI_MAX_ERRBODY (64u << 10) /* kept of an error answer to a stream */
#define CLI_CONNECT_TIMEOUT 10L     /* seconds */
#define CLI_REQUEST_TIMEOUT 300L    /* seconds, for one non-stream request */

int cli_http_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void cli_http_cleanup(void)
{
	curl_global_cleanup();
}

char *cli_http_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0), *out;

	if (e == NULL)
		return NULL;
	out = strdup(e);
	curl_free(e);
	return out;
}

void cli_resp_free(struct cli_resp *r)
{
	if (r->body != NULL)
		explicit_bzero(r->body, r->len); /* it may hold a new tenant's key */
	free(r->body);
	free(r->message);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

static const char *target_name(enum cli_target t)
{
	switch (t) {
	case CLI_SCHEDULER:
		return "the scheduler";
	case CLI_AUDIT_SVC:
		return "the audit service";
	case CLI_IDENTITY_SVC:
		return "the identity service";
	case CLI_POLICY_SVC:
		return "the policy service";
	}
	return "the server";
}

static const char *target_url(const struct cli_env *env, enum cli_target t)
{
	switch (t) {
	case CLI_SCHEDULER:
		return env->url;
	case CLI_AUDIT_SVC:
		return env->audit_url;
	case CLI_IDENTITY_SVC:
		return env->identity_url;
	case CLI_POLICY_SVC:
		return env->policy_url;
	}
	return env->url;
}

/* The base URL as shown in messages: without any "user:password@". */
static void url_shown(const char *url, char *out, size_t outlen)
{
	const char *host = strstr(url, "://"), *at, *slash;

	host = host != NULL ? host + 3 : url;
	slash = strchr(host, '/');
	at = memchr(host, '@', slash != NULL ? (size_t)(slash - host) : strlen(host));
	if (at != NULL)
		snprintf(out, outlen, "%.*s%s", (int)(host - url), url, at + 1);
	else
		snprintf(out, outlen, "%s", url);
}

/* curl's write callback into a capped struct sw_buf: past the cap (over
 * set) or out of memory, 0 makes curl stop. */
static size_t body_write(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	size_t n = size * nmemb;

	return sw_buf_add(opaque, ptr, n) == 0 ? n : 0;
}

/* Fill resp->code/message from an error body, and errstr with the line. */
static void error_answer(struct cli_resp *resp, enum cli_target t, const char *url,
			 char *errstr, size_t errlen)
{
	json_t *j = NULL, *e;
	const char *code = NULL, *msg = NULL;
	char shown[512], snippet[160];

	if (resp->body != NULL)
		j = json_loadb(resp->body, resp->len, 0, NULL);
	if (json_is_object(j) && json_is_object(e = json_object_get(j, "error"))) {
		code = cli_jstr(e, "code", NULL);
		msg = cli_jstr(e, "message", NULL);
	}
	if (msg != NULL) {
		snprintf(resp->code, sizeof(resp->code), "%s", code ? code : "error");
		resp->message = strdup(msg);
		snprintf(errstr, errlen, "%s (%s, HTTP %ld)", msg, resp->code, resp->status);
	} else {
		url_shown(url, shown, sizeof(shown));
		cli_oneline(resp->body ? resp->body : "", 120, snippet, sizeof(snippet));
		snprintf(errstr, errlen, "%s at %s answered HTTP %ld%s%s", target_name(t), shown,
			 resp->status, snippet[0] ? ": " : "", snippet);
	}
	json_decref(j);
}

static void transport_error(CURLcode cc, const char *cerr, enum cli_target t, const char *url,
			    char *errstr, size_t errlen)
{
	char shown[512];
	const char *why = cerr[0] ? cerr : curl_easy_strerror(cc);

	url_shown(url, shown, sizeof(shown));
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
		snprintf(errstr, errlen, "cannot reach %s at %s: %s", target_name(t), shown, why);
		break;
	default:
		snprintf(errstr, errlen, "request to %s at %s failed: %s", target_name(t), shown,
			 why);
	}
}

/* A handle set up for base + path with the common options. */
static CURL *easy_new(const char *base, const char *path, const char *bearer,
		      struct curl_slist **hdrs, const char *accept, const char *ctype,
		      char *cerr)
{
	char *full = NULL, *auth = NULL, *h;
	CURL *c;

	if ((c = curl_easy_init()) == NULL)
		return NULL;
	if (asprintf(&full, "%s%s", base, path) == -1)
		goto fail;
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CLI_CONNECT_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "sagewai-cli/1");
	cerr[0] = '\0';
	if (asprintf(&h, "Accept: %s", accept) == -1)
		goto fail;
	*hdrs = curl_slist_append(*hdrs, h);
	free(h);
	if (ctype != NULL) {
		if (asprintf(&h, "Content-Type: %s", ctype) == -1)
			goto fail;
		*hdrs = curl_slist_append(*hdrs, h);
		free(h);
	}
	if (bearer != NULL) {
		if (asprintf(&auth, "Authorization: Bearer %s", bearer) == -1)
			goto fail;
		*hdrs = curl_slist_append(*hdrs, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	/* no "Expect: 100-continue" round trip for large workflow files */
	*hdrs = curl_slist_append(*hdrs, "Expect:");
	if (*hdrs == NULL)
		goto fail;
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
	free(full);
	return c;
fail:
	free(full);
	curl_easy_cleanup(c);
	return NULL;
}

int cli_http_call(struct cli_env *env, enum cli_target t, const char *method, const char *path,
		  const char *ctype, const char *body, size_t blen, const char *bearer,
		  struct cli_resp *resp, char *errstr, size_t errlen)
{
	const char *base = target_url(env, t);
	struct curl_slist *hdrs = NULL;
	struct sw_buf b = {.max = CLI_MAX_BODY};
	char cerr[CURL_ERROR_SIZE];
	json_error_t je;
	CURLcode cc;
	CURL *c;
	int rc = -1, over;

	memset(resp, 0, sizeof(*resp));
	c = easy_new(base, path, bearer, &hdrs, "application/json", body ? ctype : NULL, cerr);
	if (c == NULL) {
		snprintf(errstr, errlen, "cannot set up a request (out of memory)");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, CLI_REQUEST_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	over = b.over;
	resp->body = sw_buf_steal(&b, &resp->len);
	if (over) {
		snprintf(errstr, errlen, "the answer of %s is larger than %u bytes", target_name(t),
			 CLI_MAX_BODY);
		goto out;
	}
	if (cc != CURLE_OK) {
		transport_error(cc, cerr, t, base, errstr, errlen);
		goto out;
	}
	if (resp->status < 200 || resp->status > 299) {
		error_answer(resp, t, base, errstr, errlen);
		goto out;
	}
	if (resp->len == 0) {
		resp->json = json_object();
	} else if ((resp->json = json_loadb(resp->body, resp->len, JSON_DECODE_ANY, &je)) ==
		   NULL) {
		snprintf(errstr, errlen, "%s answered HTTP %ld with a body that is not JSON: %s",
			 target_name(t), resp->status, je.text);
		goto out;
	}
	rc = 0;
out:
	curl_slist_free_all(hdrs);
	if (c != NULL)
		curl_easy_cleanup(c);
	return rc;
}

struct stream {
	CURL *c;
	struct cli_sse *sse;
	long status;      /* known once the first body bytes arrive */
	struct sw_buf err; /* the body of an error answer */
	int stopped;      /* the parser callback's positive value */
	int failed;       /* the parser failed: perr says why */
	char perr[256];
};

static size_t stream_write(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct stream *s = opaque;
	size_t n = size * nmemb;
	int rc;

	if (s->status == 0)
		curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->status < 200 || s->status > 299) {
		body_write(ptr, size, nmemb, &s->err); /* past the cap: dropped */
		return n;
	}
	rc = cli_sse_feed(s->sse, ptr, n, s->perr, sizeof(s->perr));
	if (rc > 0) {
		s->stopped = rc;
		return 0;
	}
	if (rc < 0) {
		s->failed = 1;
		return 0;
	}
	return n;
}

int cli_http_stream(struct cli_env *env, const char *path, struct cli_sse *sse, char *errstr,
		    size_t errlen)
{
	return cli_http_stream_at(env, CLI_SCHEDULER, path, env->token, sse, errstr, errlen);
}

int cli_http_stream_at(struct cli_env *env, enum cli_target t, const char *path,
		       const char *bearer, struct cli_sse *sse, char *errstr, size_t errlen)
{
	struct stream s = {.sse = sse, .err = {.max = CLI_MAX_ERRBODY}};
	struct curl_slist *hdrs = NULL;
	struct cli_resp resp;
	char cerr[CURL_ERROR_SIZE];
	CURLcode cc;
	int rc = -1;

	memset(&resp, 0, sizeof(resp));
	s.c = easy_new(target_url(env, t), path, bearer, &hdrs, "text/event-stream", NULL, cerr);
	if (s.c == NULL) {
		snprintf(errstr, errlen, "cannot set up a request (out of memory)");
		goto out;
	}
	curl_easy_setopt(s.c, CURLOPT_WRITEFUNCTION, stream_write);
	curl_easy_setopt(s.c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(s.c, CURLOPT_TCP_KEEPALIVE, 1L);
	cc = curl_easy_perform(s.c);
	if (s.stopped) {
		rc = s.stopped;
		goto out;
	}
	if (s.failed) {
		snprintf(errstr, errlen, "%s", s.perr);
		goto out;
	}
	curl_easy_getinfo(s.c, CURLINFO_RESPONSE_CODE, &resp.status);
	if (cc != CURLE_OK) {
		transport_error(cc, cerr, t, target_url(env, t), errstr, errlen);
		goto out;
	}
	if (resp.status < 200 || resp.status > 299) {
		resp.body = sw_buf_steal(&s.err, &resp.len);
		error_answer(&resp, t, target_url(env, t), errstr, errlen);
		goto out;
	}
	rc = 0;
out:
	cli_resp_free(&resp);
	sw_buf_free(&s.err);
	curl_slist_free_all(hdrs);
	if (s.c != NULL)
		curl_easy_cleanup(s.c);
	return rc;
}

int cli_call_json(struct cli_env *env, enum cli_target t, const char *method, const char *path,
		  json_t *body, const char *bearer, struct cli_resp *resp)
{
	char err[1024], *text = NULL;
	int rc;

	if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
		memset(resp, 0, sizeof(*resp));
		cli_error("out of memory");
		return -1;
	}
	rc = cli_http_call(env, t, method, path, text ? "application/json" : NULL, text,
			   text ? strlen(text) : 0, bearer, resp, err, sizeof(err));
	free(text);
	if (rc == -1)
		cli_error("%s", err);
	return rc;
}

int cli_answer_list(const struct cli_env *env, const struct cli_resp *r, const char *key,
		    const char *who, const char *none, json_t **list)
{
	if (env->json) {
		cli_raw_print(r, stdout);
		return 0;
	}
	if (!json_is_array(*list = json_object_get(r->json, key))) {
		cli_error("%s's answer has no \"%s\" list", who, key);
		return -1;
	}
	if (json_array_size(*list) == 0) {
		printf("%s\n", none);
		return 0;
	}
	return 1;
}
