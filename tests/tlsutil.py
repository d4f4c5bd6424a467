"""Throwaway TLS material as PEM files, for a server started from files: the test
kit's :func:`nexus_reactive.testing.tls.throwaway_tls`, written to a directory::

    tls = make_tls(tmp_path)
    server = await aiohttp_server(app, ssl=tls.server_context())
    async with session.ws_connect(url, ssl=tls.client_context()) as ws: ...

The server certificate is valid for ``localhost`` and ``127.0.0.1`` (subject
alternative names), for one day, for server authentication only. A test that only
needs a ``wss://`` reference server uses ``NexusServer(tls=True)`` instead.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from nexus_reactive.testing.tls import throwaway_tls

__all__ = ["TlsFiles", "make_tls"]


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files written by :func:`make_tls`.

    Attributes:
        ca_cert: the CA's certificate (what a client trusts).
        server_cert: the server's certificate, signed by the CA.
        server_key: the server certificate's private key, unencrypted.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context serving the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts the CA (and only it), checking host names."""
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert))


def make_tls(directory: Path) -> TlsFiles:
    """Make a CA and a server certificate for localhost, and write them as PEM files.

    Args:
        directory: where to write ``ca.pem``, ``server.pem`` and ``server-key.pem``.

    Returns:
        The files' paths, with helpers for SSL contexts.
    """
    ca_cert, server_cert, server_key = throwaway_tls().write(directory)
    return TlsFiles(ca_cert=ca_cert, server_cert=server_cert, server_key=server_key)
