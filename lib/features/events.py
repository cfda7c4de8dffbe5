"""The UC Assistant's live event stream (contract section 12): Server-Sent Events of a
user's device, calls, presence and waiting messages. Each stream reads the user's state
from Redis a few times a second and tells what changed (lib/decisions/control
.events_between): whatever proxy of the cluster saw a change, every stream sees it within
POLL_SECONDS, and the SIP path publishes nothing (it pays nothing for the streams)."""
import asyncio
import json
import time

from starlette.concurrency import run_in_threadpool

from lib.decisions import control, mwi
from lib.features import callstate, registrar
from lib.features import mwi as mwi_feature
from lib.features.control import Control

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15


def view(cfg, r, number, line_type, selected, now):
    """What the stream shows of a user now."""
    device = registrar.device_view(r, number, line_type, selected, now)
    state, where = callstate.presence(callstate.calls_of(r, number), line_type, selected,
                                      device["registered"], now)
    summary = mwi_feature.last(r, number)
    return {"device": device, "presence": {"state": state, "device": where},
            "voicemail": mwi.counts(summary) if summary is not None else None,
            "calls": {c["id"]: c for c in Control(cfg, r, lambda: now).calls(number)}}


def frame(event, data):
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(load, gone, clock=time.monotonic):
    """The stream's text: load() gives the user's view now (blocking: run in a thread),
    gone() whether the client went away. A comment line keeps a quiet stream open."""
    before, quiet_since = {}, clock()
    yield ": stream of the user's events\n\n"
    while not await gone():
        after = await run_in_threadpool(load)
        chunks = [frame(event, data) for event, data in control.events_between(before, after)]
        before = after
        if chunks:
            quiet_since = clock()
            yield "".join(chunks)
        elif clock() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = clock()
            yield ": keepalive\n\n"
        await asyncio.sleep(POLL_SECONDS)
