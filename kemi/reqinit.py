"""First checks of every request: flood, overload, Max-Forwards, sanity, keepalives."""
import time

import KSR

from kemi.glue import CFG, count, pv, reply
from lib.features import flood, nodes, overload


class ReqInit:
    """Routes run before a request is looked at as a call or a registration."""

    def reqinit(self):
        if KSR.maxfwd.process_maxfwd(10) < 0:
            reply(483, "Too Many Hops")
            return False
        if KSR.sanity.sanity_check(17895, 7) < 0:
            return False  # sanity has answered (or dropped) it already
        KSR.force_rport()
        if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0:
            reply(200, "OK")  # keepalives and MDS qualify: no authentication
            return False
        return True

    def flooding(self):
        """Whether this request's source is blocked, or goes over the rate now (lib/features/flood)."""
        ip = pv("$si")
        if KSR.htable.sht_is_null(flood.BLOCKS, ip) < 0:
            count("ua_flood_blocked_total")
            return True
        now = time.time()
        if not flood.over_rate(KSR.htable.sht_inc(flood.COUNTS, flood.counter_key(ip, now)),
                               CFG.flood_rate) or flood.exempt(ip, now):
            return False
        KSR.htable.sht_setxi(flood.BLOCKS, ip, 1, CFG.flood_block_seconds)
        KSR.warn(f"ua: flood from {ip}: blocked for {CFG.flood_block_seconds} s\n")
        count("ua_flood_blocked_total")
        return True

    def shedding(self):
        """Overload (lib/features/overload): a new INVITE, or REGISTER, refused at once. One shared
        integer read when not overloaded; cluster relays are calls another proxy took."""
        current = KSR.htable.sht_get(overload.TABLE, overload.LEVEL_KEY)
        register = KSR.is_REGISTER()
        if not overload.sheds(current, register) or KSR.siputils.has_totag() > 0 \
                or nodes.is_relayed(pv("$ru") or ""):
            return False
        if not register and (KSR.tmx.t_precheck_trans() > 0 or KSR.tm.t_check_trans() == 0):
            return True     # a retransmission of a call already taken: tm answers it
        reply(503, "Service Unavailable", [f"Retry-After: {overload.retry_after(register)}"])
        count("ua_overload_rejected_total", "REGISTER" if register else "INVITE")
        return True
