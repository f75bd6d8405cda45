/*
 * variant.c: the image-variant catalogue (infra/sandbox/variants/NAME.json).
 *
 * A variant is operator input, but it decides what of the host a sandbox
 * sees, so it is validated as strictly as a peer's message: known keys
 * only, clean absolute paths, and a refusal of the host paths that must
 * never enter a sandbox whatever a catalogue says.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sw_sandbox.h"

#define VARIANT_FILE_MAX (1 << 20)
#define MAX_BINDS 256
#define MAX_OFFERS 64
#define MAX_ENV_PATH 8

/* Never bound, nor anything under them. */
static const char *const forbidden_trees[] = {
    "/proc", "/sys",  "/dev",	    "/run",	 "/var/run", "/root",	     "/home",
    "/tmp",  "/boot", "/workspace", "/.sagewai", "/etc/ssh", "/etc/sagewai", "/etc/sudoers.d",
};

/* Never bound as such (their contents may be, selectively). */
static const char *const forbidden_exact[] = {
    "/",
    "/etc",
    "/var",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
};

static int name_ok(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr(extra, c)))
			return 0;
	}
	return 1;
}

static int path_clean(const char *p)
{
	size_t n = strlen(p);

	if (n < 2 || n > 4095 || p[0] != '/' || p[n - 1] == '/')
		return 0;
	if (strstr(p, "//") != NULL || strstr(p, "/./") != NULL || strstr(p, "/../") != NULL)
		return 0;
	if ((n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0))
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

static const char *path_forbidden(const char *p)
{
	for (size_t i = 0; i < sizeof(forbidden_exact) / sizeof(forbidden_exact[0]); i++)
		if (strcmp(p, forbidden_exact[i]) == 0)
			return forbidden_exact[i];
	for (size_t i = 0; i < sizeof(forbidden_trees) / sizeof(forbidden_trees[0]); i++) {
		size_t n = strlen(forbidden_trees[i]);

		if (strncmp(p, forbidden_trees[i], n) == 0 && (p[n] == '\0' || p[n] == '/'))
			return forbidden_trees[i];
	}
	return NULL;
}

void sw_sandbox_variant_free(struct sw_sandbox_variant *v)
{
	if (v == NULL)
		return;
	free(v->description);
	for (size_t i = 0; i < v->n_offers; i++)
		free(v->offers[i]);
	free(v->offers);
	for (size_t i = 0; i < v->n_ro_binds; i++) {
		free(v->ro_binds[i].path);
		free(v->ro_binds[i].at);
	}
	free(v->ro_binds);
	for (size_t i = 0; i < v->n_env_path; i++)
		free(v->env_path[i]);
	free(v->env_path);
	free(v);
}

int sw_sandbox_variant_offers(const struct sw_sandbox_variant *v, const char *what)
{
	for (size_t i = 0; i < v->n_offers; i++)
		if (strcmp(v->offers[i], what) == 0)
			return 1;
	return 0;
}

/* 1 if p is dir or lies under it. */
static int path_under(const char *p, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int sw_sandbox_variant_path(const struct sw_sandbox_variant *v, const char *base, char *out,
			    size_t outlen)
{
	size_t o = 0;
	int w;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	for (size_t i = 0; i < v->n_env_path; i++) {
		w = snprintf(out + o, outlen - o, "%s%s", o ? ":" : "", v->env_path[i]);
		if (w < 0 || (size_t)w >= outlen - o)
			return -1;
		o += (size_t)w;
	}
	if (base != NULL && base[0] != '\0') {
		w = snprintf(out + o, outlen - o, "%s%s", o ? ":" : "", base);
		if (w < 0 || (size_t)w >= outlen - o)
			return -1;
	}
	return 0;
}

static int parse_limits(json_t *j, struct sw_sandbox_limits *l, char *errstr, size_t errlen)
{
	json_int_t v[6], cpu = 0, disk = (json_int_t)SW_SANDBOX_DISK_BYTES_DEFAULT;
	json_error_t jerr;

	if (json_unpack_ex(j, &jerr, JSON_STRICT, "{s:I, s:I, s:I, s:I, s:I, s:I, s?I, s?I}", "nproc",
			   &v[0], "memory_bytes", &v[1], "cpu_seconds", &v[2], "file_size_bytes",
			   &v[3], "nofile", &v[4], "wall_ms", &v[5], "cpu_millis", &cpu, "disk_bytes",
			   &disk) != 0) {
		snprintf(errstr, errlen, "limits: %s", jerr.text);
		return -1;
	}
	for (int i = 0; i < 6; i++) {
		if (v[i] <= 0) {
			snprintf(errstr, errlen, "limits: every limit must be > 0");
			return -1;
		}
	}
	if (v[0] > 1000000 || v[4] > 1048576 || v[5] > 7LL * 24 * 3600 * 1000) {
		snprintf(errstr, errlen, "limits: nproc, nofile or wall_ms out of range");
		return -1;
	}
	/* absent: no CPU bandwidth limit; given: a real one */
	if (json_object_get(j, "cpu_millis") != NULL &&
	    (cpu <= 0 || cpu > SW_SANDBOX_CPU_MILLIS_MAX)) {
		snprintf(errstr, errlen, "limits: cpu_millis out of range (1..%d)",
			 SW_SANDBOX_CPU_MILLIS_MAX);
		return -1;
	}
	/* absent: SW_SANDBOX_DISK_BYTES_DEFAULT; the most a step may ask */
	if (disk < (1 << 20) || (uint64_t)disk > SW_SANDBOX_DISK_BYTES_MAX) {
		snprintf(errstr, errlen, "limits: disk_bytes out of range (1 MiB..64 GiB)");
		return -1;
	}
	l->disk_bytes = (uint64_t)disk;
	l->cpu_millis = (uint64_t)cpu;
	l->nproc = (uint64_t)v[0];
	l->memory_bytes = (uint64_t)v[1];
	l->cpu_seconds = (uint64_t)v[2];
	l->file_size_bytes = (uint64_t)v[3];
	l->nofile = (uint64_t)v[4];
	l->wall_ms = (uint64_t)v[5];
	return 0;
}

/*
 * ro_binds: {"path": HOST, "at"?: WHERE, "optional"?: b}. Both paths obey
 * the same rules (a host path that must never enter, or a sandbox place
 * that is the sandbox's own: /proc, /dev, /tmp, /workspace, /.sagewai,
 * /etc/passwd...). Destinations are unique; an "at" destination may not
 * lie inside another bind's destination, nor hold one (a read-only bind
 * has no room for a mount point made later, and the order would matter).
 */
static int parse_binds(json_t *arr, struct sw_sandbox_variant *v, char *errstr, size_t errlen)
{
	size_t n = json_array_size(arr);

	if (n == 0 || n > MAX_BINDS) {
		snprintf(errstr, errlen, "ro_binds: 1 to %d entries", MAX_BINDS);
		return -1;
	}
	if ((v->ro_binds = calloc(n, sizeof(*v->ro_binds))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *path, *at = NULL, *dest, *bad;
		int optional = 0;
		json_error_t jerr;

		if (json_unpack_ex(json_array_get(arr, i), &jerr, JSON_STRICT, "{s:s, s?s, s?b}",
				   "path", &path, "at", &at, "optional", &optional) != 0) {
			snprintf(errstr, errlen, "ro_binds[%zu]: %s", i, jerr.text);
			return -1;
		}
		if (!path_clean(path) || (at != NULL && !path_clean(at))) {
			snprintf(errstr, errlen, "ro_binds[%zu]: not a clean absolute path", i);
			return -1;
		}
		if ((bad = path_forbidden(path)) != NULL) {
			snprintf(errstr, errlen, "ro_binds[%zu]: %s may not enter a sandbox (%s)",
				 i, path, bad);
			return -1;
		}
		if (at != NULL && (bad = path_forbidden(at)) != NULL) {
			snprintf(errstr, errlen,
				 "ro_binds[%zu]: nothing may be bound at %s in a sandbox (%s)", i,
				 at, bad);
			return -1;
		}
		dest = at ? at : path;
		for (size_t k = 0; k < v->n_ro_binds; k++) {
			const struct sw_sandbox_bind *o = &v->ro_binds[k];

			if (strcmp(o->at, dest) == 0) {
				snprintf(errstr, errlen, "ro_binds[%zu]: %s listed twice", i, dest);
				return -1;
			}
			if ((at != NULL || strcmp(o->at, o->path) != 0) &&
			    (path_under(dest, o->at) || path_under(o->at, dest))) {
				snprintf(errstr, errlen,
					 "ro_binds[%zu]: %s and ro_binds[%zu]'s %s nest (a bind"
					 " elsewhere must not lie inside another)",
					 i, dest, k, o->at);
				return -1;
			}
		}
		if ((v->ro_binds[i].path = strdup(path)) == NULL ||
		    (v->ro_binds[i].at = strdup(dest)) == NULL) {
			free(v->ro_binds[i].path);
			v->ro_binds[i].path = NULL;
			snprintf(errstr, errlen, "out of memory");
			return -1;
		}
		v->ro_binds[i].optional = optional;
		v->n_ro_binds++;
	}
	return 0;
}

/* env_path: absolute directories, each inside a bind's destination. */
static int parse_env_path(json_t *arr, struct sw_sandbox_variant *v, char *errstr,
			  size_t errlen)
{
	size_t n = json_array_size(arr);

	if (!json_is_array(arr) || n == 0 || n > MAX_ENV_PATH) {
		snprintf(errstr, errlen, "env_path: an array of 1 to %d directories",
			 MAX_ENV_PATH);
		return -1;
	}
	if ((v->env_path = calloc(n, sizeof(char *))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *d = json_string_value(json_array_get(arr, i));
		size_t k;

		if (d == NULL || !path_clean(d) || strchr(d, ':') != NULL ||
		    strlen(d) > 512) {
			snprintf(errstr, errlen,
				 "env_path[%zu]: not a clean absolute path without ':'", i);
			return -1;
		}
		for (k = 0; k < v->n_ro_binds; k++)
			if (path_under(d, v->ro_binds[k].at))
				break;
		if (k == v->n_ro_binds) {
			snprintf(errstr, errlen, "env_path[%zu]: %s is inside no ro_binds entry",
				 i, d);
			return -1;
		}
		if ((v->env_path[i] = strdup(d)) == NULL) {
			snprintf(errstr, errlen, "out of memory");
			return -1;
		}
		v->n_env_path++;
	}
	return 0;
}

struct sw_sandbox_variant *sw_sandbox_variant_parse(const char *json, size_t len, char *errstr,
						    size_t errlen)
{
	struct sw_sandbox_variant *v = calloc(1, sizeof(*v));
	json_t *root = NULL, *offers, *binds, *limits, *env_path = NULL;
	const char *name, *desc;
	json_error_t jerr;
	size_t n;

	if (v == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return NULL;
	}
	if ((root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(errstr, errlen, "line %d: %s", jerr.line, jerr.text);
		goto fail;
	}
	if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:s, s:s, s:o, s:o, s?o, s:o}", "name",
			   &name, "description", &desc, "offers", &offers, "ro_binds", &binds,
			   "env_path", &env_path, "limits", &limits) != 0) {
		snprintf(errstr, errlen, "%s", jerr.text);
		goto fail;
	}
	if (!name_ok(name, sizeof(v->name) - 1, "_-")) {
		snprintf(errstr, errlen, "name: must match [a-z0-9][a-z0-9_-]{0,62}");
		goto fail;
	}
	strcpy(v->name, name);
	if ((v->description = strdup(desc)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	n = json_array_size(offers);
	if (!json_is_array(offers) || n == 0 || n > MAX_OFFERS) {
		snprintf(errstr, errlen, "offers: an array of 1 to %d names", MAX_OFFERS);
		goto fail;
	}
	if ((v->offers = calloc(n, sizeof(char *))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		const char *o = json_string_value(json_array_get(offers, i));

		if (o == NULL || !name_ok(o, 64, "._+-")) {
			snprintf(errstr, errlen, "offers[%zu]: must match [a-z0-9][a-z0-9._+-]*",
				 i);
			goto fail;
		}
		if ((v->offers[i] = strdup(o)) == NULL) {
			snprintf(errstr, errlen, "out of memory");
			goto fail;
		}
		v->n_offers++;
	}
	if (!json_is_array(binds)) {
		snprintf(errstr, errlen, "ro_binds: must be an array");
		goto fail;
	}
	if (parse_binds(binds, v, errstr, errlen) != 0)
		goto fail;
	if (env_path != NULL && parse_env_path(env_path, v, errstr, errlen) != 0)
		goto fail;
	if (parse_limits(limits, &v->limits, errstr, errlen) != 0)
		goto fail;
	json_decref(root);
	return v;
fail:
	json_decref(root);
	sw_sandbox_variant_free(v);
	return NULL;
}

/* "a, b, c" of the *.json names in dir, for an error message. */
static void list_catalogue(const char *dir, char *out, size_t outlen)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t o = 0;

	out[0] = '\0';
	if (d == NULL) {
		snprintf(out, outlen, "nothing: %s", strerror(errno));
		return;
	}
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		int w;

		if (n <= 5 || strcmp(e->d_name + n - 5, ".json") != 0 || o >= outlen)
			continue;
		w = snprintf(out + o, outlen - o, "%s%.*s", o ? ", " : "", (int)(n - 5),
			     e->d_name);
		if (w > 0)
			o += (size_t)w;
	}
	closedir(d);
	if (o == 0)
		snprintf(out, outlen, "nothing");
}

struct sw_sandbox_variant *sw_sandbox_variant_load(const char *dir, const char *name, char *errstr,
						   size_t errlen)
{
	struct sw_sandbox_variant *v = NULL;
	char path[4096], why[512], have[512];
	char *buf = NULL;
	FILE *f;
	size_t n;

	if (name == NULL || !name_ok(name, 63, "_-")) {
		snprintf(errstr, errlen, "bad sandbox variant name (want [a-z0-9][a-z0-9_-]*)");
		return NULL;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.json", dir, name) >= sizeof(path)) {
		snprintf(errstr, errlen, "sandbox variant catalogue path too long");
		return NULL;
	}
	if ((f = fopen(path, "rb")) == NULL) {
		if (errno == ENOENT) {
			list_catalogue(dir, have, sizeof(have));
			snprintf(errstr, errlen,
				 "unknown sandbox variant '%s' (catalogue %s has: %s)", name, dir,
				 have);
		} else {
			snprintf(errstr, errlen, "sandbox variant %s: %s", path, strerror(errno));
		}
		return NULL;
	}
	if ((buf = malloc(VARIANT_FILE_MAX + 1)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		goto out;
	}
	n = fread(buf, 1, VARIANT_FILE_MAX + 1, f);
	if (ferror(f) || n > VARIANT_FILE_MAX) {
		snprintf(errstr, errlen, "sandbox variant %s: unreadable or over 1 MiB", path);
		goto out;
	}
	if ((v = sw_sandbox_variant_parse(buf, n, why, sizeof(why))) == NULL) {
		snprintf(errstr, errlen, "sandbox variant %s: %s", path, why);
		goto out;
	}
	if (strcmp(v->name, name) != 0) {
		snprintf(errstr, errlen, "sandbox variant %s: names itself '%s'", path, v->name);
		sw_sandbox_variant_free(v);
		v = NULL;
	}
out:
	free(buf);
	fclose(f);
	return v;
}
