#!/usr/bin/env python3
"""The scale test's load and checks (see scale.sh).

  runs.py load N OUT T0FILE LIMIT URL...
      submit N runs (workflows mix and plain in turn; POST /v1/runs as the
      CLI does), each to the next scheduler URL, 8 at a time, run ids appended
      to OUT as they come, while polling every submitted run until it ends
      (at most LIMIT s; the count of ended runs in OUT.done). Fail unless all N succeeded. T0FILE holds the time
      of the fault (epoch s, written meanwhile by scale.sh): print the time
      from it to the first run finishing after it (RECOVERY), the steps/s
      before it and when a 10 s window is back at 80 % of that rate
  runs.py audit RUNS DUMP...    the union of the audit logs (sagewai-audit
                                dump outputs): every run's run.finished and
                                exactly one SUCCEEDED step.finished per
                                (run, step), no event twice in one log
"""
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request


def fail(msg):
    print("FAIL (scale): " + msg, file=sys.stderr)
    sys.exit(1)


def get(url):
    with urllib.request.urlopen(url, timeout=20) as r:
        return json.load(r)


def load(n, out, t0_file, limit, urls):
    """Submit n runs (4 at a time) while polling every submitted one."""
    ids = []
    lock = threading.Lock()
    errors = []

    def one(i):
        wf = "mix" if i % 2 == 0 else "plain"
        body = json.dumps({"workflow": wf, "input": {"n": i}}).encode()
        err = ""
        for k in range(20):
            # its scheduler, or the other one while it restarts
            u = urls[(i + k) % len(urls)]
            req = urllib.request.Request(u + "/v1/runs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    rid = json.load(r)["run_id"]
                with lock:
                    ids.append((rid, time.time()))
                    with open(out, "a") as f:
                        f.write(rid + "\n")
                return
            except Exception as e:  # refused, 5xx, timed out: again
                err = str(e)
            time.sleep(1)
        with lock:
            errors.append("submit %d: %s" % (i, err))

    ex = cf.ThreadPoolExecutor(8)
    futs = [ex.submit(one, i) for i in range(n)]
    done = {}  # run -> (state, seen at, steps)
    end = time.time() + limit
    while time.time() < end:
        with lock:
            cur = list(ids)
        for r, _ in cur:
            if r in done:
                continue
            j = None
            for u in urls:  # any instance answers (the state is PostgreSQL's)
                try:
                    j = get("%s/v1/runs/%s" % (u, r))
                    break
                except Exception:
                    continue  # that one is restarting
            if j is None:
                continue
            if j["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
                done[r] = (j["state"], time.time(), len(j.get("steps", [])))
                with open(out + ".done", "w") as f:
                    f.write("%d\n" % len(done))
        if all(f.done() for f in futs) and len(done) == len(ids):
            break
        time.sleep(0.3)
    ex.shutdown(wait=False, cancel_futures=True)
    if errors:
        fail("%d submits failed: %s" % (len(errors), errors[0]))
    left = [r for r, _ in ids if r not in done]
    if left or len(ids) < n:
        fail("%d of %d runs not finished in %d s (e.g. %s)"
             % (len(left) + n - len(ids), n, limit, left[0] if left else "-"))
    bad = [(r, s[0]) for r, s in done.items() if s[0] != "succeeded"]
    if bad:
        fail("%d runs did not succeed: %s" % (len(bad), bad[:5]))
    try:
        t0 = float(open(t0_file).read())
    except (OSError, ValueError):
        fail("no fault time in " + t0_file)
    fin = sorted((s[1], s[2]) for s in done.values())
    after = [t for t, _ in fin if t >= t0]
    rec = after[0] - t0 if after else float("nan")
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
    print("runs %d (%d steps), all succeeded; in flight at the fault %d; first run finished "
          "%.1f s after the fault, the last %.1f s after; steps/s before the fault %.1f, "
          "overall %.1f; back to 80%% of the rate after %.1f s"
          % (n, sum(k for _, k in fin), sum(1 for r, t in ids if t < t0 and done[r][1] >= t0),
             rec, fin[-1][0] - t0, pre, sum(k for _, k in fin) / span if span > 0 else 0.0,
             back))
    print("RECOVERY %.1f" % rec)


def audit(runs_file, dumps):
    runs = set(open(runs_file).read().split())
    finished = {}
    ok = {}
    per_log_ids = []
    n_events = 0
    for d in dumps:
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
    short = [r for r in runs if len(steps_by_run.get(r, ())) not in (2, 3)]
    if short:
        fail("%d runs lack a step.finished SUCCEEDED for some step (e.g. %s)"
             % (len(short), short[0]))
    print("audit: %d events of %d runs in the union of %d logs (%s events each; %d in both); "
          "every run finished once, every step succeeded exactly once"
          % (n_events, len(runs), len(dumps), "/".join(str(len(s)) for s in per_log_ids),
             len(both)))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "load":
        load(int(a[1]), a[2], a[3], int(a[4]), a[5:])
    elif a[0] == "audit":
        audit(a[1], a[2:])
    else:
        fail("usage")
