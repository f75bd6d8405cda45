# The attack suite's helpers (sourced by each tests/attack/<group>.sh).
#
# Every attack is one attempt against the running stack, recorded with
#
#   attempt ID "what is tried" CMD [ARGS...]
#
# CMD runs in a subshell and decides: exit 0 means the attack HELD (the
# stack refused it, or nothing it must protect was reached), any other exit
# means it is BROKEN; what CMD prints to stderr is kept as the evidence.
# One line per attempt:
#
#   attack tenants.audit-no-key: held  (GET /v1/audit/runs/ID without a key)
#
# attack_done prints the group's "N held, N broken" and exits non-zero
# when anything broke. Attacks are loopback only, bounded in time, and each
# leaves the stack serving (attack_alive checks it after every attempt).
#
# The stack is the project's own (tools/lib/stack.sh) on the harness's real
# Kafka and PostgreSQL: attack_stack_start [multi_tenant] starts it into
# $work and exports SAGEWAI_URL, SAGEWAI_AUDIT_URL and the admin token.

attack_root=${SW_SOURCE_DIR:?run through ctest}
attack_build=${SW_BUILD_DIR:?run through ctest}
# shellcheck source=../../tools/lib/stack.sh
. "$attack_root/tools/lib/stack.sh"

attack_group=$(basename "$0" .sh)
attack_held=0
attack_broken=0
attack_broken_ids=()
work=$attack_build/tests-tmp/attack-$attack_group-$$
cli=$attack_build/tools/cli/sagewai
rm -rf "$work"
mkdir -p "$work"

while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"

attack_fail() { # setup failed: not an attack result
	echo "attack $attack_group: setup failed: $*" >&2
	for f in "$work"/*.log; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 15 "$f" >&2
	done
	exit 1
}

attack_stack_start() { # [multi_tenant]
	ATTACK_ADMIN=adm-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	export ATTACK_ADMIN
	if [ "${1:-}" = multi_tenant ]; then
		# identity's files are read only when it is built (tools/lib/stack.sh)
		for svc in scheduler worker sandboxd audit identity policy; do
			printf "SAGEWAI_MODE=multi_tenant\n" >>"$work/$svc.env"
		done
		printf "SAGEWAI_ADMIN_TOKEN=%s\n" "$ATTACK_ADMIN" >>"$work/scheduler.env"
		printf "SAGEWAI_ADMIN_TOKEN=%s\n" "$ATTACK_ADMIN" >>"$work/identity.env"
		printf "SAGEWAI_ADMIN_TOKEN=%s\n" "$ATTACK_ADMIN" >>"$work/audit.env"
		printf "SAGEWAI_ADMIN_TOKEN=%s\n" "$ATTACK_ADMIN" >>"$work/policy.env"
	fi
	trap 'sw_stack_stop "$work"' EXIT
	sw_stack_start "$work" "$attack_build" env || attack_fail "stack did not start"
	set -a
	# shellcheck disable=SC1091
	. "$work/stack.sh.env"
	set +a
}

# attack_alive: every service still answers /healthz
attack_alive() {
	local name port
	for name in scheduler worker audit sandboxd identity policy; do
		[ -f "$work/$name.port" ] || continue
		port=$(cat "$work/$name.port")
		curl -fsS -m 5 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 || {
			echo "$name stopped answering /healthz" >&2
			return 1
		}
	done
}

attempt() { # ID DESCRIPTION CMD...
	local id=$1 what=$2 rc=0
	shift 2
	("$@") >"$work/attempt-$id.out" 2>"$work/attempt-$id.err" || rc=$?
	if [ "$rc" -eq 0 ] && ! attack_alive 2>>"$work/attempt-$id.err"; then
		rc=99
	fi
	if [ "$rc" -eq 0 ]; then
		attack_held=$((attack_held + 1))
		printf 'attack %s.%s: held  (%s)\n' "$attack_group" "$id" "$what"
	else
		attack_broken=$((attack_broken + 1))
		attack_broken_ids+=("$id")
		printf 'attack %s.%s: BROKEN  (%s)\n' "$attack_group" "$id" "$what"
		sed 's/^/    /' "$work/attempt-$id.err" | tail -n 8
	fi
}

attack_done() {
	echo "attack $attack_group: $attack_held held, $attack_broken broken"
	[ "$attack_broken" -eq 0 ]
}

# http_status METHOD URL [curl args...]: the status code only
http_status() {
	local m=$1 u=$2
	shift 2
	curl -s -o /dev/null -w '%{http_code}' -m 10 -X "$m" "$@" "$u"
}

# expect_status WANT METHOD URL [curl args...]: exit 0 when the status is WANT
expect_status() {
	local want=$1 got
	shift
	got=$(http_status "$@")
	[ "$got" = "$want" ] || {
		echo "expected HTTP $want, got $got: $*" >&2
		return 1
	}
}

# pg_try DSN SQL: psql with no password from anywhere but the DSN
pg_try() {
	env -i PATH="$PATH" psql "$1" -XAt -v ON_ERROR_STOP=1 -c "$2" </dev/null
}

# refused DSN SQL [WHY]: the statement must fail (with an error matching
# the extended regular expression WHY, when given: the right refusal, not
# a typo)
refused() {
	local out
	if out=$(pg_try "$1" "$2" 2>&1); then
		echo "accepted: $2 -> $out ($1)" >&2
		return 1
	fi
	if [ -n "${3:-}" ] && ! grep -qE -- "$3" <<<"$out"; then
		echo "refused for another reason than '$3': $2 -> $out" >&2
		return 1
	fi
	echo "refused as expected: $out"
}
