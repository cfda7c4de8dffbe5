"""The seed's devices as the proxy tests play them: a browser (SIP over WebSocket), a SIPp
deskphone, and the calls they place to the MDS; waiting for what they see."""
import threading
import time

from tests.support.fixtures import DESKPHONE_IP, MDS_IP
from tests.support.sipp import free_port
from tests.support.sipua import WsPhone


def browser(site, number="1000", password="secret", register=True):
    phone = WsPhone(site.proxy.ws_url, number, password, site.proxy.domain)
    phone.connect()
    if register:
        assert phone.register().status == 200
    return phone


def deskphone(site, number="1000", password="secret", expires=600):
    """Register a SIPp deskphone over UDP, then keep it answering on the same port."""
    port = free_port(DESKPHONE_IP)
    result = site.sipp("deskphone_register", DESKPHONE_IP, port, keys={
        "user": number, "password": password, "expires": str(expires)}).run()
    assert result.received(200), result.stderr
    return site.sipp("deskphone_answer", DESKPHONE_IP, port, timeout=20).start()


def wait_until(check, timeout=3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def in_background(fn):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    thread.start()
    return thread, result


def browser_calls_mds(site, dialled, headers=()):
    """1000's browser places a call, answered by the MDS: the INVITE the MDS received."""
    mds = site.mds_answer()
    tab = browser(site)
    call = tab.invite(f"sip:{dialled}@{site.proxy.domain}", headers=headers)
    assert call.response.status == 200
    assert call.bye().status == 200
    tab.close()
    return mds.wait(10).received("INVITE")[0]


def deskphone_calls_mds(site, dialled, user, transport="u1"):
    """A SIPp deskphone of `user` places a call: the INVITE the MDS received."""
    mds = site.mds_answer()
    port = site.proxy.tls_port if transport == "l1" else site.proxy.sip_port
    outcome = site.sipp("deskphone_call", DESKPHONE_IP, transport=transport,
                        remote=f"{site.proxy.listen}:{port}",
                        keys={"service": dialled, "user": user, "password": "secret"}).run()
    assert outcome.ok, outcome.describe()
    return mds.wait(10).received("INVITE")[0]


def assert_reached_mds_as(site, invite, dialled, number):
    """Relayed as dialled to the user's MDS, with the user's identity and only that."""
    assert invite.ruri == f"sip:{dialled}@{MDS_IP}:{site.mds_port}"
    assert invite.header_all("P-Asserted-Identity") == [f"<sip:{number}@{site.proxy.domain}>"]
