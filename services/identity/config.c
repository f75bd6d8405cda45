/*
 * config.c: the identity service's settings, read once before the loop
 * exists (a failure exits 2 with the reason; no key material in it):
 *
 *   SAGEWAI_MODE                        single_org (default) | multi_tenant
 *   SAGEWAI_ADMIN_TOKEN[_FILE]          the operator's token (writes)
 *   SAGEWAI_IDENTITY_MASTER_KEYS_FILE   "KEYID HEX64" lines, 0600, last current
 *   SAGEWAI_SECRET_MAC_KEY_FILE         64 hex (one trailing newline), 0600
 *   SAGEWAI_IDENTITY_HOSTS_FILE         "NAME HEX64" lines (X25519 public keys)
 *   SAGEWAI_IDENTITY_CACHE_MS           default 1000, 0 = no cache
 *   SAGEWAI_VAULT_ADDR, SAGEWAI_VAULT_TOKEN[_FILE], SAGEWAI_VAULT_NAMESPACE,
 *   SAGEWAI_VAULT_MOUNT (secret), SAGEWAI_VAULT_PREFIX (sagewai/),
 *   SAGEWAI_VAULT_TIMEOUT_MS (2000), SAGEWAI_VAULT_THREADS (4)
 *   SAGEWAI_PG_POOL                     PostgreSQL connections (default 4)
 *   SAGEWAI_IDENTITY_RETENTION_S        resolutions and revoked minted rows
 *                                       kept (default 2592000, 30 days; 0 all)
 *
 * Key files must be regular files that grant group and others nothing;
 * they are read into sodium_malloc'd memory and wiped after parsing. The
 * hosts file holds public keys only: it may be readable by all, but not
 * writable by group or others.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "identity.h"

#define KEYFILE_MAX (64u << 10)

/* Read a whole file into sodium_malloc'd *text (NUL-terminated). secret:
 * refuse a file group or others may access at all. */
static int read_file(const char *path, const char *what, int secret, char **text, size_t *len,
		     struct stat *stp, char *errstr, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(errstr, errlen, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(errstr, errlen, "%s %s: not a regular file", what, path);
		goto fail;
	}
	if (secret && (st.st_mode & 077) != 0) {
		snprintf(errstr, errlen,
			 "%s %s: mode %04o lets group or others read it; chmod 600 it", what, path,
			 (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (!secret && (st.st_mode & 022) != 0) {
		snprintf(errstr, errlen, "%s %s: mode %04o lets group or others write it", what,
			 path, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_size > (off_t)KEYFILE_MAX) {
		snprintf(errstr, errlen, "%s %s: larger than %u bytes", what, path, KEYFILE_MAX);
		goto fail;
	}
	if ((buf = sodium_malloc((size_t)st.st_size + 1)) == NULL) {
		snprintf(errstr, errlen, "%s: out of memory", what);
		goto fail;
	}
	while (n < (size_t)st.st_size) {
		r = read(fd, buf + n, (size_t)st.st_size - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(errstr, errlen, "%s %s: read failed", what, path);
			goto fail;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL) {
		snprintf(errstr, errlen, "%s %s: holds a NUL byte", what, path);
		goto fail;
	}
	close(fd);
	*text = buf;
	*len = n;
	if (stp != NULL)
		*stp = st;
	return 0;
fail:
	if (buf != NULL)
		sodium_free(buf);
	close(fd);
	return -1;
}

int id_read_key_file(const char *path, const char *what, char **text, size_t *len, char *errstr,
		     size_t errlen)
{
	return read_file(path, what, 1, text, len, NULL, errstr, errlen);
}

/* The next line of text (cursor *p) without its newline, blank lines and
 * '#' comments skipped; NULL at the end. *lineno counts lines. */
static char *next_line(char **p, int *lineno)
{
	char *s, *nl;

	while (**p != '\0') {
		s = *p;
		nl = strchr(s, '\n');
		if (nl != NULL) {
			*nl = '\0';
			*p = nl + 1;
		} else {
			*p = s + strlen(s);
		}
		(*lineno)++;
		if (nl != NULL && nl > s && nl[-1] == '\r')
			nl[-1] = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		return s;
	}
	return NULL;
}

/* Split "A B" (one run of blanks, no other) into a and b; -1 if not so. */
static int split2(char *s, char **a, char **b)
{
	char *sp = s + strcspn(s, " \t");
	char *end;

	if (*sp == '\0')
		return -1;
	*sp++ = '\0';
	while (*sp == ' ' || *sp == '\t')
		sp++;
	end = sp + strcspn(sp, " \t");
	if (*end != '\0') {
		char *t = end;

		while (*t == ' ' || *t == '\t')
			t++;
		if (*t != '\0')
			return -1;
		*end = '\0';
	}
	*a = s;
	*b = sp;
	return 0;
}

static int keyid_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > ID_KEYID_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return 0;
	return 1;
}

static void mkeys_free(struct id_env *env)
{
	size_t i;

	for (i = 0; i < env->nmkeys; i++)
		sodium_free(env->mkeys[i].key);
	free(env->mkeys);
	env->mkeys = NULL;
	env->nmkeys = 0;
}

static int load_master_keys(struct id_env *env, char *errstr, size_t errlen)
{
	const char *what = "SAGEWAI_IDENTITY_MASTER_KEYS_FILE";
	char *text = NULL, *p, *line, *id, *hex;
	size_t len, i;
	int lineno = 0, rc = -1;

	if (env->mkeys_path[0] == '\0') {
		snprintf(errstr, errlen,
			 "%s is not set: the master keys file (KEYID HEX64 lines, 0600) is "
			 "required",
			 what);
		return -1;
	}
	if (read_file(env->mkeys_path, what, 1, &text, &len, NULL, errstr, errlen) == -1)
		return -1;
	p = text;
	while ((line = next_line(&p, &lineno)) != NULL) {
		struct id_mkey *k;

		if (split2(line, &id, &hex) == -1 || !keyid_valid(id) || strlen(hex) != 64) {
			snprintf(errstr, errlen,
				 "%s %s line %d: malformed: want KEYID HEX64 (KEYID of "
				 "[A-Za-z0-9_.-]{1,32}, 64 hex digits)",
				 what, env->mkeys_path, lineno);
			goto out;
		}
		for (i = 0; i < env->nmkeys; i++)
			if (strcmp(env->mkeys[i].id, id) == 0) {
				snprintf(errstr, errlen, "%s %s line %d: key id %s listed twice",
					 what, env->mkeys_path, lineno, id);
				goto out;
			}
		if ((k = realloc(env->mkeys, (env->nmkeys + 1) * sizeof(*k))) == NULL) {
			snprintf(errstr, errlen, "out of memory");
			goto out;
		}
		env->mkeys = k;
		k = &env->mkeys[env->nmkeys];
		memset(k, 0, sizeof(*k));
		snprintf(k->id, sizeof(k->id), "%s", id);
		if ((k->key = sodium_malloc(ID_KEY_BYTES)) == NULL) {
			snprintf(errstr, errlen, "out of memory");
			goto out;
		}
		env->nmkeys++;
		if (sw_hex_decode(hex, k->key, ID_KEY_BYTES) == -1) {
			snprintf(errstr, errlen, "%s %s line %d: the key is not 64 hex digits",
				 what, env->mkeys_path, lineno);
			goto out;
		}
		sodium_mprotect_readonly(k->key);
	}
	if (env->nmkeys == 0) {
		snprintf(errstr, errlen, "%s %s: no key in it", what, env->mkeys_path);
		goto out;
	}
	rc = 0;
out:
	sodium_free(text);
	if (rc == -1)
		mkeys_free(env);
	return rc;
}

static int load_mac_key(struct id_env *env, const char *path, char *errstr, size_t errlen)
{
	const char *what = "SAGEWAI_SECRET_MAC_KEY_FILE";
	char *text = NULL;
	size_t len;
	int rc = -1;

	if (path == NULL || path[0] == '\0') {
		snprintf(errstr, errlen, "%s is not set: the MAC key file (64 hex, 0600) is required",
			 what);
		return -1;
	}
	if (read_file(path, what, 1, &text, &len, NULL, errstr, errlen) == -1)
		return -1;
	if (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	if (len > 0 && text[len - 1] == '\r')
		text[--len] = '\0';
	if ((env->mac_key = sodium_malloc(ID_KEY_BYTES)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	if (len != 64 || sw_hex_decode(text, env->mac_key, ID_KEY_BYTES) == -1) {
		snprintf(errstr, errlen, "%s %s: want exactly 64 hex digits (32 bytes)", what, path);
		sodium_free(env->mac_key);
		env->mac_key = NULL;
		goto out;
	}
	sodium_mprotect_readonly(env->mac_key);
	rc = 0;
out:
	sodium_free(text);
	return rc;
}

/* Parse the hosts file into a new list; 0, or -1 with errstr. */
static int hosts_parse(const char *path, struct id_host **out, size_t *nout, struct stat *st,
		       char *errstr, size_t errlen)
{
	const char *what = "SAGEWAI_IDENTITY_HOSTS_FILE";
	struct id_host *hosts = NULL, *h;
	char *text = NULL, *p, *line, *name, *hex;
	size_t len, n = 0, i;
	int lineno = 0;

	if (read_file(path, what, 0, &text, &len, st, errstr, errlen) == -1)
		return -1;
	p = text;
	while ((line = next_line(&p, &lineno)) != NULL) {
		if (split2(line, &name, &hex) == -1 || strlen(name) >= sizeof(h->name) ||
		    strlen(hex) != 64) {
			snprintf(errstr, errlen, "%s %s line %d: malformed: want NAME HEX64", what,
				 path, lineno);
			goto fail;
		}
		if ((h = realloc(hosts, (n + 1) * sizeof(*h))) == NULL) {
			snprintf(errstr, errlen, "out of memory");
			goto fail;
		}
		hosts = h;
		h = &hosts[n];
		snprintf(h->name, sizeof(h->name), "%s", name);
		if (sw_hex_decode(hex, h->pk, sizeof(h->pk)) == -1) {
			snprintf(errstr, errlen, "%s %s line %d: the key is not 64 hex digits", what,
				 path, lineno);
			goto fail;
		}
		for (i = 0; i < n; i++)
			if (strcmp(hosts[i].name, h->name) == 0) {
				snprintf(errstr, errlen, "%s %s line %d: host %s listed twice", what,
					 path, lineno, h->name);
				goto fail;
			}
		n++;
	}
	sodium_free(text);
	*out = hosts;
	*nout = n;
	return 0;
fail:
	sodium_free(text);
	free(hosts);
	return -1;
}

static int load_hosts(struct id_env *env, char *errstr, size_t errlen)
{
	struct id_host *hosts = NULL;
	struct stat st;
	size_t n = 0;

	if (env->hosts_path[0] == '\0')
		return 0; /* no host may receive values: every seal is unknown_host */
	if (hosts_parse(env->hosts_path, &hosts, &n, &st, errstr, errlen) == -1)
		return -1;
	free(env->hosts);
	env->hosts = hosts;
	env->nhosts = n;
	env->hosts_mtime = st.st_mtim;
	env->hosts_ino = st.st_ino;
	env->hosts_size = st.st_size;
	return 0;
}

void id_hosts_refresh(struct id_env *env)
{
	char err[512];
	struct stat st;

	if (env->hosts_path[0] == '\0' || stat(env->hosts_path, &st) == -1)
		return;
	if (st.st_ino == env->hosts_ino && st.st_size == env->hosts_size &&
	    st.st_mtim.tv_sec == env->hosts_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == env->hosts_mtime.tv_nsec)
		return;
	if (load_hosts(env, err, sizeof(err)) == -1)
		sw_log(SW_LOG_ERROR, "hosts file not reloaded; the previous list stays", "error",
		       err, NULL);
	else
		sw_log(SW_LOG_INFO, "hosts file reloaded", "path", env->hosts_path, NULL);
}

/* A copy of a setting into buf, checked against a character class. */
static int setting(struct id_env *env, const char *key, const char *def, char *buf, size_t len,
		   const char *allowed, char *errstr, size_t errlen)
{
	const char *v = sw_config_env(env->envp, key);

	if (v == NULL || v[0] == '\0')
		v = def;
	if (strlen(v) >= len) {
		snprintf(errstr, errlen, "%s is too long", key);
		return -1;
	}
	if (allowed != NULL && strspn(v, allowed) != strlen(v)) {
		snprintf(errstr, errlen, "%s: only [%s] allowed", key, allowed);
		return -1;
	}
	snprintf(buf, len, "%s", v);
	return 0;
}

#define PATHCHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/"

static int load_vault(struct id_env *env, char *errstr, size_t errlen)
{
	char tok[1024];
	int rc;

	if (setting(env, "SAGEWAI_VAULT_ADDR", "", env->vault_addr, sizeof(env->vault_addr), NULL,
		    errstr, errlen) == -1 ||
	    setting(env, "SAGEWAI_VAULT_NAMESPACE", "", env->vault_namespace,
		    sizeof(env->vault_namespace), PATHCHARS, errstr, errlen) == -1 ||
	    setting(env, "SAGEWAI_VAULT_MOUNT", "secret", env->vault_mount,
		    sizeof(env->vault_mount), PATHCHARS, errstr, errlen) == -1 ||
	    setting(env, "SAGEWAI_VAULT_PREFIX", "sagewai/", env->vault_prefix,
		    sizeof(env->vault_prefix), PATHCHARS, errstr, errlen) == -1)
		return -1;
	if (strstr(env->vault_mount, "..") != NULL || strstr(env->vault_prefix, "..") != NULL ||
	    env->vault_mount[0] == '/' || env->vault_prefix[0] == '/') {
		snprintf(errstr, errlen, "SAGEWAI_VAULT_MOUNT and _PREFIX are relative paths without ..");
		return -1;
	}
	if (env->vault_addr[0] != '\0' && strncmp(env->vault_addr, "http://", 7) != 0 &&
	    strncmp(env->vault_addr, "https://", 8) != 0) {
		snprintf(errstr, errlen, "SAGEWAI_VAULT_ADDR must start with http:// or https://");
		return -1;
	}
	if (sw_config_number(env->envp, "SAGEWAI_VAULT_TIMEOUT_MS", 2000, 1, 600000,
			     &env->vault_timeout_ms, errstr, errlen) == -1 ||
	    sw_config_number(env->envp, "SAGEWAI_VAULT_THREADS", 4, 1, 64, &env->vault_threads,
			     errstr, errlen) == -1)
		return -1;
	rc = sw_config_secret(env->envp, "SAGEWAI_VAULT_TOKEN", tok, sizeof(tok), errstr, errlen);
	if (rc == -1)
		return -1;
	if (env->vault_addr[0] != '\0' && rc == 0) {
		snprintf(errstr, errlen, "SAGEWAI_VAULT_ADDR is set but no SAGEWAI_VAULT_TOKEN[_FILE]");
		return -1;
	}
	if (strpbrk(tok, "\r\n") != NULL) {
		sodium_memzero(tok, sizeof(tok));
		snprintf(errstr, errlen, "SAGEWAI_VAULT_TOKEN holds a line break");
		return -1;
	}
	env->vault_token = (char *)id_secure_dup(tok, strlen(tok));
	sodium_memzero(tok, sizeof(tok));
	if (env->vault_token == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int id_config_load(struct id_env *env, char *errstr, size_t errlen)
{
	char tok[512];
	const char *v;
	int rc;

	if (env->cfg->mode[0] == '\0' || strcmp(env->cfg->mode, "single_org") == 0) {
		env->multi_tenant = 0;
	} else if (strcmp(env->cfg->mode, "multi_tenant") == 0) {
		env->multi_tenant = 1;
	} else {
		snprintf(errstr, errlen, "SAGEWAI_MODE must be single_org or multi_tenant, not '%s'",
			 env->cfg->mode);
		return -1;
	}
	rc = sw_config_secret(env->envp, "SAGEWAI_ADMIN_TOKEN", tok, sizeof(tok), errstr, errlen);
	if (rc == -1)
		return -1;
	env->admin_token = (char *)id_secure_dup(tok, strlen(tok));
	sodium_memzero(tok, sizeof(tok));
	if (env->admin_token == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	snprintf(env->group, sizeof(env->group), "%s",
		 env->cfg->group_id[0] ? env->cfg->group_id : ID_GROUP);
	if (setting(env, "SAGEWAI_IDENTITY_MASTER_KEYS_FILE", "", env->mkeys_path,
		    sizeof(env->mkeys_path), NULL, errstr, errlen) == -1 ||
	    load_master_keys(env, errstr, errlen) == -1)
		return -1;
	v = sw_config_env(env->envp, "SAGEWAI_SECRET_MAC_KEY_FILE");
	if (load_mac_key(env, v, errstr, errlen) == -1)
		return -1;
	if (setting(env, "SAGEWAI_IDENTITY_HOSTS_FILE", "", env->hosts_path,
		    sizeof(env->hosts_path), NULL, errstr, errlen) == -1 ||
	    load_hosts(env, errstr, errlen) == -1)
		return -1;
	if (sw_config_number(env->envp, "SAGEWAI_IDENTITY_CACHE_MS", 1000, 0, 3600000,
			     &env->cache_ms, errstr, errlen) == -1 ||
	    sw_config_number(env->envp, "SAGEWAI_PG_POOL", 4, 1, 64, &env->pg_pool, errstr,
			     errlen) == -1 ||
	    sw_config_number(env->envp, "SAGEWAI_IDENTITY_RETENTION_S", 30LL * 86400, 0,
			     10LL * 365 * 86400, &env->retention_s, errstr, errlen) == -1)
		return -1;
	return load_vault(env, errstr, errlen);
}

void id_config_free(struct id_env *env)
{
	mkeys_free(env);
	id_secure_free(env->mac_key);
	env->mac_key = NULL;
	id_secure_free(env->admin_token);
	env->admin_token = NULL;
	id_secure_free(env->vault_token);
	env->vault_token = NULL;
	free(env->hosts);
	env->hosts = NULL;
	env->nhosts = 0;
}
