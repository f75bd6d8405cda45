#!/usr/bin/env bash
# Attacks on tenancy: names are labels, ids are the identity. A deleted
# tenant's keys stop at once; its name, or "default", given to a new tenant
# inherits nothing; tenants' keys reach only their own runs, on the run API
# and on the audit API; only the operator administers -- users and their
# keys too, which act for their tenant and no more, and stop when the user
# is deleted. A credential in a run's input is refused, never echoed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start multi_tenant
api=$SAGEWAI_URL
audit=$SAGEWAI_AUDIT_URL
admin() { SAGEWAI_ADMIN_TOKEN=$ATTACK_ADMIN "$cli" --json "$@"; }
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

ka=$(admin tenant create acme | jget api_key) || attack_fail "tenant create"
kb=$(admin tenant create globex | jget api_key) || attack_fail "tenant create"
kaud=$(admin key create --role auditor | jget api_key) || attack_fail "key create"
SAGEWAI_TOKEN=$ka "$cli" workflow apply "$attack_root/examples/hello.yaml" >/dev/null ||
	attack_fail "workflow apply"
run=$(SAGEWAI_TOKEN=$ka "$cli" --json run submit hello --input '{"brief": "acme secret brief"}' |
	jget run_id) || attack_fail "submit"
# the run's trail is in the audit log, readable with acme's key (keys reach
# the audit service as events: wait for them)
for _ in $(seq 1 150); do
	[ "$(http_status GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $ka")" = 200 ] &&
		break
	sleep 0.2
done
expect_status 200 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $ka" ||
	attack_fail "acme cannot read its own audit trail"

# until STATUS METHOD URL ARGS...: the status comes within 10 s (keys are
# events: the audit service learns a revocation a moment later)
until_status() {
	local want=$1 got
	shift
	for _ in $(seq 1 50); do
		got=$(http_status "$@")
		[ "$got" = "$want" ] && return 0
		sleep 0.2
	done
	echo "expected HTTP $want, still $got: $*" >&2
	return 1
}

attempt audit-no-key "read a run's audit trail without a key" \
	expect_status 401 GET "$audit/v1/audit/runs/$run"
attempt audit-bad-key "read a run's audit trail with a made-up key" \
	expect_status 401 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer swk_made-up"
attempt audit-cross-tenant "read another tenant's audit trail" \
	expect_status 404 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $kb"
# the audit cursor (GET /v1/audit/events, sagewai audit tail): a tenant's
# key pages through everything and finds nothing of another tenant
cursor_clean() { # KEY: every page of the cursor holds no event of acme's run
	local after=0 body
	for _ in $(seq 1 1000); do
		body=$(curl -fsS -m 10 -H "Authorization: Bearer $1" \
			"$audit/v1/audit/events?after=$after&limit=5000") || return 1
		if echo "$body" | grep -q -e "$run" -e "acme secret brief"; then
			echo "acme's events through the cursor" >&2
			return 1
		fi
		python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["events"] else 1)' \
			<<<"$body" || return 0
		after=$(jget next <<<"$body")
	done
	return 1
}
attempt audit-cursor-no-key "read the audit cursor without a key" \
	expect_status 401 GET "$audit/v1/audit/events?last=10"
attempt audit-cursor-cross-tenant "page through the audit cursor for another tenant's events" \
	cursor_clean "$kb"
attempt audit-cursor-run "ask the audit cursor for another tenant's run by id" bash -c '
	out=$(curl -fsS -m 10 -H "Authorization: Bearer $1" "$2/v1/audit/events?run=$3&last=100")
	python3 -c "import json,sys; sys.exit(1 if json.load(sys.stdin)[\"events\"] else 0)" \
		<<<"$out"' _ "$kb" "$audit" "$run"
attempt audit-tail-cross-tenant "follow another tenant's run with sagewai audit tail" bash -c '
	out=$(SAGEWAI_TOKEN=$1 "$2" --json audit tail --run "$3" --lines 100) || exit 1
	[ -z "$out" ]' _ "$kb" "$cli" "$run"
attempt audit-admin-token "read the audit trail with the operator's admin token" \
	expect_status 401 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $ATTACK_ADMIN"
attempt auditor-run-api "use an auditor key on the run API" \
	expect_status 401 GET "$api/v1/runs/$run" -H "Authorization: Bearer $kaud"
attempt key-create-tenant "mint an auditor key with a tenant's key" \
	expect_status 401 POST "$api/v1/keys" -H "Authorization: Bearer $ka" \
	-H 'Content-Type: application/json' -d '{"role":"auditor"}'
attempt delete-tenant-key "delete another tenant with a tenant's key" \
	expect_status 401 DELETE "$api/v1/tenants/globex" -H "Authorization: Bearer $ka"
attempt name-default "create a tenant named default (single_org's data)" \
	expect_status 400 POST "$api/v1/tenants" -H "Authorization: Bearer $ATTACK_ADMIN" \
	-H 'Content-Type: application/json' -d '{"name":"default"}'
attempt name-like-id "create a tenant named like another's id" \
	expect_status 400 POST "$api/v1/tenants" -H "Authorization: Bearer $ATTACK_ADMIN" \
	-H 'Content-Type: application/json' -d '{"name":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}'

# event streams are read together (one statement for all the streams
# touched in one pass of the scheduler's loop, each run's tenant compared in
# it): globex's streams on acme's run, opened at once beside acme's own,
# get 404 and nothing of the run, while acme's get it
streams_mixed() { # KA KB API RUN
	local d i k code
	for _ in $(seq 1 100); do
		curl -fsS -m 5 -H "Authorization: Bearer $1" "$3/v1/runs/$4" |
			grep -q '"state": *"\(succeeded\|failed\|cancelled\)"' && break
		sleep 0.1
	done
	d=$(mktemp -d "$work/streams.XXXXXX")
	for i in $(seq 1 40); do
		k=$2
		[ $((i % 2)) -eq 0 ] && k=$1
		curl -sS -m 10 -o "$d/$i.body" -w '%{http_code}' -H "Authorization: Bearer $k" \
			"$3/v1/runs/$4/events" >"$d/$i.code" &
	done
	wait
	for i in $(seq 1 40); do
		code=$(cat "$d/$i.code")
		if [ $((i % 2)) -eq 0 ]; then
			[ "$code" = 200 ] && grep -q "acme secret brief" "$d/$i.body" || {
				echo "acme's stream $i: $code" >&2
				return 1
			}
		elif [ "$code" != 404 ] || grep -q "$4\|acme secret brief" "$d/$i.body"; then
			echo "globex's stream $i on acme's run: $code $(head -c 200 "$d/$i.body")" >&2
			return 1
		fi
	done
}
attempt stream-batch-cross-tenant "stream another tenant's run beside its owner's streams" \
	streams_mixed "$ka" "$kb" "$api" "$run"

# users: the operator's alone; a user's key acts for its tenant, no more
admin user create alice --tenant acme >/dev/null || attack_fail "user create"
admin user create bob --tenant globex >/dev/null || attack_fail "user create"
kal=$(admin key create --tenant acme --user alice | jget api_key) || attack_fail "user key"
kgb=$(admin key create --tenant globex --user bob | jget api_key) || attack_fail "user key"
adm=(-H "Authorization: Bearer $ATTACK_ADMIN" -H 'Content-Type: application/json')

attempt user-create-tenant-key "create a user with a tenant's key" \
	expect_status 401 POST "$api/v1/tenants/acme/users" -H "Authorization: Bearer $ka" \
	-H 'Content-Type: application/json' -d '{"name":"mallory"}'
attempt user-list-user-key "list a tenant's users with a user's key" \
	expect_status 401 GET "$api/v1/tenants/acme/users" -H "Authorization: Bearer $kal"
attempt user-key-mint "mint a key with a user's key" \
	expect_status 401 POST "$api/v1/keys" -H "Authorization: Bearer $kal" \
	-H 'Content-Type: application/json' -d '{"tenant":"acme","user":"alice"}'
attempt user-key-cross-run "read another tenant's run with a user's key" \
	expect_status 404 GET "$api/v1/runs/$run" -H "Authorization: Bearer $kgb"
attempt user-key-cross-audit "read another tenant's audit trail with a user's key" \
	until_status 404 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $kgb"
attempt user-key-own-audit "a user's key reads its own tenant's trail (and only that)" \
	until_status 200 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $kal"
attempt user-name-path "a user named with a path" \
	expect_status 400 POST "$api/v1/tenants/acme/users" "${adm[@]}" \
	-d '{"name":"../../globex/users/bob"}'
# bob of globex must survive a delete aimed at him through acme's path
bob_alive() {
	expect_status 404 DELETE "$api/v1/tenants/acme/users/..%2F..%2Fglobex%2Fusers%2Fbob" \
		"${adm[@]}" || return 1
	expect_status 404 DELETE "$api/v1/tenants/acme/users/bob" "${adm[@]}" || return 1
	expect_status 200 GET "$api/v1/runs" -H "Authorization: Bearer $kgb"
}
attempt user-delete-other "delete another tenant's user through an encoded path" bob_alive
default_refused() {
	expect_status 404 POST "$api/v1/tenants/default/users" "${adm[@]}" -d '{"name":"x"}' &&
		expect_status 404 POST "$api/v1/keys" "${adm[@]}" -d '{"tenant":"default"}'
}
attempt user-default-tenant "users or keys of single_org's tenant in multi_tenant mode" \
	default_refused
token=ghp_4fTq9ZkLm2Rx7PwY1vB8nC3dE6gH0jK5sA2b
credential_refused() {
	local out
	out=$(curl -s -m 10 -X POST "$api/v1/runs" -H "Authorization: Bearer $kal" \
		-H 'Content-Type: application/json' \
		-d "{\"workflow\":\"hello\",\"input\":{\"brief\":\"deploy with $token\"}}")
	echo "$out" | grep -q '"credential_in_input"' || { echo "accepted: $out" >&2; return 1; }
	echo "$out" | grep -q 'input.brief looks like a GitHub token' || { echo "$out" >&2; return 1; }
	! echo "$out" | grep -q "$token" || { echo "echoed: $out" >&2; return 1; }
}
attempt credential-in-input "a GitHub token as run input (refused, never echoed)" \
	credential_refused
admin user delete alice --tenant acme >/dev/null || attack_fail "user delete"
attempt deleted-user-key-runs "use a deleted user's key on the run API" \
	expect_status 401 GET "$api/v1/runs" -H "Authorization: Bearer $kal"
attempt deleted-user-key-audit "use a deleted user's key on the audit API" \
	until_status 401 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $kal"

# the operator deletes acme; someone gets the name
admin tenant delete acme >/dev/null || attack_fail "tenant delete"
kn=$(admin tenant create acme | jget api_key) || attack_fail "tenant create (again)"

attempt deleted-key-runs "use a deleted tenant's key on the run API" \
	until_status 401 GET "$api/v1/runs/$run" -H "Authorization: Bearer $ka"
attempt deleted-key-audit "use a deleted tenant's key on the audit API" \
	until_status 401 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $ka"
attempt reused-name-run "read the old acme's run as the new acme" \
	expect_status 404 GET "$api/v1/runs/$run" -H "Authorization: Bearer $kn"
attempt reused-name-list "list the old acme's runs and workflows as the new acme" \
	bash -c '[ "$(curl -fsS -m 10 -H "Authorization: Bearer $2" "$1/v1/runs")" = "{\"runs\": []}" ] ||
		[ "$(curl -fsS -m 10 -H "Authorization: Bearer $2" "$1/v1/runs" |
			python3 -c "import json,sys; print(len(json.load(sys.stdin)[\"runs\"]))")" = 0 ] &&
		[ "$(curl -fsS -m 10 -H "Authorization: Bearer $2" "$1/v1/workflows" |
			python3 -c "import json,sys; print(len(json.load(sys.stdin)[\"workflows\"]))")" = 0 ]' \
	_ "$api" "$kn"
attempt reused-name-audit "read the old acme's audit trail as the new acme" \
	until_status 404 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $kn"
# and the trail is kept: the auditor still reads it
expect_status 200 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $kaud" ||
	attack_fail "the auditor cannot read a deleted tenant's trail"
attack_done
