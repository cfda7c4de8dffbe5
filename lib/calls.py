"""Initial requests (INVITE and other out-of-dialog requests): everything a routing
decision needs is read in one Redis round trip, then decided by a pure function."""
from dataclasses import dataclass, field

from lib import routing, store
from lib.registrar import live

# Reads, in one round trip: the MDS name of the source address, the caller's record and
# HA1 and MDS URI, and the callee (by number, else by DID) with selection and contacts.
_CALL_CONTEXT = """
local src, caller, dialled = ARGV[1], ARGV[2], ARGV[3]
local res = {false, false, false, false, false, false, false, {}}
res[1] = redis.call('HGET', 'ua:mds:addr', src)
if caller ~= '' then
  local c = redis.call('HMGET', 'ua:user:{' .. caller .. '}', 'profile', 'ha1')
  res[2], res[3] = c[1], c[2]
  if c[1] then
    local mds = cmsgpack.unpack(c[1])['mds']
    if mds then res[4] = redis.call('HGET', 'ua:mds', mds) end
  end
end
local number = dialled
if dialled == '' or redis.call('EXISTS', 'ua:user:{' .. dialled .. '}') == 0 then
  number = redis.call('GET', 'ua:did:' .. dialled)
end
if number then
  res[5] = number
  local u = redis.call('HMGET', 'ua:user:{' .. number .. '}', 'profile', 'device')
  res[6], res[7] = u[1], u[2]
  res[8] = redis.call('HGETALL', 'ua:contacts:{' .. number .. '}')
end
return res
"""


@dataclass
class CallContext:
    source_mds: str | None
    caller: dict | None
    caller_ha1: str | None
    caller_mds_uri: str | None
    callee: dict | None
    callee_selected: str | None
    callee_contacts: dict = field(default_factory=dict)


def _text(raw):
    return raw.decode() if raw else None


def load_context(source_ip, caller_number, dialled, now):
    def read(r):
        return r.eval(_CALL_CONTEXT, 0, source_ip, caller_number or "", dialled or "")
    mds, caller, ha1, mds_value, _number, callee, selected, flat = store.call(read)
    contacts = {flat[i].decode(): store.unpack(flat[i + 1]) for i in range(0, len(flat), 2)}
    mds_record = store.unpack(mds_value)
    return CallContext(
        source_mds=_text(mds), caller=store.unpack(caller), caller_ha1=_text(ha1),
        caller_mds_uri=mds_record["uri"] if mds_record else None,
        callee=store.unpack(callee), callee_selected=_text(selected),
        callee_contacts=live(contacts, now))


def decide(ctx, dialled, domain, reachable_contacts):
    """Where an authenticated (or MDS-trusted) initial request goes.

    reachable_contacts: the callee's live contacts whose connection is still up."""
    if ctx.source_mds is None:
        outgoing = routing.route_outgoing(ctx.caller, ctx.caller_mds_uri, dialled, domain)
        if outgoing is not None:
            return outgoing
    if ctx.callee is None:
        return routing.Reject(404, "Not Found")
    return routing.route_incoming(ctx.callee, ctx.callee_selected, reachable_contacts)


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
