"""Use Deskphone with a real SIP stack: baresip (Debian's 1.0.0) as user 1000's deskphone
over UDP and over TLS, the MDS played by SIPp, the UC Assistant by our WebSocket client.
Then a standalone call between baresip and a browser-type client, with media through a
real rtpengine.

The browser-type side is `WsPhone` (SIP over WebSocket, as JsSIP does it). Debian's
baresip 1.0 has no SIP-over-WebSocket transport, so a second baresip cannot play the
browser, and WsPhone has no DTLS-SRTP: media is measured on the call the browser-type
client places with a plain RTP/AVP offer from a small RTP endpoint of the test (rtpengine
anchors it: RTP flows endpoint <-> rtpengine <-> baresip, counted at both ends). The call
baresip places towards the browser checks the signalling and the SDP adaptation both
ways; real WebRTC media with baresip is test_browser_baresip.py's part (Chromium + JsSIP).
"""
import re
import socket
import struct
import time

import pytest

from lib.features import registrar
from tests.support.baresip import Baresip
from tests.support.fixtures import MDS_IP
from tests.support.sipua import WsPhone
# the standalone calls use the same real rtpengine and media-adapting proxy as the media tests
from tests.proxy.test_media import media_proxy, rtpengine  # noqa: F401
from tests.support.devices import browser

RTP_IP = "127.0.0.61"       # the browser-type client's media endpoint
RTPENGINE_PORTS = range(40000, 50000)       # tests.support.rtpengineproc's port range


@pytest.fixture
def baresips(tmp_path):
    """Makes registered baresip deskphones; stops each by its PID at the end."""
    started = []

    def make(proxy, user="1000", transport="udp"):
        port = proxy.tls_port if transport == "tls" else proxy.sip_port
        phone = Baresip(tmp_path, user, "secret", f"{proxy.listen}:{port}", transport,
                        # The proxy's self-signed certificate, as an operator would give it.
                        cafile=proxy.workdir / "var" / "tls" / "cert.pem")
        started.append(phone)
        phone.start()
        phone.wait_registered()
        return phone

    yield make
    for phone in started:
        phone.stop()


def deskphone_contact(number):
    contacts = [c for c in registrar.contacts_of(number, time.time()).values()
                if c["class"] == "deskphone"]
    assert len(contacts) == 1, contacts
    return contacts[0]


# --- Use Deskphone: baresip rings, the browser does not; and the other way round ----------

@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_baresip_rings_when_deskphone_selected_and_not_when_webrtc_is(site, baresips,
                                                                       transport):
    desk = baresips(site.proxy, "1000", transport)
    contact = deskphone_contact("1000")
    assert contact["socket"].startswith(f"{transport}:"), contact     # the proxy's view
    tab = browser(site)
    assert site.proxy.device("1000")["registered"] == {"webrtc": True, "deskphone": True}

    status, body, _ = site.proxy.select_device("1000", "deskphone")
    assert (status, body["effective"], body["reason"]) == (200, "deskphone", "selected")
    mds = site.mds_calls("1000").start()
    incoming = desk.wait_event("CALL_INCOMING", timeout=5)
    assert f"@{MDS_IP}" in incoming["peeruri"], incoming
    desk.command("accept")
    desk.wait_event("CALL_ESTABLISHED", timeout=5)
    outcome = mds.wait(15)
    assert outcome.ok, outcome.describe()
    assert desk.wait_event("CALL_CLOSED", timeout=5)["id"] == incoming["id"]  # the MDS's BYE
    invites = desk.received("INVITE")
    assert [proto for proto, _ in invites] == [transport.upper()]
    assert invites[0][1].call_id == outcome.sent("INVITE")[0].call_id
    # The MDS's INVITE rang baresip well within a second.
    assert 0 <= incoming["at"] - outcome.sent("INVITE")[0].epoch < 1.0
    assert tab.requests("INVITE") == []

    # The browser selected again (and logged in): it rings, baresip does not.
    assert site.proxy.select_device("1000", "webrtc")[1]["effective"] == "webrtc"
    seen = len(desk.events)
    mds = site.mds_calls("1000").start()
    call = tab.answer(tab.wait_request("INVITE", timeout=5))
    tab.wait_request("ACK", timeout=5)
    call.wait_bye(timeout=10)
    assert mds.wait(15).ok
    assert desk.event_types()[seen:] == []
    assert len(desk.received("INVITE")) == 1
    tab.close()


# --- Standalone: baresip and a browser-type client, media through rtpengine ----------------

@pytest.fixture
def standalone(media_proxy, redis_url):
    """No MDS: 1000 (Unique Account, deskphone selected) and 2000 (browser line)."""
    media_proxy.provision_user("1000", "ua", name="Alice")
    media_proxy.provision_user("2000", "webrtc", name="Carol")
    media_proxy.select_device("1000", "deskphone")
    return media_proxy


class RtpEndpoint:
    """The browser-type client's media: sends 20 ms PCMU packets, counts what it receives
    (and from which source and SSRC)."""

    def __init__(self, ip=RTP_IP):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(0.005)
        self.ip, self.port = ip, self.sock.getsockname()[1]
        self.sent, self.received = 0, []

    def offer(self):
        return ("v=0\r\n"
                f"o=- 1 1 IN IP4 {self.ip}\r\ns=-\r\nc=IN IP4 {self.ip}\r\nt=0 0\r\n"
                f"m=audio {self.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
                "a=sendrecv\r\n")

    def talk(self, destination, packets, linger=0.2):
        """Send `packets` packets on a 20 ms clock; receive until `linger` s after the last."""
        next_at = time.monotonic()
        while self.sent < packets or time.monotonic() < next_at + linger:
            if self.sent < packets and time.monotonic() >= next_at:
                header = struct.pack("!BBHII", 0x80, 0, self.sent, self.sent * 160, 0x5EED)
                self.sock.sendto(header + b"\xff" * 160, destination)
                self.sent += 1
                next_at += 0.02
            try:
                data, source = self.sock.recvfrom(2048)
                self.received.append((source, struct.unpack("!I", data[8:12])[0]))
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


def sdp_media(sdp):
    address = re.search(r"^c=IN IP4 (\S+)", sdp, re.M).group(1)
    port, proto = re.search(r"^m=audio (\d+) (\S+)", sdp, re.M).groups()
    return address, int(port), proto


def test_standalone_browser_calls_baresip_media_flows_both_ways(standalone, baresips,
                                                               rtpengine):
    desk = baresips(standalone, "1000", "udp")
    media = RtpEndpoint()
    caller = WsPhone(standalone.ws_url, "2000", "secret", standalone.domain)
    caller.connect()
    assert caller.register().status == 200
    call = caller.invite(f"sip:1000@{standalone.domain}", sdp=media.offer(), wait=False)
    desk.wait_event("CALL_INCOMING", timeout=5)
    desk.command("accept")
    answer = call.wait_answer(10)
    assert answer.status == 200
    desk.wait_event("CALL_ESTABLISHED", timeout=5)

    # Both offers and answers are anchored on rtpengine: neither end sees the other.
    address, port, proto = sdp_media(answer.body)
    assert (address, proto) == ("127.0.0.1", "RTP/AVP") and port in RTPENGINE_PORTS
    offered = desk.received("INVITE")[0][1].body
    assert sdp_media(offered)[0] == "127.0.0.1" and RTP_IP not in offered
    assert call.call_id in rtpengine.call_ids()
    baresip_ssrc = int(re.search(r"^a=ssrc:(\d+)", answer.body, re.M).group(1))

    media.talk((address, port), packets=100)          # 2 s of 20 ms packets
    stats = desk.audio_stats()
    # baresip received what the client sent...
    assert 90 <= stats["rx"] <= media.sent, stats
    # ...and the client received baresip's tone, through rtpengine only.
    assert {source for source, _ in media.received} == {(address, port)}
    assert {ssrc for _, ssrc in media.received} == {baresip_ssrc}
    assert len(media.received) >= 90 and stats["tx"] >= len(media.received), \
        (len(media.received), stats)

    assert call.bye().status == 200
    assert desk.wait_event("CALL_CLOSED", timeout=5)
    assert wait_released(rtpengine, call.call_id)
    media.close()
    caller.close()


def wait_released(rtpengine, call_id, timeout=2):
    deadline = time.monotonic() + timeout
    while call_id in rtpengine.call_ids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_standalone_baresip_calls_browser_sdp_adapted_both_ways(standalone, baresips,
                                                                rtpengine):
    desk = baresips(standalone, "1000", "udp")
    tab = WsPhone(standalone.ws_url, "2000", "secret", standalone.domain)
    tab.connect()
    assert tab.register().status == 200
    desk.command("dial", f"sip:2000@{desk.registrar}")

    # baresip's plain offer reaches the browser as DTLS-SRTP with ICE and rtcp-mux...
    invite = tab.wait_request("INVITE", timeout=5)
    assert "UDP/TLS/RTP/SAVPF" in invite.body
    for attribute in ("a=fingerprint:", "a=ice-ufrag:", "a=rtcp-mux"):
        assert attribute in invite.body, attribute
    dialog = tab.answer(invite)
    # ...and the browser's DTLS answer reaches baresip as plain RTP/AVP on rtpengine.
    established = desk.wait_event("CALL_ESTABLISHED", timeout=5)
    assert established["direction"] == "outgoing"
    answers = [m for _, _, _, m in desk.trace() if m.status == 200 and "INVITE" in m.header("CSeq")]
    address, port, proto = sdp_media(answers[-1].body)
    assert (address, proto) == ("127.0.0.1", "RTP/AVP") and port in RTPENGINE_PORTS
    for attribute in ("a=fingerprint", "a=ice-ufrag", "a=candidate"):
        assert attribute not in answers[-1].body, attribute

    desk.command("hangup")
    dialog.wait_bye(timeout=5)
    desk.wait_event("CALL_CLOSED", timeout=5)
    assert wait_released(rtpengine, invite.call_id)
    tab.close()
