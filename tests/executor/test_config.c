/*
 * core_config_settings: the setting helpers of sw_core the services share
 * (sw_config_number, sw_config_list) and sw_log_kv. They sit with the
 * executor's tests because they came out of the executors' main.c files.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sw_core.h"
#include "sw_test.h"

static void t_number(void)
{
	char *env[] = {"A=42", "B=", "C=-3", "D=12x", "E=99999999999999999999", "F=0", "G= 7",
		       NULL};
	char err[256];
	long long n;

	SW_CHECK(sw_config_number(env, "A", 5, 1, 100, &n, err, sizeof(err)) == 0 && n == 42);
	SW_CHECK(sw_config_number(env, "B", 5, 1, 100, &n, err, sizeof(err)) == 0 && n == 5);
	SW_CHECK(sw_config_number(env, "MISSING", 5, 1, 100, &n, err, sizeof(err)) == 0 &&
		 n == 5);
	SW_CHECK(sw_config_number(NULL, "A", 6, 1, 100, &n, err, sizeof(err)) == 0 && n == 6);
	n = 77;
	SW_CHECK(sw_config_number(env, "A", 5, 1, 10, &n, err, sizeof(err)) == -1 && n == 77);
	SW_CHECKF(strcmp(err, "A: '42' is not a number in 1..10") == 0, "%s", err);
	SW_CHECK(sw_config_number(env, "C", 5, 0, 10, &n, err, sizeof(err)) == -1);
	SW_CHECK(sw_config_number(env, "D", 5, 0, 100, &n, err, sizeof(err)) == -1);
	SW_CHECK(sw_config_number(env, "E", 5, 0, LLONG_MAX, &n, err, sizeof(err)) == -1);
	SW_CHECKF(strcmp(err, "E: '99999999999999999999' is not a number >= 0") == 0, "%s", err);
	SW_CHECK(sw_config_number(env, "F", 5, 0, 10, &n, err, sizeof(err)) == 0 && n == 0);
	SW_CHECK(sw_config_number(env, "F", 5, 1, 10, &n, err, sizeof(err)) == -1);
	SW_CHECK(sw_config_number(env, "A", 5, 42, 42, &n, err, sizeof(err)) == 0 && n == 42);
	SW_CHECK(sw_config_number(env, "G", 5, 1, 10, &n, err, sizeof(err)) == 0 && n == 7);
}

static void t_list(void)
{
	char *env[] = {"K=a=1,b=2,,c=3,", "E=", "ONE=x=y", NULL};
	const char *out[5] = {"fixed=1"};
	char buf[64], small[8], err[256];

	SW_CHECK(sw_config_list(env, "K", out, 1, 5, buf, sizeof(buf), err, sizeof(err)) == 4);
	SW_CHECK(strcmp(out[0], "fixed=1") == 0 && strcmp(out[1], "a=1") == 0 &&
		 strcmp(out[2], "b=2") == 0 && strcmp(out[3], "c=3") == 0 && out[4] == NULL);
	SW_CHECK(sw_config_list(env, "E", out, 1, 5, buf, sizeof(buf), err, sizeof(err)) == 1);
	SW_CHECK(out[1] == NULL);
	SW_CHECK(sw_config_list(env, "NONE", out, 0, 5, buf, sizeof(buf), err, sizeof(err)) == 0);
	SW_CHECK(out[0] == NULL);
	SW_CHECK(sw_config_list(env, "ONE", out, 0, 2, buf, sizeof(buf), err, sizeof(err)) == 1);
	SW_CHECK(strcmp(out[0], "x=y") == 0 && out[1] == NULL);
	/* three entries and a fixed one need five slots */
	SW_CHECK(sw_config_list(env, "K", out, 1, 4, buf, sizeof(buf), err, sizeof(err)) == -1);
	SW_CHECKF(strcmp(err, "K: more than 2 entries") == 0, "%s", err);
	SW_CHECK(sw_config_list(env, "K", out, 0, 4, small, sizeof(small), err, sizeof(err)) ==
		 -1);
	SW_CHECKF(strcmp(err, "K: longer than 7 bytes") == 0, "%s", err);
	SW_CHECK(sw_config_list(env, "K", out, 4, 4, buf, sizeof(buf), err, sizeof(err)) == -1);
}

static void t_log_kv(void)
{
	const char *kv[] = {"run_id", "r-1", "error", "caf\xc3", NULL};
	char line[512];
	FILE *f = tmpfile();

	SW_CHECK(f != NULL);
	sw_log_init("test", f, SW_LOG_INFO);
	sw_log_kv(SW_LOG_WARN, "step finished", kv);
	sw_log_kv(SW_LOG_DEBUG, "below the level", kv);
	sw_log_kv(SW_LOG_INFO, "no fields", NULL);
	rewind(f);
	SW_CHECK(fgets(line, sizeof(line), f) != NULL);
	SW_CHECKF(strstr(line, "\"level\":\"warn\"") &&
			  strstr(line, "\"msg\":\"step finished\"") &&
			  strstr(line, "\"run_id\":\"r-1\"") && strstr(line, "\"error\":\"caf?\""),
		  "%s", line);
	SW_CHECK(fgets(line, sizeof(line), f) != NULL);
	SW_CHECKF(strstr(line, "\"msg\":\"no fields\"") != NULL, "%s", line);
	SW_CHECK(fgets(line, sizeof(line), f) == NULL);
	fclose(f);
	sw_log_init("test", NULL, SW_LOG_INFO);
}

int main(void)
{
	t_number();
	t_list();
	t_log_kv();
	return 0;
}
