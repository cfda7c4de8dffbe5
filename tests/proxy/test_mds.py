"""MDS registry and health (contract section 9): two MDS played by SIPp (mds_answer, which
answers OPTIONS probes) on 127.0.0.10 and 127.0.0.11 behind a real proxy that probes them
every 0.2 s; users on each, calls both ways, a stranger challenged, an MDS stopped (503 at
once, API and /metrics show it down) and started again."""
import time

import pytest

from lib import config
from lib.decisions import routing
from lib.features import calls, mds_health
from lib.store import keyspace
from lib.users.provisioning import Provisioning
from tests.support.fixtures import DESKPHONE_IP, Site
from tests.support.proxy import Proxy
from tests.support.sipp import Sipp, free_port
from tests.support.scrape import scrape, value
from tests.support.devices import browser, deskphone, wait_until

MDS_IPS = {"mds1": "127.0.0.10", "mds2": "127.0.0.11"}
STRANGER_IP = "127.0.0.12"
INTERVAL = 0.2       # UA_MDS_PROBE_INTERVAL for these tests; threshold: the default, 2


# --- the decision, without Kamailio ------------------------------------------------------

def test_health_is_up_after_one_answer_and_down_after_threshold_misses():
    uri, h = "sip:192.0.2.10:5060", None
    h = mds_health.update(h, uri, False, 1.0, 2)
    assert (h.up, h.since, h.misses) == (None, None, 1)       # one miss: not known yet
    h = mds_health.update(h, uri, True, 2.0, 2)
    assert (h.up, h.since, h.misses) == (True, 2.0, 0)
    h = mds_health.update(h, uri, True, 3.0, 2)
    assert h.since == 2.0                                       # still up since 2.0
    h = mds_health.update(h, uri, False, 4.0, 2)
    assert (h.up, h.since) == (True, 2.0)
    h = mds_health.update(h, uri, False, 5.0, 2)
    assert (h.up, h.since) == (False, 5.0)
    h = mds_health.update(h, uri, False, 6.0, 2)
    assert (h.up, h.since) == (False, 5.0)
    assert mds_health.update(h, uri, True, 7.0, 2).up is True
    assert mds_health.update(h, "sip:192.0.2.11:5060", False, 7.0, 2).up is None   # new URI


def test_only_a_final_answer_to_our_probe_counts():
    reply = "SIP/2.0 {} X\r\nVia: SIP/2.0/UDP h\r\n{}: abc\r\nCSeq: 1 OPTIONS\r\n\r\n"
    assert mds_health.final_status(reply.format(200, "Call-ID").encode(), "abc") == 200
    assert mds_health.final_status(reply.format(404, "i").encode(), "abc") == 404
    assert mds_health.final_status(reply.format(100, "Call-ID").encode(), "abc") is None
    assert mds_health.final_status(reply.format(200, "Call-ID").encode(), "xyz") is None
    assert mds_health.final_status(b"OPTIONS sip:x SIP/2.0\r\n\r\n", "abc") is None


def test_down_mds_is_read_with_the_call_context(r):
    """The health rides in the one EVALSHA of an initial request (see test_calls_unit);
    only this proxy's view counts."""
    prov = Provisioning(r, "127.0.0.1")
    prov.put_mds("mds1", {"uri": "sip:127.0.0.10:5070", "addresses": ["127.0.0.10"]})
    prov.put_user("1000", {"name": "Alice", "password": "s", "line_type": "ua", "mds": "mds1"})

    def decide():
        ctx = calls.load_context("127.0.0.20", "1000", "555", time.time(), "n1")
        return ctx.caller_mds_up, calls.decide(ctx, "555", "127.0.0.1", [])
    assert decide() == (None, routing.RelayToMds("sip:555@127.0.0.10:5070",
                                                 "<sip:1000@127.0.0.1>"))
    down = {"mds1": mds_health.Health("sip:127.0.0.10:5070", False, time.time(), 2)}
    mds_health.save(r, "n2", down)
    assert decide()[0] is None
    mds_health.save(r, "n1", down)
    assert decide() == (False, routing.Reject(503, "MDS Unavailable", ("Retry-After: 1",)))


def test_health_is_written_only_when_redis_holds_something_else(r, redis_url, monkeypatch):
    """Every write empties the cached call contexts that read it (lib/store/wire.cached_script):
    an unchanged round writes nothing; a record lost (a failover) is written again."""
    port = free_port("127.0.0.1")      # nobody listens: every probe is refused, a miss
    Provisioning(r, "127.0.0.1").put_mds("mds1", {"uri": f"sip:127.0.0.1:{port}",
                                                   "addresses": ["127.0.0.1"]})
    writes = []
    save = mds_health.save
    monkeypatch.setattr(mds_health, "save", lambda *args: writes.append(args) or save(*args))
    prober = mds_health.Prober(config.load({"UA_NODE_ID": "n1", "UA_MDS_PROBE_INTERVAL": "1",
                                            "UA_MDS_PROBE_THRESHOLD": "1",
                                            "UA_REDIS_URL": redis_url}))
    now = time.time()
    assert prober.tick(now) == {"mds1": False} and len(writes) == 1
    assert prober.tick(now + 1) == {"mds1": False} and len(writes) == 1
    r.delete(keyspace.mds_health_key("n1"))
    assert prober.tick(now + 2) == {"mds1": False} and len(writes) == 2
    assert mds_health.load(r, "n1")["mds1"]["up"] is False


# --- end to end --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probing_proxy(redis_server, tmp_path_factory):
    p = Proxy(redis_server.url, tmp_path_factory.mktemp("mds-proxy"), node_id="node-mds",
              env={"UA_MDS_PROBE_INTERVAL": str(INTERVAL)}).start()
    yield p
    p.stop()


class TwoMds:
    """mds1 and mds2 (SIPp UAS answering probes and any number of calls), user 1000 on
    mds1 and 2000 on mds2. `site` is mds1's, for the helpers of test_unique_account."""

    def __init__(self, proxy, workdir):
        self.proxy, self.workdir = proxy, workdir
        self.ports = {name: free_port(ip) for name, ip in MDS_IPS.items()}
        self.site = Site(proxy, self.ports["mds1"], workdir)
        self.servers = {}
        self.runs = 0
        for name, ip in MDS_IPS.items():
            proxy.provision_mds(name, ip, self.ports[name])
        proxy.provision_user("1000", "ua", mds="mds1", name="Alice")
        proxy.provision_user("2000", "ua", mds="mds2", name="Carol")

    def start(self, name):
        self.runs += 1
        self.servers[name] = Sipp(
            "mds_answer", local_ip=MDS_IPS[name], local_port=self.ports[name], calls=None,
            timeout=120, workdir=self.workdir, name=f"{name}-run{self.runs}").start()

    def stop(self, name):
        return self.servers.pop(name).stop()

    def up(self, name):
        return self.proxy.api("GET", f"/api/v1/mds/{name}")[1]["up"]

    def invites(self, name, dialled):
        return self.servers[name].received(
            lambda m: m.method == "INVITE" and m.ruri.startswith(f"sip:{dialled}@"))

    def device_calls(self, number, dialled, scenario="deskphone_call"):
        return self.site.sipp(scenario, DESKPHONE_IP,
                              keys={"service": dialled, "user": number, "password": "secret"}).run()


@pytest.fixture
def two_mds(probing_proxy, redis_url, tmp_path):
    mds = TwoMds(probing_proxy, tmp_path)
    for name in MDS_IPS:
        mds.start(name)
    assert wait_until(lambda: mds.up("mds1") is True and mds.up("mds2") is True, 3)
    yield mds
    for name in list(mds.servers):
        mds.stop(name)


def test_each_user_reaches_its_own_mds(two_mds):
    domain = two_mds.proxy.domain
    for number, own, other, dialled in (("1000", "mds1", "mds2", "3000"),
                                        ("2000", "mds2", "mds1", "4000")):
        outcome = two_mds.device_calls(number, dialled)
        assert outcome.ok, outcome.describe()
        invite, = two_mds.invites(own, dialled)
        assert invite.ruri == f"sip:{dialled}@{MDS_IPS[own]}:{two_mds.ports[own]}"
        assert invite.header_all("P-Asserted-Identity") == [f"<sip:{number}@{domain}>"]
        assert two_mds.invites(other, dialled) == []
    probes = two_mds.stop("mds1").received("OPTIONS")
    assert probes and probes[0].ruri == f"sip:{MDS_IPS['mds1']}:{two_mds.ports['mds1']}"


def test_a_call_from_mds2_rings_the_selected_device_of_a_user_on_mds1(two_mds):
    site = two_mds.site
    desk = deskphone(site)
    tab = browser(site)
    assert two_mds.proxy.select_device("1000", "deskphone")[0] == 200
    call = Sipp("mds_call", remote=two_mds.proxy.sip_addr, local_ip=MDS_IPS["mds2"],
                keys={"service": "1000"}, workdir=two_mds.workdir).run()
    assert call.ok, call.describe()
    assert desk.wait(10).received("INVITE")
    assert tab.requests("INVITE") == []
    tab.close()


def test_a_stranger_is_challenged_and_reaches_nobody(two_mds):
    tab = browser(two_mds.site)
    outcome = Sipp("mds_call_expect_error", remote=two_mds.proxy.sip_addr,
                   local_ip=STRANGER_IP, keys={"service": "1000"},
                   workdir=two_mds.workdir).run()
    assert outcome.ok, outcome.describe()
    assert outcome.last_final("INVITE").status == 407
    time.sleep(0.2)
    assert tab.requests("INVITE") == []
    tab.close()


def test_stopped_mds_gets_503_at_once_and_calls_pass_once_it_is_back(two_mds):
    proxy, site = two_mds.proxy, two_mds.site
    before = proxy.api("GET", "/api/v1/mds/mds1")[1]["since"]
    tab = browser(site, register=False)

    stopped = time.monotonic()
    two_mds.stop("mds1")
    assert wait_until(lambda: two_mds.up("mds1") is False, 2)
    detected = time.monotonic() - stopped
    sent = time.monotonic()
    refused = tab.invite(f"sip:3000@{proxy.domain}").response
    answered = time.monotonic()
    assert refused.status == 503 and refused.header("Retry-After") == "1"
    print(f"\nmds1 stopped: down in the API after {detected:.3f} s, INVITE answered 503 in "
          f"{answered - sent:.3f} s, {answered - stopped:.3f} s after the stop")
    assert answered - stopped < 1.0
    mds1 = proxy.api("GET", "/api/v1/mds/mds1")[1]
    assert mds1["up"] is False and mds1["since"] >= before
    text = scrape(site)
    assert value(text, "ua_mds_up", mds="mds1") == 0 and value(text, "ua_mds_up", mds="mds2") == 1
    outcome = two_mds.device_calls("2000", "4000")         # mds2's users are not concerned
    assert outcome.ok, outcome.describe()

    started = time.monotonic()
    two_mds.start("mds1")
    assert wait_until(lambda: two_mds.up("mds1") is True, 2)
    print(f"mds1 started again: up in the API after {time.monotonic() - started:.3f} s")
    assert value(scrape(site), "ua_mds_up", mds="mds1") == 1
    outcome = two_mds.device_calls("1000", "3000")
    assert outcome.ok, outcome.describe()
    assert len(two_mds.invites("mds1", "3000")) == 1
    tab.close()
