"""What every SendPost-shaped endpoint shares: body models, 422 for bodies, nanosecond times.

SendPost's resource APIs (``api/pools.py``, ``domains.py``, ``suppressions.py``,
``subaccounts.py``, ``messages.py``, ``stats.py``, ``ips.py``) take and answer the JSON shapes of
SendPost's official SDK (``sendpost-python-sdk``), whose models are the reference:

- **Request bodies** are :class:`RequestModel` subclasses: camelCase fields only, strict JSON
  types, and ``extra="forbid"``, so a field this platform does not honour is refused, never
  accepted and dropped.
- **A body that cannot be processed is 422** (SendPost's documented status), naming every bad
  field: routes on a router with ``route_class=SendPostRoute`` turn FastAPI's body validation
  errors into :class:`~sendpost_platform.errors.Unprocessable`; a field the platform knows but
  cannot honour (a dedicated IP, say) is refused the same way by :func:`refuse`. Query and path
  parameters stay 400, as everywhere else.
- **Times are UNIX epoch nanoseconds** (:func:`nanos`), as SendPost answers them.
- **Errors** keep the platform's ``{"error", "code", "errors"}`` body (``errors.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from sendpost_platform.errors import Unprocessable

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def nanos(moment: dt.datetime) -> int:
    """UNIX epoch nanoseconds (exact: microseconds times 1000)."""
    return (moment - EPOCH) // dt.timedelta(microseconds=1) * 1000


class RequestModel(BaseModel):
    """A SendPost request body: camelCase JSON names only, strict types, no unknown field."""

    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False
    )


class ResponseModel(BaseModel):
    """A SendPost answer body (serialised with its camelCase names)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class DeleteResponse(ResponseModel):
    """SendPost's ``DeleteResponse`` / ``IPPoolDeleteResponse`` / ``DeleteSubAccountResponse``."""

    id: int
    message: str


_MESSAGES = {
    "extra_forbidden": "is not a field this platform honours; refused rather than ignored",
    "missing": "is required",
}


def field_name(loc: Sequence[str | int]) -> str:
    """``("body", "to", 0, "email")`` → ``to[0].email``."""
    name = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def refuse(errors: Sequence[tuple[str, str]]) -> Unprocessable:
    """The 422 for fields that cannot be honoured: ``[(field, why), ...]``."""
    return Unprocessable(
        "the request body cannot be processed: "
        + "; ".join(f"{field}: {why}" for field, why in errors[:5]),
        errors=[{"field": field, "message": why} for field, why in errors],
    )


class SendPostRoute(APIRoute):
    """A route whose body validation errors are 422 (SendPost's status) naming each field."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problems = list(exc.errors())
                if not any(tuple(p.get("loc", ()))[:1] == ("body",) for p in problems):
                    raise
                raise refuse(
                    [
                        (
                            field_name(tuple(p.get("loc", ()))),
                            _MESSAGES.get(str(p.get("type")), str(p.get("msg", "invalid"))),
                        )
                        for p in problems
                    ]
                ) from None

        return route


UNPROCESSABLE: dict[int | str, dict[str, Any]] = {
    422: {"description": "The body cannot be processed; `errors` names each refused field"}
}
"""``responses=`` entry for routes that take a SendPost body."""

ERROR_CONTENT: dict[str, Any] = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
}
"""An error answer's body in ``responses=`` (the ``Error`` schema ``api/openapi.py`` adds)."""
