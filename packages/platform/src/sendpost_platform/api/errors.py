"""Maps the error tree (``errors.py``) to JSON answers, once, for the whole app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
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


PageRenderer = Callable[[Request, int, str, str], Response]


def install_fallback(app: FastAPI, prefix: str, page: PageRenderer) -> None:
    """The answers to a storage failure (503, retry) and to an error nothing else handled (500:
    logged with its trace, never shown). Under ``prefix`` (the dashboard) an HTML page from
    ``page``; elsewhere ``{"error", "code"}`` JSON. A bug then costs one request, and its
    details stay in the log."""

    @app.exception_handler(StoreError)
    async def on_store(request: Request, exc: StoreError) -> Response:
        log.error("store error: %s", exc)
        if request.url.path.startswith(f"{prefix}/"):
            answer = page(
                request,
                503,
                "Temporarily unavailable",
                "The database did not answer; try again in a moment.",
            )
            answer.headers["Retry-After"] = "5"
            return answer
        return JSONResponse(
            {"error": "storage unavailable, retry later", "code": "unavailable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        if request.url.path.startswith(f"{prefix}/"):
            return page(
                request,
                500,
                "Something went wrong",
                "The page could not be shown because of an error on our side; it has been "
                "logged. Try again in a moment.",
            )
        return JSONResponse(
            {"error": "internal error; it has been logged", "code": "internal_error"},
            status_code=500,
        )
