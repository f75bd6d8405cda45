#!/usr/bin/env bash
# End-to-end tests: the whole stack (audit, scheduler, worker, llm-mock) on the
# harness's real Kafka broker and PostgreSQL, driven through the `sagewai` CLI
# as a user would.
#
#   e2e.sh demo        the example workflow runs, outputs right, audit trail
#                      complete (each step's effect once), chain verifies
#   e2e.sh kill        kill -9 of the worker, then of the scheduler, mid-run:
#                      the runs still complete, each step.finished once in
#                      the audit log
#   e2e.sh secrets     everything captured in a run (service logs, every
#                      sagewai.* topic, the audit log, API answers, CLI output)
#                      is grepped for the LLM key: it appears nowhere; and the
#                      environment of every process of the stack and of
#                      postgres holds no LLM key, admin token or database
#                      password, and no SAGEWAI_* setting its service does
#                      not read
#   e2e.sh tenants     multi-tenant mode: keys, isolation (404), the preview
#                      gate (403 at submit) and its worker backstop
#   e2e.sh wait        POST /v1/runs?wait=S: 200 and the ended run; with the
#                      worker down, 202 and the running run after S seconds
#                      (the run completes once it is back); a bad wait is a
#                      400 that stores nothing; later submits take the
#                      definition from the cache, and their guard catches a
#                      version registered behind the scheduler's back
set -euo pipefail

scenario=${1:?usage: e2e.sh demo|kill|secrets|tenants|wait}
root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$root/tools/lib/stack.sh"

while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"

work=$build/tests-tmp/e2e-$scenario-$$
rm -rf "$work"
mkdir -p "$work"
cli=$build/tools/cli/sagewai
fail() {
	echo "FAIL ($scenario): $*" >&2
	for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done
	exit 1
}
trap 'sw_stack_stop "$work"' EXIT

# tenants: the worker's preview-gate backstop needs a scheduler that lets an
# identity-bearing run through, which one with identity deployed does not (it
# resolves every submit first): that scenario runs without identity
[ "$scenario" != tenants ] || export SW_STACK_IDENTITY=0

# a killed member's partitions move after 6 s instead of librdkafka's 45
for svc in worker scheduler audit; do
	echo "SAGEWAI_KAFKA_CONSUMER_CONFIG=session.timeout.ms=6000,heartbeat.interval.ms=1000" \
		>"$work/$svc.env"
done
sw_stack_start "$work" "$build" env || fail "stack did not start"
set -a
# shellcheck disable=SC1091
. "$work/stack.sh.env"
set +a

# submit WORKFLOW INPUT: run it, watching; prints the run id on fd 3
run_watch() {
	local out
	out=$("$cli" run submit "$1" --input "$2" --watch 2>&1) || {
		echo "$out" >&2
		return 1
	}
	echo "$out" >>"$work/cli.out"
	echo "$out" | grep -o '[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}' |
		head -n 1
}

# audit_count RUN JQ-LIKE-TYPE: events of RUN of a type, from the audit API,
# waiting up to 30 s for the expected count ($3)
audit_wait() {
	local run=$1 type=$2 want=$3 n=0
	for _ in $(seq 1 150); do
		n=$("$cli" --json audit run "$run" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(1 for e in d["events"] if e.get("event", {}).get("header", {}).get("type") == sys.argv[1]))
' "$type" || echo 0)
		[ "$n" -ge "$want" ] && break
		sleep 0.2
	done
	echo "$n"
}

# once_per_step RUN NSTEPS: exactly one step.finished per step, and one
# run.finished, in the audit log (after letting stragglers arrive)
once_per_step() {
	local run=$1 steps=$2
	[ "$(audit_wait "$run" run.finished 1)" = 1 ] || fail "run.finished not once for $run"
	sleep 1
	"$cli" --json audit run "$run" | python3 -c '
import json, sys, collections
d = json.load(sys.stdin)
want = int(sys.argv[1])
fin = collections.Counter(e["event"]["step"] for e in d["events"]
                          if e.get("event", {}).get("header", {}).get("type") == "step.finished"
                          and e["event"]["status"] == "SUCCEEDED")
runs = sum(1 for e in d["events"] if e.get("event", {}).get("header", {}).get("type") == "run.finished")
ids = [e["event"]["header"]["event_id"] for e in d["events"] if "event" in e]
assert len(ids) == len(set(ids)), "an event id appears twice"
assert len(fin) == want and all(v == 1 for v in fin.values()), "step.finished per step: %r" % fin
assert runs == 1, "run.finished %d times" % runs
' "$steps" || fail "audit trail of $run is not once per step"
}

# post_run QUERY BODY: POST /v1/runs?QUERY; the answer's body in
# $work/answer.json, its status printed
post_run() {
	curl -sS -o "$work/answer.json" -w '%{http_code}' -X POST \
		-H 'Content-Type: application/json' --data "$2" "$SAGEWAI_URL/v1/runs?$1"
}

case "$scenario" in
wait)
	"$cli" workflow apply "$root/examples/hello.yaml" >>"$work/cli.out"
	body='{"workflow": "hello", "input": {"brief": "waited for"}}'
	code=$(post_run wait=30 "$body")
	[ "$code" = 200 ] || fail "wait=30 answered $code: $(cat "$work/answer.json")"
	python3 - "$work/answer.json" <<-'EOF' || fail "the waited answer is not the ended run"
		import json, sys
		r = json.load(open(sys.argv[1]))
		assert r["state"] == "succeeded", r
		assert r["run_id"] and r["output"], r
		assert [s["state"] for s in r["steps"]] == ["succeeded"] * len(r["steps"]), r["steps"]
	EOF
	# the same run as GET shows it
	run=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' \
		"$work/answer.json")
	"$cli" --json run show "$run" | python3 -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(sys.stdin)
assert a == b, (a, b)
' "$work/answer.json" || fail "the waited answer differs from GET /v1/runs/$run"

	# the submit's one round trip: the first submit read the definition;
	# the next ones take it from the cache (and its latest version as a
	# hint their transaction checks); one at a time, the ended run is read
	# in the commit that ends it, not after it
	metric() { sw_stack_metric "$work" scheduler "$1"; }
	unread0=$(metric sagewai_scheduler_submits_unread_total)
	incommit0=$(metric sagewai_scheduler_wait_answers_in_commit_total)
	for _ in 1 2 3; do
		code=$(post_run wait=30 "$body")
		[ "$code" = 200 ] || fail "a later wait=30 answered $code: $(cat "$work/answer.json")"
	done
	[ "$(metric sagewai_scheduler_submits_unread_total)" -ge $((${unread0:-0} + 3)) ] ||
		fail "later submits read the definition again: ${unread0:-0} -> $(metric sagewai_scheduler_submits_unread_total)"
	[ "$(metric sagewai_scheduler_wait_answers_in_commit_total)" -gt "${incommit0:-0}" ] ||
		fail "no waiting submit was answered from the commit that ended its run"
	# another instance registers version 2 behind this scheduler's back:
	# the hint is stale, the submit's guard finds version 2 (nothing stored
	# for the try), and the submit runs version 2 after reading it
	fall0=$(metric sagewai_scheduler_submit_guard_fallbacks_total)
	nruns0=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
	psql "$SAGEWAI_PG_DSN" -XAtq -c "INSERT INTO scheduler.workflows (tenant, name, version, yaml, def)
		SELECT tenant, name, 2, yaml, jsonb_set(def, '{version}', '2') FROM scheduler.workflows
		WHERE name = 'hello' AND version = 1" >/dev/null || fail "cannot register version 2 directly"
	code=$(post_run wait=30 "$body")
	[ "$code" = 200 ] || fail "the submit after version 2 answered $code: $(cat "$work/answer.json")"
	python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["version"] == 2, r' \
		"$work/answer.json" || fail "the submit after version 2 did not run it: $(cat "$work/answer.json")"
	[ "$(metric sagewai_scheduler_submit_guard_fallbacks_total)" = $((${fall0:-0} + 1)) ] ||
		fail "the stale version was not caught by the guard: ${fall0:-0} -> $(metric sagewai_scheduler_submit_guard_fallbacks_total)"
	nruns1=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
	[ "$nruns1" = $((nruns0 + 1)) ] || fail "the guarded try stored a run: $nruns0 -> $nruns1"

	# bad waits: 400, nothing stored
	before=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
	for q in wait=abc wait=61 wait=-1 wait=99999999999999999999999 wait=; do
		code=$(post_run "$q" "$body")
		[ "$code" = 400 ] || fail "?$q answered $code"
		grep -q 'wait must be whole seconds' "$work/answer.json" || grep -q 'query' "$work/answer.json" ||
			fail "?$q: no clear error: $(cat "$work/answer.json")"
	done
	after=$("$cli" --json run list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')
	[ "$before" = "$after" ] || fail "a refused wait stored a run ($before -> $after)"

	# the worker down: the run cannot end within 2 s -> 202, still running
	sw_stack_kill "$work" worker TERM
	t0=$(date +%s)
	code=$(post_run wait=2 "$body")
	[ "$code" = 202 ] || fail "wait=2 with no worker answered $code: $(cat "$work/answer.json")"
	[ $(($(date +%s) - t0)) -ge 2 ] || fail "the 202 came before the 2 s wait passed"
	run=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["state"] == "running", r
print(r["run_id"])' "$work/answer.json") || fail "the 202 is not the running run: $(cat "$work/answer.json")"
	# a client that hangs up while it waits: the scheduler keeps serving
	curl -sS -m 1 -o /dev/null -X POST -H 'Content-Type: application/json' --data "$body" \
		"$SAGEWAI_URL/v1/runs?wait=30" 2>/dev/null && fail "a wait with no worker answered within 1 s"
	sw_stack_launch "$work" worker || fail "worker did not restart"
	for _ in $(seq 1 150); do
		st=$("$cli" --json run show "$run" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
		[ "$st" = succeeded ] && break
		sleep 0.2
	done
	[ "$st" = succeeded ] || fail "the run answered 202 did not complete once the worker was back ($st)"
	code=$(post_run wait=30 "$body")
	[ "$code" = 200 ] || fail "after the worker came back, wait=30 answered $code"
	;;
demo)
	"$cli" workflow apply "$root/examples/hello.yaml" | tee -a "$work/cli.out"
	"$cli" workflow list | grep -q hello || fail "workflow list lacks hello"
	run=$(run_watch hello '{"brief": "a portfolio site for a photographer"}') ||
		fail "run did not succeed"
	"$cli" --json run show "$run" >"$work/run.json"
	python3 - "$work/run.json" <<-'EOF' || fail "run result is wrong"
		import json, sys
		r = json.load(open(sys.argv[1]))
		assert r["state"] == "succeeded", r["state"]
		assert [s["state"] for s in r["steps"]] == ["succeeded"] * len(r["steps"]), r["steps"]
		assert [s["name"] for s in r["steps"]] == ["plan", "transform", "check", "summarise"]
		plan = r["steps"][0]["output"]
		assert isinstance(plan, dict) and "sections" in plan, plan
		# the sandboxed step ran python3 over the outline, in a sandbox
		check = r["steps"][2]
		assert check["mode"] == "sandboxed", check
		out = json.loads(check["output"]["stdout"])
		assert out["ok"] is True and out["sections"] == len(plan["sections"]), out
		assert r["output"], "no run output"
	EOF
	once_per_step "$run" 4
	"$cli" audit run "$run" | tee -a "$work/cli.out" | grep -q step.finished ||
		fail "audit run shows no step.finished"
	"$cli" audit verify "$SAGEWAI_DATA_DIR/audit" | grep -q '^ok' || fail "audit verify"
	;;
kill)
	# a slow llm makes "mid-step" reliable: every completion takes 1.5 s
	cat >"$work/slow.yaml" <<-'EOF'
		name: slow
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
	sw_stack_kill "$work" llm-mock TERM
	sed -i 's|--require-key-file|--delay-ms 1500 --require-key-file|' "$work/run-llm-mock.sh"
	sw_stack_launch "$work" llm-mock
	sleep 0.3
	"$cli" workflow apply "$work/slow.yaml" >/dev/null
	for victim in worker scheduler; do
		run=$("$cli" --json run submit slow --input '{"n": 7}' |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
		# wait until the llm step is running, then kill -9 mid-step
		for _ in $(seq 1 100); do
			"$cli" --json run show "$run" | python3 -c '
import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["steps"][1]["state"] in ("running","dispatched") else 1)' && break
			sleep 0.1
		done
		sw_stack_kill "$work" "$victim" KILL
		sleep 0.5
		sw_stack_restart "$work" "$victim"
		for _ in $(seq 1 300); do
			state=$("$cli" --json run show "$run" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
			case "$state" in succeeded) break ;; failed | cancelled) fail "run $state after kill -9 of $victim" ;; esac
			sleep 0.2
		done
		[ "$state" = succeeded ] || fail "run did not finish after kill -9 of $victim"
		once_per_step "$run" 3
		echo "kill -9 of $victim mid-step: run $run succeeded, each step once in the audit log"
	done
	;;
secrets)
	key=$(cat "$work/llm.key")
	[ ${#key} -ge 20 ] || fail "no key"
	"$cli" workflow apply "$root/examples/hello.yaml" >>"$work/cli.out"
	run=$(run_watch hello '{"brief": "a secret-free site"}') || fail "run failed"
	"$cli" --json run show "$run" >>"$work/cli.out"
	"$cli" --json audit run "$run" >>"$work/cli.out"
	# a step that fails at the provider must not echo the key either
	cat >"$work/badkey.yaml" <<-'EOF'
		name: badllm
		steps:
		  - name: ask
		    uses: llm
		    with: {prompt: "hello", model: "no-such-model"}
	EOF
	"$cli" workflow apply "$work/badkey.yaml" >>"$work/cli.out"
	"$cli" run submit badllm --input '{}' --watch >>"$work/cli.out" 2>&1 || true
	sleep 2
	for t in runs steps identity sandbox credentials audit.checkpoints deadletter tenants; do
		kcat -b "$SAGEWAI_KAFKA_BOOTSTRAP" -C -t "sagewai.$t" -o beginning -e -q \
			>>"$work/topics.bin" 2>/dev/null || true
	done
	[ -s "$work/topics.bin" ] || fail "captured no Kafka messages"
	found=$(grep -rlaF -- "$key" "$work"/*.log "$work/cli.out" "$work/topics.bin" \
		"$SAGEWAI_DATA_DIR" 2>/dev/null | grep -v '/llm-mock.log$' || true)
	[ -z "$found" ] || fail "the LLM key appears in: $found"
	# and the check itself can fail: the key is really in the worker's key file
	grep -qF -- "$key" "$work/llm.key" || fail "grep found nothing where the key is"
	echo "the key appears in none of: service logs, CLI output, Kafka topics, audit log"

	# the environments: with an admin token set too (in scheduler.env, as
	# an operator would), every process of the stack and postgres
	admin=adm-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf "SAGEWAI_ADMIN_TOKEN=%s\n" "$admin" >>"$work/scheduler.env"
	sw_stack_restart "$work" scheduler
	SAGEWAI_ADMIN_TOKEN=$admin "$cli" --json tenant create acme >/dev/null ||
		fail "the scheduler did not take its admin token from its file"
	pg_pid=$(head -n 1 "$SW_HARNESS_DIR/pg/postmaster.pid")
	python3 - "$work" "$pg_pid" "$key" "$admin" "$SW_HARNESS_DIR/secrets" "$work/secrets" \
		<<-'EOF' || fail "a secret or a foreign setting in a process's environment"
		import glob, os, sys
		work, pg_pid, key, admin, *secret_dirs = sys.argv[1:]
		identity = os.path.exists(work + "/run-identity.sh")
		# what each service reads (tools/lib/stack.sh, sw_stack_keys)
		common = {"SAGEWAI_KAFKA_BOOTSTRAP", "SAGEWAI_LOG_LEVEL", "SAGEWAI_KAFKA_CONSUMER_CONFIG",
		          "SAGEWAI_HTTP_PORT", "SAGEWAI_PORT_FILE", "SAGEWAI_PG_DSN"}
		allowed = {
		    "audit": common | {"SAGEWAI_DATA_DIR", "SAGEWAI_AUDIT_SIGNING_KEY_FILE"},
		    "scheduler": common | {"SAGEWAI_RUNNABLE_MODES", "SAGEWAI_ADMIN_TOKEN_FILE"},
		    "worker": common | {"SAGEWAI_LLM_BASE_URL", "SAGEWAI_LLM_MODEL", "SAGEWAI_INSTANCE_ID",
		                        "SAGEWAI_LLM_API_KEY_FILE", "SAGEWAI_WORKER_OTHER_MODES"},
		    "sandboxd": common | {"SAGEWAI_SANDBOX_STATE_DIR", "SAGEWAI_INSTANCE_ID"},
		    "llm-mock": set(),
		    "postgres": set(),
		}
		if identity:  # tools/lib/stack.sh, sw_stack_id_keys
		    allowed["identity"] = common | {"SAGEWAI_IDENTITY_MASTER_KEYS_FILE",
		        "SAGEWAI_SECRET_MAC_KEY_FILE", "SAGEWAI_IDENTITY_HOSTS_FILE",
		        "SAGEWAI_ADMIN_TOKEN_FILE"}
		    allowed["scheduler"] |= {"SAGEWAI_IDENTITY", "SAGEWAI_SECRET_MAC_KEY_FILE"}
		    allowed["sandboxd"] |= {"SAGEWAI_SANDBOXD_SEAL_KEY_FILE"}
		if os.path.exists(work + "/policy.pid"):  # sagewai-policy, and what it enables
		    allowed["policy"] = common | ({"SAGEWAI_ADMIN_TOKEN_FILE"} if identity else set())
		    allowed["scheduler"] |= {"SAGEWAI_POLICY"}
		# every database password: the passfiles' last field
		secrets = {"LLM key": key, "admin token": admin}
		for d in secret_dirs:
		    for f in glob.glob(d + "/*.pgpass"):
		        pw = open(f).read().split("\n")[0].rsplit(":", 1)[1]
		        assert len(pw) >= 16, f
		        secrets["password of " + os.path.basename(f)] = pw
		assert len(secrets) >= 7, secrets.keys()
		# identity's keys: each master key, the MAC key, the stack's admin
		# token, sandboxd's seal key
		if identity:
		    idk = work + "/secrets/identity/"
		    keys = {f: open(idk + f).read().strip() for f in ("mac.key", "admin.token")}
		    keys["seal key"] = open(work + "/secrets/sandboxd.seal.key").read().strip()
		    for line in open(idk + "master.keys").read().split("\n"):
		        if line:
		            keys["master key " + line.split()[0]] = line.split()[1]
		    assert all(len(v) == 64 for v in keys.values()), "a key is not 64 hex"
		    secrets.update(keys)
		# the audit service's signing key ("KEYID HEX"): its secret half
		secrets["audit signing key"] = open(work + "/secrets/audit-signing.key").read().split()[1]
		assert len(secrets["audit signing key"]) >= 64
		def children(pid):
		    out = []
		    for t in glob.glob("/proc/%d/task/*/children" % pid):
		        try:
		            out += [int(c) for c in open(t).read().split()]
		        except OSError:
		            pass
		    return out
		def tree(pid):
		    todo, seen = [pid], []
		    while todo:
		        p = todo.pop()
		        seen.append(p)
		        todo += children(p)
		    return seen
		roots = {name: int(open("%s/%s.pid" % (work, name)).read())
		         for name in allowed if os.path.exists("%s/%s.pid" % (work, name))}
		roots["postgres"] = int(pg_pid)
		assert set(roots) == set(allowed), "missing: %s" % (set(allowed) - set(roots))
		bad, n = [], 0
		for name, root in roots.items():
		    for pid in tree(root):
		        try:
		            env = open("/proc/%d/environ" % pid, "rb").read().decode("utf-8", "replace")
		        except OSError:
		            continue  # gone meanwhile
		        n += 1
		        for what, value in secrets.items():
		            if value in env:
		                bad.append("%s (pid %d): its environment holds the %s" % (name, pid, what))
		        for var in env.split("\0"):
		            k = var.split("=", 1)[0]
		            if k.startswith(("SAGEWAI_", "PG")) and k not in allowed[name] and k != "PGDATA" \
		                    and not k.startswith(("PG_GRANDPARENT", "PGLOCALEDIR", "PGSYSCONFDIR")):
		                bad.append("%s (pid %d): %s, which it does not read" % (name, pid, k))
		assert n >= len(allowed) + 1, "only %d processes read" % n
		# the check can fail: the same scan finds the key where it is
		assert key in open(work + "/llm.key").read()
		for b in bad:
		    print(b, file=sys.stderr)
		print("%d processes of %d services and postgres: no secret in any environment" % (n, len(roots) - 1))
		sys.exit(1 if bad else 0)
	EOF
	;;
tenants)
	admin=adm-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf "SAGEWAI_MODE=multi_tenant\nSAGEWAI_ADMIN_TOKEN=%s\nSAGEWAI_RUNNABLE_MODES=in_process,identity_scoped,cli_agent,cli_agent_jit,sandboxed\n" \
		"$admin" >"$work/scheduler.env"
	printf "SAGEWAI_MODE=multi_tenant\n" >>"$work/worker.env"
	sw_stack_restart "$work" scheduler
	sw_stack_restart "$work" worker
	ka=$(SAGEWAI_ADMIN_TOKEN=$admin "$cli" --json tenant create acme |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
	kb=$(SAGEWAI_ADMIN_TOKEN=$admin "$cli" --json tenant create globex |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
	if "$cli" workflow list >/dev/null 2>&1; then fail "no key was accepted"; fi
	SAGEWAI_TOKEN=$ka "$cli" workflow apply "$root/examples/hello.yaml" >/dev/null
	run=$(SAGEWAI_TOKEN=$ka run_watch hello '{"brief": "acme site"}') || fail "acme run failed"
	out=$(SAGEWAI_TOKEN=$kb "$cli" run show "$run" 2>&1) && fail "globex sees acme's run"
	echo "$out" | grep -q 404 || fail "globex: expected 404, got: $out"
	SAGEWAI_TOKEN=$kb "$cli" workflow list | grep -q hello && fail "globex sees acme's workflow"
	# the preview gate at submit
	SAGEWAI_TOKEN=$ka "$cli" workflow apply "$root/examples/portfolio.yaml" >/dev/null
	out=$(SAGEWAI_TOKEN=$ka "$cli" run submit portfolio --input '{"brief": "x"}' 2>&1) &&
		fail "identity-bearing run accepted in multi-tenant mode"
	echo "$out" | grep -q 403 || fail "expected 403 preview_gate, got: $out"
	# past the preview gate, an identity-bearing mode still needs what runs
	# it: cli_agent_jit without the identity and policy services is refused
	# at submit (the worker's own backstop is tests/worker's)
	printf "SAGEWAI_SEALED_PREVIEW=1\n" >>"$work/scheduler.env"
	sw_stack_restart "$work" scheduler
	cat >"$work/gated.yaml" <<-'EOF'
		name: gated
		steps:
		  - name: first
		    uses: template
		    with: {value: 1}
		  - name: creds
		    mode: cli_agent_jit
		    cli_agent: claude-code
		    prompt: "write it"
	EOF
	SAGEWAI_TOKEN=$ka "$cli" workflow apply "$work/gated.yaml" >/dev/null
	out=$(SAGEWAI_TOKEN=$ka "$cli" run submit gated --input '{}' 2>&1) &&
		fail "cli_agent_jit accepted without the identity and policy services"
	echo "$out" | grep -q "SAGEWAI_POLICY=1" || fail "expected mode_unavailable naming SAGEWAI_POLICY, got: $out"
	echo "tenants isolated; preview gate 403 at submit; cli_agent_jit refused without policy"
	;;
*) fail "unknown scenario" ;;
esac
echo "e2e $scenario: ok"
