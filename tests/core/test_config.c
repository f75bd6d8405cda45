/*
 * core_config: defaults, file then environment precedence, PG* composition
 * into a quoted libpq conninfo, and the errors: malformed line (with its
 * number), bad port, bad mode, bad level, value too long, missing file;
 * the _FILE convention (KEY_FILE=path in either layer, sw_config_secret):
 * newline stripping, mode and file-type checks, missing file, both set.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* write_file with mode; the path is copied into a static buffer of its
 * own (one of four, reused in turn). */
static const char *secret_file(const char *text, mode_t mode)
{
	static char paths[4][256];
	static int turn;
	char *p = paths[turn++ % 4];

	snprintf(p, 256, "%s", write_file(text));
	SW_CHECK(chmod(p, mode) == 0);
	return p;
}

static void test_file_settings(void)
{
	struct sw_config cfg;
	char err[256], buf[64], env1[300], env2[300], line[400];
	char *envp[4] = {env1, NULL, NULL, NULL};
	const char *p;

	/* the environment layer: one trailing newline goes, the rest stays */
	p = secret_file("host=/run/pg user=svc passfile=/x\n", 0600);
	snprintf(env1, sizeof(env1), "SAGEWAI_PG_DSN_FILE=%s", p);
	SW_CHECKF(sw_config_load(&cfg, NULL, envp, err, sizeof(err)) == 0, "%s", err);
	SW_CHECKF(strcmp(cfg.pg_dsn, "host=/run/pg user=svc passfile=/x") == 0, "%s", cfg.pg_dsn);
	p = secret_file("s3cret\r\n", 0400);
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=%s", p);
	envp[1] = "PGUSER=u";
	SW_CHECKF(sw_config_load(&cfg, NULL, envp, err, sizeof(err)) == 0, "%s", err);
	SW_CHECKF(strcmp(cfg.pg_dsn, "user='u' password='s3cret'") == 0, "%s", cfg.pg_dsn);
	envp[1] = NULL;
	p = secret_file("two\n\n", 0600);
	snprintf(env1, sizeof(env1), "SAGEWAI_GROUP_ID_FILE=%s", p);
	SW_CHECKF(sw_config_load(&cfg, NULL, envp, err, sizeof(err)) == 0, "%s", err);
	SW_CHECKF(strcmp(cfg.group_id, "two\n") == 0, "'%s'", cfg.group_id);
	p = secret_file("", 0600);
	snprintf(env1, sizeof(env1), "SAGEWAI_GROUP_ID_FILE=%s", p);
	SW_CHECKF(sw_config_load(&cfg, NULL, envp, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(cfg.group_id[0] == '\0');

	/* the file layer, overridden by the environment as any setting */
	p = secret_file("from-secret-file\n", 0600);
	snprintf(line, sizeof(line), "SAGEWAI_GROUP_ID_FILE=%s\nSAGEWAI_MODE=multi_tenant\n", p);
	SW_CHECKF(sw_config_load(&cfg, write_file(line), NULL, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(cfg.group_id, "from-secret-file") == 0);
	snprintf(env1, sizeof(env1), "SAGEWAI_GROUP_ID=env-wins");
	SW_CHECKF(sw_config_load(&cfg, write_file(line), envp, err, sizeof(err)) == 0, "%s", err);
	SW_CHECK(strcmp(cfg.group_id, "env-wins") == 0);

	/* refused: group or world access, not a regular file, missing, both */
	p = secret_file("x\n", 0644);
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=%s", p);
	expect_error(NULL, envp, "PGPASSWORD_FILE", "0644");
	p = secret_file("x\n", 0620);
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=%s", p);
	expect_error(NULL, envp, "PGPASSWORD_FILE", "group or others");
	snprintf(line, sizeof(line), "PGPASSWORD_FILE=%s\n", p);
	expect_error(write_file(line), NULL, ":1:", "group or others");
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=%s", tmpl_dir);
	expect_error(NULL, envp, "PGPASSWORD_FILE", "not a regular file");
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=%s/missing", tmpl_dir);
	expect_error(NULL, envp, "PGPASSWORD_FILE", "No such file");
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=");
	expect_error(NULL, envp, "PGPASSWORD_FILE", "empty path");
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=%s", secret_file("x", 0600));
	envp[1] = "PGPASSWORD=y";
	expect_error(NULL, envp, "both PGPASSWORD and PGPASSWORD_FILE", NULL);
	envp[1] = NULL;
	/* the value still has to fit (SAGEWAI_HTTP_ADDR holds 63 bytes) and parse */
	snprintf(line, sizeof(line), "%064d\n", 0);
	snprintf(env1, sizeof(env1), "SAGEWAI_HTTP_ADDR_FILE=%s", secret_file(line, 0600));
	expect_error(NULL, envp, "SAGEWAI_HTTP_ADDR", "too long");
	snprintf(env1, sizeof(env1), "SAGEWAI_HTTP_PORT_FILE=%s", secret_file("80a\n", 0600));
	expect_error(NULL, envp, "SAGEWAI_HTTP_PORT", "port");
	/* a NUL byte inside */
	p = secret_file("", 0600);
	{
		FILE *f = fopen(p, "w");

		SW_CHECK(f != NULL && fwrite("a\0b\n", 1, 4, f) == 4 && fclose(f) == 0);
	}
	snprintf(env1, sizeof(env1), "PGPASSWORD_FILE=%s", p);
	expect_error(NULL, envp, "PGPASSWORD_FILE", "NUL byte");

	/* sw_config_secret: the same rules for a service's own secrets */
	envp[0] = env1;
	envp[1] = NULL;
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY=sk-env");
	SW_CHECK(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				  sizeof(err)) == 1);
	SW_CHECK(strcmp(buf, "sk-env") == 0);
	SW_CHECK(sw_config_secret(envp, "SAGEWAI_ADMIN_TOKEN", buf, sizeof(buf), err,
				  sizeof(err)) == 0);
	SW_CHECK(buf[0] == '\0');
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY_FILE=%s",
		 secret_file("sk-from-file\n", 0600));
	SW_CHECKF(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				   sizeof(err)) == 1, "%s", err);
	SW_CHECK(strcmp(buf, "sk-from-file") == 0);
	/* 63 bytes and a newline fit 64; 64 bytes do not */
	snprintf(line, sizeof(line), "%063d\n", 7);
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY_FILE=%s", secret_file(line, 0600));
	SW_CHECKF(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				   sizeof(err)) == 1, "%s", err);
	SW_CHECK(strlen(buf) == 63);
	snprintf(line, sizeof(line), "%064d", 7);
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY_FILE=%s", secret_file(line, 0600));
	SW_CHECK(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				  sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "too long") != NULL, "%s", err);
	SW_CHECK(buf[0] == '\0');
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY_FILE=%s", secret_file("sk\n", 0604));
	SW_CHECK(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				  sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "SAGEWAI_LLM_API_KEY_FILE") != NULL && strstr(err, "0604"), "%s",
		  err);
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY_FILE=/dev/null");
	SW_CHECK(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				  sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "not a regular file") != NULL, "%s", err);
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY_FILE=%s/none", tmpl_dir);
	SW_CHECK(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				  sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "No such file") != NULL, "%s", err);
	envp[1] = env2;
	snprintf(env1, sizeof(env1), "SAGEWAI_LLM_API_KEY_FILE=%s", secret_file("sk\n", 0600));
	snprintf(env2, sizeof(env2), "SAGEWAI_LLM_API_KEY=sk");
	SW_CHECK(sw_config_secret(envp, "SAGEWAI_LLM_API_KEY", buf, sizeof(buf), err,
				  sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "both") != NULL, "%s", err);
}

int main(void)
{
	char cmd[128];

	SW_CHECK(mkdtemp(tmpl_dir) != NULL);
	test_defaults();
	test_precedence();
	test_pg_compose();
	test_errors();
	test_file_settings();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl_dir);
	SW_CHECK(system(cmd) == 0);
	printf("core_config: ok\n");
	return 0;
}
