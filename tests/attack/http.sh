#!/usr/bin/env bash
# Attacks on the HTTP APIs from outside: malformed and oversized requests,
# unknown paths and methods, bad JSON, missing and foreign keys. Each must
# get a clear 4xx and leave the service serving.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start multi_tenant
api=$SAGEWAI_URL
audit=$SAGEWAI_AUDIT_URL

ka=$(SAGEWAI_ADMIN_TOKEN=$ATTACK_ADMIN "$cli" --json tenant create acme |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])') ||
	attack_fail "tenant create"
kb=$(SAGEWAI_ADMIN_TOKEN=$ATTACK_ADMIN "$cli" --json tenant create globex |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])') ||
	attack_fail "tenant create"
SAGEWAI_TOKEN=$ka "$cli" workflow apply "$attack_root/examples/hello.yaml" >/dev/null ||
	attack_fail "workflow apply"
run=$(SAGEWAI_TOKEN=$ka "$cli" --json run submit hello --input '{"brief": "acme secret brief"}' |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])') || attack_fail "submit"

cat >"$work/fullnet.yaml" <<-'EOF'
	name: fullnet
	steps:
	  - name: probe
	    mode: sandboxed
	    network: full
	    run: "cat /proc/net/tcp"
EOF
SAGEWAI_TOKEN=$ka "$cli" workflow apply "$work/fullnet.yaml" >/dev/null ||
	attack_fail "workflow apply fullnet"

big=$work/big.json
python3 -c 'import sys; sys.stdout.write("{\"x\":\"" + "a" * (10 << 20) + "\"}")' >"$big"

attempt no-key "list workflows without a key" \
	expect_status 401 GET "$api/v1/workflows"
attempt bad-key "list workflows with a made-up key" \
	expect_status 401 GET "$api/v1/workflows" -H "Authorization: Bearer sk-not-a-key"
attempt cross-tenant-run "read another tenant's run" \
	expect_status 404 GET "$api/v1/runs/$run" -H "Authorization: Bearer $kb"
attempt cross-tenant-cancel "cancel another tenant's run" \
	expect_status 404 POST "$api/v1/runs/$run/cancel" -H "Authorization: Bearer $kb"
attempt tenant-create-no-admin "create a tenant with a tenant's key" \
	expect_status 401 POST "$api/v1/tenants" -H "Authorization: Bearer $ka" \
	-H 'Content-Type: application/json' -d '{"name":"evil"}'
attempt bad-json "submit a run with malformed JSON" \
	expect_status 400 POST "$api/v1/runs" -H "Authorization: Bearer $ka" \
	-H 'Content-Type: application/json' -d '{"workflow": "hello", "input": {'
attempt unknown-field "submit a run with a field the API does not know" \
	expect_status 400 POST "$api/v1/runs" -H "Authorization: Bearer $ka" \
	-H 'Content-Type: application/json' -d '{"workflow": "hello", "inputs": {}}'
attempt oversized-body "submit a 10 MiB body" \
	expect_status 413 POST "$api/v1/runs" -H "Authorization: Bearer $ka" \
	-H 'Content-Type: application/json' --data-binary "@$big"
attempt unknown-path "GET an unknown path" \
	expect_status 404 GET "$api/v1/nope" -H "Authorization: Bearer $ka"
attempt bad-method "DELETE on the runs collection" \
	expect_status 405 DELETE "$api/v1/runs" -H "Authorization: Bearer $ka"
attempt bad-run-id "a run id that is not a UUID" \
	expect_status 404 GET "$api/v1/runs/..%2f..%2fetc%2fpasswd" -H "Authorization: Bearer $ka"
attempt huge-header "a 100 KiB header" \
	bash -c 'c=$(curl -s -o /dev/null -w "%{http_code}" -m 10 -H "X-Big: $(head -c 100000 /dev/zero | tr "\0" a)" "$1/v1/workflows"); [ "$c" -ge 400 ] && [ "$c" -lt 500 ] || [ "$c" = 000 ]' _ "$api"
attempt garbage-request "raw garbage instead of HTTP" \
	bash -c 'printf "\x00\x01\x02GARBAGE\r\n\r\n" | timeout 5 bash -c "cat >/dev/tcp/127.0.0.1/$1" || true' _ "$(cat "$work/scheduler.port")"
attempt network-full "a tenant's sandboxed step with network full (the host's network)" \
	bash -c 'out=$(SAGEWAI_TOKEN=$1 "$2" run submit fullnet --input "{}" 2>&1) && { echo "accepted: $out" >&2; exit 1; }; echo "$out" | grep -q "network full" || { echo "$out" >&2; exit 1; }' _ "$ka" "$cli"
attempt audit-no-key "read a run's audit trail without a key" \
	expect_status 401 GET "$audit/v1/audit/runs/$run"
attempt audit-cross-tenant "read another tenant's audit trail" \
	expect_status 404 GET "$audit/v1/audit/runs/$run" -H "Authorization: Bearer $kb"
attack_done
