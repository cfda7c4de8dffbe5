"""Deskphone control from the UC Assistant (contract section 12) with real components:
baresip (Debian's 1.0, auto-answer on) as user 1000's deskphone, the MDS played by SIPp,
the UC Assistant's requests made with the user's own credentials."""
import json

import pytest

from tests.proxy.test_forwarding import diversion_of, forwards
from tests.proxy.test_ua_admin import as_json, cli, ok  # noqa: F401 (cli: a fixture)
from lib.decisions import control
from lib.features import kamailio_rpc
from tests.support.baresip import Baresip
from tests.support.control import USER, calls, wait_for
from tests.support.devices import browser
from tests.support.fixtures import DESKPHONE_IP, MDS_IP
from tests.support.scrape import scrape, value
from tests.support.sipp import free_port
from tests.support.udpclient import UdpClient

pytestmark = pytest.mark.usefixtures("quiet_log")


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

    status, body, _ = site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{dial_id}", auth=USER)
    assert status == 204, body
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
    before = scrape(site)
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
    after = scrape(site)       # the dashboard's counter (the 400s never reach the service)
    for action, refused in (("dial", 1), ("hangup", 4)):
        assert value(after, "ua_control_actions_total", action=action, outcome="refused") - \
            value(before, "ua_control_actions_total", action=action, outcome="refused") \
            == refused, action


def sipp_deskphone(site, scenario, **keys):
    """A SIPp deskphone of 1000 registered over UDP, then playing `scenario`; selected."""
    port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, port,
                     keys={"user": "1000", "password": "secret"}).run().received(200)
    phone = site.sipp(scenario, DESKPHONE_IP, port, keys=keys).start()
    assert site.proxy.select_device("1000", "deskphone")[1]["effective"] == "deskphone"
    return phone


def ringing(site):
    return wait_for(lambda: [c for c in calls(site.proxy) if c["state"] == "ringing"],
                    what="ringing call")[0]


def test_the_control_leg_carries_the_hints_and_shows_the_destination(site):
    phone = sipp_deskphone(site, "deskphone_reject", code="486", reason="Busy Here")
    status, body, _ = site.proxy.api("POST", "/api/v1/users/1000/calls",
                                     {"destination": "2000"}, auth=USER)
    assert status == 202, body
    outcome = phone.wait(10)
    assert outcome.ok, outcome.describe()
    invite = outcome.received("INVITE")[0]
    domain = site.proxy.domain
    assert invite.header("Call-Info") == f"<sip:{domain}>;answer-after=0"
    assert invite.header("Alert-Info") == f"<http://{domain}>;info=alert-autoanswer;delay=0"
    assert invite.header("Answer-Mode") == "Auto"
    assert invite.header("From").startswith(f'"2000" <sip:2000@{domain}>;tag=')
    assert invite.header("P-Asserted-Identity") == f'"2000" <sip:2000@{domain}>'
    assert invite.ruri.startswith(f"sip:1000@{DESKPHONE_IP}:")      # the deskphone only
    # the offer a deskphone gets (section 6): plain RTP/AVP, here the bridge's hold offer
    assert "m=audio " in invite.body and " RTP/AVP " in invite.body, invite.body
    # The deskphone refused: nothing in progress, nothing in the history.
    wait_for(lambda: calls(site.proxy) == [], what="refused click-to-dial gone")
    assert site.proxy.api("GET", "/api/v1/users/1000/history", auth=USER)[1] == []


def test_answer_offers_the_ringing_call_again_with_the_hints(site):
    phone = sipp_deskphone(site, "deskphone_ring_autoanswer")
    mds = site.mds_calls("1000").start()
    call = ringing(site)
    assert (call["direction"], call["device"]) == ("in", "deskphone")
    status, _, _ = site.proxy.api("POST", f"/api/v1/users/1000/calls/{call['id']}/answer",
                                  auth=USER)
    assert status == 202
    caller = mds.wait(15)
    assert caller.ok, caller.describe()
    # The caller's one INVITE transaction: ringing, then the deskphone's 200, no 487.
    finals = [r.status for r in caller.received_responses()
              if r.cseq_method == "INVITE" and r.status >= 200]
    assert finals[0] == 200 and 487 not in finals
    desk = phone.wait(10)
    assert desk.ok, desk.describe()
    first, again = desk.received("INVITE")
    assert first.header("Answer-Mode") is None
    assert again.header("Answer-Mode") == "Auto"
    assert again.header("Call-Info") == f"<sip:{site.proxy.domain}>;answer-after=0"
    assert again.call_id == first.call_id == caller.sent("INVITE")[0].call_id
    history = site.proxy.api("GET", "/api/v1/users/1000/history", auth=USER)[1]
    assert [(h["direction"], h["device"], h["answered"]) for h in history] == \
        [("in", "deskphone", True)]


def test_answer_is_refused_for_a_call_not_ringing_on_the_deskphone(site):
    tab = browser(site)
    mds = site.mds_calls("1000", scenario="mds_call_cancel", ring_ms=3000).start()
    tab.wait_request("INVITE", timeout=5)
    call = ringing(site)
    assert call["device"] == "webrtc"
    status, body, _ = site.proxy.api("POST", f"/api/v1/users/1000/calls/{call['id']}/answer",
                                     auth=USER)
    assert (status, list(body)) == (409, ["error"])
    mds.wait(15)
    tab.close()


def test_declining_a_ringing_call_applies_the_busy_forward(site):
    forwards(site, busy="2001")
    phone = sipp_deskphone(site, "deskphone_ring")
    destination = site.mds_answer()
    mds = site.mds_calls("1000").start()
    call = ringing(site)
    status, _, _ = site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{call['id']}",
                                  auth=USER)
    assert status == 204
    assert mds.wait(15).ok          # answered by the busy destination
    assert phone.wait(10).ok        # its branch cancelled
    invite = destination.wait(10).received("INVITE")[0]
    assert invite.ruri.startswith("sip:2001@")
    assert diversion_of(invite) == [f"<sip:1000@{site.proxy.domain}>;reason=user-busy;counter=1"]


def test_declining_without_a_busy_rule_gives_the_caller_603(site):
    phone = sipp_deskphone(site, "deskphone_ring")
    mds = site.mds_calls("1000", scenario="mds_call_expect_error").start()
    call = ringing(site)
    assert site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{call['id']}",
                          auth=USER)[0] == 204
    caller = mds.wait(15)
    assert caller.ok, caller.describe()
    assert caller.last_final("INVITE").status == 603
    assert phone.wait(10).ok


def test_hanging_up_a_placed_call_that_rings_cancels_it(site):
    far_end = site.sipp("deskphone_ring", MDS_IP, site.mds_port).start()   # the MDS rings
    port = free_port(DESKPHONE_IP)
    caller = site.sipp("deskphone_call_expect_error", DESKPHONE_IP, port,
                       keys={"user": "1000", "password": "secret", "service": "2000"}).start()
    call = wait_for(lambda: [c for c in calls(site.proxy) if c["direction"] == "out"],
                    what="placed call")[0]
    assert (call["state"], call["device"], call["peer"]) == ("dialing", "deskphone", "2000")
    assert site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{call['id']}",
                          auth=USER)[0] == 204
    assert far_end.wait(10).ok              # CANCEL, 487
    placed = caller.wait(10)
    assert placed.ok, placed.describe()
    assert placed.last_final("INVITE").status == 487
    wait_for(lambda: calls(site.proxy) == [], what="cancelled call gone")


def test_hanging_up_a_click_to_dial_that_still_rings_cancels_the_control_leg(site):
    phone = sipp_deskphone(site, "deskphone_ring")
    status, body, _ = site.proxy.api("POST", "/api/v1/users/1000/calls",
                                     {"destination": "2000"}, auth=USER)
    assert status == 202
    # listed as dialing once the control leg rings the deskphone (its Call-ID known)
    wait_for(lambda: calls(site.proxy)[0]["call_id"], what="control leg ringing")
    assert site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{body['id']}",
                          auth=USER)[0] == 204
    assert phone.wait(10).ok                # CANCEL, 487
    wait_for(lambda: calls(site.proxy) == [], what="cancelled click-to-dial gone")
    assert site.proxy.api("GET", "/api/v1/users/1000/history", auth=USER)[1] == []


def test_ua_admin_dials_lists_hangs_up_and_prints_the_events(site, deskphone, cli):
    shown = [json.loads(line) for line in
             ok(cli("events", "1000", "--count", "2", "--json")).stdout.splitlines()]
    assert [e["event"] for e in shown] == ["device", "presence"]
    assert shown[0]["data"]["effective"] == "deskphone"
    mds = site.mds_answer()
    dialled = as_json(cli("dial", "1000", "2000", "--json"))
    assert dialled["state"] == "dialing"
    wait_for(lambda: [c for c in calls(site.proxy) if c["state"] == "answered"], timeout=10,
             what="answered call")
    listed = ok(cli("calls", "1000")).stdout
    assert dialled["id"] in listed and "answered" in listed and "2000" in listed
    assert f"call {dialled['id']} hung up" in ok(cli("hangup", "1000", dialled["id"])).stdout
    assert mds.wait(10).ok
    wait_for(lambda: calls(site.proxy) == [], what="call ended")
    refused = cli("hangup", "1000", dialled["id"])
    assert refused.returncode == 1 and "HTTP 404" in refused.stderr


def test_hanging_up_an_answered_incoming_call_byes_the_deskphone_and_the_mds(site):
    """Any answered call, not only a click-to-dial's: an MDS call answered by a SIPp
    deskphone, hung up from the UC Assistant; both sides get their BYE."""
    phone = sipp_deskphone(site, "deskphone_answer")
    mds = site.mds_calls("1000", scenario="mds_call_remote_bye").start()
    call = wait_for(lambda: [c for c in calls(site.proxy) if c["state"] == "answered"],
                    timeout=10, what="answered call")[0]
    assert (call["direction"], call["device"]) == ("in", "deskphone")
    # The hang-up Kamailio takes from its API server, naming this very dialog, forged from
    # a device's address: refused, and the call goes on.
    ctl = f"unix:{site.proxy.workdir}/var/run/{site.proxy.env['UA_NODE_ID']}/ctl.sock"
    dialog = control.dialog_to_end(kamailio_rpc.structures(kamailio_rpc.call(
        ctl, "dlg.list_match", "callid", "eq", call["call_id"], timeout=5)))
    forger = UdpClient(DESKPHONE_IP, site.proxy.sip_addr, site.proxy.domain)
    identity = " ".join((dialog["call-id"], dialog["caller"]["tag"], dialog["callee"]["tag"]))
    forged, _ = forger.transact(forger.build(
        "NOTIFY", "1000", ruri=f"sip:{control.CONTROL_USER}@{site.proxy.sip_addr}",
        headers=[f"Event: {control.HANGUP_EVENT}", f"{control.HANGUP_HEADER}: {identity}"]))
    forger.close()
    assert forged.status == 403, forged
    assert [c["state"] for c in calls(site.proxy)] == ["answered"]
    status, body, _ = site.proxy.api("DELETE", f"/api/v1/users/1000/calls/{call['id']}",
                                     auth=USER)
    assert status == 204, body
    for side in (mds, phone):
        outcome = side.wait(10)
        assert outcome.ok, outcome.describe()
        assert outcome.received("BYE"), outcome.describe()
    wait_for(lambda: calls(site.proxy) == [], what="hung-up call gone")
    history = site.proxy.api("GET", "/api/v1/users/1000/history", auth=USER)[1]
    assert [(h["direction"], h["answered"]) for h in history][:1] == [("in", True)]
