/*
 * sagewai-devbroker: an embedded Kafka for local runs and fault injection.
 *
 * Starts librdkafka's mock cluster with N brokers, creates every sagewai
 * topic (P partitions each, sagewai.audit.checkpoints one), prints the bootstrap servers as the
 * first line on stdout (and writes them to --bootstrap-file), then serves until SIGTERM or SIGINT.
 *
 * Fault injection: one command per line on stdin, answered "ok" or
 * "error: ..." on stdout:
 *   down N       take broker N (1-based) down: connections closed, refused
 *   up N         bring broker N back
 *   rtt N MS     delay broker N's responses by MS milliseconds
 *   topic NAME P create topic NAME with P partitions
 * End of stdin is not a stop signal: the broker serves on.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sw_bus.h"

struct devbroker {
	struct event_base *base;
	rd_kafka_t *rk; /* handle the mock cluster hangs off */
	rd_kafka_mock_cluster_t *mc;
	int brokers;
	int partitions;
	char line[256]; /* partial stdin line */
	size_t linelen;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sagewai-devbroker [--brokers N] [--partitions P] "
		   "[--bootstrap-file PATH]\n");
}

static int parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* A terminal, pipe or socket on stdin can carry commands; a file or
 * /dev/null cannot be polled and carries none. */
static int stdin_is_control(void)
{
	struct stat st;

	if (isatty(STDIN_FILENO))
		return 1;
	if (fstat(STDIN_FILENO, &st) == -1)
		return 0;
	return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
}

static int write_bootstrap_file(const char *path, const char *bootstrap)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	if ((f = fopen(tmp, "w")) == NULL)
		return -1;
	if (fprintf(f, "%s\n", bootstrap) < 0) {
		fclose(f);
		return -1;
	}
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

/* One stdin command; the answer goes to stdout. */
static void command(struct devbroker *db, char *line)
{
	char *argv[4] = {0};
	int argc = 0, id, ms;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	char *save = NULL, *tok;

	for (tok = strtok_r(line, " \t\r", &save); tok != NULL && argc < 4;
	     tok = strtok_r(NULL, " \t\r", &save))
		argv[argc++] = tok;
	if (argc == 0)
		return;
	if ((strcmp(argv[0], "down") == 0 || strcmp(argv[0], "up") == 0) && argc == 2 &&
	    parse_int(argv[1], 1, db->brokers, &id) == 0) {
		if (argv[0][0] == 'd')
			err = rd_kafka_mock_broker_set_down(db->mc, id);
		else
			err = rd_kafka_mock_broker_set_up(db->mc, id);
	} else if (strcmp(argv[0], "rtt") == 0 && argc == 3 &&
		   parse_int(argv[1], 1, db->brokers, &id) == 0 &&
		   parse_int(argv[2], 0, 600000, &ms) == 0) {
		err = rd_kafka_mock_broker_set_rtt(db->mc, id, ms);
	} else if (strcmp(argv[0], "topic") == 0 && argc == 3 &&
		   parse_int(argv[2], 1, 10000, &ms) == 0) {
		err = rd_kafka_mock_topic_create(db->mc, argv[1], ms,
						 db->brokers < 3 ? db->brokers : 3);
	} else {
		printf("error: unknown command (down N | up N | rtt N MS | topic NAME P)\n");
		fflush(stdout);
		return;
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		printf("error: %s\n", rd_kafka_err2str(err));
	else
		printf("ok\n");
	fflush(stdout);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
	struct devbroker *db = arg;
	char buf[512];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* End of input: stop listening, keep serving. */
		event_del(event_base_get_running_event(db->base));
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			db->line[db->linelen] = '\0';
			command(db, db->line);
			db->linelen = 0;
		} else if (db->linelen < sizeof(db->line) - 1) {
			db->line[db->linelen++] = buf[i];
		}
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct devbroker *db = arg;

	(void)sig;
	(void)what;
	event_base_loopbreak(db->base);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"brokers", required_argument, NULL, 'b'},
	    {"partitions", required_argument, NULL, 'p'},
	    {"bootstrap-file", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct devbroker db = {.brokers = 1, .partitions = 4};
	struct event *ev_term = NULL, *ev_int = NULL, *ev_in = NULL;
	const char *bootstrap_file = NULL, *bootstrap;
	rd_kafka_conf_t *conf;
	char errstr[512];
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "b:p:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (parse_int(optarg, 1, 64, &db.brokers) == -1) {
				fprintf(stderr, "devbroker: --brokers wants 1..64\n");
				return 2;
			}
			break;
		case 'p':
			if (parse_int(optarg, 1, 1000, &db.partitions) == -1) {
				fprintf(stderr, "devbroker: --partitions wants 1..1000\n");
				return 2;
			}
			break;
		case 'f':
			bootstrap_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	conf = rd_kafka_conf_new();
	/* This handle only hosts the cluster: no notice about its own missing
	 * bootstrap.servers. */
	rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
	if ((db.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
		rd_kafka_conf_destroy(conf);
		fprintf(stderr, "devbroker: %s\n", errstr);
		return 1;
	}
	if ((db.mc = rd_kafka_mock_cluster_new(db.rk, db.brokers)) == NULL) {
		fprintf(stderr, "devbroker: cannot start the mock cluster\n");
		goto out;
	}
	for (const char *const *t = sw_bus_topics; *t != NULL; t++) {
		/* as in infra/kafka/topics.tsv: checkpoints are one ordered stream */
		int parts = strcmp(*t, SW_TOPIC_AUDIT_CHECKPOINTS) == 0 ? 1 : db.partitions;
		rd_kafka_resp_err_t err =
		    rd_kafka_mock_topic_create(db.mc, *t, parts, db.brokers < 3 ? db.brokers : 3);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "devbroker: topic %s: %s\n", *t, rd_kafka_err2str(err));
			goto out;
		}
	}
	bootstrap = rd_kafka_mock_cluster_bootstraps(db.mc);

	if ((db.base = event_base_new()) == NULL) {
		fprintf(stderr, "devbroker: event_base_new failed\n");
		goto out;
	}
	ev_term = evsignal_new(db.base, SIGTERM, on_signal, &db);
	ev_int = evsignal_new(db.base, SIGINT, on_signal, &db);
	if (stdin_is_control())
		ev_in = event_new(db.base, STDIN_FILENO, EV_READ | EV_PERSIST, on_stdin, &db);
	if (ev_term == NULL || ev_int == NULL || event_add(ev_term, NULL) == -1 ||
	    event_add(ev_int, NULL) == -1) {
		fprintf(stderr, "devbroker: cannot watch signals\n");
		goto out;
	}
	if (ev_in != NULL && event_add(ev_in, NULL) == -1) {
		event_free(ev_in);
		ev_in = NULL;
	}

	if (bootstrap_file != NULL && write_bootstrap_file(bootstrap_file, bootstrap) == -1) {
		fprintf(stderr, "devbroker: cannot write %s: %s\n", bootstrap_file,
			strerror(errno));
		goto out;
	}
	printf("%s\n", bootstrap);
	fflush(stdout);

	if (event_base_dispatch(db.base) == -1) {
		fprintf(stderr, "devbroker: event loop failed\n");
		goto out;
	}
	rc = 0;
out:
	if (ev_in != NULL)
		event_free(ev_in);
	if (ev_int != NULL)
		event_free(ev_int);
	if (ev_term != NULL)
		event_free(ev_term);
	if (db.base != NULL)
		event_base_free(db.base);
	if (db.mc != NULL)
		rd_kafka_mock_cluster_destroy(db.mc);
	rd_kafka_destroy(db.rk);
	return rc;
}
