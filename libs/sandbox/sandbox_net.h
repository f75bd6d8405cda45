/*
 * sandbox_net.h: network policy "full" of the bubblewrap backend
 * (netfull.c), private to libs/sandbox.
 */
#ifndef SW_SANDBOX_NET_H
#define SW_SANDBOX_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct sw_sandbox_netfull_cfg {
	const char *slirp_path; /* slirp4netns */
	const char *nft_path;	/* nft */
	bool drop;		/* we are root: slirp4netns runs as uid/gid */
	uid_t uid;
	gid_t gid;
};

/* One sandbox's slirp4netns. */
struct sw_sandbox_netfull {
	pid_t pid;   /* slirp4netns, our child; 0: none */
	int pidfd;   /* of it, or -1 */
	int exit_fd; /* its --exit-fd's other end: closing it stops it */
};

/* 0 when both programs are there; else -1 and why. */
int sw_sandbox_netfull_check(const struct sw_sandbox_netfull_cfg *cfg, char *why, size_t len);

/*
 * Rules into the network namespace of sandbox_pid (a process of the
 * sandbox, alive), then slirp4netns on it, ready. -1 with errstr on
 * failure, nothing left running.
 */
int sw_sandbox_netfull_start(const struct sw_sandbox_netfull_cfg *cfg, pid_t sandbox_pid,
			     struct sw_sandbox_netfull *n, char *errstr, size_t errlen);

/* Stop and reap slirp4netns; n may be one that never started. */
void sw_sandbox_netfull_stop(struct sw_sandbox_netfull *n);

#endif
