"""Redis high availability for tests: one master, one replica and Sentinels, each a real
redis-server on its own loopback address (127.0.0.71 up), free port and directory.

    ha = SentinelSet(tmpdir).start()
    ha.sentinels_env        # "127.0.0.73:p1,127.0.0.74:p2,..." for UA_REDIS_SENTINELS
    ha.failover()           # SENTINEL FAILOVER; ha.master_addr() follows it

Every process is stopped by its PID.
"""
import os
import signal
import subprocess
import time

import redis

from tests.support.redisproc import RedisProcess
from tests.support.sipp import free_port

MASTER_NAME = "mymaster"


class SentinelSet:
    def __init__(self, workdir, sentinels=3):
        self.dir = str(workdir)
        master_port = free_port("127.0.0.71", "tcp")
        # Each announces its own address: Redis would otherwise name the source address of
        # its connections (127.0.0.1), where nothing listens.
        self.servers = [
            RedisProcess(os.path.join(self.dir, "redis-71"), port=master_port, host="127.0.0.71",
                         extra_args=["--replica-announce-ip", "127.0.0.71"]),
            RedisProcess(os.path.join(self.dir, "redis-72"), host="127.0.0.72",
                         extra_args=["--replica-announce-ip", "127.0.0.72",
                                     "--replicaof", "127.0.0.71", str(master_port)])]
        self.sentinels = [(f"127.0.0.{73 + i}", free_port(f"127.0.0.{73 + i}", "tcp"))
                          for i in range(sentinels)]
        self.quorum = len(self.sentinels) // 2 + 1
        self.procs = []

    @property
    def sentinels_env(self):
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    def start(self, timeout=20):
        for server in self.servers:
            server.start()
        master = self.servers[0]
        for host, port in self.sentinels:
            path = os.path.join(self.dir, f"sentinel-{host}")
            os.makedirs(path, exist_ok=True)
            conf = os.path.join(path, "sentinel.conf")     # Sentinel rewrites it
            with open(conf, "w") as f:
                f.write(f"bind {host}\nport {port}\nprotected-mode no\ndir {path}\n"
                        f"logfile {path}/sentinel.log\nsentinel announce-ip {host}\n"
                        f"sentinel monitor {MASTER_NAME} {master.host} {master.port} "
                        f"{self.quorum}\n"
                        f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                        f"sentinel failover-timeout {MASTER_NAME} 10000\n")
            self.procs.append(subprocess.Popen(
                [master.binary, conf, "--sentinel"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.wait(lambda: all(self.replicas_seen(s) == 1 and self.sentinels_seen(s) ==
                              len(self.sentinels) - 1 for s in self.sentinels), timeout,
                  "sentinels that know the replica and each other")
        self.wait(self.replica_online, timeout, "replica online")
        return self

    def sentinel(self, addr):
        return redis.Redis(host=addr[0], port=addr[1], socket_timeout=1, decode_responses=True)

    def replicas_seen(self, addr):
        with self.sentinel(addr) as s:
            return int(s.sentinel_master(MASTER_NAME)["num-slaves"])

    def sentinels_seen(self, addr):
        with self.sentinel(addr) as s:
            return int(s.sentinel_master(MASTER_NAME)["num-other-sentinels"])

    def master_addr(self):
        with self.sentinel(self.sentinels[0]) as s:
            host, port = s.sentinel_get_master_addr_by_name(MASTER_NAME)
            return host, int(port)

    def master(self):
        host, port = self.master_addr()
        return redis.Redis(host=host, port=port, socket_timeout=1)

    def server_at(self, addr):
        return next(s for s in self.servers if (s.host, s.port) == addr)

    def failover(self):
        with self.sentinel(self.sentinels[0]) as s:
            s.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

    def replica_online(self):
        """The master the sentinels name has a replica done with its initial sync."""
        with self.master() as m:
            info = m.info("replication")
        return info["role"] == "master" and (info.get("slave0") or {}).get("state") == "online"

    @staticmethod
    def wait(check, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no {what} within {timeout} s")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(10)
        self.procs = []
        for server in self.servers:
            server.stop()
