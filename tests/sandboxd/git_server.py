#!/usr/bin/env python3
"""A git smart-HTTP server for sandboxd's artifact tests: git http-backend
(Debian git) behind a token check, as a hosted git service does it.

    git_server.py ROOT TOKENS LOG [--public-read]

Serves the repositories under ROOT on 127.0.0.1, a port of the kernel's
choosing, printed on stdout as "port N" once listening. Every request needs
Authorization: Basic (the password is the token, any user name) or Bearer;
with --public-read, fetches and clones (git-upload-pack) need none, as for a
public repository on a hosted service, and pushes still do.
TOKENS is read on every request: lines "good TOKEN" or "revoked TOKEN".
  no credentials      401 + WWW-Authenticate (git then asks its helper)
  unknown token       401 "bad credentials: this token is not known here"
  revoked token       403 "token revoked: ask the owner for a new one"
Each request line and whether it carried credentials is appended to LOG
(never the credentials), so a test can check that the token never travelled
in a URL.
"""
import base64
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, TOKENS, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
PUBLIC_READ = sys.argv[4:] == ["--public-read"]
if sys.argv[4:] and not PUBLIC_READ:
    sys.exit("usage: git_server.py ROOT TOKENS LOG [--public-read]")
BACKEND = "/usr/lib/git-core/git-http-backend"


def tokens():
    out = {}
    with open(TOKENS) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out[parts[1]] = parts[0]
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def answer(self, code, text, auth=False):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if auth:
            self.send_header("WWW-Authenticate", 'Basic realm="sagewai-test"')
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        auth = self.headers.get("Authorization")
        with open(LOG, "a") as log:
            log.write("%s %s auth=%s\n" % (self.command, self.path, "yes" if auth else "no"))
        token = None
        if auth and auth.startswith("Basic "):
            try:
                token = base64.b64decode(auth[6:]).decode().split(":", 1)[1]
            except Exception:
                token = ""
        elif auth and auth.startswith("Bearer "):
            token = auth[7:]
        path, _, query = self.path.partition("?")
        reading = path.endswith("/git-upload-pack") or (
            path.endswith("/info/refs") and query == "service=git-upload-pack")
        if token is None and not (PUBLIC_READ and reading):
            return self.answer(401, "authentication required\n", auth=True)
        if token is not None:
            state = tokens().get(token)
            if state is None:
                return self.answer(401, "bad credentials: this token is not known here\n",
                                   auth=True)
            if state != "good":
                return self.answer(403, "token revoked: ask the owner for a new one\n")
        data = self.body()
        env = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(data)),
            "REMOTE_USER": "pusher",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run([BACKEND], input=data, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        if not _:
            head, _, rest = out.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    do_GET = handle_any
    do_POST = handle_any


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("port %d" % server.server_address[1], flush=True)
server.serve_forever()
