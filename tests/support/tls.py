"""TLS on 127.0.0.1 for the tests: a certificate authority made at test time, and a
TLS-terminating front that relays the decrypted bytes to a plain TCP server (the emulator, or
the fault proxy), as an HTTPS endpoint or an ``https://`` proxy would be seen by a client.

``TestCA(directory)`` writes ``ca.pem`` (a self-signed CA, valid for a day) and issues server
certificates for ``127.0.0.1`` and ``localhost`` (``issue``). It uses the ``cryptography``
package, which moto (the emulator) depends on, so it is in every test virtualenv.

``TlsFront(target, cert, key)`` is the harness's ``TcpForwarder`` (an OS-chosen port) with TLS:
each connection's handshake and relay run on one thread of their own (an ``SSLSocket`` is never
read and written from two threads): ``select`` on both sockets, copy what is readable. A
client that refuses the certificate ends its handshake; ``handshake_failures`` counts those.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import select
import socket
import ssl
import threading
from pathlib import Path

from tests.support.daemon import TcpForwarder

CHUNK = 64 * 1024
READ_TIMEOUT = 120.0  # a read select found ready waits at most this long (a partial record)


class TestCA:
    """A CA in ``directory``: ``ca_pem`` (its certificate), and ``issue`` for servers."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, *, name: str = "s3sqsd test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._serialization, self._ec = x509, hashes, serialization, ec
        self._oid = NameOID
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._subject = subject
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
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
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = directory / "ca.pem"
        self.ca_pem.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str = "server") -> tuple[Path, Path]:
        """A server certificate for 127.0.0.1 and localhost, signed by this CA: (cert, key)."""
        x509, oid = self._x509, self._oid
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(oid.COMMON_NAME, "localhost")]))
            .issuer_name(self._subject)
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
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, self._hashes.SHA256())
        )
        encoding = self._serialization.Encoding.PEM
        cert_path = self.directory / f"{name}.pem"
        key_path = self.directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(encoding))
        key_path.write_bytes(
            key.private_bytes(
                encoding,
                self._serialization.PrivateFormat.PKCS8,
                self._serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


class TlsFront(TcpForwarder):
    """``https://127.0.0.1:PORT`` in front of the plain TCP server at ``target``: the
    forwarder's listener and teardown, with TLS terminated on each connection's own thread."""

    def __init__(self, target: tuple[str, int], *, cert: Path, key: Path) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self.handshakes = 0  # connections whose TLS handshake succeeded
        self.handshake_failures = 0
        super().__init__(target)
        self.url = f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> TlsFront:
        return self

    def _connected(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.append(client)
            self.connections += 1
        threading.Thread(
            target=self._serve, args=(client,), name="tls-front-conn", daemon=True
        ).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            with self._lock:
                self.handshake_failures += 1
            raw.close()
            return
        with self._lock:
            self.handshakes += 1
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        try:
            self._relay(client, upstream)
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def _relay(self, client: ssl.SSLSocket, upstream: socket.socket) -> None:
        """Copy both ways on this one thread until either side ends."""
        client.settimeout(READ_TIMEOUT)
        upstream.settimeout(READ_TIMEOUT)
        while not self._stop.is_set():
            readable: list[socket.socket]
            if client.pending():
                readable = [client]
            else:
                readable, _, _ = select.select([client, upstream], [], [], 0.5)
            for sock in readable:
                other = upstream if sock is client else client
                try:
                    data = sock.recv(CHUNK)
                except ssl.SSLWantReadError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    other.sendall(data)
                except OSError:
                    return
