"""The seed's "No Answer and Forwarding", "Voicemail" and "Limitations", end to end:
forwarding rules applied to the device in use, the dead-browser fallback inside the same
call, voicemail access and message-waiting from and to both devices."""
import re
import time

import pytest

from tests.support.fixtures import DESKPHONE_IP
from tests.support.proxy import ROOT
from tests.support.sipp import free_port
from tests.support.sipua import WsPhone, webrtc_sdp
from tests.support.devices import (assert_reached_mds_as, browser, browser_calls_mds,
                                   deskphone, deskphone_calls_mds, in_background, wait_until)

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line

RING_SECONDS = 3


def forwards(site, number="1000", **rules):
    body = {rule: {"enabled": True, "destination": dest} for rule, dest in rules.items()
            if rule != "dnd"}
    body["dnd"] = rules.get("dnd", False)
    status, stored, _ = site.proxy.api("PUT", f"/api/v1/users/{number}/forwards", body)
    assert status == 200, stored
    return stored


@pytest.fixture
def alice(site):
    """1000 with a short ring time, so that no-answer tests stay short."""
    site.proxy.provision_user("1000", "ua", mds="mds1", name="Alice", ring_seconds=RING_SECONDS)
    return site


def diversion_of(invite):
    return invite.header_all("Diversion")


def test_no_answer_on_browser_forwards_after_ring_time_without_ringing_deskphone(alice):
    site = alice
    forwards(site, noanswer="2000")
    desk = deskphone(site)
    tab = browser(site)
    destination = site.mds_answer()
    caller = site.mds_calls("1000").start()
    tab.ring(tab.wait_request("INVITE", timeout=5))
    rang_at = time.monotonic()
    tab.wait_request("CANCEL", timeout=RING_SECONDS + 3)
    assert abs(time.monotonic() - rang_at - RING_SECONDS) < 1.0
    assert caller.wait(15).ok
    invite = destination.wait(10).received("INVITE")[0]
    assert invite.ruri.startswith("sip:2000@")
    assert diversion_of(invite) == [
        f"<sip:1000@{site.proxy.domain}>;reason=no-answer;counter=1"]
    assert desk.stop().received("INVITE") == []
    tab.close()


def test_busy_deskphone_forwards_to_busy_destination(site):
    forwards(site, busy="2001")
    port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, port,
                     keys={"user": "1000", "password": "secret"}).run().received(200)
    busy_phone = site.sipp("deskphone_reject", DESKPHONE_IP, port, keys={"code": "486"}).start()
    site.proxy.select_device("1000", "deskphone")
    destination = site.mds_answer()
    assert site.mds_calls("1000").run().ok
    assert busy_phone.wait(10).received("INVITE")
    invite = destination.wait(10).received("INVITE")[0]
    assert invite.ruri.startswith("sip:2001@")
    assert diversion_of(invite) == [f"<sip:1000@{site.proxy.domain}>;reason=user-busy;counter=1"]


@pytest.mark.parametrize("rules,reason", [({"unconditional": "2002"}, "unconditional"),
                                          ({"dnd": True, "busy": "voicemail"}, "user-busy")])
def test_unconditional_and_dnd_apply_before_any_device_rings(site, rules, reason):
    forwards(site, **rules)
    desk = deskphone(site)
    tab = browser(site)
    destination = site.mds_answer()
    started = time.monotonic()
    assert site.mds_calls("1000").run().ok
    invite = destination.wait(10).received("INVITE")[0]
    assert time.monotonic() - started < 3          # at once: nothing rang first
    expected_user = "vm-1000" if "busy" in rules else "2002"
    assert invite.ruri.startswith(f"sip:{expected_user}@")
    assert diversion_of(invite) == [f"<sip:1000@{site.proxy.domain}>;reason={reason};counter=1"]
    assert tab.requests("INVITE") == []
    assert desk.stop().received("INVITE") == []
    tab.close()


def test_nobody_registered_goes_to_no_answer_destination_as_unavailable(site):
    forwards(site, noanswer="voicemail")
    destination = site.mds_answer()
    assert site.mds_calls("1000").run().ok
    invite = destination.wait(10).received("INVITE")[0]
    assert invite.ruri.startswith("sip:vm-1000@")
    assert diversion_of(invite) == [f"<sip:1000@{site.proxy.domain}>;reason=unavailable;counter=1"]


def test_dnd_without_busy_rule_answers_486(site):
    forwards(site, dnd=True)
    tab = browser(site)
    assert site.mds_calls("1000", scenario="mds_call_expect_error").run().received(486)
    assert tab.requests("INVITE") == []
    tab.close()


@pytest.mark.parametrize("code", [603, 600])
def test_device_refusal_without_matching_rule_reaches_caller(site, code):
    if code == 600:
        forwards(site, busy="2003")       # 600 is relayed even with a busy rule
    tab = browser(site)
    destination = site.mds_answer()
    caller = site.mds_calls("1000", scenario="mds_call_expect_error").start()
    tab.reject(tab.wait_request("INVITE", timeout=5), code, "Decline")
    assert caller.wait(15).received(code)
    assert destination.stop().received("INVITE") == []
    tab.close()


# --- Ring time: counted from the INVITE sent to the device, whatever it answers meanwhile --

EARLY_MEDIA_EVERY = 1.5     # seconds between the 183s of a device playing early media


def ring_with_early_media(tab, invite):
    """A browser that rings at once, then sends a 183 with an SDP answer 1.5 s later and
    every 1.5 s after (early media, as some softphones do) until the INVITE is cancelled."""
    def early_media():
        tab.ring(invite)
        time.sleep(EARLY_MEDIA_EVERY)
        while tab.provisional(invite, 183, "Session Progress", webrtc_sdp(answer=True)):
            time.sleep(EARLY_MEDIA_EVERY)
    return in_background(early_media)[0]


def assert_browser_ring_time_holds_with_early_media(site):
    """The caller gets 408 at the ring time after the browser's INVITE, not a ring time
    re-armed by each 183 (the first one, 1.5 s in, once made it 4.5 s for 3)."""
    tab = browser(site)
    caller = site.mds_calls("1000", scenario="mds_call_expect_error").start()
    invite = tab.wait_request("INVITE", timeout=5)
    rang_at = time.monotonic()
    sender = ring_with_early_media(tab, invite)
    tab.wait_request("CANCEL", timeout=RING_SECONDS + 5)
    assert abs(time.monotonic() - rang_at - RING_SECONDS) < 0.5
    assert caller.wait(15).received(408)
    sender.join(EARLY_MEDIA_EVERY + 1)
    assert sum(1 for m in tab.sent if m.is_response and m.status == 183) >= 1
    tab.close()


def deskphone_with_early_media(site, port):
    assert site.sipp("deskphone_register", DESKPHONE_IP, port,
                     keys={"user": "1000", "password": "secret"}).run().received(200)
    return site.sipp("deskphone_early_media", DESKPHONE_IP, port, timeout=30).start()


def ring_seconds_seen(phone):
    """From the INVITE a SIPp device received to the CANCEL that ended its ringing, by
    SIPp's own clock; and how many 183s it sent meanwhile."""
    invite = phone.wait_for("INVITE", timeout=10)[0]
    cancel = phone.wait_for("CANCEL", timeout=RING_SECONDS + 10)[0]
    early = [m for m in phone.messages() if m.direction == "sent" and m.is_response
             and m.status == 183 and invite.epoch <= m.epoch <= cancel.epoch]
    return cancel.epoch - invite.epoch, len(early)


def test_ring_time_is_not_rearmed_by_a_browsers_early_media(alice):
    assert_browser_ring_time_holds_with_early_media(alice)


def test_ring_time_is_not_rearmed_by_a_deskphones_early_media(alice):
    site = alice
    phone = deskphone_with_early_media(site, free_port(DESKPHONE_IP))
    site.proxy.select_device("1000", "deskphone")
    caller = site.mds_calls("1000", scenario="mds_call_expect_error").start()
    rang, early = ring_seconds_seen(phone)
    assert abs(rang - RING_SECONDS) < 0.5 and early >= 1, (rang, early)
    assert caller.wait(15).received(408)
    phone.stop()


def test_ring_time_of_the_deskphone_after_a_dead_browser_is_whole_and_not_rearmed(alice):
    """Rule 7: the deskphone rings with the full ring time from its own INVITE, and its
    early media does not stretch it."""
    site = alice
    phone = deskphone_with_early_media(site, free_port(DESKPHONE_IP))
    frozen = WsPhone(site.proxy.ws_url, "1000", "secret", site.proxy.domain, trying=False)
    frozen.connect()
    assert frozen.register().status == 200
    caller = site.mds_calls("1000", scenario="mds_call_expect_error").start()
    frozen.wait_request("INVITE", timeout=5)
    rang, early = ring_seconds_seen(phone)
    assert abs(rang - RING_SECONDS) < 0.5 and early >= 1, (rang, early)
    assert caller.wait(15).received(408)
    phone.stop()
    frozen.close()


def test_no_answer_without_rule_gives_408(alice):
    tab = browser(alice)
    caller = alice.mds_calls("1000", scenario="mds_call_expect_error").start()
    tab.ring(tab.wait_request("INVITE", timeout=5))
    assert caller.wait(RING_SECONDS + 10).received(408)
    tab.close()


def test_frozen_browser_falls_back_to_deskphone_in_the_same_call(alice):
    site = alice
    desk = deskphone(site)
    frozen = WsPhone(site.proxy.ws_url, "1000", "secret", site.proxy.domain, trying=False)
    frozen.connect()
    assert frozen.register().status == 200
    caller = site.mds_calls("1000").start()
    invite = frozen.wait_request("INVITE", timeout=5)
    sent_at = time.monotonic()
    rang = desk.wait_for("INVITE", timeout=8)[0]
    assert 2.0 < time.monotonic() - sent_at < 4.5
    assert rang.call_id == invite.call_id                # the same call
    assert caller.wait(15).ok
    assert site.proxy.device("1000")["registered"] == {"webrtc": False, "deskphone": True}
    frozen.close()


# --- Voicemail and message-waiting -----------------------------------------------------

def test_voicemail_number_from_both_devices_reaches_mds_with_identity(site):
    assert_reached_mds_as(site, browser_calls_mds(site, "*98"), "*98", "1000")
    assert_reached_mds_as(site, deskphone_calls_mds(site, "*98", "1000"), "*98", "1000")


def test_message_waiting_notify_reaches_every_device(site):
    desk = deskphone(site)
    tab = browser(site)
    outcome = site.mds_calls("1000", scenario="mds_mwi_notify").run()
    assert outcome.ok, outcome.describe()
    assert wait_until(lambda: tab.requests("NOTIFY"), 3)
    assert "Messages-Waiting: yes" in tab.requests("NOTIFY")[0].body
    assert desk.stop().received("NOTIFY")
    tab.close()


def test_deskphone_mwi_subscription_is_relayed_to_mds_and_notified(site):
    mds = site.sipp("mds_mwi_subscription", "127.0.0.10", site.mds_port).start()
    outcome = site.sipp("deskphone_subscribe_mwi", DESKPHONE_IP,
                        keys={"user": "1000", "password": "secret"}).run()
    assert outcome.ok, outcome.describe()
    assert outcome.received("NOTIFY")
    subscribe = mds.wait(10).received("SUBSCRIBE")[0]
    assert subscribe.ruri.startswith("sip:1000@127.0.0.10")
    assert subscribe.header_all("P-Asserted-Identity") == [f"<sip:1000@{site.proxy.domain}>"]


def test_forward_loop_between_local_users_ends_in_482(site):
    for number, other in (("3000", "3001"), ("3001", "3000")):
        site.proxy.provision_user(number, "ua", name=f"User {number}")   # standalone
        forwards(site, number=number, unconditional=other)
    outcome = site.mds_calls("3000", scenario="mds_call_expect_error").run()
    assert outcome.received(482), outcome.describe()


def test_no_answer_forward_to_a_local_user_is_answered_and_hung_up_as_that_users_call(site):
    """Standalone users: 3000's deskphone rings out its ring time, the call is retargeted
    (failure route) to 3001's deskphone, which answers; the MDS's BYE ends 3001's call."""
    for number in ("3000", "3001"):
        site.proxy.provision_user(number, "ua", name=f"User {number}", ring_seconds=2)
    forwards(site, number="3000", noanswer="3001")
    port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, port, keys={
        "user": "3000", "password": "secret", "expires": "600"}).run().received(200)
    ringing = site.sipp("deskphone_ring", DESKPHONE_IP, port, timeout=20).start()
    answering = deskphone(site, number="3001")
    assert site.mds_calls("3000", talk_ms=1500).run().ok
    assert ringing.wait_for("CANCEL", timeout=5)
    assert answering.wait(10).received("BYE")

    def call_history(number):
        status, body, _ = site.proxy.api("GET", f"/api/v1/users/{number}/history")
        assert status == 200, body
        return [(e["answered"], e["forwarded_to"]) for e in body]
    assert call_history("3000") == [(False, "3001")]
    assert call_history("3001") == [(True, None)]
    status, presence, _ = site.proxy.api("GET", "/api/v1/users/3001/presence",
                                         auth=("1001", "secret"))
    assert (status, presence["state"]) == (200, "available"), presence


@pytest.mark.parametrize("transport", ["t1", "l1"])
def test_ring_time_also_ends_ringing_on_tcp_and_tls_deskphones(alice, transport):
    site = alice
    port = site.proxy.tls_port if transport == "l1" else site.proxy.sip_port
    desk = site.sipp("deskphone_online", DESKPHONE_IP, transport=transport, timeout=30,
                     remote=f"{site.proxy.listen}:{port}",
                     keys={"user": "1000", "password": "secret"},
                     ooc_scenario="deskphone_ring").start()
    assert wait_until(lambda: site.proxy.device("1000")["registered"]["deskphone"], 5)
    site.proxy.select_device("1000", "deskphone")
    caller = site.mds_calls("1000", scenario="mds_call_expect_error").start()
    desk.wait_for("INVITE", timeout=5)
    rang_at = time.monotonic()
    desk.wait_for("CANCEL", timeout=RING_SECONDS + 3)
    assert abs(time.monotonic() - rang_at - RING_SECONDS) < 1.0
    assert caller.wait(15).received(408)
    desk.stop()


def test_longest_ring_time_is_not_cut_by_the_invite_lifetime():
    """Checked without waiting 300 s (tm's lifetime is not readable over RPC): each
    device's ring sets the transaction's lifetime to its ring time, and a forward to the
    MDS goes back to tm's default, which the configuration keeps above a 300 s ring on
    the browser and a 300 s ring on the deskphone after rule 7 together."""
    cfg = (ROOT / "kamailio.cfg").read_text()
    lifetime = re.search(r'modparam\("tm", "max_inv_lifetime", (\d+)\)', cfg)
    assert lifetime and int(lifetime.group(1)) >= 2 * 300_000 + 30_000
