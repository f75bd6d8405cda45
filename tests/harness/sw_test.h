/*
 * sw_test: the few macros our C tests share, and access to the harness.
 *
 * Tests are plain programs: exit 0 passes, anything else fails (ctest).
 * SW_CHECK prints file:line and the failed expression and exits 1.
 * sw_test_env_load() reads the KEY=VALUE file the harness fixture wrote
 * (path in $SW_HARNESS_ENV) into the environment, so real-broker tests
 * find SAGEWAI_KAFKA_BOOTSTRAP, SAGEWAI_PG_DSN and SW_HARNESS_DIR.
 */
#ifndef SW_TEST_H
#define SW_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SW_CHECK(cond)                                                                      \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
				#cond);                                                     \
			exit(1);                                                            \
		}                                                                           \
	} while (0)

#define SW_CHECKF(cond, ...)                                                                \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,    \
				#cond);                                                     \
			fprintf(stderr, __VA_ARGS__);                                       \
			fputc('\n', stderr);                                                \
			exit(1);                                                            \
		}                                                                           \
	} while (0)

static inline void sw_test_env_load(void)
{
	const char *path = getenv("SW_HARNESS_ENV");
	char line[1024];
	FILE *f;

	if (path == NULL) {
		fprintf(stderr, "SW_HARNESS_ENV is not set: run this test through ctest\n");
		exit(1);
	}
	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "cannot read harness env %s: is the harness fixture up?\n", path);
		exit(1);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *eq = strchr(line, '=');
		size_t n = strlen(line);

		if (n > 0 && line[n - 1] == '\n')
			line[n - 1] = '\0';
		if (eq == NULL || line[0] == '#')
			continue;
		*eq = '\0';
		setenv(line, eq + 1, 1);
	}
	fclose(f);
}

#endif
