-- PostgreSQL roles and schemas for a production deployment of Sagewai.
--
--   psql "ADMIN_DSN dbname=sagewai" -v ON_ERROR_STOP=1 -f infra/postgres/roles.sql
--
-- Run as a superuser (or a role with CREATEROLE that owns the database), in
-- the database the services use. Idempotent: a second run puts back any
-- attribute or grant that drifted. Then give each role its password
-- interactively (never on a command line or in a file others read):
--
--   \password sagewai_scheduler      (and each other role)
--
-- and hand each service its own password in a libpq passfile (mode 0600,
-- a systemd credential or a Kubernetes secret): SAGEWAI_PG_DSN=... passfile=...
--
-- Each service gets one login role that owns only its own schema: no
-- superuser, createdb, createrole, replication or bypassrls, member of no
-- role (so not pg_execute_server_program: no COPY ... FROM PROGRAM), and the
-- public schema is closed to everyone. The services create their tables in
-- their schema at start (migrations), so nothing else is granted but the
-- one below (the scheduler's input check through identity's function).
-- Same model as the test harness (tools/lib/pg.sh).

\set ON_ERROR_STOP 1

CREATE OR REPLACE FUNCTION pg_temp.sagewai_role(svc text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	r text := 'sagewai_' || svc;
	g record;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
		EXECUTE format('CREATE ROLE %I', r);
	END IF;
	EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
		       'NOREPLICATION NOBYPASSRLS NOINHERIT', r);
	FOR g IN SELECT gr.rolname FROM pg_auth_members m
		   JOIN pg_roles gr ON gr.oid = m.roleid
		   JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = r LOOP
		EXECUTE format('REVOKE %I FROM %I', g.rolname, r);
	END LOOP;
	IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = svc) THEN
		EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', svc, r);
	END IF;
	EXECUTE format('ALTER SCHEMA %I OWNER TO %I', svc, r);
	EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc);
END
$$;

REVOKE ALL ON SCHEMA public FROM PUBLIC;
SELECT pg_temp.sagewai_role(s)
  FROM unnest(ARRAY['scheduler', 'worker', 'sandboxd', 'audit', 'identity', 'policy']) AS s;

-- One way across, and only one: the scheduler checks each run's input
-- against the secrets' MACs through identity.input_matches (a SECURITY
-- DEFINER function answering one boolean; docs/IDENTITY.md "The input
-- check"). USAGE on the schema lets it call that function; it grants no
-- table, and identity revokes EXECUTE on its other functions from PUBLIC.
-- Without this grant the scheduler asks identity over Kafka instead.
GRANT USAGE ON SCHEMA identity TO sagewai_scheduler;
