/*
 * artifact_push.c: the four destinations of a scanned snapshot (on a
 * worker; everything here may block).
 *
 * github: a commit of the snapshot pushed to spec.repo, branch spec.branch
 *   (main), on top of the branch's tip when it exists (a fast-forward: a
 *   push never rewrites history; someone else's push in between makes ours
 *   fail). git runs as a child with an environment of ours only (PATH, HOME
 *   and GIT_DIR in the staging directory, no system or user configuration,
 *   no prompts, no hooks, no redirects, protocols https -- and http where
 *   SAGEWAI_ARTIFACT_HTTP=allow -- only). The repository's host is resolved
 *   here, refused when not public (unless SAGEWAI_ARTIFACT_PRIVATE=allow)
 *   and pinned with http.curloptResolve, so git connects to the address we
 *   checked. GITHUB_TOKEN reaches git through its credential helper only: a
 *   shell function that prints a memfd inherited as fd 3 (username
 *   x-access-token, password the token: what GitHub takes for a token over
 *   Basic). Author and committer are "Sagewai <sagewai@localhost>", the
 *   message names the run and the step. .gitignore'd files are left out
 *   (named in the summary's skipped). Blobs are made with hash-object
 *   --no-filters and the tree from them (update-index --index-info,
 *   write-tree): no .gitattributes of the workspace (eol, encodings,
 *   filters) can make the committed bytes differ from the scanned ones.
 *   Files are committed as 100644 (the staging keeps no mode bits). Errors quote git's last lines,
 * the server's answer ("remote: ...") included, redacted. s3: one PUT per file to spec.endpoint
 * (an operator-allowed one; path style) or https://BUCKET.s3.REGION.amazonaws.com, signed by
 * libcurl (CURLOPT_AWS_SIGV4) with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 *   (+ AWS_SESSION_TOKEN as x-amz-security-token), the body's SHA-256 in
 *   x-amz-content-sha256; key = prefix + the file's path. No proxy, no
 *   redirect. A refusal quotes S3's Code and Message.
 * local: SAGEWAI_ARTIFACT_LOCAL_DIR/TENANT/RUN/STEP/PATH, every directory
 *   below the root opened with O_NOFOLLOW (a symlink planted there is not
 *   followed), the copy made in a fresh sibling and renamed into place with
 *   RENAME_NOREPLACE: an existing target is refused, never merged.
 * none: the files themselves as the step's output, text (valid UTF-8, no
 *   NUL) or base64, when they total at most SAGEWAI_ARTIFACT_INLINE_MAX
 *   bytes; more is an error, never a truncation.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <curl/curl.h>
#include <sodium.h>

#include "sandboxd.h"
#include "sw_addr.h"

#define OUT_TAIL 4096	       /* of a command's stderr, for the error */
#define STDOUT_MAX (64u << 20) /* of a command's stdout */

/* ---- running git -------------------------------------------------------- */

struct cmd {
	int in;		   /* stdin for the next run (-1: /dev/null); the caller's */
	struct sw_buf out; /* stdout (STDOUT_MAX) */
	char err[OUT_TAIL + 1];
	size_t errlen;
	char line[OUT_TAIL + 1]; /* err_line's */
	int status;		 /* exit status, -1: killed or not started */
};

static void tail_add(struct cmd *c, const char *b, size_t n)
{
	if (n >= OUT_TAIL) {
		memcpy(c->err, b + n - OUT_TAIL, OUT_TAIL);
		c->errlen = OUT_TAIL;
	} else {
		if (c->errlen + n > OUT_TAIL) {
			size_t drop = c->errlen + n - OUT_TAIL;

			memmove(c->err, c->err + drop, c->errlen - drop);
			c->errlen -= drop;
		}
		memcpy(c->err + c->errlen, b, n);
		c->errlen += n;
	}
	c->err[c->errlen] = '\0';
}

/*
 * Run argv with envp in the staged tree, fd 3 = cred_fd (or
 * nothing), stdin c->in (at its offset) or /dev/null; stdout into c->out, stderr's tail into
 * c->err. Killed (its process group) when the job is cancelled or its
 * deadline passes. 0 when it ran (c->status set), -1 with the job failed.
 */
static int run(struct sbd_art_job *j, char *const argv[], char *const envp[], int cred_fd,
	       struct cmd *c)
{
	int po[2] = {-1, -1}, pe[2] = {-1, -1}, devnull, st = 0;
	pid_t pid;
	char buf[65536], cwd[700];

	snprintf(cwd, sizeof(cwd), "%s/tree", j->stage);
	memset(c->err, 0, sizeof(c->err));
	c->errlen = 0;
	c->status = -1;
	sw_buf_init(&c->out, STDOUT_MAX);
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 || pipe2(po, O_CLOEXEC) != 0 ||
	    pipe2(pe, O_CLOEXEC) != 0) {
		if (devnull >= 0)
			close(devnull);
		if (po[0] >= 0) {
			close(po[0]);
			close(po[1]);
		}
		return sbd_art_fail(j, "internal", "cannot start %s: %s", argv[0],
				    strerror(errno));
	}
	pid = fork();
	if (pid == 0) {
		/* async-signal-safe calls only from here */
		setpgid(0, 0);
		if (chdir(cwd) != 0 || dup2(c->in >= 0 ? c->in : devnull, 0) < 0 ||
		    dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
			_exit(127);
		if (cred_fd >= 0) {
			if (cred_fd == 3 ? fcntl(3, F_SETFD, 0) != 0 : dup2(cred_fd, 3) < 0)
				_exit(127);
			syscall(SYS_close_range, 4, ~0U, 0);
		} else {
			syscall(SYS_close_range, 3, ~0U, 0);
		}
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(devnull);
	close(po[1]);
	close(pe[1]);
	if (pid < 0) {
		close(po[0]);
		close(pe[0]);
		return sbd_art_fail(j, "internal", "cannot fork: %s", strerror(errno));
	}
	{
		struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN},
				       {.fd = pe[0], .events = POLLIN}};
		int open_fds = 2, gone = 0;

		while (open_fds > 0) {
			int n = poll(pf, 2, 200);

			if (n < 0 && errno != EINTR)
				break;
			if (sbd_art_cancelled(j)) {
				gone = 1;
				break;
			}
			for (int k = 0; k < 2 && n > 0; k++) {
				ssize_t r;

				if (pf[k].fd < 0 ||
				    !(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				r = read(pf[k].fd, buf, sizeof(buf));
				if (r <= 0) {
					close(pf[k].fd);
					pf[k].fd = -1;
					open_fds--;
				} else if (k == 1) {
					tail_add(c, buf, (size_t)r);
				} else if (sw_buf_add(&c->out, buf, (size_t)r) != 0) {
					gone = 2;
					break;
				}
			}
			if (gone)
				break;
		}
		for (int k = 0; k < 2; k++)
			if (pf[k].fd >= 0)
				close(pf[k].fd);
		if (gone) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
		}
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (gone == 2)
			return sbd_art_fail(j, "internal", "%s wrote more than %u bytes", argv[0],
					    STDOUT_MAX);
		if (gone)
			return -1; /* the job's error is set */
	}
	c->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return 0;
}

/* c's stderr as one line for an error: newlines as "; ", the last 600
 * bytes, no trailing blanks. */
static const char *err_line(struct cmd *c)
{
	char *s = c->err;
	size_t n = c->errlen, i, k = 0;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		n--;
	if (n > 600) {
		s += n - 600;
		n = 600;
	}
	for (i = 0; i < n && k + 3 < sizeof(c->line); i++) {
		if (s[i] == '\r')
			continue;
		if (s[i] == '\n') {
			if (k > 0 && c->line[k - 1] != ' ') {
				c->line[k++] = ';';
				c->line[k++] = ' ';
			}
			continue;
		}
		c->line[k++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
	}
	c->line[k] = '\0';
	return k > 0 ? c->line : "(no message)";
}

/* "host" and port of an http(s) URL already checked by sw_artifact_check. */
static int url_host(const char *url, char *host, size_t hostlen, char *port, size_t portlen)
{
	int https = !strncmp(url, "https://", 8);
	const char *a = url + (https ? 8 : 7), *end = a + strcspn(a, "/"), *colon;

	if (*a == '[') {
		const char *rb = memchr(a, ']', (size_t)(end - a));

		if (rb == NULL || (size_t)(rb - a - 1) >= hostlen)
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(rb - a - 1), a + 1);
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(a, ':', (size_t)(end - a));
		if ((size_t)((colon ? colon : end) - a) >= hostlen)
			return -1;
		snprintf(host, hostlen, "%.*s", (int)((colon ? colon : end) - a), a);
	}
	if (colon != NULL)
		snprintf(port, portlen, "%.*s", (int)(end - colon - 1), colon + 1);
	else
		snprintf(port, portlen, "%s", https ? "443" : "80");
	return 0;
}

/* Resolve host:port and keep the addresses we may connect to (at most 8),
 * as curl's resolve entry "host:port:addr[,addr...]" (empty for a literal,
 * which nothing resolves). 0, or -1 with the job failed. */
static int pin_address(struct sbd_art_job *j, const char *url, char *pin, size_t pinlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	char host[256], port[8], name[128], addr[INET6_ADDRSTRLEN];
	const char *why = NULL;
	struct sw_addr_allow none = {0};
	size_t n = 0, at;
	int rc;

	if (url_host(url, host, sizeof(host), port, sizeof(port)) != 0)
		return sbd_art_fail(j, "bad_input", "artifact.repo has no usable host");
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		return sbd_art_fail(j, "artifact_failed", "github: cannot resolve %s: %s", host,
				    gai_strerror(rc));
	at = (size_t)snprintf(pin, pinlen, "%s:%s:", host, port);
	for (ai = res; ai != NULL && n < 8 && at < pinlen; ai = ai->ai_next) {
		const char *w =
		    j->a->cfg.allow_private
			? NULL
			: sw_addr_check(&none, ai->ai_addr, ai->ai_addrlen, name, sizeof(name));

		if (w != NULL) {
			why = w;
			continue;
		}
		if (ai->ai_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr,
				  sizeof(addr));
		else
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr,
				  sizeof(addr));
		if (!strcmp(host, addr)) { /* a literal: nothing to pin */
			freeaddrinfo(res);
			pin[0] = '\0';
			return 0;
		}
		at += (size_t)snprintf(pin + at, pinlen - at,
				       ai->ai_family == AF_INET ? "%s%s" : "%s[%s]", n ? "," : "",
				       addr);
		n++;
	}
	freeaddrinfo(res);
	if (n > 0 && at < pinlen)
		return 0;
	return sbd_art_fail(j, "artifact_failed",
			    "github: %s resolves to no address sandboxd may push to (%s; "
			    "SAGEWAI_ARTIFACT_PRIVATE)",
			    host, why ? why : "none");
}

static int path_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sbd_art_file *)a)->path,
		      ((const struct sbd_art_file *)b)->path);
}

/* Keep in j->files the paths git ls-files -z listed in out; the others
 * were ignored (.gitignore). */
static int keep_tracked(struct sbd_art_job *j, struct sw_buf *out)
{
	size_t i, k = 0, off = 0;
	char *mark = calloc(j->nfiles ? j->nfiles : 1, 1);

	if (mark == NULL)
		return sbd_art_fail(j, "internal", "out of memory");
	qsort(j->files, j->nfiles, sizeof(*j->files), path_cmp);
	while (off < out->len) {
		char *p = out->p + off;
		size_t n = strnlen(p, out->len - off);
		struct sbd_art_file key = {.path = p}, *f;

		if (off + n == out->len)
			break; /* no NUL: cut */
		f = bsearch(&key, j->files, j->nfiles, sizeof(*j->files), path_cmp);
		if (f != NULL)
			mark[f - j->files] = 1;
		off += n + 1;
	}
	j->bytes = 0;
	for (i = 0; i < j->nfiles; i++) {
		if (!mark[i]) {
			if (json_array_size(j->skipped) < 100)
				json_array_append_new(
				    j->skipped, json_pack("{s:o, s:s}", "path",
							  sw_json_string_lossy(j->files[i].path),
							  "why", "ignored by .gitignore"));
			free(j->files[i].path);
			continue;
		}
		j->bytes += j->files[i].size;
		j->files[k++] = j->files[i];
	}
	j->nfiles = k;
	free(mark);
	return 0;
}

/*
 * The next command's stdin in c->in (an unlinked file of the staging
 * directory): index 0, every path of j->files, one a line (names never hold
 * a newline: the staging refuses control characters), for hash-object
 * --stdin-paths; index 1, "100644 BLOB\tPATH" lines for update-index
 * --index-info, the blobs read from c->out (hash-object's answer, one a
 * line, in order). 0, or -1 with the job failed.
 */
static int stdin_file(struct sbd_art_job *j, struct cmd *c, int index)
{
	FILE *f;
	int fd;
	size_t i, off = 0;

	if (c->in >= 0)
		close(c->in);
	c->in = -1;
	if ((fd = openat(j->stage_fd, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600)) < 0 ||
	    (f = fdopen(dup(fd), "w")) == NULL) {
		if (fd >= 0)
			close(fd);
		return sbd_art_fail(j, "internal", "cannot make a list for git: %s",
				    strerror(errno));
	}
	for (i = 0; i < j->nfiles; i++) {
		if (index == 0) {
			fprintf(f, "%s\n", j->files[i].path);
			continue;
		}
		{
			size_t n = off < c->out.len ? strcspn(c->out.p + off, "\n") : 0;

			if (n < 40 || n > 64 || off + n >= c->out.len) {
				fclose(f);
				close(fd);
				return sbd_art_fail(
				    j, "artifact_failed",
				    "github: git hash-object gave %zu blobs for %zu files", i,
				    j->nfiles);
			}
			fprintf(f, "100644 %.*s\t%s\n", (int)n, c->out.p + off, j->files[i].path);
			off += n + 1;
		}
	}
	if (fclose(f) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return sbd_art_fail(j, "disk_full", "the staging directory is full");
	}
	sw_buf_free(&c->out);
	c->in = fd;
	return 0;
}

int sbd_art_push_github(struct sbd_art_job *j)
{
	const char *repo = json_string_value(json_object_get(j->spec, "repo"));
	const char *branch = json_string_value(json_object_get(j->spec, "branch"));
	const unsigned char *tok;
	size_t toklen;
	char pin[400], cfgpath[700], env_cfg[730], env_home[660], env_dir[660], env_tree[660];
	char env_proto[64], git[256], ref[300], msg[600], tree[80], parent[80] = "", commit[80];
	char *envp[16];
	struct cmd c = {.in = -1};
	int cred = -1, rc = -1, fd;
	FILE *f;

	if (branch == NULL)
		branch = "main";
	snprintf(git, sizeof(git), "%s", j->a->cfg.git);
	if ((tok = sbd_art_secret(j, "GITHUB_TOKEN", &toklen)) == NULL)
		return sbd_art_fail(
		    j, "artifact_failed",
		    "github: the step's identity has no GITHUB_TOKEN to push with");
	if (memchr(tok, '\n', toklen) != NULL || memchr(tok, '\0', toklen) != NULL)
		return sbd_art_fail(j, "artifact_failed",
				    "github: GITHUB_TOKEN holds a newline or NUL");
	if (pin_address(j, repo, pin, sizeof(pin)) != 0)
		return -1;
	/* our configuration: no secret in it */
	snprintf(cfgpath, sizeof(cfgpath), "%s/gitconfig", j->stage);
	if ((fd = openat(j->stage_fd, "gitconfig", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			 0600)) < 0 ||
	    (f = fdopen(fd, "w")) == NULL) {
		if (fd >= 0)
			close(fd);
		return sbd_art_fail(j, "internal", "cannot write the git configuration: %s",
				    strerror(errno));
	}
	fprintf(
	    f,
	    "[credential]\n\thelper = \"!f() { test \\\"$1\\\" = get && cat /dev/fd/3; }; f\"\n"
	    "[http]\n\tfollowRedirects = false\n%s%s%s"
	    "[protocol]\n\tallow = never\n[protocol \"https\"]\n\tallow = always\n"
	    "[protocol \"http\"]\n\tallow = %s\n"
	    "[core]\n\thooksPath = /dev/null\n\tfsmonitor = false\n\tautocrlf = false\n"
	    "\tsymlinks = false\n[init]\n\tdefaultBranch = main\n[gc]\n\tauto = 0\n",
	    pin[0] ? "\tcurloptResolve = " : "", pin, pin[0] ? "\n" : "",
	    j->a->cfg.insecure_http ? "always" : "never");
	if (fclose(f) != 0)
		return sbd_art_fail(j, "internal", "cannot write the git configuration");
	/* the token: in a memfd that only the credential helper reads */
	if ((cred = memfd_create("sagewai-cred", MFD_CLOEXEC)) < 0)
		return sbd_art_fail(j, "internal", "memfd_create: %s", strerror(errno));
	{
		static const char u[] = "username=x-access-token\npassword=";

		if (write(cred, u, sizeof(u) - 1) != (ssize_t)(sizeof(u) - 1) ||
		    write(cred, tok, toklen) != (ssize_t)toklen || write(cred, "\n", 1) != 1) {
			sbd_art_fail(j, "internal", "cannot write the credential memfd");
			goto out;
		}
	}
	snprintf(env_cfg, sizeof(env_cfg), "GIT_CONFIG_GLOBAL=%s", cfgpath);
	snprintf(env_home, sizeof(env_home), "HOME=%s", j->stage);
	snprintf(env_dir, sizeof(env_dir), "GIT_DIR=%s/git", j->stage);
	snprintf(env_tree, sizeof(env_tree), "GIT_WORK_TREE=%s/tree", j->stage);
	snprintf(env_proto, sizeof(env_proto), "GIT_ALLOW_PROTOCOL=%s",
		 j->a->cfg.insecure_http ? "https:http" : "https");
	{
		int n = 0;

		envp[n++] = "PATH=/usr/bin:/bin";
		envp[n++] = env_home;
		envp[n++] = env_cfg;
		envp[n++] = "GIT_CONFIG_NOSYSTEM=1";
		envp[n++] = env_dir;
		envp[n++] = env_tree;
		envp[n++] = env_proto;
		envp[n++] = "GIT_TERMINAL_PROMPT=0";
		envp[n++] = "GIT_ASKPASS=/bin/false";
		envp[n++] = "LC_ALL=C";
		envp[n++] = "GIT_AUTHOR_NAME=Sagewai";
		envp[n++] = "GIT_AUTHOR_EMAIL=sagewai@localhost";
		envp[n++] = "GIT_COMMITTER_NAME=Sagewai";
		envp[n++] = "GIT_COMMITTER_EMAIL=sagewai@localhost";
		envp[n] = NULL;
	}
	snprintf(ref, sizeof(ref), "refs/heads/%s", branch);
	snprintf(msg, sizeof(msg), "sagewai: run %s, step %s", j->h.run_id, j->step);
	{
		char *init[] = {git, "init", "-q", NULL};
		char *ls[] = {git, "ls-files", "-z", "--others", "--exclude-standard", NULL};
		char *hash[] = {git, "hash-object", "-w", "--no-filters", "--stdin-paths", NULL};
		char *upd[] = {git, "update-index", "--add", "--index-info", NULL};
		char *wt[] = {git, "write-tree", NULL};
		char *lsr[] = {git, "ls-remote", "--", (char *)repo, ref, NULL};

		if (run(j, init, envp, -1, &c) != 0)
			goto out;
		if (c.status != 0) {
			sbd_art_fail(j, "internal", "git init: %s", err_line(&c));
			goto out;
		}
		sw_buf_free(&c.out);
		/* what to commit: the snapshot less what .gitignore excludes */
		if (run(j, ls, envp, -1, &c) != 0)
			goto out;
		if (c.status != 0) {
			sbd_art_fail(j, "artifact_failed", "github: git ls-files: %s",
				     err_line(&c));
			goto out;
		}
		if (keep_tracked(j, &c.out) != 0)
			goto out;
		sw_buf_free(&c.out);
		/* blobs of the bytes as staged and scanned: --no-filters, so no
		 * .gitattributes of the workspace (eol, working-tree-encoding,
		 * filters) turns them into something the scan did not see */
		if (stdin_file(j, &c, 0) != 0 || run(j, hash, envp, -1, &c) != 0)
			goto out;
		if (c.status != 0) {
			sbd_art_fail(j, "artifact_failed", "github: git hash-object: %s",
				     err_line(&c));
			goto out;
		}
		if (stdin_file(j, &c, 1) != 0 || run(j, upd, envp, -1, &c) != 0)
			goto out;
		if (c.status != 0) {
			sbd_art_fail(j, "artifact_failed", "github: git update-index: %s",
				     err_line(&c));
			goto out;
		}
		close(c.in);
		c.in = -1;
		sw_buf_free(&c.out);
		if (run(j, wt, envp, -1, &c) != 0)
			goto out;
		if (c.status != 0 || c.out.len < 40 || c.out.len > 70) {
			sbd_art_fail(j, "artifact_failed", "github: git write-tree: %s",
				     err_line(&c));
			goto out;
		}
		snprintf(tree, sizeof(tree), "%.*s", (int)strcspn(c.out.p, "\n"), c.out.p);
		sw_buf_free(&c.out);
		/* the branch's tip, if it exists: the first round trip with the token */
		if (run(j, lsr, envp, cred, &c) != 0)
			goto out;
		if (c.status != 0) {
			sbd_art_fail(j, "artifact_failed", "github: %s refused or failed: %s",
				     repo, err_line(&c));
			goto out;
		}
		if (c.out.len >= 40) {
			size_t n = strcspn(c.out.p, "\t \n");

			if (n < 40 || n > 64) {
				sbd_art_fail(j, "artifact_failed", "github: odd ls-remote answer");
				goto out;
			}
			snprintf(parent, sizeof(parent), "%.*s", (int)n, c.out.p);
		}
		sw_buf_free(&c.out);
	}
	if (parent[0] != '\0') {
		char *fetch[] = {git,  "fetch",	     "-q", "--depth=1", "--no-tags",
				 "--", (char *)repo, ref,  NULL};

		if (run(j, fetch, envp, cred, &c) != 0)
			goto out;
		if (c.status != 0) {
			sbd_art_fail(j, "artifact_failed", "github: fetching %s of %s: %s", branch,
				     repo, err_line(&c));
			goto out;
		}
		sw_buf_free(&c.out);
	}
	{
		char *ct_p[] = {git, "commit-tree", tree, "-p", parent, "-m", msg, NULL};
		char *ct[] = {git, "commit-tree", tree, "-m", msg, NULL};
		char spec[400];
		char *push[] = {git, "push", "-q", "--", (char *)repo, spec, NULL};

		if (run(j, parent[0] ? ct_p : ct, envp, -1, &c) != 0)
			goto out;
		if (c.status != 0 || c.out.len < 40) {
			sbd_art_fail(j, "artifact_failed", "github: git commit-tree: %s",
				     err_line(&c));
			goto out;
		}
		snprintf(commit, sizeof(commit), "%.*s", (int)strcspn(c.out.p, "\n"), c.out.p);
		sw_buf_free(&c.out);
		snprintf(spec, sizeof(spec), "%s:%s", commit, ref);
		if (run(j, push, envp, cred, &c) != 0)
			goto out;
		if (c.status != 0) {
			sbd_art_fail(j, "artifact_failed", "github: push to %s (%s) failed: %s",
				     repo, branch, err_line(&c));
			goto out;
		}
	}
	snprintf(j->location, sizeof(j->location), "%s#%s@%s", repo, branch, commit);
	rc = 0;
out:
	sw_buf_free(&c.out);
	if (c.in >= 0)
		close(c.in);
	if (cred >= 0)
		close(cred);
	return rc;
}

/* ---- s3 ------------------------------------------------------------------- */

struct s3_resp {
	char body[4096];
	size_t len;
};

static size_t s3_write(char *p, size_t size, size_t n, void *arg)
{
	struct s3_resp *r = arg;
	size_t len = size * n, room = sizeof(r->body) - 1 - r->len;

	if (len < room)
		room = len;
	memcpy(r->body + r->len, p, room);
	r->len += room;
	r->body[r->len] = '\0';
	return len;
}

static int s3_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)a;
	(void)b;
	(void)c;
	(void)d;
	return sbd_art_cancelled(arg) ? 1 : 0;
}

/* <Tag>text</Tag> of an S3 error body into out ("" when absent). */
static void xml_tag(const char *body, const char *tag, char *out, size_t outlen)
{
	char open[40], close_[40];
	const char *a, *b;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close_, sizeof(close_), "</%s>", tag);
	out[0] = '\0';
	if ((a = strstr(body, open)) == NULL || (b = strstr(a, close_)) == NULL)
		return;
	a += strlen(open);
	snprintf(out, outlen, "%.*s", (int)(b - a), a);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

/* RFC 3986 encoding of an object key, '/' kept. */
static int key_encode(struct sw_buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("-._~/", c) != NULL) {
			if (sw_buf_add(b, s, 1) != 0)
				return -1;
		} else if (sw_buf_printf(b, "%%%02X", c) != 0) {
			return -1;
		}
	}
	return 0;
}

static const char *content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} t[] = {{".html", "text/html; charset=utf-8"},
		 {".htm", "text/html; charset=utf-8"},
		 {".css", "text/css; charset=utf-8"},
		 {".js", "text/javascript; charset=utf-8"},
		 {".json", "application/json"},
		 {".svg", "image/svg+xml"},
		 {".png", "image/png"},
		 {".jpg", "image/jpeg"},
		 {".jpeg", "image/jpeg"},
		 {".gif", "image/gif"},
		 {".txt", "text/plain; charset=utf-8"},
		 {".md", "text/markdown; charset=utf-8"}};
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot != NULL && i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcasecmp(dot, t[i].ext))
			return t[i].type;
	return "application/octet-stream";
}

int sbd_art_push_s3(struct sbd_art_job *j)
{
	const char *bucket = json_string_value(json_object_get(j->spec, "bucket"));
	const char *prefix = json_string_value(json_object_get(j->spec, "prefix"));
	const char *endpoint = json_string_value(json_object_get(j->spec, "endpoint"));
	const char *region = json_string_value(json_object_get(j->spec, "region"));
	const unsigned char *akid, *secret, *session, *rg;
	size_t akid_len, secret_len, session_len = 0, rg_len = 0;
	char *user = NULL, *pass = NULL, sigv4[80], regbuf[40], *hdr_tok = NULL;
	struct sw_buf url;
	CURL *cu = NULL;
	int rc = -1;

	if (prefix == NULL)
		prefix = "";
	if ((akid = sbd_art_secret(j, "AWS_ACCESS_KEY_ID", &akid_len)) == NULL ||
	    (secret = sbd_art_secret(j, "AWS_SECRET_ACCESS_KEY", &secret_len)) == NULL)
		return sbd_art_fail(j, "artifact_failed",
				    "s3: the step's identity has no AWS_ACCESS_KEY_ID and "
				    "AWS_SECRET_ACCESS_KEY to upload with");
	session = sbd_art_secret(j, "AWS_SESSION_TOKEN", &session_len);
	if (region == NULL && (rg = sbd_art_secret(j, "AWS_REGION", &rg_len)) != NULL &&
	    rg_len < sizeof(regbuf)) {
		snprintf(regbuf, sizeof(regbuf), "%.*s", (int)rg_len, rg);
		if (sw_artifact_region_refusal(regbuf, strlen(regbuf)) != NULL)
			return sbd_art_fail(j, "artifact_failed",
					    "s3: AWS_REGION is not a region");
		region = regbuf;
	}
	if (region == NULL)
		region = j->a->cfg.s3_region;
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", region);
	sw_buf_init(&url, 0);
	/* the keys, as libcurl wants them: NUL-terminated copies, wiped after */
	if ((user = sodium_malloc(akid_len + 1)) == NULL ||
	    (pass = sodium_malloc(secret_len + 1)) == NULL ||
	    (session != NULL && (hdr_tok = sodium_malloc(session_len + 32)) == NULL)) {
		sbd_art_fail(j, "internal", "out of memory");
		goto out;
	}
	memcpy(user, akid, akid_len);
	user[akid_len] = '\0';
	memcpy(pass, secret, secret_len);
	pass[secret_len] = '\0';
	if (session != NULL) {
		memcpy(hdr_tok, "x-amz-security-token: ", 22);
		memcpy(hdr_tok + 22, session, session_len);
		hdr_tok[22 + session_len] = '\0';
	}
	if ((cu = curl_easy_init()) == NULL) {
		sbd_art_fail(j, "internal", "curl_easy_init failed");
		goto out;
	}
	for (size_t i = 0; i < j->nfiles; i++) {
		const char *path = j->files[i].path;
		unsigned char digest[crypto_hash_sha256_BYTES];
		char hex[2 * sizeof(digest) + 1], h_sha[100], h_type[100];
		struct curl_slist *hdrs = NULL, *h;
		struct s3_resp resp = {.len = 0};
		struct stat st;
		void *p = NULL;
		long code = 0;
		int fd;
		CURLcode cc;

		if (sbd_art_cancelled(j))
			goto out;
		sw_buf_reset(&url);
		if (endpoint != NULL) {
			size_t n = strlen(endpoint);

			if (sw_buf_add(&url, endpoint, n && endpoint[n - 1] == '/' ? n - 1 : n) ||
			    sw_buf_printf(&url, "/%s/", bucket))
				goto oom;
		} else if (sw_buf_printf(&url, "https://%s.s3.%s.amazonaws.com/", bucket,
					 region)) {
			goto oom;
		}
		if (key_encode(&url, prefix) != 0 ||
		    (prefix[0] && prefix[strlen(prefix) - 1] != '/' && sw_buf_add(&url, "/", 1)) ||
		    key_encode(&url, path) != 0 || sw_buf_add(&url, "", 1) != 0)
			goto oom;
		if ((fd = sbd_art_open_staged(j, path)) < 0 || fstat(fd, &st) != 0) {
			if (fd >= 0)
				close(fd);
			sbd_art_fail(j, "internal", "cannot read the staged %s", path);
			goto out;
		}
		if (st.st_size > 0 && (p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
						fd, 0)) == MAP_FAILED) {
			close(fd);
			sbd_art_fail(j, "internal", "cannot map the staged %s", path);
			goto out;
		}
		close(fd);
		crypto_hash_sha256(digest, p ? p : (const void *)"",
				   (unsigned long long)st.st_size);
		sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
		snprintf(h_sha, sizeof(h_sha), "x-amz-content-sha256: %s", hex);
		snprintf(h_type, sizeof(h_type), "Content-Type: %s", content_type(path));
		if ((h = curl_slist_append(hdrs, h_sha)) == NULL || (hdrs = h, 0) ||
		    (h = curl_slist_append(hdrs, h_type)) == NULL || (hdrs = h, 0) ||
		    (hdr_tok != NULL &&
		     ((h = curl_slist_append(hdrs, hdr_tok)) == NULL || (hdrs = h, 0)))) {
			curl_slist_free_all(hdrs);
			if (p)
				munmap(p, (size_t)st.st_size);
			goto oom;
		}
		curl_easy_reset(cu);
		curl_easy_setopt(cu, CURLOPT_URL, url.p);
		curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(cu, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(cu, CURLOPT_PROXY, "");
		curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, p ? (const char *)p : "");
		curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
		curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(cu, CURLOPT_AWS_SIGV4, sigv4);
		curl_easy_setopt(cu, CURLOPT_USERNAME, user);
		curl_easy_setopt(cu, CURLOPT_PASSWORD, pass);
		curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, s3_write);
		curl_easy_setopt(cu, CURLOPT_WRITEDATA, &resp);
		curl_easy_setopt(cu, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(cu, CURLOPT_XFERINFOFUNCTION, s3_progress);
		curl_easy_setopt(cu, CURLOPT_XFERINFODATA, j);
		curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
		curl_easy_setopt(
		    cu, CURLOPT_TIMEOUT_MS,
		    (long)(j->deadline_ms > sw_mono_ms() ? j->deadline_ms - sw_mono_ms() : 1));
		cc = curl_easy_perform(cu);
		curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &code);
		curl_slist_free_all(hdrs);
		if (p)
			munmap(p, (size_t)st.st_size);
		if (cc == CURLE_ABORTED_BY_CALLBACK)
			goto out; /* cancelled: the error is set */
		if (cc != CURLE_OK) {
			sbd_art_fail(j, "artifact_failed", "s3: PUT s3://%s/%s%s%s: %s", bucket,
				     prefix,
				     prefix[0] && prefix[strlen(prefix) - 1] != '/' ? "/" : "",
				     path, curl_easy_strerror(cc));
			goto out;
		}
		if (code < 200 || code > 299) {
			char scode[80], smsg[300];

			xml_tag(resp.body, "Code", scode, sizeof(scode));
			xml_tag(resp.body, "Message", smsg, sizeof(smsg));
			sbd_art_fail(j, "artifact_failed",
				     "s3: PUT s3://%s/%s%s%s: HTTP %ld%s%s%s%s", bucket, prefix,
				     prefix[0] && prefix[strlen(prefix) - 1] != '/' ? "/" : "",
				     path, code, scode[0] ? " " : "", scode, smsg[0] ? ": " : "",
				     smsg);
			goto out;
		}
	}
	snprintf(j->location, sizeof(j->location), "s3://%s/%s", bucket, prefix);
	rc = 0;
	goto out;
oom:
	sbd_art_fail(j, "internal", "out of memory");
out:
	if (cu != NULL)
		curl_easy_cleanup(cu);
	sw_buf_free(&url);
	sodium_free(user);
	sodium_free(pass);
	sodium_free(hdr_tok);
	return rc;
}

/* ---- local ----------------------------------------------------------------- */

/* A tenant, run or step name as one directory name. */
static int dir_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128 || !strcmp(s, ".") || !strcmp(s, ".."))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

/* dirfd/name as a directory, made if absent, never through a symlink. */
static int open_mkdir(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0750) != 0 && errno != EEXIST)
		return -1;
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Copy the staged directory src into dst (both open), recursively; our
 * tree holds only directories and regular files. 0, or -1 with errno. */
static int copy_tree(struct sbd_art_job *j, int src, int dst)
{
	int dup_fd = dup(src), rc = 0;
	struct dirent *de;
	DIR *d;

	if (dup_fd < 0 || (d = fdopendir(dup_fd)) == NULL) {
		if (dup_fd >= 0)
			close(dup_fd);
		return -1;
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		struct stat st;
		int in, out;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (sbd_art_cancelled(j)) {
			errno = ECANCELED;
			rc = -1;
			break;
		}
		if (fstatat(src, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			rc = -1;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			in = openat(src, de->d_name,
				    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (in < 0 || mkdirat(dst, de->d_name, 0750) != 0 ||
			    (out = openat(dst, de->d_name,
					  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
				if (in >= 0)
					close(in);
				rc = -1;
				break;
			}
			rc = copy_tree(j, in, out);
			close(in);
			close(out);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		if ((in = openat(src, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			rc = -1;
			break;
		}
		out = openat(dst, de->d_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			     0640);
		if (out < 0 || sbd_art_copy_fd(in, out, UINT64_MAX) < 0)
			rc = -1;
		if (out >= 0 && close(out) != 0)
			rc = -1;
		close(in);
	}
	{
		int e = errno;

		closedir(d);
		errno = e;
	}
	return rc;
}

int sbd_art_push_local(struct sbd_art_job *j)
{
	const char *rel = json_string_value(json_object_get(j->spec, "path"));
	const char *names[3] = {j->h.tenant, j->h.run_id, j->step};
	char buf[SW_ARTIFACT_PATH_MAX + 1], partial[64], *p, *slash, *leaf;
	int root, fd, next, rc = -1;

	for (int i = 0; i < 3; i++)
		if (!dir_name_ok(names[i]))
			return sbd_art_fail(
			    j, "bad_input",
			    "local: the tenant, run or step is not a directory name");
	if ((root = open(j->a->cfg.local_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return sbd_art_fail(j, "artifact_failed",
				    "local: SAGEWAI_ARTIFACT_LOCAL_DIR %s cannot be opened: %s",
				    j->a->cfg.local_dir, strerror(errno));
	fd = root;
	for (int i = 0; i < 3; i++) {
		if ((next = open_mkdir(fd, names[i])) < 0) {
			sbd_art_fail(j, "artifact_failed", "local: cannot make %s under %s: %s",
				     names[i], j->a->cfg.local_dir,
				     errno == ELOOP || errno == ENOTDIR
					 ? "not a directory (a symlink?)"
					 : strerror(errno));
			goto out;
		}
		close(fd);
		fd = next;
	}
	snprintf(buf, sizeof(buf), "%s", rel);
	for (p = buf; (slash = strchr(p, '/')) != NULL; p = slash + 1) {
		*slash = '\0';
		if ((next = open_mkdir(fd, p)) < 0) {
			sbd_art_fail(j, "artifact_failed", "local: cannot make %s: %s", p,
				     errno == ELOOP || errno == ENOTDIR
					 ? "not a directory (a symlink is never followed)"
					 : strerror(errno));
			goto out;
		}
		close(fd);
		fd = next;
	}
	leaf = p;
	{
		uint8_t u[16];
		char id[SW_UUID_STRLEN];
		int dst;

		sw_uuid_v7(u);
		sw_uuid_format(u, id);
		snprintf(partial, sizeof(partial), ".sagewai-partial-%s", id);
		if (mkdirat(fd, partial, 0750) != 0 ||
		    (dst = openat(fd, partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
			0) {
			sbd_art_fail(j,
				     errno == ENOSPC || errno == EDQUOT ? "disk_full"
									: "artifact_failed",
				     "local: cannot write under %s: %s", j->a->cfg.local_dir,
				     strerror(errno));
			goto out;
		}
		if (copy_tree(j, j->tree_fd, dst) != 0) {
			int e = errno;

			close(dst);
			sbd_art_rmtree(fd, partial);
			if (e != ECANCELED)
				sbd_art_fail(j,
					     e == ENOSPC || e == EDQUOT ? "disk_full"
									: "artifact_failed",
					     "local: copying into %s: %s", j->a->cfg.local_dir,
					     strerror(e));
			goto out;
		}
		close(dst);
		if (syscall(SYS_renameat2, fd, partial, fd, leaf, 1 /* RENAME_NOREPLACE */) != 0) {
			int e = errno;

			sbd_art_rmtree(fd, partial);
			sbd_art_fail(j, "artifact_failed", "local: %s/%s/%s/%s %s", j->h.tenant,
				     j->h.run_id, j->step, rel,
				     e == EEXIST ? "exists already (never overwritten)"
						 : strerror(e));
			goto out;
		}
	}
	snprintf(j->location, sizeof(j->location), "%s/%s/%s/%s/%s", j->a->cfg.local_dir,
		 j->h.tenant, j->h.run_id, j->step, rel);
	rc = 0;
out:
	close(fd);
	return rc;
}

/* ---- none ------------------------------------------------------------------ */

int sbd_art_push_none(struct sbd_art_job *j)
{
	json_t *ws;
	size_t i;

	if (j->bytes > j->a->cfg.inline_max)
		return sbd_art_fail(
		    j, "artifact_too_large",
		    "the workspace holds %llu bytes, more than the %zu a step's output "
		    "may hold (SAGEWAI_ARTIFACT_INLINE_MAX); choose another "
		    "destination",
		    (unsigned long long)j->bytes, j->a->cfg.inline_max);
	if ((ws = json_array()) == NULL)
		return sbd_art_fail(j, "internal", "out of memory");
	for (i = 0; i < j->nfiles; i++) {
		const char *path = j->files[i].path;
		uint64_t size = j->files[i].size;
		char *data = malloc(size + 1);
		json_t *text = NULL, *o;
		int fd = sbd_art_open_staged(j, path);
		ssize_t got = -1;

		if (data != NULL && fd >= 0)
			got = read(fd, data, size + 1);
		if (fd >= 0)
			close(fd);
		if (got < 0 || (uint64_t)got != size) {
			free(data);
			json_decref(ws);
			return sbd_art_fail(j, "internal", "cannot read the staged %s", path);
		}
		if (memchr(data, '\0', size) == NULL)
			text = json_stringn(data, size); /* NULL unless valid UTF-8 */
		if (text != NULL) {
			o = json_pack("{s:o, s:I, s:s, s:o}", "path", sw_json_string_lossy(path),
				      "size", (json_int_t)size, "sha256", j->files[i].sha256,
				      "text", text);
		} else {
			size_t elen =
			    sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL);
			char *b64 = malloc(elen);

			o = b64 ? json_pack("{s:o, s:I, s:s, s:s}", "path",
					    sw_json_string_lossy(path), "size", (json_int_t)size,
					    "sha256", j->files[i].sha256, "base64",
					    sodium_bin2base64(b64, elen, (unsigned char *)data,
							      size,
							      sodium_base64_VARIANT_ORIGINAL))
				: NULL;
			free(b64);
		}
		free(data);
		if (o == NULL || json_array_append_new(ws, o) != 0) {
			json_decref(ws);
			return sbd_art_fail(j, "internal", "out of memory");
		}
	}
	j->summary = json_pack("{s:s, s:s, s:I, s:I, s:o, s:O}", "destination", "none", "location",
			       "", "files", (json_int_t)j->nfiles, "bytes", (json_int_t)j->bytes,
			       "workspace", ws, "skipped", j->skipped);
	if (j->summary == NULL)
		return sbd_art_fail(j, "internal", "out of memory");
	return 0;
}
