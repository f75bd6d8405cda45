#!/usr/bin/env bash
# Whole-stack tests of identity_scoped (issue 10): sagewai-identity, the
# scheduler, sandboxd, audit and the CLI on the harness's real Kafka and
# PostgreSQL (and a private OpenBao dev server for the Vault backend),
# driven through the `sagewai` CLI as an operator and a user would.
#
#   identity.sh leak    secrets of every kind (builtin, vault, _system, a
#                       user's) printed by hostile steps in every spelling
#                       (raw, split across writes, across lines, base64, hex,
#                       percent-encoded, on stderr, in a failing step's
#                       error); credentials as run input refused. Then every
#                       service log, every CLI/API answer, every sagewai.*
#                       topic (kcat, from the beginning), the audit log, a
#                       pg_dump of the stack's database, PostgreSQL's and
#                       Kafka's logs and Kafka's data are searched for each
#                       value in every spelling (tests/e2e/leakscan.py): no
#                       hit; and no process of the stack holds a value in its
#                       environment or command line, except the step's own
#                       inside its sandbox
#   identity.sh revoke  revoked before a submit (409, nothing stored);
#                       between submit and the step's start (the step fails
#                       revoked: KEY); hard revoke mid-step (killed well before
#                       its sleep ends, identity.revoke_killed); rotation
#                       between runs (version 2 injected); Vault down (503
#                       backend_unavailable, nothing stored) and back; kill -9
#                       of sagewai-identity (503 identity_unavailable, nothing
#                       stored, no run stuck) and a restart
#   identity.sh acl     a key whose steps ACL names another step is not
#                       injected (identity.denied, listed by identity
#                       resolve), and is in the step it names; the cascade:
#                       the user's key over the workflow's over the system's
#                       (compared by sha256 printed by the step, never values)
#   identity.sh agent   a cli_agent step (a custom "CLI": a script that writes a
#                       site and prints its key, slowly) with its key and
#                       GITHUB_TOKEN from the identity service: `run show
#                       --follow` prints its output lines as they come, the key
#                       redacted; the site is pushed to a git server
#                       (tests/sandboxd/git_server.py) that takes only that
#                       token; files_changed has its sha256; anti-pattern 2 is
#                       registered with a warning printed by `workflow apply`;
#                       no log, answer or topic holds a value
set -euo pipefail

scenario=${1:?usage: identity.sh leak|revoke|acl|agent}
root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$root/tools/lib/stack.sh"

while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"

work=$build/tests-tmp/e2e-identity-$scenario-$$
rm -rf "$work"
mkdir -p "$work/values" "$work/capture"
chmod 700 "$work/values"
cli=$build/tools/cli/sagewai
bao=$root/tests/harness/openbao
scan=$root/tests/e2e/leakscan.py
uuid_re='[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}'

fail() {
	echo "FAIL (identity $scenario): $*" >&2
	for f in "$work"/*.log; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 15 "$f" >&2
	done
	exit 1
}
cleanup() {
	sw_stack_stop "$work"
	"$bao" stop "$work/bao"
}
trap cleanup EXIT

[ -x "$build/services/identity/sagewai-identity" ] || fail "sagewai-identity is not built"
[ -x /usr/bin/bwrap ] || fail "bubblewrap is missing: identity_scoped steps need sandboxd"

# a killed member's partitions move after 6 s instead of librdkafka's 45
for svc in worker scheduler audit identity sandboxd; do
	echo "SAGEWAI_KAFKA_CONSUMER_CONFIG=session.timeout.ms=6000,heartbeat.interval.ms=1000" \
		>"$work/$svc.env"
done
if [ "$scenario" = agent ]; then
	# the git server is on this host's loopback, plain http
	printf 'SAGEWAI_ARTIFACT_HTTP=allow\nSAGEWAI_ARTIFACT_PRIVATE=allow\n' >>"$work/sandboxd.env"
fi
if [ "$scenario" = leak ] || [ "$scenario" = revoke ]; then
	"$bao" start "$work/bao" >/dev/null || fail "OpenBao did not start"
	printf 'SAGEWAI_VAULT_ADDR=%s\nSAGEWAI_VAULT_TOKEN_FILE=%s\n' \
		"$(cat "$work/bao/bao.addr")" "$work/bao/bao.token" >>"$work/identity.env"
fi
sw_stack_start "$work" "$build" env || fail "stack did not start"
sw_stack_ready "$work" || fail "the scheduler got no partitions"
set -a
# shellcheck disable=SC1091
. "$work/stack.sh.env"
set +a
[ -n "${SAGEWAI_IDENTITY_URL:-}" ] || fail "identity is not running"
[ -n "${SAGEWAI_SANDBOXD_URL:-}" ] || fail "sandboxd is not running"
grep -q identity_scoped "$work/scheduler.gen.env" || fail "identity_scoped is not offered"
# the operator's token: secrets and profiles are the operator's to write
SAGEWAI_ADMIN_TOKEN=$(cat "$work/secrets/identity/admin.token")
export SAGEWAI_ADMIN_TOKEN

# cl ARGS...: the CLI, its output (both streams) shown and kept in cli.out
cl() {
	local rc=0
	"$cli" "$@" >"$work/last.out" 2>&1 || rc=$?
	cat "$work/last.out" >>"$work/cli.out"
	cat "$work/last.out"
	return $rc
}

# newval NAME PREFIX: a random marker value in values/NAME (0600), of
# printable characters with some that percent-encoding changes
newval() {
	(umask 077 && python3 -c '
import secrets, sys
print("%s_%s/%s+%s=" % (sys.argv[1], secrets.token_hex(10), secrets.token_hex(4),
                         secrets.token_hex(4)), end="")' "$2" >"$work/values/$1")
	echo "$1 $(cat "$work/values/$1")" >>"$work/values/markers"
}
sha() { printf %s "$(cat "$work/values/$1")" | sha256sum | cut -d' ' -f1; }

# submit WORKFLOW INPUT [TOKEN]: the run id (stdout); the CLI's answer in
# last.out
submit() {
	local out
	out=$(SAGEWAI_TOKEN=${3:-} cl --json run submit "$1" --input "$2") || return 1
	echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])'
}

# refused WANT... -- WORKFLOW INPUT [TOKEN]: the submit fails and its output
# holds each WANT (fixed strings)
refused() {
	local want=() out
	while [ "$1" != -- ]; do want+=("$1"); shift; done
	shift
	if out=$(SAGEWAI_TOKEN=${3:-} cl run submit "$1" --input "$2"); then
		fail "submit of $1 accepted, expected ${want[*]}: $out"
	fi
	for w in "${want[@]}"; do
		grep -qF -- "$w" <<<"$out" || fail "submit of $1: expected '$w' in: $out"
	done
	echo "refused as expected: $out"
}

# state RUN: the run's state; wait_end RUN [SECONDS]: wait for a final one
state() {
	"$cli" --json run show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'
}
wait_end() {
	local s
	for _ in $(seq 1 $((${2:-60} * 5))); do
		s=$(state "$1")
		case "$s" in succeeded | failed | cancelled) echo "$s"; return 0 ;; esac
		sleep 0.2
	done
	echo "$s"
	return 1
}
step_field() { # RUN STEP FIELD: a step's field as JSON text
	"$cli" --json run show "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
s = [s for s in r["steps"] if s["name"] == sys.argv[1]][0]
print(json.dumps(s[sys.argv[2]]))' "$2" "$3"
}

# events RUN TYPE: the run's events of TYPE in the audit log, one JSON a line
events() {
	"$cli" --json audit run "$1" 2>/dev/null | python3 -c '
import json, sys
for e in json.load(sys.stdin)["events"]:
    ev = e.get("event", {})
    if ev.get("header", {}).get("type") == sys.argv[1]:
        print(json.dumps(ev))' "$2"
}
# audit_wait RUN TYPE [N]: wait (30 s) for N (1) events of TYPE; prints them
audit_wait() {
	local out
	for _ in $(seq 1 150); do
		out=$(events "$1" "$2" || true)
		[ "$(grep -c . <<<"$out")" -ge "${3:-1}" ] && { echo "$out"; return 0; }
		sleep 0.2
	done
	echo "$out"
	return 1
}

# injected RUN SECRET VERSION: the run's identity.injected names that version
injected() {
	local inj
	inj=$(audit_wait "$1" identity.injected) || return 1
	grep -qF "\"secret\": \"$2\", \"version\": $3," <<<"$inj"
}

# runs_of WORKFLOW: how many runs of it the scheduler has
runs_of() {
	"$cli" --json run list | python3 -c '
import json, sys
print(sum(1 for r in json.load(sys.stdin)["runs"] if r["workflow"] == sys.argv[1]))' "$1"
}
# submitted_in_audit WORKFLOW: run.submitted events of it in the audit log
submitted_in_audit() {
	"$build/services/audit/sagewai-audit" dump "$SAGEWAI_DATA_DIR/audit" | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    ev = json.loads(line).get("event") or {}
    if ev.get("header", {}).get("type") == "run.submitted" and ev.get("workflow") == sys.argv[1]:
        n += 1
print(n)' "$1"
}

# apply NAME YAML-STEPS: register workflow NAME with these steps
apply() {
	printf 'name: %s\nsteps:\n%s\n' "$1" "$2" >"$work/$1.yaml"
	cl workflow apply "$work/$1.yaml" >/dev/null || fail "workflow apply $1"
}

case "$scenario" in
leak)
	newval builtin mk1
	newval vault mk2
	newval system mk3
	newval user mk4
	# an AWS access key id, as a careless user would paste one
	python3 -c 'import secrets; a = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
print("aws AKIA" + "".join(secrets.choice(a) for _ in range(16)))' >>"$work/values/markers"
	aws=$(sed -n 's/^aws //p' "$work/values/markers")

	cl secret set leak_builtin --from-file "$work/values/builtin" || fail "secret set builtin"
	cl secret set leak_vault --backend vault --from-file "$work/values/vault" ||
		fail "secret set vault"
	cl --tenant _system secret set leak_system --from-file "$work/values/system" ||
		fail "secret set _system"
	cl secret set leak_user --from-file "$work/values/user" || fail "secret set user"
	cl identity profile set default --level system --key LEAK_SYSTEM=secret:leak_system ||
		fail "system profile"
	cl identity profile set leaky --key LEAK_BUILTIN=secret:leak_builtin \
		--key LEAK_VAULT=secret:leak_vault || fail "workflow profile"
	cl user create leaker --tenant default || fail "user create"
	ukey=$(cl --json key create --tenant default --user leaker |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])') ||
		fail "key create --user"
	cl identity profile set leaker --level user --key LEAK_USER=secret:leak_user ||
		fail "user profile"

	# spill: every spelling on both streams, split writes, across lines and
	# across a 4 KiB pipe page; then it holds the values for the process scan
	apply leak "  - name: spill
    mode: identity_scoped
    identity: leaky
    timeout: 60s
    run:
      - python3
      - -c
      - |
        import base64, hashlib, json, os, re, sys, time, urllib.parse
        KEYS = ('LEAK_BUILTIN', 'LEAK_VAULT', 'LEAK_SYSTEM', 'LEAK_USER')
        def forms(v):
            b = v.encode()
            yield 'raw', v
            yield 'b64', base64.b64encode(b).decode()
            yield 'b64url', base64.urlsafe_b64encode(b).decode().rstrip('=')
            for pre in (b'a', b'ab'):
                yield 'b64+%d' % len(pre), base64.b64encode(pre + b).decode()
                yield 'b64url+%d' % len(pre), base64.urlsafe_b64encode(pre + b).decode()
            yield 'hex', b.hex()
            yield 'HEX', b.hex().upper()
            q = urllib.parse.quote(v, safe='')
            yield 'pct', q
            yield 'pct-lower', re.sub('%[0-9A-F]{2}', lambda m: m.group(0).lower(), q)
            yield 'pct-plus', urllib.parse.quote_plus(v)
            yield 'json', json.dumps({'token': v})
        for k in KEYS:
            v = os.environ[k]
            print('sha256', k, hashlib.sha256(v.encode()).hexdigest(), flush=True)
            for name, f in forms(v):
                sys.stdout.write('%s %s: %s\n' % (k, name, f))
                sys.stderr.write('%s %s on stderr: %s\n' % (k, name, f))
            h = len(v) // 2
            for s in (sys.stdout, sys.stderr):
                s.flush()
                s.write('split %s: %s' % (k, v[:h]))
                s.flush()
                time.sleep(0.2)
                s.write(v[h:] + ' (end)\n')
                s.flush()
            sys.stdout.write('\n'.join('line %d of %s' % (i, k) for i in range(300)))
            sys.stdout.write('\n' + 'x' * (4096 - 9) + v + '\n' + v + '\n')
            sys.stdout.flush()
        print('spilled', flush=True)
        time.sleep(5)
  - name: crash
    mode: identity_scoped
    identity: leaky
    run:
      - python3
      - -c
      - |
        import os, sys
        sys.stderr.write('cannot use token %s\n' % os.environ['LEAK_VAULT'])
        raise RuntimeError('credentials refused: ' + ' '.join(
            os.environ[k] for k in ('LEAK_BUILTIN', 'LEAK_VAULT', 'LEAK_SYSTEM', 'LEAK_USER')))"
	cl identity resolve --workflow leak --user leaker || fail "identity resolve"
	cl --json identity resolve --workflow leak --user leaker >/dev/null || fail "resolve --json"

	# while spill holds its values: every process of the stack, of
	# PostgreSQL, Kafka and OpenBao (environment and command line), from the
	# submit on until each value was seen inside the step's sandbox
	roots=()
	for f in "$work"/*.pid "$SW_HARNESS_DIR/kafka.pid" "$work/bao/bao.pid"; do
		[ -s "$f" ] && roots+=("$(cat "$f")")
	done
	roots+=("$(head -n 1 "$SW_HARNESS_DIR/pg/postmaster.pid")")
	[ ${#roots[@]} -ge 9 ] || fail "only ${#roots[@]} process trees to scan"
	grep -v '^aws ' "$work/values/markers" >"$work/values/injected"
	run=$(submit leak '{"note": "spill everything"}' "$ukey") || fail "submit leak"
	python3 "$scan" procs "$work/values/injected" 30 "${roots[@]}" ||
		fail "a value in a process's environment or command line outside its sandbox"
	[ "$(wait_end "$run" 60)" = failed ] || fail "run $run did not fail (its crash step)"

	# what the steps said: each value redacted, on both streams, and the
	# values were the right ones (sha256 printed by the step)
	"$cli" --json run show "$run" >"$work/run.json"
	python3 - "$work/run.json" "$(sha builtin)" "$(sha vault)" "$(sha system)" "$(sha user)" \
		<<-'EOF' || fail "the steps' output is not what was printed, redacted"
		import json, sys
		r = json.load(open(sys.argv[1]))
		keys = ("LEAK_BUILTIN", "LEAK_VAULT", "LEAK_SYSTEM", "LEAK_USER")
		shas = dict(zip(keys, sys.argv[2:]))
		spill, crash = r["steps"]
		assert spill["state"] == "succeeded", spill
		out, err = spill["output"]["stdout"], spill["output"]["stderr"]
		assert "spilled" in out, out[-300:]
		for k in keys:
		    assert "sha256 %s %s" % (k, shas[k]) in out, "%s: another value injected" % k
		    tag = "[REDACTED:%s]" % k
		    # raw, b64, b64url, 2 x 2 longer base64, hex, HEX, 3 percent, json,
		    # the split write and twice across lines
		    assert out.count(tag) >= 14, "%s: %d redactions on stdout" % (k, out.count(tag))
		    assert err.count(tag) >= 11, "%s: %d redactions on stderr" % (k, err.count(tag))
		    for line in out.splitlines():
		        if line.startswith("%s raw:" % k) or line.startswith("split %s:" % k):
		            assert tag in line, line
		assert crash["state"] == "failed", crash
		e = json.dumps(crash["error"])
		assert "[REDACTED:LEAK_VAULT]" in e, e
		print("spill: every value redacted on stdout and stderr; crash failed with", e[:200])
	EOF

	# anti-pattern 3: a credential as run input, refused and never echoed
	not_echoed() { # VALUE: the CLI's answer (last.out) does not hold it
		! grep -qF -- "$1" "$work/last.out" ||
			fail "the CLI echoed the credential: $(cat "$work/last.out")"
	}
	refused 422 credential_in_input -- leak "{\"note\": \"$(cat "$work/values/builtin")\"}" "$ukey"
	not_echoed "$(cat "$work/values/builtin")"
	refused 422 credential_in_input -- leak \
		"{\"deep\": {\"list\": [1, \"$(cat "$work/values/system")\"]}}" "$ukey"
	not_echoed "$(cat "$work/values/system")"
	refused 422 credential_in_input "AWS" -- leak "{\"key\": \"$aws\"}" "$ukey"
	not_echoed "$aws"
	[ "$(runs_of leak)" = 1 ] || fail "a refused submit was stored: $(runs_of leak) runs of leak"

	# capture everything there is
	sleep 1
	cl --json run show "$run" >/dev/null
	cl run show "$run" >/dev/null
	audit_wait "$run" run.finished >/dev/null || fail "run.finished not in the audit log"
	# the answer to the scheduler (on sagewai.identity.replies) is audited too
	audit_wait "$run" identity.resolved >/dev/null ||
		fail "identity.resolved (sagewai.identity.replies) not in the audit log"
	cl --json audit run "$run" >/dev/null
	cl audit run "$run" >/dev/null
	cl --json run list >/dev/null
	cl secret list >/dev/null
	cl --json secret list >/dev/null
	cl --tenant _system --json secret list >/dev/null
	cl --json identity profile list >/dev/null
	cl identity profile show leaky >/dev/null
	cl --json identity profile show leaker --level user >/dev/null
	cl --json identity profile show default --level system >/dev/null
	cl --json user list --tenant default >/dev/null
	cl --json identity resolve --workflow leak --user leaker >/dev/null
	cl audit verify "$SAGEWAI_DATA_DIR/audit" >/dev/null || fail "audit verify"
	for name in scheduler worker sandboxd audit identity; do
		for p in healthz metrics; do
			curl -sS "$(sw_stack_url "$work" "$name")/$p" >>"$work/capture/http.out"
		done
	done
	for p in "v1/secrets" "v1/secrets?tenant=_system" "v1/identity/profiles"; do
		curl -sS -H "Authorization: Bearer $SAGEWAI_ADMIN_TOKEN" \
			"$SAGEWAI_IDENTITY_URL/$p" >>"$work/capture/http.out"
	done
	curl -sS "$SAGEWAI_URL/v1/runs/$run" >>"$work/capture/http.out"
	curl -sS "$SAGEWAI_URL/v1/runs/$run/events" -m 3 >>"$work/capture/http.out" || true
	ntopics=0
	while read -r topic _; do
		case "$topic" in sagewai.*) ;; *) continue ;; esac
		kcat -C -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t "$topic" -o beginning -e -q \
			-f 'partition %p offset %o key %k headers %h\n%s\n' \
			>"$work/capture/topic-$topic.bin" 2>/dev/null || true
		ntopics=$((ntopics + 1))
	done <"$root/infra/kafka/topics.tsv"
	[ "$ntopics" -ge 9 ] || fail "only $ntopics topics"
	[ -s "$work/capture/topic-sagewai.identity.sealed.bin" ] ||
		fail "captured nothing of sagewai.identity.sealed"
	[ -s "$work/capture/topic-sagewai.sandbox.bin" ] || fail "captured nothing of sagewai.sandbox"
	"$build/services/audit/sagewai-audit" dump "$SAGEWAI_DATA_DIR/audit" \
		>"$work/capture/audit-dump.json" || fail "audit dump"
	grep -q identity.injected "$work/capture/audit-dump.json" || fail "no identity.injected audited"
	# the whole database, every schema (the harness's administrator)
	"$sw_pgbin/pg_dump" -d "$SAGEWAI_PG_DSN" >"$work/capture/pg_dump.sql" || fail "pg_dump"
	grep -q 'CREATE TABLE identity.versions' "$work/capture/pg_dump.sql" ||
		fail "the dump lacks identity.versions"

	# the search: service logs, CLI output, API answers, topics, audit log,
	# the database, PostgreSQL's log, Kafka's log and data, OpenBao's log
	paths=("$work"/*.log "$work/cli.out" "$work/run.json" "$work/capture"
		"$SAGEWAI_DATA_DIR" "$SW_HARNESS_DIR/pg.log" "$SW_HARNESS_DIR/kafka.log"
		"$work/bao/bao.log")
	# the broker's segments (not its indexes: preallocated, sparse, large)
	for f in "$SW_HARNESS_DIR"/kafka-data/sagewai.*/*.log; do paths+=("$f"); done
	python3 "$scan" files "$work/values/markers" "${paths[@]}" >"$work/hits" ||
		fail "a value was found: $(cat "$work/hits")"
	# and the search can fail: it finds every spelling of every value where
	# they are, and the values themselves in their own files
	python3 "$scan" probe "$work/values/markers" "$work/probe"
	python3 "$scan" files "$work/values/markers" "$work/probe" >"$work/probe.hits" &&
		fail "the search found nothing in the probe files"
	python3 - "$work/values/markers" "$work/probe.hits" "$scan" <<-'EOF' ||
		import importlib.util, sys
		spec = importlib.util.spec_from_file_location("leakscan", sys.argv[3])
		m = importlib.util.module_from_spec(spec)
		spec.loader.exec_module(m)
		hits = open(sys.argv[2]).read()
		n = 0
		for name, value in m.load(sys.argv[1]):
		    for sp, _ in m.spellings(value):
		        assert ": %s as %s\n" % (name, sp) in hits, "probe: %s as %s not found" % (name, sp)
		        n += 1
		print("the search finds each of %d spellings where it is" % n)
	EOF
		fail "the search misses a spelling"
	python3 "$scan" files "$work/values/markers" "$work/values" >/dev/null &&
		fail "the search did not find the values in their own files"
	echo "no value in: service logs, CLI output, API answers, $ntopics topics," \
		"the audit log, pg_dump, PostgreSQL/Kafka logs, Kafka's data"
	;;
revoke)
	for s in a b c d e ok; do newval "$s" "rv$s"; done
	cl secret set rv_a --from-file "$work/values/a" || fail "secret set"
	cl secret set rv_b --from-file "$work/values/b" || fail "secret set"
	cl secret set rv_c --from-file "$work/values/c" || fail "secret set"
	cl secret set rv_d --from-file "$work/values/d" || fail "secret set"
	cl secret set rv_e --backend vault --from-file "$work/values/e" || fail "secret set vault"
	cl secret set rv_ok --from-file "$work/values/ok" || fail "secret set"
	for s in a b c d e ok; do
		u=$(echo "$s" | tr a-z A-Z)
		cl identity profile set "p$s" --key "${u}_KEY=secret:rv_$s" >/dev/null ||
			fail "profile p$s"
	done
	# a step that prints the sha256 of its key (never the value)
	shastep() { # STEP PROFILE KEY [SLEEP]
		printf '  - name: %s\n    mode: identity_scoped\n    identity: %s\n' "$1" "$2"
		printf '    timeout: 90s\n'
		printf '    run: [python3, -c, "import hashlib, os, time; %s; time.sleep(%s)"]\n' \
			"print(hashlib.sha256(os.environ['$3'].encode()).hexdigest(), flush=True)" \
			"${4:-0}"
	}
	apply rva "$(shastep s pa A_KEY)"
	apply rvb "  - name: first
    mode: sandboxed
    run: 'sleep 10'
$(shastep second pb B_KEY)"
	apply rvc "$(shastep hold pc C_KEY 60)"
	apply rvd "$(shastep s pd D_KEY)"
	apply rve "$(shastep s pe E_KEY)"
	apply rvok "$(shastep s pok OK_KEY)"
	apply plain "  - name: t
    uses: template
    with:
      value: \${{ input.note }}"

	# (a) revoked before the submit: 409 naming the key, nothing stored
	cl secret revoke rv_a || fail "revoke rv_a"
	refused 409 revoked A_KEY -- rva '{}'
	[ "$(runs_of rva)" = 0 ] || fail "(a) a refused run was stored"

	# (b) revoked between the submit (resolved, pinned) and the step's start
	run=$(submit rvb '{}') || fail "(b) submit"
	for _ in $(seq 1 100); do
		[ "$(step_field "$run" first state)" = '"running"' ] && break
		sleep 0.1
	done
	[ "$(step_field "$run" first state)" = '"running"' ] || fail "(b) the first step never ran"
	cl secret revoke rv_b || fail "revoke rv_b"
	# else the second step may have started before the revocation: the
	# case was not made (a machine too loaded for a 10 s window)
	[ "$(step_field "$run" first state)" = '"running"' ] ||
		fail "(b) the first step ended before the revocation was in"
	[ "$(wait_end "$run" 60)" = failed ] || fail "(b) run $run did not fail"
	[ "$(step_field "$run" first state)" = '"succeeded"' ] || fail "(b) the first step failed"
	err=$(step_field "$run" second error)
	grep -qF 'revoked: B_KEY' <<<"$err" || fail "(b) second step error: $err"
	[ -z "$(events "$run" identity.injected)" ] || fail "(b) B_KEY was injected after its revocation"
	run=$(submit rvok '{}') || fail "(b) the next submit"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(b) the next run did not succeed"
	echo "(b) revoked between submit and start: step failed with $err; the next run succeeded"

	# (c) hard revoke of a secret a running step holds
	t_submit=$(date +%s.%N)
	run=$(submit rvc '{}') || fail "(c) submit"
	audit_wait "$run" identity.injected >/dev/null || fail "(c) never injected"
	t0=$(date +%s.%N)
	cl secret revoke rv_c --hard || fail "revoke --hard"
	[ "$(wait_end "$run" 60)" = failed ] || fail "(c) run $run did not fail"
	t1=$(date +%s.%N)
	err=$(step_field "$run" hold error)
	grep -qF 'revoked: C_KEY' <<<"$err" || fail "(c) step error: $err"
	killed=$(audit_wait "$run" identity.revoke_killed) || fail "(c) no identity.revoke_killed"
	elapsed=$(python3 -c 'import json,sys; e = json.loads(sys.argv[1]); assert e["secret"] == "rv_c"
print(e["elapsed_ms"])' "$(head -n 1 <<<"$killed")") || fail "(c) revoke_killed: $killed"
	python3 -c 'import sys; a, b, c = map(float, sys.argv[1:]); sys.exit(0 if c - a < 55 else 1)' \
		"$t_submit" "$t0" "$t1" || fail "(c) the run lasted as long as the step's sleep"
	wall=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' \
		"$t0" "$t1")
	echo "(c) hard revoke: identity.revoke_killed elapsed_ms $elapsed;" \
		"$wall s from the CLI call to the run's end"

	# (d) rotation between two runs: the second gets version 2
	run=$(submit rvd '{}') || fail "(d) submit 1"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(d) run 1"
	grep -qF "$(sha d)" <<<"$(step_field "$run" s output)" || fail "(d) run 1: not version 1's value"
	injected "$run" rv_d 1 || fail "(d) run 1 did not inject version 1"
	mv "$work/values/d" "$work/values/d1"
	newval d rvd2
	cl secret rotate rv_d --from-file "$work/values/d" || fail "(d) rotate"
	run=$(submit rvd '{}') || fail "(d) submit 2"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(d) run 2"
	grep -qF "$(sha d)" <<<"$(step_field "$run" s output)" || fail "(d) run 2: not version 2's value"
	injected "$run" rv_d 2 || fail "(d) run 2 did not inject version 2"
	echo "(d) rotation: run 1 got version 1, run 2 version 2"

	# (e) Vault down: refused, naming the backend and the key; back: works
	run=$(submit rve '{}') || fail "(e) submit with Vault up"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(e) the run with Vault up failed"
	"$bao" stop "$work/bao"
	# identity reuses a secret's metadata for SAGEWAI_IDENTITY_CACHE_MS (1 s)
	# without asking Vault: let the last resolution's entry expire
	sleep 1.2
	before=$(runs_of rve)
	refused 503 backend_unavailable "backend vault" E_KEY -- rve '{}'
	[ "$(runs_of rve)" = "$before" ] || fail "(e) a refused run was stored"
	"$bao" start "$work/bao" >/dev/null || fail "OpenBao did not start again"
	grep -qF "SAGEWAI_VAULT_ADDR=$(cat "$work/bao/bao.addr")" "$work/identity.env" ||
		fail "(e) OpenBao came back on another address"
	# a new dev server is empty: the value is gone, and the submit says so
	refused 422 missing E_KEY -- rve '{}'
	# put it back as a restore of Vault's backup would (version 1, the same
	# value), then rotate it through identity as an operator does
	curl -fsS -o /dev/null -H "X-Vault-Token: $(cat "$work/bao/bao.token")" \
		-X POST "$(cat "$work/bao/bao.addr")/v1/secret/data/sagewai/default/rv_e" \
		-d "{\"data\": {\"value\": \"$(base64 -w0 <"$work/values/e")\"}}" ||
		fail "(e) restoring Vault"
	run=$(submit rve '{}') || fail "(e) submit after Vault came back"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(e) the run after Vault came back failed"
	grep -qF "$(sha e)" <<<"$(step_field "$run" s output)" || fail "(e) not the value restored"
	mv "$work/values/e" "$work/values/e1"
	newval e rve2
	cl secret rotate rv_e --from-file "$work/values/e" || fail "(e) rotate after Vault came back"
	run=$(submit rve '{}') || fail "(e) submit after the rotation"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(e) the run after the rotation failed"
	grep -qF "$(sha e)" <<<"$(step_field "$run" s output)" || fail "(e) not the rotated value"
	injected "$run" rv_e 2 || fail "(e) the rotated value is not version 2"
	# deleted (its values destroyed in Vault) and set again: version 3
	cl secret delete rv_e || fail "(e) delete"
	refused 409 revoked E_KEY -- rve '{}'
	mv "$work/values/e" "$work/values/e2"
	newval e rve3
	cl secret set rv_e --backend vault --from-file "$work/values/e" ||
		fail "(e) set again after the delete"
	run=$(submit rve '{}') || fail "(e) submit after set again"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(e) the run after set again failed"
	grep -qF "$(sha e)" <<<"$(step_field "$run" s output)" || fail "(e) not the value set again"
	injected "$run" rv_e 3 || fail "(e) the value set again is not version 3"
	echo "(e) Vault down: 503 backend_unavailable, nothing stored; restored, rotated," \
		"deleted and set again: runs work"

	# (f) kill -9 of sagewai-identity: refused after the scheduler's timeout,
	# 2 s here (set only now: the runs above are not held to it)
	echo "SAGEWAI_IDENTITY_TIMEOUT_MS=2000" >>"$work/scheduler.env"
	sw_stack_restart "$work" scheduler || fail "(f) the scheduler did not restart"
	sw_stack_ready "$work" || fail "(f) the scheduler got no partitions"
	sw_stack_kill "$work" identity KILL
	before=$(runs_of rvok)
	t0=$(date +%s.%N)
	refused 503 identity_unavailable -- rvok '{}'
	t1=$(date +%s.%N)
	# with identity down, a run with no identity-bearing step still runs:
	# its input is checked through identity.input_matches in PostgreSQL,
	# not over Kafka (docs/IDENTITY.md "The input check"); one holding a
	# secret's value needs identity's refusal, so it fails closed
	run=$(submit plain '{"note": "nothing secret"}') ||
		fail "(f) an identity-less run was refused with identity down"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(f) the identity-less run failed"
	before=$(runs_of plain)
	refused 503 identity_unavailable -- plain "{\"note\": \"$(cat "$work/values/ok")\"}"
	[ "$(runs_of plain)" = "$before" ] || fail "(f) a refused run was stored"
	python3 -c '
import sys
d = float(sys.argv[2]) - float(sys.argv[1])
print("(f) refused after %.2f s" % d)
sys.exit(0 if 1.5 < d < 15 else 1)' "$t0" "$t1" || fail "(f) not refused after the 2 s timeout"
	[ "$(runs_of rvok)" = "$before" ] || fail "(f) a refused run was stored"
	"$cli" --json run list | python3 -c '
import json, sys
stuck = [r["run_id"] for r in json.load(sys.stdin)["runs"]
         if r["state"] not in ("succeeded", "failed", "cancelled")]
assert not stuck, "runs not finished: %s" % stuck' || fail "(f) a run is stuck"
	sw_stack_restart "$work" identity || fail "(f) identity did not restart"
	ok=
	for _ in $(seq 1 15); do
		if run=$(submit rvok '{}' 2>/dev/null); then ok=1; break; fi
		sleep 1
	done
	[ -n "$ok" ] || fail "(f) submits still refused after identity's restart"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(f) the run after the restart failed"
	echo "(f) identity killed: 503 identity_unavailable, nothing stored; restarted: runs work"

	# (g) the direct input check: used while the scheduler's role may call
	# identity.input_matches; without the grant every submit takes the
	# round trip (one warning), and the check still refuses
	metric() { sw_stack_metric "$work" scheduler "$1"; }
	clean0=$(metric sagewai_scheduler_identity_direct_clean_total)
	asked0=$(metric sagewai_scheduler_identity_requests_total)
	run=$(submit plain '{"note": "clean input"}') || fail "(g) submit"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(g) the run failed"
	[ "$(metric sagewai_scheduler_identity_direct_clean_total)" -gt "${clean0:-0}" ] &&
		[ "$(metric sagewai_scheduler_identity_requests_total)" = "${asked0:-0}" ] ||
		fail "(g) not the direct check: clean $clean0 ->" \
			"$(metric sagewai_scheduler_identity_direct_clean_total), asked $asked0 ->" \
			"$(metric sagewai_scheduler_identity_requests_total)"
	# a request larger than Kafka takes (4,000 strings on 216-byte paths) is
	# encoded only if it must be sent: clean, the run goes on; holding a
	# secret's value, it is refused 413 (not sent to identity)
	deep() { python3 -c 'import json, sys
v = ["v%05d-abcd" % i for i in range(4000)]
if len(sys.argv) > 1:
    v[1234] = open(sys.argv[1]).read().rstrip("\n")
for _ in range(70):
    v = {"aa": v}
v["note"] = "long paths"
print(json.dumps(v))' "$@"; }
	run=$(submit plain "$(deep)") || fail "(g) submit of a clean input on long paths"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(g) the clean input on long paths failed"
	refused 413 too_large "bytes of MACs and field paths" -- plain "$(deep "$work/values/ok")"
	[ "$(metric sagewai_scheduler_identity_requests_total)" = "${asked0:-0}" ] ||
		fail "(g) a request too large for Kafka was sent"
	srole=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' "$work/scheduler.dsn")
	[ -n "$srole" ] || fail "(g) no scheduler role in its DSN"
	psql "$SAGEWAI_PG_DSN" -XAtq -c "REVOKE USAGE ON SCHEMA identity FROM \"$srole\"" ||
		fail "(g) revoke"
	run=$(submit plain '{"note": "clean input again"}') || fail "(g) submit without the grant"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "(g) the run without the grant failed"
	refused 422 credential_in_input input.note -- plain \
		"{\"note\": \"$(cat "$work/values/ok")\"}"
	psql "$SAGEWAI_PG_DSN" -XAtq -c "GRANT USAGE ON SCHEMA identity TO \"$srole\"" ||
		fail "(g) grant"
	[ "$(metric sagewai_scheduler_identity_direct_failed_total)" -ge 1 ] &&
		[ "$(metric sagewai_scheduler_identity_requests_total)" -ge $((${asked0:-0} + 2)) ] ||
		fail "(g) no round trip without the grant"
	grep -q "identity.input_matches failed" "$work/scheduler.log" ||
		fail "(g) no warning logged"
	echo "(g) the direct input check: used with the grant; without it, the round trip"

	# nothing of the refused submits reached the audit log (checked last: by
	# now the audit service has everything the later runs produced)
	audit_wait "$run" run.finished >/dev/null || fail "the last run is not audited"
	[ "$(submitted_in_audit rva)" = 0 ] || fail "(a) run.submitted of a refused run audited"
	[ "$(runs_of rva)" = 0 ] || fail "(a) a run of rva was stored"
	n=$(submitted_in_audit rve)
	[ "$n" = "$(runs_of rve)" ] || fail "(e) $n run.submitted audited for $(runs_of rve) runs"
	n=$(submitted_in_audit rvok)
	[ "$n" = "$(runs_of rvok)" ] || fail "(f) $n run.submitted audited for $(runs_of rvok) runs"
	;;
acl)
	for s in sys wf user other; do newval "$s" "acl$s"; done
	cl --tenant _system secret set acl_sys --from-file "$work/values/sys" || fail "secret set"
	cl secret set acl_wf --from-file "$work/values/wf" || fail "secret set"
	cl secret set acl_user --from-file "$work/values/user" || fail "secret set"
	cl secret set acl_other --from-file "$work/values/other" || fail "secret set"
	cl identity profile set default --level system --key OVR=secret:acl_sys || fail "system"
	cat >"$work/aclp.json" <<-'EOF'
		{"keys": {"OVR": {"secret": "acl_wf"},
		          "ONLY_OTHER": {"secret": "acl_other", "steps": ["aclwf/other"]}}}
	EOF
	cl identity profile set aclp --file "$work/aclp.json" || fail "workflow profile"
	cl identity profile set bare --key KNOB=value:plain-knob || fail "bare profile"
	cl user create ursula --tenant default || fail "user create"
	ukey=$(cl --json key create --tenant default --user ursula |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])') ||
		fail "key create --user"
	cl identity profile set ursula --level user --key OVR=secret:acl_user || fail "user profile"
	probe='import hashlib, os
for k in ("OVR", "ONLY_OTHER"):
    v = os.environ.get(k)
    print(k, "absent" if v is None else hashlib.sha256(v.encode()).hexdigest())'
	probe=${probe//\"/\\\"}
	probe=${probe//$'\n'/\\n}
	step() {
		printf '  - name: %s\n    mode: identity_scoped\n    identity: %s\n' "$1" "$2"
		printf '    run: [python3, -c, "%s"]\n' "$probe"
	}
	apply aclwf "$(step s aclp)
$(step other aclp)
$(step bare bare)"

	# the preview: denied for s, given to other
	cl identity resolve --workflow aclwf --user ursula >"$work/resolve.out" || fail "resolve"
	python3 - <<-EOF || fail "identity resolve does not list ONLY_OTHER as denied for s"
		import json, subprocess
		r = json.loads(subprocess.check_output(["$cli", "--json", "identity", "resolve",
		                                        "--workflow", "aclwf", "--user", "ursula"]))
		assert r["ok"], r
		den = [(d["step"], d["env"], d["secret"]) for d in r["denied"]]
		assert den == [("s", "ONLY_OTHER", "acl_other")], den
		keys = {s["step"]: {k["env"]: (k["level"], k.get("secret")) for k in s["keys"]}
		        for s in r["steps"]}
		assert keys["s"] == {"OVR": ("user", "acl_user")}, keys
		assert keys["other"]["ONLY_OTHER"] == ("workflow", "acl_other"), keys
		assert keys["bare"]["OVR"] == ("user", "acl_user"), keys
	EOF
	grep -q 'ONLY_OTHER.*acl_other' "$work/resolve.out" || fail "resolve's table lacks the denial"

	# as ursula: her key everywhere; without a user: the workflow's, and the
	# system's where the workflow's profile has none
	expect() { # RUN STEP OVR-VALUE ONLY_OTHER-VALUE|absent
		local out want2
		out=$(step_field "$1" "$2" output)
		want2=absent
		[ "$4" = absent ] || want2=$(sha "$4")
		grep -qF "OVR $(sha "$3")" <<<"$out" || fail "$2: OVR is not $3's value: $out"
		grep -qF "ONLY_OTHER $want2" <<<"$out" || fail "$2: ONLY_OTHER is not $4: $out"
	}
	run=$(submit aclwf '{}' "$ukey") || fail "submit as ursula"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "run $run failed"
	expect "$run" s user absent
	expect "$run" other user other
	expect "$run" bare user absent
	denied=$(audit_wait "$run" identity.denied) || fail "no identity.denied in the audit log"
	python3 -c '
import json, sys
d = [json.loads(l) for l in sys.argv[1].splitlines()]
assert [(e["step"], e["env"], e["secret"], e["reason"]) for e in d] == \
    [("s", "ONLY_OTHER", "acl_other", "step not in acl")], d' "$denied" ||
		fail "identity.denied: $denied"
	events "$run" identity.injected | python3 -c '
import json, sys
inj = {e["step"]: sorted(k["env"] for k in e["keys"]) for e in map(json.loads, sys.stdin)}
assert inj == {"s": ["OVR"], "other": ["ONLY_OTHER", "OVR"], "bare": ["KNOB", "OVR"]}, inj' ||
		fail "identity.injected does not match the ACL"
	run=$(submit aclwf '{}') || fail "submit without a user"
	[ "$(wait_end "$run" 60)" = succeeded ] || fail "run $run failed"
	expect "$run" s wf absent
	expect "$run" other wf other
	expect "$run" bare sys absent
	echo "acl: ONLY_OTHER denied to aclwf/s (identity.denied, resolve), injected in aclwf/other;" \
		"OVR: user over workflow over system"
	;;
agent)
	grep -q cli_agent "$work/scheduler.gen.env" || fail "cli_agent is not offered"
	newval agentkey ak1
	newval ghtok gh1
	mkdir -p "$work/git"
	git init -q --bare "$work/git/site.git"
	printf 'good %s\n' "$(cat "$work/values/ghtok")" >"$work/git/tokens"
	python3 "$root/tests/sandboxd/git_server.py" "$work/git" "$work/git/tokens" \
		"$work/git/requests.log" >"$work/git/server.out" 2>"$work/git-server.log" &
	echo $! >"$work/git-server.pid"
	for _ in $(seq 1 100); do grep -q '^port' "$work/git/server.out" && break; sleep 0.1; done
	gport=$(sed -n 's/^port //p' "$work/git/server.out")
	[ -n "$gport" ] || fail "the git server did not start"
	trap 'kill "$(cat "$work/git-server.pid")" 2>/dev/null; cleanup' EXIT

	cl secret set agent_key --from-file "$work/values/agentkey" || fail "secret set agent_key"
	cl secret set gh_token --from-file "$work/values/ghtok" || fail "secret set gh_token"
	cl identity profile set site --key AGENT_KEY=secret:agent_key \
		--key GITHUB_TOKEN=secret:gh_token --key AGENT_BASE_URL=value:http://llm.internal ||
		fail "profile site"
	cat >"$work/agent.yaml" <<-EOF
		name: agent
		steps:
		  - name: build
		    mode: cli_agent
		    cli_agent: custom
		    identity: site
		    prompt: "\${{ input.task }}"
		    timeout: 2m
		    run: |
		      mkdir -p site
		      printf '<h1>%s</h1>\\n' "\$1" > site/index.html
		      sleep 2 # output is not replayed: give the follow time to open
		      for i in 1 2 3; do echo "step \$i key=\$AGENT_KEY"; sleep 0.5; done
		      echo "base=\$AGENT_BASE_URL" >&2
		    artifact:
		      destination: github
		      repo: "http://127.0.0.1:$gport/site.git"
		      branch: main
	EOF
	cl workflow apply "$work/agent.yaml" >"$work/apply.out" 2>&1 || fail "apply agent"
	grep -q warning "$work/apply.out" && fail "a real task was warned: $(cat "$work/apply.out")"
	# anti-pattern 2: registered, warned, pointing at identity_scoped
	printf 'name: fixed\nsteps:\n  - name: copy\n    mode: cli_agent\n    cli_agent: custom\n    identity: site\n    run: "cp -r /workspace /tmp/x"\n' \
		>"$work/fixed.yaml"
	"$cli" workflow apply "$work/fixed.yaml" >"$work/fixed.out" 2>"$work/fixed.err" ||
		fail "anti-pattern 2 was refused: $(cat "$work/fixed.err")"
	grep -q '^applied fixed v1' "$work/fixed.out" || fail "fixed: $(cat "$work/fixed.out")"
	grep -q '^warning: fixed.yaml:5:16: step "copy": cli_agent: custom runs a fixed command' \
		"$work/fixed.err" && grep -q 'identity_scoped' "$work/fixed.err" ||
		fail "no anti-pattern 2 warning: $(cat "$work/fixed.err")"
	cat "$work/fixed.err"

	run=$(submit agent '{"task": "portfolio"}') || fail "submit agent"
	# follow it live: the show, then its events as they come
	"$cli" run show "$run" --follow >"$work/follow.out" 2>&1 || {
		cat "$work/follow.out" >&2
		fail "run $run did not succeed"
	}
	cat "$work/follow.out" >>"$work/cli.out"
	cat "$work/follow.out"
	for i in 1 2 3; do
		grep -qF "  build       | step $i key=[REDACTED:AGENT_KEY]" "$work/follow.out" ||
			fail "line $i of the CLI not followed"
	done
	grep -qF "  build       ! base=http://llm.internal" "$work/follow.out" ||
		fail "the CLI's stderr not followed"
	grep -q "^run $run succeeded" "$work/follow.out" || fail "the follow did not end the run"
	# the output lines came before the step's end
	[ "$(grep -n '| step 3 key' "$work/follow.out" | head -n 1 | cut -d: -f1)" -lt \
		"$(grep -n '^  build  *succeeded' "$work/follow.out" | head -n 1 | cut -d: -f1)" ] ||
		fail "output after the step's end"
	"$cli" --json run show "$run" >"$work/run.json"
	python3 - "$work/run.json" <<-'EOF' || fail "the step's output"
		import hashlib, json, sys
		r = json.load(open(sys.argv[1]))
		o = r["steps"][0]["output"]
		assert o["agent"] == "custom" and o["exit_code"] == 0, o
		f = {e["path"]: e for e in o["files_changed"]["list"]}
		page = b"<h1>portfolio</h1>\n"
		assert f["site/index.html"]["sha256"] == hashlib.sha256(page).hexdigest(), f
		assert o["artifact"]["destination"] == "github", o
		assert "site.git#main@" in o["artifact"]["location"], o
		assert "[REDACTED:AGENT_KEY]" in o["stdout"], o
		print("agent: files_changed", list(f), "pushed to", o["artifact"]["location"])
	EOF
	[ "$(git --git-dir="$work/git/site.git" show main:site/index.html)" = "<h1>portfolio</h1>" ] ||
		fail "the site is not on the git server"
	events "$run" identity.injected | grep -q GITHUB_TOKEN || fail "identity.injected"
	events "$run" artifact.pushed | grep -q github || fail "artifact.pushed not audited"
	# no value anywhere it could have gone: logs, CLI output, topics
	ntopics=0
	while read -r topic _; do
		case "$topic" in sagewai.*) ;; *) continue ;; esac
		kcat -C -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t "$topic" -o beginning -e -q \
			>"$work/capture/topic-$topic.bin" 2>/dev/null || true
		ntopics=$((ntopics + 1))
	done <"$root/infra/kafka/topics.tsv"
	python3 "$scan" files "$work/values/markers" "$work"/*.log "$work/cli.out" \
		"$work/follow.out" "$work/run.json" "$work/capture" >"$work/hits" ||
		fail "a value was found: $(cat "$work/hits")"
	echo "agent: followed live, key redacted, pushed with the identity's GITHUB_TOKEN"
	;;
*) fail "unknown scenario" ;;
esac
echo "e2e identity $scenario: ok"
