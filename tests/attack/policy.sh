#!/usr/bin/env bash
# Attacks on sagewai-policy (docs/POLICY.md, "Threat model") in multi_tenant
# mode: no credential; a tenant's key against another tenant's approvals,
# policy and decisions; a tenant's own keys that are not approvers; an
# allow-all policy and the operator's _system policy from a tenant key;
# oversized and malformed bodies; a token in the URL; forged withdrawals
# (another tenant's) and a forged run.finished (not from the scheduler)
# trying to void a pending request; markup in a requester's reason against
# the page (strict CSP, no inline script); path traversal on the page's
# files. Every attack leaves the request pending; the operator then decides
# it, exactly once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start multi_tenant
[ -n "${SAGEWAI_POLICY_URL:-}" ] || attack_fail "sagewai-policy is not running"
pu=$SAGEWAI_POLICY_URL
event=$attack_build/tools/event/sagewai-event
admin() { SAGEWAI_ADMIN_TOKEN=$ATTACK_ADMIN "$cli" --json "$@"; }
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
adm=(-H "Authorization: Bearer $ATTACK_ADMIN")

ta=$(admin tenant create acme) || attack_fail "tenant create"
tb=$(admin tenant create globex) || attack_fail "tenant create"
ka=$(jget api_key <<<"$ta")
kb=$(jget api_key <<<"$tb")
ida=$(jget id <<<"$ta")
A=(-H "Authorization: Bearer $ka")
B=(-H "Authorization: Bearer $kb")
# policy learns keys from sagewai.tenants
for k in "$ka" "$kb"; do
	for _ in $(seq 1 150); do
		[ "$(http_status GET "$pu/v1/approvals" -H "Authorization: Bearer $k")" = 200 ] && break
		sleep 0.1
	done
	expect_status 200 GET "$pu/v1/approvals" -H "Authorization: Bearer $k" ||
		attack_fail "policy never learnt a key"
done
cat >"$work/acme.yaml" <<-'YAML'
	approvers: [alice]
	rules:
	  - id: new-api-key
	    name: "*_API_KEY"
	    effect: ask
	    deadline: 30m
YAML
expect_status 200 PUT "$pu/v1/policies/acme" "${A[@]}" --data-binary "@$work/acme.yaml" ||
	attack_fail "policy apply (acme)"

# an ask of acme, as sandboxd would publish it, with markup in its reason
run=atk-run-$$
rq=$(python3 -c 'import uuid; print(uuid.uuid4())')
sb=$(python3 -c 'import uuid; print(uuid.uuid4())')
now_ms=$(($(date +%s) * 1000))
printf '{"header": {"tenant": "%s", "run_id": "%s", "step_id": "%s/build/1", "producer": "sagewai-sandboxd"}, "request_id": "%s", "workflow": "site", "step": "build", "cli_agent": "codex", "sandbox_id": "%s", "host": "h", "name": "STRIPE_API_KEY", "scope": "stripe", "reason": "<script>alert(1)</script><img src=x onerror=alert(2)>", "requester": "c/1", "deadline_ms": %d}\n' \
	"$ida" "$run" "$run" "$rq" "$sb" $((now_ms + 600000)) |
	"$event" produce --bootstrap "$SAGEWAI_KAFKA_BOOTSTRAP" --topic sagewai.credentials \
		credential.requested >/dev/null || attack_fail "produce credential.requested"
aid=
for _ in $(seq 1 150); do
	aid=$(curl -fsS -m 5 "${adm[@]}" "$pu/v1/approvals?state=pending" | python3 -c '
import json, sys
for a in json.load(sys.stdin)["approvals"]:
    if a["request_id"] == sys.argv[1]:
        print(a["id"])' "$rq" || true)
	[ -z "$aid" ] || break
	sleep 0.1
done
[ -n "$aid" ] || attack_fail "the ask never became pending"

# still_pending: the approval is pending for the operator
still_pending() {
	local st
	st=$(curl -fsS -m 5 "${adm[@]}" "$pu/v1/approvals/$aid" | jget status)
	[ "$st" = pending ] || { echo "approval is $st" >&2; return 1; }
}

no_key() {
	expect_status 401 GET "$pu/v1/approvals" &&
		expect_status 401 GET "$pu/v1/approvals/$aid" &&
		expect_status 401 POST "$pu/v1/approvals/$aid/approve" --data '{"reason": "x"}' &&
		expect_status 401 PUT "$pu/v1/policies/acme" --data 'rules: []' &&
		expect_status 401 GET "$pu/v1/approvals" -H "Authorization: Bearer swk_forged" &&
		still_pending
}
attempt no-key "the API with no key, a forged key" no_key

token_in_url() {
	expect_status 401 GET "$pu/v1/approvals/stream?token=$ATTACK_ADMIN" &&
		expect_status 401 GET "$pu/v1/approvals?access_token=$ATTACK_ADMIN"
}
attempt token-in-url "the operator's token in the query string" token_in_url

cross_read() {
	expect_status 404 GET "$pu/v1/approvals/$aid" "${B[@]}" &&
		expect_status 404 GET "$pu/v1/approvals?tenant=acme" "${B[@]}" &&
		expect_status 404 GET "$pu/v1/approvals?tenant=$ida" "${B[@]}" &&
		expect_status 404 GET "$pu/v1/policies/acme" "${B[@]}" &&
		expect_status 404 POST "$pu/v1/policies/acme/test" "${B[@]}" --data '{"name": "X"}' &&
		! curl -fsS -m 5 "${B[@]}" "$pu/v1/approvals?state=all" | grep -q "$rq" &&
		! timeout 3 curl -sN -m 3 "${B[@]}" "$pu/v1/approvals/stream" | grep -q "$rq"
}
attempt cross-read "globex's key reads acme's approvals, stream and policy" cross_read

cross_decide() {
	expect_status 404 POST "$pu/v1/approvals/$aid/approve" "${B[@]}" --data '{"reason": "mine"}' &&
		expect_status 404 POST "$pu/v1/approvals/$aid/deny" "${B[@]}" --data '{"reason": "x"}' &&
		still_pending
}
attempt cross-decide "globex's key approves acme's request" cross_decide

not_approver() {
	expect_status 403 POST "$pu/v1/approvals/$aid/approve" "${A[@]}" --data '{"reason": "x"}' &&
		still_pending
}
attempt not-approver "acme's tenant-wide key (not among approvers) approves" not_approver

cross_policy() {
	expect_status 404 PUT "$pu/v1/policies/acme" "${B[@]}" --data-binary "@$work/acme.yaml" &&
		expect_status 404 PUT "$pu/v1/policies/$ida" "${B[@]}" --data-binary "@$work/acme.yaml" &&
		expect_status 404 PUT "$pu/v1/policies/_system" "${A[@]}" --data 'rules: []' &&
		curl -fsS -m 5 "${adm[@]}" "$pu/v1/policies/acme" | jget version | grep -qx 1
}
attempt cross-policy "globex writes acme's policy; acme writes the _system policy" cross_policy

allow_all() {
	local out
	out=$(curl -s -m 5 -X PUT "${A[@]}" --data-binary $'rules:\n  - name: "*"\n    effect: allow\n' \
		"$pu/v1/policies/acme")
	grep -q 'anti-pattern 4' <<<"$out" || { echo "$out" >&2; return 1; }
	out=$(curl -s -m 5 -X PUT "${A[@]}" --data-binary $'rules:\n  - name: "?*"\n    scope: "?*"\n    effect: allow\n' \
		"$pu/v1/policies/acme")
	grep -q 'allows every credential' <<<"$out" || { echo "$out" >&2; return 1; }
	curl -fsS -m 5 "${adm[@]}" "$pu/v1/policies/acme" | jget version | grep -qx 1
}
attempt allow-all "a tenant applies a policy that allows everything" allow_all

hostile_bodies() {
	head -c 400000 /dev/zero | tr '\0' a >"$work/big"
	expect_status 413 PUT "$pu/v1/policies/acme" "${A[@]}" --data-binary "@$work/big" &&
		expect_status 413 POST "$pu/v1/approvals/$aid/approve" "${adm[@]}" \
			--data-binary "@$work/big" &&
		expect_status 400 POST "$pu/v1/approvals/$aid/approve" "${adm[@]}" --data '{"reason":' &&
		expect_status 400 POST "$pu/v1/approvals/$aid/approve" "${adm[@]}" --data '["x"]' &&
		expect_status 400 POST "$pu/v1/approvals/$aid/approve" "${adm[@]}" \
			--data '{"reason": 7}' &&
		expect_status 400 PUT "$pu/v1/policies/acme" "${A[@]}" --data-binary $'rules: *x\n' &&
		expect_status 404 GET "$pu/v1/approvals/$aid%2f..%2f..%2f" "${adm[@]}" &&
		still_pending
}
attempt hostile-bodies "oversized, malformed and mistyped bodies" hostile_bodies

forged_withdraw() {
	# a withdrawal naming acme's request under globex's tenant; a run.finished
	# of its run from someone other than the scheduler
	printf '{"header": {"tenant": "%s", "run_id": "%s", "producer": "sagewai-sandboxd"}, "request_id": "%s", "reason": "forged"}\n' \
		"$(jget id <<<"$tb")" "$run" "$rq" |
		"$event" produce --bootstrap "$SAGEWAI_KAFKA_BOOTSTRAP" --topic sagewai.credentials \
			credential.withdrawn >/dev/null
	printf '{"header": {"tenant": "%s", "run_id": "%s", "producer": "sagewai-worker"}, "status": "CANCELLED"}\n' \
		"$ida" "$run" |
		"$event" produce --bootstrap "$SAGEWAI_KAFKA_BOOTSTRAP" --topic sagewai.runs \
			run.finished >/dev/null
	sleep 3
	still_pending
}
attempt forged-withdraw "another tenant's withdrawal; run.finished not from the scheduler" \
	forged_withdraw

page_markup() {
	local h
	h=$(curl -sS -m 5 -D - -o "$work/page.html" "$pu/approvals")
	grep -qi "^content-security-policy: default-src 'none'; script-src 'self'" <<<"$h" &&
		grep -qi '^x-content-type-options: nosniff' <<<"$h" &&
		! grep -qi '<script>' "$work/page.html" &&
		! grep -q 'innerHTML\|insertAdjacentHTML\|document.write\|eval(' \
			"$attack_root/services/policy/web/app.js" &&
		expect_status 404 GET "$pu/approvals/..%2f..%2fpolicy.h" &&
		expect_status 404 GET "$pu/approvals/../../etc/passwd" --path-as-is &&
		expect_status 405 POST "$pu/approvals" --data x
}
attempt page-markup "markup in a reason against the page; traversal on its files" page_markup

# the operator decides it, once
expect_status 200 POST "$pu/v1/approvals/$aid/deny" "${adm[@]}" --data '{"reason": "end of test"}' ||
	attack_fail "the operator's decision"
once() {
	expect_status 409 POST "$pu/v1/approvals/$aid/approve" "${adm[@]}" --data '{"reason": "again"}'
}
attempt decided-once "a second decision after the operator's" once
attack_done
