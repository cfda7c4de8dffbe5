"""The UC Assistant's live event stream (contract section 12) with real components: the
deskphone is baresip, the MDS SIPp, the browser our WebSocket client; the stream is read
as Server-Sent Events with the user's own credentials."""
import pytest

from tests.support.baresip import Baresip
from tests.support.eventstream import EventStream
from tests.support.devices import browser

pytestmark = pytest.mark.usefixtures("quiet_log")


@pytest.fixture
def phone(site, tmp_path):
    desk = Baresip(tmp_path, "1000", "secret", site.proxy.sip_addr)
    desk.start()
    try:
        desk.wait_registered()
        yield desk
    finally:
        desk.stop()


@pytest.fixture
def events(site):
    stream = EventStream(site.proxy.api_url, "1000", "secret")
    assert (stream.status, stream.content_type.split(";")[0]) == (200, "text/event-stream")
    yield stream
    stream.close()


def test_a_call_on_the_deskphone_shows_ringing_answered_ended(site, phone, events):
    events.wait("device", lambda d: d["effective"] == "deskphone")
    mds = site.mds_calls("1000").start()
    ring, call = events.wait("call", lambda c: c["state"] == "ringing")
    assert (call["direction"], call["device"]) == ("in", "deskphone")
    phone.wait_event("CALL_INCOMING")
    phone.command("accept")
    answered, _ = events.wait("call", lambda c: c["id"] == call["id"] and c["state"] == "answered",
                              after=ring)
    events.wait("presence", lambda p: p["state"] == "in_use", after=ring)
    assert mds.wait(15).ok      # the MDS hangs up
    events.wait("call", lambda c: c["id"] == call["id"] and c["state"] == "ended",
                after=answered)
    events.wait("presence", lambda p: p["state"] == "available", after=answered)


def test_device_changes_and_the_fallback_of_a_closed_tab_are_device_events(site, phone,
                                                                           events):
    tab = browser(site)
    index, _ = events.wait("device", lambda d: d["effective"] == "webrtc")
    site.proxy.select_device("1000", "deskphone")
    index, _ = events.wait("device", lambda d: (d["selected"], d["reason"]) ==
                           ("deskphone", "selected"), after=index)
    site.proxy.select_device("1000", "webrtc")
    index, _ = events.wait("device", lambda d: d["effective"] == "webrtc", after=index)
    tab.close()     # the tab goes away: calls fall back to the deskphone (rule 4)
    _, fallback = events.wait("device", lambda d: d["reason"] == "logged_out", after=index,
                              timeout=3)
    assert fallback["effective"] == "deskphone"


def test_a_message_summary_is_a_voicemail_event(site, events):
    # No device registered: the MDS gets 480, the proxy keeps the summary all the same.
    site.mds_calls("1000", scenario="mds_mwi_notify").run()
    assert events.wait("voicemail")[1] == {"new": 2, "old": 0}


def test_another_users_stream_is_refused(site):
    status, body, _ = site.proxy.api("GET", "/api/v1/users/1000/events", auth=("1001", "secret"))
    assert (status, list(body)) == (403, ["error"])
    status, body, _ = site.proxy.api("GET", "/api/v1/users/1000/events", auth=None)
    assert status == 401
