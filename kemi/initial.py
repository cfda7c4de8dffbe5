"""Initial requests (INVITE, SUBSCRIBE, MESSAGE...): authenticate, read the call context, decide (lib/features/calls), apply."""
import time

import KSR

from kemi.glue import CFG, alias_contact, count, header_values, pv, quietly, reply
from lib import metrics
from lib.decisions import forwarding, routing, sipmsg
from lib.features import calls, registrar

IDENTITY_HEADERS = ("P-Asserted-Identity", "P-Preferred-Identity")


class Initial:
    """An out-of-dialog request: who calls, who is called, and where it rings."""

    def initial(self):
        started = time.perf_counter()
        self.route_initial()
        if CFG.metrics:
            # The request is on its way already: a metrics problem must not reach it.
            quietly(metrics.observe_routing, time.perf_counter() - started)

    def route_initial(self):
        if KSR.is_PUBLISH():
            reply(489, "Bad Event")  # presence comes with the presence feature
            return
        dialled = pv("$rU") or ""
        if not dialled:
            reply(484, "Address Incomplete")
            return
        has_credentials = KSR.auth.has_credentials(CFG.domain) > 0
        caller = KSR.pv.get("$au") if has_credentials else ""
        ctx = calls.load_context(pv("$si"), caller, dialled, time.time(), CFG.node_id)
        if ctx.source_mds is None:
            if not has_credentials:
                KSR.auth.auth_challenge(CFG.domain, 1)
                return
            if not self.authenticate(ctx.caller_ha1 if ctx.caller else None):
                return
            klass = routing.device_class(pv("$pr"))
            if not routing.class_allowed(ctx.caller["line_type"], klass):
                reply(403, f"{klass} devices not allowed for this line")
                return
            for header in IDENTITY_HEADERS:
                KSR.hdr.remove(header)
            alias_contact()
        event = (KSR.hdr.get("Event") or "").split(";")[0].strip()
        self.keep_message_summary(ctx, event)
        if KSR.is_SUBSCRIBE() and event == "dialog":
            self.watch(ctx)
            return
        decision = calls.decide(ctx, dialled, CFG.domain, self.reachable(ctx), pv("$rm"), event)
        if KSR.is_INVITE() and isinstance(decision, (routing.Ring, routing.Reject)) and ctx.callee:
            plan = calls.plan_incoming(ctx, decision, self.diverted(), CFG.domain,
                                       CFG.voicemail_prefix, self.load_local)
        else:
            plan = calls.Plan(decision, ctx)
        if ctx.source_mds is None and not isinstance(decision, routing.RelayToMds):
            KSR.hdr.append(f"P-Asserted-Identity: <sip:{ctx.caller['number']}@{CFG.domain}>\r\n")
        KSR.hdr.remove("Route")
        if not isinstance(plan.decision, routing.Reject):
            KSR.rr.record_route()
        if KSR.is_INVITE():
            self.track_call(plan, ctx.caller["number"] if ctx.source_mds is None else None)
            if ctx.source_mds is None:
                self.dialled_from_assistant(ctx.caller["number"])
            self.count_routing(plan)
        self.apply(plan, self.diverted())

    def count_routing(self, plan):
        for step in plan.retargets:
            count("ua_forwards_total", step.trigger)
        ring = plan.decision
        if isinstance(ring, routing.Ring) and ring.device in routing.DEVICE_CLASSES:
            count("ua_calls_routed_total", ring.device, ring.reason)
            if ring.device == routing.DESKPHONE and ring.reason == "logged_out":
                count("ua_fallbacks_total", "logged_out")

    def reachable(self, ctx):
        reachable, dead = calls.split_reachable(
            ctx.callee_contacts, CFG.node_id, lambda conid: KSR.tcpops.tcp_conid_alive(conid) > 0)
        for contact in dead:
            self.presence_changed(registrar.drop_connection(CFG.node_id, contact["peer"]))
        return reachable

    def load_local(self, number):
        """A local user a call is forwarded to (standalone mode), by the same rules."""
        ctx = calls.load_context("", "", number, time.time(), CFG.node_id)
        if ctx.callee is None:
            return ctx, None
        return ctx, routing.route_incoming(ctx.callee, ctx.callee_selected, self.reachable(ctx))

    def diverted(self):
        return forwarding.diverted_numbers(
            sipmsg.split_headers(header_values("Diversion")))
