"""Misbehaving and well-behaved SMTP servers on loopback for the connectivity-test suites.

Real aiosmtpd servers (each in aiosmtpd's own thread) plus two raw sockets::

    from devtools.smtp_servers import TestServer, TlsMaterial, stalling_port, refusing_port

    tls = TlsMaterial.create(tmp_path)               # a CA and a 127.0.0.1/localhost certificate
    with TestServer(starttls=tls, users={"u": "p"}) as server:
        server.host, server.port, server.messages
    with TestServer(reject={"RCPT": "550 5.1.1 no such user"}) as server: ...
    with TestServer(implicit_tls=tls) as server: ...
    with stalling_port() as port: ...                 # accepts TCP, never greets
    with refusing_port() as port: ...                 # bound, not listening: connection refused

``users`` enables AUTH (PLAIN and LOGIN, also without TLS; ``auth_mechanisms`` limits them);
``reject`` maps "MAIL", "RCPT" or "DATA" to the reply given there.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsMaterial:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path) -> TlsMaterial:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SendPost test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        material = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        material.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        material.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        material.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return material

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class _Handler:
    def __init__(self, server: TestServer) -> None:
        self._server = server

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if "MAIL" in self._server.reject:
            return self._server.reject["MAIL"]
        envelope.mail_from = address
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if "RCPT" in self._server.reject:
            return self._server.reject["RCPT"]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if "DATA" in self._server.reject:
            return self._server.reject["DATA"]
        content = envelope.original_content or b""
        with self._server.lock:
            self._server.messages.append(bytes(content))
        return "250 2.0.0 Ok: queued"


class _AnyPortController(Controller):
    """Binds port 0 and reports the port the kernel chose."""

    def _trigger_server(self) -> None:
        server: Any = self.server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class TestServer:
    """An aiosmtpd server on 127.0.0.1 (or another loopback ``host``, at ``port``; 0 picks one)
    with optional STARTTLS, implicit TLS, AUTH and rejections."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        starttls: TlsMaterial | None = None,
        implicit_tls: TlsMaterial | None = None,
        users: Mapping[str, str] | None = None,
        auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        reject: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.reject = dict(reject or {})
        self.users = dict(users or {})
        self.messages: list[bytes] = []
        self.credentials: list[tuple[str, str]] = []  # every AUTH attempt: (login, password)
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if starttls is not None:
            kwargs["tls_context"] = starttls.server_context()
        if implicit_tls is not None:
            kwargs["ssl_context"] = implicit_tls.server_context()
        if users is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = False
            kwargs["auth_exclude_mechanism"] = [
                m for m in ("PLAIN", "LOGIN") if m not in auth_mechanisms
            ]
        self._controller = _AnyPortController(
            _Handler(self), hostname=self.host, port=port, **kwargs
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            with self.lock:
                self.credentials.append((login, password))
            if self.users.get(login) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def __enter__(self) -> TestServer:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()


@contextlib.contextmanager
def stalling_port() -> Iterator[int]:
    """A listening socket nobody accepts on: the TCP handshake completes, no greeting ever comes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port bound but not listening (so nobody else takes it): connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])
