#!/usr/bin/env bash
# Attacks from inside a sandboxed step (docs/SANDBOX.md): learning the
# host's paths from the mount table, filling the host's disk through
# /workspace, and reaching the host (its loopback services, its other
# addresses) from a step with network full. Steps are submitted through
# the sagewai CLI like a user's; sandboxd runs them in real sandboxes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# network full is offered (single-tenant; the scheduler refuses it unless
# listed): the attacks below must still not reach the host through it
for svc in scheduler sandboxd; do
	echo "SAGEWAI_SANDBOX_NETWORKS=none,egress_only,full" >>"$work/$svc.env"
done
attack_stack_start
[ -f "$work/sandboxd.port" ] || attack_fail "sandboxd is not running (bwrap unusable here?)"
sbd_port=$(cat "$work/sandboxd.port")
sched_port=$(cat "$work/scheduler.port")
# the host's own IPv4 addresses (loopback included), for python
host_addrs=$(ip -o -4 addr | awk '{split($4, a, "/"); printf "%s\x27%s\x27", sep, a[1]; sep=", "}')

apply() { # NAME YAML-BODY: register a one-step workflow
	printf '%s\n' "name: $1" "steps:" "$2" >"$work/$1.yaml"
	"$cli" workflow apply "$work/$1.yaml" >/dev/null || attack_fail "workflow apply $1"
}

# run_json WORKFLOW: run it to its end; the run (steps, output, error) as JSON
run_json() {
	local out id
	out=$("$cli" run submit "$1" --input '{}' --watch 2>&1) || true
	id=$(echo "$out" | grep -o '[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}' |
		head -n 1)
	[ -n "$id" ] || {
		echo "no run id: $out" >&2
		return 1
	}
	"$cli" --json run show "$id"
}

apply mounts "  - name: probe
    mode: sandboxed
    run: 'cat /proc/self/mountinfo /proc/1/mountinfo; sh -c \"cat /proc/\$\$/mountinfo\"'"
apply diskfill "  - name: fill
    mode: sandboxed
    limits: {disk_mb: 64, memory_mb: 512}
    run: 'dd if=/dev/zero of=/workspace/f bs=1M count=600'"
apply tmpfill "  - name: fill
    mode: sandboxed
    limits: {disk_mb: 32, memory_mb: 512}
    run: 'dd if=/dev/zero of=/tmp/f bs=1M count=600'"
apply fullhost "  - name: probe
    mode: sandboxed
    network: full
    run: [python3, -c, \"import socket\\nfor a in [$host_addrs, '10.0.2.2']:\\n  for p in [$sbd_port, $sched_port]:\\n    s = socket.socket(); s.settimeout(3)\\n    try:\\n      s.connect((a, p)); print('REACHED', a, p)\\n    except OSError as e:\\n      print('refused', a, p, e.errno)\\n    s.close()\\n\"]"
apply fullns "  - name: probe
    mode: sandboxed
    network: full
    run: 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d \" \" | sort | tr \"\\n\" \" \"'"

# no_host_paths: the mount table names nothing of the host's state
no_host_paths() {
	local j
	j=$(run_json mounts) || return 1
	grep -q '"state":"succeeded"' <<<"$j" && grep -q ' /workspace ' <<<"$j" || {
		echo "probe did not run: ${j:0:2000}" >&2
		return 1
	}
	for bad in "$work" sagewai-sandbox /tmp/; do
		if grep -qF -- "$bad" <<<"$j"; then
			echo "mountinfo shows $bad: $j" >&2
			return 1
		fi
	done
}

# disk_full WORKFLOW MIB PATH: the step fails with disk_full, nothing else
disk_full() {
	local j
	j=$(run_json "$1") || return 1
	grep -qF "disk_full: $3 is full ($2 MiB)" <<<"$j" || {
		echo "expected disk_full on $3: $j" >&2
		return 1
	}
}

full_unreached() {
	local j
	j=$(run_json fullhost) || return 1
	grep -q 'refused 127.0.0.1' <<<"$j" || {
		echo "probe did not run: ${j:0:2000}" >&2
		return 1
	}
	if grep -q REACHED <<<"$j"; then
		echo "reached the host: $j" >&2
		return 1
	fi
}

full_own_netns() {
	local j
	j=$(run_json fullns) || return 1
	grep -q '"lo tap0 "' <<<"$j" || {
		echo "not its own namespace (lo and tap0 only): $j" >&2
		return 1
	}
}

attempt mountinfo "read the host's paths from /proc/self/mountinfo and /proc/1/mountinfo" no_host_paths
attempt disk-workspace "write 600 MiB into a 64 MiB /workspace" disk_full diskfill 64 /workspace
attempt disk-tmp "write 600 MiB into a 32 MiB /tmp" disk_full tmpfill 32 /tmp
attempt full-host "network full: connect to the host's loopback, its addresses and slirp's gateway" \
	full_unreached
attempt full-netns "network full: the host's network namespace" full_own_netns
attack_done
