/*
 * store.c: the schema "policy".
 *
 *   policies        the current policy of each tenant (and _system): its
 *                   YAML as applied, a version counted up by each apply
 *   policy_history  every version applied, who applied it and the
 *                   allow-all overrides it carried (the audit of policy)
 *   requests        one row per credential request (request_id): what was
 *                   asked (and the asking host's seal key), the state (pending, decided), the decision and
 *                   who made it; pending_us / decided_us are the times of
 *                   its credential.pending / credential.decided events and
 *                   pending_sent / decided_sent whether they were
 *                   delivered: the row is its own outbox
 *   withdrawals     credential.withdrawn seen, even before its request
 *   finished_runs   run.finished seen (a later request of the run is void)
 *   reruns          re-runs as the scheduler announced them (run.submitted
 *                   with replay_of): the run each re-runs (replay.c)
 *   withdrawals, finished_runs and reruns are pruned after the retention
 *   (prune.c); requests are the record of the decisions and are kept
 *   tenants, apikeys  learnt from sagewai.tenants (tenants.c)
 */
#include "policy.h"

const struct sw_migration pol_migrations[] = {
	{1, "CREATE TABLE policies ("
	    " tenant text PRIMARY KEY,"
	    " version int NOT NULL,"
	    " yaml text NOT NULL,"
	    " filename text NOT NULL,"
	    " updated_by text NOT NULL,"
	    " updated timestamptz NOT NULL DEFAULT now());"
	    "CREATE TABLE policy_history ("
	    " tenant text NOT NULL,"
	    " version int NOT NULL,"
	    " yaml text NOT NULL,"
	    " filename text NOT NULL,"
	    " actor text NOT NULL,"
	    " overrides jsonb NOT NULL DEFAULT '[]',"
	    " created timestamptz NOT NULL DEFAULT now(),"
	    " PRIMARY KEY (tenant, version));"
	    "CREATE TABLE requests ("
	    " request_id uuid PRIMARY KEY,"
	    " tenant text NOT NULL,"
	    " run_id text NOT NULL,"
	    " step_id text NOT NULL,"
	    " trace_id text NOT NULL,"
	    " workflow text NOT NULL,"
	    " step text NOT NULL,"
	    " cli_agent text NOT NULL,"
	    " sandbox_id uuid NOT NULL,"
	    " host text NOT NULL,"
	    " name text NOT NULL,"
	    " scope text NOT NULL,"
	    " reason_req text NOT NULL,"
	    " requester text NOT NULL,"
	    " req_deadline_ms bigint NOT NULL,"
	    " received_us bigint NOT NULL,"
	    " state text NOT NULL CHECK (state IN ('pending', 'decided')),"
	    " approval_id uuid UNIQUE,"
	    " rule text NOT NULL,"
	    " deadline_ms bigint,"
	    " decision text CHECK (decision IN ('allow', 'deny')),"
	    " by text CHECK (by IN ('rule', 'human', 'deadline', 'withdrawn', 'no_rule')),"
	    " approver text NOT NULL DEFAULT '',"
	    " reason text NOT NULL DEFAULT '',"
	    " secret text NOT NULL DEFAULT '',"
	    " pending_us bigint,"
	    " decided_us bigint,"
	    " pending_sent boolean NOT NULL DEFAULT false,"
	    " decided_sent boolean NOT NULL DEFAULT false,"
	    " CHECK ((state = 'pending') = (decided_us IS NULL)));"
	    "CREATE INDEX requests_pending ON requests (deadline_ms) WHERE state = 'pending';"
	    "CREATE INDEX requests_run ON requests (run_id);"
	    "CREATE INDEX requests_approvals ON requests (tenant, received_us)"
	    " WHERE approval_id IS NOT NULL;"
	    "CREATE INDEX requests_unsent ON requests (received_us)"
	    " WHERE (pending_us IS NOT NULL AND NOT pending_sent)"
	    " OR (decided_us IS NOT NULL AND NOT decided_sent);"
	    "CREATE TABLE withdrawals ("
	    " request_id uuid PRIMARY KEY,"
	    " tenant text NOT NULL,"
	    " reason text NOT NULL);"
	    "CREATE TABLE finished_runs ("
	    " run_id text PRIMARY KEY,"
	    " at timestamptz NOT NULL DEFAULT now());"
	    "CREATE TABLE tenants ("
	    " id text PRIMARY KEY,"
	    " name text NOT NULL,"
	    " deleted boolean NOT NULL DEFAULT false);"
	    "CREATE TABLE apikeys ("
	    " key_id uuid PRIMARY KEY,"
	    " key_hash bytea,"
	    " tenant_id text NOT NULL,"
	    " role text NOT NULL DEFAULT '',"
	    " username text NOT NULL DEFAULT '',"
	    " revoked boolean NOT NULL DEFAULT false);"
	    "CREATE INDEX apikeys_hash ON apikeys (key_hash);"},
	/* re-runs (replay.c): decisions by 'replay' naming the original's */
	{2, "ALTER TABLE requests ADD COLUMN replay_of text NOT NULL DEFAULT '';"
	    "ALTER TABLE requests DROP CONSTRAINT requests_by_check;"
	    "ALTER TABLE requests ADD CONSTRAINT requests_by_check CHECK"
	    " (by IN ('rule', 'human', 'deadline', 'withdrawn', 'no_rule', 'replay'));"
	    "CREATE TABLE reruns ("
	    " run_id text PRIMARY KEY,"
	    " tenant text NOT NULL,"
	    " replay_of text NOT NULL,"
	    " at timestamptz NOT NULL DEFAULT now());"},
	/* pruning (prune.c): when each tombstone was written */
	{3, "ALTER TABLE withdrawals ADD COLUMN at timestamptz NOT NULL DEFAULT now();"
	    "CREATE INDEX withdrawals_at ON withdrawals (at);"
	    "CREATE INDEX finished_runs_at ON finished_runs (at);"
	    "CREATE INDEX reruns_at ON reruns (at);"},
	/* the requesting host's seal key (hex), carried into credential.decided:
	 * the identity service seals an allowed value to it (docs/JIT.md) */
	{4, "ALTER TABLE requests ADD COLUMN host_key text NOT NULL DEFAULT ''"},
};
const size_t pol_nmigrations = sizeof(pol_migrations) / sizeof(pol_migrations[0]);

/* decide.c's publish_row reads them by position */
const char pol_pub_cols[] =
	"request_id::text, tenant, run_id, step_id, trace_id, sandbox_id::text, step, name,"
	" coalesce(approval_id::text, ''), rule, coalesce(deadline_ms, 0),"
	" coalesce(decision, ''), coalesce(by, ''), approver, reason, secret,"
	" coalesce(pending_us, 0), coalesce(decided_us, 0), pending_sent, decided_sent, "
	POL_APPROVAL_JSON "::text, replay_of, host_key";
