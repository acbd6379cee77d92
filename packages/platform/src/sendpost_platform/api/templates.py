"""Templates for the send API (this platform's own endpoints: SendPost's SDK has none).

With the sub-account key (``X-SubAccount-ApiKey``), under ``/api/v1/subaccount/template/``:
``POST`` creates ``{name, subject?, htmlBody?, textBody?}`` (names are unique per sub-account:
a second one is 409), ``GET`` lists, ``GET|PUT|DELETE /{id}`` reads, changes (only the fields
given) and deletes. Each answers 200 with the template ``{id, name, subject, htmlBody,
textBody, created, updated}`` (times in nanoseconds), the list, or ``{id, message}`` for a
delete. Placeholders are checked when saved, as a send checks them (422 naming the field).
A send names a template by ``template`` (name) or ``templateId`` (``id`` as a string).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from sendpost_platform.api import send_models
from sendpost_platform.api.auth import SubAccountDep
from sendpost_platform.api.deps import ContextDep, IdPath
from sendpost_platform.api.send import nanoseconds
from sendpost_platform.api.send_body import InvalidSend, validate
from sendpost_platform.domain import handlebars
from sendpost_platform.errors import Conflict, NotFound
from sendpost_platform.store import templates

PATH = "/api/v1/subaccount/template/"

router = APIRouter(tags=["sending"])

_FIELDS = {"name": "name", "subject": "subject", "htmlBody": "html_body", "textBody": "text_body"}


def _json(template: templates.StoredTemplate) -> dict[str, Any]:
    return send_models.Template(
        id=template.id,
        name=template.name,
        subject=template.subject,
        htmlBody=template.html_body,
        textBody=template.text_body,
        created=nanoseconds(template.created_at),
        updated=nanoseconds(template.updated_at),
    ).model_dump()


def _columns(given: dict[str, Any]) -> dict[str, Any]:
    """The store's columns for the given fields, each template text checked."""
    errors = []
    for field in ("subject", "htmlBody", "textBody"):
        text = given.get(field)
        if text is None:
            continue
        if "\x00" in text or (field == "subject" and ("\r" in text or "\n" in text)):
            errors.append({"field": field, "message": "contains a character it may not hold"})
            continue
        try:
            handlebars.parse(text)
        except handlebars.TemplateError as exc:
            errors.append({"field": field, "message": str(exc)})
    if errors:
        raise InvalidSend("invalid template", errors=errors)
    return {_FIELDS[k]: v for k, v in given.items()}


def _schema(name: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


@router.post(
    PATH,
    response_model=send_models.Template,
    openapi_extra=_schema("TemplateInput"),
    responses={
        409: {"description": "A template by this name exists"},
        422: {"description": "Bad field"},
    },
)
def create_template(ctx: ContextDep, sub: SubAccountDep, body: Annotated[Any, Body()]) -> Any:
    """Create a template."""
    given = validate(send_models.TemplateInput, body).model_dump(exclude_unset=True)
    with ctx.store.write() as conn:
        created = templates.create_template(
            conn, subaccount_id=sub.id, values=_columns(given), now=ctx.clock.now()
        )
    if created is None:
        raise Conflict(f"a template named {given['name']!r} exists")
    return _json(created)


@router.get(PATH, response_model=list[send_models.Template])
def list_templates(ctx: ContextDep, sub: SubAccountDep) -> Any:
    """The sub-account's templates, oldest first."""
    with ctx.store.read() as conn:
        return [_json(t) for t in templates.list_templates(conn, sub.id)]


@router.get(PATH + "{template_id}", response_model=send_models.Template)
def get_template(ctx: ContextDep, sub: SubAccountDep, template_id: IdPath) -> Any:
    """One template."""
    with ctx.store.read() as conn:
        found = templates.get_template(conn, sub.id, template_id)
    if found is None:
        raise NotFound("no such template")
    return _json(found)


@router.put(
    PATH + "{template_id}",
    response_model=send_models.Template,
    openapi_extra=_schema("TemplateUpdate"),
    responses={
        409: {"description": "A template by this name exists"},
        422: {"description": "Bad field"},
    },
)
def update_template(
    ctx: ContextDep, sub: SubAccountDep, template_id: IdPath, body: Annotated[Any, Body()]
) -> Any:
    """Change the fields given (``null`` clears subject or a body)."""
    given = validate(send_models.TemplateUpdate, body).model_dump(exclude_unset=True)
    if given.get("name", "") is None:
        raise InvalidSend(
            "invalid template", errors=[{"field": "name", "message": "may not be null"}]
        )
    changes = _columns(given)
    with ctx.store.write() as conn:
        if templates.get_template(conn, sub.id, template_id) is None:
            raise NotFound("no such template")
        if "name" in changes:
            other = templates.find_template(conn, sub.id, name=changes["name"])
            if other is not None and other.id != template_id:
                raise Conflict(f"a template named {changes['name']!r} exists")
        updated = templates.update_template(
            conn, sub.id, template_id, changes=changes, now=ctx.clock.now()
        )
    assert updated is not None
    return _json(updated)


@router.delete(PATH + "{template_id}", response_model=send_models.TemplateDeleted)
def delete_template(ctx: ContextDep, sub: SubAccountDep, template_id: IdPath) -> Any:
    """Delete a template (messages already sent with it are not affected)."""
    with ctx.store.write() as conn:
        if not templates.delete_template(conn, sub.id, template_id):
            raise NotFound("no such template")
    return {"id": template_id, "message": "Template deleted successfully"}
