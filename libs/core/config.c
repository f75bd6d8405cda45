/*
 * config.c: struct sw_config from defaults, then a KEY=VALUE file, then an
 * environment array, each layer overriding the one before. Unknown keys
 * are ignored in both layers: a service may read keys of its own (for
 * example with sw_config_env) that this table does not know.
 *
 * File syntax: one KEY=VALUE per line; blank lines and lines whose first
 * non-blank character is '#' are skipped; blanks around KEY and VALUE are
 * trimmed; the value is taken verbatim otherwise (no quotes, no escapes).
 *
 * KEY_FILE=/path, in either layer, stands for KEY=<the file's contents>
 * (cfg_read_file): how a secret reaches a process without sitting in its
 * environment, where any process of the same user, and every child, can
 * read it (/proc/PID/environ).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sw_core.h"

enum cfg_kind { CFG_STR, CFG_PORT, CFG_LEVEL, CFG_MODE, CFG_PG };

/* PG* parts kept aside until all layers are read. */
struct cfg_pg {
	char val[5][SW_CONFIG_STR];
	int set[5];
	int dsn_set; /* SAGEWAI_PG_DSN seen in some layer */
};

struct cfg_key {
	const char *name;
	enum cfg_kind kind;
	size_t off;  /* CFG_STR/LEVEL/MODE: field offset; CFG_PG: part index */
	size_t size; /* field size, NUL included */
};

#define CFG_FIELD(f) offsetof(struct sw_config, f), sizeof(((struct sw_config *)0)->f)

static const struct cfg_key cfg_keys[] = {
	{ "SAGEWAI_KAFKA_BOOTSTRAP", CFG_STR, CFG_FIELD(kafka_bootstrap) },
	{ "SAGEWAI_PG_DSN", CFG_STR, CFG_FIELD(pg_dsn) },
	{ "SAGEWAI_DATA_DIR", CFG_STR, CFG_FIELD(data_dir) },
	{ "SAGEWAI_HTTP_ADDR", CFG_STR, CFG_FIELD(http_addr) },
	{ "SAGEWAI_HTTP_PORT", CFG_PORT, 0, 0 },
	{ "SAGEWAI_GROUP_ID", CFG_STR, CFG_FIELD(group_id) },
	{ "SAGEWAI_LOG_LEVEL", CFG_LEVEL, CFG_FIELD(log_level) },
	{ "SAGEWAI_MODE", CFG_MODE, CFG_FIELD(mode) },
	{ "PGHOST", CFG_PG, 0, SW_CONFIG_STR },
	{ "PGPORT", CFG_PG, 1, SW_CONFIG_STR },
	{ "PGUSER", CFG_PG, 2, SW_CONFIG_STR },
	{ "PGDATABASE", CFG_PG, 3, SW_CONFIG_STR },
	{ "PGPASSWORD", CFG_PG, 4, SW_CONFIG_STR },
};

/* libpq keywords for the PG* parts, in cfg_pg order. */
static const char *const pg_keywords[5] = { "host", "port", "user", "dbname", "password" };

static void cfg_err(char *errstr, size_t errlen, const char *where, int line, const char *fmt,
		    ...) __attribute__((format(printf, 5, 6)));

static void cfg_err(char *errstr, size_t errlen, const char *where, int line, const char *fmt,
		    ...)
{
	va_list ap;
	int n;

	if (errstr == NULL || errlen == 0)
		return;
	if (line > 0)
		n = snprintf(errstr, errlen, "%s:%d: ", where, line);
	else
		n = snprintf(errstr, errlen, "%s: ", where);
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/*
 * The value a KEY_FILE setting names, into buf (len bytes, NUL included):
 * the whole file, one trailing "\n" (or "\r\n") removed. Refused: a file
 * that is not a regular file (a FIFO, a directory, /dev/stdin), one that
 * grants its group or others any access (mode 0600 or 0400 expected, as
 * libpq wants of a passfile), a NUL byte, a value that does not fit. The
 * key (for messages) is KEY_FILE. 0, or -1 with errstr.
 */
static int cfg_read_file(const char *key, const char *path, char *buf, size_t len, char *errstr,
			 size_t errlen)
{
	struct stat st;
	char *tmp = NULL;
	size_t n = 0, want;
	ssize_t r;
	int fd, rc = -1;

	if (*path == '\0') {
		cfg_err(errstr, errlen, key, 0, "empty path");
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1) {
		cfg_err(errstr, errlen, key, 0, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		cfg_err(errstr, errlen, key, 0, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_err(errstr, errlen, key, 0, "%s: not a regular file", path);
		goto out;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		cfg_err(errstr, errlen, key, 0,
			"%s: mode %04o grants group or others access (chmod 600 it)", path,
			(unsigned)(st.st_mode & 07777));
		goto out;
	}
	/* the value (len - 1 bytes at most) and a "\r\n" after it */
	if (st.st_size < 0 || (unsigned long long)st.st_size > len + 1) {
		cfg_err(errstr, errlen, key, 0, "%s: value too long (max %zu bytes)", path,
			len - 1);
		goto out;
	}
	want = (size_t)st.st_size;
	if ((tmp = malloc(want + 1)) == NULL) {
		cfg_err(errstr, errlen, key, 0, "out of memory");
		goto out;
	}
	while (n < want) {
		r = read(fd, tmp + n, want - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			cfg_err(errstr, errlen, key, 0, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (memchr(tmp, '\0', n) != NULL) {
		cfg_err(errstr, errlen, key, 0, "%s: NUL byte in value", path);
		goto out;
	}
	if (n > 0 && tmp[n - 1] == '\n')
		n--;
	if (n > 0 && tmp[n - 1] == '\r')
		n--;
	if (n >= len) {
		cfg_err(errstr, errlen, key, 0, "%s: value too long (max %zu bytes)", path,
			len - 1);
		goto out;
	}
	memcpy(buf, tmp, n);
	buf[n] = '\0';
	rc = 0;
out:
	if (tmp != NULL) {
		explicit_bzero(tmp, want + 1);
		free(tmp);
	}
	close(fd);
	return rc;
}

/* Decimal 0..65535, digits only. */
static int cfg_parse_port(const char *s, int *port)
{
	long v = 0;

	if (*s == '\0' || strlen(s) > 5)
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	if (v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

/* Applies one known key; where/line name the source for errors. */
static int cfg_apply(struct sw_config *cfg, struct cfg_pg *pg, const struct cfg_key *k,
		     const char *val, const char *where, int line, char *errstr, size_t errlen)
{
	size_t len = strlen(val);

	switch (k->kind) {
	case CFG_PORT:
		if (cfg_parse_port(val, &cfg->http_port) < 0) {
			cfg_err(errstr, errlen, where, line, "%s: bad port '%.32s' (0-65535)",
				k->name, val);
			return -1;
		}
		return 0;
	case CFG_LEVEL:
		if (strcmp(val, "debug") != 0 && strcmp(val, "info") != 0 &&
		    strcmp(val, "warn") != 0 && strcmp(val, "error") != 0) {
			cfg_err(errstr, errlen, where, line,
				"%s: bad level '%.32s' (debug|info|warn|error)", k->name, val);
			return -1;
		}
		break;
	case CFG_MODE:
		if (strcmp(val, "single_org") != 0 && strcmp(val, "multi_tenant") != 0) {
			cfg_err(errstr, errlen, where, line,
				"%s: bad mode '%.32s' (single_org|multi_tenant)", k->name, val);
			return -1;
		}
		break;
	case CFG_PG:
		if (len >= k->size) {
			cfg_err(errstr, errlen, where, line, "%s: value too long (max %zu bytes)",
				k->name, k->size - 1);
			return -1;
		}
		memcpy(pg->val[k->off], val, len + 1);
		pg->set[k->off] = 1;
		return 0;
	case CFG_STR:
		break;
	}
	if (len >= k->size) {
		cfg_err(errstr, errlen, where, line, "%s: value too long (max %zu bytes)", k->name,
			k->size - 1);
		return -1;
	}
	memcpy((char *)cfg + k->off, val, len + 1);
	if (k->kind == CFG_STR && strcmp(k->name, "SAGEWAI_PG_DSN") == 0)
		pg->dsn_set = 1;
	return 0;
}

static const struct cfg_key *cfg_find(const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(cfg_keys) / sizeof(cfg_keys[0]); i++)
		if (strcmp(cfg_keys[i].name, key) == 0)
			return &cfg_keys[i];
	return NULL;
}

/* The known key that name is KEY_FILE of, or NULL. */
static const struct cfg_key *cfg_find_file(const char *name)
{
	size_t n = strlen(name), i;

	if (n <= 5 || strcmp(name + n - 5, "_FILE") != 0)
		return NULL;
	for (i = 0; i < sizeof(cfg_keys) / sizeof(cfg_keys[0]); i++)
		if (strlen(cfg_keys[i].name) == n - 5 && strncmp(cfg_keys[i].name, name, n - 5) == 0)
			return &cfg_keys[i];
	return NULL;
}

/* Applies k from the file path names (KEY_FILE=path); where/line name
 * the setting's source for errors. */
static int cfg_apply_file(struct sw_config *cfg, struct cfg_pg *pg, const struct cfg_key *k,
			  const char *path, const char *where, int line, char *errstr,
			  size_t errlen)
{
	char val[SW_CONFIG_STR], name[96], why[SW_CONFIG_STR + 200];
	int rc;

	snprintf(name, sizeof(name), "%s_FILE", k->name);
	if (cfg_read_file(name, path, val, sizeof(val), why, sizeof(why)) < 0) {
		cfg_err(errstr, errlen, where, line, "%s", why);
		return -1;
	}
	rc = cfg_apply(cfg, pg, k, val, where, line, errstr, errlen);
	explicit_bzero(val, sizeof(val));
	return rc;
}

static int cfg_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *cfg_trim(char *s)
{
	size_t n;

	while (cfg_is_blank(*s))
		s++;
	n = strlen(s);
	while (n > 0 && cfg_is_blank(s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int cfg_valid_key(const char *k)
{
	if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_'))
		return 0;
	for (k++; *k != '\0'; k++)
		if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
		      (*k >= '0' && *k <= '9') || *k == '_'))
			return 0;
	return 1;
}

static int cfg_load_file(struct sw_config *cfg, struct cfg_pg *pg, const char *file,
			 char *errstr, size_t errlen)
{
	FILE *f;
	char *buf = NULL, *line, *eq, *key, *val;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, rc = -1;
	const struct cfg_key *k;

	if ((f = fopen(file, "r")) == NULL) {
		cfg_err(errstr, errlen, file, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	while ((n = getline(&buf, &cap, f)) >= 0) {
		lineno++;
		if (memchr(buf, '\0', (size_t)n) != NULL) {
			cfg_err(errstr, errlen, file, lineno, "NUL byte in line");
			goto out;
		}
		line = cfg_trim(buf);
		if (*line == '\0' || *line == '#')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			cfg_err(errstr, errlen, file, lineno,
				"malformed line (expected KEY=VALUE)");
			goto out;
		}
		*eq = '\0';
		key = cfg_trim(line);
		val = cfg_trim(eq + 1);
		if (!cfg_valid_key(key)) {
			cfg_err(errstr, errlen, file, lineno, "malformed key '%.64s'", key);
			goto out;
		}
		if ((k = cfg_find_file(key)) != NULL) {
			if (cfg_apply_file(cfg, pg, k, val, file, lineno, errstr, errlen) < 0)
				goto out;
			continue;
		}
		if ((k = cfg_find(key)) == NULL)
			continue;
		if (cfg_apply(cfg, pg, k, val, file, lineno, errstr, errlen) < 0)
			goto out;
	}
	if (ferror(f)) {
		cfg_err(errstr, errlen, file, 0, "read error: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(buf);
	fclose(f);
	return rc;
}

/* Appends " keyword='value'" with ' and \ escaped as libpq wants. */
static int cfg_pg_append(char *dst, size_t cap, size_t *len, const char *kw, const char *val)
{
	size_t n = *len;
	int w;

	w = snprintf(dst + n, cap - n, "%s%s='", n > 0 ? " " : "", kw);
	if (w < 0 || (size_t)w >= cap - n)
		return -1;
	n += (size_t)w;
	for (; *val != '\0'; val++) {
		if (*val == '\'' || *val == '\\') {
			if (n + 1 >= cap)
				return -1;
			dst[n++] = '\\';
		}
		if (n + 1 >= cap)
			return -1;
		dst[n++] = *val;
	}
	if (n + 2 > cap)
		return -1;
	dst[n++] = '\'';
	dst[n] = '\0';
	*len = n;
	return 0;
}

static int cfg_pg_compose(struct sw_config *cfg, const struct cfg_pg *pg, char *errstr,
			  size_t errlen)
{
	char dsn[SW_CONFIG_STR];
	size_t len = 0, i;

	if (pg->dsn_set)
		return 0;
	dsn[0] = '\0';
	for (i = 0; i < 5; i++) {
		if (!pg->set[i] || pg->val[i][0] == '\0')
			continue;
		if (cfg_pg_append(dsn, sizeof(dsn), &len, pg_keywords[i], pg->val[i]) < 0) {
			cfg_err(errstr, errlen, "PG*", 0,
				"conninfo composed from PGHOST..PGPASSWORD too long (max %zu)",
				sizeof(dsn) - 1);
			return -1;
		}
	}
	memcpy(cfg->pg_dsn, dsn, len + 1);
	return 0;
}

const char *sw_config_env(char *const *envp, const char *key)
{
	size_t klen;

	if (envp == NULL || key == NULL)
		return NULL;
	klen = strlen(key);
	for (; *envp != NULL; envp++)
		if (strncmp(*envp, key, klen) == 0 && (*envp)[klen] == '=')
			return *envp + klen + 1;
	return NULL;
}

int sw_config_number(char *const *envp, const char *key, long long def, long long lo,
		     long long hi, long long *out, char *errstr, size_t errlen)
{
	const char *v = sw_config_env(envp, key);
	char *end;
	long long n;

	if (v == NULL || *v == '\0') {
		*out = def;
		return 0;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi) {
		if (hi == LLONG_MAX)
			cfg_err(errstr, errlen, key, 0, "'%.32s' is not a number >= %lld", v, lo);
		else
			cfg_err(errstr, errlen, key, 0, "'%.32s' is not a number in %lld..%lld",
				v, lo, hi);
		return -1;
	}
	*out = n;
	return 0;
}

int sw_config_list(char *const *envp, const char *key, const char **out, size_t n, size_t cap,
		   char *buf, size_t buflen, char *errstr, size_t errlen)
{
	const char *v = sw_config_env(envp, key);
	char *tok, *save = NULL;
	size_t n0 = n;

	if (n >= cap || buflen == 0) {
		cfg_err(errstr, errlen, key, 0, "no room for its entries");
		return -1;
	}
	if (v == NULL)
		v = "";
	if (strlen(v) >= buflen) {
		cfg_err(errstr, errlen, key, 0, "longer than %zu bytes", buflen - 1);
		return -1;
	}
	memcpy(buf, v, strlen(v) + 1);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (n + 1 >= cap) {
			cfg_err(errstr, errlen, key, 0, "more than %zu entries", cap - 1 - n0);
			return -1;
		}
		out[n++] = tok;
	}
	out[n] = NULL;
	return (int)n;
}

int sw_config_load(struct sw_config *cfg, const char *file, char *const *envp, char *errstr,
		   size_t errlen)
{
	struct cfg_pg *pg;
	const char *v, *path;
	char name[96];
	size_t i;
	int rc = -1;

	if (errstr != NULL && errlen > 0)
		errstr[0] = '\0';
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->kafka_bootstrap, "127.0.0.1:9092");
	strcpy(cfg->data_dir, "./data");
	strcpy(cfg->http_addr, "127.0.0.1");
	strcpy(cfg->log_level, "info");
	strcpy(cfg->mode, "single_org");

	if ((pg = calloc(1, sizeof(*pg))) == NULL) {
		cfg_err(errstr, errlen, "config", 0, "out of memory");
		return -1;
	}
	if (file != NULL && cfg_load_file(cfg, pg, file, errstr, errlen) < 0)
		goto out;
	for (i = 0; i < sizeof(cfg_keys) / sizeof(cfg_keys[0]); i++) {
		snprintf(name, sizeof(name), "%s_FILE", cfg_keys[i].name);
		v = sw_config_env(envp, cfg_keys[i].name);
		path = sw_config_env(envp, name);
		if (v != NULL && path != NULL) {
			cfg_err(errstr, errlen, "environment", 0, "both %s and %s are set",
				cfg_keys[i].name, name);
			goto out;
		}
		if (path != NULL) {
			if (cfg_apply_file(cfg, pg, &cfg_keys[i], path, "environment", 0, errstr,
					   errlen) < 0)
				goto out;
			continue;
		}
		if (v == NULL)
			continue;
		if (cfg_apply(cfg, pg, &cfg_keys[i], v, "environment", 0, errstr, errlen) < 0)
			goto out;
	}
	if (cfg_pg_compose(cfg, pg, errstr, errlen) < 0)
		goto out;
	rc = 0;
out:
	explicit_bzero(pg, sizeof(*pg)); /* PGPASSWORD */
	free(pg);
	return rc;
}

int sw_config_secret(char *const *envp, const char *key, char *buf, size_t len, char *errstr,
		     size_t errlen)
{
	const char *v, *path;
	char name[96];

	if (errstr != NULL && errlen > 0)
		errstr[0] = '\0';
	if (key == NULL || buf == NULL || len == 0 || strlen(key) + 6 > sizeof(name)) {
		cfg_err(errstr, errlen, "config", 0, "sw_config_secret: bad arguments");
		return -1;
	}
	buf[0] = '\0';
	snprintf(name, sizeof(name), "%s_FILE", key);
	v = sw_config_env(envp, key);
	path = sw_config_env(envp, name);
	if (v != NULL && path != NULL) {
		cfg_err(errstr, errlen, "environment", 0, "both %s and %s are set", key, name);
		return -1;
	}
	if (path != NULL)
		return cfg_read_file(name, path, buf, len, errstr, errlen) < 0 ? -1 : 1;
	if (v == NULL)
		return 0;
	if (strlen(v) >= len) {
		cfg_err(errstr, errlen, key, 0, "value too long (max %zu bytes)", len - 1);
		return -1;
	}
	memcpy(buf, v, strlen(v) + 1);
	return 1;
}
