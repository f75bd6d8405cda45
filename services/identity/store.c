/*
 * store.c: the schema "identity" in PostgreSQL, and small helpers for
 * parameters and results.
 *
 *   secrets      one row per (scope, name): its backend, chosen at the first
 *                set (free again once every version is deleted), and for an
 *                operator-managed Vault value its path
 *   versions     one row per version: state (active, revoked, deleted), the
 *                MAC, and for builtin the ciphertext, its nonce and the id of
 *                the master key it is under (NULL once deleted). write_id is
 *                the request that made it, so a resent insert is recognised
 *   profiles     (scope, level, name) -> body
 *   resolutions  what each resolve request of a run resolved per step (keys
 *                with their owning scope); seal requests are checked
 *                against it; deleted after the retention (prune.c)
 *   minted, mint_ends
 *                accessors of tokens minted on an allow decision (deleted
 *                after the retention once revoked, prune.c), and the step
 *                attempts seen ending (mint.c)
 *   tenants, apikeys, users
 *                learnt from sagewai.tenants (tenants.c)
 *
 * Every statement the services send is idempotent (sw_store resends after
 * a lost connection): inserts are ON CONFLICT, updates are guarded.
 */
#include <stdlib.h>
#include <string.h>

#include "identity.h"

static const char *const migration_1 =
	"CREATE TABLE secrets ("
	" tenant text NOT NULL,"
	" name text NOT NULL,"
	" backend text NOT NULL CHECK (backend IN ('builtin', 'vault')),"
	" vault_path text NOT NULL DEFAULT '',"
	" created timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (tenant, name));"
	"CREATE TABLE versions ("
	" tenant text NOT NULL,"
	" name text NOT NULL,"
	" version int NOT NULL CHECK (version >= 1),"
	" state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked', 'deleted')),"
	" key_id text,"
	" nonce bytea,"
	" ct bytea,"
	" mac bytea NOT NULL CHECK (length(mac) = 32),"
	" write_id uuid,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" changed timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (tenant, name, version),"
	" FOREIGN KEY (tenant, name) REFERENCES secrets ON DELETE CASCADE);"
	"CREATE INDEX versions_mac ON versions (mac) WHERE state = 'active';"
	"CREATE INDEX versions_rekey ON versions (key_id) WHERE ct IS NOT NULL;"
	"CREATE TABLE profiles ("
	" tenant text NOT NULL,"
	" level text NOT NULL CHECK (level IN ('system', 'workflow', 'user')),"
	" name text NOT NULL,"
	" body jsonb NOT NULL,"
	" updated timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (tenant, level, name));"
	"CREATE TABLE resolutions ("
	" run_id text NOT NULL,"
	" step text NOT NULL,"
	" request_id uuid NOT NULL,"
	" tenant text NOT NULL,"
	" keys jsonb NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (run_id, step, request_id));"
	"CREATE TABLE tenants ("
	" id text PRIMARY KEY,"
	" name text NOT NULL DEFAULT '',"
	" deleted boolean NOT NULL DEFAULT false);"
	"CREATE INDEX tenants_name ON tenants (name) WHERE NOT deleted;"
	"CREATE TABLE apikeys ("
	" key_id uuid PRIMARY KEY,"
	" key_hash bytea UNIQUE,"
	" tenant_id text NOT NULL DEFAULT '',"
	" role text NOT NULL DEFAULT '',"
	" username text NOT NULL DEFAULT '',"
	" revoked boolean NOT NULL DEFAULT false);"
	"CREATE TABLE users ("
	" user_id uuid PRIMARY KEY,"
	" tenant_id text NOT NULL,"
	" name text NOT NULL,"
	" deleted boolean NOT NULL DEFAULT false);";

/* cli_agent_jit: the allow decisions (dropped by migration 4), and each
 * resolution's denied keys (a grant of a key the step's ACL refuses is
 * not_allowed, naming why) */
static const char *const migration_2 =
	"CREATE TABLE grants ("
	" request_id uuid NOT NULL,"
	" run_id text NOT NULL,"
	" step_id text NOT NULL,"
	" step text NOT NULL,"
	" tenant text NOT NULL,"
	" sandbox_id text NOT NULL,"
	" name text NOT NULL,"
	" secret text NOT NULL,"
	" rule text NOT NULL DEFAULT '',"
	" by text NOT NULL DEFAULT '',"
	" created timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (request_id, run_id, step_id, tenant, sandbox_id, name));"
	"ALTER TABLE resolutions ADD COLUMN denied jsonb NOT NULL DEFAULT '[]';";

/* tokens minted on a grant (mint.c): the accessor, never the token; ended
 * once the step attempt or run is over, revoked_at once Vault revoked it */
static const char *const migration_3 =
	"CREATE TABLE minted ("
	" accessor text PRIMARY KEY,"
	" tenant text NOT NULL,"
	" run_id text NOT NULL,"
	" step_id text NOT NULL,"
	" sandbox_id text NOT NULL,"
	" request_id uuid NOT NULL,"
	" source text NOT NULL,"
	" env text NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" expires_at timestamptz NOT NULL,"
	" ended boolean NOT NULL DEFAULT false,"
	" revoked_at timestamptz);"
	"CREATE INDEX minted_run ON minted (run_id, step_id) WHERE revoked_at IS NULL;"
	"CREATE INDEX minted_owed ON minted (expires_at) WHERE ended AND revoked_at IS NULL;"
	/* the step attempts ('' = the whole run) seen ending, for a day (the
	 * longest TTL): a token minted after its step ended is revoked at once */
	"CREATE TABLE mint_ends ("
	" run_id text NOT NULL,"
	" step_id text NOT NULL,"
	" at timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (run_id, step_id));"
	"CREATE INDEX mint_ends_at ON mint_ends (at);";

/* the former path's grants (migration 2) are no longer written nor read:
 * an allow credential.decided is sealed on the decision itself. Pruning
 * (prune.c) finds old resolutions and revoked minted rows by index. */
static const char *const migration_4 =
	"DROP TABLE IF EXISTS grants;"
	"CREATE INDEX resolutions_created ON resolutions (created);"
	"CREATE INDEX minted_revoked ON minted (revoked_at) WHERE revoked_at IS NOT NULL;";

/* The input check without the round trip (docs/IDENTITY.md, "The input
 * check"): whether any of the MACs (hex) equals the MAC of an active
 * version of the tenant's or _system's secrets -- the query of the resolve
 * path, answered with one boolean, never which secret; NULL for more than
 * 4,096 MACs (a resolve request's cap, ID_MAX_INPUT_MACS). SECURITY DEFINER
 * with a fixed search_path, so it reads versions with identity's rights
 * and nothing a caller puts on its path. PL/pgSQL, whose plan is kept
 * for the session: a SQL function with SET is never inlined, and planned
 * its query again at every call (0.29 ms a run). Reachable only by roles
 * with USAGE on this schema: identity's own and the scheduler's (granted
 * by the operator's roles script, infra/postgres/roles.sql). No other
 * function of this schema may be executed by another role: the default
 * EXECUTE for PUBLIC is revoked for every function identity creates from
 * now on, and granted back for this one alone. */
static const char *const migration_5 =
	"ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;"
	"CREATE FUNCTION input_matches(p_tenant text, p_macs text[]) RETURNS boolean"
	" LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = identity, pg_temp AS $$"
	" BEGIN"
	"  IF cardinality(p_macs) > 4096 THEN RETURN NULL; END IF;"
	"  RETURN EXISTS (SELECT 1 FROM identity.versions v WHERE v.state = 'active'"
	"   AND v.tenant IN (p_tenant, '_system')"
	"   AND v.mac IN (SELECT decode(x, 'hex') FROM unnest(p_macs) x));"
	" END $$;"
	"GRANT EXECUTE ON FUNCTION input_matches(text, text[]) TO PUBLIC;";

/*
 * Migration 6: input_matches finds the MACs by the index of active
 * versions whatever the size of versions. PL/pgSQL keeps its query's plan
 * for the session; made while versions was small, the planner chose a
 * hash join over a scan of all of versions (cheaper than ten lookups, its
 * guess of the array's length, on a few hundred rows) and kept it as the
 * table grew: with 20,000 versions 3.6 ms a call against 14 us by the
 * index, and 0.19 ms against 0.02 already at 1,000 (a PL/pgSQL loop of
 * 5,000 calls each, docs/BENCHMARKS.md "Statements planned at every
 * call"). Every submit whose input holds a string calls it. So it plans
 * once a session, generic, by nested loops and index scans only.
 */
static const char *const migration_6 =
    "ALTER FUNCTION input_matches(text, text[]) SET plan_cache_mode = force_generic_plan"
    " SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;";

const struct sw_migration id_migrations[] = {
    {1, migration_1}, {2, migration_2}, {3, migration_3},
    {4, migration_4}, {5, migration_5}, {6, migration_6},
};
const size_t id_nmigrations = sizeof(id_migrations) / sizeof(id_migrations[0]);

int id_pg_bytea(const char *text, uint8_t **out, size_t *len)
{
	size_t n;
	uint8_t *b;

	if (text == NULL || text[0] != '\\' || text[1] != 'x')
		return -1;
	n = strlen(text + 2);
	if (n % 2 != 0 || (b = malloc(n / 2 + 1)) == NULL)
		return -1;
	if (sw_hex_decode(text + 2, b, n / 2) == -1) {
		free(b);
		return -1;
	}
	*out = b;
	*len = n / 2;
	return 0;
}

char *id_pg_bytea_param(const uint8_t *p, size_t n)
{
	char *s = malloc(2 * n + 3);

	if (s == NULL)
		return NULL;
	s[0] = '\\';
	s[1] = 'x';
	sw_hex_encode(p, n, s + 2);
	return s;
}
