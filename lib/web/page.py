"""The reference UC Assistant page (contract section 13) at `/` of the API ports: the
files of web/ (the page, its style, the bundle web/build.mjs made from web/src, which is
committed: no build step at run time) and `config.json`, what the page needs to reach the
proxy's SIP WebSocket. A fixed list of files read once, so no request names a path on
disk. The page and config revalidate on every load (ETag); the script and style are
referenced with their content hash, so a browser keeps them until they change."""
import hashlib
import json
from pathlib import Path

from fastapi import APIRouter, Request, Response

from lib.web.app import NONE, Route, auth, ctx

WEB = Path(__file__).resolve().parent.parent.parent / "web"
ASSETS = {"app.js": ("app.bundle.js", "text/javascript; charset=utf-8"),
          "style.css": ("style.css", "text/css; charset=utf-8")}
REVALIDATE = "no-cache"
FOREVER = "public, max-age=31536000, immutable"
# The page's script and style come from here; its SIP WebSocket is on Kamailio's ports.
SECURITY = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
                               "img-src 'self' data:; media-src 'self' blob: mediastream:; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
}

router = APIRouter(route_class=Route, include_in_schema=False)


def _etag(body):
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def _load():
    """{name: (body, content type, version)}, index.html pointing at versioned assets."""
    files = {}
    for name, (path, kind) in ASSETS.items():
        body = (WEB / path).read_bytes()
        files[name] = (body, kind, _etag(body).strip('"'))
    index = (WEB / "index.html").read_text()
    for name, (_, _, version) in files.items():
        index = index.replace(f'"{name}"', f'"{name}?v={version}"')
    files[""] = (index.encode(), "text/html; charset=utf-8", None)
    return files


FILES = _load()


def _send(request, body, kind, cache):
    tag = _etag(body)
    headers = {"ETag": tag, "Cache-Control": cache, **SECURITY}
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=kind, headers=headers)


@router.get("/")
@auth(NONE, uses_store=False)
def index(request: Request):
    body, kind, _ = FILES[""]
    return _send(request, body, kind, REVALIDATE)


@router.get("/config.json")
@auth(NONE, uses_store=False)
def page_config(request: Request):
    cfg = ctx(request).config
    body = json.dumps({"domain": cfg.domain, "ws_port": cfg.http_port,
                       "wss_port": cfg.https_port,
                       "voicemail_number": cfg.voicemail_number}).encode()
    return _send(request, body, "application/json", REVALIDATE)


def _asset_route(name):
    body, kind, version = FILES[name]

    @auth(NONE, uses_store=False)
    def asset(request: Request):
        cache = FOREVER if request.query_params.get("v") == version else REVALIDATE
        return _send(request, body, kind, cache)
    router.add_api_route("/" + name, asset, methods=["GET"], name=name)


for _name in ASSETS:
    _asset_route(_name)
