"""Request bodies: a size limit for every route, and JSON that no route can choke on.

:class:`BodyLimits` is plain ASGI middleware around the whole app (``create_app`` installs it).
For each request that carries a body, except the agent's ingestion endpoint (which reads its
own body against its documented 1 MiB limit and validates it with the wire schema, see
``api/ingest.py``):

- **size**: over :func:`limit_for` the path → 413 ``payload_too_large``, from ``Content-Length``
  before reading anything, or as soon as a streamed body passes the limit; never more than the
  limit is held. The send API (both paths) allows :data:`SEND_MAX_BODY_BYTES` (a message and
  its attachments may be 10 MiB each,
  ``sending.MAX_MESSAGE_BYTES``, and JSON escaping adds to it); every other route
  :data:`MAX_BODY_BYTES`.
- **JSON**: a body that parses as JSON (content type JSON or none, as FastAPI reads it) must
  nest at most :data:`MAX_DEPTH` levels, and no string or key in it may hold a NUL or a lone
  surrogate (text no database can store, nor any header or message carry) → else 400
  ``bad_request`` naming the field (``body.to.0``). A body that is not JSON goes on to the
  route, which answers for it as before. The send API answers these with 422 instead (as
  SendPost does for a body it cannot process), and also a body that is missing or not JSON
  (:func:`send_problems`); it checks NUL in values itself, as the header-injection refusal it
  is (422 ``header_injection`` naming the field, ``api/send_body.py``).

The body read here is replayed to the app unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from sendpost_platform.api.ingest import PATH as INGEST_PATH
from sendpost_platform.api.send import SEND_PATHS
from sendpost_platform.errors import ApiError, BadRequest, PayloadTooLarge, Unprocessable

MAX_BODY_BYTES = 1024 * 1024
SEND_MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 32

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


def _is_send(path: str) -> bool:
    return path.rstrip("/") in {p.rstrip("/") for p in SEND_PATHS}


def limit_for(path: str) -> int | None:
    """The body size limit of a path in bytes (None: the route enforces its own)."""
    if path == INGEST_PATH:
        return None
    if _is_send(path):
        return SEND_MAX_BODY_BYTES
    return MAX_BODY_BYTES


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/json" or media.endswith(b"+json"))
    return True  # FastAPI reads a body without a content type as JSON


def _field(path: list[str | int]) -> str:
    return ".".join(["body", *(_printable(str(p)) for p in path)])


def _printable(text: str) -> str:
    """``text`` safe to put in a JSON answer: lone surrogates and NUL as escapes, capped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= 80 else text[:79] + "…"


def _string_problem(text: str, *, nul: bool = True) -> str | None:
    if nul and "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate, which is not valid Unicode"
    return None


def json_problems(body: bytes, *, nul_in_values: bool = True) -> list[dict[str, str]]:
    """What makes a JSON body unacceptable to every route ([] when nothing does, and for a body
    that is not JSON at all: the route answers for that). Linear in the body's size. With
    ``nul_in_values`` False, NUL in strings and keys is left to the route."""
    try:
        doc = json.loads(body)
    except RecursionError:
        return [{"field": "body", "message": f"nested deeper than {MAX_DEPTH} levels"}]
    except ValueError:  # UnicodeDecodeError included
        return []
    problems: list[dict[str, str]] = []
    stack: list[tuple[object, list[str | int]]] = [(doc, [])]
    while stack and len(problems) < 20:
        value, path = stack.pop()
        if isinstance(value, str):
            problem = _string_problem(value, nul=nul_in_values)
            if problem is not None:
                problems.append({"field": _field(path), "message": problem})
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            return [{"field": _field(path), "message": f"nested deeper than {MAX_DEPTH} levels"}]
        if isinstance(value, list):
            stack.extend((item, [*path, i]) for i, item in reversed(list(enumerate(value))))
            continue
        for key, item in reversed(list(value.items())):
            problem = _string_problem(key, nul=nul_in_values)
            if problem is not None:
                problems.append({"field": _field([*path, key]), "message": f"key {problem}"})
            stack.append((item, [*path, key]))
    return problems


def send_problems(body: bytes) -> list[dict[str, str]]:
    """The send API's body must be JSON (whatever the content type says), without lone
    surrogates or deep nesting; NUL is the route's to name (``api/send_body.py``)."""
    if not body.strip():
        return [{"field": "body", "message": "is required: a JSON object"}]
    try:
        json.loads(body)
    except RecursionError:
        pass  # json_problems names it
    except ValueError as exc:  # UnicodeDecodeError included
        return [{"field": "body", "message": f"is not valid JSON: {exc}"}]
    return json_problems(body, nul_in_values=False)


class BodyLimits:
    """The middleware (module docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        is_send = _is_send(scope["path"])
        try:
            body = await _read(scope, receive, limit)
            if is_send and scope["method"] == "POST":
                problems = send_problems(body)
                if problems:
                    raise Unprocessable("invalid request body", errors=problems)
            elif body and _is_json(scope):
                problems = json_problems(body)
                if problems:
                    raise BadRequest("invalid request body", errors=problems)
        except ApiError as exc:
            response = JSONResponse(exc.to_json(), status_code=exc.status)
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(
                f"body of {int(value)} bytes is over the {limit}-byte limit for this path"
            )
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit for this path")
        if not message.get("more_body", False):
            break
    return bytes(body)
