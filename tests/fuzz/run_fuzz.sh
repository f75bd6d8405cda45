#!/usr/bin/env bash
# Run a libFuzzer target for a bounded time on a copy of its committed
# seed corpus, plus fresh seeds encoded from the current schemas.
#   run_fuzz.sh FUZZER SAGEWAI_EVENT CORPUS_DIR SEEDS_JSONL WORK_DIR [libFuzzer args]
set -euo pipefail
fuzzer=$1 tool=$2 corpus=$3 seeds=$4 work=$5
shift 5
rm -rf "$work"
mkdir -p "$work/corpus"
cp "$corpus"/* "$work/corpus/"
i=0
while read -r line; do
	i=$((i + 1))
	printf '%s' "$line" | base64 -d >"$work/corpus/fresh-$i"
done < <("$tool" encode <"$seeds")
[ "$i" -gt 0 ] || { echo "run_fuzz: no fresh seeds encoded" >&2; exit 1; }
exec "$fuzzer" -max_total_time=60 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	-artifact_prefix="$work/" "$@" "$work/corpus"
