"""Deployment (docker/): the image built as an operator builds it (`make image`: podman
here, with a Debian base made by debootstrap when no registry serves one), then run as
containers on the host's network: a Redis container and the proxy container with the
environment docker/compose.yaml gives it, a deskphone (SIPp, UDP) and a browser (WebSocket)
registered through it, an MDS call ringing the selected device, the image's health check,
/metrics; the proxy container stopped and started again keeps its token, certificate,
users and UDP registration, and drops the WebSocket one (contract section 2). Then the
compose stack itself with podman-compose (tests/deployment/compose.override.yaml says what
this machine changes in it), its Prometheus scraping the proxy container.

Not covered here: a Docker engine (none runs on this machine), Grafana (its image cannot
be had), a base image pulled from a registry."""
import hashlib
import json
import os
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml

from tests.support.fixtures import DESKPHONE_IP, provision_site
from tests.support.proxy import ROOT, TOKEN, Proxy
from tests.support.sipp import free_port
from tests.support.sipua import WsPhone
from tests.support.devices import wait_until

PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "scripts" / "containers.conf")}
IMAGE = "localhost/ua-proxy:test"
STAND_INS = {"redis": "localhost/ua-test-redis:latest",
             "prometheus": "localhost/ua-test-prometheus:latest"}
PROXY_IP, REDIS_IP = "127.0.0.70", "127.0.0.71"
COMPOSE = ROOT / "docker" / "compose.yaml"
OVERRIDE = ROOT / "tests" / "deployment" / "compose.override.yaml"


def podman(*args, check=True, timeout=600):
    run = subprocess.run(["podman", *args], env=PODMAN_ENV, capture_output=True, text=True,
                         timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {run.returncode}\n{run.stdout[-3000:]}"
                             f"\n{run.stderr[-3000:]}")
    return run


@pytest.fixture(scope="module")
def image():
    """`make image`'s script, as it builds for an operator on this machine."""
    build = subprocess.run([str(ROOT / "scripts" / "image.sh")], cwd=ROOT, timeout=1200,
                           env={**PODMAN_ENV, "UA_IMAGE": IMAGE}, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    for name, tag in STAND_INS.items():
        podman("build", "--isolation", "chroot", "--network=host", "-q", "-t", tag,
               "-f", str(ROOT / "tests" / "deployment" / f"{name}.Dockerfile"),
               str(ROOT / "tests" / "deployment"))
    return IMAGE


def compose_environment():
    """The proxy service's environment in docker/compose.yaml, its ${VAR:-default}s
    resolved to their defaults."""
    service = yaml.safe_load(COMPOSE.read_text())["services"]["ua-proxy"]
    env = {}
    for name, value in service["environment"].items():
        value = str(value)
        if value.startswith("${") and ":-" in value:
            value = value[value.index(":-") + 2:-1]
        env[name] = value
    return env


class ContainerProxy(Proxy):
    """The proxy as a container of `image`, on the host's network at PROXY_IP, its var/ on
    a named volume; the API token is the one the container made on first run."""

    def __init__(self, image, redis_url, workdir):
        super().__init__(redis_url, workdir, listen=PROXY_IP, node_id="ua-proxy-1")
        self.image = image
        self.name = f"ua-test-proxy-{uuid.uuid4().hex[:8]}"
        self.volume = f"{self.name}-var"
        self.token = None
        env = compose_environment()
        env.update({k: v for k, v in self.env.items() if k in (
            "UA_SIP_PORT", "UA_TLS_PORT", "UA_HTTP_PORT", "UA_HTTPS_PORT", "UA_API_PORT",
            "UA_API_HTTPS_PORT")})
        env.update(UA_LISTEN=PROXY_IP, UA_DOMAIN=PROXY_IP, UA_ADVERTISE=PROXY_IP,
                   UA_REDIS_URL=redis_url, UA_MDS_PROBE_INTERVAL="0")
        env.pop("UA_API_TOKEN")        # made on first run, kept on the volume
        self.env = env

    def start(self, timeout=60):
        if podman("container", "exists", self.name, check=False).returncode == 0:
            podman("start", self.name)
        else:
            podman("run", "-d", "--name", self.name, "--network", "host", "--init",
                   "-v", f"{self.volume}:/app/var",
                   *(f"-e{k}={v}" for k, v in self.env.items()), self.image)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.api("GET", "/api/v1/health", auth=None)[0] == 200:
                    self.token = self.exec("cat", "/app/var/api_token").strip()
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"proxy container not healthy within {timeout} s:\n{self.logs()}")

    def stop(self):
        podman("stop", "-t", "20", self.name, check=False)

    def remove(self):
        podman("rm", "-f", self.name, check=False)
        podman("volume", "rm", "-f", self.volume, check=False)

    def exec(self, *command):
        return podman("exec", self.name, *command).stdout

    def logs(self):
        run = podman("logs", self.name, check=False)
        return run.stdout[-3000:] + run.stderr[-3000:]

    def api(self, method, path, body=None, auth=("bearer", TOKEN), headers=None):
        if auth == ("bearer", TOKEN):
            auth = ("bearer", self.token)
        return super().api(method, path, body, auth, headers)


@pytest.fixture(scope="module")
def redis_container(image):
    port = free_port(REDIS_IP)
    name = f"ua-test-redis-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network", "host", STAND_INS["redis"],
           "redis-server", "--bind", REDIS_IP, "--port", str(port), "--appendonly", "yes")
    url = f"redis://{REDIS_IP}:{port}/0"
    assert wait_until(lambda: podman("exec", name, "redis-cli", "-h", REDIS_IP, "-p", str(port),
                                     "ping", check=False).stdout.strip() == "PONG", 10)
    yield url
    podman("rm", "-f", name, check=False)


@pytest.fixture
def container(image, redis_container, tmp_path):
    proxy = ContainerProxy(image, redis_container, tmp_path)
    try:
        yield proxy.start()
    finally:                    # a container that never got healthy goes too
        proxy.stop()
        proxy.remove()


def test_the_image_is_lean_and_runs_unprivileged(image):
    listing = podman("run", "--rm", "--entrypoint", "sh", image, "-c",
                     "id -u; for t in gcc cc g++ make npm node sipp baresip chromium pytest; do "
                     "command -v $t || ls /app/.venv/bin/$t 2>/dev/null; done",
                     check=False).stdout.split()
    assert listing == ["10001"], listing          # a non-root user, and no build or test tool
    size = json.loads(podman("image", "inspect", image).stdout)[0]["Size"]
    assert size < 1_000_000_000, size


def test_proxy_container_routes_calls_and_keeps_its_state_across_a_restart(container, tmp_path):
    site = provision_site(container, tmp_path)
    port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, port, keys={
        "user": "1000", "password": "secret", "expires": "600"}).run().received(200)
    tab = WsPhone(container.ws_url, "1000", "secret", container.domain)
    tab.connect()
    assert tab.register().status == 200
    assert container.device("1000")["registered"] == {"webrtc": True, "deskphone": True}

    # The selected device rings: the browser (the default), then the deskphone.
    mds = site.mds_calls("1000").start()
    tab.answer(tab.wait_request("INVITE", timeout=5))
    assert mds.wait(15).ok
    assert container.select_device("1000", "deskphone")[0] == 200
    desk = site.sipp("deskphone_answer", DESKPHONE_IP, port, timeout=20).start()
    assert site.mds_calls("1000").run().ok
    assert desk.wait(10).received("INVITE")
    assert len(tab.requests("INVITE")) == 1

    assert podman("healthcheck", "run", container.name, check=False).returncode == 0
    with urllib.request.urlopen(f"{container.api_url}/metrics", timeout=5) as resp:
        assert "ua_registrations" in resp.read().decode()

    token = container.token
    certificate = hashlib.sha256(container.exec("cat", "/app/var/tls/cert.pem").encode()).digest()
    container.stop()
    tab.close()
    container.start()
    assert container.token == token
    assert hashlib.sha256(container.exec("cat", "/app/var/tls/cert.pem").encode()).digest() \
        == certificate
    status, user, _ = container.api("GET", "/api/v1/users/1000")
    assert (status, user["name"]) == (200, "Alice")
    assert container.device("1000")["registered"] == {"webrtc": False, "deskphone": True}


def test_compose_stack_comes_up_and_prometheus_scrapes_the_proxy(image):
    """docker/compose.yaml with this machine's override (stand-in images): Redis, the proxy
    and Prometheus (not Grafana) come up on the stack's own network, the proxy's health
    check passes, and Prometheus, on the host port the compose file publishes, has its
    target up: it reaches the proxy container by its service name."""
    project = f"uatest{uuid.uuid4().hex[:6]}"
    compose = ["podman-compose", "-p", project, "-f", str(COMPOSE), "-f", str(OVERRIDE)]
    env = {**PODMAN_ENV, "UA_DOMAIN": "127.0.0.1", "UA_ADVERTISE": "127.0.0.1",
           "GRAFANA_ADMIN_PASSWORD": "unused"}
    up = subprocess.run([*compose, "up", "-d", "redis", "ua-proxy", "prometheus"], env=env,
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]

        def target_up():
            try:
                with urllib.request.urlopen("http://127.0.0.1:9090/api/v1/targets",
                                            timeout=2) as resp:
                    targets = json.load(resp)["data"]["activeTargets"]
            except OSError:
                return False
            return [t["health"] for t in targets if t["labels"]["job"] == "ua-proxy"] == ["up"]
        assert wait_until(target_up, 90)
        assert podman("healthcheck", "run", f"{project}_ua-proxy_1", check=False).returncode == 0
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, cwd=ROOT, capture_output=True,
                       timeout=300)
