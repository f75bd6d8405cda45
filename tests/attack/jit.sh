#!/usr/bin/env bash
# Attacks on the credential request path of cli_agent_jit (docs/JIT.md)
# from inside a sandboxed step: the tool runner's credential socket (every
# sandbox has one) gets an oversized length, garbage, forged requests, a
# flood of connections and requests; the runner's control socket is looked
# for; a well-formed request from a step that is not cli_agent_jit must be
# refused by sandboxd (not_jit). After each, the sandbox still answers and
# the stack still serves. Steps are submitted through the sagewai CLI.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

attack_stack_start
[ -f "$work/sandboxd.port" ] || attack_fail "sandboxd is not running (bwrap unusable here?)"

cat >"$work/jitprobe.yaml" <<'EOF'
name: jitprobe
steps:
  - name: probe
    mode: sandboxed
    timeout: 120s
    run: |
      cat > /tmp/p.py <<'PYEOF'
      import os, socket, struct, time
      def conn(wait=15):
          # a full accept queue (just after the flood) says EAGAIN: retry
          end = time.time() + wait
          while True:
              s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
              s.settimeout(15)
              try: s.connect('\0sagewai-cred'); return s
              except BlockingIOError:
                  s.close()
                  if time.time() > end: raise
                  time.sleep(0.05)
      def reply(s):
          try:
              h = s.recv(4)
              if len(h) < 4: return 'closed'
              n = struct.unpack('<I', h)[0]; b = b''
              while len(b) < n:
                  c = s.recv(n - len(b))
                  if not c: break
                  b += c
              return 'status%d-%s' % (b[1], b[8:8 + struct.unpack('<H', b[2:4])[0]].decode())
          except OSError: return 'closed'
      def req(name, extra=b'', ver=1, scope=b's', t=3000):
          f = [name, scope, b'r', b'probe']
          body = struct.pack('<BBHI', ver, 1, 0, t) + b''.join(struct.pack('<H', len(x)) + x for x in f) + extra
          return struct.pack('<I', len(body)) + body
      def one(label, data):
          s = conn(); s.sendall(data); print('R', label, reply(s)); s.close()
      one('oversized', struct.pack('<I', 0xffffffff))
      one('short', struct.pack('<I', 3) + b'abc')
      one('garbage', struct.pack('<I', 64) + os.urandom(64))
      one('badname', req(b'x; rm -rf /'))
      one('trailing', req(b'OK_NAME', b'\0\0'))
      one('version', req(b'OK_NAME', ver=2))
      one('control', req(b'OK_NAME', scope=b'\x1b[2J'))
      one('overlong', req(b'A' * 129))
      one('timeout0', req(b'OK_NAME', t=0))
      held = []
      for i in range(300):
          try: held.append(conn(0))
          except OSError: break
      for s in held: s.close()
      print('R flood', len(held))
      # requests from a sandboxed step: sandboxd refuses each (not_jit)
      ws = [conn() for i in range(6)]
      for i, s in enumerate(ws): s.sendall(req(b'KEY_%d' % i))
      rs = [reply(s) for s in ws]
      ok = all(r in ('status1-not_jit', 'status3-bad_request') for r in rs) and 'status1-not_jit' in rs
      print('R burst', 'ok' if ok else ' '.join(rs))
      one('after', req(b'GITHUB_TOKEN'))
      # the runner's control socket: pid 1 is not dumpable
      try:
          os.open('/proc/1/fd/3', os.O_RDWR); print('ESC' + 'APED ctl')
      except OSError as e: print('R ctl denied', e.errno)
      print('probe' + ' done')
      PYEOF
      python3 /tmp/p.py
      sagewai-cred request GITHUB_TOKEN --scope s --reason r; echo "R client rc=$?"
EOF
"$cli" workflow apply "$work/jitprobe.yaml" >/dev/null || attack_fail "workflow apply"
out=$("$cli" run submit jitprobe --input '{}' --watch 2>&1) || true
id=$(echo "$out" | grep -o '[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}' |
	head -n 1)
[ -n "$id" ] || attack_fail "no run id: $out"
"$cli" --json run show "$id" >"$work/probe.json"
grep -q 'probe done' "$work/probe.json" || attack_fail "probe did not run: $(head -c 2000 "$work/probe.json")"
! grep -q ESCAPED "$work/probe.json" || attack_fail "escaped: $(head -c 2000 "$work/probe.json")"

# saw LINE: the probe printed it
saw() {
	grep -qF -- "$1" "$work/probe.json" || {
		echo "the probe did not print '$1': $(grep -o 'R [^\\]*' "$work/probe.json" | head -30)" >&2
		return 1
	}
}

attempt oversized "a request length of 4 GiB on the credential socket" saw "R oversized status3-bad_request"
attempt short "a request shorter than its header" saw "R short status3-bad_request"
attempt garbage "64 random bytes as a request" saw "R garbage status3-bad_request"
attempt forged-name "a NAME with shell syntax" saw "R badname status3-bad_request"
attempt trailing "bytes after the last field" saw "R trailing status3-bad_request"
attempt version "an unknown protocol version" saw "R version status3-bad_request"
attempt control "control characters in the scope" saw "R control status3-bad_request"
attempt overlong "a 129-byte NAME" saw "R overlong status3-bad_request"
attempt timeout0 "a zero timeout" saw "R timeout0 status3-bad_request"
attempt burst "six requests at once from a sandboxed step: refused (not_jit or the pending cap)" \
	saw "R burst ok"
attempt serves-on "after the flood of 300 connections, a request is still answered" saw "R after status1-not_jit"
attempt client "sagewai-cred in a sandboxed step: refused, exit 2" saw "R client rc=2"
attempt control-socket "open the runner's control socket (/proc/1/fd/3)" saw "R ctl denied"
attack_done
