"""MDS nodes (contract section 9), with this proxy's OPTIONS probing result."""
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lib.features import mds_health
from lib.web import models
from lib.web.app import PREFIX, ApiError, Route, auth, ctx

router = APIRouter(route_class=Route, prefix=PREFIX + "/mds", tags=["mds"])
UNKNOWN = {404: {"model": models.Error, "description": "no such MDS"}}


def _views(c, records):
    return mds_health.views(c.redis, c.config.node_id, records)


@router.get("", response_model=list[models.Mds], summary="Every MDS")
@auth("admin")
def list_mds(request: Request):
    c = ctx(request)
    return JSONResponse(_views(c, c.provisioning.list_mds()))


@router.get("/{name}", response_model=models.Mds, responses=UNKNOWN)
@auth("admin")
def get_mds(request: Request, name: str):
    c = ctx(request)
    record = c.provisioning.get_mds(name)
    if record is None:
        raise ApiError(404, f"no MDS {name}")
    return JSONResponse(_views(c, [record])[0])


@router.put("/{name}", response_model=models.Mds, summary="Create (201) or replace (200)",
            responses={201: {"model": models.Mds, "description": "created"},
                       400: {"model": models.Error, "description": "invalid body"}})
@auth("admin")
def put_mds(request: Request, name: str, record: models.MdsIn):
    c = ctx(request)
    created, stored = c.provisioning.put_mds(name, record.model_dump(exclude_unset=True))
    return JSONResponse(_views(c, [stored])[0], 201 if created else 200)


@router.delete("/{name}", status_code=204, response_class=Response,
               responses={**UNKNOWN,
                          409: {"model": models.Error, "description": "still used by users"}})
@auth("admin")
def delete_mds(request: Request, name: str):
    ctx(request).provisioning.delete_mds(name)
    return Response(status_code=204)
