"""The `keystone` connector against a fake Keystone v3: password tokens, domains, groups, refresh."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fakes.keystone import DOMAIN_ID, DOMAIN_NAME, FakeKeystone, KeystoneUser
from fakes.server import FakeServer

from appliance.connectors.base import Identity, PasswordConnector, RefreshConnector, Scopes
from appliance.connectors.keystone import KeystoneConnector, domain_reference, open_keystone
from appliance.errors import ConnectorError

USER_ID = "b5f1e0a2c3d44e5f8a9b0c1d2e3f4a5b"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeKeystone, FakeServer]]:
    fake = FakeKeystone()
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def keystone(served: tuple[FakeKeystone, FakeServer]) -> FakeKeystone:
    fake, _ = served
    fake.reset()
    fake.users["kim"] = KeystoneUser(
        id=USER_ID,
        name="kim",
        password="s3cret",
        email="kim@example.com",
        groups=["developers", "operators", "auditors"],
    )
    fake.users["admin"] = KeystoneUser(id="admin-id", name="admin", password="adm1n", admin=True)
    return fake


def make(served: tuple[FakeKeystone, FakeServer], **extra: Any) -> KeystoneConnector:
    config = {
        "keystoneHost": served[1].url,
        "domain": DOMAIN_ID,
        "keystoneUsername": "admin",
        "keystonePassword": "adm1n",
        **extra,
    }
    return open_keystone("keystone", config)


async def test_login(served: Any, keystone: FakeKeystone) -> None:
    conn = make(served)
    assert isinstance(conn, PasswordConnector) and isinstance(conn, RefreshConnector)
    assert conn.prompt() == "username"
    identity = await conn.login(Scopes(groups=True), "kim", "s3cret")
    assert identity == Identity(
        user_id=USER_ID,
        username="kim",
        email="kim@example.com",
        email_verified=True,
        groups=("developers", "operators", "auditors"),
    )
    assert keystone.domain_refs[-1] == {"id": DOMAIN_ID}
    by_name = await make(served, domain=DOMAIN_NAME).login(Scopes(), "kim", "s3cret")
    assert by_name is not None and by_name.groups == () and keystone.domain_refs[-1] == {"name": DOMAIN_NAME}
    assert domain_reference("default") == {"id": "default"}


async def test_wrong_password_is_none_and_outage_is_an_error(served: Any, keystone: FakeKeystone) -> None:
    conn = make(served)
    assert await conn.login(Scopes(), "kim", "nope") is None
    assert await conn.login(Scopes(), "ghost", "s3cret") is None
    assert await conn.login(Scopes(), "kim", "") is None
    keystone.failure = 503
    with pytest.raises(ConnectorError, match="HTTP 503"):
        await conn.login(Scopes(), "kim", "s3cret")


async def test_paged_groups(served: Any, keystone: FakeKeystone) -> None:
    keystone.per_page = 2
    identity = await make(served).login(Scopes(groups=True), "kim", "s3cret")
    assert identity is not None and identity.groups == ("developers", "operators", "auditors")


async def test_refresh_with_admin_token(served: Any, keystone: FakeKeystone) -> None:
    conn = make(served)
    identity = await conn.login(Scopes(), "kim", "s3cret")
    assert identity is not None
    keystone.users["kim"].groups = ["developers"]
    refreshed = await conn.refresh(Scopes(groups=True), identity)
    assert refreshed.groups == ("developers",) and refreshed.email == identity.email
    del keystone.users["kim"]
    with pytest.raises(ConnectorError, match="does not exist"):
        await conn.refresh(Scopes(), identity)
    with pytest.raises(ConnectorError, match="admin credentials refused"):
        await make(served, keystonePassword="wrong").refresh(Scopes(), identity)


def test_config() -> None:
    with pytest.raises(ValueError, match="keystoneHost: is required; domain: is required"):
        open_keystone("k", {})
    assert "adm1n" not in repr(
        open_keystone("k", {"keystoneHost": "http://k", "domain": "d", "keystonePassword": "adm1n"}).cfg
    )
