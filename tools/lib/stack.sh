# The local stack, for the demo and the benchmarks (sourced).
#
#   sw_stack_start WORK BUILD [KIND]   start the services (llm-mock, audit,
#                                      scheduler, worker) on a Kafka and a
#                                      PostgreSQL chosen by KIND:
#       embedded  sagewai-devbroker and a private PostgreSQL cluster (default)
#       real      the test harness: Apache Kafka (KRaft) and PostgreSQL
#       env       those named by $SAGEWAI_KAFKA_BOOTSTRAP and $SAGEWAI_PG_DSN
#                 (a fresh database is created there for this stack)
#                                      and writes WORK/stack.env
#   sw_stack_stop WORK                 stop all of it
#
# Every process is recorded in WORK/pids; logs go to WORK/<name>.log.

# shellcheck source=pg.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

sw_stack_bg() { # WORK NAME CMD...: start CMD in the background, logging
	local work=$1 name=$2
	shift 2
	"$@" >"$work/$name.log" 2>&1 </dev/null &
	echo "$! $name" >>"$work/pids"
}

sw_stack_wait_http() { # URL NAME WORK
	local i
	for i in $(seq 1 200); do
		curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "$2 did not come up; its log:" >&2
	tail -n 20 "$3/$2.log" >&2
	return 1
}

sw_stack_start() {
	local work=$1 build=$2 kind=${3:-embedded} bootstrap root
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	mkdir -p "$work"
	chmod 755 "$work"
	: >"$work/pids"

	if [ "$kind" = env ]; then
		bootstrap=$SAGEWAI_KAFKA_BOOTSTRAP
		local db
		db="stack_$(basename "$work" | tr -c 'a-zA-Z0-9_\n' _)_$$"
		psql "$SAGEWAI_PG_DSN" -qAt -c "CREATE DATABASE $db" >/dev/null
		SW_STACK_PG_DSN="$SAGEWAI_PG_DSN dbname=$db"
	elif [ "$kind" = real ]; then
		"$root/tests/harness/harness" start "$work/harness" >/dev/null
		bootstrap=$(sed -n 's/^SAGEWAI_KAFKA_BOOTSTRAP=//p' "$work/harness/env")
		echo "harness $work/harness" >>"$work/pids"
		SW_STACK_PG_DSN=$(sed -n 's/^SAGEWAI_PG_DSN=//p' "$work/harness/env")
	else
		sw_stack_bg "$work" devbroker "$build/tools/devbroker/sagewai-devbroker" \
			--bootstrap-file "$work/bootstrap"
		for _ in $(seq 1 100); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
		bootstrap=$(cat "$work/bootstrap")
		sw_pg_init "$work"
		sw_pg_start "$work"
		echo "pg $work" >>"$work/pids"
		SW_STACK_PG_DSN=$(sw_pg_dsn "$work")
	fi

	local llm_port audit_port sched_port worker_port
	llm_port=$(sw_free_port)
	audit_port=$(sw_free_port)
	sched_port=$(sw_free_port)
	worker_port=$(sw_free_port)
	cat >"$work/stack.env" <<-EOF
		SAGEWAI_KAFKA_BOOTSTRAP=$bootstrap
		SAGEWAI_PG_DSN=$SW_STACK_PG_DSN
		SAGEWAI_URL=http://127.0.0.1:$sched_port
		SAGEWAI_AUDIT_URL=http://127.0.0.1:$audit_port
		SAGEWAI_DATA_DIR=$work/data
	EOF

	if [ -z "${SAGEWAI_LLM_BASE_URL:-}" ]; then
		sw_stack_bg "$work" llm-mock "$build/tools/llm-mock/sagewai-llm-mock" --port "$llm_port"
		export SAGEWAI_LLM_BASE_URL="http://127.0.0.1:$llm_port/v1"
		export SAGEWAI_LLM_API_KEY=${SAGEWAI_LLM_API_KEY:-sk-local-mock}
		export SAGEWAI_LLM_MODEL=${SAGEWAI_LLM_MODEL:-mock-1}
	fi
	(
		export SAGEWAI_KAFKA_BOOTSTRAP=$bootstrap SAGEWAI_PG_DSN=$SW_STACK_PG_DSN
		export SAGEWAI_DATA_DIR=$work/data
		SAGEWAI_HTTP_PORT=$audit_port sw_stack_bg "$work" audit \
			"$build/services/audit/sagewai-audit" serve
		SAGEWAI_HTTP_PORT=$sched_port sw_stack_bg "$work" scheduler \
			"$build/services/scheduler/sagewai-scheduler"
		SAGEWAI_HTTP_PORT=$worker_port sw_stack_bg "$work" worker \
			"$build/services/worker/sagewai-worker"
	)
	sw_stack_wait_http "http://127.0.0.1:$audit_port" audit "$work" &&
		sw_stack_wait_http "http://127.0.0.1:$sched_port" scheduler "$work" &&
		sw_stack_wait_http "http://127.0.0.1:$worker_port" worker "$work"
}

sw_stack_stop() {
	local work=$1 pid name
	[ -f "$work/pids" ] || return 0
	# services first (TERM: they commit and leave their groups), then the rest
	while read -r pid name; do
		case "$name" in
		harness | pg) ;;
		*) kill -TERM "$pid" 2>/dev/null ;;
		esac
	done <"$work/pids"
	while read -r pid name; do
		case "$name" in
		harness) "$(dirname "${BASH_SOURCE[0]}")/../../tests/harness/harness" stop "$pid" ;;
		pg) sw_pg_stop "$pid" fast ;;
		*) for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
		   kill -KILL "$pid" 2>/dev/null ;;
		esac
	done <"$work/pids"
	: >"$work/pids"
}
