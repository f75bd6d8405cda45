/*
 * service.c: the daemon frame of sw_service.h: command line, configuration,
 * logging, the loop, signals and the graceful drain, the HTTP server with
 * /healthz and /metrics, the port report, fatal stops and teardown.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>
#include <event2/thread.h>

#include "sw_http.h"
#include "sw_service.h"

#define DRAIN_MS_DEFAULT 5000
#define DRAIN_TICK_MS 20
#define STARTED_KV_MAX 32

extern char **environ;

struct sw_service {
	const struct sw_service_def *def;
	void *arg;
	struct sw_config cfg;
	char *const *envp;
	struct event_base *base;
	struct sw_metrics *metrics;
	struct sw_http *http;
	struct event *sigterm, *sigint, *drain_ev;
	int draining;
	int halted; /* sw_service_fatal was called */
	int64_t drain_deadline_ms;
	int exit_code;
	int port_fd; /* $SAGEWAI_PORT_FILE until the port is in it, else -1 */
	char instance[256];
	char *started_kv[STARTED_KV_MAX + 1]; /* copies, NULL-terminated */
};

struct event_base *sw_service_base(struct sw_service *svc)
{
	return svc->base;
}

const struct sw_config *sw_service_config(const struct sw_service *svc)
{
	return &svc->cfg;
}

char *const *sw_service_environ(const struct sw_service *svc)
{
	return svc->envp;
}

struct sw_metrics *sw_service_metrics(struct sw_service *svc)
{
	return svc->metrics;
}

const char *sw_service_instance(const struct sw_service *svc)
{
	return svc->instance;
}

const char *sw_service_name(const struct sw_service *svc)
{
	return svc->def->name;
}

int sw_service_draining(const struct sw_service *svc)
{
	return svc->draining;
}

int sw_service_halted(const struct sw_service *svc)
{
	return svc->halted;
}

int sw_service_stopping(const struct sw_service *svc)
{
	return svc->halted || svc->draining;
}

static int health(void *opaque)
{
	struct sw_service *svc = opaque;

	return svc->def->health != NULL ? svc->def->health(svc->arg) : 0;
}

struct sw_http *sw_service_http(struct sw_service *svc, size_t max_body, char *err,
				size_t errlen)
{
	struct sw_http_limits lim;
	struct rlimit rl;
	long long n;
	rlim_t want;

	if (svc->http != NULL)
		return svc->http;
	sw_http_limits_default(&lim);
	if (sw_config_number(svc->envp, "SAGEWAI_HTTP_MAX_CONNECTIONS", lim.max_connections, 1,
			     1000000, &n, err, errlen) == -1)
		return NULL;
	lim.max_connections = (unsigned)n;
	/* A cap set: room for that many sockets besides the service's own
	 * descriptors (above the soft limit, it would turn into failed
	 * accepts). The default is left to the host's limit, as before. */
	want = (rlim_t)n + 256;
	if (sw_config_env(svc->envp, "SAGEWAI_HTTP_MAX_CONNECTIONS") != NULL &&
	    getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if ((rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) ||
		    setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			snprintf(
			    err, errlen,
			    "SAGEWAI_HTTP_MAX_CONNECTIONS %lld: the open-files limit (hard %llu) "
			    "leaves no room for that many",
			    n, (unsigned long long)rl.rlim_max);
			return NULL;
		}
	}
	svc->http = sw_http_new_opts(svc->base, svc->cfg.http_addr, svc->cfg.http_port, max_body,
				     &lim, svc->metrics, health, svc, err, errlen);
	return svc->http;
}

void sw_service_fatal(struct sw_service *svc, const char *what, const char *why)
{
	sw_log(SW_LOG_ERROR, what, "error", why, NULL);
	svc->exit_code = 1;
	svc->halted = 1;
	if (svc->def->halt != NULL)
		svc->def->halt(svc->arg);
	event_base_loopbreak(svc->base);
}

void sw_service_on_fatal(void *svc, const char *what, const char *why)
{
	sw_service_fatal(svc, what, why);
}

void sw_service_started_fields(struct sw_service *svc, const char *const *kv)
{
	size_t i;

	for (i = 0; svc->started_kv[i] != NULL; i++)
		free(svc->started_kv[i]);
	svc->started_kv[0] = NULL;
	for (i = 0; kv[i] != NULL && kv[i + 1] != NULL && i + 2 <= STARTED_KV_MAX; i += 2) {
		svc->started_kv[i] = strdup(kv[i]);
		svc->started_kv[i + 1] = strdup(kv[i + 1]);
		svc->started_kv[i + 2] = NULL;
		if (svc->started_kv[i] == NULL || svc->started_kv[i + 1] == NULL) {
			free(svc->started_kv[i]);
			free(svc->started_kv[i + 1]);
			svc->started_kv[i] = NULL;
			break;
		}
	}
}

static void drain_tick(evutil_socket_t fd, short what, void *opaque)
{
	struct sw_service *svc = opaque;

	(void)fd;
	(void)what;
	if (svc->def->drained == NULL || svc->def->drained(svc->arg) ||
	    sw_mono_ms() > svc->drain_deadline_ms)
		event_base_loopbreak(svc->base);
}

void sw_service_shutdown(struct sw_service *svc)
{
	struct timeval tv = {0, DRAIN_TICK_MS * 1000};
	int ms = svc->def->drain_ms > 0 ? svc->def->drain_ms : DRAIN_MS_DEFAULT;

	if (svc->draining)
		return;
	svc->draining = 1;
	svc->drain_deadline_ms = sw_mono_ms() + ms;
	if (svc->def->drain != NULL)
		svc->def->drain(svc, svc->arg);
	svc->drain_ev = event_new(svc->base, -1, EV_PERSIST, drain_tick, svc);
	if (svc->drain_ev == NULL || event_add(svc->drain_ev, &tv) == -1)
		event_base_loopbreak(svc->base);
}

static void on_signal(evutil_socket_t sig, short what, void *opaque)
{
	struct sw_service *svc = opaque;

	(void)what;
	if (svc->draining) {
		sw_log(SW_LOG_WARN, "second signal: stopping now", NULL);
		event_base_loopbreak(svc->base);
		return;
	}
	sw_log(SW_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
	sw_service_shutdown(svc);
}

/*
 * $SAGEWAI_PORT_FILE is opened (created empty, or emptied) before
 * configure, while the process still has the rights it was started with:
 * a service that drops them (sandboxd) could not create it afterwards.
 * The port goes in with one write once the server listens; a reader treats
 * an empty file as "not yet".
 */
static int port_file_open(struct sw_service *svc, char *err, size_t errlen)
{
	const char *path = sw_config_env(svc->envp, "SAGEWAI_PORT_FILE");

	svc->port_fd = -1;
	if (path == NULL || *path == '\0')
		return 0;
	svc->port_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (svc->port_fd == -1) {
		snprintf(err, errlen, "SAGEWAI_PORT_FILE %.300s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int port_file_write(struct sw_service *svc, int port, char *err, size_t errlen)
{
	char line[16];
	int n = snprintf(line, sizeof(line), "%d\n", port);

	if (svc->port_fd == -1)
		return 0;
	if (write(svc->port_fd, line, (size_t)n) != n) {
		snprintf(err, errlen, "SAGEWAI_PORT_FILE: %s", strerror(errno));
		return -1;
	}
	close(svc->port_fd);
	svc->port_fd = -1;
	return 0;
}

static void started(struct sw_service *svc, int port)
{
	const char *kv[STARTED_KV_MAX + 4];
	char msg[96], ports[16];
	size_t n = 0, i;

	snprintf(msg, sizeof(msg), "%s started", svc->def->name);
	snprintf(ports, sizeof(ports), "%d", port);
	if (port > 0) {
		kv[n++] = "http_port";
		kv[n++] = ports;
	}
	for (i = 0; svc->started_kv[i] != NULL; i++)
		kv[n++] = svc->started_kv[i];
	kv[n] = NULL;
	sw_log_kv(SW_LOG_INFO, msg, kv);
}

static void teardown(struct sw_service *svc)
{
	size_t i;

	if (svc->def->stop != NULL)
		svc->def->stop(svc, svc->arg);
	if (svc->http != NULL)
		sw_http_destroy(svc->http);
	if (svc->metrics != NULL)
		sw_metrics_destroy(svc->metrics);
	if (svc->drain_ev != NULL)
		event_free(svc->drain_ev);
	if (svc->sigterm != NULL)
		event_free(svc->sigterm);
	if (svc->sigint != NULL)
		event_free(svc->sigint);
	if (svc->base != NULL)
		event_base_free(svc->base);
	if (svc->port_fd != -1)
		close(svc->port_fd);
	for (i = 0; svc->started_kv[i] != NULL; i++)
		free(svc->started_kv[i]);
}

static int serve(const struct sw_service_def *def, void *arg)
{
	struct sw_service svc_s, *svc = &svc_s;
	char err[1024], host[128], msg[96];

	memset(svc, 0, sizeof(*svc));
	svc->def = def;
	svc->arg = arg;
	svc->envp = environ;
	svc->port_fd = -1;
	if (sw_config_load(&svc->cfg, getenv("SAGEWAI_CONFIG"), environ, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagewai-%s: configuration: %s\n", def->name, err);
		return 2;
	}
	sw_log_init(def->name, stderr, sw_log_level_parse(svc->cfg.log_level));
	if (port_file_open(svc, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "bad configuration", "error", err, NULL);
		return 2;
	}
	if (sodium_init() < 0) {
		sw_log(SW_LOG_ERROR, "bad configuration", "error",
		       "libsodium initialisation failed", NULL);
		return 2;
	}
	if (def->configure != NULL && def->configure(svc, arg, err, sizeof(err)) == -1) {
		sw_log(SW_LOG_ERROR, "bad configuration", "error", err, NULL);
		if (def->stop != NULL)
			def->stop(svc, arg);
		return 2;
	}
	/* after configure: a service that forks there (a privileged part)
	 * names the process that runs the loop */
	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(svc->instance, sizeof(svc->instance), "sagewai-%s@%s/%d", def->name, host,
		 (int)getpid());
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() == -1 || (svc->base = event_base_new()) == NULL) {
		snprintf(err, sizeof(err), "libevent initialisation failed");
		goto fail;
	}
	if ((svc->metrics = sw_metrics_new()) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	svc->sigterm = evsignal_new(svc->base, SIGTERM, on_signal, svc);
	svc->sigint = evsignal_new(svc->base, SIGINT, on_signal, svc);
	if (svc->sigterm == NULL || svc->sigint == NULL || evsignal_add(svc->sigterm, NULL) == -1 ||
	    evsignal_add(svc->sigint, NULL) == -1) {
		snprintf(err, sizeof(err), "cannot install signal events");
		goto fail;
	}
	if (def->start(svc, arg, err, sizeof(err)) == -1)
		goto fail;
	if (svc->http != NULL &&
	    port_file_write(svc, sw_http_port(svc->http), err, sizeof(err)) == -1)
		goto fail;
	started(svc, svc->http != NULL ? sw_http_port(svc->http) : 0);

	event_base_dispatch(svc->base);

	snprintf(msg, sizeof(msg), "%s stopped", def->name);
	teardown(svc);
	sw_log(SW_LOG_INFO, msg, NULL);
	return svc->exit_code;
fail:
	snprintf(msg, sizeof(msg), "%s failed to start", def->name);
	sw_log(SW_LOG_ERROR, msg, "error", err, NULL);
	teardown(svc);
	return 1;
}

static void usage(const struct sw_service_def *def, FILE *f)
{
	fprintf(f, "usage: sagewai-%s [serve]\n", def->name);
	if (def->synopsis != NULL)
		fputs(def->synopsis, f);
	if (def->help != NULL)
		fprintf(f, "\n%s", def->help);
	fprintf(f, "\nEvery setting comes from the environment or the KEY=VALUE file named by\n"
		   "$SAGEWAI_CONFIG (the environment wins). /healthz and /metrics listen on\n"
		   "$SAGEWAI_HTTP_ADDR:$SAGEWAI_HTTP_PORT (port 0, the default: the kernel\n"
		   "picks one, reported in the \"started\" log line and in $SAGEWAI_PORT_FILE).\n"
		   "SIGTERM or SIGINT drains gracefully; a second one stops at once.\n");
}

int sw_service_main(const struct sw_service_def *def, void *arg, int argc, char **argv)
{
	const struct sw_service_cmd *c;

	if (argc < 2 || strcmp(argv[1], "serve") == 0) {
		if (argc > 2) {
			fprintf(stderr, "sagewai-%s: serve takes no arguments\n", def->name);
			return 2;
		}
		return serve(def, arg);
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(def, stdout);
		return 0;
	}
	for (c = def->cmds; c != NULL && c->name != NULL; c++)
		if (strcmp(argv[1], c->name) == 0)
			return c->run(argc - 1, argv + 1);
	fprintf(stderr, "sagewai-%s: unknown command '%s'\n", def->name, argv[1]);
	usage(def, stderr);
	return 2;
}
