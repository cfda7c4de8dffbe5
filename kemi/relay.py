"""Sending a request where a plan says: branches, ring timers, media per branch, and the branches other proxies of the cluster route through this one."""

import KSR

from kemi.glue import CFG, MEDIA, alias_held_contact, guarded, pv, reply
from lib.decisions import forwarding, media, routing
from lib.features import calls, nodes, registrar

PLAN_AVP = "ua_plan"     # the RingPlan the failure route needs, kept with the transaction


class Relay:
    """t_relay and what goes with it."""

    def apply(self, plan, diverted):
        """Send the request where the plan says: in the request route, or in the failure
        route for a retarget (new branches of the same transaction)."""
        decision = plan.decision
        if isinstance(decision, routing.Reject):
            reply(decision.code, decision.text, decision.headers)
            if KSR.tmx.t_is_failure_route() > 0:
                self.release_media()
                self.forget_entries()
            return
        for header in reversed(plan.diversions):     # the newest ends on top
            KSR.hdr.insert(header + "\r\n")
        if isinstance(decision, routing.RelayToMds):
            KSR.seturi(decision.ruri)
            KSR.hdr.append(f"P-Asserted-Identity: {decision.identity}\r\n")
            KSR.tm.t_set_max_lifetime(forwarding.MDS_LEG_LIFETIME_MS, 0)
        elif isinstance(decision, calls.Forward):
            KSR.seturi(decision.ruri)
            KSR.resetdsturi()                 # a retarget after ringing a device
            KSR.corex.set_send_socket(f"udp:{CFG.listen}:{CFG.sip_port}")
            KSR.tm.t_reset_fr()          # the MDS's own timers, not the device's ring time
            KSR.tm.t_set_max_lifetime(forwarding.MDS_LEG_LIFETIME_MS, 0)
        else:
            self.set_branches(decision.contacts)
        if KSR.is_INVITE():
            if isinstance(decision, routing.Ring):
                self.arm_ring_timers(plan, decision, diverted)
            if MEDIA:
                KSR.tm.t_on_branch("ksr_branch_route")
            KSR.tm.t_on_failure("ksr_failure_call")
        self.relay(answer_failure=True, watch_replies=MEDIA or (
            isinstance(decision, routing.Ring)
            and nodes.replies_need_alias(decision.contacts, CFG.node_id)))

    def arm_ring_timers(self, plan, ring, diverted):
        """The ring time of the user whose devices ring, and what the failure route needs
        to decide without asking again (kept with the transaction)."""
        timers = forwarding.ring_timers_ms(ring.device, plan.ctx.callee["ring_seconds"])
        KSR.tm.t_set_fr(timers.fr_inv, timers.fr)
        KSR.tm.t_set_max_lifetime(timers.lifetime, 0)
        KSR.pvx.avp_sets(PLAN_AVP, calls.RingPlan.of(plan, ring, diverted).dumps())

    def set_branches(self, contacts):
        """Ring every contact of the chosen device class in parallel (rule 6)."""
        first, *others = [nodes.branch(c, CFG.node_id, f"udp:{CFG.listen}:{CFG.sip_port}",
                                       f"tcp:{CFG.listen}:{CFG.sip_port}") for c in contacts]
        KSR.seturi(first[0])
        KSR.setdsturi(first[1])
        KSR.corex.set_send_socket(first[2])
        for uri, dst_uri, socket in others:
            KSR.pvx.sbranch_reset()
            KSR.pv.sets("$sbranch(uri)", uri)
            KSR.pv.sets("$sbranch(dst_uri)", dst_uri)
            KSR.pv.sets("$sbranch(send_socket)", socket)
            KSR.pvx.sbranch_append()

    def relay(self, answer_failure=False, watch_replies=False):
        """t_relay; answer_failure: when nothing could be sent, answer ourselves (503 when
        rtpengine refused every branch) instead of tm's internal reply; watch_replies: the
        replies need their Contact or SDP fixed (ksr_onreply_device)."""
        if watch_replies:
            KSR.tm.t_on_reply("ksr_onreply_device")
        self.media_down = False
        if answer_failure:
            KSR.tm.t_set_disable_internal_reply(1)
        if KSR.tm.t_relay() < 0:
            if MEDIA and KSR.is_INVITE():
                KSR.rtpengine.rtpengine_delete("")
            if self.media_down:
                reply(503, "Media Relay Unavailable", ["Retry-After: 1"])
            elif answer_failure:
                reply(500, "Unable To Forward")

    def release_media(self):
        if MEDIA:
            KSR.rtpengine.rtpengine_delete("")

    def media_offer(self, target):
        """Adapt an SDP offer for the side it goes to; False (503 sent) if rtpengine is
        unreachable."""
        if KSR.sdpops.sdp_content() < 0:
            return True
        if KSR.rtpengine.rtpengine_offer(media.offer_flags(target)) > 0:
            return True
        reply(503, "Media Relay Unavailable", ["Retry-After: 1"])
        return False

    def ksr_branch_route(self, msg):
        return guarded(self.branch)

    def branch(self):
        """Each branch gets the SDP its device accepts; our Record-Route remembers both
        sides' classes for the in-dialog offers."""
        # A branch relayed through another proxy goes there ($du); the device's own URI
        # ($ru) still says transport=ws.
        destination = f"{KSR.pv.get('$du') or ''} {KSR.pv.get('$ru') or ''}"
        target = media.WEBRTC if "transport=ws" in destination.lower() else media.PLAIN
        KSR.rr.add_rr_param(media.route_params(routing.device_class(pv("$pr")), target))
        if KSR.sdpops.sdp_content() > 0 and \
                KSR.rtpengine.rtpengine_offer(media.offer_flags(target)) < 0:
            self.media_down = True
            KSR.set_drop()    # this branch is not sent; the request route answers 503

    def deliver_relayed(self):
        """A branch routed by another proxy of the cluster to a device whose connection
        this proxy holds (lib/features/nodes): delivered as it is, that proxy runs the call."""
        if not nodes.is_peer(pv("$si")):
            reply(403, "Forbidden (not a proxy of this cluster)")
            return
        ruri, binding = nodes.unwrap(pv("$ru"))
        if KSR.tcpops.tcp_conid_alive(binding["conid"]) <= 0:
            # Closed, its close event still on the way. No answer at all: the routing
            # proxy sees a device that gave no sign of life (rule 7).
            self.presence_changed(registrar.drop_connection(CFG.node_id, binding["peer"]))
            return
        KSR.seturi(ruri)
        KSR.setdsturi(binding["source"])
        KSR.corex.set_send_socket(binding["socket"])
        KSR.rr.record_route()
        if KSR.is_INVITE():
            # The device's own provisional is the routing proxy's sign of life (rule 7),
            # not a 100 Trying of ours; the routing proxy's ring time applies, not ours.
            KSR.tm.t_set_auto_inv_100(0)
            KSR.tm.t_set_fr(nodes.RELAY_FR_INV_MS, 0)
            KSR.tm.t_on_reply("ksr_onreply_relayed")
        KSR.tm.t_set_disable_internal_reply(1)     # a failed send is no sign of life either
        KSR.tm.t_relay()

    def ksr_onreply_relayed(self, msg):
        if 100 < KSR.pv.get("$rs") < 300:
            guarded(alias_held_contact)
        return 1
