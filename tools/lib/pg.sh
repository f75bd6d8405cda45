# Private PostgreSQL clusters for the demo and the test harness (sourced).
# A cluster lives in DIR/pg and listens only on a Unix socket in the private
# directory DIR/pgsock (listen_addresses=''): no TCP port, so nothing to pick
# or collide on (PostgreSQL cannot bind port 0 and report it). The socket's
# name still carries a port number, always 5432, private to the directory.
# As root the server runs as the postgres user (initdb refuses root).
#
# Every connection, local ones included, authenticates with scram-sha-256
# (pg_hba.conf holds nothing else): a process that reaches the socket (a
# sandboxed step with the host's network, another user) still needs a
# password. The passwords live in libpq passfiles of mode 0600 under
# DIR/secrets (mode 0711: no listing), named in the DSNs (passfile=...), so
# that no password is ever in a process's environment or command line:
#
#   DIR/secrets/pg-admin.pgpass   the superuser's (postgres), generated at
#                                 initdb; for the setup scripts and the
#                                 tests' own checks, never for a service
#   DIR/secrets/SVC.pgpass        the role sagewai_SVC of each service
#                                 (sw_pg_services), owned by the user the
#                                 service's database client runs as
#
# Each service gets its own login role (sw_pg_roles): no superuser,
# createrole, createdb, replication or bypassrls, member of no role (so not
# of pg_execute_server_program: no COPY ... FROM PROGRAM), owning only its
# own schema (sw_pg_schemas), which no other role may use; the public
# schema is closed to all. Services apply their migrations in their schema
# at start (libs/store sees the schema exists and creates only tables).
#
#   sw_pg_init DIR              create the cluster (scram, admin password)
#   sw_pg_start DIR | sw_pg_stop DIR [fast|immediate]
#   sw_pg_dsn DIR [DB]          the admin DSN (passfile=DIR/secrets/pg-admin.pgpass)
#   sw_pg_roles ADMIN_DSN SECRETS [PREFIX]
#                               the services' roles (PREFIXSVC, default
#                               sagewai_), their passfiles SECRETS/SVC.pgpass
#   sw_pg_schemas ADMIN_DSN [PREFIX]
#                               in the database ADMIN_DSN names: each
#                               service's schema owned by its role
#   sw_pg_svc_dsn DIR SVC [DB]  the DSN service SVC connects with

sw_pgbin=${SW_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

# The services with a role and a schema of their own (identity's schema is
# "identity").
sw_pg_services="scheduler worker sandboxd audit identity policy"

# A clean environment for the server and its tools: the caller's (an LLM
# key, tokens) must not reach postgres, whose children inherit it.
sw_pg_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8)

sw_as_pg() {
	if [ "$(id -u)" = 0 ]; then
		"${sw_pg_env[@]}" runuser -u postgres -- "$@"
	else
		"${sw_pg_env[@]}" "$@"
	fi
}

sw_pg_port=5432 # in the socket's name only

# sw_pg_secret: 32 random bytes in hex (no ':' or '\' for a passfile)
sw_pg_secret() {
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# sw_pg_passfile FILE USER PASSWORD [OWNER]: a libpq passfile, mode 0600
# from its creation on, owned by OWNER (when root)
sw_pg_passfile() {
	local f=$1
	(
		umask 077
		rm -f "$f.tmp"
		printf '*:*:*:%s:%s\n' "$2" "$3" >"$f.tmp"
	)
	[ -z "${4:-}" ] || [ "$(id -u)" != 0 ] || chown "$4" "$f.tmp"
	mv -f "$f.tmp" "$f"
}

# sw_pg_passfile_password FILE: the password of its first line
sw_pg_passfile_password() {
	sed -n '1s/^[^:]*:[^:]*:[^:]*:[^:]*://p' "$1" 2>/dev/null
}

# sw_pg_init DIR: create the cluster
sw_pg_init() {
	local dir=$1 pw
	mkdir -p "$dir/pg" "$dir/pgsock" "$dir/secrets"
	chmod 755 "$dir"
	chmod 711 "$dir/secrets"
	pw=$(sw_pg_secret)
	sw_pg_passfile "$dir/secrets/pg-admin.pgpass" postgres "$pw"
	# initdb reads the password from a file of its own user: one that
	# lives as long as initdb runs
	(umask 077 && printf '%s\n' "$pw" >"$dir/pg-init.pw")
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$dir/pg" "$dir/pgsock" "$dir/pg-init.pw"
		touch "$dir/pg.log" && chown postgres "$dir/pg.log"
	fi
	if ! sw_as_pg "$sw_pgbin/initdb" -D "$dir/pg" --auth=scram-sha-256 -U postgres \
		--pwfile="$dir/pg-init.pw" -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
		rm -f "$dir/pg-init.pw"
		cat "$dir/initdb.log" >&2
		return 1
	fi
	rm -f "$dir/pg-init.pw"
	cat >>"$dir/pg/postgresql.conf" <<-EOF2
		max_connections = 200
		shared_buffers = 128MB
		log_min_messages = warning
		password_encryption = scram-sha-256
	EOF2
	# SW_PG_EXTRA_CONF: more lines for a profile (e.g.
	# "shared_preload_libraries = 'pg_stat_statements'")
	[ -z "${SW_PG_EXTRA_CONF:-}" ] || printf '%s\n' "$SW_PG_EXTRA_CONF" >>"$dir/pg/postgresql.conf"
	# the socket only, scram only: no trust, no peer, no TCP lines
	cat >"$dir/pg/pg_hba.conf" <<-EOF2
		# TYPE  DATABASE  USER  METHOD  (written by tools/lib/pg.sh)
		local   all       all   scram-sha-256
	EOF2
}

sw_pg_start() {
	local dir=$1
	sw_as_pg "$sw_pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
		-o "-p $sw_pg_port -k $dir/pgsock -c listen_addresses=''" \
		start >/dev/null
}

# sw_pg_stop DIR [fast|immediate]
sw_pg_stop() {
	local dir=$1 mode=${2:-fast}
	[ -d "$dir/pg" ] || return 0
	sw_as_pg "$sw_pgbin/pg_ctl" -D "$dir/pg" -m "$mode" -w -t 60 stop >/dev/null 2>&1 || true
}

# sw_pg_dsn DIR [DB]: the superuser's DSN (the setup scripts', the tests')
sw_pg_dsn() {
	echo "host=$1/pgsock port=$sw_pg_port user=postgres dbname=${2:-postgres}" \
		"passfile=$1/secrets/pg-admin.pgpass"
}

# sw_pg_svc_dsn DIR SVC [DB]: the DSN of service SVC on the private cluster
sw_pg_svc_dsn() {
	echo "host=$1/pgsock port=$sw_pg_port user=sagewai_$2 dbname=${3:-postgres}" \
		"passfile=$1/secrets/$2.pgpass"
}

# sw_pg_owner SVC: who the service's database client runs as (chown form),
# empty for the caller. sagewai-sandboxd started as root speaks PostgreSQL
# from its unprivileged part (SAGEWAI_SANDBOXD_USER, default 65533:65533).
sw_pg_owner() {
	[ "$(id -u)" = 0 ] || return 0
	case "$1" in
	sandboxd | sandboxd-[2-9]) echo "${SW_SANDBOXD_USER:-65533:65533}" ;;
	esac
}

# sw_pg_psql DSN: psql reading SQL from stdin (passwords stay off command
# lines), stopping at the first error. A client of the setup scripts: it
# keeps the caller's environment (an external cluster's PG* settings).
sw_pg_psql() {
	psql "$1" -X -q -At -v ON_ERROR_STOP=1 -f -
}

# sw_pg_roles ADMIN_DSN SECRETS [PREFIX]: create or update the login role
# PREFIX<svc> of every service with the password of SECRETS/<svc>.pgpass
# (generated when the file is missing). Idempotent: a later start keeps
# the passwords and puts back any attribute or membership that drifted.
sw_pg_roles() {
	local dsn=$1 secrets=$2 prefix=${3:-sagewai_} svc role pw
	mkdir -p "$secrets"
	chmod 711 "$secrets"
	for svc in $sw_pg_services; do
		role=$prefix$svc
		pw=$(sw_pg_passfile_password "$secrets/$svc.pgpass")
		[ -n "$pw" ] || pw=$(sw_pg_secret)
		sw_pg_passfile "$secrets/$svc.pgpass" "$role" "$pw" "$(sw_pg_owner "$svc")"
		# the password on stdin, never on a command line
		sw_pg_psql "$dsn" <<-EOF || return 1
			\set role '$role'
			\set pw '$pw'
			SELECT format('CREATE ROLE %I', :'role')
			 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
			ALTER ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
			 NOBYPASSRLS NOINHERIT PASSWORD :'pw';
			SELECT format('REVOKE %I FROM %I', g.rolname, :'role')
			  FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
			  JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = :'role' \gexec
		EOF
	done
}

# sw_pg_schemas ADMIN_DSN [PREFIX]: in the database of ADMIN_DSN, close the
# public schema and give each service's role its own schema (and whatever
# is in it, as an older stack run as the superuser left it); the scheduler
# may use identity's schema (its input_matches function, nothing else)
sw_pg_schemas() {
	local dsn=$1 prefix=${2:-sagewai_} svc
	{
		echo "REVOKE ALL ON SCHEMA public FROM PUBLIC;"
		for svc in $sw_pg_services; do
			cat <<-EOF
				\set role '$prefix$svc'
				\set schema '$svc'
				SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', :'schema', :'role')
				 WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :'schema') \gexec
				ALTER SCHEMA :"schema" OWNER TO :"role";
				REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
				SELECT format('ALTER %s %I.%I OWNER TO %I',
				              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
				              n.nspname, c.relname, :'role')
				  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				 WHERE n.nspname = :'schema' AND c.relkind IN ('r', 'p', 'S')
				   AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = :'role')
				   -- a serial's sequence follows its table
				   AND NOT EXISTS (SELECT 1 FROM pg_depend d
				                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
				                      AND d.deptype IN ('a', 'i')) \gexec
			EOF
		done
		# one way across: the scheduler checks a run's input against the
		# secrets' MACs through identity.input_matches (SECURITY DEFINER,
		# a boolean); USAGE lets it call that function and read no table
		echo "GRANT USAGE ON SCHEMA identity TO \"${prefix}scheduler\";"
	} | sw_pg_psql "$dsn"
}

# sw_pg_secure DIR: the cluster's roles and the schemas of its postgres
# database (a cluster of an older stack, still on trust, is moved to scram
# first). After sw_pg_start.
sw_pg_secure() {
	local dir=$1 pw
	if grep -q '^[^#]*trust' "$dir/pg/pg_hba.conf" 2>/dev/null; then
		mkdir -p "$dir/secrets" && chmod 711 "$dir/secrets"
		pw=$(sw_pg_secret)
		sw_pg_psql "host=$dir/pgsock port=$sw_pg_port user=postgres dbname=postgres" <<-EOF ||
			\set pw '$pw'
			ALTER ROLE postgres PASSWORD :'pw';
		EOF
			return 1
		sw_pg_passfile "$dir/secrets/pg-admin.pgpass" postgres "$pw"
		printf '# TYPE  DATABASE  USER  METHOD  (written by tools/lib/pg.sh)\n%s\n' \
			'local   all       all   scram-sha-256' >"$dir/pg/pg_hba.conf"
		sw_as_pg "$sw_pgbin/pg_ctl" -D "$dir/pg" reload >/dev/null || return 1
	fi
	sw_pg_roles "$(sw_pg_dsn "$dir")" "$dir/secrets" &&
		sw_pg_schemas "$(sw_pg_dsn "$dir")"
}
