/*
 * exec.c: from a dispatch with no stored result to its step.finished.
 *
 * Preflight (nothing runs, no step.started), after sw_executor's spec and
 * preview-gate checks: the spec's run (a string, run as /bin/sh -c, or an
 * argv array), env (the step's variables, names re-checked against what
 * the sandbox reserves), variant (base), network (none, full, egress_only
 * with its egress_allow list), limits (the workflow vocabulary, lowered to
 * the variant's bounds), output_max.
 * Then sw_executor_admit: within the concurrency cap, step.started and an
 * acquire; once a sandbox is held, sandbox.acquired and the EXEC. The
 * control socket is driven on the loop: a read event calls sw_sandbox_read
 * (bounded work per call), a write event sw_sandbox_flush while
 * sw_sandbox_want_write. Whatever ends the attempt first -- EXIT, a
 * broken sandbox, the host-side deadline, a cancel, a hard revocation --
 * calls sbd_exec_finish; the sandbox then goes back to the pool, which has
 * the privileged part destroy it.
 *
 * identity_scoped steps (identity.c) take the same path with one stage
 * more: once the sandbox is held, its values are asked for, sealed to this
 * host, and injected before the EXEC; from then on every byte of output,
 * every error text and the step's output pass the step's redactor.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sandboxd.h"
#include "sw_executor.h"
#include "sw_workflow.h"

static void start_exec(struct sbd_job *j, struct sbd_slot *s);
static int check_egress_allow(struct sbd_job *j, enum sw_sandbox_net net, char *err,
			      size_t errlen);
static int start_egress(struct sbd_job *j, struct sbd_slot *s);

/* Free what the job holds of the execution (events, sandbox, buffers). */
static void exec_release(struct sbd_job *j)
{
	if (j->rd != NULL)
		event_free(j->rd);
	if (j->wr != NULL)
		event_free(j->wr);
	if (j->timer != NULL)
		event_free(j->timer);
	j->rd = j->wr = j->timer = NULL;
	if (j->slot != NULL) {
		if (j->slot_pending) {
			sbd_pool_abandon(j->env, j);
		} else {
			struct sbd_slot *s = j->slot;

			if (s->reason[0] == '\0')
				snprintf(s->reason, sizeof(s->reason), "%s",
					 j->x->phase == SW_EXECUTOR_ACTIVE &&
						 j->stage == SBD_RUNNING
					     ? "aborted"
					     : "finished");
			j->slot = NULL;
			sbd_pool_release(j->env, s);
		}
	}
	if (j->argv != NULL) {
		for (size_t i = 0; j->argv[i] != NULL; i++)
			free(j->argv[i]);
		free(j->argv);
		j->argv = NULL;
	}
	if (j->envp != NULL) {
		for (size_t i = 0; j->envp[i] != NULL; i++)
			free(j->envp[i]);
		free(j->envp);
		j->envp = NULL;
	}
	sw_buf_free(&j->out);
	sw_buf_free(&j->err);
	sbd_agent_release(j); /* a delivery in progress is abandoned */
	sbd_cred_release(j);  /* requests still waiting are withdrawn */
	/* last: the egress proxy (gone with the slot) redacts with it */
	sbd_identity_release(j);
}

void sbd_exec_finish(struct sbd_job *j, int st, json_t *output, const char *fmt, ...)
{
	char error[SW_EXECUTOR_ERR_MAX], *safe = NULL;
	va_list ap;

	error[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(error, sizeof(error), fmt, ap);
		va_end(ap);
	}
	if (!sbd_identity_redacting(j)) {
		sw_executor_finish(j->x, (enum sw_step_status)st, output, fmt ? error : NULL);
		return;
	}
	/* the texts quote the command's output: no injected value leaves */
	if (output != NULL && (output = sbd_identity_redact_json(j, output)) == NULL)
		goto oom;
	if (fmt != NULL && (safe = sbd_identity_redact(j, error)) == NULL) {
		json_decref(output);
		goto oom;
	}
	sw_executor_finish(j->x, (enum sw_step_status)st, output, safe);
	free(safe);
	return;
oom:
	sw_executor_finish(j->x, SW_STEP_FAILED, NULL, "internal: out of memory while redacting");
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_job *j = arg;

	(void)fd;
	(void)what;
	if (j->stage == SBD_ACQUIRING)
		sbd_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
				"timeout: no sandbox within the step's timeout of %lld ms",
				(long long)j->x->timeout_ms);
	else if (j->stage == SBD_SEALING)
		sbd_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
				"timeout: no sealed identity within the step's timeout of %lld ms",
				(long long)j->x->timeout_ms);
	else if (j->stage == SBD_PREPARING)
		sbd_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
				"timeout: the agent's home was not prepared within the step's "
				"timeout of %lld ms",
				(long long)j->x->timeout_ms);
	else if (j->stage == SBD_PACKING || j->stage == SBD_DELIVERING)
		sbd_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
				"timeout: the artifact was not delivered within the step's timeout "
				"of %lld ms",
				(long long)j->x->timeout_ms);
	else
		sbd_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
				"timeout: the command exceeded its timeout of %lld ms",
				(long long)j->x->timeout_ms);
}

static int arm_timer(struct sbd_job *j, int64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	if (j->timer == NULL && (j->timer = evtimer_new(j->env->base, timeout_cb, j)) == NULL)
		return -1;
	return evtimer_add(j->timer, &tv);
}

/* A slot is free and step.started produced: ask the pool for a sandbox. */
static void exec_start(void *arg, struct sw_executor_job *x)
{
	struct sbd_job *j = x->owner;
	struct sbd_slot *s;
	char err[256];
	int queued;

	(void)arg;
	j->stage = SBD_ACQUIRING;
	if (x->timeout_ms > 0 && arm_timer(j, x->timeout_ms + SBD_GRACE_MS) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "internal: cannot arm the timer");
		return;
	}
	j->acquire_t0_ns = sw_mono_ns();
	if ((s = sbd_pool_acquire(j, &queued, err, sizeof(err))) != NULL)
		start_exec(j, s);
	else if (!queued)
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "sandbox_error: %s", err);
}

void sbd_exec_acquired(struct sbd_job *j, struct sbd_slot *s)
{
	j->slot_pending = 0;
	if (s->sb == NULL) {
		snprintf(s->reason, sizeof(s->reason), "start failed");
		/* a CPU limit (the step's or the variant's) this host cannot
		 * hold, or network full without slirp4netns and nft */
		if (strstr(s->err, SW_SANDBOX_ERR_NO_CPU) != NULL ||
		    strstr(s->err, SW_SANDBOX_ERR_NO_FULL) != NULL)
			sbd_exec_finish(j, SW_STEP_FAILED, NULL, "mode_unavailable: %s", s->err);
		else
			sbd_exec_finish(j, SW_STEP_FAILED, NULL, "sandbox_error: %s", s->err);
		return;
	}
	start_exec(j, s);
}

/* ---- the control socket ------------------------------------------------ */

/* len bytes of stream (1 stdout, 2 stderr), redacted, into the captured
 * output (capped) and a sandbox.output event (capped). The two streams
 * share output_max, but stderr may hold at most half of it: a step that
 * floods both must not lose its stdout to a stderr read first. */
static void output_take(struct sbd_job *j, int stream, const char *buf, size_t len)
{
	struct sw_buf *b = stream == 1 ? &j->out : &j->err;
	size_t have = j->out.len + j->err.len, n = len, room;
	json_t *o;
	char *data, *safe;

	if (len == 0)
		return;

	room = j->output_max > have ? j->output_max - have : 0;
	if (stream != 1 && j->err.len + room > j->output_max / 2)
		room = j->output_max / 2 > j->err.len ? j->output_max / 2 - j->err.len : 0;
	if (n > room) {
		n = room;
		j->truncated = true;
	}
	if (n > 0 && sw_buf_add(b, buf, n) != 0) {
		sw_service_fatal(j->env->svc, "output", "out of memory");
		return;
	}
	if (j->ev_truncated)
		return;
	n = len;
	if (j->ev_bytes + n > j->env->output_events_max) {
		n = j->env->output_events_max - j->ev_bytes;
		j->ev_truncated = true;
	}
	j->ev_bytes += n;
	if ((data = sw_executor_utf8(buf, n)) == NULL ||
	    (safe = sbd_identity_redact(j, data)) == NULL) {
		free(data);
		sw_service_fatal(j->env->svc, "output", "out of memory");
		return;
	}
	free(data);
	o = json_pack("{s:s, s:s, s:i, s:s, s:b}", "sandbox_id", j->slot->id, "stream",
		      stream == 1 ? "stdout" : "stderr", "seq", j->ev_seq++, "data", safe,
		      "truncated", j->ev_truncated);
	free(safe);
	sbd_emit(j->env, "sandbox.output", &j->x->dh, o);
}

/* A chunk as the runner read it: through the step's redactor (one stream
 * each for stdout and stderr, so a value cut across chunks is caught). Never
 * ends the step here (the sandbox is being read): redact_failed does. */
static void on_output(void *arg, int stream, const uint8_t *buf, size_t len)
{
	struct sbd_job *j = arg;
	struct sw_buf *t;

	if (j->agent != NULL && sbd_agent_output(j, stream, buf, len))
		return; /* not the agent's own run: preparing its home, the snapshot */
	if (j->ident == NULL) {
		output_take(j, stream, (const char *)buf, len);
		return;
	}
	if (j->redact_failed)
		return;
	t = &j->ident->scratch;
	sw_buf_reset(t);
	if (sbd_identity_feed(j, stream, buf, len, t) != 0) {
		j->redact_failed = true;
		return;
	}
	output_take(j, stream, t->p, t->len);
}

/* The end of the output: what the redactor held back. 0, or -1. */
static int output_flush(struct sbd_job *j)
{
	struct sw_buf *t;

	if (j->ident == NULL)
		return 0;
	t = &j->ident->scratch;
	for (int stream = 1; stream <= 2; stream++) {
		sw_buf_reset(t);
		if (sbd_identity_flush(j, stream, t) != 0)
			return -1;
		output_take(j, stream, t->p, t->len);
	}
	return 0;
}

static void on_exit_frame(void *arg, const struct sw_sandbox_exit *ex)
{
	struct sbd_job *j = arg;

	j->exited = true;
	j->ex = *ex;
	j->ex.error = NULL;
	if (ex->error != NULL) {
		snprintf(j->ex_error, sizeof(j->ex_error), "%s", ex->error);
		j->ex.error = j->ex_error;
	}
}

static void on_runner_error(void *arg, const char *message)
{
	struct sbd_job *j = arg;
	char *safe = sbd_identity_redact(j, message);

	sw_log(SW_LOG_WARN, "tool runner reported an error", "run_id", j->x->dh.run_id, "step_id",
	       j->x->dh.step_id, "error", safe ? safe : "(out of memory)", NULL);
	free(safe);
}

/* cli_agent_jit: a program in the sandbox asks for a credential (cred.c) */
static void on_cred_request(void *arg, const char *json, size_t len)
{
	sbd_cred_request(arg, json, len);
}

static const struct sw_sandbox_events sandbox_events = {
    .on_output = on_output,
    .on_exit = on_exit_frame,
    .on_error = on_runner_error,
    .on_cred_request = on_cred_request,
};

/* The stderr tail for an error text, valid UTF-8; caller frees. */
static char *stderr_tail(const struct sbd_job *j)
{
	size_t n = j->err.len, from = n > SBD_STDERR_TAIL ? n - SBD_STDERR_TAIL : 0;

	while (n > 0 && (j->err.p[n - 1] == '\n' || j->err.p[n - 1] == '\r'))
		n--;
	if (from >= n)
		return strdup("");
	return sw_executor_utf8(j->err.p + from, n - from);
}

static void exited(struct sbd_job *j)
{
	struct sw_sandbox_exit *ex = &j->ex;
	const char *who = j->agent != NULL ? "agent" : "command";
	char *tail, *o_out, *o_err, *exerr = NULL;
	json_t *o;

	if (ex->error != NULL && (exerr = sbd_identity_redact(j, ex->error)) != NULL) {
		snprintf(j->ex_error, sizeof(j->ex_error), "%s", exerr);
		free(exerr);
	}
	o = json_pack("{s:s, s:i, s:i, s:b, s:b, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
		      "sandbox_id", j->slot->id, "exit_code", ex->status, "signal", ex->signal,
		      "timed_out", ex->timed_out, "killed", ex->killed, "error", ex->error,
		      "utime_us", (json_int_t)ex->usage.utime_us, "stime_us",
		      (json_int_t)ex->usage.stime_us, "maxrss_kb", (json_int_t)ex->usage.maxrss_kb,
		      "duration_us", (json_int_t)((sw_mono_ns() - j->exec_t0_ns) / 1000),
		      "stdout_bytes", (json_int_t)j->out.len, "stderr_bytes",
		      (json_int_t)j->err.len,
		      "output_truncated", j->truncated);
	sbd_emit(j->env, "sandbox.exited", &j->x->dh, o);

	if (ex->error != NULL) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "exec_error: %s", ex->error);
		return;
	}
	if (ex->timed_out) {
		int64_t ms = j->x->timeout_ms;

		if (ms == 0)
			ms = (int64_t)sw_sandbox_limits(j->slot->sb)->wall_ms;
		sbd_exec_finish(j, SW_STEP_TIMED_OUT, NULL,
				"timeout: the %s exceeded its timeout of %lld ms", who,
				(long long)ms);
		return;
	}
	if (ex->status == 0 && j->agent != NULL) {
		sbd_agent_ran(j); /* the snapshot, then the artifact */
		return;
	}
	if (ex->status == 0) {
		o_out = sw_executor_utf8(j->out.p ? j->out.p : "", j->out.len);
		o_err = sw_executor_utf8(j->err.p ? j->err.p : "", j->err.len);
		o = o_out && o_err ? json_pack("{s:i, s:s, s:s}", "exit_code", 0, "stdout", o_out,
					       "stderr", o_err)
				   : NULL;
		free(o_out);
		free(o_err);
		if (o != NULL && j->truncated)
			json_object_set_new(o, "truncated", json_true());
		if (o == NULL) {
			sw_service_fatal(j->env->svc, "output", "out of memory");
			return;
		}
		sbd_exec_finish(j, SW_STEP_SUCCEEDED, o, NULL);
		return;
	}
	tail = stderr_tail(j);
	if (ex->disk_full != NULL) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"disk_full: %s is full (%llu MiB); stderr: %s", ex->disk_full,
				(unsigned long long)(sw_sandbox_limits(j->slot->sb)->disk_bytes >> 20),
				tail ? tail : "");
		free(tail);
		return;
	}
	if (ex->status > 0)
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"exit_status: the %s exited with status %d%s%s", who, ex->status,
				tail && tail[0] ? "; stderr: " : "", tail ? tail : "");
	else
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"exit_status: the %s was killed by signal %d (%s)%s%s", who,
				ex->signal,
				sigabbrev_np(ex->signal) ? sigabbrev_np(ex->signal) : "?",
				tail && tail[0] ? "; stderr: " : "", tail ? tail : "");
	free(tail);
}

static void want_write(struct sbd_job *j)
{
	if (sw_sandbox_want_write(j->slot->sb))
		event_add(j->wr, NULL);
}

void sbd_exec_want_write(struct sbd_job *j)
{
	if (j->slot != NULL && j->slot->sb != NULL && j->wr != NULL)
		want_write(j);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_job *j = arg;
	int rc;

	(void)fd;
	(void)what;
	rc = sw_sandbox_read(j->slot->sb, &sandbox_events, j);
	if (j->x->phase != SW_EXECUTOR_ACTIVE)
		return; /* the step ended in a callback */
	if (j->redact_failed || (j->exited && output_flush(j) != 0))
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"internal: out of memory while redacting the output");
	else if (j->exited && j->agent != NULL && j->stage != SBD_RUNNING)
		sbd_agent_exited(j);
	else if (j->exited)
		exited(j);
	else if (rc != 0)
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "sandbox_error: %s",
				sw_sandbox_error(j->slot->sb));
	else
		want_write(j); /* a KILL queued meanwhile (an oversized snapshot) */
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct sbd_job *j = arg;

	(void)fd;
	(void)what;
	if (sw_sandbox_flush(j->slot->sb) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "sandbox_error: %s",
				sw_sandbox_error(j->slot->sb));
		return;
	}
	want_write(j);
}

static void start_exec(struct sbd_job *j, struct sbd_slot *s)
{
	struct sbd_env *env = j->env;
	const struct sw_sandbox_limits *lim = sw_sandbox_limits(s->sb);
	char *limits;
	json_t *lj;
	int64_t acquire_us = (sw_mono_ns() - j->acquire_t0_ns) / 1000;

	j->slot = s;
	j->slot_pending = 0;
	s->h = j->x->dh;
	lj = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "nproc", (json_int_t)lim->nproc,
		       "memory_bytes", (json_int_t)lim->memory_bytes, "cpu_seconds",
		       (json_int_t)lim->cpu_seconds, "file_size_bytes",
		       (json_int_t)lim->file_size_bytes, "nofile", (json_int_t)lim->nofile,
		       "wall_ms", (json_int_t)lim->wall_ms, "cpu_millis",
		       (json_int_t)lim->cpu_millis, "disk_bytes", (json_int_t)lim->disk_bytes);
	limits = lj ? json_dumps(lj, JSON_COMPACT) : NULL;
	json_decref(lj);
	sbd_emit(env, "sandbox.acquired",
		 &j->x->dh,
		 json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:s}", "sandbox_id", s->id, "host",
			   env->executor, "variant", j->warm->variant, "network",
			   sw_sandbox_net_name(j->warm->net), "warm", s->from_warm, "start_us",
			   (json_int_t)s->start_us, "acquire_us", (json_int_t)acquire_us, "limits",
			   limits ? limits : "{}"));
	free(limits);
	if (start_egress(j, s) != 0)
		return;
	if (j->agent != NULL) {
		sbd_agent_prepare(j); /* then the seal, then sbd_exec_run */
		return;
	}
	if (j->ident != NULL) {
		sbd_identity_seal(j); /* sbd_exec_run once the values are in */
		return;
	}
	sbd_exec_run(j);
}

int64_t sbd_exec_left_ms(const struct sbd_job *j)
{
	int64_t left;

	if (j->x->timeout_ms <= 0)
		return 0;
	left = j->x->timeout_ms - (sw_mono_ns() - j->x->t0_ns) / 1000000;
	return left < 1 ? 1 : left;
}

int sbd_exec_launch(struct sbd_job *j, struct sw_sandbox_exec *ex)
{
	struct sbd_env *env = j->env;
	struct sbd_slot *s = j->slot;
	const struct sw_sandbox_limits *lim = sw_sandbox_limits(s->sb);
	int64_t left = sbd_exec_left_ms(j);
	char err[320];
	int fd = sw_sandbox_fd(s->sb);

	if (ex->timeout_ms == 0 || (left > 0 && ex->timeout_ms > (uint64_t)left))
		ex->timeout_ms = (uint32_t)(left > 0 ? left : 0);
	j->exited = false;
	memset(&j->ex, 0, sizeof(j->ex));
	j->ex_error[0] = '\0';
	j->exec_t0_ns = sw_mono_ns();
	if (sw_sandbox_exec_start(s->sb, ex, err, sizeof(err)) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "sandbox_error: %s", err);
		return -1;
	}
	/* the runner kills the command at its timeout; this is the backstop */
	if (arm_timer(j, (ex->timeout_ms > 0 ? (int64_t)ex->timeout_ms : (int64_t)lim->wall_ms) +
			     SBD_GRACE_MS) != 0 ||
	    (j->rd == NULL &&
	     ((j->rd = event_new(env->base, fd, EV_READ | EV_PERSIST, on_readable, j)) == NULL ||
	      (j->wr = event_new(env->base, fd, EV_WRITE, on_writable, j)) == NULL ||
	      event_add(j->rd, NULL) != 0))) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "internal: cannot watch the sandbox");
		return -1;
	}
	on_writable(fd, EV_WRITE, j);
	return 0;
}

void sbd_exec_rearm(struct sbd_job *j)
{
	int64_t left = sbd_exec_left_ms(j);

	if (left == 0) {
		if (j->timer != NULL)
			evtimer_del(j->timer);
	} else if (arm_timer(j, left + SBD_GRACE_MS) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "internal: cannot arm the timer");
	}
}

void sbd_exec_run(struct sbd_job *j)
{
	struct sw_sandbox_exec ex = {.argv = (const char *const *)j->argv,
				     .env = (const char *const *)j->envp};

	j->stage = SBD_RUNNING;
	if (j->agent != NULL && sbd_agent_running(j, &ex) != 0)
		return;
	if (sbd_exec_launch(j, &ex) != 0)
		return;
	if (j->ident != NULL)
		sbd_identity_injected(j);
}

void sbd_exec_drop_sandbox(struct sbd_job *j)
{
	sbd_cred_release(j); /* nothing can be delivered to a sandbox that is gone */
	if (j->rd != NULL)
		event_free(j->rd);
	if (j->wr != NULL)
		event_free(j->wr);
	j->rd = j->wr = NULL;
	if (j->slot != NULL && !j->slot_pending) {
		struct sbd_slot *s = j->slot;

		snprintf(s->reason, sizeof(s->reason), "finished");
		j->slot = NULL;
		sbd_pool_release(j->env, s);
	}
}

/* ---- preflight ---------------------------------------------------------- */

/* spec.egress_allow: only with egress_only; an array of at most
 * SBD_EGRESS_ALLOW_MAX strings (their form is checked by the proxy). */
static int check_egress_allow(struct sbd_job *j, enum sw_sandbox_net net, char *err,
			      size_t errlen)
{
	json_t *a = json_object_get(j->x->spec, "egress_allow"), *e;
	size_t i;

	if (a == NULL || json_is_null(a))
		return 0;
	if (net != SW_SANDBOX_NET_EGRESS_ONLY) {
		snprintf(err, errlen, "spec.egress_allow needs network egress_only (it is %s)",
			 sw_sandbox_net_name(net));
		return -1;
	}
	if (!json_is_array(a) || json_array_size(a) > SBD_EGRESS_ALLOW_MAX) {
		snprintf(err, errlen, "spec.egress_allow is not an array of at most %d \"host:port\"",
			 SBD_EGRESS_ALLOW_MAX);
		return -1;
	}
	json_array_foreach(a, i, e) if (!json_is_string(e))
	{
		snprintf(err, errlen, "spec.egress_allow[%zu] is not a string", i);
		return -1;
	}
	return 0;
}

/* The proxy decided on a connection: say so on sagewai.sandbox. */
static void on_egress(void *arg, const struct sbd_egress_decision *d)
{
	struct sbd_slot *s = arg;
	char port[16], *host, *method;

	/* a step holding injected values could spell one into a host name */
	host = s->red ? sw_redact_buf(s->red, d->host, strlen(d->host), NULL, NULL)
		      : strdup(d->host);
	method = s->red ? sw_redact_buf(s->red, d->method, strlen(d->method), NULL, NULL)
			: strdup(d->method);
	if (host == NULL || method == NULL) {
		free(host);
		free(method);
		sw_service_fatal(s->env->svc, "egress", "out of memory");
		return;
	}
	snprintf(port, sizeof(port), "%d", d->port);
	sw_log(d->allowed || strcmp(d->reason, "client_closed") == 0 ? SW_LOG_INFO : SW_LOG_WARN,
	       d->allowed ? "egress allowed" : "egress denied", "run_id", s->h.run_id, "step_id",
	       s->h.step_id, "sandbox_id", s->id, "method", method, "host", host, "port", port,
	       "reason", d->reason, NULL);
	sbd_emit(s->env, "sandbox.egress", &s->h,
		 json_pack("{s:s, s:s, s:s, s:i, s:s, s:b, s:s}", "sandbox_id", s->id, "method",
			   method, "target_host", host, "target_port", d->port, "address",
			   d->address, "allowed", d->allowed, "reason", d->reason));
	free(host);
	free(method);
}

/* egress_only: the proxy on the sandbox's listener, allowing the spec's
 * egress_allow. 0, or -1 after finishing the step. */
static int start_egress(struct sbd_job *j, struct sbd_slot *s)
{
	struct sbd_env *env = j->env;
	struct sbd_egress_config ec = {.dns = env->dns, .allow_private = env->egress_private};
	const char *list[SBD_EGRESS_ALLOW_MAX];
	json_t *a = json_object_get(j->x->spec, "egress_allow"), *e;
	char err[300];
	size_t i, n = 0;

	if (j->warm->net != SW_SANDBOX_NET_EGRESS_ONLY)
		return 0;
	if (s->egress_fd < 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "sandbox_error: no egress proxy socket");
		return -1;
	}
	s->env = env;
	s->egress = sbd_egress_new(env->base, s->egress_fd, &ec, on_egress, s, err, sizeof(err));
	s->egress_fd = -1; /* taken, even on failure */
	if (s->egress == NULL) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "sandbox_error: egress proxy: %s", err);
		return -1;
	}
	json_array_foreach(a, i, e) list[n++] = json_string_value(e);
	if (sbd_egress_allow(s->egress, list, n, err, sizeof(err)) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "bad_input: spec.egress_allow: %s", err);
		return -1;
	}
	return 0;
}

/* spec.run into j->argv; 0 or -1 with err. */
static int parse_run(struct sbd_job *j, char *err, size_t errlen)
{
	json_t *run = json_object_get(j->x->spec, "run"), *a;
	size_t i, n;

	if (json_is_string(run)) {
		if (json_string_length(run) == 0 || strlen(json_string_value(run)) !=
							json_string_length(run)) {
			snprintf(err, errlen, "spec.run is empty or holds NUL");
			return -1;
		}
		if ((j->argv = calloc(4, sizeof(char *))) == NULL ||
		    (j->argv[0] = strdup("/bin/sh")) == NULL ||
		    (j->argv[1] = strdup("-c")) == NULL ||
		    (j->argv[2] = strdup(json_string_value(run))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	n = json_array_size(run);
	if (!json_is_array(run) || n == 0 || n > 4096) {
		snprintf(err, errlen,
			 "spec.run must be a command string or a non-empty argv array");
		return -1;
	}
	if ((j->argv = calloc(n + 1, sizeof(char *))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_array_foreach(run, i, a) {
		/* an element that a template made a JSON value (an earlier step's
		 * object output, say) is passed as its compact JSON text */
		if (!json_is_string(a) && i > 0) {
			if ((j->argv[i] = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL) {
				snprintf(err, errlen, "spec.run[%zu] cannot be serialised", i);
				return -1;
			}
			continue;
		}
		if (!json_is_string(a) ||
		    strlen(json_string_value(a)) != json_string_length(a) ||
		    (i == 0 && json_string_length(a) == 0)) {
			snprintf(err, errlen, "spec.run[%zu] is not a string (or holds NUL)", i);
			return -1;
		}
		if ((j->argv[i] = strdup(json_string_value(a))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* spec.env (optional) into j->envp: the step's variables, next to the
 * sandbox's own PATH and HOME (which the privileged part fixed). The names
 * were checked when the workflow was registered; a dispatch is checked
 * again, so that a crafted one cannot set PATH, LD_PRELOAD, a proxy or
 * SAGEWAI_*. A value a template made a JSON value is its compact JSON
 * text. 0 or -1 with err. */
static int parse_env(struct sbd_job *j, char *err, size_t errlen)
{
	json_t *e = json_object_get(j->x->spec, "env"), *v;
	const char *k, *why;
	size_t n = 0, total = 0;

	if (e == NULL || json_is_null(e))
		return 0;
	if (!json_is_object(e) || json_object_size(e) > SW_STEP_ENV_MAX) {
		snprintf(err, errlen, "spec.env is not an object of at most %d variables",
			 SW_STEP_ENV_MAX);
		return -1;
	}
	if ((j->envp = calloc(json_object_size(e) + 1, sizeof(char *))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_object_foreach(e, k, v) {
		char *text = json_is_string(v) ? strdup(json_string_value(v))
					       : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		size_t tl;

		if ((why = sw_step_env_refusal(k, strlen(k))) != NULL) {
			snprintf(err, errlen, "spec.env: \"%.60s\" %s", k, why);
			free(text);
			return -1;
		}
		if (text == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		tl = strlen(text);
		if (json_is_string(v) && tl != json_string_length(v)) {
			snprintf(err, errlen, "spec.env.%s holds NUL", k);
			free(text);
			return -1;
		}
		total += strlen(k) + tl + 2;
		if (total > SW_STEP_ENV_BYTES_MAX) {
			snprintf(err, errlen, "spec.env: more than %u bytes of names and values",
				 SW_STEP_ENV_BYTES_MAX);
			free(text);
			return -1;
		}
		if (asprintf(&j->envp[n], "%s=%s", k, text) < 0) {
			j->envp[n] = NULL;
			snprintf(err, errlen, "out of memory");
			free(text);
			return -1;
		}
		n++;
		free(text);
	}
	return 0;
}

/*
 * spec.limits (optional; the workflow vocabulary, sw_workflow.h) onto
 * j->limits: memory_mb -> memory_bytes, pids -> nproc, cpu_seconds,
 * file_size_mb -> file_size_bytes, open_files -> nofile, disk_mb ->
 * disk_bytes (the tmpfs /workspace and /tmp). A limit over the
 * variant's is lowered to it (the variant's are the operator's ceiling;
 * the workflow could not know them when it was registered). cpus ->
 * cpu_millis (rounded to the nearest, at least 1), lowered to the
 * variant's CPU maximum when it has one; where the host cannot hold a CPU
 * limit the sandbox's start fails and the step with mode_unavailable
 * (sbd_exec_acquired). Only a spec no registered workflow gives (an
 * unknown key, not a positive number, cpus over SW_LIMIT_CPUS_MAX) is
 * refused.
 */
static int parse_limits(struct sbd_job *j, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		uint64_t unit;
	} keys[] = {{"memory_mb", 1u << 20},   {"pids", 1},	 {"cpu_seconds", 1},
		    {"file_size_mb", 1u << 20}, {"open_files", 1},	 {"disk_mb", 1u << 20}};
	const struct sw_sandbox_limits *def = &j->warm->v->limits;
	const uint64_t ceil[] = {def->memory_bytes, def->nproc, def->cpu_seconds,
				 def->file_size_bytes, def->nofile,	 def->disk_bytes};
	uint64_t *dst[] = {&j->limits.memory_bytes, &j->limits.nproc, &j->limits.cpu_seconds,
			   &j->limits.file_size_bytes, &j->limits.nofile, &j->limits.disk_bytes};
	json_t *l = json_object_get(j->x->spec, "limits"), *v;
	const char *k;
	size_t i, nk = sizeof(keys) / sizeof(keys[0]);

	if (l == NULL || json_is_null(l))
		return 0;
	if (!json_is_object(l)) {
		snprintf(err, errlen, "spec.limits is not an object");
		return -1;
	}
	json_object_foreach(l, k, v) {
		uint64_t want;

		if (strcmp(k, "cpus") == 0) {
			double cpus = json_is_number(v) ? json_number_value(v) : 0;

			if (!(cpus > 0) || cpus > SW_LIMIT_CPUS_MAX) {
				snprintf(err, errlen,
					 "spec.limits.cpus is not a number in (0, %d]",
					 SW_LIMIT_CPUS_MAX);
				return -1;
			}
			want = (uint64_t)(cpus * 1000 + 0.5);
			if (want < 1)
				want = 1;
			if (def->cpu_millis > 0 && want > def->cpu_millis) {
				sw_log(SW_LOG_INFO, "limit lowered to the variant's", "run_id",
				       j->x->dh.run_id, "step_id", j->x->dh.step_id, "limit", k,
				       "variant", j->warm->variant, NULL);
				want = def->cpu_millis;
			}
			j->limits.cpu_millis = want;
			j->custom_limits = want != def->cpu_millis || j->custom_limits;
			continue;
		}
		for (i = 0; i < nk && strcmp(k, keys[i].name) != 0; i++)
			;
		if (i == nk) {
			snprintf(err, errlen,
				 "spec.limits: unknown limit '%.60s' (memory_mb, pids, cpus, "
				 "cpu_seconds, file_size_mb, open_files, disk_mb)",
				 k);
			return -1;
		}
		if (!json_is_integer(v) || json_integer_value(v) <= 0) {
			snprintf(err, errlen, "spec.limits.%s is not a positive integer", k);
			return -1;
		}
		want = (uint64_t)json_integer_value(v);
		if (want > ceil[i] / keys[i].unit) {
			sw_log(SW_LOG_INFO, "limit lowered to the variant's", "run_id",
			       j->x->dh.run_id, "step_id", j->x->dh.step_id, "limit", k, "variant",
			       j->warm->variant, NULL);
			*dst[i] = ceil[i];
		} else {
			*dst[i] = want * keys[i].unit;
		}
		j->custom_limits = *dst[i] != ceil[i] || j->custom_limits;
	}
	return 0;
}

/* The spec is an object past the preview gate: sandboxd's checks, then a
 * slot. */
static void exec_begin(void *arg, struct sw_executor_job *x)
{
	struct sbd_env *env = arg;
	struct sbd_job *j = x->owner;
	enum sw_sandbox_net net;
	const char *variant = "base", *network = "none";
	int agent = strcmp(j->x->mode, "cli_agent") == 0 || strcmp(j->x->mode, "cli_agent_jit") == 0;
	char err[512];
	json_t *v;

	if (agent) {
		/* the agent, its prompt and artifact; its variant and egress_only
		 * by default */
		if (sbd_agent_new(j, &variant, err, sizeof(err)) != 0) {
			sbd_exec_finish(j, SW_STEP_FAILED, NULL, "bad_input: %s", err);
			return;
		}
		network = "egress_only";
	}
	if ((v = json_object_get(j->x->spec, "variant")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			sbd_exec_finish(j, SW_STEP_FAILED, NULL,
					"bad_input: spec.variant is not a string");
			return;
		}
		variant = json_string_value(v);
	}
	if ((v = json_object_get(j->x->spec, "network")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			sbd_exec_finish(j, SW_STEP_FAILED, NULL,
					"bad_input: spec.network is not a string");
			return;
		}
		network = json_string_value(v);
	}
	if (sw_sandbox_net_parse(network, &net) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"bad_input: spec.network '%.40s' is not none, egress_only or full",
				network);
		return;
	}
	if (!(env->networks & (1u << net))) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"mode_unavailable: network %s is not offered on this sandbox host "
				"(SAGEWAI_SANDBOX_NETWORKS)",
				sw_sandbox_net_name(net));
		return;
	}
	if (check_egress_allow(j, net, err, sizeof(err)) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "bad_input: %s", err);
		return;
	}
	if ((j->warm = sbd_pool_warm(env, variant, net, err, sizeof(err))) == NULL) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "bad_input: %s", err);
		return;
	}
	/* an agent's command line is ours, but for custom */
	if (((!agent || sbd_agent_custom(j)) && parse_run(j, err, sizeof(err)) != 0) ||
	    parse_env(j, err, sizeof(err)) != 0 || parse_limits(j, err, sizeof(err)) != 0) {
		sbd_exec_finish(j, SW_STEP_FAILED, NULL, "bad_input: %s", err);
		return;
	}
	if (agent || strcmp(j->x->mode, "identity_scoped") == 0) {
		if (sbd_identity_parse(j, err, sizeof(err)) != 0 ||
		    (agent && sbd_agent_build(j, err, sizeof(err)) != 0)) {
			sbd_exec_finish(j, SW_STEP_FAILED, NULL, "bad_input: %s", err);
			return;
		}
	} else if (j->x->identity[0] != '\0' && strcmp(j->x->identity, "[]") != 0) {
		/* its values would not be injected: fail rather than run without */
		sbd_exec_finish(j, SW_STEP_FAILED, NULL,
				"bad_input: an identity is given for a %s step", j->x->mode);
		return;
	}
	v = json_object_get(j->x->spec, "output_max");
	j->output_max = json_is_integer(v) && json_integer_value(v) > 0
			    ? (size_t)json_integer_value(v)
			    : SBD_OUTPUT_MAX_DEFAULT;
	if (j->output_max > env->output_cap)
		j->output_max = env->output_cap;
	/* what is captured must fit one event on the bus, with room to spare */
	if (j->output_max > env->bus_max - 8192)
		j->output_max = env->bus_max - 8192;
	sw_executor_admit(x);
}

/* ---- sw_executor's callbacks ------------------------------------------ */

static int exec_wants(void *arg, const char *mode)
{
	struct sbd_env *env = arg;

	/* in_process is the worker's; identity_scoped, cli_agent and
	 * cli_agent_jit only with a seal key (another host, or nobody, takes
	 * them otherwise) */
	return strcmp(mode, "sandboxed") == 0 ||
	       ((strcmp(mode, "identity_scoped") == 0 || strcmp(mode, "cli_agent") == 0 ||
		 strcmp(mode, "cli_agent_jit") == 0) &&
		env->seal_sk != NULL);
}

static int exec_job_new(void *arg, struct sw_executor_job *x)
{
	struct sbd_job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return -1;
	j->x = x;
	j->env = arg;
	LIST_INIT(&j->creds);
	x->owner = j;
	return 0;
}

/* The attempt ended: the sandbox goes back with the reason. */
static void exec_halt(void *arg, struct sw_executor_job *x, enum sw_step_status st)
{
	struct sbd_job *j = x->owner;

	(void)arg;
	if (j->slot != NULL && !j->slot_pending)
		snprintf(j->slot->reason, sizeof(j->slot->reason), "%s",
			 j->slot->revoke_event_id[0] != '\0' ? "revoked"
			 : st == SW_STEP_SUCCEEDED	     ? "finished"
			 : st == SW_STEP_TIMED_OUT	     ? "timed_out"
			 : st == SW_STEP_CANCELLED	     ? "cancelled"
							     : "failed");
	exec_release(j);
}

static void exec_job_free(void *arg, struct sw_executor_job *x)
{
	(void)arg;
	exec_release(x->owner);
	free(x->owner);
	x->owner = NULL;
}

const struct sw_executor_ops sbd_exec_ops = {
    .wants = exec_wants,
    .job_new = exec_job_new,
    .begin = exec_begin,
    .start = exec_start,
    .halt = exec_halt,
    .job_free = exec_job_free,
    .report = sbd_report,
    .fatal = sbd_on_fatal,
};
