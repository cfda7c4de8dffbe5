"""Call state for presence, BLF, the calls in progress and the history (lib/features/callstate), kept with the call until its ACK."""
import json
import time

import KSR

from kemi.glue import CFG, pv, quietly
from lib.decisions import routing
from lib.features import callstate

# The local users taking part in a call until its ACK, {number: call entry} JSON by Call-ID
# (kamailio.cfg): the failure route reads them, the ACK of the 2xx answers them.
CALLS_TABLE = "ua_calls"
# The call events the SIP workers hand to the node's call-event process (kamailio.cfg's
# mqueue and rtimer `events`), which writes them in batches (callstate.Batches).
EVENTS_QUEUE = "ua_events"
BATCHES = callstate.Batches()     # used by the call-event process only


class CallTracking:
    """Who takes part in a call, from its INVITE to its BYE."""

    def track_call(self, plan, caller):
        """Record who takes part in this new call, and keep it with the transaction."""
        now = time.time()
        party = callstate.participants(plan, caller, routing.device_class(pv("$pr")),
                                       pv("$rU"), pv("$fU"), now)
        # The UC Assistant cancels a ringing call by its CSeq, on the proxy holding it.
        cseq = int(pv("$cs"))
        for entry in party.calls.values():
            entry.update(cseq=cseq, node=CFG.node_id)
        self.call_event(callstate.start_event(party, pv("$ci"), now))
        if caller:
            KSR.rr.add_rr_param(f";{callstate.CALLER_PARAM}={caller}")
        if party.callee:
            KSR.rr.add_rr_param(f";{callstate.CALLEE_PARAM}={party.callee}")
        self.keep_entries(party.calls)
        if party.calls:
            # A dialog of the proxy: the UC Assistant can hang it up (section 12), the
            # dialog module keeping what each side's BYE needs.
            KSR.dialog.dlg_manage()

    def track_retarget(self, plan, entries):
        """A retarget from the failure route: further forwards, or the next local user
        ringing (standalone mode). Its first retarget was recorded by end_call."""
        now = time.time()
        party = callstate.participants(plan, None, None, pv("$rU"), pv("$fU"), now,
                                       retargets_done=1)
        self.call_event(callstate.start_event(party, pv("$ci"), now))
        if party.callee:
            # After the request route's: the last one names the callee (dialog_users).
            KSR.rr.add_rr_param(f";{callstate.CALLEE_PARAM}={party.callee}")
        self.keep_entries({**entries, **party.calls})

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

    def end_unanswered(self):
        """The call's transaction failed for good: no ACK of a 2xx will answer it."""
        users = list(self.call_entries())
        self.forget_entries()
        self.end_call(users)

    def end_call(self, users, forwarded_to=None):
        self.call_event(callstate.finish_event(users, pv("$ci"), time.time(), forwarded_to))

    def call_event(self, event):
        """Hand a call event to the call-event process: a few microseconds in shared memory
        instead of a write to Redis on the request's path (issue 24). UA_CALL_EVENTS=0
        drops them (make bench's "U without call events")."""
        if event and CFG.call_events:
            KSR.mqueue.mq_add(EVENTS_QUEUE, "e", event)

    def ksr_events_timer(self, msg, *args):
        return quietly(self.write_call_events)

    def write_call_events(self):
        """The call-event process's tick: everything queued, written in one round trip,
        then the NOTIFYs of the users found watched."""
        events = []
        while KSR.mqueue.mq_fetch(EVENTS_QUEUE) > 0:
            events.append(KSR.mqueue.mqv_get(EVENTS_QUEUE))
        if events or BATCHES.pending:
            self.watched_changed(BATCHES.write(events))
