# shellcheck shell=bash
# sw_bench_ticks WORK: "NAME TICKS" (utime + stime, in clock ticks) for each
# process of the stack in WORK (tools/lib/stack.sh): every service, the
# broker, and PostgreSQL's processes summed by the role each backend serves
# ("postgres:sagewai_scheduler", ...; its own as "postgres:walwriter", ...).
# Sourced by bench/steps/cpu and bench/steps/ab.
sw_bench_ticks() {
	local work=$1 n p t pguser
	pguser=$(stat -c %U "$work/harness/pg")
	for n in $(sort -u "$work/services"); do
		echo "$n $(awk '{print $14 + $15}' "/proc/$(cat "$work/$n.pid")/stat")"
	done
	echo "kafka $(awk '{print $14 + $15}' "/proc/$(cat "$work/harness/kafka.pid")/stat")"
	for p in $(pgrep -u "$pguser" postgres); do
		t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
		# "postgres: ROLE DB ..." for a backend, "postgres: walwriter" ...
		echo "postgres:$(tr '\0' ' ' <"/proc/$p/cmdline" | awk '{print ($2 ~ /^sagewai/ ? $2 : ($2 ~ /^-/ ? "postmaster" : $2))}') $t"
	done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}'
}
