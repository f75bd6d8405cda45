#!/usr/bin/env bash
# Attacks from the host the stack runs on (what a sandboxed step with the
# host's network, or another local user, could try): PostgreSQL without a
# password, one service's role reading or writing another service's
# schema, COPY ... FROM PROGRAM as a service's role (a shell as postgres),
# and secrets read from the environments of the stack's processes
# (/proc/PID/environ).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start multi_tenant
sock=$SW_HARNESS_DIR/pgsock
key=$(cat "$work/llm.key")
[ ${#key} -ge 20 ] || attack_fail "no LLM key in $work/llm.key"
svcs="scheduler worker sandboxd audit"
for s in $svcs; do [ -s "$work/$s.dsn" ] || attack_fail "no DSN for $s"; done
# the schemas exist with tables in them (the services migrated at start)
n=$(psql "$SAGEWAI_PG_DSN" -XAtc "SELECT count(*) FROM pg_tables WHERE schemaname IN ('scheduler', 'worker', 'audit')") ||
	attack_fail "admin query"
[ "$n" -gt 0 ] || attack_fail "no service tables"

no_password() {
	local u
	for u in postgres sagewai_scheduler sagewai_worker sagewai_sandboxd sagewai_audit; do
		refused "host=$sock port=5432 user=$u dbname=postgres passfile=/dev/null" "SELECT 1" \
			'no password supplied|password authentication failed' || return 1
	done
	# and the cluster has no TCP listener at all
	refused "host=127.0.0.1 port=5432 user=postgres dbname=postgres passfile=/dev/null connect_timeout=3" \
		"SELECT 1" 'Connection refused'
}

cross_schema() {
	local me other
	for me in $svcs; do
		for other in scheduler worker audit; do
			[ "$me" = "$other" ] && continue
			refused "$(cat "$work/$me.dsn")" \
				"SELECT count(*) FROM (SELECT 1 FROM \"$other\".schema_migrations) t" \
				'permission denied for schema' || return 1
			refused "$(cat "$work/$me.dsn")" "CREATE TABLE \"$other\".evil (x int)" \
				'permission denied for schema' || return 1
			refused "$(cat "$work/$me.dsn")" "SET ROLE sagewai_$other" \
				'permission denied' || return 1
		done
		refused "$(cat "$work/$me.dsn")" "CREATE TABLE public.evil (x int)" \
			'permission denied for schema' || return 1
	done
}

copy_program() {
	local me
	for me in $svcs; do
		refused "$(cat "$work/$me.dsn")" \
			"CREATE TEMP TABLE t (x text); COPY t FROM PROGRAM 'id'" \
			'pg_execute_server_program' || return 1
		refused "$(cat "$work/$me.dsn")" "COPY (SELECT 1) TO PROGRAM 'id'" \
			'pg_execute_server_program' || return 1
		refused "$(cat "$work/$me.dsn")" "SELECT pg_read_file('/etc/passwd')" \
			'permission denied' || return 1
		refused "$(cat "$work/$me.dsn")" "CREATE ROLE evil SUPERUSER" \
			'permission denied|must be superuser' || return 1
	done
	# and none of the roles may: superuser, or a member of anything
	bad=$(psql "$SAGEWAI_PG_DSN" -XAtc "SELECT r.rolname FROM pg_roles r
		WHERE r.rolname LIKE 'sagewai\\_%' AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb
		OR r.rolbypassrls OR r.rolreplication
		OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid))")
	[ -z "$bad" ] || { echo "privileged roles: $bad" >&2; return 1; }
}

# the LLM key in the environment of any process on this host; the admin
# token and the database passwords in any of the stack's processes
environ_key() {
	local f pid hits=
	for f in /proc/[0-9]*/environ; do
		grep -qaF -- "$key" "$f" 2>/dev/null && hits="$hits ${f#/proc/}"
	done
	[ -z "$hits" ] || { echo "the LLM key is in the environment of:$hits" >&2; return 1; }
	# the scan can find what is there: this subshell's own environment
	SW_PROBE=$key bash -c 'grep -qaF -- "$SW_PROBE" /proc/$$/environ' ||
		{ echo "the scan does not work" >&2; return 1; }
	local -a secrets=("$ATTACK_ADMIN")
	for f in "$SW_HARNESS_DIR"/secrets/*.pgpass; do secrets+=("$(sed -n '1s/.*://p' "$f")"); done
	for name in scheduler worker sandboxd audit llm-mock; do
		pid=$(cat "$work/$name.pid")
		for p in $pid $(pgrep -P "$pid" || true); do
			for s in "${secrets[@]}"; do
				if grep -qaF -- "$s" "/proc/$p/environ" 2>/dev/null; then
					echo "$name (pid $p) holds a secret in its environment" >&2
					return 1
				fi
			done
		done
	done
}

attempt pg-no-password "connect to PostgreSQL without a password, as any role, by socket or TCP" \
	no_password
attempt pg-cross-schema "as one service's role, read, write or become another service's schema" \
	cross_schema
attempt pg-copy-program "COPY ... FROM PROGRAM 'id', pg_read_file, CREATE ROLE as a service's role" \
	copy_program
attempt environ-secrets "read the LLM key, admin token or a database password from /proc/*/environ" \
	environ_key
attack_done
