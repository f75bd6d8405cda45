#!/usr/bin/env bash
# Server-side request forgery through a tenant's `uses: http` step: the
# worker must not fetch the stack's own services (audit, scheduler, the LLM
# provider) nor any loopback, private, link-local or metadata address --
# however the address is spelt, and also when an allowed server redirects
# there. Each attempt runs a workflow whose http step fetches the target;
# it holds when the step fails with the worker's refusal
#   http_error: destination A:P is not allowed (WHY); operators can allow
#   it with SAGEWAI_HTTP_ALLOW
# and the run's record holds none of the target's data.
#
# The one allowed destination is a redirector on loopback (standing in for
# a public server the tenant controls): the worker's SAGEWAI_HTTP_ALLOW
# names its port, and a control run checks that it is reachable.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# the redirector: binds port 0, reports it, answers /ok and 302s /to?u=URL
timeout 900 python3 - "$work/redirector.port" >"$work/redirector.log" 2>&1 <<'EOF' &
import http.server, sys, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/ok":
            body = b'{"redirector": "reached"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        to = urllib.parse.parse_qs(u.query).get("u", ["/ok"])[0]
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()
s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d\n" % s.server_address[1])
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
EOF
redirector_pid=$!
for _ in $(seq 1 100); do [ -s "$work/redirector.port" ] && break; sleep 0.05; done
[ -s "$work/redirector.port" ] || attack_fail "the redirector did not start"
rport=$(cat "$work/redirector.port")
printf "SAGEWAI_HTTP_ALLOW=127.0.0.1:%s\n" "$rport" >>"$work/worker.env"

attack_stack_start multi_tenant
trap 'kill "$redirector_pid" 2>/dev/null || true; sw_stack_stop "$work"' EXIT
api=$SAGEWAI_URL
audit=$SAGEWAI_AUDIT_URL
sched_port=$(cat "$work/scheduler.port")
audit_port=$(cat "$work/audit.port")
llm_port=${SAGEWAI_LLM_BASE_URL#http://127.0.0.1:}
llm_port=${llm_port%%/*}

ka=$(SAGEWAI_ADMIN_TOKEN=$ATTACK_ADMIN "$cli" --json tenant create acme |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])') ||
	attack_fail "tenant create"
kb=$(SAGEWAI_ADMIN_TOKEN=$ATTACK_ADMIN "$cli" --json tenant create globex |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])') ||
	attack_fail "tenant create"
# acme's run: the data globex is after
SAGEWAI_TOKEN=$ka "$cli" workflow apply "$attack_root/examples/hello.yaml" >/dev/null ||
	attack_fail "workflow apply"
victim=$(SAGEWAI_TOKEN=$ka "$cli" --json run submit hello --input '{"brief": "acme secret brief"}' |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])') || attack_fail "submit"

# globex's weapon: one http step to a URL of its choosing
cat >"$work/fetch.yaml" <<-'EOF'
	name: fetch
	steps:
	  - name: get
	    uses: http
	    with:
	      url: ${{ input.url }}
	      method: GET
	    timeout: 10s
EOF
SAGEWAI_TOKEN=$kb "$cli" workflow apply "$work/fetch.yaml" >/dev/null || attack_fail "apply fetch"

# fetch_run URL: run globex's fetch of URL to its end; prints the run's JSON
fetch_run() {
	local run state out
	run=$(SAGEWAI_TOKEN=$kb "$cli" --json run submit fetch \
		--input "$(python3 -c 'import json,sys; print(json.dumps({"url": sys.argv[1]}))' "$1")" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])') || {
		echo "submit failed" >&2
		return 1
	}
	for _ in $(seq 1 300); do
		out=$(SAGEWAI_TOKEN=$kb "$cli" --json run show "$run") || return 1
		state=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
		case "$state" in succeeded | failed | cancelled | timed_out) break ;; esac
		sleep 0.2
	done
	echo "$out"
}

# refused URL WHY: the step failed with the worker's refusal for WHY, and
# the run holds nothing of acme's
refused() {
	local out
	out=$(fetch_run "$1") || return 1
	echo "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
why, victim, text = sys.argv[1], sys.argv[2], json.dumps(r)
assert r["state"] == "failed", "run state %s: %s" % (r["state"], text[:600])
assert "http_error: destination " in text and \
    "is not allowed (%s); operators can allow it with SAGEWAI_HTTP_ALLOW" % why in text, \
    "not the refusal: %s" % text[:600]
assert "acme secret brief" not in text and victim not in text.replace(sys.argv[3], ""), \
    "the run holds acme data: %s" % text[:600]
' "$2" "$victim" "$1" >&2
}

out=$(fetch_run "http://127.0.0.1:$rport/ok") || attack_fail "control run"
echo "$out" | grep -q 'reached' ||
	attack_fail "the allowed redirector was not reached: $out"

attempt audit-api "fetch another tenant's audit trail from the audit API on 127.0.0.1" \
	refused "$audit/v1/audit/runs/$victim" loopback
attempt scheduler-api "fetch the scheduler API on 127.0.0.1" \
	refused "$api/v1/runs/$victim" loopback
attempt llm-provider "fetch the LLM provider the worker itself uses" \
	refused "http://127.0.0.1:$llm_port/v1/mock/stats" loopback
attempt metadata "fetch the cloud metadata service 169.254.169.254" \
	refused "http://169.254.169.254/latest/meta-data/iam/security-credentials/" "cloud metadata"
attempt ipv6-loopback "fetch the scheduler over [::1]" \
	refused "http://[::1]:$sched_port/v1/runs" loopback
attempt zero-address "fetch the audit API as 0.0.0.0" \
	refused "http://0.0.0.0:$audit_port/v1/audit/runs/$victim" unspecified
attempt decimal-address "fetch the audit API as 2130706433 (127.0.0.1 in decimal)" \
	refused "http://2130706433:$audit_port/v1/audit/runs/$victim" loopback
attempt mapped-address "fetch the audit API as [::ffff:127.0.0.1]" \
	refused "http://[::ffff:127.0.0.1]:$audit_port/v1/audit/runs/$victim" loopback
attempt localhost "fetch the audit API by the name localhost" \
	refused "http://localhost:$audit_port/v1/audit/runs/$victim" loopback
attempt redirect "an allowed server redirects to the audit API on loopback" \
	refused "http://127.0.0.1:$rport/to?u=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$audit/v1/audit/runs/$victim")" loopback
attempt redirect-other-port "an allowed server redirects to another port of its own address" \
	refused "http://127.0.0.1:$rport/to?u=http://127.0.0.1:$sched_port/v1/runs" loopback
attack_done
