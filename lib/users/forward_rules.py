"""Forwarding rules (contract section 5): their model, validation of a PUT and reading
what is stored. They live in the user's hash, field `forwards`: msgpack of the full API
shape (see DEFAULT_FORWARDS); an absent field means the defaults. Readers (the routing
code) go through normalize_forwards()."""
import re

from lib.store import codec
from lib.users.validation import Invalid

FORWARD_RULES = ("unconditional", "busy", "noanswer")
FORWARD_FIELDS = FORWARD_RULES + ("dnd",)
FORWARD_RULE_FIELDS = ("enabled", "destination")
VOICEMAIL = "voicemail"
FORWARD_DEST_RE = re.compile(r"\+?[0-9*#]{1,32}")
DEFAULT_FORWARDS = {
    "unconditional": {"enabled": False, "destination": None},
    "busy": {"enabled": False, "destination": None},
    "noanswer": {"enabled": False, "destination": None},
    "dnd": False,
}


def valid_forward_destination(value):
    """`voicemail` or a dialable number (`+`, digits, `*`, `#`; 1 to 32 characters)."""
    return isinstance(value, str) and (
        value == VOICEMAIL or FORWARD_DEST_RE.fullmatch(value) is not None)


def default_forwards():
    """A fresh copy of DEFAULT_FORWARDS (every rule off, no destination, dnd off); built
    by hand, as deepcopy was a visible share of an initial INVITE's CPU."""
    return {name: (dict(value) if isinstance(value, dict) else value)
            for name, value in DEFAULT_FORWARDS.items()}


def normalize_forwards(raw):
    """The full forwarding shape from what is stored: None (never set), the msgpack bytes
    of the `forwards` field, or an already decoded dict. Never raises: anything missing
    or malformed takes its default, so an enabled rule always has a valid destination.

    {"unconditional": {"enabled": bool, "destination": str|None}, "busy": {...},
     "noanswer": {...}, "dnd": bool}"""
    out = default_forwards()
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = codec.unpack(bytes(raw))
        except Exception:
            return out
    if not isinstance(raw, dict):
        return out
    for name in FORWARD_RULES:
        rule = raw.get(name)
        if not isinstance(rule, dict):
            continue
        dest = rule.get("destination")
        if not valid_forward_destination(dest):
            dest = None
        out[name] = {"enabled": rule.get("enabled") is True and dest is not None,
                     "destination": dest}
    out["dnd"] = raw.get("dnd") is True
    return out


def validate_forwards(number, body):
    """The forwarding rules to store for a PUT `body` (a dict from JSON), raising Invalid.

    The body replaces the whole set: a missing key takes its default. A destination equal
    to `number` (a forward to oneself) is refused; checks needing state are the caller's."""
    if not isinstance(body, dict):
        raise Invalid("the forwarding rules must be a JSON object")
    unknown = sorted(k for k in body if k not in FORWARD_FIELDS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]} (expected unconditional, busy, "
                      "noanswer, dnd)")
    out = default_forwards()
    for name in FORWARD_RULES:
        if name not in body:
            continue
        rule = body[name]
        if not isinstance(rule, dict):
            raise Invalid(f"{name} must be an object with enabled and destination")
        unknown = sorted(k for k in rule if k not in FORWARD_RULE_FIELDS)
        if unknown:
            raise Invalid(f"unknown field {name}.{unknown[0]}")
        if not isinstance(rule.get("enabled"), bool):
            raise Invalid(f"{name}.enabled is required and must be a boolean")
        dest = rule.get("destination")
        if dest is not None:
            if not valid_forward_destination(dest):
                raise Invalid(f"{name}.destination must be null, \"voicemail\" or a number "
                              "(optional +, then 1 to 32 of 0-9 * #)")
            if dest == number:
                raise Invalid(f"{name}.destination is the user's own number {number}: "
                              "a user cannot forward to itself")
        if rule["enabled"] and dest is None:
            raise Invalid(f"{name} is enabled but has no destination")
        out[name] = {"enabled": rule["enabled"], "destination": dest}
    if "dnd" in body:
        if not isinstance(body["dnd"], bool):
            raise Invalid("dnd must be a boolean")
        out["dnd"] = body["dnd"]
    return out

