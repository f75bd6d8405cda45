/*
 * sandboxd_artifact_*: the artifact module (services/sandboxd/artifact*.c)
 * driven directly on an event loop of its own, against real destinations:
 * git http-backend behind a token-checking server (git_server.py), moto's
 * S3 with SigV4 checking (s3_server.py), a host directory, and a real
 * bubblewrap sandbox for the snapshot. One scenario per argument:
 *
 *   scan      the secret scan: an injected value raw, base64, hex, percent,
 *             in a deep file, in a file name, in a skipped symlink's name;
 *             GitHub-, AWS-, sk- and PEM-shaped credentials; each refused
 *             with FILE:LINE, never the value; artifact.scan_refused
 *             (schema-checked); nothing written to the destination; a clean
 *             workspace then delivered (artifact.pushed)
 *   none      inline output: text and base64; the inline cap and the file
 *             and byte caps fail instead of truncating
 *   local     the copy under TENANT/RUN/STEP/PATH; symlinks in the workspace
 *             never followed; .git left out; an existing target refused; a
 *             symlink planted in the destination tree not followed; PATH
 *             traversal refused; hostile tar streams (.., absolute names, a
 *             symlink then a file through it, hard links, garbage, a cut
 *             stream) refused or defused, nothing written outside; a full
 *             destination disk fails disk_full; not configured: refused
 *   github    push, then a fast-forward push; .gitignore; wrong and revoked
 *             tokens fail with the server's text and without the token; no
 *             token; plain http and loopback refused unless allowed; a
 *             refused scan leaves the branch as it was; every git object on
 *             the server and the request log hold no spelling of the token
 *   s3        upload under a prefix (objects read back); a missing bucket, a
 *             bad secret and an unknown key fail with S3's answer; an
 *             endpoint the operator did not allow is refused; every object
 *             holds no spelling of the secrets
 *   snapshot  a real sandbox's tmpfs /workspace, packed by tar inside it
 *             (SBD_ARTIFACT_PACK_ARGV) and delivered; abandon and stop with
 *             deliveries in flight
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <curl/curl.h>
#include <event2/thread.h>
#include <sodium.h>

#include "sandboxd.h"
#include "sw_redact.h"
#include "sw_sandbox.h"
#include "sw_test_svc.h"

#define TOKEN "tok-Zq81xVb27LmNc4Rt"
#define AWS_SECRET_MARK "not-the-real-secret" /* replaced by moto's */
#define GHP_SHAPED "ghp_4fTq9ZkLm2Rx7PwY1vB8nC3dE6gH0jK5sA2b"

static char tmp[512];	  /* this run's scratch directory */
static char src_dir[600]; /* the test's source dir (helpers) */
static struct event_base *base;
static struct sw_event_registry *reg;
static pid_t helpers[4];
static size_t nhelpers;

/* ---- small helpers --------------------------------------------------------- */

static void kill_helpers(void)
{
	for (size_t i = 0; i < nhelpers; i++)
		if (helpers[i] > 0) {
			kill(helpers[i], SIGKILL);
			waitpid(helpers[i], NULL, 0);
			helpers[i] = 0;
		}
}

/* The output of a shell command (malloc'd, NUL-terminated). */
static char *sh_out(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sh_out(size_t *len, const char *fmt, ...)
{
	char cmd[4096], buf[65536];
	struct sw_buf b;
	va_list ap;
	FILE *p;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	sw_buf_init(&b, 0);
	SW_CHECK((p = popen(cmd, "r")) != NULL);
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		SW_CHECK(sw_buf_add(&b, buf, n) == 0);
	pclose(p);
	SW_CHECK(sw_buf_add(&b, "", 1) == 0);
	if (len)
		*len = b.len - 1;
	return sw_buf_steal(&b, NULL);
}

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");

	SW_CHECKF(f != NULL, "%s: %s", path, strerror(errno));
	fputs(content, f);
	fclose(f);
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Start a helper server; its first stdout line into line. */
static pid_t helper(const char *const *argv, char *line, size_t len)
{
	int p[2];
	pid_t pid;
	FILE *f;

	SW_CHECK(pipe(p) == 0);
	if ((pid = fork()) == 0) {
		char log[700];
		int lfd;

		snprintf(log, sizeof(log), "%s/helper-%zu.log", tmp, nhelpers);
		if ((lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0)
			dup2(lfd, 2);
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	SW_CHECK(pid > 0);
	helpers[nhelpers++] = pid;
	f = fdopen(p[0], "r");
	SW_CHECKF(fgets(line, (int)len, f) != NULL, "%s did not start", argv[1]);
	line[strcspn(line, "\n")] = '\0';
	fclose(f); /* the helper keeps its end: writes later would fail, it writes no more */
	return pid;
}

/* ---- the module on our loop ------------------------------------------------- */

struct outcome {
	int done;
	bool ok;
	char error[1024];
	char location[1024];
	size_t files;
	uint64_t bytes;
	json_t *summary;
};

struct emitted {
	char type[64];
	json_t *fields;
};
static struct emitted events[256];
static size_t nevents;

static void emit(void *arg, const char *type, const struct sw_event_header *like, json_t *fields)
{
	struct sw_event_header h;
	char err[256];
	void *buf = NULL;
	size_t len;

	(void)arg;
	/* what sandboxd would produce must encode with its schema */
	sw_event_header_init(&h, type, "sagewai-sandboxd");
	memcpy(h.tenant, like->tenant, sizeof(h.tenant));
	memcpy(h.run_id, like->run_id, sizeof(h.run_id));
	memcpy(h.step_id, like->step_id, sizeof(h.step_id));
	SW_CHECKF(sw_event_encode(reg, type, &h, fields, &buf, &len, err, sizeof(err)) == 0,
		  "%s: %s", type, err);
	free(buf);
	SW_CHECK(nevents < 256);
	snprintf(events[nevents].type, sizeof(events[nevents].type), "%s", type);
	events[nevents++].fields = fields;
}

static void on_result(void *opaque, const struct sbd_artifact_result *r)
{
	struct outcome *o = opaque;

	o->done++;
	o->ok = r->ok;
	snprintf(o->error, sizeof(o->error), "%s", r->error ? r->error : "");
	snprintf(o->location, sizeof(o->location), "%s", r->location ? r->location : "");
	o->files = r->files;
	o->bytes = r->bytes;
	o->summary = r->summary ? json_incref(r->summary) : NULL;
	event_base_loopbreak(base);
}

static struct sbd_artifact_config config(void)
{
	struct sbd_artifact_config c;
	char err[256];
	char *envp[] = {NULL};

	SW_CHECKF(sbd_artifact_configure(&c, envp, err, sizeof(err)) == 0, "%s", err);
	snprintf(c.stage_parent, sizeof(c.stage_parent), "%s", tmp);
	c.timeout_ms = 60000;
	return c;
}

static void env_start(struct sbd_env *env, const struct sbd_artifact_config *c)
{
	char err[256];

	memset(env, 0, sizeof(*env));
	env->base = base;
	env->art = sbd_artifact_start(base, c, emit, NULL, err, sizeof(err));
	SW_CHECKF(env->art != NULL, "%s", err);
}

static void env_stop(struct sbd_env *env)
{
	sbd_artifact_stop(env->art);
	env->art = NULL;
}

struct secrets {
	struct sbd_artifact_secret s[8];
	size_t n;
};

/* Deliver; wait for the outcome. sync_err gets a synchronous refusal
 * (then the return is -1). */
static int deliver_fd(struct sbd_env *env, const char *spec_json, int fd,
		      const struct secrets *sec, struct outcome *o, char *sync_err, size_t errlen)
{
	struct sw_event_header h;
	json_t *spec = json_loads(spec_json, 0, NULL);
	struct sbd_artifact_req req = {.spec = spec,
				       .workspace_fd = fd,
				       .secrets = sec ? sec->s : NULL,
				       .nsecrets = sec ? sec->n : 0,
				       .h = &h,
				       .step = "build",
				       .sandbox_id = "0190b0b0-0000-7000-8000-000000000001"};
	char err[1024];
	int rc;

	SW_CHECKF(spec != NULL, "%s", spec_json);
	memset(&h, 0, sizeof(h));
	snprintf(h.tenant, sizeof(h.tenant), "tenant-1");
	snprintf(h.run_id, sizeof(h.run_id), "0190b0b0-1111-7000-8000-000000000002");
	snprintf(h.step_id, sizeof(h.step_id), "%s/build/1", h.run_id);
	memset(o, 0, sizeof(*o));
	rc = sbd_artifact_deliver(env, &req, on_result, o, err, sizeof(err));
	json_decref(spec);
	if (rc != 0) {
		if (sync_err)
			snprintf(sync_err, errlen, "%s", err);
		return -1;
	}
	while (!o->done)
		event_base_loop(base, EVLOOP_ONCE);
	SW_CHECK(o->done == 1);
	return 0;
}

static int deliver(struct sbd_env *env, const char *spec, const char *dir,
		   const struct secrets *sec, struct outcome *o, char *sync_err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	SW_CHECKF(fd >= 0, "%s", dir);
	return deliver_fd(env, spec, fd, sec, o, sync_err, errlen);
}

static void outcome_free(struct outcome *o)
{
	json_decref(o->summary);
	o->summary = NULL;
}

/* No spelling of any secret in sec, nor a GitHub-shaped token, in text. */
static void no_secret(const struct secrets *sec, const void *text, size_t len, const char *what)
{
	struct sw_redact *r = sw_redact_new();
	char err[256], key[64];
	size_t off;

	SW_CHECK(r != NULL);
	for (size_t i = 0; sec && i < sec->n; i++)
		SW_CHECKF(sw_redact_add(r, sec->s[i].env, sec->s[i].value, sec->s[i].len, err,
					sizeof(err)) == 0,
			  "%s", err);
	SW_CHECK(sw_redact_add(r, "GHP", GHP_SHAPED, strlen(GHP_SHAPED), err, sizeof(err)) == 0);
	SW_CHECKF(sw_redact_find(r, text, len, &off, NULL, key, sizeof(key)) == 0,
		  "%s holds the value of %s at %zu", what, key, off);
	sw_redact_destroy(r);
}

static void no_secret_json(const struct secrets *sec, json_t *j, const char *what)
{
	char *s = json_dumps(j, JSON_COMPACT);

	SW_CHECK(s != NULL);
	no_secret(sec, s, strlen(s), what);
	free(s);
}

static struct emitted *last_event(const char *type)
{
	for (size_t i = nevents; i > 0; i--)
		if (!strcmp(events[i - 1].type, type))
			return &events[i - 1];
	return NULL;
}

static void fresh_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmp, name);
	sw_test_sh("rm -rf '%s' && mkdir -p '%s'", out, out);
}

/* ---- scan --------------------------------------------------------------------- */

static void expect_refused(struct sbd_env *env, const char *spec, const char *ws,
			   const struct secrets *sec, const char *where, const char *what)
{
	struct outcome o;
	struct emitted *e;
	size_t before = nevents;

	SW_CHECK(deliver(env, spec, ws, sec, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strncmp(o.error, "artifact_refused: ", 18) == 0, "%s", o.error);
	SW_CHECKF(strstr(o.error, where) != NULL && strstr(o.error, what) != NULL,
		  "want %s / %s in: %s", where, what, o.error);
	no_secret(sec, o.error, strlen(o.error), "the error");
	SW_CHECK(nevents == before + 1);
	e = last_event("artifact.scan_refused");
	SW_CHECK(e != NULL && e == &events[nevents - 1]);
	SW_CHECKF(strstr(json_string_value(json_object_get(e->fields, "what")), what) != NULL,
		  "what: %s", json_string_value(json_object_get(e->fields, "what")));
	no_secret_json(sec, e->fields, "artifact.scan_refused");
	fprintf(stderr, "  refused: %s\n", o.error);
	outcome_free(&o);
}

static void test_scan(void)
{
	struct sbd_artifact_config c = config();
	struct secrets sec = {.n = 2};
	char ws[700], local[700], spec[1024], b64[128], p[1200];
	struct sbd_env env;
	struct outcome o;
	struct emitted *e;

	sec.s[0] = (struct sbd_artifact_secret){"GITHUB_TOKEN", TOKEN, strlen(TOKEN)};
	sec.s[1] =
	    (struct sbd_artifact_secret){"AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG", 21};
	fresh_dir(local, sizeof(local), "scan-local");
	snprintf(c.local_dir, sizeof(c.local_dir), "%s", local);
	env_start(&env, &c);
	snprintf(spec, sizeof(spec), "{\"destination\": \"local\", \"path\": \"out\"}");

	/* raw, five directories down, line 3 */
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh(
	    "mkdir -p %s/a/b/c/d/e && printf 'x\\ny\\nkey=%s\\n' > %s/a/b/c/d/e/deep.txt && "
	    "echo ok > %s/index.html",
	    ws, TOKEN, ws, ws);
	expect_refused(&env, spec, ws, &sec, "a/b/c/d/e/deep.txt:3 holds",
		       "the value of GITHUB_TOKEN");
	e = last_event("artifact.scan_refused");
	SW_CHECK(
	    !strcmp(json_string_value(json_object_get(e->fields, "file")), "a/b/c/d/e/deep.txt"));
	SW_CHECK(json_integer_value(json_object_get(e->fields, "line")) == 3);
	SW_CHECK(!strcmp(json_string_value(json_object_get(e->fields, "destination")), "local"));
	SW_CHECK(!exists(local) || !exists(strcat(strcpy(p, local), "/tenant-1")));

	/* base64 (inside a longer blob), hex, percent-encoded */
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)"xx" TOKEN "yy",
			  strlen(TOKEN) + 4, sodium_base64_VARIANT_ORIGINAL);
	snprintf(p, sizeof(p), "%s/config.json", ws);
	write_file(p, "{\n  \"blob\": \"");
	sw_test_sh("printf '%s\"\\n}\\n' >> %s/config.json", b64, ws);
	expect_refused(&env, spec, ws, &sec, "config.json:2 holds", "the value of GITHUB_TOKEN");
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh("printf 'k: ' > %s/h.txt && printf '%%s' '%s' | od -An -tx1 | tr -d ' \\n' >> "
		   "%s/h.txt",
		   ws, TOKEN, ws);
	expect_refused(&env, spec, ws, &sec, "h.txt:1 holds", "the value of GITHUB_TOKEN");
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh("printf 'u=wJalrXUtnFEMI%%%%2FK7MDENG\\n' > %s/url.txt", ws);
	expect_refused(&env, spec, ws, &sec, "url.txt:1 holds",
		       "the value of AWS_SECRET_ACCESS_KEY");

	/* credentials nobody injected, by their shape */
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh("printf 'one\\ntwo\\nGH=%s\\n' > %s/.env", GHP_SHAPED, ws);
	expect_refused(&env, spec, ws, &sec, ".env:3 holds", "a GitHub token");
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh("printf 'id = AKIAZ7Q3R5T2LMN4PX6W\\n' > %s/aws.ini", ws);
	expect_refused(&env, spec, ws, &sec, "aws.ini:1 holds", "an AWS access key id");
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh("mkdir %s/keys && printf '\\n-----BEGIN OPENSSH PRIVATE KEY-----\\nAAA\\n' > "
		   "%s/keys/id",
		   ws, ws);
	expect_refused(&env, spec, ws, &sec, "keys/id:2 holds", "a PEM private key");

	/* in names: a file's, and a skipped symlink's */
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh("echo hi > '%s/notes-%s.txt'", ws, TOKEN);
	expect_refused(&env, spec, ws, &sec,
		       "notes-[withheld] holds the value of GITHUB_TOKEN in its name",
		       "the value of GITHUB_TOKEN");
	e = last_event("artifact.scan_refused");
	SW_CHECK(
	    !strcmp(json_string_value(json_object_get(e->fields, "file")), "notes-[withheld]"));
	SW_CHECK(json_integer_value(json_object_get(e->fields, "line")) == 0);
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh("ln -s /nowhere '%s/l-%s'", ws, GHP_SHAPED);
	expect_refused(&env, spec, ws, &sec, "l-[withheld] holds a GitHub token in its name",
		       "a GitHub token");
	SW_CHECKF(!exists(strcat(strcpy(p, local), "/tenant-1")), "something was written");

	/* clean: delivered, artifact.pushed */
	fresh_dir(ws, sizeof(ws), "scan-ws");
	sw_test_sh(
	    "mkdir -p %s/a/b && echo '<h1>site</h1>' > %s/index.html && echo x > %s/a/b/c.txt", ws,
	    ws, ws);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	SW_CHECKF(o.ok, "%s", o.error);
	SW_CHECK(o.files == 2 && o.bytes == 16);
	e = last_event("artifact.pushed");
	SW_CHECK(e != NULL && e == &events[nevents - 1]);
	SW_CHECK(json_integer_value(json_object_get(e->fields, "files")) == 2);
	SW_CHECK(!strcmp(json_string_value(json_object_get(e->fields, "location")), o.location));
	outcome_free(&o);
	env_stop(&env);
}

/* ---- none --------------------------------------------------------------------- */

static void test_none(void)
{
	struct sbd_artifact_config c = config();
	char ws[700], err[512];
	struct sbd_env env;
	struct outcome o;
	json_t *w, *f;
	size_t i;
	int saw_text = 0, saw_bin = 0;

	c.inline_max = 4096;
	env_start(&env, &c);
	fresh_dir(ws, sizeof(ws), "none-ws");
	sw_test_sh(
	    "mkdir %s/d && printf 'hello\\n' > %s/d/a.txt && printf '\\000\\001\\377' > %s/bin && "
	    "ln -s /etc/passwd %s/pw && mkdir %s/.git && echo x > %s/.git/config",
	    ws, ws, ws, ws, ws, ws);
	SW_CHECK(deliver(&env, "{\"destination\": \"none\"}", ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(o.ok, "%s", o.error);
	SW_CHECK(o.files == 2 && o.bytes == 9 && !strcmp(o.location, ""));
	w = json_object_get(o.summary, "workspace");
	json_array_foreach(w, i, f) {
		const char *path = json_string_value(json_object_get(f, "path"));

		if (!strcmp(path, "d/a.txt")) {
			SW_CHECK(
			    !strcmp(json_string_value(json_object_get(f, "text")), "hello\n"));
			SW_CHECK(!strcmp(json_string_value(json_object_get(f, "sha256")),
					 "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e8"
					 "46f6be03"));
			saw_text = 1;
		} else if (!strcmp(path, "bin")) {
			SW_CHECK(!strcmp(json_string_value(json_object_get(f, "base64")), "AAH/"));
			SW_CHECK(!strcmp(json_string_value(json_object_get(f, "sha256")),
					 "26a66b061e8f48f39927c312f25293959729eee95978e2892d49d351"
					 "2a5cc092"));
			saw_bin = 1;
		}
	}
	SW_CHECK(saw_text && saw_bin);
	/* list_only: the same files listed with their sha256; nothing is
	 * scanned (a secret in a file is no refusal: nothing leaves), nothing
	 * emitted */
	{
		struct sw_event_header h;
		struct outcome lo;
		struct sbd_artifact_secret sec = {"GITHUB_TOKEN", "ghp-value-in-file-0001", 22};
		struct sbd_artifact_req req = {.list_only = true,
					       .secrets = &sec,
					       .nsecrets = 1,
					       .h = &h,
					       .step = "build",
					       .sandbox_id = ""};
		char err[256];
		size_t before = nevents;
		json_t *l;

		memset(&h, 0, sizeof(h));
		memset(&lo, 0, sizeof(lo));
		sw_test_sh("printf 'ghp-value-in-file-0001' > %s/d/tok.txt", ws);
		req.workspace_fd = open(ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		SW_CHECK(req.workspace_fd >= 0);
		SW_CHECKF(sbd_artifact_deliver(&env, &req, on_result, &lo, err, sizeof(err)) == 0,
			  "%s", err);
		while (!lo.done)
			event_base_loop(base, EVLOOP_ONCE);
		SW_CHECKF(lo.ok && lo.files == 3 && !strcmp(lo.location, ""), "%s", lo.error);
		l = json_object_get(lo.summary, "list");
		SW_CHECK(json_array_size(l) == 3 && nevents == before);
		SW_CHECK(!strcmp(json_string_value(json_object_get(lo.summary, "destination")), ""));
		json_array_foreach(l, i, f)
			if (!strcmp(json_string_value(json_object_get(f, "path")), "d/a.txt"))
				SW_CHECK(!strcmp(json_string_value(json_object_get(f, "sha256")),
						 "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d0"
						 "8286a2e846f6be03"));
		outcome_free(&lo);
		sw_test_sh("rm %s/d/tok.txt", ws);
	}
	{
		char *s = json_dumps(json_object_get(o.summary, "skipped"), JSON_COMPACT);

		SW_CHECKF(strstr(s, "\"pw\"") && strstr(s, "symbolic link") && strstr(s, ".git"),
			  "%s", s);
		SW_CHECK(strstr(s, "root:") == NULL); /* never followed */
		free(s);
	}
	outcome_free(&o);

	/* over the inline cap: an error, not a truncation */
	sw_test_sh("head -c 5000 /dev/zero | tr '\\0' 'a' > %s/big.txt", ws);
	SW_CHECK(deliver(&env, "{\"destination\": \"none\"}", ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "artifact_too_large: the workspace holds 5009 bytes, "
					   "more than the 4096") != NULL,
		  "%s", o.error);
	SW_CHECK(o.summary == NULL);
	env_stop(&env);

	/* the file and byte caps, for every destination */
	c = config();
	c.max_files = 3;
	c.max_bytes = 1000;
	env_start(&env, &c);
	fresh_dir(ws, sizeof(ws), "none-ws");
	sw_test_sh("for i in 1 2 3 4; do echo $i > %s/f$i; done", ws);
	SW_CHECK(deliver(&env, "{\"destination\": \"none\"}", ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "artifact_too_large: the workspace holds more than 3 "
					   "files (SAGEWAI_ARTIFACT_MAX_FILES)"),
		  "%s", o.error);
	fresh_dir(ws, sizeof(ws), "none-ws");
	sw_test_sh("head -c 1001 /dev/zero > %s/z", ws);
	SW_CHECK(deliver(&env, "{\"destination\": \"none\"}", ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "artifact_too_large: the workspace holds more than "
					   "1000 bytes"),
		  "%s", o.error);
	/* a bad spec is refused before anything */
	SW_CHECK(deliver(&env, "{\"destination\": \"none\", \"path\": \"x\"}", ws, NULL, &o, err,
			 sizeof(err)) == -1);
	SW_CHECKF(!strncmp(err, "bad_input: artifact.path is not a key", 37), "%s", err);
	SW_CHECK(deliver(&env, "{\"destination\": \"local\", \"path\": \"x\"}", ws, NULL, &o, err,
			 sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "mode_unavailable: the local artifact destination is not "
			      "configured") != NULL,
		  "%s", err);
	env_stop(&env);
}

/* ---- local -------------------------------------------------------------------- */

/* A tar stream made by python's tarfile from a list of members (a python
 * expression run with t = the TarFile), as a memfd. */
static int tar_fd(const char *members)
{
	char path[700], *out;
	size_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/t.tar", tmp);
	out =
	    sh_out(&len,
		   "python3 -c 'import tarfile, io, sys\n"
		   "t = tarfile.open(sys.argv[1], \"w\", format=tarfile.PAX_FORMAT)\n"
		   "def f(n, data=b\"x\\n\", **k):\n"
		   "    i = tarfile.TarInfo(n); i.size = len(data)\n"
		   "    for a, v in k.items(): setattr(i, a, v)\n"
		   "    t.addfile(i, io.BytesIO(data))\n"
		   "def l(n, target, kind=tarfile.SYMTYPE):\n"
		   "    i = tarfile.TarInfo(n); i.type = kind; i.linkname = target; t.addfile(i)\n"
		   "def d(n):\n"
		   "    i = tarfile.TarInfo(n); i.type = tarfile.DIRTYPE; t.addfile(i)\n"
		   "%s\n"
		   "t.close()' %s 2>&1",
		   members, path);
	SW_CHECKF(len == 0, "tar: %s", out);
	free(out);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	SW_CHECK(fd >= 0);
	return fd;
}

static void test_local(void)
{
	struct sbd_artifact_config c = config();
	char ws[700], local[700], p[1400], err[512], outside[700];
	struct sbd_env env;
	struct outcome o;
	const char *spec = "{\"destination\": \"local\", \"path\": \"site/out\"}";
	char *s;

	fresh_dir(local, sizeof(local), "local-root");
	fresh_dir(outside, sizeof(outside), "outside");
	snprintf(c.local_dir, sizeof(c.local_dir), "%s", local);
	env_start(&env, &c);
	fresh_dir(ws, sizeof(ws), "local-ws");
	sw_test_sh("mkdir -p %s/css %s/.git && echo '<h1>x</h1>' > %s/index.html && echo 'a{}' > "
		   "%s/css/s.css && ln -s /etc %s/etc && ln -s /etc/passwd %s/css/pw && echo g > "
		   "%s/.git/HEAD && ln -s %s %s/out",
		   ws, ws, ws, ws, ws, ws, ws, outside, ws);
	SW_CHECK(deliver(&env, spec, ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(o.ok, "%s", o.error);
	snprintf(p, sizeof(p), "%s/tenant-1/0190b0b0-1111-7000-8000-000000000002/build/site/out",
		 local);
	SW_CHECKF(!strcmp(o.location, p), "%s", o.location);
	s = sh_out(NULL, "cd %s && find . | sort | tr '\\n' ' '", p);
	SW_CHECKF(!strcmp(s, ". ./css ./css/s.css ./index.html "), "copied: %s", s);
	free(s);
	s = sh_out(NULL, "find %s -type l | wc -l; ls -A %s | wc -l", local, outside);
	SW_CHECKF(!strcmp(s, "0\n0\n"), "symlinks or escapes: %s", s);
	free(s);
	outcome_free(&o);
	/* the same target again: refused, never merged */
	SW_CHECK(deliver(&env, spec, ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "site/out exists already (never overwritten)"), "%s",
		  o.error);
	s = sh_out(NULL, "ls -A %s/tenant-1/0190b0b0-1111-7000-8000-000000000002/build/site",
		   local);
	SW_CHECKF(!strcmp(s, "out\n"), "left behind: %s", s); /* no partial copy */
	free(s);
	/* a symlink planted in the destination tree is not followed */
	sw_test_sh("mkdir -p %s/tenant-1/0190b0b0-1111-7000-8000-000000000002/build && ln -s %s "
		   "%s/tenant-1/0190b0b0-1111-7000-8000-000000000002/build/evil",
		   local, outside, local);
	SW_CHECK(deliver(&env, "{\"destination\": \"local\", \"path\": \"evil/x\"}", ws, NULL, &o,
			 NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "a symlink is never followed"), "%s", o.error);
	s = sh_out(NULL, "ls -A %s | wc -l", outside);
	SW_CHECKF(!strcmp(s, "0\n"), "written outside: %s", s);
	free(s);
	/* traversal in PATH, before anything */
	static const char *const bad[] = {
	    "{\"destination\": \"local\", \"path\": \"../../../x\"}",
	    "{\"destination\": \"local\", \"path\": \"/etc/x\"}",
	    "{\"destination\": \"local\", \"path\": \"a/./b\"}",
	    "{\"destination\": \"local\", \"path\": \"a\\\\..\\\\b\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		SW_CHECK(deliver(&env, bad[i], ws, NULL, &o, err, sizeof(err)) == -1);
		SW_CHECKF(!strncmp(err, "bad_input: artifact.path is refused", 35), "%s", err);
	}

	/* hostile tar streams */
	{
		static const struct {
			const char *members, *want;
		} t[] = {
		    {"f(\"../escape\")",
		     "artifact_failed: the workspace snapshot holds a name with "
		     "a . or .. component"},
		    {"f(\"a/../../escape\")", "a . or .. component"},
		    {"f(\"/abs/escape\")", "an absolute name"},
		    {"f(\"a//b\")", "an empty component"},
		    {"f(\"x\"); f(\"x\")", "names x twice"},
		};
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
			SW_CHECK(deliver_fd(&env, "{\"destination\": \"none\"}",
					    tar_fd(t[i].members), NULL, &o, NULL, 0) == 0);
			SW_CHECKF(!o.ok && strstr(o.error, t[i].want), "%s: %s", t[i].members,
				  o.error);
		}
		/* a symlink, then a file through it; a hard link; a fifo: the file
		 * lands in a directory of the snapshot, never outside */
		snprintf(
		    p, sizeof(p),
		    "l(\"link\", \"%s\"); f(\"link/owned\"); l(\"hard\", \"link/owned\", "
		    "tarfile.LNKTYPE); f(\"fifo\", b\"\", type=tarfile.FIFOTYPE); d(\"dir\"); "
		    "f(\"dir/ok\", b\"fine\\n\")",
		    outside);
		SW_CHECK(deliver_fd(&env, "{\"destination\": \"local\", \"path\": \"tar1\"}",
				    tar_fd(p), NULL, &o, NULL, 0) == 0);
		SW_CHECKF(o.ok, "%s", o.error);
		s = sh_out(NULL,
			   "cd %s && find . -mindepth 1 | sort | tr '\\n' ' '; ls -A %s | wc -l",
			   o.location, outside);
		SW_CHECKF(!strcmp(s, "./dir ./dir/ok ./link ./link/owned 0\n"), "%s", s);
		free(s);
		s = json_dumps(json_object_get(o.summary, "skipped"), JSON_COMPACT);
		SW_CHECKF(strstr(s, "\"link\"") && strstr(s, "hard link") && strstr(s, "\"fifo\""),
			  "%s", s);
		free(s);
		outcome_free(&o);
		/* garbage, and a stream cut short */
		{
			int fd = memfd_create("garbage", 0);

			SW_CHECK(write(fd, "this is no tar stream at all, just text\n", 40) == 40);
			lseek(fd, 0, SEEK_SET);
			SW_CHECK(deliver_fd(&env, "{\"destination\": \"none\"}", fd, NULL, &o,
					    NULL, 0) == 0);
			SW_CHECKF(!o.ok &&
				      strstr(o.error, "artifact_failed: the workspace snapshot"),
				  "%s", o.error);
		}
		{
			int fd = tar_fd("f(\"big\", b\"y\" * 100000)");
			int cut = memfd_create("cut", 0);
			char buf[30000];

			SW_CHECK(read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
			SW_CHECK(write(cut, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
			close(fd);
			lseek(cut, 0, SEEK_SET);
			SW_CHECK(deliver_fd(&env, "{\"destination\": \"none\"}", cut, NULL, &o,
					    NULL, 0) == 0);
			SW_CHECKF(!o.ok && strstr(o.error, "cut or damaged"), "%s", o.error);
		}
	}
	env_stop(&env);

	/* a full destination disk */
	if (geteuid() == 0) {
		char small[700];

		fresh_dir(small, sizeof(small), "small");
		if (mount("tmpfs", small, "tmpfs", 0, "size=64k") == 0) {
			c = config();
			snprintf(c.local_dir, sizeof(c.local_dir), "%s", small);
			env_start(&env, &c);
			fresh_dir(ws, sizeof(ws), "local-ws");
			sw_test_sh("head -c 300000 /dev/urandom > %s/blob", ws);
			SW_CHECK(deliver(&env, spec, ws, NULL, &o, NULL, 0) == 0);
			SW_CHECKF(!o.ok && !strncmp(o.error, "disk_full: local: copying into", 30),
				  "%s", o.error);
			s = sh_out(NULL, "find %s -type f | wc -l", small);
			SW_CHECKF(!strcmp(s, "0\n"), "partial copy left: %s", s);
			free(s);
			env_stop(&env);
			umount2(small, MNT_DETACH);
		} else {
			fprintf(stderr, "  (no tmpfs mount: the full-disk case is skipped)\n");
		}
	}
}

/* ---- github ------------------------------------------------------------------- */

static void test_github(void)
{
	struct sbd_artifact_config c = config();
	char root[700], toks[700], log[700], line[256], ws[700], spec[1024], url[256], err[512];
	char *s, *first;
	struct secrets sec = {.n = 1}, wrong = {.n = 1}, revoked = {.n = 1};
	struct sbd_env env;
	struct outcome o;
	size_t len;
	int port;

	sec.s[0] = (struct sbd_artifact_secret){"GITHUB_TOKEN", TOKEN, strlen(TOKEN)};
	wrong.s[0] = (struct sbd_artifact_secret){"GITHUB_TOKEN", "tok-wrong-0000", 14};
	revoked.s[0] = (struct sbd_artifact_secret){"GITHUB_TOKEN", "tok-revoked-1111", 16};
	fresh_dir(root, sizeof(root), "git-root");
	sw_test_sh("git init -q --bare %s/site.git", root);
	snprintf(toks, sizeof(toks), "%s/tokens", tmp);
	snprintf(log, sizeof(log), "%s/git-requests.log", tmp);
	write_file(toks, "good " TOKEN "\nrevoked tok-revoked-1111\n");
	write_file(log, "");
	{
		char script[700];
		const char *argv[] = {"python3", script, root, toks, log, NULL};

		snprintf(script, sizeof(script), "%s/git_server.py", src_dir);
		helper(argv, line, sizeof(line));
	}
	SW_CHECKF(sscanf(line, "port %d", &port) == 1, "%s", line);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/site.git", port);
	c.insecure_http = true;
	c.allow_private = true;
	env_start(&env, &c);
	fresh_dir(ws, sizeof(ws), "git-ws");
	sw_test_sh("mkdir -p %s/css %s/.git %s/node_modules/x && echo '<h1>portfolio</h1>' > "
		   "%s/index.html && echo 'a{}' > %s/css/s.css && echo 'node_modules/' > "
		   "%s/.gitignore && "
		   "echo dep > %s/node_modules/x/i.js && echo '[core]' > %s/.git/config && "
		   /* the token in UTF-16: the scan cannot read it, and git must not turn it
		    * into UTF-8 (working-tree-encoding) on the way in */
		   "echo '*.txt working-tree-encoding=UTF-16LE' > %s/.gitattributes && "
		   "printf 'k=%s\n' | iconv -f UTF-8 -t UTF-16LE > %s/enc.txt",
		   ws, ws, ws, ws, ws, ws, ws, ws, ws, TOKEN, ws);
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"github\", \"repo\": \"%s\", \"branch\": \"main\"}", url);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	SW_CHECKF(o.ok, "%s", o.error);
	fprintf(stderr, "  pushed: %s\n", o.location);
	SW_CHECKF(o.files == 5, "%zu", o.files); /* index.html, css/s.css, .git{ignore,attributes},
						  * enc.txt */
	s = json_dumps(o.summary, JSON_COMPACT);
	SW_CHECKF(strstr(s, "ignored by .gitignore") && strstr(s, "node_modules/x/i.js"), "%s", s);
	free(s);
	first = sh_out(NULL, "git --git-dir=%s/site.git rev-parse main", root);
	SW_CHECK(strlen(first) == 41);
	first[40] = '\0';
	SW_CHECKF(strstr(o.location, first) != NULL, "%s vs %s", o.location, first);
	s = sh_out(NULL, "git --git-dir=%s/site.git ls-tree -r --name-only main | tr '\\n' ' '",
		   root);
	SW_CHECKF(!strcmp(s, ".gitattributes .gitignore css/s.css enc.txt index.html "),
		  "tree: %s", s);
	free(s);
	s = sh_out(NULL, "git --git-dir=%s/site.git log -1 --format='%%an <%%ae>|%%s' main", root);
	SW_CHECKF(!strcmp(s, "Sagewai <sagewai@localhost>|sagewai: run "
			     "0190b0b0-1111-7000-8000-000000000002, step build\n"),
		  "%s", s);
	free(s);
	outcome_free(&o);
	/* again, through a name (resolved, then pinned): a fast-forward on top of
	 * the first commit */
	sw_test_sh("echo more > %s/more.txt", ws);
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"github\", \"repo\": \"http://localhost:%d/site.git\"}",
		 port);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"github\", \"repo\": \"%s\", \"branch\": \"main\"}", url);
	SW_CHECKF(o.ok, "%s", o.error);
	s = sh_out(NULL, "git --git-dir=%s/site.git rev-parse main~1", root);
	SW_CHECKF(!strncmp(s, first, 40), "parent %s, first %s", s, first);
	free(s);
	outcome_free(&o);

	/* a wrong token, a revoked one: the server's answer, not the token */
	SW_CHECK(deliver(&env, spec, ws, &wrong, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "artifact_failed: github:") &&
		      strstr(o.error, "bad credentials: this token is not known here") &&
		      strstr(o.error, "Authentication failed"),
		  "%s", o.error);
	no_secret(&wrong, o.error, strlen(o.error), "the error");
	fprintf(stderr, "  wrong token: %s\n", o.error);
	SW_CHECK(deliver(&env, spec, ws, &revoked, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "token revoked: ask the owner") &&
		      strstr(o.error, "403"),
		  "%s", o.error);
	no_secret(&revoked, o.error, strlen(o.error), "the error");
	fprintf(stderr, "  revoked token: %s\n", o.error);
	/* the good token revoked on the server side meanwhile */
	write_file(toks, "revoked " TOKEN "\n");
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "token revoked"), "%s", o.error);
	no_secret(&sec, o.error, strlen(o.error), "the error");
	write_file(toks, "good " TOKEN "\n");
	/* no token at all */
	SW_CHECK(deliver(&env, spec, ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "has no GITHUB_TOKEN"), "%s", o.error);
	/* a refused scan leaves the branch alone */
	s = sh_out(NULL, "git --git-dir=%s/site.git rev-parse main", root);
	sw_test_sh("printf 'token: %s\\n' > %s/oops.txt", TOKEN, ws);
	expect_refused(&env, spec, ws, &sec, "oops.txt:1 holds", "the value of GITHUB_TOKEN");
	free(first);
	first = sh_out(NULL, "git --git-dir=%s/site.git rev-parse main", root);
	SW_CHECKF(!strcmp(s, first), "the branch moved: %s -> %s", s, first);
	free(s);
	free(first);
	unlink(strcat(strcpy(line, ws), "/oops.txt"));
	env_stop(&env);

	/* plain http and loopback, unless the operator allows them */
	c.insecure_http = false;
	env_start(&env, &c);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "mode_unavailable: plain http repositories are refused"), "%s", err);
	env_stop(&env);
	c.insecure_http = true;
	c.allow_private = false;
	env_start(&env, &c);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok &&
		      strstr(o.error, "resolves to no address sandboxd may push to (loopback"),
		  "%s", o.error);
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"github\", \"repo\": \"http://localhost:%d/site.git\"}",
		 port);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok &&
		      strstr(o.error, "localhost resolves to no address sandboxd may push to"),
		  "%s", o.error);
	env_stop(&env);

	/* nothing on the server and nothing in its log holds the token */
	s = sh_out(&len, "git --git-dir=%s/site.git cat-file --batch-all-objects --batch", root);
	SW_CHECK(len > 100);
	no_secret(&sec, s, len, "the server's git objects");
	free(s);
	s = sh_out(&len, "cat %s; find %s -type f -exec cat {} +", log, root);
	no_secret(&sec, s, len, "the server's files and request log");
	SW_CHECK(strstr(s, "auth=yes") != NULL);
	free(s);
	kill_helpers();
}

/* ---- s3 ------------------------------------------------------------------------ */

static size_t collect(char *d, size_t sz, size_t nm, void *u)
{
	return sw_buf_add(u, d, sz * nm) == 0 ? sz * nm : 0;
}

/* A signed GET of url into a malloc'd buffer. */
static char *s3_get(const char *url, const char *akid, const char *secret, size_t *len, long *code)
{
	CURL *cu = curl_easy_init();
	struct curl_slist *hdrs = curl_slist_append(
	    NULL, "x-amz-content-sha256: "
		  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	struct sw_buf b;
	char up[256];

	sw_buf_init(&b, 0);
	snprintf(up, sizeof(up), "%s:%s", akid, secret);
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
	curl_easy_setopt(cu, CURLOPT_USERPWD, up);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hdrs);
	SW_CHECK(curl_easy_perform(cu) == CURLE_OK);
	curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, code);
	curl_easy_cleanup(cu);
	curl_slist_free_all(hdrs);
	SW_CHECK(sw_buf_add(&b, "", 1) == 0);
	*len = b.len - 1;
	return sw_buf_steal(&b, NULL);
}

static void test_s3(void)
{
	struct sbd_artifact_config c = config();
	char line[512], akid[128], secret[128], ep[128], ws[700], spec[1024], err[512], url[512];
	struct secrets sec = {.n = 3}, bad = {.n = 2}, unknown = {.n = 2};
	struct sbd_env env;
	struct outcome o;
	char *list, *k;
	size_t len, nobj = 0;
	long code;
	int port;

	{
		char script[700];
		const char *argv[] = {"python3", script, "art-bucket", NULL};

		snprintf(script, sizeof(script), "%s/s3_server.py", src_dir);
		helper(argv, line, sizeof(line));
	}
	SW_CHECKF(sscanf(line, "port %d %127s %127s", &port, akid, secret) == 3, "%s", line);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
	sec.s[0] = (struct sbd_artifact_secret){"AWS_ACCESS_KEY_ID", akid, strlen(akid)};
	sec.s[1] = (struct sbd_artifact_secret){"AWS_SECRET_ACCESS_KEY", secret, strlen(secret)};
	/* a knob: it signs, and a workspace naming the region is not refused */
	sec.s[2] = (struct sbd_artifact_secret){"AWS_REGION", "us-east-1", 9};
	bad = sec;
	bad.n = 2;
	bad.s[1] = (struct sbd_artifact_secret){"AWS_SECRET_ACCESS_KEY", "wrong/secret+x", 14};
	unknown = sec;
	unknown.n = 2;
	unknown.s[0] =
	    (struct sbd_artifact_secret){"AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000", 20};
	snprintf(c.s3_endpoints, sizeof(c.s3_endpoints), "http://other:1, %s", ep);
	env_start(&env, &c);
	fresh_dir(ws, sizeof(ws), "s3-ws");
	sw_test_sh("mkdir -p %s/css && echo '<h1>portfolio</h1>' > %s/index.html && echo 'a{}' > "
		   "%s/css/s.css && echo 'region us-east-1' > '%s/with space.txt' && "
		   "head -c 3000000 /dev/urandom > %s/big.bin",
		   ws, ws, ws, ws, ws);
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"s3\", \"bucket\": \"art-bucket\", \"prefix\": \"runs/r1\", "
		 "\"endpoint\": \"%s\"}",
		 ep);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	SW_CHECKF(o.ok, "%s", o.error);
	SW_CHECKF(!strcmp(o.location, "s3://art-bucket/runs/r1") && o.files == 4, "%s %zu",
		  o.location, o.files);
	outcome_free(&o);
	snprintf(url, sizeof(url), "%s/art-bucket/runs/r1/css/s.css", ep);
	k = s3_get(url, akid, secret, &len, &code);
	SW_CHECKF(code == 200 && !strcmp(k, "a{}\n"), "%ld %s", code, k);
	free(k);

	/* failures quote S3 */
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"s3\", \"bucket\": \"no-such-bucket\", \"endpoint\": \"%s\"}",
		 ep);
	SW_CHECK(deliver(&env, spec, ws, &sec, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "HTTP 404 NoSuchBucket: The specified bucket does not "
					   "exist"),
		  "%s", o.error);
	fprintf(stderr, "  missing bucket: %s\n", o.error);
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"s3\", \"bucket\": \"art-bucket\", \"endpoint\": \"%s\"}",
		 ep);
	SW_CHECK(deliver(&env, spec, ws, &bad, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "HTTP 403 SignatureDoesNotMatch"), "%s", o.error);
	no_secret(&bad, o.error, strlen(o.error), "the error");
	SW_CHECK(deliver(&env, spec, ws, &unknown, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "HTTP 403 InvalidAccessKeyId"), "%s", o.error);
	fprintf(stderr, "  unknown key: %s\n", o.error);
	SW_CHECK(deliver(&env, spec, ws, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(!o.ok && strstr(o.error, "no AWS_ACCESS_KEY_ID"), "%s", o.error);
	/* an endpoint the operator did not list */
	SW_CHECK(deliver(&env,
			 "{\"destination\": \"s3\", \"bucket\": \"art-bucket\", \"endpoint\": "
			 "\"http://169.254.169.254\"}",
			 ws, &sec, &o, err, sizeof(err)) == -1);
	SW_CHECKF(strstr(err, "mode_unavailable: the s3 endpoint http://169.254.169.254 is not "
			      "allowed"),
		  "%s", err);
	/* a refused scan uploads nothing */
	sw_test_sh("printf 'aws_secret_access_key = %s\\n' > %s/creds.ini", secret, ws);
	snprintf(spec, sizeof(spec),
		 "{\"destination\": \"s3\", \"bucket\": \"art-bucket\", \"prefix\": \"leak/\", "
		 "\"endpoint\": \"%s\"}",
		 ep);
	expect_refused(&env, spec, ws, &sec, "creds.ini:1 holds",
		       "the value of AWS_SECRET_ACCESS_KEY");
	env_stop(&env);

	/* every object in the bucket: none holds a secret */
	snprintf(url, sizeof(url), "%s/art-bucket?list-type=2", ep);
	list = s3_get(url, akid, secret, &len, &code);
	SW_CHECK(code == 200);
	SW_CHECKF(strstr(list, "leak/") == NULL, "%s", list);
	for (char *p = list; (p = strstr(p, "<Key>")) != NULL; p++) {
		char key[512], *body;
		size_t blen;
		long bc;

		snprintf(key, sizeof(key), "%.*s", (int)(strstr(p, "</Key>") - p - 5), p + 5);
		snprintf(url, sizeof(url), "%s/art-bucket/%s", ep, key);
		for (char *q = url; *q; q++)
			if (*q == ' ')
				memmove(q + 3, q + 1, strlen(q + 1) + 1), memcpy(q, "%20", 3);
		body = s3_get(url, akid, secret, &blen, &bc);
		SW_CHECKF(bc == 200, "%s: %ld", key, bc);
		no_secret(&bad, body, blen, key); /* bad: the two keys, the wrong secret too */
		{
			struct secrets keys = sec;

			keys.n = 2;
			no_secret(&keys, body, blen, key);
		}
		free(body);
		nobj++;
	}
	SW_CHECKF(nobj == 4, "%zu objects: %s", nobj, list);
	free(list);
	kill_helpers();
}

/* ---- snapshot ------------------------------------------------------------------ */

static void test_snapshot(const char *runner, const char *variants)
{
	struct sw_sandbox_bwrap_config bc = {.runner_path = runner, .cgroup = "off"};
	const char *const env_v[] = {"PATH=/usr/bin:/bin", "HOME=/workspace", NULL};
	const char *const make[] = {
	    "/bin/sh", "-c",
	    "mkdir -p site/css .git && echo '<h1>from the sandbox</h1>' > site/index.html && "
	    "echo 'b{}' > site/css/s.css && ln -s /etc/passwd site/pw && echo x > .git/HEAD",
	    NULL};
	const char *const pack[] = SBD_ARTIFACT_PACK_ARGV;
	struct sw_sandbox_exec ex = {.argv = make};
	struct sw_sandbox_result res;
	struct sw_sandbox_spec sp = {.net = SW_SANDBOX_NET_NONE, .env = env_v};
	struct sw_sandbox_backend *be;
	struct sw_sandbox_variant *v;
	struct sw_sandbox *sb;
	struct sbd_artifact_config c = config();
	struct sbd_env env;
	struct outcome o, pending[3];
	char err[512];
	json_t *w, *f;
	size_t i;
	int fd;

	/* a staging directory of a sandboxd that died goes at the next start; one
	 * of a live process stays */
	{
		pid_t dead = fork();

		if (dead == 0)
			_exit(0);
		waitpid(dead, NULL, 0);
		sw_test_sh(
		    "mkdir -p %s/sagewai-artifact-%d-old/j-x/tree %s/sagewai-artifact-%d-live",
		    tmp, (int)dead, tmp, (int)getppid());
		env_start(&env, &c);
		snprintf(err, sizeof(err), "%s/sagewai-artifact-%d-old", tmp, (int)dead);
		SW_CHECKF(!exists(err), "%s left", err);
		snprintf(err, sizeof(err), "%s/sagewai-artifact-%d-live", tmp, (int)getppid());
		SW_CHECKF(exists(err), "%s removed", err);
		env_stop(&env);
	}
	SW_CHECKF((v = sw_sandbox_variant_load(variants, "base", err, sizeof(err))) != NULL, "%s",
		  err);
	SW_CHECKF((be = sw_sandbox_bwrap_new(&bc, err, sizeof(err))) != NULL, "%s", err);
	sp.variant = v;
	SW_CHECKF((sb = sw_sandbox_create(be, &sp, err, sizeof(err))) != NULL, "%s", err);
	SW_CHECKF(sw_sandbox_run(sb, &ex, 1 << 20, &res, err, sizeof(err)) == 0 &&
		      res.exit.status == 0,
		  "%s %s", err, res.err);
	sw_sandbox_result_free(&res);
	ex.argv = pack;
	SW_CHECKF(sw_sandbox_run(sb, &ex, 16 << 20, &res, err, sizeof(err)) == 0 &&
		      res.exit.status == 0 && !res.out_truncated,
		  "%s %s", err, res.err);
	/* the stdout, unredacted, into a memfd: what a cli_agent step hands over */
	fd = memfd_create("workspace.tar", MFD_CLOEXEC);
	SW_CHECK(write(fd, res.out, res.out_len) == (ssize_t)res.out_len);
	lseek(fd, 0, SEEK_SET);
	sw_sandbox_result_free(&res);
	sw_sandbox_destroy(sb, NULL);
	env_start(&env, &c);
	SW_CHECK(deliver_fd(&env, "{\"destination\": \"none\"}", fd, NULL, &o, NULL, 0) == 0);
	SW_CHECKF(o.ok, "%s", o.error);
	SW_CHECKF(o.files == 2, "%zu files", o.files);
	w = json_object_get(o.summary, "workspace");
	json_array_foreach(w, i, f)
		if (!strcmp(json_string_value(json_object_get(f, "path")), "site/index.html"))
			SW_CHECK(!strcmp(json_string_value(json_object_get(f, "text")),
					 "<h1>from the sandbox</h1>\n"));
	{
		char *s = json_dumps(json_object_get(o.summary, "skipped"), JSON_COMPACT);

		SW_CHECKF(strstr(s, "site/pw") && strstr(s, ".git"), "%s", s);
		free(s);
	}
	outcome_free(&o);

	/* abandoned deliveries call nobody; stop with some in flight */
	for (i = 0; i < 3; i++) {
		char ws[700];
		struct sbd_artifact_req req;
		struct sw_event_header h = {.tenant = "t", .run_id = "r"};
		json_t *spec = json_pack("{s:s}", "destination", "none");

		fresh_dir(ws, sizeof(ws), i == 0 ? "p0" : i == 1 ? "p1" : "p2");
		sw_test_sh("echo %zu > %s/f", i, ws);
		memset(&req, 0, sizeof(req));
		req.spec = spec;
		req.workspace_fd = open(ws, O_RDONLY | O_DIRECTORY);
		req.h = &h;
		req.step = "s";
		memset(&pending[i], 0, sizeof(pending[i]));
		SW_CHECK(sbd_artifact_deliver(&env, &req, on_result, &pending[i], err,
					      sizeof(err)) == 0);
		json_decref(spec);
	}
	sbd_artifact_abandon(&env, &pending[1]);
	while (!pending[0].done || !pending[2].done)
		event_base_loop(base, EVLOOP_ONCE);
	{
		struct timeval tv = {0, 300000};

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	SW_CHECK(pending[0].ok && pending[2].ok && pending[1].done == 0);
	SW_CHECK(sbd_artifact_pending(env.art) == 0);
	for (i = 0; i < 3; i++)
		outcome_free(&pending[i]);
	env_stop(&env);
	sw_sandbox_backend_free(be);
	sw_sandbox_variant_free(v);
}

int main(int argc, char **argv)
{
	char err[256];
	const char *what = argc > 1 ? argv[1] : "";
	int rc = 0;

	if (argc < 5) {
		fprintf(stderr,
			"usage: %s scan|none|local|github|s3|snapshot SRC_DIR RUNNER "
			"VARIANTS\n",
			argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	SW_CHECK(sodium_init() >= 0);
	evthread_use_pthreads();
	SW_CHECK((base = event_base_new()) != NULL);
	SW_CHECK((reg = sw_events_registry_new(err, sizeof(err))) != NULL);
	snprintf(src_dir, sizeof(src_dir), "%s", argv[2]);
	snprintf(tmp, sizeof(tmp), "/tmp/sagewai-artifact-test-XXXXXX");
	SW_CHECK(mkdtemp(tmp) != NULL);
	chmod(tmp, 0755);
	atexit(kill_helpers);
	if (!strcmp(what, "scan"))
		test_scan();
	else if (!strcmp(what, "none"))
		test_none();
	else if (!strcmp(what, "local"))
		test_local();
	else if (!strcmp(what, "github"))
		test_github();
	else if (!strcmp(what, "s3"))
		test_s3();
	else if (!strcmp(what, "snapshot"))
		test_snapshot(argv[3], argv[4]);
	else
		rc = 2;
	kill_helpers();
	sw_test_sh("rm -rf %s", tmp);
	for (size_t i = 0; i < nevents; i++)
		json_decref(events[i].fields);
	sw_events_registry_destroy(reg);
	event_base_free(base);
	if (rc == 0)
		printf("sandboxd_artifact_%s: ok\n", what);
	return rc;
}
