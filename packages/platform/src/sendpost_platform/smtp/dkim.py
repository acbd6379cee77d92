"""DKIM keys and signatures for sender domains.

Keys are generated with ``cryptography`` (RSA-2048 by default, Ed25519 on request) and kept in the
form dkimpy takes: an RSA key as PKCS#1 PEM, an Ed25519 key as the base64 of its 32-byte seed.
Signing goes through dkimpy (canonicalisation, header selection, the ``DKIM-Signature`` header).

Speed: dkimpy computes RSA signatures with Python integers (about 8 ms for a 2048-bit key), which
caps one core near 120 signatures per second. RSASSA-PKCS1-v1_5 is deterministic, so the same
signature can be computed by OpenSSL through ``cryptography`` in a fraction of the time; this
module installs that drop-in for dkimpy's single RSA signing primitive (hashing, canonicalisation,
header building and verification stay dkimpy's), and memoises dkimpy's pure-Python PEM parsing per
key. The equivalence is pinned down by a test comparing both outputs byte for byte.
"""

from __future__ import annotations

import base64
import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

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


def sign(message: bytes, *, domain: str, selector: str, key: DkimKey) -> bytes:
    """Return ``message`` (CRLF line endings) with a ``DKIM-Signature`` header prepended."""
    algorithm = b"ed25519-sha256" if key.algorithm is DkimAlgorithm.ed25519 else b"rsa-sha256"
    present = _header_names(message)
    include = [h.lower().encode() for h in SIGNED_HEADERS if h.lower() in present]
    header: bytes = dkim.DKIM(message, signature_algorithm=algorithm).sign(
        selector.encode(),
        domain.encode(),
        key.private_key,
        include_headers=include,
        canonicalize=(b"relaxed", b"relaxed"),
    )
    return header + message


def _header_names(message: bytes) -> set[str]:
    head = message.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in head.split(b"\r\n"):
        if line and line[:1] not in (b" ", b"\t") and b":" in line:
            names.add(line.split(b":", 1)[0].strip().decode("ascii", "replace").lower())
    return names


# --- OpenSSL-backed RSA primitive for dkimpy (see the module docstring) -------------------------

_PYTHON_RSA_SIGN: Callable[[Any, dict[str, int]], bytes] = dkim.RSASSA_PKCS1_v1_5_sign


@functools.lru_cache(maxsize=256)
def _openssl_key(
    n: int, e: int, d: int, p: int, q: int, dmp1: int, dmq1: int, iqmp: int
) -> rsa.RSAPrivateKey:
    numbers = rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _openssl_rsa_sign(hash_obj: Any, private_key: dict[str, int]) -> bytes:
    """RSASSA-PKCS1-v1_5 over dkimpy's SHA-256 header hash, computed by OpenSSL."""
    if getattr(hash_obj, "name", "") != "sha256":
        return _PYTHON_RSA_SIGN(hash_obj, private_key)
    key = _openssl_key(
        private_key["modulus"],
        private_key["publicExponent"],
        private_key["privateExponent"],
        private_key["prime1"],
        private_key["prime2"],
        private_key["exponent1"],
        private_key["exponent2"],
        private_key["coefficient"],
    )
    return key.sign(hash_obj.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def python_rsa_sign(hash_obj: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's own pure-Python primitive, kept for the equivalence test."""
    return _PYTHON_RSA_SIGN(hash_obj, private_key)


_PYTHON_PARSE_PEM: Callable[[bytes], dict[str, int]] = dkim.parse_pem_private_key


@functools.lru_cache(maxsize=256)
def _parsed_pem(data: bytes) -> dict[str, int]:
    return _PYTHON_PARSE_PEM(data)


def _cached_parse_pem(data: bytes) -> dict[str, int]:
    """dkimpy's PEM parser (pure-Python ASN.1), memoised per key: a sender domain's key is parsed
    once instead of once per message. A copy is returned so no caller can alter the cache."""
    return dict(_parsed_pem(bytes(data)))


dkim.RSASSA_PKCS1_v1_5_sign = _openssl_rsa_sign
dkim.parse_pem_private_key = _cached_parse_pem
