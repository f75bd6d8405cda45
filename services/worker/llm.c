/*
 * llm.c: the llm step kind, an OpenAI-compatible chat completion.
 *
 *   POST {SAGEWAI_LLM_BASE_URL}/chat/completions
 *   Authorization: Bearer {SAGEWAI_LLM_API_KEY}     (when a key is set)
 *   {"model": with.model or SAGEWAI_LLM_MODEL,
 *    "messages": [{"role": "system", ...}, {"role": "user", "content": prompt}],
 *    "max_tokens": ..., "temperature": ...}
 *
 * The output is choices[0].message.content, or with.json = true that text
 * parsed as JSON (a ```json fence or prose around one object is
 * tolerated). When JSON is asked for, the system prompt says so.
 *
 * The key lives only in the request's header list: errors name the HTTP
 * status and the provider's message, and every error and output passes
 * through worker_redact before it leaves the process.
 *
 * The destination is the operator's (SAGEWAI_LLM_BASE_URL; nothing in a
 * step changes it) and redirects are not followed, so this kind is exempt
 * from the http kind's destination policy (sw_addr.h): a provider on loopback
 * or a private network (llm-mock, a local model server) works without
 * SAGEWAI_HTTP_ALLOW. The exemption is this transfer's alone: an http step
 * to the same host and port is judged like any other, even on a pooled
 * connection the llm kind left behind (httpstep.c).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

#define LLM_JSON_INSTRUCTION "Reply with valid JSON only: one JSON value, no prose."

static json_t *llm_request(struct worker_job *j, int want_json, char *err, size_t errlen)
{
	json_t *prompt = json_object_get(j->with, "prompt");
	json_t *system = json_object_get(j->with, "system");
	json_t *model = json_object_get(j->with, "model");
	json_t *max_tokens = json_object_get(j->with, "max_tokens");
	json_t *temperature = json_object_get(j->with, "temperature");
	json_t *req, *msgs;
	char *sys = NULL;

	if (!json_is_string(prompt)) {
		snprintf(err, errlen, "bad_input: an llm step needs with.prompt (a string)");
		return NULL;
	}
	if ((system != NULL && !json_is_string(system)) ||
	    (model != NULL && (!json_is_string(model) || json_string_length(model) == 0)) ||
	    (max_tokens != NULL &&
	     (!json_is_integer(max_tokens) || json_integer_value(max_tokens) <= 0)) ||
	    (temperature != NULL && !json_is_number(temperature))) {
		snprintf(err, errlen,
			 "bad_input: with.system and with.model must be strings, with.max_tokens "
			 "a positive integer, with.temperature a number");
		return NULL;
	}
	if (want_json) {
		if (asprintf(&sys, "%s%s%s", system ? json_string_value(system) : "",
			     system ? "\n\n" : "", LLM_JSON_INSTRUCTION) == -1)
			goto oom;
	} else if (system != NULL && (sys = strdup(json_string_value(system))) == NULL) {
		goto oom;
	}
	msgs = json_array();
	req = json_pack("{s:s, s:o}", "model",
			model ? json_string_value(model) : j->env->llm_model, "messages", msgs);
	if (req == NULL)
		goto oom;
	if (sys != NULL)
		json_array_append_new(msgs,
				      json_pack("{s:s, s:s}", "role", "system", "content", sys));
	json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "user", "content", prompt));
	if (max_tokens != NULL)
		json_object_set(req, "max_tokens", max_tokens);
	if (temperature != NULL)
		json_object_set(req, "temperature", temperature);
	free(sys);
	return req;
oom:
	free(sys);
	snprintf(err, errlen, "internal: out of memory");
	return NULL;
}

void worker_llm_start(struct worker_job *j)
{
	struct worker_env *env = j->env;
	json_t *want = json_object_get(j->with, "json"), *req;
	char err[256], url[600], *auth = NULL;
	size_t max;

	if (want != NULL && !json_is_boolean(want)) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "bad_input: with.json must be a boolean");
		return;
	}
	if ((req = llm_request(j, json_is_true(want), err, sizeof(err))) == NULL) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "%s", err);
		return;
	}
	j->req_body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if ((size_t)snprintf(url, sizeof(url), "%s/chat/completions", env->llm_base) >=
	    sizeof(url)) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "internal: SAGEWAI_LLM_BASE_URL too long");
		return;
	}
	if (j->req_body == NULL || (j->easy = curl_easy_init()) == NULL ||
	    (j->hdrs = curl_slist_append(NULL, "Content-Type: application/json")) == NULL ||
	    (j->hdrs = curl_slist_append(j->hdrs, "Expect:")) == NULL)
		goto oom;
	if (env->llm_key[0] != '\0') {
		if (asprintf(&auth, "Authorization: Bearer %s", env->llm_key) == -1)
			goto oom;
		j->hdrs = curl_slist_append(j->hdrs, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
		if (j->hdrs == NULL)
			goto oom;
	}
	/* the envelope around the reply: room for a JSON-escaped output */
	max = j->output_max * 6 + 65536;
	worker_curl_common(j, max);
	curl_easy_setopt(j->easy, CURLOPT_URL, url);
	curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
	curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->req_body);
	curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(j->req_body));
	if (worker_curl_add(j) == -1)
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "internal: cannot start the request");
	return;
oom:
	worker_exec_finish(j, SW_STEP_FAILED, NULL, "internal: out of memory");
}

/* The provider's own words about an error: error.message, a string error,
 * message, or failing those the start of the body. */
static void provider_message(const struct sw_buf *b, json_t *doc, char *out, size_t outlen)
{
	json_t *e = json_object_get(doc, "error");
	json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
	size_t i, n = 0;

	if (!json_is_string(m))
		m = json_object_get(doc, "message");
	if (json_is_string(m)) {
		snprintf(out, outlen, "%.300s", json_string_value(m));
		return;
	}
	for (i = 0; i < b->len && n + 1 < outlen && n < 200; i++)
		out[n++] = ((unsigned char)b->p[i] < 0x20) ? ' ' : b->p[i];
	out[n] = '\0';
	if (n == 0)
		snprintf(out, outlen, "no details");
}

/* Parse a reply that should be JSON: bare, fenced (```json ... ```), or
 * with prose around the one object or array it holds. */
static json_t *reply_json(const char *text, char *why, size_t whylen)
{
	json_error_t jerr;
	const char *s = text, *e, *nl, *open, *close;
	json_t *v;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	if (e - s >= 6 && strncmp(s, "```", 3) == 0) {
		nl = memchr(s, '\n', (size_t)(e - s));
		if (nl != NULL) {
			s = nl + 1;
			if (e - s >= 3 && strncmp(e - 3, "```", 3) == 0)
				e -= 3;
		}
	}
	if ((v = json_loadb(s, (size_t)(e - s), JSON_DECODE_ANY, &jerr)) != NULL)
		return v;
	snprintf(why, whylen, "%s", jerr.text);
	open = strpbrk(s, "{[");
	if (open != NULL && open < e) {
		close = NULL;
		for (nl = e; nl > open; nl--)
			if (nl[-1] == (*open == '{' ? '}' : ']')) {
				close = nl;
				break;
			}
		if (close != NULL &&
		    (v = json_loadb(open, (size_t)(close - open), 0, NULL)) != NULL)
			return v;
	}
	return NULL;
}

void worker_llm_done(struct worker_job *j, CURLcode rc, long status)
{
	json_t *doc, *content, *out;
	char msg[400], why[200];

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
	if (rc != CURLE_OK) {
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "llm_error: cannot reach the provider: %s",
				   j->curl_err[0] ? j->curl_err : curl_easy_strerror(rc));
		return;
	}
	doc = j->resp.len ? json_loadb(j->resp.p, j->resp.len, 0, NULL) : NULL;
	if (status >= 400 || status < 200) {
		provider_message(&j->resp, doc, msg, sizeof(msg));
		json_decref(doc);
		worker_exec_finish(j, SW_STEP_FAILED, NULL, "llm_error: HTTP %ld: %s", status,
				   msg);
		return;
	}
	content = json_object_get(
	    json_object_get(json_array_get(json_object_get(doc, "choices"), 0), "message"),
	    "content");
	if (!json_is_string(content)) {
		json_decref(doc);
		worker_exec_finish(j, SW_STEP_FAILED, NULL,
				   "llm_error: the reply has no choices[0].message.content");
		return;
	}
	if (json_is_true(json_object_get(j->with, "json"))) {
		out = reply_json(json_string_value(content), why, sizeof(why));
		json_decref(doc);
		if (out == NULL)
			worker_exec_finish(j, SW_STEP_FAILED, NULL,
					   "llm_error: the reply is not valid JSON: %s", why);
		else
			worker_exec_finish(j, SW_STEP_SUCCEEDED, out, NULL);
		return;
	}
	out = json_incref(content);
	json_decref(doc);
	worker_exec_finish(j, SW_STEP_SUCCEEDED, out, NULL);
}
