"""Forwarding, do-not-disturb, ring time and the dead-browser fallback (contract section 4
rules 1 and 7, section 5) as pure decisions over plain data. The glue asks
`before_ringing` in the request route and `after_failure` in tm's failure route."""
from dataclasses import dataclass, field

from lib.decisions.routing import Reject, WEBRTC

# Diversion reasons (RFC 5806) by rule; `dnd` uses the busy destination.
DIVERSION_REASON = {"unconditional": "unconditional", "busy": "user-busy", "dnd": "user-busy",
                    "noanswer": "no-answer", "unavailable": "unavailable"}
RULE_OF = {"unconditional": "unconditional", "busy": "busy", "dnd": "busy",
           "noanswer": "noanswer", "unavailable": "noanswer"}
# A browser that sent nothing at all within this time is gone (rule 7).
BROWSER_SIGN_OF_LIFE_MS = 3000
MAX_DIVERSIONS = 5
# The longest an INVITE to an MDS lives unanswered (a call placed by a device, a forward):
# tm's fr_inv_timer for MDS legs (kamailio.cfg, 120 s, within which the MDS rings its own
# users) and a few seconds for its final answer. Without it, tm's max_inv_lifetime (660 s,
# sized for a browser, rule 7's deskphone and a forward in one transaction) was the bound,
# and unanswered legs held shared memory for 11 minutes (issue 23).
MDS_LEG_LIFETIME_MS = 125_000


@dataclass
class Retarget:
    """Send the call to `destination` (a number or "voicemail") on behalf of `number`."""
    number: str
    trigger: str            # unconditional, busy, dnd, noanswer, unavailable
    destination: str

    @property
    def reason(self):
        return DIVERSION_REASON[self.trigger]


@dataclass
class RingDeskphone:
    """Rule 7: the browser is gone; ring the deskphone in the same call, full ring time."""
    stale_fields: list = field(default_factory=list)


def _rule(forwards, trigger, number, otherwise):
    rule = forwards[RULE_OF[trigger]]
    if rule["enabled"]:
        return Retarget(number, trigger, rule["destination"])
    return otherwise


def before_ringing(number, forwards, decision):
    """Rule 1 and the unavailable case, before any device rings. `decision` is what
    routing.route_incoming chose (Ring or Reject(480))."""
    if forwards["dnd"]:
        return _rule(forwards, "dnd", number, Reject(486, "Busy Here"))
    if forwards["unconditional"]["enabled"]:
        return _rule(forwards, "unconditional", number, decision)
    if isinstance(decision, Reject):
        return _rule(forwards, "unavailable", number, decision)
    return decision


def after_failure(number, forwards, device, code, any_reply, rung_fields, deskphone_registered):
    """The ringing branches all ended without a 2xx (the caller did not cancel).

    Returns a Retarget, RingDeskphone, or None: relay the best final answer unchanged."""
    if device == WEBRTC and not any_reply:
        # Not one provisional from any tab within the time, or transport failures: the
        # browser is gone, which is not "rang but not answered".
        if deskphone_registered:
            return RingDeskphone(list(rung_fields))
        return _rule(forwards, "unavailable", number, None)
    if code in (486, 603):
        return _rule(forwards, "busy", number, None)
    if code in (408, 480):
        return _rule(forwards, "noanswer", number, None)
    return None      # 600, 487 and the rest reach the caller unchanged


@dataclass(frozen=True)
class RingTimers:
    """tm's timers for a ringing device (milliseconds).

    fr_inv: the ring time once the device answered provisionally; fr: until then (a
    browser must show a sign of life within BROWSER_SIGN_OF_LIFE_MS). tm re-arms fr_inv
    on every provisional of a higher code (100, 180, then a 183 of early media), so the
    ring time itself is the transaction's lifetime: it counts from the INVITE sent to
    the device and no reply moves it (contract section 5)."""
    fr_inv: int
    fr: int
    lifetime: int


def ring_timers_ms(device, ring_seconds):
    ring_ms = ring_seconds * 1000
    return RingTimers(fr_inv=ring_ms,
                      fr=BROWSER_SIGN_OF_LIFE_MS if device == WEBRTC else ring_ms,
                      lifetime=ring_ms)


def diverted_numbers(diversion_values):
    """User parts of the URIs in the call's Diversion headers."""
    numbers = []
    for value in diversion_values:
        uri = value[value.find("<") + 1:value.find(">")] if "<" in value else value.split(";")[0]
        user = uri.split(":", 1)[-1].split("@", 1)[0]
        if user:
            numbers.append(user)
    return numbers


def loop_check(retarget, diverted):
    """A retarget to a user already named in the call's Diversion headers is not followed."""
    if retarget.destination in diverted or len(diverted) >= MAX_DIVERSIONS:
        return Reject(482, "Loop Detected")
    return None


def diversion_header(retarget, domain):
    return (f"Diversion: <sip:{retarget.number}@{domain}>;reason={retarget.reason};counter=1")


def destination_uri(retarget, mds_uri, voicemail_prefix):
    """Where a retarget goes: the user's MDS, or None for a local user (standalone)."""
    if mds_uri is None:
        return None
    hostport = mds_uri.split(":", 1)[1]
    user = (f"{voicemail_prefix}{retarget.number}" if retarget.destination == "voicemail"
            else retarget.destination)
    return f"sip:{user}@{hostport}"

