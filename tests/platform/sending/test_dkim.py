"""DKIM keys and signatures: generation, the published TXT value, and signatures dkimpy verifies."""

from __future__ import annotations

import dkim as dkimpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


_WHITESPACE = st.sampled_from([" ", "\t", "  ", " \t ", ""])
_LINE = st.builds(
    lambda words, gap, tail: gap.join(words) + tail,
    st.lists(st.text("abc.=-", min_size=1, max_size=6), max_size=4),
    _WHITESPACE,
    _WHITESPACE,
)
_BODY = st.builds(
    lambda lines, blank, end: "\r\n".join(lines) + "\r\n" * blank + end,
    st.lists(_LINE, max_size=6),
    st.integers(0, 3),
    st.sampled_from(["", "\r\n"]),
)


@settings(max_examples=60, deadline=None)
@given(body=_BODY, subject=_LINE, gap=_WHITESPACE)
def test_signatures_verify_whatever_the_whitespace(
    rsa_key: dkim.DkimKey, body: str, subject: str, gap: str
) -> None:
    """Our relaxed/relaxed canonicalisation agrees with dkimpy's: any spacing of header values
    (folded lines included) and bodies (trailing spaces, blank lines, no final CRLF) signs to a
    signature dkimpy verifies, and to the body hash dkimpy computes."""
    message = (
        f"From:{gap}Alice <alice@example.com>{gap}\r\n"
        f"Subject: {subject}\r\n\t{gap}continued{gap}\r\n"
        f"To: bob@example.org\r\n\r\n{body}"
    ).encode()
    ours = dkim.sign(message, domain="example.com", selector="s1", key=rsa_key)
    lookup = txt_lookup({"s1._domainkey.example.com": dkim.txt_record(rsa_key)})
    assert dkimpy.verify(ours, dnsfunc=lookup) is True
    theirs = dkimpy.sign(
        message,
        b"s1",
        b"example.com",
        rsa_key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject"],
    )
    assert _tag(theirs, "bh") == _tag(ours, "bh")


def _tag(signed: bytes, name: str) -> str:
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    value = header.split(f" {name}=", 1)[1].split(";", 1)[0]
    return "".join(value.split())


def test_signature_is_deterministic_and_takes_its_timestamp(rsa_key: dkim.DkimKey) -> None:
    """No clock inside: the same message and timestamp give the same bytes, and t= is the
    timestamp given (RSASSA-PKCS1-v1_5 is deterministic)."""
    first = dkim.sign(MESSAGE, domain="example.com", selector="s1", key=rsa_key, timestamp=1)
    again = dkim.sign(MESSAGE, domain="example.com", selector="s1", key=rsa_key, timestamp=1)
    assert first == again
    assert "1" == _tag(first, "t")


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
