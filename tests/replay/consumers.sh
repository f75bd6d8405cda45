#!/usr/bin/env bash
# The consumers of the audit trail over a real run: the stack (audit,
# scheduler, worker, llm-mock) on the harness's Kafka and PostgreSQL runs a
# three-step workflow through the CLI, and then
#
#   * `sagewai audit tail --follow`, started before the run, from the audit
#     service and from the log directory, printed each of the run's events,
#     in log order;
#   * `sagewai audit tail` without --follow (lines, --run, --type, --json,
#     --log) prints exactly what the audit service holds for the run;
#   * the Python consumer (examples/consumers/run_summary.py, confluent-kafka
#     and fastavro, the .avsc files alone) reads the sagewai topics and its
#     per-run summary matches the audit trail: events per type, first and
#     last time, final state;
#   * an unreachable audit service is an error, not an empty tail.
set -euo pipefail

root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$root/tools/lib/stack.sh"

while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"

work=$build/tests-tmp/consumers-$$
rm -rf "$work"
mkdir -p "$work"
cli=$build/tools/cli/sagewai
pids=()
fail() {
	echo "FAIL (consumers): $*" >&2
	for f in "$work"/*.log "$work"/*.err; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 15 "$f" >&2
	done
	exit 1
}
cleanup() {
	local rc=$? p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	sw_stack_stop "$work"
	[ $rc -ne 0 ] || rm -rf "$work"
}
trap cleanup EXIT

export SW_STACK_SANDBOXD=0
sw_stack_start "$work" "$build" env || fail "stack did not start"
set -a
# shellcheck disable=SC1091
. "$work/stack.sh.env"
set +a

# followers first: every event logged from now on
"$cli" --json audit tail --follow --lines 0 >"$work/follow-api.jsonl" 2>"$work/follow-api.err" &
pids+=($!)
"$cli" --json audit tail --follow --lines 0 --log "$SAGEWAI_DATA_DIR/audit" \
	>"$work/follow-dir.jsonl" 2>"$work/follow-dir.err" &
pids+=($!)
sleep 2

cat >"$work/three.yaml" <<-'EOF'
	name: three
	steps:
	  - name: first
	    uses: template
	    with: {value: "${{ input.n }}"}
	  - name: think
	    uses: llm
	    timeout: 30s
	    with: {prompt: "Summarise ${{ steps.first.output }}"}
	  - name: last
	    uses: template
	    with: {value: "done ${{ steps.think.output }}"}
EOF
"$cli" workflow apply "$work/three.yaml" >/dev/null || fail "workflow apply"
out=$("$cli" run submit three --input '{"n": 7}' --watch 2>&1) || fail "run: $out"
run=$(echo "$out" | grep -o '[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}' |
	head -n 1)
[ -n "$run" ] || fail "no run id in: $out"

# the whole trail in the audit log (run.finished, each step.finished)
for _ in $(seq 1 150); do
	"$cli" --json audit run "$run" >"$work/trail.json" 2>/dev/null || true
	python3 - "$work/trail.json" <<-'PY' && break
		import json, sys
		ev = [e["event"]["header"]["type"] for e in json.load(open(sys.argv[1]))["events"]]
		sys.exit(0 if "run.finished" in ev and ev.count("step.finished") == 3 else 1)
	PY
	sleep 0.2
done
sleep 1 # stragglers
"$cli" --json audit run "$run" >"$work/trail.json" || fail "audit run"

# check NAME FILE PYTHON: run PYTHON with the trail and FILE
check() {
	python3 - "$work/trail.json" "$2" "$run" <<<"$3" || fail "$1"
	echo "ok: $1"
}
common='
import collections, json, sys
trail = json.load(open(sys.argv[1]))["events"]
run = sys.argv[3]
seqs = [e["seq"] for e in trail]
assert len(seqs) >= 8 and seqs == sorted(seqs), seqs
def lines(path):
    return [json.loads(l) for l in open(path) if l.strip()]
def of_run(items):
    return [i["seq"] for i in items if i.get("event", {}).get("header", {}).get("run_id") == run]
'

# the followers saw every event of the run, in order
for src in api dir; do
	for _ in $(seq 1 50); do
		python3 -c "$common
got = of_run(lines(sys.argv[2]))
sys.exit(0 if len(got) >= len(seqs) else 1)" "$work/trail.json" "$work/follow-$src.jsonl" "$run" &&
			break
		sleep 0.2
	done
	check "audit tail --follow ($src) printed the run's events as they came" \
		"$work/follow-$src.jsonl" "$common
got = of_run(lines(sys.argv[2]))
assert got == seqs, (got, seqs)"
done

"$cli" audit tail --run "$run" --lines 100 >"$work/tail.txt" || fail "audit tail"
check "audit tail --run: one readable line per event" "$work/tail.txt" "$common
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
assert len(rows) == len(trail), (len(rows), len(trail))
for row, e in zip(rows, trail):
    # date time seq type run step summary...
    assert int(row[2]) == e['seq'] and row[3] == e['event']['header']['type'], (row, e)
    assert row[4] == run, row
fin = [r for r in rows if r[3] == 'run.finished']
assert len(fin) == 1 and fin[0][6] == 'SUCCEEDED', fin
steps = [r[5] for r in rows if r[3] == 'step.finished']
assert steps == ['first', 'think', 'last'], steps"

"$cli" --json audit tail --run "$run" --type step.finished --type run.finished \
	>"$work/tail-types.jsonl" || fail "audit tail --type"
check "audit tail --type (twice) --json" "$work/tail-types.jsonl" "$common
want = [e['seq'] for e in trail if e['event']['header']['type'] in ('step.finished', 'run.finished')]
got = [i['seq'] for i in lines(sys.argv[2])]
assert got == want and len(want) == 4, (got, want)"

"$cli" --json audit tail --run "$run" --lines 2 >"$work/tail-2.jsonl" || fail "audit tail -n"
check "audit tail --lines 2: the newest two" "$work/tail-2.jsonl" "$common
assert [i['seq'] for i in lines(sys.argv[2])] == seqs[-2:]"

"$cli" --json audit tail --log "$SAGEWAI_DATA_DIR/audit" --run "$run" --lines 100 \
	>"$work/tail-dir.jsonl" || fail "audit tail --log"
check "audit tail --log DIR: the same events as the service" "$work/tail-dir.jsonl" "$common
items = lines(sys.argv[2])
assert [i['seq'] for i in items] == seqs
assert [i['event'] for i in items] == [e['event'] for e in trail]"

# the Python consumer, from the topics and the .avsc files alone
python3 "$root/examples/consumers/run_summary.py" --from-beginning --run "$run" --idle 3 \
	--max-seconds 120 --json >"$work/summary.json" 2>"$work/summary.err" ||
	fail "run_summary.py"
check "the Python consumer's summary matches the audit trail" "$work/summary.json" "$common
s = json.load(open(sys.argv[2]))
assert s['undecodable'] == 0 and list(s['runs']) == [run], s
r = s['runs'][run]
types = collections.Counter(e['event']['header']['type'] for e in trail)
times = [e['event']['header']['time'] for e in trail]
assert r['events'] == len(trail), (r['events'], len(trail))
assert r['types'] == dict(types), (r['types'], types)
assert r['first_us'] == min(times) and r['last_us'] == max(times), r
assert r['state'] == 'succeeded', r"

if out=$(SAGEWAI_AUDIT_URL=http://127.0.0.1:1 "$cli" audit tail 2>&1); then
	fail "audit tail without an audit service succeeded: $out"
fi
echo "$out" | grep -q "cannot reach" || fail "unreachable audit service: $out"
echo "ok: an unreachable audit service is an error"
echo "consumers: ok"
