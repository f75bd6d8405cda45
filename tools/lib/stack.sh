# The local stack, for the demo, the end-to-end tests and the benchmarks
# (sourced).
#
#   sw_stack_start WORK BUILD [KIND]   start the services (llm-mock unless
#       SAGEWAI_LLM_BASE_URL is set, audit, scheduler, worker) on a Kafka and a
#       PostgreSQL chosen by KIND:
#         embedded  sagewai-devbroker and a private PostgreSQL cluster (default)
#         real      the test harness: Apache Kafka (KRaft) and PostgreSQL
#         env       those named by $SAGEWAI_KAFKA_BOOTSTRAP and $SAGEWAI_PG_DSN
#                   (a fresh database is created there for this stack)
#       and write WORK/stack.env (KEY=VALUE) and WORK/stack.sh.env (sourceable).
#       Unless SW_STACK_SANDBOXD=0 (and when bwrap is present) sagewai-sandboxd
#       runs too; only once it is up do the scheduler get SAGEWAI_RUNNABLE_MODES=
#       in_process,sandboxed and the worker SAGEWAI_WORKER_OTHER_MODES=ignore
#       (in WORK/scheduler.env and WORK/worker.env): the worker then leaves
#       sandboxed steps to sandboxd and still refuses the other modes after its
#       preview-gate check; sandboxd applies the same backstop.
#   sw_stack_restart WORK NAME         restart one service (after kill -9, or to
#                                      pick up WORK/NAME.env, extra settings)
#   sw_stack_kill WORK NAME [SIG]      signal one service (default KILL)
#   sw_stack_stop WORK                 stop all of it
#
# Each service runs from WORK/run-NAME.sh; logs go to WORK/NAME.log.

# shellcheck source=pg.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

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

# sw_stack_service WORK NAME PORT CMD...: write WORK/run-NAME.sh and start it
sw_stack_service() {
	local work=$1 name=$2 port=$3
	shift 3
	{
		echo '#!/usr/bin/env bash'
		echo "set -a"
		echo ". '$work/stack.sh.env'"
		echo "SAGEWAI_HTTP_PORT=$port"
		echo "[ -f '$work/$name.env' ] && . '$work/$name.env'"
		echo "set +a"
		printf 'exec'
		printf " %q" "$@"
		echo " >>'$work/$name.log' 2>&1 </dev/null"
	} >"$work/run-$name.sh"
	echo "$port" >"$work/$name.port"
	sw_stack_launch "$work" "$name"
}

sw_stack_launch() { # WORK NAME
	setsid bash "$1/run-$2.sh" &
	echo $! >"$1/$2.pid"
	echo "$2" >>"$1/services"
}

sw_stack_kill() { # WORK NAME [SIG]
	local pid
	pid=$(cat "$1/$2.pid")
	kill "-${3:-KILL}" "$pid" 2>/dev/null || true
	for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
	kill -KILL "$pid" 2>/dev/null || true
}

sw_stack_restart() { # WORK NAME
	sw_stack_kill "$1" "$2" TERM
	sw_stack_launch "$1" "$2"
	[ "$2" = llm-mock ] ||
		sw_stack_wait_http "http://127.0.0.1:$(cat "$1/$2.port")" "$2" "$1"
}

sw_stack_start() {
	local work=$1 build=$2 kind=${3:-embedded} bootstrap dsn db
	mkdir -p "$work"
	chmod 755 "$work"
	: >"$work/services"

	case "$kind" in
	env)
		bootstrap=$SAGEWAI_KAFKA_BOOTSTRAP
		db="stack_$(basename "$work" | tr -c 'a-zA-Z0-9_\n' _)"
		psql "$SAGEWAI_PG_DSN" -qAt -c "CREATE DATABASE $db" >/dev/null
		dsn="$SAGEWAI_PG_DSN dbname=$db"
		;;
	real)
		"$sw_stack_root/tests/harness/harness" start "$work/harness" >/dev/null
		bootstrap=$(sed -n 's/^SAGEWAI_KAFKA_BOOTSTRAP=//p' "$work/harness/env")
		dsn=$(sed -n 's/^SAGEWAI_PG_DSN=//p' "$work/harness/env")
		;;
	*)
		setsid "$build/tools/devbroker/sagewai-devbroker" \
			--bootstrap-file "$work/bootstrap" >"$work/devbroker.log" 2>&1 </dev/null &
		echo $! >"$work/devbroker.pid"
		for _ in $(seq 1 100); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
		bootstrap=$(cat "$work/bootstrap")
		sw_pg_init "$work"
		sw_pg_start "$work"
		dsn=$(sw_pg_dsn "$work")
		;;
	esac
	echo "$kind" >"$work/kind"

	local llm_port audit_port sched_port worker_port sbd_port
	llm_port=$(sw_free_port)
	sbd_port=$(sw_free_port)
	audit_port=$(sw_free_port)
	sched_port=$(sw_free_port)
	worker_port=$(sw_free_port)
	local llm_url=${SAGEWAI_LLM_BASE_URL:-http://127.0.0.1:$llm_port/v1}
	local llm_key=${SAGEWAI_LLM_API_KEY:-sk-mock-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
	cat >"$work/stack.env" <<-EOF
		SAGEWAI_KAFKA_BOOTSTRAP=$bootstrap
		SAGEWAI_PG_DSN=$dsn
		SAGEWAI_URL=http://127.0.0.1:$sched_port
		SAGEWAI_AUDIT_URL=http://127.0.0.1:$audit_port
		SAGEWAI_DATA_DIR=$work/data
		SAGEWAI_LLM_BASE_URL=$llm_url
		SAGEWAI_LLM_MODEL=${SAGEWAI_LLM_MODEL:-mock-1}
		SAGEWAI_LOG_LEVEL=${SAGEWAI_LOG_LEVEL:-info}
	EOF
	# the mock cluster answers a fetch only when fetch.wait.max.ms runs out
	# (a real broker answers as soon as data arrives): keep it short there
	[ "$kind" = embedded ] &&
		echo "SAGEWAI_KAFKA_CONSUMER_CONFIG=fetch.wait.max.ms=5" >>"$work/stack.env"
	sed 's/^\([A-Z_]*\)=\(.*\)$/\1='"'"'\2'"'"'/' "$work/stack.env" >"$work/stack.sh.env"
	# the key reaches the worker (and the mock) only, never stack.env
	printf "SAGEWAI_LLM_API_KEY='%s'\n" "$llm_key" >>"$work/worker.env"
	echo "$llm_key" >"$work/llm.key"
	chmod 600 "$work/llm.key" "$work/worker.env"

	if [ -z "${SAGEWAI_LLM_BASE_URL:-}" ]; then
		sw_stack_service "$work" llm-mock "$llm_port" \
			"$build/tools/llm-mock/sagewai-llm-mock" --port "$llm_port" \
			--require-key-file "$work/llm.key" ${SW_STACK_LLM_ARGS:-}
	fi
	sw_stack_service "$work" audit "$audit_port" "$build/services/audit/sagewai-audit" serve
	# sandboxd before the scheduler, which must know whether it may dispatch
	# sandboxed steps
	if [ "${SW_STACK_SANDBOXD:-1}" = 1 ] && [ -x /usr/bin/bwrap ] &&
		[ -x "$build/services/sandboxd/sagewai-sandboxd" ]; then
		echo "SAGEWAI_SANDBOX_STATE_DIR='$work'" >>"$work/sandboxd.env"
		sw_stack_service "$work" sandboxd "$sbd_port" \
			"$build/services/sandboxd/sagewai-sandboxd" serve
		if sw_stack_wait_http "http://127.0.0.1:$sbd_port" sandboxd "$work"; then
			echo "SAGEWAI_RUNNABLE_MODES=in_process,sandboxed" >>"$work/scheduler.env"
			echo "SAGEWAI_WORKER_OTHER_MODES=ignore" >>"$work/worker.env"
			echo "SAGEWAI_SANDBOXD_URL=http://127.0.0.1:$sbd_port" >>"$work/stack.env"
		else
			echo "sandboxd did not come up: sandboxed steps are not offered" >&2
			sw_stack_kill "$work" sandboxd TERM
			sed -i '/^sandboxd$/d' "$work/services"
		fi
	fi
	sw_stack_service "$work" scheduler "$sched_port" \
		"$build/services/scheduler/sagewai-scheduler"
	sw_stack_service "$work" worker "$worker_port" "$build/services/worker/sagewai-worker"
	sw_stack_wait_http "http://127.0.0.1:$audit_port" audit "$work" &&
		sw_stack_wait_http "http://127.0.0.1:$sched_port" scheduler "$work" &&
		sw_stack_wait_http "http://127.0.0.1:$worker_port" worker "$work"
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
		kill -TERM "$(cat "$work/devbroker.pid")" 2>/dev/null || true
		sw_pg_stop "$work" fast
		;;
	esac
}
