"""Deskphone control from the UC Assistant (contract section 12): the calls in progress,
click-to-dial and hang-up. Thin resources over lib/features/control.Control."""
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lib import metrics
from lib.features.control import RELAYED_HEADER, Control, ControlError, Elsewhere, relay
from lib.web import models
from lib.web.app import PREFIX, USER, ApiError, Route, auth, ctx

router = APIRouter(route_class=Route, prefix=PREFIX + "/users", tags=["calls"])
UNKNOWN = {404: {"model": models.Error, "description": "no such user or call"}}
CONFLICT = {409: {"model": models.Error, "description": "not possible in the call's state"}}


def _control(c):
    return Control(c.config, c.redis, c.now)


def _profile(c, number):
    found = c.provisioning.get_device(number)
    if found is None:
        raise ApiError(404, f"no user {number}")
    return found


def _acting(action, fn, request, *args):
    """Run a control action, counted by its outcome (the dashboard's control panel). An
    action on a call another proxy holds is passed to that proxy's API server, once."""
    try:
        result = fn(*args)
    except Elsewhere as there:
        if request.headers.get(RELAYED_HEADER):
            raise ApiError(409, "the call moved between proxies; try again") from there
        status, body = relay(there.url, ctx(request).config, request.method,
                             request.url.path, request.headers.get("authorization"))
        return Response(body, status, media_type="application/json" if body else None)
    except ControlError as exc:
        metrics.count("ua_control_actions_total", action,
                      "failed" if exc.status >= 500 else "refused")
        raise ApiError(exc.status, str(exc)) from exc
    metrics.count("ua_control_actions_total", action, "accepted")
    return result


@router.get("/{number}/calls", response_model=list[models.CallInProgress], responses=UNKNOWN,
            summary="Calls in progress on either device, oldest first")
@auth(USER)
def list_calls(request: Request, number: str):
    c = ctx(request)
    _profile(c, number)
    return JSONResponse(_control(c).calls(number))


@router.post("/{number}/calls", status_code=202, response_model=models.Dialing,
             summary="Click-to-dial: the deskphone answers by itself and calls the destination",
             responses={**UNKNOWN,
                        400: {"model": models.Error, "description": "not a number"},
                        409: {"model": models.Error,
                              "description": "the effective device is not the deskphone"}})
@auth(USER)
def dial(request: Request, number: str, body: models.DialIn):
    c = ctx(request)
    profile, selected = _profile(c, number)
    dial_id = _acting("dial", _control(c).dial, request, number, profile["line_type"],
                      selected, body.destination)
    return JSONResponse({"id": dial_id, "state": "dialing"}, 202)


@router.delete("/{number}/calls/{call_ref}", status_code=204, response_class=Response,
               summary="Hang up: BYE to both sides of an answered call, decline a ringing one, "
                       "cancel a placed one that still rings",
               responses={**UNKNOWN, **CONFLICT})
@auth(USER)
def hangup(request: Request, number: str, call_ref: str):
    c = ctx(request)
    _profile(c, number)
    relayed = _acting("hangup", _control(c).hangup, request, number, call_ref)
    return relayed or Response(status_code=204)


@router.post("/{number}/calls/{call_ref}/answer", status_code=202,
             response_model=models.CallInProgress,
             summary="Answer on the deskphone a call ringing there (it is offered again "
                     "with the auto-answer hints); the call as it was when asked",
             responses={**UNKNOWN, **CONFLICT})
@auth(USER)
def answer(request: Request, number: str, call_ref: str):
    c = ctx(request)
    _profile(c, number)
    answered = _acting("answer", _control(c).answer, request, number, call_ref)
    return answered if isinstance(answered, Response) else JSONResponse(answered, 202)
