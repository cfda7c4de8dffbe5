"""A real Prometheus (Debian's, installed by `make setup`) for tests: its own port, data
directory and configuration, scraping the given targets every second; ready when
/-/ready answers; stopped by its PID.

    prom = PrometheusProcess(tmpdir, ["127.0.0.1:8089"]).start()
    prom.query('sum(ua_registrations)')     # the result vector of an instant query
"""
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from tests.support.processes import stop_process
from tests.support.sipp import free_port

SCRAPE_INTERVAL = 1     # seconds


class PrometheusProcess:
    def __init__(self, workdir, targets, metrics_path="/metrics"):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port("127.0.0.1", "tcp")
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s",
                       "evaluation_interval": f"{SCRAPE_INTERVAL}s"},
            "scrape_configs": [{"job_name": "ua-proxy", "metrics_path": metrics_path,
                                "static_configs": [{"targets": list(targets)}]}]}))
        self.proc = None
        self.log_path = self.dir / "prometheus.log"

    def start(self, timeout=20):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def log_tail(self, lines=20):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path, **params):
        """The `data` of a successful answer of Prometheus's HTTP API."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{path} {params}: {err.code} {err.read()!r}") from None
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr):
        """[(labels, value as float), ...] of an instant query's vector or scalar."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def targets(self):
        return self.api("targets", state="active")["activeTargets"]

    def metadata(self):
        """{family: type} of every family its targets exposed."""
        return {name: entries[0]["type"] for name, entries in self.api("metadata").items()}
