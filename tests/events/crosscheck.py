#!/usr/bin/env python3
"""Cross-check sw_events against an independent Avro implementation.

fastavro reads only the .avsc files (load_schema finds sagewai.Header in
its sibling file) and must agree with sagewai-event on:

  * the Parsing Canonical Form and CRC-64-AVRO fingerprint of every schema;
  * messages sagewai-event encodes (fastavro decodes them);
  * messages fastavro writes (sagewai-event decodes them, base64 and --raw);
  * evolution: fastavro writes with a newer (v2) or older (v0) writer
    schema, sagewai-event decodes with --writer, and the result equals
    fastavro's own resolution of that writer to our reader.

Exits 0 with a closing "N passed, 0 failed" line, or 1 naming each failure.
"""
import argparse
import base64
import datetime
import io
import json
import os
import random
import struct
import subprocess
import sys
import uuid

FAILS = []
PASSES = [0]


def check(cond, what):
    if cond:
        PASSES[0] += 1
    else:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)


def ensure_fastavro():
    try:
        import fastavro  # noqa: F401
        return
    except ImportError:
        pass
    for extra in ([], ["--break-system-packages"]):
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "fastavro"] + extra,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            break
    try:
        import fastavro  # noqa: F401
    except ImportError:
        print("crosscheck: the Python module fastavro is missing and could not be "
              "installed (tools/setup installs it)", file=sys.stderr)
        sys.exit(1)


ensure_fastavro()
import fastavro  # noqa: E402
from fastavro.schema import (fingerprint, load_schema, parse_schema,  # noqa: E402
                             to_parsing_canonical_form)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def run(tool, args, data):
    return subprocess.run([tool] + args, input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)


# ---- values: our JSON form <-> fastavro's Python form, by schema ----------

def branches(s):
    return s if isinstance(s, list) else None


def kind(s):
    """The Avro type of a parsed schema node, and its logicalType."""
    if isinstance(s, str):
        return s, None
    if isinstance(s, list):
        return "union", None
    return s["type"], s.get("logicalType")


def sample(s, rnd, named):
    t, lt = kind(s)
    if t in named:
        return sample(named[t], rnd, named)
    if t == "union":
        return sample(rnd.choice(s), rnd, named)
    if t == "record":
        named[s["name"]] = s
        return {f["name"]: sample(f["type"], rnd, named) for f in s["fields"]}
    if t == "enum":
        named[s["name"]] = s
        return rnd.choice(s["symbols"])
    if t == "array":
        return [sample(s["items"], rnd, named) for _ in range(rnd.randint(0, 3))]
    if t == "map":
        return {"k%d" % i: sample(s["values"], rnd, named) for i in range(rnd.randint(0, 3))}
    if t == "string":
        if lt == "uuid":
            return str(uuid.UUID(int=rnd.getrandbits(128)))
        alphabet = "abcXYZ 09\"\\/\n\t\u00e9\u4e16\U0001f600{}"
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
    if t == "bytes":
        return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 8))).hex()
    if t == "int":
        return rnd.choice([0, -1, 1, 2**31 - 1, -2**31, rnd.randint(-2**31, 2**31 - 1)])
    if t == "long":
        if lt == "timestamp-micros":
            return rnd.randint(946684800 * 10**6, 4102444800 * 10**6)
        return rnd.choice([0, -1, 2**63 - 1, -2**63, rnd.randint(-2**63, 2**63 - 1)])
    if t == "boolean":
        return rnd.random() < 0.5
    if t == "null":
        return None
    raise ValueError("no sample for %r" % (s,))


def to_py(s, v, named):
    """Our JSON form -> what fastavro's writer takes."""
    t, _ = kind(s)
    if t in named:
        return to_py(named[t], v, named)
    if t == "union":
        for b in s:
            if matches(b, v, named):
                return to_py(b, v, named)
        raise ValueError("no branch for %r" % (v,))
    if t == "record":
        named[s["name"]] = s
        return {f["name"]: to_py(f["type"], v[f["name"]], named) for f in s["fields"]
                if f["name"] in v}
    if t == "enum":
        named[s["name"]] = s
    if t == "array":
        return [to_py(s["items"], x, named) for x in v]
    if t == "map":
        return {k: to_py(s["values"], x, named) for k, x in v.items()}
    if t == "bytes":
        return bytes.fromhex(v)
    return v


def matches(s, v, named):
    t, _ = kind(s)
    if t in named:
        t = kind(named[t])[0]
    return {"null": v is None, "string": isinstance(v, str), "bytes": isinstance(v, str),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "long": isinstance(v, int) and not isinstance(v, bool),
            "boolean": isinstance(v, bool), "record": isinstance(v, dict),
            "map": isinstance(v, dict), "array": isinstance(v, list),
            "enum": isinstance(v, str)}.get(t, False)


def from_py(v):
    """What fastavro's reader returns -> our JSON form."""
    if isinstance(v, dict):
        return {k: from_py(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_py(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, datetime.datetime):
        d = v - EPOCH
        return (d.days * 86400 + d.seconds) * 10**6 + d.microseconds
    return v


# ---- messages -------------------------------------------------------------

def fp_bytes(parsed):
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def single_object(parsed, record):
    bio = io.BytesIO()
    fastavro.schemaless_writer(bio, parsed, record)
    return b"\xc3\x01" + fp_bytes(parsed) + bio.getvalue()


def read_single_object(parsed, msg, reader=None):
    assert msg[:2] == b"\xc3\x01", "magic"
    bio = io.BytesIO(msg[10:])
    rec = fastavro.schemaless_reader(bio, parsed, reader)
    assert bio.tell() == len(msg) - 10, "body not consumed"
    return rec


def load_dir(schemas):
    out = {}
    for name in sorted(os.listdir(schemas)):
        if not name.endswith(".avsc") or name == "sagewai.Header.avsc":
            continue
        path = os.path.join(schemas, name)
        with open(path) as f:
            raw = json.load(f)
        out[raw["sagewai.type"]] = (path, load_schema(path))
    return out


def header_named(schemas):
    named = {}
    with open(os.path.join(schemas, "sagewai.Header.avsc")) as f:
        parse_schema(json.load(f), named_schemas=named)
    return named


def sample_event(parsed, etype, rnd):
    ev = sample(parsed, rnd, {})
    ev["header"]["type"] = etype
    return ev


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--schemas", required=True)
    ap.add_argument("--tests", required=True)
    a = ap.parse_args()
    rnd = random.Random(20240701)
    events = load_dir(a.schemas)
    check(len(events) >= 8, "at least the 8 event types of the contract")

    # 1. canonical forms and fingerprints
    r = run(a.tool, ["types"], b"")
    check(r.returncode == 0, "sagewai-event types runs")
    listed = {}
    for line in r.stdout.decode().splitlines():
        t, fp, full = line.split()
        listed[t] = (int(fp, 16), full)
    check(set(listed) == set(events), "types listed %s == files %s" % (sorted(listed),
                                                                       sorted(events)))
    for t, (path, parsed) in events.items():
        pcf = to_parsing_canonical_form(parsed)
        ours = run(a.tool, ["schema", "--canonical", t], b"").stdout.decode().strip()
        check(ours == pcf, "%s canonical form\n ours %s\n fastavro %s" % (t, ours, pcf))
        if t in listed:
            check(struct.pack("<Q", listed[t][0]) == fp_bytes(parsed),
                  "%s fingerprint %016x vs fastavro %s" % (t, listed[t][0],
                                                         fp_bytes(parsed).hex()))
            check(listed[t][1] == parsed["name"], "%s full name" % t)

    # 2. we encode, fastavro decodes
    for t, (path, parsed) in events.items():
        evs = [sample_event(parsed, t, rnd) for _ in range(40)]
        data = "".join(json.dumps(e) + "\n" for e in evs).encode()
        r = run(a.tool, ["encode", t], data)
        check(r.returncode == 0, "%s encode: %s" % (t, r.stderr.decode()))
        lines = r.stdout.decode().splitlines()
        check(len(lines) == len(evs), "%s: %d messages for %d events" % (t, len(lines),
                                                                       len(evs)))
        for ev, line in zip(evs, lines):
            msg = base64.b64decode(line, validate=True)
            check(msg[2:10] == fp_bytes(parsed), "%s: fingerprint in message" % t)
            try:
                got = from_py(read_single_object(parsed, msg))
            except Exception as e:  # noqa: BLE001
                check(False, "%s: fastavro cannot read our message: %s" % (t, e))
                continue
            check(got == ev, "%s: fastavro read\n %s\nwe wrote\n %s" % (t, got, ev))

    # 3. fastavro encodes, we decode (base64 lines, then --raw)
    for t, (path, parsed) in events.items():
        evs = [sample_event(parsed, t, rnd) for _ in range(40)]
        msgs = [single_object(parsed, to_py(parsed, e, {})) for e in evs]
        b64 = "".join(base64.b64encode(m).decode() + "\n" for m in msgs).encode()
        raw = b"".join(struct.pack(">I", len(m)) + m for m in msgs)
        for mode, data in (([], b64), (["--raw"], raw)):
            r = run(a.tool, ["decode"] + mode, data)
            check(r.returncode == 0, "%s decode %s: %s" % (t, mode, r.stderr.decode()))
            got = [json.loads(x) for x in r.stdout.decode().splitlines()]
            check(len(got) == len(evs), "%s decode %s: %d of %d" % (t, mode, len(got),
                                                                   len(evs)))
            for g, e in zip(got, evs):
                check(g == dict({"type": t}, **e), "%s decode %s:\n got %s\nwant %s" % (
                    t, mode, g, e))

    # 4. a bad line is reported with its number; the good ones still decode
    t = "run.started"
    parsed = events[t][1]
    good = base64.b64encode(single_object(parsed, to_py(parsed, sample_event(parsed, t, rnd),
                                                         {}))).decode()
    bad_fp = base64.b64encode(b"\xc3\x01" + b"\x00" * 8 + b"\x00").decode()
    data = "\n".join([good, "not base64!", good[:-8], bad_fp, "", good]) + "\n"
    r = run(a.tool, ["decode"], data.encode())
    err = r.stderr.decode()
    check(r.returncode == 1, "decode exits 1 after bad lines")
    check(len(r.stdout.decode().splitlines()) == 2, "the two good lines decode")
    for n in (2, 3, 4, 5):
        check("line %d:" % n in err, "line %d reported: %s" % (n, err))
    check("line 1:" not in err and "line 6:" not in err, "good lines not reported")
    check("unknown schema fingerprint" in err, "reason given: %s" % err)

    # 5. encode fills a missing header; a partial one must name its run_id
    r = run(a.tool, ["encode"], b'{"type":"run.cancel_requested","reason":"r"}\n'
            b'{"type":"run.cancel_requested","header":{"tenant":"t"}}\n')
    check(r.returncode == 1, "encode exits 1 after a bad line")
    out = r.stdout.decode().splitlines()
    check(len(out) == 1 and "line 2: header.run_id" in r.stderr.decode(),
          "partial header without run_id refused: %s" % r.stderr.decode())
    if out:
        parsed = events["run.cancel_requested"][1]
        h = from_py(read_single_object(parsed, base64.b64decode(out[0])))["header"]
        check(h["producer"] == "sagewai-event" and h["run_id"] == "" and
              h["type"] == "run.cancel_requested" and uuid.UUID(h["event_id"]).version == 7,
              "filled header %s" % h)

    # 6. evolution, judged by fastavro's own resolution
    named = header_named(a.schemas)
    cases = [("run.finished", "run.finished.v2.avsc"), ("run.submitted", "run.submitted.v0.avsc")]
    for t, fname in cases:
        wpath = os.path.join(a.tests, fname)
        with open(wpath) as f:
            # expand=True inlines sagewai.Header, as load_schema does for a
            # file beside sagewai.Header.avsc
            wparsed = parse_schema(json.load(f), named_schemas=dict(named), expand=True)
        rparsed = events[t][1]
        evs = [sample_event(wparsed, t, rnd) for _ in range(60)]
        msgs = [single_object(wparsed, to_py(wparsed, e, {})) for e in evs]
        b64 = "".join(base64.b64encode(m).decode() + "\n" for m in msgs).encode()
        r = run(a.tool, ["decode", "--writer", wpath], b64)
        out = r.stdout.decode().splitlines()
        errs = r.stderr.decode().splitlines()
        k = 0
        nerr = 0
        for i, m in enumerate(msgs):
            try:
                want = from_py(read_single_object(wparsed, m, rparsed))
            except Exception:  # noqa: BLE001  (e.g. an enum symbol the reader lacks)
                want = None
            if want is None:
                nerr += 1
                check(any(e.startswith("sagewai-event: line %d:" % (i + 1)) for e in errs),
                      "%s: line %d, unreadable by the old reader, is reported" % (fname, i + 1))
                continue
            got = json.loads(out[k]) if k < len(out) else None
            k += 1
            check(got == dict({"type": t}, **want), "%s line %d:\n got %s\nwant %s" % (
                fname, i + 1, got, want))
        check(k == len(out), "%s: no extra output" % fname)
        check(r.returncode == (1 if nerr else 0), "%s: exit status" % fname)
        if t == "run.finished":
            check(nerr > 0, "v2 samples include a status the old reader lacks")

    print("%d passed, %d failed" % (PASSES[0], len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
