"""The API's bodies as pydantic models: FastAPI validates requests with them and writes the
OpenAPI document from them. What a schema cannot say (a password needed to create a user,
an MDS that must exist, a DID free in the store, a `ua` line refusing memberships, an
enabled forward needing a destination) is checked by lib.users.provisioning after the model,
with the same messages as the CSV import."""
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lib.decisions.routing import DEVICE_CLASSES
from lib.users import forward_rules, profiles, validation


def _anchored(regex):
    return "^" + regex.pattern + "$"


NUMBER_PATTERN = _anchored(validation.NUMBER_RE)
DID_PATTERN = _anchored(validation.DID_RE)
MDS_NAME_PATTERN = _anchored(validation.MDS_NAME_RE)
FORWARD_DEST_PATTERN = f"^({forward_rules.VOICEMAIL}|{forward_rules.FORWARD_DEST_RE.pattern})$"

LineType = Literal[profiles.LINE_TYPES]
Device = Literal[DEVICE_CLASSES]
DeviceReason = Literal["selected", "logged_out", "selected_unavailable", "none_registered"]
PresenceState = Literal["available", "ringing", "in_use", "unavailable"]
_UA_REFUSED = dict(validation.UA_UNSUPPORTED)


class Body(BaseModel):
    """A request body: unknown fields refused, no type coercion ("30" is not 30)."""
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def unicode_only(cls, value):
        # JSON's "\ud800" escape parses to a lone surrogate, which nothing can store.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (a lone surrogate escape)") from None
        except (TypeError, ValueError):
            pass                        # not JSON: the model's own checks refuse it
        return value


class Answer(BaseModel):
    """A response body (documentation only: handlers answer plain JSON)."""


def _membership_list():
    return Field(default_factory=list, max_length=validation.MAX_MEMBERSHIP_ITEMS)


class Memberships(Body):
    """Features a `ua` line does not support (contract section 9); an absent key takes its
    default."""
    groups: list[str] = _membership_list()
    queues: list[str] = _membership_list()
    pickup_groups: list[str] = _membership_list()
    paging_groups: list[str] = _membership_list()
    callfilters: list[str] = _membership_list()
    agent: str | None = Field(None, description=_UA_REFUSED["agent"])
    switchboard: bool = Field(False, description=_UA_REFUSED["switchboard"])


class UserIn(Body):
    """Replaces the whole record (absent optional fields take their defaults) except that
    an absent `password` keeps the current one; a password is required to create a user.
    `mds` must name an existing MDS; a DID must not belong to another user nor be another
    user's number (409). A `ua` line refuses every membership (400 naming the feature)."""
    model_config = ConfigDict(json_schema_extra={"example": {
        "name": "Alice", "password": "secret", "line_type": "ua", "mds": "mds1",
        "dids": ["+33123456789"], "ring_seconds": 30}})
    number: str | None = Field(None, pattern=NUMBER_PATTERN,
                               description="when present, must equal the number in the path")
    name: str = Field(max_length=validation.MAX_NAME_LENGTH)
    password: str | None = Field(None, min_length=1, max_length=validation.MAX_PASSWORD_LENGTH,
                                 description="SIP password, stored only as HA1")
    line_type: LineType
    mds: str | None = Field(None, pattern=MDS_NAME_PATTERN,
                            description="name of the user's MDS; null: standalone")
    dids: list[str] | None = Field(None, max_length=validation.MAX_DIDS)
    ring_seconds: int | None = Field(None, ge=1, le=validation.MAX_RING_SECONDS,
                                     description=f"default {profiles.DEFAULT_RING_SECONDS}")
    memberships: Memberships | None = None


class MembershipsOut(Answer):
    groups: list[str]
    queues: list[str]
    pickup_groups: list[str]
    paging_groups: list[str]
    callfilters: list[str]
    agent: str | None
    switchboard: bool


class User(Answer):
    """A user record as stored: never a password or an HA1."""
    number: str = Field(pattern=NUMBER_PATTERN)
    name: str
    line_type: LineType
    mds: str | None
    dids: list[str]
    ring_seconds: int
    memberships: MembershipsOut


class DeviceIn(Body):
    device: Device


class Registered(Answer):
    webrtc: bool
    deskphone: bool


class DeviceStatus(Answer):
    selected: Device
    effective: Device | None = Field(description="where an incoming call rings now")
    reason: DeviceReason
    registered: Registered


class Presence(Answer):
    state: PresenceState
    device: Device | None


class HistoryEntry(Answer):
    call_id: str
    direction: Literal["in", "out"]
    device: Device | None
    peer: str | None
    started_at: str = Field(description="ISO 8601, UTC")
    answered: bool
    duration_s: float
    forwarded_to: str | None


class ForwardRule(Body):
    enabled: bool
    destination: str | None = Field(None, pattern=FORWARD_DEST_PATTERN,
                                    description="a number or `voicemail`")


class Forwards(Body):
    """PUT replaces every rule: an absent one is disabled, with no destination."""
    unconditional: ForwardRule = ForwardRule(enabled=False)
    busy: ForwardRule = ForwardRule(enabled=False)
    noanswer: ForwardRule = ForwardRule(enabled=False)
    dnd: bool = False


class MdsIn(Body):
    name: str | None = Field(None, pattern=MDS_NAME_PATTERN,
                             description="when present, must equal the name in the path")
    uri: str = Field(description="sip:host[:port], no user part, no parameters")
    addresses: list[str] = Field(default_factory=list, max_length=validation.MAX_MDS_ADDRESSES,
                                 description="IP addresses trusted as this MDS")


class Mds(Answer):
    name: str
    uri: str
    addresses: list[str]
    up: bool | None = Field(description="OPTIONS probing by this proxy; null: not probed yet")
    since: str | None


class ImportResult(Answer):
    created: int
    updated: int
    dry_run: bool | None = None


class Error(Answer):
    error: str = Field(description="what was wrong")


class LineError(Answer):
    line: int = Field(ge=1, description="the header is line 1")
    error: str


class ImportError(Answer):
    """A refused CSV import: nothing was written; `lines` lists every refused line (none
    for a bad query parameter)."""
    error: str
    lines: list[LineError] = []


class PageConfig(Answer):
    """What the UC Assistant page needs to reach the proxy (lib/web/page.py)."""
    domain: str = Field(description="the SIP domain (UA_DOMAIN)")
    ws_port: int = Field(description="SIP over WebSocket, for a page loaded over HTTP")
    wss_port: int = Field(description="SIP over secure WebSocket, for a page over HTTPS")
    voicemail_number: str = Field(description="what the voicemail button dials")


class Health(Answer):
    status: Literal["ok", "degraded"]
    reason: str | None = None


class DialIn(Body):
    destination: str = Field(pattern=r"^[0-9*#]{1,32}$",
                             description="the number to call, or the voicemail number "
                                         "(UA_VOICEMAIL_NUMBER, *98)")


class CallInProgress(Answer):
    id: str = Field(description="opaque, URL-safe, stable for the call")
    call_id: str | None = Field(description="the SIP Call-ID on the user's device")
    direction: Literal["in", "out"]
    device: Device | None
    peer: str | None
    state: Literal["dialing", "ringing", "answered"]
    since: str = Field(description="ISO 8601, UTC")


class Dialing(Answer):
    id: str
    state: Literal["dialing"]
