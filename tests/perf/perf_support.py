"""Helpers of the fast-path and server-adapter tests: a real app (memory storage, real keys) and a bare
ASGI caller that records what an app sends."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quart import Quart

from appliance.clock import FrozenClock
from appliance.config.load import parse_config
from appliance.config.schema import Config, StorageConfig
from appliance.connectors.registry import default_registry
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.oidc.token import TokenEndpoint
from appliance.store.base import Storage
from appliance.store.models import Keys
from appliance.store.open import open_storage
from appliance.web.app import create_app

ASGI = Callable[[Any, Any, Any], Awaitable[None]]


def config_text(issuer: str = "http://127.0.0.1:5556/dex", web_extra: str = "") -> str:
    return f"""
issuer: {issuer}
storage:
  type: memory
web:
  http: 127.0.0.1:5556
{web_extra}
enablePasswordDB: true
staticClients:
  - id: app
    name: App
    secret: app-secret
    redirectURIs: [https://app.example/cb]
"""


def make_config(text: str) -> Config:
    config, problems = parse_config(text)
    assert config is not None, [str(p) for p in problems]
    return config


@dataclass
class Stack:
    """A real public app: Quart over memory storage with a loaded key manager."""

    app: Quart
    deps: Deps
    keys: KeyManager
    clock: FrozenClock
    storage: Storage
    tokens: TokenEndpoint

    async def reload(self, text: str) -> None:
        """What a hot reload does: a new snapshot swapped into the running Deps."""
        self.deps.swap(await build_snapshot(make_config(text), default_registry(), storage=self.storage))

    async def rotate(self) -> None:
        self.clock.advance(datetime.timedelta(hours=7))
        assert await self.keys.rotate_if_due()
        await self.keys.refresh()

    async def close(self) -> None:
        await self.app.shutdown()
        await self.storage.close()


async def make_stack(text: str, *, load_keys: bool = True, key_set: Keys | None = None) -> Stack:
    """`key_set`: store these signing keys instead of generating new ones (twin stacks sign alike)."""
    config = make_config(text)
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(storage, clock, algorithm=config.signer.algorithm,
                      rotation_period=config.signer.keys_rotation_period,
                      id_token_lifetime=config.expiry.id_tokens)
    if key_set is not None:
        await storage.update_keys(lambda _: key_set)
    if load_keys:
        await keys.rotate_if_due()
        await keys.refresh()
    snapshot = await build_snapshot(config, default_registry(), storage=storage)
    deps = Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot)
    tokens = TokenEndpoint()
    app = create_app(deps, token_endpoint=tokens)
    await app.startup()
    return Stack(app, deps, keys, clock, storage, tokens)


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


def scope(method: str, path: str, headers: list[tuple[str, str]] | None = None,
          query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in headers or []],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 5556),
    }


async def call(app: ASGI, request: dict[str, Any], body: bytes = b"") -> Answer:
    """One request through an ASGI app, as a server would make it (`body` in one message, then nothing)."""
    return await send_messages(app, request, [{"type": "http.request", "body": body, "more_body": False}])


async def send_messages(app: ASGI, request: dict[str, Any], messages: list[dict[str, Any]]) -> Answer:
    """One request through an ASGI app, its body as `messages` (after them, the client waits)."""
    pending = list(messages)
    answer = Answer()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.Event().wait()  # the client stays connected; the app's watcher gets cancelled
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = int(message["status"])
            answer.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            answer.body += bytes(message.get("body", b""))

    await app(request, receive, send)
    return answer


class Counting:
    """Passes every call to `app` and counts them: shows whether the fast path answered by itself."""

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)

    @property
    def config(self) -> Any:
        """The app's settings (the fast path reads its body limit and timeout there)."""
        return getattr(self.app, "config", None)


def self_signed(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
