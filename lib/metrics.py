"""Prometheus metrics (contract section 10). Counters and the routing-time histogram live
in Kamailio's shared memory (the xhttp_prom module, declared in kamailio.cfg), so one
atomic increment in C counts across every process; the glue calls `count`/`observe`.
Gauges are read from Redis when /metrics is scraped, from small indexes that the
registrar and the call state keep in the same writes:

  ua:reg:<class>     zset "N|<12 hex digits of the binding field's SHA-1>" scored by expiry:
                     live registrations per class (hashed: a field holds a whole contact URI,
                     and this index has one entry per registration)
  ua:active:<class>  zset "N|Call-ID" scored by expiry: calls in progress per device
"""
import hashlib

from lib import store
from lib.routing import DEVICE_CLASSES

# Family -> the label values it is exported with, all series created at zero at start-up.
COUNTERS = {
    "ua_calls_routed_total": [(d, r) for d in DEVICE_CLASSES
                              for r in ("selected", "logged_out", "selected_unavailable")],
    "ua_fallbacks_total": [("logged_out",), ("webrtc_unreachable",)],
    "ua_forwards_total": [(r,) for r in ("unconditional", "busy", "noanswer", "unavailable",
                                         "dnd")],
    "ua_store_errors_total": [()],
    "ua_auth_failures_total": [("sip",), ("api",), ("replay",)],
    "ua_flood_blocked_total": [()],
    "ua_overload_rejected_total": [("INVITE",), ("REGISTER",)],
}
GAUGES = {"ua_registrations": "ua:reg:", "ua_calls_in_progress": "ua:active:"}
ROUTING_HISTOGRAM = "ua_routing_duration_seconds"


def registrations_key(klass):
    return f"{GAUGES['ua_registrations']}{klass}"


def registration_member(number, field):
    """The gauge index entry of a binding (the same in registrar's connection-close Lua)."""
    return f"{number}|{hashlib.sha1(field.encode()).hexdigest()[:12]}"


def active_calls_key(device):
    return f"{GAUGES['ua_calls_in_progress']}{device}"


def gauge_values(now):
    """{(family, device): value} counted in Redis, expired entries dropped first."""
    def read(r):
        pipe = r.pipeline(transaction=False)
        for prefix in GAUGES.values():
            for klass in DEVICE_CLASSES:
                pipe.zremrangebyscore(f"{prefix}{klass}", "-inf", now)
                pipe.zcard(f"{prefix}{klass}")
        counts = pipe.execute()[1::2]
        keys = [(family, klass) for family in GAUGES for klass in DEVICE_CLASSES]
        return dict(zip(keys, counts))
    return store.call(read)

