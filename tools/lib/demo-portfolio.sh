# ./tools/demo portfolio: the spec's worked example (examples/portfolio.yaml)
# end to end, offline (sourced by tools/demo once the stack is up, with
# $root, $build, $work, $brief, say and sagewai defined).
#
# The customer: a GitHub token (a git smart-HTTP server on loopback,
# tests/sandboxd/git_server.py, that takes only that token for pushes and
# serves clones to anyone) and an Anthropic key (a sagewai-llm-mock playing
# examples/portfolio/claude-script.json on the Anthropic Messages API, 401
# without that key). The real Claude Code CLI (the claude-code variant) runs
# in the scaffold step's sandbox and writes the site with its own tools;
# sandboxd scans the workspace and pushes it; the verify step clones the
# pushed commit in another sandbox and checks it.

# pf_marker FILE PREFIX: a random value (0600), searched for at the end
pf_marker() {
	(umask 077 && printf '%s_%s\n' "$2" "$(head -c 18 /dev/urandom | od -An -tx1 |
		tr -d ' \n')" >"$1")
}

# pf_events RUN: the run's audit trail, one line per event (what each event
# says about identity, sandboxes, egress and the artifact); sandbox.output
# lines are counted, not shown (the follow above printed them)
pf_events() {
	sagewai --json audit run "$1" | python3 -c '
import json, sys
evs = [e.get("event") or {} for e in json.load(sys.stdin)["events"]]
names = {}
for ev in evs:
    sid = (ev.get("header") or {}).get("step_id")
    if sid and ev.get("step"):
        names[sid] = ev["step"]
def keys(ks):
    return ", ".join("%s (%s)" % (k["env"], "%s v%s" % (k["secret"], k.get("version"))
                                  if k.get("secret") else "plain value") for k in ks)
outputs = {}
for ev in evs:
    h = ev.get("header") or {}
    t = h.get("type", "?")
    step = ev.get("step") or names.get(h.get("step_id"), "")
    if t == "sandbox.output":
        outputs[step] = outputs.get(step, 0) + 1
        continue
    what = ""
    if t == "identity.resolve_requested":
        what = "%s v%s: steps %s" % (ev.get("workflow"), ev.get("workflow_version"),
                                     ", ".join(s.get("step", "?") for s in ev.get("steps", [])))
    elif t == "identity.resolved":
        what = ("ok: " if ev.get("ok") else "refused: " + ev.get("error", "")) + "; ".join(
            "%s: %s" % (s["step"], keys(s.get("keys", []))) for s in ev.get("steps", []))
    elif t == "identity.seal_requested":
        what = "sealed to this host: " + ", ".join(k.get("env", "?") for k in ev.get("keys", []))
    elif t == "identity.injected":
        what = keys(ev.get("keys", []))
    elif t == "sandbox.egress":
        what = "%s %s:%s %s" % (ev.get("method"), ev.get("target_host"),
                               ev.get("target_port"), "allowed" if ev.get("allowed")
                               else "REFUSED (%s)" % ev.get("reason"))
    elif t == "sandbox.acquired":
        what = "sandbox %s, variant %s" % (ev.get("sandbox_id", "?")[-12:], ev.get("variant"))
    elif t == "sandbox.released":
        what = "sandbox %s (%s)" % (ev.get("sandbox_id", "?")[-12:], ev.get("reason"))
    elif t == "sandbox.exited":
        what = "exit %s after %.1f s" % (ev.get("exit_code"), ev.get("duration_us", 0) / 1e6)
    elif t == "artifact.pushed":
        what = "%s %s (%s files, %s bytes)" % (ev.get("destination"), ev.get("location"),
                                               ev.get("files"), ev.get("bytes"))
    elif t == "artifact.scan_refused":
        what = "%s:%s %s" % (ev.get("file"), ev.get("line"), ev.get("what"))
    elif t == "step.dispatched":
        what = "%s, attempt %s" % (ev.get("mode"), ev.get("attempt"))
    elif t in ("step.finished", "run.finished"):
        what = ev.get("status", "") + ((" " + ev["error"]) if ev.get("error") else "")
    print("%-26s %-13s %s" % (t, step, what))
for step, n in outputs.items():
    print("%-26s %-13s %d chunks, redacted" % ("sandbox.output", step, n))
'
}

pf_claude=/var/lib/sagewai/variants/claude-code/bin/claude
if [ ! -x "$pf_claude" ]; then
	echo "the claude-code variant is not built ($pf_claude): run tools/variant-build" \
		"claude-code (tools/setup does when the npm registry is reachable)" >&2
	exit 1
fi
[ -n "${SAGEWAI_IDENTITY_URL:-}" ] || { echo "sagewai-identity is not running" >&2; exit 1; }
[ -n "${SAGEWAI_SANDBOXD_URL:-}" ] || { echo "sagewai-sandboxd is not running" >&2; exit 1; }
SAGEWAI_ADMIN_TOKEN=$(cat "$work/secrets/identity/admin.token")
export SAGEWAI_ADMIN_TOKEN

say "the customer: a GitHub token and an Anthropic key (random markers, files 0600)"
pf_marker "$work/customer-github.token" ghp_demo
pf_marker "$work/customer-anthropic.key" sk_ant_demo
echo "    $work/customer-github.token, $work/customer-anthropic.key"

say "the customer's repository: a git smart-HTTP server on loopback"
mkdir -p "$work/git"
git init -q --bare --initial-branch=main "$work/git/portfolio.git"
printf 'good %s\n' "$(cat "$work/customer-github.token")" >"$work/git/tokens"
sw_stack_service "$work" git-server python3 "$root/tests/sandboxd/git_server.py" \
	"$work/git" "$work/git/tokens" "$work/git/requests.log" --public-read >/dev/null
git_port=$(cat "$work/git-server.port")
repo=http://127.0.0.1:$git_port/portfolio.git
echo "    $repo (pushes need the customer's token; clones are public)"

say "Anthropic's API, offline: sagewai-llm-mock --script examples/portfolio/claude-script.json"
sw_stack_service "$work" claude-api "$build/tools/llm-mock/sagewai-llm-mock" \
	--port @PORT@ --port-file "$work/claude-api.portfile" \
	--script "$root/examples/portfolio/claude-script.json" --workdir /workspace \
	--require-key-file "$work/customer-anthropic.key" \
	--log "$work/claude-api.requests" >/dev/null
api_port=$(cat "$work/claude-api.port")
echo "    http://127.0.0.1:$api_port (401 without the customer's key): write index.html,"
echo "    write style.css, run ls -l, then say it is done, as Claude would"

say "sagewai secret set portfolio_anthropic_key (the value on stdin)"
sagewai secret set portfolio_anthropic_key <"$work/customer-anthropic.key" | sed 's/^/    /'
say "sagewai secret set portfolio_github_token (the value on stdin)"
sagewai secret set portfolio_github_token <"$work/customer-github.token" | sed 's/^/    /'
say "sagewai identity profile set portfolio-customer-x"
sagewai identity profile set portfolio-customer-x \
	--key ANTHROPIC_API_KEY=secret:portfolio_anthropic_key \
	--key GITHUB_TOKEN=secret:portfolio_github_token \
	--key "ANTHROPIC_BASE_URL=value:http://127.0.0.1:$api_port" | sed 's/^/    /'

sed -e "s/127\.0\.0\.1:8788/127.0.0.1:$api_port/" -e "s/127\.0\.0\.1:8789/127.0.0.1:$git_port/" \
	"$root/examples/portfolio.yaml" >"$work/portfolio.yaml"
say "sagewai workflow apply portfolio.yaml (egress_allow: the model endpoint; the git server)"
sagewai workflow apply "$work/portfolio.yaml" | sed 's/^/    /'
say "sagewai identity resolve --workflow portfolio"
sagewai identity resolve --workflow portfolio | tee "$work/resolve.out" | sed 's/^/    /'

say "sagewai run submit portfolio, then run show --follow (steps and output as they come)"
input=$(python3 -c 'import json,sys; print(json.dumps({"brief": sys.argv[1], "repo": sys.argv[2]}))' \
	"$brief" "$repo")
run=$(sagewai --json run submit portfolio --input "$input" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
echo "    run $run"
rc=0
sagewai run show "$run" --follow >"$work/follow.out" 2>&1 || rc=$?
sed 's/^/    /' "$work/follow.out"
sagewai --json run show "$run" >"$work/run.json"
if [ $rc -ne 0 ]; then
	echo "run $run did not succeed" >&2
	exit 1
fi

say "the push (the scaffold step's artifact, and the repository itself)"
python3 - "$work/run.json" <<-'EOF' | sed 's/^/    /'
	import json, sys
	r = json.load(open(sys.argv[1]))
	s = {s["name"]: s for s in r["steps"]}
	o = s["scaffold"]["output"]
	loc = o["artifact"]["location"]
	print("location  %s" % loc)
	print("commit    %s" % loc.rsplit("@", 1)[1])
	for f in o["files_changed"]["list"]:
	    print("file      %-12s %5d bytes  sha256 %s" % (f["path"], f["size"], f["sha256"]))
	v = json.loads(s["verify"]["output"]["stdout"])
	print("verify    build %s: commit %s, pages %s, %d links checked" % (
	    v["build"], v["commit"], ", ".join(v["pages"]), v["links_checked"]))
	print("summary   %s" % s["summarise"]["output"])
EOF
echo "    on the git server:"
git --git-dir="$work/git/portfolio.git" log --format='%H %an <%ae>%n%s' --stat main |
	sed 's/^/      /'
grep -q 'auth=no' "$work/git/requests.log" && grep -q 'git-receive-pack auth=yes' \
	"$work/git/requests.log" &&
	echo "    (the push carried the token, the verify step's clone none)"

say "what the agent asked the model (the scripted endpoint's record)"
python3 - "$work/claude-api.requests" <<-'EOF' | sed 's/^/    /'
	import json, sys
	for line in open(sys.argv[1]):
	    e = json.loads(line)
	    if e.get("path", "").startswith("/v1/messages") and "count_tokens" not in e["path"]:
	        r = e.get("reply") or {}
	        what = r.get("tool") or ("text: " + (r.get("text") or "")[:60])
	        print("%s %s authorized=%s turn %s -> %s" % (e["method"], e["path"],
	              e["authorized"], e.get("turn"), what))
EOF

say "the audit trail of run $run"
# the audit service reads several topics: wait (30 s at most) until it has
# the run's end and both sandboxes' release
for _ in $(seq 1 300); do
	sagewai --json audit run "$run" | python3 -c '
import json, sys
t = [e.get("event", {}).get("header", {}).get("type") for e in json.load(sys.stdin)["events"]]
sys.exit(0 if "run.finished" in t and t.count("sandbox.released") >= 2 else 1)' && break
	sleep 0.1
done
pf_events "$run" | tee "$work/trail.out" | sed 's/^/    /'

say "where the customer's key and token appear"
found=
for f in "$work/customer-anthropic.key" "$work/customer-github.token"; do
	v=$(cat "$f")
	b64=$(printf %s "$v" | base64 -w0)
	hex=$(printf %s "$v" | od -An -tx1 | tr -d ' \n')
	found+=$(grep -rlaF -e "$v" -e "$b64" -e "$hex" "$work"/*.log "$work"/*.out \
		"$work/run.json" "$work/claude-api.requests" "$SAGEWAI_DATA_DIR/audit" \
		2>/dev/null || true)
	found+=$(git --git-dir="$work/git/portfolio.git" grep -F -e "$v" main 2>/dev/null || true)
done
if [ -n "$found" ]; then
	echo "    a value appears in: $found" >&2
	exit 1
fi
echo "    nowhere: not in the output above, any service log, the model endpoint's record,"
echo "    the audit log (plain, base64 or hex) or the pushed commit"
