"""The load of bench/peers for the Python peers (DBOS, Temporal): the same
options and the same JSON lines as bench-peers (bench_peers.c).

  --warmup-runs N   runs at 16 in flight before anything (default 64)
  --latency N       one-step runs one at a time, after 10 unmeasured
  --deadline S      a case stops taking new runs after S seconds
  --hard-cap S      a case that has not drained S seconds after its start
                    is cut there: its rate is the runs done by then over S
                    (the caller cancels what is left)
  --cases LIST      STEPS:CONC[:TOTAL],... (TOTAL: that many runs, no deadline)
  --go-file PATH    once set up, print {"case":"ready"} and wait for PATH to
                    exist before any load (for the caller's strace attach)
"""
import argparse
import asyncio
import json
import os
import sys
import threading
import time

CASES = "1:1,1:16,1:128,1:1024,3:1,3:16,3:128,3:1024"


def parse(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("--warmup-runs", type=int, default=64)
    p.add_argument("--latency", type=int, default=200)
    p.add_argument("--deadline", type=float, default=10.0)
    p.add_argument("--hard-cap", type=float, default=0.0)
    p.add_argument("--cases", default=CASES)
    p.add_argument("--go-file")
    if extra:
        extra(p)
    a = p.parse_args()
    if a.latency == 1:
        p.error("--latency needs 0 or at least 2 runs")
    a.case_list = []
    for tok in a.cases.split(","):
        f = [int(x) for x in tok.split(":")]
        if len(f) not in (2, 3) or f[0] not in (1, 3) or not 1 <= f[1] <= 8192:
            p.error("bad case " + tok)
        a.case_list.append((f[0], f[1], f[2] if len(f) == 3 else 0))
    return a


def ms():
    return int(time.time() * 1000)


def emit(d):
    print(json.dumps(d, separators=(",", ":")), flush=True)


def pct(v, p):
    v = sorted(v)
    return v[int((len(v) - 1) * p)]


def latency_line(lat, t0):
    return {"case": "latency", "p50_ms": round(pct(lat, 0.5) * 1e3, 3),
            "p99_ms": round(pct(lat, 0.99) * 1e3, 3), "n": len(lat), "t0": t0, "t1": ms()}


def case_line(steps, conc, done, errors, rate, t0):
    return {"case": "%d:%d" % (steps, conc), "steps": steps, "conc": conc, "runs": done,
            "errors": errors, "runs_per_s": round(rate, 3), "t0": t0, "t1": ms()}


# ---- blocking run functions, one thread per run in flight (DBOS) ----------

def thread_load(run, steps, conc, total, deadline):
    lock = threading.Lock()
    st = {"next": 0, "done": 0, "errors": 0}
    t0 = time.monotonic()
    end = t0 + deadline if total == 0 else None
    limit = total if total else float("inf")

    def body():
        while True:
            with lock:
                if (end is not None and time.monotonic() >= end) or st["next"] >= limit:
                    return
                st["next"] += 1
            try:
                run(steps)
                ok = "done"
            except Exception as e:  # counted, the load goes on
                ok = "errors"
                if st["errors"] < 3:
                    print("run failed: %s: %.200s" % (type(e).__name__, e), file=sys.stderr)
            with lock:
                st[ok] += 1

    threading.stack_size(512 * 1024)
    ts = [threading.Thread(target=body) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return st["done"], st["errors"], st["done"] / (time.monotonic() - t0)


def wait_go(a):
    if a.go_file:
        emit({"case": "ready"})
        while not os.path.exists(a.go_file):
            time.sleep(0.05)


def run_threads(run, a):
    wait_go(a)
    if a.warmup_runs:
        thread_load(run, 1, 16, a.warmup_runs, 0)
        thread_load(run, 3, 16, a.warmup_runs // 2 + 1, 0)
    if a.latency:
        for _ in range(10):
            run(1)
        lat, t0 = [], ms()
        for _ in range(a.latency):
            s = time.monotonic()
            run(1)
            lat.append(time.monotonic() - s)
        emit(latency_line(lat, t0))
    for steps, conc, total in a.case_list:
        t0 = ms()
        done, errors, rate = thread_load(run, steps, conc, total, a.deadline)
        emit(case_line(steps, conc, done, errors, rate, t0))


# ---- coroutines, one task per run in flight (Temporal) ---------------------

async def task_load(run, steps, conc, total, deadline, hard_cap, cleanup):
    st = {"next": 0, "done": 0, "errors": 0}
    t0 = time.monotonic()
    end = t0 + deadline if total == 0 else None
    limit = total if total else float("inf")

    async def body():
        while True:
            if (end is not None and time.monotonic() >= end) or st["next"] >= limit:
                return
            st["next"] += 1
            try:
                await run(steps)
                st["done"] += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                st["errors"] += 1
                if st["errors"] <= 3:
                    print("run failed: %s: %.200s" % (type(e).__name__, e), file=sys.stderr)

    tasks = [asyncio.create_task(body()) for _ in range(conc)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), hard_cap if hard_cap > 0 else None)
        elapsed = time.monotonic() - t0
    except asyncio.TimeoutError:
        elapsed = time.monotonic() - t0
        await cleanup()
    return st["done"], st["errors"], st["done"] / elapsed


async def run_tasks(run, a, cleanup):
    wait_go(a)
    if a.warmup_runs:
        await task_load(run, 1, 16, a.warmup_runs, 0, 0, cleanup)
        await task_load(run, 3, 16, a.warmup_runs // 2 + 1, 0, 0, cleanup)
    if a.latency:
        for _ in range(10):
            await run(1)
        lat, t0 = [], ms()
        for _ in range(a.latency):
            s = time.monotonic()
            await run(1)
            lat.append(time.monotonic() - s)
        emit(latency_line(lat, t0))
    for steps, conc, total in a.case_list:
        t0 = ms()
        done, errors, rate = await task_load(run, steps, conc, total, a.deadline,
                                             a.hard_cap, cleanup)
        emit(case_line(steps, conc, done, errors, rate, t0))
