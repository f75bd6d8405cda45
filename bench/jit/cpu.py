#!/usr/bin/env python3
"""CPU time of a stack's processes, for bench/jit/run.

  cpu.py snap WORK > FILE        user+system seconds of each service (WORK/*.pid),
                                 the Kafka broker and PostgreSQL (its postmaster and
                                 backends) and the whole machine (/proc/stat)
  cpu.py per A B N               from two snapshots: CPU ms per request (N requests)
"""
import json
import os
import sys

HZ = os.sysconf('SC_CLK_TCK')


def stat(pid):
    try:
        s = open('/proc/%d/stat' % pid).read()
    except OSError:
        return None
    r = s[s.rfind(')') + 2:].split()
    return int(r[1]), (int(r[11]) + int(r[12])) / HZ  # ppid, utime + stime


def comm(pid):
    try:
        return open('/proc/%d/comm' % pid).read().strip()
    except OSError:
        return ''


def children(ppid):
    out = []
    for d in os.listdir('/proc'):
        st = stat(int(d)) if d.isdigit() else None
        if st and st[0] == ppid:
            out.append((int(d), st[1]))
    return out


def pidfile(path):
    try:
        return int(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def snap(work):
    out = {}
    for f in sorted(os.listdir(work)):
        pid = pidfile(os.path.join(work, f)) if f.endswith('.pid') else None
        st = stat(pid) if pid else None
        if st:  # with its own sagewai-* children (sandboxd's unprivileged part),
            # not the sandboxes (the requester's own work)
            out[f[:-4]] = st[1] + sum(t for k, t in children(pid) if comm(k).startswith('sagewai-'))
    h = os.path.join(work, 'harness')
    pid = pidfile(os.path.join(h, 'kafka.pid'))
    if pid and stat(pid):
        out['kafka'] = stat(pid)[1]
    pm = pidfile(os.path.join(h, 'pg', 'postmaster.pid'))
    if pm and stat(pm):
        out['postgres'] = stat(pm)[1] + sum(t for _, t in children(pm))
    f = open('/proc/stat').readline().split()[1:]
    out['machine'] = (int(f[0]) + int(f[1]) + int(f[2]) + int(f[5]) + int(f[6])) / HZ
    return out


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'snap':
        json.dump(snap(sys.argv[2]), sys.stdout)
    elif len(sys.argv) == 5 and sys.argv[1] == 'per':
        a, b = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
        n = max(1, int(sys.argv[4]))
        print(', '.join('%s %.2f' % (k, (b[k] - a.get(k, 0)) * 1000 / n) for k in b))
    else:
        sys.exit(__doc__)
