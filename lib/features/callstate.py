"""Calls per user and device (ringing, placed, in a call), the mixed call history, and the
aggregated presence of contract sections 7 and 8. The glue reports call events; the state
lives in Redis (store.calls_key, store.history_key) so every Kamailio process and a
restarted proxy see the same thing."""
import datetime
import json
from dataclasses import dataclass, field

import msgpack

from lib import config
from lib.decisions.routing import DEVICE_CLASSES, Reject, Ring, device_status
from lib.store import codec, keyspace, wire

RINGING, PLACED, IN_CALL = "ringing", "placed", "in_call"
HISTORY_MAX = config.load().history_max
# A call whose end we never saw (lost BYE, crashed peer) stops counting after this long,
# like a dialog timeout.
MAX_CALL_SECONDS = config.load().max_call_seconds
RINGING_GRACE_SECONDS = 30
# Record-Route parameters naming the local caller and callee of a call, so that a BYE
# ends their calls without any lookup.
CALLER_PARAM, CALLEE_PARAM = "ua_c", "ua_t"


def dialog_users(route):
    """The local caller and callee named in our Record-Route, read back from an in-dialog
    request's first Route header; a retarget from the failure route names its callee
    after the first one's (the last one counts)."""
    params = dict(p.partition("=")[::2] for p in (route or "").split(">")[0].split(";")[1:])
    return [n for n in (params.get(CALLER_PARAM), params.get(CALLEE_PARAM)) if n]


calls_key, history_key = keyspace.calls_key, keyspace.history_key


# --- pure -------------------------------------------------------------------------------

def new_call(direction, device, peer, now, ring_seconds=None):
    """A call of one user: `in` rings a device of it, `out` was placed by one."""
    state = RINGING if direction == "in" else PLACED
    wait = (ring_seconds or 300) * 2 + RINGING_GRACE_SECONDS
    return {"direction": direction, "device": device, "peer": peer, "state": state,
            "started_at": now, "answered_at": None, "expires_at": now + wait}


@dataclass
class Participants:
    """The local users taking part in a new call (or a new branch set of it)."""
    calls: dict = field(default_factory=dict)     # number -> call in progress
    # (number, direction, peer, forwarded_to, device): straight into the history, nothing
    # of theirs rang (forwarded before ringing, or refused at once)
    unrung: list = field(default_factory=list)
    callee: str | None = None                     # whose devices the branches ring


def participants(plan, caller, caller_device, dialled, peer, now, retargets_done=0):
    """Who takes part, from a routing plan (calls.Plan): the local caller placed it, each
    forwarding user saw it pass, the user whose devices ring has it ringing.
    retargets_done: leading retargets of the plan already recorded (a failure route)."""
    party = Participants()
    if caller:
        party.calls[caller] = new_call("out", caller_device, dialled, now)
    for step in plan.retargets[retargets_done:]:
        party.unrung.append((step.number, "in", peer, step.destination, None))
    callee = plan.ctx.callee if plan.ctx else None
    if isinstance(plan.decision, Ring) and callee:
        party.calls[callee["number"]] = new_call("in", plan.decision.device, peer, now,
                                                 callee["ring_seconds"])
        party.callee = callee["number"]
    elif isinstance(plan.decision, Reject):
        if callee and not plan.retargets:
            party.unrung.append((callee["number"], "in", peer, None, None))
        if caller:
            placed = party.calls.pop(caller)
            party.unrung.append((caller, "out", dialled, None, placed["device"]))
    return party


def answered(call, now):
    if call["answered_at"] is not None:
        return call          # a re-INVITE's 200, or a second fork's
    return {**call, "state": IN_CALL, "answered_at": now, "expires_at": now + MAX_CALL_SECONDS}


def history_entry(call_id, call, now, forwarded_to=None):
    """Section 8's record of a call that ended (a forwarded call counts as not answered)."""
    was_answered = call["answered_at"] is not None and forwarded_to is None
    return {
        "call_id": call_id, "direction": call["direction"], "device": call["device"],
        "peer": call["peer"],
        "started_at": datetime.datetime.fromtimestamp(call["started_at"], datetime.timezone.utc)
        .isoformat(timespec="seconds").replace("+00:00", "Z"),
        "answered": was_answered,
        "duration_s": round(now - call["answered_at"], 1) if was_answered else 0,
        "forwarded_to": forwarded_to}


def presence(calls, line_type, selected, registered, now):
    """(state, device): section 7, one function of the per-device calls, the login state
    and the selection. `device` is where a call would ring now (None when nowhere)."""
    effective, _ = device_status(line_type, selected, registered)
    live = [c for c in calls if c["expires_at"] > now]
    if any(c["state"] in (IN_CALL, PLACED) for c in live):
        return "in_use", effective
    if effective and any(c["state"] == RINGING and c["device"] == effective for c in live):
        return "ringing", effective
    return ("available" if effective else "unavailable"), effective


# --- store ------------------------------------------------------------------------------
# Call events are written off the request path (issue 24): a SIP worker encodes each one
# (start_event, answer_event, device_event, finish_event) and hands it to the node's
# call-event process (kemi/events: Kamailio's mqueue, read by an rtimer process), which
# writes all that arrived in one round trip (Batches) and tells the watchers of the users
# the writes found watched. Presence, BLF, calls in progress and the history lag the SIP
# message by that process's tick; the events of one node reach Redis in the order the
# workers queued them.

def start_event(party, call_id, now):
    """A new call (or a retarget of one): the entries of the users taking part, and the
    history of those it only passed by. None: nothing to write."""
    if not party.calls and not party.unrung:
        return None
    return json.dumps(["start", call_id, now, party.calls, party.unrung])


def answer_event(entries, call_id, now):
    """A 2xx to the call's INVITE: every local party is in the call now. entries: {number:
    call entry} as the call kept them."""
    return json.dumps(["answer", call_id, now, entries]) if entries else None


def device_event(number, call_id, call):
    """Rule 7 moved the ringing to another device in the same call: `call` is the entry
    with its new device."""
    return json.dumps(["device", call_id, number, call])


def finish_event(numbers, call_id, now, forwarded_to=None):
    """The call ended (BYE, CANCEL, final error, forward): into each party's history."""
    return json.dumps(["finish", call_id, now, numbers, forwarded_to]) if numbers else None


def _put(number, call_id, call):
    """The commands that store a call entry and count it in its device's gauge."""
    key, until = calls_key(number), int(call["expires_at"]) + 60
    commands = [("HSET", key, call_id, codec.pack(call))]
    if call["device"]:
        commands.append(("ZADD", keyspace.active_calls_key(call["device"]), call["expires_at"],
                         f"{number}|{call_id}"))
    return commands + [("EXPIREAT", key, until, "GT"), ("EXPIREAT", key, until, "NX")]


def _watchers(numbers):
    return [("EXISTS", keyspace.watchers_key(n)) for n in numbers]


# Each event's write: (the users it concerns, its commands, its replies -> a flag per
# user: 1 if it has BLF watchers).

def _start(call_id, now, calls, unrung):
    commands = [c for number, call in calls.items() for c in _put(number, call_id, call)]
    for number, direction, peer, forwarded_to, device in unrung:
        commands += record(number, call_id, new_call(direction, device, peer, now), now,
                           forwarded_to)
    numbers = list(calls)
    return numbers, commands + _watchers(numbers), lambda replies: replies[len(commands):]


# The 2xx of a call: each party's entry, answered, replaces the one stored, unless the call
# ended meanwhile (a CANCEL or BYE that crossed the 2xx): an ended call stays ended.
# KEYS: per party its calls hash, watchers hash and calls-in-progress gauge zset.
# ARGV: call id, then per party: entry, gauge member, gauge score, expiry of the hash.
# Returns per party: 1 if it has watchers, 0 if not, -1 if the call was gone.
ANSWER_LUA = """
local call_id = ARGV[1]
local out = {}
for k = 0, #KEYS / 3 - 1 do
  local calls = KEYS[3 * k + 1]
  if redis.call('HEXISTS', calls, call_id) == 1 then
    redis.call('HSET', calls, call_id, ARGV[4 * k + 2])
    redis.call('ZADD', KEYS[3 * k + 3], ARGV[4 * k + 4], ARGV[4 * k + 3])
    redis.call('EXPIREAT', calls, ARGV[4 * k + 5], 'GT')
    out[#out + 1] = redis.call('EXISTS', KEYS[3 * k + 2])
  else
    out[#out + 1] = -1
  end
end
return out
"""


def _answer(call_id, now, entries):
    updated = {n: answered(c, now) for n, c in entries.items()}
    keys, args = [], [call_id]
    for number, call in updated.items():
        keys += [calls_key(number), keyspace.watchers_key(number),
                 keyspace.active_calls_key(call["device"])]
        args += [codec.pack(call), f"{number}|{call_id}", repr(call["expires_at"]),
                 int(call["expires_at"]) + 60]
    return list(updated), [wire.script_command(ANSWER_LUA, keys, args)], _script_flags


def _device(call_id, number, call):
    return [number], [*unindex(number, call_id), *_put(number, call_id, call),
                      *_watchers([number])], lambda replies: replies[-1:]


# The end of a call, in one script: each party's entry moves into its history as
# [call id, entry, end time, forwarded to or ""] (history() formats it when read), and
# leaves the gauges of calls in progress.
# KEYS: per party its calls hash, history list and watchers hash; then the gauge zsets.
# ARGV: call id, end time, forwarded to, history length, then per party its gauge member.
# Returns per party: 1 if it has watchers, 0 if not, -1 if it had no such call.
FINISH_LUA = """
local call_id, parties = ARGV[1], (#KEYS - %d) / 3
local out = {}
for k = 0, parties - 1 do
  local calls, history = KEYS[3 * k + 1], KEYS[3 * k + 2]
  local entry = redis.call('HGET', calls, call_id)
  if entry then
    redis.call('LPUSH', history, cmsgpack.pack({call_id, entry, tonumber(ARGV[2]), ARGV[3]}))
    redis.call('LTRIM', history, 0, tonumber(ARGV[4]) - 1)
    redis.call('HDEL', calls, call_id)
    for z = 3 * parties + 1, #KEYS do redis.call('ZREM', KEYS[z], ARGV[5 + k]) end
    out[#out + 1] = redis.call('EXISTS', KEYS[3 * k + 3])
  else
    out[#out + 1] = -1
  end
end
return out
""" % len(DEVICE_CLASSES)


def _finish(call_id, now, numbers, forwarded_to):
    keys = [k for n in numbers
            for k in (calls_key(n), history_key(n), keyspace.watchers_key(n))]
    keys += [keyspace.active_calls_key(d) for d in DEVICE_CLASSES]
    args = [call_id, repr(now), forwarded_to or "", HISTORY_MAX,
            *(f"{n}|{call_id}" for n in numbers)]
    return numbers, [wire.script_command(FINISH_LUA, keys, args)], _script_flags


def _script_flags(replies):
    return replies[0] or []     # None: the script was refused (wire.batch logged it)


_WRITES = {"start": _start, "answer": _answer, "device": _device, "finish": _finish}


def apply(events):
    """Write encoded call events in one round trip, in their order. Returns the users
    found watched, once each."""
    writes = [_WRITES[kind](*args) for kind, *args in map(json.loads, events)]
    replies = wire.batch(*(c for _, commands, _ in writes for c in commands))
    watched, at = {}, 0
    for numbers, commands, flags_of in writes:
        flags = flags_of(replies[at:at + len(commands)])
        at += len(commands)
        watched.update((n, True) for n, flag in zip(numbers, flags) if flag == 1)
    return list(watched)


class Batches:
    """The call-event process's events not written yet. A batch Redis did not take (Redis
    down or frozen) is kept and written first on the next try; beyond KEPT events, the
    oldest go (a Redis outage that long has answered every new call 503 meanwhile)."""
    SIZE = 1000     # events a round trip
    KEPT = 100_000

    def __init__(self):
        self.pending = []

    def write(self, events):
        """Write what is pending and `events`, a batch at a time; the users found watched."""
        self.pending += events
        del self.pending[:-self.KEPT]
        watched = {}
        while self.pending:
            batch = self.pending[:self.SIZE]
            watched.update(dict.fromkeys(apply(batch)))
            del self.pending[:len(batch)]
        return list(watched)


def unindex(number, call_id):
    return [("ZREM", keyspace.active_calls_key(d), f"{number}|{call_id}") for d in DEVICE_CLASSES]


def record(number, call_id, call, ended_at, forwarded_to=None):
    """The commands that put a call into the history, in the form the call-end script
    writes."""
    key = history_key(number)
    return [("LPUSH", key, msgpack.packb([call_id, codec.pack(call), ended_at,
                                          forwarded_to or ""])),
            ("LTRIM", key, 0, HISTORY_MAX - 1)]


def _history_entry(raw):
    """A stored history item as section 8 shows it. Items written before the call-end
    script existed are already in that form."""
    item = msgpack.unpackb(raw, raw=True)
    if isinstance(item, dict):
        return codec.unpack(raw)
    call_id, call, ended_at, forwarded_to = item
    return history_entry(call_id.decode(), codec.unpack(call), ended_at,
                         forwarded_to.decode() or None)


def history(r, number, limit):
    return [_history_entry(raw) for raw in r.lrange(history_key(number), 0, limit - 1)]


def calls_of(r, number):
    return [codec.unpack(raw) for raw in r.hvals(calls_key(number))]
