/*
 * Running the sagewai binary from a test: its argv and an explicit
 * environment in, its exit status, stdout and stderr out.
 */
#ifndef CLI_SPAWN_H
#define CLI_SPAWN_H

#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw_test.h"

struct cli_out {
	int status; /* exit code, or 128 + signal */
	char *out;  /* stdout, NUL-terminated (owned) */
	char *err;  /* stderr */
};

static inline char *cli_slurp(int fd)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	ssize_t got;

	SW_CHECK(b != NULL);
	SW_CHECK(lseek(fd, 0, SEEK_SET) == 0);
	while ((got = read(fd, b + n, cap - n - 1)) > 0) {
		n += (size_t)got;
		if (n + 1 == cap) {
			cap *= 2;
			SW_CHECK((b = realloc(b, cap)) != NULL);
		}
	}
	SW_CHECK(got == 0);
	b[n] = '\0';
	return b;
}

static inline int cli_tmpfd(void)
{
	char path[] = "/tmp/sagewai-cli-test-XXXXXX";
	int fd = mkstemp(path);

	SW_CHECK(fd != -1);
	unlink(path);
	return fd;
}

/* Run bin with args (NULL-terminated, without argv[0]) and envp
 * (NULL-terminated); stdin from stdin_path or /dev/null. */
static inline void cli_runv(const char *bin, const char *const *args, char *const *envp,
			    const char *stdin_path, struct cli_out *o)
{
	posix_spawn_file_actions_t fa;
	const char *argv[64];
	int ofd = cli_tmpfd(), efd = cli_tmpfd(), st, i;
	pid_t pid;

	argv[0] = bin;
	for (i = 0; args[i] != NULL; i++) {
		SW_CHECK(i < 62);
		argv[i + 1] = args[i];
	}
	argv[i + 1] = NULL;
	SW_CHECK(posix_spawn_file_actions_init(&fa) == 0);
	SW_CHECK(posix_spawn_file_actions_addopen(&fa, 0, stdin_path ? stdin_path : "/dev/null",
						  O_RDONLY, 0) == 0);
	SW_CHECK(posix_spawn_file_actions_adddup2(&fa, ofd, 1) == 0);
	SW_CHECK(posix_spawn_file_actions_adddup2(&fa, efd, 2) == 0);
	SW_CHECKF(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, envp) == 0,
		  "cannot run %s", bin);
	posix_spawn_file_actions_destroy(&fa);
	SW_CHECK(waitpid(pid, &st, 0) == pid);
	o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	o->out = cli_slurp(ofd);
	o->err = cli_slurp(efd);
	close(ofd);
	close(efd);
}

static inline void cli_out_free(struct cli_out *o)
{
	free(o->out);
	free(o->err);
	memset(o, 0, sizeof(*o));
}

/* Number of lines (newline-terminated) in s; a missing final newline counts too. */
static inline int cli_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		if (*s == '\n' || s[1] == '\0')
			n++;
	return n;
}

/* Print what the command did (on a failed check it tells why). */
static inline void cli_out_dump(const char *what, const struct cli_out *o)
{
	fprintf(stderr, "--- %s: exit %d\n--- stdout:\n%s--- stderr:\n%s---\n", what, o->status,
		o->out, o->err);
}

#endif
