"""Header injection: CR, LF and NUL are refused (422, naming the field) in every field that reaches
a header or the SMTP envelope, and what is accepted comes out as exactly the expected headers.

The first half posts hostile requests to the send API over ``httpx.ASGITransport``; the second
sends hostile but legitimate display names (Unicode line separators, quotes, commas, very long
names) through the API and the relay to a loopback SMTP server, then parses what arrived with the
standard library's email parser.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import time
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import dkim as dkimpy
import pytest
import sqlalchemy as sa
from sendpost_platform.domain import addresses
from sendpost_platform.domain.addresses import Mailbox, UnsafeHeader
from sendpost_platform.smtp import dkim
from sendpost_platform.smtp.prepare import DomainSigner, PrepareOptions, StoredMessage, prepare
from sendpost_platform.store.schema import messages

from tests.platform.sending.conftest import DOMAIN, SELECTOR, SendingSetup
from tests.platform.sending.dns_support import txt_lookup
from tests.platform.sending.test_send_api import post

HOSTILE = {
    "CRLF": "\r\nBcc: evil@evil.example",
    "LF": "\nBcc: evil@evil.example",
    "CR": "\rBcc: evil@evil.example",
    "NUL": "\0",
    "VT": "\x0bBcc: evil@evil.example",
    "FS": "\x1c",
}
"""Each suffix, appended to a field, must be refused; the key is how the error names it. VT and
FS (like FF, GS, RS) end a line for ``str.splitlines``, so they go with the other controls."""

EXPECTED_NAMES = {
    "CRLF": "CR and LF",
    "LF": "LF",
    "CR": "CR",
    "NUL": "NUL",
    "VT": "U+000B",
    "FS": "U+001C",
}


def base_body() -> dict[str, Any]:
    return {
        "from": {"email": f"news@{DOMAIN}", "name": "Shop"},
        "to": [{"email": "accept-1@example.org"}],
        "subject": "Hello",
        "textBody": "Hello there",
        "headers": {"X-Campaign": "spring"},
        "ippool": "main",
    }


def poisoned(field: str, suffix: str) -> dict[str, Any]:
    """The base body with ``suffix`` appended to the one field named (the API's own name)."""
    body = base_body()
    changes: dict[str, dict[str, Any]] = {
        "to[0].email": {"to": [{"email": f"accept-1@example.org{suffix}"}]},
        "to[1].email": {
            "to": [{"email": "accept-1@example.org"}, {"email": f"a2@example.org{suffix}"}]
        },
        "to[0].name": {"to": [{"email": "accept-1@example.org", "name": f"Bob{suffix}"}]},
        "to[0].cc[0].email": {
            "to": [{"email": "accept-1@example.org", "cc": [{"email": f"c@example.org{suffix}"}]}]
        },
        "to[0].bcc[0].name": {
            "to": [
                {
                    "email": "accept-1@example.org",
                    "bcc": [{"email": "b@example.org", "name": f"B{suffix}"}],
                }
            ]
        },
        "cc[0].email": {"cc": [{"email": f"accept-2@example.org{suffix}"}]},
        "cc[0].name": {"cc": [{"email": "accept-2@example.org", "name": f"Carol{suffix}"}]},
        "bcc[0].email": {"bcc": [{"email": f"accept-3@example.org{suffix}", "name": "D"}]},
        "from.email": {"from": {"email": f"news@{DOMAIN}{suffix}", "name": "Shop"}},
        "from.name": {"from": {"email": f"news@{DOMAIN}", "name": f"Shop{suffix}"}},
        "replyTo.email": {"replyTo": {"email": f"help@{DOMAIN}{suffix}"}},
        "replyTo.name": {"replyTo": {"email": f"help@{DOMAIN}", "name": f"Help{suffix}"}},
        "attachments[0].filename": {
            "attachments": [{"filename": f"a{suffix}.txt", "content": "YQ=="}]
        },
        "subject": {"subject": f"Hello{suffix}"},
        "headers.X-Campaign": {"headers": {"X-Campaign": f"spring{suffix}"}},
    }
    if field.startswith("headers.X-Campaign"):
        body.update(changes["headers.X-Campaign"])
    elif field.startswith("headers."):
        body["headers"] = {field.removeprefix("headers."): "value"}
    else:
        body.update(changes[field])
    return body


FIELDS = [
    "to[0].email",
    "to[1].email",
    "to[0].name",
    "to[0].cc[0].email",
    "to[0].bcc[0].name",
    "cc[0].email",
    "cc[0].name",
    "bcc[0].email",
    "from.email",
    "from.name",
    "replyTo.email",
    "replyTo.name",
    "attachments[0].filename",
    "subject",
    "headers.X-Campaign",
]


def stored_messages(setup: SendingSetup) -> int:
    with setup.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one())


@pytest.mark.parametrize("field", FIELDS)
async def test_unsafe_characters_refused_in_each_field(sending: SendingSetup, field: str) -> None:
    """CRLF, bare LF, bare CR, NUL and other controls in this field: 422, code
    ``header_injection``, one error naming exactly this field and the characters found; no
    message is created."""
    for label, suffix in HOSTILE.items():
        response = await post(sending, poisoned(field, suffix))
        assert (422, "header_injection") == (response.status_code, response.json()["code"]), label
        expected = [
            {
                "field": field,
                "message": f"contains {EXPECTED_NAMES[label]}, which may not appear in a header",
            }
        ]
        assert expected == response.json()["errors"], label
    assert 0 == stored_messages(sending)


async def test_unsafe_characters_in_a_header_name(sending: SendingSetup) -> None:
    """A custom header name with CR, LF, NUL or another control is refused with 422 naming it
    (not 400)."""
    for label, suffix in HOSTILE.items():
        name = f"X-A{suffix}"
        response = await post(sending, poisoned(f"headers.{name}", ""))
        assert 422 == response.status_code, label
        assert [f"headers.{name}"] == [e["field"] for e in response.json()["errors"]]
    assert 0 == stored_messages(sending)


async def test_every_unsafe_field_is_named_in_one_answer(sending: SendingSetup) -> None:
    """Several poisoned fields and an ordinary mistake: one 422 listing all of them."""
    body = poisoned("subject", "\r\n")
    body["cc"] = [{"email": "accept-2@example.org", "name": "C\nD"}]
    body["headers"] = {"Message-ID": "<x@y>"}
    response = await post(sending, body)
    assert 422 == response.status_code
    assert ["cc[0].name", "headers.Message-ID", "subject"] == sorted(
        e["field"] for e in response.json()["errors"]
    )


async def test_safe_request_still_accepted(sending: SendingSetup) -> None:
    """The same base body without poison is queued (so the 422s above are about the poison)."""
    response = await post(sending, base_body())
    assert 200 == response.status_code, response.text
    assert [0] == [r["errorCode"] for r in response.json()]


LONG_WORDS = " ".join(["Very"] + ["long"] * 45 + ["name"])
LONG_UNBROKEN = "N" * 250
NAMES = {
    "from": "Shop\u2028Bcc: evil@evil.example",
    "to1": "Bob\u0085To: evil@evil.example",
    "to2": LONG_UNBROKEN,
    "cc": 'Carol, "the boss" <evil@evil.example> (x)',
    "reply": LONG_WORDS,
}


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def display(message: EmailMessage, header: str) -> list[tuple[str, str]]:
    """The header's (display name, address) pairs. Names are decoded by ``email.header``, which
    follows RFC 2047 in ignoring the folding between adjacent encoded words (Python 3.11's
    ``headerregistry`` parser keeps a space there); the addresses come from the parsed header."""
    [raw] = [value for name, value in message.raw_items() if name == header]
    names = [str(make_header(decode_header(n))) for n, _ in email.utils.getaddresses([raw])]
    return list(zip(names, [a.addr_spec for a in message[header].addresses], strict=True))


async def test_hostile_names_come_out_as_exactly_the_expected_headers(
    sending: SendingSetup,
) -> None:
    """Unicode line separators (U+2028, U+0085), quotes, commas, angle brackets and very long
    names in display names: each message arrives with exactly the expected headers, once each,
    names decoding back to what was sent, every line within 998 octets and those of the address
    headers, subject and custom header within 78, a valid DKIM signature, and the envelope
    recipients are exactly the requested ones."""
    to = [
        {"email": "accept-1@example.org", "name": NAMES["to1"]},
        {"email": "accept-2@example.org", "name": NAMES["to2"]},
    ]
    results = await sending.send(
        **{
            "from": {"email": f"news@{DOMAIN}", "name": NAMES["from"]},
            "to": to,
            "cc": [{"email": "accept-3@example.org", "name": NAMES["cc"]}],
            "bcc": ["accept-4@example.org"],
            "replyTo": {"email": f"help@{DOMAIN}", "name": NAMES["reply"]},
            "subject": "Sale\u2028Bcc: evil@evil.example",
            "headers": {"X-Campaign": "spring\u0085X-Other: 1"},
        }
    )
    assert [0, 0, 0, 0] == [r["errorCode"] for r in results]
    job = sending.relay_job()
    assert 4 == await job.run_once()
    await job.close()
    received = {r.rcpt_tos[0]: r for r in sending.sink.received()}
    expected_rcpts = [f"accept-{i}@example.org" for i in (1, 2, 3, 4)]
    assert expected_rcpts == sorted(received)
    assert [[r] for r in expected_rcpts] == [list(received[r].rcpt_tos) for r in expected_rcpts]
    lookup = txt_lookup({f"{SELECTOR}._domainkey.{DOMAIN}": dkim.txt_record(sending.key)})
    header_names = [
        "DKIM-Signature",
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "X-Campaign",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "X-Sendpost-Message-UUID",
        "X-Sendpost-Account-ID",
        "X-Sendpost-SubAccount-ID",
        "X-Sendpost-TPSP-ID",
        "X-Sendpost-TPSP-Type",
        "MIME-Version",
        "Content-Type",
    ]
    all_to = [(NAMES["to1"], "accept-1@example.org"), (NAMES["to2"], "accept-2@example.org")]
    for rcpt, got in received.items():
        message = parsed(got.data)
        assert header_names == list(message.keys()), rcpt
        assert [(NAMES["from"], f"news@{DOMAIN}")] == display(message, "From")
        shown = [t for t in all_to if t[1] == rcpt] or all_to
        assert shown == display(message, "To")
        assert [(NAMES["cc"], "accept-3@example.org")] == display(message, "Cc")
        assert [(NAMES["reply"], f"help@{DOMAIN}")] == display(message, "Reply-To")
        assert "Sale\u2028Bcc: evil@evil.example" == message["Subject"]
        assert "spring\u0085X-Other: 1" == message["X-Campaign"]
        assert message["Bcc"] is None
        head = got.data.split(b"\r\n\r\n", 1)[0]
        assert [] == [line for line in head.split(b"\r\n") if len(line) > 998]
        written = [
            line
            for name, raw in message.raw_items()
            if name in ("From", "To", "Cc", "Reply-To", "Subject", "X-Campaign")
            for line in f"{name}: {raw}".split("\r\n")
        ]
        assert [] == [line for line in written if len(line) > 78]
        assert dkimpy.verify(got.data, dnsfunc=lookup) is True


SIGNER = DomainSigner(DOMAIN, SELECTOR, dkim.generate_key(dkim.DkimAlgorithm.ed25519))
OPTIONS = PrepareOptions(public_base_url="https://sp.example.net", tracking_secret=b"s")


def stored(**overrides: Any) -> StoredMessage:
    base: dict[str, Any] = {
        "uuid": "8a4c2a3e-5a38-4d6f-9a8e-0c1b2d3e4f50",
        "account_id": "7",
        "subaccount_id": "11",
        "provider_id": "3",
        "recipient": "bob@example.org",
        "from_email": f"news@{DOMAIN}",
        "subject": "Hello",
        "submitted_at": dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC),
        "to": (Mailbox("bob@example.org"),),
        "text_body": "Hi",
    }
    return StoredMessage(**(base | overrides))


@pytest.mark.parametrize("suffix", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize(
    "field",
    ["from_name", "to_name", "cc_email", "reply_name", "subject", "header", "recipient"],
)
def test_preparation_refuses_what_the_api_would(suffix: str, field: str) -> None:
    """Defence in depth: a stored message carrying CR, LF or NUL in a name, an address, the
    subject, a custom header or the envelope recipient (e.g. queued before the API refused them)
    is never written; preparation raises ``UnsafeHeader`` (a ValueError: the relay drops it)."""
    changes: dict[str, dict[str, Any]] = {
        "from_name": {"from_name": f"Shop{suffix}"},
        "to_name": {"to": (Mailbox("bob@example.org", f"Bob{suffix}"),)},
        "cc_email": {"cc": (Mailbox(f"carol@example.org{suffix}"),)},
        "reply_name": {"reply_to": Mailbox(f"help@{DOMAIN}", f"Help{suffix}")},
        "subject": {"subject": f"Hello{suffix}"},
        "header": {"headers": {"X-Campaign": f"spring{suffix}"}},
        "recipient": {"recipient": f"bob@example.org{suffix}"},
    }
    with pytest.raises(UnsafeHeader):
        prepare(stored(**changes[field]), SIGNER, OPTIONS)


def test_long_names_are_folded() -> None:
    """A long display name with spaces is folded at 78 columns and unfolds back to itself; a
    long non-ASCII one becomes RFC 2047 encoded words on folded lines."""
    accented = " ".join(["Zoë"] * 80)
    out = prepare(
        stored(from_name=LONG_WORDS, to=(Mailbox("bob@example.org", accented),), reply_to=None),
        SIGNER,
        OPTIONS,
    )
    head = out.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    from_lines = head.split("\r\nFrom: ", 1)[1].split("\r\nTo: ", 1)[0].split("\r\n")
    to_lines = head.split("\r\nTo: ", 1)[1].split("\r\nSubject: ", 1)[0].split("\r\n")
    assert len(from_lines) > 1
    assert len(to_lines) > 1
    assert [] == [line for line in from_lines + to_lines if len(line) > 78]
    assert all(line.startswith(" ") for line in from_lines[1:] + to_lines[1:])
    assert "=?utf-8?" in to_lines[1]
    message = parsed(out.data)
    assert [(LONG_WORDS, f"news@{DOMAIN}")] == display(message, "From")
    assert [(accented, "bob@example.org")] == display(message, "To")
    assert ("bob@example.org",) == out.recipients


async def test_address_strings_are_one_mailbox_each(sending: SendingSetup) -> None:
    """An ``email`` holding a display name or two addresses is one invalid recipient (errorCode
    1), dropped, never split into two (the name goes in ``name``); a ``Reply-To`` custom header
    is refused (``replyTo`` is the field)."""
    results = await sending.send(
        to=[
            {"email": "accept-1@example.org", "name": "Ann Example"},
            {"email": "Bob <accept-3@example.org>"},
            {"email": "accept-2@example.org, evil@evil.example"},
        ],
    )
    assert [
        ("accept-1@example.org", 0),
        ("Bob <accept-3@example.org>", 1),
        ("accept-2@example.org, evil@evil.example", 1),
    ] == [(r["to"], r["errorCode"]) for r in results]
    job = sending.relay_job()
    assert 1 == await job.run_once()
    await job.close()
    [got] = sending.sink.received()
    assert ["accept-1@example.org"] == list(got.rcpt_tos)
    assert [("Ann Example", "accept-1@example.org")] == display(parsed(got.data), "To")
    refused = await post(sending, base_body() | {"headers": {"Reply-To": "x@example.org"}})
    assert 422 == refused.status_code
    assert ["headers.Reply-To"] == [e["field"] for e in refused.json()["errors"]]


async def test_lengths_are_bounded_before_any_folding(sending: SendingSetup) -> None:
    """Folding costs more than linear time, so lengths are capped first: a subject or header
    value over 998 characters, a header name over 76 and a display name over 256 are each named
    in a 422 (the lengths the model bounds in one, the header ones in the next); at the limits
    the request is accepted."""
    over = base_body() | {
        "subject": "é" * 999,
        "to": [{"email": "accept-1@example.org", "name": "N" * 257}],
        "cc": [{"email": "accept-2@example.org", "name": "N" * 257}],
    }
    response = await post(sending, over)
    assert 422 == response.status_code
    expected = ["subject", "to[0].name", "cc[0].name"]
    assert sorted(expected) == sorted(e["field"] for e in response.json()["errors"])
    over = base_body() | {"headers": {"X-Long": "v" * 999, "X-" + "n" * 75: "v"}}
    response = await post(sending, over)
    assert 422 == response.status_code
    expected = ["headers.X-Long", "headers.X-" + "n" * 75]
    assert sorted(expected) == sorted(e["field"] for e in response.json()["errors"])
    at_limit = base_body() | {
        "subject": "é" * 998,
        "headers": {"X-Long": "v " * 499, "X-" + "n" * 74: "v"},
        "to": [{"email": "accept-1@example.org", "name": "N" * 256}],
    }
    response = await post(sending, at_limit)
    assert 200 == response.status_code, response.text
    job = sending.relay_job()
    assert 1 == await job.run_once()
    await job.close()
    [got] = sending.sink.received()
    message = parsed(got.data)
    assert ("é" * 998, "v " * 499) == (message["Subject"], message["X-Long"])
    assert [("N" * 256, "accept-1@example.org")] == display(message, "To")


def test_writing_address_headers_costs_linear_time() -> None:
    """A Cc of 1,000 recipients with the longest non-ASCII display names (the worst case the API
    accepts) is written, and parses back, in well under 10 s (measured ~0.5 s; folding with
    ``email.headerregistry`` took ~0.17 s per name, ~170 s here), and twice the names cost
    about twice the time, not four times."""
    name = ("Zoë é " * 50)[: addresses.MAX_NAME]

    def timed(count: int, run: int) -> float:
        """Seconds to write the header; each run has its own addresses (nothing cached)."""
        boxes = [Mailbox(f"user{i}-{run}@example.org", name) for i in range(count)]
        start = time.perf_counter()
        header = addresses.address_header("Cc", boxes)
        elapsed = time.perf_counter() - start
        assert count == len(email.utils.getaddresses([header.removeprefix("Cc:")]))
        return elapsed

    small = min(timed(500, run) for run in range(2))
    large = min(timed(1000, run) for run in range(2, 4))
    assert large < 10.0
    assert large < 4 * small + 0.5
