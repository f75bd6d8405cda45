#!/usr/bin/env bash
# sagewai replay run over a real run of the whole stack (audit, scheduler,
# worker, llm-mock, sandboxd, identity on the harness's Kafka and
# PostgreSQL): a workflow mixing in-process (template, llm), sandboxed and
# identity_scoped steps runs once; then
#
#   equal    with llm-mock stopped (a model or URL call would fail the step;
#            the http step reads llm-mock's /v1/models), the
#            re-run is identical step by step, linked to the original
#            (GET /v1/runs replay_of, run.submitted.replay_of in the audit
#            log), its sandboxed and identity_scoped steps ran again
#            (sandbox.* and identity.injected events of the new run), the
#            identity step got the original's secret version
#   changed  the workflow re-registered with another sandboxed command:
#            replay run --latest shows that step changed with a unified diff
#            of its output (the old line removed, the new one added), the
#            others the same, exit 1
#   refused  an llm step whose request changed fails without calling the
#            model; a missing run, a hostile replay field: clear errors
#   pinned   the secret rotated since: the re-run's identity step still gets
#            the original's version (its output, a hash of the value, is the
#            original's; step.dispatched.identity of the re-run says v1)
#            while a new run gets v2; that version revoked since: the re-run
#            fails closed (409 revoked, nothing stored), destroyed since
#            (secret delete): 409 version_gone
#   gate     the scheduler in multi_tenant mode without
#            SAGEWAI_SEALED_PREVIEW=1: the re-run of the identity-bearing
#            run is refused by the preview gate (403) before any step is
#            dispatched, nothing stored
set -euo pipefail

root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$root/tools/lib/stack.sh"

while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"

work=$build/tests-tmp/rerun-$$
rm -rf "$work"
mkdir -p "$work/values"
chmod 700 "$work/values"
cli=$build/tools/cli/sagewai
uuid_re='[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}'
fail() {
	echo "FAIL (rerun): $*" >&2
	for f in "$work"/*.log "$work"/*.out; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 20 "$f" >&2
	done
	exit 1
}
cleanup() {
	local rc=$?
	sw_stack_stop "$work"
	[ $rc -ne 0 ] || rm -rf "$work"
}
trap cleanup EXIT

[ -x /usr/bin/bwrap ] || fail "bubblewrap is missing: sandboxed steps need sandboxd"
# the http step reads llm-mock on the loopback
echo "SAGEWAI_HTTP_ALLOW=127.0.0.1" >"$work/worker.env"
sw_stack_start "$work" "$build" env || fail "stack did not start"
sw_stack_ready "$work" || fail "the scheduler got no partitions"
set -a
# shellcheck disable=SC1091
. "$work/stack.sh.env"
set +a
[ -n "${SAGEWAI_IDENTITY_URL:-}" ] || fail "identity is not running"
[ -n "${SAGEWAI_SANDBOXD_URL:-}" ] || fail "sandboxd is not running"
SAGEWAI_ADMIN_TOKEN=$(cat "$work/secrets/identity/admin.token")
export SAGEWAI_ADMIN_TOKEN

# the trail of run $1 holds $2 (python expression over `types`, a Counter)
trail_has() {
	local _
	for _ in $(seq 1 150); do
		"$cli" --json audit run "$1" >"$work/trail.json" 2>/dev/null || true
		python3 - "$work/trail.json" "$2" <<-'PY' && return 0
			import collections, json, sys
			ev = json.load(open(sys.argv[1]))["events"]
			types = collections.Counter(e["event"]["header"]["type"] for e in ev)
			sys.exit(0 if eval(sys.argv[2]) else 1)
		PY
		sleep 0.2
	done
	return 1
}
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/values/v1")
"$cli" secret set rr_key --from-file "$work/values/v1" >/dev/null || fail "secret set"
"$cli" identity profile set rrp --key RR_KEY=secret:rr_key >/dev/null || fail "profile set"

# mixed VERB VERSION: the workflow, its sandboxed step printing VERB
mixed() {
	cat <<-EOF
		name: mixed
		version: $2
		steps:
		  - name: first
		    uses: template
		    with: {value: "\${{ input.n }}"}
		  - name: think
		    uses: llm
		    timeout: 30s
		    with: {prompt: "Summarise \${{ steps.first.output }}"}
		  - name: models
		    uses: http
		    timeout: 30s
		    with: {url: "\${{ input.models }}", method: GET}
		  - name: build
		    mode: sandboxed
		    run: [sh, -c, 'echo "$1: \$0"', "\${{ steps.first.output }}"]
		  - name: sealed
		    mode: identity_scoped
		    identity: rrp
		    run: [python3, -c, "import hashlib, os; print(hashlib.sha256(os.environ['RR_KEY'].encode()).hexdigest())"]
	EOF
}
mixed built 1 >"$work/mixed.yaml"
"$cli" workflow apply "$work/mixed.yaml" >/dev/null || fail "workflow apply"
input="{\"n\": 7, \"models\": \"$SAGEWAI_LLM_BASE_URL/models\"}"
out=$("$cli" run submit mixed --input "$input" --watch 2>&1) || fail "run: $out"
orig=$(echo "$out" | grep -o "$uuid_re" | head -n 1)
[ -n "$orig" ] || fail "no run id in: $out"
trail_has "$orig" 'types["run.finished"] == 1 and types["step.finished"] == 5' ||
	fail "the original's trail is incomplete"
want_sha=$(printf %s "$(cat "$work/values/v1")" | sha256sum | cut -d' ' -f1)

# ---- equal: llm-mock down, the re-run identical --------------------------
sw_stack_kill "$work" llm-mock TERM
"$cli" replay run "$orig" >"$work/equal.out" 2>&1 || fail "replay run: $(cat "$work/equal.out")"
grep -q "5 steps: 5 same, 0 changed -- identical to the original" "$work/equal.out" ||
	fail "not identical: $(cat "$work/equal.out")"
"$cli" --json replay run "$orig" >"$work/equal.json" 2>"$work/equal.err" ||
	fail "replay run --json: $(cat "$work/equal.json" "$work/equal.err")"
python3 - "$work/equal.json" "$orig" "$want_sha" <<-'PY' || fail "the JSON comparison"
	import json, sys
	d = json.load(open(sys.argv[1]))
	assert d["identical"] and d["original"] == sys.argv[2] and d["changed"] == 0, d
	assert [s["step"] for s in d["steps"]] == ["first", "think", "models", "build", "sealed"], d
	assert all(s["same"] and s["rerun"]["status"] == "succeeded" for s in d["steps"]), d
	modes = {s["step"]: s["mode"] for s in d["steps"]}
	assert modes == {"first": "in_process", "think": "in_process", "models": "in_process",
	                 "build": "sandboxed",
	                 "sealed": "identity_scoped"}, modes
	steps = {s["step"]: s for s in d["steps"]}
	assert "mock-1" in json.dumps(steps["models"]["rerun"]["output"]), steps["models"]
	assert steps["build"]["rerun"]["output"]["stdout"] == "built: 7\n", steps["build"]
	assert steps["sealed"]["rerun"]["output"]["stdout"].strip() == sys.argv[3], steps["sealed"]
	assert d["original_s"] > 0 and d["rerun_s"] > 0, d
	print(d["run_id"])
PY
rerun=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$work/equal.json")
"$cli" --json run show "$rerun" >"$work/show.json" || fail "run show"
[ "$(jq_ "$work/show.json" 'd["replay_of"]')" = "$orig" ] || fail "replay_of: $(cat "$work/show.json")"
trail_has "$rerun" 'types["run.finished"] == 1 and types["sandbox.exited"] >= 2 and types["identity.injected"] == 1' ||
	fail "the re-run's sandboxed steps did not run again"
python3 - "$work/trail.json" "$orig" <<-'PY' || fail "run.submitted.replay_of"
	import json, sys
	ev = [e["event"] for e in json.load(open(sys.argv[1]))["events"]]
	sub = [e for e in ev if e["header"]["type"] == "run.submitted"]
	assert len(sub) == 1 and sub[0]["replay_of"] == sys.argv[2], sub
	for step in ("think", "models"):
	    fin = [e for e in ev if e["header"]["type"] == "step.finished" and e["step"] == step]
	    assert len(fin) == 1 and fin[0]["status"] == "SUCCEEDED", fin
PY
echo "ok: equal (llm and http answered from the record with llm-mock down; sandboxed and identity ran again)"

# ---- changed: another sandboxed command ----------------------------------
mixed rebuilt 2 >"$work/mixed2.yaml"
"$cli" workflow apply "$work/mixed2.yaml" >"$work/apply.out" 2>&1 || fail "workflow apply v2"
if "$cli" replay run "$orig" --latest >"$work/changed.out" 2>&1; then
	fail "a changed step exited 0: $(cat "$work/changed.out")"
fi
python3 - "$work/changed.out" <<-'PY' || fail "the diff: $(cat "$work/changed.out")"
	import re, sys
	t = open(sys.argv[1]).read()
	rows = {m.group(1): m.group(2) for m in re.finditer(r"^  (\w+) +\w+ +(same|changed)$", t, re.M)}
	assert rows == {"first": "same", "think": "same", "models": "same", "build": "changed",
	                "sealed": "same"}, rows
	assert "--- original/build" in t and "+++ rerun/build" in t, t
	assert re.search(r'^ +-    "stdout": "built: 7\\n"', t, re.M), t
	assert re.search(r'^ +\+    "stdout": "rebuilt: 7\\n"', t, re.M), t
	assert "5 steps: 4 same, 1 changed" in t, t
PY
# the original version still re-runs identically; the trail read from the
# log directory (the chain checked) works as the service's
"$cli" replay run "$orig" --log "$SAGEWAI_DATA_DIR/audit" >"$work/equal2.out" 2>&1 ||
	fail "v1 re-run from the log: $(cat "$work/equal2.out")"
grep -q "5 steps: 5 same, 0 changed" "$work/equal2.out" || fail "--log: $(cat "$work/equal2.out")"
if out=$("$cli" replay run "$orig" --log "$work/no-such-log" 2>&1); then
	fail "a missing log directory re-ran: $out"
fi
echo "ok: changed (the sandboxed step's diff shown, the rest the same)"

# ---- refused ------------------------------------------------------------
# an llm step whose request changed: fails, the model not called
sed 's/Summarise/Condense/; s/^version: 1/version: 3/' "$work/mixed.yaml" >"$work/mixed3.yaml"
"$cli" workflow apply "$work/mixed3.yaml" >/dev/null || fail "workflow apply v3"
if "$cli" --json replay run "$orig" --latest >"$work/llm.json" 2>"$work/llm.err"; then
	fail "a changed llm request re-ran"
fi
python3 - "$work/llm.json" <<-'PY' || fail "changed llm request: $(cat "$work/llm.json")"
	import json, sys
	d = json.load(open(sys.argv[1]))
	s = {x["step"]: x for x in d["steps"]}
	assert s["first"]["same"] and not s["think"]["same"], s
	err = s["think"]["rerun"]["error"]
	assert "replay: step think asks another request" in err and "model" in err, err
	assert s["build"]["rerun"]["status"] == "not run", s["build"]
PY
sw_stack_restart "$work" llm-mock

# nothing to re-run
if out=$("$cli" replay run 01900000-0000-7000-8000-000000000000 2>&1); then
	fail "a missing run re-ran: $out"
fi
echo "$out" | grep -q "no run.submitted" || fail "missing run: $out"
# hostile replay fields straight to the API: 400, nothing stored
n0=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
for body in '{"of": "x", "steps": {}}' \
	"{\"of\": \"$orig\", \"steps\": {\"think\": {\"request\": {}}}}" \
	"{\"of\": \"$orig\", \"steps\": {\"think\": {\"status\": \"MAYBE\"}}}" \
	"{\"of\": \"$orig\", \"steps\": {\"x\": {\"shell\": 1}}}" \
	"{\"of\": \"$orig\", \"steps\": [], \"more\": 1}"; do
	code=$(curl -s -o "$work/bad.json" -w '%{http_code}' -X POST "$SAGEWAI_URL/v1/runs" \
		-H 'Content-Type: application/json' \
		--data "{\"workflow\": \"mixed\", \"input\": $input, \"replay\": $body}")
	[ "$code" = 400 ] && grep -q '"replay: ' "$work/bad.json" ||
		fail "hostile replay $body: $code $(cat "$work/bad.json")"
done
# another tenant's (or no) run as the original: 404
code=$(curl -s -o "$work/bad.json" -w '%{http_code}' -X POST "$SAGEWAI_URL/v1/runs" \
	-H 'Content-Type: application/json' --data \
	"{\"workflow\": \"mixed\", \"version\": 1, \"input\": $input, \"replay\": {\"of\": \"01900000-0000-7000-8000-000000000000\", \"steps\": {}}}")
[ "$code" = 404 ] && grep -q "to re-run" "$work/bad.json" || fail "unknown original: $code"
n1=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
[ "$n0" = "$n1" ] || fail "a refused re-run was stored ($n0 -> $n1 runs)"

echo "ok: refused (changed llm request, missing run, hostile fields)"

# ---- pinned: rotated, revoked, destroyed since the original -------------
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/values/v2")
"$cli" secret rotate rr_key --from-file "$work/values/v2" >/dev/null || fail "secret rotate"
v2_sha=$(printf %s "$(cat "$work/values/v2")" | sha256sum | cut -d' ' -f1)
# a new run gets the new version ...
out=$("$cli" run submit mixed --version 1 --input "$input" --watch 2>&1) || fail "run after rotate: $out"
fresh=$(echo "$out" | grep -o "$uuid_re" | head -n 1)
"$cli" --json run show "$fresh" >"$work/fresh.json" || fail "run show $fresh"
python3 - "$work/fresh.json" "$v2_sha" <<-'PY' || fail "the new run did not get v2: $(cat "$work/fresh.json")"
	import json, sys
	d = json.load(open(sys.argv[1]))
	s = {x["name"]: x for x in d["steps"]}["sealed"]
	o = json.loads(s["output"]) if isinstance(s["output"], str) else s["output"]
	assert o["stdout"].strip() == sys.argv[2], s
PY
# ... the re-run the original's, and the step output is the original's
"$cli" --json replay run "$orig" >"$work/pinned.json" 2>"$work/pinned.err" ||
	fail "re-run after rotate: $(cat "$work/pinned.json" "$work/pinned.err")"
python3 - "$work/pinned.json" "$want_sha" <<-'PY' || fail "pinned: $(cat "$work/pinned.json")"
	import json, sys
	d = json.load(open(sys.argv[1]))
	assert d["identical"] and d["changed"] == 0, d
	s = {x["step"]: x for x in d["steps"]}["sealed"]
	assert s["same"] and s["rerun"]["output"]["stdout"].strip() == sys.argv[2], s
PY
rerun=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$work/pinned.json")
trail_has "$rerun" 'types["run.finished"] == 1 and types["identity.injected"] == 1' ||
	fail "the pinned re-run's trail is incomplete"
python3 - "$work/trail.json" <<-'PY' || fail "the audit log does not show the pinned version"
	import json, sys
	ev = [e["event"] for e in json.load(open(sys.argv[1]))["events"]]
	d = [e for e in ev if e["header"]["type"] == "step.dispatched" and e["step"] == "sealed"]
	keys = json.loads(d[-1]["identity"])
	assert [(k["env"], k["secret"], k["version"]) for k in keys] == [("RR_KEY", "rr_key", 1)], keys
PY
echo "ok: pinned (rotated since: the re-run got v1 and the original's output, a new run v2)"

n1=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
# that version revoked since: fails closed before anything runs
"$cli" secret revoke rr_key --version 1 >/dev/null || fail "secret revoke --version 1"
if out=$("$cli" replay run "$orig" 2>&1); then fail "re-ran with a revoked secret: $out"; fi
echo "$out" | grep -q "revoked: RR_KEY (secret rr_key v1)" || fail "revoked: $out"
# destroyed since: gone
"$cli" secret delete rr_key >/dev/null || fail "secret delete"
if out=$("$cli" replay run "$orig" 2>&1); then fail "re-ran with a destroyed secret: $out"; fi
echo "$out" | grep -q "version_gone" && echo "$out" | grep -q "RR_KEY (secret rr_key v1): its value was destroyed" ||
	fail "destroyed: $out"
n2=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
[ "$n1" = "$n2" ] || fail "a refused re-run was stored ($n1 -> $n2 runs)"
echo "ok: refused (revoked, destroyed since: fails closed, nothing stored)"

# ---- gate: multi_tenant without SAGEWAI_SEALED_PREVIEW ----------------
admin=adm-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf "SAGEWAI_MODE=multi_tenant\nSAGEWAI_ADMIN_TOKEN=%s\n" "$admin" >>"$work/scheduler.env"
sw_stack_restart "$work" scheduler || fail "scheduler restart"
sw_stack_ready "$work" || fail "the scheduler got no partitions"
key=$(SAGEWAI_ADMIN_TOKEN=$admin "$cli" --json tenant create acme |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])') || fail "tenant"
SAGEWAI_TOKEN=$key "$cli" workflow apply "$work/mixed.yaml" >/dev/null || fail "acme apply"
before=$("$cli" --json audit tail --type step.dispatched --lines 1000 | wc -l)
if out=$(SAGEWAI_TOKEN=$key "$cli" replay run "$orig" 2>&1); then
	fail "the preview gate let a re-run through: $out"
fi
echo "$out" | grep -q "preview_gate, HTTP 403" || fail "gate: $out"
echo "$out" | grep -q "step 'sealed' runs in mode identity_scoped" || fail "gate message: $out"
[ "$(SAGEWAI_TOKEN=$key "$cli" --json run list |
	python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')" = 0 ] ||
	fail "a gated re-run was stored"
sleep 1
after=$("$cli" --json audit tail --type step.dispatched --lines 1000 | wc -l)
[ "$before" = "$after" ] || fail "a step was dispatched for a gated re-run ($before -> $after)"
echo "ok: gate (403 preview_gate before any step, nothing stored)"
echo "rerun: ok"
