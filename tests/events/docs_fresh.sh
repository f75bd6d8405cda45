#!/bin/sh
# docs/EVENTS.md is what "sagewai-event docs" prints from the schemas now.
# usage: docs_fresh.sh SAGEWAI-EVENT DOCS/EVENTS.md
set -eu
tool=$1
doc=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$tool" docs >"$out"
if ! diff -u "$doc" "$out"; then
	echo
	echo "FAIL: $doc is stale (the schemas changed since it was generated)."
	echo "Regenerate it and commit the result:"
	echo "    $tool docs > $doc"
	exit 1
fi
echo "ok: $doc is current"
