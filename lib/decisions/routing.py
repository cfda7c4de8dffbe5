"""Which device rings: the Unique Account routing rules (contract sections 3 and 4) as pure
functions of plain data. "Why did this call ring the deskphone" is answered here."""
from dataclasses import dataclass, field

WEBRTC = "webrtc"
DESKPHONE = "deskphone"
DEVICE_CLASSES = (WEBRTC, DESKPHONE)
LINE_CLASSES = {"sip": (DESKPHONE,), "webrtc": (WEBRTC,), "ua": (WEBRTC, DESKPHONE)}
DEFAULT_SELECTION = WEBRTC


def device_class(transport):
    """The device class of a registration comes from its transport alone."""
    return WEBRTC if transport.lower() in ("ws", "wss") else DESKPHONE


def class_allowed(line_type, klass):
    return klass in LINE_CLASSES.get(line_type, ())


def device_status(line_type, selected, registered):
    """(effective, reason): where an incoming call rings now and why, in a word.

    registered maps each class to whether it has a live contact. Rules 2-5 of section 4,
    first match wins; a `sip` or `webrtc` line only ever uses its own class."""
    if line_type != "ua":
        own = LINE_CLASSES[line_type][0]
        return (own, "selected") if registered.get(own) else (None, "none_registered")
    selected = selected or DEFAULT_SELECTION
    logged_in = registered.get(WEBRTC, False)
    if selected == WEBRTC and logged_in:
        return WEBRTC, "selected"                       # rule 2
    if selected == DESKPHONE:
        chosen, reason = DESKPHONE, "selected"          # rule 3
    else:
        chosen, reason = DESKPHONE, "logged_out"        # rule 4: fallback to the deskphone
    if registered.get(chosen):
        return chosen, reason
    other = WEBRTC if chosen == DESKPHONE else DESKPHONE
    if registered.get(other):
        return other, "selected_unavailable"            # rule 5
    return None, "none_registered"


@dataclass
class Ring:
    """Decision for an incoming call: ring these contacts (all of one class, in parallel)."""
    device: str
    reason: str
    contacts: list = field(default_factory=list)


@dataclass
class Reject:
    code: int
    text: str
    headers: tuple = ()


@dataclass
class RelayToMds:
    ruri: str
    identity: str


def live_by_class(contacts):
    by_class = {klass: [] for klass in DEVICE_CLASSES}
    for contact in contacts:
        by_class.setdefault(contact["class"], []).append(contact)
    return by_class


def route_incoming(user, selected, contacts):
    """Ring decision for a call to `user` given its live, reachable contacts."""
    by_class = live_by_class(contacts)
    allowed = LINE_CLASSES[user["line_type"]]
    registered = {klass: bool(by_class[klass]) and klass in allowed for klass in DEVICE_CLASSES}
    effective, reason = device_status(user["line_type"], selected, registered)
    if effective is None:
        return Reject(480, "Temporarily Unavailable")
    return Ring(effective, reason, by_class[effective])


def route_outgoing(caller, mds_uri, dialled, domain, mds_up=None):
    """A call placed by a device goes to the caller's MDS with the caller's identity.
    Returns None in standalone mode (no MDS): the call is then routed to a local user.
    mds_up: the MDS's health (lib/features/mds_health); False answers 503 at once rather than
    letting the caller wait for tm's timeout, None (not known yet) lets the call through."""
    if not caller.get("mds"):
        return None
    if mds_uri is None:
        return Reject(503, "MDS Not Configured")
    if mds_up is False:
        return Reject(503, "MDS Unavailable", ("Retry-After: 1",))
    hostport = mds_uri.split(":", 1)[1] if mds_uri.startswith("sip:") else mds_uri
    return RelayToMds(f"sip:{dialled}@{hostport}", f"<sip:{caller['number']}@{domain}>")
