"""Deskphone control from the UC Assistant (contract section 12), the pure part: call ids,
how a call in progress is shown, the control leg's headers, and what a reply to the
control leg or its REFER means. No Kamailio, no Redis."""
import base64
import binascii
import datetime
import re
import secrets

from lib.decisions import sipmsg

# The dialog module's bridge (click-to-dial) calls itself this: its Contact (where the
# deskphone sends its NOTIFYs about the REFER) and its From.
CONTROL_USER = "ua-control"
# URI parameters that carry a click-to-dial's id: on the control leg's Request-URI (the
# INVITE the bridge loops through the proxy) and on the Refer-To (the deskphone's own call).
CONTROL_PARAM, DIAL_PARAM = "ua_ctl", "ua_ctd"

DIALING, REFUSED, TRANSFERRED, ENDED = "dialing", "refused", "transferred", "ended"
# A click-to-dial's record outlives the bridge: the deskphone's call it leads to keeps its id.
DIAL_TTL_SECONDS = 4 * 3600

_CALL_PREFIX, _DIAL_PREFIX = "c", "d"
_NUMBER = re.compile(r"[0-9]{1,20}")
_DIAL_ID = re.compile(r"d[A-Za-z0-9_-]{16}")
_CALL_REF = re.compile(r"c[A-Za-z0-9_-]+")
# callstate's states as section 12 names them
_STATES = {"ringing": "ringing", "placed": "dialing", "in_call": "answered"}


def valid_destination(value, voicemail_number):
    """A number, or the voicemail number (`*98`): the UC Assistant's voicemail button calls
    it from the selected device, the deskphone included (section 5's `*98` from both)."""
    return isinstance(value, str) and (
        _NUMBER.fullmatch(value) is not None or value == voicemail_number)


def new_dial_id():
    return _DIAL_PREFIX + secrets.token_urlsafe(12)


def call_id_to_id(call_id):
    """A call's id: its Call-ID, URL-safe and reversible (no state needed to find it)."""
    return _CALL_PREFIX + base64.urlsafe_b64encode(call_id.encode()).decode().rstrip("=")


def parse_id(value):
    """("call", Call-ID) or ("dial", click-to-dial id) for an id, None when it is no id."""
    if _DIAL_ID.fullmatch(value or ""):
        return "dial", value
    if not _CALL_REF.fullmatch(value or ""):
        return None
    encoded = value[1:]
    try:
        return "call", base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def iso(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc) \
        .isoformat(timespec="seconds").replace("+00:00", "Z")


def call_view(call_id, call, dial_id=None):
    """A call entry of lib/callstate as section 12 shows it; dial_id: the click-to-dial it
    came from keeps that id."""
    return {"id": dial_id or call_id_to_id(call_id), "call_id": call_id,
            "direction": call["direction"], "device": call["device"], "peer": call["peer"],
            "state": _STATES.get(call["state"], call["state"]), "since": iso(call["started_at"])}


def dial_view(dial_id, dial):
    """A click-to-dial whose deskphone has not placed its call yet."""
    return {"id": dial_id, "call_id": dial.get("control_call_id"), "direction": "out",
            "device": "deskphone", "peer": dial["destination"], "state": DIALING,
            "since": iso(dial["since"])}


def calls_in_progress(calls, dials):
    """Section 12's list, oldest first. calls: {Call-ID: call entry}; dials: {id: record}.
    A click-to-dial shows as its deskphone's call once there is one, until then as dialing;
    refused or finished ones are not in progress."""
    linked = {d["call_id"]: i for i, d in dials.items() if d.get("call_id")}
    shown = [call_view(cid, call, linked.get(cid)) for cid, call in calls.items()]
    shown += [dial_view(i, d) for i, d in dials.items()
              if d["state"] == DIALING and not d.get("call_id")]
    return sorted(shown, key=lambda c: c["since"])


def auto_answer_hints(domain):
    """The auto-answer hints deskphones honour (section 12, as Wazo sends them)."""
    return [f"Call-Info: <sip:{domain}>;answer-after=0",
            f"Alert-Info: <http://{domain}>;info=alert-autoanswer;delay=0",
            "Answer-Mode: Auto"]


def control_headers(domain, destination):
    """The control leg's headers: the hints, and the destination shown as the caller."""
    return auto_answer_hints(domain) + [
        f"P-Asserted-Identity: \"{destination}\" <sip:{destination}@{domain}>"]


def control_from(destination, domain, tag):
    """The control leg's From as the deskphone sees it: the bridge has one global caller
    identity, the user must see whom the phone is about to call."""
    return f"\"{destination}\" <sip:{destination}@{domain}>;tag={tag}"


def bridge_addresses(number, destination, dial_id, domain):
    """(from, to) for the dialog module's bridge: the leg to the user's deskphone, marked
    for the request route, and the Refer-To the deskphone dials, marked so its call keeps
    the click-to-dial's id."""
    return (f"sip:{number}@{domain};{CONTROL_PARAM}={dial_id}",
            f"<sip:{destination}@{domain};{DIAL_PARAM}={dial_id}>")


def uri_param(uri, name):
    """The value of a URI parameter, None when absent."""
    match = re.search(rf";{name}=([A-Za-z0-9_.-]+)", uri or "")
    return match.group(1) if match else None


def outcome_of_invite(code):
    """A final reply to the control leg's INVITE: only a refusal is an outcome; the 2xx
    leads to the REFER."""
    return None if 200 <= code < 300 else REFUSED


def outcome_of_refer(code):
    return TRANSFERRED if 200 <= code < 300 else REFUSED


def answer_action(call):
    """Whether a call can be answered from the UC Assistant: ringing on the deskphone."""
    return call is not None and call["state"] == "ringing" and call["device"] == "deskphone"


def hangup_action(call):
    """What hanging up a call in progress means, by its state (section 12): `bye` an
    answered call, `decline` a ringing incoming one (the busy rule applies), `cancel` a
    placed one that still rings."""
    if call["state"] == "in_call":
        return "bye"
    return "decline" if call["direction"] == "in" else "cancel"


# The dialog module's states (dlg_hash.h) in which a dialog can be ended with BYEs: its 2xx
# relayed (3: ACK not yet seen, 4: confirmed).
DIALOG_CONFIRMED_STATES = ("3", "4")
# Hanging up an answered call is asked of this proxy's Kamailio by a NOTIFY of this event
# to CONTROL_USER, its dialog named in HANGUP_HEADER ("<Call-ID> <From tag> <To tag>").
HANGUP_EVENT, HANGUP_HEADER = "ua-hangup", "X-UA-Hangup"
# The dialog flag (script flag of the dialog module) of a call being hung up from here.
HANGUP_DIALOG_FLAG = 1


def dialog_to_end(dialogs):
    """Of the dialogs the module holds for a Call-ID (dicts as dlg.list_match prints them),
    the one a hang-up ends, or None."""
    return next((d for d in dialogs if d.get("state") in DIALOG_CONFIRMED_STATES), None)


def hangup_request(dialog, domain):
    """Headers of the NOTIFY that asks Kamailio to hang up `dialog` (see HANGUP_EVENT)."""
    identity = " ".join((dialog["call-id"], dialog["caller"]["tag"], dialog["callee"]["tag"]))
    return sipmsg.header_block((
        ("From", f"<sip:{CONTROL_USER}@{domain}>"), ("To", f"<sip:{CONTROL_USER}@{domain}>"),
        ("Event", HANGUP_EVENT), (HANGUP_HEADER, identity)))


def hangup_identity(value):
    """(Call-ID, From tag, To tag) of a HANGUP_HEADER, or None when it is not one."""
    parts = (value or "").split()
    return tuple(parts) if len(parts) == 3 else None


def events_between(before, after):
    """The event stream's events (section 12) from one view of a user to the next, as
    (event, data): views are {"device", "presence", "voicemail", "calls": {id: call}}
    (an empty dict before the first). A call gone from the view has ended."""
    events = []
    if after["device"] != before.get("device"):
        events.append(("device", after["device"]))
    earlier = before.get("calls", {})
    events += [("call", call) for ref, call in after["calls"].items()
               if earlier.get(ref) != call]
    events += [("call", {**call, "state": ENDED}) for ref, call in earlier.items()
               if ref not in after["calls"]]
    for name in ("presence", "voicemail"):
        if after[name] is not None and after[name] != before.get(name):
            events.append((name, after[name]))
    return events
