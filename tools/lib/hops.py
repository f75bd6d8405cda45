#!/usr/bin/env python3
"""Per-hop times of one run, from its audit trail (the events' header times).

    sagewai --json audit run RUN | python3 tools/lib/hops.py

For each step, in dispatch order: dispatch -> start (the executor consumed
the dispatch), start -> finish (the step ran), dispatch -> finish, finish ->
next dispatch (the scheduler consumed the outcome and dispatched the next
step); then submit -> first dispatch and submit -> finished. A quick step of
the worker has no start (SAGEWAI_WORKER_STARTED_AFTER_MS): "-". Times are
those the producing services stamped, so a hop includes the broker's
delivery and the consumer's fetch. The first attempt's dispatch and start
and the last finish count.
"""
import json
import sys


def main():
    d = json.load(sys.stdin)
    steps = {}  # name -> {type: time_us}
    order = []
    run = {}
    for e in d.get("events", []):
        ev = e.get("event")
        if not isinstance(ev, dict):
            continue
        h = ev.get("header", {})
        t, typ = h.get("time"), h.get("type", "")
        if not isinstance(t, int):
            continue
        if typ.startswith("run."):
            run.setdefault(typ, t)
            continue
        if typ not in ("step.dispatched", "step.started", "step.finished"):
            continue
        name = ev.get("step") or (h.get("step_id") or "").split("/")[1:2]
        name = name[0] if isinstance(name, list) and name else name or "?"
        s = steps.setdefault(name, {})
        if typ == "step.finished" or typ not in s:
            s[typ] = t
        if typ == "step.dispatched" and name not in order:
            order.append(name)
    order.sort(key=lambda n: steps[n].get("step.dispatched", 0))

    def ms(a, b):
        return "%8.1f ms" % ((b - a) / 1000.0) if a is not None and b is not None else "%11s" % "-"

    print("%-12s %13s %13s %15s %13s" % ("STEP", "dispatch>start", "start>finish",
                                          "dispatch>finish", "finish>next"))
    for i, n in enumerate(order):
        s = steps[n]
        nxt = steps[order[i + 1]].get("step.dispatched") if i + 1 < len(order) else run.get("run.finished")
        print("%-12s %14s %13s %15s %13s" % (n, ms(s.get("step.dispatched"), s.get("step.started")),
                                             ms(s.get("step.started"), s.get("step.finished")),
                                             ms(s.get("step.dispatched"), s.get("step.finished")),
                                             ms(s.get("step.finished"), nxt)))
    sub = run.get("run.submitted")
    first = steps[order[0]].get("step.dispatched") if order else None
    print("submit > first dispatch %s" % ms(sub, first).strip())
    print("submit > finished       %s" % ms(sub, run.get("run.finished")).strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
