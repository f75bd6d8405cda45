/*
 * credparse.h: the check of a CRED_REQUEST payload (credparse.c), shared by
 * sandboxd and its fuzz target.
 */
#ifndef SBD_CREDPARSE_H
#define SBD_CREDPARSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#define SBD_CRED_REQUESTER_MAX 200

/* A request as a tool runner forwarded it. */
struct sbd_cred_req {
	uint32_t id; /* the runner's; 0 when unreadable */
	char name[129];
	char scope[257];
	char reason[1025];
	char requester[SBD_CRED_REQUESTER_MAX + 1];
	uint32_t timeout_ms;
};

/* Check p[0..n) into req. 0, or -1 with err (req->id set when readable, for
 * the refusal). */
int sbd_cred_parse(const void *p, size_t n, struct sbd_cred_req *req, char *err, size_t errlen);

#endif
