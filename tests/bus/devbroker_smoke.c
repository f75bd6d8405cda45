/*
 * devbroker_smoke: sagewai-devbroker (argv[1]) prints its bootstrap first
 * and writes it to --bootstrap-file, serves the sagewai topics to sw_bus,
 * answers its stdin control, and exits 0 on SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bus_test.h"

static FILE *to_broker, *from_broker;

static void control(const char *cmd, const char *want_prefix)
{
	char line[256];

	fprintf(to_broker, "%s\n", cmd);
	fflush(to_broker);
	SW_CHECKF(fgets(line, sizeof(line), from_broker) != NULL, "no answer to %s", cmd);
	SW_CHECKF(strncmp(line, want_prefix, strlen(want_prefix)) == 0, "%s: %s", cmd, line);
}

static int assigned_three(void *arg)
{
	return sw_bus_consumer_assigned(arg) == 3;
}

int main(int argc, char **argv)
{
	char bfile[] = "/tmp/devbroker-smoke-XXXXXX", line[512], fline[512], err[512];
	const char *topics[] = {SW_TOPIC_RUNS, NULL};
	struct event_base *base = event_base_new();
	int in[2], out[2], status, fd;
	struct sw_bus_producer *p;
	struct sink s = {0};
	struct drs d = {0};
	FILE *f;
	pid_t pid;

	SW_CHECK(argc == 2);
	SW_CHECK((fd = mkstemp(bfile)) >= 0);
	close(fd);
	SW_CHECK(pipe(in) == 0 && pipe(out) == 0);
	pid = fork();
	SW_CHECK(pid >= 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl(argv[1], argv[1], "--brokers", "2", "--partitions", "3", "--bootstrap-file",
		      bfile, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	to_broker = fdopen(in[1], "w");
	from_broker = fdopen(out[0], "r");
	SW_CHECK(to_broker != NULL && from_broker != NULL);

	SW_CHECK(fgets(line, sizeof(line), from_broker) != NULL);
	line[strcspn(line, "\n")] = '\0';
	SW_CHECKF(strchr(line, ':') != NULL && strchr(line, ',') != NULL, "bootstrap %s", line);
	SW_CHECK((f = fopen(bfile, "r")) != NULL);
	SW_CHECK(fgets(fline, sizeof(fline), f) != NULL);
	fclose(f);
	unlink(bfile);
	fline[strcspn(fline, "\n")] = '\0';
	SW_CHECK(strcmp(line, fline) == 0);

	p = sw_bus_producer_new(base, line, "smoke", NULL, drs_cb, &d, err, sizeof(err));
	SW_CHECKF(p != NULL, "%s", err);
	s.c = sw_bus_consumer_new(base, line, "g.smoke", topics, NULL, 8, sink_cb, &s, err,
				  sizeof(err));
	SW_CHECKF(s.c != NULL, "%s", err);
	SW_CHECKF(run_until(base, assigned_three, s.c, 60), "assigned %d",
		  sw_bus_consumer_assigned(s.c));
	produce_seq(p, SW_TOPIC_RUNS, 0, 30, 6);
	RUN_UNTIL_COUNT(base, &d.ok, 30, 60);
	RUN_UNTIL_COUNT(base, &s.n, 30, 60);
	check_seq(&s, 0, 30, 6);

	control("down 2", "ok");
	control("up 2", "ok");
	control("rtt 1 0", "ok");
	control("topic t.extra 2", "ok");
	control("down 3", "error");
	control("bogus", "error");

	sw_bus_consumer_destroy(s.c);
	sw_bus_producer_destroy(p);
	sink_reset(&s);
	event_base_free(base);

	SW_CHECK(kill(pid, SIGTERM) == 0);
	SW_CHECK(waitpid(pid, &status, 0) == pid);
	SW_CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
	fclose(to_broker);
	fclose(from_broker);
	printf("devbroker_smoke: ok\n");
	return 0;
}
