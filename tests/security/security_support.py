"""Shared pieces of the security tests: one config (every grant, hostile client names), an in-process
harness over it (Quart test client), the code flow through it, stored state, and logged errors."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import bcrypt
import yaml
from quart.testing import QuartClient
from web_harness import Harness, basic, location, make_config, path_and_query

from appliance.clock import FrozenClock
from appliance.config.schema import StorageConfig
from appliance.connectors.registry import default_registry
from appliance.ids import new_id
from appliance.keys.jwk import generate_signing_jwk
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.store.base import Storage
from appliance.store.models import Keys
from appliance.store.open import open_storage
from appliance.web.app import create_app

PREFIX = "/dex"
ISSUER = "http://127.0.0.1:5556/dex"
ADMIN_EMAIL = "admin@example.com"
# Not "password": the fuzzers send that word (a grant type) in every field, and must not log in by luck.
ADMIN_PASSWORD = "correct horse battery staple 7"
APP_REDIRECT = "https://app.example/callback"
APP_LOGOUT_REDIRECT = "https://app.example/bye"
OTHER_REDIRECT = "https://other.example/callback"
LOOPBACK_REDIRECT = "http://127.0.0.1:7000/cb"
SECRETS = {"app": "app-secret", "other": "other-secret", "svc": "svc-secret", "xss": "xss-secret"}
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TYPES = [
    "authorization_code", "refresh_token", "implicit", "password", "client_credentials", DEVICE_GRANT,
    EXCHANGE_GRANT,
]
# What an attacker puts in every reflected field: it must come back escaped, never as markup.
XSS = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>"
XSS_CLIENT_NAME = "<script>alert('client')</script>"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@functools.cache
def admin_password_hash() -> str:
    return bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()


def security_config(
    issuer: str = ISSUER, storage: dict[str, Any] | None = None, *, skip_approval: bool = True
) -> dict[str, Any]:
    """A Dex config enabling every grant, with a confidential, a second confidential, two public, a
    client-credentials and a hostile-named client, the local password DB and a mock callback login."""
    listen = urlsplit(issuer).netloc
    return {
        "issuer": issuer,
        "storage": storage or {"type": "memory"},
        "web": {"http": listen},
        "logger": {"level": "info"},
        "oauth2": {
            "skipApprovalScreen": skip_approval,
            "passwordConnector": "local",
            "responseTypes": [
                "code", "token", "id_token", "code id_token", "code token", "id_token token",
                "code id_token token",
            ],
            "grantTypes": GRANT_TYPES,
        },
        # The fuzzers, the load and the crash test send from one address as fast as they can, and
        # post wrong passwords on purpose: the throttle runs (its code is fuzzed too) but never delays
        # or locks, and no rate limit answers 429. tests/bruteforce tests the protection itself.
        "security": {
            "bruteForce": {"account": {"maxFailures": 0}, "clientIP": {"maxFailures": 0},
                           "delay": {"initial": "0s", "max": "0s"}},
            "rateLimits": {"enabled": False},
        },
        "enablePasswordDB": True,
        "staticPasswords": [
            {
                "email": ADMIN_EMAIL, "hash": admin_password_hash(), "username": "admin",
                "userID": "fd9d7267-8f66-47a6-8e01-d26d687f7c77", "groups": ["admins"],
            }
        ],
        "staticClients": [
            {
                "id": "app", "name": "App", "secret": SECRETS["app"],
                "redirectURIs": [APP_REDIRECT, "urn:ietf:wg:oauth:2.0:oob", "/device/callback"],
                "postLogoutRedirectURIs": [APP_LOGOUT_REDIRECT],
            },
            {"id": "other", "name": "Other", "secret": SECRETS["other"], "redirectURIs": [OTHER_REDIRECT]},
            {"id": "native", "name": "Native", "public": True},
            {
                "id": "native-reg", "name": "Native registered", "public": True,
                "redirectURIs": [LOOPBACK_REDIRECT],
            },
            {"id": "svc", "name": "Service", "secret": SECRETS["svc"]},
            {
                "id": "xss", "name": XSS_CLIENT_NAME, "secret": SECRETS["xss"],
                "redirectURIs": ["https://xss.example/cb", "/device/callback"],
                "postLogoutRedirectURIs": ["https://xss.example/bye"],
            },
        ],
        "connectors": [{"type": "mockCallback", "id": "mock", "name": "Mock"}],
    }


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def clear_cookies(client: QuartClient) -> None:
    jar = client.cookie_jar
    assert jar is not None
    jar.clear()


def client_auth(client_id: str) -> dict[str, str]:
    return basic(client_id, SECRETS[client_id])


# ---------------------------------------------------------------- the in-process harness


@functools.cache
def _signing_key(alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return generate_signing_jwk(alg, new_id())


async def open_harness(config: dict[str, Any] | None = None) -> Harness:
    """A real app over memory storage (as tests/web/conftest.py builds it), from a config dict."""
    parsed = make_config(yaml.safe_dump(config or security_config(), sort_keys=False))
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(
        storage, clock, algorithm=parsed.signer.algorithm, rotation_period=parsed.signer.keys_rotation_period,
        id_token_lifetime=parsed.expiry.id_tokens,
    )
    # One RSA key for every harness of the run: generating one per test would dominate the runtime.
    private, public = _signing_key(parsed.signer.algorithm)
    due = clock.now() + parsed.signer.keys_rotation_period
    await storage.update_keys(
        lambda _old: Keys(signing_key=private, signing_key_pub=public, next_rotation=due)
    )
    await keys.rotate_if_due()
    await keys.refresh()
    snapshot = await build_snapshot(parsed, default_registry(), storage=storage)
    deps = Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot)
    app = create_app(deps)
    await app.startup()
    return Harness(app, cast(QuartClient, app.test_client()), deps, clock, storage, parsed)


async def close_harness(harness: Harness) -> None:
    await harness.app.shutdown()
    await harness.storage.close()


COLLECTIONS = (
    "clients", "passwords", "connectors", "auth_requests", "auth_codes", "refresh_tokens", "offline_sessions",
    "device_requests", "device_tokens", "browser_sessions", "consents", "revoked_tokens",
)


def _key(obj: Any) -> str:
    for name in ("id", "user_code", "device_code", "email"):
        if hasattr(obj, name):
            return str(getattr(obj, name))
    # Offline sessions and consents are keyed by who they belong to.
    return "|".join(
        str(getattr(obj, name, "")) for name in ("user_id", "conn_id", "connector_id", "client_id")
    )


async def stored_ids(storage: Storage) -> dict[str, set[str]]:
    """The keys of the objects each collection holds."""
    return {name: {_key(obj) for obj in await getattr(storage, name).list()} for name in COLLECTIONS}


async def mock_code(
    h: Harness, client_id: str = "app", redirect_uri: str = APP_REDIRECT,
    scope: str = "openid email profile groups offline_access", **extra: str,
) -> str:
    """The browser leg through the mock callback connector (no password): the code from the redirect.
    With an SSO session already in the test client's cookie jar, /auth answers with the code at once."""
    query = {
        "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": scope,
        "state": "st", "nonce": "n", "connector_id": "mock", **extra,
    }
    response = await h.client.get(f"{PREFIX}/auth", query_string=query)
    for _ in range(4):
        if response.status_code == 303:
            break
        assert response.status_code == 302, await h.text(response)
        response = await h.client.get(path_and_query(location(response)))
    assert response.status_code == 303, await h.text(response)
    found = query_of(location(response))
    assert "code" in found, location(response)
    return found["code"]


async def redeem(
    h: Harness, code: str, client_id: str = "app", redirect_uri: str = APP_REDIRECT, **extra: str
) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **extra}
    headers = client_auth(client_id) if client_id in SECRETS else None
    if headers is None:
        form["client_id"] = client_id
    return await h.client.post(f"{PREFIX}/token", form=form, headers=headers)


async def tokens_for(h: Harness, client_id: str = "app") -> dict[str, Any]:
    redirect = {"app": APP_REDIRECT, "other": OTHER_REDIRECT}[client_id]
    response = await redeem(h, await mock_code(h, client_id, redirect), client_id, redirect)
    assert response.status_code == 200, await h.text(response)
    return dict(await response.get_json())


async def refresh(h: Harness, refresh_token: str, client_id: str = "app") -> Any:
    return await h.client.post(
        f"{PREFIX}/token", form={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers=client_auth(client_id),
    )


@dataclass
class ErrorLog:
    """Log records at ERROR and above, and any record carrying a traceback, from every logger."""

    records: list[logging.LogRecord] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]


@contextmanager
def capture_errors() -> Iterator[ErrorLog]:
    found = ErrorLog()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR or record.exc_info:
                found.records.append(record)

    handler = Handler(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield found
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
