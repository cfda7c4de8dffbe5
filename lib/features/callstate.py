"""Calls per user and device (ringing, placed, in a call), the mixed call history, and the
aggregated presence of contract sections 7 and 8. The glue reports call events; the state
lives in Redis (store.calls_key, store.history_key) so every Kamailio process and a
restarted proxy see the same thing."""
import datetime
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
# Every call event is one write, and tells which of its users have BLF watchers (the only
# ones whose change needs more work). When this process's cache says none of them has
# any, the write is posted (lib/store/wire.post): the request goes on without waiting for
# Redis. A watcher that subscribed in between (after the cache was read, before
# Redis ran the write) is found by the write itself: its user goes onto BLF_LATE_KEY, which the
# BLF timer serves within its second (lib/features/blf.late).

_WATCHED = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('EXISTS', key) end
return out
"""

# That finding, in every script that writes a call event (each asks for its users'
# watchers anyway): the script's last KEY is BLF_LATE_KEY, its last ARGV '1' when it runs
# posted. A user is named by `<number>`, or by the `<number>|<call id>` member of its gauge.
_LATE_IN_SCRIPT = """
local function late(watched, user)
  if watched == 1 and ARGV[#ARGV] == '1' then
    redis.call('RPUSH', KEYS[#KEYS], string.match(user, '^[^|]*'))
  end
end
"""

# After the posted commands of a new call. KEYS: the users' watchers hashes, then BLF_LATE_KEY.
# ARGV: the users, then '1'.
_LATE = _LATE_IN_SCRIPT + """
for i = 1, #ARGV - 1 do late(redis.call('EXISTS', KEYS[i]), ARGV[i]) end
return 0
"""


def _write(numbers, posted, wait, flags_of):
    """A call event's write: the commands `posted` (see above), or wait() (the same write,
    waited for). Returns the watched users among `numbers`, as flags_of(wait's replies)
    tells."""
    keys = [keyspace.watchers_key(n) for n in numbers]
    if wire.caching() and not any(wire.cached_script(_WATCHED, keys, (), tuple)):
        wire.post(*posted)
        return []
    return [n for n, flag in zip(numbers, flags_of(wait())) if flag == 1]


def _write_script(numbers, lua, keys, args):
    """_write of a call-event script that returns a flag per user (see _LATE_IN_SCRIPT)."""
    keys = [*keys, keyspace.BLF_LATE_KEY]
    return _write(numbers, [wire.script_command(lua, keys, [*args, "1"])],
                  lambda: wire.evalsha(lua, keys, [*args, "0"]), lambda flags: flags)


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


def start(party, call_id, now):
    """A new call (or a retarget of one): the entries of the users taking part, and the
    history of those it only passed by, in one write. Returns the watched users among
    those taking part."""
    commands = [c for number, call in party.calls.items() for c in _put(number, call_id, call)]
    for number, direction, peer, forwarded_to, device in party.unrung:
        commands += record(number, call_id, new_call(direction, device, peer, now), now,
                           forwarded_to)
    if not commands:
        return []
    numbers = list(party.calls)
    late = [wire.script_command(_LATE, [keyspace.watchers_key(n) for n in numbers]
                                + [keyspace.BLF_LATE_KEY],
                                 [*numbers, "1"])] if numbers else []
    return _write(numbers, commands + late, lambda: wire.run(*commands, *_watchers(numbers)),
                  lambda replies: replies[len(commands):])


# The 2xx of a call: each party's entry, answered, replaces the one stored, unless the call
# ended meanwhile (a CANCEL or BYE that crossed the 2xx): an ended call stays ended.
# KEYS: per party its calls hash, watchers hash and calls-in-progress gauge zset; BLF_LATE_KEY.
# ARGV: call id, then per party: entry, gauge member, gauge score, expiry of the hash; then
# whether it runs posted.
# Returns per party: 1 if it has watchers, 0 if not, -1 if the call was gone.
ANSWER_LUA = _LATE_IN_SCRIPT + """
local call_id = ARGV[1]
local out = {}
for k = 0, (#KEYS - 1) / 3 - 1 do
  local calls = KEYS[3 * k + 1]
  if redis.call('HEXISTS', calls, call_id) == 1 then
    redis.call('HSET', calls, call_id, ARGV[4 * k + 2])
    redis.call('ZADD', KEYS[3 * k + 3], ARGV[4 * k + 4], ARGV[4 * k + 3])
    redis.call('EXPIREAT', calls, ARGV[4 * k + 5], 'GT')
    out[#out + 1] = redis.call('EXISTS', KEYS[3 * k + 2])
    late(out[#out], ARGV[4 * k + 3])
  else
    out[#out + 1] = -1
  end
end
return out
"""


def answer(entries, call_id, now):
    """A 2xx to the call's INVITE: every local party is in the call now. entries: {number:
    call entry} as the call kept them. Returns the watched users."""
    if not entries:
        return []
    updated = {n: answered(c, now) for n, c in entries.items()}
    keys, args = [], [call_id]
    for number, call in updated.items():
        keys += [calls_key(number), keyspace.watchers_key(number),
                 keyspace.active_calls_key(call["device"])]
        args += [codec.pack(call), f"{number}|{call_id}", repr(call["expires_at"]),
                 int(call["expires_at"]) + 60]
    return _write_script(list(updated), ANSWER_LUA, keys, args)


def set_device(number, call_id, device):
    """Rule 7 moved the ringing to another device in the same call."""
    raw = wire.run(("HGET", calls_key(number), call_id))[0]
    if raw:
        wire.run(*unindex(number, call_id),
                  *_put(number, call_id, {**codec.unpack(raw), "device": device}))


# The end of a call, in one script: each party's entry moves into its history as
# [call id, entry, end time, forwarded to or ""] (history() formats it when read), and
# leaves the gauges of calls in progress.
# KEYS: per party its calls hash, history list and watchers hash; then the gauge zsets;
# BLF_LATE_KEY. ARGV: call id, end time, forwarded to, history length, then per party its gauge
# member; then whether it runs posted.
# Returns per party: 1 if it has watchers, 0 if not, -1 if it had no such call.
FINISH_LUA = _LATE_IN_SCRIPT + """
local call_id, parties = ARGV[1], (#KEYS - 1 - %d) / 3
local out = {}
for k = 0, parties - 1 do
  local calls, history = KEYS[3 * k + 1], KEYS[3 * k + 2]
  local entry = redis.call('HGET', calls, call_id)
  if entry then
    redis.call('LPUSH', history, cmsgpack.pack({call_id, entry, tonumber(ARGV[2]), ARGV[3]}))
    redis.call('LTRIM', history, 0, tonumber(ARGV[4]) - 1)
    redis.call('HDEL', calls, call_id)
    for z = 3 * parties + 1, #KEYS - 1 do redis.call('ZREM', KEYS[z], ARGV[5 + k]) end
    out[#out + 1] = redis.call('EXISTS', KEYS[3 * k + 3])
    late(out[#out], ARGV[5 + k])
  else
    out[#out + 1] = -1
  end
end
return out
""" % len(DEVICE_CLASSES)


def finish(numbers, call_id, now, forwarded_to=None):
    """The call ended (BYE, CANCEL, final error, forward): into each party's history.
    Returns the watched users."""
    if not numbers:
        return []
    keys = [k for n in numbers
            for k in (calls_key(n), history_key(n), keyspace.watchers_key(n))]
    keys += [keyspace.active_calls_key(d) for d in DEVICE_CLASSES]
    args = [call_id, repr(now), forwarded_to or "", HISTORY_MAX,
            *(f"{n}|{call_id}" for n in numbers)]
    return _write_script(numbers, FINISH_LUA, keys, args)


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
