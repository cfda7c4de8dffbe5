"""CSV import and export of users (contract section 9; the format: lib/users/csvio.py).

An import runs in a process of its own (one, started on the first import): parsing and
checking 100,000 rows in a thread of the API server held the GIL in turns with every
other request (make bench's import row: a GET's p99 was 136 to 361 ms during the import,
7 ms with the importer)."""
import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from lib.store import clients
from lib.users import csvio
from lib.web import models
from lib.web.app import PREFIX, ApiError, Route, auth, ctx

log = logging.getLogger("ua.api")
router = APIRouter(route_class=Route, prefix=PREFIX + "/users", tags=["users"])
CSV_BODY = {"requestBody": {"required": True, "description": "UTF-8 CSV, header on line 1",
                            "content": {"text/csv": {"schema": {"type": "string"}}}}}
PARENT_CHECK_SECONDS = 0.5
_importer = None
_clients = {}       # in the importer process: a Redis client per state store


def _import(cfg, raw, content_type, dry_run):
    """In the importer process."""
    key = (cfg.redis_url, cfg.redis_sentinels, cfg.redis_master)
    if key not in _clients:
        _clients[key] = clients.bulk_connect(cfg)
    return csvio.import_users(_clients[key], cfg.domain, raw, content_type, dry_run)


def _die_with(server):
    """In the importer process: a SIGKILLed API server must not leave it behind."""
    def watch():
        while os.getppid() == server:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def importer():
    global _importer
    if _importer is None:
        # spawn: a fresh interpreter, not a fork of this threaded one
        _importer = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"),
                                        initializer=_die_with, initargs=(os.getpid(),))
    return _importer


def _forget_importer():
    global _importer
    _importer = None
    log.warning("the CSV importer process stopped; a new one takes the next import")


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
        body = await asyncio.get_running_loop().run_in_executor(
            importer(), _import, c.config, raw, request.headers.get("content-type", ""),
            dry_run)
    except BrokenProcessPool:
        # The importer died (killed, out of memory); its transaction ran whole or not at all.
        _forget_importer()
        raise ApiError(503, "the import stopped, retry", {"Retry-After": "1"}) from None
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
