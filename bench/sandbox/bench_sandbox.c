/*
 * bench-sandbox: cold start of a bwrap sandbox through sw_sandbox beside
 * raw baselines measured in the same run, interleaved iteration by
 * iteration (the order rotating) so that all see the same machine.
 *
 *   cold_start      sw_sandbox_create + run /bin/true through the tool
 *                   runner until its EXIT arrives
 *   cold_cycle      the same plus sw_sandbox_destroy (all gone, reaped)
 *   raw bwrap       fork + exec of bwrap with the same namespaces, uid
 *                   drop, binds and mounts, running /bin/true directly
 *                   (no seccomp, no runner, no protocol), until reaped
 *   crun            `crun run` of an OCI bundle with the same namespaces
 *                   and read-only binds, running /bin/true, until it exits
 *                   (skipped with a note if crun cannot run here)
 *   idle_pss        memory (PSS, kB) of one idle sandbox: its bwrap monitor
 *                   plus its runner, beside a raw bwrap idling in sleep
 *
 * --raw-only N measures the raw bwrap alone (the baselines of
 * bench/sandboxd): raw_bwrap_p50/p99 (ms) over N spawns after 10 warm-up
 * ones, raw_bwrap_spawns_per_s (N over the wall time of that sequential
 * loop) and raw_idle_pss (kB per idle raw bwrap, K of them idling at once,
 * --raw-idle K, default 10: PSS splits shared pages among the copies, so
 * compare like numbers); baseline 0 on these lines.
 *
 * Each figure is one JSON line on stdout:
 *   {"bench": "sandbox", "figure": F, "value": V, "unit": U, "baseline": B, "ratio": V/B}
 * with baseline the raw bwrap figure of the same run. Notes go to stderr.
 *
 * usage: bench-sandbox [--iterations N] [--runner PATH] [--variants DIR] [--no-crun]
 *                      [--cgroup auto|off|v1|v2]   (per-sandbox cgroups; default
 *                      auto, as sagewai-sandboxd runs; the raw bwrap has none)
 *        bench-sandbox --raw-only N [--raw-idle K] [--variants DIR]
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sw_sandbox.h"

#define MAX_ARGS 256
#define IDLE_SANDBOXES 10

static const char *const env[] = {"PATH=/usr/bin:/bin", "HOME=/workspace", NULL};

static struct sw_sandbox_variant *variant;
static char workspace[] = "/tmp/sw-bench-sbx-XXXXXX";
static char bundle[] = "/tmp/sw-bench-crun-XXXXXX";
static char *raw_true[MAX_ARGS], *raw_sleep[MAX_ARGS];
static char *links[64];
static bool as_root;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench-sandbox: %s: %s\n", what, why);
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void figure(const char *name, double value, const char *unit, double baseline)
{
	printf("{\"bench\": \"sandbox\", \"figure\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", "
	       "\"baseline\": %.3f, \"ratio\": %.3f}\n",
	       name, value, unit, baseline, baseline > 0 ? value / baseline : 0.0);
	fflush(stdout);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, int p)
{
	int i = (n * p) / 100;

	qsort(v, (size_t)n, sizeof(double), cmp_d);
	return v[i >= n ? n - 1 : i];
}

/*
 * The raw bwrap command line: what the backend runs (docs/SANDBOX.md),
 * minus the seccomp program, the generated /etc files, --info-fd and the
 * tool runner; cmd runs in place of the runner.
 */
static void raw_argv(char **v, const char *const *cmd)
{
	static const char *const head[] = {"/usr/bin/bwrap",
					   "--unshare-user",
					   "--uid",
					   "65534",
					   "--gid",
					   "65534",
					   "--disable-userns",
					   "--unshare-pid",
					   "--as-pid-1",
					   "--unshare-ipc",
					   "--unshare-uts",
					   "--unshare-cgroup-try",
					   "--unshare-net",
					   "--hostname",
					   "sandbox",
					   "--die-with-parent",
					   "--new-session",
					   "--cap-drop",
					   "ALL",
					   NULL};
	size_t n = 0, nl = 0;

	for (size_t i = 0; head[i] != NULL; i++)
		v[n++] = (char *)head[i];
	for (size_t i = 0; i < variant->n_ro_binds; i++) {
		const struct sw_sandbox_bind *b = &variant->ro_binds[i];
		char target[PATH_MAX];
		struct stat st;
		ssize_t k;

		if (lstat(b->path, &st) != 0)
			continue;
		if (S_ISLNK(st.st_mode) &&
		    (k = readlink(b->path, target, sizeof(target) - 1)) > 0) {
			target[k] = '\0';
			if (links[nl] == NULL)
				links[nl] = strdup(target);
			v[n++] = "--symlink";
			v[n++] = links[nl++];
		} else {
			v[n++] = "--ro-bind";
			v[n++] = b->path;
		}
		v[n++] = b->at;
	}
	v[n++] = "--proc";
	v[n++] = "/proc";
	v[n++] = "--dev";
	v[n++] = "/dev";
	v[n++] = "--tmpfs";
	v[n++] = "/tmp";
	v[n++] = "--bind";
	v[n++] = workspace;
	v[n++] = "/workspace";
	v[n++] = "--remount-ro";
	v[n++] = "/";
	v[n++] = "--chdir";
	v[n++] = "/workspace";
	v[n++] = "--clearenv";
	v[n++] = "--setenv";
	v[n++] = "PATH";
	v[n++] = "/usr/bin:/bin";
	v[n++] = "--setenv";
	v[n++] = "HOME";
	v[n++] = "/workspace";
	v[n++] = "--";
	for (size_t i = 0; cmd[i] != NULL; i++)
		v[n++] = (char *)cmd[i];
	v[n] = NULL;
}

/* fork + exec argv as the backend would (uid drop when root); stdio to
 * /dev/null. Returns the pid. */
static pid_t spawn(char **argv, bool drop)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);

		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (drop && (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
			     setresuid(65534, 65534, 65534) != 0))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static double time_spawn(char **argv, bool drop)
{
	int64_t t0 = now_ns();
	pid_t pid = spawn(argv, drop);
	int st = 0;

	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die(argv[0], "did not run /bin/true successfully");
	return (double)(now_ns() - t0) / 1e6;
}

static void time_ours(struct sw_sandbox_backend *be, double *start_ms, double *cycle_ms)
{
	static const char *const argv[] = {"/bin/true", NULL};
	struct sw_sandbox_spec spec = {.variant = variant, .env = env, .workspace = workspace};
	struct sw_sandbox_exec ex = {.argv = argv, .timeout_ms = 10000};
	struct sw_sandbox_result res;
	struct sw_sandbox *sb;
	char err[512];
	int64_t t0 = now_ns(), t1;

	if ((sb = sw_sandbox_create(be, &spec, err, sizeof(err))) == NULL)
		die("create", err);
	if (sw_sandbox_run(sb, &ex, 4096, &res, err, sizeof(err)) != 0)
		die("run", err);
	if (res.exit.status != 0)
		die("run", "/bin/true failed");
	t1 = now_ns();
	sw_sandbox_result_free(&res);
	sw_sandbox_destroy(sb, NULL);
	*start_ms = (double)(t1 - t0) / 1e6;
	*cycle_ms = (double)(now_ns() - t0) / 1e6;
}

/* ---- crun -------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static json_t *bind_mount(const char *path, bool dir)
{
	return json_pack("{s:s, s:s, s:s, s:[s,s,s,s]}", "destination", path, "type", "bind",
			 "source", path, "options", dir ? "rbind" : "bind", "ro", "nosuid",
			 "nodev");
}

/* An OCI bundle: read-only root dir mirroring the variant (host symlinks as
 * symlinks, the rest bind mounts), user/pid/net/ipc/uts/mount/cgroup
 * namespaces, uid 65534 mapped to 65534, running /bin/true. */
static int crun_bundle(char *why, size_t whylen)
{
	char path[PATH_MAX + 64], target[PATH_MAX];
	json_t *mounts, *cfg;
	FILE *f;

	if (mkdtemp(bundle) == NULL || chmod(bundle, 0755) != 0) {
		snprintf(why, whylen, "mkdtemp: %s", strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/rootfs", bundle);
	mkdir(path, 0755);
	mounts =
	    json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s, s:[s,s,s]}, {s:s, s:s, s:s, "
		      "s:[s,s]}, {s:s, s:s, s:s, s:[s,s]}]",
		      "destination", "/proc", "type", "proc", "source", "proc", "destination",
		      "/dev", "type", "tmpfs", "source", "tmpfs", "options", "nosuid",
		      "strictatime", "mode=755", "destination", "/tmp", "type", "tmpfs", "source",
		      "tmpfs", "options", "nosuid", "nodev", "destination", "/workspace", "type",
		      "bind", "source", workspace, "options", "rbind", "rw");
	for (const char *d = "proc\0dev\0tmp\0workspace\0etc\0"; *d; d += strlen(d) + 1) {
		snprintf(path, sizeof(path), "%s/rootfs/%s", bundle, d);
		mkdir(path, 0755);
	}
	for (size_t i = 0; i < variant->n_ro_binds; i++) {
		const char *p = variant->ro_binds[i].path;
		struct stat st;
		ssize_t k;

		if (lstat(p, &st) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/rootfs%s", bundle, p);
		if (S_ISLNK(st.st_mode) && (k = readlink(p, target, sizeof(target) - 1)) > 0) {
			target[k] = '\0';
			if (symlink(target, path) != 0)
				goto fail;
			continue;
		}
		/* parents (one level under /etc is all the base variant needs) */
		{
			char parent[PATH_MAX + 64], *slash;

			snprintf(parent, sizeof(parent), "%s", path);
			if ((slash = strrchr(parent, '/')) != NULL) {
				*slash = '\0';
				mkdir(parent, 0755);
			}
		}
		if (S_ISDIR(st.st_mode)) {
			mkdir(path, 0755);
		} else {
			int fd = open(path, O_CREAT | O_WRONLY, 0644);

			if (fd >= 0)
				close(fd);
		}
		json_array_append_new(mounts, bind_mount(p, S_ISDIR(st.st_mode)));
	}
	cfg = json_pack(
	    "{s:s, s:{s:b, s:{s:i, s:i}, s:[s], s:[s,s], s:s, s:b}, s:{s:s, s:b}, s:s, s:o, "
	    "s:{s:[{s:s},{s:s},{s:s},{s:s},{s:s},{s:s},{s:s}], s:[{s:i,s:i,s:i}], "
	    "s:[{s:i,s:i,s:i}]}}",
	    "ociVersion", "1.0.0", "process", "terminal", 0, "user", "uid", 65534, "gid", 65534,
	    "args", "/bin/true", "env", "PATH=/usr/bin:/bin", "HOME=/workspace", "cwd",
	    "/workspace", "noNewPrivileges", 1, "root", "path", "rootfs", "readonly", 1,
	    "hostname", "sandbox", "mounts", mounts, "linux", "namespaces", "type", "pid", "type",
	    "network", "type", "ipc", "type", "uts", "type", "mount", "type", "user", "type",
	    "cgroup", "uidMappings", "containerID", 65534, "hostID", 65534, "size", 1,
	    "gidMappings", "containerID", 65534, "hostID", 65534, "size", 1);
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	if (cfg == NULL || (f = fopen(path, "w")) == NULL || json_dumpf(cfg, f, JSON_INDENT(1))) {
		json_decref(cfg);
		goto fail;
	}
	fclose(f);
	json_decref(cfg);
	return 0;
fail:
	snprintf(why, whylen, "cannot build the OCI bundle: %s", strerror(errno));
	return -1;
}

static char *crun_argv[8];
static char crun_id[64];

static double time_crun(int i)
{
	snprintf(crun_id, sizeof(crun_id), "sw-bench-%d-%d", (int)getpid(), i);
	return time_spawn(crun_argv, false);
}

/* crun refuses hybrid cgroup hierarchies (v1 + a v2 "unified" mount):
 * hide the unified one in a private mount namespace of this process. */
static int crun_prepare(char *why, size_t whylen)
{
	static char crun_path[] = "/usr/bin/crun";

	if (access(crun_path, X_OK) != 0) {
		snprintf(why, whylen, "no %s", crun_path);
		return -1;
	}
	if (!as_root) {
		snprintf(why, whylen, "needs root here");
		return -1;
	}
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		snprintf(why, whylen, "private mount namespace: %s", strerror(errno));
		return -1;
	}
	umount2("/sys/fs/cgroup/unified", MNT_DETACH);
	if (crun_bundle(why, whylen) != 0)
		return -1;
	crun_argv[0] = crun_path;
	crun_argv[1] = "--cgroup-manager=disabled";
	crun_argv[2] = "run";
	crun_argv[3] = "--bundle";
	crun_argv[4] = bundle;
	crun_argv[5] = crun_id;
	crun_argv[6] = NULL;
	snprintf(crun_id, sizeof(crun_id), "sw-bench-%d-probe", (int)getpid());
	{
		pid_t pid = spawn(crun_argv, false);
		int st = 0;

		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			snprintf(why, whylen, "crun run of the bundle failed (exit %d)",
				 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			return -1;
		}
	}
	return 0;
}

/* ---- idle memory ------------------------------------------------------------- */

static long pss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Pss: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Host pids of the process tree under root (root included). */
static long tree_pss(pid_t root)
{
	long sum = pss_kb(root);
	char path[64], buf[4096];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)root, (int)root);
	if ((f = fopen(path, "r")) == NULL)
		return sum;
	if (fgets(buf, sizeof(buf), f) != NULL)
		for (char *s, *t = strtok_r(buf, " \n", &s); t; t = strtok_r(NULL, " \n", &s))
			sum += tree_pss((pid_t)atol(t));
	fclose(f);
	return sum;
}

static void idle_memory(struct sw_sandbox_backend *be)
{
	struct sw_sandbox_spec spec = {.variant = variant, .env = env, .workspace = workspace};
	struct sw_sandbox *sb[IDLE_SANDBOXES];
	pid_t raw[IDLE_SANDBOXES];
	long ours = 0, base = 0;
	char err[512];

	for (int i = 0; i < IDLE_SANDBOXES; i++) {
		if ((sb[i] = sw_sandbox_create(be, &spec, err, sizeof(err))) == NULL)
			die("create", err);
		raw[i] = spawn(raw_sleep, as_root);
	}
	usleep(200000); /* let the raw ones reach their sleep */
	for (int i = 0; i < IDLE_SANDBOXES; i++) {
		struct sw_sandbox_stats st;

		if (sw_sandbox_stats(sb[i], &st) != 0)
			die("stats", "failed");
		ours += tree_pss(st.monitor_pid);
		base += tree_pss(raw[i]);
	}
	for (int i = 0; i < IDLE_SANDBOXES; i++) {
		int s;

		sw_sandbox_destroy(sb[i], NULL);
		kill(raw[i], SIGKILL);
		waitpid(raw[i], &s, 0);
	}
	figure("idle_pss", (double)ours / IDLE_SANDBOXES, "kB", (double)base / IDLE_SANDBOXES);
}

/* --raw-only: the raw bwrap figures alone (see the top of the file). */
static void raw_only(int n, int idle)
{
	double *rawv = calloc((size_t)n, sizeof(double));
	pid_t raw[64];
	int64_t t0 = 0;
	long base = 0;

	if (rawv == NULL)
		die("calloc", "out of memory");
	for (int i = -10; i < n; i++) {
		double r;

		if (i == 0)
			t0 = now_ns();
		r = time_spawn(raw_true, as_root);
		if (i >= 0)
			rawv[i] = r;
	}
	{
		double secs = (double)(now_ns() - t0) / 1e9;

		figure("raw_bwrap_p50", pct(rawv, n, 50), "ms", 0);
		figure("raw_bwrap_p99", pct(rawv, n, 99), "ms", 0);
		figure("raw_bwrap_spawns_per_s", (double)n / secs, "spawns/s", 0);
	}
	for (int i = 0; i < idle; i++)
		raw[i] = spawn(raw_sleep, as_root);
	usleep(200000); /* let them reach their sleep */
	for (int i = 0; i < idle; i++) {
		int s;

		base += tree_pss(raw[i]);
		kill(raw[i], SIGKILL);
		waitpid(raw[i], &s, 0);
	}
	figure("raw_idle_pss", (double)base / idle, "kB", 0);
	free(rawv);
}

int main(int argc, char **argv)
{
	static const char *const cmd_true[] = {"/bin/true", NULL};
	static const char *const cmd_sleep[] = {"/bin/sleep", "1000", NULL};
	const char *runner = SW_TOOLRUNNER, *vdir = SW_VARIANTS_DIR;
	struct sw_sandbox_bwrap_config cfg = {0};
	struct sw_sandbox_backend *be;
	double *start, *cycle, *rawv, *crunv = NULL;
	int n = 200, warm = 10, raw_n = 0, raw_idle = IDLE_SANDBOXES;
	bool use_crun = true;
	const char *cgroup = "auto"; /* as sagewai-sandboxd runs it */
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (strcmp(argv[i], "--runner") == 0 && i + 1 < argc)
			runner = argv[++i];
		else if (strcmp(argv[i], "--variants") == 0 && i + 1 < argc)
			vdir = argv[++i];
		else if (strcmp(argv[i], "--no-crun") == 0)
			use_crun = false;
		else if (strcmp(argv[i], "--raw-only") == 0 && i + 1 < argc)
			raw_n = atoi(argv[++i]);
		else if (strcmp(argv[i], "--raw-idle") == 0 && i + 1 < argc)
			raw_idle = atoi(argv[++i]);
		else if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc)
			cgroup = argv[++i];
		else
			die("usage", "bench-sandbox [--iterations N] [--runner PATH] "
				     "[--variants DIR] [--no-crun] [--cgroup auto|off|v1|v2] | "
				     "--raw-only N [--raw-idle K]");
	}
	if (n < 10)
		die("--iterations", "at least 10");
	if (raw_n != 0 && raw_n < 10)
		die("--raw-only", "at least 10");
	if (raw_idle < 1 || raw_idle > 64)
		die("--raw-idle", "1 to 64");
	as_root = geteuid() == 0;
	if ((variant = sw_sandbox_variant_load(vdir, "base", err, sizeof(err))) == NULL)
		die("variant", err);
	cfg.runner_path = runner;
	cfg.cgroup = cgroup;
	if ((be = sw_sandbox_bwrap_new(&cfg, err, sizeof(err))) == NULL)
		die("backend", err);
	fprintf(stderr, "bench-sandbox: per-sandbox cgroups: %s\n",
		sw_sandbox_bwrap_cgroup_mode(be));
	if (mkdtemp(workspace) == NULL || (as_root && chown(workspace, 65534, 65534) != 0))
		die("workspace", strerror(errno));
	raw_argv(raw_true, cmd_true);
	raw_argv(raw_sleep, cmd_sleep);
	if (raw_n > 0) {
		raw_only(raw_n, raw_idle);
		sw_sandbox_backend_free(be);
		sw_sandbox_variant_free(variant);
		nftw(workspace, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		return 0;
	}
	if (use_crun && crun_prepare(err, sizeof(err)) != 0) {
		fprintf(stderr, "bench-sandbox: crun skipped: %s\n", err);
		use_crun = false;
	}
	start = calloc((size_t)n, sizeof(double));
	cycle = calloc((size_t)n, sizeof(double));
	rawv = calloc((size_t)n, sizeof(double));
	crunv = calloc((size_t)n, sizeof(double));
	if (!start || !cycle || !rawv || !crunv)
		die("calloc", "out of memory");
	for (int i = -warm; i < n; i++) {
		double s, c, r, k = 0;

		/* Rotate which goes first. */
		switch ((i + warm) % 3) {
		case 0:
			time_ours(be, &s, &c);
			r = time_spawn(raw_true, as_root);
			if (use_crun)
				k = time_crun(i + warm);
			break;
		case 1:
			r = time_spawn(raw_true, as_root);
			if (use_crun)
				k = time_crun(i + warm);
			time_ours(be, &s, &c);
			break;
		default:
			if (use_crun)
				k = time_crun(i + warm);
			time_ours(be, &s, &c);
			r = time_spawn(raw_true, as_root);
			break;
		}
		if (i < 0)
			continue;
		start[i] = s;
		cycle[i] = c;
		rawv[i] = r;
		crunv[i] = k;
	}
	{
		double r50 = pct(rawv, n, 50), r99 = pct(rawv, n, 99);

		figure("cold_start_p50", pct(start, n, 50), "ms", r50);
		figure("cold_start_p99", pct(start, n, 99), "ms", r99);
		figure("cold_cycle_p50", pct(cycle, n, 50), "ms", r50);
		figure("cold_cycle_p99", pct(cycle, n, 99), "ms", r99);
		if (use_crun) {
			figure("crun_cold_p50", pct(crunv, n, 50), "ms", r50);
			figure("crun_cold_p99", pct(crunv, n, 99), "ms", r99);
		}
	}
	idle_memory(be);
	fprintf(stderr, "bench-sandbox: %d iterations (+%d warm-up), %s, uid drop %s\n", n, warm,
		use_crun ? "crun measured" : "no crun", as_root ? "65534" : "none");
	sw_sandbox_backend_free(be);
	sw_sandbox_variant_free(variant);
	nftw(workspace, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (use_crun)
		nftw(bundle, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(start);
	free(cycle);
	free(rawv);
	free(crunv);
	return 0;
}
