"""Contract section 1: the runner behind `make run` with nothing configured starts its own
Redis (append-only) and rtpengine (media is on by default), makes and prints an API token
and a certificate, and stops everything it started."""
import os
import signal
import subprocess
import sys
import time

import pytest

from lib.tools import runner
from tests.support.sipp import free_port
from tests.support.proxy import ROOT, Proxy


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def start_embedded(var, ports):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_")}
    env.update({"UA_VAR_DIR": str(var), "UA_CHILDREN": "1", **ports})
    log = open(var.parent / "runner.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "lib.tools.runner"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    probe = Proxy("unused", var.parent / "probe", env=ports)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if probe.api("GET", "/api/v1/health", auth=None)[0] == 200:
                return proc, probe
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError((var.parent / "runner.log").read_text())


def stop(proc):
    started = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    return started


def command_names(pids):
    names = []
    for pid in pids:
        with open(f"/proc/{pid}/comm") as f:
            names.append(f.read().strip())
    return sorted(names)


def test_embedded_redis_rtpengine_token_and_certificate(tmp_path):
    var = tmp_path / "var"
    ports = {name: str(free_port()) for name in
             ("UA_SIP_PORT", "UA_TLS_PORT", "UA_HTTP_PORT", "UA_HTTPS_PORT", "UA_API_PORT",
              "UA_API_HTTPS_PORT")}
    proc, probe = start_embedded(var, ports)
    token = (var / "api_token").read_text().strip()
    assert len(token) >= 32 and (var / "api_token").stat().st_mode & 0o077 == 0
    assert (var / "tls" / "cert.pem").exists() and (var / "tls" / "key.pem").exists()
    assert (var / "redis" / "redis.sock").exists()
    assert probe.api("GET", "/api/v1/users", auth=("bearer", "not-it"))[0] == 401
    status, _, _ = probe.api("PUT", "/api/v1/users/1000", {
        "name": "Alice", "password": "secret", "line_type": "ua"}, auth=("bearer", token))
    assert status == 201

    # Kamailio, the API server (lib/web, this Python), the embedded Redis and rtpengine.
    assert command_names(children(proc.pid)) == sorted(
        ["kamailio", os.path.basename(sys.executable)[:15], "redis-server", "rtpengine"])
    assert "embedded rtpengine, ng control at udp:127.0.0.1:" in (tmp_path / "runner.log").read_text()
    started = stop(proc)
    assert not any(alive(pid) for pid in started)
    assert f"admin API token (made now, kept in {var / 'api_token'}): {token}" in \
        (tmp_path / "runner.log").read_text()

    # Same var/: same token, and the user written before the stop is still there (AOF).
    # The token is printed once, when it is made: this start says only where it is.
    (tmp_path / "runner.log").write_text("")
    proc, probe = start_embedded(var, ports)
    status, body, _ = probe.api("GET", "/api/v1/users/1000", auth=("bearer", token))
    assert status == 200 and body["name"] == "Alice"
    stop(proc)
    log = (tmp_path / "runner.log").read_text()
    assert f"admin API token: kept in {var / 'api_token'}" in log and token not in log


def test_a_listener_port_inside_the_rtp_range_is_refused_with_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_")}
    env.update({"UA_VAR_DIR": str(tmp_path / "var"), "UA_SIP_PORT": "35443",
                "UA_REDIS_URL": "unix:///nonexistent"})
    run = subprocess.run([sys.executable, "-m", "lib.tools.runner"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "UA_SIP_PORT 35443 is inside the RTP port range 30000-39999" in run.stderr


def test_only_the_udp_sip_port_must_stay_out_of_the_rtp_range():
    """Media is UDP: the TLS, HTTP and HTTPS listeners (TCP) may lie inside its range."""
    ports = {"UA_SIP_PORT": "5060", "UA_TLS_PORT": "35061", "UA_HTTP_PORT": "38080",
             "UA_HTTPS_PORT": "38443"}
    runner.check_rtp_range(ports)               # accepted: nothing raised
    with pytest.raises(SystemExit, match="UA_SIP_PORT 35060 is inside"):
        runner.check_rtp_range({**ports, "UA_SIP_PORT": "35060"})
