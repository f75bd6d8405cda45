#!/usr/bin/env python3
"""Where a one-step run's time goes, hop by hop, from the events themselves.

    bench/steps/hops_profile.py --bootstrap B --event TOOL [--seconds S] [--until FILE]

(bench/steps/hops starts the stack and runs it)

Reads sagewai.runs and sagewai.steps (and sagewai.identity and its
replies, when the stack resolves submits) from their ends for S seconds (make the
runs meanwhile, one at a time), decodes each event with `sagewai-event
decode` and prints, per hop, the median and p90 over the runs seen of

  header.time of the later event - header.time of the earlier one
  (each producer stamps its event when it composes it)
  and the Kafka message timestamp (CreateTime: the producer stamps it when
  the event is handed to it; ms resolution) - header.time: how long an
  event waited between being composed and produced (the commit before it))

as JSON lines {"bench": "hops", "hop": H, "p50_ms": X, "p90_ms": Y, "runs": N}.
"""
import argparse, base64, json, statistics, subprocess, sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_END

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--event", required=True)
ap.add_argument("--seconds", type=float, default=20)
ap.add_argument("--until", help="stop 2 s after this file appears")
a = ap.parse_args()

c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "hops-%d" % time.time_ns(),
              "enable.auto.commit": False, "auto.offset.reset": "latest"})
parts = []
# the identity request and answer too, when the stack resolves submits
for t in ("sagewai.runs", "sagewai.steps", "sagewai.steps.worker", "sagewai.steps.sandbox",
          "sagewai.identity", "sagewai.identity.replies"):
    md = c.list_topics(t, timeout=10).topics.get(t)
    if md is None or md.error is not None:
        continue
    parts += [TopicPartition(t, p, OFFSET_END) for p in md.partitions]
c.assign(parts)
msgs = []
end = time.time() + a.seconds
import os
while time.time() < end:
    if a.until and os.path.exists(a.until):
        end = min(end, time.time() + 2)
        a.until = None
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    msgs.append((m.timestamp()[1], m.value()))
c.close()
if not msgs:
    sys.exit("hops: no events")
inp = "".join(base64.b64encode(v).decode() + "\n" for _, v in msgs)
out = subprocess.run([a.event, "decode"], input=inp, capture_output=True, text=True).stdout
runs = {}
for (ts_ms, _), line in zip(msgs, out.splitlines()):
    e = json.loads(line)
    h = e["header"]
    t = h["time"]
    if isinstance(t, str):  # RFC 3339 with microseconds
        from datetime import datetime
        t = datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1e6
    runs.setdefault(h["run_id"], {})[e["type"]] = (t, ts_ms)


need = ["run.submitted", "step.dispatched", "step.finished", "run.finished"]
hops = {}
for r in runs.values():
    if not all(k in r for k in need):
        continue
    # a step done within the worker's SAGEWAI_WORKER_STARTED_AFTER_MS has no
    # step.started: its hop is dispatched -> finished
    chain = need[:2] + (["step.started"] if "step.started" in r else []) + need[2:]
    for x, y in zip(chain, chain[1:]):
        hops.setdefault(x + " -> " + y, []).append((r[y][0] - r[x][0]) / 1000.0)
    hops.setdefault("total submitted -> run.finished", []).append(
        (r["run.finished"][0] - r["run.submitted"][0]) / 1000.0)
    for k in chain:
        hops.setdefault("composed -> produced: " + k, []).append(r[k][1] - r[k][0] / 1000.0)
    idc = ["identity.resolve_requested", "identity.resolved", "run.submitted"]
    if all(k in r for k in idc):
        for x, y in zip(idc, idc[1:]):
            hops.setdefault(x + " -> " + y, []).append((r[y][0] - r[x][0]) / 1000.0)
        hops.setdefault("total resolve_requested -> run.finished", []).append(
            (r["run.finished"][0] - r[idc[0]][0]) / 1000.0)
for k, v in hops.items():
    v.sort()
    print(json.dumps({"bench": "hops", "hop": k, "p50_ms": round(statistics.median(v), 3),
                      "p90_ms": round(v[int(0.9 * (len(v) - 1))], 3), "runs": len(v)}))
