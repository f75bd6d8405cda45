# The local stack, for the demo, the end-to-end tests and the benchmarks
# (sourced).
#
#   sw_stack_start WORK BUILD [KIND]   start the services (llm-mock unless
#       SAGEWAI_LLM_BASE_URL is set, audit, identity when built, sandboxd,
#       worker, scheduler) on a Kafka and a PostgreSQL chosen by KIND:
#         embedded  sagewai-devbroker and a private PostgreSQL cluster (default)
#         real      the test harness: Apache Kafka (KRaft) and PostgreSQL
#                   (SW_STACK_BROKERS=3: its three-node cluster, harness
#                   start --brokers 3, in WORK/harness)
#         env       those named by $SAGEWAI_KAFKA_BOOTSTRAP and $SAGEWAI_PG_DSN
#                   (a fresh database is created there for this stack)
#       and write WORK/stack.env (KEY=VALUE) and WORK/stack.sh.env (sourceable).
#       Every server binds port 0 and reports the port it got (its "started"
#       log line, see port.sh), kept in WORK/NAME.port; its URL goes into
#       stack.env as it becomes known (SAGEWAI_URL, SAGEWAI_AUDIT_URL,
#       SAGEWAI_SANDBOXD_URL, SAGEWAI_WORKER_URL, SAGEWAI_LLM_BASE_URL,
#       SAGEWAI_IDENTITY_URL).
#       A later start in the same WORK (tools/stack up after down) reuses the
#       PostgreSQL cluster and WORK/data, and each server first tries the
#       port it had, so that exported URLs stay valid, taking a new one when
#       that port is taken.
#       Unless SW_STACK_SANDBOXD=0 (and when bwrap is present) sagewai-sandboxd
#       runs too; only once it is up do the scheduler get SAGEWAI_RUNNABLE_MODES=
#       in_process,sandboxed and the worker SAGEWAI_WORKER_OTHER_MODES=ignore
#       (in WORK/scheduler.gen.env and WORK/worker.gen.env, rewritten at each
#       start; WORK/NAME.env, the caller's settings, wins): the worker then leaves
#       sandboxed steps to sandboxd and still refuses the other modes after its
#       preview-gate check; sandboxd applies the same backstop.
#       When BUILD has services/identity/sagewai-identity (and unless
#       SW_STACK_IDENTITY=0), sagewai-identity runs too (after audit, before
#       sandboxd and the scheduler), with the key files of sw_stack_id_keys;
#       once it is up the scheduler gets SAGEWAI_IDENTITY=1, the MAC key and
#       the stack's admin token, identity_scoped and cli_agent join its
#       runnable modes when sandboxd is up as well, and sandboxd gets its seal
#       key. Without
#       that binary nothing of this happens.
#       When BUILD has services/policy/sagewai-policy (and unless
#       SW_STACK_POLICY=0), sagewai-policy runs too (after identity, before
#       sandboxd), with identity's admin token when identity runs; its URL
#       (the API and the approvals page) is SAGEWAI_POLICY_URL. With
#       identity, sandboxd and policy up, the scheduler gets SAGEWAI_POLICY=1
#       and cli_agent_jit joins its runnable modes.
#   sw_stack_start2 WORK BUILD NAME    a second instance NAME-2 of a running
#       service (scheduler, worker, sandboxd, audit, identity): NAME's
#       settings (NAME.gen.env, then NAME.env, then NAME-2.env), DSN and
#       keys, its own port (WORK/NAME-2.port, no URL in stack.env), its own
#       SAGEWAI_INSTANCE_ID where NAME has one (NAME's with "-2"); audit-2
#       its own data directory WORK/data-2 (its own log; the index database
#       is shared, each log's rows under its log id); sandboxd-2 its own seal key
#       (WORK/secrets/sandboxd-2.seal.key), listed in identity's hosts file
#       as sandboxd-2. Kill, restart and stop treat NAME-2 like any service.
#   sw_stack_restart WORK NAME         restart one service (after kill -9, or to
#                                      pick up WORK/NAME.env, extra settings),
#                                      on the port it had
#   sw_stack_kill WORK NAME [SIG]      signal one service (default KILL)
#   sw_stack_stop WORK                 stop all of it
#
#   sw_stack_launch WORK NAME          start WORK/run-NAME.sh and learn its port
#   sw_stack_ready WORK                wait until the scheduler consumes its
#                                      partitions (see there)
#
# Each service runs from WORK/run-NAME.sh; logs go to WORK/NAME.log.
#
# Environments: every process started here (the services, llm-mock, the
# broker, postgres) starts from an empty environment (env -i) holding
# exactly what it reads (sw_stack_exec): PATH, LANG, the sanitizers'
# options, the shared settings the service needs (sw_stack_keys: not the
# other services' URLs, not the LLM's settings outside the worker), its
# port settings, its own database DSN, then WORK/NAME.gen.env and
# WORK/NAME.env. Never the caller's environment. A secret is never in any
# process's environment: the worker gets SAGEWAI_LLM_API_KEY_FILE
# (WORK/llm.key, 0600), and a secret a caller puts in WORK/NAME.env
# (SAGEWAI_LLM_API_KEY, SAGEWAI_ADMIN_TOKEN, PGPASSWORD) is moved into a file
# WORK/secrets/NAME.KEY (0600) and passed as KEY_FILE to the service that
# uses it (libs/core's _FILE convention; it replaces a KEY_FILE of
# WORK/NAME.gen.env), and withheld from the others.
#
# Identity's keys (sw_stack_id_keys), made once from libsodium's random
# bytes by sagewai-keygen and kept across starts (the master keys encrypt
# what PostgreSQL keeps): in WORK/secrets/identity (0700), each 0600,
#   master.keys   "k1 HEX64" (SAGEWAI_IDENTITY_MASTER_KEYS_FILE, identity)
#   mac.key       HEX64 (SAGEWAI_SECRET_MAC_KEY_FILE, identity and scheduler)
#   admin.token   the stack's operator token (SAGEWAI_ADMIN_TOKEN_FILE,
#                 identity and scheduler): $SAGEWAI_ADMIN_TOKEN at start when
#                 set, else generated once
#   hosts         "sandboxd HEX64", the seal key's public key
#                 (SAGEWAI_IDENTITY_HOSTS_FILE, identity), rewritten each start
# and sandboxd's X25519 seal key WORK/secrets/sandboxd.seal.key (0600, owned
# by sandboxd's unprivileged user when run as root, see sw_pg_owner:
# SAGEWAI_SANDBOXD_SEAL_KEY_FILE) with its public key sandboxd.seal.pub.
#
# PostgreSQL: each service connects as its own role (see pg.sh), with
# SAGEWAI_PG_DSN naming its passfile (WORK/NAME.dsn). stack.env's
# SAGEWAI_PG_DSN is the administrator's, for the operator's own checks.
# The env kind takes the roles' DSNs from SAGEWAI_PG_DSN_<SERVICE> when they
# are set (the harness's env file holds them) and otherwise creates roles
# <database>_<service> itself (the admin DSN needs CREATEROLE then).

# shellcheck source=pg.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg.sh"
# shellcheck source=port.sh
. "$(dirname "${BASH_SOURCE[0]}")/port.sh"

sw_stack_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

sw_stack_wait_http() { # URL NAME WORK
	local i
	for i in $(seq 1 300); do
		curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "$2 did not come up; its log:" >&2
	tail -n 20 "$3/$2.log" >&2
	return 1
}

# sw_stack_env_set WORK KEY VALUE: set KEY in stack.env and stack.sh.env
sw_stack_env_set() {
	local work=$1
	{
		grep -v "^$2=" "$work/stack.env" 2>/dev/null || true
		echo "$2=$3"
	} >"$work/stack.env.tmp"
	mv "$work/stack.env.tmp" "$work/stack.env"
	sed 's/^\([A-Z_]*\)=\(.*\)$/\1='"'"'\2'"'"'/' "$work/stack.env" >"$work/stack.sh.env"
}

# The stack.env entry naming a service's URL, and the URL's path.
sw_stack_url_key() { # NAME
	case "$1" in
	scheduler) echo SAGEWAI_URL ;;
	audit) echo SAGEWAI_AUDIT_URL ;;
	sandboxd) echo SAGEWAI_SANDBOXD_URL ;;
	worker) echo SAGEWAI_WORKER_URL ;;
	llm-mock) echo "SAGEWAI_LLM_BASE_URL /v1" ;;
	identity) echo SAGEWAI_IDENTITY_URL ;;
	policy) echo SAGEWAI_POLICY_URL ;;
	esac
}

sw_stack_url() { # WORK NAME
	echo "http://127.0.0.1:$(cat "$1/$2.port")"
}

# sw_stack_service WORK NAME CMD...: write WORK/run-NAME.sh and start it.
# An argument @PORT@ stands for the port to bind ($SAGEWAI_HTTP_PORT: the
# one the service had, or 0).
sw_stack_service() {
	local work=$1 name=$2 a
	shift 2
	{
		echo '#!/usr/bin/env bash'
		echo "# $name in a clean environment (tools/lib/stack.sh, sw_stack_exec)"
		printf '. %q\n' "$sw_stack_root/tools/lib/stack.sh"
		printf 'sw_stack_exec %q %q' "$work" "$name"
		for a in "$@"; do printf " %q" "$a"; done
		echo
	} >"$work/run-$name.sh"
	sw_stack_launch "$work" "$name"
}

# sw_stack_base NAME: the service an instance name NAME-2 is of (NAME itself
# for a first instance)
sw_stack_base() {
	case "$1" in *-[2-9]) echo "${1%-[2-9]}" ;; *) echo "$1" ;; esac
}

# The services on the libs/service frame (they read SAGEWAI_* settings).
sw_stack_is_service() { # NAME
	case "$(sw_stack_base "$1")" in scheduler | worker | sandboxd | audit | identity | policy) return 0 ;; esac
	return 1
}

# sw_stack_keys NAME: the settings of stack.env service NAME reads
sw_stack_keys() {
	sw_stack_is_service "$1" || return 0
	echo SAGEWAI_KAFKA_BOOTSTRAP SAGEWAI_LOG_LEVEL SAGEWAI_KAFKA_CONSUMER_CONFIG
	echo SAGEWAI_KAFKA_PRODUCER_CONFIG
	case "$(sw_stack_base "$1")" in
	audit) echo SAGEWAI_DATA_DIR ;;
	worker) echo SAGEWAI_LLM_BASE_URL SAGEWAI_LLM_MODEL ;;
	esac
}

# The secrets a caller may set in WORK/NAME.env, and who uses each.
sw_stack_secret_user() { # KEY NAME: 0 when service NAME uses secret KEY
	set -- "$1" "$(sw_stack_base "$2")"
	case "$1" in
	SAGEWAI_LLM_API_KEY) [ "$2" = worker ] ;;
	SAGEWAI_ADMIN_TOKEN) [ "$2" = scheduler ] || [ "$2" = identity ] || [ "$2" = policy ] ;;
	PGPASSWORD) sw_stack_is_service "$2" ;;
	*) return 1 ;;
	esac
}
sw_stack_is_secret() { # KEY
	case "$1" in SAGEWAI_LLM_API_KEY | SAGEWAI_ADMIN_TOKEN | PGPASSWORD) return 0 ;; esac
	return 1
}

# sw_stack_portfile WORK NAME: where NAME writes its port. A service that
# writes it as another user (sandboxd's unprivileged part) gets a directory
# of its own, WORK/NAME.run, made here.
sw_stack_portfile() {
	local owner
	owner=$(sw_pg_owner "$2")
	if [ -z "$owner" ]; then
		echo "$1/$2.portfile"
		return
	fi
	mkdir -p "$1/$2.run"
	chown "$owner" "$1/$2.run"
	chmod 755 "$1/$2.run"
	echo "$1/$2.run/portfile"
}

# sw_stack_env_get WORK KEY: KEY's value in stack.env (fails when absent)
sw_stack_env_get() {
	local line
	line=$(grep -m 1 "^$2=" "$1/stack.env" 2>/dev/null) || return 1
	printf '%s\n' "${line#*=}"
}

# sw_stack_file_vars FILE...: the KEY=VALUE assignments of the files (shell
# syntax, sourced in order as before), NUL-separated; only the names the
# files assign, nothing of this shell's environment
sw_stack_file_vars() {
	local names
	names=$(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}\([A-Za-z_][A-Za-z0-9_]*\)=.*/\2/p' \
		"$@" 2>/dev/null | awk '!seen[$0]++')
	[ -n "$names" ] || return 0
	(
		for f in "$@"; do
			# shellcheck disable=SC1090
			[ -f "$f" ] && . "$f"
		done
		for n in $names; do printf '%s=%s\0' "$n" "${!n-}"; done
	)
}

# sw_stack_exec WORK NAME CMD...: run-NAME.sh's body: exec CMD (an @PORT@
# argument stands for the port) in the environment described at the top,
# its output appended to WORK/NAME.log
sw_stack_exec() {
	local work=$1 name=$2 port=0 k v kv f owner a
	shift 2
	local -a vars=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		LANG=C.UTF-8) args=()
	for k in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
		[ -z "${!k:-}" ] || vars+=("$k=${!k}")
	done
	[ -s "$work/$name.port" ] && port=$(cat "$work/$name.port")
	if sw_stack_is_service "$name"; then
		vars+=("SAGEWAI_HTTP_PORT=$port" "SAGEWAI_PORT_FILE=$(sw_stack_portfile "$work" "$name")")
		for k in $(sw_stack_keys "$name"); do
			v=$(sw_stack_env_get "$work" "$k") && vars+=("$k=$v")
		done
		[ -s "$work/$name.dsn" ] && vars+=("SAGEWAI_PG_DSN=$(cat "$work/$name.dsn")")
	fi
	owner=$(sw_pg_owner "$name")
	while IFS= read -r -d '' kv; do
		k=${kv%%=*} v=${kv#*=}
		if ! sw_stack_is_secret "$k"; then
			vars+=("$kv")
		elif sw_stack_secret_user "$k" "$name"; then
			mkdir -p "$work/secrets" && chmod 711 "$work/secrets"
			f=$work/secrets/$name.$k
			(umask 077 && rm -f "$f" && printf '%s\n' "$v" >"$f")
			[ -z "$owner" ] || chown "$owner" "$f"
			# it replaces a KEY_FILE of NAME.gen.env (the stack's own)
			local -a kept=()
			for v in "${vars[@]}"; do
				[ "${v%%=*}" = "${k}_FILE" ] || kept+=("$v")
			done
			vars=("${kept[@]}" "${k}_FILE=$f")
		else
			echo "stack: $k withheld from $name (another service's secret)" >>"$work/$name.log"
		fi
	done < <(if [ "$(sw_stack_base "$name")" = "$name" ]; then
		sw_stack_file_vars "$work/$name.gen.env" "$work/$name.env"
	else
		sw_stack_file_vars "$work/$name.gen.env" "$work/$(sw_stack_base "$name").env" \
			"$work/$name.env"
	fi)
	for a in "$@"; do
		[ "$a" = @PORT@ ] && a=$port
		args+=("$a")
	done
	exec env -i "${vars[@]}" "${args[@]}" >>"$work/$name.log" 2>&1 </dev/null
}

# sw_stack_launch WORK NAME: start WORK/run-NAME.sh detached (setsid), wait
# for the port it bound, record it (WORK/NAME.port) and its URL. A service
# that exits before reporting a port while it was asked for its old one
# starts once more on port 0 (the old port may have been taken meanwhile).
sw_stack_launch() {
	local work=$1 name=$2 off=0 pid port key try
	for try in 1 2; do
		[ -f "$work/$name.log" ] && off=$(stat -c %s "$work/$name.log")
		rm -f "$(sw_stack_portfile "$work" "$name")"
		setsid bash "$work/run-$name.sh" &
		pid=$!
		echo "$pid" >"$work/$name.pid"
		grep -qx "$name" "$work/services" 2>/dev/null || echo "$name" >>"$work/services"
		if port=$(sw_port_wait "$pid" "$work/$name.log" "$off" \
			"$(sw_stack_portfile "$work" "$name")"); then
			break
		fi
		if [ $try = 1 ] && [ -s "$work/$name.port" ] && ! sw_pid_alive "$pid"; then
			echo "$name: could not start on port $(cat "$work/$name.port"); trying a new one" >&2
			rm -f "$work/$name.port"
			continue
		fi
		echo "$name reported no port; its log:" >&2
		tail -n 20 "$work/$name.log" >&2
		return 1
	done
	echo "$port" >"$work/$name.port"
	read -r key path <<<"$(sw_stack_url_key "$name")"
	[ -z "$key" ] || sw_stack_env_set "$work" "$key" "http://127.0.0.1:$port${path:-}"
}

sw_stack_kill() { # WORK NAME [SIG]
	local pid
	pid=$(cat "$1/$2.pid" 2>/dev/null) || return 0
	kill "-${3:-KILL}" "$pid" 2>/dev/null || true
	for _ in $(seq 1 200); do sw_pid_alive "$pid" || return 0; sleep 0.05; done
	kill -KILL "$pid" 2>/dev/null || true
}

sw_stack_restart() { # WORK NAME
	sw_stack_kill "$1" "$2" TERM
	sw_stack_launch "$1" "$2" || return 1
	[ "$2" = llm-mock ] || sw_stack_wait_http "$(sw_stack_url "$1" "$2")" "$2" "$1"
}

# sw_stack_ready WORK: wait (up to 15 s) until the scheduler has its
# partitions. A consumer group's first member gets its partitions only after
# the broker's initial rebalance delay (3 s on the embedded broker, fixed in
# librdkafka's mock cluster; 0 in the harness); a run submitted before then
# waits for it. The scheduler is started last, so its group forms last; it
# alone reports its assignment (sagewai_scheduler_partitions_assigned).
sw_stack_ready() {
	local n
	for _ in $(seq 1 300); do
		n=$(sw_stack_metric "$1" scheduler sagewai_scheduler_partitions_assigned)
		[ "${n%.*}" -gt 0 ] && return 0
		sleep 0.05
	done
	return 1
}

# sw_stack_metric WORK SVC NAME: the value of the unlabelled metric NAME of
# service SVC (0 when it is absent or the service does not answer)
sw_stack_metric() {
	curl -fsS -m 10 "$(sw_stack_url "$1" "$2")/metrics" 2>/dev/null |
		awk -v m="$3" '$1 == m {v = $2} END {print (v == "" ? 0 : v)}'
}

# sw_stack_dsn_strip DSN: a keyword=value DSN without user, password and
# passfile (the admin's), to which a role's are appended
sw_stack_dsn_strip() {
	local t out=
	for t in $1; do
		case "$t" in user=* | password=* | passfile=* | dbname=*) ;; *) out="$out $t" ;; esac
	done
	echo "${out# }"
}

# sw_stack_db_env WORK DB: the env kind's roles and schemas in database DB
# of $SAGEWAI_PG_DSN (see the top); writes WORK/<svc>.dsn
sw_stack_db_env() {
	local work=$1 db=$2 svc var dsn role base prefix
	base=$(sw_stack_dsn_strip "$SAGEWAI_PG_DSN")
	var=SAGEWAI_PG_DSN_SCHEDULER
	if [ -n "${!var:-}" ]; then
		# the roles exist (the harness made them): learn their names
		prefix=$(sw_pg_psql "${!var} dbname=$db" <<<"SELECT current_user" | sed 's/scheduler$//')
		[ -n "$prefix" ] || return 1
		for svc in $sw_pg_services; do
			var=SAGEWAI_PG_DSN_$(echo "$svc" | tr a-z A-Z)
			[ -n "${!var:-}" ] || { echo "stack: $var is not set" >&2; return 1; }
			echo "${!var} dbname=$db" >"$work/$svc.dsn"
		done
	else
		prefix=${db}_
		sw_pg_roles "$SAGEWAI_PG_DSN dbname=$db" "$work/secrets" "$prefix" || return 1
		for svc in $sw_pg_services; do
			echo "$base user=$prefix$svc dbname=$db passfile=$work/secrets/$svc.pgpass" \
				>"$work/$svc.dsn"
		done
	fi
	sw_pg_schemas "$SAGEWAI_PG_DSN dbname=$db" "$prefix"
}

# sw_stack_id_keys WORK BUILD: identity's key files (see the top), made
# when missing; the hosts file and the admin token are written each time
sw_stack_id_keys() {
	local work=$1 keygen=$2/tools/keygen/sagewai-keygen d=$1/secrets/identity owner pub
	if [ ! -x "$keygen" ]; then
		echo "stack: sagewai-identity needs $keygen (ninja sagewai-keygen)" >&2
		return 1
	fi
	mkdir -p "$work/secrets" "$d"
	chmod 711 "$work/secrets"
	chmod 700 "$d"
	[ -s "$d/master.keys" ] || "$keygen" master "$d/master.keys" || return 1
	[ -s "$d/mac.key" ] || "$keygen" secret "$d/mac.key" || return 1
	if [ -n "${SAGEWAI_ADMIN_TOKEN:-}" ]; then
		(umask 077 && rm -f "$d/admin.token" && printf '%s\n' "$SAGEWAI_ADMIN_TOKEN" \
			>"$d/admin.token") || return 1
	elif [ ! -s "$d/admin.token" ]; then
		"$keygen" secret "$d/admin.token" || return 1
	fi
	# sandboxd's seal key pair; the public key is the secret key's
	if [ ! -s "$work/secrets/sandboxd.seal.key" ]; then
		rm -f "$work/secrets/sandboxd.seal.key" "$work/secrets/sandboxd.seal.pub"
		"$keygen" x25519 "$work/secrets/sandboxd.seal.key" \
			"$work/secrets/sandboxd.seal.pub" || return 1
	fi
	pub=$("$keygen" x25519-pub "$work/secrets/sandboxd.seal.key") || return 1
	owner=$(sw_pg_owner sandboxd)
	[ -z "$owner" ] || chown "$owner" "$work/secrets/sandboxd.seal.key"
	(umask 077 && rm -f "$d/hosts.tmp" && printf 'sandboxd %s\n' "$pub" >"$d/hosts.tmp") &&
		mv -f "$d/hosts.tmp" "$d/hosts"
}

sw_stack_start() {
	local work=$1 build=$2 kind=${3:-embedded} bootstrap dsn db svc
	mkdir -p "$work"
	chmod 755 "$work"
	: >"$work/services"
	rm -f "$work"/*.gen.env

	case "$kind" in
	env)
		bootstrap=$SAGEWAI_KAFKA_BOOTSTRAP
		db="stack_$(basename "$work" | tr -c 'a-zA-Z0-9_\n' _)"
		sw_pg_psql "$SAGEWAI_PG_DSN" <<<"CREATE DATABASE $db" >/dev/null || return 1
		dsn="$SAGEWAI_PG_DSN dbname=$db"
		sw_stack_db_env "$work" "$db" || return 1
		;;
	real)
		if [ "${SW_STACK_BROKERS:-1}" = 1 ]; then
			"$sw_stack_root/tests/harness/harness" start "$work/harness" >/dev/null
		else
			"$sw_stack_root/tests/harness/harness" start "$work/harness" \
				--brokers "$SW_STACK_BROKERS" >/dev/null
		fi
		bootstrap=$(sed -n 's/^SAGEWAI_KAFKA_BOOTSTRAP=//p' "$work/harness/env")
		dsn=$(sed -n 's/^SAGEWAI_PG_DSN=//p' "$work/harness/env")
		for svc in $sw_pg_services; do
			sed -n "s/^SAGEWAI_PG_DSN_$(echo "$svc" | tr a-z A-Z)=//p" \
				"$work/harness/env" >"$work/$svc.dsn"
		done
		;;
	*)
		rm -f "$work/bootstrap"
		setsid env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
			"$build/tools/devbroker/sagewai-devbroker" \
			--bootstrap-file "$work/bootstrap" >"$work/devbroker.log" 2>&1 </dev/null &
		echo $! >"$work/devbroker.pid"
		for _ in $(seq 1 100); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
		bootstrap=$(cat "$work/bootstrap")
		# the cluster (and its data) of an earlier start in WORK, if any
		[ -f "$work/pg/PG_VERSION" ] || sw_pg_init "$work" || return 1
		sw_pg_start "$work" || return 1
		sw_pg_secure "$work" || return 1
		dsn=$(sw_pg_dsn "$work")
		for svc in $sw_pg_services; do
			sw_pg_svc_dsn "$work" "$svc" >"$work/$svc.dsn"
		done
		;;
	esac
	echo "$kind" >"$work/kind"

	local llm_key=${SAGEWAI_LLM_API_KEY:-sk-mock-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
	cat >"$work/stack.env" <<-EOF
		SAGEWAI_KAFKA_BOOTSTRAP=$bootstrap
		SAGEWAI_PG_DSN=$dsn
		SAGEWAI_DATA_DIR=$work/data
		SAGEWAI_LLM_MODEL=${SAGEWAI_LLM_MODEL:-mock-1}
		SAGEWAI_LOG_LEVEL=${SAGEWAI_LOG_LEVEL:-info}
	EOF
	[ -z "${SAGEWAI_LLM_BASE_URL:-}" ] ||
		echo "SAGEWAI_LLM_BASE_URL=$SAGEWAI_LLM_BASE_URL" >>"$work/stack.env"
	# the caller's producer properties for every service (benchmarks)
	[ -z "${SAGEWAI_KAFKA_PRODUCER_CONFIG:-}" ] ||
		echo "SAGEWAI_KAFKA_PRODUCER_CONFIG=$SAGEWAI_KAFKA_PRODUCER_CONFIG" >>"$work/stack.env"
	# the mock cluster answers a fetch only when fetch.wait.max.ms runs out
	# (a real broker answers as soon as data arrives): keep it short there;
	# on a real broker, the caller's consumer properties (benchmarks)
	if [ "$kind" = embedded ]; then
		echo "SAGEWAI_KAFKA_CONSUMER_CONFIG=fetch.wait.max.ms=5" >>"$work/stack.env"
	elif [ -n "${SAGEWAI_KAFKA_CONSUMER_CONFIG:-}" ]; then
		echo "SAGEWAI_KAFKA_CONSUMER_CONFIG=$SAGEWAI_KAFKA_CONSUMER_CONFIG" >>"$work/stack.env"
	fi
	sed 's/^\([A-Z_]*\)=\(.*\)$/\1='"'"'\2'"'"'/' "$work/stack.env" >"$work/stack.sh.env"
	# the key reaches the worker (and the mock) only, through a file: never
	# stack.env, never an environment
	(umask 077 && rm -f "$work/llm.key" && echo "$llm_key" >"$work/llm.key")
	echo "SAGEWAI_LLM_API_KEY_FILE=$work/llm.key" >"$work/worker.gen.env"
	# static group membership on the stack's own embedded broker: a
	# restarted executor gets its partitions back at once (one id per
	# service and stack directory). Not on a shared broker (the test
	# harness), where stacks come and go in the same groups: a static
	# member does not leave its group when it stops, so each new stack would
	# wait out the last one's session.
	local sid=
	if [ "$kind" = embedded ]; then
		sid=$(printf '%s' "$work" | cksum | cut -d' ' -f1)
		echo "SAGEWAI_INSTANCE_ID=worker-$sid" >>"$work/worker.gen.env"
	fi

	# each server is up (it reported its port) before the next one starts:
	# the worker needs the LLM's URL, the scheduler sandboxd's
	if [ -z "${SAGEWAI_LLM_BASE_URL:-}" ]; then
		sw_stack_service "$work" llm-mock "$build/tools/llm-mock/sagewai-llm-mock" \
			--port @PORT@ --port-file "$work/llm-mock.portfile" --require-key-file "$work/llm.key" ${SW_STACK_LLM_ARGS:-} ||
			return 1
	fi
	sw_stack_audit_key "$work" "$build" || return 1
	sw_stack_service "$work" audit "$build/services/audit/sagewai-audit" serve || return 1
	# identity before sandboxd (which asks it for sealed values) and the
	# scheduler (which has it resolve every submit)
	local identity=0 idk=$work/secrets/identity
	if [ "${SW_STACK_IDENTITY:-1}" = 1 ] &&
		[ -x "$build/services/identity/sagewai-identity" ]; then
		sw_stack_id_keys "$work" "$build" || return 1
		cat >"$work/identity.gen.env" <<-EOF
			SAGEWAI_IDENTITY_MASTER_KEYS_FILE='$idk/master.keys'
			SAGEWAI_SECRET_MAC_KEY_FILE='$idk/mac.key'
			SAGEWAI_IDENTITY_HOSTS_FILE='$idk/hosts'
			SAGEWAI_ADMIN_TOKEN_FILE='$idk/admin.token'
		EOF
		sw_stack_service "$work" identity "$build/services/identity/sagewai-identity" \
			serve || return 1
		sw_stack_wait_http "$(sw_stack_url "$work" identity)" identity "$work" || return 1
		identity=1
		cat >"$work/scheduler.gen.env" <<-EOF
			SAGEWAI_IDENTITY=1
			SAGEWAI_SECRET_MAC_KEY_FILE='$idk/mac.key'
			SAGEWAI_ADMIN_TOKEN_FILE='$idk/admin.token'
		EOF
	fi
	# policy (the JIT credential requests' decisions) before sandboxd, whose
	# requests it answers
	if [ "${SW_STACK_POLICY:-1}" = 1 ] && [ -x "$build/services/policy/sagewai-policy" ]; then
		: >"$work/policy.gen.env"
		[ $identity = 0 ] ||
			echo "SAGEWAI_ADMIN_TOKEN_FILE='$idk/admin.token'" >"$work/policy.gen.env"
		sw_stack_service "$work" policy "$build/services/policy/sagewai-policy" serve ||
			return 1
		sw_stack_wait_http "$(sw_stack_url "$work" policy)" policy "$work" || return 1
	fi
	if [ "${SW_STACK_SANDBOXD:-1}" = 1 ] && [ -x /usr/bin/bwrap ] &&
		[ -x "$build/services/sandboxd/sagewai-sandboxd" ]; then
		echo "SAGEWAI_SANDBOX_STATE_DIR='$work'" >"$work/sandboxd.gen.env"
		[ -z "$sid" ] || echo "SAGEWAI_INSTANCE_ID=sandboxd-$sid" >>"$work/sandboxd.gen.env"
		[ $identity = 0 ] || echo "SAGEWAI_SANDBOXD_SEAL_KEY_FILE='$work/secrets/sandboxd.seal.key'" \
			>>"$work/sandboxd.gen.env"
		if sw_stack_service "$work" sandboxd \
			"$build/services/sandboxd/sagewai-sandboxd" serve &&
			sw_stack_wait_http "$(sw_stack_url "$work" sandboxd)" sandboxd "$work"; then
			if [ $identity = 1 ] && { grep -qx policy "$work/services" ||
				[ "${SW_STACK_POLICY:-0}" = 1 ]; }; then
				# something decides credential requests (sagewai-policy,
				# or with SW_STACK_POLICY=1 bench/jit's responder):
				# cli_agent_jit runs
				printf '%s\n' "SAGEWAI_POLICY=1" \
					"SAGEWAI_RUNNABLE_MODES=in_process,sandboxed,identity_scoped,cli_agent,cli_agent_jit" \
					>>"$work/scheduler.gen.env"
			elif [ $identity = 1 ]; then
				echo "SAGEWAI_RUNNABLE_MODES=in_process,sandboxed,identity_scoped,cli_agent" \
					>>"$work/scheduler.gen.env"
			else
				echo "SAGEWAI_RUNNABLE_MODES=in_process,sandboxed" >"$work/scheduler.gen.env"
			fi
			echo "SAGEWAI_WORKER_OTHER_MODES=ignore" >>"$work/worker.gen.env"
		else
			echo "sandboxd did not come up: sandboxed steps are not offered" >&2
			sw_stack_kill "$work" sandboxd TERM
			sed -i '/^sandboxd$/d' "$work/services"
			sed -i '/^SAGEWAI_SANDBOXD_URL=/d' "$work/stack.env" "$work/stack.sh.env"
		fi
	fi
	# the scheduler last: see sw_stack_ready
	sw_stack_service "$work" worker "$build/services/worker/sagewai-worker" || return 1
	sw_stack_service "$work" scheduler "$build/services/scheduler/sagewai-scheduler" ||
		return 1
	sw_stack_wait_http "$(sw_stack_url "$work" audit)" audit "$work" &&
		sw_stack_wait_http "$(sw_stack_url "$work" worker)" worker "$work" &&
		sw_stack_wait_http "$(sw_stack_url "$work" scheduler)" scheduler "$work"
}

# sw_stack_audit_key WORK BUILD: the key the audit service signs its
# checkpoints with (made once, 0600, kept across restarts of WORK), and its
# public key in WORK/audit.pub, which stack.env names for the CLI
# (SAGEWAI_AUDIT_PUBKEYS: sagewai audit verify and export)
sw_stack_audit_key() {
	local work=$1 build=$2 key=$1/secrets/audit-signing.key
	mkdir -p "$work/secrets" && chmod 711 "$work/secrets"
	if [ ! -s "$key" ]; then
		rm -f "$key"
		"$build/services/audit/sagewai-audit" keygen --key-id "stack-$(date -u +%s)" \
			--secret-key "$key" --public-keys "$work/audit.pub" >/dev/null || return 1
	fi
	echo "SAGEWAI_AUDIT_SIGNING_KEY_FILE=$key" >>"$work/audit.gen.env"
	sw_stack_env_set "$work" SAGEWAI_AUDIT_PUBKEYS "$work/audit.pub"
}

sw_stack_start2() { # WORK BUILD NAME
	local work=$1 build=$2 base=$3 name=$3-2 pub d=$1/secrets/identity
	local -a args=()
	grep -qx "$base" "$work/services" 2>/dev/null ||
		{ echo "stack: $base is not running in $work" >&2; return 1; }
	case "$base" in
	scheduler | worker) ;;
	sandboxd | audit | identity) args=(serve) ;;
	*) echo "stack: no second instance of $base" >&2; return 1 ;;
	esac
	[ ! -s "$work/$base.dsn" ] || cp "$work/$base.dsn" "$work/$name.dsn"
	sed 's/^SAGEWAI_INSTANCE_ID=\(.*\)$/SAGEWAI_INSTANCE_ID=\1-2/' \
		"$work/$base.gen.env" >"$work/$name.gen.env" 2>/dev/null || : >"$work/$name.gen.env"
	case "$base" in
	audit)
		# its own log; the index (schema audit) is shared, each log's
		# rows under its log id
		echo "SAGEWAI_DATA_DIR=$work/data-2" >>"$work/$name.gen.env"
		;;
	sandboxd)
		if grep -q '^SAGEWAI_SANDBOXD_SEAL_KEY_FILE=' "$work/$name.gen.env"; then
			if [ ! -s "$work/secrets/$name.seal.key" ]; then
				rm -f "$work/secrets/$name.seal.key" "$work/secrets/$name.seal.pub"
				"$build/tools/keygen/sagewai-keygen" x25519 "$work/secrets/$name.seal.key" \
					"$work/secrets/$name.seal.pub" || return 1
			fi
			[ -z "$(sw_pg_owner "$name")" ] ||
				chown "$(sw_pg_owner "$name")" "$work/secrets/$name.seal.key"
			sed -i "s|^SAGEWAI_SANDBOXD_SEAL_KEY_FILE=.*|SAGEWAI_SANDBOXD_SEAL_KEY_FILE='$work/secrets/$name.seal.key'|" \
				"$work/$name.gen.env"
			pub=$("$build/tools/keygen/sagewai-keygen" x25519-pub \
				"$work/secrets/$name.seal.key") || return 1
			{
				grep -v "^$name " "$d/hosts" || true
				printf '%s %s\n' "$name" "$pub"
			} >"$d/hosts.tmp" && chmod 600 "$d/hosts.tmp" && mv -f "$d/hosts.tmp" "$d/hosts"
		fi
		;;
	esac
	sw_stack_service "$work" "$name" "$build/services/$base/sagewai-$base" "${args[@]}" ||
		return 1
	sw_stack_wait_http "$(sw_stack_url "$work" "$name")" "$name" "$work"
}

sw_stack_stop() {
	local work=$1 name
	[ -f "$work/services" ] || return 0
	# services first (TERM: they commit and leave their groups), then the rest
	for name in $(sort -u "$work/services"); do
		kill -TERM "$(cat "$work/$name.pid")" 2>/dev/null || true
	done
	for name in $(sort -u "$work/services"); do
		sw_stack_kill "$work" "$name" TERM
	done
	: >"$work/services"
	case "$(cat "$work/kind" 2>/dev/null)" in
	real) "$sw_stack_root/tests/harness/harness" stop "$work/harness" ;;
	embedded)
		sw_stack_kill "$work" devbroker TERM
		sw_pg_stop "$work" fast
		;;
	esac
}
