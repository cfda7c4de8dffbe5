"""Stored state survives restarts of the proxy and of Redis (AOF); registrations bound to
a connection of a restarted proxy do not (contract section 2)."""

from tests.support.devices import browser, deskphone, wait_until


def test_selection_and_udp_registration_survive_restarts(site, redis_server):
    desk = deskphone(site)
    tab = browser(site)
    site.proxy.select_device("1000", "deskphone")
    registered_both = {"webrtc": True, "deskphone": True}
    assert site.proxy.device("1000")["registered"] == registered_both

    site.proxy.restart()
    # The WebSocket died with the old proxy: logged out until the browser registers again.
    assert site.proxy.device("1000") == {
        "selected": "deskphone", "effective": "deskphone", "reason": "selected",
        "registered": {"webrtc": False, "deskphone": True}}
    site.proxy.select_device("1000", "webrtc")
    assert site.mds_calls("1000").run().returncode == 0
    assert len(desk.wait(10).received("INVITE")) == 1       # fallback: the UDP binding works

    again = browser(site)
    assert site.proxy.device("1000")["effective"] == "webrtc"

    redis_server.stop()
    status, body, headers = site.proxy.api("GET", "/api/v1/health", auth=None)
    assert status == 503 and body["status"] == "degraded"
    refused = again.register()                      # needs state: 503 at once, not a hang
    assert refused.status == 503 and refused.header("Retry-After") == "1"
    redis_server.start()
    assert wait_until(lambda: site.proxy.api("GET", "/api/v1/health", auth=None)[0] == 200, 5)
    assert site.proxy.device("1000") == {
        "selected": "webrtc", "effective": "webrtc", "reason": "selected",
        "registered": {"webrtc": True, "deskphone": True}}
    again.close()
    tab.close()
    assert wait_until(lambda: not site.proxy.device("1000")["registered"]["webrtc"])
