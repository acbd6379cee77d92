"""MIME entities for prepared messages: text parts, multiparts, attachments, written directly.

Pure functions returning ``str`` with CRLF line endings, ASCII only (non-ASCII text goes
quoted-printable, attachments base64, non-ASCII file names RFC 2231), so ``smtp/prepare.py`` can
join them to its headers and sign the bytes. The text and attachment parts are cached: every
recipient of a send request shares them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sendpost_platform.domain.addresses import check_safe

MAX_7BIT_LINE = 990
"""Longest body line sent as it is; longer lines (or non-ASCII text) go quoted-printable."""

_TYPES = mimetypes.MimeTypes(filenames=())
"""Python's own table only, so a content type never depends on the host's mime.types."""


def content_type_of(filename: str) -> str:
    """The MIME type for a file name's extension (``application/octet-stream`` if unknown)."""
    guessed, _encoding = _TYPES.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


@dataclass(frozen=True)
class StoredAttachment:
    """One attachment: its file name, content type and content (base64, no whitespace)."""

    filename: str
    content_type: str
    content: str

    def to_json(self) -> dict[str, str]:
        return {
            "filename": self.filename,
            "contentType": self.content_type,
            "content": self.content,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> StoredAttachment:
        return cls(str(value["filename"]), str(value["contentType"]), str(value["content"]))


def crlf_lines(text: str) -> str:
    """Any mix of line endings (LF, CRLF, CR) as CRLF, the only line ending SMTP carries."""
    return "\r\n".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


@functools.lru_cache(maxsize=4)
def text_part(body: str, subtype: str) -> str:
    """One ``text/*`` entity (its MIME headers, a blank line, the encoded body): 7bit when the
    text is ASCII with short lines, else quoted-printable UTF-8 (RFC 2045 6.7). Cached, because
    the recipients of a send request without custom fields share its text body; a few entries
    only, as a body may be 10 MiB and bodies rendered per recipient never repeat."""
    normal = body.replace("\r\n", "\n").replace("\r", "\n")
    if normal.isascii() and all(len(line) < MAX_7BIT_LINE for line in normal.split("\n")):
        charset, encoding, encoded = "us-ascii", "7bit", normal
    else:
        charset, encoding = "utf-8", "quoted-printable"
        encoded = binascii.b2a_qp(normal.encode("utf-8"), istext=True).decode("ascii")
    return (
        f'Content-Type: text/{subtype}; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n" + crlf_lines(encoded)
    )


def boundary_for(seed: str, parts: Sequence[str]) -> str:
    """A multipart boundary derived from the message UUID (so preparation stays a pure
    function), lengthened in the unlikely case that a part contains it."""
    boundary = f"=_sp_{seed}"
    while any(boundary in part for part in parts):
        boundary += "_"
    return boundary


def multipart(subtype: str, uuid: str, parts: Sequence[str]) -> str:
    """A ``multipart/{subtype}`` entity holding ``parts`` (each an entity without its final
    CRLF), its boundary from the subtype's initial and the message UUID."""
    boundary = boundary_for(f"{subtype[0]}_{uuid}", parts)
    delimiter = f"\r\n--{boundary}\r\n"
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n" + delimiter.join(parts) + f"\r\n--{boundary}--\r\n"
    )


def parameter(name: str, value: str) -> str:
    """A MIME parameter: quoted when plain printable ASCII, else RFC 2231 UTF-8."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'{name}="{value}"'
    return f"{name}*=utf-8''{quote(value, safe='')}"


@functools.lru_cache(maxsize=20)
def attachment_part(attachment: StoredAttachment) -> str:
    """One attachment entity, base64 in 76-character lines (cached: every recipient of a
    request shares it; a request has at most 20, 10 MiB in all)."""
    check_safe("attachment filename", attachment.filename)
    check_safe("attachment content type", attachment.content_type)
    data = base64.b64decode(attachment.content, validate=True)
    encoded = base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
    return (
        f"Content-Type: {attachment.content_type}; {parameter('name', attachment.filename)}\r\n"
        f"Content-Disposition: attachment; {parameter('filename', attachment.filename)}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + encoded.removesuffix("\r\n")
    )


def ending(entity: str) -> str:
    """The message ends with CRLF: SMTP adds one anyway, and DKIM verifiers disagree on how
    to canonicalise a last line without it."""
    return entity if entity.endswith("\r\n") else entity + "\r\n"
