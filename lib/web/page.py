"""The reference UC Assistant page (contract section 13) at `/` of the API ports: the
files of web/ (the page, its style, the bundle web/build.mjs made from web/src, which is
committed: no build step at run time) and `config.json`, what the page needs to reach the
proxy's SIP WebSocket. A fixed list of files read once, so no request names a path on
disk. The page and config revalidate on every load (ETag); the script and style are
referenced with their content hash, so a browser keeps them until they change. The
OpenAPI document lists these paths too (tag `page`), like every path of the API ports."""
import hashlib
from pathlib import Path

from fastapi import APIRouter, Request, Response

from lib.web import models
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

router = APIRouter(route_class=Route, tags=["page"])


def _doc(kind, what, model=None):
    ok = {"model": model} if model else {"content": {kind: {}}}
    return {"response_class": Response, "summary": what,
            "responses": {200: {**ok, "description": what},
                          304: {"description": "not modified (If-None-Match: its ETag)"}}}


def etag(body):
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def _load():
    """{name: (body, content type, ETag)}, index.html ("") naming the assets with their
    ETag as version."""
    files = {name: (body, kind, etag(body)) for name, (path, kind) in ASSETS.items()
             for body in [(WEB / path).read_bytes()]}
    index = (WEB / "index.html").read_text()
    for name, (_, _, tag) in files.items():
        version = tag.strip('"')
        index = index.replace(f'"{name}"', f'"{name}?v={version}"')
    index = index.encode()
    files[""] = (index, "text/html; charset=utf-8", etag(index))
    return files


FILES = _load()


def _send(request, body, kind, cache, tag=None):
    tag = tag or etag(body)
    headers = {"ETag": tag, "Cache-Control": cache, **SECURITY}
    if tag in (t.strip() for t in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=kind, headers=headers)


@router.get("/", **_doc("text/html", "The UC Assistant page"))
@auth(NONE, uses_store=False)
def index(request: Request):
    body, kind, tag = FILES[""]
    return _send(request, body, kind, REVALIDATE, tag)


def config_body(cfg):
    return models.PageConfig(domain=cfg.domain, ws_port=cfg.http_port, wss_port=cfg.https_port,
                             voicemail_number=cfg.voicemail_number).model_dump_json().encode()


@router.get("/config.json", **_doc("application/json", "Where the page finds the proxy's "
                                                       "SIP WebSocket", models.PageConfig))
@auth(NONE, uses_store=False)
def page_config(request: Request):
    return _send(request, config_body(ctx(request).config), "application/json", REVALIDATE)


def _asset_route(name):
    body, kind, tag = FILES[name]

    @auth(NONE, uses_store=False)
    def asset(request: Request):
        cache = FOREVER if f'"{request.query_params.get("v")}"' == tag else REVALIDATE
        return _send(request, body, kind, cache, tag)
    router.add_api_route("/" + name, asset, methods=["GET"], name=name,
                         **_doc(kind.split(";")[0], f"The page's {name} (?v=: cached for good)"))


for _name in ASSETS:
    _asset_route(_name)
