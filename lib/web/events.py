"""The UC Assistant's live event stream (contract section 12): a thin resource over
lib/features/events."""
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from lib.features import events
from lib.web import models
from lib.web.app import PREFIX, USER, ApiError, Route, auth, ctx

router = APIRouter(route_class=Route, prefix=PREFIX + "/users", tags=["events"])


@router.get("/{number}/events", response_class=StreamingResponse,
            summary="Server-Sent Events: device, call, presence, voicemail",
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: device|call|presence|voicemail`, "
                                            "`data:` the JSON body; a comment line at least "
                                            "every 15 s"},
                       404: {"model": models.Error, "description": "no such user"}})
@auth(USER)
def user_events(request: Request, number: str):
    c = ctx(request)
    found = c.provisioning.get_device(number)
    if found is None:
        raise ApiError(404, f"no user {number}")
    profile, selected = found

    def load():
        # the selection as stored now: a PUT .../device from another tab shows at once
        current = c.provisioning.get_device(number)
        chosen = current[1] if current else selected
        return events.view(c.config, c.redis, number, profile["line_type"], chosen, c.now())
    return StreamingResponse(events.stream(load, request.is_disconnected),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
