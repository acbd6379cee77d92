"""The DSN parser on the bounce corpus (tests/corpus/bounces/dsn, MANIFEST.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.domain.classify import classify
from sendpost_platform.smtp.dsn import parse_dsn, parse_report

from tests.support.corpus import BOUNCES

CORPUS = BOUNCES

# (file, address) → why our hard/soft verdict differs from the manifest's label.
ACCEPTED_CLASS_MISSES = {
    ("dsn/sisimai-lhost-postfix-05.eml", "kijitora@example.org"): "450 4.1.1 user unknown: a "
    "4xx is never hard (SPEC); Sisimai calls it hard. Same line as responses.jsonl #1.",
}


def _manifest() -> list[dict[str, Any]]:
    path = CORPUS / "dsn" / "MANIFEST.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _entries() -> list[Any]:
    path = CORPUS / "dsn" / "MANIFEST.jsonl"
    if not path.exists():
        return []
    return [pytest.param(e, id=Path(e["file"]).stem) for e in _manifest()]


@pytest.mark.parametrize("entry", _entries())
def test_report_matches_the_manifest(entry: dict[str, Any]) -> None:
    """Each recipient's address, Action, Status and reply code match the manifest, in order;
    Final-Recipient too where the manifest states it; the format family matches."""
    report = parse_report((CORPUS / entry["file"]).read_bytes())
    expected = [
        (
            e["original_recipient"] or e["final_recipient"],
            e["action"],
            e["status"],
            int(e["smtp_code"]) if e["smtp_code"] else None,
        )
        for e in entry["recipients"]
    ]
    actual = [(r.address, r.action, r.status, r.smtp_code) for r in report.recipients]
    assert expected == actual
    for wanted, got in zip(entry["recipients"], report.recipients, strict=True):
        if wanted["final_recipient"] is not None:
            assert wanted["final_recipient"] == got.final_recipient
    assert entry["format"] == ("rfc3464" if report.format == "rfc3464" else "text")


@pytest.mark.parametrize("entry", _entries())
def test_parse_dsn_keeps_only_terminal_recipients(entry: dict[str, Any]) -> None:
    """parse_dsn drops Action: delayed (warnings) and keeps every failed recipient."""
    recipients = parse_dsn((CORPUS / entry["file"]).read_bytes())
    expected = [
        e["original_recipient"] or e["final_recipient"]
        for e in entry["recipients"]
        if e["terminal"]
    ]
    assert expected == [r.address for r in recipients]


def test_classification_of_dsn_recipients_matches_the_manifest() -> None:
    """Classifying each terminal recipient agrees with the manifest except the accepted misses."""
    misses = set()
    for entry in _manifest():
        recipients = parse_dsn((CORPUS / entry["file"]).read_bytes())
        labels = [e for e in entry["recipients"] if e["terminal"]]
        for recipient, label in zip(recipients, labels, strict=True):
            verdict = classify(
                smtp_code=recipient.smtp_code,
                enhanced_status=recipient.status,
                smtp_command=recipient.smtp_command,
                text=recipient.diagnostic,
            )
            if label["expected_class"] and verdict.hard != (label["expected_class"] == "hard"):
                misses.add((entry["file"], recipient.address))
    assert set(ACCEPTED_CLASS_MISSES) == misses


def test_postfix_command_context_is_taken_from_the_notification_text() -> None:
    """Postfix's '(in reply to end of DATA command)' becomes smtp_command DATA."""
    recipients = parse_dsn((CORPUS / "dsn" / "sisimai-lhost-postfix-03.eml").read_bytes())
    assert [r.smtp_command for r in recipients] == ["DATA"]


def test_returned_message_headers_are_available() -> None:
    """The original message's headers (e.g. Message-Id) can be read from the report."""
    report = parse_report((CORPUS / "dsn" / "sisimai-lhost-postfix-13.eml").read_bytes())
    assert report.returned_header("Message-Id") == "<20150213024748.CEEDB20C16@2jo.example.jp>"


def test_minimal_dsn_built_in_the_test() -> None:
    """A hand-made RFC 3464 report with a Sendpost header in the returned headers parses fully."""
    raw = (
        b"From: MAILER-DAEMON@mx.example\r\n"
        b"To: bounces+0b9d6c1e-0000-4000-8000-000000000001+7@sp-bounce.sender.example\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\nOriginal-Envelope-Id: env-1\r\n\r\n"
        b"Final-Recipient: rfc822; user@rcpt.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Remote-MTA: dns; in.rcpt.example\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
        b"Final-Recipient: rfc822; later@rcpt.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"X-Sendpost-Message-UUID: 0b9d6c1e-0000-4000-8000-000000000001\r\n\r\n"
        b"--b--\r\n"
    )
    report = parse_report(raw)
    assert (report.reporting_mta, report.original_envelope_id) == ("mx.example", "env-1")
    assert (
        report.returned_header("X-Sendpost-Message-UUID") == "0b9d6c1e-0000-4000-8000-000000000001"
    )
    [failed] = parse_dsn(raw)
    assert (
        failed.address,
        failed.status,
        failed.smtp_code,
        failed.diagnostic_type,
        failed.diagnostic,
        failed.remote_mta,
    ) == ("user@rcpt.example", "5.1.1", 550, "smtp", "550 5.1.1 no such user", "in.rcpt.example")


def test_not_a_bounce_gives_an_empty_report() -> None:
    """An ordinary message is no bounce: format unknown, no recipients."""
    report = parse_report(b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n")
    assert (report.format, report.recipients) == ("unknown", ())


@given(st.binary(max_size=2000))
def test_parse_report_never_raises(raw: bytes) -> None:
    """Arbitrary bytes never raise."""
    parse_report(raw)


@given(st.text(max_size=500))
def test_parse_report_never_raises_on_dsn_like_text(body: str) -> None:
    """A delivery-status part with arbitrary content never raises."""
    raw = (
        "Content-Type: multipart/report; boundary=x\n\n--x\n"
        "Content-Type: message/delivery-status\n\n" + body + "\n--x--\n"
    ).encode("utf-8", "surrogateescape")
    parse_report(raw)
