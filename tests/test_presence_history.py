"""The seed's "Presence", "Call history" and "History": what colleagues see of Alice
whichever device she uses, and her mixed history of both devices."""
import time

from tests.support.fixtures import DESKPHONE_IP
from tests.test_forwarding import forwards
from tests.test_unique_account import browser, deskphone, wait_until


def presence(site, number="1000", auth=("1001", "secret")):
    """Read as a colleague (Bob's own credentials): presence is readable by any user."""
    status, body, _ = site.proxy.api("GET", f"/api/v1/users/{number}/presence", auth=auth)
    assert status == 200, body
    return body


def presence_becomes(site, state, device, timeout=5):
    assert wait_until(lambda: presence(site) == {"state": state, "device": device}, timeout), \
        presence(site)


def history(site, limit=50):
    status, body, _ = site.proxy.api("GET", f"/api/v1/users/1000/history?limit={limit}")
    assert status == 200, body
    return body


# --- Presence --------------------------------------------------------------------------

def test_logged_out_presence_is_the_deskphones(site):
    presence_becomes(site, "unavailable", None)
    desk = deskphone(site)
    presence_becomes(site, "available", "deskphone")
    caller = site.mds_calls("1000", talk_ms=3000).start()
    desk.wait_for("INVITE", timeout=5)
    presence_becomes(site, "in_use", "deskphone")
    assert caller.wait(15).ok
    presence_becomes(site, "available", "deskphone")


def test_logged_in_presence_follows_the_browser(site):
    desk = deskphone(site)
    tab = browser(site)
    presence_becomes(site, "available", "webrtc")
    caller = site.mds_calls("1000", talk_ms=1000).start()
    invite = tab.wait_request("INVITE", timeout=5)
    tab.ring(invite)
    presence_becomes(site, "ringing", "webrtc")
    tab.answer(invite)
    presence_becomes(site, "in_use", "webrtc")
    assert caller.wait(15).ok
    presence_becomes(site, "available", "webrtc")
    desk.stop()
    tab.close()


def test_call_placed_from_deskphone_while_logged_in_shows_in_use(site):
    mds = site.mds_answer()
    tab = browser(site)
    placing = site.sipp("deskphone_call", DESKPHONE_IP, talk_ms=3000, keys={
        "service": "2000", "user": "1000", "password": "secret"}).start()
    presence_becomes(site, "in_use", "webrtc")
    assert placing.wait(15).ok
    presence_becomes(site, "available", "webrtc")
    mds.stop()
    tab.close()


def test_logged_in_with_deskphone_selected_shows_the_deskphones_state(site):
    tab = browser(site)
    site.proxy.select_device("1000", "deskphone")
    presence_becomes(site, "available", "webrtc")         # deskphone unregistered: rule 5
    desk = deskphone(site)
    presence_becomes(site, "available", "deskphone")
    caller = site.mds_calls("1000", talk_ms=3000).start()
    desk.wait_for("INVITE", timeout=5)
    presence_becomes(site, "in_use", "deskphone")
    assert caller.wait(15).ok
    tab.close()


def test_presence_is_readable_by_colleagues_only(site):
    assert site.proxy.api("GET", "/api/v1/users/1000/presence", auth=None)[0] == 401
    assert site.proxy.api("GET", "/api/v1/users/1000/presence", auth=("1001", "bad"))[0] == 401
    assert site.proxy.api("GET", "/api/v1/users/4242/presence")[0] == 404


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
