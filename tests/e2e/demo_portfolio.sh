#!/usr/bin/env bash
# ./tools/demo portfolio, as a user runs it (its own embedded broker,
# PostgreSQL, identity, git server and scripted model endpoint; the real
# Claude Code CLI of the claude-code variant), and its output checked for
# every part the demo promises:
#   - the run succeeded, each of its four steps succeeded;
#   - the push: a commit id, the same in the scaffold step's artifact, in
#     the repository's log (committed by sagewai for this run) and in the
#     verify step's check, which found the build ok; index.html and
#     style.css in the commit;
#   - the model endpoint saw the agent's four turns, all authorized;
#   - the audit trail: identity resolved and injected (the customer's key
#     and token, by secret name and version), the claude-code sandbox
#     acquired and released, its egress to the model endpoint allowed,
#     artifact.pushed with the commit, the verify sandbox's clone;
#   - neither value anywhere (the demo's own search) and none of the
#     demo's output holds either marker (the markers have fixed prefixes);
#   - sagewai audit verify: ok.
# The claude-code variant must be built (tools/setup): if it is not, the
# test fails, unless the npm registry is unreachable (exit 77, skipped).
set -euo pipefail

root=${SW_SOURCE_DIR:?run through ctest}
build=${SW_BUILD_DIR:?run through ctest}
out=$build/tests-tmp/demo-portfolio-$$.out
mkdir -p "$(dirname "$out")"

fail() {
	echo "FAIL (demo portfolio): $*" >&2
	echo "--- the demo's output: $out" >&2
	tail -n 80 "$out" >&2
	exit 1
}

if [ ! -x /var/lib/sagewai/variants/claude-code/bin/claude ]; then
	if ! timeout 20 npm ping >/dev/null 2>&1; then
		echo "the claude-code variant is not built and the npm registry is unreachable" \
			"(npm ping failed), so tools/setup could not build it: skipped"
		exit 77
	fi
	echo "FAIL: the claude-code variant is not built (run tools/setup)" >&2
	exit 1
fi

rc=0
SW_BUILD_DIR=$build "$root/tools/demo" portfolio >"$out" 2>&1 || rc=$?
# the demo's own words, without its colours
sed -i 's/\x1b\[[0-9;]*m//g' "$out"
[ $rc -eq 0 ] || fail "./tools/demo portfolio exited $rc"

have() { # WHAT EXTENDED-REGEX: a line of the output matches
	grep -qE -- "$2" "$out" || fail "$1: no line matching /$2/"
}
uuid='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
hex40='[0-9a-f]{40}'

run=$(grep -oE "^    run $uuid$" "$out" | head -n 1 | awk '{print $2}')
[ -n "$run" ] || fail "no run id"
have "the run" "^    run $run succeeded$"
for s in scaffold verify summarise; do
	have "step $s followed" "^      $s +succeeded "
done
have "the agent's output followed" "^      scaffold +\| The site is in /workspace"

# the push: one commit id everywhere
commit=$(sed -nE "s/^    commit    ($hex40)$/\1/p" "$out")
[ -n "$commit" ] || fail "no pushed commit printed"
have "artifact location" "^    location  http://127\.0\.0\.1:[0-9]+/portfolio\.git#main@$commit$"
have "index.html pushed" "^    file      index\.html +[0-9]+ bytes  sha256 [0-9a-f]{64}$"
have "style.css pushed" "^    file      style\.css +[0-9]+ bytes  sha256 [0-9a-f]{64}$"
have "the commit on the git server" "^      $commit Sagewai <sagewai@localhost>$"
have "the commit's message" "^      sagewai: run $run, step scaffold$"
have "the commit's files" "^       2 files changed"
have "verify ok for that commit" \
	"^    verify    build ok: commit $commit, pages index\.html, [1-9][0-9]* links checked$"
have "the verify step's own output" "^      verify +\| \{\"build\": \"ok\", \"commit\": \"$commit\""
have "token on the push, none on the clone" "the push carried the token, the verify step's clone none"

# the real CLI talked to the scripted endpoint, with the customer's key
for t in "0 -> Write" "1 -> Write" "2 -> Bash" "3 -> text: The site is"; do
	have "model turn $t" "^    POST /v1/messages authorized=True turn $t"
done

# the audit trail
trail() { have "audit: $1" "^    $2"; }
trail "resolution" "identity\.resolved +ok: scaffold: ANTHROPIC_API_KEY \(portfolio_anthropic_key v1\), ANTHROPIC_BASE_URL \(plain value\), GITHUB_TOKEN \(portfolio_github_token v1\)$"
trail "seal" "identity\.seal_requested +scaffold +sealed to this host: ANTHROPIC_API_KEY, GITHUB_TOKEN$"
trail "injection" "identity\.injected +scaffold +ANTHROPIC_API_KEY \(portfolio_anthropic_key v1\),.*GITHUB_TOKEN \(portfolio_github_token v1\)$"
trail "agent sandbox acquired" "sandbox\.acquired +scaffold +sandbox [0-9a-f]{12}, variant claude-code$"
trail "agent egress" "sandbox\.egress +scaffold +POST 127\.0\.0\.1:[0-9]+ allowed$"
trail "agent exit" "sandbox\.exited +scaffold +exit 0 "
trail "agent sandbox released" "sandbox\.released +scaffold +sandbox [0-9a-f]{12} \(finished\)$"
trail "push" "artifact\.pushed +scaffold +github http://127\.0\.0\.1:[0-9]+/portfolio\.git#main@$commit \(2 files, [0-9]+ bytes\)$"
trail "verify sandbox" "sandbox\.acquired +verify +sandbox [0-9a-f]{12}, variant base$"
trail "verify clone" "sandbox\.egress +verify +GET 127\.0\.0\.1:[0-9]+ allowed$"
trail "run finished" "run\.finished +SUCCEEDED$"
! grep -qE "REFUSED" "$out" || fail "an egress was refused: $(grep REFUSED "$out")"

# the values
have "the demo's search" "^    nowhere: not in the output above"
! grep -qE "ghp_demo_[0-9a-f]|sk_ant_demo_[0-9a-f]" "$out" ||
	fail "a customer's value in the demo's output"

have "the chain verifies" "^    ok: [0-9]+ records, [0-9]+ checkpoints, chain head [0-9a-f]{64}; [0-9]+ signatures good"
echo "demo portfolio: run $run succeeded, pushed $commit, verified ok, audit chain verified"
rm -f "$out"
