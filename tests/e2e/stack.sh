#!/usr/bin/env bash
# tools/stack keeps its data across down and up: up, apply the example
# workflow and run it through the sagewai CLI (as README.md shows), down, up
# again (a new, empty embedded broker; the same PostgreSQL and audit log), and
# the run, its steps and its audit trail are all still there, and the
# restarted stack runs a new one. A private state directory; no harness.
set -euo pipefail

root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
export SW_BUILD_DIR=$build
export SAGEWAI_STACK_DIR=$build/tests-tmp/stack-$$
cli=$build/tools/cli/sagewai
stack=$root/tools/stack
rm -rf "$SAGEWAI_STACK_DIR"
mkdir -p "$build/tests-tmp"
unset SAGEWAI_LLM_BASE_URL SAGEWAI_LLM_API_KEY SAGEWAI_URL SAGEWAI_AUDIT_URL

fail() {
	echo "FAIL (stack): $*" >&2
	for f in "$SAGEWAI_STACK_DIR"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done
	exit 1
}
cleanup() {
	local rc=$?
	"$stack" down >/dev/null 2>&1 || true
	[ $rc -ne 0 ] || rm -rf "$SAGEWAI_STACK_DIR" "$SAGEWAI_STACK_DIR.env"
}
trap cleanup EXIT

"$stack" up >"$SAGEWAI_STACK_DIR.env" || fail "up"
eval "$(cat "$SAGEWAI_STACK_DIR.env")"
grep -q "^export SAGEWAI_URL=" "$SAGEWAI_STACK_DIR.env" || fail "up printed no SAGEWAI_URL"
"$stack" status || fail "status after up"

"$cli" workflow apply "$root/examples/hello.yaml" || fail "workflow apply"
out=$("$cli" run submit hello --input '{"brief": "a site that outlives its stack"}' --watch) ||
	fail "run submit: $out"
run=$(echo "$out" | grep -o '[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}' |
	head -n 1)
[ -n "$run" ] || fail "no run id in: $out"

# the audit trail complete before down: run.finished reached the audit log
audit_has_finish() {
	for _ in $(seq 1 100); do
		"$cli" --json audit run "$1" 2>/dev/null | grep -q '"run.finished"' && return 0
		sleep 0.1
	done
	return 1
}
audit_has_finish "$run" || fail "run.finished never reached the audit log"
"$cli" --json audit run "$run" >"$SAGEWAI_STACK_DIR/audit-before.json"

"$stack" down || fail "down"
if "$stack" status >/dev/null 2>&1; then fail "status says up after down"; fi

"$stack" up >"$SAGEWAI_STACK_DIR.env" || fail "up after down"
eval "$(cat "$SAGEWAI_STACK_DIR.env")"
"$cli" --json run show "$run" >"$SAGEWAI_STACK_DIR/run.json" || fail "run show after up"
python3 - "$SAGEWAI_STACK_DIR/run.json" <<-'PY' || fail "the run did not survive down and up"
	import json, sys
	r = json.load(open(sys.argv[1]))
	assert r["state"] == "succeeded", r["state"]
	assert [s["name"] for s in r["steps"]] == ["plan", "transform", "check", "summarise"], r["steps"]
	assert all(s["state"] == "succeeded" for s in r["steps"]), r["steps"]
PY
"$cli" --json audit run "$run" >"$SAGEWAI_STACK_DIR/audit-after.json" || fail "audit run after up"
python3 - "$SAGEWAI_STACK_DIR/audit-before.json" "$SAGEWAI_STACK_DIR/audit-after.json" <<-'PY' ||
	import json, sys
	ids = lambda f: [e["event"]["header"]["event_id"] for e in json.load(open(f))["events"] if "event" in e]
	before, after = ids(sys.argv[1]), ids(sys.argv[2])
	assert before and set(before) <= set(after), "audit events lost: %d before, %d after" % (len(before), len(after))
PY
	fail "the audit trail did not survive down and up"
"$cli" audit verify "$SAGEWAI_DATA_DIR/audit" | grep -q '^ok' || fail "audit verify after up"

# and the restarted stack (a new, empty broker) still runs workflows
out=$("$cli" run submit hello --input '{"brief": "after the restart"}' --watch) ||
	fail "run after up: $out"
"$stack" down || fail "down"
echo "stack: ok (run $run and its audit trail survived down and up)"
