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

# escape probes: each step prints ESCAPED if it got through; the step must
# have run (its marker line "probe done" is in its output) and not escaped;
# the markers are spelt apart in the commands, so only output can hold them
apply shadow "  - name: probe
    mode: sandboxed
    run: 'cat /etc/shadow 2>/dev/null && echo ESC\"\"APED; ls /root 2>/dev/null && echo ESC\"\"APED; echo probe\" \"done'"
apply hostprocs "  - name: probe
    mode: sandboxed
    run: 'n=\$(ls /proc | grep -c \"^[0-9]*\$\"); [ \"\$n\" -gt 10 ] && echo ESC\"\"APED \$n; echo probe\" \"done'"
apply writes "  - name: probe
    mode: sandboxed
    run: 'for d in / /etc /usr /bin /proc/sys; do touch \$d/sw_escape 2>/dev/null && echo ESC\"\"APED \$d; done; echo probe\" \"done'"
apply syscalls "  - name: probe
    mode: sandboxed
    run: [python3, -c, \"import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\nfor name, flag in [('user', 0x10000000), ('mount', 0x20000), ('net', 0x40000000)]:\\n  if libc.unshare(flag) == 0: print('ESC' + 'APED unshare', name)\\nif libc.ptrace(16, 1, 0, 0) == 0: print('ESC' + 'APED ptrace')\\nif libc.mount(b'x', b'/mnt', b'tmpfs', 0, None) == 0: print('ESC' + 'APED mount')\\nprint('probe' + ' done')\\n\"]"
apply loopnone "  - name: probe
    mode: sandboxed
    network: none
    run: [python3, -c, \"import socket\\nfor p in [$sbd_port, $sched_port]:\\n  s = socket.socket(); s.settimeout(3)\\n  try:\\n    s.connect(('127.0.0.1', p)); print('ESC' + 'APED', p)\\n  except OSError: pass\\nprint('probe' + ' done')\\n\"]"
apply envleak "  - name: probe
    mode: sandboxed
    run: 'env | grep -v -e ^PATH= -e ^HOME= -e ^PWD= -e ^OLDPWD= -e ^SHLVL= -e ^_= | while read -r l; do echo ESC\"\"APED env \$l; done; echo probe\" \"done'"

# held_probe WORKFLOW: the probe ran and printed no ESCAPED line
held_probe() {
	local j
	j=$(run_json "$1") || return 1
	grep -q 'probe done' <<<"$j" || {
		echo "probe did not run: ${j:0:2000}" >&2
		return 1
	}
	if grep -q ESCAPED <<<"$j"; then
		echo "escaped: ${j:0:2000}" >&2
		return 1
	fi
}

attempt read-host-secrets "read /etc/shadow and /root from a sandbox" held_probe shadow
attempt host-processes "see the host's processes in /proc" held_probe hostprocs
attempt write-outside "write to /, /etc, /usr, /bin, /proc/sys" held_probe writes
attempt syscalls "unshare (user, mount, net), ptrace pid 1, mount" held_probe syscalls
attempt loopback-none "network none: reach sandboxd's and the scheduler's ports on 127.0.0.1" \
	held_probe loopnone
attempt environment "find anything but PATH and HOME in the environment" held_probe envleak
attempt mountinfo "read the host's paths from /proc/self/mountinfo and /proc/1/mountinfo" no_host_paths
attempt disk-workspace "write 600 MiB into a 64 MiB /workspace" disk_full diskfill 64 /workspace
attempt disk-tmp "write 600 MiB into a 32 MiB /tmp" disk_full tmpfill 32 /tmp
attempt full-host "network full: connect to the host's loopback, its addresses and slirp's gateway" \
	full_unreached
attempt full-netns "network full: the host's network namespace" full_own_netns
attack_done
