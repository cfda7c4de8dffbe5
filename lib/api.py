"""The HTTP API (contract sections 3, 5 and 9) as a pure dispatcher: no Kamailio import.

    response = lib.api.handle(Request(method, path, query, headers, body), ctx)

`headers` has lower-case names; `body` is bytes. Context carries the Config, the Redis
client (lazily, lib.store.client() by default), `now` (epoch seconds) and optional hooks.
Response is (status, JSON-able body or None, extra headers, content type). `render()` turns
it into what `KSR.xhttp.xhttp_reply` needs; `handle_raw()` does both for the KEMI glue.
Another content type than JSON: `Response(200, text, content_type="text/csv; charset=utf-8")`
with a str body, sent as is (errors stay JSON).

Other modules add endpoints with the `route` decorator:

    @api.route("/api/v1/users/{number}/history", "GET", auth=api.USER)
    def get_history(ctx, req, params, who): ... return api.Response(200, {...})

Route patterns with fewer parameters win (`/users/export` before `/users/{number}`).
Handlers raise ApiError (or lib.provisioning errors) for 4xx; Redis connection errors
become 503 with Retry-After; anything else 500. Nothing escapes handle().
"""
import base64
import binascii
import hmac
import json
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus

import redis

from lib import callstate
from lib import config as config_mod
from lib import mds_health
from lib import media
from lib import overload
from lib import provisioning
from lib import registrar
from lib import routing
from lib import store

log = logging.getLogger("ua.api")

# Kamailio reads an HTTP request whole into its TCP read buffer (tcp_rd_buf_size, 16 KiB in
# kamailio.cfg: memory every WebSocket connection pays) and drops anything bigger before
# Python sees it; 12 KiB of body leaves room for the headers.
MAX_BODY = 12 * 1024
JSON_TYPE = "application/json"
PREFIX = "/api/v1"
NONE, ADMIN, USER, ANY_USER = "none", "admin", "user", "any_user"
CORS_ALLOW_HEADERS = "Authorization, Content-Type"
CORS_EXPOSE_HEADERS = "Retry-After, WWW-Authenticate"
CORS_MAX_AGE = "600"


# --- request, response, context ----------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    query: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)   # lower-case names
    body: bytes = b""

    @classmethod
    def from_raw(cls, method, url, headers=None, body=b""):
        """From a request line target such as `/api/v1/history?limit=5` (xhttp's $hu)."""
        parts = urllib.parse.urlsplit(url)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(
            parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in (headers or {}).items() if v is not None}
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        return cls(method.upper(), parts.path or "/", query, headers, body or b"")


@dataclass
class Response:
    status: int
    body: object = None
    headers: dict = field(default_factory=dict)
    # Not JSON: a str body is sent as is with this content type.
    content_type: str = JSON_TYPE


class ApiError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Context:
    """What a request may use. redis=None: lib.store.client(), opened on first use.

    Hooks (optional callables): event(name) for metrics: "auth_failure" (wrong or missing
    API credentials) and "store_error" (a 503 for an unreachable store)."""

    def __init__(self, cfg=None, redis_client=None, now=None, event=None,
                 presence_changed=None):
        self.config = cfg if cfg is not None else config_mod.load()
        self._redis = redis_client
        self.now = time.time() if now is None else now
        self.event = event or (lambda name: None)
        # A change that may move the user's presence (its device selection): the glue
        # tells the user's BLF watchers.
        self.presence_changed = presence_changed or (lambda number: None)
        self._prov = None

    @property
    def redis(self):
        if self._redis is None:
            try:
                self._redis = store.client()
            except Exception as exc:         # bad or empty UA_REDIS_URL
                raise store.StoreUnavailable(f"no state store: {exc}") from exc
        return self._redis

    @property
    def provisioning(self):
        if self._prov is None:
            self._prov = provisioning.Provisioning(self.redis, self.config.domain)
        return self._prov


@dataclass
class Principal:
    admin: bool
    number: str = None       # the authenticated user for Basic credentials
    profile: dict = None


# --- routing table -----------------------------------------------------------------------

@dataclass
class Route:
    pattern: str
    regex: object
    params: int
    methods: dict = field(default_factory=dict)   # method -> (handler, auth)


_ROUTES = {}


def route(pattern, method, auth=ADMIN):
    """Register handler(ctx, req, params, who) -> Response for METHOD pattern.

    auth: NONE, ADMIN (bearer token only), USER (token, or Basic credentials of the
    number in the path's {number}) or ANY_USER (token, or any user's Basic credentials:
    presence, which colleagues may read)."""
    if auth not in (NONE, ADMIN, USER, ANY_USER):
        raise ValueError(auth)

    def register(fn):
        entry = _ROUTES.get(pattern)
        if entry is None:
            regex = re.compile("".join(
                f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[a-z_]+\})", pattern)))
            entry = _ROUTES[pattern] = Route(pattern, regex, pattern.count("{"))
        entry.methods[method.upper()] = (fn, auth)
        return fn
    return register


def _match(path):
    best = None
    for entry in _ROUTES.values():
        m = entry.regex.fullmatch(path)
        if m and (best is None or entry.params < best[0].params):
            best = (entry, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()})
    return best


# --- helpers -----------------------------------------------------------------------------

def error(status, message, headers=None):
    return Response(status, {"error": message}, dict(headers or {}))


def json_body(req):
    """The request body as a JSON object, raising ApiError(400)."""
    if len(req.body) > MAX_BODY:
        raise ApiError(400, f"body larger than {MAX_BODY} bytes")
    if not req.body.strip():
        raise ApiError(400, "a JSON object body is required")
    try:
        value = json.loads(req.body.decode("utf-8"))
        # A lone surrogate ("\ud800") parses but can be neither hashed nor stored.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError):
        raise ApiError(400, "malformed JSON body") from None
    except RecursionError:
        raise ApiError(400, "JSON body nested too deeply") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")
    return value


def origin_allowed(cfg, origin):
    if not origin:
        return False
    allowed = cfg.ws_origins
    if not allowed or "*" in allowed:
        return True
    norm = origin.rstrip("/").lower()
    return any(norm == o.rstrip("/").lower() for o in allowed)


def _challenge(cfg, auth):
    scheme = "Bearer" if auth == ADMIN else "Basic"
    realm = cfg.domain.replace("\\", "").replace('"', "")
    value = f'{scheme} realm="{realm}"'
    if scheme == "Basic":
        value += ', charset="UTF-8"'
    return {"WWW-Authenticate": value}


def _authenticate(ctx, req, auth, params):
    """The Principal of the request, or raise ApiError 401/403."""
    cfg = ctx.config
    header = req.headers.get("authorization", "").strip()
    scheme, _, cred = header.partition(" ")
    scheme, cred = scheme.lower(), cred.strip()
    if scheme == "bearer" and cred:
        token = cfg.api_token
        if token and hmac.compare_digest(cred.encode(), token.encode()):
            return Principal(admin=True)
        ctx.event("auth_failure")
        raise ApiError(401, "invalid credentials", _challenge(cfg, auth))
    if scheme == "basic" and cred:
        try:
            user, sep, password = base64.b64decode(cred, validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, ValueError):
            user, sep, password = "", "", ""
        profile = None
        if sep and provisioning.valid_number(user):
            profile = ctx.provisioning.check_password(user, password)
        if profile is None:
            ctx.event("auth_failure")
            raise ApiError(401, "invalid credentials", _challenge(cfg, auth))
        if auth == ADMIN:
            raise ApiError(403, "this endpoint needs the admin token")
        if auth == USER and params.get("number") != user:
            raise ApiError(403, "a user may only access its own number")
        return Principal(admin=False, number=user, profile=profile)
    ctx.event("auth_failure")
    raise ApiError(401, "authentication required", _challenge(cfg, auth))


def _cors(ctx, req, resp):
    origin = req.headers.get("origin")
    if origin and origin_allowed(ctx.config, origin):
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        resp.headers["Vary"] = "Origin"
    return resp


def _preflight(ctx, req, entry):
    allow = ", ".join(sorted(entry.methods) + ["OPTIONS"])
    origin = req.headers.get("origin")
    if not origin:
        return Response(204, None, {"Allow": allow})
    if not origin_allowed(ctx.config, origin):
        return error(403, "origin not allowed")
    return Response(204, None, {
        "Allow": allow,
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": allow,
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Access-Control-Max-Age": CORS_MAX_AGE,
        "Vary": "Origin",
    })


def _unavailable(ctx, exc):
    log.warning("state store unavailable: %s", exc)
    ctx.event("store_error")
    return error(503, "state store unavailable, retry", {"Retry-After": "1"})


# --- entry points ------------------------------------------------------------------------

def handle(req, ctx=None):
    """Answer one request. Never raises."""
    try:
        ctx = ctx if ctx is not None else Context()
    except Exception:                              # config unreadable
        log.exception("api context")
        return error(500, "internal error")
    try:
        return _cors(ctx, req, _dispatch(ctx, req))
    except Exception:
        log.exception("api %s %s", req.method, req.path)
        return _cors(ctx, req, error(500, "internal error"))


def _dispatch(ctx, req):
    path = req.path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    found = _match(path)
    if found is None:
        return error(404, "not found")
    entry, params = found
    method = req.method.upper()
    if method == "OPTIONS":
        return _preflight(ctx, req, entry)
    if method not in entry.methods:
        allow = ", ".join(sorted(entry.methods) + ["OPTIONS"])
        return error(405, "method not allowed", {"Allow": allow})
    handler, auth = entry.methods[method]
    try:
        who = Principal(admin=False) if auth == NONE else _authenticate(ctx, req, auth, params)
        resp = handler(ctx, req, params, who)
        if method != "GET" and resp.status < 300:
            store.acknowledged(ctx.redis)   # the next call and a failover see the change
        return resp
    except ApiError as exc:
        return error(exc.status, exc.message, exc.headers)
    except provisioning.ProvisioningError as exc:
        return error(exc.status, exc.message)
    except (store.StoreUnavailable, provisioning.Busy, redis.RedisError, OSError) as exc:
        return _unavailable(ctx, exc)


def render(resp):
    """(code, reason, content_type, body text, [(header, value)]) for xhttp_reply."""
    try:
        reason = HTTPStatus(resp.status).phrase
    except ValueError:
        reason = "Unknown"
    ctype = JSON_TYPE
    if resp.body is None or resp.status in (204, 304):
        text = ""
    elif resp.content_type != JSON_TYPE and isinstance(resp.body, str):
        text, ctype = resp.body, resp.content_type
    else:
        text = json.dumps(resp.body, separators=(",", ":"))    # ASCII only
    return resp.status, reason, ctype, text, list(resp.headers.items())


def handle_raw(method, url, headers=None, body=b"", now=None, **ctx_kwargs):
    """handle() + render() for the KEMI glue: method and URL as received (xhttp's $rm, $hu),
    the headers it has (Authorization, Origin, Content-Type, Access-Control-Request-*)."""
    try:
        req = Request.from_raw(method, url, headers, body)
    except Exception:
        return render(error(400, "bad request"))
    try:
        ctx = Context(now=now, **ctx_kwargs)
    except Exception:
        log.exception("api context")
        return render(error(500, "internal error"))
    return render(handle(req, ctx))


# --- health ------------------------------------------------------------------------------

@route(PREFIX + "/health", "GET", auth=NONE)
def health(ctx, req, params, who):
    try:
        ctx.redis.ping()
    except (store.StoreUnavailable, redis.RedisError, OSError) as exc:
        log.warning("health: state store unreachable: %s", exc)
        ctx.event("store_error")
        return Response(503, {"status": "degraded", "reason": "state store unreachable"},
                        {"Retry-After": "1"})
    if ctx.config.media == "rtpengine" and not media.alive(ctx.config.rtpengine_url):
        return Response(503, {"status": "degraded", "reason": "media relay unreachable"},
                        {"Retry-After": "1"})
    if reason := overload.status():
        return Response(503, {"status": "degraded", "reason": reason}, {"Retry-After": "1"})
    return Response(200, {"status": "ok"})


# --- users -------------------------------------------------------------------------------

@route(PREFIX + "/users", "GET")
def list_users(ctx, req, params, who):
    return Response(200, ctx.provisioning.list_users())


@route(PREFIX + "/users/{number}", "GET")
def get_user(ctx, req, params, who):
    profile = ctx.provisioning.get_user(params["number"])
    if profile is None:
        raise ApiError(404, f"no user {params['number']}")
    return Response(200, profile)


@route(PREFIX + "/users/{number}", "PUT")
def put_user(ctx, req, params, who):
    number = params["number"]
    if not provisioning.valid_number(number):
        raise ApiError(400, "number must be 1 to 20 digits")
    created, profile = ctx.provisioning.put_user(number, json_body(req))
    return Response(201 if created else 200, profile)


@route(PREFIX + "/users/{number}", "DELETE")
def delete_user(ctx, req, params, who):
    ctx.provisioning.delete_user(params["number"])
    return Response(204)


# --- device selection --------------------------------------------------------------------

def _device_status(ctx, number, profile, selected):
    registered = registrar.registered_classes(ctx.redis, number, ctx.now)
    registered = {"webrtc": bool(registered.get("webrtc")),
                  "deskphone": bool(registered.get("deskphone"))}
    effective, reason = routing.device_status(profile["line_type"], selected, registered)
    return {"selected": selected, "effective": effective, "reason": reason,
            "registered": registered}


def _user_device(ctx, number):
    """(profile, selected device) of a user, or 404."""
    found = ctx.provisioning.get_device(number)
    if found is None:
        raise ApiError(404, f"no user {number}")
    return found


@route(PREFIX + "/users/{number}/device", "GET", auth=USER)
def get_device(ctx, req, params, who):
    number = params["number"]
    profile, selected = _user_device(ctx, number)
    return Response(200, _device_status(ctx, number, profile, selected))


@route(PREFIX + "/users/{number}/presence", "GET", auth=ANY_USER)
def get_presence(ctx, req, params, who):
    """Section 7: what colleagues see (any authenticated user may read it)."""
    number = params["number"]
    profile, selected = _user_device(ctx, number)
    state, device = callstate.presence(
        callstate.calls_of(ctx.redis, number), profile["line_type"], selected,
        registrar.registered_classes(ctx.redis, number, ctx.now), ctx.now)
    return Response(200, {"state": state, "device": device})


HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 1000


@route(PREFIX + "/users/{number}/history", "GET", auth=USER)
def get_history(ctx, req, params, who):
    """Section 8: the mixed history of both devices, newest first."""
    number = params["number"]
    raw = req.query.get("limit", str(HISTORY_LIMIT_DEFAULT))
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= HISTORY_LIMIT_MAX:
        raise ApiError(400, f"limit must be an integer from 1 to {HISTORY_LIMIT_MAX}")
    _user_device(ctx, number)
    return Response(200, callstate.history(ctx.redis, number, int(raw)))


@route(PREFIX + "/users/{number}/device", "PUT", auth=USER)
def put_device(ctx, req, params, who):
    number = params["number"]
    body = json_body(req)
    unknown = sorted(k for k in body if k != "device")
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]}")
    device = body.get("device")
    if device not in provisioning.DEVICES:
        raise ApiError(400, "device must be webrtc or deskphone")
    profile = ctx.provisioning.set_device(number, device)
    ctx.presence_changed(number)
    return Response(200, _device_status(ctx, number, profile, device))


# --- forwarding rules (contract section 5) -------------------------------------------------

@route(PREFIX + "/users/{number}/forwards", "GET", auth=USER)
def get_forwards(ctx, req, params, who):
    return Response(200, ctx.provisioning.get_forwards(params["number"]))


@route(PREFIX + "/users/{number}/forwards", "PUT", auth=USER)
def put_forwards(ctx, req, params, who):
    return Response(200, ctx.provisioning.set_forwards(params["number"], json_body(req)))


# --- MDS ---------------------------------------------------------------------------------

def _mds_view(ctx, record, health=None):
    """The record with this proxy's probing result (lib/mds_health)."""
    if health is None:
        health = mds_health.load(ctx.redis, ctx.config.node_id)
    up, since = mds_health.status(record, health.get(record["name"]))
    return {**record, "up": up, "since": mds_health.iso(since)}


@route(PREFIX + "/mds", "GET")
def list_mds(ctx, req, params, who):
    health = mds_health.load(ctx.redis, ctx.config.node_id)
    return Response(200, [_mds_view(ctx, m, health) for m in ctx.provisioning.list_mds()])


@route(PREFIX + "/mds/{name}", "GET")
def get_mds(ctx, req, params, who):
    record = ctx.provisioning.get_mds(params["name"])
    if record is None:
        raise ApiError(404, f"no MDS {params['name']}")
    return Response(200, _mds_view(ctx, record))


@route(PREFIX + "/mds/{name}", "PUT")
def put_mds(ctx, req, params, who):
    created, record = ctx.provisioning.put_mds(params["name"], json_body(req))
    return Response(201 if created else 200, _mds_view(ctx, record))


@route(PREFIX + "/mds/{name}", "DELETE")
def delete_mds(ctx, req, params, who):
    ctx.provisioning.delete_mds(params["name"])
    return Response(204)


from lib import csvio, openapi  # noqa: E402,F401  (their routes register on import)
