"""The registrar (contract section 2): a pure decision over the stored bindings, and the
few store operations that read and apply it."""
from dataclasses import dataclass, field

from lib import config as cfgmod
from lib import metrics
from lib.decisions import sipmsg
from lib.decisions.routing import DEVICE_CLASSES, class_allowed, device_class, device_status
from lib.store import clients, codec, keyspace, wire
from lib.users.profiles import profile_of

# Keep the contacts hash a little beyond its last binding so clock skew never cuts one short.
KEY_GRACE_SECONDS = 60


@dataclass
class RegisterRequest:
    number: str
    transport: str          # udp, tcp, tls, ws, wss
    source: str             # sip:ip:port;transport=x, where replies and calls are sent
    socket: str             # proto:ip:port of the listener that received it
    conid: int | None       # connection id for connection-bound transports
    peer: str | None        # ip:port of the device's end of that connection
    contacts: list          # raw Contact header values
    expires: str | None     # raw Expires header value
    call_id: str
    cseq: int
    node: str
    node_addr: str | None = None    # where other proxies relay to this node (lib/features/nodes)


@dataclass
class RegisterResult:
    code: int
    text: str
    headers: list = field(default_factory=list)
    upserts: dict = field(default_factory=dict)
    removals: list = field(default_factory=list)
    last_expiry: float | None = None    # of the user's longest binding after this change
    reroutes: bool = False      # the next call may ring otherwise (see reroutes())


def live(contacts, now):
    return {f: c for f, c in contacts.items() if c["expires_at"] > now}


def contact_header(contact, now):
    expires = max(0, int(contact["expires_at"] - now))
    return f"Contact: <{contact['uri']}>{contact['params']};expires={expires}"


def process_register(req, line_type, stored, now, max_contacts,
                     min_expires=cfgmod.MIN_EXPIRES, max_expires=cfgmod.MAX_EXPIRES,
                     default_expires=cfgmod.DEFAULT_EXPIRES):
    """Decide a REGISTER already authenticated for req.number (RFC 3261 section 10.3)."""
    klass = device_class(req.transport)
    if not class_allowed(line_type, klass):
        return RegisterResult(403, f"{klass} devices not allowed for a {line_type} line")
    current = live(stored, now)
    expired = [f for f in stored if f not in current]
    try:
        values = [sipmsg.parse_contact(v) for v in sipmsg.split_headers(req.contacts)]
        header_expires = None if req.expires is None else sipmsg.parse_delta_seconds(req.expires)
        requested = [(uri, params, contact_expires(params, header_expires, default_expires))
                     for uri, params in values]
    except sipmsg.SipSyntaxError as exc:
        return RegisterResult(400, f"Bad Request ({exc})")

    removals, upserts = list(expired), {}
    if any(uri == "*" for uri, _, _ in requested):
        if len(requested) != 1 or header_expires != 0:
            return RegisterResult(400, "Bad Request (wildcard needs Expires 0 alone)")
        # One device's "log out everywhere" never unplugs the other device.
        removals += [f for f, c in current.items() if c["class"] == klass]
        requested = []
    for uri, params, expires in requested:
        if 0 < expires < min_expires:
            return RegisterResult(423, "Interval Too Brief", [f"Min-Expires: {min_expires}"])
        kept = [(n, v) for n, v in params if n not in ("expires", "q")]
        instance = dict(kept).get("+sip.instance")
        key = f"{klass}|{instance or uri}"
        existing = current.get(key)
        if existing and existing["call_id"] == req.call_id and existing["cseq"] > req.cseq:
            continue    # an older REGISTER arriving late never undoes a newer one
        if expires == 0:
            removals.append(key)
            continue
        upserts[key] = {
            "uri": uri, "params": sipmsg.format_params(kept), "class": klass,
            "expires_at": now + min(expires, max_expires), "source": req.source,
            "socket": req.socket, "conid": req.conid, "peer": req.peer, "node": req.node,
            "node_addr": req.node_addr,
            "call_id": req.call_id, "cseq": req.cseq, "instance": instance,
        }

    after = {f: c for f, c in current.items() if f not in removals}
    after.update(upserts)
    if sum(1 for c in after.values() if c["class"] == klass) > max_contacts:
        return RegisterResult(403, f"Too many {klass} contacts (at most {max_contacts})")
    headers = [contact_header(c, now) for c in after.values()]
    last = max((c["expires_at"] for c in after.values()), default=None)
    return RegisterResult(200, "OK", headers, upserts, removals, last,
                          reroutes(current, removals, upserts, now))


# What a call's routing reads of a binding. A refresh that changes none of them, well
# before the binding expires, rings the next call where the binding it replaces would have.
ROUTED_BY = ("uri", "params", "class", "source", "socket", "conid", "peer", "node",
             "node_addr", "instance")
REFRESH_MARGIN = 1.0    # seconds


def reroutes(current, removals, upserts, now):
    """Whether the next call may ring otherwise once this change is stored: a live binding
    goes or comes, moves, or is refreshed so close to its expiry that a call routed by the
    old record could find it expired. Only then does the 200 wait until every process
    heard of the change (store.acknowledged)."""
    if any(f in current for f in removals):
        return True
    for f, new in upserts.items():
        old = current.get(f)
        if (old is None or old["expires_at"] - now < REFRESH_MARGIN
                or any(old.get(name) != new[name] for name in ROUTED_BY)):
            return True
    return False


def contact_expires(params, header_expires, default_expires):
    value = dict(params).get("expires")
    if value is not None:
        return sipmsg.parse_delta_seconds(value)
    return default_expires if header_expires is None else header_expires


# --- store operations ------------------------------------------------------------------

def load(number):
    """(profile, ha1, contacts) of a user in one round trip."""
    (profile, ha1), contacts = wire.run(("HMGET", keyspace.user_key(number), "profile", "ha1"),
                                         ("HGETALL", keyspace.contacts_key(number)))
    return profile_of(profile), ha1.decode() if ha1 else None, decode(wire.pairs(contacts))


def apply(number, result):
    """Write a 200 decision in one MULTI round trip. Returns whether the user has BLF
    watchers (asked in the same round trip)."""
    if not result.upserts and not result.removals:
        return False
    key = keyspace.contacts_key(number)
    commands = [("MULTI",)]
    if result.removals:
        commands.append(("HDEL", key, *result.removals))
        commands += unindex(number, result.removals)
    for fld, contact in result.upserts.items():
        commands.append(("HSET", key, fld, stored(contact)))
        commands.append(("ZADD", keyspace.registrations_key(contact["class"]),
                         contact["expires_at"], metrics.registration_member(number, fld)))
        if contact["peer"] is not None:
            ckey = keyspace.conn_key(contact["node"], contact["peer"])
            commands += [("SADD", ckey, f"{number}|{fld}"),
                         ("EXPIREAT", ckey, int(contact["expires_at"]) + KEY_GRACE_SECONDS),
                         ("SADD", keyspace.conns_key(contact["node"]), contact["peer"])]
    if result.last_expiry is not None:
        # The hash lives as long as its longest binding, so a missed close event still
        # ends; only ever extended (NX for a new key, GT after): a concurrent REGISTER
        # that saw fewer bindings never cuts another's short.
        until = int(result.last_expiry) + KEY_GRACE_SECONDS
        commands += [("EXPIREAT", key, until, "NX"), ("EXPIREAT", key, until, "GT")]
    commands += [("EXEC",), ("EXISTS", keyspace.watchers_key(number))]
    watched = wire.run(*commands)[-1]
    wire.acknowledged(reroutes=result.reroutes)  # the 200 acknowledges (contract section 2)
    return bool(watched)


# A binding is stored as a msgpack array in this order, not a map: without the names it
# fits a smaller allocation (Redis memory per user, see README). Lua reads it by position
# too (_DROP_CONNECTION). Records stored as maps by earlier versions are read as they are.
CONTACT_FIELDS = ("uri", "params", "class", "expires_at", "source", "socket", "conid", "peer",
                  "node", "node_addr", "call_id", "cseq", "instance")


def stored(contact):
    return codec.pack([contact.get(name) for name in CONTACT_FIELDS])


def decode(pairs):
    """{field: contact} from the raw (field, msgpack) pairs of a contacts hash; each contact
    also carries its own field."""
    contacts = {}
    for fld, raw in pairs:
        record = codec.unpack(raw)
        contact = record if isinstance(record, dict) else dict(zip(CONTACT_FIELDS, record))
        contact["field"] = fld.decode()
        contacts[contact["field"]] = contact
    return contacts


def classes_of(contacts):
    """Which device classes these contacts cover."""
    classes = {c["class"] for c in contacts.values()}
    return {klass: klass in classes for klass in DEVICE_CLASSES}


def contacts_of(number, now):
    return live(decode(clients.call(lambda r: r.hgetall(keyspace.contacts_key(number))).items()),
                now)


def unindex(number, fields):
    """Bindings gone from the registration counts (a field starts with its class)."""
    return [("ZREM", keyspace.registrations_key(fld.split("|", 1)[0]),
             metrics.registration_member(number, fld)) for fld in fields]


def remove_bindings(number, fields):
    """Rule 7: a browser that never answered anything is gone; so are its bindings."""
    if fields:
        wire.run(("MULTI",), ("HDEL", keyspace.contacts_key(number), *fields),
                  *unindex(number, fields), ("EXEC",))


def registered_classes(r, number, now):
    """Which device classes of a user have a live binding (used by the API)."""
    return classes_of(live(decode(r.hgetall(keyspace.contacts_key(number)).items()), now))


def device_view(r, number, line_type, selected, now):
    """Contract section 3's answer: the selection, where a call would ring now and why."""
    found = registered_classes(r, number, now)
    registered = {klass: bool(found.get(klass)) for klass in DEVICE_CLASSES}
    effective, reason = device_status(line_type, selected, registered)
    return {"selected": selected, "effective": effective, "reason": reason,
            "registered": registered}


# A connection closed: remove the bindings it carried, unless a newer registration
# re-used the same binding key over another connection meanwhile. Connections are named
# by the device's ip:port: Kamailio's close event no longer knows the connection id.
_DROP_CONNECTION = keyspace.lua("""
local node, peer = ARGV[1], ARGV[2]
local removed = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local sep = string.find(member, '|', 1, true)
  local number = string.sub(member, 1, sep - 1)
  local ckey = $contacts_key
  local fld = string.sub(member, sep + 1)
  local raw = redis.call('HGET', ckey, fld)
  if raw then
    local c = cmsgpack.unpack(raw)   -- registrar.CONTACT_FIELDS, or a map (older records)
    local class, c_peer, c_node = c[3] or c['class'], c[8] or c['peer'], c[9] or c['node']
    if c_node == node and c_peer == peer then
      redis.call('HDEL', ckey, fld)
      redis.call('ZREM', $registrations_prefix .. class,
                 number .. '|' .. string.sub(redis.sha1hex(fld), 1, 12))
      table.insert(removed, number)
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], peer)
return removed
""")


def drop_connection(node, peer):
    """The numbers of the users whose bindings went with the connection (once each)."""
    removed = clients.call(lambda r: clients.script(
        r, _DROP_CONNECTION, (keyspace.conn_key(node, peer), keyspace.conns_key(node)), (node, peer)))
    return sorted({n.decode() for n in removed})


def drop_node_connections(node):
    """At start-up: every connection this node held before is gone with its process."""
    peers = clients.call(lambda r: r.smembers(keyspace.conns_key(node)))
    return sum(len(drop_connection(node, p.decode())) for p in peers)
