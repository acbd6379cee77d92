"""The send API's bodies as SendPost's SDK (3.0.0) defines them, with this platform's limits.

These models are both the first check of every request (``extra="forbid"``, strict types: a field
the platform does not know, or a value of the wrong type, is refused with 422 naming it) and the
request and response schemas ``/openapi.json`` publishes. Checks that need more than a type (an
address, a header, a template, a size) are in ``api/send_body.py``.

Two additions to SendPost's shape: top-level ``cc`` and ``bcc`` (copies sent once per request,
beside the per-recipient ones), and ``templateId``/``templateVariables`` also accepted on the
plain send (as on the template send). ``ampBody`` is in the schema so that it is refused by name
(422), not as an unknown field: this platform does not send AMP.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_RECIPIENTS = 1000
MAX_COPIES = 50
"""Per recipient, as the SDK's ``cc``/``bcc`` ``max_length``; also the cap on top-level lists."""
MAX_GROUPS = 20
MAX_GROUP_LENGTH = 100
MAX_ATTACHMENTS = 20
MAX_FILENAME = 255
MAX_PRETEXT = 200
MAX_SUBJECT = 998
MAX_URL = 2048

Name = Annotated[str, StringConstraints(max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class EmailAddress(_Body):
    """An address with an optional display name (``from``, ``replyTo``)."""

    email: str = Field(description="The address.")
    name: Name | None = Field(None, description="Display name, shown as `Name <email>`.")


class CopyTo(_Body):
    """A carbon or blind copy, with its own custom fields over the recipient's."""

    email: str
    name: Name | None = None
    customFields: dict[str, Any] | None = Field(
        None, description="Values for `{{name}}` placeholders in this copy (over the recipient's)."
    )


class Recipient(_Body):
    """One `to` recipient: its own copy of the message, with its own cc/bcc and custom fields."""

    email: str
    name: Name | None = None
    cc: Annotated[list[CopyTo], Field(max_length=MAX_COPIES)] | None = Field(
        None, description="Shown in this copy's Cc header; each gets the copy."
    )
    bcc: Annotated[list[CopyTo], Field(max_length=MAX_COPIES)] | None = Field(
        None, description="Each gets this copy; never shown in any header."
    )
    customFields: dict[str, Any] | None = Field(
        None,
        description="Values for `{{name}}` placeholders in subject, htmlBody, textBody and "
        "preText (HTML-escaped in HTML). `unsubscribe` is reserved (the unsubscribe link).",
    )


class Attachment(_Body):
    """A file: base64 content; the content type follows the filename's extension."""

    content: str = Field(description="Base64 (whitespace ignored).")
    filename: Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILENAME)]


Group = Annotated[str, StringConstraints(min_length=1, max_length=MAX_GROUP_LENGTH)]


class EmailMessageObject(_Body):
    """``POST /api/v1/subaccount/email/``."""

    from_: EmailAddress = Field(alias="from")
    replyTo: EmailAddress | None = None
    to: Annotated[list[Recipient], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    cc: Annotated[list[CopyTo], Field(max_length=MAX_COPIES)] | None = Field(
        None,
        description="(This platform) copies shown in every recipient's Cc header, sent once "
        "per request with the whole `to` list in their To header.",
    )
    bcc: Annotated[list[CopyTo], Field(max_length=MAX_COPIES)] | None = Field(
        None, description="(This platform) blind copies sent once per request."
    )
    subject: Annotated[str, StringConstraints(max_length=MAX_SUBJECT)] | None = None
    preText: Annotated[str, StringConstraints(max_length=MAX_PRETEXT)] | None = Field(
        None, description="Hidden preheader at the top of the HTML body (needs htmlBody)."
    )
    htmlBody: str | None = None
    textBody: str | None = None
    ampBody: str | None = Field(None, description="Refused (422): AMP is not sent here.")
    template: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="Name of a stored template; fields given here override its own."
    )
    templateId: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = Field(
        None, description="ID of a stored template (the `id` the template endpoints answer)."
    )
    templateVariables: dict[str, str] | None = Field(
        None, description="Values for placeholders in every copy (customFields win)."
    )
    ippool: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="Name of the IP pool (required here: there is no default pool)."
    )
    headers: dict[str, str] | None = None
    trackOpens: bool = True
    trackClicks: bool = True
    groups: Annotated[list[Group], Field(max_length=MAX_GROUPS)] | None = Field(
        None, description="Tags stored on each message (and so on its events)."
    )
    attachments: Annotated[list[Attachment], Field(max_length=MAX_ATTACHMENTS)] | None = None
    webhookEndpoint: Annotated[str, StringConstraints(max_length=MAX_URL)] | None = Field(
        None, description="http(s) URL for this message's events, stored on each message."
    )


class EmailMessageWithTemplate(EmailMessageObject):
    """``POST /api/v1/subaccount/email/template``: the same, with `template` or `templateId`."""


class EmailResponse(BaseModel):
    """One per recipient, in request order."""

    to: str
    submittedAt: int = Field(description="UNIX epoch time in nanoseconds.")
    messageId: str
    errorCode: int = Field(
        description="0 submitted; 1 invalid recipient; 2 suppressed; 3 sender domain has no "
        "verified return path."
    )
    message: str


class TemplateInput(_Body):
    """A template (create and update: update changes only the fields given)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    subject: Annotated[str, StringConstraints(max_length=MAX_SUBJECT)] | None = None
    htmlBody: str | None = None
    textBody: str | None = None


class TemplateUpdate(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    subject: Annotated[str, StringConstraints(max_length=MAX_SUBJECT)] | None = None
    htmlBody: str | None = None
    textBody: str | None = None


class Template(BaseModel):
    id: int
    name: str
    subject: str | None
    htmlBody: str | None
    textBody: str | None
    created: int = Field(description="UNIX epoch time in nanoseconds.")
    updated: int = Field(description="UNIX epoch time in nanoseconds.")


class TemplateDeleted(BaseModel):
    id: int
    message: str


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    EmailMessageObject,
    EmailMessageWithTemplate,
    TemplateInput,
    TemplateUpdate,
)
