"""CSV import and export of users (contract section 9; the format: lib/csvio.py)."""
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lib import csvio
from lib.web import models
from lib.web.app import PREFIX, ApiError, Route, auth, ctx

router = APIRouter(route_class=Route, prefix=PREFIX + "/users", tags=["users"])
CSV_BODY = {"requestBody": {"required": True, "description": "UTF-8 CSV, header on line 1",
                            "content": {"text/csv": {"schema": {"type": "string"}}}}}


@router.post("/import", response_model=models.ImportResult, openapi_extra=CSV_BODY,
             summary="Create or update users from CSV, all or nothing",
             responses={400: {"model": models.ImportError, "description": "refused lines"},
                        413: {"model": models.Error, "description": "over UA_API_MAX_BODY"}})
@auth("admin")
async def import_users(request: Request, dry_run: bool = Query(
        False, description="validate only, store nothing")):
    c = ctx(request)
    raw = await request.body()
    try:
        # A thread: parsing and checking 100,000 rows must not hold the event loop.
        body = await run_in_threadpool(csvio.import_users, c.bulk_redis, c.config.domain,
                                       raw, request.headers.get("content-type", ""),
                                       dry_run)
    except csvio.Refused as exc:
        return JSONResponse(exc.body, 400)
    return JSONResponse(body)


@router.get("/export", response_class=StreamingResponse, summary="Every user as CSV",
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "streamed"},
                       409: {"model": models.Error,
                             "description": "a record the CSV cannot carry unchanged"}})
@auth("admin")
def export_users(request: Request):
    r = ctx(request).bulk_redis
    try:
        numbers = csvio.check_exportable(r)
    except csvio.Unexportable as exc:
        raise ApiError(409, exc.message) from None
    return StreamingResponse(csvio.export_chunks(r, numbers), media_type=csvio.CSV_TYPE,
                             headers={"Content-Disposition":
                                      'attachment; filename="users.csv"'})
