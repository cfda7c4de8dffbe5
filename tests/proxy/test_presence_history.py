"""The seed's "Presence", "Call history" and "History": what colleagues see of Alice
whichever device she uses, and her mixed history of both devices."""
import re
import time

import pytest

from lib.decisions.dialoginfo import parse_dialog_states
from tests.support.fixtures import DESKPHONE_IP
from tests.proxy.test_forwarding import forwards
from tests.support.devices import browser, deskphone, wait_until

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line


def presence(site, number="1000", auth=("1001", "secret")):
    """Read as a colleague (Bob's own credentials): presence is readable by any user."""
    status, body, _ = site.proxy.api("GET", f"/api/v1/users/{number}/presence", auth=auth)
    assert status == 200, body
    return body


WATCHER_IP = "127.0.0.30"
DIALOGS_OF = {"available": [], "unavailable": [], "ringing": ["early"], "in_use": ["confirmed"]}


@pytest.fixture
def watcher(site):
    """Bob's BLF key on Alice (a SIPp deskphone subscribed to her dialog state)."""
    process = site.sipp("blf_watcher", WATCHER_IP, timeout=120, keys={
        "service": "1000", "user": "1001", "password": "secret", "expires": "3600"}).start()
    process.wait_for("NOTIFY", timeout=5)
    yield process
    process.stop()


def versions(notifies):
    return [int(re.search(r'version="(\d+)"', n.body).group(1)) for n in notifies]


def presence_becomes(site, state, device, watcher=None, timeout=5):
    """The API shows it, and the watcher's latest NOTIFY says it (RFC 4235 mapping)."""
    assert wait_until(lambda: presence(site) == {"state": state, "device": device}, timeout), \
        presence(site)
    if watcher is not None:
        def notified():
            notifies = watcher.received("NOTIFY")
            return parse_dialog_states(notifies[-1].body) == DIALOGS_OF[state]
        assert wait_until(notified, timeout), watcher.received("NOTIFY")[-1].body
        numbers = versions(watcher.received("NOTIFY"))
        assert numbers == sorted(set(numbers)), numbers      # strictly increasing


def history(site, limit=50):
    status, body, _ = site.proxy.api("GET", f"/api/v1/users/1000/history?limit={limit}")
    assert status == 200, body
    return body


# --- Presence --------------------------------------------------------------------------

def test_logged_out_presence_is_the_deskphones(site, watcher):
    presence_becomes(site, "unavailable", None, watcher)
    desk = deskphone(site)
    presence_becomes(site, "available", "deskphone", watcher)
    caller = site.mds_calls("1000", talk_ms=3000).start()
    desk.wait_for("INVITE", timeout=5)
    presence_becomes(site, "in_use", "deskphone", watcher)
    assert caller.wait(15).ok
    presence_becomes(site, "available", "deskphone", watcher)


def test_logged_in_presence_follows_the_browser(site, watcher):
    desk = deskphone(site)
    tab = browser(site)
    presence_becomes(site, "available", "webrtc", watcher)
    caller = site.mds_calls("1000", talk_ms=1000).start()
    invite = tab.wait_request("INVITE", timeout=5)
    tab.ring(invite)
    presence_becomes(site, "ringing", "webrtc", watcher)
    tab.answer(invite)
    presence_becomes(site, "in_use", "webrtc", watcher)
    assert caller.wait(15).ok
    presence_becomes(site, "available", "webrtc", watcher)
    desk.stop()
    tab.close()


def test_call_placed_from_deskphone_while_logged_in_shows_in_use(site, watcher):
    mds = site.mds_answer()
    tab = browser(site)
    presence_becomes(site, "available", "webrtc", watcher)
    placing = site.sipp("deskphone_call", DESKPHONE_IP, talk_ms=3000, keys={
        "service": "2000", "user": "1000", "password": "secret"}).start()
    presence_becomes(site, "in_use", "webrtc", watcher)
    assert placing.wait(15).ok
    presence_becomes(site, "available", "webrtc", watcher)
    mds.stop()
    tab.close()


def test_logged_in_with_deskphone_selected_shows_the_deskphones_state(site, watcher):
    tab = browser(site)
    site.proxy.select_device("1000", "deskphone")
    presence_becomes(site, "available", "webrtc", watcher)   # deskphone unregistered: rule 5
    desk = deskphone(site)
    presence_becomes(site, "available", "deskphone", watcher)
    caller = site.mds_calls("1000", talk_ms=3000).start()
    desk.wait_for("INVITE", timeout=5)
    presence_becomes(site, "in_use", "deskphone", watcher)
    assert caller.wait(15).ok
    tab.close()


def test_presence_is_readable_by_colleagues_only(site):
    assert site.proxy.api("GET", "/api/v1/users/1000/presence", auth=None)[0] == 401
    assert site.proxy.api("GET", "/api/v1/users/1000/presence", auth=("1001", "bad"))[0] == 401
    assert site.proxy.api("GET", "/api/v1/users/4242/presence")[0] == 404


def test_unsubscribe_gets_a_terminating_notify(site):
    outcome = site.sipp("blf_watcher_unsubscribe", WATCHER_IP, hold_ms=500, keys={
        "service": "1000", "user": "1001", "password": "secret"}).run()
    assert outcome.ok, outcome.describe()
    assert outcome.received("NOTIFY")[-1].header("Subscription-State").startswith("terminated")
    # Every NOTIFY belongs to the dialog our 2xx made: its From tag is that 2xx's To tag.
    accepted = [m for m in outcome.final_responses("SUBSCRIBE") if m.status < 300][0]
    assert accepted.to_tag and {n.from_tag for n in outcome.received("NOTIFY")} == {accepted.to_tag}


def test_subscription_expiry_gets_a_terminating_notify(site):
    short = site.sipp("blf_watcher", WATCHER_IP, timeout=20, keys={
        "service": "1000", "user": "1001", "password": "secret", "expires": "2"})
    outcome = short.run()                      # ends on the terminating NOTIFY
    assert outcome.ok, outcome.describe()
    first, last = outcome.received("NOTIFY")[0], outcome.received("NOTIFY")[-1]
    assert last.header("Subscription-State").startswith("terminated;reason=timeout")
    assert last.epoch - first.epoch < 4


# Stopping Kamailio: its TCP main process may find the sockets its children passed
# connections on closed before it stops itself, which Kamailio logs as CRITICAL.
@pytest.mark.log_errors(r"CRITICAL: <core> \[core/pass_fd\.c:\d+\]: receive_fd\(\): EOF on \d+$")
def test_watchers_survive_a_proxy_restart(site, watcher):
    presence_becomes(site, "unavailable", None, watcher)
    site.proxy.restart()
    desk = deskphone(site)                     # changes after the restart are notified
    caller = site.mds_calls("1000", talk_ms=3000).start()
    desk.wait_for("INVITE", timeout=5)
    presence_becomes(site, "in_use", "deskphone", watcher)
    assert caller.wait(15).ok


def test_a_store_outage_is_answered_to_nobody_by_the_timer_or_a_closed_connection(
        site, redis_server):
    """The BLF timer and the close of a WebSocket meet the store down. Kamailio runs both on
    a stand-in request of its own, with no one behind it: nothing may be answered to it
    (it went to 1.0.0.127:5060, one ERROR a tick). With the store back, the timer works."""
    tab = browser(site)
    start = site.proxy.log_size()
    redis_server.stop()
    try:
        tab.close()
        time.sleep(2.5)                        # the BLF timer runs once a second
    finally:
        redis_server.start()
    log = site.proxy.log_since(start)
    assert "msg_send_buffer" not in log and site.proxy.errors_since(start) == [], log
    assert wait_until(lambda: site.proxy.api("GET", "/api/v1/health", auth=None)[0] == 200, 5)
    outcome = site.sipp("blf_watcher", WATCHER_IP, timeout=20, keys={
        "service": "1000", "user": "1001", "password": "secret", "expires": "2"}).run()
    assert outcome.ok, outcome.describe()
    assert outcome.received("NOTIFY")[-1].header("Subscription-State").startswith(
        "terminated;reason=timeout")


def test_subscribing_to_an_unknown_user_is_404(site):
    outcome = site.sipp("blf_watcher", WATCHER_IP, keys={
        "service": "4242", "user": "1001", "password": "secret"}).run()
    assert outcome.received(404)


# --- History ---------------------------------------------------------------------------

def test_history_mixes_both_devices_missed_and_forwarded_calls(site):
    desk = deskphone(site)
    tab = browser(site)
    talk = 2.0

    # 1. in, on the browser, answered, the MDS hangs up after `talk` seconds
    caller = site.mds_calls("1000", talk_ms=int(talk * 1000)).start()
    tab.answer(tab.wait_request("INVITE", timeout=5))
    assert caller.wait(15).ok
    # 2. out, from the browser, answered, the browser hangs up after `talk` seconds
    mds = site.mds_answer()
    call = tab.invite(f"sip:2000@{site.proxy.domain}")
    time.sleep(talk)
    call.bye()
    mds.wait(10)
    # 3. out, from the deskphone, while logged in with webrtc selected
    mds = site.mds_answer()
    assert site.sipp("deskphone_call", DESKPHONE_IP, talk_ms=int(talk * 1000), keys={
        "service": "2001", "user": "1000", "password": "secret"}).run().ok
    mds.wait(10)
    # 4. in, on the deskphone (selected), answered
    site.proxy.select_device("1000", "deskphone")
    assert site.mds_calls("1000", talk_ms=int(talk * 1000)).run().ok
    desk.wait(10)
    # 5. missed: the browser rings, the caller gives up
    site.proxy.select_device("1000", "webrtc")
    caller = site.mds_calls("1000", scenario="mds_call_cancel").start()
    tab.ring(tab.wait_request("INVITE", timeout=5))
    assert caller.wait(15).ok
    # 6. forwarded unconditionally: no device rings
    forwards(site, unconditional="2002")
    mds = site.mds_answer()
    assert site.mds_calls("1000").run().ok
    mds.wait(10)

    entries = history(site)
    assert [(e["direction"], e["device"], e["answered"], e["forwarded_to"]) for e in entries] == [
        ("in", None, False, "2002"),
        ("in", "webrtc", False, None),
        ("in", "deskphone", True, None),
        ("out", "deskphone", True, None),
        ("out", "webrtc", True, None),
        ("in", "webrtc", True, None)]
    for entry in entries:
        if entry["answered"]:
            assert abs(entry["duration_s"] - talk) < 1.0, entry
        else:
            assert entry["duration_s"] == 0
        assert entry["started_at"].endswith("Z") and entry["call_id"]
    # The MDS calls as "mds" (the SIPp caller's From); out calls name the dialled number.
    assert [e["peer"] for e in entries] == ["mds", "mds", "mds", "2001", "2000", "mds"]
    assert history(site, limit=2) == entries[:2]
    assert site.proxy.api("GET", "/api/v1/users/1000/history?limit=1001")[0] == 400
    assert site.proxy.api("GET", "/api/v1/users/1000/history", auth=("1001", "secret"))[0] == 403
    tab.close()
