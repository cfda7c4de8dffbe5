"""Calls per user and device (ringing, placed, in a call), the mixed call history, and the
aggregated presence of contract sections 7 and 8. The glue reports call events; the state
lives in Redis (store.calls_key, store.history_key) so every Kamailio process and a
restarted proxy see the same thing."""
import datetime
import os

from dataclasses import dataclass, field

from lib import metrics, store
from lib.routing import DEVICE_CLASSES, Reject, Ring, device_status

RINGING, PLACED, IN_CALL = "ringing", "placed", "in_call"
HISTORY_MAX = int(os.environ.get("UA_HISTORY_MAX", "1000"))
# A call whose end we never saw (lost BYE, crashed peer) stops counting after this long,
# like a dialog timeout.
MAX_CALL_SECONDS = int(os.environ.get("UA_MAX_CALL_SECONDS", str(4 * 3600)))
RINGING_GRACE_SECONDS = 30


calls_key, history_key = store.calls_key, store.history_key


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

def begin(entries, call_id):
    """entries: {number: call entry} of the local users taking part."""
    def write(r):
        pipe = r.pipeline(transaction=False)
        for number, call in entries.items():
            pipe.hset(calls_key(number), call_id, store.pack(call))
            if call["device"]:
                pipe.zadd(metrics.active_calls_key(call["device"]),
                          {f"{number}|{call_id}": call["expires_at"]})
            pipe.expireat(calls_key(number), int(call["expires_at"]) + 60, gt=True)
            pipe.expireat(calls_key(number), int(call["expires_at"]) + 60, nx=True)
        pipe.execute()
    if entries:
        store.call(write)


def _load(r, numbers, call_id):
    pipe = r.pipeline(transaction=False)
    for number in numbers:
        pipe.hget(calls_key(number), call_id)
    return {n: store.unpack(raw) for n, raw in zip(numbers, pipe.execute()) if raw}


def answer(numbers, call_id, now):
    """A 2xx to the call's INVITE: every local party is in the call now."""
    def update(r):
        calls = _load(r, numbers, call_id)
        begin({n: answered(c, now) for n, c in calls.items()}, call_id)
        return list(calls)
    return store.call(update) if numbers else []


def set_device(number, call_id, device):
    """Rule 7 moved the ringing to another device in the same call."""
    def update(r):
        call = _load(r, [number], call_id).get(number)
        if call:
            pipe = r.pipeline(transaction=False)
            unindex(pipe, number, call_id)
            pipe.execute()
            begin({number: {**call, "device": device}}, call_id)
    store.call(update)


def finish(numbers, call_id, now, forwarded_to=None):
    """The call ended (BYE, CANCEL, final error, forward): into each party's history."""
    def write(r):
        calls = _load(r, numbers, call_id)
        pipe = r.pipeline(transaction=False)
        for number, call in calls.items():
            record(pipe, number, history_entry(call_id, call, now, forwarded_to))
            pipe.hdel(calls_key(number), call_id)
            unindex(pipe, number, call_id)
        pipe.execute()
        return list(calls)
    return store.call(write) if numbers else []


def unindex(pipe, number, call_id):
    for device in DEVICE_CLASSES:
        pipe.zrem(metrics.active_calls_key(device), f"{number}|{call_id}")


def record(pipe, number, entry):
    pipe.lpush(history_key(number), store.pack(entry))
    pipe.ltrim(history_key(number), 0, HISTORY_MAX - 1)


def record_unrung(number, call_id, now, direction, peer, forwarded_to=None, device=None):
    """A call that never went further than the proxy for `number`: forwarded before any
    device rang (unconditional, DND, nobody registered), or refused at once."""
    entry = history_entry(call_id, new_call(direction, device, peer, now), now, forwarded_to)
    def write(r):
        pipe = r.pipeline(transaction=False)
        record(pipe, number, entry)
        pipe.execute()
    store.call(write)


def start(party, call_id, now):
    begin(party.calls, call_id)
    for number, direction, peer, forwarded_to, device in party.unrung:
        record_unrung(number, call_id, now, direction, peer, forwarded_to, device)


def history(r, number, limit):
    return [store.unpack(raw) for raw in r.lrange(history_key(number), 0, limit - 1)]


def calls_of(r, number):
    return [store.unpack(raw) for raw in r.hvals(calls_key(number))]
