"""Mailboxes and header values (pure): read and written by the standard library, not by hand.

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
- :func:`address_header` writes ``To``/``Cc``/``From``/``Reply-To`` with
  ``email.headerregistry`` under the SMTP policy: display names quoted when needed, non-ASCII
  ones (U+2028, U+0085 and the like included) RFC 2047-encoded, long ones folded at 78 columns.
- :func:`text_header` writes any other header the same way, as unstructured text (``Subject``
  and custom headers that are not plain short ASCII).
"""

from __future__ import annotations

import dataclasses
import email.errors
import email.policy
import functools
import re
from collections.abc import Iterable, Sequence
from email.headerregistry import (
    Address,
    AddressHeader,
    BaseHeader,
    Group,
    HeaderRegistry,
    UnstructuredHeader,
)

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
_WRITE = email.policy.SMTP
_UNSTRUCTURED = HeaderRegistry(BaseHeader, UnstructuredHeader, use_default_map=False)


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


@functools.lru_cache(maxsize=256)
def _folded(name: str, boxes: tuple[Mailbox, ...]) -> str:
    addresses = []
    for box in boxes:
        check_safe(f"{name} address", box.email)
        check_safe(f"{name} display name", box.name or "")
        if not is_address(box.email):
            raise UnsafeHeader(f"{name}: {box.email!r} is not a valid address")
        try:
            addresses.append(Address(display_name=box.name or "", addr_spec=box.email))
        except (ValueError, email.errors.HeaderParseError) as exc:
            raise UnsafeHeader(f"{name}: {box.email!r}: {exc}") from None
    folded: str = _WRITE.header_factory(name, addresses).fold(policy=_WRITE)
    return folded


def address_header(name: str, boxes: Sequence[Mailbox]) -> str:
    """The whole header (``Name: value``, CRLF-terminated and folded) for these mailboxes,
    written by ``email.headerregistry``; raises :class:`UnsafeHeader` for an unsafe value."""
    return _folded(name, tuple(boxes))


@functools.lru_cache(maxsize=256)
def text_header(name: str, value: str) -> str:
    """The whole header (``Name: value``, CRLF-terminated) as unstructured text, RFC 2047-encoded
    and folded by ``email.headerregistry``; raises :class:`UnsafeHeader` for an unsafe value or
    one over :data:`MAX_TEXT` characters. Cached: a request's recipients share its headers."""
    check_safe(f"header {name}", value)
    if len(value) > MAX_TEXT:
        raise UnsafeHeader(f"header {name} is longer than {MAX_TEXT} characters")
    folded: str = _UNSTRUCTURED(name, value).fold(policy=_WRITE)
    return folded
