/*
 * schema.c: the scheduler's tables in PostgreSQL (schema "scheduler",
 * applied by sw_store's migrations at start) and the API's JSON of a run.
 */
#include "scheduler.h"

static const char *const migration_1 =
	"CREATE TABLE tenants ("
	" name text PRIMARY KEY,"
	" key_hash bytea NOT NULL UNIQUE,"
	" created timestamptz NOT NULL DEFAULT now());"
	"CREATE TABLE workflows ("
	" tenant text NOT NULL,"
	" name text NOT NULL,"
	" version int NOT NULL,"
	" yaml text NOT NULL,"
	" def jsonb NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (tenant, name, version));"
	"CREATE TABLE runs ("
	" id uuid PRIMARY KEY,"
	" tenant text NOT NULL,"
	" workflow text NOT NULL,"
	" version int NOT NULL,"
	" input jsonb NOT NULL,"
	" state text NOT NULL,"
	" output jsonb,"
	" error text,"
	" rev bigint NOT NULL DEFAULT 0,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" started timestamptz,"
	" finished timestamptz);"
	"CREATE INDEX runs_tenant_created ON runs (tenant, created DESC);"
	"CREATE INDEX runs_running ON runs (state) WHERE state = 'running';"
	"CREATE TABLE steps ("
	" run_id uuid NOT NULL REFERENCES runs (id),"
	" idx int NOT NULL,"
	" name text NOT NULL,"
	" mode text NOT NULL,"
	" state text NOT NULL,"
	" attempt int NOT NULL DEFAULT 0,"
	" output jsonb,"
	" error text,"
	" started timestamptz,"
	" finished timestamptz,"
	" deadline timestamptz,"
	" next_attempt timestamptz,"
	" dispatch_event_id uuid,"
	" PRIMARY KEY (run_id, idx));"
	"CREATE INDEX steps_deadline ON steps (deadline) WHERE state IN ('dispatched', 'running');"
	"CREATE INDEX steps_retry ON steps (next_attempt) WHERE state = 'retrying';"
	"CREATE TABLE processed ("
	" event_id uuid PRIMARY KEY,"
	" created timestamptz NOT NULL DEFAULT now());"
	"CREATE INDEX processed_created ON processed (created);"
	"CREATE TABLE outbox ("
	" seq bigserial PRIMARY KEY,"
	" event_id uuid NOT NULL UNIQUE,"
	" topic text NOT NULL,"
	" key text NOT NULL,"
	" payload bytea NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now());"
	/* the optimistic guard: first statement of every transition */
	"CREATE FUNCTION bump_rev(p_id uuid, p_rev bigint) RETURNS void LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  UPDATE runs SET rev = rev + 1 WHERE id = p_id AND rev = p_rev;"
	"  IF NOT FOUND THEN"
	"   RAISE EXCEPTION 'run % changed concurrently', p_id USING ERRCODE = 'SWREV';"
	"  END IF;"
	" END $$;"
	"CREATE FUNCTION ts(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$"
	" SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') $$;"
	/* the API's JSON of a run (docs/RUNS.md) */
	"CREATE FUNCTION run_json(r runs) RETURNS json LANGUAGE sql STABLE AS $$"
	" SELECT json_build_object('run_id', r.id, 'workflow', r.workflow,"
	"  'version', r.version, 'state', r.state, 'input', r.input, 'output', r.output,"
	"  'error', r.error, 'created', ts(r.created), 'started', ts(r.started),"
	"  'finished', ts(r.finished), 'steps', (SELECT coalesce(json_agg(json_build_object("
	"   'name', s.name, 'index', s.idx, 'mode', s.mode, 'state', s.state,"
	"   'attempts', s.attempt, 'output', s.output, 'error', s.error,"
	"   'started', ts(s.started), 'finished', ts(s.finished)) ORDER BY s.idx), '[]')"
	"   FROM steps s WHERE s.run_id = r.id)) $$;";

/*
 * Migration 2: tenants get immutable ids. A tenant is a UUIDv7 and a name;
 * the name is a label, unique among live tenants only, so a deleted
 * tenant's name may be given again -- to a new id, which sees nothing of
 * the old one. workflows.tenant and runs.tenant hold the id ("default" is
 * the id of single_org mode's one tenant, never a tenant name). Keys move
 * to apikeys (one row per key, a role, revocable); tenant_delete() is the
 * guard of DELETE /v1/tenants/{id}.
 *
 * Existing tenants get ids here (v4: gen_random_uuid, SQL has no v7) and
 * their rows are re-pointed from name to id. A v1 tenant named "default"
 * shared its rows with single_org mode; they cannot be told apart, so the
 * rows stay with single_org and the tenant becomes "default-v1". Rows of
 * migration are marked announced = false: the scheduler publishes their
 * tenant.created / apikey.created at start (tenants.c).
 */
static const char *const migration_2 =
	"ALTER TABLE tenants RENAME TO tenants_v1;"
	"ALTER INDEX tenants_pkey RENAME TO tenants_v1_pkey;"
	"ALTER INDEX tenants_key_hash_key RENAME TO tenants_v1_key_hash_key;"
	"CREATE TABLE tenants ("
	" id uuid PRIMARY KEY,"
	" name text NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" deleted timestamptz,"
	" announced boolean NOT NULL DEFAULT true);"
	"CREATE UNIQUE INDEX tenants_live_name ON tenants (name) WHERE deleted IS NULL;"
	"CREATE TABLE apikeys ("
	" id uuid PRIMARY KEY,"
	" tenant_id uuid REFERENCES tenants (id),"
	" role text NOT NULL CHECK (role IN ('tenant', 'auditor')),"
	" key_hash bytea NOT NULL UNIQUE,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" revoked timestamptz,"
	" announced boolean NOT NULL DEFAULT true,"
	" CHECK ((role = 'tenant') = (tenant_id IS NOT NULL)));"
	"CREATE INDEX apikeys_tenant ON apikeys (tenant_id) WHERE revoked IS NULL;"
	"INSERT INTO tenants (id, name, created, announced)"
	" SELECT gen_random_uuid(), CASE WHEN name = 'default' THEN 'default-v1' ELSE name END,"
	"  created, false FROM tenants_v1;"
	"CREATE TEMP TABLE tenant_map ON COMMIT DROP AS"
	" SELECT v.name AS old, t.id FROM tenants_v1 v JOIN tenants t"
	"  ON t.name = CASE WHEN v.name = 'default' THEN 'default-v1' ELSE v.name END;"
	"INSERT INTO apikeys (id, tenant_id, role, key_hash, created, announced)"
	" SELECT gen_random_uuid(), m.id, 'tenant', v.key_hash, v.created, false"
	" FROM tenants_v1 v JOIN tenant_map m ON m.old = v.name;"
	"UPDATE workflows w SET tenant = m.id::text FROM tenant_map m"
	" WHERE w.tenant = m.old AND m.old <> 'default';"
	"UPDATE runs r SET tenant = m.id::text FROM tenant_map m"
	" WHERE r.tenant = m.old AND m.old <> 'default';"
	"DROP TABLE tenants_v1;"
	/* mark a live tenant deleted and revoke its keys, expecting p_keys of
	 * them: SWGON when it is not live, SWREV when its keys changed */
	"CREATE FUNCTION tenant_delete(p_id uuid, p_keys int) RETURNS void LANGUAGE plpgsql AS $$"
	" DECLARE n int;"
	" BEGIN"
	"  UPDATE tenants SET deleted = now() WHERE id = p_id AND deleted IS NULL;"
	"  IF NOT FOUND THEN"
	"   RAISE EXCEPTION 'tenant % is not live', p_id USING ERRCODE = 'SWGON';"
	"  END IF;"
	"  UPDATE apikeys SET revoked = now() WHERE tenant_id = p_id AND revoked IS NULL;"
	"  GET DIAGNOSTICS n = ROW_COUNT;"
	"  IF n <> p_keys THEN"
	"   RAISE EXCEPTION 'keys of tenant % changed concurrently', p_id USING ERRCODE = 'SWREV';"
	"  END IF;"
	" END $$;";

/*
 * Migration 3: users, the submitting user of a run, and pinned identities.
 * A user is an immutable id (UUIDv7) and a name unique among the live
 * users of its tenant; a key may belong to one (apikeys.user_name, "" for
 * a tenant-wide key). apikeys.tenant_id becomes text, as runs.tenant and
 * workflows.tenant are, so that single_org mode's tenant "default" (no
 * row in tenants) can have keys too. runs.user_name is the submitting
 * user; steps.identity the keys sagewai-identity resolved for an
 * identity-bearing step at submit (JSON text, sent in every dispatch).
 *
 * The guards (each raises a code of its own, read by the API):
 *   tenant_live(t)          SWGON unless t is "default" or a live tenant,
 *                           which stays live until commit (FOR SHARE)
 *   key_guard(t, u, max)    tenant_live; SWNOU unless u is "" or a live
 *                           user of t (locked likewise); SWMAX when t has
 *                           max live keys already
 *   user_delete(t, u, n)    mark the live user u of t deleted and revoke
 *                           its keys, expecting n: SWGON, SWREV
 *   tenant_delete(id, n)    as in migration 2, and its users deleted
 */
static const char *const migration_3 =
	"ALTER TABLE apikeys DROP CONSTRAINT apikeys_tenant_id_fkey;"
	"ALTER TABLE apikeys ALTER COLUMN tenant_id TYPE text USING tenant_id::text;"
	"ALTER TABLE apikeys ADD COLUMN user_name text NOT NULL DEFAULT '';"
	"CREATE TABLE users ("
	" id uuid PRIMARY KEY,"
	" tenant_id text NOT NULL,"
	" name text NOT NULL,"
	" created timestamptz NOT NULL DEFAULT now(),"
	" deleted timestamptz);"
	"CREATE UNIQUE INDEX users_live_name ON users (tenant_id, name) WHERE deleted IS NULL;"
	"ALTER TABLE runs ADD COLUMN user_name text NOT NULL DEFAULT '';"
	"ALTER TABLE steps ADD COLUMN identity text;"
	"CREATE FUNCTION tenant_live(p_tenant text) RETURNS void LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  IF p_tenant = 'default' THEN RETURN; END IF;"
	"  PERFORM 1 FROM tenants WHERE id = p_tenant::uuid AND deleted IS NULL FOR SHARE;"
	"  IF NOT FOUND THEN"
	"   RAISE EXCEPTION 'tenant % is not live', p_tenant USING ERRCODE = 'SWGON';"
	"  END IF;"
	" END $$;"
	"CREATE FUNCTION key_guard(p_tenant text, p_user text, p_max int) RETURNS void"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  PERFORM tenant_live(p_tenant);"
	"  IF p_user <> '' THEN"
	"   PERFORM 1 FROM users WHERE tenant_id = p_tenant AND name = p_user"
	"    AND deleted IS NULL FOR SHARE;"
	"   IF NOT FOUND THEN"
	"    RAISE EXCEPTION 'no live user %', p_user USING ERRCODE = 'SWNOU';"
	"   END IF;"
	"  END IF;"
	"  IF (SELECT count(*) FROM apikeys WHERE tenant_id = p_tenant AND revoked IS NULL)"
	"     >= p_max THEN"
	"   RAISE EXCEPTION 'tenant % has % live keys', p_tenant, p_max USING ERRCODE = 'SWMAX';"
	"  END IF;"
	" END $$;"
	"CREATE FUNCTION user_delete(p_tenant text, p_user text, p_keys int) RETURNS void"
	" LANGUAGE plpgsql AS $$"
	" DECLARE n int;"
	" BEGIN"
	"  UPDATE users SET deleted = now()"
	"   WHERE tenant_id = p_tenant AND name = p_user AND deleted IS NULL;"
	"  IF NOT FOUND THEN"
	"   RAISE EXCEPTION 'user % is not live', p_user USING ERRCODE = 'SWGON';"
	"  END IF;"
	"  UPDATE apikeys SET revoked = now()"
	"   WHERE tenant_id = p_tenant AND user_name = p_user AND revoked IS NULL;"
	"  GET DIAGNOSTICS n = ROW_COUNT;"
	"  IF n <> p_keys THEN"
	"   RAISE EXCEPTION 'keys of user % changed concurrently', p_user USING ERRCODE = 'SWREV';"
	"  END IF;"
	" END $$;"
	"CREATE OR REPLACE FUNCTION tenant_delete(p_id uuid, p_keys int) RETURNS void"
	" LANGUAGE plpgsql AS $$"
	" DECLARE n int;"
	" BEGIN"
	"  UPDATE tenants SET deleted = now() WHERE id = p_id AND deleted IS NULL;"
	"  IF NOT FOUND THEN"
	"   RAISE EXCEPTION 'tenant % is not live', p_id USING ERRCODE = 'SWGON';"
	"  END IF;"
	"  UPDATE apikeys SET revoked = now() WHERE tenant_id = p_id::text AND revoked IS NULL;"
	"  GET DIAGNOSTICS n = ROW_COUNT;"
	"  IF n <> p_keys THEN"
	"   RAISE EXCEPTION 'keys of tenant % changed concurrently', p_id USING ERRCODE = 'SWREV';"
	"  END IF;"
	"  UPDATE users SET deleted = now() WHERE tenant_id = p_id::text AND deleted IS NULL;"
	" END $$;"
	"CREATE OR REPLACE FUNCTION run_json(r runs) RETURNS json LANGUAGE sql STABLE AS $$"
	" SELECT json_build_object('run_id', r.id, 'workflow', r.workflow,"
	"  'version', r.version, 'state', r.state, 'user', r.user_name, 'input', r.input,"
	"  'output', r.output, 'error', r.error, 'created', ts(r.created),"
	"  'started', ts(r.started), 'finished', ts(r.finished),"
	"  'steps', (SELECT coalesce(json_agg(json_build_object("
	"   'name', s.name, 'index', s.idx, 'mode', s.mode, 'state', s.state,"
	"   'attempts', s.attempt, 'output', s.output, 'error', s.error,"
	"   'started', ts(s.started), 'finished', ts(s.finished)) ORDER BY s.idx), '[]')"
	"   FROM steps s WHERE s.run_id = r.id)) $$;";

/*
 * Migration 4: re-runs (sagewai replay run). runs.replay_of is the run a
 * re-run re-runs (NULL for any other run); steps.replay what the re-run was
 * given for that step from the original's audit trail (JSON text: the
 * recorded request and answer of an in_process llm or http step, the pinned
 * identity, the credential decisions), put into each of its dispatches'
 * spec.replay. run_json shows replay_of.
 */
static const char *const migration_4 =
	"ALTER TABLE runs ADD COLUMN replay_of uuid;"
	"ALTER TABLE steps ADD COLUMN replay text;"
	"CREATE OR REPLACE FUNCTION run_json(r runs) RETURNS json LANGUAGE sql STABLE AS $$"
	" SELECT json_build_object('run_id', r.id, 'workflow', r.workflow,"
	"  'version', r.version, 'state', r.state, 'user', r.user_name, 'input', r.input,"
	"  'output', r.output, 'error', r.error, 'created', ts(r.created),"
	"  'started', ts(r.started), 'finished', ts(r.finished), 'replay_of', r.replay_of,"
	"  'steps', (SELECT coalesce(json_agg(json_build_object("
	"   'name', s.name, 'index', s.idx, 'mode', s.mode, 'state', s.state,"
	"   'attempts', s.attempt, 'output', s.output, 'error', s.error,"
	"   'started', ts(s.started), 'finished', ts(s.finished)) ORDER BY s.idx), '[]')"
	"   FROM steps s WHERE s.run_id = r.id)) $$;";

/* A run as the API shows it: run_json(r)::text of migration 4, spelled
 * out. A SQL function with a sub-select is not inlined, so the server
 * would parse and plan its body at every call; this text is prepared once
 * per connection instead. $1 run id, $2 tenant.
 *
 * The run is found by its primary key alone, in a fenced sub-query, and its
 * tenant checked after. With "id = $1 AND tenant = $2" side by side, the
 * generic plan a connection caches after five calls was made while runs
 * had no statistics yet (the first minute of a new database), and it chose
 * runs_tenant_created, filtering id: every call read all of the tenant's
 * runs, 1.9 ms instead of 0.1 at 6,000 runs, and growing with them
 * (docs/BENCHMARKS.md, "A cached plan that read every run"). */
#define RUN_JSON                                                                                  \
	"json_build_object('run_id', r.id, 'workflow', r.workflow,"                               \
	" 'version', r.version, 'state', r.state, 'user', r.user_name, 'input', r.input,"         \
	" 'output', r.output, 'error', r.error, 'created', ts(r.created),"                        \
	" 'started', ts(r.started), 'finished', ts(r.finished), 'replay_of', r.replay_of,"        \
	" 'steps', (SELECT coalesce(json_agg(json_build_object("                                  \
	"  'name', s.name, 'index', s.idx, 'mode', s.mode, 'state', s.state,"                     \
	"  'attempts', s.attempt, 'output', s.output, 'error', s.error,"                          \
	"  'started', ts(s.started), 'finished', ts(s.finished)) ORDER BY s.idx), '[]')"          \
	"  FROM steps s WHERE s.run_id = r.id))::text"

const char *const sched_run_json_sql =
    "WITH r AS MATERIALIZED (SELECT * FROM runs WHERE id = $1::uuid)"
    " SELECT " RUN_JSON " FROM r WHERE r.tenant = $2";

/* The same for many runs in one statement: $1 the run ids, $2 their
 * tenants (arrays of equal length); one row a run, in the arrays' order,
 * NULL for a run not found or of another tenant. Each run is found by its
 * primary key alone and its tenant compared after, as above. */
const char *const sched_runs_json_sql =
    "SELECT (SELECT CASE WHEN r.tenant = u.tenant THEN " RUN_JSON " END"
    "  FROM runs r WHERE r.id = u.id)"
    " FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS u (id, tenant, i)"
    " ORDER BY u.i";

/*
 * Migration 5: the submit's guard. A submit may skip two reads before its
 * transaction (docs/RUNS.md, "The submit's one round trip"): which version
 * of the workflow is the latest (this scheduler's hint), and the input check
 * (identity.input_matches). Its transaction then starts with this, which
 * checks both where the run is stored and fails it, storing nothing, with a
 * code the scheduler takes the old way on: SWVER, a later version than
 * p_version exists (NULL: not checked); SWINP, a string of the input is the
 * value of an active secret (identity refuses it, as before); SWIDF, the
 * check itself failed (no grant, identity not migrated). p_macs NULL: not
 * checked.
 */
static const char *const migration_5 =
    "CREATE FUNCTION submit_guard(p_tenant text, p_name text, p_version int,"
    " p_macs text[]) RETURNS void LANGUAGE plpgsql AS $$"
    " DECLARE m boolean;"
    " BEGIN"
    "  IF p_version IS NOT NULL AND EXISTS (SELECT 1 FROM workflows w"
    "   WHERE w.tenant = p_tenant AND w.name = p_name AND w.version > p_version) THEN"
    "   RAISE EXCEPTION 'a later version of workflow % than % exists', p_name, p_version"
    "    USING ERRCODE = 'SWVER';"
    "  END IF;"
    "  IF p_macs IS NULL THEN"
    "   RETURN;"
    "  END IF;"
    "  BEGIN"
    "   m := identity.input_matches(p_tenant, p_macs);"
    "  EXCEPTION WHEN OTHERS THEN"
    "   RAISE EXCEPTION 'identity.input_matches: %', SQLERRM USING ERRCODE = 'SWIDF';"
    "  END;"
    "  IF m IS DISTINCT FROM false THEN"
    "   RAISE EXCEPTION 'the input holds a value for the identity service to judge'"
    "    USING ERRCODE = 'SWINP';"
    "  END IF;"
    " END $$;";

/*
 * Migration 6: the timers' scan of runs past SAGEWAI_RUN_MAX reads the
 * oldest running runs first and stops at the first young one. On the index
 * of the state alone it read every running run to sort them: at 1,024 in
 * flight, 4 ms of PostgreSQL's time a scan, every tick.
 */
static const char *const migration_6 =
    "CREATE INDEX runs_running_created ON runs (created) WHERE state = 'running';"
    "DROP INDEX runs_running;";

/*
 * Migration 7: the revision guard of a group commit's transitions in one
 * statement (ops.c, "Group commit"): every run's rev moves by one only if
 * each is still the rev its transition was decided on; otherwise SWREV
 * fails the group, as bump_rev fails one transition.
 */
static const char *const migration_7 =
    "CREATE FUNCTION bump_revs(p_ids uuid[], p_revs bigint[]) RETURNS void"
    " LANGUAGE plpgsql AS $$"
    " DECLARE n bigint;"
    " BEGIN"
    "  UPDATE runs r SET rev = r.rev + 1 FROM unnest(p_ids, p_revs) AS u(id, rev)"
    "   WHERE r.id = u.id AND r.rev = u.rev;"
    "  GET DIAGNOSTICS n = ROW_COUNT;"
    "  IF n <> cardinality(p_ids) THEN"
    "   RAISE EXCEPTION '% of % runs changed concurrently', cardinality(p_ids) - n,"
    "    cardinality(p_ids) USING ERRCODE = 'SWREV';"
    "  END IF;"
    " END $$;";

/*
 * Migration 8: room on each page of runs for its row's next version. Every
 * transition moves a run's rev (bump_revs), a column no index holds, so
 * the new version can stay on its page without an entry in each of the
 * table's indexes (a HOT update) when the page has room. Packed full, 44 %
 * of them found none under load (pg_stat_user_tables, 3-step runs at 128
 * in flight) and each wrote a new entry in all three indexes. Pages filled
 * before this keep their fill until rewritten.
 */
static const char *const migration_8 = "ALTER TABLE runs SET (fillfactor = 80);";

/*
 * Migration 9: bump_revs finds its runs by primary key, whatever the size
 * of runs. PL/pgSQL caches a statement's plan per connection; after five
 * calls it keeps a generic one, made for arrays of a guessed length and
 * runs as large as it was then. Made in a new database's first minute
 * (before autovacuum's first ANALYZE) that was a hash join over a scan of
 * all of runs, kept while runs grew, at every group commit. With the
 * group's other batches alike, the scheduler's backends spent 1.09-1.24
 * ms of CPU a 3-step run at 128 in flight, against 0.58-0.63 with plans by
 * primary key (bench/steps/cpu, docs/BENCHMARKS.md). So it plans at every
 * call, for the arrays given; and by nested loops only: planned afresh
 * on a table of a few thousand rows without statistics, a hash join over
 * a scan of it still looked cheaper than as many lookups by key as the
 * arrays hold, and took 2-6 ms a statement. The other batches alike
 * (sched_key_plans_sql below; migration 10 made both plan once).
 */
static const char *const migration_9 =
    "ALTER FUNCTION bump_revs(uuid[], bigint[]) SET plan_cache_mode = force_custom_plan"
    " SET enable_hashjoin = off SET enable_mergejoin = off;";

/*
 * Migration 10: bump_revs plans its UPDATE once a connection, by primary
 * key. Planned at every call (migration 9) it cost 15 us of a 3-step run
 * at 128 in flight (pg_stat_statements' plan time, as each of the other
 * batches did). A generic plan with sequential scans off as well as hash
 * and merge joins is the lookups by key whatever the tables held when it
 * was made (schema.c, sched_key_plans_sql, for the other batches).
 */
static const char *const migration_10 =
    "ALTER FUNCTION bump_revs(uuid[], bigint[]) SET plan_cache_mode = force_generic_plan"
    " SET enable_seqscan = off;";

const struct sw_migration sched_migrations[] = {
    {1, migration_1}, {2, migration_2}, {3, migration_3}, {4, migration_4}, {5, migration_5},
    {6, migration_6}, {7, migration_7}, {8, migration_8}, {9, migration_9}, {10, migration_10},
};
const size_t sched_nmigrations = sizeof(sched_migrations) / sizeof(sched_migrations[0]);

/*
 * The statements of many transitions that a group sends once, each row's
 * parameters as arrays: the revision guards (one statement that fails the
 * group as one bump_rev fails its transition), the steps that succeeded,
 * the dispatches and the runs that ended. A statement costs PostgreSQL
 * about as much to start as to update its one row, so under load a group
 * of 64 transitions sends a few statements instead of some 200.
 *
 * Each is prepared once a connection, with one generic plan, made with
 * hash and merge joins and sequential scans off (sched_key_plans_sql,
 * sent before them in the group's transaction; migrations 9 and 10 for
 * bump_revs): a nested loop over the arrays and a lookup by primary key a
 * row, at any size of the tables. Left to itself the planner chose
 * otherwise twice: a generic plan made in a new database's first minute,
 * before statistics, joined the arrays to a scan of the whole table and
 * was kept while the table grew; and a fresh plan on a table of a few
 * thousand rows without statistics still preferred the scan to as many
 * lookups by key as the arrays hold (2-6 ms a statement). Planned at
 * each use for the rows given instead, the four cost 55 us of planning a
 * 3-step run at 128 in flight (pg_stat_statements), some 10 % of the
 * scheduler's backends.
 *
 * The run read (sched_run_json_sql) is planned so too, in the group that
 * ends a run and alone (sched_run_read): left to choose, a connection
 * compares the generic plan's cost with the average of the custom plans it
 * made so far, some made when the tables were small and cheap; on about
 * half of the connections of one stack the generic plan lost and the read
 * was planned at every call (0.14 ms of a 3-step run at 128 in flight,
 * pg_stat_statements), on the other half never.
 */
const char *const sched_key_plans_sql =
    "SELECT set_config('enable_hashjoin', 'off', true),"
    " set_config('enable_mergejoin', 'off', true),"
    " set_config('enable_seqscan', 'off', true),"
    " set_config('plan_cache_mode', 'force_generic_plan', true)";

int sched_run_read(struct sched_env *env, const char *const params[2], sw_store_cb cb,
		   void *opaque)
{
	struct sw_store_stmt st[2] = {{0}};

	st[0].sql = sched_key_plans_sql;
	st[1].sql = sched_run_json_sql;
	st[1].nparams = 2;
	st[1].params = params;
	return sw_store_tx(env->store, st, 2, cb, opaque);
}

const struct sched_batch_stmt sched_batch_stmts[SCHED_B_N] = {
    [SCHED_B_REV] = {"SELECT bump_revs($1::uuid[], $2::bigint[])", 2},
    [SCHED_B_STEP_OK] = {"UPDATE steps s SET state = 'succeeded', output = u.o, error = NULL,"
			 " finished = now(), deadline = NULL"
			 " FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS u(r, i, o)"
			 " WHERE s.run_id = u.r AND s.idx = u.i",
			 3},
    [SCHED_B_DISPATCH] =
	{"UPDATE steps s SET state = 'dispatched', attempt = u.a,"
	 " started = coalesce(s.started, now()),"
	 " deadline = CASE WHEN u.t > 0"
	 "  THEN now() + u.t * interval '1 millisecond' END,"
	 " next_attempt = NULL, error = NULL, output = NULL,"
	 " dispatch_event_id = u.e"
	 " FROM unnest($1::uuid[], $2::int[], $3::int[], $4::bigint[], $5::uuid[])"
	 "  AS u(r, i, a, t, e)"
	 " WHERE s.run_id = u.r AND s.idx = u.i",
	 5},
    [SCHED_B_RUN_END] = {"UPDATE runs r SET state = u.s, output = u.o, error = u.e,"
			 " finished = now()"
			 " FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[])"
			 "  AS u(id, s, o, e)"
			 " WHERE r.id = u.id",
			 4},
};
