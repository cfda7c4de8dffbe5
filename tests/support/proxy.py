"""The proxy under test: `python -m lib.tools.runner` with free ports, its own var/ directory
and a given Redis, ready when its API server's /api/v1/health answers 200 (Kamailio,
Redis and the media relay answer), stopped by its PID."""
import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lib.users.profiles import ha1
from tests.support.processes import stop_process
from tests.support.sipp import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "test-admin-token"
# Kamailio's levels above WARNING ("ERROR: <core> ..."), and the API server's Python
# logging ("ua-api: ERROR ua.api: ...").
ERROR_LINE = re.compile(r"\b(?:ERROR|CRITICAL|CRIT|ALERT|BUG|EMERG):|^ua-api: (?:ERROR|CRITICAL) ")


class Proxy:
    # Every log a proxy of this test session wrote, and every credential the session gave
    # a proxy: no log may hold one (contract section 9; tests/proxy/conftest.py checks at the end).
    logs = set()
    credentials = {TOKEN}

    def __init__(self, redis_url, workdir, listen="127.0.0.1", node_id="node-a", env=None):
        self.listen = listen
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {
            "UA_LISTEN": listen, "UA_REDIS_URL": redis_url, "UA_API_TOKEN": TOKEN,
            "UA_NODE_ID": node_id, "UA_VAR_DIR": str(self.workdir / "var"),
            "UA_SIP_PORT": str(free_port(listen)), "UA_TLS_PORT": str(free_port(listen)),
            "UA_HTTP_PORT": str(free_port(listen)), "UA_HTTPS_PORT": str(free_port(listen)),
            "UA_API_PORT": str(free_port(listen)), "UA_API_HTTPS_PORT": str(free_port(listen)),
            "UA_CHILDREN": "2", "UA_MEDIA": "passthrough",
            # lets a test see a BLF subscription expire within seconds
            "UA_SUBSCRIBE_MIN_EXPIRES": "1",
            # MDS probing off: most tests run their SIPp MDS only around a call, so it
            # would be marked down between calls (tests/proxy/test_mds.py turns it on)
            "UA_MDS_PROBE_INTERVAL": "0",
            # flood protection off whatever the default: the bad-SIP corpus and the loads
            # come from one address at hundreds per second (tests/proxy/test_security.py sets it)
            "UA_FLOOD_RATE": "0",
            # no block of failed API authentications either: the API tests send wrong
            # credentials from 127.0.0.1 on purpose (tests/proxy/test_api_security.py sets it)
            "UA_API_AUTH_FAILURES": "0", **(env or {})}
        self.proc = None
        self.log_path = self.workdir / "proxy.log"
        Proxy.logs.add(self.log_path)

    @property
    def sip_port(self):
        return int(self.env["UA_SIP_PORT"])

    @property
    def tls_port(self):
        return int(self.env["UA_TLS_PORT"])

    @property
    def sip_addr(self):
        return f"{self.listen}:{self.sip_port}"

    @property
    def domain(self):
        return self.env.get("UA_DOMAIN", self.listen)

    @property
    def ws_url(self):
        return f"ws://{self.listen}:{self.env['UA_HTTP_PORT']}/ws"

    @property
    def wss_url(self):
        return f"wss://{self.listen}:{self.env['UA_HTTPS_PORT']}/ws"

    @property
    def http_url(self):
        """Kamailio's HTTP listener (WebSocket only)."""
        return f"http://{self.listen}:{self.env['UA_HTTP_PORT']}"

    @property
    def api_url(self):
        return f"http://{self.listen}:{self.env['UA_API_PORT']}"

    @property
    def api_https_url(self):
        return f"https://{self.listen}:{self.env['UA_API_HTTPS_PORT']}"

    def start(self, timeout=20):
        env = {k: v for k, v in os.environ.items() if not k.startswith("UA_")}
        env.update(self.env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "lib.tools.runner"], cwd=ROOT, env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.api("GET", "/api/v1/health", auth=None)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"proxy not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self):
        stop_process(self.proc, grace=15)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    @staticmethod
    def children_of(parent):
        """{pid: command line} of a process's children."""
        out = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                out[int(stat.parent.name)] = cmdline
        return out

    def api_server_pid(self):
        """The PID of the runner's API server child (lib.web.server), or None."""
        return next((pid for pid, cmdline in self.children_of(self.proc.pid).items()
                     if b"lib.web.server" in cmdline), None)

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_size(self):
        return self.log_path.stat().st_size

    def log_since(self, offset):
        """What the proxy logged after `offset` (a log_size())."""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def errors_since(self, offset):
        """The ERROR (and worse) lines the proxy logged after `offset` (a log_size())."""
        return [line for line in self.log_since(offset).splitlines() if ERROR_LINE.search(line)]

    def api(self, method, path, body=None, auth=("bearer", TOKEN), headers=None):
        """(status, parsed JSON or None, headers) of one API request."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        if auth and auth[0] == "bearer":
            req.add_header("Authorization", f"Bearer {auth[1]}")
        elif auth:
            import base64
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, hdrs = err.code, err.read(), dict(err.headers)
        return status, (json.loads(raw) if raw else None), hdrs

    @classmethod
    def remember_credentials(cls, number, password, domain):
        """The password and what is derived from it (HA1, HTTP Basic) for the log check."""
        cls.credentials |= {password, ha1(number, domain, password),
                            base64.b64encode(f"{number}:{password}".encode()).decode()}

    @classmethod
    def credentials_in_logs(cls):
        """(log, credential) for every credential found in a log of this session."""
        found = []
        for path in sorted(cls.logs):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for credential in sorted(cls.credentials):
                # whole words: the password "secret" is no leak inside "sip_secret"
                if re.search(rf"(?<![\w+/=]){re.escape(credential)}(?![\w+/=])", text):
                    found.append((str(path), credential))
        return found

    def provision_user(self, number, line_type="ua", password="secret", **fields):
        self.remember_credentials(number, password, self.domain)
        status, body, _ = self.api("PUT", f"/api/v1/users/{number}", {
            "name": f"User {number}", "password": password, "line_type": line_type, **fields})
        assert status in (200, 201), body
        return body

    def provision_mds(self, name, ip, port):
        status, body, _ = self.api("PUT", f"/api/v1/mds/{name}",
                                   {"uri": f"sip:{ip}:{port}", "addresses": [ip]})
        assert status in (200, 201), body
        return body

    def select_device(self, number, device):
        return self.api("PUT", f"/api/v1/users/{number}/device", {"device": device})

    def device(self, number):
        return self.api("GET", f"/api/v1/users/{number}/device")[1]
