"""Section 7's aggregated presence and section 8's history entry as pure functions, and
the BLF NOTIFY they produce."""
import pytest

from lib.decisions.dialoginfo import parse_dialog_states
from lib.features import blf, callstate

NOW = 1_800_000_000.0
BOTH = {"webrtc": True, "deskphone": True}
DESK_ONLY = {"webrtc": False, "deskphone": True}
NONE = {"webrtc": False, "deskphone": False}


def call(direction, device, state=None, expires_in=60):
    c = callstate.new_call(direction, device, "peer", NOW - 5)
    if state == callstate.IN_CALL:
        c = callstate.answered(c, NOW - 2)
    c["expires_at"] = NOW + expires_in
    return c


@pytest.mark.parametrize("calls,selected,registered,expected", [
    ([], None, DESK_ONLY, ("available", "deskphone")),                  # logged out: deskphone
    ([call("in", "deskphone", callstate.IN_CALL)], None, DESK_ONLY, ("in_use", "deskphone")),
    ([], None, NONE, ("unavailable", None)),
    ([call("in", "webrtc")], "webrtc", BOTH, ("ringing", "webrtc")),
    ([call("in", "webrtc", callstate.IN_CALL)], "webrtc", BOTH, ("in_use", "webrtc")),
    ([call("out", "deskphone")], "webrtc", BOTH, ("in_use", "webrtc")),  # placed from desk
    ([call("in", "deskphone")], "deskphone", BOTH, ("ringing", "deskphone")),
    ([call("in", "webrtc")], "deskphone", BOTH, ("available", "deskphone")),  # not the one in use
    ([call("in", "webrtc", callstate.IN_CALL, expires_in=-1)], "webrtc", BOTH,
     ("available", "webrtc")),                                          # a timed-out dialog
])
def test_presence_follows_the_seed(calls, selected, registered, expected):
    assert callstate.presence(calls, "ua", selected, registered, NOW) == expected


def test_history_entry_of_answered_missed_and_forwarded_calls():
    answered = callstate.answered(callstate.new_call("in", "webrtc", "2000", NOW), NOW + 3)
    entry = callstate.history_entry("c1", answered, NOW + 10.04)
    assert entry == {"call_id": "c1", "direction": "in", "device": "webrtc", "peer": "2000",
                     "started_at": "2027-01-15T08:00:00Z", "answered": True,
                     "duration_s": 7.0, "forwarded_to": None}
    missed = callstate.history_entry("c2", callstate.new_call("in", "webrtc", "2000", NOW), NOW + 9)
    assert (missed["answered"], missed["duration_s"]) == (False, 0)
    forwarded = callstate.history_entry("c3", answered, NOW + 9, forwarded_to="voicemail")
    assert (forwarded["answered"], forwarded["forwarded_to"]) == (False, "voicemail")


def test_notify_carries_versions_state_and_subscription_state():
    sub = blf.new_subscription("1000", "example.org", "cid", "<sip:1001@example.org>;tag=w",
                               "ours", "sip:1001@127.0.0.30:5060", "sip:127.0.0.30:5060",
                               "udp:127.0.0.1:5060", "<sip:1000@127.0.0.1:5060>", [], 600, NOW)
    sub, first = blf.notify(sub, "ringing", NOW)
    sub, second = blf.notify(sub, "in_use", NOW + 100)
    assert parse_dialog_states(first.body) == ["early"]
    assert parse_dialog_states(second.body) == ["confirmed"]
    assert 'version="0"' in first.body and 'version="1"' in second.body
    assert "Subscription-State: active;expires=500\r\n" in second.headers
    assert "From: <sip:1000@example.org>;tag=ours\r\n" in first.headers
    assert "CSeq: 2 NOTIFY\r\n" in second.headers
    _, last = blf.notify(sub, "available", NOW + 600, terminated="timeout")
    assert "Subscription-State: terminated;reason=timeout\r\n" in last.headers
    assert (last.ruri, last.nexthop) == ("sip:1001@127.0.0.30:5060", "sip:127.0.0.30:5060")


@pytest.mark.parametrize("requested,granted", [(0, 0), (30, 30), (7200, 3600)])
def test_granted_expires(requested, granted, monkeypatch):
    monkeypatch.setattr(blf, "MIN_EXPIRES", 20)
    assert blf.granted_expires(requested) == granted
    assert blf.granted_expires(10) is None


def plan(decision, callee=None, retargets=()):
    from lib.features.calls import CallContext, Plan
    ctx = CallContext(None, None, None, None, callee, None) if callee else None
    return Plan(decision, ctx, retargets=list(retargets))


ALICE = {"number": "1000", "ring_seconds": 30}


def test_participants_of_a_call_between_two_local_users():
    from lib.decisions.routing import Ring
    party = callstate.participants(plan(Ring("webrtc", "selected"), ALICE), "2000", "deskphone",
                                   "1000", "2000", NOW)
    assert {n: (c["direction"], c["device"], c["state"]) for n, c in party.calls.items()} == {
        "2000": ("out", "deskphone", callstate.PLACED), "1000": ("in", "webrtc", callstate.RINGING)}
    assert party.unrung == [] and party.callee == "1000"


def test_participants_of_forwarded_and_refused_calls():
    from lib.decisions.forwarding import Retarget
    from lib.decisions.routing import Reject
    forwarded = callstate.participants(
        plan(Reject(482, "Loop Detected"), ALICE, [Retarget("1000", "unconditional", "1001")]),
        None, None, "1000", "mds", NOW)
    assert forwarded.calls == {} and forwarded.callee is None
    assert forwarded.unrung == [("1000", "in", "mds", "1001", None)]
    refused = callstate.participants(plan(Reject(486, "Busy Here"), ALICE), "2000", "webrtc",
                                     "1000", "2000", NOW)
    assert refused.calls == {}
    assert refused.unrung == [("1000", "in", "2000", None, None),
                              ("2000", "out", "1000", None, "webrtc")]
    skipped = callstate.participants(
        plan(Reject(480, "x"), ALICE, [Retarget("1000", "noanswer", "1001"),
                                       Retarget("1001", "unconditional", "1002")]),
        None, None, "1000", "mds", NOW, retargets_done=1)
    assert skipped.unrung == [("1001", "in", "mds", "1002", None)]
