"""Validation of what the API is given (contract section 9): users, MDS records, and the
errors a caller shows to the client, each carrying its HTTP status (400 Invalid,
404 NotFound, 409 Conflict). Pure: checks that need no state."""
import ipaddress
import re

from lib.decisions import sipmsg
from lib.users.profiles import DEFAULT_RING_SECONDS, LINE_TYPES, default_memberships

MAX_RING_SECONDS = 300
MAX_NAME_LENGTH = 256
MAX_PASSWORD_LENGTH = 256
MAX_DIDS = 100
MAX_MEMBERSHIP_ITEMS = 1000
MAX_MDS_ADDRESSES = 64

NUMBER_RE = re.compile(r"[0-9]{1,20}")
HA1_RE = re.compile(r"[0-9a-fA-F]{32}")
DID_RE = re.compile(r"\+?[0-9]{1,20}")
MDS_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

USER_FIELDS = ("number", "name", "password", "line_type", "mds", "dids", "ring_seconds",
               "memberships")
MDS_FIELDS = ("name", "uri", "addresses")

# Membership keys in the order they are checked, with the message naming the feature
# a `ua` line refuses (contract section 9: "naming the feature").
MEMBERSHIP_LISTS = ("groups", "queues", "pickup_groups", "paging_groups", "callfilters")
UA_UNSUPPORTED = (
    ("groups", "groups are not supported for Unique Account users"),
    ("queues", "queues are not supported for Unique Account users"),
    ("pickup_groups", "group pickup (pickup_groups) is not supported for Unique Account users"),
    ("paging_groups", "paging (paging_groups) is not supported for Unique Account users"),
    ("callfilters", "boss/secretary filters (callfilters) are not supported for Unique "
                    "Account users"),
    ("agent", "call-center agent (agent) is not supported for Unique Account users"),
    ("switchboard", "switchboard is not supported for Unique Account users"),
)



class ProvisioningError(Exception):
    status = 400

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Invalid(ProvisioningError):
    status = 400


class NotFound(ProvisioningError):
    status = 404


class Conflict(ProvisioningError):
    status = 409


class BatchError(ProvisioningError):
    """Some entries of put_users were refused; errors = [(index, ProvisioningError)]."""

    def __init__(self, errors):
        super().__init__(errors[0][1].message if errors else "invalid batch")
        self.errors = errors
        self.status = errors[0][1].status if len(errors) == 1 else 400


def valid_number(number):
    return isinstance(number, str) and NUMBER_RE.fullmatch(number) is not None


def valid_mds_name(name):
    return isinstance(name, str) and MDS_NAME_RE.fullmatch(name) is not None


def _check_memberships(value):
    if value is None:
        return default_memberships()
    if not isinstance(value, dict):
        raise Invalid("memberships must be an object")
    out = default_memberships()
    for key, item in value.items():
        if key in MEMBERSHIP_LISTS:
            if not isinstance(item, list) or not all(isinstance(x, str) and x for x in item):
                raise Invalid(f"memberships.{key} must be a list of non-empty strings")
            if len(item) > MAX_MEMBERSHIP_ITEMS:
                raise Invalid(f"memberships.{key} has too many entries")
            out[key] = list(item)
        elif key == "agent":
            if item is not None and (not isinstance(item, str) or not item):
                raise Invalid("memberships.agent must be null or a non-empty string")
            out[key] = item
        elif key == "switchboard":
            if not isinstance(item, bool):
                raise Invalid("memberships.switchboard must be a boolean")
            out[key] = item
        else:
            raise Invalid(f"unknown field memberships.{key}")
    return out


def _check_record(body, kind, fields, id_field, id_value):
    """Raise Invalid unless `body` is a JSON object of known `fields` only, whose
    `id_field`, when given, repeats the identifier from the path."""
    if not isinstance(body, dict):
        raise Invalid(f"the {kind} record must be a JSON object")
    unknown = [k for k in body if k not in fields]
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0]}")
    if id_field in body and body[id_field] != id_value:
        raise Invalid(f"{id_field} in the body differs from the {id_field} in the path")


def validate_user(number, body, *, new, have_ha1=False):
    """The profile to store for `body` (a dict from JSON), raising Invalid.

    Checks that need no state only. `new`: the user does not exist yet, so a password (or
    an HA1 given by the caller, have_ha1) is required. Returns (profile, password or None).
    """
    if not valid_number(number):
        raise Invalid("number must be 1 to 20 digits")
    _check_record(body, "user", USER_FIELDS, "number", number)

    name = body.get("name")
    if not isinstance(name, str):
        raise Invalid("name is required and must be a string")
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(f"name is longer than {MAX_NAME_LENGTH} characters")

    password = body.get("password")
    if "password" in body:
        if not isinstance(password, str) or not password:
            raise Invalid("password must be a non-empty string")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise Invalid(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
    elif new and not have_ha1:
        raise Invalid("password is required to create a user")

    line_type = body.get("line_type")
    if line_type not in LINE_TYPES:
        raise Invalid("line_type is required and must be one of sip, webrtc, ua")

    mds = body.get("mds")
    if mds is not None and not valid_mds_name(mds):
        raise Invalid("mds must be null or an MDS name")

    dids = body.get("dids", [])
    if dids is None:
        dids = []
    if not isinstance(dids, list) or not all(isinstance(d, str) for d in dids):
        raise Invalid("dids must be a list of strings")
    for did in dids:
        if not DID_RE.fullmatch(did):
            raise Invalid(f"invalid DID {did!r}: digits with an optional leading +")
    if len(set(dids)) != len(dids):
        raise Invalid("dids lists the same DID twice")
    if len(dids) > MAX_DIDS:
        raise Invalid(f"at most {MAX_DIDS} DIDs per user")

    ring = body.get("ring_seconds", DEFAULT_RING_SECONDS)
    if ring is None:
        ring = DEFAULT_RING_SECONDS
    if isinstance(ring, bool) or not isinstance(ring, int) or not 1 <= ring <= MAX_RING_SECONDS:
        raise Invalid(f"ring_seconds must be an integer from 1 to {MAX_RING_SECONDS}")

    memberships = _check_memberships(body.get("memberships"))
    if line_type == "ua":
        for key, message in UA_UNSUPPORTED:
            if memberships[key]:
                raise Invalid(message)

    profile = {"number": number, "name": name, "line_type": line_type, "mds": mds,
               "dids": list(dids), "ring_seconds": ring, "memberships": memberships}
    return profile, password


def _check_ip(value):
    if not isinstance(value, str):
        raise Invalid("addresses must be a list of IP address strings")
    try:
        return ipaddress.ip_address(value.strip("[]") if value.startswith("[") else value).compressed
    except ValueError:
        raise Invalid(f"invalid IP address {value!r}") from None


def parse_sip_uri(uri):
    """(host, port or None) of `sip:host[:port]`, raising Invalid. IPv6 hosts in brackets."""
    if not isinstance(uri, str) or not uri.lower().startswith("sip:"):
        raise Invalid("uri must be sip:host:port")
    try:
        parsed = sipmsg.parse_uri(uri)
    except sipmsg.SipSyntaxError as exc:
        raise Invalid(f"uri: {exc}") from None
    if parsed.user is not None or parsed.params or parsed.headers:
        raise Invalid("uri must be sip:host:port (no user part or parameters)")
    return parsed.host, parsed.port


def validate_mds(name, body):
    if not valid_mds_name(name):
        raise Invalid("MDS name must be 1 to 64 characters among A-Z a-z 0-9 _ . -")
    _check_record(body, "MDS", MDS_FIELDS, "name", name)
    if "uri" not in body:
        raise Invalid("uri is required")
    parse_sip_uri(body["uri"])
    addresses = body.get("addresses", [])
    if addresses is None:
        addresses = []
    if not isinstance(addresses, list):
        raise Invalid("addresses must be a list of IP address strings")
    if len(addresses) > MAX_MDS_ADDRESSES:
        raise Invalid(f"at most {MAX_MDS_ADDRESSES} addresses")
    normalized = [_check_ip(a) for a in addresses]
    if len(set(normalized)) != len(normalized):
        raise Invalid("addresses lists the same address twice")
    return {"uri": body["uri"], "addresses": normalized}
