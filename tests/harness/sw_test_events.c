/*
 * sw_test_events: the events a service under test publishes, read back
 * from the harness's broker; and dispatches to send it.
 */
#include "sw_bus.h"
#include "sw_core.h"
#include "sw_test_svc.h"

void sw_test_evlog_open(struct sw_test_evlog *l, struct sw_event_registry *reg, const char *prefix,
			const char *const *topics)
{
	char gid[96];

	memset(l, 0, sizeof(*l));
	l->reg = reg;
	snprintf(l->prefix, sizeof(l->prefix), "%s", prefix);
	snprintf(gid, sizeof(gid), "%s-collector", prefix);
	l->consumer = sw_test_kafka_tail(gid, topics);
}

static void evlog_add(struct sw_test_evlog *l, const rd_kafka_message_t *m, json_t *e)
{
	json_t *h = json_object_get(e, "header"), *out;
	struct sw_test_ev *x;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->ev = realloc(l->ev, l->cap * sizeof(*l->ev));
		SW_CHECK(l->ev != NULL);
	}
	x = calloc(1, sizeof(*x));
	SW_CHECK(x != NULL);
	l->ev[l->n++] = x;
	snprintf(x->type, sizeof(x->type), "%s", json_string_value(json_object_get(h, "type")));
	snprintf(x->event_id, sizeof(x->event_id), "%s",
		 json_string_value(json_object_get(h, "event_id")));
	snprintf(x->run_id, sizeof(x->run_id), "%s",
		 json_string_value(json_object_get(h, "run_id")));
	snprintf(x->step_id, sizeof(x->step_id), "%s",
		 json_string_value(json_object_get(h, "step_id")) ?: "");
	snprintf(x->status, sizeof(x->status), "%s",
		 json_string_value(json_object_get(e, "status")) ?: "");
	snprintf(x->topic, sizeof(x->topic), "%s", rd_kafka_topic_name(m->rkt));
	out = json_object_get(e, "output");
	if (json_is_string(out))
		x->output = json_loads(json_string_value(out), JSON_DECODE_ANY, NULL);
	if (json_is_string(json_object_get(e, "error")))
		x->error = strdup(json_string_value(json_object_get(e, "error")));
	x->offset = m->offset;
	x->partition = m->partition;
	x->body = e;
}

void sw_test_evlog_poll(struct sw_test_evlog *l, int wait_ms)
{
	rd_kafka_message_t *m;
	const char *run_id;
	char err[256];
	json_t *e;

	while ((m = rd_kafka_consumer_poll(l->consumer, wait_ms)) != NULL) {
		wait_ms = 0;
		if (m->err) {
			rd_kafka_message_destroy(m);
			continue;
		}
		e = sw_event_decode(l->reg, m->payload, m->len, err, sizeof(err));
		if (l->seen != NULL)
			l->seen(m, e);
		run_id =
		    json_string_value(json_object_get(json_object_get(e, "header"), "run_id"));
		if (e == NULL || strncmp(run_id ?: "", l->prefix, strlen(l->prefix)) != 0)
			json_decref(e);
		else
			evlog_add(l, m, e);
		rd_kafka_message_destroy(m);
	}
}

size_t sw_test_evlog_count(const struct sw_test_evlog *l, const char *type, const char *step_id)
{
	size_t i, n = 0;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->ev[i]->type, type) == 0 && strcmp(l->ev[i]->step_id, step_id) == 0)
			n++;
	return n;
}

struct sw_test_ev *sw_test_evlog_find(struct sw_test_evlog *l, const char *type,
				      const char *step_id, size_t nth)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->ev[i]->type, type) == 0 && strcmp(l->ev[i]->step_id, step_id) == 0 &&
		    nth-- == 0)
			return l->ev[i];
	return NULL;
}

struct sw_test_ev *sw_test_evlog_wait(struct sw_test_evlog *l, const char *type,
				      const char *step_id, size_t nth, int limit_s)
{
	int64_t until = sw_mono_ns() + (int64_t)limit_s * 1000000000LL;
	struct sw_test_ev *e;

	for (;;) {
		sw_test_evlog_poll(l, 100);
		if ((e = sw_test_evlog_find(l, type, step_id, nth)) != NULL)
			return e;
		SW_REQUIRE(l->pid == NULL || *l->pid < 0 || sw_test_proc_running(*l->pid),
			   "%s exited", l->name ? l->name : "the service");
		SW_REQUIRE(sw_mono_ns() < until, "no %s #%zu for %s after %d s", type, nth,
			   step_id, limit_s);
	}
}

struct sw_test_ev *sw_test_evlog_finished(struct sw_test_evlog *l, const char *step_id)
{
	return sw_test_evlog_wait(l, "step.finished", step_id, 0, 120);
}

void sw_test_evlog_close(struct sw_test_evlog *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		json_decref(l->ev[i]->body);
		json_decref(l->ev[i]->output);
		free(l->ev[i]->error);
		free(l->ev[i]);
	}
	free(l->ev);
	if (l->consumer != NULL) {
		rd_kafka_consumer_close(l->consumer);
		rd_kafka_destroy(l->consumer);
	}
	memset(l, 0, sizeof(*l));
}

void sw_test_ev_require(const struct sw_test_ev *e, const char *status, const char *error_prefix)
{
	SW_REQUIRE(strcmp(e->status, status) == 0, "%s: status %s, expected %s (error: %s)",
		   e->step_id, e->status, status, e->error ? e->error : "-");
	if (error_prefix != NULL)
		SW_REQUIRE(e->error != NULL &&
			       strncmp(e->error, error_prefix, strlen(error_prefix)) == 0,
			   "%s: error '%s' does not start with '%s'", e->step_id,
			   e->error ? e->error : "(none)", error_prefix);
}

void sw_test_dispatch_make(const struct sw_test_sender *s, struct sw_test_dispatch *d,
			   const char *run, const char *step, const char *mode, int64_t timeout_ms,
			   json_t *spec)
{
	struct sw_event_header h;
	char err[256], *text;
	json_t *o;

	memset(d, 0, sizeof(*d));
	SW_CHECK(spec != NULL);
	snprintf(d->run_id, sizeof(d->run_id), "%s-%s", s->prefix, run);
	snprintf(d->step_id, sizeof(d->step_id), "%s/%s/1", d->run_id, step);
	d->topic = s->dispatch_topic != NULL ? s->dispatch_topic : sw_bus_dispatch_topic(mode);
	sw_event_header_init(&h, "step.dispatched", s->name);
	snprintf(h.tenant, sizeof(h.tenant), "default");
	snprintf(h.run_id, sizeof(h.run_id), "%s", d->run_id);
	snprintf(h.step_id, sizeof(h.step_id), "%s", d->step_id);
	text = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	o = json_pack("{s:s, s:i, s:s, s:i, s:s, s:I}", "step", step, "index", 0, "mode", mode,
		      "attempt", 1, "spec", text, "timeout_ms", (json_int_t)timeout_ms);
	free(text);
	SW_CHECKF(sw_event_encode(s->reg, "step.dispatched", &h, o, &d->buf, &d->len, err,
				  sizeof(err)) == 0,
		  "%s", err);
	json_decref(o);
}

void sw_test_dispatch_send(const struct sw_test_sender *s, const struct sw_test_dispatch *d)
{
	sw_test_kafka_deliver(s->producer, d->topic, d->run_id, d->buf, d->len);
}

void sw_test_dispatch_post(const struct sw_test_sender *s, struct sw_test_dispatch *d,
			   const char *run, const char *step, const char *mode, int64_t timeout_ms,
			   json_t *spec)
{
	sw_test_dispatch_make(s, d, run, step, mode, timeout_ms, spec);
	sw_test_dispatch_send(s, d);
	free(d->buf);
	d->buf = NULL;
}

void sw_test_event_send(struct sw_event_registry *reg, rd_kafka_t *p, const char *topic,
			const char *key, const char *type, const char *producer_name,
			const char *tenant, const char *run_id, const char *step_id, json_t *o)
{
	struct sw_event_header h;
	char err[256];
	void *buf;
	size_t len;

	sw_event_header_init(&h, type, producer_name);
	snprintf(h.tenant, sizeof(h.tenant), "%s", tenant != NULL ? tenant : "");
	snprintf(h.run_id, sizeof(h.run_id), "%s", run_id != NULL ? run_id : "");
	snprintf(h.step_id, sizeof(h.step_id), "%s", step_id != NULL ? step_id : "");
	SW_CHECKF(sw_event_encode(reg, type, &h, o, &buf, &len, err, sizeof(err)) == 0,
		  "encode %s: %s", type, err);
	json_decref(o);
	sw_test_kafka_send(p, topic, key, buf, len);
	free(buf);
}

static const char *ev_str(json_t *j, const char *k)
{
	const char *v = json_string_value(json_object_get(j, k));

	return v != NULL ? v : "";
}

void sw_test_replies_open(struct sw_test_replies *r, struct sw_event_registry *reg,
			  const char *group, const char *const *topics, pid_t *pid,
			  const char *name)
{
	r->consumer = sw_test_kafka_tail(group, topics);
	r->reg = reg;
	r->n = 0;
	r->pid = pid;
	r->name = name;
}

void sw_test_replies_poll(struct sw_test_replies *r, int wait_ms)
{
	rd_kafka_message_t *m;
	char err[256];
	json_t *ev;

	while ((m = rd_kafka_consumer_poll(r->consumer, wait_ms)) != NULL) {
		wait_ms = 0;
		if (m->err == 0 && m->payload != NULL &&
		    (ev = sw_event_decode(r->reg, m->payload, m->len, err, sizeof(err))) != NULL) {
			if (r->check != NULL)
				r->check(m, ev);
			if (r->n < SW_TEST_REPLIES_MAX)
				r->ev[r->n++] = ev;
			else
				json_decref(ev);
		}
		rd_kafka_message_destroy(m);
	}
}

static int reply_is(json_t *ev, const char *type, const char *rid)
{
	return strcmp(ev_str(json_object_get(ev, "header"), "type"), type) == 0 &&
	       (rid == NULL || strcmp(ev_str(ev, "request_id"), rid) == 0);
}

json_t *sw_test_replies_for(struct sw_test_replies *r, const char *type, const char *rid)
{
	int64_t until = sw_mono_ms() + 30000;

	for (;;) {
		for (size_t i = 0; i < r->n; i++)
			if (reply_is(r->ev[i], type, rid))
				return r->ev[i];
		SW_REQUIRE(r->pid == NULL || *r->pid < 0 || sw_test_proc_running(*r->pid),
			   "%s exited", r->name);
		SW_REQUIRE(sw_mono_ms() < until, "no %s for request %s in 30 s", type, rid);
		sw_test_replies_poll(r, 200);
	}
}

size_t sw_test_replies_count(const struct sw_test_replies *r, const char *type, const char *rid)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		n += (size_t)reply_is(r->ev[i], type, rid);
	return n;
}
