"""Contract section 6: rtpengine gives each device an SDP it accepts, whatever the caller
offered, and releases every media session (real rtpengine, Kamailio, Redis, SIPp)."""
import re
import time

import pytest

from tests.support.fixtures import DESKPHONE_IP, provision_site
from tests.support.proxy import Proxy
from tests.support.rtpengineproc import RtpengineProcess
from tests.support.sipp import free_port
from tests.support.sipua import webrtc_sdp
from tests.proxy.test_forwarding import (RING_SECONDS,
                                         assert_browser_ring_time_holds_with_early_media)
from tests.support.devices import browser, deskphone, wait_until

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line

RTPENGINE_PORTS = range(40000, 50000)       # tests.support.rtpengineproc's port range


@pytest.fixture(scope="module")
def rtpengine(tmp_path_factory):
    process = RtpengineProcess(tmp_path_factory.mktemp("rtpengine")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def media_proxy(redis_server, rtpengine, tmp_path_factory):
    p = Proxy(redis_server.url, tmp_path_factory.mktemp("media-proxy"), node_id="media-node",
              env={"UA_MEDIA": "rtpengine", "UA_RTPENGINE_URL": rtpengine.url}).start()
    yield p
    p.stop()

@pytest.fixture
def site(media_proxy, redis_url, tmp_path):
    return provision_site(media_proxy, tmp_path)


def assert_webrtc_offer(sdp):
    assert "UDP/TLS/RTP/SAVPF" in sdp
    for attribute in ("a=fingerprint:", "a=ice-ufrag:", "a=rtcp-mux"):
        assert attribute in sdp, attribute


def assert_plain_rtp_on_rtpengine(sdp):
    media_line = re.search(r"^m=audio (\d+) (\S+) ", sdp, re.M)
    assert media_line and media_line.group(2) == "RTP/AVP", sdp
    assert int(media_line.group(1)) in RTPENGINE_PORTS
    assert re.search(r"^c=IN IP4 127\.0\.0\.1", sdp, re.M)
    for attribute in ("a=fingerprint", "a=ice-ufrag", "a=candidate", "a=rtcp-mux"):
        assert attribute not in sdp, attribute


def released(rtpengine, call_id):
    return wait_until(lambda: call_id not in rtpengine.call_ids(), 2)


def test_mds_plain_offer_reaches_browser_as_dtls_and_answer_returns_plain(site, rtpengine):
    tab = browser(site)
    mds = site.mds_calls("1000").start()
    invite = tab.wait_request("INVITE", timeout=5)
    assert_webrtc_offer(invite.body)
    assert invite.call_id in rtpengine.call_ids()
    tab.answer(invite)
    outcome = mds.wait(15)
    assert outcome.ok, outcome.describe()
    assert_plain_rtp_on_rtpengine(outcome.received(200)[0].body)
    assert released(rtpengine, invite.call_id)         # after the MDS's BYE
    tab.close()


def test_browser_offer_reaches_mds_as_plain_rtp(site, rtpengine):
    mds = site.mds_answer()
    tab = browser(site)
    call = tab.invite(f"sip:2000@{site.proxy.domain}")
    assert call.response.status == 200
    assert_webrtc_offer(call.response.body)             # the MDS's answer, adapted back
    invite = mds.wait_for("INVITE", timeout=5)[0]
    assert_plain_rtp_on_rtpengine(invite.body)
    assert call.bye().status == 200
    assert released(rtpengine, invite.call_id)
    tab.close()


def test_after_fallback_a_browser_offer_reaches_the_deskphone_as_plain_rtp(site, rtpengine):
    site.proxy.provision_user("2000", "webrtc", name="Carol")       # standalone caller
    desk = deskphone(site)
    tab = browser(site)
    tab.close()                                           # 1000 logged out: fallback
    caller = browser(site, number="2000")
    call = caller.invite(f"sip:1000@{site.proxy.domain}")
    assert call.response.status == 200
    assert_webrtc_offer(call.response.body)
    assert call.bye().status == 200
    invite = desk.wait(10).received("INVITE")[0]
    assert_plain_rtp_on_rtpengine(invite.body)
    assert released(rtpengine, invite.call_id)
    caller.close()


@pytest.mark.parametrize("ending", ["cancel", "busy"])
def test_failed_calls_leave_no_media_session(site, rtpengine, ending):
    tab = browser(site)
    scenario = "mds_call_cancel" if ending == "cancel" else "mds_call_expect_error"
    mds = site.mds_calls("1000", scenario=scenario).start()
    invite = tab.wait_request("INVITE", timeout=5)
    assert invite.call_id in rtpengine.call_ids()
    if ending == "cancel":
        tab.ring(invite)
        tab.wait_request("CANCEL", timeout=5)
        assert mds.wait(15).received(487)
    else:
        tab.reject(invite, 486, "Busy Here")
        assert mds.wait(15).received(486)
    assert released(rtpengine, invite.call_id)
    tab.close()


@pytest.mark.log_errors(r"ERROR: rtpengine ")   # rtpengine is down: an operator must know
def test_rtpengine_down_gets_503_at_once_and_recovers(site, rtpengine):
    tab = browser(site)
    rtpengine.stop()
    try:
        status, body, _ = site.proxy.api("GET", "/api/v1/health", auth=None)
        assert (status, body["reason"]) == (503, "media relay unreachable")
        outcome = site.mds_calls("1000", scenario="mds_call_expect_error").run()
        refused = outcome.received(503)[0]
        assert refused.header("Retry-After") == "1"
        sent = outcome.sent("INVITE")[0]
        assert refused.epoch - sent.epoch < 1.0
        assert tab.requests("INVITE") == []
    finally:
        rtpengine.start()
    assert wait_until(lambda: site.proxy.api("GET", "/api/v1/health", auth=None)[0] == 200, 5)
    time.sleep(1.1)      # the module retries a disabled rtpengine after rtpengine_disable_tout
    mds = site.mds_calls("1000").start()
    tab.answer(tab.wait_request("INVITE", timeout=5))
    assert mds.wait(15).ok
    tab.close()


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_reoffers_are_adapted_in_both_directions(site, rtpengine, method):
    site.proxy.provision_user("2000", "webrtc", name="Carol")       # standalone browser
    port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, port, keys={
        "user": "1000", "password": "secret"}).run().received(200)
    scenario = "deskphone_answer_reoffer" if method == "INVITE" else "deskphone_answer_update"
    desk = site.sipp(scenario, DESKPHONE_IP, port, timeout=20).start()
    site.proxy.select_device("1000", "deskphone")
    caller = browser(site, number="2000")
    call = caller.invite(f"sip:1000@{site.proxy.domain}")
    assert call.response.status == 200

    # Downstream: the browser's DTLS re-offer reaches the deskphone as plain RTP.
    answer = call.request(method, body=webrtc_sdp(), content_type="application/sdp")
    assert answer.status == 200
    assert_webrtc_offer(answer.body)
    # Upstream: the deskphone's plain re-offer reaches the browser as DTLS-SRTP.
    reoffer = caller.wait_request(method, timeout=5)
    assert_webrtc_offer(reoffer.body)

    assert call.bye().status == 200
    outcome = desk.wait(10)
    assert outcome.ok, outcome.describe()
    reinvite = outcome.received(method)[-1]
    assert_plain_rtp_on_rtpengine(reinvite.body)
    assert_plain_rtp_on_rtpengine(outcome.received(200)[0].body)    # answer to its re-offer
    assert released(rtpengine, reinvite.call_id)
    caller.close()


def test_no_answer_forward_gets_plain_rtp_and_leaves_no_media_session(site, rtpengine):
    site.proxy.provision_user("1000", "ua", mds="mds1", name="Alice", ring_seconds=2)
    assert site.proxy.api("PUT", "/api/v1/users/1000/forwards", {
        "noanswer": {"enabled": True, "destination": "voicemail"}})[0] == 200
    tab = browser(site)
    destination = site.mds_answer()
    caller = site.mds_calls("1000").start()
    invite = tab.wait_request("INVITE", timeout=5)
    assert_webrtc_offer(invite.body)
    tab.ring(invite)
    tab.wait_request("CANCEL", timeout=5)
    forwarded = destination.wait_for("INVITE", timeout=5)[0]
    assert forwarded.ruri.startswith("sip:vm-1000@")
    assert_plain_rtp_on_rtpengine(forwarded.body)      # re-offered for the new branch
    assert caller.wait(15).ok
    assert released(rtpengine, invite.call_id)
    tab.close()


def test_ring_time_is_not_rearmed_by_early_media_that_rtpengine_adapts(site):
    """The browser's 183s carry DTLS-SRTP answers that rtpengine turns into plain RTP on
    their way to the MDS: still the ring time from the INVITE (contract section 5)."""
    site.proxy.provision_user("1000", "ua", mds="mds1", name="Alice", ring_seconds=RING_SECONDS)
    assert_browser_ring_time_holds_with_early_media(site)
