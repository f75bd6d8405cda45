#!/usr/bin/env bash
# Faults under load on the replicated shape: a three-node Kafka cluster
# (harness start --brokers 3: replication 3, min.insync.replicas 2) and two
# instances of every service (tools/lib/stack.sh sw_stack_start2).
#
#   scale.sh [FAULT...]   default: broker leader rolling kill pg
#
# For each fault, $SW_SCALE_RUNS (420) mixed runs are submitted at
# $SW_SCALE_RATE (35) runs/s, 32 at a time, alternately to each scheduler
# ("mix": sandboxed, then llm; "plain": llm; llm-mock answers after
# $SW_SCALE_LLM_MS, 20000 ms, so that a run lasts at least 20 s while costing
# the platform only its state transitions), plus a probe run (one sandboxed
# step, no LLM wait) every 0.5 s, and the fault is injected once
# $SW_SCALE_INFLIGHT (300) runs are in flight (not finished, by the
# scheduler's table) and 20 of the batch have finished (the steps/s before
# the fault are known) or all are submitted; the rest are submitted through
# it. The runs' ends come from the audit instances' feeds (GET
# /v1/audit/events, run.finished), not from polling each run. Faults:
#   broker   kill -9 of broker 2, started again 5 s later
#   leader   kill -9 of the leader of sagewai.steps partition 0, started
#            again 5 s later
#   rolling  every service instance restarted in turn (SIGTERM, started,
#            healthy, next)
#   kill     kill -9 of one instance of each service, each restarted
#   pg       PostgreSQL restarted
# Then every run succeeded (runs.py load, bounded); the runs in flight at
# the fault, the time from the fault to the first probe finishing after it
# (RECOVERY), the longest a probe took around the fault, and the steps/s
# before the fault and when they are back are printed. An instance that exits by itself is restarted as a supervisor
# would (systemd Restart=on-failure) and named in the output (see
# supervise).
# At the end, over all runs: the union of the two audit logs holds every
# run's run.finished once and exactly one SUCCEEDED step.finished per step
# (no effect lost or duplicated), no log holds an event twice, the index
# database both audit instances share holds exactly each log's events under
# its log id, both logs verify (sagewai audit verify with the signing key's
# public key), and both schedulers handled runs (their metrics).
set -euo pipefail

root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$root/tools/lib/stack.sh"
here=$root/tests/scale
nruns=${SW_SCALE_RUNS:-420}
rate=${SW_SCALE_RATE:-35}
want=${SW_SCALE_INFLIGHT:-300}
llm_ms=${SW_SCALE_LLM_MS:-20000}
faults=${*:-broker leader rolling kill pg}

work=$build/tests-tmp/scale-$$
rm -rf "$work"
mkdir -p "$work"
cli=$build/tools/cli/sagewai
fail() {
	echo "FAIL (scale): $*" >&2
	for f in "$work"/*.log "$work"/harness/kafka-*.log; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 10 "$f" >&2
	done
	exit 1
}
trap 'rm -f "$work/supervise"; sw_stack_stop "$work"' EXIT
[ -x /usr/bin/bwrap ] || fail "bubblewrap is missing: sandboxd cannot run"
H() { "$root/tests/harness/harness" "$@"; }

t=$(date +%s)
# a step in flight holds a worker slot and an LLM connection for llm_ms
echo "SAGEWAI_WORKER_CONCURRENCY=$((nruns))" >"$work/worker.env"
SW_STACK_BROKERS=3 SAGEWAI_LOG_LEVEL=warn \
	SW_STACK_LLM_ARGS="--delay-ms $llm_ms --max-connections $((4 * nruns))" \
	sw_stack_start "$work" "$build" real || fail "stack did not start"
grep -qx sandboxd "$work/services" || fail "sandboxd did not start"
for s in audit identity sandboxd worker scheduler; do
	grep -qx "$s" "$work/services" || continue
	sw_stack_start2 "$work" "$build" "$s" || fail "$s-2 did not start"
done
sw_stack_ready "$work" || fail "the scheduler has no partitions"
set -a
# shellcheck disable=SC1091
. "$work/stack.sh.env"
set +a
echo "stack: 3 brokers, $(grep -c -- '-2$' "$work/services") services twice," \
	"up in $(($(date +%s) - t)) s"

step() { # NAME MODE RUN-OR-PROMPT
	printf '  - name: %s\n    timeout: 60s\n    retries: 3\n    backoff: 200ms\n' "$1"
	case $2 in
	llm) printf '    uses: llm\n    with: {prompt: "%s"}\n' "$3" ;;
	sandboxed) printf '    mode: sandboxed\n    run: "%s"\n' "$3" ;;
	esac
}
{
	echo "name: mix"
	echo "steps:"
	step box sandboxed 'echo boxed ${{ input.n }}'
	step tell llm 'Tell ${{ steps.box.output.stdout }}'
} >"$work/mix.yaml"
{
	echo "name: plain"
	echo "steps:"
	step ask llm 'Say something about ${{ input.n }}'
} >"$work/plain.yaml"
"$cli" workflow apply "$work/mix.yaml" >/dev/null || fail "apply mix"
"$cli" workflow apply "$work/plain.yaml" >/dev/null || fail "apply plain"
# the probes: one sandboxed step and no LLM wait, a run every 0.5 s through
# each batch; their ends time the recovery
{
	echo "name: probe"
	echo "steps:"
	step echo sandboxed 'echo probe ${{ input.n }}'
} >"$work/probe.yaml"
"$cli" workflow apply "$work/probe.yaml" >/dev/null || fail "apply probe"
scheds="$SAGEWAI_URL,$(sw_stack_url "$work" scheduler-2)"
audits="$SAGEWAI_AUDIT_URL,$(sw_stack_url "$work" audit-2)"

instances() { grep -v '^llm-mock$' "$work/services"; }

fault() {
	local n s
	case $1 in
	broker)
		H kafka-kill "$work/harness" 2
		sleep 5
		H kafka-start "$work/harness" 2 >/dev/null
		;;
	leader)
		n=$(H kafka-leader "$work/harness" sagewai.steps 0)
		[ -n "$n" ] && [ "$n" != -1 ] || fail "no leader of sagewai.steps 0"
		echo "leader of sagewai.steps 0: broker $n"
		H kafka-kill "$work/harness" "$n"
		sleep 5
		H kafka-start "$work/harness" "$n" >/dev/null
		;;
	rolling)
		for s in $(instances); do
			sw_stack_restart "$work" "$s" || fail "$s did not come back"
		done
		;;
	kill)
		for s in scheduler worker-2 sandboxd audit-2 identity; do
			grep -qx "$s" "$work/services" || continue
			sw_stack_kill "$work" "$s" KILL
			sw_stack_restart "$work" "$s" || fail "$s did not come back"
		done
		;;
	pg) H pg-restart "$work/harness" >/dev/null ;;
	*) fail "no fault $1" ;;
	esac
}

# The supervisor (systemd's Restart=on-failure, Kubernetes' restartPolicy):
# an instance that exits by itself (a service stops on a fatal error, e.g.
# librdkafka's fatal idempotent-producer errors) is started again and named
# in WORK/supervisor.log, which is printed. Not while a fault is being
# injected (the fault restarts what it kills): each look holds the lock
# WORK/fault.lock, which the fault holds throughout.
supervise() {
	local s pid
	exec 8>"$work/fault.lock"
	while [ -f "$work/supervise" ]; do
		flock 8
		for s in $(instances); do
			pid=$(cat "$work/$s.pid" 2>/dev/null) || continue
			sw_pid_alive "$pid" && continue
			[ -f "$work/supervise" ] || break
			echo "supervisor: $s exited by itself (its last error:" \
				"$(grep '"level":"error"' "$work/$s.log" | tail -n 1 | cut -c1-300));" \
				"started again" >>"$work/supervisor.log"
			sw_stack_launch "$work" "$s" >/dev/null 2>&1 ||
				echo "supervisor: $s did not start" >>"$work/supervisor.log"
		done
		flock -u 8
		sleep 2
	done
}
touch "$work/supervise"
supervise &
sup=$!
exec 9>"$work/fault.lock"
: >"$work/runs"
: >"$work/supervisor.log"
# the runs not finished, and those finished, in the scheduler's table
runs_open_ended() {
	sw_pg_psql "$SAGEWAI_PG_DSN" <<<"SELECT count(*) FILTER (WHERE finished IS NULL),
		count(*) FILTER (WHERE finished IS NOT NULL) FROM scheduler.runs" 2>/dev/null |
		tr '|' ' '
}
for f in $faults; do
	read -r _ base < <(runs_open_ended) || fail "cannot count the runs"
	python3 "$here/runs.py" load "$nruns" "$work/runs.$f" "$work/t0.$f" 300 "$rate" \
		"$scheds" "$audits" >"$work/result.$f" 2>&1 &
	load=$!
	# the fault once $want runs are in flight, by the scheduler's table (the
	# feeds lag a little), and 20 of the batch have finished or all are
	# submitted
	open=0 ended=0 ready=0 peak=0
	until=$(($(date +%s) + 180))
	while [ "$(date +%s)" -lt $until ]; do
		read -r open ended < <(runs_open_ended) || true
		read -r sub _ 2>/dev/null <"$work/runs.$f.state" || sub=0
		[ "${open:-0}" -le $peak ] || peak=$open
		if [ "${open:-0}" -ge "$want" ] &&
			{ [ $((${ended:-0} - base)) -ge 20 ] || [ "$sub" -ge "$nruns" ]; }; then
			ready=1
			break
		fi
		# the load ended (a zombie until waited for)
		case $(ps -o stat= -p "$load" 2>/dev/null) in '' | Z*) break ;; esac
		sleep 0.2
	done
	ended=$((${ended:-0} - base))
	if [ $ready = 0 ]; then
		kill "$load" 2>/dev/null || true
		cat "$work/result.$f"
		fail "$f: never $want runs in flight (at most $peak; $open now, $ended of the" \
			"batch finished)"
	fi
	flock 9
	date +%s.%N >"$work/t0.tmp" && mv "$work/t0.tmp" "$work/t0.$f"
	echo "fault $f: injecting with $open runs in flight ($ended of the batch finished)"
	fault "$f"
	flock -u 9
	echo "fault $f: injected in $(echo "$(date +%s.%N) - $(cat "$work/t0.$f")" | bc | cut -c1-5) s"
	wait "$load" || { cat "$work/result.$f"; cat "$work/supervisor.log"; fail "$f"; }
	sed "s/^/$f: /" "$work/result.$f"
	cat "$work/runs.$f" >>"$work/runs"
	if [ -s "$work/supervisor.log" ]; then
		sed "s/^/$f: /" "$work/supervisor.log"
		: >"$work/supervisor.log"
	fi
	# the cluster whole again before the next fault
	H kafka-isr "$work/harness" 180 || fail "$f: replicas not back in sync"
done
rm -f "$work/supervise"
wait "$sup"

# both schedulers handled runs
for s in scheduler scheduler-2; do
	m=$(curl -fsS "$(sw_stack_url "$work" "$s")/metrics") || fail "$s metrics"
	sub=$(sed -n 's/^sagewai_scheduler_runs_submitted_total \([0-9]*\).*/\1/p' <<<"$m")
	con=$(sed -n 's/^sagewai_scheduler_events_consumed_total \([0-9]*\).*/\1/p' <<<"$m")
	echo "$s (since its last restart): runs submitted ${sub:-0}, events consumed ${con:-0}"
	[ "${con:-0}" -gt 0 ] || fail "$s consumed no events: the partitions are not shared"
done

# the audit logs and their shared index: wait until the union holds every
# run's end and the index every record, then check them
ids=$(cat "$work/data/audit/log-id"):$(cat "$work/data-2/audit/log-id") ||
	fail "no log-id files"
for _ in $(seq 1 120); do
	"$build/services/audit/sagewai-audit" dump "$work/data/audit" >"$work/dump-1" 2>&1 || true
	"$build/services/audit/sagewai-audit" dump "$work/data-2/audit" >"$work/dump-2" 2>&1 || true
	sw_pg_psql "$SAGEWAI_PG_DSN" >"$work/index" 2>&1 <<<"SELECT log_id || ' ' || event_id
		FROM audit.events WHERE kind = 1" || true
	python3 "$here/runs.py" audit "$work/runs" "$work/index" "$work/dump-1:${ids%%:*}" \
		"$work/dump-2:${ids#*:}" >"$work/audit.out" 2>&1 && break
	sleep 1
done
cat "$work/audit.out"
grep -q '^audit:' "$work/audit.out" || fail "audit logs"
for d in data data-2; do
	"$cli" audit verify "$work/$d/audit" --pubkeys "$work/audit.pub" ||
		fail "$d/audit does not verify"
done
for f in $faults; do
	echo "recovery after $f: $(sed -n 's/^RECOVERY //p' "$work/result.$f") s (a probe" \
		"took $(sed -n 's/^PROBEMAX //p' "$work/result.$f") s at most)," \
		"$(sed -n 's/^INFLIGHT //p' "$work/result.$f") runs in flight at the fault"
done
# No sandbox process may outlive the stack. A sandboxd killed mid-create
# can leave a bwrap child that no parent-death signal reaches; the next
# instance kills it with its cgroup at start (docs/SANDBOX.md, "Sandboxes
# of a dead instance"), and the last one destroys its own as it stops.
# Whatever is left is killed here, then the test fails.
rm -f "$work/supervise"
sw_stack_stop "$work"
left=
for _ in $(seq 1 100); do
	left=$(ps -eo pid=,etimes=,args= | awk -v t=$((SECONDS + 5)) \
		'$2 <= t && ($3 ~ /(^|\/)bwrap$/ || $3 ~ /toolrunner/) { print }')
	[ -z "$left" ] && break
	sleep 0.1
done
if [ -n "$left" ]; then
	awk '{ print $1 }' <<<"$left" | xargs -r kill -KILL 2>/dev/null || true
	fail "sandbox processes outlived the stack (killed now): $(cut -c1-200 <<<"$left")"
fi
echo "scale: $(wc -l <"$work/runs") runs, all succeeded, every step exactly once;" \
	"no sandbox process left ($(grep -c 'dead instance were still running' \
		"$work/sandboxd.log" || true) restarts of sandboxd killed a dead instance's)"
