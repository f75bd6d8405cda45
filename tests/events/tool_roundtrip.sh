#!/bin/sh
# sagewai-event decode -> encode gives back the very same bytes: for the
# decoder's seed corpus (the current schema versions, TYPE-N) and for an
# event whose strings hold U+0000, which decode prints as \u0000 and which
# encode once refused ("\u0000 is not allowed without JSON_ALLOW_NUL").
# usage: tool_roundtrip.sh SAGEWAI-EVENT CORPUS-DIR
set -eu
tool=$1
corpus=$2
fail=0

roundtrip() { # name base64
	back=$(printf '%s\n' "$2" | "$tool" decode | "$tool" encode) || back="(failed)"
	if [ "$back" != "$2" ]; then
		echo "FAIL $1: decode -> encode gave $back, want $2"
		fail=1
	fi
}

n=0
for f in "$corpus"/*-[0-9]*; do
	roundtrip "$(basename "$f")" "$(base64 -w0 "$f")"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "FAIL: no corpus in $corpus"; exit 1; }

hdr='"header":{"event_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","type":"run.cancel_requested",'
hdr=$hdr'"time":1,"run_id":"R\u0000S","producer":"p\u0000"}'
if ! nul=$(printf '{%s,"requested_by":"\\u0000","reason":"a\\u0000b\\u0000"}\n' "$hdr" |
	"$tool" encode run.cancel_requested); then
	echo "FAIL: encode refuses strings holding U+0000"
	exit 1
fi
roundtrip "strings holding U+0000" "$nul"
if ! printf '%s\n' "$nul" | "$tool" decode | grep -F '"reason":"a\u0000b\u0000"' >/dev/null; then
	echo "FAIL: decode does not print the reason with its NULs"
	fail=1
fi
[ "$fail" -eq 0 ] && echo "ok: $n corpus events and one with U+0000 round-trip"
exit $fail
