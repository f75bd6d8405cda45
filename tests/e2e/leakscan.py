#!/usr/bin/env python3
"""Search for secret values where they must not be (tests/e2e/identity.sh).

  leakscan.py files MARKERS PATH...   every file under each PATH (recursively)
      is searched for every marker in every spelling below; each hit is one
      line "FILE: NAME as SPELLING" on stdout; exit 1 when anything was found
  leakscan.py probe MARKERS DIR       write into DIR one file per marker holding
      every spelling, for `files` to find: the proof that the search can fail
  leakscan.py procs MARKERS SECONDS PID...
      scan the environment and the command line of every process in the trees
      of the PIDs (children through /proc/PID/task/*/children) until SECONDS
      have passed or every marker was seen inside a sandbox (a process in
      another PID namespace than this one) and three more rounds were done.
      A marker outside a sandbox is a failure ("pid P (comm): NAME in its
      environ as SPELLING"); so is a marker never seen inside one (then the
      scan could not have failed)

MARKERS is a file of "NAME VALUE" lines (the values: printable ASCII, no
space). The spellings: the value as it is, JSON-escaped, hex (lower and upper
case), base64 (standard and URL-safe: for each of the three alignments at
which the value can start inside a longer base64 text, the characters that
depend on the value's bits alone) and percent-encoded (reserved characters
only, upper and lower case hex digits, with + for space; and every byte).
"""
import base64
import os
import re
import sys
import time
import urllib.parse


def load(path):
    out = []
    for line in open(path, encoding="ascii"):
        line = line.rstrip("\n")
        if not line:
            continue
        name, value = line.split(" ", 1)
        assert len(value) >= 8 and " " not in value, name
        out.append((name, value))
    assert out, "no markers"
    return out


def b64_inner(b, k, urlsafe):
    """The characters of base64(PREFIX + b), len(PREFIX) = k, that depend on
    b's bits alone: char j covers bits 6j..6j+5 of the input."""
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    s = enc(b"\0" * k + b).decode()
    lo = -(-8 * k // 6)
    hi = 8 * (k + len(b)) // 6
    return s[lo:hi]


def spellings(value):
    b = value.encode()
    out = {"plain": value}
    out["json-escaped"] = value.replace("\\", "\\\\").replace('"', '\\"').replace("/", "\\/")
    out["hex"] = b.hex()
    out["HEX"] = b.hex().upper()
    for k in range(3):
        out["base64@%d" % k] = b64_inner(b, k, False)
        out["base64url@%d" % k] = b64_inner(b, k, True)
    q = urllib.parse.quote(value, safe="")
    out["percent"] = q
    out["percent-lower"] = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), q)
    out["percent-plus"] = urllib.parse.quote_plus(value)
    out["percent-all"] = "".join("%%%02X" % c for c in b)
    out["percent-all-lower"] = "".join("%%%02x" % c for c in b)
    # keep only distinct spellings (for a value without reserved characters
    # several coincide), each at least 8 characters
    seen, res = set(), []
    for name, s in out.items():
        if s not in seen and len(s) >= 8:
            seen.add(s)
            res.append((name, s.encode()))
    return res


def walk(paths):
    for p in paths:
        if os.path.isfile(p):
            yield p
            continue
        for d, _, files in os.walk(p):
            for f in sorted(files):
                yield os.path.join(d, f)


def cmd_files(markers, paths):
    pats = [(n, sp, s) for n, v in markers for sp, s in spellings(v)]
    hits, nfiles, nbytes = [], 0, 0
    for f in walk(paths):
        try:
            with open(f, "rb") as fh:
                data = fh.read()
        except OSError as e:
            print("cannot read %s: %s" % (f, e), file=sys.stderr)
            return 2
        nfiles += 1
        nbytes += len(data)
        for name, sp, s in pats:
            if s in data:
                hits.append("%s: %s as %s" % (f, name, sp))
    for h in hits:
        print(h)
    print("searched %d files (%d bytes) for %d markers in %d spellings: %d hits"
          % (nfiles, nbytes, len(markers), len(pats), len(hits)), file=sys.stderr)
    if nfiles == 0:
        return 2
    return 1 if hits else 0


def cmd_probe(markers, d):
    os.makedirs(d, exist_ok=True)
    for name, value in markers:
        with open(os.path.join(d, name), "wb") as fh:
            for sp, s in spellings(value):
                # each spelling inside other text, as a log line would hold it
                prefix = b"x" * (len(sp) % 3)
                fh.write(b"%s: %s%s%s\n" % (sp.encode(), prefix, s, b"."))
            # and the base64 of the value at each alignment, whole
            for k in range(3):
                fh.write(base64.b64encode(b"p" * k + value.encode()) + b"\n")
    return 0


def children(pid):
    out = []
    for t in os.listdir("/proc/%d/task" % pid) if os.path.isdir("/proc/%d/task" % pid) else []:
        try:
            out += [int(c) for c in open("/proc/%d/task/%s/children" % (pid, t)).read().split()]
        except OSError:
            pass
    return out


def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def cmd_procs(markers, seconds, roots):
    pats = [(n, sp, s) for n, v in markers for sp, s in spellings(v)]
    myns = os.readlink("/proc/self/ns/pid")
    inside, bad, read = set(), set(), set()
    deadline = time.monotonic() + seconds
    extra = 0
    while time.monotonic() < deadline:
        for root in roots:
            for pid in tree(root):
                try:
                    ns = os.readlink("/proc/%d/ns/pid" % pid)
                    comm = open("/proc/%d/comm" % pid).read().strip()
                    blobs = {"environ": open("/proc/%d/environ" % pid, "rb").read(),
                             "cmdline": open("/proc/%d/cmdline" % pid, "rb").read()}
                except OSError:
                    continue  # gone meanwhile
                read.add(pid)
                for what, data in blobs.items():
                    for name, sp, s in pats:
                        if s not in data:
                            continue
                        if ns != myns and what == "environ":
                            inside.add(name)
                        else:
                            bad.add("pid %d (%s): %s in its %s as %s" % (pid, comm, name, what, sp))
        if len(inside) == len(markers):
            extra += 1
            if extra > 3:
                break
        time.sleep(0.1)
    for b in sorted(bad):
        print(b)
    missing = [n for n, _ in markers if n not in inside]
    if missing:
        print("never seen inside a sandbox (the scan could not fail): %s" % ", ".join(missing))
    print("%d processes of %d trees read; every marker in a sandbox's environment: %s"
          % (len(read), len(roots), "yes" if not missing else "no"), file=sys.stderr)
    return 1 if bad or missing else 0


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    markers = load(argv[2])
    if argv[1] == "files":
        return cmd_files(markers, argv[3:])
    if argv[1] == "probe":
        return cmd_probe(markers, argv[3])
    if argv[1] == "procs":
        return cmd_procs(markers, float(argv[3]), [int(p) for p in argv[4:]])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
