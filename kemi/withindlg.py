"""Requests within a dialog (loose routing) and the replies that need fixing on the way."""
import time

import KSR

from kemi.glue import MEDIA, alias_contact, guarded, pv, quietly, reply
from lib.decisions import media
from lib.features import callstate


class WithinDlg:
    """In-dialog requests: relayed along the Record-Route; media re-offered; ACK and BYE end or answer the call's state."""

    def withindlg(self):
        if KSR.is_method_in("FNB") and self.control_in_dialog():
            return
        if KSR.rr.loose_route() > 0:
            if not KSR.isdsturiset():
                KSR.nathelper.handle_ruri_alias()
            if KSR.is_myself_nhuri():
                reply(404, "Not Here")   # routed back at us: no dialog of ours is there
                return
            alias_contact()
            if MEDIA and not self.media_in_dialog():
                return
            self.relay(watch_replies=KSR.is_method_in("IU"))
            # bookkeeping after the request is on its way
            if KSR.is_ACK():
                quietly(self.answered)
            elif KSR.is_BYE():
                quietly(self.hung_up)
            return
        if KSR.is_ACK():
            if KSR.tm.t_check_trans() > 0:
                self.relay()
            return
        if KSR.is_SUBSCRIBE() and KSR.is_myself_ruri():
            self.rewatch()
            return
        reply(404, "Not Here")

    def media_in_dialog(self):
        if KSR.rr.check_route_param(f"{media.CALLEE_PARAM}=") < 0:
            return True    # a hop relaying for another proxy: that proxy adapts the media
        if KSR.is_BYE():
            KSR.rtpengine.rtpengine_delete("")
            return True
        if not KSR.is_method_in("IU"):
            return True
        # Both sides' classes ride in our Record-Route: no state is read in-dialog.
        target = media.in_dialog_target(
            KSR.rr.is_direction("downstream") > 0,
            KSR.rr.check_route_param(f"{media.CALLEE_PARAM}={media.WEBRTC}") > 0,
            KSR.rr.check_route_param(f"{media.CALLER_PARAM}={media.WEBRTC}") > 0)
        return self.media_offer(target)

    def ksr_onreply_device(self, msg):
        if 100 < KSR.pv.get("$rs") < 300:
            guarded(alias_contact)
            if MEDIA and KSR.sdpops.sdp_content() > 0:
                guarded(KSR.rtpengine.rtpengine_answer, media.ANSWER_FLAGS)
        return 1

    def answered(self):
        """The ACK of a 2xx: its call is answered (the ACK of a second fork's 2xx, or of a
        re-INVITE's, finds nothing left to answer). Recorded at the ACK, not the 2xx, so
        that a 2xx needs no reply route (issue 7: a Python callback less per reply)."""
        entries = self.call_entries(take=True)
        self.call_event(callstate.answer_event(entries, pv("$ci"), time.time()))

    def hung_up(self):
        self.forget_entries()     # a call whose ACK never passed
        self.end_call(callstate.dialog_users(KSR.hdr.get("Route")))
