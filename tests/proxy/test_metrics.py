"""Contract section 10: /metrics on the API server, in the text format the official client
writes (HELP and TYPE for every family, no timestamps), aggregated over every Kamailio
process, counting what the routes decided; Kamailio's own figures as kamailio_* gauges."""
import re
import urllib.request

from lib import metrics
from tests.support.fixtures import provision_site
from tests.support.proxy import Proxy
from tests.support.scrape import samples, scrape, value
from tests.proxy.test_forwarding import forwards
from tests.support.devices import browser, deskphone, wait_until

TYPES = {**{name: "counter" for name in metrics.COUNTERS},
         **{name: "gauge" for name in [*metrics.GAUGES, metrics.MDS_UP,
                                       *metrics.KAMAILIO_GAUGES]},
         metrics.ROUTING_HISTOGRAM: "histogram"}


def counter_series():
    """(family, labels) of every counter series the proxy exports from the start."""
    return [(family, tuple(sorted(zip(names, values))))
            for family, (_, names, series) in metrics.COUNTERS.items() for values in series]


def traffic(site):
    """Registrations, calls that ring the browser then the deskphone (logged out: a
    fallback), a forward, a wrong SIP password and a forged API token. Returns
    {(family, labels): how much it adds}."""
    desk = deskphone(site)
    tab = browser(site)
    caller = site.mds_calls("1000", talk_ms=2000).start()       # rings the browser
    tab.answer(tab.wait_request("INVITE", timeout=5))
    # call events reach Redis within the event process's tick (issue 24: up to 50 ms)
    assert wait_until(lambda: value(scrape(site), "ua_calls_in_progress", device="webrtc") == 1,
                      2)
    in_call = scrape(site)
    assert caller.wait(15).ok
    tab.close()                                                  # logged out: fallback
    assert site.mds_calls("1000").run().ok
    desk.stop()
    forwards(site, unconditional="2000")
    mds = site.mds_answer()
    assert site.mds_calls("1000").run().ok
    mds.stop()
    wrong = browser(site, password="wrong", register=False)
    wrong.register()
    wrong.close()
    assert site.proxy.api("GET", "/api/v1/users", auth=("bearer", "forged"))[0] == 401
    return in_call, {
        ("ua_calls_routed_total", (("device", "webrtc"), ("reason", "selected"))): 1,
        ("ua_calls_routed_total", (("device", "deskphone"), ("reason", "logged_out"))): 1,
        ("ua_fallbacks_total", (("reason", "logged_out"),)): 1,
        ("ua_forwards_total", (("rule", "unconditional"),)): 1,
        ("ua_auth_failures_total", (("kind", "api"),)): 1}


def test_every_family_has_help_and_type_and_no_sample_a_timestamp(site):
    site.mds_calls("1000", scenario="mds_call_expect_error").run()   # one routing observed
    text, headers = scrape(site, with_headers=True)
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    helps = dict(re.findall(r"^# HELP (\S+) (.+)$", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert types == TYPES and set(helps) == set(TYPES)
    for line in text.splitlines():
        if not line.startswith("#"):
            # name{labels} value: a third field would be a timestamp
            assert len(line.rsplit("}", 1)[-1].split()) == (1 if "{" in line else 2), line
    # every series exists from the start, at zero until its first event
    assert set(counter_series()) <= set(samples(text))
    assert value(text, "ua_routing_duration_seconds_count") >= 1
    assert value(text, "kamailio_shmem_free_bytes") > 0
    assert value(text, "kamailio_shmem_used_bytes") > 0


def test_metrics_count_routing_fallbacks_forwards_and_auth_failures(site):
    before = scrape(site)
    in_call, expected = traffic(site)
    after = scrape(site)

    assert value(in_call, "ua_registrations", device="webrtc") == 1
    assert value(in_call, "ua_registrations", device="deskphone") == 1
    assert value(in_call, "ua_calls_in_progress", device="webrtc") == 1
    # the browser's WebSocket, and the transaction of the call it answers (an earlier test's
    # client may still be closing its own: those only go, so the browser's shows as >= 1
    # now and as one fewer once it closes)
    websockets = value(in_call, "kamailio_websocket_connections")
    assert websockets >= 1
    assert value(in_call, "kamailio_tcp_connections") >= 1

    def delta(family, **labels):
        return value(after, family, **labels) - value(before, family, **labels)
    for (family, labels), added in expected.items():
        assert delta(family, **dict(labels)) == added, (family, labels)
    assert delta("ua_auth_failures_total", kind="sip") >= 1
    for family, labels in counter_series():     # nothing else moved
        if (family, labels) not in expected and family != "ua_auth_failures_total":
            assert delta(family, **dict(labels)) == 0, (family, labels)
    assert delta("ua_routing_duration_seconds_count") >= 3
    assert value(after, "ua_calls_in_progress", device="webrtc") == 0
    assert value(after, "ua_registrations", device="webrtc") == 0
    # the closed WebSocket is gone from Kamailio's own figures too
    assert wait_until(lambda: value(scrape(site), "kamailio_websocket_connections")
                      <= websockets - 1, 5)


def test_ua_metrics_0_turns_the_sip_side_counting_off(redis_server, redis_url, tmp_path):
    """make bench's comparison is only worth something if UA_METRICS=0 counts nothing."""
    proxy = Proxy(redis_server.url, tmp_path / "proxy", node_id="metrics-off",
                  env={"UA_METRICS": "0"}).start()
    try:
        site = provision_site(proxy, tmp_path)
        assert site.mds_calls("1000", scenario="mds_call_expect_error").run().received(480)
        wrong = browser(site, password="wrong", register=False)
        wrong.register()
        wrong.close()
        assert proxy.api("GET", "/api/v1/users", auth=("bearer", "forged"))[0] == 401
        text = scrape(site)
    finally:
        proxy.stop()
    assert value(text, "ua_routing_duration_seconds_count") == 0
    assert value(text, "ua_auth_failures_total", kind="sip") == 0
    assert value(text, "ua_auth_failures_total", kind="api") == 1   # the API server counts
