/*
 * sandbox.c: the backend-independent sandbox handle and the host side of the
 * frame protocol with the tool runner (sw_sandbox.h).
 *
 * Everything that comes from the runner is hostile until checked: frames go
 * through sw_frame_parser (length, type, flags), then each payload is
 * validated against what the protocol state allows (READY first and once,
 * output and EXIT only while an exec runs, strict JSON shapes). The first
 * violation kills the sandbox and is kept as the handle's error.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sw_core.h"
#include "sw_sandbox.h"

#define READS_PER_CALL 16 /* records read by one sw_sandbox_read */
#define RUN_GRACE_MS 5000 /* host-side slack over an exec's own timeout */

struct sw_sandbox {
	struct sw_sandbox_backend *be; /* NULL for an attached handle */
	void *inst;		       /* backend instance */
	int fd;			       /* control socket, non-blocking */
	struct sw_frame_parser *parser;
	struct sw_frame_outq outq;
	struct sw_sandbox_limits limits;
	bool ready, dead, busy;
	char error[256];      /* why it ended */
	char runner_msg[160]; /* last ERROR message from the runner */
	uint8_t *rbuf;	      /* SW_FRAME_RECORD_MAX receive buffer */
	/* set for the duration of one feed */
	const struct sw_sandbox_events *ev;
	void *ev_arg;
	char cb_err[200];
};

int sw_sandbox_net_parse(const char *s, enum sw_sandbox_net *out)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "none") == 0)
		*out = SW_SANDBOX_NET_NONE;
	else if (strcmp(s, "egress_only") == 0)
		*out = SW_SANDBOX_NET_EGRESS_ONLY;
	else if (strcmp(s, "full") == 0)
		*out = SW_SANDBOX_NET_FULL;
	else
		return -1;
	return 0;
}

const char *sw_sandbox_net_name(enum sw_sandbox_net net)
{
	switch (net) {
	case SW_SANDBOX_NET_NONE:
		return "none";
	case SW_SANDBOX_NET_EGRESS_ONLY:
		return "egress_only";
	case SW_SANDBOX_NET_FULL:
		return "full";
	}
	return "?";
}

void sw_sandbox_backend_free(struct sw_sandbox_backend *be)
{
	if (be == NULL)
		return;
	if (be->free != NULL)
		be->free(be->state);
	free(be);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A valid environment entry: NAME=value with NAME [A-Za-z_][A-Za-z0-9_]*. */
static int env_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 255 ||
	    !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return 1;
}

static int env_entry_ok(const char *e)
{
	const char *eq = strchr(e, '=');

	return eq != NULL && env_name_ok(e, (size_t)(eq - e));
}

static void fail(struct sw_sandbox *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* End the sandbox: record why (first reason wins) and kill it. */
static void fail(struct sw_sandbox *sb, const char *fmt, ...)
{
	va_list ap;

	if (!sb->dead) {
		va_start(ap, fmt);
		vsnprintf(sb->error, sizeof(sb->error), fmt, ap);
		va_end(ap);
		sb->dead = true;
	}
	sw_sandbox_kill(sb);
}

static struct sw_sandbox *handle_new(int fd, const struct sw_sandbox_limits *limits, char *errstr,
				     size_t errlen)
{
	struct sw_sandbox *sb = calloc(1, sizeof(*sb));
	int fl;

	if (sb == NULL || (sb->parser = sw_frame_parser_new(SW_FRAME_FROM_RUNNER)) == NULL ||
	    (sb->rbuf = malloc(SW_FRAME_RECORD_MAX)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	sb->fd = fd;
	if (limits != NULL)
		sb->limits = *limits;
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(errstr, errlen, "control socket: %s", strerror(errno));
		goto fail;
	}
	return sb;
fail:
	if (sb != NULL) {
		sw_frame_parser_destroy(sb->parser);
		free(sb->rbuf);
		free(sb);
	}
	return NULL;
}

static void handle_free(struct sw_sandbox *sb)
{
	if (sb->fd >= 0)
		close(sb->fd);
	sw_frame_parser_destroy(sb->parser);
	sw_frame_outq_free(&sb->outq);
	free(sb->rbuf);
	free(sb);
}

static void merge_limits(struct sw_sandbox_limits *out, const struct sw_sandbox_limits *spec,
			 const struct sw_sandbox_limits *def)
{
	out->nproc = spec->nproc ? spec->nproc : def->nproc;
	out->memory_bytes = spec->memory_bytes ? spec->memory_bytes : def->memory_bytes;
	out->cpu_seconds = spec->cpu_seconds ? spec->cpu_seconds : def->cpu_seconds;
	out->file_size_bytes =
	    spec->file_size_bytes ? spec->file_size_bytes : def->file_size_bytes;
	out->nofile = spec->nofile ? spec->nofile : def->nofile;
	out->wall_ms = spec->wall_ms ? spec->wall_ms : def->wall_ms;
	out->cpu_millis = spec->cpu_millis ? spec->cpu_millis : def->cpu_millis;
	out->disk_bytes = spec->disk_bytes		? spec->disk_bytes
			  : def->disk_bytes ? def->disk_bytes
					    : SW_SANDBOX_DISK_BYTES_DEFAULT;
}

/* ---- creating ----------------------------------------------------------- */

struct sw_sandbox_start {
	struct sw_sandbox_backend *be;
	void *inst;	       /* the backend's, until sb holds it */
	int ctl_fd, wait_fd;   /* in the backend's half: ours, and inst's */
	struct sw_sandbox *sb; /* in the READY half */
	struct sw_sandbox_limits lim;
	int64_t deadline_ms;
	uint32_t timeout_ms;
};

/* The spec's own checks and its effective limits. 0 or -1. */
static int spec_check(const struct sw_sandbox_backend *be, const struct sw_sandbox_spec *spec,
		      struct sw_sandbox_limits *lim, char *errstr, size_t errlen)
{
	if (be == NULL || spec == NULL || spec->variant == NULL) {
		snprintf(errstr, errlen, "sandbox: no backend, spec or variant");
		return -1;
	}
	if (spec->net != SW_SANDBOX_NET_NONE && spec->net != SW_SANDBOX_NET_EGRESS_ONLY &&
	    spec->net != SW_SANDBOX_NET_FULL) {
		snprintf(errstr, errlen, "sandbox: bad network policy %d", (int)spec->net);
		return -1;
	}
	for (size_t i = 0; spec->env != NULL && spec->env[i] != NULL; i++) {
		if (!env_entry_ok(spec->env[i])) {
			snprintf(errstr, errlen, "sandbox: bad environment entry #%zu", i);
			return -1;
		}
	}
	merge_limits(lim, &spec->limits, &spec->variant->limits);
	if (lim->cpu_millis > SW_SANDBOX_CPU_MILLIS_MAX) {
		snprintf(errstr, errlen, "sandbox: cpu_millis %llu over %d",
			 (unsigned long long)lim->cpu_millis, SW_SANDBOX_CPU_MILLIS_MAX);
		return -1;
	}
	return 0;
}

/* The backend's half is over: a handle on the control socket, waiting for
 * READY. 0, or -1 (inst destroyed). */
static int start_handle(struct sw_sandbox_start *st, char *errstr, size_t errlen)
{
	if ((st->sb = handle_new(st->ctl_fd, &st->lim, errstr, errlen)) == NULL) {
		close(st->ctl_fd);
		st->ctl_fd = -1;
		st->be->destroy(st->inst, NULL);
		st->inst = NULL;
		return -1;
	}
	st->ctl_fd = -1;
	st->sb->be = st->be;
	st->sb->inst = st->inst;
	st->inst = NULL;
	return 0;
}

struct sw_sandbox_start *sw_sandbox_start_new(struct sw_sandbox_backend *be,
					      const struct sw_sandbox_spec *spec, char *errstr,
					      size_t errlen)
{
	struct sw_sandbox_start *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	st->be = be;
	st->ctl_fd = st->wait_fd = -1;
	if (spec_check(be, spec, &st->lim, errstr, errlen) != 0)
		goto fail;
	st->timeout_ms = spec->start_timeout_ms ? spec->start_timeout_ms : 10000;
	st->deadline_ms = mono_ms() + st->timeout_ms;
	if (be->create_begin != NULL) {
		if (be->create_begin(be->state, spec, &st->lim, &st->inst, &st->ctl_fd,
				     &st->wait_fd, errstr, errlen) != 0)
			goto fail;
		return st;
	}
	if (be->create(be->state, spec, &st->lim, &st->inst, &st->ctl_fd, errstr, errlen) != 0 ||
	    start_handle(st, errstr, errlen) != 0)
		goto fail;
	return st;
fail:
	free(st);
	return NULL;
}

int sw_sandbox_start_fd(const struct sw_sandbox_start *st)
{
	return st->sb != NULL ? st->sb->fd : st->wait_fd;
}

int64_t sw_sandbox_start_left_ms(const struct sw_sandbox_start *st)
{
	int64_t left = st->deadline_ms - mono_ms();

	return left > 0 ? left : 0;
}

void sw_sandbox_start_abort(struct sw_sandbox_start *st)
{
	if (st == NULL)
		return;
	if (st->sb != NULL)
		sw_sandbox_destroy(st->sb, NULL);
	if (st->ctl_fd >= 0)
		close(st->ctl_fd);
	if (st->inst != NULL)
		st->be->destroy(st->inst, NULL);
	free(st);
}

/* A start that failed: errstr says why, with what the backend knows. */
static int start_failed(struct sw_sandbox_start *st, const char *what, char *errstr, size_t errlen)
{
	char why[200] = "";

	if (st->sb != NULL && st->be->why != NULL)
		st->be->why(st->sb->inst, why, sizeof(why));
	snprintf(errstr, errlen, "sandbox: %s%s%s", what, why[0] ? ": " : "", why);
	sw_sandbox_start_abort(st);
	return -1;
}

int sw_sandbox_start_step(struct sw_sandbox_start *st, struct sw_sandbox **out, char *errstr,
			  size_t errlen)
{
	static const struct sw_sandbox_events none;
	char what[256];
	int rc;

	*out = NULL;
	if (st->sb == NULL) {
		rc = st->be->create_step(st->inst, errstr, errlen);
		if (rc < 0) {
			sw_sandbox_start_abort(st);
			return -1;
		}
		if (rc == 0) {
			if (sw_sandbox_start_left_ms(st) > 0)
				return 0;
			snprintf(errstr, errlen, "bwrap failed: no child started in %u ms",
				 st->timeout_ms);
			sw_sandbox_start_abort(st);
			return -1;
		}
		if (start_handle(st, errstr, errlen) != 0) {
			free(st);
			return -1;
		}
	}
	/* READY may be there already */
	if (sw_sandbox_read(st->sb, &none, NULL) != 0) {
		snprintf(what, sizeof(what), "%s", st->sb->error);
		return start_failed(st, what, errstr, errlen);
	}
	if (!st->sb->ready) {
		if (sw_sandbox_start_left_ms(st) > 0)
			return 0;
		snprintf(what, sizeof(what), "tool runner not ready after %u ms", st->timeout_ms);
		return start_failed(st, what, errstr, errlen);
	}
	*out = st->sb;
	free(st);
	return 1;
}

struct sw_sandbox *sw_sandbox_create(struct sw_sandbox_backend *be,
				     const struct sw_sandbox_spec *spec, char *errstr,
				     size_t errlen)
{
	struct sw_sandbox_start *st = sw_sandbox_start_new(be, spec, errstr, errlen);
	struct sw_sandbox *sb = NULL;
	int rc;

	if (st == NULL)
		return NULL;
	while ((rc = sw_sandbox_start_step(st, &sb, errstr, errlen)) == 0) {
		struct pollfd pfd = {.fd = sw_sandbox_start_fd(st), .events = POLLIN};

		if (poll(&pfd, 1, (int)sw_sandbox_start_left_ms(st)) < 0 && errno != EINTR) {
			snprintf(errstr, errlen, "sandbox: poll: %s", strerror(errno));
			sw_sandbox_start_abort(st);
			return NULL;
		}
	}
	return rc == 1 ? sb : NULL;
}

struct sw_sandbox *sw_sandbox_attach(int ctl_fd, const struct sw_sandbox_limits *limits,
				     bool ready, char *errstr, size_t errlen)
{
	struct sw_sandbox *sb = handle_new(ctl_fd, limits, errstr, errlen);

	if (sb == NULL)
		close(ctl_fd);
	else
		sb->ready = ready;
	return sb;
}

int sw_sandbox_give_fd(struct sw_sandbox *sb)
{
	int fd = sb->fd;

	if (sb->dead || fd < 0)
		return -1;
	sb->fd = -1;
	sb->dead = true;
	snprintf(sb->error, sizeof(sb->error), "control socket handed over");
	return fd;
}

void sw_sandbox_kill(struct sw_sandbox *sb)
{
	sb->dead = true;
	if (sb->error[0] == '\0')
		snprintf(sb->error, sizeof(sb->error), "killed");
	if (sb->be != NULL)
		sb->be->kill(sb->inst);
	else if (sb->fd >= 0)
		shutdown(sb->fd, SHUT_RDWR);
}

void sw_sandbox_destroy(struct sw_sandbox *sb, struct sw_sandbox_usage *final)
{
	if (sb == NULL)
		return;
	if (final != NULL)
		memset(final, 0, sizeof(*final));
	if (sb->be != NULL)
		sb->be->destroy(sb->inst, final);
	handle_free(sb);
}

int sw_sandbox_fd(const struct sw_sandbox *sb)
{
	return sb->fd;
}

bool sw_sandbox_ready(const struct sw_sandbox *sb)
{
	return sb->ready;
}

bool sw_sandbox_dead(const struct sw_sandbox *sb)
{
	return sb->dead;
}

bool sw_sandbox_busy(const struct sw_sandbox *sb)
{
	return sb->busy;
}

const char *sw_sandbox_error(const struct sw_sandbox *sb)
{
	return sb->dead ? sb->error : "";
}

const struct sw_sandbox_limits *sw_sandbox_limits(const struct sw_sandbox *sb)
{
	return &sb->limits;
}

pid_t sw_sandbox_pid(const struct sw_sandbox *sb)
{
	return sb->be != NULL && sb->be->pid != NULL ? sb->be->pid(sb->inst) : 0;
}

int sw_sandbox_gone_fd(const struct sw_sandbox *sb)
{
	return sb->be != NULL && sb->be->gone_fd != NULL ? sb->be->gone_fd(sb->inst) : -1;
}

int sw_sandbox_stats(struct sw_sandbox *sb, struct sw_sandbox_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->nproc = -1;
	if (sb->be == NULL || sb->be->stats == NULL)
		return -1;
	return sb->be->stats(sb->inst, st);
}

/* ---- receiving ---------------------------------------------------------- */

static json_t *payload_json(struct sw_sandbox *sb, unsigned type, const uint8_t *p, uint32_t n)
{
	json_error_t jerr;
	json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);

	if (j == NULL || !json_is_object(j)) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "%s payload is not a JSON object%s%s",
			 sw_frame_type_name(type), j == NULL ? ": " : "",
			 j == NULL ? jerr.text : "");
		json_decref(j);
		return NULL;
	}
	return j;
}

static int on_ready(struct sw_sandbox *sb, const uint8_t *p, uint32_t n)
{
	json_t *j = payload_json(sb, SW_FRAME_READY, p, n);
	json_int_t version = 0, pid = 0;
	json_error_t jerr;
	int rc = -1;

	if (j == NULL)
		return -1;
	if (sb->ready) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "second READY");
	} else if (json_unpack_ex(j, &jerr, JSON_STRICT, "{s:I, s:I}", "version", &version, "pid",
				  &pid) != 0) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "bad READY: %s", jerr.text);
	} else if (version != SW_FRAME_VERSION) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "runner speaks version %lld, not %d",
			 (long long)version, SW_FRAME_VERSION);
	} else {
		sb->ready = true;
		rc = 0;
	}
	json_decref(j);
	return rc;
}

static int on_exit_frame(struct sw_sandbox *sb, const uint8_t *p, uint32_t n)
{
	json_t *j = payload_json(sb, SW_FRAME_EXIT, p, n);
	json_int_t status, sig, ut, st, rss;
	struct sw_sandbox_exit ex = {0};
	const char *error = NULL, *full = NULL;
	int timed_out, killed;
	json_error_t jerr;
	int rc = -1;

	if (j == NULL)
		return -1;
	if (json_unpack_ex(j, &jerr, JSON_STRICT, "{s:I, s:I, s:b, s:b, s:{s:I, s:I, s:I}, s?s, s?s}",
			   "status", &status, "signal", &sig, "timed_out", &timed_out, "killed",
			   &killed, "usage", "utime_us", &ut, "stime_us", &st, "maxrss_kb", &rss,
			   "error", &error, "disk_full", &full) != 0) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "bad EXIT: %s", jerr.text);
		goto out;
	}
	if (status < -1 || status > 255 || sig < 0 || sig > 64 || (status == -1) != (sig > 0) ||
	    ut < 0 || st < 0 || rss < 0 ||
	    (full != NULL && strcmp(full, "/workspace") != 0 && strcmp(full, "/tmp") != 0)) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "EXIT values out of range");
		goto out;
	}
	ex.status = (int)status;
	ex.signal = (int)sig;
	ex.timed_out = timed_out;
	ex.killed = killed;
	ex.usage.utime_us = ut;
	ex.usage.stime_us = st;
	ex.usage.maxrss_kb = rss;
	ex.error = error;
	/* one of two literals: valid after the payload is freed */
	ex.disk_full = full == NULL ? NULL : strcmp(full, "/tmp") == 0 ? "/tmp" : "/workspace";
	sb->busy = false;
	if (sb->ev->on_exit != NULL)
		sb->ev->on_exit(sb->ev_arg, &ex);
	rc = 0;
out:
	json_decref(j);
	return rc;
}

static int on_error_frame(struct sw_sandbox *sb, const uint8_t *p, uint32_t n)
{
	json_t *j = payload_json(sb, SW_FRAME_ERROR, p, n);
	const char *msg;
	json_error_t jerr;

	if (j == NULL)
		return -1;
	if (json_unpack_ex(j, &jerr, JSON_STRICT, "{s:s}", "message", &msg) != 0) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "bad ERROR: %s", jerr.text);
		json_decref(j);
		return -1;
	}
	snprintf(sb->runner_msg, sizeof(sb->runner_msg), "%s", msg);
	if (sb->ev->on_error != NULL)
		sb->ev->on_error(sb->ev_arg, msg);
	json_decref(j);
	return 0;
}

static int dispatch(void *arg, unsigned type, const uint8_t *p, uint32_t n)
{
	struct sw_sandbox *sb = arg;
	json_t *j;

	if (type == SW_FRAME_ERROR)
		return on_error_frame(sb, p, n);
	if (type == SW_FRAME_READY)
		return on_ready(sb, p, n);
	if (!sb->ready) {
		snprintf(sb->cb_err, sizeof(sb->cb_err), "%s before READY",
			 sw_frame_type_name(type));
		return -1;
	}
	switch (type) {
	case SW_FRAME_STDOUT:
	case SW_FRAME_STDERR:
		if (!sb->busy) {
			snprintf(sb->cb_err, sizeof(sb->cb_err), "output with no exec running");
			return -1;
		}
		if (sb->ev->on_output != NULL)
			sb->ev->on_output(sb->ev_arg, type == SW_FRAME_STDOUT ? 1 : 2, p, n);
		return 0;
	case SW_FRAME_EXIT:
		if (!sb->busy) {
			snprintf(sb->cb_err, sizeof(sb->cb_err), "EXIT with no exec running");
			return -1;
		}
		return on_exit_frame(sb, p, n);
	case SW_FRAME_CRED_REQUEST:
		if ((j = payload_json(sb, type, p, n)) == NULL)
			return -1;
		json_decref(j);
		if (sb->ev->on_cred_request != NULL)
			sb->ev->on_cred_request(sb->ev_arg, (const char *)p, n);
		return 0;
	}
	snprintf(sb->cb_err, sizeof(sb->cb_err), "unexpected %s", sw_frame_type_name(type));
	return -1;
}

int sw_sandbox_feed(struct sw_sandbox *sb, const void *buf, size_t len,
		    const struct sw_sandbox_events *ev, void *arg)
{
	char why[160];
	int rc;

	static const struct sw_sandbox_events none;

	if (sb->dead)
		return -1;
	sb->ev = ev != NULL ? ev : &none;
	sb->ev_arg = arg;
	sb->cb_err[0] = '\0';
	rc = sw_frame_parser_feed(sb->parser, buf, len, dispatch, sb, why, sizeof(why));
	sb->ev = NULL;
	if (rc != 0) {
		fail(sb, "tool runner: protocol error: %s", sb->cb_err[0] ? sb->cb_err : why);
		return -1;
	}
	return 0;
}

int sw_sandbox_read(struct sw_sandbox *sb, const struct sw_sandbox_events *ev, void *arg)
{
	for (int i = 0; i < READS_PER_CALL; i++) {
		struct iovec iov = {.iov_base = sb->rbuf, .iov_len = SW_FRAME_RECORD_MAX};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;

		if (sb->dead)
			return -1;
		n = recvmsg(sb->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			fail(sb, "control socket: %s", strerror(errno));
			return -1;
		}
		if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
			fail(sb, "tool runner: protocol error: record over %u bytes",
			     SW_FRAME_RECORD_MAX);
			return -1;
		}
		if (n == 0) {
			if (sw_frame_parser_partial(sb->parser))
				fail(sb, "tool runner: protocol error: stream ended mid-frame");
			else if (sb->runner_msg[0] != '\0')
				fail(sb, "tool runner exited: %s", sb->runner_msg);
			else
				fail(sb, "tool runner exited");
			return -1;
		}
		if (sw_sandbox_feed(sb, sb->rbuf, (size_t)n, ev, arg) != 0)
			return -1;
	}
	return 0;
}

/* ---- sending ------------------------------------------------------------ */

static int queue(struct sw_sandbox *sb, enum sw_frame_type type, const void *p, size_t n,
		 char *errstr, size_t errlen)
{
	if (sb->dead) {
		snprintf(errstr, errlen, "sandbox ended: %s", sb->error);
		return -1;
	}
	if (!sb->ready) {
		snprintf(errstr, errlen, "sandbox not ready");
		return -1;
	}
	if (n > SW_FRAME_MAX) {
		snprintf(errstr, errlen, "%s request of %zu bytes exceeds %u",
			 sw_frame_type_name(type), n, SW_FRAME_MAX);
		return -1;
	}
	if (sw_frame_outq_push(&sb->outq, type, p, n) != 0) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* 1 if s[0..n) is valid UTF-8 without NUL. */
static int utf8_ok(const char *s, size_t n)
{
	return memchr(s, '\0', n) == NULL && sw_utf8_valid(s, n);
}

/* 1 if every entry of v is UTF-8 (and NAME=value, need_env). */
static int strv_ok(const char *const *v, int need_env)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		if (!sw_utf8_valid(v[i], strlen(v[i])) || (need_env && !env_entry_ok(v[i])))
			return 0;
	return 1;
}

/* EXEC's payload holds the step's environment: built into a buffer this
 * function wipes. */
int sw_sandbox_exec_start(struct sw_sandbox *sb, const struct sw_sandbox_exec *ex, char *errstr,
			  size_t errlen)
{
	const char *cwd = ex->cwd ? ex->cwd : SW_SANDBOX_WORKSPACE;
	uint8_t *buf;
	size_t len;
	int rc;

	if (sb->busy) {
		snprintf(errstr, errlen, "sandbox busy: an exec is running");
		return -1;
	}
	if (ex->argv == NULL || ex->argv[0] == NULL || ex->argv[0][0] == '\0') {
		snprintf(errstr, errlen, "exec: empty argv");
		return -1;
	}
	if (!strv_ok(ex->argv, 0)) {
		snprintf(errstr, errlen, "exec: argv is not valid UTF-8");
		return -1;
	}
	if (!strv_ok(ex->env, 1)) {
		snprintf(errstr, errlen, "exec: bad environment entry (NAME=value, UTF-8)");
		return -1;
	}
	if (ex->stdin_data != NULL && !utf8_ok((const char *)ex->stdin_data, ex->stdin_len)) {
		snprintf(errstr, errlen, "exec: stdin is not valid UTF-8 (or holds NUL)");
		return -1;
	}
	if (!sw_utf8_valid(cwd, strlen(cwd))) {
		snprintf(errstr, errlen, "exec: cwd is not valid UTF-8");
		return -1;
	}
	buf = sw_frame_exec_encode((const char *const *)ex->argv, (const char *const *)ex->env,
				   cwd, ex->stdin_data, ex->stdin_len, ex->stdin_data != NULL,
				   ex->timeout_ms ? ex->timeout_ms : sb->limits.wall_ms, &len);
	if (buf == NULL) {
		snprintf(errstr, errlen,
			 "exec: request too large (over %u bytes, or over %u argv or %u env "
			 "entries), or out of memory",
			 SW_FRAME_MAX, SW_FRAME_ARGV_MAX, SW_FRAME_ENV_MAX);
		return -1;
	}
	rc = queue(sb, SW_FRAME_EXEC, buf, len, errstr, errlen);
	explicit_bzero(buf, len);
	free(buf);
	if (rc == 0)
		sb->busy = true;
	return rc;
}

int sw_sandbox_exec_kill(struct sw_sandbox *sb)
{
	char err[320];

	if (!sb->busy)
		return 0;
	return queue(sb, SW_FRAME_KILL, NULL, 0, err, sizeof(err));
}

/* INJECT_ENV carries a secret: its payload is wiped once queued. */
int sw_sandbox_inject_env(struct sw_sandbox *sb, const char *name, const char *value, char *errstr,
			  size_t errlen)
{
	size_t nl = strlen(name), vl = strlen(value), len;
	uint8_t *buf;
	int rc;

	if (!env_name_ok(name, nl)) {
		snprintf(errstr, errlen, "inject_env: bad variable name");
		return -1;
	}
	if (!utf8_ok(value, vl)) {
		snprintf(errstr, errlen, "inject_env: value is not valid UTF-8");
		return -1;
	}
	if ((buf = sw_frame_inject_encode(name, value, &len)) == NULL) {
		snprintf(errstr, errlen, "inject_env: value too large, or out of memory");
		return -1;
	}
	rc = queue(sb, SW_FRAME_INJECT_ENV, buf, len, errstr, errlen);
	explicit_bzero(buf, len);
	free(buf);
	return rc;
}

/* CRED_ANSWER may carry a value: wiped as INJECT_ENV. */
int sw_sandbox_cred_answer(struct sw_sandbox *sb, uint32_t id, int status, const char *code,
			   const char *name, const char *text, char *errstr, size_t errlen)
{
	size_t nl = strlen(name), len;
	uint8_t *buf;
	int rc;

	if ((status == 0 && !env_name_ok(name, nl)) || status < 0 || status > 3) {
		snprintf(errstr, errlen, "cred_answer: bad variable name or status");
		return -1;
	}
	if (!utf8_ok(text, strlen(text)) || !utf8_ok(code, strlen(code))) {
		snprintf(errstr, errlen, "cred_answer: text is not valid UTF-8");
		return -1;
	}
	buf = status == 0 ? sw_frame_answer_encode(id, 0, name, text, &len)
			  : sw_frame_answer_encode(id, (uint32_t)status, code, text, &len);
	if (buf == NULL) {
		snprintf(errstr, errlen, "cred_answer: text too large, or out of memory");
		return -1;
	}
	rc = queue(sb, SW_FRAME_CRED_ANSWER, buf, len, errstr, errlen);
	explicit_bzero(buf, len);
	free(buf);
	return rc;
}

bool sw_sandbox_want_write(const struct sw_sandbox *sb)
{
	return !sb->dead && sw_frame_outq_pending(&sb->outq) > 0;
}

int sw_sandbox_flush(struct sw_sandbox *sb)
{
	if (sb->dead)
		return -1;
	if (sw_frame_outq_flush(&sb->outq, sb->fd) != 0) {
		fail(sb, "control socket: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- blocking convenience ----------------------------------------------- */

struct run_ctx {
	struct sw_sandbox_result *res;
	size_t max;
	bool done;
};

static void grow_append(char **buf, size_t *len, bool *trunc, size_t max, const uint8_t *p,
			size_t n)
{
	size_t room = max - *len;

	if (n > room) {
		n = room;
		*trunc = true;
	}
	if (n == 0)
		return;
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
}

static void run_output(void *arg, int stream, const uint8_t *buf, size_t len)
{
	struct run_ctx *c = arg;
	struct sw_sandbox_result *r = c->res;

	if (stream == 1)
		grow_append(&r->out, &r->out_len, &r->out_truncated, c->max, buf, len);
	else
		grow_append(&r->err, &r->err_len, &r->err_truncated, c->max, buf, len);
}

static void run_exit(void *arg, const struct sw_sandbox_exit *ex)
{
	struct run_ctx *c = arg;
	struct sw_sandbox_result *r = c->res;

	r->exit = *ex;
	r->exit.error = NULL;
	if (ex->error != NULL) {
		snprintf(r->error, sizeof(r->error), "%s", ex->error);
		r->exit.error = r->error;
	}
	c->done = true;
}

int sw_sandbox_run(struct sw_sandbox *sb, const struct sw_sandbox_exec *ex, size_t max_output,
		   struct sw_sandbox_result *res, char *errstr, size_t errlen)
{
	static const struct sw_sandbox_events evs = {.on_output = run_output, .on_exit = run_exit};
	struct run_ctx c = {.res = res, .max = max_output};
	uint64_t timeout = ex->timeout_ms ? ex->timeout_ms : sb->limits.wall_ms;
	int64_t deadline = mono_ms() + (int64_t)timeout + RUN_GRACE_MS;

	memset(res, 0, sizeof(*res));
	if ((res->out = malloc(max_output + 1)) == NULL ||
	    (res->err = malloc(max_output + 1)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	res->out[0] = res->err[0] = '\0';
	if (sw_sandbox_exec_start(sb, ex, errstr, errlen) != 0)
		goto fail;
	while (!c.done) {
		struct pollfd pfd = {.fd = sb->fd, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		int rc;

		if (sw_sandbox_want_write(sb))
			pfd.events |= POLLOUT;
		if (left <= 0) {
			fail(sb, "tool runner did not end the command %d ms past its timeout",
			     RUN_GRACE_MS);
			break;
		}
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno != EINTR) {
			fail(sb, "poll: %s", strerror(errno));
			break;
		}
		if (rc <= 0)
			continue;
		if ((pfd.revents & POLLOUT) && sw_sandbox_flush(sb) != 0)
			break;
		if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) &&
		    sw_sandbox_read(sb, &evs, &c) != 0)
			break;
	}
	if (!c.done) {
		snprintf(errstr, errlen, "sandbox: %s", sb->error);
		goto fail;
	}
	return 0;
fail:
	sw_sandbox_result_free(res);
	return -1;
}

void sw_sandbox_result_free(struct sw_sandbox_result *res)
{
	free(res->out);
	free(res->err);
	res->out = res->err = NULL;
	res->out_len = res->err_len = 0;
}

int sw_sandbox_bind_loopback(int s, uint16_t port, int wait_ms)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timespec ms = {0, 1000000};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0;; i++) {
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			return 0;
		if (errno != EADDRNOTAVAIL || i >= wait_ms)
			return -1;
		nanosleep(&ms, NULL);
	}
}
