"""Users (contract section 9), their device selection (3), forwarding rules (5), presence
(7) and call history (8)."""
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from lib.features import blf, callstate, mwi, registrar
from lib.users import validation
from lib.web import models
from lib.web.app import ANY_USER, PREFIX, USER, ApiError, Route, auth, ctx

router = APIRouter(route_class=Route, prefix=PREFIX + "/users", tags=["users"])
BAD = {400: {"model": models.Error, "description": "invalid body"}}
UNKNOWN = {404: {"model": models.Error, "description": "no such user"}}
HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 1000


def _body(model):
    """A validated body as the dict lib.users.provisioning checks: only the fields sent."""
    return model.model_dump(exclude_unset=True)


@router.get("", response_model=list[models.User], summary="Every user")
@auth("admin")
def list_users(request: Request):
    return JSONResponse(ctx(request).provisioning.list_users())


@router.get("/{number}", response_model=models.User, responses=UNKNOWN)
@auth("admin")
def get_user(request: Request, number: str):
    profile = ctx(request).provisioning.get_user(number)
    if profile is None:
        raise ApiError(404, f"no user {number}")
    return JSONResponse(profile)


@router.put("/{number}", response_model=models.User,
            summary="Create (201) or replace (200) a user",
            responses={**BAD, 201: {"model": models.User, "description": "created"},
                       409: {"model": models.Error, "description": "a DID already taken"}})
@auth("admin")
def put_user(request: Request, number: str, record: models.UserIn):
    if not validation.valid_number(number):
        raise ApiError(400, "number must be 1 to 20 digits")
    created, profile = ctx(request).provisioning.put_user(number, _body(record))
    return JSONResponse(profile, 201 if created else 200)


@router.delete("/{number}", status_code=204, response_class=Response, responses=UNKNOWN)
@auth("admin")
def delete_user(request: Request, number: str):
    ctx(request).provisioning.delete_user(number)
    return Response(status_code=204)


# --- device selection ------------------------------------------------------------------

def _user_device(c, number):
    """(profile, selected device) of a user, or 404."""
    found = c.provisioning.get_device(number)
    if found is None:
        raise ApiError(404, f"no user {number}")
    return found


@router.get("/{number}/device", response_model=models.DeviceStatus, responses=UNKNOWN,
            summary="The selected device and where a call rings now")
@auth(USER)
def get_device(request: Request, number: str):
    c = ctx(request)
    profile, selected = _user_device(c, number)
    return JSONResponse(registrar.device_view(c.redis, number, profile["line_type"],
                                              selected, c.now()))


@router.put("/{number}/device", response_model=models.DeviceStatus,
            summary="Select the device that rings",
            responses={**BAD, **UNKNOWN,
                       409: {"model": models.Error, "description": "line type is not ua"}})
@auth(USER)
def put_device(request: Request, number: str, choice: models.DeviceIn):
    c = ctx(request)
    profile = c.provisioning.set_device(number, choice.device)
    blf.notify_later(c.redis, number)
    view = registrar.device_view(c.redis, number, profile["line_type"], choice.device, c.now())
    mwi.resend_to_device(c.config, c.redis, number, view["effective"], c.now())
    return JSONResponse(view)


# --- presence and history --------------------------------------------------------------

@router.get("/{number}/presence", response_model=models.Presence, responses=UNKNOWN,
            summary="What colleagues see (any user may read it)")
@auth(ANY_USER)
def get_presence(request: Request, number: str):
    c = ctx(request)
    profile, selected = _user_device(c, number)
    now = c.now()
    state, device = callstate.presence(
        callstate.calls_of(c.redis, number), profile["line_type"], selected,
        registrar.registered_classes(c.redis, number, now), now)
    return JSONResponse({"state": state, "device": device})


@router.get("/{number}/history", response_model=list[models.HistoryEntry],
            summary="Calls of both devices, newest first",
            responses={**UNKNOWN, 400: {"model": models.Error, "description": "bad limit"}})
@auth(USER)
def get_history(request: Request, number: str,
                limit: int = Query(HISTORY_LIMIT_DEFAULT, ge=1, le=HISTORY_LIMIT_MAX)):
    c = ctx(request)
    _user_device(c, number)
    return JSONResponse(callstate.history(c.redis, number, limit))


# --- forwarding rules ------------------------------------------------------------------

@router.get("/{number}/forwards", response_model=models.Forwards, responses=UNKNOWN)
@auth(USER)
def get_forwards(request: Request, number: str):
    return JSONResponse(ctx(request).provisioning.get_forwards(number))


@router.put("/{number}/forwards", response_model=models.Forwards,
            summary="Replace the forwarding rules and do-not-disturb",
            responses={**BAD, **UNKNOWN})
@auth(USER)
def put_forwards(request: Request, number: str, rules: models.Forwards):
    return JSONResponse(ctx(request).provisioning.set_forwards(number, _body(rules)))
