"""KEMI entry: thin glue between Kamailio and lib/. It reads the SIP message into plain
values, asks lib/ for a decision and applies it with KSR calls. The routes are split by
purpose, as in Kamailio's KEMI example (reqinit, withindlg, registrar, initial, relay,
failure, events), one mixin each; `kamailio` puts them together, and `request` is the
request route's dispatch."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import KSR  # noqa: E402

from kemi.calltracking import CallTracking  # noqa: E402
from kemi.control import ControlGlue  # noqa: E402
from kemi.events import Events  # noqa: E402
from kemi.failure import Failure  # noqa: E402
from kemi.glue import CFG, guarded, pv  # noqa: E402
from kemi.initial import Initial  # noqa: E402
from kemi.presence import Presence  # noqa: E402
from kemi.registrar import Registrar  # noqa: E402
from kemi.relay import Relay  # noqa: E402
from kemi.reqinit import ReqInit  # noqa: E402
from kemi.withindlg import WithinDlg  # noqa: E402
from lib.features import nodes  # noqa: E402


def mod_init():
    return kamailio()


class kamailio(ReqInit, WithinDlg, Registrar, Initial, Relay, Failure, CallTracking, Presence,
               Events, ControlGlue):
    def child_init(self, rank):
        return 0

    def ksr_request_route(self, msg):
        return guarded(self.request)

    def request(self):
        if CFG.flood_rate and self.flooding():
            return      # dropped unanswered
        if not self.reqinit():
            return
        if KSR.is_method_in("IR") and self.shedding():
            return
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                self.relay()
            return
        if KSR.siputils.has_totag() > 0:
            self.withindlg()
            return
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()
            return
        if KSR.tm.t_check_trans() == 0:
            return
        if KSR.is_ACK():
            return  # a stray ACK for nothing we know
        if KSR.is_REGISTER():
            self.registrar()
            return
        ruri = pv("$ru") or ""
        if nodes.is_relayed(ruri):
            self.deliver_relayed()
            return
        if self.control_request(ruri):
            return
        self.initial()
