"""The seed's Unique Account with a real browser (issue 10, part 1): the UC Assistant is a
page in headless chromium using JsSIP over WSS, with fake microphone and camera, against
the real proxy, Redis, rtpengine and SIPp playing the MDS and the deskphone."""
import socket
import time

import pytest

from lib.decisions import media
from tests.support.browser import Softphone
from tests.support.fixtures import DESKPHONE_IP, MDS_IP
from tests.support.sipp import free_port
# the same real rtpengine and media-adapting proxy as the media tests
from tests.proxy.test_media import media_proxy, rtpengine, site  # noqa: F401
from tests.support.devices import wait_until

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line

MDS_RTP_CALL = "tests/browser/mds_call_rtp.xml"
TALK_MS = 6000          # the MDS hangs up after this; the pcap it plays lasts 7 s


@pytest.fixture
def tab(tmp_path):
    with Softphone(tmp_path) as softphone:
        softphone.open()
        yield softphone


def media_port(ip):
    """A port for SIPp's media (-mp): SIPp binds it and the port two above."""
    while True:
        port = free_port(ip)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((ip, port + 2))
                return port
            except OSError:
                continue


def rtp_packets_by_protocol(rtpengine, call_id):
    """{media protocol of a side: RTP packets rtpengine received from that side}."""
    answer = media.ng_command(rtpengine.url, "query", **{"call-id": call_id})
    return {medium["protocol"].decode(): sum(s["stats"]["packets"] for s in medium["streams"])
            for tag in answer["tags"].values() for medium in tag["medias"]}


def deskphone_answers(site, port, timeout=60):
    """The deskphone registered on `port` (UDP), answering the next call."""
    return site.sipp("deskphone_answer", DESKPHONE_IP, port, timeout=timeout).start()


def test_browser_answers_with_media_then_deskphone_rings_when_chosen_or_page_closed(
        site, rtpengine, tab):
    proxy = site.proxy
    api = proxy.api_https_url
    user = {"user": "1000", "password": "secret"}
    desk_port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, desk_port,
                     keys={"password": "secret"}).run().received(200)
    desk = deskphone_answers(site, desk_port)
    tab.call("login", {"wss": proxy.wss_url, "domain": proxy.domain, **user})
    assert proxy.device("1000")["effective"] == "webrtc"

    # 1. The MDS calls 1000 with plain RTP/AVP and plays RTP; the page answers (rtpengine
    # turned the offer into DTLS-SRTP/ICE), and media flows both ways through rtpengine.
    mds = site.sipp(MDS_RTP_CALL, MDS_IP, free_port(MDS_IP), keys={"service": "1000"},
                    variables={"talk_ms": TALK_MS}, timeout=30,
                    extra_args=["-mp", str(media_port(MDS_IP))]).start()
    call_id = tab.call("incomingCall", 0, 5000)["callId"]
    tab.call("answer", 0)
    enough = 50         # packets: one second of 20 ms audio
    assert wait_until(lambda: tab.call("stats", 0)["inboundPackets"] >= enough
                      and min(rtp_packets_by_protocol(rtpengine, call_id).values()) >= enough, 5)
    page = tab.call("stats", 0)
    relayed = rtp_packets_by_protocol(rtpengine, call_id)
    assert page["connectionState"] == "connected"
    assert page["inboundPackets"] >= enough and page["outboundPackets"] >= enough, page
    assert relayed["RTP/AVP"] >= enough, relayed                # from the MDS (SIPp's pcap)
    assert relayed["UDP/TLS/RTP/SAVPF"] >= enough, relayed      # from the browser
    assert tab.call("ended", 0, TALK_MS + 5000) == {"originator": "remote", "cause": "Terminated"}
    outcome = mds.wait(10)
    assert outcome.ok, outcome.describe()
    assert "RTP/AVP" in outcome.received(200)[0].body
    assert outcome.sent("ACK") and outcome.sent("BYE")
    assert outcome.last_final("BYE").status == 200
    assert wait_until(lambda: call_id not in rtpengine.call_ids(), 2)
    assert desk.received("INVITE") == []

    # 2. The user picks the deskphone in the UC Assistant: the next call rings it.
    chosen = tab.call("selectDevice", {"api": api, "device": "deskphone", **user})
    assert chosen["status"] == 200
    assert (chosen["body"]["effective"], chosen["body"]["reason"]) == ("deskphone", "selected")
    outcome = site.mds_calls("1000").run()
    assert outcome.ok, outcome.describe()
    assert desk.wait(10).received("INVITE")[0].call_id == outcome.sent("INVITE")[0].call_id
    assert tab.call("incomingCount") == 1

    # 3. Back to the browser, then the tab is closed without logging out: a call placed
    # one second later rings the deskphone.
    chosen = tab.call("selectDevice", {"api": api, "device": "webrtc", **user})
    assert (chosen["body"]["effective"], chosen["body"]["reason"]) == ("webrtc", "selected")
    desk = deskphone_answers(site, desk_port)
    tab.close_page()
    time.sleep(1)
    outcome = site.mds_calls("1000").run()
    assert outcome.ok, outcome.describe()
    assert desk.wait(10).received("INVITE")[0].call_id == outcome.sent("INVITE")[0].call_id
    assert proxy.device("1000")["reason"] == "logged_out"
