#!/usr/bin/env python3
"""The scale test's load and checks (see scale.sh).

  runs.py submit N OUT URL...   submit N runs (two workflows, alternating),
                                each to the next scheduler URL in turn, 4 at a
                                time through the CLI ($SW_CLI); run ids to OUT
  runs.py wait RUNS T0 LIMIT    poll every run until it ends (at most LIMIT
                                s): fail unless all succeeded; print the time
                                from T0 (the fault, epoch s) to the first run
                                that finished after it, and the steps/s before
                                T0 and after the first finish after it
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
import time
import urllib.request


def fail(msg):
    print("FAIL (scale): " + msg, file=sys.stderr)
    sys.exit(1)


def submit(n, out, urls):
    cli = os.environ["SW_CLI"]

    def one(i):
        wf = "mix" if i % 2 == 0 else "plain"
        env = dict(os.environ, SAGEWAI_URL=urls[i % len(urls)])
        for attempt in range(5):
            p = subprocess.run([cli, "--json", "run", "submit", wf, "--input",
                                json.dumps({"n": i})], env=env,
                               capture_output=True, text=True, timeout=120)
            if p.returncode == 0:
                return json.loads(p.stdout)["run_id"]
            time.sleep(1)
        fail("submit %d: %s" % (i, p.stderr.strip()))

    with cf.ThreadPoolExecutor(4) as ex:
        ids = list(ex.map(one, range(n)))
    with open(out, "w") as f:
        f.write("\n".join(ids) + "\n")


def get(url):
    with urllib.request.urlopen(url, timeout=20) as r:
        return json.load(r)


def wait(runs_file, t0, limit):
    url = os.environ["SAGEWAI_URL"]
    runs = open(runs_file).read().split()
    done = {}  # run -> (state, seen at, steps)
    end = time.time() + limit
    while len(done) < len(runs) and time.time() < end:
        for r in runs:
            if r in done:
                continue
            try:
                j = get("%s/v1/runs/%s" % (url, r))
            except Exception:
                continue  # a scheduler restarting: ask again
            if j["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
                done[r] = (j["state"], time.time(), len(j.get("steps", [])))
        time.sleep(0.5)
    left = [r for r in runs if r not in done]
    if left:
        fail("%d of %d runs not finished in %d s (e.g. %s)" % (len(left), len(runs), limit,
                                                               left[0]))
    bad = [(r, s[0]) for r, s in done.items() if s[0] != "succeeded"]
    if bad:
        fail("%d runs did not succeed: %s" % (len(bad), bad[:5]))
    after = sorted(s[1] for s in done.values() if s[1] >= t0)
    rec = after[0] - t0 if after else 0.0
    before = [s for s in done.values() if s[1] < t0]
    print("runs %d, all succeeded; finished before the fault %d; first run finished %.1f s "
          "after the fault; last %.1f s after" % (len(runs), len(before), rec,
                                                 (after[-1] - t0) if after else 0.0))
    if after:
        steps = sum(s[2] for s in done.values() if s[1] > after[0])
        span = after[-1] - after[0]
        if span > 0:
            print("after recovery: %.1f steps/s" % (steps / span))
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
    if a[0] == "submit":
        submit(int(a[1]), a[2], a[3:])
    elif a[0] == "wait":
        wait(a[1], float(a[2]), int(a[3]))
    elif a[0] == "audit":
        audit(a[1], a[2:])
    else:
        fail("usage")
