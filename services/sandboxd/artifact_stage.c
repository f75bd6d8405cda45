/*
 * artifact_stage.c: the workspace snapshot, copied into a private
 * staging directory (STAGE/j-XXXXXX/tree, mode 0700, ours) before anything
 * reads it, so that the scan and the push see the same bytes.
 *
 * The input is hostile either way:
 *   - a tar stream (the sandbox's own tar, through the tool runner): read
 *     with libarchive (tar formats only, no filters); entry names are
 *     checked (relative, no .. or empty component, at most
 *     SBD_ART_NAME_MAX bytes); a name that breaks the rules fails the whole
 *     snapshot, since our tar never writes one;
 *   - a directory: walked with fstatat(AT_SYMLINK_NOFOLLOW), then opened
 *     with O_NOFOLLOW and checked to be the same inode, so a symlink is
 *     never followed, in or out of the workspace, and a file swapped in
 *     between is refused.
 * Only regular files and directories are staged. Symbolic links, hard
 * links, devices, fifos and sockets are skipped and named in the summary,
 * as is every .git (version-control metadata is not an artifact: it would
 * carry compressed content the scan cannot read). Files are created with
 * O_CREAT | O_EXCL | O_NOFOLLOW under directories opened with O_NOFOLLOW,
 * so the staged tree holds nothing but what we made. The caps
 * (SAGEWAI_ARTIFACT_MAX_FILES, SAGEWAI_ARTIFACT_MAX_BYTES) are checked as
 * the bytes arrive, never trusting a declared size; a full staging disk
 * fails with disk_full.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "sandboxd.h"

#define SBD_ART_NAME_MAX 1024 /* a path in the workspace */
#define SBD_ART_DEPTH_MAX 64
#define SBD_ART_SKIPPED_MAX 100

/* s quoted for a message: at most 120 bytes, control bytes as '?'. */
static const char *quote(const char *s, char out[128])
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < 120; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	out[i] = '\0';
	if (s[i] != '\0')
		snprintf(out + 117, 11, "...");
	return out;
}

static void skip(struct sbd_art_job *j, const char *path, const char *why)
{
	char q[128];

	if (json_array_size(j->skipped) < SBD_ART_SKIPPED_MAX)
		json_array_append_new(j->skipped,
				      json_pack("{s:s, s:s}", "path", quote(path, q), "why", why));
}

/* The staging error of errno e while doing what. */
static int io_fail(struct sbd_art_job *j, int e, const char *what, const char *path)
{
	char q[128];

	if (e == ENOSPC || e == EDQUOT)
		return sbd_art_fail(j, "disk_full",
				    "the staging directory is full while copying %s "
				    "(SAGEWAI_ARTIFACT_STAGE_DIR)",
				    quote(path, q));
	if (e == EFBIG)
		return sbd_art_fail(j, "artifact_too_large",
				    "the workspace holds more than %llu bytes "
				    "(SAGEWAI_ARTIFACT_MAX_BYTES)",
				    (unsigned long long)j->a->cfg.max_bytes);
	return sbd_art_fail(j, "internal", "%s %s: %s", what, quote(path, q), strerror(e));
}

/* Record a staged file, within the caps. */
static int add_file(struct sbd_art_job *j, const char *path, uint64_t size)
{
	if (j->nfiles == j->files_cap) {
		size_t cap = j->files_cap ? 2 * j->files_cap : 64;
		struct sbd_art_file *f = realloc(j->files, cap * sizeof(*f));

		if (f == NULL)
			return sbd_art_fail(j, "internal", "out of memory");
		j->files = f;
		j->files_cap = cap;
	}
	if ((j->files[j->nfiles].path = strdup(path)) == NULL)
		return sbd_art_fail(j, "internal", "out of memory");
	j->files[j->nfiles++].size = size;
	return 0;
}

static int over_files(struct sbd_art_job *j)
{
	if (j->nfiles < j->a->cfg.max_files)
		return 0;
	return sbd_art_fail(j, "artifact_too_large",
			    "the workspace holds more than %zu files (SAGEWAI_ARTIFACT_MAX_FILES)",
			    j->a->cfg.max_files);
}

int64_t sbd_art_copy_fd(int in, int out, uint64_t max)
{
	char buf[65536];
	uint64_t total = 0;
	ssize_t n, w, off;

	for (;;) {
		n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return (int64_t)total;
		if (total + (uint64_t)n > max) {
			errno = EFBIG;
			return -1;
		}
		for (off = 0; off < n; off += w)
			if ((w = write(out, buf + off, (size_t)(n - off))) < 0) {
				if (errno == EINTR) {
					w = 0;
					continue;
				}
				return -1;
			}
		total += (uint64_t)n;
	}
}

/*
 * A name from the workspace into path[SBD_ART_NAME_MAX]: leading "./" and
 * one trailing "/" dropped; "" is the workspace itself. NULL when fine, else
 * why it is refused. *git is set when a component is ".git".
 */
static const char *name_check(const char *in, char *path, int *git)
{
	size_t n, i, start;

	*git = 0;
	while (in[0] == '.' && in[1] == '/')
		in += 2;
	if (!strcmp(in, "."))
		in = "";
	n = strlen(in);
	if (n > 0 && in[n - 1] == '/')
		n--;
	if (n >= SBD_ART_NAME_MAX)
		return "a name longer than 1023 bytes";
	if (n > 0 && in[0] == '/')
		return "an absolute name";
	memcpy(path, in, n);
	path[n] = '\0';
	for (i = start = 0; i <= n; i++) {
		if (i < n && path[i] != '/') {
			if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
				return "a name holding a control character";
			continue;
		}
		if (n == 0)
			break;
		if (i == start)
			return "a name with an empty component";
		if ((i - start == 1 && path[start] == '.') ||
		    (i - start == 2 && path[start] == '.' && path[start + 1] == '.'))
			return "a name with a . or .. component";
		if (i - start > 255)
			return "a name with a component longer than 255 bytes";
		if (i - start == 4 && !memcmp(path + start, ".git", 4))
			*git = 1;
		start = i + 1;
	}
	return NULL;
}

/* The directory of path's parent in the tree, made as needed; *leaf
 * points into path. An fd to close, or -1 with errno. */
static int open_parent(struct sbd_art_job *j, char *path, const char **leaf)
{
	int fd = dup(j->tree_fd), next;
	char *p = path, *slash;

	if (fd < 0)
		return -1;
	while ((slash = strchr(p, '/')) != NULL) {
		*slash = '\0';
		if (mkdirat(fd, p, 0700) != 0 && errno != EEXIST) {
			*slash = '/';
			close(fd);
			return -1;
		}
		next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*slash = '/';
		close(fd);
		if (next < 0)
			return -1;
		fd = next;
		p = slash + 1;
	}
	*leaf = p;
	return fd;
}

static int stage_dir_entry(struct sbd_art_job *j, char *path)
{
	const char *leaf;
	int fd;

	if (path[0] == '\0')
		return 0;
	if ((fd = open_parent(j, path, &leaf)) < 0)
		return io_fail(j, errno, "cannot stage the directory of", path);
	if (mkdirat(fd, leaf, 0700) != 0 && errno != EEXIST) {
		int e = errno;

		close(fd);
		return io_fail(j, e, "cannot stage the directory", path);
	}
	close(fd);
	return 0;
}

/* A new file at path in the tree, for writing: an fd, or -1 after failing
 * the job. */
static int create_staged(struct sbd_art_job *j, char *path)
{
	const char *leaf;
	int dfd, fd, e;
	char q[128];

	if ((dfd = open_parent(j, path, &leaf)) < 0)
		return io_fail(j, errno, "cannot stage the directory of", path);
	fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	e = errno;
	close(dfd);
	if (fd < 0 && e == EEXIST)
		return sbd_art_fail(j, "artifact_failed",
				    "the workspace snapshot names %s twice, or as a file and a "
				    "directory",
				    quote(path, q));
	if (fd < 0)
		return io_fail(j, e, "cannot stage", path);
	return fd;
}

/* ---- a tar stream -------------------------------------------------------- */

static int stage_tar(struct sbd_art_job *j)
{
	struct archive *ar = archive_read_new();
	struct archive_entry *e;
	char path[SBD_ART_NAME_MAX], buf[65536], q[128];
	const char *why;
	int rc = -1, r, git, fd;

	if (ar == NULL)
		return sbd_art_fail(j, "internal", "out of memory");
	archive_read_support_format_tar(ar);
	if (archive_read_open_fd(ar, j->fd, 65536) != ARCHIVE_OK) {
		sbd_art_fail(j, "artifact_failed", "the workspace snapshot cannot be read: %s",
			     archive_error_string(ar) ? archive_error_string(ar) : "?");
		goto out;
	}
	while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e);
		mode_t type = archive_entry_filetype(e);
		uint64_t left, got = 0;

		if (sbd_art_cancelled(j))
			goto out;
		if (name == NULL) {
			sbd_art_fail(j, "artifact_failed",
				     "the workspace snapshot holds an entry without a name");
			goto out;
		}
		if ((why = name_check(name, path, &git)) != NULL) {
			sbd_art_fail(j, "artifact_failed",
				     "the workspace snapshot holds %s: %s; nothing was delivered",
				     why, quote(name, q));
			goto out;
		}
		if (git) {
			if (!strcmp(path + strlen(path) - 4, ".git"))
				skip(j, path, "version-control metadata is not delivered");
			continue;
		}
		if (archive_entry_hardlink(e) != NULL) {
			skip(j, path, "a hard link");
			continue;
		}
		if (type == AE_IFDIR) {
			if (stage_dir_entry(j, path) != 0)
				goto out;
			continue;
		}
		if (type == AE_IFLNK) {
			skip(j, path, "a symbolic link (never followed)");
			continue;
		}
		if (type != AE_IFREG) {
			skip(j, path, "not a regular file");
			continue;
		}
		if (path[0] == '\0' || over_files(j) != 0)
			goto out;
		if (archive_entry_size(e) < 0 ||
		    (uint64_t)archive_entry_size(e) > j->a->cfg.max_bytes - j->bytes) {
			io_fail(j, EFBIG, "", path);
			goto out;
		}
		if ((fd = create_staged(j, path)) < 0)
			goto out;
		left = j->a->cfg.max_bytes - j->bytes;
		for (;;) {
			ssize_t n = archive_read_data(ar, buf, sizeof(buf)), off, w;

			if (n == 0)
				break;
			if (n < 0) {
				close(fd);
				sbd_art_fail(j, "artifact_failed",
					     "the workspace snapshot is cut or damaged at %s: %s",
					     quote(path, q),
					     archive_error_string(ar) ? archive_error_string(ar)
								      : "?");
				goto out;
			}
			if ((uint64_t)n > left - got) {
				close(fd);
				io_fail(j, EFBIG, "", path);
				goto out;
			}
			for (off = 0; off < n; off += w)
				if ((w = write(fd, buf + off, (size_t)(n - off))) < 0) {
					int er = errno;

					close(fd);
					io_fail(j, er, "cannot stage", path);
					goto out;
				}
			got += (uint64_t)n;
		}
		close(fd);
		j->bytes += got;
		if (add_file(j, path, got) != 0)
			goto out;
	}
	if (r != ARCHIVE_EOF) {
		sbd_art_fail(j, "artifact_failed",
			     "the workspace snapshot is not a valid tar stream: %s",
			     archive_error_string(ar) ? archive_error_string(ar) : "?");
		goto out;
	}
	rc = 0;
out:
	archive_read_free(ar);
	return rc;
}

/* ---- a directory ----------------------------------------------------------- */

static int stage_walk(struct sbd_art_job *j, int src, const char *rel, int depth)
{
	char path[SBD_ART_NAME_MAX], q[128];
	struct dirent *de;
	struct stat st, st2;
	DIR *d;
	int fd, rc = -1, dup_fd, git;

	if (depth > SBD_ART_DEPTH_MAX)
		return sbd_art_fail(j, "artifact_too_large",
				    "the workspace nests directories deeper than %d at %s",
				    SBD_ART_DEPTH_MAX, quote(rel, q));
	if ((dup_fd = dup(src)) < 0 || (d = fdopendir(dup_fd)) == NULL) {
		if (dup_fd >= 0)
			close(dup_fd);
		return io_fail(j, errno, "cannot read the workspace directory", rel);
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		const char *why;
		char name[SBD_ART_NAME_MAX];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (sbd_art_cancelled(j))
			goto out;
		if ((size_t)snprintf(name, sizeof(name), "%s%s%s", rel, rel[0] ? "/" : "",
				     de->d_name) >= sizeof(name)) {
			sbd_art_fail(j, "artifact_failed",
				     "the workspace holds a name longer than "
				     "1023 bytes under %s",
				     quote(rel, q));
			goto out;
		}
		if ((why = name_check(name, path, &git)) != NULL) {
			skip(j, name, why);
			continue;
		}
		if (fstatat(src, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			io_fail(j, errno, "cannot read", name);
			goto out;
		}
		if (git) {
			skip(j, path, "version-control metadata is not delivered");
			continue;
		}
		if (S_ISLNK(st.st_mode)) {
			skip(j, path, "a symbolic link (never followed)");
			continue;
		}
		if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
			skip(j, path, "not a regular file");
			continue;
		}
		fd = openat(src, de->d_name,
			    (S_ISDIR(st.st_mode) ? O_DIRECTORY : O_NONBLOCK) | O_RDONLY |
				O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st2) != 0 || st2.st_dev != st.st_dev ||
		    st2.st_ino != st.st_ino || (st2.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
			if (fd >= 0)
				close(fd);
			sbd_art_fail(j, "artifact_failed",
				     "the workspace changed while it was copied (%s)",
				     quote(path, q));
			goto out;
		}
		if (S_ISDIR(st.st_mode)) {
			int r = stage_dir_entry(j, path);

			if (r == 0)
				r = stage_walk(j, fd, path, depth + 1);
			close(fd);
			if (r != 0)
				goto out;
			continue;
		}
		{
			int out_fd;
			int64_t got;

			if (over_files(j) != 0 || (out_fd = create_staged(j, path)) < 0) {
				close(fd);
				goto out;
			}
			got = sbd_art_copy_fd(fd, out_fd, j->a->cfg.max_bytes - j->bytes);
			if (got < 0) {
				int e = errno;

				close(fd);
				close(out_fd);
				io_fail(j, e, "cannot stage", path);
				goto out;
			}
			close(fd);
			close(out_fd);
			j->bytes += (uint64_t)got;
			if (add_file(j, path, (uint64_t)got) != 0)
				goto out;
		}
	}
	if (errno != 0) {
		io_fail(j, errno, "cannot read the workspace directory", rel);
		goto out;
	}
	rc = 0;
out:
	closedir(d);
	return rc;
}

int sbd_art_stage(struct sbd_art_job *j)
{
	struct stat st;

	snprintf(j->stage, sizeof(j->stage), "%s/j-XXXXXX", j->a->stage_dir);
	if (mkdtemp(j->stage) == NULL) {
		int e = errno;

		j->stage[0] = '\0';
		return io_fail(j, e, "cannot make a staging directory in", j->a->stage_dir);
	}
	if ((j->stage_fd = open(j->stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	    mkdirat(j->stage_fd, "tree", 0700) != 0 ||
	    (j->tree_fd =
		 openat(j->stage_fd, "tree", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return io_fail(j, errno, "cannot make the staging tree in", j->stage);
	if (fstat(j->fd, &st) != 0)
		return io_fail(j, errno, "cannot read", "the workspace");
	if (S_ISDIR(st.st_mode))
		return stage_walk(j, j->fd, "", 0);
	return stage_tar(j);
}

int sbd_art_open_staged(struct sbd_art_job *j, const char *path)
{
	return openat(j->tree_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

int sbd_art_rmtree(int at, const char *name)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	int fd, rc = 0;

	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(at, name, 0);
	if ((fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    sbd_art_rmtree(dirfd(d), de->d_name) != 0)
			rc = -1;
	closedir(d);
	if (unlinkat(at, name, AT_REMOVEDIR) != 0)
		rc = -1;
	return rc;
}
