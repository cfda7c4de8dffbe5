"""The seed's Unique Account features, end to end: real Kamailio + Redis, the MDS and the
deskphone played by SIPp, the UC Assistant by a SIP-over-WebSocket client."""
import time

import pytest

from tests.support.devices import (assert_reached_mds_as, browser, browser_calls_mds, deskphone,
                                   deskphone_calls_mds, in_background, wait_until)
from tests.support.fixtures import DESKPHONE_IP
from tests.support.sipp import free_port
from tests.support.sipua import WsPhone

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line


# --- Use UC Assistant ------------------------------------------------------------------

def test_use_uc_assistant_only_the_browser_rings(site, redis_server):
    desk = deskphone(site)
    tab = browser(site)
    assert site.proxy.device("1000") == {
        "selected": "webrtc", "effective": "webrtc", "reason": "selected",
        "registered": {"webrtc": True, "deskphone": True}}

    # The MDS calls 1000; the browser answers, then hangs up itself.
    mds = site.mds_calls("1000", scenario="mds_call_remote_bye").start()
    invite = tab.wait_request("INVITE", timeout=5)
    assert invite.ruri == tab.contact_uri
    call = tab.answer(invite)
    tab.wait_request("ACK", timeout=5)
    # In-dialog routing needs no state at all: the BYE passes with the store down.
    redis_server.stop()
    try:
        assert call.bye().status == 200
    finally:
        redis_server.start()
    outcome = mds.wait(15)
    assert outcome.returncode == 0 and outcome.received("BYE"), outcome.stderr

    # Second call: the MDS hangs up, the BYE reaches the browser over its WebSocket.
    mds = site.mds_calls("1000").start()
    call = tab.answer(tab.wait_request("INVITE", timeout=5))
    tab.wait_request("ACK", timeout=5)
    call.wait_bye(timeout=10)
    assert mds.wait(15).returncode == 0

    assert desk.stop().received("INVITE") == []
    tab.close()


def test_use_uc_assistant_over_wss(site):
    tab = WsPhone(site.proxy.wss_url, "1000", "secret", site.proxy.domain, ssl_insecure=True)
    tab.connect()
    assert tab.register().status == 200
    mds = site.mds_calls("1000").start()
    call = tab.answer(tab.wait_request("INVITE", timeout=5))
    tab.wait_request("ACK", timeout=5)
    call.wait_bye(timeout=10)
    assert mds.wait(15).returncode == 0
    tab.drop()
    assert wait_until(lambda: site.proxy.device("1000")["reason"] == "none_registered", 1)


def test_keepalive_options_to_the_proxy_needs_no_credentials(site):
    tab = browser(site, register=False)
    assert tab.request("OPTIONS", f"sip:{site.proxy.domain}", auth=False).status == 200
    tab.close()


# --- Use Deskphone ---------------------------------------------------------------------

def test_use_deskphone_then_back_to_browser(site):
    desk = deskphone(site)
    tab = browser(site)
    status, body, _ = site.proxy.select_device("1000", "deskphone")
    assert status == 200 and body["effective"] == "deskphone" and body["reason"] == "selected"

    outcome = site.mds_calls("1000").run()
    assert outcome.returncode == 0, outcome.stderr
    assert len(desk.wait(10).received("INVITE")) == 1
    assert tab.requests("INVITE") == []

    assert site.proxy.select_device("1000", "webrtc")[1]["effective"] == "webrtc"
    desk = site.sipp("deskphone_answer", DESKPHONE_IP, desk.sipp.local_port, timeout=20).start()
    mds = site.mds_calls("1000").start()
    call = tab.answer(tab.wait_request("INVITE", timeout=5))
    call.wait_bye(timeout=10)
    assert mds.wait(15).returncode == 0
    assert desk.stop().received("INVITE") == []
    tab.close()


# --- Fallback --------------------------------------------------------------------------

def test_fallback_to_deskphone_when_browser_unregisters(site):
    desk = deskphone(site)
    tab = browser(site)
    assert tab.unregister().status == 200
    assert site.proxy.device("1000") == {
        "selected": "webrtc", "effective": "deskphone", "reason": "logged_out",
        "registered": {"webrtc": False, "deskphone": True}}
    assert site.mds_calls("1000").run().returncode == 0
    assert len(desk.wait(10).received("INVITE")) == 1
    assert tab.requests("INVITE") == []
    tab.close()


@pytest.mark.parametrize("ending", ["drop", "close"])
def test_fallback_when_browser_connection_ends_without_unregister(site, ending):
    desk = deskphone(site)
    tab = browser(site)
    getattr(tab, ending)()          # drop: killed browser, no Close frame
    time.sleep(1.0)                 # the contract: the next call one second later
    assert site.mds_calls("1000").run().returncode == 0
    assert len(desk.wait(10).received("INVITE")) == 1
    assert site.proxy.device("1000")["reason"] == "logged_out"


def test_selected_deskphone_unregistered_rings_browser(site):
    tab = browser(site)
    site.proxy.select_device("1000", "deskphone")
    assert site.proxy.device("1000")["reason"] == "selected_unavailable"
    mds = site.mds_calls("1000").start()
    call = tab.answer(tab.wait_request("INVITE", timeout=5))
    call.wait_bye(timeout=10)
    assert mds.wait(15).returncode == 0
    tab.close()


def test_nobody_registered_gets_480(site):
    outcome = site.mds_calls("1000", scenario="mds_call_expect_error").run()
    assert outcome.received(480), outcome.stderr
    assert site.proxy.device("1000")["reason"] == "none_registered"


# --- Two browser tabs ------------------------------------------------------------------

def test_two_tabs_both_ring_first_answer_wins_other_gets_cancel(site):
    first, second = browser(site), browser(site)
    mds = site.mds_calls("1000").start()
    invite_first = first.wait_request("INVITE", timeout=5)
    invite_second = second.wait_request("INVITE", timeout=5)
    second.ring(invite_second)
    # A person picks up after the other device rang: a 2xx crossing another branch's first
    # 1xx within microseconds can leave that branch uncancelled (Kamailio 5.6 tm marks it
    # "cancel on its 1xx" after the 1xx was handled; see README, Kamailio facts).
    time.sleep(0.05)
    call = first.answer(invite_first)
    cancel = second.wait_request("CANCEL", timeout=5)
    assert "cause=200" in (cancel.header("Reason") or "")
    call.wait_bye(timeout=10)
    assert mds.wait(15).returncode == 0
    first.close()
    second.close()


# --- Calls placed by a device ----------------------------------------------------------

def test_browser_call_reaches_mds_with_users_identity(site):
    forged = ("P-Asserted-Identity", f"<sip:9999@{site.proxy.domain}>")
    assert_reached_mds_as(site, browser_calls_mds(site, "2000", [forged]), "2000", "1000")


@pytest.mark.parametrize("transport", ["u1", "l1"])
def test_deskphone_call_reaches_mds_with_users_identity(site, transport):
    invite = deskphone_calls_mds(site, "2000", "1001", transport)
    assert_reached_mds_as(site, invite, "2000", "1001")


def test_unauthenticated_calls_never_reach_mds(site):
    mds = site.mds_answer()
    outcome = site.sipp("deskphone_call", DESKPHONE_IP,
                        keys={"service": "2000", "user": "1001", "password": "wrong"}).run()
    assert [r.status for r in outcome.received_responses() if r.status >= 400][-1] in (401, 403, 407)
    tab = browser(site, password="wrong", register=False)
    assert tab.invite(f"sip:2000@{site.proxy.domain}").response.status in (401, 403, 407)
    impostor = browser(site, number="1001", register=False)   # Bob's credentials, Alice's From
    impostor.auth_user, impostor.user = "1001", "1000"
    assert impostor.invite(f"sip:2000@{site.proxy.domain}").response.status == 403
    assert mds.stop().received("INVITE") == []


# --- Registrar -------------------------------------------------------------------------

def test_sip_line_cannot_register_a_browser(site):
    tab = browser(site, number="1001", register=False)
    assert tab.register().status == 403
    tab.close()


def test_register_expires_shortened_or_too_brief(site):
    port = free_port(DESKPHONE_IP)
    long = site.sipp("deskphone_register", DESKPHONE_IP, port,
                     keys={"user": "1000", "password": "secret", "expires": "86400"}).run()
    ok = long.received(200)[0]
    assert ok.header_all("Contact")[0].endswith(";expires=3600")
    brief = site.sipp("deskphone_register", DESKPHONE_IP, port,
                      keys={"user": "1000", "password": "secret", "expires": "10"}).run()
    assert brief.received(423)[0].header("Min-Expires") == "60"


def test_browser_wildcard_unregister_leaves_deskphone(site):
    desk = deskphone(site)
    tab = browser(site)
    response = tab.unregister_all()
    assert response.status == 200
    assert len(response.header_all("Contact")) == 1      # the deskphone's binding remains
    assert site.proxy.device("1000")["registered"] == {"webrtc": False, "deskphone": True}
    desk.stop()
    tab.close()


def test_sixth_browser_contact_is_refused(site):
    tabs = [browser(site) for _ in range(5)]
    sixth = browser(site, register=False)
    assert sixth.register().status == 403
    assert len(tabs[0].register().header_all("Contact")) == 5
    for tab in tabs + [sixth]:
        tab.close()


# --- Device API ------------------------------------------------------------------------

def test_device_api_errors(site):
    api = site.proxy.api
    assert api("GET", "/api/v1/users/1000/device", auth=("bearer", "wrong"))[0] == 401
    assert api("GET", "/api/v1/users/1000/device", auth=("1001", "secret"))[0] == 403
    assert api("GET", "/api/v1/users/1000/device", auth=("1000", "secret"))[0] == 200
    assert api("PUT", "/api/v1/users/1000/device", {"device": "phone"})[0] == 400
    assert api("GET", "/api/v1/users/4242/device")[0] == 404
    assert api("PUT", "/api/v1/users/1001/device", {"device": "webrtc"})[0] == 409


# --- Signalling through the proxy ------------------------------------------------------

def test_caller_cancel_reaches_the_ringing_browser(site):
    tab = browser(site)
    mds = site.mds_calls("1000", scenario="mds_call_cancel").start()
    tab.ring(tab.wait_request("INVITE", timeout=5))
    tab.wait_request("CANCEL", timeout=5)
    outcome = mds.wait(15)
    assert outcome.returncode == 0 and outcome.received(487), outcome.describe()
    tab.close()


def test_browser_busy_reaches_caller_and_proxy_acks_it(site):
    tab = browser(site)
    mds = site.mds_calls("1000", scenario="mds_call_expect_error").start()
    tab.reject(tab.wait_request("INVITE", timeout=5), 486, "Busy Here")
    tab.wait_request("ACK", timeout=5)                 # hop-by-hop ACK of the non-2xx
    assert mds.wait(15).received(486)
    tab.close()


def test_standalone_user_calls_local_user_by_the_same_rules(site):
    site.proxy.provision_user("2000", "webrtc", name="Carol")        # no MDS: standalone
    desk = deskphone(site)
    site.proxy.select_device("1000", "deskphone")
    caller = browser(site, number="2000")
    call = caller.invite(f"sip:1000@{site.proxy.domain}")
    assert call.response.status == 200
    assert call.bye().status == 200
    invite = desk.wait(10).received("INVITE")[0]
    assert invite.header_all("P-Asserted-Identity") == [f"<sip:2000@{site.proxy.domain}>"]
    caller.close()


def test_deskphone_behind_nat_is_reached_at_its_source_address(site):
    port = free_port(DESKPHONE_IP)
    registered = site.sipp("deskphone_register", DESKPHONE_IP, port, keys={
        "user": "1000", "password": "secret", "expires": "600",
        "contact_host": "192.168.1.50:5060"}).run()
    assert registered.received(200)
    desk = site.sipp("deskphone_answer", DESKPHONE_IP, port, timeout=20,
                     keys={"contact_host": "192.168.1.50:5060"}).start()
    site.proxy.select_device("1000", "deskphone")
    call = site.mds_calls("1000").run()
    assert call.returncode == 0
    assert desk.wait(10).received("INVITE")[0].ruri.startswith("sip:1000@192.168.1.50:5060")
    # its 2xx's Contact names where in-dialog requests really reach it
    answer = call.final_responses("INVITE")[0]
    assert f";alias=127.0.0.20~{port}~1" in answer.header("Contact"), answer.header("Contact")


def test_registering_someone_elses_number_is_forbidden(site):
    impostor = WsPhone(site.proxy.ws_url, "1000", "secret", site.proxy.domain, auth_user="1001")
    impostor.connect()
    assert impostor.register().status == 403
    assert site.proxy.device("1000")["registered"]["webrtc"] is False
    impostor.close()


@pytest.mark.parametrize("expires", ["soon", "-5", "99999999999"])
def test_malformed_register_gets_400_and_changes_nothing(site, expires):
    tab = browser(site, register=False)
    assert tab.register(expires=expires).status == 400
    assert site.proxy.device("1000")["registered"] == {"webrtc": False, "deskphone": False}
    tab.close()
