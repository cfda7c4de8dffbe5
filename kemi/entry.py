"""KEMI entry: thin glue between Kamailio and lib/. It reads the SIP message into plain
values, asks lib/ for a decision and applies it with KSR calls. Route functions are named
by purpose, as in Kamailio's KEMI example: reqinit, withindlg, registrar, initial, relay."""
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import KSR  # noqa: E402

from kemi.control import ControlGlue  # noqa: E402

from lib import (blf, calls, callstate, config, digest, flood, forwarding,  # noqa: E402
                 mds_health, media, metrics, nodes, overload, registrar, routing, sipmsg,
                 store)

CONNECTION_PROTOS = ("tcp", "tls", "ws", "wss")
LISTENER_PROTO = {"ws": "tcp", "wss": "tls"}
# Kamailio URIs know no transport=wss: a WSS peer is addressed as ws, its socket says TLS.
URI_TRANSPORT = {"wss": "ws"}
IDENTITY_HEADERS = ("P-Asserted-Identity", "P-Preferred-Identity")
CFG = config.load()
MEDIA = CFG.media == "rtpengine"
MDS_PROBER = mds_health.Prober(CFG)   # used by the MDS timer process only
# used by the overload timer process only
OVERLOAD = overload.Monitor(CFG.listen, CFG.sip_port, os.environ.get("UA_RUN_DIR"))
PLAN_AVP = "ua_plan"     # the call plan the failure route needs, kept with the transaction
# The local users taking part in a call until its ACK, {number: call entry} JSON by Call-ID
# (kamailio.cfg): the failure route reads them, the ACK of the 2xx answers them.
CALLS_TABLE = "ua_calls"
# Record-Route parameters naming the local caller and callee, so that a BYE ends their
# calls without any lookup.
CALLER_RR, CALLEE_RR = "ua_c", "ua_t"


def mod_init():
    return kamailio()


def pv(name):
    return KSR.pv.get(name)


def header_values(name):
    """Every header of that name, each read whole. KSR.hdr.get_idx hands over the parsed
    header's own text; a pseudo-variable ($(hdr(X)[*])) copies into a buffer of
    pv_buffer_size bytes and gives nothing at all when the values do not fit, which
    would read as an absent header (a REGISTER of a thousand bindings as a query)."""
    values = []
    while (value := KSR.hdr.get_idx(name, len(values))) is not None:
        values.append(value)
    return values


def reply(code, text, headers=()):
    for header in headers:
        KSR.hdr.append_to_reply(header + "\r\n")
    KSR.sl.send_reply(code, text)


def store_unavailable():
    reply(503, "Service Unavailable", ["Retry-After: 1"])


def count(family, *labels):
    """One more in a counter of lib/metrics, unless UA_METRICS=0 (make bench's comparison)."""
    if CFG.metrics:
        metrics.count(family, *labels)


def guarded(fn, *args):
    """Every entry point: an exception must never reach Kamailio (a reply would be dropped,
    a request left unanswered)."""
    try:
        fn(*args)
    except store.StoreUnavailable:
        count("ua_store_errors_total")
        if can_answer():
            store_unavailable()
    except sipmsg.SipSyntaxError as exc:
        if can_answer():
            reply(400, f"Bad Request ({exc})")
    except UnicodeDecodeError:
        # KSR hands values over as UTF-8 text: bytes that are not are bad input.
        if can_answer():
            reply(400, "Bad Request (not UTF-8)")
    except Exception:
        KSR.err("ua: " + traceback.format_exc().replace("\n", " | ") + "\n")
        if can_answer():
            reply(500, "Server Internal Error")
    return 1


def quietly(fn, *args):
    """Bookkeeping after the request was relayed: log a failure, never answer it."""
    try:
        fn(*args)
    except store.StoreUnavailable:
        count("ua_store_errors_total")
    except Exception:
        KSR.err("ua: " + traceback.format_exc().replace("\n", " | ") + "\n")


def can_answer():
    """A request being routed (not a branch of one, not an ACK) can still be answered."""
    return (KSR.siputils.is_request() > 0 and not KSR.is_ACK()
            and KSR.tmx.t_is_branch_route() < 0)


def alias_contact():
    """A device behind a connection or a NAT is only reachable through the address its
    message came from: its Contact gets an alias so in-dialog requests find the way back.
    (nat_uac_test 19: private Contact address, Via address or port not the source.)"""
    if ";alias=" in (KSR.hdr.get("Contact") or ""):
        return   # aliased by the proxy holding the device's connection (lib/nodes)
    if pv("$pr") in CONNECTION_PROTOS or KSR.nathelper.nat_uac_test(19) > 0:
        KSR.nathelper.add_contact_alias()


def alias_held_contact():
    """A reply from a device on a connection this proxy holds, on its way to another
    proxy (or to our own bridge): aliased even when its Contact names the connection's
    own address (add_contact_alias() then adds nothing), or the next proxy would alias it
    to us and route the in-dialog requests back here as to the device."""
    proto = pv("$pr")
    if proto in ("tcp", "tls") and ";alias=" not in (KSR.hdr.get("Contact") or ""):
        KSR.nathelper.add_contact_alias_addr(pv("$si"), str(pv("$sp")), proto)
    else:
        alias_contact()


def send_notify(message):
    KSR.tm.t_uac_send("NOTIFY", message.ruri, message.nexthop, message.socket,
                      message.headers, message.body)


class kamailio(ControlGlue):
    guarded = staticmethod(guarded)

    def child_init(self, rank):
        return 0

    # --- SIP requests -----------------------------------------------------------------

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

    def flooding(self):
        """Whether this request's source is blocked, or goes over the rate now (lib/flood)."""
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
        """Overload (lib/overload): a new INVITE, or REGISTER, refused at once. One shared
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

    # --- media ------------------------------------------------------------------------

    def media_offer(self, target):
        """Adapt an SDP offer for the side it goes to; False (503 sent) if rtpengine is
        unreachable."""
        if KSR.sdpops.sdp_content() < 0:
            return True
        if KSR.rtpengine.rtpengine_offer(media.offer_flags(target)) > 0:
            return True
        reply(503, "Media Relay Unavailable", ["Retry-After: 1"])
        return False

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

    # --- call state and history ---------------------------------------------------------

    def call_entries(self, take=False):
        """The call's local users kept for it; take: and forget them. Read under the
        slot's lock: htable's copy of a value still points into the shared cell, which
        another process's sht_rm frees (garbled values seen in make soak)."""
        call_id = pv("$ci")
        KSR.htable.sht_lock(CALLS_TABLE, call_id)
        try:
            raw = KSR.htable.sht_get(CALLS_TABLE, call_id)
            if raw and take:
                KSR.htable.sht_rm(CALLS_TABLE, call_id)
        finally:
            KSR.htable.sht_unlock(CALLS_TABLE, call_id)
        return json.loads(raw) if raw else {}

    def keep_entries(self, entries):
        if entries:
            KSR.htable.sht_sets(CALLS_TABLE, pv("$ci"), json.dumps(entries))
        else:
            self.forget_entries()

    def forget_entries(self):
        KSR.htable.sht_rm(CALLS_TABLE, pv("$ci"))

    def answered(self):
        """The ACK of a 2xx: its call is answered (the ACK of a second fork's 2xx, or of a
        re-INVITE's, finds nothing left to answer). Recorded at the ACK, not the 2xx, so
        that a 2xx needs no reply route (issue 7: a Python callback less per reply)."""
        entries = self.call_entries(take=True)
        if not entries:
            return
        self.watched_changed(callstate.answer(entries, pv("$ci"), time.time()))

    def dialog_users(self):
        """The local caller and callee named in our Record-Route (now the Route header); a
        retarget from the failure route names its callee after the first one's."""
        route = KSR.hdr.get("Route") or ""
        params = dict(p.partition("=")[::2] for p in route.split(">")[0].split(";")[1:])
        return [n for n in (params.get(CALLER_RR), params.get(CALLEE_RR)) if n]

    def hung_up(self):
        self.forget_entries()     # a call whose ACK never passed
        self.end_call(self.dialog_users())

    def end_unanswered(self):
        """The call's transaction failed for good: no ACK of a 2xx will answer it."""
        users = list(self.call_entries())
        self.forget_entries()
        self.end_call(users)

    def end_call(self, users, forwarded_to=None):
        self.watched_changed(
            callstate.finish(users, pv("$ci"), time.time(), forwarded_to))

    def track_call(self, plan, caller):
        """Record who takes part in this new call, and keep it with the transaction."""
        now = time.time()
        party = callstate.participants(plan, caller, routing.device_class(pv("$pr")),
                                       pv("$rU"), pv("$fU"), now)
        # The UC Assistant cancels a ringing call by its CSeq, on the proxy holding it.
        cseq = int(pv("$cs"))
        for entry in party.calls.values():
            entry.update(cseq=cseq, node=CFG.node_id)
        watched = callstate.start(party, pv("$ci"), now)
        if caller:
            KSR.rr.add_rr_param(f";{CALLER_RR}={caller}")
        if party.callee:
            KSR.rr.add_rr_param(f";{CALLEE_RR}={party.callee}")
        self.keep_entries(party.calls)
        self.watched_changed(watched)

    # --- registrar --------------------------------------------------------------------

    def authenticate(self, ha1):
        """Digest check against a stored HA1; answers the challenge or 403 itself."""
        if ha1 is None:
            ha1 = "0" * 32  # unknown user: same answer as a wrong password
        rc = KSR.auth.pv_auth_check(CFG.domain, ha1, 1, 1)
        if rc == -4:      # a stale nonce is no failure, just a new challenge; a replay is
            header = "Authorization" if KSR.is_REGISTER() else "Proxy-Authorization"
            if digest.replayed(KSR.hdr.get(header), time.time()):
                count("ua_auth_failures_total", "replay")
        elif rc < 0:
            count("ua_auth_failures_total", "sip")
        if rc == -8:
            reply(403, "Forbidden (authentication user does not own this address)")
            return False
        if rc < 0:
            KSR.auth.auth_challenge(CFG.domain, 1)
            return False
        KSR.auth.consume_credentials()
        return True

    def registrar(self):
        if KSR.auth.has_credentials(CFG.domain) < 0:
            KSR.auth.auth_challenge(CFG.domain, 1)
            return
        number = KSR.pv.get("$au")
        profile, ha1, stored, summary = registrar.load(number)
        if not self.authenticate(ha1 if profile else None):
            return
        proto = pv("$pr")
        bound = proto in CONNECTION_PROTOS
        req = registrar.RegisterRequest(
            number=number, transport=proto,
            source=f"sip:{pv('$si')}:{pv('$sp')};transport={URI_TRANSPORT.get(proto, proto)}",
            socket=f"{LISTENER_PROTO.get(proto, proto)}:{pv('$Ri')}:{pv('$Rp')}",
            conid=KSR.pv.get("$conid") if bound else None,
            peer=f"{pv('$si')}:{pv('$sp')}" if bound else None,
            contacts=header_values("Contact"),
            expires=KSR.hdr.get("Expires"), call_id=pv("$ci"),
            cseq=int(pv("$cs")), node=CFG.node_id, node_addr=CFG.node_addr)
        now = time.time()
        result = registrar.process_register(req, profile["line_type"], stored, now,
                                            CFG.max_contacts)
        if result.code == 200:
            if registrar.apply(number, result):
                self.watched_changed([number])
            if bound and result.upserts:
                KSR.tcpops.tcp_enable_closed_event_cid(req.conid)
        reply(result.code, result.text, result.headers)
        fresh = [c for f, c in result.upserts.items()
                 if f not in stored or stored[f]["expires_at"] <= now]
        if fresh and summary is not None:   # after its 200: the device knows it is registered
            self.resend_message_summary(number, fresh, summary)

    # --- initial requests -------------------------------------------------------------

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
        user = plan.ctx.callee
        timers = forwarding.ring_timers_ms(ring.device, user["ring_seconds"])
        KSR.tm.t_set_fr(timers.fr_inv, timers.fr)
        KSR.tm.t_set_max_lifetime(timers.lifetime, 0)
        KSR.pvx.avp_sets(PLAN_AVP, json.dumps({
            "number": user["number"], "device": ring.device,
            "ring_seconds": user["ring_seconds"], "forwards": plan.ctx.callee_forwards,
            "mds_uri": plan.ctx.callee_mds_uri,
            "diverted": diverted + [r.number for r in plan.retargets],
            "rung": [c["field"] for c in ring.contacts]}))

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

    # --- failure route: no answer, busy, dead browser -----------------------------------

    def ksr_failure_call(self, msg):
        return guarded(self.failure)

    def failure(self):
        raw = KSR.pvx.avp_get(PLAN_AVP)
        asked = self.asked_of_call(raw)      # the UC Assistant's answer or decline
        if (KSR.tm.t_is_canceled() > 0 and asked is None) or not raw:
            self.release_media()      # the caller cancelled, or a call to an MDS failed
            self.end_unanswered()
            return
        call = json.loads(raw)
        if asked == "answer":
            self.release_media()
            self.answer_again(call, self.failure_callee(call))
            return
        code = 603 if asked == "decline" else KSR.pv.get("$T_reply_code")
        any_reply = KSR.tm.t_any_replied() > 0
        deskphones = []
        if call["device"] == routing.WEBRTC and not any_reply:
            deskphones = [c for c in registrar.contacts_of(call["number"], time.time()).values()
                          if c["class"] == routing.DESKPHONE]
        outcome = forwarding.after_failure(
            call["number"], call["forwards"], call["device"], code,
            any_reply, call["rung"], bool(deskphones))
        self.release_media()   # a new branch set gets a fresh offer of its own
        if outcome is None:
            if asked == "decline":
                KSR.tm.t_reply(603, "Decline")    # the device's answer, not our CANCEL's 487
            self.end_unanswered()
            return
        callee = self.failure_callee(call)
        if isinstance(outcome, forwarding.RingDeskphone):
            registrar.remove_bindings(call["number"], outcome.stale_fields)
            callstate.set_device(call["number"], pv("$ci"), routing.DESKPHONE)
            entries = self.call_entries()
            if call["number"] in entries:
                entries[call["number"]]["device"] = routing.DESKPHONE
                self.keep_entries(entries)
            self.presence_changed([call["number"]])
            count("ua_fallbacks_total", "webrtc_unreachable")
            plan = calls.Plan(routing.Ring(routing.DESKPHONE, "webrtc_unreachable", deskphones),
                              callee)
        else:
            # The user whose device rang is done with this call: forwarded, not answered.
            self.end_call([call["number"]], forwarded_to=outcome.destination)
            plan = calls.plan_incoming(callee, None, call["diverted"], CFG.domain,
                                       CFG.voicemail_prefix, self.load_local, first=outcome)
            self.track_retarget(plan, {n: c for n, c in self.call_entries().items()
                                       if n != call["number"]})
            for step in plan.retargets:
                count("ua_forwards_total", step.trigger)
        self.apply(plan, call["diverted"])

    def failure_callee(self, call):
        """The context of the user whose devices rang, as the failure route kept it."""
        return calls.CallContext(
            source_mds=None, caller=None, caller_ha1=None, caller_mds_uri=None,
            callee={"number": call["number"], "ring_seconds": call["ring_seconds"]},
            callee_selected=None, callee_forwards=call["forwards"],
            callee_mds_uri=call["mds_uri"])

    def track_retarget(self, plan, entries):
        """A retarget from the failure route: further forwards, or the next local user
        ringing (standalone mode). Its first retarget was recorded by end_call."""
        now = time.time()
        party = callstate.participants(plan, None, None, pv("$rU"), pv("$fU"), now,
                                       retargets_done=1)
        watched = callstate.start(party, pv("$ci"), now)
        if party.callee:
            # After the request route's: the last one names the callee (dialog_users).
            KSR.rr.add_rr_param(f";{CALLEE_RR}={party.callee}")
        self.keep_entries({**entries, **party.calls})
        self.watched_changed(watched)

    # --- each branch: its media ---------------------------------------------------------

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

    # --- presence for BLF keys ---------------------------------------------------------

    def presence_changed(self, numbers):
        """Tell the watchers of these users, if their aggregated state changed."""
        for message in blf.changed(numbers, time.time()):
            send_notify(message)

    def watched_changed(self, watched):
        """presence_changed() for users known to have watchers (told by a call event)."""
        for message in blf.watched_changed(watched, time.time()):
            send_notify(message)

    def subscription_expires(self):
        raw = KSR.hdr.get("Expires")
        requested = blf.DEFAULT_EXPIRES if raw is None else sipmsg.parse_delta_seconds(raw)
        expires = blf.granted_expires(requested)
        if expires is None:
            reply(423, "Interval Too Brief", [f"Min-Expires: {blf.MIN_EXPIRES}"])
        return expires

    def watch(self, ctx):
        """A BLF key subscribes to user N's dialog state (RFC 4235)."""
        if ctx.callee is None:
            reply(404, "Not Found")
            return
        expires = self.subscription_expires()
        contact = KSR.hdr.get("Contact")
        if expires is None:
            return
        if not contact:
            reply(400, "Bad Request (no Contact)")
            return
        number, proto = ctx.callee["number"], pv("$pr")
        ours = f"<sip:{number}@{pv('$Ri')}:{pv('$Rp')};transport={URI_TRANSPORT.get(proto, proto)}>"
        sub = blf.new_subscription(
            number, CFG.domain, pv("$ci"), KSR.hdr.get("From"), KSR.pv.get("$ltt(s)"),
            sipmsg.parse_contact(sipmsg.split_values(contact)[0])[0],
            f"sip:{pv('$si')}:{pv('$sp')};transport={URI_TRANSPORT.get(proto, proto)}",
            f"{LISTENER_PROTO.get(proto, proto)}:{pv('$Ri')}:{pv('$Rp')}", ours,
            sipmsg.split_headers(header_values("Record-Route")), expires, time.time())
        reply(200, "OK", [f"Expires: {expires}", f"Contact: {ours}"])
        send_notify(blf.subscribe(sub, time.time()) if expires
                    else blf.notify(sub, "unavailable", time.time(), "timeout")[1])

    def rewatch(self):
        """A watcher refreshes its subscription, or ends it with Expires: 0."""
        sub = blf.find(pv("$rU") or "", pv("$ci"))
        if sub is None:
            reply(481, "Subscription Does Not Exist")
            return
        expires = self.subscription_expires()
        if expires is None:
            return
        reply(200, "OK", [f"Expires: {expires}"])
        now = time.time()
        if expires == 0:
            send_notify(blf.unsubscribe(sub, now, "timeout"))
        else:
            send_notify(blf.subscribe({**sub, "expires_at": now + expires}, now))

    def ksr_blf_timer(self, msg, *args):
        def expire():
            now = time.time()
            for message in blf.late(now) + blf.expired(now):
                send_notify(message)
        return guarded(expire)

    # --- MDS health: OPTIONS probes from a timer process of their own ---------------------

    def ksr_mds_timer(self, msg, *args):
        return guarded(MDS_PROBER.tick, time.time())

    # --- overload: the node's own state, sampled in a timer process of its own ----------

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
        return guarded(sample)

    # --- connections ------------------------------------------------------------------

    def deliver_relayed(self):
        """A branch routed by another proxy of the cluster to a device whose connection
        this proxy holds (lib/nodes): delivered as it is, that proxy runs the call."""
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

    def ksr_tcpops_event(self, msg, evname=""):
        def closed():
            self.presence_changed(
                registrar.drop_connection(CFG.node_id, f"{pv('$si')}:{pv('$sp')}"))
        return guarded(closed)

    # --- HTTP: the WebSocket handshake only (the API has its own server, lib/web) -------

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
