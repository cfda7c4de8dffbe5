"""The API server's application (contract sections 1, 3, 5, 7, 8, 9, 10, 11): FastAPI for
routing, request parsing, validation (lib/web/models.py) and the OpenAPI document,
Starlette's CORS middleware, and what the contract adds on top:

- every error is `{"error": "..."}`: a refused body is 400, never FastAPI's 422;
- a body over UA_API_MAX_BODY is 413 before it is read whole (BodyLimit);
- credentials are checked before the body is read (Route), per route level: NONE, ADMIN
  (bearer token), USER (the token or the Basic credentials of the path's {number}) or
  ANY_USER (the token or any user's Basic credentials);
- an unreachable store is 503 with Retry-After at once, and a change is answered only
  once every process's cache heard of it (lib/store/wire.acknowledged).

Handlers are plain functions over lib/ service functions, which FastAPI runs in its
thread pool (the CSV import runs in a process of its own: lib/web/users_csv.py);
`ctx(request)` gives them the configuration, the Redis clients and the clock."""
import base64
import binascii
import hmac
import logging
import time

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from lib import config as config_mod
from lib import metrics
from lib.store import clients, wire
from lib.users import profiles, provisioning, validation
from lib.web import authlimit
from lib.web import models

log = logging.getLogger("ua.api")

PREFIX = "/api/v1"
NONE, ADMIN, USER, ANY_USER = "none", "admin", "user", "any_user"
VERSION = "1.0.0"


class ApiError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error(status, message, headers=None):
    return JSONResponse({"error": message}, status, headers)


class Context:
    """What a handler uses: the configuration, this process's Redis clients, the clock."""

    def __init__(self, cfg, redis_client=None, clock=time.time):
        self.config = cfg
        self._given = redis_client
        self._redis = redis_client
        self._bulk = None
        self.clock = clock
        self._prov = None

    @property
    def redis(self):
        if self._redis is None:
            try:
                self._redis = clients.client()
            except Exception as exc:         # bad or empty UA_REDIS_URL
                raise clients.StoreUnavailable(f"no state store: {exc}") from exc
        return self._redis

    @property
    def bulk_redis(self):
        """For a scan of the whole store (CSV export)."""
        if self._given is not None:       # a given client (tests) serves both
            return self._given
        if self._bulk is None:
            try:
                self._bulk = clients.bulk_connect(self.config)
            except Exception as exc:
                raise clients.StoreUnavailable(f"no state store: {exc}") from exc
        return self._bulk

    @property
    def provisioning(self):
        if self._prov is None:
            self._prov = provisioning.Provisioning(self.redis, self.config.domain)
        return self._prov

    def now(self):
        return self.clock()


def ctx(request: Request) -> Context:
    return request.app.state.ctx


# --- authentication --------------------------------------------------------------------

class Principal:
    def __init__(self, admin, number=None, profile=None):
        self.admin = admin
        self.number = number
        self.profile = profile


def _challenge(cfg, level):
    scheme = "Bearer" if level == ADMIN else "Basic"
    realm = cfg.domain.replace("\\", "").replace('"', "")
    value = f'{scheme} realm="{realm}"'
    if scheme == "Basic":
        value += ', charset="UTF-8"'
    return {"WWW-Authenticate": value}


# The host itself may send credentials over plain HTTP whatever UA_API_REQUIRE_TLS: from
# its loopback, or from the address it reaches the API on (ua-admin on a public address).
LOOPBACK_CLIENTS = ("127.0.0.1", "::1")


def _auth_failed(c, level, peer, account=None):
    """A failed check of the credentials given: counted, and counted against the peer's
    address (lib/web/authlimit)."""
    metrics.count("ua_auth_failures_total", "api")
    if c.config.api_auth_failures:
        authlimit.failed(c.redis, c.config, peer, account)
    return ApiError(401, "invalid credentials", _challenge(c.config, level))


def _basic(cred):
    """(number, password) of HTTP Basic credentials naming a valid number, else None."""
    try:
        user, sep, password = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep and validation.valid_number(user) else None


def _lookup(c, peer, number):
    """(seconds the peer stays blocked or None, user `number`'s (profile, HA1) or None)."""
    if not c.config.api_auth_failures:
        return None, c.provisioning.user_auth(number) if number else None
    retry, reply = authlimit.blocked_for(c.redis, peer, number)
    return retry, profiles.auth_record(reply) if number else None


def authenticate(c, header, level, number, peer="", secure=False, local=""):
    """The Principal of a request's Authorization header, or raise ApiError 401/403/429.
    `number`: the path's {number}, for USER routes; `peer`: the client's address;
    `secure`: whether the request came over HTTPS; `local`: the address it came to.
    Credentials are refused before they are checked when sent in clear from another host
    while TLS is required (403, no hint about them), or from an address blocked for its
    failures (429)."""
    cfg = c.config
    scheme, _, cred = (header or "").strip().partition(" ")
    scheme, cred = scheme.lower(), cred.strip()
    if not header:
        metrics.count("ua_auth_failures_total", "api")
        raise ApiError(401, "authentication required", _challenge(cfg, level))
    if cfg.api_require_tls and not secure and peer not in (*LOOPBACK_CLIENTS, local):
        raise ApiError(403, "use HTTPS")
    basic = _basic(cred) if scheme == "basic" else None
    retry, found = _lookup(c, peer, basic[0] if basic else None)
    if retry:
        metrics.count("ua_api_blocked_total")
        raise ApiError(429, "too many failed authentications from this address",
                       {"Retry-After": str(retry)})
    if scheme == "bearer" and cred:
        token = cfg.api_token
        if token and hmac.compare_digest(cred.encode(), token.encode()):
            return Principal(admin=True)
        raise _auth_failed(c, level, peer)
    if basic is None:     # another scheme, no credentials after it, or no valid number
        raise _auth_failed(c, level, peer)
    user, password = basic
    profile = c.provisioning.check_password(user, password, found)
    if profile is None:
        raise _auth_failed(c, level, peer, user)
    if level == ADMIN:
        raise ApiError(403, "this endpoint needs the admin token")
    if level == USER and number != user:
        raise ApiError(403, "a user may only access its own number")
    return Principal(admin=False, number=user, profile=profile)


AUTH_ERRORS = {
    ADMIN: {401: "no or wrong admin token",
            403: "user credentials on an admin endpoint, or credentials over plain HTTP "
                 "from another host when TLS is required (use HTTPS)",
            429: "too many failed authentications from this address (Retry-After)"},
    USER: {401: "no or wrong credentials",
           403: "a user's credentials for another number, or credentials over plain HTTP "
                "from another host when TLS is required (use HTTPS)",
           429: "too many failed authentications from this address (Retry-After)"},
    ANY_USER: {401: "no or wrong credentials",
               403: "credentials over plain HTTP from another host when TLS is required "
                    "(use HTTPS)",
               429: "too many failed authentications from this address (Retry-After)"},
}
SECURITY = {ADMIN: [{"bearer": []}], USER: [{"bearer": []}, {"basic": []}],
            ANY_USER: [{"bearer": []}, {"basic": []}]}


def _error_doc(description, model=models.Error):
    return {"model": model, "description": description}


class Route(APIRoute):
    """A route with its auth level (the endpoint's `auth` attribute, ADMIN by default):
    credentials are checked before FastAPI reads and validates the body, so that a
    request without valid credentials gets 401/403 whatever its body; a change is
    answered once acknowledged. The level's error answers and the store's 503 are added
    to the route's OpenAPI responses."""

    def __init__(self, path, endpoint, **kwargs):
        self.auth = getattr(endpoint, "auth", ADMIN)
        responses = dict(kwargs.pop("responses", None) or {})
        for status, text in AUTH_ERRORS.get(self.auth, {}).items():
            responses.setdefault(status, _error_doc(text))
        if getattr(endpoint, "uses_store", True):
            responses.setdefault(503, _error_doc("state store unreachable (Retry-After)"))
        extra = dict(kwargs.pop("openapi_extra", None) or {})
        extra["x-auth"] = self.auth
        if self.auth in SECURITY:
            extra["security"] = SECURITY[self.auth]
        super().__init__(path, endpoint, responses=responses, openapi_extra=extra, **kwargs)

    def get_route_handler(self):
        handler = super().get_route_handler()
        level, changes = self.auth, not self.methods <= {"GET", "HEAD"}

        async def guarded(request):
            c = ctx(request)
            if level != NONE:
                request.state.who = await run_in_threadpool(
                    authenticate, c, request.headers.get("authorization"), level,
                    request.path_params.get("number"),
                    request.client.host if request.client else "",
                    request.url.scheme == "https", (request.scope.get("server") or ("",))[0])
            response = await handler(request)
            if changes and response.status_code < 300:
                # The next call, and a failover, see the change (lib/store/wire.acknowledged).
                await run_in_threadpool(wire.acknowledged, c.redis)
            return response
        return guarded


def who(request: Request) -> Principal:
    return request.state.who


def auth(level, uses_store=True):
    """Decorator under the route's: the endpoint's auth level, and whether it answers 503
    when the store is unreachable (read by Route)."""
    def mark(fn):
        fn.auth = level
        fn.uses_store = uses_store
        return fn
    return mark


# --- errors ----------------------------------------------------------------------------

def _field(loc):
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts)


def validation_message(exc):
    """One line for a refused request: the first problem pydantic found, named by field."""
    first = exc.errors()[0]
    kind, loc = first.get("type"), tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return "malformed JSON body"
    if loc == ("body",):
        if kind == "missing":
            return "a JSON object body is required"
        if kind in ("model_attributes_type", "model_type", "dict_type"):
            return "the body must be a JSON object (Content-Type: application/json)"
    message = first.get("msg", "invalid").removeprefix("Value error, ")
    if loc == ("body",):
        return message
    where = _field(loc) if loc and loc[0] == "body" else f"{loc[-1]} ({loc[0]})"
    return f"{where}: {message}"


def _allowed_methods(app, path):
    methods = {m for route in app.state.routes if route.path_regex.match(path)
               for m in route.methods}
    return ", ".join(sorted(methods - {"HEAD"}) + ["OPTIONS"])


def _install_error_handlers(app):
    @app.exception_handler(ApiError)
    async def api_error(request, exc):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(validation.ProvisioningError)
    async def provisioning_error(request, exc):
        return error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        return error(400, validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        if exc.status_code == 405:
            return error(405, "method not allowed",
                         {"Allow": _allowed_methods(request.app, request.url.path)})
        message = {404: "not found"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, message, getattr(exc, "headers", None))

    async def unavailable(request, exc):
        log.warning("state store unavailable: %s", exc)
        metrics.count("ua_store_errors_total")
        return error(503, "state store unavailable, retry", {"Retry-After": "1"})

    for kind in (clients.StoreUnavailable, provisioning.Busy, redis.RedisError, OSError):
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def internal(request, exc):
        log.exception("api %s %s", request.method, request.url.path)
        return error(500, "internal error")


# --- body limit and CORS ---------------------------------------------------------------

class BodyLimit:
    """413 for a request body over `limit` bytes, decided on its Content-Length or, for a
    chunked body, as soon as the count passes the limit: the body is never held whole.
    The rest of an oversized body is read and dropped before the answer, since most
    clients send their whole body before reading: closing at once would reset the
    connection under them. A client that sent `Expect: 100-continue` gets the 413
    instead of the 100 and sends nothing."""

    def __init__(self, app, limit):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            declared = int(headers.get(b"content-length", b"-1"))
        except ValueError:
            declared = -1
        if declared > self.limit:
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await self._drain(receive)
            return await self._refuse(scope, receive, send)
        seen = 0
        over = False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request" and not over:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    if message.get("more_body"):
                        await self._drain(receive)
                    raise _TooLarge()
            return message

        async def unless_over(message):
            # FastAPI turns any error while reading a body into its own 400: dropped.
            if not over:
                await send(message)

        try:
            await self.app(scope, counted, unless_over)
        except Exception:
            if not over:
                raise
        if over:
            await self._refuse(scope, receive, send)

    @staticmethod
    async def _drain(receive):
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    async def _refuse(self, scope, receive, send):
        response = error(413, f"request body larger than {self.limit} bytes "
                              "(UA_API_MAX_BODY)")
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class Cors(CORSMiddleware):
    """Starlette's CORS for the origins of UA_WS_ORIGINS (any when unset); a refused
    preflight answers with the API's JSON error."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            if origin is not None and b"access-control-request-method" in headers \
                    and not self.is_allowed_origin(origin.decode("latin-1")):
                return await error(403, "origin not allowed")(scope, receive, send)
        return await super().__call__(scope, receive, send)


def _cors_options(cfg):
    """Credentialed CORS (cookies, a browser's own Basic prompt) only for the origins
    UA_WS_ORIGINS names. With any origin allowed, `Access-Control-Allow-Origin: *` and never
    `Access-Control-Allow-Credentials`: a page may still send an Authorization header it
    holds itself, which a wildcard allows."""
    origins = [o.rstrip("/") for o in cfg.ws_origins]
    common = {"allow_methods": ["GET", "PUT", "POST", "DELETE"],
              "allow_headers": ["Authorization", "Content-Type"],
              "expose_headers": ["Retry-After", "WWW-Authenticate"], "max_age": 600}
    if not origins or "*" in origins:
        return {"allow_origins": ["*"], "allow_credentials": False, **common}
    return {"allow_origins": origins, "allow_credentials": True, **common}


# --- the application -------------------------------------------------------------------

def _validation_is_400(doc):
    """FastAPI documents its 422 for every route with parameters; this API answers 400
    with its Error body instead (validation_message), for what can be invalid: a body or
    a query parameter (a path parameter is any text)."""
    for item in doc["paths"].values():
        for op in item.values():
            validated = "requestBody" in op or any(
                p["in"] == "query" for p in op.get("parameters", []))
            if op.get("responses", {}).pop("422", None) is not None and validated:
                op["responses"].setdefault("400", {
                    "description": "invalid request",
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}})
    for name in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(name, None)


def _openapi(app):
    def generate():
        if app.openapi_schema is None:
            doc = get_openapi(title="Unique Account edge proxy API", version=VERSION,
                              description=__doc__.split("\n\n")[0], routes=app.routes)
            _validation_is_400(doc)
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "the admin token (UA_API_TOKEN)"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "a user's number and SIP password"}}
            app.openapi_schema = doc
        return app.openapi_schema
    return generate


def create_app(cfg=None, redis_client=None, clock=time.time):
    """The application for `cfg` (config.load() by default). redis_client: a client to
    use instead of this process's own (lib.store)."""
    from lib.web import calls, events, mds, page, system, users, users_csv
    cfg = cfg if cfg is not None else config_mod.load()
    app = FastAPI(title="Unique Account edge proxy API", version=VERSION,
                  openapi_url=PREFIX + "/openapi.json", docs_url=None, redoc_url=None)
    app.state.ctx = Context(cfg, redis_client, clock)
    app.router.route_class = Route
    # Literal paths before templates: /users/export is not user "export".
    routers = [module.router for module in (system, users_csv, users, calls, events, mds, page)]
    for router in routers:
        app.include_router(router)
    app.state.routes = [route for router in routers for route in router.routes]
    app.openapi = _openapi(app)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=cfg.api_max_body)
    app.add_middleware(Cors, **_cors_options(cfg))      # outermost: on every answer
    return app
