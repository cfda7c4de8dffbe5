"""OpenAPI 3.0 description of the HTTP API (contract sections 3, 5, 7, 8, 9, 11).

DOCUMENT is a plain dict, served as is by `GET /api/v1/openapi.json` (no credentials).
Limits, enums and patterns come from the constants the handlers validate with, so the
document follows the code; tests/test_openapi.py checks that every route registered in
lib.api._ROUTES is documented and that every documented operation exists, and
tests/test_api_fuzz.py checks the handlers against the schemas and status codes here.

Conventions: patterns are anchored (`^...$`); `additionalProperties: false` wherever the
API refuses unknown fields; every 4xx/5xx body is `{"error": "..."}` (CSV import adds
`lines`; health's 503 is `{"status": "degraded", "reason": "..."}`). CORS preflight
(`OPTIONS` on every path: 204, or 403 for an origin outside UA_WS_ORIGINS), 404 for an
unknown path and 405 (with `Allow`) for a method a path does not have are answered for
every path and are not repeated per operation. `x-auth` names the route's auth level in
lib.api (none, admin, user, any_user).
"""
import copy

from lib import api
from lib import csvio
from lib import provisioning as prov

OPENAPI_PATH = api.PREFIX + "/openapi.json"
VERSION = "1.0.0"


def _anchored(regex):
    return "^" + regex.pattern + "$"


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


NUMBER_PATTERN = _anchored(prov.NUMBER_RE)                     # ^[0-9]{1,20}$
DID_PATTERN = _anchored(prov.DID_RE)
MDS_NAME_PATTERN = _anchored(prov.MDS_NAME_RE)
FORWARD_DEST_PATTERN = f"^({prov.VOICEMAIL}|{prov.FORWARD_DEST_RE.pattern})$"
# sip:host[:port] (lib.provisioning.parse_sip_uri): a host name (labels of up to 63 letters,
# digits and inner hyphens, an optional final dot), an IPv4 address or a bracketed IPv6
# reference; a port from 1 to 65535 (leading zeros allowed); no user part, no parameters.
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = ("0*(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
         "|[1-9][0-9]{0,3})")
SIP_URI_PATTERN = (f"^[Ss][Ii][Pp]:({_LABEL}(\\.{_LABEL})*\\.?|\\[[0-9A-Fa-f:.]+\\])"
                   f"(:{_PORT})?$")

MEMBERSHIP_DESCRIPTIONS = dict(prov.UA_UNSUPPORTED)
CSV_COLUMNS = csvio.COLUMNS
DEVICE_REASONS = ["selected", "logged_out", "selected_unavailable", "none_registered"]
PRESENCE_STATES = ["available", "ringing", "in_use", "unavailable"]


# --- schemas -----------------------------------------------------------------------------

def _memberships_schema(*, response):
    props = {}
    for key in prov.MEMBERSHIP_LISTS:
        props[key] = {
            "type": "array", "maxItems": prov.MAX_MEMBERSHIP_ITEMS,
            "items": {"type": "string", "minLength": 1},
            "description": "refused for line type ua: " + MEMBERSHIP_DESCRIPTIONS[key]}
    props["agent"] = {"type": "string", "minLength": 1, "nullable": True,
                      "description": "call-center agent number or null "
                                     "(refused for line type ua)"}
    props["switchboard"] = {"type": "boolean",
                            "description": "switchboard operator (refused for line type ua)"}
    schema = {"type": "object", "additionalProperties": False, "properties": props}
    if response:
        schema["required"] = list(props)
    else:
        schema["nullable"] = True
        schema["description"] = ("Features a `ua` line does not support (contract "
                                 "section 9). Absent or null: none; an absent key takes "
                                 "its default (empty list, null agent, no switchboard).")
    return schema


# The ua line refuses every membership: the record must be of another line type, or have
# every membership empty (absent, null, [], null agent, switchboard false).
_UA_WITHOUT_MEMBERSHIPS = {
    "anyOf": [
        {"type": "object",
         "properties": {"line_type": {"type": "string",
                                      "enum": [t for t in prov.LINE_TYPES if t != "ua"]}}},
        {"type": "object",
         "properties": {"memberships": {
             "type": "object", "nullable": True,
             "properties": {
                 **{key: {"type": "array", "maxItems": 0} for key in prov.MEMBERSHIP_LISTS},
                 "agent": {"type": "string", "nullable": True, "maxLength": 0},
                 "switchboard": {"type": "boolean", "enum": [False]},
             }}}},
    ]}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {"type": "string", "description": "what was wrong"}},
    },
    "ImportError": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "description": "A refused CSV import; nothing was written. `lines` lists every "
                       "refused line (the header is line 1).",
        "properties": {
            "error": {"type": "string"},
            "lines": {"type": "array", "items": {
                "type": "object", "required": ["line", "error"],
                "additionalProperties": False,
                "properties": {"line": {"type": "integer", "minimum": 1},
                               "error": {"type": "string"}}}},
        },
    },
    "Number": {"type": "string", "pattern": NUMBER_PATTERN,
               "description": "a user's number: 1 to 20 ASCII digits"},
    "LineType": {"type": "string", "enum": list(prov.LINE_TYPES),
                 "description": "`sip` deskphone only, `webrtc` browser only, `ua` both"},
    "Device": {"type": "string", "enum": list(prov.DEVICES)},
    "UserRecord": {
        "type": "object",
        "description": (
            "PUT body: replaces the whole record (absent optional fields take their "
            "defaults) except that an absent `password` keeps the current one; a "
            "password is required to create a user. `mds` must name an existing MDS; a "
            "DID must not belong to another user nor be another user's number (409). "
            "A `ua` line refuses every membership (400 naming the feature)."),
        "required": ["name", "line_type"],
        "additionalProperties": False,
        "properties": {
            "number": {"type": "string", "pattern": NUMBER_PATTERN,
                       "description": "when present, must equal the number in the path"},
            "name": {"type": "string", "maxLength": prov.MAX_NAME_LENGTH},
            "password": {"type": "string", "minLength": 1,
                         "maxLength": prov.MAX_PASSWORD_LENGTH, "writeOnly": True,
                         "description": "SIP password, stored only as HA1 "
                                        "(md5 of number:UA_DOMAIN:password)"},
            "line_type": _ref("LineType"),
            "mds": {"type": "string", "pattern": MDS_NAME_PATTERN, "nullable": True,
                    "description": "name of the user's MDS; null: standalone"},
            "dids": {"type": "array", "nullable": True, "maxItems": prov.MAX_DIDS,
                     "uniqueItems": True,
                     "items": {"type": "string", "pattern": DID_PATTERN}},
            "ring_seconds": {"type": "integer", "minimum": 1,
                             "maximum": prov.MAX_RING_SECONDS, "nullable": True,
                             "default": prov.DEFAULT_RING_SECONDS},
            "memberships": _memberships_schema(response=False),
        },
        "allOf": [_UA_WITHOUT_MEMBERSHIPS],
        "example": {"number": "1000", "name": "Alice", "password": "secret",
                    "line_type": "ua", "mds": "mds1", "dids": ["+33123456789"],
                    "ring_seconds": 30},
    },
    "User": {
        "type": "object",
        "description": "A stored user: never a password nor an HA1.",
        "required": ["number", "name", "line_type", "mds", "dids", "ring_seconds",
                     "memberships"],
        "additionalProperties": False,
        "properties": {
            "number": _ref("Number"),
            "name": {"type": "string", "maxLength": prov.MAX_NAME_LENGTH},
            "line_type": _ref("LineType"),
            "mds": {"type": "string", "pattern": MDS_NAME_PATTERN, "nullable": True},
            "dids": {"type": "array", "maxItems": prov.MAX_DIDS, "uniqueItems": True,
                     "items": {"type": "string", "pattern": DID_PATTERN}},
            "ring_seconds": {"type": "integer", "minimum": 1,
                             "maximum": prov.MAX_RING_SECONDS},
            "memberships": _memberships_schema(response=True),
        },
    },
    "MdsRecord": {
        "type": "object",
        "description": "PUT body: replaces the record. An address may belong to one MDS "
                       "only (400). Requests from these addresses are trusted without "
                       "digest, REGISTER excepted.",
        "required": ["uri"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": MDS_NAME_PATTERN,
                     "description": "when present, must equal the name in the path"},
            "uri": {"type": "string", "pattern": SIP_URI_PATTERN,
                    "description": "sip:host[:port], port 1 to 65535"},
            "addresses": {
                "type": "array", "nullable": True, "maxItems": prov.MAX_MDS_ADDRESSES,
                "uniqueItems": True,
                "items": {"type": "string", "description": "an IPv4 or IPv6 address "
                                                           "(IPv6 optionally in brackets)"}},
        },
        "example": {"uri": "sip:192.0.2.10:5060", "addresses": ["192.0.2.10"]},
    },
    "Mds": {
        "type": "object",
        "required": ["name", "uri", "addresses", "up", "since"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": MDS_NAME_PATTERN},
            "uri": {"type": "string", "pattern": SIP_URI_PATTERN},
            "addresses": {"type": "array", "maxItems": prov.MAX_MDS_ADDRESSES,
                          "items": {"type": "string"},
                          "description": "normalized (compressed) IP addresses"},
            "up": {"type": "boolean", "nullable": True,
                   "description": "this proxy's OPTIONS probing result: true after an "
                                  "answer, false after UA_MDS_PROBE_THRESHOLD missed "
                                  "probes; null until then or with probing off"},
            "since": {"type": "string", "format": "date-time", "nullable": True,
                      "description": "when `up` last changed (ISO 8601 UTC)"},
        },
    },
    "DeviceSelection": {
        "type": "object", "required": ["device"], "additionalProperties": False,
        "properties": {"device": _ref("Device")},
    },
    "DeviceStatus": {
        "type": "object",
        "required": ["selected", "effective", "reason", "registered"],
        "additionalProperties": False,
        "properties": {
            "selected": _ref("Device"),
            "effective": {"type": "string", "enum": [*prov.DEVICES, None], "nullable": True,
                          "description": "where an incoming call would ring now"},
            "reason": {"type": "string", "enum": DEVICE_REASONS},
            "registered": {
                "type": "object", "required": list(prov.DEVICES),
                "additionalProperties": False,
                "properties": {d: {"type": "boolean"} for d in prov.DEVICES}},
        },
    },
    "ForwardRule": {
        "type": "object",
        "required": ["enabled"],
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean"},
            "destination": {"type": "string", "pattern": FORWARD_DEST_PATTERN,
                            "nullable": True,
                            "description": "`voicemail` or a number (optional +, then 1 "
                                           "to 32 of 0-9 * #); never the user's own "
                                           "number or one of its DIDs"},
        },
        # enabled: true needs a destination
        "anyOf": [
            {"type": "object", "properties": {"enabled": {"type": "boolean",
                                                          "enum": [False]}}},
            {"type": "object", "required": ["destination"],
             "properties": {"destination": {"type": "string"}}},
        ],
    },
    "ForwardsUpdate": {
        "type": "object",
        "description": "PUT body: replaces every rule; an absent key takes its default "
                       "(rule disabled without destination, dnd false).",
        "additionalProperties": False,
        "properties": {
            **{rule: _ref("ForwardRule") for rule in prov.FORWARD_RULES},
            "dnd": {"type": "boolean"},
        },
        "example": {"unconditional": {"enabled": False, "destination": None},
                    "busy": {"enabled": True, "destination": "voicemail"},
                    "noanswer": {"enabled": True, "destination": "2000"}, "dnd": False},
    },
    "Forwards": {
        "type": "object",
        "required": list(prov.FORWARD_FIELDS),
        "additionalProperties": False,
        "properties": {
            **{rule: {
                "type": "object", "required": ["enabled", "destination"],
                "additionalProperties": False,
                "properties": {
                    "enabled": {"type": "boolean"},
                    "destination": {"type": "string", "pattern": FORWARD_DEST_PATTERN,
                                    "nullable": True}}}
               for rule in prov.FORWARD_RULES},
            "dnd": {"type": "boolean"},
        },
    },
    "Presence": {
        "type": "object", "required": ["state", "device"], "additionalProperties": False,
        "properties": {
            "state": {"type": "string", "enum": PRESENCE_STATES},
            "device": {"type": "string", "enum": [*prov.DEVICES, None], "nullable": True,
                       "description": "the effective device; null when none"},
        },
    },
    "HistoryEntry": {
        "type": "object",
        "required": ["call_id", "direction", "device", "peer", "started_at", "answered",
                     "duration_s", "forwarded_to"],
        "additionalProperties": False,
        "properties": {
            "call_id": {"type": "string",
                        "description": "Call-ID of the INVITE the proxy received"},
            "direction": {"type": "string", "enum": ["in", "out"]},
            "device": {"type": "string", "enum": [*prov.DEVICES, None], "nullable": True,
                       "description": "device that rang or placed the call; null when "
                                      "none rang"},
            "peer": {"type": "string", "nullable": True},
            "started_at": {"type": "string", "format": "date-time",
                           "description": "ISO 8601 UTC"},
            "answered": {"type": "boolean",
                         "description": "false for a missed or forwarded call"},
            "duration_s": {"type": "number", "minimum": 0},
            "forwarded_to": {"type": "string", "nullable": True},
        },
    },
    "Health": {
        "type": "object", "required": ["status"], "additionalProperties": False,
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
    },
    "Degraded": {
        "type": "object", "required": ["status", "reason"], "additionalProperties": False,
        "properties": {"status": {"type": "string", "enum": ["degraded"]},
                       "reason": {"type": "string"}},
    },
    "ImportResult": {
        "type": "object", "required": ["created", "updated"], "additionalProperties": False,
        "properties": {"created": {"type": "integer", "minimum": 0},
                       "updated": {"type": "integer", "minimum": 0},
                       "dry_run": {"type": "boolean", "enum": [True],
                                   "description": "present with ?dry_run=1"}},
    },
    "OpenApiDocument": {
        "type": "object", "required": ["openapi", "info", "paths"],
        "description": "this document",
    },
}


# --- responses and parameters -----------------------------------------------------------

def _json(schema):
    return {"application/json": {"schema": schema}}


_ERROR = _json(_ref("Error"))
_RETRY_AFTER = {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": "seconds"}

RESPONSES = {
    "BadRequest": {"description": "bad input (malformed or invalid body, parameter or "
                                  "query); nothing changed", "content": _ERROR},
    "Unauthorized": {
        "description": "no or wrong credentials",
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"},
                                         "description": "Bearer or Basic challenge, "
                                                        "realm UA_DOMAIN"}},
        "content": _ERROR},
    "ForbiddenAdmin": {"description": "a user's Basic credentials on an admin endpoint",
                       "content": _ERROR},
    "ForbiddenUser": {"description": "a user's Basic credentials for another number "
                                     "(existing or not)", "content": _ERROR},
    "ImportRefused": {"description": "bad CSV or refused lines; nothing written",
                      "content": _json(_ref("ImportError"))},
    "TooLarge": {"description": f"body larger than {api.MAX_BODY} bytes",
                 "content": _ERROR},
    "NotFound": {"description": "no such user or MDS", "content": _ERROR},
    "Conflict": {"description": "conflicts with the stored state; nothing changed",
                 "content": _ERROR},
    "Unavailable": {
        "description": "state store unreachable: retry",
        "headers": {"Retry-After": _RETRY_AFTER},
        "content": _ERROR},
}


def _resp(name):
    return {"$ref": f"#/components/responses/{name}"}


PARAMETERS = {
    "number": {"name": "number", "in": "path", "required": True,
               "description": "the user's number (anything else: 404; 400 on PUT "
                              "/users/{number})",
               "schema": _ref("Number")},
    "mdsName": {"name": "name", "in": "path", "required": True,
                "description": "MDS name (anything else: 404; 400 on PUT)",
                "schema": {"type": "string", "pattern": MDS_NAME_PATTERN}},
    "limit": {"name": "limit", "in": "query", "required": False,
              "description": f"how many entries, newest first (1 to "
                             f"{api.HISTORY_LIMIT_MAX}; anything else: 400)",
              "schema": {"type": "integer", "minimum": 1,
                         "maximum": api.HISTORY_LIMIT_MAX,
                         "default": api.HISTORY_LIMIT_DEFAULT}},
    "dryRun": {"name": "dry_run", "in": "query", "required": False,
               "description": "1 or true (any case): validate the whole file and answer "
                              "as if imported, without writing anything (anything but "
                              "0, 1, true, false: 400)",
               "schema": {"type": "string", "default": "0",
                          "pattern": r"^\s*([01]|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\s*$"}},
}


def _param(name):
    return {"$ref": f"#/components/parameters/{name}"}


ADMIN_SECURITY = [{"bearerAuth": []}]
USER_SECURITY = [{"bearerAuth": []}, {"basicAuth": []}]
AUTH_SECURITY = {api.NONE: [], api.ADMIN: ADMIN_SECURITY, api.USER: USER_SECURITY,
                 api.ANY_USER: USER_SECURITY}
AUTH_RESPONSES = {
    api.NONE: {},
    api.ADMIN: {"401": _resp("Unauthorized"), "403": _resp("ForbiddenAdmin"),
                "503": _resp("Unavailable")},
    api.USER: {"401": _resp("Unauthorized"), "403": _resp("ForbiddenUser"),
               "503": _resp("Unavailable")},
    api.ANY_USER: {"401": _resp("Unauthorized"), "503": _resp("Unavailable")},
}


def _op(op_id, tag, summary, auth, ok, *, params=(), body=None, errors=(),
        description=None):
    """One operation. ok: {status: (description, content or None)}; errors: names of
    RESPONSES by status, e.g. {"404": "NotFound"}."""
    op = {"operationId": op_id, "tags": [tag], "summary": summary,
          "security": AUTH_SECURITY[auth], "x-auth": auth}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = [_param(p) for p in params]
    if body is not None:
        op["requestBody"] = body
    responses = {}
    for status, (desc, content, *headers) in ok.items():
        responses[str(status)] = {"description": desc}
        if headers:
            responses[str(status)]["headers"] = headers[0]
        if content is not None:
            responses[str(status)]["content"] = content
    responses.update(AUTH_RESPONSES[auth])
    for status, name in dict(errors).items():
        responses[str(status)] = _resp(name)
    op["responses"] = dict(sorted(responses.items()))
    return op


def _json_body(schema_name):
    return {"required": True, "content": _json(_ref(schema_name)),
            "description": f"a JSON object (at most {api.MAX_BODY} bytes, UTF-8)"}


P = api.PREFIX
PATHS = {
    P + "/health": {
        "get": _op("getHealth", "health", "Liveness of the proxy and its state store",
                   api.NONE, {200: ("routing calls", _json(_ref("Health"))),
                              503: ("degraded (state store or media relay unreachable)",
                                    _json(_ref("Degraded")),
                                    {"Retry-After": _RETRY_AFTER})}),
    },
    OPENAPI_PATH: {
        "get": _op("getOpenApi", "meta", "This OpenAPI document", api.NONE,
                   {200: ("the document", _json(_ref("OpenApiDocument")))}),
    },
    P + "/users": {
        "get": _op("listUsers", "users", "Every user, by number", api.ADMIN,
                   {200: ("the users", _json({"type": "array",
                                              "items": _ref("User")}))}),
    },
    P + "/users/{number}": {
        "get": _op("getUser", "users", "One user (never its password or HA1)",
                   api.ADMIN, {200: ("the user", _json(_ref("User")))},
                   params=["number"], errors={404: "NotFound"}),
        "put": _op("putUser", "users", "Create or replace a user", api.ADMIN,
                   {200: ("updated", _json(_ref("User"))),
                    201: ("created", _json(_ref("User")))},
                   params=["number"], body=_json_body("UserRecord"),
                   errors={400: "BadRequest", 409: "Conflict"}),
        "delete": _op("deleteUser", "users", "Remove a user and all its state",
                      api.ADMIN, {204: ("removed", None)},
                      params=["number"], errors={404: "NotFound"}),
    },
    P + "/users/import": {
        "post": _op(
            "importUsers", "users", "Create or update users from CSV (all-or-nothing)",
            api.ADMIN,
            {200: ("imported (with dry_run: validated, nothing written)",
                   _json(_ref("ImportResult")))},
            params=["dryRun"],
            body={"required": True, "description": (
                f"UTF-8 CSV (at most {api.MAX_BODY} bytes), header line first (line 1). "
                "Columns, in any order, `exten` and `line_type` required: "
                + ", ".join(CSV_COLUMNS) + ". Lists are separated by `;`, booleans are "
                "0/1; `name` is `firstname lastname`. A new user needs sip_secret or ha1 "
                "(32 lowercase hex digits); both empty keep the current password."),
                "content": {"text/csv": {"schema": {"type": "string"}}}},
            errors={400: "ImportRefused", 413: "TooLarge"}),
    },
    P + "/users/export": {
        "get": _op("exportUsers", "users", "Every user as CSV (ha1, no sip_secret)",
                   api.ADMIN,
                   {200: ("the CSV, one user per line ordered by number; importing it "
                          "changes nothing", {"text/csv": {"schema": {"type": "string"}}},
                          {"Content-Disposition": {"required": True,
                                                   "schema": {"type": "string"}}})},
                   errors={409: "Conflict"},
                   description="409 names a user whose record CSV cannot carry unchanged "
                               "(blanks around its name, `;` in a membership)."),
    },
    P + "/users/{number}/device": {
        "get": _op("getDevice", "device", "Device selection and where calls ring now",
                   api.USER, {200: ("the status", _json(_ref("DeviceStatus")))},
                   params=["number"], errors={404: "NotFound"}),
        "put": _op("putDevice", "device", "Select the device of a ua user", api.USER,
                   {200: ("the new status", _json(_ref("DeviceStatus")))},
                   params=["number"], body=_json_body("DeviceSelection"),
                   errors={400: "BadRequest", 404: "NotFound", 409: "Conflict"},
                   description="409: the user's line type is not `ua`."),
    },
    P + "/users/{number}/forwards": {
        "get": _op("getForwards", "forwards", "Forwarding rules and do-not-disturb",
                   api.USER, {200: ("the rules", _json(_ref("Forwards")))},
                   params=["number"], errors={404: "NotFound"}),
        "put": _op("putForwards", "forwards", "Replace the forwarding rules", api.USER,
                   {200: ("the stored rules", _json(_ref("Forwards")))},
                   params=["number"], body=_json_body("ForwardsUpdate"),
                   errors={400: "BadRequest", 404: "NotFound"}),
    },
    P + "/users/{number}/presence": {
        "get": _op("getPresence", "presence", "A user's presence (any user may read it)",
                   api.ANY_USER, {200: ("the presence", _json(_ref("Presence")))},
                   params=["number"], errors={404: "NotFound"}),
    },
    P + "/users/{number}/history": {
        "get": _op("getHistory", "history", "Call history of both devices, newest first",
                   api.USER, {200: ("the calls", _json({"type": "array",
                                                       "items": _ref("HistoryEntry")}))},
                   params=["number", "limit"],
                   errors={400: "BadRequest", 404: "NotFound"}),
    },
    P + "/mds": {
        "get": _op("listMds", "mds", "Every MDS, by name", api.ADMIN,
                   {200: ("the MDS nodes", _json({"type": "array",
                                                  "items": _ref("Mds")}))}),
    },
    P + "/mds/{name}": {
        "get": _op("getMds", "mds", "One MDS with its probing state", api.ADMIN,
                   {200: ("the MDS", _json(_ref("Mds")))},
                   params=["mdsName"], errors={404: "NotFound"}),
        "put": _op("putMds", "mds", "Create or replace an MDS", api.ADMIN,
                   {200: ("updated", _json(_ref("Mds"))),
                    201: ("created", _json(_ref("Mds")))},
                   params=["mdsName"], body=_json_body("MdsRecord"),
                   errors={400: "BadRequest"}),
        "delete": _op("deleteMds", "mds", "Remove an MDS no user uses", api.ADMIN,
                      {204: ("removed", None)}, params=["mdsName"],
                      errors={404: "NotFound", 409: "Conflict"},
                      description="409 while a user still names this MDS."),
    },
}


DOCUMENT = {
    "openapi": "3.0.3",
    "info": {
        "title": "Unique Account edge proxy API",
        "version": VERSION,
        "description": (
            "Admin and per-user HTTP API of the Unique Account SIP edge proxy. Admin "
            "endpoints take `Authorization: Bearer $UA_API_TOKEN`; per-user endpoints "
            "also take the user's own number and SIP password as HTTP Basic (presence: "
            "any user's). Every error body is `{\"error\": \"...\"}`. Every path also "
            "answers CORS preflight `OPTIONS` (204; 403 for an origin outside "
            "UA_WS_ORIGINS), 405 with `Allow` for a method it does not have, and an "
            "unknown path gets 404. `GET /metrics` (Prometheus text) and the SIP "
            "WebSocket at `/ws` share the port but are not part of this JSON API."),
        "license": {"name": "GPL-3.0-or-later"},
    },
    "servers": [{"url": "/"}],
    "tags": [{"name": n} for n in ("health", "meta", "users", "device", "forwards",
                                   "presence", "history", "mds")],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": RESPONSES,
        "parameters": PARAMETERS,
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "UA_API_TOKEN: admin"},
            "basicAuth": {"type": "http", "scheme": "basic",
                          "description": "a user's number and SIP password"},
        },
    },
}


def document():
    """A deep copy of DOCUMENT (callers may change it freely)."""
    return copy.deepcopy(DOCUMENT)


@api.route(OPENAPI_PATH, "GET", auth=api.NONE)
def get_openapi(ctx, req, params, who):
    return api.Response(200, DOCUMENT)


def resolve(node, _doc=None):
    """`node` (a part of DOCUMENT) with every local `$ref` replaced by a copy of its
    target, for validators and generators that do not follow references."""
    doc = DOCUMENT if _doc is None else _doc
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target = doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return resolve(target, doc)
        return {k: resolve(v, doc) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, doc) for v in node]
    return node
