"""Deskphone control from the UC Assistant (contract section 12) with real components:
baresip (Debian's 1.0, auto-answer on) as user 1000's deskphone, the MDS played by SIPp,
the UC Assistant's requests made with the user's own credentials."""
import time

import pytest

from tests.support.baresip import Baresip
from tests.support.fixtures import MDS_IP
from tests.test_unique_account import browser

pytestmark = pytest.mark.usefixtures("quiet_log")
USER = ("1000", "secret")


@pytest.fixture
def deskphone(site, tmp_path):
    """baresip as 1000's deskphone over UDP, answering by itself; the deskphone selected."""
    phone = Baresip(tmp_path, "1000", "secret", site.proxy.sip_addr, answermode="auto")
    phone.start()
    try:
        phone.wait_registered()
        assert site.proxy.select_device("1000", "deskphone")[0] == 200
        yield phone
    finally:
        phone.stop()


def calls(proxy, number="1000"):
    status, body, _ = proxy.api("GET", f"/api/v1/users/{number}/calls", auth=USER)
    assert status == 200, body
    return body


def wait_for(check, timeout=5, what="condition"):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    return found


def test_click_to_dial_rings_the_deskphone_which_calls_the_destination(site, deskphone):
    mds = site.mds_answer()
    status, body, _ = site.proxy.api("POST", "/api/v1/users/1000/calls",
                                     {"destination": "2000"}, auth=USER)
    assert status == 202, body
    assert body["state"] == "dialing"
    dial_id = body["id"]

    # baresip answers the control leg by itself, follows the REFER: the MDS gets the call
    # from 1000 with the proxy's identity.
    call = wait_for(lambda: [c for c in calls(site.proxy) if c["state"] == "answered"],
                    timeout=10, what="answered call")[0]
    assert (call["id"], call["direction"], call["device"], call["peer"]) == \
        (dial_id, "out", "deskphone", "2000")
    assert calls(site.proxy) == [call]      # the control leg is no call of its own

    status, _, _ = site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{dial_id}", auth=USER)
    assert status == 204
    outcome = mds.wait(10)
    assert outcome.ok, outcome.describe()
    invite = outcome.received("INVITE")[0]
    assert invite.ruri.startswith(f"sip:2000@{MDS_IP}:"), invite.ruri
    assert invite.header("P-Asserted-Identity") == f"<sip:1000@{site.proxy.domain}>"
    assert invite.call_id == call["call_id"]
    wait_for(lambda: "CALL_CLOSED" in deskphone.event_types()[-1:] and
             calls(site.proxy) == [], what="hang-up on baresip")

    history = site.proxy.api("GET", "/api/v1/users/1000/history", auth=USER)[1]
    assert [(h["direction"], h["device"], h["peer"], h["answered"], h["call_id"])
            for h in history] == [("out", "deskphone", "2000", True, call["call_id"])]


def test_control_is_refused_where_it_cannot_act(site):
    """409 while the browser is where calls ring (it places its own calls), 400 for a
    destination that is not a number, 403 for another user's calls, 404 for an unknown
    id: each changes nothing."""
    tab = browser(site)
    assert site.proxy.device("1000")["effective"] == "webrtc"
    status, body, _ = site.proxy.api("POST", "/api/v1/users/1000/calls",
                                     {"destination": "2000"}, auth=USER)
    assert (status, list(body)) == (409, ["error"])
    for bad in ("20a0", "", "sip:2000@x", 2000):
        status, body, _ = site.proxy.api("POST", "/api/v1/users/1000/calls",
                                         {"destination": bad}, auth=USER)
        assert (status, list(body)) == (400, ["error"]), bad
    for method, path in (("GET", "/calls"), ("POST", "/calls"),
                         ("DELETE", "/calls/dAAAAAAAAAAAAAAAA")):
        status, body, _ = site.proxy.api(method, "/api/v1/users/1000" + path,
                                         {"destination": "2000"} if method == "POST" else None,
                                         auth=("1001", "secret"))
        assert (status, list(body)) == (403, ["error"]), path
    for unknown in ("dAAAAAAAAAAAAAAAA", "c" + "QUJD", "nothing", "c!!"):
        status, body, _ = site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{unknown}",
                                         auth=USER)
        assert (status, list(body)) == (404, ["error"]), unknown
    assert calls(site.proxy) == []
    assert tab.requests("INVITE") == []
    tab.close()
