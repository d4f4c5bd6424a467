"""Throwaway TLS for tests: a private CA and a server certificate, made in memory.

:func:`throwaway_tls` makes fresh keys (EC P-256, quick to generate) on each call;
nothing is read from or left on disk. The certificate is valid for ``localhost`` and
``127.0.0.1`` (subject alternative names), for one day, for server authentication
only. A client trusts it through :meth:`ThrowawayTls.client_context`, which trusts
that CA and nothing else, and checks host names: a test of ``wss://`` runs the same
verification as production, against a certificate no one else trusts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ThrowawayTls", "throwaway_tls"]


@dataclass(frozen=True)
class ThrowawayTls:
    """A private CA and a server certificate signed by it, as PEM.

    Attributes:
        ca_pem: the CA's certificate: what a client trusts (``cafile``/``cadata``).
        cert_pem: the server's certificate.
        key_pem: the server certificate's private key (unencrypted; never in a repr).
    """

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    def server_context(self) -> ssl.SSLContext:
        """A server-side context serving the certificate (TLS 1.2 at least)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only: written to a private directory, loaded,
        # and removed at once.
        with tempfile.TemporaryDirectory(prefix="nexus-tls-") as directory:
            cert, key = Path(directory, "server.pem"), Path(directory, "server-key.pem")
            cert.write_bytes(self.cert_pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(self.key_pem)
            context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA, and only it, checking host names:
        pass it as ``WebSocketConfig(ssl=...)``."""
        return ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode("ascii")
        )

    def write(self, directory: Path) -> tuple[Path, Path, Path]:
        """Write ``ca.pem``, ``server.pem`` and ``server-key.pem`` (mode 0600) into
        ``directory``, for a server started from files (``--certfile``); returns them."""
        ca, cert, key = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
        ca.write_bytes(self.ca_pem)
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        key.chmod(0o600)
        return ca, cert, key


def throwaway_tls() -> ThrowawayTls:
    """Make a CA and a certificate for ``localhost`` and ``127.0.0.1``, valid for a day."""
    # cryptography loads here, when a test asks for TLS.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nexus-reactive test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
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

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ThrowawayTls(
        ca_pem=ca_cert.public_bytes(pem),
        cert_pem=server_cert.public_bytes(pem),
        key_pem=server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
