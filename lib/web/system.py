"""Health (contract section 1) and /metrics (section 10): no credentials."""
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from lib import metrics
from lib.features import health as health_mod
from lib.store import clients
from lib.web import models
from lib.web.app import NONE, PREFIX, Route, auth, ctx

router = APIRouter(route_class=Route)


@router.get(PREFIX + "/health", response_model=None, summary="Is the proxy routing calls",
            responses={200: {"model": models.Health},
                       503: {"model": models.Health,
                             "description": "a component is down (Retry-After)"}})
@auth(NONE, uses_store=False)
def health(request: Request):
    c = ctx(request)
    try:
        reason = health_mod.problem(c.config, c.redis)
    except clients.StoreUnavailable:
        reason = "state store unreachable"
    if reason is None:
        return JSONResponse({"status": "ok"})
    if reason == "state store unreachable":
        metrics.count("ua_store_errors_total")
    return JSONResponse({"status": "degraded", "reason": reason}, 503, {"Retry-After": "1"})


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}},
                             "description": "text exposition format 0.0.4"}})
@auth(NONE, uses_store=False)
def metrics_page():
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)

