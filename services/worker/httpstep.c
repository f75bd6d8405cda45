/*
 * httpstep.c: libcurl's multi interface driven by the event loop (the
 * "hiperfifo" pattern), and the http step kind.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to call it back (CURLMOPT_TIMERFUNCTION); we keep one libevent event per
 * socket (stored with curl_multi_assign) and one timer, hand every
 * readiness to curl_multi_socket_action and then collect finished
 * transfers. Name resolution uses curl's threaded resolver, so nothing
 * here blocks. A transfer is removed only from loop callbacks, never from
 * inside a curl callback.
 *
 * Where an http step may connect (sw_addr.h) is judged on the address curl is
 * about to connect to, after name resolution: CURLOPT_OPENSOCKETFUNCTION
 * runs for every connection it opens (each address tried, each redirect
 * hop), so a name that resolves to a public address when checked and to
 * 127.0.0.1 when connected cannot slip through; CURLOPT_PREREQFUNCTION runs
 * before every request, on a new or a reused connection, so a connection
 * left in the multi's pool by the llm kind (whose operator-set base URL is
 * exempt) is not reused by an http step either. Redirects are followed,
 * WORKER_HTTP_REDIRECTS at most, over http and https only, and no proxy
 * is taken from the environment.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "worker.h"

static void check_multi_info(struct worker_env *env)
{
	struct worker_job *j;
	CURLMsg *msg;
	long status;
	int left;

	while ((msg = curl_multi_info_read(env->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		j = NULL;
		status = 0;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		if (j == NULL || j->easy != msg->easy_handle)
			continue;
		if (j->kind == KIND_LLM)
			worker_llm_done(j, msg->data.result, status);
		else
			worker_http_done(j, msg->data.result, status);
		/* the done handlers finish the job, which removes the handle */
		worker_curl_abort(j);
	}
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct worker_env *env = arg;
	int action = 0, running;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(env->multi, fd, action, &running);
	check_multi_info(env);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct worker_env *env = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(env->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(env);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct worker_env *env = userp;
	struct event *ev = socketp;
	short kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (ev != NULL) {
			event_free(ev);
			curl_multi_assign(env->multi, s, NULL);
		}
		return 0;
	}
	kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
		       ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	if (ev != NULL) {
		event_del(ev);
		event_assign(ev, env->base, s, kind, on_socket_event, env);
	} else {
		if ((ev = event_new(env->base, s, kind, on_socket_event, env)) == NULL)
			return -1;
		curl_multi_assign(env->multi, s, ev);
	}
	return event_add(ev, NULL) == 0 ? 0 : -1;
}

/* curl asks to be called back in timeout_ms (-1: never); 0 means at once,
 * which must go through the loop: socket_action may not be re-entered. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct worker_env *env = userp;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0)
		return evtimer_del(env->curl_timer) == 0 ? 0 : -1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(env->curl_timer, &tv) == 0 ? 0 : -1;
}

int worker_curl_init(struct worker_env *env, char *errstr, size_t errlen)
{
	if ((env->multi = curl_multi_init()) == NULL ||
	    (env->curl_timer = evtimer_new(env->base, on_timer, env)) == NULL) {
		snprintf(errstr, errlen, "cannot set up libcurl multi");
		return -1;
	}
	curl_multi_setopt(env->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(env->multi, CURLMOPT_SOCKETDATA, env);
	curl_multi_setopt(env->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(env->multi, CURLMOPT_TIMERDATA, env);
	return 0;
}

void worker_curl_cleanup(struct worker_env *env)
{
	if (env->multi != NULL)
		curl_multi_cleanup(env->multi);
	env->multi = NULL;
	if (env->curl_timer != NULL)
		event_free(env->curl_timer);
	env->curl_timer = NULL;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct worker_job *j = userp;

	if (sw_buf_add(&j->resp, data, size * nmemb) == -1)
		return 0; /* CURLE_WRITE_ERROR; resp.over tells when too long */
	return size * nmemb;
}

void worker_curl_common(struct worker_job *j, size_t resp_max)
{
	CURL *e = j->easy;

	j->resp.max = resp_max;
	j->curl_err[0] = '\0';
	j->refused[0] = '\0';
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)j);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->curl_err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "sagewai-worker");
	if (j->x->timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)j->x->timeout_ms);
}

int worker_curl_add(struct worker_job *j)
{
	return curl_multi_add_handle(j->env->multi, j->easy) == CURLM_OK ? 0 : -1;
}

void worker_curl_abort(struct worker_job *j)
{
	if (j->easy != NULL) {
		curl_multi_remove_handle(j->env->multi, j->easy);
		curl_easy_cleanup(j->easy);
		j->easy = NULL;
	}
	if (j->hdrs != NULL) {
		curl_slist_free_all(j->hdrs);
		j->hdrs = NULL;
	}
	free(j->req_body);
	j->req_body = NULL;
	sw_buf_free(&j->resp);
}

/* The response body as a JSON value: parsed JSON, else a string; NULL when
 * it is neither JSON nor UTF-8 text. */
static json_t *body_value(const struct sw_buf *b)
{
	json_t *v;

	if (b->len == 0)
		return json_string("");
	if ((v = json_loadb(b->p, b->len, JSON_DECODE_ANY, NULL)) != NULL)
		return v;
	return json_stringn(b->p, b->len);
}

/* A short, printable excerpt of a body for error messages. */
static void excerpt(const struct sw_buf *b, char *out, size_t outlen)
{
	size_t i, n = 0;

	for (i = 0; i < b->len && n + 1 < outlen && n < 200; i++) {
		unsigned char c = (unsigned char)b->p[i];

		out[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	/* do not cut a UTF-8 sequence */
	while (n > 0 && ((unsigned char)out[n - 1] & 0x80) && i < b->len &&
	       ((unsigned char)b->p[i] & 0xc0) == 0x80) {
		n--;
		i--;
	}
	out[n] = '\0';
}

static int header_ok(const char *name, const char *value)
{
	const char *p;

	if (*name == '\0')
		return 0;
	for (p = name; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == ':' || (unsigned char)*p >= 0x7f)
			return 0;
	return strpbrk(value, "\r\n") == NULL;
}

/* 1 when the http step j must not connect to sa; the first such
 * destination is kept in j->refused for the step's error. */
static int dest_refused(struct worker_job *j, const struct sockaddr *sa, socklen_t len)
{
	char name[INET6_ADDRSTRLEN + 16];
	const char *why;

	if ((why = sw_addr_check(&j->env->http_allow, sa, len, name, sizeof(name))) == NULL)
		return 0;
	if (j->refused[0] == '\0')
		snprintf(j->refused, sizeof(j->refused),
			 "destination %s is not allowed (%s); operators can allow it with "
			 "SAGEWAI_HTTP_ALLOW",
			 name, why);
	return 1;
}

/* CURLOPT_OPENSOCKETFUNCTION: the address of each connection, before it
 * is made. */
static curl_socket_t open_socket_cb(void *clientp, curlsocktype purpose,
				    struct curl_sockaddr *a)
{
	(void)purpose;
	if (dest_refused(clientp, &a->addr, a->addrlen))
		return CURL_SOCKET_BAD;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* CURLOPT_PREREQFUNCTION: the peer of the connection, new or reused,
 * before each request is sent. */
static int prereq_cb(void *clientp, char *peer_ip, char *local_ip, int peer_port, int local_port)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;

	(void)local_ip;
	(void)local_port;
	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	if (peer_port < 0 || peer_port > 65535)
		peer_port = 0;
	if (peer_ip != NULL && inet_pton(AF_INET, peer_ip, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		s4.sin_port = htons((uint16_t)peer_port);
		return dest_refused(clientp, (struct sockaddr *)&s4, sizeof(s4))
			   ? CURL_PREREQFUNC_ABORT
			   : CURL_PREREQFUNC_OK;
	}
	if (peer_ip != NULL && inet_pton(AF_INET6, peer_ip, &s6.sin6_addr) == 1) {
		s6.sin6_family = AF_INET6;
		s6.sin6_port = htons((uint16_t)peer_port);
		return dest_refused(clientp, (struct sockaddr *)&s6, sizeof(s6))
			   ? CURL_PREREQFUNC_ABORT
			   : CURL_PREREQFUNC_OK;
	}
	/* not an IP peer (a unix socket): never for a step */
	return dest_refused(clientp, NULL, 0) ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

void worker_http_start(struct worker_job *j)
{
	static const char *const methods[] = {"POST", "GET", "PUT", "PATCH", "DELETE", NULL};
	json_t *url, *method, *body, *headers, *v;
	const char *m = "POST", *name;
	char *line;
	size_t i;

	url = json_object_get(j->with, "url");
	if (!json_is_string(url) || (strncasecmp(json_string_value(url), "http://", 7) != 0 &&
				     strncasecmp(json_string_value(url), "https://", 8) != 0)) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "bad_input: with.url must be an http:// or https:// URL");
		return;
	}
	method = json_object_get(j->with, "method");
	if (method != NULL) {
		for (i = 0; methods[i] && json_is_string(method); i++)
			if (strcasecmp(json_string_value(method), methods[i]) == 0)
				break;
		if (!json_is_string(method) || methods[i] == NULL) {
			worker_exec_finish(j, SW_STEP_FAILED, NULL,
					   "bad_input: with.method must be one of POST, GET, PUT, "
					   "PATCH, DELETE");
			return;
		}
		m = methods[i];
	}
	headers = json_object_get(j->with, "headers");
	if (headers != NULL && !json_is_object(headers)) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "bad_input: with.headers must be an object of strings");
		return;
	}
	if ((j->easy = curl_easy_init()) == NULL)
		goto oom;
	json_object_foreach(headers, name, v) {
		if (!json_is_string(v) || !header_ok(name, json_string_value(v))) {
			worker_exec_finish(j, SW_STEP_FAILED, NULL,
					   "bad_input: with.headers.%.60s is not a valid header",
					   name);
			return;
		}
		if (asprintf(&line, "%s: %s", name, json_string_value(v)) == -1)
			goto oom;
		j->hdrs = curl_slist_append(j->hdrs, line);
		free(line);
		if (j->hdrs == NULL)
			goto oom;
	}
	body = json_object_get(j->with, "body");
	if (body != NULL) {
		if ((j->req_body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
			goto oom;
		if (json_object_get(headers, "Content-Type") == NULL &&
		    json_object_get(headers, "content-type") == NULL &&
		    (j->hdrs = curl_slist_append(j->hdrs, "Content-Type: application/json")) ==
			NULL)
			goto oom;
	}
	if ((j->hdrs = curl_slist_append(j->hdrs, "Expect:")) == NULL)
		goto oom;

	/* the body of the answer is most of the output: cap the read near it */
	worker_curl_common(j, j->output_max + 65536);
	curl_easy_setopt(j->easy, CURLOPT_URL, json_string_value(url));
	curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
	/* the tenant's destination: judged on every connection (sw_addr.h) */
	curl_easy_setopt(j->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
	curl_easy_setopt(j->easy, CURLOPT_OPENSOCKETDATA, j);
	curl_easy_setopt(j->easy, CURLOPT_PREREQFUNCTION, prereq_cb);
	curl_easy_setopt(j->easy, CURLOPT_PREREQDATA, j);
	curl_easy_setopt(j->easy, CURLOPT_PROXY, "");
	curl_easy_setopt(j->easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(j->easy, CURLOPT_MAXREDIRS, (long)WORKER_HTTP_REDIRECTS);
	curl_easy_setopt(j->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	if (strcmp(m, "GET") == 0) {
		curl_easy_setopt(j->easy, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->req_body ? j->req_body : "");
		curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE,
				 (long)(j->req_body ? strlen(j->req_body) : 0));
		if (strcmp(m, "POST") != 0)
			curl_easy_setopt(j->easy, CURLOPT_CUSTOMREQUEST, m);
	}
	if (worker_curl_add(j) == -1)
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "internal: cannot start the request");
	return;
oom:
	worker_exec_finish(j, SW_STEP_FAILED, NULL, "internal: out of memory");
}

void worker_http_done(struct worker_job *j, CURLcode rc, long status)
{
	char ex[256];
	json_t *body;

	if (rc == CURLE_OPERATION_TIMEDOUT) {
		worker_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
				   "timeout: step exceeded its timeout of %lld ms",
				   (long long)j->x->timeout_ms);
		return;
	}
	if (rc == CURLE_WRITE_ERROR && j->resp.over) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "output_too_large: output is over %zu bytes, over the limit "
				   "of %zu",
				   j->resp.max, j->output_max);
		return;
	}
	if (rc != CURLE_OK && j->refused[0] != '\0') {
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "http_error: %s", j->refused);
		return;
	}
	if (rc != CURLE_OK) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "http_error: %s%s%s",
				   curl_easy_strerror(rc), j->curl_err[0] ? ": " : "",
				   j->curl_err);
		return;
	}
	if (status >= 400) {
		excerpt(&j->resp, ex, sizeof(ex));
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "http_error: HTTP %ld%s%s", status,
				   ex[0] ? ": " : "", ex);
		return;
	}
	if ((body = body_value(&j->resp)) == NULL) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "http_error: the response body is neither JSON nor UTF-8 text");
		return;
	}
	worker_exec_finish(j, SW_STEP_SUCCEEDED,
			   json_pack("{s:i, s:o}", "status", (int)status, "body", body), NULL);
}
