"""SIP presence for BLF keys (contract section 7): subscriptions to the `dialog` event of a
user, kept in Redis so they survive a proxy restart, and the NOTIFYs to send when the
user's aggregated presence changes. The glue sends what this module returns with tm's
t_uac_send.

  ua:watchers:{N}   hash   watcher Call-ID -> msgpack subscription
  ua:presence:{N}   string the aggregated state last notified to N's watchers
  ua:watch:expiry   zset   "N|Call-ID" scored by expiry time (for the expiry timer)
"""
from dataclasses import dataclass

from lib import config
from lib.decisions import sipmsg
from lib.decisions.dialoginfo import dialog_info_xml
from lib.features import callstate
from lib.features.registrar import classes_of, decode, live
from lib.store import clients, codec, keyspace, wire
from lib.users.profiles import profile_of

MIN_EXPIRES = config.load().subscribe_min_expires
MAX_EXPIRES = DEFAULT_EXPIRES = 3600


@dataclass
class Notify:
    ruri: str
    nexthop: str
    socket: str
    headers: str
    body: str


def granted_expires(requested):
    """The subscription's duration; None means 423 (too brief) for a non-zero request."""
    if requested == 0:
        return 0
    if requested < MIN_EXPIRES:
        return None
    return min(requested, MAX_EXPIRES)


def new_subscription(number, domain, call_id, watcher, our_tag, target, nexthop, socket,
                     contact, routes, expires, now):
    """watcher: the SUBSCRIBE's From (with its tag); target: its Contact URI; nexthop and
    socket: where it came from, so NOTIFYs reach it behind NAT or over its connection."""
    return {"number": number, "entity": f"sip:{number}@{domain}", "call_id": call_id,
            "watcher": watcher, "our_tag": our_tag, "target": target, "nexthop": nexthop,
            "socket": socket, "contact": contact, "routes": routes, "cseq": 0,
            "version": 0, "expires_at": now + expires}


def notify(sub, state, now, terminated=None):
    """(updated subscription, the NOTIFY telling `state`); terminated: the reason when
    this NOTIFY ends the subscription."""
    sub = {**sub, "cseq": sub["cseq"] + 1, "version": sub["version"] + 1}
    if terminated:
        status = f"terminated;reason={terminated}"
    else:
        status = f"active;expires={max(0, int(sub['expires_at'] - now))}"
    headers = sipmsg.header_block((
        ("From", f"<{sub['entity']}>;tag={sub['our_tag']}"), ("To", sub["watcher"]),
        ("Call-ID", sub["call_id"]), ("CSeq", f"{sub['cseq']} NOTIFY"),
        ("Contact", sub["contact"]), ("Event", "dialog"), ("Subscription-State", status),
        ("Max-Forwards", "70"), ("Content-Type", "application/dialog-info+xml"),
        *(("Route", route) for route in sub["routes"])))
    body = dialog_info_xml(sub["entity"], sub["version"] - 1, state)
    return sub, Notify(sub["target"], sub["nexthop"], sub["socket"], headers, body)


# --- store ------------------------------------------------------------------------------

def _inputs(r, number, now):
    pipe = r.pipeline(transaction=False)
    pipe.hmget(keyspace.user_key(number), "profile", "device")
    pipe.hgetall(keyspace.contacts_key(number))
    pipe.hvals(keyspace.calls_key(number))
    pipe.get(keyspace.presence_key(number))
    pipe.hgetall(keyspace.watchers_key(number))
    (profile, selected), contacts, calls, last, watchers = pipe.execute()
    return profile, selected, contacts, calls, last, watchers


def presence_of(profile, selected, contacts, calls, now):
    registered = classes_of(live(decode(contacts.items()), now))
    state, _ = callstate.presence([codec.unpack(c) for c in calls], profile["line_type"],
                                  selected.decode() if selected else None, registered, now)
    return state


def subscribe(sub, now):
    """Store a new or refreshed subscription; the NOTIFY that tells the current state."""
    def write(r):
        profile, selected, contacts, calls, _, _ = _inputs(r, sub["number"], now)
        state = presence_of(profile_of(profile), selected, contacts, calls, now)
        updated, message = notify(sub, state, now)
        save(r, updated, state)
        return message
    return clients.call(write)


def save(r, sub, state=None):
    pipe = r.pipeline(transaction=True)
    pipe.hset(keyspace.watchers_key(sub["number"]), sub["call_id"], codec.pack(sub))
    pipe.zadd(keyspace.WATCH_EXPIRY_KEY, {f"{sub['number']}|{sub['call_id']}": sub["expires_at"]})
    if state:
        pipe.set(keyspace.presence_key(sub["number"]), state)
    pipe.execute()


def find(number, call_id):
    return codec.unpack(clients.call(lambda r: r.hget(keyspace.watchers_key(number), call_id)))


def unsubscribe(sub, now, reason):
    """Remove a subscription; the NOTIFY that terminates it."""
    def write(r):
        profile, selected, contacts, calls, _, _ = _inputs(r, sub["number"], now)
        state = presence_of(profile_of(profile), selected, contacts, calls, now)
        pipe = r.pipeline(transaction=True)
        pipe.hdel(keyspace.watchers_key(sub["number"]), sub["call_id"])
        pipe.zrem(keyspace.WATCH_EXPIRY_KEY, f"{sub['number']}|{sub['call_id']}")
        pipe.execute()
        return notify(sub, state, now, terminated=reason)[1]
    return clients.call(write)


def changed(numbers, now):
    """NOTIFYs for every watcher of the users whose aggregated state changed."""
    def scan(r):
        # Most users have no BLF watcher: one round trip tells, for all of them.
        pipe = r.pipeline(transaction=False)
        for number in numbers:
            pipe.exists(keyspace.watchers_key(number))
        return _notify(r, [n for n, exists in zip(numbers, pipe.execute()) if exists], now)
    return clients.call(scan) if numbers else []


def watched_changed(watched, now):
    """changed() for users already known to have watchers (the call-state writes tell,
    in their own round trip)."""
    return clients.call(lambda r: _notify(r, watched, now)) if watched else []


def _notify(r, watched, now):
    messages = []
    for number in watched:
        profile, selected, contacts, calls, last, watchers = _inputs(r, number, now)
        if not watchers or profile is None:
            continue
        state = presence_of(profile_of(profile), selected, contacts, calls, now)
        if last and last.decode() == state:
            continue
        for raw in watchers.values():
            updated, message = notify(codec.unpack(raw), state, now)
            save(r, updated, state)
            messages.append(message)
    return messages


def late(now):
    """NOTIFYs for the watched users whose presence a change outside Kamailio may have
    moved (notify_later: the API server's device selection). changed() sends only what the
    watchers have not seen."""
    numbers = wire.run(("LPOP", keyspace.BLF_LATE_KEY, 1000))[0] or []
    return changed(sorted({n.decode() for n in numbers}), now)


def expired(now):
    """Terminating NOTIFYs for the subscriptions whose time is up."""
    due = clients.call(lambda r: r.zrangebyscore(keyspace.WATCH_EXPIRY_KEY, "-inf", now))
    messages = []
    for member in due:
        number, _, call_id = member.decode().partition("|")
        sub = find(number, call_id)
        if sub is None:
            clients.call(lambda r: r.zrem(keyspace.WATCH_EXPIRY_KEY, member))
            continue
        messages.append(unsubscribe(sub, now, "timeout"))
    return messages


def notify_later(r, number):
    """A change made outside Kamailio (the API server's device selection) that may move
    the user's presence: the BLF timer tells the watchers within its second (late())."""
    if r.exists(keyspace.watchers_key(number)):
        r.rpush(keyspace.BLF_LATE_KEY, number)
