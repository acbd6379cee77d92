"""The OpenAPI document with the error answers every operation can give.

FastAPI documents what a route returns on success and what its decorator lists; the errors
raised through the error tree (``errors.py``) would be missing. :func:`install` adds, to every
operation that does not already describe them (and the schema to error answers a decorator
listed without one): the ``Error`` schema (``{error, code, errors?}``)
and 400 (always: malformed request), 401 and 429 (operations that take an API key), 404
(operations with path parameters), 413 (operations with a request body) and 503 (storage
unavailable). A client generated from the document then knows every status it must handle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in one sentence."},
        "code": {"type": "string", "description": "Machine-readable kind, e.g. bad_request."},
        "errors": {
            "type": "array",
            "description": "One entry per bad field, when known.",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "index": {"type": "integer"},
                },
            },
        },
        "retryAfter": {"type": "integer", "description": "Seconds to wait (429 only)."},
    },
}

_DESCRIPTIONS = {
    "400": "Malformed request; `errors` names each bad field",
    "401": "Missing, unknown, expired or revoked key",
    "404": "No such resource for this key",
    "413": "Request body over its size limit",
    "429": "Too many requests (rate limit, or too many wrong keys); see Retry-After",
    "503": "Storage unavailable; retry later",
}
_METHODS = ("get", "put", "post", "delete", "patch")


def _error_response(status: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == "429":
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answer


def with_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Add the error schema and answers to an OpenAPI document (in place; returned)."""
    document.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            statuses = ["400", "503"]
            if operation.get("security"):
                statuses += ["401", "429"]
            if "{" in path:
                statuses.append("404")
            if "requestBody" in operation:
                statuses.append("413")
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(status, _error_response(status))
            for status, response in responses.items():
                if status[0] in "45" and "content" not in response:
                    response["content"] = _error_response(status)["content"]
            if _is_fastapi_validation(responses.get("422")):
                del responses["422"]
    return document


def _is_fastapi_validation(response: Any) -> bool:
    """FastAPI's generated 422 (HTTPValidationError): the platform answers those as 400."""
    if not isinstance(response, dict):
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def with_schemas(document: dict[str, Any], models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """Add the JSON schemas of request bodies that routes read themselves (a router module's
    ``SCHEMAS``, referred to by its routes' ``openapi_extra``) to the document's components."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return document


def install(app: FastAPI, schemas: Sequence[type[BaseModel]] = ()) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=app.description
            )
            app.openapi_schema = with_errors(with_schemas(document, schemas))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
