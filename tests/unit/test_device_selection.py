"""Section 3 and 4 rules 2-5 as a pure function, over every combination of line type,
selection, login state and registered classes."""
import itertools

import pytest

from lib.decisions import routing
from lib.decisions.routing import DESKPHONE, WEBRTC


def expected(line_type, selected, webrtc, deskphone):
    """The contract's rules written out independently of the implementation."""
    if line_type == "sip":
        return (DESKPHONE, "selected") if deskphone else (None, "none_registered")
    if line_type == "webrtc":
        return (WEBRTC, "selected") if webrtc else (None, "none_registered")
    selected = selected or WEBRTC
    if selected == WEBRTC and webrtc:
        return WEBRTC, "selected"
    if selected == DESKPHONE and deskphone:
        return DESKPHONE, "selected"
    if selected == WEBRTC and not webrtc and deskphone:
        return DESKPHONE, "logged_out"
    if selected == DESKPHONE and webrtc:
        return WEBRTC, "selected_unavailable"
    return None, "none_registered"


COMBINATIONS = list(itertools.product(("sip", "webrtc", "ua"), (None, WEBRTC, DESKPHONE),
                                      (False, True), (False, True)))


@pytest.mark.parametrize("line_type,selected,webrtc,deskphone", COMBINATIONS)
def test_device_status_follows_the_rules(line_type, selected, webrtc, deskphone):
    registered = {WEBRTC: webrtc, DESKPHONE: deskphone}
    assert routing.device_status(line_type, selected, registered) == \
        expected(line_type, selected, webrtc, deskphone)


def contact(klass, n):
    return {"class": klass, "uri": f"sip:{klass}{n}@example.invalid"}


@pytest.mark.parametrize("line_type,selected,webrtc,deskphone", COMBINATIONS)
def test_incoming_call_rings_only_the_effective_class(line_type, selected, webrtc, deskphone):
    contacts = ([contact(WEBRTC, 1), contact(WEBRTC, 2)] if webrtc else []) + \
               ([contact(DESKPHONE, 1)] if deskphone else [])
    decision = routing.route_incoming({"line_type": line_type}, selected, contacts)
    device, reason = expected(line_type, selected, webrtc, deskphone)
    if device is None:
        assert decision == routing.Reject(480, "Temporarily Unavailable")
    else:
        assert decision.device == device and decision.reason == reason
        assert decision.contacts and all(c["class"] == device for c in decision.contacts)
        assert len(decision.contacts) == (2 if device == WEBRTC else 1)


def test_a_sip_line_never_rings_a_stray_webrtc_contact():
    decision = routing.route_incoming({"line_type": "sip"}, None, [contact(WEBRTC, 1)])
    assert decision == routing.Reject(480, "Temporarily Unavailable")


def test_outgoing_call_goes_to_the_callers_mds_with_its_identity():
    caller = {"number": "1000", "mds": "mds1"}
    decision = routing.route_outgoing(caller, "sip:127.0.0.10:5060", "2000", "example.org")
    assert decision == routing.RelayToMds("sip:2000@127.0.0.10:5060", "<sip:1000@example.org>")


def test_outgoing_call_without_mds_is_standalone():
    assert routing.route_outgoing({"number": "1000", "mds": None}, None, "2000", "d") is None


def test_device_class_comes_from_transport():
    assert [routing.device_class(t) for t in ("ws", "WSS", "udp", "tcp", "tls")] == \
        [WEBRTC, WEBRTC, DESKPHONE, DESKPHONE, DESKPHONE]
