#!/usr/bin/env bash
# kill -9 of an executor mid-step, restarted at once, again and again: the
# whole stack on the harness's Kafka and PostgreSQL, with the executors'
# own consumer settings (no test tuning) and static group membership
# (SAGEWAI_INSTANCE_ID).
#
#   restart.sh [N]   N (20) rounds for the worker, then N for sandboxd: a run
#                    of an in-process, a sandboxed and an in-process step
#                    (each takes a moment) is submitted; once the victim's
#                    step is running the victim is killed with SIGKILL and
#                    restarted. Then:
#                      - every run succeeded;
#                      - from the audit log: no step.started and no
#                        sandbox.acquired after its run's run.finished, and
#                        no step.started after its attempt's deadline
#                        (step.dispatched's time + timeout_ms): nothing ran
#                        once its attempt or its run was over.
#                    It prints, per victim, how long from the kill until the
#                    interrupted step finished (the restarted member has its
#                    partitions back and ran it again).
set -euo pipefail

rounds=${1:-20}
root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$root/tools/lib/stack.sh"

while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"

work=$build/tests-tmp/e2e-restart-$$
rm -rf "$work"
mkdir -p "$work"
cli=$build/tools/cli/sagewai
fail() {
	echo "FAIL (restart): $*" >&2
	for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done
	exit 1
}
trap 'sw_stack_stop "$work"' EXIT
[ -x /usr/bin/bwrap ] || fail "bubblewrap is missing: sandboxd cannot run"

echo "SAGEWAI_INSTANCE_ID=e2e-worker-$$" >>"$work/worker.env"
echo "SAGEWAI_INSTANCE_ID=e2e-sandboxd-$$" >>"$work/sandboxd.env"
# every llm completion takes 2 s: "mid-step" is easy to hit
SW_STACK_LLM_ARGS="--delay-ms 2000" sw_stack_start "$work" "$build" env || fail "stack did not start"
grep -qx sandboxd "$work/services" || fail "sandboxd did not start"
set -a
# shellcheck disable=SC1091
. "$work/stack.sh.env"
set +a

cat >"$work/fence.yaml" <<-'EOF'
	name: fence
	steps:
	  - name: ask
	    uses: llm
	    timeout: 15s
	    retries: 2
	    backoff: 100ms
	    with: {prompt: "Say something about ${{ input.n }}"}
	  - name: box
	    mode: sandboxed
	    timeout: 15s
	    retries: 2
	    backoff: 100ms
	    run: "sleep 2; echo boxed"
	  - name: tell
	    uses: llm
	    timeout: 15s
	    retries: 2
	    backoff: 100ms
	    with: {prompt: "Tell ${{ steps.box.output.stdout }}"}
EOF
"$cli" workflow apply "$work/fence.yaml" >/dev/null

# step_state RUN IDX: the state of step IDX of RUN (straight from the API:
# the poll must be quicker than a step)
step_state() {
	curl -fsS "$SAGEWAI_URL/v1/runs/$1" | python3 -c '
import json, sys; r = json.load(sys.stdin); print(r["steps"][int(sys.argv[1])]["state"])' "$2"
}

now() { date +%s.%N; }

: >"$work/runs"
: >"$work/times"
for victim in worker sandboxd; do
	case $victim in worker) idx=0 ;; sandboxd) idx=1 ;; esac
	for i in $(seq 1 "$rounds"); do
		# a run whose step went by between two polls is not a round
		for try in 1 2 3; do
			run=$("$cli" --json run submit fence --input "{\"n\": $i}" |
				python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
			echo "$run" >>"$work/runs"
			state=
			for _ in $(seq 1 300); do
				state=$(step_state "$run" "$idx")
				case $state in running | succeeded | failed | timed_out) break ;; esac
				sleep 0.05
			done
			[ "$state" = running ] && break
			[ "$try" = 3 ] && fail "round $i: step $idx of $run never seen running ($state)"
		done
		sw_stack_kill "$work" "$victim" KILL
		t0=$(now)
		sw_stack_restart "$work" "$victim" || fail "$victim did not come back"
		for _ in $(seq 1 600); do
			state=$(step_state "$run" "$idx")
			case $state in running | dispatched | retrying) ;; *) break ;; esac
			sleep 0.05
		done
		echo "$victim $(echo "$(now) - $t0" | bc)" >>"$work/times"
		[ "$state" = succeeded ] || fail "round $i: step $idx of $run ended $state after the kill"
	done
done

# every run ends, and succeeds
for run in $(cat "$work/runs"); do
	state=
	for _ in $(seq 1 600); do
		state=$("$cli" --json run show "$run" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
		case $state in succeeded | failed | cancelled) break ;; esac
		sleep 0.1
	done
	[ "$state" = succeeded ] || fail "run $run ended $state"
done

# the audit log: nothing started once its attempt or its run was over
for run in $(cat "$work/runs"); do
	for _ in $(seq 1 100); do
		"$cli" --json audit run "$run" >"$work/audit.json" 2>/dev/null &&
			grep -q run.finished "$work/audit.json" && break
		sleep 0.2
	done
	python3 - "$work/audit.json" "$run" <<-'EOF' || fail "run $run: something ran late"
		import json, sys
		d = json.load(open(sys.argv[1]))
		evs = [e["event"] for e in d["events"] if "event" in e]
		def t(e):
		    return int(e["header"]["time"])
		def kind(e):
		    return e["header"]["type"]
		fin = [t(e) for e in evs if kind(e) == "run.finished"]
		assert len(fin) == 1, "run.finished %d times" % len(fin)
		end = fin[0]
		deadline = {}
		for e in evs:
		    if kind(e) == "step.dispatched" and e["timeout_ms"] > 0:
		        deadline[e["header"]["step_id"]] = t(e) + e["timeout_ms"] * 1000
		for e in evs:
		    if kind(e) in ("step.started", "sandbox.acquired"):
		        assert t(e) <= end, "%s of %s %d us after run.finished" % (
		            kind(e), e["header"]["step_id"], t(e) - end)
		    if kind(e) == "step.started":
		        dl = deadline.get(e["header"]["step_id"])
		        assert dl is None or t(e) < dl, "step.started of %s after its deadline" % (
		            e["header"]["step_id"])
	EOF
done

python3 - "$work/times" <<-'EOF'
	import sys, collections
	by = collections.defaultdict(list)
	for line in open(sys.argv[1]):
	    v, s = line.split()
	    by[v].append(float(s))
	for v, xs in by.items():
	    xs.sort()
	    print("%s: %d kills; kill to the interrupted step's end: median %.2f s, max %.2f s"
	          % (v, len(xs), xs[len(xs) // 2], xs[-1]))
EOF
echo "e2e restart: $(wc -l <"$work/runs") runs, all succeeded; nothing started after its attempt or run was over"
