#!/usr/bin/env bash
# Attacks on the audit log at rest: whoever can write its files shortens
# it. A log cut at a record boundary verifies by itself, so the service
# must notice from its index and refuse to start, and the checkpoints it
# published must show it off-box; a torn tail it repairs must leave an
# error-level audit.repaired event in the trail. Whoever can produce to
# sagewai.audit.checkpoints forges checkpoints: verify names them. A run's
# bundle altered after export is refused, naming the record. A signing
# key others may read is refused.
# A changed byte, in any field of a record, stops replay publish before it
# sends anything, and so does a torn or lengthened last record (not taken
# for the log's end); the audit cursor refuses hostile queries and survives clients hanging up.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start
"$cli" workflow apply "$attack_root/examples/hello.yaml" >/dev/null || attack_fail "workflow apply"
for i in 1 2 3; do
	"$cli" run submit hello --input "{\"brief\": \"run $i\"}" --watch >/dev/null 2>&1 ||
		attack_fail "run $i"
done
sleep 2 # let the index catch up with the last events
logdir=$SAGEWAI_DATA_DIR/audit
verify() { "$attack_build/services/audit/sagewai-audit" verify "$logdir" >/dev/null; }

# the records of the last segment: "offset seq" lines
records() {
	python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
o = 64
while o + 12 <= len(d):
    n, seq = struct.unpack_from("<IQ", d, o)
    if o + 4 + 8 + 32 + n + 32 > len(d):
        break
    print(o, seq)
    o += 4 + 8 + 32 + n + 32
PY
}

# forge: a checkpoint on the topic claiming the log is longer, signed by a
# key nobody lists: verify must call it forged (unknown key), not believe it.
# It claims a million records more: verify names the earliest bad point,
# and the genuine checkpoints that prove shorten's cut (below, after the
# records of the attempts between) must come before it.
forge() {
	local out log_id records msg
	out=$("$cli" --json audit verify) || { echo "the log does not verify: $out" >&2; return 1; }
	log_id=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_id"])')
	records=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')
	msg=$work/forged.msg
	printf '{"type":"audit.checkpoint","header":{"run_id":""},"log_id":"%s","seq":%d,"hash":"%s","prev_checkpoint_seq":-1,"key_id":"forger","signature":"%s","root":"%s"}\n' \
		"$log_id" $((records + 1000000)) "$(printf '0%.0s' $(seq 1 64))" \
		"$(printf 'a%.0s' $(seq 1 128))" "$(printf 'b%.0s' $(seq 1 64))" |
		"$attack_build/tools/event/sagewai-event" encode audit.checkpoint | base64 -d >"$msg"
	kcat -P -b "$SAGEWAI_KAFKA_BOOTSTRAP" -t sagewai.audit.checkpoints -k "$log_id" "$msg"
	out=$("$cli" audit verify --checkpoints-from-kafka "$SAGEWAI_KAFKA_BOOTSTRAP" 2>&1) && {
		echo "verify believed a forged checkpoint: $out" >&2
		return 1
	}
	case "$out" in
	*"unknown key 'forger'"*) ;;
	*) echo "verify did not name the forged checkpoint: $out" >&2; return 1 ;;
	esac
}
attempt forge "publish a checkpoint signed by an unknown key" forge

# bundle: export a run, change one byte of one of its records
bundle() {
	local run b=$work/bundle.json t=$work/bundle-tampered.json out
	run=$("$cli" run submit hello --input '{"brief": "to export"}' --watch 2>/dev/null | head -n 1)
	[ -n "$run" ] || { echo "no run to export" >&2; return 1; }
	"$cli" audit export --run "$run" --output "$b" 2>/dev/null || {
		echo "export failed" >&2
		return 1
	}
	"$cli" audit verify --bundle "$b" >/dev/null || { echo "the bundle does not verify" >&2; return 1; }
	python3 - "$b" "$t" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
r = b["records"][len(b["records"]) // 2]
h = r["record"]
i = len(h) - 64 - 20
r["record"] = h[:i] + ("1" if h[i] == "0" else "0") + h[i + 1:]
json.dump(b, open(sys.argv[2], "w"))
print(r["seq"])
PY
	out=$("$cli" audit verify --bundle "$t" 2>&1) && {
		echo "a tampered bundle verified: $out" >&2
		return 1
	}
	case "$out" in
	"BAD: record seq "*"hash mismatch"*) ;;
	*) echo "the tampered record was not named: $out" >&2; return 1 ;;
	esac
}
attempt bundle "alter a record inside an exported bundle" bundle

# loose key: a signing key group or others may read is refused at start
loose_key() {
	local k=$work/loose.key out
	cp "$work/secrets/audit-signing.key" "$k"
	chmod 644 "$k"
	out=$(env -i PATH=/usr/bin:/bin SAGEWAI_AUDIT_SIGNING_KEY_FILE="$k" \
		SAGEWAI_DATA_DIR="$work/loose" "$attack_build/services/audit/sagewai-audit" serve 2>&1) && {
		echo "sagewai-audit started with a world-readable key" >&2
		return 1
	}
	rm -f "$k"
	case "$out" in
	*"chmod 600"*) ;;
	*) echo "no clear refusal: $out" >&2; return 1 ;;
	esac
}
attempt loose-key "start the audit service with a signing key others can read" loose_key

# shorten: drop the last 3 records cleanly, restart the service
shorten() {
	local seg off
	sw_stack_kill "$work" audit TERM
	seg=$(ls "$logdir"/seg-*.swlog | tail -n 1)
	off=$(records "$seg" | tail -n 3 | head -n 1 | cut -d' ' -f1)
	truncate -s "$off" "$seg"
	verify || { echo "the cut log does not verify by itself" >&2; return 1; }
	sw_stack_launch "$work" audit
	for _ in $(seq 1 100); do
		kill -0 "$(cat "$work/audit.pid")" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$(cat "$work/audit.pid")" 2>/dev/null; then
		echo "sagewai-audit serves a shortened log" >&2
		return 1
	fi
	grep -q 'the log was shortened; refusing to start' "$work/audit.log" || {
		echo "no clear refusal in the service log" >&2
		return 1
	}
	# and off-box: the published checkpoints name the first record cut
	local out
	out=$("$cli" audit verify --checkpoints-from-kafka "$SAGEWAI_KAFKA_BOOTSTRAP" 2>&1) && {
		echo "verify against the published checkpoints passed a shortened log: $out" >&2
		return 1
	}
	case "$out" in
	*"were deleted"*) ;;
	*) echo "verify did not report the deleted tail: $out" >&2; return 1 ;;
	esac
}
# replay publish of a log with one changed byte: refused, nothing sent
replay_tampered() {
	local copy=$work/tampered topic out how
	# one byte changed in the middle of the file, in each field of the
	# middle record (its length, seq, prev hash, kind, topic length, its
	# event's magic, its event, its hash), the last record lengthened past
	# the file's end, and the tail torn mid-record
	for how in middle len seq prev kind topiclen magic event hash lastlen torn; do
		topic=attack-replay-$how-$$
		rm -rf "$copy"
		cp -r "$logdir" "$copy"
		python3 - "$(ls "$copy"/seg-*.swlog | tail -n 1)" "$how" <<-'PY'
			import os, struct, sys
			path, how = sys.argv[1], sys.argv[2]
			d = bytearray(open(path, "rb").read())
			recs, o = [], 64
			while o + 44 <= len(d):
			    n = struct.unpack_from("<I", d, o)[0]
			    recs.append((o, n))
			    o += 76 + n
			o, n = recs[len(recs) // 2]
			body = o + 44
			tl = struct.unpack_from("<H", d, body + 1)[0]
			at = {"middle": 64 + (len(d) - 64) // 2, "len": o + 1, "seq": o + 4,
			      "prev": o + 12 + 7, "kind": body, "topiclen": body + 1,
			      "magic": body + 3 + tl + 20 + 1, "event": body + 3 + tl + 20 + 30,
			      "hash": body + n + 5}.get(how)
			if how == "lastlen":
			    at = recs[-1][0] + 1
			if how == "torn":
			    os.truncate(path, len(d) - 10)
			else:
			    d[at] ^= 0x01
			    open(path, "r+b").write(d)
		PY
		if out=$("$cli" replay publish --log "$copy" --to "$topic" 2>&1); then
			echo "$how: a tampered log was published: $out" >&2
			return 1
		fi
		echo "$out" | grep -q "is broken: .*record seq [0-9]* .*nothing was published" || {
			echo "$how: no clear refusal naming the record: $out" >&2
			return 1
		}
		[ "$(kcat -b "$SAGEWAI_KAFKA_BOOTSTRAP" -C -t "$topic" -o beginning -e -q 2>/dev/null |
			wc -l)" = 0 ] || { echo "$how: messages reached $topic" >&2; return 1; }
	done
}
attempt replay-tampered "re-publish a log with one changed byte, in each field, or torn" replay_tampered

# the audit cursor under hostile queries and clients that hang up mid-poll
cursor_hostile() {
	local q long
	long=$(python3 -c 'print(",".join(["run.started"] * 2000))')
	for q in "type=run.started'%20OR%201=1--" "run=x%27%3BDROP%20TABLE%20events--" \
		"after=1e9" "last=-1" "limit=99999999999999999999" "type=$long" \
		"run=$(printf 'a%.0s' $(seq 1 200))" "wait=30&last=5" "after=%00" "type=%7Ba%7D"; do
		[ "$(http_status GET "$SAGEWAI_AUDIT_URL/v1/audit/events?$q")" = 400 ] || {
			echo "not refused: ${q:0:80}" >&2
			return 1
		}
	done
	for _ in $(seq 1 20); do
		curl -s -m 0.2 "$SAGEWAI_AUDIT_URL/v1/audit/events?after=99999999&wait=30" \
			>/dev/null 2>&1 || true
	done
	[ "$(http_status GET "$SAGEWAI_AUDIT_URL/v1/audit/events?last=1")" = 200 ]
}
attempt cursor-hostile "hostile queries on the audit cursor, polls hung up" cursor_hostile

# the stack is then without audit: this group's last attempt
attempt tear "tear the log's tail (a crash mid-append)" bash -c '
	set -e
	. "$1/tools/lib/stack.sh"
	work=$2 logdir=$3
	sw_stack_kill "$work" audit TERM
	seg=$(ls "$logdir"/seg-*.swlog | tail -n 1)
	head -c 150 /dev/urandom >>"$seg"
	sw_stack_launch "$work" audit
	sw_stack_wait_http "$SAGEWAI_AUDIT_URL" audit "$work"
	grep -q "\"level\":\"error\".*torn tail cut at start" "$work/audit.log" ||
		{ echo "no error line for the repair" >&2; exit 1; }
	"$4" dump "$logdir" | grep -q "\"audit.repaired\"" ||
		{ echo "no audit.repaired event in the log" >&2; exit 1; }
	"$4" verify "$logdir" >/dev/null' _ "$attack_root" "$work" "$logdir" \
	"$attack_build/services/audit/sagewai-audit"
attack_alive() { :; } # the next attempt leaves the audit service stopped, on purpose
attempt shorten "cut the last records of the log at a record boundary" shorten
attack_done
