/*
 * sw_prune: rows that matter only for a while, deleted in the background
 * (policy's tombstones, identity's resolutions and revoked minted rows).
 *
 * A pass runs a second after sw_prune_new and then every SW_PRUNE_EVERY_S:
 * each statement of the definition, in order, with one parameter (the
 * retention in seconds), deletes at most SW_PRUNE_BATCH rows and answers
 * one row, their count; a statement that deleted a full batch is run
 * again, at most SW_PRUNE_ROUNDS times a pass, so that a pass never holds
 * a table long. A pass that deleted rows logs the definition's line with
 * the count ("rows") and adds it to its counter. A failed statement ends
 * the pass (logged; the next pass tries again). Loop thread only.
 */
#ifndef SW_PRUNE_H
#define SW_PRUNE_H

#include <stddef.h>

#define SW_PRUNE_EVERY_S 600
#define SW_PRUNE_BATCH 1000 /* the statements' LIMIT */
#define SW_PRUNE_ROUNDS 20

struct sw_service;
struct sw_store;
struct sw_prune;

struct sw_prune_def {
	const char *const *sql; /* $1: the retention in seconds; answers the count */
	size_t nsql;
	const char *what;   /* the log line of a pass that deleted rows */
	const char *metric; /* its counter */
	const char *help;
};

/* Start pruning with store; def (static) is kept. NULL with errstr. */
struct sw_prune *sw_prune_new(struct sw_service *svc, struct sw_store *store,
			      const struct sw_prune_def *def, long long retention_s, char *errstr,
			      size_t errlen);
/* Stop it (before the store goes); NULL is fine. */
void sw_prune_free(struct sw_prune *p);

#endif
