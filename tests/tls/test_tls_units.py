"""appliance.web.tls without a server process: the config's version rules, what load_tls refuses and
why, a live swap on an asyncio server (certificate and versions), and the HSTS middleware."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tls_support import client_context, make_pair, stray_key

from appliance.config.load import parse_config
from appliance.config.schema import WebConfig
from appliance.web.tls import DEFAULT_HSTS, ServerTLS, StrictTransport, TLSFilesError, TLSSettings, load_tls

CONFIG = """\
issuer: https://127.0.0.1:5554/dex
storage: {type: memory}
web:
  https: 127.0.0.1:5554
  tlsCert: /etc/portico/tls.crt
  tlsKey: /etc/portico/tls.key
"""


@pytest.mark.parametrize(("extra", "expected"), [
    ("  tlsMinVersion: '1.1'\n", ("web.tlsMinVersion", 7, 'TLS version must be "1.2" or "1.3", got "1.1"')),
    ("  tlsMaxVersion: 'TLSv1.3'\n", ("web.tlsMaxVersion", 7, 'got "TLSv1.3"')),
    ("  tlsMinVersion: '1.3'\n  tlsMaxVersion: '1.2'\n",
     ("web.tlsMinVersion", 7, "tlsMinVersion is greater than tlsMaxVersion")),
    ("  tlsMinVersion: 1.3\n", ("web.tlsMinVersion", 7, "string")),  # unquoted: a number, as in Dex
])
def test_config_refuses_unknown_versions_and_min_above_max(extra: str,
                                                           expected: tuple[str, int, str]) -> None:
    config, problems = parse_config(CONFIG + extra)
    assert config is None
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) == 1, problems
    path, line, words = expected
    assert (errors[0].path, errors[0].line) == (path, line) and words in errors[0].message, errors[0]


def test_config_accepts_dex_spellings() -> None:
    config, problems = parse_config(CONFIG + "  tlsMinVersion: '1.2'\n  tlsMaxVersion: '1.3'\n")
    assert config is not None and problems == []
    assert TLSSettings.of(config.web).versions == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert TLSSettings("c", "k").versions == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)  # defaults


def test_load_tls_says_which_file_is_wrong(tmp_path: Path) -> None:
    pair = make_pair(tmp_path / "a")
    cert, key = str(pair.files.cert), str(pair.files.key)
    loaded = load_tls(TLSSettings(cert, key, "1.3"))
    assert loaded.fingerprint == pair.fingerprint
    assert loaded.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert loaded.subject == "CN=127.0.0.1"

    def refused(settings: TLSSettings) -> TLSFilesError:
        with pytest.raises(TLSFilesError) as caught:
            load_tls(settings)
        return caught.value

    missing = refused(TLSSettings(cert, str(tmp_path / "nope.key")))
    assert missing.key == "web.tlsKey" and "cannot read" in missing.detail
    assert "No such file" in missing.detail
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    assert refused(TLSSettings(str(tmp_path / "garbage.pem"), key)).key == "web.tlsCert"
    assert "holds no PEM private key" in refused(TLSSettings(cert, cert)).detail
    stray_key(tmp_path / "stray.key")
    mismatch = refused(TLSSettings(cert, str(tmp_path / "stray.key")))
    assert mismatch.key == "web.tlsKey" and "does not match the certificate" in mismatch.detail
    assert "greater than" in refused(TLSSettings(cert, key, "1.3", "1.2")).detail
    encrypted = tmp_path / "encrypted.key"
    private = serialization.load_pem_private_key(pair.files.key.read_bytes(), None)
    encrypted.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    assert "encrypted" in refused(TLSSettings(cert, str(encrypted))).detail


async def _handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    try:
        sslobj = writer.get_extra_info("ssl_object")
        return str(sslobj.version()), fingerprint_of_object(sslobj)
    finally:
        writer.close()


async def test_swap_on_a_live_asyncio_server(tmp_path: Path) -> None:
    first, second = make_pair(tmp_path / "a"), make_pair(tmp_path / "b")
    tls = ServerTLS.open(TLSSettings(str(first.files.cert), str(first.files.key)))

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=tls.context)
    port = server.sockets[0].getsockname()[1]
    both = client_context(first, second)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=both,
                                                       server_hostname="127.0.0.1")
        old = writer.get_extra_info("ssl_object")
        # Unchanged files: nothing to swap.
        assert await tls.prepare(_web(first)) is None
        # The second pair, TLS 1.3 only.
        install = await tls.prepare(_web(second, minimum="1.3"))
        assert install is not None
        assert (await _handshake(port, both))[1] == first.fingerprint  # prepared, not swapped yet
        assert "CN=127.0.0.1" in install()
        assert await _handshake(port, both) == ("TLSv1.3", second.fingerprint)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):  # the server's alert, or its reset
            await _handshake(port, client_context(first, second, maximum="1.2"))
        writer.write(b"still here\n")  # the connection made before the swap is untouched
        assert await reader.readline() == b"still here\n"
        assert fingerprint_of_object(old) == first.fingerprint
        writer.close()
        # A broken pair: refused before anything changes.
        stray_key(tmp_path / "stray.key")
        with pytest.raises(TLSFilesError, match="does not match"):
            await tls.prepare(WebConfig(tls_cert=str(first.files.cert), tls_key=str(tmp_path / "stray.key")))
        assert await _handshake(port, both) == ("TLSv1.3", second.fingerprint)
        assert tls.current.fingerprint == second.fingerprint
    finally:
        server.close()
        await server.wait_closed()


def fingerprint_of_object(sslobj: Any) -> str:
    der = sslobj.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest()


def _web(pair: Any, minimum: str = "", maximum: str = "") -> WebConfig:
    return WebConfig(https="127.0.0.1:0", tls_cert=str(pair.files.cert), tls_key=str(pair.files.key),
                     tls_min_version=minimum, tls_max_version=maximum)


async def test_strict_transport_adds_hsts_unless_the_app_set_one() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    def app_with(headers: list[tuple[bytes, bytes]]) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})
        return app

    await StrictTransport(app_with([(b"content-type", b"text/plain")]))({"type": "http"}, receive, send)
    assert (b"strict-transport-security", DEFAULT_HSTS.encode()) in sent[0]["headers"]
    sent.clear()
    own = [(b"Strict-Transport-Security", b"max-age=5")]
    await StrictTransport(app_with(own))({"type": "http"}, receive, send)
    assert [h for h in sent[0]["headers"] if h[0].lower() == b"strict-transport-security"] == own

