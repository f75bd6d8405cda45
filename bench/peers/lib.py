"""Helpers of bench/peers/run (no third-party modules: the system python3).

  lib.py ports N                    N free loopback TCP ports
  lib.py wait-port PORT [SECONDS]   until 127.0.0.1:PORT accepts
  lib.py rss OUT PID...             every 0.5 s until killed: one line
                                    "EPOCH_MS TOTAL_KB NAME:KB,..." with the
                                    memory of each PID and all its
                                    descendants: their PSS (proportional
                                    set size), so that pages shared between
                                    processes (PostgreSQL's shared buffers
                                    in every backend) count once
  lib.py tree PID...                every thread id of the PIDs and of all
                                    their descendants
  lib.py pids PID...                the PIDs and all their descendants
                                    (process ids, one a line)
  lib.py now                        CLOCK_MONOTONIC in seconds
  lib.py perf-syncs PERF_DATA PIDFILE T0 T1
                                    the sync calls `perf record -a -k
                                    monotonic` saw (its syscalls:sys_enter_*
                                    tracepoints) from T0 to T1 (lib.py now)
                                    made by a process listed in PIDFILE or
                                    forked by one during the recording:
                                    "syncs N", "median_per_s M" (the median
                                    count of the window's whole seconds),
                                    then "by NAME N" for each thread name
  lib.py syncs FILE...              fsync+fdatasync+sync_file_range calls
                                    in the files: strace -c tables, or the
                                    "syncs N" line of perf-syncs
  lib.py report WORK ROUNDS PEERS   the JSON lines of the run (see run)
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

SYNCS = ("fsync", "fdatasync", "sync_file_range")


def ports(n):
    ss = [socket.socket() for _ in range(n)]
    for s in ss:
        s.bind(("127.0.0.1", 0))
    print(" ".join(str(s.getsockname()[1]) for s in ss))


def wait_port(port, secs=60.0):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return 0
        except OSError:
            time.sleep(0.1)
    return 1


def proc_table():
    t = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        t[int(d)] = (ppid, name)
    return t


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            return next((int(l.split()[1]) for l in f if l.startswith("Pss:")), 0)
    except (OSError, ValueError):
        return 0


def descendants(t, roots):
    kids = {}
    for pid, (ppid, _) in t.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [r for r in roots if r in t]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(kids.get(p, []))
    return seen


def tree(roots):
    tids = []
    for p in sorted(descendants(proc_table(), roots)):
        try:
            tids.extend(int(x) for x in os.listdir("/proc/%d/task" % p))
        except OSError:
            pass
    print(" ".join(str(x) for x in tids))


def pids(roots):
    for p in sorted(descendants(proc_table(), roots)):
        print(p)


def count_syncs(lines, want, t0, t1):
    """Count the sync calls in the lines of `perf script -F
    comm,pid,time,event,trace` made from t0 to t1 by the processes of the
    set want and by any process they forked during the recording (a
    PostgreSQL backend that came and went inside the window), in the
    recording's order. Returns (count, the median count of the window's
    whole seconds or None when it is shorter than one, {thread name: count})."""
    want = set(want)
    t0, t1 = float(t0), float(t1)
    child = re.compile(r"child_pid=(\d+)")
    line_re = re.compile(r"^\s*(.*?)\s+(\d+)\s+([0-9.]+):\s+(\S+):")
    n, by, times = 0, {}, []
    for line in lines:
        m = line_re.match(line)
        if m is None or int(m.group(2)) not in want:
            continue
        if m.group(4) == "sched:sched_process_fork":
            c = child.search(line)
            if c is not None:
                want.add(int(c.group(1)))
            continue
        t = float(m.group(3))
        if not t0 <= t <= t1:
            continue
        times.append(t)
        n += 1
        name = m.group(1).replace(" ", "_")
        by[name] = by.get(name, 0) + 1
    # the median of the calls in each whole second of the window: an idle
    # rate that one burst (a checkpoint) does not move
    bins = [0] * min(int(t1 - t0), 100000)
    for t in times:
        i = int(t - t0)
        if i < len(bins):
            bins[i] += 1
    median = None
    if bins:
        bins.sort()
        median = bins[len(bins) // 2]
    return n, median, by


def perf_syncs(data, pidfile, t0, t1):
    """count_syncs of a `perf record -a -k monotonic` of the sync
    tracepoints and sched:sched_process_fork, printed for sync_stop"""
    want = set(int(x) for x in open(pidfile).read().split())
    out = subprocess.run(["perf", "script", "-f", "-i", data, "-F", "comm,pid,time,event,trace"],
                         capture_output=True, text=True, check=True).stdout
    n, median, by = count_syncs(out.splitlines(), want, t0, t1)
    print("syncs %d" % n)
    if median is not None:
        print("median_per_s %s" % median)
    for k in sorted(by):
        print("by %s %d" % (k, by[k]))


def rss(out, roots):
    with open(out, "a") as f:
        while True:
            t = proc_table()
            by = {}
            for p in descendants(t, roots):
                by[t[p][1]] = by.get(t[p][1], 0) + pss_kb(p)
            f.write("%d %d %s\n" % (time.time() * 1000, sum(by.values()),
                                    ",".join("%s:%d" % kv for kv in sorted(by.items()))))
            f.flush()
            time.sleep(0.5)


def syncs(files):
    n = 0
    for fn in files:
        with open(fn) as f:
            for line in f:
                w = line.split()
                if len(w) == 2 and w[0] == "syncs" and w[1].isdigit():
                    n += int(w[1])
                elif len(w) >= 5 and w[-1] in SYNCS and w[3].isdigit():
                    n += int(w[3])
    return n


def read_jsonl(fn):
    out = []
    if os.path.exists(fn):
        with open(fn) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    out.append(json.loads(line))
    return out


def side_figures(work, r, side):
    """figure -> (value, unit) for one side in one round"""
    fig = {}
    for d in read_jsonl(os.path.join(work, "res", "%d.%s.jsonl" % (r, side))):
        c = d.get("case")
        if c == "latency":
            fig["p50_1step_ms"] = (d["p50_ms"], "ms")
            fig["p99_1step_ms"] = (d["p99_ms"], "ms")
        elif c and ":" in c and c != "ready":
            if d["steps"] == 1:
                fig["runs_per_s_1step_c%d" % d["conc"]] = (d["runs_per_s"], "runs/s")
            else:
                fig["steps_per_s_3step_c%d" % d["conc"]] = (round(d["runs_per_s"] * 3, 3),
                                                              "steps/s")
            if "p50_ms" in d:  # each run's submit to answer, at that concurrency
                fig["p50_ms_%dstep_c%d" % (d["steps"], d["conc"])] = (d["p50_ms"], "ms")
                fig["p99_ms_%dstep_c%d" % (d["steps"], d["conc"])] = (d["p99_ms"], "ms")
            if d.get("errors"):
                print("peers: %s round %d case %s: %d runs failed" % (side, r, c, d["errors"]),
                      file=sys.stderr)
            fig.setdefault("_w", {}).setdefault(d["conc"], []).append((d["t0"], d["t1"]))
    s = os.path.join(work, "res", "%d.%s.syncs.json" % (r, side))
    if os.path.exists(s):
        with open(s) as f:
            sy = json.load(f)
        fig["syncs_per_run_1step"] = (sy["per_run_1step"], "syncs")
        fig["syncs_per_extra_step"] = (sy["per_extra_step"], "syncs")
    # memory: the peak summed PSS of the side's processes over the cases
    # at each concurrency, and each process name's own peak there
    windows = fig.pop("_w", {})
    peak, by = {}, {}
    rs = os.path.join(work, "res", "%d.%s.rss" % (r, side))
    if os.path.exists(rs):
        with open(rs) as f:
            for line in f:
                w = line.split()
                if len(w) < 2:
                    continue
                for conc, spans in windows.items():
                    if any(a <= int(w[0]) <= b for a, b in spans):
                        peak[conc] = max(peak.get(conc, 0), int(w[1]))
                        for kv in (w[2].split(",") if len(w) > 2 else []):
                            k, _, v = kv.rpartition(":")
                            if k and v.isdigit():
                                m = by.setdefault(conc, {})
                                m[k] = max(m.get(k, 0), int(v))
    for conc, kb in peak.items():
        fig["rss_mb_c%d" % conc] = (round(kb / 1024.0, 1), "MB")
    for conc, m in by.items():
        fig["rss_mb_by_process_c%d" % conc] = (
            {k: round(v / 1024.0, 1) for k, v in sorted(m.items())}, "MB")
    return fig


CONCS = (1, 16, 128, 1024, 8192)
ORDER = (["p50_1step_ms", "p99_1step_ms"]
         + ["runs_per_s_1step_c%d" % c for c in CONCS]
         + ["steps_per_s_3step_c%d" % c for c in CONCS]
         + ["syncs_per_run_1step", "syncs_per_extra_step", "rss_mb_c128"]
         # the cost curve: each case's latency and memory
         + ["%s_ms_%dstep_c%d" % (q, s, c) for s in (1, 3) for c in CONCS for q in ("p50", "p99")]
         + ["rss_mb_c%d" % c for c in CONCS if c != 128]
         + ["rss_mb_by_process_c%d" % c for c in CONCS])


def report(work, rounds, peers):
    for r in range(1, rounds + 1):
        ours = side_figures(work, r, "ours")
        for p in peers:
            theirs = side_figures(work, r, p)
            for f in ORDER:
                if f not in ours and f not in theirs:
                    continue
                o, t = ours.get(f, (None, None)), theirs.get(f, (None, None))
                print(json.dumps({"bench": "peers", "figure": f, "peer": p, "ours": o[0],
                                  "theirs": t[0], "unit": o[1] or t[1], "round": r},
                                 separators=(",", ":")))


def main(a):
    if a[0] == "ports":
        ports(int(a[1]))
    elif a[0] == "wait-port":
        sys.exit(wait_port(int(a[1]), float(a[2]) if len(a) > 2 else 60.0))
    elif a[0] == "rss":
        rss(a[1], [int(x) for x in a[2:]])
    elif a[0] == "tree":
        tree([int(x) for x in a[1:]])
    elif a[0] == "pids":
        pids([int(x) for x in a[1:]])
    elif a[0] == "perf-syncs":
        perf_syncs(a[1], a[2], a[3], a[4])
    elif a[0] == "now":
        print("%.6f" % time.clock_gettime(time.CLOCK_MONOTONIC))
    elif a[0] == "syncs":
        print(syncs(a[1:]))
    elif a[0] == "report":
        report(a[1], int(a[2]), [p for p in a[3].split(",") if p])
    else:
        sys.exit("lib.py: unknown command " + a[0])


if __name__ == "__main__":
    main(sys.argv[1:])
