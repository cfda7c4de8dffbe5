"""K of `make bench`: bench/native.cfg's routing, the same calls in the same order, written
in Python through KEMI (app_python3) instead of Kamailio's own language. K against N is
what running a request through the embedded Python interpreter costs by itself; U against
K is what the Unique Account's logic and its shared state in Redis cost on top.
Loaded by bench/native.cfg with -A WITH_KEMI."""
import os

import KSR

MDS_IP = os.environ["BENCH_MDS_IP"]     # set by bench/run.py, as the -A define for N


class kamailio:
    def child_init(self, rank):
        return 0

    def ksr_request_route(self, msg):
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return 1
        if KSR.sanity.sanity_check(17895, 7) < 0:
            return 1
        if KSR.siputils.has_totag() > 0:
            self.within_dialog()
            return 1
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        KSR.tm.t_check_trans()
        if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.pv.is_null("$rU"):
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        if KSR.is_REGISTER():
            self.registrar()
            return 1
        if KSR.is_INVITE() and KSR.pv.get("$si") == MDS_IP:
            self.location()
            return 1
        KSR.sl.sl_send_reply(403, "Forbidden")
        return 1

    def within_dialog(self):
        if KSR.rr.loose_route() > 0:
            KSR.tm.t_relay()
            return
        if KSR.is_ACK() and KSR.tm.t_check_trans() > 0:
            KSR.tm.t_relay()
            return
        KSR.sl.sl_send_reply(404, "Not here")

    def registrar(self):
        realm = KSR.pv.get("$fd")
        ha1 = KSR.htable.sht_get("ha1", KSR.pv.get("$fU")) or ""
        if KSR.auth.pv_auth_check(realm, ha1, 1, 1) < 0:
            KSR.auth.auth_challenge(realm, 1)
            return
        KSR.auth.consume_credentials()
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()

    def location(self):
        KSR.rr.record_route()
        if KSR.registrar.lookup("location") < 0:
            KSR.sl.sl_send_reply(480, "Temporarily Unavailable")
            return
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()


def mod_init():
    return kamailio()
