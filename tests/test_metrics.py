"""Contract section 10: /metrics in Prometheus text format, aggregated over every Kamailio
process, counting what the routes decided."""
import re
import urllib.request

from tests.test_forwarding import forwards
from tests.test_unique_account import browser, deskphone


def scrape(site):
    with urllib.request.urlopen(site.proxy.http_url + "/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def value(text, family, **labels):
    """The sample of `family` with exactly these labels (0 when absent); xhttp_prom writes
    `, ` between labels and a timestamp after the value."""
    wanted = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    name = re.escape(family) + (re.escape("{" + wanted + "}") if wanted else "")
    found = re.search(rf"^{name} (\S+)(?: \d+)?$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_families_exist_without_credentials(site):
    site.mds_calls("1000", scenario="mds_call_expect_error").run()   # one routing observed
    text = scrape(site)
    for family in ("ua_calls_routed_total", "ua_fallbacks_total", "ua_forwards_total",
                   "ua_store_errors_total", "ua_auth_failures_total", "ua_registrations",
                   "ua_calls_in_progress", "ua_routing_duration_seconds_bucket"):
        assert re.search(rf"^{family}", text, re.M), family


def test_metrics_count_routing_fallbacks_forwards_and_auth_failures(site):
    before = scrape(site)
    desk = deskphone(site)
    tab = browser(site)
    text = scrape(site)
    assert value(text, "ua_registrations", device="webrtc") == 1
    assert value(text, "ua_registrations", device="deskphone") == 1

    caller = site.mds_calls("1000", talk_ms=2000).start()       # rings the browser
    tab.answer(tab.wait_request("INVITE", timeout=5))
    assert value(scrape(site), "ua_calls_in_progress", device="webrtc") == 1
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

    after = scrape(site)

    def delta(family, **labels):
        return value(after, family, **labels) - value(before, family, **labels)
    assert delta("ua_calls_routed_total", device="webrtc", reason="selected") == 1
    assert delta("ua_calls_routed_total", device="deskphone", reason="logged_out") == 1
    assert delta("ua_fallbacks_total", reason="logged_out") == 1
    assert delta("ua_forwards_total", rule="unconditional") == 1
    assert delta("ua_auth_failures_total", kind="sip") >= 1
    assert delta("ua_auth_failures_total", kind="api") == 1
    assert delta("ua_routing_duration_seconds_count") >= 3
    assert value(after, "ua_calls_in_progress", device="webrtc") == 0
    assert value(after, "ua_registrations", device="webrtc") == 0
