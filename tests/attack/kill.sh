#!/usr/bin/env bash
# kill -9 of each service (audit, scheduler, worker, sandboxd) in the middle
# of a run, then a restart: the run succeeds, each of its steps' effects is
# once in the audit log, and the audit chain verifies.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start
[ -f "$work/sandboxd.port" ] || attack_fail "sandboxd is not running (bwrap unusable here?)"
cat >"$work/midrun.yaml" <<-'EOF2'
	name: midrun
	steps:
	  - name: first
	    uses: template
	    with: {value: "${{ input.n }}"}
	  - name: slow
	    mode: sandboxed
	    timeout: 30s
	    run: "sleep 2; echo slept"
	  - name: last
	    uses: template
	    with: {value: "done ${{ steps.slow.output.stdout }}"}
EOF2
"$cli" workflow apply "$work/midrun.yaml" >/dev/null || attack_fail "apply"

state_of() { "$cli" --json run show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }

# kill_mid VICTIM: kill -9 VICTIM while the sandboxed step sleeps, restart it
kill_mid() {
	local victim=$1 run state
	run=$("$cli" --json run submit midrun --input '{"n": 1}' |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])') || return 1
	for _ in $(seq 1 100); do
		"$cli" --json run show "$run" | python3 -c '
import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["steps"][1]["state"] in ("running","dispatched") else 1)' && break
		sleep 0.1
	done
	sw_stack_kill "$work" "$victim" KILL
	sleep 0.3
	sw_stack_restart "$work" "$victim" || {
		echo "$victim did not come back" >&2
		return 1
	}
	for _ in $(seq 1 300); do
		state=$(state_of "$run" 2>/dev/null || echo unknown)
		case "$state" in succeeded | failed | cancelled) break ;; esac
		sleep 0.2
	done
	[ "$state" = succeeded ] || {
		echo "run $run is $state after kill -9 of $victim" >&2
		return 1
	}
	# each step's outcome once in the audit log: a restarted audit catches
	# up first (up to a minute), then stragglers get a second
	for _ in $(seq 1 300); do
		"$cli" --json audit run "$run" 2>/dev/null | grep -q '"run.finished"' && break
		sleep 0.2
	done
	sleep 1
	"$cli" --json audit run "$run" | python3 -c '
import json, sys, collections
d = json.load(sys.stdin)
evs = [e["event"] for e in d["events"] if "event" in e]
fin = collections.Counter(e["step"] for e in evs
                          if e["header"]["type"] == "step.finished" and e["status"] == "SUCCEEDED")
ids = [e["header"]["event_id"] for e in evs]
assert len(ids) == len(set(ids)), "an event id twice"
assert sorted(fin) == ["first", "last", "slow"] and set(fin.values()) == {1}, fin
assert sum(1 for e in evs if e["header"]["type"] == "run.finished") == 1
' || {
		echo "audit trail of $run is not once per step" >&2
		return 1
	}
}

for victim in audit scheduler worker sandboxd; do
	attempt "kill9-$victim" "kill -9 of $victim mid-run, then a restart" kill_mid "$victim"
done
verify() {
	"$cli" audit verify "$SAGEWAI_DATA_DIR/audit" | grep -q '^ok' || {
		echo "audit verify failed" >&2
		return 1
	}
}
attempt audit-chain "the audit chain verifies after the kills" verify
attack_done
