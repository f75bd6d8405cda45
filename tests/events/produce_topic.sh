#!/usr/bin/env bash
# sagewai-event produce without --topic sends each event to the topic its
# schema names (sagewai.topic), on the harness's real broker: run.started to
# sagewai.runs, identity.resolved to sagewai.identity.replies (not to a
# topic made up from the type's area, "sagewai.identitys").
#   produce_topic.sh SAGEWAI_EVENT
set -euo pipefail
event=$1
while IFS= read -r line; do
	case "$line" in *=*) export "${line?}" ;; esac
done <"${SW_HARNESS_ENV:?}"
b=$SAGEWAI_KAFKA_BOOTSTRAP
run="produce-topic-$$-$RANDOM"
# read only what came after this point (the topics hold every earlier test's
# events: reading them all again at each try is slow once they are many)
since=$(($(date +%s%3N) - 1000))
fail() { echo "FAIL: $*" >&2; exit 1; }

printf '%s\n' "{\"header\": {\"run_id\": \"$run\"}, \"workflow\": \"w\", \"workflow_version\": 1}" |
	"$event" produce --bootstrap "$b" run.started >/dev/null || fail "produce run.started"
printf '%s\n' "{\"header\": {\"run_id\": \"$run\"}, \"request_id\": \"01a2424c-ff56-71bc-b1a1-7b63c30e1df9\", \"ok\": true, \"code\": \"\", \"error\": \"\", \"steps\": [], \"denied\": []}" |
	"$event" produce --bootstrap "$b" identity.resolved >/dev/null || fail "produce identity.resolved"

found() { # TOPIC: the run id is among the keys of the topic
	local i
	for i in $(seq 1 50); do
		kcat -C -b "$b" -t "$1" -o "s@$since" -e -q -f '%k\n' 2>/dev/null | grep -qx "$run" &&
			return 0
		sleep 0.2
	done
	return 1
}
found sagewai.runs || fail "run.started is not on sagewai.runs"
found sagewai.identity.replies || fail "identity.resolved is not on sagewai.identity.replies"
if kcat -L -b "$b" 2>/dev/null | grep -q 'topic "sagewai.identitys"'; then
	fail "a topic sagewai.identitys was made"
fi
echo "ok: each event on the topic its schema names"
