#!/usr/bin/env python3
"""Drive the approvals page in a real headless Chromium over the DevTools
protocol (tests/policy/policy_test.c, scenario page).

Starts Debian's chromium with a private profile and a DevTools port it
picks itself (read back from DevToolsActivePort), opens the page, types the
token into the form, waits until the pending request named --expect shows
(with its time left), saves a screenshot, clicks its Approve button with
real mouse events and waits until the page shows it approved. Exits 0 on
success, 1 with a reason otherwise. Needs chromium and python3-websocket
(tools/setup installs both)."""

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

try:
    import websocket  # websocket-client (PyPI)
except ImportError:
    sys.exit("page.py: the websocket module is missing (pip install websocket-client; tools/setup does)")


def die(msg):
    print("page.py: " + msg, file=sys.stderr)
    sys.exit(1)


class Tab:
    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    die("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            die("script failed: %s: %s" % (expr, r["exceptionDetails"]))
        return r.get("result", {}).get("value")

    def wait(self, expr, what, limit=30):
        until = time.time() + limit
        while time.time() < until:
            if self.js(expr):
                return
            time.sleep(0.2)
        die("timed out waiting for " + what + "; page text: " +
            str(self.js("document.body ? document.body.innerText : ''"))[:2000])

    def click(self, selector):
        rect = self.js("(() => { const e = document.querySelector(%s); if (!e) return null;"
                       " const r = e.getBoundingClientRect();"
                       " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
                       % json.dumps(selector))
        if not rect:
            die("nothing to click at " + selector)
        x, y = rect
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--expect", required=True, help="the credential name that must show")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--profile", required=True, help="a fresh directory for the profile")
    a = ap.parse_args()

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        die("chromium is missing (apt-get install chromium; tools/setup does)")
    with open(a.token_file) as f:
        token = f.read().strip()
    shutil.rmtree(a.profile, ignore_errors=True)
    os.makedirs(a.profile, mode=0o700)
    log = open(os.path.join(a.profile, "..", "chromium.log"), "w")
    # --no-sandbox: the test runs as root, where Chromium's sandbox refuses
    # to start; the page is our own and loaded from loopback only
    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         "--user-data-dir=" + a.profile, "--window-size=1400,900", "about:blank"],
        stdout=log, stderr=log, start_new_session=True)
    try:
        port_file = os.path.join(a.profile, "DevToolsActivePort")
        until = time.time() + 60
        while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
            if proc.poll() is not None or time.time() > until:
                die("chromium did not open its DevTools port (see chromium.log)")
            time.sleep(0.1)
        time.sleep(0.2)
        port = open(port_file).read().split("\n")[0].strip()
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port,
                                                   timeout=10))
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            die("no page target")
        tab = Tab(pages[0]["webSocketDebuggerUrl"])
        tab.call("Page.enable")
        tab.call("Runtime.enable")
        tab.call("Page.navigate", url=a.url)
        tab.wait("document.readyState === 'complete' && !!document.getElementById('token')",
                 "the page to load")
        # the token, typed into the form; then Connect
        tab.js("document.getElementById('token').focus()")
        tab.call("Input.insertText", text=token)
        tab.click("#connect")
        tab.wait("document.getElementById('status').textContent === 'live'", "the stream")
        expect = json.dumps(a.expect)
        row = ("Array.from(document.querySelectorAll('#pending tbody tr'))"
               ".find(tr => tr.textContent.includes(%s))" % expect)
        tab.wait("!!(%s)" % row, "the pending request to show")
        left = tab.js("(%s).querySelector('td.left').textContent" % row)
        if not left or left == "due":
            die("no time left shown: %r" % left)
        if tab.js("sessionStorage.getItem('sagewai.policy.token') === %s" % json.dumps(token)) \
                is not True:
            die("the token is not kept in sessionStorage")
        tab.screenshot(a.screenshot)
        tab.js("(%s).querySelector('input.why').value = 'approved in the browser test'" % row)
        tab.js("(%s).querySelector('button.approve').setAttribute('id', 'approve-me')" % row)
        tab.click("#approve-me")
        tab.wait("Array.from(document.querySelectorAll('#recent tbody tr'))"
                 ".some(tr => tr.textContent.includes(%s) && tr.textContent.includes('approved'))"
                 % expect, "the request to show approved")
        tab.wait("!(%s)" % row, "the request to leave the pending list")
        tab.screenshot(a.screenshot.replace(".png", "-after.png"))
        try:
            tab.call("Browser.close")
        except Exception:
            pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    print("page.py: ok")


if __name__ == "__main__":
    main()
