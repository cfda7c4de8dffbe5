"""The INVITE's failure route: no answer, busy, a dead browser (rule 7); the decision is lib/decisions/forwarding.after_failure."""
import time

import KSR

from kemi.glue import CFG, count, guarded, pv
from kemi.relay import PLAN_AVP
from lib.decisions import forwarding, routing
from lib.features import calls, callstate, registrar


class Failure:
    """What happens when every branch of a call failed."""

    def ksr_failure_call(self, msg):
        return guarded(self.failure)

    def failure(self):
        raw = KSR.pvx.avp_get(PLAN_AVP)
        asked = self.asked_of_call(raw)      # the UC Assistant's answer or decline
        if (KSR.tm.t_is_canceled() > 0 and asked is None) or not raw:
            self.release_media()      # the caller cancelled, or a call to an MDS failed
            self.end_unanswered()
            return
        rang = calls.RingPlan.loads(raw)
        if asked == "answer":
            self.release_media()
            self.answer_again(rang)
            return
        code = 603 if asked == "decline" else KSR.pv.get("$T_reply_code")
        any_reply = KSR.tm.t_any_replied() > 0
        deskphones = []
        if rang.device == routing.WEBRTC and not any_reply:
            deskphones = [c for c in registrar.contacts_of(rang.number, time.time()).values()
                          if c["class"] == routing.DESKPHONE]
        outcome = forwarding.after_failure(
            rang.number, rang.forwards, rang.device, code, any_reply, rang.rung,
            bool(deskphones))
        self.release_media()   # a new branch set gets a fresh offer of its own
        if outcome is None:
            if asked == "decline":
                KSR.tm.t_reply(603, "Decline")    # the device's answer, not our CANCEL's 487
            self.end_unanswered()
            return
        callee = rang.callee_context()
        if isinstance(outcome, forwarding.RingDeskphone):
            registrar.remove_bindings(rang.number, outcome.stale_fields)
            entries = self.call_entries()
            if rang.number in entries:
                entries[rang.number]["device"] = routing.DESKPHONE
                self.keep_entries(entries)
                # the call-event process tells the watchers, after the write
                self.call_event(callstate.device_event(rang.number, pv("$ci"),
                                                       entries[rang.number]))
            count("ua_fallbacks_total", "webrtc_unreachable")
            plan = calls.Plan(routing.Ring(routing.DESKPHONE, "webrtc_unreachable", deskphones),
                              callee)
        else:
            # The user whose device rang is done with this call: forwarded, not answered.
            self.end_call([rang.number], forwarded_to=outcome.destination)
            plan = calls.plan_incoming(callee, None, rang.diverted, CFG.domain,
                                       CFG.voicemail_prefix, self.load_local, first=outcome)
            self.track_retarget(plan, {n: c for n, c in self.call_entries().items()
                                       if n != rang.number})
            for step in plan.retargets:
                count("ua_forwards_total", step.trigger)
        self.apply(plan, rang.diverted)
