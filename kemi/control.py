"""KEMI glue of the deskphone control (contract section 12), mixed into kemi/entry.py's
`kamailio`: the click-to-dial's control leg (the dialog module's bridge INVITE, looped
through this request route), its REFER's outcome, the deskphone's NOTIFYs about it, and
the deskphone's own call that follows. Decisions: lib/decisions/control.py; the
click-to-dial's record: lib/features/control.py."""
import time

import KSR

from kemi.glue import CFG, guarded, reply
from lib.decisions import control, mwi, routing
from lib.features import calls
from lib.features import control as feature
from lib.features import mwi as mwi_feature
from lib.store import clients, wire

DIAL_AVP = "ua_dial"     # "<number>.<click-to-dial id>", kept with the transaction


def _dial_ref(value):
    """(number, id) of a "<number>.<id>" reference."""
    number, _, dial_id = (value or "").partition(".")
    return number, dial_id


def _set_state(ref, state):
    number, dial_id = _dial_ref(ref)
    clients.call(lambda r: feature.update_dial(r, number, dial_id, state=state))


class ControlGlue:
    def deskphones(self, number):
        """The user's deskphone contacts that can be reached now."""
        ctx = calls.load_context("", "", number, time.time(), CFG.node_id)
        return [c for c in self.reachable(ctx) if c["class"] == routing.DESKPHONE]

    def control_request(self, ruri):
        """An initial request that is the control leg, or the API server's hang-up:
        handled (True) or not ours."""
        # the Request-URI first: a call's INVITE pays no KSR call here
        if ruri.startswith(f"sip:{control.CONTROL_USER}@") and KSR.is_NOTIFY() \
                and KSR.hdr.get("Event") == control.HANGUP_EVENT:
            self.hang_up()
            return True
        if f";{control.CONTROL_PARAM}=" not in ruri or not KSR.is_INVITE():
            return False
        self.control_leg(KSR.pv.get("$rU") or "", control.uri_param(ruri, control.CONTROL_PARAM))
        return True

    def from_this_proxy(self):
        return KSR.pv.get("$si") == CFG.listen and KSR.pv.get("$sp") == CFG.sip_port

    def hang_up(self):
        """The API server asks (lib/features/control.Control.end_dialog) to hang up an
        answered call: the dialog module's BYE to the callee here, the caller's when that
        BYE passes (hang_up_caller). Not both here: the first BYE's passing ends the
        dialog, after which the module sends no other (its dlg.end_dlg loses the second
        one that way when the two race)."""
        if not self.from_this_proxy():
            reply(403, "Forbidden (hang-up from elsewhere)")
            return
        identity = control.hangup_identity(KSR.hdr.get(control.HANGUP_HEADER))
        if identity is None or KSR.dialog.dlg_get(*identity) < 0:
            reply(404, "Not Found (no such dialog)")
            return
        KSR.dialog.dlg_setflag(control.HANGUP_DIALOG_FLAG)
        if KSR.dialog.dlg_bye("callee") < 0:
            reply(409, "Conflict (the dialog cannot be ended)")
            return
        reply(200, "OK")

    def hang_up_caller(self):
        """A BYE this proxy's dialog module sent to a call's callee, before it passes (and
        so ends the dialog): for a call hung up from the UC Assistant, the caller's BYE."""
        # From this proxy's address, over UDP from its SIP port or over TCP from any: the
        # module's BYE takes the transport of the route it follows.
        if KSR.pv.get("$si") != CFG.listen or KSR.dialog.dlg_get(
                KSR.pv.get("$ci"), KSR.pv.get("$ft"), KSR.pv.get("$tt")) < 0:
            return
        if KSR.dialog.dlg_isflagset(control.HANGUP_DIALOG_FLAG) > 0:
            KSR.dialog.dlg_resetflag(control.HANGUP_DIALOG_FLAG)
            KSR.dialog.dlg_bye("caller")

    def control_leg(self, number, dial_id):
        """The bridge's INVITE to the user's deskphone: only the deskphone's contacts ring,
        with the auto-answer hints and the destination shown as the caller. Never a call
        of the user's own (no call state, no history)."""
        if not self.from_this_proxy():
            reply(403, "Forbidden (control leg from elsewhere)")
            return
        dial = clients.call(lambda r: feature.load_dial(r, number, dial_id or ""))
        if dial is None:
            reply(404, "Not Found (no such click-to-dial)")
            return
        ref = f"{number}.{dial_id}"
        phones = self.deskphones(number)
        if not phones:
            _set_state(ref, control.REFUSED)
            reply(480, "Temporarily Unavailable (no deskphone)")
            return
        clients.call(lambda r: feature.update_dial(r, number, dial_id,
                                                   control_call_id=KSR.pv.get("$ci"),
                                                   control_cseq=int(KSR.pv.get("$cs"))))
        destination = dial["destination"]
        # The bridge's From and To are its own (a global identity, our marker): the
        # deskphone shows, and later calls from, what these say.
        KSR.hdr.remove("From")
        KSR.hdr.remove("To")
        shown = control.control_from(destination, CFG.domain, KSR.pv.get("$ft"))
        KSR.hdr.insert(f"From: {shown}\r\n")
        KSR.hdr.insert(f"To: <sip:{number}@{CFG.domain}>\r\n")
        for header in control.control_headers(CFG.domain, destination):
            KSR.hdr.append(header + "\r\n")
        KSR.rr.record_route()
        KSR.rr.add_rr_param(f";{control.CONTROL_PARAM}={ref}")
        KSR.pvx.avp_sets(DIAL_AVP, ref)
        self.set_branches(phones)
        KSR.tm.t_on_reply("ksr_onreply_relayed")     # the deskphone's Contact, aliased
        KSR.tm.t_on_failure("ksr_failure_control")
        self.relay(answer_failure=True)

    def ksr_failure_control(self, msg):
        """The deskphone refused the control leg (busy, declined, no answer)."""
        return guarded(
            lambda: _set_state(KSR.pvx.avp_get(DIAL_AVP),
                               control.outcome_of_invite(KSR.pv.get("$T_reply_code"))))

    def control_in_dialog(self):
        """A REFER, NOTIFY or BYE: of a control leg, the REFER's outcome is watched and
        what the deskphone sends to the bridge (its NOTIFYs about the REFER, its BYE when
        it ends the leg first) is answered here (True): the bridge itself answers nothing.
        A BYE of a call hung up from the UC Assistant brings its caller's (hang_up_caller)."""
        if KSR.pv.get("$rU") == control.CONTROL_USER and KSR.is_myself_ruri():
            reply(200, "OK")
            return True
        if KSR.is_BYE():
            self.hang_up_caller()
            return False
        if KSR.is_REFER():
            ref = control.uri_param(KSR.hdr.get("Route"), control.CONTROL_PARAM)
            if ref:
                KSR.pvx.avp_sets(DIAL_AVP, ref)
                KSR.tm.t_on_reply("ksr_onreply_control_refer")
        return False

    def ksr_onreply_control_refer(self, msg):
        code = KSR.pv.get("$rs")
        if code >= 200:
            guarded(lambda: _set_state(KSR.pvx.avp_get(DIAL_AVP),
                                       control.outcome_of_refer(code)))
        return 1

    def dialled_from_assistant(self, caller):
        """The deskphone's own call after the REFER: it keeps the click-to-dial's id."""
        ruri = KSR.pv.get("$ru") or ""
        if f";{control.DIAL_PARAM}=" not in ruri:
            return
        dial_id = control.uri_param(ruri, control.DIAL_PARAM)
        if dial_id:
            clients.call(lambda r: feature.update_dial(r, caller, dial_id,
                                                       call_id=KSR.pv.get("$ci")))

    # --- answer and decline from the UC Assistant ------------------------------------------

    def asked_of_call(self, plan_raw):
        """What the UC Assistant asked of this call when its ringing branch ended in 487
        (the proxy cancelled it: lib/features/control.Control.answer and .hangup), or
        None. Read only then: other failures pay nothing."""
        if not plan_raw or KSR.pv.get("$T_reply_code") != 487:
            return None
        return clients.call(lambda r: feature.take_action(r, KSR.pv.get("$ci")))

    def answer_again(self, rang):
        """The same call offered again to the deskphone, which answers by itself: the
        caller keeps hearing ringback. rang: the failure route's calls.RingPlan."""
        phones = self.deskphones(rang.number)
        if not phones:
            KSR.tm.t_reply(480, "Temporarily Unavailable")
            self.end_unanswered()
            return
        for header in control.auto_answer_hints(CFG.domain):
            KSR.hdr.append(header + "\r\n")
        self.apply(calls.Plan(routing.Ring(routing.DESKPHONE, "answered", phones),
                              rang.callee_context()), rang.diverted)

    # --- message-waiting sent again (section 5) ------------------------------------------

    def keep_message_summary(self, ctx, event):
        """An MDS's unsolicited message-summary for a user: kept, to be sent again."""
        if event == mwi.EVENT and ctx.source_mds is not None and ctx.callee \
                and KSR.is_NOTIFY():
            wire.run(mwi_feature.keep(ctx.callee["number"], KSR.pv.get("$rb") or ""))

    def resend_message_summary(self, number, contacts, summary):
        """A device registered anew: it gets the last message-summary at once."""
        for ruri, nexthop, socket, headers, body in mwi_feature.notifies(
                CFG, number, contacts, summary):
            KSR.tm.t_uac_send("NOTIFY", ruri, nexthop, socket, headers, body)
