"""Contract section 10 with a real Prometheus (Debian's, installed by `make setup`) scraping
a real proxy's API server every second: the target is up, the families are typed as the
client declares them, the counters grow by what the traffic did, the routing histogram
gives quantiles, and every query of the Grafana dashboard returns data."""
import json
import math
import os
import subprocess
import sys

import pytest

from lib import metrics
from tests.support.fixtures import provision_site
from tests.support.prometheus import PrometheusProcess
from tests.support.proxy import ROOT, Proxy
from tests.proxy.test_deployment_files import DASHBOARD, dashboard_queries
from tests.proxy.test_metrics import TYPES, traffic
from tests.support.devices import wait_until

NODE = "prom-node"
STALE_CALLS = 1000      # counted by a previous run; a start clears them
WINDOW = "1m"           # for the dashboard's $__rate_interval: the whole scenario


def leave_stale_counts(workdir):
    """What a previous run of this node left in its metrics directory."""
    directory = workdir / "var" / "run" / NODE / "prometheus"
    directory.mkdir(parents=True)
    subprocess.run([sys.executable, "-c",
                    "from lib import metrics\n"
                    f"for _ in range({STALE_CALLS}):\n"
                    "    metrics.count('ua_calls_routed_total', 'webrtc', 'selected')"],
                   cwd=ROOT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
                   check=True)


@pytest.fixture(scope="module")
def monitored(redis_server, tmp_path_factory):
    """A proxy that probes its MDS (ua_mds_up), and a Prometheus scraping its API server."""
    workdir = tmp_path_factory.mktemp("prom-proxy")
    leave_stale_counts(workdir)
    proxy = Proxy(redis_server.url, workdir, node_id=NODE,
                  env={"UA_MDS_PROBE_INTERVAL": "0.5"}).start()
    try:
        prom = PrometheusProcess(workdir / "prometheus",
                                 [proxy.api_url.removeprefix("http://")]).start()
    except Exception:
        proxy.stop()
        raise
    yield proxy, prom
    prom.stop()
    proxy.stop()


def test_prometheus_ingests_typed_families_counts_and_the_dashboard(monitored, redis_url,
                                                                   tmp_path):
    proxy, prom = monitored
    site = provision_site(proxy, tmp_path)
    # Scraped, and before any call: the counters start from zero there.
    assert wait_until(lambda: [(t["health"], t["lastError"]) for t in prom.targets()]
                      == [("up", "")], 10), prom.targets()
    assert prom.query("sum(ua_calls_routed_total)") == [({}, 0.0)]

    _, expected = traffic(site)
    routed = sum(n for (family, _), n in expected.items() if family == "ua_calls_routed_total")
    assert routed >= 2
    selectors = {(family, labels): family + "{" + ",".join(f'{n}="{v}"' for n, v in labels) + "}"
                 for family, labels in expected}

    def scraped():
        """What Prometheus holds of the series the traffic moved, from zero."""
        return {series: [v for _, v in prom.query(selectors[series])] for series in expected}
    # a scrape after the traffic's last event
    assert wait_until(lambda: scraped() == {s: [n] for s, n in expected.items()}, 5), scraped()
    assert prom.query("sum(ua_calls_routed_total)") == [({}, routed)]

    metadata = prom.metadata()
    assert {name: metadata.get(name) for name in TYPES} == TYPES

    # increase() extrapolates to the window's end (at most one scrape interval): what the
    # traffic did, and less than half an event more.
    ((_, increase),) = prom.query(f"sum(increase(ua_calls_routed_total[{WINDOW}]))")
    assert routed <= increase < routed + 0.5
    for series, added in expected.items():
        ((_, grown),) = prom.query(f"increase({selectors[series]}[{WINDOW}])")
        assert added <= grown < added + 0.5, (series, grown)

    ((_, p99),) = prom.query("histogram_quantile(0.99, sum by (le) "
                             f"(rate(ua_routing_duration_seconds_bucket[{WINDOW}])))")
    assert 0 < p99 <= metrics.ROUTING_BUCKETS[-1]     # a number: NaN without observations

    for panel, expr in dashboard_queries(json.loads(DASHBOARD.read_text())):
        result = prom.query(expr.replace("$__rate_interval", WINDOW))
        assert result and all(math.isfinite(v) for _, v in result), \
            (panel["title"], expr, result)
