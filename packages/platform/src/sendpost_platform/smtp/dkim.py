"""DKIM keys and signatures for sender domains.

Keys are generated with ``cryptography`` (RSA-2048 by default, Ed25519 on request) and stored in
dkimpy's forms: an RSA key as PKCS#1 PEM, an Ed25519 key as the base64 of its 32-byte seed.

Signing (RFC 6376, ``c=relaxed/relaxed``; ``rsa-sha256``, or ``ed25519-sha256`` per RFC 8463) is
done here rather than through dkimpy, which spends more Python time parsing and canonicalising a
message than OpenSSL spends on the RSA signature itself. It is a small, fixed recipe:

1. body: every run of spaces and tabs becomes one space, whitespace at line ends and empty lines
   at the end go, the result ends with CRLF (empty stays empty); ``bh=`` is its SHA-256;
2. the headers named in ``h=`` (each taken from the bottom up, RFC 6376 5.4.2), then the
   ``DKIM-Signature`` header itself with an empty ``b=``, each relaxed: name lower-cased,
   unfolded, whitespace runs reduced to one space and trimmed around the colon and at the end;
3. the RSA (PKCS#1 v1.5) or Ed25519 signature over that is ``b=``, folded onto short lines.

dkimpy stays the verifier: the tests check every signature (both key types, arbitrary whitespace
in headers and bodies) with ``dkim.verify``, and that ``bh=`` equals dkimpy's for the same body.
There is no clock here: ``t=`` is the timestamp the caller passes (the message's submission).
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
"""Headers the signature covers (RFC 8058: both List-Unsubscribe headers must be signed)."""


class DkimAlgorithm(enum.StrEnum):
    rsa = "rsa"
    ed25519 = "ed25519"


@dataclass(frozen=True)
class DkimKey:
    """A key pair: ``private_key`` as dkimpy takes it, ``public_key`` as the DNS ``p=`` value."""

    algorithm: DkimAlgorithm
    private_key: bytes
    public_key: str


def generate_key(algorithm: DkimAlgorithm = DkimAlgorithm.rsa, bits: int = 2048) -> DkimKey:
    """Generate a fresh key pair."""
    if algorithm is DkimAlgorithm.ed25519:
        ed_key = ed25519.Ed25519PrivateKey.generate()
        seed = ed_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = ed_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return DkimKey(algorithm, base64.b64encode(seed), base64.b64encode(public).decode())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(algorithm, pem, base64.b64encode(der).decode())


def txt_record(key: DkimKey) -> str:
    """The TXT value to publish at ``{selector}._domainkey.{domain}``."""
    return f"v=DKIM1; k={key.algorithm.value}; p={key.public_key}"


_LINE_WIDTH = 76
_WSP_RUN = re.compile(rb"[ \t]+")


def sign(
    message: bytes, *, domain: str, selector: str, key: DkimKey, timestamp: int | None = None
) -> bytes:
    """Return ``message`` (CRLF line endings) with a ``DKIM-Signature`` header prepended."""
    head, separator, body = message.partition(b"\r\n\r\n")
    if not separator:
        head, body = message.removesuffix(b"\r\n"), b""
    fields = _header_fields(head)
    present = {name for name, _ in fields}
    signed_names = [h.lower() for h in SIGNED_HEADERS if h.lower().encode() in present]
    algorithm = "ed25519-sha256" if key.algorithm is DkimAlgorithm.ed25519 else "rsa-sha256"
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
    tags = ["v=1;", f"a={algorithm};", "c=relaxed/relaxed;", f"d={domain};", f"s={selector};"]
    if timestamp is not None:
        tags.append(f"t={timestamp};")
    tags += [f"h={':'.join(signed_names)};", f"bh={body_hash};", "b="]
    unsigned = _fold("DKIM-Signature:", tags)
    data = b"".join(_relaxed_header(f) for f in _pick(fields, signed_names))
    data += _relaxed_header(unsigned.encode("ascii")).removesuffix(b"\r\n")
    signature = base64.b64encode(_sign_bytes(key, data)).decode()
    return (
        (unsigned + _fold_value(signature, len(unsigned) - unsigned.rfind("\n"))).encode("ascii")
        + b"\r\n"
        + message
    )


def relaxed_body(body: bytes) -> bytes:
    """The relaxed body canonicalisation (RFC 6376 3.4.4), in dkimpy's order: whitespace at the
    end of a line is dropped before a missing final CRLF is added, so a last line without CRLF
    keeps a trailing space. Readings of the RFC differ there; ``prepare`` always ends the body
    with CRLF, where they all agree."""
    body = _WSP_RUN.sub(b" ", body).replace(b" \r\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n" and body[end - 4 : end - 2] == b"\r\n":
        end -= 2
    return b"" if body[:end] == b"\r\n" else body[:end]


def _relaxed_header(field: bytes) -> bytes:
    """The relaxed header canonicalisation (RFC 6376 3.4.2) of one field, CRLF-terminated."""
    name, _, value = field.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def _header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-cased name, whole field including continuation lines) in message order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + b"\r\n" + line)
        elif b":" in line:
            fields.append((line.split(b":", 1)[0].strip().lower(), line))
    return fields


def _pick(fields: Sequence[tuple[bytes, bytes]], names: Sequence[str]) -> list[bytes]:
    """For each name of ``h=``, the last field of that name not yet taken (RFC 6376 5.4.2)."""
    remaining = list(fields)
    picked = []
    for name in names:
        wanted = name.encode()
        for index in range(len(remaining) - 1, -1, -1):
            if remaining[index][0] == wanted:
                picked.append(remaining.pop(index)[1])
                break
    return picked


def _fold(start: str, tags: Sequence[str]) -> str:
    """``start`` and the tags separated by spaces, a line break (CRLF SP) before a tag that would
    pass the line width, and inside ``h=`` after a colon."""
    lines = [start]
    for tag in tags:
        pieces = tag.split(":") if tag.startswith("h=") else [tag]
        for index, piece in enumerate(pieces):
            text = piece + (":" if index < len(pieces) - 1 else "")
            joiner = " " if index == 0 else ""
            if len(lines[-1]) + len(joiner) + len(text) > _LINE_WIDTH:
                lines.append(" " + text)
            else:
                lines[-1] += joiner + text
    return "\r\n".join(lines)


def _fold_value(value: str, used: int) -> str:
    """A base64 value continued on CRLF SP lines (whitespace inside ``b=`` is ignored)."""
    first = max(_LINE_WIDTH - used, 1)
    step = _LINE_WIDTH - 1
    rest = [" " + value[at : at + step] for at in range(first, len(value), step)]
    return "\r\n".join([value[:first], *rest])


def _sign_bytes(key: DkimKey, data: bytes) -> bytes:
    if key.algorithm is DkimAlgorithm.ed25519:
        return _ed25519_key(key.private_key).sign(hashlib.sha256(data).digest())
    return _rsa_key(key.private_key).sign(data, padding.PKCS1v15(), hashes.SHA256())


@functools.lru_cache(maxsize=256)
def _rsa_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The parsed key, once per sender domain key rather than once per message."""
    loaded = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return loaded


@functools.lru_cache(maxsize=256)
def _ed25519_key(seed: bytes) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed))
