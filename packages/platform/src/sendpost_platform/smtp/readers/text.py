"""Text helpers the readers share: paragraphs, addresses, the notification and its copy.

All of them walk the text with ``str`` methods (line by line or token by token); the patterns
have one quantifier each, bounded where it matters, so the cost is linear in the text's size.
"""

from __future__ import annotations

import email.message
import email.policy
import re
from collections.abc import Callable

STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
"""An enhanced status code (RFC 3463) anywhere in a text."""
REPLY_CODE = re.compile(r"(?:^|[\s:;(\['])([245]\d\d)(?=[\s-]|$)")
"""A three-digit SMTP reply code standing on its own."""

MAX_DIAGNOSTIC = 1500
"""A record's diagnostic text is cut to this many characters."""
MAX_LINES = 12
"""A reader takes at most this many lines after an address as its reason."""
MAX_RECIPIENTS = 100
"""A text reader keeps at most this many recipients (a platform message has one)."""

# Characters that end an address token (besides whitespace).
_NOT_IN_ADDRESS = frozenset('<>;:"')

# Lines that start the returned copy of the message (compared lower-case, a line at a time).
_COPY_MARKERS = (
    "original message",
    "copy of the message",
    "copy of your message",
    "unsent message",
    "message headers follow",
    "header of the original message",
    "returned message",
    "original mail",
    "undelivered message",
    "headers of your message",
)


def squash(text: str) -> str:
    """``text`` with every run of whitespace made one space, stripped."""
    return " ".join(text.split())


def paragraphs(text: str) -> list[str]:
    """The paragraphs of ``text``: runs of lines separated by whitespace-only lines.

    The same pieces as splitting at ``\\n\\s*\\n`` (leading and trailing blank pieces dropped),
    found line by line so the cost is linear whatever the text holds.
    """
    found: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            found.append("\n".join(current))
            current = []
    if current:
        found.append("\n".join(current))
    return found


def address_token(text: str, *, anchored: bool) -> str | None:
    """The address that ends ``text``: ``user@host``, ``<user@host>``, ``user@host.`` ...

    Gives what ``<?([^\\s<>;:"]+@[^\\s<>;:"]+?)>?[.,]?$`` captures (``search``, or ``match``
    when ``anchored``) in linear time, for text without a trailing newline (callers strip it):
    the address is the run of characters other than whitespace and ``<>;:"`` that ends the text
    (before a closing ``>`` and one ``.`` or ``,`` after it, or before one trailing ``.`` or
    ``,`` that the address can spare); it holds an ``@`` with something on each side.
    """
    if "@" not in text:  # most lines: no address, and nothing to cut
        return None
    closed = text.endswith((">", ">.", ">,"))
    core = text[: text.rfind(">")] if closed else text
    if not core or core[-1].isspace():
        return None
    word = core.rsplit(None, 1)[-1]
    run = word[max(word.rfind(c) for c in _NOT_IN_ADDRESS) + 1 :]
    if anchored and len(core) - len(run) != (1 if text.startswith("<") else 0):
        return None
    at = run.rfind("@", 1, len(run) - 1)
    if at < 0:
        return None
    if not closed and run[-1] in ".," and at <= len(run) - 3:
        return run[:-1]
    return run


def bracketed(text: str) -> tuple[str, str] | None:
    """``<user@host>rest`` → ``(user@host, rest)``: no whitespace in the address, ``@`` inside."""
    if not text.startswith("<"):
        return None
    close = text.find(">")
    address = text[1:close] if close > 0 else ""
    if "@" not in address[1:-1] or address.split() != [address]:
        return None
    return address, text[close + 1 :]


def clean_address(token: str) -> str | None:
    """A token as an address: ``<a@b>``, ``"a@b":``, ``(a@b)``, ``To:<a@b>``... → ``a@b``."""
    start = token.rfind("<")
    if start >= 0:
        end = token.find(">", start)
        token = token[start + 1 : end if end > start else len(token)]
    token = token.strip("\"'()[]{},;:.!?")
    if token.lower().startswith("mailto:"):
        token = token[7:]
    at = token.rfind("@")
    if at <= 0 or at >= len(token) - 3 or token.count("@") != 1:
        return None
    domain = token[at + 1 :]
    if (
        "." not in domain
        or domain.startswith(".")
        or not all(c.isalnum() or c in ".-" for c in domain)
    ):
        return None
    if any(c.isspace() or c in '<>"(),;:[]' for c in token):
        return None
    return token


def addresses(line: str) -> list[str]:
    """Every address token of ``line``, in order."""
    found: list[str] = []
    for token in line.replace("<", " <").split():
        if "@" in token:
            address = clean_address(token)
            if address:
                found.append(address)
    return found


def _separator(line: str) -> bool:
    """A short line that looks like it introduces something: ``--- ... ---``, ``... follows.``"""
    stripped = line.strip().lower()
    return len(stripped) < 100 and (
        stripped[:1] in ("-", "=", "*", "_", ">")
        or stripped.endswith(("follows", "follows.", "follow.", "follow", "below", "below:", ":"))
    )


def notification_text(text: str) -> str:
    """``text`` up to the first line that introduces the returned copy of the message."""
    kept: list[str] = []
    seen_text = False
    for line in text.split("\n"):
        lowered = line.lower()
        if seen_text and _separator(line) and any(m in lowered for m in _COPY_MARKERS):
            break
        seen_text = seen_text or bool(line.strip())
        kept.append(line)
    return "\n".join(kept)


def copied_message(text: str, notification: str) -> email.message.Message | None:
    """The returned copy written into the text after the notification (headers first), or None
    when the text has no copy or the copy starts with no header."""
    if not text.startswith(notification) or len(text) == len(notification):
        return None
    copy = text[len(notification) :].lstrip("\n")
    copy = copy[copy.find("\n") + 1 :].lstrip("\n")
    head = copy.split("\n", 1)[0]
    name = head.partition(":")[0]
    if not name or name != name.strip() or " " in name or ":" not in head:
        return None
    return email.message_from_string(copy, policy=email.policy.compat32)


def starts_with(lines: list[str], marker: str, *, limit: int | None = None) -> int | None:
    """The index of the first line whose stripped text starts with ``marker`` (case ignored)."""
    wanted = marker.lower()
    for number, line in enumerate(lines if limit is None else lines[:limit]):
        if line.strip()[: len(wanted)].lower() == wanted:
            return number
    return None


def qmail_recipient(line: str) -> str | None:
    """The address of a qmail-style recipient line ``<rcpt>:``, else ``None``."""
    head = bracketed(line.strip())
    return head[0] if head is not None and head[1] == ":" else None


def address_blocks(
    lines: list[str],
    recipient: Callable[[str], str | None] = qmail_recipient,
    *,
    strip: bool = True,
) -> list[tuple[str, list[str]]]:
    """Recipient blocks: a line for which ``recipient`` gives an address (by default the
    qmail-style ``<rcpt>:``), then the lines about it up to the next such line or a blank line
    after them (at most :data:`MAX_RECIPIENTS` blocks of at most :data:`MAX_LINES` lines, each
    stripped unless ``strip`` is off). Reading stops at the first blank line after a block's
    text."""
    found: list[tuple[str, list[str]]] = []
    for line in lines:
        address = recipient(line)
        if address is not None:
            if len(found) == MAX_RECIPIENTS:
                break
            found.append((address, []))
        elif found and not line.strip():
            if found[-1][1]:
                break
        elif found and len(found[-1][1]) < MAX_LINES:
            found[-1][1].append(line.strip() if strip else line)
    return found
