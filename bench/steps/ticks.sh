# shellcheck shell=bash
# sw_bench_ticks WORK: "NAME TICKS" (utime + stime, in clock ticks) for each
# process of the stack in WORK (tools/lib/stack.sh): every service, the
# broker (its JIT compiler threads apart, "kafka:jit"), and PostgreSQL's
# processes summed by the role each backend serves
# ("postgres:sagewai_scheduler", ...; its own as "postgres:walwriter", ...).
# Sourced by bench/steps/cpu and bench/steps/ab.
sw_bench_ticks() {
	local work=$1 n p t pguser
	pguser=$(stat -c %U "$work/harness/pg")
	for n in $(sort -u "$work/services"); do
		echo "$n $(awk '{print $14 + $15}' "/proc/$(cat "$work/$n.pid")/stat")"
	done
	# the broker apart from its JIT compiler threads ("kafka:jit"): for
	# thousands of runs after its start C2 compiles at up to 1.4 ms of CPU
	# a 3-step run, then falls to ~0.05; a figure read across that shows it
	local kp jit
	kp=$(cat "$work/harness/kafka.pid")
	jit=$(for t in /proc/"$kp"/task/*; do
		# after the last ")": the thread's name may hold spaces
		case "$(cat "$t/comm" 2>/dev/null)" in
		C1\ CompilerThre* | C2\ CompilerThre*) sed 's/.*) //' "$t/stat" 2>/dev/null ;;
		esac
	done | awk '{s += $12 + $13} END {print s + 0}')
	echo "kafka $(awk -v j="$jit" '{print $14 + $15 - j}' "/proc/$kp/stat")"
	echo "kafka:jit $jit"
	for p in $(pgrep -u "$pguser" postgres); do
		t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
		# "postgres: ROLE DB ..." for a backend, "postgres: walwriter" ...
		echo "postgres:$(tr '\0' ' ' <"/proc/$p/cmdline" | awk '{print ($2 ~ /^sagewai/ ? $2 : ($2 ~ /^-/ ? "postmaster" : $2))}') $t"
	done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}'
}
