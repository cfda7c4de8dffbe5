"""Call state for presence, BLF, the calls in progress and the history (lib/features/callstate), kept with the call until its ACK."""
import json
import time

import KSR

from kemi.glue import CFG, pv
from lib.decisions import routing
from lib.features import callstate

# The local users taking part in a call until its ACK, {number: call entry} JSON by Call-ID
# (kamailio.cfg): the failure route reads them, the ACK of the 2xx answers them.
CALLS_TABLE = "ua_calls"


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
        watched = callstate.start(party, pv("$ci"), now)
        if caller:
            KSR.rr.add_rr_param(f";{callstate.CALLER_PARAM}={caller}")
        if party.callee:
            KSR.rr.add_rr_param(f";{callstate.CALLEE_PARAM}={party.callee}")
        self.keep_entries(party.calls)
        self.watched_changed(watched)

    def track_retarget(self, plan, entries):
        """A retarget from the failure route: further forwards, or the next local user
        ringing (standalone mode). Its first retarget was recorded by end_call."""
        now = time.time()
        party = callstate.participants(plan, None, None, pv("$rU"), pv("$fU"), now,
                                       retargets_done=1)
        watched = callstate.start(party, pv("$ci"), now)
        if party.callee:
            # After the request route's: the last one names the callee (dialog_users).
            KSR.rr.add_rr_param(f";{callstate.CALLEE_PARAM}={party.callee}")
        self.keep_entries({**entries, **party.calls})
        self.watched_changed(watched)

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
        self.watched_changed(
            callstate.finish(users, pv("$ci"), time.time(), forwarded_to))
