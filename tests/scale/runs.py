#!/usr/bin/env python3
"""The scale test's load and checks (see scale.sh).

  runs.py load N OUT T0FILE LIMIT RATE SCHED_URLS AUDIT_URLS
      submit N runs (workflows mix and plain in turn; POST /v1/runs as the
      CLI does) at RATE runs/s, 32 at a time, each to the next scheduler of
      SCHED_URLS (comma-separated; the other one while it restarts), run ids
      appended to OUT as they come; meanwhile follow every audit instance's
      feed (AUDIT_URLS, comma-separated: GET /v1/audit/events, type
      run.finished, long polls) for the runs' ends. OUT.state holds
      "SUBMITTED ENDED" (rewritten every 0.2 s). Fail unless all N succeeded within LIMIT s. T0FILE holds the
      time of the fault (epoch s, written meanwhile by scale.sh): print the
      runs in flight then (submitted before, ended after), the time from it
      to the first probe finishing after it (RECOVERY, by the run.finished
      events' own times), the longest a probe took around it (PROBEMAX),
      the steps/s before it and when a 10 s window is
      back at 80 % of that rate
  runs.py audit RUNS INDEX DUMP:LOGID...
      the union of the audit logs (sagewai-audit dump outputs, each with the
      log id of its log-id file): every run's run.finished and exactly one
      SUCCEEDED step.finished per (run, step), no event twice in one log;
      and the shared index (INDEX: "log_id event_id" lines of audit.events'
      events) holds exactly each log's events under its log id, no others
"""
import concurrent.futures as cf
import json
import os
import sys
import threading
import time
import urllib.request


def fail(msg):
    print("FAIL (scale): " + msg, file=sys.stderr)
    sys.exit(1)


def get(url, timeout=20):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def follow(url, ends, lock, stop):
    """Follow one audit instance's run.finished events from its head now:
    ends[run] = (status, event time in s)."""
    after = None
    while not stop.is_set():
        try:
            if after is None:
                after = get(url + "/v1/audit/events?last=1")["head"]
            j = get("%s/v1/audit/events?after=%d&type=run.finished&limit=5000&wait=2"
                    % (url, after), timeout=10)
        except Exception:  # restarting, PostgreSQL away: again
            time.sleep(0.3)
            continue
        with lock:
            for it in j.get("events", []):
                ev = it.get("event") or {}
                h = ev.get("header", {})
                if h.get("type") == "run.finished" and h.get("run_id"):
                    # the record's time: the event's own (its header's)
                    ends.setdefault(h["run_id"], (ev.get("status"), it["time_us"] / 1e6))
        after = j["next"]


def load(n, out, t0_file, limit, rate, sched, audits):
    """Submit n runs at rate/s while following the audit feeds."""
    ids = {}  # run -> (submitted at, steps)
    ends = {}
    lock = threading.Lock()
    errors = []
    stop = threading.Event()
    followers = [threading.Thread(target=follow, args=(u, ends, lock, stop), daemon=True)
                 for u in audits]
    for t in followers:
        t.start()
    time.sleep(1.0)  # the followers have their heads

    def one(i):
        wf = "mix" if i % 2 == 0 else "plain"
        body = json.dumps({"workflow": wf, "input": {"n": i}}).encode()
        err = ""
        for k in range(30):
            # its scheduler, or the other one while it restarts
            u = sched[(i + k) % len(sched)]
            req = urllib.request.Request(u + "/v1/runs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    rid = json.load(r)["run_id"]
                with lock:
                    ids[rid] = (time.time(), 2 if wf == "mix" else 1)
                    with open(out, "a") as f:
                        f.write(rid + "\n")
                return
            except Exception as e:  # refused, 5xx, timed out: again
                err = str(e)
            time.sleep(1)
        with lock:
            errors.append("submit %d: %s" % (i, err))

    probes = {}  # run -> submitted at
    prober_stop = threading.Event()

    def probe_loop():
        k = 0
        while not prober_stop.is_set():
            body = json.dumps({"workflow": "probe", "input": {"n": k}}).encode()
            u = sched[k % len(sched)]
            req = urllib.request.Request(u + "/v1/runs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            t = time.time()
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    rid = json.load(r)["run_id"]
                with lock:
                    probes[rid] = t
                    with open(out, "a") as f:
                        f.write(rid + "\n")
            except Exception:
                pass  # that scheduler is away: the next probe goes to the other
            k += 1
            prober_stop.wait(max(0.0, t + 0.5 - time.time()))

    prober = threading.Thread(target=probe_loop, daemon=True)
    prober.start()
    ex = cf.ThreadPoolExecutor(32)
    futs = []
    begin = time.time()
    end = begin + limit
    nsub = 0
    while time.time() < end:
        now = time.time()
        while nsub < n and begin + nsub / rate <= now:
            futs.append(ex.submit(one, nsub))
            nsub += 1
        with lock:
            ended = sum(1 for r in ids if r in ends)
            state = "%d %d\n" % (len(ids), ended)
        with open(out + ".state.tmp", "w") as f:
            f.write(state)
        os.replace(out + ".state.tmp", out + ".state")
        if nsub == n and all(f.done() for f in futs) and ended == len(ids):
            break
        time.sleep(0.2)
    # the probes stop; the last ones end
    pstop = time.time()
    prober_stop.set()
    prober.join(timeout=35)
    while time.time() < end and time.time() < pstop + 60:
        with lock:
            if all(r in ends for r in probes):
                break
        time.sleep(0.2)
    stop.set()
    ex.shutdown(wait=False, cancel_futures=True)
    with lock:
        ids = dict(ids)
        ends = dict(ends)
        probes = dict(probes)
    if errors:
        fail("%d submits failed: %s" % (len(errors), errors[0]))
    left = [r for r in ids if r not in ends]
    if left or len(ids) < n:
        fail("%d of %d runs not finished in %d s (e.g. %s)"
             % (len(left) + n - len(ids), n, limit, left[0] if left else "-"))
    pleft = [r for r in probes if r not in ends]
    if pleft:
        fail("%d of %d probe runs not finished (e.g. %s)" % (len(pleft), len(probes), pleft[0]))
    done = {r: ends[r] for r in ids}
    bad = [(r, s[0]) for r, s in done.items() if s[0] != "SUCCEEDED"]
    bad += [(r, ends[r][0]) for r in probes if ends[r][0] != "SUCCEEDED"]
    if bad:
        fail("%d runs did not succeed: %s" % (len(bad), bad[:5]))
    try:
        t0 = float(open(t0_file).read())
    except (OSError, ValueError):
        fail("no fault time in " + t0_file)
    fin = sorted((done[r][1], ids[r][1]) for r in ids)
    # recovery: the fault to the first probe ending after it (a probe ends
    # within a second or so when nothing is wrong); and the longest a probe
    # in flight at the fault or submitted within 30 s after it took
    pend = sorted(ends[r][1] for r in probes if ends[r][1] >= t0)
    rec = pend[0] - t0 if pend else float("nan")
    plat = [ends[r][1] - t for r, t in probes.items() if ends[r][1] >= t0 and t <= t0 + 30]
    pmax = max(plat) if plat else float("nan")
    pbase = sorted(ends[r][1] - t for r, t in probes.items() if ends[r][1] < t0)
    pmed = pbase[len(pbase) // 2] if pbase else float("nan")
    # steps/s before the fault (from the first finish) and the first time
    # after it that a 10 s window reaches 80 % of that rate again
    first = fin[0][0]
    pre = sum(k for t, k in fin if t < t0) / (t0 - first) if t0 - first > 2 else 0.0
    back = float("nan")
    if pre > 0:
        for t, _ in fin:
            if t < t0 + 10:
                continue
            w = sum(k for u, k in fin if t - 10 <= u <= t) / 10.0
            if w >= 0.8 * pre:
                back = t - t0
                break
    span = fin[-1][0] - first
    inflight = sum(1 for r in ids if ids[r][0] < t0 <= done[r][1])
    subs = sorted(v[0] for v in ids.values())
    print("runs %d submitted in %.1f s (%d steps) and %d probes, all succeeded; in flight at "
          "the fault %d; the first probe finished %.1f s after the fault; a probe took %.1f s "
          "at most around it (%.1f s median before it); the last run finished %.1f s after the "
          "fault; steps/s before the fault %.1f, overall %.1f; back to 80%% of the rate after "
          "%.1f s"
          % (n, subs[-1] - begin, sum(k for _, k in fin), len(probes), inflight, rec, pmax,
             pmed, fin[-1][0] - t0, pre, sum(k for _, k in fin) / span if span > 0 else 0.0,
             back))
    print("PROBEMAX %.1f" % pmax)
    print("INFLIGHT %d" % inflight)
    print("RECOVERY %.1f" % rec)


def audit(runs_file, index_file, dumps):
    runs = set(open(runs_file).read().split())
    finished = {}
    ok = {}
    per_log_ids = []
    n_events = 0
    logs = []
    for arg in dumps:
        d, log_id = arg.rsplit(":", 1)
        logs.append(log_id)
        seen = set()
        for line in open(d):
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            ev = rec.get("event")
            if not isinstance(ev, dict):
                continue
            h = ev.get("header", {})
            eid = h.get("event_id")
            if eid is not None:
                if eid in seen:
                    fail("%s: event %s logged twice" % (d, eid))
                seen.add(eid)
            run = h.get("run_id")
            if run not in runs:
                continue
            n_events += 1
            t = h.get("type")
            if t == "run.finished":
                finished.setdefault(run, set()).add(eid)
            elif t == "step.finished" and ev.get("status") == "SUCCEEDED":
                k = (run, ev.get("step"))
                ok.setdefault(k, set()).add(eid)
        per_log_ids.append(seen)
    both = per_log_ids[0] & per_log_ids[1] if len(per_log_ids) > 1 else set()
    missing = [r for r in runs if r not in finished]
    if missing:
        fail("%d runs have no run.finished in the union of the logs (e.g. %s)"
             % (len(missing), missing[0]))
    # distinct events (one in both logs is one event: its partition moved)
    twice = [k for k, v in ok.items() if len(v) != 1]
    if twice:
        fail("step succeeded %d times: %s" % (len(ok[twice[0]]), twice[0]))
    twice = [r for r, v in finished.items() if len(v) != 1]
    if twice:
        fail("run %s finished %d times" % (twice[0], len(finished[twice[0]])))
    steps_by_run = {}
    for (run, name) in ok:
        steps_by_run.setdefault(run, set()).add(name)
    # mix: box, tell; plain: ask; probe: echo
    short = [r for r in runs
             if steps_by_run.get(r, set()) not in ({"box", "tell"}, {"ask"}, {"echo"})]
    if short:
        fail("%d runs lack a step.finished SUCCEEDED for some step (e.g. %s)"
             % (len(short), short[0]))
    # the shared index: each log's events under its log id, nothing else
    if len(set(logs)) != len(logs):
        fail("two logs have one log id: %s" % logs)
    rows = {}
    for line in open(index_file):
        f = line.split()
        if len(f) != 2:
            continue
        if (f[0], f[1]) in rows:
            fail("index: event %s twice under log %s" % (f[1], f[0]))
        rows[(f[0], f[1])] = 1
    for log_id, seen in zip(logs, per_log_ids):
        idx = {e for (l, e) in rows if l == log_id}
        if idx != seen:
            fail("index rows of log %s: %d, its log holds %d events (%d not indexed, "
                 "%d indexed but not in it)" % (log_id, len(idx), len(seen), len(seen - idx),
                                                len(idx - seen)))
    other = {l for (l, _) in rows if l not in logs}
    if other:
        fail("index rows of logs that are not these: %s" % sorted(other))
    print("audit: %d events of %d runs in the union of %d logs (%s events each; %d in both); "
          "every run finished once, every step succeeded exactly once; the shared index "
          "holds each log's %s events under its log id"
          % (n_events, len(runs), len(dumps), "/".join(str(len(s)) for s in per_log_ids),
             len(both), "/".join(str(len(s)) for s in per_log_ids)))
    print("BOTH %d" % len(both))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "load":
        load(int(a[1]), a[2], a[3], int(a[4]), float(a[5]), a[6].split(","), a[7].split(","))
    elif a[0] == "audit":
        audit(a[1], a[2], a[3:])
    else:
        fail("usage")
