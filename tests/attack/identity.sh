#!/usr/bin/env bash
# Attacks on sagewai-identity (docs/IDENTITY.md, "Threat model") in
# multi_tenant mode: a tenant's key against another tenant's secrets and
# profiles, against writes and against the cascade; no key; forged seal
# requests produced straight onto sagewai.identity (an unlisted host key; a
# listed one for what was never resolved, or for another tenant's secret);
# a re-run's pins reaching for another tenant's secret, a key the step is
# not given or a version it lacks;
# a secret value in a URL; an oversized body; path traversal in names; a
# profile binding another tenant's (or the system's) secret; and a hostile
# step inside an identity sandbox reaching for sandboxd's and identity's
# memory and environment, and for identity and Kafka over the network.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# tenants may run identity_scoped steps (the preview gate open): the hostile
# step below is a tenant's
for svc in scheduler sandboxd worker; do
	printf "SAGEWAI_SEALED_PREVIEW=1\n" >>"$work/$svc.env"
done
attack_stack_start multi_tenant
[ -n "${SAGEWAI_IDENTITY_URL:-}" ] || attack_fail "sagewai-identity is not running"
[ -f "$work/sandboxd.port" ] || attack_fail "sandboxd is not running (bwrap unusable here?)"
idu=$SAGEWAI_IDENTITY_URL
event=$attack_build/tools/event/sagewai-event
admin() { SAGEWAI_ADMIN_TOKEN=$ATTACK_ADMIN "$cli" --json "$@"; }
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
adm=(-H "Authorization: Bearer $ATTACK_ADMIN" -H 'Content-Type: application/json')
mkdir -p "$work/values"
chmod 700 "$work/values"
# marker VAR: a random value in values/VAR (0600)
marker() {
	(umask 077 && printf 'atk_%s_%s/+=' "$1" "$(head -c 12 /dev/urandom | od -An -tx1 |
		tr -d ' \n')" >"$work/values/$1")
}

# names of their own: the tests of a ctest run share the broker, so every
# stack's identity learns every stack's tenants, and a name another test
# also uses ("acme") could resolve to that test's tenant
na=acme-$$
nb=globex-$$
ta=$(admin tenant create "$na") || attack_fail "tenant create"
tb=$(admin tenant create "$nb") || attack_fail "tenant create"
ka=$(jget api_key <<<"$ta")
kb=$(jget api_key <<<"$tb")
ida=$(jget id <<<"$ta")
idb=$(jget id <<<"$tb")
A=(-H "Authorization: Bearer $ka")
# identity learns tenants from sagewai.tenants: wait for both
for t in "$na" "$nb"; do
	for _ in $(seq 1 100); do
		[ "$(http_status GET "$idu/v1/secrets?tenant=$t" "${adm[@]}")" = 200 ] && break
		sleep 0.1
	done
	expect_status 200 GET "$idu/v1/secrets?tenant=$t" "${adm[@]}" ||
		attack_fail "identity never learnt tenant $t"
done
marker a
marker b
marker sys
admin --tenant "$na" secret set ac_token --from-file "$work/values/a" >/dev/null ||
	attack_fail "secret set (acme)"
admin --tenant "$nb" secret set gx_token --from-file "$work/values/b" >/dev/null ||
	attack_fail "secret set (globex)"
admin --tenant _system secret set sys_only --from-file "$work/values/sys" >/dev/null ||
	attack_fail "secret set (_system)"
admin --tenant "$na" identity profile set acp --key AC_TOKEN=secret:ac_token >/dev/null ||
	attack_fail "profile set (acme)"
admin --tenant "$nb" identity profile set gxp --key GX_TOKEN=secret:gx_token >/dev/null ||
	attack_fail "profile set (globex)"
# the tenant's own view works (so that a 404 below means isolation)
expect_status 200 GET "$idu/v1/secrets" "${A[@]}" || attack_fail "acme cannot list its secrets"
expect_status 200 GET "$idu/v1/identity/profiles/acp" "${A[@]}" ||
	attack_fail "acme cannot read its profile"

# globex_intact: globex's secret still has exactly one active version and
# its profile is unchanged (after each attempt at them)
globex_intact() {
	local s p
	s=$(curl -fsS -m 10 "$idu/v1/secrets?tenant=$nb" "${adm[@]}")
	p=$(curl -fsS -m 10 "$idu/v1/identity/profiles/gxp?tenant=$nb" "${adm[@]}")
	python3 -c '
import json, sys
s, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
names = sorted(x["name"] for x in s["secrets"])
assert names == ["gx_token"], "globex secrets: %s" % names
g = s["secrets"][0]
assert g["state"] == "active" and g["current"] == 1 and len(g["versions"]) == 1, g
assert p["body"] == {"keys": {"GX_TOKEN": {"secret": "gx_token"}}}, p' "$s" "$p" || {
		echo "globex's secrets or profile changed: $s $p" >&2
		return 1
	}
}
acme_names() { # the names of acme's secrets, as the operator sees them
	curl -fsS -m 10 "$idu/v1/secrets?tenant=$na" "${adm[@]}" |
		python3 -c 'import json,sys; print(" ".join(sorted(x["name"] for x in json.load(sys.stdin)["secrets"])))'
}
[ "$(acme_names)" = ac_token ] || attack_fail "acme's secrets: $(acme_names)"
globex_intact 2>&1 || attack_fail "globex's initial state"

# ---- a tenant's key against another tenant --------------------------------

cross_list() {
	expect_status 404 GET "$idu/v1/secrets?tenant=$nb" "${A[@]}" || return 1
	expect_status 404 GET "$idu/v1/secrets?tenant=$idb" "${A[@]}" || return 1
	expect_status 404 GET "$idu/v1/secrets?tenant=_system" "${A[@]}" || return 1
	local own
	own=$(curl -fsS -m 10 "$idu/v1/secrets" "${A[@]}")
	! grep -qE 'gx_token|sys_only' <<<"$own" || {
		echo "acme's list shows another scope's secret: $own" >&2
		return 1
	}
}
attempt cross-list-secrets "list globex's (and the system's) secrets with acme's key" cross_list
cross_profile() {
	expect_status 404 GET "$idu/v1/identity/profiles/gxp" "${A[@]}" || return 1
	expect_status 404 GET "$idu/v1/identity/profiles/gxp?tenant=$nb" "${A[@]}" || return 1
	expect_status 404 GET "$idu/v1/identity/profiles/gxp?tenant=$idb" "${A[@]}" || return 1
	expect_status 404 GET "$idu/v1/identity/profiles?tenant=$nb" "${A[@]}" || return 1
	expect_status 404 GET "$idu/v1/identity/profiles/default?level=system" "${A[@]}" ||
		expect_status 403 GET "$idu/v1/identity/profiles/default?level=system" "${A[@]}" ||
		return 1
	! curl -fsS -m 10 "$idu/v1/identity/profiles" "${A[@]}" | grep -q gxp || {
		echo "acme's profile list shows globex's profile" >&2
		return 1
	}
}
attempt cross-read-profile "read globex's profiles with acme's key" cross_profile

writes_forbidden() {
	local b='{"value_b64": "QUJDREVGR0g="}' t
	for t in "" "?tenant=$nb"; do
		expect_status 403 PUT "$idu/v1/secrets/ac_token$t" "${A[@]}" -d "$b" || return 1
		expect_status 403 PUT "$idu/v1/secrets/new_one$t" "${A[@]}" -d "$b" || return 1
		expect_status 403 POST "$idu/v1/secrets/ac_token/rotate$t" "${A[@]}" -d "$b" || return 1
		expect_status 403 POST "$idu/v1/secrets/gx_token/revoke$t" "${A[@]}" -d '{}' || return 1
		expect_status 403 DELETE "$idu/v1/secrets/gx_token$t" "${A[@]}" || return 1
		expect_status 403 PUT "$idu/v1/identity/profiles/acp$t" "${A[@]}" \
			-d '{"keys": {"X": {"value": "y"}}}' || return 1
		expect_status 403 DELETE "$idu/v1/identity/profiles/gxp$t" "${A[@]}" || return 1
	done
	expect_status 403 POST "$idu/v1/secrets/rekey" "${A[@]}" || return 1
	globex_intact || return 1
	[ "$(acme_names)" = ac_token ] || { echo "acme's secrets: $(acme_names)" >&2; return 1; }
}
attempt tenant-writes "write, rotate, revoke, delete secrets and profiles with a tenant's key" \
	writes_forbidden

# resolve PROFILE-JSON [KEY]: POST /v1/identity/resolve of one step
resolve() {
	curl -s -m 10 -X POST "$idu/v1/identity/resolve" -H "Authorization: Bearer ${2:-$ka}" \
		-H 'Content-Type: application/json' \
		-d "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": \"identity_scoped\", \"profile\": $1}]}"
}
cross_resolve() {
	local out
	out=$(resolve '"gxp"')
	python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["ok"] is False and r["code"] == "missing", r' "$out" || {
		echo "resolving globex's profile as acme: $out" >&2
		return 1
	}
	! grep -qE 'gx_token|GX_TOKEN' <<<"$out" || { echo "globex's keys named: $out" >&2; return 1; }
	out=$(curl -s -m 10 -X POST "$idu/v1/identity/resolve?tenant=$nb" "${A[@]}" \
		-H 'Content-Type: application/json' \
		-d '{"workflow": "wf", "steps": [{"step": "s", "mode": "identity_scoped", "profile": "gxp"}]}')
	python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r.get("ok") is False or "error" in r, r' "$out" || {
		echo "resolving with ?tenant=globex as acme: $out" >&2
		return 1
	}
	! grep -qE 'gx_token|GX_TOKEN' <<<"$out" || { echo "globex's keys named: $out" >&2; return 1; }
}
attempt cross-resolve "resolve with globex's profile name using acme's key" cross_resolve

# a re-run's pins (identity.resolve_requested.pins; the same check through
# the HTTP preview): a pin names a key, a secret and a version, and must
# never widen what the step's cascade gives
resolve_pinned() { # PINS-JSON: acme's step with profile acp, pinned
	curl -s -m 10 -X POST "$idu/v1/identity/resolve" "${A[@]}" -H 'Content-Type: application/json' \
		-d "{\"workflow\": \"wf\", \"steps\": [{\"step\": \"s\", \"mode\": \"identity_scoped\", \"profile\": \"acp\"}], \"pins\": $1}"
}
pinned_as() { # CODE PINS-JSON
	local out
	out=$(resolve_pinned "$2")
	python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["ok"] is (sys.argv[2] == "ok") and (r["code"] == sys.argv[2] or sys.argv[2] == "ok"), r
assert r["ok"] or r["steps"] == [], r' "$out" "$1" || {
		echo "pins $2: want $1, got $out" >&2
		return 1
	}
	! grep -qF -- "$(cat "$work/values/b")" <<<"$out" || { echo "globex's value: $out" >&2; return 1; }
	! grep -qF -- "$(cat "$work/values/sys")" <<<"$out" || { echo "the system's value: $out" >&2; return 1; }
}
forged_pins() {
	# the control: acme's own key at its own version
	pinned_as ok '[{"step": "s", "env": "AC_TOKEN", "secret": "ac_token", "version": 1, "mac": ""}]' ||
		return 1
	# acme's key pinned to globex's secret (by name: acme's scope has none)
	pinned_as not_allowed '[{"step": "s", "env": "AC_TOKEN", "secret": "gx_token", "version": 1, "mac": ""}]' ||
		return 1
	# globex's key, the system's secret: keys acme's cascade does not give
	pinned_as not_allowed '[{"step": "s", "env": "GX_TOKEN", "secret": "gx_token", "version": 1, "mac": ""}]' ||
		return 1
	pinned_as not_allowed '[{"step": "s", "env": "SYS_ONLY", "secret": "sys_only", "version": 1, "mac": ""}]' ||
		return 1
	# a version acme's secret does not have
	pinned_as version_gone '[{"step": "s", "env": "AC_TOKEN", "secret": "ac_token", "version": 2, "mac": ""}]' ||
		return 1
	# acme's version with globex's value's MAC (a guess at another value)
	pinned_as version_gone "[{\"step\": \"s\", \"env\": \"AC_TOKEN\", \"secret\": \"ac_token\", \"version\": 1, \"mac\": \"$(printf 'ab%.0s' $(seq 32))\"}]" ||
		return 1
	# malformed: a reserved key, a huge version, a step not asked for
	pinned_as bad_request '[{"step": "s", "env": "LD_PRELOAD", "secret": "ac_token", "version": 1, "mac": ""}]' ||
		return 1
	pinned_as bad_request '[{"step": "s", "env": "AC_TOKEN", "secret": "ac_token", "version": 99999999999, "mac": ""}]' ||
		return 1
	pinned_as bad_request '[{"step": "../x", "env": "AC_TOKEN", "secret": "ac_token", "version": 1, "mac": ""}]' ||
		return 1
	pinned_as bad_request '"all"'
}
attempt forged-pins \
	"resolve with pins naming globex's secret, the system's, a key the step is not given, a version or value it does not have, malformed pins" \
	forged_pins

no_key() {
	expect_status 401 GET "$idu/v1/secrets" || return 1
	expect_status 401 GET "$idu/v1/secrets?tenant=$na" || return 1
	expect_status 401 GET "$idu/v1/identity/profiles/acp?tenant=$na" || return 1
	expect_status 401 PUT "$idu/v1/secrets/x?tenant=$na" -d '{"value_b64": "QUJDREVGR0g="}' ||
		return 1
	expect_status 401 POST "$idu/v1/identity/resolve" \
		-d '{"workflow": "wf", "steps": [{"step": "s", "mode": "identity_scoped", "profile": "acp"}]}' ||
		return 1
	expect_status 401 GET "$idu/v1/secrets" -H "Authorization: Bearer swk_made-up" || return 1
	expect_status 401 GET "$idu/v1/secrets" -H "Authorization: Bearer $ATTACK_ADMIN-x" || return 1
}
attempt no-key "read, write and resolve without a key, or with a made-up one" no_key

# ---- forged seal requests ---------------------------------------------------

# a real resolution of acme's: a run of an identity_scoped step whose
# sandbox prints what it can reach (the hostile step, below)
probe='import json, os, socket, sys
own = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
host = [int(p) for p in sys.argv[1].split(",")]
out = {"pids": own}
def grab(path, off=0, n=65536):
    try:
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n).decode("latin-1")
    except (OSError, ValueError, OverflowError) as e:
        return "refused: %s" % e
for pid in sorted(set(own + host)):
    for what in ("environ", "cmdline", "maps", "status"):
        out["%d/%s" % (pid, what)] = grab("/proc/%d/%s" % (pid, what))
    if pid in host and pid not in own:
        m = out["%d/maps" % pid]
        addr = int(m.split("-", 1)[0], 16) if not m.startswith("refused") else 0
        out["%d/mem" % pid] = grab("/proc/%d/mem" % pid, addr, 64)
for name in ("/proc/self/root/../../etc/shadow", sys.argv[2], sys.argv[3]):
    out[name] = grab(name)
for hp in sys.argv[4].split(","):
    h, p = hp.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((h, int(p)))
        out["connect " + hp] = "REACHED"
    except OSError as e:
        out["connect " + hp] = "refused: errno %d" % (e.errno or 0)
    s.close()
print(json.dumps(out))'
probe=${probe//\"/\\\"}
probe=${probe//$'\n'/\\n}
cat >"$work/hostile.yaml" <<EOF
name: hostile
steps:
  - name: s
    mode: identity_scoped
    identity: acp
    timeout: 60s
    run: [python3, -c, "$probe", "\${{ input.pids }}", "\${{ input.f1 }}", "\${{ input.f2 }}", "\${{ input.hosts }}"]
EOF
SAGEWAI_TOKEN=$ka "$cli" workflow apply "$work/hostile.yaml" >/dev/null || attack_fail "apply hostile"
sbd_pids=$(cat "$work/sandboxd.pid")
for p in $(cat "/proc/$sbd_pids/task/"*/children 2>/dev/null); do sbd_pids="$sbd_pids,$p"; done
pids="$sbd_pids,$(cat "$work/identity.pid"),$(cat "$work/scheduler.pid")"
hosts="127.0.0.1:$(cat "$work/identity.port"),$SAGEWAI_KAFKA_BOOTSTRAP"
input=$(python3 -c 'import json, sys; print(json.dumps(dict(zip(("pids", "f1", "f2", "hosts"), sys.argv[1:]))))' \
	"$pids" "$work/secrets/sandboxd.seal.key" "$work/secrets/identity/master.keys" "$hosts")
out=$(SAGEWAI_TOKEN=$ka "$cli" run submit hostile --input "$input" --watch 2>&1) || true
run=$(grep -o '[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}' <<<"$out" |
	head -n 1)
[ -n "$run" ] || attack_fail "hostile run not submitted: $out"
SAGEWAI_TOKEN=$ka "$cli" --json run show "$run" >"$work/hostile.json" ||
	attack_fail "run show hostile"
grep -q '"state":"succeeded"' "$work/hostile.json" ||
	attack_fail "the hostile step did not run: $(head -c 2000 "$work/hostile.json")"

# everything secret of the host: the keys in identity's and sandboxd's files,
# the admin token, the database passwords, the values of other scopes
host_secrets() {
	local f
	for f in "$work/secrets/identity/mac.key" "$work/secrets/identity/admin.token" \
		"$work/secrets/sandboxd.seal.key" "$work/values/b" "$work/values/sys"; do
		echo "$(basename "$f") $(head -n 1 "$f")"
	done
	awk '{print "master-key " $2}' "$work/secrets/identity/master.keys"
	for f in "$SW_HARNESS_DIR"/secrets/*.pgpass "$work"/secrets/*.pgpass; do
		[ -f "$f" ] && echo "$(basename "$f") $(head -n 1 "$f" | awk -F: '{print $NF}')"
	done
	return 0
}
hostile_held() {
	python3 - "$work/hostile.json" "$(host_secrets)" "$(cat "$work/values/a")" <<-'EOF'
		import json, sys
		run = json.load(open(sys.argv[1]))
		out = json.loads(run["steps"][0]["output"]["stdout"])
		bad = []
		for name, value in (l.split(" ", 1) for l in sys.argv[2].splitlines() if " " in l):
		    if len(value) >= 8 and value in json.dumps(out):
		        bad.append("the step read %s" % name)
		for k, v in out.items():
		    if k.startswith("connect ") and v == "REACHED":
		        bad.append("the step reached %s" % k[8:])
		    if k.endswith("/environ") and "SAGEWAI_" in v:
		        bad.append("the step read a service's environment (%s)" % k)
		    services = ("sagewai-sandboxd", "sagewai-identity", "sagewai-scheduler")
		    if k.endswith(("/maps", "/cmdline", "/status")) and any(s in v for s in services):
		        bad.append("the step sees a service (%s: %s)" % (k, v[:80]))
		    if k.endswith("/mem") and not v.startswith("refused"):
		        bad.append("the step read a host process's memory (%s)" % k)
		# its own key is there, redacted: proof that the step had a value
		if "[REDACTED:AC_TOKEN]" not in json.dumps(out) or sys.argv[3] in json.dumps(run):
		    bad.append("the step's own value was not in its environment, or not redacted")
		for b in bad:
		    print(b, file=sys.stderr)
		print("pids visible in the sandbox: %s" % out["pids"], file=sys.stderr)
		sys.exit(1 if bad else 0)
	EOF
}
attempt hostile-step-proc \
	"an identity step reads /proc for sandboxd's and identity's memory and environ, their key files, and connects to identity and Kafka" \
	hostile_held

# forge TENANT RUN STEP HOSTKEY-HEX PINS-JSON: produce identity.seal_requested
# as a compromised producer would; prints its request id
forge() {
	local rq sb
	rq=$(python3 -c 'import uuid; print(uuid.uuid4())')
	sb=$(python3 -c 'import uuid; print(uuid.uuid4())')
	printf '{"header": {"tenant": "%s", "run_id": "%s", "step_id": "%s/%s/1", "producer": "sagewai-sandboxd"}, "request_id": "%s", "step": "%s", "sandbox_id": "%s", "host_key": "%s", "keys": %s}\n' \
		"$1" "$2" "$2" "$3" "$rq" "$3" "$sb" "$4" "$5" |
		"$event" produce --bootstrap "$SAGEWAI_KAFKA_BOOTSTRAP" --topic sagewai.identity \
			identity.seal_requested >/dev/null || return 1
	echo "$rq"
}
# answer REQUEST-ID: identity's identity.sealed to it (waits 15 s)
answer() {
	local a
	for _ in $(seq 1 75); do
		a=$(kcat -C -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t sagewai.identity.sealed -o beginning -e \
			-q -f '%R%s' 2>/dev/null | "$event" decode --raw 2>/dev/null |
			python3 -c '
import json, sys
for line in sys.stdin:
    if json.loads(line).get("request_id") == sys.argv[1]:
        print(line.strip())' "$1" || true)
		[ -z "$a" ] || { echo "$a"; return 0; }
		sleep 0.2
	done
	echo "no identity.sealed for request $1" >&2
	return 1
}
# refused_as CODE REQUEST-ID: answered not ok with CODE, no box
refused_as() {
	local a
	a=$(answer "$2") || return 1
	python3 -c '
import json, sys
a = json.loads(sys.argv[1].splitlines()[0])
assert a["ok"] is False and a["code"] == sys.argv[2] and a["sealed"] == "", a' "$a" "$1" || {
		echo "expected a refusal $1 without a box: $a" >&2
		return 1
	}
}
pin_ac='[{"env": "AC_TOKEN", "secret": "ac_token", "version": 1}]'
pin_gx='[{"env": "GX_TOKEN", "secret": "gx_token", "version": 1}]'
listed=$(cat "$work/secrets/sandboxd.seal.pub")
unlisted=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
fresh_run=$(python3 -c 'import uuid; print(uuid.uuid4())')

forged_unknown() {
	local rq a
	rq=$(forge "$ida" "$run" s "$unlisted" "$pin_ac") || return 1
	refused_as unknown_host "$rq" || return 1
	# the same request with the listed key is sealed (to sandboxd's key,
	# which only sandboxd opens): the refusal above was the host key's
	rq=$(forge "$ida" "$run" s "$listed" "$pin_ac") || return 1
	a=$(answer "$rq") || return 1
	python3 -c 'import json, sys; a = json.loads(sys.argv[1].splitlines()[0])
assert a["ok"] is True and a["sealed"], a' "$a" || {
		echo "the control (the listed key) was not sealed: $a" >&2
		return 1
	}
}
attempt forged-seal-unknown-host \
	"identity.seal_requested for acme's resolved step with an unlisted host key" forged_unknown
forged_unresolved() {
	local rq
	rq=$(forge "$ida" "$fresh_run" s "$listed" "$pin_ac") || return 1
	refused_as not_allowed "$rq" || return 1
	rq=$(forge "$ida" "$run" other "$listed" "$pin_ac") || return 1
	refused_as not_allowed "$rq"
}
attempt forged-seal-unresolved \
	"identity.seal_requested with the listed host key for a run and a step never resolved" \
	forged_unresolved
forged_cross() {
	local rq
	# acme's resolved run and step, asking for globex's secret
	rq=$(forge "$ida" "$run" s "$listed" "$pin_gx") || return 1
	refused_as not_allowed "$rq" || return 1
	# acme's run and step under globex's name
	rq=$(forge "$idb" "$run" s "$listed" "$pin_ac") || return 1
	refused_as not_allowed "$rq" || return 1
	# a version never resolved
	rq=$(forge "$ida" "$run" s "$listed" \
		'[{"env": "AC_TOKEN", "secret": "ac_token", "version": 2}]') || return 1
	refused_as not_allowed "$rq"
}
attempt forged-seal-cross-tenant \
	"identity.seal_requested with the listed host key for globex's secret through acme's run" \
	forged_cross

# ---- the HTTP surface ---------------------------------------------------------

marker q
value_in_url() {
	local v b
	v=$(cat "$work/values/q")
	b=$(printf %s "$v" | base64 -w0)
	local enc
	enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$v")
	local benc
	benc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$b")
	local st
	st=$(http_status PUT "$idu/v1/secrets/qx?tenant=$na&value_b64=$benc&value=$enc" "${adm[@]}" -d '{}')
	case "$st" in 4??) ;; *) echo "PUT with the value in the query: $st" >&2; return 1 ;; esac
	st=$(http_status PUT "$idu/v1/secrets/$enc?tenant=$na" "${adm[@]}" -d "{\"value_b64\": \"$b\"}")
	case "$st" in 4??) ;; *) echo "PUT with the value as the name: $st" >&2; return 1 ;; esac
	st=$(http_status GET "$idu/v1/secrets?tenant=$na&q=$enc" "${adm[@]}")
	case "$st" in 200 | 400) ;; *) echo "GET with the value in the query: $st" >&2; return 1 ;; esac
	st=$(http_status GET "$idu/v1/secrets?x=$enc" "${A[@]}")
	case "$st" in 200 | 400) ;; *) echo "GET with the value in the query: $st" >&2; return 1 ;; esac
	sleep 0.5
	[ "$(acme_names)" = ac_token ] || { echo "acme's secrets: $(acme_names)" >&2; return 1; }
	# nowhere in any service's log, raw or encoded
	local f
	for f in "$work"/*.log; do
		if grep -qF -e "$v" -e "$b" -e "$enc" -e "$benc" "$f"; then
			echo "the value is in $f" >&2
			return 1
		fi
	done
}
attempt value-in-url "a secret value in the URL's query and as a secret's name (never stored, never logged)" \
	value_in_url

oversized() {
	local f=$work/big.json
	python3 -c 'import sys; sys.stdout.write("{\"value_b64\": \"" + "QUJD" * 50000 + "\"}")' >"$f"
	expect_status 413 PUT "$idu/v1/secrets/big?tenant=$na" "${adm[@]}" --data-binary "@$f" ||
		return 1
	expect_status 413 PUT "$idu/v1/identity/profiles/big?tenant=$na" "${adm[@]}" \
		--data-binary "@$f" || return 1
	expect_status 413 POST "$idu/v1/identity/resolve" "${A[@]}" --data-binary "@$f" || return 1
	# under the body's cap (160 KiB), over the value's (64 KiB decoded)
	python3 -c 'import sys; sys.stdout.write("{\"value_b64\": \"" + "QUJD" * 30000 + "\"}")' >"$f"
	expect_status 413 PUT "$idu/v1/secrets/big?tenant=$na" "${adm[@]}" --data-binary "@$f" ||
		return 1
	expect_status 413 POST "$idu/v1/secrets/ac_token/rotate?tenant=$na" "${adm[@]}" \
		--data-binary "@$f" || return 1
	[ "$(acme_names)" = ac_token ] || { echo "acme's secrets: $(acme_names)" >&2; return 1; }
}
attempt oversized-put "200 KiB bodies (secret, profile, resolve), a 90 KiB value (set, rotate)" \
	oversized

traversal() {
	local p st
	for p in "../globex/gx_token" "..%2fglobex%2fgx_token" "%2e%2e" "%2e%2e%2fgx_token" \
		"..%2F..%2Fv1%2Fsecrets%2Fgx_token" "gx_token%00" "..;gx_token" "ac_token%2f..%2f..%2fgx_token"; do
		for m in PUT GET; do
			st=$(http_status "$m" "$idu/v1/secrets/$p?tenant=$na" --path-as-is "${adm[@]}" \
				-d '{"value_b64": "QUJDREVGR0g="}')
			case "$st" in 400 | 404 | 405) ;; *) echo "$m secrets/$p: $st" >&2; return 1 ;; esac
		done
		st=$(http_status POST "$idu/v1/secrets/$p/rotate?tenant=$na" --path-as-is "${adm[@]}" \
			-d '{"value_b64": "QUJDREVGR0g="}')
		case "$st" in 400 | 404) ;; *) echo "rotate secrets/$p: $st" >&2; return 1 ;; esac
		st=$(http_status PUT "$idu/v1/identity/profiles/$p?tenant=$na" --path-as-is "${adm[@]}" \
			-d '{"keys": {"X": {"value": "y"}}}')
		case "$st" in 400 | 404) ;; *) echo "PUT profiles/$p: $st" >&2; return 1 ;; esac
		st=$(http_status DELETE "$idu/v1/identity/profiles/$p?tenant=$nb" --path-as-is \
			"${adm[@]}")
		case "$st" in 400 | 404) ;; *) echo "DELETE profiles/$p: $st" >&2; return 1 ;; esac
	done
	st=$(http_status GET "$idu/v1/secrets?tenant=..%2fglobex" "${adm[@]}")
	case "$st" in 400 | 404) ;; *) echo "?tenant=../globex: $st" >&2; return 1 ;; esac
	globex_intact || return 1
	[ "$(acme_names)" = ac_token ] || { echo "acme's secrets: $(acme_names)" >&2; return 1; }
}
attempt path-traversal "../, %2e%2e, encoded slashes and NUL in secret and profile names" traversal

bind_foreign() {
	local out st
	for s in gx_token sys_only "globex/gx_token" "../globex/gx_token" "_system/sys_only"; do
		st=$(http_status PUT "$idu/v1/identity/profiles/steal?tenant=$na" "${adm[@]}" \
			-d "{\"keys\": {\"STOLEN\": {\"secret\": \"$s\"}}}")
		case "$st" in 400 | 404 | 422) ;; *) echo "profile binding $s: $st" >&2; return 1 ;; esac
	done
	expect_status 403 PUT "$idu/v1/identity/profiles/steal" "${A[@]}" \
		-d '{"keys": {"STOLEN": {"secret": "gx_token"}}}' || return 1
	expect_status 404 GET "$idu/v1/identity/profiles/steal?tenant=$na" "${adm[@]}" || return 1
	# and a resolution as acme never lands on globex's or the system's value
	out=$(resolve '"steal"')
	! grep -qE 'gx_token|sys_only' <<<"$out" || { echo "resolved: $out" >&2; return 1; }
}
attempt profile-binds-foreign "an acme profile binding globex's or the system's secret name" \
	bind_foreign

# ---- the input check through identity.input_matches -------------------------
# The scheduler checks the input of a run with no identity-bearing step by
# calling identity.input_matches (SECURITY DEFINER, one boolean) with its
# own role, instead of a round trip to identity: its one way into
# identity's schema. The role reaches that function and nothing else there;
# no other service's role reaches even that; and a tenant cannot use the
# check as an oracle for another tenant's secrets.
marker p
admin --tenant "$na" secret set ac_probe --from-file "$work/values/p" >/dev/null ||
	attack_fail "secret set (acme probe)"
cat >"$work/plain.yaml" <<'YAML'
name: plain
steps:
  - name: echo
    uses: template
    with:
      value: ${{ input.note }}
YAML
for k in "$ka" "$kb"; do
	SAGEWAI_TOKEN=$k "$cli" workflow apply "$work/plain.yaml" >/dev/null ||
		attack_fail "apply plain"
done
B=(-H "Authorization: Bearer $kb")
# submit_plain HEADERS-ARRAY-NAME NOTE: POST /v1/runs?wait=20 of plain; the
# status printed, the body in $work/submit.out
submit_plain() {
	local -n hdr=$1
	curl -s -m 30 -o "$work/submit.out" -w '%{http_code}' -X POST \
		"$SAGEWAI_URL/v1/runs?wait=20" "${hdr[@]}" -H 'Content-Type: application/json' \
		-d "{\"workflow\": \"plain\", \"input\": {\"note\": \"$2\"}}"
}
metric_of() { sw_stack_metric "$work" scheduler "$1"; }
input_check() {
	local sdsn out st s v q clean0 matched0
	sdsn=$(cat "$work/scheduler.dsn")
	out=$(pg_try "$sdsn" "SELECT identity.input_matches('$ida', '{}')") && [ "$out" = f ] || {
		echo "identity.input_matches as the scheduler's role: $out" >&2
		return 1
	}
	for q in "SELECT count(*) FROM identity.versions" "SELECT count(*) FROM identity.secrets" \
		"SELECT count(*) FROM identity.profiles" "SELECT count(*) FROM identity.resolutions"; do
		refused "$sdsn" "$q" 'permission denied for table' || return 1
	done
	refused "$sdsn" "CREATE TABLE identity.evil (x int)" 'permission denied for schema' ||
		return 1
	refused "$sdsn" "CREATE FUNCTION identity.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'" \
		'permission denied for schema' || return 1
	refused "$sdsn" "CREATE OR REPLACE FUNCTION identity.input_matches(text, text[])
		RETURNS boolean LANGUAGE sql AS 'SELECT false'" 'permission denied|must be owner' ||
		return 1
	for s in worker sandboxd audit policy; do
		[ -s "$work/$s.dsn" ] || continue
		refused "$(cat "$work/$s.dsn")" "SELECT identity.input_matches('$ida', '{}')" \
			'permission denied for schema' || return 1
	done
	# acme's clean submit first: its next submits take the definition from
	# the cache and make the input check inside their transaction
	st=$(submit_plain A "clean-before")
	[ "$st" = 200 ] || { echo "acme, clean first: $st $(cat "$work/submit.out")" >&2; return 1; }
	clean0=$(metric_of sagewai_scheduler_identity_direct_clean_total)
	matched0=$(metric_of sagewai_scheduler_identity_direct_matched_total)
	fall0=$(metric_of sagewai_scheduler_submit_guard_fallbacks_total)
	runs0=$(psql "$SAGEWAI_PG_DSN" -XAtq -c "SELECT count(*) FROM scheduler.runs WHERE tenant = '$ida'")
	# globex's input holding acme's secret value runs: it is not globex's
	# secret, so nothing tells globex that it is anyone's
	st=$(submit_plain B "$(cat "$work/values/p")")
	[ "$st" = 200 ] && grep -q '"succeeded"' "$work/submit.out" || {
		echo "globex with acme's value: $st $(cat "$work/submit.out")" >&2
		return 1
	}
	# acme's own value and the system's are refused, naming the field
	for v in p sys; do
		st=$(submit_plain A "$(cat "$work/values/$v")")
		[ "$st" = 422 ] && grep -q credential_in_input "$work/submit.out" &&
			grep -q 'input.note' "$work/submit.out" || {
			echo "acme with the $v value: $st $(cat "$work/submit.out")" >&2
			return 1
		}
		! grep -qF -- "$(cat "$work/values/$v")" "$work/submit.out" || {
			echo "the refusal echoes the value" >&2
			return 1
		}
	done
	st=$(submit_plain A "nothing-secret-here")
	[ "$st" = 200 ] || { echo "acme, clean: $st $(cat "$work/submit.out")" >&2; return 1; }
	# and the check was the direct one (clean twice, matched twice)
	[ "$(metric_of sagewai_scheduler_identity_direct_clean_total)" -ge $((${clean0:-0} + 2)) ] &&
		[ "$(metric_of sagewai_scheduler_identity_direct_matched_total)" -ge \
			$((${matched0:-0} + 2)) ] || {
		echo "not the direct check: $(curl -fsS "$SAGEWAI_URL/metrics" | grep direct)" >&2
		return 1
	}
	# the two refused inputs were caught inside their transactions (the
	# guard), which stored nothing: acme has one run more, the clean one
	[ "$(metric_of sagewai_scheduler_submit_guard_fallbacks_total)" -ge $((${fall0:-0} + 2)) ] || {
		echo "the refused inputs did not meet the submit's guard:" \
			"$(curl -fsS "$SAGEWAI_URL/metrics" | grep -E 'guard|unread')" >&2
		return 1
	}
	[ "$(psql "$SAGEWAI_PG_DSN" -XAtq -c "SELECT count(*) FROM scheduler.runs WHERE tenant = '$ida'")" = \
		$((runs0 + 1)) ] || {
		echo "a refused input was stored" >&2
		return 1
	}
}
attempt input-check-function \
	"the scheduler's role beyond identity.input_matches; other roles at it; a tenant probing another's secret through the input check" \
	input_check
attack_done
