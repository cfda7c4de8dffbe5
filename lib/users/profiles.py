"""A user's stored profile (contract section 9), as the call path reads it: its packing
(defaults left out), its reading back, and the digest credential."""
import hashlib

from lib.store import codec

LINE_TYPES = ("sip", "webrtc", "ua")
DEVICES = ("webrtc", "deskphone")
DEFAULT_RING_SECONDS = 30


def ha1(number, domain, password):
    return hashlib.md5(f"{number}:{domain}:{password}".encode()).hexdigest()


def sort_numbers(numbers):
    """Numbers in numeric order (shorter first), as lists of users show them."""
    return sorted(numbers, key=lambda n: (len(n), n))


def default_memberships():
    return {"groups": [], "queues": [], "pickup_groups": [], "paging_groups": [],
            "callfilters": [], "agent": None, "switchboard": False}


# A profile is stored without the fields, and memberships, that hold their default value:
# most users keep them, and leaving them out takes a provisioned user from 405 to 261 bytes
# of Redis (README, Benchmarks). Every read fills them back in (profile_of); records stored whole
# by earlier versions read the same.
PROFILE_FIELDS = ("number", "name", "line_type", "mds", "dids", "ring_seconds",
                  "memberships")


def _profile_defaults():
    return {"mds": None, "dids": [], "ring_seconds": DEFAULT_RING_SECONDS,
            "memberships": default_memberships()}


def pack_profile(profile):
    """The stored form of a validated profile (msgpack), defaults left out."""
    defaults = _profile_defaults()
    members = {k: v for k, v in profile["memberships"].items()
               if v != defaults["memberships"][k]}
    kept = {k: v for k, v in profile.items() if k not in defaults or v != defaults[k]}
    if members:
        kept["memberships"] = members
    return codec.pack(kept)


def profile_of(raw):
    """The whole profile from its stored form (None for None): defaults filled back in."""
    stored = codec.unpack(raw)
    if stored is None:
        return None
    merged = {**_profile_defaults(), **stored}
    merged["memberships"] = {**default_memberships(), **stored.get("memberships", {})}
    return {k: merged[k] for k in PROFILE_FIELDS}



# What an HTTP Basic check reads of a user's hash (Provisioning.user_auth, lib/web/authlimit).
AUTH_FIELDS = ["profile", "ha1"]


def auth_record(reply):
    """(profile, ha1) from the user hash's AUTH_FIELDS, or None."""
    profile, stored = reply
    if profile is None or stored is None:
        return None
    return profile_of(profile), codec.text(stored)

