"""Helpers of the TLS tests: certificate pairs on disk, TLS handshakes with a chosen version range, raw
HTTP/1.1 over one kept-alive TLS connection, and a `portico serve` with an HTTPS listener."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adminutil import Server, base_config, free_port, start_server
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fakes.tls import TLSFiles, make_tls_files

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class Pair:
    """A server certificate (signed by its own throwaway CA) and its key, as files."""

    files: TLSFiles

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), as fingerprint_of computes it from a connection."""
        cert = x509.load_pem_x509_certificate(self.files.cert.read_bytes())
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def ca(self) -> str:
        return self.files.ca_pem.read_text()


def make_pair(folder: Path) -> Pair:
    folder.mkdir(parents=True, exist_ok=True)
    return Pair(make_tls_files(folder))


def install(pair: Pair, cert: Path, key: Path) -> None:
    """Put `pair` where the server reads it: each file replaced atomically (write, then rename), the
    certificate first, as a renewal tool does."""
    for source, target in ((pair.files.cert, cert), (pair.files.key, key)):
        temporary = target.with_name(f".{target.name}.new")
        temporary.write_bytes(source.read_bytes())
        os.replace(temporary, target)


def secret_volume(folder: Path, pair: Pair, version: str) -> tuple[Path, Path]:
    """The layout of a Kubernetes Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<version>/.
    Called again with another version, it swaps ..data atomically, as the kubelet does. Returns the
    paths the config names."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"..{version}"
    target.mkdir()
    (target / "tls.crt").write_bytes(pair.files.cert.read_bytes())
    (target / "tls.key").write_bytes(pair.files.key.read_bytes())
    temporary = folder / "..data_tmp"
    temporary.symlink_to(target.name)
    os.replace(temporary, folder / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    return folder / "tls.crt", folder / "tls.key"


def stray_key(path: Path) -> None:
    """A valid PEM key that belongs to no certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def client_context(*pairs: Pair, minimum: str = "1.2", maximum: str = "1.3") -> ssl.SSLContext:
    """A client trusting the pairs' CAs and speaking only TLS `minimum`..`maximum`."""
    context = ssl.create_default_context(cadata="".join(pair.ca for pair in pairs))
    context.minimum_version, context.maximum_version = VERSIONS[minimum], VERSIONS[maximum]
    return context


def fingerprint_of(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


class KeptAlive:
    """One TLS connection carrying several HTTP/1.1 requests (keep-alive), read by hand."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self._buffer = b""

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.sock)

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while b"\r\n\r\n" not in self._buffer:
            self._recv()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._recv()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, headers, body

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        self.sock.close()


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    """(negotiated TLS version, server certificate fingerprint) of a new connection; ssl.SSLError when
    the server refuses the handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            return str(sock.version()), fingerprint_of(sock)


@dataclass
class HTTPSServer:
    server: Server
    https_port: int
    cert: Path
    key: Path

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/dex"


def start_https(workdir: Path, pair: Pair | None, *, web: dict[str, Any] | None = None,
                config: dict[str, Any] | None = None, files: tuple[Path, Path] | None = None) -> HTTPSServer:
    """`portico serve` with web.http (readiness, plain checks) and web.https on another port, serving
    `pair` from files of its own (tls/server.pem, tls/server.key) that the tests may replace, or the
    `files` (cert, key) the test laid out itself."""
    if files is None:
        live = workdir / "tls"
        live.mkdir(exist_ok=True)
        cert, key = live / "server.pem", live / "server.key"
        assert pair is not None
        install(pair, cert, key)
    else:
        cert, key = files
    https_port = free_port()

    def make(port: int) -> dict[str, Any]:
        made = dict(config) if config is not None else base_config(port)
        made["issuer"] = f"https://127.0.0.1:{https_port}/dex"
        made["web"] = {"http": f"127.0.0.1:{port}", "https": f"127.0.0.1:{https_port}",
                       "tlsCert": str(cert), "tlsKey": str(key), **(web or {})}
        return made

    return HTTPSServer(start_server(workdir, make), https_port, cert, key)
