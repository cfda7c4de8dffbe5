"""lib/decisions/control.py: ids, the calls list, the control leg's headers, outcomes."""
from lib.decisions import control
from lib.features import kamailio_rpc

T0 = 1_700_000_000.0


def entry(direction="out", device="deskphone", state="placed", started=T0, peer="2000"):
    return {"direction": direction, "device": device, "peer": peer, "state": state,
            "started_at": started, "answered_at": None, "expires_at": started + 60}


def test_a_call_id_round_trips_through_its_opaque_url_safe_id():
    for call_id in ("a84b4c76e66710@pc33.atlanta.com", "x/y+z=?&%", "é"):
        ref = control.call_id_to_id(call_id)
        assert ref.replace("-", "").replace("_", "").isalnum()
        assert control.parse_id(ref) == ("call", call_id)


def test_a_click_to_dial_id_is_recognised_and_garbage_is_no_id():
    dial_id = control.new_dial_id()
    assert control.parse_id(dial_id) == ("dial", dial_id)
    assert dial_id != control.new_dial_id()
    for bad in ("", "x", "c!!!", "c\xff", "d" + "a" * 3, "cAAAA%"):
        assert control.parse_id(bad) is None, bad


def test_the_list_shows_a_click_to_dial_as_dialing_then_as_its_deskphone_call():
    dials = {"dAAAAAAAAAAAAAAAA": {"destination": "2000", "state": "dialing", "since": T0,
                                   "control_call_id": "ctl-1"}}
    assert control.calls_in_progress({}, dials) == [{
        "id": "dAAAAAAAAAAAAAAAA", "call_id": "ctl-1", "direction": "out",
        "device": "deskphone", "peer": "2000", "state": "dialing",
        "since": "2023-11-14T22:13:20Z"}]
    dials["dAAAAAAAAAAAAAAAA"].update(state="transferred", call_id="call-2")
    listed = control.calls_in_progress(
        {"call-2": entry(state="in_call"), "call-3": entry("in", "webrtc", "ringing",
                                                           T0 - 5, "3000")}, dials)
    assert [(c["id"], c["call_id"], c["state"]) for c in listed] == [
        (control.call_id_to_id("call-3"), "call-3", "ringing"),
        ("dAAAAAAAAAAAAAAAA", "call-2", "answered")]


def test_a_refused_click_to_dial_is_no_call_in_progress():
    dials = {"dBBBBBBBBBBBBBBBB": {"destination": "2000", "state": "refused", "since": T0}}
    assert control.calls_in_progress({}, dials) == []


def test_the_control_leg_carries_the_three_hints_and_shows_the_destination():
    headers = control.control_headers("ua.example", "2000")
    assert "Call-Info: <sip:ua.example>;answer-after=0" in headers
    assert "Alert-Info: <http://ua.example>;info=alert-autoanswer;delay=0" in headers
    assert "Answer-Mode: Auto" in headers
    assert control.control_from("2000", "ua.example", "t1") == \
        '"2000" <sip:2000@ua.example>;tag=t1'


def test_the_bridge_addresses_mark_the_leg_and_the_refer_target():
    leg, refer_to = control.bridge_addresses("1000", "2000", "dX", "ua.example")
    assert leg == "sip:1000@ua.example;ua_ctl=dX"
    assert refer_to == "<sip:2000@ua.example;ua_ctd=dX>"
    assert control.uri_param(leg, control.CONTROL_PARAM) == "dX"
    assert control.uri_param("sip:2000@h;ua_ctd=1000.dX-_;lr", control.DIAL_PARAM) == "1000.dX-_"
    assert control.uri_param("sip:2000@h", control.DIAL_PARAM) is None


def test_outcomes_and_actions_by_state():
    assert control.outcome_of_invite(486) == control.REFUSED
    assert control.outcome_of_invite(200) is None
    assert control.outcome_of_refer(202) == control.TRANSFERRED
    assert control.outcome_of_refer(403) == control.REFUSED
    assert control.hangup_action(entry(state="in_call")) == "bye"
    assert control.hangup_action(entry("in", state="ringing")) == "decline"
    assert control.hangup_action(entry("out", state="placed")) == "cancel"
    assert control.answer_action(entry("in", "deskphone", "ringing"))
    assert not control.answer_action(entry("in", "webrtc", "ringing"))
    assert not control.answer_action(entry("in", "deskphone", "in_call"))
    assert not control.answer_action(None)


def test_numbers_and_the_voicemail_number_are_destinations():
    assert control.valid_destination("2000", "*98")
    assert control.valid_destination("*98", "*98")
    for bad in ("", "20a0", "sip:2000@x", "1" * 21, None, 2000, "*97", "*98#"):
        assert not control.valid_destination(bad, "*98")


LISTING = """{
	h_entry: 1032
	h_id: 10661
	call-id: 17f6f75a704ccfbc
	state: 4
	caller: {
		tag: 9d696c4c97154a86
		route_set: <sip:127.0.0.1:5060;lr;did=804.5a92>
	}
	callee: {
		tag: 2580SIPpTag011
	}
	profiles: {
	}
}
{
	h_entry: 7
	h_id: 8
	call-id: 17f6f75a704ccfbc
	state: 5
	caller: {
		tag: old
	}
}
"""


def test_a_hang_up_names_the_confirmed_dialog_of_the_call():
    dialogs = kamailio_rpc.structures(LISTING)
    assert [(d["h_entry"], d["state"]) for d in dialogs] == [("1032", "4"), ("7", "5")]
    assert dialogs[0]["caller"] == {"tag": "9d696c4c97154a86",
                                    "route_set": "<sip:127.0.0.1:5060;lr;did=804.5a92>"}
    assert control.dialog_to_end(dialogs) is dialogs[0]
    assert control.dialog_to_end(dialogs[1:]) is None      # ending already
    headers = control.hangup_request(dialogs[0], "ua.test")
    assert "Event: ua-hangup\r\n" in headers and headers.endswith("\r\n")
    value = next(line.split(": ", 1)[1] for line in headers.split("\r\n")
                 if line.startswith(control.HANGUP_HEADER))
    assert control.hangup_identity(value) == ("17f6f75a704ccfbc", "9d696c4c97154a86",
                                              "2580SIPpTag011")
    for bad in (None, "", "only two", "one two three four"):
        assert control.hangup_identity(bad) is None
