#!/usr/bin/env bash
# Attacks on the event bus: garbage of every kind on every sagewai topic
# (bytes that are no event, the right magic with an unknown fingerprint, a
# known fingerprint with a truncated body, an empty message). Each service
# keeps serving, every such message lands in sagewai.deadletter with its
# reason, and a run still succeeds afterwards.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start
"$cli" workflow apply "$attack_root/examples/hello.yaml" >/dev/null || attack_fail "apply"
fp=$("$attack_build/tools/event/sagewai-event" types | awk '$1 == "step.dispatched" {print $2}')
[ -n "$fp" ] || attack_fail "no fingerprint of step.dispatched"

garbage() { # TOPIC: four kinds of garbage, keyed like a run
	local t=$1 k=01890000-0000-7000-8000-00000000dead
	printf 'not an event at all' | kcat -P -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t "$t" -k "$k"
	printf '\xc3\x01ZZZZZZZZtruncated' | kcat -P -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t "$t" -k "$k"
	{
		printf '\xc3\x01'
		python3 -c "import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))" "$fp"
		printf '\x02'
	} | kcat -P -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t "$t" -k "$k"
	printf '' | kcat -P -Z -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t "$t" -k "$k" 2>/dev/null || true
	# the services must have seen it before attack_alive asks them
	sleep 1
}

dead_before=$(kcat -C -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t sagewai.deadletter -o beginning -e -q 2>/dev/null |
	wc -l || echo 0)
while read -r topic _; do
	case "$topic" in sagewai.*) ;; *) continue ;; esac
	attempt "garbage-${topic#sagewai.}" "garbage of four kinds on $topic" garbage "$topic"
done <"$attack_root/infra/kafka/topics.tsv"

run_after() {
	local out
	out=$("$cli" run submit hello --input '{"brief": "after the garbage"}' --watch 2>&1) || {
		echo "$out" >&2
		return 1
	}
	echo "$out" | grep -qi succeeded || {
		echo "$out" >&2
		return 1
	}
}
attempt run-after "a run after garbage on every topic" run_after

deadlettered() {
	local n
	for _ in $(seq 1 50); do
		n=$(kcat -C -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t sagewai.deadletter -o beginning -e -q \
			2>/dev/null | wc -l || echo 0)
		[ "$n" -gt "$dead_before" ] && return 0
		sleep 0.2
	done
	echo "nothing reached sagewai.deadletter" >&2
	return 1
}
attempt deadletter "the garbage is dead-lettered, not dropped" deadlettered
attack_done
