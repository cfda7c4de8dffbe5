"""The UC Assistant's live view in a real browser (contract sections 5 and 12): a page in
headless chromium reads the event stream with fetch and the user's own credentials while
baresip is the deskphone and SIPp the MDS; a second browser logs in with JsSIP over WSS
and gets the waiting messages at once, then its tab closes."""
import time

import pytest

from tests.support.baresip import Baresip
from tests.support.browser import Softphone

pytestmark = pytest.mark.usefixtures("quiet_log")
USER = {"user": "1000", "password": "secret"}


def wait_event(tab, kind, check=lambda data: True, after=0, timeout=5):
    """(index, data) of the first `kind` event from the after-th on that passes check."""
    deadline = time.monotonic() + timeout
    while True:
        seen = tab.call("eventsSeen")
        for index, item in enumerate(seen[after:], after):
            if item["event"] == kind and check(item["data"]):
                return index, item["data"]
        assert time.monotonic() < deadline, f"no such {kind} event: {seen}"
        time.sleep(0.1)


def test_the_page_sees_calls_devices_fallback_and_voicemail(site, tmp_path):
    proxy = site.proxy
    for name in ("watcher", "other"):
        (tmp_path / name).mkdir()
    desk = Baresip(tmp_path, "1000", "secret", proxy.sip_addr)
    desk.start()
    try:
        with Softphone(tmp_path / "watcher") as page, Softphone(tmp_path / "other") as other:
            desk.wait_registered()
            page.open()
            assert page.call("watchEvents", {"api": proxy.api_url, **USER})["status"] == 200
            index, _ = wait_event(page, "device", lambda d: d["effective"] == "deskphone")

            # The MDS tells of new messages (baresip refuses its NOTIFY without
            # Subscription-State): a voicemail event, and the proxy keeps the summary.
            site.mds_calls("1000", scenario="mds_mwi_notify").run()
            index, _ = wait_event(page, "voicemail", lambda v: v == {"new": 2, "old": 0},
                                  after=index)

            # Another tab logs in: the last message-summary reaches it at once.
            other.open()
            other.call("login", {"wss": proxy.wss_url, "domain": proxy.domain, **USER})
            deadline = time.monotonic() + 3
            while not other.call("notifiesSeen"):
                assert time.monotonic() < deadline, "no message-summary NOTIFY"
                time.sleep(0.1)
            notify = other.call("notifiesSeen")[0]
            assert notify["event"] == "message-summary"
            assert "Voice-Message: 2/0" in notify["body"]
            index, _ = wait_event(page, "device", lambda d: d["effective"] == "webrtc",
                                  after=index)

            # The deskphone chosen from the page; a call rings it, is answered, ends.
            assert page.call("selectDevice", {"api": proxy.api_url, "device": "deskphone",
                                              **USER})["status"] == 200
            index, _ = wait_event(page, "device", lambda d: d["effective"] == "deskphone",
                                  after=index)
            mds = site.mds_calls("1000").start()
            desk.wait_event("CALL_INCOMING")
            ring, call = wait_event(page, "call", lambda c: c["state"] == "ringing",
                                    after=index)
            assert (call["direction"], call["device"]) == ("in", "deskphone")
            desk.command("accept")
            answered, _ = wait_event(page, "call", lambda c: c["id"] == call["id"]
                                     and c["state"] == "answered", after=ring)
            assert mds.wait(15).ok
            index, _ = wait_event(page, "call", lambda c: c["id"] == call["id"]
                                  and c["state"] == "ended", after=answered)

            # The browser chosen again, then its tab closes: the fallback is a device event.
            assert page.call("selectDevice", {"api": proxy.api_url, "device": "webrtc",
                                              **USER})["status"] == 200
            index, _ = wait_event(page, "device", lambda d: d["effective"] == "webrtc",
                                  after=index)
            other.close_page()
            index, fallback = wait_event(page, "device", lambda d: d["reason"] == "logged_out",
                                         after=index, timeout=3)
            assert fallback["effective"] == "deskphone"
    finally:
        desk.stop()
