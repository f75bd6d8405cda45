/*
 * cgroup.c: per-sandbox cgroups for the bwrap backend (sandbox_cg.h).
 *
 * The runner's setrlimit() bounds each process of a sandbox; a cgroup
 * bounds the sandbox as a whole: its memory (all processes together, page
 * cache and tmpfs included, no swap), its task count and, where the cpu
 * controller is ours, its CPU bandwidth. Sandbox cgroups are children of
 * the caller's own cgroup, so whatever bounds the caller (a container, a
 * systemd unit) bounds them too:
 *
 *   v2  <own>/sagewai-sbx-<pid>-<seq> with memory.max, memory.swap.max = 0,
 *       pids.max and cpu.max; the memory and pids controllers must be on
 *       in <own>/cgroup.subtree_control (we turn them on if we may), cpu
 *       too for cpu.max.
 *   v1  the same name under <own> in the memory hierarchy
 *       (memory.limit_in_bytes, memory.memsw.limit_in_bytes when swap is
 *       accounted), in the pids hierarchy (pids.max), and, when mounted
 *       and ours, in the cpu hierarchy (cpu.cfs_period_us/cfs_quota_us)
 *       and the cpuacct one (the CPU time; often the same mount as cpu).
 *
 * The cpu controller is optional: without it sandboxes still get memory
 * and pids cgroups, and only a sandbox asking for a CPU limit is refused.
 *
 * Paths come from /proc/self/cgroup and /proc/self/mountinfo, never from
 * a fixed /sys/fs/cgroup layout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sandbox_cg.h"

#define CG_SELF_LEAF "sagewai-sandboxd" /* v2: where we move ourselves, if need be */
#define CG_RMDIR_TRIES 400		/* 5 ms apart: 2 s for the last task to go */

/* <seq> of the next sandbox cgroup: one count per process, so that two
 * backends of one process never collide. */
static unsigned cg_seq;

/* ---- small file helpers ----------------------------------------------------- */

/* Read at most len - 1 bytes of dir/name (name may be NULL), NUL-terminated.
 * Returns the length or -1 with errno. */
static int cg_read(const char *dir, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	size_t have = 0;
	int fd;

	if (snprintf(path, sizeof(path), "%s%s%s", dir, name ? "/" : "", name ? name : "") >=
	    (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	while (have < len - 1) {
		ssize_t n = read(fd, buf + have, len - 1 - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	close(fd);
	buf[have] = '\0';
	return (int)have;
}

/* Write s to dir/name in one write(). 0 or -1 with errno. */
static int cg_write(const char *dir, const char *name, const char *s)
{
	char path[PATH_MAX];
	size_t len = strlen(s);
	ssize_t n;
	int fd, e;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return -1;
	while ((n = write(fd, s, len)) < 0 && errno == EINTR)
		;
	e = errno;
	close(fd);
	if (n == (ssize_t)len)
		return 0;
	errno = n < 0 ? e : EIO;
	return -1;
}

/* 1 if tok is one of the words (separated by space, comma, newline) of s. */
static int has_word(const char *s, const char *tok)
{
	size_t n = strlen(tok);

	for (const char *p = s; (p = strstr(p, tok)) != NULL; p += n) {
		bool start = p == s || strchr(" ,\n", p[-1]) != NULL;
		bool end = p[n] == '\0' || strchr(" ,\n", p[n]) != NULL;

		if (start && end)
			return 1;
	}
	return 0;
}

/* The number after "key " on a line of dir/name; -1 when absent. */
static long long cg_read_key(const char *dir, const char *name, const char *key)
{
	char buf[4096];
	size_t n = strlen(key);

	if (cg_read(dir, name, buf, sizeof(buf)) < 0)
		return -1;
	for (char *line = buf; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');

		if (strncmp(line, key, n) == 0 && line[n] == ' ')
			return strtoll(line + n + 1, NULL, 10);
		line = nl ? nl + 1 : NULL;
	}
	return -1;
}

/* The single number in dir/name; -1 when absent. */
static long long cg_read_num(const char *dir, const char *name)
{
	char buf[64];

	if (cg_read(dir, name, buf, sizeof(buf)) <= 0)
		return -1;
	return strtoll(buf, NULL, 10);
}

/* ---- finding our own cgroup ------------------------------------------------- */

/* mountinfo's octal escapes (\040 for a space, ...), in place. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r != '\0'; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/*
 * The mount of cgroup v2 (ctrl NULL) or of the v1 hierarchy carrying ctrl:
 * its root within the hierarchy and its mount point. 0 or -1.
 */
static int find_mount(const char *ctrl, char *root, char *point, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int rc = -1;

	if (f == NULL)
		return -1;
	while (rc != 0 && getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - "), *save = NULL, *fld[5], *fstype, *super;
		int i;

		if (sep == NULL)
			continue;
		*sep = '\0';
		fstype = strtok_r(sep + 3, " \n", &save);
		if (fstype == NULL || strtok_r(NULL, " \n", &save) == NULL ||
		    (super = strtok_r(NULL, " \n", &save)) == NULL)
			continue;
		if (ctrl == NULL ? strcmp(fstype, "cgroup2") != 0
				 : strcmp(fstype, "cgroup") != 0 || !has_word(super, ctrl))
			continue;
		save = NULL;
		for (i = 0; i < 5; i++)
			if ((fld[i] = strtok_r(i ? NULL : line, " ", &save)) == NULL)
				break;
		if (i < 5 || strlen(fld[3]) >= len || strlen(fld[4]) >= len)
			continue;
		unescape(fld[3]);
		unescape(fld[4]);
		snprintf(root, len, "%s", fld[3]);
		snprintf(point, len, "%s", fld[4]);
		rc = 0;
	}
	free(line);
	fclose(f);
	return rc;
}

/* Our cgroup path in v2 (ctrl NULL: the "0::" line) or in the v1
 * hierarchy carrying ctrl, from /proc/self/cgroup. 0 or -1. */
static int own_path(const char *ctrl, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char *line = NULL;
	size_t cap = 0;
	int rc = -1;

	if (f == NULL)
		return -1;
	while (rc != 0 && getline(&line, &cap, f) > 0) {
		char *c1 = strchr(line, ':'), *c2, *nl;

		if (c1 == NULL || (c2 = strchr(c1 + 1, ':')) == NULL)
			continue;
		*c2 = '\0';
		if ((nl = strchr(c2 + 1, '\n')) != NULL)
			*nl = '\0';
		if (ctrl == NULL ? strncmp(line, "0:", 2) != 0 || c1[1] != '\0'
				 : !has_word(c1 + 1, ctrl))
			continue;
		if (c2[1] != '/' || strlen(c2 + 1) >= len)
			continue;
		snprintf(out, len, "%s", c2 + 1);
		rc = 0;
	}
	free(line);
	fclose(f);
	return rc;
}

/* The directory of our own cgroup in v2 (ctrl NULL) or ctrl's v1
 * hierarchy, malloc'd; NULL with why filled. */
static char *own_dir(const char *ctrl, char *why, size_t wlen)
{
	char root[PATH_MAX], point[PATH_MAX], path[PATH_MAX], *dir;
	const char *rel, *what = ctrl ? ctrl : "cgroup2";
	size_t rl;

	if (find_mount(ctrl, root, point, sizeof(root)) != 0) {
		snprintf(why, wlen, "no %s hierarchy mounted", what);
		return NULL;
	}
	if (own_path(ctrl, path, sizeof(path)) != 0) {
		snprintf(why, wlen, "not in a %s cgroup (/proc/self/cgroup)", what);
		return NULL;
	}
	/* Outside our cgroup namespace's root, or outside the mounted part. */
	rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
	if (strncmp(path, "/..", 3) == 0 || strncmp(path, root, rl) != 0 ||
	    (path[rl] != '/' && path[rl] != '\0')) {
		snprintf(why, wlen, "our %s cgroup %.80s is not under its mount %.80s", what, path,
			 point);
		return NULL;
	}
	rel = path + rl;
	if (strcmp(rel, "/") == 0)
		rel = "";
	if (asprintf(&dir, "%s%s", point, rel) < 0) {
		snprintf(why, wlen, "out of memory");
		return NULL;
	}
	return dir;
}

/* Make and remove a child of dir, to see whether we may. 0 or -1 + why. */
static int probe(const char *dir, char *why, size_t wlen)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/" SW_SANDBOX_CG_PREFIX "%d-probe", dir, (int)getpid());
	rmdir(path);
	if (mkdir(path, 0755) != 0) {
		snprintf(why, wlen, "cannot create cgroups under %s: %s", dir, strerror(errno));
		return -1;
	}
	rmdir(path);
	return 0;
}

static void remove_cg(const char *dir, int version);

/* The system's boot time, in seconds since the epoch (/proc/stat btime,
 * read once: /proc/stat outgrows cg_read_key's buffer on large hosts);
 * -1 when unknown. */
static long long boot_time(void)
{
	static long long bt = -1;
	char line[256];
	FILE *f;

	if (bt >= 0 || (f = fopen("/proc/stat", "re")) == NULL)
		return bt;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "btime %lld", &bt) == 1)
			break;
	fclose(f);
	return bt;
}

/*
 * 1 when the process that made the cgroup at path (pid, from its name) is
 * gone: no such process, a zombie nobody reaped, or a process that started
 * after the cgroup appeared (the pid reused). The last test errs towards
 * "alive": the directory's ctime is never before its creation.
 */
static int creator_gone(long pid, const char *path)
{
	char proc[64], buf[1024], *p;
	unsigned long long start;
	long long bt;
	struct stat st;
	long hz = sysconf(_SC_CLK_TCK);
	int n;

	if (kill((pid_t)pid, 0) != 0)
		return errno == ESRCH;
	snprintf(proc, sizeof(proc), "/proc/%ld", pid);
	if ((n = cg_read(proc, "stat", buf, sizeof(buf))) <= 0)
		return n < 0 && errno == ENOENT;
	/* after the command's ')': state (field 3), ..., starttime (field 22) */
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return 0;
	if (p[2] == 'Z' || p[2] == 'X')
		return 1;
	if (sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
		   "%*d %*d %llu",
		   &start) != 1 ||
	    hz <= 0 || (bt = boot_time()) < 0 || stat(path, &st) != 0)
		return 0;
	return bt + (long long)(start / (unsigned long long)hz) > (long long)st.st_ctime + 2;
}

/*
 * Remove what a dead process of ours left (sagewai-sbx-<pid>-<seq> whose
 * creator is gone, creator_gone), killing what still runs in it first: a
 * sandbox whose creator was killed mid-create can leave a bwrap child
 * behind that no parent-death signal reaches (docs/SANDBOX.md, "Sandboxes
 * of a dead instance"). A cgroup whose creator lives is not touched.
 */
static void sweep(struct sw_sandbox_cg *cg, const char *dir, int version)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		const char *p = e->d_name;
		char path[PATH_MAX], *end;
		long pid;

		if (strncmp(p, SW_SANDBOX_CG_PREFIX, strlen(SW_SANDBOX_CG_PREFIX)) != 0)
			continue;
		pid = strtol(p + strlen(SW_SANDBOX_CG_PREFIX), &end, 10);
		if (pid <= 0 || pid > INT_MAX || *end != '-' || pid == getpid() ||
		    snprintf(path, sizeof(path), "%s/%s", dir, p) >= (int)sizeof(path) ||
		    !creator_gone(pid, path))
			continue;
		if (rmdir(path) != 0 && errno == EBUSY) {
			cg->swept_busy++;
			remove_cg(path, version);
		}
	}
	closedir(d);
}

/* 1 if dir's cgroup.procs lists exactly this process. */
static int alone_in(const char *dir)
{
	char buf[256], self[32];

	snprintf(self, sizeof(self), "%d\n", (int)getpid());
	return cg_read(dir, "cgroup.procs", buf, sizeof(buf)) > 0 && strcmp(buf, self) == 0;
}

/*
 * v2: the memory and pids controllers on for dir's children. When dir
 * holds processes, the kernel refuses (no internal processes); if we are
 * its only process, move into a leaf child first, as a delegated service
 * is expected to. 0 or -1 + why.
 */
static int v2_enable(const char *dir, char *why, size_t wlen)
{
	char buf[512], leaf[PATH_MAX];

	if (cg_read(dir, "cgroup.controllers", buf, sizeof(buf)) < 0 ||
	    !has_word(buf, "memory") || !has_word(buf, "pids")) {
		snprintf(why, wlen, "v2: %s lacks the memory and pids controllers", dir);
		return -1;
	}
	if (cg_read(dir, "cgroup.subtree_control", buf, sizeof(buf)) >= 0 &&
	    has_word(buf, "memory") && has_word(buf, "pids"))
		return 0;
	if (cg_write(dir, "cgroup.subtree_control", "+memory +pids") == 0)
		return 0;
	if (errno != EBUSY || !alone_in(dir)) {
		snprintf(why, wlen, "v2: cannot enable memory and pids in %s: %s", dir,
			 errno == EBUSY ? "it holds other processes" : strerror(errno));
		return -1;
	}
	snprintf(leaf, sizeof(leaf), "%s/" CG_SELF_LEAF, dir);
	if ((mkdir(leaf, 0755) != 0 && errno != EEXIST) ||
	    cg_write(leaf, "cgroup.procs", "0") != 0) {
		snprintf(why, wlen, "v2: cannot move into %.120s: %s", leaf, strerror(errno));
		rmdir(leaf);
		return -1;
	}
	if (cg_write(dir, "cgroup.subtree_control", "+memory +pids") != 0) {
		snprintf(why, wlen, "v2: cannot enable memory and pids in %s: %s", dir,
			 strerror(errno));
		cg_write(dir, "cgroup.procs", "0");
		rmdir(leaf);
		return -1;
	}
	return 0;
}

/* v2, once memory and pids are on in dir: the cpu controller too, if it is
 * offered and we may. 0 or -1 + why (the cgroups work without it). */
static int v2_enable_cpu(const char *dir, char *why, size_t wlen)
{
	char buf[512];

	if (cg_read(dir, "cgroup.controllers", buf, sizeof(buf)) < 0 || !has_word(buf, "cpu")) {
		snprintf(why, wlen, "v2: %.150s lacks the cpu controller", dir);
		return -1;
	}
	if (cg_read(dir, "cgroup.subtree_control", buf, sizeof(buf)) >= 0 && has_word(buf, "cpu"))
		return 0;
	if (cg_write(dir, "cgroup.subtree_control", "+cpu") != 0) {
		snprintf(why, wlen, "v2: cannot enable cpu in %.150s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

static int try_v2(struct sw_sandbox_cg *cg, char *why, size_t wlen)
{
	char *dir = own_dir(NULL, why, wlen), cpu_why[200];

	if (dir == NULL)
		return -1;
	if (v2_enable(dir, why, wlen) != 0 || probe(dir, why, wlen) != 0) {
		free(dir);
		return -1;
	}
	sweep(cg, dir, 2);
	cg->base[SW_CG_MEMORY] = dir;
	cg->version = 2;
	cg->acct = SW_CG_MEMORY; /* cpu.stat is there without the controller */
	cg->cpu = v2_enable_cpu(dir, cpu_why, sizeof(cpu_why)) == 0;
	snprintf(cg->mode, sizeof(cg->mode), "v2%s%s", cg->cpu ? "" : "; cpu off: ",
		 cg->cpu ? "" : cpu_why);
	return 0;
}

/* v1: ctrl's hierarchy dir, if mounted and we may make cgroups in it;
 * NULL + why. */
static char *v1_dir(const char *ctrl, char *why, size_t wlen)
{
	char tmp[256], *dir;

	if ((dir = own_dir(ctrl, tmp, sizeof(tmp))) == NULL || probe(dir, tmp, sizeof(tmp)) != 0) {
		snprintf(why, wlen, "v1: %.190s", tmp);
		free(dir);
		return NULL;
	}
	return dir;
}

/* v1, once memory and pids are ours: the cpu hierarchy (required for a
 * CPU limit) and cpuacct (CPU time; NULL when it is cpu's own mount). */
static void v1_cpu(struct sw_sandbox_cg *cg, char *why, size_t wlen)
{
	char tmp[200];

	cg->acct = -1;
	if ((cg->base[SW_CG_CPU] = v1_dir("cpu", why, wlen)) != NULL) {
		cg->cpu = true;
		sweep(cg, cg->base[SW_CG_CPU], 1);
	}
	cg->base[SW_CG_CPUACCT] = v1_dir("cpuacct", tmp, sizeof(tmp));
	if (cg->base[SW_CG_CPUACCT] != NULL && cg->base[SW_CG_CPU] != NULL &&
	    strcmp(cg->base[SW_CG_CPUACCT], cg->base[SW_CG_CPU]) == 0) {
		free(cg->base[SW_CG_CPUACCT]);
		cg->base[SW_CG_CPUACCT] = NULL;
		cg->acct = SW_CG_CPU;
	} else if (cg->base[SW_CG_CPUACCT] != NULL) {
		sweep(cg, cg->base[SW_CG_CPUACCT], 1);
		cg->acct = SW_CG_CPUACCT;
	}
}

static int try_v1(struct sw_sandbox_cg *cg, char *why, size_t wlen)
{
	static const char *const ctrl[2] = {"memory", "pids"};
	char *dir[2] = {NULL, NULL}, cpu_why[200] = "";

	for (int i = 0; i < 2; i++)
		if ((dir[i] = v1_dir(ctrl[i], why, wlen)) == NULL)
			goto fail;
	for (int i = 0; i < 2; i++) {
		sweep(cg, dir[i], 1);
		cg->base[i] = dir[i];
	}
	cg->version = 1;
	v1_cpu(cg, cpu_why, sizeof(cpu_why));
	snprintf(cg->mode, sizeof(cg->mode), "v1%s%s", cg->cpu ? "" : "; cpu off: ",
		 cg->cpu ? "" : cpu_why);
	return 0;
fail:
	free(dir[0]);
	free(dir[1]);
	return -1;
}

int sw_sandbox_cg_init(struct sw_sandbox_cg *cg, const char *want, char *errstr, size_t errlen)
{
	char why2[200] = "", why1[200] = "";

	memset(cg, 0, sizeof(*cg));
	cg->acct = -1;
	if (want == NULL || *want == '\0' || strcmp(want, "off") == 0) {
		snprintf(cg->mode, sizeof(cg->mode), "off: disabled");
		return 0;
	}
	if (strcmp(want, "auto") != 0 && strcmp(want, "v1") != 0 && strcmp(want, "v2") != 0) {
		snprintf(errstr, errlen, "bwrap: cgroup setting '%.32s': auto, v1, v2 or off",
			 want);
		return -1;
	}
	if (strcmp(want, "v1") != 0 && try_v2(cg, why2, sizeof(why2)) == 0)
		return 0;
	if (strcmp(want, "v2") != 0 && try_v1(cg, why1, sizeof(why1)) == 0)
		return 0;
	snprintf(cg->mode, sizeof(cg->mode), "off: %.200s%s%.200s", why2,
		 why2[0] && why1[0] ? "; " : "", why1);
	return 0;
}

void sw_sandbox_cg_fini(struct sw_sandbox_cg *cg)
{
	while (cg->nspare > 0) {
		cg->nspare--;
		for (int i = 0; i < SW_CG_MAX; i++) {
			if (cg->spare[cg->nspare][i] != NULL)
				rmdir(cg->spare[cg->nspare][i]);
			free(cg->spare[cg->nspare][i]);
			cg->spare[cg->nspare][i] = NULL;
		}
	}
	for (int i = 0; i < SW_CG_MAX; i++) {
		free(cg->base[i]);
		cg->base[i] = NULL;
	}
	cg->version = 0;
	cg->cpu = false;
	cg->acct = -1;
}

/* ---- one sandbox's cgroup --------------------------------------------------- */

/* A limit as the files take it: "max" (v2) / "-1" (v1) when unbounded. */
static void limit_str(char *buf, size_t len, int version, uint64_t v)
{
	if (v > (uint64_t)INT64_MAX / 2)
		snprintf(buf, len, "%s", version == 2 ? "max" : "-1");
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* Kill whatever is in dir (v2: cgroup.kill when the kernel has it). */
static void kill_all(const char *dir, int version)
{
	char buf[4096];

	if (version == 2 && cg_write(dir, "cgroup.kill", "1") == 0)
		return;
	if (cg_read(dir, "cgroup.procs", buf, sizeof(buf)) <= 0)
		return;
	for (char *save, *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
		long pid = strtol(t, NULL, 10);

		if (pid > 1 && pid <= INT_MAX)
			kill((pid_t)pid, SIGKILL);
	}
}

/* rmdir a cgroup, which fails with EBUSY until its last task is gone. */
static void remove_cg(const char *dir, int version)
{
	struct timespec ts = {0, 5 * 1000 * 1000};

	for (int i = 0; i < CG_RMDIR_TRIES; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			return;
		if (i % 20 == 0)
			kill_all(dir, version);
		nanosleep(&ts, NULL);
	}
}

void sw_sandbox_cg_box_close(struct sw_sandbox_cg_box *box)
{
	for (int i = 0; i < SW_CG_MAX; i++) {
		if (box->procs[i] >= 0)
			close(box->procs[i]);
		box->procs[i] = -1;
	}
}

/*
 * cpu_millis as CFS bandwidth: quota per period, in µs. The kernel takes a
 * quota of at least 1 ms, so below 10 millis the period is 1 s instead of
 * 100 ms (the longest it takes).
 */
static void cpu_bandwidth(uint64_t millis, char *quota, char *period, size_t len)
{
	uint64_t per = millis < 10 ? 1000000 : 100000;

	snprintf(period, len, "%llu", (unsigned long long)per);
	snprintf(quota, len, "%llu", (unsigned long long)(millis * per / 1000));
}

/* Make the dirs of one sandbox's cgroup(s) under each base into dir[].
 * 0, or -1 with errno and *wd the base that failed (nothing left). */
static int cg_mkdirs(struct sw_sandbox_cg *cg, char *dir[SW_CG_MAX], int *wd)
{
	unsigned seq = __atomic_fetch_add(&cg_seq, 1, __ATOMIC_RELAXED);

	for (int i = 0; i < SW_CG_MAX; i++) {
		if (cg->base[i] == NULL)
			continue;
		*wd = i;
		if (asprintf(&dir[i], "%s/" SW_SANDBOX_CG_PREFIX "%d-%u", cg->base[i],
			     (int)getpid(), seq) < 0) {
			dir[i] = NULL;
			errno = ENOMEM;
			goto fail;
		}
		/* The name is ours alone: one there was left by a dead namesake. */
		if (mkdir(dir[i], 0755) != 0 &&
		    (errno != EEXIST || rmdir(dir[i]) != 0 || mkdir(dir[i], 0755) != 0)) {
			free(dir[i]);
			dir[i] = NULL;
			goto fail;
		}
	}
	return 0;
fail:
	for (int i = 0; i < SW_CG_MAX; i++) {
		int e = errno;

		if (dir[i] != NULL)
			rmdir(dir[i]);
		free(dir[i]);
		dir[i] = NULL;
		errno = e;
	}
	return -1;
}

int sw_sandbox_cg_spare_fill(struct sw_sandbox_cg *cg)
{
	int wd;

	while (cg->version != 0 && cg->nspare < cg->want_spares &&
	       cg->nspare < SW_SANDBOX_CG_SPARES_MAX) {
		if (cg_mkdirs(cg, cg->spare[cg->nspare], &wd) != 0)
			return -1;
		cg->nspare++;
	}
	return 0;
}

int sw_sandbox_cg_box_new(struct sw_sandbox_cg *cg, const struct sw_sandbox_limits *lim,
			  struct sw_sandbox_cg_box *box, char *errstr, size_t errlen)
{
	char mem[32], pids[32], quota[32], period[32], cpu_max[80], path[PATH_MAX];
	const char *what = "mkdir";
	bool limit_cpu = lim->cpu_millis > 0;
	int wd = 0; /* which dir what is about */

	memset(box, 0, sizeof(*box));
	box->acct = -1;
	for (int i = 0; i < SW_CG_MAX; i++)
		box->procs[i] = -1;
	if (limit_cpu && !cg->cpu) {
		snprintf(errstr, errlen, "bwrap: " SW_SANDBOX_ERR_NO_CPU " here (cgroups %s)",
			 cg->mode);
		return -1;
	}
	if (cg->version == 0)
		return 0;
	box->version = cg->version;
	box->acct = cg->acct;
	limit_str(mem, sizeof(mem), cg->version, lim->memory_bytes);
	limit_str(pids, sizeof(pids), cg->version,
		  lim->nproc > UINT64_MAX - SW_SANDBOX_CG_PIDS_MARGIN
		      ? UINT64_MAX
		      : lim->nproc + SW_SANDBOX_CG_PIDS_MARGIN);
	cpu_bandwidth(lim->cpu_millis, quota, period, sizeof(quota));
	snprintf(cpu_max, sizeof(cpu_max), "%s %s", quota, period);
	/* one made ahead when there is one: fresh, empty and unlimited */
	if (cg->nspare > 0) {
		cg->nspare--;
		for (int i = 0; i < SW_CG_MAX; i++) {
			box->dir[i] = cg->spare[cg->nspare][i];
			cg->spare[cg->nspare][i] = NULL;
		}
	} else if (cg_mkdirs(cg, box->dir, &wd) != 0) {
		goto fail;
	}
	/* The swap files are absent without swap accounting: no swap to bound.
	 * The CPU files only when there is a CPU limit (a new cgroup has none). */
	{
		const struct {
			int d;
			const char *file, *val;
			bool optional, cpu;
		} v2[4] = {{SW_CG_MEMORY, "memory.max", mem, false, false},
			   {SW_CG_MEMORY, "memory.swap.max", "0", true, false},
			   {SW_CG_MEMORY, "pids.max", pids, false, false},
			   {SW_CG_MEMORY, "cpu.max", cpu_max, false, true}},
		  v1[5] = {{SW_CG_MEMORY, "memory.limit_in_bytes", mem, false, false},
			   {SW_CG_MEMORY, "memory.memsw.limit_in_bytes", mem, true, false},
			   {SW_CG_PIDS, "pids.max", pids, false, false},
			   {SW_CG_CPU, "cpu.cfs_period_us", period, false, true},
			   {SW_CG_CPU, "cpu.cfs_quota_us", quota, false, true}},
		  *set = cg->version == 2 ? v2 : v1;
		int n = cg->version == 2 ? 4 : 5;

		for (int i = 0; i < n; i++) {
			if (set[i].cpu && !limit_cpu)
				continue;
			what = set[i].file;
			wd = set[i].d;
			if (cg_write(box->dir[set[i].d], what, set[i].val) == 0 ||
			    (set[i].optional && errno == ENOENT))
				continue;
			/*
			 * v1 refuses a quota above an ancestor's (EINVAL; v2
			 * does not check). Unlimited, the sandbox is then held
			 * to that ancestor's bound, lower than the one asked.
			 */
			if (cg->version == 1 && set[i].cpu && errno == EINVAL &&
			    strcmp(what, "cpu.cfs_quota_us") == 0 &&
			    cg_write(box->dir[set[i].d], what, "-1") == 0)
				continue;
			goto fail;
		}
	}
	/*
	 * v1: join through "tasks" (this thread), not "cgroup.procs": the
	 * joiner is a just-forked, single-threaded child, so it is the same
	 * move, and moving a whole thread group write-locks the cgroup
	 * threadgroup rwsem, an RCU grace period on a v1 mount without
	 * favordynmods (5-20 ms here against ~0.5 ms for the thread).
	 */
	what = cg->version == 1 ? "tasks" : "cgroup.procs";
	for (int i = 0; i < SW_CG_MAX; i++) {
		if (box->dir[i] == NULL)
			continue;
		wd = i;
		snprintf(path, sizeof(path), "%s/%s", box->dir[i], what);
		if ((box->procs[i] = open(path, O_WRONLY | O_CLOEXEC)) < 0)
			goto fail;
	}
	return 0;
fail:
	snprintf(errstr, errlen, "bwrap: sandbox cgroup %s: %s: %s",
		 box->dir[wd] ? box->dir[wd] : cg->base[wd], what, strerror(errno));
	sw_sandbox_cg_box_destroy(box, NULL);
	return -1;
}

int sw_sandbox_cg_box_join(const struct sw_sandbox_cg_box *box)
{
	for (int i = 0; i < SW_CG_MAX; i++)
		if (box->procs[i] >= 0 && write(box->procs[i], "0", 1) != 1)
			return -1;
	return 0;
}

/* The CPU time of everything that ran in dir, user and system, in µs
 * (v2 cpu.stat; v1 cpuacct.usage_user/_sys, else cpuacct.stat's ticks).
 * 0 or -1. */
static int cpu_time(const char *dir, int version, int64_t *user, int64_t *sys)
{
	long long u, s;

	if (version == 2) {
		u = cg_read_key(dir, "cpu.stat", "user_usec");
		s = cg_read_key(dir, "cpu.stat", "system_usec");
	} else if ((u = cg_read_num(dir, "cpuacct.usage_user")) >= 0 &&
		   (s = cg_read_num(dir, "cpuacct.usage_sys")) >= 0) {
		u /= 1000;
		s /= 1000;
	} else {
		long hz = sysconf(_SC_CLK_TCK);

		u = cg_read_key(dir, "cpuacct.stat", "user");
		s = cg_read_key(dir, "cpuacct.stat", "system");
		if (hz <= 0)
			return -1;
		u = u * (1000000 / hz);
		s = s * (1000000 / hz);
	}
	if (u < 0 || s < 0)
		return -1;
	*user = u;
	*sys = s;
	return 0;
}

void sw_sandbox_cg_box_destroy(struct sw_sandbox_cg_box *box, struct sw_sandbox_usage *final)
{
	sw_sandbox_cg_box_close(box);
	if (box->version == 0)
		return;
	if (final != NULL && box->dir[SW_CG_MEMORY] != NULL) {
		const char *mdir = box->dir[SW_CG_MEMORY];
		long long peak, oom;
		int64_t u, s;

		if (box->version == 2) {
			peak = cg_read_num(mdir, "memory.peak");
			oom = cg_read_key(mdir, "memory.events", "oom_kill");
		} else {
			peak = cg_read_num(mdir, "memory.max_usage_in_bytes");
			/* oom_kill appeared in 4.13; before, any limit hit */
			if ((oom = cg_read_key(mdir, "memory.oom_control", "oom_kill")) < 0)
				oom = cg_read_num(mdir, "memory.failcnt");
		}
		if (peak / 1024 > final->maxrss_kb)
			final->maxrss_kb = peak / 1024;
		final->oom_killed = oom > 0;
		/* the cgroup also counts what wait4() never saw (killed orphans) */
		if (box->acct >= 0 && box->dir[box->acct] != NULL &&
		    cpu_time(box->dir[box->acct], box->version, &u, &s) == 0 &&
		    u + s > final->utime_us + final->stime_us) {
			final->utime_us = u;
			final->stime_us = s;
		}
	}
	for (int i = 0; i < SW_CG_MAX; i++) {
		if (box->dir[i] != NULL)
			remove_cg(box->dir[i], box->version);
		free(box->dir[i]);
		box->dir[i] = NULL;
	}
	box->version = 0;
}
