"""No silent loss: every field of every request model of the SDK's EmailApi is either honoured
(visible in the bytes the SMTP server receives, or on the stored message) or refused with 422
naming it. The fields are enumerated from the SDK's pydantic models, so a field a new SDK adds
has no probe and fails :func:`test_every_sdk_field_has_a_probe`."""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest
import sendpost_python_sdk as sdk
from sendpost_python_sdk.exceptions import ApiException

from tests.platform.sending.conftest import DOMAIN, SendingSetup
from tests.platform.sending.sdk_support import Received, SdkRig

REQUEST_MODELS = (sdk.EmailMessageObject, sdk.EmailMessageWithTemplate)
"""The bodies of EmailApi.send_email and EmailApi.send_email_with_template."""


def _models_in(annotation: Any) -> Iterator[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)
    for meta in getattr(annotation, "__metadata__", ()):
        yield from _models_in(meta)


def sdk_fields() -> set[tuple[str, str]]:
    """(model, JSON name) for every field reachable from the EmailApi request models."""
    found: set[tuple[str, str]] = set()
    todo = list(REQUEST_MODELS)
    seen: set[type[pydantic.BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            found.add((model.__name__, info.alias or name))
            todo.extend(_models_in(info.annotation))
    return found


@pytest.fixture
def rig(sending: SendingSetup) -> Iterator[SdkRig]:
    with SdkRig(sending) as running:
        yield running


class Outcome:
    """What one probe's send produced: the answers, the received messages, the stored rows."""

    def __init__(self, rig: SdkRig, results: list[Any], got: dict[str, Received]) -> None:
        self.rig = rig
        self.results = results
        self.got = got

    @property
    def one(self) -> Received:
        assert len(self.got) == 1, sorted(self.got)
        return next(iter(self.got.values()))


Probe = Callable[[dict[str, Any]], Callable[[Outcome], None] | str]
"""Changes the body; returns the check of an accepted send, or the field a 422 must name."""


def _body(template: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": {"email": f"news@{DOMAIN}"},
        "to": [{"email": "accept-1@example.org"}],
        "ippool": "main",
        "trackOpens": False,
        "trackClicks": False,
    }
    if template:
        body["template"] = "probe"
    else:
        body.update(subject="Plain", textBody="plain text", htmlBody="<p>plain</p>")
    return body


def _header(name: str, expected: str | None) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert outcome.one.parsed[name] == expected

    return check


def _html_contains(text: str) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert text in outcome.one.text("text/html")

    return check


def p_from(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["from"] = {"email": f"probe@{DOMAIN}", "name": "Probe Sender"}

    def check(outcome: Outcome) -> None:
        assert outcome.one.parsed["From"] == f"Probe Sender <probe@{DOMAIN}>"
        assert outcome.one.mail_from.endswith(f"@sp-bounce.{DOMAIN}")

    return check


def p_reply_to(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["replyTo"] = {"email": f"help@{DOMAIN}", "name": "Help"}
    return _header("Reply-To", f"Help <help@{DOMAIN}>")


def p_to(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [{"email": "accept-a@example.org"}, {"email": "accept-b@example.org"}]

    def check(outcome: Outcome) -> None:
        assert {r: m.parsed["To"] for r, m in outcome.got.items()} == {
            "accept-a@example.org": "accept-a@example.org",
            "accept-b@example.org": "accept-b@example.org",
        }

    return check


def p_subject(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["subject"] = "Probe subject"
    return _header("Subject", "Probe subject")


def p_pre_text(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["preText"] = "Peek inside"
    return _html_contains("Peek inside</div>")


def p_html(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["htmlBody"] = "<p>Probe HTML</p>"
    return _html_contains("<p>Probe HTML</p>")


def p_text(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["textBody"] = "Probe text"

    def check(outcome: Outcome) -> None:
        assert outcome.one.text("text/plain").strip() == "Probe text"

    return check


def p_amp(body: dict[str, Any]) -> str:
    body["ampBody"] = "<!doctype html><html amp4email></html>"
    return "ampBody"


def p_template(body: dict[str, Any]) -> Callable[[Outcome], None]:
    for key in ("subject", "textBody", "htmlBody"):
        body.pop(key, None)
    body["template"] = "probe"
    return _header("Subject", "Template subject")


def p_template_id(body: dict[str, Any]) -> str | Callable[[Outcome], None]:
    body.pop("template", None)
    body["templateId"] = "{probe_id}"
    return _header("Subject", "Template subject")


def p_template_variables(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["htmlBody"] = "<p>City {{city}}</p>"
    body["templateVariables"] = {"city": "Oslo"}
    return _html_contains("<p>City Oslo</p>")


def p_ippool(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["ippool"] = "main"

    def check(outcome: Outcome) -> None:
        provider = outcome.rig.setup.provider_id
        assert outcome.one.parsed["X-Sendpost-TPSP-ID"] == str(provider)

    return check


def p_headers(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["headers"] = {"X-Probe": "yes"}
    return _header("X-Probe", "yes")


def p_track_opens(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["trackOpens"] = True
    return _html_contains("/track/tpsp/open/")


def p_track_clicks(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["trackClicks"] = True
    body["htmlBody"] = '<p><a href="https://shop.example/p">link</a></p>'
    return _html_contains('href="https://sp.example.net/track/tpsp/click/')


def p_groups(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["groups"] = ["probe-group"]

    def check(outcome: Outcome) -> None:
        assert outcome.rig.details(outcome.results[0].message_id).groups == ["probe-group"]

    return check


def p_attachments(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["attachments"] = [
        {"filename": "probe.csv", "content": base64.b64encode(b"a,b\n").decode()}
    ]

    def check(outcome: Outcome) -> None:
        [part] = outcome.one.attachments()
        assert (part.get_content_type(), part.get_filename(), part.get_content()) == (
            "text/csv",
            "probe.csv",
            "a,b\n",
        )

    return check


def p_webhook(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["webhookEndpoint"] = "https://127.0.0.1:8443/probe"

    def check(outcome: Outcome) -> None:
        stored = outcome.rig.details(outcome.results[0].message_id)
        assert stored.webhook_endpoint == "https://127.0.0.1:8443/probe"

    return check


def p_address_email(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["replyTo"] = {"email": f"only-address@{DOMAIN}"}
    return _header("Reply-To", f"only-address@{DOMAIN}")


def p_address_name(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["from"] = {"email": f"news@{DOMAIN}", "name": "Named Sender"}
    return _header("From", f"Named Sender <news@{DOMAIN}>")


def p_recipient_email(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [{"email": "accept-probe@example.org"}]

    def check(outcome: Outcome) -> None:
        assert sorted(outcome.got) == ["accept-probe@example.org"]

    return check


def p_recipient_name(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [{"email": "accept-1@example.org", "name": "Probe Name"}]
    return _header("To", "Probe Name <accept-1@example.org>")


def p_recipient_cc(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [{"email": "accept-1@example.org", "cc": [{"email": "accept-cc@example.org"}]}]

    def check(outcome: Outcome) -> None:
        assert sorted(outcome.got) == ["accept-1@example.org", "accept-cc@example.org"]
        assert {m.parsed["Cc"] for m in outcome.got.values()} == {"accept-cc@example.org"}

    return check


def p_recipient_bcc(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [{"email": "accept-1@example.org", "bcc": [{"email": "accept-bcc@example.org"}]}]

    def check(outcome: Outcome) -> None:
        assert sorted(outcome.got) == ["accept-1@example.org", "accept-bcc@example.org"]
        for message in outcome.got.values():
            assert b"accept-bcc" not in message.data.split(b"\r\n\r\n", 1)[0]

    return check


def p_recipient_fields(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [{"email": "accept-1@example.org", "customFields": {"v": "<b>"}}]
    body["htmlBody"] = "<p>V={{v}}</p>"
    return _html_contains("<p>V=&lt;b&gt;</p>")


def p_copy_email(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [{"email": "accept-1@example.org", "cc": [{"email": "accept-copy@example.org"}]}]

    def check(outcome: Outcome) -> None:
        assert "accept-copy@example.org" in outcome.got

    return check


def p_copy_name(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [
        {"email": "accept-1@example.org", "cc": [{"email": "accept-c@example.org", "name": "C C"}]}
    ]

    def check(outcome: Outcome) -> None:
        assert outcome.got["accept-1@example.org"].parsed["Cc"] == "C C <accept-c@example.org>"

    return check


def p_copy_fields(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["to"] = [
        {
            "email": "accept-1@example.org",
            "customFields": {"v": "main"},
            "bcc": [{"email": "accept-c@example.org", "customFields": {"v": "copy"}}],
        }
    ]
    body["htmlBody"] = "<p>V={{v}}</p>"

    def check(outcome: Outcome) -> None:
        assert "<p>V=main</p>" in outcome.got["accept-1@example.org"].text("text/html")
        assert "<p>V=copy</p>" in outcome.got["accept-c@example.org"].text("text/html")

    return check


def p_attachment_content(body: dict[str, Any]) -> Callable[[Outcome], None]:
    data = bytes(range(256))
    body["attachments"] = [{"filename": "blob.bin", "content": base64.b64encode(data).decode()}]

    def check(outcome: Outcome) -> None:
        [part] = outcome.one.attachments()
        assert part.get_content() == data

    return check


def p_attachment_filename(body: dict[str, Any]) -> Callable[[Outcome], None]:
    body["attachments"] = [{"filename": "Résumé 2024.pdf", "content": "JVBERi0="}]

    def check(outcome: Outcome) -> None:
        [part] = outcome.one.attachments()
        assert (part.get_filename(), part.get_content_type()) == (
            "Résumé 2024.pdf",
            "application/pdf",
        )

    return check


_SHARED: dict[str, Probe] = {
    "from": p_from,
    "replyTo": p_reply_to,
    "to": p_to,
    "subject": p_subject,
    "preText": p_pre_text,
    "htmlBody": p_html,
    "textBody": p_text,
    "ampBody": p_amp,
    "template": p_template,
    "ippool": p_ippool,
    "headers": p_headers,
    "trackOpens": p_track_opens,
    "trackClicks": p_track_clicks,
    "groups": p_groups,
    "attachments": p_attachments,
    "webhookEndpoint": p_webhook,
}
PROBES: dict[tuple[str, str], Probe] = {
    **{("EmailMessageObject", k): v for k, v in _SHARED.items()},
    **{("EmailMessageWithTemplate", k): v for k, v in _SHARED.items()},
    ("EmailMessageWithTemplate", "templateId"): p_template_id,
    ("EmailMessageWithTemplate", "templateVariables"): p_template_variables,
    ("EmailAddress", "email"): p_address_email,
    ("EmailAddress", "name"): p_address_name,
    ("Recipient", "email"): p_recipient_email,
    ("Recipient", "name"): p_recipient_name,
    ("Recipient", "cc"): p_recipient_cc,
    ("Recipient", "bcc"): p_recipient_bcc,
    ("Recipient", "customFields"): p_recipient_fields,
    ("CopyTo", "email"): p_copy_email,
    ("CopyTo", "name"): p_copy_name,
    ("CopyTo", "customFields"): p_copy_fields,
    ("Attachment", "content"): p_attachment_content,
    ("Attachment", "filename"): p_attachment_filename,
}


def test_every_sdk_field_has_a_probe() -> None:
    """The probes cover exactly the fields of the SDK's EmailApi request models."""
    assert sorted(PROBES) == sorted(sdk_fields())


@pytest.mark.slow
@pytest.mark.parametrize("field", sorted(PROBES), ids=lambda f: ".".join(f))
async def test_sdk_field_is_honoured_or_refused(rig: SdkRig, field: tuple[str, str]) -> None:
    """One request through the SDK with the field set: the effect shows in the received bytes
    or the stored message, or the answer is 422 naming the field (and nothing is sent)."""
    template = rig.create_template(
        name="probe", subject="Template subject", textBody="template text", htmlBody="<p>t</p>"
    )
    with_template = field[0] != "EmailMessageObject"
    body = _body(with_template)
    expectation = PROBES[field](body)
    if body.get("templateId") == "{probe_id}":
        body["templateId"] = str(template["id"])
    model = sdk.EmailMessageWithTemplate if with_template else sdk.EmailMessageObject
    request = model.from_dict(body)
    assert request is not None
    sent = rig.email.send_email_with_template if with_template else rig.email.send_email
    if isinstance(expectation, str):
        with pytest.raises(ApiException) as refused:
            sent(request)  # type: ignore[arg-type]
        assert refused.value.status == 422
        answer = json.loads(str(refused.value.body))
        assert expectation in [e["field"] for e in answer["errors"]]
        assert await rig.relay() == {}
        return
    results = sent(request)  # type: ignore[arg-type]
    assert [r.error_code for r in results] == [0] * len(results)
    expectation(Outcome(rig, results, await rig.relay()))
