"""Integration fixtures: one proxy (real Kamailio) for the session on the session's Redis,
and per test a clean store with the MDS and users of the seed's examples provisioned."""
import re
from dataclasses import dataclass

import pytest

from tests.support.proxy import Proxy
from tests.support.sipp import Sipp, free_port

MDS_IP = "127.0.0.10"
DESKPHONE_IP = "127.0.0.20"


@pytest.fixture(scope="session")
def proxy(redis_server, tmp_path_factory):
    p = Proxy(redis_server.url, tmp_path_factory.mktemp("proxy")).start()
    yield p
    p.stop()


@dataclass
class Site:
    """The seed's example: Alice (1000, Unique Account) and Bob (1001, deskphone only),
    both on MDS mds1, played by SIPp on its own loopback address."""
    proxy: Proxy
    mds_port: int
    workdir: object

    def sipp(self, scenario, local_ip, local_port=None, keys=None, transport="u1", timeout=15,
             remote=None, **options):
        return Sipp(scenario=scenario, remote=remote or self.proxy.sip_addr, local_ip=local_ip,
                    local_port=local_port or free_port(local_ip), transport=transport,
                    keys=keys or {}, workdir=self.workdir, timeout=timeout, calls=1, **options)

    def mds_answer(self, **kw):
        """The MDS waiting for a call placed by a device."""
        return self.sipp("mds_answer", MDS_IP, self.mds_port, **kw).start()

    def mds_calls(self, number, scenario="mds_call", **kw):
        return self.sipp(scenario, MDS_IP, free_port(MDS_IP), keys={"service": number}, **kw)


def provision_site(proxy, workdir):
    mds_port = free_port(MDS_IP)
    proxy.provision_mds("mds1", MDS_IP, mds_port)
    proxy.provision_user("1000", "ua", mds="mds1", name="Alice")
    proxy.provision_user("1001", "sip", mds="mds1", name="Bob")
    return Site(proxy, mds_port, workdir)


@pytest.fixture
def site(proxy, redis_url, tmp_path):
    """The seed's example behind a proxy that passes SDP unchanged."""
    return provision_site(proxy, tmp_path)


@pytest.fixture
def quiet_log(site, request):
    """Normal traffic writes no ERROR line (contract section 11): a module of normal
    traffic uses it for every test (`pytestmark = pytest.mark.usefixtures("quiet_log")`);
    a test that breaks something on purpose names the lines that causes
    (`@pytest.mark.log_errors(pattern, ...)`)."""
    marker = request.node.get_closest_marker("log_errors")
    expected = [re.compile(p) for p in (marker.args if marker else ())]
    start = site.proxy.log_size()
    yield
    assert [line for line in site.proxy.errors_since(start)
            if not any(p.search(line) for p in expected)] == []
