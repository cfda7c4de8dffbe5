"""A standalone call between the browser page and baresip (issue 10, part 2), both ways,
with media: the page (headless chromium, JsSIP over WSS, WebRTC with fake devices) is user
2000 (a `webrtc` line), baresip (Debian's 1.0, over UDP) is user 1000's deskphone; no MDS.
The real proxy anchors the media on a real rtpengine, which turns the page's DTLS-SRTP/ICE
into plain RTP for baresip and back. Media is counted at all three places: the page's
getStats(), baresip's RTCP session and rtpengine's per-side counters."""
import time

from tests.proxy.test_browser_softphone import rtp_packets_by_protocol, tab  # noqa: F401
# baresip deskphones, and the standalone users 1000 (deskphone selected) and 2000
from tests.proxy.test_deskphone_baresip import baresips, standalone  # noqa: F401
# the same real rtpengine and media-adapting proxy as the media tests
from tests.proxy.test_media import (assert_plain_rtp_on_rtpengine, media_proxy,  # noqa: F401
                                    released, rtpengine)
from tests.support.devices import wait_until

ENOUGH = 100        # RTP packets each way: two seconds of 20 ms audio


def talk(tab, index, desk, rtpengine, call_id, timeout=10):
    """Once every side has sent and received ENOUGH packets (or at the timeout): the
    page's stats, baresip's {"tx", "rx"} and rtpengine's {protocol of a side: packets}."""
    deadline = time.monotonic() + timeout
    while True:
        page = tab.call("stats", index)
        phone = desk.audio_stats()
        relayed = rtp_packets_by_protocol(rtpengine, call_id)
        counts = (page["inboundPackets"], page["outboundPackets"], phone["rx"], phone["tx"],
                  *relayed.values())
        if min(counts) >= ENOUGH or time.monotonic() > deadline:
            return page, phone, relayed
        time.sleep(0.1)


def assert_media_both_ways(page, phone, relayed):
    assert page["connectionState"] == "connected", page        # ICE and DTLS done
    assert page["inboundPackets"] >= ENOUGH and page["outboundPackets"] >= ENOUGH, page
    assert phone["rx"] >= ENOUGH and phone["tx"] >= ENOUGH, phone
    # rtpengine received from each side, in that side's own protocol
    assert relayed.keys() == {"RTP/AVP", "UDP/TLS/RTP/SAVPF"}, relayed
    assert min(relayed.values()) >= ENOUGH, relayed


def bye_answers(desk, call_id, timeout=2):
    """(source, destination) of each 200 to a BYE of this call in baresip's SIP trace, once
    there is one (the trace is baresip's log: it may lag the call's events a little)."""
    def answers():
        return [(src, dst) for _, src, dst, message in desk.trace()
                if message.status == 200 and message.cseq_method == "BYE"
                and message.call_id == call_id]
    wait_until(answers, timeout)
    return answers()


def test_page_and_baresip_call_each_other_standalone_with_media(standalone, baresips,
                                                                  rtpengine, tab):
    desk = baresips(standalone, "1000", "udp")
    tab.call("login", {"wss": standalone.wss_url, "domain": standalone.domain,
                       "user": "2000", "password": "secret"})

    # 1. The page calls 1000: baresip rings with a plain RTP/AVP offer on rtpengine,
    # answers, media flows both ways; the page hangs up and baresip answers the BYE.
    placed = tab.call("dial", f"sip:1000@{standalone.domain}")
    incoming = desk.wait_event("CALL_INCOMING", timeout=10)
    desk.command("accept")
    tab.call("confirmed", placed["index"], 5000)
    desk.wait_event("CALL_ESTABLISHED", timeout=5)
    offer = desk.received("INVITE")[0][1]
    assert offer.call_id == placed["callId"]
    assert_plain_rtp_on_rtpengine(offer.body)
    page, phone, relayed = talk(tab, placed["index"], desk, rtpengine, placed["callId"])
    assert_media_both_ways(page, phone, relayed)
    assert tab.call("hangup", placed["index"]) == {"originator": "local", "cause": "Terminated"}
    assert desk.wait_event("CALL_CLOSED", timeout=5)["id"] == incoming["id"]
    assert [dst for _, dst in bye_answers(desk, placed["callId"])] == [desk.registrar]
    assert released(rtpengine, placed["callId"])

    # 2. baresip calls 2000: the page rings with a DTLS-SRTP/ICE offer, answers, media
    # flows both ways; baresip hangs up and gets the page's 200 to its BYE.
    seen = len(desk.events)
    desk.command("dial", f"sip:2000@{desk.registrar}")
    index = 1           # the page's second call
    call_id = tab.call("incomingCall", index, 10000)["callId"]
    tab.call("answer", index)
    established = desk.wait_event("CALL_ESTABLISHED", timeout=5, after=seen)
    assert established["direction"] == "outgoing"
    page, phone, relayed = talk(tab, index, desk, rtpengine, call_id)
    assert_media_both_ways(page, phone, relayed)
    desk.command("hangup")
    assert tab.call("ended", index, 5000) == {"originator": "remote", "cause": "Terminated"}
    desk.wait_event("CALL_CLOSED", timeout=5, after=seen)
    assert [src for src, _ in bye_answers(desk, call_id)] == [desk.registrar]
    assert released(rtpengine, call_id)
    assert tab.call("incomingCount") == 1
