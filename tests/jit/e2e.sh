#!/usr/bin/env bash
# Issue 12 end to end with the real parts (docs/JIT.md, docs/POLICY.md): the
# whole stack (audit, scheduler, worker, identity, sagewai-policy, sandboxd
# with bwrap) on the harness's Kafka and PostgreSQL; every agent is a
# `custom` CLI (a script) that runs sagewai-cred inside its cli_agent_jit
# sandbox; the policy is applied with `sagewai policy apply`.
#
#   rule     the spec's (a): a push token for a repository of the operator's
#            organisation is allowed by rule and injected (the client gets
#            the value, of the right length, printed redacted); (c): an
#            escalation to an admin role is denied at once, the agent gets
#            the rule's refusal (exit 2); the trail: requested, decided
#            (allow by rule / deny by rule), delivered, refused
#   page     (b): a new third-party API key waits for a person who approves
#            it on the approvals page in a real headless Chromium
#            (tests/policy/page.py); the value reaches the sandbox
#   deadline an ask whose deadline passes: the client is told nobody
#            approved it in time
#   cancel   the run cancelled while its request waits: the approval is
#            withdrawn (the API the page renders shows it withdrawn)
#   kill9    kill -9 of sagewai-policy while a real request waits, restart,
#            approve through the CLI: the client gets the value, the request
#            is decided exactly once
#   tenant   another tenant's key on this tenant's approval: 404
#   acl      a name policy allows but the key's ACL (the step's cascade)
#            forbids this step: refused not_allowed, nothing delivered
#   many     three runs at once: each sandbox gets its value, every delivery
#            names the sandbox that asked
#   replay   `sagewai replay run` of the rule run: identical; its recorded
#            deny answered from the record (no new request reaches policy),
#            the allow decided by policy again; a later version asking for a
#            name the original never asked: refused not_recorded
#   claude   the real Claude Code CLI (claude-code variant) against
#            sagewai-llm-mock --script: its scripted bash tool call runs
#            sagewai-cred; allowed by rule, delivered, the result reaches the
#            model (skipped when the variant is not built)
#   leaks    no delivered value (plain, base64, hex) in any topic read raw
#            (kcat), any service log, the audit log, `sagewai audit run`
#            output, a pg_dump or any CLI output of this test
set -euo pipefail

root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$root/tools/lib/stack.sh"

while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"

work=$build/tests-tmp/jit-e2e-$$
rm -rf "$work"
mkdir -p "$work/values" "$work/out"
chmod 700 "$work/values"
cli=$build/tools/cli/sagewai
uuid_re='[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}'
fail() {
	echo "FAIL (jit e2e): $*" >&2
	for f in "$work"/*.log; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 15 "$f" >&2
	done
	exit 1
}
cleanup() {
	local rc=$?
	sw_stack_stop "$work"
	[ $rc -ne 0 ] || rm -rf "$work"
}
trap cleanup EXIT

[ -x /usr/bin/bwrap ] || fail "bubblewrap is missing: cli_agent_jit steps need sandboxd"
# the claude case's model endpoint is on this machine's loopback
echo "SAGEWAI_EGRESS_PRIVATE=allow" >"$work/sandboxd.env"
sw_stack_start "$work" "$build" env || fail "stack did not start"
sw_stack_ready "$work" || fail "the scheduler got no partitions"
set -a
# shellcheck disable=SC1091
. "$work/stack.sh.env"
set +a
for s in identity policy sandboxd; do
	grep -qx "$s" "$work/services" || fail "$s is not running"
done
SAGEWAI_ADMIN_TOKEN=$(cat "$work/secrets/identity/admin.token")
export SAGEWAI_ADMIN_TOKEN
c() { "$cli" "$@" 2>&1 | tee -a "$work/out/cli.out"; }

# the run's trail holds $2 (python over `ev`, the events, and `types`)
trail_has() {
	local _
	for _ in $(seq 1 150); do
		"$cli" --json audit run "$1" >"$work/trail.json" 2>/dev/null || true
		python3 - "$work/trail.json" "$2" <<-'PY' && return 0
			import collections, json, sys
			ev = [e["event"] for e in json.load(open(sys.argv[1]))["events"]]
			types = collections.Counter(e["header"]["type"] for e in ev)
			sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)
		PY
		sleep 0.2
	done
	return 1
}
# the approval of credential NAME in state ST (prints its id)
approval() {
	local _ id
	for _ in $(seq 1 300); do
		id=$("$cli" --json approvals list --all 2>/dev/null | python3 -c '
import json, sys
for a in json.load(sys.stdin).get("approvals", []):
    if a.get("name") == sys.argv[1] and a.get("status") == sys.argv[2]:
        print(a["id"]); break' "$1" "$2" || true)
		[ -n "$id" ] && { echo "$id"; return 0; }
		sleep 0.2
	done
	return 1
}
# a workflow NAME whose custom agent runs SCRIPT (VERSION optional)
wf() {
	{
		echo "name: $1"
		[ -z "${3:-}" ] || echo "version: $3"
		echo "steps:"
		echo "  - name: agent"
		echo "    mode: cli_agent_jit"
		echo "    cli_agent: custom"
		echo "    prompt: the e2e test"
		echo "    timeout: 300s"
		echo "    artifact: {destination: none}"
		[ -z "${4:-}" ] || echo "    $4"
		echo "    run: |"
		sed 's/^/      /' <<<"$2"
	} >"$work/$1.yaml"
	"$cli" workflow apply "$work/$1.yaml" >>"$work/out/cli.out" 2>&1 || fail "apply $1"
}
submit() { # NAME: prints the run id
	local out
	out=$("$cli" run submit "$1" --input '{}' 2>&1) || fail "submit $1: $out"
	echo "$out" >>"$work/out/cli.out"
	echo "$out" | grep -o "$uuid_re" | head -n 1
}
finished() { # RUN -> its `run show`, once it ended
	trail_has "$1" 'types["run.finished"] == 1' || fail "run $1 did not finish"
	"$cli" run show "$1" 2>&1 | tee -a "$work/out/cli.out"
}

# the values (tenant secrets the policy grants)
for v in push stripe; do
	(umask 077 && printf 'e2e_%s_%s' "$v" "$(head -c 18 /dev/urandom | od -An -tx1 |
		tr -d ' \n')" >"$work/values/$v")
done
c secret set jit-push --from-file "$work/values/push" >/dev/null
c secret set jit-stripe --from-file "$work/values/stripe" >/dev/null
cat >"$work/policy.yaml" <<-'EOF'
	rules:
	  - id: push-own-org
	    name: "GITHUB_TOKEN_*"
	    scope: "github:push:acme/*"
	    effect: allow
	    secret: jit-push
	    reason: "pushes to our own organisation"
	  - id: admin-escalation
	    name: "*ADMIN*"
	    effect: deny
	    reason: "agents never get admin roles"
	  - id: new-api-key
	    name: "STRIPE_API_KEY"
	    scope: "api:*"
	    effect: ask
	    deadline: 10m
	    secret: jit-stripe
	    reason: "a new third-party API: someone looks first"
	  - id: short-ask
	    name: "SLOW_API_KEY"
	    scope: "api:*"
	    effect: ask
	    deadline: 3s
	    secret: jit-stripe
	  - id: cascade-key
	    name: "ACL_KEY"
	    scope: "acl:*"
	    effect: allow
EOF
c policy apply "$work/policy.yaml" >/dev/null || fail "policy apply"

# ---- rule: (a) allowed by rule and injected, (c) denied at once ----------
wf jitrule "$(
	cat <<-'EOF'
		t=$(sagewai-cred request GITHUB_TOKEN_SITE --scope github:push:acme/site --reason "push the site")
		echo "client got: $t"
		echo "client length: ${#t}"
		if sagewai-cred request ORG_ADMIN_ROLE --scope org:admin --reason escalate 2>/tmp/err; then
		  echo "admin: GRANTED"
		else
		  echo "admin: exit $? $(cat /tmp/err)"
		fi
	EOF
)"
r_rule=$(submit jitrule)
show=$(finished "$r_rule")
grep -q "client got: \[REDACTED:GITHUB_TOKEN_SITE\]" <<<"$show" || fail "rule: client: $show"
grep -q "client length: $(wc -c <"$work/values/push")" <<<"$show" || fail "rule: length: $show"
grep -q "admin: exit 2 .*denied: ORG_ADMIN_ROLE (by rule admin-escalation): agents never get admin roles" \
	<<<"$show" || fail "rule: the escalation: $show"
trail_has "$r_rule" '
types["credential.requested"] == 2 and types["credential.delivered"] == 1 and
types["credential.refused"] == 1 and
sorted((e["name"], e["decision"], e["by"], e["rule"]) for e in ev
       if e["header"]["type"] == "credential.decided") ==
[("GITHUB_TOKEN_SITE", "allow", "rule", "push-own-org"),
 ("ORG_ADMIN_ROLE", "deny", "rule", "admin-escalation")]' || fail "rule: the trail"
c audit run "$r_rule" >"$work/out/audit-rule.out"
grep -q credential.delivered "$work/out/audit-rule.out" || fail "rule: audit run"
echo "ok: rule (allowed and injected; escalation denied at once)"

# ---- page: (b) a person approves on the web page -------------------------
if command -v chromium >/dev/null; then
	wf jitpage "$(
		cat <<-'EOF'
			t=$(sagewai-cred request STRIPE_API_KEY --scope api:stripe:charges --reason "take the payment" --timeout 240)
			echo "client got: $t"
			echo "client length: ${#t}"
		EOF
	)"
	r_page=$(submit jitpage)
	approval STRIPE_API_KEY pending >/dev/null || fail "page: no pending approval"
	python3 "$root/tests/policy/page.py" --url "$SAGEWAI_POLICY_URL/approvals" \
		--token-file "$work/secrets/identity/admin.token" --expect STRIPE_API_KEY \
		--screenshot "$build/tests-tmp/jit-e2e-page.png" --profile "$work/chromium" ||
		fail "page.py"
	show=$(finished "$r_page")
	grep -q "client got: \[REDACTED:STRIPE_API_KEY\]" <<<"$show" || fail "page: $show"
	grep -q "client length: $(wc -c <"$work/values/stripe")" <<<"$show" || fail "page: $show"
	trail_has "$r_page" '
types["credential.pending"] == 1 and types["credential.delivered"] == 1 and
[e["by"] for e in ev if e["header"]["type"] == "credential.decided"] == ["human"]' ||
		fail "page: the trail"
	echo "ok: page (approved in headless Chromium, delivered; $build/tests-tmp/jit-e2e-page.png)"
else
	fail "chromium is missing (tools/setup installs it)"
fi

# ---- deadline: nobody decides ---------------------------------------------
wf jitslow "$(
	cat <<-'EOF'
		sagewai-cred request SLOW_API_KEY --scope api:slow --reason "nobody looks" --timeout 120 2>/tmp/err
		echo "exit $? $(cat /tmp/err)"
	EOF
)"
r_slow=$(submit jitslow)
show=$(finished "$r_slow")
grep -q "exit 2 .*denied: nobody approved SLOW_API_KEY before the deadline" <<<"$show" ||
	fail "deadline: $show"
trail_has "$r_slow" '[e["by"] for e in ev if e["header"]["type"] == "credential.decided"] == ["deadline"]' ||
	fail "deadline: the trail"
echo "ok: deadline (auto-denied, the client told)"

# ---- cancel: the run cancelled while its request waits --------------------
wf jitcancel "$(
	cat <<-'EOF'
		sagewai-cred request STRIPE_API_KEY --scope api:stripe:refunds --reason "cancel me" --timeout 240
	EOF
)"
r_cancel=$(submit jitcancel)
aid=$(approval STRIPE_API_KEY pending) || fail "cancel: no pending approval"
c run cancel "$r_cancel" >/dev/null || fail "run cancel"
approval STRIPE_API_KEY withdrawn | grep -qx "$aid" || fail "cancel: $aid not withdrawn"
out=$("$cli" approvals approve "$aid" --reason late 2>&1) && fail "cancel: a late approve: $out"
trail_has "$r_cancel" '[e["by"] for e in ev if e["header"]["type"] == "credential.decided"] == ["withdrawn"]' ||
	fail "cancel: the trail"
echo "ok: cancel (the approval withdrawn, a late approve refused)"

# ---- kill9: policy killed while a request waits ---------------------------
wf jitkill "$(
	cat <<-'EOF'
		t=$(sagewai-cred request STRIPE_API_KEY --scope api:stripe:payouts --reason "survive a crash" --timeout 240)
		echo "client got: $t"
	EOF
)"
r_kill=$(submit jitkill)
aid=$(approval STRIPE_API_KEY pending) || fail "kill9: no pending approval"
sw_stack_kill "$work" policy KILL
sleep 1
sw_stack_restart "$work" policy || fail "kill9: policy did not restart"
c approvals approve "$aid" --reason "approved after the crash" >/dev/null || fail "kill9: approve"
show=$(finished "$r_kill")
grep -q "client got: \[REDACTED:STRIPE_API_KEY\]" <<<"$show" || fail "kill9: $show"
sleep 2 # a second decision from an outbox would come now
trail_has "$r_kill" '
types["credential.requested"] == 1 and types["credential.decided"] == 1 and
types["credential.delivered"] == 1' || fail "kill9: not decided exactly once"
echo "ok: kill9 (decided exactly once after the restart, the client got the value)"

# ---- tenant: another tenant's key -----------------------------------------
wf jittenant "$(
	cat <<-'EOF'
		sagewai-cred request STRIPE_API_KEY --scope api:stripe:x --reason "another tenant looks" --timeout 240 || true
	EOF
)"
r_ten=$(submit jittenant)
aid=$(approval STRIPE_API_KEY pending) || fail "tenant: no pending approval"
other=$("$cli" --json tenant create e2e-other 2>&1) || fail "tenant create: $other"
okey=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get("api_key") or d["key"])' \
	"$other") || fail "tenant create: no key in $other"
# the new key reaches policy on sagewai.tenants: wait until it is known
for _ in $(seq 1 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $okey" \
		"$SAGEWAI_POLICY_URL/v1/approvals")" = 200 ] && break
	sleep 0.2
done
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $okey" \
	-H 'Content-Type: application/json' -d '{"reason": "not mine"}' \
	"$SAGEWAI_POLICY_URL/v1/approvals/$aid/approve")
[ "$code" = 404 ] || fail "tenant: another tenant's approve answered $code"
n=$(curl -s -H "Authorization: Bearer $okey" "$SAGEWAI_POLICY_URL/v1/approvals?state=all" |
	python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("approvals", [])))')
[ "$n" = 0 ] || fail "tenant: another tenant sees $n approvals"
c approvals deny "$aid" --reason "end of the tenant case" >/dev/null
finished "$r_ten" >/dev/null
echo "ok: tenant (404, nothing listed)"

# ---- acl: policy allows, the key's ACL in the step's cascade does not ----
echo '{"keys": {"ACL_KEY": {"secret": "jit-push", "steps": ["elsewhere/*"]}}}' >"$work/aclp.json"
c identity profile set aclp --file "$work/aclp.json" >/dev/null || fail "acl: profile set"
wf jitacl "$(
	cat <<-'EOF'
		sagewai-cred request ACL_KEY --scope acl:read --reason "not for this step" 2>/tmp/err
		echo "acl: exit $? $(cat /tmp/err)"
	EOF
)" "" "identity: aclp"
r_acl=$(submit jitacl)
show=$(finished "$r_acl")
grep -q "acl: exit 2 sagewai-cred: refused (not_allowed)" <<<"$show" || fail "acl: $show"
trail_has "$r_acl" '
[e["decision"] for e in ev if e["header"]["type"] == "credential.decided"] == ["allow"] and
[e["code"] for e in ev if e["header"]["type"] == "credential.refused"] == ["not_allowed"] and
types["credential.delivered"] == 0' || fail "acl: the trail"
echo "ok: acl (allowed by policy, refused not_allowed by the key's ACL, nothing delivered)"

# ---- many: three runs at once ---------------------------------------------
runs=()
for _ in 1 2 3; do runs+=("$(submit jitrule)"); done
for r in "${runs[@]}"; do
	show=$(finished "$r")
	grep -q "client got: \[REDACTED:GITHUB_TOKEN_SITE\]" <<<"$show" || fail "many: $r: $show"
	trail_has "$r" '
[e["sandbox_id"] for e in ev if e["header"]["type"] == "credential.delivered"] ==
[e["sandbox_id"] for e in ev if e["header"]["type"] == "credential.requested"
 and e["name"] == "GITHUB_TOKEN_SITE"]' || fail "many: $r delivered to another sandbox"
done
echo "ok: many (three sandboxes, each its own delivery)"

# ---- replay: the recorded decisions ----------------------------------------
"$cli" replay run "$r_rule" >"$work/out/replay.out" 2>&1 ||
	fail "replay: not identical: $(cat "$work/out/replay.out")"
rr=$(grep -o "$uuid_re" "$work/out/replay.out" | grep -vx "$r_rule" | head -n 1)
[ -n "$rr" ] || fail "replay: no re-run id in $(cat "$work/out/replay.out")"
trail_has "$rr" '
[e["name"] for e in ev if e["header"]["type"] == "credential.requested"] == ["GITHUB_TOKEN_SITE"] and
[e["name"] for e in ev if e["header"]["type"] == "credential.refused"] == ["ORG_ADMIN_ROLE"] and
[(e["name"], e["decision"], e["by"], e["rule"]) for e in ev
 if e["header"]["type"] == "credential.decided"] ==
[("GITHUB_TOKEN_SITE", "allow", "replay", "push-own-org")] and
types["credential.delivered"] == 1' ||
	fail "replay: the recorded deny was not answered from the record, or the allow not by replay"
# a later version asks for a name the original never asked for
wf jitrule "$(
	cat <<-'EOF'
		t=$(sagewai-cred request GITHUB_TOKEN_SITE --scope github:push:acme/site --reason "push the site")
		echo "client got: $t"
		echo "client length: ${#t}"
		sagewai-cred request EXTRA_TOKEN --scope x --reason "not in the record" 2>/tmp/err
		echo "extra: exit $? $(cat /tmp/err)"
	EOF
)" 2
"$cli" replay run --latest "$r_rule" >"$work/out/replay2.out" 2>&1 &&
	fail "replay --latest: identical although the step changed"
grep -q "not_recorded" "$work/out/replay2.out" ||
	fail "replay --latest: no not_recorded refusal: $(cat "$work/out/replay2.out")"
rr2=$(grep -o "$uuid_re" "$work/out/replay2.out" | grep -vx "$r_rule" | head -n 1)
trail_has "$rr2" '
"EXTRA_TOKEN" not in [e["name"] for e in ev if e["header"]["type"] == "credential.requested"] and
[(e["name"], e["code"]) for e in ev if e["header"]["type"] == "credential.refused"] ==
[("EXTRA_TOKEN", "not_recorded")]' || fail "replay --latest: the trail"
# a person's approval in the original: the re-run gets the value, nobody is asked
napp() { "$cli" --json approvals list --all | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("approvals", [])))'; }
n0=$(napp)
"$cli" replay run "$r_page" >"$work/out/replay-page.out" 2>&1 ||
	fail "replay page: not identical: $(cat "$work/out/replay-page.out")"
rp=$(grep -o "$uuid_re" "$work/out/replay-page.out" | grep -vx "$r_page" | head -n 1)
[ -n "$rp" ] || fail "replay page: no re-run id in $(cat "$work/out/replay-page.out")"
page_rid=$("$cli" --json audit run "$r_page" | python3 -c '
import json, sys
print([e["event"]["request_id"] for e in json.load(sys.stdin)["events"]
       if e["event"]["header"]["type"] == "credential.decided"][0])') || fail "replay page: its decision"
trail_has "$rp" "
types['credential.pending'] == 0 and types['credential.delivered'] == 1 and
[(e['decision'], e['by'], e['rule'], e['replay_of']) for e in ev
 if e['header']['type'] == 'credential.decided'] == [('allow', 'replay', 'new-api-key', '$page_rid')] and
[e['replay_of'] for e in ev if e['header']['type'] == 'credential.requested'] == ['$page_rid']" ||
	fail "replay page: the trail"
show=$(finished "$rp")
grep -q "client got: \[REDACTED:STRIPE_API_KEY\]" <<<"$show" || fail "replay page: $show"
grep -q "client length: $(wc -c <"$work/values/stripe")" <<<"$show" || fail "replay page: $show"
[ "$(napp)" = "$n0" ] || fail "replay page: an approval was shown ($n0 -> $(napp))"
# a forged record: a re-run of the rule run claiming the page run's approval
# (the scheduler takes the replay field as the submitter wrote it; policy
# checks it against its own record and refuses it, asking nobody)
code=$(curl -s -o "$work/out/forged.json" -w '%{http_code}' -X POST "$SAGEWAI_URL/v1/runs" \
	-H 'Content-Type: application/json' --data "{\"workflow\": \"jitpage\", \"input\": {},
 \"replay\": {\"of\": \"$r_rule\", \"steps\": {\"agent\": {\"decisions\": [{\"name\":
 \"STRIPE_API_KEY\", \"decision\": \"allow\", \"by\": \"human\", \"step\": \"agent\",
 \"secret\": \"jit-stripe\", \"request_id\": \"$page_rid\"}]}}}}")
[ "$code" = 201 ] || fail "forged: submit answered $code: $(cat "$work/out/forged.json")"
rf=$(grep -o "$uuid_re" "$work/out/forged.json" | head -n 1)
finished "$rf" >/dev/null
trail_has "$rf" "
types['credential.pending'] == 0 and types['credential.delivered'] == 0 and
[(e['decision'], e['by']) for e in ev if e['header']['type'] == 'credential.decided'] ==
[('deny', 'replay')] and
[e['code'] for e in ev if e['header']['type'] == 'credential.refused'] == ['not_recorded']" ||
	fail "forged: the trail"
[ "$(napp)" = "$n0" ] || fail "forged: an approval was shown"
echo "ok: replay (recorded deny from the record, allow by replay, unrecorded name refused not_recorded; a person's approval replayed with nobody asked; a forged record refused)"

# ---- claude: the real Claude Code CLI, its scripted tool call asks -------
pf_claude=/var/lib/sagewai/variants/claude-code/bin/claude
if [ -x "$pf_claude" ]; then
	(umask 077 && printf 'sk-ant-e2e-%s' "$(head -c 18 /dev/urandom | od -An -tx1 |
		tr -d ' \n')" >"$work/values/anthropic")
	cat >"$work/claude-script.json" <<-'EOF'
		[{"tool": "bash", "command": "sagewai-cred request GITHUB_TOKEN_SITE --scope github:push:acme/site --reason 'push the site' | wc -c"},
		 {"text": "The push token arrived."}]
	EOF
	sw_stack_service "$work" claude-api "$build/tools/llm-mock/sagewai-llm-mock" \
		--port @PORT@ --port-file "$work/claude-api.portfile" \
		--script "$work/claude-script.json" --workdir /workspace \
		--require-key-file "$work/values/anthropic" \
		--log "$work/out/claude-api.requests" >/dev/null || fail "claude: llm-mock"
	api_port=$(cat "$work/claude-api.port")
	c secret set jit-anthropic --from-file "$work/values/anthropic" >/dev/null
	c identity profile set claudep --key ANTHROPIC_API_KEY=secret:jit-anthropic \
		--key "ANTHROPIC_BASE_URL=value:http://127.0.0.1:$api_port" >/dev/null ||
		fail "claude: profile"
	cat >"$work/jitclaude.yaml" <<-EOF
		name: jitclaude
		steps:
		  - name: agent
		    mode: cli_agent_jit
		    cli_agent: claude-code
		    variant: claude-code
		    identity: claudep
		    network: egress_only
		    egress_allow: ["127.0.0.1:$api_port"]
		    prompt: Ask for the push token with sagewai-cred, then say whether it arrived.
		    artifact: {destination: none}
		    limits: {memory_mb: 4096, pids: 1024}
		    timeout: 5m
	EOF
	c workflow apply "$work/jitclaude.yaml" >/dev/null || fail "claude: apply"
	r_cl=$(submit jitclaude)
	show=$(finished "$r_cl")
	grep -q "state *succeeded" <<<"$show" || fail "claude: $show"
	trail_has "$r_cl" '
[(e["name"], e["decision"], e["by"]) for e in ev if e["header"]["type"] == "credential.decided"] ==
[("GITHUB_TOKEN_SITE", "allow", "rule")] and types["credential.delivered"] == 1' ||
		fail "claude: the trail"
	# the tool's result (wc's count, never the value) went back to the model
	grep -q "tool_result" "$work/out/claude-api.requests" ||
		fail "claude: no tool result reached the model"
	echo "ok: claude (the real Claude Code CLI's tool call got the token by rule)"
else
	echo "skip: claude (the claude-code variant is not built: tools/variant-build)"
fi

# ---- leaks ------------------------------------------------------------------
# every topic read raw (only identity's sealed ciphertext may carry a value)
while IFS=$'\t' read -r topic _; do
	case "$topic" in '' | '#'*) continue ;; esac
	kcat -C -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t "$topic" -o beginning -e -q \
		-f 'key=%k %h %s\n' >"$work/out/topic-$topic.raw" 2>/dev/null ||
		fail "leaks: kcat could not read $topic"
done <"$root/infra/kafka/topics.tsv"
[ -s "$work/out/topic-sagewai.credentials.raw" ] || fail "leaks: sagewai.credentials read empty"
pg_dump "$SAGEWAI_PG_DSN" >"$work/out/pg.dump" 2>"$work/pg_dump.err" || fail "pg_dump: $(cat "$work/pg_dump.err")"
for v in push stripe anthropic; do
	[ -f "$work/values/$v" ] || continue
	val=$(cat "$work/values/$v")
	b64=$(printf %s "$val" | base64 -w0)
	hex=$(printf %s "$val" | od -An -tx1 | tr -d ' \n')
	found=$(grep -rlaF -e "$val" -e "$b64" -e "$hex" "$work"/*.log "$work/out" \
		"$SAGEWAI_DATA_DIR" 2>/dev/null || true)
	[ -z "$found" ] || fail "leaks: the $v value appears in: $found"
done
echo "ok: leaks (no value in any topic read raw, logs, audit log, audit output, pg_dump, CLI output)"
