"""From a send request's JSON to a :class:`~sendpost_platform.sending.SendRequest`, or a 422.

First the body must match its model (``api/send_models.py``: SendPost's SDK shape, unknown fields
refused). Then :func:`build_request` checks what a type cannot say, collecting every problem
before answering, each as ``{field, message}`` with the field's path (``to[0].cc[1].email``):

- 422 ``header_injection``: CR, LF, NUL or another control character (tab excepted) in anything
  that reaches a header or the envelope: addresses, display names, ``subject``, header names and
  values, attachment file names, and custom field values the subject uses;
- 422 ``validation_error`` for the rest: ``ampBody`` (not sent here), an invalid sender or
  reply-to address, a reserved or platform header, a template placeholder that is not
  ``{{name}}``/``{{{name}}}``, no body, ``preText`` without ``htmlBody``, lists in custom fields,
  the reserved ``unsubscribe`` field, invalid base64, too many recipients, attachments over
  :data:`~sendpost_platform.sending.MAX_ATTACHMENT_BYTES`, a copy whose rendered message is over
  :data:`~sendpost_platform.sending.MAX_MESSAGE_BYTES`, a ``webhookEndpoint`` that is not an
  http(s) URL or that the egress guard refuses.

An invalid recipient address is not a 422: that recipient is answered ``errorCode`` 1.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import pydantic

from sendpost_platform.api import send_models as m
from sendpost_platform.domain import handlebars
from sendpost_platform.domain.addresses import (
    MAX_HEADER_NAME,
    MAX_TEXT,
    Mailbox,
    is_address,
    unsafe_characters,
)
from sendpost_platform.domain.suppression import normalize_address
from sendpost_platform.egress import EgressRefused
from sendpost_platform.errors import Unprocessable
from sendpost_platform.sending import (
    MAX_ATTACHMENT_BYTES,
    MAX_MESSAGE_BYTES,
    Copy,
    Delivery,
    SendRequest,
)
from sendpost_platform.smtp.mime import StoredAttachment, content_type_of
from sendpost_platform.smtp.prepare import UNSUBSCRIBE_FIELD, is_reserved_header
from sendpost_platform.store.templates import StoredTemplate

_HEADER_NAME = re.compile(rf"^[!-9;-~]{{1,{MAX_HEADER_NAME}}}$")
Model = TypeVar("Model", bound=pydantic.BaseModel)


class InvalidSend(Unprocessable):
    """The body cannot be processed; ``errors`` names each field."""

    code: ClassVar[str] = "validation_error"


class HeaderInjection(Unprocessable):
    """A field that reaches a header or the envelope carries CR, LF, NUL or another control."""

    code: ClassVar[str] = "header_injection"


def field_path(loc: Sequence[int | str]) -> str:
    """``("to", 0, "cc", 1, "email")`` as ``to[0].cc[1].email``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


_MESSAGES = {
    "extra_forbidden": "is not a field this platform accepts",
    "missing": "is required",
}


def validate(model: type[Model], body: Any) -> Model:
    """``body`` as ``model``, or :class:`InvalidSend` naming every field that does not fit."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        errors = [
            {
                "field": field_path(e["loc"]),
                "message": _MESSAGES.get(e["type"], e["msg"]),
            }
            for e in exc.errors(include_url=False)
        ]
        raise InvalidSend("invalid request body", errors=errors) from None


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.unsafe = False

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def unsafe_in(self, field: str, value: str) -> bool:
        """Record (and say) whether ``value`` carries a character no header may hold."""
        found = unsafe_characters(value)
        if found:
            self.unsafe = True
            self.add(field, f"contains {' and '.join(found)}, which may not appear in a header")
        return bool(found)

    def raise_any(self) -> None:
        if self.unsafe:
            raise HeaderInjection(
                "CR, LF, NUL and other control characters may not appear in addresses, names,"
                " the subject, headers or file names",
                errors=self.items,
            )
        if self.items:
            raise InvalidSend("invalid send request", errors=self.items)


def _mailbox(
    value: m.EmailAddress | m.CopyTo | m.Recipient, field: str, errors: _Errors
) -> Mailbox:
    email = value.email.strip()
    errors.unsafe_in(f"{field}.email", value.email)
    name = None
    if value.name is not None and not errors.unsafe_in(f"{field}.name", value.name):
        name = value.name.strip() or None
    return Mailbox(email, name)


def _sender(value: m.EmailAddress, field: str, errors: _Errors) -> Mailbox:
    mailbox = _mailbox(value, field, errors)
    if not unsafe_characters(value.email) and not is_address(mailbox.email):
        errors.add(f"{field}.email", f"{mailbox.email!r} is not a valid email address")
    return mailbox


def _fields(value: Mapping[str, Any] | None, field: str, errors: _Errors) -> dict[str, Any]:
    """Custom fields: objects, strings, numbers, booleans and null; no lists, no NUL, no
    ``unsubscribe`` (reserved for the unsubscribe link). Iterative, so linear in the size."""
    if not value:
        return {}
    if UNSUBSCRIBE_FIELD in value:
        errors.add(f"{field}.{UNSUBSCRIBE_FIELD}", "is reserved: it renders the unsubscribe link")
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            errors.add(path, "lists are not supported in custom fields (no {{#each}} here)")
        elif isinstance(item, str) and "\x00" in item:
            errors.add(path, "contains a NUL character, which no message may carry")
    return dict(value)


def _template(text: str | None, field: str, errors: _Errors) -> handlebars.Template | None:
    if text is None:
        return None
    if "\x00" in text:
        errors.add(field, "contains a NUL character, which no message may carry")
        return None
    try:
        parsed = handlebars.parse(text)
    except handlebars.TemplateError as exc:
        errors.add(field, str(exc))
        return None
    if len(parsed.counts) > handlebars.MAX_PLACEHOLDERS:
        errors.add(
            field,
            f"uses {len(parsed.counts)} distinct placeholders, over {handlebars.MAX_PLACEHOLDERS}",
        )
        return None
    return parsed


def _headers(value: Mapping[str, str] | None, errors: _Errors) -> dict[str, str]:
    headers = {}
    for name, text in (value or {}).items():
        field = f"headers.{name}"
        if errors.unsafe_in(field, name):
            continue
        if not _HEADER_NAME.match(name):
            errors.add(
                field,
                f"is not a valid header name (printable ASCII without ':',"
                f" at most {MAX_HEADER_NAME} characters)",
            )
        elif is_reserved_header(name):
            errors.add(field, "is set by the platform and may not be supplied")
        elif not errors.unsafe_in(field, text):
            if len(text) > MAX_TEXT:
                errors.add(field, f"must be at most {MAX_TEXT} characters")
            else:
                headers[name] = text
    return headers


def _attachments(value: Sequence[m.Attachment] | None, errors: _Errors) -> list[StoredAttachment]:
    found, total = [], 0
    for i, attachment in enumerate(value or ()):
        field = f"attachments[{i}]"
        if errors.unsafe_in(f"{field}.filename", attachment.filename):
            continue
        content = "".join(attachment.content.split())
        try:
            size = len(base64.b64decode(content, validate=True))
        except (binascii.Error, ValueError):
            errors.add(f"{field}.content", "is not valid base64")
            continue
        total += size
        found.append(
            StoredAttachment(attachment.filename, content_type_of(attachment.filename), content)
        )
    if total > MAX_ATTACHMENT_BYTES:
        errors.add(
            "attachments", f"{total} bytes in all, over the {MAX_ATTACHMENT_BYTES}-byte limit"
        )
    return found


def check_webhook_url(
    url: str | None, run: Callable[[str, int], object], errors: _Errors
) -> str | None:
    """An http(s) URL whose host the egress guard allows; ``run(host, port)`` resolves and
    checks it (``EgressPolicy.resolve``, run from the request's thread)."""
    if url is None:
        return None
    field = "webhookEndpoint"
    if unsafe_characters(url) or any(c.isspace() for c in url):
        errors.add(field, "may not contain spaces or control characters")
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        errors.add(field, f"is not a URL: {exc}")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.add(field, "must be an http:// or https:// URL with a host")
        return None
    try:
        run(parts.hostname, port)
    except EgressRefused as exc:
        errors.add(field, str(exc))
        return None
    except OSError as exc:
        errors.add(field, f"the host cannot be resolved: {exc}")
        return None
    return url


def build_request(
    message: m.EmailMessageObject,
    template: StoredTemplate | None,
    *,
    resolve: Callable[[str, int], object],
) -> SendRequest:
    """The request to submit (module docstring); raises :class:`InvalidSend` or
    :class:`HeaderInjection` naming every problem."""
    errors = _Errors()
    if message.ampBody is not None:
        errors.add("ampBody", "AMP bodies are not sent by this platform: use htmlBody/textBody")
    sender = _sender(message.from_, "from", errors)
    reply_to = None if message.replyTo is None else _sender(message.replyTo, "replyTo", errors)

    subject, html, text = message.subject, message.htmlBody, message.textBody
    if template is not None:
        subject = subject if subject is not None else template.subject
        html = html if html is not None else template.html_body
        text = text if text is not None else template.text_body
    if subject is not None and not errors.unsafe_in("subject", subject):
        subject_t = _template(subject, "subject", errors)
    else:
        subject_t = None
    html_t = _template(html, "htmlBody", errors)
    text_t = _template(text, "textBody", errors)
    pre_t = _template(message.preText, "preText", errors)
    if html is None and text is None:
        errors.add("htmlBody", "htmlBody or textBody is required (in the request or its template)")
    if message.preText is not None and html is None:
        errors.add("preText", "needs htmlBody: the preheader is hidden text at the top of the HTML")
    headers = _headers(message.headers, errors)
    for i, group in enumerate(message.groups or ()):
        errors.unsafe_in(f"groups[{i}]", group)
    attachments = _attachments(message.attachments, errors)
    webhook = check_webhook_url(message.webhookEndpoint, resolve, errors)
    variables = _fields(message.templateVariables, "templateVariables", errors)

    # copies and deliveries (an address gets the first copy it appears in); each layer of
    # fields is kept once, with the path that names it in an error
    copies: list[Copy] = []
    deliveries: list[Delivery] = []
    sources: list[Sequence[tuple[str, Mapping[str, Any]]]] = []
    seen: set[str] = set()
    top_cc = [_mailbox(c, f"cc[{i}]", errors) for i, c in enumerate(message.cc or ())]
    base = ("templateVariables", variables)

    def deliver(
        mailbox: Mailbox,
        copy: int,
        copy_layer: tuple[str, Mapping[str, Any]],
        own: tuple[str, Mapping[str, Any]],
    ) -> None:
        key = normalize_address(mailbox.email)
        if key in seen:
            return
        seen.add(key)
        deliveries.append(Delivery(mailbox.email, copy, own[1]))
        sources.append((own, copy_layer, base))

    to_boxes = []
    for i, recipient in enumerate(message.to):
        field = f"to[{i}]"
        box = _mailbox(recipient, field, errors)
        to_boxes.append(box)
        own_path = f"{field}.customFields"
        own = (own_path, _fields(recipient.customFields, own_path, errors))
        cc = [_mailbox(c, f"{field}.cc[{j}]", errors) for j, c in enumerate(recipient.cc or ())]
        copies.append(Copy((box,), (*cc, *top_cc), own[1]))
        deliver(box, i, own, ("", {}))
        for kind, entries, boxes in (
            ("cc", recipient.cc or (), cc),
            ("bcc", recipient.bcc or (), None),
        ):
            for j, entry in enumerate(entries):
                path = f"{field}.{kind}[{j}]"
                copy_box = boxes[j] if boxes is not None else _mailbox(entry, path, errors)
                layer = _fields(entry.customFields, f"{path}.customFields", errors)
                deliver(copy_box, i, own, (f"{path}.customFields", layer))
    if message.cc or message.bcc:
        copies.append(Copy(tuple(to_boxes), tuple(top_cc)))
        shared = len(copies) - 1
        for kind, entries in (("cc", message.cc or ()), ("bcc", message.bcc or ())):
            for j, entry in enumerate(entries):
                path = f"{kind}[{j}]"
                box = top_cc[j] if kind == "cc" else _mailbox(entry, path, errors)
                layer = _fields(entry.customFields, f"{path}.customFields", errors)
                deliver(box, shared, ("", {}), (f"{path}.customFields", layer))
    if len(deliveries) > m.MAX_RECIPIENTS:
        errors.add("to", f"at most {m.MAX_RECIPIENTS} recipients (to, cc and bcc together)")
    errors.raise_any()

    _check_rendering(subject_t, html_t, text_t, pre_t, deliveries, sources, headers, errors)
    errors.raise_any()
    return SendRequest(
        from_email=sender.email,
        from_name=sender.name,
        reply_to=reply_to,
        subject=subject,
        text_body=text,
        html_body=html,
        pre_text=message.preText,
        headers=headers,
        ippool=message.ippool.strip(),
        track_opens=message.trackOpens,
        track_clicks=message.trackClicks,
        groups=tuple(message.groups or ()),
        webhook_endpoint=webhook,
        attachments=tuple(attachments),
        copies=tuple(copies),
        deliveries=tuple(deliveries),
        variables=variables,
    )


def _check_rendering(
    subject: handlebars.Template | None,
    html: handlebars.Template | None,
    text: handlebars.Template | None,
    pre_text: handlebars.Template | None,
    deliveries: Sequence[Delivery],
    sources: Sequence[Sequence[tuple[str, Mapping[str, Any]]]],
    headers: Mapping[str, str],
    errors: _Errors,
) -> None:
    """Per copy: the subject's values are header-safe and it stays one line long; the rendered
    message fits :data:`MAX_MESSAGE_BYTES`. Counted, not rendered (``handlebars.rendered_size``)."""
    fixed = sum(len(k) + len(v) + 4 for k, v in headers.items())
    memo: dict[tuple[int, bool, bool], int] = {}
    subject_names = sorted(subject.names()) if subject is not None else []
    for delivery, layers in zip(deliveries, sources, strict=True):
        for path, layer in layers:
            for name in subject_names:
                value = handlebars.lookup(layer, name)
                if value is not None:
                    errors.unsafe_in(f"{path}.{name}", handlebars.as_text(value))
        fields = handlebars.Layers(*(layer for _path, layer in layers))
        if subject is not None:
            length = handlebars.rendered_size(subject, fields, escape=False, chars=True, memo=memo)
            if length > MAX_TEXT:
                errors.add(
                    "subject",
                    f"renders to {length} characters for {delivery.address}, over {MAX_TEXT}",
                )
        size = fixed + sum(
            handlebars.rendered_size(t, fields, escape=escape, memo=memo)
            for t, escape in ((subject, False), (html, True), (text, False), (pre_text, True))
            if t is not None
        )
        if size > MAX_MESSAGE_BYTES:
            errors.add(
                "to",
                f"the message for {delivery.address} renders to {size} bytes, over the"
                f" {MAX_MESSAGE_BYTES}-byte limit",
            )
        if len(errors.items) > 50:
            return
