"""Events and timers: MDS probes, overload sampling, closed connections, the WebSocket handshake."""
import time

import KSR

from kemi.glue import CFG, guarded, pv, quietly
from lib import config
from lib.features import mds_health, overload, registrar

MDS_PROBER = mds_health.Prober(CFG)   # used by the MDS timer process only
OVERLOAD = overload.Monitor(CFG)      # used by the overload timer process only


class Events:
    """Callbacks Kamailio names in kamailio.cfg (rtimer, tcpops, xhttp)."""

    def ksr_mds_timer(self, msg, *args):
        return quietly(MDS_PROBER.tick, time.time())

    def ksr_overload_timer(self, msg, *args):
        def sample():
            used = KSR.pv.get("$stat(real_used_size)")
            change = OVERLOAD.tick(used / KSR.pv.get("$stat(total_size)"), time.time())
            if change is None:
                return
            level, _, line = change
            KSR.htable.sht_seti(overload.TABLE, overload.LEVEL_KEY, level)
            if line:
                KSR.warn(f"ua: {line}\n")
        return quietly(sample)

    def ksr_tcpops_event(self, msg, evname=""):
        def closed():
            self.presence_changed(
                registrar.drop_connection(CFG.node_id, f"{pv('$si')}:{pv('$sp')}"))
        return quietly(closed)

    def ksr_xhttp_event(self, msg, evname=""):
        return guarded(self.http)

    def http(self):
        upgrade = (KSR.hdr.get("Upgrade") or "").lower()
        if upgrade == "websocket" and KSR.pv.get("$Rp") in (CFG.http_port, CFG.https_port):
            self.websocket_upgrade(KSR.xhttp.get_hu() or "/")
        else:
            KSR.xhttp.xhttp_reply(404, "Not Found", "text/plain", "")

    def websocket_upgrade(self, path):
        origin = KSR.hdr.get("Origin")
        if path.split("?")[0] != "/ws":
            KSR.xhttp.xhttp_reply(404, "Not Found", "text/plain", "no WebSocket here\n")
        elif origin and not config.origin_allowed(CFG, origin):
            # Browsers always send Origin; a non-browser client could forge it anyway.
            KSR.xhttp.xhttp_reply(403, "Forbidden", "text/plain", "origin not allowed\n")
        else:
            KSR.websocket.handle_handshake()
