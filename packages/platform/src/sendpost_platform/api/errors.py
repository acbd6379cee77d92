"""Maps the error tree (``errors.py``) to JSON answers, once, for the whole app."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sendpost_platform.errors import ApiError, BadRequest, StoreError

log = logging.getLogger("sendpost_platform.api")

_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 401: "unauthorized"}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers or None)


def _field(loc: Any) -> str:
    return ".".join(str(part) for part in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        return error_response(BadRequest("invalid request", errors=errors))

    @app.exception_handler(HTTPException)
    async def on_http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return JSONResponse(
            {"error": str(exc.detail), "code": code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OverflowError)
    @app.exception_handler(sa.exc.DataError)
    async def on_out_of_range(_request: Request, exc: Exception) -> JSONResponse:
        # Defence in depth: a value the database cannot hold (e.g. a 2**63 ID) is the client's
        # error, not a server fault. Routes should validate first (``deps.IdPath``).
        log.warning("value out of range reached the database: %s", exc)
        return error_response(BadRequest("a value is out of range"))

    @app.exception_handler(StoreError)
    async def on_store(_request: Request, exc: StoreError) -> JSONResponse:
        log.error("store error: %s", exc)
        return JSONResponse(
            {"error": "storage unavailable, retry later", "code": "unavailable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
