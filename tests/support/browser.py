"""The UC Assistant in a real browser: tests/browser/driver.mjs (Node, playwright-core)
runs Debian's headless chromium on a page that uses JsSIP, and this class talks to it,
one JSON line each way per request. The page's console goes to `<workdir>/browser.log`.

    with Softphone(tmp_path) as tab:
        tab.open()
        tab.call("login", {"wss": ..., "domain": ..., "user": "1000", "password": ...})
        tab.call("incomingCall", 0, 5000)
"""
import json
import os
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent.parent
DRIVER = ROOT / "tests" / "browser" / "driver.mjs"
CHROMIUM = "/usr/bin/chromium"
PAGE_HOST = "127.0.0.50"        # where the test serves the page


def require_tools():
    """A missing tool fails the test with what to do (never a skip)."""
    missing = []
    if not shutil.which("node"):
        missing.append("node (Debian package nodejs)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    for module in ("playwright-core", "jssip", "esbuild"):
        if not (ROOT / "node_modules" / module).is_dir():
            missing.append(f"node_modules/{module} (npm ci)")
    if missing:
        pytest.fail("browser test needs " + ", ".join(missing) + ": run `make setup`",
                    pytrace=False)


class BrowserError(AssertionError):
    pass


class Softphone:
    def __init__(self, workdir, driver=DRIVER):
        require_tools()
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "browser.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["node", str(driver)], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log)
        log.close()

    def request(self, op, timeout=30, **fields):
        self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise BrowserError(f"browser driver: no answer to {op} within {timeout} s\n"
                               + self.log_tail())
        reply = json.loads(line)
        if not reply["ok"]:
            raise BrowserError(f"browser {op} failed: {reply['error']}\n" + self.log_tail())
        return reply["result"]

    def open(self):
        """Start chromium with a fresh profile and load the page."""
        profile = self.workdir / "chromium-profile"
        shutil.rmtree(profile, ignore_errors=True)
        return self.request("open", host=PAGE_HOST, profile=str(profile), timeout=60)

    def call(self, fn, *args, timeout=30):
        """window.softphone.<fn>(*args) in the page (awaited), its JSON result."""
        return self.request("call", fn=fn, args=list(args), timeout=timeout)

    def close_page(self):
        """Close the tab as a user would: no un-REGISTER, the WebSocket just goes."""
        self.request("close_page")

    def log_tail(self, lines=30):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "browser log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    def close(self):
        if self.proc.poll() is None:
            try:
                self.request("quit", timeout=15)
                self.proc.wait(10)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                pass
        # playwright closes chromium when its driver gets SIGTERM
        stop_process(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
