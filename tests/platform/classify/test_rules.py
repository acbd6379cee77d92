"""Focused tests of each classification tier, and a property test that classify never raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.domain.classify import REASONS, Classification, classify


def _c(
    text: str | None,
    code: int | None = None,
    status: str | None = None,
    command: str | None = None,
    hint: str | None = None,
) -> Classification:
    return classify(
        smtp_code=code, enhanced_status=status, smtp_command=command, text=text, agent_hint=hint
    )


def test_provider_phrase_beats_a_policy_status() -> None:
    """Microsoft's '5.4.1 Recipient address rejected: Access denied' is an unknown recipient."""
    result = _c("Recipient address rejected: Access denied. AS(201806281)", 550, "5.4.1", "RCPT TO")
    assert Classification(True, "user_unknown", "provider:microsoft-recipient-not-found") == result


def test_rate_limit_phrase_beats_a_user_unknown_status() -> None:
    """A 5.1.1 that says the sender sent too many recipients this hour is a rate limit (soft)."""
    result = _c("has sent to too many recipients this hour", 550, "5.1.1", "RCPT TO")
    assert Classification(False, "rate_limited", "phrase:rate-limited") == result


def test_sender_domain_problem_is_soft() -> None:
    """'Domain of sender address ... does not exist' is about our sender, never the recipient."""
    result = _c("Domain of sender address x.example does not exist", 553, "5.1.8", "MAIL FROM")
    assert (result.hard, result.reason) == (False, "policy")


def test_blocklist_is_soft_reputation_whatever_the_status() -> None:
    """A blocklist URL makes even a 5.1.3 soft (reputation)."""
    result = _c("553 http://www.spamhaus.org/query/bl?ip=192.0.2.1", 553, "5.1.3")
    assert (result.hard, result.reason) == (False, "reputation")


@pytest.mark.parametrize(
    ("status", "hard", "reason"),
    [
        ("5.1.1", True, "user_unknown"),
        ("5.1.2", True, "domain_not_found"),
        ("5.1.3", True, "user_unknown"),
        ("5.1.6", True, "address_moved"),
        ("5.1.10", True, "no_mail_accepted"),
        ("5.4.4", True, "domain_not_found"),
        ("5.1.8", False, "policy"),
        ("5.2.2", False, "mailbox_full"),
        ("5.2.1", False, "mailbox_disabled"),
        ("5.3.4", False, "content"),
        ("5.3.1", False, "system"),
        ("5.4.6", False, "network"),
        ("4.4.7", False, "expired"),
        ("5.6.0", False, "content"),
        ("5.7.1", False, "policy"),
        ("5.5.2", False, "protocol"),
    ],
)
def test_enhanced_status_decides_when_no_phrase_matches(
    status: str, hard: bool, reason: str
) -> None:
    """Each RFC 3463 status maps to its documented hardness and reason."""
    result = _c("rejected", 550, status, "RCPT TO")
    assert (hard, reason, f"status:{status}") == (result.hard, result.reason, result.rule)


def test_policy_status_takes_its_reason_from_keywords() -> None:
    """An X.7.x status is soft; its reason is refined by the text (spam here)."""
    result = _c("Message content rejected, UBE", 550, "5.7.1")
    assert (result.hard, result.reason) == (False, "spam")


def test_generic_status_falls_through_to_keywords() -> None:
    """X.0.0 is not decisive: 'User not found' then makes it hard."""
    assert Classification(True, "user_unknown", "keyword:user_unknown") == _c(
        "550 User not found", 550, "5.0.0"
    )


def test_user_unknown_after_data_is_soft_content() -> None:
    """A 5xx after DATA is a content/policy rejection, even worded 'Unknown user'."""
    assert Classification(False, "content", "command:DATA") == _c(
        "550 Unknown user x@example.net", 550, "5.0.0", "DATA"
    )


def test_command_is_read_from_postfix_text_when_not_given() -> None:
    """'(in reply to end of DATA command)' in the text counts as the command context."""
    text = "host mx[192.0.2.1] said: 550 Unknown user (in reply to end of DATA command)"
    assert Classification(False, "content", "command:DATA") == _c(text)


def test_code_and_status_are_read_from_the_text_when_not_given() -> None:
    """With only the text, its leading code and enhanced status are used."""
    assert Classification(True, "user_unknown", "status:5.1.1") == _c("550 5.1.1 no good")


def test_bare_5xx_at_rcpt_without_address_wording_is_soft() -> None:
    """A 5xx with no recognisable wording is not a recipient problem: soft, reason other."""
    assert Classification(False, "other", "digit:5") == _c("Go away", 554, None, "RCPT TO")


@pytest.mark.parametrize(("code", "reason"), [(551, "address_moved"), (556, "no_mail_accepted")])
def test_551_and_556_are_hard_by_code(code: int, reason: str) -> None:
    """551 (user not local) and 556 (domain accepts no mail, RFC 7504) are hard by themselves."""
    assert Classification(True, reason, f"code:{code}") == _c("whatever", code)


def test_4xx_is_never_hard() -> None:
    """A 4xx 'user unknown' keeps its reason but is soft, marked transient."""
    assert Classification(False, "user_unknown", "status:4.1.1+transient") == _c(
        "450 4.1.1 nope", 450, "4.1.1"
    )


def test_status_class_4_without_code_is_never_hard() -> None:
    """With no reply code, a 4.x.x status makes the failure transient."""
    result = _c("Domain name not found: example.jp", None, "4.0.0")
    assert (result.hard, result.reason) == (False, "domain_not_found")


def test_agent_soft_bounce_hint_is_used_only_without_codes() -> None:
    """The agent's soft_bounced label keeps a codeless failure soft; with a 5xx code it does not."""
    assert _c("No such domain.", hint="soft_bounced").hard is False
    assert _c("No such domain.", hint="bounced").hard is True
    assert _c("550 No such domain", 550, hint="soft_bounced").hard is True


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Host or domain name not found. Name service error for name=x type=A", "domain_not_found"),
        ('unknown user: "kijitora"', "user_unknown"),
        ("User unknown in local recipient table", "user_unknown"),
        ('procmail: Couldn\'t create "/var/mail/x"', "system"),
        # DNS answered "try again" (a temporary failure on our side's resolver): not the domain.
        ("Name service error for domain example.com: Host not found, try again", "network"),
    ],
)
def test_postfix_texts_without_codes(text: str, reason: str) -> None:
    """Postfix's own (codeless) texts are classified by their wording."""
    assert reason == _c(text).reason


def test_empty_input_is_soft_other() -> None:
    """Nothing to go on: soft, reason other."""
    assert Classification(False, "other", "fallback") == _c(None)


@given(
    code=st.one_of(st.none(), st.integers(min_value=-1000, max_value=1000)),
    status=st.one_of(st.none(), st.text(max_size=20)),
    command=st.one_of(st.none(), st.text(max_size=20)),
    text=st.one_of(st.none(), st.text(max_size=300)),
    hint=st.one_of(st.none(), st.sampled_from(["bounced", "soft_bounced", "x"])),
)
def test_classify_never_raises_and_returns_a_known_reason(
    code: int | None, status: str | None, command: str | None, text: str | None, hint: str | None
) -> None:
    """Arbitrary input never raises; the reason is always in the documented vocabulary."""
    result = _c(text, code, status, command, hint)
    assert result.reason in REASONS


@pytest.mark.parametrize(
    ("text", "status", "command"),
    [
        ("550 5.1.7 No such domain neko.example.com", "5.1.7", None),
        ("550 5.1.7 No such domain neko.example.com", None, "MAIL FROM"),
        ("550 Invalid domain name example.jp", None, "EHLO"),
    ],
)
def test_sender_side_problems_are_never_hard(
    text: str, status: str | None, command: str | None
) -> None:
    """Issue 14: a reply to MAIL FROM or EHLO, or an X.1.7/X.1.8 status, concerns our sender or
    host, so recipient-sounding words ("No such domain", "Invalid domain") do not make it hard."""
    result = classify(smtp_code=550, enhanced_status=status, smtp_command=command, text=text)
    assert (False, True) == (result.hard, result.rule.startswith(("status:5.1.7", "command:")))


@pytest.mark.parametrize(
    ("code", "status", "command", "text", "expected"),
    [
        # Recipient-side wordings the issue found missing: hard.
        (554, None, None, "the domain is not reachable. Please check the domain", True),
        (None, None, None, "User x (a@b.example) not listed in Domino Directory", True),
        (None, None, None, "The recipient name is not recognized", True),
        (550, "5.0.0", None, "an MX or SRV record indicated no SMTP service", True),
        (None, None, None, "No mx record found for domain=example.org", True),
        (
            None,
            None,
            None,
            "wasn't delivered to a@b.example because the address couldn't be found",
            True,
        ),
        (None, None, None, "Error: No valid recipients for this MM", True),
        (None, None, None, "User  not listed in public Name & Address Book", True),
        # A generic X.3.0 loses to the specific text.
        (553, "5.3.0", None, "553 5.3.0 <a@b.example>... No such user here", True),
        # The remote's own reply beats the Status field.
        (552, "5.1.1", None, "552 5.2.2 Over quota", False),
        # User unknown after DATA: a filter's verdict, soft.
        (550, "5.1.1", "DATA", "550 5.1.1 User unknown", False),
        # X.2.1 (mailbox disabled) with "User Unknown": the specific text wins, hard.
        (550, "5.2.1", "RCPT TO", "550 5.2.1 <a@b.example>... User Unknown", True),
        # A refusal that gives no reason about the recipient: soft.
        (550, "5.0.0", "RCPT TO", "550 <a@b.example>: Recipient address rejected.", False),
        (550, "5.0.0", None, "550 #5.1.0 Address rejected.", False),
        (542, "5.0.0", None, "542 a@b.example Rejected", False),
        (None, None, None, "Unable to deliver message to <a@b.example>", False),
        # A DNS lookup to try again is no missing domain: soft.
        (
            None,
            None,
            None,
            "Name service error for domain b.example: Host not found, try again",
            False,
        ),
    ],
)
def test_issue_14_policy_cases(
    code: int | None, status: str | None, command: str | None, text: str, expected: bool
) -> None:
    """The decisions of docs/classification.md ("Policy") for the disputed and missing cases of
    issue 14: recipient wordings are hard; sender, mailbox status, after-DATA cases are soft."""
    result = classify(smtp_code=code, enhanced_status=status, smtp_command=command, text=text)
    assert expected == result.hard, result
