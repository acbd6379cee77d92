"""Hard/soft classification of one failed delivery (an agent bounce or one DSN recipient).

A pure function: no clock, no I/O, never raises. ``classify`` looks at the reply code, the RFC 3463
enhanced status, the SMTP command the reply answered and the reply text, and decides whether the
failure is *hard* (the recipient address or domain is wrong: stop sending to it) or *soft*
(anything else: policy, reputation, spam, rate limits, full mailboxes, network and system trouble).

The tiers, first decisive one wins (SPEC.md, "Wire contract" → processing):

1. **known phrases** — wordings of specific providers and MTAs (Gmail, Microsoft, Yahoo, Apple,
   GoDaddy, Facebook, Postfix, Sendmail...), and unambiguous statements about the sender,
   blocklists, rate limits and explicitly named recipients. They win over codes because providers
   reuse codes loosely (Microsoft's ``5.4.1 Access denied`` means "no such recipient"; GoDaddy's
   ``5.1.1`` can mean "you sent too much").
2. **enhanced status** (RFC 3463): X.1.1/.2/.3/.6/.10 and 5.4.4 are hard; X.1.7/.8 (sender) and the
   X.2 mailbox, X.3 system, X.4 network, X.5 protocol, X.6 content and X.7 policy classes are soft.
   Generic codes (X.0.0, X.1.0, X.2.0, X.5.0 ...) are not decisive.
3. **command context**: a rejection after ``DATA`` is about content or policy; after ``MAIL FROM``
   or the greeting about the sender or the client; both soft. After ``RCPT TO`` the decision goes
   on.
4. **keyword lists**: soft families first (rate, reputation, spam, policy, mailbox full/disabled,
   content, network, system), then recipient-address and domain wordings (hard).
5. **reply code**: 551 (user not local) and 556 (domain accepts no mail) are hard; otherwise the
   first digit only chooses a generic soft reason.

Finally a *transient* failure — a 4xx reply, or with no reply code a 4.x.x status, or the agent's
``soft_bounced`` label with neither — is never hard: the result keeps its reason, becomes soft and
its rule gets a ``+transient`` suffix.

Reasons (the ``reason`` vocabulary, also in docs/classification.md): hard ``user_unknown``,
``domain_not_found``, ``no_mail_accepted``, ``address_moved``; soft ``mailbox_full``,
``mailbox_disabled``, ``rate_limited``, ``reputation``, ``spam``, ``policy``, ``content``,
``network``, ``system``, ``expired``, ``protocol``, ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

HARD_REASONS: frozenset[str] = frozenset(
    {"user_unknown", "domain_not_found", "no_mail_accepted", "address_moved"}
)
SOFT_REASONS: frozenset[str] = frozenset(
    {
        "mailbox_full",
        "mailbox_disabled",
        "rate_limited",
        "reputation",
        "spam",
        "policy",
        "content",
        "network",
        "system",
        "expired",
        "protocol",
        "other",
    }
)
REASONS: frozenset[str] = HARD_REASONS | SOFT_REASONS


@dataclass(frozen=True)
class Classification:
    """The verdict: ``hard`` or not, a ``reason`` from ``REASONS`` and the ``rule`` that decided."""

    hard: bool
    reason: str
    rule: str


MAX_CLASSIFIED_CHARS = 2048
"""Only the first this many characters of the reply text are classified (the longest real reply
in the corpus has 714; SMTP reply lines are at most 512 octets). Longer text is cut, so one
verdict costs bounded time whatever an agent or a bounce sends."""

Classifier = Callable[..., Classification]
"""What producers take to classify a failure (:func:`classify`, or a stand-in in tests)."""
_Matcher = Callable[[str], object]
"""A test on the (cut) reply text: anything truthy means it matched."""


def _rx(*alternatives: str) -> _Matcher:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE).search


def _then(first: str, later: str) -> _Matcher:
    """``first`` and after it, on the same line, ``later``: what ``first.*later`` matches, in
    linear time (a regex ``.*`` between two searches re-scans the line at every ``first``)."""
    head = re.compile(first, re.IGNORECASE)
    tail = re.compile(later, re.IGNORECASE)

    def search(text: str) -> bool:
        found = head.search(text)
        while found is not None:
            line_end = text.find("\n", found.end())
            line_end = len(text) if line_end < 0 else line_end
            if tail.search(text, found.end(), line_end):
                return True
            found = head.search(text, line_end)
        return False

    return search


def _either(*matchers: _Matcher) -> _Matcher:
    return lambda text: any(matcher(text) for matcher in matchers)


# Tier 1: known phrases, checked in this order. (rule name, reason, pattern)
_KNOWN_PHRASES: tuple[tuple[str, str, _Matcher], ...] = (
    # Local delivery agents failing on the receiving host: a mailer error, not the address.
    (
        "mta:local-mailer-error",
        "system",
        _rx(r"^\s*(procmail|maildrop|deliver)\b[^:]*:", r"couldn't create"),
    ),
    # Problems with *our* sender address or domain are never the recipient's fault.
    (
        "phrase:sender-rejected",
        "policy",
        _rx(
            r"\bsender (address|domain)\b",
            r"domain of sender",
            r"\bmail from domain\b",
            r"\bsender (is )?(unknown|invalid|rejected|not allowed)",
        ),
    ),
    (
        "phrase:rate-limited",
        "rate_limited",
        _rx(
            r"too many (recipients|messages|connections) (this|per|in the last) (hour|day|minute)",
            r"receiving mail at a rate",
            r"rate[- ]limit",
            r"try again slower",
            r"frequency limited",
            r"\bthrottl",
        ),
    ),
    (
        "phrase:blocklist",
        "reputation",
        _rx(
            r"\b(spamhaus|spamcop|sorbs|barracuda(central)?|uceprotect|surbl|spamrats)\b",
            r"\b(dns|d)?bl\b",
            r"\bdnsbl\b",
            r"\b(black|block)[- ]?list",
            r"\breputation\b",
            r"\bbanned sending ip\b",
        ),
    ),
    # Facebook: the recipient asked not to get mail from the sender.
    ("provider:facebook-preferences", "policy", _rx(r"recipient preferences")),
    # Gmail / Google Workspace.
    (
        "provider:gmail-no-such-user",
        "user_unknown",
        _rx(
            r"email account that you tried to reach does not exist",
            r"\?p=NoSuchUser",
            r"\baddress (couldn't|could not) be found",
        ),
    ),
    (
        "provider:gmail-disabled",
        "mailbox_disabled",
        _rx(r"account that you tried to reach is disabled"),
    ),
    ("provider:gmail-over-quota", "mailbox_full", _rx(r"inbox is out of storage", r"OverQuota")),
    # Microsoft 365 / Exchange Online / Outlook.com.
    (
        "provider:microsoft-recipient-not-found",
        "user_unknown",
        _rx(r"RESOLVER\.ADR\.Recip(ient)?NotFound", r"recipient address rejected: access denied"),
    ),
    (
        "provider:microsoft-quota",
        "mailbox_full",
        _rx(r"QuotaExceeded", r"STOREDRV\.Deliver: mailbox full"),
    ),
    ("provider:microsoft-auth-required", "policy", _rx(r"RESOLVER\.RST\.")),
    # Yahoo / AOL / Verizon Media.
    (
        "provider:yahoo-no-such-user",
        "user_unknown",
        _either(
            _rx(r"user doesn't have an? [\w.-]+ account"),
            _then(r"mailbox unavailable\b", r"\byahoo"),
        ),
    ),
    (
        "provider:yahoo-disabled",
        "mailbox_disabled",
        _rx(r"account has been disabled or discontinued"),
    ),
    # Apple iCloud.
    ("provider:apple-inactive", "user_unknown", _rx(r"inactive email address")),
    # Postfix's own texts (local delivery, virtual tables, DNS).
    (
        "mta:user-unknown",
        "user_unknown",
        _rx(
            r"user unknown in (virtual (alias|mailbox)|(local|relay) recipient) table",
            r"^\s*unknown user: \"",
            r"\.\.\. user unknown\b",  # Sendmail's "<addr>... User unknown"
        ),
    ),
    (
        "mta:host-not-found",
        "domain_not_found",
        _rx(r"host or domain name not found", r"\bhost unknown\b"),
    ),
    # Explicitly named recipient or domain problems: hard whatever code came with them.
    (
        "phrase:recipient-invalid",
        "user_unknown",
        _rx(
            r"\binvalid recipient\b",
            r"\brecipient (address )?(unknown|not found|does not exist)",
            r"\bunknown recipient\b",
            r"\bno such recipient\b",
            r"recipient address rejected: user unknown",
            r"\bno valid recipients\b",
            r"not listed in public name (&|and) address book",
        ),
    ),
    (
        "phrase:no-such-domain",
        "domain_not_found",
        _rx(r"\bno such domain\b", r"\bunknown domain\b", r"\bthe domain is not reachable\b"),
    ),
    (
        "phrase:directory-unknown",
        "user_unknown",
        _either(
            _then(r"\bnot listed in\b", r"\bdirectory\b"),
            _rx(r"recipient name is not recognized", r"invalid final delivery userid"),
        ),
    ),
    (
        "phrase:no-mail-accepted",
        "no_mail_accepted",
        _rx(
            r"\b(host|domain) does not accept (e-?)?mail\b(?! from)",
            r"\bnull mx\b",
            r"mx or srv record indicated no smtp service",
            r"\bno mx record found\b",
        ),
    ),
    (
        "phrase:address-moved",
        "address_moved",
        _rx(r"has been replaced by", r"no longer on (this )?server"),
    ),
)

# Tier 4: keyword families. Soft ones first, so "user ... locked" or "mailbox unavailable (spam)"
# stay soft; the hard families come after.
_SOFT_KEYWORDS: tuple[tuple[str, _Matcher], ...] = (
    (
        "rate_limited",
        _either(_rx(r"too many", r"\brate\b", r"slow down"), _then(r"exceeded the ", r"limit")),
    ),
    ("reputation", _rx(r"\bptr\b", r"reverse dns", r"\bblocked\b", r"client host rejected")),
    ("spam", _rx(r"\bspam", r"\bu[bc]e\b", r"junk", r"virus", r"malware", r"phish")),
    (
        "policy",
        _rx(
            r"polic(y|ies)",
            r"\bdmarc\b",
            r"\bspf\b",
            r"\bdkim\b",
            r"\brelay",
            r"not (permitted|allowed|authori[sz]ed)",
            r"\bdenied\b",
            r"authentication",
            r"starttls",
            r"filtered",
            r"\breject(ed)? by\b",
        ),
    ),
    (
        "mailbox_full",
        _rx(
            r"quota",
            r"mailbox (is )?full",
            r"(insufficient|out of) (disk|storage)",
            r"storage space",
        ),
    ),
    (
        "mailbox_disabled",
        _rx(
            r"disabled",
            r"suspended",
            r"\binactive\b",
            r"deactivated",
            r"\blocked\b",
            r"discontinued",
        ),
    ),
    (
        "content",
        _rx(
            r"too (large|big)",
            r"size exceeds",
            r"message size",
            r"rfc ?(2822|5322|822)",
            r"duplicate header",
            r"8-?bit",
            r"content",
        ),
    ),
    ("expired", _rx(r"\bexpired\b", r"too long in (the )?queue")),
    (
        "network",
        _rx(
            r"timed out",
            r"connection refused",
            r"lost connection",
            r"no route to host",
            r"network is unreachable",
            r"host not found, try again",
            r"too many hops",
            r"hop count",
            r"mail loop",
            r"loops back to myself",
        ),
    ),
    (
        "system",
        _rx(
            r"system (error|config|full)",
            r"service (currently )?unavailable",
            r"internal (server )?error",
            r"temporar(y|ily)",
            r"try again later",
            r"insufficient system",
        ),
    ),
)
_HARD_KEYWORDS: tuple[tuple[str, _Matcher], ...] = (
    (
        "user_unknown",
        _rx(
            r"user unknown",
            r"unknown user",
            r"no such (user|mailbox|account|address)",
            r"user (not found|does not exist|doesn't exist)",
            r"(mailbox|account|address) (not found|does not exist|doesn't exist|unknown)",
            r"mailbox unavailable",
            r"invalid (mailbox|address|user)",
            r"not a valid (mailbox|user|recipient|address)",
            r"unrouteable address",
            r"\bno mailbox\b",
        ),
    ),
    (
        "domain_not_found",
        _rx(
            r"domain (name )?not found",
            r"domain (does not|doesn't) exist",
            r"\bnxdomain\b",
            r"host not found",
            r"unknown host",
            r"invalid domain",
        ),
    ),
    ("address_moved", _rx(r"user not local", r"has moved", r"not our user")),
)

_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_CODE_RE = re.compile(r"(?:^|said:\s*)([245]\d\d)(?:[\s-]|$)")
_COMMAND_RE = re.compile(r"in reply to (.{1,30}?) command", re.IGNORECASE)


def _parse_status(value: str | None) -> tuple[int, int, int] | None:
    if not value:
        return None
    match = _STATUS_RE.search(value)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _normalise_command(command: str | None) -> str | None:
    if not command:
        return None
    upper = command.upper()
    for name in ("RCPT", "MAIL", "DATA", "EHLO", "HELO", "CONNECT", "STARTTLS", "AUTH"):
        if name in upper:
            return {"HELO": "EHLO"}.get(name, name)
    return None


def _by_status(status: tuple[int, int, int], text: str) -> tuple[str, bool] | None:
    """The reason and hardness the enhanced status decides, or None when it is not decisive."""
    klass, subject, detail = status
    if subject == 1:
        table = {1: "user_unknown", 2: "domain_not_found", 3: "user_unknown", 6: "address_moved"}
        if detail in table:
            return table[detail], True
        if detail == 10:
            return "no_mail_accepted", True
        if detail in (7, 8):
            return "policy", False
        return None
    if subject == 2:
        table = {1: "mailbox_disabled", 2: "mailbox_full", 3: "content", 4: "system"}
        return (table[detail], False) if detail in table else None
    if subject == 3:
        if detail == 0:
            return None  # generic: the text decides (issue 14)
        return ("content" if detail == 4 else "system"), False
    if subject == 4:
        if detail == 4 and klass == 5:
            return "domain_not_found", True
        return ("expired" if detail == 7 else "network"), False
    if subject == 5:
        return None if detail == 0 else ("protocol", False)
    if subject == 6:
        return "content", False
    if subject == 7:
        return _soft_keyword(text) or "policy", False
    return None


def _soft_keyword(text: str) -> str | None:
    for reason, matches in _SOFT_KEYWORDS:
        if matches(text):
            return reason
    return None


def _hard_keyword(text: str) -> str | None:
    for reason, matches in _HARD_KEYWORDS:
        if matches(text):
            return reason
    return None


def _decide(
    code: int | None, status: tuple[int, int, int] | None, command: str | None, text: str
) -> Classification:
    # Our sender or our host: a reply to MAIL FROM or EHLO/HELO, or an X.1.7/X.1.8 status, is
    # never about the recipient, whatever it says ("550 5.1.7 No such domain" is our domain).
    if command in ("MAIL", "EHLO") or (status is not None and status[1:] in ((1, 7), (1, 8))):
        side = (
            f"command:{command}"
            if command in ("MAIL", "EHLO")
            else "status:{}.{}.{}".format(
                *status  # type: ignore[misc]
            )
        )
        return Classification(False, _soft_keyword(text) or "policy", side)
    for rule, reason, matches in _KNOWN_PHRASES:
        if matches(text):
            return Classification(reason in HARD_REASONS, reason, rule)
    if status is not None:
        decided = _by_status(status, text)
        if decided is not None:
            status_reason, status_hard = decided
            return Classification(status_hard, status_reason, "status:{}.{}.{}".format(*status))
    if command in ("DATA", "MAIL", "EHLO", "CONNECT", "STARTTLS", "AUTH"):
        default = "content" if command == "DATA" else "policy"
        return Classification(False, _soft_keyword(text) or default, f"command:{command}")
    soft = _soft_keyword(text)
    if soft is not None:
        return Classification(False, soft, f"keyword:{soft}")
    hard_reason = _hard_keyword(text)
    if hard_reason is not None:
        return Classification(True, hard_reason, f"keyword:{hard_reason}")
    if code == 551:
        return Classification(True, "address_moved", "code:551")
    if code == 556:
        return Classification(True, "no_mail_accepted", "code:556")
    if code is not None and 400 <= code < 500:
        return Classification(False, "other", "digit:4")
    if code is not None and 500 <= code < 600:
        return Classification(False, "other", "digit:5")
    return Classification(False, "other", "fallback")


def classify(
    *,
    smtp_code: int | None,
    enhanced_status: str | None,
    smtp_command: str | None,
    text: str | None,
    agent_hint: str | None = None,
) -> Classification:
    """Classify one failure; missing pieces are taken from ``text`` when it carries them.

    Only the first :data:`MAX_CLASSIFIED_CHARS` characters of ``text`` are read.
    """
    body = (text or "")[:MAX_CLASSIFIED_CHARS]
    code = smtp_code if isinstance(smtp_code, int) and 200 <= smtp_code < 600 else None
    if code is None:
        match = _CODE_RE.search(body)
        code = int(match.group(1)) if match else None
    # The remote's own reply beats the reporting MTA's Status field: "Status: 5.1.1" with
    # "552 5.2.2 Over quota" is a full mailbox. A generic X.0.0 in the text does not count.
    field_status = _parse_status(enhanced_status)
    text_status = _parse_status(body)
    if text_status is not None and (text_status[2] == 0 or text_status[0] == 2):
        text_status = None
    status = text_status or field_status
    command = _normalise_command(smtp_command)
    if command is None:
        match = _COMMAND_RE.search(body)
        command = _normalise_command(match.group(1)) if match else None
    result = _decide(code, status, command, body)
    if result.hard and command == "DATA":
        # Accepted at RCPT TO, refused after the content: a filter's verdict, not proof that the
        # address is wrong (Sisimai's "filtered"); soft (docs/classification.md, policy).
        return Classification(False, _soft_keyword(body) or "policy", result.rule + "+after-data")
    if code is not None:
        transient = 400 <= code < 500
    elif status is not None:
        transient = status[0] == 4
    else:
        transient = agent_hint == "soft_bounced"
    if result.hard and transient:
        return Classification(False, result.reason, result.rule + "+transient")
    return result
