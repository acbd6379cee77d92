"""DKIM keys and signatures: generation, the published TXT value, and signatures dkimpy verifies."""

from __future__ import annotations

import hashlib

import dkim as dkimpy
import pytest
from sendpost_platform.smtp import dkim

from tests.platform.sending.dns_support import txt_lookup

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Hello\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> dkim.DkimKey:
    return dkim.generate_key()


@pytest.mark.parametrize("algorithm", [dkim.DkimAlgorithm.rsa, dkim.DkimAlgorithm.ed25519])
def test_signature_verifies_against_published_record(
    algorithm: dkim.DkimAlgorithm, rsa_key: dkim.DkimKey
) -> None:
    """A signed message verifies with dkimpy against the TXT record we tell users to publish."""
    key = rsa_key if algorithm is dkim.DkimAlgorithm.rsa else dkim.generate_key(algorithm)
    signed = dkim.sign(MESSAGE, domain="example.com", selector="s1", key=key)
    lookup = txt_lookup({"s1._domainkey.example.com": dkim.txt_record(key)})
    assert signed.startswith(b"DKIM-Signature: ")
    assert dkimpy.verify(signed, dnsfunc=lookup) is True


def test_tampered_body_fails_verification(rsa_key: dkim.DkimKey) -> None:
    """Changing the body after signing breaks the signature."""
    signed = dkim.sign(MESSAGE, domain="example.com", selector="s1", key=rsa_key)
    lookup = txt_lookup({"s1._domainkey.example.com": dkim.txt_record(rsa_key)})
    assert dkimpy.verify(signed.replace(b"Hello Bob.", b"Hello Eve."), dnsfunc=lookup) is False


def test_rsa_key_is_2048_bits_by_default(rsa_key: dkim.DkimKey) -> None:
    """The default key is RSA-2048 (PKCS#1 PEM for dkimpy) and the TXT value names k=rsa."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    loaded = load_pem_private_key(rsa_key.private_key, password=None)
    assert loaded.key_size == 2048  # type: ignore[union-attr]
    assert rsa_key.private_key.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert dkim.txt_record(rsa_key) == f"v=DKIM1; k=rsa; p={rsa_key.public_key}"


def test_openssl_primitive_equals_dkimpy_python_primitive(rsa_key: dkim.DkimKey) -> None:
    """The OpenSSL RSA primitive installed for dkimpy yields byte-identical signatures."""
    from dkim.crypto import parse_pem_private_key

    parsed = parse_pem_private_key(rsa_key.private_key)
    for text in (b"one", b"two", b"three"):
        digest = dkimpy.HashThrough(hashlib.sha256(text))
        again = dkimpy.HashThrough(hashlib.sha256(text))
        assert dkim.python_rsa_sign(digest, parsed) == dkimpy.RSASSA_PKCS1_v1_5_sign(again, parsed)


def test_only_present_headers_are_signed(rsa_key: dkim.DkimKey) -> None:
    """The h= tag lists the signed headers that the message actually carries."""
    signed = dkim.sign(MESSAGE, domain="example.com", selector="s1", key=rsa_key)
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    h_tag = header.split(" h=", 1)[1].split(";", 1)[0]
    assert [h.strip() for h in "".join(h_tag.split()).split(":")] == [
        "from",
        "to",
        "subject",
        "message-id",
    ]
