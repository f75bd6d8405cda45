#!/usr/bin/env python3
"""The worker's hop on its own, and what a run event beside it costs.

    bench/steps/workerhop.py --bootstrap B --event TOOL [--runs N] [--warmup W]
                             [--rounds R] [--modes alone,runs,runsafter]

(bench/steps/workerhop starts the stack and runs it)

Produces template step.dispatched events, one at a time, to
sagewai.steps.worker (encoded by `sagewai-event encode`) and times each from
the produce call to its step.finished consumed from sagewai.steps: two
Kafka hops and the worker's part (the results lookup, the template, the
lazy save beside the produce). The modes:

  alone      the dispatch only;
  runs       a run event (run.cancel_requested of an unknown run, which every
             reader of sagewai.runs reads and skips) produced just before it,
             as the scheduler's outbox sends run.submitted beside the first
             step.dispatched;
  runsafter  the same run event just after the dispatch.

Each round measures the raw baseline first, then the modes, in an order that
turns by one each round.

The baseline, in the same process and round: a raw produce -> consume of 8
bytes on bench.roundtrip, one at a time (two such hops are the floor of a
dispatch and its outcome). One JSON line per mode and round:

  {"bench": "workerhop", "figure": "p50_ms_MODE", "value": X, "unit": "ms",
   "baseline": RAW_P50, "ratio": X / RAW_P50, "round": R, "p90_ms": ...,
   "mean_ms": ...}
"""
import argparse, base64, json, statistics, subprocess, sys, time, uuid
from confluent_kafka import Consumer, OFFSET_END, Producer, TopicPartition

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--event", required=True)
ap.add_argument("--runs", type=int, default=500)
ap.add_argument("--warmup", type=int, default=100)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--modes", default="alone,runs,runsafter")
a = ap.parse_args()
modes = a.modes.split(",")
for m in modes:
    if m not in ("alone", "runs", "runsafter"):
        sys.exit("workerhop: unknown mode %s" % m)

SPEC = json.dumps({"workflow": "workerhop", "workflow_version": 1, "uses": "template",
                   "with": {"value": "x"}, "run_modes": ["in_process"],
                   "output_max": 1048576})


def encode(n):
    """n (dispatch, run event, run id) triples, fresh ids each."""
    lines, rids = [], []
    for _ in range(n):
        rid = str(uuid.uuid4())
        rids.append(rid)
        lines.append(json.dumps({"type": "step.dispatched", "header": {
            "tenant": "default", "run_id": rid, "step_id": rid + "/s/1"},
            "step": "s", "index": 0, "mode": "in_process", "attempt": 1, "spec": SPEC,
            "timeout_ms": 600000, "identity": ""}))
        lines.append(json.dumps({"type": "run.cancel_requested", "header": {
            "tenant": "default", "run_id": str(uuid.uuid4())}}))
    out = subprocess.run([a.event, "encode"], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, check=True).stdout.split()
    raw = [base64.b64decode(x) for x in out]
    return list(zip(raw[0::2], raw[1::2], rids))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "linger.ms": 0})
c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "workerhop-%d" % time.time_ns(),
              "enable.auto.commit": False})
raw_c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "workerhop-raw-%d" % time.time_ns(),
                  "enable.auto.commit": False})
md = c.list_topics("sagewai.steps", timeout=10).topics["sagewai.steps"]
c.assign([TopicPartition("sagewai.steps", q, OFFSET_END) for q in md.partitions])
p.produce("bench.roundtrip", value=b"create")
p.flush(10)
time.sleep(1)
raw_c.assign([TopicPartition("bench.roundtrip", 0, OFFSET_END)])
# until the reader's position is resolved, a probe may land before it
for _ in range(60):
    p.produce("bench.roundtrip", partition=0, value=b"probe")
    p.flush(10)
    m = raw_c.poll(1)
    if m is not None and not m.error():
        break
else:
    sys.exit("workerhop: bench.roundtrip is not readable")
while raw_c.poll(0.2) is not None:
    pass


def hop(disp, other, rid, mode):
    t0 = time.perf_counter()
    if mode == "runs":
        p.produce("sagewai.runs", key=rid, value=other)
    p.produce("sagewai.steps.worker", key=rid, value=disp)
    if mode == "runsafter":
        p.produce("sagewai.runs", key=rid, value=other)
    p.poll(0)
    key = rid.encode()
    while True:
        m = c.poll(10)
        if m is None:
            sys.exit("workerhop: no step.finished for run %s in 10 s" % rid)
        if m.error() or m.key() != key:
            continue
        if b"step.finished" in m.value():
            break
    dt = (time.perf_counter() - t0) * 1000
    p.poll(0)
    return dt


def raw_hop():
    t0 = time.perf_counter()
    p.produce("bench.roundtrip", partition=0, value=b"8 bytes.")
    p.poll(0)
    while True:
        m = raw_c.poll(10)
        if m is None:
            sys.exit("workerhop: the raw round trip got nothing in 10 s")
        if not m.error():
            break
    return (time.perf_counter() - t0) * 1000


evs = encode(a.warmup + a.rounds * len(modes) * a.runs)
k = 0
for _ in range(a.warmup):
    hop(*evs[k], "alone")
    k += 1
for r in range(1, a.rounds + 1):
    raw = [raw_hop() for _ in range(a.runs)]
    base = statistics.median(raw)
    # the order turns each round, so no mode always follows another
    for mode in modes[(r - 1) % len(modes):] + modes[:(r - 1) % len(modes)]:
        lat = []
        for _ in range(a.runs):
            lat.append(hop(*evs[k], mode))
            k += 1
        v = statistics.median(lat)
        print(json.dumps({"bench": "workerhop", "figure": "p50_ms_" + mode, "value": round(v, 3),
                          "unit": "ms", "baseline": round(base, 3),
                          "ratio": round(v / base, 2), "round": r,
                          "p90_ms": round(pct(lat, 0.9), 3),
                          "mean_ms": round(statistics.mean(lat), 3)}), flush=True)
