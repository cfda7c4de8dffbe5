"""Initial requests (INVITE and other out-of-dialog requests): everything a routing
decision needs is read in one Redis round trip, then decided by a pure function."""
import dataclasses
import json
from dataclasses import dataclass, field

from lib.decisions import forwarding, routing
from lib.features import mds_health
from lib.features.registrar import decode, live
from lib.store import codec, keyspace, wire
from lib.users.forward_rules import normalize_forwards
from lib.users.profiles import profile_of

# Reads, in one round trip: the MDS name of the source address, the caller's record and
# HA1 and MDS URI and this proxy's health record of that MDS (lib/features/mds_health), and the
# callee (by number, else by DID) with selection, contacts, forwarding rules and MDS URI.
# KEYS (what client-side caching tracks, lib/store/wire.cached_script): the MDS address index,
# the caller's record, the MDS records, the health records, the dialled number's record,
# DID and contacts. A DID leads to keys not declared: that reply is not cached.
_CALL_CONTEXT = keyspace.lua("""
local src, caller, dialled = ARGV[1], ARGV[2], ARGV[3]
local res = {false, false, false, false, false, false, false, {}, false, false, false}
res[1] = redis.call('HGET', KEYS[1], src)
if caller ~= '' then
  local c = redis.call('HMGET', KEYS[2], 'profile', 'ha1')
  res[2], res[3] = c[1], c[2]
  if c[1] then
    local mds = cmsgpack.unpack(c[1])['mds']
    if mds then
      res[4] = redis.call('HGET', KEYS[3], mds)
      res[11] = redis.call('HGET', KEYS[4], mds)
    end
  end
end
local number, user, contacts = dialled, KEYS[5], KEYS[7]
if dialled == '' or redis.call('EXISTS', user) == 0 then
  number = redis.call('GET', KEYS[6])
  if number then
    user, contacts = $user_key, $contacts_key
  end
end
if number then
  res[5] = number
  local u = redis.call('HMGET', user, 'profile', 'device', 'forwards')
  res[6], res[7], res[9] = u[1], u[2], u[3]
  res[8] = redis.call('HGETALL', contacts)
  if u[1] then
    local mds = cmsgpack.unpack(u[1])['mds']
    if mds then res[10] = redis.call('HGET', KEYS[3], mds) end
  end
end
return res
""")


@dataclass
class CallContext:
    source_mds: str | None
    caller: dict | None
    caller_ha1: str | None
    caller_mds_uri: str | None
    callee: dict | None
    callee_selected: str | None
    callee_contacts: dict = field(default_factory=dict)
    callee_forwards: dict | None = None
    callee_mds_uri: str | None = None
    caller_mds_up: bool | None = None   # this proxy's view; None: not known (calls pass)


@dataclass
class RingPlan:
    """What the failure route needs of a call ringing a user's devices to decide without
    reading Redis again (the user, the device class rung and its bindings, the forwarding
    rules, the numbers that diverted the call so far). It is kept with the INVITE's
    transaction as JSON (an AVP): the failure route may run in another process."""
    number: str
    device: str
    ring_seconds: int
    forwards: dict | None
    mds_uri: str | None
    diverted: list
    rung: list

    @classmethod
    def of(cls, plan, ring, diverted):
        user = plan.ctx.callee
        return cls(number=user["number"], device=ring.device,
                   ring_seconds=user["ring_seconds"], forwards=plan.ctx.callee_forwards,
                   mds_uri=plan.ctx.callee_mds_uri,
                   diverted=diverted + [r.number for r in plan.retargets],
                   rung=[c["field"] for c in ring.contacts])

    def dumps(self):
        # vars(), not dataclasses.asdict: asdict deep-copies the rules, 30 us an INVITE
        return json.dumps(vars(self))

    @classmethod
    def loads(cls, raw):
        return cls(**json.loads(raw))

    def callee_context(self):
        """The call context of the user who was rung, as a retarget from the failure
        route needs it (no caller: the call is already authorised)."""
        return CallContext(
            source_mds=None, caller=None, caller_ha1=None, caller_mds_uri=None,
            callee={"number": self.number, "ring_seconds": self.ring_seconds},
            callee_selected=None, callee_forwards=self.forwards, callee_mds_uri=self.mds_uri)


def load_context(source_ip, caller_number, dialled, now, node):
    """node: this proxy's UA_NODE_ID, whose view of the caller's MDS health applies."""
    dialled = dialled or ""
    keys = (keyspace.MDS_ADDR_KEY, keyspace.user_key(caller_number or ""), keyspace.MDS_KEY,
            keyspace.mds_health_key(node), keyspace.user_key(dialled), keyspace.did_key(dialled),
            keyspace.contacts_key(dialled))
    ctx = wire.cached_script(_CALL_CONTEXT, keys, (source_ip, caller_number or "", dialled),
                              decode=_context,
                              cacheable=lambda reply: reply[4] in (None, dialled.encode()))
    return dataclasses.replace(ctx, callee_contacts=live(ctx.callee_contacts, now))


def _context(reply):
    """The context as read, every binding included (expired ones go at each use)."""
    (mds, caller, ha1, caller_mds, _number, callee, selected, flat, forwards,
     callee_mds, caller_health) = reply
    caller_mds_record = codec.unpack(caller_mds)
    return CallContext(
        source_mds=codec.text(mds), caller=profile_of(caller), caller_ha1=codec.text(ha1),
        caller_mds_uri=_mds_uri(caller_mds), callee=profile_of(callee),
        callee_selected=codec.text(selected), callee_contacts=decode(zip(flat[::2], flat[1::2])),
        callee_forwards=normalize_forwards(codec.unpack(forwards)),
        callee_mds_uri=_mds_uri(callee_mds),
        caller_mds_up=mds_health.status(caller_mds_record, codec.unpack(caller_health))[0]
        if caller_mds_record else None)


def _mds_uri(raw):
    record = codec.unpack(raw)
    return record["uri"] if record else None


MWI_EVENT = "message-summary"


def decide(ctx, dialled, domain, reachable_contacts, method="INVITE", event=None):
    """Where an authenticated (or MDS-trusted) initial request goes, before forwarding.

    reachable_contacts: the callee's live contacts whose connection is still up."""
    if method == "SUBSCRIBE" and (event != MWI_EVENT or ctx.source_mds is not None):
        return routing.Reject(489, "Bad Event")   # dialog presence: the presence feature
    if ctx.source_mds is None:
        outgoing = routing.route_outgoing(ctx.caller, ctx.caller_mds_uri, dialled, domain,
                                          ctx.caller_mds_up)
        if outgoing is not None:
            return outgoing
    if ctx.callee is None or method == "SUBSCRIBE":
        return routing.Reject(404, "Not Found")
    if method == "NOTIFY" and event == MWI_EVENT:
        # Message-waiting goes to every registered device of the user, not one class.
        allowed = routing.LINE_CLASSES[ctx.callee["line_type"]]
        mine = [c for c in reachable_contacts if c["class"] in allowed]
        return routing.Ring("all", "mwi", mine) if mine else routing.Reject(480, "Temporarily Unavailable")
    return routing.route_incoming(ctx.callee, ctx.callee_selected, reachable_contacts)


@dataclass
class Forward:
    """A retarget outside this proxy: to the callee's MDS (a number or its voicemail)."""
    ruri: str
    retarget: forwarding.Retarget


@dataclass
class Plan:
    """The outcome for a call to a local user, forwarding applied: `decision` is Ring,
    Reject or Forward; `diversions` the Diversion headers to add, newest first; `ctx` the
    context of the user whose devices ring (for the failure route)."""
    decision: object
    ctx: CallContext
    diversions: list = field(default_factory=list)
    retargets: list = field(default_factory=list)


def plan_incoming(ctx, decision, diverted, domain, voicemail_prefix, load_local, first=None):
    """Apply rule 1 and the unavailable case, following retargets to local users (standalone
    mode) by the same rules. `first`: a retarget already decided (by the failure route).
    load_local(number) -> (ctx, decision) for a local destination."""
    plan = Plan(decision, ctx)
    diverted = list(diverted)
    step = first
    while True:
        if step is None:
            step = forwarding.before_ringing(plan.ctx.callee["number"],
                                             plan.ctx.callee_forwards, plan.decision)
            if not isinstance(step, forwarding.Retarget):
                plan.decision = step
                return plan
        if not retarget_to(plan, step, diverted, domain, voicemail_prefix, load_local):
            return plan
        step = None


def retarget_to(plan, step, diverted, domain, voicemail_prefix, load_local):
    """Point `plan` at the destination of one retarget. True when it now rings a local
    user, whose own rules then apply."""
    plan.retargets.append(step)
    diverted.append(step.number)
    loop = forwarding.loop_check(step, diverted)
    if loop:
        plan.decision = loop
        return False
    plan.diversions.insert(0, forwarding.diversion_header(step, domain))
    ruri = forwarding.destination_uri(step, plan.ctx.callee_mds_uri, voicemail_prefix)
    if ruri is not None:
        plan.decision = Forward(ruri, step)
        return False
    if step.destination == "voicemail":
        plan.decision = routing.Reject(480, "No Voicemail Without MDS")
        return False
    local_ctx, local_decision = load_local(step.destination)
    if local_ctx.callee is None:
        plan.decision = routing.Reject(404, "Not Found")
        return False
    plan.ctx, plan.decision = local_ctx, local_decision
    return True


def split_reachable(contacts, node, connection_alive):
    """Contacts whose connection this node holds are checked against the live connection
    table, so a call never waits for a close event still in flight."""
    reachable, dead = [], []
    for contact in contacts.values():
        local_connection = contact.get("conid") is not None and contact.get("node") == node
        if local_connection and not connection_alive(contact["conid"]):
            dead.append(contact)
        else:
            reachable.append(contact)
    return reachable, dead
