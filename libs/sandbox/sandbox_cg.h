/*
 * sandbox_cg.h: per-sandbox cgroups of the bwrap backend; internal to
 * libs/sandbox (cgroup.c). docs/SANDBOX.md, "Per-sandbox cgroups".
 *
 * struct sw_sandbox_cg is found once per backend (sw_sandbox_bwrap_new):
 * where sandbox cgroups go, under the caller's own cgroup. Each sandbox
 * then gets a struct sw_sandbox_cg_box: its own cgroup(s), named
 * sagewai-sbx-<pid>-<seq>, holding the memory, process and (where the cpu
 * controller is ours) CPU bandwidth limits of the whole sandbox; bwrap's
 * child joins it before it execs bwrap.
 */
#ifndef SANDBOX_CG_H
#define SANDBOX_CG_H

#include "sw_sandbox.h"

#define SW_SANDBOX_CG_PREFIX "sagewai-sbx-"
#define SW_SANDBOX_CG_PIDS_MARGIN 4 /* pids.max = nproc + this: bwrap, the runner */

/* Indexes of base[] and dir[]; v2 has one dir, [SW_CG_MEMORY]. */
enum { SW_CG_MEMORY, SW_CG_PIDS, SW_CG_CPU, SW_CG_CPUACCT, SW_CG_MAX };

#define SW_SANDBOX_CG_SPARES_MAX 16

struct sw_sandbox_cg {
	int version;	       /* 0: off, 1: cgroup v1, 2: cgroup v2 */
	/* cgroups made ahead, empty and unlimited (sw_sandbox_cg_spare_fill) */
	char *spare[SW_SANDBOX_CG_SPARES_MAX][SW_CG_MAX];
	int nspare, want_spares;
	bool cpu;	       /* the cpu controller is ours: cpu_millis is enforced */
	int acct;	       /* the dir whose cpuacct.* / cpu.stat tells CPU time; -1 */
	char mode[512];	       /* "v1", "v2", "v1; cpu off: <why>" or "off: <why>" */
	int swept_busy;	       /* dead instances' cgroups found in use, killed (init) */
	char *base[SW_CG_MAX]; /* v1: each hierarchy's dir, NULL when not used (cpu
				* off, or cpuacct mounted with cpu); v2: base[0] */
};

struct sw_sandbox_cg_box {
	int version;	       /* of the cgroup; 0: none */
	int acct;	       /* as cg->acct */
	char *dir[SW_CG_MAX];  /* as base[] */
	int procs[SW_CG_MAX];  /* their cgroup.procs, write-only, or -1 */
};

/*
 * Fill cg for setting want: NULL, "" or "off" (off), "auto" (v2, else v1),
 * "v1" or "v2" (only that one). When no usable cgroup is found, cg is off
 * and cg->mode says why; that is not an error. The cpu controller is
 * optional: without it cg->cpu is false and cg->mode says why after
 * "; cpu off: ". -1 with errstr only for an unknown setting or no memory.
 * On v2 this may enable the memory, pids and cpu controllers of the
 * caller's cgroup, moving the caller into a leaf child of it
 * (sagewai-sandboxd) first when it is that cgroup's only process.
 */
int sw_sandbox_cg_init(struct sw_sandbox_cg *cg, const char *want, char *errstr, size_t errlen);
void sw_sandbox_cg_fini(struct sw_sandbox_cg *cg);

/*
 * Make one sandbox's cgroup(s) with lim (memory_bytes for the whole
 * sandbox, no swap; pids.max nproc + margin; cpu_millis as CFS bandwidth)
 * and open their cgroup.procs. cg off and no cpu_millis: box->version 0,
 * returns 0. -1 with errstr, nothing left behind; lim->cpu_millis > 0
 * without the cpu controller (cg off included) is such a failure, its
 * errstr holding SW_SANDBOX_ERR_NO_CPU.
 */
int sw_sandbox_cg_box_new(struct sw_sandbox_cg *cg, const struct sw_sandbox_limits *lim,
			  struct sw_sandbox_cg_box *box, char *errstr, size_t errlen);
/*
 * Make cgroups ahead, up to cg->want_spares, so that box_new takes one
 * instead of paying mkdir (a v1 memory cgroup: ~2 ms) on a create's path.
 * 0, or -1 (one could not be made; what was made stays). sw_sandbox_cg_fini
 * removes what is left; a crashed process's are swept like its boxes.
 */
int sw_sandbox_cg_spare_fill(struct sw_sandbox_cg *cg);
/* In the forked child, still privileged: move this process into the box.
 * Async-signal-safe. 0 or -1. */
int sw_sandbox_cg_box_join(const struct sw_sandbox_cg_box *box);
/* Close the cgroup.procs fds (the parent, once the child has forked). */
void sw_sandbox_cg_box_close(struct sw_sandbox_cg_box *box);
/*
 * Once everything of the sandbox has been reaped: the peak memory into
 * final->maxrss_kb when larger, whether the OOM killer acted into
 * final->oom_killed, the sandbox's user and system CPU time into
 * final->utime_us/stime_us when their sum is larger (final may be NULL),
 * then remove the cgroup(s), killing whatever is somehow still in them.
 */
void sw_sandbox_cg_box_destroy(struct sw_sandbox_cg_box *box, struct sw_sandbox_usage *final);

#endif
