"""The `local` password connector: credentials, case-insensitive emails, refresh, hash sanity."""

from __future__ import annotations

import asyncio

import bcrypt
import pytest

from appliance.connectors.base import Identity, PasswordConnector, RefreshConnector, Scopes
from appliance.connectors.local import LocalConnector
from appliance.errors import ConnectorError
from appliance.store.models import Password

HASH = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(10)).decode()
ANN = Password(email="ann@example.com", hash=HASH, username="ann", user_id="u1", groups=("ops",),
               preferred_username="annie", email_verified=False)


class Users:
    """A password lookup over a dict, counting calls."""

    def __init__(self, *users: Password) -> None:
        self.users = {user.email: user for user in users}
        self.calls: list[str] = []

    async def __call__(self, email: str) -> Password | None:
        self.calls.append(email)
        return self.users.get(email)


async def test_is_a_password_and_refresh_connector() -> None:
    conn = LocalConnector(Users())
    assert isinstance(conn, PasswordConnector) and isinstance(conn, RefreshConnector)
    assert conn.prompt() == "Email Address"


async def test_login_returns_the_identity() -> None:
    users = Users(ANN)
    identity = await LocalConnector(users).login(Scopes(), "  Ann@Example.COM ", "correct horse")
    assert identity == Identity(user_id="u1", username="ann", preferred_username="annie",
                                email="ann@example.com", email_verified=False, groups=("ops",))
    assert users.calls == ["ann@example.com"]  # looked up lowercased


async def test_display_name_wins_over_username() -> None:
    named = Password(email="b@x", hash=HASH, username="bob", name="Bob Builder", user_id="u2")
    identity = await LocalConnector(Users(named)).login(Scopes(), "b@x", "correct horse")
    assert identity is not None and identity.username == "Bob Builder"


async def test_wrong_password_and_unknown_user_are_both_none() -> None:
    conn = LocalConnector(Users(ANN))
    assert await conn.login(Scopes(), "ann@example.com", "wrong") is None
    assert await conn.login(Scopes(), "ghost@example.com", "correct horse") is None
    assert await conn.login(Scopes(), "", "") is None


async def test_a_hash_with_a_silly_cost_is_an_error_not_a_wrong_password() -> None:
    cheap = Password(email="c@x", hash=bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode(), user_id="u3")
    with pytest.raises(ConnectorError):
        await LocalConnector(Users(cheap)).login(Scopes(), "c@x", "pw")
    garbage = Password(email="d@x", hash="not-a-hash", user_id="u4")
    with pytest.raises(ConnectorError):
        await LocalConnector(Users(garbage)).login(Scopes(), "d@x", "pw")


async def test_the_check_does_not_block_the_loop() -> None:
    conn = LocalConnector(Users(ANN))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(conn.login(Scopes(), "ann@example.com", "x") for _ in range(4)))
    task.cancel()
    assert ticks > 5  # the loop kept running while bcrypt worked in threads


async def test_refresh_rereads_the_user() -> None:
    users = Users(ANN)
    conn = LocalConnector(users)
    first = await conn.login(Scopes(), "ann@example.com", "correct horse")
    assert first is not None
    users.users["ann@example.com"] = Password(email="ann@example.com", hash=HASH, username="ann2",
                                              user_id="u1", groups=("ops", "dev"))
    fresh = await conn.refresh(Scopes(offline_access=True), first)
    assert fresh.username == "ann2" and fresh.groups == ("ops", "dev") and fresh.user_id == "u1"
    assert fresh.email_verified is True


async def test_refresh_refuses_a_deleted_or_replaced_user() -> None:
    users = Users(ANN)
    conn = LocalConnector(users)
    identity = await conn.login(Scopes(), "ann@example.com", "correct horse")
    assert identity is not None
    users.users["ann@example.com"] = Password(email="ann@example.com", hash=HASH, user_id="someone-else")
    with pytest.raises(ConnectorError):
        await conn.refresh(Scopes(), identity)
    del users.users["ann@example.com"]
    with pytest.raises(ConnectorError):
        await conn.refresh(Scopes(), identity)
