"""A real rtpengine for tests: user-space forwarding, ng control on a free loopback port,
stopped and started again by its PID (the same port, so a running proxy finds it)."""
import subprocess
import time
from pathlib import Path

from lib.decisions import media
from tests.support.processes import stop_process
from tests.support.sipp import free_port


class RtpengineProcess:
    def __init__(self, workdir, interface="127.0.0.1"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.interface = interface
        self.url = f"udp:127.0.0.1:{free_port('127.0.0.1')}"
        self.proc = None

    def start(self, timeout=10):
        log = open(self.workdir / "rtpengine.log", "ab")
        self.proc = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
             f"--interface={self.interface}", f"--listen-ng={self.url.removeprefix('udp:')}",
             "--port-min=40000", "--port-max=49999", "--delete-delay=0"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while not media.alive(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "rtpengine.log").read_text()[-2000:])
            time.sleep(0.05)
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def call_ids(self):
        """Call-IDs of every session rtpengine holds now."""
        return {c.decode() for c in media.ng_command(self.url, "list", limit=1000)["calls"]}
