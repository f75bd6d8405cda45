/*
 * core_config: defaults, file then environment precedence, PG* composition
 * into a quoted libpq conninfo, and the errors: malformed line (with its
 * number), bad port, bad mode, bad level, value too long, missing file.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sw_core.h"
#include "sw_test.h"

static char tmpl_dir[] = "/tmp/sw_core_config_XXXXXX";

/* Writes text to a fresh file under the test's temp dir; returns its path
 * (static buffer, valid until the next call). */
static const char *write_file(const char *text)
{
	static char path[256];
	static int seq;
	FILE *f;

	snprintf(path, sizeof(path), "%s/cfg%d", tmpl_dir, seq++);
	SW_CHECK((f = fopen(path, "w")) != NULL);
	SW_CHECK(fputs(text, f) >= 0);
	SW_CHECK(fclose(f) == 0);
	return path;
}

static void test_defaults(void)
{
	struct sw_config cfg;
	char err[256];

	SW_CHECKF(sw_config_load(&cfg, NULL, NULL, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(cfg.kafka_bootstrap, "127.0.0.1:9092") == 0);
	SW_CHECK(strcmp(cfg.data_dir, "./data") == 0);
	SW_CHECK(strcmp(cfg.http_addr, "127.0.0.1") == 0);
	SW_CHECK(cfg.http_port == 0);
	SW_CHECK(strcmp(cfg.log_level, "info") == 0);
	SW_CHECK(strcmp(cfg.mode, "single_org") == 0);
	SW_CHECK(cfg.pg_dsn[0] == '\0' && cfg.group_id[0] == '\0');
}

static void test_precedence(void)
{
	struct sw_config cfg;
	char err[256];
	const char *file = write_file("# comment\n"
				      "\n"
				      "SAGEWAI_KAFKA_BOOTSTRAP = file:9092\n"
				      "  SAGEWAI_DATA_DIR=/var/lib/file\r\n"
				      "SAGEWAI_HTTP_PORT=8080\n"
				      "SAGEWAI_GROUP_ID=from-file\n"
				      "SAGEWAI_MODE=multi_tenant\n"
				      "SAGEWAI_SOMETHING_ELSE=ignored\n"
				      "SAGEWAI_LOG_LEVEL=debug");
	char *const envp[] = {
		"PATH=/usr/bin",
		"SAGEWAI_KAFKA_BOOTSTRAP=env:9092",
		"SAGEWAI_HTTP_PORT=9090",
		"SAGEWAI_HTTP_ADDR=0.0.0.0",
		"SAGEWAI_PG_DSN=host=db dbname=x",
		"SAGEWAI_KAFKA_BOOTSTRAPX=not-this",
		NULL,
	};

	SW_CHECKF(sw_config_load(&cfg, file, envp, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(cfg.kafka_bootstrap, "env:9092") == 0);
	SW_CHECK(strcmp(cfg.data_dir, "/var/lib/file") == 0);
	SW_CHECK(cfg.http_port == 9090);
	SW_CHECK(strcmp(cfg.http_addr, "0.0.0.0") == 0);
	SW_CHECK(strcmp(cfg.group_id, "from-file") == 0);
	SW_CHECK(strcmp(cfg.mode, "multi_tenant") == 0);
	SW_CHECK(strcmp(cfg.log_level, "debug") == 0);
	SW_CHECK(strcmp(cfg.pg_dsn, "host=db dbname=x") == 0);

	SW_CHECK(strcmp(sw_config_env(envp, "SAGEWAI_KAFKA_BOOTSTRAP"), "env:9092") == 0);
	SW_CHECK(sw_config_env(envp, "SAGEWAI_KAFKA") == NULL);
	SW_CHECK(sw_config_env(envp, "MISSING") == NULL);
	SW_CHECK(sw_config_env(NULL, "PATH") == NULL);
	SW_CHECK(sw_log_level_parse("warn") == SW_LOG_WARN);
	SW_CHECK(sw_log_level_parse("nonsense") == SW_LOG_INFO);
}

static void test_pg_compose(void)
{
	struct sw_config cfg;
	char err[256];
	const char *file = write_file("PGHOST=/run/pg\nPGUSER=file-user\nPGPORT=5433\n");
	char *const envp[] = {
		"PGUSER=sage wai",
		"PGDATABASE=db",
		"PGPASSWORD=it's a \\secret",
		NULL,
	};
	char *const with_dsn[] = { "PGHOST=ignored", "SAGEWAI_PG_DSN=dbname=direct", NULL };

	SW_CHECKF(sw_config_load(&cfg, file, envp, err, sizeof(err)) == 0, "%s", err);
	SW_CHECKF(strcmp(cfg.pg_dsn, "host='/run/pg' port='5433' user='sage wai' dbname='db' "
				     "password='it\\'s a \\\\secret'") == 0,
		  "dsn: %s", cfg.pg_dsn);

	SW_CHECKF(sw_config_load(&cfg, file, with_dsn, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(cfg.pg_dsn, "dbname=direct") == 0);
}

/* Loading must fail and errstr must contain every needle. */
static void expect_error(const char *file, char *const *envp, const char *n1, const char *n2)
{
	struct sw_config cfg;
	char err[256];

	err[0] = '\0';
	SW_CHECKF(sw_config_load(&cfg, file, envp, err, sizeof(err)) == -1, "loaded %s",
		  file ? file : "(env)");
	SW_CHECKF(strstr(err, n1) != NULL, "'%s' lacks '%s'", err, n1);
	if (n2 != NULL)
		SW_CHECKF(strstr(err, n2) != NULL, "'%s' lacks '%s'", err, n2);
}

static void test_errors(void)
{
	char long_val[600 + 32];
	char *env_mode[] = { "SAGEWAI_MODE=multi-tenant", NULL };
	char *env_port[] = { "SAGEWAI_HTTP_PORT=65536", NULL };
	char *env_long[] = { long_val, NULL };
	char buf[700];

	expect_error(write_file("SAGEWAI_MODE=single_org\n# ok\nthis line has no equals\n"),
		     NULL, ":3:", "malformed");
	expect_error(write_file("\n\n=value\n"), NULL, ":3:", "key");
	expect_error(write_file("SAGEWAI_HTTP_PORT=80a\n"), NULL, ":1:", "SAGEWAI_HTTP_PORT");
	expect_error(write_file("SAGEWAI_HTTP_PORT=-1\n"), NULL, ":1:", "port");
	expect_error(write_file("SAGEWAI_HTTP_PORT=\n"), NULL, ":1:", "port");
	expect_error(write_file("SAGEWAI_MODE=both\n"), NULL, ":1:", "SAGEWAI_MODE");
	expect_error(write_file("SAGEWAI_LOG_LEVEL=loud\n"), NULL, ":1:", "SAGEWAI_LOG_LEVEL");
	expect_error(NULL, env_mode, "environment", "SAGEWAI_MODE");
	expect_error(NULL, env_port, "environment", "SAGEWAI_HTTP_PORT");
	expect_error("/nonexistent/sagewai.conf", NULL, "/nonexistent/sagewai.conf", "open");

	/* http_addr holds 63 bytes; 64 is too long. */
	snprintf(buf, sizeof(buf), "SAGEWAI_HTTP_ADDR=%064d\n", 0);
	expect_error(write_file(buf), NULL, "SAGEWAI_HTTP_ADDR", "too long");
	snprintf(buf, sizeof(buf), "SAGEWAI_HTTP_ADDR=%063d\n", 0);
	{
		struct sw_config cfg;
		char err[256];

		SW_CHECKF(sw_config_load(&cfg, write_file(buf), NULL, err, sizeof(err)) == 0,
			  "%s", err);
		SW_CHECK(strlen(cfg.http_addr) == 63);
	}
	snprintf(long_val, sizeof(long_val), "PGPASSWORD=%0600d", 0);
	expect_error(NULL, env_long, "PGPASSWORD", "too long");
	/* Each part fits but the composed conninfo does not. */
	snprintf(buf, sizeof(buf), "PGHOST=%0300d\nPGUSER=%0300d\n", 0, 0);
	expect_error(write_file(buf), NULL, "conninfo", "too long");
}

int main(void)
{
	char cmd[128];

	SW_CHECK(mkdtemp(tmpl_dir) != NULL);
	test_defaults();
	test_precedence();
	test_pg_compose();
	test_errors();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl_dir);
	SW_CHECK(system(cmd) == 0);
	printf("core_config: ok\n");
	return 0;
}
