#!/usr/bin/env python3
"""A Sagewai event consumer outside the C code: a per-run summary.

It subscribes to the sagewai topics (or any topics given, such as the target
of `sagewai replay publish`), decodes every event from the .avsc files alone
and keeps, per run: the events per type, the first and last event time, and
the run's final state. Nothing here comes from Sagewai's own code: the
messages are Avro single-object encoding,

    C3 01 | CRC-64-AVRO fingerprint of the writer schema's Parsing
    Canonical Form (8 bytes, little-endian) | Avro binary body

so any Avro library decodes them once it has the schemas. fastavro computes
the fingerprints and decodes; confluent-kafka reads Kafka.

Events are deduplicated by header.event_id, as every Sagewai consumer does
(delivery is at least once, and a replay re-publishes events with their ids
kept): a repeat is counted, not summed. Messages re-published by
`sagewai replay publish --mark` carry the header
sagewai.replay = "ID/SEQ TOPIC/PARTITION/OFFSET" (SEQ: their place in the audit
log); the consumer checks that these rise within each key (order kept per run).

Usage:
    run_summary.py [--bootstrap SERVERS] [--topics T,...] [--from-beginning]
                   [--group G] [--run ID] [--idle SECONDS] [--max-seconds S]
                   [--schemas DIR] [--json]

It runs until interrupted (SIGINT/SIGTERM), or --idle seconds pass with no
message once every assigned partition was read to its end, or --max-seconds;
then it prints the summary: a table, or one JSON object with --json.
Exit status 0; 1 when a message did not decode (each is reported on stderr);
2 on bad usage or when Kafka cannot be reached.
"""
import argparse
import collections
import datetime
import glob
import io
import json
import os
import signal
import sys
import time
import uuid

try:
    import fastavro
    from confluent_kafka import Consumer, KafkaError, KafkaException
    from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form
except ImportError as e:  # pragma: no cover
    print("run_summary: %s (tools/setup installs fastavro and confluent-kafka)" % e,
          file=sys.stderr)
    sys.exit(2)

MAGIC = b"\xc3\x01"
# sealed envelopes are for the receiving sandbox host alone (the audit log
# does not store them either); dead letters are the messages that are no
# events (read them with --topics sagewai.deadletter)
EXCLUDED = {"sagewai.identity.sealed", "sagewai.deadletter"}
REPLAY_HDR = "sagewai.replay"  # "ID/SEQ TOPIC/PARTITION/OFFSET"
HERE = os.path.dirname(os.path.abspath(__file__))


class Decoder:
    """Writer schemas by fingerprint (the current .avsc files and the older
    versions in history/), each resolved to the current reader of its type."""

    def __init__(self, schema_dir):
        self.writers = {}  # fingerprint bytes -> (type, writer schema, reader schema)
        readers = {}
        named = {}
        with open(os.path.join(schema_dir, "sagewai.Header.avsc")) as f:
            parse_schema(json.load(f), named_schemas=named)
        for path in sorted(glob.glob(os.path.join(schema_dir, "*.avsc"))):
            if os.path.basename(path) == "sagewai.Header.avsc":
                continue
            with open(path) as f:
                etype = json.load(f)["sagewai.type"]
            readers[etype] = load_schema(path)
            self._add(etype, readers[etype], readers[etype])
        for path in sorted(glob.glob(os.path.join(schema_dir, "history", "*.avsc"))):
            with open(path) as f:
                raw = json.load(f)
            etype = raw["sagewai.type"]
            if etype not in readers:
                continue
            writer = parse_schema(raw, named_schemas=dict(named), expand=True)
            self._add(etype, writer, readers[etype])
        if not readers:
            raise ValueError("no schemas in %s" % schema_dir)

    def _add(self, etype, writer, reader):
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(writer), "CRC-64-AVRO"))
        self.writers[fp] = (etype, writer, reader)

    def decode(self, msg):
        """The event as a dict; ValueError with the reason if it is none."""
        if msg is None or len(msg) < 10 or msg[:2] != MAGIC:
            raise ValueError("not Avro single-object encoding (bad magic)")
        w = self.writers.get(bytes(msg[2:10]))
        if w is None:
            raise ValueError("unknown schema fingerprint %s" % msg[2:10].hex())
        etype, writer, reader = w
        bio = io.BytesIO(msg[10:])
        try:
            ev = fastavro.schemaless_reader(bio, writer, reader)
        except Exception as e:  # noqa: BLE001  (fastavro raises many kinds)
            raise ValueError("body does not match %s: %s" % (etype, e)) from None
        if bio.tell() != len(msg) - 10:
            raise ValueError("%d trailing bytes after the %s body" %
                             (len(msg) - 10 - bio.tell(), etype))
        if ev["header"]["type"] != etype:
            raise ValueError("header.type %r in a %s message" % (ev["header"]["type"], etype))
        return ev


def micros(v):
    """header.time as microseconds (fastavro gives a datetime)."""
    if isinstance(v, datetime.datetime):
        d = v - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (d.days * 86400 + d.seconds) * 10**6 + d.microseconds
    return int(v)


def iso(us):
    return datetime.datetime.fromtimestamp(us / 1e6, tz=datetime.timezone.utc).isoformat(
        timespec="microseconds").replace("+00:00", "Z")


# the state a run is in after each run event
RUN_STATE = {"run.submitted": "pending", "run.started": "running",
             "run.cancel_requested": "cancelling"}


class Summary:
    def __init__(self):
        self.runs = {}
        self.seen = set()
        self.messages = 0
        self.duplicates = 0
        self.undecodable = collections.Counter()  # reason -> count
        self.last_replay_seq = {}  # key -> last seq in sagewai.replay
        self.replay_order_errors = 0
        self.replayed = 0

    def run(self, rid):
        r = self.runs.get(rid)
        if r is None:
            r = self.runs[rid] = {"events": 0, "types": collections.Counter(),
                                  "first_us": None, "last_us": None, "state": "unknown"}
        return r

    def add(self, key, headers, ev):
        self.messages += 1
        h = ev["header"]
        eid = str(h["event_id"])  # fastavro may give a uuid.UUID
        job = headers.get(REPLAY_HDR)
        if job is not None:
            self.replayed += 1
            k = key or b""
            try:
                n = int(job.split(" ", 1)[0].rsplit("/", 1)[1])
            except (IndexError, ValueError):
                n = -1
            if n <= self.last_replay_seq.get(k, 0):
                self.replay_order_errors += 1
            self.last_replay_seq[k] = n
        if eid in self.seen:
            self.duplicates += 1
            return
        self.seen.add(eid)
        r = self.run(h["run_id"])
        t = micros(h["time"])
        r["events"] += 1
        r["types"][h["type"]] += 1
        r["first_us"] = t if r["first_us"] is None else min(r["first_us"], t)
        r["last_us"] = t if r["last_us"] is None else max(r["last_us"], t)
        if h["type"] == "run.finished":
            r["state"] = str(ev["status"]).lower()
        elif h["type"] in RUN_STATE and r["state"] not in ("succeeded", "failed", "cancelled"):
            r["state"] = RUN_STATE[h["type"]]

    def as_json(self):
        runs = {}
        for rid, r in sorted(self.runs.items()):
            runs[rid] = {"events": r["events"], "types": dict(sorted(r["types"].items())),
                         "first": iso(r["first_us"]), "last": iso(r["last_us"]),
                         "first_us": r["first_us"], "last_us": r["last_us"],
                         "state": r["state"]}
        return {"messages": self.messages, "events": len(self.seen),
                "duplicates": self.duplicates, "replayed": self.replayed,
                "replay_order_errors": self.replay_order_errors,
                "undecodable": sum(self.undecodable.values()), "runs": runs}

    def print_table(self, out):
        rows = [("RUN", "STATE", "EVENTS", "FIRST", "LAST", "TYPES")]
        for rid, r in sorted(self.runs.items()):
            rows.append((rid or "(none)", r["state"], str(r["events"]), iso(r["first_us"]),
                         iso(r["last_us"]),
                         " ".join("%s=%d" % kv for kv in sorted(r["types"].items()))))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[5] + "\n")
        out.write("%d messages, %d events, %d duplicates dropped, %d undecodable\n" % (
            self.messages, len(self.seen), self.duplicates, sum(self.undecodable.values())))


def topics_of(consumer, wanted):
    """The topics to read: those named, or every sagewai.* topic but the
    excluded ones."""
    if wanted:
        return wanted
    md = consumer.list_topics(timeout=10)
    return sorted(t for t in md.topics if t.startswith("sagewai.") and t not in EXCLUDED)


def main():
    ap = argparse.ArgumentParser(description="per-run summary of Sagewai events")
    ap.add_argument("--bootstrap", default=os.environ.get("SAGEWAI_KAFKA_BOOTSTRAP"))
    ap.add_argument("--topics", default="",
                    help="comma-separated topics (default: every sagewai.* topic but "
                         "sagewai.identity.sealed and sagewai.deadletter)")
    ap.add_argument("--group", default=None, help="consumer group (default: a fresh one)")
    ap.add_argument("--from-beginning", action="store_true",
                    help="a new group starts at the oldest message, not the newest")
    ap.add_argument("--run", default=None, help="only this run")
    ap.add_argument("--idle", type=float, default=0,
                    help="stop after this many seconds without a message, once caught up")
    ap.add_argument("--max-seconds", type=float, default=0)
    ap.add_argument("--schemas", default=os.path.join(HERE, "..", "..", "schemas"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not a.bootstrap:
        ap.error("no Kafka: --bootstrap or SAGEWAI_KAFKA_BOOTSTRAP")
    try:
        dec = Decoder(a.schemas)
    except (OSError, ValueError, KeyError) as e:
        print("run_summary: schemas: %s" % e, file=sys.stderr)
        return 2

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group or "sagewai-run-summary-%s" % uuid.uuid4(),
        "auto.offset.reset": "earliest" if a.from_beginning else "latest",
        "enable.auto.commit": a.group is not None,
        "enable.partition.eof": True,
        "log_level": 3,
    })
    wanted = [t for t in a.topics.split(",") if t]
    try:
        topics = topics_of(consumer, wanted)
    except KafkaException as e:
        print("run_summary: cannot reach Kafka at %s: %s" % (a.bootstrap, e), file=sys.stderr)
        return 2
    if not topics:
        print("run_summary: no topics to read", file=sys.stderr)
        return 2
    at_end = set()
    assigned = set()

    def on_assign(c, parts):
        for p in parts:
            assigned.add((p.topic, p.partition))
            at_end.discard((p.topic, p.partition))

    def on_revoke(c, parts):
        for p in parts:
            assigned.discard((p.topic, p.partition))

    consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)
    summ = Summary()
    run_key = a.run.encode() if a.run else None
    start = last = time.monotonic()
    rc = 0
    try:
        while not stop:
            now = time.monotonic()
            if a.max_seconds and now - start > a.max_seconds:
                break
            caught_up = assigned and assigned <= at_end
            if a.idle and caught_up and now - last > a.idle:
                break
            m = consumer.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add((m.topic(), m.partition()))
                    continue
                print("run_summary: %s" % m.error(), file=sys.stderr)
                continue
            last = time.monotonic()
            at_end.discard((m.topic(), m.partition()))
            key = m.key()
            if run_key is not None and key is not None and key != run_key:
                continue  # the key is the run id: no need to decode
            try:
                ev = dec.decode(m.value())
            except ValueError as e:
                summ.undecodable[str(e)] += 1
                print("run_summary: %s [%d] offset %d: %s" % (
                    m.topic(), m.partition(), m.offset(), e), file=sys.stderr)
                rc = 1
                continue
            if a.run is not None and ev["header"]["run_id"] != a.run:
                continue
            headers = {k: (v.decode("utf-8", "replace") if v is not None else None)
                       for k, v in (m.headers() or [])}
            summ.add(key, headers, ev)
    finally:
        consumer.close()
    if a.json:
        json.dump(summ.as_json(), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        summ.print_table(sys.stdout)
    return rc


if __name__ == "__main__":
    sys.exit(main())
