"""The OpenAPI document (lib/openapi.py) stays true: every registered route is documented
with the right methods and auth, nothing documented is missing from the dispatcher, the
document is valid OpenAPI 3.0 (openapi-spec-validator), and it is served without
credentials. No Redis needed."""
import importlib
import json
import re
from pathlib import Path

import pytest
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from lib import api, config, provisioning
from lib import openapi  # noqa: F401  (registers GET /api/v1/openapi.json)

DOC = openapi.DOCUMENT
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


LIB = Path(__file__).resolve().parent.parent / "lib"
# Every module that registers routes, imported, so that none is missed.
ROUTE_MODULES = sorted(f"lib.{f.stem}" for f in LIB.glob("*.py")
                       if re.search(r"\broute\(", f.read_text(encoding="utf-8")))
for _name in ROUTE_MODULES:
    importlib.import_module(_name)


def registered():
    """{(pattern, METHOD): auth} of the dispatcher, OPTIONS (CORS preflight) aside."""
    return {(pattern, method): auth
            for pattern, entry in api._ROUTES.items()
            for method, (_handler, auth) in entry.methods.items() if method != "OPTIONS"}


def documented():
    """{(path, METHOD): operation} of the document."""
    return {(path, method.upper()): op
            for path, item in DOC["paths"].items()
            for method, op in item.items() if method in METHODS}


# --- the document matches the dispatcher ---------------------------------------------------

def test_every_route_is_documented():
    missing = sorted(set(registered()) - set(documented()))
    assert not missing, f"routes in api._ROUTES missing from lib/openapi.py: {missing}"


def test_every_documented_operation_exists():
    extra = sorted(set(documented()) - set(registered()))
    assert not extra, f"documented but not in api._ROUTES: {extra}"


def test_no_options_operation_documented():
    # CORS preflight is answered for every path by the dispatcher itself.
    assert not [k for k in documented() if k[1] == "OPTIONS"]


def test_security_matches_route_auth():
    routes = registered()
    for key, op in documented().items():
        auth = routes[key]
        assert op["x-auth"] == auth, key
        schemes = sorted(name for req in op["security"] for name in req)
        expected = {api.NONE: [], api.ADMIN: ["bearerAuth"],
                    api.USER: ["basicAuth", "bearerAuth"],
                    api.ANY_USER: ["basicAuth", "bearerAuth"]}[auth]
        assert schemes == expected, key
        codes = set(op["responses"])
        if auth != api.NONE:
            assert {"401", "503"} <= codes, key
        if auth in (api.ADMIN, api.USER):
            assert "403" in codes, key
        if auth == api.ANY_USER:
            assert "403" not in codes, key       # any user may read presence


def test_path_parameters_declared():
    for path, item in DOC["paths"].items():
        names = set(re.findall(r"\{([a-z_]+)\}", path))
        for method, op in item.items():
            declared = {p["name"] for p in map(openapi.resolve, op.get("parameters", []))
                        if p["in"] == "path"}
            assert declared == names, (path, method)


def test_operation_ids_unique():
    ids = [op["operationId"] for op in documented().values()]
    assert len(ids) == len(set(ids))


# --- the document is valid and exact ------------------------------------------------------

def test_document_is_valid_openapi_30():
    assert DOC["openapi"].startswith("3.0.")
    validate(DOC, cls=OpenAPIV30SpecValidator)
    errors = list(OpenAPIV30SpecValidator(DOC).iter_errors())
    assert not errors, errors


def test_document_is_plain_json():
    assert json.loads(json.dumps(DOC)) == DOC


def test_security_schemes():
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http",
                                     "scheme": "bearer"}
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "type": "http",
                                    "scheme": "basic"}


def test_every_error_response_has_the_error_schema():
    for (path, method), op in documented().items():
        for code, response in op["responses"].items():
            if int(code) < 400 or (path, code) == ("/api/v1/health", "503"):
                continue        # health's 503 is {"status": "degraded", "reason"} (section 1)
            schema = openapi.resolve(response)["content"]["application/json"]["schema"]
            assert schema["type"] == "object" and "error" in schema["required"], (path, code)
            assert schema["properties"]["error"]["type"] == "string"


def test_request_bodies_documented():
    bodies = {key: op["requestBody"] for key, op in documented().items()
              if "requestBody" in op}
    assert set(bodies) == {
        ("/api/v1/users/{number}", "PUT"), ("/api/v1/mds/{name}", "PUT"),
        ("/api/v1/users/{number}/device", "PUT"), ("/api/v1/users/{number}/forwards", "PUT"),
        ("/api/v1/users/import", "POST")}
    assert "text/csv" in bodies[("/api/v1/users/import", "POST")]["content"]


def test_parameters_limit_and_dry_run():
    params = DOC["components"]["parameters"]
    assert params["limit"]["in"] == "query"
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1,
                                         "maximum": api.HISTORY_LIMIT_MAX,
                                         "default": api.HISTORY_LIMIT_DEFAULT}
    assert params["dryRun"]["name"] == "dry_run" and params["dryRun"]["in"] == "query"
    ops = documented()
    assert {"$ref": "#/components/parameters/limit"} in ops[
        ("/api/v1/users/{number}/history", "GET")]["parameters"]
    assert {"$ref": "#/components/parameters/dryRun"} in ops[
        ("/api/v1/users/import", "POST")]["parameters"]


def schema(name):
    return openapi.resolve(DOC["components"]["schemas"][name])


def test_enums_and_patterns_follow_the_code():
    from lib import callstate, routing
    assert schema("Number")["pattern"] == "^[0-9]{1,20}$"
    assert schema("LineType")["enum"] == ["sip", "webrtc", "ua"] == list(provisioning.LINE_TYPES)
    assert schema("Device")["enum"] == ["webrtc", "deskphone"] == list(routing.DEVICE_CLASSES)
    assert schema("DeviceSelection")["properties"]["device"]["enum"] == ["webrtc", "deskphone"]
    assert schema("Presence")["properties"]["state"]["enum"] == [
        "available", "ringing", "in_use", "unavailable"]
    assert schema("Presence")["properties"]["device"]["enum"] == ["webrtc", "deskphone", None]
    assert schema("DeviceStatus")["properties"]["effective"]["enum"] == [
        "webrtc", "deskphone", None]
    assert schema("UserRecord")["properties"]["number"]["pattern"] == "^[0-9]{1,20}$"
    assert callstate.RINGING in schema("Presence")["properties"]["state"]["enum"]


@pytest.mark.parametrize("name", ["UserRecord", "MdsRecord", "DeviceSelection",
                                  "ForwardsUpdate", "ForwardRule", "User", "Mds",
                                  "DeviceStatus", "Forwards", "Presence", "HistoryEntry",
                                  "Error", "ImportError", "ImportResult"])
def test_closed_objects(name):
    """The API refuses unknown fields (requests) and sends only these (responses)."""
    s = schema(name)
    assert s["additionalProperties"] is False
    for prop in s["properties"].values():
        if prop.get("type") == "object" and "properties" in prop:
            assert prop["additionalProperties"] is False


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_nullable_enums_list_null():
    """OpenAPI 3.0.3: `nullable` does not extend `enum`; null must be listed."""
    for node in _walk(DOC):
        if node.get("nullable") and "enum" in node:
            assert None in node["enum"], node


def write_valid(name, value):
    return OAS30WriteValidator(schema(name)).is_valid(value)


def read_valid(name, value):
    return OAS30ReadValidator(schema(name)).is_valid(value)


def test_examples_validate():
    for name, s in DOC["components"]["schemas"].items():
        if "example" in s:
            assert write_valid(name, s["example"]), name


ALICE = {"name": "Alice", "password": "secret", "line_type": "ua"}


@pytest.mark.parametrize("body, ok", [
    (ALICE, True),
    ({**ALICE, "number": "1000", "mds": None, "dids": None, "ring_seconds": None,
      "memberships": None}, True),
    ({**ALICE, "memberships": {"groups": [], "agent": None, "switchboard": False}}, True),
    ({**ALICE, "line_type": "sip", "memberships": {"groups": ["g"], "agent": "7",
                                                   "switchboard": True}}, True),
    ({**ALICE, "memberships": {"groups": ["g"]}}, False),          # ua refuses
    ({**ALICE, "memberships": {"agent": "7"}}, False),
    ({**ALICE, "memberships": {"switchboard": True}}, False),
    ({**ALICE, "memberships": {"bogus": []}}, False),
    ({**ALICE, "memberships": {"groups": [""]}, "line_type": "sip"}, False),
    ({**ALICE, "extra": 1}, False),
    ({**ALICE, "line_type": "pstn"}, False),
    ({**ALICE, "password": ""}, False),
    ({**ALICE, "password": None}, False),
    ({**ALICE, "ring_seconds": 0}, False),
    ({**ALICE, "ring_seconds": 301}, False),
    ({**ALICE, "ring_seconds": 30.0}, False),
    ({**ALICE, "ring_seconds": True}, False),
    ({**ALICE, "dids": ["+33 1"]}, False),
    ({**ALICE, "dids": ["1", "1"]}, False),
    ({**ALICE, "mds": "bad name"}, False),
    ({**ALICE, "number": "1a"}, False),
    ({"password": "x", "line_type": "ua"}, False),                 # name required
])
def test_user_record_schema_agrees_with_validate_user(body, ok):
    assert write_valid("UserRecord", body) is ok
    try:
        provisioning.validate_user(body.get("number", "1000"), body, new=True)
        accepted = True
    except provisioning.Invalid:
        accepted = False
    assert accepted is ok


@pytest.mark.parametrize("body, ok", [
    ({}, True),
    ({"dnd": True}, True),
    ({"busy": {"enabled": True, "destination": "voicemail"}}, True),
    ({"busy": {"enabled": False}}, True),
    ({"busy": {"enabled": False, "destination": "+*#12"}}, True),
    ({"busy": {"enabled": True}}, False),
    ({"busy": {"enabled": True, "destination": None}}, False),
    ({"busy": {"destination": "2000"}}, False),
    ({"busy": {"enabled": False, "destination": "abc"}}, False),
    ({"busy": {"enabled": False, "destination": "1" * 33}}, False),
    ({"busy": {"enabled": False, "x": 1}}, False),
    ({"busy": None}, False),
    ({"dnd": None}, False),
    ({"always": {}}, False),
])
def test_forwards_schema_agrees_with_validate_forwards(body, ok):
    assert write_valid("ForwardsUpdate", body) is ok
    try:
        provisioning.validate_forwards("1000", body)
        accepted = True
    except provisioning.Invalid:
        accepted = False
    assert accepted is ok


@pytest.mark.parametrize("body, ok", [
    ({"uri": "sip:192.0.2.1:5060"}, True),
    ({"uri": "SIP:mds.example", "addresses": None, "name": "mds1"}, True),
    ({"uri": "sip:[2001:db8::1]:5060", "addresses": ["192.0.2.1", "2001:db8::1"]}, True),
    ({"uri": "sips:h"}, False),
    ({"uri": "sip:user@h"}, False),
    ({"uri": "sip:h;transport=tcp"}, False),
    ({"uri": "sip:h:123456"}, False),
    ({"uri": "sip:h:65536"}, False),
    ({"uri": "sip:h:0"}, False),
    ({"uri": "sip:h:00080"}, True),
    ({"uri": "sip:a..b"}, False),
    ({"uri": "sip:-a.example"}, False),
    ({"uri": "sip:" + "a" * 64}, False),
    ({"uri": "sip:mds.example."}, True),
    ({"uri": "sip:h", "addresses": "192.0.2.1"}, False),
    ({"uri": "sip:h", "extra": 1}, False),
    ({"addresses": []}, False),
])
def test_mds_record_schema_agrees_with_validate_mds(body, ok):
    assert write_valid("MdsRecord", body) is ok
    try:
        provisioning.validate_mds(body.get("name", "mds1"), body)
        accepted = True
    except provisioning.Invalid:
        accepted = False
    assert accepted is ok


def test_response_schemas_accept_what_the_code_builds():
    from lib import callstate
    profile, _ = provisioning.validate_user("1000", {**ALICE, "dids": ["+331"]}, new=True)
    assert read_valid("User", profile)
    assert not read_valid("User", {**profile, "password": "secret"})
    assert read_valid("Forwards", provisioning.default_forwards())
    entry = callstate.history_entry(
        "abc@host", {"direction": "in", "device": "webrtc", "peer": "2000",
                     "started_at": 1_700_000_000, "answered_at": 1_700_000_005},
        1_700_000_065.5)
    assert read_valid("HistoryEntry", entry)


# --- served --------------------------------------------------------------------------------

def test_served_without_credentials():
    cfg = config.load({"UA_API_TOKEN": "t", "UA_DOMAIN": "ua.test",
                       "UA_REDIS_URL": "redis://127.0.0.1:1/0", "UA_MEDIA": "passthrough"})
    resp = api.handle(api.Request("GET", "/api/v1/openapi.json"), api.Context(cfg=cfg))
    assert resp.status == 200
    status, _reason, ctype, text, _headers = api.render(resp)
    assert ctype.startswith("application/json")
    assert json.loads(text) == DOC
    # Credentials, even wrong ones, are ignored; other methods get 405.
    resp = api.handle(api.Request("GET", "/api/v1/openapi.json",
                                  headers={"authorization": "Bearer wrong"}),
                      api.Context(cfg=cfg))
    assert resp.status == 200
    resp = api.handle(api.Request("PUT", "/api/v1/openapi.json"), api.Context(cfg=cfg))
    assert resp.status == 405 and resp.body["error"]
