#!/usr/bin/python3
# A fake tool runner for the escape suite (sandbox_test hostile): it is
# started by the bwrap backend in place of sagewai-toolrunner, with the
# control socket on fd 3, and misbehaves the way $HOSTILE_MODE says. The
# host side must end the sandbox with a protocol error (or a deadline) and
# neither crash nor block.
import os
import socket
import struct
import time

s = socket.socket(fileno=3)
# Without HOSTILE_MODE (as under sagewai-sandboxd, which fixes the sandbox's
# environment), the runner says READY like a real one and takes its mode
# from the first EXEC's argv[0].
mode = os.environ.get("HOSTILE_MODE")


def frame(t, payload=b"", flags=0, length=None):
    if length is None:
        length = len(payload)
    return struct.pack("<BBHI", t, flags, 0, length) + payload


READY = frame(9, b'{"version":2,"pid":1}')
STDOUT, EXIT, EXEC = 2, 4, 1


exec_seen = False


def ready_then_exec():
    if not exec_seen:
        s.send(READY)
        s.recv(65536)  # the EXEC


def exec_argv0(payload):
    # EXEC (libs/sandbox/sw_frame.h): argc, envc, flags, timeout_ms (u64),
    # then fields (len u32 | bytes): cwd, argv[0], ...
    (cwd_len,) = struct.unpack_from("<I", payload, 20)
    at = 24 + cwd_len
    (n,) = struct.unpack_from("<I", payload, at)
    return payload[at + 4:at + 4 + n].decode()


if mode is None:
    s.send(READY)
    rec = s.recv(65536)
    mode = exec_argv0(rec[8:])
    exec_seen = True


if mode == "garbage":
    s.send(b"\xde\xad\xbe\xef" * 64)
elif mode == "never_ready":
    pass
elif mode == "deaf":
    # Ready, then ignores the socket (and its EOF) for good.
    s.send(READY)
elif mode == "twice_ready":
    s.send(READY + READY)
elif mode == "early_exit":
    s.send(READY + frame(EXIT, b'{"status":0}'))
elif mode == "huge":
    ready_then_exec()
    s.send(frame(STDOUT, length=0xFFFFFFFF))
elif mode == "unknown":
    ready_then_exec()
    s.send(frame(200, b"x"))
elif mode == "flags":
    ready_then_exec()
    s.send(frame(STDOUT, b"x", flags=1))
elif mode == "exec_frame":
    ready_then_exec()
    s.send(frame(EXEC, b"{}"))
elif mode == "bad_json":
    ready_then_exec()
    s.send(frame(EXIT, b'{"status":"zero"}'))
elif mode == "bigrecord":
    ready_then_exec()
    s.send(frame(STDOUT, b"a" * 100000))
elif mode == "midframe":
    ready_then_exec()
    s.send(frame(STDOUT, length=100) + b"0123456789")
    os._exit(0)
elif mode == "silent":
    ready_then_exec()
elif mode == "flood":
    ready_then_exec()
    chunk = frame(STDOUT, b"x" * 60000)
    while True:
        s.send(chunk)
time.sleep(3600)
