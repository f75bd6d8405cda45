# Private PostgreSQL clusters for the demo and the test harness (sourced).
# A cluster lives in DIR/pg with its socket in DIR/pgsock, listening on
# 127.0.0.1:$(cat DIR/pg.port) with trust authentication; as root the
# server runs as the postgres user (initdb refuses root).

sw_pgbin=${SW_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

sw_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

sw_as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# sw_pg_init DIR: create the cluster and choose its port
sw_pg_init() {
	local dir=$1
	mkdir -p "$dir/pg" "$dir/pgsock"
	chmod 755 "$dir"
	sw_free_port >"$dir/pg.port"
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
		-o "-p $(cat "$dir/pg.port") -k $dir/pgsock -c listen_addresses=127.0.0.1" \
		start >/dev/null
}

# sw_pg_stop DIR [fast|immediate]
sw_pg_stop() {
	local dir=$1 mode=${2:-fast}
	[ -d "$dir/pg" ] || return 0
	sw_as_pg "$sw_pgbin/pg_ctl" -D "$dir/pg" -m "$mode" -w -t 60 stop >/dev/null 2>&1 || true
}

sw_pg_dsn() {
	echo "host=127.0.0.1 port=$(cat "$1/pg.port") user=postgres dbname=postgres"
}
