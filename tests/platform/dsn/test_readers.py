"""The bounce readers of smtp/readers/ (issue 14), on real emails of Sisimai's set: which reader
takes each, and what it extracts per recipient; the registry's order and its documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sendpost_platform.smtp.dsn import parse_report
from sendpost_platform.smtp.readers import READERS, Bounce, Reader
from sendpost_platform.smtp.readers.notification import Notification
from sendpost_platform.smtp.readers.rfc3464 import Rfc3464

from tests.support.adversarial import DSN_SHAPES
from tests.support.corpus import BOUNCES

EML = BOUNCES / "sisimai" / "eml"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "bounces.md"

Record = tuple[str | None, str, str | None, int | None, str | None]

CASES: list[tuple[str, str, list[Record]]] = [
    ("lhost-postfix-01.eml", "rfc3464", [("kijitora@example.org", "failed", "5.1.1", None, None)]),
    # Exim: a bare local part, completed from the copy's Received: ... for
    (
        "lhost-exim-04.eml",
        "exim",
        [("kijitora@example.ed.jp", "failed", "5.7.0", 550, "MAIL FROM")],
    ),
    # Exim's delay warning: delayed, not stored
    (
        "lhost-exim-38.eml",
        "exim",
        [("kijitora@example.co.jp", "delayed", "4.0.0", None, "MAIL FROM")],
    ),
    # MXLogic: '<rcpt>: reply' on the address line
    ("lhost-mxlogic-01.eml", "exim", [("kijitora@example.co.jp", "failed", "5.1.1", 550, None)]),
    (
        "lhost-qmail-02.eml",
        "qmail",
        [
            ("userunknown@example.jp", "failed", "5.1.1", 550, None),
            ("filtered@example.jp", "failed", "5.2.1", 550, None),
        ],
    ),
    (
        "lhost-amazonworkmail-01.eml",
        "embedded-rfc3464",
        [("kijitora@example.jp", "failed", "5.1.1", 550, None)],
    ),
    (
        "lhost-dragonfly-01.eml",
        "dragonfly",
        [("pseudo-local-part@google.example.com", "failed", "5.7.26", 550, "DATA")],
    ),
    (
        "lhost-gmail-01.eml",
        "gmail-text",
        [("userunknown@example.jp", "failed", "5.1.1", None, None)],
    ),
    (
        "lhost-exchange2003-01.eml",
        "exchange2003",
        [("kijitora@example.jp", "failed", None, None, None)],
    ),
    ("lhost-domino-01.eml", "domino", [("kijitora@example.jp", "failed", None, None, None)]),
    ("lhost-notes-03.eml", "notes", [("kijitora@example.com", "failed", None, None, None)]),
    # a reply to MAIL FROM: about our sender
    ("lhost-yahoo-11.eml", "yahoo", [("kijitora@example.jp", "failed", "5.1.8", 501, "MAIL FROM")]),
    # Sendmail V5: four recipients, the sender's own address left out
    (
        "lhost-v5sendmail-05.eml",
        "sendmail-v5",
        [
            ("kijitora@example.edu", "failed", None, 550, None),
            ("kuroneko@example.or.jp", "failed", None, 550, None),
            ("kijitora@example.org", "failed", None, 550, None),
            ("mikeneko@example.co.jp", "failed", None, 550, "RCPT TO"),
        ],
    ),
    # a Sendmail bounce forwarded with '> ' quoting; '>>> DATA' gives no command (PIPELINING)
    (
        "lhost-sendmail-14.eml",
        "sendmail-v5",
        [("kijitora@example.com", "failed", "5.1.1", 550, None)],
    ),
    (
        "lhost-postfix-34.eml",
        "postfix-text",
        [("kijitora@example.com", "failed", None, None, None)],
    ),
    # the Postfix SMTP server's 'errors from' transcript
    (
        "lhost-postfix-75.eml",
        "postfix-text",
        [("kijitora@libsisimai.net", "failed", "4.3.0", 451, "DATA")],
    ),
    (
        "lhost-office365-01.eml",
        "office365",
        [("kijitora@example.com", "failed", "5.1.10", 550, None)],
    ),
    (
        "lhost-opensmtpd-01.eml",
        "opensmtpd",
        [("apdugoaidugoaidugoaeiudggadi@gmail.com", "failed", "5.1.1", 550, None)],
    ),
    (
        "lhost-gmx-03.eml",
        "gmx",
        [
            ("mikeneko@example.co.jp", "failed", "5.2.1", None, "RCPT TO"),
            ("sabineko@example.co.jp", "failed", "5.2.2", None, "RCPT TO"),
        ],
    ),
    # Google Groups names the group in X-Failed-Recipients only
    (
        "lhost-googlegroups-01.eml",
        "googlegroups",
        [("libsisimai@googlegroups.com", "failed", None, None, None)],
    ),
    (
        "lhost-googleworkspace-01.eml",
        "google",
        [("neko-nyaan-cat-meeting@google-groups.example.com", "failed", None, None, None)],
    ),
    (
        "lhost-imailserver-03.eml",
        "imailserver",
        [("kijitora@neko.example.co.jp", "failed", None, None, None)],
    ),
    ("lhost-zoho-01.eml", "zoho", [("kijitora@example.co.jp", "failed", "5.1.1", 550, None)]),
    ("lhost-mfilter-01.eml", "mfilter", [("kijitora@example.com", "failed", None, 550, "DATA")]),
    (
        "lhost-kddi-01.eml",
        "kddi",
        [("kijitora@x0000000000000.dion.ne.jp", "failed", None, None, None)],
    ),
    (
        "lhost-ezweb-08.eml",
        "ezweb",
        [("kijitora-neko-nyaan-22222-cats@hotmail.com", "failed", None, 550, "MAIL FROM")],
    ),
    # the reason is written before the recipients
    (
        "lhost-mailmarshal-02.eml",
        "mailmarshal",
        [("kijitora@nyaan.example.com", "failed", "5.1.1", 550, None)],
    ),
    (
        "lhost-trendmicro-01.eml",
        "trendmicro",
        [("kijitora@example.co.jp", "failed", "5.1.1", 550, "RCPT TO")],
    ),
    (
        "lhost-biglobe-01.eml",
        "biglobe",
        [("postmaster@mxr.biglobe.ne.jp", "failed", None, None, None)],
    ),
    (
        "lhost-einsundeins-02.eml",
        "einsundeins",
        [("kijitora@example.org", "failed", None, None, None)],
    ),
    (
        "lhost-mailfoundry-01.eml",
        "mailfoundry",
        [("kijitora@example.org", "failed", None, 550, None)],
    ),
    ("lhost-verizon-01.eml", "verizon", [("0000000000@vzwpix.com", "failed", None, None, None)]),
    ("lhost-x1-01.eml", "x1", [("kijitora@example.co.jp", "failed", None, None, None)]),
    ("lhost-x2-01.eml", "x2", [("kijitora@example.co.jp", "failed", None, None, None)]),
    ("lhost-x3-01.eml", "x3", [("kijitora@example.com", "failed", "5.3.0", 553, "RCPT TO")]),
    ("lhost-x4-01.eml", "x4", [("kijitora@example.com", "failed", None, None, None)]),
    ("lhost-x6-01.eml", "x6", [("kijitora@nyaan.example.org", "failed", "5.4.6", 554, "DATA")]),
    (
        "lhost-apachejames-01.eml",
        "apachejames",
        [("000000000000@vtext.example.com", "failed", None, 550, None)],
    ),
    # the list refused our sender: the list's address is the recipient
    ("lhost-fml-02.eml", "fml", [("neko-nyaan@example.org", "failed", None, None, None)]),
    # an SNS notification e-mailed as JSON
    (
        "lhost-amazonses-10.eml",
        "amazonses-json",
        [("bounce@simulator.amazonses.com", "failed", "5.1.1", 550, None)],
    ),
    # RFC 3464 with Diagnostic-Code lines wrapped without indentation
    (
        "rhost-messagelabs-01.eml",
        "rfc3464",
        [("kijitora@example.messagelabs.com", "failed", "5.0.0", 550, None)],
    ),
    # RFC 3464, a pipe as Final-Recipient: X-Failed-Recipients names the address
    ("lhost-exim-44.eml", "rfc3464", [("kijitora@example.com", "failed", "5.0.0", None, None)]),
    # a quoted local part kept as written (Final-Recipient)
    (
        "lhost-postfix-32.eml",
        "rfc3464",
        [('"neko....nyaan...."@libsisimai.org', "failed", "5.1.1", 550, None)],
    ),
    # no reader for Exim's 'incorrectly constructed' notice: the generic one
    (
        "lhost-exim-52.eml",
        "notification",
        [
            ("kijitora@example.com", "failed", None, None, None),
            ("neko@example.net", "failed", None, None, None),
        ],
    ),
]


def _read(name: str) -> tuple[str, list[Record]]:
    report = parse_report((EML / name).read_bytes())
    address = (
        (lambda r: r.final_recipient) if name == "lhost-postfix-32.eml" else (lambda r: r.address)
    )
    return report.format, [
        (address(r), r.action, r.status, r.smtp_code, r.smtp_command) for r in report.recipients
    ]


@pytest.mark.parametrize(("name", "reader", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_reader_reads_its_format(name: str, reader: str, expected: list[Record]) -> None:
    """The reader chosen for a real email, and the address, action, status, reply code and
    command it extracts for each recipient (in order)."""
    assert (reader, expected) == _read(name)


def test_every_reader_is_exercised_by_a_real_email() -> None:
    """Each reader of the registry takes at least one email of the cases above."""
    assert {r.name for r in READERS} == {reader for _, reader, _ in CASES}


@pytest.mark.parametrize(
    ("name", "reader"), [(c[0], c[1]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_chosen_reader_detects_its_email_and_no_earlier_one_extracts_from_it(
    name: str, reader: str
) -> None:
    """``detect`` is true for the reader that wins; every reader before it either does not
    detect the email or extracts no recipient from it (the documented first-wins order)."""
    bounce = Bounce.parse((EML / name).read_bytes())
    names = [r.name for r in READERS]
    chosen = READERS[names.index(reader)]
    assert chosen.detect(bounce)
    for earlier in READERS[: names.index(reader)]:
        assert not earlier.detect(bounce) or not earlier.extract(bounce), earlier.name


def test_the_registry_puts_rfc3464_first_and_the_generic_reader_last() -> None:
    """RFC 3464 is tried first, the generic notification reader last; names are unique and
    every entry implements the Reader interface."""
    assert isinstance(READERS[0], Rfc3464)
    assert isinstance(READERS[-1], Notification)
    assert all(isinstance(r, Reader) for r in READERS)
    assert len({r.name for r in READERS}) == len(READERS)


def test_docs_list_the_readers_in_registry_order() -> None:
    """docs/bounces.md's reader table names every reader in READERS order (one row each)."""
    rows = re.findall(r"^\| (\d+) \| `([a-z0-9-]+)` \|", DOCS.read_text(), re.M)
    assert [r.name for r in READERS] == [name for _, name in rows]
    assert [str(n) for n in range(1, len(READERS) + 1)] == [number for number, _ in rows]


@pytest.mark.parametrize("name", ["rfc3834-01.eml", "arf-01.eml"])
def test_auto_replies_and_feedback_reports_give_no_recipient(name: str) -> None:
    """Not bounces: an auto-reply and a feedback report give nothing."""
    assert ("unknown", []) == _read(name)


@pytest.mark.parametrize(
    "shape",
    [
        "text bounce: an address per line",
        "text bounce: RFC 3464 fields pasted, repeated",
        "old Gmail: address lines, then one long reply",
        "Sendmail 'permanent fatal errors': distinct addresses",
        "Sendmail transcript: replies and verdicts repeated",
        "Exchange 2003: recipient lines and reasons",
        "Office 365: distinct addresses listed",
        "X-Failed-Recipients headers, distinct addresses",
    ],
)
def test_a_text_reader_keeps_at_most_100_recipients(shape: str) -> None:
    """However many addresses a text bounce lists, at most 100 records come out (each may become
    a stored event when none names the message's recipient)."""
    report = parse_report(DSN_SHAPES[shape](64 * 1024))
    assert 100 == len(report.recipients)
