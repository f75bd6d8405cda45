# Private PostgreSQL clusters for the demo and the test harness (sourced).
# A cluster lives in DIR/pg and listens only on a Unix socket in the private
# directory DIR/pgsock (listen_addresses=''), with trust authentication: no
# TCP port, so nothing to pick or collide on (PostgreSQL cannot bind port 0
# and report it). Clients use the DSN of sw_pg_dsn (host=DIR/pgsock); the
# socket's name still carries a port number, always 5432, which is private to
# the directory. As root the server runs as the postgres user (initdb
# refuses root).

sw_pgbin=${SW_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

sw_as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

sw_pg_port=5432 # in the socket's name only

# sw_pg_init DIR: create the cluster
sw_pg_init() {
	local dir=$1
	mkdir -p "$dir/pg" "$dir/pgsock"
	chmod 755 "$dir"
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$dir/pg" "$dir/pgsock"
		touch "$dir/pg.log" && chown postgres "$dir/pg.log"
	fi
	sw_as_pg "$sw_pgbin/initdb" -D "$dir/pg" -A trust -U postgres -E UTF8 --no-sync \
		>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
	cat >>"$dir/pg/postgresql.conf" <<-EOF2
		max_connections = 200
		shared_buffers = 128MB
		log_min_messages = warning
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

sw_pg_dsn() {
	echo "host=$1/pgsock port=$sw_pg_port user=postgres dbname=postgres"
}
