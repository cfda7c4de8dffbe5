"""Telling a replayed digest answer from a merely stale one (issue 9).

With nonce_count and one_time_nonce (kamailio.cfg), the auth module refuses a used nonce
count as "stale" (pv_auth_check -4), the same code as for an expired nonce or an nc past
255. A stale answer is normal (a client reusing an old nonce), a replay is an attack: the
difference is that a replayed nonce has not expired yet. Kamailio's nonce is the base64
of a binary record whose first 4 bytes are its expiry (epoch seconds, network order).
"""
import base64
import binascii
import re
import struct

MAX_NC = 0xFF    # the auth module calls a higher nonce count stale
_PARAM = re.compile(r'([\w-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]+)')


def params(credentials):
    """The parameters of a `Digest ...` Authorization value, unquoted, names lowercase."""
    return {k.lower(): v.strip('"') for k, v in _PARAM.findall(credentials or "")}


def nonce_expiry(nonce):
    """When a nonce of ours expires (epoch seconds); None if it is not one of ours."""
    try:
        raw = base64.b64decode(nonce + "=" * (-len(nonce) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return struct.unpack(">I", raw[:4])[0] if len(raw) >= 8 else None


def replayed(credentials, now):
    """Whether credentials that the auth module found stale were used before: their nonce
    is still valid and their nonce count within range."""
    found = params(credentials)
    expiry = nonce_expiry(found.get("nonce", ""))
    try:
        nc = int(found.get("nc", "1"), 16)
    except ValueError:
        return False
    return expiry is not None and expiry > now and nc <= MAX_NC
