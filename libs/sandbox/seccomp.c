/*
 * seccomp.c: the syscall filter of every bwrap sandbox, built with
 * libseccomp and exported as BPF for bwrap's --seccomp FD.
 *
 * Default allow; EPERM for the calls a sandboxed tool has no business
 * making and that widen the kernel surface or break out of the namespaces
 * (docs/SANDBOX.md lists them with reasons). The user namespace already
 * withholds the capabilities most of them need: the filter is the second
 * wall, and the only one for calls that need no capability (keyctl, bpf
 * on some kernels, userfaultfd, io_uring, personality, unshare of a user
 * namespace, ...). Syscalls of other ABIs (i386, x32) are killed by
 * libseccomp's architecture check.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>

#include <seccomp.h>

#include "sw_sandbox.h"

/* Refused outright (EPERM). */
static const char *const denied[] = {
    /* mounts and root changes */
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    /* namespaces */
    "unshare",
    "setns",
    /* other processes */
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    /* kernel and its modules */
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "vhangup",
    "uselib",
    "iopl",
    "ioperm",
    /* big attack surfaces */
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    /* the kernel keyring (not namespaced) */
    "keyctl",
    "add_key",
    "request_key",
    /* file handles bypass the mount namespace's view */
    "open_by_handle_at",
    /* NUMA placement of other processes' pages */
    "move_pages",
    "migrate_pages",
};

/* clone() flags that create namespaces. */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
};

/* personality() flags that weaken exec: ASLR off, executable data, page 0. */
static const unsigned risky_persona[] = {
    ADDR_NO_RANDOMIZE,
    READ_IMPLIES_EXEC,
    MMAP_PAGE_ZERO,
    ADDR_COMPAT_LAYOUT,
};

static int build(scmp_filter_ctx ctx, char *errstr, size_t errlen)
{
	const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
	int rc;

	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);

		if (nr == __NR_SCMP_ERROR) {
			snprintf(errstr, errlen, "seccomp: unknown syscall %s", denied[i]);
			return -1;
		}
		/* Pseudo-numbers (< 0) name calls this arch lacks: nothing to refuse. */
		if (nr < 0)
			continue;
		if ((rc = seccomp_rule_add(ctx, eperm, nr, 0)) != 0) {
			snprintf(errstr, errlen, "seccomp: %s: %s", denied[i], strerror(-rc));
			return -1;
		}
	}
	for (size_t i = 0; i < sizeof(clone_ns_flags) / sizeof(clone_ns_flags[0]); i++) {
		rc = seccomp_rule_add(
		    ctx, eperm, SCMP_SYS(clone), 1,
		    SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
		if (rc != 0) {
			snprintf(errstr, errlen, "seccomp: clone: %s", strerror(-rc));
			return -1;
		}
	}
	/* clone3 passes its flags in memory the filter cannot read: make libc
	 * fall back to clone. */
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) != 0) {
		snprintf(errstr, errlen, "seccomp: clone3: %s", strerror(-rc));
		return -1;
	}
	/*
	 * personality(p): refuse p holding a risky flag, except the query
	 * p == 0xffffffff. libseccomp allows one comparison per argument, so
	 * "flag set and p != ~0" is written as the union over every other bit
	 * b of "flag set and bit b clear".
	 */
	for (size_t i = 0; i < sizeof(risky_persona) / sizeof(risky_persona[0]); i++) {
		for (unsigned b = 0; b < 32; b++) {
			uint64_t f = risky_persona[i], m = f | (1ull << b);

			if (m == f)
				continue;
			rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(personality), 1,
					      SCMP_A0(SCMP_CMP_MASKED_EQ, m, f));
			if (rc != 0) {
				snprintf(errstr, errlen, "seccomp: personality: %s",
					 strerror(-rc));
				return -1;
			}
		}
	}
	/* Typing into the terminal of whoever started us. */
	rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
			      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX));
	if (rc != 0) {
		snprintf(errstr, errlen, "seccomp: ioctl: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

int sw_sandbox_seccomp_export(int fd, char *errstr, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc = -1, e;

	if (ctx == NULL) {
		snprintf(errstr, errlen, "seccomp: cannot initialise libseccomp");
		return -1;
	}
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) != 0) {
		snprintf(errstr, errlen, "seccomp: cannot set filter attributes");
		goto out;
	}
	if (build(ctx, errstr, errlen) != 0)
		goto out;
	if ((e = seccomp_export_bpf(ctx, fd)) != 0) {
		snprintf(errstr, errlen, "seccomp: export: %s", strerror(-e));
		goto out;
	}
	rc = 0;
out:
	seccomp_release(ctx);
	return rc;
}
