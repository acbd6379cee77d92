"""The platform's error tree, mapped once to HTTP answers (see ``api/errors.py``).

::

    PlatformError
    ├── ConfigError                 a setting is missing or invalid (names the variable and value)
    ├── StoreError                  the database failed or is not ready
    │   └── SchemaNotReady          migrations not applied: run `sendpost-platform migrate`
    └── ApiError                    an answer to an HTTP request, with ``status`` and ``code``
        ├── BadRequest        400   malformed request; ``errors`` lists {field, message} (and index)
        ├── Unauthorized      401   missing, unknown, expired or revoked key
        ├── Forbidden         403   the key is valid but may not touch this resource
        ├── NotFound          404   no such resource (for this account)
        ├── Conflict          409   the request clashes with the current state
        ├── PayloadTooLarge   413   body or batch over its limit
        ├── Unprocessable     422   well-formed but refused (e.g. the SMTP test failed)
        ├── RateLimited       429   over a rate limit; ``retry_after`` seconds
        └── ServiceUnavailable 503  storage unavailable; the client should retry

Every API error is answered as JSON: ``{"error": message, "code": code}`` plus ``"errors": [...]``
when field-level problems are known, plus any ``extra`` keys the raiser supplied (the SMTP test
result, for instance). FastAPI's request validation errors are answered as :class:`BadRequest`
(400) with one entry per field (``{"field": "query.limit", "message": ...}``), so 422 means only
"understood but refused".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class PlatformError(Exception):
    """Base of every error the platform raises on purpose."""


class ConfigError(PlatformError):
    """A setting is missing or invalid; the message names the variable and the bad value."""

    def __init__(self, variable: str, value: object, problem: str) -> None:
        shown = "(unset)" if value is None else repr(value)
        super().__init__(f"{variable}={shown}: {problem}")
        self.variable = variable
        self.value = value
        self.problem = problem


class StoreError(PlatformError):
    """The database failed or is not usable."""


class SchemaNotReady(StoreError):
    """The database schema is missing or older than this code."""


class ApiError(PlatformError):
    """An error answered to an HTTP client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[Mapping[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = [dict(e) for e in errors]
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Unprocessable(ApiError):
    status = 422
    code = "unprocessable"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(
            message, extra={"retryAfter": retry_after}, headers={"Retry-After": str(retry_after)}
        )
        self.retry_after = retry_after


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"
