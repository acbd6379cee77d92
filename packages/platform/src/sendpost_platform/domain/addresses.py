"""Mailboxes and header values (pure): read, quoted and encoded by the standard library.

Every value that reaches a message header or the SMTP envelope passes through here:

- :func:`unsafe_characters` names the CR, LF and NUL characters in a value, and the other ASCII
  control characters (tab excepted) that no header holds either (VT, FF and FS..RS end a line
  for ``str.splitlines``, which Python's own header folding uses). The send API refuses them in
  every such field (422, naming it), and preparation refuses them again
  (:class:`UnsafeHeader`), so no value can end one header and start another, or push the
  platform's own headers into the body above a blank line.
- :func:`parse_mailbox` reads ``a@b.example`` or ``Display Name <a@b.example>`` with
  ``email.headerregistry``'s address parser: exactly one mailbox, no defects, else None.
- :func:`is_address` is the syntax an address needs to be relayed: printable ASCII, an atext
  local part and a host name of letters, digits and hyphens.
- :func:`address_header` writes ``To``/``Cc``/``From``/``Reply-To``: a display name that fits
  on a line as ``email.utils.formataddr`` quotes and escapes it, any other (non-ASCII, U+2028
  and U+0085 included, or long) as RFC 2047 encoded words of at most 75 characters made by
  ``email.charset``; the header folds between those pieces, so each line stays within 78
  columns unless one address alone is longer.
- :func:`text_header` writes ``Subject`` and custom values that are not short ASCII as encoded
  words the same way.

Writing does not go through ``email.headerregistry``'s folder: its cost grows faster than the
text (0.4 s for one 256-character non-ASCII display name, 17 s for a ``Cc`` of 100 of them on
Python 3.11), and the relay prepares a header per recipient. Encoded words and the few lines
that join them cost linear time, and the tests read every header back with the ``email``
parser.
"""

from __future__ import annotations

import dataclasses
import email.charset
import email.errors
import email.policy
import email.utils
import functools
import itertools
import re
from collections.abc import Iterable, Sequence
from email.headerregistry import AddressHeader, Group

MAX_ADDRESS = 320
MAX_NAME = 256
"""Longest display name, in characters: even unbreakable and fully escaped, its folded line stays
within SMTP's 998 octets."""
MAX_HEADER_NAME = 76
MAX_TEXT = 998
"""Longest subject or custom header value, in characters (one SMTP line): folding costs more
than linear time in the length, so the length is bounded before any folding."""

_NAMED = {"\r": "CR", "\n": "LF", "\0": "NUL"}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^{_ATEXT}{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")

_READ = email.policy.default
_UTF8 = email.charset.Charset("utf-8")


class UnsafeHeader(ValueError):
    """A value that may not be written into a header or the envelope."""


def unsafe_characters(text: str) -> list[str]:
    """The names (``CR``, ``LF``, ``NUL``, else ``U+001B``…) of the characters in ``text`` that
    no header or envelope field may carry, in order of first appearance; empty when none."""
    found = dict.fromkeys(_CONTROL.findall(text))
    return [_NAMED.get(char, f"U+{ord(char):04X}") for char in found]


def check_safe(field: str, text: str) -> None:
    """Raise :class:`UnsafeHeader` naming ``field`` when ``text`` carries a control character."""
    found = unsafe_characters(text)
    if found:
        raise UnsafeHeader(f"{field} contains {' and '.join(found)}")


def is_address(text: str) -> bool:
    return len(text) <= MAX_ADDRESS and text.isascii() and _ADDRESS.match(text) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class Mailbox:
    """An address with an optional display name."""

    email: str
    name: str | None = None

    def to_json(self) -> str | dict[str, str]:
        return self.email if not self.name else {"email": self.email, "name": self.name}

    @classmethod
    def from_json(cls, value: object) -> Mailbox:
        """Read what :meth:`to_json` wrote (a string, or ``{"email", "name"}``)."""
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and isinstance(value.get("email"), str):
            name = value.get("name")
            return cls(value["email"], name if isinstance(name, str) and name else None)
        raise UnsafeHeader(f"not a stored mailbox: {value!r}")


def mailboxes(values: Iterable[object] | None) -> tuple[Mailbox, ...]:
    return tuple(Mailbox.from_json(v) for v in values or ())


def optional_mailbox(value: object) -> Mailbox | None:
    return None if value is None else Mailbox.from_json(value)


def parse_mailbox(text: str) -> Mailbox | None:
    """The one mailbox in ``a@b.example`` or ``Name <a@b.example>``; None when the text is not
    exactly one valid mailbox (a list, a group, a parse defect, an address :func:`is_address`
    refuses) or carries a control character."""
    if len(text) > MAX_ADDRESS + 3 * MAX_NAME or unsafe_characters(text):
        return None
    try:
        header = _READ.header_factory("to", text)
    except (ValueError, IndexError, email.errors.HeaderParseError):
        return None
    defects: tuple[object, ...] = getattr(header, "defects", ())  # BaseHeader's, not in its stub
    if defects or not isinstance(header, AddressHeader):
        return None
    groups: tuple[Group, ...] = header.groups
    if len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1:
        return None
    address = groups[0].addresses[0]
    if not is_address(address.addr_spec):
        return None
    return Mailbox(address.addr_spec, address.display_name or None)


_WIDTH = 78
_WORD = 75  # RFC 2047's longest encoded word
_FIRST = _WIDTH - len("Reply-To: ")  # the first word also fits after the usual header names


def _encoded_words(text: str) -> list[str]:
    widths = itertools.chain([_FIRST], itertools.repeat(_WORD))
    return [w for w in _UTF8.header_encode_lines(text, widths) if w]


def _mailbox_pieces(field: str, box: Mailbox) -> list[str]:
    """The mailbox as pieces that may be separated by folding whitespace."""
    check_safe(f"{field} address", box.email)
    check_safe(f"{field} display name", box.name or "")
    if not is_address(box.email):
        raise UnsafeHeader(f"{field}: {box.email!r} is not a valid address")
    if not box.name:
        return [box.email]
    if box.name.isascii():
        quoted = email.utils.formataddr((box.name, box.email))
        if len(quoted) <= _FIRST:
            return [quoted]
    return [*_encoded_words(box.name), f"<{box.email}>"]


def _fold(name: str, pieces: Iterable[str]) -> str:
    """``Name: piece piece…`` with a fold (CRLF and a space) instead of the space wherever the
    next piece would pass column 78."""
    out = [f"{name}:"]
    column = len(name) + 1
    for piece in pieces:
        if column + 1 + len(piece) > _WIDTH and column > len(name) + 1:
            out.append("\r\n ")
            column = 1
        else:
            out.append(" ")
            column += 1
        out.append(piece)
        column += len(piece)
    out.append("\r\n")
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _address_header(name: str, boxes: tuple[Mailbox, ...]) -> str:
    pieces: list[str] = []
    for index, box in enumerate(boxes):
        own = _mailbox_pieces(name, box)
        if index < len(boxes) - 1:
            own[-1] += ","
        pieces += own
    return _fold(name, pieces)


def address_header(name: str, boxes: Sequence[Mailbox]) -> str:
    """The whole header (``Name: value``, CRLF-terminated and folded) for these mailboxes (see
    the module docstring); raises :class:`UnsafeHeader` for an unsafe or invalid value. Cached:
    a request's recipients share its ``From``, ``Cc`` and ``Reply-To``."""
    return _address_header(name, tuple(boxes))


@functools.lru_cache(maxsize=256)
def text_header(name: str, value: str) -> str:
    """The whole header (``Name: value``, CRLF-terminated) as RFC 2047 encoded words, folded
    between them; raises :class:`UnsafeHeader` for an unsafe value or one over
    :data:`MAX_TEXT` characters. Cached: a request's recipients share its headers."""
    check_safe(f"header {name}", value)
    if len(value) > MAX_TEXT:
        raise UnsafeHeader(f"header {name} is longer than {MAX_TEXT} characters")
    return _fold(name, _encoded_words(value))
