"""Several proxies on one Redis (issue 8, part 2): the browser's WebSocket is held by the
first proxy, the deskphone registered through the second, the MDS calls through either.
A call entering the proxy that does not hold the browser's connection is relayed through
the one that does (lib/features/nodes)."""
import socket
import time
import uuid

import pytest

from tests.support.fixtures import MDS_IP, Site
from tests.support.proxy import Proxy
from tests.support.sipp import free_port
from tests.support.devices import browser, deskphone, wait_until


@pytest.fixture
def cluster(redis_url, tmp_path):
    """(a, b): Sites of two proxies on one Redis, on 127.0.0.2 and 127.0.0.3."""
    a = Proxy(redis_url, tmp_path / "a", listen="127.0.0.2", node_id="node-a")
    b = Proxy(redis_url, tmp_path / "b", listen="127.0.0.3", node_id="node-b")
    # Both serve one SIP domain (the contract's condition for sharing a Redis).
    b.env["UA_DOMAIN"] = a.env["UA_DOMAIN"] = "ua.test"
    # TLS required as it is off loopback: a proxy reaches the other's API as another host
    b.env["UA_API_REQUIRE_TLS"] = a.env["UA_API_REQUIRE_TLS"] = "1"
    try:
        a.start()
        # ... with one certificate (the API servers relay actions to one another over HTTPS)
        b.env["UA_TLS_CERT"], b.env["UA_TLS_KEY"] = (str(a.workdir / "var" / "tls" / name)
                                                     for name in ("cert.pem", "key.pem"))
        b.start()
        mds_port = free_port(MDS_IP)
        b.provision_mds("mds1", MDS_IP, mds_port)
        a.provision_user("1000", "ua", mds="mds1", name="Alice")
        yield Site(a, mds_port, tmp_path), Site(b, mds_port, tmp_path)
    finally:
        a.stop()
        b.stop()


def browser_answers(tab, mds, hang_up):
    """The tab answers the MDS's call; hang_up: the tab ends it, else the MDS does."""
    invite = tab.wait_request("INVITE", timeout=5)
    assert invite.ruri == tab.contact_uri        # the relay's parameter is taken off
    call = tab.answer(invite)
    tab.wait_request("ACK", timeout=5)
    if hang_up:
        assert call.bye().status == 200
    else:
        call.wait_bye(timeout=10)
    outcome = mds.wait(15)
    assert outcome.returncode == 0, outcome.stderr
    return invite


def test_calls_entering_either_proxy_ring_the_selected_device(cluster):
    a, b = cluster
    tab = browser(a)
    desk = deskphone(b)
    for entry in (a, b):
        for hang_up in (False, True):     # BYE from the MDS, then from the browser
            scenario = "mds_call_remote_bye" if hang_up else "mds_call"
            invite = browser_answers(tab, entry.mds_calls("1000", scenario=scenario).start(),
                                     hang_up)
            # In-dialog requests pass the proxy the call entered and the one holding the
            # WebSocket, both ways (the browser's BYE reaches the MDS through both).
            hops = {h for h in ("127.0.0.2", "127.0.0.3")
                    if h in " ".join(invite.header_all("Record-Route"))}
            assert hops == {"127.0.0.2", entry.proxy.listen}
    assert desk.stop().received("INVITE") == []

    # The selection made through one proxy's API applies to a call the other routes; the
    # deskphone registered through B is reached from A directly (UDP).
    assert b.proxy.select_device("1000", "deskphone")[1]["effective"] == "deskphone"
    desk = a.sipp("deskphone_answer", desk.sipp.local_ip, desk.sipp.local_port,
                  timeout=20).start()
    assert a.mds_calls("1000").run().returncode == 0
    assert len(desk.wait(10).received("INVITE")) == 1
    assert a.proxy.select_device("1000", "webrtc")[1]["effective"] == "webrtc"

    # The WebSocket closes on A: a call entering B rings the deskphone within a second.
    desk = b.sipp("deskphone_answer", desk.sipp.local_ip, desk.sipp.local_port,
                  timeout=20).start()
    invites_before = len(tab.requests("INVITE"))
    closed_at = time.monotonic()
    tab.close()
    assert wait_until(lambda: not b.proxy.device("1000")["registered"]["webrtc"], 1)
    logged_out = time.monotonic() - closed_at
    outcome = b.mds_calls("1000").run()
    rang = desk.wait(10)
    print(f"\nscale-out: WebSocket close on A seen by B's API after {logged_out * 1000:.0f} ms;"
          f" call entering B {time.monotonic() - closed_at:.2f} s after the close answered")
    assert outcome.returncode == 0, outcome.stderr
    assert len(rang.received("INVITE")) == 1
    assert len(tab.requests("INVITE")) == invites_before


def test_relay_is_refused_to_anyone_but_a_proxy_of_the_cluster(cluster):
    a, _ = cluster
    tab = browser(a)
    # A device forging the relay parameter gets no path to another device's connection.
    ip = "127.0.0.30"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        sock.settimeout(3)
        port = sock.getsockname()[1]
        call_id = uuid.uuid4().hex
        request = (
            f"OPTIONS {tab.contact_uri};ua_relay=kZM SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK{call_id[:10]};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:x@{ip}>;tag=1\r\nTo: <sip:1000@ua.test>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        sock.sendto(request.encode(), ("127.0.0.2", a.proxy.sip_port))
        answer = sock.recv(65535).decode()
    assert answer.startswith("SIP/2.0 403 "), answer
    assert tab.requests("OPTIONS") == []
    tab.close()
