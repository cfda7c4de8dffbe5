"""docker/: what can be checked without a Docker engine. The Grafana dashboard's queries
name only metric families and labels that a running proxy exports on /metrics (scraped
here, never listed by hand), and show every family; Prometheus scrapes the proxy service
where it serves them; the compose file, the Grafana provisioning and the Dockerfile parse
and point at files that exist."""
import json
import re
import shlex
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from lib import config
from lib.tools import healthcheck
from tests.support.fixtures import provision_site
from tests.support.proxy import Proxy

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "unique-account.json"
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless"}
# `by (...)` and friends: label lists, not selectors.
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def promql_names(expr):
    """(metric names, label names) that a PromQL expression refers to."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)       # string literals
    expr = re.sub(r"\$\{?\w+\}?", "", expr)                 # Grafana variables
    expr = re.sub(r"\[[^\]]*\]", "", expr)                  # range selectors
    labels = {name for group in _LABEL_LIST.findall(expr)
              for name in re.findall(r"\w+", group)}
    labels |= {name for matchers in re.findall(r"\{([^}]*)\}", expr)
               for name in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)}
    expr = _LABEL_LIST.sub("", re.sub(r"\{[^}]*\}", "", expr))
    metrics = set()
    for word in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr):
        called = expr[word.end():].lstrip().startswith("(")     # a function or aggregation
        if not called and word.group() not in PROMQL_KEYWORDS:
            metrics.add(word.group())
    return metrics, labels


def test_promql_names_reads_selectors_not_functions_or_labels():
    assert promql_names('histogram_quantile(0.95, sum by (le) (rate(a_bucket{d="x"}'
                        '[$__rate_interval]))) / on (d) b_total * 1e3') == (
        {"a_bucket", "b_total"}, {"le", "d"})


def exported(text):
    """{family: label names} of every sample in a Prometheus text exposition."""
    families = {}
    for line in text.splitlines():
        found = re.match(r"([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s", line)
        if found:
            labels = set(re.findall(r"(\w+)=", found.group(2) or ""))
            families.setdefault(found.group(1), set()).update(labels)
    return families


def dashboard_queries(dashboard):
    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))
    return [(panel, target["expr"]) for panel in walk(dashboard["panels"])
            for target in panel.get("targets", [])]


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def compose():
    return load_yaml(DOCKER / "compose.yaml")


def interpolated(value):
    """A compose value as `docker compose` sees it with nothing set in the environment
    but the required variables: ${V:-default} -> default, ${V:?error} -> a placeholder."""
    def one(found):
        name, op, word = found.groups()
        return {"-": word, "?": f"required-{name}"}.get(op, "")
    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", one, str(value))


def proxy_config():
    """lib.config's view of the ua-proxy service's environment."""
    env = compose()["services"]["ua-proxy"]["environment"]
    return config.load({name: interpolated(value) for name, value in env.items()})


def prometheus_job():
    jobs = load_yaml(DOCKER / "prometheus.yml")["scrape_configs"]
    assert len(jobs) == 1, jobs
    return jobs[0]


@pytest.fixture(scope="module")
def probing_proxy(redis_server, tmp_path_factory):
    """A proxy that probes its MDS nodes often, so that the MDS gauge is soon exported."""
    p = Proxy(redis_server.url, tmp_path_factory.mktemp("deploy-proxy"), node_id="deploy-node",
              env={"UA_MDS_PROBE_INTERVAL": "0.2"}).start()
    yield p
    p.stop()


def scrape(proxy, path):
    with urllib.request.urlopen(proxy.api_url + path, timeout=5) as resp:
        assert resp.status == 200
        return exported(resp.read().decode())


def test_dashboard_queries_name_only_what_the_running_proxy_exports(probing_proxy, redis_url,
                                                                    tmp_path):
    site = provision_site(probing_proxy, tmp_path)      # an MDS that never answers: down
    # A routed request, so that the routing-time histogram has samples to export.
    assert site.mds_calls("1000", scenario="mds_call_expect_error").run().received(480)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 8
    named = set().union(*(promql_names(expr)[0] for _, expr in queries))
    # Some families appear only once there is something to count (a probe round done).
    path = prometheus_job().get("metrics_path", "/metrics")
    deadline = time.monotonic() + 5
    while not named <= set(families := scrape(probing_proxy, path)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "ua_routing_duration_seconds_bucket" in families, sorted(families)

    used = set()
    # and the labels Prometheus gives every sample of a target
    known_labels = set().union(*families.values(), {"instance", "job"})
    for panel, expr in queries:
        metrics, labels = promql_names(expr)
        assert metrics, (panel["title"], expr)
        assert metrics <= set(families), (panel["title"], metrics - set(families))
        assert labels <= known_labels, (panel["title"], labels - known_labels)
        used |= metrics
    # Every family the proxy exports is on the dashboard (a histogram through _bucket).
    base = {re.sub(r"_(bucket|sum|count)$", "", name) for name in families}
    assert base <= {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}, base - used


def test_dashboard_uses_the_provisioned_datasource():
    datasources = load_yaml(DOCKER / "grafana/provisioning/datasources/prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    # The compose file's Prometheus service, on its default port.
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose()["services"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    for panel, _ in dashboard_queries(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]


def test_prometheus_scrapes_the_proxy_service_metrics_port_and_path():
    job = prometheus_job()
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scheme", "http") == "http"
    (targets,) = [group["targets"] for group in job["static_configs"]]
    assert targets == [f"ua-proxy:{proxy_config().api_port}"]
    assert "ua-proxy" in compose()["services"]


def bind_mounts(service):
    """(host path, container path) of a service's bind mounts, host paths resolved."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            yield (DOCKER / source).resolve(), target


def test_compose_parses_and_references_files_that_exist():
    services = compose()["services"]
    assert set(services) == {"redis", "ua-proxy", "prometheus", "grafana"}
    named = set(compose()["volumes"])

    # Redis: append-only file on a named volume; the proxy uses it.
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in services["redis"]["volumes"] and "redis-data" in named
    assert proxy_config().redis_url == "redis://redis:6379/0"

    build = services["ua-proxy"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()

    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in named, (name, volume)
        for host, _ in bind_mounts(service):
            assert host.exists(), (name, host)

    # Prometheus reads the mounted docker/prometheus.yml.
    mounts = dict((target, host) for host, target in bind_mounts(services["prometheus"]))
    config_file = next(a.split("=", 1)[1] for a in services["prometheus"]["command"]
                       if a.startswith("--config.file="))
    assert mounts[config_file] == DOCKER / "prometheus.yml"

    # Grafana: provisioning mounted where it looks, the dashboards where the provider says.
    mounts = dict((target, host) for host, target in bind_mounts(services["grafana"]))
    for kind in ("datasources", "dashboards"):
        assert mounts[f"/etc/grafana/provisioning/{kind}"] == DOCKER / "grafana/provisioning" / kind
    provider = load_yaml(DOCKER / "grafana/provisioning/dashboards/unique-account.yml")
    (dashboards,) = provider["providers"]
    folder = dashboards["options"]["path"]
    assert mounts[folder] == DASHBOARD.parent
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounts[str(Path(home).parent)] / Path(home).name == DASHBOARD


def dockerfile_instructions():
    """(instruction, arguments) of docker/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def setup_packages():
    script = (ROOT / "scripts" / "setup.sh").read_text()
    return set(re.search(r"PACKAGES=\(([^)]*)\)", script).group(1).split())


def test_dockerfile_builds_from_paths_that_exist():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("debian:bookworm")
    copies = [shlex.split(args) for op, args in instructions if op in ("COPY", "ADD")]
    assert copies
    for *sources, _ in copies:
        for source in sources:
            assert not source.startswith("--"), source      # no --from or --chown surprises
            assert (ROOT / source).exists(), source

    # Its packages are some of scripts/setup.sh's (the test tools stay out of the image).
    installs = [args for op, args in instructions if op == "RUN" and "apt-get install" in args]
    assert len(installs) == 1
    words = installs[0].split("apt-get install", 1)[1].split("&&")[0].split()
    packages = {w for w in words if not w.startswith("-")}
    assert {"kamailio", "rtpengine-daemon", "python3-venv"} <= packages <= setup_packages()

    entrypoint = json.loads(next(args for op, args in instructions if op == "ENTRYPOINT"))
    assert entrypoint[-2:] == ["-m", "lib.tools.runner"]
    assert (ROOT / "lib" / "tools" / "runner.py").is_file()


def test_published_ports_and_health_checks_follow_the_api_server():
    """Kamailio's SIP, WebSocket and the API server's ports (lib.config defaults) are
    published; both health checks ask the API server."""
    cfg = config.load({})
    tcp = {cfg.sip_port, cfg.tls_port, cfg.http_port, cfg.https_port, cfg.api_port,
           cfg.api_https_port}
    instructions = dockerfile_instructions()
    exposed = set(" ".join(args for op, args in instructions if op == "EXPOSE").split())
    assert {f"{port}/tcp" for port in tcp} <= exposed
    health = " ".join(args for op, args in instructions if op == "HEALTHCHECK")
    assert "-m lib.tools.healthcheck" in health.replace('", "', " ")
    service = compose()["services"]["ua-proxy"]
    published = {p.split(":")[1] for p in service["ports"]}
    assert {f"{port}/tcp" for port in tcp} <= published
    assert service["healthcheck"]["test"][-2:] == ["-m", "lib.tools.healthcheck"]
    # lib.tools.healthcheck asks the API server, on the container's wildcard through loopback.
    assert healthcheck.url(config.load({"UA_LISTEN": "0.0.0.0"})) == \
        f"http://127.0.0.1:{cfg.api_port}/api/v1/health"

