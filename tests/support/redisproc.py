"""A real redis-server for tests: own port and data directory, append-only file on.

    srv = RedisProcess(tmpdir)     # picks a free port
    srv.start(); srv.url           # redis://127.0.0.1:<port>/0
    srv.stop(); srv.start()        # restart on the same port and directory (AOF reloaded)

Stopped by its PID only (SIGTERM, then SIGKILL after a grace period).
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import redis

from tests.support.sipp import free_port


class RedisProcess:
    def __init__(self, data_dir=None, port=None, host="127.0.0.1",
                 binary=None, extra_args=()):
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self._own_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="ua-redis-")
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args)
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        if self.running:
            return self
        os.makedirs(self.dir, exist_ok=True)
        args = [self.binary, "--bind", self.host, "--port", str(self.port),
                "--dir", self.dir, "--appendonly", "yes", "--save", "",
                "--daemonize", "no", "--protected-mode", "no",
                "--logfile", os.path.join(self.dir, "redis.log"), *self.extra_args]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                c = redis.Redis(host=self.host, port=self.port, socket_timeout=0.5,
                                socket_connect_timeout=0.5)
                try:
                    if c.ping():
                        return
                finally:
                    c.close()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                last = exc     # not listening yet, or still loading the AOF
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server not ready after {timeout}s: {last}")

    def stop(self, timeout=10.0):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill(self):
        """Abrupt death (SIGKILL), as a crash."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
