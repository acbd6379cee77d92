"""The send API driven by SendPost's official SDK over real HTTP, checked in the bytes a loopback
SMTP server receives: per-recipient copies with cc/bcc, display names, rendered custom fields,
Reply-To, attachments, the preheader, headers, tracking, DKIM; the stored groups and webhook
endpoint; error codes, nanosecond times, templates and 422 answers. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import dkim as dkimpy
import pytest
import sendpost_python_sdk as sdk
import sqlalchemy as sa
from sendpost_platform.smtp import dkim
from sendpost_platform.store import domains, suppressions
from sendpost_platform.store.schema import messages
from sendpost_python_sdk.exceptions import ApiException

from tests.platform.sending.conftest import DOMAIN, SELECTOR, SendingSetup
from tests.platform.sending.dns_support import txt_lookup
from tests.platform.sending.sdk_support import SdkRig

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def rig(sending: SendingSetup) -> Iterator[SdkRig]:
    with SdkRig(sending) as running:
        yield running


def base_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": {"email": f"news@{DOMAIN}", "name": "Shop"},
        "to": [{"email": "accept-1@example.org"}],
        "subject": "Hello",
        "htmlBody": '<p>Hello <a href="https://shop.example/x">there</a></p>',
        "textBody": "Hello there",
        "ippool": "main",
        "trackOpens": False,
        "trackClicks": False,
    }
    body.update(changes)
    return body


def nanoseconds(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000


async def test_whole_message_through_the_sdk(rig: SdkRig) -> None:
    """Every field of one rich request shows in the received bytes: each `to` recipient gets its
    own copy (To with its display name, Cc with its cc list), cc and bcc get that copy, bcc is in
    no header of any message, custom fields render per copy (escaped in HTML, cc's own fields
    win), Reply-To, the preheader, a custom header, attachments decoded with their types; DKIM
    verifies on every message; groups and webhookEndpoint are stored on each message."""
    body = base_body(
        replyTo={"email": f"help@{DOMAIN}", "name": "Help Desk"},
        to=[
            {
                "email": "accept-ann@example.org",
                "name": "Ann Example",
                "customFields": {"firstName": "Tom & <Jerry>", "order": {"total": 42}},
                "cc": [
                    {
                        "email": "accept-carl@example.org",
                        "name": "Carl Copy",
                        "customFields": {"firstName": "Carl"},
                    }
                ],
                "bcc": [{"email": "accept-hidden@example.org", "name": "Hidden Person"}],
            },
            {
                "email": "accept-bob@example.org",
                "name": "Bob",
                "customFields": {"firstName": "Bob"},
            },
        ],
        subject="Hi {{firstName}}",
        preText="Your order {{order.total}}",
        htmlBody="<html><body><p>Dear {{firstName}}, total {{order.total}}{{missing}}.</p>"
        "</body></html>",
        textBody="Dear {{firstName}}, total {{order.total}}.",
        headers={"X-Campaign": "spring"},
        groups=["welcome", "q4"],
        webhookEndpoint="http://127.0.0.1:9/hook",
        attachments=[
            {"filename": "invoice.pdf", "content": b64(PDF)},
            {"filename": "logo.png", "content": b64(PNG)},
        ],
    )
    results = rig.send(body)
    assert [r.to for r in results] == [
        "accept-ann@example.org",
        "accept-carl@example.org",
        "accept-hidden@example.org",
        "accept-bob@example.org",
    ]
    now_ns = nanoseconds(rig.setup.clock.now())
    assert [(r.error_code, r.message, r.submitted_at) for r in results] == [
        (0, "Email submitted successfully", now_ns)
    ] * 4
    got = await rig.relay()
    assert sorted(got) == sorted(r.to for r in results)
    lookup = txt_lookup({f"{SELECTOR}._domainkey.{DOMAIN}": dkim.txt_record(rig.setup.key)})
    for received in got.values():
        assert dkimpy.verify(received.data, dnsfunc=lookup) is True
        assert b"accept-hidden" not in received.data.split(b"\r\n\r\n", 1)[0]
        assert received.parsed["Bcc"] is None
        assert received.parsed["Reply-To"] == f"Help Desk <help@{DOMAIN}>"
        assert received.parsed["X-Campaign"] == "spring"
        assert received.parsed["From"] == f"Shop <news@{DOMAIN}>"
        [pdf, png] = received.attachments()
        assert (pdf.get_content_type(), pdf.get_filename(), pdf.get_content()) == (
            "application/pdf",
            "invoice.pdf",
            PDF,
        )
        assert (png.get_content_type(), png.get_filename(), png.get_content()) == (
            "image/png",
            "logo.png",
            PNG,
        )
    ann = got["accept-ann@example.org"]
    assert ann.parsed["To"] == "Ann Example <accept-ann@example.org>"
    assert ann.parsed["Cc"] == "Carl Copy <accept-carl@example.org>"
    assert ann.parsed["Subject"] == "Hi Tom & <Jerry>"
    html = ann.text("text/html")
    assert "<p>Dear Tom &amp; &lt;Jerry&gt;, total 42.</p>" in html
    assert html.index("<body>") < html.index("display:none") < html.index("Your order 42")
    assert ann.text("text/plain").rstrip() == "Dear Tom & <Jerry>, total 42."
    carl = got["accept-carl@example.org"]
    assert (carl.parsed["To"], carl.parsed["Cc"], carl.parsed["Subject"]) == (
        "Ann Example <accept-ann@example.org>",
        "Carl Copy <accept-carl@example.org>",
        "Hi Carl",
    )
    hidden = got["accept-hidden@example.org"]
    assert (hidden.parsed["To"], hidden.parsed["Subject"]) == (
        "Ann Example <accept-ann@example.org>",
        "Hi Tom & <Jerry>",
    )
    bob = got["accept-bob@example.org"]
    assert (bob.parsed["To"], bob.parsed["Cc"], bob.parsed["Subject"]) == (
        "Bob <accept-bob@example.org>",
        None,
        "Hi Bob",
    )
    for result in results:
        stored = rig.details(result.message_id)
        assert (stored.groups, stored.webhook_endpoint) == (
            ["welcome", "q4"],
            "http://127.0.0.1:9/hook",
        )


async def test_top_level_cc_and_bcc_over_http(rig: SdkRig) -> None:
    """Top-level cc/bcc (outside the SDK's model, so sent over plain HTTP): each `to` copy shows
    the top-level cc in Cc; the top-level cc and bcc get one copy showing every `to`; the bcc
    address appears in no header."""
    body = base_body(
        to=[{"email": "accept-a@example.org", "name": "A"}, {"email": "accept-b@example.org"}],
        cc=[{"email": "accept-boss@example.org", "name": "Boss"}],
        bcc=[{"email": "accept-audit@example.org"}],
    )
    response = rig.http.post("/api/v1/subaccount/email/", json=body)
    assert response.status_code == 200, response.text
    assert [r["to"] for r in response.json()] == [
        "accept-a@example.org",
        "accept-b@example.org",
        "accept-boss@example.org",
        "accept-audit@example.org",
    ]
    got = await rig.relay()
    assert got["accept-a@example.org"].parsed["Cc"] == "Boss <accept-boss@example.org>"
    assert got["accept-a@example.org"].parsed["To"] == "A <accept-a@example.org>"
    for rcpt in ("accept-boss@example.org", "accept-audit@example.org"):
        assert got[rcpt].parsed["To"] == "A <accept-a@example.org>, accept-b@example.org"
        assert got[rcpt].parsed["Cc"] == "Boss <accept-boss@example.org>"
    for received in got.values():
        assert b"accept-audit" not in received.data.split(b"\r\n\r\n", 1)[0]


async def test_error_codes_are_sendposts(rig: SdkRig) -> None:
    """errorCode 1 for an invalid recipient, 2 for a suppressed one, 3 when the sender domain
    has no verified return path; each with its reason, none relayed."""
    with rig.setup.store.write() as conn:
        suppressions.add_suppression(
            conn,
            account_id=rig.setup.seed.account.account_id,
            subaccount_id=rig.setup.seed.account.subaccount_id,
            recipient="gone@example.org",
            reason="manual",
            now=rig.setup.clock.now(),
        )
    results = rig.send(
        base_body(
            to=[
                {"email": "bad address@x"},
                {"email": "gone@example.org"},
                {"email": "accept-1@example.org"},
            ]
        )
    )
    assert [(r.to, r.error_code) for r in results] == [
        ("bad address@x", 1),
        ("gone@example.org", 2),
        ("accept-1@example.org", 0),
    ]
    with rig.setup.store.write() as conn:
        domains.record_check(
            conn,
            rig.setup.domain.id,
            dkim_verified=False,
            return_path_verified=False,
            check={},
            now=rig.setup.clock.now(),
        )
    [result] = rig.send(base_body())
    assert (result.error_code, result.message) == (
        3,
        "No verified return path domain configured for sender domain",
    )
    got = await rig.relay()
    assert sorted(got) == ["accept-1@example.org"]


async def test_templates_by_name_and_id(rig: SdkRig) -> None:
    """A stored template is used by `template` (name) on either call and by `templateId` on the
    template call; templateVariables fill every copy, customFields win, the request's own
    subject overrides the template's."""
    created = rig.create_template(
        name="welcome",
        subject="Welcome {{firstName}} from {{city}}",
        htmlBody="<p>Hi {{firstName}} in {{city}}</p>",
        textBody="Hi {{firstName}} in {{city}}",
    )
    body = {
        "from": {"email": f"news@{DOMAIN}"},
        "to": [{"email": "accept-1@example.org", "customFields": {"firstName": "Ann"}}],
        "ippool": "main",
        "templateId": str(created["id"]),
        "templateVariables": {"city": "Oslo", "firstName": "nobody"},
    }
    rig.send_with_template(body)
    rig.send_with_template(
        {
            **body,
            "templateId": None,
            "template": "welcome",
            "to": [{"email": "accept-2@example.org"}],
        }
    )
    rig.send(
        {
            "from": {"email": f"news@{DOMAIN}"},
            "to": [{"email": "accept-3@example.org"}],
            "ippool": "main",
            "template": "welcome",
            "subject": "Own subject",
        }
    )
    got = await rig.relay()
    assert got["accept-1@example.org"].parsed["Subject"] == "Welcome Ann from Oslo"
    html = got["accept-1@example.org"].text("text/html")
    assert html.startswith("<p>Hi Ann in Oslo</p><img src=")  # the SDK turns tracking on
    assert got["accept-2@example.org"].parsed["Subject"] == "Welcome nobody from Oslo"
    assert got["accept-3@example.org"].parsed["Subject"] == "Own subject"
    assert got["accept-3@example.org"].text("text/plain").strip() == "Hi  in"


def test_template_endpoints(rig: SdkRig) -> None:
    """Create, list, read, update, delete; a second template by one name is 409; a bad
    placeholder is 422 naming the field; a missing template is 404, and 422 when a send names
    it."""
    created = rig.create_template(name="a", subject="S {{x}}", htmlBody="<p>{{x}}</p>")
    assert (created["name"], created["subject"], created["textBody"]) == ("a", "S {{x}}", None)
    assert rig.http.post("/api/v1/subaccount/template/", json={"name": "a"}).status_code == 409
    bad = rig.http.post("/api/v1/subaccount/template/", json={"name": "b", "htmlBody": "{{#if x}}"})
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "htmlBody")
    path = f"/api/v1/subaccount/template/{created['id']}"
    changed = rig.http.put(path, json={"textBody": "T {{x}}"}).json()
    assert (changed["subject"], changed["textBody"]) == ("S {{x}}", "T {{x}}")
    assert [t["name"] for t in rig.http.get("/api/v1/subaccount/template/").json()] == ["a"]
    assert rig.http.get(path).json()["textBody"] == "T {{x}}"
    assert rig.http.delete(path).json() == {
        "id": created["id"],
        "message": "Template deleted successfully",
    }
    assert rig.http.get(path).status_code == 404
    with pytest.raises(ApiException) as refused:
        rig.send_with_template({**base_body(), "templateId": str(created["id"])})
    assert refused.value.status == 422
    assert '"field":"templateId"' in str(refused.value.body).replace(" ", "")


REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "ampBody": ({"ampBody": "<html amp4email></html>"}, "ampBody"),
    "helper": ({"htmlBody": "{{#if vip}}VIP{{/if}}"}, "htmlBody"),
    "base64": (
        {"attachments": [{"filename": "a.bin", "content": "not base64!"}]},
        "attachments[0].content",
    ),
    "too many attachments": (
        {"attachments": [{"filename": f"{i}.txt", "content": "YQ=="} for i in range(21)]},
        "attachments",
    ),
    "attachments too large": (
        {"attachments": [{"filename": "big.bin", "content": b64(b"\0" * (10 * 1024 * 1024 + 1))}]},
        "attachments",
    ),
    "webhook scheme": ({"webhookEndpoint": "ftp://127.0.0.1/hook"}, "webhookEndpoint"),
    "preText without html": ({"htmlBody": None, "preText": "peek"}, "preText"),
    "reserved field": (
        {"to": [{"email": "accept-1@example.org", "customFields": {"unsubscribe": "x"}}]},
        "to[0].customFields.unsubscribe",
    ),
    "list field": (
        {"to": [{"email": "accept-1@example.org", "customFields": {"items": [1, 2]}}]},
        "to[0].customFields.items",
    ),
    "subject injection by a field": (
        {
            "subject": "Hi {{n}}",
            "to": [{"email": "accept-1@example.org", "customFields": {"n": "x\r\nBcc: a@b.c"}}],
        },
        "to[0].customFields.n",
    ),
    "platform header": (
        {"headers": {"List-Unsubscribe": "<mailto:x@y.z>"}},
        "headers.List-Unsubscribe",
    ),
    "no pool": ({"ippool": "nope"}, "ippool"),
    "too many placeholders": (
        {"htmlBody": "".join(f"{{{{v{i}}}}}" for i in range(1001))},
        "htmlBody",
    ),
    "sender": ({"from": {"email": "not-an-address"}}, "from.email"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_422_naming_the_field(rig: SdkRig, case: str) -> None:
    """What the platform cannot process is refused whole with 422 and the field's path, through
    the SDK (its ApiException carries the status and body); nothing is queued."""
    changes, field = REFUSALS[case]
    body = {k: v for k, v in base_body(**changes).items() if v is not None}
    with pytest.raises(ApiException) as refused:
        rig.send(body)
    assert refused.value.status == 422
    answer = json.loads(str(refused.value.body))
    assert field in [e["field"] for e in answer["errors"]], answer
    with rig.setup.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 0


def test_unknown_fields_are_422_over_http(rig: SdkRig) -> None:
    """A field outside the model (the SDK would drop it, so this goes over plain HTTP) is refused
    by name, nested ones too."""
    body = base_body(trackLinks=True, to=[{"email": "accept-1@example.org", "nickname": "x"}])
    response = rig.http.post("/api/v1/subaccount/email/", json=body)
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == ["to[0].nickname", "trackLinks"]


def test_webhook_endpoint_goes_through_the_egress_guard(sending: SendingSetup) -> None:
    """With private networks not allowed, a loopback webhookEndpoint is refused with the egress
    guard's reason (no relay is needed: it is checked at submission)."""
    settings = dataclasses.replace(sending.settings, allow_private_networks=False)
    strict = dataclasses.replace(sending, settings=settings)
    with SdkRig(strict) as rig, pytest.raises(ApiException) as refused:
        rig.send(base_body(webhookEndpoint="http://127.0.0.1:8080/hook"))
    assert refused.value.status == 422
    assert "loopback" in str(refused.value.body)


def test_openapi_publishes_the_send_schemas(sending: SendingSetup) -> None:
    """/openapi.json gives both send calls their request schema (every field of the SDK's model,
    unknown ones not allowed) and the EmailResponse list, and the template endpoints theirs."""
    document = sending.app().openapi()
    schemas = document["components"]["schemas"]
    for path, model in (
        ("/api/v1/subaccount/email/", sdk.EmailMessageObject),
        ("/api/v1/subaccount/email/template", sdk.EmailMessageWithTemplate),
    ):
        operation = document["paths"][path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        sdk_names = {info.alias or name for name, info in model.model_fields.items()}
        assert sdk_names <= set(schema["properties"])
        assert schema["additionalProperties"] is False
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer["items"]["$ref"] == "#/components/schemas/EmailResponse"
        assert {"400", "422"} <= set(operation["responses"])
    response_names = {info.alias or n for n, info in sdk.EmailResponse.model_fields.items()}
    assert response_names == set(schemas["EmailResponse"]["properties"])
    templates = document["paths"]["/api/v1/subaccount/template/"]
    assert templates["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/TemplateInput"
    )
    assert {"get", "post"} == set(templates)


async def test_shared_values_are_stored_once(rig: SdkRig) -> None:
    """templateVariables and a recipient's customFields are stored once per request and per
    copy, not once per recipient (a large value shared by 1,000 recipients must not be stored
    1,000 times), and still render in every copy."""
    shared, own = "S" * 5000, "O" * 5000
    to = [{"email": f"accept-{i}@example.org"} for i in range(5)]
    to[0] = {
        "email": "accept-0@example.org",
        "customFields": {"own": own},
        "bcc": [{"email": f"accept-b{j}@example.org"} for j in range(5)],
    }
    body = base_body(to=to, templateVariables={"shared": shared}, textBody="{{shared}}|{{own}}")
    # templateVariables is not in the SDK's EmailMessageObject (its template call has it)
    assert rig.http.post("/api/v1/subaccount/email/", json=body).status_code == 200
    with rig.setup.store.read() as conn:
        [content] = conn.execute(sa.text("SELECT content FROM send_requests")).scalars()
    stored = content if isinstance(content, str) else json.dumps(content)
    assert (stored.count(shared), stored.count(own)) == (1, 1)
    got = await rig.relay()
    assert got["accept-b4@example.org"].text("text/plain").strip() == f"{shared}|{own}"
    assert got["accept-4@example.org"].text("text/plain").strip() == f"{shared}|"
