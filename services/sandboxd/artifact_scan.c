/*
 * artifact_scan.c: nothing leaves for a destination before every staged
 * file, and every file's path, has been searched for
 *   - each value injected into the sandbox, in every spelling the step's
 *     redactor knows (raw, hex, base64 standard and URL-safe -- also inside
 *     longer base64 --, percent-encoded, JSON-escaped: sw_redact_find), and
 *   - obvious credential shapes (AWS access key ids, GitHub tokens, sk-
 *     keys, PEM private keys: sw_credshape_find, the scheduler's rules).
 * The first hit refuses the whole delivery: the error names the file and
 * line and what was found (the variable's name, or the kind of credential),
 * never the bytes; artifact.scan_refused says the same on sagewai.sandbox.
 *
 * Each file is mapped whole (the staged copy is ours and no longer
 * changes), so a value is found wherever it lies, however deep in the file
 * or the tree. Not found: a value transformed otherwise (compressed,
 * encrypted, reversed, split by other bytes) -- an agent that means to
 * leak a credential it holds can; the scan stops the ordinary accidents
 * (a token written into a config file, a .env, a log, a notebook).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <sodium.h>

#include "sandboxd.h"
#include "sw_credshape.h"
#include "sw_redact.h"

/* 1-based line of offset off in p. */
static size_t line_of(const unsigned char *p, size_t off)
{
	size_t line = 1;

	for (size_t i = 0; i < off; i++)
		line += p[i] == '\n';
	return line;
}

/* The first hit in p[0..len): 1 with *off and what filled, else 0. */
static int find(const struct sbd_art_job *j, const void *p, size_t len, size_t *off, char *what,
		size_t whatlen)
{
	char key[SW_REDACT_KEY_MAX + 1];
	size_t o1 = 0, o2 = 0;
	int got1 = sw_redact_count(j->red) > 0 &&
		   sw_redact_find(j->red, p, len, &o1, NULL, key, sizeof(key)) == 1;
	const char *kind = sw_credshape_find(p, len, &o2);

	if (got1 && (kind == NULL || o1 <= o2)) {
		*off = o1;
		snprintf(what, whatlen, "the value of %s", key);
		return 1;
	}
	if (kind != NULL) {
		*off = o2;
		snprintf(what, whatlen, "%s", kind);
		return 1;
	}
	return 0;
}

/* A hit in a name (line 0) shows the name up to the hit only. */
static int refuse(struct sbd_art_job *j, const char *path, size_t line, size_t off,
		  const char *what)
{
	char where[32] = "";

	j->refused = true;
	if (line == 0)
		snprintf(j->ref_file, sizeof(j->ref_file), "%.*s[withheld]",
			 (int)(off < 400 ? off : 400), path);
	else
		snprintf(j->ref_file, sizeof(j->ref_file), "%s", path);
	path = j->ref_file;
	j->ref_line = line;
	snprintf(j->ref_what, sizeof(j->ref_what), "%s", what);
	if (line > 0)
		snprintf(where, sizeof(where), ":%zu", line);
	return sbd_art_fail(j, "artifact_refused",
			    "%.400s%s holds %s%s; nothing was delivered to %s", path, where, what,
			    line == 0 ? " in its name" : "", j->dest_name);
}

int sbd_art_scan(struct sbd_art_job *j)
{
	char what[160];
	struct stat st;
	size_t off, i;
	json_t *sk;

	/* the names of what was skipped go out in the summary */
	json_array_foreach(j->skipped, i, sk) {
		const char *path = json_string_value(json_object_get(sk, "path"));

		if (path != NULL && find(j, path, strlen(path), &off, what, sizeof(what)))
			return refuse(j, path, 0, off, what);
	}
	for (i = 0; i < j->nfiles; i++) {
		const char *path = j->files[i].path;
		void *p;
		int fd, hit;

		if ((i & 63) == 0 && sbd_art_cancelled(j))
			return -1;
		if (find(j, path, strlen(path), &off, what, sizeof(what)))
			return refuse(j, path, 0, off, what);
		if ((fd = sbd_art_open_staged(j, path)) < 0 || fstat(fd, &st) != 0) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			return sbd_art_fail(j, "internal", "cannot read the staged %.400s: %s",
					    path, strerror(e));
		}
		if (st.st_size == 0) {
			close(fd);
			continue;
		}
		p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		close(fd);
		if (p == MAP_FAILED)
			return sbd_art_fail(j, "internal", "cannot map the staged %.400s: %s",
					    path, strerror(errno));
		hit = find(j, p, (size_t)st.st_size, &off, what, sizeof(what));
		if (hit) {
			size_t line = line_of(p, off);

			munmap(p, (size_t)st.st_size);
			return refuse(j, path, line, off, what);
		}
		munmap(p, (size_t)st.st_size);
	}
	return 0;
}

/* Each staged file hashed in place (the copy no longer changes), read in
 * blocks: what the step's output lists is what was scanned and delivered. */
int sbd_art_hash(struct sbd_art_job *j)
{
	crypto_hash_sha256_state st;
	unsigned char buf[65536], md[crypto_hash_sha256_BYTES];
	ssize_t n;

	for (size_t i = 0; i < j->nfiles; i++) {
		int fd;

		if ((i & 63) == 0 && sbd_art_cancelled(j))
			return -1;
		if ((fd = sbd_art_open_staged(j, j->files[i].path)) < 0)
			return sbd_art_fail(j, "internal", "cannot read the staged %.400s: %s",
					    j->files[i].path, strerror(errno));
		crypto_hash_sha256_init(&st);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
		close(fd);
		if (n < 0)
			return sbd_art_fail(j, "internal", "cannot read the staged %.400s",
					    j->files[i].path);
		crypto_hash_sha256_final(&st, md);
		sodium_bin2hex(j->files[i].sha256, sizeof(j->files[i].sha256), md, sizeof(md));
	}
	return 0;
}
