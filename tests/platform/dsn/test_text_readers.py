"""The readers for bounces without a delivery-status part (smtp/text_readers.py, issue 14), on
real emails of Sisimai's set: which reader takes each, and what it reads per recipient."""

from __future__ import annotations

import pytest
from sendpost_platform.smtp.dsn import parse_report

from tests.support.adversarial import DSN_SHAPES
from tests.support.corpus import BOUNCES

EML = BOUNCES / "sisimai" / "eml"


def _read(name: str) -> tuple[str, list[tuple[str | None, str, str | None, int | None]]]:
    report = parse_report((EML / name).read_bytes())
    return report.format, [(r.address, r.action, r.status, r.smtp_code) for r in report.recipients]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "lhost-dragonfly-01.eml",
            ("dragonfly", [("pseudo-local-part@google.example.com", "failed", "5.7.26", 550)]),
        ),
        (
            "lhost-gmail-01.eml",
            ("gmail-text", [("userunknown@example.jp", "failed", "5.1.1", None)]),
        ),
        (
            "lhost-amazonworkmail-01.eml",
            ("embedded-rfc3464", [("kijitora@example.jp", "failed", "5.1.1", 550)]),
        ),
        # Sendmail V5 transcript: four recipients, the sender's own address left out.
        (
            "lhost-v5sendmail-05.eml",
            (
                "sendmail-v5",
                [
                    ("kijitora@example.edu", "failed", None, 550),
                    ("kuroneko@example.or.jp", "failed", None, 550),
                    ("kijitora@example.org", "failed", None, 550),
                    ("mikeneko@example.co.jp", "failed", None, 550),
                ],
            ),
        ),
        # Google Groups names the group in X-Failed-Recipients only.
        (
            "lhost-googlegroups-01.eml",
            ("googlegroups", [("libsisimai@googlegroups.com", "failed", None, None)]),
        ),
        # Not bounces: an auto-reply and a feedback report give nothing.
        ("rfc3834-01.eml", ("unknown", [])),
        ("arf-01.eml", ("unknown", [])),
    ],
)
def test_each_reader_reads_its_format(
    name: str, expected: tuple[str, list[tuple[str | None, str, str | None, int | None]]]
) -> None:
    """The reader chosen for a real email, and the address, action, status and reply code it
    reads for each recipient (in order)."""
    assert expected == _read(name)


def test_the_dragonfly_reader_knows_the_command() -> None:
    """DragonFly's "did not like our final DATA" gives the command DATA."""
    report = parse_report((EML / "lhost-dragonfly-01.eml").read_bytes())
    assert ["DATA"] == [r.smtp_command for r in report.recipients]


@pytest.mark.parametrize(
    "shape",
    [
        "text bounce: an address per line",
        "text bounce: RFC 3464 fields pasted, repeated",
        "old Gmail: address lines, then one long reply",
    ],
)
def test_a_text_reader_keeps_at_most_100_recipients(shape: str) -> None:
    """However many addresses a text bounce lists, at most 100 records come out (each may become
    a stored event when none names the message's recipient)."""
    report = parse_report(DSN_SHAPES[shape](64 * 1024))
    assert 100 == len(report.recipients)
